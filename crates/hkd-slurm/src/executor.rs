//! Where a grid's tasks run. An executor is one implementation of [`Executor`]: Slurm
//! ([`SlurmExecutor`]: job arrays, multiprog or wrap jobs, `afterok` dependencies) and
//! this machine ([`LocalExecutor`]: a worker pool, stages one after another). A new
//! executor (another scheduler, a cloud batch service) is a new implementation and one
//! arm in [`executor_of`].

use crate::config::{ExecutorChoice, absolute};
use crate::error::{GridError, Result};
use crate::local::{default_jobs, run_local};
use crate::manifest::{ExecutorKind, GridDir, JobRecord, Manifest};
use crate::ops::{LaunchOptions, LaunchReport, cluster_max_array_size, new_submission};
use crate::render::{RenderContext, render_jobs};
use crate::status::SchedulerView;

/// Where a grid's tasks run: how they are submitted, watched, cancelled and chained.
pub trait Executor: std::fmt::Debug {
    /// The kind recorded in the manifest (and used to find the executor again).
    fn kind(&self) -> ExecutorKind;

    /// Why this executor was chosen, for the user.
    fn reason(&self) -> &str;

    /// Submits or runs `tasks` of the grid in `dir` (renders what it needs there) and
    /// records the submission in `manifest`, also when it stops half-way.
    fn launch(
        &self,
        dir: &GridDir,
        manifest: &mut Manifest,
        tasks: &[usize],
        options: &LaunchOptions<'_>,
    ) -> Result<LaunchReport>;

    /// What the scheduler says of the grid's jobs, for `status` (empty where there is no
    /// scheduler to ask).
    fn observe(&self, manifest: &Manifest) -> SchedulerView;

    /// Cancels the grid's queued and running jobs; returns the job ids cancelled.
    fn cancel(&self, manifest: &Manifest) -> Result<Vec<String>>;

    /// How a later stage waits for the jobs `after` of earlier ones: a dependency the
    /// scheduler enforces, or `None` where stages simply run one after another.
    fn dependency(&self, after: &[String]) -> Option<String>;
}

/// The Slurm executor: `sbatch` jobs from the grid directory.
#[derive(Debug, Clone)]
pub struct SlurmExecutor {
    reason: String,
}

/// The local executor: the tasks on this machine, a few at a time.
#[derive(Debug, Clone)]
pub struct LocalExecutor {
    reason: String,
}

impl LocalExecutor {
    /// A local executor, with why it was chosen.
    pub fn new(reason: impl Into<String>) -> Self {
        LocalExecutor {
            reason: reason.into(),
        }
    }
}

impl SlurmExecutor {
    /// A Slurm executor, with why it was chosen.
    pub fn new(reason: impl Into<String>) -> Self {
        SlurmExecutor {
            reason: reason.into(),
        }
    }
}

impl Executor for LocalExecutor {
    fn kind(&self) -> ExecutorKind {
        ExecutorKind::Local
    }

    fn reason(&self) -> &str {
        &self.reason
    }

    fn launch(
        &self,
        dir: &GridDir,
        manifest: &mut Manifest,
        tasks: &[usize],
        options: &LaunchOptions<'_>,
    ) -> Result<LaunchReport> {
        let mut submission = new_submission(manifest, self.kind(), options);
        submission.jobs.push(JobRecord {
            job_id: None,
            script: None,
            sbatch_args: Vec::new(),
            tasks: tasks.to_vec(),
            array_offset: None,
        });
        manifest.submissions.push(submission.clone());
        dir.write_manifest(manifest)?;
        let run = if options.dry_run {
            crate::local::LocalRun::default()
        } else {
            let jobs = options
                .jobs
                .unwrap_or_else(|| default_jobs(&manifest.config));
            run_local(dir, manifest, tasks, jobs, options.on_local_event)?
        };
        if let Some(sig) = &run.interrupted_by {
            submission.interrupted_by = Some(sig.clone());
            if let Some(last) = manifest.submissions.last_mut() {
                last.interrupted_by = Some(sig.clone());
            }
            dir.write_manifest(manifest)?;
        }
        Ok(LaunchReport {
            submission,
            outcomes: run.outcomes,
            rendered: Vec::new(),
            interrupted_by: run.interrupted_by,
        })
    }

    fn observe(&self, _manifest: &Manifest) -> SchedulerView {
        SchedulerView::default()
    }

    fn cancel(&self, _manifest: &Manifest) -> Result<Vec<String>> {
        Err(GridError::Scheduler {
            command: "cancel".into(),
            script: None,
            message: "a local grid runs in the foreground of its hkd-grid: stop that with \
                      Ctrl-C or SIGTERM (its running tasks checkpoint and the same command \
                      resumes them)"
                .into(),
        })
    }

    fn dependency(&self, _after: &[String]) -> Option<String> {
        None
    }
}

impl Executor for SlurmExecutor {
    fn kind(&self) -> ExecutorKind {
        ExecutorKind::Slurm
    }

    fn reason(&self) -> &str {
        &self.reason
    }

    fn launch(
        &self,
        dir: &GridDir,
        manifest: &mut Manifest,
        tasks: &[usize],
        options: &LaunchOptions<'_>,
    ) -> Result<LaunchReport> {
        let mut submission = new_submission(manifest, self.kind(), options);
        let number = submission.number;
        let runner = absolute(&options.runner);
        let ctx = RenderContext {
            name: &manifest.name,
            slurm: &manifest.config.slurm,
            grid_dir: dir.path(),
            workdir: &manifest.workdir,
            runner: &runner,
            submission: number,
            max_array_size: cluster_max_array_size(&manifest.config),
        };
        let rendered = render_jobs(&ctx, tasks);
        let mut written = std::collections::HashSet::new();
        for job in &rendered {
            if let Some((name, contents)) = &job.script {
                dir.write_file(name, contents.as_bytes(), true)?;
            }
            for f in &job.extra_files {
                // task.sh is shared by every multiprog job
                if written.insert(f.name.as_str()) {
                    dir.write_file(&f.name, f.contents.as_bytes(), f.executable)?;
                }
            }
        }
        let mut result = Ok(());
        for job in &rendered {
            let mut record = JobRecord {
                job_id: None,
                script: job.script.as_ref().map(|(n, _)| n.clone()),
                sbatch_args: job.sbatch_args.clone(),
                tasks: job.tasks.clone(),
                array_offset: job.array_offset,
            };
            if !options.dry_run && result.is_ok() {
                let script = record.script.as_ref().map(|n| dir.file(n));
                match crate::slurm::submit(
                    dir.path(),
                    &job.sbatch_args,
                    options.dependency.as_deref(),
                    script.as_deref(),
                ) {
                    Ok(id) => record.job_id = Some(id),
                    Err(e) => result = Err(e),
                }
            }
            submission.jobs.push(record);
        }
        if result.is_err() {
            // keep only what the scheduler accepted
            submission.jobs.retain(|j| j.job_id.is_some());
        }
        if !submission.jobs.is_empty() || options.dry_run {
            manifest.submissions.push(submission.clone());
        }
        dir.write_manifest(manifest)?;
        if let Err(e) = result {
            let accepted: usize = submission.jobs.iter().map(|j| j.tasks.len()).sum();
            return Err(GridError::PartialSubmission {
                dir: dir.path().to_path_buf(),
                job_ids: submission
                    .jobs
                    .iter()
                    .filter_map(|j| j.job_id.clone())
                    .collect(),
                unsubmitted: tasks.len() - accepted,
                source: Box::new(e),
            });
        }
        Ok(LaunchReport {
            submission,
            outcomes: Vec::new(),
            rendered,
            interrupted_by: None,
        })
    }

    fn observe(&self, manifest: &Manifest) -> SchedulerView {
        SchedulerView {
            queue: crate::slurm::queue_states(),
            accounting: crate::slurm::accounting_states(&manifest.job_ids()),
        }
    }

    fn cancel(&self, manifest: &Manifest) -> Result<Vec<String>> {
        let ids: Vec<String> = manifest
            .submissions
            .iter()
            .filter(|s| s.executor == ExecutorKind::Slurm && !s.dry_run)
            .flat_map(|s| s.jobs.iter().filter_map(|j| j.job_id.clone()))
            .collect();
        if !ids.is_empty() {
            crate::slurm::cancel(&ids)?;
        }
        Ok(ids)
    }

    fn dependency(&self, after: &[String]) -> Option<String> {
        (!after.is_empty()).then(|| format!("afterok:{}", after.join(":")))
    }
}

/// The executor of `kind`, to watch, cancel or resubmit a grid submitted with it.
pub fn executor_of(kind: ExecutorKind, reason: impl Into<String>) -> Box<dyn Executor> {
    match kind {
        ExecutorKind::Slurm => Box::new(SlurmExecutor::new(reason)),
        ExecutorKind::Local => Box::new(LocalExecutor::new(reason)),
    }
}

/// Resolves `auto`: Slurm when `sbatch` is on `PATH`, else local. An explicit `slurm`
/// without `sbatch` is an error unless `dry_run`.
pub fn choose_executor(choice: ExecutorChoice, dry_run: bool) -> Result<Box<dyn Executor>> {
    let sbatch = crate::slurm::sbatch_path();
    let (kind, reason) = match (choice, sbatch) {
        (ExecutorChoice::Local, _) => (ExecutorKind::Local, "local (chosen)".to_string()),
        (ExecutorChoice::Slurm, Some(p)) => (
            ExecutorKind::Slurm,
            format!("slurm (chosen; sbatch at {})", p.display()),
        ),
        (ExecutorChoice::Slurm, None) if dry_run => (
            ExecutorKind::Slurm,
            "slurm (chosen; no sbatch on PATH, dry run only)".to_string(),
        ),
        (ExecutorChoice::Slurm, None) => {
            return Err(GridError::Scheduler {
                command: "sbatch".into(),
                script: None,
                message: "executor = \"slurm\" but sbatch is not on PATH: run on a login node, \
                          start the local cluster (scripts/local-slurm.sh), or use --executor local"
                    .into(),
            });
        }
        (ExecutorChoice::Auto, Some(p)) => (
            ExecutorKind::Slurm,
            format!("slurm (auto: sbatch found at {})", p.display()),
        ),
        (ExecutorChoice::Auto, None) => (
            ExecutorKind::Local,
            "local (auto: no sbatch on PATH)".to_string(),
        ),
    };
    Ok(executor_of(kind, reason))
}
