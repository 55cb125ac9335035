//! Training manager of hkd: one resumable, exact training run of a teacher or a student.
//!
//! [`train`] takes a run's [`hkd_rundir::RunSpec`] and its [`hkd_rundir::Execution`] (the
//! flags of `hkd-train`, defined once in `hkd-rundir`), resolves the teacher
//! (`baseline`, `human`, a teacher run, a weights file or `best:<dir>`), trains with SGD
//! ([`Sgd`], PyTorch semantics) and a learning-rate [`Scheduler`], validates after every
//! epoch, and writes the run directory of `hkd-rundir` (`config.toml`, `metrics.jsonl`,
//! `best.*`, `last.*`). A [`StopFlag`] (set by SIGTERM / SIGUSR1 / SIGINT) makes it finish
//! the current batch, checkpoint and return [`Outcome::Stopped`]; a resumed run ends with
//! the same weights and metrics as an uninterrupted one on the CPU.
//!
//! The user-facing description, flags and run-directory behaviour are in
//! `docs/training.md`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod checkpoint;
pub mod error;
pub mod optim;
pub mod runtime;
pub mod schedule;
pub mod teacher;
pub mod trainer;

pub use checkpoint::{EpochSums, ExtraSettings, PartialEpoch, TrainerState};
pub use error::{Result, TrainError};
pub use optim::Sgd;
pub use runtime::StopFlag;
pub use schedule::{ScheduleSettings, Scheduler};
pub use teacher::{check_teacher_arch, load_teacher};
pub use trainer::{
    NoObserver, Observer, Outcome, Plan, RunInfo, epoch_line, evaluate, plan, run, train,
};

/// Exit status of `hkd-train` after a stop signal wrote `last.*` (resume with `--resume`).
pub use hkd_rundir::EXIT_CHECKPOINTED;
