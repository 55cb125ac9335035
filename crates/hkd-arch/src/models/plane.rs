//! TAKD's plain CNNs (`ConvNetMaker` with `plane_cifar10_book`): `conv_layers` is a
//! Sequential of conv3x3(bias)+BN+ReLU triples and 2x2 max-pools, `fc_layers` a Sequential
//! of linear layers with ReLU between them. Indices in the names count the ReLU and
//! max-pool modules, as in PyTorch.

use candle_core::{ModuleT, Tensor};

use crate::error::ArchError;
use crate::layers::{
    BatchNorm2d, Builder, Conv2d, Conv2dConfig, ConvInit, Ctx, InitScheme, Linear, LinearInit,
    batch_norm2d, conv2d, linear, max_pool2x2,
};
use crate::models::{Args, Family, Input, Model};
use crate::registry::parse_num;

type Result<T> = std::result::Result<T, ArchError>;

pub(crate) const FAMILY: Family = Family {
    id: "plane",
    pattern: "plane{2,4,6,8,10}",
    params: &["depth"],
    listed: &["plane2", "plane4", "plane6", "plane8", "plane10"],
    aliases: &[],
    parse,
    canonical_name: |&[depth, ..]| format!("plane{depth}"),
    description: |&[depth, ..]| {
        let s: Vec<String> = plane_layers(depth)
            .unwrap_or(&[])
            .iter()
            .map(|l| match l {
                PlaneLayer::Conv(c) => format!("Conv{c}"),
                PlaneLayer::MaxPool => "MaxPool".to_string(),
                PlaneLayer::Fc(f) => format!("FC{f}"),
            })
            .collect();
        format!("plain CNN (TAKD CIFAR-10 book): {}", s.join("-"))
    },
    input: Input::Cifar32,
    init: InitScheme {
        conv: ConvInit::TorchDefault,
        bn_weight_uniform: false,
        linear: LinearInit::TorchDefault,
    },
    build: |vb, &[depth, ..], classes| Ok(Box::new(Plane::new(vb, depth, classes)?)),
};

fn parse(name: &str) -> Option<std::result::Result<Args, String>> {
    let rest = name.strip_prefix("plane")?;
    Some((|| {
        let depth = parse_num(rest, "depth")?;
        if plane_layers(depth).is_none() {
            return Err(format!(
                "plain CNNs exist for depths 2, 4, 6, 8, 10, not {depth}"
            ));
        }
        Ok([depth, 0, 0])
    })())
}

/// Layers of the plain CNNs of TAKD's CIFAR-10 book (`plane_cifar10_book`).
/// `C<n>`: conv3x3(n, bias)+BN+ReLU, `M`: 2x2 max-pool, `F<n>`: linear (+ReLU unless last;
/// the last linear layer's width is the number of classes).
fn plane_layers(depth: usize) -> Option<&'static [PlaneLayer]> {
    use PlaneLayer::{Conv as C, Fc as F, MaxPool as M};
    const P2: &[PlaneLayer] = &[C(16), M, C(16), M, F(10)];
    const P4: &[PlaneLayer] = &[C(16), C(16), M, C(32), C(32), M, F(10)];
    const P6: &[PlaneLayer] = &[C(16), C(16), M, C(32), C(32), M, C(64), C(64), M, F(10)];
    const P8: &[PlaneLayer] = &[
        C(16),
        C(16),
        M,
        C(32),
        C(32),
        M,
        C(64),
        C(64),
        M,
        C(128),
        C(128),
        M,
        F(64),
        F(10),
    ];
    const P10: &[PlaneLayer] = &[
        C(32),
        C(32),
        M,
        C(64),
        C(64),
        M,
        C(128),
        C(128),
        M,
        C(256),
        C(256),
        C(256),
        C(256),
        M,
        F(128),
        F(10),
    ];
    match depth {
        2 => Some(P2),
        4 => Some(P4),
        6 => Some(P6),
        8 => Some(P8),
        10 => Some(P10),
        _ => None,
    }
}

/// One entry of a plain CNN's layer list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PlaneLayer {
    /// conv3x3 with bias, BN, ReLU.
    Conv(usize),
    /// 2x2 max-pool, stride 2.
    MaxPool,
    /// Linear layer (ReLU after it unless it is the last).
    Fc(usize),
}

enum Feature {
    ConvBnRelu(Conv2d, BatchNorm2d),
    MaxPool,
}

/// A plain CNN.
struct Plane {
    features: Vec<Feature>,
    /// Linear layers; ReLU after every one but the last.
    classifier: Vec<Linear>,
}

impl Plane {
    fn new(mut vb: Builder<'_>, depth: usize, classes: usize) -> Result<Self> {
        let layers = plane_layers(depth)
            .ok_or_else(|| ArchError::InvalidConfig(format!("no plain CNN of depth {depth}")))?;
        let last_fc = layers
            .iter()
            .rposition(|l| matches!(l, PlaneLayer::Fc(_)))
            .unwrap_or(0);
        let (mut hw, mut ch, mut size) = (32usize, 3usize, 32 * 32 * 3);
        let mut features = Vec::new();
        let mut classifier = Vec::new();
        let (mut conv_index, mut fc_index) = (0usize, 0usize);
        let conv3x3 = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        for (i, layer) in layers.iter().enumerate() {
            match *layer {
                PlaneLayer::Conv(out) => {
                    let mut seq = vb.pp("conv_layers");
                    let conv = conv2d(ch, out, 3, conv3x3, seq.pp(conv_index))?;
                    let bn = batch_norm2d(out, seq.pp(conv_index + 1))?;
                    features.push(Feature::ConvBnRelu(conv, bn));
                    conv_index += 3;
                    ch = out;
                    size = hw * hw * ch;
                }
                PlaneLayer::MaxPool => {
                    features.push(Feature::MaxPool);
                    conv_index += 1;
                    hw /= 2;
                    size = hw * hw * ch;
                }
                PlaneLayer::Fc(out) => {
                    let last = i == last_fc;
                    let out = if last { classes } else { out };
                    classifier.push(linear(size, out, vb.pp("fc_layers").pp(fc_index))?);
                    fc_index += if last { 1 } else { 2 };
                    size = out;
                }
            }
        }
        Ok(Plane {
            features,
            classifier,
        })
    }
}

impl Model for Plane {
    fn forward(&self, x: &Tensor, ctx: &mut Ctx<'_>) -> Result<Tensor> {
        let t = ctx.train;
        let mut x = x.clone();
        for f in &self.features {
            x = match f {
                Feature::ConvBnRelu(conv, bn) => bn.after_conv(conv, &x, t, true)?,
                Feature::MaxPool => max_pool2x2(&x)?,
            };
        }
        let n = x.dim(0)?;
        let mut x = x.reshape((n, ()))?;
        let last = self.classifier.len().saturating_sub(1);
        for (i, lin) in self.classifier.iter().enumerate() {
            x = lin.forward_t(&x, t)?;
            if i != last {
                x = x.relu()?;
            }
        }
        Ok(x)
    }
}
