//! Every bad input listed in the issue gives a clear error (file, what is wrong, what was
//! expected), never a panic.

mod common;

use common::*;
use hkd_datasets::*;
use std::path::Path;

fn err_images(path: &Path) -> String {
    read_images_npy(path, ImageRange::Auto)
        .unwrap_err()
        .to_string()
}

#[test]
fn non_npy_empty_and_truncated_files() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("text.npy"), "airplane,automobile\n").unwrap();
    let e = err_images(&d.join("text.npy"));
    assert!(
        e.contains("text.npy") && e.contains("not a readable .npy") && e.contains("magic"),
        "{e}"
    );
    std::fs::write(d.join("empty.npy"), "").unwrap();
    let e = err_images(&d.join("empty.npy"));
    assert!(e.contains("empty"), "{e}");
    // Header cut off.
    std::fs::write(d.join("head.npy"), b"\x93NUMPY\x01\x00\x76\x00{'descr'").unwrap();
    let e = err_images(&d.join("head.npy"));
    assert!(e.contains("head.npy") && e.contains("header"), "{e}");
    // Data cut off: 2 images promised, 1.5 present.
    write_u8(
        &d.join("short.npy"),
        &[2, 32, 32, 3],
        &vec![0u8; 3072 + 1536],
    );
    let err = read_images_npy(&d.join("short.npy"), ImageRange::Auto).unwrap_err();
    assert!(
        matches!(
            err,
            DatasetError::Truncated {
                expected: 6144,
                found: 4608,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("short.npy") && err.to_string().contains("truncated"));
    // A header whose shape product overflows 64 bits (2^62·32·32·3 wraps to 0).
    let header =
        "{'descr': '|u1', 'fortran_order': False, 'shape': (4611686018427387904, 32, 32, 3), }";
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    let pad = 64 - (10 + header.len() + 1) % 64;
    let len = (header.len() + pad + 1) as u16;
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend(std::iter::repeat_n(b' ', pad));
    bytes.push(b'\n');
    bytes.extend_from_slice(&[0u8; 64]);
    std::fs::write(d.join("huge.npy"), bytes).unwrap();
    let e = err_images(&d.join("huge.npy"));
    assert!(e.contains("huge.npy") && e.contains("overflows"), "{e}");
    // Missing file.
    let e = err_images(&d.join("missing.npy"));
    assert!(
        e.contains("missing.npy") && e.contains("read failed"),
        "{e}"
    );
}

#[test]
fn wrong_dtypes_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write_i32(&d.join("img_i32.npy"), &[1, 32, 32, 3], &vec![0; 3072]);
    let err = read_images_npy(&d.join("img_i32.npy"), ImageRange::Auto).unwrap_err();
    assert!(
        matches!(err, DatasetError::Dtype { role: "images", .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("int32") && err.to_string().contains("uint8, float32 or float64")
    );
    write_npy_raw(&d.join("bool.npy"), "|b1", &[3], &[0, 1, 1]);
    let e = read_labels_npy(&d.join("bool.npy"), 10)
        .unwrap_err()
        .to_string();
    assert!(e.contains("bool") && e.contains("labels"), "{e}");
    write_npy_raw(&d.join("c.npy"), "<c8", &[1], &[0; 8]);
    let e = read_labels_npy(&d.join("c.npy"), 10)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not supported"), "{e}");
    write_npy_raw(&d.join("s.npy"), "|S3", &[1], b"abc");
    let e = read_labels_npy(&d.join("s.npy"), 10)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not supported"), "{e}");
}

#[test]
fn wrong_shapes_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write_u8(&d.join("mnist.npy"), &[2, 28, 28, 1], &vec![0; 2 * 784]);
    let err = read_images_npy(&d.join("mnist.npy"), ImageRange::Auto).unwrap_err();
    assert!(
        matches!(err, DatasetError::Shape { ref found, .. } if found == &vec![2, 28, 28, 1]),
        "{err}"
    );
    assert!(err.to_string().contains("N×32×32×3"));
    write_u8(&d.join("flat.npy"), &[1, 3072], &vec![0; 3072]);
    let e = err_images(&d.join("flat.npy"));
    assert!(e.contains("ambiguous"), "{e}");
    write_u8(&d.join("l2.npy"), &[2, 2], &[0, 1, 2, 3]);
    let e = read_labels_npy(&d.join("l2.npy"), 10)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[2, 2]") && e.contains("(N,)"), "{e}");
    write_f64(&d.join("h9.npy"), &[1, 9], &[1.0 / 9.0; 9]);
    let e = read_human_npy(&d.join("h9.npy"), 10)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[1, 9]") && e.contains("N×10"), "{e}");
    // Fortran order (two rows: for one row C and Fortran order are the same bytes).
    let mut header = "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 10), }".to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend(std::iter::repeat_n(0u8, 160));
    std::fs::write(d.join("fortran.npy"), bytes).unwrap();
    let e = read_human_npy(&d.join("fortran.npy"), 10)
        .unwrap_err()
        .to_string();
    assert!(e.contains("Fortran"), "{e}");
}

#[test]
fn labels_outside_the_classes_or_not_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write_i64(&d.join("ten.npy"), &[3], &[0, 10, 1]);
    let err = read_labels_npy(&d.join("ten.npy"), 10).unwrap_err();
    assert!(
        matches!(
            err,
            DatasetError::LabelOutOfRange {
                row: 1,
                classes: 10,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("is 10") && err.to_string().contains("0..10"));
    write_i32(&d.join("neg.npy"), &[2], &[0, -1]);
    let e = read_labels_npy(&d.join("neg.npy"), 10)
        .unwrap_err()
        .to_string();
    assert!(e.contains("row 1 is -1"), "{e}");
    write_f32(&d.join("half.npy"), &[2], &[2.5, 1.0]);
    let e = read_labels_npy(&d.join("half.npy"), 10)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("row 0 is 2.5") && e.contains("whole number"),
        "{e}"
    );
}

#[test]
fn human_rows_negative_nan_or_not_summing_to_one() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let mut rows = human_rows(&cyclic_labels(3));
    rows[12] = -0.1;
    rows[13] += 0.1;
    write_f64(&d.join("neg.npy"), &[3, 10], &rows);
    let e = read_human_npy(&d.join("neg.npy"), 10).unwrap_err();
    assert!(matches!(e, DatasetError::BadHumanRow { row: 1, .. }), "{e}");
    assert!(e.to_string().contains("negative"), "{e}");
    let mut rows = human_rows(&cyclic_labels(3));
    rows[25] = f64::NAN;
    write_f64(&d.join("nan.npy"), &[3, 10], &rows);
    let e = read_human_npy(&d.join("nan.npy"), 10)
        .unwrap_err()
        .to_string();
    assert!(e.contains("row 2") && e.contains("NaN"), "{e}");
    let mut rows = human_rows(&cyclic_labels(3));
    rows[0] = 0.998; // sum 0.998: outside ±1e-3
    write_f64(&d.join("sum.npy"), &[3, 10], &rows);
    let e = read_human_npy(&d.join("sum.npy"), 10)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("row 0") && e.contains("sums to 0.998") && e.contains("±0.001"),
        "{e}"
    );
    rows[0] = 0.9995; // within tolerance
    write_f64(&d.join("ok.npy"), &[3, 10], &rows);
    assert!(read_human_npy(&d.join("ok.npy"), 10).is_ok());
    write_i64(&d.join("novotes.npy"), &[1, 10], &[0; 10]);
    let e = read_human_npy(&d.join("novotes.npy"), 10)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no votes"), "{e}");
}

#[test]
fn pixel_values_that_cannot_be_images() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let mut v = vec![0.5f32; 3072];
    v[7] = -0.42;
    write_f32(&d.join("normalised.npy"), &[1, 32, 32, 3], &v);
    let e = err_images(&d.join("normalised.npy"));
    assert!(e.contains("below 0") && e.contains("normalised"), "{e}");
    v[7] = 300.0;
    write_f32(&d.join("big.npy"), &[1, 32, 32, 3], &v);
    assert!(err_images(&d.join("big.npy")).contains("above 255"));
    v[7] = f32::NAN;
    write_f32(&d.join("nan.npy"), &[1, 32, 32, 3], &v);
    assert!(err_images(&d.join("nan.npy")).contains("NaN"));
    v[7] = 2.0;
    write_f32(&d.join("unit.npy"), &[1, 32, 32, 3], &v);
    let e = read_images_npy(&d.join("unit.npy"), ImageRange::Unit)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unit"), "{e}");
}

fn write_manifest_dir(d: &Path, n_images: usize, n_labels: usize, extra: &str) {
    write_u8(
        &d.join("x.npy"),
        &[n_images, 32, 32, 3],
        &hwc_images(n_images),
    );
    write_u8(&d.join("y.npy"), &[n_labels], &cyclic_labels(n_labels));
    std::fs::write(
        d.join("dataset.toml"),
        format!(
            "format_version = 1\nclasses = {:?}\n[normalization]\nmean = [0.4914, 0.4822, 0.4465]\nstd = [0.2023, 0.1994, 0.2010]\n[splits.train]\nimages = \"x.npy\"\nlabels = \"y.npy\"\n{extra}",
            CIFAR10_CLASSES
        ),
    )
    .unwrap();
}

#[test]
fn length_mismatch_between_images_labels_and_human() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write_manifest_dir(d, 4, 5, "");
    let err = open_split(d, "train").unwrap_err();
    assert!(
        matches!(
            err,
            DatasetError::LengthMismatch {
                left_rows: 4,
                right_rows: 5,
                ..
            }
        ),
        "{err}"
    );
    let e = err.to_string();
    assert!(
        e.contains("x.npy has 4 images") && e.contains("y.npy has 5 labels"),
        "{e}"
    );
    write_manifest_dir(d, 4, 4, "human = \"h.npy\"\n");
    write_f64(&d.join("h.npy"), &[3, 10], &human_rows(&cyclic_labels(3)));
    let e = open_split(d, "train").unwrap_err().to_string();
    assert!(e.contains("h.npy has 3 human label rows"), "{e}");
}

#[test]
fn manifest_problems() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write_manifest_dir(d, 4, 4, "count = 5\n");
    let e = open_split(d, "train").unwrap_err().to_string();
    assert!(
        e.contains("dataset.toml") && e.contains("count = 5") && e.contains("holds 4"),
        "{e}"
    );
    write_manifest_dir(d, 4, 4, "colour = \"rgb\"\n");
    let e = DatasetDir::open(d).unwrap_err().to_string();
    assert!(e.contains("dataset.toml") && e.contains("colour"), "{e}");
    write_manifest_dir(d, 4, 4, "");
    let e = open_split(d, "val").unwrap_err().to_string();
    assert!(
        e.contains("no split named \"val\"") && e.contains("train"),
        "{e}"
    );
    std::fs::write(
        d.join("dataset.toml"),
        "format_version = 2\nclasses=[\"a\"]\n[normalization]\nmean=[0,0,0]\nstd=[1,1,1]\n",
    )
    .unwrap();
    let e = DatasetDir::open(d).unwrap_err().to_string();
    assert!(e.contains("format_version is 2"), "{e}");
    std::fs::write(
        d.join("dataset.toml"),
        "format_version = 1\nclasses=[\"a\"]\n[normalization]\nmean=[0,0,0]\nstd=[0,1,1]\n",
    )
    .unwrap();
    let e = DatasetDir::open(d).unwrap_err().to_string();
    assert!(e.contains("std > 0"), "{e}");
    let empty = tempfile::tempdir().unwrap();
    let e = DatasetDir::open(empty.path()).unwrap_err().to_string();
    assert!(
        e.contains("not a dataset directory") && e.contains("dataset.toml"),
        "{e}"
    );
    let e = DatasetDir::open(&empty.path().join("nope"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not exist"), "{e}");
}

#[test]
fn cifar_binary_with_partial_record_or_bad_label() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("test_batch.bin"), vec![1u8; 3073 * 2 - 5]).unwrap();
    let e = DatasetDir::open(d)
        .unwrap()
        .load_split("test")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("test_batch.bin") && e.contains("3073-byte records"),
        "{e}"
    );
    let mut rec = vec![0u8; 3073];
    rec[0] = 12;
    std::fs::write(d.join("test_batch.bin"), rec).unwrap();
    let e = DatasetDir::open(d)
        .unwrap()
        .load_split("test")
        .unwrap_err()
        .to_string();
    assert!(e.contains("is 12"), "{e}");
}

#[test]
fn broken_png_and_unknown_class_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::create_dir_all(d.join("cat")).unwrap();
    std::fs::write(d.join("cat/x.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let e = load_image_folder(d, false).unwrap_err().to_string();
    assert!(e.contains("x.png") && e.contains("cannot decode"), "{e}");
    std::fs::create_dir_all(d.join("kitten")).unwrap();
    let e = load_image_folder(d, false).unwrap_err().to_string();
    assert!(
        e.contains("kitten") && e.contains("not CIFAR-10 class names"),
        "{e}"
    );
}

#[test]
fn in_memory_dataset_invariants() {
    let e = Dataset::new(DatasetParts::cifar10(vec![0; 3000], vec![0]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a whole number"), "{e}");
    let e = Dataset::new(DatasetParts::cifar10(vec![0; 3072], vec![0, 1]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("1 images but 2 labels"), "{e}");
    let e = Dataset::new(DatasetParts::cifar10(vec![0; 3072], vec![10]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("label at row 0 is 10"), "{e}");
    let mut p = DatasetParts::cifar10(vec![0; 2 * 3072], vec![0, 1]);
    p.ids = Some(vec![4, 4]);
    assert!(
        Dataset::new(p)
            .unwrap_err()
            .to_string()
            .contains("id 4 appears more than once")
    );
    let mut p = DatasetParts::cifar10(vec![0; 3072], vec![0]);
    p.human = Some(vec![0.5; 10]);
    assert!(
        Dataset::new(p)
            .unwrap_err()
            .to_string()
            .contains("sums to 5")
    );
    let d = Dataset::new(DatasetParts::cifar10(vec![0; 3072], vec![0])).unwrap();
    assert!(
        d.select(&[1])
            .unwrap_err()
            .to_string()
            .contains("row 1 is out of range")
    );
    assert!(parse_rows("5..2").is_err() && parse_rows("a").is_err() && parse_rows("").is_err());
}
