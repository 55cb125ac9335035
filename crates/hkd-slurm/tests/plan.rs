//! Working out a train task's run directory and what the runner does with it.

mod support;

use hkd_rundir::{RunDir, TeacherSpec};
use hkd_slurm::{TaskAction, plan_task, train_run_dir};
use support::{fake_train, prepared, run_config, write_run};

#[test]
fn run_dir_uses_the_grid_values_and_the_binary_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    let (_fake, bin) = fake_train(tmp.path(), "exit 0");
    let (_dir, manifest) = prepared(
        tmp.path(),
        "binary = \"hkd-train\"\n[grid]\nout = \"runs x\"\nteacher = [\"baseline\", \"human\"]\nlambda = 0.2\ndistil-fn = \"KD\"\n",
        bin.clone(),
    );
    let run = train_run_dir(&bin, &manifest.tasks[0], tmp.path()).unwrap();
    assert_eq!(
        run.path(),
        tmp.path()
            .join("runs x/baseline/resnet8")
            .join("student_resnet8_distil_fn_KL_temperature_h_1.0_temperature_t_1.0_lambda_0.2_gamma_0.0_iter_0")
    );
    let run = train_run_dir(&bin, &manifest.tasks[1], tmp.path()).unwrap();
    assert!(
        run.path()
            .starts_with(tmp.path().join("runs x/human/resnet8"))
    );
}

#[test]
fn teacher_runs_and_best_of_a_grid_give_the_teacher_slug() {
    let tmp = tempfile::tempdir().unwrap();
    let (_fake, bin) = fake_train(tmp.path(), "exit 0");
    // two finished teachers; the second is better
    let teachers = tmp.path().join("teachers");
    for (iter, acc) in [(0u32, 0.41), (1, 0.52)] {
        let cfg = run_config(TeacherSpec::Human, "resnet20", 1.0, iter, 2);
        let run = RunDir::in_output(&teachers, "human", "resnet20", &cfg.run_name);
        write_run(&run, &cfg, Some(2), acc);
    }
    let best_cfg = run_config(TeacherSpec::Human, "resnet20", 1.0, 1, 2);
    let slug = hkd_rundir::teacher_slug(&best_cfg);
    assert_eq!(slug, "human-resnet20-KL-th1.0-tt1.0-l1.0-g0.0-i1");
    let direct = RunDir::in_output(&teachers, "human", "resnet20", &best_cfg.run_name);
    let (_dir, manifest) = prepared(
        tmp.path(),
        &format!(
            "binary = \"hkd-train\"\n[grid]\nout = \"students\"\nteacher = [\"best:teachers\", {:?}, \"best:nothing-here\", \"teachers/w.safetensors\"]\n",
            direct.path().to_string_lossy()
        ),
        bin.clone(),
    );
    for task in &manifest.tasks[..2] {
        let run = train_run_dir(&bin, task, tmp.path()).unwrap();
        assert!(
            run.path()
                .starts_with(tmp.path().join("students").join(&slug).join("resnet8")),
            "{}",
            run.path().display()
        );
    }
    let why = train_run_dir(&bin, &manifest.tasks[2], tmp.path()).unwrap_err();
    assert!(why.contains("best:nothing-here"), "{why}");
    let why = train_run_dir(&bin, &manifest.tasks[3], tmp.path()).unwrap_err();
    assert!(why.contains("not a run directory"), "{why}");
    // an unknown run directory still runs, with --resume, and says why
    let plan = plan_task(&bin, &manifest.tasks[3], tmp.path());
    assert_eq!(plan.action, TaskAction::Run);
    assert_eq!(plan.argv.last().map(String::as_str), Some("--resume"));
    assert!(plan.unknown_because.is_some());
}

#[test]
fn the_action_follows_the_run_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let (_fake, bin) = fake_train(tmp.path(), "exit 0");
    let (_dir, manifest) = prepared(
        tmp.path(),
        "binary = \"hkd-train\"\n[grid]\nout = \"runs\"\nteacher = \"human\"\nepochs = 3\niter = [0, 1, 2, 3]\n",
        bin.clone(),
    );
    let runs = tmp.path().join("runs");
    let cfg = |iter| run_config(TeacherSpec::Human, "resnet8", 0.5, iter, 3);
    let at = |iter: u32| RunDir::in_output(&runs, "human", "resnet8", &cfg(iter).run_name);
    // iter 0: nothing; 1: finished; 2: checkpoint after epoch 1; 3: started, no checkpoint
    write_run(&at(1), &cfg(1), Some(3), 0.5);
    write_run(&at(2), &cfg(2), Some(1), 0.3);
    write_run(&at(3), &cfg(3), None, 0.0);
    let plans: Vec<_> = manifest
        .tasks
        .iter()
        .map(|t| plan_task(&bin, t, tmp.path()))
        .collect();
    let actions: Vec<TaskAction> = plans.iter().map(|p| p.action).collect();
    assert_eq!(
        actions,
        [
            TaskAction::Fresh,
            TaskAction::Skip,
            TaskAction::Resume,
            TaskAction::Restart
        ]
    );
    for (i, plan) in plans.iter().enumerate() {
        assert_eq!(
            plan.run_dir.as_ref().map(|r| r.path().to_path_buf()),
            Some(at(i as u32).path().to_path_buf())
        );
        assert_eq!(plan.argv[0], bin.path.to_string_lossy());
        let resumes = plan.argv.iter().filter(|a| *a == "--resume").count();
        assert_eq!(resumes, usize::from(i != 1), "task {i}: {:?}", plan.argv);
    }
}

#[test]
fn explicit_overwrite_or_config_is_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let (_fake, bin) = fake_train(tmp.path(), "exit 0");
    let (_dir, manifest) = prepared(
        tmp.path(),
        "binary = \"hkd-train\"\n[grid]\nteacher = \"baseline\"\noverwrite = [true, false]\n",
        bin.clone(),
    );
    let cfg = run_config(TeacherSpec::Baseline, "resnet8", 0.5, 0, 500);
    let run = RunDir::in_output(
        &tmp.path().join("runs"),
        "baseline",
        "resnet8",
        &cfg.run_name,
    );
    write_run(&run, &cfg, Some(500), 0.9);
    let overwrite = plan_task(&bin, &manifest.tasks[0], tmp.path());
    assert_eq!(overwrite.action, TaskAction::Run);
    assert!(overwrite.argv.contains(&"--overwrite".to_string()));
    assert!(!overwrite.argv.contains(&"--resume".to_string()));
    let plain = plan_task(&bin, &manifest.tasks[1], tmp.path());
    assert_eq!(plain.action, TaskAction::Skip);

    let (_dir, manifest) = prepared(
        tmp.path(),
        "binary = \"hkd-train\"\n[grid]\nconfig = \"run.toml\"\n",
        bin.clone(),
    );
    let why = train_run_dir(&bin, &manifest.tasks[0], tmp.path()).unwrap_err();
    assert!(why.contains("--config"), "{why}");
}
