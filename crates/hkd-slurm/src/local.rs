//! The local executor: the grid's tasks on this machine, `jobs` at a time.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};

use crate::config::{GridConfig, GridPoint, Scalar};
use crate::error::{GridError, Result};
use crate::manifest::{GridDir, Manifest};
use crate::runner::{RunOptions, TaskOutcome, run_task_under};

/// Stops a local grid: set by SIGTERM, SIGINT or SIGHUP to hkd-grid, which forwards the
/// signal to every running task (hkd-train checkpoints and exits 75) and starts no new
/// one.
#[derive(Debug, Default)]
pub struct LocalControl {
    stop: AtomicBool,
    signal: AtomicI32,
    children: Mutex<HashSet<i32>>,
}

impl LocalControl {
    /// Records a running task's process; if the grid is already stopping, signals it.
    pub fn register(&self, pid: i32) {
        self.children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(pid);
        if let Some(sig) = self.signal() {
            // SAFETY: kill(2) on a child we spawned, with the signal we received.
            #[allow(unsafe_code)] // an OS call (docs/architecture.md, "unsafe")
            unsafe {
                libc::kill(pid, sig);
            }
        }
    }

    /// Forgets a task's process once it has exited.
    pub fn unregister(&self, pid: i32) {
        self.children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&pid);
    }

    /// Stops the grid on `sig`: forwards it to every running task.
    pub fn stop(&self, sig: i32) {
        self.signal.store(sig, Ordering::SeqCst);
        self.stop.store(true, Ordering::SeqCst);
        for &pid in self
            .children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            // SAFETY: as in `register`.
            #[allow(unsafe_code)] // an OS call (docs/architecture.md, "unsafe")
            unsafe {
                libc::kill(pid, sig);
            }
        }
    }

    /// The signal that stopped the grid, if one did.
    pub fn signal(&self) -> Option<i32> {
        self.stop
            .load(Ordering::SeqCst)
            .then(|| self.signal.load(Ordering::SeqCst))
    }
}

/// What a local run of tasks did.
#[derive(Debug, Clone, Default)]
pub struct LocalRun {
    /// Each started task's outcome, by task order.
    pub outcomes: Vec<TaskOutcome>,
    /// The signal that interrupted the grid (`TERM`, `INT`, `HUP`): running tasks got it
    /// (hkd-train checkpoints, exit 75); tasks not yet started were not started.
    pub interrupted_by: Option<String>,
}

/// Progress of the local executor.
#[derive(Debug, Clone)]
pub enum LocalEvent<'a> {
    Started {
        index: usize,
        total: usize,
    },
    Finished {
        outcome: &'a TaskOutcome,
        done: usize,
        total: usize,
    },
}

/// Default number of tasks at once: cores / `threads` when the grid sets a single
/// `threads` value, else 1 (a task without `--threads` uses every core by itself).
pub fn default_jobs(config: &GridConfig) -> usize {
    if let Some(jobs) = config.local.jobs {
        return jobs;
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    match config.grid.get("threads").map(|a| a.0.as_slice()) {
        Some([GridPoint::One(Scalar::Int(t))]) if *t > 0 => (cores / *t as usize).max(1),
        _ => 1,
    }
}

/// Runs `tasks` of the grid with `jobs` workers; returns their outcomes by task order.
/// A failing task does not stop the others; SIGTERM, SIGINT or SIGHUP stop the grid
/// ([`LocalControl`]): rerunning the grid resumes the interrupted runs.
pub fn run_local(
    dir: &GridDir,
    manifest: &Manifest,
    tasks: &[usize],
    jobs: usize,
    on_event: &(dyn Fn(LocalEvent<'_>) + Sync),
) -> Result<LocalRun> {
    let control = LocalControl::default();
    let mut signals =
        signal_hook::iterator::Signals::new([libc::SIGTERM, libc::SIGINT, libc::SIGHUP])
            .map_err(|e| GridError::io("install signal handlers for", dir.path(), e))?;
    let handle = signals.handle();
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<TaskOutcome>> = Mutex::new(Vec::with_capacity(tasks.len()));
    let first_error: Mutex<Option<GridError>> = Mutex::new(None);
    let total = tasks.len();
    std::thread::scope(|scope| {
        let control = &control;
        scope.spawn(move || {
            for sig in signals.forever() {
                control.stop(sig);
            }
        });
        let workers: Vec<_> = (0..jobs.max(1).min(total.max(1)))
            .map(|_| {
                scope.spawn(|| {
                    loop {
                        if control.signal().is_some() {
                            break;
                        }
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(&index) = tasks.get(i) else { break };
                        on_event(LocalEvent::Started { index, total });
                        match run_task_under(
                            dir,
                            manifest,
                            index,
                            RunOptions::default(),
                            Some(control),
                        ) {
                            Ok(outcome) => {
                                let d = done.fetch_add(1, Ordering::SeqCst) + 1;
                                on_event(LocalEvent::Finished {
                                    outcome: &outcome,
                                    done: d,
                                    total,
                                });
                                results
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .push(outcome);
                            }
                            Err(e) => {
                                let mut slot =
                                    first_error.lock().unwrap_or_else(|p| p.into_inner());
                                if slot.is_none() {
                                    *slot = Some(e);
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            let _ = w.join();
        }
        handle.close();
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let mut outcomes = results.into_inner().unwrap_or_else(|p| p.into_inner());
    outcomes.sort_by_key(|o| o.index);
    Ok(LocalRun {
        outcomes,
        interrupted_by: control.signal().map(crate::runner::signal_name),
    })
}
