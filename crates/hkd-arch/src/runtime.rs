//! The process runtime every binary shares: the device (`--device`) and the CPU thread
//! count (`--threads`). One definition, used by `hkd-train` and `hkd-eval` alike (like
//! candle-examples' one `device()` helper).

use candle_core::Device;

/// `--device` names a device this build cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("device `{spec}`: {reason}")]
pub struct DeviceError {
    /// The value as given.
    pub spec: String,
    /// Why it cannot be used, and what to do.
    pub reason: String,
}

/// Opens the device named by `spec`: `cpu`, `cuda` (= `cuda:0`), `cuda:N`, or `auto` (the
/// first CUDA GPU when this build has the `cuda` feature and one can be opened, else the
/// CPU, with a warning when a GPU is built in but cannot be opened). Returns the device
/// and its canonical name (`cpu`, `cuda:0`), as run configs and eval.json record it.
pub fn device(spec: &str) -> Result<(Device, String), DeviceError> {
    let bad = |reason: String| DeviceError {
        spec: spec.to_string(),
        reason,
    };
    match spec.trim().to_ascii_lowercase().as_str() {
        "cpu" => Ok((Device::Cpu, "cpu".into())),
        "auto" => Ok(auto_device()),
        s => {
            let index = match s.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => rest
                    .strip_prefix(':')
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(|| {
                        bad(format!(
                            "`{s}` is not a GPU; expected cpu, cuda, cuda:N (N = 0, 1, …) or auto"
                        ))
                    })?,
                None => return Err(bad("expected cpu, cuda, cuda:N or auto".into())),
            };
            cuda_device(index).map_err(bad)
        }
    }
}

#[cfg(feature = "cuda")]
fn auto_device() -> (Device, String) {
    if candle_core::utils::cuda_is_available() {
        match Device::new_cuda(0) {
            Ok(d) => return (d, "cuda:0".into()),
            Err(e) => eprintln!(
                "warning: --device auto: CUDA is built in but GPU 0 cannot be opened ({e}); using the CPU"
            ),
        }
    }
    (Device::Cpu, "cpu".into())
}

#[cfg(not(feature = "cuda"))]
fn auto_device() -> (Device, String) {
    (Device::Cpu, "cpu".into())
}

#[cfg(feature = "cuda")]
fn cuda_device(index: usize) -> Result<(Device, String), String> {
    Device::new_cuda(index)
        .map(|d| (d, format!("cuda:{index}")))
        .map_err(|e| {
            format!("cannot open CUDA GPU {index}: {e}; check nvidia-smi and CUDA_VISIBLE_DEVICES")
        })
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(_index: usize) -> Result<(Device, String), String> {
    Err("this binary was built without CUDA; rebuild it with `--features cuda` (see docs/cuda.md) or use --device cpu".into())
}

/// Sets the CPU thread count of candle and rayon: `RAYON_NUM_THREADS` and
/// `CANDLE_NUM_THREADS` (read by candle's matmul and thread pools when they start) and
/// rayon's global pool (hkd's kernels). `None` or 0 means every core the process may use.
/// Call it first thing in `main`, before any other thread starts; returns the count.
#[allow(unsafe_code)] // std::env::set_var, before any other thread exists (below)
pub fn configure_threads(threads: Option<usize>) -> usize {
    let n = threads.filter(|&n| n > 0).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    // SAFETY: called at the start of `main`, before any other thread exists that could
    // read the environment concurrently (the documented requirement of this function).
    unsafe {
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
    }
    // A pool may already exist (e.g. in tests); then its size stays.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global();
    n
}

/// Runs `f` on a thread of rayon's global pool (inline when already on one) and returns
/// its result. The CPU kernels split their loops over that pool; called from any other
/// thread, every kernel call is handed to the pool and its result handed back — a wake-up
/// and a sleep of both threads per op, some hundred times a training step (~5 % of a
/// one-thread resnet8 step). Wrap a whole step (forward, backward, optimiser) in it;
/// [`Network::forward_eval`](crate::Network::forward_eval) does so itself. Same results,
/// bit for bit: only the thread that starts each op changes, not how work is split.
pub fn on_compute_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compute_pool_runs_the_closure_on_a_pool_thread() {
        assert_eq!(rayon::current_thread_index(), None);
        let (index, value) = on_compute_pool(|| (rayon::current_thread_index(), 42));
        assert!(index.is_some());
        assert_eq!(value, 42);
        // Nested calls run inline on the same thread.
        let same = on_compute_pool(|| {
            let outer = rayon::current_thread_index();
            on_compute_pool(|| rayon::current_thread_index() == outer)
        });
        assert!(same);
    }

    #[test]
    fn names_are_canonical_and_errors_say_what_is_accepted() {
        assert_eq!(device("cpu").unwrap().1, "cpu");
        assert_eq!(device(" CPU ").unwrap().1, "cpu");
        let auto = device("auto").unwrap().1;
        assert!(auto == "cpu" || auto == "cuda:0", "{auto}");
        let e = device("gpu").unwrap_err();
        assert_eq!(e.spec, "gpu");
        assert!(
            e.reason.contains("expected cpu, cuda, cuda:N or auto"),
            "{e}"
        );
        let e = device("cuda:x").unwrap_err();
        assert!(e.to_string().contains("`cuda:x` is not a GPU"), "{e}");
        #[cfg(not(feature = "cuda"))]
        {
            for spec in ["cuda", "cuda:1"] {
                let e = device(spec).unwrap_err();
                assert!(e.reason.contains("built without CUDA"), "{e}");
            }
        }
    }
}
