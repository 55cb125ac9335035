//! Shared helpers for the integration tests: the reference-data directory and .npy reading.
#![allow(dead_code, unused_imports)]

use std::path::{Path, PathBuf};

use candle_core::Tensor;

/// The PyTorch reference directory (see [`hkd_test_support::reference_dir`]).
pub fn reference_dir(test: &str) -> Option<PathBuf> {
    hkd_test_support::reference_dir(test, "torch")
}

pub use hkd_test_support::read_npy_f32;

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

/// The largest absolute difference of two f32 tensors of one shape.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}
