//! `report.html`: one self-contained file (nothing it loads lies outside it) with the
//! configurations, the paired deltas as a forest plot, every figure inline and each run's
//! provenance.

use crate::common::*;
use hkd_analysis::*;

/// The `<tr>` rows of the body of the table with `id`.
fn body_rows(html: &str, id: &str) -> usize {
    let start = html
        .find(&format!("<table id=\"{id}\""))
        .unwrap_or_else(|| panic!("no table {id}"));
    let table = &html[start..start + html[start..].find("</table>").unwrap()];
    let body = &table[table.find("<tbody>").unwrap()..];
    body.matches("<tr>").count()
}

#[test]
fn report_html_holds_the_tables_the_forest_plot_and_every_figure_inline() {
    let dir = tempfile::tempdir().unwrap();
    write_grid(dir.path());
    let opts = AnalyzeOptions {
        paired_against: Some("teacher=human,distil_fn=KL,lambda=0.5".into()),
        ..AnalyzeOptions::new(dir.path())
    };
    let report = analyze(&opts).unwrap();
    let path = report
        .html
        .clone()
        .expect("report.html is written by default");
    assert_eq!(path, report.out_dir.join("report.html"));
    let html = std::fs::read_to_string(&path).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));

    // nothing is fetched: no external scripts, styles, fonts or images
    for needle in ["src=", "<link", "@import", "url(", "href=\"http", "<iframe"] {
        assert!(!html.contains(needle), "report.html contains `{needle}`");
    }
    // every figure's SVG is inline, plus one forest plot per compared metric
    let forests = html.matches("<figure class=\"forest\">").count();
    assert!(forests >= 2, "a forest plot per metric: {forests}");
    assert_eq!(
        html.matches("<svg").count(),
        report.figures.len() + forests,
        "each figure inline once"
    );
    for f in &report.figures {
        assert!(
            html.contains(&html_escape(&f.caption)),
            "caption {}",
            f.caption
        );
    }
    // a row per configuration and per run, and the provenance columns
    assert_eq!(body_rows(&html, "configurations-table"), report.groups);
    assert_eq!(body_rows(&html, "runs-table"), report.runs);
    for column in [
        "run_dir",
        "hkd_version",
        "data_manifest_hash",
        "train_seconds",
    ] {
        assert!(html.contains(&format!(">{column}</th>")), "column {column}");
    }
    // the forest plot of val_acc has every compared configuration with its interval
    let paired = report.paired.as_ref().unwrap();
    let with_interval = paired
        .1
        .iter()
        .filter(|d| d.metric == "val_acc" && d.ci95.is_some())
        .count();
    let val_acc = &html[html.find("<figcaption>val_acc").unwrap()..];
    let val_acc = &val_acc[..val_acc.find("</figure>").unwrap()];
    assert_eq!(
        val_acc.matches("<line").count(),
        1 + with_interval,
        "zero line + intervals"
    );
    // the sort and filter script is there, and the tables can use it
    assert!(html.contains("class=\"sortable\"") && html.contains("addEventListener('click'"));

    // --no-html
    let opts = AnalyzeOptions {
        html: false,
        figures: false,
        out: Some(dir.path().join("tables-only")),
        ..AnalyzeOptions::new(dir.path())
    };
    let report = analyze(&opts).unwrap();
    assert_eq!(report.html, None);
    assert!(!dir.path().join("tables-only/report.html").exists());
}
