//! CIFAR-100 in both official releases, written by the test itself (python pickles as
//! Python 2's cPickle wrote them, and binary records), read and prepared into our layout.

use std::path::Path;

use hkd_datasets::*;
use hkd_test_support::cifar100::{Part, class_names, write_binary, write_python};

fn parts() -> (Part, Part) {
    (Part::synthetic(30, 0), Part::synthetic(12, 3))
}

/// Pixel (y, x, channel) of image `i` as the releases store it (R, G, B planes).
fn plane_pixel(part: &Part, i: usize, y: usize, x: usize, c: usize) -> u8 {
    part.planes[i * 3072 + c * 1024 + y * 32 + x]
}

#[test]
fn both_releases_read_to_the_same_fine_class_dataset_with_coarse_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, test) = parts();
    let python = write_python(&tmp.path().join("py"), &train, &test);
    let binary = write_binary(&tmp.path().join("bin"), &train, &test);
    // Found from the folder the tarball unpacks to, and from the one holding it.
    assert_eq!(
        Cifar100Release::find(&tmp.path().join("py")).unwrap(),
        Cifar100Release::Python(python.clone())
    );
    assert_eq!(
        Cifar100Release::find(&binary).unwrap(),
        Cifar100Release::Binary(binary.clone())
    );
    let (fine_names, coarse_names) = class_names();
    for (release, part, source) in [
        (
            Cifar100Release::Python(python.clone()),
            Cifar100Part::Train,
            &train,
        ),
        (
            Cifar100Release::Binary(binary.clone()),
            Cifar100Part::Train,
            &train,
        ),
        (
            Cifar100Release::Python(python.clone()),
            Cifar100Part::Test,
            &test,
        ),
        (
            Cifar100Release::Binary(binary.clone()),
            Cifar100Part::Test,
            &test,
        ),
    ] {
        let what = format!("{} {:?}", release.kind(), part);
        let split = release.load(part).unwrap();
        let d = &split.dataset;
        assert_eq!(d.len(), source.fine.len(), "{what}");
        assert_eq!(d.num_classes(), 100, "{what}");
        assert_eq!(d.class_names(), fine_names.as_slice(), "{what}");
        assert_eq!(d.normalization(), Normalization::CIFAR100, "{what}");
        let fine: Vec<u32> = source.fine.iter().map(|&l| u32::from(l)).collect();
        let coarse: Vec<u32> = source.coarse.iter().map(|&l| u32::from(l)).collect();
        assert_eq!(d.labels(), fine.as_slice(), "{what}");
        assert_eq!(split.coarse_labels, coarse, "{what}");
        assert_eq!(split.coarse_names, coarse_names, "{what}");
        assert_eq!(d.ids().unwrap(), (0..d.len() as i64).collect::<Vec<_>>());
        // Planes become HWC: pixel (y, x) of channel c is at (y·32 + x)·3 + c.
        for (i, y, x, c) in [(0, 0, 0, 0), (1, 5, 7, 1), (d.len() - 1, 31, 31, 2)] {
            assert_eq!(
                d.image(i)[(y * 32 + x) * 3 + c],
                plane_pixel(source, i, y, x, c),
                "{what}: image {i} ({y}, {x}, {c})"
            );
        }
    }
    // The two releases hold the same data.
    let a = Cifar100Release::Python(python)
        .load(Cifar100Part::Train)
        .unwrap();
    let b = Cifar100Release::Binary(binary)
        .load(Cifar100Part::Train)
        .unwrap();
    assert_eq!(a.dataset.content_hash(), b.dataset.content_hash());
}

#[test]
fn prepare_writes_train_and_test_with_coarse_labels_and_refuses_an_existing_out() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, test) = parts();
    write_python(&tmp.path().join("src"), &train, &test);
    let out = tmp.path().join("cifar100");
    let prepared = prepare_cifar100(&tmp.path().join("src"), &out).unwrap();
    assert_eq!(prepared.release, "python");
    assert_eq!(
        prepared.splits,
        vec![("train".to_string(), 30), ("test".to_string(), 12)]
    );
    let dir = DatasetDir::open(&out).unwrap();
    assert_eq!(dir.layout(), Layout::Manifest);
    let mut names = dir.split_names();
    names.sort();
    assert_eq!(names, ["test", "train"]);
    let loaded = dir.load_split("train").unwrap();
    assert_eq!(loaded.num_classes(), 100);
    assert_eq!(loaded.normalization(), Normalization::CIFAR100);
    assert_eq!(
        loaded.labels(),
        train
            .fine
            .iter()
            .map(|&l| u32::from(l))
            .collect::<Vec<_>>()
            .as_slice()
    );
    let manifest = Manifest::read(&out.join(MANIFEST_FILE)).unwrap();
    assert_eq!(manifest.name.as_deref(), Some("cifar100"));
    assert_eq!(manifest.coarse_classes, Some(class_names().1));
    let entry = &manifest.splits["test"];
    assert_eq!(
        entry.coarse_labels.as_deref(),
        Some("test/coarse_labels.npy")
    );
    let coarse = std::fs::read(out.join("test/coarse_labels.npy")).unwrap();
    // A 1-d uint8 .npy: the values are the file's last 12 bytes.
    assert_eq!(&coarse[coarse.len() - 12..], test.coarse.as_slice());
    // The coarse labels are among the files the dataset is read from (and hashed over).
    let files = dir.files().unwrap();
    assert!(
        files
            .iter()
            .any(|(s, p)| s == "test" && p.ends_with("test/coarse_labels.npy")),
        "{files:?}"
    );
    // Nothing but the dataset is left beside it.
    let beside: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(beside.len(), 2, "{beside:?}");

    // An existing --out is refused and left as it was.
    let before = std::fs::read(out.join(MANIFEST_FILE)).unwrap();
    let err = prepare_cifar100(&tmp.path().join("src"), &out)
        .unwrap_err()
        .to_string();
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(out.join(MANIFEST_FILE)).unwrap(), before);
}

fn prepare_err(src: &Path, out: &Path) -> String {
    let err = prepare_cifar100(src, out).unwrap_err().to_string();
    assert!(!out.exists(), "{}: written despite {err}", out.display());
    err
}

#[test]
fn damaged_releases_are_clear_errors_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, test) = parts();
    let out = tmp.path().join("out");

    // No release at all.
    let err = prepare_err(tmp.path(), &out);
    assert!(err.contains("no CIFAR-100 release"), "{err}");

    // A truncated binary file: named, with the record size.
    let bin = write_binary(&tmp.path().join("bin"), &train, &test);
    let bytes = std::fs::read(bin.join("test.bin")).unwrap();
    std::fs::write(bin.join("test.bin"), &bytes[..bytes.len() - 100]).unwrap();
    let err = prepare_err(&bin, &out);
    assert!(
        err.contains("test.bin") && err.contains("3074-byte records"),
        "{err}"
    );

    // A fine label of 100 in the binary release.
    let mut bytes = std::fs::read(bin.join("train.bin")).unwrap();
    std::fs::write(bin.join("test.bin"), &bytes[..3074]).unwrap();
    bytes[3074 + 1] = 100;
    std::fs::write(bin.join("train.bin"), &bytes).unwrap();
    let err = prepare_err(&bin, &out);
    assert!(err.contains("train.bin") && err.contains("100"), "{err}");

    // A truncated pickle, and a meta pickle without the fine names.
    let py = write_python(&tmp.path().join("py"), &train, &test);
    let pickle = std::fs::read(py.join("train")).unwrap();
    std::fs::write(py.join("train"), &pickle[..pickle.len() / 2]).unwrap();
    let err = prepare_err(&py, &out);
    assert!(err.contains("train") && err.contains("pickle"), "{err}");
    std::fs::write(py.join("train"), &pickle).unwrap();
    let meta = std::fs::read(py.join("meta")).unwrap();
    let renamed = replace(&meta, b"fine_label_names", b"fine_label_nameX");
    std::fs::write(py.join("meta"), renamed).unwrap();
    let err = prepare_err(&py, &out);
    assert!(
        err.contains("meta")
            && err.contains("fine_label_names")
            && err.contains("fine_label_nameX"),
        "{err}"
    );
    // No temporary directory is left behind.
    let left: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

fn replace(data: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = data
        .windows(from.len())
        .position(|w| w == from)
        .expect("pattern in the file");
    let mut out = data.to_vec();
    out[at..at + to.len()].copy_from_slice(to);
    out
}
