//! Metrics against hand computations on the PyTorch reference logits, and the human
//! cross-entropy identity.

mod common;

use candle_core::Device;
use common::*;
use hkd_datasets::{Normalization, entropy_nats};
use hkd_evaluator::metrics::{human_agreement, set_metrics};
use hkd_evaluator::{load_network, read_images_npy, tensor_logits};

const ARCHS: [&str; 7] = [
    "resnet8",
    "resnet20",
    "plane2",
    "plane8",
    "shake26-2x16d",
    "wrn16-1",
    "resnext29-2x4d",
];

/// Labels for the 16 reference images: the reference prediction for even rows, another
/// class for odd rows, so that accuracy is neither 0 nor 1 and every bin path is used.
fn labels_for(reference: &[f32]) -> Vec<u32> {
    reference
        .chunks(10)
        .enumerate()
        .map(|(i, row)| {
            let p = pred(row);
            if i % 2 == 0 {
                p as u32
            } else {
                ((p + 1 + i) % 10) as u32
            }
        })
        .collect()
}

#[test]
fn metrics_of_reference_logits_match_hand_computation() {
    let Some(reference) = reference_dir("metrics_of_reference_logits_match_hand_computation")
    else {
        return;
    };
    let models = reference.join("torch/models");
    let (inputs, _) = read_images_npy(&models.join("inputs.npy"), &Normalization::CIFAR10).unwrap();
    for arch in ARCHS {
        let (shape, expected) = read_npy_f32(&models.join(format!("{arch}_logits.npy")));
        assert_eq!(shape, vec![16, 10], "{arch}");
        let labels = labels_for(&expected);

        // The evaluator's forward path reproduces PyTorch (odd batch size: several batches).
        let net = load_network(
            arch,
            10,
            &models.join(format!("{arch}.safetensors")),
            &Device::Cpu,
        )
        .unwrap();
        let ours = tensor_logits(&net, &inputs, 7).unwrap();
        let max_diff = ours
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            max_diff < 1e-4,
            "{arch}: logits differ from PyTorch by {max_diff}"
        );

        // The metrics equal a hand computation on the reference logits.
        let m = set_metrics("ref".into(), &expected, 10, &labels, None, 5).unwrap();
        let hand = hand_metrics(&expected, &labels, 5);
        assert_eq!(m.images, 16);
        close(
            m.accuracy,
            hand.accuracy,
            1e-12,
            &format!("{arch} accuracy"),
        );
        close(m.ce_mean, hand.ce, 1e-9, &format!("{arch} CE"));
        close(
            m.ce_sum_batch_means,
            hand.ce_batches,
            1e-9,
            &format!("{arch} CE sum of batch means"),
        );
        close(m.ece, hand.ece, 1e-9, &format!("{arch} ECE"));
        close(m.brier, hand.brier, 1e-9, &format!("{arch} Brier"));
        assert!(
            m.accuracy >= 0.5,
            "{arch}: even rows are labelled with the prediction"
        );
        assert!(m.human.is_none());

        // And on our own logits they agree to the logits' precision.
        let o = set_metrics("ours".into(), &ours, 10, &labels, None, 5).unwrap();
        close(
            o.accuracy,
            m.accuracy,
            0.0,
            &format!("{arch} accuracy on our logits"),
        );
        close(
            o.ce_mean,
            m.ce_mean,
            1e-4,
            &format!("{arch} CE on our logits"),
        );
        close(
            o.brier,
            m.brier,
            1e-4,
            &format!("{arch} Brier on our logits"),
        );
    }
}

#[test]
fn legacy_pytorch_checkpoint_gives_the_reference_logits() {
    let Some(reference) = reference_dir("legacy_pytorch_checkpoint_gives_the_reference_logits")
    else {
        return;
    };
    let models = reference.join("torch/models");
    let (inputs, _) = read_images_npy(&models.join("inputs.npy"), &Normalization::CIFAR10).unwrap();
    let (_, expected) = read_npy_f32(&models.join("resnet8_logits.npy"));
    for file in ["resnet8.pth", "resnet8_legacy.pth.tar"] {
        let net = load_network("resnet8", 10, &models.join(file), &Device::Cpu).unwrap();
        let ours = tensor_logits(&net, &inputs, 16).unwrap();
        let max_diff = ours
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(max_diff < 1e-4, "{file}: {max_diff}");
    }
}

fn check_human_identity(rows: &[f64], what: &str) {
    let n = rows.len() / 10;
    let logits: Vec<f32> = rows.iter().map(|&h| (h as f32).ln()).collect();
    let agreement = human_agreement(&logits, 10, rows).unwrap();
    let mean_entropy: f64 = rows.chunks(10).map(entropy_nats).sum::<f64>() / n as f64;
    assert!(
        mean_entropy > 0.05,
        "{what}: the rows should carry some uncertainty ({mean_entropy})"
    );
    close(
        agreement.ce,
        mean_entropy,
        1e-5,
        &format!("{what}: human CE of the human distribution vs mean entropy"),
    );
    close(agreement.kl, 0.0, 1e-5, &format!("{what}: KL to itself"));
    assert_eq!(agreement.majority_agreement, 1.0, "{what}");
}

#[test]
fn human_cross_entropy_of_the_human_distribution_is_the_mean_human_entropy() {
    // Synthetic rows: unanimous ones, rows with zeros (0·log 0 = 0, logit −inf) and dense ones.
    let dataset = random_dataset(300, 5, true);
    check_human_identity(dataset.human().unwrap(), "synthetic rows");

    // A model that is not the human distribution has a larger CE and a positive KL.
    let rows = dataset.human().unwrap();
    let flat = vec![0f32; rows.len()];
    let a = human_agreement(&flat, 10, rows).unwrap();
    close(a.ce, 10f64.ln(), 1e-12, "uniform model: CE = ln 10");
    assert!(a.kl > 0.1);

    // Real CIFAR-10H rows, when ../shared is there.
    if let Some(data) = shared_data() {
        let path = data.join("cifar10h/cifar10h-probs.npy");
        if path.is_file() {
            let (shape, probs) = read_npy_f64(&path);
            assert_eq!(shape, vec![10000, 10]);
            check_human_identity(&probs[..2000 * 10], "CIFAR-10H rows 0..2000");
        }
    }
}
