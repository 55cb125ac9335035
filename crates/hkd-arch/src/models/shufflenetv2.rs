//! ShuffleNetV2 as the knowledge-distillation benchmarks use it on CIFAR (RepDistiller's
//! `models/ShuffleNetv2.py`, `ShuffleV2` = `ShuffleNetV2(net_size=1)`; also mdistiller's):
//! `conv1` = conv1x1(3->24)+BN+ReLU (`bn1`), three stages `layer1`..`layer3` with 116, 232
//! and 464 channels, each a down-sampling block (`layer1.0`) then 3, 7 and 3 basic blocks,
//! `conv2` = conv1x1(464->1024)+BN+ReLU (`bn2`), a 4x4 average pool and `linear`.
//!
//! A basic block splits its input's channels in halves x1, x2 and keeps x1;
//! x2 goes through conv1x1+BN+ReLU (`conv1`, `bn1`), a depthwise conv3x3+BN (`conv2`,
//! `bn2`) and conv1x1+BN+ReLU (`conv3`, `bn3`); the two halves are concatenated and
//! channel-shuffled (2 groups). A down-sampling block has two branches on the whole input:
//! depthwise conv3x3(stride 2)+BN, conv1x1+BN+ReLU (`conv1`/`bn1`, `conv2`/`bn2`), and
//! conv1x1+BN+ReLU, depthwise conv3x3(stride 2)+BN, conv1x1+BN+ReLU (`conv3`..`bn5`),
//! each with half the output channels, concatenated and shuffled. No custom
//! initialisation: PyTorch's defaults.

use candle_core::{ModuleT, Tensor};

use crate::error::ArchError;
use crate::layers::{
    BatchNorm2d, Builder, Conv2d, Conv2dConfig, ConvInit, Ctx, InitScheme, Linear, LinearInit,
    batch_norm2d, conv2d_no_bias, linear,
};
use crate::models::{Args, Family, Input, Model};

type Result<T> = std::result::Result<T, ArchError>;

pub(crate) const FAMILY: Family = Family {
    id: "shufflev2",
    pattern: "shufflev2 (RepDistiller's ShuffleV2: CIFAR ShuffleNetV2, net_size 1)",
    params: &[],
    listed: &["shufflev2"],
    aliases: &[],
    parse,
    canonical_name: |_| "shufflev2".to_string(),
    description: |_| {
        "CIFAR ShuffleNetV2 (RepDistiller's ShuffleV2), net_size 1, 116/232/464 channels, 3+7+3 basic blocks"
            .to_string()
    },
    // AvgPool2d(4) then a linear layer of 1024 inputs: 32x32 images.
    input: Input::Cifar32,
    init: InitScheme {
        conv: ConvInit::TorchDefault,
        bn_weight_uniform: false,
        linear: LinearInit::TorchDefault,
    },
    build: |vb, _, classes| Ok(Box::new(ShuffleNetV2::new(vb, classes)?)),
};

fn parse(name: &str) -> Option<std::result::Result<Args, String>> {
    let rest = name.strip_prefix("shuffle")?;
    Some(if rest == "v2" {
        Ok([0, 0, 0])
    } else {
        Err(format!(
            "of the ShuffleNets only shufflev2 (RepDistiller's ShuffleV2, net_size 1) exists, not shuffle{rest}"
        ))
    })
}

/// (output channels, basic blocks) of the three stages, and the channels of `conv2`.
const STAGES: [(usize, usize); 3] = [(116, 3), (232, 7), (464, 3)];
const STEM: usize = 24;
const HEAD: usize = 1024;

/// `conv{i}` and `bn{i}`: a conv without bias (1x1, or depthwise 3x3 with `stride`) and
/// its BatchNorm.
fn conv_bn(
    vb: &mut Builder<'_>,
    i: usize,
    (inc, out): (usize, usize),
    depthwise_stride: Option<usize>,
) -> Result<(Conv2d, BatchNorm2d)> {
    let (k, cfg) = match depthwise_stride {
        Some(stride) => (
            3,
            Conv2dConfig {
                padding: 1,
                stride,
                groups: inc,
            },
        ),
        None => (1, Conv2dConfig::default()),
    };
    Ok((
        conv2d_no_bias(inc, out, k, cfg, vb.pp(format!("conv{i}")))?,
        batch_norm2d(out, vb.pp(format!("bn{i}")))?,
    ))
}

/// `ShuffleBlock(groups=2)` applied to `torch.cat([a, b], 1)`: channel 2j of the result
/// is a's channel j and channel 2j+1 is b's (`view(N, 2, C/2, H, W).permute(0, 2, 1, 3,
/// 4).reshape(N, C, H, W)` of the concatenation is the two stacked along a new third
/// axis).
fn concat_shuffle(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = a.dims4()?;
    Ok(Tensor::stack(&[a, b], 2)?.reshape((n, 2 * c, h, w))?)
}

/// The split / shuffle block (stride 1, channels kept).
struct BasicBlock {
    /// Pointwise+ReLU, depthwise (no ReLU), pointwise+ReLU, on the second half.
    layers: [(Conv2d, BatchNorm2d); 3],
    half: usize,
}

impl BasicBlock {
    fn new(mut vb: Builder<'_>, channels: usize) -> Result<Self> {
        // SplitBlock(0.5): int(C * 0.5) channels in each half (C is even).
        let half = channels / 2;
        Ok(BasicBlock {
            layers: [
                conv_bn(&mut vb, 1, (half, half), None)?,
                conv_bn(&mut vb, 2, (half, half), Some(1))?,
                conv_bn(&mut vb, 3, (half, half), None)?,
            ],
            half,
        })
    }

    fn forward(&self, x: &Tensor, t: bool) -> Result<Tensor> {
        let [(c1, b1), (c2, b2), (c3, b3)] = &self.layers;
        let c = x.dim(1)?;
        let x1 = x.narrow(1, 0, self.half)?;
        let x2 = x.narrow(1, self.half, c - self.half)?.contiguous()?;
        let y = b1.after_conv(c1, &x2, t, true)?;
        let y = b2.after_conv(c2, &y, t, false)?;
        let y = b3.after_conv(c3, &y, t, true)?;
        concat_shuffle(&x1, &y)
    }
}

/// The down-sampling block (stride 2, `out` channels).
struct DownBlock {
    /// Depthwise (stride 2, no ReLU), pointwise+ReLU, on the input.
    left: [(Conv2d, BatchNorm2d); 2],
    /// Pointwise+ReLU, depthwise (stride 2, no ReLU), pointwise+ReLU, on the input.
    right: [(Conv2d, BatchNorm2d); 3],
}

impl DownBlock {
    fn new(mut vb: Builder<'_>, inc: usize, out: usize) -> Result<Self> {
        let mid = out / 2;
        let vb = &mut vb;
        let left = [
            conv_bn(vb, 1, (inc, inc), Some(2))?,
            conv_bn(vb, 2, (inc, mid), None)?,
        ];
        let right = [
            conv_bn(vb, 3, (inc, mid), None)?,
            conv_bn(vb, 4, (mid, mid), Some(2))?,
            conv_bn(vb, 5, (mid, mid), None)?,
        ];
        Ok(DownBlock { left, right })
    }

    fn forward(&self, x: &Tensor, t: bool) -> Result<Tensor> {
        let [(c1, b1), (c2, b2)] = &self.left;
        let l = b1.after_conv(c1, x, t, false)?;
        let l = b2.after_conv(c2, &l, t, true)?;
        let [(c3, b3), (c4, b4), (c5, b5)] = &self.right;
        let r = b3.after_conv(c3, x, t, true)?;
        let r = b4.after_conv(c4, &r, t, false)?;
        let r = b5.after_conv(c5, &r, t, true)?;
        concat_shuffle(&l, &r)
    }
}

/// A stage: `{layer}.0` the down-sampling block, `{layer}.1`.. the basic blocks.
struct Stage {
    down: DownBlock,
    blocks: Vec<BasicBlock>,
}

struct ShuffleNetV2 {
    stem: (Conv2d, BatchNorm2d),
    stages: Vec<Stage>,
    head: (Conv2d, BatchNorm2d),
    linear: Linear,
}

impl ShuffleNetV2 {
    fn new(mut vb: Builder<'_>, classes: usize) -> Result<Self> {
        let stem = conv_bn(&mut vb, 1, (3, STEM), None)?;
        let mut stages = Vec::new();
        let mut inc = STEM;
        for (s, (out, n)) in STAGES.into_iter().enumerate() {
            let mut layer = vb.pp(format!("layer{}", s + 1));
            let down = DownBlock::new(layer.pp(0), inc, out)?;
            let blocks = (1..=n)
                .map(|i| BasicBlock::new(layer.pp(i), out))
                .collect::<Result<Vec<_>>>()?;
            stages.push(Stage { down, blocks });
            inc = out;
        }
        let head = conv_bn(&mut vb, 2, (inc, HEAD), None)?;
        let linear = linear(HEAD, classes, vb.pp("linear"))?;
        Ok(ShuffleNetV2 {
            stem,
            stages,
            head,
            linear,
        })
    }
}

impl Model for ShuffleNetV2 {
    fn forward(&self, x: &Tensor, ctx: &mut Ctx<'_>) -> Result<Tensor> {
        let t = ctx.train;
        let (conv, bn) = &self.stem;
        let mut x = bn.after_conv(conv, x, t, true)?;
        for stage in &self.stages {
            x = stage.down.forward(&x, t)?;
            for block in &stage.blocks {
                x = block.forward(&x, t)?;
            }
        }
        let (conv, bn) = &self.head;
        let x = bn.after_conv(conv, &x, t, true)?;
        // F.avg_pool2d(out, 4): 4x4 -> 1x1 at 32x32 inputs.
        let x = x.avg_pool2d(4)?;
        let x = x.reshape((x.dim(0)?, ()))?;
        Ok(self.linear.forward_t(&x, t)?)
    }
}
