//! Placing point labels so that they overlap neither each other nor the points.
//!
//! Deterministic and backend-independent: text boxes are estimated from the number of
//! characters (DejaVu Sans at the label size), so the SVG and the PNG place every label at
//! the same spot.

/// An axis-aligned box in pixels: left, top, width, height.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PixelBox {
    pub x: i32,
    pub y: i32,
    pub w: i32,
    pub h: i32,
}

impl PixelBox {
    fn overlap(&self, o: &PixelBox) -> i64 {
        let dx = (self.x + self.w).min(o.x + o.w) - self.x.max(o.x);
        let dy = (self.y + self.h).min(o.y + o.h) - self.y.max(o.y);
        if dx > 0 && dy > 0 {
            dx as i64 * dy as i64
        } else {
            0
        }
    }

    /// Area of `self` outside `area`.
    fn outside(&self, area: &PixelBox) -> i64 {
        self.w as i64 * self.h as i64 - self.overlap(area)
    }
}

/// The estimated size of `text` at font size `size` px: DejaVu Sans averages about 0.6 em
/// per character.
pub(crate) fn text_size(text: &str, size: u32) -> (i32, i32) {
    let chars = text.chars().count() as f64;
    (
        (chars * 0.6 * size as f64).ceil() as i32 + 2,
        size as i32 + 2,
    )
}

/// The offsets `(dx, dy)` of each label's top-left corner from its point, chosen in the
/// order given: the first of the candidate positions around the point (right above, right
/// below, left above, left below, right, left, above, below, then the same farther out)
/// whose box overlaps no label placed before, no point (a square of `radius`) and stays
/// inside `area`; when none is free, the one with the least overlap.
pub(crate) fn place_labels(
    points: &[(i32, i32)],
    sizes: &[(i32, i32)],
    radius: i32,
    area: PixelBox,
) -> Vec<(i32, i32)> {
    let dots: Vec<PixelBox> = points
        .iter()
        .map(|&(x, y)| PixelBox {
            x: x - radius,
            y: y - radius,
            w: 2 * radius + 1,
            h: 2 * radius + 1,
        })
        .collect();
    let mut placed: Vec<PixelBox> = Vec::new();
    let mut out = Vec::with_capacity(points.len());
    for (&(px, py), &(w, h)) in points.iter().zip(sizes) {
        let gap = radius + 3;
        let mut candidates = Vec::new();
        for step in 0..4 {
            let far = step * (h + 2);
            candidates.extend([
                (gap, -h - 1 - far),
                (gap, 1 + far),
                (-gap - w, -h - 1 - far),
                (-gap - w, 1 + far),
            ]);
            if step == 0 {
                candidates.extend([
                    (gap + 2, -h / 2),
                    (-gap - 2 - w, -h / 2),
                    (-w / 2, -gap - h),
                    (-w / 2, gap),
                ]);
            }
        }
        let cost = |&(dx, dy): &(i32, i32)| -> i64 {
            let b = PixelBox {
                x: px + dx,
                y: py + dy,
                w,
                h,
            };
            placed.iter().map(|o| b.overlap(o)).sum::<i64>()
                + dots.iter().map(|o| b.overlap(o)).sum::<i64>()
                + 4 * b.outside(&area)
        };
        let best = candidates
            .iter()
            .find(|c| cost(c) == 0)
            .copied()
            .unwrap_or_else(|| {
                candidates
                    .iter()
                    .copied()
                    .min_by_key(|c| cost(c))
                    .unwrap_or((gap, -h - 1))
            });
        placed.push(PixelBox {
            x: px + best.0,
            y: py + best.1,
            w,
            h,
        });
        out.push(best);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crowded_labels_do_not_overlap() {
        // five points within a few pixels of each other, as configurations with nearly the
        // same accuracy and CE: the labels fan out around them
        let points = [(200, 200), (204, 202), (198, 205), (210, 199), (203, 196)];
        let sizes: Vec<(i32, i32)> = ["λ=0.1", "λ=0.25", "λ=0.5", "λ=0.75", "λ=1.0"]
            .iter()
            .map(|t| text_size(t, 10))
            .collect();
        let area = PixelBox {
            x: 0,
            y: 0,
            w: 400,
            h: 400,
        };
        let offsets = place_labels(&points, &sizes, 5, area);
        let boxes: Vec<PixelBox> = points
            .iter()
            .zip(&offsets)
            .zip(&sizes)
            .map(|((p, o), s)| PixelBox {
                x: p.0 + o.0,
                y: p.1 + o.1,
                w: s.0,
                h: s.1,
            })
            .collect();
        for (i, a) in boxes.iter().enumerate() {
            for b in &boxes[i + 1..] {
                assert_eq!(a.overlap(b), 0, "{a:?} and {b:?} overlap");
            }
            assert_eq!(a.outside(&area), 0);
        }
        // nor any point
        for b in &boxes {
            for p in &points {
                let dot = PixelBox {
                    x: p.0 - 5,
                    y: p.1 - 5,
                    w: 11,
                    h: 11,
                };
                assert_eq!(b.overlap(&dot), 0, "{b:?} covers the point {p:?}");
            }
        }
        // a lone point's label goes right above it, where the tags always were
        let lone = place_labels(&[(50, 50)], &[text_size("λ=0.5", 10)], 5, area);
        assert_eq!(lone, [(8, -13)]);
    }

    #[test]
    fn a_label_at_the_right_edge_goes_left() {
        let area = PixelBox {
            x: 0,
            y: 0,
            w: 100,
            h: 100,
        };
        let o = place_labels(&[(95, 50)], &[text_size("λ=0.5", 10)], 5, area);
        assert!(o[0].0 < 0, "{o:?}");
    }
}
