use std::path::Path;

use hkd_rundir::*;

fn config(student: &str, teacher: TeacherSpec, lambda: f64, iter: u32) -> RunConfig {
    let mut spec = RunSpec {
        student: student.into(),
        seed: 7,
        iter,
        ..RunSpec::default()
    };
    spec.loss.as_hkd_mut().unwrap().lambda = lambda;
    spec.data.dir = "/data/x".into();
    RunConfig::new(spec, teacher, 10, "abc", "cpu")
}

fn epoch(e: u32, val_acc: f64) -> EpochMetrics {
    EpochMetrics {
        epoch: e,
        lr: 0.1,
        train_parts: [("hard", 2.0), ("kd", 0.5), ("human", 0.5)].into(),
        train_total: 1.25,
        train_acc: 0.3,
        val_acc,
        val_loss: 1.5,
        seconds: 1.0,
        images_per_s: 1000.0,
    }
}

fn make_run(out: &Path, c: &RunConfig, best_acc: Option<f64>, finished: bool) -> RunDir {
    let run = c.run_dir_in(out);
    run.create().unwrap();
    run.write_config(c).unwrap();
    if let Some(acc) = best_acc {
        // a valid safetensors file without tensors: an 8-byte header length, then `{}`
        std::fs::write(run.file(RunDir::BEST_WEIGHTS), b"\x02\0\0\0\0\0\0\0{}").unwrap();
        run.write_best(&BestRecord {
            epoch: 2,
            val_acc: acc,
            val_loss: 1.0 - acc,
        })
        .unwrap();
    }
    run.write_state(&RunState {
        epochs_completed: if finished { 3 } else { 1 },
        batches_into_epoch: 0,
        epochs: 3,
        finished,
        trainer: serde_json::Value::Null,
    })
    .unwrap();
    run
}

#[test]
fn config_round_trips_through_toml() {
    let dir = tempfile::tempdir().unwrap();
    let c = config("resnet8", TeacherSpec::Human, 0.6, 1);
    let run = make_run(dir.path(), &c, None, false);
    assert_eq!(run.read_config().unwrap(), c);
    assert_eq!(run.read_config().unwrap().mode(), Mode::Human);
    assert!(run.path().ends_with(
        "human/resnet8/student_resnet8_distil_fn_KL_temperature_h_1.0_temperature_t_1.0_lambda_0.6_gamma_0.0_iter_1+seed=7"
    ));
}

#[test]
fn unknown_config_field_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let c = config("resnet8", TeacherSpec::Baseline, 0.0, 0);
    let run = make_run(dir.path(), &c, None, false);
    let text = std::fs::read_to_string(run.file(RunDir::CONFIG)).unwrap();
    std::fs::write(run.file(RunDir::CONFIG), format!("bogus = 1\n{text}")).unwrap();
    let err = run.read_config().unwrap_err().to_string();
    assert!(
        err.contains("config.toml") && err.contains("bogus"),
        "{err}"
    );
}

#[test]
fn record_epoch_drops_epochs_a_resumed_run_redoes() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path());
    for e in 1..=3 {
        run.record_epoch(&epoch(e, 0.1 * e as f64)).unwrap();
    }
    // resumed from the checkpoint after epoch 1: epoch 2 is recorded again
    run.record_epoch(&epoch(2, 0.9)).unwrap();
    let all = run.read_metrics().unwrap();
    assert_eq!(all.iter().map(|m| m.epoch).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(all[1].val_acc, 0.9);
}

#[test]
fn corrupt_metrics_line_is_reported_with_its_line_number() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path());
    run.record_epoch(&epoch(1, 0.5)).unwrap();
    let mut text = std::fs::read_to_string(run.file(RunDir::METRICS)).unwrap();
    text.push_str("{\"epoch\": 2, \"lr\"\n");
    std::fs::write(run.file(RunDir::METRICS), text).unwrap();
    let err = run.read_metrics().unwrap_err().to_string();
    assert!(err.contains("line 2"), "{err}");
}

#[test]
fn status_follows_the_state_file() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        RunDir::new(dir.path().join("nothing")).status(),
        RunStatus::NotStarted
    );
    let a = make_run(
        dir.path(),
        &config("resnet8", TeacherSpec::Human, 0.2, 0),
        None,
        false,
    );
    assert_eq!(
        a.status(),
        RunStatus::InProgress {
            epochs_completed: 1,
            epochs: 3
        }
    );
    let b = make_run(
        dir.path(),
        &config("resnet8", TeacherSpec::Human, 0.2, 1),
        None,
        true,
    );
    assert!(b.is_finished());
}

#[test]
fn find_and_pick_the_best_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    make_run(
        out,
        &config("resnet8", TeacherSpec::Human, 0.2, 0),
        Some(0.5),
        true,
    );
    let best = make_run(
        out,
        &config("resnet8", TeacherSpec::Human, 0.6, 0),
        Some(0.7),
        true,
    );
    // higher accuracy but unfinished: not a candidate
    make_run(
        out,
        &config("resnet8", TeacherSpec::Human, 1.0, 0),
        Some(0.9),
        false,
    );
    make_run(
        out,
        &config("resnet8", TeacherSpec::Baseline, 0.0, 0),
        Some(0.6),
        true,
    );
    std::fs::create_dir_all(out.join(".hidden/x")).unwrap();
    // the highest accuracy of all, but its weights are garbage: never picked
    let broken = make_run(
        out,
        &config("resnet8", TeacherSpec::Human, 0.8, 0),
        Some(0.95),
        true,
    );
    std::fs::write(
        broken.file(RunDir::BEST_WEIGHTS),
        b"\xff\xff\xff\xff garbage",
    )
    .unwrap();
    let e = broken
        .check_weights(RunDir::BEST_WEIGHTS)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("best.safetensors") && e.contains("header claims"),
        "{e}"
    );
    // cut off inside a tensor's data
    std::fs::write(
        broken.file(RunDir::LAST_WEIGHTS),
        b"\x3b\0\0\0\0\0\0\0{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}    \0\0\0\0",
    )
    .unwrap();
    let e = broken
        .check_weights(RunDir::LAST_WEIGHTS)
        .unwrap_err()
        .to_string();
    assert!(e.contains("ends at byte 16 of 4"), "{e}");

    let runs = find_run_dirs(out).unwrap();
    assert_eq!(runs.len(), 5);
    let (picked, record) = best_run_under(out).unwrap();
    assert_eq!(picked, best);
    assert_eq!(record.val_acc, 0.7);

    // the analysis' grid-level best.json wins over the per-run scan
    let rel = runs[0].path().strip_prefix(out).unwrap().to_path_buf();
    let grid = GridBest {
        run_dir: rel,
        group: Default::default(),
        mean_val_acc: 0.6,
        std_val_acc: 0.0,
        runs: 1,
    };
    std::fs::write(out.join("best.json"), serde_json::to_string(&grid).unwrap()).unwrap();
    let (picked, _) = best_run_under(out).unwrap();
    assert_eq!(picked, runs[0]);
}

#[test]
fn no_runs_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = best_run_under(dir.path()).unwrap_err().to_string();
    assert!(err.contains("no finished run"), "{err}");
}

#[test]
fn teacher_slug_is_readable_and_unique() {
    let c = config("resnet20", TeacherSpec::Human, 1.0, 0);
    assert_eq!(
        c.teacher_slug(),
        "human-resnet20-KL-th1.0-tt1.0-l1.0-g0.0-i0+seed=7"
    );
    let mut spec = c.spec.clone();
    spec.seed = 0;
    let plain = RunConfig::new(spec.clone(), TeacherSpec::Human, 10, "abc", "cpu");
    assert_eq!(
        plain.teacher_slug(),
        "human-resnet20-KL-th1.0-tt1.0-l1.0-g0.0-i0"
    );
    spec.optimizer.lr = 0.01;
    let other = RunConfig::new(spec, TeacherSpec::Human, 10, "abc", "cpu");
    assert_eq!(
        other.teacher_slug(),
        "human-resnet20-KL-th1.0-tt1.0-l1.0-g0.0-i0+lr=0.01"
    );
}

#[test]
fn a_config_written_by_hkd_0_1_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path());
    let text = r#"hkd_version = "0.1.0"
run_name = "student_resnet8_distil_fn_CE_temperature_h_1.0_temperature_t_1.0_lambda_1.0_gamma_0.0_iter_2"
student = "resnet8"
classes = 10
seed = 0
iter = 2
device = "cpu"

[teacher]
kind = "human"

[distillation]
lambda = 1.0
gamma = 0.0
temperature_teacher = 1.0
temperature_human = 1.0
distil_fn = "CE"
kl_reduction = "elementwise_mean"
human_smoothing = 0.02

[optimizer]
epochs = 5
batch_size = 128
lr = 0.1
momentum = 0.9
weight_decay = 0.0001
scheduler = "plateau"

[data]
dir = "/work/data/cifar10h-real"
manifest_hash = "9f2c"
train_split = "train"
val_split = "val"
"#;
    std::fs::write(run.file(RunDir::CONFIG), text).unwrap();
    let c = run.read_config().unwrap();
    assert_eq!(c.mode(), Mode::Human);
    assert_eq!(c.spec.loss.as_hkd().unwrap().distil_fn, DistilFn::Ce);
    assert_eq!(c.spec.loss.as_hkd().unwrap().lambda, 1.0);
    assert_eq!(c.spec.training.epochs, 5);
    assert_eq!(c.spec.iter, 2);
    assert_eq!(c.dataset_hash, "9f2c");
    assert_eq!(c.spec.data.dir, Path::new("/work/data/cifar10h-real"));
    // the name it was written under stays; the specification now spells out epochs
    assert!(c.run_name.ends_with("_iter_2"));
    assert!(c.spec.run_name().ends_with("_iter_2+epochs=5"));
    // a broken old file says which layout it was read as
    std::fs::write(run.file(RunDir::CONFIG), text.replace("seed = 0\n", "")).unwrap();
    let err = run.read_config().unwrap_err().to_string();
    assert!(err.contains("seed") && err.contains("hkd 0.1"), "{err}");
}

#[test]
fn every_setting_that_differs_gives_another_run_name() {
    let base = RunSpec::default();
    assert_eq!(
        base.run_name(),
        "student_resnet8_distil_fn_KL_temperature_h_1.0_temperature_t_1.0_lambda_0.5_gamma_0.0_iter_0"
    );
    let variants: Vec<(&str, RunSpec)> = vec![
        (
            "lr",
            RunSpec {
                optimizer: OptimizerSpec {
                    lr: 0.01,
                    ..base.optimizer.clone()
                },
                ..base.clone()
            },
        ),
        (
            "seed",
            RunSpec {
                seed: 3,
                ..base.clone()
            },
        ),
        (
            "epochs",
            RunSpec {
                training: TrainingSpec {
                    epochs: 7,
                    ..base.training.clone()
                },
                ..base.clone()
            },
        ),
        (
            "kl_reduction",
            RunSpec {
                loss: hkd_rundir::ObjectiveConfig::Hkd(DistillationConfig {
                    kl_reduction: KlReduction::BatchMean,
                    ..*base.loss.as_hkd().unwrap()
                }),
                ..base.clone()
            },
        ),
        (
            "label_smoothing",
            RunSpec {
                loss: hkd_rundir::ObjectiveConfig::Hkd(DistillationConfig {
                    label_smoothing: 0.1,
                    ..*base.loss.as_hkd().unwrap()
                }),
                ..base.clone()
            },
        ),
        (
            "human_smoothing",
            RunSpec {
                loss: hkd_rundir::ObjectiveConfig::Hkd(DistillationConfig {
                    human_smoothing: 0.001,
                    ..*base.loss.as_hkd().unwrap()
                }),
                ..base.clone()
            },
        ),
        (
            "scheduler",
            RunSpec {
                schedule: ScheduleSpec {
                    scheduler: SchedulerKind::Cosine,
                    ..base.schedule.clone()
                },
                ..base.clone()
            },
        ),
        (
            "step_milestones",
            RunSpec {
                schedule: ScheduleSpec {
                    step_milestones: vec![0.3],
                    ..base.schedule.clone()
                },
                ..base.clone()
            },
        ),
        (
            "max_batches",
            RunSpec {
                training: TrainingSpec {
                    max_batches: Some(4),
                    ..base.training.clone()
                },
                ..base.clone()
            },
        ),
        (
            "train_split",
            RunSpec {
                data: DataSpec {
                    train_split: "train8k".into(),
                    ..base.data.clone()
                },
                ..base.clone()
            },
        ),
    ];
    let mut names = std::collections::HashSet::new();
    names.insert(base.run_name());
    for (key, spec) in &variants {
        let name = spec.run_name();
        assert!(name.contains(&format!("+{key}=")), "{key}: {name}");
        assert!(names.insert(name.clone()), "{key}: {name} is not unique");
        assert_eq!(base.identity_differences(spec).len(), 1, "{key}");
    }
    // where the data lies and how the teacher was named are not identity
    let moved = RunSpec {
        data: DataSpec {
            dir: "/elsewhere".into(),
            ..base.data.clone()
        },
        teacher: TeacherChoice {
            teacher: "./human".into(),
            teacher_arch: None,
        },
        ..base.clone()
    };
    assert_eq!(moved.run_name(), base.run_name());
    assert!(base.identity_differences(&moved).is_empty());
    // very long names keep the original part and hash the rest
    let mut long = base.clone();
    long.schedule.step_milestones = (1..=60).map(|i| i as f64 / 60.0).collect();
    let name = long.run_name();
    assert!(name.len() <= 200, "{}", name.len());
    assert!(
        name.starts_with(&base.run_name()) && name.contains("+h="),
        "{name}"
    );
}

#[test]
fn atomically_written_files_honour_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f.txt");
    // SAFETY (test): umask is process-wide; this test restores it and checks only its file.
    let old = unsafe { libc_umask(0o022) };
    write_atomic(&p, b"x").unwrap();
    unsafe { libc_umask(old) };
    let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "{mode:o}");
}

unsafe extern "C" {
    #[link_name = "umask"]
    fn libc_umask(mask: u32) -> u32;
}

#[test]
fn atomic_write_replaces_whole_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f.txt");
    write_atomic(&p, b"first version, long").unwrap();
    write_atomic(&p, b"second").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"second");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temp files left behind");
}
