//! The typed, serde-readable configuration of the distillation objective.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{LossError, Result};

/// Which objective a run trains with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DistillationMode {
    /// `L = CE(s, y)`: hard labels only (also how teachers are trained).
    Baseline,
    /// `L = (1-λ)·CE(s, y) + λ·T_h²·D(s/T_h, log ĥ/T_h)`: distil from human label
    /// distributions.
    Human,
    /// `L = (1-λ)·CE(s, y) + λ·[(1-γ)·T_t²·D(s/T_t, t/T_t) + γ·T_h²·D(s/T_h, log ĥ/T_h)]`:
    /// distil from a teacher's logits and from human label distributions.
    Student,
}

impl DistillationMode {
    /// The config spelling: `baseline`, `human` or `student`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Baseline => "baseline",
            Self::Human => "human",
            Self::Student => "student",
        }
    }
}

/// The soft divergence `D` between the student's and a target's tempered distributions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum DistilFn {
    /// `KL(target ‖ student) = Σ target·(log target − log_softmax(s/T))`, reduced by
    /// [`KlReduction`].
    #[serde(rename = "KL")]
    #[cfg_attr(feature = "clap", value(name = "KL", alias = "KD"))]
    Kl,
    /// Soft cross-entropy `−Σ target·log_softmax(s/T)`, summed over classes and averaged
    /// over the batch. ([`KlReduction`] does not apply.)
    #[serde(rename = "CE")]
    #[cfg_attr(feature = "clap", value(name = "CE"))]
    Ce,
}

impl DistilFn {
    /// The config spelling: `KL` or `CE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kl => "KL",
            Self::Ce => "CE",
        }
    }
}

/// How the KL divergence's per-element terms are reduced to a scalar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum KlReduction {
    /// Sum over classes, mean over the batch: the true KL divergence per sample.
    #[serde(rename = "batchmean")]
    #[cfg_attr(feature = "clap", value(name = "batchmean"))]
    BatchMean,
    /// Mean over all `N·C` elements, i.e. `batchmean / C`: PyTorch `KLDivLoss()`'s
    /// default reduction and what the original HKD project ran. Use it to reproduce the
    /// original numbers; it silently shrinks the soft term by the number of classes.
    #[serde(rename = "elementwise_mean")]
    #[cfg_attr(feature = "clap", value(name = "elementwise_mean", alias = "mean"))]
    ElementwiseMean,
}

impl KlReduction {
    /// The config spelling: `batchmean` or `elementwise_mean`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BatchMean => "batchmean",
            Self::ElementwiseMean => "elementwise_mean",
        }
    }
}

macro_rules! text_enum {
    ($ty:ty, $field:literal, $expected:literal, [$($variant:expr),+]) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = LossError;

            fn from_str(text: &str) -> Result<Self> {
                [$($variant),+]
                    .into_iter()
                    .find(|variant| variant.as_str() == text)
                    .ok_or_else(|| LossError::UnknownVariant {
                        field: $field,
                        found: text.to_owned(),
                        expected: $expected,
                    })
            }
        }
    };
}

text_enum!(
    DistillationMode,
    "mode",
    "`baseline`, `human`, `student`",
    [
        DistillationMode::Baseline,
        DistillationMode::Human,
        DistillationMode::Student
    ]
);
text_enum!(
    DistilFn,
    "distil_fn",
    "`KL`, `CE`",
    [DistilFn::Kl, DistilFn::Ce]
);
text_enum!(
    KlReduction,
    "kl_reduction",
    "`batchmean`, `elementwise_mean`",
    [KlReduction::BatchMean, KlReduction::ElementwiseMean]
);

/// What the human term distils towards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum HumanTarget {
    /// `softmax(log ĥ / T_h)` with `ĥ = (h + ε)/(1 + C·ε)`: the human distribution itself
    /// at `T_h = 1` (the original project from 29 June 2020 on).
    #[serde(rename = "log")]
    #[cfg_attr(feature = "clap", value(name = "log"))]
    Log,
    /// `softmax(h / T_h)` of the raw probabilities, no log and no smoothing: what the
    /// original's pilot runs (March to May 2020) trained towards. Much softer than `h`
    /// (at `T_h = 1` a unanimous row gives its class only e/(e + 9) = 0.23).
    #[serde(rename = "pilot")]
    #[cfg_attr(feature = "clap", value(name = "pilot"))]
    Pilot,
}

impl HumanTarget {
    /// The config spelling: `log` or `pilot`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Log => "log",
            Self::Pilot => "pilot",
        }
    }
}

text_enum!(
    HumanTarget,
    "human_target",
    "`log`, `pilot`",
    [HumanTarget::Log, HumanTarget::Pilot]
);

/// The HKD objective's hyperparameters, as written in a run config.
///
/// Every field has a default ([`DistillationConfig::default`], the original project's
/// values), so a config may name only what it changes; unknown fields are rejected. Which
/// terms exist is the [`DistillationMode`], given separately to `DistillationLoss::new`
/// (feature `candle`), which also validates this.
///
/// With the `clap` feature the struct is also a set of command-line flags
/// (`--lambda`, `--gamma`, …), each with the same default: `hkd-train` flattens it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[serde(default, deny_unknown_fields)]
pub struct DistillationConfig {
    /// λ: weight of the soft part L2, in [0, 1]; the hard CE gets 1-λ. Unused in
    /// baseline mode.
    #[cfg_attr(feature = "clap", arg(long, value_name = "λ", default_value_t = Self::default().lambda))]
    pub lambda: f64,
    /// γ: in student mode the share of L2 that comes from the human labels, in [0, 1];
    /// the teacher gets 1-γ. Unused in the other modes.
    #[cfg_attr(feature = "clap", arg(long, value_name = "γ", default_value_t = Self::default().gamma))]
    pub gamma: f64,
    /// T_t > 0: temperature of student and teacher logits in the teacher term.
    #[cfg_attr(feature = "clap", arg(long, value_name = "T", default_value_t = Self::default().temperature_teacher))]
    pub temperature_teacher: f64,
    /// T_h > 0: temperature of the student logits and the human target in the human term.
    #[cfg_attr(feature = "clap", arg(long, value_name = "T", default_value_t = Self::default().temperature_human))]
    pub temperature_human: f64,
    /// The divergence D of the soft terms: KL (the original's KD) or CE (soft
    /// cross-entropy).
    #[cfg_attr(feature = "clap", arg(long, value_name = "KL|CE", ignore_case = true, default_value_t = Self::default().distil_fn))]
    pub distil_fn: DistilFn,
    /// Reduction of KL: elementwise_mean (PyTorch nn.KLDivLoss()'s default, the
    /// original's; also divides by the number of classes) or batchmean (the true KL).
    /// Ignored for CE.
    #[cfg_attr(feature = "clap", arg(long, value_name = "REDUCTION", ignore_case = true, default_value_t = Self::default().kl_reduction))]
    pub kl_reduction: KlReduction,
    /// ε ≥ 0: human rows are smoothed as (h + ε) / (1 + C·ε) before their log (human
    /// target `log`). At 0, hkd refuses rows with a zero entry; the other objectives clamp
    /// its log at log 1e-300.
    #[cfg_attr(feature = "clap", arg(long, value_name = "ε", default_value_t = Self::default().human_smoothing))]
    pub human_smoothing: f64,
    /// What the human term distils towards: log (softmax of log ĥ, today's target) or
    /// pilot (softmax of the raw probabilities h, the original's 2020 pilot runs).
    #[cfg_attr(feature = "clap", arg(long, value_name = "log|pilot", ignore_case = true, default_value_t = Self::default().human_target))]
    pub human_target: HumanTarget,
    /// α in [0, 1): label smoothing of the hard-label term, whose target becomes
    /// (1-α)·onehot(y) + α/C (PyTorch's CrossEntropyLoss(label_smoothing=α)).
    #[cfg_attr(feature = "clap", arg(long, value_name = "α", default_value_t = Self::default().label_smoothing))]
    pub label_smoothing: f64,
}

impl Default for DistillationConfig {
    /// The original project's values (`train_student.py` and its `nn.KLDivLoss()`), with
    /// no label smoothing. This is the one place these defaults are written.
    fn default() -> Self {
        Self {
            lambda: 0.5,
            gamma: 0.0,
            temperature_teacher: 1.0,
            temperature_human: 1.0,
            distil_fn: DistilFn::Kl,
            kl_reduction: KlReduction::ElementwiseMean,
            human_smoothing: 0.02,
            human_target: HumanTarget::Log,
            label_smoothing: 0.0,
        }
    }
}

impl DistillationConfig {
    /// Checks every field; the first violation is returned as an error.
    ///
    /// All fields are checked whatever the mode (an unused γ of 7 is still a typo worth
    /// reporting).
    pub fn validate(&self) -> Result<()> {
        for (field, value) in [("lambda", self.lambda), ("gamma", self.gamma)] {
            if !(0.0..=1.0).contains(&value) {
                return Err(LossError::WeightOutOfRange {
                    field,
                    found: value,
                });
            }
        }
        for (field, value) in [
            ("temperature_teacher", self.temperature_teacher),
            ("temperature_human", self.temperature_human),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(LossError::InvalidTemperature {
                    field,
                    found: value,
                });
            }
        }
        if !(self.human_smoothing.is_finite() && self.human_smoothing >= 0.0) {
            return Err(LossError::InvalidSmoothing {
                found: self.human_smoothing,
            });
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return Err(LossError::InvalidLabelSmoothing {
                found: self.label_smoothing,
            });
        }
        Ok(())
    }
}
