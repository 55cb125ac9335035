//! Small `.npy` helpers: writing f32/f64 arrays atomically, reading image arrays for
//! `predict`.

use std::path::Path;

use candle_core::{Device, Tensor};
use hkd_datasets::Normalization;
use npyz::{DType, Order, TypeChar};

use crate::error::{EvalError, Result};

/// An element type [`npy_bytes`] can write.
pub trait NpyElement: Copy {
    /// NumPy type string, little-endian.
    const DESCR: &'static str;
    /// Appends the little-endian bytes of `self`.
    fn put(self, out: &mut Vec<u8>);
}

impl NpyElement for f32 {
    const DESCR: &'static str = "<f4";
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl NpyElement for f64 {
    const DESCR: &'static str = "<f8";
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

/// The bytes of a C-order NumPy v1.0 `.npy` file holding `data` with `shape`.
pub fn npy_bytes<T: NpyElement>(shape: &[usize], data: &[T]) -> Result<Vec<u8>> {
    let count: usize = shape.iter().product();
    if count != data.len() {
        return Err(EvalError::MetricInput(format!(
            "npy shape {shape:?} holds {count} values, got {}",
            data.len()
        )));
    }
    let dims = match shape {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {dims}, }}",
        T::DESCR
    );
    // magic (6) + version (2) + header length (2) + header + '\n' is a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + std::mem::size_of_val(data));
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for &v in data {
        v.put(&mut out);
    }
    Ok(out)
}

/// Writes `data` as an `.npy` file atomically (temporary file in the same directory, then
/// rename).
pub fn write_npy<T: NpyElement>(path: &Path, shape: &[usize], data: &[T]) -> Result<()> {
    let bytes = npy_bytes(shape, data)?;
    hkd_rundir::write_atomic(path, &bytes).map_err(|e| EvalError::io("write", path, e))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_npy_reads_back_with_npyz() {
        let data = [1.5f64, -2.0, 3.25, 4.0, 5.0, 6.0];
        let bytes = npy_bytes(&[2, 3], &data).unwrap();
        assert_eq!((bytes.len() - data.len() * 8) % 64, 0);
        let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
        assert_eq!(npy.shape(), &[2, 3]);
        assert_eq!(npy.into_vec::<f64>().unwrap(), data);
        let one = npy_bytes(&[3], &[1f32, 2.0, 3.0]).unwrap();
        let npy = npyz::NpyFile::new(&one[..]).unwrap();
        assert_eq!(npy.shape(), &[3]);
    }
}
