//! A tiny, learnable dataset written with `hkd_datasets::write_split`, and helpers.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use hkd_datasets::{Dataset, DatasetParts, write_split};
use hkd_rundir::{Execution, RunSpec};

/// Writes a dataset with splits `train` (with human labels) and `val` to `dir`: images of
/// class c are a noisy colour/stripe pattern of that class, so a network learns them in a
/// few epochs; human labels put 0.7 on the true class and spread the rest.
pub fn write_tiny_dataset(dir: &Path, classes: usize, train: usize, val: usize) {
    write_dataset(dir, classes, train, val, true);
}

/// Like [`write_tiny_dataset`], but the train split has human labels only when
/// `human_labels` is true (the val split never has any).
pub fn write_dataset(dir: &Path, classes: usize, train: usize, val: usize, human_labels: bool) {
    for (split, n, seed) in [("train", train, 1u64), ("val", val, 2u64)] {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut rand = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut images = Vec::with_capacity(n * 3072);
        let mut labels = Vec::with_capacity(n);
        let mut human = Vec::with_capacity(n * classes);
        for i in 0..n {
            let c = i % classes;
            labels.push(c as u32);
            for y in 0..32 {
                for x in 0..32 {
                    for ch in 0..3 {
                        let stripe = ((x + y * (c % 3)) / (2 + c % 4)) % 2;
                        let base = (40 + 60 * ((c + ch) % 4) + 50 * stripe) as i64;
                        let noise = (rand() % 41) as i64 - 20;
                        images.push((base + noise).clamp(0, 255) as u8);
                    }
                }
            }
            for k in 0..classes {
                human.push(if k == c {
                    0.7
                } else {
                    0.3 / (classes - 1) as f64
                });
            }
        }
        let mut parts = DatasetParts::cifar10(images, labels);
        parts.class_names.truncate(classes);
        parts.human = (human_labels && split == "train").then_some(human);
        let ds = Dataset::new(parts).unwrap();
        write_split(dir, split, &ds, Some("synthetic test data")).unwrap();
    }
}

/// The specification and execution of a quick CPU run of `plane2` on `data` into `out`
/// (batches of 16, validation batches of 64, lr 0.05).
pub fn quick(data: &Path, out: &Path, teacher: &str, epochs: u32) -> (RunSpec, Execution) {
    let mut spec = RunSpec {
        student: "plane2".into(),
        ..RunSpec::default()
    };
    spec.data.dir = data.to_path_buf();
    spec.teacher.teacher = teacher.into();
    spec.training.epochs = epochs;
    spec.training.batch_size = 16;
    spec.training.eval_batch_size = 64;
    spec.optimizer.lr = 0.05;
    (spec, execution(out))
}

/// A fresh CPU execution into `out` (no resume, no overwrite).
pub fn execution(out: &Path) -> Execution {
    Execution {
        out: out.to_path_buf(),
        device: "cpu".into(),
        threads: None,
        resume: false,
        overwrite: false,
    }
}

/// Every file of a run directory, by name.
pub fn files_of(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `metrics.jsonl` without the timing fields.
pub fn metrics_without_timing(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            o.remove("seconds");
            o.remove("images_per_s");
            v
        })
        .collect()
}

/// Asserts that two run directories recorded the same epochs (timing aside) and hold
/// bit-identical tensors in each of `files`.
pub fn assert_same_run(a: &Path, b: &Path, files: &[&str]) {
    assert_eq!(metrics_without_timing(a), metrics_without_timing(b));
    for f in files {
        assert!(same_tensors(&a.join(f), &b.join(f)), "{f} differs");
    }
}

pub fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub fn path(p: &Path) -> PathBuf {
    p.to_path_buf()
}

/// True when two safetensors files hold the same names, shapes, dtypes and bit-identical
/// values (the files' bytes may differ in metadata order).
pub fn same_tensors(a: &Path, b: &Path) -> bool {
    let load = |p: &Path| candle_core::safetensors::load(p, &candle_core::Device::Cpu).unwrap();
    let (x, y) = (load(a), load(b));
    if x.len() != y.len() {
        return false;
    }
    x.iter().all(|(name, t)| {
        let Some(u) = y.get(name) else { return false };
        let bits = |t: &candle_core::Tensor| -> Vec<u64> {
            t.flatten_all()
                .unwrap()
                .to_dtype(candle_core::DType::F64)
                .unwrap()
                .to_vec1::<f64>()
                .unwrap()
                .into_iter()
                .map(f64::to_bits)
                .collect()
        };
        t.dims() == u.dims() && t.dtype() == u.dtype() && bits(t) == bits(u)
    })
}
