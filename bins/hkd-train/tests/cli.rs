//! The real `hkd-train` binary: signals, resume after SIGKILL, exit codes, output.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

use hkd_datasets::{Dataset, DatasetParts, write_split};

const BIN: &str = env!("CARGO_BIN_EXE_hkd-train");
const RUN: &str = "human/resnet8/student_resnet8_distil_fn_KL_temperature_h_1.0_temperature_t_1.0_lambda_0.5_gamma_0.0_iter_0";

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
        let metrics = metrics_without_timing(&out.join(RUN));
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
        out.join(RUN)
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
    let mut child = Command::new(BIN)
        .args(args(out))
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
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success());
    let run = out.join(RUN);
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
    let run = out.join(RUN);
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
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join(RUN).join("last.json")).unwrap())
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
    let o = hkd_train(&with_missing, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no-such-teacher") && stderr(&o).contains("does not exist"),
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
    assert!(
        stdout.contains("baseline/resnet8/student_resnet8_distil_fn_KL_temperature_h_1.0_temperature_t_1.0_lambda_0.7_gamma_0.0_iter_5"),
        "{stdout}"
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
