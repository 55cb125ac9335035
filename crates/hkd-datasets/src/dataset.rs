//! The in-memory dataset: compact u8 images, hard labels, optional human labels.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{DatasetError, Result};
use crate::npy::human_row_problem;
use crate::rng::{Purpose, below, stream};
use crate::{CHANNELS, CIFAR10_CLASSES, IMAGE_BYTES};

/// Per-channel normalisation applied to pixels in [0, 1]: `(x - mean[c]) / std[c]`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalization {
    /// Mean of R, G, B in [0, 1] units.
    pub mean: [f32; 3],
    /// Standard deviation of R, G, B in [0, 1] units.
    pub std: [f32; 3],
}

impl Normalization {
    /// The constants of the original project (and of most CIFAR-10 code):
    /// mean (0.4914, 0.4822, 0.4465), std (0.2023, 0.1994, 0.2010).
    pub const CIFAR10: Normalization = Normalization {
        mean: [0.4914, 0.4822, 0.4465],
        std: [0.2023, 0.1994, 0.2010],
    };

    /// CIFAR-100's channel statistics as RepDistiller and mdistiller normalise with:
    /// mean (0.5071, 0.4867, 0.4408), std (0.2675, 0.2565, 0.2761).
    pub const CIFAR100: Normalization = Normalization {
        mean: [0.5071, 0.4867, 0.4408],
        std: [0.2675, 0.2565, 0.2761],
    };

    /// Mean 0, std 1: leaves pixels in [0, 1].
    pub const IDENTITY: Normalization = Normalization {
        mean: [0.0; 3],
        std: [1.0; 3],
    };

    /// Checks that every std is positive and every value finite.
    pub fn validate(&self) -> Result<()> {
        if self.mean.iter().chain(&self.std).any(|v| !v.is_finite())
            || self.std.iter().any(|&s| s <= 0.0)
        {
            return Err(DatasetError::invalid(
                "normalization",
                format!(
                    "mean {:?} / std {:?}: every value must be finite and every std > 0",
                    self.mean, self.std
                ),
            ));
        }
        Ok(())
    }

    /// The normalised f32 value of every byte, per channel: `lut[c][b] = (b/255 - mean[c]) / std[c]`.
    ///
    /// This is exactly what torchvision's `ToTensor` + `Normalize` compute in f32.
    pub fn lookup_table(&self) -> [[f32; 256]; 3] {
        let mut lut = [[0f32; 256]; 3];
        for (c, table) in lut.iter_mut().enumerate() {
            for (b, v) in table.iter_mut().enumerate() {
                *v = (b as f32 / 255.0 - self.mean[c]) / self.std[c];
            }
        }
        lut
    }

    /// Normalises a tensor of pixels in [0, 1] shaped N×3×H×W (e.g. images perturbed by
    /// an attack in pixel space) the same way batches are normalised.
    pub fn apply(&self, pixels: &candle_core::Tensor) -> candle_core::Result<candle_core::Tensor> {
        let device = pixels.device();
        let mean = candle_core::Tensor::from_slice(&self.mean, (1, 3, 1, 1), device)?
            .to_dtype(pixels.dtype())?;
        let std = candle_core::Tensor::from_slice(&self.std, (1, 3, 1, 1), device)?
            .to_dtype(pixels.dtype())?;
        pixels.broadcast_sub(&mean)?.broadcast_div(&std)
    }
}

impl Default for Normalization {
    fn default() -> Self {
        Normalization::CIFAR10
    }
}

/// One split of a dataset, in memory.
///
/// Images are kept as compact u8 HWC (N×32×32×3, 3 KiB per image); they become
/// normalised f32 NCHW only per batch (see [`crate::Loader`]). Human labels, when present,
/// are N rows of `num_classes()` probabilities (kept in f64, exactly as read).
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    images: Vec<u8>,
    labels: Vec<u32>,
    human: Option<Vec<f64>>,
    ids: Option<Vec<i64>>,
    class_names: Vec<String>,
    normalization: Normalization,
}

/// Inputs of [`Dataset::new`].
#[derive(Clone, Debug)]
pub struct DatasetParts {
    /// N×32×32×3 bytes, HWC, RGB.
    pub images: Vec<u8>,
    /// N labels in `0..class_names.len()`.
    pub labels: Vec<u32>,
    /// Optional N×C human label distributions (rows sum to 1 ± 1e-3).
    pub human: Option<Vec<f64>>,
    /// Optional N unique ids saying where each image came from (e.g. its CIFAR-10 index).
    pub ids: Option<Vec<i64>>,
    /// Class names; their number is the number of classes.
    pub class_names: Vec<String>,
    /// Normalisation used for batches.
    pub normalization: Normalization,
}

impl DatasetParts {
    /// Parts with CIFAR-10 class names and normalisation, no human labels, no ids.
    pub fn cifar10(images: Vec<u8>, labels: Vec<u32>) -> Self {
        DatasetParts {
            images,
            labels,
            human: None,
            ids: None,
            class_names: CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect(),
            normalization: Normalization::CIFAR10,
        }
    }
}

impl Dataset {
    /// Builds a dataset from parts, checking every invariant: whole images, one label per
    /// image in range, human rows that are distributions over the classes, unique ids,
    /// a usable normalisation.
    pub fn new(parts: DatasetParts) -> Result<Self> {
        let DatasetParts {
            images,
            labels,
            human,
            ids,
            class_names,
            normalization,
        } = parts;
        let what = "dataset";
        if class_names.is_empty() {
            return Err(DatasetError::invalid(
                what,
                "no class names; a dataset needs at least one class",
            ));
        }
        let classes = class_names.len();
        if images.len() % IMAGE_BYTES != 0 {
            return Err(DatasetError::invalid(
                what,
                format!(
                    "{} image bytes is not a whole number of 32×32×3 images ({IMAGE_BYTES} bytes each)",
                    images.len()
                ),
            ));
        }
        let n = images.len() / IMAGE_BYTES;
        if labels.len() != n {
            return Err(DatasetError::invalid(
                what,
                format!(
                    "{n} images but {} labels; expected one label per image",
                    labels.len()
                ),
            ));
        }
        if let Some((row, label)) = labels
            .iter()
            .enumerate()
            .find(|(_, l)| **l as usize >= classes)
        {
            return Err(DatasetError::invalid(
                what,
                format!("label at row {row} is {label}, expected 0..{classes}"),
            ));
        }
        if let Some(h) = &human {
            if h.len() != n * classes {
                return Err(DatasetError::invalid(
                    what,
                    format!(
                        "{} human label values, expected {n} images × {classes} classes = {}",
                        h.len(),
                        n * classes
                    ),
                ));
            }
            for (row, chunk) in h.chunks_exact(classes).enumerate() {
                if let Some(problem) = human_row_problem(chunk) {
                    return Err(DatasetError::invalid(
                        what,
                        format!("human label row {row} {problem}"),
                    ));
                }
            }
        }
        if let Some(ids) = &ids {
            if ids.len() != n {
                return Err(DatasetError::invalid(
                    what,
                    format!(
                        "{n} images but {} ids; expected one id per image",
                        ids.len()
                    ),
                ));
            }
            let mut seen = HashSet::with_capacity(n);
            if let Some(dup) = ids.iter().find(|id| !seen.insert(**id)) {
                return Err(DatasetError::invalid(
                    what,
                    format!("id {dup} appears more than once; ids must be unique"),
                ));
            }
        }
        normalization.validate()?;
        Ok(Dataset {
            images,
            labels,
            human,
            ids,
            class_names,
            normalization,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of classes (= number of class names = width of human rows).
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// Class names in class-id order.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// The normalisation batches use.
    pub fn normalization(&self) -> Normalization {
        self.normalization
    }

    /// Replaces the normalisation.
    pub fn with_normalization(mut self, normalization: Normalization) -> Result<Self> {
        normalization.validate()?;
        self.normalization = normalization;
        Ok(self)
    }

    /// All pixels: N×32×32×3 bytes, HWC, RGB.
    pub fn images(&self) -> &[u8] {
        &self.images
    }

    /// The 3072 bytes (32×32×3 HWC) of image `i`; panics if `i >= len()`.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * IMAGE_BYTES..(i + 1) * IMAGE_BYTES]
    }

    /// Hard labels.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// Human label distributions, N×C row-major, if the split has them.
    pub fn human(&self) -> Option<&[f64]> {
        self.human.as_deref()
    }

    /// Human label row of image `i`, if the split has human labels; panics if `i >= len()`.
    pub fn human_row(&self, i: usize) -> Option<&[f64]> {
        let c = self.num_classes();
        self.human.as_ref().map(|h| &h[i * c..(i + 1) * c])
    }

    /// Ids (provenance of each image, e.g. its index in CIFAR-10), if recorded.
    pub fn ids(&self) -> Option<&[i64]> {
        self.ids.as_deref()
    }

    /// Takes the parts back out.
    pub fn into_parts(self) -> DatasetParts {
        DatasetParts {
            images: self.images,
            labels: self.labels,
            human: self.human,
            ids: self.ids,
            class_names: self.class_names,
            normalization: self.normalization,
        }
    }

    /// A new dataset of the given rows, in the given order.
    pub fn select(&self, rows: &[usize]) -> Result<Dataset> {
        if let Some(&bad) = rows.iter().find(|&&r| r >= self.len()) {
            return Err(DatasetError::invalid(
                "row selection",
                format!(
                    "row {bad} is out of range: the dataset has {} rows",
                    self.len()
                ),
            ));
        }
        let c = self.num_classes();
        let mut images = Vec::with_capacity(rows.len() * IMAGE_BYTES);
        for &r in rows {
            images.extend_from_slice(self.image(r));
        }
        Dataset::new(DatasetParts {
            images,
            labels: rows.iter().map(|&r| self.labels[r]).collect(),
            human: self.human.as_ref().map(|h| {
                rows.iter()
                    .flat_map(|&r| h[r * c..(r + 1) * c].iter().copied())
                    .collect()
            }),
            ids: self
                .ids
                .as_ref()
                .map(|ids| rows.iter().map(|&r| ids[r]).collect()),
            class_names: self.class_names.clone(),
            normalization: self.normalization,
        })
    }

    /// Number of images per class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes()];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }

    /// Rows of a stratified, seeded random subset, in ascending order.
    ///
    /// Within each class the rows are shuffled with a ChaCha8 stream keyed by
    /// (`seed`, class) and the first k are kept, so the same seed gives the same subset.
    pub fn stratified_rows(&self, size: SubsetSize, seed: u64) -> Result<Vec<usize>> {
        let counts = self.class_counts();
        let take: Vec<usize> = match size {
            SubsetSize::PerClass(k) => {
                if let Some((c, &have)) = counts.iter().enumerate().find(|(_, have)| **have < k) {
                    return Err(DatasetError::invalid(
                        "stratified subset",
                        format!(
                            "class {c} ({}) has {have} images, fewer than the {k} per class asked for",
                            self.class_names[c]
                        ),
                    ));
                }
                vec![k; counts.len()]
            }
            SubsetSize::Total(total) => {
                if total > self.len() {
                    return Err(DatasetError::invalid(
                        "stratified subset",
                        format!(
                            "{total} images asked for, but the dataset has only {}",
                            self.len()
                        ),
                    ));
                }
                proportional_allocation(&counts, total)
            }
        };
        let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); counts.len()];
        for (row, &l) in self.labels.iter().enumerate() {
            by_class[l as usize].push(row);
        }
        let mut rows = Vec::with_capacity(take.iter().sum());
        for (class, members) in by_class.iter_mut().enumerate() {
            let mut rng = stream(seed, Purpose::Subset, class as u64, 0);
            for i in (1..members.len()).rev() {
                let j = below(&mut rng, (i + 1) as u32) as usize;
                members.swap(i, j);
            }
            rows.extend_from_slice(&members[..take[class]]);
        }
        rows.sort_unstable();
        Ok(rows)
    }

    /// Splits the dataset into a stratified, seeded held-out part of `held_out` images
    /// ([`Dataset::stratified_rows`] with [`SubsetSize::Total`]) and the rest, both in
    /// their original order: `(rest, held_out)`. The two share no image.
    pub fn holdout(&self, held_out: usize, seed: u64) -> Result<(Dataset, Dataset)> {
        let held = self.stratified_rows(SubsetSize::Total(held_out), seed)?;
        let mut is_held = vec![false; self.len()];
        for &r in &held {
            is_held[r] = true;
        }
        let rest: Vec<usize> = (0..self.len()).filter(|&r| !is_held[r]).collect();
        Ok((self.select(&rest)?, self.select(&held)?))
    }

    /// The same images and hard labels with the human label rows permuted among the
    /// images of each hard class (seeded): the classes' distributions of human rows, and so
    /// the targets' softness, are unchanged, but which image gets which row carries no
    /// information. A control for "human information" against "softer targets".
    pub fn shuffle_human_within_class(&self, seed: u64) -> Result<Dataset> {
        let Some(human) = &self.human else {
            return Err(DatasetError::invalid(
                "human label shuffle",
                "the split has no human labels to shuffle",
            ));
        };
        let classes = self.num_classes();
        let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
        for (row, &l) in self.labels.iter().enumerate() {
            by_class[l as usize].push(row);
        }
        let mut shuffled = human.clone();
        for (class, members) in by_class.iter().enumerate() {
            let mut order = members.clone();
            let mut rng = stream(seed, Purpose::HumanShuffle, class as u64, 0);
            for i in (1..order.len()).rev() {
                let j = below(&mut rng, (i + 1) as u32) as usize;
                order.swap(i, j);
            }
            for (&to, &from) in members.iter().zip(&order) {
                shuffled[to * classes..(to + 1) * classes]
                    .copy_from_slice(&human[from * classes..(from + 1) * classes]);
            }
        }
        let mut parts = self.clone().into_parts();
        parts.human = Some(shuffled);
        Dataset::new(parts)
    }

    /// Statistics `hkd-data inspect` prints.
    pub fn summary(&self) -> SplitSummary {
        let n = self.len();
        let mut sum = [0f64; 3];
        let mut sum_sq = [0f64; 3];
        // Exact integer sums per channel, then mean/std in [0,1] units.
        let mut hist = [[0u64; 256]; 3];
        for px in self.images.chunks_exact(CHANNELS) {
            for c in 0..CHANNELS {
                hist[c][px[c] as usize] += 1;
            }
        }
        for c in 0..CHANNELS {
            for (b, &count) in hist[c].iter().enumerate() {
                let v = b as f64 / 255.0;
                sum[c] += v * count as f64;
                sum_sq[c] += v * v * count as f64;
            }
        }
        let pixels = (n * IMAGE_BYTES / CHANNELS) as f64;
        let mut pixel_mean = [0f64; 3];
        let mut pixel_std = [0f64; 3];
        if n > 0 {
            for c in 0..CHANNELS {
                pixel_mean[c] = sum[c] / pixels;
                pixel_std[c] = (sum_sq[c] / pixels - pixel_mean[c] * pixel_mean[c])
                    .max(0.0)
                    .sqrt();
            }
        }
        let human = self
            .human
            .as_ref()
            .map(|h| human_summary(h, self.num_classes(), &self.labels));
        SplitSummary {
            count: n,
            class_counts: self.class_counts(),
            pixel_mean,
            pixel_std,
            human,
        }
    }

    /// SHA-256 (hex) of the content: pixels, labels, human labels, ids, class names and
    /// normalisation. The same data gives the same hash whatever format it was read from.
    pub fn content_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"hkd-dataset-content-v1\0");
        h.update((self.len() as u64).to_le_bytes());
        h.update(&self.images);
        for l in &self.labels {
            h.update(l.to_le_bytes());
        }
        match &self.human {
            Some(rows) => {
                h.update(b"human\0");
                for v in rows {
                    h.update(v.to_le_bytes());
                }
            }
            None => h.update(b"no-human\0"),
        }
        match &self.ids {
            Some(ids) => {
                h.update(b"ids\0");
                for v in ids {
                    h.update(v.to_le_bytes());
                }
            }
            None => h.update(b"no-ids\0"),
        }
        for name in &self.class_names {
            h.update(name.as_bytes());
            h.update(b"\0");
        }
        for v in self
            .normalization
            .mean
            .iter()
            .chain(&self.normalization.std)
        {
            h.update(v.to_le_bytes());
        }
        hex(&h.finalize())
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How large a stratified subset is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubsetSize {
    /// Exactly k images of every class (an error if a class has fewer).
    PerClass(usize),
    /// This many images in all, split over classes in proportion to their counts
    /// (largest remainders, ties to the lower class id).
    Total(usize),
}

fn proportional_allocation(counts: &[usize], total: usize) -> Vec<usize> {
    let n: usize = counts.iter().sum();
    if n == 0 {
        return vec![0; counts.len()];
    }
    let mut take: Vec<usize> = counts.iter().map(|&c| c * total / n).collect();
    let mut remainders: Vec<(usize, usize)> = counts
        .iter()
        .enumerate()
        .map(|(i, &c)| (c * total % n, i))
        .collect();
    // Largest remainder first; ties go to the lower class id.
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut left = total - take.iter().sum::<usize>();
    for &(_, i) in &remainders {
        if left == 0 {
            break;
        }
        if take[i] < counts[i] {
            take[i] += 1;
            left -= 1;
        }
    }
    take
}

/// Per-split statistics (see [`Dataset::summary`]).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SplitSummary {
    /// Number of images.
    pub count: usize,
    /// Images per class, in class-id order.
    pub class_counts: Vec<usize>,
    /// Per-channel pixel mean in [0, 1] units (comparable with [`Normalization::mean`]).
    pub pixel_mean: [f64; 3],
    /// Per-channel pixel standard deviation in [0, 1] units (population std).
    pub pixel_std: [f64; 3],
    /// Human label statistics, when the split has human labels.
    pub human: Option<HumanSummary>,
}

/// Statistics of the human label distributions of a split.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HumanSummary {
    /// Mean Shannon entropy of the rows, in nats (0·ln 0 = 0).
    pub mean_entropy_nats: f64,
    /// Share of rows where one class has all the probability (every annotator agreed).
    pub unanimous_share: f64,
    /// Share of rows whose most likely class (lowest id on ties) equals the hard label.
    pub majority_agrees_with_label: f64,
    /// Mean probability people gave the hard label: how soft the human targets are
    /// relative to it (label smoothing α gives 1 − α + α/C).
    pub mean_true_class_probability: f64,
}

/// Shannon entropy in nats of a probability row (0·ln 0 = 0).
pub fn entropy_nats(row: &[f64]) -> f64 {
    row.iter().filter(|&&p| p > 0.0).map(|&p| -p * p.ln()).sum()
}

/// Human label statistics of N×`classes` rows with their hard labels.
pub fn human_summary(rows: &[f64], classes: usize, labels: &[u32]) -> HumanSummary {
    let n = rows.len() / classes.max(1);
    if n == 0 {
        return HumanSummary {
            mean_entropy_nats: 0.0,
            unanimous_share: 0.0,
            majority_agrees_with_label: 0.0,
            mean_true_class_probability: 0.0,
        };
    }
    let mut entropy = 0.0;
    let mut unanimous = 0usize;
    let mut agree = 0usize;
    let mut true_class = 0.0;
    for (i, row) in rows.chunks_exact(classes).enumerate() {
        entropy += entropy_nats(row);
        if let Some(&l) = labels.get(i) {
            true_class += row.get(l as usize).copied().unwrap_or(0.0);
        }
        let (arg, max) =
            row.iter()
                .enumerate()
                .fold((0, f64::NEG_INFINITY), |(bi, bv), (j, &v)| {
                    if v > bv { (j, v) } else { (bi, bv) }
                });
        if max >= 1.0 - 1e-9 {
            unanimous += 1;
        }
        if labels.get(i) == Some(&(arg as u32)) {
            agree += 1;
        }
    }
    HumanSummary {
        mean_entropy_nats: entropy / n as f64,
        unanimous_share: unanimous as f64 / n as f64,
        majority_agrees_with_label: agree as f64 / n as f64,
        mean_true_class_probability: true_class / n as f64,
    }
}
