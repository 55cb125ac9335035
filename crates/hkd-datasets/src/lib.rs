//! CIFAR-10, CIFAR-10H, CINIC-10 and CIFAR-100 datasets for knowledge distillation: every format in,
//! compact u8 in memory, augmented normalised batches out.
//!
//! - [`DatasetDir::open`] reads a dataset directory in any supported layout (our
//!   `dataset.toml`, the original project's `.npy` files, the CIFAR-10 binaries, CINIC-10
//!   style PNG folders) and [`DatasetDir::load_split`] gives a validated [`Dataset`].
//! - [`Loader`] turns a dataset into batches of candle tensors: seeded shuffling, the
//!   original augmentation (random crop from a 4-zero-padded image, random horizontal
//!   flip), normalisation, a background thread one batch ahead. Every batch is a pure
//!   function of (seed, epoch, batch index).
//! - [`write_split`] writes our layout; [`NpyImport`] and [`append_by_id`] build splits
//!   from arrays; [`Dataset::stratified_rows`] cuts seeded stratified subsets.
//!
//! The layouts and the manifest are documented in `docs/datasets.md`.

#![forbid(unsafe_code)]

mod cifar100;
mod dataset;
mod dir;
mod error;
mod formats;
mod import;
mod loader;
mod npy;
mod rng;

pub use cifar100::{
    CIFAR100_COARSE_CLASSES, CIFAR100_FINE_CLASSES, CIFAR100_RECORD_BYTES, Cifar100Part,
    Cifar100Release, Cifar100Split, PreparedCifar100, prepare_cifar100,
};
pub use dataset::{
    Dataset, DatasetParts, HumanSummary, Normalization, SplitSummary, SubsetSize, entropy_nats,
    human_summary,
};
pub use dir::{
    DatasetDir, Layout, MANIFEST_FILE, MANIFEST_VERSION, Manifest, OpenOptions, SplitEntry,
    check_split_name, open_split, write_coarse_labels, write_manifest, write_split,
};
pub use error::{DatasetError, Result};
pub use formats::{
    CIFAR10_RECORD_BYTES, CIFAR10_TEST_FILE, CIFAR10_TRAIN_FILES, CINIC_CIFAR_PREFIX, Cifar10Part,
    find_cifar10_binary_dir, load_cifar10_binary, load_image_folder, load_npy_arrays, original,
    read_cifar10_batches, read_png_32,
};
pub use import::{AppendStats, NpyImport, append_by_id, csv_rows_where, parse_rows};
pub use loader::{
    Augmentation, Batch, CROP_PADDING, EpochIter, HostBatch, Loader, LoaderConfig, augment_image,
};
pub use npy::{HUMAN_SUM_TOLERANCE, ImageRange};

/// Image height and width.
pub const IMAGE_SIZE: usize = 32;
/// Colour channels (RGB).
pub const CHANNELS: usize = 3;
/// Bytes of one image: 32×32×3.
pub const IMAGE_BYTES: usize = IMAGE_SIZE * IMAGE_SIZE * CHANNELS;

/// CIFAR-10's class names in class-id order (CIFAR-10H and CINIC-10 use the same order).
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Default class names: CIFAR-10's, as owned strings.
pub fn cifar10_class_names() -> Vec<String> {
    CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect()
}

/// Reads and validates a human-label `.npy` (float32/float64 N×`classes` distributions,
/// or integer vote counts, normalised per row).
pub fn read_human_npy(path: &std::path::Path, classes: usize) -> Result<Vec<f64>> {
    npy::read_human(path, classes)
}

/// Reads and validates a hard-label `.npy` (labels in `0..classes`).
pub fn read_labels_npy(path: &std::path::Path, classes: usize) -> Result<Vec<u32>> {
    npy::read_labels(path, classes)
}

/// Reads an images `.npy` (u8/f32/f64, N×32×32×3 or N×3×32×32) as u8 HWC bytes.
pub fn read_images_npy(path: &std::path::Path, range: ImageRange) -> Result<Vec<u8>> {
    npy::read_images(path, range)
}

/// Writes a C-order `.npy` of `shape` atomically (temporary file in the same directory,
/// then rename). `T` is any plain number type npyz can write (`u8`, `i64`, `f32`, `f64`, …).
pub fn write_npy<T: npyz::AutoSerialize + Copy>(
    path: &std::path::Path,
    shape: &[usize],
    data: &[T],
) -> Result<()> {
    let count: usize = shape.iter().product();
    if count != data.len() {
        return Err(DatasetError::invalid(
            path.display().to_string(),
            format!("shape {shape:?} holds {count} values, got {}", data.len()),
        ));
    }
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    npy::write_npy(path, &shape, data)
}

/// Reads a `.npy` of non-negative integer row numbers (any integer dtype, shape (N,)).
pub fn read_index_npy(path: &std::path::Path) -> Result<Vec<usize>> {
    npy::read_ids(path, "row indices")?
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            usize::try_from(v).map_err(|_| {
                DatasetError::invalid(
                    path.display().to_string(),
                    format!("entry {i} is {v}; expected non-negative row numbers"),
                )
            })
        })
        .collect()
}
