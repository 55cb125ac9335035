//! The validated loss and its per-part result.

use candle_core::{DType, Device, Tensor};

use crate::config::{DistillationConfig, DistillationMode, HumanTarget};
use crate::error::{LossError, Result};
use crate::functional::{hard_cross_entropy, smoothed_human_log_probs, soft_distillation_term};

/// The HKD objective: a [`DistillationMode`] (which terms exist) and a validated
/// [`DistillationConfig`] (their hyperparameters).
///
/// Construct once per run with [`DistillationLoss::new`]; call
/// [`compute`](DistillationLoss::compute) every step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DistillationLoss {
    mode: DistillationMode,
    config: DistillationConfig,
}

/// The loss parts of one batch, each a scalar (rank-0) tensor in the student logits'
/// dtype and on their device.
///
/// Only [`total`](LossParts::total) is connected to the graph (call `backward` on it);
/// the others are detached copies for logging. Parts that the mode does not have are
/// `None`.
#[derive(Debug, Clone)]
pub struct LossParts {
    /// Cross-entropy of the student logits with the hard labels, batch mean; with
    /// `label_smoothing` α > 0 against the smoothed target `(1-α)·onehot + α/C`.
    pub hard_ce: Tensor,
    /// The soft part `L2` before λ: in `human` mode `T_h²·D_h`; in `student` mode
    /// `teacher_term + human_term`. `None` in `baseline` mode.
    pub kd: Option<Tensor>,
    /// `student` mode only: `(1-γ)·T_t²·D(s/T_t, t/T_t)`, already weighted by `1-γ`.
    pub teacher_term: Option<Tensor>,
    /// `student` mode only: `γ·T_h²·D(s/T_h, log ĥ/T_h)`, already weighted by `γ`.
    pub human_term: Option<Tensor>,
    /// The objective: `(1-λ)·hard_ce + λ·kd`, or `hard_ce` in `baseline` mode. Carries
    /// the gradient.
    pub total: Tensor,
}

/// [`LossParts`] as host numbers, for logging.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossValues {
    /// See [`LossParts::hard_ce`].
    pub hard_ce: f64,
    /// See [`LossParts::kd`].
    pub kd: Option<f64>,
    /// See [`LossParts::teacher_term`].
    pub teacher_term: Option<f64>,
    /// See [`LossParts::human_term`].
    pub human_term: Option<f64>,
    /// See [`LossParts::total`].
    pub total: f64,
}

impl LossParts {
    /// All parts as `f64` with a single device-to-host transfer (the parts are stacked on
    /// the device first). This synchronises with the device, so call it only when logging.
    pub fn to_f64(&self) -> Result<LossValues> {
        let optional = [&self.kd, &self.teacher_term, &self.human_term];
        let mut parts: Vec<Tensor> = vec![self.hard_ce.detach()];
        parts.extend(
            optional
                .iter()
                .filter_map(|part| part.as_ref().map(Tensor::detach)),
        );
        parts.push(self.total.detach());
        let values = Tensor::stack(&parts, 0)?
            .to_device(&Device::Cpu)?
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()?;
        let mut next = values.into_iter();
        let mut take = || {
            next.next().ok_or_else(|| {
                LossError::Candle(candle_core::Error::Msg(
                    "stacked loss parts came back shorter than sent".to_owned(),
                ))
            })
        };
        let hard_ce = take()?;
        let mut optional_values = [None; 3];
        for (slot, part) in optional_values.iter_mut().zip(optional) {
            if part.is_some() {
                *slot = Some(take()?);
            }
        }
        let total = take()?;
        let [kd, teacher_term, human_term] = optional_values;
        Ok(LossValues {
            hard_ce,
            kd,
            teacher_term,
            human_term,
            total,
        })
    }
}

impl DistillationLoss {
    /// Validates `config` (see [`DistillationConfig::validate`]) and builds the loss of
    /// `mode`.
    pub fn new(mode: DistillationMode, config: DistillationConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { mode, config })
    }

    /// Which terms the loss has.
    pub fn mode(&self) -> DistillationMode {
        self.mode
    }

    /// The validated configuration.
    pub fn config(&self) -> &DistillationConfig {
        &self.config
    }

    /// Whether [`compute`](Self::compute) needs the teacher's logits: in `student` mode
    /// with γ < 1. At γ = 1 the teacher term has weight 0, so a trainer can skip the
    /// teacher's forward pass; the term is then reported as 0, which is what it is with
    /// the logits too.
    pub fn needs_teacher_logits(&self) -> bool {
        self.mode == DistillationMode::Student && self.config.gamma < 1.0
    }

    /// Whether [`compute`](Self::compute) needs the human label distributions: in
    /// `human` mode, and in `student` mode with γ > 0. At γ = 0 the human term has weight
    /// 0 and is reported as 0 without them, as the teacher term is at γ = 1.
    pub fn needs_human_labels(&self) -> bool {
        match self.mode {
            DistillationMode::Baseline => false,
            DistillationMode::Human => true,
            DistillationMode::Student => self.config.gamma > 0.0,
        }
    }

    /// Computes the loss parts of one batch.
    ///
    /// - `student_logits`: `[N, C]`, float (f16, bf16, f32 or f64); defines dtype and
    ///   device of everything.
    /// - `hard_labels`: `[N]`, `u32`, `i64` or `u8`, values in `0..C`.
    /// - `human`: `[N, C]` rows summing to 1; required in `human` mode and in `student`
    ///   mode with γ > 0 (see [`DistillationLoss::needs_human_labels`]), optional at γ = 0
    ///   (the human term is then 0), ignored in `baseline` mode. Cast to the student's dtype if it differs.
    /// - `teacher_logits`: `[N, C]`; required in `student` mode with γ < 1 (see
    ///   [`DistillationLoss::needs_teacher_logits`]), optional at γ = 1 (the teacher
    ///   term is then 0, as it is with the logits), rejected in the other modes. Cast to
    ///   the student's dtype if it differs; never receives a gradient.
    ///
    /// Nothing is copied to the host, except one scalar (the smallest human entry) when
    /// `human_smoothing` is 0 with the `log` human target, to reject rows with zeros.
    pub fn compute(
        &self,
        student_logits: &Tensor,
        hard_labels: &Tensor,
        human: Option<&Tensor>,
        teacher_logits: Option<&Tensor>,
    ) -> Result<LossParts> {
        let config = &self.config;
        let mode = self.mode;
        match (mode, teacher_logits.is_some()) {
            (DistillationMode::Student, false) if self.needs_teacher_logits() => {
                return Err(LossError::MissingTeacher);
            }
            (DistillationMode::Baseline | DistillationMode::Human, true) => {
                return Err(LossError::UnexpectedTeacher { mode });
            }
            _ => {}
        }
        if self.needs_human_labels() && human.is_none() {
            return Err(LossError::MissingHuman { mode });
        }

        let (batch, classes) = check_student(student_logits)?;
        let device = student_logits.device();
        let dtype = student_logits.dtype();
        check_labels(hard_labels, batch, device)?;
        let hard_ce = hard_cross_entropy(student_logits, hard_labels, config.label_smoothing)?;

        // The human term's target logits: log ĥ, or the raw probabilities (pilot).
        let human_log_probs = match (mode, human) {
            (DistillationMode::Baseline, _) | (_, None) => None,
            (_, Some(human)) => {
                let human = check_soft_input("human", human, batch, classes, device, dtype)?;
                Some(match config.human_target {
                    HumanTarget::Log => {
                        if config.human_smoothing == 0.0 {
                            reject_zero_entries(&human)?;
                        }
                        smoothed_human_log_probs(&human, config.human_smoothing)?
                    }
                    HumanTarget::Pilot => human,
                })
            }
        };
        let teacher = teacher_logits
            .map(|teacher| {
                check_soft_input("teacher_logits", teacher, batch, classes, device, dtype)
            })
            .transpose()?;

        let soft_term = |target: &Tensor, temperature: f64| {
            soft_distillation_term(
                student_logits,
                target,
                temperature,
                config.distil_fn,
                config.kl_reduction,
            )
        };
        let (kd, teacher_term, human_term) = match (mode, &human_log_probs, &teacher) {
            (DistillationMode::Human, Some(human_log_probs), _) => {
                let kd = soft_term(human_log_probs, config.temperature_human)?;
                (Some(kd), None, None)
            }
            (DistillationMode::Student, human_log_probs, teacher) => {
                let zero = || Tensor::zeros((), dtype, device);
                let human_term = match human_log_probs {
                    Some(human_log_probs) => soft_term(human_log_probs, config.temperature_human)?
                        .affine(config.gamma, 0.0)?,
                    // γ = 0 (checked above): weight 0.
                    None => zero()?,
                };
                let teacher_term = match teacher {
                    Some(teacher) => soft_term(teacher, config.temperature_teacher)?
                        .affine(1.0 - config.gamma, 0.0)?,
                    // γ = 1 (checked above): weight 0.
                    None => zero()?,
                };
                let kd = (&teacher_term + &human_term)?;
                (Some(kd), Some(teacher_term), Some(human_term))
            }
            _ => (None, None, None),
        };

        let total = match &kd {
            None => hard_ce.clone(),
            Some(kd) => {
                (hard_ce.affine(1.0 - config.lambda, 0.0)? + kd.affine(config.lambda, 0.0)?)?
            }
        };
        Ok(LossParts {
            hard_ce: hard_ce.detach(),
            kd: kd.map(|part| part.detach()),
            teacher_term: teacher_term.map(|part| part.detach()),
            human_term: human_term.map(|part| part.detach()),
            total,
        })
    }
}

pub(crate) fn check_student(student_logits: &Tensor) -> Result<(usize, usize)> {
    if !student_logits.dtype().is_float() {
        return Err(LossError::UnsupportedDType {
            input: "student_logits",
            found: student_logits.dtype(),
            expected: "a float dtype (f16, bf16, f32 or f64)",
        });
    }
    match *student_logits.dims() {
        [batch, classes] if batch > 0 && classes > 0 => Ok((batch, classes)),
        _ => Err(LossError::ShapeMismatch {
            input: "student_logits",
            found: student_logits.dims().to_vec(),
            expected: "[N, C] with N >= 1 and C >= 1".to_owned(),
        }),
    }
}

fn check_device(input: &'static str, tensor: &Tensor, device: &Device) -> Result<()> {
    if tensor.device().same_device(device) {
        Ok(())
    } else {
        Err(LossError::DeviceMismatch {
            input,
            found: format!("{:?}", tensor.device().location()),
            expected: format!("{:?}", device.location()),
        })
    }
}

pub(crate) fn check_labels(hard_labels: &Tensor, batch: usize, device: &Device) -> Result<()> {
    check_device("hard_labels", hard_labels, device)?;
    if !matches!(hard_labels.dtype(), DType::U32 | DType::I64 | DType::U8) {
        return Err(LossError::UnsupportedDType {
            input: "hard_labels",
            found: hard_labels.dtype(),
            expected: "an integer class index dtype (u32, i64 or u8)",
        });
    }
    if hard_labels.dims() != [batch] {
        return Err(LossError::ShapeMismatch {
            input: "hard_labels",
            found: hard_labels.dims().to_vec(),
            expected: format!("[{batch}] (one class index per student row)"),
        });
    }
    Ok(())
}

pub(crate) fn check_soft_input(
    input: &'static str,
    tensor: &Tensor,
    batch: usize,
    classes: usize,
    device: &Device,
    dtype: DType,
) -> Result<Tensor> {
    check_device(input, tensor, device)?;
    if !tensor.dtype().is_float() {
        return Err(LossError::UnsupportedDType {
            input,
            found: tensor.dtype(),
            expected: "a float dtype (f16, bf16, f32 or f64)",
        });
    }
    if tensor.dims() != [batch, classes] {
        return Err(LossError::ShapeMismatch {
            input,
            found: tensor.dims().to_vec(),
            expected: format!("[{batch}, {classes}] (the student logits' shape)"),
        });
    }
    Ok(tensor.to_dtype(dtype)?)
}

fn reject_zero_entries(human: &Tensor) -> Result<()> {
    let min = human
        .min_all()?
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?;
    if min > 0.0 {
        Ok(())
    } else {
        Err(LossError::ZeroHumanProbabilityWithoutSmoothing { min })
    }
}
