//! Shared helpers of hkd-grid's tests: fake hkd binaries (shell scripts that record their
//! argv), running hkd-grid, finding grid directories.
#![allow(dead_code, unused_imports)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "../../../../crates/hkd-slurm/tests/support/fake.rs"]
mod fake;
pub use fake::Fake;

/// The hkd-grid under test.
pub fn hkd_grid() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hkd-grid"));
    cmd.env_remove("SLURM_JOB_ID")
        .env_remove("SLURM_ARRAY_JOB_ID")
        .env_remove("SLURM_ARRAY_TASK_ID");
    cmd
}

/// Runs a command, returning its output (stdout, stderr as text) and exit code.
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("command runs");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// The only grid directory under `root` (panics otherwise).
pub fn only_grid(root: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(
        dirs.len(),
        1,
        "grid dirs under {}: {dirs:?}",
        root.display()
    );
    dirs[0].clone()
}

/// The workspace root (for configs/ and fixtures/).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// True when env `CI` is `true`: missing prerequisites fail instead of skipping.
pub fn in_ci() -> bool {
    std::env::var("CI").map(|v| v == "true").unwrap_or(false)
}

/// Says loudly on stderr that `test` is skipped and why; in CI (`CI=true`) fails instead.
pub fn skip_or_fail(test: &str, why: &str) {
    if in_ci() {
        panic!(
            "{test}: {why} (CI=true: this test must run; .ci/run starts Slurm with scripts/local-slurm.sh)"
        );
    }
    hkd_test_support::skip(test, why);
}

/// `hkd-train` next to this hkd-grid, else in the workspace's target/{release,debug}.
pub fn find_hkd_train() -> Option<PathBuf> {
    let own = Path::new(env!("CARGO_BIN_EXE_hkd-grid"))
        .parent()
        .map(|d| d.join("hkd-train"));
    let root = workspace_root();
    own.into_iter()
        .chain([
            root.join("target/release/hkd-train"),
            root.join("target/debug/hkd-train"),
        ])
        .find(|p| p.is_file())
}

/// Panics unless the hkd-train at `train` has every flag hkd-grid knows in-process: a
/// stale build would fail every task of a grid, far from the cause.
pub fn assert_current(train: &Path) {
    let (code, stdout, stderr) = run(Command::new(train).arg("flags"));
    assert_eq!(code, 0, "{} flags: {stderr}", train.display());
    let built: std::collections::BTreeSet<&str> = stdout.lines().collect();
    let command = hkd_rundir::TrainCommand::clap_command();
    let missing: Vec<&str> = command
        .get_arguments()
        .filter_map(|a| a.get_long())
        .filter(|l| !matches!(*l, "help" | "version") && !built.contains(l))
        .collect();
    assert!(
        missing.is_empty(),
        "{} is older than this hkd-grid (it lacks --{}): rebuild it with `cargo build -p hkd-train`",
        train.display(),
        missing.join(", --")
    );
}
