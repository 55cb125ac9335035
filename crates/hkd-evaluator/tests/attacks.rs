//! FGSM and PGD: ε = 0 is the identity, perturbations stay in the ε-ball and in [0, 1],
//! the input gradient goes through the normalisation, accuracy falls with ε.

mod common;

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use common::*;
use hkd_arch::Network;
use hkd_datasets::{Dataset, DatasetDir, DatasetParts, Normalization};
use hkd_evaluator::attack::{attack_rows, attack_set, fgsm, input_gradient, pgd};
use hkd_evaluator::metrics::set_metrics;
use hkd_evaluator::{AttackKind, AttackSettings, LoadedSet, NoProgress, dataset_logits};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn pixels_of(dataset: &Dataset, dtype: DType) -> Tensor {
    let n = dataset.len();
    let mut out = vec![0f32; n * 3072];
    for i in 0..n {
        let img = dataset.image(i);
        for p in 0..1024 {
            for c in 0..3 {
                out[i * 3072 + c * 1024 + p] = img[p * 3 + c] as f32 / 255.0;
            }
        }
    }
    Tensor::from_vec(out, (n, 3, 32, 32), &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

fn labels_of(dataset: &Dataset) -> Tensor {
    Tensor::from_vec(dataset.labels().to_vec(), dataset.len(), &Device::Cpu).unwrap()
}

fn loaded(name: &str, dataset: Dataset) -> LoadedSet {
    let content_hash = dataset.content_hash();
    LoadedSet {
        name: name.into(),
        source: format!("memory:{name}"),
        dataset: Arc::new(dataset),
        content_hash,
    }
}

/// Images for the monotonicity check: the fixture's validation images when the fixture
/// is there, else real CIFAR-10 test images from ../shared, else random images; labelled
/// with the network's own predictions so that clean accuracy is 1.
fn attack_images(net: &Network, n: usize) -> Dataset {
    let fixture = workspace_root().join("fixtures/cifar10h-mini");
    let base = if let Ok(dir) = DatasetDir::open(&fixture) {
        let split = if dir.has_split("val") {
            "val".to_string()
        } else {
            dir.split_names()[0].clone()
        };
        let d = dir.load_split(&split).unwrap();
        let rows: Vec<usize> = (0..n.min(d.len())).collect();
        d.select(&rows).unwrap()
    } else if let Some(p) = shared_data()
        .map(|d| d.join("cifar10_test/all10000_from_jpeg.npy"))
        .filter(|p| p.is_file())
    {
        let bytes = std::fs::read(&p).unwrap();
        let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
        let all: Vec<u8> = npy.into_vec::<u8>().unwrap();
        Dataset::new(DatasetParts::cifar10(all[..n * 3072].to_vec(), vec![0; n])).unwrap()
    } else {
        eprintln!("note: no fixture and no ../shared data; attacking random images");
        random_dataset(n, 11, false)
    };
    let logits = direct_logits(net, &normalised_images(&base));
    let preds: Vec<u32> = logits.chunks(10).map(|r| pred(r) as u32).collect();
    let mut parts = base.into_parts();
    parts.labels = preds;
    parts.human = None;
    Dataset::new(parts).unwrap()
}

#[test]
fn zero_eps_changes_nothing() {
    let net = Network::new("resnet8", 10, &Device::Cpu, DType::F32, 3).unwrap();
    let dataset = random_dataset(8, 1, false);
    let x = pixels_of(&dataset, DType::F32);
    let y = labels_of(&dataset);
    let norm = Normalization::CIFAR10;
    let clean: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
    let after_fgsm: Vec<f32> = fgsm(&net, &x, &y, 0.0, &norm)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(after_fgsm, clean, "FGSM with ε = 0 moved pixels");
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let after_pgd: Vec<f32> = pgd(&net, &x, &y, 0.0, 2, &norm, &mut rng)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(after_pgd, clean, "PGD with ε = 0 moved pixels");

    // Through the whole attack pass: ε = 0 reproduces the clean accuracy and CE of the subset.
    let set = loaded("val", random_dataset(30, 6, false));
    let settings = AttackSettings {
        kinds: vec![AttackKind::Fgsm, AttackKind::Pgd],
        eps: vec![0.0],
        pgd_steps: 1,
        samples: 10,
        seed: 4,
        batch_size: 4,
    };
    let rows = attack_rows(&set, settings.samples, settings.seed).unwrap();
    assert_eq!(rows.len(), 10);
    let classes: std::collections::BTreeSet<u32> =
        rows.iter().map(|&r| set.dataset.labels()[r]).collect();
    assert_eq!(
        classes.len(),
        10,
        "a stratified subset: one image per class"
    );
    assert_eq!(
        rows,
        attack_rows(&set, 10, 4).unwrap(),
        "the same seed gives the same subset"
    );
    let subset = Arc::new(set.dataset.select(&rows).unwrap());
    let logits = dataset_logits(&net, &subset, 3, &NoProgress, "clean").unwrap();
    let clean = set_metrics("s".into(), &logits, 10, subset.labels(), None, 128).unwrap();
    let attacked = attack_set(&net, &set, &settings, &NoProgress).unwrap();
    assert_eq!(attacked.len(), 2);
    assert_eq!(attacked[1].steps, 1);
    for a in &attacked {
        assert_eq!(a.samples, 10);
        assert_eq!(a.accuracy, clean.accuracy, "{a:?}");
        close(
            a.ce_mean,
            clean.ce_mean,
            1e-6,
            &format!("{} CE at ε = 0", a.attack),
        );
    }
}

#[test]
fn perturbations_stay_in_the_ball_and_in_range() {
    let net = Network::new("plane2", 10, &Device::Cpu, DType::F32, 9).unwrap();
    let dataset = random_dataset(16, 2, false);
    let x = pixels_of(&dataset, DType::F32);
    let y = labels_of(&dataset);
    let eps = 8.0 / 255.0;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let clean: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
    for (what, adv) in [
        (
            "fgsm",
            fgsm(&net, &x, &y, eps, &Normalization::CIFAR10).unwrap(),
        ),
        (
            "pgd",
            pgd(&net, &x, &y, eps, 4, &Normalization::CIFAR10, &mut rng).unwrap(),
        ),
    ] {
        let adv: Vec<f32> = adv.flatten_all().unwrap().to_vec1().unwrap();
        let max_move = adv
            .iter()
            .zip(&clean)
            .map(|(a, c)| (a - c).abs())
            .fold(0f32, f32::max);
        assert!(
            max_move <= eps as f32 + 1e-6,
            "{what}: moved {max_move} > ε"
        );
        assert!(
            max_move >= eps as f32 * 0.5,
            "{what}: barely moved ({max_move})"
        );
        assert!(
            adv.iter().all(|v| (0.0..=1.0).contains(v)),
            "{what}: left [0, 1]"
        );
    }
}

#[test]
fn input_gradient_goes_through_the_normalisation() {
    // f64 network: central differences of the summed CE w.r.t. single pixels.
    let net = Network::new("resnet8", 10, &Device::Cpu, DType::F64, 5).unwrap();
    let dataset = random_dataset(3, 3, false);
    let x = pixels_of(&dataset, DType::F64);
    let y = labels_of(&dataset);
    let norm = Normalization::CIFAR10;
    let grad: Vec<f64> = input_gradient(&net, &x, &y, &norm)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let loss = |x: &Tensor| -> f64 {
        let logits = net.forward_eval(&norm.apply(x).unwrap()).unwrap();
        let lp = candle_nn::ops::log_softmax(&logits, candle_core::D::Minus1).unwrap();
        let lp: Vec<Vec<f64>> = lp.to_vec2().unwrap();
        -lp.iter()
            .zip(dataset.labels())
            .map(|(r, &l)| r[l as usize])
            .sum::<f64>()
    };
    let flat: Vec<f64> = x.flatten_all().unwrap().to_vec1().unwrap();
    let h = 1e-5;
    for idx in [0usize, 1500, 3072 + 2047, 2 * 3072 + 3000] {
        let mut plus = flat.clone();
        plus[idx] += h;
        let mut minus = flat.clone();
        minus[idx] -= h;
        let t = |v: Vec<f64>| Tensor::from_vec(v, (3, 3, 32, 32), &Device::Cpu).unwrap();
        let numeric = (loss(&t(plus)) - loss(&t(minus))) / (2.0 * h);
        let scale = numeric.abs().max(grad[idx].abs()).max(1e-3);
        assert!(
            (numeric - grad[idx]).abs() / scale < 1e-4,
            "pixel {idx}: autograd {} vs finite difference {numeric}",
            grad[idx]
        );
    }
}

#[test]
fn accuracy_is_non_increasing_in_eps() {
    // plane2: attacks need a backward pass per step, which is slow on the CPU.
    let net = Network::new("plane2", 10, &Device::Cpu, DType::F32, 21).unwrap();
    let set = loaded("val", attack_images(&net, 40));
    let settings = AttackSettings {
        kinds: vec![AttackKind::Fgsm, AttackKind::Pgd],
        eps: [0.0, 1.0, 2.0, 4.0, 8.0]
            .iter()
            .map(|v| v / 255.0)
            .collect(),
        pgd_steps: 3,
        samples: 40,
        seed: 0,
        batch_size: 40,
    };
    let results = attack_set(&net, &set, &settings, &NoProgress).unwrap();
    assert_eq!(results.len(), 10);
    for kind in ["fgsm", "pgd"] {
        let acc: Vec<f64> = results
            .iter()
            .filter(|r| r.attack == kind)
            .map(|r| r.accuracy)
            .collect();
        let ce: Vec<f64> = results
            .iter()
            .filter(|r| r.attack == kind)
            .map(|r| r.ce_mean)
            .collect();
        assert_eq!(acc[0], 1.0, "{kind}: labels are the clean predictions");
        for w in acc.windows(2) {
            assert!(w[1] <= w[0], "{kind}: accuracy rose with ε: {acc:?}");
        }
        assert!(
            acc[4] < acc[0],
            "{kind}: ε = 8/255 changed no prediction: {acc:?}"
        );
        assert!(
            ce[4] > ce[0],
            "{kind}: the attack did not raise the CE: {ce:?}"
        );
    }
    let steps: Vec<u32> = results.iter().map(|r| r.steps).collect();
    assert_eq!(steps, vec![1, 1, 1, 1, 1, 3, 3, 3, 3, 3]);
}
