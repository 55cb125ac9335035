//! `dkd`: decoupled knowledge distillation, Zhao et al., CVPR 2022:
//! `ce_weight·CE(s, y) + w(e)·(α·TCKD + β·NCKD)` at temperature T, where TCKD is the KL
//! divergence of the binary (target class, all others) distributions, NCKD that of the
//! distributions over the non-target classes, each times T² and averaged over the batch,
//! and `w(e) = min(e / warmup_epochs, 1)` mdistiller's linear warm-up over the first
//! epochs. Checked against mdistiller's `distillers/DKD.py` (`dkd_loss`).

use serde::{Deserialize, Serialize};

use crate::config::DistillationMode;
use crate::error::Result;
use crate::objectives::ObjectiveSettings;
use crate::target::{InertSetting, TargetMix, check_positive, check_weight};

/// The settings of `dkd`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[serde(default)]
pub struct Dkd {
    /// T > 0: temperature of the student's and the target's softmax.
    #[cfg_attr(feature = "clap", arg(long, value_name = "T", default_value_t = Self::default().temperature))]
    pub temperature: f64,
    /// Weight of the hard-label cross-entropy (torchdistill's α, mdistiller's CE_WEIGHT).
    #[cfg_attr(feature = "clap", arg(long, value_name = "W", default_value_t = Self::default().ce_weight))]
    pub ce_weight: f64,
    /// α: weight of the target-class term TCKD (mdistiller's DKD.ALPHA).
    #[cfg_attr(feature = "clap", arg(long, value_name = "α", default_value_t = Self::default().alpha_tckd))]
    pub alpha_tckd: f64,
    /// β: weight of the non-target-class term NCKD (mdistiller's DKD.BETA).
    #[cfg_attr(feature = "clap", arg(long, value_name = "β", default_value_t = Self::default().beta_nckd))]
    pub beta_nckd: f64,
    /// Epochs over which the DKD term's weight rises linearly to 1 (epoch e gets
    /// min(e / N, 1); 0: no warm-up). mdistiller's DKD.WARMUP.
    #[cfg_attr(feature = "clap", arg(long, value_name = "N", default_value_t = Self::default().warmup_epochs))]
    pub warmup_epochs: u32,
    /// Standardise student and target logits per row before the softmax (Sun et al.,
    /// CVPR 2024: (z − mean) / (1e-7 + std)).
    #[cfg_attr(feature = "clap", arg(long))]
    pub logit_std: bool,
    /// The target: γ and ε.
    #[serde(flatten)]
    #[cfg_attr(feature = "clap", command(flatten))]
    pub target: TargetMix,
}

impl Default for Dkd {
    /// mdistiller's CIFAR-100 values (CE 1, α 1, β 8, T 4, warm-up 20 epochs). The one
    /// place these defaults are written.
    fn default() -> Self {
        Dkd {
            temperature: 4.0,
            ce_weight: 1.0,
            alpha_tckd: 1.0,
            beta_nckd: 8.0,
            warmup_epochs: 20,
            logit_std: false,
            target: TargetMix::default(),
        }
    }
}

impl ObjectiveSettings for Dkd {
    const NAME: &'static str = "dkd";
    const SUMMARY: &'static str =
        "ce_weight·CE + warm-up·(α·TCKD + β·NCKD), target and non-target classes apart (Zhao et al.)";

    fn validate(&self) -> Result<()> {
        check_positive(Self::NAME, "temperature", self.temperature)?;
        check_weight(Self::NAME, "ce_weight", self.ce_weight)?;
        check_weight(Self::NAME, "alpha_tckd", self.alpha_tckd)?;
        check_weight(Self::NAME, "beta_nckd", self.beta_nckd)?;
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
impl crate::SoftTerm for Dkd {
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
        &["tckd", "nckd"]
    }
    fn parts(
        &self,
        student: &candle_core::Tensor,
        target: &candle_core::Tensor,
        labels: &candle_core::Tensor,
        epoch: u32,
    ) -> Result<Vec<candle_core::Tensor>> {
        use crate::functional::{kl_divergence_sum, log_softmax, one_hot, softmax};
        use candle_core::{D, Tensor};
        let (batch, classes) = student.dims2()?;
        let t = self.temperature;
        let gt = one_hot(labels, classes, student.dtype())?;
        let other = gt.affine(-1.0, 1.0)?;
        let s = student.affine(1.0 / t, 0.0)?;
        let z = target.affine(1.0 / t, 0.0)?;
        // target class against the rest: [p_y, Σ_{c≠y} p_c] of each row
        let binary = |p: &Tensor| -> Result<Tensor> {
            Ok(Tensor::cat(
                &[
                    (p * &gt)?.sum_keepdim(D::Minus1)?,
                    (p * &other)?.sum_keepdim(D::Minus1)?,
                ],
                1,
            )?)
        };
        let student_binary = binary(&softmax(&s)?)?;
        let target_binary = binary(&softmax(&z)?)?;
        let scale = t * t / batch as f64;
        let tckd = kl_divergence_sum(
            &target_binary,
            &target_binary.log()?,
            &student_binary.log()?,
        )?
        .affine(scale, 0.0)?;
        // the non-target classes alone: the target class pushed out by −1000
        let masked = |x: &Tensor| -> Result<Tensor> { Ok((x - gt.affine(1000.0, 0.0)?)?) };
        let target_log = log_softmax(&masked(&z)?)?;
        let nckd = kl_divergence_sum(
            &target_log.exp()?,
            &target_log,
            &log_softmax(&masked(&s)?)?,
        )?
        .affine(scale, 0.0)?;
        let warm = match self.warmup_epochs {
            0 => 1.0,
            n => (f64::from(epoch) / f64::from(n)).min(1.0),
        };
        Ok(vec![
            tckd.affine(warm * self.alpha_tckd, 0.0)?,
            nckd.affine(warm * self.beta_nckd, 0.0)?,
        ])
    }
}
