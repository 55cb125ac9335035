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
                let holder = this_process();
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

impl RunDir {
    /// Whether the process that last took this run's lock (as its `.lock` file names it)
    /// is alive: `Some(true)` or `Some(false)` for a process of this host, `None` when the
    /// file is missing, unreadable or names another host. Reads only (a trainer starting
    /// at the same instant is never disturbed); a reused process id reads as alive.
    pub fn lock_holder_alive(&self) -> Option<bool> {
        let text = std::fs::read_to_string(self.file(Self::LOCK)).ok()?;
        let (pid, host) = parse_holder(&text)?;
        (host == host_name()).then(|| process_alive(pid))
    }
}

/// `(pid, host)` of a lock file's or a submission's "process PID on HOST since …".
pub fn parse_holder(text: &str) -> Option<(u32, String)> {
    let rest = text.trim().strip_prefix("process ")?;
    let (pid, rest) = rest.split_once(" on ")?;
    let host = rest.split(" since ").next()?;
    Some((pid.parse().ok()?, host.to_string()))
}

/// "process PID on HOST since TIME" for this process now: what a lock file and a local
/// grid's submission record say.
pub fn this_process() -> String {
    format!(
        "process {} on {} since {}",
        std::process::id(),
        host_name(),
        jiff::Timestamp::now()
            .round(jiff::Unit::Second)
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    )
}

/// Whether process `pid` of this host is alive (and not a zombie).
pub fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // the state follows the command name's closing parenthesis
        stat.rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// This host's name (`/proc/sys/kernel/hostname`).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "this host".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_names_a_live_holder_and_a_dead_one_reads_as_dead() {
        let tmp = tempfile::tempdir().unwrap();
        let run = RunDir::new(tmp.path().join("run"));
        assert_eq!(run.lock_holder_alive(), None, "no lock file yet");
        let lock = run.lock().unwrap();
        assert_eq!(run.lock_holder_alive(), Some(true));
        drop(lock);
        // a process that has exited (our own child, reaped)
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        std::fs::write(
            run.file(RunDir::LOCK),
            format!(
                "process {pid} on {} since 2026-12-07T00:00:00Z",
                host_name()
            ),
        )
        .unwrap();
        assert_eq!(run.lock_holder_alive(), Some(false));
        std::fs::write(run.file(RunDir::LOCK), "process 1 on elsewhere since x").unwrap();
        assert_eq!(run.lock_holder_alive(), None, "another host: unknown");
        assert_eq!(
            parse_holder("process 42 on node-7 since 2026-12-07T10:00:00Z"),
            Some((42, "node-7".to_string()))
        );
    }

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
