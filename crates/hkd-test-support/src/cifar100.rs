//! Small CIFAR-100 files in the official release formats, written by the tests themselves
//! (nothing is downloaded): the python release (`cifar-100-python/{train,test,meta}`,
//! pickled as Python 2's cPickle wrote them, protocol 2) and the binary release
//! (`cifar-100-binary/{train,test}.bin`, records of coarse label, fine label, 3072 pixel
//! bytes, plus the two label-name files).

use std::path::{Path, PathBuf};

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

/// A protocol-2 pickle as Python 2's cPickle writes one (BINPUT after every object).
struct Pickler {
    out: Vec<u8>,
    memo: u8,
}

impl Pickler {
    fn new() -> Self {
        Pickler {
            out: b"\x80\x02".to_vec(),
            memo: 0,
        }
    }
    fn put(&mut self) {
        self.memo = self.memo.wrapping_add(1);
        self.out.extend([b'q', self.memo]);
    }
    /// A Python 2 `str` of text (SHORT_BINSTRING or BINSTRING).
    fn str(&mut self, s: &[u8]) {
        if s.len() < 256 {
            self.out.extend([b'U', s.len() as u8]);
        } else {
            self.out.push(b'T');
            self.out.extend((s.len() as u32).to_le_bytes());
        }
        self.out.extend(s);
        self.put();
    }
    fn int(&mut self, v: u32) {
        if v < 256 {
            self.out.extend([b'K', v as u8]);
        } else if v < 65536 {
            self.out.push(b'M');
            self.out.extend((v as u16).to_le_bytes());
        } else {
            self.out.push(b'J');
            self.out.extend(v.to_le_bytes());
        }
    }
    /// A list, appended in batches of 1000 as cPickle does.
    fn list<T>(&mut self, items: &[T], mut item: impl FnMut(&mut Self, &T)) {
        self.out.push(b']');
        self.put();
        for chunk in items.chunks(1000) {
            self.out.push(b'(');
            for x in chunk {
                item(self, x);
            }
            self.out.push(b'e');
        }
    }
    /// A 2-D `uint8` numpy array, as `numpy.ndarray.__reduce__` pickles it.
    fn ndarray_u8(&mut self, rows: usize, cols: usize, data: &[u8]) {
        self.out.extend(b"cnumpy.core.multiarray\n_reconstruct\n");
        self.put();
        self.out.extend(b"cnumpy\nndarray\n");
        self.put();
        self.out.extend(b"K\x00\x85U\x01b\x87R");
        self.put();
        self.out.extend(b"(K\x01");
        self.int(rows as u32);
        self.int(cols as u32);
        self.out.extend(b"\x86cnumpy\ndtype\n");
        self.put();
        self.out.extend(b"U\x02u1K\x00K\x01\x87R");
        self.put();
        self.out
            .extend(b"(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tbI00\n");
        self.out.push(b'T');
        self.out.extend((data.len() as u32).to_le_bytes());
        self.out.extend(data);
        self.put();
        self.out.extend(b"tb");
    }
    /// `{key: value, …}` with the values written by `entries`.
    fn dict(&mut self, entries: impl FnOnce(&mut Self)) {
        self.out.push(b'}');
        self.put();
        self.out.push(b'(');
        entries(self);
        self.out.push(b'u');
    }
    fn finish(mut self) -> Vec<u8> {
        self.out.push(b'.');
        self.out
    }
}

fn part_pickle(part: &Part, label: &str) -> Vec<u8> {
    let n = part.fine.len();
    let names: Vec<String> = (0..n).map(|i| format!("synthetic_{i}.png")).collect();
    let mut p = Pickler::new();
    p.dict(|p| {
        p.str(b"data");
        p.ndarray_u8(n, 3072, &part.planes);
        p.str(b"fine_labels");
        p.list(&part.fine, |p, &v| p.int(u32::from(v)));
        p.str(b"batch_label");
        p.str(label.as_bytes());
        p.str(b"coarse_labels");
        p.list(&part.coarse, |p, &v| p.int(u32::from(v)));
        p.str(b"filenames");
        p.list(&names, |p, s| p.str(s.as_bytes()));
    });
    p.finish()
}

fn meta_pickle() -> Vec<u8> {
    let (fine, coarse) = class_names();
    let mut p = Pickler::new();
    p.dict(|p| {
        p.str(b"fine_label_names");
        p.list(&fine, |p, s| p.str(s.as_bytes()));
        p.str(b"coarse_label_names");
        p.list(&coarse, |p, s| p.str(s.as_bytes()));
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
