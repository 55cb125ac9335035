//! Metrics of a network's logits on a labelled set, computed on the host in f64.
//!
//! Every function takes logits as N×C row-major `f32` (what the network outputs) and works
//! in f64 from there. Conventions (see `docs/evaluation.md`):
//! - the predicted class is the first largest logit (lowest class id on ties);
//! - probabilities are `softmax(logits)`, log-probabilities `log_softmax(logits)` computed
//!   with the max subtracted;
//! - `0 · log 0 = 0` in every sum over a target distribution.

use hkd_rundir::{HumanAgreement, ReliabilityBin, ScaledHuman, ScaledMetrics, SetMetrics};

use crate::error::{EvalError, Result};

/// Number of equal-width confidence bins of the expected calibration error.
pub const ECE_BINS: usize = 15;

pub use hkd_rundir::cli::eval::ORIGINAL_BATCH_SIZE;

/// `log_softmax` of one logit row, in f64.
pub fn log_softmax(row: &[f32]) -> Vec<f64> {
    log_softmax_scaled(row, 1.0)
}

/// `log_softmax(row · inv_t)` in f64: the log-probabilities at temperature `T = 1/inv_t`
/// (`inv_t = 1` gives exactly [`log_softmax`]).
pub fn log_softmax_scaled(row: &[f32], inv_t: f64) -> Vec<f64> {
    let max = row
        .iter()
        .fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64 * inv_t));
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
    let sum: f64 = row.iter().map(|&v| (v as f64 * inv_t - max).exp()).sum();
    let lse = max + sum.ln();
    row.iter().map(|&v| v as f64 * inv_t - lse).collect()
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

/// The reliability bins of the expected calibration error: `bins` equal-width bins of the
/// top-1 confidence, image i in bin `b = ⌈conf_i · bins⌉ − 1` (bins `(b/bins, (b+1)/bins]`,
/// confidence 0 in the first). Every bin is returned, empty ones with `None` means.
pub fn reliability_bins(
    confidence: &[f64],
    correct: &[bool],
    bins: usize,
) -> Result<Vec<ReliabilityBin>> {
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
        .map(|b| {
            let k = count[b] as f64;
            ReliabilityBin {
                lower: b as f64 / bins as f64,
                upper: (b + 1) as f64 / bins as f64,
                count: count[b],
                mean_confidence: (count[b] > 0).then(|| conf_sum[b] / k),
                accuracy: (count[b] > 0).then(|| hits[b] as f64 / k),
            }
        })
        .collect())
}

/// The expected calibration error of reliability bins:
/// `Σ_b |B_b|/N · |acc(B_b) − conf(B_b)|` with `N` the images in all bins (empty bins
/// count 0; 0 without images).
pub fn ece_from_bins(bins: &[ReliabilityBin]) -> f64 {
    let n: usize = bins.iter().map(|b| b.count).sum();
    if n == 0 {
        return 0.0;
    }
    bins.iter()
        .filter_map(|b| {
            let (acc, conf) = (b.accuracy?, b.mean_confidence?);
            Some((b.count as f64 / n as f64) * (acc - conf).abs())
        })
        .sum()
}

/// Expected calibration error with `bins` equal-width confidence bins:
/// `Σ_b |B_b|/N · |acc(B_b) − conf(B_b)|`, where image i falls in bin
/// `b = ⌈conf_i · bins⌉ − 1` (bins `(b/bins, (b+1)/bins]`, confidence 0 in the first);
/// [`ece_from_bins`] of [`reliability_bins`].
pub fn expected_calibration_error(
    confidence: &[f64],
    correct: &[bool],
    bins: usize,
) -> Result<f64> {
    Ok(ece_from_bins(&reliability_bins(confidence, correct, bins)?))
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

/// The metrics of `softmax(logits / T)` on a labelled set; the predicted class is the
/// argmax of the raw logits (the same for every `T > 0`).
#[derive(Debug, Clone, PartialEq)]
pub struct ProbabilityMetrics {
    /// Per-image `−log p(label)` in nats, in set order.
    pub per_image_ce: Vec<f64>,
    pub ce_mean: f64,
    pub ece: f64,
    pub brier: f64,
    pub mean_confidence: f64,
    /// The [`ECE_BINS`] bins the ECE is computed from.
    pub reliability: Vec<ReliabilityBin>,
    /// Share of images whose predicted class is the label.
    pub accuracy: f64,
    /// Mean human cross-entropy and KL, where human distributions were given.
    pub human_ce_kl: Option<(f64, f64)>,
}

/// Every probability metric of `softmax(logits · inv_t)` in one pass: cross-entropy,
/// Brier score, top-1 confidence and its reliability bins (ECE), and with `human` (N×C
/// distributions) the human cross-entropy and KL. `inv_t = 1` is the network as it is.
pub fn probability_metrics(
    logits: &[f32],
    classes: usize,
    labels: &[u32],
    human: Option<&[f64]>,
    inv_t: f64,
) -> Result<ProbabilityMetrics> {
    let n = check(logits, classes, labels)?;
    if let Some(h) = human
        && h.len() != logits.len()
    {
        return Err(EvalError::MetricInput(format!(
            "{} logit values and {} human values with {classes} classes",
            logits.len(),
            h.len()
        )));
    }
    let mut per_image_ce = Vec::with_capacity(n);
    let mut confidence = Vec::with_capacity(n);
    let mut correct = Vec::with_capacity(n);
    let (mut brier, mut human_ce, mut human_kl) = (0.0, 0.0, 0.0);
    for (i, (row, &l)) in logits.chunks_exact(classes).zip(labels).enumerate() {
        let lp = log_softmax_scaled(row, inv_t);
        let pred = argmax(row);
        per_image_ce.push(-lp[l as usize]);
        confidence.push(lp[pred].exp());
        correct.push(pred == l as usize);
        brier += lp
            .iter()
            .enumerate()
            .map(|(c, lp)| {
                let y = if c == l as usize { 1.0 } else { 0.0 };
                (lp.exp() - y).powi(2)
            })
            .sum::<f64>();
        if let Some(h) = human {
            for (&hc, &lpc) in h[i * classes..(i + 1) * classes].iter().zip(&lp) {
                if hc > 0.0 {
                    human_ce -= hc * lpc;
                    human_kl += hc * (hc.ln() - lpc);
                }
            }
        }
    }
    let reliability = reliability_bins(&confidence, &correct, ECE_BINS)?;
    Ok(ProbabilityMetrics {
        ce_mean: ratio(per_image_ce.iter().sum(), n),
        per_image_ce,
        ece: ece_from_bins(&reliability),
        brier: ratio(brier, n),
        mean_confidence: ratio(confidence.iter().sum(), n),
        reliability,
        accuracy: ratio(correct.iter().filter(|&&c| c).count() as f64, n),
        human_ce_kl: human.map(|_| (ratio(human_ce, n), ratio(human_kl, n))),
    })
}

/// Every clean-set metric of [`SetMetrics`] from the logits of a whole set (attacks empty,
/// no temperature-scaled metrics: see [`scaled_metrics`]).
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
    let m = probability_metrics(logits, classes, labels, human, 1.0)?;
    let human = match human {
        Some(h) => Some(human_agreement(logits, classes, h)?),
        None => None,
    };
    Ok(SetMetrics {
        source,
        images: labels.len(),
        accuracy: m.accuracy,
        ce_mean: m.ce_mean,
        ce_sum_batch_means: sum_of_batch_means(&m.per_image_ce, ce_batch_size),
        ce_batch_size,
        ece: m.ece,
        brier: m.brier,
        human,
        attacks: Vec::new(),
        mean_confidence: Some(m.mean_confidence),
        reliability: m.reliability,
        temperature_scaled: None,
    })
}

/// The metrics of `softmax(logits / temperature)` as recorded in
/// [`SetMetrics::temperature_scaled`].
pub fn scaled_metrics(
    logits: &[f32],
    classes: usize,
    labels: &[u32],
    human: Option<&[f64]>,
    temperature: f64,
) -> Result<ScaledMetrics> {
    if !(temperature.is_finite() && temperature > 0.0) {
        return Err(EvalError::MetricInput(format!(
            "temperature {temperature}; expected a positive number"
        )));
    }
    let m = probability_metrics(logits, classes, labels, human, 1.0 / temperature)?;
    Ok(ScaledMetrics {
        ce_mean: m.ce_mean,
        ece: m.ece,
        brier: m.brier,
        mean_confidence: m.mean_confidence,
        reliability: m.reliability,
        human: m.human_ce_kl.map(|(ce, kl)| ScaledHuman { ce, kl }),
    })
}

/// The range of temperatures [`fit_temperature`] searches: `T` in [0.01, 100].
pub const TEMPERATURE_RANGE: (f64, f64) = (0.01, 100.0);

/// Relative tolerance of [`fit_temperature`] on `1/T`: it stops when a Newton step changes
/// `1/T` by less than this fraction (or the bracket around the minimum is that narrow).
pub const TEMPERATURE_TOLERANCE: f64 = 1e-10;

/// The temperature that minimises the mean NLL of `softmax(logits / T)` on a labelled set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TemperatureScaling {
    pub temperature: f64,
    /// Mean NLL at `T = 1` and at `temperature`.
    pub nll_before: f64,
    pub nll_after: f64,
    /// The minimum lies at an end of [`TEMPERATURE_RANGE`] (the NLL still falls beyond it).
    pub at_bound: bool,
    /// Newton/bisection steps taken.
    pub iterations: u32,
}

/// Mean NLL `(1/N) Σ_i [logsumexp(β z_i) − β z_i,y_i]` at `β = 1/T` and its first and
/// second derivatives in `β`: `(1/N) Σ_i (E_p[z_i] − z_i,y_i)` and `(1/N) Σ_i Var_p(z_i)`
/// (≥ 0: the NLL is convex in β).
fn nll_and_derivatives(logits: &[f32], classes: usize, labels: &[u32], beta: f64) -> [f64; 3] {
    let (mut nll, mut d1, mut d2) = (0.0, 0.0, 0.0);
    for (row, &l) in logits.chunks_exact(classes).zip(labels) {
        let lp = log_softmax_scaled(row, beta);
        let (mut mean, mut sq) = (0.0, 0.0);
        for (&z, &lpc) in row.iter().zip(&lp) {
            let (z, p) = (z as f64, lpc.exp());
            mean += p * z;
            sq += p * z * z;
        }
        nll -= lp[l as usize];
        d1 += mean - row[l as usize] as f64;
        d2 += (sq - mean * mean).max(0.0);
    }
    let n = labels.len().max(1) as f64;
    [nll / n, d1 / n, d2 / n]
}

/// Fits one temperature by minimising the mean NLL of `logits / T` over `T` in
/// [`TEMPERATURE_RANGE`]: the NLL is convex in `β = 1/T`, so its derivative is monotone and
/// a safeguarded Newton iteration on it (bisection whenever a Newton step leaves the
/// bracket) finds the minimum to [`TEMPERATURE_TOLERANCE`] relative in `β`. A minimum
/// beyond the range returns its end with `at_bound`.
pub fn fit_temperature(
    logits: &[f32],
    classes: usize,
    labels: &[u32],
) -> Result<TemperatureScaling> {
    let n = check(logits, classes, labels)?;
    if n == 0 {
        return Err(EvalError::MetricInput(
            "cannot fit a temperature on a set of no images".into(),
        ));
    }
    if let Some(i) = logits.iter().position(|v| !v.is_finite()) {
        return Err(EvalError::MetricInput(format!(
            "cannot fit a temperature to non-finite logits (image {})",
            i / classes
        )));
    }
    let eval = |beta: f64| nll_and_derivatives(logits, classes, labels, beta);
    let nll_before = eval(1.0)[0];
    let (beta_min, beta_max) = (1.0 / TEMPERATURE_RANGE.1, 1.0 / TEMPERATURE_RANGE.0);
    let done = |beta: f64, at_bound: bool, iterations: u32| TemperatureScaling {
        temperature: if beta == beta_min {
            TEMPERATURE_RANGE.1
        } else if beta == beta_max {
            TEMPERATURE_RANGE.0
        } else {
            1.0 / beta
        },
        nll_before,
        nll_after: eval(beta)[0],
        at_bound,
        iterations,
    };
    // The derivative rises with β: its sign at the ends says where the minimum is.
    if eval(beta_min)[1] >= 0.0 {
        return Ok(done(beta_min, true, 0));
    }
    if eval(beta_max)[1] <= 0.0 {
        return Ok(done(beta_max, true, 0));
    }
    let (mut lo, mut hi) = (beta_min, beta_max);
    let mut beta = 1.0;
    for iteration in 1..=200 {
        let [_, d1, d2] = eval(beta);
        if d1 == 0.0 {
            return Ok(done(beta, false, iteration));
        }
        if d1 < 0.0 {
            lo = beta;
        } else {
            hi = beta;
        }
        let newton = beta - d1 / d2;
        let next = if d2 > 0.0 && newton > lo && newton < hi {
            newton
        } else {
            0.5 * (lo + hi)
        };
        let converged = (next - beta).abs() <= TEMPERATURE_TOLERANCE * beta
            || hi - lo <= TEMPERATURE_TOLERANCE * beta;
        beta = next;
        if converged {
            return Ok(done(beta, false, iteration));
        }
    }
    Ok(done(beta, false, 200))
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

    /// Logits `ln w` of rows whose labels occur exactly in proportion to the weights `w`:
    /// the empirical label frequencies of each row equal its softmax, so the logits are
    /// perfectly calibrated in the NLL sense (the fitted temperature is 1).
    fn calibrated(scale: f32) -> (Vec<f32>, Vec<u32>) {
        let weights: [[u32; 10]; 4] = [
            [7, 1, 1, 1, 1, 1, 1, 1, 1, 1],
            [1, 2, 3, 4, 1, 1, 1, 1, 1, 1],
            [1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
            [1, 1, 1, 1, 1, 1, 1, 1, 1, 11],
        ];
        let (mut logits, mut labels) = (Vec::new(), Vec::new());
        for w in weights {
            let row: Vec<f32> = w.iter().map(|&x| (x as f32).ln()).collect();
            for (c, &k) in w.iter().enumerate() {
                for _ in 0..k {
                    logits.extend(row.iter().map(|z| z * scale));
                    labels.push(c as u32);
                }
            }
        }
        (logits, labels)
    }

    #[test]
    fn twice_calibrated_logits_fit_a_temperature_of_two() {
        let (logits, labels) = calibrated(1.0);
        let one = fit_temperature(&logits, 10, &labels).unwrap();
        // ln w rounded to f32: 1 up to that rounding
        assert!((one.temperature - 1.0).abs() < 1e-6, "{one:?}");
        let (logits2, labels2) = calibrated(2.0);
        let two = fit_temperature(&logits2, 10, &labels2).unwrap();
        assert!((two.temperature - 2.0).abs() < 2e-6, "{two:?}");
        // 2·z is exact in f32, so the two fits differ by exactly the factor 2 up to the
        // tolerance of the search
        assert!(
            (two.temperature / one.temperature - 2.0).abs() < 1e-9,
            "{} / {}",
            two.temperature,
            one.temperature
        );
        assert!(!two.at_bound);
        assert!(two.nll_after < two.nll_before, "{two:?}");
        // ... and the NLL at T equals that of the calibrated logits at 1
        assert!((two.nll_after - one.nll_after).abs() < 1e-9);
        // half as confident: T = 1/2
        let (logits_h, labels_h) = calibrated(0.5);
        let half = fit_temperature(&logits_h, 10, &labels_h).unwrap();
        assert!((half.temperature - 0.5).abs() < 1e-6, "{half:?}");
    }

    #[test]
    fn two_class_temperature_matches_the_closed_form() {
        // One logit row (2, 0) for 8 images, 6 labelled 0: the NLL is minimal where
        // σ(2β) = 3/4, i.e. β = ln 3 / 2 and T = 2 / ln 3 = 1.8204784532536746.
        let logits: Vec<f32> = [2.0f32, 0.0].repeat(8);
        let labels = [0, 0, 0, 0, 0, 0, 1, 1];
        let fit = fit_temperature(&logits, 2, &labels).unwrap();
        assert!(
            (fit.temperature - 2.0 / 3f64.ln()).abs() < 1e-9,
            "{}",
            fit.temperature
        );
        assert!((fit.temperature - 1.820_478_453_253_674_6).abs() < 1e-9);
        // the scaled probabilities are then the label frequencies
        let m = scaled_metrics(&logits, 2, &labels, None, fit.temperature).unwrap();
        assert!((m.mean_confidence - 0.75).abs() < 1e-9, "{m:?}");
        let h = -(0.75f64 * 0.75f64.ln() + 0.25 * 0.25f64.ln());
        assert!((m.ce_mean - h).abs() < 1e-12, "{} vs {h}", m.ce_mean);
        assert!(
            m.ece.abs() < 1e-9,
            "confidence 3/4 at accuracy 3/4: ECE {}",
            m.ece
        );
    }

    #[test]
    fn separable_logits_fit_the_smallest_temperature_and_say_so() {
        // Every image right: sharper is always better, the minimum is at T → 0.
        let logits: Vec<f32> = [1.0f32, 0.0, 0.0, 1.0].repeat(3);
        let labels = [0, 1, 0, 1, 0, 1];
        let fit = fit_temperature(&logits, 2, &labels).unwrap();
        assert!(fit.at_bound);
        assert_eq!(fit.temperature, TEMPERATURE_RANGE.0);
        // every image wrong: the flattest is best
        let wrong = [1, 0, 1, 0, 1, 0];
        let fit = fit_temperature(&logits, 2, &wrong).unwrap();
        assert!(fit.at_bound);
        assert_eq!(fit.temperature, TEMPERATURE_RANGE.1);
    }

    #[test]
    fn reliability_bins_sum_to_the_images_and_give_the_ece() {
        let (logits, labels) = calibrated(2.0);
        let m = set_metrics("x".into(), &logits, 10, &labels, None, 128).unwrap();
        assert_eq!(m.images, 62);
        assert_eq!(m.reliability.len(), ECE_BINS);
        assert_eq!(m.reliability.iter().map(|b| b.count).sum::<usize>(), 62);
        for (b, bin) in m.reliability.iter().enumerate() {
            assert_eq!(bin.lower, b as f64 / 15.0);
            assert_eq!(bin.upper, (b + 1) as f64 / 15.0);
            assert_eq!(bin.count == 0, bin.accuracy.is_none());
            if let Some(c) = bin.mean_confidence {
                assert!(c > bin.lower && c <= bin.upper, "{bin:?}");
            }
        }
        let by_hand: f64 = m
            .reliability
            .iter()
            .filter(|b| b.count > 0)
            .map(|b| {
                b.count as f64 / 62.0 * (b.accuracy.unwrap() - b.mean_confidence.unwrap()).abs()
            })
            .sum();
        assert!((m.ece - by_hand).abs() < 1e-15, "{} vs {by_hand}", m.ece);
        // Four occupied bins, each of one row kind: 2·ln w makes p ∝ w², so the rows'
        // confidences are 1/10, 16/36, 49/58 and 121/130 (bins 1, 6, 12, 13), their
        // accuracies 1/10, 4/16, 7/16 and 11/20.
        let occupied: Vec<(usize, f64, f64)> = m
            .reliability
            .iter()
            .filter(|b| b.count > 0)
            .map(|b| (b.count, b.mean_confidence.unwrap(), b.accuracy.unwrap()))
            .collect();
        let expect = [
            (10, 0.1, 0.1),
            (16, 16.0 / 36.0, 0.25),
            (16, 49.0 / 58.0, 7.0 / 16.0),
            (20, 121.0 / 130.0, 11.0 / 20.0),
        ];
        assert_eq!(occupied.len(), 4, "{occupied:?}");
        for ((n, c, a), (en, ec, ea)) in occupied.iter().zip(expect) {
            assert_eq!(*n, en);
            assert!(
                (c - ec).abs() < 1e-6 && (a - ea).abs() < 1e-12,
                "{occupied:?}"
            );
        }
        let mean_conf =
            (10.0 * 0.1 + 16.0 * 16.0 / 36.0 + 16.0 * 49.0 / 58.0 + 20.0 * 121.0 / 130.0) / 62.0;
        assert!((m.mean_confidence.unwrap() - mean_conf).abs() < 1e-6);
        // at T = 1 the scaled metrics are the plain ones
        let same = scaled_metrics(&logits, 10, &labels, None, 1.0).unwrap();
        assert_eq!(same.ece, m.ece);
        assert_eq!(same.ce_mean, m.ce_mean);
        assert_eq!(same.brier, m.brier);
        assert_eq!(same.reliability, m.reliability);
    }

    #[test]
    fn sum_of_batch_means_uses_a_short_last_batch() {
        let v = [1.0, 3.0, 5.0];
        assert_eq!(sum_of_batch_means(&v, 2), 2.0 + 5.0);
        assert_eq!(sum_of_batch_means(&v, 128), 3.0);
    }
}
