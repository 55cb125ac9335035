//! Reading and writing the `.npy` arrays of a dataset, with validation.
//!
//! The header is parsed by `npyz`; the data bytes are decoded here, so that every dtype
//! listed in the docs is read the same way and every problem gets a precise message.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use npyz::{DType, Endianness, NpyHeader, Order, TypeChar, WriterBuilder};
use serde::{Deserialize, Serialize};

use crate::error::{DatasetError, Result};
use crate::{CHANNELS, IMAGE_BYTES, IMAGE_SIZE};

/// One decoded `.npy` element.
#[derive(Debug, Clone, Copy)]
enum Scalar {
    Bool(bool),
    Int(i128),
    Float(f64),
}

/// Element types this crate can decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Elem {
    Bool,
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    F32,
    F64,
}

impl Elem {
    fn size(self) -> usize {
        match self {
            Elem::Bool | Elem::U8 | Elem::I8 => 1,
            Elem::U16 | Elem::I16 => 2,
            Elem::U32 | Elem::I32 | Elem::F32 => 4,
            Elem::U64 | Elem::I64 | Elem::F64 => 8,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Elem::Bool => "bool",
            Elem::U8 => "uint8",
            Elem::U16 => "uint16",
            Elem::U32 => "uint32",
            Elem::U64 => "uint64",
            Elem::I8 => "int8",
            Elem::I16 => "int16",
            Elem::I32 => "int32",
            Elem::I64 => "int64",
            Elem::F32 => "float32",
            Elem::F64 => "float64",
        }
    }

    fn is_float(self) -> bool {
        matches!(self, Elem::F32 | Elem::F64)
    }

    fn is_integer(self) -> bool {
        !matches!(self, Elem::Bool | Elem::F32 | Elem::F64)
    }
}

/// A whole `.npy` file in memory: its parsed header and its data bytes.
pub(crate) struct RawNpy {
    pub path: PathBuf,
    pub elem: Elem,
    pub little_endian: bool,
    pub shape: Vec<u64>,
    bytes: Vec<u8>,
    data_offset: usize,
    len: usize,
}

const MAGIC: &[u8] = b"\x93NUMPY";

impl RawNpy {
    /// Reads and checks a `.npy` file: magic, header, dtype kind, C order, and that the
    /// file holds all the data bytes its header promises.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = fs::read(path).map_err(|e| DatasetError::io(path, "read", e))?;
        Self::from_bytes(path, bytes)
    }

    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self> {
        let not_npy = |reason: String| DatasetError::NotNpy {
            path: path.to_path_buf(),
            reason,
        };
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(not_npy(format!(
                "it does not start with the .npy magic bytes \\x93NUMPY (the file has {} bytes{})",
                bytes.len(),
                if bytes.is_empty() {
                    ", it is empty"
                } else {
                    ""
                }
            )));
        }
        let mut cursor: &[u8] = &bytes;
        // npyz multiplies the shape without checking: a hand-made shape whose product
        // overflows panics in builds with overflow checks (and wraps, caught below, in
        // release builds). Either way it is a bad file, not a crash.
        let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            NpyHeader::from_reader(&mut cursor)
        }))
        .map_err(|_| {
            not_npy(
                "its header's shape holds more values than any file can (the product overflows 64 bits): a corrupt or hand-made header".into(),
            )
        })?;
        let header = parsed.map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                not_npy("the header is cut off (file truncated inside the header)".into())
            } else {
                not_npy(format!("bad header: {e}"))
            }
        })?;
        let data_offset = bytes.len() - cursor.len();
        let type_str = match header.dtype() {
            DType::Plain(t) => t,
            other => {
                return Err(not_npy(format!(
                    "dtype {} is a structured or nested dtype; expected a plain numeric array",
                    other.descr()
                )));
            }
        };
        let elem = match (type_str.type_char(), type_str.size_field()) {
            (TypeChar::Bool, 1) => Elem::Bool,
            (TypeChar::Uint, 1) => Elem::U8,
            (TypeChar::Uint, 2) => Elem::U16,
            (TypeChar::Uint, 4) => Elem::U32,
            (TypeChar::Uint, 8) => Elem::U64,
            (TypeChar::Int, 1) => Elem::I8,
            (TypeChar::Int, 2) => Elem::I16,
            (TypeChar::Int, 4) => Elem::I32,
            (TypeChar::Int, 8) => Elem::I64,
            (TypeChar::Float, 4) => Elem::F32,
            (TypeChar::Float, 8) => Elem::F64,
            _ => {
                return Err(not_npy(format!(
                    "dtype {type_str} is not supported; expected one of uint8/16/32/64, int8/16/32/64, float32, float64"
                )));
            }
        };
        let shape = header.shape().to_vec();
        if header.order() == Order::Fortran && shape.iter().filter(|&&d| d > 1).count() > 1 {
            return Err(not_npy(
                "the array is stored in Fortran order; save it with np.save(path, np.ascontiguousarray(a))".into(),
            ));
        }
        let count = shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&c| usize::try_from(c).is_ok())
            .ok_or_else(|| {
                not_npy(format!(
                    "its header's shape {shape:?} holds more values than any file can (the product overflows 64 bits): a corrupt or hand-made header"
                ))
            })?;
        let expected = count.saturating_mul(elem.size() as u64);
        let found = cursor.len() as u64;
        if found < expected {
            return Err(DatasetError::Truncated {
                path: path.to_path_buf(),
                expected,
                found,
            });
        }
        Ok(RawNpy {
            path: path.to_path_buf(),
            elem,
            little_endian: type_str.endianness() != Endianness::Big,
            shape,
            bytes,
            data_offset,
            len: count as usize,
        })
    }

    fn data(&self) -> &[u8] {
        &self.bytes[self.data_offset..self.data_offset + self.len * self.elem.size()]
    }

    /// Every element in file order, decoded once for all dtypes.
    fn for_each_scalar(&self, mut f: impl FnMut(usize, Scalar)) {
        let data = self.data();
        let le = self.little_endian;
        macro_rules! decode {
            ($t:ty, $n:expr, $variant:ident, $conv:path) => {
                for (i, chunk) in data.chunks_exact($n).enumerate() {
                    let mut a = [0u8; $n];
                    a.copy_from_slice(chunk);
                    let v = if le {
                        <$t>::from_le_bytes(a)
                    } else {
                        <$t>::from_be_bytes(a)
                    };
                    f(i, Scalar::$variant($conv(v)));
                }
            };
        }
        match self.elem {
            Elem::Bool => data
                .iter()
                .enumerate()
                .for_each(|(i, &b)| f(i, Scalar::Bool(b != 0))),
            Elem::U8 => data
                .iter()
                .enumerate()
                .for_each(|(i, &b)| f(i, Scalar::Int(i128::from(b)))),
            Elem::I8 => data
                .iter()
                .enumerate()
                .for_each(|(i, &b)| f(i, Scalar::Int(i128::from(b as i8)))),
            Elem::U16 => decode!(u16, 2, Int, i128::from),
            Elem::I16 => decode!(i16, 2, Int, i128::from),
            Elem::U32 => decode!(u32, 4, Int, i128::from),
            Elem::I32 => decode!(i32, 4, Int, i128::from),
            Elem::U64 => decode!(u64, 8, Int, i128::from),
            Elem::I64 => decode!(i64, 8, Int, i128::from),
            Elem::F32 => decode!(f32, 4, Float, f64::from),
            Elem::F64 => decode!(f64, 8, Float, std::convert::identity),
        }
    }

    /// Every element as f64 (exact for all but 64-bit integers beyond 2^53).
    fn for_each_f64(&self, mut f: impl FnMut(usize, f64)) {
        self.for_each_scalar(|i, v| {
            f(
                i,
                match v {
                    Scalar::Bool(b) => f64::from(u8::from(b)),
                    Scalar::Int(v) => v as f64,
                    Scalar::Float(v) => v,
                },
            )
        })
    }

    /// Integer elements, exactly, as i128 (only for integer dtypes).
    fn for_each_int(&self, mut f: impl FnMut(usize, i128)) {
        self.for_each_scalar(|i, v| {
            if let Scalar::Int(v) = v {
                f(i, v)
            }
        })
    }

    fn dtype_error(&self, role: &'static str, expected: &str) -> DatasetError {
        DatasetError::Dtype {
            path: self.path.clone(),
            role,
            found: self.elem.name().to_string(),
            expected: expected.to_string(),
        }
    }

    fn shape_error(&self, role: &'static str, expected: &str) -> DatasetError {
        DatasetError::Shape {
            path: self.path.clone(),
            role,
            found: self.shape.clone(),
            expected: expected.to_string(),
        }
    }
}

/// How float pixel values map to bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageRange {
    /// Decide from the values: max ≤ 1 means [0, 1], a max well above 1 means [0, 255];
    /// values that fit both (only 0s and 1s, or a max between 1 and 2) are refused.
    #[default]
    Auto,
    /// Pixels are in [0, 1]: byte = round(255·v).
    Unit,
    /// Pixels are in [0, 255]: byte = round(v).
    Byte,
}

impl std::str::FromStr for ImageRange {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(ImageRange::Auto),
            "unit" => Ok(ImageRange::Unit),
            "byte" => Ok(ImageRange::Byte),
            other => Err(format!(
                "image range {other:?}: expected auto, unit or byte"
            )),
        }
    }
}

/// The memory layout of an image array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PixelLayout {
    Hwc,
    Chw,
}

const IMAGE_SHAPES: &str = "N×32×32×3 (HWC) or N×3×32×32 (CHW)";

/// Reads images (u8, f32 or f64; N×32×32×3 or N×3×32×32) into compact u8 HWC.
pub(crate) fn read_images(path: &Path, range: ImageRange) -> Result<Vec<u8>> {
    let raw = RawNpy::read(path)?;
    images_from_raw(&raw, range)
}

pub(crate) fn images_from_raw(raw: &RawNpy, range: ImageRange) -> Result<Vec<u8>> {
    let s = IMAGE_SIZE as u64;
    let c = CHANNELS as u64;
    let layout = match raw.shape.as_slice() {
        [_, h, w, ch] if *h == s && *w == s && *ch == c => PixelLayout::Hwc,
        [_, ch, h, w] if *h == s && *w == s && *ch == c => PixelLayout::Chw,
        [_, flat] if *flat == (IMAGE_BYTES as u64) => {
            return Err(raw.shape_error(
                "images",
                &format!(
                    "{IMAGE_SHAPES}; flat rows of 3072 values are ambiguous (HWC or CHW order), reshape them first"
                ),
            ));
        }
        _ => return Err(raw.shape_error("images", IMAGE_SHAPES)),
    };
    let n = raw.shape[0] as usize;
    let mut out = vec![0u8; n * IMAGE_BYTES];
    match raw.elem {
        Elem::U8 => {
            let data = raw.data();
            match layout {
                PixelLayout::Hwc => out.copy_from_slice(data),
                PixelLayout::Chw => {
                    for (dst, src) in out
                        .chunks_exact_mut(IMAGE_BYTES)
                        .zip(data.chunks_exact(IMAGE_BYTES))
                    {
                        chw_to_hwc(src, dst);
                    }
                }
            }
        }
        Elem::F32 | Elem::F64 => {
            let scale = float_scale(raw, range)?;
            let plane = IMAGE_SIZE * IMAGE_SIZE;
            raw.for_each_f64(|i, v| {
                let byte = (v * scale).round().clamp(0.0, 255.0) as u8;
                let dst = match layout {
                    PixelLayout::Hwc => i,
                    PixelLayout::Chw => {
                        let img = i / IMAGE_BYTES;
                        let r = i % IMAGE_BYTES;
                        let (ch, p) = (r / plane, r % plane);
                        img * IMAGE_BYTES + p * CHANNELS + ch
                    }
                };
                out[dst] = byte;
            });
        }
        _ => return Err(raw.dtype_error("images", "uint8, float32 or float64")),
    }
    Ok(out)
}

/// Converts one CHW image (3 planes of 32×32) to HWC.
pub(crate) fn chw_to_hwc(src: &[u8], dst: &mut [u8]) {
    let plane = IMAGE_SIZE * IMAGE_SIZE;
    for p in 0..plane {
        for ch in 0..CHANNELS {
            dst[p * CHANNELS + ch] = src[ch * plane + p];
        }
    }
}

/// Decides the multiplier that turns float pixels into [0, 255].
fn float_scale(raw: &RawNpy, range: ImageRange) -> Result<f64> {
    let mut min = f64::INFINITY;
    let mut max = f64::NEG_INFINITY;
    let mut non_finite: Option<usize> = None;
    let mut only_zero_one = true;
    raw.for_each_f64(|i, v| {
        if !v.is_finite() {
            non_finite.get_or_insert(i);
            return;
        }
        min = min.min(v);
        max = max.max(v);
        if v != 0.0 && v != 1.0 {
            only_zero_one = false;
        }
    });
    let pixel_error = |problem: String| DatasetError::PixelRange {
        path: raw.path.clone(),
        problem,
    };
    if let Some(i) = non_finite {
        return Err(pixel_error(format!(
            "image value at flat position {i} is NaN or infinite; expected pixels in [0,1] or [0,255]"
        )));
    }
    if raw.len == 0 {
        return Ok(255.0);
    }
    if min < 0.0 {
        return Err(pixel_error(format!(
            "smallest pixel value is {min}, below 0: these look like normalised images; expected raw pixels in [0,1] or [0,255]"
        )));
    }
    const TOL: f64 = 1e-6;
    match range {
        ImageRange::Unit if max > 1.0 + TOL => Err(pixel_error(format!(
            "largest pixel value is {max}, but the image range was given as unit ([0,1])"
        ))),
        ImageRange::Unit => Ok(255.0),
        ImageRange::Byte | ImageRange::Auto if max > 255.0 + TOL => Err(pixel_error(format!(
            "largest pixel value is {max}, above 255; expected pixels in [0,1] or [0,255]"
        ))),
        ImageRange::Byte => Ok(1.0),
        ImageRange::Auto => {
            if max <= 1.0 + TOL {
                if only_zero_one && max > 0.0 {
                    Err(DatasetError::AmbiguousRange {
                        path: raw.path.clone(),
                        reason: "every value is exactly 0 or 1".into(),
                    })
                } else {
                    Ok(255.0)
                }
            } else if max < 2.0 {
                Err(DatasetError::AmbiguousRange {
                    path: raw.path.clone(),
                    reason: format!(
                        "the largest value is {max}: above 1, so not [0,1], but far too dark to be [0,255] images"
                    ),
                })
            } else {
                Ok(1.0)
            }
        }
    }
}

/// Rows of a label-like 1-D array: shape (N,) or (N, 1).
fn one_per_row(raw: &RawNpy, role: &'static str) -> Result<usize> {
    match raw.shape.as_slice() {
        [n] | [n, 1] => Ok(*n as usize),
        _ => Err(raw.shape_error(role, "(N,) or (N, 1): one value per image")),
    }
}

/// Reads hard labels (uint/int of any width, or whole-number float32/float64) and checks
/// each lies in `0..classes`.
pub(crate) fn read_labels(path: &Path, classes: usize) -> Result<Vec<u32>> {
    let raw = RawNpy::read(path)?;
    let n = one_per_row(&raw, "labels")?;
    if raw.elem == Elem::Bool {
        return Err(raw.dtype_error(
            "labels",
            "an integer type (uint8, int32, int64, ...) or float32/float64 holding whole numbers",
        ));
    }
    let mut labels = Vec::with_capacity(n);
    let mut bad: Option<(usize, f64)> = None;
    raw.for_each_f64(|i, v| {
        if bad.is_some() {
            return;
        }
        if v.is_finite() && v.fract() == 0.0 && v >= 0.0 && v < classes as f64 {
            labels.push(v as u32);
        } else {
            bad = Some((i, v));
        }
    });
    if let Some((row, value)) = bad {
        return Err(DatasetError::LabelOutOfRange {
            path: path.to_path_buf(),
            row,
            value: value.to_string(),
            classes,
        });
    }
    Ok(labels)
}

/// Checks one human-label row; `None` when it is a probability distribution.
pub(crate) fn human_row_problem(row: &[f64]) -> Option<String> {
    if let Some(j) = row.iter().position(|v| !v.is_finite()) {
        return Some(format!("has a NaN or infinite value in class {j}"));
    }
    if let Some(j) = row.iter().position(|&v| v < 0.0) {
        return Some(format!(
            "is negative in class {j} ({}); expected probabilities ≥ 0",
            row[j]
        ));
    }
    let sum: f64 = row.iter().sum();
    if (sum - 1.0).abs() > HUMAN_SUM_TOLERANCE {
        return Some(format!(
            "sums to {sum}, expected 1 (±{HUMAN_SUM_TOLERANCE}); human labels must be probability distributions"
        ));
    }
    None
}

/// How far a human-label row may sum away from 1.
pub const HUMAN_SUM_TOLERANCE: f64 = 1e-3;

/// Reads human label distributions: float32/float64 N×classes rows that are probability
/// distributions, or integer N×classes vote counts (normalised by their row sums).
pub(crate) fn read_human(path: &Path, classes: usize) -> Result<Vec<f64>> {
    let raw = RawNpy::read(path)?;
    let expected = format!("N×{classes}: one distribution over the {classes} classes per image");
    let n = match raw.shape.as_slice() {
        [n, c] if *c as usize == classes => *n as usize,
        _ => return Err(raw.shape_error("human labels", &expected)),
    };
    if raw.elem == Elem::Bool {
        return Err(raw.dtype_error(
            "human labels",
            "float32 or float64 probabilities (or integer vote counts)",
        ));
    }
    let mut values = vec![0f64; n * classes];
    raw.for_each_f64(|i, v| values[i] = v);
    if raw.elem.is_integer() {
        for (row, chunk) in values.chunks_exact_mut(classes).enumerate() {
            if let Some(j) = chunk.iter().position(|&v| v < 0.0) {
                return Err(DatasetError::BadHumanRow {
                    path: path.to_path_buf(),
                    row,
                    problem: format!("has a negative vote count in class {j}"),
                });
            }
            let sum: f64 = chunk.iter().sum();
            if sum <= 0.0 {
                return Err(DatasetError::BadHumanRow {
                    path: path.to_path_buf(),
                    row,
                    problem: "has no votes (integer arrays are read as vote counts and need at least one per row)".into(),
                });
            }
            chunk.iter_mut().for_each(|v| *v /= sum);
        }
    } else {
        debug_assert!(raw.elem.is_float());
        for (row, chunk) in values.chunks_exact(classes).enumerate() {
            if let Some(problem) = human_row_problem(chunk) {
                return Err(DatasetError::BadHumanRow {
                    path: path.to_path_buf(),
                    row,
                    problem,
                });
            }
        }
    }
    Ok(values)
}

/// Reads integer ids or row indices: shape (N,) or (N, 1), any integer dtype.
pub(crate) fn read_ids(path: &Path, role: &'static str) -> Result<Vec<i64>> {
    let raw = RawNpy::read(path)?;
    let n = one_per_row(&raw, role)?;
    if !raw.elem.is_integer() {
        return Err(raw.dtype_error(role, "an integer type (uint8..uint64, int8..int64)"));
    }
    let mut ids = Vec::with_capacity(n);
    let mut overflow = None;
    raw.for_each_int(|i, v| match i64::try_from(v) {
        Ok(v) => ids.push(v),
        Err(_) => {
            overflow.get_or_insert(i);
        }
    });
    if let Some(i) = overflow {
        return Err(raw.shape_error(role, &format!("values that fit int64 (row {i} does not)")));
    }
    Ok(ids)
}

/// A temporary file beside `path`, to be renamed onto it: `.hkd-*.tmp` (what hkd-train
/// tidies after a kill), created 0666 minus the umask like any other tool's output.
pub(crate) fn temp_file_beside(path: &Path) -> Result<tempfile::NamedTempFile> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    tempfile::Builder::new()
        .prefix(".hkd-")
        .suffix(".tmp")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(|e| DatasetError::io(dir, "create temporary file in", e))
}

/// Writes an array atomically (temp file in the same directory, then rename).
pub(crate) fn write_npy<T: npyz::AutoSerialize + Copy>(
    path: &Path,
    shape: &[u64],
    data: &[T],
) -> Result<()> {
    let tmp = temp_file_beside(path)?;
    {
        let mut buf = BufWriter::new(tmp.as_file());
        let io_err = |e: std::io::Error| DatasetError::io(path, "write", e);
        let mut writer = npyz::WriteOptions::<T>::new()
            .default_dtype()
            .shape(shape)
            .writer(&mut buf)
            .begin_nd()
            .map_err(io_err)?;
        writer.extend(data.iter().copied()).map_err(io_err)?;
        writer.finish().map_err(io_err)?;
        buf.flush().map_err(io_err)?;
    }
    tmp.persist(path)
        .map_err(|e| DatasetError::io(path, "rename temporary file onto", e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy_bytes(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while !(10 + header.len() + 1).is_multiple_of(64) {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn big_endian_int32_labels_decode() {
        let data: Vec<u8> = [3i32, 9, 0].iter().flat_map(|v| v.to_be_bytes()).collect();
        let raw = RawNpy::from_bytes(Path::new("x.npy"), npy_bytes(">i4", "(3,)", &data)).unwrap();
        let mut got = vec![];
        raw.for_each_f64(|_, v| got.push(v));
        assert_eq!(got, vec![3.0, 9.0, 0.0]);
    }

    #[test]
    fn truncated_data_is_reported_with_byte_counts() {
        let err = RawNpy::from_bytes(Path::new("t.npy"), npy_bytes("<f8", "(4,)", &[0u8; 20]))
            .err()
            .unwrap();
        assert!(
            matches!(
                err,
                DatasetError::Truncated {
                    expected: 32,
                    found: 20,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn structured_dtype_is_refused() {
        let mut header =
            "{'descr': [('a', '<i4')], 'fortran_order': False, 'shape': (1,), }".to_string();
        while !(10 + header.len() + 1).is_multiple_of(64) {
            header.push(' ');
        }
        header.push('\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&[0; 4]);
        let err = RawNpy::from_bytes(Path::new("s.npy"), bytes).err().unwrap();
        assert!(err.to_string().contains("structured"), "{err}");
    }
}
