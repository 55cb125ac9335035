//! `summary.md`: what was analysed, the best configuration, the top rows, the figures.

use std::fmt::Write as _;
use std::path::Path;

use hkd_rundir::GridBest;

use crate::aggregate::{GroupSummary, Grouping};
use crate::figures::FigureFiles;
use crate::load::SkippedRun;

/// What the summary page reports.
pub struct SummaryInput<'a> {
    pub root: &'a Path,
    pub out_dir: &'a Path,
    pub runs: usize,
    pub skipped: &'a [SkippedRun],
    pub warnings: &'a [String],
    pub grouping: &'a Grouping,
    pub groups: &'a [GroupSummary],
    pub eval_sets: Vec<String>,
    pub best: Option<&'a GridBest>,
    pub best_json: Option<&'a Path>,
    pub figures: &'a [FigureFiles],
    pub files: &'a [&'a Path],
    /// Rows of the top table.
    pub top: usize,
}

fn pm(mean: Option<f64>, std: Option<f64>, digits: usize) -> String {
    match (mean, std) {
        (Some(m), Some(s)) => format!("{m:.digits$} ± {s:.digits$}"),
        (Some(m), None) => format!("{m:.digits$}"),
        _ => "–".to_string(),
    }
}

fn rel(out_dir: &Path, p: &Path) -> String {
    crate::load::relative_dir(out_dir, p)
}

/// Renders `summary.md`.
pub fn render_summary(s: &SummaryInput<'_>) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# hkd analysis of `{}`\n", s.root.display());
    let _ = writeln!(
        md,
        "{} finished runs analysed in {} configuration(s), grouped over repeats (`iter`) by {}.",
        s.runs,
        s.groups.len(),
        s.grouping
            .keys
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !s.grouping.added.is_empty() {
        let _ = writeln!(
            md,
            "Added to the default keys because they vary in this grid: {}.",
            s.grouping.added.join(", ")
        );
    }
    let _ = writeln!(
        md,
        "Standard deviations are sample standard deviations over repeats (ddof = 1, as pandas); \
         a configuration with one run has none.\n"
    );
    if !s.skipped.is_empty() {
        let _ = writeln!(
            md,
            "**{} run director{} left out** (unfinished or unreadable):\n",
            s.skipped.len(),
            if s.skipped.len() == 1 { "y" } else { "ies" }
        );
        for k in s.skipped.iter().take(50) {
            let _ = writeln!(md, "- `{}`: {}", rel(s.root, &k.dir), k.reason);
        }
        if s.skipped.len() > 50 {
            let _ = writeln!(md, "- … and {} more", s.skipped.len() - 50);
        }
        md.push('\n');
    }

    if let Some(b) = s.best {
        let _ = writeln!(md, "## Best configuration\n");
        let cfg = b
            .group
            .iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            md,
            "{cfg}: mean validation accuracy {:.4} ± {:.4} over {} run(s); best run `{}`.",
            b.mean_val_acc,
            b.std_val_acc,
            b.runs,
            b.run_dir.display()
        );
        if let Some(p) = s.best_json {
            let _ = writeln!(
                md,
                "Recorded in `{}` (used by `hkd-train --teacher best:<grid>`).",
                p.display()
            );
        }
        md.push('\n');
    }

    let _ = writeln!(
        md,
        "## Top {} configurations by mean validation accuracy\n",
        s.top.min(s.groups.len())
    );
    let mut order: Vec<&GroupSummary> = s.groups.iter().collect();
    order.sort_by(|a, b| {
        b.val_acc_mean
            .total_cmp(&a.val_acc_mean)
            .then(a.val_loss_mean.total_cmp(&b.val_loss_mean))
    });
    let mut header: Vec<String> = s.grouping.keys.clone();
    header.extend(["runs", "val acc", "val CE", "best iter"].map(String::from));
    for set in &s.eval_sets {
        header.push(format!("{set} acc"));
        header.push(format!("{set} CE"));
    }
    let _ = writeln!(md, "| {} |", header.join(" | "));
    let _ = writeln!(md, "|{}", "---|".repeat(header.len()));
    for g in order.iter().take(s.top) {
        let mut row: Vec<String> = g.keys.iter().map(|(_, v)| v.clone()).collect();
        row.push(g.runs.to_string());
        row.push(pm(Some(g.val_acc_mean), g.val_acc_std, 4));
        row.push(pm(Some(g.val_loss_mean), g.val_loss_std, 4));
        row.push(g.best_iter.to_string());
        for set in &s.eval_sets {
            let e = g.eval.get(set);
            row.push(pm(e.and_then(|e| e.acc_mean), e.and_then(|e| e.acc_std), 4));
            row.push(pm(e.and_then(|e| e.ce_mean), e.and_then(|e| e.ce_std), 4));
        }
        let _ = writeln!(md, "| {} |", row.join(" | "));
    }
    md.push('\n');

    if !s.figures.is_empty() {
        let _ = writeln!(md, "## Figures\n");
        let (curves, main): (Vec<&FigureFiles>, Vec<&FigureFiles>) = s
            .figures
            .iter()
            .partition(|f| f.png.parent().is_some_and(|p| p.ends_with("curves")));
        for f in main {
            let _ = writeln!(
                md,
                "![{}]({})\n\n{} ([SVG]({}))\n",
                f.caption,
                rel(s.out_dir, &f.png),
                f.caption,
                rel(s.out_dir, &f.svg)
            );
        }
        if !curves.is_empty() {
            let _ = writeln!(
                md,
                "### Training curves of the best run of each configuration\n"
            );
            for f in curves {
                let _ = writeln!(
                    md,
                    "- [{}]({}) ([SVG]({}))",
                    f.caption.trim_start_matches("training curves, "),
                    rel(s.out_dir, &f.png),
                    rel(s.out_dir, &f.svg)
                );
            }
            md.push('\n');
        }
    }

    let _ = writeln!(md, "## Files\n");
    for f in s.files {
        let _ = writeln!(md, "- [`{0}`]({0})", rel(s.out_dir, f));
    }
    let _ = writeln!(
        md,
        "\nColumns are described in the hkd documentation, `docs/analysis.md`."
    );
    let notes: Vec<&String> = s.warnings.iter().chain(&s.grouping.warnings).collect();
    if !notes.is_empty() {
        let _ = writeln!(md, "\n## Warnings\n");
        for w in notes {
            let _ = writeln!(md, "- {w}");
        }
    }
    md
}
