//! A task whose binary fails while its run directory is finished (hkd-train refusing a
//! finished run of another specification; here a fake exiting 1) is `failed`, not `done`:
//! `hkd-grid status` says so and `resubmit --failed` selects it.

mod common;

use common::{Fake, hkd_grid, only_grid, run};
use hkd_rundir::{RunConfig, RunSpec, RunState, TeacherSpec};

#[test]
fn a_failed_task_with_a_finished_run_is_failed_and_resubmitted() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = Fake::new(
        tmp.path(),
        "hkd-train",
        "echo 'hkd-train: error: cannot resume: its config.toml differs from the settings given in lr: 0.05 -> 0.1' >&2; exit 1",
    );
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(
        work.join("g.toml"),
        "binary = \"hkd-train\"\nexecutor = \"local\"\n[grid]\nteacher = \"human\"\nout = \"runs\"\nepochs = 2\n",
    )
    .unwrap();
    // the finished run where the task's run lies, of another learning rate
    let mut spec = RunSpec::default();
    spec.teacher.teacher = "human".into();
    spec.training.epochs = 2;
    let mut config = RunConfig::new(spec, TeacherSpec::Human, 10, "0", "cpu");
    let run_dir = config.run_dir_in(&work.join("runs"));
    config.spec.optimizer.lr = 0.05;
    run_dir.create().unwrap();
    run_dir.write_config(&config).unwrap();
    run_dir
        .write_state(&RunState {
            epochs_completed: 2,
            batches_into_epoch: 0,
            epochs: 2,
            finished: true,
            trainer: serde_json::Value::Null,
        })
        .unwrap();
    assert!(run_dir.is_finished());

    let grid_cmd = || {
        let mut cmd = hkd_grid();
        cmd.current_dir(&work)
            .env("HKD_BIN_DIR", fake.path.parent().unwrap());
        cmd
    };
    let (code, _, stderr) = run(grid_cmd().args(["g.toml"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("1 tasks: 0 ok"), "{stderr}");
    assert_eq!(fake.calls().len(), 1, "the task ran, it was not skipped");
    let grid = only_grid(&work.join("grids"));
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(grid.join("state/task-0.json")).unwrap())
            .unwrap();
    assert_eq!(state["run_dir"], run_dir.path().to_str().unwrap());
    assert_eq!(state["exit_code"], 1);

    let (code, table, stderr) = run(grid_cmd().args(["status"]).arg(&grid));
    assert_eq!(code, 0, "{stderr}");
    assert!(table.contains("1 tasks: 1 failed"), "{table}");
    let (_, json, _) = run(grid_cmd().args(["status", "--json"]).arg(&grid));
    let status: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(status[0]["kind"], "failed", "{status}");
    assert_eq!(status[0]["detail"], "exit 1", "{status}");

    let (code, _, stderr) = run(grid_cmd().args(["resubmit", "--failed"]).arg(&grid));
    assert!(
        stderr.contains("resubmitting 1 failed tasks (0)"),
        "{stderr}"
    );
    assert_eq!(code, 1, "the task fails again: {stderr}");
    assert_eq!(fake.calls().len(), 2, "resubmit --failed ran it again");
    let (_, table, _) = run(grid_cmd().args(["status"]).arg(&grid));
    assert!(table.contains("1 tasks: 1 failed"), "{table}");
}
