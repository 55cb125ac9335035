//! `hkd-analyze DIR`: tables, figures and the grid's best configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use hkd_analysis::{AnalyzeOptions, analyze, groupable_columns};
use tracing::{info, warn};

/// Aggregate every run under DIR into runs.csv, average_results.csv, figures and
/// summary.md, and write DIR/best.json (the best configuration by mean validation
/// accuracy, for `hkd-train --teacher best:DIR`).
///
/// Unfinished or unreadable runs are listed as warnings and left out.
#[derive(Debug, Parser)]
#[command(name = "hkd-analyze", version, about, long_about)]
struct Cli {
    /// Grid root, searched recursively for run directories (those with config.toml).
    dir: PathBuf,

    /// Output directory for tables, figures and summary.md [default: DIR/analysis].
    #[arg(long, short)]
    out: Option<PathBuf>,

    /// Group over repeats by these columns instead of the defaults (teacher, student,
    /// distil_fn, lambda, gamma, temperature_teacher, temperature_human, plus any other
    /// hyperparameter that varies). Comma-separated or repeated.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    group_by: Option<Vec<String>>,

    /// Also write runs.parquet and average_results.parquet.
    #[arg(long)]
    parquet: bool,

    /// Skip the figures (tables, best.json and summary.md only).
    #[arg(long)]
    no_figures: bool,

    /// Do not write DIR/best.json.
    #[arg(long)]
    no_best: bool,

    /// Rows of the top-configurations table in summary.md.
    #[arg(long, default_value_t = 10)]
    top: usize,

    /// List the columns --group-by accepts and exit.
    #[arg(long)]
    list_keys: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
    let cli = Cli::parse();
    if cli.list_keys {
        for k in groupable_columns() {
            println!("{k}");
        }
        return ExitCode::SUCCESS;
    }
    let opts = AnalyzeOptions {
        root: cli.dir,
        out: cli.out,
        group_by: cli.group_by,
        parquet: cli.parquet,
        figures: !cli.no_figures,
        write_grid_best: !cli.no_best,
        summary_rows: cli.top,
    };
    match analyze(&opts) {
        Ok(report) => {
            for s in &report.skipped {
                warn!("left out {}: {}", s.dir.display(), s.reason);
            }
            for w in report.warnings.iter().chain(&report.grouping.warnings) {
                warn!("{w}");
            }
            info!(
                "{} runs in {} groups (keys: {}); {} left out",
                report.runs,
                report.groups,
                report.grouping.keys.join(", "),
                report.skipped.len()
            );
            for t in &report.tables {
                info!("wrote {}", t.display());
            }
            if let Some((path, best)) = &report.grid_best {
                info!(
                    "wrote {}: best run {} (mean val acc {:.4} over {} runs)",
                    path.display(),
                    best.run_dir.display(),
                    best.mean_val_acc,
                    best.runs
                );
            }
            if !report.figures.is_empty() {
                info!(
                    "wrote {} figures (SVG + PNG) under {}",
                    report.figures.len(),
                    report.out_dir.join("fig").display()
                );
            }
            info!("wrote {}", report.summary.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hkd-analyze: error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::FAILURE
        }
    }
}
