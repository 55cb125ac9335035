//! Progress reporting hooks: the library says what it is doing, the binary draws it.

/// Receives progress of long steps (one set of one run, one attack pass). Implementations
/// must be cheap; the default methods do nothing.
pub trait Progress: Sync {
    /// A step of `total` units (batches) starts; `label` says what it is.
    fn begin(&self, label: &str, total: u64) {
        let _ = (label, total);
    }
    /// `n` more units are done.
    fn advance(&self, n: u64) {
        let _ = n;
    }
    /// The step is over.
    fn end(&self) {}
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}
