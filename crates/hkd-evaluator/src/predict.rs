//! `hkd-eval predict`: logits of a trained network for an `.npy` of images.

use std::path::Path;

use candle_core::Device;
use hkd_datasets::Normalization;

use crate::error::Result;
use crate::forward::{load_network, tensor_logits};
use crate::npy::{ImageInput, read_images_npy, write_npy};

/// What [`predict_to_file`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prediction {
    /// Images read.
    pub images: usize,
    /// Logits per image.
    pub classes: usize,
    /// How the input was interpreted.
    pub input: ImageInput,
}

/// Reads images from `images` (f32 N×3×H×W already normalised, or u8 N×H×W×3 normalised
/// with the CIFAR-10 statistics), runs `arch` with `weights` in eval mode, and writes the
/// f32 N×`classes` logits to `out` atomically.
pub fn predict_to_file(
    arch: &str,
    classes: usize,
    weights: &Path,
    images: &Path,
    out: &Path,
    batch_size: usize,
    device: &Device,
) -> Result<Prediction> {
    let (tensor, input) = read_images_npy(images, &Normalization::CIFAR10)?;
    let net = load_network(arch, classes, weights, device)?;
    let n = tensor.dim(0)?;
    let logits = tensor_logits(&net, &tensor, batch_size)?;
    write_npy(out, &[n, classes], &logits)?;
    Ok(Prediction {
        images: n,
        classes,
        input,
    })
}
