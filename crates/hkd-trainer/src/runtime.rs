//! The stop signals of a run (the device and threads: `hkd_arch::runtime`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set when the run should stop after the current batch (SIGTERM, SIGUSR1, SIGINT, SIGHUP,
/// or [`StopFlag::request`]). Cheap to clone; all clones share the flag.
#[derive(Clone, Debug, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// A flag that is not set.
    pub fn new() -> Self {
        StopFlag::default()
    }

    /// Sets the flag on SIGTERM, SIGUSR1 (what `sbatch --signal=USR1@N` sends before the
    /// time limit), SIGINT (Ctrl-C) and SIGHUP (the login session that started it closed).
    /// A second such signal while the flag is set ends the process at once with status
    /// 130, without a checkpoint.
    pub fn install_signal_handlers(&self) -> std::io::Result<()> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
        for sig in [SIGTERM, SIGUSR1, SIGINT, SIGHUP] {
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
