//! `dist`: Huang et al., "Knowledge Distillation from A Stronger Teacher", NeurIPS 2022:
//! `ce_weight·CE(s, y) + T²·(β·(1 − ρ̄_inter) + γ·(1 − ρ̄_intra))`, where `ρ̄_inter` is the
//! mean over images of the Pearson correlation between the student's and the target's
//! class distributions `softmax(·/T)`, and `ρ̄_intra` the mean over classes of that across
//! the batch. Checked against torchdistill's `DISTLoss`.

use serde::{Deserialize, Serialize};

use crate::config::DistillationMode;
use crate::error::Result;
use crate::objectives::ObjectiveSettings;
use crate::target::{InertSetting, TargetMix, check_positive, check_weight};

/// The `eps` of DIST's cosine similarity (torchdistill's default).
pub const DIST_EPS: f64 = 1e-8;

/// The settings of `dist`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[serde(default)]
pub struct Dist {
    /// T > 0: temperature of the student's and the target's softmax (DIST's τ).
    #[cfg_attr(feature = "clap", arg(long, value_name = "T", default_value_t = Self::default().temperature))]
    pub temperature: f64,
    /// Weight of the hard-label cross-entropy (torchdistill's α, mdistiller's CE_WEIGHT).
    #[cfg_attr(feature = "clap", arg(long, value_name = "W", default_value_t = Self::default().ce_weight))]
    pub ce_weight: f64,
    /// β: weight of the inter-class relation (per image, across classes).
    #[cfg_attr(feature = "clap", arg(long, value_name = "β", default_value_t = Self::default().beta_inter))]
    pub beta_inter: f64,
    /// γ: weight of the intra-class relation (per class, across the batch). Not the
    /// target's γ (`--gamma`).
    #[cfg_attr(feature = "clap", arg(long, value_name = "γ", default_value_t = Self::default().gamma_intra))]
    pub gamma_intra: f64,
    /// Standardise student and target logits per row before the softmax (Sun et al.,
    /// CVPR 2024: (z − mean) / (1e-7 + std)).
    #[cfg_attr(feature = "clap", arg(long))]
    pub logit_std: bool,
    /// The target: γ and ε.
    #[serde(flatten)]
    #[cfg_attr(feature = "clap", command(flatten))]
    pub target: TargetMix,
}

impl Default for Dist {
    /// torchdistill's `DISTLoss` defaults (τ = β = γ = 1), with the hard-label CE at weight
    /// 1 beside it. The one place these defaults are written.
    fn default() -> Self {
        Dist {
            temperature: 1.0,
            ce_weight: 1.0,
            beta_inter: 1.0,
            gamma_intra: 1.0,
            logit_std: false,
            target: TargetMix::default(),
        }
    }
}

impl ObjectiveSettings for Dist {
    const NAME: &'static str = "dist";
    const SUMMARY: &'static str =
        "ce_weight·CE + T²·(β·inter + γ·intra), Pearson relations of the class distributions (Huang et al.)";

    fn validate(&self) -> Result<()> {
        check_positive(Self::NAME, "temperature", self.temperature)?;
        check_weight(Self::NAME, "ce_weight", self.ce_weight)?;
        check_weight(Self::NAME, "beta_inter", self.beta_inter)?;
        check_weight(Self::NAME, "gamma_intra", self.gamma_intra)?;
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
impl crate::SoftTerm for Dist {
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
        &["inter", "intra"]
    }
    fn parts(
        &self,
        student: &candle_core::Tensor,
        target: &candle_core::Tensor,
        _labels: &candle_core::Tensor,
        _epoch: u32,
    ) -> Result<Vec<candle_core::Tensor>> {
        use crate::functional::{pearson_rows, softmax};
        let t = self.temperature;
        let ys = softmax(&student.affine(1.0 / t, 0.0)?)?;
        let yt = softmax(&target.affine(1.0 / t, 0.0)?)?;
        // 1 − mean Pearson correlation, times T² and the relation's weight
        let relation = |a: &candle_core::Tensor, b: &candle_core::Tensor, weight: f64| -> Result<candle_core::Tensor> {
            let rho = pearson_rows(a, b, DIST_EPS)?.mean_all()?;
            Ok(rho.affine(-t * t * weight, t * t * weight)?)
        };
        let inter = relation(&ys, &yt, self.beta_inter)?;
        let intra = relation(&ys.t()?.contiguous()?, &yt.t()?.contiguous()?, self.gamma_intra)?;
        Ok(vec![inter, intra])
    }
}
