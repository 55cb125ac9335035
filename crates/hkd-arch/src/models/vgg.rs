//! The VGG networks of the knowledge-distillation benchmarks (RepDistiller's
//! `models/vgg.py` with batch normalisation, which its `model_dict` calls `vgg8`, `vgg11`,
//! `vgg13`, `vgg16`, `vgg19`; also used by mdistiller): five blocks `block0`..`block4` of
//! conv3x3(bias)+BN+ReLU layers (64, 128, 256, 512, 512 channels), a ReLU after each block,
//! 2x2 max-pools after the first three (and after the fourth for 64x64 inputs), a global
//! average pool and `classifier` = Linear(512, classes). In a block's Sequential the ReLU
//! modules count in the indices (`block1.3.weight` is the second conv) and the last ReLU
//! is left out, as in RepDistiller.

use candle_core::{ModuleT, Tensor};

use crate::error::ArchError;
use crate::layers::{
    BatchNorm2d, Builder, Conv2d, Conv2dConfig, ConvInit, Ctx, InitScheme, Linear, LinearInit,
    batch_norm2d, conv2d, global_avg_pool, linear, max_pool2x2,
};
use crate::models::{Args, Family, Input, Model};
use crate::registry::parse_num;

type Result<T> = std::result::Result<T, ArchError>;

pub(crate) const FAMILY: Family = Family {
    id: "vgg",
    pattern: "vgg{8,11,13,16,19} (RepDistiller's CIFAR VGG with BatchNorm: vgg8, vgg13, ...)",
    params: &["depth"],
    listed: &["vgg8", "vgg11", "vgg13", "vgg16", "vgg19"],
    aliases: &[],
    parse,
    canonical_name: |&[depth, ..]| format!("vgg{depth}"),
    description: |&[depth, ..]| {
        let blocks: Vec<String> = widths(depth)
            .unwrap_or_default()
            .iter()
            .map(|b| format!("{}x{}", b.len(), b[0]))
            .collect();
        format!(
            "CIFAR VGG with BatchNorm (RepDistiller), conv3x3 blocks {}, global pool, FC",
            blocks.join("-")
        )
    },
    input: Input::Any,
    init: InitScheme {
        conv: ConvInit::KaimingNormalFanOut,
        bn_weight_uniform: false,
        linear: LinearInit::Normal { std: 0.01 },
    },
    build: |vb, &[depth, ..], classes| Ok(Box::new(Vgg::new(vb, depth, classes)?)),
};

fn parse(name: &str) -> Option<std::result::Result<Args, String>> {
    let rest = name.strip_prefix("vgg")?;
    Some((|| {
        let depth = parse_num(rest, "depth")?;
        if widths(depth).is_none() {
            return Err(format!(
                "VGG exists for depths 8, 11, 13, 16 and 19, not {depth}"
            ));
        }
        Ok([depth, 0, 0])
    })())
}

/// Output channels of the convolutions of each block (RepDistiller's cfg S, A, B, D, E).
fn widths(depth: usize) -> Option<[&'static [usize]; 5]> {
    Some(match depth {
        8 => [&[64], &[128], &[256], &[512], &[512]],
        11 => [&[64], &[128], &[256; 2], &[512; 2], &[512; 2]],
        13 => [&[64; 2], &[128; 2], &[256; 2], &[512; 2], &[512; 2]],
        16 => [&[64; 2], &[128; 2], &[256; 3], &[512; 3], &[512; 3]],
        19 => [&[64; 2], &[128; 2], &[256; 4], &[512; 4], &[512; 4]],
        _ => return None,
    })
}

struct Vgg {
    /// Per block: conv3x3+BN pairs, each followed by a ReLU.
    blocks: Vec<Vec<(Conv2d, BatchNorm2d)>>,
    classifier: Linear,
}

impl Vgg {
    fn new(mut vb: Builder<'_>, depth: usize, classes: usize) -> Result<Self> {
        let widths = widths(depth)
            .ok_or_else(|| ArchError::InvalidConfig(format!("no VGG of depth {depth}")))?;
        let cfg = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let mut inc = 3;
        let mut blocks = Vec::new();
        for (i, block_widths) in widths.iter().enumerate() {
            let mut seq = vb.pp(format!("block{i}"));
            let mut block = Vec::new();
            for (j, &out) in block_widths.iter().enumerate() {
                // Sequential indices: conv 3j, BN 3j+1, ReLU 3j+2.
                let conv = conv2d(inc, out, 3, cfg, seq.pp(3 * j))?;
                let bn = batch_norm2d(out, seq.pp(3 * j + 1))?;
                block.push((conv, bn));
                inc = out;
            }
            blocks.push(block);
        }
        let classifier = linear(512, classes, vb.pp("classifier"))?;
        Ok(Vgg { blocks, classifier })
    }
}

impl Model for Vgg {
    fn forward(&self, x: &Tensor, ctx: &mut Ctx<'_>) -> Result<Tensor> {
        let t = ctx.train;
        let h = x.dim(2)?;
        let mut x = x.clone();
        for (i, block) in self.blocks.iter().enumerate() {
            for (conv, bn) in block {
                x = bn.after_conv(conv, &x, t, true)?;
            }
            // pool0..pool2 always; pool3 only for 64x64 inputs; pool4 is the global pool.
            if i < 3 || (i == 3 && h == 64) {
                x = max_pool2x2(&x)?;
            }
        }
        Ok(self.classifier.forward_t(&global_avg_pool(&x)?, t)?)
    }
}
