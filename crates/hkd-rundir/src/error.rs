use std::path::PathBuf;

/// Everything that can go wrong reading or writing a run directory.
#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid hkd {what}: {message}")]
    Parse {
        path: PathBuf,
        what: &'static str,
        message: String,
    },
    #[error("no finished run with a best.json under {0}: train some runs there first")]
    NoRuns(PathBuf),
    /// `--teacher` cannot be resolved.
    #[error("teacher `{teacher}`: {reason}")]
    Teacher { teacher: String, reason: String },
    /// Another process holds the run directory's lock.
    #[error(
        "{dir} is in use by another hkd-train ({holder}); wait for it to finish, or stop it first"
    )]
    Locked { dir: PathBuf, holder: String },
}

impl RunDirError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn parse(
        path: impl Into<PathBuf>,
        what: &'static str,
        message: impl ToString,
    ) -> Self {
        Self::Parse {
            path: path.into(),
            what,
            message: message.to_string().trim_end().to_string(),
        }
    }
}
