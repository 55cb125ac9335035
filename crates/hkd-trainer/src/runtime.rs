//! Process-level setup: the device, the CPU thread pool, and the stop signals.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::Device;

use crate::error::{Result, TrainError};

/// Opens the device named by `--device`: `cpu`, `cuda` / `cuda:N`, or `auto` (the first
/// CUDA GPU when this build has the `cuda` feature and one is visible, else the CPU).
/// Returns the device and its canonical name (`cpu`, `cuda:0`) for the run's config.
pub fn select_device(spec: &str) -> Result<(Device, String)> {
    let spec_lc = spec.trim().to_ascii_lowercase();
    match spec_lc.as_str() {
        "cpu" => Ok((Device::Cpu, "cpu".into())),
        "auto" => Ok(auto_device()),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let index = match s.strip_prefix("cuda:") {
                None => 0,
                Some(n) => n.parse::<usize>().map_err(|_| TrainError::Device {
                    spec: spec.into(),
                    reason: format!("`{n}` is not a GPU index; expected cuda:0, cuda:1, ..."),
                })?,
            };
            cuda_device(spec, index)
        }
        _ => Err(TrainError::Device {
            spec: spec.into(),
            reason: "expected cpu, cuda:N or auto".into(),
        }),
    }
}

#[cfg(feature = "cuda")]
fn auto_device() -> (Device, String) {
    if candle_core::utils::cuda_is_available() {
        match Device::new_cuda(0) {
            Ok(d) => return (d, "cuda:0".into()),
            Err(e) => tracing::warn!(
                "--device auto: CUDA is built in but GPU 0 cannot be opened ({e}); using the CPU"
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
fn cuda_device(spec: &str, index: usize) -> Result<(Device, String)> {
    Device::new_cuda(index)
        .map(|d| (d, format!("cuda:{index}")))
        .map_err(|e| TrainError::Device {
            spec: spec.into(),
            reason: format!(
                "cannot open CUDA GPU {index}: {e}; check nvidia-smi and CUDA_VISIBLE_DEVICES"
            ),
        })
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(spec: &str, _index: usize) -> Result<(Device, String)> {
    Err(TrainError::Device {
        spec: spec.into(),
        reason: "this hkd-train was built without CUDA; rebuild with `cargo build --release -p hkd-train --features cuda` or use --device cpu".into(),
    })
}

/// Sets the CPU thread count of candle and rayon: `RAYON_NUM_THREADS` (read by candle's
/// matmul and thread pools) and rayon's global pool. `None` means all cores the process may
/// use. Call it first thing in `main`, before any other thread starts; returns the count.
pub fn configure_threads(threads: Option<usize>) -> usize {
    let n = threads.filter(|&n| n > 0).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    // SAFETY: called at the start of `main`, before any other thread exists that could
    // read the environment concurrently (documented requirement of this function).
    unsafe {
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    // A pool may already exist (e.g. in tests); then its size stays.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global();
    n
}

/// Set when the run should stop after the current batch (SIGTERM, SIGUSR1, SIGINT, or
/// [`StopFlag::request`]). Cheap to clone; all clones share the flag.
#[derive(Clone, Debug, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// A flag that is not set.
    pub fn new() -> Self {
        StopFlag::default()
    }

    /// Sets the flag on SIGTERM, SIGUSR1 (what `sbatch --signal=USR1@N` sends before the
    /// time limit) and SIGINT (Ctrl-C). A second such signal while the flag is set ends
    /// the process at once with status 130, without a checkpoint.
    pub fn install_signal_handlers(&self) -> std::io::Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
        for sig in [SIGTERM, SIGUSR1, SIGINT] {
            // The shutdown must be registered first: it sees the flag as it was before
            // this signal set it.
            signal_hook::flag::register_conditional_shutdown(sig, 130, self.0.clone())?;
            signal_hook::flag::register(sig, self.0.clone())?;
        }
        Ok(())
    }

    /// Asks the run to stop after the current batch.
    pub fn request(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// True once a stop was requested.
    pub fn is_requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
