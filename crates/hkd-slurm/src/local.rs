//! The local executor: the grid's tasks on this machine, `jobs` at a time.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::config::{GridConfig, GridPoint, Scalar};
use crate::error::Result;
use crate::manifest::{GridDir, Manifest};
use crate::runner::{RunOptions, TaskOutcome, run_task};

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
/// A failing task does not stop the others.
pub fn run_local(
    dir: &GridDir,
    manifest: &Manifest,
    tasks: &[usize],
    jobs: usize,
    on_event: &(dyn Fn(LocalEvent<'_>) + Sync),
) -> Result<Vec<TaskOutcome>> {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<TaskOutcome>> = Mutex::new(Vec::with_capacity(tasks.len()));
    let first_error: Mutex<Option<crate::error::GridError>> = Mutex::new(None);
    let total = tasks.len();
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1).min(total.max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(&index) = tasks.get(i) else { break };
                    on_event(LocalEvent::Started { index, total });
                    match run_task(dir, manifest, index, RunOptions::default()) {
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
                            let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
                            if slot.is_none() {
                                *slot = Some(e);
                            }
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let mut outcomes = results.into_inner().unwrap_or_else(|p| p.into_inner());
    outcomes.sort_by_key(|o| o.index);
    Ok(outcomes)
}
