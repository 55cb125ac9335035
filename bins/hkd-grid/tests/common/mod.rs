//! Shared helpers of hkd-grid's tests: fake hkd binaries (shell scripts that print
//! clap-like help and record their argv), running hkd-grid, finding grid directories.
#![allow(dead_code, unused_imports)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "../../../../crates/hkd-slurm/tests/support/fake.rs"]
mod fake;
pub use fake::{Fake, TRAIN_HELP};

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
