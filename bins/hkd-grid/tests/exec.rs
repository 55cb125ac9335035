//! The task runner (`hkd-grid exec`) under signals: SIGUSR1 (Slurm's time-limit warning)
//! is forwarded, the binary checkpoints and exits 75, and the job is requeued; SIGTERM
//! (scancel) is forwarded but never requeues.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Fake, hkd_grid, only_grid, run};

struct Setup {
    _tmp: tempfile::TempDir,
    grid: PathBuf,
    ready: PathBuf,
    scontrol_log: PathBuf,
    path_env: String,
}

/// A grid of one task whose fake hkd-train signals readiness, then exits 75 on USR1 or
/// TERM (as hkd-train does after checkpointing), and a fake `scontrol` that records its
/// arguments.
fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let ready = tmp.path().join("ready");
    let body = format!(
        "trap 'echo USR1 >> {r}.sig; exit 75' USR1\ntrap 'echo TERM >> {r}.sig; exit 75' TERM\ntouch {r}\nfor i in $(seq 300); do sleep 0.05; done\nexit 0",
        r = shlex::try_quote(&ready.to_string_lossy()).unwrap()
    );
    let fake = Fake::new(&tmp.path().join("train"), "hkd-train", &body);
    let scontrol_log = tmp.path().join("scontrol.log");
    let fake_bin = tmp.path().join("fakebin");
    std::fs::create_dir_all(&fake_bin).unwrap();
    let scontrol = fake_bin.join("scontrol");
    std::fs::write(
        &scontrol,
        format!(
            "#!/bin/sh\necho \"$*\" >> {}\n",
            shlex::try_quote(&scontrol_log.to_string_lossy()).unwrap()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&scontrol, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        tmp.path().join("g.toml"),
        "binary = \"hkd-train\"\n[grid]\nteacher = \"human\"\n[slurm]\nsignal_before_timeout = 60\nrequeue = true\n",
    )
    .unwrap();
    let (code, _, stderr) = run(hkd_grid()
        .current_dir(tmp.path())
        .env("HKD_BIN_DIR", fake.path.parent().unwrap())
        .args(["g.toml", "--dry-run", "--executor", "slurm"]));
    assert_eq!(code, 0, "{stderr}");
    let grid = only_grid(&tmp.path().join("grids"));
    let script = std::fs::read_to_string(grid.join("job-0-0.sh")).unwrap();
    assert!(script.contains("#SBATCH --signal=B:USR1@60\n"), "{script}");
    assert!(script.contains("exec --requeue-on-checkpoint "), "{script}");
    let path_env = format!(
        "{}:{}",
        fake_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Setup {
        _tmp: tmp,
        grid,
        ready,
        scontrol_log,
        path_env,
    }
}

fn wait_for(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `hkd-grid exec`, sends `signal` once the binary runs, returns (exit code, state).
fn exec_with_signal(s: &Setup, signal: i32) -> (i32, serde_json::Value) {
    let mut child = hkd_grid()
        .env("SLURM_JOB_ID", "4242")
        .env("PATH", &s.path_env)
        .args([
            "exec",
            "--requeue-on-checkpoint",
            s.grid.to_str().unwrap(),
            "0",
        ])
        .spawn()
        .unwrap();
    wait_for(&s.ready);
    // SAFETY: kill(2) on the child we spawned.
    let rc = unsafe { libc::kill(child.id() as i32, signal) };
    assert_eq!(rc, 0);
    let status = child.wait().unwrap();
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.grid.join("state/task-0.json")).unwrap())
            .unwrap();
    (status.code().unwrap_or(-1), state)
}

#[test]
fn usr1_is_forwarded_and_the_checkpointed_job_is_requeued() {
    let s = setup();
    let (code, state) = exec_with_signal(&s, libc::SIGUSR1);
    assert_eq!(code, 75);
    assert_eq!(
        std::fs::read_to_string(s.ready.with_extension("sig")).unwrap(),
        "USR1\n"
    );
    assert_eq!(
        std::fs::read_to_string(&s.scontrol_log).unwrap(),
        "requeue 4242\n"
    );
    assert_eq!(state["exit_code"], 75);
    assert_eq!(state["signal"], "USR1");
    assert_eq!(state["requeued"], true);
    assert_eq!(state["job_id"], "4242");
    let argv = state["argv"].as_array().unwrap();
    assert_eq!(argv.last().unwrap(), "--resume");
}

#[test]
fn term_is_forwarded_but_never_requeues() {
    let s = setup();
    let (code, state) = exec_with_signal(&s, libc::SIGTERM);
    assert_eq!(code, 75);
    assert_eq!(
        std::fs::read_to_string(s.ready.with_extension("sig")).unwrap(),
        "TERM\n"
    );
    assert!(
        !s.scontrol_log.exists(),
        "scancel must not lead to a requeue"
    );
    assert_eq!(state["signal"], "TERM");
    assert_eq!(state["requeued"], false);
    let (_, stdout, _) = run(hkd_grid().args(["status", s.grid.to_str().unwrap()]));
    assert!(stdout.contains("checkpointed (exit 75)"), "{stdout}");
}
