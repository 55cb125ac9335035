//! What to do with a task right before it runs: skip it, start it, or resume it.
//!
//! hkd-train tasks run with `--resume` added (unless the grid sets `resume` or
//! `overwrite` itself). The contract hkd-grid relies on (docs/grid.md): `hkd-train
//! --resume` starts a run that does not exist yet, continues one that has `last.*`,
//! starts again one that never checkpointed, exits 0 at once for a finished run of the
//! same specification, and refuses a run directory holding another specification. So
//! rerunning or resubmitting any task is always safe and never loses work.
//!
//! To skip finished runs without starting a process, and to report progress, hkd-grid
//! works out each task's run directory in-process, with hkd-train's own definitions:
//! [`hkd_rundir::TrainCommand`] parses the task, [`hkd_rundir::resolve_teacher`] resolves
//! its teacher, [`hkd_rundir::RunSpec::run_name`] names it. A finished run is skipped
//! only when its stored specification is the task's and it finished for the task's
//! inputs: its recorded data files and teacher weights hashed again now
//! ([`hkd_rundir::RunDir::status_now`], the same comparison `hkd-train --resume` makes).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use hkd_rundir::{DigestCache, RunDir, RunStatus, TrainCommand};

use crate::binary::BinaryInfo;
use crate::config::BinaryName;
use crate::grid::Task;

/// What the task runner does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskAction {
    /// The run is already finished: nothing to do.
    Skip,
    /// No run directory yet: start.
    Fresh,
    /// A checkpoint exists: continue it.
    Resume,
    /// Started, never checkpointed: hkd-train starts it again.
    Restart,
    /// Run as written (not hkd-train, or the run directory is unknown).
    Run,
}

impl TaskAction {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskAction::Skip => "skip",
            TaskAction::Fresh => "fresh",
            TaskAction::Resume => "resume",
            TaskAction::Restart => "restart",
            TaskAction::Run => "run",
        }
    }
}

/// The decision for one task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskPlan {
    pub action: TaskAction,
    /// The run directory (hkd-train tasks whose directory could be worked out).
    pub run_dir: Option<RunDir>,
    /// Why the run directory is unknown, when it is.
    pub unknown_because: Option<String>,
    /// The full command: executable, then arguments (with `--resume` added for hkd-train).
    pub argv: Vec<String>,
}

/// Decides what to do with `task` now. Relative paths resolve against `workdir`.
pub fn plan_task(binary: &BinaryInfo, task: &Task, workdir: &Path) -> TaskPlan {
    let mut argv = Vec::with_capacity(task.args.len() + 2);
    argv.push(binary.path.to_string_lossy().into_owned());
    argv.extend(task.args.iter().cloned());
    if binary.name != BinaryName::Train {
        return TaskPlan {
            action: TaskAction::Run,
            run_dir: None,
            unknown_because: None,
            argv,
        };
    }
    let explicit = task.sets("overwrite") || task.sets("resume");
    let target = match train_target(task, workdir) {
        Ok(found) => found,
        Err(why) => {
            if !explicit {
                argv.push("--resume".into());
            }
            return TaskPlan {
                action: TaskAction::Run,
                run_dir: None,
                unknown_because: Some(why),
                argv,
            };
        }
    };
    let action = if task.sets("overwrite") {
        TaskAction::Run
    } else if target.status == RunStatus::Finished && target.same_spec {
        TaskAction::Skip
    } else if explicit
        || matches!(
            target.status,
            RunStatus::Finished | RunStatus::FinishedForOtherInputs { .. }
        )
    {
        // finished with another specification or from other inputs: hkd-train --resume
        // refuses it, naming the differing keys or both hashes (the task fails visibly
        // instead of being skipped)
        TaskAction::Run
    } else if target.status == RunStatus::NotStarted {
        TaskAction::Fresh
    } else if target.run.file(RunDir::LAST).is_file() {
        TaskAction::Resume
    } else {
        TaskAction::Restart
    };
    if !explicit && action != TaskAction::Skip {
        argv.push("--resume".into());
    }
    TaskPlan {
        action,
        run_dir: Some(target.run),
        unknown_because: None,
        argv,
    }
}

/// Where an hkd-train task's run stands, worked out in-process.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainTarget {
    /// The run directory the task writes.
    pub run: RunDir,
    /// Whether a run already there has the task's specification (true when none is).
    pub same_spec: bool,
    /// The run's status for the task's inputs ([`RunDir::status_now`]): a run finished
    /// from another dataset content or teacher weights is
    /// [`RunStatus::FinishedForOtherInputs`].
    pub status: RunStatus,
}

/// Digests of data and teacher files, kept for the life of the process (each entry only
/// while the file's size and modification time stay the same).
static DIGESTS: Mutex<Option<DigestCache>> = Mutex::new(None);

/// The run directory an hkd-train task writes, whether a run already there has the
/// task's specification, and where it stands for the task's inputs; or why the directory
/// cannot be known before the task runs (its teacher is not trained yet, or cannot be
/// resolved).
pub fn train_target(task: &Task, workdir: &Path) -> Result<TrainTarget, String> {
    let request = TrainCommand::parse_in(task.flag_args(), workdir).map_err(|e| e.to_string())?;
    let teacher = hkd_rundir::resolve_teacher(&request.spec.teacher).map_err(|e| e.to_string())?;
    let run = RunDir::in_output(
        &request.execution.out,
        teacher.spec.slug(),
        &request.spec.student,
        &request.spec.run_name(),
    );
    let same_spec = match run.read_config() {
        Ok(stored) => {
            stored.spec.identity_differences(&request.spec).is_empty()
                && stored.teacher.slug() == teacher.spec.slug()
        }
        Err(_) => !run.has_config(),
    };
    let status = {
        let mut digests = DIGESTS.lock().unwrap_or_else(PoisonError::into_inner);
        run.status_now(
            &request.spec.data.dir,
            teacher.weights.as_deref(),
            digests.get_or_insert_with(DigestCache::default),
        )
    };
    Ok(TrainTarget {
        run,
        same_spec,
        status,
    })
}

/// The run directory an hkd-train task writes and whether a run already there has the
/// task's specification: [`train_target`] without the status.
pub fn train_run_dir(task: &Task, workdir: &Path) -> Result<(RunDir, bool), String> {
    train_target(task, workdir).map(|t| (t.run, t.same_spec))
}

/// Resolved teachers by how a task names them, so that a grid of thousands of tasks
/// reads each teacher's config once.
#[derive(Debug, Default)]
pub struct TeacherCache {
    slugs: HashMap<String, Option<String>>,
}

impl TeacherCache {
    /// A key that two requests share exactly when they would train the same run: the
    /// output directory, the teacher (its slug when it resolves now, else as named) and
    /// the run name.
    pub fn identity_key(&mut self, request: &TrainCommand) -> String {
        let named = &request.spec.teacher;
        let slug = self
            .slugs
            .entry(format!("{}\u{0}{:?}", named.teacher, named.teacher_arch))
            .or_insert_with(|| {
                hkd_rundir::resolve_teacher(named)
                    .ok()
                    .map(|t| t.spec.slug().to_string())
            })
            .clone()
            .unwrap_or_else(|| format!("as named: {}", named.teacher));
        format!(
            "{}\u{0}{slug}\u{0}{}\u{0}{}",
            request.execution.out.display(),
            request.spec.student,
            request.spec.run_name()
        )
    }
}
