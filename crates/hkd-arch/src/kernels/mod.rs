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
//!   input needs none (the images).
//! - [`batch_norm_train`]: per-channel batch mean and biased variance accumulated in f64
//!   (one read pass each), then normalisation with the affine transform in one write pass;
//!   the backward pass reduces `Σdy` and `Σdy·x̂` per channel in one pass and writes the
//!   input gradient (PyTorch's formula) in another.
//! - [`channel_affine`]: `x·scale[c] + shift[c]` with an optional ReLU (BatchNorm in
//!   evaluation, fused with the ReLU that follows it).
//! - [`relu`] and [`add_relu`]: one pass each, gradients masked by the output.
//!
//! Only f32 and f64 tensors on the CPU use the kernels. Every function here checks
//! [`fast_path`] and otherwise falls back to candle's stock operations (CUDA, Metal, f16,
//! bf16), which compute the same values; there are no CUDA kernels of our own. Grouped
//! convolutions (ResNeXt) and dilations other than 1 also use candle's convolution.

mod batchnorm;
mod conv;
mod elementwise;
mod util;

use std::sync::OnceLock;

use candle_core::{DType, Tensor};

pub use batchnorm::{batch_norm_train, channel_affine, channel_stats};
pub use conv::conv2d;
pub use elementwise::{add_relu, relu, shake_mix};

/// Whether `t` is handled by the kernels of this module: on the CPU, in f32 or f64, and
/// the environment variable `HKD_ARCH_STOCK_OPS` is not set to `1` (read once; it makes
/// every layer use candle's stock operations, for comparisons and benchmarks).
pub fn fast_path(t: &Tensor) -> bool {
    t.device().is_cpu() && matches!(t.dtype(), DType::F32 | DType::F64) && !stock_ops_forced()
}

/// `HKD_ARCH_STOCK_OPS=1`: use candle's stock operations everywhere.
pub fn stock_ops_forced() -> bool {
    static FORCED: OnceLock<bool> = OnceLock::new();
    *FORCED.get_or_init(|| std::env::var_os("HKD_ARCH_STOCK_OPS").is_some_and(|v| v == "1"))
}
