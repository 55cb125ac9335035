//! What to do with a task right before it runs: skip it, start it, or resume it.
//!
//! hkd-train tasks run with `--resume` added (unless the grid sets `resume` or
//! `overwrite` itself). The contract hkd-grid relies on (docs/grid.md): `hkd-train
//! --resume` starts a run that does not exist yet, continues one that has `last.*`,
//! starts again one that never checkpointed, and exits 0 at once for a finished run. So
//! rerunning or resubmitting any task is always safe and never loses work.
//!
//! To skip finished runs without starting a process, and to report progress, hkd-grid
//! also works out the run directory from the task's flags (and the binary's defaults for
//! flags the grid leaves out), with [`hkd_rundir::run_name`] and the teacher's slug:
//!
//! | `--teacher`            | teacher level of the run directory                       |
//! |------------------------|----------------------------------------------------------|
//! | `baseline`, `human`    | `baseline`, `human`                                      |
//! | a run directory        | [`hkd_rundir::teacher_slug`] of its `config.toml`        |
//! | `best:<dir>`           | the slug of [`hkd_rundir::best_run_under`]`(<dir>)`      |
//! | a bare weights file    | unknown (hkd-train names it): the task just runs         |
//!
//! Where it is unknown (a weights-file teacher, a `--config` file, a teacher grid with no
//! finished run yet) the task runs with `--resume` and hkd-train decides.

use std::path::{Path, PathBuf};

use hkd_rundir::{DistilFn, RunDir, RunStatus};

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
    let run_dir = match train_run_dir(binary, task, workdir) {
        Ok(dir) => dir,
        Err(why) => {
            let explicit = task.sets("overwrite") || task.sets("resume");
            if !explicit && binary.flags.contains_key("resume") {
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
    let explicit = task.sets("overwrite") || task.sets("resume");
    let status = run_dir.status();
    let action = if task.sets("overwrite") {
        TaskAction::Run
    } else if status == RunStatus::Finished {
        TaskAction::Skip
    } else if explicit {
        TaskAction::Run
    } else if status == RunStatus::NotStarted {
        TaskAction::Fresh
    } else if run_dir.file(RunDir::LAST).is_file() {
        TaskAction::Resume
    } else {
        TaskAction::Restart
    };
    if !explicit && action != TaskAction::Skip && binary.flags.contains_key("resume") {
        argv.push("--resume".into());
    }
    TaskPlan {
        action,
        run_dir: Some(run_dir),
        unknown_because: None,
        argv,
    }
}

/// `path` against `workdir` unless absolute.
pub fn resolve(workdir: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        workdir.join(p)
    }
}

/// The run directory an hkd-train task writes, or why it cannot be known before it runs.
pub fn train_run_dir(binary: &BinaryInfo, task: &Task, workdir: &Path) -> Result<RunDir, String> {
    if task.sets("config") {
        return Err(
            "the task passes --config, whose file may set the fields that name the run".into(),
        );
    }
    let get = |flag: &str| -> Result<&str, String> {
        task.value(flag)
            .or_else(|| binary.default_of(flag))
            .ok_or_else(|| {
                format!("the grid sets no --{flag} and hkd-train shows no default for it")
            })
    };
    let float = |flag: &str| -> Result<f64, String> {
        let v = get(flag)?;
        v.parse::<f64>()
            .map_err(|_| format!("--{flag}={v} is not a number"))
    };
    let out = resolve(workdir, get("out")?);
    let student = get("student")?;
    let distil_fn = match get("distil-fn")?.to_ascii_uppercase().as_str() {
        "KL" | "KD" => DistilFn::KL,
        "CE" => DistilFn::CE,
        other => return Err(format!("--distil-fn={other} is neither KL nor CE")),
    };
    let temperature_human = float("temperature-human")?;
    let temperature_teacher = float("temperature-teacher")?;
    let lambda = float("lambda")?;
    let gamma = float("gamma")?;
    let iter_text = get("iter")?;
    let iter: u32 = iter_text
        .parse()
        .map_err(|_| format!("--iter={iter_text} is not a non-negative integer"))?;
    let teacher = get("teacher")?;
    let slug = teacher_level(teacher, workdir)?;
    let name = hkd_rundir::run_name(
        student,
        distil_fn,
        temperature_human,
        temperature_teacher,
        lambda,
        gamma,
        iter,
    );
    Ok(RunDir::in_output(&out, &slug, student, &name))
}

fn teacher_level(teacher: &str, workdir: &Path) -> Result<String, String> {
    match teacher {
        "baseline" | "human" => Ok(teacher.to_string()),
        _ => {
            let run = if let Some(dir) = teacher.strip_prefix("best:") {
                let root = resolve(workdir, dir);
                hkd_rundir::best_run_under(&root)
                    .map(|(run, _)| run)
                    .map_err(|e| format!("--teacher={teacher}: {e}"))?
            } else {
                let run = RunDir::new(resolve(workdir, teacher));
                if !run.has_config() {
                    return Err(format!(
                        "--teacher={teacher} is not a run directory with config.toml (a bare checkpoint is named by hkd-train)"
                    ));
                }
                run
            };
            let config = run
                .read_config()
                .map_err(|e| format!("--teacher={teacher}: {e}"))?;
            Ok(hkd_rundir::teacher_slug(&config))
        }
    }
}
