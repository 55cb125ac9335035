//! ResNeXt (hysts' `resnext.py`): bottleneck blocks conv1x1-BN-ReLU, grouped conv3x3
//! (cardinality C, stride)-BN-ReLU, conv1x1-BN, plus shortcut (conv1x1+BN when channels
//! change), ReLU after the add. Stage widths 4W, 8W, 16W; bottleneck width C*out/4.

use candle_core::{ModuleT, Tensor};

use crate::error::ArchError;
use crate::layers::{
    BatchNorm2d, Builder, Conv2d, Conv2dConfig, ConvInit, Ctx, InitScheme, Linear, LinearInit,
    Shortcut, batch_norm2d, conv2d_no_bias, global_avg_pool, linear,
};
use crate::models::{Args, Family, Input, Model};
use crate::registry::{check_depth, parse_cxwd, parse_num};

type Result<T> = std::result::Result<T, ArchError>;

pub(crate) const FAMILY: Family = Family {
    id: "resnext",
    pattern: "resnext{9n+2}-{C}x{W}d (resnext29-2x4d, resnext29-8x64d, ...; resnext = resnext29-8x64d)",
    params: &["depth", "cardinality", "width"],
    listed: &["resnext29-2x4d", "resnext29-8x64d"],
    aliases: &[("resnext", "resnext29-8x64d")],
    parse,
    canonical_name: |&[depth, cardinality, width]| {
        format!("resnext{depth}-{cardinality}x{width}d")
    },
    description: |&[depth, cardinality, width]| {
        format!(
            "ResNeXt, {} bottleneck blocks per stage, cardinality {}, base width {}",
            (depth - 2) / 9,
            cardinality,
            width
        )
    },
    input: Input::Any,
    init: InitScheme {
        conv: ConvInit::KaimingNormalFanOut,
        bn_weight_uniform: false,
        linear: LinearInit::ZeroBias,
    },
    build: |vb, &[depth, cardinality, width], classes| {
        Ok(Box::new(ResNeXt::new(
            vb,
            depth,
            cardinality,
            width,
            classes,
        )?))
    },
};

fn parse(name: &str) -> Option<std::result::Result<Args, String>> {
    let rest = name.strip_prefix("resnext")?;
    Some((|| {
        let (d, cw) = rest
            .split_once('-')
            .ok_or("expected resnext{depth}-{C}x{W}d")?;
        let depth = parse_num(d, "depth")?;
        check_depth(depth, 9, 2)?;
        let (cardinality, width) = parse_cxwd(cw)?;
        Ok([depth, cardinality, width])
    })())
}

struct Bottleneck {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    conv2: Conv2d,
    bn2: BatchNorm2d,
    conv3: Conv2d,
    bn3: BatchNorm2d,
    shortcut: Shortcut,
}

impl Bottleneck {
    fn new(
        mut vb: Builder<'_>,
        inc: usize,
        out: usize,
        stride: usize,
        cardinality: usize,
    ) -> Result<Self> {
        let bc = cardinality * out / 4;
        let conv1x1 = Conv2dConfig::default();
        let grouped = Conv2dConfig {
            padding: 1,
            stride,
            groups: cardinality,
        };
        let conv1 = conv2d_no_bias(inc, bc, 1, conv1x1, vb.pp("conv1"))?;
        let bn1 = batch_norm2d(bc, vb.pp("bn1"))?;
        let conv2 = conv2d_no_bias(bc, bc, 3, grouped, vb.pp("conv2"))?;
        let bn2 = batch_norm2d(bc, vb.pp("bn2"))?;
        let conv3 = conv2d_no_bias(bc, out, 1, conv1x1, vb.pp("conv3"))?;
        let bn3 = batch_norm2d(out, vb.pp("bn3"))?;
        let shortcut = Shortcut::new(vb, inc, out, stride)?;
        Ok(Bottleneck {
            conv1,
            bn1,
            conv2,
            bn2,
            conv3,
            bn3,
            shortcut,
        })
    }

    fn forward(&self, x: &Tensor, ctx: &mut Ctx<'_>) -> Result<Tensor> {
        let t = ctx.train;
        let y = self.bn1.after_conv(&self.conv1, x, t, true)?;
        let y = self.bn2.after_conv(&self.conv2, &y, t, true)?;
        let s = self.shortcut.forward(x, t)?;
        self.bn3.after_conv_add_relu(&self.conv3, &y, &s, t)
    }
}

/// The ResNeXt network.
struct ResNeXt {
    conv: Conv2d,
    bn: BatchNorm2d,
    stages: Vec<Vec<Bottleneck>>,
    fc: Linear,
}

impl ResNeXt {
    fn new(
        mut vb: Builder<'_>,
        depth: usize,
        cardinality: usize,
        width: usize,
        classes: usize,
    ) -> Result<Self> {
        let n = (depth - 2) / 9;
        let stem = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let conv = conv2d_no_bias(3, width, 3, stem, vb.pp("conv"))?;
        let bn = batch_norm2d(width, vb.pp("bn"))?;
        let mut stages = Vec::new();
        let mut inc = width;
        for (s, &(out, stride)) in [(4 * width, 1), (8 * width, 2), (16 * width, 2)]
            .iter()
            .enumerate()
        {
            let mut stage = vb.pp(format!("stage{}", s + 1));
            let blocks = (0..n)
                .map(|i| {
                    let (ic, st) = if i == 0 { (inc, stride) } else { (out, 1) };
                    Bottleneck::new(stage.pp(format!("block{}", i + 1)), ic, out, st, cardinality)
                })
                .collect::<Result<Vec<_>>>()?;
            stages.push(blocks);
            inc = out;
        }
        let fc = linear(inc, classes, vb.pp("fc"))?;
        Ok(ResNeXt {
            conv,
            bn,
            stages,
            fc,
        })
    }

}

impl Model for ResNeXt {
    fn forward(&self, x: &Tensor, ctx: &mut Ctx<'_>) -> Result<Tensor> {
        let t = ctx.train;
        let mut x = self.bn.after_conv(&self.conv, x, t, true)?;
        for block in self.stages.iter().flatten() {
            x = block.forward(&x, ctx)?;
        }
        Ok(self.fc.forward_t(&global_avg_pool(&x)?, t)?)
    }
}
