//! The wide CIFAR ResNets of the knowledge-distillation benchmarks, `resnet8x4` and
//! `resnet32x4` (RepDistiller's `models/resnet.py`, `ResNet(depth, [32, 64, 128, 256],
//! 'basicblock')`, also used by mdistiller): conv3x3(3->32)+BN+ReLU, three stages
//! (`layer1`..`layer3`) of n basic blocks with 64, 128 and 256 channels and strides 1, 2, 2,
//! a fixed 8x8 average pool, linear. A block's shortcut is `downsample`, conv1x1(stride)
//! and BN, when its stride or width changes; the names are those of RepDistiller's
//! checkpoints (`layer1.0.downsample.0.weight`, ...).

use candle_core::{ModuleT, Tensor};

use crate::error::ArchError;
use crate::layers::{
    BatchNorm2d, Builder, Conv2d, Conv2dConfig, ConvInit, Ctx, InitScheme, Linear, LinearInit,
    batch_norm2d, conv2d_no_bias, linear,
};
use crate::models::{Args, Family, Input, Model};
use crate::registry::{check_depth, parse_num};

type Result<T> = std::result::Result<T, ArchError>;

pub(crate) const FAMILY: Family = Family {
    id: "resnet_x4",
    pattern: "resnet{6n+2}x4 (resnet8x4, resnet32x4: RepDistiller's wide CIFAR ResNets)",
    params: &["depth"],
    listed: &["resnet8x4", "resnet32x4"],
    aliases: &[],
    parse,
    canonical_name: |&[depth, ..]| format!("resnet{depth}x4"),
    description: |&[depth, ..]| {
        format!(
            "CIFAR ResNet x4 (RepDistiller), {} basic blocks per stage, 32-channel stem, 64/128/256 channels",
            (depth - 2) / 6
        )
    },
    // AvgPool2d(8) and a linear layer of 256 inputs: 32x32 images.
    input: Input::Cifar32,
    init: InitScheme {
        conv: ConvInit::KaimingNormalFanOut,
        bn_weight_uniform: false,
        linear: LinearInit::TorchDefault,
    },
    build: |vb, &[depth, ..], classes| Ok(Box::new(ResNetX4::new(vb, depth, classes)?)),
};

/// `resnet{depth}x{k}` with a numeric depth; only k = 4 exists.
fn parse(name: &str) -> Option<std::result::Result<Args, String>> {
    let (d, k) = name.strip_prefix("resnet")?.split_once('x')?;
    if d.is_empty() || !d.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((|| {
        let depth = parse_num(d, "depth")?;
        check_depth(depth, 6, 2)?;
        if k != "4" {
            return Err(format!(
                "the wide CIFAR ResNets are resnet{{6n+2}}x4, not x{k}"
            ));
        }
        Ok([depth, 0, 0])
    })())
}

fn conv3x3(stride: usize) -> Conv2dConfig {
    Conv2dConfig {
        padding: 1,
        stride,
        ..Default::default()
    }
}

/// conv-BN-ReLU-conv-BN plus the shortcut (identity or `downsample`), ReLU after the add.
struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    conv2: Conv2d,
    bn2: BatchNorm2d,
    downsample: Option<(Conv2d, BatchNorm2d)>,
}

impl BasicBlock {
    fn new(mut vb: Builder<'_>, inc: usize, out: usize, stride: usize) -> Result<Self> {
        let conv1 = conv2d_no_bias(inc, out, 3, conv3x3(stride), vb.pp("conv1"))?;
        let bn1 = batch_norm2d(out, vb.pp("bn1"))?;
        let conv2 = conv2d_no_bias(out, out, 3, conv3x3(1), vb.pp("conv2"))?;
        let bn2 = batch_norm2d(out, vb.pp("bn2"))?;
        let downsample = if stride != 1 || inc != out {
            let mut seq = vb.pp("downsample");
            let cfg = Conv2dConfig {
                stride,
                ..Default::default()
            };
            Some((
                conv2d_no_bias(inc, out, 1, cfg, seq.pp(0))?,
                batch_norm2d(out, seq.pp(1))?,
            ))
        } else {
            None
        };
        Ok(BasicBlock {
            conv1,
            bn1,
            conv2,
            bn2,
            downsample,
        })
    }

    fn forward(&self, x: &Tensor, t: bool) -> Result<Tensor> {
        let y = self.bn1.after_conv(&self.conv1, x, t, true)?;
        let residual = match &self.downsample {
            Some((conv, bn)) => bn.after_conv(conv, x, t, false)?,
            None => x.clone(),
        };
        self.bn2.after_conv_add_relu(&self.conv2, &y, &residual, t)
    }
}

struct ResNetX4 {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    layers: Vec<BasicBlock>,
    fc: Linear,
}

impl ResNetX4 {
    fn new(mut vb: Builder<'_>, depth: usize, classes: usize) -> Result<Self> {
        let n = (depth - 2) / 6;
        let conv1 = conv2d_no_bias(3, 32, 3, conv3x3(1), vb.pp("conv1"))?;
        let bn1 = batch_norm2d(32, vb.pp("bn1"))?;
        let mut layers = Vec::new();
        let mut inc = 32;
        for (l, (out, stride)) in [(64, 1), (128, 2), (256, 2)].into_iter().enumerate() {
            let mut layer = vb.pp(format!("layer{}", l + 1));
            for i in 0..n {
                let stride = if i == 0 { stride } else { 1 };
                layers.push(BasicBlock::new(layer.pp(i), inc, out, stride)?);
                inc = out;
            }
        }
        let fc = linear(256, classes, vb.pp("fc"))?;
        Ok(ResNetX4 {
            conv1,
            bn1,
            layers,
            fc,
        })
    }
}

impl Model for ResNetX4 {
    fn forward(&self, x: &Tensor, ctx: &mut Ctx<'_>) -> Result<Tensor> {
        let t = ctx.train;
        let mut x = self.bn1.after_conv(&self.conv1, x, t, true)?;
        for block in &self.layers {
            x = block.forward(&x, t)?;
        }
        let x = x.avg_pool2d(8)?;
        let x = x.reshape((x.dim(0)?, ()))?;
        Ok(self.fc.forward_t(&x, t)?)
    }
}
