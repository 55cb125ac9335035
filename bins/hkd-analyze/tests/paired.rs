//! `hkd-analyze --paired-against`: a reference that is not exactly one configuration is
//! refused with exit code 2 before anything is written; a good one writes
//! `paired_deltas.csv`.

#[path = "../../../crates/hkd-analysis/tests/suite/common/mod.rs"]
mod common;

use std::process::{Command, Output};

use common::*;

fn hkd_analyze(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_hkd-analyze"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run hkd-analyze");
    eprintln!(
        "hkd-analyze {args:?}: {}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn paired_against_exit_codes_and_output() {
    let dir = tempfile::tempdir().unwrap();
    write_study(dir.path());
    let root = dir.path().to_str().unwrap();
    let out = dir.path().join("analysis");

    for (selector, says) in [
        ("teacher=baseline", "add label_smoothing=…"),
        ("teacher=nobody", "no configuration has teacher=nobody"),
        ("seed=1", "`seed` is not a grouping key"),
        ("teacher", "KEY=VALUE"),
    ] {
        let o = hkd_analyze(&[root, "--no-figures", "--paired-against", selector]);
        assert_eq!(o.status.code(), Some(2), "{selector}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.starts_with("hkd-analyze: error: --paired-against ") && err.contains(says),
            "{selector}: {err}"
        );
        assert!(!out.exists(), "{selector}: nothing is written");
    }

    let o = hkd_analyze(&[
        root,
        "--no-figures",
        "--paired-against",
        "teacher=baseline,label_smoothing=0.0",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let csv = Csv::read(&out.join("paired_deltas.csv"));
    assert_eq!(csv.rows.len(), 40, "2 configurations × 20 metrics");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("paired deltas against teacher=baseline"),
        "{err}"
    );
    assert!(err.contains("paired_deltas.csv"), "{err}");
}
