//! The run directory format: the one contract between hkd's trainer, evaluator, grid and
//! analysis.
//!
//! A run lives at `<out>/<teacher-slug>/<student>/<run-name>/` and holds:
//!
//! | file | written by | what |
//! |---|---|---|
//! | `config.toml` | trainer, at start | [`RunConfig`]: the run's [`RunSpec`] and what was resolved |
//! | `.lock` | trainer, while it trains | [`RunLock`]: one process per run |
//! | `metrics.jsonl` | trainer, each epoch | one [`EpochMetrics`] per line |
//! | `best.safetensors`, `best.json` | trainer | weights and [`BestRecord`] at the best validation accuracy |
//! | `last.safetensors`, `last.optimizer.safetensors`, `last.json` | trainer, each epoch and on a signal | weights, momentum buffers, [`RunState`] |
//! | `eval.json` | evaluator | [`EvalReport`] |
//!
//! Every file is written atomically ([`write_atomic`]): a crash at any instant leaves the
//! previous good version. This crate has no tensor dependency so that the grid and the
//! analysis build fast on a login node.
//!
//! It also holds the one definition of a training run, [`RunSpec`] (with its identity and
//! name), the one teacher resolver ([`resolve_teacher`]) and `hkd-train`'s command line
//! ([`TrainCommand`]), which `hkd-grid` parses in-process.

#![forbid(unsafe_code)]

pub mod cli;
mod config;
mod error;
mod eval;
mod files;
mod lock;
mod naming;
mod provenance;
pub mod spec;
mod teacher;

pub use cli::{CommandError, Execution, TrainCommand};
pub use config::{
    LegacyData, LegacyDistillation, LegacyOptimizer, LegacyRunConfig, RunConfig, TeacherSpec,
};
pub use error::RunDirError;
pub use eval::{
    AttackMetrics, EvalReport, HumanAgreement, ReliabilityBin, ScaledHuman, ScaledMetrics,
    SetMetrics, TemperatureFit,
};
pub use files::{
    BestRecord, EpochMetrics, GridBest, LossPartValues, RunDir, RunState, RunStatus,
    best_run_under, find_run_dirs, sha256_file, write_atomic,
};
pub use hkd_losses::{
    DistilFn, DistillationConfig, DistillationMode as Mode, HumanTarget, InertSetting, KlReduction,
    ObjectiveConfig,
};
pub use lock::{RunLock, host_name, parse_holder, process_alive, this_process};
pub use naming::py_float;
pub use provenance::{DigestCache, FileDigest, MISSING, Provenance};
pub use spec::{
    DataSpec, InvalidSetting, OptimizerSpec, RunSpec, ScheduleSpec, SchedulerKind, TeacherChoice,
    TrainingSpec,
};
pub use teacher::{ResolvedTeacher, absolute, resolve_teacher};

/// Exit code of `hkd-train` when it stopped on SIGTERM or SIGUSR1 after writing `last.*`:
/// the run is incomplete but resumable. Grid tooling requeues such tasks
/// (`EX_TEMPFAIL` from `sysexits.h`).
pub const EXIT_CHECKPOINTED: i32 = 75;

/// The hkd version written into every run's config.
pub const HKD_VERSION: &str = env!("CARGO_PKG_VERSION");
