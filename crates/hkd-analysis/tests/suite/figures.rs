//! The figures: valid PNG and SVG files, with rendered text, linked from summary.md.
//!
//! Set `HKD_ANALYSIS_KEEP_FIGURES=<dir>` to copy the drawn figures there for a look.

use std::path::Path;

use crate::common::*;
use hkd_analysis::*;

/// The file name without `.png`/`.svg` (names contain dots, as in `l0.5`).
fn stem(p: &Path) -> String {
    let name = p.file_name().unwrap().to_string_lossy();
    name.strip_suffix(".png")
        .or_else(|| name.strip_suffix(".svg"))
        .unwrap_or_else(|| panic!("{} is not a figure", p.display()))
        .to_string()
}

fn check_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        path.display()
    );
    let img = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png)
        .unwrap_or_else(|e| panic!("{} does not decode: {e}", path.display()))
        .to_rgb8();
    let (w, h) = img.dimensions();
    assert!(w >= 500 && h >= 400, "{}: {w}x{h}", path.display());
    let ink = img.pixels().filter(|p| p.0 != [255, 255, 255]).count() as f64 / (w * h) as f64;
    assert!(
        (0.005..0.6).contains(&ink),
        "{}: {:.1}% of pixels are not white",
        path.display(),
        ink * 100.0
    );
    // The title is text only: dark pixels in the top band mean the font rendered.
    let title_ink = (0..w)
        .flat_map(|x| (0..28).map(move |y| (x, y)))
        .filter(|&(x, y)| img.get_pixel(x, y).0.iter().all(|&c| c < 110))
        .count();
    assert!(
        title_ink > 100,
        "{}: no title text rendered ({title_ink} dark pixels)",
        path.display()
    );
}

fn check_svg(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.starts_with("<svg"), "{}", path.display());
    assert!(text.trim_end().ends_with("</svg>"), "{}", path.display());
    assert_eq!(text.matches("<svg").count(), 1);
    assert_eq!(
        text.matches("<text").count(),
        text.matches("</text>").count(),
        "{}: unbalanced text elements",
        path.display()
    );
    assert!(text.matches("<text").count() >= 10, "{}", path.display());
    text
}

#[test]
fn figures_are_valid_png_and_svg_with_text() {
    let dir = tempfile::tempdir().unwrap();
    write_grid(dir.path());
    let report = analyze(&AnalyzeOptions::new(dir.path())).unwrap();
    let fig_dir = report.out_dir.join("fig");

    let (curves, main): (Vec<&FigureFiles>, Vec<&FigureFiles>) = report
        .figures
        .iter()
        .partition(|f| f.png.parent().unwrap().ends_with("curves"));
    assert_eq!(
        main.iter().map(|f| stem(&f.png)).collect::<Vec<_>>(),
        [
            "acc_vs_lambda",
            "ce_vs_lambda",
            "acc_ce_plane",
            "acc_human_ce_plane"
        ]
    );
    let mut curve_names: Vec<String> = curves.iter().map(|f| stem(&f.png)).collect();
    curve_names.sort();
    assert_eq!(
        curve_names,
        [
            "baseline_resnet8_KL_l0.0_g0.0_tt1.0_th1.0",
            "human_resnet8_CE_l0.5_g0.0_tt1.0_th1.0",
            "human_resnet8_KL_l0.5_g0.0_tt1.0_th1.0",
            "human_resnet8_KL_l1.0_g0.0_tt1.0_th1.0",
        ]
    );
    for f in &report.figures {
        assert_eq!(f.svg.parent(), f.png.parent());
        assert_eq!(stem(&f.svg), stem(&f.png));
        assert!(f.png.starts_with(&fig_dir));
        check_png(&f.png);
        check_svg(&f.svg);
    }

    let svg = check_svg(&fig_dir.join("acc_vs_lambda.svg"));
    for label in [
        "λ",
        "resnet8",
        "D=KL",
        "D=CE",
        "teacher=human",
        "teacher=baseline",
    ] {
        assert!(svg.contains(label), "acc_vs_lambda.svg lacks `{label}`");
    }
    let svg = check_svg(&fig_dir.join("acc_ce_plane.svg"));
    for label in ["cinic", "imagenet_far", "teacher=human, D=KL"] {
        assert!(svg.contains(label), "acc_ce_plane.svg lacks `{label}`");
    }
    // the one evaluated configuration's point is tagged with its λ (the legend holds only
    // teacher and D): a text element whose whole content is the tag
    let tags: Vec<&str> = svg
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("λ="))
        .collect();
    assert_eq!(
        tags,
        ["λ=0.5", "λ=0.5"],
        "point tags in acc_ce_plane.svg (cinic, imagenet_far)"
    );
    let svg = check_svg(&fig_dir.join("acc_human_ce_plane.svg"));
    assert!(svg.contains("cinic") && !svg.contains("imagenet_far"));
    let svg = check_svg(&fig_dir.join("curves/human_resnet8_KL_l0.5_g0.0_tt1.0_th1.0.svg"));
    for label in ["best epoch 3", "human term", "learning rate", "iter 1"] {
        assert!(svg.contains(label), "curves svg lacks `{label}`");
    }

    // summary.md links every figure, and every link resolves
    let summary = std::fs::read_to_string(&report.summary).unwrap();
    for f in &report.figures {
        let rel = f.png.strip_prefix(&report.out_dir).unwrap();
        assert!(
            summary.contains(&rel.display().to_string()),
            "summary.md does not link {}",
            rel.display()
        );
    }
    assert!(
        summary.contains("| human | resnet8 | KL | 1.0 | 0.0 | 1.0 | 1.0 | 2 | 0.7500 ± 0.1768")
    );

    if let Some(keep) = std::env::var_os("HKD_ANALYSIS_KEEP_FIGURES") {
        let keep = Path::new(&keep);
        std::fs::create_dir_all(keep.join("curves")).unwrap();
        for f in &report.figures {
            for p in [&f.png, &f.svg] {
                std::fs::copy(p, keep.join(p.strip_prefix(&fig_dir).unwrap())).unwrap();
            }
        }
        std::fs::copy(&report.summary, keep.join("summary.md")).unwrap();
    }
}

#[test]
fn figures_are_reproducible_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    write_grid(dir.path());
    let first = analyze(&AnalyzeOptions::new(dir.path())).unwrap();
    let bytes: Vec<Vec<u8>> = first
        .figures
        .iter()
        .flat_map(|f| {
            [
                std::fs::read(&f.png).unwrap(),
                std::fs::read(&f.svg).unwrap(),
            ]
        })
        .collect();
    let second = analyze(&AnalyzeOptions::new(dir.path())).unwrap();
    let again: Vec<Vec<u8>> = second
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
        bytes == again,
        "drawing the same grid twice gave different files"
    );
}

#[test]
fn without_lambda_or_eval_only_the_curves_are_drawn() {
    let dir = tempfile::tempdir().unwrap();
    write_run(
        dir.path(),
        &Spec::new(hkd_rundir::TeacherSpec::Human, 0.5, 0, 0.5, 1.0),
    );
    let opts = AnalyzeOptions {
        group_by: Some(vec!["teacher".into(), "student".into()]),
        ..AnalyzeOptions::new(dir.path())
    };
    let report = analyze(&opts).unwrap();
    let names: Vec<String> = report.figures.iter().map(|f| stem(&f.png)).collect();
    assert_eq!(names, ["human_resnet8"]);
    check_png(&report.figures[0].png);
}

/// The third study's archived runs (docs/results/study3/archive: every file of 34 real runs
/// but the weights) draw every figure of a study — λ-free planes over four sets, the
/// reliability diagrams, each group's curves — and drawing checks each one: a legend that
/// meets a plot area (and so could cover a point) fails the figure.
#[test]
fn the_third_studys_figures_draw_with_every_legend_clear_of_the_data() {
    let archive =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/results/study3/archive/students");
    assert!(archive.is_dir(), "{} is committed", archive.display());
    let out = tempfile::tempdir().unwrap();
    let mut opts = AnalyzeOptions::new(&archive);
    opts.out = Some(out.path().to_path_buf());
    opts.write_grid_best = false;
    opts.html = false;
    let report = analyze(&opts).unwrap();
    assert!(report.runs >= 34, "{} runs", report.runs);
    let names: Vec<String> = report.figures.iter().map(|f| stem(&f.png)).collect();
    for expected in [
        "acc_ce_plane",
        "acc_human_ce_plane",
        "reliability",
        "reliability_temperature_scaled",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    for f in &report.figures {
        check_png(&f.png);
    }
    // names hold only what tells families apart: no key the configuration's objective
    // lacks (`D=,`), none the same for every family that has it (DKD's β and T)
    let legend = std::fs::read_to_string(out.path().join("fig/legend.csv")).unwrap();
    let labels: Vec<&str> = legend.lines().skip(1).collect();
    assert!(
        labels.iter().any(|l| l.contains("objective=dkd")),
        "{legend}"
    );
    for bad in ["=,", "=\"", "beta_nckd=", "temperature=", "warmup_epochs="] {
        assert!(
            labels
                .iter()
                .all(|l| !l.split(",\"").next().unwrap().contains(bad)),
            "`{bad}` in a name: {legend}"
        );
    }
}
