//! Shake-Shake ResNet (hysts' `shake_shake.py`, used by the original project as teacher):
//! two residual branches (ReLU-conv-BN-ReLU-conv-BN) mixed by per-image random weights,
//! identity shortcut, or the downsampling shortcut of two 1x1 convs on the ReLU'd input
//! (one shifted by a pixel) concatenated and batch-normalised.

use candle_core::Tensor;

use crate::error::ArchError;
use crate::kernels;
use crate::layers::{
    BatchNorm2d, Builder, Conv2d, Ctx, Linear, draw_uniform, global_avg_pool, shake_mix, subsample2,
};

type Result<T> = std::result::Result<T, ArchError>;

/// One residual branch: ReLU, conv3x3(stride), BN, ReLU, conv3x3, BN.
struct ResidualPath {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    conv2: Conv2d,
    bn2: BatchNorm2d,
}

impl ResidualPath {
    fn new(b: &mut Builder, inc: usize, out: usize, stride: usize) -> Result<Self> {
        Ok(ResidualPath {
            conv1: b.conv2d("conv1", inc, out, 3, stride, 1, 1, false)?,
            bn1: b.batch_norm("bn1", out)?,
            conv2: b.conv2d("conv2", out, out, 3, 1, 1, 1, false)?,
            bn2: b.batch_norm("bn2", out)?,
        })
    }

    /// `x_relu` is ReLU(x), shared by both branches (and the shortcut).
    fn forward(&self, x_relu: &Tensor, t: bool) -> Result<Tensor> {
        let y = self.bn1.forward_relu(&self.conv1.forward(x_relu, t)?, t)?;
        self.bn2.forward(&self.conv2.forward(&y, t)?, t)
    }
}

/// ReLU, then [conv1(x[::2, ::2]), conv2(shifted x[1::2, 1::2])] concatenated, BN.
struct DownsamplingShortcut {
    conv1: Conv2d,
    conv2: Conv2d,
    bn: BatchNorm2d,
}

impl DownsamplingShortcut {
    fn new(b: &mut Builder, inc: usize) -> Result<Self> {
        Ok(DownsamplingShortcut {
            conv1: b.conv2d("conv1", inc, inc, 1, 1, 0, 1, false)?,
            conv2: b.conv2d("conv2", inc, inc, 1, 1, 0, 1, false)?,
            bn: b.batch_norm("bn", 2 * inc)?,
        })
    }

    fn forward(&self, x_relu: &Tensor, t: bool) -> Result<Tensor> {
        let y1 = self.conv1.forward(&subsample2(x_relu, 0)?, t)?;
        let y2 = self.conv2.forward(&subsample2(x_relu, 1)?, t)?;
        let z = Tensor::cat(&[&y1, &y2], 1)?;
        self.bn.forward(&z, t)
    }
}

struct ShakeBlock {
    residual_path1: ResidualPath,
    residual_path2: ResidualPath,
    shortcut: Option<DownsamplingShortcut>,
}

impl ShakeBlock {
    fn new(b: &mut Builder, inc: usize, out: usize, stride: usize) -> Result<Self> {
        let residual_path1 =
            b.scope("residual_path1", |b| ResidualPath::new(b, inc, out, stride))?;
        let residual_path2 =
            b.scope("residual_path2", |b| ResidualPath::new(b, inc, out, stride))?;
        let shortcut = if inc != out {
            Some(b.scope("shortcut", |b| {
                b.scope("downsample", |b| DownsamplingShortcut::new(b, inc))
            })?)
        } else {
            None
        };
        Ok(ShakeBlock {
            residual_path1,
            residual_path2,
            shortcut,
        })
    }

    fn forward(&self, x: &Tensor, ctx: &mut Ctx<'_>) -> Result<Tensor> {
        let t = ctx.train;
        let x_relu = kernels::relu(x)?;
        let x1 = self.residual_path1.forward(&x_relu, t)?;
        let x2 = self.residual_path2.forward(&x_relu, t)?;
        let alpha_beta = if t {
            let n = x.dim(0)?;
            let rng = ctx.rng.as_deref_mut().ok_or_else(|| {
                ArchError::InvalidConfig("shake-shake training needs an RNG".into())
            })?;
            let alpha = draw_uniform(rng, n);
            let beta = draw_uniform(rng, n);
            Some((alpha, beta))
        } else {
            None
        };
        let y = shake_mix(
            &x1,
            &x2,
            alpha_beta
                .as_ref()
                .map(|(a, b)| (a.as_slice(), b.as_slice())),
        )?;
        let s = match &self.shortcut {
            Some(sc) => sc.forward(&x_relu, t)?,
            None => x.clone(),
        };
        Ok((s + y)?)
    }
}

/// The Shake-Shake network (no ReLU before the final pooling, as in the original code).
pub(crate) struct ShakeShake {
    conv: Conv2d,
    bn: BatchNorm2d,
    stages: Vec<Vec<ShakeBlock>>,
    fc: Linear,
}

impl ShakeShake {
    pub fn new(b: &mut Builder, depth: usize, width: usize, classes: usize) -> Result<Self> {
        let n = (depth - 2) / 6;
        let conv = b.conv2d("conv", 3, width, 3, 1, 1, 1, false)?;
        let bn = b.batch_norm("bn", width)?;
        let mut stages = Vec::new();
        let mut inc = width;
        for (s, &(out, stride)) in [(width, 1), (2 * width, 2), (4 * width, 2)]
            .iter()
            .enumerate()
        {
            let stage = b.scope(&format!("stage{}", s + 1), |b| {
                (0..n)
                    .map(|i| {
                        let (ic, st) = if i == 0 { (inc, stride) } else { (out, 1) };
                        b.scope(&format!("block{}", i + 1), |b| {
                            ShakeBlock::new(b, ic, out, st)
                        })
                    })
                    .collect::<Result<Vec<_>>>()
            })?;
            stages.push(stage);
            inc = out;
        }
        let fc = b.linear("fc", 4 * width, classes)?;
        Ok(ShakeShake {
            conv,
            bn,
            stages,
            fc,
        })
    }

    pub fn forward(&self, x: &Tensor, ctx: &mut Ctx<'_>) -> Result<Tensor> {
        let t = ctx.train;
        let mut x = self.bn.forward_relu(&self.conv.forward(x, t)?, t)?;
        for block in self.stages.iter().flatten() {
            x = block.forward(&x, ctx)?;
        }
        self.fc.forward(&global_avg_pool(&x)?, t)
    }
}
