//! Shared helpers for the integration tests: the reference-data directory and .npy reading.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `$HKD_REFERENCE_DIR` or `<workspace root>/../shared/reference`. Returns `None` (after a
/// loud message) when it is absent, except under CI (`CI=true`), where it panics.
pub fn reference_dir(test: &str) -> Option<PathBuf> {
    let dir = match std::env::var_os("HKD_REFERENCE_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference"),
    };
    if dir.join("torch").is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "{test}: reference data not found at {} (set HKD_REFERENCE_DIR)",
            dir.display()
        );
    }
    // Straight to stderr: libtest hides eprintln! output of passing tests.
    let _ = std::io::Write::write_fmt(
        &mut std::io::stderr(),
        format_args!(
            "SKIPPED {test}: ../shared not found at {} (set HKD_REFERENCE_DIR)\n",
            dir.display()
        ),
    );
    None
}

/// Reads an f32 .npy file: (shape, values).
pub fn read_npy_f32(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let npy = npyz::NpyFile::new(&bytes[..]).expect("valid .npy");
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let values: Vec<f32> = npy.into_vec().expect("f32 data");
    (shape, values)
}

/// `<arch>_state_names.json` is `[[name, [d0, d1, ...]], ...]`.
pub fn read_state_names(path: &Path) -> Vec<(String, Vec<usize>)> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    v.as_array()
        .expect("array")
        .iter()
        .map(|e| {
            let name = e[0].as_str().expect("name").to_string();
            let shape = e[1]
                .as_array()
                .expect("shape")
                .iter()
                .map(|d| d.as_u64().expect("dim") as usize)
                .collect();
            (name, shape)
        })
        .collect()
}

/// `param_counts.json`: name -> count.
pub fn read_param_counts(path: &Path) -> Vec<(String, u64)> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    v.as_object()
        .expect("object")
        .iter()
        .map(|(k, n)| (k.clone(), n.as_u64().expect("count")))
        .collect()
}

/// The reference models with weights and logits.
pub const REFERENCE_MODELS: &[&str] = &[
    "resnet8",
    "resnet20",
    "plane2",
    "plane8",
    "shake26-2x16d",
    "wrn16-1",
    "resnext29-2x4d",
];
