//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while reading, validating, writing or batching a dataset.
///
/// Every message names the file (or the in-memory source), what was found, what was
/// expected and, where it helps, what to do about it. Nothing in this crate panics on
/// user data: bad input always comes back as one of these.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The operating system refused a read or write.
    #[error("{}: {action} failed: {source}", path.display())]
    Io {
        path: PathBuf,
        /// What was attempted ("read", "create directory", ...).
        action: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// The file is not a NumPy `.npy` file, or its header cannot be understood.
    #[error("{}: not a readable .npy file: {reason}. Expected a NumPy .npy file (np.save)", path.display())]
    NotNpy { path: PathBuf, reason: String },

    /// The file ends before the data its header promises.
    #[error(
        "{}: truncated: the header promises {expected} data bytes but only {found} follow it. Copy or save the file again",
        path.display()
    )]
    Truncated {
        path: PathBuf,
        expected: u64,
        found: u64,
    },

    /// An array of the wrong element type.
    #[error("{}: {role} have dtype {found}, expected {expected}", path.display())]
    Dtype {
        path: PathBuf,
        /// What the array holds ("images", "labels", "human labels", "ids").
        role: &'static str,
        found: String,
        expected: String,
    },

    /// An array of the wrong shape.
    #[error("{}: {role} have shape {found:?}, expected {expected}", path.display())]
    Shape {
        path: PathBuf,
        role: &'static str,
        found: Vec<u64>,
        expected: String,
    },

    /// Two arrays that must have one row per image disagree on the number of rows.
    #[error(
        "row counts differ: {} has {left_rows} {left_role} but {} has {right_rows} {right_role}; they must have one row per image",
        left.display(),
        right.display()
    )]
    LengthMismatch {
        left: PathBuf,
        left_role: &'static str,
        left_rows: usize,
        right: PathBuf,
        right_role: &'static str,
        right_rows: usize,
    },

    /// A hard label outside `0..classes`, or not a whole number.
    #[error(
        "{}: label at row {row} is {value}, expected a whole number in 0..{classes} (the dataset has {classes} classes)",
        path.display()
    )]
    LabelOutOfRange {
        path: PathBuf,
        row: usize,
        value: String,
        classes: usize,
    },

    /// A human label row that is not a probability distribution.
    #[error("{}: human label row {row} {problem}", path.display())]
    BadHumanRow {
        path: PathBuf,
        row: usize,
        /// e.g. "sums to 0.97, expected 1 (±0.001)".
        problem: String,
    },

    /// Pixel values outside what images can hold (negative, NaN, above 255).
    #[error("{}: {problem}", path.display())]
    PixelRange { path: PathBuf, problem: String },

    /// Float pixels whose scale ([0, 1] or [0, 255]) cannot be told from the values.
    #[error(
        "{}: cannot tell whether the float pixels are in [0,1] or [0,255]: {reason}. Say which with an explicit image range (`--range unit` or `--range byte`, or `image_range` in dataset.toml)",
        path.display()
    )]
    AmbiguousRange { path: PathBuf, reason: String },

    /// A `dataset.toml` that cannot be parsed or refers to something impossible.
    #[error("{}: {reason}", path.display())]
    Manifest { path: PathBuf, reason: String },

    /// A directory in none of the layouts this crate reads.
    #[error("{}: {reason}", path.display())]
    UnknownLayout { path: PathBuf, reason: String },

    /// A split that the dataset does not have.
    #[error("{}: no split named {split:?}; the dataset has: {}", path.display(), available.join(", "))]
    UnknownSplit {
        path: PathBuf,
        split: String,
        available: Vec<String>,
    },

    /// A PNG (or other image file) that cannot be used.
    #[error("{}: {reason}", path.display())]
    Image { path: PathBuf, reason: String },

    /// A CIFAR-10 binary batch file that does not hold whole 3073-byte records.
    #[error("{}: {reason}", path.display())]
    Cifar10Binary { path: PathBuf, reason: String },

    /// A CIFAR-100 release file (python pickle or binary records) that cannot be used.
    #[error("{}: {reason}", path.display())]
    Cifar100 { path: PathBuf, reason: String },

    /// A CSV file used for row selection that cannot be used.
    #[error("{}: line {line}: {reason}", path.display())]
    Csv {
        path: PathBuf,
        line: usize,
        reason: String,
    },

    /// In-memory data or arguments that break an invariant (no file involved).
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },

    /// A candle error while turning a batch into tensors.
    #[error("building batch tensors: {0}")]
    Candle(#[from] candle_core::Error),
}

impl DatasetError {
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        action: &'static str,
        source: std::io::Error,
    ) -> Self {
        DatasetError::Io {
            path: path.into(),
            action,
            source,
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        DatasetError::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

/// Result with [`DatasetError`].
pub type Result<T, E = DatasetError> = std::result::Result<T, E>;
