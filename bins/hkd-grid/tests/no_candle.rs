//! hkd-grid builds fast and runs on a login node without GPU libraries: its dependency
//! tree (normal dependencies, as `cargo build -p hkd-grid` resolves them) has no candle
//! and no polars — although it parses hkd-train's flags in-process, through hkd-rundir and
//! the settings part of hkd-losses (whose `candle` feature stays off).

use std::process::Command;

#[test]
fn hkd_grid_depends_on_neither_candle_nor_polars() {
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "-p",
            "hkd-grid",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    let tree = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(tree.contains("hkd-rundir"), "{tree}");
    assert!(
        tree.contains("hkd-losses"),
        "the spec embeds the loss settings: {tree}"
    );
    let heavy: Vec<&str> = tree
        .lines()
        .filter(|l| l.starts_with("candle") || l.starts_with("polars") || l.starts_with("cudarc"))
        .collect();
    assert!(heavy.is_empty(), "hkd-grid pulls in {heavy:?}");
}
