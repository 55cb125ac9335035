//! The run directory's lock: one training process per run.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::PathBuf;

use crate::error::RunDirError;
use crate::files::RunDir;

/// An exclusive OS file lock (`flock`) on `<run>/.lock`, held while a process trains in
/// the run directory. The kernel releases it when the process exits, however it exits
/// (SIGKILL included), so a lock is never stale; the file itself stays and only says who
/// held it last.
#[derive(Debug)]
pub struct RunLock {
    // Holding the open file holds the lock.
    _file: File,
    path: PathBuf,
}

impl RunLock {
    /// The lock file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl RunDir {
    /// File name of the lock (hidden: [`crate::find_run_dirs`] and the analysis ignore it).
    pub const LOCK: &'static str = ".lock";

    /// Creates the directory if needed and takes its lock without waiting, or fails with
    /// [`RunDirError::Locked`] naming the process that holds it.
    pub fn lock(&self) -> Result<RunLock, RunDirError> {
        self.create()?;
        let path = self.file(Self::LOCK);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| RunDirError::io("open", &path, e))?;
        match file.try_lock() {
            Ok(()) => {
                let holder = format!(
                    "process {} on {} since {}",
                    std::process::id(),
                    host_name(),
                    jiff::Timestamp::now()
                        .round(jiff::Unit::Second)
                        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
                );
                // Best effort: the lock is what matters, the text only helps a person.
                let _ = file.set_len(0);
                let _ = file.rewind();
                let _ = file.write_all(holder.as_bytes());
                let _ = file.sync_all();
                Ok(RunLock { _file: file, path })
            }
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                Err(RunDirError::Locked {
                    dir: self.path().to_path_buf(),
                    holder: if holder.is_empty() {
                        "a process that has not written its name yet".into()
                    } else {
                        holder.to_string()
                    },
                })
            }
            Err(TryLockError::Error(e)) => Err(RunDirError::io("lock", &path, e)),
        }
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "this host".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_run_fails_and_names_the_holder() {
        let tmp = tempfile::tempdir().unwrap();
        let run = RunDir::new(tmp.path().join("a/b/run"));
        let held = run.lock().unwrap();
        assert!(held.path().is_file());
        match run.lock() {
            Err(RunDirError::Locked { holder, dir }) => {
                assert_eq!(dir, run.path());
                assert!(
                    holder.contains(&format!("process {}", std::process::id())),
                    "{holder}"
                );
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(held);
        let again = run.lock().unwrap();
        drop(again);
    }
}
