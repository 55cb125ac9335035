#![doc = include_str!("../../../docs/losses.md")]
#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod functional;
pub mod loss;

pub use config::{DistilFn, DistillationConfig, DistillationMode, KlReduction};
pub use error::{LossError, Result};
pub use functional::check_human_distributions;
pub use loss::{DistillationLoss, LossParts, LossValues};
