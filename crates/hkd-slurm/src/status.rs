//! Where each task of a grid stands, from the queue, the task runner's state files and the
//! run directories.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use hkd_rundir::{RunDir, RunStatus};
use serde::Serialize;

use crate::config::BinaryName;
use crate::manifest::{ExecutorKind, GridDir, Manifest};
use crate::plan::train_target;

/// The state of one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusKind {
    /// Never submitted (a dry run).
    NotSubmitted,
    Pending,
    Running,
    Done,
    /// Failed, timed out, cancelled or checkpointed without requeue: `resubmit --failed`
    /// runs it again (and hkd-train resumes it).
    Failed,
    /// Submitted, but the queue cannot be asked (Slurm down).
    Unknown,
}

impl fmt::Display for StatusKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StatusKind::NotSubmitted => "not submitted",
            StatusKind::Pending => "pending",
            StatusKind::Running => "running",
            StatusKind::Done => "done",
            StatusKind::Failed => "failed",
            StatusKind::Unknown => "unknown",
        })
    }
}

/// One task's status line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskStatus {
    pub index: usize,
    pub kind: StatusKind,
    /// Why (exit code, scheduler state, run progress).
    pub detail: String,
    /// Slurm job id of the task's latest submission (`123`, `123_4`).
    pub job: Option<String>,
    pub run_dir: Option<PathBuf>,
}

/// What the scheduler says, gathered once for a whole grid.
#[derive(Debug, Clone, Default)]
pub struct SchedulerView {
    /// `squeue` states by job id; `None` if squeue did not answer.
    pub queue: Option<HashMap<String, String>>,
    /// `sacct` states by job id; `None` without accounting.
    pub accounting: Option<HashMap<String, String>>,
}

impl SchedulerView {
    /// Asks the executor of every real submission of `manifest` about its jobs (Slurm:
    /// `squeue` and `sacct`; nothing for local grids).
    pub fn query(manifest: &Manifest) -> SchedulerView {
        let mut kinds: Vec<ExecutorKind> = manifest
            .submissions
            .iter()
            .filter(|s| !s.dry_run)
            .map(|s| s.executor)
            .collect();
        kinds.sort_by_key(|k| k.to_string());
        kinds.dedup();
        let mut view = SchedulerView::default();
        for kind in kinds {
            let seen = crate::executor::executor_of(kind, "status").observe(manifest);
            view.merge(seen);
        }
        view
    }

    /// Adds what another executor says.
    fn merge(&mut self, other: SchedulerView) {
        fn join(into: &mut Option<HashMap<String, String>>, from: Option<HashMap<String, String>>) {
            match (into.as_mut(), from) {
                (Some(a), Some(b)) => a.extend(b),
                (None, Some(b)) => *into = Some(b),
                _ => {}
            }
        }
        join(&mut self.queue, other.queue);
        join(&mut self.accounting, other.accounting);
    }
}

/// The Slurm id of task `index` in its latest submission, and whether that was a real
/// Slurm submission.
fn slurm_id(manifest: &Manifest, index: usize) -> Option<String> {
    let (submission, job) = manifest.latest_job_of(index)?;
    if submission.dry_run || submission.executor != ExecutorKind::Slurm {
        return None;
    }
    let id = job.job_id.as_ref()?;
    Some(match job.array_offset {
        Some(offset) => format!("{id}_{}", index - offset),
        None => id.clone(),
    })
}

/// Whether timestamp `a` is before `b` (RFC 3339, as [`crate::manifest::now`] writes them).
fn earlier(a: &str, b: &str) -> bool {
    match (a.parse::<jiff::Timestamp>(), b.parse::<jiff::Timestamp>()) {
        (Ok(a), Ok(b)) => a < b,
        _ => false,
    }
}

/// The status of every task of the grid.
pub fn grid_status(dir: &GridDir, manifest: &Manifest, view: &SchedulerView) -> Vec<TaskStatus> {
    manifest
        .tasks
        .iter()
        .map(|task| {
            let index = task.index;
            let state = dir.read_state(index).ok().flatten();
            let job = slurm_id(manifest, index);
            let submitted = manifest.latest_job_of(index).is_some_and(|(s, _)| !s.dry_run);
            // where the run stands for the task's inputs now (a run finished from another
            // dataset content or teacher weights is not done)
            let target = (manifest.binary.name == BinaryName::Train)
                .then(|| train_target(task, &manifest.workdir).ok())
                .flatten();
            let run_dir = state
                .as_ref()
                .and_then(|s| s.run_dir.clone())
                .or_else(|| target.as_ref().map(|t| t.run.path().to_path_buf()));
            let run_status = match (&target, &run_dir) {
                (Some(t), Some(p)) if t.run.path() == p => Some(t.status.clone()),
                (_, Some(p)) => Some(RunDir::new(p).status()),
                _ => None,
            };
            let mk = |kind, detail: String| TaskStatus {
                index,
                kind,
                detail,
                job: job.clone(),
                run_dir: run_dir.clone(),
            };
            // the task's own last attempt decides first: a run finished by someone else
            // does not make a failed task done; but a checkpointed attempt (exit 75) that a
            // later one (another grid, a resubmission) finished is done
            let failed_exit = state
                .as_ref()
                .and_then(|s| s.ended.as_ref().and(s.exit_code))
                .filter(|&c| c != 0 && c != hkd_rundir::EXIT_CHECKPOINTED);
            if run_status == Some(RunStatus::Finished) && failed_exit.is_none() {
                return mk(StatusKind::Done, "run finished".into());
            }
            let in_queue = job
                .as_ref()
                .is_some_and(|id| view.queue.as_ref().is_some_and(|q| q.contains_key(id)));
            if let Some(RunStatus::FinishedForOtherInputs { changes }) = &run_status
                && !in_queue
            {
                return mk(
                    StatusKind::Failed,
                    format!(
                        "finished from other inputs ({}): it is not this task's result; train it again with overwrite = true in the grid, or give the grid another out",
                        changes.join("; ")
                    ),
                );
            }
            let progress = match run_status {
                Some(RunStatus::InProgress {
                    epochs_completed,
                    epochs,
                }) => {
                    // the last finished epoch's validation accuracy, when there is one
                    let last_acc = run_dir
                        .as_ref()
                        .and_then(|p| RunDir::new(p).read_metrics().ok())
                        .and_then(|m| m.last().map(|e| e.val_acc))
                        .map(|acc| format!(", last val acc {acc:.4}"))
                        .unwrap_or_default();
                    format!(", run at epoch {epochs_completed}/{epochs}{last_acc}")
                }
                _ => String::new(),
            };
            // a local grid that is running now: its started tasks run, the others wait
            let live_local = manifest.latest_job_of(index).filter(|(s, _)| {
                s.executor == ExecutorKind::Local
                    && s.local_process
                        .as_deref()
                        .and_then(hkd_rundir::parse_holder)
                        .is_some_and(|(pid, host)| {
                            host == hkd_rundir::host_name() && hkd_rundir::process_alive(pid)
                        })
            });
            if job.is_none()
                && let Some((submission, _)) = live_local
            {
                match &state {
                    // an attempt of an earlier submission: this one has not started it yet
                    Some(s) if earlier(&s.started, &submission.created) => {
                        return mk(StatusKind::Pending, format!("queued in the local grid{progress}"));
                    }
                    Some(s) if s.ended.is_none() => {
                        let trainer_alive = run_dir
                            .as_ref()
                            .and_then(|p| RunDir::new(p).lock_holder_alive())
                            .unwrap_or(true);
                        if trainer_alive {
                            return mk(StatusKind::Running, format!("running locally{progress}"));
                        }
                    }
                    None => return mk(StatusKind::Pending, format!("queued in the local grid{progress}")),
                    _ => {}
                }
            }
            if let Some(id) = &job
                && let Some(queue) = &view.queue
                && let Some(q) = queue.get(id)
            {
                let kind = match q.as_str() {
                    "PENDING" | "CONFIGURING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" => {
                        StatusKind::Pending
                    }
                    _ => StatusKind::Running,
                };
                return mk(kind, format!("{q}{progress}"));
            }
            let accounting = job
                .as_ref()
                .and_then(|id| view.accounting.as_ref().and_then(|a| a.get(id)).cloned());
            match state {
                Some(s) => match (s.exit_code, &s.ended) {
                    (Some(0), Some(_)) => mk(
                        StatusKind::Done,
                        if s.action == "skip" {
                            "run already finished (skipped)".into()
                        } else {
                            "exit 0".into()
                        },
                    ),
                    (Some(code), Some(_)) if code == hkd_rundir::EXIT_CHECKPOINTED => mk(
                        StatusKind::Failed,
                        format!(
                            "checkpointed (exit {code}){progress}{}: run the grid again, or hkd-grid resubmit DIR --failed, to resume",
                            s.signal.as_ref().map(|sig| format!(" on SIG{sig}")).unwrap_or_default()
                        ),
                    ),
                    (Some(code), Some(_)) => mk(StatusKind::Failed, format!("exit {code}{progress}")),
                    _ => {
                        if job.is_some() && view.queue.is_none() {
                            mk(StatusKind::Unknown, format!("started {}; squeue does not answer", s.started))
                        } else {
                            mk(
                                StatusKind::Failed,
                                format!(
                                    "killed while running (time limit, scancel or node failure){}{progress}",
                                    accounting.map(|a| format!(": {a}")).unwrap_or_default()
                                ),
                            )
                        }
                    }
                },
                None if !submitted => mk(
                    StatusKind::NotSubmitted,
                    if manifest.submissions.is_empty() || manifest.submissions.iter().any(|s| !s.dry_run) {
                        "not submitted (a submission stopped before it): hkd-grid resubmit DIR --unsubmitted".into()
                    } else {
                        "dry run".into()
                    },
                ),
                None if job.is_some() && view.queue.is_none() => {
                    mk(StatusKind::Unknown, "submitted; squeue does not answer".into())
                }
                None => match manifest
                    .latest_job_of(index)
                    .and_then(|(s, _)| s.interrupted_by.as_ref())
                {
                    Some(sig) => mk(
                        StatusKind::Failed,
                        format!(
                            "not started: the grid was interrupted by SIG{sig}; run it again, or hkd-grid resubmit DIR --failed"
                        ),
                    ),
                    None => mk(
                        StatusKind::Failed,
                        format!(
                            "never started (cancelled, or a dependency failed){}",
                            accounting.map(|a| format!(": {a}")).unwrap_or_default()
                        ),
                    ),
                },
            }
        })
        .collect()
}

/// Counts per kind, in a fixed order, for a summary line.
pub fn summary(statuses: &[TaskStatus]) -> String {
    let kinds = [
        StatusKind::Done,
        StatusKind::Running,
        StatusKind::Pending,
        StatusKind::Failed,
        StatusKind::NotSubmitted,
        StatusKind::Unknown,
    ];
    let parts: Vec<String> = kinds
        .iter()
        .filter_map(|k| {
            let n = statuses.iter().filter(|s| s.kind == *k).count();
            (n > 0).then(|| format!("{n} {k}"))
        })
        .collect();
    format!("{} tasks: {}", statuses.len(), parts.join(", "))
}
