//! Pre-activation Wide ResNet (hysts' `wrn.py`): BN-ReLU before each conv; when channels
//! change the shortcut (conv1x1) takes the pre-activated input; final BN-ReLU before
//! pooling. No dropout (drop rate 0, as in the original configuration).

use candle_core::Tensor;

use crate::error::ArchError;
use crate::layers::{BatchNorm2d, Builder, Conv2d, Ctx, Linear, global_avg_pool};

type Result<T> = std::result::Result<T, ArchError>;

struct WrnBlock {
    bn1: BatchNorm2d,
    conv1: Conv2d,
    bn2: BatchNorm2d,
    conv2: Conv2d,
    shortcut: Option<Conv2d>,
}

impl WrnBlock {
    fn new(b: &mut Builder, inc: usize, out: usize, stride: usize) -> Result<Self> {
        let bn1 = b.batch_norm("bn1", inc)?;
        let conv1 = b.conv2d("conv1", inc, out, 3, stride, 1, 1, false)?;
        let bn2 = b.batch_norm("bn2", out)?;
        let conv2 = b.conv2d("conv2", out, out, 3, 1, 1, 1, false)?;
        let shortcut = if inc != out {
            Some(b.scope("shortcut", |b| {
                b.conv2d("conv", inc, out, 1, stride, 0, 1, false)
            })?)
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
        let y = self.conv1.forward(&pre, t)?;
        let y = self.bn2.forward_relu(&y, t)?;
        let y = self.conv2.forward(&y, t)?;
        let s = match &self.shortcut {
            Some(conv) => conv.forward(&pre, t)?,
            None => x.clone(),
        };
        Ok((y + s)?)
    }
}

/// The Wide ResNet.
pub(crate) struct WideResNet {
    conv: Conv2d,
    stages: Vec<Vec<WrnBlock>>,
    bn: BatchNorm2d,
    fc: Linear,
}

impl WideResNet {
    pub fn new(b: &mut Builder, depth: usize, widen: usize, classes: usize) -> Result<Self> {
        let n = (depth - 4) / 6;
        let conv = b.conv2d("conv", 3, 16, 3, 1, 1, 1, false)?;
        let mut stages = Vec::new();
        let mut inc = 16;
        for (s, &(out, stride)) in [(16 * widen, 1), (32 * widen, 2), (64 * widen, 2)]
            .iter()
            .enumerate()
        {
            let stage = b.scope(&format!("stage{}", s + 1), |b| {
                (0..n)
                    .map(|i| {
                        let (ic, st) = if i == 0 { (inc, stride) } else { (out, 1) };
                        b.scope(&format!("block{}", i + 1), |b| {
                            WrnBlock::new(b, ic, out, st)
                        })
                    })
                    .collect::<Result<Vec<_>>>()
            })?;
            stages.push(stage);
            inc = out;
        }
        let bn = b.batch_norm("bn", inc)?;
        let fc = b.linear("fc", inc, classes)?;
        Ok(WideResNet {
            conv,
            stages,
            bn,
            fc,
        })
    }

    pub fn forward(&self, x: &Tensor, ctx: &mut Ctx<'_>) -> Result<Tensor> {
        let t = ctx.train;
        let mut x = self.conv.forward(x, t)?;
        for block in self.stages.iter().flatten() {
            x = block.forward(&x, ctx)?;
        }
        let x = self.bn.forward_relu(&x, t)?;
        self.fc.forward(&global_avg_pool(&x)?, t)
    }
}
