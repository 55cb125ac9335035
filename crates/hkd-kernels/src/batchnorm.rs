//! BatchNorm2d: batch statistics, training-mode normalisation with its backward pass, and
//! the per-channel affine map of evaluation mode.

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, bail,
};
use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::elementwise::pos;
use super::fast_path;
use super::util::{
    BnAffine, Elem, SideResult, dispatch, min_items, new_vec, slice, sum, sum_dy_dyx, sum_sq_dev,
    with_simd,
};

fn nc_hw(l: &Layout, op: &str) -> Result<(usize, usize, usize)> {
    match l.dims() {
        [n, c, h, w] => Ok((*n, *c, h * w)),
        d => bail!("{op}: expected an [N, C, H, W] tensor, got {d:?}"),
    }
}

/// Per-channel statistics of x [N, C, H, W] → [2, C] f64: mean, biased variance.
struct ChannelStats;

fn stats<T: Elem>(s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
    let (n, c, hw) = nc_hw(l, "hkd-bn-stats")?;
    let x = slice::<T>(s, l, "hkd-bn-stats")?;
    let count = (n * hw) as f64;
    let per: Vec<(f64, f64)> = (0..c)
        .into_par_iter()
        .map(|ci| {
            let plane = |i: usize| &x[(i * c + ci) * hw..(i * c + ci + 1) * hw];
            let mean = (0..n).map(|i| sum(plane(i))).sum::<f64>() / count;
            let var = (0..n).map(|i| sum_sq_dev(plane(i), mean)).sum::<f64>() / count;
            (mean, var)
        })
        .collect();
    let mut out: Vec<f64> = per.iter().map(|p| p.0).collect();
    out.extend(per.iter().map(|p| p.1));
    Ok((CpuStorage::F64(out), Shape::from((2, c))))
}

impl CustomOp1 for ChannelStats {
    fn name(&self) -> &'static str {
        "hkd-bn-stats"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        dispatch!("hkd-bn-stats", s, stats(s, l))
    }
}

/// Per-channel batch mean and biased variance of `x` [N, C, H, W], in f64 (two read
/// passes over each channel, accumulated in f64 in a fixed order). Any device and dtype
/// (off the fast path, through candle's ops).
pub fn channel_stats(x: &Tensor) -> Result<(Vec<f64>, Vec<f64>)> {
    let x = x.detach();
    if fast_path(&x) {
        let x = x.contiguous()?;
        let s = x.apply_op1_no_bwd(&ChannelStats)?.to_vec2::<f64>()?;
        let mut it = s.into_iter();
        let mean = it.next().unwrap_or_default();
        let var = it.next().unwrap_or_default();
        return Ok((mean, var));
    }
    let (n, c, h, w) = x.dims4()?;
    let x = x.to_dtype(DType::F64)?.reshape((n, c, h * w))?;
    let mean = x.mean_keepdim(2)?.mean_keepdim(0)?;
    let var = x
        .broadcast_sub(&mean)?
        .sqr()?
        .mean_keepdim(2)?
        .mean_keepdim(0)?;
    Ok((
        mean.flatten_all()?
            .to_device(&candle_core::Device::Cpu)?
            .to_vec1()?,
        var.flatten_all()?
            .to_device(&candle_core::Device::Cpu)?
            .to_vec1()?,
    ))
}

/// Training-mode BatchNorm: `y = (x − mean)·invstd·γ + β` with the batch statistics
/// `mean` and `var` (biased) from [`channel_stats`], followed by a ReLU when `relu`;
/// differentiable in x, γ and β (PyTorch's formulas). `x` [N, C, H, W] must be on the fast
/// path ([`fast_path`]); the running statistics are the caller's business.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    mean: &[f64],
    var: &[f64],
    eps: f64,
    relu: bool,
) -> Result<Tensor> {
    if !fast_path(x) {
        bail!("batch_norm_train: only f32/f64 CPU tensors (check kernels::fast_path)")
    }
    let c = x.dim(1)?;
    if mean.len() != c || var.len() != c || gamma.elem_count() != c || beta.elem_count() != c {
        bail!(
            "batch_norm_train: {c} channels but {} means, {} variances",
            mean.len(),
            var.len()
        )
    }
    let x = x.contiguous()?;
    let invstd = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    x.apply_op3(
        &gamma.contiguous()?,
        &beta.contiguous()?,
        BnTrain {
            stats: BatchStats {
                mean: mean.to_vec(),
                invstd,
            },
            relu,
        },
    )
}

/// A training step's batch statistics per channel: mean and 1/sqrt(var + eps).
#[derive(Clone)]
struct BatchStats {
    mean: Vec<f64>,
    invstd: Vec<f64>,
}

impl BatchStats {
    /// The forward's map `(x − mean)·(invstd·γ) + β` per channel in the element type; the
    /// one place it is rounded, so forward and backward (the ReLU gate) agree bit for bit.
    fn affine<T: Elem>(&self, gamma: &[f64], beta: &[f64]) -> Vec<BnAffine<T>> {
        (0..self.mean.len())
            .map(|ci| BnAffine {
                mean: T::from_f64(self.mean[ci]),
                scale: T::from_f64(self.invstd[ci] * gamma[ci]),
                shift: T::from_f64(beta[ci]),
            })
            .collect()
    }
}

/// With a fused ReLU, what its gate is recomputed from in the backward passes: the batch
/// statistics and γ, β as they were in the forward pass.
#[derive(Clone)]
struct ReluGate {
    stats: BatchStats,
    gamma: Vec<f64>,
    beta: Vec<f64>,
}

impl ReluGate {
    fn affine<T: Elem>(&self) -> Vec<BnAffine<T>> {
        self.stats.affine(&self.gamma, &self.beta)
    }
}

struct BnTrain {
    stats: BatchStats,
    relu: bool,
}

fn bn_train_fwd<T: Elem>(
    op: &BnTrain,
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
    s3: &CpuStorage,
    l3: &Layout,
) -> Result<(CpuStorage, Shape)> {
    let (_, c, hw) = nc_hw(l1, "hkd-bn-train")?;
    let x = slice::<T>(s1, l1, "hkd-bn-train")?;
    let to_f64 = |v: &[T]| v.iter().map(|g| g.to_f64()).collect::<Vec<_>>();
    let gamma = to_f64(slice::<T>(s2, l2, "hkd-bn-train")?);
    let beta = to_f64(slice::<T>(s3, l3, "hkd-bn-train")?);
    if gamma.len() != c || beta.len() != c {
        bail!(
            "hkd-bn-train: {c} channels but {} γ, {} β",
            gamma.len(),
            beta.len()
        )
    }
    let affine = op.stats.affine::<T>(&gamma, &beta);
    // SAFETY: y and x have the same length and chunking; every element is written.
    let y = unsafe {
        new_vec(x.len(), |y| {
            y.par_chunks_mut(hw)
                .with_min_len(min_items(hw))
                .zip(x.par_chunks(hw))
                .enumerate()
                .for_each(|(i, (yp, xp))| {
                    with_simd!({
                        let a = affine[i % c];
                        if op.relu {
                            for (o, &v) in yp.iter_mut().zip(xp) {
                                o.write(pos(a.apply(v)));
                            }
                        } else {
                            for (o, &v) in yp.iter_mut().zip(xp) {
                                o.write(a.apply(v));
                            }
                        }
                    })
                })
        })
    };
    Ok((T::to_cpu_storage_owned(y), l1.shape().clone()))
}

impl CustomOp3 for BnTrain {
    fn name(&self) -> &'static str {
        "hkd-bn-train"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        dispatch!(
            "hkd-bn-train",
            s1,
            bn_train_fwd(self, s1, l1, s2, l2, s3, l3)
        )
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let (n, c, h, w) = x.dims4()?;
        let count = (n * h * w) as f64;
        let host = |t: &Tensor| t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>();
        let g = host(gamma)?;
        // With the fused ReLU the incoming gradient is masked where the output is 0; the
        // gate is recomputed from x (one array fewer to read than the output).
        let relu = if self.relu {
            Some(ReluGate {
                stats: self.stats.clone(),
                gamma: g.clone(),
                beta: host(beta)?,
            })
        } else {
            None
        };
        let sums = x
            .apply_op2_no_bwd(
                &grad,
                &BnBwdReduce {
                    mean: self.stats.mean.clone(),
                    relu: relu.clone(),
                },
            )?
            .to_vec2::<f64>()?;
        let (sdy, sdyx) = (&sums[0], &sums[1]);
        let invstd = &self.stats.invstd;
        let dev = x.device();
        let dgamma = gamma.track_op().then(|| {
            let v: Vec<f64> = (0..c).map(|ci| sdyx[ci] * invstd[ci]).collect();
            Tensor::from_vec(v, c, dev)?
                .to_dtype(gamma.dtype())?
                .reshape(gamma.shape())
        });
        let dbeta = beta.track_op().then(|| {
            Tensor::from_vec(sdy.clone(), c, dev)?
                .to_dtype(beta.dtype())?
                .reshape(beta.shape())
        });
        let dx = if x.track_op() {
            Some(x.apply_op2_no_bwd(
                &grad,
                &BnBwdInput {
                    mean: self.stats.mean.clone(),
                    coef: input_grad_coef(invstd, &g, sdy, sdyx, count),
                    relu,
                },
            )?)
        } else {
            None
        };
        Ok((dx, dgamma.transpose()?, dbeta.transpose()?))
    }
}

/// The end of a residual block in training: `max(BN(x) + r, 0)` with the batch statistics
/// `mean` and `var` (biased), in one pass instead of BatchNorm's write pass and the
/// add + ReLU pass over its output; differentiable in x, γ, β and r. The same operations
/// as [`batch_norm_train`] followed by [`add_relu`](super::add_relu), so the same bits,
/// values and gradients. Backward: one pass masks the incoming gradient by the output
/// (r's gradient) and sums it per channel, then BatchNorm's input-gradient pass. `x` and
/// `r` [N, C, H, W] must be on the fast path with the same shape.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_train_add_relu(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    mean: &[f64],
    var: &[f64],
    eps: f64,
    r: &Tensor,
) -> Result<Tensor> {
    if !fast_path(x) || r.dtype() != x.dtype() || !r.device().is_cpu() || r.shape() != x.shape() {
        bail!("batch_norm_train_add_relu: x and r must be CPU f32/f64 tensors of one shape")
    }
    let c = x.dim(1)?;
    if mean.len() != c || var.len() != c || gamma.elem_count() != c || beta.elem_count() != c {
        bail!(
            "batch_norm_train_add_relu: {c} channels but {} means, {} variances",
            mean.len(),
            var.len()
        )
    }
    // γ and β as one input ([γ; β]): a custom op takes at most three.
    let gb = Tensor::cat(&[gamma.flatten_all()?, beta.flatten_all()?], 0)?;
    let invstd = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    x.contiguous()?.apply_op3(
        &gb,
        &r.contiguous()?,
        BnTrainAddRelu {
            stats: BatchStats {
                mean: mean.to_vec(),
                invstd,
            },
        },
    )
}

struct BnTrainAddRelu {
    stats: BatchStats,
}

fn bn_add_relu_fwd<T: Elem>(
    op: &BnTrainAddRelu,
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
    s3: &CpuStorage,
    l3: &Layout,
) -> Result<(CpuStorage, Shape)> {
    let (_, c, hw) = nc_hw(l1, "hkd-bn-add-relu")?;
    let (x, r) = x_and_dy::<T>("hkd-bn-add-relu", s1, l1, s3, l3)?;
    let gb: Vec<f64> = slice::<T>(s2, l2, "hkd-bn-add-relu")?
        .iter()
        .map(|v| v.to_f64())
        .collect();
    if gb.len() != 2 * c {
        bail!(
            "hkd-bn-add-relu: {c} channels but {} values of γ and β",
            gb.len()
        )
    }
    let affine = op.stats.affine::<T>(&gb[..c], &gb[c..]);
    // SAFETY: y, x and r have the same length and chunking; every element is written.
    let y = unsafe {
        new_vec(x.len(), |y| {
            y.par_chunks_mut(hw)
                .with_min_len(min_items(hw))
                .zip(x.par_chunks(hw).zip(r.par_chunks(hw)))
                .enumerate()
                .for_each(|(i, (yp, (xp, rp)))| {
                    with_simd!({
                        let a = affine[i % c];
                        for ((o, &v), &u) in yp.iter_mut().zip(xp).zip(rp) {
                            o.write(pos(a.apply(v) + u));
                        }
                    })
                })
        })
    };
    Ok((T::to_cpu_storage_owned(y), l1.shape().clone()))
}

impl CustomOp3 for BnTrainAddRelu {
    fn name(&self) -> &'static str {
        "hkd-bn-add-relu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        dispatch!(
            "hkd-bn-add-relu",
            s1,
            bn_add_relu_fwd(self, s1, l1, s2, l2, s3, l3)
        )
    }

    fn bwd(
        &self,
        x: &Tensor,
        gb: &Tensor,
        r: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, c, h, w) = x.dims4()?;
        let count = (n * h * w) as f64;
        // g = grad where the output is positive (r's gradient), and its sums.
        let sums = SideResult::new();
        let g = res.contiguous()?.apply_op3_no_bwd(
            &grad.contiguous()?,
            x,
            &MaskAndReduce {
                mean: self.stats.mean.clone(),
                sums: sums.clone(),
            },
        )?;
        let Some((sdy, sdyx)) = sums.take() else {
            bail!("hkd-bn-add-relu backward: no sums")
        };
        let invstd = &self.stats.invstd;
        let dev = x.device();
        let dgb = gb.track_op().then(|| {
            let mut v: Vec<f64> = (0..c).map(|ci| sdyx[ci] * invstd[ci]).collect();
            v.extend_from_slice(&sdy);
            Tensor::from_vec(v, 2 * c, dev)?.to_dtype(gb.dtype())
        });
        let dx = if x.track_op() {
            let gamma: Vec<f64> = gb.narrow(0, 0, c)?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
            Some(x.apply_op2_no_bwd(
                &g,
                &BnBwdInput {
                    mean: self.stats.mean.clone(),
                    coef: input_grad_coef(invstd, &gamma, &sdy, &sdyx, count),
                    relu: None,
                },
            )?)
        } else {
            None
        };
        let dr = r.track_op().then_some(g);
        Ok((dx, dgb.transpose()?, dr))
    }
}

/// (y, dy, x) → g = dy where y > 0, else 0; leaves Σg and Σg·(x − mean) per channel
/// in `sums` (per image and channel while the plane is in cache, then over the images
/// in order: the same sums as [`BnBwdReduce`] of g).
struct MaskAndReduce {
    mean: Vec<f64>,
    sums: SideResult<(Vec<f64>, Vec<f64>)>,
}

fn mask_and_reduce<T: Elem>(
    op: &MaskAndReduce,
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
    s3: &CpuStorage,
    l3: &Layout,
) -> Result<(CpuStorage, Shape)> {
    let (n, c, hw) = nc_hw(l1, "hkd-mask-reduce")?;
    let (y, dy) = x_and_dy::<T>("hkd-mask-reduce", s1, l1, s2, l2)?;
    let (_, x) = x_and_dy::<T>("hkd-mask-reduce", s1, l1, s3, l3)?;
    let mut part = vec![(0f64, 0f64); n * c];
    // SAFETY: g, y, dy and x have the same length and chunking; every element is written.
    let g = unsafe {
        new_vec(y.len(), |g| {
            g.par_chunks_mut(hw)
                .zip(part.par_iter_mut())
                .zip(
                    y.par_chunks(hw)
                        .zip(dy.par_chunks(hw).zip(x.par_chunks(hw))),
                )
                .enumerate()
                .for_each(|(i, ((gp, sp), (yp, (dp, xp))))| {
                    with_simd!({
                        for ((o, &v), &d) in gp.iter_mut().zip(yp).zip(dp) {
                            o.write(if v > T::ZERO { d } else { T::ZERO });
                        }
                    });
                    // (Inside `new_vec`'s unsafe block.) SAFETY: every element of the
                    // plane was just written.
                    let gp = &*(gp as *const [MaybeUninit<T>] as *const [T]);
                    *sp = sum_dy_dyx(gp, xp, None, op.mean[i % c]);
                })
        })
    };
    let (mut sdy, mut sdyx) = (vec![0f64; c], vec![0f64; c]);
    for pi in part.chunks_exact(c) {
        for ci in 0..c {
            sdy[ci] += pi[ci].0;
            sdyx[ci] += pi[ci].1;
        }
    }
    op.sums.set((sdy, sdyx));
    Ok((T::to_cpu_storage_owned(g), l1.shape().clone()))
}

impl CustomOp3 for MaskAndReduce {
    fn name(&self) -> &'static str {
        "hkd-mask-reduce"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        dispatch!(
            "hkd-mask-reduce",
            s1,
            mask_and_reduce(self, s1, l1, s2, l2, s3, l3)
        )
    }
}

/// BatchNorm's input gradient `dx = a·(g − Σg/M − x̂·Σ(g·x̂)/M)`, x̂ = (x − mean)·invstd,
/// a = γ·invstd, as [a, b, c] per channel for `dx = a·g + b·(x − mean) + c`.
fn input_grad_coef(
    invstd: &[f64],
    gamma: &[f64],
    sdy: &[f64],
    sdyx: &[f64],
    count: f64,
) -> Vec<f64> {
    let mut coef = Vec::with_capacity(3 * invstd.len());
    for (((&is, &gc), &sx), &sd) in invstd.iter().zip(gamma).zip(sdyx).zip(sdy) {
        let a = gc * is;
        coef.push(a);
        coef.push(-a * is * is * sx / count);
        coef.push(-a * sd / count);
    }
    coef
}

/// (x, dy) → [2, C] f64: Σg and Σg·(x − mean) per channel, where g is dy, or with `relu`
/// dy masked where the forward's output was 0.
struct BnBwdReduce {
    mean: Vec<f64>,
    relu: Option<ReluGate>,
}

/// x and dy of a BatchNorm backward op, checked to have the same shape.
fn x_and_dy<'a, T: Elem>(
    op: &str,
    s1: &'a CpuStorage,
    l1: &Layout,
    s2: &'a CpuStorage,
    l2: &Layout,
) -> Result<(&'a [T], &'a [T])> {
    let x = slice::<T>(s1, l1, op)?;
    let dy = slice::<T>(s2, l2, op)?;
    if l1.dims() != l2.dims() {
        bail!(
            "{op}: gradient shape {:?} differs from input {:?}",
            l2.dims(),
            l1.dims()
        )
    }
    Ok((x, dy))
}

fn bn_bwd_reduce<T: Elem>(
    op: &BnBwdReduce,
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
) -> Result<(CpuStorage, Shape)> {
    let (n, c, hw) = nc_hw(l1, "hkd-bn-bwd-reduce")?;
    let (x, dy) = x_and_dy::<T>("hkd-bn-bwd-reduce", s1, l1, s2, l2)?;
    let affine = op.relu.as_ref().map(ReluGate::affine::<T>);
    let per: Vec<(f64, f64)> = (0..c)
        .into_par_iter()
        .map(|ci| {
            let (mut s1, mut s2) = (0.0, 0.0);
            let gate = affine.as_ref().map(|a| a[ci]);
            for i in 0..n {
                let r = (i * c + ci) * hw..(i * c + ci + 1) * hw;
                let (a, b) = sum_dy_dyx(&dy[r.clone()], &x[r], gate, op.mean[ci]);
                s1 += a;
                s2 += b;
            }
            (s1, s2)
        })
        .collect();
    let mut out: Vec<f64> = per.iter().map(|p| p.0).collect();
    out.extend(per.iter().map(|p| p.1));
    Ok((CpuStorage::F64(out), Shape::from((2, c))))
}

impl CustomOp2 for BnBwdReduce {
    fn name(&self) -> &'static str {
        "hkd-bn-bwd-reduce"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        dispatch!("hkd-bn-bwd-reduce", s1, bn_bwd_reduce(self, s1, l1, s2, l2))
    }
}

/// (x, dy) → dx = a·g + b·(x − mean) + c per channel (`coef` = [a, b, c] per channel),
/// g = dy, or with `relu` dy masked where the forward's output was 0.
struct BnBwdInput {
    mean: Vec<f64>,
    coef: Vec<f64>,
    relu: Option<ReluGate>,
}

fn bn_bwd_input<T: Elem>(
    op: &BnBwdInput,
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
) -> Result<(CpuStorage, Shape)> {
    let (_, c, hw) = nc_hw(l1, "hkd-bn-bwd-input")?;
    let (x, dy) = x_and_dy::<T>("hkd-bn-bwd-input", s1, l1, s2, l2)?;
    let coef: Vec<[T; 4]> = (0..c)
        .map(|ci| {
            let k = &op.coef[3 * ci..3 * ci + 3];
            [
                T::from_f64(k[0]),
                T::from_f64(k[1]),
                T::from_f64(k[2]),
                T::from_f64(op.mean[ci]),
            ]
        })
        .collect();
    let affine = op.relu.as_ref().map(ReluGate::affine::<T>);
    // SAFETY: dx, x and dy have the same length and chunking; every element is written.
    let dx = unsafe {
        new_vec(x.len(), |dx| {
            dx.par_chunks_mut(hw)
                .with_min_len(min_items(hw))
                .zip(x.par_chunks(hw).zip(dy.par_chunks(hw)))
                .enumerate()
                .for_each(|(i, (dp, (xp, gp)))| {
                    with_simd!({
                        let [a, b, cc, m] = coef[i % c];
                        if let Some(affine) = &affine {
                            let gate = affine[i % c];
                            for ((d, &v), &g) in dp.iter_mut().zip(xp).zip(gp) {
                                let g = if gate.open(v) { g } else { T::ZERO };
                                d.write(a * g + b * (v - m) + cc);
                            }
                        } else {
                            for ((d, &v), &g) in dp.iter_mut().zip(xp).zip(gp) {
                                d.write(a * g + b * (v - m) + cc);
                            }
                        }
                    })
                })
        })
    };
    Ok((T::to_cpu_storage_owned(dx), l1.shape().clone()))
}

impl CustomOp2 for BnBwdInput {
    fn name(&self) -> &'static str {
        "hkd-bn-bwd-input"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        dispatch!("hkd-bn-bwd-input", s1, bn_bwd_input(self, s1, l1, s2, l2))
    }
}

/// `y = x·scale[c] + shift[c]` on x [N, C, H, W], then ReLU when `relu`: BatchNorm in
/// evaluation (scale = γ/√(running_var + ε), shift = β − running_mean·scale), fused with
/// the ReLU that follows it. Its backward gives the input gradient only (for attacks).
/// Off the fast path it uses candle's broadcast ops.
pub fn channel_affine(x: &Tensor, scale: &[f64], shift: &[f64], relu: bool) -> Result<Tensor> {
    let c = x.dim(1)?;
    if scale.len() != c || shift.len() != c {
        bail!(
            "channel_affine: {c} channels but {} scales, {} shifts",
            scale.len(),
            shift.len()
        )
    }
    if !fast_path(x) || x.rank() != 4 {
        let col = |v: &[f64]| -> Result<Tensor> {
            Tensor::from_slice(v, (1, c, 1, 1), x.device())?.to_dtype(x.dtype())
        };
        let y = x.broadcast_mul(&col(scale)?)?.broadcast_add(&col(shift)?)?;
        return if relu { y.relu() } else { Ok(y) };
    }
    x.contiguous()?.apply_op1(ChannelAffine {
        scale: scale.to_vec(),
        shift: shift.to_vec(),
        relu,
    })
}

struct ChannelAffine {
    scale: Vec<f64>,
    shift: Vec<f64>,
    relu: bool,
}

fn affine_fwd<T: Elem>(
    op: &ChannelAffine,
    s: &CpuStorage,
    l: &Layout,
) -> Result<(CpuStorage, Shape)> {
    let (_, c, hw) = nc_hw(l, "hkd-channel-affine")?;
    let x = slice::<T>(s, l, "hkd-channel-affine")?;
    // SAFETY: y and x have the same length and chunking; every element is written.
    let y = unsafe {
        new_vec(x.len(), |y| {
            y.par_chunks_mut(hw)
                .with_min_len(min_items(hw))
                .zip(x.par_chunks(hw))
                .enumerate()
                .for_each(|(i, (yp, xp))| {
                    with_simd!({
                        let ci = i % c;
                        let (a, b) = (T::from_f64(op.scale[ci]), T::from_f64(op.shift[ci]));
                        if op.relu {
                            for (o, &v) in yp.iter_mut().zip(xp) {
                                o.write(pos(v * a + b));
                            }
                        } else {
                            for (o, &v) in yp.iter_mut().zip(xp) {
                                o.write(v * a + b);
                            }
                        }
                    })
                })
        })
    };
    Ok((T::to_cpu_storage_owned(y), l.shape().clone()))
}

impl CustomOp1 for ChannelAffine {
    fn name(&self) -> &'static str {
        "hkd-channel-affine"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        dispatch!("hkd-channel-affine", s, affine_fwd(self, s, l))
    }

    /// The input gradient, for adversarial attacks on a network in evaluation mode
    /// (the parameters are detached there): `grad·scale[c]`, masked where ReLU cut.
    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(affine_input_grad(
            &self.scale,
            self.relu,
            res,
            grad_res,
        )?))
    }
}

/// The input gradient of `y = x·scale[c] + shift[c]` (then ReLU where `relu`) from the
/// output `res` and its gradient: `grad·scale[c]`, zero where the ReLU cut.
pub(super) fn affine_input_grad(
    scale: &[f64],
    relu: bool,
    res: &Tensor,
    grad_res: &Tensor,
) -> Result<Tensor> {
    let c = scale.len();
    let scale =
        Tensor::from_slice(scale, (1, c, 1, 1), res.device())?.to_dtype(grad_res.dtype())?;
    let grad = grad_res.broadcast_mul(&scale)?;
    if relu {
        let open = res.gt(0.0)?.to_dtype(grad.dtype())?;
        return grad * open;
    }
    Ok(grad)
}
