//! Dataset directories: our `dataset.toml` layout, and detection of the other layouts.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::dataset::{Dataset, DatasetParts, Normalization, hex};
use crate::error::{DatasetError, Result};
use crate::formats::{
    Cifar10Part, check_rows, find_cifar10_binary_dir, has_class_folders, load_cifar10_binary,
    load_image_folder, original,
};
use crate::npy::{ImageRange, read_human, read_ids, read_images, read_labels, write_npy};
use crate::{IMAGE_BYTES, IMAGE_SIZE};

/// File name of the manifest of our layout.
pub const MANIFEST_FILE: &str = "dataset.toml";

/// Version of the manifest format this crate writes and reads.
pub const MANIFEST_VERSION: u32 = 1;

/// `dataset.toml`: names the splits of a dataset directory and, per split, its files.
///
/// Paths are relative to the manifest's directory (absolute paths also work). Class
/// names and normalisation are given once at the top and may be overridden per split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always 1 for now.
    pub format_version: u32,
    /// Short name of the dataset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Free text: what the dataset is, where it comes from, its licence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Class names in class-id order (default for every split).
    pub classes: Vec<String>,
    /// Normalisation (default for every split).
    pub normalization: Normalization,
    /// Names of the coarse classes (CIFAR-100's 20 super-classes) in coarse-label order,
    /// when splits carry `coarse_labels`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coarse_classes: Option<Vec<String>>,
    /// The splits, by name.
    #[serde(default)]
    pub splits: BTreeMap<String, SplitEntry>,
}

/// One split of a [`Manifest`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitEntry {
    /// Images `.npy`: u8, f32 or f64; N×32×32×3 or N×3×32×32.
    pub images: String,
    /// Hard labels `.npy`: any integer dtype or whole-number floats; (N,) or (N, 1).
    pub labels: String,
    /// Optional human label distributions `.npy`: f32/f64 N×C (or integer vote counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub human: Option<String>,
    /// Optional ids `.npy` (integers, one per image): where each image came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<String>,
    /// Optional coarse labels `.npy` (one per image, indices into the manifest's
    /// `coarse_classes`): kept with the data, not used for training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coarse_labels: Option<String>,
    /// Number of images; checked on load when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<usize>,
    /// Scale of float images (`auto`, `unit` = [0, 1], `byte` = [0, 255]).
    #[serde(default, skip_serializing_if = "is_auto")]
    pub image_range: ImageRange,
    /// Class names of this split, when they differ from the top-level ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<String>>,
    /// Normalisation of this split, when it differs from the top-level one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalization: Option<Normalization>,
    /// Free text: where the split comes from and how it was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

fn is_auto(r: &ImageRange) -> bool {
    *r == ImageRange::Auto
}

impl Manifest {
    /// Reads and checks a `dataset.toml`.
    pub fn read(path: &Path) -> Result<Self> {
        let text = fs::read_to_string(path).map_err(|e| DatasetError::io(path, "read", e))?;
        let manifest: Manifest = toml::from_str(&text).map_err(|e| DatasetError::Manifest {
            path: path.to_path_buf(),
            reason: format!("cannot parse: {e}"),
        })?;
        manifest.check(path)?;
        Ok(manifest)
    }

    fn check(&self, path: &Path) -> Result<()> {
        let bad = |reason: String| DatasetError::Manifest {
            path: path.to_path_buf(),
            reason,
        };
        if self.format_version != MANIFEST_VERSION {
            return Err(bad(format!(
                "format_version is {}, this hkd reads version {MANIFEST_VERSION}",
                self.format_version
            )));
        }
        if self.classes.is_empty() {
            return Err(bad(
                "classes is empty; list the class names in class-id order".into(),
            ));
        }
        self.normalization
            .validate()
            .map_err(|e| bad(format!("[normalization]: {e}")))?;
        for (name, split) in &self.splits {
            check_split_name(name).map_err(|e| bad(e.to_string()))?;
            if let Some(n) = &split.normalization {
                n.validate()
                    .map_err(|e| bad(format!("[splits.{name}.normalization]: {e}")))?;
            }
            if split.classes.as_ref().is_some_and(|c| c.is_empty()) {
                return Err(bad(format!("[splits.{name}] classes is empty")));
            }
            if split.coarse_labels.is_some() && self.coarse_classes.is_none() {
                return Err(bad(format!(
                    "[splits.{name}] has coarse_labels but the manifest lists no coarse_classes; add the coarse class names at the top"
                )));
            }
        }
        Ok(())
    }

    /// The manifest as TOML text.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self)
            .map_err(|e| DatasetError::invalid("manifest", format!("cannot serialise: {e}")))
    }
}

/// Checks that a split name can be a folder name: ASCII letters, digits, `_`, `-`, `.`,
/// not starting with `.`.
pub fn check_split_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(DatasetError::invalid(
            "split name",
            format!("{name:?}: use ASCII letters, digits, '_', '-' or '.', not starting with '.'"),
        ))
    }
}

/// The layout of a dataset directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Our layout: a `dataset.toml` manifest.
    Manifest,
    /// The original Python project's `.npy` files (`train10k_images.npy`, ...).
    OriginalNpy,
    /// The official CIFAR-10 binary distribution (splits `train` and `test`).
    Cifar10Binary,
    /// CINIC-10 style `<class>/*.png` folders (one split `all`), or
    /// `train|valid|test/<class>/*.png` (those splits).
    ImageFolders,
}

impl Layout {
    /// A short name for logs and hashes.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Manifest => "manifest",
            Layout::OriginalNpy => "original-npy",
            Layout::Cifar10Binary => "cifar10-binary",
            Layout::ImageFolders => "image-folders",
        }
    }
}

/// Options for opening a dataset directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Scale of float images where the layout does not say (default: detect).
    pub image_range: ImageRange,
    /// Image folders: leave out CINIC's `cifar10-*` images.
    pub imagenet_only: bool,
}

#[derive(Clone, Debug)]
enum SplitSource {
    Manifest(SplitEntry),
    Npy {
        images: PathBuf,
        labels: PathBuf,
        human: Option<PathBuf>,
    },
    Cifar10(PathBuf, Cifar10Part),
    ImageFolder(PathBuf),
}

/// An opened dataset directory: its layout and its splits, loaded on demand.
#[derive(Clone, Debug)]
pub struct DatasetDir {
    root: PathBuf,
    layout: Layout,
    manifest: Option<Manifest>,
    splits: BTreeMap<String, SplitSource>,
    options: OpenOptions,
}

impl DatasetDir {
    /// Opens a dataset directory, detecting its layout: a `dataset.toml`; else the
    /// original project's `.npy` files; else CIFAR-10 binaries (also inside
    /// `cifar-10-batches-bin/`); else CIFAR-10 class folders of PNGs.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, &OpenOptions::default())
    }

    /// [`DatasetDir::open`] with options.
    pub fn open_with(path: &Path, options: &OpenOptions) -> Result<Self> {
        if !path.is_dir() {
            return Err(DatasetError::UnknownLayout {
                path: path.to_path_buf(),
                reason: if path.exists() {
                    "is not a directory; a dataset is a directory (with a dataset.toml, or one of the layouts in docs/datasets.md)".into()
                } else {
                    "does not exist".into()
                },
            });
        }
        let root = path.to_path_buf();
        let mut splits = BTreeMap::new();
        let manifest_path = root.join(MANIFEST_FILE);
        let (layout, manifest) = if manifest_path.is_file() {
            let manifest = Manifest::read(&manifest_path)?;
            for (name, entry) in &manifest.splits {
                splits.insert(name.clone(), SplitSource::Manifest(entry.clone()));
            }
            (Layout::Manifest, Some(manifest))
        } else if original::SPLITS
            .iter()
            .any(|(_, images, _, _)| root.join(images).is_file())
        {
            for (name, images, labels, human) in original::SPLITS {
                if root.join(images).is_file() {
                    let human = human.map(|h| root.join(h)).filter(|h| h.is_file());
                    splits.insert(
                        name.to_string(),
                        SplitSource::Npy {
                            images: root.join(images),
                            labels: root.join(labels),
                            human,
                        },
                    );
                }
            }
            (Layout::OriginalNpy, None)
        } else if let Some(bin) = find_cifar10_binary_dir(&root) {
            if Cifar10Part::Train.files(&bin).iter().any(|f| f.is_file()) {
                splits.insert(
                    "train".into(),
                    SplitSource::Cifar10(bin.clone(), Cifar10Part::Train),
                );
            }
            if Cifar10Part::Test.files(&bin).iter().all(|f| f.is_file()) {
                splits.insert(
                    "test".into(),
                    SplitSource::Cifar10(bin.clone(), Cifar10Part::Test),
                );
            }
            (Layout::Cifar10Binary, None)
        } else if has_class_folders(&root) {
            splits.insert("all".into(), SplitSource::ImageFolder(root.clone()));
            (Layout::ImageFolders, None)
        } else if ["train", "valid", "test"]
            .iter()
            .any(|s| has_class_folders(&root.join(s)))
        {
            for s in ["train", "valid", "test"] {
                if has_class_folders(&root.join(s)) {
                    splits.insert(s.into(), SplitSource::ImageFolder(root.join(s)));
                }
            }
            (Layout::ImageFolders, None)
        } else {
            return Err(DatasetError::UnknownLayout {
                path: root,
                reason: format!(
                    "not a dataset directory: found no {MANIFEST_FILE}, no original-layout files ({}, {}, {}), no CIFAR-10 binaries (data_batch_1.bin, test_batch.bin) and no CIFAR-10 class folders of PNGs. See docs/datasets.md",
                    original::TRAIN_IMAGES,
                    original::VAL_IMAGES,
                    original::IMAGENET_FAR_IMAGES
                ),
            });
        };
        Ok(DatasetDir {
            root,
            layout,
            manifest,
            splits,
            options: options.clone(),
        })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The detected layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The manifest, for our layout.
    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref()
    }

    /// Names of the splits, sorted.
    pub fn split_names(&self) -> Vec<String> {
        self.splits.keys().cloned().collect()
    }

    /// True when the dataset has a split of this name.
    pub fn has_split(&self, name: &str) -> bool {
        self.splits.contains_key(name)
    }

    /// Loads and validates one split.
    pub fn load_split(&self, name: &str) -> Result<Dataset> {
        let source = self
            .splits
            .get(name)
            .ok_or_else(|| DatasetError::UnknownSplit {
                path: self.root.clone(),
                split: name.to_string(),
                available: self.split_names(),
            })?;
        let cifar_names = || {
            crate::CIFAR10_CLASSES
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
        };
        match source {
            SplitSource::Manifest(entry) => self.load_manifest_split(name, entry),
            SplitSource::Npy {
                images,
                labels,
                human,
            } => {
                if !labels.is_file() {
                    return Err(DatasetError::UnknownLayout {
                        path: labels.clone(),
                        reason: format!(
                            "missing: split {name:?} of the original layout needs labels beside {}",
                            images.display()
                        ),
                    });
                }
                crate::formats::load_npy_arrays(
                    images,
                    labels,
                    human.as_deref(),
                    self.options.image_range,
                    cifar_names(),
                    Normalization::CIFAR10,
                )
            }
            SplitSource::Cifar10(dir, part) => load_cifar10_binary(dir, *part),
            SplitSource::ImageFolder(dir) => load_image_folder(dir, self.options.imagenet_only),
        }
    }

    fn load_manifest_split(&self, name: &str, entry: &SplitEntry) -> Result<Dataset> {
        let manifest = self
            .manifest
            .as_ref()
            .ok_or_else(|| DatasetError::invalid("dataset", "manifest missing"))?;
        let class_names = entry
            .classes
            .clone()
            .unwrap_or_else(|| manifest.classes.clone());
        let classes = class_names.len();
        let range = if entry.image_range == ImageRange::Auto {
            self.options.image_range
        } else {
            entry.image_range
        };
        let images_path = self.root.join(&entry.images);
        let labels_path = self.root.join(&entry.labels);
        let images = read_images(&images_path, range)?;
        let n = images.len() / IMAGE_BYTES;
        let labels = read_labels(&labels_path, classes)?;
        check_rows(
            &images_path,
            "images",
            n,
            &labels_path,
            "labels",
            labels.len(),
        )?;
        let human = match &entry.human {
            Some(h) => {
                let path = self.root.join(h);
                let rows = read_human(&path, classes)?;
                check_rows(
                    &images_path,
                    "images",
                    n,
                    &path,
                    "human label rows",
                    rows.len() / classes,
                )?;
                Some(rows)
            }
            None => None,
        };
        let ids = match &entry.ids {
            Some(i) => {
                let path = self.root.join(i);
                let ids = read_ids(&path, "ids")?;
                check_rows(&images_path, "images", n, &path, "ids", ids.len())?;
                Some(ids)
            }
            None => None,
        };
        if let Some(count) = entry.count
            && count != n
        {
            return Err(DatasetError::Manifest {
                path: self.root.join(MANIFEST_FILE),
                reason: format!(
                    "[splits.{name}] count = {count}, but {} holds {n} images",
                    images_path.display()
                ),
            });
        }
        Dataset::new(DatasetParts {
            images,
            labels,
            human,
            ids,
            class_names,
            normalization: entry.normalization.unwrap_or(manifest.normalization),
        })
        .map_err(|e| DatasetError::Manifest {
            path: self.root.join(MANIFEST_FILE),
            reason: format!("[splits.{name}]: {e}"),
        })
    }

    /// SHA-256 of what the reader takes for split `name` besides its files' bytes: the
    /// layout, the open options, and for a manifest its classes, normalisation and the
    /// split's entry (not the free-text name, description and source, nor the other
    /// splits). With the digests of [`DatasetDir::split_files`], a run's record of its data.
    pub fn split_settings_hash(&self, name: &str) -> Result<String> {
        let mut h = Sha256::new();
        h.update(b"hkd-split-settings-v1\0");
        h.update(self.layout.name().as_bytes());
        h.update(format!("\0{:?}\0", self.options).as_bytes());
        if let Some(manifest) = &self.manifest {
            let mut m = manifest.clone();
            m.name = None;
            m.description = None;
            m.splits.retain(|split, _| split == name);
            for entry in m.splits.values_mut() {
                entry.source = None;
            }
            let text = toml::to_string(&m).map_err(|e| DatasetError::Manifest {
                path: self.root.join(MANIFEST_FILE),
                reason: format!("cannot serialise it again: {e}"),
            })?;
            h.update(text.as_bytes());
        }
        Ok(hex(&h.finalize()))
    }

    /// The files split `name` is read from, in [`DatasetDir::files`]' order: what a run
    /// records as that split's provenance.
    pub fn split_files(&self, name: &str) -> Result<Vec<PathBuf>> {
        Ok(self
            .files()?
            .into_iter()
            .filter(|(split, _)| split == name)
            .map(|(_, file)| file)
            .collect())
    }

    /// The files each split is read from, sorted by split then role.
    pub fn files(&self) -> Result<Vec<(String, PathBuf)>> {
        let mut out = Vec::new();
        for (name, source) in &self.splits {
            match source {
                SplitSource::Manifest(e) => {
                    for f in [
                        Some(&e.images),
                        Some(&e.labels),
                        e.human.as_ref(),
                        e.ids.as_ref(),
                        e.coarse_labels.as_ref(),
                    ]
                    .into_iter()
                    .flatten()
                    {
                        out.push((name.clone(), self.root.join(f)));
                    }
                }
                SplitSource::Npy {
                    images,
                    labels,
                    human,
                } => {
                    out.push((name.clone(), images.clone()));
                    out.push((name.clone(), labels.clone()));
                    if let Some(h) = human {
                        out.push((name.clone(), h.clone()));
                    }
                }
                SplitSource::Cifar10(dir, part) => {
                    out.extend(part.files(dir).into_iter().map(|f| (name.clone(), f)));
                }
                SplitSource::ImageFolder(dir) => {
                    for class in crate::CIFAR10_CLASSES {
                        let d = dir.join(class);
                        if !d.is_dir() {
                            continue;
                        }
                        let mut files: Vec<PathBuf> = fs::read_dir(&d)
                            .map_err(|e| DatasetError::io(&d, "list directory", e))?
                            .filter_map(|e| e.ok().map(|e| e.path()))
                            .filter(|p| {
                                p.extension().is_some_and(|x| x.eq_ignore_ascii_case("png"))
                            })
                            .collect();
                        files.sort();
                        out.extend(files.into_iter().map(|f| (name.clone(), f)));
                    }
                }
            }
        }
        Ok(out)
    }

    /// A stable fingerprint of the dataset as stored: SHA-256 (hex) over the layout, the
    /// manifest text (our layout) and, for every file the splits read, its path relative
    /// to the directory, its size and its SHA-256. It changes when any data file or the
    /// manifest changes, and not when the directory is moved.
    pub fn manifest_hash(&self) -> Result<String> {
        let mut h = Sha256::new();
        h.update(b"hkd-dataset-dir-v1\0");
        h.update(self.layout.name().as_bytes());
        h.update(b"\0");
        if self.layout == Layout::Manifest {
            let path = self.root.join(MANIFEST_FILE);
            let text = fs::read(&path).map_err(|e| DatasetError::io(&path, "read", e))?;
            h.update((text.len() as u64).to_le_bytes());
            h.update(&text);
        }
        for (split, file) in self.files()? {
            let rel = file.strip_prefix(&self.root).unwrap_or(&file);
            h.update(split.as_bytes());
            h.update(b"\0");
            h.update(rel.to_string_lossy().as_bytes());
            h.update(b"\0");
            let (size, digest) = file_sha256(&file)?;
            h.update(size.to_le_bytes());
            h.update(digest);
        }
        Ok(hex(&h.finalize()))
    }
}

fn file_sha256(path: &Path) -> Result<(u64, [u8; 32])> {
    let mut file = fs::File::open(path).map_err(|e| DatasetError::io(path, "open", e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let k = file
            .read(&mut buf)
            .map_err(|e| DatasetError::io(path, "read", e))?;
        if k == 0 {
            break;
        }
        size += k as u64;
        h.update(&buf[..k]);
    }
    Ok((size, h.finalize().into()))
}

/// Opens a dataset directory and loads one split.
pub fn open_split(dir: &Path, split: &str) -> Result<Dataset> {
    DatasetDir::open(dir)?.load_split(split)
}

/// Writes `dataset` as split `split` of our layout in `dir`: `<dir>/<split>/images.npy`
/// (u8 N×32×32×3), `labels.npy` (u8, or u32 beyond 256 classes), `human.npy` (f64 N×C)
/// and `ids.npy` (i64) when present, and adds or replaces the split in
/// `<dir>/dataset.toml` (created when missing). Every file is written atomically.
///
/// `source` is free text recorded in the manifest (where the split comes from).
pub fn write_split(dir: &Path, split: &str, dataset: &Dataset, source: Option<&str>) -> Result<()> {
    check_split_name(split)?;
    fs::create_dir_all(dir).map_err(|e| DatasetError::io(dir, "create directory", e))?;
    let manifest_path = dir.join(MANIFEST_FILE);
    let mut manifest = if manifest_path.is_file() {
        Manifest::read(&manifest_path)?
    } else {
        if let Ok(other) = DatasetDir::open(dir) {
            return Err(DatasetError::UnknownLayout {
                path: dir.to_path_buf(),
                reason: format!(
                    "holds a dataset in the {} layout; write our layout into a new directory instead of mixing layouts",
                    other.layout().name()
                ),
            });
        }
        Manifest {
            format_version: MANIFEST_VERSION,
            name: dir.file_name().map(|n| n.to_string_lossy().into_owned()),
            description: None,
            classes: dataset.class_names().to_vec(),
            normalization: dataset.normalization(),
            coarse_classes: None,
            splits: BTreeMap::new(),
        }
    };
    let split_dir = dir.join(split);
    fs::create_dir_all(&split_dir)
        .map_err(|e| DatasetError::io(&split_dir, "create directory", e))?;
    let n = dataset.len() as u64;
    let s = IMAGE_SIZE as u64;
    write_npy(
        &split_dir.join("images.npy"),
        &[n, s, s, 3],
        dataset.images(),
    )?;
    if dataset.num_classes() <= 256 {
        let labels: Vec<u8> = dataset.labels().iter().map(|&l| l as u8).collect();
        write_npy(&split_dir.join("labels.npy"), &[n], &labels)?;
    } else {
        write_npy(&split_dir.join("labels.npy"), &[n], dataset.labels())?;
    }
    let rel = |f: &str| format!("{split}/{f}");
    let mut entry = SplitEntry {
        images: rel("images.npy"),
        labels: rel("labels.npy"),
        human: None,
        ids: None,
        coarse_labels: None,
        count: Some(dataset.len()),
        image_range: ImageRange::Auto,
        classes: (dataset.class_names() != manifest.classes.as_slice())
            .then(|| dataset.class_names().to_vec()),
        normalization: (dataset.normalization() != manifest.normalization)
            .then(|| dataset.normalization()),
        source: source.map(str::to_string),
    };
    let stale = |f: &str| -> Result<()> {
        let p = split_dir.join(f);
        if p.is_file() {
            fs::remove_file(&p).map_err(|e| DatasetError::io(&p, "remove stale file", e))?;
        }
        Ok(())
    };
    match dataset.human() {
        Some(h) => {
            write_npy(
                &split_dir.join("human.npy"),
                &[n, dataset.num_classes() as u64],
                h,
            )?;
            entry.human = Some(rel("human.npy"));
        }
        None => stale("human.npy")?,
    }
    match dataset.ids() {
        Some(ids) => {
            write_npy(&split_dir.join("ids.npy"), &[n], ids)?;
            entry.ids = Some(rel("ids.npy"));
        }
        None => stale("ids.npy")?,
    }
    stale("coarse_labels.npy")?;
    manifest.splits.insert(split.to_string(), entry);
    write_manifest(&manifest_path, &manifest)
}

/// Adds coarse labels (one per image of `split`, e.g. CIFAR-100's super-classes) to a split
/// written by [`write_split`]: `<split>/coarse_labels.npy` and, in the manifest, the split's
/// `coarse_labels` and the top-level `coarse_classes` (which must agree with any already
/// there).
pub fn write_coarse_labels(
    dir: &Path,
    split: &str,
    labels: &[u32],
    names: &[String],
) -> Result<()> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let mut manifest = Manifest::read(&manifest_path)?;
    let bad = |reason: String| DatasetError::Manifest {
        path: manifest_path.clone(),
        reason,
    };
    let Some(entry) = manifest.splits.get(split) else {
        return Err(bad(format!(
            "no split {split:?} to add coarse labels to; write the split first"
        )));
    };
    if entry.count.is_some_and(|n| n != labels.len()) {
        return Err(bad(format!(
            "[splits.{split}] has {} images, but {} coarse labels were given",
            entry.count.unwrap_or(0),
            labels.len()
        )));
    }
    if let Some(l) = labels.iter().find(|&&l| l as usize >= names.len()) {
        return Err(bad(format!(
            "coarse label {l} for {} coarse classes",
            names.len()
        )));
    }
    match &manifest.coarse_classes {
        Some(existing) if existing != names => {
            return Err(bad(format!(
                "coarse_classes already lists {} other names; a dataset has one set of coarse classes",
                existing.len()
            )));
        }
        _ => manifest.coarse_classes = Some(names.to_vec()),
    }
    let file = format!("{split}/coarse_labels.npy");
    let bytes: Vec<u8> = labels.iter().map(|&l| l as u8).collect();
    if names.len() > 256 {
        write_npy(&dir.join(&file), &[labels.len() as u64], labels)?;
    } else {
        write_npy(&dir.join(&file), &[labels.len() as u64], &bytes)?;
    }
    if let Some(entry) = manifest.splits.get_mut(split) {
        entry.coarse_labels = Some(file);
    }
    write_manifest(&manifest_path, &manifest)
}

/// Writes a manifest atomically.
pub fn write_manifest(path: &Path, manifest: &Manifest) -> Result<()> {
    let text = manifest.to_toml()?;
    let mut tmp = crate::npy::temp_file_beside(path)?;
    tmp.write_all(text.as_bytes())
        .map_err(|e| DatasetError::io(path, "write", e))?;
    tmp.persist(path)
        .map_err(|e| DatasetError::io(path, "rename temporary file onto", e.error))?;
    Ok(())
}
