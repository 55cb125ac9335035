//! `hkd-analyze DIR`: tables, figures and the grid's best configuration.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use hkd_analysis::{AnalyzeOptions, analyze, groupable_columns};
use hkd_rundir::cli::analyze::AnalyzeCli;
use tracing::{info, warn};

#[path = "../../shared/runtime.rs"]
mod runtime;

fn main() -> ExitCode {
    runtime::init_logging("info", false);
    let cli = match runtime::parse_cli::<AnalyzeCli>("hkd-analyze") {
        Ok(cli) => cli,
        Err(code) => return code,
    };
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
        html: !cli.no_html,
        write_grid_best: !cli.no_best,
        summary_rows: cli.top,
        paired_against: cli.paired_against,
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
            if let Some(g) = &report.best_group {
                // KD papers report the best epoch (selected on the test set when the
                // validation set is the test set); the last epoch is the honest number
                let ci = |c: Option<(f64, f64)>| {
                    c.map_or("no interval".to_string(), |(lo, hi)| {
                        format!("95 % CI [{lo:.4}, {hi:.4}]")
                    })
                };
                let last = g
                    .val_acc_last_mean
                    .map_or("–".to_string(), |m| format!("{m:.4}"));
                info!(
                    "best configuration: val acc {:.4} at the best epoch ({}), {last} at the last \
                     epoch ({}), over {} runs",
                    g.val_acc_mean,
                    ci(g.val_acc_ci95),
                    ci(g.val_acc_last_ci95),
                    g.runs
                );
            }
            if !report.figures.is_empty() {
                info!(
                    "wrote {} figures (SVG + PNG) under {}",
                    report.figures.len(),
                    report.out_dir.join("fig").display()
                );
            }
            if let Some((reference, _)) = &report.paired {
                info!("paired deltas against {reference}");
            }
            info!("wrote {}", report.summary.display());
            if let Some(html) = &report.html {
                info!(
                    "wrote {} (open it in a browser; it needs no network)",
                    html.display()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let code = if e.is_usage() {
                runtime::EXIT_USAGE
            } else {
                runtime::EXIT_FAILED
            };
            runtime::fail("hkd-analyze", &e, code)
        }
    }
}
