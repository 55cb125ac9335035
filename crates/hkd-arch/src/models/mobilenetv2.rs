//! MobileNetV2 as the knowledge-distillation benchmarks use it on CIFAR (RepDistiller's
//! `models/mobilenetv2.py`, `mobile_half` = `mobilenetv2_T_w(6, 0.5)`, which its
//! `model_dict` calls `MobileNetV2`; also mdistiller's): `conv1` = conv3x3(3->16, stride
//! 2)+BN+ReLU, seven stages `blocks.0`..`blocks.6` of inverted residuals (expansion 1 then
//! 6; 8, 12, 16, 32, 48, 80, 160 channels; 1, 2, 3, 4, 3, 3, 1 blocks; first strides 1, 1,
//! 2, 2, 1, 2, 1), `conv2` = conv1x1(160->1280)+BN+ReLU, a 2x2 average pool and
//! `classifier.0` = Linear(1280, classes). An inverted residual is `conv` = pointwise
//! conv+BN+ReLU, depthwise conv3x3(stride)+BN+ReLU, pointwise conv+BN (the expansion conv is
//! there even when the expansion is 1), plus the input when the stride is 1 and the
//! width stays.

use candle_core::{ModuleT, Tensor};

use crate::error::ArchError;
use crate::layers::{
    BatchNorm2d, Builder, Conv2d, Conv2dConfig, ConvInit, Ctx, InitScheme, Linear, LinearInit,
    batch_norm2d, conv2d_no_bias, linear,
};
use crate::models::{Args, Family, Input, Model};

type Result<T> = std::result::Result<T, ArchError>;

pub(crate) const FAMILY: Family = Family {
    id: "mobilenetv2",
    pattern: "mobilenetv2 (= mobile_half: RepDistiller's CIFAR MobileNetV2, expansion 6, width 0.5)",
    params: &[],
    listed: &["mobilenetv2"],
    aliases: &[("mobile_half", "mobilenetv2")],
    parse,
    canonical_name: |_| "mobilenetv2".to_string(),
    description: |_| {
        "CIFAR MobileNetV2 (RepDistiller's mobile_half), expansion 6, width 0.5, 17 inverted residual blocks"
            .to_string()
    },
    // AvgPool2d(2) then a linear layer of 1280 inputs: 32x32 images.
    input: Input::Cifar32,
    init: InitScheme {
        conv: ConvInit::KaimingNormalFanOut,
        bn_weight_uniform: false,
        linear: LinearInit::Normal { std: 0.01 },
    },
    build: |vb, _, classes| Ok(Box::new(MobileNetV2::new(vb, classes)?)),
};

fn parse(name: &str) -> Option<std::result::Result<Args, String>> {
    let rest = name.strip_prefix("mobilenet")?;
    Some(if rest == "v2" {
        Ok([0, 0, 0])
    } else {
        Err(format!(
            "of the MobileNets only mobilenetv2 (RepDistiller's mobile_half) exists, not mobilenet{rest}"
        ))
    })
}

/// (expansion, channels, blocks, stride of the first block) at width 0.5.
const SETTING: [(usize, usize, usize, usize); 7] = [
    (1, 8, 1, 1),
    (6, 12, 2, 1),
    (6, 16, 3, 2),
    (6, 32, 4, 2),
    (6, 48, 3, 1),
    (6, 80, 3, 2),
    (6, 160, 1, 1),
];

/// Conv and BN of a `Sequential`, at indices `i` and `i + 1`.
fn conv_bn(
    vb: &mut Builder<'_>,
    i: usize,
    (inc, out, k): (usize, usize, usize),
    cfg: Conv2dConfig,
) -> Result<(Conv2d, BatchNorm2d)> {
    Ok((
        conv2d_no_bias(inc, out, k, cfg, vb.pp(i))?,
        batch_norm2d(out, vb.pp(i + 1))?,
    ))
}

struct InvertedResidual {
    /// Pointwise expansion, depthwise 3x3, pointwise projection (no ReLU after it).
    layers: [(Conv2d, BatchNorm2d); 3],
    residual: bool,
}

impl InvertedResidual {
    fn new(mut vb: Builder<'_>, inc: usize, out: usize, stride: usize, t: usize) -> Result<Self> {
        let hidden = inc * t;
        let mut seq = vb.pp("conv");
        let pointwise = Conv2dConfig::default();
        let depthwise = Conv2dConfig {
            padding: 1,
            stride,
            groups: hidden,
        };
        Ok(InvertedResidual {
            layers: [
                conv_bn(&mut seq, 0, (inc, hidden, 1), pointwise)?,
                conv_bn(&mut seq, 3, (hidden, hidden, 3), depthwise)?,
                conv_bn(&mut seq, 6, (hidden, out, 1), pointwise)?,
            ],
            residual: stride == 1 && inc == out,
        })
    }

    fn forward(&self, x: &Tensor, t: bool) -> Result<Tensor> {
        let [(c1, b1), (c2, b2), (c3, b3)] = &self.layers;
        let y = b1.after_conv(c1, x, t, true)?;
        let y = b2.after_conv(c2, &y, t, true)?;
        let y = b3.after_conv(c3, &y, t, false)?;
        Ok(if self.residual { (x + y)? } else { y })
    }
}

struct MobileNetV2 {
    conv1: (Conv2d, BatchNorm2d),
    blocks: Vec<InvertedResidual>,
    conv2: (Conv2d, BatchNorm2d),
    classifier: Linear,
}

impl MobileNetV2 {
    fn new(mut vb: Builder<'_>, classes: usize) -> Result<Self> {
        let stem = Conv2dConfig {
            padding: 1,
            stride: 2,
            ..Default::default()
        };
        let conv1 = conv_bn(&mut vb.pp("conv1"), 0, (3, 16, 3), stem)?;
        let mut blocks = Vec::new();
        let mut inc = 16;
        let mut list = vb.pp("blocks");
        for (s, (t, out, n, stride)) in SETTING.into_iter().enumerate() {
            let mut stage = list.pp(s);
            for i in 0..n {
                let stride = if i == 0 { stride } else { 1 };
                blocks.push(InvertedResidual::new(stage.pp(i), inc, out, stride, t)?);
                inc = out;
            }
        }
        let conv2 = conv_bn(&mut vb.pp("conv2"), 0, (inc, 1280, 1), Conv2dConfig::default())?;
        let classifier = linear(1280, classes, vb.pp("classifier").pp(0))?;
        Ok(MobileNetV2 {
            conv1,
            blocks,
            conv2,
            classifier,
        })
    }
}

impl Model for MobileNetV2 {
    fn forward(&self, x: &Tensor, ctx: &mut Ctx<'_>) -> Result<Tensor> {
        let t = ctx.train;
        let (conv, bn) = &self.conv1;
        let mut x = bn.after_conv(conv, x, t, true)?;
        for block in &self.blocks {
            x = block.forward(&x, t)?;
        }
        let (conv, bn) = &self.conv2;
        let x = bn.after_conv(conv, &x, t, true)?;
        // AvgPool2d(input_size // 16 = 2, ceil_mode=True): 2x2 -> 1x1 at 32x32 inputs.
        let x = x.avg_pool2d(2)?;
        let x = x.reshape((x.dim(0)?, ()))?;
        Ok(self.classifier.forward_t(&x, t)?)
    }
}
