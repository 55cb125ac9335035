//! Metrics of a network's logits on a labelled set, computed on the host in f64.
//!
//! Every function takes logits as N×C row-major `f32` (what the network outputs) and works
//! in f64 from there. Conventions (see `docs/evaluation.md`):
//! - the predicted class is the first largest logit (lowest class id on ties);
//! - probabilities are `softmax(logits)`, log-probabilities `log_softmax(logits)` computed
//!   with the max subtracted;
//! - `0 · log 0 = 0` in every sum over a target distribution.

use hkd_rundir::{HumanAgreement, SetMetrics};

use crate::error::{EvalError, Result};

/// Number of equal-width confidence bins of the expected calibration error.
pub const ECE_BINS: usize = 15;

pub use hkd_rundir::cli::eval::ORIGINAL_BATCH_SIZE;

/// `log_softmax` of one logit row, in f64.
pub fn log_softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    if max == f64::INFINITY {
        // softmax of +inf entries is undefined; mirror the limit: all mass on them.
        let n_inf = row.iter().filter(|&&v| v == f32::INFINITY).count() as f64;
        return row
            .iter()
            .map(|&v| {
                if v == f32::INFINITY {
                    -(n_inf.ln())
                } else {
                    f64::NEG_INFINITY
                }
            })
            .collect();
    }
    let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
    let lse = max + sum.ln();
    row.iter().map(|&v| v as f64 - lse).collect()
}

/// Index of the first largest value (lowest index on ties).
pub fn argmax<T: PartialOrd + Copy>(row: &[T]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate().skip(1) {
        if v > row[best] {
            best = i;
        }
    }
    best
}

fn check(logits: &[f32], classes: usize, labels: &[u32]) -> Result<usize> {
    if classes == 0 {
        return Err(EvalError::MetricInput("zero classes".into()));
    }
    if logits.len() != labels.len() * classes {
        return Err(EvalError::MetricInput(format!(
            "{} logit values for {} labels × {classes} classes",
            logits.len(),
            labels.len()
        )));
    }
    if let Some(bad) = labels.iter().find(|&&l| l as usize >= classes) {
        return Err(EvalError::MetricInput(format!(
            "label {bad} with {classes} classes"
        )));
    }
    Ok(labels.len())
}

/// Per-image cross-entropy `−log p(label)` in nats.
pub fn per_image_cross_entropy(logits: &[f32], classes: usize, labels: &[u32]) -> Result<Vec<f64>> {
    check(logits, classes, labels)?;
    Ok(logits
        .chunks_exact(classes)
        .zip(labels)
        .map(|(row, &l)| -log_softmax(row)[l as usize])
        .collect())
}

/// Share of images whose predicted class equals the label, in [0, 1] (0 for no images).
pub fn accuracy(logits: &[f32], classes: usize, labels: &[u32]) -> Result<f64> {
    let n = check(logits, classes, labels)?;
    let correct = logits
        .chunks_exact(classes)
        .zip(labels)
        .filter(|(row, l)| argmax(row) == **l as usize)
        .count();
    Ok(ratio(correct as f64, n))
}

/// The original project's "loss": the sum over consecutive batches of `batch_size` images
/// (the last one possibly smaller) of the batch-mean cross-entropy.
pub fn sum_of_batch_means(per_image: &[f64], batch_size: usize) -> f64 {
    per_image
        .chunks(batch_size.max(1))
        .map(|b| b.iter().sum::<f64>() / b.len() as f64)
        .sum()
}

/// Expected calibration error with `bins` equal-width confidence bins:
/// `Σ_b |B_b|/N · |acc(B_b) − conf(B_b)|`, where image i falls in bin
/// `b = ⌈conf_i · bins⌉ − 1` (bins `(b/bins, (b+1)/bins]`, confidence 0 in the first).
pub fn expected_calibration_error(
    confidence: &[f64],
    correct: &[bool],
    bins: usize,
) -> Result<f64> {
    if confidence.len() != correct.len() {
        return Err(EvalError::MetricInput(format!(
            "{} confidences for {} correctness flags",
            confidence.len(),
            correct.len()
        )));
    }
    if bins == 0 {
        return Err(EvalError::MetricInput("zero calibration bins".into()));
    }
    let n = confidence.len();
    if n == 0 {
        return Ok(0.0);
    }
    let mut count = vec![0usize; bins];
    let mut conf_sum = vec![0f64; bins];
    let mut hits = vec![0usize; bins];
    for (&c, &ok) in confidence.iter().zip(correct) {
        let b = ((c * bins as f64).ceil() as usize).clamp(1, bins) - 1;
        count[b] += 1;
        conf_sum[b] += c;
        hits[b] += ok as usize;
    }
    Ok((0..bins)
        .filter(|&b| count[b] > 0)
        .map(|b| {
            let k = count[b] as f64;
            (k / n as f64) * (hits[b] as f64 / k - conf_sum[b] / k).abs()
        })
        .sum())
}

/// Multi-class Brier score: mean over images of `Σ_c (p_c − [c = label])²`, in [0, 2].
pub fn brier_score(logits: &[f32], classes: usize, labels: &[u32]) -> Result<f64> {
    let n = check(logits, classes, labels)?;
    let total: f64 = logits
        .chunks_exact(classes)
        .zip(labels)
        .map(|(row, &l)| {
            log_softmax(row)
                .iter()
                .enumerate()
                .map(|(c, lp)| {
                    let y = if c == l as usize { 1.0 } else { 0.0 };
                    (lp.exp() - y).powi(2)
                })
                .sum::<f64>()
        })
        .sum();
    Ok(ratio(total, n))
}

/// Agreement with human label distributions (N×C rows, each summing to 1):
/// mean cross-entropy `−Σ_c h_c log p_c`, mean `KL(h ‖ p) = Σ_c h_c log(h_c / p_c)`, and the
/// share of images whose predicted class is the human majority class (lowest id on ties).
pub fn human_agreement(logits: &[f32], classes: usize, human: &[f64]) -> Result<HumanAgreement> {
    if classes == 0 || !logits.len().is_multiple_of(classes) || human.len() != logits.len() {
        return Err(EvalError::MetricInput(format!(
            "{} logit values and {} human values with {classes} classes",
            logits.len(),
            human.len()
        )));
    }
    let n = logits.len() / classes;
    let (mut ce, mut kl, mut agree) = (0.0, 0.0, 0usize);
    for (row, h) in logits
        .chunks_exact(classes)
        .zip(human.chunks_exact(classes))
    {
        let lp = log_softmax(row);
        for (&hc, &lpc) in h.iter().zip(&lp) {
            if hc > 0.0 {
                ce -= hc * lpc;
                kl += hc * (hc.ln() - lpc);
            }
        }
        if argmax(row) == argmax(h) {
            agree += 1;
        }
    }
    Ok(HumanAgreement {
        ce: ratio(ce, n),
        kl: ratio(kl, n),
        majority_agreement: ratio(agree as f64, n),
    })
}

/// Every clean-set metric of [`SetMetrics`] from the logits of a whole set (attacks empty).
///
/// `source` is recorded as given; `human`, when present, holds N×C distributions.
pub fn set_metrics(
    source: String,
    logits: &[f32],
    classes: usize,
    labels: &[u32],
    human: Option<&[f64]>,
    ce_batch_size: usize,
) -> Result<SetMetrics> {
    let n = check(logits, classes, labels)?;
    let per_image = per_image_cross_entropy(logits, classes, labels)?;
    let mut confidence = Vec::with_capacity(n);
    let mut correct = Vec::with_capacity(n);
    for (row, &l) in logits.chunks_exact(classes).zip(labels) {
        let lp = log_softmax(row);
        let pred = argmax(row);
        confidence.push(lp[pred].exp());
        correct.push(pred == l as usize);
    }
    let human = match human {
        Some(h) => Some(human_agreement(logits, classes, h)?),
        None => None,
    };
    Ok(SetMetrics {
        source,
        images: n,
        accuracy: ratio(correct.iter().filter(|&&c| c).count() as f64, n),
        ce_mean: ratio(per_image.iter().sum(), n),
        ce_sum_batch_means: sum_of_batch_means(&per_image, ce_batch_size),
        ce_batch_size,
        ece: expected_calibration_error(&confidence, &correct, ECE_BINS)?,
        brier: brier_score(logits, classes, labels)?,
        human,
        attacks: Vec::new(),
    })
}

fn ratio(sum: f64, n: usize) -> f64 {
    if n == 0 { 0.0 } else { sum / n as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_handles_minus_infinity() {
        let lp = log_softmax(&[0.0, f32::NEG_INFINITY, 0.0]);
        assert!((lp[0] - 0.5f64.ln()).abs() < 1e-12);
        assert_eq!(lp[1], f64::NEG_INFINITY);
    }

    #[test]
    fn ece_of_two_bins_by_hand() {
        // Bin 14 (conf > 14/15): 0.95 right, 0.99 wrong -> |0.5 - 0.97| * 2/4.
        // Bin 7 (conf in (7/15, 8/15]): 0.5 right, 0.5 right -> |1 - 0.5| * 2/4.
        let ece =
            expected_calibration_error(&[0.95, 0.99, 0.5, 0.5], &[true, false, true, true], 15)
                .unwrap();
        assert!((ece - (0.47 * 0.5 + 0.5 * 0.5)).abs() < 1e-12, "{ece}");
    }

    #[test]
    fn sum_of_batch_means_uses_a_short_last_batch() {
        let v = [1.0, 3.0, 5.0];
        assert_eq!(sum_of_batch_means(&v, 2), 2.0 + 5.0);
        assert_eq!(sum_of_batch_means(&v, 128), 3.0);
    }
}
