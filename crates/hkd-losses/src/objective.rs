//! The objective trait: what a training step hands a distillation objective, and what it
//! gets back.
//!
//! Every objective hkd trains with implements [`Objective`]: the built-in ones (listed in
//! [`crate::objectives`]) and any a downstream crate writes for its own training loop. A
//! trainer asks [`Objective::needs`] which inputs to compute (a teacher forward pass costs
//! more than the student's), calls [`Objective::compute`] every step with an
//! [`ObjectiveInputs`], calls `backward` on [`ObjectiveOutput::total`] and logs the named
//! [`ObjectiveOutput::parts`].

use candle_core::{DType, Device, Tensor};

use crate::error::{LossError, Result};

/// Which inputs an objective reads. A trainer may skip computing what is not needed
/// (the teacher's forward pass at γ = 1, the human labels at γ = 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Needs {
    /// The teacher network's logits for the batch.
    pub teacher_logits: bool,
    /// The batch's human label distributions.
    pub human: bool,
}

/// Everything an objective may read for one batch. Tensors are on one device; the
/// student logits define it and the dtype (the others are cast to it by the built-in
/// objectives).
#[derive(Debug, Clone, Copy)]
pub struct ObjectiveInputs<'a> {
    /// `[N, C]` float logits of the student; the gradient flows into them.
    pub student_logits: &'a Tensor,
    /// `[N]` class indices (`u8`, `u32` or `i64`), values in `0..C`.
    pub hard_labels: &'a Tensor,
    /// `[N, C]` teacher logits, when [`Needs::teacher_logits`] (never receive a gradient).
    pub teacher_logits: Option<&'a Tensor>,
    /// `[N, C]` human label distributions (rows summing to 1, unsmoothed), when
    /// [`Needs::human`].
    pub human: Option<&'a Tensor>,
    /// The 1-based epoch this batch belongs to (for warm-ups such as DKD's).
    pub epoch: u32,
}

/// One named part of an objective's value, detached from the graph (for logging).
#[derive(Debug, Clone)]
pub struct Part {
    /// The part's name, e.g. `hard`, `kl`, `tckd`; the epoch metrics' key.
    pub name: &'static str,
    /// A rank-0 tensor in the student logits' dtype and on their device.
    pub value: Tensor,
}

/// An objective's value for one batch.
#[derive(Debug, Clone)]
pub struct ObjectiveOutput {
    /// The loss; carries the gradient (call `backward` on it).
    pub total: Tensor,
    /// Its named parts, in the order of [`Objective::part_names`], detached.
    pub parts: Vec<Part>,
}

/// [`ObjectiveOutput`] as host numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputValues {
    /// See [`ObjectiveOutput::total`].
    pub total: f64,
    /// See [`ObjectiveOutput::parts`].
    pub parts: Vec<(&'static str, f64)>,
}

impl ObjectiveOutput {
    /// The value of the part called `name`, if the objective has it.
    pub fn part(&self, name: &str) -> Option<&Tensor> {
        self.parts.iter().find(|p| p.name == name).map(|p| &p.value)
    }

    /// The total and every part as `f64`, with one device-to-host transfer (the scalars
    /// are stacked on the device first). This synchronises with the device.
    pub fn values(&self) -> Result<OutputValues> {
        let mut scalars: Vec<Tensor> = Vec::with_capacity(self.parts.len() + 1);
        scalars.push(self.total.detach());
        scalars.extend(self.parts.iter().map(|p| p.value.detach()));
        let values = Tensor::stack(&scalars, 0)?
            .to_device(&Device::Cpu)?
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()?;
        let (total, parts) = values.split_first().ok_or_else(|| {
            LossError::Candle(candle_core::Error::Msg(
                "stacked objective parts came back empty".to_owned(),
            ))
        })?;
        Ok(OutputValues {
            total: *total,
            parts: self
                .parts
                .iter()
                .map(|p| p.name)
                .zip(parts.iter().copied())
                .collect(),
        })
    }
}

/// A distillation objective: its inputs and its value with named parts.
///
/// Implement it to train with an objective of your own (see
/// `examples/custom-objective/` in the repository); the built-in objectives are chosen by
/// name through [`crate::ObjectiveConfig`].
pub trait Objective: Send + Sync + std::fmt::Debug {
    /// Which inputs [`compute`](Self::compute) reads.
    fn needs(&self) -> Needs;

    /// The names of the parts [`compute`](Self::compute) returns, in order (the same for
    /// every batch, so that epoch metrics have fixed columns).
    fn part_names(&self) -> Vec<&'static str>;

    /// The value of one batch. An input that [`needs`](Self::needs) asks for but that is
    /// `None` is an error naming it.
    fn compute(&self, inputs: &ObjectiveInputs<'_>) -> Result<ObjectiveOutput>;
}
