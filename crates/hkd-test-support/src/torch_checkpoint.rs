//! PyTorch checkpoints written by the tests themselves, pickled as `torch.save` pickles
//! them (Python 3's `pickle` at protocol 2; checked against `torch.load` of PyTorch 2.15,
//! with `weights_only` both true and false), in both of its formats:
//!
//! - [`TorchFormat::Zip`] (PyTorch >= 1.6): a zip archive of stored entries, 64-byte aligned,
//!   named after the file's stem: `<stem>/data.pkl`, `.format_version`,
//!   `.storage_alignment`, `byteorder` (`little`), `data/<key>` (the raw little-endian
//!   storages, keys `0`, `1`, …), `version` (`3\n`), `.data/serialization_id`.
//! - [`TorchFormat::Legacy`] (PyTorch < 1.6, `_use_new_zipfile_serialization=False`): the
//!   pickled magic number 0x1950a86a20f9469cfc6c, protocol version 1001 and sys_info,
//!   the main pickle (storages as persistent ids `('storage', torch.FloatStorage, key,
//!   'cpu', numel, None)`, keys like the storage addresses PyTorch uses), the pickled
//!   sorted list of the keys, then per key its element count (u64 LE) and raw bytes.
//!
//! A state dict is a `collections.OrderedDict` of name ->
//! `torch._utils._rebuild_tensor_v2(storage, 0, shape, contiguous stride, False,
//! OrderedDict())`, with the `_metadata` attribute `Module.state_dict()` gives it (the
//! module prefixes of the names, version 2 for batch norms, i.e. modules with a
//! `running_mean`, else 1). For example RepDistiller's `ckpt_epoch_240.pth`:
//!
//! ```no_run
//! use hkd_test_support::torch_checkpoint::{PyValue, TorchFormat, TorchTensor, write_torch_checkpoint};
//! let model = vec![TorchTensor::f32("fc.bias", vec![2], vec![0.5, -0.5])];
//! write_torch_checkpoint(
//!     std::path::Path::new("/tmp/ckpt_epoch_240.pth"),
//!     &[
//!         ("epoch", PyValue::Int(240)),
//!         ("model", PyValue::StateDict(&model)),
//!         ("accuracy", PyValue::Float(73.33)),
//!         ("optimizer", PyValue::None),
//!     ],
//!     TorchFormat::Zip,
//! );
//! ```

use std::io::Write;
use std::path::Path;

use crate::pickler::{self, Pickler};

/// Which of `torch.save`'s two formats to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TorchFormat {
    /// The zip archive of PyTorch >= 1.6.
    Zip,
    /// The legacy stream of PyTorch < 1.6.
    Legacy,
}

/// A tensor's elements: `torch.float32` (a `FloatStorage`) or `torch.int64` (a
/// `LongStorage`, e.g. `num_batches_tracked`).
#[derive(Debug, Clone, PartialEq)]
pub enum TensorValues {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

impl TensorValues {
    fn len(&self) -> usize {
        match self {
            TensorValues::F32(v) => v.len(),
            TensorValues::I64(v) => v.len(),
        }
    }

    fn storage_class(&self) -> &'static str {
        match self {
            TensorValues::F32(_) => "FloatStorage",
            TensorValues::I64(_) => "LongStorage",
        }
    }

    fn le_bytes(&self) -> Vec<u8> {
        match self {
            TensorValues::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorValues::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }
}

/// One entry of a state dict: a contiguous tensor with its own storage.
#[derive(Debug, Clone, PartialEq)]
pub struct TorchTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: TensorValues,
}

impl TorchTensor {
    pub fn f32(name: impl Into<String>, shape: Vec<usize>, values: Vec<f32>) -> TorchTensor {
        TorchTensor {
            name: name.into(),
            shape,
            values: TensorValues::F32(values),
        }
    }

    pub fn i64(name: impl Into<String>, shape: Vec<usize>, values: Vec<i64>) -> TorchTensor {
        TorchTensor {
            name: name.into(),
            shape,
            values: TensorValues::I64(values),
        }
    }
}

/// A value of the checkpoint's top-level dict.
#[derive(Debug, Clone, Copy)]
pub enum PyValue<'a> {
    /// A state dict (`model.state_dict()`).
    StateDict(&'a [TorchTensor]),
    /// An `int` (e.g. `epoch`).
    Int(i64),
    /// A `float` (e.g. `accuracy`, `best_acc`), pickled as BINFLOAT.
    Float(f64),
    Str(&'a str),
    Bool(bool),
    None,
}

/// Writes `{key: value, …}` (in the order given) to `path` as `torch.save` does in
/// `format`. Panics on a tensor whose element count is not its shape's product, and on
/// I/O errors (a test helper), naming the path.
pub fn write_torch_checkpoint(path: &Path, top: &[(&str, PyValue<'_>)], format: TorchFormat) {
    for (_, v) in top {
        if let PyValue::StateDict(tensors) = v {
            for t in tensors.iter() {
                let numel: usize = t.shape.iter().product();
                assert_eq!(
                    numel,
                    t.values.len(),
                    "tensor `{}` of shape {:?} has {} values",
                    t.name,
                    t.shape,
                    t.values.len()
                );
            }
        }
    }
    let bytes = match format {
        TorchFormat::Zip => zip_checkpoint(path, top),
        TorchFormat::Legacy => legacy_checkpoint(top),
    };
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// The tensors of all state dicts of `top`, in pickling order.
fn all_tensors<'a>(top: &[(&str, PyValue<'a>)]) -> Vec<&'a TorchTensor> {
    top.iter()
        .flat_map(|(_, v)| match v {
            PyValue::StateDict(t) => t.iter().collect(),
            _ => Vec::new(),
        })
        .collect()
}

/// The main pickle; `keys[i]` is the storage key of the i-th tensor of [`all_tensors`];
/// `legacy` adds the legacy format's view metadata (None) to the persistent ids.
fn main_pickle(top: &[(&str, PyValue<'_>)], keys: &[String], legacy: bool) -> Vec<u8> {
    let mut p = Pickler::python3();
    let mut next_key = keys.iter();
    p.op(pickler::EMPTY_DICT);
    p.put();
    p.set_items(top, |p, (key, value)| {
        p.unicode(key);
        match value {
            PyValue::StateDict(tensors) => state_dict(p, tensors, &mut next_key, legacy),
            PyValue::Int(i) => p.int(*i),
            PyValue::Float(f) => p.float(*f),
            PyValue::Str(s) => p.unicode(s),
            PyValue::Bool(b) => p.bool(*b),
            PyValue::None => p.op(pickler::NONE),
        }
    });
    p.finish()
}

/// `OrderedDict()` (REDUCE of the class with no arguments), memoized.
fn empty_ordered_dict(p: &mut Pickler) {
    p.global("collections", "OrderedDict");
    p.op(pickler::EMPTY_TUPLE);
    p.op(pickler::REDUCE);
    p.put();
}

fn state_dict<'k>(
    p: &mut Pickler,
    tensors: &[TorchTensor],
    keys: &mut impl Iterator<Item = &'k String>,
    legacy: bool,
) {
    empty_ordered_dict(p);
    p.set_items(tensors, |p, t| {
        let key = keys.next().expect("a storage key per tensor");
        p.unicode(&t.name);
        tensor(p, t, key, legacy);
    });
    // BUILD with the instance dict: {'_metadata': OrderedDict(prefix -> {'version': v})}
    let mut modules: Vec<(String, i64)> = Vec::new();
    let batch_norms: std::collections::HashSet<&str> = tensors
        .iter()
        .filter_map(|t| t.name.strip_suffix(".running_mean"))
        .collect();
    for t in tensors {
        let parts: Vec<&str> = t.name.split('.').collect();
        for depth in 0..parts.len() {
            let prefix = parts[..depth].join(".");
            if !modules.iter().any(|(m, _)| *m == prefix) {
                let version = if batch_norms.contains(prefix.as_str()) {
                    2
                } else {
                    1
                };
                modules.push((prefix, version));
            }
        }
    }
    p.op(pickler::EMPTY_DICT);
    p.put();
    p.set_items(&[()], |p, _| {
        p.unicode("_metadata");
        empty_ordered_dict(p);
        p.set_items(&modules, |p, (prefix, version)| {
            p.unicode(prefix);
            p.op(pickler::EMPTY_DICT);
            p.put();
            p.set_items(&[()], |p, _| {
                p.interned("version");
                p.int(*version);
            });
        });
    });
    p.op(pickler::BUILD);
}

/// `_rebuild_tensor_v2(storage, 0, shape, stride, False, OrderedDict())` with the storage
/// as a persistent id.
fn tensor(p: &mut Pickler, t: &TorchTensor, key: &str, legacy: bool) {
    p.global("torch._utils", "_rebuild_tensor_v2");
    p.tuple(6, |p| {
        p.tuple(if legacy { 6 } else { 5 }, |p| {
            p.interned("storage");
            p.global("torch", t.values.storage_class());
            p.unicode(key);
            p.interned("cpu");
            p.int(t.values.len() as i64);
            if legacy {
                p.op(pickler::NONE);
            }
        });
        p.op(pickler::BINPERSID);
        p.int(0);
        let mut stride = vec![1usize; t.shape.len()];
        for d in (0..t.shape.len().saturating_sub(1)).rev() {
            stride[d] = stride[d + 1] * t.shape[d + 1];
        }
        for dims in [&t.shape, &stride] {
            p.tuple(dims.len(), |p| {
                for &d in dims.iter() {
                    p.int(d as i64);
                }
            });
        }
        p.bool(false);
        empty_ordered_dict(p);
    });
    p.op(pickler::REDUCE);
    p.put();
}

fn zip_checkpoint(path: &Path, top: &[(&str, PyValue<'_>)]) -> Vec<u8> {
    let tensors = all_tensors(top);
    let keys: Vec<String> = (0..tensors.len()).map(|i| i.to_string()).collect();
    let pkl = main_pickle(top, &keys, false);
    let archive = path
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty())
        .unwrap_or("archive");
    // PyTorch's 40 random digits; here a hash of the pickle (the same file for the same
    // checkpoint)
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in &pkl {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let serialization_id = format!("{:020}{:020}", h, h.rotate_left(32));
    let mut entries: Vec<(String, Vec<u8>)> = vec![
        ("data.pkl".into(), pkl),
        (".format_version".into(), b"1".to_vec()),
        (".storage_alignment".into(), b"64".to_vec()),
        ("byteorder".into(), b"little".to_vec()),
    ];
    for (t, key) in tensors.iter().zip(&keys) {
        entries.push((format!("data/{key}"), t.values.le_bytes()));
    }
    entries.push(("version".into(), b"3\n".to_vec()));
    entries.push((
        ".data/serialization_id".into(),
        serialization_id.into_bytes(),
    ));
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .with_alignment(64);
    for (name, data) in entries {
        let name = format!("{archive}/{name}");
        zip.start_file(name.as_str(), options)
            .unwrap_or_else(|e| panic!("{}: zip entry {name}: {e}", path.display()));
        zip.write_all(&data)
            .unwrap_or_else(|e| panic!("{}: zip entry {name}: {e}", path.display()));
    }
    zip.finish()
        .unwrap_or_else(|e| panic!("{}: finishing the zip: {e}", path.display()))
        .into_inner()
}

/// The legacy format's magic number 0x1950a86a20f9469cfc6c, little-endian.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/// The storage key of the `i`-th tensor in the legacy format. PyTorch's keys are
/// `str(storage._cdata)`, addresses: distinct numbers whose (string) order is not the
/// pickling order, so a reader must follow the key list.
fn legacy_key(i: usize) -> String {
    let slot = (i as u64).wrapping_mul(2_654_435_761) % (1 << 20);
    (94_135_746_000_000 + slot * 16).to_string()
}

fn legacy_checkpoint(top: &[(&str, PyValue<'_>)]) -> Vec<u8> {
    let tensors = all_tensors(top);
    let keys: Vec<String> = (0..tensors.len()).map(legacy_key).collect();
    let mut out = Vec::new();
    let mut magic = Pickler::python3();
    magic.long1(&LEGACY_MAGIC);
    out.extend(magic.finish());
    let mut version = Pickler::python3();
    version.int(1001);
    out.extend(version.finish());
    let mut sys_info = Pickler::python3();
    sys_info.op(pickler::EMPTY_DICT);
    sys_info.put();
    sys_info.set_items(&[0, 1, 2], |p, &i| match i {
        0 => {
            p.unicode("protocol_version");
            p.int(1001);
        }
        1 => {
            p.unicode("little_endian");
            p.bool(true);
        }
        _ => {
            p.unicode("type_sizes");
            p.op(pickler::EMPTY_DICT);
            p.put();
            p.set_items(&[("short", 2), ("int", 4), ("long", 4)], |p, (k, v)| {
                p.unicode(k);
                p.int(*v);
            });
        }
    });
    out.extend(sys_info.finish());
    out.extend(main_pickle(top, &keys, true));
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by(|&a, &b| keys[a].cmp(&keys[b]));
    let mut key_list = Pickler::python3();
    key_list.op(pickler::EMPTY_LIST);
    key_list.put();
    key_list.appends(&order, |p, &i| p.unicode(&keys[i]));
    out.extend(key_list.finish());
    for i in order {
        let values = &tensors[i].values;
        out.extend((values.len() as u64).to_le_bytes());
        out.extend(values.le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `data.pkl` of `torch.save({"epoch": 240, "model": m.state_dict(), "accuracy": 73.33,
    /// "optimizer": None}, "small.pth")` under PyTorch 2.15, for `m = nn.Sequential(
    /// nn.Conv2d(1, 2, 1, bias=False), nn.BatchNorm2d(2), nn.Linear(2, 3))`.
    const TORCH_2_15: &[u8] =
        b"\x80\x02}q\x00(X\x05\x00\x00\x00epochq\x01K\xf0X\x05\x00\x00\x00modelq\x02ccollections\
      \x0aOrderedDict\x0aq\x03)Rq\x04(X\x08\x00\x00\x000.weightq\x05ctorch._utils\x0a_rebuil\
      d_tensor_v2\x0aq\x06((X\x07\x00\x00\x00storageq\x07ctorch\x0aFloatStorage\x0aq\x08X\
      \x01\x00\x00\x000q\x09X\x03\x00\x00\x00cpuq\x0aK\x02tq\x0bQK\x00(K\x02K\x01K\x01K\x01t\
      q\x0c(K\x01K\x01K\x01K\x01tq\x0d\x89h\x03)Rq\x0etq\x0fRq\x10X\x08\x00\x00\x001.weightq\
      \x11h\x06((h\x07h\x08X\x01\x00\x00\x001q\x12h\x0aK\x02tq\x13QK\x00K\x02\x85q\x14K\x01\
      \x85q\x15\x89h\x03)Rq\x16tq\x17Rq\x18X\x06\x00\x00\x001.biasq\x19h\x06((h\x07h\x08X\
      \x01\x00\x00\x002q\x1ah\x0aK\x02tq\x1bQK\x00K\x02\x85q\x1cK\x01\x85q\x1d\x89h\x03)Rq\
      \x1etq\x1fRq X\x0e\x00\x00\x001.running_meanq!h\x06((h\x07h\x08X\x01\x00\x00\x003q\x22\
      h\x0aK\x02tq#QK\x00K\x02\x85q$K\x01\x85q%\x89h\x03)Rq&tq'Rq(X\x0d\x00\x00\x001.running\
      _varq)h\x06((h\x07h\x08X\x01\x00\x00\x004q*h\x0aK\x02tq+QK\x00K\x02\x85q,K\x01\x85q-\
      \x89h\x03)Rq.tq/Rq0X\x15\x00\x00\x001.num_batches_trackedq1h\x06((h\x07ctorch\x0aLongS\
      torage\x0aq2X\x01\x00\x00\x005q3h\x0aK\x01tq4QK\x00))\x89h\x03)Rq5tq6Rq7X\x08\x00\x00\
      \x002.weightq8h\x06((h\x07h\x08X\x01\x00\x00\x006q9h\x0aK\x06tq:QK\x00K\x03K\x02\x86q;\
      K\x02K\x01\x86q<\x89h\x03)Rq=tq>Rq?X\x06\x00\x00\x002.biasq@h\x06((h\x07h\x08X\x01\x00\
      \x00\x007qAh\x0aK\x03tqBQK\x00K\x03\x85qCK\x01\x85qD\x89h\x03)RqEtqFRqGu}qHX\x09\x00\
      \x00\x00_metadataqIh\x03)RqJ(X\x00\x00\x00\x00qK}qLX\x07\x00\x00\x00versionqMK\x01sX\
      \x01\x00\x00\x000qN}qOhMK\x01sX\x01\x00\x00\x001qP}qQhMK\x02sX\x01\x00\x00\x002qR}qShM\
      K\x01susbX\x08\x00\x00\x00accuracyqTG@RU\x1e\xb8Q\xeb\x85X\x09\x00\x00\x00optimizerqUN\
      u.";

    fn small() -> Vec<TorchTensor> {
        vec![
            TorchTensor::f32("0.weight", vec![2, 1, 1, 1], vec![0.5, -0.5]),
            TorchTensor::f32("1.weight", vec![2], vec![1., 1.]),
            TorchTensor::f32("1.bias", vec![2], vec![0., 0.]),
            TorchTensor::f32("1.running_mean", vec![2], vec![0., 0.]),
            TorchTensor::f32("1.running_var", vec![2], vec![1., 1.]),
            TorchTensor::i64("1.num_batches_tracked", vec![], vec![0]),
            TorchTensor::f32("2.weight", vec![3, 2], vec![1., 2., 3., 4., 5., 6.]),
            TorchTensor::f32("2.bias", vec![3], vec![0.25; 3]),
        ]
    }

    fn write_small(dir: &Path, name: &str, format: TorchFormat) -> Vec<u8> {
        let model = small();
        let path = dir.join(name);
        write_torch_checkpoint(
            &path,
            &[
                ("epoch", PyValue::Int(240)),
                ("model", PyValue::StateDict(&model)),
                ("accuracy", PyValue::Float(73.33)),
                ("optimizer", PyValue::None),
            ],
            format,
        );
        std::fs::read(&path).unwrap()
    }

    #[test]
    fn the_zip_format_pickles_byte_for_byte_as_torch_save() {
        let dir = crate::Scratch::new(&std::env::temp_dir().to_string_lossy(), "torch-zip");
        let bytes = write_small(dir.path(), "small.pth", TorchFormat::Zip);
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        let names: Vec<String> = archive
            .file_names()
            .map(|n| n.unwrap().into_owned())
            .collect();
        let mut expected = vec![
            "data.pkl",
            ".format_version",
            ".storage_alignment",
            "byteorder",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        expected.extend((0..8).map(|i| format!("data/{i}")));
        expected.extend(["version".into(), ".data/serialization_id".into()]);
        let expected: Vec<String> = expected.iter().map(|n| format!("small/{n}")).collect();
        assert_eq!(names, expected);
        let mut read = |name: &str| {
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut archive.by_name(name).unwrap(), &mut data).unwrap();
            data
        };
        assert!(
            read("small/data.pkl") == TORCH_2_15,
            "data.pkl differs from torch.save's"
        );
        assert_eq!(read("small/version"), b"3\n");
        assert_eq!(read("small/byteorder"), b"little");
        assert_eq!(
            read("small/data/6"),
            [1f32, 2., 3., 4., 5., 6.].map(f32::to_le_bytes).concat()
        );
        assert_eq!(read("small/data/5"), 0i64.to_le_bytes());
    }

    #[test]
    fn the_legacy_format_has_its_header_pickles_key_list_and_records() {
        let dir = crate::Scratch::new(&std::env::temp_dir().to_string_lossy(), "torch-legacy");
        let bytes = write_small(dir.path(), "small.pth", TorchFormat::Legacy);
        // pickle(magic number) as LONG1, pickle(1001), then sys_info (as torch.save writes them)
        let head = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.\x80\x02M\xe9\x03.\x80\x02}q\x00(X\x10\x00\x00\x00protocol_version";
        assert!(bytes.starts_with(head));
        // then the main pickle, the key list (sorted as strings) and per key its record
        let tensors = small();
        let mut order: Vec<usize> = (0..tensors.len()).collect();
        order.sort_by_key(|&i| legacy_key(i));
        assert_ne!(
            order,
            (0..tensors.len()).collect::<Vec<_>>(),
            "keys sort as pickled"
        );
        let mut key_list = b"\x80\x02]q\x00(".to_vec();
        let mut records = Vec::new();
        for (j, &i) in order.iter().enumerate() {
            let key = legacy_key(i);
            key_list.push(b'X');
            key_list.extend((key.len() as u32).to_le_bytes());
            key_list.extend(key.as_bytes());
            key_list.extend([b'q', j as u8 + 1]);
            records.extend((tensors[i].values.len() as u64).to_le_bytes());
            records.extend(tensors[i].values.le_bytes());
        }
        key_list.extend(b"e.");
        assert!(bytes.ends_with(&[key_list, records].concat()));
    }
}
