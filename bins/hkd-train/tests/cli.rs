//! The real `hkd-train` binary: signals, resume after SIGKILL, exit codes, output.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

use hkd_datasets::{Dataset, DatasetParts, write_split};
use hkd_rundir::{RunConfig, RunSpec};
use hkd_test_support::{copy_tree, flip_a_low_bit};

const BIN: &str = env!("CARGO_BIN_EXE_hkd-train");

/// The specification of [`args`]' runs (without the data directory), written out here
/// rather than parsed, so that the flags are checked against it.
fn spec() -> RunSpec {
    let mut spec = RunSpec::default();
    spec.teacher.teacher = "human".into();
    spec.training.epochs = 2;
    spec.training.batch_size = 8;
    spec.optimizer.lr = 0.05;
    spec
}

/// Where [`args`]' run lies under its output directory.
fn run_path() -> String {
    format!("human/resnet8/{}", spec().run_name())
}

/// A synthetic 10-class dataset with human labels: 48 training images (6 batches of 8),
/// 10 validation images.
fn write_dataset(dir: &Path) {
    for (split, n) in [("train", 48usize), ("val", 10)] {
        let mut state = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut images = Vec::with_capacity(n * 3072);
        let mut labels = Vec::new();
        let mut human = Vec::new();
        for i in 0..n {
            let c = i % 10;
            labels.push(c as u32);
            for p in 0..3072 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                images.push(((c * 23 + p % 3 * 40) as u64 + state % 60) as u8);
            }
            human.extend((0..10).map(|k| if k == c { 0.55 } else { 0.05 }));
        }
        let mut parts = DatasetParts::cifar10(images, labels);
        parts.human = (split == "train").then_some(human);
        write_split(dir, split, &Dataset::new(parts).unwrap(), None).unwrap();
    }
}

struct Fixture {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    root: PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        write_dataset(&data);
        let root = tmp.path().to_path_buf();
        Fixture {
            _tmp: tmp,
            data,
            root,
        }
    })
}

/// The common flags of a 2-epoch human-mode run into `out`.
fn args(out: &Path) -> Vec<String> {
    let f = fixture();
    [
        "--data",
        f.data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--teacher",
        "human",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--lr",
        "0.05",
        "--device",
        "cpu",
        "--threads",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn hkd_train(args: &[String], extra: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .args(extra)
        .env("RUST_LOG", "info")
        .output()
        .unwrap()
}

/// The uninterrupted run every interrupted run is compared with.
fn reference() -> &'static PathBuf {
    static R: OnceLock<PathBuf> = OnceLock::new();
    R.get_or_init(|| {
        let out = fixture().root.join("reference");
        // The original's name, then the settings not at their defaults, by section.
        assert_eq!(
            run_path(),
            "human/resnet8/student_resnet8_distil_fn_KL_temperature_h_1.0_temperature_t_1.0_lambda_0.5_gamma_0.0_iter_0+lr=0.05+batch_size=8+epochs=2"
        );
        let o = hkd_train(&args(&out), &[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        // The original's metric line, once per epoch, in percent.
        let stdout = String::from_utf8(o.stdout).unwrap();
        let lines: Vec<&str> = stdout
            .lines()
            .filter(|l| l.starts_with("{\"metric\""))
            .collect();
        assert_eq!(lines.len(), 2, "{stdout}");
        let last: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(last["metric"], "val_accuracy");
        let metrics = metrics_without_timing(&out.join(run_path()));
        let pct = 100.0 * metrics[1]["val_acc"].as_f64().unwrap();
        assert!((last["value"].as_f64().unwrap() - pct).abs() < 1e-9);
        // One plain log line per epoch when stderr is not a terminal.
        let stderr = String::from_utf8(o.stderr).unwrap();
        assert_eq!(
            stderr
                .lines()
                .filter(|l| l.contains("epoch 1/2 lr"))
                .count(),
            1,
            "{stderr}"
        );
        out.join(run_path())
    })
}

fn metrics_without_timing(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("seconds");
            v.as_object_mut().unwrap().remove("images_per_s");
            v
        })
        .collect()
}

/// True when two safetensors files hold the same tensors bit for bit (metadata order may
/// differ between files).
fn same_tensors(a: &Path, b: &Path) -> bool {
    let load = |p: &Path| candle_core::safetensors::load(p, &candle_core::Device::Cpu).unwrap();
    let (x, y) = (load(a), load(b));
    let bits = |t: &candle_core::Tensor| -> Vec<u64> {
        let t = t
            .flatten_all()
            .unwrap()
            .to_dtype(candle_core::DType::F64)
            .unwrap();
        t.to_vec1::<f64>()
            .unwrap()
            .into_iter()
            .map(f64::to_bits)
            .collect()
    };
    x.len() == y.len()
        && x.iter().all(|(name, t)| {
            y.get(name).is_some_and(|u| {
                t.dims() == u.dims() && t.dtype() == u.dtype() && bits(t) == bits(u)
            })
        })
}

fn assert_same_run(a: &Path, b: &Path) {
    assert_eq!(metrics_without_timing(a), metrics_without_timing(b));
    for f in [
        "last.safetensors",
        "best.safetensors",
        "last.optimizer.safetensors",
    ] {
        assert!(same_tensors(&a.join(f), &b.join(f)), "{f} differs");
    }
    assert_eq!(
        std::fs::read_to_string(a.join("best.json")).unwrap(),
        std::fs::read_to_string(b.join("best.json")).unwrap()
    );
}

/// Starts a run with per-batch debug logs and waits until `line` appears on stderr.
fn start_until(out: &Path, line: &str) -> Child {
    start_with_until(&args(out), line)
}

/// [`start_until`] with the run's whole command line.
fn start_with_until(args: &[String], line: &str) -> Child {
    let mut child = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "hkd_trainer=debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut reader = BufReader::new(stderr);
    let mut buf = String::new();
    loop {
        buf.clear();
        let n = reader.read_line(&mut buf).unwrap();
        assert!(n > 0, "hkd-train ended before printing `{line}`");
        if buf.contains(line) {
            break;
        }
    }
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = String::new();
        while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
            sink.clear();
        }
    });
    child
}

#[test]
fn sigkill_mid_epoch_then_resume_gives_the_uninterrupted_result() {
    let out = fixture().root.join("killed");
    // Epoch 1 is checkpointed, then 3 batches of epoch 2 run before the kill.
    let mut child = start_until(&out, "epoch 2 batch 3/6");
    let pid = child.id();
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success());
    let run = out.join(run_path());
    // The lock file stays and names the killed process; the OS released its lock.
    let holder = std::fs::read_to_string(run.join(".lock")).unwrap();
    assert!(holder.starts_with(&format!("process {pid} ")), "{holder}");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("last.json")).unwrap()).unwrap();
    assert_eq!(state["epochs_completed"], 1);
    assert_eq!(state["finished"], false);

    let o = hkd_train(&args(&out), &["--resume"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_same_run(reference(), &run);
}

#[test]
fn sigterm_checkpoints_mid_epoch_exits_75_and_resumes_exactly() {
    let out = fixture().root.join("terminated");
    let mut child = start_until(&out, "epoch 2 batch 2/6");
    let pid = child.id().to_string();
    let kill = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(hkd_rundir::EXIT_CHECKPOINTED));
    let run = out.join(run_path());
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("last.json")).unwrap()).unwrap();
    assert_eq!(state["epochs_completed"], 1);
    let k = state["batches_into_epoch"].as_u64().unwrap();
    assert!((2..6).contains(&k), "stopped after batch {k}");
    assert_eq!(state["trainer"]["partial"]["batches"].as_u64(), Some(k));

    // Without --resume the run is refused and left alone.
    let o = hkd_train(&args(&out), &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--resume"));

    let o = hkd_train(&args(&out), &["--resume"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_same_run(reference(), &run);

    // Resuming a finished run does nothing and succeeds.
    let before = std::fs::read(run.join("last.json")).unwrap();
    let o = hkd_train(&args(&out), &["--resume"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("already finished"));
    assert_eq!(std::fs::read(run.join("last.json")).unwrap(), before);
}

#[test]
fn sigusr1_also_checkpoints() {
    let out = fixture().root.join("usr1");
    let mut child = start_until(&out, "epoch 1 batch 2/6");
    let kill = Command::new("kill")
        .args(["-USR1", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert_eq!(child.wait().unwrap().code(), Some(75));
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join(run_path()).join("last.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["epochs_completed"], 0);
    assert!(state["batches_into_epoch"].as_u64().unwrap() >= 2);
}

#[test]
fn bad_flags_and_teachers_give_clear_errors() {
    let out = fixture().root.join("bad");
    let base = args(&out);
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();

    let o = hkd_train(&base, &["--bogus"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--bogus"), "{}", stderr(&o));

    let o = hkd_train(&base, &["--lambda", "2"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("`lambda`") && stderr(&o).contains("[0, 1]"),
        "{}",
        stderr(&o)
    );

    let o = hkd_train(&base, &["--resume", "--overwrite"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--overwrite"), "{}", stderr(&o));

    let o = hkd_train(&base, &["--distil-fn", "JS"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("JS") && stderr(&o).contains("CE"),
        "{}",
        stderr(&o)
    );

    let o = hkd_train(&base, &["--student", "resnet9000x"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("resnet9000x"), "{}", stderr(&o));

    let missing = fixture().root.join("no-such-teacher");
    let mut with_missing = base.clone();
    let at = with_missing.iter().position(|a| a == "--teacher").unwrap();
    with_missing[at + 1] = missing.to_str().unwrap().to_string();
    // refused before any work (docs/README.md, "Exit codes"): 2
    let o = hkd_train(&with_missing, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no-such-teacher") && stderr(&o).contains("does not exist"),
        "{}",
        stderr(&o)
    );

    let o = hkd_train(&base, &["--momentum", "2"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("`momentum`") && stderr(&o).contains("[0, 1)"),
        "{}",
        stderr(&o)
    );

    // A weights file that is not a network of the named architecture.
    let garbage = fixture().root.join("garbage-teacher.safetensors");
    std::fs::write(&garbage, b"these are not weights").unwrap();
    let mut with_garbage = base.clone();
    with_garbage[at + 1] = garbage.to_str().unwrap().to_string();
    let o = hkd_train(&with_garbage, &["--teacher-arch", "resnet8"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("garbage-teacher.safetensors") && stderr(&o).contains("resnet8"),
        "{}",
        stderr(&o)
    );

    let o = hkd_train(
        &base,
        &[
            "--data",
            fixture().root.join("no-such-data").to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no-such-data"), "{}", stderr(&o));

    // A config file with an unknown key: refused naming the file and the key.
    let bad_config = fixture().root.join("bad-config.toml");
    std::fs::write(
        &bad_config,
        "lambda = 0.5\n[loss]\ntemprature_human = 2.0\n",
    )
    .unwrap();
    let o = hkd_train(&base, &["--config", bad_config.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("bad-config.toml") && stderr(&o).contains("`temprature_human`"),
        "{}",
        stderr(&o)
    );

    let o = hkd_train(&base, &["--config", "/no/such/run.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("/no/such/run.toml"), "{}", stderr(&o));
    assert!(
        !out.exists(),
        "failed starts must not create the output directory"
    );
}

#[test]
fn config_file_with_overrides_and_dry_run() {
    let root = fixture().root.join("config");
    std::fs::create_dir_all(&root).unwrap();
    let cfg = root.join("run.toml");
    std::fs::write(
        &cfg,
        format!(
            "data = {:?}\nout = {:?}\nteacher = \"baseline\"\nlambda = 0.7\niter = 2\nepochs = 9\n",
            fixture().data.to_str().unwrap(),
            root.join("runs").to_str().unwrap()
        ),
    )
    .unwrap();
    let o = Command::new(BIN)
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "--iter",
            "5",
            "--device",
            "cpu",
            "--dry-run",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8(o.stdout).unwrap();
    let mut expected = RunSpec::default();
    expected.loss.as_hkd_mut().unwrap().lambda = 0.7;
    expected.iter = 5;
    expected.training.epochs = 9;
    assert!(
        stdout.contains(&format!("baseline/resnet8/{}\n", expected.run_name())),
        "{stdout}"
    );
    assert!(
        expected
            .run_name()
            .ends_with("_lambda_0.7_gamma_0.0_iter_5+epochs=9"),
        "{}",
        expected.run_name()
    );
    assert!(stdout.contains("epochs = 9"), "{stdout}");
    assert!(!root.join("runs").exists(), "--dry-run writes nothing");
}

#[test]
fn models_and_flags_subcommands() {
    let o = Command::new(BIN).arg("models").output().unwrap();
    assert!(o.status.success());
    let stdout = String::from_utf8(o.stdout).unwrap();
    let params = hkd_arch::ArchSpec::parse("resnet8")
        .unwrap()
        .param_count(10);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("resnet8 "))
        .expect("resnet8 listed");
    assert!(line.contains(&params.to_string()), "{line}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("shake26 ") && l.contains("shake26-2x64d")),
        "{stdout}"
    );

    let o = Command::new(BIN).arg("flags").output().unwrap();
    let flags = String::from_utf8(o.stdout).unwrap();
    for f in [
        "teacher",
        "lambda",
        "temperature-human",
        "kl-reduction",
        "scheduler",
        "resume",
        "threads",
    ] {
        assert!(flags.lines().any(|l| l == f), "{f} missing from {flags}");
    }
}

/// Kills a child process when dropped (a failing test must not leave a stopped
/// `hkd-train` behind).
struct Guard(Option<Child>);

impl Guard {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().unwrap()
    }

    /// The child, no longer killed on drop.
    fn release(mut self) -> Child {
        self.0.take().unwrap()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends `signal` (`-STOP`, `-CONT`, ...) to a process.
fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}

/// Runs `hkd-train` with `args`, failing the test if it has not exited after `limit`.
fn hkd_train_within(args: &[String], extra: &[&str], limit: std::time::Duration) -> Output {
    let child = Command::new(BIN)
        .args(args)
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = Guard(Some(child));
    let started = std::time::Instant::now();
    while guard.child().try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < limit,
            "hkd-train {extra:?} still runs after {limit:?}: it waits for the lock instead of refusing"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    guard.release().wait_with_output().unwrap()
}

/// Every file of a directory with its bytes.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn a_second_process_on_the_same_run_is_refused_and_the_first_finishes() {
    let out = fixture().root.join("concurrent");
    // The first process is frozen (SIGSTOP) as soon as it trains: it holds the run for
    // as long as the test needs, whatever the machine's speed.
    let first = Guard(Some(start_until(&out, "training images in")));
    let pid = first.0.as_ref().unwrap().id();
    signal(pid, "-STOP");
    let run = out.join(run_path());
    assert!(run.join(".lock").is_file() && run.join("config.toml").is_file());
    let before = snapshot(&run);

    let limit = std::time::Duration::from_secs(60);
    for extra in [&[][..], &["--overwrite"][..], &["--resume"][..]] {
        let o = hkd_train_within(&args(&out), extra, limit);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{extra:?}: {stderr}");
        assert!(
            stderr.contains("in use by another hkd-train")
                && stderr.contains(&format!("process {pid} ")),
            "{extra:?}: {stderr}"
        );
        assert_eq!(snapshot(&run), before, "{extra:?} touched the run");
    }

    // The first one finishes normally, with the run it started.
    signal(pid, "-CONT");
    let status = first.release().wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert_same_run(reference(), &run);
    let config = |dir: &Path| {
        RunConfig::from_toml_str(&std::fs::read_to_string(dir.join("config.toml")).unwrap())
            .unwrap()
    };
    assert_eq!(config(&run), config(reference()));

    // Exited, it holds nothing: the next process takes the lock.
    let o = hkd_train_within(&args(&out), &["--resume"], limit);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already finished"));
}

/// The config printed by `hkd-train --dry-run` (after its two lines of run directory and
/// status).
fn dry_run(dir: &Path, extra: &[&str]) -> (String, RunConfig) {
    let o = Command::new(BIN)
        .current_dir(dir)
        .args(["--dry-run", "--device", "cpu"])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8(o.stdout).unwrap();
    assert!(
        o.status.success(),
        "{extra:?}: {stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut lines = stdout.splitn(3, '\n');
    let run_dir = lines.next().unwrap();
    let status = lines.next().unwrap();
    assert!(run_dir.starts_with("run directory: "), "{stdout}");
    assert!(status.starts_with("status: "), "{stdout}");
    let config = RunConfig::from_toml_str(lines.next().unwrap()).unwrap();
    (stdout, config)
}

#[test]
fn defaults_are_the_same_wherever_they_are_read() {
    // The fixture's root holds `data`, the default dataset directory.
    let root = &fixture().root;
    let (plain, config) = dry_run(root, &[]);
    let mut expected = RunSpec::default();
    expected.data.dir = std::fs::canonicalize(root.join("data")).unwrap();
    assert_eq!(config.spec, expected);
    assert_eq!(config.run_name, RunSpec::default().run_name());
    assert!(
        plain.starts_with(&format!(
            "run directory: runs/human/resnet8/{}\n",
            RunSpec::default().run_name()
        )),
        "{plain}"
    );

    // An empty --config file changes nothing.
    let empty = root.join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let (from_empty, _) = dry_run(root, &["--config", empty.to_str().unwrap()]);
    assert_eq!(from_empty, plain);

    // A run's config.toml reproduces that run's specification, and its directory.
    let stored = reference().join("config.toml");
    let (_, config) = dry_run(root, &["--config", stored.to_str().unwrap()]);
    let original = RunConfig::from_toml_str(&std::fs::read_to_string(&stored).unwrap()).unwrap();
    assert_eq!(config.spec, original.spec);
    assert_eq!(config.run_name, original.run_name);
    assert_eq!(config.teacher, original.teacher);
    assert_eq!(config.dataset_hash, original.dataset_hash);
}

#[test]
fn label_smoothing_reaches_the_loss_the_name_and_the_config() {
    let out = fixture().root.join("smoothing");
    let one_epoch = ["--epochs", "1", "--max-batches", "2"];
    let o = hkd_train(&args(&out), &one_epoch);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut with = one_epoch.to_vec();
    with.extend(["--label-smoothing", "0.1"]);
    let o = hkd_train(&args(&out), &with);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let mut plain = spec();
    plain.training.epochs = 1;
    plain.training.max_batches = Some(2);
    let mut smoothed = plain.clone();
    smoothed.loss.as_hkd_mut().unwrap().label_smoothing = 0.1;
    let name = smoothed.run_name();
    assert_eq!(
        name,
        plain
            .run_name()
            .replace("_iter_0+", "_iter_0+label_smoothing=0.1+")
    );
    let dir = out.join("human/resnet8");
    let (a, b) = (dir.join(plain.run_name()), dir.join(&name));
    let config =
        RunConfig::from_toml_str(&std::fs::read_to_string(b.join("config.toml")).unwrap()).unwrap();
    assert_eq!(config.spec.loss.as_hkd().unwrap().label_smoothing, 0.1);
    assert_eq!(config.run_name, name);
    let (ma, mb) = (metrics_without_timing(&a), metrics_without_timing(&b));
    assert_eq!((ma.len(), mb.len()), (1, 1));
    assert_ne!(
        ma[0]["train_parts"]["hard"], mb[0]["train_parts"]["hard"],
        "{ma:?} {mb:?}"
    );
}

#[test]
fn a_broken_teacher_fails_before_the_run_directory_exists() {
    // A teacher run whose weights are not loadable (a copy of the reference run).
    let teacher = fixture().root.join("broken-teacher");
    std::fs::create_dir_all(&teacher).unwrap();
    for f in ["config.toml", "last.json", "best.json"] {
        std::fs::copy(reference().join(f), teacher.join(f)).unwrap();
    }
    std::fs::write(teacher.join("best.safetensors"), b"not weights").unwrap();
    let out = fixture().root.join("of-a-broken-teacher");
    let mut request = args(&out);
    let at = request.iter().position(|a| a == "--teacher").unwrap();
    request[at + 1] = teacher.to_str().unwrap().to_string();
    let extra = ["--epochs", "1", "--max-batches", "1"];
    let o = hkd_train(&request, &extra);
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("best.safetensors"), "{stderr}");
    assert!(!out.exists(), "{stderr}");

    // Repaired, the same command (no --resume) trains.
    std::fs::copy(
        reference().join("best.safetensors"),
        teacher.join("best.safetensors"),
    )
    .unwrap();
    let o = hkd_train(&request, &extra);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.exists());
}

/// The one run directory (a folder holding `config.toml`) under `out`.
fn only_run(out: &Path) -> PathBuf {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        if dir.join("config.toml").is_file() {
            found.push(dir.to_path_buf());
            return;
        }
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, found);
            }
        }
    }
    let mut found = Vec::new();
    walk(out, &mut found);
    assert_eq!(found.len(), 1, "{found:?}");
    found.pop().unwrap()
}

/// [`args`] with `--teacher` set to `teacher`.
fn args_with_teacher(out: &Path, teacher: &str) -> Vec<String> {
    let mut a = args(out);
    let at = a.iter().position(|x| x == "--teacher").unwrap();
    a[at + 1] = teacher.to_string();
    a
}

/// A baseline teacher (hkd on hard labels, 1 epoch of 3 batches) for the objectives' runs.
fn teacher_run() -> &'static PathBuf {
    static T: OnceLock<PathBuf> = OnceLock::new();
    T.get_or_init(|| {
        let out = fixture().root.join("objective-teacher");
        let o = hkd_train(
            &args_with_teacher(&out, "baseline"),
            &["--epochs", "1", "--max-batches", "3"],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        only_run(&out)
    })
}

#[test]
fn every_objective_trains_from_a_teacher_from_people_or_from_both() {
    let teacher = teacher_run().to_str().unwrap().to_string();
    let from_teacher = ["hard", "teacher", "human"];
    // (name, target, flags, the objective's own parts)
    let cases: [(&str, &str, &[&str], &[&str]); 8] = [
        ("kd-teacher", &teacher, &["--objective", "kd"], &["kl"]),
        (
            "kd-std-teacher",
            &teacher,
            &["--objective", "kd", "--logit-std"],
            &["kl"],
        ),
        ("kd-human", "human", &["--objective", "kd"], &["kl"]),
        (
            "kd-std-human",
            "human",
            &["--objective", "kd", "--logit-std"],
            &["kl"],
        ),
        (
            "dkd-mixed",
            &teacher,
            &[
                "--objective",
                "dkd",
                "--gamma",
                "0.5",
                "--warmup-epochs",
                "0",
            ],
            &["tckd", "nckd"],
        ),
        (
            "dkd-std-human",
            "human",
            &[
                "--objective",
                "dkd",
                "--logit-std",
                "--human-smoothing",
                "0.001",
            ],
            &["tckd", "nckd"],
        ),
        (
            "dist-mixed",
            &teacher,
            &[
                "--objective",
                "dist",
                "--gamma",
                "0.25",
                "--temperature",
                "4",
            ],
            &["inter", "intra"],
        ),
        (
            "dist-human",
            "human",
            &["--objective", "dist"],
            &["inter", "intra"],
        ),
    ];
    let mut first_epoch = std::collections::BTreeMap::new();
    for (name, target, flags, own) in cases {
        let out = fixture().root.join("objectives").join(name);
        let mut extra = flags.to_vec();
        extra.extend(["--epochs", "1", "--max-batches", "3"]);
        let o = hkd_train(&args_with_teacher(&out, target), &extra);
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let run = only_run(&out);
        let objective = flags[1];
        let config =
            RunConfig::from_toml_str(&std::fs::read_to_string(run.join("config.toml")).unwrap())
                .unwrap();
        assert_eq!(config.spec.loss.name(), objective, "{name}");
        assert!(
            config
                .run_name
                .starts_with(&format!("student_resnet8_objective_{objective}")),
            "{name}: {}",
            config.run_name
        );
        // The epoch's parts are the objective's: hard, its own, and each source's share.
        let metrics = metrics_without_timing(&run);
        assert_eq!(metrics.len(), 1, "{name}");
        let parts = metrics[0]["train_parts"].as_object().unwrap();
        let mut expected = vec!["hard"];
        expected.extend(own);
        if target != "human" {
            expected.extend(&from_teacher[1..]);
        }
        let keys: Vec<&str> = parts.keys().map(String::as_str).collect();
        let mut sorted = expected.clone();
        sorted.sort();
        let mut got = keys.clone();
        got.sort();
        assert_eq!(got, sorted, "{name}: {parts:?}");
        let value = |k: &str| parts[k].as_f64().unwrap();
        for k in &expected {
            assert!(value(k).is_finite() && value(k) >= 0.0, "{name}: {parts:?}");
        }
        assert!(value("hard") > 0.5, "{name}: {parts:?}");
        if target != "human" {
            // The teacher's and the people's shares add up to the objective's own parts.
            let own_sum: f64 = own.iter().map(|k| value(k)).sum();
            let shares = value("teacher") + value("human");
            assert!(
                (own_sum - shares).abs() <= 1e-5 * own_sum.abs().max(1e-3),
                "{name}: {parts:?}"
            );
            // Without --gamma the target is the teacher alone; with it, both sources count.
            assert!(value("teacher") > 0.0, "{name}: {parts:?}");
            let mixed = flags.contains(&"--gamma");
            assert_eq!(value("human") > 0.0, mixed, "{name}: {parts:?}");
        }
        first_epoch.insert(name, metrics[0]["train_parts"][own[0]].as_f64().unwrap());
    }
    // Logit standardisation changes what is distilled.
    assert_ne!(first_epoch["kd-teacher"], first_epoch["kd-std-teacher"]);
    assert_ne!(first_epoch["kd-human"], first_epoch["kd-std-human"]);

    // A run's config.toml reproduces its specification and directory.
    let run = only_run(&fixture().root.join("objectives/dkd-mixed"));
    let stored = run.join("config.toml");
    let (_, again) = dry_run(&fixture().root, &["--config", stored.to_str().unwrap()]);
    let original = RunConfig::from_toml_str(&std::fs::read_to_string(&stored).unwrap()).unwrap();
    assert_eq!(again.spec, original.spec);
    assert_eq!(again.run_name, original.run_name);
    // ... and --resume of it, into the same --out, is "already finished".
    let out = fixture().root.join("objectives/dkd-mixed");
    let o = hkd_train(
        &["--config".to_string(), stored.to_str().unwrap().to_string()],
        &[
            "--resume",
            "--device",
            "cpu",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("already finished"), "{stderr}");
}

#[test]
fn each_objective_has_its_own_flags_and_defaults() {
    let root = &fixture().root;
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();
    let base = args(&root.join("objective-flags"));

    // A setting of another objective is refused, naming its owner.
    let o = hkd_train(&base, &["--objective", "kd", "--beta-nckd", "4"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("`beta_nckd`") && stderr(&o).contains("`dkd`"),
        "{}",
        stderr(&o)
    );
    let o = hkd_train(&base, &["--objective", "dist", "--lambda", "0.7"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("`lambda`") && stderr(&o).contains("`hkd`"),
        "{}",
        stderr(&o)
    );
    // hkd is the default objective: a dkd flag alone is refused too.
    let o = hkd_train(&base, &["--alpha-tckd", "2"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("`dkd`"), "{}", stderr(&o));
    let o = hkd_train(&base, &["--objective", "crd"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("crd") && stderr(&o).contains("dkd") && stderr(&o).contains("dist"),
        "{}",
        stderr(&o)
    );
    let o = hkd_train(&base, &["--objective", "dist", "--temperature", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("`temperature`") && stderr(&o).contains("> 0"),
        "{}",
        stderr(&o)
    );
    // A soft-target objective without a target.
    let o = hkd_train(
        &args_with_teacher(&root.join("objective-flags"), "baseline"),
        &["--objective", "kd"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--teacher baseline"), "{}", stderr(&o));
    assert!(!root.join("objective-flags").exists());

    // One flag, each objective's own default: --temperature is 4 for kd and dkd, 1 for dist.
    let data = fixture().data.to_str().unwrap();
    for (objective, temperature) in [("kd", 4.0), ("dkd", 4.0), ("dist", 1.0)] {
        let (_, config) = dry_run(root, &["--data", data, "--objective", objective]);
        assert_eq!(
            config.spec.loss,
            hkd_rundir::ObjectiveConfig::default_of(objective).unwrap()
        );
        let t = config.spec.loss.settings();
        let t = t.iter().find(|(k, _)| k == "temperature").unwrap();
        assert_eq!(t.1.as_f64(), Some(temperature), "{objective}");
    }
    // The help lists every objective's settings with their defaults.
    let o = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8(o.stdout).unwrap();
    for flag in [
        "--objective",
        "--beta-nckd",
        "--gamma-intra",
        "--kl-weight",
        "--logit-std",
    ] {
        assert!(help.contains(flag), "{flag}: {help}");
    }
}

#[test]
fn a_dkd_run_resumes_exactly_through_its_warm_up() {
    // DKD's weight depends on the epoch: a run stopped in epoch 2 of a 4-epoch warm-up
    // must resume with epoch 2's weight.
    let teacher = teacher_run().to_str().unwrap().to_string();
    let flags = ["--objective", "dkd", "--warmup-epochs", "4"];
    let full = fixture().root.join("dkd-full");
    let mut a = args_with_teacher(&full, &teacher);
    a.extend(flags.iter().map(|s| s.to_string()));
    let o = hkd_train(&a, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let stopped = fixture().root.join("dkd-stopped");
    let mut b = args_with_teacher(&stopped, &teacher);
    b.extend(flags.iter().map(|s| s.to_string()));
    let mut child = start_with_until(&b, "epoch 2 batch 3/6");
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert_eq!(
        child.wait().unwrap().code(),
        Some(hkd_rundir::EXIT_CHECKPOINTED)
    );
    let o = hkd_train(&b, &["--resume"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (full, stopped) = (only_run(&full), only_run(&stopped));
    assert_same_run(&full, &stopped);
    // and the warm-up is there: epoch 2's DKD parts are larger than epoch 1's.
    let m = metrics_without_timing(&full);
    let nckd = |e: usize| m[e]["train_parts"]["nckd"].as_f64().unwrap();
    assert!(nckd(1) > nckd(0), "{m:?}");
}

// ---- provenance, signals and messages (issue 33) ----

/// [`args`] on the dataset at `data`.
fn args_on(data: &Path, out: &Path) -> Vec<String> {
    let mut a = args(out);
    let at = a.iter().position(|x| x == "--data").unwrap();
    a[at + 1] = data.to_str().unwrap().to_string();
    a
}

fn sha256(path: &Path) -> String {
    hkd_rundir::sha256_file(path).unwrap()
}

#[test]
fn a_finished_run_is_finished_only_for_the_same_data_and_teacher_weights() {
    let root = fixture().root.join("provenance");
    let data = root.join("data");
    copy_tree(&fixture().data, &data);
    let quick = ["--epochs", "1", "--max-batches", "2"];

    // the data: one pixel of the training images changes
    let out = root.join("runs");
    let run_args = args_on(&data, &out);
    let o = hkd_train(&run_args, &quick);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = only_run(&out);
    let config: RunConfig =
        RunConfig::from_toml_str(&std::fs::read_to_string(run.join("config.toml")).unwrap())
            .unwrap();
    let provenance = config
        .provenance
        .as_ref()
        .expect("a run records its inputs");
    let images = data.join("train/images.npy");
    let recorded = &provenance.splits["train"];
    let entry = recorded
        .iter()
        .find(|f| f.path == Path::new("train/images.npy"))
        .expect("train/images.npy is recorded");
    assert_eq!(entry.sha256, sha256(&images));
    assert!(provenance.splits.contains_key("val"));
    assert_eq!(
        provenance.teacher_weights, None,
        "a human-label run has no teacher weights"
    );

    // a new split elsewhere in the dataset leaves the run finished (it reads none of it)
    let extra = Dataset::new(DatasetParts::cifar10(vec![7u8; 2 * 3072], vec![1, 2])).unwrap();
    write_split(&data, "extra", &extra, None).unwrap();
    let o = hkd_train(&run_args, &[&quick[..], &["--resume"]].concat());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && stderr.contains("already finished"),
        "{stderr}"
    );

    let before_sha = sha256(&images);
    flip_a_low_bit(&images);
    let after_sha = sha256(&images);
    let without_lock = |run: &Path| {
        let mut files = snapshot(run);
        files.retain(|(name, _)| name != ".lock");
        files
    };
    let before = without_lock(&run);
    let o = hkd_train(&run_args, &[&quick[..], &["--resume"]].concat());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "train/images.npy sha256 {} -> {}",
            &before_sha[..12],
            &after_sha[..12]
        )) && stderr.contains("dataset_hash: ")
            && stderr.contains("--overwrite"),
        "{stderr}"
    );
    assert_eq!(without_lock(&run), before, "a refused run is left alone");
    // the same content again: finished again
    flip_a_low_bit(&images);
    let o = hkd_train(&run_args, &[&quick[..], &["--resume"]].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // the teacher: its best weights change after its student finished
    let teacher_out = root.join("teacher");
    let o = hkd_train(&args_with_teacher(&teacher_out, "baseline"), &quick);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let teacher = only_run(&teacher_out);
    let students = root.join("students");
    let student_args = args_with_teacher(&students, teacher.to_str().unwrap());
    let o = hkd_train(&student_args, &quick);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let student = only_run(&students);
    let weights = teacher.join("best.safetensors");
    let stored: RunConfig =
        RunConfig::from_toml_str(&std::fs::read_to_string(student.join("config.toml")).unwrap())
            .unwrap();
    let was = sha256(&weights);
    assert_eq!(
        stored.provenance.unwrap().teacher_weights.unwrap().sha256,
        was
    );
    flip_a_low_bit(&weights);
    let now = sha256(&weights);
    let o = hkd_train(&student_args, &[&quick[..], &["--resume"]].concat());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("sha256 {} -> {}", &was[..12], &now[..12]))
            && stderr.contains("the teacher was retrained or replaced"),
        "{stderr}"
    );
}

#[test]
fn sighup_checkpoints_exits_75_and_resumes_exactly() {
    let out = fixture().root.join("hangup");
    let mut child = start_until(&out, "epoch 2 batch 2/6");
    signal(child.id(), "-HUP");
    assert_eq!(
        child.wait().unwrap().code(),
        Some(hkd_rundir::EXIT_CHECKPOINTED)
    );
    let run = out.join(run_path());
    assert!(run.join("last.json").is_file());
    let o = hkd_train(&args(&out), &["--resume"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_same_run(reference(), &run);
}

#[test]
fn a_signal_before_the_run_starts_is_exit_75_with_nothing_written() {
    // The process is held at its very start, reading its --config from a FIFO that no one
    // has written yet; the signal arrives there (before, hkd-train died of it: 143).
    let dir = fixture().root.join("held-at-start");
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("config.toml");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let out = dir.join("runs");
    let child = Command::new(BIN)
        .args(args(&out))
        .args(["--config", fifo.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let guard = Guard(Some(child));
    // until it waits for a writer on the FIFO
    let started = std::time::Instant::now();
    while !std::fs::read_to_string(format!("/proc/{pid}/wchan"))
        .is_ok_and(|w| w.contains("fifo") || w.contains("partner") || w.contains("pipe"))
        && started.elapsed() < std::time::Duration::from_secs(10)
    {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    signal(pid, "-TERM");
    std::thread::sleep(std::time::Duration::from_millis(50));
    // then the config arrives (a writer that finds no reader fails at once: the process died)
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut writer = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .expect("hkd-train still reads its config after SIGTERM");
    writer.write_all(b"seed = 0\n").unwrap();
    drop(writer);
    let o = guard.release().wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(hkd_rundir::EXIT_CHECKPOINTED),
        "{stderr}"
    );
    assert!(
        stderr.contains("stopped by a signal before the run started; nothing written"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing written: {stderr}");
}

#[test]
fn a_damaged_last_json_is_repaired_from_the_momentum_file_or_names_the_way_out() {
    let out = fixture().root.join("damaged-state");
    let mut child = start_until(&out, "epoch 2 batch 2/6");
    signal(child.id(), "-TERM");
    assert_eq!(child.wait().unwrap().code(), Some(75));
    let run = out.join(run_path());
    std::fs::write(run.join("last.json"), b"{\"epochs_compl").unwrap();
    let o = hkd_train(&args(&out), &["--resume"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("continuing from the state saved with the momentum buffers"),
        "{stderr}"
    );
    assert_same_run(reference(), &run);

    // both copies damaged: refused, and the message says what to do
    let out = fixture().root.join("damaged-both");
    let mut child = start_until(&out, "epoch 2 batch 2/6");
    signal(child.id(), "-TERM");
    assert_eq!(child.wait().unwrap().code(), Some(75));
    let run = out.join(run_path());
    std::fs::write(run.join("last.json"), b"not json").unwrap();
    std::fs::write(run.join("last.optimizer.safetensors"), b"not safetensors").unwrap();
    let o = hkd_train(&args(&out), &["--resume"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("hkd-train: error: ") && l.contains("last.json"))
            && stderr.contains("pass --overwrite"),
        "{stderr}"
    );
}

#[test]
fn clap_errors_carry_the_prefix_negative_numbers_reach_the_validator_and_configs_list_every_bad_key()
 {
    let out = fixture().root.join("messages");
    for (extra, wanted) in [
        (vec!["--lr", "-0.1"], "lr"),
        (vec!["--lambda", "-1"], "lambda"),
        (vec!["--bogus"], "unexpected argument '--bogus'"),
        (vec!["--epochs", "three"], "--epochs"),
    ] {
        let o = hkd_train(&args(&out), &extra);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(
            stderr.starts_with("hkd-train: error: "),
            "{extra:?}: {stderr}"
        );
        assert!(stderr.contains(wanted), "{extra:?}: {stderr}");
        assert!(
            !stderr.contains("'-0'") && !stderr.contains("'-1'"),
            "{extra:?}: {stderr}"
        );
    }
    let config = fixture().root.join("three-bad-keys.toml");
    std::fs::write(
        &config,
        "lrr = 0.1\nepochs = 2\nepoch = 3\n[optimizer]\nbatchsize = 8\n",
    )
    .unwrap();
    let o = hkd_train(&args(&out), &["--config", config.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    for key in ["`lrr`", "`epoch`", "`batchsize`"] {
        assert!(stderr.contains(key), "{key} not named: {stderr}");
    }
    assert!(!out.exists());
}

#[test]
fn a_teacher_with_nan_weights_is_refused_by_tensor_before_the_run_directory_exists() {
    // a copy of a trained teacher run, the last float of its best weights made NaN
    let teacher = fixture().root.join("nan-teacher");
    copy_tree(teacher_run(), &teacher);
    let weights = teacher.join("best.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let n = bytes.len();
    bytes[n - 4..].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&weights, bytes).unwrap();
    let out = fixture().root.join("of-a-nan-teacher");
    let o = hkd_train(
        &args_with_teacher(&out, teacher.to_str().unwrap()),
        &["--epochs", "1", "--max-batches", "1"],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("best.safetensors")
            && stderr.contains("NaN")
            && stderr.contains("tensor `"),
        "{stderr}"
    );
    assert!(!out.exists(), "no run directory: {stderr}");
}
