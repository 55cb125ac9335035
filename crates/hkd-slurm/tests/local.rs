//! The local executor with fake binaries: exact argv (hostile values included), skipping
//! and resuming, the worker pool, failures, status and resubmission.

mod support;

use std::time::Instant;

use hkd_rundir::TeacherSpec;
use hkd_slurm::{
    LaunchOptions, LocalEvent, LocalExecutor, SchedulerView, StatusKind, TaskAction, failed_tasks,
    grid_status, launch, tasks_txt,
};
use support::{fake_train, prepared, run_config, write_run};

fn local() -> LocalExecutor {
    LocalExecutor::new("test")
}

fn quiet(_: LocalEvent<'_>) {}

fn options(jobs: usize) -> LaunchOptions<'static> {
    LaunchOptions {
        dry_run: false,
        dependency: None,
        jobs: Some(jobs),
        runner: "/nonexistent/hkd-grid".into(),
        on_local_event: &quiet,
    }
}

#[test]
fn hostile_values_arrive_verbatim_and_execute_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let pwned = tmp.path().join("pwned");
    let (fake, bin) = fake_train(tmp.path(), "exit 0");
    let hostile = [
        format!("$(touch {})", pwned.display()),
        format!("`touch {}`", pwned.display()),
        format!("x'; touch {}; echo '", pwned.display()),
        "with space \"and quotes\" & | > <".to_string(),
        "-starts-with-dash".to_string(),
    ];
    let values: Vec<String> = hostile.iter().map(|h| format!("{h:?}")).collect();
    let (dir, mut manifest) = prepared(
        tmp.path(),
        &format!(
            "binary = \"hkd-train\"\n[grid]\nteacher = \"human\"\nout = [{}]\n",
            values.join(", ")
        ),
        bin,
    );
    let all: Vec<usize> = (0..manifest.tasks.len()).collect();
    let report = launch(&dir, &mut manifest, &local(), &all, &options(2)).unwrap();
    assert!(
        report.outcomes.iter().all(|o| o.exit_code == 0),
        "{:?}",
        report.outcomes
    );
    let mut outs: Vec<String> = fake
        .calls()
        .iter()
        .map(|argv| {
            argv.iter()
                .find_map(|a| a.strip_prefix("--out="))
                .unwrap()
                .to_string()
        })
        .collect();
    outs.sort();
    let mut expected = hostile.to_vec();
    expected.sort();
    assert_eq!(outs, expected);
    assert!(!pwned.exists(), "a grid value was executed by a shell");

    // tasks.txt: one line per task that a shell splits back into exactly the argv
    let text = std::fs::read_to_string(dir.file("tasks.txt")).unwrap();
    assert_eq!(text, tasks_txt(&manifest));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), hostile.len());
    for (line, task) in lines.iter().zip(&manifest.tasks) {
        let words = shlex::split(line).unwrap();
        assert_eq!(words[0], manifest.binary.path.to_string_lossy());
        assert_eq!(words[1..], task.args[..]);
    }
    // and bash itself agrees (and runs nothing)
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "for w in {}; do printf '%s\\0' \"$w\"; done",
            &lines[0][lines[0].find(' ').unwrap()..]
        ))
        .output()
        .unwrap();
    let words: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .split('\0')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    assert_eq!(words, manifest.tasks[0].args);
    assert!(!pwned.exists());
}

#[test]
fn finished_runs_are_skipped_and_others_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let (fake, bin) = fake_train(tmp.path(), "exit 0");
    let (dir, mut manifest) = prepared(
        tmp.path(),
        "binary = \"hkd-train\"\n[grid]\nteacher = \"human\"\nepochs = 2\niter = [0, 1, 2]\n",
        bin,
    );
    let runs = tmp.path().join("runs");
    let cfg = |i| run_config(TeacherSpec::Human, "resnet8", 0.5, i, 2);
    write_run(&cfg(0).run_dir_in(&runs), &cfg(0), Some(2), 0.5);
    write_run(&cfg(2).run_dir_in(&runs), &cfg(2), Some(1), 0.4);
    let report = launch(&dir, &mut manifest, &local(), &[0, 1, 2], &options(1)).unwrap();
    let actions: Vec<TaskAction> = report.outcomes.iter().map(|o| o.action).collect();
    assert_eq!(
        actions,
        [TaskAction::Skip, TaskAction::Fresh, TaskAction::Resume]
    );
    let calls = fake.calls();
    assert_eq!(
        calls.len(),
        2,
        "the finished run must not start a process: {calls:?}"
    );
    for argv in &calls {
        assert_eq!(argv.last().map(String::as_str), Some("--resume"));
        assert!(!argv.contains(&"--iter=0".to_string()));
    }
    let state = dir.read_state(0).unwrap().unwrap();
    assert_eq!((state.action.as_str(), state.exit_code), ("skip", Some(0)));
    let log = std::fs::read_to_string(dir.log_path(2)).unwrap();
    assert!(log.contains("task 2 (resume)"), "{log}");
}

#[test]
fn the_pool_runs_tasks_side_by_side() {
    let tmp = tempfile::tempdir().unwrap();
    let (_fake, bin) = fake_train(tmp.path(), "sleep 0.4");
    let (dir, mut manifest) = prepared(
        tmp.path(),
        "binary = \"hkd-train\"\n[grid]\nteacher = \"human\"\niter = [0, 1, 2, 3]\n",
        bin,
    );
    let start = Instant::now();
    launch(&dir, &mut manifest, &local(), &[0, 1, 2, 3], &options(4)).unwrap();
    let parallel = start.elapsed().as_secs_f64();
    let start = Instant::now();
    launch(&dir, &mut manifest, &local(), &[0, 1, 2, 3], &options(1)).unwrap();
    let serial = start.elapsed().as_secs_f64();
    assert!(
        serial >= 1.6,
        "4 tasks of 0.4 s one at a time took {serial:.2} s"
    );
    assert!(
        parallel < serial * 0.6,
        "4 workers took {parallel:.2} s, 1 worker {serial:.2} s"
    );
}

#[test]
fn failures_are_reported_and_resubmitted() {
    let tmp = tempfile::tempdir().unwrap();
    let flag = tmp.path().join("fixed");
    // iter=1 fails with 3 until `fixed` exists; iter=2 checkpoints (75) until then
    let body = format!(
        "if [ ! -e {f} ]; then case \" $* \" in *' --iter=1 '*) echo boom >&2; exit 3;; *' --iter=2 '*) exit 75;; esac; fi\nexit 0",
        f = shlex::try_quote(&flag.to_string_lossy()).unwrap()
    );
    let (fake, bin) = fake_train(tmp.path(), &body);
    let (dir, mut manifest) = prepared(
        tmp.path(),
        "binary = \"hkd-train\"\n[grid]\nteacher = \"human\"\niter = [0, 1, 2]\n",
        bin,
    );
    let view = SchedulerView::default();
    let before = grid_status(&dir, &manifest, &view);
    assert!(
        before.iter().all(|s| s.kind == StatusKind::NotSubmitted),
        "{before:?}"
    );

    let report = launch(&dir, &mut manifest, &local(), &[0, 1, 2], &options(2)).unwrap();
    let codes: Vec<i32> = report.outcomes.iter().map(|o| o.exit_code).collect();
    assert_eq!(codes, [0, 3, 75]);
    let log = std::fs::read_to_string(dir.log_path(1)).unwrap();
    assert!(
        log.contains("boom"),
        "the task's stderr goes to its log: {log}"
    );

    let statuses = grid_status(&dir, &manifest, &view);
    let kinds: Vec<StatusKind> = statuses.iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        [StatusKind::Done, StatusKind::Failed, StatusKind::Failed]
    );
    assert_eq!(statuses[1].detail, "exit 3");
    assert!(
        statuses[2].detail.contains("checkpointed"),
        "{}",
        statuses[2].detail
    );
    assert_eq!(failed_tasks(&dir, &manifest), [1, 2]);

    std::fs::write(&flag, "").unwrap();
    let calls_before = fake.calls().len();
    let failed = failed_tasks(&dir, &manifest);
    let report = launch(&dir, &mut manifest, &local(), &failed, &options(2)).unwrap();
    assert!(report.outcomes.iter().all(|o| o.exit_code == 0));
    assert_eq!(
        fake.calls().len(),
        calls_before + 2,
        "only the failed tasks run again"
    );
    assert!(failed_tasks(&dir, &manifest).is_empty());
    assert_eq!(manifest.submissions.len(), 2);
    let reread = dir.read_manifest().unwrap();
    assert_eq!(reread.submissions.len(), 2);
    assert_eq!(reread.submissions[1].jobs[0].tasks, [1, 2]);
}

#[test]
fn an_interrupted_task_counts_as_failed() {
    let tmp = tempfile::tempdir().unwrap();
    let (_fake, bin) = fake_train(tmp.path(), "exit 0");
    let (dir, mut manifest) = prepared(
        tmp.path(),
        "binary = \"hkd-train\"\n[grid]\nteacher = \"human\"\niter = [0, 1]\n",
        bin,
    );
    launch(&dir, &mut manifest, &local(), &[0], &options(1)).unwrap();
    // task 0 looks as if hkd-grid was killed while it ran (the submission names a
    // process that is gone: this test's own process ran the grid in-process)
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    manifest.submissions[0].local_process = Some(format!(
        "process {dead} on {} since 2026-12-07T00:00:00Z",
        hkd_rundir::host_name()
    ));
    dir.write_manifest(&manifest).unwrap();
    let mut state = dir.read_state(0).unwrap().unwrap();
    state.ended = None;
    state.exit_code = None;
    dir.write_state(&state).unwrap();
    let statuses = grid_status(&dir, &manifest, &SchedulerView::default());
    assert_eq!(statuses[0].kind, StatusKind::Failed);
    assert!(
        statuses[0].detail.contains("killed"),
        "{}",
        statuses[0].detail
    );
    // task 1 was never part of a submission
    assert_eq!(statuses[1].kind, StatusKind::NotSubmitted);
}

/// A finished run whose stored specification differs from its task's is not skipped: the
/// task runs (hkd-train then refuses it, here a fake exiting 1), and its status must say
/// failed (a finished run directory does not make a failed task done), so that
/// `resubmit --failed` finds it.
#[test]
fn a_refused_finished_run_counts_as_failed() {
    let tmp = tempfile::tempdir().unwrap();
    let (fake, bin) = fake_train(
        tmp.path(),
        "echo 'cannot resume: its config.toml differs from the settings given in lr: 0.05 -> 0.1' >&2; exit 1",
    );
    let (dir, mut manifest) = prepared(
        tmp.path(),
        "binary = \"hkd-train\"\n[grid]\nteacher = \"human\"\nepochs = 2\niter = [0]\n",
        bin,
    );
    let mut cfg = run_config(TeacherSpec::Human, "resnet8", 0.5, 0, 2);
    let place = cfg.run_dir_in(&tmp.path().join("runs"));
    cfg.spec.optimizer.lr = 0.05;
    write_run(&place, &cfg, Some(2), 0.5);
    let report = launch(&dir, &mut manifest, &local(), &[0], &options(1)).unwrap();
    assert_eq!(report.outcomes[0].action, TaskAction::Run);
    assert_eq!(report.outcomes[0].exit_code, 1);
    assert_eq!(fake.calls().len(), 1, "the task ran");
    let statuses = grid_status(&dir, &manifest, &SchedulerView::default());
    assert_eq!(
        (statuses[0].kind, statuses[0].detail.as_str()),
        (StatusKind::Failed, "exit 1"),
        "{statuses:?}"
    );
    assert_eq!(failed_tasks(&dir, &manifest), [0]);
}
