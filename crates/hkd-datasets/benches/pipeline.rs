//! Throughput of the training pipeline: shuffle, augment (crop + flip on u8), normalise,
//! to candle tensors — over 10,000 images at batch 128.
//!
//! `cargo bench -p hkd-datasets --bench pipeline` (release profile). Prints images/s and
//! batches/s on one thread (prefetch 0: everything on the caller's thread), and with the
//! background thread (what training sees: time the caller waits for batches).
//! Uses the real CIFAR-10 test images from ../shared/data when present, else synthetic
//! pixels (the cost does not depend on pixel values).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use candle_core::Device;
use hkd_datasets::{Dataset, DatasetParts, ImageRange, Loader, LoaderConfig, read_images_npy};

const IMAGES: usize = 10_000;
const BATCH: usize = 128;
const EPOCHS: u64 = 5;

fn dataset() -> (Dataset, &'static str) {
    let shared = std::env::var_os("HKD_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    let real = shared.join("cifar10_test/all10000_from_jpeg.npy");
    let labels: Vec<u32> = (0..IMAGES as u32).map(|i| i % 10).collect();
    if let Ok(images) = read_images_npy(&real, ImageRange::Auto)
        && images.len() == IMAGES * 3072
    {
        return (
            Dataset::new(DatasetParts::cifar10(images, labels)).expect("valid"),
            "real CIFAR-10 test images",
        );
    }
    let images = (0..IMAGES * 3072)
        .map(|i| ((i * 2_654_435_761usize) >> 13) as u8)
        .collect();
    (
        Dataset::new(DatasetParts::cifar10(images, labels)).expect("valid"),
        "synthetic pixels",
    )
}

fn run(loader: &Loader, label: &str) {
    let device = Device::Cpu;
    let mut rates = Vec::new();
    for epoch in 0..EPOCHS {
        let start = Instant::now();
        let mut seen = 0usize;
        let mut checksum = 0f64;
        for batch in loader.epoch(epoch, &device) {
            let batch = batch.expect("batch");
            seen += batch.len();
            // Touch the tensor so nothing is optimised away.
            checksum += f64::from(
                batch
                    .images
                    .get(0)
                    .and_then(|t| t.flatten_all()?.get(0)?.to_scalar::<f32>())
                    .expect("value"),
            );
        }
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(seen, IMAGES);
        rates.push(seen as f64 / secs);
        std::hint::black_box(checksum);
    }
    rates.sort_by(|a, b| a.total_cmp(b));
    let median = rates[rates.len() / 2];
    println!(
        "{label}: median {:.0} images/s ({:.0} batches/s of {}), best {:.0} images/s, over {EPOCHS} epochs of {IMAGES}",
        median,
        median / loader.config().batch_size as f64,
        loader.config().batch_size,
        rates[rates.len() - 1]
    );
}

fn main() {
    let (data, what) = dataset();
    println!(
        "training pipeline benchmark: {IMAGES} images ({what}), batch {BATCH}, shuffle + crop/flip + normalise + to Tensor"
    );
    let data = Arc::new(data);
    let one_thread = Loader::new(
        data.clone(),
        LoaderConfig {
            prefetch: 0,
            ..LoaderConfig::train(BATCH, 1)
        },
    )
    .expect("loader");
    run(&one_thread, "one thread (prefetch 0)");
    let background = Loader::new(data.clone(), LoaderConfig::train(BATCH, 1)).expect("loader");
    run(&background, "background thread (prefetch 2)");
    let eval = Loader::new(
        data,
        LoaderConfig {
            prefetch: 0,
            ..LoaderConfig::eval(512)
        },
    )
    .expect("loader");
    run(&eval, "eval, batch 512, one thread");
}
