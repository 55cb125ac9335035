//! Devices, networks and batched evaluation-mode forward passes (no gradients).

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use hkd_arch::Network;
use hkd_datasets::{Dataset, Loader, LoaderConfig};

use crate::error::{EvalError, Result};
use crate::progress::Progress;

/// Opens a device: `cpu`, `cuda` (= `cuda:0`), `cuda:N` or `auto`; see
/// [`hkd_arch::device`], the one definition every binary shares.
pub fn parse_device(spec: &str) -> Result<Device> {
    Ok(hkd_arch::device(spec)?.0)
}

/// Builds `arch` with `classes` outputs on `device` (f32) and loads `weights`
/// (`.safetensors` or a PyTorch checkpoint).
pub fn load_network(
    arch: &str,
    classes: usize,
    weights: &Path,
    device: &Device,
) -> Result<Network> {
    let context = || {
        format!(
            "loading {} as {arch} with {classes} classes",
            weights.display()
        )
    };
    let net = Network::new(arch, classes, device, DType::F32, 0)
        .map_err(|e| EvalError::arch(context(), e))?;
    net.load_weights(weights)
        .map_err(|e| EvalError::arch(context(), e))?;
    Ok(net)
}

/// Logits (N×C row-major, dataset order) of `net` on every image of `dataset`, normalised
/// with the dataset's normalisation, in eval mode, `batch_size` images at a time.
pub fn dataset_logits(
    net: &Network,
    dataset: &Arc<Dataset>,
    batch_size: usize,
    progress: &dyn Progress,
    label: &str,
) -> Result<Vec<f32>> {
    let loader = Loader::new(dataset.clone(), LoaderConfig::eval(batch_size))?;
    let classes = net.classes();
    let mut logits = vec![0f32; dataset.len() * classes];
    progress.begin(label, loader.num_batches() as u64);
    for batch in loader.epoch(0, net.device()) {
        let batch = batch?;
        let out = forward(net, &batch.images)?;
        for (&row, values) in batch.indices.iter().zip(out.chunks_exact(classes)) {
            logits[row * classes..(row + 1) * classes].copy_from_slice(values);
        }
        progress.advance(1);
    }
    progress.end();
    Ok(logits)
}

/// Logits (N×C row-major) of `net` on `images` (f32 N×3×H×W, already normalised, on any
/// device), `batch_size` images at a time.
pub fn tensor_logits(net: &Network, images: &Tensor, batch_size: usize) -> Result<Vec<f32>> {
    let n = images.dim(0)?;
    let mut logits = Vec::with_capacity(n * net.classes());
    let mut start = 0;
    while start < n {
        let len = batch_size.max(1).min(n - start);
        let batch = images.narrow(0, start, len)?.to_device(net.device())?;
        logits.extend(forward(net, &batch)?);
        start += len;
    }
    Ok(logits)
}

/// One eval-mode forward pass, logits flattened on the host.
pub(crate) fn forward(net: &Network, images: &Tensor) -> Result<Vec<f32>> {
    let images = if images.dtype() == net.dtype() {
        images.clone()
    } else {
        images.to_dtype(net.dtype())?
    };
    let out = net
        .forward_eval(&images)
        .map_err(|e| EvalError::arch(format!("forward pass of {}", net.arch_name()), e))?;
    Ok(out.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}
