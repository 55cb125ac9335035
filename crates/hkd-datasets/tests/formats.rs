//! Every input format, with small files the tests write themselves.

mod common;

use common::*;
use hkd_datasets::*;

fn labels_u32(l: &[u8]) -> Vec<u32> {
    l.iter().map(|&v| u32::from(v)).collect()
}

#[test]
fn npy_images_in_every_dtype_and_layout_decode_to_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let n = 4;
    let hwc = hwc_images(n);
    let chw = to_chw(&hwc);
    write_u8(&d.join("u8_hwc.npy"), &[n, 32, 32, 3], &hwc);
    write_u8(&d.join("u8_chw.npy"), &[n, 3, 32, 32], &chw);
    // The original project's train images: float32 N×3×32×32 in [0,1].
    let unit: Vec<f32> = chw.iter().map(|&b| f32::from(b) / 255.0).collect();
    write_f32(&d.join("f32_unit_chw.npy"), &[n, 3, 32, 32], &unit);
    // ImageNet-far style: N×32×32×3 in [0,255].
    let byte: Vec<f64> = hwc.iter().map(|&b| f64::from(b)).collect();
    write_f64(&d.join("f64_byte_hwc.npy"), &[n, 32, 32, 3], &byte);
    let unit64: Vec<f64> = hwc.iter().map(|&b| f64::from(b) / 255.0).collect();
    write_f64(&d.join("f64_unit_hwc.npy"), &[n, 32, 32, 3], &unit64);
    for f in [
        "u8_hwc",
        "u8_chw",
        "f32_unit_chw",
        "f64_byte_hwc",
        "f64_unit_hwc",
    ] {
        let got = read_images_npy(&d.join(format!("{f}.npy")), ImageRange::Auto).unwrap();
        assert_eq!(got, hwc, "{f}");
    }
    // Rounding: less than 0.5/255 away from a byte rounds to the nearest byte (nudged
    // down at 255 so the file stays inside [0,1]).
    let nudged: Vec<f32> = chw
        .iter()
        .map(|&b| (f32::from(b) + if b == 255 { -0.3 } else { 0.3 }) / 255.0)
        .collect();
    write_f32(&d.join("nudged.npy"), &[n, 3, 32, 32], &nudged);
    assert_eq!(
        read_images_npy(&d.join("nudged.npy"), ImageRange::Auto).unwrap(),
        hwc
    );
}

#[test]
fn ambiguous_float_range_is_refused_unless_stated() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("binary.npy");
    // Only 0s and 1s: [0,1] or [0,255]?
    let vals: Vec<f32> = (0..3072).map(|i| (i % 2) as f32).collect();
    write_f32(&p, &[1, 32, 32, 3], &vals);
    let err = read_images_npy(&p, ImageRange::Auto).unwrap_err();
    assert!(matches!(err, DatasetError::AmbiguousRange { .. }), "{err}");
    assert!(
        err.to_string().contains("exactly 0 or 1") && err.to_string().contains("--range"),
        "{err}"
    );
    assert_eq!(read_images_npy(&p, ImageRange::Unit).unwrap()[1], 255);
    assert_eq!(read_images_npy(&p, ImageRange::Byte).unwrap()[1], 1);
    // Max 1.5: above [0,1], implausible for [0,255].
    let vals: Vec<f32> = (0..3072).map(|i| (i % 4) as f32 * 0.5).collect();
    let q = tmp.path().join("dim.npy");
    write_f32(&q, &[1, 32, 32, 3], &vals);
    let err = read_images_npy(&q, ImageRange::Auto).unwrap_err();
    assert!(matches!(err, DatasetError::AmbiguousRange { .. }), "{err}");
    assert!(err.to_string().contains("1.5"), "{err}");
    assert_eq!(read_images_npy(&q, ImageRange::Byte).unwrap()[3], 2); // 1.5 rounds to 2
}

#[test]
fn labels_of_every_listed_dtype_read_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let l = [3u8, 8, 8, 0, 6, 9];
    write_u8(&d.join("u8.npy"), &[6], &l);
    write_i32(&d.join("i32.npy"), &[6], &l.map(i32::from));
    write_i64(&d.join("i64.npy"), &[6, 1], &l.map(i64::from));
    write_f32(&d.join("f32.npy"), &[6], &l.map(f32::from));
    write_f64(&d.join("f64.npy"), &[6], &l.map(f64::from));
    let be: Vec<u8> = l.iter().flat_map(|&v| u16::from(v).to_be_bytes()).collect();
    write_npy_raw(&d.join("u16_be.npy"), ">u2", &[6], &be);
    for f in ["u8", "i32", "i64", "f32", "f64", "u16_be"] {
        assert_eq!(
            read_labels_npy(&d.join(format!("{f}.npy")), 10).unwrap(),
            labels_u32(&l),
            "{f}"
        );
    }
}

#[test]
fn human_labels_f32_f64_and_vote_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let labels = cyclic_labels(6);
    let rows = human_rows(&labels);
    write_f64(&d.join("f64.npy"), &[6, 10], &rows);
    let rows32: Vec<f32> = rows.iter().map(|&v| v as f32).collect();
    write_f32(&d.join("f32.npy"), &[6, 10], &rows32);
    assert_eq!(read_human_npy(&d.join("f64.npy"), 10).unwrap(), rows);
    let got = read_human_npy(&d.join("f32.npy"), 10).unwrap();
    assert!(got.iter().zip(&rows).all(|(a, b)| (a - b).abs() < 1e-7));
    // Integer arrays are vote counts: 4 and 1 votes -> 0.8 and 0.2.
    let counts: Vec<i64> = rows.iter().map(|&p| (p * 5.0).round() as i64).collect();
    write_i64(&d.join("counts.npy"), &[6, 10], &counts);
    let got = read_human_npy(&d.join("counts.npy"), 10).unwrap();
    assert!(got.iter().zip(&rows).all(|(a, b)| (a - b).abs() < 1e-12));
}

#[test]
fn cifar10_binaries_read_label_byte_then_rgb_planes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("cifar-10-batches-bin");
    std::fs::create_dir_all(&root).unwrap();
    let train_imgs = hwc_images(10);
    let train_labels = cyclic_labels(10);
    for (k, f) in CIFAR10_TRAIN_FILES.iter().enumerate() {
        write_cifar_bin(
            &root.join(f),
            &train_imgs[k * 2 * 3072..(k + 1) * 2 * 3072],
            &train_labels[k * 2..k * 2 + 2],
        );
    }
    let test_imgs = hwc_images(3);
    write_cifar_bin(&root.join(CIFAR10_TEST_FILE), &test_imgs, &[5, 1, 9]);
    // The official tarball's folder is found from its parent.
    let dir = DatasetDir::open(tmp.path()).unwrap();
    assert_eq!(dir.layout(), Layout::Cifar10Binary);
    assert_eq!(dir.split_names(), vec!["test", "train"]);
    let test = dir.load_split("test").unwrap();
    assert_eq!(test.images(), &test_imgs[..]);
    assert_eq!(test.labels(), &[5, 1, 9]);
    assert_eq!(test.ids(), Some(&[0i64, 1, 2][..]));
    let train = dir.load_split("train").unwrap();
    assert_eq!(train.len(), 10);
    assert_eq!(train.images(), &train_imgs[..]);
    assert_eq!(train.labels(), &labels_u32(&train_labels)[..]);
    // Byte-level check of the plane order: record byte 1 is R of pixel (0,0),
    // byte 1+1024 is G of pixel (0,0), byte 1+1+32 is R of pixel (1,1).
    let raw = std::fs::read(root.join(CIFAR10_TEST_FILE)).unwrap();
    assert_eq!(test.image(0)[0], raw[1]);
    assert_eq!(test.image(0)[1], raw[1 + 1024]);
    assert_eq!(test.image(0)[2], raw[1 + 2048]);
    assert_eq!(test.image(0)[(32 + 1) * 3], raw[1 + 33]);
}

#[test]
fn png_class_folders_with_and_without_imagenet_only() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let imgs = hwc_images(4);
    let img = |i: usize| &imgs[i * 3072..(i + 1) * 3072];
    std::fs::create_dir_all(root.join("cat")).unwrap();
    std::fs::create_dir_all(root.join("airplane")).unwrap();
    write_png(&root.join("cat/n02121808_1.png"), img(0));
    write_png(&root.join("cat/cifar10-train-17.png"), img(1));
    write_png(&root.join("airplane/n02691156_9.png"), img(2));
    std::fs::write(root.join("airplane/notes.txt"), "ignored").unwrap();
    let dir = DatasetDir::open(root).unwrap();
    assert_eq!(dir.layout(), Layout::ImageFolders);
    let all = dir.load_split("all").unwrap();
    // Class order is CIFAR-10's (airplane=0 before cat=3); files by name within a class.
    assert_eq!(all.labels(), &[0, 3, 3]);
    assert_eq!(all.image(0), img(2));
    assert_eq!(all.image(1), img(1)); // "cifar10-train-17" sorts before "n02121808_1"
    assert_eq!(all.image(2), img(0));
    let only = DatasetDir::open_with(
        root,
        &OpenOptions {
            imagenet_only: true,
            ..Default::default()
        },
    )
    .unwrap()
    .load_split("all")
    .unwrap();
    assert_eq!(only.labels(), &[0, 3]);
    assert_eq!(only.image(1), img(0));
    // Nested CINIC layout: train/valid/test.
    let nested = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(nested.path().join("test/dog")).unwrap();
    write_png(&nested.path().join("test/dog/a.png"), img(3));
    let dir = DatasetDir::open(nested.path()).unwrap();
    assert_eq!(dir.split_names(), vec!["test"]);
    assert_eq!(dir.load_split("test").unwrap().labels(), &[5]);
}

#[test]
fn grey_png_becomes_rgb_and_wrong_size_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("ship")).unwrap();
    let grey: Vec<u8> = (0..1024).map(|i| (i % 256) as u8).collect();
    image::save_buffer(
        tmp.path().join("ship/g.png"),
        &grey,
        32,
        32,
        image::ExtendedColorType::L8,
    )
    .unwrap();
    let d = load_image_folder(tmp.path(), false).unwrap();
    assert_eq!(&d.image(0)[..6], &[0, 0, 0, 1, 1, 1]);
    image::save_buffer(
        tmp.path().join("ship/h.png"),
        &[7u8; 30 * 30 * 3],
        30,
        30,
        image::ExtendedColorType::Rgb8,
    )
    .unwrap();
    let err = load_image_folder(tmp.path(), false).unwrap_err();
    assert!(
        err.to_string().contains("h.png") && err.to_string().contains("30×30, expected 32×32"),
        "{err}"
    );
}

#[test]
fn original_project_layout_is_detected_with_its_ranges() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let n = 6;
    let hwc = hwc_images(n);
    let labels = cyclic_labels(n);
    let unit: Vec<f32> = to_chw(&hwc).iter().map(|&b| f32::from(b) / 255.0).collect();
    write_f32(&d.join(original::TRAIN_IMAGES), &[n, 3, 32, 32], &unit);
    write_i64(&d.join(original::TRAIN_LABELS), &[n], &labels.map_to_i64());
    write_f64(
        &d.join(original::TRAIN_HUMAN),
        &[n, 10],
        &human_rows(&labels),
    );
    write_f32(&d.join(original::VAL_IMAGES), &[n, 3, 32, 32], &unit);
    write_i64(&d.join(original::VAL_LABELS), &[n], &labels.map_to_i64());
    let far: Vec<f32> = hwc.iter().map(|&b| f32::from(b)).collect();
    write_f32(
        &d.join(original::IMAGENET_FAR_IMAGES),
        &[n, 32, 32, 3],
        &far,
    );
    write_i64(
        &d.join(original::IMAGENET_FAR_LABELS),
        &[n],
        &labels.map_to_i64(),
    );
    let dir = DatasetDir::open(d).unwrap();
    assert_eq!(dir.layout(), Layout::OriginalNpy);
    assert_eq!(dir.split_names(), vec!["imagenet_far", "train", "val"]);
    let train = dir.load_split("train").unwrap();
    assert_eq!(train.images(), &hwc[..]);
    assert_eq!(train.human().unwrap(), &human_rows(&labels)[..]);
    assert_eq!(train.normalization(), Normalization::CIFAR10);
    assert_eq!(dir.load_split("imagenet_far").unwrap().images(), &hwc[..]);
    assert!(dir.load_split("val").unwrap().human().is_none());
}

trait ToI64 {
    fn map_to_i64(&self) -> Vec<i64>;
}
impl ToI64 for Vec<u8> {
    fn map_to_i64(&self) -> Vec<i64> {
        self.iter().map(|&v| i64::from(v)).collect()
    }
}

#[test]
fn our_layout_round_trips_and_the_manifest_hash_tracks_content() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("ds");
    let labels = cyclic_labels(20);
    let mut parts = DatasetParts::cifar10(hwc_images(20), labels_u32(&labels));
    parts.human = Some(human_rows(&labels));
    parts.ids = Some((100..120).collect());
    let train = Dataset::new(parts).unwrap();
    write_split(&out, "train", &train, Some("test data")).unwrap();
    let val = train.select(&[1, 3, 5]).unwrap().into_parts();
    let val = Dataset::new(DatasetParts { human: None, ..val }).unwrap();
    write_split(&out, "val", &val, None).unwrap();

    let dir = DatasetDir::open(&out).unwrap();
    assert_eq!(dir.layout(), Layout::Manifest);
    assert_eq!(dir.split_names(), vec!["train", "val"]);
    assert_eq!(dir.load_split("train").unwrap(), train);
    assert_eq!(dir.load_split("val").unwrap(), val);
    assert_eq!(
        dir.load_split("val").unwrap().ids(),
        Some(&[101i64, 103, 105][..])
    );
    let manifest = std::fs::read_to_string(out.join(MANIFEST_FILE)).unwrap();
    assert!(
        manifest.contains("[splits.train]") && manifest.contains("human = \"train/human.npy\""),
        "{manifest}"
    );
    assert!(
        manifest.contains("source = \"test data\"") && manifest.contains("count = 20"),
        "{manifest}"
    );

    let hash = dir.manifest_hash().unwrap();
    assert_eq!(hash.len(), 64);
    // Moving the directory keeps the hash.
    let moved = tmp.path().join("moved");
    std::fs::rename(&out, &moved).unwrap();
    assert_eq!(
        DatasetDir::open(&moved).unwrap().manifest_hash().unwrap(),
        hash
    );
    // Changing one label changes it.
    let mut changed = val.clone().into_parts();
    changed.labels[0] = 9;
    write_split(&moved, "val", &Dataset::new(changed).unwrap(), None).unwrap();
    assert_ne!(
        DatasetDir::open(&moved).unwrap().manifest_hash().unwrap(),
        hash
    );
    // Replacing a split without human labels removes the stale file.
    let no_human = Dataset::new(DatasetParts {
        human: None,
        ..train.clone().into_parts()
    })
    .unwrap();
    write_split(&moved, "train", &no_human, None).unwrap();
    assert!(!moved.join("train/human.npy").exists());
    assert!(
        DatasetDir::open(&moved)
            .unwrap()
            .load_split("train")
            .unwrap()
            .human()
            .is_none()
    );
    // The content hash does not depend on the format.
    assert_eq!(train.content_hash(), train.clone().content_hash());
    assert_ne!(train.content_hash(), no_human.content_hash());
}

#[test]
fn hand_written_manifest_with_float_images_and_per_split_overrides() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let hwc = hwc_images(3);
    let unit: Vec<f64> = hwc.iter().map(|&b| f64::from(b) / 255.0).collect();
    write_f64(&d.join("x.npy"), &[3, 32, 32, 3], &unit);
    write_i32(&d.join("y.npy"), &[3], &[0, 1, 1]);
    std::fs::write(
        d.join("dataset.toml"),
        r#"format_version = 1
classes = ["a", "b", "c"]
[normalization]
mean = [0.5, 0.5, 0.5]
std = [0.25, 0.25, 0.25]
[splits.mine]
images = "x.npy"
labels = "y.npy"
image_range = "unit"
classes = ["no", "yes"]
"#,
    )
    .unwrap();
    let ds = open_split(d, "mine").unwrap();
    assert_eq!(ds.images(), &hwc[..]);
    assert_eq!(ds.class_names(), &["no".to_string(), "yes".to_string()]);
    assert_eq!(ds.normalization().std, [0.25; 3]);
}

#[test]
fn stratified_subset_is_seeded_balanced_and_ordered() {
    let labels: Vec<u32> = (0..200).map(|i| (i % 10) as u32).collect();
    let d = Dataset::new(DatasetParts::cifar10(hwc_images(200), labels)).unwrap();
    let a = d.stratified_rows(SubsetSize::PerClass(5), 1).unwrap();
    assert_eq!(a.len(), 50);
    assert!(a.windows(2).all(|w| w[0] < w[1]));
    let sub = d.select(&a).unwrap();
    assert_eq!(sub.class_counts(), vec![5; 10]);
    assert_eq!(a, d.stratified_rows(SubsetSize::PerClass(5), 1).unwrap());
    assert_ne!(a, d.stratified_rows(SubsetSize::PerClass(5), 2).unwrap());
    let t = d.stratified_rows(SubsetSize::Total(33), 1).unwrap();
    let counts = d.select(&t).unwrap().class_counts();
    assert_eq!(counts.iter().sum::<usize>(), 33);
    assert!(counts.iter().all(|&c| c == 3 || c == 4), "{counts:?}");
    assert_eq!(counts, vec![4, 4, 4, 3, 3, 3, 3, 3, 3, 3]); // remainders go to the lowest ids
    let err = d.stratified_rows(SubsetSize::PerClass(21), 1).unwrap_err();
    assert!(
        err.to_string().contains("airplane") && err.to_string().contains("20 images"),
        "{err}"
    );
}

#[test]
fn holdout_parts_partition_the_split_stratified_and_seeded() {
    let labels: Vec<u32> = (0..200).map(|i| (i % 10) as u32).collect();
    let mut parts = DatasetParts::cifar10(hwc_images(200), labels);
    parts.ids = Some((0..200).map(|i| 1000 + i as i64).collect());
    let d = Dataset::new(parts).unwrap();
    let (rest, held) = d.holdout(40, 3).unwrap();
    assert_eq!((rest.len(), held.len()), (160, 40));
    assert_eq!(held.class_counts(), vec![4; 10]);
    let mut ids: Vec<i64> = rest
        .ids()
        .unwrap()
        .iter()
        .chain(held.ids().unwrap())
        .copied()
        .collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        (1000..1200).collect::<Vec<i64>>(),
        "every image in exactly one part"
    );
    assert!(
        rest.ids().unwrap().windows(2).all(|w| w[0] < w[1]),
        "original order kept"
    );
    let (_, again) = d.holdout(40, 3).unwrap();
    assert_eq!(again.ids(), held.ids());
    let (_, other) = d.holdout(40, 4).unwrap();
    assert_ne!(other.ids(), held.ids());
    assert!(d.holdout(201, 3).is_err());
}

#[test]
fn human_rows_are_permuted_within_each_class_only() {
    let n = 300;
    let labels: Vec<u32> = (0..n).map(|i| (i % 10) as u32).collect();
    let mut parts = DatasetParts::cifar10(hwc_images(n), labels.clone());
    // every row distinct: its own weight on the true class
    let mut human = vec![0f64; n * 10];
    for i in 0..n {
        let w = 0.5 + 0.4 * i as f64 / n as f64;
        human[i * 10 + labels[i] as usize] = w;
        human[i * 10 + (labels[i] as usize + 1) % 10] = 1.0 - w;
    }
    parts.human = Some(human.clone());
    let d = Dataset::new(parts).unwrap();
    let s = d.shuffle_human_within_class(7).unwrap();
    assert_eq!(s.images(), d.images());
    assert_eq!(s.labels(), d.labels());
    let rows = |ds: &Dataset, class: u32| {
        let mut r: Vec<Vec<u64>> = (0..n)
            .filter(|&i| labels[i] == class)
            .map(|i| {
                ds.human_row(i)
                    .unwrap()
                    .iter()
                    .map(|x| x.to_bits())
                    .collect()
            })
            .collect();
        r.sort();
        r
    };
    let mut moved = 0;
    for class in 0..10 {
        // the same multiset of rows in each class: same softness per class
        assert_eq!(rows(&s, class), rows(&d, class), "class {class}");
    }
    for (i, &label) in labels.iter().enumerate() {
        if s.human_row(i) != d.human_row(i) {
            moved += 1;
        }
        // a row stays on an image of its own class: its mass on the true class is kept
        assert!(s.human_row(i).unwrap()[label as usize] >= 0.5);
    }
    assert!(moved > n * 8 / 10, "only {moved} of {n} rows moved");
    assert_eq!(d.shuffle_human_within_class(7).unwrap(), s);
    assert_ne!(d.shuffle_human_within_class(8).unwrap(), s);
    let plain = Dataset::new(DatasetParts::cifar10(hwc_images(4), vec![0, 1, 2, 3])).unwrap();
    let e = plain.shuffle_human_within_class(1).unwrap_err().to_string();
    assert!(e.contains("no human labels"), "{e}");
}

#[test]
fn npy_import_selects_rows_looks_up_labels_by_id_and_appends_without_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let imgs = hwc_images(8);
    write_u8(&d.join("first.npy"), &[4, 32, 32, 3], &imgs[..4 * 3072]);
    // All "train" labels, indexed by train index 0..20.
    let all_labels: Vec<u8> = (0..20).map(|i| ((i * 3) % 10) as u8).collect();
    write_u8(&d.join("all_labels.npy"), &[20], &all_labels);
    let first = NpyImport {
        images: d.join("first.npy"),
        labels: d.join("all_labels.npy"),
        human: None,
        ids: None,
        labels_by_id: true,
        human_by_id: false,
        rows: None,
        image_range: ImageRange::Auto,
        class_names: cifar10_class_names(),
        normalization: Normalization::CIFAR10,
    }
    .load()
    .unwrap();
    assert_eq!(first.ids(), Some(&[0i64, 1, 2, 3][..]));
    assert_eq!(first.labels(), &[0, 3, 6, 9]);
    // A second source: images 2,3 again (ids 2, 3) plus new ids 11 and 15.
    let mut second_imgs = imgs[2 * 3072..4 * 3072].to_vec();
    second_imgs.extend_from_slice(&imgs[4 * 3072..6 * 3072]);
    write_u8(&d.join("second.npy"), &[4, 32, 32, 3], &second_imgs);
    write_i32(&d.join("second_ids.npy"), &[4], &[2, 3, 11, 15]);
    write_u8(&d.join("second_labels.npy"), &[4], &[6, 9, 3, 5]);
    let second = NpyImport {
        images: d.join("second.npy"),
        labels: d.join("second_labels.npy"),
        ids: Some(d.join("second_ids.npy")),
        labels_by_id: false,
        rows: Some(vec![0, 1, 2, 3]),
        ..first_import(d)
    }
    .load()
    .unwrap();
    let (merged, stats) = append_by_id(&first, &second).unwrap();
    assert_eq!(
        stats,
        AppendStats {
            added: 2,
            skipped: 2,
            skipped_with_different_pixels: 0
        }
    );
    assert_eq!(merged.len(), 6);
    assert_eq!(merged.ids(), Some(&[0i64, 1, 2, 3, 11, 15][..]));
    assert_eq!(merged.labels(), &[0, 3, 6, 9, 3, 5]);
    assert_eq!(merged.image(5), &imgs[5 * 3072..6 * 3072]);
    // Row selection by list and by CSV column.
    assert_eq!(
        parse_rows("0..3, 7,9..11").unwrap(),
        vec![0, 1, 2, 7, 9, 10]
    );
    std::fs::write(
        d.join("meta.csv"),
        "i,origin,name\n0,imagenet,x\n1,cifar_exact,\"a,b\"\n2,imagenet,z\n",
    )
    .unwrap();
    assert_eq!(
        csv_rows_where(&d.join("meta.csv"), "origin", "imagenet").unwrap(),
        vec![0, 2]
    );
    assert_eq!(
        csv_rows_where(&d.join("meta.csv"), "name", "a,b").unwrap(),
        vec![1]
    );
    let err = csv_rows_where(&d.join("meta.csv"), "kind", "x").unwrap_err();
    assert!(err.to_string().contains("no column \"kind\""), "{err}");
}

fn first_import(d: &std::path::Path) -> NpyImport {
    NpyImport {
        images: d.join("first.npy"),
        labels: d.join("all_labels.npy"),
        human: None,
        ids: None,
        labels_by_id: true,
        human_by_id: false,
        rows: None,
        image_range: ImageRange::Auto,
        class_names: cifar10_class_names(),
        normalization: Normalization::CIFAR10,
    }
}

#[test]
fn summary_reports_histogram_pixel_stats_and_human_statistics() {
    let labels = cyclic_labels(30);
    let mut parts = DatasetParts::cifar10(vec![0u8; 30 * 3072], labels_u32(&labels));
    // Half the pixels of channel R at 255: mean 0.5, std 0.5.
    for (i, px) in parts.images.chunks_exact_mut(3).enumerate() {
        px[0] = if i % 2 == 0 { 255 } else { 0 };
        px[1] = 51; // 0.2
    }
    parts.human = Some(human_rows(&labels));
    let s = Dataset::new(parts).unwrap().summary();
    assert_eq!(s.count, 30);
    assert_eq!(s.class_counts, vec![3; 10]);
    assert!((s.pixel_mean[0] - 0.5).abs() < 1e-12 && (s.pixel_std[0] - 0.5).abs() < 1e-12);
    assert!((s.pixel_mean[1] - 0.2).abs() < 1e-12 && s.pixel_std[1].abs() < 1e-6);
    let h = s.human.unwrap();
    // Rows 0,3,...: entropy 0; others: -(0.8 ln 0.8 + 0.2 ln 0.2) = 0.500402.
    let e = -(0.8f64 * 0.8f64.ln() + 0.2 * 0.2f64.ln());
    assert!(
        (h.mean_entropy_nats - e * 20.0 / 30.0).abs() < 1e-12,
        "{}",
        h.mean_entropy_nats
    );
    assert!((h.unanimous_share - 10.0 / 30.0).abs() < 1e-12);
    assert_eq!(h.majority_agrees_with_label, 1.0);
    // 10 rows give the label 1.0, 20 rows 0.8
    assert!((h.mean_true_class_probability - (10.0 + 20.0 * 0.8) / 30.0).abs() < 1e-12);
}

#[test]
fn write_npy_round_trips_and_refuses_a_wrong_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("values.npy");
    let values = [1.5f64, -2.0, 3.25, 4.0, 5.0, 6.0];
    write_npy(&path, &[2, 3], &values).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    assert_eq!(npy.shape(), &[2, 3]);
    assert_eq!(npy.into_vec::<f64>().unwrap(), values);
    // 32-bit logits, one dimension
    let one = tmp.path().join("one.npy");
    write_npy(&one, &[3], &[1f32, 2.0, 3.0]).unwrap();
    let bytes = std::fs::read(&one).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    assert_eq!(npy.shape(), &[3]);
    assert_eq!(npy.into_vec::<f32>().unwrap(), [1.0, 2.0, 3.0]);
    // a shape that does not hold the data: an error naming the file, the old file kept
    let err = write_npy(&path, &[4, 3], &values).unwrap_err().to_string();
    assert!(
        err.contains("values.npy") && err.contains("holds 12 values, got 6"),
        "{err}"
    );
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(npyz::NpyFile::new(&bytes[..]).unwrap().shape(), &[2, 3]);
}
