//! The typed, serde-readable configuration of the distillation objective.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{LossError, Result};

/// Which objective a run trains with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DistillationMode {
    /// `L = CE(s, y)`: hard labels only (also how teachers are trained).
    #[default]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum DistilFn {
    /// `KL(target ‖ student) = Σ target·(log target − log_softmax(s/T))`, reduced by
    /// [`KlReduction`].
    #[default]
    #[serde(rename = "KL")]
    Kl,
    /// Soft cross-entropy `−Σ target·log_softmax(s/T)`, summed over classes and averaged
    /// over the batch. ([`KlReduction`] does not apply.)
    #[serde(rename = "CE")]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum KlReduction {
    /// Sum over classes, mean over the batch: the true KL divergence per sample.
    #[default]
    #[serde(rename = "batchmean")]
    BatchMean,
    /// Mean over all `N·C` elements, i.e. `batchmean / C`: PyTorch `KLDivLoss()`'s
    /// default reduction and what the original HKD project ran. Use it to reproduce the
    /// original numbers; it silently shrinks the soft term by the number of classes.
    #[serde(rename = "elementwise_mean")]
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

/// The HKD objective's settings, as written in a run config.
///
/// Every field has a default (see [`DistillationConfig::default`]), so a config may name
/// only what it changes; unknown fields are rejected. Turn it into a
/// [`DistillationLoss`](crate::DistillationLoss) with
/// [`DistillationLoss::new`](crate::DistillationLoss::new), which validates it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DistillationConfig {
    /// `baseline`, `human` or `student`. Default `baseline`.
    pub mode: DistillationMode,
    /// λ in `[0, 1]`: weight of the soft part `L2`; the hard CE gets `1-λ`. Unused in
    /// `baseline` mode. Default 0.5.
    pub lambda: f64,
    /// γ in `[0, 1]`: in `student` mode the share of `L2` that comes from the human labels;
    /// the teacher gets `1-γ`. Unused in other modes. Default 0.5.
    pub gamma: f64,
    /// `T_t > 0`: temperature applied to student and teacher logits for the teacher term.
    /// Default 1.
    pub temperature_teacher: f64,
    /// `T_h > 0`: temperature applied to student logits and the human log-probabilities
    /// for the human term. Default 1.
    pub temperature_human: f64,
    /// The divergence `D`: `KL` or `CE`. Default `KL`.
    pub distil_fn: DistilFn,
    /// Reduction of `KL`: `batchmean` (default, the true KL) or `elementwise_mean`
    /// (PyTorch's default, the original project's). Ignored for `CE`.
    pub kl_reduction: KlReduction,
    /// ε ≥ 0: human rows are smoothed as `(h + ε) / (1 + C·ε)` before taking logs.
    /// 0 is allowed only if no human entry is 0. Default 0.02, as the original.
    pub human_smoothing: f64,
}

impl Default for DistillationConfig {
    fn default() -> Self {
        Self {
            mode: DistillationMode::Baseline,
            lambda: 0.5,
            gamma: 0.5,
            temperature_teacher: 1.0,
            temperature_human: 1.0,
            distil_fn: DistilFn::Kl,
            kl_reduction: KlReduction::BatchMean,
            human_smoothing: 0.02,
        }
    }
}

impl DistillationConfig {
    /// Whether [`DistillationLoss::compute`](crate::DistillationLoss::compute) needs the
    /// teacher's logits: in `student` mode with γ < 1. At γ = 1 the teacher term has
    /// weight 0, so a trainer can skip the teacher's forward pass; the term is then
    /// reported as 0, which is what it is with the logits too.
    pub fn needs_teacher_logits(&self) -> bool {
        self.mode == DistillationMode::Student && self.gamma < 1.0
    }

    /// Checks every field; the first violation is returned as an error.
    ///
    /// All fields are checked in every mode (an unused γ of 7 is still a typo worth
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
        Ok(())
    }
}
