//! The soft target of the field's objectives (`kd`, `dkd`, `dist`, …): a teacher's logits,
//! the human label distributions, or the HKD mixture of both with γ — and the one place
//! that turns a [`SoftTerm`] into an [`Objective`](crate::Objective) for any of them.
//!
//! Where the soft labels come from is the run's [`DistillationMode`] (from its teacher:
//! `human` for the human distributions, `student` for a teacher network); γ chooses the
//! mixture with a teacher network: `(1-γ)·term(teacher) + γ·term(human)`, the HKD
//! objective's L2 for any term. The human distributions enter a term as logits
//! `log ĥ`, `ĥ = (h + ε)/(1 + C·ε)`, so that a term's `softmax(z / T)` of them is `ĥ`
//! at `T = 1`; at `ε = 0` a zero entry's log is clamped at `log 1e-300` (as the upstream
//! reference code does), so that one-hot rows stay finite.

use serde::{Deserialize, Serialize};

use crate::config::DistillationMode;
use crate::error::{LossError, Result};

/// γ and ε of an objective's target (the objectives other than `hkd`, which has its own,
/// in [`crate::DistillationConfig`]). Flattened into each objective's settings: the keys are
/// `gamma` and `human_smoothing` in configs and `--gamma`, `--human-smoothing` on the
/// command line, as for `hkd`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[serde(default)]
pub struct TargetMix {
    /// γ in [0, 1]: with a teacher network, the share of the soft term that distils the
    /// human distributions (the teacher's share is 1-γ). Unused with --teacher human.
    #[cfg_attr(feature = "clap", arg(long, value_name = "γ", default_value_t = Self::default().gamma))]
    pub gamma: f64,
    /// ε ≥ 0: human rows are smoothed as (h + ε) / (1 + C·ε) before their log; at 0 a zero
    /// entry's log is clamped at log 1e-300.
    #[cfg_attr(feature = "clap", arg(long, value_name = "ε", default_value_t = Self::default().human_smoothing))]
    pub human_smoothing: f64,
}

impl Default for TargetMix {
    /// The teacher alone (γ = 0) and hkd's ε = 0.02. The one place these defaults are written.
    fn default() -> Self {
        Self {
            gamma: 0.0,
            human_smoothing: 0.02,
        }
    }
}

/// A setting that cannot change a run's result under its other settings, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InertSetting {
    /// The setting's key (`label_smoothing`, `gamma`, …).
    pub key: &'static str,
    /// Why it has no effect, e.g. "λ = 1 gives the hard-label term weight 0".
    pub because: String,
}

impl InertSetting {
    /// `key` has no effect `because` ….
    pub fn new(key: &'static str, because: impl Into<String>) -> Self {
        InertSetting {
            key,
            because: because.into(),
        }
    }
}

impl TargetMix {
    /// Checks γ ∈ [0, 1] and ε finite and ≥ 0, naming `objective` in the error.
    pub fn validate(&self, objective: &'static str) -> Result<()> {
        check_range(
            objective,
            "gamma",
            self.gamma,
            0.0,
            1.0,
            "a number in [0, 1]",
        )?;
        if !(self.human_smoothing.is_finite() && self.human_smoothing >= 0.0) {
            return Err(LossError::InvalidObjectiveSetting {
                objective,
                key: "human_smoothing",
                found: self.human_smoothing,
                expected: "a finite number >= 0",
            });
        }
        Ok(())
    }

    /// Refuses `baseline` mode (no soft target) for `objective`.
    pub fn check_mode(&self, objective: &'static str, mode: DistillationMode) -> Result<()> {
        match mode {
            DistillationMode::Baseline => Err(LossError::NoTarget { objective }),
            DistillationMode::Human | DistillationMode::Student => Ok(()),
        }
    }

    /// γ and ε where they cannot change the result in `mode`.
    pub fn inert(&self, mode: DistillationMode) -> Vec<InertSetting> {
        match mode {
            DistillationMode::Baseline => Vec::new(),
            DistillationMode::Human => vec![InertSetting::new(
                "gamma",
                "with --teacher human the target is the human distributions alone",
            )],
            DistillationMode::Student if self.gamma == 0.0 => vec![InertSetting::new(
                "human_smoothing",
                "γ = 0 gives the human distributions weight 0",
            )],
            DistillationMode::Student => Vec::new(),
        }
    }
}

/// `lo <= value <= hi` (and not NaN), else the objective's setting error.
pub(crate) fn check_range(
    objective: &'static str,
    key: &'static str,
    value: f64,
    lo: f64,
    hi: f64,
    expected: &'static str,
) -> Result<()> {
    if value >= lo && value <= hi {
        Ok(())
    } else {
        Err(LossError::InvalidObjectiveSetting {
            objective,
            key,
            found: value,
            expected,
        })
    }
}

/// A finite `value > 0`, else the objective's setting error.
pub(crate) fn check_positive(objective: &'static str, key: &'static str, value: f64) -> Result<()> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(LossError::InvalidObjectiveSetting {
            objective,
            key,
            found: value,
            expected: "a finite number > 0",
        })
    }
}

/// A finite `value >= 0`, else the objective's setting error.
pub(crate) fn check_weight(objective: &'static str, key: &'static str, value: f64) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(LossError::InvalidObjectiveSetting {
            objective,
            key,
            found: value,
            expected: "a finite weight >= 0",
        })
    }
}

#[cfg(feature = "candle")]
pub use distill::{Distill, SoftTerm};

#[cfg(feature = "candle")]
mod distill {
    use candle_core::Tensor;

    use super::TargetMix;
    use crate::config::DistillationMode;
    use crate::error::{LossError, Result};
    use crate::functional::{hard_cross_entropy, human_target_logits, standardize_logits};
    use crate::loss::{check_labels, check_soft_input, check_student};
    use crate::objective::{Needs, Objective, ObjectiveInputs, ObjectiveOutput, Part};

    /// The soft term of an objective against one target's logits: what a new objective of
    /// this kind writes (see `objectives/kd.rs` for the smallest one). [`Distill`] adds the
    /// hard-label term, the target (teacher, human or their mixture) and logit
    /// standardisation.
    pub trait SoftTerm: Send + Sync + std::fmt::Debug {
        /// The objective's registry name (for errors).
        fn name(&self) -> &'static str;
        /// The weight of the plain hard-label cross-entropy in the total.
        fn ce_weight(&self) -> f64;
        /// Whether student and target logits are standardised per row first
        /// (`(z − mean) / (1e-7 + unbiased std)`, Sun et al., CVPR 2024).
        fn logit_std(&self) -> bool;
        /// γ and ε of the target.
        fn mix(&self) -> TargetMix;
        /// The names of [`parts`](Self::parts), in order.
        fn part_names(&self) -> &'static [&'static str];
        /// The term's parts against target logits `target` (`[N, C]`, no gradient), each
        /// weighted as it enters the total (the term is their sum).
        fn parts(
            &self,
            student: &Tensor,
            target: &Tensor,
            labels: &Tensor,
            epoch: u32,
        ) -> Result<Vec<Tensor>>;
    }

    /// A [`SoftTerm`] distilled from the run's target: `ce_weight · CE(s, y) + Σ parts`,
    /// the parts summed over the target's sources with weights 1-γ (teacher) and γ
    /// (human).
    ///
    /// Its parts: `hard` (the plain hard-label CE, unweighted, comparable across
    /// objectives), then the term's own parts (already weighted, summed over the
    /// sources), and in `student` mode `teacher` and `human`, each source's share of the
    /// soft term.
    #[derive(Debug, Clone)]
    pub struct Distill<S> {
        term: S,
        mode: DistillationMode,
    }

    impl<S: SoftTerm> Distill<S> {
        /// `term` distilled in `mode` (which must not be `baseline`: checked).
        pub fn new(term: S, mode: DistillationMode) -> Result<Self> {
            term.mix().check_mode(term.name(), mode)?;
            Ok(Distill { term, mode })
        }

        fn teacher_weight(&self) -> f64 {
            match self.mode {
                DistillationMode::Student => 1.0 - self.term.mix().gamma,
                _ => 0.0,
            }
        }

        fn human_weight(&self) -> f64 {
            match self.mode {
                DistillationMode::Human => 1.0,
                DistillationMode::Student => self.term.mix().gamma,
                DistillationMode::Baseline => 0.0,
            }
        }
    }

    impl<S: SoftTerm> Objective for Distill<S> {
        fn needs(&self) -> Needs {
            Needs {
                teacher_logits: self.teacher_weight() > 0.0,
                human: self.human_weight() > 0.0,
            }
        }

        fn part_names(&self) -> Vec<&'static str> {
            let mut names = vec!["hard"];
            names.extend_from_slice(self.term.part_names());
            if self.mode == DistillationMode::Student {
                names.extend(["teacher", "human"]);
            }
            names
        }

        fn compute(&self, inputs: &ObjectiveInputs<'_>) -> Result<ObjectiveOutput> {
            let name = self.term.name();
            let student = inputs.student_logits;
            let (batch, classes) = check_student(student)?;
            let (device, dtype) = (student.device(), student.dtype());
            check_labels(inputs.hard_labels, batch, device)?;
            let needs = self.needs();
            let teacher = match inputs.teacher_logits {
                Some(t) if needs.teacher_logits => Some(check_soft_input(
                    "teacher_logits",
                    t,
                    batch,
                    classes,
                    device,
                    dtype,
                )?),
                None if needs.teacher_logits => {
                    return Err(LossError::MissingInput {
                        objective: name,
                        input: "teacher_logits",
                    });
                }
                _ => None,
            };
            let human = match inputs.human {
                Some(h) if needs.human => {
                    let h = check_soft_input("human", h, batch, classes, device, dtype)?;
                    Some(human_target_logits(&h, self.term.mix().human_smoothing)?)
                }
                None if needs.human => {
                    return Err(LossError::MissingInput {
                        objective: name,
                        input: "human",
                    });
                }
                _ => None,
            };
            let hard = hard_cross_entropy(student, inputs.hard_labels, 0.0)?;
            let standardise = |z: &Tensor| -> Result<Tensor> {
                if self.term.logit_std() {
                    standardize_logits(z)
                } else {
                    Ok(z.clone())
                }
            };
            let student_in = standardise(student)?;
            let zero = || Tensor::zeros((), dtype, device);
            let mut mixed: Vec<Tensor> = Vec::new();
            let mut shares = Vec::with_capacity(2);
            for (weight, target) in [
                (self.teacher_weight(), teacher),
                (self.human_weight(), human),
            ] {
                let Some(target) = target else {
                    shares.push(zero()?);
                    continue;
                };
                let target = standardise(&target.detach())?;
                let parts =
                    self.term
                        .parts(&student_in, &target, inputs.hard_labels, inputs.epoch)?;
                let parts = if weight == 1.0 {
                    parts
                } else {
                    parts
                        .iter()
                        .map(|p| p.affine(weight, 0.0))
                        .collect::<candle_core::Result<Vec<_>>>()?
                };
                let mut share = parts[0].clone();
                for p in &parts[1..] {
                    share = (share + p)?;
                }
                shares.push(share);
                mixed = if mixed.is_empty() {
                    parts
                } else {
                    mixed
                        .iter()
                        .zip(&parts)
                        .map(|(a, b)| a + b)
                        .collect::<candle_core::Result<Vec<_>>>()?
                };
            }
            let ce_weight = self.term.ce_weight();
            let mut total = if ce_weight == 1.0 {
                hard.clone()
            } else {
                hard.affine(ce_weight, 0.0)?
            };
            for p in &mixed {
                total = (total + p)?;
            }
            let mut parts = vec![Part {
                name: "hard",
                value: hard.detach(),
            }];
            parts.extend(
                self.term
                    .part_names()
                    .iter()
                    .zip(&mixed)
                    .map(|(name, value)| Part {
                        name,
                        value: value.detach(),
                    }),
            );
            if self.mode == DistillationMode::Student {
                for (name, value) in ["teacher", "human"].into_iter().zip(shares) {
                    parts.push(Part {
                        name,
                        value: value.detach(),
                    });
                }
            }
            Ok(ObjectiveOutput { total, parts })
        }
    }
}
