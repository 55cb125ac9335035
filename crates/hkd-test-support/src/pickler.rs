//! The one pickle writer of the test files: protocol-2 opcodes and the memo, in the two
//! flavours the tests need — Python 2's cPickle (CIFAR-100's python release, see
//! [`crate::cifar100`]) and Python 3's `pickle` at protocol 2 (what `torch.save` uses, see
//! [`crate::torch_checkpoint`]). Callers lay out their containers from these pieces the way
//! the writer they imitate does.

use std::collections::HashMap;

pub(crate) const MARK: u8 = b'(';
pub(crate) const STOP: u8 = b'.';
pub(crate) const NONE: u8 = b'N';
pub(crate) const NEWTRUE: u8 = 0x88;
pub(crate) const NEWFALSE: u8 = 0x89;
pub(crate) const EMPTY_TUPLE: u8 = b')';
pub(crate) const TUPLE: u8 = b't';
pub(crate) const TUPLE1: u8 = 0x85;
pub(crate) const TUPLE2: u8 = 0x86;
pub(crate) const TUPLE3: u8 = 0x87;
pub(crate) const EMPTY_LIST: u8 = b']';
pub(crate) const APPEND: u8 = b'a';
pub(crate) const APPENDS: u8 = b'e';
pub(crate) const EMPTY_DICT: u8 = b'}';
pub(crate) const SETITEM: u8 = b's';
pub(crate) const SETITEMS: u8 = b'u';
pub(crate) const REDUCE: u8 = b'R';
pub(crate) const BUILD: u8 = b'b';
pub(crate) const BINPERSID: u8 = b'Q';

/// How many items Python's pickler (and cPickle) puts between one MARK and its
/// APPENDS / SETITEMS.
pub(crate) const BATCHSIZE: usize = 1000;

/// Whose memo numbering to imitate.
#[derive(Clone, Copy)]
enum Flavour {
    /// Python 2's cPickle: memo indices from 1, always BINPUT with one byte (the index
    /// wraps past 255, as the CIFAR files of these tests always have: no reader looks back).
    CPickle,
    /// Python 3's `pickle`: indices from 0, LONG_BINPUT past 255, and objects pickled again
    /// (a class, an interned string) fetched from the memo with BINGET.
    Python3,
}

/// A protocol-2 pickle being written.
pub(crate) struct Pickler {
    out: Vec<u8>,
    next_memo: u32,
    flavour: Flavour,
    /// Shared objects already in the memo (their opcode bytes -> index), Python3 only.
    shared: HashMap<Vec<u8>, u32>,
}

impl Pickler {
    /// A pickle as Python 2's cPickle writes it (`cPickle.dump(obj, f, 2)`).
    pub(crate) fn cpickle() -> Self {
        Pickler {
            out: b"\x80\x02".to_vec(),
            next_memo: 1,
            flavour: Flavour::CPickle,
            shared: HashMap::new(),
        }
    }

    /// A pickle as Python 3's `pickle.Pickler(f, protocol=2)` writes it.
    pub(crate) fn python3() -> Self {
        Pickler {
            out: b"\x80\x02".to_vec(),
            next_memo: 0,
            flavour: Flavour::Python3,
            shared: HashMap::new(),
        }
    }

    /// One opcode without arguments.
    pub(crate) fn op(&mut self, op: u8) {
        self.out.push(op);
    }

    /// Bytes as they are (opcodes with their arguments).
    pub(crate) fn raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Memoizes the object on top of the stack (BINPUT / LONG_BINPUT); returns its index.
    pub(crate) fn put(&mut self) -> u32 {
        let i = self.next_memo;
        self.next_memo += 1;
        match self.flavour {
            Flavour::CPickle => self.out.extend([b'q', i as u8]),
            Flavour::Python3 if i < 256 => self.out.extend([b'q', i as u8]),
            Flavour::Python3 => {
                self.out.push(b'r');
                self.out.extend(i.to_le_bytes());
            }
        }
        i
    }

    /// Pushes memo entry `i` again (BINGET / LONG_BINGET).
    fn get(&mut self, i: u32) {
        if i < 256 {
            self.out.extend([b'h', i as u8]);
        } else {
            self.out.push(b'j');
            self.out.extend(i.to_le_bytes());
        }
    }

    /// `bytes` (an object's opcodes) the first time, memoized; BINGET of it afterwards.
    fn shared(&mut self, bytes: Vec<u8>) {
        if let Some(&i) = self.shared.get(&bytes) {
            self.get(i);
        } else {
            self.out.extend_from_slice(&bytes);
            let i = self.put();
            self.shared.insert(bytes, i);
        }
    }

    /// A Python 2 `str` (SHORT_BINSTRING or BINSTRING), memoized.
    pub(crate) fn py2_str(&mut self, s: &[u8]) {
        if s.len() < 256 {
            self.out.extend([b'U', s.len() as u8]);
        } else {
            self.out.push(b'T');
            self.out.extend((s.len() as u32).to_le_bytes());
        }
        self.out.extend(s);
        self.put();
    }

    fn binunicode(s: &str) -> Vec<u8> {
        let mut b = vec![b'X'];
        b.extend((s.len() as u32).to_le_bytes());
        b.extend(s.as_bytes());
        b
    }

    /// A Python 3 `str` (BINUNICODE), memoized: a string object of its own.
    pub(crate) fn unicode(&mut self, s: &str) {
        self.out.extend(Self::binunicode(s));
        self.put();
    }

    /// An interned Python 3 `str` (an identifier in the code, like `'storage'`): the same
    /// object each time, so pickled once and then fetched from the memo.
    pub(crate) fn interned(&mut self, s: &str) {
        self.shared(Self::binunicode(s));
    }

    /// A class or function (GLOBAL), memoized; in the Python3 flavour pickled once and
    /// then fetched from the memo, as Python's pickler does.
    pub(crate) fn global(&mut self, module: &str, name: &str) {
        let bytes = format!("c{module}\n{name}\n").into_bytes();
        match self.flavour {
            Flavour::Python3 => self.shared(bytes),
            Flavour::CPickle => {
                self.out.extend(bytes);
                self.put();
            }
        }
    }

    /// An `int` as Python's `save_long` writes it at protocol 2: BININT1, BININT2, BININT
    /// or LONG1.
    pub(crate) fn int(&mut self, v: i64) {
        if (0..256).contains(&v) {
            self.out.extend([b'K', v as u8]);
        } else if (0..65536).contains(&v) {
            self.out.push(b'M');
            self.out.extend((v as u16).to_le_bytes());
        } else if i32::try_from(v).is_ok() {
            self.out.push(b'J');
            self.out.extend((v as i32).to_le_bytes());
        } else {
            self.long1(&v.to_le_bytes());
        }
    }

    /// A LONG1 integer of little-endian two's-complement `bytes`, trimmed to the shortest
    /// form as Python's `encode_long` writes it.
    pub(crate) fn long1(&mut self, bytes: &[u8]) {
        let mut b = bytes.to_vec();
        while b.len() > 1 {
            let (last, before) = (b[b.len() - 1], b[b.len() - 2]);
            if (last == 0 && before & 0x80 == 0) || (last == 0xff && before & 0x80 != 0) {
                b.pop();
            } else {
                break;
            }
        }
        self.out.extend([0x8a, b.len() as u8]);
        self.out.extend(b);
    }

    /// A `float` (BINFLOAT, big-endian).
    pub(crate) fn float(&mut self, v: f64) {
        self.out.push(b'G');
        self.out.extend(v.to_be_bytes());
    }

    /// A `bool` (NEWTRUE / NEWFALSE).
    pub(crate) fn bool(&mut self, v: bool) {
        self.out.push(if v { NEWTRUE } else { NEWFALSE });
    }

    /// A tuple of `n` items written by `items`, as Python's `save_tuple` does at protocol
    /// 2: EMPTY_TUPLE (not memoized), TUPLE1-3 or MARK … TUPLE, then BINPUT.
    pub(crate) fn tuple(&mut self, n: usize, items: impl FnOnce(&mut Self)) {
        match n {
            0 => {
                items(self);
                self.out.push(EMPTY_TUPLE);
                return;
            }
            1..=3 => {
                items(self);
                self.out.push([TUPLE1, TUPLE2, TUPLE3][n - 1]);
            }
            _ => {
                self.out.push(MARK);
                items(self);
                self.out.push(TUPLE);
            }
        }
        self.put();
    }

    /// The items of a dict already on the stack, as Python's `_batch_setitems` writes
    /// them: per batch of [`BATCHSIZE`], MARK … SETITEMS, or SETITEM for a batch of one.
    /// `item` writes one key and its value.
    pub(crate) fn set_items<T>(&mut self, items: &[T], mut item: impl FnMut(&mut Self, &T)) {
        for batch in items.chunks(BATCHSIZE) {
            if let [one] = batch {
                item(self, one);
                self.out.push(SETITEM);
            } else {
                self.out.push(MARK);
                for x in batch {
                    item(self, x);
                }
                self.out.push(SETITEMS);
            }
        }
    }

    /// The items of a list already on the stack, as Python's `_batch_appends` writes them:
    /// per batch of [`BATCHSIZE`], MARK … APPENDS, or APPEND for a batch of one.
    pub(crate) fn appends<T>(&mut self, items: &[T], mut item: impl FnMut(&mut Self, &T)) {
        for batch in items.chunks(BATCHSIZE) {
            if let [one] = batch {
                item(self, one);
                self.out.push(APPEND);
            } else {
                self.out.push(MARK);
                for x in batch {
                    item(self, x);
                }
                self.out.push(APPENDS);
            }
        }
    }

    /// The pickle, with its STOP opcode.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.out.push(STOP);
        self.out
    }
}
