use std::path::PathBuf;

/// Everything that can go wrong preparing, submitting or running a grid.
///
/// Every message names the file (or command), what was found, what was expected and what
/// to do about it.
#[derive(Debug, thiserror::Error)]
pub enum GridError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The config file does not parse or has a key/value that is not allowed.
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },

    /// A value that would reach a shell or an `#SBATCH` line is refused.
    #[error("{path}: {what} {value:?} is refused: {why}")]
    Unsafe {
        path: PathBuf,
        what: String,
        value: String,
        why: String,
    },

    /// The binary a config names cannot be found or asked for its flags.
    #[error("{0}")]
    Binary(String),

    /// A grid directory (manifest, task states) is missing or unreadable.
    #[error("{path}: {message}")]
    GridDir { path: PathBuf, message: String },

    /// `sbatch`, `squeue`, `scontrol` failed or printed something unexpected.
    #[error("{command} failed{}: {message}", .script.as_ref().map(|s| format!(" for {}", s.display())).unwrap_or_default())]
    Scheduler {
        command: String,
        script: Option<PathBuf>,
        message: String,
    },

    /// A pipeline file is inconsistent (unknown stage, cycle, …).
    #[error("{path}: {message}")]
    Pipeline { path: PathBuf, message: String },

    #[error(transparent)]
    RunDir(#[from] hkd_rundir::RunDirError),

    /// sbatch refused a job after accepting others: the accepted ones are recorded in the
    /// manifest, the rest of the tasks were not submitted.
    #[error(
        "{source}\nsubmission stopped there: {accepted} jobs ({}) were accepted and are recorded, {unsubmitted} tasks were not submitted; fix the cause, then submit exactly those with: hkd-grid resubmit {} --unsubmitted",
        if job_ids.is_empty() { "none".to_string() } else { job_ids.join(",") },
        dir.display(),
        accepted = job_ids.len()
    )]
    PartialSubmission {
        dir: PathBuf,
        /// Job ids sbatch accepted before the refusal.
        job_ids: Vec<String>,
        /// Tasks left unsubmitted.
        unsubmitted: usize,
        source: Box<GridError>,
    },
}

impl GridError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        GridError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn config(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        GridError::Config {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn grid_dir(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        GridError::GridDir {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Result with [`GridError`].
pub type Result<T> = std::result::Result<T, GridError>;
