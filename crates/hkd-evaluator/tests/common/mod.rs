//! Helpers shared by the evaluator's integration tests.
#![allow(dead_code, unused_imports)]

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use hkd_arch::Network;
use hkd_datasets::{Dataset, DatasetParts, Normalization, write_split};
use hkd_rundir::{
    DataSpec, DistilFn, DistillationConfig, KlReduction, OptimizerSpec, RunConfig, RunDir, RunSpec,
    RunState, ScheduleSpec, SchedulerKind, TeacherChoice, TeacherSpec, TrainingSpec,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use hkd_test_support::workspace_root;

/// The PyTorch reference directory (see [`hkd_test_support::reference_dir`]).
pub fn reference_dir(test: &str) -> Option<PathBuf> {
    hkd_test_support::reference_dir(test, "torch/models")
}

pub use hkd_test_support::shared_data;

pub use hkd_test_support::read_npy_f32;

/// Reads an `.npy` of f64 values with its shape.
pub fn read_npy_f64(path: &Path) -> (Vec<usize>, Vec<f64>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().iter().map(|&d| d as usize).collect();
    (shape, npy.into_vec::<f64>().unwrap())
}

/// `n` random images with labels, and (optionally) human label rows that put most mass
/// on the label, some rows with zeros; seeded.
pub fn random_dataset(n: usize, seed: u64, human: bool) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let images: Vec<u8> = (0..n * 3072).map(|_| rng.random::<u8>()).collect();
    let labels: Vec<u32> = (0..n).map(|i| (i % 10) as u32).collect();
    let human = human.then(|| {
        let mut rows = Vec::with_capacity(n * 10);
        for &l in &labels {
            let mut row = [0f64; 10];
            if rng.random::<f64>() < 0.3 {
                row[l as usize] = 1.0; // unanimous
            } else {
                for v in row.iter_mut() {
                    *v = if rng.random::<f64>() < 0.5 {
                        0.0
                    } else {
                        rng.random::<f64>()
                    };
                }
                row[l as usize] += 3.0;
                let s: f64 = row.iter().sum();
                row.iter_mut().for_each(|v| *v /= s);
            }
            rows.extend_from_slice(&row);
        }
        rows
    });
    let mut parts = DatasetParts::cifar10(images, labels);
    parts.human = human;
    Dataset::new(parts).unwrap()
}

/// Writes `dataset` as `split` of the dataset directory `dir`.
pub fn write_set(dir: &Path, split: &str, dataset: &Dataset) {
    write_split(dir, split, dataset, Some("test data")).unwrap();
}

/// A finished run directory `<root>/<name>` of `arch` (seeded weights in best.safetensors)
/// whose validation split is `data_dir:val_split`. The directory is placed where the test
/// says (the evaluator finds runs anywhere), not at the trainer's path of its config.
pub fn make_run(
    root: &Path,
    name: &str,
    arch: &str,
    seed: u64,
    data_dir: &Path,
    val_split: &str,
) -> RunDir {
    let run = RunDir::new(root.join(name));
    run.create().unwrap();
    let spec = RunSpec {
        student: arch.to_string(),
        seed,
        iter: 0,
        data: DataSpec {
            dir: data_dir.to_path_buf(),
            train_split: "train".into(),
            val_split: val_split.into(),
        },
        teacher: TeacherChoice {
            teacher: "baseline".into(),
            teacher_arch: None,
        },
        loss: hkd_rundir::ObjectiveConfig::Hkd(DistillationConfig {
            lambda: 0.0,
            gamma: 0.0,
            temperature_teacher: 1.0,
            temperature_human: 1.0,
            distil_fn: DistilFn::Kl,
            kl_reduction: KlReduction::BatchMean,
            human_smoothing: 0.0,
            ..DistillationConfig::default()
        }),
        training: TrainingSpec {
            epochs: 1,
            batch_size: 128,
            ..TrainingSpec::default()
        },
        optimizer: OptimizerSpec {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 1e-4,
        },
        schedule: ScheduleSpec {
            scheduler: SchedulerKind::Plateau,
            ..ScheduleSpec::default()
        },
    };
    let config = RunConfig::new(spec, TeacherSpec::Baseline, 10, "test", "cpu");
    run.write_config(&config).unwrap();
    save_weights(&run, arch, seed);
    run.write_state(&RunState {
        epochs_completed: 1,
        batches_into_epoch: 0,
        epochs: 1,
        finished: true,
        trainer: serde_json::Value::Null,
    })
    .unwrap();
    run
}

/// Saves a seeded network as the run's best.safetensors.
pub fn save_weights(run: &RunDir, arch: &str, seed: u64) {
    let net = Network::new(arch, 10, &Device::Cpu, DType::F32, seed).unwrap();
    net.save_safetensors(&run.file(RunDir::BEST_WEIGHTS))
        .unwrap();
}

/// The dataset's images normalised by hand: `(b/255 − mean)/std` in f32, N×3×32×32.
pub fn normalised_images(dataset: &Dataset) -> Tensor {
    let Normalization { mean, std } = dataset.normalization();
    let n = dataset.len();
    let mut out = vec![0f32; n * 3072];
    for i in 0..n {
        let img = dataset.image(i);
        for p in 0..1024 {
            for c in 0..3 {
                out[i * 3072 + c * 1024 + p] = (img[p * 3 + c] as f32 / 255.0 - mean[c]) / std[c];
            }
        }
    }
    Tensor::from_vec(out, (n, 3, 32, 32), &Device::Cpu).unwrap()
}

/// Logits of `net` on `images`, straight through `forward_eval` in one batch.
pub fn direct_logits(net: &Network, images: &Tensor) -> Vec<f32> {
    net.forward_eval(images)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

// ---- metrics written out by hand, independent of the library -----------------------

pub fn softmax(row: &[f32]) -> Vec<f64> {
    let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let e: Vec<f64> = row.iter().map(|&v| (v as f64 - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

pub fn pred(row: &[f32]) -> usize {
    let mut best = 0;
    for i in 1..row.len() {
        if row[i] > row[best] {
            best = i;
        }
    }
    best
}

pub struct Hand {
    pub accuracy: f64,
    pub ce: f64,
    pub ece: f64,
    pub brier: f64,
    pub ce_batches: f64,
}

pub fn hand_metrics(logits: &[f32], labels: &[u32], batch: usize) -> Hand {
    let n = labels.len();
    let mut correct = 0.0;
    let mut ce = Vec::new();
    let mut brier = 0.0;
    let mut bins = vec![(0.0f64, 0.0f64, 0usize); 15];
    for (i, row) in logits.chunks(10).enumerate() {
        let p = softmax(row);
        let y = labels[i] as usize;
        let k = pred(row);
        let ok = (k == y) as u32 as f64;
        correct += ok;
        ce.push(-p[y].ln());
        for (c, pc) in p.iter().enumerate() {
            let t = if c == y { 1.0 } else { 0.0 };
            brier += (pc - t) * (pc - t);
        }
        let conf = p[k];
        let mut b = 0;
        while !(conf > b as f64 / 15.0 && conf <= (b + 1) as f64 / 15.0) {
            b += 1;
        }
        bins[b].0 += ok;
        bins[b].1 += conf;
        bins[b].2 += 1;
    }
    let ece = bins
        .iter()
        .filter(|b| b.2 > 0)
        .map(|&(acc, conf, k)| k as f64 / n as f64 * (acc / k as f64 - conf / k as f64).abs())
        .sum();
    let ce_batches = ce
        .chunks(batch)
        .map(|b| b.iter().sum::<f64>() / b.len() as f64)
        .sum();
    Hand {
        accuracy: correct / n as f64,
        ce: ce.iter().sum::<f64>() / n as f64,
        ece,
        brier: brier / n as f64,
        ce_batches,
    }
}

pub fn close(a: f64, b: f64, tol: f64, what: &str) {
    assert!((a - b).abs() <= tol, "{what}: {a} vs {b} (tolerance {tol})");
}
