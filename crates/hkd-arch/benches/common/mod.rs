//! The training step, its data and its timing, shared by the CPU throughput bench
//! (`benches/throughput.rs`, beside PyTorch on the CPU) and the `hkd-bench` example (any
//! device, for `scripts/gpu-check.sh`); included by each with `mod common;` /
//! `#[path = …] mod common;`.
#![allow(dead_code)] // each includer uses its own part

use std::time::{Duration, Instant};

use candle_core::{D, Device, Tensor, Var};
use hkd_arch::{Network, Phase};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

pub type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

pub const LR: f64 = 0.01;
pub const MOMENTUM: f64 = 0.9;
pub const WEIGHT_DECAY: f64 = 5e-4;
pub const TEMPERATURE: f64 = 4.0;
pub const LAMBDA: f64 = 0.5;

/// `n` random 3×32×32 images in [−1, 1) and labels of `classes` classes, on the CPU.
pub fn batch(
    n: usize,
    classes: u32,
    rng: &mut ChaCha8Rng,
) -> candle_core::Result<(Tensor, Tensor)> {
    let x: Vec<f32> = (0..n * 3 * 32 * 32)
        .map(|_| rng.random::<f32>() * 2.0 - 1.0)
        .collect();
    let y: Vec<u32> = (0..n).map(|_| rng.random_range(0..classes)).collect();
    Ok((
        Tensor::from_vec(x, (n, 3, 32, 32), &Device::Cpu)?,
        Tensor::from_vec(y, n, &Device::Cpu)?,
    ))
}

/// Runs `step` once to warm up, then at least `min_reps` times and at least `min_time`;
/// returns the median seconds per step.
pub fn time_it(
    min_reps: usize,
    min_time: Duration,
    mut step: impl FnMut() -> BoxResult<()>,
) -> BoxResult<f64> {
    step()?;
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < min_reps || start.elapsed() < min_time {
        let t = Instant::now();
        step()?;
        times.push(t.elapsed().as_secs_f64());
    }
    Ok(median(&mut times))
}

pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// (1−λ)·CE(s, y) + λ·T²·KL(softmax(t/T) ‖ softmax(s/T)), batch mean.
pub fn kd_loss(s: &Tensor, t: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
    let n = s.dim(0)? as f64;
    let ce = candle_nn::loss::cross_entropy(s, y)?;
    let log_ps = candle_nn::ops::log_softmax(&(s / TEMPERATURE)?, D::Minus1)?;
    let log_pt = candle_nn::ops::log_softmax(&(t / TEMPERATURE)?, D::Minus1)?;
    let kl = (log_pt.exp()? * (log_pt - log_ps)?)?.sum_all()?;
    (ce * (1.0 - LAMBDA))? + (kl * (LAMBDA * TEMPERATURE * TEMPERATURE / n))?
}

/// SGD with momentum and weight decay (PyTorch's `torch.optim.SGD`).
pub struct Sgd {
    params: Vec<(Var, Option<Tensor>)>,
}

impl Sgd {
    pub fn new(net: &Network) -> Self {
        Sgd {
            params: net
                .trainable_parameters()
                .into_iter()
                .map(|(_, v)| (v, None))
                .collect(),
        }
    }

    pub fn step(&mut self, grads: &candle_core::backprop::GradStore) -> candle_core::Result<()> {
        for (var, buf) in &mut self.params {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let p = var.as_detached_tensor();
            let d = (g + (&p * WEIGHT_DECAY)?)?;
            let b = match buf.take() {
                Some(b) => ((b * MOMENTUM)? + d)?,
                None => d,
            };
            var.set(&(p - (&b * LR)?)?)?;
            *buf = Some(b);
        }
        Ok(())
    }
}

/// One training step of the bench: the teacher's `Phase::Eval` forward, the student's
/// `Phase::Train` forward, the KD loss, backward, and SGD — on the compute pool, as
/// hkd-train runs its steps ([`hkd_arch::on_compute_pool`]).
#[allow(clippy::result_large_err)] // the closure's ArchError, boxed on the way out
pub fn train_step(
    net: &Network,
    teacher: &Network,
    sgd: &mut Sgd,
    shake_rng: &mut ChaCha8Rng,
    x: &Tensor,
    y: &Tensor,
) -> BoxResult<()> {
    hkd_arch::on_compute_pool(|| -> Result<(), hkd_arch::ArchError> {
        let t = teacher.forward_eval(x)?;
        let s = net.forward(x, Phase::Train { rng: shake_rng })?;
        let grads = kd_loss(&s, &t, y)?.backward()?;
        Ok(sgd.step(&grads)?)
    })?;
    Ok(())
}
