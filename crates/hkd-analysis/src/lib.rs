//! Result analysis for hkd grids: tables and figures with polars and plotters (no candle).
//!
//! [`analyze`] does what `hkd-analyze DIR` does: it finds every run directory under a grid
//! root ([`load_grid`]), builds the runs table ([`runs_table`], one row per finished run),
//! groups it over repeats ([`resolve_grouping`], [`average_results`]), writes
//! `runs.csv`, `average_results.csv` (and Parquet), the grid root's `best.json`
//! ([`grid_best`]), figures ([`draw_figures`]) and `summary.md`; with a reference
//! configuration ([`ReferenceSelector`]) also `paired_deltas.csv` ([`paired_deltas`]).
//!
//! The pieces are public so that a notebook-like Rust program can work on the frames
//! directly. Every column is described in `docs/analysis.md`.

#![forbid(unsafe_code)]

mod aggregate;
mod error;
mod figures;
mod load;
mod paired;
mod report;
mod summary;
mod table;

use std::path::{Path, PathBuf};

use hkd_rundir::{GridBest, RunDir};
use polars::prelude::*;

pub use aggregate::{
    EvalSummary, GroupSummary, Grouping, LEGACY_SET_SUFFIXES, average_results, grid_best,
    group_summaries, resolve_grouping, short_key,
};
pub use error::AnalysisError;
pub use figures::{FigureFiles, draw_figures, ensure_font, figure_legend};
pub use load::{LoadedGrid, RunRecord, SkippedRun, load_grid};
pub use paired::{
    PairedDelta, ReferenceSelector, main_endpoints, paired_deltas, paired_frame, paired_metrics,
    run_groups, select_reference, t_interval_95, t_quantile_975,
};
pub use report::{ReportInput, escape as html_escape, render_report};
pub use summary::{PairedInput, SummaryInput, render_summary};
pub use table::{
    AttackColumns, DEFAULT_GROUP_KEYS, DESCRIPTIVE_CONFIG_COLUMNS, EvalSetColumns, REPEAT_KEYS,
    RunsTable, any_value_string, attack_tag, eval_column, groupable_columns, other_hyperparameters,
    runs_table,
};

/// Result type of this crate.
pub type Result<T, E = AnalysisError> = std::result::Result<T, E>;

/// What to analyse and what to write.
#[derive(Debug, Clone)]
pub struct AnalyzeOptions {
    /// Grid root, searched recursively for run directories.
    pub root: PathBuf,
    /// Output directory; `None` means `<root>/analysis`.
    pub out: Option<PathBuf>,
    /// Grouping keys; `None` means the defaults (see [`resolve_grouping`]).
    pub group_by: Option<Vec<String>>,
    /// Also write `runs.parquet` and `average_results.parquet`.
    pub parquet: bool,
    /// Draw the figures (SVG and PNG).
    pub figures: bool,
    /// Write `report.html` (one self-contained file: tables, forest plot, figures).
    pub html: bool,
    /// Write `best.json` at the grid root.
    pub write_grid_best: bool,
    /// Rows of the top table in `summary.md`.
    pub summary_rows: usize,
    /// `--paired-against KEY=VALUE[,…]`: the reference configuration of
    /// `paired_deltas.csv` (see [`ReferenceSelector`]); `None` writes no paired table.
    pub paired_against: Option<String>,
}

impl AnalyzeOptions {
    /// The defaults of `hkd-analyze DIR`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            out: None,
            group_by: None,
            parquet: false,
            figures: true,
            html: true,
            write_grid_best: true,
            summary_rows: 10,
            paired_against: None,
        }
    }

    /// The output directory that will be used.
    pub fn out_dir(&self) -> PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| self.root.join("analysis"))
    }
}

/// Tables of a grid, in memory.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub table: RunsTable,
    pub grouping: Grouping,
    /// `average_results`: one row per group.
    pub averages: DataFrame,
    /// The rows of `averages`, typed.
    pub groups: Vec<GroupSummary>,
    /// The best group and its best run.
    pub best: Option<GridBest>,
    /// For each row of `table`, the index of its group in `groups`.
    pub run_groups: Vec<Option<usize>>,
}

/// Builds the tables of a loaded grid (no files are written).
pub fn analyze_loaded(grid: &LoadedGrid, group_by: Option<&[String]>) -> Result<Analysis> {
    if grid.runs.is_empty() {
        return Err(AnalysisError::NoRuns {
            root: grid.root.clone(),
            found: grid.found(),
            skipped: grid.skipped.len(),
        });
    }
    let table = runs_table(&grid.runs)?;
    let grouping = resolve_grouping(&table, group_by)?;
    let averages = average_results(&table, &grouping.keys)?;
    let groups = group_summaries(&averages, &grouping.keys, &table)?;
    let best = grid_best(&groups);
    let run_groups = run_groups(&table, &grouping.keys, &groups)?;
    Ok(Analysis {
        table,
        grouping,
        averages,
        groups,
        best,
        run_groups,
    })
}

/// Everything [`analyze`] wrote and noticed.
#[derive(Debug, Clone)]
pub struct AnalysisReport {
    pub out_dir: PathBuf,
    /// Tables written (`runs.csv`, `average_results.csv`, Parquet files).
    pub tables: Vec<PathBuf>,
    /// The grid root's `best.json`, when written, and its content.
    pub grid_best: Option<(PathBuf, GridBest)>,
    /// The group of the grid's best configuration (`Analysis::best`), with its best- and
    /// last-epoch accuracies; `None` without groups.
    pub best_group: Option<GroupSummary>,
    pub figures: Vec<FigureFiles>,
    pub summary: PathBuf,
    /// `report.html`, when written.
    pub html: Option<PathBuf>,
    pub runs: usize,
    pub groups: usize,
    pub grouping: Grouping,
    pub skipped: Vec<SkippedRun>,
    /// Non-fatal problems (unreadable eval reports, grouping notes, a skipped best.json).
    pub warnings: Vec<String>,
    /// With `paired_against`: the reference configuration (`key=value, …` of all its keys,
    /// full key names) and the
    /// comparisons written to `paired_deltas.csv`.
    pub paired: Option<(String, Vec<PairedDelta>)>,
}

fn csv_bytes(df: &DataFrame, path: &Path) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    CsvWriter::new(&mut buf)
        .include_header(true)
        .finish(&mut df.clone())
        .map_err(|e| AnalysisError::write(path, format!("CSV encoding failed: {e}")))?;
    Ok(buf)
}

fn parquet_bytes(df: &DataFrame, path: &Path) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    ParquetWriter::new(&mut buf)
        .finish(&mut df.clone())
        .map_err(|e| AnalysisError::write(path, format!("Parquet encoding failed: {e}")))?;
    Ok(buf)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    hkd_rundir::write_atomic(path, bytes).map_err(|e| AnalysisError::write(path, e))
}

/// Analyses a grid and writes every output (see the crate docs and `docs/analysis.md`).
pub fn analyze(opts: &AnalyzeOptions) -> Result<AnalysisReport> {
    // the command line first: a typo costs no reading
    let selector: Option<ReferenceSelector> =
        opts.paired_against.as_deref().map(str::parse).transpose()?;
    let grid = load_grid(&opts.root)?;
    let analysis = analyze_loaded(&grid, opts.group_by.as_deref())?;
    // ... and the reference before anything is written
    let paired = match &selector {
        None => None,
        Some(sel) => {
            let keys = &analysis.grouping.keys;
            let reference = select_reference(&analysis.groups, keys, sel)?;
            let deltas = paired_deltas(
                &analysis.table,
                &analysis.run_groups,
                analysis.groups.len(),
                reference,
            )?;
            Some((reference, deltas))
        }
    };
    let out_dir = opts.out_dir();
    std::fs::create_dir_all(&out_dir).map_err(|e| AnalysisError::write(&out_dir, e))?;
    let mut warnings = grid.warnings.clone();

    let mut tables = Vec::new();
    for (name, df) in [
        ("runs", &analysis.table.frame),
        ("average_results", &analysis.averages),
    ] {
        let csv = out_dir.join(format!("{name}.csv"));
        write_file(&csv, &csv_bytes(df, &csv)?)?;
        tables.push(csv);
        if opts.parquet {
            let pq = out_dir.join(format!("{name}.parquet"));
            write_file(&pq, &parquet_bytes(df, &pq)?)?;
            tables.push(pq);
        }
    }

    if let Some((_, deltas)) = &paired {
        if analysis.groups.len() < 2 {
            warnings.push(
                "--paired-against: the grid has one configuration, so there is nothing to \
                 compare it with"
                    .to_string(),
            );
        }
        let df = paired_frame(deltas, &analysis.grouping.keys, &analysis.groups)?;
        let csv = out_dir.join("paired_deltas.csv");
        write_file(&csv, &csv_bytes(&df, &csv)?)?;
        tables.push(csv);
        if opts.parquet {
            let pq = out_dir.join("paired_deltas.parquet");
            write_file(&pq, &parquet_bytes(&df, &pq)?)?;
            tables.push(pq);
        }
    }

    let mut written_best = None;
    if let (true, Some(best)) = (opts.write_grid_best, &analysis.best) {
        if RunDir::new(&opts.root).has_config() {
            warnings.push(format!(
                "{} is itself a run directory: its best.json belongs to the trainer, so no grid \
                 best.json was written; analyse the directory above it",
                opts.root.display()
            ));
        } else {
            let path = opts.root.join(RunDir::BEST);
            let mut text =
                serde_json::to_string_pretty(best).map_err(|e| AnalysisError::write(&path, e))?;
            text.push('\n');
            write_file(&path, text.as_bytes())?;
            written_best = Some((path, best.clone()));
        }
    }

    let figures = if opts.figures {
        let fig_dir = out_dir.join("fig");
        let figures = draw_figures(
            &fig_dir,
            &analysis.groups,
            &analysis.grouping.keys,
            &analysis.table.eval_sets,
            &grid.runs,
            &analysis.run_groups,
        )?;
        // the full identity behind the short names of the figures
        let legend = figure_legend(
            &analysis.groups,
            &analysis.grouping.keys,
            &grid.runs,
            &analysis.run_groups,
        )?;
        let csv = fig_dir.join("legend.csv");
        write_file(&csv, &csv_bytes(&legend, &csv)?)?;
        tables.push(csv);
        figures
    } else {
        Vec::new()
    };

    let summary = out_dir.join("summary.md");
    let files: Vec<&Path> = tables.iter().map(PathBuf::as_path).collect();
    let md = render_summary(&SummaryInput {
        root: &opts.root,
        out_dir: &out_dir,
        runs: grid.runs.len(),
        skipped: &grid.skipped,
        warnings: &warnings,
        grouping: &analysis.grouping,
        groups: &analysis.groups,
        eval_sets: analysis
            .table
            .eval_sets
            .iter()
            .map(|s| s.set.clone())
            .collect(),
        best: written_best
            .as_ref()
            .map(|(_, b)| b)
            .or(analysis.best.as_ref()),
        best_json: written_best.as_ref().map(|(p, _)| p.as_path()),
        figures: &figures,
        files: &files,
        top: opts.summary_rows,
        paired: paired.as_ref().map(|(reference, deltas)| PairedInput {
            reference: *reference,
            deltas,
            endpoints: main_endpoints(&analysis.table),
        }),
    });
    write_file(&summary, md.as_bytes())?;
    let html = if opts.html {
        let path = out_dir.join("report.html");
        let reference = paired.as_ref().map(|(r, _)| {
            analysis.groups[*r]
                .keys
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        });
        let page = render_report(&ReportInput {
            root: &opts.root,
            runs_table: &analysis.table.frame,
            averages: &analysis.averages,
            groups: &analysis.groups,
            figures: &figures,
            skipped: &grid.skipped,
            warnings: &warnings,
            paired: match (&reference, &paired) {
                (Some(r), Some((_, deltas))) => Some((r.as_str(), deltas.as_slice())),
                _ => None,
            },
        });
        write_file(&path, page.as_bytes())?;
        Some(path)
    } else {
        None
    };
    let best_group = analysis.best.as_ref().and_then(|b| {
        analysis
            .groups
            .iter()
            .find(|g| Path::new(&g.best_run_dir) == b.run_dir)
            .cloned()
    });

    Ok(AnalysisReport {
        out_dir,
        tables,
        grid_best: written_best,
        best_group,
        figures,
        summary,
        html,
        runs: grid.runs.len(),
        groups: analysis.groups.len(),
        grouping: analysis.grouping,
        skipped: grid.skipped,
        warnings,
        paired: paired.map(|(reference, deltas)| {
            let g = &analysis.groups[reference];
            let keys: Vec<String> = g.keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
            (keys.join(", "), deltas)
        }),
    })
}
