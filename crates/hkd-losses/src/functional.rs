//! The building blocks of the objective as plain functions on candle tensors.
//!
//! They do no validation beyond what candle does; [`DistillationLoss`](crate::DistillationLoss)
//! checks shapes, dtypes and devices before calling them. Everything stays on the input's
//! device and dtype.

use candle_core::{D, DType, Device, Tensor};

use crate::config::{DistilFn, KlReduction};
use crate::error::{LossError, Result};

/// Numerically stable `log_softmax` over the last dimension.
///
/// Computed as `x − m − log Σ exp(x − m)` with `m` the (detached) row maximum, so no
/// `exp` overflows and no `log(0)` occurs for finite inputs. Gradients flow through `x`.
pub fn log_softmax(logits: &Tensor) -> Result<Tensor> {
    let row_max = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&row_max)?;
    let log_sum_exp = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&log_sum_exp)?)
}

/// Mean cross-entropy of logits `[N, C]` against integer class labels `[N]`
/// (`u8`, `u32` or `i64`), with label smoothing `α`: the target is
/// `(1-α)·onehot(y) + α/C`, i.e. `(1-α)·CE + α·mean_c(−log p_c)`, PyTorch's
/// `cross_entropy(…, label_smoothing=α)`. At `α = 0` only the plain CE is computed.
///
/// Labels must lie in `0..C`; the CPU backend reports an out-of-range label as an error,
/// other backends may not.
pub fn hard_cross_entropy(
    logits: &Tensor,
    labels: &Tensor,
    label_smoothing: f64,
) -> Result<Tensor> {
    let log_probs = log_softmax(logits)?;
    let index = labels.unsqueeze(1)?.contiguous()?;
    let nll = log_probs.gather(&index, 1)?.mean_all()?.neg()?;
    if label_smoothing == 0.0 {
        return Ok(nll);
    }
    // mean over classes and batch of −log p: (Σ_c −log p_c)/C averaged over the batch
    let uniform = log_probs.mean_all()?.neg()?;
    Ok((nll.affine(1.0 - label_smoothing, 0.0)? + uniform.affine(label_smoothing, 0.0)?)?)
}

/// `log ĥ` for human label distributions `[N, C]`, with `ĥ = (h + ε) / (1 + C·ε)`.
///
/// With `ε = 0` this is `log h`, which is `-inf` wherever `h` is 0: the caller must make
/// sure that does not happen (as [`DistillationLoss`](crate::DistillationLoss) does).
pub fn smoothed_human_log_probs(human: &Tensor, smoothing: f64) -> Result<Tensor> {
    let classes = human.dim(D::Minus1)? as f64;
    let scale = 1.0 / (1.0 + classes * smoothing);
    Ok(human.affine(scale, smoothing * scale)?.log()?)
}

/// The temperature-scaled soft term `T²·D(s/T, z/T)` for student logits `s` and target
/// logits `z` (teacher logits, or `log ĥ`), both `[N, C]`.
///
/// The target distribution is `softmax(z/T)` and carries no gradient. `D` is
/// [`DistilFn::Kl`] (`Σ p·(log p − log_softmax(s/T))`, reduced by `reduction`) or
/// [`DistilFn::Ce`] (`−Σ p·log_softmax(s/T)`, summed over classes and averaged over the
/// batch). The factor `T²` keeps the gradient's size roughly independent of `T`.
pub fn soft_distillation_term(
    student_logits: &Tensor,
    target_logits: &Tensor,
    temperature: f64,
    distil_fn: DistilFn,
    reduction: KlReduction,
) -> Result<Tensor> {
    let (batch, classes) = student_logits.dims2()?;
    let inverse_temperature = 1.0 / temperature;
    let target_log_probs = log_softmax(&target_logits.affine(inverse_temperature, 0.0)?)?.detach();
    let student_log_probs = log_softmax(&student_logits.affine(inverse_temperature, 0.0)?)?;
    let target_probs = target_log_probs.exp()?;
    let (elementwise, divisor) = match distil_fn {
        DistilFn::Kl => {
            let divisor = match reduction {
                KlReduction::BatchMean => batch,
                KlReduction::ElementwiseMean => batch * classes,
            };
            let log_ratio = (target_log_probs - &student_log_probs)?;
            ((target_probs * log_ratio)?, divisor)
        }
        DistilFn::Ce => ((target_probs * &student_log_probs)?.neg()?, batch),
    };
    let scale = temperature * temperature / divisor as f64;
    Ok(elementwise.sum_all()?.affine(scale, 0.0)?)
}

/// Checks, on the host, that every row of `human` (`[N, C]`, any float dtype, any device)
/// is a probability distribution: finite, non-negative entries summing to 1 within
/// `tolerance`.
///
/// This copies the tensor to the host, so call it once when the labels are loaded, not
/// per training step.
pub fn check_human_distributions(human: &Tensor, tolerance: f64) -> Result<()> {
    let dims = human.dims().to_vec();
    if dims.len() != 2 {
        return Err(LossError::ShapeMismatch {
            input: "human",
            found: dims,
            expected: "a rank-2 tensor [N, C]".to_owned(),
        });
    }
    if !human.dtype().is_float() {
        return Err(LossError::UnsupportedDType {
            input: "human",
            found: human.dtype(),
            expected: "a float dtype (f16, bf16, f32 or f64)",
        });
    }
    let rows = human
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F64)?
        .to_vec2::<f64>()?;
    for (row_index, row) in rows.iter().enumerate() {
        if let Some((column, value)) = row
            .iter()
            .enumerate()
            .find(|(_, value)| !(value.is_finite() && **value >= 0.0))
        {
            return Err(LossError::InvalidHumanRow {
                row: row_index,
                problem: format!("entry {column} is {value}"),
                tolerance,
            });
        }
        let sum: f64 = row.iter().sum();
        if (sum - 1.0).abs() > tolerance {
            return Err(LossError::InvalidHumanRow {
                row: row_index,
                problem: format!("its entries sum to {sum}"),
                tolerance,
            });
        }
    }
    Ok(())
}

/// `log 1e-300`: the floor of a human target's logits at `ε = 0`, where a zero entry's log
/// would be `-inf` (the upstream reference code clamps the probabilities at 1e-300; the
/// floor on the log does the same in every float dtype).
pub const LOG_PROBABILITY_FLOOR: f64 = -690.775_527_898_213_7;

/// The logits of the human target of the objectives other than hkd: `log ĥ` with
/// `ĥ = (h + ε)/(1 + C·ε)`, floored at [`LOG_PROBABILITY_FLOOR`], so that
/// `softmax(log ĥ) = ĥ`.
pub fn human_target_logits(human: &Tensor, smoothing: f64) -> Result<Tensor> {
    Ok(smoothed_human_log_probs(human, smoothing)?.maximum(LOG_PROBABILITY_FLOOR)?)
}

/// The `ε` of logit standardisation: `(z − mean) / (ε + std)`, as in the authors' code
/// and torchdistill's `LogitStdKDLoss`.
pub const LOGIT_STD_EPS: f64 = 1e-7;

/// Logit standardisation (Sun et al., CVPR 2024): each row `z` of `[N, C]` becomes
/// `(z − mean(z)) / (1e-7 + std(z))`, with the unbiased (n − 1) standard deviation of
/// `torch.std`. Gradients flow through mean and std.
pub fn standardize_logits(logits: &Tensor) -> Result<Tensor> {
    let classes = logits.dim(D::Minus1)?;
    let centred = logits.broadcast_sub(&logits.mean_keepdim(D::Minus1)?)?;
    let variance = centred
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .affine(1.0 / (classes.max(2) - 1) as f64, 0.0)?;
    let scale = variance.sqrt()?.affine(1.0, LOGIT_STD_EPS)?;
    Ok(centred.broadcast_div(&scale)?)
}

/// Numerically stable `softmax` over the last dimension (`exp` of [`log_softmax`]).
pub fn softmax(logits: &Tensor) -> Result<Tensor> {
    Ok(log_softmax(logits)?.exp()?)
}

/// The one-hot rows `[N, C]` of class indices `[N]` (`u8`, `u32` or `i64`), in `dtype`.
pub fn one_hot(labels: &Tensor, classes: usize, dtype: DType) -> Result<Tensor> {
    let batch = labels.dim(0)?;
    let device = labels.device();
    let zeros = Tensor::zeros((batch, classes), dtype, device)?;
    let ones = Tensor::ones((batch, 1), dtype, device)?;
    Ok(zeros.scatter_add(&labels.unsqueeze(1)?.contiguous()?, &ones, 1)?)
}

/// `Σ p·(log p − log q)` over every element, with `0·log 0 = 0` (PyTorch's `kl_div` with
/// `reduction="sum"`): `p` and `log_p` the target (no gradient), `log_q` the prediction.
pub fn kl_divergence_sum(p: &Tensor, log_p: &Tensor, log_q: &Tensor) -> Result<Tensor> {
    let terms = (p * (log_p - log_q)?)?;
    let positive = p.gt(0.0)?;
    Ok(positive
        .where_cond(&terms, &terms.zeros_like()?)?
        .sum_all()?)
}

/// The Pearson correlation of each row of `a` with the same row of `b` (`[N, C]` →
/// `[N]`): the cosine similarity of the centred rows, each norm clamped at `eps`
/// (PyTorch's `cosine_similarity`, which DIST's code calls).
pub fn pearson_rows(a: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    let centre =
        |x: &Tensor| -> Result<Tensor> { Ok(x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?) };
    let (a, b) = (centre(a)?, centre(b)?);
    let norm = |x: &Tensor| -> Result<Tensor> {
        Ok(x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.maximum(eps)?)
    };
    let dot = (&a * &b)?.sum_keepdim(D::Minus1)?;
    Ok(dot
        .broadcast_div(&(norm(&a)? * norm(&b)?)?)?
        .squeeze(D::Minus1)?)
}
