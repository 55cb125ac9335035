//! Grid expansion and Slurm job generation for hkd (no candle: builds fast, runs on login
//! nodes).
//!
//! A grid config (`configs/train.toml`) names a binary (`hkd-train`, `hkd-eval`,
//! `hkd-analyze`), a `[grid]` of its flags and how to run it (`[slurm]`, `[local]`). This
//! crate
//! - parses it, refusing unknown keys ([`GridConfig`]);
//! - expands the grid into tasks and checks every task with the binary's own command line
//!   (`hkd_rundir::cli`, in-process: unknown keys, wrong types and invalid values for the
//!   whole grid, and two tasks that are the same run) before anything is written
//!   ([`expand`], [`check_tasks`]);
//! - writes the grid directory `grids/<timestamp>-<name>/` with `tasks.txt` and
//!   `manifest.json` ([`GridDir`], [`Manifest`], [`prepare`]);
//! - renders sbatch jobs in `array`, `multiprog` or `wrap` mode and submits them, or runs
//!   the tasks locally with a worker pool ([`render_jobs`], [`launch`]);
//! - runs each task through a runner that skips finished runs, resumes checkpointed ones,
//!   forwards Slurm's checkpoint signal and requeues ([`run_task`]);
//! - reports per-task status and resubmits failed tasks ([`grid_status`],
//!   [`failed_tasks`]);
//! - chains grids into pipelines with `afterok` dependencies ([`Pipeline`],
//!   [`run_pipeline`]).
//!
//! Grid values never pass through a shell: tasks get them as argv elements from the
//! manifest; where a path or command is written into a script it is quoted
//! ([`quote`](quote::quote)). See `docs/grid.md`.

#![deny(unsafe_code)]

pub mod binary;
pub mod config;
mod error;
pub mod executor;
pub mod grid;
pub mod local;
pub mod manifest;
pub mod ops;
pub mod pipeline;
pub mod plan;
pub mod quote;
pub mod render;
pub mod runner;
pub mod slurm;
pub mod status;

pub use binary::{BinaryInfo, locate};
pub use config::{BinaryName, ExecutorChoice, GridConfig, JobMode, LocalSettings, SlurmSettings};
pub use error::{GridError, Result};
pub use executor::{Executor, LocalExecutor, SlurmExecutor, choose_executor, executor_of};
pub use grid::{Task, check_tasks, check_tasks_after, expand, train_outputs};
pub use local::{LocalControl, LocalEvent, LocalRun, default_jobs, run_local};
pub use manifest::{ExecutorKind, GridDir, JobRecord, Manifest, Submission, TaskState};
pub use ops::{
    LaunchOptions, LaunchReport, create_and_prepare, failed_tasks, launch, prepare, prepare_after,
    resubmit_executor, tasks_txt, unsubmitted_tasks,
};
pub use pipeline::{Pipeline, PipelineOptions, PipelineRecord, PipelineRun, run_pipeline};
pub use plan::{
    TaskAction, TaskPlan, TeacherCache, TrainTarget, plan_task, train_run_dir, train_target,
};
pub use render::{RenderContext, RenderedJob, render_jobs};
pub use runner::{RunOptions, TaskOutcome, run_task, run_task_under};
pub use status::{SchedulerView, StatusKind, TaskStatus, grid_status};
