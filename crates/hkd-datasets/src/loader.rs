//! Batches for training and evaluation: seeded shuffling, the original augmentation on
//! u8 pixels, normalisation, candle tensors, and a background thread that prepares the
//! next batch while the model works on the current one.
//!
//! Every random decision is a pure function of the loader's seed, the epoch and the batch
//! index (see [`Loader::order`] and [`Loader::augmentations`]), so batch `k` of epoch `e`
//! is the same bit for bit whether it is made on its own, by an iterator started at batch 0,
//! or by one resumed at batch `k`.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use candle_core::{Device, Tensor};
use rand_chacha::rand_core::RngCore;

use crate::dataset::Dataset;
use crate::error::{DatasetError, Result};
use crate::rng::{Purpose, below, permutation, stream};
use crate::{CHANNELS, IMAGE_BYTES, IMAGE_SIZE};

/// Zero padding on each side before the random crop (the original's `RandomCrop(32, padding=4)`).
pub const CROP_PADDING: usize = 4;

/// How a [`Loader`] makes batches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoaderConfig {
    /// Images per batch (the last batch may be smaller unless `drop_last`).
    pub batch_size: usize,
    /// Visit the images in a new seeded random order every epoch.
    pub shuffle: bool,
    /// Random 32×32 crop of the image zero-padded by 4, then a random horizontal flip.
    pub augment: bool,
    /// Normalise with the dataset's mean/std; when false images stay in [0, 1].
    pub normalize: bool,
    /// Drop the last batch of an epoch when it is smaller than `batch_size`.
    pub drop_last: bool,
    /// Seed of the shuffling and augmentation streams.
    pub seed: u64,
    /// Batches prepared ahead by a background thread; 0 makes each batch on the
    /// caller's thread when it is asked for.
    pub prefetch: usize,
}

impl LoaderConfig {
    /// Training: shuffle, augment, normalise, keep the last partial batch, one batch ahead.
    pub fn train(batch_size: usize, seed: u64) -> Self {
        LoaderConfig {
            batch_size,
            shuffle: true,
            augment: true,
            normalize: true,
            drop_last: false,
            seed,
            prefetch: 2,
        }
    }

    /// Evaluation: dataset order, no augmentation, normalised, every image once.
    pub fn eval(batch_size: usize) -> Self {
        LoaderConfig {
            batch_size,
            shuffle: false,
            augment: false,
            normalize: true,
            drop_last: false,
            seed: 0,
            prefetch: 2,
        }
    }
}

/// The random augmentation of one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Augmentation {
    /// Row of the crop's top edge in the 40×40 zero-padded image, 0..=8 (4 = no shift).
    pub top: u8,
    /// Column of the crop's left edge in the padded image, 0..=8 (4 = no shift).
    pub left: u8,
    /// Mirror left–right after cropping.
    pub flip: bool,
}

impl Augmentation {
    /// No crop shift and no flip.
    pub const NONE: Augmentation = Augmentation {
        top: CROP_PADDING as u8,
        left: CROP_PADDING as u8,
        flip: false,
    };
}

/// Applies an augmentation to one u8 HWC image (3072 bytes) into `dst` (3072 bytes, HWC).
///
/// `dst[y][x] = padded[y + top][x' + left]` where `x' = 31 - x` when flipping, and the
/// padded image is the source surrounded by 4 rows/columns of zeros.
pub fn augment_image(src: &[u8], aug: Augmentation, dst: &mut [u8]) {
    let s = IMAGE_SIZE as isize;
    for y in 0..IMAGE_SIZE {
        for x in 0..IMAGE_SIZE {
            let xin = if aug.flip { IMAGE_SIZE - 1 - x } else { x };
            let sy = y as isize + aug.top as isize - CROP_PADDING as isize;
            let sx = xin as isize + aug.left as isize - CROP_PADDING as isize;
            for c in 0..CHANNELS {
                dst[(y * IMAGE_SIZE + x) * CHANNELS + c] =
                    if (0..s).contains(&sy) && (0..s).contains(&sx) {
                        src[(sy as usize * IMAGE_SIZE + sx as usize) * CHANNELS + c]
                    } else {
                        0
                    };
            }
        }
    }
}

/// One batch on the host, before it becomes tensors.
#[derive(Clone, Debug, PartialEq)]
pub struct HostBatch {
    /// Epoch the batch belongs to.
    pub epoch: u64,
    /// Position of the batch in its epoch (0-based).
    pub index: usize,
    /// n×3×32×32 f32, NCHW: normalised (or in [0, 1] when the loader does not normalise).
    pub images: Vec<f32>,
    /// n hard labels.
    pub labels: Vec<u32>,
    /// n×C human label distributions, if the dataset has them.
    pub human: Option<Vec<f32>>,
    /// The dataset rows of the batch, in batch order.
    pub indices: Vec<usize>,
    /// Number of classes (width of `human`).
    pub num_classes: usize,
}

impl HostBatch {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the batch holds no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Moves the batch into tensors on `device` (on the CPU this copies nothing).
    pub fn to_device(self, device: &Device) -> Result<Batch> {
        let n = self.len();
        let images = Tensor::from_vec(self.images, (n, CHANNELS, IMAGE_SIZE, IMAGE_SIZE), device)?;
        let labels = Tensor::from_vec(self.labels, n, device)?;
        let human = match self.human {
            Some(h) => Some(Tensor::from_vec(h, (n, self.num_classes), device)?),
            None => None,
        };
        Ok(Batch {
            epoch: self.epoch,
            index: self.index,
            images,
            labels,
            human,
            indices: self.indices,
        })
    }
}

/// One batch as candle tensors.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Epoch the batch belongs to.
    pub epoch: u64,
    /// Position of the batch in its epoch (0-based).
    pub index: usize,
    /// f32, n×3×32×32.
    pub images: Tensor,
    /// u32, n.
    pub labels: Tensor,
    /// f32, n×C, if the dataset has human labels.
    pub human: Option<Tensor>,
    /// The dataset rows of the batch, in batch order.
    pub indices: Vec<usize>,
}

impl Batch {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// True when the batch holds no images.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

struct Inner {
    dataset: Arc<Dataset>,
    config: LoaderConfig,
    lut: [[f32; 256]; 3],
}

/// Makes batches of one dataset split. Cheap to clone (the dataset is shared).
#[derive(Clone)]
pub struct Loader {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("images", &self.inner.dataset.len())
            .field("config", &self.inner.config)
            .finish()
    }
}

impl Loader {
    /// A loader over `dataset`; the batch size must be at least 1.
    pub fn new(dataset: Arc<Dataset>, config: LoaderConfig) -> Result<Self> {
        if config.batch_size == 0 {
            return Err(DatasetError::invalid(
                "loader config",
                "batch_size is 0, expected at least 1",
            ));
        }
        if dataset.len() > u32::MAX as usize {
            return Err(DatasetError::invalid(
                "loader",
                format!(
                    "{} images is more than a loader can index (2^32 - 1)",
                    dataset.len()
                ),
            ));
        }
        let lut = if config.normalize {
            dataset.normalization().lookup_table()
        } else {
            crate::Normalization::IDENTITY.lookup_table()
        };
        Ok(Loader {
            inner: Arc::new(Inner {
                dataset,
                config,
                lut,
            }),
        })
    }

    /// The dataset.
    pub fn dataset(&self) -> &Arc<Dataset> {
        &self.inner.dataset
    }

    /// The configuration.
    pub fn config(&self) -> &LoaderConfig {
        &self.inner.config
    }

    /// Batches per epoch.
    pub fn num_batches(&self) -> usize {
        let n = self.inner.dataset.len();
        let bs = self.inner.config.batch_size;
        if self.inner.config.drop_last {
            n / bs
        } else {
            n.div_ceil(bs)
        }
    }

    /// The dataset rows in the order epoch `epoch` visits them: a Fisher–Yates
    /// permutation driven by ChaCha8 keyed by (seed, epoch) when shuffling, else 0..N.
    pub fn order(&self, epoch: u64) -> Vec<u32> {
        let n = self.inner.dataset.len();
        if self.inner.config.shuffle {
            permutation(self.inner.config.seed, epoch, n)
        } else {
            (0..n as u32).collect()
        }
    }

    /// The augmentations of the `len` images of batch `index` of `epoch`, drawn from the
    /// ChaCha8 stream keyed by (seed, epoch, index): per image top, left (each 0..=8), flip.
    pub fn augmentations(&self, epoch: u64, index: usize, len: usize) -> Vec<Augmentation> {
        Loader::augmentations_of(self.inner.config.seed, epoch, index, len)
    }

    /// Makes batch `index` of `epoch` on this thread, on the host.
    pub fn host_batch(&self, epoch: u64, index: usize) -> Result<HostBatch> {
        let order = self.order(epoch);
        self.inner.make(epoch, &order, index)
    }

    /// Makes batch `index` of `epoch` on this thread, as tensors on `device`.
    pub fn batch(&self, epoch: u64, index: usize, device: &Device) -> Result<Batch> {
        self.host_batch(epoch, index)?.to_device(device)
    }

    /// All batches of `epoch`, in order.
    pub fn epoch(&self, epoch: u64, device: &Device) -> EpochIter {
        self.epoch_from(epoch, 0, device)
    }

    /// The batches of `epoch` from batch `first_batch` on: what a run resumed mid-epoch
    /// needs. Batch k is identical to batch k of [`Loader::epoch`].
    pub fn epoch_from(&self, epoch: u64, first_batch: usize, device: &Device) -> EpochIter {
        let order = Arc::new(self.order(epoch));
        let end = self.num_batches();
        let start = first_batch.min(end);
        let mut iter = EpochIter {
            inner: self.inner.clone(),
            order,
            epoch,
            next: start,
            end,
            device: device.clone(),
            worker: None,
        };
        if self.inner.config.prefetch > 0 && start < end {
            iter.worker = Worker::spawn(&iter);
        }
        iter
    }
}

impl Inner {
    fn make(&self, epoch: u64, order: &[u32], index: usize) -> Result<HostBatch> {
        let bs = self.config.batch_size;
        let n = order.len();
        let start = index.saturating_mul(bs);
        if start >= n {
            return Err(DatasetError::invalid(
                "batch",
                format!(
                    "batch {index} of an epoch with {n} images and batch size {bs} does not exist"
                ),
            ));
        }
        let end = (start + bs).min(n);
        if self.config.drop_last && end - start < bs {
            return Err(DatasetError::invalid(
                "batch",
                format!("batch {index} is a partial batch and the loader drops it (drop_last)"),
            ));
        }
        let indices: Vec<usize> = order[start..end].iter().map(|&i| i as usize).collect();
        let len = indices.len();
        let augs = if self.config.augment {
            Loader::augmentations_of(self.config.seed, epoch, index, len)
        } else {
            vec![Augmentation::NONE; len]
        };
        let mut images = vec![0f32; len * IMAGE_BYTES];
        for ((dst, &row), &aug) in images
            .chunks_exact_mut(IMAGE_BYTES)
            .zip(&indices)
            .zip(&augs)
        {
            write_normalized(self.dataset.image(row), aug, &self.lut, dst);
        }
        let labels = indices.iter().map(|&i| self.dataset.labels()[i]).collect();
        let human = self.dataset.human().map(|_| {
            indices
                .iter()
                .flat_map(|&i| {
                    self.dataset
                        .human_row(i)
                        .unwrap_or(&[])
                        .iter()
                        .map(|&v| v as f32)
                })
                .collect()
        });
        Ok(HostBatch {
            epoch,
            index,
            images,
            labels,
            human,
            indices,
            num_classes: self.dataset.num_classes(),
        })
    }
}

impl Loader {
    fn augmentations_of(seed: u64, epoch: u64, index: usize, len: usize) -> Vec<Augmentation> {
        let mut rng = stream(seed, Purpose::Augment, epoch, index as u64);
        (0..len)
            .map(|_| {
                let top = below(&mut rng, 2 * CROP_PADDING as u32 + 1) as u8;
                let left = below(&mut rng, 2 * CROP_PADDING as u32 + 1) as u8;
                let flip = rng.next_u32() & 1 == 1;
                Augmentation { top, left, flip }
            })
            .collect()
    }
}

/// Crop + flip + normalise one u8 HWC image into 3 f32 planes (CHW) in one pass.
fn write_normalized(src: &[u8], aug: Augmentation, lut: &[[f32; 256]; 3], dst: &mut [f32]) {
    const S: usize = IMAGE_SIZE;
    const PLANE: usize = S * S;
    let top = aug.top as isize - CROP_PADDING as isize;
    let left = aug.left as isize - CROP_PADDING as isize;
    // Output columns x (before flipping) whose source column x + left lies in the image.
    let x0 = (-left).max(0) as usize;
    let x1 = (S as isize - left).min(S as isize) as usize;
    for y in 0..S {
        let sy = y as isize + top;
        for c in 0..CHANNELS {
            let out = &mut dst[c * PLANE + y * S..c * PLANE + (y + 1) * S];
            let zero = lut[c][0];
            if !(0..S as isize).contains(&sy) {
                out.fill(zero);
                continue;
            }
            let row = &src[sy as usize * S * CHANNELS..(sy as usize + 1) * S * CHANNELS];
            let table = &lut[c];
            let first_src = (x0 as isize + left) as usize;
            let pixels = row[first_src * CHANNELS + c..].iter().step_by(CHANNELS);
            if aug.flip {
                out[S - x0..].fill(zero);
                out[..S - x1].fill(zero);
                for (o, &p) in out[S - x1..S - x0].iter_mut().rev().zip(pixels) {
                    *o = table[p as usize];
                }
            } else {
                out[..x0].fill(zero);
                out[x1..].fill(zero);
                for (o, &p) in out[x0..x1].iter_mut().zip(pixels) {
                    *o = table[p as usize];
                }
            }
        }
    }
}

struct Worker {
    receiver: Option<Receiver<Result<HostBatch>>>,
    handle: Option<JoinHandle<()>>,
}

impl Worker {
    fn spawn(iter: &EpochIter) -> Option<Worker> {
        let depth = iter.inner.config.prefetch.saturating_sub(1);
        let (sender, receiver): (SyncSender<Result<HostBatch>>, _) = sync_channel(depth);
        let inner = iter.inner.clone();
        let order = iter.order.clone();
        let (epoch, start, end) = (iter.epoch, iter.next, iter.end);
        let handle = std::thread::Builder::new()
            .name("hkd-batches".into())
            .spawn(move || {
                for index in start..end {
                    let batch = inner.make(epoch, &order, index);
                    if sender.send(batch).is_err() {
                        break; // the iterator was dropped
                    }
                }
            })
            .ok()?; // no thread: the iterator makes batches itself
        Some(Worker {
            receiver: Some(receiver),
            handle: Some(handle),
        })
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Dropping the receiver first makes a blocked `send` fail, so the join cannot hang.
        drop(self.receiver.take());
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// The batches of one epoch, as tensors (see [`Loader::epoch`]). Dropping it mid-epoch
/// stops the background thread.
pub struct EpochIter {
    inner: Arc<Inner>,
    order: Arc<Vec<u32>>,
    epoch: u64,
    next: usize,
    end: usize,
    device: Device,
    worker: Option<Worker>,
}

impl EpochIter {
    /// The next batch on the host, without making tensors.
    pub fn next_host(&mut self) -> Option<Result<HostBatch>> {
        if self.next >= self.end {
            return None;
        }
        let index = self.next;
        self.next += 1;
        let from_worker = self
            .worker
            .as_ref()
            .and_then(|w| w.receiver.as_ref())
            .and_then(|r| r.recv().ok());
        Some(match from_worker {
            Some(batch) => batch,
            None => {
                // No worker (prefetch 0 or no thread could start), or it stopped: make it here.
                self.worker = None;
                self.inner.make(self.epoch, &self.order, index)
            }
        })
    }

    /// Index of the batch the next call returns.
    pub fn next_index(&self) -> usize {
        self.next
    }
}

impl Iterator for EpochIter {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        let device = self.device.clone();
        self.next_host()
            .map(|b| b.and_then(|b| b.to_device(&device)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.end - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for EpochIter {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Normalization;

    fn random_image(seed: u64) -> Vec<u8> {
        let mut rng = stream(seed, Purpose::Subset, 99, 99);
        (0..IMAGE_BYTES).map(|_| rng.next_u32() as u8).collect()
    }

    #[test]
    fn fused_kernel_equals_augment_then_normalize() {
        let lut = Normalization::CIFAR10.lookup_table();
        let src = random_image(3);
        for top in 0..=8u8 {
            for left in 0..=8u8 {
                for flip in [false, true] {
                    let aug = Augmentation { top, left, flip };
                    let mut fused = vec![0f32; IMAGE_BYTES];
                    write_normalized(&src, aug, &lut, &mut fused);
                    let mut cropped = vec![0u8; IMAGE_BYTES];
                    augment_image(&src, aug, &mut cropped);
                    for y in 0..32 {
                        for x in 0..32 {
                            for c in 0..3 {
                                let want = lut[c][cropped[(y * 32 + x) * 3 + c] as usize];
                                assert_eq!(
                                    fused[c * 1024 + y * 32 + x],
                                    want,
                                    "{aug:?} y{y} x{x} c{c}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
