//! CIFAR ResNet (basic blocks), as in the original project (hysts' `resnet.py`):
//! conv3x3(3->16)+BN+ReLU, three stages of n blocks (16, 32, 64 channels, strides 1, 2, 2),
//! global average pool, linear.

use candle_core::{ModuleT, Tensor};

use crate::error::ArchError;
use crate::layers::{
    BatchNorm2d, Builder, Conv2d, Conv2dConfig, ConvInit, Ctx, InitScheme, Linear, LinearInit,
    Shortcut, batch_norm2d, conv2d_no_bias, global_avg_pool, linear,
};
use crate::models::{Args, Family, Input, Model};
use crate::registry::{check_depth, parse_num};

type Result<T> = std::result::Result<T, ArchError>;

pub(crate) const FAMILY: Family = Family {
    id: "resnet",
    pattern: "resnet{6n+2} (resnet8, resnet14, resnet20, resnet26, resnet32, resnet44, resnet56, resnet110, ...)",
    params: &["depth"],
    listed: &[
        "resnet8",
        "resnet14",
        "resnet20",
        "resnet26",
        "resnet32",
        "resnet44",
        "resnet56",
        "resnet110",
    ],
    aliases: &[],
    parse,
    canonical_name: |&[depth, ..]| format!("resnet{depth}"),
    description: |&[depth, ..]| {
        format!(
            "CIFAR ResNet, {} basic blocks per stage, 16/32/64 channels",
            (depth - 2) / 6
        )
    },
    input: Input::Any,
    init: InitScheme {
        conv: ConvInit::KaimingNormalFanOut,
        bn_weight_uniform: false,
        linear: LinearInit::ZeroBias,
    },
    build: |vb, &[depth, ..], classes| Ok(Box::new(ResNet::new(vb, depth, classes)?)),
};

/// `resnet{6n+2}`. Names such as `resnet8x4` are RepDistiller's (`resnet_x4`); this
/// family reports why they are not its own too, and the registry keeps the one that parses.
fn parse(name: &str) -> Option<std::result::Result<Args, String>> {
    let rest = name.strip_prefix("resnet")?;
    Some((|| {
        let depth = parse_num(rest, "depth")?;
        check_depth(depth, 6, 2)?;
        Ok([depth, 0, 0])
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

/// conv-BN-ReLU-conv-BN plus shortcut (conv1x1+BN when channels change), ReLU after the add.
struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    conv2: Conv2d,
    bn2: BatchNorm2d,
    shortcut: Shortcut,
}

impl BasicBlock {
    fn new(mut vb: Builder<'_>, inc: usize, out: usize, stride: usize) -> Result<Self> {
        Ok(BasicBlock {
            conv1: conv2d_no_bias(inc, out, 3, conv3x3(stride), vb.pp("conv1"))?,
            bn1: batch_norm2d(out, vb.pp("bn1"))?,
            conv2: conv2d_no_bias(out, out, 3, conv3x3(1), vb.pp("conv2"))?,
            bn2: batch_norm2d(out, vb.pp("bn2"))?,
            shortcut: Shortcut::new(vb, inc, out, stride)?,
        })
    }

    fn forward(&self, x: &Tensor, ctx: &mut Ctx<'_>) -> Result<Tensor> {
        let t = ctx.train;
        let y = self.bn1.after_conv(&self.conv1, x, t, true)?;
        let s = self.shortcut.forward(x, t)?;
        self.bn2.after_conv_add_relu(&self.conv2, &y, &s, t)
    }
}

/// The CIFAR ResNet.
struct ResNet {
    conv: Conv2d,
    bn: BatchNorm2d,
    stages: Vec<Vec<BasicBlock>>,
    fc: Linear,
}

impl ResNet {
    fn new(mut vb: Builder<'_>, depth: usize, classes: usize) -> Result<Self> {
        let n = (depth - 2) / 6;
        let conv = conv2d_no_bias(3, 16, 3, conv3x3(1), vb.pp("conv"))?;
        let bn = batch_norm2d(16, vb.pp("bn"))?;
        let mut stages = Vec::new();
        let mut inc = 16;
        for (s, &(out, stride)) in [(16, 1), (32, 2), (64, 2)].iter().enumerate() {
            let mut stage = vb.pp(format!("stage{}", s + 1));
            let blocks = (0..n)
                .map(|i| {
                    let (ic, st) = if i == 0 { (inc, stride) } else { (out, 1) };
                    BasicBlock::new(stage.pp(format!("block{}", i + 1)), ic, out, st)
                })
                .collect::<Result<Vec<_>>>()?;
            stages.push(blocks);
            inc = out;
        }
        let fc = linear(64, classes, vb.pp("fc"))?;
        Ok(ResNet {
            conv,
            bn,
            stages,
            fc,
        })
    }
}

impl Model for ResNet {
    fn forward(&self, x: &Tensor, ctx: &mut Ctx<'_>) -> Result<Tensor> {
        let t = ctx.train;
        let mut x = self.bn.after_conv(&self.conv, x, t, true)?;
        for block in self.stages.iter().flatten() {
            x = block.forward(&x, ctx)?;
        }
        Ok(self.fc.forward_t(&global_avg_pool(&x)?, t)?)
    }
}
