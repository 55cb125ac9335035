//! The error type of this crate.

#[cfg(feature = "candle")]
use candle_core::DType;

use crate::config::DistillationMode;

/// Everything that can go wrong when building or evaluating the distillation loss.
///
/// Each message names the config field or input, what was found, what was expected and
/// what to change.
#[derive(Debug, thiserror::Error)]
pub enum LossError {
    /// `lambda` or `gamma` is not a number in `[0, 1]`.
    #[error(
        "distillation config field `{field}` is {found}, expected a number in [0, 1]; \
         set `{field}` to a mixing weight between 0 and 1 in the run config"
    )]
    WeightOutOfRange {
        /// `"lambda"` or `"gamma"`.
        field: &'static str,
        /// The rejected value.
        found: f64,
    },

    /// A temperature is zero, negative, NaN or infinite.
    #[error(
        "distillation config field `{field}` is {found}, expected a finite temperature > 0; \
         set `{field}` to a positive number (1 leaves the logits unchanged)"
    )]
    InvalidTemperature {
        /// `"temperature_teacher"` or `"temperature_human"`.
        field: &'static str,
        /// The rejected value.
        found: f64,
    },

    /// `human_smoothing` is negative, NaN or infinite.
    #[error(
        "distillation config field `human_smoothing` is {found}, expected a finite number >= 0; \
         set `human_smoothing` to 0.02 (the original project's value) or 0 for no smoothing"
    )]
    InvalidSmoothing {
        /// The rejected value.
        found: f64,
    },

    /// `label_smoothing` is outside `[0, 1)` or NaN.
    #[error(
        "distillation config field `label_smoothing` is {found}, expected a number in [0, 1); \
         set `label_smoothing` to α of the hard-label target (1-α)·onehot + α/C, e.g. 0.1, \
         or 0 for plain cross-entropy"
    )]
    InvalidLabelSmoothing {
        /// The rejected value.
        found: f64,
    },

    /// A text value for an enum field (`mode`, `distil_fn`, `kl_reduction`, `human_target`) is unknown.
    #[error(
        "distillation config field `{field}` is {found:?}, expected one of {expected}; \
         use one of those spellings exactly"
    )]
    UnknownVariant {
        /// The config field.
        field: &'static str,
        /// The text that was given.
        found: String,
        /// The accepted spellings.
        expected: &'static str,
    },

    /// Teacher logits were passed although the mode is not `student`.
    #[error(
        "teacher logits were given to the distillation loss in `{mode}` mode, expected none: \
         only `student` mode distils from a teacher; pass `None`, or build the loss with \
         `DistillationMode::Student`"
    )]
    UnexpectedTeacher {
        /// The configured mode.
        mode: DistillationMode,
    },

    /// Teacher logits are missing in `student` mode.
    #[error(
        "no teacher logits were given to the distillation loss in `student` mode with γ < 1, \
         expected a [N, C] tensor; pass the teacher's logits for the batch or use \
         `human`/`baseline` mode"
    )]
    MissingTeacher,

    /// Human label distributions are missing in `human` mode or `student` mode with γ > 0.
    #[error(
        "no human label distributions were given to the distillation loss in `{mode}` mode, \
         expected a [N, C] tensor of rows summing to 1; pass the batch's human labels or use \
         `baseline` mode"
    )]
    MissingHuman {
        /// The configured mode.
        mode: DistillationMode,
    },

    /// `human_smoothing` is 0 but a human row contains a zero (its log would be -inf).
    #[error(
        "human label distributions contain an entry <= 0 (smallest: {min}) while \
         `human_smoothing` is 0, expected strictly positive rows so that log(h) is finite; \
         set `human_smoothing` > 0 (0.02 as in the original project)"
    )]
    ZeroHumanProbabilityWithoutSmoothing {
        /// The smallest entry found.
        min: f64,
    },

    /// An input tensor has the wrong shape.
    #[error(
        "distillation loss input `{input}` has shape {found:?}, expected {expected}; \
         pass student logits [N, C], hard labels [N], human distributions [N, C] and \
         teacher logits [N, C] for the same batch"
    )]
    ShapeMismatch {
        /// The input's name (`student_logits`, `hard_labels`, `human`, `teacher_logits`).
        input: &'static str,
        /// Its shape.
        found: Vec<usize>,
        /// What was expected, in words.
        expected: String,
    },

    /// An input tensor has an unsupported data type.
    #[cfg(feature = "candle")]
    #[error(
        "distillation loss input `{input}` has dtype {found:?}, expected {expected}; \
         convert it with `Tensor::to_dtype` before calling the loss"
    )]
    UnsupportedDType {
        /// The input's name.
        input: &'static str,
        /// Its dtype.
        found: DType,
        /// The accepted dtypes, in words.
        expected: &'static str,
    },

    /// An input tensor lives on a different device than the student logits.
    #[error(
        "distillation loss input `{input}` is on {found}, expected the student logits' device \
         {expected}; move it with `Tensor::to_device` first"
    )]
    DeviceMismatch {
        /// The input's name.
        input: &'static str,
        /// Where it is.
        found: String,
        /// Where the student logits are.
        expected: String,
    },

    /// A human label row is not a probability distribution (see
    /// `check_human_distributions`).
    #[error(
        "human label row {row} is not a probability distribution: {problem}; \
         expected non-negative finite entries summing to 1 (within {tolerance}); \
         fix or renormalise the human label file"
    )]
    InvalidHumanRow {
        /// The first offending row.
        row: usize,
        /// What is wrong with it.
        problem: String,
        /// The tolerance used for the row sum.
        tolerance: f64,
    },

    /// A setting of one of the objectives other than `hkd` is out of range.
    #[error(
        "objective `{objective}` setting `{key}` is {found}, expected {expected}; set `{key}` \
         to such a value (docs/losses.md lists every objective's settings and defaults)"
    )]
    InvalidObjectiveSetting {
        /// The objective's registry name.
        objective: &'static str,
        /// The setting's key.
        key: &'static str,
        /// The rejected value.
        found: f64,
        /// What would be accepted, in words.
        expected: &'static str,
    },

    /// The objective distils a soft target, but the run has none (`--teacher baseline`).
    #[error(
        "objective `{objective}` distils a soft target, but `--teacher baseline` gives it none; \
         use --teacher human (the human label distributions), a teacher network, or \
         --objective hkd, which trains on hard labels alone with --teacher baseline"
    )]
    NoTarget {
        /// The objective's registry name.
        objective: &'static str,
    },

    /// An input the objective needs for this batch was not given.
    #[error(
        "objective `{objective}` needs `{input}` for this batch, but none was given; pass it \
         (`Objective::needs` says what a training step must compute)"
    )]
    MissingInput {
        /// The objective's registry name.
        objective: &'static str,
        /// `teacher_logits` or `human`.
        input: &'static str,
    },

    /// An objective name that is not registered.
    #[error("objective `{found}` is unknown, expected one of {expected}")]
    UnknownObjective {
        /// The name given.
        found: String,
        /// The registered names.
        expected: String,
    },

    /// An error from candle while computing.
    #[cfg(feature = "candle")]
    #[error("tensor operation failed while computing the distillation loss: {0}")]
    Candle(#[from] candle_core::Error),
}

impl LossError {
    /// For an error of [`DistillationConfig::validate`](crate::DistillationConfig::validate):
    /// the config field it is about and the value found (so that a caller can name the
    /// setting, e.g. a command-line flag, without knowing every variant).
    pub fn setting(&self) -> Option<(&'static str, f64)> {
        match self {
            LossError::WeightOutOfRange { field, found }
            | LossError::InvalidTemperature { field, found } => Some((field, *found)),
            LossError::InvalidSmoothing { found } => Some(("human_smoothing", *found)),
            LossError::InvalidLabelSmoothing { found } => Some(("label_smoothing", *found)),
            LossError::InvalidObjectiveSetting { key, found, .. } => Some((key, *found)),
            _ => None,
        }
    }
}

/// This crate's result type.
pub type Result<T> = std::result::Result<T, LossError>;
