//! Calibration figures: reliability diagrams per evaluation set, and the signed
//! confidence − accuracy gap per set and configuration.

use std::ops::Range;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::prelude::*;

use super::families::Families;
use super::legend::{self, Entry, Layout, Swatch};
use super::{DrawResult, Figure, err, legend_allowance, padded, panel_grid, titled_panels};

/// The legend's name for the diagonal.
const REFERENCE: &str = "perfect calibration";
use crate::load::RunRecord;
use crate::table::EvalSetColumns;

/// Before or after temperature scaling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scaling {
    Raw,
    Scaled,
}

/// One configuration's reliability curve: its bins pooled over repeats.
struct ReliabilityLine {
    label: String,
    colour: RGBColor,
    /// Marker shape: the configuration's place within its family in this panel.
    marker: usize,
    /// (mean confidence, accuracy) of every non-empty pooled bin, in bin order.
    points: Vec<(f64, f64)>,
    /// The images in each of those bins (pooled over the repeats).
    counts: Vec<usize>,
}

/// A pooled bin of fewer images than this is drawn hollow with its count beside it: its
/// accuracy is a small sample, and a spike there says little.
pub(super) const FEW_IMAGES: usize = 30;

/// Reliability diagrams: a panel per evaluation set, a line per configuration.
pub(super) struct ReliabilityFigure {
    pub title: String,
    pub subtitle: String,
    panels: Vec<(String, Vec<ReliabilityLine>)>,
}

/// Pools the reliability bins of `runs` on `set` by summing counts: a bin's pooled mean
/// confidence and accuracy are the count-weighted means of the runs'. `None` when no run
/// has bins there.
fn pooled_bins(runs: &[&RunRecord], set: &str, scaling: Scaling) -> Option<Vec<(f64, f64, usize)>> {
    let mut sums: Vec<(usize, f64, f64)> = Vec::new();
    let mut any = false;
    for r in runs {
        let Some(m) = r.eval.as_ref().and_then(|e| e.sets.get(set)) else {
            continue;
        };
        let bins = match scaling {
            Scaling::Raw => &m.reliability,
            Scaling::Scaled => match &m.temperature_scaled {
                Some(t) => &t.reliability,
                None => continue,
            },
        };
        if bins.is_empty() {
            continue;
        }
        any = true;
        if sums.len() < bins.len() {
            sums.resize(bins.len(), (0, 0.0, 0.0));
        }
        for (s, b) in sums.iter_mut().zip(bins) {
            if let (Some(c), Some(a)) = (b.mean_confidence, b.accuracy) {
                s.0 += b.count;
                s.1 += b.count as f64 * c;
                s.2 += b.count as f64 * a;
            }
        }
    }
    any.then(|| {
        sums.into_iter()
            .filter(|s| s.0 > 0)
            .map(|(n, c, a)| (c / n as f64, a / n as f64, n))
            .collect()
    })
}

/// The runs of each group (index into the groups), in path order.
pub(super) fn runs_by_group<'a>(
    runs: &'a [RunRecord],
    run_groups: &[Option<usize>],
    groups: usize,
) -> Vec<Vec<&'a RunRecord>> {
    let mut out = vec![Vec::new(); groups];
    for (r, g) in runs.iter().zip(run_groups) {
        if let Some(g) = g {
            out[*g].push(r);
        }
    }
    out
}

pub(super) fn reliability_figure(
    families: &Families,
    sets: &[EvalSetColumns],
    by_group: &[Vec<&RunRecord>],
    scaling: Scaling,
) -> Option<ReliabilityFigure> {
    let mut panels = Vec::new();
    for set in sets {
        let mut lines: Vec<ReliabilityLine> = Vec::new();
        for (g, group_runs) in by_group.iter().enumerate() {
            let Some(bins) = pooled_bins(group_runs, &set.set, scaling) else {
                continue;
            };
            let points = bins.iter().map(|&(c, a, _)| (c, a)).collect();
            let counts = bins.iter().map(|&(_, _, n)| n).collect();
            let marker = lines
                .iter()
                .filter(|l| l.colour == families.colour(g))
                .count();
            lines.push(ReliabilityLine {
                label: families.config_label(g),
                colour: families.colour(g),
                marker,
                points,
                counts,
            });
        }
        if !lines.is_empty() {
            panels.push((set.set.clone(), lines));
        }
    }
    if panels.is_empty() {
        return None;
    }
    let (title, after) = match scaling {
        Scaling::Raw => ("reliability per evaluation set", ""),
        Scaling::Scaled => (
            "reliability per evaluation set after temperature scaling",
            ", softmax(z / T) with each run's fitted T",
        ),
    };
    Some(ReliabilityFigure {
        title: title.to_string(),
        subtitle: format!(
            "15 equal-width confidence bins, pooled over repeats (bin counts summed){after}; \
             below the diagonal is over-confident; hollow: a bin of fewer than {FEW_IMAGES} \
             images, its count beside it"
        ),
        panels,
    })
}

/// The vertices of marker `kind` (circle, triangle, square, diamond, then again) around
/// `c`, in pixels: one element type for every shape, in the plot and in the legend.
pub(super) fn marker_shape(kind: usize, c: (i32, i32)) -> Vec<(i32, i32)> {
    let at = |v: &[(i32, i32)]| v.iter().map(|&(x, y)| (c.0 + x, c.1 + y)).collect();
    match kind % 4 {
        0 => at(&[
            (4, 0),
            (3, 2),
            (2, 3),
            (0, 4),
            (-2, 3),
            (-3, 2),
            (-4, 0),
            (-3, -2),
            (-2, -3),
            (0, -4),
            (2, -3),
            (3, -2),
        ]),
        1 => at(&[(0, -5), (5, 4), (-5, 4)]),
        2 => at(&[(-4, -4), (4, -4), (4, 4), (-4, 4)]),
        _ => at(&[(0, -5), (5, 0), (0, 5), (-5, 0)]),
    }
}

impl Figure for ReliabilityFigure {
    fn size(&self) -> (u32, u32) {
        let (rows, cols) = panel_grid(self.panels.len());
        let most = self
            .panels
            .iter()
            .map(|(_, l)| l.len() + 1)
            .max()
            .unwrap_or(0);
        let labels = self
            .panels
            .iter()
            .flat_map(|(_, l)| l)
            .map(|l| l.label.as_str())
            .chain([REFERENCE]);
        let legend = legend_allowance(most, labels, 520);
        (520 * cols as u32 + 40, (500 + legend) * rows as u32 + 80)
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult {
        let cells = titled_panels(
            area,
            (&self.title, 20),
            (&self.subtitle, 13),
            self.panels.len(),
        )?;
        for ((set, lines), cell) in self.panels.iter().zip(cells) {
            let entries: Vec<Entry> = std::iter::once(Entry::new(REFERENCE, Swatch::Reference))
                .chain(
                    lines
                        .iter()
                        .map(|l| Entry::new(&l.label, Swatch::LineMarker(l.colour, l.marker))),
                )
                .collect();
            let (chart_area, strip) = legend::chart_and_legend(&cell, &entries)?;
            let mut chart = ChartBuilder::on(&chart_area)
                .caption(set, ("sans-serif", 17))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(56)
                .build_cartesian_2d(0f64..1f64, 0f64..1f64)
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_desc("confidence (mean in the bin)")
                .y_desc("accuracy in the bin")
                .label_style(("sans-serif", 13))
                .axis_desc_style(("sans-serif", 14))
                .light_line_style(WHITE.mix(0.0))
                .draw()
                .map_err(err)?;
            chart
                .draw_series(DashedLineSeries::new(
                    [(0.0, 0.0), (1.0, 1.0)],
                    6,
                    4,
                    BLACK.mix(0.45).stroke_width(1),
                ))
                .map_err(err)?;
            for line in lines {
                let c = line.colour;
                let kind = line.marker;
                chart
                    .draw_series(LineSeries::new(line.points.clone(), c.stroke_width(2)))
                    .map_err(err)?;
                // a marker shape per configuration of the family, so that they can be told
                // apart
                let few = |n: usize| n < FEW_IMAGES;
                chart
                    .draw_series(
                        line.points
                            .iter()
                            .zip(&line.counts)
                            .filter(|(_, n)| !few(**n))
                            .map(|(&p, _)| {
                                EmptyElement::at(p)
                                    + Polygon::new(marker_shape(kind, (0, 0)), c.filled())
                            }),
                    )
                    .map_err(err)?;
                // few images: a hollow marker and the count, so a spike reads as what it is
                chart
                    .draw_series(
                        line.points
                            .iter()
                            .zip(&line.counts)
                            .filter(|(_, n)| few(**n))
                            .map(|(&p, &n)| {
                                let mut outline = marker_shape(kind, (0, 0));
                                if let Some(&first) = outline.first() {
                                    outline.push(first);
                                }
                                EmptyElement::at(p)
                                    + PathElement::new(outline, c.stroke_width(1))
                                    + Text::new(
                                        format!("n={n}"),
                                        (6, -12),
                                        ("sans-serif", 10).into_font().color(&c),
                                    )
                            }),
                    )
                    .map_err(err)?;
            }
            Layout::record_plot(&chart);
            legend::draw(&strip, &entries)?;
        }
        Ok(())
    }
}

/// One configuration's row of the gap figure.
struct GapRow {
    label: String,
    colour: RGBColor,
    /// The repeats' gaps, before and after temperature scaling (empty without it).
    raw: Vec<f64>,
    scaled: Vec<f64>,
}

/// The signed gap mean confidence − accuracy, a panel per evaluation set, a row per
/// configuration: every repeat as a small dot, the mean ± 1 sample sd as a bar.
pub(super) struct GapFigure {
    pub title: String,
    pub subtitle: String,
    panels: Vec<(String, Vec<GapRow>)>,
    /// Pixels for the row labels.
    label_width: u32,
}

pub(super) fn gap_figure(
    families: &Families,
    sets: &[EvalSetColumns],
    by_group: &[Vec<&RunRecord>],
) -> Option<GapFigure> {
    let mut panels = Vec::new();
    let mut any_scaled = false;
    for set in sets.iter().filter(|s| s.confidence) {
        let mut rows = Vec::new();
        for (g, group_runs) in by_group.iter().enumerate() {
            let metrics = group_runs
                .iter()
                .filter_map(|r| r.eval.as_ref().and_then(|e| e.sets.get(&set.set)));
            let raw: Vec<f64> = metrics.clone().filter_map(|m| m.confidence_gap()).collect();
            let scaled: Vec<f64> = metrics
                .filter_map(|m| {
                    m.temperature_scaled
                        .as_ref()
                        .map(|t| t.mean_confidence - m.accuracy)
                })
                .collect();
            if raw.is_empty() {
                continue;
            }
            any_scaled |= !scaled.is_empty();
            rows.push(GapRow {
                label: families.config_label(g),
                colour: families.colour(g),
                raw,
                scaled,
            });
        }
        if !rows.is_empty() {
            panels.push((set.set.clone(), rows));
        }
    }
    if panels.is_empty() {
        return None;
    }
    let longest = panels
        .iter()
        .flat_map(|(_, rows)| rows.iter().map(|r| r.label.chars().count()))
        .max()
        .unwrap_or(0);
    Some(GapFigure {
        title: "signed calibration gap: mean confidence − accuracy".to_string(),
        subtitle: format!(
            "> 0 over-confident, < 0 under-confident; ticks: repeats, circle and bar: mean ± sample sd{}",
            if any_scaled {
                "; hollow: after temperature scaling"
            } else {
                ""
            }
        ),
        panels,
        label_width: (longest as f64 * 7.2) as u32 + 24,
    })
}

/// The row axis of the gap figure: rows at 0, 1, …, n − 1 (tick marks exactly there, for
/// the configurations' labels), with half a row of room at each end.
struct RowAxis {
    rows: usize,
}

impl RowAxis {
    fn ends(&self) -> (f64, f64) {
        (-0.6, self.rows as f64 - 0.4)
    }
}

impl Ranged for RowAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let (lo, hi) = self.ends();
        let t = (v - lo) / (hi - lo);
        limit.0 + ((limit.1 - limit.0) as f64 * t + 1e-3).floor() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            (0..self.rows).map(|i| i as f64).collect()
        }
    }

    fn range(&self) -> Range<f64> {
        let (lo, hi) = self.ends();
        lo..hi
    }
}

fn mean_sd(v: &[f64]) -> Option<(f64, Option<f64>)> {
    if v.is_empty() {
        return None;
    }
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let sd =
        (v.len() > 1).then(|| (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    Some((m, sd))
}

impl Figure for GapFigure {
    fn size(&self) -> (u32, u32) {
        let (rows, cols) = panel_grid(self.panels.len());
        let most = self.panels.iter().map(|p| p.1.len()).max().unwrap_or(1) as u32;
        (
            (self.label_width + 420) * cols as u32 + 40,
            (34 * most + 150).max(400) * rows as u32 + 80,
        )
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult {
        let cells = titled_panels(
            area,
            (&self.title, 20),
            (&self.subtitle, 13),
            self.panels.len(),
        )?;
        for ((set, lines), cell) in self.panels.iter().zip(cells) {
            let n = lines.len();
            let (x0, x1) = padded(
                lines
                    .iter()
                    .flat_map(|r| r.raw.iter().chain(&r.scaled).copied())
                    .chain([0.0]),
                0.02,
            );
            // row i at y = n − 1 − i: the first configuration on top
            let labels: Vec<String> = lines.iter().map(|r| r.label.clone()).collect();
            let row_y = |i: usize| (n - 1 - i) as f64;
            let mut chart = ChartBuilder::on(&cell)
                .caption(set, ("sans-serif", 17))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(self.label_width)
                .build_cartesian_2d(x0..x1, RowAxis { rows: n })
                .map_err(err)?;
            let label_of = |v: &f64| {
                let i = v.round();
                if (v - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < n {
                    labels[n - 1 - i as usize].clone()
                } else {
                    String::new()
                }
            };
            chart
                .configure_mesh()
                .x_desc("mean confidence − accuracy")
                .y_label_formatter(&label_of)
                .label_style(("sans-serif", 12))
                .axis_desc_style(("sans-serif", 14))
                .light_line_style(WHITE.mix(0.0))
                .draw()
                .map_err(err)?;
            chart
                .draw_series(LineSeries::new(
                    [(0.0, -0.6), (0.0, n as f64 - 0.4)],
                    BLACK.mix(0.5).stroke_width(1),
                ))
                .map_err(err)?;
            for (i, r) in lines.iter().enumerate() {
                let c = r.colour;
                for (values, dy, filled) in [(&r.raw, 0.12, true), (&r.scaled, -0.18, false)] {
                    let y = row_y(i) + dy;
                    // every repeat a short vertical tick, so that equal values stay visible
                    chart
                        .draw_series(values.iter().map(|&v| {
                            EmptyElement::at((v, y))
                                + PathElement::new(
                                    vec![(0, -6), (0, 6)],
                                    c.mix(0.6).stroke_width(2),
                                )
                        }))
                        .map_err(err)?;
                    let Some((m, sd)) = mean_sd(values) else {
                        continue;
                    };
                    if let Some(sd) = sd {
                        chart
                            .draw_series(std::iter::once(ErrorBar::new_horizontal(
                                y,
                                m - sd,
                                m,
                                m + sd,
                                c.stroke_width(2),
                                8,
                            )))
                            .map_err(err)?;
                    }
                    // the mean: filled before temperature scaling, hollow after
                    let inside = if filled { c.filled() } else { WHITE.filled() };
                    chart
                        .draw_series(std::iter::once(
                            EmptyElement::at((m, y))
                                + Circle::new((0, 0), 5, inside)
                                + Circle::new((0, 0), 5, c.stroke_width(2)),
                        ))
                        .map_err(err)?;
                }
            }
        }
        Ok(())
    }
}
