use std::path::Path;

use hkd_rundir::*;

fn config(student: &str, teacher: TeacherSpec, lambda: f64, iter: u32) -> RunConfig {
    RunConfig {
        hkd_version: HKD_VERSION.to_string(),
        run_name: run_name(student, DistilFn::KL, 1.0, 1.0, lambda, 0.0, iter),
        student: student.into(),
        classes: 10,
        seed: 7,
        iter,
        teacher,
        distillation: DistillationSettings {
            lambda,
            gamma: 0.0,
            temperature_teacher: 1.0,
            temperature_human: 1.0,
            distil_fn: DistilFn::KL,
            kl_reduction: KlReduction::Batchmean,
            human_smoothing: 0.02,
        },
        optimizer: OptimizerSettings {
            epochs: 3,
            batch_size: 128,
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 1e-4,
            scheduler: SchedulerKind::Plateau,
        },
        data: DataSettings {
            dir: "/data/x".into(),
            manifest_hash: "abc".into(),
            train_split: "train".into(),
            val_split: "val".into(),
        },
        device: "cpu".into(),
    }
}

fn epoch(e: u32, val_acc: f64) -> EpochMetrics {
    EpochMetrics {
        epoch: e,
        lr: 0.1,
        train_hard: 2.0,
        train_kd: Some(0.5),
        train_teacher: None,
        train_human: Some(0.5),
        train_total: 1.25,
        train_acc: 0.3,
        val_acc,
        val_loss: 1.5,
        seconds: 1.0,
        images_per_s: 1000.0,
    }
}

fn make_run(out: &Path, c: &RunConfig, best_acc: Option<f64>, finished: bool) -> RunDir {
    let run = RunDir::in_output(out, c.teacher.slug(), &c.student, &c.run_name);
    run.create().unwrap();
    run.write_config(c).unwrap();
    if let Some(acc) = best_acc {
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
        "human/resnet8/student_resnet8_distil_fn_KL_temperature_h_1.0_temperature_t_1.0_lambda_0.6_gamma_0.0_iter_1"
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

    let runs = find_run_dirs(out).unwrap();
    assert_eq!(runs.len(), 4);
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
fn teacher_slug_is_readable() {
    let c = config("resnet20", TeacherSpec::Human, 1.0, 0);
    assert_eq!(
        teacher_slug(&c),
        "human-resnet20-KL-th1.0-tt1.0-l1.0-g0.0-i0"
    );
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
