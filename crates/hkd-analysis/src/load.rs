//! Reading every run directory of a grid.

use std::path::{Path, PathBuf};

use hkd_rundir::{
    BestRecord, EpochMetrics, EvalReport, RunConfig, RunDir, RunStatus, find_run_dirs,
};
use rayon::prelude::*;

use crate::error::{AnalysisError, Result};

/// One finished run, as the analysis sees it: everything it recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// The run directory.
    pub dir: RunDir,
    /// The run directory relative to the grid root, with `/` separators (`.` if the grid
    /// root is itself the run).
    pub rel_dir: String,
    pub config: RunConfig,
    /// `best.json`: the epoch of the best validation accuracy.
    pub best: BestRecord,
    /// `metrics.jsonl`, one entry per epoch (never empty).
    pub metrics: Vec<EpochMetrics>,
    /// `eval.json`, when the run was evaluated and the report is readable.
    pub eval: Option<EvalReport>,
}

impl RunRecord {
    /// The last recorded epoch (always present for runs from [`load_grid`]).
    pub fn last_epoch(&self) -> Option<&EpochMetrics> {
        self.metrics.last()
    }
}

/// A run directory left out of the analysis, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedRun {
    pub dir: PathBuf,
    pub reason: String,
}

/// All run directories under a grid root, read.
#[derive(Debug, Clone)]
pub struct LoadedGrid {
    pub root: PathBuf,
    /// Finished, readable runs, in path order.
    pub runs: Vec<RunRecord>,
    /// Unfinished or unreadable runs (left out), in path order.
    pub skipped: Vec<SkippedRun>,
    /// Problems that did not exclude a run (e.g. an unreadable `eval.json`: the run is kept
    /// without evaluation data).
    pub warnings: Vec<String>,
}

impl LoadedGrid {
    /// Run directories found (analysed + skipped).
    pub fn found(&self) -> usize {
        self.runs.len() + self.skipped.len()
    }
}

enum Outcome {
    Run(Box<RunRecord>, Option<String>),
    Skipped(SkippedRun),
}

/// Finds every run directory under `root` (recursively; see [`hkd_rundir::find_run_dirs`])
/// and reads it. A run is analysed when its `config.toml`, `last.json` (finished),
/// `best.json`, `metrics.jsonl` and the header of `best.safetensors` are all readable; otherwise it is listed in
/// [`LoadedGrid::skipped`] with the reason. Nothing here panics or fails on a half-written
/// run; only an unlistable `root` is an error.
pub fn load_grid(root: &Path) -> Result<LoadedGrid> {
    let dirs = find_run_dirs(root).map_err(|source| AnalysisError::Search {
        root: root.to_path_buf(),
        source,
    })?;
    let outcomes: Vec<Outcome> = dirs.par_iter().map(|d| load_run(root, d)).collect();
    let mut runs = Vec::new();
    let mut skipped = Vec::new();
    let mut warnings = Vec::new();
    for o in outcomes {
        match o {
            Outcome::Run(r, w) => {
                if let Some(w) = w {
                    warnings.push(w);
                }
                runs.push(*r);
            }
            Outcome::Skipped(s) => skipped.push(s),
        }
    }
    Ok(LoadedGrid {
        root: root.to_path_buf(),
        runs,
        skipped,
        warnings,
    })
}

fn load_run(root: &Path, dir: &RunDir) -> Outcome {
    let skip = |reason: String| {
        Outcome::Skipped(SkippedRun {
            dir: dir.path().to_path_buf(),
            reason,
        })
    };
    let config = match dir.read_config() {
        Ok(c) => c,
        Err(e) => return skip(format!("config unreadable: {e}")),
    };
    match dir.status() {
        // status() does not compare inputs: a finished run is analysed as what it was made from
        RunStatus::Finished | RunStatus::FinishedForOtherInputs { .. } => {}
        RunStatus::InProgress {
            epochs_completed,
            epochs,
        } => {
            let detail = match dir.read_state() {
                Ok(_) => format!("{epochs_completed} of {epochs} epochs done"),
                Err(e) if dir.file(RunDir::LAST).exists() => format!("last.json unreadable: {e}"),
                Err(_) => "no last.json yet".to_string(),
            };
            return skip(format!("unfinished ({detail})"));
        }
        RunStatus::NotStarted => return skip("no config.toml".to_string()),
    }
    let best = match dir.read_best() {
        Ok(b) => b,
        Err(e) => return skip(format!("best record unreadable: {e}")),
    };
    // best.json names weights that `--teacher best:` and hkd-eval will load
    // damaged weights make the run suspect; weights that were not kept (a results
    // archive, a cluster's quota) do not: its metrics and evaluation are its results
    if dir.file(RunDir::BEST_WEIGHTS).exists()
        && let Err(e) = dir.check_weights(RunDir::BEST_WEIGHTS)
    {
        return skip(format!("best weights unreadable: {e}"));
    }
    let metrics = match dir.read_metrics() {
        Ok(m) if m.is_empty() => {
            return skip(format!(
                "{} records no epoch although last.json says finished",
                dir.file(RunDir::METRICS).display()
            ));
        }
        Ok(m) => m,
        Err(e) => return skip(format!("metrics unreadable: {e}")),
    };
    let (eval, warning) = if dir.file(RunDir::EVAL).exists() {
        match dir.read_eval() {
            Ok(r) => (Some(r), None),
            Err(e) => (
                None,
                Some(format!(
                    "{}: kept without evaluation data: {e}; re-run `hkd-eval run --force` on it",
                    dir.path().display()
                )),
            ),
        }
    } else {
        (None, None)
    };
    Outcome::Run(
        Box::new(RunRecord {
            rel_dir: relative_dir(root, dir.path()),
            dir: dir.clone(),
            config,
            best,
            metrics,
            eval,
        }),
        warning,
    )
}

/// `path` relative to `root` with `/` separators; `.` for the root itself.
pub(crate) fn relative_dir(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}
