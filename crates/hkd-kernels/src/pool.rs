//! 2×2 max pooling with stride 2 (VGG's pools), one pass each way.
//!
//! candle's `max_pool2d` backward is seven tensor ops (upsample, compare, average-pool,
//! multiply, upsample, multiply, cast) and gives a window's gradient to every element equal
//! to its maximum; this one recomputes each window's maximum in the backward pass and
//! gives the gradient to one element, the one PyTorch's CPU kernel picks: the first
//! maximum in row-major order, or the last NaN.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::fast_path;
use super::util::{Elem, dispatch, new_vec, slice};

/// `F.max_pool2d(x, 2)` of a [N, C, H, W] tensor (floor mode: an odd last row or column is
/// dropped, and gets no gradient). Off the fast path it is candle's `max_pool2d(2)`.
pub fn max_pool2x2(x: &Tensor) -> Result<Tensor> {
    if !fast_path(x) || x.rank() != 4 || x.dim(2)? < 2 || x.dim(3)? < 2 {
        return x.max_pool2d(2);
    }
    x.contiguous()?.apply_op1(MaxPool2x2)
}

/// The index (0..4, row-major) PyTorch's kernel picks in the window `v`: the first maximum,
/// or the last NaN.
#[inline]
fn argmax4<T: Elem>(v: [T; 4]) -> usize {
    let mut best = 0;
    for k in 1..4 {
        // `v != v`: NaN
        #[allow(clippy::eq_op)]
        let nan = v[k] != v[k];
        if v[k] > v[best] || nan {
            best = k;
        }
    }
    best
}

struct MaxPool2x2;

/// (planes, H, W, Ho, Wo) of a contiguous [N, C, H, W] layout.
fn geometry(l: &Layout, op: &str) -> Result<(usize, usize, usize, usize, usize)> {
    let &[n, c, h, w] = l.dims() else {
        bail!("{op}: expected a [N, C, H, W] tensor, got {:?}", l.dims())
    };
    Ok((n * c, h, w, h / 2, w / 2))
}

fn pool_fwd<T: Elem>(s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
    let x = slice::<T>(s, l, "hkd-max-pool2x2")?;
    let (planes, h, w, ho, wo) = geometry(l, "hkd-max-pool2x2")?;
    // SAFETY: one output plane per input plane; each of its ho·wo elements is written.
    let y = unsafe {
        new_vec(planes * ho * wo, |y| {
            y.par_chunks_mut(ho * wo)
                .zip(x.par_chunks(h * w))
                .for_each(|(yp, xp)| {
                    for i in 0..ho {
                        let (r0, r1) = (&xp[2 * i * w..], &xp[(2 * i + 1) * w..]);
                        for (j, o) in yp[i * wo..(i + 1) * wo].iter_mut().enumerate() {
                            let v = [r0[2 * j], r0[2 * j + 1], r1[2 * j], r1[2 * j + 1]];
                            o.write(v[argmax4(v)]);
                        }
                    }
                })
        })
    };
    let &[n, c, ..] = l.dims() else {
        unreachable!()
    };
    Ok((T::to_cpu_storage_owned(y), Shape::from((n, c, ho, wo))))
}

impl CustomOp1 for MaxPool2x2 {
    fn name(&self) -> &'static str {
        "hkd-max-pool2x2"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        dispatch!("hkd-max-pool2x2", s, pool_fwd(s, l))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            arg.apply_op2_no_bwd(&grad.contiguous()?, &MaxPool2x2Bwd)?,
        ))
    }
}

/// (x, dy) → dx: each window's dy at the element [`argmax4`] picks, 0 elsewhere.
struct MaxPool2x2Bwd;

fn pool_bwd<T: Elem>(
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
) -> Result<(CpuStorage, Shape)> {
    let op = "hkd-max-pool2x2-bwd";
    let x = slice::<T>(s1, l1, op)?;
    let g = slice::<T>(s2, l2, op)?;
    let (planes, h, w, ho, wo) = geometry(l1, op)?;
    if g.len() != planes * ho * wo {
        bail!("{op}: input {:?} and gradient {:?}", l1.dims(), l2.dims())
    }
    let mut dx = vec![T::ZERO; x.len()];
    dx.par_chunks_mut(h * w)
        .zip(x.par_chunks(h * w).zip(g.par_chunks(ho * wo)))
        .for_each(|(dp, (xp, gp))| {
            for i in 0..ho {
                for j in 0..wo {
                    let at = [
                        2 * i * w + 2 * j,
                        2 * i * w + 2 * j + 1,
                        (2 * i + 1) * w + 2 * j,
                        (2 * i + 1) * w + 2 * j + 1,
                    ];
                    let k = argmax4(at.map(|a| xp[a]));
                    dp[at[k]] = gp[i * wo + j];
                }
            }
        });
    Ok((T::to_cpu_storage_owned(dx), l1.shape().clone()))
}

impl CustomOp2 for MaxPool2x2Bwd {
    fn name(&self) -> &'static str {
        "hkd-max-pool2x2-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        dispatch!("hkd-max-pool2x2-bwd", s1, pool_bwd(s1, l1, s2, l2))
    }
}
