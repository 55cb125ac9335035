//! Pre-activation Wide ResNet: BN-ReLU before each conv; when channels change the shortcut
//! (conv1x1) takes the pre-activated input; final BN-ReLU before pooling. No dropout (drop
//! rate 0, as in the original configurations).
//!
//! Two families share this network and differ only in their names, parameter names and
//! initialisation:
//!
//! - `wrn{6n+4}-{k}` ([`FAMILY`]): hysts' `wrn.py` of the original project (`conv`,
//!   `stage1.block1.bn1`, ..., `stage2.block1.shortcut.conv`, `bn`, `fc`; Kaiming-normal
//!   fan-in convs, BN weights U(0,1)), any input size (global average pooling).
//! - `wrn_{6n+4}_{k}` ([`REPDISTILLER`]): RepDistiller's `models/wrn.py` (Wei Yang's
//!   `WideResNet`, `wrn_16_1`, `wrn_16_2`, `wrn_40_1`, `wrn_40_2` in its `model_dict`):
//!   `conv1`, `block1.layer.0.bn1`, ..., `block2.layer.0.convShortcut`, `bn1`, `fc`;
//!   `normal_(0, sqrt(2/(k·k·out)))` convs (Kaiming-normal fan-out), BN weights 1, linear
//!   bias 0; a fixed 8x8 average pool and `view(-1, channels)`, so 32x32 inputs only.

use candle_core::{ModuleT, Tensor};

use crate::error::ArchError;
use crate::layers::{
    BatchNorm2d, Builder, Conv2d, Conv2dConfig, ConvInit, Ctx, InitScheme, Linear, LinearInit,
    batch_norm2d, conv2d_no_bias, global_avg_pool, linear,
};
use crate::models::{Args, Family, Input, Model};
use crate::registry::{check_depth, parse_num};

type Result<T> = std::result::Result<T, ArchError>;

pub(crate) const FAMILY: Family = Family {
    id: "wrn",
    pattern: "wrn{6n+4}-{k} (wrn16-1, wrn16-4, wrn28-10, ...; wrn = wrn28-10)",
    params: &["depth", "widen"],
    listed: &["wrn16-1", "wrn16-4", "wrn28-10"],
    aliases: &[("wrn", "wrn28-10")],
    parse,
    canonical_name: |&[depth, widen, _]| format!("wrn{depth}-{widen}"),
    description: |&[depth, widen, _]| {
        format!(
            "pre-activation Wide ResNet, {} blocks per stage, widening {}",
            (depth - 4) / 6,
            widen
        )
    },
    input: Input::Any,
    init: InitScheme {
        conv: ConvInit::KaimingNormalFanIn,
        bn_weight_uniform: true,
        linear: LinearInit::ZeroBias,
    },
    build: |vb, &[depth, widen, _], classes| {
        Ok(Box::new(WideResNet::new(vb, depth, widen, classes, &HYSTS)?))
    },
};

/// RepDistiller's Wide ResNets: the same network under RepDistiller's names.
pub(crate) const REPDISTILLER: Family = Family {
    id: "wrn_repdistiller",
    pattern: "wrn_{6n+4}_{k} (wrn_16_1, wrn_16_2, wrn_40_1, wrn_40_2: RepDistiller's Wide ResNets)",
    params: &["depth", "widen"],
    listed: &["wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2"],
    aliases: &[],
    parse: parse_repdistiller,
    canonical_name: |&[depth, widen, _]| format!("wrn_{depth}_{widen}"),
    description: |&[depth, widen, _]| {
        format!(
            "pre-activation Wide ResNet (RepDistiller), {} blocks per stage, widening {}",
            (depth - 4) / 6,
            widen
        )
    },
    // AvgPool2d(8) and view(-1, 64k): 32x32 images.
    input: Input::Cifar32,
    init: InitScheme {
        conv: ConvInit::KaimingNormalFanOut,
        bn_weight_uniform: false,
        linear: LinearInit::ZeroBias,
    },
    build: |vb, &[depth, widen, _], classes| {
        Ok(Box::new(WideResNet::new(
            vb,
            depth,
            widen,
            classes,
            &REPDISTILLER_NAMES,
        )?))
    },
};

/// `wrn{depth}-{k}` (names starting with `wrn_` are RepDistiller's).
fn parse(name: &str) -> Option<std::result::Result<Args, String>> {
    let rest = name.strip_prefix("wrn")?;
    if rest.starts_with('_') {
        return None;
    }
    Some(parse_depth_widen(rest, '-', "expected wrn{depth}-{k}"))
}

/// `wrn_{depth}_{k}`.
fn parse_repdistiller(name: &str) -> Option<std::result::Result<Args, String>> {
    let rest = name.strip_prefix("wrn_")?;
    Some(parse_depth_widen(rest, '_', "expected wrn_{depth}_{k}"))
}

fn parse_depth_widen(rest: &str, sep: char, form: &str) -> std::result::Result<Args, String> {
    let (d, k) = rest.split_once(sep).ok_or(form)?;
    let depth = parse_num(d, "depth")?;
    check_depth(depth, 6, 4)?;
    let widen = parse_num(k, "widening factor")?;
    Ok([depth, widen, 0])
}

/// The state_dict names of a Wide ResNet's modules (the block's own `bn1`, `conv1`,
/// `bn2`, `conv2` are the same in both).
struct Naming {
    /// The first convolution.
    stem: &'static str,
    /// Stage `s` (0-based).
    stage: fn(usize) -> String,
    /// Block `i` (0-based) in its stage.
    block: fn(usize) -> String,
    /// A block's conv1x1 shortcut.
    shortcut: &'static str,
    /// The final BatchNorm.
    bn: &'static str,
}

/// hysts': `stage1.block1.shortcut.conv`.
const HYSTS: Naming = Naming {
    stem: "conv",
    stage: |s| format!("stage{}", s + 1),
    block: |i| format!("block{}", i + 1),
    shortcut: "shortcut.conv",
    bn: "bn",
};

/// RepDistiller's (`NetworkBlock` holds an `nn.Sequential` called `layer`):
/// `block1.layer.0.convShortcut`.
const REPDISTILLER_NAMES: Naming = Naming {
    stem: "conv1",
    stage: |s| format!("block{}.layer", s + 1),
    block: |i| i.to_string(),
    shortcut: "convShortcut",
    bn: "bn1",
};

/// 3x3 convolution settings with padding 1.
fn conv3x3(stride: usize) -> Conv2dConfig {
    Conv2dConfig {
        padding: 1,
        stride,
        ..Default::default()
    }
}

struct WrnBlock {
    bn1: BatchNorm2d,
    conv1: Conv2d,
    bn2: BatchNorm2d,
    conv2: Conv2d,
    shortcut: Option<Conv2d>,
}

impl WrnBlock {
    fn new(
        mut vb: Builder<'_>,
        inc: usize,
        out: usize,
        stride: usize,
        names: &Naming,
    ) -> Result<Self> {
        let bn1 = batch_norm2d(inc, vb.pp("bn1"))?;
        let conv1 = conv2d_no_bias(inc, out, 3, conv3x3(stride), vb.pp("conv1"))?;
        let bn2 = batch_norm2d(out, vb.pp("bn2"))?;
        let conv2 = conv2d_no_bias(out, out, 3, conv3x3(1), vb.pp("conv2"))?;
        let shortcut = if inc != out {
            let cfg = Conv2dConfig {
                stride,
                ..Default::default()
            };
            Some(conv2d_no_bias(inc, out, 1, cfg, vb.pp(names.shortcut))?)
        } else {
            None
        };
        Ok(WrnBlock {
            bn1,
            conv1,
            bn2,
            conv2,
            shortcut,
        })
    }

    fn forward(&self, x: &Tensor, ctx: &mut Ctx<'_>) -> Result<Tensor> {
        let t = ctx.train;
        let pre = self.bn1.forward_relu(x, t)?;
        let y = self.conv1.forward_t(&pre, t)?;
        let y = self.bn2.forward_relu(&y, t)?;
        let y = self.conv2.forward_t(&y, t)?;
        let s = match &self.shortcut {
            Some(conv) => conv.forward_t(&pre, t)?,
            None => x.clone(),
        };
        Ok((y + s)?)
    }
}

/// The Wide ResNet.
struct WideResNet {
    conv: Conv2d,
    stages: Vec<Vec<WrnBlock>>,
    bn: BatchNorm2d,
    fc: Linear,
}

impl WideResNet {
    fn new(
        mut vb: Builder<'_>,
        depth: usize,
        widen: usize,
        classes: usize,
        names: &Naming,
    ) -> Result<Self> {
        let n = (depth - 4) / 6;
        let conv = conv2d_no_bias(3, 16, 3, conv3x3(1), vb.pp(names.stem))?;
        let mut stages = Vec::new();
        let mut inc = 16;
        for (s, &(out, stride)) in [(16 * widen, 1), (32 * widen, 2), (64 * widen, 2)]
            .iter()
            .enumerate()
        {
            let mut stage = vb.pp((names.stage)(s));
            let blocks = (0..n)
                .map(|i| {
                    let (ic, st) = if i == 0 { (inc, stride) } else { (out, 1) };
                    WrnBlock::new(stage.pp((names.block)(i)), ic, out, st, names)
                })
                .collect::<Result<Vec<_>>>()?;
            stages.push(blocks);
            inc = out;
        }
        let bn = batch_norm2d(inc, vb.pp(names.bn))?;
        let fc = linear(inc, classes, vb.pp("fc"))?;
        Ok(WideResNet {
            conv,
            stages,
            bn,
            fc,
        })
    }
}

impl Model for WideResNet {
    fn forward(&self, x: &Tensor, ctx: &mut Ctx<'_>) -> Result<Tensor> {
        let t = ctx.train;
        let mut x = self.conv.forward_t(x, t)?;
        for block in self.stages.iter().flatten() {
            x = block.forward(&x, ctx)?;
        }
        let x = self.bn.forward_relu(&x, t)?;
        // RepDistiller's AvgPool2d(8) is this global pool on its 32x32 inputs.
        Ok(self.fc.forward_t(&global_avg_pool(&x)?, t)?)
    }
}
