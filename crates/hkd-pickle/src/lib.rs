//! A small pickle virtual machine for reading, never executing, the pickles research code
//! hands around: `torch.save` checkpoints (dicts and OrderedDicts of tensors rebuilt by
//! `torch._utils._rebuild_tensor_v2` from persistent storage ids, plus the plain Python
//! values of training checkpoints) and numpy arrays (the CIFAR python releases: a dict of
//! label lists and one `uint8` array, pickled by Python 2's cPickle). Unknown classes become
//! opaque [`Value::Object`]s with their arguments and state, so a checkpoint that also holds
//! e.g. optimizer state or an argparse namespace still loads, and [`numpy::ndarray`] reads
//! an array out of one.
//!
//! It never executes anything: callables are only recognised by name. Malformed input is an
//! error ([`PickleError`], with the byte offset), never a panic; nesting deeper than
//! [`MAX_NESTING`] is refused. Used by `hkd-arch` (PyTorch checkpoints) and `hkd-datasets`
//! (CIFAR-100's python release).

#![forbid(unsafe_code)]

pub mod numpy;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Element type of a PyTorch storage (from `torch.FloatStorage` etc.).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageDtype {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl StorageDtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            StorageDtype::F64 | StorageDtype::I64 => 8,
            StorageDtype::F32 | StorageDtype::I32 => 4,
            StorageDtype::F16 | StorageDtype::BF16 | StorageDtype::I16 => 2,
            StorageDtype::I8 | StorageDtype::U8 | StorageDtype::Bool => 1,
        }
    }

    fn from_class(module: &str, name: &str) -> Option<StorageDtype> {
        if module != "torch" && module != "torch.cuda" {
            return None;
        }
        Some(match name {
            "DoubleStorage" => StorageDtype::F64,
            "FloatStorage" => StorageDtype::F32,
            "HalfStorage" => StorageDtype::F16,
            "BFloat16Storage" => StorageDtype::BF16,
            "LongStorage" => StorageDtype::I64,
            "IntStorage" => StorageDtype::I32,
            "ShortStorage" => StorageDtype::I16,
            "CharStorage" => StorageDtype::I8,
            "ByteStorage" | "UntypedStorage" => StorageDtype::U8,
            "BoolStorage" => StorageDtype::Bool,
            _ => return None,
        })
    }
}

/// A storage named by a persistent id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageRef {
    /// Key of the root storage (zip: file `data/<key>`; legacy: position in the key list).
    pub key: String,
    pub dtype: StorageDtype,
    /// Elements in the root storage as recorded in the id.
    pub numel: usize,
    /// Element offset of a legacy storage view into its root storage.
    pub view_offset: usize,
}

/// A tensor as described by `_rebuild_tensor_v2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorRef {
    pub storage: StorageRef,
    /// Element offset into the storage.
    pub offset: usize,
    pub size: Vec<usize>,
    pub stride: Vec<usize>,
}

/// An opaque object of an unrecognised class.
#[derive(Debug)]
pub struct Object {
    pub module: String,
    pub name: String,
    /// The arguments it was called with (REDUCE / NEWOBJ / OBJ / INST).
    pub args: Value,
    /// Its BUILD state, if any.
    pub state: Option<Value>,
}

/// A Python value. Python 2 `str` (BINSTRING, SHORT_BINSTRING) is [`Value::Str`] when it
/// is valid UTF-8 and [`Value::Bytes`] otherwise (a numpy array's raw data), as Python 3
/// reads such pickles with `encoding="bytes"`.
#[derive(Debug, Clone)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer beyond i64, as little-endian two's-complement bytes.
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Rc<RefCell<Vec<Value>>>),
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    Global(String, String),
    Object(Rc<RefCell<Object>>),
    Storage(StorageRef),
    Tensor(Rc<TensorRef>),
}

/// How deep values may nest. PyTorch checkpoints nest a few levels (a dict of dicts of
/// tensors); a pickle nesting deeper is refused rather than risking the stack.
pub const MAX_NESTING: usize = 100;

/// Dropping a value dismantles nested containers with an explicit stack, so that a deeply
/// nested value (a malicious pickle builds one with a few bytes per level) cannot overflow
/// the call stack, whatever the error path.
impl Drop for Value {
    fn drop(&mut self) {
        let mut pending: Vec<Value> = Vec::new();
        take_children(self, &mut pending);
        while let Some(mut v) = pending.pop() {
            take_children(&mut v, &mut pending);
        }
    }
}

/// Moves the children of `v` out into `out` where `v` is their last owner.
fn take_children(v: &mut Value, out: &mut Vec<Value>) {
    match v {
        Value::Tuple(items) => out.append(items),
        Value::List(list) => {
            if let Some(cell) = Rc::get_mut(list) {
                out.append(cell.get_mut());
            }
        }
        Value::Dict(dict) => {
            if let Some(cell) = Rc::get_mut(dict) {
                for (k, v) in cell.get_mut().drain(..) {
                    out.push(k);
                    out.push(v);
                }
            }
        }
        Value::Object(object) => {
            if let Some(cell) = Rc::get_mut(object) {
                let o = cell.get_mut();
                out.push(std::mem::replace(&mut o.args, Value::None));
                if let Some(state) = o.state.take() {
                    out.push(state);
                }
            }
        }
        _ => {}
    }
}

/// The deepest nesting of `top` (containers in containers), counted without recursion and
/// stopping past `limit`; shared containers are visited once (cycles end there).
fn nesting_exceeds(top: &Value, limit: usize) -> bool {
    let mut seen: std::collections::HashSet<*const ()> = std::collections::HashSet::new();
    let mut stack: Vec<(Value, usize)> = vec![(top.clone(), 0)];
    while let Some((v, depth)) = stack.pop() {
        if depth > limit {
            return true;
        }
        let mut children = |items: Vec<Value>| {
            stack.extend(items.into_iter().map(|c| (c, depth + 1)));
        };
        match &v {
            Value::Tuple(items) => children(items.clone()),
            Value::List(list) if seen.insert(Rc::as_ptr(list) as *const ()) => {
                children(list.borrow().clone());
            }
            Value::Dict(dict) if seen.insert(Rc::as_ptr(dict) as *const ()) => {
                children(
                    dict.borrow()
                        .iter()
                        .flat_map(|(k, v)| [k.clone(), v.clone()])
                        .collect(),
                );
            }
            Value::Object(object) if seen.insert(Rc::as_ptr(object) as *const ()) => {
                let o = object.borrow();
                let mut items = vec![o.args.clone()];
                items.extend(o.state.clone());
                children(items);
            }
            _ => {}
        }
    }
    false
}

impl Value {
    pub fn type_name(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(_) => "bool".into(),
            Value::Int(_) | Value::BigInt(_) => "int".into(),
            Value::Float(_) => "float".into(),
            Value::Str(_) => "str".into(),
            Value::Bytes(_) => "bytes".into(),
            Value::Tuple(_) => "tuple".into(),
            Value::List(_) => "list".into(),
            Value::Dict(_) => "dict".into(),
            Value::Global(m, n) => format!("class {m}.{n}"),
            Value::Object(o) => {
                let o = o.borrow();
                format!("{}.{} object", o.module, o.name)
            }
            Value::Storage(_) => "storage".into(),
            Value::Tensor(_) => "tensor".into(),
        }
    }

    /// A non-negative integer (or bool) as `usize`.
    pub fn as_usize(&self) -> Option<usize> {
        match self {
            Value::Int(i) if *i >= 0 => Some(*i as usize),
            Value::Bool(b) => Some(*b as usize),
            _ => None,
        }
    }

    /// A string's text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A tuple or list of non-negative integers, as `usize`s.
    pub fn usize_list(&self) -> Option<Vec<usize>> {
        match self {
            Value::Tuple(v) => v.iter().map(Value::as_usize).collect(),
            Value::List(v) => v.borrow().iter().map(Value::as_usize).collect(),
            _ => None,
        }
    }
}

/// Error from the VM: byte offset and message.
#[derive(Debug)]
pub struct PickleError {
    /// Offset of the failing opcode from the pickle's start.
    pub offset: usize,
    /// What was wrong, in words.
    pub reason: String,
}

impl std::fmt::Display for PickleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at byte {}: {}", self.offset, self.reason)
    }
}

impl std::error::Error for PickleError {}

/// Unpickles one whole pickle that holds no PyTorch storages (a numpy or plain Python
/// pickle): the value, or an error if anything follows its STOP opcode.
pub fn unpickle_plain(data: &[u8]) -> PResult<Value> {
    let mut storages = HashMap::new();
    let (value, end) = unpickle(data, 0, &mut storages)?;
    if end != data.len() {
        return Err(PickleError {
            offset: end,
            reason: format!(
                "{} bytes follow the pickle's end: the file is not one pickle",
                data.len() - end
            ),
        });
    }
    Ok(value)
}

type PResult<T> = Result<T, PickleError>;

/// Runs one pickle starting at `start` in `data`; returns the value and the position just
/// after its STOP opcode. Storage persistent ids are recorded in `storages`
/// (key -> dtype), so the legacy format can size its storage records.
pub fn unpickle(
    data: &[u8],
    start: usize,
    storages: &mut HashMap<String, StorageRef>,
) -> PResult<(Value, usize)> {
    let mut vm = Vm {
        data,
        pos: start,
        op_pos: start,
        start,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        storages,
    };
    let v = vm.run()?;
    if nesting_exceeds(&v, MAX_NESTING) {
        return Err(PickleError {
            offset: start,
            reason: format!(
                "values nest deeper than {MAX_NESTING} levels, which no PyTorch checkpoint does; refusing this pickle"
            ),
        });
    }
    Ok((v, vm.pos))
}

struct Vm<'a, 's> {
    data: &'a [u8],
    pos: usize,
    op_pos: usize,
    start: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
    storages: &'s mut HashMap<String, StorageRef>,
}

impl Vm<'_, '_> {
    fn err<T>(&self, reason: impl Into<String>) -> PResult<T> {
        Err(PickleError {
            offset: self.op_pos - self.start,
            reason: reason.into(),
        })
    }

    fn take(&mut self, n: usize) -> PResult<&[u8]> {
        if n > self.data.len() - self.pos {
            return self.err(format!(
                "truncated: needs {n} more bytes, {} left",
                self.data.len() - self.pos
            ));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> PResult<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> PResult<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> PResult<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> PResult<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn line(&mut self) -> PResult<String> {
        let rest = &self.data[self.pos..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let s = String::from_utf8_lossy(&rest[..i]).into_owned();
                self.pos += i + 1;
                Ok(s)
            }
            None => self.err("truncated: missing newline"),
        }
    }
    fn string(&mut self, n: usize) -> PResult<String> {
        let b = self.take(n)?.to_vec();
        match String::from_utf8(b) {
            Ok(s) => Ok(s),
            Err(_) => self.err("string is not valid UTF-8"),
        }
    }

    fn pop(&mut self) -> PResult<Value> {
        match self.stack.pop() {
            Some(v) => Ok(v),
            None => self.err("stack underflow"),
        }
    }
    fn top(&mut self) -> PResult<&mut Value> {
        if self.stack.is_empty() {
            return self.err("stack underflow");
        }
        Ok(self.stack.last_mut().expect("checked non-empty"))
    }
    fn pop_mark(&mut self) -> PResult<Vec<Value>> {
        let Some(m) = self.marks.pop() else {
            return self.err("MARK expected but none on the stack");
        };
        if m > self.stack.len() {
            return self.err("MARK beyond the stack");
        }
        Ok(self.stack.split_off(m))
    }
    fn memo_put(&mut self, idx: u64) -> PResult<()> {
        let v = self.top()?.clone();
        self.memo.insert(idx, v);
        Ok(())
    }
    fn memo_get(&mut self, idx: u64) -> PResult<()> {
        match self.memo.get(&idx) {
            Some(v) => {
                let v = v.clone();
                self.stack.push(v);
                Ok(())
            }
            None => self.err(format!("memo key {idx} not found")),
        }
    }

    fn push_long(&mut self, bytes: Vec<u8>) {
        if bytes.len() <= 8 {
            let mut a = if bytes.last().is_some_and(|b| b & 0x80 != 0) {
                [0xffu8; 8]
            } else {
                [0u8; 8]
            };
            a[..bytes.len()].copy_from_slice(&bytes);
            self.stack.push(Value::Int(i64::from_le_bytes(a)));
        } else {
            self.stack.push(Value::BigInt(bytes));
        }
    }

    fn set_items(&mut self, items: Vec<Value>) -> PResult<()> {
        if !items.len().is_multiple_of(2) {
            return self.err("SETITEMS with an odd number of items");
        }
        let target = self.top()?.clone();
        let mut pairs = Vec::with_capacity(items.len() / 2);
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            pairs.push((k, v));
        }
        match &target {
            Value::Dict(d) => {
                let mut d = d.borrow_mut();
                for (k, v) in pairs {
                    // Replace an existing string key (dict semantics), else append.
                    if let Value::Str(ks) = &k
                        && let Some(slot) = d
                            .iter_mut()
                            .find(|(ek, _)| matches!(ek, Value::Str(e) if e == ks))
                    {
                        slot.1 = v;
                        continue;
                    }
                    d.push((k, v));
                }
                Ok(())
            }
            // dict subclasses rebuilt as opaque objects: ignore their items.
            Value::Object(_) => Ok(()),
            other => self.err(format!("SETITEM(S) on a {}", other.type_name())),
        }
    }

    fn append_items(&mut self, items: Vec<Value>) -> PResult<()> {
        let target = self.top()?.clone();
        match &target {
            Value::List(l) => {
                l.borrow_mut().extend(items);
                Ok(())
            }
            Value::Object(_) => Ok(()),
            other => self.err(format!("APPEND(S) on a {}", other.type_name())),
        }
    }

    fn persistent_load(&mut self, pid: Value) -> PResult<Value> {
        let Value::Tuple(t) = &pid else {
            return self.err(format!(
                "persistent id is a {}, expected a tuple ('storage', ...)",
                pid.type_name()
            ));
        };
        if t.first().and_then(Value::as_str) != Some("storage") || t.len() < 5 {
            return self.err(format!(
                "unsupported persistent id ({}); expected ('storage', type, key, location, size)",
                t.iter()
                    .map(Value::type_name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let dtype = match &t[1] {
            Value::Global(m, n) => match StorageDtype::from_class(m, n) {
                Some(d) => d,
                None => return self.err(format!("unsupported storage type {m}.{n}")),
            },
            other => {
                return self.err(format!("storage type is a {}", other.type_name()));
            }
        };
        let key = match &t[2] {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            other => return self.err(format!("storage key is a {}", other.type_name())),
        };
        let Some(numel) = t[4].as_usize() else {
            return self.err("storage size is not a non-negative integer");
        };
        // Legacy format: optional view metadata (view_key, offset, view_size).
        let view_offset = match t.get(5) {
            Some(Value::Tuple(v)) if v.len() == 3 => match v[1].as_usize() {
                Some(o) => o,
                None => return self.err("storage view offset is not an integer"),
            },
            _ => 0,
        };
        let root = StorageRef {
            key: key.clone(),
            dtype,
            numel,
            view_offset: 0,
        };
        if let Some(existing) = self.storages.get(&key)
            && existing.dtype != dtype
        {
            return self.err(format!("storage {key} used with two element types"));
        }
        self.storages.entry(key).or_insert(root.clone());
        Ok(Value::Storage(StorageRef {
            view_offset,
            ..root
        }))
    }

    fn rebuild_tensor(&mut self, args: &[Value]) -> PResult<Value> {
        if args.len() < 4 {
            return self.err(format!(
                "_rebuild_tensor needs (storage, offset, size, stride), got {} arguments",
                args.len()
            ));
        }
        let Value::Storage(storage) = &args[0] else {
            return self.err(format!(
                "_rebuild_tensor: first argument is a {}, expected a storage",
                args[0].type_name()
            ));
        };
        let (Some(offset), Some(size), Some(stride)) = (
            args[1].as_usize(),
            args[2].usize_list(),
            args[3].usize_list(),
        ) else {
            return self.err("_rebuild_tensor: offset/size/stride are not integers");
        };
        if size.len() != stride.len() {
            return self.err(format!(
                "_rebuild_tensor: size {size:?} and stride {stride:?} differ in rank"
            ));
        }
        Ok(Value::Tensor(Rc::new(TensorRef {
            storage: storage.clone(),
            offset,
            size,
            stride,
        })))
    }

    fn reduce(&mut self, callable: Value, args: Value) -> PResult<Value> {
        let args_vec: Vec<Value> = match &args {
            Value::Tuple(v) => v.clone(),
            Value::List(v) => v.borrow().clone(),
            _ => Vec::new(),
        };
        let (module, name) = match &callable {
            Value::Global(m, n) => (m.as_str(), n.as_str()),
            other => {
                return self.err(format!(
                    "REDUCE on a {}, expected a class",
                    other.type_name()
                ));
            }
        };
        match (module, name) {
            ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
                self.rebuild_tensor(&args_vec)
            }
            ("torch._utils", "_rebuild_parameter")
            | ("torch._utils", "_rebuild_parameter_with_state") => match args_vec.first() {
                Some(v) => Ok(v.clone()),
                None => self.err("_rebuild_parameter without arguments"),
            },
            ("collections", "OrderedDict") | ("builtins", "dict") | ("__builtin__", "dict") => {
                let mut items = Vec::new();
                if let Some(Value::List(l)) = args_vec.first() {
                    for pair in l.borrow().iter() {
                        if let Value::Tuple(kv) = pair
                            && kv.len() == 2
                        {
                            items.push((kv[0].clone(), kv[1].clone()));
                        }
                    }
                }
                Ok(Value::Dict(Rc::new(RefCell::new(items))))
            }
            ("builtins", "set")
            | ("builtins", "frozenset")
            | ("__builtin__", "set")
            | ("__builtin__", "frozenset")
            | ("builtins", "list")
            | ("__builtin__", "list") => {
                let items = match args_vec.first() {
                    Some(Value::List(l)) => l.borrow().clone(),
                    Some(Value::Tuple(t)) => t.clone(),
                    _ => Vec::new(),
                };
                Ok(Value::List(Rc::new(RefCell::new(items))))
            }
            ("_codecs", "encode") => match args_vec.first() {
                // Protocol-2 pickles write bytes as _codecs.encode(str, 'latin1').
                Some(Value::Str(s)) => {
                    Ok(Value::Bytes(s.chars().map(|c| c as u32 as u8).collect()))
                }
                _ => Ok(Value::Bytes(Vec::new())),
            },
            _ => Ok(Value::Object(Rc::new(RefCell::new(Object {
                module: module.to_string(),
                name: name.to_string(),
                args,
                state: None,
            })))),
        }
    }

    fn run(&mut self) -> PResult<Value> {
        loop {
            self.op_pos = self.pos;
            let op = self.u8()?;
            match op {
                // protocol / framing
                0x80 => {
                    let p = self.u8()?;
                    if p > 5 {
                        return self.err(format!("pickle protocol {p} is not supported"));
                    }
                }
                0x95 => {
                    self.u64()?;
                }
                b'.' => return self.pop(),
                // stack manipulation
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.stack.push(v);
                }
                // constants
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                // integers
                b'J' => {
                    let v = self.u32()? as i32;
                    self.stack.push(Value::Int(v as i64));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.stack.push(Value::Int(v as i64));
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.push_long(b);
                }
                0x8b => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.push_long(b);
                }
                b'I' => {
                    let l = self.line()?;
                    let v = match l.as_str() {
                        "01" => Value::Bool(true),
                        "00" => Value::Bool(false),
                        s => match s.trim().parse::<i64>() {
                            Ok(i) => Value::Int(i),
                            Err(_) => return self.err(format!("bad INT `{s}`")),
                        },
                    };
                    self.stack.push(v);
                }
                b'L' => {
                    let l = self.line()?;
                    match l.trim().trim_end_matches('L').parse::<i64>() {
                        Ok(i) => self.stack.push(Value::Int(i)),
                        Err(_) => return self.err(format!("bad LONG `{l}`")),
                    }
                }
                // floats
                b'G' => {
                    let b = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.stack.push(Value::Float(f64::from_be_bytes(a)));
                }
                b'F' => {
                    let l = self.line()?;
                    match l.trim().parse::<f64>() {
                        Ok(f) => self.stack.push(Value::Float(f)),
                        Err(_) => return self.err(format!("bad FLOAT `{l}`")),
                    }
                }
                // strings and bytes
                b'X' => {
                    let n = self.u32()? as usize;
                    let s = self.string(n)?;
                    self.stack.push(Value::Str(s));
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let s = self.string(n)?;
                    self.stack.push(Value::Str(s));
                }
                0x8d => {
                    let n = self.u64()? as usize;
                    let s = self.string(n)?;
                    self.stack.push(Value::Str(s));
                }
                b'V' => {
                    let l = self.line()?;
                    self.stack.push(Value::Str(l));
                }
                b'S' => {
                    let l = self.line()?;
                    let s = l.trim();
                    let s = s
                        .strip_prefix('\'')
                        .and_then(|s| s.strip_suffix('\''))
                        .or_else(|| s.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
                        .unwrap_or(s);
                    self.stack.push(Value::Str(s.to_string()));
                }
                b'T' => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.stack.push(py2_str(b));
                }
                b'U' => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.stack.push(py2_str(b));
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.stack.push(Value::Bytes(b));
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.stack.push(Value::Bytes(b));
                }
                0x8e | 0x96 => {
                    let n = self.u64()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.stack.push(Value::Bytes(b));
                }
                // tuples
                b')' => self.stack.push(Value::Tuple(Vec::new())),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(items));
                }
                0x85 => {
                    let a = self.pop()?;
                    self.stack.push(Value::Tuple(vec![a]));
                }
                0x86 => {
                    let b = self.pop()?;
                    let a = self.pop()?;
                    self.stack.push(Value::Tuple(vec![a, b]));
                }
                0x87 => {
                    let c = self.pop()?;
                    let b = self.pop()?;
                    let a = self.pop()?;
                    self.stack.push(Value::Tuple(vec![a, b, c]));
                }
                // lists and sets
                b']' | 0x8f => self
                    .stack
                    .push(Value::List(Rc::new(RefCell::new(Vec::new())))),
                b'l' | 0x91 => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(Rc::new(RefCell::new(items))));
                }
                b'a' => {
                    let v = self.pop()?;
                    self.append_items(vec![v])?;
                }
                b'e' | 0x90 => {
                    let items = self.pop_mark()?;
                    self.append_items(items)?;
                }
                // dicts
                b'}' => self
                    .stack
                    .push(Value::Dict(Rc::new(RefCell::new(Vec::new())))),
                b'd' => {
                    let items = self.pop_mark()?;
                    self.stack
                        .push(Value::Dict(Rc::new(RefCell::new(Vec::new()))));
                    self.set_items(items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?;
                }
                // memo
                b'g' => {
                    let l = self.line()?;
                    match l.trim().parse::<u64>() {
                        Ok(i) => self.memo_get(i)?,
                        Err(_) => return self.err(format!("bad GET `{l}`")),
                    }
                }
                b'h' => {
                    let i = self.u8()? as u64;
                    self.memo_get(i)?;
                }
                b'j' => {
                    let i = self.u32()? as u64;
                    self.memo_get(i)?;
                }
                b'p' => {
                    let l = self.line()?;
                    match l.trim().parse::<u64>() {
                        Ok(i) => self.memo_put(i)?,
                        Err(_) => return self.err(format!("bad PUT `{l}`")),
                    }
                }
                b'q' => {
                    let i = self.u8()? as u64;
                    self.memo_put(i)?;
                }
                b'r' => {
                    let i = self.u32()? as u64;
                    self.memo_put(i)?;
                }
                0x94 => {
                    let i = self.memo.len() as u64;
                    self.memo_put(i)?;
                }
                // classes and objects
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Value::Global(module, name));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (&module, &name) {
                        (Value::Str(m), Value::Str(n)) => {
                            self.stack.push(Value::Global(m.clone(), n.clone()))
                        }
                        _ => return self.err("STACK_GLOBAL needs two strings"),
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = self.reduce(callable, args)?;
                    self.stack.push(v);
                }
                0x81 => {
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let v = self.reduce(cls, args)?;
                    self.stack.push(v);
                }
                0x92 => {
                    let _kwargs = self.pop()?;
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let v = self.reduce(cls, args)?;
                    self.stack.push(v);
                }
                b'o' => {
                    let mut items = self.pop_mark()?;
                    if items.is_empty() {
                        return self.err("OBJ without a class");
                    }
                    let cls = items.remove(0);
                    let v = self.reduce(cls, Value::Tuple(items))?;
                    self.stack.push(v);
                }
                b'i' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let items = self.pop_mark()?;
                    let v = self.reduce(Value::Global(module, name), Value::Tuple(items))?;
                    self.stack.push(v);
                }
                b'b' => {
                    let state = self.pop()?;
                    if let Value::Object(o) = self.top()? {
                        o.borrow_mut().state = Some(state);
                    }
                    // BUILD on dicts (OrderedDict `_metadata`) and tensors: nothing to keep.
                }
                // persistent ids
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent_load(pid)?;
                    self.stack.push(v);
                }
                b'P' => {
                    let l = self.line()?;
                    return self.err(format!(
                        "text persistent id `{l}` (protocol 0) is not a PyTorch storage id"
                    ));
                }
                0x82..=0x84 => {
                    return self.err("pickle extension registry codes are not supported");
                }
                0x97 | 0x98 => return self.err("out-of-band pickle buffers are not supported"),
                other => {
                    return self.err(format!(
                        "unsupported pickle opcode 0x{other:02x} ({:?})",
                        other as char
                    ));
                }
            }
        }
    }
}

/// A Python 2 `str`: text when it is UTF-8, else the raw bytes.
fn py2_str(b: Vec<u8>) -> Value {
    match String::from_utf8(b) {
        Ok(s) => Value::Str(s),
        Err(e) => Value::Bytes(e.into_bytes()),
    }
}

/// Looks up a string key in a dict value.
pub fn dict_get(d: &Value, key: &str) -> Option<Value> {
    match d {
        Value::Dict(items) => items
            .borrow()
            .iter()
            .find(|(k, _)| matches!(k, Value::Str(s) if s == key))
            .map(|(_, v)| v.clone()),
        _ => None,
    }
}

/// The string keys of a dict value (others shown by type).
pub fn dict_keys(d: &Value) -> Vec<String> {
    match d {
        Value::Dict(items) => items
            .borrow()
            .iter()
            .map(|(k, _)| match k {
                Value::Str(s) => s.clone(),
                other => format!("<{}>", other.type_name()),
            })
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(bytes: &[u8]) -> Value {
        let mut st = HashMap::new();
        unpickle(bytes, 0, &mut st).expect("valid pickle").0
    }

    #[test]
    fn small_values() {
        // pickle.dumps({'a': 1, 'b': [2.5, 'x'], 'c': (None, True)}, protocol=2)
        let bytes = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01X\x01\x00\x00\x00bq\x02]q\x03(G@\x04\x00\x00\x00\x00\x00\x00X\x01\x00\x00\x00xq\x04eX\x01\x00\x00\x00cq\x05N\x88\x86q\x06u.";
        let v = run(bytes);
        assert!(matches!(dict_get(&v, "a"), Some(Value::Int(1))));
        match &dict_get(&v, "b") {
            Some(Value::List(l)) => {
                let l = l.borrow();
                assert!(matches!(l[0], Value::Float(f) if f == 2.5));
                assert!(matches!(&l[1], Value::Str(s) if s == "x"));
            }
            other => panic!("expected list, got {other:?}"),
        }
        match &dict_get(&v, "c") {
            Some(Value::Tuple(t)) => {
                assert!(matches!(t[0], Value::None));
                assert!(matches!(t[1], Value::Bool(true)));
            }
            other => panic!("expected tuple, got {other:?}"),
        }
        assert_eq!(dict_keys(&v), vec!["a", "b", "c"]);
    }

    #[test]
    fn long1_negative_and_big() {
        // LONG1 with 1 byte 0xff = -1; LONG1 with 10 bytes stays big.
        let v = run(b"\x80\x02\x8a\x01\xff.");
        assert!(matches!(v, Value::Int(-1)));
        let v = run(b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.");
        assert!(matches!(v, Value::BigInt(ref b) if b.len() == 10));
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        // a list nested 200,000 levels deep: EMPTY_LIST × n, then APPEND × (n - 1)
        let n = 200_000;
        let mut bytes = b"\x80\x02".to_vec();
        bytes.extend(std::iter::repeat_n(b']', n));
        bytes.extend(std::iter::repeat_n(b'a', n - 1));
        bytes.push(b'.');
        let mut st = HashMap::new();
        let e = unpickle(&bytes, 0, &mut st).unwrap_err();
        assert!(e.reason.contains("nest deeper than 100"), "{}", e.reason);
        // an unfinished one (no STOP) is dropped from the VM's stack just as safely
        let mut st = HashMap::new();
        assert!(unpickle(&bytes[..bytes.len() - 1], 0, &mut st).is_err());
        // shallow nesting is fine
        let mut ok = b"\x80\x02".to_vec();
        ok.extend(std::iter::repeat_n(b']', 50));
        ok.extend(std::iter::repeat_n(b'a', 49));
        ok.push(b'.');
        assert!(matches!(run(&ok), Value::List(_)));
    }

    #[test]
    fn truncated_and_unknown_opcodes_are_errors() {
        let mut st = HashMap::new();
        let e = unpickle(b"\x80\x02X\x05\x00\x00\x00ab", 0, &mut st).unwrap_err();
        assert!(e.reason.contains("truncated"), "{}", e.reason);
        let e = unpickle(b"\x80\x02\xff.", 0, &mut st).unwrap_err();
        assert!(
            e.reason.contains("unsupported pickle opcode 0xff"),
            "{}",
            e.reason
        );
        assert_eq!(e.offset, 2);
    }
}
