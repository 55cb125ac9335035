//! Depthwise convolutions (one filter per channel: `groups == in == out`, MobileNetV2's and
//! ShuffleNetV2's 3×3 layers) as one candle op with its two gradients, instead of candle's
//! grouped path (a separate im2col convolution per channel).
//!
//! Each output plane is its channel's plane correlated with its k×k filter: the forward
//! pass and the input gradient run plane by plane in parallel (each plane's sums in a fixed
//! tap order), the weight gradient channel by channel, each over the images in image order.
//! So results do not depend on the number of threads. Safe code throughout: the inner
//! loops are slices zipped over one output row, which the compiler vectorises for stride 1.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::util::{Elem, dispatch, slice};

/// The shapes of a depthwise convolution: x [n, c, h, w], weights [c, 1, k, k].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DepthwiseGeom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    pad: usize,
    ho: usize,
    wo: usize,
}

impl DepthwiseGeom {
    /// The geometry of `x` ([n, c, h, w]) with `w` ([c, 1, k, k]) and `groups == c`, if the
    /// convolution is depthwise with square kernels and a non-empty output.
    pub(crate) fn new(
        x: (usize, usize, usize, usize),
        w: (usize, usize, usize, usize),
        stride: usize,
        pad: usize,
        groups: usize,
    ) -> Option<DepthwiseGeom> {
        let (n, c, h, wd) = x;
        let (o, ci, kh, kw) = w;
        if groups != c || o != c || ci != 1 || kh != kw || stride == 0 || c < 2 {
            return None;
        }
        let k = kh;
        let ho = (h + 2 * pad).checked_sub(k)? / stride + 1;
        let wo = (wd + 2 * pad).checked_sub(k)? / stride + 1;
        (n > 0 && ho > 0 && wo > 0 && pad < k).then_some(DepthwiseGeom {
            n,
            c,
            h,
            w: wd,
            k,
            stride,
            pad,
            ho,
            wo,
        })
    }

    /// The output positions `o` (of `len`) whose input position `o·stride + tap − pad`
    /// lies in `0..size`, as a range.
    fn valid(&self, tap: usize, size: usize, len: usize) -> std::ops::Range<usize> {
        let s = self.stride;
        // o·s + tap ≥ pad  ⇔  o ≥ ceil((pad − tap) / s)
        let first = self.pad.saturating_sub(tap).div_ceil(s);
        // o·s + tap − pad ≤ size − 1  ⇔  o ≤ (size − 1 + pad − tap) / s
        let last = match (size + self.pad).checked_sub(tap + 1) {
            Some(v) => (v / s + 1).min(len),
            None => 0,
        };
        first.min(last)..last
    }
}

/// One plane: `out[oy][ox] = Σ_{ky,kx} x[oy·s+ky−p][ox·s+kx−p] · w[ky][kx]`.
fn forward_plane<T: Elem>(g: &DepthwiseGeom, x: &[T], w: &[T], out: &mut [T]) {
    let s = g.stride;
    for ky in 0..g.k {
        let rows = g.valid(ky, g.h, g.ho);
        for kx in 0..g.k {
            let cols = g.valid(kx, g.w, g.wo);
            if cols.is_empty() {
                continue;
            }
            let wv = w[ky * g.k + kx];
            let ix0 = cols.start * s + kx - g.pad;
            for oy in rows.clone() {
                let iy = oy * s + ky - g.pad;
                let xrow = &x[iy * g.w..(iy + 1) * g.w];
                let orow = &mut out[oy * g.wo + cols.start..oy * g.wo + cols.end];
                if s == 1 {
                    for (o, &xv) in orow.iter_mut().zip(&xrow[ix0..ix0 + cols.len()]) {
                        *o += xv * wv;
                    }
                } else {
                    for (j, o) in orow.iter_mut().enumerate() {
                        *o += xrow[ix0 + j * s] * wv;
                    }
                }
            }
        }
    }
}

/// One plane of the input gradient: `dx[iy][ix] += dy[oy][ox] · w[ky][kx]` over the taps.
fn input_grad_plane<T: Elem>(g: &DepthwiseGeom, dy: &[T], w: &[T], dx: &mut [T]) {
    let s = g.stride;
    for ky in 0..g.k {
        let rows = g.valid(ky, g.h, g.ho);
        for kx in 0..g.k {
            let cols = g.valid(kx, g.w, g.wo);
            if cols.is_empty() {
                continue;
            }
            let wv = w[ky * g.k + kx];
            let ix0 = cols.start * s + kx - g.pad;
            for oy in rows.clone() {
                let iy = oy * s + ky - g.pad;
                let dyrow = &dy[oy * g.wo + cols.start..oy * g.wo + cols.end];
                let dxrow = &mut dx[iy * g.w..(iy + 1) * g.w];
                if s == 1 {
                    for (d, &v) in dxrow[ix0..ix0 + cols.len()].iter_mut().zip(dyrow) {
                        *d += v * wv;
                    }
                } else {
                    for (j, &v) in dyrow.iter().enumerate() {
                        dxrow[ix0 + j * s] += v * wv;
                    }
                }
            }
        }
    }
}

/// One channel's weight gradient, over the images in order:
/// `dw[ky][kx] = Σ_n Σ_{oy,ox} dy[n][oy][ox] · x[n][oy·s+ky−p][ox·s+kx−p]`.
fn weight_grad_channel<T: Elem>(g: &DepthwiseGeom, ch: usize, x: &[T], dy: &[T], dw: &mut [T]) {
    let s = g.stride;
    let (img_in, img_out) = (g.h * g.w, g.ho * g.wo);
    for n in 0..g.n {
        let xp = &x[(n * g.c + ch) * img_in..(n * g.c + ch + 1) * img_in];
        let dyp = &dy[(n * g.c + ch) * img_out..(n * g.c + ch + 1) * img_out];
        for ky in 0..g.k {
            let rows = g.valid(ky, g.h, g.ho);
            for kx in 0..g.k {
                let cols = g.valid(kx, g.w, g.wo);
                if cols.is_empty() {
                    continue;
                }
                let ix0 = cols.start * s + kx - g.pad;
                let mut acc = T::ZERO;
                for oy in rows.clone() {
                    let iy = oy * s + ky - g.pad;
                    let xrow = &xp[iy * g.w..(iy + 1) * g.w];
                    let dyrow = &dyp[oy * g.wo + cols.start..oy * g.wo + cols.end];
                    if s == 1 {
                        for (&d, &xv) in dyrow.iter().zip(&xrow[ix0..ix0 + cols.len()]) {
                            acc += d * xv;
                        }
                    } else {
                        for (j, &d) in dyrow.iter().enumerate() {
                            acc += d * xrow[ix0 + j * s];
                        }
                    }
                }
                dw[ky * g.k + kx] += acc;
            }
        }
    }
}

/// `n·c` output planes of `out_len` elements, plane `p` computed in parallel by `plane`
/// from input plane `p` (of `in_len`) and its channel's k×k filter.
fn per_plane<T: Elem>(
    g: &DepthwiseGeom,
    src: &[T],
    in_len: usize,
    w: &[T],
    out_len: usize,
    plane: fn(&DepthwiseGeom, &[T], &[T], &mut [T]),
) -> Vec<T> {
    let kk = g.k * g.k;
    let mut out = vec![T::ZERO; g.n * g.c * out_len];
    out.par_chunks_mut(out_len).enumerate().for_each(|(p, o)| {
        let ch = p % g.c;
        plane(
            g,
            &src[p * in_len..(p + 1) * in_len],
            &w[ch * kk..(ch + 1) * kk],
            o,
        );
    });
    out
}

fn out_storage<T: Elem>(v: Vec<T>) -> CpuStorage {
    T::to_cpu_storage_owned(v)
}

/// The depthwise convolution as a candle op: (x [n, c, h, w], w [c, 1, k, k]) → y.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DepthwiseConv2d {
    pub stride: usize,
    pub pad: usize,
}

fn geom(op: &str, x: &Layout, w: &Layout, stride: usize, pad: usize) -> Result<DepthwiseGeom> {
    let d4 = |l: &Layout| -> Result<(usize, usize, usize, usize)> {
        match *l.dims() {
            [a, b, c, d] => Ok((a, b, c, d)),
            _ => bail!("{op}: expected a 4-d tensor, got {:?}", l.dims()),
        }
    };
    let (xd, wd) = (d4(x)?, d4(w)?);
    match DepthwiseGeom::new(xd, wd, stride, pad, xd.1) {
        Some(g) => Ok(g),
        None => bail!(
            "{op}: not a depthwise convolution: {:?} with {:?}",
            x.dims(),
            w.dims()
        ),
    }
}

fn fwd<T: Elem>(
    g: DepthwiseGeom,
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
) -> Result<(CpuStorage, Shape)> {
    let x = slice::<T>(s1, l1, "hkd-depthwise")?;
    let w = slice::<T>(s2, l2, "hkd-depthwise")?;
    let y = per_plane(&g, x, g.h * g.w, w, g.ho * g.wo, forward_plane);
    Ok((out_storage(y), Shape::from((g.n, g.c, g.ho, g.wo))))
}

impl CustomOp2 for DepthwiseConv2d {
    fn name(&self) -> &'static str {
        "hkd-depthwise-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = geom(self.name(), l1, l2, self.stride, self.pad)?;
        dispatch!("hkd-depthwise-conv2d", s1, fwd(g, s1, l1, s2, l2))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dims = x.dims4()?;
        let dx = if x.track_op() {
            Some(grad.apply_op2_no_bwd(w, &DepthwiseInputGrad { op: *self, dims })?)
        } else {
            None
        };
        let dw = if w.track_op() {
            Some(x.apply_op2_no_bwd(
                &grad,
                &DepthwiseWeightGrad {
                    op: *self,
                    k: w.dims4()?.2,
                },
            )?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}

/// (dy [n, c, ho, wo], w [c, 1, k, k]) → dx [n, c, h, w].
struct DepthwiseInputGrad {
    op: DepthwiseConv2d,
    dims: (usize, usize, usize, usize),
}

fn input_grad<T: Elem>(
    g: DepthwiseGeom,
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
) -> Result<(CpuStorage, Shape)> {
    let dy = slice::<T>(s1, l1, "hkd-depthwise-bwd-input")?;
    let w = slice::<T>(s2, l2, "hkd-depthwise-bwd-input")?;
    let dx = per_plane(&g, dy, g.ho * g.wo, w, g.h * g.w, input_grad_plane);
    Ok((out_storage(dx), Shape::from((g.n, g.c, g.h, g.w))))
}

impl CustomOp2 for DepthwiseInputGrad {
    fn name(&self) -> &'static str {
        "hkd-depthwise-bwd-input"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = self.dims;
        let k = match *l2.dims() {
            [_, _, k, _] => k,
            _ => bail!("{}: weights {:?}", self.name(), l2.dims()),
        };
        let Some(g) =
            DepthwiseGeom::new((n, c, h, w), (c, 1, k, k), self.op.stride, self.op.pad, c)
        else {
            bail!("{}: not a depthwise convolution", self.name())
        };
        if l1.dims() != [g.n, g.c, g.ho, g.wo] {
            bail!(
                "{}: gradient {:?}, expected {:?}",
                self.name(),
                l1.dims(),
                [g.n, g.c, g.ho, g.wo]
            );
        }
        dispatch!("hkd-depthwise-bwd-input", s1, input_grad(g, s1, l1, s2, l2))
    }
}

/// (x [n, c, h, w], dy [n, c, ho, wo]) → dw [c, 1, k, k].
struct DepthwiseWeightGrad {
    op: DepthwiseConv2d,
    k: usize,
}

fn weight_grad<T: Elem>(
    g: DepthwiseGeom,
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
) -> Result<(CpuStorage, Shape)> {
    let x = slice::<T>(s1, l1, "hkd-depthwise-bwd-weight")?;
    let dy = slice::<T>(s2, l2, "hkd-depthwise-bwd-weight")?;
    let kk = g.k * g.k;
    let mut dw = vec![T::ZERO; g.c * kk];
    dw.par_chunks_mut(kk)
        .enumerate()
        .for_each(|(ch, out)| weight_grad_channel(&g, ch, x, dy, out));
    Ok((out_storage(dw), Shape::from((g.c, 1, g.k, g.k))))
}

impl CustomOp2 for DepthwiseWeightGrad {
    fn name(&self) -> &'static str {
        "hkd-depthwise-bwd-weight"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = match *l1.dims() {
            [a, b, c, d] => (a, b, c, d),
            _ => bail!("{}: input {:?}", self.name(), l1.dims()),
        };
        let k = self.k;
        let Some(g) =
            DepthwiseGeom::new((n, c, h, w), (c, 1, k, k), self.op.stride, self.op.pad, c)
        else {
            bail!("{}: not a depthwise convolution", self.name())
        };
        if l2.dims() != [g.n, g.c, g.ho, g.wo] {
            bail!(
                "{}: gradient {:?}, expected {:?}",
                self.name(),
                l2.dims(),
                [g.n, g.c, g.ho, g.wo]
            );
        }
        dispatch!(
            "hkd-depthwise-bwd-weight",
            s1,
            weight_grad(g, s1, l1, s2, l2)
        )
    }
}

/// The depthwise convolution of `x` with `w` (contiguous CPU f32/f64 tensors whose shapes
/// [`DepthwiseGeom::new`] accepts).
pub(crate) fn depthwise_conv2d(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    pad: usize,
) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2(&w.contiguous()?, DepthwiseConv2d { stride, pad })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_ranges_cover_exactly_the_positions_inside_the_input() {
        for (h, k, stride, pad) in [
            (8, 3, 1, 1),
            (8, 3, 2, 1),
            (7, 3, 2, 1),
            (5, 5, 1, 2),
            (4, 3, 2, 0),
            (1, 3, 1, 1),
        ] {
            let g = DepthwiseGeom::new((1, 2, h, h), (2, 1, k, k), stride, pad, 2).unwrap();
            for tap in 0..k {
                let r = g.valid(tap, h, g.ho);
                for o in 0..g.ho {
                    let i = (o * stride + tap) as isize - pad as isize;
                    assert_eq!(
                        r.contains(&o),
                        (0..h as isize).contains(&i),
                        "h {h} k {k} s {stride} p {pad} tap {tap} o {o}"
                    );
                }
            }
        }
    }

    #[test]
    fn only_depthwise_shapes_are_taken() {
        assert!(DepthwiseGeom::new((2, 8, 8, 8), (8, 1, 3, 3), 1, 1, 8).is_some());
        assert!(
            DepthwiseGeom::new((2, 8, 8, 8), (8, 2, 3, 3), 1, 1, 4).is_none(),
            "grouped"
        );
        assert!(
            DepthwiseGeom::new((2, 8, 8, 8), (16, 1, 3, 3), 1, 1, 8).is_none(),
            "multiplier 2"
        );
        assert!(
            DepthwiseGeom::new((2, 8, 8, 8), (8, 1, 3, 3), 1, 1, 1).is_none(),
            "groups 1"
        );
        assert!(
            DepthwiseGeom::new((2, 8, 2, 2), (8, 1, 5, 5), 1, 0, 8).is_none(),
            "empty output"
        );
    }
}
