//! Fused CPU kernels for the layers of the networks, as candle custom ops.
//!
//! Stock candle (0.11) trains these small CIFAR networks an order of magnitude slower
//! than PyTorch on the CPU: its convolution gradients are direct loops, and BatchNorm is a
//! dozen separate tensor ops each allocating a full-size tensor (see `docs/performance.md`).
//! This module replaces the hot operations with [`candle_core::CustomOp1`] /
//! [`CustomOp2`](candle_core::CustomOp2) / [`CustomOp3`](candle_core::CustomOp3)
//! implementations whose backward passes are themselves built from fast custom ops:
//!
//! - [`conv2d`]: im2col (per image, in parallel over images with rayon) + GEMM through
//!   the `gemm` crate (single-threaded inside each rayon task, so there is no
//!   oversubscription); 1×1 stride-1 convolutions skip the im2col. Input gradient:
//!   `Wᵀ·dY` + col2im per image; weight gradient: `dY·colsᵀ` accumulated over a fixed
//!   partition of the batch and reduced in a fixed order (bit-identical results for the
//!   same inputs, whatever the number of threads). The input gradient is skipped when the
//!   input needs none (the images). 3×3 convolutions with padding 1 in f32, where the CPU
//!   has AVX-512 or AVX2 with FMA, use direct kernels instead for the forward pass, the
//!   input gradient and (stride 1) the weight gradient (module `direct`: no GEMM packing,
//!   no shifted copies).
//! - [`batch_norm_train`]: per-channel batch mean and biased variance accumulated in f64
//!   (one read pass each), then normalisation with the affine transform in one write pass;
//!   the backward pass reduces `Σdy` and `Σdy·x̂` per channel in one pass and writes the
//!   input gradient (PyTorch's formula) in another.
//! - [`channel_affine`]: `x·scale[c] + shift[c]` with an optional ReLU (BatchNorm in
//!   evaluation, fused with the ReLU that follows it).
//! - [`relu`] and [`add_relu`]: one pass each, gradients masked by the output; [`add`];
//!   [`subsample2`] (Shake-Shake's shortcut) and its gradient, one pass each.
//!
//! Only f32 and f64 tensors on the CPU use the kernels. Every function here checks
//! [`fast_path`] and otherwise falls back to candle's stock operations (CUDA, Metal, f16,
//! bf16), which compute the same values; there are no CUDA kernels of our own. Grouped
//! convolutions on the CPU: depthwise ones (MobileNetV2, ShuffleNetV2) are one op of their
//! own ([`ConvPath::Depthwise`]), the others (ResNeXt) run the kernels group by group
//! ([`ConvPath::PerGroup`]).
//!
//! One exception to "stock": off the CPU, [`conv2d`] keeps candle's forward convolution but
//! computes both gradients as forward convolutions too (the *generic backward*, module
//! `generic`), because candle's own input gradient is `conv_transpose2d`, a direct kernel
//! on CUDA. Which path a convolution takes is [`conv_path`]'s decision, from the
//! environment (`HKD_ARCH_STOCK_OPS`, `HKD_ARCH_GENERIC_BACKWARD`) or a thread's
//! [`with_ops`] override, and so is whether 3×3 convolutions use the direct kernels
//! (`HKD_ARCH_DIRECT_CONV`). Every switch is a field of [`Ops`].

mod batchnorm;
mod conv;
mod depthwise;
mod direct;
mod elementwise;
mod generic;
mod pool;
mod util;

use std::cell::Cell;
use std::sync::OnceLock;

use candle_core::{DType, Tensor};

pub use batchnorm::{batch_norm_train, batch_norm_train_add_relu, channel_affine, channel_stats};
pub use conv::{BatchMoments, conv_path, conv2d, conv2d_affine, conv2d_stats};
pub use direct::direct_conv_isa;
pub use elementwise::{add, add_relu, relu, shake_mix, subsample2};
pub use pool::max_pool2x2;

/// Whether `t` is handled by the kernels of this module: on the CPU, in f32 or f64, and
/// stock operations are not forced ([`Ops::stock`]: `HKD_ARCH_STOCK_OPS=1`, read once,
/// makes every layer use candle's stock operations, for comparisons and benchmarks).
pub fn fast_path(t: &Tensor) -> bool {
    t.device().is_cpu() && matches!(t.dtype(), DType::F32 | DType::F64) && !stock_ops_forced()
}

/// `HKD_ARCH_STOCK_OPS=1` (or a [`with_ops`] override): use candle's stock operations
/// instead of the CPU kernels.
pub fn stock_ops_forced() -> bool {
    Ops::current().stock
}

/// Which implementations the layers use: the environment's choice ([`Ops::from_env`]),
/// or the current thread's own ([`with_ops`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ops {
    /// `HKD_ARCH_STOCK_OPS=1`: candle's stock operations instead of the CPU kernels.
    pub stock: bool,
    /// `HKD_ARCH_GENERIC_BACKWARD`: `Some(true)` (`=1`) every convolution through the
    /// generic backward, on the CPU too instead of the CPU kernels; `Some(false)` (`=0`)
    /// none (off the CPU, candle's own backward, with `conv_transpose2d`); `None` (unset,
    /// the default) the generic backward off the CPU only.
    pub generic_backward: Option<bool>,
    /// `HKD_ARCH_DIRECT_CONV=0` makes it `false`: 3×3 convolutions through im2col + GEMM
    /// instead of the direct AVX-512/AVX2 kernels (module `direct`), for comparisons. The
    /// default `true` uses them where the CPU has them ([`direct_conv_isa`]).
    pub direct_conv: bool,
}

/// How a convolution is computed ([`conv_path`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvPath {
    /// The CPU kernels of this module (f32/f64 CPU tensors, groups 1).
    Kernels,
    /// A depthwise convolution (`groups` = input = output channels) on the CPU: one op
    /// with its own gradients (module `depthwise`).
    Depthwise,
    /// Any other grouped convolution on the CPU: [`ConvPath::Kernels`] on each group's
    /// channels, the outputs concatenated.
    PerGroup,
    /// candle's `conv2d` forward, the gradients as forward convolutions (any device).
    Generic,
    /// candle's `conv2d` with candle's own backward.
    Stock,
}

thread_local! {
    static OPS_OVERRIDE: Cell<Option<Ops>> = const { Cell::new(None) };
}

impl Ops {
    /// The choice of the environment variables `HKD_ARCH_STOCK_OPS` (`1`: stock),
    /// `HKD_ARCH_GENERIC_BACKWARD` (`1` or `0`; anything else counts as unset) and
    /// `HKD_ARCH_DIRECT_CONV` (`0`: off), read once. These are every switch of the kernels.
    pub fn from_env() -> Ops {
        static ENV: OnceLock<Ops> = OnceLock::new();
        *ENV.get_or_init(|| {
            let var = |name: &str| std::env::var(name).ok();
            Ops {
                stock: var("HKD_ARCH_STOCK_OPS").as_deref() == Some("1"),
                generic_backward: match var("HKD_ARCH_GENERIC_BACKWARD").as_deref() {
                    Some("1") => Some(true),
                    Some("0") => Some(false),
                    _ => None,
                },
                direct_conv: var("HKD_ARCH_DIRECT_CONV").as_deref() != Some("0"),
            }
        })
    }

    /// The current thread's [`with_ops`] override, else [`Ops::from_env`].
    pub fn current() -> Ops {
        OPS_OVERRIDE.with(Cell::get).unwrap_or_else(Ops::from_env)
    }
}

/// Runs `f` with `ops` as the current thread's choice of implementations (restored
/// afterwards, also on panic): for comparing the paths in one process, as the tests do.
/// The choice is made when a layer's forward pass runs (the backward pass follows it), on
/// the thread that runs it.
pub fn with_ops<R>(ops: Ops, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Ops>);
    impl Drop for Restore {
        fn drop(&mut self) {
            OPS_OVERRIDE.with(|o| o.set(self.0));
        }
    }
    let _restore = Restore(OPS_OVERRIDE.with(|o| o.replace(Some(ops))));
    f()
}
