//! Readers of the foreign layouts: CIFAR-10 binaries, image folders (CINIC-10), and the
//! original Python project's `.npy` files.

use std::fs;
use std::path::{Path, PathBuf};

use crate::dataset::{Dataset, DatasetParts, Normalization};
use crate::error::{DatasetError, Result};
use crate::npy::{ImageRange, read_human, read_images, read_labels};
use crate::{CHANNELS, CIFAR10_CLASSES, IMAGE_BYTES, IMAGE_SIZE};

/// Bytes of one record of the CIFAR-10 binary distribution: 1 label byte + 3072 pixel bytes.
pub const CIFAR10_RECORD_BYTES: usize = 1 + IMAGE_BYTES;

/// The training batch files of the CIFAR-10 binary distribution, in order.
pub const CIFAR10_TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];

/// The test batch file of the CIFAR-10 binary distribution.
pub const CIFAR10_TEST_FILE: &str = "test_batch.bin";

/// The folder of the CIFAR-10 binaries: `dir` itself, or `dir/cifar-10-batches-bin`
/// (what the official tarball unpacks to), whichever holds a batch file.
pub fn find_cifar10_binary_dir(dir: &Path) -> Option<PathBuf> {
    [dir.to_path_buf(), dir.join("cifar-10-batches-bin")]
        .into_iter()
        .find(|d| d.join(CIFAR10_TEST_FILE).is_file() || d.join(CIFAR10_TRAIN_FILES[0]).is_file())
}

/// Reads CIFAR-10 binary batch files (records of 1 label byte + R, G, B planes of 32×32,
/// row-major) in the given order, as HWC pixels and labels.
pub fn read_cifar10_batches(files: &[PathBuf]) -> Result<(Vec<u8>, Vec<u32>)> {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for path in files {
        let bytes = fs::read(path).map_err(|e| DatasetError::io(path, "read", e))?;
        if bytes.is_empty() || bytes.len() % CIFAR10_RECORD_BYTES != 0 {
            return Err(DatasetError::Cifar10Binary {
                path: path.clone(),
                reason: format!(
                    "{} bytes is not a whole number of {CIFAR10_RECORD_BYTES}-byte records (1 label byte + 3072 pixel bytes); the official files hold 10000 records (30730000 bytes). The file is truncated or not a CIFAR-10 binary batch",
                    bytes.len()
                ),
            });
        }
        images.reserve(bytes.len());
        for (i, record) in bytes.chunks_exact(CIFAR10_RECORD_BYTES).enumerate() {
            let label = record[0];
            if label as usize >= CIFAR10_CLASSES.len() {
                return Err(DatasetError::LabelOutOfRange {
                    path: path.clone(),
                    row: i,
                    value: label.to_string(),
                    classes: CIFAR10_CLASSES.len(),
                });
            }
            labels.push(u32::from(label));
            let start = images.len();
            images.resize(start + IMAGE_BYTES, 0);
            crate::npy::chw_to_hwc(&record[1..], &mut images[start..]);
        }
    }
    Ok((images, labels))
}

/// Class names from `batches.meta.txt` when it is there and lists 10 names, else CIFAR-10's.
fn cifar10_class_names(dir: &Path) -> Vec<String> {
    let from_meta = fs::read_to_string(dir.join("batches.meta.txt"))
        .ok()
        .map(|text| {
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        });
    match from_meta {
        Some(names) if names.len() == CIFAR10_CLASSES.len() => names,
        _ => CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect(),
    }
}

/// Which part of the CIFAR-10 binary distribution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cifar10Part {
    /// `data_batch_1..5.bin`: 50,000 images.
    Train,
    /// `test_batch.bin`: 10,000 images (the images CIFAR-10H labels).
    Test,
}

impl Cifar10Part {
    /// The batch files of this part inside `dir`.
    pub fn files(self, dir: &Path) -> Vec<PathBuf> {
        match self {
            Cifar10Part::Train => CIFAR10_TRAIN_FILES.iter().map(|f| dir.join(f)).collect(),
            Cifar10Part::Test => vec![dir.join(CIFAR10_TEST_FILE)],
        }
    }
}

/// Loads one part of the CIFAR-10 binaries in `dir` (see [`find_cifar10_binary_dir`]),
/// with ids = the CIFAR-10 index of each image within that part.
pub fn load_cifar10_binary(dir: &Path, part: Cifar10Part) -> Result<Dataset> {
    let root = find_cifar10_binary_dir(dir).unwrap_or_else(|| dir.to_path_buf());
    let files = part.files(&root);
    if let Some(missing) = files.iter().find(|f| !f.is_file()) {
        return Err(DatasetError::UnknownLayout {
            path: missing.clone(),
            reason: "missing: the CIFAR-10 binary distribution (cifar-10-binary.tar.gz) has data_batch_1..5.bin and test_batch.bin".into(),
        });
    }
    let (images, labels) = read_cifar10_batches(&files)?;
    let n = labels.len() as i64;
    Dataset::new(DatasetParts {
        images,
        labels,
        human: None,
        ids: Some((0..n).collect()),
        class_names: cifar10_class_names(&root),
        normalization: Normalization::CIFAR10,
    })
}

/// Prefix CINIC-10 gives the file names of its images taken from CIFAR-10.
pub const CINIC_CIFAR_PREFIX: &str = "cifar10-";

/// True when `dir` holds at least one sub-folder named like a CIFAR-10 class.
pub(crate) fn has_class_folders(dir: &Path) -> bool {
    CIFAR10_CLASSES.iter().any(|c| dir.join(c).is_dir())
}

/// Loads an image folder `<root>/<class>/*.png` with CIFAR-10's class order (CINIC-10 style).
///
/// Files are read in name order within each class; files not ending in `.png` are
/// ignored. Every image must be 32×32 (grey or RGBA images are converted to RGB).
/// With `imagenet_only`, files whose name starts with `cifar10-` (CINIC's CIFAR-10
/// images) are left out.
pub fn load_image_folder(root: &Path, imagenet_only: bool) -> Result<Dataset> {
    let entries = fs::read_dir(root).map_err(|e| DatasetError::io(root, "list directory", e))?;
    let mut unknown = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| DatasetError::io(root, "list directory", e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_dir()
            && !name.starts_with('.')
            && !CIFAR10_CLASSES.contains(&name.as_str())
        {
            unknown.push(name);
        }
    }
    if !unknown.is_empty() {
        unknown.sort();
        return Err(DatasetError::UnknownLayout {
            path: root.to_path_buf(),
            reason: format!(
                "folders {unknown:?} are not CIFAR-10 class names; an image folder needs <root>/<class>/*.png with classes {CIFAR10_CLASSES:?}"
            ),
        });
    }
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for (class, name) in CIFAR10_CLASSES.iter().enumerate() {
        let dir = root.join(name);
        if !dir.is_dir() {
            continue;
        }
        let mut files: Vec<PathBuf> = fs::read_dir(&dir)
            .map_err(|e| DatasetError::io(&dir, "list directory", e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("png")))
            .filter(|p| {
                let file = p
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let hidden = file.starts_with('.');
                let cifar_origin = file.starts_with(CINIC_CIFAR_PREFIX);
                !hidden && (!imagenet_only || !cifar_origin)
            })
            .collect();
        files.sort();
        for file in files {
            images.extend_from_slice(&read_png_32(&file)?);
            labels.push(class as u32);
        }
    }
    if labels.is_empty() {
        return Err(DatasetError::UnknownLayout {
            path: root.to_path_buf(),
            reason: format!(
                "no .png images found in the class folders{}",
                if imagenet_only {
                    " (after leaving out cifar10-* files)"
                } else {
                    ""
                }
            ),
        });
    }
    Dataset::new(DatasetParts::cifar10(images, labels))
}

/// Reads one 32×32 PNG as 3072 RGB bytes (HWC).
pub fn read_png_32(path: &Path) -> Result<Vec<u8>> {
    let img = image::open(path).map_err(|e| DatasetError::Image {
        path: path.to_path_buf(),
        reason: format!("cannot decode as PNG: {e}"),
    })?;
    if img.width() as usize != IMAGE_SIZE || img.height() as usize != IMAGE_SIZE {
        return Err(DatasetError::Image {
            path: path.to_path_buf(),
            reason: format!("image is {}×{}, expected 32×32", img.width(), img.height()),
        });
    }
    let rgb = img.to_rgb8().into_raw();
    debug_assert_eq!(rgb.len(), IMAGE_SIZE * IMAGE_SIZE * CHANNELS);
    Ok(rgb)
}

/// File names of the original Python project's `.npy` layout.
pub mod original {
    /// Train images: float N×3×32×32 in [0, 1] (the 10,000 CIFAR-10 test images).
    pub const TRAIN_IMAGES: &str = "train10k_images.npy";
    /// Train labels.
    pub const TRAIN_LABELS: &str = "train10k_labels.npy";
    /// CIFAR-10H human label distributions for the train images.
    pub const TRAIN_HUMAN: &str = "cifar10h-probs.npy";
    /// Validation images (the 50,000 CIFAR-10 training images).
    pub const VAL_IMAGES: &str = "test50k_images.npy";
    /// Validation labels.
    pub const VAL_LABELS: &str = "test50k_labels.npy";
    /// ImageNet-far images: N×32×32×3 in [0, 255].
    pub const IMAGENET_FAR_IMAGES: &str = "test_imagenetfar_images.npy";
    /// ImageNet-far labels.
    pub const IMAGENET_FAR_LABELS: &str = "test_imagenetfar_labels.npy";

    /// (split name, images, labels, human) of the layout.
    pub const SPLITS: [(&str, &str, &str, Option<&str>); 3] = [
        ("train", TRAIN_IMAGES, TRAIN_LABELS, Some(TRAIN_HUMAN)),
        ("val", VAL_IMAGES, VAL_LABELS, None),
        (
            "imagenet_far",
            IMAGENET_FAR_IMAGES,
            IMAGENET_FAR_LABELS,
            None,
        ),
    ];
}

/// Loads arrays of `.npy` files as a CIFAR-10 dataset (class names and normalisation of
/// CIFAR-10), checking that their row counts agree.
pub fn load_npy_arrays(
    images: &Path,
    labels: &Path,
    human: Option<&Path>,
    range: ImageRange,
    class_names: Vec<String>,
    normalization: Normalization,
) -> Result<Dataset> {
    let classes = class_names.len();
    let pixels = read_images(images, range)?;
    let n = pixels.len() / IMAGE_BYTES;
    let hard = read_labels(labels, classes)?;
    check_rows(images, "images", n, labels, "labels", hard.len())?;
    let human = match human {
        Some(path) => {
            let rows = read_human(path, classes)?;
            check_rows(
                images,
                "images",
                n,
                path,
                "human label rows",
                rows.len() / classes,
            )?;
            Some(rows)
        }
        None => None,
    };
    Dataset::new(DatasetParts {
        images: pixels,
        labels: hard,
        human,
        ids: None,
        class_names,
        normalization,
    })
}

pub(crate) fn check_rows(
    left: &Path,
    left_role: &'static str,
    left_rows: usize,
    right: &Path,
    right_role: &'static str,
    right_rows: usize,
) -> Result<()> {
    if left_rows != right_rows {
        return Err(DatasetError::LengthMismatch {
            left: left.to_path_buf(),
            left_role,
            left_rows,
            right: right.to_path_buf(),
            right_role,
            right_rows,
        });
    }
    Ok(())
}
