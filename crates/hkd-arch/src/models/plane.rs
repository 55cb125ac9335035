//! TAKD's plain CNNs (`ConvNetMaker` with `plane_cifar10_book`): `conv_layers` is a
//! Sequential of conv3x3(bias)+BN+ReLU triples and 2x2 max-pools, `fc_layers` a Sequential
//! of linear layers with ReLU between them. Indices in the names count the ReLU and
//! max-pool modules, as in PyTorch.

use candle_core::Tensor;

use crate::error::ArchError;
use crate::layers::{BatchNorm2d, Builder, Conv2d, Ctx, Linear};
use crate::registry::{PlaneLayer, plane_layers};

type Result<T> = std::result::Result<T, ArchError>;

enum Feature {
    ConvBnRelu(Conv2d, BatchNorm2d),
    MaxPool,
}

/// A plain CNN.
pub(crate) struct Plane {
    features: Vec<Feature>,
    /// Linear layers; ReLU after every one but the last.
    classifier: Vec<Linear>,
}

impl Plane {
    pub fn new(b: &mut Builder, depth: usize, classes: usize) -> Result<Self> {
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
        for (i, layer) in layers.iter().enumerate() {
            match *layer {
                PlaneLayer::Conv(out) => {
                    let (conv, bn) = b.scope("conv_layers", |b| {
                        Ok((
                            b.conv2d(&conv_index.to_string(), ch, out, 3, 1, 1, 1, true)?,
                            b.batch_norm(&(conv_index + 1).to_string(), out)?,
                        ))
                    })?;
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
                    let lin =
                        b.scope("fc_layers", |b| b.linear(&fc_index.to_string(), size, out))?;
                    classifier.push(lin);
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

    pub fn forward(&self, x: &Tensor, ctx: &mut Ctx<'_>) -> Result<Tensor> {
        let t = ctx.train;
        let mut x = x.clone();
        for f in &self.features {
            x = match f {
                Feature::ConvBnRelu(conv, bn) => bn.forward_relu(&conv.forward(&x, t)?, t)?,
                Feature::MaxPool => x.max_pool2d(2)?,
            };
        }
        let n = x.dim(0)?;
        let mut x = x.reshape((n, ()))?;
        let last = self.classifier.len().saturating_sub(1);
        for (i, lin) in self.classifier.iter().enumerate() {
            x = lin.forward(&x, t)?;
            if i != last {
                x = x.relu()?;
            }
        }
        Ok(x)
    }
}
