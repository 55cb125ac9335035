#![cfg_attr(feature = "candle", doc = include_str!("../../../docs/losses.md"))]
#![cfg_attr(
    not(feature = "candle"),
    doc = "The distillation objectives' settings (`ObjectiveConfig`, one struct per objective); the objectives themselves need the `candle` feature."
)]
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod config;
pub mod error;
#[cfg(feature = "candle")]
pub mod functional;
#[cfg(feature = "candle")]
pub mod loss;
#[cfg(feature = "candle")]
pub mod objective;
pub mod objectives;
pub mod target;

pub use config::{DistilFn, DistillationConfig, DistillationMode, HumanTarget, KlReduction};
pub use error::{LossError, Result};
#[cfg(feature = "candle")]
pub use functional::check_human_distributions;
#[cfg(feature = "candle")]
pub use loss::{DistillationLoss, LossParts, LossValues};
#[cfg(feature = "candle")]
pub use objective::{Needs, Objective, ObjectiveInputs, ObjectiveOutput, OutputValues, Part};
pub use objectives::settings::*;
pub use objectives::{ObjectiveConfig, ObjectiveSettings};
#[cfg(feature = "candle")]
pub use target::{Distill, SoftTerm};
pub use target::{InertSetting, TargetMix};
