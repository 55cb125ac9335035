//! The error type of the architectures crate.

use std::path::PathBuf;

/// A tensor whose shape differs between a weights source and the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeMismatch {
    /// PyTorch state_dict name.
    pub name: String,
    /// Shape the network expects.
    pub expected: Vec<usize>,
    /// Shape found in the source.
    pub found: Vec<usize>,
}

/// Everything that can go wrong when building, running, saving or loading a network.
#[derive(Debug, thiserror::Error)]
pub enum ArchError {
    /// The architecture name matches none of the known names or patterns.
    #[error("unknown architecture `{name}`: {reason}; valid names: {valid}")]
    UnknownArchitecture {
        /// The name as given.
        name: String,
        /// Why it was rejected (e.g. "depth 9 is not 6n+2").
        reason: String,
        /// Valid names and patterns.
        valid: String,
    },

    /// A configuration value is out of range (e.g. zero classes).
    #[error("invalid network configuration: {0}")]
    InvalidConfig(String),

    /// The input batch does not have the shape the network accepts.
    #[error("network `{arch}` got an input of shape {found:?}; expected {expected}")]
    InputShape {
        /// Canonical architecture name.
        arch: String,
        /// Shape of the input.
        found: Vec<usize>,
        /// What is accepted.
        expected: String,
    },

    /// A state dict does not fit the network.
    #[error("{}", format_mismatch(.source_desc, .arch, .missing, .unexpected, .mis_shaped))]
    StateDictMismatch {
        /// Where the tensors came from (a file path or "state dict").
        source_desc: String,
        /// Canonical architecture name of the network.
        arch: String,
        /// Names the network needs but the source lacks.
        missing: Vec<String>,
        /// Names the source has but the network does not know.
        unexpected: Vec<String>,
        /// Names present on both sides with different shapes.
        mis_shaped: Vec<ShapeMismatch>,
    },

    /// A tensor of a state dict holds values no trained network has: NaN or infinite
    /// values, or a negative BatchNorm running variance.
    #[error(
        "{source_desc}: tensor `{name}` {reason}; these weights are damaged (or come from a diverged run): use another checkpoint, or retrain"
    )]
    UnsoundWeights {
        /// Where the tensors came from (a file path or "state dict").
        source_desc: String,
        /// The tensor's name.
        name: String,
        /// What is wrong with it, with the first offending index.
        reason: String,
    },

    /// Reading or writing a file failed.
    #[error("{action} `{}` failed: {source}", path.display())]
    Io {
        /// "reading", "writing", ...
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },

    /// The file is not a weights file we understand, or is damaged.
    #[error("`{}` is not a usable weights file: {reason}", path.display())]
    WeightsFormat {
        /// The file.
        path: PathBuf,
        /// What was found and what was expected.
        reason: String,
    },

    /// The pickle inside a PyTorch checkpoint could not be interpreted.
    #[error(
        "PyTorch checkpoint `{}`: pickle error at byte {offset} of {part}: {reason}",
        path.display()
    )]
    Pickle {
        /// The file.
        path: PathBuf,
        /// Which pickle (e.g. "archive/data.pkl" or "legacy main pickle").
        part: String,
        /// Byte offset of the failing opcode within that pickle.
        offset: usize,
        /// What went wrong.
        reason: String,
    },

    /// A checkpoint holds no state dict where we looked.
    #[error(
        "`{}` holds no state_dict: {reason}; top-level keys: [{}]. Expected a bare state_dict or one under `model_state_dict`, `state_dict` or `model`",
        path.display(), keys.join(", ")
    )]
    NoStateDict {
        /// The file.
        path: PathBuf,
        /// Keys of the top-level dict (empty if it was not a dict).
        keys: Vec<String>,
        /// Details.
        reason: String,
    },

    /// A tensor operation failed (shape or dtype problem inside candle).
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

fn format_mismatch(
    source_desc: &str,
    arch: &str,
    missing: &[String],
    unexpected: &[String],
    mis_shaped: &[ShapeMismatch],
) -> String {
    let mut parts = vec![format!(
        "weights from {source_desc} do not fit network `{arch}`"
    )];
    if !missing.is_empty() {
        parts.push(format!(
            "missing {} tensor(s): [{}]",
            missing.len(),
            missing.join(", ")
        ));
    }
    if !unexpected.is_empty() {
        parts.push(format!(
            "unexpected {} tensor(s): [{}]",
            unexpected.len(),
            unexpected.join(", ")
        ));
    }
    if !mis_shaped.is_empty() {
        let list: Vec<String> = mis_shaped
            .iter()
            .map(|m| format!("{} (network {:?}, file {:?})", m.name, m.expected, m.found))
            .collect();
        parts.push(format!(
            "{} tensor(s) with the wrong shape: [{}]",
            mis_shaped.len(),
            list.join(", ")
        ));
    }
    parts.push("check that --arch and the number of classes match the weights".to_string());
    parts.join("; ")
}
