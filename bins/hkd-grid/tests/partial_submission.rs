//! A Slurm submission that sbatch refuses half-way, with a fake `sbatch` that refuses its
//! n-th call (and fake `squeue`/`sacct`/`scontrol`, so the real cluster is never asked):
//! - submission stops at the first refusal, hkd-grid exits 1 naming sbatch's reason and the
//!   command that submits the rest, and stdout holds exactly the accepted job ids;
//! - the manifest records only the accepted jobs, `status` shows the other tasks as not
//!   submitted;
//! - `resubmit DIR --unsubmitted` submits exactly the remaining tasks (checked from what
//!   sbatch was given: array indices plus offset, or the `--wrap` command), and a second
//!   `--unsubmitted` finds nothing; `--failed --unsubmitted` selects both kinds.

mod common;

use std::path::{Path, PathBuf};

use common::{Fake, hkd_grid, only_grid, run};
use hkd_slurm::{GridDir, TaskState};

/// What sbatch prints when an association's submit limit is reached.
const REFUSAL: &str = "sbatch: error: AssocMaxSubmitJobLimit\nsbatch: error: Batch job submission failed: Job violates accounting/QOS policy (job submit limit, user's size and/or time limits)";

/// A fake cluster: `sbatch` numbers its calls (job id = 100 + call number) and refuses the
/// call whose number is in `refuse` (when that file exists); `squeue` prints `queue`;
/// `sacct` and `scontrol` fail (no accounting, no configuration to ask).
struct Cluster {
    tmp: tempfile::TempDir,
    sbatch: Fake,
    hkd_train: Fake,
    path_env: String,
}

impl Cluster {
    fn new() -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("slurm-state");
        std::fs::create_dir_all(&state).unwrap();
        let q = |p: &Path| shlex::try_quote(&p.to_string_lossy()).unwrap().into_owned();
        let (count, refuse, queue) = (
            q(&state.join("count")),
            q(&state.join("refuse")),
            q(&state.join("queue")),
        );
        let sbatch = Fake::new(
            &tmp.path().join("slurm"),
            "sbatch",
            &format!(
                "n=$(( $(cat {count} 2>/dev/null || echo 0) + 1 ))\necho $n > {count}\nif [ -e {refuse} ] && [ \"$n\" = \"$(cat {refuse})\" ]; then\ncat >&2 <<'EOF'\n{REFUSAL}\nEOF\nexit 1\nfi\necho $((100 + n))"
            ),
        );
        let bin = sbatch.path.parent().unwrap().to_path_buf();
        for (name, body) in [
            ("squeue", format!("cat {queue} 2>/dev/null\nexit 0")),
            ("sacct", "exit 1".to_string()),
            ("scontrol", "exit 1".to_string()),
            (
                "scancel",
                format!("echo \"$@\" >> {}\nexit 0", q(&state.join("scancel"))),
            ),
        ] {
            let path = bin.join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let hkd_train = Fake::new(&tmp.path().join("train"), "hkd-train", "exit 0");
        let path_env = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Cluster {
            tmp,
            sbatch,
            hkd_train,
            path_env,
        }
    }

    fn path(&self) -> &Path {
        self.tmp.path()
    }

    fn state(&self, name: &str) -> PathBuf {
        self.path().join("slurm-state").join(name)
    }

    /// sbatch refuses its `n`-th call from now on (counting from the first call).
    fn refuse_call(&self, n: usize) {
        std::fs::write(self.state("refuse"), n.to_string()).unwrap();
    }

    fn accept_all(&self) {
        let _ = std::fs::remove_file(self.state("refuse"));
    }

    /// What squeue answers (`<id>|<state>` lines).
    fn set_queue(&self, ids: &[&str]) {
        let text: String = ids.iter().map(|id| format!("{id}|PENDING\n")).collect();
        std::fs::write(self.state("queue"), text).unwrap();
    }

    fn grid(&self, args: &[&str]) -> (i32, String, String) {
        run(hkd_grid()
            .current_dir(self.path())
            .env("PATH", &self.path_env)
            .env("HKD_BIN_DIR", self.hkd_train.path.parent().unwrap())
            .args(args))
    }

    fn config(&self, text: &str) -> PathBuf {
        let path = self.path().join("g.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn grids(&self) -> PathBuf {
        self.path().join("grids")
    }
}

/// The grid tasks an array job runs: its `--array` indices plus the offset its script adds
/// to `SLURM_ARRAY_TASK_ID`, read from the script sbatch was given.
fn array_job_tasks(script: &Path) -> Vec<usize> {
    let text =
        std::fs::read_to_string(script).unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    let spec = text
        .lines()
        .find_map(|l| l.strip_prefix("#SBATCH --array="))
        .unwrap_or_else(|| panic!("no --array in {text}"));
    let spec = spec.split('%').next().unwrap();
    let offset: usize = text
        .split("SLURM_ARRAY_TASK_ID + ")
        .nth(1)
        .map(|rest| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .map(|n| n.parse().unwrap())
        .unwrap_or(0);
    let mut tasks = Vec::new();
    for part in spec.split(',') {
        match part.split_once('-') {
            Some((a, b)) => tasks.extend(a.parse::<usize>().unwrap()..=b.parse().unwrap()),
            None => tasks.push(part.parse().unwrap()),
        }
    }
    tasks.iter().map(|t| t + offset).collect()
}

/// The grid task a `--wrap` job runs: the last word of its runner command.
fn wrap_job_task(call: &[String]) -> usize {
    let wrap = call
        .iter()
        .find_map(|a| a.strip_prefix("--wrap="))
        .unwrap_or_else(|| panic!("no --wrap in {call:?}"));
    let last = wrap.lines().last().unwrap();
    assert!(last.contains(" exec "), "{wrap}");
    last.split_whitespace().last().unwrap().parse().unwrap()
}

fn manifest(grid: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(grid.join("manifest.json")).unwrap()).unwrap()
}

fn status_json(cluster: &Cluster, grid: &Path) -> Vec<serde_json::Value> {
    let (code, stdout, stderr) = cluster.grid(&["status", grid.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str::<Vec<serde_json::Value>>(&stdout).unwrap()
}

fn kinds(statuses: &[serde_json::Value]) -> Vec<String> {
    statuses
        .iter()
        .map(|s| s["kind"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn an_array_grid_refused_half_way_is_completed_by_resubmit_unsubmitted() {
    let cluster = Cluster::new();
    // 7 tasks, 2 per array job: jobs of tasks 0-1, 2-3, 4-5 and 6
    let config = cluster.config(
        "name = \"big\"\nbinary = \"hkd-train\"\n[grid]\nteacher = \"human\"\niter = [0, 1, 2, 3, 4, 5, 6]\n[slurm]\nmax_array_size = 2\n",
    );
    cluster.refuse_call(3);
    let grids = cluster.grids();
    let (code, stdout, stderr) = cluster.grid(&[
        config.to_str().unwrap(),
        "--executor",
        "slurm",
        "--grids-dir",
        grids.to_str().unwrap(),
    ]);
    let grid = only_grid(&grids);
    let dir = grid.display().to_string();

    // stops at the first refusal, with sbatch's reason and the command that goes on
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stdout, "101,102\n", "stdout: exactly the accepted job ids");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("hkd-grid: error: sbatch failed")),
        "{stderr}"
    );
    assert!(
        stderr.contains("AssocMaxSubmitJobLimit") && stderr.contains("job-0-2.sh"),
        "the refusal and the refused job: {stderr}"
    );
    assert!(
        stderr.contains("2 jobs (101,102) were accepted")
            && stderr.contains("3 tasks were not submitted"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("hkd-grid resubmit {dir} --unsubmitted")),
        "{stderr}"
    );
    let calls = cluster.sbatch.calls();
    let scripts: Vec<&str> = calls.iter().map(|c| c.last().unwrap().as_str()).collect();
    assert_eq!(
        scripts,
        ["job-0-0.sh", "job-0-1.sh", "job-0-2.sh"],
        "no job after the refused one was sent: {calls:?}"
    );

    // only the accepted jobs are recorded
    let m = manifest(&grid);
    let subs = m["submissions"].as_array().unwrap();
    assert_eq!(subs.len(), 1, "{m}");
    assert_eq!(subs[0]["dry_run"], false);
    let jobs: Vec<(String, Vec<u64>)> = subs[0]["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["job_id"].as_str().unwrap().to_string(),
                j["tasks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_u64().unwrap())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        jobs,
        [
            ("101".to_string(), vec![0, 1]),
            ("102".to_string(), vec![2, 3])
        ]
    );

    // status: the accepted tasks are queued, the others not submitted and say what to do
    cluster.set_queue(&["101_0", "101_1", "102_0", "102_1"]);
    let (code, table, stderr) = cluster.grid(&["status", &dir]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        table.contains("7 tasks: 4 pending, 3 not submitted"),
        "{table}"
    );
    let statuses = status_json(&cluster, &grid);
    assert_eq!(
        kinds(&statuses),
        [
            "pending",
            "pending",
            "pending",
            "pending",
            "not_submitted",
            "not_submitted",
            "not_submitted"
        ]
    );
    for s in &statuses[4..] {
        let detail = s["detail"].as_str().unwrap();
        assert!(
            detail.contains("not submitted") && detail.contains("--unsubmitted"),
            "{detail}"
        );
    }

    // --failed and --unsubmitted combine: task 0 failed (out of the queue, exit 1)
    cluster.set_queue(&["101_1", "102_0", "102_1"]);
    let index = 0;
    GridDir::open(&grid)
        .unwrap()
        .write_state(&TaskState {
            index,
            job_id: Some("101_0".into()),
            host: None,
            action: "fresh".into(),
            run_dir: None,
            argv: vec![cluster.hkd_train.path.to_string_lossy().into_owned()],
            started: "2026-01-01T00:00:00Z".into(),
            ended: Some("2026-01-01T00:00:01Z".into()),
            exit_code: Some(1),
            signal: None,
            requeued: false,
        })
        .unwrap();
    let (code, _, stderr) =
        cluster.grid(&["resubmit", &dir, "--failed", "--unsubmitted", "--dry-run"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("resubmitting 4 failed or unsubmitted tasks (0,4-6)"),
        "{stderr}"
    );
    assert_eq!(cluster.sbatch.calls().len(), 3, "a dry run submits nothing");

    // sbatch works again: exactly the unsubmitted tasks are submitted
    cluster.accept_all();
    let (code, stdout, stderr) = cluster.grid(&["resubmit", &dir, "--unsubmitted"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("resubmitting 3 unsubmitted tasks (4-6)"),
        "{stderr}"
    );
    assert_eq!(stdout, "104,105\n", "{stderr}");
    let calls = cluster.sbatch.calls();
    assert_eq!(calls.len(), 5, "{calls:?}");
    let mut sent: Vec<usize> = calls[3..]
        .iter()
        .flat_map(|c| array_job_tasks(&grid.join(c.last().unwrap())))
        .collect();
    sent.sort_unstable();
    assert_eq!(sent, [4, 5, 6], "{calls:?}");
    cluster.set_queue(&["101_1", "102_0", "102_1", "104_0", "104_1", "105_0"]);
    let statuses = status_json(&cluster, &grid);
    assert!(
        !kinds(&statuses).iter().any(|k| k == "not_submitted"),
        "{statuses:?}"
    );

    // nothing is left to submit
    let (code, stdout, stderr) = cluster.grid(&["resubmit", &dir, "--unsubmitted"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("no unsubmitted task"), "{stderr}");
    assert_eq!(stdout, "");
    assert_eq!(cluster.sbatch.calls().len(), 5, "nothing submitted again");
}

#[test]
fn a_wrap_grid_refused_at_its_first_job_is_submitted_whole_by_resubmit_unsubmitted() {
    let cluster = Cluster::new();
    let config = cluster.config(
        "name = \"wrapped\"\nbinary = \"hkd-train\"\n[grid]\nteacher = \"human\"\niter = [0, 1, 2]\n[slurm]\nmode = \"wrap\"\n",
    );
    cluster.refuse_call(1);
    let grids = cluster.grids();
    let (code, stdout, stderr) = cluster.grid(&[
        config.to_str().unwrap(),
        "--executor",
        "slurm",
        "--grids-dir",
        grids.to_str().unwrap(),
    ]);
    let grid = only_grid(&grids);
    let dir = grid.display().to_string();
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stdout, "", "no job was accepted");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("hkd-grid: error: sbatch failed")),
        "{stderr}"
    );
    assert!(
        stderr.contains("AssocMaxSubmitJobLimit")
            && stderr.contains("3 tasks were not submitted")
            && stderr.contains(&format!("hkd-grid resubmit {dir} --unsubmitted")),
        "{stderr}"
    );
    assert_eq!(cluster.sbatch.calls().len(), 1);
    assert_eq!(
        manifest(&grid)["submissions"].as_array().unwrap().len(),
        0,
        "nothing was accepted"
    );
    let statuses = status_json(&cluster, &grid);
    assert_eq!(
        kinds(&statuses),
        ["not_submitted", "not_submitted", "not_submitted"]
    );
    for s in &statuses {
        let detail = s["detail"].as_str().unwrap();
        assert!(
            detail.contains("--unsubmitted"),
            "a refused grid is no dry run: {detail}"
        );
    }

    cluster.accept_all();
    let (code, stdout, stderr) = cluster.grid(&["resubmit", &dir, "--unsubmitted"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "102,103,104\n", "{stderr}");
    let calls = cluster.sbatch.calls();
    let sent: Vec<usize> = calls[1..].iter().map(|c| wrap_job_task(c)).collect();
    assert_eq!(sent, [0, 1, 2], "{calls:?}");
    let (code, _, stderr) = cluster.grid(&["resubmit", &dir, "--unsubmitted"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("no unsubmitted task"), "{stderr}");
    assert_eq!(cluster.sbatch.calls().len(), 4);
}

#[test]
fn cancel_scancels_every_job_of_a_grid_and_refuses_a_local_one() {
    let cluster = Cluster::new();
    let config = cluster.config(
        "name = \"c\"\nbinary = \"hkd-train\"\n[grid]\nteacher = \"human\"\niter = [0, 1, 2]\n[slurm]\nmode = \"wrap\"\n",
    );
    let grids = cluster.grids();
    let (code, stdout, stderr) = cluster.grid(&[
        config.to_str().unwrap(),
        "--executor",
        "slurm",
        "--grids-dir",
        grids.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "101,102,103\n");
    let grid = only_grid(&grids);
    let (code, _, stderr) = cluster.grid(&["cancel", grid.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("cancelled jobs 101,102,103 (slurm)"),
        "{stderr}"
    );
    let scancel = std::fs::read_to_string(cluster.state("scancel")).unwrap();
    assert_eq!(scancel, "101 102 103\n");

    // a local grid runs in the foreground of its hkd-grid: nothing to cancel from outside
    let local = cluster.config(
        "name = \"l\"\nbinary = \"hkd-train\"\nexecutor = \"local\"\n[grid]\nteacher = \"human\"\niter = 0\n",
    );
    let local_grids = cluster.path().join("local-grids");
    let (code, _, stderr) = cluster.grid(&[
        local.to_str().unwrap(),
        "--grids-dir",
        local_grids.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = cluster.grid(&["cancel", only_grid(&local_grids).to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("Ctrl-C or SIGTERM"), "{stderr}");
}
