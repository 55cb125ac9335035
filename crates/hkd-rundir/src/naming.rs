/// Formats a float the way Python's `str(float)` does for the values a grid uses:
/// `1.0`, `0.5`, `0.25`, `20.0` (so run names match the original project's).
pub fn py_float(x: f64) -> String {
    let s = format!("{x}");
    if s.contains('.') || s.contains("inf") || s.contains("NaN") {
        s
    } else {
        format!("{s}.0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_float_formatting() {
        assert_eq!(py_float(1.0), "1.0");
        assert_eq!(py_float(0.5), "0.5");
        assert_eq!(py_float(20.0), "20.0");
        assert_eq!(py_float(0.25), "0.25");
        assert_eq!(py_float(0.1), "0.1");
    }
}
