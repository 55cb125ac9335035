//! Figures with plotters, each written as SVG and PNG.
//!
//! Text is drawn with DejaVu Sans embedded in this crate (plotters' `ab_glyph` feature), so
//! no system font, fontconfig or freetype is needed on the machine that draws.
//!
//! Every figure colours and names configurations the same way ([`families`]): one colour
//! per family (a configuration up to λ and the student), short names, the full identity in
//! `fig/legend.csv`.

mod calibration;
mod families;
mod labels;
mod legend;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hkd_rundir::EpochMetrics;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::aggregate::GroupSummary;
use crate::error::{AnalysisError, Result};
use crate::load::RunRecord;
use crate::table::EvalSetColumns;
use families::Families;
use legend::{Entry, Layout, Swatch};

/// DejaVu Sans (a Latin/Greek subset; see `assets/fonts/LICENSE-DejaVu.txt`).
static FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans-subset.ttf");

/// Registers the embedded font for every family plotters may ask for. Idempotent.
pub fn ensure_font() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        for family in ["sans-serif", "serif", "monospace"] {
            for style in [
                FontStyle::Normal,
                FontStyle::Bold,
                FontStyle::Italic,
                FontStyle::Oblique,
            ] {
                register_font(family, style, FONT)
                    .map_err(|_| "the embedded DejaVu Sans font is not a valid font".to_string())?;
            }
        }
        Ok(())
    })
    .clone()
}

/// One figure written as `<stem>.svg` and `<stem>.png`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FigureFiles {
    /// What the figure shows, one line.
    pub caption: String,
    pub svg: PathBuf,
    pub png: PathBuf,
}

type DrawResult = std::result::Result<(), String>;

/// Something that can draw itself on any plotters backend.
trait Figure {
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult;
}

fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Draws `fig` to `<dir>/<name>.svg` and `<dir>/<name>.png` (atomic writes). (`name` may
/// contain dots, as in `l0.5`, so it is not a path whose extension could be replaced.)
fn render(fig: &impl Figure, dir: &Path, name: &str, caption: String) -> Result<FigureFiles> {
    let svg_path = dir.join(format!("{name}.svg"));
    let png_path = dir.join(format!("{name}.png"));
    ensure_font().map_err(|message| AnalysisError::Plot {
        path: svg_path.clone(),
        message,
    })?;
    let (w, h) = fig.size();
    let plot_err = |path: &Path| {
        let path = path.to_path_buf();
        move |message: String| AnalysisError::Plot { path, message }
    };

    let mut svg = String::new();
    {
        let area = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        Layout::clear();
        fig.draw(&area).map_err(plot_err(&svg_path))?;
        area.present().map_err(err).map_err(plot_err(&svg_path))?;
    }
    // Legends sit beside the plot areas by construction; this holds it to that.
    if let Some(overlap) = legend::check(&Layout::recorded()) {
        return Err(AnalysisError::Plot {
            path: svg_path,
            message: format!("{overlap} (a bug in hkd-analysis: please report it)"),
        });
    }
    hkd_rundir::write_atomic(&svg_path, svg.as_bytes())
        .map_err(|e| AnalysisError::write(&svg_path, e))?;

    let mut rgb = vec![0u8; (w * h * 3) as usize];
    {
        let area = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        fig.draw(&area).map_err(plot_err(&png_path))?;
        area.present().map_err(err).map_err(plot_err(&png_path))?;
    }
    let image = image::RgbImage::from_raw(w, h, rgb).ok_or_else(|| AnalysisError::Plot {
        path: png_path.clone(),
        message: "bitmap buffer has the wrong size".into(),
    })?;
    let mut png = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| AnalysisError::Plot {
            path: png_path.clone(),
            message: format!("PNG encoding failed: {e}"),
        })?;
    hkd_rundir::write_atomic(&png_path, png.get_ref())
        .map_err(|e| AnalysisError::write(&png_path, e))?;
    Ok(FigureFiles {
        caption,
        svg: svg_path,
        png: png_path,
    })
}

/// A padded axis range covering `values` (at least `min_span` wide).
fn padded(values: impl IntoIterator<Item = f64>, min_span: f64) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.into_iter().filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < min_span {
        // A (nearly) constant series, e.g. a learning rate that never dropped: ±10 % of its
        // value, so the tick labels stay readable instead of repeating one rounded number.
        let mid = (lo + hi) / 2.0;
        let span = min_span.max(mid.abs() * 0.2);
        lo = mid - span / 2.0;
        hi = mid + span / 2.0;
    }
    let pad = (hi - lo) * 0.08;
    (lo - pad, hi + pad)
}

fn color(i: usize) -> RGBColor {
    families::palette(i)
}

/// Which metric a λ figure shows.
#[derive(Clone, Copy)]
enum LambdaMetric {
    Acc,
    Ce,
}

/// (λ, mean, std) of one group.
type LambdaPoint = (f64, f64, Option<f64>);

struct Series {
    label: String,
    colour: RGBColor,
    points: Vec<LambdaPoint>,
}

struct Panel {
    title: String,
    series: Vec<Series>,
}

/// Validation accuracy or CE against λ: a panel per student, a line per family,
/// error bars ±1 sample std over repeats.
struct LambdaFigure {
    title: String,
    /// Second title line: the keys that are the same for every series, and the panels left
    /// out.
    subtitle: String,
    y_label: String,
    panels: Vec<Panel>,
}

/// (rows, columns) for `n` panels: at most 3 a row, and as few empty places as that
/// allows (4 panels are 2 × 2, not 3 + 1); the last row, when shorter, is centred
/// ([`titled_panels`]), so no empty panel is drawn.
fn panel_grid(n: usize) -> (usize, usize) {
    let cols = match n {
        0 | 1 => 1,
        2 | 4 => 2,
        _ => 3,
    };
    (n.max(1).div_ceil(cols), cols)
}

/// The legend strip's allowance (see [`legend::allowance`]) for legends of at most `n`
/// entries of the longest of `labels`, in panels `width` pixels wide.
fn legend_allowance<'a>(n: usize, labels: impl IntoIterator<Item = &'a str>, width: u32) -> u32 {
    let longest = labels
        .into_iter()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0);
    legend::allowance(n, longest, width)
}

/// `subtitle` in lines no wider than `max` pixels, broken after its `; ` separators (a
/// part wider than a line gets a line of its own).
fn wrap_subtitle<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    subtitle: &str,
    size: u32,
    max: i32,
) -> Result<Vec<String>, String> {
    let font: TextStyle = ("sans-serif", size).into_font().into();
    let width = |t: &str| {
        area.estimate_text_size(t, &font)
            .map(|(w, _)| w as i32)
            .map_err(err)
    };
    let mut lines: Vec<String> = Vec::new();
    for part in subtitle.split("; ") {
        match lines.last_mut() {
            Some(line) if width(&format!("{line}; {part}"))? <= max => {
                line.push_str("; ");
                line.push_str(part);
            }
            _ => lines.push(part.to_string()),
        }
    }
    Ok(lines)
}

/// A white figure with a title (`title_size` pt) over a 13–14 pt subtitle, cut into the
/// cells of [`panel_grid`] for `n` panels, row by row.
fn titled_panels<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    (title, title_size): (&str, u32),
    (subtitle, subtitle_size): (&str, u32),
    n: usize,
) -> Result<Vec<DrawingArea<DB, Shift>>, String> {
    area.fill(&WHITE).map_err(err)?;
    let mut area = area
        .titled(title, ("sans-serif", title_size))
        .map_err(err)?;
    let (w, _) = area.dim_in_pixel();
    for line in wrap_subtitle(&area, subtitle, subtitle_size, w as i32 - 24)? {
        area = area
            .titled(&line, ("sans-serif", subtitle_size))
            .map_err(err)?;
    }
    let (rows, cols) = panel_grid(n);
    let (w, _) = area.dim_in_pixel();
    let mut cells = Vec::with_capacity(n);
    for (r, row) in area.split_evenly((rows, 1)).into_iter().enumerate() {
        let in_row = (n - r * cols).min(cols);
        // a short last row: its panels as wide as the others, centred
        let cell_w = w as i32 / cols as i32;
        let left = (cols - in_row) as i32 * cell_w / 2;
        let (_, row_h) = row.dim_in_pixel();
        let row = row.shrink((left, 0), (cell_w * in_row as i32, row_h));
        cells.extend(row.split_evenly((1, in_row)));
    }
    Ok(cells)
}

/// The λ figure, when λ is a key and some family has two λ values in one panel. A panel of
/// one point says nothing about λ: it is left out and named in the subtitle.
fn lambda_figure(
    groups: &[GroupSummary],
    keys: &[String],
    families: &Families,
    metric: LambdaMetric,
) -> Option<LambdaFigure> {
    if !keys.iter().any(|k| k == "lambda") || groups.is_empty() {
        return None;
    }
    let panel_key = keys.iter().any(|k| k == "student").then_some("student");
    let mut panels: BTreeMap<String, BTreeMap<usize, Vec<LambdaPoint>>> = BTreeMap::new();
    for (gi, g) in groups.iter().enumerate() {
        let Some(l) = g.lambda else { continue };
        let panel = panel_key
            .and_then(|k| g.key(k))
            .unwrap_or("all runs")
            .to_string();
        let (m, s) = match metric {
            LambdaMetric::Acc => (g.val_acc_mean, g.val_acc_std),
            LambdaMetric::Ce => (g.val_loss_mean, g.val_loss_std),
        };
        panels
            .entry(panel)
            .or_default()
            .entry(families.family_of[gi])
            .or_default()
            .push((l, m, s));
    }
    let (panels, single): (Vec<_>, Vec<_>) = panels
        .into_iter()
        .partition(|(_, series)| series.values().map(Vec::len).sum::<usize>() > 1);
    if !panels
        .iter()
        .any(|(_, series)| series.values().any(|points| points.len() > 1))
    {
        return None;
    }
    let (what, y_label) = match metric {
        LambdaMetric::Acc => ("validation accuracy", "validation accuracy (best epoch)"),
        LambdaMetric::Ce => (
            "validation cross-entropy",
            "validation CE, nats (best epoch)",
        ),
    };
    let mut subtitle = "mean ± sample std over repeats".to_string();
    if !families.constant.is_empty() {
        subtitle.push_str(&format!("; {}", families.constant));
    }
    if !single.is_empty() {
        let names: Vec<String> = single
            .iter()
            .map(|(p, _)| match panel_key {
                Some(k) => format!("{k}={p}"),
                None => p.clone(),
            })
            .collect();
        subtitle.push_str(&format!(
            "; left out (one configuration): {}",
            names.join(", ")
        ));
    }
    let one_family = families.names.len() == 1;
    Some(LambdaFigure {
        title: format!("{what} vs λ"),
        subtitle,
        y_label: y_label.to_string(),
        panels: panels
            .into_iter()
            .map(|(title, series)| Panel {
                title,
                series: series
                    .into_iter()
                    .map(|(family, mut points)| {
                        points.sort_by(|a, b| a.0.total_cmp(&b.0));
                        Series {
                            label: if one_family {
                                "mean ± std".to_string()
                            } else {
                                families.names[family].clone()
                            },
                            colour: families::palette(family),
                            points,
                        }
                    })
                    .collect(),
            })
            .collect(),
    })
}

impl Figure for LambdaFigure {
    fn size(&self) -> (u32, u32) {
        let (rows, cols) = panel_grid(self.panels.len());
        let most = self
            .panels
            .iter()
            .map(|p| p.series.len())
            .max()
            .unwrap_or(0);
        let labels = self
            .panels
            .iter()
            .flat_map(|p| &p.series)
            .map(|s| s.label.as_str());
        let legend = legend_allowance(most, labels, 640);
        (640 * cols as u32 + 40, (460 + legend) * rows as u32 + 80)
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult {
        let cells = titled_panels(
            area,
            (&self.title, 20),
            (&self.subtitle, 14),
            self.panels.len(),
        )?;
        for (panel, cell) in self.panels.iter().zip(cells) {
            let all = || panel.series.iter().flat_map(|s| s.points.iter());
            let (x0, x1) = padded(all().map(|p| p.0), 0.2);
            let (y0, y1) = padded(
                all().flat_map(|p| {
                    let s = p.2.unwrap_or(0.0);
                    [p.1 - s, p.1 + s]
                }),
                1e-3,
            );
            let entries: Vec<Entry> = panel
                .series
                .iter()
                .map(|s| Entry::new(&s.label, Swatch::Line(s.colour)))
                .collect();
            let (chart_area, strip) = legend::chart_and_legend(&cell, &entries)?;
            let mut chart = ChartBuilder::on(&chart_area)
                .caption(&panel.title, ("sans-serif", 17))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(64)
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_desc("λ")
                .y_desc(&self.y_label)
                .label_style(("sans-serif", 13))
                .axis_desc_style(("sans-serif", 14))
                .light_line_style(WHITE.mix(0.0))
                .draw()
                .map_err(err)?;
            let n = panel.series.len();
            let dodge = (x1 - x0) * 0.008;
            for (i, s) in panel.series.iter().enumerate() {
                let c = s.colour;
                let off = (i as f64 - (n as f64 - 1.0) / 2.0) * dodge;
                let pts: Vec<(f64, f64)> = s.points.iter().map(|p| (p.0 + off, p.1)).collect();
                chart
                    .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                    .map_err(err)?;
                chart
                    .draw_series(s.points.iter().filter_map(|p| {
                        p.2.map(|sd| {
                            ErrorBar::new_vertical(p.0 + off, p.1 - sd, p.1, p.1 + sd, c, 8)
                        })
                    }))
                    .map_err(err)?;
                chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.filled())))
                    .map_err(err)?;
            }
            Layout::record_plot(&chart);
            legend::draw(&strip, &entries)?;
        }
        Ok(())
    }
}

/// Training curves of one run: loss parts, accuracies, validation CE and learning rate.
struct CurvesFigure {
    title: String,
    metrics: Vec<EpochMetrics>,
    best_epoch: u32,
}

impl Figure for CurvesFigure {
    fn size(&self) -> (u32, u32) {
        // two rows of panels, each with room for a legend of 4 entries of up to 24
        // characters in a 550-pixel panel
        (1100, 760 + 2 * legend::allowance(4, 24, 550))
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult {
        area.fill(&WHITE).map_err(err)?;
        let area = area.titled(&self.title, ("sans-serif", 18)).map_err(err)?;
        let cells = area.split_evenly((2, 2));
        let m = &self.metrics;
        let first = m.iter().map(|e| e.epoch).min().unwrap_or(1);
        let last = m.iter().map(|e| e.epoch).max().unwrap_or(1).max(first + 1);
        type Getter<'a> = Box<dyn Fn(&EpochMetrics) -> Option<f64> + 'a>;
        /// Title, y axis, lines.
        type CurvePanel<'a> = (&'a str, &'a str, Vec<(String, Getter<'a>)>);
        let line = |label: &str, g: fn(&EpochMetrics) -> f64| -> (String, Getter<'_>) {
            (label.to_owned(), Box::new(move |e| Some(g(e))))
        };
        // The objective's parts, in the order the run recorded them.
        let mut part_names: Vec<String> = Vec::new();
        for name in m.iter().flat_map(|e| e.train_parts.names()) {
            if !part_names.iter().any(|n| n == name) {
                part_names.push(name.to_owned());
            }
        }
        let mut loss_lines = vec![line("total", |e| e.train_total)];
        for name in part_names {
            let label = match name.as_str() {
                "hard" => "hard CE".to_owned(),
                "kd" => "soft (KD)".to_owned(),
                "teacher" => "teacher term".to_owned(),
                "human" => "human term".to_owned(),
                other => other.to_owned(),
            };
            loss_lines.push((label, Box::new(move |e: &EpochMetrics| e.part(&name))));
        }
        let panels: [CurvePanel; 4] = [
            ("training loss parts", "loss (epoch mean)", loss_lines),
            (
                "accuracy",
                "top-1 accuracy",
                vec![
                    line("validation", |e| e.val_acc),
                    line("training (augmented)", |e| e.train_acc),
                ],
            ),
            (
                "validation cross-entropy",
                "CE, nats",
                vec![line("validation", |e| e.val_loss)],
            ),
            ("learning rate", "lr", vec![line("lr", |e| e.lr)]),
        ];
        for ((title, y_desc, lines), cell) in panels.iter().zip(cells.iter()) {
            let present: Vec<&(String, Getter)> = lines
                .iter()
                .filter(|(_, g)| m.iter().any(|e| g(e).is_some()))
                .collect();
            let best = (*title == "accuracy")
                .then(|| m.iter().find(|e| e.epoch == self.best_epoch))
                .flatten();
            // a panel of one line needs no legend (its title says what it is)
            let mut entries: Vec<Entry> = Vec::new();
            if present.len() > 1 || best.is_some() {
                entries.extend(
                    present
                        .iter()
                        .enumerate()
                        .map(|(i, (label, _))| Entry::new(label, Swatch::Line(color(i)))),
                );
            }
            if let Some(b) = best {
                entries.push(Entry::new(
                    format!("best epoch {}", b.epoch),
                    Swatch::Dot(color(0)),
                ));
            }
            let (chart_area, strip) = legend::chart_and_legend(cell, &entries)?;
            let (y0, y1) = padded(
                present.iter().flat_map(|(_, g)| m.iter().filter_map(g)),
                1e-4,
            );
            let mut chart = ChartBuilder::on(&chart_area)
                .caption(*title, ("sans-serif", 16))
                .margin(10)
                .x_label_area_size(36)
                .y_label_area_size(64)
                .build_cartesian_2d(first..last, y0..y1)
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_labels(((last - first + 1) as usize).min(12))
                .x_desc("epoch")
                .y_desc(*y_desc)
                .label_style(("sans-serif", 12))
                .axis_desc_style(("sans-serif", 13))
                .light_line_style(WHITE.mix(0.0))
                .draw()
                .map_err(err)?;
            for (i, (_, g)) in present.iter().enumerate() {
                let c = color(i);
                let pts: Vec<(u32, f64)> = m
                    .iter()
                    .filter_map(|e| g(e).map(|v| (e.epoch, v)))
                    .collect();
                chart
                    .draw_series(LineSeries::new(pts, c.stroke_width(2)))
                    .map_err(err)?;
            }
            if let Some(b) = best {
                chart
                    .draw_series(std::iter::once(Circle::new(
                        (b.epoch, b.val_acc),
                        5,
                        color(0).filled(),
                    )))
                    .map_err(err)?;
            }
            Layout::record_plot(&chart);
            legend::draw(&strip, &entries)?;
        }
        Ok(())
    }
}

/// Accuracy against CE (hard-label CE, or CE to the human labels) per evaluation set: one
/// point per group, error bars ±1 std both ways, coloured by family, each point tagged
/// with what tells it apart within its family (λ, the student), tags placed clear of each
/// other and of the points.
struct PlaneFigure {
    title: String,
    subtitle: String,
    x_label: String,
    /// (set, its points)
    panels: Vec<(String, Vec<PlanePoint>)>,
    /// The families drawn: name and colour, in family order.
    legend: Vec<(String, RGBColor)>,
}

struct PlanePoint {
    colour: RGBColor,
    /// λ and the student where a family holds several (`λ=0.6`); empty when none does.
    tag: String,
    x: f64,
    x_sd: Option<f64>,
    y: f64,
    y_sd: Option<f64>,
}

#[derive(Clone, Copy)]
enum PlaneX {
    Ce,
    HumanCe,
}

fn plane_figure(
    groups: &[GroupSummary],
    families: &Families,
    sets: &[EvalSetColumns],
    x: PlaneX,
) -> Option<PlaneFigure> {
    let mut drawn: BTreeSet<usize> = BTreeSet::new();
    let mut panels = Vec::new();
    for set in sets {
        if matches!(x, PlaneX::HumanCe) && !set.human {
            continue;
        }
        let mut points = Vec::new();
        for (gi, g) in groups.iter().enumerate() {
            let Some(e) = g.eval.get(&set.set) else {
                continue;
            };
            let (xm, xs) = match x {
                PlaneX::Ce => (e.ce_mean, e.ce_std),
                PlaneX::HumanCe => (e.human_ce_mean, e.human_ce_std),
            };
            let (Some(xm), Some(ym)) = (xm, e.acc_mean) else {
                continue;
            };
            drawn.insert(families.family_of[gi]);
            points.push(PlanePoint {
                colour: families.colour(gi),
                tag: families.tags[gi].clone(),
                x: xm,
                x_sd: xs,
                y: ym,
                y_sd: e.acc_std,
            });
        }
        if !points.is_empty() {
            panels.push((set.set.clone(), points));
        }
    }
    if panels.is_empty() {
        return None;
    }
    let (title, x_label) = match x {
        PlaneX::Ce => (
            "accuracy vs cross-entropy per evaluation set",
            "CE with the true labels, nats (mean per image)",
        ),
        PlaneX::HumanCe => (
            "accuracy vs cross-entropy to the human label distribution",
            "CE to human labels, nats (mean per image)",
        ),
    };
    Some(PlaneFigure {
        title: title.to_string(),
        subtitle:
            "one point per configuration, mean ± sample std over repeats; upper left is better"
                .to_string(),
        x_label: x_label.to_string(),
        panels,
        legend: drawn
            .into_iter()
            .map(|f| (families.names[f].clone(), families::palette(f)))
            .collect(),
    })
}

impl Figure for PlaneFigure {
    fn size(&self) -> (u32, u32) {
        let (rows, cols) = panel_grid(self.panels.len());
        let labels = self.legend.iter().map(|(l, _)| l.as_str());
        let legend = legend_allowance(self.legend.len(), labels, 560);
        (560 * cols as u32 + 40, (460 + legend) * rows as u32 + 80)
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult {
        let cells = titled_panels(
            area,
            (&self.title, 18),
            (&self.subtitle, 13),
            self.panels.len(),
        )?;
        for ((set, points), cell) in self.panels.iter().zip(cells) {
            let (x0, x1) = padded(
                points.iter().flat_map(|p| {
                    let s = p.x_sd.unwrap_or(0.0);
                    [p.x - s, p.x + s]
                }),
                1e-3,
            );
            let (y0, y1) = padded(
                points.iter().flat_map(|p| {
                    let s = p.y_sd.unwrap_or(0.0);
                    [p.y - s, p.y + s]
                }),
                1e-3,
            );
            let entries: Vec<Entry> = self
                .legend
                .iter()
                .filter(|(_, c)| points.iter().any(|p| p.colour == *c))
                .map(|(label, c)| Entry::new(label, Swatch::Dot(*c)))
                .collect();
            let (chart_area, strip) = legend::chart_and_legend(&cell, &entries)?;
            let mut chart = ChartBuilder::on(&chart_area)
                .caption(set, ("sans-serif", 17))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(64)
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_desc(&self.x_label)
                .y_desc("top-1 accuracy")
                .label_style(("sans-serif", 13))
                .axis_desc_style(("sans-serif", 14))
                .light_line_style(WHITE.mix(0.0))
                .draw()
                .map_err(err)?;
            for (_, c) in &self.legend {
                let c = *c;
                let mine: Vec<&PlanePoint> = points.iter().filter(|p| p.colour == c).collect();
                if mine.is_empty() {
                    continue;
                }
                chart
                    .draw_series(mine.iter().filter_map(|p| {
                        p.y_sd
                            .map(|s| ErrorBar::new_vertical(p.x, p.y - s, p.y, p.y + s, c, 6))
                    }))
                    .map_err(err)?;
                chart
                    .draw_series(mine.iter().filter_map(|p| {
                        p.x_sd
                            .map(|s| ErrorBar::new_horizontal(p.y, p.x - s, p.x, p.x + s, c, 6))
                    }))
                    .map_err(err)?;
                chart
                    .draw_series(mine.iter().map(|p| Circle::new((p.x, p.y), 5, c.filled())))
                    .map_err(err)?;
            }
            // tags where they overlap neither each other nor the points
            let tagged: Vec<&PlanePoint> = points.iter().filter(|p| !p.tag.is_empty()).collect();
            let pixels: Vec<(i32, i32)> = points
                .iter()
                .filter(|p| !p.tag.is_empty())
                .chain(points.iter().filter(|p| p.tag.is_empty()))
                .map(|p| chart.backend_coord(&(p.x, p.y)))
                .collect();
            let sizes: Vec<(i32, i32)> = tagged
                .iter()
                .map(|p| labels::text_size(&p.tag, 10))
                .collect();
            let (xr, yr) = chart.plotting_area().get_pixel_range();
            let bounds = labels::PixelBox {
                x: xr.start,
                y: yr.start,
                w: xr.end - xr.start,
                h: yr.end - yr.start,
            };
            let offsets = labels::place_labels(&pixels, &sizes, 5, bounds);
            chart
                .draw_series(tagged.iter().zip(&offsets).map(|(p, &(dx, dy))| {
                    EmptyElement::at((p.x, p.y))
                        + Text::new(p.tag.clone(), (dx, dy), ("sans-serif", 10).into_font())
                }))
                .map_err(err)?;
            Layout::record_plot(&chart);
            legend::draw(&strip, &entries)?;
        }
        Ok(())
    }
}

/// The names, colours and full identities of the configurations in the figures, as
/// written to `fig/legend.csv`: `label`, `family`, `colour`, then every key.
pub fn figure_legend(
    groups: &[GroupSummary],
    keys: &[String],
    runs: &[RunRecord],
    run_groups: &[Option<usize>],
) -> Result<polars::prelude::DataFrame> {
    Families::new(groups, keys, runs, run_groups).legend_frame(groups, keys)
}

/// Draws every figure into `fig_dir` (created): `acc_vs_lambda`, `ce_vs_lambda` (when λ is
/// a key and some family has two λ values), with evaluation data `acc_ce_plane` and
/// `acc_human_ce_plane`, with calibration data `reliability`,
/// `reliability_temperature_scaled` and `confidence_gap`, and `curves/<group>` for the best
/// run of each group. Returns the files in that order. `run_groups` gives each run's group
/// (`crate::Analysis::run_groups`).
pub fn draw_figures(
    fig_dir: &Path,
    groups: &[GroupSummary],
    keys: &[String],
    eval_sets: &[EvalSetColumns],
    runs: &[RunRecord],
    run_groups: &[Option<usize>],
) -> Result<Vec<FigureFiles>> {
    std::fs::create_dir_all(fig_dir).map_err(|e| AnalysisError::write(fig_dir, e))?;
    let families = Families::new(groups, keys, runs, run_groups);
    let mut out = Vec::new();
    for (metric, stem) in [
        (LambdaMetric::Acc, "acc_vs_lambda"),
        (LambdaMetric::Ce, "ce_vs_lambda"),
    ] {
        if let Some(fig) = lambda_figure(groups, keys, &families, metric) {
            let caption = format!("{} ({})", fig.title, fig.subtitle);
            out.push(render(&fig, fig_dir, stem, caption)?);
        }
    }
    for (x, stem) in [
        (PlaneX::Ce, "acc_ce_plane"),
        (PlaneX::HumanCe, "acc_human_ce_plane"),
    ] {
        if let Some(fig) = plane_figure(groups, &families, eval_sets, x) {
            let caption = format!("{} ({})", fig.title, fig.subtitle);
            out.push(render(&fig, fig_dir, stem, caption)?);
        }
    }
    let by_group = calibration::runs_by_group(runs, run_groups, groups.len());
    for (scaling, stem) in [
        (calibration::Scaling::Raw, "reliability"),
        (
            calibration::Scaling::Scaled,
            "reliability_temperature_scaled",
        ),
    ] {
        if let Some(fig) = calibration::reliability_figure(&families, eval_sets, &by_group, scaling)
        {
            let caption = format!("{} ({})", fig.title, fig.subtitle);
            out.push(render(&fig, fig_dir, stem, caption)?);
        }
    }
    if let Some(fig) = calibration::gap_figure(&families, eval_sets, &by_group) {
        let caption = format!("{} ({})", fig.title, fig.subtitle);
        out.push(render(&fig, fig_dir, "confidence_gap", caption)?);
    }
    let by_dir: BTreeMap<&str, &RunRecord> = runs.iter().map(|r| (r.rel_dir.as_str(), r)).collect();
    let curves_dir = fig_dir.join("curves");
    let all_keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let jobs: Vec<(&GroupSummary, &RunRecord)> = groups
        .iter()
        .filter_map(|g| by_dir.get(g.best_run_dir.as_str()).map(|r| (g, *r)))
        .collect();
    if !jobs.is_empty() {
        std::fs::create_dir_all(&curves_dir).map_err(|e| AnalysisError::write(&curves_dir, e))?;
    }
    use rayon::prelude::*;
    let curves: Vec<Result<FigureFiles>> = jobs
        .par_iter()
        .map(|(g, r)| {
            let fig = CurvesFigure {
                title: format!(
                    "{} — best of {} run(s): iter {}",
                    g.label(&all_keys),
                    g.runs,
                    r.config.spec.iter
                ),
                metrics: r.metrics.clone(),
                best_epoch: r.best.epoch,
            };
            let caption = format!("training curves, {}", g.label(&all_keys));
            render(&fig, &curves_dir, &g.slug(), caption)
        })
        .collect();
    for c in curves {
        out.push(c?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_subtitle_wraps_after_its_separators() {
        ensure_font().unwrap();
        let mut svg = String::new();
        let area = SVGBackend::with_string(&mut svg, (400, 100)).into_drawing_area();
        let sub = "15 equal-width confidence bins, pooled over repeats; below the diagonal is \
                   over-confident; hollow: a bin of fewer than 30 images";
        let lines = wrap_subtitle(&area, sub, 13, 376).unwrap();
        assert!(lines.len() >= 2, "{lines:?}");
        assert_eq!(lines.join("; "), sub, "nothing lost or reordered");
        let font: TextStyle = ("sans-serif", 13).into_font().into();
        for l in &lines {
            let (w, _) = area.estimate_text_size(l, &font).unwrap();
            // a single part may be wider than a line; these parts are not
            assert!(w <= 376, "`{l}` is {w} px");
        }
        // a short subtitle stays one line
        assert_eq!(
            wrap_subtitle(&area, "mean ± sd", 13, 376).unwrap(),
            ["mean ± sd"]
        );
    }

    #[test]
    fn panels_fill_their_rows() {
        // (rows, columns): never a row with two empty places, 4 panels as 2 × 2
        let grids: Vec<(usize, usize)> = (1..=7).map(panel_grid).collect();
        assert_eq!(
            grids,
            [(1, 1), (1, 2), (1, 3), (2, 2), (2, 3), (2, 3), (3, 3)]
        );
        for n in 1..=9 {
            let (rows, cols) = panel_grid(n);
            assert!(
                rows * cols >= n && rows * cols - n < cols,
                "{n} panels: {rows} × {cols}"
            );
        }
    }
}
