//! The run directory format: the one contract between hkd's trainer, evaluator, grid and
//! analysis.
//!
//! A run lives at `<out>/<teacher-slug>/<student>/<run-name>/` and holds:
//!
//! | file | written by | what |
//! |---|---|---|
//! | `config.toml` | trainer, at start | [`RunConfig`]: every resolved setting |
//! | `metrics.jsonl` | trainer, each epoch | one [`EpochMetrics`] per line |
//! | `best.safetensors`, `best.json` | trainer | weights and [`BestRecord`] at the best validation accuracy |
//! | `last.safetensors`, `last.optimizer.safetensors`, `last.json` | trainer, each epoch and on a signal | weights, momentum buffers, [`RunState`] |
//! | `eval.json` | evaluator | [`EvalReport`] |
//!
//! Every file is written atomically ([`write_atomic`]): a crash at any instant leaves the
//! previous good version. This crate has no tensor dependency so that the grid and the
//! analysis build fast on a login node.

mod config;
mod error;
mod eval;
mod files;
mod naming;

pub use config::{
    DataSettings, DistilFn, DistillationSettings, KlReduction, Mode, OptimizerSettings, RunConfig,
    SchedulerKind, TeacherSpec,
};
pub use error::RunDirError;
pub use eval::{AttackMetrics, EvalReport, HumanAgreement, SetMetrics};
pub use files::{
    BestRecord, EpochMetrics, GridBest, RunDir, RunState, RunStatus, best_run_under, find_run_dirs,
    write_atomic,
};
pub use naming::{py_float, run_name, teacher_slug};

/// Exit code of `hkd-train` when it stopped on SIGTERM or SIGUSR1 after writing `last.*`:
/// the run is incomplete but resumable. Grid tooling requeues such tasks
/// (`EX_TEMPFAIL` from `sysexits.h`).
pub const EXIT_CHECKPOINTED: i32 = 75;

/// The hkd version written into every run's config.
pub const HKD_VERSION: &str = env!("CARGO_PKG_VERSION");
