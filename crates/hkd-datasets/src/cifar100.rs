//! The two official CIFAR-100 releases: the python one (`cifar-100-python/{train,test,meta}`,
//! dicts pickled by Python 2's cPickle, read without executing anything) and the binary one
//! (`cifar-100-binary/{train,test}.bin`: records of coarse label, fine label, 3072 pixel
//! bytes; `fine_label_names.txt`, `coarse_label_names.txt`). Either gives a [`Dataset`] of
//! the 100 fine classes with CIFAR-100's normalisation, and the 20 coarse labels beside it.

use std::fs;
use std::path::{Path, PathBuf};

use hkd_pickle::Value;

use crate::dataset::{Dataset, DatasetParts, Normalization};
use crate::dir::{write_coarse_labels, write_split};
use crate::error::{DatasetError, Result};
use crate::{IMAGE_BYTES, npy::chw_to_hwc};

/// Number of fine classes.
pub const CIFAR100_FINE_CLASSES: usize = 100;
/// Number of coarse classes (super-classes).
pub const CIFAR100_COARSE_CLASSES: usize = 20;
/// Bytes of one record of the binary release: coarse label, fine label, 3072 pixel bytes.
pub const CIFAR100_RECORD_BYTES: usize = 2 + IMAGE_BYTES;

/// Which part of CIFAR-100.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cifar100Part {
    /// 50,000 training images (`train`, `train.bin`).
    Train,
    /// 10,000 test images (`test`, `test.bin`).
    Test,
}

impl Cifar100Part {
    /// The file stem of the part: `train` or `test`.
    pub fn name(self) -> &'static str {
        match self {
            Cifar100Part::Train => "train",
            Cifar100Part::Test => "test",
        }
    }
}

/// Which release a folder holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cifar100Release {
    /// `cifar-100-python.tar.gz`, unpacked: the folder holding `train`, `test` and `meta`.
    Python(PathBuf),
    /// `cifar-100-binary.tar.gz`, unpacked: the folder holding `train.bin` and `test.bin`.
    Binary(PathBuf),
}

impl Cifar100Release {
    /// Finds a release in `dir` itself or in the folder its tarball unpacks to
    /// (`cifar-100-python/`, `cifar-100-binary/`); the python release first.
    pub fn find(dir: &Path) -> Result<Cifar100Release> {
        for d in [dir.to_path_buf(), dir.join("cifar-100-python")] {
            if d.join("meta").is_file() && (d.join("train").is_file() || d.join("test").is_file()) {
                return Ok(Cifar100Release::Python(d));
            }
        }
        for d in [dir.to_path_buf(), dir.join("cifar-100-binary")] {
            if d.join("train.bin").is_file() || d.join("test.bin").is_file() {
                return Ok(Cifar100Release::Binary(d));
            }
        }
        Err(DatasetError::UnknownLayout {
            path: dir.to_path_buf(),
            reason: "holds no CIFAR-100 release: expected the python release (train, test and meta, or a cifar-100-python/ folder holding them) or the binary release (train.bin and test.bin, or a cifar-100-binary/ folder)".into(),
        })
    }

    /// The folder the release's files are in.
    pub fn dir(&self) -> &Path {
        match self {
            Cifar100Release::Python(d) | Cifar100Release::Binary(d) => d,
        }
    }

    /// `python` or `binary`.
    pub fn kind(&self) -> &'static str {
        match self {
            Cifar100Release::Python(_) => "python",
            Cifar100Release::Binary(_) => "binary",
        }
    }

    /// Loads one part: the fine-class dataset (ids = the image's index in its part) and its
    /// coarse labels.
    pub fn load(&self, part: Cifar100Part) -> Result<Cifar100Split> {
        let (fine_names, coarse_names) = self.class_names()?;
        let (planes, fine, coarse, path) = match self {
            Cifar100Release::Python(d) => read_python_part(&d.join(part.name()))?,
            Cifar100Release::Binary(d) => {
                read_binary_part(&d.join(format!("{}.bin", part.name())))?
            }
        };
        let n = fine.len();
        let mut images = vec![0u8; n * IMAGE_BYTES];
        for (src, dst) in planes
            .chunks_exact(IMAGE_BYTES)
            .zip(images.chunks_exact_mut(IMAGE_BYTES))
        {
            chw_to_hwc(src, dst);
        }
        let dataset = Dataset::new(DatasetParts {
            images,
            labels: fine,
            human: None,
            ids: Some((0..n as i64).collect()),
            class_names: fine_names,
            normalization: Normalization::CIFAR100,
        })
        .map_err(|e| match e {
            DatasetError::Invalid { what, reason } => DatasetError::Cifar100 {
                path: path.clone(),
                reason: format!("{what}: {reason}"),
            },
            other => other,
        })?;
        Ok(Cifar100Split {
            dataset,
            coarse_labels: coarse,
            coarse_names,
        })
    }

    /// The 100 fine and 20 coarse class names, in label order: from `meta` (python) or
    /// the two label-name files (binary).
    pub fn class_names(&self) -> Result<(Vec<String>, Vec<String>)> {
        let (fine, coarse, path) = match self {
            Cifar100Release::Python(d) => {
                let path = d.join("meta");
                let meta = read_pickle(&path)?;
                let names = |key: &str| -> Result<Vec<String>> {
                    let list = get(&meta, key).ok_or_else(|| missing(&path, key, &meta))?;
                    let Value::List(items) = &list else {
                        return Err(bad(
                            &path,
                            format!(
                                "`{key}` is a {}, expected a list of names",
                                list.type_name()
                            ),
                        ));
                    };
                    items
                        .borrow()
                        .iter()
                        .map(|v| match v {
                            Value::Str(s) => Ok(s.clone()),
                            Value::Bytes(b) => Ok(String::from_utf8_lossy(b).into_owned()),
                            other => Err(bad(
                                &path,
                                format!("`{key}` holds a {}, expected names", other.type_name()),
                            )),
                        })
                        .collect()
                };
                (
                    names("fine_label_names")?,
                    names("coarse_label_names")?,
                    path,
                )
            }
            Cifar100Release::Binary(d) => {
                let read = |file: &str| -> Result<Vec<String>> {
                    let path = d.join(file);
                    let text = fs::read_to_string(&path)
                        .map_err(|e| DatasetError::io(&path, "read", e))?;
                    Ok(text
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(str::to_string)
                        .collect())
                };
                (
                    read("fine_label_names.txt")?,
                    read("coarse_label_names.txt")?,
                    d.join("fine_label_names.txt"),
                )
            }
        };
        if fine.len() != CIFAR100_FINE_CLASSES || coarse.len() != CIFAR100_COARSE_CLASSES {
            return Err(bad(
                &path,
                format!(
                    "{} fine and {} coarse class names; CIFAR-100 has {CIFAR100_FINE_CLASSES} and {CIFAR100_COARSE_CLASSES}",
                    fine.len(),
                    coarse.len()
                ),
            ));
        }
        Ok((fine, coarse))
    }
}

/// One part of CIFAR-100: the images with their fine labels, and the coarse labels.
#[derive(Clone, Debug)]
pub struct Cifar100Split {
    /// Images and fine labels (100 classes), CIFAR-100 normalisation, ids = index in the part.
    pub dataset: Dataset,
    /// The super-class (0..20) of each image, in the dataset's order.
    pub coarse_labels: Vec<u32>,
    /// The 20 super-class names, in label order.
    pub coarse_names: Vec<String>,
}

/// What [`prepare_cifar100`] wrote.
#[derive(Clone, Debug)]
pub struct PreparedCifar100 {
    /// The release it read: `python` or `binary`.
    pub release: &'static str,
    /// The splits written and their image counts: `train`, `test`.
    pub splits: Vec<(String, usize)>,
}

/// Converts a CIFAR-100 release found in `src` ([`Cifar100Release::find`]) into a new
/// dataset directory `out` in our layout: splits `train` and `test` with the 100 fine
/// classes, CIFAR-100's normalisation, ids = index in the official file, and the coarse
/// labels (`coarse_labels.npy`, the manifest's `coarse_classes`). `out` must not exist; the
/// dataset is written beside it and renamed into place, so an interrupted run leaves none.
pub fn prepare_cifar100(src: &Path, out: &Path) -> Result<PreparedCifar100> {
    if out.exists() {
        return Err(DatasetError::invalid(
            "--out",
            format!(
                "{} already exists; prepare CIFAR-100 into a new directory (nothing was written)",
                out.display()
            ),
        ));
    }
    let release = Cifar100Release::find(src)?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(|e| DatasetError::io(&parent, "create directory", e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".hkd-cifar100-")
        .tempdir_in(&parent)
        .map_err(|e| DatasetError::io(&parent, "create a temporary directory in", e))?;
    // Named as `out`, since the manifest takes its name from the directory's.
    let staging = tmp
        .path()
        .join(out.file_name().unwrap_or(std::ffi::OsStr::new("cifar100")));
    let mut splits = Vec::new();
    for part in [Cifar100Part::Train, Cifar100Part::Test] {
        let split = release.load(part)?;
        let name = part.name();
        let source = format!(
            "CIFAR-100 {} release, {name} ({} images, 100 fine classes); ids = index in the official {name} file",
            release.kind(),
            split.dataset.len()
        );
        write_split(&staging, name, &split.dataset, Some(&source))?;
        write_coarse_labels(&staging, name, &split.coarse_labels, &split.coarse_names)?;
        splits.push((name.to_string(), split.dataset.len()));
    }
    fs::rename(&staging, out)
        .map_err(|e| DatasetError::io(out, "move the prepared dataset to", e))?;
    Ok(PreparedCifar100 {
        release: release.kind(),
        splits,
    })
}

type Part = (Vec<u8>, Vec<u32>, Vec<u32>, PathBuf);

fn bad(path: &Path, reason: String) -> DatasetError {
    DatasetError::Cifar100 {
        path: path.to_path_buf(),
        reason,
    }
}

fn missing(path: &Path, key: &str, dict: &Value) -> DatasetError {
    let keys: Vec<String> = match dict {
        Value::Dict(items) => items.borrow().iter().map(|(k, _)| key_text(k)).collect(),
        _ => Vec::new(),
    };
    bad(
        path,
        format!(
            "no `{key}` entry (found: {}); is this a CIFAR-100 python release file?",
            if keys.is_empty() {
                "nothing".to_string()
            } else {
                keys.join(", ")
            }
        ),
    )
}

fn key_text(k: &Value) -> String {
    match k {
        Value::Str(s) => s.clone(),
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        other => format!("<{}>", other.type_name()),
    }
}

/// A dict entry by its key, whether the key is a `str` or `bytes` (Python 3 re-pickles).
fn get(dict: &Value, key: &str) -> Option<Value> {
    match dict {
        Value::Dict(items) => items
            .borrow()
            .iter()
            .find(|(k, _)| {
                matches!(k, Value::Str(s) if s == key)
                    || matches!(k, Value::Bytes(b) if b == key.as_bytes())
            })
            .map(|(_, v)| v.clone()),
        _ => None,
    }
}

fn read_pickle(path: &Path) -> Result<Value> {
    let bytes = fs::read(path).map_err(|e| DatasetError::io(path, "read", e))?;
    hkd_pickle::unpickle_plain(&bytes).map_err(|e| {
        bad(
            path,
            format!("not a readable pickle ({e}); the CIFAR-100 python release's files are pickled dicts"),
        )
    })
}

/// `train`/`test` of the python release: `data` (N×3072 uint8, R, G, B planes),
/// `fine_labels`, `coarse_labels`.
fn read_python_part(path: &Path) -> Result<Part> {
    let top = read_pickle(path)?;
    let data = get(&top, "data").ok_or_else(|| missing(path, "data", &top))?;
    let array = hkd_pickle::numpy::ndarray(&data)
        .ok_or_else(|| {
            bad(
                path,
                format!(
                    "`data` is a {}, expected a numpy uint8 array",
                    data.type_name()
                ),
            )
        })?
        .map_err(|e| bad(path, format!("`data`: {e}")))?;
    if array.fortran_order || array.shape.len() != 2 || array.shape[1] != IMAGE_BYTES {
        return Err(bad(
            path,
            format!(
                "`data` has shape {:?}{}, expected (N, {IMAGE_BYTES}) in C order",
                array.shape,
                if array.fortran_order {
                    " in Fortran order"
                } else {
                    ""
                }
            ),
        ));
    }
    let planes = array
        .as_u8()
        .map_err(|e| bad(path, format!("`data`: {e}")))?
        .to_vec();
    let n = array.shape[0];
    let labels = |key: &str, classes: usize| -> Result<Vec<u32>> {
        let list = get(&top, key).ok_or_else(|| missing(path, key, &top))?;
        let values: Vec<Value> = match &list {
            Value::List(items) => items.borrow().clone(),
            other => {
                return Err(bad(
                    path,
                    format!(
                        "`{key}` is a {}, expected a list of labels",
                        other.type_name()
                    ),
                ));
            }
        };
        if values.len() != n {
            return Err(bad(
                path,
                format!("`{key}` has {} labels for {n} images", values.len()),
            ));
        }
        values
            .iter()
            .enumerate()
            .map(|(row, v)| match v.as_usize() {
                Some(l) if l < classes => Ok(l as u32),
                _ => Err(DatasetError::LabelOutOfRange {
                    path: path.to_path_buf(),
                    row,
                    value: format!("{v:?}"),
                    classes,
                }),
            })
            .collect()
    };
    let fine = labels("fine_labels", CIFAR100_FINE_CLASSES)?;
    let coarse = labels("coarse_labels", CIFAR100_COARSE_CLASSES)?;
    Ok((planes, fine, coarse, path.to_path_buf()))
}

/// `train.bin`/`test.bin` of the binary release.
fn read_binary_part(path: &Path) -> Result<Part> {
    let bytes = fs::read(path).map_err(|e| DatasetError::io(path, "read", e))?;
    if bytes.is_empty() || bytes.len() % CIFAR100_RECORD_BYTES != 0 {
        return Err(bad(
            path,
            format!(
                "{} bytes is not a whole number of {CIFAR100_RECORD_BYTES}-byte records (coarse label, fine label, 3072 pixel bytes); the official train.bin holds 50000 records, test.bin 10000. The file is truncated or not a CIFAR-100 binary file",
                bytes.len()
            ),
        ));
    }
    let n = bytes.len() / CIFAR100_RECORD_BYTES;
    let mut planes = Vec::with_capacity(n * IMAGE_BYTES);
    let mut fine = Vec::with_capacity(n);
    let mut coarse = Vec::with_capacity(n);
    for (row, record) in bytes.chunks_exact(CIFAR100_RECORD_BYTES).enumerate() {
        for (value, classes, out) in [
            (record[0], CIFAR100_COARSE_CLASSES, &mut coarse),
            (record[1], CIFAR100_FINE_CLASSES, &mut fine),
        ] {
            if value as usize >= classes {
                return Err(DatasetError::LabelOutOfRange {
                    path: path.to_path_buf(),
                    row,
                    value: value.to_string(),
                    classes,
                });
            }
            out.push(u32::from(value));
        }
        planes.extend_from_slice(&record[2..]);
    }
    Ok((planes, fine, coarse, path.to_path_buf()))
}
