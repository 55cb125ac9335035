//! CIFAR ResNet (basic blocks), as in the original project (hysts' `resnet.py`):
//! conv3x3(3->16)+BN+ReLU, three stages of n blocks (16, 32, 64 channels, strides 1, 2, 2),
//! global average pool, linear.

use candle_core::Tensor;

use crate::error::ArchError;
use crate::kernels;
use crate::layers::{BatchNorm2d, Builder, Conv2d, Ctx, Linear, Shortcut, global_avg_pool};

type Result<T> = std::result::Result<T, ArchError>;

/// conv-BN-ReLU-conv-BN plus shortcut (conv1x1+BN when channels change), ReLU after the add.
struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    conv2: Conv2d,
    bn2: BatchNorm2d,
    shortcut: Shortcut,
}

impl BasicBlock {
    fn new(b: &mut Builder, inc: usize, out: usize, stride: usize) -> Result<Self> {
        let conv1 = b.conv2d("conv1", inc, out, 3, stride, 1, 1, false)?;
        let bn1 = b.batch_norm("bn1", out)?;
        let conv2 = b.conv2d("conv2", out, out, 3, 1, 1, 1, false)?;
        let bn2 = b.batch_norm("bn2", out)?;
        let shortcut = Shortcut::new(b, inc, out, stride)?;
        Ok(BasicBlock {
            conv1,
            bn1,
            conv2,
            bn2,
            shortcut,
        })
    }

    fn forward(&self, x: &Tensor, ctx: &mut Ctx<'_>) -> Result<Tensor> {
        let t = ctx.train;
        let y = self.bn1.forward_relu(&self.conv1.forward(x, t)?, t)?;
        let y = self.bn2.forward(&self.conv2.forward(&y, t)?, t)?;
        let s = self.shortcut.forward(x, t)?;
        Ok(kernels::add_relu(&y, &s)?)
    }
}

/// The CIFAR ResNet.
pub(crate) struct ResNet {
    conv: Conv2d,
    bn: BatchNorm2d,
    stages: Vec<Vec<BasicBlock>>,
    fc: Linear,
}

impl ResNet {
    pub fn new(b: &mut Builder, depth: usize, classes: usize) -> Result<Self> {
        let n = (depth - 2) / 6;
        let conv = b.conv2d("conv", 3, 16, 3, 1, 1, 1, false)?;
        let bn = b.batch_norm("bn", 16)?;
        let mut stages = Vec::new();
        let mut inc = 16;
        for (s, &(out, stride)) in [(16, 1), (32, 2), (64, 2)].iter().enumerate() {
            let stage = b.scope(&format!("stage{}", s + 1), |b| {
                (0..n)
                    .map(|i| {
                        let (ic, st) = if i == 0 { (inc, stride) } else { (out, 1) };
                        b.scope(&format!("block{}", i + 1), |b| {
                            BasicBlock::new(b, ic, out, st)
                        })
                    })
                    .collect::<Result<Vec<_>>>()
            })?;
            stages.push(stage);
            inc = out;
        }
        let fc = b.linear("fc", 64, classes)?;
        Ok(ResNet {
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
