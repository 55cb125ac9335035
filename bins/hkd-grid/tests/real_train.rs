//! hkd-grid with the real hkd-train (target/debug) and the local executor, on the
//! embedded fixtures (`fixtures/cifar10h-mini`, plane2, one batch per epoch: about a
//! second a run):
//! - a grid over any setting of the run specification (`lr`, `seed`, `epochs`,
//!   `kl-reduction`) gives one run directory per value, each trained fresh and holding its
//!   own value in config.toml; running the same grid again skips every run as finished;
//! - a finished run whose stored specification differs from its task's is not skipped:
//!   the task runs, and hkd-train refuses it naming the differing key.
//!
//! Needs hkd-train built (`cargo build -p hkd-train`); without it the tests say SKIPPED
//! on stderr and pass, except in CI (`CI=true`).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::{
    assert_current, find_hkd_train, hkd_grid, only_grid, run, skip_or_fail, workspace_root,
};
use hkd_rundir::{KlReduction, RunConfig, RunDir, RunSpec};
use hkd_slurm::{GridDir, TaskState};
use hkd_test_support::{copy_tree, flip_a_low_bit};

/// The real hkd-train, checked to have every flag hkd-grid knows in-process (a stale build
/// fails loudly instead of failing every task); `None` (after saying SKIPPED) when it is
/// not built or the fixtures are missing.
fn real_train(test: &str) -> Option<PathBuf> {
    let Some(train) = find_hkd_train() else {
        skip_or_fail(test, "hkd-train is not built (cargo build -p hkd-train)");
        return None;
    };
    if !fixture().join("dataset.toml").is_file() {
        let why = format!("the fixture dataset is missing at {}", fixture().display());
        skip_or_fail(test, &why);
        return None;
    }
    assert_current(&train);
    Some(train)
}

fn fixture() -> PathBuf {
    workspace_root().join("fixtures/cifar10h-mini")
}

/// The settings every grid here shares: a run takes about a second.
fn fast_spec() -> RunSpec {
    let mut spec = RunSpec {
        student: "plane2".into(),
        ..RunSpec::default()
    };
    spec.training.epochs = 1;
    spec.training.max_batches = Some(1);
    spec
}

struct Work {
    tmp: tempfile::TempDir,
    bin_dir: PathBuf,
    launches: std::cell::Cell<usize>,
}

impl Work {
    fn new(train: &Path) -> Work {
        Work {
            tmp: tempfile::tempdir().unwrap(),
            bin_dir: train.parent().unwrap().to_path_buf(),
            launches: std::cell::Cell::new(0),
        }
    }

    fn path(&self) -> &Path {
        self.tmp.path()
    }

    fn runs(&self) -> PathBuf {
        self.path().join("runs")
    }

    /// Writes `<name>.toml`: the fast settings, then `axis` (one `key = [...]` line),
    /// unless it sets `epochs` itself.
    fn config(&self, name: &str, axis: &str) -> PathBuf {
        let epochs = if axis.starts_with("epochs") {
            ""
        } else {
            "epochs = 1\n"
        };
        let path = self.path().join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                "name = \"{name}\"\nbinary = \"hkd-train\"\nexecutor = \"local\"\n[grid]\ndata = {:?}\nout = \"runs\"\nteacher = \"human\"\nstudent = \"plane2\"\ndevice = \"cpu\"\nthreads = 1\nmax-batches = 1\n{epochs}{axis}\n",
                fixture().to_string_lossy()
            ),
        )
        .unwrap();
        path
    }

    /// Runs `hkd-grid <config> --jobs 2` here (each time into a grids folder of its
    /// own); returns (exit code, stderr, the grid directory).
    fn grid(&self, config: &Path) -> (i32, String, GridDir) {
        let n = self.launches.get();
        self.launches.set(n + 1);
        let grids = self.path().join(format!("grids-{n}"));
        let (code, _, stderr) = run(hkd_grid()
            .current_dir(self.path())
            .env("HKD_BIN_DIR", &self.bin_dir)
            .args([config.to_str().unwrap(), "--jobs", "2", "--grids-dir"])
            .arg(&grids));
        (code, stderr, GridDir::open(&only_grid(&grids)).unwrap())
    }
}

fn states(dir: &GridDir, n: usize) -> Vec<TaskState> {
    (0..n)
        .map(|i| dir.read_state(i).unwrap().expect("a state file per task"))
        .collect()
}

fn logs(dir: &GridDir, n: usize) -> String {
    (0..n)
        .map(|i| std::fs::read_to_string(dir.log_path(i)).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs the grid `axis` (`specs`: the specification of each task, in task order): every
/// task trains a fresh run in a directory of its own, named by the
/// specification and holding it in config.toml; the same grid again skips them all.
fn fresh_then_skipped(test: &str, axis: &str, specs: Vec<RunSpec>) {
    let Some(train) = real_train(test) else {
        return;
    };
    let n = specs.len();
    let work = Work::new(&train);
    let config = work.config(test, axis);
    let started = std::time::Instant::now();
    let (code, stderr, dir) = work.grid(&config);
    assert_eq!(code, 0, "{stderr}\n{}", logs(&dir, n));
    assert!(
        stderr.contains(&format!("{n} tasks: {n} ok (0 already finished), 0 failed")),
        "{stderr}"
    );
    let first = states(&dir, n);
    let mut seen = BTreeSet::new();
    for (i, (state, spec)) in first.iter().zip(&specs).enumerate() {
        assert_eq!(
            (state.action.as_str(), state.exit_code),
            ("fresh", Some(0)),
            "task {i}: {state:?}"
        );
        assert!(
            stderr.contains(&format!("task {i} done (fresh,")),
            "task {i}: {stderr}"
        );
        let run_dir = state
            .run_dir
            .clone()
            .expect("a train task knows its run dir");
        // the directory is the one the specification names, under the resolved teacher
        assert_eq!(
            run_dir,
            work.runs().join("human/plane2").join(spec.run_name()),
            "task {i}"
        );
        assert!(seen.insert(run_dir.clone()), "task {i} shares {run_dir:?}");
        let run = RunDir::new(&run_dir);
        assert!(run.is_finished(), "task {i}: {}", logs(&dir, n));
        let stored: RunConfig = run.read_config().unwrap();
        assert!(
            stored.spec.identity_differences(spec).is_empty(),
            "task {i}: config.toml holds {:?}",
            stored.spec.identity_differences(spec)
        );
        assert_eq!(stored.run_name, spec.run_name());
        let epochs: Vec<u32> = run
            .read_metrics()
            .unwrap()
            .iter()
            .map(|m| m.epoch)
            .collect();
        assert_eq!(epochs, (1..=spec.training.epochs).collect::<Vec<_>>());
    }
    assert_eq!(seen.len(), n);
    let trained = started.elapsed().as_secs_f64();

    // the same grid again: every run is finished with the same specification
    let before: Vec<_> = first
        .iter()
        .map(|s| {
            std::fs::metadata(RunDir::new(s.run_dir.as_ref().unwrap()).file(RunDir::LAST))
                .unwrap()
                .modified()
                .unwrap()
        })
        .collect();
    let (code, stderr, again) = work.grid(&config);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{n} tasks: {n} ok ({n} already finished), 0 failed"
        )),
        "{stderr}"
    );
    for (i, state) in states(&again, n).iter().enumerate() {
        assert_eq!(
            (state.action.as_str(), state.exit_code),
            ("skip", Some(0)),
            "task {i}"
        );
        assert_eq!(state.run_dir, first[i].run_dir);
        let log = std::fs::read_to_string(again.log_path(i)).unwrap();
        assert!(log.contains("already finished: skipped"), "{log}");
    }
    let after: Vec<_> = first
        .iter()
        .map(|s| {
            std::fs::metadata(RunDir::new(s.run_dir.as_ref().unwrap()).file(RunDir::LAST))
                .unwrap()
                .modified()
                .unwrap()
        })
        .collect();
    assert_eq!(before, after, "a skipped run was written to");
    let (code, stdout, _) = run(hkd_grid().args(["status"]).arg(again.path()));
    assert_eq!(code, 0);
    assert!(stdout.contains(&format!("{n} tasks: {n} done")), "{stdout}");
    eprintln!(
        "{test}: {n} runs trained in {trained:.1} s, skipped in {:.1} s",
        started.elapsed().as_secs_f64() - trained
    );
}

/// `n` fast specifications, the i-th changed by `set(spec, i)`.
fn specs(n: usize, set: impl Fn(&mut RunSpec, usize)) -> Vec<RunSpec> {
    (0..n)
        .map(|i| {
            let mut spec = fast_spec();
            set(&mut spec, i);
            spec
        })
        .collect()
}

#[test]
fn an_lr_grid_trains_one_run_per_learning_rate() {
    let lrs = [0.1, 0.01, 0.001];
    fresh_then_skipped(
        "an_lr_grid_trains_one_run_per_learning_rate",
        "lr = [0.1, 0.01, 0.001]",
        specs(lrs.len(), |s, i| s.optimizer.lr = lrs[i]),
    );
}

#[test]
fn a_seed_grid_trains_one_run_per_seed() {
    let seeds = [0u64, 1, 2];
    fresh_then_skipped(
        "a_seed_grid_trains_one_run_per_seed",
        "seed = [0, 1, 2]",
        specs(seeds.len(), |s, i| s.seed = seeds[i]),
    );
}

#[test]
fn an_epochs_grid_trains_one_run_per_length() {
    let epochs = [1u32, 2];
    fresh_then_skipped(
        "an_epochs_grid_trains_one_run_per_length",
        "epochs = [1, 2]",
        specs(epochs.len(), |s, i| s.training.epochs = epochs[i]),
    );
}

#[test]
fn a_kl_reduction_grid_trains_one_run_per_reduction() {
    let reductions = [KlReduction::BatchMean, KlReduction::ElementwiseMean];
    fresh_then_skipped(
        "a_kl_reduction_grid_trains_one_run_per_reduction",
        "kl-reduction = [\"batchmean\", \"elementwise_mean\"]",
        specs(reductions.len(), |s, i| {
            s.loss.as_hkd_mut().unwrap().kl_reduction = reductions[i]
        }),
    );
}

#[test]
fn a_finished_run_of_another_specification_fails_its_task() {
    const TEST: &str = "a_finished_run_of_another_specification_fails_its_task";
    let Some(train) = real_train(TEST) else {
        return;
    };
    let work = Work::new(&train);
    let config = work.config(TEST, "lr = [0.01]");
    let (code, stderr, dir) = work.grid(&config);
    assert_eq!(code, 0, "{stderr}\n{}", logs(&dir, 1));
    let finished = RunDir::new(dir.read_state(0).unwrap().unwrap().run_dir.unwrap());
    assert!(finished.is_finished());
    // the stored specification is edited: another learning rate, same place
    let mut stored = finished.read_config().unwrap();
    stored.spec.optimizer.lr = 0.05;
    finished.write_config(&stored).unwrap();
    let metrics_before = std::fs::read(finished.file(RunDir::METRICS)).unwrap();

    let (code, stderr, again) = work.grid(&config);
    assert_eq!(code, 1, "the refused task fails the command: {stderr}");
    assert!(
        stderr.contains("1 tasks: 0 ok (0 already finished), 1 failed"),
        "{stderr}"
    );
    let state = again.read_state(0).unwrap().unwrap();
    assert_eq!(state.action, "run", "not skipped: {state:?}");
    assert_ne!(state.exit_code, Some(0));
    assert_eq!(state.argv.last().map(String::as_str), Some("--resume"));
    let log = std::fs::read_to_string(again.log_path(0)).unwrap();
    assert!(
        log.contains("differs from the settings given in lr: 0.05 -> 0.01"),
        "hkd-train's message must name the key: {log}"
    );
    let (_, stdout, _) = run(hkd_grid().args(["status"]).arg(again.path()));
    assert!(stdout.contains("1 tasks: 1 failed"), "{stdout}");
    // nothing of the stored run was touched
    assert_eq!(finished.read_config().unwrap(), stored);
    assert_eq!(
        std::fs::read(finished.file(RunDir::METRICS)).unwrap(),
        metrics_before
    );
}

#[test]
fn a_finished_run_whose_dataset_or_teacher_changed_is_not_skipped() {
    const TEST: &str = "a_finished_run_whose_dataset_or_teacher_changed_is_not_skipped";
    let Some(train) = real_train(TEST) else {
        return;
    };
    let work = Work::new(&train);
    let data = work.path().join("data");
    copy_tree(&fixture(), &data);
    let on_copy = |config: PathBuf| {
        let text = std::fs::read_to_string(&config).unwrap().replace(
            &format!("{:?}", fixture().to_string_lossy()),
            &format!("{:?}", data.to_string_lossy()),
        );
        std::fs::write(&config, text).unwrap();
        config
    };
    let config = on_copy(work.config(TEST, "lr = [0.01]"));
    let (code, stderr, dir) = work.grid(&config);
    assert_eq!(code, 0, "{stderr}\n{}", logs(&dir, 1));
    let (code, stderr, _) = work.grid(&config);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("1 tasks: 1 ok (1 already finished), 0 failed"),
        "{stderr}"
    );

    // one pixel of the training images changes
    let images = data.join("train/images.npy");
    let was = hkd_rundir::sha256_file(&images).unwrap();
    flip_a_low_bit(&images);
    let now = hkd_rundir::sha256_file(&images).unwrap();
    let (code, stderr, again) = work.grid(&config);
    assert_eq!(code, 1, "refused, not skipped: {stderr}");
    assert!(
        stderr.contains("1 tasks: 0 ok (0 already finished), 1 failed"),
        "{stderr}"
    );
    let state = again.read_state(0).unwrap().unwrap();
    assert_eq!(state.action, "run", "{state:?}");
    let log = std::fs::read_to_string(again.log_path(0)).unwrap();
    let both = format!("train/images.npy sha256 {} -> {}", &was[..12], &now[..12]);
    assert!(log.contains(&both) && log.contains("--overwrite"), "{log}");
    // hkd-grid status, on this grid and on the first (whose task ended 0), says so
    for grid in [again.path(), dir.path()] {
        let (_, stdout, _) = run(hkd_grid().args(["status"]).arg(grid));
        assert!(stdout.contains("1 tasks: 1 failed"), "{stdout}");
        assert!(
            stdout.contains("finished from other inputs") && stdout.contains(&both),
            "{stdout}"
        );
    }
    flip_a_low_bit(&images);
    let (code, stderr, _) = work.grid(&config);
    assert_eq!(code, 0, "the same bytes again: finished again: {stderr}");

    // a student of that run; then the teacher's best weights change
    let teacher = RunDir::new(dir.read_state(0).unwrap().unwrap().run_dir.unwrap());
    let students = work.path().join("students.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("name = \"", "name = \"students-")
        .replace(
            "teacher = \"human\"",
            &format!("teacher = {:?}", teacher.path().to_string_lossy()),
        )
        .replace("out = \"runs\"", "out = \"students\"");
    std::fs::write(&students, text).unwrap();
    let (code, stderr, first) = work.grid(&students);
    assert_eq!(code, 0, "{stderr}\n{}", logs(&first, 1));
    let weights = teacher.file(RunDir::BEST_WEIGHTS);
    let was = hkd_rundir::sha256_file(&weights).unwrap();
    flip_a_low_bit(&weights);
    let now = hkd_rundir::sha256_file(&weights).unwrap();
    let (code, stderr, again) = work.grid(&students);
    assert_eq!(code, 1, "refused, not skipped: {stderr}");
    let log = std::fs::read_to_string(again.log_path(0)).unwrap();
    assert!(
        log.contains(&format!("sha256 {} -> {}", &was[..12], &now[..12]))
            && log.contains("the teacher was retrained or replaced"),
        "{log}"
    );
}

/// The binary `name` built beside hkd-grid, if it is.
fn sibling(name: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_BIN_EXE_hkd-grid")).parent()?;
    Some(dir.join(name)).filter(|p| p.is_file())
}

#[test]
fn an_archived_study_resumes_in_a_fresh_checkout_without_its_weights() {
    const TEST: &str = "an_archived_study_resumes_in_a_fresh_checkout_without_its_weights";
    let Some(train) = real_train(TEST) else {
        return;
    };
    let (Some(eval), Some(analyze)) = (sibling("hkd-eval"), sibling("hkd-analyze")) else {
        return skip_or_fail(
            TEST,
            "hkd-eval or hkd-analyze is not built (cargo build --workspace --bins)",
        );
    };
    let script = workspace_root().join("scripts/study-archive.sh");
    let work = Work::new(&train);
    let config = work.config(TEST, "lr = [0.01, 0.02]");
    let (code, stderr, dir) = work.grid(&config);
    assert_eq!(code, 0, "{stderr}\n{}", logs(&dir, 2));
    let runs = work.runs();
    let val = format!("val={}:val", fixture().display());
    let o = std::process::Command::new(&eval)
        .args([
            "run",
            runs.to_str().unwrap(),
            "--set",
            &val,
            "--device",
            "cpu",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let archive = work.path().join("archive");
    let (code, out, err) = run(std::process::Command::new(&script).args([
        "archive",
        runs.to_str().unwrap(),
        archive.to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("archived 2 finished, evaluated runs"), "{out}");
    let mut files = Vec::new();
    for run_dir in hkd_rundir::find_run_dirs(&archive).unwrap() {
        let names: BTreeSet<String> = std::fs::read_dir(run_dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names
                .iter()
                .all(|n| !n.ends_with(".safetensors") && n != ".lock"),
            "{names:?}"
        );
        for needed in [
            "config.toml",
            "last.json",
            "best.json",
            "metrics.jsonl",
            "eval.json",
        ] {
            assert!(names.contains(needed), "{needed} archived: {names:?}");
        }
        files.push(names);
    }
    assert_eq!(files.len(), 2);

    // a fresh checkout: no runs; restored from the archive, the grid has nothing to train
    std::fs::remove_dir_all(&runs).unwrap();
    let (code, out, err) = run(std::process::Command::new(&script).args([
        "restore",
        archive.to_str().unwrap(),
        runs.to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("restored 2 runs"), "{out}");
    let (code, stderr, _) = work.grid(&config);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("2 tasks: 2 ok (2 already finished), 0 failed"),
        "{stderr}"
    );
    // hkd-eval keeps their reports (no weights to evaluate), hkd-analyze reads them
    let o = std::process::Command::new(&eval)
        .args([
            "run",
            runs.to_str().unwrap(),
            "--set",
            &val,
            "--device",
            "cpu",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && text.contains("0 runs evaluated, 2 skipped, 0 failed"),
        "{text}"
    );
    let o = std::process::Command::new(&analyze)
        .arg(&runs)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(runs.join("analysis/runs.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "both archived runs analysed: {csv}");
    assert!(
        csv.lines().next().unwrap().contains("eval_val_acc"),
        "with their evaluation"
    );
    // restoring again keeps what is there
    let (_, out, _) = run(std::process::Command::new(&script).args([
        "restore",
        archive.to_str().unwrap(),
        runs.to_str().unwrap(),
    ]));
    assert!(
        out.contains("restored 0 runs") && out.contains("2 already there"),
        "{out}"
    );
}
