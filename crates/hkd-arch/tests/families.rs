//! The families taken from the knowledge-distillation benchmarks (RepDistiller /
//! mdistiller CIFAR models) against PyTorch: state_dict names and shapes, parameter
//! counts, and eval-mode logits with every weight and BatchNorm statistic set by a formula.
//!
//! `tests/data/make_family_reference.py` rebuilt each model in PyTorch, filled its state
//! with the formula below and wrote `tests/data/<arch>.json` (names, shapes, counts,
//! logits). Here the same formula fills a safetensors file that the network loads through
//! `load_weights`, so no weight file is committed.

mod common;

use common::max_abs_diff;
use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use hkd_arch::{ArchSpec, Network, Phase};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The models with references in `tests/data`.
const MODELS: &[&str] = &[
    "resnet8x4",
    "resnet32x4",
    "vgg8",
    "vgg13",
    "mobilenetv2",
    "wrn_16_1",
    "wrn_16_2",
    "wrn_40_1",
    "wrn_40_2",
    "shufflev2",
];

struct Reference {
    classes: usize,
    gain: f64,
    input_shape: Vec<usize>,
    param_counts: Vec<(usize, u64)>,
    state: Vec<(String, Vec<usize>)>,
    logits: Vec<Vec<f64>>,
}

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn read_reference(arch: &str) -> Reference {
    let path = data_dir().join(format!("{arch}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(v["arch"], arch);
    let usizes = |v: &serde_json::Value| -> Vec<usize> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect()
    };
    Reference {
        classes: v["classes"].as_u64().unwrap() as usize,
        gain: v["gain"].as_f64().unwrap(),
        input_shape: usizes(&v["input_shape"]),
        param_counts: v["param_counts"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, n)| (k.parse().unwrap(), n.as_u64().unwrap()))
            .collect(),
        state: v["state"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e[0].as_str().unwrap().to_string(), usizes(&e[1])))
            .collect(),
        logits: v["logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                row.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap())
                    .collect()
            })
            .collect(),
    }
}

// ---- the fill formula of make_family_reference.py ---------------------------------------

fn fnv1a32(name: &str) -> u32 {
    name.bytes().fold(0x811C_9DC5, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// u_k in [-1, 1] (three decimals) for k = 0..n.
fn unit_values(name: &str, n: usize) -> impl Iterator<Item = f64> {
    let h = fnv1a32(name);
    (0..n).map(move |k| {
        let mut x = h.wrapping_add((k as u32).wrapping_mul(0x9E37_79B9));
        x ^= x >> 16;
        x = x.wrapping_mul(0x85EB_CA6B);
        x ^= x >> 13;
        x = x.wrapping_mul(0xC2B2_AE35);
        x ^= x >> 16;
        f64::from(x % 2001) / 1000.0 - 1.0
    })
}

fn fill(name: &str, shape: &[usize], gain: f64) -> Tensor {
    if name.ends_with("num_batches_tracked") {
        return Tensor::new(7i64, &Device::Cpu).unwrap();
    }
    let n = shape.iter().product();
    let leaf = name.rsplit('.').next().unwrap();
    let values: Vec<f32> = unit_values(name, n)
        .map(|u| {
            let v = match (leaf, shape.len()) {
                ("weight", 4) => {
                    let fan_in = (shape[1] * shape[2] * shape[3]) as f64;
                    u * (3.0 * gain / fan_in).sqrt()
                }
                ("weight", 2) => u * (3.0 / shape[1] as f64).sqrt(),
                ("weight", _) => 1.0 + 0.25 * u,
                ("bias" | "running_mean", _) => 0.1 * u,
                ("running_var", _) => 1.0 + 0.5 * u,
                _ => panic!("no fill rule for {name}"),
            };
            v as f32
        })
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

#[test]
fn every_reference_file_is_checked() {
    let mut files: Vec<String> = std::fs::read_dir(data_dir())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".json").map(str::to_string)
        })
        .filter(|name| name != "param_counts")
        .collect();
    files.sort();
    let mut models: Vec<String> = MODELS.iter().map(|m| m.to_string()).collect();
    models.sort();
    assert_eq!(files, models);
}

#[test]
fn state_names_shapes_and_counts_match_pytorch() {
    for arch in MODELS {
        let r = read_reference(arch);
        let net = Network::new(arch, r.classes, &Device::Cpu, DType::F32, 0).unwrap();
        let ours = net.state_names_and_shapes();
        assert_eq!(ours.len(), r.state.len(), "{arch}: number of state entries");
        for (i, (o, e)) in ours.iter().zip(&r.state).enumerate() {
            assert_eq!(o, e, "{arch}: state entry {i}");
        }
        let spec = ArchSpec::parse(arch).unwrap();
        assert_eq!(spec.canonical_name(), *arch);
        for &(classes, expected) in &r.param_counts {
            assert_eq!(
                spec.param_count(classes),
                expected,
                "{arch}, {classes} classes"
            );
        }
        let expected = r
            .param_counts
            .iter()
            .find(|(c, _)| *c == r.classes)
            .unwrap()
            .1;
        assert_eq!(net.num_parameters(), expected, "{arch}: built count");
        eprintln!(
            "{arch}: {} state entries, {expected} parameters",
            ours.len()
        );
    }
}

#[test]
fn parameter_counts_match_pytorch() {
    // `param_counts.json`: name -> {classes: count}, for the models above and more names.
    let path = data_dir().join("param_counts.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let counts = v.as_object().unwrap();
    assert!(MODELS.iter().all(|m| counts.contains_key(*m)));
    for (arch, by_classes) in counts {
        let spec = ArchSpec::parse(arch).unwrap();
        assert_eq!(spec.canonical_name(), *arch);
        for (classes, expected) in by_classes.as_object().unwrap() {
            let classes: usize = classes.parse().unwrap();
            let expected = expected.as_u64().unwrap();
            assert_eq!(
                spec.param_count(classes),
                expected,
                "{arch}, {classes} classes"
            );
            if classes == 10 {
                let net = Network::new(arch, classes, &Device::Cpu, DType::F32, 0).unwrap();
                assert_eq!(net.num_parameters(), expected, "{arch}: built");
            }
        }
    }
}

#[test]
fn eval_logits_match_pytorch_with_formula_weights() {
    let dir = tempfile::tempdir().unwrap();
    for arch in MODELS {
        let r = read_reference(arch);
        let n: usize = r.input_shape.iter().product();
        let input: Vec<f32> = unit_values("input", n).map(|u| (2.0 * u) as f32).collect();
        let input = Tensor::from_vec(input, r.input_shape.as_slice(), &Device::Cpu).unwrap();
        let rows = r.logits.len();
        let flat: Vec<f32> = r.logits.iter().flatten().map(|&x| x as f32).collect();
        let expected = Tensor::from_vec(flat, (rows, r.classes), &Device::Cpu).unwrap();

        let tensors: HashMap<String, Tensor> = r
            .state
            .iter()
            .map(|(name, shape)| (name.clone(), fill(name, shape, r.gain)))
            .collect();
        let path = dir.path().join(format!("{arch}.safetensors"));
        candle_core::safetensors::save(&tensors, &path).unwrap();

        let net = Network::new(arch, r.classes, &Device::Cpu, DType::F32, 7).unwrap();
        let before = net.forward_eval(&input).unwrap();
        assert!(
            max_abs_diff(&before, &expected) > 1e-2,
            "{arch}: random init already matches?"
        );
        net.load_weights(&path).unwrap();
        let logits = net.forward_eval(&input).unwrap();
        assert_eq!(logits.dims(), &[rows, r.classes]);
        let diff = max_abs_diff(&logits, &expected);
        eprintln!("{arch}: max |logit - PyTorch| {diff:.2e}");
        assert!(diff < 1e-4, "{arch}: max |diff| {diff}");
    }
}

#[test]
fn training_steps_reach_every_parameter() {
    for arch in MODELS {
        let net = Network::new(arch, 10, &Device::Cpu, DType::F32, 3).unwrap();
        let n = 2 * 3 * 32 * 32;
        let x: Vec<f32> = unit_values("train", n).map(|u| u as f32).collect();
        let x = Tensor::from_vec(x, (2, 3, 32, 32), &Device::Cpu).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let y = net.forward(&x, Phase::Train { rng: &mut rng }).unwrap();
        assert_eq!(y.dims(), &[2, 10]);
        let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        for (name, var) in net.trainable_parameters() {
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{arch}: no gradient for {name}"));
            let norm = g
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(
                norm.is_finite() && norm > 0.0,
                "{arch}: {name} gradient {norm}"
            );
        }
        let (_, nbt) = net
            .state_dict()
            .unwrap()
            .into_iter()
            .find(|(n, _)| n.ends_with("num_batches_tracked"))
            .unwrap();
        assert_eq!(nbt.to_scalar::<i64>().unwrap(), 1, "{arch}");
    }
}
