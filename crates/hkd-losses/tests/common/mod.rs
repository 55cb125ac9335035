//! Shared helpers of the integration tests: locating the reference data and reading `.npy`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::Deserialize;

/// `<reference>/torch/losses` (see [`hkd_test_support::reference_dir`]).
pub fn losses_reference_dir(test: &str) -> Option<PathBuf> {
    hkd_test_support::reference_dir(test, "torch/losses/cases.json").map(|d| d.join("torch/losses"))
}

fn open_npy(path: &Path) -> npyz::NpyFile<std::io::BufReader<std::fs::File>> {
    let file = std::fs::File::open(path)
        .unwrap_or_else(|error| panic!("cannot open {}: {error}", path.display()));
    npyz::NpyFile::new(std::io::BufReader::new(file))
        .unwrap_or_else(|error| panic!("{} is not a .npy file: {error}", path.display()))
}

/// A float64 `.npy` as a tensor of its shape, in f64 on the CPU.
pub fn load_f64(path: &Path) -> Tensor {
    let npy = open_npy(path);
    let shape: Vec<usize> = npy.shape().iter().map(|&dim| dim as usize).collect();
    let data: Vec<f64> = npy
        .into_vec()
        .unwrap_or_else(|error| panic!("{} is not float64: {error}", path.display()));
    Tensor::from_vec(data, shape, &Device::Cpu).expect("shape matches data")
}

/// An int64 `.npy` as an i64 tensor on the CPU.
pub fn load_i64(path: &Path) -> Tensor {
    let npy = open_npy(path);
    let shape: Vec<usize> = npy.shape().iter().map(|&dim| dim as usize).collect();
    let data: Vec<i64> = npy
        .into_vec()
        .unwrap_or_else(|error| panic!("{} is not int64: {error}", path.display()));
    Tensor::from_vec(data, shape, &Device::Cpu).expect("shape matches data")
}

/// The inputs shared by all reference cases.
pub struct ReferenceInputs {
    pub logits: Tensor,
    pub teacher_logits: Tensor,
    pub human: Tensor,
    pub hard: Tensor,
}

impl ReferenceInputs {
    pub fn load(dir: &Path) -> Self {
        Self {
            logits: load_f64(&dir.join("logits.npy")),
            teacher_logits: load_f64(&dir.join("teacher_logits.npy")),
            human: load_f64(&dir.join("human.npy")),
            hard: load_i64(&dir.join("hard.npy")),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct CasesFile {
    pub layout: String,
    pub cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub mode: String,
    pub distil_fn: String,
    pub kl_reduction: String,
    pub lambda: f64,
    pub gamma: f64,
    pub temperature_t: f64,
    pub temperature_h: f64,
    pub human_smoothing: f64,
    pub expected: Expected,
    pub grad_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    pub hard: f64,
    pub kd: f64,
    pub teacher_term: Option<f64>,
    pub human_term: Option<f64>,
    pub total: f64,
}

pub fn load_cases(dir: &Path) -> CasesFile {
    let path = dir.join("cases.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("{} does not parse: {error}", path.display()))
}

/// The mode of a reference case.
pub fn mode_of(case: &Case) -> hkd_losses::DistillationMode {
    case.mode.parse().expect("known mode")
}

/// The crate's config for a reference case (field names differ: `temperature_t` there).
/// The settings the reference cases do not vary keep their defaults (`human_target` log,
/// no label smoothing).
pub fn config_of(case: &Case) -> hkd_losses::DistillationConfig {
    hkd_losses::DistillationConfig {
        lambda: case.lambda,
        gamma: case.gamma,
        temperature_teacher: case.temperature_t,
        temperature_human: case.temperature_h,
        distil_fn: case.distil_fn.parse().expect("known distil_fn"),
        kl_reduction: case.kl_reduction.parse().expect("known kl_reduction"),
        human_smoothing: case.human_smoothing,
        ..hkd_losses::DistillationConfig::default()
    }
}

/// The validated loss of a reference case.
pub fn loss_of(case: &Case) -> hkd_losses::DistillationLoss {
    hkd_losses::DistillationLoss::new(mode_of(case), config_of(case)).expect("valid case")
}

/// `|found - expected| / |expected|`, or the absolute difference where `expected` is 0.
pub fn relative_error(found: f64, expected: f64) -> f64 {
    let difference = (found - expected).abs();
    if expected == 0.0 {
        difference
    } else {
        difference / expected.abs()
    }
}
