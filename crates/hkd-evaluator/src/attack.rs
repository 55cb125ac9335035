//! Untargeted L∞ attacks (FGSM, PGD) in pixel space [0, 1], through the normalisation.
//!
//! The network sees `normalize(x)`; the attacks perturb `x` (pixels in [0, 1]) and take
//! the gradient of the summed cross-entropy with respect to `x`, through the
//! normalisation. The network's parameters are used detached ([`Network::forward_eval`]),
//! so the only autograd variable is the input.

use std::fmt;
use std::str::FromStr;

use candle_core::{D, Tensor, Var};
use hkd_arch::Network;
use hkd_datasets::{Loader, LoaderConfig, Normalization, SubsetSize};
use hkd_rundir::AttackMetrics;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::error::{EvalError, Result};
use crate::forward::forward;
use crate::metrics::{argmax, log_softmax};
use crate::progress::Progress;
use crate::sets::LoadedSet;

/// An attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttackKind {
    /// Fast gradient sign method: one step of size ε.
    Fgsm,
    /// Projected gradient descent: random start in the ε-ball, `steps` signed steps of
    /// 2.5·ε/steps, each projected onto the ball and clipped to [0, 1].
    Pgd,
}

impl AttackKind {
    /// `fgsm` or `pgd`.
    pub fn name(self) -> &'static str {
        match self {
            AttackKind::Fgsm => "fgsm",
            AttackKind::Pgd => "pgd",
        }
    }
}

impl fmt::Display for AttackKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for AttackKind {
    type Err = EvalError;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fgsm" => Ok(AttackKind::Fgsm),
            "pgd" => Ok(AttackKind::Pgd),
            other => Err(EvalError::InvalidOption {
                option: "--attack",
                reason: format!(
                    "unknown attack {other:?}; expected fgsm or pgd (comma-separated for both)"
                ),
            }),
        }
    }
}

/// Parses a comma-separated list of attacks (`fgsm,pgd`).
pub fn parse_attacks(s: &str) -> Result<Vec<AttackKind>> {
    let mut kinds = Vec::new();
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        let k: AttackKind = part.parse()?;
        if !kinds.contains(&k) {
            kinds.push(k);
        }
    }
    if kinds.is_empty() {
        return Err(EvalError::InvalidOption {
            option: "--attack",
            reason: "no attack named; expected fgsm, pgd or fgsm,pgd".into(),
        });
    }
    Ok(kinds)
}

/// Parses a comma-separated list of ε in pixel units [0, 1], each a decimal (`0.0314`) or a
/// fraction (`8/255`).
pub fn parse_eps_list(s: &str) -> Result<Vec<f64>> {
    let bad = |part: &str, why: &str| EvalError::InvalidOption {
        option: "--eps",
        reason: format!(
            "{part:?} {why}; expected comma-separated values in [0, 1] such as 1/255,2/255,4/255,8/255"
        ),
    };
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let value = match part.split_once('/') {
            Some((a, b)) => {
                let a: f64 = a
                    .trim()
                    .parse()
                    .map_err(|_| bad(part, "has no number before '/'"))?;
                let b: f64 = b
                    .trim()
                    .parse()
                    .map_err(|_| bad(part, "has no number after '/'"))?;
                if b == 0.0 {
                    return Err(bad(part, "divides by zero"));
                }
                a / b
            }
            None => part.parse().map_err(|_| bad(part, "is not a number"))?,
        };
        if !(0.0..=1.0).contains(&value) {
            return Err(bad(part, "is outside [0, 1]"));
        }
        out.push(value);
    }
    if out.is_empty() {
        return Err(bad(s, "names no ε"));
    }
    Ok(out)
}

/// What attacks to run, and on how many images.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttackSettings {
    /// Attacks to run, in order.
    pub kinds: Vec<AttackKind>,
    /// ε values in pixel units [0, 1].
    pub eps: Vec<f64>,
    /// PGD steps.
    pub pgd_steps: u32,
    /// Images attacked per set: a stratified subset drawn with `seed` (all images when the
    /// set is smaller).
    pub samples: usize,
    /// Seed of the subset and of PGD's random starts.
    pub seed: u64,
    /// Images per attacked batch (gradients need more memory than evaluation).
    pub batch_size: usize,
}

impl Default for AttackSettings {
    /// FGSM and PGD, ε ∈ {1, 2, 4, 8}/255, 10 PGD steps, 1000 images, seed 0, batches of 250.
    fn default() -> Self {
        AttackSettings {
            kinds: vec![AttackKind::Fgsm, AttackKind::Pgd],
            eps: [1.0, 2.0, 4.0, 8.0].iter().map(|v| v / 255.0).collect(),
            pgd_steps: 10,
            samples: 1000,
            seed: 0,
            batch_size: 250,
        }
    }
}

impl AttackSettings {
    /// Checks the values are usable.
    pub fn validate(&self) -> Result<()> {
        if self.kinds.is_empty() {
            return Err(EvalError::InvalidOption {
                option: "--attack",
                reason: "no attack named".into(),
            });
        }
        if self.eps.is_empty() || self.eps.iter().any(|e| !(0.0..=1.0).contains(e)) {
            return Err(EvalError::InvalidOption {
                option: "--eps",
                reason: format!(
                    "{:?}: every ε must be in [0, 1] and at least one given",
                    self.eps
                ),
            });
        }
        if self.pgd_steps == 0 {
            return Err(EvalError::InvalidOption {
                option: "--pgd-steps",
                reason: "0; PGD needs at least one step".into(),
            });
        }
        if self.samples == 0 {
            return Err(EvalError::InvalidOption {
                option: "--attack-samples",
                reason: "0; attack at least one image".into(),
            });
        }
        if self.batch_size == 0 {
            return Err(EvalError::InvalidOption {
                option: "--attack-batch-size",
                reason: "0; expected at least 1".into(),
            });
        }
        Ok(())
    }
}

/// Gradient of the summed cross-entropy `Σ_i −log softmax(f(normalize(x_i)))[y_i]` with
/// respect to the pixels `x` (N×3×H×W in [0, 1], on the network's device).
pub fn input_gradient(
    net: &Network,
    pixels: &Tensor,
    labels: &Tensor,
    normalization: &Normalization,
) -> Result<Tensor> {
    // Forward and backward on the compute pool (one hand-off, not one per op).
    hkd_arch::on_compute_pool(|| {
        let x = Var::from_tensor(&pixels.detach())?;
        let logits = net
            .forward_eval(&normalization.apply(x.as_tensor())?)
            .map_err(|e| {
                EvalError::arch(format!("attack forward pass of {}", net.arch_name()), e)
            })?;
        let log_p = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let labels = labels.to_dtype(candle_core::DType::U32)?.unsqueeze(1)?;
        let loss = log_p.gather(&labels, 1)?.sum_all()?.neg()?;
        let grads = loss.backward()?;
        grads.get(x.as_tensor()).cloned().ok_or_else(|| {
            EvalError::MetricInput("the loss does not depend on the input pixels".into())
        })
    })
}

/// FGSM: `clip(x + ε·sign(∇ₓ CE), 0, 1)`.
pub fn fgsm(
    net: &Network,
    pixels: &Tensor,
    labels: &Tensor,
    eps: f64,
    normalization: &Normalization,
) -> Result<Tensor> {
    let grad = input_gradient(net, pixels, labels, normalization)?;
    Ok(pixels
        .add(&grad.sign()?.affine(eps, 0.0)?)?
        .clamp(0f32, 1f32)?)
}

/// PGD: start at `clip(x + U(−ε, ε), 0, 1)` (noise drawn from `rng`), then `steps` times
/// `x' ← clip(x + clamp(x' + α·sign(∇ CE) − x, −ε, ε), 0, 1)` with `α = 2.5·ε/steps`.
pub fn pgd(
    net: &Network,
    pixels: &Tensor,
    labels: &Tensor,
    eps: f64,
    steps: u32,
    normalization: &Normalization,
    rng: &mut impl Rng,
) -> Result<Tensor> {
    let steps = steps.max(1);
    let alpha = 2.5 * eps / steps as f64;
    let noise: Vec<f32> = (0..pixels.elem_count())
        .map(|_| ((2.0 * rng.random::<f64>() - 1.0) * eps) as f32)
        .collect();
    let noise =
        Tensor::from_vec(noise, pixels.shape(), pixels.device())?.to_dtype(pixels.dtype())?;
    let (lo, hi) = (-eps as f32, eps as f32);
    let mut adv = pixels.add(&noise)?.clamp(0f32, 1f32)?;
    for _ in 0..steps {
        let grad = input_gradient(net, &adv, labels, normalization)?;
        let stepped = adv.add(&grad.sign()?.affine(alpha, 0.0)?)?;
        let delta = stepped.sub(pixels)?.clamp(lo, hi)?;
        adv = pixels.add(&delta)?.clamp(0f32, 1f32)?;
    }
    Ok(adv)
}

/// The rows of `set` that are attacked: all of them when `samples >= len`, else a
/// stratified subset drawn with `seed` (ascending rows).
pub fn attack_rows(set: &LoadedSet, samples: usize, seed: u64) -> Result<Vec<usize>> {
    let n = set.dataset.len();
    if samples >= n {
        return Ok((0..n).collect());
    }
    Ok(set
        .dataset
        .stratified_rows(SubsetSize::Total(samples), seed)?)
}

/// Runs every attack and ε of `settings` on the seeded subset of `set`, returning one
/// [`AttackMetrics`] per (attack, ε), attacks in the order given, ε ascending as given.
pub fn attack_set(
    net: &Network,
    set: &LoadedSet,
    settings: &AttackSettings,
    progress: &dyn Progress,
) -> Result<Vec<AttackMetrics>> {
    settings.validate()?;
    let rows = attack_rows(set, settings.samples, settings.seed)?;
    let subset = std::sync::Arc::new(set.dataset.select(&rows)?);
    let normalization = subset.normalization();
    let config = LoaderConfig {
        normalize: false,
        prefetch: 1,
        ..LoaderConfig::eval(settings.batch_size)
    };
    let loader = Loader::new(subset.clone(), config)?;
    let classes = net.classes();
    let combos: Vec<(AttackKind, usize)> = settings
        .kinds
        .iter()
        .flat_map(|&k| (0..settings.eps.len()).map(move |e| (k, e)))
        .collect();
    let mut correct = vec![0usize; combos.len()];
    let mut ce_sum = vec![0f64; combos.len()];
    progress.begin(
        &format!("{} attacks", set.name),
        (loader.num_batches() * combos.len()) as u64,
    );
    for batch in loader.epoch(0, net.device()) {
        let batch = batch?;
        let labels_host: Vec<u32> = batch.indices.iter().map(|&i| subset.labels()[i]).collect();
        for (c, &(kind, e)) in combos.iter().enumerate() {
            let eps = settings.eps[e];
            let adv = match kind {
                AttackKind::Fgsm => fgsm(net, &batch.images, &batch.labels, eps, &normalization)?,
                AttackKind::Pgd => {
                    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
                    rng.set_stream(((batch.index as u64) << 16) | e as u64);
                    pgd(
                        net,
                        &batch.images,
                        &batch.labels,
                        eps,
                        settings.pgd_steps,
                        &normalization,
                        &mut rng,
                    )?
                }
            };
            let logits = forward(net, &normalization.apply(&adv)?)?;
            for (row, &label) in logits.chunks_exact(classes).zip(&labels_host) {
                if argmax(row) == label as usize {
                    correct[c] += 1;
                }
                ce_sum[c] -= log_softmax(row)[label as usize];
            }
            progress.advance(1);
        }
    }
    progress.end();
    let n = rows.len().max(1) as f64;
    Ok(combos
        .iter()
        .enumerate()
        .map(|(c, &(kind, e))| AttackMetrics {
            attack: kind.name().to_string(),
            eps: settings.eps[e],
            steps: match kind {
                AttackKind::Fgsm => 1,
                AttackKind::Pgd => settings.pgd_steps,
            },
            samples: rows.len(),
            accuracy: correct[c] as f64 / n,
            ce_mean: ce_sum[c] / n,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eps_list_accepts_fractions_and_decimals() {
        let eps = parse_eps_list("1/255, 0.5,8/255").unwrap();
        assert_eq!(eps, vec![1.0 / 255.0, 0.5, 8.0 / 255.0]);
        assert!(parse_eps_list("2").is_err());
        assert!(parse_eps_list("1/0").is_err());
        assert!(parse_eps_list("x").is_err());
    }

    #[test]
    fn attack_list_dedupes() {
        assert_eq!(
            parse_attacks("pgd,FGSM,pgd").unwrap(),
            vec![AttackKind::Pgd, AttackKind::Fgsm]
        );
        assert!(parse_attacks("cw").is_err());
    }
}
