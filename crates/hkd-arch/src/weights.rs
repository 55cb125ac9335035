//! Reading weight files: safetensors, PyTorch zip checkpoints (`torch.save` since 1.6) and
//! the legacy non-zip format of PyTorch < 1.6 (which the original project's PyTorch 1.4
//! wrote). Candle's own pickle reader handles only the zip format and returns nothing for
//! a nested dict, so this reader is ours.
//!
//! Legacy layout: pickle(magic number), pickle(protocol version 1001), pickle(sys_info),
//! the main pickle (tensors refer to storages by persistent id), pickle(list of storage
//! keys), then per key: an 8-byte little-endian element count and the raw elements.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::error::ArchError;
use crate::network::{StateDict, strip_module_prefix};
use hkd_pickle::{StorageDtype, StorageRef, TensorRef, Value, dict_get, dict_keys, unpickle};

type Result<T> = std::result::Result<T, ArchError>;

/// Keys under which training checkpoints keep the model's state_dict, in the order tried.
pub const STATE_DICT_KEYS: &[&str] = &["model_state_dict", "state_dict", "model"];

/// The file formats [`read_weights`] recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsFormat {
    /// Hugging Face safetensors.
    Safetensors,
    /// `torch.save` zip archive (PyTorch >= 1.6).
    TorchZip,
    /// `torch.save` legacy stream (PyTorch < 1.6).
    TorchLegacy,
}

/// The legacy format's magic number 0x1950a86a20f9469cfc6c as LONG1 bytes.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

fn format_error(path: &Path, reason: impl Into<String>) -> ArchError {
    ArchError::WeightsFormat {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Recognises the format from the first bytes.
pub fn detect_format(path: &Path, bytes: &[u8]) -> Result<WeightsFormat> {
    if bytes.starts_with(b"PK\x03\x04") {
        return Ok(WeightsFormat::TorchZip);
    }
    if bytes.len() >= 2 && bytes[0] == 0x80 && bytes[1] <= 5 {
        return Ok(WeightsFormat::TorchLegacy);
    }
    if bytes.len() >= 10 {
        let mut n = [0u8; 8];
        n.copy_from_slice(&bytes[..8]);
        let n = u64::from_le_bytes(n);
        if n >= 2 && n.saturating_add(8) <= bytes.len() as u64 && bytes[8] == b'{' {
            return Ok(WeightsFormat::Safetensors);
        }
    }
    if bytes.len() > 262 && &bytes[257..262] == b"ustar" {
        return Err(format_error(
            path,
            "this is a tar archive (PyTorch's pre-0.4 checkpoint format), which is not supported; \
             load it in PyTorch and re-save it with torch.save",
        ));
    }
    let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Err(format_error(
        path,
        format!(
            "{} bytes starting with [{}]: neither safetensors (8-byte header length, then '{{'), \
             a PyTorch zip checkpoint (starts with PK) nor a legacy PyTorch checkpoint (pickle, starts with 0x80)",
            bytes.len(),
            head.join(" ")
        ),
    ))
}

/// Reads a weights file of any supported format into (name, tensor) pairs on `device`.
/// From a checkpoint dict the state_dict under `model_state_dict`, `state_dict` or `model`
/// is taken (or the dict itself if it maps names to tensors); DataParallel's `module.`
/// prefix is stripped. Safetensors files come back sorted by name; checkpoints keep
/// their order.
pub fn read_weights(path: &Path, device: &Device) -> Result<StateDict> {
    let bytes = std::fs::read(path).map_err(|source| ArchError::Io {
        action: "reading",
        path: path.to_path_buf(),
        source,
    })?;
    let sd = match detect_format(path, &bytes)? {
        WeightsFormat::Safetensors => {
            let map = candle_core::safetensors::load_buffer(&bytes, device)
                .map_err(|e| format_error(path, format!("invalid safetensors: {e}")))?;
            let mut v: Vec<(String, Tensor)> = map.into_iter().collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        }
        WeightsFormat::TorchZip => read_torch_zip(path, &bytes, device)?,
        WeightsFormat::TorchLegacy => read_torch_legacy(path, &bytes, device)?,
    };
    Ok(sd
        .into_iter()
        .map(|(n, t)| (strip_module_prefix(&n).to_string(), t))
        .collect())
}

fn pickle_error(path: &Path, part: &str, e: hkd_pickle::PickleError) -> ArchError {
    ArchError::Pickle {
        path: path.to_path_buf(),
        part: part.to_string(),
        offset: e.offset,
        reason: e.reason,
    }
}

/// Finds the state dict in the unpickled top-level object.
fn find_state_dict(path: &Path, top: &Value) -> Result<Vec<(String, TensorRef)>> {
    fn tensors_of(d: &Value) -> Option<Vec<(String, TensorRef)>> {
        let Value::Dict(items) = d else { return None };
        let items = items.borrow();
        let mut out = Vec::new();
        for (k, v) in items.iter() {
            if let (Value::Str(k), Value::Tensor(t)) = (k, v) {
                out.push((k.clone(), (**t).clone()));
            }
        }
        (!out.is_empty()).then_some(out)
    }
    let no_sd = |reason: String| ArchError::NoStateDict {
        path: path.to_path_buf(),
        keys: dict_keys(top),
        reason,
    };
    if !matches!(top, Value::Dict(_)) {
        return Err(no_sd(format!(
            "the pickled object is a {}",
            top.type_name()
        )));
    }
    for key in STATE_DICT_KEYS {
        if let Some(v) = dict_get(top, key) {
            return match tensors_of(&v) {
                Some(t) => Ok(t),
                None => Err(no_sd(format!(
                    "`{key}` holds a {} without tensors{}",
                    v.type_name(),
                    if matches!(v, Value::Object(_)) {
                        " (a pickled module? save model.state_dict() instead)"
                    } else {
                        ""
                    }
                ))),
            };
        }
    }
    tensors_of(top).ok_or_else(|| no_sd("the top-level dict holds no tensors".into()))
}

/// Copies a (possibly strided) tensor out of its storage bytes and builds a candle tensor.
fn materialize(
    path: &Path,
    name: &str,
    t: &TensorRef,
    storage: &[u8],
    device: &Device,
) -> Result<Tensor> {
    let es = t.storage.dtype.size();
    let numel: usize = t.size.iter().product();
    let base = t.storage.view_offset + t.offset;
    // Highest element index touched.
    let max_index = if numel == 0 {
        0
    } else {
        base + t
            .size
            .iter()
            .zip(&t.stride)
            .map(|(s, st)| (s - 1) * st)
            .sum::<usize>()
    };
    if numel > 0 && (max_index + 1) * es > storage.len() {
        return Err(format_error(
            path,
            format!(
                "tensor `{name}` (size {:?}, stride {:?}, offset {}) reaches past its storage `{}` of {} bytes",
                t.size,
                t.stride,
                base,
                t.storage.key,
                storage.len()
            ),
        ));
    }
    let mut contiguous = true;
    let mut expected = 1;
    for (s, st) in t.size.iter().zip(&t.stride).rev() {
        if *s != 1 && *st != expected {
            contiguous = false;
        }
        expected *= s;
    }
    let bytes: Vec<u8> = if contiguous {
        storage[base * es..(base + numel) * es].to_vec()
    } else {
        let mut out = Vec::with_capacity(numel * es);
        let mut idx = vec![0usize; t.size.len()];
        for _ in 0..numel {
            let off = base + idx.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
            out.extend_from_slice(&storage[off * es..(off + 1) * es]);
            for d in (0..idx.len()).rev() {
                idx[d] += 1;
                if idx[d] < t.size[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        out
    };
    let shape = t.size.as_slice();
    let tensor = match t.storage.dtype {
        StorageDtype::F64 => Tensor::from_raw_buffer(&bytes, DType::F64, shape, device)?,
        StorageDtype::F32 => Tensor::from_raw_buffer(&bytes, DType::F32, shape, device)?,
        StorageDtype::F16 => Tensor::from_raw_buffer(&bytes, DType::F16, shape, device)?,
        StorageDtype::BF16 => Tensor::from_raw_buffer(&bytes, DType::BF16, shape, device)?,
        StorageDtype::I64 => Tensor::from_raw_buffer(&bytes, DType::I64, shape, device)?,
        StorageDtype::U8 | StorageDtype::Bool => {
            Tensor::from_raw_buffer(&bytes, DType::U8, shape, device)?
        }
        StorageDtype::I32 => {
            let v: Vec<i64> = bytes
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                .collect();
            Tensor::from_vec(v, shape, device)?
        }
        StorageDtype::I16 => {
            let v: Vec<i64> = bytes
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]) as i64)
                .collect();
            Tensor::from_vec(v, shape, device)?
        }
        StorageDtype::I8 => {
            let v: Vec<i64> = bytes.iter().map(|&b| b as i8 as i64).collect();
            Tensor::from_vec(v, shape, device)?
        }
    };
    Ok(tensor)
}

/// Reads a `torch.save` zip archive: `<prefix>/data.pkl` and `<prefix>/data/<key>`.
fn read_torch_zip(path: &Path, bytes: &[u8], device: &Device) -> Result<StateDict> {
    let zerr = |e: zip::result::ZipError| format_error(path, format!("invalid zip archive: {e}"));
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(zerr)?;
    let names: Vec<String> = archive
        .file_names()
        .map(|n| n.map(|n| n.into_owned()))
        .collect::<std::result::Result<_, _>>()
        .map_err(zerr)?;
    let pkl = names
        .iter()
        .filter(|n| n.ends_with("data.pkl"))
        .min_by_key(|n| n.len())
        .cloned()
        .ok_or_else(|| {
            format_error(
                path,
                "a zip archive without `data.pkl`: not a PyTorch checkpoint",
            )
        })?;
    let prefix = pkl.strip_suffix("data.pkl").unwrap_or("").to_string();
    let mut read_entry = |name: &str| -> Result<Vec<u8>> {
        let mut f = archive.by_name(name).map_err(|e| {
            format_error(path, format!("checkpoint entry `{name}` unreadable: {e}"))
        })?;
        let mut buf = Vec::with_capacity(f.size() as usize);
        f.read_to_end(&mut buf).map_err(|source| ArchError::Io {
            action: "reading zip entry of",
            path: path.to_path_buf(),
            source,
        })?;
        Ok(buf)
    };
    let byteorder_name = format!("{prefix}byteorder");
    if names.contains(&byteorder_name) {
        let bo = read_entry(&byteorder_name)?;
        if bo.trim_ascii() != b"little" {
            return Err(format_error(
                path,
                format!(
                    "byte order `{}` is not supported (only little-endian)",
                    String::from_utf8_lossy(&bo)
                ),
            ));
        }
    }
    let pkl_bytes = read_entry(&pkl)?;
    let mut storages = HashMap::new();
    let (top, _) =
        unpickle(&pkl_bytes, 0, &mut storages).map_err(|e| pickle_error(path, &pkl, e))?;
    let tensors = find_state_dict(path, &top)?;
    let mut cache: HashMap<String, Vec<u8>> = HashMap::new();
    let mut out = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let key = &t.storage.key;
        if !cache.contains_key(key) {
            let data = read_entry(&format!("{prefix}data/{key}"))?;
            cache.insert(key.clone(), data);
        }
        let tensor = materialize(path, &name, &t, &cache[key], device)?;
        out.push((name, tensor));
    }
    Ok(out)
}

/// Reads the legacy (PyTorch < 1.6) stream format.
fn read_torch_legacy(path: &Path, bytes: &[u8], device: &Device) -> Result<StateDict> {
    let mut scratch = HashMap::new();
    let (magic, pos) =
        unpickle(bytes, 0, &mut scratch).map_err(|e| pickle_error(path, "magic number", e))?;
    match &magic {
        Value::BigInt(b) if *b == LEGACY_MAGIC => {}
        other => {
            return Err(format_error(
                path,
                format!(
                    "starts with a pickle ({}) but not with PyTorch's magic number: a plain pickle, not a checkpoint",
                    other.type_name()
                ),
            ));
        }
    }
    let (version, pos) = unpickle(bytes, pos, &mut scratch)
        .map_err(|e| pickle_error(path, "protocol version", e))?;
    if !matches!(version, Value::Int(1001)) {
        return Err(format_error(
            path,
            format!(
                "legacy protocol version {}, expected 1001",
                match &version {
                    Value::Int(i) => i.to_string(),
                    other => format!("a {}", other.type_name()),
                }
            ),
        ));
    }
    let (sys_info, pos) =
        unpickle(bytes, pos, &mut scratch).map_err(|e| pickle_error(path, "sys_info", e))?;
    if let Some(Value::Bool(false)) = dict_get(&sys_info, "little_endian") {
        return Err(format_error(
            path,
            "written on a big-endian machine; only little-endian checkpoints are supported",
        ));
    }
    let mut storages: HashMap<String, StorageRef> = HashMap::new();
    let main_start = pos;
    let (top, pos) = unpickle(bytes, pos, &mut storages).map_err(|e| {
        let mut e = e;
        e.offset += main_start;
        pickle_error(path, "main pickle (offset from file start)", e)
    })?;
    let (keys, mut pos) = unpickle(bytes, pos, &mut scratch)
        .map_err(|e| pickle_error(path, "storage key list", e))?;
    let keys: Vec<String> = match &keys {
        Value::List(l) => l
            .borrow()
            .iter()
            .map(|k| match k {
                Value::Str(s) => Ok(s.clone()),
                Value::Int(i) => Ok(i.to_string()),
                other => Err(format_error(
                    path,
                    format!("storage key is a {}", other.type_name()),
                )),
            })
            .collect::<Result<_>>()?,
        other => {
            return Err(format_error(
                path,
                format!("storage key list is a {}", other.type_name()),
            ));
        }
    };
    let mut data: HashMap<String, Vec<u8>> = HashMap::new();
    for key in &keys {
        let Some(s) = storages.get(key) else {
            return Err(format_error(
                path,
                format!(
                    "storage `{key}` is listed but no tensor refers to it; its element size is unknown"
                ),
            ));
        };
        if bytes.len() < pos + 8 {
            return Err(format_error(
                path,
                format!("truncated: storage `{key}` has no size record at byte {pos}"),
            ));
        }
        let mut n = [0u8; 8];
        n.copy_from_slice(&bytes[pos..pos + 8]);
        let numel = u64::from_le_bytes(n) as usize;
        pos += 8;
        let len = numel
            .checked_mul(s.dtype.size())
            .filter(|l| pos + l <= bytes.len())
            .ok_or_else(|| {
                format_error(
                    path,
                    format!(
                        "truncated: storage `{key}` declares {numel} elements at byte {pos}, beyond the end of the file ({} bytes)",
                        bytes.len()
                    ),
                )
            })?;
        data.insert(key.clone(), bytes[pos..pos + len].to_vec());
        pos += len;
    }
    let tensors = find_state_dict(path, &top)?;
    let mut out = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let storage = data.get(&t.storage.key).ok_or_else(|| {
            format_error(
                path,
                format!(
                    "tensor `{name}` refers to storage `{}` which the file does not contain",
                    t.storage.key
                ),
            )
        })?;
        out.push((name.clone(), materialize(path, &name, &t, storage, device)?));
    }
    Ok(out)
}
