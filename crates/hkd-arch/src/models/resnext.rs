//! ResNeXt (hysts' `resnext.py`): bottleneck blocks conv1x1-BN-ReLU, grouped conv3x3
//! (cardinality C, stride)-BN-ReLU, conv1x1-BN, plus shortcut (conv1x1+BN when channels
//! change), ReLU after the add. Stage widths 4W, 8W, 16W; bottleneck width C*out/4.

use candle_core::Tensor;

use crate::error::ArchError;
use crate::kernels;
use crate::layers::{BatchNorm2d, Builder, Conv2d, Ctx, Linear, Shortcut, global_avg_pool};

type Result<T> = std::result::Result<T, ArchError>;

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
        b: &mut Builder,
        inc: usize,
        out: usize,
        stride: usize,
        cardinality: usize,
    ) -> Result<Self> {
        let bc = cardinality * out / 4;
        let conv1 = b.conv2d("conv1", inc, bc, 1, 1, 0, 1, false)?;
        let bn1 = b.batch_norm("bn1", bc)?;
        let conv2 = b.conv2d("conv2", bc, bc, 3, stride, 1, cardinality, false)?;
        let bn2 = b.batch_norm("bn2", bc)?;
        let conv3 = b.conv2d("conv3", bc, out, 1, 1, 0, 1, false)?;
        let bn3 = b.batch_norm("bn3", out)?;
        let shortcut = Shortcut::new(b, inc, out, stride)?;
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
        let y = self.bn1.forward_relu(&self.conv1.forward(x, t)?, t)?;
        let y = self.bn2.forward_relu(&self.conv2.forward(&y, t)?, t)?;
        let y = self.bn3.forward(&self.conv3.forward(&y, t)?, t)?;
        let s = self.shortcut.forward(x, t)?;
        Ok(kernels::add_relu(&y, &s)?)
    }
}

/// The ResNeXt network.
pub(crate) struct ResNeXt {
    conv: Conv2d,
    bn: BatchNorm2d,
    stages: Vec<Vec<Bottleneck>>,
    fc: Linear,
}

impl ResNeXt {
    pub fn new(
        b: &mut Builder,
        depth: usize,
        cardinality: usize,
        width: usize,
        classes: usize,
    ) -> Result<Self> {
        let n = (depth - 2) / 9;
        let conv = b.conv2d("conv", 3, width, 3, 1, 1, 1, false)?;
        let bn = b.batch_norm("bn", width)?;
        let mut stages = Vec::new();
        let mut inc = width;
        for (s, &(out, stride)) in [(4 * width, 1), (8 * width, 2), (16 * width, 2)]
            .iter()
            .enumerate()
        {
            let stage = b.scope(&format!("stage{}", s + 1), |b| {
                (0..n)
                    .map(|i| {
                        let (ic, st) = if i == 0 { (inc, stride) } else { (out, 1) };
                        b.scope(&format!("block{}", i + 1), |b| {
                            Bottleneck::new(b, ic, out, st, cardinality)
                        })
                    })
                    .collect::<Result<Vec<_>>>()
            })?;
            stages.push(stage);
            inc = out;
        }
        let fc = b.linear("fc", inc, classes)?;
        Ok(ResNeXt {
            conv,
            bn,
            stages,
            fc,
        })
    }

    pub fn forward(&self, x: &Tensor, ctx: &mut Ctx<'_>) -> Result<Tensor> {
        let t = ctx.train;
        let mut x = self.bn.forward_relu(&self.conv.forward(x, t)?, t)?;
        for block in self.stages.iter().flatten() {
            x = block.forward(&x, ctx)?;
        }
        self.fc.forward(&global_avg_pool(&x)?, t)
    }
}
