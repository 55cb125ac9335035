//! The grid directory `grids/<timestamp>-<name>/` and what it records.
//!
//! ```text
//! grids/20250101-120000-train/
//!   manifest.json        config, its hash, the binary and its flags, every task, every submission and job id
//!   tasks.txt            one shell-quoted command line per task (line i = task i)
//!   job-0.sh …           the rendered sbatch scripts (multiprog: also job-0.conf and task.sh)
//!   state/task-<i>.json  written by the task runner: start, end, exit code, action
//!   logs/task-<i>.log    the task's stdout and stderr; logs/slurm-*.out: Slurm's own
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::binary::BinaryInfo;
use crate::config::GridConfig;
use crate::error::{GridError, Result};
use crate::grid::Task;

/// File names inside a grid directory.
pub const MANIFEST: &str = "manifest.json";
pub const TASKS_TXT: &str = "tasks.txt";
pub const STATE_DIR: &str = "state";
pub const LOG_DIR: &str = "logs";

/// Where the tasks of a grid run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    Slurm,
    Local,
}

impl std::fmt::Display for ExecutorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ExecutorKind::Slurm => "slurm",
            ExecutorKind::Local => "local",
        })
    }
}

/// One Slurm job (or, locally, one batch of tasks) of a submission.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Slurm job id as `sbatch --parsable` printed it; `None` when not submitted.
    pub job_id: Option<String>,
    /// The script's file name in the grid directory (`None` in wrap mode).
    pub script: Option<String>,
    /// Arguments given to `sbatch` (after the options in the script).
    pub sbatch_args: Vec<String>,
    /// Grid tasks this job runs.
    pub tasks: Vec<usize>,
    /// Array jobs: task index = array index + offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array_offset: Option<usize>,
}

/// One submission of (some of) the tasks: the first, or a resubmission.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submission {
    /// 0 for the first, then 1, 2, … (script names carry it).
    pub number: usize,
    pub created: String,
    pub executor: ExecutorKind,
    /// `--dependency` given to every job, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependency: Option<String>,
    pub dry_run: bool,
    pub jobs: Vec<JobRecord>,
    /// Local: the signal that interrupted this submission (`TERM`, `INT`, `HUP`); its
    /// running tasks checkpointed, the rest were not started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted_by: Option<String>,
    /// Local: the hkd-grid process running it ("process PID on HOST since TIME"), so that
    /// `status` tells a running local grid's queued tasks from ones that never started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_process: Option<String>,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub hkd_version: String,
    pub name: String,
    /// The config file (absolute) and the hash of the parsed config.
    pub config_path: PathBuf,
    pub config_hash: String,
    pub config: GridConfig,
    pub created: String,
    /// Directory the tasks run in (relative paths of the grid resolve against it).
    pub workdir: PathBuf,
    pub binary: BinaryInfo,
    pub tasks: Vec<Task>,
    #[serde(default)]
    pub submissions: Vec<Submission>,
}

impl Manifest {
    /// The last submission that includes task `index`, with its job.
    pub fn latest_job_of(&self, index: usize) -> Option<(&Submission, &JobRecord)> {
        self.submissions.iter().rev().find_map(|s| {
            s.jobs
                .iter()
                .find(|j| j.tasks.contains(&index))
                .map(|j| (s, j))
        })
    }

    /// Every Slurm job id recorded.
    pub fn job_ids(&self) -> Vec<String> {
        self.submissions
            .iter()
            .flat_map(|s| s.jobs.iter().filter_map(|j| j.job_id.clone()))
            .collect()
    }
}

/// What the task runner did and saw, in `state/task-<index>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskState {
    pub index: usize,
    /// `SLURM_JOB_ID` (array tasks: `<array job>_<task>`), if under Slurm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `skip`, `fresh`, `resume`, `restart` or `run` (see [`crate::plan::TaskAction`]).
    pub action: String,
    /// The run directory, when hkd-grid could work it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_dir: Option<PathBuf>,
    /// The exact command run (executable first).
    pub argv: Vec<String>,
    pub started: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// A signal the runner received and forwarded (`USR1`, `TERM`, `INT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// The runner asked Slurm to requeue the job.
    #[serde(default)]
    pub requeued: bool,
}

/// A grid directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridDir {
    path: PathBuf,
}

impl GridDir {
    /// Creates `<root>/<YYYYmmdd-HHMMSS>-<name>/` (with `-2`, `-3`… if taken).
    pub fn create(root: &Path, name: &str) -> Result<GridDir> {
        std::fs::create_dir_all(root).map_err(|e| GridError::io("create", root, e))?;
        let stamp = jiff::ZonedDateTime::now()
            .strftime("%Y%m%d-%H%M%S")
            .to_string();
        for n in 1.. {
            let dir_name = if n == 1 {
                format!("{stamp}-{name}")
            } else {
                format!("{stamp}-{name}-{n}")
            };
            let path = root.join(dir_name);
            match std::fs::create_dir(&path) {
                Ok(()) => return Self::init(path),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(GridError::io("create", &path, e)),
            }
        }
        unreachable!("the loop returns")
    }

    /// Creates the grid directory exactly at `path` (pipeline stages).
    pub fn create_at(path: &Path) -> Result<GridDir> {
        std::fs::create_dir_all(path).map_err(|e| GridError::io("create", path, e))?;
        Self::init(path.to_path_buf())
    }

    fn init(path: PathBuf) -> Result<GridDir> {
        let path = hkd_rundir::absolute(&path);
        for sub in [STATE_DIR, LOG_DIR] {
            let p = path.join(sub);
            std::fs::create_dir_all(&p).map_err(|e| GridError::io("create", &p, e))?;
        }
        Ok(GridDir { path })
    }

    /// An existing grid directory (must hold `manifest.json`).
    pub fn open(path: &Path) -> Result<GridDir> {
        let path = hkd_rundir::absolute(path);
        if !path.join(MANIFEST).is_file() {
            return Err(GridError::grid_dir(
                &path,
                format!(
                    "no {MANIFEST} here: give a directory that hkd-grid wrote (grids/<timestamp>-<name>/)"
                ),
            ));
        }
        Ok(GridDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn read_manifest(&self) -> Result<Manifest> {
        let path = self.file(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|e| GridError::io("read", &path, e))?;
        serde_json::from_str(&text)
            .map_err(|e| GridError::grid_dir(&path, format!("not a valid hkd-grid manifest: {e}")))
    }

    pub fn write_manifest(&self, manifest: &Manifest) -> Result<()> {
        let mut text = serde_json::to_string_pretty(manifest)
            .map_err(|e| GridError::grid_dir(self.file(MANIFEST), e.to_string()))?;
        text.push('\n');
        self.write_file(MANIFEST, text.as_bytes(), false)
    }

    /// Writes a file of the grid directory atomically (mode 0755 if `executable`).
    pub fn write_file(&self, name: &str, bytes: &[u8], executable: bool) -> Result<()> {
        let path = self.file(name);
        write_replace(&path, bytes, executable).map_err(|e| GridError::io("write", &path, e))
    }

    pub fn state_path(&self, index: usize) -> PathBuf {
        self.path.join(STATE_DIR).join(format!("task-{index}.json"))
    }

    pub fn log_path(&self, index: usize) -> PathBuf {
        self.path.join(LOG_DIR).join(format!("task-{index}.log"))
    }

    /// The task's state file, if the task runner has written one.
    pub fn read_state(&self, index: usize) -> Result<Option<TaskState>> {
        let path = self.state_path(index);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| GridError::grid_dir(&path, format!("not a valid task state: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(GridError::io("read", &path, e)),
        }
    }

    pub fn write_state(&self, state: &TaskState) -> Result<()> {
        let path = self.state_path(state.index);
        let text = serde_json::to_string_pretty(state)
            .map_err(|e| GridError::grid_dir(&path, e.to_string()))?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| GridError::io("create", parent, e))?;
        }
        write_replace(&path, text.as_bytes(), false).map_err(|e| GridError::io("write", &path, e))
    }
}

/// Writes `bytes` to a temporary file beside `path` and renames it over `path`: readers
/// see the old file or the new one, never a mix. No fsync: grid files are bookkeeping
/// that can be rewritten, and a grid of thousands of scripts must render fast.
pub fn write_replace(path: &Path, bytes: &[u8], executable: bool) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    use std::os::unix::fs::PermissionsExt;
    // 0666 (scripts 0777) minus the umask, like any other tool's output
    let mode = if executable { 0o777 } else { 0o666 };
    let mut tmp = tempfile::Builder::new()
        .prefix(".hkd-grid-")
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Now, as an RFC 3339 timestamp (UTC).
pub fn now() -> String {
    jiff::Timestamp::now().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_dirs_are_unique_and_hold_state_and_logs() {
        let root = tempfile::tempdir().unwrap();
        let a = GridDir::create(root.path(), "train").unwrap();
        let b = GridDir::create(root.path(), "train").unwrap();
        assert_ne!(a.path(), b.path());
        let name = a.path().file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.ends_with("-train"), "{name}");
        assert_eq!(name.len(), "20250101-120000-train".len());
        assert!(a.path().join(STATE_DIR).is_dir());
        assert!(a.path().join(LOG_DIR).is_dir());
        let err = GridDir::open(a.path()).unwrap_err().to_string();
        assert!(err.contains("no manifest.json"), "{err}");
    }

    #[test]
    fn task_states_round_trip() {
        let root = tempfile::tempdir().unwrap();
        let dir = GridDir::create_at(&root.path().join("g")).unwrap();
        assert_eq!(dir.read_state(3).unwrap(), None);
        let state = TaskState {
            index: 3,
            job_id: Some("17_3".into()),
            host: None,
            action: "fresh".into(),
            run_dir: None,
            argv: vec!["/bin/true".into()],
            started: now(),
            ended: None,
            exit_code: None,
            signal: None,
            requeued: false,
        };
        dir.write_state(&state).unwrap();
        assert_eq!(dir.read_state(3).unwrap(), Some(state));
    }
}
