//! `.npy` helpers of `predict` and the generalisation files: reading image arrays
//! (already-normalised floats or RGB bytes), writing through hkd-datasets.

use std::path::Path;

use candle_core::{Device, Tensor};
use hkd_datasets::Normalization;
use npyz::{DType, Order, TypeChar};

use crate::error::{EvalError, Result};

/// Writes `data` as a C-order `.npy` file atomically (hkd-datasets' writer).
pub fn write_npy<T: npyz::AutoSerialize + Copy>(
    path: &Path,
    shape: &[usize],
    data: &[T],
) -> Result<()> {
    Ok(hkd_datasets::write_npy(path, shape, data)?)
}

/// What kind of image array [`read_images_npy`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageInput {
    /// f32 (or f64) N×3×H×W, already normalised: used as is.
    NormalizedFloat,
    /// u8 N×H×W×3 (RGB bytes): normalised with the given normalisation.
    Bytes,
}

/// Reads images for a forward pass from an `.npy` file: f32/f64 N×3×H×W already normalised,
/// or u8 N×H×W×3 which is normalised with `normalization` (`(b/255 − mean)/std`, the same
/// arithmetic as the data loader). Returns an f32 N×3×H×W tensor on the CPU.
pub fn read_images_npy(path: &Path, normalization: &Normalization) -> Result<(Tensor, ImageInput)> {
    let bad = |reason: String| EvalError::Npy {
        path: path.to_path_buf(),
        reason,
    };
    let expected = "expected f32 N×3×H×W (already normalised) or u8 N×H×W×3 (RGB bytes)";
    let bytes = std::fs::read(path).map_err(|e| EvalError::io("read", path, e))?;
    let npy = npyz::NpyFile::new(&bytes[..])
        .map_err(|e| bad(format!("not a readable .npy file: {e}")))?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    if npy.order() == Order::Fortran {
        return Err(bad(format!(
            "Fortran (column-major) order; {expected} in C order (np.ascontiguousarray)"
        )));
    }
    let (type_char, size) = match npy.dtype() {
        DType::Plain(ts) => (ts.type_char(), ts.size_field()),
        other => {
            return Err(bad(format!(
                "dtype {} is not a plain number type; {expected}",
                other.descr()
            )));
        }
    };
    let read_err = |e: std::io::Error| bad(format!("cannot read the data: {e}"));
    match (type_char, size) {
        (TypeChar::Float, 4 | 8) => {
            if shape.len() != 4 || shape[1] != 3 || shape[0] == 0 {
                return Err(bad(format!("float array of shape {shape:?}; {expected}")));
            }
            let data: Vec<f32> = if size == 4 {
                npy.into_vec::<f32>().map_err(read_err)?
            } else {
                npy.into_vec::<f64>()
                    .map_err(read_err)?
                    .into_iter()
                    .map(|v| v as f32)
                    .collect()
            };
            if let Some(i) = data.iter().position(|v| !v.is_finite()) {
                return Err(bad(format!("value {i} is not finite ({})", data[i])));
            }
            let t = Tensor::from_vec(data, shape.as_slice(), &Device::Cpu)?;
            Ok((t, ImageInput::NormalizedFloat))
        }
        (TypeChar::Uint, 1) => {
            if shape.len() != 4 || shape[3] != 3 || shape[0] == 0 {
                return Err(bad(format!("uint8 array of shape {shape:?}; {expected}")));
            }
            let (n, h, w) = (shape[0], shape[1], shape[2]);
            let data: Vec<u8> = npy.into_vec::<u8>().map_err(read_err)?;
            let lut = normalization.lookup_table();
            let plane = h * w;
            let mut out = vec![0f32; n * 3 * plane];
            for (img, dst) in data
                .chunks_exact(3 * plane)
                .zip(out.chunks_exact_mut(3 * plane))
            {
                for p in 0..plane {
                    for c in 0..3 {
                        dst[c * plane + p] = lut[c][img[p * 3 + c] as usize];
                    }
                }
            }
            let t = Tensor::from_vec(out, (n, 3, h, w), &Device::Cpu)?;
            Ok((t, ImageInput::Bytes))
        }
        _ => Err(bad(format!("dtype {}; {expected}", npy.dtype().descr()))),
    }
}
