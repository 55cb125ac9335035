//! The error type of the evaluator.

use std::path::PathBuf;

use hkd_arch::ArchError;
use hkd_datasets::DatasetError;
use hkd_rundir::RunDirError;

/// Everything that can go wrong while evaluating runs or predicting logits.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A `--set` value (or an entry of a sets file) could not be parsed.
    #[error(
        "set {spec:?}: {reason}; expected NAME=DIR or NAME=DIR:split (e.g. cifar10=data/cifar10h-real:val)"
    )]
    SetSpec {
        /// The text as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A dataset named by a set could not be opened or loaded.
    #[error("set {name} ({source_desc}): {source}")]
    SetUnavailable {
        /// Name of the set.
        name: String,
        /// `DIR:split` or `DIR` as resolved.
        source_desc: String,
        /// Why it could not be loaded.
        #[source]
        source: Box<DatasetError>,
    },

    /// A dataset directory has several splits and the set did not name one.
    #[error(
        "set {name}: {dir} has the splits {available:?} and none is named {name:?}; name one as {name}={dir}:SPLIT"
    )]
    SplitNotNamed {
        /// Name of the set.
        name: String,
        /// The dataset directory.
        dir: PathBuf,
        /// Its splits.
        available: Vec<String>,
    },

    /// Two sets were given the same name.
    #[error("set name {0:?} is given twice; every set needs its own name")]
    DuplicateSet(String),

    /// A sets file could not be read.
    #[error(
        "sets file {path}: {reason}; expected a TOML file with a [sets] table of NAME = \"DIR[:split]\""
    )]
    SetsFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },

    /// A bare checkpoint has no run config to take default sets from.
    #[error(
        "{0} is a bare checkpoint: it has no run config naming a validation split, so name the sets with --set NAME=DIR[:split]"
    )]
    NoSetsForCheckpoint(PathBuf),

    /// Nothing to evaluate was found at a path.
    #[error("{path}: {reason}")]
    NoTargets {
        /// The path as given.
        path: PathBuf,
        /// What was expected there.
        reason: String,
    },

    /// The run directory could not be read.
    #[error(transparent)]
    RunDir(#[from] RunDirError),

    /// The network could not be built or its weights not loaded.
    #[error("{context}: {source}")]
    Arch {
        /// What was being done (e.g. "loading runs/a/best.safetensors as resnet8").
        context: String,
        /// The cause.
        #[source]
        source: Box<ArchError>,
    },

    /// A dataset problem outside of set loading.
    #[error(transparent)]
    Dataset(Box<DatasetError>),

    /// A tensor operation failed.
    #[error("tensor operation failed: {0}")]
    Candle(Box<candle_core::Error>),

    /// The network's number of outputs does not match the set's number of classes.
    #[error(
        "set {set} has {set_classes} classes but the network ({arch}) has {net_classes} outputs; evaluate it on a set with the classes it was trained on"
    )]
    ClassMismatch {
        /// Name of the set.
        set: String,
        /// Classes of the set.
        set_classes: usize,
        /// Architecture of the network.
        arch: String,
        /// Outputs of the network.
        net_classes: usize,
    },

    /// The network produced NaN or infinite logits.
    #[error(
        "set {set}: the network outputs non-finite logits (NaN or ±inf) for image {row}; its weights are probably diverged — retrain the run"
    )]
    NonFinite {
        /// Name of the set.
        set: String,
        /// First offending image.
        row: usize,
    },

    /// A file could not be read or written.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// An `.npy` input of `predict` is not what it should be.
    #[error("{path}: {reason}")]
    Npy {
        /// The file.
        path: PathBuf,
        /// What is wrong and what is expected.
        reason: String,
    },

    /// `--calibrate-on NAME` names no set that is evaluated.
    #[error(
        "--calibrate-on {name}: no set of that name is evaluated (the sets are {}); name one of them, or add it with --set {name}=DIR[:split]",
        available.join(", ")
    )]
    UnknownCalibrationSet {
        /// The name given.
        name: String,
        /// The names of the sets evaluated.
        available: Vec<String>,
    },

    /// An option value is out of range.
    #[error("{option}: {reason}")]
    InvalidOption {
        /// The option (e.g. `--batch-size`).
        option: &'static str,
        /// What is wrong and what is expected.
        reason: String,
    },

    /// The device could not be opened.
    #[error("device {device:?}: {reason}")]
    Device {
        /// The device as given.
        device: String,
        /// What went wrong.
        reason: String,
    },

    /// Metric inputs of inconsistent sizes (a bug in the caller).
    #[error("metric inputs do not agree: {0}")]
    MetricInput(String),
}

impl EvalError {
    /// Whether the error refuses the command line or an input before any work (exit 2 of
    /// the binaries' policy) rather than a failure while working (exit 1).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            EvalError::SetSpec { .. }
                | EvalError::SetUnavailable { .. }
                | EvalError::SplitNotNamed { .. }
                | EvalError::DuplicateSet(_)
                | EvalError::SetsFile { .. }
                | EvalError::NoSetsForCheckpoint(_)
                | EvalError::NoTargets { .. }
                | EvalError::InvalidOption { .. }
                | EvalError::UnknownCalibrationSet { .. }
                | EvalError::Device { .. }
        ) || self.is_unsound_weights()
    }

    /// Whether the run's weights were refused when loaded (a NaN or infinite value, a
    /// negative BatchNorm variance): an unusable input, exit 2 like any other.
    pub fn is_unsound_weights(&self) -> bool {
        matches!(self, EvalError::Arch { source, .. } if matches!(**source, ArchError::UnsoundWeights { .. }))
    }
}

impl EvalError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        EvalError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn arch(context: impl Into<String>, source: ArchError) -> Self {
        EvalError::Arch {
            context: context.into(),
            source: Box::new(source),
        }
    }
}

impl From<DatasetError> for EvalError {
    fn from(e: DatasetError) -> Self {
        EvalError::Dataset(Box::new(e))
    }
}

impl From<candle_core::Error> for EvalError {
    fn from(e: candle_core::Error) -> Self {
        EvalError::Candle(Box::new(e))
    }
}

/// Result with [`EvalError`].
pub type Result<T> = std::result::Result<T, EvalError>;

impl From<hkd_arch::DeviceError> for EvalError {
    fn from(e: hkd_arch::DeviceError) -> Self {
        EvalError::Device {
            device: e.spec,
            reason: e.reason,
        }
    }
}
