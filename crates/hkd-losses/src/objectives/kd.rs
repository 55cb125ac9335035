//! `kd`: Hinton et al., "Distilling the Knowledge in a Neural Network" (2015):
//! `ce_weight·CE(s, y) + kl_weight·T²·KL(softmax(z/T) ‖ softmax(s/T))`, the KL summed over
//! classes and averaged over the batch (`batchmean`), `z` the target's logits. Checked
//! against torchdistill's `KDLoss` (and, with `logit_std`, its `LogitStdKDLoss`).

use serde::{Deserialize, Serialize};

use crate::config::DistillationMode;
use crate::error::Result;
use crate::objectives::ObjectiveSettings;
use crate::target::{InertSetting, TargetMix, check_positive, check_weight};

/// The settings of `kd`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[serde(default)]
pub struct Kd {
    /// T > 0: temperature of the student's and the target's softmax.
    #[cfg_attr(feature = "clap", arg(long, value_name = "T", default_value_t = Self::default().temperature))]
    pub temperature: f64,
    /// Weight of the hard-label cross-entropy (torchdistill's α, mdistiller's CE_WEIGHT).
    #[cfg_attr(feature = "clap", arg(long, value_name = "W", default_value_t = Self::default().ce_weight))]
    pub ce_weight: f64,
    /// Weight of T²·KL (torchdistill's β, mdistiller's KD_WEIGHT).
    #[cfg_attr(feature = "clap", arg(long, value_name = "W", default_value_t = Self::default().kl_weight))]
    pub kl_weight: f64,
    /// Standardise student and target logits per row before the softmax (Sun et al.,
    /// CVPR 2024: (z − mean) / (1e-7 + std)).
    #[cfg_attr(feature = "clap", arg(long))]
    pub logit_std: bool,
    /// The target: γ and ε.
    #[serde(flatten)]
    #[cfg_attr(feature = "clap", command(flatten))]
    pub target: TargetMix,
}

impl Default for Kd {
    /// mdistiller's CIFAR-100 values (T = 4, CE 0.1, KD 0.9). The one place these
    /// defaults are written.
    fn default() -> Self {
        Kd {
            temperature: 4.0,
            ce_weight: 0.1,
            kl_weight: 0.9,
            logit_std: false,
            target: TargetMix::default(),
        }
    }
}

impl ObjectiveSettings for Kd {
    const NAME: &'static str = "kd";
    const SUMMARY: &'static str = "ce_weight·CE + kl_weight·T²·KL at temperature T (Hinton et al.)";

    fn validate(&self) -> Result<()> {
        check_positive(Self::NAME, "temperature", self.temperature)?;
        check_weight(Self::NAME, "ce_weight", self.ce_weight)?;
        check_weight(Self::NAME, "kl_weight", self.kl_weight)?;
        self.target.validate(Self::NAME)
    }

    fn check_mode(&self, mode: DistillationMode) -> Result<()> {
        self.target.check_mode(Self::NAME, mode)
    }

    fn inert(&self, mode: DistillationMode) -> Vec<InertSetting> {
        self.target.inert(mode)
    }

    #[cfg(feature = "candle")]
    fn build(&self, mode: DistillationMode) -> Result<Box<dyn crate::Objective>> {
        Ok(Box::new(crate::Distill::new(*self, mode)?))
    }
}

#[cfg(feature = "candle")]
impl crate::SoftTerm for Kd {
    fn name(&self) -> &'static str {
        Self::NAME
    }
    fn ce_weight(&self) -> f64 {
        self.ce_weight
    }
    fn logit_std(&self) -> bool {
        self.logit_std
    }
    fn mix(&self) -> TargetMix {
        self.target
    }
    fn part_names(&self) -> &'static [&'static str] {
        &["kl"]
    }
    fn parts(
        &self,
        student: &candle_core::Tensor,
        target: &candle_core::Tensor,
        _labels: &candle_core::Tensor,
        _epoch: u32,
    ) -> Result<Vec<candle_core::Tensor>> {
        let kl = crate::functional::soft_distillation_term(
            student,
            target,
            self.temperature,
            crate::DistilFn::Kl,
            crate::KlReduction::BatchMean,
        )?;
        Ok(vec![kl.affine(self.kl_weight, 0.0)?])
    }
}
