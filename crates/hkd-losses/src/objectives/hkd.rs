//! `hkd`: the HKD objective (the original project's, and hkd's default):
//! `L = (1-λ)·CE(s, y) + λ·[(1-γ)·T_t²·D(s/T_t, t/T_t) + γ·T_h²·D(s/T_h, log ĥ/T_h)]`, with
//! `D` KL or soft CE. Its settings are [`DistillationConfig`](crate::DistillationConfig) and its computation
//! [`DistillationLoss`]; this file registers them.

use crate::config::{DistilFn, DistillationMode, HumanTarget};
use crate::error::Result;
use crate::objectives::ObjectiveSettings;
use crate::target::InertSetting;

pub use crate::config::DistillationConfig as Hkd;

impl ObjectiveSettings for Hkd {
    const NAME: &'static str = "hkd";
    const SUMMARY: &'static str =
        "(1-λ)·CE + λ·[(1-γ)·T_t²·D(teacher) + γ·T_h²·D(human)], D = KL or soft CE (the original HKD)";

    fn validate(&self) -> Result<()> {
        Hkd::validate(self)
    }

    fn check_mode(&self, _mode: DistillationMode) -> Result<()> {
        // Every mode: `baseline` is hard labels alone.
        Ok(())
    }

    fn inert(&self, mode: DistillationMode) -> Vec<InertSetting> {
        let mut out = Vec::new();
        let mut add = |keys: &[&'static str], because: &str| {
            for key in keys {
                if !out.iter().any(|i: &InertSetting| i.key == *key) {
                    out.push(InertSetting::new(key, because));
                }
            }
        };
        const SOFT: [&str; 7] = [
            "gamma",
            "temperature_teacher",
            "temperature_human",
            "distil_fn",
            "kl_reduction",
            "human_smoothing",
            "human_target",
        ];
        match mode {
            DistillationMode::Baseline => {
                add(&["lambda"], "--teacher baseline trains on hard labels alone");
                add(&SOFT, "--teacher baseline trains on hard labels alone");
            }
            _ if self.lambda == 0.0 => {
                add(&SOFT, "λ = 0 gives the soft term weight 0");
            }
            DistillationMode::Human => {
                add(
                    &["gamma", "temperature_teacher"],
                    "with --teacher human there is no teacher term",
                );
            }
            DistillationMode::Student if self.gamma == 0.0 => add(
                &["temperature_human", "human_smoothing", "human_target"],
                "γ = 0 gives the human term weight 0",
            ),
            DistillationMode::Student if self.gamma == 1.0 => add(
                &["temperature_teacher"],
                "γ = 1 gives the teacher term weight 0",
            ),
            DistillationMode::Student => {}
        }
        if mode != DistillationMode::Baseline && self.lambda == 1.0 {
            add(&["label_smoothing"], "λ = 1 gives the hard-label term weight 0");
        }
        if self.distil_fn == DistilFn::Ce {
            add(&["kl_reduction"], "the soft CE divergence has no KL reduction");
        }
        if self.human_target == HumanTarget::Pilot {
            add(
                &["human_smoothing"],
                "the pilot target uses the raw probabilities, unsmoothed",
            );
        }
        out
    }

    #[cfg(feature = "candle")]
    fn build(&self, mode: DistillationMode) -> Result<Box<dyn crate::Objective>> {
        Ok(Box::new(crate::DistillationLoss::new(mode, *self)?))
    }
}

#[cfg(feature = "candle")]
impl crate::Objective for crate::DistillationLoss {
    fn needs(&self) -> crate::Needs {
        crate::Needs {
            teacher_logits: self.needs_teacher_logits(),
            human: self.needs_human_labels(),
        }
    }

    /// `hard` (the hard-label CE), `kd` (L2 before λ; not in `baseline` mode), and in
    /// `student` mode `teacher` and `human` (the two terms of L2, weighted by 1-γ and γ).
    fn part_names(&self) -> Vec<&'static str> {
        match self.mode() {
            DistillationMode::Baseline => vec!["hard"],
            DistillationMode::Human => vec!["hard", "kd"],
            DistillationMode::Student => vec!["hard", "kd", "teacher", "human"],
        }
    }

    fn compute(&self, inputs: &crate::ObjectiveInputs<'_>) -> Result<crate::ObjectiveOutput> {
        let teacher = inputs
            .teacher_logits
            .filter(|_| self.mode() == DistillationMode::Student);
        let human = inputs
            .human
            .filter(|_| self.mode() != DistillationMode::Baseline);
        let parts =
            DistillationLoss::compute(self, inputs.student_logits, inputs.hard_labels, human, teacher)?;
        let named = [
            ("hard", Some(parts.hard_ce)),
            ("kd", parts.kd),
            ("teacher", parts.teacher_term),
            ("human", parts.human_term),
        ];
        Ok(crate::ObjectiveOutput {
            total: parts.total,
            parts: named
                .into_iter()
                .filter_map(|(name, value)| value.map(|value| crate::Part { name, value }))
                .collect(),
        })
    }
}

#[cfg(feature = "candle")]
use crate::DistillationLoss;
