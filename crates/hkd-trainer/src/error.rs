//! Everything that can stop a training run, with messages that say what to do.

use std::path::PathBuf;

/// Errors of the training manager. Every message names the file or setting involved,
/// what was found, what was expected and, where there is one, the way out.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A setting has a value the trainer cannot use.
    #[error("invalid setting `{field}` is {found}, expected {expected}")]
    InvalidOption {
        /// Flag / config field name (`lambda`, `batch_size`, ...).
        field: &'static str,
        /// The value given.
        found: String,
        /// What would be accepted.
        expected: String,
    },

    /// A setting of the run specification has an invalid value.
    #[error("invalid setting {0}")]
    Setting(#[from] hkd_rundir::InvalidSetting),

    /// `--teacher` does not name a usable teacher.
    #[error("teacher `{teacher}`: {reason}")]
    Teacher {
        /// The value of `--teacher` as given.
        teacher: String,
        /// What is wrong and what to do.
        reason: String,
    },

    /// The run directory already holds a run and neither `--resume` nor `--overwrite` was given.
    #[error(
        "{dir} already holds a run ({status}); pass --resume to continue it or --overwrite to delete it and start again"
    )]
    RunExists {
        /// The run directory.
        dir: PathBuf,
        /// Where that run stands.
        status: String,
    },

    /// `--resume` found a run trained with other settings.
    #[error(
        "cannot resume {dir}: its config.toml differs from the settings given in {}; resume with the same settings, or pass --overwrite to start again",
        differences.join(", ")
    )]
    ConfigMismatch {
        /// The run directory.
        dir: PathBuf,
        /// `field: stored -> given` for each differing field.
        differences: Vec<String>,
    },

    /// The `config.toml` of a run already in the directory cannot be read, so what that
    /// run is cannot be known.
    #[error("{source}; repair the file, or pass --overwrite to delete that run and start again")]
    UnreadableConfig {
        /// The parse or read error (it names the file).
        source: hkd_rundir::RunDirError,
    },

    /// The directory that would hold the run holds something else.
    #[error(
        "{dir} exists and is not an hkd run directory (no config.toml) but is not empty: {reason}"
    )]
    NotARunDir {
        /// The directory.
        dir: PathBuf,
        /// What to do.
        reason: String,
    },

    /// The loss became NaN or infinite; no weights were updated with it.
    #[error(
        "the training loss is {value} at epoch {epoch}, batch {batch} (1-based, of {batches}): training stopped before updating the weights with it. The last good checkpoint in {dir} ({last_good}) is kept. Lower --lr, check the data, or resume with other settings after --overwrite"
    )]
    NonFiniteLoss {
        /// 1-based epoch.
        epoch: u32,
        /// 1-based batch of the epoch.
        batch: usize,
        /// Batches per epoch.
        batches: usize,
        /// The loss value (`NaN`, `inf`, `-inf`).
        value: f64,
        /// The run directory.
        dir: PathBuf,
        /// What the last checkpoint holds.
        last_good: String,
    },

    /// A checkpoint file of the run is unreadable or inconsistent.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// `--device` names a device that cannot be used.
    #[error("device `{spec}`: {reason}")]
    Device {
        /// The value of `--device`.
        spec: String,
        /// Why it cannot be used.
        reason: String,
    },

    /// A dataset could not be opened or loaded (the dataset error names the path).
    #[error("{source}")]
    Dataset {
        /// The dataset directory.
        path: PathBuf,
        /// The dataset error.
        #[source]
        source: hkd_datasets::DatasetError,
    },

    /// A network could not be built or its weights loaded.
    #[error("{context}: {source}")]
    Arch {
        /// What was being done.
        context: String,
        /// The architecture error (boxed: it is large, and errors travel in every `Result`).
        #[source]
        source: Box<hkd_arch::ArchError>,
    },

    /// The loss rejected its settings or inputs.
    #[error("loss: {0}")]
    Loss(#[from] hkd_losses::LossError),

    /// Reading or writing the run directory failed.
    #[error(transparent)]
    RunDir(#[from] hkd_rundir::RunDirError),

    /// A tensor operation failed.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),

    /// A file operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done (`read`, `remove`, ...).
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl TrainError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        TrainError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn arch(context: impl Into<String>, source: hkd_arch::ArchError) -> Self {
        TrainError::Arch {
            context: context.into(),
            source: Box::new(source),
        }
    }

    pub(crate) fn invalid(
        field: &'static str,
        found: impl ToString,
        expected: impl Into<String>,
    ) -> Self {
        TrainError::InvalidOption {
            field,
            found: found.to_string(),
            expected: expected.into(),
        }
    }
}

/// Result of the training manager.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;

impl From<hkd_arch::DeviceError> for TrainError {
    fn from(e: hkd_arch::DeviceError) -> Self {
        TrainError::Device {
            spec: e.spec,
            reason: e.reason,
        }
    }
}
