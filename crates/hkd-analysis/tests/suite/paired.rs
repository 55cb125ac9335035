//! Calibration columns and paired comparisons (`--paired-against`) on a study-like grid
//! with known numbers (exact in binary, so that most checks are equalities).

use std::path::Path;

use crate::common::*;
use hkd_analysis::*;

/// t_{0.975, 3}: the interval's factor for four pairs.
const T3: f64 = 3.182446305;

fn tables_only(root: &Path, against: Option<&str>) -> AnalyzeOptions {
    AnalyzeOptions {
        figures: false,
        paired_against: against.map(str::to_string),
        ..AnalyzeOptions::new(root)
    }
}

fn delta_row<'a>(csv: &'a Csv, teacher: &str, ls: &str, metric: &str) -> &'a Vec<String> {
    csv.row(&[
        ("teacher", teacher),
        ("label_smoothing", ls),
        ("metric", metric),
    ])
}

#[test]
fn calibration_columns_in_runs_and_averages() {
    let dir = tempfile::tempdir().unwrap();
    write_study(dir.path());
    let report = analyze(&tables_only(dir.path(), None)).unwrap();
    assert_eq!((report.runs, report.groups), (12, 3));
    assert!(report.paired.is_none());
    assert!(!report.out_dir.join("paired_deltas.csv").exists());

    let runs = Csv::read(&report.out_dir.join("runs.csv"));
    for c in [
        "eval_temperature_set",
        "eval_temperature",
        "eval_cinic_confidence",
        "eval_cinic_gap",
        "eval_cinic_ts_ce",
        "eval_cinic_ts_ece",
        "eval_cinic_ts_brier",
        "eval_cinic_ts_confidence",
        "eval_cinic_ts_gap",
        "eval_test2k_ts_human_ce",
        "eval_test2k_ts_human_kl",
    ] {
        assert!(runs.has(c), "runs.csv lacks {c}");
    }
    assert!(
        !runs.has("eval_cinic_ts_human_ce"),
        "cinic has no human labels"
    );
    let hard = runs.row(&[
        ("teacher", "baseline"),
        ("label_smoothing", "0.0"),
        ("iter", "1"),
    ]);
    assert_eq!(runs.s(hard, "eval_temperature_set"), "val");
    assert_eq!(runs.f(hard, "eval_temperature"), 1.5);
    assert_eq!(runs.f(hard, "eval_cinic_confidence"), 0.75);
    assert_eq!(
        runs.f(hard, "eval_cinic_gap"),
        0.25,
        "confidence − accuracy"
    );
    assert_eq!(runs.f(hard, "eval_cinic_ts_gap"), 0.125);
    let ls = runs.row(&[("label_smoothing", "0.21"), ("iter", "5")]);
    assert_eq!(runs.s(ls, "eval_temperature"), "", "not evaluated: empty");

    let avg = Csv::read(&report.out_dir.join("average_results.csv"));
    let r = avg.row(&[("teacher", "human")]);
    assert_eq!(avg.f(r, "eval_temperature_mean"), 1.0);
    assert_eq!(avg.f(r, "eval_cinic_gap_mean"), 0.0);
    assert_eq!(avg.f(r, "eval_test2k_ts_human_ce_mean"), 1.5);
    assert_eq!(avg.f(r, "eval_cinic_ts_ce_mean"), 1.0);
}

#[test]
fn old_reports_give_no_calibration_columns() {
    let dir = tempfile::tempdir().unwrap();
    write_grid(dir.path());
    let report = analyze(&tables_only(dir.path(), None)).unwrap();
    let runs = Csv::read(&report.out_dir.join("runs.csv"));
    for c in [
        "eval_temperature",
        "eval_cinic_confidence",
        "eval_cinic_gap",
        "eval_cinic_ts_ce",
    ] {
        assert!(!runs.has(c), "runs.csv has {c} without the data");
    }
}

#[test]
fn paired_deltas_against_the_hard_label_arm() {
    let dir = tempfile::tempdir().unwrap();
    write_study(dir.path());
    // `0` selects the group whose label smoothing is written 0.0
    let report = analyze(&tables_only(
        dir.path(),
        Some("teacher=baseline,label_smoothing=0"),
    ))
    .unwrap();
    let (reference, deltas) = report.paired.as_ref().unwrap();
    assert!(reference.contains("teacher=baseline") && reference.contains("label_smoothing=0.0"));
    let csv = Csv::read(&report.out_dir.join("paired_deltas.csv"));
    assert!(
        report
            .tables
            .contains(&report.out_dir.join("paired_deltas.csv"))
    );
    let keys = &report.grouping.keys;
    assert_eq!(csv.header[..keys.len()], keys[..]);
    assert_eq!(
        csv.header[keys.len()..],
        [
            "metric",
            "n_pairs",
            "iters",
            "reference_mean",
            "config_mean",
            "delta_mean",
            "delta_sd",
            "ci95_low",
            "ci95_high",
            "note"
        ]
    );
    let metrics = [
        "val_acc",
        "val_loss",
        "eval_cinic_acc",
        "eval_cinic_ce",
        "eval_cinic_ece",
        "eval_cinic_gap",
        "eval_cinic_ts_ce",
        "eval_cinic_ts_ece",
        "eval_cinic_ts_gap",
        "eval_test2k_acc",
        "eval_test2k_ce",
        "eval_test2k_ece",
        "eval_test2k_gap",
        "eval_test2k_human_ce",
        "eval_test2k_human_kl",
        "eval_test2k_ts_ce",
        "eval_test2k_ts_ece",
        "eval_test2k_ts_gap",
        "eval_test2k_ts_human_ce",
        "eval_test2k_ts_human_kl",
    ];
    // two configurations against the reference, every metric, none against itself
    assert_eq!(csv.rows.len(), 2 * metrics.len());
    assert_eq!(deltas.len(), csv.rows.len());
    let human_rows: Vec<&str> = csv
        .rows
        .iter()
        .filter(|r| csv.s(r, "teacher") == "human")
        .map(|r| csv.s(r, "metric"))
        .collect();
    assert_eq!(human_rows, metrics);

    // best validation accuracy: deltas 0.25, 0.5, 0.5, 0.25
    let r = delta_row(&csv, "human", "0.0", "val_acc");
    assert_eq!(csv.f(r, "n_pairs"), 4.0);
    assert_eq!(csv.s(r, "iters"), "0 1 2 3");
    assert_eq!(csv.f(r, "reference_mean"), 0.5);
    assert_eq!(csv.f(r, "config_mean"), 0.875);
    assert_eq!(csv.f(r, "delta_mean"), 0.375);
    let sd = (4.0 * 0.125f64.powi(2) / 3.0).sqrt();
    assert!((csv.f(r, "delta_sd") - sd).abs() < 1e-15);
    let h = T3 * sd / 2.0;
    assert!((csv.f(r, "ci95_low") - (0.375 - h)).abs() < 1e-12);
    assert!((csv.f(r, "ci95_high") - (0.375 + h)).abs() < 1e-12);
    assert_eq!(csv.s(r, "note"), "");

    // cinic CE: deltas −0.5, −1.0, −0.5, −0.5: mean −0.625, sd 0.25
    let r = delta_row(&csv, "human", "0.0", "eval_cinic_ce");
    assert_eq!(csv.f(r, "delta_mean"), -0.625);
    assert_eq!(csv.f(r, "delta_sd"), 0.25);
    assert!((csv.f(r, "ci95_high") - (-0.625 + T3 * 0.125)).abs() < 1e-12);
    // ... and after temperature scaling, −0.25 every time: sd 0, a zero-width interval
    let r = delta_row(&csv, "human", "0.0", "eval_cinic_ts_ce");
    assert_eq!(
        (
            csv.f(r, "delta_mean"),
            csv.f(r, "delta_sd"),
            csv.f(r, "ci95_low")
        ),
        (-0.25, 0.0, -0.25)
    );
    // the signed gap: 0.25 over-confident against 0
    let r = delta_row(&csv, "human", "0.0", "eval_cinic_gap");
    assert_eq!(
        (csv.f(r, "reference_mean"), csv.f(r, "delta_mean")),
        (0.25, -0.25)
    );
    // human CE on the held-out set: deltas −0.5, −0.75, −0.5, −0.25
    let r = delta_row(&csv, "human", "0.0", "eval_test2k_human_ce");
    assert_eq!(csv.f(r, "delta_mean"), -0.5);
    let sd = (2.0 * 0.25f64.powi(2) / 3.0).sqrt();
    assert!((csv.f(r, "delta_sd") - sd).abs() < 1e-15);

    // label smoothing: three common iters, one without a reference
    let r = delta_row(&csv, "baseline", "0.21", "val_acc");
    assert_eq!(csv.f(r, "n_pairs"), 3.0);
    assert_eq!(csv.s(r, "iters"), "0 1 3");
    assert_eq!(csv.f(r, "delta_mean"), 0.125);
    assert_eq!(csv.f(r, "delta_sd"), 0.0);
    assert_eq!(
        csv.s(r, "note"),
        "3 of the reference's 4 iters; iter 5 without a reference left out"
    );
    let r = delta_row(&csv, "baseline", "0.21", "eval_cinic_ce");
    assert_eq!(csv.f(r, "n_pairs"), 0.0);
    assert_eq!(csv.s(r, "delta_mean"), "");
    assert_eq!(csv.s(r, "note"), "the configuration has no values");

    // summary.md: the main endpoints, with the method
    let md = std::fs::read_to_string(&report.summary).unwrap();
    assert!(md.contains("## Paired differences against"), "{md}");
    assert!(md.contains("Student's t"), "{md}");
    let line = md
        .lines()
        .find(|l| l.contains("`eval_cinic_ce`") && l.contains("teacher=human"))
        .unwrap_or_else(|| panic!("no cinic CE row in\n{md}"));
    assert!(line.contains("| 4 | 2.1875 | 1.5625 | -0.6250 |"), "{line}");
    assert!(
        !md.contains("`val_loss`"),
        "only the main endpoints in the summary"
    );
    assert!(md.contains("3 of the reference's 4 iters"));
    // endpoints without a pair are listed once per configuration, not as empty rows
    assert!(
        md.contains("- teacher=baseline, D=KL, λ=0.0, LS=0.21: `eval_cinic_acc`, `eval_cinic_ce`, `eval_cinic_ece`,")
            && md.contains("`eval_test2k_ts_human_ce` (the configuration has no values)"),
        "{md}"
    );
    assert!(
        !md.contains("| teacher=baseline, D=KL, λ=0.0, LS=0.21 | `eval_cinic_acc`"),
        "{md}"
    );
}

#[test]
fn a_reference_that_is_not_one_configuration_is_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    write_study(dir.path());
    let out = dir.path().join("analysis");
    let err = |sel: &str| {
        let e = analyze(&tables_only(dir.path(), Some(sel))).unwrap_err();
        assert!(e.is_usage(), "{sel}: {e}");
        assert!(!out.exists(), "{sel}: nothing is written");
        e.to_string()
    };
    // two arms have teacher=baseline: name them, and the key that tells them apart
    let e = err("teacher=baseline");
    assert!(
        e.contains("2 configurations")
            && e.contains("label_smoothing=0.0")
            && e.contains("label_smoothing=0.21")
            && e.contains("add label_smoothing=…"),
        "{e}"
    );
    let e = err("teacher=nobody");
    assert!(
        e.contains("no configuration has teacher=nobody") && e.contains("baseline, human"),
        "{e}"
    );
    let e = err("seed=3");
    assert!(e.contains("`seed` is not a grouping key"), "{e}");
    let e = err("teacher");
    assert!(e.contains("KEY=VALUE"), "{e}");
}
