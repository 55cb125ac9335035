//! The `hkd-analyze` binary's log and errors (docs/README.md, "Exit codes"), on a small
//! grid of fabricated runs (written through hkd_rundir, not by training):
//! - its log (info and warning lines) is plain text when stderr is not a terminal,
//!   coloured on a terminal unless `NO_COLOR` is set;
//! - an unknown `--group-by` key exits 2, an unknown flag 2, a grid that cannot be read 1;
//!   errors start with `hkd-analyze: error: ` and carry no colour codes.

use std::path::Path;
use std::process::{Command, Output};

use hkd_rundir::{BestRecord, EpochMetrics, RunConfig, RunDir, RunSpec, RunState, TeacherSpec};
use hkd_test_support::Scratch;

const BIN: &str = env!("CARGO_BIN_EXE_hkd-analyze");
const ESC: &str = "\x1b[";

/// A scratch directory under cargo's per-target scratch space, removed when dropped.
fn scratch(test: &str) -> Scratch {
    Scratch::new(env!("CARGO_TARGET_TMPDIR"), &format!("hkd-analyze-{test}"))
}

/// A small valid safetensors file (one f32 tensor of two values).
fn weights_bytes() -> Vec<u8> {
    let header = br#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend(1f32.to_le_bytes().into_iter().chain(2f32.to_le_bytes()));
    bytes
}

/// A finished two-epoch human-KD run with best validation accuracy `acc`.
fn write_run(root: &Path, lambda: f64, iter: u32, acc: f64) -> RunDir {
    let mut spec = RunSpec {
        student: "resnet8".into(),
        seed: 100 + u64::from(iter),
        iter,
        ..RunSpec::default()
    };
    spec.teacher.teacher = "human".into();
    spec.loss.as_hkd_mut().unwrap().lambda = lambda;
    spec.training.epochs = 2;
    let config = RunConfig::new(spec, TeacherSpec::Human, 10, "feedbeef", "cpu");
    let run = config.run_dir_in(root);
    run.create().unwrap();
    run.write_config(&config).unwrap();
    for weights in [RunDir::BEST_WEIGHTS, RunDir::LAST_WEIGHTS] {
        std::fs::write(run.file(weights), weights_bytes()).unwrap();
    }
    let metrics: Vec<EpochMetrics> = (1..=2)
        .map(|epoch| EpochMetrics {
            epoch,
            lr: 0.1,
            train_parts: [("hard", 2.0), ("kd", 1.0), ("human", 1.0)].into(),
            train_total: 1.5,
            train_acc: 0.5,
            val_acc: acc * f64::from(epoch) / 2.0,
            val_loss: 1.0,
            seconds: 2.0,
            images_per_s: 500.0,
        })
        .collect();
    run.write_metrics(&metrics).unwrap();
    run.write_best(&BestRecord {
        epoch: 2,
        val_acc: acc,
        val_loss: 1.0,
    })
    .unwrap();
    run.write_state(&RunState {
        epochs_completed: 2,
        batches_into_epoch: 0,
        epochs: 2,
        finished: true,
        trainer: Default::default(),
    })
    .unwrap();
    run
}

/// Four finished runs (two values of lambda, two repeats each) and one run directory
/// whose config.toml is unreadable, which the analysis leaves out with a warning.
fn write_grid(root: &Path) {
    write_run(root, 0.5, 0, 0.5);
    write_run(root, 0.5, 1, 0.75);
    write_run(root, 1.0, 0, 0.25);
    write_run(root, 1.0, 1, 0.5);
    let broken = root.join("human/resnet8/broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join(RunDir::CONFIG), "this is = = not toml\n").unwrap();
}

fn hkd_analyze(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `BIN` on a pseudo-terminal; `None` where `script` (util-linux) is missing.
fn on_a_terminal(args: &[&str], no_color: bool) -> Option<Output> {
    hkd_test_support::on_a_terminal(BIN, args, no_color)
}

#[test]
fn the_log_is_coloured_only_on_a_terminal_without_no_color() {
    let scratch = scratch("colour");
    let grid = scratch.path().join("grid");
    write_grid(&grid);
    let args = |out: &str| -> Vec<String> {
        vec![
            grid.display().to_string(),
            "--no-figures".into(),
            "--out".into(),
            scratch.path().join(out).display().to_string(),
        ]
    };
    let piped = args("piped");
    let piped: Vec<&str> = piped.iter().map(String::as_str).collect();
    let o = hkd_analyze(&piped);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("4 runs in 2 groups") && err.contains("left out"),
        "an info and a warning line are expected: {err}"
    );
    assert!(
        !err.contains(ESC),
        "colour codes in a redirected log: {err:?}"
    );

    let tty = args("tty");
    let tty: Vec<&str> = tty.iter().map(String::as_str).collect();
    let Some(o) = on_a_terminal(&tty, false) else {
        hkd_test_support::skip(
            "the terminal half",
            "`script` (util-linux) is not installed",
        );
        return;
    };
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("left out"), "{out}");
    assert!(out.contains(ESC), "no colour on a terminal: {out:?}");
    let plain = args("no-color");
    let plain: Vec<&str> = plain.iter().map(String::as_str).collect();
    let o = on_a_terminal(&plain, true).unwrap();
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("left out"), "{out}");
    assert!(!out.contains(ESC), "colour despite NO_COLOR: {out:?}");
}

/// stderr, checked to be an hkd-analyze error without colour codes.
fn error_text(o: &Output) -> String {
    let err = text(&o.stderr);
    assert!(
        err.lines().any(|l| l.starts_with("hkd-analyze: error: ")),
        "errors start with `hkd-analyze: error: `: {err}"
    );
    assert!(!err.contains(ESC), "{err:?}");
    err
}

#[test]
fn exit_codes_follow_the_policy() {
    let scratch = scratch("codes");
    let grid = scratch.path().join("grid");
    write_grid(&grid);
    let out = scratch.path().join("out");
    let g = grid.to_str().unwrap();
    let o = out.to_str().unwrap();

    // an unknown --group-by key: refused, 2, naming the key
    let r = hkd_analyze(&[g, "--no-figures", "--out", o, "--group-by", "nosuchkey"]);
    assert_eq!(r.status.code(), Some(2), "{}", text(&r.stderr));
    assert!(error_text(&r).contains("nosuchkey"));
    assert!(
        !out.join("summary.md").exists(),
        "a refused analysis writes no summary"
    );

    // an unknown flag: 2
    let r = hkd_analyze(&[g, "--no-such-flag"]);
    assert_eq!(r.status.code(), Some(2), "{}", text(&r.stderr));

    // a grid directory that cannot be read: failed, 1
    let missing = scratch.path().join("missing");
    let r = hkd_analyze(&[missing.to_str().unwrap(), "--no-figures"]);
    assert_eq!(r.status.code(), Some(1), "{}", text(&r.stderr));
    assert!(error_text(&r).contains("missing"));

    // and the same grid with valid options succeeds
    let r = hkd_analyze(&[g, "--no-figures", "--out", o, "--group-by", "lambda"]);
    assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
    assert!(out.join("summary.md").is_file());
}

/// Debian's Chromium, headless, as the workplace runs it (no background networking).
fn chromium(args: &[&str]) -> Option<Output> {
    let bin = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })?;
    let profile = tempfile::tempdir().unwrap();
    Some(
        Command::new(bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(args)
            .output()
            .unwrap(),
    )
}

#[test]
fn report_html_renders_in_a_real_browser_sorts_and_loads_nothing_from_outside() {
    const TEST: &str = "report_html_renders_in_a_real_browser_sorts_and_loads_nothing_from_outside";
    let dir = scratch("report-browser");
    for (i, acc) in [0.5, 0.75, 0.25].iter().enumerate() {
        write_run(dir.path(), [0.25, 0.5, 1.0][i], 0, *acc);
        write_run(dir.path(), [0.25, 0.5, 1.0][i], 1, *acc - 0.05);
    }
    let o = Command::new(BIN).arg(dir.path()).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report = dir.path().join("analysis/report.html");
    assert!(report.is_file());
    let url = format!("file://{}", report.display());
    let Some(shot) = chromium(&[
        &format!("--screenshot={}", dir.path().join("shot.png").display()),
        "--window-size=1280,1600",
        &url,
    ]) else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{TEST}: no chromium on PATH; CI installs Debian's (apt-get install chromium)");
        }
        eprintln!("SKIPPED {TEST}: no chromium on PATH (apt-get install chromium)");
        return;
    };
    let stderr = String::from_utf8_lossy(&shot.stderr);
    assert!(shot.status.success(), "{stderr}");
    assert!(!stderr.contains("Uncaught"), "a script error: {stderr}");
    // the screenshot is not blank: a PNG with a fair share of non-white pixels
    let png = std::fs::read(dir.path().join("shot.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert!(
        png.len() > 20_000,
        "a near-empty screenshot: {} bytes",
        png.len()
    );

    // the page's own self-test (#selftest): sort by a header click, figure sizes, requests
    let dom = chromium(&["--dump-dom", &format!("{url}#selftest")]).unwrap();
    let stderr = String::from_utf8_lossy(&dom.stderr);
    assert!(!stderr.contains("Uncaught"), "a script error: {stderr}");
    let text = String::from_utf8_lossy(&dom.stdout);
    let start =
        text.find("data-selftest=\"").expect("the self-test ran") + "data-selftest=\"".len();
    let json = text[start..start + text[start..].find('"').unwrap()].replace("&quot;", "\"");
    let r: serde_json::Value = serde_json::from_str(&json).unwrap();
    let col = |k: &str| -> Vec<f64> {
        r[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let mut sorted = col("before");
    sorted.sort_by(f64::total_cmp);
    assert_eq!(col("ascending"), sorted, "{r}");
    sorted.reverse();
    assert_eq!(col("descending"), sorted, "{r}");
    assert_eq!(sorted.len(), 3, "{r}");
    let figures = r["figures"].as_array().unwrap();
    assert!(!figures.is_empty(), "{r}");
    for f in figures {
        assert!(
            f[0].as_f64().unwrap() > 50.0 && f[1].as_f64().unwrap() > 50.0,
            "a figure without size: {r}"
        );
    }
    assert_eq!(r["resources"], 0, "the page fetched something: {r}");
}
