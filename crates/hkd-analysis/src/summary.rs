//! `summary.md`: what was analysed, the best configuration, the top rows, the figures.

use std::fmt::Write as _;
use std::path::Path;

use hkd_rundir::GridBest;

use crate::aggregate::{GroupSummary, Grouping};
use crate::figures::FigureFiles;
use crate::load::SkippedRun;
use crate::paired::PairedDelta;

/// The paired comparison for `summary.md`.
pub struct PairedInput<'a> {
    /// Index of the reference group.
    pub reference: usize,
    /// Every comparison (as in `paired_deltas.csv`).
    pub deltas: &'a [PairedDelta],
    /// The metrics shown in the summary's table (`crate::main_endpoints`).
    pub endpoints: Vec<String>,
}

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
    /// With `--paired-against`.
    pub paired: Option<PairedInput<'a>>,
}

fn pm(mean: Option<f64>, std: Option<f64>, digits: usize) -> String {
    match (mean, std) {
        (Some(m), Some(s)) => format!("{m:.digits$} ± {s:.digits$}"),
        (Some(m), None) => format!("{m:.digits$}"),
        _ => "–".to_string(),
    }
}

/// A 95 % interval as `[low, high]`, or `–` where there is none (one run).
fn interval(ci: Option<(f64, f64)>, digits: usize) -> String {
    ci.map_or("–".to_string(), |(lo, hi)| {
        format!("[{lo:.digits$}, {hi:.digits$}]")
    })
}

fn rel(out_dir: &Path, p: &Path) -> String {
    crate::load::relative_dir(out_dir, p)
}

/// A number with 4 decimals and an explicit sign.
fn signed(v: f64) -> String {
    format!("{v:+.4}")
}

fn paired_section(md: &mut String, s: &SummaryInput<'_>, p: &PairedInput<'_>) {
    let reference = &s.groups[p.reference];
    // configurations are named by the keys that vary among them
    let varying: Vec<&str> = s
        .grouping
        .keys
        .iter()
        .map(String::as_str)
        .filter(|k| {
            s.groups
                .iter()
                .map(|g| g.key(k).unwrap_or(""))
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                > 1
        })
        .collect();
    let _ = writeln!(
        md,
        "## Paired differences against {}\n",
        reference.label(&varying)
    );
    let _ = writeln!(
        md,
        "Δ = configuration − reference, paired by `iter` (repeat *i* of each configuration \
         against repeat *i* of the reference); the 95 % interval is Student's t over the pairs \
         (n − 1 degrees of freedom). Means are over the paired iters. Every metric is in \
         `paired_deltas.csv`; here the main endpoints. A note says when a configuration's \
         iters differ from the reference's.\n"
    );
    let _ = writeln!(
        md,
        "| configuration | metric | n | reference | configuration | Δ | 95 % CI | note |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    let opt = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.4}"));
    let shown: Vec<&PairedDelta> = p
        .deltas
        .iter()
        .filter(|d| p.endpoints.contains(&d.metric))
        .collect();
    for d in shown.iter().filter(|d| d.n_pairs() > 0) {
        let g = &s.groups[d.group];
        let ci = d.ci95.map_or("–".to_string(), |(lo, hi)| {
            format!("[{}, {}]", signed(lo), signed(hi))
        });
        let _ = writeln!(
            md,
            "| {} | `{}` | {} | {} | {} | {} | {} | {} |",
            g.label(&varying),
            d.metric,
            d.n_pairs(),
            opt(d.reference_mean),
            opt(d.config_mean),
            d.delta_mean.map_or("–".to_string(), signed),
            ci,
            d.note
        );
    }
    md.push('\n');
    // endpoints without a single pair, one line per configuration and reason
    let mut unpaired: Vec<(usize, &str, Vec<&str>)> = Vec::new();
    for d in shown.iter().filter(|d| d.n_pairs() == 0) {
        match unpaired
            .iter_mut()
            .find(|(g, note, _)| *g == d.group && *note == d.note)
        {
            Some(entry) => entry.2.push(&d.metric),
            None => unpaired.push((d.group, &d.note, vec![&d.metric])),
        }
    }
    if !unpaired.is_empty() {
        let _ = writeln!(md, "Without any pair (not in the table):\n");
        for (g, note, metrics) in unpaired {
            let _ = writeln!(
                md,
                "- {}: {} ({note})",
                s.groups[g].label(&varying),
                metrics
                    .iter()
                    .map(|m| format!("`{m}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        md.push('\n');
    }
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
         a configuration with one run has none. 95 % intervals are Student's t over the \
         repeats (mean ± t_{{0.975, n−1}} · sd / √n); none for one run.\n"
    );
    let _ = writeln!(
        md,
        "Validation accuracy is given twice: at each run's **best epoch** (its `best.json`, \
         the highest validation accuracy over its epochs) and at its **last epoch** (the \
         final line of `metrics.jsonl`). Where the validation set is the test set (the \
         CIFAR-100 KD benchmark), the best epoch is the number KD papers report \
         (RepDistiller's and mdistiller's \"best accuracy\"): it is selected on the test \
         set and therefore optimistic; the last epoch is the honest one.\n"
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
            "{cfg}: mean validation accuracy {:.4} ± {:.4} over {} run(s) at the best epoch{}; \
             best run `{}`.",
            b.mean_val_acc,
            b.std_val_acc,
            b.runs,
            s.groups
                .iter()
                .find(|g| Path::new(&g.best_run_dir) == b.run_dir)
                .and_then(|g| g.val_acc_last_mean.map(|m| (m, g.val_acc_last_std)))
                .map_or(String::new(), |(m, sd)| format!(
                    ", {} at the last epoch",
                    pm(Some(m), sd, 4)
                )),
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
    header.extend(
        [
            "runs",
            "val acc, best epoch",
            "95 % CI",
            "val acc, last epoch",
            "95 % CI",
            "val CE",
            "best iter",
        ]
        .map(String::from),
    );
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
        row.push(interval(g.val_acc_ci95, 4));
        row.push(pm(g.val_acc_last_mean, g.val_acc_last_std, 4));
        row.push(interval(g.val_acc_last_ci95, 4));
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

    if let Some(p) = &s.paired {
        paired_section(&mut md, s, p);
    }

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
