use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What `hkd-eval run` records in `<run>/eval.json`.
///
/// Fields added after the first format are `#[serde(default)]`: a report written by an
/// older hkd still reads (the fields are then empty, and `hkd-eval run` evaluates the run
/// again because its settings hash differs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalReport {
    pub hkd_version: String,
    /// Hash of the evaluation settings (sets, attacks, batch size, weights file, the
    /// calibration set); a run whose report has the same hash is not evaluated again unless
    /// forced.
    pub settings_hash: String,
    /// Weights file evaluated, relative to the run directory.
    pub weights: String,
    /// Metrics per named set (`cifar10`, `cinic`, `imagenet_far`, `val`, …).
    pub sets: BTreeMap<String, SetMetrics>,
    /// The temperature fitted with `hkd-eval run --calibrate-on NAME`; `None` without it
    /// (and in older reports).
    #[serde(default)]
    pub temperature: Option<TemperatureFit>,
}

/// One temperature `T` per run, fitted by minimising the mean NLL of `logits / T` on one
/// of the evaluated sets (temperature scaling, Guo et al. 2017).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemperatureFit {
    /// The set it was fitted on (a key of [`EvalReport::sets`]).
    pub set: String,
    /// The fitted temperature (> 0; 1 leaves the logits as they are).
    pub temperature: f64,
    /// Mean NLL on that set at `T = 1` (its `ce_mean`) and at the fitted `T`.
    pub nll_before: f64,
    pub nll_after: f64,
    /// True when the minimum lies at an end of the searched range (`T` in [0.01, 100]),
    /// i.e. the NLL still falls beyond it; `temperature` is then that end.
    pub at_bound: bool,
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
    /// Expected calibration error, 15 equal-width confidence bins
    /// ([`SetMetrics::reliability`]).
    pub ece: f64,
    /// Multi-class Brier score (mean over images of Σ_c (p_c − y_c)²).
    pub brier: f64,
    /// Only where the set has human label distributions.
    pub human: Option<HumanAgreement>,
    /// Robustness results, one per attack and ε.
    #[serde(default)]
    pub attacks: Vec<AttackMetrics>,
    /// Mean top-1 confidence `(1/N) Σ_i max_c p_ic`; `mean_confidence − accuracy` is the
    /// signed calibration gap (> 0: over-confident). `None` in older reports.
    #[serde(default)]
    pub mean_confidence: Option<f64>,
    /// The reliability bins behind [`SetMetrics::ece`]: all 15, in order, empty ones
    /// included. Empty in older reports.
    #[serde(default)]
    pub reliability: Vec<ReliabilityBin>,
    /// The same metrics of `softmax(logits / T)` with the run's fitted temperature
    /// ([`EvalReport::temperature`]); `None` without `--calibrate-on`.
    #[serde(default)]
    pub temperature_scaled: Option<ScaledMetrics>,
}

impl SetMetrics {
    /// `mean_confidence − accuracy` (> 0: over-confident), when the confidence was recorded.
    pub fn confidence_gap(&self) -> Option<f64> {
        self.mean_confidence.map(|c| c - self.accuracy)
    }
}

/// One equal-width confidence bin `(lower, upper]` (the first also holds confidence 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReliabilityBin {
    pub lower: f64,
    pub upper: f64,
    /// Images whose top-1 confidence falls in the bin.
    pub count: usize,
    /// Mean top-1 confidence of those images; `None` for an empty bin.
    pub mean_confidence: Option<f64>,
    /// Share of those images predicted correctly; `None` for an empty bin.
    pub accuracy: Option<f64>,
}

/// Metrics of the temperature-scaled probabilities `softmax(logits / T)` on one set. The
/// predicted class, and so the accuracy, does not change with `T > 0`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaledMetrics {
    pub ce_mean: f64,
    pub ece: f64,
    pub brier: f64,
    pub mean_confidence: f64,
    pub reliability: Vec<ReliabilityBin>,
    /// Cross-entropy and KL to the human distributions, where the set has them (the
    /// majority agreement does not change with `T`).
    pub human: Option<ScaledHuman>,
}

/// Human cross-entropy and KL of the temperature-scaled probabilities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaledHuman {
    pub ce: f64,
    pub kl: f64,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A report as written before the calibration fields existed: none of the calibration fields.
    const OLD_REPORT: &str = r#"{
  "hkd_version": "0.1.0",
  "settings_hash": "1f0c",
  "weights": "best.safetensors",
  "sets": {
    "val": {
      "source": "/data/cifar10h-real:val",
      "images": 50000,
      "accuracy": 0.8123,
      "ce_mean": 0.6021,
      "ce_sum_batch_means": 235.41,
      "ce_batch_size": 128,
      "ece": 0.0412,
      "brier": 0.2803,
      "human": { "ce": 0.7412, "kl": 0.4011, "majority_agreement": 0.8301 },
      "attacks": []
    }
  }
}"#;

    #[test]
    fn a_report_without_the_calibration_fields_still_reads() {
        let r: EvalReport = serde_json::from_str(OLD_REPORT).unwrap();
        assert_eq!(r.temperature, None);
        let m = &r.sets["val"];
        assert_eq!(m.accuracy, 0.8123);
        assert_eq!(m.ece, 0.0412);
        assert_eq!(m.mean_confidence, None);
        assert_eq!(m.confidence_gap(), None);
        assert!(m.reliability.is_empty());
        assert_eq!(m.temperature_scaled, None);
    }

    #[test]
    fn a_report_with_them_reads_back_the_same() {
        let mut r: EvalReport = serde_json::from_str(OLD_REPORT).unwrap();
        r.temperature = Some(TemperatureFit {
            set: "val".into(),
            temperature: 1.5,
            nll_before: 0.6021,
            nll_after: 0.55,
            at_bound: false,
        });
        let m = r.sets.get_mut("val").unwrap();
        m.mean_confidence = Some(0.875);
        m.reliability = vec![ReliabilityBin {
            lower: 0.0,
            upper: 1.0 / 15.0,
            count: 0,
            mean_confidence: None,
            accuracy: None,
        }];
        m.temperature_scaled = Some(ScaledMetrics {
            ce_mean: 0.55,
            ece: 0.02,
            brier: 0.27,
            mean_confidence: 0.8,
            reliability: vec![],
            human: Some(ScaledHuman { ce: 0.7, kl: 0.38 }),
        });
        assert_eq!(m.confidence_gap(), Some(0.875 - 0.8123));
        let text = serde_json::to_string_pretty(&r).unwrap();
        let back: EvalReport = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
    }
}
