//! 2-D convolution: [`conv2d`] picks the path ([`conv_path`]); the CPU kernels of this file
//! cover groups 1, dilation 1, symmetric zero padding. Same convolutions
//! (stride 1, output as large as the input): k GEMMs over k shifted copies of the padded
//! input ([`Shifted`]) for the forward pass, the input gradient (a same convolution of dy
//! with the rotated kernel) and the weight gradient. Other geometries: im2col + GEMM
//! forward, GEMM + col2im input gradient, GEMM weight gradient. 1×1 stride-1 convolutions
//! use the image itself as the column matrix.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::batchnorm::affine_input_grad;
use super::direct::{Direct3x3, Post, Stride2InputGrad, WeightGrad3x3};
use super::util::{
    Elem, Mat, SideResult, dispatch, gather_stride2, matmul, new_vec, slice, sum_and_sq, with_simd,
};
use super::{ConvPath, Ops, fast_path, generic};

/// Convolution geometry: input [n, c, h, w], weight [o, c, kh, kw], output [n, o, ho, wo].
#[derive(Debug, Clone, Copy)]
struct Geom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    pad: usize,
    ho: usize,
    wo: usize,
    /// Whether the direct 3×3 kernels may be used ([`Ops::direct_conv`] of the thread that
    /// built the op).
    direct: bool,
}

impl Geom {
    fn new(
        x: (usize, usize, usize, usize),
        wt: (usize, usize, usize, usize),
        stride: usize,
        pad: usize,
    ) -> Option<Self> {
        let (n, c, h, w) = x;
        let (o, c2, kh, kw) = wt;
        if c != c2 || c == 0 || o == 0 || stride == 0 || h + 2 * pad < kh || w + 2 * pad < kw {
            return None;
        }
        Some(Geom {
            n,
            c,
            h,
            w,
            o,
            kh,
            kw,
            stride,
            pad,
            ho: (h + 2 * pad - kh) / stride + 1,
            wo: (w + 2 * pad - kw) / stride + 1,
            direct: Ops::current().direct_conv,
        })
    }

    /// Rows of the column matrix: c·kh·kw.
    fn k(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Output pixels per channel.
    fn p(&self) -> usize {
        self.ho * self.wo
    }

    /// Input elements per image.
    fn img(&self) -> usize {
        self.c * self.h * self.w
    }

    /// A 1×1 stride-1 unpadded convolution: the image itself is the column matrix.
    fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.pad == 0
    }

    /// Stride 1 and an output as large as the input ("same" padding, 3×3 with padding 1):
    /// each column-matrix row is the image shifted by a constant flat offset.
    fn same(&self) -> bool {
        self.stride == 1 && self.ho == self.h && self.wo == self.w
    }

    /// The half-open range [lo, hi) of output columns whose input column ox·s + kj − pad,
    /// for kernel column kj, lies in [0, w).
    fn valid_cols(&self, kj: usize) -> (usize, usize) {
        let s = self.stride;
        // ox·s + kj ≥ pad, and ox·s + kj − pad ≤ w − 1.
        let lo = self.pad.saturating_sub(kj).div_ceil(s).min(self.wo);
        let hi = if self.w + self.pad > kj {
            ((self.w + self.pad - kj - 1) / s + 1).clamp(lo, self.wo)
        } else {
            lo
        };
        (lo, hi)
    }
}

/// The layout of a [`same`](Geom::same) convolution's input without a full im2col: `k`
/// rows per channel (k = 2·pad + 1, the kernel size), row (c, kj) holding the channel
/// zero-padded to `hp × wp` (flat, `len` elements) and shifted left by kj. Kernel row ki
/// then reads the rows at offset ki·wp, and the output in the padded width — `wp` columns
/// per output row, the last 2·pad of them garbage — is k GEMMs with inner dimension ch·k
/// instead of one with ch·k² over a k²-times copied image.
#[derive(Debug, Clone, Copy)]
struct Shifted {
    ch: usize,
    h: usize,
    w: usize,
    pad: usize,
    k: usize,
    wp: usize,
    len: usize,
}

impl Shifted {
    /// For a same convolution's input (`ch` = g.c) or, with `ch` = g.o, for its output
    /// gradient (the input gradient is a same convolution of it).
    fn new(g: &Geom, ch: usize) -> Self {
        let wp = g.w + 2 * g.pad;
        Shifted {
            ch,
            h: g.h,
            w: g.w,
            pad: g.pad,
            k: g.kh,
            wp,
            len: (g.h + 2 * g.pad) * wp,
        }
    }

    /// Rows of the shifted buffer: ch·k.
    fn rows(&self) -> usize {
        self.ch * self.k
    }

    /// Columns of an output in the padded width: h·wp.
    fn cols(&self) -> usize {
        self.h * self.wp
    }

    /// Fills `xs` [ch·k, len] from one image `x` [ch, h, w].
    fn fill<T: Elem>(&self, x: &[T], xs: &mut [T]) {
        let (hw, len) = (self.h * self.w, self.len);
        for (ci, rows) in xs.chunks_exact_mut(self.k * len).enumerate() {
            let xc = &x[ci * hw..(ci + 1) * hw];
            let (row0, shifted) = rows.split_at_mut(len);
            let mut pos = 0;
            for (iy, src) in xc.chunks_exact(self.w).enumerate() {
                let start = (iy + self.pad) * self.wp + self.pad;
                row0[pos..start].fill(T::ZERO);
                row0[start..start + self.w].copy_from_slice(src);
                pos = start + self.w;
            }
            row0[pos..].fill(T::ZERO);
            for (kj, row) in shifted.chunks_exact_mut(len).enumerate() {
                let kj = kj + 1;
                row[..len - kj].copy_from_slice(&row0[kj..]);
                row[len - kj..].fill(T::ZERO);
            }
        }
    }

    /// `y` [cout, h·w] = the same convolution of the filled buffer `xs` with the weight in
    /// kernel-row order `wr` [k, cout, ch·k]; `ypad` [cout, h·wp] is scratch.
    fn conv<T: Elem>(
        &self,
        xs: &[T],
        wr: &[T],
        cout: usize,
        ypad: &mut Vec<T>,
        y: &mut [MaybeUninit<T>],
    ) {
        let (kk, n) = (self.rows(), self.cols());
        ypad.resize(cout * n, T::ZERO);
        for ki in 0..self.k {
            let lhs = Mat {
                ptr: wr[ki * cout * kk..].as_ptr(),
                rs: kk as isize,
                cs: 1,
            };
            let rhs = Mat {
                ptr: xs[ki * self.wp..].as_ptr(),
                rs: self.len as isize,
                cs: 1,
            };
            // SAFETY: ypad is [cout, n]; wr[ki] is [cout, kk]; the rhs block [kk, n] at
            // offset ki·wp ends at (k − 1)·wp + h·wp − 1 = len − 1 within each row.
            unsafe {
                matmul(cout, n, kk, ypad.as_mut_ptr(), n as isize, ki > 0, lhs, rhs);
            }
        }
        for (yo, po) in y
            .chunks_exact_mut(self.h * self.w)
            .zip(ypad.chunks_exact(n))
        {
            for (yr, pr) in yo.chunks_exact_mut(self.w).zip(po.chunks_exact(self.wp)) {
                for (d, &s) in yr.iter_mut().zip(pr) {
                    d.write(s);
                }
            }
        }
    }

    /// `acc[k, o, ch·k] += dypad [o, h·wp] · xsᵀ` per kernel row (the weight gradient of a
    /// same convolution in kernel-row order); `dypad` is the output gradient in the padded
    /// width with zeros in the garbage columns.
    fn weight_grad<T: Elem>(&self, xs: &[T], dypad: &[T], o: usize, acc: &mut [T]) {
        let (kk, n) = (self.rows(), self.cols());
        for ki in 0..self.k {
            let lhs = Mat {
                ptr: dypad.as_ptr(),
                rs: n as isize,
                cs: 1,
            };
            // xsᵀ at offset ki·wp: element (j, r) is xs[r·len + ki·wp + j].
            let rhs = Mat {
                ptr: xs[ki * self.wp..].as_ptr(),
                rs: 1,
                cs: self.len as isize,
            };
            let dst = acc[ki * o * kk..(ki + 1) * o * kk].as_mut_ptr();
            // SAFETY: dst is [o, kk]; dypad is [o, n]; the rhs block as in `conv`.
            unsafe { matmul(o, kk, n, dst, kk as isize, true, lhs, rhs) };
        }
    }

    /// `dypad` [o, h·wp] from one image's output gradient `dy` [o, h, w].
    fn pad_cols<T: Elem>(&self, dy: &[T], dypad: &mut Vec<T>) {
        dypad.resize(dy.len() / self.w * self.wp, T::ZERO);
        for (pr, src) in dypad.chunks_exact_mut(self.wp).zip(dy.chunks_exact(self.w)) {
            pr[..self.w].copy_from_slice(src);
            pr[self.w..].fill(T::ZERO);
        }
    }
}

/// The weight [o, c, k, k] in kernel-row order [k, o, c·k] (`flip`: the input gradient's
/// weight instead, [k, c, o·k] with the kernel rotated by 180°).
fn kernel_rows<T: Elem>(w: &[T], o: usize, c: usize, k: usize, flip: bool) -> Vec<T> {
    let mut out = vec![T::ZERO; w.len()];
    for oi in 0..o {
        for ci in 0..c {
            for ki in 0..k {
                for kj in 0..k {
                    let v = w[((oi * c + ci) * k + ki) * k + kj];
                    let idx = if flip {
                        let (fi, fj) = (k - 1 - ki, k - 1 - kj);
                        (fi * c + ci) * o * k + oi * k + fj
                    } else {
                        (ki * o + oi) * c * k + ci * k + kj
                    };
                    out[idx] = v;
                }
            }
        }
    }
    out
}

/// The direct kernel for a 3×3 convolution with padding 1 of f32 tensors where it applies:
/// stride 1 (`flip`: for its input gradient) or stride 2 (forward only).
fn direct3x3<T: Elem>(g: &Geom, w: &[T], flip: bool) -> Option<Direct3x3> {
    if !direct_fits(g) {
        return None;
    }
    let d = Direct3x3::new(T::as_f32(w)?, g.o, g.c, (g.h, g.w), g.stride, flip)?;
    (d.out_len() == g.o * g.p()).then_some(d)
}

/// The direct input gradient of a 3×3 convolution with stride 2 and padding 1 of f32
/// tensors where it applies (even image sizes, output pixels a multiple of 16).
fn stride2_input_grad<T: Elem>(g: &Geom, w: &[T]) -> Option<Stride2InputGrad> {
    if !g.direct || (g.kh, g.kw, g.pad, g.stride) != (3, 3, 1, 2) {
        return None;
    }
    let d = Stride2InputGrad::new(T::as_f32(w)?, g.o, g.c, (g.h, g.w))?;
    (d.dy_len() == g.o * g.p() && d.dx_len() == g.img()).then_some(d)
}

/// Whether [`direct3x3`] can take the forward convolution of this geometry (given f32).
fn direct_fits(g: &Geom) -> bool {
    g.direct
        && g.kh == 3
        && g.kw == 3
        && g.pad == 1
        && (g.same() || g.stride == 2)
        && Direct3x3::fits((g.h, g.w), g.stride)
}

fn dims4(l: &Layout) -> Result<(usize, usize, usize, usize)> {
    l.shape().dims4()
}

/// Column matrix [c·kh·kw, ho·wo] of one image `x` [c, h, w] (strided and unpadded
/// convolutions; same convolutions use [`Shifted`]). Every output row segment of a row of
/// the column matrix is one gather with the stride (a copy for stride 1), zeros outside.
fn im2col<T: Elem>(x: &[T], g: &Geom, cols: &mut [T]) {
    let p = g.p();
    let s = g.stride;
    with_simd!({
        for ci in 0..g.c {
            for ki in 0..g.kh {
                for kj in 0..g.kw {
                    let r = (ci * g.kh + ki) * g.kw + kj;
                    let row = &mut cols[r * p..(r + 1) * p];
                    let (lo, hi) = g.valid_cols(kj);
                    for (oy, out) in row.chunks_exact_mut(g.wo).enumerate() {
                        let iy = oy * s + ki;
                        if iy < g.pad || iy - g.pad >= g.h || lo == hi {
                            out.fill(T::ZERO);
                            continue;
                        }
                        // Output column ox reads input column ox·s + kj − pad.
                        let src = &x[(ci * g.h + iy - g.pad) * g.w..][..g.w];
                        let base = lo * s + kj - g.pad;
                        out[..lo].fill(T::ZERO);
                        let n = hi - lo;
                        if s == 1 {
                            out[lo..hi].copy_from_slice(&src[base..base + n]);
                        } else if s == 2 {
                            gather_stride2(&src[base..base + 2 * n - 1], &mut out[lo..hi]);
                        } else {
                            for (t, o) in out[lo..hi].iter_mut().enumerate() {
                                *o = src[base + s * t];
                            }
                        }
                        out[hi..].fill(T::ZERO);
                    }
                }
            }
        }
    })
}

/// Adds the column matrix `cols` [c·kh·kw, ho·wo] back into the image gradient `dx`
/// [c, h, w] (the adjoint of [`im2col`]): a scatter-add with the stride per row segment.
fn col2im<T: Elem>(cols: &[T], g: &Geom, dx: &mut [T]) {
    let p = g.p();
    let s = g.stride;
    with_simd!({
        for ci in 0..g.c {
            for ki in 0..g.kh {
                for kj in 0..g.kw {
                    let r = (ci * g.kh + ki) * g.kw + kj;
                    let row = &cols[r * p..(r + 1) * p];
                    let (lo, hi) = g.valid_cols(kj);
                    if lo == hi {
                        continue;
                    }
                    for (oy, src) in row.chunks_exact(g.wo).enumerate() {
                        let iy = oy * s + ki;
                        if iy < g.pad || iy - g.pad >= g.h {
                            continue;
                        }
                        let acc = &mut dx[(ci * g.h + iy - g.pad) * g.w..][..g.w];
                        let base = lo * s + kj - g.pad;
                        for (t, &v) in src[lo..hi].iter().enumerate() {
                            acc[base + s * t] += v;
                        }
                    }
                }
            }
        }
    })
}

/// Convolution of `x` [N, C, H, W] with `w` [O, C/groups, kh, kw] (PyTorch's `F.conv2d`
/// with dilation 1, no bias), by the path [`conv_path`] picks: the kernels of this module,
/// the generic backward, or candle's `conv2d`.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    padding: usize,
    groups: usize,
) -> Result<Tensor> {
    match conv_path(x, w, stride, padding, groups)? {
        ConvPath::Kernels => {
            let x = x.contiguous()?;
            let w = w.contiguous()?;
            x.apply_op2(&w, Conv2dOp { stride, padding })
        }
        ConvPath::Depthwise => super::depthwise::depthwise_conv2d(x, w, stride, padding),
        ConvPath::PerGroup => {
            let (ci, co) = (x.dim(1)? / groups, w.dim(0)? / groups);
            let outputs = (0..groups)
                .map(|g| {
                    let xg = x.narrow(1, g * ci, ci)?.contiguous()?;
                    let wg = w.narrow(0, g * co, co)?.contiguous()?;
                    xg.apply_op2(&wg, Conv2dOp { stride, padding })
                })
                .collect::<Result<Vec<_>>>()?;
            Tensor::cat(&outputs, 1)
        }
        ConvPath::Generic => generic::conv2d(x, w, stride, padding, groups),
        ConvPath::Stock => x.conv2d(w, padding, stride, 1, groups),
    }
}

/// The path of a convolution ([`conv2d`]'s arguments), by the current [`Ops`]: the CPU
/// kernels where they fit (f32/f64 CPU tensors, stock operations not forced; groups 1, a
/// depthwise convolution, or groups that each fit) unless the generic backward is forced;
/// else the generic backward where it is chosen (by default off the CPU); else candle's own.
pub fn conv_path(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    padding: usize,
    groups: usize,
) -> Result<ConvPath> {
    let ops = Ops::current();
    let cpu = fast_path(x)
        && w.dtype() == x.dtype()
        && w.device().is_cpu()
        && x.rank() == 4
        && w.rank() == 4
        && ops.generic_backward != Some(true);
    let (xd, wd) = if cpu {
        (x.dims4()?, w.dims4()?)
    } else {
        ((0, 0, 0, 0), (0, 0, 0, 0))
    };
    let per_group = groups > 1
        && xd.1.is_multiple_of(groups)
        && wd.0.is_multiple_of(groups)
        && wd.1 * groups == xd.1
        && Geom::new(
            (xd.0, xd.1 / groups, xd.2, xd.3),
            (wd.0 / groups, wd.1, wd.2, wd.3),
            stride,
            padding,
        )
        .is_some();
    Ok(
        if cpu && groups == 1 && Geom::new(xd, wd, stride, padding).is_some() {
            ConvPath::Kernels
        } else if cpu
            && super::depthwise::DepthwiseGeom::new(xd, wd, stride, padding, groups).is_some()
        {
            ConvPath::Depthwise
        } else if cpu && per_group {
            ConvPath::PerGroup
        } else if ops.generic_backward.unwrap_or(!x.device().is_cpu()) {
            ConvPath::Generic
        } else {
            ConvPath::Stock
        },
    )
}

/// `channel_affine(conv2d(x, w, stride, padding, groups), scale, shift, relu)`: BatchNorm
/// in evaluation (and the ReLU after it) on a convolution's output. Where the direct kernel
/// runs the convolution (f32, 3×3, AVX-512) this is one op that applies the affine
/// transform and the ReLU as it stores the output — the same operations in the same order,
/// so the same values, without writing and reading the convolution's output once more.
/// Its backward gives both gradients, as the two ops would.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_affine(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    padding: usize,
    groups: usize,
    scale: &[f64],
    shift: &[f64],
    relu: bool,
) -> Result<Tensor> {
    let fused = direct_geom(x, w, stride, padding, groups)?
        .is_some_and(|g| scale.len() == g.o && shift.len() == g.o);
    if !fused {
        return super::channel_affine(&conv2d(x, w, stride, padding, groups)?, scale, shift, relu);
    }
    x.contiguous()?.apply_op2(
        &w.contiguous()?,
        ConvAffine {
            conv: Conv2dOp { stride, padding },
            scale: scale.to_vec(),
            shift: shift.to_vec(),
            relu,
        },
    )
}

/// Per-channel batch mean and biased variance (f64), as [`super::channel_stats`] gives them.
pub type BatchMoments = (Vec<f64>, Vec<f64>);

/// `conv2d(x, w, stride, padding, 1)` and, where the direct kernel runs it (f32, 3×3,
/// AVX-512), the per-channel mean and biased variance of its output for a training
/// BatchNorm: each image's Σy and Σy² are taken right after its output is stored, while
/// it is in cache, instead of two more passes over the whole output; the images' sums are
/// added in image order (the same result whatever the number of threads), and the
/// variance is Σy²/M − mean² in f64. `None` where the convolution takes another path (the
/// caller computes the statistics itself). Differentiable as [`conv2d`].
pub fn conv2d_stats(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    padding: usize,
) -> Result<(Tensor, Option<BatchMoments>)> {
    let fused = direct_geom(x, w, stride, padding, 1)?.is_some();
    if !fused {
        return Ok((conv2d(x, w, stride, padding, 1)?, None));
    }
    let out = SideResult::new();
    let y = x.contiguous()?.apply_op2(
        &w.contiguous()?,
        ConvStats {
            conv: Conv2dOp { stride, padding },
            out: out.clone(),
        },
    )?;
    Ok((y, out.take()))
}

/// [`conv2d_stats`]'s op (built only where the direct kernel applies): the convolution,
/// with the batch moments of its output left in `out`.
struct ConvStats {
    conv: Conv2dOp,
    out: SideResult<BatchMoments>,
}

impl CustomOp2 for ConvStats {
    fn name(&self) -> &'static str {
        "hkd-conv2d-stats"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (g, x, d) = self
            .conv
            .direct_operands("hkd-conv2d-stats", s1, l1, s2, l2)?;
        let (img, p) = (g.img(), g.p());
        // Per image and channel: Σy, Σy².
        let mut sums = vec![(0f64, 0f64); g.n * g.o];
        let fill = |y: &mut [MaybeUninit<f32>]| {
            y.par_chunks_mut(d.out_len())
                .zip(sums.par_chunks_mut(g.o))
                .enumerate()
                .for_each_init(Vec::new, |xp, (i, (yi, si))| {
                    d.run(&x[i * img..(i + 1) * img], xp, yi, None);
                    // SAFETY: `Direct3x3::run` wrote every element of y_i.
                    let yi = unsafe { &*(yi as *const [MaybeUninit<f32>] as *const [f32]) };
                    for (s, plane) in si.iter_mut().zip(yi.chunks_exact(p)) {
                        *s = sum_and_sq(plane);
                    }
                })
        };
        // SAFETY: `Direct3x3::run` writes each image's [o, p] block in full.
        let y = unsafe { new_vec(g.n * g.o * p, fill) };
        let count = (g.n * p) as f64;
        let (mut mean, mut var) = (vec![0f64; g.o], vec![0f64; g.o]);
        for si in sums.chunks_exact(g.o) {
            for ((m, v), &(s, q)) in mean.iter_mut().zip(var.iter_mut()).zip(si) {
                *m += s;
                *v += q;
            }
        }
        for (m, v) in mean.iter_mut().zip(var.iter_mut()) {
            *m /= count;
            *v = (*v / count - *m * *m).max(0.0);
        }
        self.out.set((mean, var));
        Ok((CpuStorage::F32(y), Shape::from((g.n, g.o, g.ho, g.wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        self.conv.bwd(x, w, res, grad)
    }
}

/// The geometry of a convolution the direct forward kernel takes (f32 on the kernels'
/// path, a fitting shape): where the fused ops apply.
fn direct_geom(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    padding: usize,
    groups: usize,
) -> Result<Option<Geom>> {
    if x.dtype() != DType::F32 || conv_path(x, w, stride, padding, groups)? != ConvPath::Kernels {
        return Ok(None);
    }
    Ok(Geom::new(x.dims4()?, w.dims4()?, stride, padding).filter(direct_fits))
}

/// [`conv2d_affine`]'s fused op (built only where the direct kernel applies).
struct ConvAffine {
    conv: Conv2dOp,
    scale: Vec<f64>,
    shift: Vec<f64>,
    relu: bool,
}

impl CustomOp2 for ConvAffine {
    fn name(&self) -> &'static str {
        "hkd-conv2d-affine"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (g, x, d) = self
            .conv
            .direct_operands("hkd-conv2d-affine", s1, l1, s2, l2)?;
        // The f32 coefficients `channel_affine` uses.
        let post = Post {
            scale: self.scale.iter().map(|&v| v as f32).collect(),
            shift: self.shift.iter().map(|&v| v as f32).collect(),
            relu: self.relu,
        };
        let img = g.img();
        let fill = |y: &mut [MaybeUninit<f32>]| {
            y.par_chunks_mut(d.out_len())
                .enumerate()
                .for_each_init(Vec::new, |xp, (i, yi)| {
                    d.run(&x[i * img..(i + 1) * img], xp, yi, Some(&post))
                })
        };
        // SAFETY: `Direct3x3::run` writes each image's [o, p] block in full.
        let y = unsafe { new_vec(g.n * g.o * g.p(), fill) };
        Ok((CpuStorage::F32(y), Shape::from((g.n, g.o, g.ho, g.wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dz = affine_input_grad(&self.scale, self.relu, res, grad)?;
        self.conv.bwd(x, w, res, &dz)
    }
}

/// Forward convolution; backward through [`Conv2dBwdInput`] and [`Conv2dBwdWeight`].
struct Conv2dOp {
    stride: usize,
    padding: usize,
}

impl Conv2dOp {
    /// For the fused ops built only where the direct kernel applies (`op` names them in
    /// errors): the geometry, the f32 input and the direct forward kernel.
    fn direct_operands<'a>(
        &self,
        op: &str,
        s1: &'a CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(Geom, &'a [f32], Direct3x3)> {
        let g = Geom::new(dims4(l1)?, dims4(l2)?, self.stride, self.padding);
        let x = slice::<f32>(s1, l1, op)?;
        let w = slice::<f32>(s2, l2, op)?;
        match g.and_then(|g| Some((g, direct3x3(&g, w, false)?))) {
            Some((g, d)) => Ok((g, x, d)),
            None => bail!(
                "{op}: no direct kernel for shapes {:?} and {:?}",
                l1.dims(),
                l2.dims()
            ),
        }
    }
}

fn conv_fwd<T: Elem>(
    g: Geom,
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
) -> Result<(CpuStorage, Shape)> {
    let x = slice::<T>(s1, l1, "conv2d")?;
    let w = slice::<T>(s2, l2, "conv2d")?;
    let (k, p, img) = (g.k(), g.p(), g.img());
    if let Some(d) = direct3x3(&g, w, false) {
        let fill = |y: &mut [MaybeUninit<T>]| {
            y.par_chunks_mut(d.out_len())
                .enumerate()
                .for_each_init(Vec::new, |xp, (i, yi)| {
                    let xi = T::as_f32(&x[i * img..(i + 1) * img]).expect("f32");
                    d.run(xi, xp, T::as_f32_out(yi).expect("f32"), None);
                })
        };
        // SAFETY: `Direct3x3::run` writes each image's [o, p] block in full.
        let y = unsafe { new_vec(g.n * g.o * p, fill) };
        return Ok((
            T::to_cpu_storage_owned(y),
            Shape::from((g.n, g.o, g.ho, g.wo)),
        ));
    }
    if g.same() && !g.pointwise() {
        let sh = Shifted::new(&g, g.c);
        let wr = kernel_rows(w, g.o, g.c, g.kh, false);
        let fill = |y: &mut [MaybeUninit<T>]| {
            y.par_chunks_mut(g.o * p).enumerate().for_each_init(
                || (Vec::new(), Vec::new()),
                |(xs, ypad): &mut (Vec<T>, Vec<T>), (i, yi)| {
                    xs.resize(sh.rows() * sh.len, T::ZERO);
                    sh.fill(&x[i * img..(i + 1) * img], xs);
                    sh.conv(xs, &wr, g.o, ypad, yi);
                },
            )
        };
        // SAFETY: `Shifted::conv` writes each image's [o, p] block in full.
        let y = unsafe { new_vec(g.n * g.o * p, fill) };
        return Ok((
            T::to_cpu_storage_owned(y),
            Shape::from((g.n, g.o, g.ho, g.wo)),
        ));
    }
    let fill = |y: &mut [MaybeUninit<T>]| {
        y.par_chunks_mut(g.o * p).enumerate().for_each_init(
            Vec::new,
            |cols: &mut Vec<T>, (i, yi)| {
                let xi = &x[i * img..(i + 1) * img];
                let rhs: &[T] = if g.pointwise() {
                    xi
                } else {
                    cols.resize(k * p, T::ZERO);
                    im2col(xi, &g, cols);
                    cols
                };
                let lhs = Mat {
                    ptr: w.as_ptr(),
                    rs: k as isize,
                    cs: 1,
                };
                let rhs = Mat {
                    ptr: rhs.as_ptr(),
                    rs: p as isize,
                    cs: 1,
                };
                let dst = yi.as_mut_ptr().cast::<T>();
                // SAFETY: y_i is [o, p], w is [o, k], rhs is [k, p], all contiguous.
                unsafe { matmul(g.o, p, k, dst, p as isize, false, lhs, rhs) };
            },
        )
    };
    // SAFETY: each image's [o, p] block is written in full by its GEMM (read_dst false).
    let y = unsafe { new_vec(g.n * g.o * p, fill) };
    Ok((
        T::to_cpu_storage_owned(y),
        Shape::from((g.n, g.o, g.ho, g.wo)),
    ))
}

impl CustomOp2 for Conv2dOp {
    fn name(&self) -> &'static str {
        "hkd-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let Some(g) = Geom::new(dims4(l1)?, dims4(l2)?, self.stride, self.padding) else {
            bail!(
                "hkd-conv2d: unsupported shapes {:?} and {:?}",
                l1.dims(),
                l2.dims()
            )
        };
        dispatch!("hkd-conv2d", s1, conv_fwd(g, s1, l1, s2, l2))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let (_, _, h, wd) = x.dims4()?;
        let (_, _, kh, kw) = w.dims4()?;
        let dx = if x.track_op() {
            Some(grad.apply_op2_no_bwd(
                w,
                &Conv2dBwdInput {
                    stride: self.stride,
                    padding: self.padding,
                    h,
                    w: wd,
                },
            )?)
        } else {
            None
        };
        let dw = if w.track_op() {
            Some(x.apply_op2_no_bwd(
                &grad,
                &Conv2dBwdWeight {
                    stride: self.stride,
                    padding: self.padding,
                    kh,
                    kw,
                },
            )?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}

/// Input gradient: (dy [N, O, Ho, Wo], w [O, C, kh, kw]) → dx [N, C, h, w].
struct Conv2dBwdInput {
    stride: usize,
    padding: usize,
    h: usize,
    w: usize,
}

fn conv_bwd_input<T: Elem>(
    g: Geom,
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
) -> Result<(CpuStorage, Shape)> {
    let dy = slice::<T>(s1, l1, "conv2d-bwd-input")?;
    let w = slice::<T>(s2, l2, "conv2d-bwd-input")?;
    let (k, p, img) = (g.k(), g.p(), g.img());
    if let Some(d) = direct3x3(&g, w, true) {
        let fill = |dx: &mut [MaybeUninit<T>]| {
            dx.par_chunks_mut(img)
                .enumerate()
                .for_each_init(Vec::new, |xp, (i, dxi)| {
                    let dyi = T::as_f32(&dy[i * g.o * p..(i + 1) * g.o * p]).expect("f32");
                    d.run(dyi, xp, T::as_f32_out(dxi).expect("f32"), None);
                })
        };
        // SAFETY: `Direct3x3::run` writes each image's [c, h·w] block in full.
        let dx = unsafe { new_vec(g.n * img, fill) };
        return Ok((
            T::to_cpu_storage_owned(dx),
            Shape::from((g.n, g.c, g.h, g.w)),
        ));
    }
    if let Some(d) = stride2_input_grad(&g, w) {
        let fill = |dx: &mut [MaybeUninit<T>]| {
            dx.par_chunks_mut(img).enumerate().for_each_init(
                || (Vec::new(), Vec::new()),
                |(copy, planes), (i, dxi)| {
                    let dyi = T::as_f32(&dy[i * g.o * p..(i + 1) * g.o * p]).expect("f32");
                    d.run(dyi, copy, planes, T::as_f32_out(dxi).expect("f32"));
                },
            )
        };
        // SAFETY: `Stride2InputGrad::run` writes each image's [c, h·w] block in full.
        let dx = unsafe { new_vec(g.n * img, fill) };
        return Ok((
            T::to_cpu_storage_owned(dx),
            Shape::from((g.n, g.c, g.h, g.w)),
        ));
    }
    if g.same() && !g.pointwise() {
        // The input gradient of a same convolution is the same convolution of dy with the
        // kernel rotated by 180° and its channel axes swapped.
        let sh = Shifted::new(&g, g.o);
        let vr = kernel_rows(w, g.o, g.c, g.kh, true);
        let fill = |dx: &mut [MaybeUninit<T>]| {
            dx.par_chunks_mut(img).enumerate().for_each_init(
                || (Vec::new(), Vec::new()),
                |(xs, ypad): &mut (Vec<T>, Vec<T>), (i, dxi)| {
                    xs.resize(sh.rows() * sh.len, T::ZERO);
                    sh.fill(&dy[i * g.o * p..(i + 1) * g.o * p], xs);
                    sh.conv(xs, &vr, g.c, ypad, dxi);
                },
            )
        };
        // SAFETY: `Shifted::conv` writes each image's [c, h·w] block in full.
        let dx = unsafe { new_vec(g.n * img, fill) };
        return Ok((
            T::to_cpu_storage_owned(dx),
            Shape::from((g.n, g.c, g.h, g.w)),
        ));
    }
    let mut dx = vec![T::ZERO; g.n * img];
    dx.par_chunks_mut(img)
        .enumerate()
        .for_each_init(Vec::new, |cols: &mut Vec<T>, (i, dxi)| {
            let dyi = &dy[i * g.o * p..(i + 1) * g.o * p];
            // Wᵀ [k, o]: element (r, oc) is w[oc·k + r].
            let lhs = Mat {
                ptr: w.as_ptr(),
                rs: 1,
                cs: k as isize,
            };
            let rhs = Mat {
                ptr: dyi.as_ptr(),
                rs: p as isize,
                cs: 1,
            };
            if g.pointwise() {
                // SAFETY: dx_i is [c, h·w] = [k, p]; operands as described.
                unsafe { matmul(k, p, g.o, dxi.as_mut_ptr(), p as isize, false, lhs, rhs) };
            } else {
                cols.resize(k * p, T::ZERO);
                // SAFETY: cols is [k, p]; operands as described.
                unsafe { matmul(k, p, g.o, cols.as_mut_ptr(), p as isize, false, lhs, rhs) };
                col2im(cols, &g, dxi);
            }
        });
    Ok((
        T::to_cpu_storage_owned(dx),
        Shape::from((g.n, g.c, g.h, g.w)),
    ))
}

impl CustomOp2 for Conv2dBwdInput {
    fn name(&self) -> &'static str {
        "hkd-conv2d-bwd-input"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, o, ho, wo) = dims4(l1)?;
        let (o2, c, kh, kw) = dims4(l2)?;
        let g = Geom::new(
            (n, c, self.h, self.w),
            (o2, c, kh, kw),
            self.stride,
            self.padding,
        );
        let Some(g) = g.filter(|g| g.o == o && g.ho == ho && g.wo == wo) else {
            bail!(
                "hkd-conv2d-bwd-input: inconsistent shapes {:?} and {:?}",
                l1.dims(),
                l2.dims()
            )
        };
        dispatch!(
            "hkd-conv2d-bwd-input",
            s1,
            conv_bwd_input(g, s1, l1, s2, l2)
        )
    }
}

/// Weight gradient: (x [N, C, H, W], dy [N, O, Ho, Wo]) → dw [O, C, kh, kw].
struct Conv2dBwdWeight {
    stride: usize,
    padding: usize,
    kh: usize,
    kw: usize,
}

/// The batch is cut into at most this many fixed parts, each accumulated by one task and
/// the parts summed in order: deterministic whatever the number of threads.
const WEIGHT_GRAD_PARTS: usize = 16;

fn conv_bwd_weight<T: Elem>(
    g: Geom,
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
) -> Result<(CpuStorage, Shape)> {
    let x = slice::<T>(s1, l1, "conv2d-bwd-weight")?;
    let dy = slice::<T>(s2, l2, "conv2d-bwd-weight")?;
    let (k, p, img) = (g.k(), g.p(), g.img());
    let per = g.n.div_ceil(WEIGHT_GRAD_PARTS.min(g.n).max(1)).max(1);
    let parts = g.n.div_ceil(per);
    let direct = (g.direct && g.same() && g.kh == 3 && g.kw == 3 && g.pad == 1)
        .then(|| WeightGrad3x3::new(g.o, g.c, g.h, g.w))
        .flatten();
    if let (Some(d), Some(xf), Some(dyf)) = (direct, T::as_f32(x), T::as_f32(dy)) {
        let partials: Vec<Vec<T>> = (0..parts)
            .into_par_iter()
            .map(|part| {
                let images = part * per..((part + 1) * per).min(g.n);
                let mut dw = vec![0f32; g.o * k];
                d.run(
                    &xf[images.start * img..images.end * img],
                    &dyf[images.start * g.o * p..images.end * g.o * p],
                    &mut dw,
                );
                T::from_f32_vec(dw)
            })
            .collect();
        return Ok((
            T::to_cpu_storage_owned(sum_parts(partials, g.o * k)),
            Shape::from((g.o, g.c, g.kh, g.kw)),
        ));
    }
    if g.same() && !g.pointwise() {
        let sh = Shifted::new(&g, g.c);
        let partials: Vec<Vec<T>> = (0..parts)
            .into_par_iter()
            .map(|part| {
                let mut acc = vec![T::ZERO; g.o * k];
                let mut xs = vec![T::ZERO; sh.rows() * sh.len];
                let mut dypad = Vec::new();
                for i in part * per..((part + 1) * per).min(g.n) {
                    sh.fill(&x[i * img..(i + 1) * img], &mut xs);
                    sh.pad_cols(&dy[i * g.o * p..(i + 1) * g.o * p], &mut dypad);
                    sh.weight_grad(&xs, &dypad, g.o, &mut acc);
                }
                acc
            })
            .collect();
        let acc = sum_parts(partials, g.o * k);
        // Kernel-row order [kh, o, c·kw] back to [o, c, kh, kw].
        let (kh, kw) = (g.kh, g.kw);
        let mut dw = vec![T::ZERO; g.o * k];
        for ki in 0..kh {
            for oi in 0..g.o {
                for ci in 0..g.c {
                    for kj in 0..kw {
                        dw[((oi * g.c + ci) * kh + ki) * kw + kj] =
                            acc[(ki * g.o + oi) * g.c * kw + ci * kw + kj];
                    }
                }
            }
        }
        return Ok((
            T::to_cpu_storage_owned(dw),
            Shape::from((g.o, g.c, g.kh, g.kw)),
        ));
    }
    let partials: Vec<Vec<T>> = (0..parts)
        .into_par_iter()
        .map(|part| {
            let mut acc = vec![T::ZERO; g.o * k];
            let mut cols = Vec::new();
            for i in part * per..((part + 1) * per).min(g.n) {
                let xi = &x[i * img..(i + 1) * img];
                let dyi = &dy[i * g.o * p..(i + 1) * g.o * p];
                let src: &[T] = if g.pointwise() {
                    xi
                } else {
                    cols.resize(k * p, T::ZERO);
                    im2col(xi, &g, &mut cols);
                    &cols
                };
                let lhs = Mat {
                    ptr: dyi.as_ptr(),
                    rs: p as isize,
                    cs: 1,
                };
                // colsᵀ [p, k]: element (q, r) is cols[r·p + q].
                let rhs = Mat {
                    ptr: src.as_ptr(),
                    rs: 1,
                    cs: p as isize,
                };
                // SAFETY: acc is [o, k]; dy_i is [o, p]; cols is [k, p].
                unsafe { matmul(g.o, k, p, acc.as_mut_ptr(), k as isize, true, lhs, rhs) };
            }
            acc
        })
        .collect();
    let dw = sum_parts(partials, g.o * k);
    Ok((
        T::to_cpu_storage_owned(dw),
        Shape::from((g.o, g.c, g.kh, g.kw)),
    ))
}

/// The sum of the per-part partial gradients, in part order (deterministic).
fn sum_parts<T: Elem>(partials: Vec<Vec<T>>, len: usize) -> Vec<T> {
    let mut parts = partials.into_iter();
    let mut sum = parts.next().unwrap_or_else(|| vec![T::ZERO; len]);
    for part in parts {
        for (d, s) in sum.iter_mut().zip(part) {
            *d += s;
        }
    }
    sum
}

impl CustomOp2 for Conv2dBwdWeight {
    fn name(&self) -> &'static str {
        "hkd-conv2d-bwd-weight"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = dims4(l1)?;
        let (n2, o, ho, wo) = dims4(l2)?;
        let g = Geom::new(
            (n, c, h, w),
            (o, c, self.kh, self.kw),
            self.stride,
            self.padding,
        );
        let Some(g) = g.filter(|g| n2 == n && g.ho == ho && g.wo == wo) else {
            bail!(
                "hkd-conv2d-bwd-weight: inconsistent shapes {:?} and {:?}",
                l1.dims(),
                l2.dims()
            )
        };
        dispatch!(
            "hkd-conv2d-bwd-weight",
            s1,
            conv_bwd_weight(g, s1, l1, s2, l2)
        )
    }
}
