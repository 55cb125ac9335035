//! Legends outside the plot area, and the check that none covers one.
//!
//! Every panel of every figure is cut into its chart and, below it, a strip for its legend
//! ([`chart_and_legend`]): the legend's entries run left to right and wrap, so a legend
//! never covers a point, a line or an error bar, however the data fall. [`Layout`] records
//! the pixel rectangles of each plot area and each legend while a figure draws, and
//! `render` refuses a figure where the two meet (a bug here, never the data's fault).

use std::cell::RefCell;
use std::ops::Range;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{DrawResult, err};

/// Font size of the legends' labels.
const FONT_SIZE: u32 = 12;
/// Height of one row of entries, in pixels.
const ROW: i32 = 18;
/// Width of the swatch in front of each label.
const SWATCH: i32 = 20;
/// Padding around the strip, and between entries.
const PAD: i32 = 6;
const GAP: i32 = 16;

/// How an entry shows its series.
#[derive(Clone, Copy)]
pub(super) enum Swatch {
    /// A line of that colour.
    Line(RGBColor),
    /// A dashed grey line (a reference, such as the diagonal).
    Reference,
    /// A filled dot.
    Dot(RGBColor),
    /// A line with marker shape `kind` (see `calibration::marker_shape`).
    LineMarker(RGBColor, usize),
}

/// One entry of a legend: what its series is called and how it is drawn.
#[derive(Clone)]
pub(super) struct Entry {
    pub label: String,
    pub swatch: Swatch,
}

impl Entry {
    pub fn new(label: impl Into<String>, swatch: Swatch) -> Entry {
        Entry {
            label: label.into(),
            swatch,
        }
    }
}

/// The x offset and row of each entry in a strip `width` pixels wide, and the number of
/// rows, from each label's text width.
fn flow(widths: &[i32], width: i32) -> (Vec<(i32, i32)>, i32) {
    let mut at = Vec::with_capacity(widths.len());
    let (mut x, mut row) = (PAD, 0);
    for &w in widths {
        let needed = SWATCH + 6 + w;
        if x > PAD && x + needed > width - PAD {
            x = PAD;
            row += 1;
        }
        at.push((x, row));
        x += needed + GAP;
    }
    let rows = if widths.is_empty() { 0 } else { row + 1 };
    (at, rows)
}

/// Each entry's label as drawn, and its width in pixels, in a strip `width` pixels wide: a
/// label wider than the strip is cut and ends in `...` (`fig/legend.csv` has every name whole).
fn fitted<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[Entry],
    width: i32,
) -> Result<Vec<(String, i32)>, String> {
    let font: TextStyle = ("sans-serif", FONT_SIZE).into_font().into();
    let measure = |t: &str| {
        area.estimate_text_size(t, &font)
            .map(|(w, _)| w as i32)
            .map_err(err)
    };
    let room = width - 2 * PAD - SWATCH - 6;
    entries
        .iter()
        .map(|e| {
            let w = measure(&e.label)?;
            if w <= room {
                return Ok((e.label.clone(), w));
            }
            // the longest prefix (whole characters) that fits with the ellipsis
            let chars: Vec<char> = e.label.chars().collect();
            let (mut lo, mut hi) = (0, chars.len());
            while lo < hi {
                let mid = (lo + hi).div_ceil(2);
                let t: String = chars[..mid].iter().chain(['.'; 3].iter()).collect();
                if measure(&t)? <= room {
                    lo = mid;
                } else {
                    hi = mid - 1;
                }
            }
            let t: String = chars[..lo].iter().chain(['.'; 3].iter()).collect();
            let w = measure(&t)?;
            Ok((t, w))
        })
        .collect()
}

/// The height of the strip `entries` need in `area`'s width (0 without entries).
fn strip_height<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[Entry],
) -> Result<i32, String> {
    if entries.is_empty() {
        return Ok(0);
    }
    let w = area.dim_in_pixel().0 as i32;
    let widths: Vec<i32> = fitted(area, entries, w)?.iter().map(|l| l.1).collect();
    let (_, rows) = flow(&widths, w);
    Ok(rows * ROW + 2 * PAD)
}

/// Pixels a legend of `n` entries of at most `longest` characters may need in a panel
/// `width` pixels wide: for figure sizes, so that the charts keep their height.
pub(super) fn allowance(n: usize, longest: usize, width: u32) -> u32 {
    if n == 0 {
        return 0;
    }
    let per = SWATCH + 6 + (longest as f64 * 0.62 * FONT_SIZE as f64).ceil() as i32 + GAP;
    let per_row = ((width as i32 - 2 * PAD) / per.max(1)).max(1) as usize;
    (n.div_ceil(per_row) as i32 * ROW + 2 * PAD) as u32
}

/// A panel's chart area and its legend strip.
pub(super) type ChartAndStrip<DB> = (DrawingArea<DB, Shift>, DrawingArea<DB, Shift>);

/// `cell` cut into the area for its chart and, below it, the legend strip for `entries`
/// (empty when there are none).
pub(super) fn chart_and_legend<DB: DrawingBackend>(
    cell: &DrawingArea<DB, Shift>,
    entries: &[Entry],
) -> Result<ChartAndStrip<DB>, String> {
    let h = strip_height(cell, entries)?;
    let (_, total) = cell.dim_in_pixel();
    Ok(cell.split_vertically((total as i32 - h).max(0)))
}

/// Draws `entries` in `strip` (from [`chart_and_legend`]) and records it in the [`Layout`].
pub(super) fn draw<DB: DrawingBackend>(
    strip: &DrawingArea<DB, Shift>,
    entries: &[Entry],
) -> DrawResult {
    if entries.is_empty() {
        return Ok(());
    }
    let w = strip.dim_in_pixel().0 as i32;
    let labels = fitted(strip, entries, w)?;
    let widths: Vec<i32> = labels.iter().map(|l| l.1).collect();
    let (at, _) = flow(&widths, w);
    let font = ("sans-serif", FONT_SIZE).into_font();
    for ((e, (label, lw)), &(x, row)) in entries.iter().zip(&labels).zip(&at) {
        if x + SWATCH + 6 + lw > w - PAD + 1 {
            return Err(format!(
                "legend entry `{label}` runs past its strip ({} > {} px; a bug in hkd-analysis)",
                x + SWATCH + 6 + lw,
                w - PAD
            ));
        }
        let y = PAD + row * ROW + ROW / 2;
        let line = |c: RGBColor| PathElement::new(vec![(x, y), (x + SWATCH, y)], c.stroke_width(2));
        match e.swatch {
            Swatch::Line(c) => strip.draw(&line(c)).map_err(err)?,
            Swatch::Reference => {
                for s in (0..SWATCH).step_by(8) {
                    strip
                        .draw(&PathElement::new(
                            vec![(x + s, y), (x + (s + 5).min(SWATCH), y)],
                            BLACK.mix(0.45).stroke_width(1),
                        ))
                        .map_err(err)?;
                }
            }
            Swatch::Dot(c) => strip
                .draw(&Circle::new((x + SWATCH / 2, y), 5, c.filled()))
                .map_err(err)?,
            Swatch::LineMarker(c, kind) => {
                strip.draw(&line(c)).map_err(err)?;
                strip
                    .draw(&Polygon::new(
                        super::calibration::marker_shape(kind, (x + SWATCH / 2, y)),
                        c.filled(),
                    ))
                    .map_err(err)?;
            }
        }
        strip
            .draw(&Text::new(
                label.clone(),
                (x + SWATCH + 6, y - FONT_SIZE as i32 / 2 - 1),
                font.clone(),
            ))
            .map_err(err)?;
    }
    Layout::record(Part::Legend, strip.get_pixel_range());
    Ok(())
}

/// What a recorded rectangle is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    Plot,
    Legend,
}

/// A rectangle in the figure's pixels: x range, y range.
pub(super) type Rect = (Range<i32>, Range<i32>);

thread_local! {
    static RECORDED: RefCell<Vec<(Part, Rect)>> = const { RefCell::new(Vec::new()) };
}

/// The plot areas and legends of the figure the current thread is drawing.
pub(super) struct Layout;

impl Layout {
    /// Forgets what was recorded (before a figure draws).
    pub fn clear() {
        RECORDED.with(|r| r.borrow_mut().clear());
    }

    pub fn record(part: Part, rect: Rect) {
        RECORDED.with(|r| r.borrow_mut().push((part, rect)));
    }

    /// Records the plot area of `chart` (call it for every chart with data).
    pub fn record_plot<DB: DrawingBackend, CT: plotters::coord::CoordTranslate>(
        chart: &ChartContext<'_, DB, CT>,
    ) {
        Layout::record(Part::Plot, chart.plotting_area().get_pixel_range());
    }

    /// What was recorded since [`Layout::clear`].
    pub fn recorded() -> Vec<(Part, Rect)> {
        RECORDED.with(|r| r.borrow().clone())
    }
}

fn overlaps(a: &Rect, b: &Rect) -> bool {
    a.0.start < b.0.end && b.0.start < a.0.end && a.1.start < b.1.end && b.1.start < a.1.end
}

/// The first legend that meets a plot area, as a message: `None` when every legend is clear
/// of every plot area.
pub(super) fn check(parts: &[(Part, Rect)]) -> Option<String> {
    let of = |p: Part| parts.iter().filter(move |(q, _)| *q == p).map(|(_, r)| r);
    for legend in of(Part::Legend) {
        if let Some(plot) = of(Part::Plot).find(|plot| overlaps(legend, plot)) {
            return Some(format!(
                "a legend (pixels x {:?}, y {:?}) covers a plot area (x {:?}, y {:?})",
                legend.0, legend.1, plot.0, plot.1
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_wrap_to_the_strip_width() {
        // three labels of 100 px: one row in 500 px, two in 300, three in 140
        let w = [100, 100, 100];
        assert_eq!(flow(&w, 500).1, 1);
        let (at, rows) = flow(&w, 300);
        assert_eq!(rows, 2);
        assert_eq!(
            at,
            vec![(PAD, 0), (PAD + SWATCH + 6 + 100 + GAP, 0), (PAD, 1)]
        );
        assert_eq!(flow(&w, 140).1, 3);
        // a label wider than the strip still gets a row of its own
        assert_eq!(flow(&[900], 200), (vec![(PAD, 0)], 1));
        assert_eq!(flow(&[], 200).1, 0);
    }

    #[test]
    fn a_label_wider_than_its_strip_is_cut_to_fit() {
        super::super::ensure_font().unwrap();
        let mut svg = String::new();
        let area = SVGBackend::with_string(&mut svg, (300, 60)).into_drawing_area();
        let long = "teacher=human, objective=dkd, T=4.0, ce_weight=1.0, alpha_tckd=0.0, \
                    beta_nckd=8.0, warmup_epochs=3";
        let entries = [
            Entry::new("hard", Swatch::Dot(BLACK)),
            Entry::new(long, Swatch::Dot(BLACK)),
        ];
        let labels = fitted(&area, &entries, 300).unwrap();
        assert_eq!(labels[0].0, "hard");
        let (cut, w) = &labels[1];
        assert!(cut.ends_with("...") && cut.len() < long.len(), "{cut}");
        assert!(long.starts_with(cut.trim_end_matches('.')), "{cut}");
        assert!(*w <= 300 - 2 * PAD - SWATCH - 6, "{w} px");
        // and it draws inside the strip (draw refuses an entry that runs past it)
        draw(&area, &entries).unwrap();
    }

    #[test]
    fn the_check_finds_a_legend_on_a_plot_area() {
        let plot = (Part::Plot, (10..200, 10..150));
        let below = (Part::Legend, (10..200, 150..180));
        assert_eq!(check(&[plot.clone(), below.clone()]), None);
        // one pixel row into the plot area is an overlap
        let planted = (Part::Legend, (10..200, 149..180));
        let message = check(&[plot.clone(), below, planted]).expect("the overlap is found");
        assert!(message.contains("y 149..180"), "{message}");
        // a legend beside a second panel, clear of both
        let second = (Part::Plot, (210..400, 10..150));
        assert_eq!(
            check(&[plot, second, (Part::Legend, (200..210, 0..400))]),
            None
        );
    }
}
