//! Working out a train task's run directory and what the runner does with it.

mod support;

use hkd_rundir::{RunDir, RunSpec, TeacherSpec};
use std::path::Path;

use hkd_slurm::{Task, TaskAction, check_tasks, plan_task, train_run_dir};
use support::{fake_train, prepared, run_config, spec, write_run};

#[test]
fn run_dir_uses_the_grid_values_and_the_binary_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    let (_fake, bin) = fake_train(tmp.path(), "exit 0");
    let (_dir, manifest) = prepared(
        tmp.path(),
        "binary = \"hkd-train\"\n[grid]\nout = \"runs x\"\nteacher = [\"baseline\", \"human\"]\nlambda = 0.2\ndistil-fn = \"KD\"\n",
        bin.clone(),
    );
    // every other setting at its default: the original project's name, exactly
    let (run, same) = train_run_dir(&manifest.tasks[0], tmp.path()).unwrap();
    assert_eq!(
        run.path(),
        tmp.path()
            .join("runs x/baseline/resnet8")
            .join("student_resnet8_distil_fn_KL_temperature_h_1.0_temperature_t_1.0_lambda_0.2_gamma_0.0_iter_0")
    );
    assert!(same, "no run there yet: nothing differs");
    let (run, _) = train_run_dir(&manifest.tasks[1], tmp.path()).unwrap();
    assert!(
        run.path()
            .starts_with(tmp.path().join("runs x/human/resnet8"))
    );
}

#[test]
fn settings_beyond_the_original_name_give_their_own_run_dirs() {
    let tmp = tempfile::tempdir().unwrap();
    let (_fake, bin) = fake_train(tmp.path(), "exit 0");
    let (_dir, manifest) = prepared(
        tmp.path(),
        "binary = \"hkd-train\"\n[grid]\nteacher = \"human\"\nlr = [0.1, 0.01]\nkl-reduction = [\"batchmean\", \"elementwise_mean\"]\nseed = 3\n",
        bin,
    );
    let dirs: Vec<RunDir> = manifest
        .tasks
        .iter()
        .map(|t| train_run_dir(t, tmp.path()).unwrap().0)
        .collect();
    for (i, run) in dirs.iter().enumerate() {
        for other in &dirs[i + 1..] {
            assert_ne!(run.path(), other.path());
        }
    }
    // task 0: kl-reduction=batchmean, lr=0.1 (sorted keys, the last fastest)
    let mut expected = RunSpec {
        seed: 3,
        ..RunSpec::default()
    };
    expected.loss.as_hkd_mut().unwrap().kl_reduction = hkd_rundir::KlReduction::BatchMean;
    assert_eq!(
        dirs[0].path(),
        tmp.path()
            .join("runs/human/resnet8")
            .join(expected.run_name())
    );
    // the format of the suffix, pinned once: top-level keys first, then the sections
    assert!(
        dirs[0]
            .path()
            .to_string_lossy()
            .ends_with("_iter_0+seed=3+kl_reduction=batchmean"),
        "{}",
        dirs[0].path().display()
    );
    // task 3: kl-reduction=elementwise_mean (the default), lr=0.01
    assert!(
        dirs[3]
            .path()
            .to_string_lossy()
            .ends_with("_iter_0+seed=3+lr=0.01"),
        "{}",
        dirs[3].path().display()
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
        write_run(&cfg.run_dir_in(&teachers), &cfg, Some(2), acc);
    }
    let best_cfg = run_config(TeacherSpec::Human, "resnet20", 1.0, 1, 2);
    let slug = best_cfg.teacher_slug();
    assert_eq!(slug, "human-resnet20-KL-th1.0-tt1.0-l1.0-g0.0-i1+epochs=2");
    let direct = best_cfg.run_dir_in(&teachers);
    let task = |index: usize, teacher: &str| Task {
        index,
        args: vec!["--out=students".into(), format!("--teacher={teacher}")],
        positional: 0,
    };
    let tasks = [
        task(0, "best:teachers"),
        task(1, &direct.path().to_string_lossy()),
        task(2, "best:nothing-here"),
        task(3, "teachers/w.safetensors"),
    ];
    for task in &tasks[..2] {
        let (run, _) = train_run_dir(task, tmp.path()).unwrap();
        assert!(
            run.path()
                .starts_with(tmp.path().join("students").join(&slug).join("resnet8")),
            "{}",
            run.path().display()
        );
    }
    let why = train_run_dir(&tasks[2], tmp.path()).unwrap_err();
    assert!(
        why.contains("best:") && why.contains("nothing-here is not a directory"),
        "{why}"
    );
    let why = train_run_dir(&tasks[3], tmp.path()).unwrap_err();
    assert!(why.contains("does not exist"), "{why}");
    // two names of one teacher are one run: a grid of both is refused up front; so are
    // teachers that are not there (no earlier pipeline stage writes them here)
    let err = check_tasks(&tasks, &bin, tmp.path(), Path::new("g.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("3 of 4 tasks")
            && err.contains("task 1 (")
            && err.contains("same run as task 0")
            && err.contains("task 2 (")
            && err.contains("nothing-here is not a directory")
            && err.contains("task 3 (")
            && err.contains("w.safetensors does not exist"),
        "{err}"
    );
    // an unknown run directory still runs, with --resume, and says why
    let plan = plan_task(&bin, &tasks[3], tmp.path());
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
    let at = |iter: u32| cfg(iter).run_dir_in(&runs);
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
fn a_finished_run_of_another_specification_is_not_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let (_fake, bin) = fake_train(tmp.path(), "exit 0");
    let (_dir, manifest) = prepared(
        tmp.path(),
        "binary = \"hkd-train\"\n[grid]\nteacher = \"human\"\nepochs = 2\niter = [0, 1]\n",
        bin.clone(),
    );
    let runs = tmp.path().join("runs");
    // iter 0: finished, same specification; iter 1: finished at the same place, but its
    // stored specification has another learning rate
    let same = run_config(TeacherSpec::Human, "resnet8", 0.5, 0, 2);
    write_run(&same.run_dir_in(&runs), &same, Some(2), 0.5);
    let mut other = run_config(TeacherSpec::Human, "resnet8", 0.5, 1, 2);
    let place = other.run_dir_in(&runs);
    other.spec.optimizer.lr = 0.05;
    write_run(&place, &other, Some(2), 0.5);

    let (run, same_spec) = train_run_dir(&manifest.tasks[0], tmp.path()).unwrap();
    assert_eq!(run.path(), same.run_dir_in(&runs).path());
    assert!(same_spec);
    let (run, same_spec) = train_run_dir(&manifest.tasks[1], tmp.path()).unwrap();
    assert_eq!(run.path(), place.path());
    assert!(!same_spec, "the stored lr differs");

    assert_eq!(
        plan_task(&bin, &manifest.tasks[0], tmp.path()).action,
        TaskAction::Skip
    );
    // runs with --resume, so that hkd-train refuses it naming the differing key
    let plan = plan_task(&bin, &manifest.tasks[1], tmp.path());
    assert_eq!(plan.action, TaskAction::Run);
    assert_eq!(plan.argv.last().map(String::as_str), Some("--resume"));

    // another resolved teacher at the same place is another run too
    let mut baseline_teacher = run_config(TeacherSpec::Baseline, "resnet8", 0.5, 0, 2);
    let (_dir, manifest) = prepared(
        tmp.path(),
        "binary = \"hkd-train\"\n[grid]\nteacher = \"baseline\"\nepochs = 2\n",
        bin.clone(),
    );
    let place = baseline_teacher.run_dir_in(&runs);
    baseline_teacher.teacher = TeacherSpec::Human;
    write_run(&place, &baseline_teacher, Some(2), 0.5);
    let (run, same_spec) = train_run_dir(&manifest.tasks[0], tmp.path()).unwrap();
    assert_eq!(run.path(), place.path());
    assert!(!same_spec, "the stored teacher differs");
}

#[test]
fn explicit_overwrite_is_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let (_fake, bin) = fake_train(tmp.path(), "exit 0");
    let cfg = run_config(TeacherSpec::Baseline, "resnet8", 0.5, 0, 500);
    write_run(
        &cfg.run_dir_in(&tmp.path().join("runs")),
        &cfg,
        Some(500),
        0.9,
    );
    let grid = |overwrite: &str| {
        prepared(
            tmp.path(),
            &format!("binary = \"hkd-train\"\n[grid]\nteacher = \"baseline\"\n{overwrite}"),
            bin.clone(),
        )
        .1
    };
    let overwrite = plan_task(&bin, &grid("overwrite = true\n").tasks[0], tmp.path());
    assert_eq!(overwrite.action, TaskAction::Run);
    assert!(overwrite.argv.contains(&"--overwrite".to_string()));
    assert!(!overwrite.argv.contains(&"--resume".to_string()));
    let plain = plan_task(&bin, &grid("").tasks[0], tmp.path());
    assert_eq!(plain.action, TaskAction::Skip);
    // with and without --overwrite in one grid: the same run twice, refused
    let config_path = tmp.path().join("both.toml");
    std::fs::write(
        &config_path,
        "binary = \"hkd-train\"\n[grid]\nteacher = \"baseline\"\noverwrite = [true, false]\n",
    )
    .unwrap();
    let config = hkd_slurm::GridConfig::load(&config_path).unwrap();
    let tasks = hkd_slurm::expand(&config, &bin, &config_path).unwrap();
    let err = check_tasks(&tasks, &bin, tmp.path(), &config_path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("task 1") && err.contains("same run as task 0"),
        "{err}"
    );
}

#[test]
fn a_config_file_of_the_task_is_read_in_its_work_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let (_fake, bin) = fake_train(tmp.path(), "exit 0");
    std::fs::write(
        tmp.path().join("run.toml"),
        "teacher = \"human\"\nepochs = 3\n[loss]\nlambda = 0.9\n",
    )
    .unwrap();
    let (_dir, manifest) = prepared(
        tmp.path(),
        "binary = \"hkd-train\"\n[grid]\nconfig = \"run.toml\"\nepochs = [4]\n",
        bin.clone(),
    );
    // the file's settings, the grid's over them
    let (run, _) = train_run_dir(&manifest.tasks[0], tmp.path()).unwrap();
    let expected = spec("resnet8", 0.9, 0, 4);
    assert_eq!(
        run.path(),
        tmp.path()
            .join("runs/human/resnet8")
            .join(expected.run_name())
    );
    // a missing config file: the run directory is unknown, and the reason names the file
    let task = Task {
        index: 0,
        args: vec!["--config=missing.toml".into()],
        positional: 0,
    };
    let why = train_run_dir(&task, tmp.path()).unwrap_err();
    assert!(why.contains("missing.toml"), "{why}");
    let plan = plan_task(&bin, &task, tmp.path());
    assert_eq!(plan.action, TaskAction::Run);
    assert!(plan.unknown_because.is_some());
}
