use std::path::PathBuf;

/// Everything that can stop an analysis. A single bad run never does: it is skipped and
/// listed in [`crate::LoadedGrid::skipped`].
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// The grid directory itself cannot be listed.
    #[error("cannot search {root} for run directories: {source}")]
    Search {
        root: PathBuf,
        #[source]
        source: hkd_rundir::RunDirError,
    },

    /// Not one run could be analysed.
    #[error(
        "no finished, readable run under {root} ({found} run directories found, {skipped} skipped \
         as unfinished or unreadable): train runs there first, or point hkd-analyze at the grid's \
         output directory"
    )]
    NoRuns {
        root: PathBuf,
        found: usize,
        skipped: usize,
    },

    /// A `--group-by` key that is not a hyperparameter column.
    #[error(
        "--group-by key `{key}` is not a hyperparameter column of runs.csv; expected one of: \
         {allowed}"
    )]
    UnknownGroupKey { key: String, allowed: String },

    /// `--group-by` was given but empty.
    #[error("--group-by needs at least one key, e.g. --group-by teacher,student,lambda")]
    EmptyGroupBy,

    /// `--paired-against` is malformed, names a key that is not a grouping key, or selects
    /// no configuration or several.
    #[error("--paired-against {message}")]
    PairedAgainst { message: String },

    /// polars refused a table operation (a bug in hkd-analysis rather than in the data).
    #[error("table operation `{what}` failed: {source}")]
    Table {
        what: &'static str,
        #[source]
        source: polars::error::PolarsError,
    },

    /// An output file could not be written.
    #[error("cannot write {path}: {message}; check that the directory is writable")]
    Write { path: PathBuf, message: String },

    /// A figure could not be drawn.
    #[error("cannot draw figure {path}: {message}")]
    Plot { path: PathBuf, message: String },
}

impl AnalysisError {
    /// Whether the error refuses the command line or its values before anything is written
    /// (exit 2 of the binaries' policy) rather than a failure while working (exit 1).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Self::UnknownGroupKey { .. } | Self::EmptyGroupBy | Self::PairedAgainst { .. }
        )
    }

    pub(crate) fn table(what: &'static str) -> impl FnOnce(polars::error::PolarsError) -> Self {
        move |source| Self::Table { what, source }
    }

    pub(crate) fn write(path: impl Into<PathBuf>, message: impl ToString) -> Self {
        Self::Write {
            path: path.into(),
            message: message.to_string(),
        }
    }
}

pub type Result<T, E = AnalysisError> = std::result::Result<T, E>;
