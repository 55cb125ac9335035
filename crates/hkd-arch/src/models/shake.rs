//! Shake-Shake ResNet (hysts' `shake_shake.py`, used by the original project as teacher):
//! two residual branches (ReLU-conv-BN-ReLU-conv-BN) mixed by per-image random weights,
//! identity shortcut, or the downsampling shortcut of two 1x1 convs on the ReLU'd input
//! (one shifted by a pixel) concatenated and batch-normalised.

use candle_core::{ModuleT, Tensor};

use crate::error::ArchError;
use crate::layers::{
    BatchNorm2d, Builder, Conv2d, Conv2dConfig, ConvInit, Ctx, InitScheme, Linear, LinearInit,
    batch_norm2d, conv2d_no_bias, draw_uniform, global_avg_pool, linear, relu, residual_add,
    shake_mix, subsample2,
};
use crate::models::{Args, Family, Input, Model};
use crate::registry::{check_depth, parse_cxwd, parse_num};

type Result<T> = std::result::Result<T, ArchError>;

pub(crate) const FAMILY: Family = Family {
    id: "shake",
    pattern: "shake{6n+2}-2x{W}d (shake26-2x16d, shake26-2x32d, shake26-2x64d, shake26-2x96d, ...; shake26 = shake26-2x64d)",
    params: &["depth", "width"],
    listed: &[
        "shake26-2x16d",
        "shake26-2x32d",
        "shake26-2x64d",
        "shake26-2x96d",
    ],
    aliases: &[("shake26", "shake26-2x64d")],
    parse,
    canonical_name: |&[depth, width, _]| format!("shake{depth}-2x{width}d"),
    description: |&[depth, width, _]| {
        format!(
            "Shake-Shake, 2 branches, {} blocks per stage, {}/{}/{} channels",
            (depth - 2) / 6,
            width,
            2 * width,
            4 * width
        )
    },
    input: Input::Any,
    init: InitScheme {
        conv: ConvInit::KaimingNormalFanOut,
        bn_weight_uniform: false,
        linear: LinearInit::ZeroBias,
    },
    build: |vb, &[depth, width, _], classes| {
        Ok(Box::new(ShakeShake::new(vb, depth, width, classes)?))
    },
};

fn parse(name: &str) -> Option<std::result::Result<Args, String>> {
    let rest = name.strip_prefix("shake")?;
    Some((|| {
        let (d, bw) = rest
            .split_once('-')
            .ok_or("expected shake{depth}-2x{W}d")?;
        let depth = parse_num(d, "depth")?;
        check_depth(depth, 6, 2)?;
        let (branches, width) = parse_cxwd(bw)?;
        if branches != 2 {
            return Err(format!("Shake-Shake has 2 branches, not {branches}"));
        }
        Ok([depth, width, 0])
    })())
}

/// 3x3 convolution settings with padding 1.
fn conv3x3(stride: usize) -> Conv2dConfig {
    Conv2dConfig {
        padding: 1,
        stride,
        ..Default::default()
    }
}

/// One residual branch: ReLU, conv3x3(stride), BN, ReLU, conv3x3, BN.
struct ResidualPath {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    conv2: Conv2d,
    bn2: BatchNorm2d,
}

impl ResidualPath {
    fn new(mut vb: Builder<'_>, inc: usize, out: usize, stride: usize) -> Result<Self> {
        Ok(ResidualPath {
            conv1: conv2d_no_bias(inc, out, 3, conv3x3(stride), vb.pp("conv1"))?,
            bn1: batch_norm2d(out, vb.pp("bn1"))?,
            conv2: conv2d_no_bias(out, out, 3, conv3x3(1), vb.pp("conv2"))?,
            bn2: batch_norm2d(out, vb.pp("bn2"))?,
        })
    }

    /// `x_relu` is ReLU(x), shared by both branches (and the shortcut).
    fn forward(&self, x_relu: &Tensor, t: bool) -> Result<Tensor> {
        let y = self.bn1.after_conv(&self.conv1, x_relu, t, true)?;
        self.bn2.after_conv(&self.conv2, &y, t, false)
    }
}

/// ReLU, then [conv1(x[::2, ::2]), conv2(shifted x[1::2, 1::2])] concatenated, BN.
struct DownsamplingShortcut {
    conv1: Conv2d,
    conv2: Conv2d,
    bn: BatchNorm2d,
}

impl DownsamplingShortcut {
    fn new(mut vb: Builder<'_>, inc: usize) -> Result<Self> {
        let cfg = Conv2dConfig::default();
        Ok(DownsamplingShortcut {
            conv1: conv2d_no_bias(inc, inc, 1, cfg, vb.pp("conv1"))?,
            conv2: conv2d_no_bias(inc, inc, 1, cfg, vb.pp("conv2"))?,
            bn: batch_norm2d(2 * inc, vb.pp("bn"))?,
        })
    }

    fn forward(&self, x_relu: &Tensor, t: bool) -> Result<Tensor> {
        let y1 = self.conv1.forward_t(&subsample2(x_relu, 0)?, t)?;
        let y2 = self.conv2.forward_t(&subsample2(x_relu, 1)?, t)?;
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
    fn new(mut vb: Builder<'_>, inc: usize, out: usize, stride: usize) -> Result<Self> {
        let residual_path1 = ResidualPath::new(vb.pp("residual_path1"), inc, out, stride)?;
        let residual_path2 = ResidualPath::new(vb.pp("residual_path2"), inc, out, stride)?;
        let shortcut = if inc != out {
            Some(DownsamplingShortcut::new(
                vb.pp("shortcut").pp("downsample"),
                inc,
            )?)
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
        let x_relu = relu(x)?;
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
        residual_add(&s, &y)
    }
}

/// The Shake-Shake network (no ReLU before the final pooling, as in the original code).
struct ShakeShake {
    conv: Conv2d,
    bn: BatchNorm2d,
    stages: Vec<Vec<ShakeBlock>>,
    fc: Linear,
}

impl ShakeShake {
    fn new(mut vb: Builder<'_>, depth: usize, width: usize, classes: usize) -> Result<Self> {
        let n = (depth - 2) / 6;
        let conv = conv2d_no_bias(3, width, 3, conv3x3(1), vb.pp("conv"))?;
        let bn = batch_norm2d(width, vb.pp("bn"))?;
        let mut stages = Vec::new();
        let mut inc = width;
        for (s, &(out, stride)) in [(width, 1), (2 * width, 2), (4 * width, 2)]
            .iter()
            .enumerate()
        {
            let mut stage = vb.pp(format!("stage{}", s + 1));
            let blocks = (0..n)
                .map(|i| {
                    let (ic, st) = if i == 0 { (inc, stride) } else { (out, 1) };
                    ShakeBlock::new(stage.pp(format!("block{}", i + 1)), ic, out, st)
                })
                .collect::<Result<Vec<_>>>()?;
            stages.push(blocks);
            inc = out;
        }
        let fc = linear(4 * width, classes, vb.pp("fc"))?;
        Ok(ShakeShake {
            conv,
            bn,
            stages,
            fc,
        })
    }

}

impl Model for ShakeShake {
    fn forward(&self, x: &Tensor, ctx: &mut Ctx<'_>) -> Result<Tensor> {
        let t = ctx.train;
        let mut x = self.bn.after_conv(&self.conv, x, t, true)?;
        for block in self.stages.iter().flatten() {
            x = block.forward(&x, ctx)?;
        }
        Ok(self.fc.forward_t(&global_avg_pool(&x)?, t)?)
    }
}
