//! End-to-end runs of the training manager on a tiny synthetic dataset (CPU).

mod common;

use std::path::Path;

use common::*;
use hkd_rundir::{BestRecord, EpochMetrics, RunDir, TeacherSpec};
use hkd_trainer::{NoObserver, Observer, Outcome, StopFlag, TrainError, TrainOptions, train};

const RUN: &str =
    "student_plane2_distil_fn_KL_temperature_h_1.0_temperature_t_1.0_lambda_0.5_gamma_0.0_iter_0";

fn run_ok(o: &TrainOptions) -> (std::path::PathBuf, BestRecord) {
    match train(o, &mut NoObserver, &StopFlag::new()).unwrap() {
        Outcome::Finished { run_dir, best } => (run_dir, best),
        other => panic!("expected a finished run, got {other:?}"),
    }
}

fn metrics(dir: &Path) -> Vec<EpochMetrics> {
    RunDir::new(dir).read_metrics().unwrap()
}

const FILES: [&str; 7] = [
    "best.json",
    "best.safetensors",
    "config.toml",
    "last.json",
    "last.optimizer.safetensors",
    "last.safetensors",
    "metrics.jsonl",
];

#[test]
fn one_epoch_of_each_mode_writes_the_run_directory() {
    let tmp = tmp();
    let data = tmp.path().join("data");
    write_tiny_dataset(&data, 10, 48, 30);
    let out = tmp.path().join("runs");

    // Baseline teacher.
    let (teacher_dir, best) = run_ok(&quick_options(&data, &out, "baseline", 1));
    assert_eq!(teacher_dir, out.join("baseline/plane2").join(RUN));
    assert_eq!(files_of(&teacher_dir), FILES);
    let m = metrics(&teacher_dir);
    assert_eq!(m.len(), 1);
    assert_eq!((m[0].epoch, m[0].lr), (1, 0.05));
    assert!(m[0].train_kd.is_none() && m[0].train_teacher.is_none());
    assert!(m[0].train_hard > 0.5 && m[0].train_hard < 10.0, "{m:?}");
    assert_eq!(m[0].train_total, m[0].train_hard);
    assert!((0.0..=1.0).contains(&m[0].val_acc) && m[0].val_loss > 0.0);
    // 30 validation images: the accuracy is a multiple of 1/30.
    assert!(((m[0].val_acc * 30.0) - (m[0].val_acc * 30.0).round()).abs() < 1e-9);
    assert_eq!(best.epoch, 1);
    assert_eq!(best.val_acc, m[0].val_acc);
    let state = RunDir::new(&teacher_dir).read_state().unwrap();
    assert!(state.finished && state.epochs_completed == 1 && state.batches_into_epoch == 0);
    let config = RunDir::new(&teacher_dir).read_config().unwrap();
    assert_eq!(config.teacher, TeacherSpec::Baseline);
    assert_eq!(config.classes, 10);
    assert_eq!(config.data.manifest_hash.len(), 64);

    // Human mode: the soft part is recorded.
    let (human_dir, _) = run_ok(&quick_options(&data, &out, "human", 1));
    assert_eq!(human_dir, out.join("human/plane2").join(RUN));
    let m = metrics(&human_dir);
    let kd = m[0].train_kd.expect("human mode records the soft part");
    assert!(kd > 0.0);
    // total = (1-λ)·hard + λ·kd holds per batch, hence for the image-weighted means.
    assert!(
        (m[0].train_total - (0.5 * m[0].train_hard + 0.5 * kd)).abs() < 1e-5,
        "{m:?}"
    );

    // Student of the baseline teacher run; γ = 0.25 mixes in the human labels.
    let mut o = quick_options(&data, &out, teacher_dir.to_str().unwrap(), 1);
    o.gamma = 0.25;
    let (student_dir, _) = run_ok(&o);
    let slug = "baseline-plane2-KL-th1.0-tt1.0-l0.5-g0.0-i0";
    assert_eq!(
        student_dir,
        out.join(slug)
            .join("plane2")
            .join("student_plane2_distil_fn_KL_temperature_h_1.0_temperature_t_1.0_lambda_0.5_gamma_0.25_iter_0")
    );
    assert_eq!(files_of(&student_dir), FILES);
    let config = RunDir::new(&student_dir).read_config().unwrap();
    match &config.teacher {
        TeacherSpec::Run { dir, arch, slug: s } => {
            assert_eq!(arch, "plane2");
            assert_eq!(s, slug);
            assert_eq!(dir, &std::fs::canonicalize(&teacher_dir).unwrap());
        }
        other => panic!("{other:?}"),
    }
    let m = metrics(&student_dir);
    let (t, h) = (m[0].train_teacher.unwrap(), m[0].train_human.unwrap());
    assert!(t > 0.0 && h > 0.0);
    assert!((m[0].train_kd.unwrap() - (t + h)).abs() < 1e-5, "{m:?}");

    // γ = 1: the teacher term has weight 0 and the teacher's forward pass is skipped.
    let mut o = quick_options(&data, &out, teacher_dir.to_str().unwrap(), 1);
    o.gamma = 1.0;
    let (human_only_dir, _) = run_ok(&o);
    let m = metrics(&human_only_dir);
    let (t, h) = (m[0].train_teacher.unwrap(), m[0].train_human.unwrap());
    assert_eq!(t, 0.0, "{m:?}");
    assert!(h > 0.0 && m[0].train_kd == Some(h), "{m:?}");

    // best:<dir> picks the finished run with the best validation accuracy.
    let mut o = quick_options(&data, &out, &format!("best:{}", out.display()), 1);
    o.out = tmp.path().join("runs2");
    let plan = hkd_trainer::plan(&o).unwrap();
    let acc = |d: &Path| RunDir::new(d).read_best().unwrap().val_acc;
    let candidates = [&teacher_dir, &human_dir, &student_dir, &human_only_dir];
    let best_acc = candidates.iter().map(|d| acc(d)).fold(f64::MIN, f64::max);
    match &plan.config.teacher {
        TeacherSpec::Run { dir, .. } => assert_eq!(acc(dir), best_acc),
        other => panic!("{other:?}"),
    }

    // A bare weights file: the architecture comes from hkd's safetensors metadata.
    let file = tmp.path().join("teacher.safetensors");
    std::fs::copy(teacher_dir.join("best.safetensors"), &file).unwrap();
    let plan = hkd_trainer::plan(&quick_options(&data, &out, file.to_str().unwrap(), 1)).unwrap();
    match &plan.config.teacher {
        TeacherSpec::Checkpoint { arch, slug, .. } => {
            assert_eq!(arch, "plane2");
            assert!(slug.starts_with("ckpt-plane2-teacher-"), "{slug}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn training_learns_the_tiny_dataset() {
    let tmp = tmp();
    let data = tmp.path().join("data");
    write_tiny_dataset(&data, 4, 96, 40);
    let mut o = quick_options(&data, &tmp.path().join("runs"), "baseline", 4);
    o.scheduler = hkd_rundir::SchedulerKind::Cosine;
    let (dir, best) = run_ok(&o);
    let m = metrics(&dir);
    assert_eq!(m.len(), 4);
    // Cosine over 4 epochs: 0.05, 0.0427, 0.025, 0.0073.
    assert!((m[2].lr - 0.025).abs() < 1e-12, "{m:?}");
    assert!(m[3].train_hard < m[0].train_hard, "{m:?}");
    assert!(best.val_acc >= 0.6, "4 classes, chance 0.25: {m:?}");
}

#[test]
fn same_seed_gives_identical_runs_and_other_seeds_differ() {
    let tmp = tmp();
    let data = tmp.path().join("data");
    write_tiny_dataset(&data, 10, 40, 20);
    let o = quick_options(&data, &tmp.path().join("a"), "human", 2);
    let (a, _) = run_ok(&o);
    let (b, _) = run_ok(&TrainOptions {
        out: tmp.path().join("b"),
        ..o.clone()
    });
    assert_same_run(&a, &b, &["last.safetensors", "last.optimizer.safetensors"]);
    let (c, _) = run_ok(&TrainOptions {
        out: tmp.path().join("c"),
        iter: 1,
        ..o.clone()
    });
    assert!(!same_tensors(
        &a.join("last.safetensors"),
        &c.join("last.safetensors")
    ));
    let (d, _) = run_ok(&TrainOptions {
        out: tmp.path().join("d"),
        seed: 5,
        ..o
    });
    assert_ne!(metrics_without_timing(&a), metrics_without_timing(&d));
}

/// Requests a stop after a given batch of a given epoch.
struct StopAt {
    flag: StopFlag,
    epoch: u32,
    batch: usize,
}

impl Observer for StopAt {
    fn batch_done(&mut self, epoch: u32, batch: usize, _batches: usize, _loss: f64) {
        if epoch == self.epoch && batch == self.batch {
            self.flag.request();
        }
    }
}

#[test]
fn stop_mid_epoch_then_resume_equals_an_uninterrupted_run() {
    let tmp = tmp();
    let data = tmp.path().join("data");
    write_tiny_dataset(&data, 10, 64, 20);
    let mut o = quick_options(&data, &tmp.path().join("full"), "human", 3);
    o.scheduler = hkd_rundir::SchedulerKind::Step;
    let (full, _) = run_ok(&o);

    let mut o2 = o.clone();
    o2.out = tmp.path().join("stopped");
    let flag = StopFlag::new();
    let mut observer = StopAt {
        flag: flag.clone(),
        epoch: 2,
        batch: 2,
    };
    let outcome = train(&o2, &mut observer, &flag).unwrap();
    let dir = match outcome {
        Outcome::Stopped {
            run_dir,
            epochs_completed: 1,
            batches_into_epoch: 2,
        } => run_dir,
        other => panic!("{other:?}"),
    };
    let state = RunDir::new(&dir).read_state().unwrap();
    assert_eq!(
        (
            state.epochs_completed,
            state.batches_into_epoch,
            state.finished
        ),
        (1, 2, false)
    );
    assert_eq!(state.trainer["partial"]["sums"]["images"], 32);
    assert_eq!(metrics(&dir).len(), 1);

    // Without --resume the run is refused; with it, it completes.
    let err = train(&o2, &mut NoObserver, &StopFlag::new()).unwrap_err();
    assert!(matches!(err, TrainError::RunExists { .. }), "{err}");
    assert!(err.to_string().contains("1 of 3 epochs done"), "{err}");
    o2.resume = true;
    let (resumed, _) = run_ok(&o2);
    assert_same_run(
        &full,
        &resumed,
        &[
            "last.safetensors",
            "best.safetensors",
            "last.optimizer.safetensors",
        ],
    );
    assert_eq!(
        RunDir::new(&full).read_best().unwrap(),
        RunDir::new(&resumed).read_best().unwrap()
    );
}

#[test]
fn a_stale_last_json_is_recovered_from_the_optimizer_file() {
    // A stop between writing last.optimizer.safetensors and last.json leaves an old
    // last.json; resume must use the state stored with the optimizer and still match.
    let tmp = tmp();
    let data = tmp.path().join("data");
    write_tiny_dataset(&data, 10, 48, 20);
    let o = quick_options(&data, &tmp.path().join("full"), "baseline", 2);
    let (full, _) = run_ok(&o);

    let mut o2 = o.clone();
    o2.out = tmp.path().join("crash");
    o2.epochs = 2;
    let flag = StopFlag::new();
    let mut observer = StopAt {
        flag: flag.clone(),
        epoch: 1,
        batch: 1,
    };
    let Outcome::Stopped { run_dir, .. } = train(&o2, &mut observer, &flag).unwrap() else {
        panic!("expected a stop");
    };
    let old_last = std::fs::read(run_dir.join("last.json")).unwrap();
    let flag = StopFlag::new();
    let mut observer = StopAt {
        flag: flag.clone(),
        epoch: 2,
        batch: 1,
    };
    o2.resume = true;
    assert!(matches!(
        train(&o2, &mut observer, &flag).unwrap(),
        Outcome::Stopped { .. }
    ));
    std::fs::write(run_dir.join("last.json"), &old_last).unwrap();
    let (resumed, _) = run_ok(&o2);
    assert_same_run(&full, &resumed, &["last.safetensors"]);

    // Weights that belong to no state (a stop between the weights and the optimizer
    // write): the run starts again from epoch 1 and still ends the same.
    let mut o3 = o.clone();
    o3.out = tmp.path().join("crash2");
    let flag = StopFlag::new();
    let mut observer = StopAt {
        flag: flag.clone(),
        epoch: 2,
        batch: 2,
    };
    let Outcome::Stopped { run_dir, .. } = train(&o3, &mut observer, &flag).unwrap() else {
        panic!("expected a stop");
    };
    std::fs::copy(
        run_dir.join("best.safetensors"),
        run_dir.join("last.safetensors"),
    )
    .unwrap();
    o3.resume = true;
    let (restarted, _) = run_ok(&o3);
    assert_same_run(&full, &restarted, &["last.safetensors"]);
}

#[test]
fn existing_runs_are_refused_resumed_or_overwritten() {
    let tmp = tmp();
    let data = tmp.path().join("data");
    write_tiny_dataset(&data, 10, 32, 10);
    let out = tmp.path().join("runs");
    let o = quick_options(&data, &out, "baseline", 1);
    let (dir, _) = run_ok(&o);

    let err = train(&o, &mut NoObserver, &StopFlag::new())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("finished") && err.contains("--resume") && err.contains("--overwrite"),
        "{err}"
    );

    let resumed = TrainOptions {
        resume: true,
        ..o.clone()
    };
    let outcome = train(&resumed, &mut NoObserver, &StopFlag::new()).unwrap();
    assert_eq!(
        outcome,
        Outcome::AlreadyFinished {
            run_dir: dir.clone()
        }
    );

    // --resume where nothing exists yet starts the run.
    let fresh = TrainOptions {
        resume: true,
        iter: 3,
        ..o.clone()
    };
    let (fresh_dir, _) = run_ok(&fresh);
    assert!(fresh_dir.ends_with("student_plane2_distil_fn_KL_temperature_h_1.0_temperature_t_1.0_lambda_0.5_gamma_0.0_iter_3"));

    // --overwrite deletes and starts again (a stray file disappears).
    std::fs::write(dir.join("eval.json"), "{}").unwrap();
    let (again, _) = run_ok(&TrainOptions {
        overwrite: true,
        epochs: 2,
        ..o.clone()
    });
    assert_eq!(again, dir);
    assert!(!dir.join("eval.json").exists());
    assert_eq!(metrics(&dir).len(), 2);

    // Resuming an unfinished run with other settings names the differences.
    let flag = StopFlag::new();
    let mut observer = StopAt {
        flag: flag.clone(),
        epoch: 1,
        batch: 1,
    };
    let o4 = TrainOptions {
        iter: 4,
        ..o.clone()
    };
    assert!(matches!(
        train(&o4, &mut observer, &flag).unwrap(),
        Outcome::Stopped { .. }
    ));
    let err = train(
        &TrainOptions {
            resume: true,
            lr: 0.2,
            ..o4
        },
        &mut NoObserver,
        &StopFlag::new(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("optimizer.lr: 0.05 -> 0.2"), "{err}");

    // A non-run directory in the way is never written into.
    let blocker = TrainOptions { iter: 9, ..o };
    let plan = hkd_trainer::plan(&blocker).unwrap();
    std::fs::create_dir_all(plan.run_dir.path()).unwrap();
    std::fs::write(plan.run_dir.path().join("notes.txt"), "mine").unwrap();
    let err = train(&blocker, &mut NoObserver, &StopFlag::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("not an hkd run directory"), "{err}");
}

#[test]
fn a_diverging_run_stops_with_the_epoch_and_batch() {
    let tmp = tmp();
    let data = tmp.path().join("data");
    write_tiny_dataset(&data, 10, 64, 10);
    let mut o = quick_options(&data, &tmp.path().join("runs"), "baseline", 3);
    o.lr = 1e30;
    o.momentum = 0.0;
    let err = train(&o, &mut NoObserver, &StopFlag::new()).unwrap_err();
    match &err {
        TrainError::NonFiniteLoss {
            epoch,
            batch,
            batches,
            ..
        } => {
            assert_eq!(*batches, 4);
            assert!(*epoch >= 1 && *batch >= 1, "{err}");
        }
        other => panic!("expected a NaN/inf loss error, got {other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("epoch") && msg.contains("batch") && msg.contains("last good checkpoint"),
        "{msg}"
    );
}

#[test]
fn bad_settings_and_teachers_give_clear_errors() {
    let tmp = tmp();
    let data = tmp.path().join("data");
    write_tiny_dataset(&data, 10, 16, 10);
    let out = tmp.path().join("runs");
    let err = |o: TrainOptions| {
        train(&o, &mut NoObserver, &StopFlag::new())
            .unwrap_err()
            .to_string()
    };

    let msg = err(TrainOptions {
        gamma: -0.1,
        ..quick_options(&data, &out, "human", 1)
    });
    assert!(msg.contains("`gamma`") && msg.contains("-0.1"), "{msg}");
    let msg = err(quick_options(&data, &out, "/does/not/exist", 1));
    assert!(
        msg.contains("/does/not/exist") && msg.contains("does not exist"),
        "{msg}"
    );
    let msg = err(quick_options(
        &data,
        &out,
        &format!("best:{}", tmp.path().display()),
        1,
    ));
    assert!(msg.contains("no finished run"), "{msg}");
    let msg = err(quick_options(&tmp.path().join("nodata"), &out, "human", 1));
    assert!(
        msg.contains("nodata") && msg.contains("does not exist"),
        "{msg}"
    );
    let msg = err(TrainOptions {
        val_split: "test".into(),
        ..quick_options(&data, &out, "human", 1)
    });
    assert!(msg.contains("test"), "{msg}");
    let msg = err(TrainOptions {
        device: "tpu".into(),
        ..quick_options(&data, &out, "human", 1)
    });
    assert!(
        msg.contains("tpu") && msg.contains("cpu, cuda:N or auto"),
        "{msg}"
    );
    // A weights file whose content is not a network of the named architecture.
    let bogus = tmp.path().join("teacher.pth");
    std::fs::write(&bogus, b"garbage").unwrap();
    let msg = err(TrainOptions {
        teacher_arch: Some("resnet8".into()),
        ..quick_options(&data, &out, bogus.to_str().unwrap(), 1)
    });
    assert!(
        msg.contains("teacher.pth") && msg.contains("resnet8"),
        "{msg}"
    );
}

#[test]
fn shake_shake_resumes_exactly() {
    // Shake-Shake draws random coefficients in every training forward/backward; they come
    // from a stream keyed by (seed, epoch, batch), so a resumed run draws the same ones.
    let tmp = tmp();
    let data = tmp.path().join("data");
    write_tiny_dataset(&data, 10, 8, 4);
    let mut o = quick_options(&data, &tmp.path().join("full"), "baseline", 1);
    o.student = "shake26-2x16d".into();
    o.batch_size = 4;
    let (full, _) = run_ok(&o);
    let mut o2 = TrainOptions {
        out: tmp.path().join("stopped"),
        ..o
    };
    let flag = StopFlag::new();
    let mut observer = StopAt {
        flag: flag.clone(),
        epoch: 1,
        batch: 1,
    };
    assert!(matches!(
        train(&o2, &mut observer, &flag).unwrap(),
        Outcome::Stopped {
            epochs_completed: 0,
            batches_into_epoch: 1,
            ..
        }
    ));
    o2.resume = true;
    let (resumed, _) = run_ok(&o2);
    assert_same_run(&full, &resumed, &["last.safetensors"]);
}
