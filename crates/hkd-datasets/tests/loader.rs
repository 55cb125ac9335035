//! Batches: shuffling, augmentation, normalisation, resume, background thread.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::{DType, Device};
use common::*;
use hkd_datasets::*;

fn dataset(n: usize, human: bool) -> Arc<Dataset> {
    let labels = cyclic_labels(n);
    let mut parts = DatasetParts::cifar10(
        hwc_images(n),
        labels.iter().map(|&l| u32::from(l)).collect(),
    );
    if human {
        parts.human = Some(human_rows(&labels));
    }
    Arc::new(Dataset::new(parts).unwrap())
}

fn host_batches(loader: &Loader, epoch: u64, from: usize) -> Vec<HostBatch> {
    let mut it = loader.epoch_from(epoch, from, &Device::Cpu);
    let mut out = vec![];
    while let Some(b) = it.next_host() {
        out.push(b.unwrap());
    }
    out
}

#[test]
fn normalisation_numbers_match_torchvision() {
    let mut img = vec![0u8; 3072];
    img[0] = 255; // R of pixel (0,0)
    img[1] = 128; // G of pixel (0,0)
    img[5] = 64; // B of pixel (0,1)
    let d = Arc::new(Dataset::new(DatasetParts::cifar10(img, vec![7])).unwrap());
    let loader = Loader::new(d.clone(), LoaderConfig::eval(4)).unwrap();
    let b = loader.batch(0, 0, &Device::Cpu).unwrap();
    assert_eq!(b.images.dims(), &[1, 3, 32, 32]);
    assert_eq!(b.images.dtype(), DType::F32);
    let v: Vec<f32> = b.images.flatten_all().unwrap().to_vec1().unwrap();
    let close = |a: f32, b: f64| assert!((f64::from(a) - b).abs() < 1e-6, "{a} vs {b}");
    close(v[0], (1.0 - 0.4914) / 0.2023); // 2.5138...
    close(v[1024], (128.0 / 255.0 - 0.4822) / 0.1994);
    close(v[2048 + 1], (64.0 / 255.0 - 0.4465) / 0.2010);
    close(v[1], -0.4914 / 0.2023); // a zero pixel: -2.4291...
    close(v[1024 + 5], -0.4822 / 0.1994);
    assert!((v[0] - 2.514_088).abs() < 1e-5 && (v[1] + 2.429_065_7).abs() < 1e-5);
    // Unnormalised: pixels in [0,1]; Normalization::apply gives the same as the loader.
    let raw = Loader::new(
        d,
        LoaderConfig {
            normalize: false,
            ..LoaderConfig::eval(4)
        },
    )
    .unwrap();
    let r = raw.batch(0, 0, &Device::Cpu).unwrap();
    let rv: Vec<f32> = r.images.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(rv[0], 1.0);
    assert_eq!(rv[1024], 128.0 / 255.0);
    let applied: Vec<f32> = Normalization::CIFAR10
        .apply(&r.images)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    for (a, b) in applied.iter().zip(&v) {
        assert!((a - b).abs() < 1e-6);
    }
    assert_eq!(b.labels.dtype(), DType::U32);
    assert_eq!(b.labels.to_vec1::<u32>().unwrap(), vec![7]);
}

#[test]
fn eval_loader_visits_rows_in_order_without_augmentation() {
    let d = dataset(25, true);
    let loader = Loader::new(d.clone(), LoaderConfig::eval(10)).unwrap();
    assert_eq!(loader.num_batches(), 3);
    let batches: Vec<Batch> = loader.epoch(0, &Device::Cpu).map(|b| b.unwrap()).collect();
    assert_eq!(
        batches.iter().map(|b| b.len()).collect::<Vec<_>>(),
        vec![10, 10, 5]
    );
    let rows: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
    assert_eq!(rows, (0..25).collect::<Vec<_>>());
    let lut = Normalization::CIFAR10.lookup_table();
    let v: Vec<f32> = batches[2].images.flatten_all().unwrap().to_vec1().unwrap();
    let img = d.image(20);
    for p in 0..1024 {
        for c in 0..3 {
            assert_eq!(v[c * 1024 + p], lut[c][img[p * 3 + c] as usize]);
        }
    }
    let h = batches[2].human.as_ref().unwrap();
    assert_eq!(h.dims(), &[5, 10]);
    let hv: Vec<f32> = h.flatten_all().unwrap().to_vec1().unwrap();
    let want: Vec<f32> = d.human().unwrap()[200..250]
        .iter()
        .map(|&x| x as f32)
        .collect();
    assert_eq!(hv, want);
}

#[test]
fn shuffling_is_a_seeded_permutation_per_epoch() {
    let d = dataset(100, false);
    let cfg = LoaderConfig {
        augment: false,
        ..LoaderConfig::train(16, 7)
    };
    let loader = Loader::new(d.clone(), cfg.clone()).unwrap();
    let e0: Vec<usize> = host_batches(&loader, 0, 0)
        .iter()
        .flat_map(|b| b.indices.clone())
        .collect();
    let e1: Vec<usize> = host_batches(&loader, 1, 0)
        .iter()
        .flat_map(|b| b.indices.clone())
        .collect();
    let mut sorted = e0.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..100).collect::<Vec<_>>());
    assert_ne!(e0, (0..100).collect::<Vec<_>>());
    assert_ne!(e0, e1);
    let again = Loader::new(d.clone(), cfg.clone()).unwrap();
    assert_eq!(
        e0,
        host_batches(&again, 0, 0)
            .iter()
            .flat_map(|b| b.indices.clone())
            .collect::<Vec<_>>()
    );
    let other = Loader::new(
        d.clone(),
        LoaderConfig {
            seed: 8,
            ..cfg.clone()
        },
    )
    .unwrap();
    assert_ne!(
        e0,
        host_batches(&other, 0, 0)
            .iter()
            .flat_map(|b| b.indices.clone())
            .collect::<Vec<_>>()
    );
    // Labels follow their images.
    let b = loader.host_batch(0, 2).unwrap();
    for (k, &row) in b.indices.iter().enumerate() {
        assert_eq!(b.labels[k], d.labels()[row]);
    }
    // drop_last drops the partial batch.
    let dl = Loader::new(
        d,
        LoaderConfig {
            drop_last: true,
            ..cfg
        },
    )
    .unwrap();
    assert_eq!(dl.num_batches(), 6);
    assert!(host_batches(&dl, 0, 0).iter().all(|b| b.len() == 16));
    assert!(dl.host_batch(0, 6).is_err());
}

#[test]
fn crop_offsets_and_flips_really_vary_and_are_reproducible() {
    let d = dataset(64, false);
    let loader = Loader::new(d.clone(), LoaderConfig::train(64, 11)).unwrap();
    let augs = loader.augmentations(0, 0, 64 * 4);
    let tops: HashSet<u8> = augs.iter().map(|a| a.top).collect();
    let lefts: HashSet<u8> = augs.iter().map(|a| a.left).collect();
    assert_eq!(tops.len(), 9, "{tops:?}");
    assert_eq!(lefts.len(), 9, "{lefts:?}");
    assert!(augs.iter().all(|a| a.top <= 8 && a.left <= 8));
    let flips = augs.iter().filter(|a| a.flip).count();
    assert!((90..=166).contains(&flips), "{flips} of 256 flipped");
    assert_eq!(augs, loader.augmentations(0, 0, 256));
    assert_ne!(augs, loader.augmentations(0, 1, 256));
    assert_ne!(augs, loader.augmentations(1, 0, 256));
    let other = Loader::new(d.clone(), LoaderConfig::train(64, 12)).unwrap();
    assert_ne!(augs, other.augmentations(0, 0, 256));

    // The batch pixels are exactly augment_image(...) then normalised.
    let b = loader.host_batch(3, 0).unwrap();
    let lut = Normalization::CIFAR10.lookup_table();
    let batch_augs = loader.augmentations(3, 0, b.len());
    let mut distinct_images = HashSet::new();
    for (k, (&row, &aug)) in b.indices.iter().zip(&batch_augs).enumerate() {
        let mut want = vec![0u8; 3072];
        augment_image(d.image(row), aug, &mut want);
        for p in 0..1024 {
            for c in 0..3 {
                assert_eq!(
                    b.images[k * 3072 + c * 1024 + p],
                    lut[c][want[p * 3 + c] as usize]
                );
            }
        }
        distinct_images.insert((aug.top, aug.left, aug.flip));
    }
    assert!(distinct_images.len() > 30, "{}", distinct_images.len());
    // Same seed, same batch, bit for bit; another seed gives other pixels.
    let again = Loader::new(d.clone(), LoaderConfig::train(64, 11))
        .unwrap()
        .host_batch(3, 0)
        .unwrap();
    assert_eq!(b, again);
    let other_b = other.host_batch(3, 0).unwrap();
    assert_ne!(b.images, other_b.images);
}

#[test]
fn augment_image_moves_a_marker_pixel_as_described() {
    let mut img = vec![0u8; 3072];
    // Marker at row 10, column 3, all channels 200.
    img[(10 * 32 + 3) * 3..(10 * 32 + 3) * 3 + 3].copy_from_slice(&[200, 201, 202]);
    let at = |out: &[u8]| -> Vec<(usize, usize)> {
        (0..1024)
            .filter(|&p| out[p * 3] == 200)
            .map(|p| (p / 32, p % 32))
            .collect()
    };
    let mut out = vec![0u8; 3072];
    augment_image(&img, Augmentation::NONE, &mut out);
    assert_eq!(out, img);
    // top 6 = shift content up by 2, left 1 = shift content right by 3.
    augment_image(
        &img,
        Augmentation {
            top: 6,
            left: 1,
            flip: false,
        },
        &mut out,
    );
    assert_eq!(at(&out), vec![(8, 6)]);
    assert_eq!(
        &out[(8 * 32 + 6) * 3..(8 * 32 + 6) * 3 + 3],
        &[200, 201, 202]
    );
    augment_image(
        &img,
        Augmentation {
            top: 6,
            left: 1,
            flip: true,
        },
        &mut out,
    );
    assert_eq!(at(&out), vec![(8, 31 - 6)]);
    // Shifted out of the frame: the padding is zeros.
    augment_image(
        &img,
        Augmentation {
            top: 4,
            left: 8,
            flip: false,
        },
        &mut out,
    );
    assert!(at(&out).is_empty());
    let full = vec![9u8; 3072];
    augment_image(
        &full,
        Augmentation {
            top: 0,
            left: 8,
            flip: false,
        },
        &mut out,
    );
    assert_eq!(out[0], 0); // row 0 comes from the top padding
    assert_eq!(out[(5 * 32) * 3], 9);
    assert_eq!(out[(5 * 32 + 31) * 3], 0); // last 4 columns from the right padding
    assert_eq!(out[(5 * 32 + 27) * 3], 9);
}

#[test]
fn resuming_at_batch_k_gives_identical_batches() {
    let d = dataset(300, true);
    let loader = Loader::new(d.clone(), LoaderConfig::train(32, 42)).unwrap();
    let full = host_batches(&loader, 5, 0);
    assert_eq!(full.len(), 10);
    for k in [0, 1, 4, 9] {
        let resumed = host_batches(&loader, 5, k);
        assert_eq!(resumed.len(), 10 - k);
        assert_eq!(&full[k..], &resumed[..], "resume at batch {k}");
        // A fresh loader (a new process) gives the same batch too.
        let fresh = Loader::new(d.clone(), LoaderConfig::train(32, 42)).unwrap();
        assert_eq!(fresh.host_batch(5, k).unwrap(), full[k]);
    }
    // Background thread or not: the same batches.
    let sync = Loader::new(
        d.clone(),
        LoaderConfig {
            prefetch: 0,
            ..LoaderConfig::train(32, 42)
        },
    )
    .unwrap();
    assert_eq!(host_batches(&sync, 5, 0), full);
    let deep = Loader::new(
        d,
        LoaderConfig {
            prefetch: 5,
            ..LoaderConfig::train(32, 42)
        },
    )
    .unwrap();
    assert_eq!(host_batches(&deep, 5, 0), full);
    assert_eq!(host_batches(&loader, 5, 10).len(), 0);
    assert_eq!(host_batches(&loader, 5, 99).len(), 0);
}

#[test]
fn tensors_equal_host_batches_and_iterator_is_exact_size() {
    let d = dataset(50, true);
    let loader = Loader::new(d, LoaderConfig::train(16, 3)).unwrap();
    let it = loader.epoch(2, &Device::Cpu);
    assert_eq!(it.len(), 4);
    for (b, h) in it.zip(host_batches(&loader, 2, 0)) {
        let b = b.unwrap();
        assert_eq!(
            b.images.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            h.images
        );
        assert_eq!(b.labels.to_vec1::<u32>().unwrap(), h.labels);
        assert_eq!(
            b.human
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
            h.human.unwrap()
        );
        assert_eq!((b.epoch, b.index, b.indices), (h.epoch, h.index, h.indices));
    }
}

#[test]
fn dropping_the_iterator_mid_epoch_does_not_hang() {
    let d = dataset(2000, false);
    let loader = Loader::new(
        d,
        LoaderConfig {
            prefetch: 1,
            ..LoaderConfig::train(8, 1)
        },
    )
    .unwrap();
    let start = Instant::now();
    for _ in 0..20 {
        let mut it = loader.epoch(0, &Device::Cpu);
        let first = it.next().unwrap().unwrap();
        assert_eq!(first.index, 0);
        drop(it); // the worker is blocked in send or making a batch; drop must return
        let mut it = loader.epoch(1, &Device::Cpu);
        drop(it.next());
        drop(it);
        drop(loader.epoch(2, &Device::Cpu)); // never polled
    }
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn zero_batch_size_is_refused() {
    let e = Loader::new(dataset(3, false), LoaderConfig::eval(0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("batch_size is 0"), "{e}");
}
