//! `hkd-analyze`'s command line.

use std::path::PathBuf;

use clap::Parser;

/// Aggregate every run under DIR into runs.csv, average_results.csv, figures and
/// summary.md, and write DIR/best.json (the best configuration by mean validation
/// accuracy, for `hkd-train --teacher best:DIR`).
///
/// Unfinished or unreadable runs are listed as warnings and left out.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "hkd-analyze",
    version,
    about,
    long_about,
    args_override_self = true
)]
pub struct AnalyzeCli {
    /// Grid root, searched recursively for run directories (those with config.toml).
    pub dir: PathBuf,

    /// Output directory for tables, figures and summary.md [default: DIR/analysis].
    #[arg(long, short)]
    pub out: Option<PathBuf>,

    /// Group over repeats by these columns instead of the defaults (teacher, student,
    /// distil_fn, lambda, gamma, temperature_teacher, temperature_human, plus any other
    /// hyperparameter that varies). Comma-separated or repeated.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub group_by: Option<Vec<String>>,

    /// Also write runs.parquet and average_results.parquet.
    #[arg(long)]
    pub parquet: bool,

    /// Skip the figures (tables, best.json and summary.md only).
    #[arg(long)]
    pub no_figures: bool,

    /// Do not write report.html (the analysis in one self-contained file for a browser).
    #[arg(long)]
    pub no_html: bool,

    /// Do not write DIR/best.json.
    #[arg(long)]
    pub no_best: bool,

    /// Rows of the top-configurations table in summary.md.
    #[arg(long, default_value_t = 10)]
    pub top: usize,

    /// Compare every configuration with the one these grouping-key values select, paired
    /// by iter (repeat), with 95 % t-intervals over the pairs: writes paired_deltas.csv and
    /// a table in summary.md. E.g. teacher=baseline,label_smoothing=0.0.
    #[arg(long, value_name = "KEY=VALUE[,KEY=VALUE…]")]
    pub paired_against: Option<String>,

    /// List the columns --group-by accepts and exit.
    #[arg(long)]
    pub list_keys: bool,
}
