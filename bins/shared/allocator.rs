//! The allocator of `hkd-train`, `hkd-eval` and the throughput bench (which measures what
//! the binaries do), included by each with `#[path = …] mod allocator;`. Every includer
//! depends on `mimalloc` and `libmimalloc-sys` (feature `extended`).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (index 15 of `mi_option_t` in mimalloc 2 and 3).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed memory mapped: a training or evaluation step allocates the same large
/// tensors again and again, and memory given back to the OS costs a page fault and a
/// page clear per 4 KiB when it is reused (~5 % of a resnet8 training step). Call first
/// thing in `main`.
#[allow(unsafe_code)] // mi_option_set, below
pub fn keep_freed_memory() {
    // SAFETY: sets a process-wide allocator option; any value is valid (-1: never purge).
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}
