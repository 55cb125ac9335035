//! The task runner: runs one task of a grid, records it, and handles checkpoint signals.
//!
//! Slurm jobs call it as `hkd-grid exec [--requeue-on-checkpoint] <grid dir> <index>`; the
//! local executor calls [`run_task`] directly. It
//! 1. plans the task ([`crate::plan::plan_task`]): skip a finished run, add `--resume` to
//!    a checkpointed one;
//! 2. writes `state/task-<i>.json` (started), appends the binary's stdout and stderr to
//!    `logs/task-<i>.log`, starts the binary in the grid's work directory, no shell;
//! 3. under Slurm, forwards SIGUSR1, SIGTERM and SIGINT to the binary (hkd-train then
//!    checkpoints and exits with [`hkd_rundir::EXIT_CHECKPOINTED`] = 75);
//! 4. if the binary exited 75 after a SIGUSR1 (the time-limit warning) and
//!    `--requeue-on-checkpoint` was given, runs `scontrol requeue $SLURM_JOB_ID`, so the
//!    task comes back and resumes;
//! 5. writes the end time and exit code into the state file and exits with the binary's
//!    exit code.

use std::fs::OpenOptions;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Instant;

use crate::error::{GridError, Result};
use crate::manifest::{GridDir, Manifest, TaskState, now};
use crate::plan::{TaskAction, plan_task};
use crate::quote::join;

/// How [`run_task`] behaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Forward SIGUSR1/SIGTERM/SIGINT received by this process to the binary (Slurm).
    pub forward_signals: bool,
    /// Requeue the Slurm job when the binary checkpointed after SIGUSR1 (exit 75).
    pub requeue_on_checkpoint: bool,
}

/// What happened to one task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskOutcome {
    pub index: usize,
    pub action: TaskAction,
    /// The binary's exit code (0 for a skipped task; 128+N if killed by signal N; 127 if
    /// it could not be started).
    pub exit_code: i32,
    pub seconds: f64,
    /// A signal received and forwarded.
    pub signal: Option<String>,
    pub requeued: bool,
}

fn slurm_job_id() -> Option<String> {
    match (
        std::env::var("SLURM_ARRAY_JOB_ID"),
        std::env::var("SLURM_ARRAY_TASK_ID"),
    ) {
        (Ok(a), Ok(t)) if !a.is_empty() && !t.is_empty() => Some(format!("{a}_{t}")),
        _ => std::env::var("SLURM_JOB_ID").ok().filter(|s| !s.is_empty()),
    }
}

fn host_name() -> Option<String> {
    std::env::var("SLURMD_NODENAME").ok().or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|s| s.trim().to_string())
    })
}

/// `USR1`, `TERM`, `INT`, `HUP` or `signal N`.
pub(crate) fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGUSR1 => "USR1".into(),
        libc::SIGTERM => "TERM".into(),
        libc::SIGINT => "INT".into(),
        libc::SIGHUP => "HUP".into(),
        other => format!("signal {other}"),
    }
}

/// Runs task `index` of the grid in `dir` (see the module docs).
pub fn run_task(
    dir: &GridDir,
    manifest: &Manifest,
    index: usize,
    options: RunOptions,
) -> Result<TaskOutcome> {
    run_task_under(dir, manifest, index, options, None)
}

/// [`run_task`] under the local executor's control: the child runs in its own process
/// group (a terminal's Ctrl-C reaches it once, through hkd-grid), is registered with
/// `control` so that a stop forwards the signal to it, and is not started at all when
/// the grid is already stopping.
pub fn run_task_under(
    dir: &GridDir,
    manifest: &Manifest,
    index: usize,
    options: RunOptions,
    control: Option<&crate::local::LocalControl>,
) -> Result<TaskOutcome> {
    let task = manifest.tasks.get(index).ok_or_else(|| {
        GridError::grid_dir(
            dir.path(),
            format!(
                "task {index} does not exist: the grid has {} tasks (0..{})",
                manifest.tasks.len(),
                manifest.tasks.len()
            ),
        )
    })?;
    let plan = plan_task(&manifest.binary, task, &manifest.workdir);
    let started_at = Instant::now();
    let mut state = TaskState {
        index,
        job_id: slurm_job_id(),
        host: host_name(),
        action: plan.action.as_str().into(),
        run_dir: plan.run_dir.as_ref().map(|r| r.path().to_path_buf()),
        argv: plan.argv.clone(),
        started: now(),
        ended: None,
        exit_code: None,
        signal: None,
        requeued: false,
    };
    dir.write_state(&state)?;

    let log_path = dir.log_path(index);
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| GridError::io("open", &log_path, e))?;
    let _ = writeln!(
        log,
        "== hkd-grid {} task {index} ({}){}: {}",
        state.started,
        plan.action.as_str(),
        state
            .job_id
            .as_ref()
            .map(|j| format!(" job {j}"))
            .unwrap_or_default(),
        join(&plan.argv)
    );
    if let Some(why) = &plan.unknown_because {
        let _ = writeln!(
            log,
            "== run directory unknown ({why}): running the task as written"
        );
    }

    if plan.action == TaskAction::Skip {
        let _ = writeln!(log, "== the run is already finished: skipped");
        state.ended = Some(now());
        state.exit_code = Some(0);
        dir.write_state(&state)?;
        return Ok(TaskOutcome {
            index,
            action: plan.action,
            exit_code: 0,
            seconds: started_at.elapsed().as_secs_f64(),
            signal: None,
            requeued: false,
        });
    }

    // Signals: registered before the child exists so none is lost in between.
    let child_pid = Arc::new(AtomicI32::new(0));
    let pending = Arc::new(AtomicI32::new(0));
    let got_usr1 = Arc::new(AtomicBool::new(false));
    let last_signal = Arc::new(AtomicI32::new(0));
    let mut signal_thread = None;
    let mut signal_handle = None;
    if options.forward_signals {
        let mut signals =
            signal_hook::iterator::Signals::new([libc::SIGUSR1, libc::SIGTERM, libc::SIGINT])
                .map_err(|e| GridError::io("install signal handlers in", dir.path(), e))?;
        signal_handle = Some(signals.handle());
        let (pid, pend, usr1, last) = (
            child_pid.clone(),
            pending.clone(),
            got_usr1.clone(),
            last_signal.clone(),
        );
        signal_thread = Some(std::thread::spawn(move || {
            for sig in signals.forever() {
                if sig == libc::SIGUSR1 {
                    usr1.store(true, Ordering::SeqCst);
                }
                last.store(sig, Ordering::SeqCst);
                let p = pid.load(Ordering::SeqCst);
                if p > 0 {
                    // SAFETY: kill(2) with a pid we spawned and a valid signal number.
                    #[allow(unsafe_code)] // an OS call (docs/architecture.md, "unsafe")
                    unsafe {
                        libc::kill(p, sig);
                    }
                } else {
                    pend.store(sig, Ordering::SeqCst);
                }
            }
        }));
    }

    let stderr_log = log
        .try_clone()
        .map_err(|e| GridError::io("open", &log_path, e))?;
    let stdout_log = log
        .try_clone()
        .map_err(|e| GridError::io("open", &log_path, e))?;
    let mut command = Command::new(&plan.argv[0]);
    command
        .args(&plan.argv[1..])
        .current_dir(&manifest.workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout_log))
        .stderr(Stdio::from(stderr_log));
    if control.is_some() {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
        die_with_this_thread(&mut command);
    }
    let spawned = command.spawn();
    let exit_code = match spawned {
        Err(e) => {
            let _ = writeln!(log, "== cannot start {}: {e}", plan.argv[0]);
            127
        }
        Ok(mut child) => {
            let pid = child.id() as i32;
            child_pid.store(pid, Ordering::SeqCst);
            if let Some(c) = control {
                c.register(pid);
            }
            let early = pending.swap(0, Ordering::SeqCst);
            if early != 0 {
                // SAFETY: as above.
                #[allow(unsafe_code)] // an OS call (docs/architecture.md, "unsafe")
                unsafe {
                    libc::kill(pid, early);
                }
            }
            let waited = child.wait();
            if let Some(c) = control {
                c.unregister(pid);
                if let Some(sig) = c.signal() {
                    last_signal.store(sig, Ordering::SeqCst);
                }
            }
            match waited {
                Ok(status) => {
                    use std::os::unix::process::ExitStatusExt;
                    status
                        .code()
                        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
                }
                Err(e) => {
                    let _ = writeln!(log, "== cannot wait for {}: {e}", plan.argv[0]);
                    1
                }
            }
        }
    };
    if let Some(h) = signal_handle {
        h.close();
    }
    if let Some(t) = signal_thread {
        let _ = t.join();
    }
    let sig = last_signal.load(Ordering::SeqCst);
    state.signal = (sig != 0).then(|| signal_name(sig));

    let checkpointed = exit_code == hkd_rundir::EXIT_CHECKPOINTED;
    if checkpointed && options.requeue_on_checkpoint && got_usr1.load(Ordering::SeqCst) {
        match std::env::var("SLURM_JOB_ID") {
            Ok(job) if !job.is_empty() => {
                let out = Command::new("scontrol").args(["requeue", &job]).output();
                match out {
                    Ok(o) if o.status.success() => {
                        state.requeued = true;
                        let _ = writeln!(
                            log,
                            "== checkpointed before the time limit: requeued job {job}"
                        );
                    }
                    Ok(o) => {
                        let _ = writeln!(
                            log,
                            "== scontrol requeue {job} failed: {}",
                            String::from_utf8_lossy(&o.stderr).trim()
                        );
                    }
                    Err(e) => {
                        let _ = writeln!(log, "== cannot run scontrol requeue {job}: {e}");
                    }
                }
            }
            _ => {
                let _ = writeln!(
                    log,
                    "== checkpointed, but SLURM_JOB_ID is not set: not requeued"
                );
            }
        }
    }
    let seconds = started_at.elapsed().as_secs_f64();
    let _ = writeln!(
        log,
        "== exit {exit_code} after {seconds:.1} s{}",
        if checkpointed {
            " (checkpointed: resumes with --resume on the next run)"
        } else {
            ""
        }
    );
    state.ended = Some(now());
    state.exit_code = Some(exit_code);
    dir.write_state(&state)?;
    Ok(TaskOutcome {
        index,
        action: plan.action,
        exit_code,
        seconds,
        signal: state.signal.clone(),
        requeued: state.requeued,
    })
}

/// A local grid's task dies with it: the child gets SIGTERM (hkd-train checkpoints and
/// exits 75; rerunning the grid resumes it) when the thread that started it ends, which a
/// local worker does only after its task has exited, or the whole grid is killed
/// (`kill -9` included). A grid that died before the child could ask for this never starts
/// it.
#[cfg(target_os = "linux")]
fn die_with_this_thread(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: prctl(2) and getppid(2) are async-signal-safe and touch no memory of the
    // parent; the closure allocates only on the error path, after fork, as std allows.
    #[allow(unsafe_code)] // an OS call (docs/architecture.md, "unsafe")
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(std::io::Error::other(
                    "the grid exited before its task started",
                ));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_this_thread(_: &mut Command) {}
