//! The operations behind `hkd-grid`: prepare a grid directory, launch it (Slurm or
//! local), resubmit failed tasks.

use std::path::{Path, PathBuf};

use crate::binary::BinaryInfo;
use crate::config::{ExecutorChoice, GridConfig, absolute};
use crate::error::Result;
pub use crate::executor::{Executor, choose_executor};
use crate::grid::{check_tasks, expand};
use crate::local::LocalEvent;
use crate::manifest::{ExecutorKind, GridDir, Manifest, Submission, TASKS_TXT, now};
use crate::quote::push_quoted;
use crate::render::RenderedJob;
use crate::runner::TaskOutcome;
use crate::status::{SchedulerView, StatusKind, grid_status};

/// Slurm's default `MaxArraySize`, used when the cluster cannot be asked.
pub const DEFAULT_MAX_ARRAY_SIZE: usize = 1001;

/// `tasks.txt`: one shell-quoted command line per task.
pub fn tasks_txt(manifest: &Manifest) -> String {
    let exe = crate::quote::quote(&manifest.binary.path.to_string_lossy());
    let mut out = String::with_capacity(manifest.tasks.len() * (exe.len() + 160));
    for task in &manifest.tasks {
        out.push_str(&exe);
        for arg in &task.args {
            out.push(' ');
            push_quoted(&mut out, arg);
        }
        out.push('\n');
    }
    out
}

/// Expands the grid, checks every task ([`check_tasks`]) and writes `tasks.txt` and
/// `manifest.json` into `dir`.
pub fn prepare(
    config: GridConfig,
    config_path: &Path,
    binary: BinaryInfo,
    dir: &GridDir,
    workdir: &Path,
) -> Result<Manifest> {
    prepare_after(config, config_path, binary, dir, workdir, &[])
}

/// [`prepare`] for a pipeline stage after stages whose hkd-train tasks write `produced`
/// (where its teachers may be: [`crate::grid::check_tasks_after`]).
pub fn prepare_after(
    config: GridConfig,
    config_path: &Path,
    binary: BinaryInfo,
    dir: &GridDir,
    workdir: &Path,
    produced: &[std::path::PathBuf],
) -> Result<Manifest> {
    // checked by the caller, who printed the warnings (the pipeline, per stage)
    let tasks = expand(&config, &binary, config_path)?;
    crate::grid::check_tasks_after(&tasks, &binary, workdir, config_path, produced)?;
    write_prepared(config, config_path, binary, tasks, dir, workdir)
}

/// Expands the grid and checks every task, then (only if that succeeded) creates
/// `<grids_root>/<timestamp>-<name>/` and writes `tasks.txt` and `manifest.json` there.
pub fn create_and_prepare(
    config: GridConfig,
    config_path: &Path,
    binary: BinaryInfo,
    grids_root: &Path,
    workdir: &Path,
) -> Result<(GridDir, Manifest)> {
    let tasks = expand(&config, &binary, config_path)?;
    for warning in check_tasks(&tasks, &binary, workdir, config_path)? {
        tracing::warn!("{}: {warning}", config_path.display());
    }
    let dir = GridDir::create(grids_root, config.name())?;
    let manifest = write_prepared(config, config_path, binary, tasks, &dir, workdir)?;
    Ok((dir, manifest))
}

fn write_prepared(
    config: GridConfig,
    config_path: &Path,
    binary: BinaryInfo,
    tasks: Vec<crate::grid::Task>,
    dir: &GridDir,
    workdir: &Path,
) -> Result<Manifest> {
    let manifest = Manifest {
        hkd_version: env!("CARGO_PKG_VERSION").into(),
        name: config.name().to_string(),
        config_path: absolute(config_path),
        config_hash: config.hash(),
        config,
        created: now(),
        workdir: absolute(workdir),
        binary,
        tasks,
        submissions: Vec::new(),
    };
    dir.write_file(TASKS_TXT, tasks_txt(&manifest).as_bytes(), false)?;
    dir.write_manifest(&manifest)?;
    Ok(manifest)
}

/// How to launch.
#[derive(Clone)]
pub struct LaunchOptions<'a> {
    pub dry_run: bool,
    /// `--dependency` value (e.g. `afterok:12:13`).
    pub dependency: Option<String>,
    /// Local workers (default [`default_jobs`](crate::default_jobs)).
    pub jobs: Option<usize>,
    /// The `hkd-grid` executable that Slurm jobs call to run tasks.
    pub runner: PathBuf,
    pub on_local_event: &'a (dyn Fn(LocalEvent<'_>) + Sync),
}

/// What a launch did.
#[derive(Debug, Clone)]
pub struct LaunchReport {
    pub submission: Submission,
    /// Local executor: each task's outcome.
    pub outcomes: Vec<TaskOutcome>,
    /// Slurm: the rendered jobs (for printing in a dry run).
    pub rendered: Vec<RenderedJob>,
    /// Local: the signal that interrupted the grid (running tasks checkpointed, the rest
    /// were not started).
    pub interrupted_by: Option<String>,
}

impl LaunchReport {
    /// Slurm job ids submitted.
    pub fn job_ids(&self) -> Vec<String> {
        self.submission
            .jobs
            .iter()
            .filter_map(|j| j.job_id.clone())
            .collect()
    }

    /// Local tasks that did not exit 0.
    pub fn failed_local(&self) -> Vec<&TaskOutcome> {
        self.outcomes.iter().filter(|o| o.exit_code != 0).collect()
    }
}

/// The cluster's `MaxArraySize`: the config's, else `scontrol`'s, else Slurm's default.
pub fn cluster_max_array_size(config: &GridConfig) -> usize {
    config
        .slurm
        .max_array_size
        .or_else(crate::slurm::max_array_size)
        .unwrap_or(DEFAULT_MAX_ARRAY_SIZE)
}

/// Renders (and unless dry-run, submits or runs) `tasks` of the grid with `executor`, and
/// records the submission in the manifest, also when a submission fails half-way.
pub fn launch(
    dir: &GridDir,
    manifest: &mut Manifest,
    executor: &dyn Executor,
    tasks: &[usize],
    options: &LaunchOptions<'_>,
) -> Result<LaunchReport> {
    executor.launch(dir, manifest, tasks, options)
}

/// A new submission record of `manifest` by `kind` (not yet in the manifest).
pub(crate) fn new_submission(
    manifest: &Manifest,
    kind: ExecutorKind,
    options: &LaunchOptions<'_>,
) -> Submission {
    Submission {
        number: manifest.submissions.len(),
        created: now(),
        executor: kind,
        dependency: options.dependency.clone(),
        dry_run: options.dry_run,
        jobs: Vec::new(),
        interrupted_by: None,
        local_process: (kind == ExecutorKind::Local && !options.dry_run)
            .then(hkd_rundir::this_process),
    }
}

/// The tasks no real (not dry-run) submission includes: what a submission that stopped
/// half-way left out, for `resubmit --unsubmitted`.
pub fn unsubmitted_tasks(manifest: &Manifest) -> Vec<usize> {
    let submitted: std::collections::HashSet<usize> = manifest
        .submissions
        .iter()
        .filter(|s| !s.dry_run)
        .flat_map(|s| s.jobs.iter().flat_map(|j| j.tasks.iter().copied()))
        .collect();
    (0..manifest.tasks.len())
        .filter(|i| !submitted.contains(i))
        .collect()
}

/// The tasks `resubmit --failed` would run again.
pub fn failed_tasks(dir: &GridDir, manifest: &Manifest) -> Vec<usize> {
    let view = SchedulerView::query(manifest);
    grid_status(dir, manifest, &view)
        .into_iter()
        .filter(|s| s.kind == StatusKind::Failed)
        .map(|s| s.index)
        .collect()
}

/// The executor of a resubmission: the given one, else the last real submission's, else
/// the config's.
pub fn resubmit_executor(
    manifest: &Manifest,
    choice: Option<ExecutorChoice>,
    dry_run: bool,
) -> Result<Box<dyn Executor>> {
    if let Some(c) = choice {
        return choose_executor(c, dry_run);
    }
    match manifest.submissions.iter().rev().find(|s| !s.dry_run) {
        Some(s) => choose_executor(
            match s.executor {
                ExecutorKind::Slurm => ExecutorChoice::Slurm,
                ExecutorKind::Local => ExecutorChoice::Local,
            },
            dry_run,
        ),
        None => choose_executor(manifest.config.executor, dry_run),
    }
}
