//! The convolution backward for devices without our CPU kernels (CUDA above all): both
//! gradients are forward convolutions, so that they run wherever candle's `conv2d` runs —
//! cuDNN with candle's `cudnn` feature, im2col + cuBLAS without — and never through
//! candle's `conv_transpose2d`, which is a direct (naive) kernel on CUDA with or without
//! `cudnn`.
//!
//! For y = conv2d(x, w) with stride s, padding p and G groups — x [N, C, H, W],
//! w [O, C/G, kh, kw], y [N, O, Ho, Wo] — and the output gradient dy:
//!
//! - input gradient: dy zero-interleaved (s − 1 zeros after every element along both
//!   spatial axes, [N, O, Ho·s, Wo·s]), padded with kh − 1 − p zeros before and
//!   H + p − Ho·s after (negative amounts crop), then convolved with stride 1 with the
//!   kernel rotated by 180° and its channel axes swapped within each group
//!   ([C, O/G, kh, kw]) — for stride 1 the identity the CPU kernels use;
//! - weight gradient: a convolution over the batch axis, as in candle's own backward: x
//!   with batch and channel axes swapped is the input, dy likewise the kernel, padding p,
//!   dilation s; its output [C/G, O, ≥ kh, ≥ kw] is cut to the kernel size and transposed.
//!   With groups, x's channel groups are laid side by side ([C/G, G·N, H, W]) so that one
//!   grouped convolution computes every group's gradient.
//!
//! The forward value is candle's own `conv2d` of the detached inputs, bit for bit; a
//! [`CustomOp2`] over (x, w) attaches the backward, its forward handing over that value —
//! at the price of one device copy of y per convolution in training (an op's forward must
//! return a storage of its own; the original is dropped at once). Without any input that
//! needs a gradient (evaluation), the plain `conv2d` is returned.

use std::sync::Mutex;

use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CudaStorage, CustomOp2, Layout, MetalStorage, Result, Shape, Storage, Tensor, bail,
};

/// `x.conv2d(w, padding, stride, 1, groups)` whose backward is [`input_grad`] and
/// [`weight_grad`] (see the module's description).
pub(super) fn conv2d(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    padding: usize,
    groups: usize,
) -> Result<Tensor> {
    if !(x.track_op() || w.track_op()) {
        return x.conv2d(w, padding, stride, 1, groups);
    }
    let y = x.detach().conv2d(&w.detach(), padding, stride, 1, groups)?;
    x.apply_op2(
        w,
        GenericConv2d {
            stride,
            padding,
            groups,
            y: Mutex::new(Some(y)),
        },
    )
}

/// (x, w) → y = conv2d(x, w), computed beforehand, with the gradients of the module's
/// description.
struct GenericConv2d {
    stride: usize,
    padding: usize,
    groups: usize,
    /// candle's `conv2d` of x and w, until the forward pass hands over a copy of it.
    y: Mutex<Option<Tensor>>,
}

impl GenericConv2d {
    /// A copy of y's storage (`of`: its backend's storage) and its shape; y itself is
    /// dropped.
    fn output<S: BackendStorage>(&self, of: impl Fn(&Storage) -> Option<&S>) -> Result<(S, Shape)> {
        let Ok(mut slot) = self.y.lock() else {
            bail!("hkd-conv2d-generic: poisoned lock")
        };
        let Some(y) = slot.take() else {
            bail!("hkd-conv2d-generic: the forward pass ran twice")
        };
        let (storage, l) = y.storage_and_layout();
        let Some(s) = of(&storage) else {
            bail!("hkd-conv2d-generic: the output is on another device")
        };
        // A fresh tensor of candle's: its storage holds exactly its elements, in order.
        if !l.is_contiguous() || l.start_offset() != 0 {
            bail!("hkd-conv2d-generic: the output must be contiguous, got {l:?}")
        }
        Ok((s.try_clone(l)?, l.shape().clone()))
    }
}

impl CustomOp2 for GenericConv2d {
    fn name(&self) -> &'static str {
        "hkd-conv2d-generic"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.output(|s| match s {
            Storage::Cpu(s) => Some(s),
            _ => None,
        })
    }

    fn cuda_fwd(
        &self,
        _: &CudaStorage,
        _: &Layout,
        _: &CudaStorage,
        _: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        self.output(|s| match s {
            Storage::Cuda(s) => Some(s),
            _ => None,
        })
    }

    fn metal_fwd(
        &self,
        _: &MetalStorage,
        _: &Layout,
        _: &MetalStorage,
        _: &Layout,
    ) -> Result<(MetalStorage, Shape)> {
        self.output(|s| match s {
            Storage::Metal(s) => Some(s),
            _ => None,
        })
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (_, _, h, wd) = x.dims4()?;
        let (_, _, kh, kw) = w.dims4()?;
        let (s, p, g) = (self.stride, self.padding, self.groups);
        let dx = if x.track_op() {
            Some(input_grad(dy, &w.detach(), (h, wd), s, p, g)?)
        } else {
            None
        };
        let dw = if w.track_op() {
            Some(weight_grad(&x.detach(), dy, (kh, kw), s, p, g)?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}

/// The input gradient [N, C, h, w] of a convolution with stride `s`, padding `p` and `g`
/// groups, from its output gradient `dy` [N, O, Ho, Wo] and weight `w` [O, C/g, kh, kw]:
/// one stride-1 convolution of the zero-interleaved, padded `dy` with the rotated kernel.
fn input_grad(
    dy: &Tensor,
    w: &Tensor,
    (h, wd): (usize, usize),
    s: usize,
    p: usize,
    g: usize,
) -> Result<Tensor> {
    let (n, o, ho, wo) = dy.dims4()?;
    let (o2, cg, kh, kw) = w.dims4()?;
    if o2 != o || g == 0 || o % g != 0 || s == 0 {
        bail!(
            "hkd-conv2d-generic: input gradient of {:?} and {:?} with {g} groups, stride {s}",
            dy.dims(),
            w.dims()
        )
    }
    // dy[.., i, j] lands at (i·s, j·s); s − 1 zeros follow each element.
    let up = if s == 1 {
        dy.clone()
    } else {
        dy.reshape((n, o, ho, 1, wo, 1))?
            .pad_with_zeros(3, 0, s - 1)?
            .pad_with_zeros(5, 0, s - 1)?
            .reshape((n, o, ho * s, wo * s))?
    };
    // Zeros before and after along each axis so that a stride-1 convolution gives h × w;
    // what all four share is the convolution's own (symmetric) padding.
    let before = |k: usize| k as isize - 1 - p as isize;
    let after = |len: usize, out: usize| (len + p) as isize - (out * s) as isize;
    let (bh, ah, bw, aw) = (before(kh), after(h, ho), before(kw), after(wd, wo));
    let common = bh.min(ah).min(bw).min(aw).max(0);
    let up = pad_or_crop(&up, 2, bh - common, ah - common)?;
    let up = pad_or_crop(&up, 3, bw - common, aw - common)?;
    // The kernel rotated by 180°, [O, C/g] swapped to [C/g, O/g] within each group.
    let rotated = if kh > 1 || kw > 1 {
        w.flip(&[2, 3])?
    } else {
        w.clone()
    };
    let og = o / g;
    let wt = rotated
        .reshape((g, og, cg, kh, kw))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((g * cg, og, kh, kw))?;
    up.conv2d(&wt, common as usize, 1, 1, g)
}

/// Zero-pads (`> 0`) or crops (`< 0`) `t` along `dim` by `before` and `after` elements.
fn pad_or_crop(t: &Tensor, dim: usize, before: isize, after: isize) -> Result<Tensor> {
    let len = t.dim(dim)? as isize;
    let (cut_before, cut_after) = ((-before).max(0), (-after).max(0));
    if cut_before + cut_after > len {
        bail!("hkd-conv2d-generic: cannot crop {cut_before} + {cut_after} of {len} elements")
    }
    t.narrow(
        dim,
        cut_before as usize,
        (len - cut_before - cut_after) as usize,
    )?
    .pad_with_zeros(dim, before.max(0) as usize, after.max(0) as usize)
}

/// The weight gradient [O, C/g, kh, kw] of a convolution with stride `s`, padding `p` and
/// `g` groups, from its input `x` [N, C, H, W] and output gradient `dy` [N, O, Ho, Wo]:
/// one convolution over the batch axis (dilation `s`), cut to the kernel size.
fn weight_grad(
    x: &Tensor,
    dy: &Tensor,
    (kh, kw): (usize, usize),
    s: usize,
    p: usize,
    g: usize,
) -> Result<Tensor> {
    let (n, c, h, wd) = x.dims4()?;
    let (n2, o, _, _) = dy.dims4()?;
    if n2 != n || g == 0 || c % g != 0 || o % g != 0 || s == 0 {
        bail!(
            "hkd-conv2d-generic: weight gradient of {:?} and {:?} with {g} groups, stride {s}",
            x.dims(),
            dy.dims()
        )
    }
    let cg = c / g;
    // Images as channels, [C/g, g·N, H, W]: group gi's images at channels gi·N .. (gi+1)·N.
    let xt = if g == 1 {
        x.transpose(0, 1)?
    } else {
        x.reshape((n, g, cg, h, wd))?
            .permute((2, 1, 0, 3, 4))?
            .contiguous()?
            .reshape((cg, g * n, h, wd))?
    };
    // dy as the kernel [O, N, Ho, Wo], contiguous: candle's cuDNN conv2d sends a strided
    // kernel to its direct kernel instead.
    let k = dy.transpose(0, 1)?.contiguous()?;
    xt.conv2d(&k, p, 1, s, g)?
        .narrow(2, 0, kh)?
        .narrow(3, 0, kw)?
        .transpose(0, 1)?
        .contiguous()
}
