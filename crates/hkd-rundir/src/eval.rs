use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What `hkd-eval run` records in `<run>/eval.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalReport {
    pub hkd_version: String,
    /// Hash of the evaluation settings (sets, attacks, batch size, weights file); a run
    /// whose report has the same hash is not evaluated again unless forced.
    pub settings_hash: String,
    /// Weights file evaluated, relative to the run directory.
    pub weights: String,
    /// Metrics per named set (`cifar10`, `cinic`, `imagenet_far`, `val`, …).
    pub sets: BTreeMap<String, SetMetrics>,
}

/// Metrics of one network on one dataset split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetMetrics {
    /// `DIR:split` that was evaluated.
    pub source: String,
    pub images: usize,
    /// Top-1 accuracy in [0, 1].
    pub accuracy: f64,
    /// Mean per-image cross-entropy with the hard labels (nats).
    pub ce_mean: f64,
    /// The original project's "loss": the sum over batches of the batch-mean CE, with
    /// batch size [`SetMetrics::ce_batch_size`]; only for comparison with old tables.
    pub ce_sum_batch_means: f64,
    pub ce_batch_size: usize,
    /// Expected calibration error, 15 equal-width confidence bins.
    pub ece: f64,
    /// Multi-class Brier score (mean over images of Σ_c (p_c − y_c)²).
    pub brier: f64,
    /// Only where the set has human label distributions.
    pub human: Option<HumanAgreement>,
    /// Robustness results, one per attack and ε.
    #[serde(default)]
    pub attacks: Vec<AttackMetrics>,
}

/// How well a network matches people, on a set with human label distributions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HumanAgreement {
    /// Mean cross-entropy of the network's softmax against the human distribution.
    pub ce: f64,
    /// Mean KL(human ‖ network).
    pub kl: f64,
    /// Share of images where the network's top-1 equals the human majority label.
    pub majority_agreement: f64,
}

/// Accuracy and CE under one untargeted L∞ attack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttackMetrics {
    /// `fgsm` or `pgd`.
    pub attack: String,
    /// ε in pixel space [0, 1].
    pub eps: f64,
    /// PGD steps (1 for FGSM).
    pub steps: u32,
    /// Images attacked (a seeded subset).
    pub samples: usize,
    pub accuracy: f64,
    pub ce_mean: f64,
}
