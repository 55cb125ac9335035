//! Evaluation manager of hkd: generalisation, human alignment, calibration and robustness
//! of trained runs.
//!
//! - [`find_targets`] turns paths into [`Target`]s (run directories found recursively, or
//!   bare checkpoints with their architecture).
//! - [`Evaluator::prepare`] loads every evaluation set once ([`SetSpec`]: `NAME=DIR[:split]`,
//!   by default each run's own validation split) and fails before any work when one is
//!   missing; [`Evaluator::evaluate_all`] evaluates each target, writes `<run>/eval.json`
//!   ([`hkd_rundir::EvalReport`]) and, with the sets `cifar10`, `cinic` and `imagenet_far`,
//!   the original `<run>_generalization.npy`. A run already evaluated with the same settings
//!   hash is skipped unless forced; a run that fails is reported and the others go on.
//! - [`metrics`]: accuracy, cross-entropy (also the original's sum of batch means), human
//!   cross-entropy / KL / majority agreement, ECE (15 bins) with its reliability bins, mean
//!   confidence, Brier score, and temperature scaling ([`metrics::fit_temperature`]).
//! - [`attack`]: FGSM and PGD in pixel space through the normalisation.
//! - [`predict_to_file`]: logits of a network for an `.npy` of images.
//!
//! Definitions and file formats: `docs/evaluation.md` in the repository.

#![forbid(unsafe_code)]

pub mod attack;
mod error;
mod forward;
mod manager;
pub mod metrics;
mod npy;
mod predict;
mod progress;
mod sets;
mod shard;

pub use attack::{AttackKind, AttackSettings, parse_attacks, parse_eps_list};
pub use error::{EvalError, Result};
pub use forward::{dataset_logits, load_network, parse_device, tensor_logits};
pub use manager::{
    CHECKPOINT_REPORT_SUFFIX, DEFAULT_BATCH_SIZE, EvalOptions, Evaluator, GENERALIZATION_SUFFIX,
    METRICS_VERSION, RunOutcome, RunResult, SettingsHashInput, SkipReason, Target, WeightsChoice,
    check_calibration_set, find_targets, generalization_array, settings_hash, sha256_file,
};
pub use npy::{ImageInput, read_images_npy, write_npy};
pub use predict::{Prediction, predict_to_file};
pub use progress::{NoProgress, Progress};
pub use sets::{
    DEFAULT_SET_NAME, GENERALIZATION_SETS, LoadedSet, SetSpec, check_unique_names, load_set,
    read_sets_file,
};
pub use shard::Shard;
