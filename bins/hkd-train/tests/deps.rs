//! A cold first build of the training binary compiles only what it uses: candle-core is
//! vendored without Hugging Face's `tokenizers` (third_party/README.md), and nothing of the
//! analysis' polars stack reaches hkd-train. The dependency tree is what
//! `cargo build -p hkd-train` resolves (normal dependencies, this platform).

use std::process::Command;

fn tree(package: &str, features: &[&str]) -> String {
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "-p",
            package,
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
        ])
        .args(features)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn hkd_train_builds_neither_tokenizers_nor_polars() {
    let tree = tree("hkd-train", &[]);
    assert!(tree.lines().any(|l| l.starts_with("candle-core")), "{tree}");
    let unused: Vec<&str> = tree
        .lines()
        .filter(|l| {
            ["tokenizers", "polars", "hyper", "reqwest", "onig", "esaxx"]
                .iter()
                .any(|c| l.starts_with(&format!("{c} ")))
        })
        .collect();
    assert!(unused.is_empty(), "hkd-train pulls in {unused:?}");
}
