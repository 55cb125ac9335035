//! Errors and logs of hkd-grid, and of the hkd-train and hkd-eval built beside it, with
//! stderr redirected (docs/README.md, "Exit codes"): no colour codes, errors start with
//! `<program>: error: `, and the exit code follows the policy (1 = failed, 2 = refused
//! before any work). hkd-data and hkd-analyze are checked by their own packages' tests.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Fake, assert_current, find_hkd_train, hkd_grid, run, skip_or_fail};

const ESC: &str = "\x1b[";

/// Checks a redirected stderr: no colour codes; with `error`, a line
/// `<program>: error: …` containing `error`.
fn check_stderr(program: &str, stderr: &str, error: Option<&str>) {
    assert!(
        !stderr.contains(ESC),
        "{program}: colour codes in a redirected stderr: {stderr:?}"
    );
    if let Some(what) = error {
        let prefix = format!("{program}: error: ");
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&prefix) && l.contains(what)),
            "{program}: expected a line `{prefix}…{what}…`: {stderr}"
        );
    }
}

#[test]
fn hkd_grid_errors_are_plain_and_coded() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = Fake::new(tmp.path(), "hkd-train", "echo 'half way' >&2; exit 3");
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let grid = |args: &[&str]| {
        run(hkd_grid()
            .current_dir(&work)
            .env("HKD_BIN_DIR", fake.path.parent().unwrap())
            .env_remove("NO_COLOR")
            .env("RUST_LOG", "info")
            .args(args))
    };

    // an invalid grid: refused, 2
    std::fs::write(
        work.join("bad.toml"),
        "binary = \"hkd-train\"\n[grid]\nlamda = [0.5]\n",
    )
    .unwrap();
    let (code, _, stderr) = grid(&["bad.toml", "--dry-run"]);
    assert_eq!(code, 2, "{stderr}");
    check_stderr("hkd-grid", &stderr, Some("bad.toml"));

    // an unknown flag: 2
    let (code, _, stderr) = grid(&["bad.toml", "--no-such-flag"]);
    assert_eq!(code, 2, "{stderr}");
    check_stderr("hkd-grid", &stderr, None);

    // a directory that is no grid: failed, 1
    let (code, _, stderr) = grid(&["status", tmp.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    check_stderr("hkd-grid", &stderr, Some("no manifest.json"));

    // a local grid whose task fails: 1, and its progress lines are plain
    std::fs::write(
        work.join("local.toml"),
        "binary = \"hkd-train\"\nexecutor = \"local\"\n[grid]\nteacher = \"human\"\niter = [0, 1]\n",
    )
    .unwrap();
    let (code, _, stderr) = grid(&["local.toml"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("FAILED (exit 3)"), "{stderr}");
    check_stderr("hkd-grid", &stderr, None);
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn fixture() -> PathBuf {
    common::workspace_root().join("fixtures/cifar10h-mini")
}

#[test]
fn hkd_train_logs_and_errors_are_plain_and_coded() {
    const TEST: &str = "hkd_train_logs_and_errors_are_plain_and_coded";
    let Some(train) = find_hkd_train() else {
        return skip_or_fail(TEST, "hkd-train is not built (cargo build -p hkd-train)");
    };
    assert_current(&train);
    let tmp = tempfile::tempdir().unwrap();
    let data = fixture();
    let base = |extra: &[&str]| {
        let mut cmd = Command::new(&train);
        cmd.args(["--data", data.to_str().unwrap(), "--teacher", "human"])
            .arg("--out")
            .arg(tmp.path().join("runs"))
            .args(extra)
            .env_remove("NO_COLOR")
            .env("RUST_LOG", "info")
            .current_dir(tmp.path());
        cmd.output().unwrap()
    };
    // a log line (the dry run logs its version and threads first)
    let o = base(&["--dry-run"]);
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("INFO"), "a log line is expected: {stderr}");
    check_stderr("hkd-train", &stderr, None);

    // a refused value: 2
    let o = base(&["--lr=-1", "--dry-run"]);
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    check_stderr("hkd-train", &stderr, Some("lr"));
}

/// hkd-eval beside hkd-grid (built by `cargo build` of the workspace); its own tests cover
/// its exit codes, this checks the shared prefix and plain text.
fn find_hkd_eval() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_BIN_EXE_hkd-grid")).parent()?;
    Some(dir.join("hkd-eval")).filter(|p| p.is_file())
}

#[test]
fn hkd_eval_errors_are_plain_and_coded() {
    const TEST: &str = "hkd_eval_errors_are_plain_and_coded";
    let Some(eval) = find_hkd_eval() else {
        return skip_or_fail(TEST, "hkd-eval is not built (cargo build -p hkd-eval)");
    };
    let tmp = tempfile::tempdir().unwrap();
    let o = Command::new(&eval)
        .args(["run", tmp.path().to_str().unwrap(), "--set", "nonsense"])
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let stderr = text(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(2),
        "a malformed --set is refused: {stderr}"
    );
    check_stderr("hkd-eval", &stderr, Some("NAME=DIR"));
}
