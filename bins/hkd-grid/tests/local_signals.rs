//! SIGTERM and Ctrl-C to a local `hkd-grid` running the real hkd-train (target/debug, the
//! embedded fixtures, plane2, a few seconds a run; 3 tasks, 2 at a time):
//! - SIGTERM to hkd-grid alone: it forwards the signal, both running runs checkpoint and
//!   exit 75, the third task is not started, hkd-grid exits 75 saying so; no hkd-train of
//!   the grid is left running; the task states say exit 75 after TERM and `status` says
//!   checkpointed;
//! - the same command again resumes both runs (action `resume`); SIGINT to its whole
//!   process group (what a terminal's Ctrl-C does) reaches each run once, through
//!   hkd-grid: they checkpoint again (75, not 130 for a second signal);
//! - the same command a third time finishes every run, each epoch recorded once.
//!
//! Needs hkd-train built (`cargo build -p hkd-train`); without it the test says SKIPPED
//! on stderr and passes, except in CI (`CI=true`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{assert_current, find_hkd_train, hkd_grid, only_grid, run, skip_or_fail};
use hkd_rundir::RunDir;
use hkd_slurm::{GridDir, TaskState};

const EPOCHS: u32 = 4;
const TASKS: usize = 3;

/// Processes this test started (hkd-grid) or that hkd-grid started (hkd-train): killed
/// with SIGKILL when the test ends, if one is still there, so a failing test leaves no
/// training behind.
#[derive(Default)]
struct Reaper {
    pids: Vec<i32>,
}

impl Drop for Reaper {
    fn drop(&mut self) {
        for &pid in &self.pids {
            if comm(pid).is_some_and(|c| c == "hkd-train" || c == "hkd-grid") {
                // SAFETY: kill(2) on a process this test started or its grandchild.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

/// `/proc/<pid>/stat`: (command name, state, parent pid); `None` once it is gone.
fn stat(pid: i32) -> Option<(String, char, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text[open + 1..close].to_string();
    let mut rest = text[close + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((name, state, ppid))
}

/// The command name of a live (not zombie) process.
fn comm(pid: i32) -> Option<String> {
    stat(pid).filter(|(_, s, _)| *s != 'Z').map(|(n, _, _)| n)
}

fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Live hkd-train processes whose command line mentions `marker` (the test's directory).
fn trainers_of(marker: &str) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|&pid| comm(pid).is_some_and(|c| c == "hkd-train"))
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
        })
        .collect()
}

struct Work {
    tmp: tempfile::TempDir,
    bin_dir: PathBuf,
    config: PathBuf,
    launches: usize,
}

impl Work {
    fn marker(&self) -> String {
        self.tmp.path().display().to_string()
    }

    /// Starts `hkd-grid <config> --jobs 2` in a process group of its own (as a shell
    /// starts a foreground job), into a grids folder of its own; hkd-train logs every
    /// batch. Returns the child and its grids folder.
    fn start(&mut self) -> (Child, PathBuf) {
        let grids = self.tmp.path().join(format!("grids-{}", self.launches));
        let log = self
            .tmp
            .path()
            .join(format!("hkd-grid-{}.err", self.launches));
        self.launches += 1;
        use std::os::unix::process::CommandExt;
        let child = hkd_grid()
            .current_dir(self.tmp.path())
            .env("HKD_BIN_DIR", &self.bin_dir)
            .env("RUST_LOG", "info,hkd_trainer=debug")
            .args([self.config.to_str().unwrap(), "--jobs", "2", "--grids-dir"])
            .arg(&grids)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .process_group(0)
            .spawn()
            .unwrap();
        (child, grids)
    }

    fn stderr_of(&self, launch: usize) -> String {
        std::fs::read_to_string(self.tmp.path().join(format!("hkd-grid-{launch}.err")))
            .unwrap_or_default()
    }
}

fn logs(grids: &Path) -> String {
    let Ok(rd) = std::fs::read_dir(grids) else {
        return String::new();
    };
    let mut text = String::new();
    for grid in rd.flatten() {
        for i in 0..TASKS {
            let p = grid.path().join(format!("logs/task-{i}.log"));
            if let Ok(t) = std::fs::read_to_string(&p) {
                text.push_str(&format!("--- {}\n{t}\n", p.display()));
            }
        }
    }
    text
}

/// Waits until tasks 0 and 1 train (their run has a config.toml and the task log shows a
/// batch); returns the pids of the grid's hkd-train children.
fn wait_until_both_train(grid_pid: i32, grids: &Path, reaper: &mut Reaper) -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let training = std::fs::read_dir(grids).ok().and_then(|mut rd| {
            let dir = GridDir::open(&rd.next()?.ok()?.path()).ok()?;
            (0..2).try_for_each(|i| {
                let state = dir.read_state(i).ok()??;
                let run = RunDir::new(state.run_dir?);
                let log = std::fs::read_to_string(dir.log_path(i)).ok()?;
                (run.file(RunDir::CONFIG).is_file() && log.contains(" batch ")).then_some(())
            })
        });
        let children: Vec<i32> = all_pids()
            .into_iter()
            .filter(|&pid| {
                stat(pid)
                    .is_some_and(|(n, s, ppid)| n == "hkd-train" && s != 'Z' && ppid == grid_pid)
            })
            .collect();
        for &pid in &children {
            if !reaper.pids.contains(&pid) {
                reaper.pids.push(pid);
            }
        }
        if training.is_some() && children.len() == 2 {
            return children;
        }
        assert!(
            Instant::now() < deadline,
            "tasks 0 and 1 never both trained (hkd-train children: {children:?}):\n{}",
            logs(grids)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for hkd-grid to exit; returns its exit code.
fn wait_exit(child: &mut Child, limit: Duration) -> i32 {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        assert!(
            Instant::now() < deadline,
            "hkd-grid did not exit within {} s of the signal",
            limit.as_secs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn states(grid: &Path) -> Vec<Option<TaskState>> {
    let dir = GridDir::open(grid).unwrap();
    (0..TASKS).map(|i| dir.read_state(i).unwrap()).collect()
}

/// Sends `signal` to `target` (a pid, or minus a process group), then checks what an
/// interrupted grid must leave: exit 75 and its message, no hkd-train running, tasks 0
/// and 1 checkpointed after `name` with `action`, task 2 not started.
#[allow(clippy::too_many_arguments)]
fn interrupt(
    work: &Work,
    launch: usize,
    mut child: Child,
    grids: &Path,
    target: i32,
    signal: i32,
    name: &str,
    action: &str,
    reaper: &mut Reaper,
) -> PathBuf {
    let grid_pid = child.id() as i32;
    let trainers = wait_until_both_train(grid_pid, grids, reaper);
    let sent = Instant::now();
    // SAFETY: kill(2) on the hkd-grid (or its process group) this test started.
    assert_eq!(unsafe { libc::kill(target, signal) }, 0);
    let code = wait_exit(&mut child, Duration::from_secs(60));
    let took = sent.elapsed().as_secs_f64();
    let stderr = work.stderr_of(launch);
    assert_eq!(code, 75, "SIG{name}: {stderr}\n{}", logs(grids));
    assert!(
        stderr.contains(&format!(
            "hkd-grid: interrupted by SIG{name}: 2 running tasks checkpointed, 1 not started; run the same command again"
        )),
        "{stderr}"
    );
    for pid in &trainers {
        assert!(
            comm(*pid).is_none_or(|c| c != "hkd-train"),
            "SIG{name}: hkd-train {pid} still runs after hkd-grid exited"
        );
    }
    let left = trainers_of(&work.marker());
    assert!(
        left.is_empty(),
        "SIG{name}: hkd-train left running: {left:?}"
    );

    let grid = only_grid(grids);
    let st = states(&grid);
    for (i, s) in st.iter().enumerate().take(2) {
        let s = s
            .as_ref()
            .unwrap_or_else(|| panic!("task {i} has no state"));
        assert_eq!(s.exit_code, Some(75), "task {i}: {s:?}\n{}", logs(grids));
        assert_eq!(s.signal.as_deref(), Some(name), "task {i}: {s:?}");
        assert_eq!(s.action, action, "task {i}: {s:?}");
        assert!(s.ended.is_some(), "task {i}: {s:?}");
        let run = RunDir::new(s.run_dir.as_ref().unwrap());
        let last = run.read_state().expect("a checkpoint (last.json)");
        assert!(
            !last.finished,
            "task {i}: the run finished before the signal"
        );
    }
    assert!(st[2].is_none(), "task 2 must not start: {:?}", st[2]);
    let (code, stdout, stderr) = run(hkd_grid().args(["status", "--json"]).arg(&grid));
    assert_eq!(code, 0, "{stderr}");
    let status: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    for i in 0..2 {
        assert_eq!(status[i]["kind"], "failed", "{status}");
        let detail = status[i]["detail"].as_str().unwrap();
        assert!(
            detail.contains("checkpointed (exit 75)")
                && detail.contains(&format!("on SIG{name}"))
                && detail.contains("run the grid again"),
            "task {i}: {detail}"
        );
    }
    let detail = status[2]["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!(
            "not started: the grid was interrupted by SIG{name}"
        )),
        "task 2: {detail}"
    );
    eprintln!("SIG{name}: hkd-grid exited 75 {took:.1} s after the signal");
    grid
}

/// The grid every test here runs (3 tasks of plane2, 2 at a time, `EPOCHS` epochs) in a
/// fresh directory; `None` (after saying SKIPPED) without hkd-train or the fixtures.
fn new_work(test: &str) -> Option<Work> {
    let Some(train) = find_hkd_train() else {
        skip_or_fail(test, "hkd-train is not built (cargo build -p hkd-train)");
        return None;
    };
    let fixture = common::workspace_root().join("fixtures/cifar10h-mini");
    if !fixture.join("dataset.toml").is_file() {
        let why = format!("the fixture dataset is missing at {}", fixture.display());
        skip_or_fail(test, &why);
        return None;
    }
    assert_current(&train);
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("sig.toml");
    std::fs::write(
        &config,
        format!(
            "name = \"sig\"\nbinary = \"hkd-train\"\nexecutor = \"local\"\n[grid]\ndata = {:?}\nout = {:?}\nteacher = \"human\"\nstudent = \"plane2\"\ndevice = \"cpu\"\nthreads = 1\nepochs = {EPOCHS}\nlr = [0.1, 0.05, 0.01]\n",
            fixture.to_string_lossy(),
            tmp.path().join("runs").to_string_lossy()
        ),
    )
    .unwrap();
    Some(Work {
        bin_dir: train.parent().unwrap().to_path_buf(),
        config,
        tmp,
        launches: 0,
    })
}

#[test]
fn sigterm_and_ctrl_c_checkpoint_a_local_grid_and_the_same_command_resumes_it() {
    const TEST: &str = "sigterm_and_ctrl_c_checkpoint_a_local_grid_and_the_same_command_resumes_it";
    let Some(mut work) = new_work(TEST) else {
        return;
    };
    let started = Instant::now();
    let mut reaper = Reaper::default();

    // 1. SIGTERM to hkd-grid alone
    let (child, grids) = work.start();
    let pid = child.id() as i32;
    reaper.pids.push(pid);
    let first = interrupt(
        &work,
        0,
        child,
        &grids,
        pid,
        libc::SIGTERM,
        "TERM",
        "fresh",
        &mut reaper,
    );

    // 2. the same command resumes both runs; Ctrl-C (SIGINT to the process group)
    let (child, grids) = work.start();
    let pid = child.id() as i32;
    reaper.pids.push(pid);
    let second = interrupt(
        &work,
        1,
        child,
        &grids,
        -pid,
        libc::SIGINT,
        "INT",
        "resume",
        &mut reaper,
    );
    let run_dirs: Vec<PathBuf> = states(&first)
        .into_iter()
        .take(2)
        .map(|s| s.unwrap().run_dir.unwrap())
        .collect();
    let resumed: Vec<PathBuf> = states(&second)
        .into_iter()
        .take(2)
        .map(|s| s.unwrap().run_dir.unwrap())
        .collect();
    assert_eq!(resumed, run_dirs, "the same runs were resumed");

    // 3. the same command again finishes every run
    let (mut child, grids) = work.start();
    reaper.pids.push(child.id() as i32);
    let code = wait_exit(&mut child, Duration::from_secs(300));
    let stderr = work.stderr_of(2);
    assert_eq!(code, 0, "{stderr}\n{}", logs(&grids));
    assert!(
        stderr.contains("3 tasks: 3 ok (0 already finished), 0 failed"),
        "{stderr}"
    );
    let last = states(&only_grid(&grids));
    let actions: Vec<(&str, Option<i32>)> = last
        .iter()
        .map(|s| {
            let s = s.as_ref().unwrap();
            (s.action.as_str(), s.exit_code)
        })
        .collect();
    assert_eq!(
        actions,
        [("resume", Some(0)), ("resume", Some(0)), ("fresh", Some(0))]
    );
    for s in &last {
        let run = RunDir::new(s.as_ref().unwrap().run_dir.as_ref().unwrap());
        assert!(run.is_finished(), "{}", run.path().display());
        let epochs: Vec<u32> = run
            .read_metrics()
            .unwrap()
            .iter()
            .map(|m| m.epoch)
            .collect();
        assert_eq!(
            epochs,
            (1..=EPOCHS).collect::<Vec<_>>(),
            "{}: every epoch once",
            run.path().display()
        );
    }
    eprintln!("{TEST}: took {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn kill_9_of_a_local_grid_takes_its_trainers_along_and_a_later_finish_makes_checkpointed_tasks_done()
 {
    const TEST: &str = "kill_9_of_a_local_grid_takes_its_trainers_along_and_a_later_finish_makes_checkpointed_tasks_done";
    let Some(mut work) = new_work(TEST) else {
        return;
    };
    let mut reaper = Reaper::default();
    // 1. SIGTERM: tasks 0 and 1 checkpoint (exit 75)
    let (child, grids) = work.start();
    let pid = child.id() as i32;
    reaper.pids.push(pid);
    let first = interrupt(
        &work,
        0,
        child,
        &grids,
        pid,
        libc::SIGTERM,
        "TERM",
        "fresh",
        &mut reaper,
    );

    // 2. the same command, killed with SIGKILL while both runs train: its trainers get
    // the parent-death signal, checkpoint and exit; none is left under PID 1
    let (mut child, grids) = work.start();
    let pid = child.id() as i32;
    reaper.pids.push(pid);
    let trainers = wait_until_both_train(pid, &grids, &mut reaper);
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !trainers_of(&work.marker()).is_empty() {
        assert!(
            Instant::now() < deadline,
            "hkd-train {trainers:?} still run 60 s after kill -9 of their grid:\n{}",
            logs(&grids)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = only_grid(&grids);
    for s in states(&killed).iter().take(2) {
        let run = RunDir::new(s.as_ref().unwrap().run_dir.as_ref().unwrap());
        let log = std::fs::read_to_string(GridDir::open(&killed).unwrap().log_path(0))
            .unwrap_or_default();
        assert!(
            run.read_state().is_ok_and(|l| !l.finished),
            "a checkpoint to resume: {log}"
        );
    }

    // 3. the same command finishes every run, resuming the two
    let (mut child, grids) = work.start();
    reaper.pids.push(child.id() as i32);
    let code = wait_exit(&mut child, Duration::from_secs(300));
    let stderr = work.stderr_of(2);
    assert_eq!(code, 0, "{stderr}\n{}", logs(&grids));
    let actions: Vec<String> = states(&only_grid(&grids))
        .iter()
        .map(|s| s.as_ref().unwrap().action.clone())
        .collect();
    assert_eq!(actions[..2], ["resume", "resume"], "{stderr}");

    // the first grid's checkpointed tasks (exit 75) are done now that their runs finished
    let (code, stdout, stderr) = run(hkd_grid().args(["status", "--json"]).arg(&first));
    assert_eq!(code, 0, "{stderr}");
    let status: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    for i in 0..2 {
        assert_eq!(status[i]["kind"], "done", "task {i}: {status}");
        assert_eq!(status[i]["detail"], "run finished", "task {i}: {status}");
    }
}

#[test]
fn status_watch_follows_a_running_local_grid_epoch_by_epoch() {
    const TEST: &str = "status_watch_follows_a_running_local_grid_epoch_by_epoch";
    let Some(mut work) = new_work(TEST) else {
        return;
    };
    let mut reaper = Reaper::default();
    let (mut child, grids) = work.start();
    let pid = child.id() as i32;
    reaper.pids.push(pid);
    // once the grid directory exists, watch it (stdout is a pipe: a line per change)
    let deadline = Instant::now() + Duration::from_secs(60);
    let grid = loop {
        if let Some(g) = std::fs::read_dir(&grids).ok().and_then(|mut d| d.next()) {
            let g = g.unwrap().path();
            if g.join("manifest.json").is_file() {
                break g;
            }
        }
        assert!(Instant::now() < deadline, "no grid directory");
        std::thread::sleep(Duration::from_millis(20));
    };
    let watch = hkd_grid()
        .args(["status", "--watch", "--interval", "0.1"])
        .arg(&grid)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    reaper.pids.push(watch.id() as i32);
    let code = wait_exit(&mut child, Duration::from_secs(300));
    assert_eq!(code, 0, "{}", work.stderr_of(0));
    let out = watch.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // task 2 waits while tasks 0 and 1 train (2 at a time), then trains
    assert!(
        text.contains("task 2: pending: queued in the local grid"),
        "{text}"
    );
    assert!(
        text.lines().any(
            |l| l.starts_with("task 0: running: running locally, run at epoch ")
                && l.contains(", last val acc 0.")
        ),
        "{text}"
    );
    let epochs_seen: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|l| l.starts_with("task 0: running"))
        .filter_map(|l| l.split("run at epoch ").nth(1))
        .filter_map(|r| r.split(',').next())
        .collect();
    assert!(
        epochs_seen.len() >= 2,
        "several epochs of task 0 seen: {text}"
    );
    assert!(text.contains("task 0: done: run finished"), "{text}");
    assert!(
        text.trim_end().ends_with("3 tasks: 3 done"),
        "the watch ends with the grid: {text}"
    );
    // The grid itself shows the same view while it runs, on its stderr (a file here: a
    // line per change): task 0's epochs as they pass, task 2 queued, then done.
    let own = work.stderr_of(0);
    assert!(
        own.contains("task 2: pending: queued in the local grid"),
        "{own}"
    );
    let own_epochs: std::collections::BTreeSet<&str> = own
        .lines()
        .filter(|l| l.starts_with("task 0: running: running locally, run at epoch "))
        .filter_map(|l| l.split("run at epoch ").nth(1))
        .filter_map(|r| r.split(',').next())
        .collect();
    assert!(
        own_epochs.len() >= 2,
        "several epochs of task 0 in the grid's own view: {own}"
    );
    assert!(own.contains("task 0: done: run finished"), "{own}");
}

/// A local pipeline's directory answers `status` while its first stage runs (the stage is
/// recorded before it starts, not when the local executor returns from it).
#[test]
fn status_of_a_running_local_pipeline_shows_its_running_stage() {
    const TEST: &str = "status_of_a_running_local_pipeline_shows_its_running_stage";
    let Some(work) = new_work(TEST) else {
        return;
    };
    let mut reaper = Reaper::default();
    let pipe = work.tmp.path().join("pipe.toml");
    std::fs::write(
        &pipe,
        "name = \"pipe\"\nexecutor = \"local\"\n[[stage]]\nname = \"lr\"\nconfig = \"sig.toml\"\n",
    )
    .unwrap();
    let grids = work.tmp.path().join("grids");
    let mut child = hkd_grid()
        .current_dir(work.tmp.path())
        .env("HKD_BIN_DIR", &work.bin_dir)
        .env("HKD_GRID_LIVE", "0")
        .args([
            "pipeline",
            pipe.to_str().unwrap(),
            "--jobs",
            "2",
            "--grids-dir",
        ])
        .arg(&grids)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    reaper.pids.push(child.id() as i32);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let dir = std::fs::read_dir(&grids)
            .ok()
            .and_then(|mut d| d.next())
            .map(|g| g.unwrap().path());
        if let Some(dir) = dir.filter(|d| d.join("pipeline.json").is_file()) {
            let out = hkd_grid()
                .args(["status", "--json"])
                .arg(&dir)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            if text.contains("running locally") {
                assert!(out.status.success(), "{text}");
                break text;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no pipeline directory answered status with a running task while the stage ran"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.contains("\"lr\""), "the stage is named: {status}");
    assert_eq!(wait_exit(&mut child, Duration::from_secs(300)), 0);
}
