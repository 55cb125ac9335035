//! The real CIFAR-10H / CIFAR-10 / CINIC-10 data from ../shared/data, and the committed
//! fixture built from it.

mod common;

use common::*;
use hkd_datasets::*;

#[test]
fn real_cifar10h_probs_load_and_line_up_with_the_test_labels() {
    let Some(data) = shared_data("real_cifar10h_probs_load_and_line_up_with_the_test_labels")
    else {
        return;
    };
    let human = read_human_npy(&data.join("cifar10h/cifar10h-probs.npy"), 10).unwrap();
    assert_eq!(human.len(), 100_000);
    let max_dev = human
        .chunks_exact(10)
        .map(|r| (r.iter().sum::<f64>() - 1.0).abs())
        .fold(0.0, f64::max);
    assert!(max_dev < 1e-12, "{max_dev}");
    let argmax: Vec<u32> = human
        .chunks_exact(10)
        .map(|r| (0..10).fold(0, |b, j| if r[j] > r[b] { j } else { b }) as u32)
        .collect();
    assert_eq!(
        &argmax[..20],
        &[3, 8, 8, 0, 6, 6, 1, 6, 3, 1, 0, 9, 5, 7, 9, 8, 5, 7, 8, 6]
    );
    let labels = read_labels_npy(&data.join("cifar10_test/labels.npy"), 10).unwrap();
    let agree = argmax.iter().zip(&labels).filter(|(a, b)| a == b).count();
    assert_eq!(agree, 9921);
    // Integer vote counts give the same distributions.
    let from_counts = read_human_npy(&data.join("cifar10h/cifar10h-counts.npy"), 10).unwrap();
    assert!(
        from_counts
            .iter()
            .zip(&human)
            .all(|(a, b)| (a - b).abs() < 1e-15)
    );
}

#[test]
fn full_real_train_split_has_mean_human_entropy_0_1545_nats() {
    let Some(data) = shared_data("full_real_train_split_has_mean_human_entropy_0_1545_nats") else {
        return;
    };
    let train = NpyImport {
        images: data.join("cifar10_test/all10000_from_jpeg.npy"),
        labels: data.join("cifar10_test/labels.npy"),
        human: Some(data.join("cifar10h/cifar10h-probs.npy")),
        ids: None,
        labels_by_id: false,
        human_by_id: false,
        rows: None,
        image_range: ImageRange::Auto,
        class_names: cifar10_class_names(),
        normalization: Normalization::CIFAR10,
    }
    .load()
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    write_split(tmp.path(), "train", &train, Some("real")).unwrap();
    let loaded = open_split(tmp.path(), "train").unwrap();
    assert_eq!(loaded, train);
    let s = loaded.summary();
    assert_eq!(s.count, 10_000);
    assert_eq!(s.class_counts, vec![1000; 10]);
    let h = s.human.unwrap();
    assert!(
        (h.mean_entropy_nats - 0.1545).abs() <= 0.001,
        "mean entropy {}",
        h.mean_entropy_nats
    );
    assert!((h.majority_agrees_with_label - 0.9921).abs() < 1e-12);
    // CIFAR-10H gives the true class 0.952 on average (computed with NumPy from
    // cifar10h-probs.npy and the labels)
    assert!(
        (h.mean_true_class_probability - 0.9520).abs() < 0.0005,
        "{}",
        h.mean_true_class_probability
    );
    assert!(
        h.unanimous_share > 0.3 && h.unanimous_share < 0.7,
        "{}",
        h.unanimous_share
    );
    // Pixel statistics of the CIFAR-10 test images are close to the usual constants.
    for c in 0..3 {
        assert!(
            (s.pixel_mean[c] - f64::from(Normalization::CIFAR10.mean[c])).abs() < 0.01,
            "{:?}",
            s.pixel_mean
        );
    }
}

fn fixture_dir() -> std::path::PathBuf {
    workspace_root().join("fixtures/cifar10h-mini")
}

#[test]
fn committed_fixture_has_the_documented_splits() {
    let dir = DatasetDir::open(&fixture_dir()).unwrap();
    assert_eq!(dir.layout(), Layout::Manifest);
    assert_eq!(dir.split_names(), vec!["cinic", "train", "val"]);
    let train = dir.load_split("train").unwrap();
    assert_eq!(train.len(), 1000);
    assert_eq!(train.ids().unwrap(), &(0..1000).collect::<Vec<i64>>()[..]);
    let h = train.summary().human.unwrap();
    assert!(
        h.mean_entropy_nats > 0.1 && h.mean_entropy_nats < 0.2,
        "{}",
        h.mean_entropy_nats
    );
    let val = dir.load_split("val").unwrap();
    assert_eq!(val.class_counts(), vec![50; 10]);
    assert!(val.human().is_none());
    let cinic = dir.load_split("cinic").unwrap();
    assert_eq!(cinic.class_counts(), vec![50; 10]);
    for d in [&train, &val, &cinic] {
        assert_eq!(d.normalization(), Normalization::CIFAR10);
        assert_eq!(d.class_names(), &cifar10_class_names()[..]);
    }
}

#[test]
fn committed_fixture_matches_the_shared_sources() {
    let Some(data) = shared_data("committed_fixture_matches_the_shared_sources") else {
        return;
    };
    let dir = DatasetDir::open(&fixture_dir()).unwrap();
    let train = dir.load_split("train").unwrap();
    let test_images = read_images_npy(
        &data.join("cifar10_test/all10000_from_jpeg.npy"),
        ImageRange::Auto,
    )
    .unwrap();
    assert_eq!(train.images(), &test_images[..1000 * 3072]);
    let probs = read_human_npy(&data.join("cifar10h/cifar10h-probs.npy"), 10).unwrap();
    assert_eq!(train.human().unwrap(), &probs[..10_000]);
    // val: exact CIFAR-10 train images, ids = train index, labels = the official labels.
    let val = dir.load_split("val").unwrap();
    let train_labels = read_labels_npy(&data.join("cifar10_train/labels.npy"), 10).unwrap();
    let montage = read_images_npy(
        &data.join("cifar10_train/montage_exact.npy"),
        ImageRange::Auto,
    )
    .unwrap();
    let index = read_index_npy(&data.join("cifar10_train/montage_exact_train_index.npy")).unwrap();
    for (k, &id) in val.ids().unwrap().iter().enumerate() {
        assert_eq!(val.labels()[k], train_labels[id as usize]);
        let row = index.iter().position(|&i| i as i64 == id).unwrap();
        assert_eq!(val.image(k), &montage[row * 3072..(row + 1) * 3072]);
    }
    // cinic: only rows whose origin is imagenet.
    let cinic = dir.load_split("cinic").unwrap();
    let imagenet =
        csv_rows_where(&data.join("cinic10_sample/meta.csv"), "origin", "imagenet").unwrap();
    assert!(
        cinic
            .ids()
            .unwrap()
            .iter()
            .all(|&i| imagenet.contains(&(i as usize)))
    );
}
