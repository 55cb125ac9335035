//! What a reviewer reads at a glance: one colour per configuration family in every figure,
//! short legend names (the full identity in `fig/legend.csv`), no panel of a single point,
//! and the calibration figures (reliability diagrams, the signed gap).
//!
//! Set `HKD_ANALYSIS_KEEP_FIGURES=<dir>` to copy the drawn figures there for a look.

use std::path::{Path, PathBuf};

use crate::common::*;
use hkd_analysis::*;
use hkd_rundir::TeacherSpec;

fn stem(p: &Path) -> String {
    let name = p.file_name().unwrap().to_string_lossy();
    name.trim_end_matches(".png")
        .trim_end_matches(".svg")
        .to_string()
}

fn main_figures(report: &AnalysisReport) -> Vec<String> {
    report
        .figures
        .iter()
        .filter(|f| !f.png.parent().unwrap().ends_with("curves"))
        .map(|f| stem(&f.png))
        .collect()
}

fn svg(report: &AnalysisReport, name: &str) -> String {
    std::fs::read_to_string(report.out_dir.join("fig").join(format!("{name}.svg"))).unwrap()
}

/// The fill colours of the filled circles and polygons in an SVG (the data points), as
/// plotters writes them (`fill="#RRGGBB"`), upper case; white (hollow markers) left out.
fn point_colours(svg: &str) -> std::collections::BTreeSet<String> {
    svg.lines()
        .filter(|l| l.contains("<circle") || l.contains("<polygon"))
        .filter_map(|l| {
            let at = l.find("fill=\"#")? + 6;
            Some(l[at..at + 7].to_uppercase())
        })
        .filter(|c| c != "#FFFFFF")
        .collect()
}

/// The text elements of an SVG (plotters writes each one's content on a line of its own).
fn texts(svg: &str) -> Vec<String> {
    svg.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('<'))
        .map(String::from)
        .collect()
}

fn keep(report: &AnalysisReport, what: &str) {
    if let Some(dir) = std::env::var_os("HKD_ANALYSIS_KEEP_FIGURES") {
        let dir = PathBuf::from(dir).join(what);
        std::fs::create_dir_all(&dir).unwrap();
        for f in &report.figures {
            for p in [&f.png, &f.svg] {
                std::fs::copy(p, dir.join(p.file_name().unwrap())).unwrap();
            }
        }
        std::fs::copy(&report.summary, dir.join("summary.md")).unwrap();
    }
}

/// Family colours in table order: 0 #0072B2, 1 #D55E00, 2 #009E73.
const BLUE: &str = "#0072B2";
const VERMILION: &str = "#D55E00";
const GREEN: &str = "#009E73";

#[test]
fn a_family_has_one_colour_in_every_figure() {
    // write_grid's families, in table order: baseline (blue), human D=CE (vermilion),
    // human D=KL (green, at λ 0.5 and 1.0). Only human D=KL is evaluated, so the planes
    // draw it alone: still green, as in the λ figures (it was the first colour there).
    let dir = tempfile::tempdir().unwrap();
    write_grid(dir.path());
    let report = analyze(&AnalyzeOptions::new(dir.path())).unwrap();
    keep(&report, "grid");
    let lambda = svg(&report, "acc_vs_lambda");
    assert_eq!(
        point_colours(&lambda),
        [BLUE, VERMILION, GREEN].map(String::from).into()
    );
    for plane in ["acc_ce_plane", "acc_human_ce_plane"] {
        assert_eq!(
            point_colours(&svg(&report, plane)),
            [GREEN.to_string()].into(),
            "{plane}"
        );
    }

    let legend = Csv::read(&report.out_dir.join("fig/legend.csv"));
    assert!(
        report
            .tables
            .contains(&report.out_dir.join("fig/legend.csv"))
    );
    assert_eq!(
        legend.header[..3],
        ["label", "family", "colour"].map(String::from)
    );
    let row = legend.row(&[("teacher", "human"), ("distil_fn", "KL"), ("lambda", "1.0")]);
    assert_eq!(legend.s(row, "family"), "teacher=human, D=KL");
    assert_eq!(legend.s(row, "label"), "teacher=human, D=KL, λ=1.0");
    assert_eq!(legend.s(row, "colour").to_uppercase(), GREEN);
    let row = legend.row(&[("teacher", "baseline")]);
    assert_eq!(legend.s(row, "colour").to_uppercase(), BLUE);
}

#[test]
fn teacher_runs_get_short_names_and_single_point_panels_are_left_out() {
    // Students of two resnet20 teacher runs (λ 0.5 and 1.0 each) and one resnet20 trained
    // on human labels: the legend names the teachers by architecture and the λ that tells
    // them apart; the resnet20 panel would hold one point and is left out.
    let dir = tempfile::tempdir().unwrap();
    let slug = |l: &str| format!("human-resnet20-KL-th1.0-tt1.0-l{l}-g0.0-i0");
    for (t, l) in [("1.0", 0.5), ("1.0", 1.0), ("0.5", 0.5), ("0.5", 1.0)] {
        write_run(
            dir.path(),
            &Spec::new(teacher_run(&slug(t)), l, 0, 0.5 + l / 4.0, 1.0),
        );
    }
    write_run(
        dir.path(),
        &Spec::new(TeacherSpec::Human, 1.0, 0, 0.75, 1.0).student("resnet20"),
    );
    let report = analyze(&AnalyzeOptions::new(dir.path())).unwrap();
    keep(&report, "teachers");
    let lambda = svg(&report, "acc_vs_lambda");
    assert!(
        lambda.contains("teacher=resnet20 (λ=1.0)") && lambda.contains("teacher=resnet20 (λ=0.5)"),
        "{lambda}"
    );
    assert!(
        !lambda.contains(&slug("1.0")),
        "the full slug is in legend.csv only"
    );
    assert!(lambda.contains("left out (one configuration): student=resnet20"));
    assert_eq!(
        lambda
            .lines()
            .filter(|l| l.trim() == "resnet8" || l.trim() == "resnet20")
            .count(),
        1,
        "one panel title: resnet8"
    );
    let legend = Csv::read(&report.out_dir.join("fig/legend.csv"));
    let row = legend.row(&[("teacher", &slug("0.5")), ("lambda", "1.0")]);
    assert_eq!(legend.s(row, "family"), "teacher=resnet20 (λ=0.5)");
}

#[test]
fn calibration_figures_of_a_study() {
    let dir = tempfile::tempdir().unwrap();
    write_study(dir.path());
    let opts = AnalyzeOptions {
        paired_against: Some("teacher=baseline,label_smoothing=0.0".into()),
        ..AnalyzeOptions::new(dir.path())
    };
    let report = analyze(&opts).unwrap();
    keep(&report, "study");
    // each family has one λ: no λ figure
    assert_eq!(
        main_figures(&report),
        [
            "acc_ce_plane",
            "acc_human_ce_plane",
            "reliability",
            "reliability_temperature_scaled",
            "confidence_gap"
        ]
    );
    let legend = Csv::read(&report.out_dir.join("fig/legend.csv"));
    let colour = |teacher: &str, ls: &str| {
        let r = legend.row(&[("teacher", teacher), ("label_smoothing", ls)]);
        legend.s(r, "colour").to_uppercase()
    };
    let (hard, human) = (colour("baseline", "0.0"), colour("human", "0.0"));
    // the label-smoothing arm has no evaluation: two colours in every evaluation figure
    for name in [
        "acc_ce_plane",
        "reliability",
        "reliability_temperature_scaled",
        "confidence_gap",
    ] {
        assert_eq!(
            point_colours(&svg(&report, name)),
            [hard.clone(), human.clone()].into(),
            "{name}"
        );
    }
    let rel = svg(&report, "reliability");
    assert!(rel.contains("perfect calibration") && rel.contains("cinic") && rel.contains("test2k"));
    // each family has one configuration: its name alone, without λ
    let names = texts(&rel);
    for name in ["teacher=human, D=CE", "teacher=baseline, D=KL"] {
        assert!(names.iter().any(|t| t == name), "{name} in {names:?}");
    }
    assert!(!names.iter().any(|t| t.contains("λ=")), "{names:?}");
    let gap = svg(&report, "confidence_gap");
    assert!(gap.contains("hollow: after temperature scaling"));
    // the row labels of the configurations
    let rows = texts(&gap);
    for name in ["teacher=human, D=CE", "teacher=baseline, D=KL"] {
        assert!(rows.iter().any(|t| t == name), "{name} in {rows:?}");
    }

    // drawn twice, byte for byte the same
    let first: Vec<Vec<u8>> = report
        .figures
        .iter()
        .flat_map(|f| {
            [
                std::fs::read(&f.png).unwrap(),
                std::fs::read(&f.svg).unwrap(),
            ]
        })
        .collect();
    let again = analyze(&opts).unwrap();
    let second: Vec<Vec<u8>> = again
        .figures
        .iter()
        .flat_map(|f| {
            [
                std::fs::read(&f.png).unwrap(),
                std::fs::read(&f.svg).unwrap(),
            ]
        })
        .collect();
    assert!(
        first == second,
        "drawing the same grid twice gave different files"
    );
}

/// The boxes of the text elements of an SVG whose content starts with `prefix`: x, y of the
/// top-left corner and the size the placement assumed (0.6 em per character at 10 px).
fn label_boxes(svg: &str, prefix: &str) -> Vec<(i32, i32, i32, i32, String)> {
    let lines: Vec<&str> = svg.lines().collect();
    let attr = |l: &str, name: &str| -> i32 {
        let at = l.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
        l[at..].split('"').next().unwrap().parse().unwrap()
    };
    lines
        .windows(2)
        .filter(|w| w[0].starts_with("<text") && w[1].trim().starts_with(prefix))
        .map(|w| {
            let text = w[1].trim().to_string();
            let width = (text.chars().count() as f64 * 6.0).ceil() as i32 + 2;
            (attr(w[0], "x"), attr(w[0], "y"), width, 12, text)
        })
        .collect()
}

#[test]
fn point_tags_in_a_crowded_plane_do_not_overlap() {
    // five λ of one family within 0.004 of each other, one far-off baseline: the five points
    // nearly coincide at the panel's scale
    let dir = tempfile::tempdir().unwrap();
    for (k, l) in [0.2, 0.4, 0.6, 0.8, 1.0].into_iter().enumerate() {
        let d = k as f64 * 0.001;
        write_run(
            dir.path(),
            &Spec::new(TeacherSpec::Human, l, 0, 0.5, 1.0).eval_set(
                "cinic",
                0.5 + d,
                1.0 + d,
                8.0,
                None,
            ),
        );
    }
    write_run(
        dir.path(),
        &Spec::new(TeacherSpec::Baseline, 0.0, 0, 0.5, 1.0).eval_set("cinic", 0.9, 3.0, 8.0, None),
    );
    let report = analyze(&AnalyzeOptions::new(dir.path())).unwrap();
    keep(&report, "crowded");
    let boxes = label_boxes(&svg(&report, "acc_ce_plane"), "λ=");
    assert_eq!(boxes.len(), 6, "{boxes:?}");
    for (i, a) in boxes.iter().enumerate() {
        for b in &boxes[i + 1..] {
            let dx = (a.0 + a.2).min(b.0 + b.2) - a.0.max(b.0);
            let dy = (a.1 + a.3).min(b.1 + b.3) - a.1.max(b.1);
            assert!(
                dx <= 0 || dy <= 0,
                "tags {} and {} overlap: {a:?} {b:?}",
                a.4,
                b.4
            );
        }
    }
}

#[test]
fn reliability_bins_of_few_images_are_hollow_and_carry_their_count() {
    let dir = tempfile::tempdir().unwrap();
    // two repeats: the pooled counts are the sums (7 + 5 = 12 images in bin 14)
    for (iter, few) in [(0u32, 7usize), (1, 5)] {
        write_run(
            dir.path(),
            &Spec::new(TeacherSpec::Human, 0.5, iter, 0.5, 1.0)
                .eval_set("cinic", 0.5, 1.0, 8.0, None)
                .calibrated(
                    "cinic",
                    Calibration {
                        mean_confidence: 0.6,
                        bins: vec![
                            (6, 480, 0.45, 0.4),
                            (9, 300, 0.65, 0.6),
                            (14, few, 0.97, 0.2),
                        ],
                        scaled: None,
                    },
                ),
        );
    }
    let report = analyze(&AnalyzeOptions::new(dir.path())).unwrap();
    let rel = svg(&report, "reliability");
    let counts: Vec<String> = texts(&rel)
        .into_iter()
        .filter(|t| t.starts_with("n="))
        .collect();
    assert_eq!(counts, ["n=12"], "only the bin of few images is labelled");
    assert!(
        rel.contains("hollow: a bin of fewer than 30 images"),
        "the subtitle says so"
    );
}
