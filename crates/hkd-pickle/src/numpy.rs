//! numpy arrays in a pickle: `numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')`
//! followed by BUILD with the state `(version, shape, dtype, is_fortran, raw data)`, the
//! dtype itself `numpy.dtype(descr, align, copy)` with its own BUILD state
//! `(version, byte order, …)`. This is how `pickle.dump` of an array looks in every
//! protocol that CIFAR's python releases and numpy's users write (numpy ≥ 2 names the
//! module `numpy._core.multiarray`).

use crate::Value;

/// A numpy array read out of a pickle: its element type, shape and raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NdArray {
    /// The element type as numpy spells its kind and size: `u1`, `i8`, `f4`, …
    pub kind: String,
    /// `<` little-endian, `>` big-endian, `|` not applicable (one byte), `=` native.
    pub byte_order: char,
    /// The shape, outermost first.
    pub shape: Vec<usize>,
    /// Column-major (Fortran) layout instead of row-major.
    pub fortran_order: bool,
    /// The elements' bytes as stored.
    pub data: Vec<u8>,
}

impl NdArray {
    /// The number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements as `u8`, if the array is a row-major `uint8` array.
    pub fn as_u8(&self) -> Result<&[u8], String> {
        if self.kind != "u1" {
            return Err(format!("a {} array, expected uint8 (u1)", self.kind));
        }
        if self.fortran_order {
            return Err("a Fortran-order array, expected C order".into());
        }
        Ok(&self.data)
    }
}

/// The numpy array `value` holds, `None` if it is not one, or an error saying what is
/// wrong with an array's state.
pub fn ndarray(value: &Value) -> Option<Result<NdArray, String>> {
    let Value::Object(object) = value else {
        return None;
    };
    let object = object.borrow();
    let is_reconstruct = matches!(
        (object.module.as_str(), object.name.as_str()),
        (
            "numpy.core.multiarray" | "numpy._core.multiarray",
            "_reconstruct"
        )
    );
    if !is_reconstruct {
        return None;
    }
    Some(read_state(object.state.as_ref()))
}

fn read_state(state: Option<&Value>) -> Result<NdArray, String> {
    let Some(Value::Tuple(state)) = state else {
        return Err("an ndarray without its state tuple".into());
    };
    let [_version, shape, dtype, fortran, data] = state.as_slice() else {
        return Err(format!(
            "an ndarray state of {} items, expected 5 (version, shape, dtype, is_fortran, data)",
            state.len()
        ));
    };
    let shape = shape
        .usize_list()
        .ok_or("the array's shape is not a tuple of integers")?;
    let fortran_order = match fortran {
        Value::Bool(b) => *b,
        Value::Int(i) => *i != 0,
        other => {
            return Err(format!(
                "is_fortran is a {}, expected a bool",
                other.type_name()
            ));
        }
    };
    let (kind, byte_order) = read_dtype(dtype)?;
    let data = match data {
        Value::Bytes(b) => b.clone(),
        // an all-ASCII payload (a tiny array) reads as text
        Value::Str(s) => s.as_bytes().to_vec(),
        Value::List(_) => {
            return Err("an object array (data as a list), expected raw numeric data".into());
        }
        other => {
            return Err(format!(
                "the array's data is a {}, expected bytes",
                other.type_name()
            ));
        }
    };
    let size: usize = kind[1..]
        .parse()
        .map_err(|_| format!("dtype `{kind}` has no element size"))?;
    let elements = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or("the array's shape overflows")?;
    if elements.checked_mul(size) != Some(data.len()) {
        return Err(format!(
            "shape {shape:?} of {kind} needs {} bytes, the pickle holds {}",
            elements.saturating_mul(size),
            data.len()
        ));
    }
    Ok(NdArray {
        kind,
        byte_order,
        shape,
        fortran_order,
        data,
    })
}

/// `numpy.dtype(descr, 0, 1)` with BUILD state `(3, byte order, …)`.
fn read_dtype(dtype: &Value) -> Result<(String, char), String> {
    let Value::Object(object) = dtype else {
        return Err(format!(
            "the array's dtype is a {}, expected numpy.dtype",
            dtype.type_name()
        ));
    };
    let object = object.borrow();
    if object.name != "dtype" || !object.module.starts_with("numpy") {
        return Err(format!(
            "the array's dtype is a {}.{}, expected numpy.dtype",
            object.module, object.name
        ));
    }
    let descr = match &object.args {
        Value::Tuple(args) => args.first().and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
    .ok_or("numpy.dtype without its type string")?;
    let valid = descr.len() >= 2
        && matches!(descr.as_bytes()[0], b'b' | b'i' | b'u' | b'f')
        && descr[1..].bytes().all(|b| b.is_ascii_digit());
    if !valid {
        return Err(format!(
            "dtype `{descr}` is not a numeric type (expected e.g. u1, i8, f4)"
        ));
    }
    let byte_order = match &object.state {
        Some(Value::Tuple(state)) => state
            .get(1)
            .and_then(Value::as_str)
            .and_then(|s| s.chars().next())
            .unwrap_or('='),
        _ => '=',
    };
    Ok((descr, byte_order))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{dict_get, unpickle_plain};

    /// `{'data': np.arange(6, dtype=np.uint8).reshape(2, 3) + 250 - …}` as Python 2's
    /// cPickle writes it (protocol 2): keys as SHORT_BINSTRING, the data as a str.
    fn py2_pickle(data: &[u8], shape: (u16, u16)) -> Vec<u8> {
        let mut p = b"\x80\x02}q\x01(U\x04dataq\x02cnumpy.core.multiarray\n_reconstruct\nq\x03cnumpy\nndarray\nq\x04K\x00\x85U\x01b\x87Rq\x05(K\x01".to_vec();
        p.push(b'M');
        p.extend(shape.0.to_le_bytes());
        p.push(b'M');
        p.extend(shape.1.to_le_bytes());
        p.extend(b"\x86cnumpy\ndtype\nq\x06U\x02u1K\x00K\x01\x87Rq\x07(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tbI00\n");
        p.push(b'T');
        p.extend((data.len() as u32).to_le_bytes());
        p.extend(data);
        p.extend(b"tbu.");
        p
    }

    #[test]
    fn a_python2_uint8_array_reads_with_its_bytes() {
        let data: Vec<u8> = (0..6).map(|i| 250 + i).collect();
        let v = unpickle_plain(&py2_pickle(&data, (2, 3))).unwrap();
        let array = ndarray(&dict_get(&v, "data").unwrap()).unwrap().unwrap();
        assert_eq!(array.shape, [2, 3]);
        assert_eq!(array.kind, "u1");
        assert_eq!(array.byte_order, '|');
        assert!(!array.fortran_order);
        assert_eq!(array.as_u8().unwrap(), data.as_slice());
    }

    #[test]
    fn a_wrong_size_or_a_trailing_byte_is_an_error() {
        let data = [251u8, 252, 253, 254, 255];
        let v = unpickle_plain(&py2_pickle(&data, (2, 3))).unwrap();
        let e = ndarray(&dict_get(&v, "data").unwrap())
            .unwrap()
            .unwrap_err();
        assert!(e.contains("needs 6 bytes, the pickle holds 5"), "{e}");
        let mut p = py2_pickle(&[250, 251, 252, 253, 254, 255], (2, 3));
        p.push(0);
        let e = unpickle_plain(&p).unwrap_err();
        assert!(e.reason.contains("1 bytes follow"), "{e}");
        assert!(ndarray(&Value::Int(3)).is_none());
    }
}
