//! hkd-grid against a real Slurm (the one-node cluster of `scripts/local-slurm.sh`) with
//! the real hkd-train on a cut of `fixtures/cifar10h-mini` (128 training images, 64 for
//! validation: a run takes seconds):
//! - an array grid and a multiprog grid run, and every run directory is complete;
//! - a pipeline's students start only after its teachers finished (afterok), and a failed
//!   teacher cancels its students;
//! - `scancel` in the middle of a run, then `resubmit --failed`, resumes it;
//! - a GPU request on the GPU-less node is refused at submit with Slurm's message;
//! - a grid over `lr` (on the fixture itself) trains one fresh run per value, and the
//!   same grid submitted again skips them all as finished.
//!
//! Needs `sinfo` answering, `hkd-train` built and the fixture dataset. Where one is
//! missing the test says so loudly and passes, except in CI (`CI=true`) where it fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{assert_current, find_hkd_train, hkd_grid, run, skip_or_fail, workspace_root};
use hkd_rundir::{RunConfig, RunDir, RunSpec, find_run_dirs};

/// The first `rows` rows of an `.npy` file (C order, format 1.0 or 2.0), as a new `.npy`.
fn npy_head(from: &Path, to: &Path, rows: usize) {
    let bytes = std::fs::read(from).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{} is not .npy", from.display());
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
    };
    let header = std::str::from_utf8(&bytes[start..start + header_len]).unwrap();
    let descr = header
        .split("'descr':")
        .nth(1)
        .unwrap()
        .split('\'')
        .nth(1)
        .unwrap()
        .to_string();
    let item: usize = descr[2..].parse().unwrap();
    let shape_text = header.split('(').nth(1).unwrap().split(')').next().unwrap();
    let shape: Vec<usize> = shape_text
        .split(',')
        .filter_map(|d| d.trim().parse().ok())
        .collect();
    let row: usize = shape[1..].iter().product::<usize>() * item;
    assert!(shape[0] >= rows, "{} has {} rows", from.display(), shape[0]);
    let mut new_shape = vec![rows.to_string()];
    new_shape.extend(shape[1..].iter().map(|d| d.to_string()));
    let mut dict = format!(
        "{{'descr': '{descr}', 'fortran_order': False, 'shape': ({}{}), }}",
        new_shape.join(", "),
        if shape.len() == 1 { "," } else { "" }
    );
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((dict.len() as u16).to_le_bytes());
    out.extend(dict.as_bytes());
    let data = start + header_len;
    out.extend(&bytes[data..data + rows * row]);
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::write(to, out).unwrap();
}

/// A cut of the fixture dataset small enough that a run takes seconds: 128 training
/// images with their human labels, 64 validation images.
fn tiny_dataset(fixture: &Path, to: &Path) {
    for (split, rows, files) in [
        ("train", 128, &["images", "labels", "human"][..]),
        ("val", 64, &["images", "labels"][..]),
    ] {
        for f in files {
            npy_head(
                &fixture.join(format!("{split}/{f}.npy")),
                &to.join(format!("{split}/{f}.npy")),
                rows,
            );
        }
    }
    std::fs::write(
        to.join("dataset.toml"),
        concat!(
            "format_version = 1\nname = \"grid-test\"\n",
            "classes = [\"airplane\", \"automobile\", \"bird\", \"cat\", \"deer\", \"dog\", \"frog\", \"horse\", \"ship\", \"truck\"]\n",
            "[normalization]\nmean = [0.4914, 0.4822, 0.4465]\nstd = [0.2023, 0.1994, 0.2010]\n",
            "[splits.train]\nimages = \"train/images.npy\"\nlabels = \"train/labels.npy\"\nhuman = \"train/human.npy\"\n",
            "[splits.val]\nimages = \"val/images.npy\"\nlabels = \"val/labels.npy\"\n",
        ),
    )
    .unwrap();
}

fn slurm_answers() -> bool {
    Command::new("sinfo")
        .args(["-h", "-o", "%T"])
        .output()
        .map(|o| {
            let state = String::from_utf8_lossy(&o.stdout);
            o.status.success()
                && ["idle", "mixed", "allocated"]
                    .iter()
                    .any(|s| state.contains(s))
        })
        .unwrap_or(false)
}

struct Env {
    tmp: tempfile::TempDir,
    bin_dir: PathBuf,
    data: PathBuf,
}

impl Env {
    fn path(&self) -> &Path {
        self.tmp.path()
    }

    fn grid(&self, args: &[&str]) -> (i32, String, String) {
        run(hkd_grid()
            .current_dir(self.path())
            .env("HKD_BIN_DIR", &self.bin_dir)
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .args(args))
    }

    /// A train config: `grid` lines appended to the fixture settings, `slurm` lines.
    fn config(&self, name: &str, grid: &str, slurm: &str) -> PathBuf {
        let path = self.path().join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                "name = \"{name}\"\nbinary = \"hkd-train\"\nexecutor = \"slurm\"\n[grid]\ndata = {:?}\nstudent = \"resnet8\"\nthreads = 1\nbatch-size = 32\neval-batch-size = 64\n{grid}\n[slurm]\ncpus_per_task = 1\nmem = \"1500M\"\ntime = 10\n{slurm}\n",
                self.data.to_string_lossy()
            ),
        )
        .unwrap();
        path
    }

    /// Submits a grid; returns its directory and job ids.
    fn submit(&self, config: &Path) -> (PathBuf, Vec<String>) {
        let grids = self.path().join("grids");
        let before: Vec<PathBuf> = list_dirs(&grids);
        let (code, stdout, stderr) = self.grid(&[
            config.to_str().unwrap(),
            "--grids-dir",
            grids.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "hkd-grid {}: {stderr}", config.display());
        let dir = list_dirs(&grids)
            .into_iter()
            .find(|d| !before.contains(d))
            .expect("a new grid directory");
        let ids: Vec<String> = stdout.trim().split(',').map(str::to_string).collect();
        assert!(
            ids.iter()
                .all(|i| !i.is_empty() && i.chars().all(|c| c.is_ascii_digit())),
            "{stdout}"
        );
        (dir, ids)
    }
}

fn list_dirs(root: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(root)
        .map(|rd| {
            rd.map(|e| e.unwrap().path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until none of `ids` is in the queue.
fn wait_gone(ids: &[String], limit: Duration) {
    let start = Instant::now();
    loop {
        let out = Command::new("squeue")
            .args(["-h", "-o", "%A", "-j", &ids.join(",")])
            .output()
            .unwrap();
        // squeue errors once every id is purged: that also means gone
        if !out.status.success() || String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "jobs {ids:?} still queued after {} s:\n{}",
            limit.as_secs(),
            String::from_utf8_lossy(&out.stdout)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn logs_of(grid: &Path) -> String {
    let mut text = String::new();
    for dir in [grid.join("logs")] {
        for entry in std::fs::read_dir(&dir).into_iter().flatten() {
            let p = entry.unwrap().path();
            text.push_str(&format!(
                "--- {}\n{}\n",
                p.display(),
                std::fs::read_to_string(&p).unwrap_or_default()
            ));
        }
    }
    text
}

fn status(env: &Env, grid: &Path) -> String {
    let (code, stdout, stderr) = env.grid(&["status", grid.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    stdout
}

fn state(grid: &Path, index: usize) -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(grid.join(format!("state/task-{index}.json"))).unwrap(),
    )
    .unwrap()
}

fn finished_runs(root: &Path) -> Vec<RunDir> {
    find_run_dirs(root)
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.is_finished())
        .collect()
}

fn assert_complete(run: &RunDir, epochs: u32) {
    for f in [
        RunDir::CONFIG,
        RunDir::METRICS,
        RunDir::BEST,
        RunDir::BEST_WEIGHTS,
        RunDir::LAST,
        RunDir::LAST_WEIGHTS,
    ] {
        assert!(run.file(f).is_file(), "{} lacks {f}", run.path().display());
    }
    let metrics = run.read_metrics().unwrap();
    let epochs_seen: Vec<u32> = metrics.iter().map(|m| m.epoch).collect();
    assert_eq!(
        epochs_seen,
        (1..=epochs).collect::<Vec<_>>(),
        "{}",
        run.path().display()
    );
}

#[test]
fn grids_pipelines_resubmission_and_refusals_on_a_real_slurm() {
    const TEST: &str = "grids_pipelines_resubmission_and_refusals_on_a_real_slurm";
    if !slurm_answers() {
        return skip_or_fail(
            TEST,
            "no Slurm answers `sinfo` (start one with `sudo scripts/local-slurm.sh`)",
        );
    }
    let Some(train) = find_hkd_train() else {
        return skip_or_fail(TEST, "hkd-train is not built (cargo build -p hkd-train)");
    };
    // HKD_FIXTURE_DIR: another copy of the fixture layout (development only)
    let fixture = std::env::var_os("HKD_FIXTURE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("fixtures/cifar10h-mini"));
    if !fixture.join("dataset.toml").is_file() {
        let why = format!("the fixture dataset is missing at {}", fixture.display());
        return skip_or_fail(TEST, &why);
    }
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    tiny_dataset(&fixture, &data);
    let env = Env {
        tmp,
        bin_dir: train.parent().unwrap().to_path_buf(),
        data,
    };
    let fast = "epochs = 1\nmax-batches = 2\n";

    // --- a GPU request is refused at submit, with Slurm's own words
    let gpu = env.config("gpu", &format!("{fast}out = \"runs-gpu\"\n"), "gpus = 1\n");
    let (code, _, stderr) = env.grid(&[
        gpu.to_str().unwrap(),
        "--grids-dir",
        env.path().join("grids").to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("sbatch") && stderr.contains("refused"),
        "{stderr}"
    );
    assert!(
        stderr.contains("error:"),
        "Slurm's message must reach the user: {stderr}"
    );
    let gpu_grid = list_dirs(&env.path().join("grids"))[0].clone();
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(gpu_grid.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(
        manifest["submissions"].as_array().unwrap().len(),
        0,
        "nothing was accepted"
    );

    // --- submit everything at once; the cluster runs it side by side
    let array = env.config(
        "array",
        &format!("{fast}out = \"runs-array\"\nlambda = [0.5, 1.0]\n"),
        "max_concurrent = 2\n",
    );
    let (array_dir, array_ids) = env.submit(&array);
    let multi = env.config(
        "multi",
        &format!("{fast}out = \"runs-multi\"\nlambda = [0.25, 0.5, 0.75]\n"),
        "mode = \"multiprog\"\ntasks_per_job = 2\n",
    );
    let (multi_dir, multi_ids) = env.submit(&multi);
    assert_eq!(multi_ids.len(), 2, "3 tasks, 2 per allocation");
    // long enough to be cancelled half-way
    let long = env.config(
        "long",
        "epochs = 4\nmax-batches = 2\nout = \"runs-long\"\n",
        "",
    );
    let (long_dir, long_ids) = env.submit(&long);

    // a pipeline: teachers -> students of the best teacher; and one whose teacher fails
    let teacher = env.config(
        "teacher",
        &format!("{fast}out = \"runs-pipe/teachers\"\nlambda = 1.0\n"),
        "",
    );
    std::fs::write(
        env.path().join("pipe.toml"),
        format!(
            "name = \"pipe\"\n[[stage]]\nname = \"teachers\"\nconfig = {:?}\n[[stage]]\nname = \"students\"\nconfig = {:?}\nafter = [\"teachers\"]\n[stage.grid]\nout = \"runs-pipe/students\"\nteacher = \"best:runs-pipe/teachers\"\n\n",
            teacher.to_string_lossy(),
            teacher.to_string_lossy()
        ),
    )
    .unwrap();
    std::fs::write(
        env.path().join("broken.toml"),
        format!(
            "name = \"broken\"\n[[stage]]\nname = \"teachers\"\nconfig = {:?}\n[stage.grid]\ndata = \"/nonexistent/dataset\"\nout = \"runs-broken/teachers\"\n[[stage]]\nname = \"students\"\nconfig = {:?}\nafter = [\"teachers\"]\n[stage.grid]\nout = \"runs-broken/students\"\n",
            teacher.to_string_lossy(),
            teacher.to_string_lossy()
        ),
    )
    .unwrap();
    let pipes = env.path().join("pipes");
    for file in ["pipe.toml", "broken.toml"] {
        let (code, _, stderr) =
            env.grid(&["pipeline", file, "--grids-dir", pipes.to_str().unwrap()]);
        assert_eq!(code, 0, "{stderr}");
        assert!(stderr.contains("(after teachers)"), "{stderr}");
    }
    let pipe_dirs = list_dirs(&pipes);
    let pipe_dir = pipe_dirs
        .iter()
        .find(|d| d.to_string_lossy().ends_with("-pipe"))
        .unwrap()
        .clone();
    let broken_dir = pipe_dirs
        .iter()
        .find(|d| d.to_string_lossy().ends_with("-broken"))
        .unwrap()
        .clone();
    let stage_dir = |root: &Path, n: &str| {
        list_dirs(root)
            .into_iter()
            .find(|d| d.to_string_lossy().ends_with(n))
            .unwrap()
    };

    // --- scancel the long run once it has a checkpoint, then resubmit: it resumes
    let long_run_root = env.path().join("runs-long");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut cancelled_at = None;
    while Instant::now() < deadline {
        let runs = find_run_dirs(&long_run_root).unwrap_or_default();
        if let Some(run) = runs.first()
            && let Ok(st) = run.read_state()
            && st.epochs_completed >= 1
        {
            assert!(
                !st.finished,
                "the long run finished before it could be cancelled; make it longer"
            );
            let out = Command::new("scancel").args(&long_ids).output().unwrap();
            assert!(out.status.success());
            cancelled_at = Some(st.epochs_completed);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let cancelled_at = cancelled_at
        .unwrap_or_else(|| panic!("the long run never checkpointed:\n{}", logs_of(&long_dir)));
    wait_gone(&long_ids, Duration::from_secs(60));
    let st = status(&env, &long_dir);
    assert!(st.contains("1 failed"), "a cancelled task is failed:\n{st}");
    let (code, stdout, stderr) = env.grid(&["resubmit", long_dir.to_str().unwrap(), "--failed"]);
    assert_eq!(code, 0, "{stderr}");
    let resubmitted: Vec<String> = stdout.trim().split(',').map(str::to_string).collect();

    // --- wait for everything
    let mut all: Vec<String> = [array_ids, multi_ids, resubmitted].concat();
    for root in [&pipe_dir, &broken_dir] {
        let record: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(root.join("pipeline.json")).unwrap())
                .unwrap();
        for stage in record["stages"].as_array().unwrap() {
            all.extend(
                stage["job_ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_string()),
            );
        }
    }
    wait_gone(
        &all,
        Duration::from_secs(240u64.saturating_sub(started.elapsed().as_secs()).max(30)),
    );

    // array and multiprog grids: every run complete, every task done
    let array_runs = finished_runs(&env.path().join("runs-array"));
    assert_eq!(array_runs.len(), 2, "{}", logs_of(&array_dir));
    let multi_runs = finished_runs(&env.path().join("runs-multi"));
    assert_eq!(multi_runs.len(), 3, "{}", logs_of(&multi_dir));
    for run in array_runs.iter().chain(&multi_runs) {
        assert_complete(run, 1);
    }
    assert!(status(&env, &array_dir).contains("2 tasks: 2 done"));
    assert!(status(&env, &multi_dir).contains("3 tasks: 3 done"));
    // the multiprog tasks shared allocations: two tasks ran under the same job id
    let jobs: Vec<String> = (0..3)
        .map(|i| state(&multi_dir, i)["job_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(jobs[0], jobs[1]);
    assert_ne!(jobs[1], jobs[2]);

    // the cancelled run resumed and finished with each epoch recorded once
    let long_runs = finished_runs(&long_run_root);
    assert_eq!(long_runs.len(), 1, "{}", logs_of(&long_dir));
    assert_complete(&long_runs[0], 4);
    let resumed = state(&long_dir, 0);
    assert_eq!(resumed["action"], "resume", "{resumed}");
    assert_eq!(resumed["exit_code"], 0);
    let log = std::fs::read_to_string(long_dir.join("logs/task-0.log")).unwrap();
    assert!(log.contains("(resume)"), "{log}");
    eprintln!("long run cancelled after epoch {cancelled_at}, resumed to 4");

    // the pipeline: students started after every teacher ended, and learned from it
    let teachers = stage_dir(&pipe_dir, "00-teachers");
    let students = stage_dir(&pipe_dir, "01-students");
    let ts =
        |v: &serde_json::Value, k: &str| v[k].as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
    let teacher_state = state(&teachers, 0);
    let student_state = state(&students, 0);
    assert_eq!(teacher_state["exit_code"], 0, "{}", logs_of(&teachers));
    assert_eq!(student_state["exit_code"], 0, "{}", logs_of(&students));
    assert!(
        ts(&student_state, "started") >= ts(&teacher_state, "ended"),
        "afterok did not hold"
    );
    let teacher_run = &finished_runs(&env.path().join("runs-pipe/teachers"))[0];
    let slug = teacher_run.read_config().unwrap().teacher_slug();
    let student_runs = finished_runs(&env.path().join("runs-pipe/students"));
    assert_eq!(student_runs.len(), 1);
    assert!(
        student_runs[0]
            .path()
            .starts_with(env.path().join("runs-pipe/students").join(&slug)),
        "{} is not under the teacher's slug {slug}",
        student_runs[0].path().display()
    );

    // the broken pipeline: the teacher failed, so Slurm cancelled the student
    let broken_teachers = stage_dir(&broken_dir, "00-teachers");
    let broken_students = stage_dir(&broken_dir, "01-students");
    assert_ne!(state(&broken_teachers, 0)["exit_code"], 0);
    assert!(
        !broken_students.join("state/task-0.json").exists(),
        "the student must never start"
    );
    let st = status(&env, &broken_students);
    assert!(st.contains("never started"), "{st}");
    eprintln!(
        "real Slurm test took {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn the_default_configs_are_valid_for_the_real_binaries() {
    const TEST: &str = "the_default_configs_are_valid_for_the_real_binaries";
    let root = workspace_root();
    let Some(train) = find_hkd_train() else {
        return skip_or_fail(TEST, "hkd-train is not built (cargo build -p hkd-train)");
    };
    let bin_dir = train.parent().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for name in ["train", "evaluate", "analyze"] {
        let config = root.join(format!("configs/{name}.toml"));
        let binary = match name {
            "train" => "hkd-train",
            "evaluate" => "hkd-eval",
            _ => "hkd-analyze",
        };
        if !bin_dir.join(binary).is_file() {
            skip_or_fail(
                TEST,
                &format!("{binary} is not built next to {}", train.display()),
            );
            continue;
        }
        let (code, stdout, stderr) = run(hkd_grid()
            .current_dir(&root)
            .env("HKD_BIN_DIR", bin_dir)
            .args([
                config.to_str().unwrap(),
                "--dry-run",
                "--executor",
                "slurm",
                "--grids-dir",
                tmp.path().to_str().unwrap(),
            ]));
        assert_eq!(code, 0, "{name}: {stderr}");
        assert!(stdout.contains(binary), "{stdout}");
        checked += 1;
    }
    if checked == 3 {
        let (code, _, stderr) = run(hkd_grid()
            .current_dir(&root)
            .env("HKD_BIN_DIR", bin_dir)
            .args([
                "pipeline",
                "configs/pipeline.toml",
                "--dry-run",
                "--executor",
                "slurm",
                "--grids-dir",
                tmp.path().to_str().unwrap(),
            ]));
        assert_eq!(code, 0, "pipeline: {stderr}");
    }
}

#[test]
fn an_lr_grid_on_a_real_slurm_trains_one_run_per_learning_rate() {
    const TEST: &str = "an_lr_grid_on_a_real_slurm_trains_one_run_per_learning_rate";
    if !slurm_answers() {
        return skip_or_fail(
            TEST,
            "no Slurm answers `sinfo` (start one with `sudo scripts/local-slurm.sh`)",
        );
    }
    let Some(train) = find_hkd_train() else {
        return skip_or_fail(TEST, "hkd-train is not built (cargo build -p hkd-train)");
    };
    assert_current(&train);
    let fixture = workspace_root().join("fixtures/cifar10h-mini");
    if !fixture.join("dataset.toml").is_file() {
        let why = format!("the fixture dataset is missing at {}", fixture.display());
        return skip_or_fail(TEST, &why);
    }
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let env = Env {
        tmp,
        bin_dir: train.parent().unwrap().to_path_buf(),
        data: fixture.clone(),
    };
    let lrs = [0.1, 0.01, 0.001];
    let config = env.path().join("lr.toml");
    std::fs::write(
        &config,
        format!(
            "name = \"lr\"\nbinary = \"hkd-train\"\nexecutor = \"slurm\"\n[grid]\ndata = {:?}\nout = \"runs\"\nteacher = \"human\"\nstudent = \"plane2\"\ndevice = \"cpu\"\nthreads = 1\nepochs = 1\nmax-batches = 1\nlr = [0.1, 0.01, 0.001]\n[slurm]\ncpus_per_task = 1\nmem = \"1000M\"\ntime = 10\n",
            fixture.to_string_lossy()
        ),
    )
    .unwrap();
    let (first, ids) = env.submit(&config);
    wait_gone(&ids, Duration::from_secs(120));
    let mut dirs = Vec::new();
    for (i, lr) in lrs.iter().enumerate() {
        let st = state(&first, i);
        assert_eq!(st["action"], "fresh", "task {i}: {st}\n{}", logs_of(&first));
        assert_eq!(st["exit_code"], 0, "task {i}: {st}\n{}", logs_of(&first));
        assert_eq!(st["job_id"], format!("{}_{i}", ids[0]), "{st}");
        let run = RunDir::new(st["run_dir"].as_str().unwrap());
        let mut spec = RunSpec {
            student: "plane2".into(),
            ..RunSpec::default()
        };
        spec.training.epochs = 1;
        spec.training.max_batches = Some(1);
        spec.optimizer.lr = *lr;
        assert_eq!(
            run.path(),
            env.path().join("runs/human/plane2").join(spec.run_name())
        );
        let stored: RunConfig = run.read_config().unwrap();
        assert_eq!(stored.spec.optimizer.lr, *lr, "task {i}");
        assert!(stored.spec.identity_differences(&spec).is_empty());
        assert_complete(&run, 1);
        assert!(run.is_finished());
        dirs.push(run.path().to_path_buf());
    }
    dirs.sort();
    dirs.dedup();
    assert_eq!(dirs.len(), 3, "one run directory per learning rate");
    assert!(status(&env, &first).contains("3 tasks: 3 done"));

    // the same grid again: every task is skipped as finished, nothing is trained
    let (again, ids) = env.submit(&config);
    wait_gone(&ids, Duration::from_secs(60));
    for i in 0..lrs.len() {
        let st = state(&again, i);
        assert_eq!(st["action"], "skip", "task {i}: {st}");
        assert_eq!(st["exit_code"], 0);
        assert_eq!(st["run_dir"], state(&first, i)["run_dir"]);
    }
    assert_eq!(finished_runs(&env.path().join("runs")).len(), 3);
    eprintln!("{TEST}: took {:.0} s", started.elapsed().as_secs_f64());
}
