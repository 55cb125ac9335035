//! End-to-end runs of the training manager on a tiny synthetic dataset (CPU).

mod common;

use std::path::{Path, PathBuf};

use common::*;
use hkd_rundir::{BestRecord, EpochMetrics, Execution, RunDir, RunSpec, TeacherSpec};
use hkd_trainer::{NoObserver, Observer, Outcome, StopFlag, TrainError, train};

fn run_ok(spec: &RunSpec, execution: &Execution) -> (PathBuf, BestRecord) {
    match train(spec, execution, &mut NoObserver, &StopFlag::new()).unwrap() {
        Outcome::Finished { run_dir, best } => (run_dir, best),
        other => panic!("expected a finished run, got {other:?}"),
    }
}

fn train_err(spec: &RunSpec, execution: &Execution) -> TrainError {
    match train(spec, execution, &mut NoObserver, &StopFlag::new()) {
        Err(e) => e,
        Ok(outcome) => panic!("expected an error, got {outcome:?}"),
    }
}

/// `execution` with `--resume`.
fn resuming(execution: &Execution) -> Execution {
    Execution {
        resume: true,
        ..execution.clone()
    }
}

fn metrics(dir: &Path) -> Vec<EpochMetrics> {
    RunDir::new(dir).read_metrics().unwrap()
}

/// The files of a finished run; the lock file stays (only the OS lock on it is released).
const FILES: [&str; 8] = [
    ".lock",
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
    let (spec, ex) = quick(&data, &out, "baseline", 1);
    // The original's name, then every other setting not at its default, by section.
    assert_eq!(
        spec.run_name(),
        "student_plane2_distil_fn_KL_temperature_h_1.0_temperature_t_1.0_lambda_0.5_gamma_0.0_iter_0+lr=0.05+batch_size=16+epochs=1+eval_batch_size=64"
    );
    let (teacher_dir, best) = run_ok(&spec, &ex);
    assert_eq!(
        teacher_dir,
        out.join("baseline/plane2").join(spec.run_name())
    );
    assert_eq!(files_of(&teacher_dir), FILES);
    let m = metrics(&teacher_dir);
    assert_eq!(m.len(), 1);
    assert_eq!((m[0].epoch, m[0].lr), (1, 0.05));
    assert!(m[0].part("kd").is_none() && m[0].part("teacher").is_none());
    assert!(
        m[0].part("hard").unwrap() > 0.5 && m[0].part("hard").unwrap() < 10.0,
        "{m:?}"
    );
    assert_eq!(m[0].train_total, m[0].part("hard").unwrap());
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
    assert_eq!(config.dataset_hash.len(), 64);
    assert_eq!(config.run_name, spec.run_name());
    assert_eq!(config.device, "cpu");
    // The stored specification is the given one, with the dataset directory absolute.
    let mut recorded = spec.clone();
    recorded.data.dir = std::fs::canonicalize(&data).unwrap();
    assert_eq!(config.spec, recorded);
    assert_eq!(config.run_dir_in(&out).path(), teacher_dir);

    // Human mode: the soft part is recorded.
    let (spec, ex) = quick(&data, &out, "human", 1);
    let (human_dir, _) = run_ok(&spec, &ex);
    assert_eq!(human_dir, out.join("human/plane2").join(spec.run_name()));
    let m = metrics(&human_dir);
    let kd = m[0].part("kd").expect("human mode records the soft part");
    assert!(kd > 0.0);
    // total = (1-λ)·hard + λ·kd holds per batch, hence for the image-weighted means.
    assert!(
        (m[0].train_total - (0.5 * m[0].part("hard").unwrap() + 0.5 * kd)).abs() < 1e-5,
        "{m:?}"
    );

    // Student of the baseline teacher run; γ = 0.25 mixes in the human labels.
    let (mut spec, ex) = quick(&data, &out, teacher_dir.to_str().unwrap(), 1);
    spec.loss.as_hkd_mut().unwrap().gamma = 0.25;
    let (student_dir, _) = run_ok(&spec, &ex);
    let teacher_spec = RunDir::new(&teacher_dir).read_config().unwrap().spec;
    let slug = teacher_spec.teacher_slug("baseline");
    assert_eq!(
        slug,
        "baseline-plane2-KL-th1.0-tt1.0-l0.5-g0.0-i0+lr=0.05+batch_size=16+epochs=1+eval_batch_size=64"
    );
    assert_eq!(
        student_dir,
        out.join(&slug).join("plane2").join(spec.run_name())
    );
    assert!(spec.run_name().contains("_gamma_0.25_iter_0+"));
    assert_eq!(files_of(&student_dir), FILES);
    let config = RunDir::new(&student_dir).read_config().unwrap();
    match &config.teacher {
        TeacherSpec::Run { dir, arch, slug: s } => {
            assert_eq!(arch, "plane2");
            assert_eq!(s, &slug);
            assert_eq!(dir, &std::fs::canonicalize(&teacher_dir).unwrap());
        }
        other => panic!("{other:?}"),
    }
    let m = metrics(&student_dir);
    let (t, h) = (m[0].part("teacher").unwrap(), m[0].part("human").unwrap());
    assert!(t > 0.0 && h > 0.0);
    assert!((m[0].part("kd").unwrap() - (t + h)).abs() < 1e-5, "{m:?}");

    // γ = 1: the teacher term has weight 0 and the teacher's forward pass is skipped.
    let (mut spec, ex) = quick(&data, &out, teacher_dir.to_str().unwrap(), 1);
    spec.loss.as_hkd_mut().unwrap().gamma = 1.0;
    let (human_only_dir, _) = run_ok(&spec, &ex);
    let m = metrics(&human_only_dir);
    let (t, h) = (m[0].part("teacher").unwrap(), m[0].part("human").unwrap());
    assert_eq!(t, 0.0, "{m:?}");
    assert!(h > 0.0 && m[0].part("kd") == Some(h), "{m:?}");

    // best:<dir> picks the finished run with the best validation accuracy.
    let (spec, _) = quick(&data, &out, &format!("best:{}", out.display()), 1);
    let plan = hkd_trainer::plan(&spec, &execution(&tmp.path().join("runs2"))).unwrap();
    let acc = |d: &Path| RunDir::new(d).read_best().unwrap().val_acc;
    let candidates = [&teacher_dir, &human_dir, &student_dir, &human_only_dir];
    let best_acc = candidates.iter().map(|d| acc(d)).fold(f64::MIN, f64::max);
    match &plan.config.teacher {
        TeacherSpec::Run { dir, .. } => assert_eq!(acc(dir), best_acc),
        other => panic!("{other:?}"),
    }
    assert!(!tmp.path().join("runs2").exists(), "plan writes nothing");

    // A bare weights file: the architecture comes from hkd's safetensors metadata.
    let file = tmp.path().join("teacher.safetensors");
    std::fs::copy(teacher_dir.join("best.safetensors"), &file).unwrap();
    let (spec, ex) = quick(&data, &out, file.to_str().unwrap(), 1);
    let plan = hkd_trainer::plan(&spec, &ex).unwrap();
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
    let (mut spec, ex) = quick(&data, &tmp.path().join("runs"), "baseline", 4);
    spec.schedule.scheduler = hkd_rundir::SchedulerKind::Cosine;
    let (dir, best) = run_ok(&spec, &ex);
    assert!(dir.ends_with(spec.run_name()));
    assert!(
        spec.run_name().contains("+scheduler=cosine+"),
        "{}",
        spec.run_name()
    );
    let m = metrics(&dir);
    assert_eq!(m.len(), 4);
    // Cosine over 4 epochs: 0.05, 0.0427, 0.025, 0.0073.
    assert!((m[2].lr - 0.025).abs() < 1e-12, "{m:?}");
    assert!(
        m[3].part("hard").unwrap() < m[0].part("hard").unwrap(),
        "{m:?}"
    );
    assert!(best.val_acc >= 0.6, "4 classes, chance 0.25: {m:?}");
}

#[test]
fn same_seed_gives_identical_runs_and_other_seeds_differ() {
    let tmp = tmp();
    let data = tmp.path().join("data");
    write_tiny_dataset(&data, 10, 40, 20);
    let (spec, _) = quick(&data, &tmp.path().join("a"), "human", 2);
    let (a, _) = run_ok(&spec, &execution(&tmp.path().join("a")));
    let (b, _) = run_ok(&spec, &execution(&tmp.path().join("b")));
    assert_same_run(&a, &b, &["last.safetensors", "last.optimizer.safetensors"]);
    let (c, _) = run_ok(
        &RunSpec {
            iter: 1,
            ..spec.clone()
        },
        &execution(&tmp.path().join("c")),
    );
    assert!(!same_tensors(
        &a.join("last.safetensors"),
        &c.join("last.safetensors")
    ));
    let (d, _) = run_ok(
        &RunSpec { seed: 5, ..spec },
        &execution(&tmp.path().join("d")),
    );
    // Top-level settings come first in the name's suffix.
    let name = d.file_name().unwrap().to_str().unwrap();
    assert!(name.contains("_iter_0+seed=5+lr=0.05+"), "{name}");
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

/// Trains until the stop after `batch` of `epoch`, and returns the run directory.
fn train_until(spec: &RunSpec, execution: &Execution, epoch: u32, batch: usize) -> PathBuf {
    let flag = StopFlag::new();
    let mut observer = StopAt {
        flag: flag.clone(),
        epoch,
        batch,
    };
    match train(spec, execution, &mut observer, &flag).unwrap() {
        Outcome::Stopped { run_dir, .. } => run_dir,
        other => panic!("expected a stop, got {other:?}"),
    }
}

#[test]
fn stop_mid_epoch_then_resume_equals_an_uninterrupted_run() {
    let tmp = tmp();
    let data = tmp.path().join("data");
    write_tiny_dataset(&data, 10, 64, 20);
    let (mut spec, ex) = quick(&data, &tmp.path().join("full"), "human", 3);
    spec.schedule.scheduler = hkd_rundir::SchedulerKind::Step;
    let (full, _) = run_ok(&spec, &ex);

    let ex2 = execution(&tmp.path().join("stopped"));
    let flag = StopFlag::new();
    let mut observer = StopAt {
        flag: flag.clone(),
        epoch: 2,
        batch: 2,
    };
    let outcome = train(&spec, &ex2, &mut observer, &flag).unwrap();
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
    let err = train_err(&spec, &ex2);
    assert!(matches!(err, TrainError::RunExists { .. }), "{err}");
    assert!(err.to_string().contains("1 of 3 epochs done"), "{err}");
    let (resumed, _) = run_ok(&spec, &resuming(&ex2));
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
    let (spec, ex) = quick(&data, &tmp.path().join("full"), "baseline", 2);
    let (full, _) = run_ok(&spec, &ex);

    let ex2 = execution(&tmp.path().join("crash"));
    let run_dir = train_until(&spec, &ex2, 1, 1);
    let old_last = std::fs::read(run_dir.join("last.json")).unwrap();
    train_until(&spec, &resuming(&ex2), 2, 1);
    std::fs::write(run_dir.join("last.json"), &old_last).unwrap();
    let (resumed, _) = run_ok(&spec, &resuming(&ex2));
    assert_same_run(&full, &resumed, &["last.safetensors"]);

    // Weights that belong to no state (a stop between the weights and the optimizer
    // write): the run starts again from epoch 1 and still ends the same.
    let ex3 = execution(&tmp.path().join("crash2"));
    let run_dir = train_until(&spec, &ex3, 2, 2);
    std::fs::copy(
        run_dir.join("best.safetensors"),
        run_dir.join("last.safetensors"),
    )
    .unwrap();
    let (restarted, _) = run_ok(&spec, &resuming(&ex3));
    assert_same_run(&full, &restarted, &["last.safetensors"]);
}

#[test]
fn existing_runs_are_refused_resumed_or_overwritten() {
    let tmp = tmp();
    let data = tmp.path().join("data");
    write_tiny_dataset(&data, 10, 32, 10);
    let out = tmp.path().join("runs");
    let (spec, ex) = quick(&data, &out, "baseline", 1);
    let (dir, _) = run_ok(&spec, &ex);

    let err = train_err(&spec, &ex).to_string();
    assert!(
        err.contains("finished") && err.contains("--resume") && err.contains("--overwrite"),
        "{err}"
    );

    let outcome = train(&spec, &resuming(&ex), &mut NoObserver, &StopFlag::new()).unwrap();
    assert_eq!(
        outcome,
        Outcome::AlreadyFinished {
            run_dir: dir.clone()
        }
    );

    // --resume where nothing exists yet starts the run.
    let fresh = RunSpec {
        iter: 3,
        ..spec.clone()
    };
    let (fresh_dir, _) = run_ok(&fresh, &resuming(&ex));
    assert!(fresh_dir.ends_with(fresh.run_name()));
    assert!(
        fresh.run_name().contains("_iter_3+"),
        "{}",
        fresh.run_name()
    );

    // --overwrite deletes and starts again (a stray file disappears). The same
    // specification with 2 epochs is another run (another directory): overwrite the
    // 1-epoch run with itself.
    std::fs::write(dir.join("eval.json"), "{}").unwrap();
    let before = std::fs::read(dir.join("metrics.jsonl")).unwrap();
    let overwrite = Execution {
        overwrite: true,
        ..ex.clone()
    };
    let (again, _) = run_ok(&spec, &overwrite);
    assert_eq!(again, dir);
    assert!(!dir.join("eval.json").exists());
    assert_eq!(files_of(&dir), FILES);
    assert_eq!(metrics(&dir).len(), 1);
    // Same seed, same result: the rewritten metrics equal the deleted ones (timing aside).
    let timing_free = |text: &[u8]| -> Vec<serde_json::Value> {
        String::from_utf8_lossy(text)
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v.as_object_mut().unwrap().remove("seconds");
                v.as_object_mut().unwrap().remove("images_per_s");
                v
            })
            .collect()
    };
    assert_eq!(timing_free(&before), metrics_without_timing(&dir));
    let two = RunSpec {
        training: hkd_rundir::TrainingSpec {
            epochs: 2,
            ..spec.training.clone()
        },
        ..spec.clone()
    };
    let (two_dir, _) = run_ok(&two, &overwrite);
    assert_ne!(two_dir, dir);
    assert_eq!(metrics(&two_dir).len(), 2);

    // A changed setting is another run: resuming a stopped run with another learning
    // rate starts that other run and leaves the stopped one alone.
    let stopped_spec = RunSpec {
        iter: 4,
        ..spec.clone()
    };
    let stopped = train_until(&stopped_spec, &ex, 1, 1);
    let last = std::fs::read(stopped.join("last.json")).unwrap();
    let mut other_lr = stopped_spec.clone();
    other_lr.optimizer.lr = 0.2;
    let (other_dir, _) = run_ok(&other_lr, &resuming(&ex));
    assert_ne!(other_dir, stopped);
    assert!(other_dir.ends_with(other_lr.run_name()));
    assert!(
        other_lr.run_name().contains("+lr=0.2+"),
        "{}",
        other_lr.run_name()
    );
    assert_eq!(std::fs::read(stopped.join("last.json")).unwrap(), last);

    // A non-run directory in the way is never written into.
    let blocker = RunSpec { iter: 9, ..spec };
    let plan = hkd_trainer::plan(&blocker, &ex).unwrap();
    std::fs::create_dir_all(plan.run_dir.path()).unwrap();
    std::fs::write(plan.run_dir.path().join("notes.txt"), "mine").unwrap();
    let err = train_err(&blocker, &ex).to_string();
    assert!(err.contains("not an hkd run directory"), "{err}");
    assert_eq!(files_of(plan.run_dir.path()), ["notes.txt"]);
}

#[test]
fn a_diverging_run_stops_with_the_epoch_and_batch() {
    let tmp = tmp();
    let data = tmp.path().join("data");
    write_tiny_dataset(&data, 10, 64, 10);
    let (mut spec, ex) = quick(&data, &tmp.path().join("runs"), "baseline", 3);
    spec.optimizer.lr = 1e30;
    spec.optimizer.momentum = 0.0;
    let err = train_err(&spec, &ex);
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
    let human = || quick(&data, &out, "human", 1);
    let err = |(spec, ex): (RunSpec, Execution)| train_err(&spec, &ex);

    let (mut spec, ex) = human();
    spec.loss.as_hkd_mut().unwrap().gamma = -0.1;
    let e = err((spec, ex));
    assert!(
        matches!(&e, TrainError::Setting(s) if s.key == "gamma"),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains("`gamma`") && msg.contains("-0.1"), "{msg}");
    let (mut spec, ex) = human();
    spec.optimizer.momentum = 1.0;
    let msg = err((spec, ex)).to_string();
    assert!(
        msg.contains("`momentum`") && msg.contains("[0, 1)"),
        "{msg}"
    );
    let msg = err(quick(&data, &out, "/does/not/exist", 1)).to_string();
    assert!(
        msg.contains("/does/not/exist") && msg.contains("does not exist"),
        "{msg}"
    );
    let msg = err(quick(
        &data,
        &out,
        &format!("best:{}", tmp.path().display()),
        1,
    ))
    .to_string();
    assert!(msg.contains("no finished run"), "{msg}");
    let msg = err(quick(&tmp.path().join("nodata"), &out, "human", 1)).to_string();
    assert!(
        msg.contains("nodata") && msg.contains("does not exist"),
        "{msg}"
    );
    let (mut spec, ex) = human();
    spec.data.val_split = "test".into();
    let msg = err((spec, ex)).to_string();
    assert!(msg.contains("test"), "{msg}");
    let (spec, mut ex) = human();
    ex.device = "tpu".into();
    let msg = err((spec, ex)).to_string();
    assert!(
        msg.contains("tpu") && msg.contains("cuda:N or auto"),
        "{msg}"
    );
    // A weights file whose content is not a network of the named architecture.
    let bogus = tmp.path().join("teacher.pth");
    std::fs::write(&bogus, b"garbage").unwrap();
    let (mut spec, ex) = quick(&data, &out, bogus.to_str().unwrap(), 1);
    spec.teacher.teacher_arch = Some("resnet8".into());
    let msg = err((spec, ex)).to_string();
    assert!(
        msg.contains("teacher.pth") && msg.contains("resnet8"),
        "{msg}"
    );
    assert!(!out.exists(), "failed starts create no directory");
}

#[test]
fn shake_shake_resumes_exactly() {
    // Shake-Shake draws random coefficients in every training forward/backward; they come
    // from a stream keyed by (seed, epoch, batch), so a resumed run draws the same ones.
    let tmp = tmp();
    let data = tmp.path().join("data");
    write_tiny_dataset(&data, 10, 8, 4);
    let (mut spec, ex) = quick(&data, &tmp.path().join("full"), "baseline", 1);
    spec.student = "shake26-2x16d".into();
    spec.training.batch_size = 4;
    let (full, _) = run_ok(&spec, &ex);
    let ex2 = execution(&tmp.path().join("stopped"));
    let flag = StopFlag::new();
    let mut observer = StopAt {
        flag: flag.clone(),
        epoch: 1,
        batch: 1,
    };
    assert!(matches!(
        train(&spec, &ex2, &mut observer, &flag).unwrap(),
        Outcome::Stopped {
            epochs_completed: 0,
            batches_into_epoch: 1,
            ..
        }
    ));
    let (resumed, _) = run_ok(&spec, &resuming(&ex2));
    assert_same_run(&full, &resumed, &["last.safetensors"]);
}

/// Every file of a run directory but its lock, with its bytes.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    files_of(dir)
        .into_iter()
        .filter(|f| f != RunDir::LOCK)
        .map(|f| {
            let bytes = std::fs::read(dir.join(&f)).unwrap();
            (f, bytes)
        })
        .collect()
}

/// Edits the run's stored `config.toml` as a TOML table.
fn edit_stored_config(dir: &Path, edit: impl FnOnce(&mut toml::Table)) {
    let path = dir.join(RunDir::CONFIG);
    let mut table: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    edit(&mut table);
    std::fs::write(&path, toml::to_string(&table).unwrap()).unwrap();
}

/// The table at `path` (e.g. `["spec", "optimizer"]`) of a TOML table.
fn section<'a>(table: &'a mut toml::Table, path: &[&str]) -> &'a mut toml::Table {
    path.iter().fold(table, |t, key| {
        t.get_mut(*key)
            .and_then(toml::Value::as_table_mut)
            .unwrap_or_else(|| panic!("no table `{key}`"))
    })
}

/// Asserts that `err` refuses the run because its stored specification differs, exactly
/// by `differences` (`key: stored -> given`).
fn assert_mismatch(err: &TrainError, dir: &Path, differences: &[&str]) {
    match err {
        TrainError::ConfigMismatch {
            dir: d,
            differences: found,
        } => {
            assert_eq!(d, dir);
            assert_eq!(found, differences, "{err}");
        }
        other => panic!("expected a refusal naming {differences:?}, got {other}"),
    }
    let msg = err.to_string();
    for d in differences {
        assert!(msg.contains(d), "{msg}");
    }
}

#[test]
fn a_stored_specification_that_differs_is_refused_whatever_the_runs_state() {
    let tmp = tmp();
    let data = tmp.path().join("data");
    write_tiny_dataset(&data, 10, 48, 10);
    let out = tmp.path().join("runs");

    // A finished run whose config.toml says lr 0.1 where the request says 0.05.
    let (spec, ex) = quick(&data, &out, "baseline", 1);
    let (dir, _) = run_ok(&spec, &ex);
    edit_stored_config(&dir, |t| {
        section(t, &["spec", "optimizer"]).insert("lr".into(), toml::Value::Float(0.1));
    });
    let before = snapshot(&dir);
    // --resume would otherwise say "already finished" and exit 0: the comparison comes
    // first. Without --resume and with it, the same refusal; nothing is written.
    for ex in [resuming(&ex), ex.clone()] {
        let err = train_err(&spec, &ex);
        assert_mismatch(&err, &dir, &["lr: 0.1 -> 0.05"]);
        assert_eq!(snapshot(&dir), before);
    }

    // An unfinished run (stopped after batch 1 of epoch 2 of 2) with two settings edited.
    let (spec, ex) = quick(&data, &out, "baseline", 2);
    let dir = train_until(&spec, &ex, 2, 1);
    assert_eq!(metrics(&dir).len(), 1);
    edit_stored_config(&dir, |t| {
        section(t, &["spec", "optimizer"]).insert("lr".into(), toml::Value::Float(0.1));
        section(t, &["spec", "loss"]).insert("gamma".into(), toml::Value::Float(0.5));
    });
    let before = snapshot(&dir);
    let err = train_err(&spec, &resuming(&ex));
    assert_mismatch(&err, &dir, &["gamma: 0.5 -> 0.0", "lr: 0.1 -> 0.05"]);
    assert_eq!(snapshot(&dir), before);
    // Put back, the same request resumes and finishes the run.
    edit_stored_config(&dir, |t| {
        section(t, &["spec", "optimizer"]).insert("lr".into(), toml::Value::Float(0.05));
        section(t, &["spec", "loss"]).insert("gamma".into(), toml::Value::Float(0.0));
    });
    run_ok(&spec, &resuming(&ex));
    assert_eq!(metrics(&dir).len(), 2);
}

/// An hkd 0.1 `config.toml` (no `[spec]`) of a baseline run of `spec` on `data`.
fn legacy_config(spec: &RunSpec, data: &Path, lr: f64) -> String {
    let hash = hkd_datasets::DatasetDir::open(data)
        .unwrap()
        .manifest_hash()
        .unwrap();
    format!(
        r#"hkd_version = "0.1.0"
run_name = "{name}"
student = "{student}"
classes = 10
seed = {seed}
iter = {iter}
device = "cpu"

[teacher]
kind = "baseline"

[distillation]
lambda = 0.5
gamma = 0.0
temperature_teacher = 1.0
temperature_human = 1.0
distil_fn = "KL"
kl_reduction = "elementwise_mean"
human_smoothing = 0.02

[optimizer]
epochs = {epochs}
batch_size = {batch_size}
lr = {lr:?}
momentum = 0.9
weight_decay = 0.0001
scheduler = "plateau"

[data]
dir = {dir:?}
manifest_hash = "{hash}"
train_split = "train"
val_split = "val"
"#,
        name = spec.run_name(),
        student = spec.student,
        seed = spec.seed,
        iter = spec.iter,
        epochs = spec.training.epochs,
        batch_size = spec.training.batch_size,
        dir = data.display().to_string(),
    )
}

#[test]
fn a_legacy_config_is_compared_like_a_current_one() {
    let tmp = tmp();
    let data = tmp.path().join("data");
    write_tiny_dataset(&data, 10, 32, 10);
    let out = tmp.path().join("runs");
    // hkd 0.1 had no eval batch size in config.toml: it reads as the default.
    let (mut spec, ex) = quick(&data, &out, "baseline", 1);
    spec.training.eval_batch_size = hkd_rundir::TrainingSpec::default().eval_batch_size;
    let (dir, _) = run_ok(&spec, &ex);

    // The same run as hkd 0.1 described it: --resume finds it finished.
    std::fs::write(dir.join(RunDir::CONFIG), legacy_config(&spec, &data, 0.05)).unwrap();
    let before = snapshot(&dir);
    let outcome = train(&spec, &resuming(&ex), &mut NoObserver, &StopFlag::new()).unwrap();
    assert_eq!(
        outcome,
        Outcome::AlreadyFinished {
            run_dir: dir.clone()
        }
    );
    assert_eq!(snapshot(&dir), before);

    // Trained with another learning rate: refused, nothing touched.
    std::fs::write(dir.join(RunDir::CONFIG), legacy_config(&spec, &data, 0.1)).unwrap();
    let before = snapshot(&dir);
    let err = train_err(&spec, &resuming(&ex));
    assert_mismatch(&err, &dir, &["lr: 0.1 -> 0.05"]);
    assert_eq!(snapshot(&dir), before);
}

#[test]
fn another_dataset_at_the_same_place_is_refused() {
    let tmp = tmp();
    let data = tmp.path().join("data");
    write_tiny_dataset(&data, 10, 48, 10);
    let (spec, ex) = quick(&data, &tmp.path().join("runs"), "baseline", 2);
    let dir = train_until(&spec, &ex, 1, 1);
    let stored_hash = RunDir::new(&dir).read_config().unwrap().dataset_hash;
    std::fs::remove_dir_all(&data).unwrap();
    write_tiny_dataset(&data, 10, 32, 10);
    let before = snapshot(&dir);
    let err = train_err(&spec, &resuming(&ex));
    match &err {
        TrainError::ConfigMismatch { differences, .. } => {
            assert_eq!(differences.len(), 1, "{err}");
            assert!(
                differences[0].starts_with(&format!("dataset_hash: {stored_hash} -> ")),
                "{err}"
            );
        }
        other => panic!("expected a refusal, got {other}"),
    }
    assert_eq!(snapshot(&dir), before);
}

#[test]
fn a_locked_run_is_refused_even_with_overwrite() {
    let tmp = tmp();
    let data = tmp.path().join("data");
    write_tiny_dataset(&data, 10, 32, 10);
    let (spec, ex) = quick(&data, &tmp.path().join("runs"), "baseline", 1);
    let (dir, _) = run_ok(&spec, &ex);
    let before = snapshot(&dir);
    // Another trainer holds the run (an flock on another open file: the same process
    // counts as another holder).
    let held = RunDir::new(&dir).lock().unwrap();
    let overwrite = Execution {
        overwrite: true,
        ..ex.clone()
    };
    for ex in [ex.clone(), resuming(&ex), overwrite.clone()] {
        let err = train_err(&spec, &ex);
        assert!(
            matches!(&err, TrainError::RunDir(hkd_rundir::RunDirError::Locked { dir: d, .. }) if d == &dir),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("in use by another hkd-train")
                && msg.contains(&format!("process {}", std::process::id())),
            "{msg}"
        );
        assert_eq!(snapshot(&dir), before, "a refused request touches nothing");
    }
    // A run that does not exist yet is locked before anything is written into it.
    let other = RunSpec {
        iter: 1,
        ..spec.clone()
    };
    let other_dir = hkd_trainer::plan(&other, &ex).unwrap().run_dir;
    let held_other = other_dir.lock().unwrap();
    let err = train_err(&other, &ex);
    assert!(
        err.to_string().contains("in use by another hkd-train"),
        "{err}"
    );
    assert_eq!(files_of(other_dir.path()), [RunDir::LOCK]);
    drop(held_other);
    run_ok(&other, &ex);

    // Released, the lock is taken again, and held while the run trains.
    drop(held);
    let mut probe = LockProbe::default();
    let outcome = train(&spec, &overwrite, &mut probe, &StopFlag::new()).unwrap();
    assert!(matches!(outcome, Outcome::Finished { run_dir, .. } if run_dir == dir));
    assert_eq!(probe.refused.len(), 2, "one probe per batch");
    assert!(probe.refused.iter().all(|r| *r), "{:?}", probe.refused);
    assert_eq!(files_of(&dir), FILES);
    // And released when the call returns.
    drop(RunDir::new(&dir).lock().unwrap());
}

/// Tries to take the run's lock after every batch, recording whether it was refused.
#[derive(Default)]
struct LockProbe {
    dir: Option<PathBuf>,
    refused: Vec<bool>,
}

impl Observer for LockProbe {
    fn run_started(&mut self, info: &hkd_trainer::RunInfo) {
        self.dir = Some(info.run_dir.clone());
    }

    fn batch_done(&mut self, _epoch: u32, _batch: usize, _batches: usize, _loss: f64) {
        let run = RunDir::new(self.dir.as_ref().unwrap());
        let taken = run.lock();
        self.refused
            .push(matches!(taken, Err(hkd_rundir::RunDirError::Locked { .. })));
    }
}

#[test]
fn scratch_files_left_by_a_crash_are_not_in_the_way() {
    let tmp = tmp();
    let data = tmp.path().join("data");
    write_tiny_dataset(&data, 10, 32, 10);
    let (spec, ex) = quick(&data, &tmp.path().join("runs"), "baseline", 2);
    // A directory that holds only a lock and an interrupted write's temporary file is
    // not foreign: the run starts, and the temporary file goes.
    let run = hkd_trainer::plan(&spec, &ex).unwrap().run_dir;
    run.create().unwrap();
    std::fs::write(run.file(RunDir::LOCK), "process 1 on elsewhere").unwrap();
    std::fs::write(run.file(".hkd-abc123.tmp"), "half a file").unwrap();
    let dir = train_until(&spec, &ex, 2, 1);
    assert_eq!(dir, run.path());
    assert!(!run.file(".hkd-abc123.tmp").exists());
    // The same at resume time.
    std::fs::write(run.file(".hkd-def456.tmp"), "half a file").unwrap();
    run_ok(&spec, &resuming(&ex));
    assert_eq!(files_of(&dir), FILES);
}

#[test]
fn what_can_fail_before_training_fails_before_the_run_directory_exists() {
    let tmp = tmp();
    let data = tmp.path().join("data");
    write_tiny_dataset(&data, 10, 32, 10);
    let teachers = tmp.path().join("teachers");
    let (teacher_spec, ex) = quick(&data, &teachers, "baseline", 1);
    let (teacher, _) = run_ok(&teacher_spec, &ex);
    let students = tmp.path().join("students");
    let (spec, ex) = quick(&data, &students, teacher.to_str().unwrap(), 1);

    // The teacher run's weights are not loadable.
    let weights = teacher.join(RunDir::BEST_WEIGHTS);
    let good = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, b"not a safetensors file").unwrap();
    let err = train_err(&spec, &ex);
    assert!(matches!(err, TrainError::Teacher { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("best.safetensors") && msg.contains("plane2"),
        "{msg}"
    );
    assert!(!students.exists(), "{msg}");

    // A teacher of another dataset (4 classes for 10).
    let small = tmp.path().join("small");
    write_tiny_dataset(&small, 4, 16, 8);
    // (Another --out: the dataset is not part of a run's name, so the same settings on
    // another dataset at the same --out would be the refused "same run, other dataset".)
    let (four_spec, four_ex) = quick(&small, &tmp.path().join("teachers4"), "baseline", 1);
    let (four, _) = run_ok(&four_spec, &four_ex);
    let msg = train_err(&quick(&data, &students, four.to_str().unwrap(), 1).0, &ex).to_string();
    assert!(msg.contains("4 classes") && msg.contains("10"), "{msg}");
    assert!(!students.exists(), "{msg}");

    // An unknown student or teacher architecture, a missing dataset or split.
    let mut bad = spec.clone();
    bad.student = "resnet9000x".into();
    let msg = train_err(&bad, &ex).to_string();
    assert!(msg.contains("resnet9000x"), "{msg}");
    let bogus = tmp.path().join("weights.safetensors");
    std::fs::write(&bogus, b"garbage").unwrap();
    let (mut bad, _) = quick(&data, &students, bogus.to_str().unwrap(), 1);
    bad.teacher.teacher_arch = Some("resnet9000x".into());
    let msg = train_err(&bad, &ex).to_string();
    assert!(msg.contains("resnet9000x"), "{msg}");
    bad.teacher.teacher_arch = Some("resnet8".into());
    let msg = train_err(&bad, &ex).to_string();
    assert!(
        msg.contains("weights.safetensors") && msg.contains("resnet8"),
        "{msg}"
    );
    let msg = train_err(
        &quick(&tmp.path().join("nodata"), &students, "baseline", 1).0,
        &ex,
    )
    .to_string();
    assert!(msg.contains("nodata"), "{msg}");
    let mut bad = spec.clone();
    bad.data.train_split = "nosuchsplit".into();
    let msg = train_err(&bad, &ex).to_string();
    assert!(msg.contains("nosuchsplit"), "{msg}");
    assert!(!students.exists(), "{msg}");

    // Fixed, the same request (no --resume) trains.
    std::fs::write(&weights, good).unwrap();
    let (dir, _) = run_ok(&spec, &ex);
    assert!(dir.starts_with(&students));
}

#[test]
fn student_mode_with_gamma_0_needs_no_human_labels() {
    let tmp = tmp();
    let data = tmp.path().join("data");
    write_dataset(&data, 10, 32, 10, false);
    let out = tmp.path().join("runs");
    let (teacher_spec, ex) = quick(&data, &out, "baseline", 1);
    let (teacher, _) = run_ok(&teacher_spec, &ex);

    let (spec, ex) = quick(&data, &out, teacher.to_str().unwrap(), 1);
    assert_eq!(spec.loss.as_hkd().unwrap().gamma, 0.0);
    let (dir, _) = run_ok(&spec, &ex);
    let m = metrics(&dir);
    assert!(m[0].part("teacher").unwrap() > 0.0, "{m:?}");
    assert_eq!(m[0].part("human"), Some(0.0), "{m:?}");

    // γ > 0 needs them: refused before its directory exists.
    let mut with_human = spec.clone();
    with_human.loss.as_hkd_mut().unwrap().gamma = 0.25;
    let slug = RunDir::new(&teacher).read_config().unwrap().teacher_slug();
    let would_be = out.join(slug).join("plane2").join(with_human.run_name());
    let msg = train_err(&with_human, &ex).to_string();
    assert!(msg.contains("human label"), "{msg}");
    assert!(!would_be.exists(), "{msg}");
    // So is human mode.
    let msg = train_err(&quick(&data, &out, "human", 1).0, &ex).to_string();
    assert!(msg.contains("human label"), "{msg}");
    assert!(!out.join("human").exists(), "{msg}");
}

#[test]
fn label_smoothing_is_part_of_the_run() {
    let tmp = tmp();
    let data = tmp.path().join("data");
    write_tiny_dataset(&data, 10, 32, 10);
    let (plain, ex) = quick(&data, &tmp.path().join("runs"), "baseline", 1);
    let mut smoothed = plain.clone();
    smoothed.loss.as_hkd_mut().unwrap().label_smoothing = 0.1;
    // The name: the plain one with the setting inserted in its section's place.
    let name = smoothed.run_name();
    assert_eq!(
        name,
        plain
            .run_name()
            .replace("_iter_0+", "_iter_0+label_smoothing=0.1+")
    );
    let (a, _) = run_ok(&plain, &ex);
    let (b, _) = run_ok(&smoothed, &ex);
    assert!(b.ends_with(&name));
    let config = RunDir::new(&b).read_config().unwrap();
    assert_eq!(config.spec.loss.as_hkd().unwrap().label_smoothing, 0.1);
    assert_eq!(config.run_name, name);
    let (ma, mb) = (metrics(&a), metrics(&b));
    assert_ne!(
        ma[0].part("hard").unwrap(),
        mb[0].part("hard").unwrap(),
        "{ma:?} {mb:?}"
    );
}
