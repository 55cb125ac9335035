#![cfg_attr(feature = "candle", doc = include_str!("../../../docs/losses.md"))]
#![cfg_attr(
    not(feature = "candle"),
    doc = "The HKD objective's settings (`DistillationConfig`); the loss itself needs the `candle` feature."
)]
#![warn(missing_docs)]

pub mod config;
pub mod error;
#[cfg(feature = "candle")]
pub mod functional;
#[cfg(feature = "candle")]
pub mod loss;

pub use config::{DistilFn, DistillationConfig, DistillationMode, HumanTarget, KlReduction};
pub use error::{LossError, Result};
#[cfg(feature = "candle")]
pub use functional::check_human_distributions;
#[cfg(feature = "candle")]
pub use loss::{DistillationLoss, LossParts, LossValues};
