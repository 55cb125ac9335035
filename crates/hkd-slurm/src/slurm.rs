//! Talking to Slurm: `sbatch`, `squeue`, `sacct`, `scontrol`. Every command gets its
//! arguments as an argv (no shell).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::binary::find_on_path;
use crate::error::{GridError, Result};

/// `scancel IDS…`: cancels the jobs (array jobs whole).
pub fn cancel(job_ids: &[String]) -> Result<()> {
    let output = Command::new("scancel")
        .args(job_ids)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| GridError::Scheduler {
            command: "scancel".into(),
            script: None,
            message: format!("cannot run scancel: {e}"),
        })?;
    if !output.status.success() {
        return Err(GridError::Scheduler {
            command: "scancel".into(),
            script: None,
            message: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// `sbatch` on `PATH`, if any.
pub fn sbatch_path() -> Option<PathBuf> {
    find_on_path("sbatch")
}

/// Submits with `sbatch --parsable [--dependency=…] ARGS…` run in `grid_dir` (relative
/// script and log paths resolve there). Returns the job id. A refusal surfaces sbatch's
/// own message.
pub fn submit(
    grid_dir: &Path,
    args: &[String],
    dependency: Option<&str>,
    script: Option<&Path>,
) -> Result<String> {
    let mut cmd = Command::new("sbatch");
    cmd.arg("--parsable");
    if let Some(dep) = dependency {
        cmd.arg(format!("--dependency={dep}"));
    }
    cmd.args(args).current_dir(grid_dir).stdin(Stdio::null());
    let output = cmd.output().map_err(|e| GridError::Scheduler {
        command: "sbatch".into(),
        script: script.map(Path::to_path_buf),
        message: format!("cannot run sbatch: {e}"),
    })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        // sbatch is installed but no controller answers (a workstation with Slurm's
        // packages, a stopped local cluster): say how to go on.
        let hint = if stderr.contains("Unable to contact slurm controller") {
            "; start Slurm (`just slurm-up` starts the local one-node cluster) or run the \
             grid here with --executor local"
        } else {
            ""
        };
        return Err(GridError::Scheduler {
            command: "sbatch".into(),
            script: script.map(Path::to_path_buf),
            message: format!(
                "the scheduler refused the job ({}): {}{hint}",
                output.status,
                stderr.trim()
            ),
        });
    }
    // `--parsable` prints `<id>` or `<id>;<cluster>`
    let id = stdout
        .trim()
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        return Err(GridError::Scheduler {
            command: "sbatch --parsable".into(),
            script: script.map(Path::to_path_buf),
            message: format!(
                "expected a job id, got {:?} (stderr: {})",
                stdout.trim(),
                stderr.trim()
            ),
        });
    }
    Ok(id)
}

/// `MaxArraySize` of the cluster (`scontrol show config`), if it answers.
pub fn max_array_size() -> Option<usize> {
    let output = Command::new("scontrol")
        .args(["show", "config"])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        (key.trim() == "MaxArraySize").then(|| value.trim().parse().ok())?
    })
}

/// States of this user's jobs in the queue, by job id as Slurm prints it (`123`,
/// `123_4` for array tasks). `None` if `squeue` does not answer.
pub fn queue_states() -> Option<HashMap<String, String>> {
    let run = |me: bool| {
        let mut cmd = Command::new("squeue");
        cmd.args(["-h", "-r", "-o", "%i|%T"]);
        if me {
            cmd.arg("--me");
        }
        cmd.output().ok().filter(|o| o.status.success())
    };
    let output = run(true).or_else(|| run(false))?;
    Some(parse_pairs(&String::from_utf8_lossy(&output.stdout)))
}

/// Final states from accounting (`sacct`), by job id. `None` where accounting is off.
pub fn accounting_states(job_ids: &[String]) -> Option<HashMap<String, String>> {
    if job_ids.is_empty() {
        return Some(HashMap::new());
    }
    let output = Command::new("sacct")
        .args([
            "-n",
            "-P",
            "-X",
            "-o",
            "JobID,State",
            "-j",
            &job_ids.join(","),
        ])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    Some(parse_pairs(&String::from_utf8_lossy(&output.stdout)))
}

fn parse_pairs(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let (id, state) = line.split_once('|')?;
            // "CANCELLED by 0" → "CANCELLED"
            let state = state.split_whitespace().next().unwrap_or("").to_string();
            Some((id.trim().to_string(), state))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_squeue_and_sacct_lines() {
        let m = parse_pairs("12|RUNNING\n13_0|PENDING\n14|CANCELLED by 0\n\n");
        assert_eq!(m["12"], "RUNNING");
        assert_eq!(m["13_0"], "PENDING");
        assert_eq!(m["14"], "CANCELLED");
        assert_eq!(m.len(), 3);
    }
}
