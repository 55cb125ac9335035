//! ReLU, the residual adds `relu(a + b)` and `a + b`, the Shake-Shake mix and its
//! shortcut's subsampling, one pass each way.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::fast_path;
use super::util::{Elem, dispatch, new_vec, slice, with_simd};

/// Elements per rayon task.
const CHUNK: usize = 16 * 1024;

#[inline]
pub(crate) fn pos<T: Elem>(v: T) -> T {
    if v > T::ZERO { v } else { T::ZERO }
}

/// `max(x, 0)`; gradient `dy` where the output is positive, else 0.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    if !fast_path(x) {
        return x.relu();
    }
    x.contiguous()?.apply_op1(Relu)
}

/// `max(a + b, 0)` (the residual add and the ReLU after it); both gradients are `dy`
/// where the output is positive, else 0.
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if !fast_path(a) || a.dtype() != b.dtype() || !b.device().is_cpu() || a.shape() != b.shape() {
        return (a + b)?.relu();
    }
    a.contiguous()?
        .apply_op2(&b.contiguous()?, Add { relu: true })
}

/// `a + b` (a residual add without a ReLU); both gradients are `dy` itself.
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if !fast_path(a) || a.dtype() != b.dtype() || !b.device().is_cpu() || a.shape() != b.shape() {
        return a + b;
    }
    a.contiguous()?
        .apply_op2(&b.contiguous()?, Add { relu: false })
}

struct Relu;

fn relu_fwd<T: Elem>(s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
    let x = slice::<T>(s, l, "hkd-relu")?;
    // SAFETY: the chunks of y and x pair up one to one, every element is written.
    let y = unsafe {
        new_vec(x.len(), |y| {
            y.par_chunks_mut(CHUNK)
                .zip(x.par_chunks(CHUNK))
                .for_each(|(yc, xc)| {
                    with_simd!({
                        for (o, &v) in yc.iter_mut().zip(xc) {
                            o.write(pos(v));
                        }
                    })
                })
        })
    };
    Ok((T::to_cpu_storage_owned(y), l.shape().clone()))
}

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "hkd-relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        dispatch!("hkd-relu", s, relu_fwd(s, l))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(res.apply_op2_no_bwd(&grad.contiguous()?, &ReluBwd)?))
    }
}

/// The residual add `a + b`, with the ReLU after it where `relu`.
struct Add {
    relu: bool,
}

fn add_fwd<T: Elem>(
    op: &Add,
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
) -> Result<(CpuStorage, Shape)> {
    let a = slice::<T>(s1, l1, op.name())?;
    let b = slice::<T>(s2, l2, op.name())?;
    if a.len() != b.len() {
        bail!(
            "{}: shapes {:?} and {:?} differ",
            op.name(),
            l1.dims(),
            l2.dims()
        )
    }
    // SAFETY: equal lengths, chunks pair up, every element is written.
    let y = unsafe {
        new_vec(a.len(), |y| {
            y.par_chunks_mut(CHUNK)
                .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
                .for_each(|(yc, (ac, bc))| {
                    with_simd!({
                        let pairs = yc.iter_mut().zip(ac).zip(bc);
                        if op.relu {
                            for ((o, &u), &v) in pairs {
                                o.write(pos(u + v));
                            }
                        } else {
                            for ((o, &u), &v) in pairs {
                                o.write(u + v);
                            }
                        }
                    })
                })
        })
    };
    Ok((T::to_cpu_storage_owned(y), l1.shape().clone()))
}

impl CustomOp2 for Add {
    fn name(&self) -> &'static str {
        if self.relu { "hkd-add-relu" } else { "hkd-add" }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        dispatch!(self.name(), s1, add_fwd(self, s1, l1, s2, l2))
    }

    /// Both gradients: dy, masked where the ReLU cut.
    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = if self.relu {
            res.apply_op2_no_bwd(&grad.contiguous()?, &ReluBwd)?
        } else {
            grad.clone()
        };
        let ga = a.track_op().then(|| g.clone());
        let gb = b.track_op().then_some(g);
        Ok((ga, gb))
    }
}

/// (ReLU output, dy) → dy where the output is positive, else 0.
struct ReluBwd;

fn relu_bwd<T: Elem>(
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
) -> Result<(CpuStorage, Shape)> {
    let y = slice::<T>(s1, l1, "hkd-relu-bwd")?;
    let g = slice::<T>(s2, l2, "hkd-relu-bwd")?;
    if y.len() != g.len() {
        bail!(
            "hkd-relu-bwd: shapes {:?} and {:?} differ",
            l1.dims(),
            l2.dims()
        )
    }
    // SAFETY: equal lengths, chunks pair up, every element is written.
    let dx = unsafe {
        new_vec(y.len(), |dx| {
            dx.par_chunks_mut(CHUNK)
                .zip(y.par_chunks(CHUNK).zip(g.par_chunks(CHUNK)))
                .for_each(|(dc, (yc, gc))| {
                    with_simd!({
                        for ((d, &v), &gv) in dc.iter_mut().zip(yc).zip(gc) {
                            d.write(if v > T::ZERO { gv } else { T::ZERO });
                        }
                    })
                })
        })
    };
    Ok((T::to_cpu_storage_owned(dx), l1.shape().clone()))
}

impl CustomOp2 for ReluBwd {
    fn name(&self) -> &'static str {
        "hkd-relu-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        dispatch!("hkd-relu-bwd", s1, relu_bwd(s1, l1, s2, l2))
    }
}

/// The Shake-Shake mix of two branch outputs x1, x2 [N, …]: per image i the value
/// `alpha[i]·x1 + (1 − alpha[i])·x2` and the gradients `beta[i]·dy` to x1 and
/// `(1 − beta[i])·dy` to x2 (with `alpha == beta` an ordinary convex combination).
/// Off the fast path it uses candle's ops.
pub fn shake_mix(x1: &Tensor, x2: &Tensor, alpha: &[f64], beta: &[f64]) -> Result<Tensor> {
    let n = x1.dim(0)?;
    if alpha.len() != n || beta.len() != n || x1.shape() != x2.shape() {
        bail!(
            "shake_mix: shapes {:?} and {:?}, {} alphas and {} betas",
            x1.dims(),
            x2.dims(),
            alpha.len(),
            beta.len()
        )
    }
    if !fast_path(x1) || x1.dtype() != x2.dtype() || !x2.device().is_cpu() {
        let col = |v: Vec<f64>| -> Result<Tensor> {
            let mut shape = vec![1; x1.rank()];
            shape[0] = n;
            Tensor::from_vec(v, shape, x1.device())?.to_dtype(x1.dtype())
        };
        let d = (x1 - x2)?;
        let a = col(alpha.to_vec())?;
        let b = col(beta.to_vec())?;
        let tracked = x2.add(&d.broadcast_mul(&b)?)?;
        let correction = d.detach().broadcast_mul(&(a - &b)?)?;
        return tracked + correction;
    }
    x1.contiguous()?.apply_op2(
        &x2.contiguous()?,
        ShakeMix {
            alpha: alpha.to_vec(),
            beta: beta.to_vec(),
        },
    )
}

struct ShakeMix {
    alpha: Vec<f64>,
    beta: Vec<f64>,
}

fn shake_fwd<T: Elem>(
    op: &ShakeMix,
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
) -> Result<(CpuStorage, Shape)> {
    let a = slice::<T>(s1, l1, "hkd-shake-mix")?;
    let b = slice::<T>(s2, l2, "hkd-shake-mix")?;
    let n = op.alpha.len();
    if a.len() != b.len() || n == 0 || a.len() % n != 0 {
        bail!("hkd-shake-mix: shapes {:?} and {:?}", l1.dims(), l2.dims())
    }
    let per = a.len() / n;
    // SAFETY: equal lengths, chunks pair up, every element is written.
    let y = unsafe {
        new_vec(a.len(), |y| {
            y.par_chunks_mut(per)
                .zip(a.par_chunks(per).zip(b.par_chunks(per)))
                .enumerate()
                .for_each(|(i, (yc, (ac, bc)))| {
                    with_simd!({
                        let (p, q) = (T::from_f64(op.alpha[i]), T::from_f64(1.0 - op.alpha[i]));
                        for ((o, &u), &v) in yc.iter_mut().zip(ac).zip(bc) {
                            o.write(p * u + q * v);
                        }
                    })
                })
        })
    };
    Ok((T::to_cpu_storage_owned(y), l1.shape().clone()))
}

impl CustomOp2 for ShakeMix {
    fn name(&self) -> &'static str {
        "hkd-shake-mix"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        dispatch!("hkd-shake-mix", s1, shake_fwd(self, s1, l1, s2, l2))
    }

    fn bwd(
        &self,
        x1: &Tensor,
        x2: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let g1 = if x1.track_op() {
            Some(grad.apply_op1_no_bwd(&ScaleImages(self.beta.clone()))?)
        } else {
            None
        };
        let g2 = if x2.track_op() {
            let rest: Vec<f64> = self.beta.iter().map(|b| 1.0 - b).collect();
            Some(grad.apply_op1_no_bwd(&ScaleImages(rest))?)
        } else {
            None
        };
        Ok((g1, g2))
    }
}

/// x [N, …] → x[i]·factor[i].
struct ScaleImages(Vec<f64>);

fn scale_images<T: Elem>(
    op: &ScaleImages,
    s: &CpuStorage,
    l: &Layout,
) -> Result<(CpuStorage, Shape)> {
    let x = slice::<T>(s, l, "hkd-scale-images")?;
    let n = op.0.len();
    if n == 0 || x.len() % n != 0 {
        bail!("hkd-scale-images: shape {:?}, {n} factors", l.dims())
    }
    let per = x.len() / n;
    // SAFETY: equal lengths, chunks pair up, every element is written.
    let y = unsafe {
        new_vec(x.len(), |y| {
            y.par_chunks_mut(per)
                .zip(x.par_chunks(per))
                .enumerate()
                .for_each(|(i, (yc, xc))| {
                    with_simd!({
                        let f = T::from_f64(op.0[i]);
                        for (o, &v) in yc.iter_mut().zip(xc) {
                            o.write(f * v);
                        }
                    })
                })
        })
    };
    Ok((T::to_cpu_storage_owned(y), l.shape().clone()))
}

impl CustomOp1 for ScaleImages {
    fn name(&self) -> &'static str {
        "hkd-scale-images"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        dispatch!("hkd-scale-images", s, scale_images(self, s, l))
    }
}

/// Every second row and column of `x` [N, C, H, W] from `offset` (0 or 1): the
/// [N, C, ⌈H/2⌉, ⌈W/2⌉] tensor of x[:, :, offset::2, offset::2], zero where that runs past
/// the border (Shake-Shake's shortcut: `avg_pool2d(kernel 1, stride 2)` of the image or of
/// the image shifted by one pixel). The gradient puts `dy` back at those positions, zeros
/// elsewhere.
pub fn subsample2(x: &Tensor, offset: usize) -> Result<Tensor> {
    if !fast_path(x) || x.rank() != 4 || offset > 1 {
        bail!("subsample2: needs a CPU f32/f64 [N, C, H, W] tensor and offset 0 or 1")
    }
    let (_, _, h, w) = x.dims4()?;
    x.contiguous()?.apply_op1(Subsample2 { offset, h, w })
}

#[derive(Clone, Copy)]
struct Subsample2 {
    offset: usize,
    /// The input's height and width.
    h: usize,
    w: usize,
}

impl Subsample2 {
    fn out(&self) -> (usize, usize) {
        (self.h.div_ceil(2), self.w.div_ceil(2))
    }
}

fn subsample_fwd<T: Elem>(
    op: &Subsample2,
    s: &CpuStorage,
    l: &Layout,
) -> Result<(CpuStorage, Shape)> {
    let (n, c, h, w) = l.shape().dims4()?;
    let x = slice::<T>(s, l, "hkd-subsample2")?;
    let (ho, wo) = op.out();
    // SAFETY: every output plane is written in full (zeros past the border).
    let y = unsafe {
        new_vec(n * c * ho * wo, |y| {
            y.par_chunks_mut(ho * wo)
                .zip(x.par_chunks(h * w))
                .for_each(|(yp, xp)| {
                    for (i, yr) in yp.chunks_exact_mut(wo).enumerate() {
                        let iy = 2 * i + op.offset;
                        for (j, o) in yr.iter_mut().enumerate() {
                            let ix = 2 * j + op.offset;
                            o.write(if iy < h && ix < w {
                                xp[iy * w + ix]
                            } else {
                                T::ZERO
                            });
                        }
                    }
                })
        })
    };
    Ok((T::to_cpu_storage_owned(y), Shape::from((n, c, ho, wo))))
}

impl CustomOp1 for Subsample2 {
    fn name(&self) -> &'static str {
        "hkd-subsample2"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        dispatch!("hkd-subsample2", s, subsample_fwd(self, s, l))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            grad.contiguous()?.apply_op1_no_bwd(&Subsample2Bwd(*self))?,
        ))
    }
}

/// dy [N, C, ⌈H/2⌉, ⌈W/2⌉] → dx [N, C, H, W] (see [`subsample2`]).
struct Subsample2Bwd(Subsample2);

fn subsample_bwd<T: Elem>(
    op: &Subsample2,
    s: &CpuStorage,
    l: &Layout,
) -> Result<(CpuStorage, Shape)> {
    let (n, c, ho, wo) = l.shape().dims4()?;
    let dy = slice::<T>(s, l, "hkd-subsample2-bwd")?;
    let (h, w) = (op.h, op.w);
    if (ho, wo) != op.out() {
        bail!(
            "hkd-subsample2-bwd: gradient shape {:?} for an input of {h}x{w}",
            l.dims()
        )
    }
    let mut dx = vec![T::ZERO; n * c * h * w];
    dx.par_chunks_mut(h * w)
        .zip(dy.par_chunks(ho * wo))
        .for_each(|(xp, gp)| {
            for (i, gr) in gp.chunks_exact(wo).enumerate() {
                let iy = 2 * i + op.offset;
                if iy >= h {
                    continue;
                }
                for (j, &g) in gr.iter().enumerate() {
                    let ix = 2 * j + op.offset;
                    if ix < w {
                        xp[iy * w + ix] = g;
                    }
                }
            }
        });
    Ok((T::to_cpu_storage_owned(dx), Shape::from((n, c, h, w))))
}

impl CustomOp1 for Subsample2Bwd {
    fn name(&self) -> &'static str {
        "hkd-subsample2-bwd"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        dispatch!("hkd-subsample2-bwd", s, subsample_bwd(&self.0, s, l))
    }
}
