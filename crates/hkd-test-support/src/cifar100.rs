//! Small CIFAR-100 files in the official release formats, written by the tests themselves
//! (nothing is downloaded): the python release (`cifar-100-python/{train,test,meta}`,
//! pickled as Python 2's cPickle wrote them, protocol 2) and the binary release
//! (`cifar-100-binary/{train,test}.bin`, records of coarse label, fine label, 3072 pixel
//! bytes, plus the two label-name files).

use std::path::{Path, PathBuf};

use crate::pickler::{self, Pickler};

/// One part (train or test) of a synthetic CIFAR-100: images as the releases store them
/// (per image 1024 red, 1024 green, 1024 blue bytes, row-major), fine labels (0..100) and
/// coarse labels (0..20).
#[derive(Debug, Clone)]
pub struct Part {
    pub planes: Vec<u8>,
    pub fine: Vec<u8>,
    pub coarse: Vec<u8>,
}

impl Part {
    /// `n` images; image `i` has fine class `(i * 7 + offset) % 100`, its coarse class
    /// `fine / 5`, and pixels that depend on its class and on `i`, so that a network can
    /// learn something from them.
    pub fn synthetic(n: usize, offset: usize) -> Part {
        let mut planes = Vec::with_capacity(n * 3072);
        let mut fine = Vec::with_capacity(n);
        for i in 0..n {
            let class = (i * 7 + offset) % 100;
            fine.push(class as u8);
            let mut state = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            for p in 0..3072 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let channel = p / 1024;
                let base = (class * 37 + channel * 71) % 200;
                planes.push((base as u64 + state % 56) as u8);
            }
        }
        let coarse = fine.iter().map(|f| f / 5).collect();
        Part {
            planes,
            fine,
            coarse,
        }
    }
}

/// The 100 fine class names (`fine_00` …) and 20 coarse ones (`coarse_00` …) the files
/// carry, in label order.
pub fn class_names() -> (Vec<String>, Vec<String>) {
    (
        (0..100).map(|i| format!("fine_{i:02}")).collect(),
        (0..20).map(|i| format!("coarse_{i:02}")).collect(),
    )
}

/// A list, appended in batches of 1000 as cPickle does (MARK … APPENDS even for one).
fn list<T>(p: &mut Pickler, items: &[T], mut item: impl FnMut(&mut Pickler, &T)) {
    p.op(pickler::EMPTY_LIST);
    p.put();
    for chunk in items.chunks(pickler::BATCHSIZE) {
        p.op(pickler::MARK);
        for x in chunk {
            item(p, x);
        }
        p.op(pickler::APPENDS);
    }
}

/// A 2-D `uint8` numpy array, as `numpy.ndarray.__reduce__` pickles it.
fn ndarray_u8(p: &mut Pickler, rows: usize, cols: usize, data: &[u8]) {
    p.global("numpy.core.multiarray", "_reconstruct");
    p.global("numpy", "ndarray");
    p.raw(b"K\x00\x85U\x01b\x87R");
    p.put();
    p.raw(b"(K\x01");
    p.int(rows as i64);
    p.int(cols as i64);
    p.op(pickler::TUPLE2);
    p.global("numpy", "dtype");
    p.raw(b"U\x02u1K\x00K\x01\x87R");
    p.put();
    p.raw(b"(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tbI00\n");
    p.raw(b"T");
    p.raw(&(data.len() as u32).to_le_bytes());
    p.raw(data);
    p.put();
    p.raw(b"tb");
}

/// `{key: value, …}` with the values written by `entries` (MARK … SETITEMS, as cPickle).
fn dict(p: &mut Pickler, entries: impl FnOnce(&mut Pickler)) {
    p.op(pickler::EMPTY_DICT);
    p.put();
    p.op(pickler::MARK);
    entries(p);
    p.op(pickler::SETITEMS);
}

fn part_pickle(part: &Part, label: &str) -> Vec<u8> {
    let n = part.fine.len();
    let names: Vec<String> = (0..n).map(|i| format!("synthetic_{i}.png")).collect();
    let mut p = Pickler::cpickle();
    dict(&mut p, |p| {
        p.py2_str(b"data");
        ndarray_u8(p, n, 3072, &part.planes);
        p.py2_str(b"fine_labels");
        list(p, &part.fine, |p, &v| p.int(i64::from(v)));
        p.py2_str(b"batch_label");
        p.py2_str(label.as_bytes());
        p.py2_str(b"coarse_labels");
        list(p, &part.coarse, |p, &v| p.int(i64::from(v)));
        p.py2_str(b"filenames");
        list(p, &names, |p, s| p.py2_str(s.as_bytes()));
    });
    p.finish()
}

fn meta_pickle() -> Vec<u8> {
    let (fine, coarse) = class_names();
    let mut p = Pickler::cpickle();
    dict(&mut p, |p| {
        p.py2_str(b"fine_label_names");
        list(p, &fine, |p, s| p.py2_str(s.as_bytes()));
        p.py2_str(b"coarse_label_names");
        list(p, &coarse, |p, s| p.py2_str(s.as_bytes()));
    });
    p.finish()
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Writes `<dir>/cifar-100-python/{train,test,meta}` and returns that folder.
pub fn write_python(dir: &Path, train: &Part, test: &Part) -> PathBuf {
    let root = dir.join("cifar-100-python");
    std::fs::create_dir_all(&root).unwrap();
    write(
        &root.join("train"),
        &part_pickle(train, "training batch 1 of 1"),
    );
    write(
        &root.join("test"),
        &part_pickle(test, "testing batch 1 of 1"),
    );
    write(&root.join("meta"), &meta_pickle());
    root
}

/// Writes `<dir>/cifar-100-binary/{train.bin,test.bin,fine_label_names.txt,
/// coarse_label_names.txt}` and returns that folder.
pub fn write_binary(dir: &Path, train: &Part, test: &Part) -> PathBuf {
    let root = dir.join("cifar-100-binary");
    std::fs::create_dir_all(&root).unwrap();
    for (file, part) in [("train.bin", train), ("test.bin", test)] {
        let mut bytes = Vec::with_capacity(part.fine.len() * 3074);
        for (i, (&c, &f)) in part.coarse.iter().zip(&part.fine).enumerate() {
            bytes.push(c);
            bytes.push(f);
            bytes.extend(&part.planes[i * 3072..(i + 1) * 3072]);
        }
        write(&root.join(file), &bytes);
    }
    let (fine, coarse) = class_names();
    write(
        &root.join("fine_label_names.txt"),
        (fine.join("\n") + "\n").as_bytes(),
    );
    write(
        &root.join("coarse_label_names.txt"),
        (coarse.join("\n") + "\n").as_bytes(),
    );
    root
}
