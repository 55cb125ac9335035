//! Checking a grid before anything is written: every task is parsed in-process with the
//! binary's own command line (`hkd_rundir::cli`), and every refused task of the whole grid
//! is reported at once, naming its index and key; no grid directory is created.

use std::path::{Path, PathBuf};

use hkd_slurm::{BinaryInfo, GridConfig, Task, check_tasks, create_and_prepare, expand};

/// A binary at a path that does not exist: nothing is ever run here.
fn binary(config: &GridConfig) -> BinaryInfo {
    BinaryInfo::at(
        config.binary,
        Path::new("/nonexistent/bin")
            .join(config.binary.file_name())
            .as_path(),
        config.subcommand.as_deref(),
    )
}

struct Attempt {
    _tmp: tempfile::TempDir,
    grids: PathBuf,
    result: hkd_slurm::Result<Vec<Task>>,
}

impl Attempt {
    fn error(&self) -> String {
        match &self.result {
            Ok(tasks) => panic!("the grid was accepted: {tasks:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn nothing_written(&self) {
        assert!(
            !self.grids.exists(),
            "a grid directory was created for a refused grid"
        );
    }
}

/// Loads `text` as `<tmp>/g.toml` and prepares it under `<tmp>/grids` (work directory
/// `<tmp>`), the way `hkd-grid g.toml` does.
fn attempt(text: &str) -> Attempt {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("g.toml");
    std::fs::write(&path, text).unwrap();
    let grids = tmp.path().join("grids");
    let result = GridConfig::load(&path).and_then(|config| {
        let bin = binary(&config);
        create_and_prepare(config, &path, bin, &grids, tmp.path()).map(|(_, m)| m.tasks)
    });
    Attempt {
        _tmp: tmp,
        grids,
        result,
    }
}

fn train(grid: &str) -> Attempt {
    attempt(&format!("binary = \"hkd-train\"\n[grid]\n{grid}"))
}

#[test]
fn every_refused_task_is_reported_with_its_index_and_key() {
    // keys sorted (momentum, scheduler), the last fastest:
    // 0: 0.9 plateau, 1: 0.9 sgdr, 2: 2 plateau, 3: 2 sgdr
    let a = train("scheduler = [\"plateau\", \"sgdr\"]\nmomentum = [0.9, 2]\n");
    let e = a.error();
    a.nothing_written();
    assert!(e.contains("g.toml"), "{e}");
    assert!(
        e.contains("3 of 4 tasks would be refused by hkd-train; nothing was submitted"),
        "{e}"
    );
    let line = |index: usize| {
        e.lines()
            .find(|l| l.trim_start().starts_with(&format!("task {index} (")))
            .unwrap_or_else(|| panic!("task {index} is not named: {e}"))
            .to_string()
    };
    assert!(
        !e.contains("task 0 ("),
        "task 0 is valid and must not be listed: {e}"
    );
    let t1 = line(1);
    assert!(
        t1.contains("--momentum=0.9 --scheduler=sgdr") && t1.contains("key `scheduler`"),
        "{t1}"
    );
    assert!(
        t1.contains("sgdr") && t1.contains("plateau, step, cosine"),
        "{t1}"
    );
    let t2 = line(2);
    assert!(
        t2.contains("key `momentum`") && t2.contains("[0, 1)"),
        "{t2}"
    );
    assert!(line(3).contains("key `"), "{e}");
}

#[test]
fn long_lists_of_refused_tasks_are_cut_with_a_count() {
    let values: Vec<String> = (1..=25).map(|i| format!("-{i}")).collect();
    let a = train(&format!("lr = [{}]\n", values.join(", ")));
    let e = a.error();
    a.nothing_written();
    assert!(e.contains("25 of 25 tasks"), "{e}");
    assert!(e.contains("task 19 (") && !e.contains("task 20 ("), "{e}");
    assert!(e.contains("… and 5 more"), "{e}");
}

#[test]
fn unknown_keys_get_a_suggestion_from_the_real_flags() {
    let a = train("lamda = [0.5, 1.0]\n");
    let e = a.error();
    a.nothing_written();
    assert!(e.contains("g.toml"), "{e}");
    assert!(e.contains("`lamda` is not a flag of hkd-train"), "{e}");
    assert!(e.contains("Did you mean `lambda`"), "{e}");
    // `_` for `-`, as in config files
    let e = train("kl_reduction = [\"batchmean\"]\n").error();
    assert!(e.contains("Did you mean `kl-reduction`"), "{e}");
    // flags added by the refactor are known without asking any binary
    for key in [
        "lr",
        "momentum",
        "scheduler",
        "kl-reduction",
        "max-batches",
        "seed",
    ] {
        let a = train(&format!("{key} = 1\n"));
        if let Err(e) = &a.result {
            assert!(!e.to_string().contains("is not a flag"), "{key}: {e}");
        }
    }
    let e = train("help = [true]\n").error();
    assert!(e.contains("would only print text"), "{e}");
}

#[test]
fn switches_take_booleans_and_value_flags_take_values() {
    let a = train("resume = [\"yes\"]\n");
    let e = a.error();
    a.nothing_written();
    assert!(
        e.contains("`resume`") && e.contains("is a switch") && e.contains("true or false"),
        "{e}"
    );
    let e = train("overwrite = [[true, false]]\n").error();
    assert!(e.contains("is a switch"), "{e}");
    // a boolean for a value flag reaches the parser as text, and is refused there
    let e = train("lambda = [true]\n").error();
    assert!(e.contains("task 0") && e.contains("key `lambda`"), "{e}");
    // a switch set true/false is present/absent
    let a = train("teacher = \"baseline\"\nresume = [true]\n");
    let tasks = a.result.as_ref().unwrap();
    assert_eq!(tasks[0].args, ["--resume", "--teacher=baseline"]);
}

#[test]
fn a_nested_list_is_one_value_only_for_list_flags() {
    let a = train("lambda = [[0.5, 1.0]]\n");
    let e = a.error();
    a.nothing_written();
    assert!(
        e.contains("`lambda`") && e.contains("takes one value") && e.contains("flat list"),
        "{e}"
    );
    let a = train("scheduler = \"step\"\nstep-milestones = [[0.3, 0.6], [0.5]]\n");
    let tasks = a.result.as_ref().unwrap();
    assert_eq!(
        tasks[0].args,
        ["--scheduler=step", "--step-milestones=0.3,0.6"]
    );
    assert_eq!(tasks[1].args, ["--scheduler=step", "--step-milestones=0.5"]);
    // a list flag's values are checked too: milestones out of order
    let e = train("step-milestones = [[0.6, 0.3]]\n").error();
    assert!(
        e.contains("task 0") && e.contains("key `step-milestones`"),
        "{e}"
    );
}

#[test]
fn the_same_run_twice_is_refused_up_front() {
    let a = train("lambda = [1, 1.0]\n");
    let e = a.error();
    a.nothing_written();
    assert!(
        e.contains("1 of 2 tasks") && e.contains("task 1 (--lambda=1.0)"),
        "{e}"
    );
    assert!(e.contains("same run as task 0"), "{e}");
    // spelled differently, parsed the same: the alias KD of KL, an explicit default
    let e = train("distil-fn = [\"KL\", \"KD\"]\n").error();
    assert!(
        e.contains("task 1") && e.contains("same run as task 0"),
        "{e}"
    );
    let e = train("lr = [0.1]\nseed = [0, 1, 0]\n").error();
    assert!(
        e.contains("task 2") && e.contains("same run as task 0"),
        "{e}"
    );
    // the same settings in another output directory are another run
    let a = train("out = [\"a\", \"b\"]\nlambda = 1\n");
    assert_eq!(a.result.as_ref().unwrap().len(), 2);
}

#[test]
fn relative_paths_of_a_task_resolve_in_the_work_directory() {
    // `out` relative in one task and absolute in the other: one place, one run
    let tmp = tempfile::tempdir().unwrap();
    let config = GridConfig::from_toml_str(
        "binary = \"hkd-train\"\n[grid]\nout = [\"runs\", \"./runs\"]\n",
        Path::new("g.toml"),
    )
    .unwrap();
    let bin = binary(&config);
    let tasks = expand(&config, &bin, Path::new("g.toml")).unwrap();
    let runs = tmp.path().join("runs");
    let absolute = format!("--out={}", runs.display());
    let mixed = [
        tasks[0].clone(),
        Task {
            index: 1,
            args: vec![absolute],
            positional: 0,
        },
    ];
    let e = check_tasks(&mixed, &bin, tmp.path(), Path::new("g.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("same run as task 0"), "{e}");
}

/// `runs` and `./runs` are one directory, so the two tasks are one run and would race
/// for its lock. Library bug (reported): `TeacherCache::identity_key` compares the output
/// directory as text, joined but not normalised.
#[test]
fn the_same_output_directory_spelled_twice_is_the_same_run() {
    let e = train("out = [\"runs\", \"./runs\"]\n").error();
    assert!(
        e.contains("task 1") && e.contains("same run as task 0"),
        "{e}"
    );
}

#[test]
fn evaluation_grids_are_checked_with_hkd_eval_run() {
    let eval = |grid: &str| {
        attempt(&format!(
            "binary = \"hkd-eval\"\nsubcommand = \"run\"\nargs = [\"runs\"]\n[grid]\n{grid}"
        ))
    };
    let a = eval("weights = [\"best\", \"worst\"]\n");
    let e = a.error();
    a.nothing_written();
    assert!(
        e.contains("1 of 2 tasks would be refused by hkd-eval"),
        "{e}"
    );
    assert!(
        e.contains("task 1 (--weights=worst)") && e.contains("worst"),
        "{e}"
    );
    assert!(!e.contains("task 0"), "{e}");
    let a = eval("weights = [\"best\", \"last\"]\nforce = true\nshard = [\"1/2\", \"2/2\"]\n");
    let tasks = a.result.as_ref().unwrap();
    assert_eq!(tasks.len(), 4);
    assert_eq!(
        tasks[0].args,
        ["run", "runs", "--force", "--shard=1/2", "--weights=best"]
    );
    assert_eq!(
        tasks[0].flag_args(),
        ["--force", "--shard=1/2", "--weights=best"]
    );
    // the global flags of hkd-eval are accepted after the subcommand, and checked
    let e = eval("threads = [1, 0]\ndevice = \"cpu\"\n").error();
    assert!(e.contains("task 1") && !e.contains("task 0"), "{e}");
    // unknown keys: the subcommand's flags are the known ones
    let e = eval("wieghts = [\"best\"]\n").error();
    assert!(
        e.contains("`wieghts` is not a flag of hkd-eval") && e.contains("Did you mean `weights`"),
        "{e}"
    );
    // repeated flags from an inner list
    let tasks = eval("set = [[\"a=x\", \"b=y\"]]\n").result.unwrap();
    assert_eq!(tasks[0].args, ["run", "runs", "--set=a=x", "--set=b=y"]);
}

#[test]
fn evaluation_needs_a_known_subcommand() {
    let e = attempt("binary = \"hkd-eval\"\nargs = [\"runs\"]\n").error();
    assert!(e.contains("needs a subcommand") && e.contains("run"), "{e}");
    let e = attempt("binary = \"hkd-eval\"\nsubcommand = \"evaluate\"\n").error();
    assert!(
        e.contains("no subcommand `evaluate`") && e.contains("run, predict"),
        "{e}"
    );
    let e = attempt("binary = \"hkd-train\"\nsubcommand = \"run\"\n").error();
    assert!(e.contains("has no subcommand"), "{e}");
}

#[test]
fn analysis_grids_are_checked_with_hkd_analyze() {
    let analyze = |grid: &str| {
        attempt(&format!(
            "binary = \"hkd-analyze\"\nargs = [\"runs\"]\n[grid]\n{grid}"
        ))
    };
    let a = analyze("top = [5, \"many\"]\n");
    let e = a.error();
    a.nothing_written();
    assert!(
        e.contains("1 of 2 tasks would be refused by hkd-analyze")
            && e.contains("task 1 (--top=many)"),
        "{e}"
    );
    let tasks = analyze("group-by = [[\"lambda\", \"gamma\"]]\nno-figures = true\n")
        .result
        .unwrap();
    assert_eq!(
        tasks[0].args,
        ["runs", "--group-by=lambda,gamma", "--no-figures"]
    );
    let e = analyze("figures = [false]\n").error();
    assert!(e.contains("`figures` is not a flag of hkd-analyze"), "{e}");
    // the positional DIR is required by hkd-analyze: a grid without it is refused
    let e = attempt("binary = \"hkd-analyze\"\n[grid]\ntop = 3\n").error();
    assert!(e.contains("task 0"), "{e}");
}

#[test]
fn objective_settings_belong_to_their_objective_in_a_grid() {
    // A setting of another objective: every task is refused, naming the owner.
    let a = train("objective = \"kd\"\nbeta-nckd = [4, 8]\n");
    let e = a.error();
    a.nothing_written();
    assert!(e.contains("2 of 2 tasks"), "{e}");
    assert!(e.contains("`beta_nckd`") && e.contains("`dkd`"), "{e}");
    // The default objective is hkd: its settings only.
    let e = train("gamma-intra = [1, 2]\n").error();
    assert!(e.contains("`gamma_intra`") && e.contains("`dist`"), "{e}");

    // Objectives as an axis, with a setting they share: 2 × 2 distinct runs.
    let a = train("objective = [\"kd\", \"dkd\"]\ntemperature = [2, 4]\n");
    let tasks = a.result.as_ref().unwrap();
    assert_eq!(tasks.len(), 4);
    // A grid over every setting of one objective.
    let a = train(
        "objective = \"dkd\"\nalpha-tckd = [0, 1]\nbeta-nckd = [1, 8]\nwarmup-epochs = [0, 20]\nlogit-std = [false, true]\nce-weight = [0.5, 1]\n",
    );
    assert_eq!(a.result.as_ref().unwrap().len(), 32);
    let a = train(
        "objective = \"dist\"\nteacher = \"human\"\nbeta-inter = [0, 1]\ngamma-intra = [1, 2]\nhuman-smoothing = [0.001, 0.02]\n",
    );
    assert_eq!(a.result.as_ref().unwrap().len(), 8);
}

#[test]
fn a_grid_over_a_setting_that_cannot_change_the_result_is_refused() {
    // γ with --teacher human: the target is the human distributions alone.
    let a = train("objective = \"dkd\"\nteacher = \"human\"\ngamma = [0, 0.5]\n");
    let e = a.error();
    a.nothing_written();
    assert!(
        e.contains("task 1") && e.contains("same network as task 0") && e.contains("`gamma`"),
        "{e}"
    );
    // hkd's label smoothing at λ = 1.
    let e = train("lambda = 1\nlabel-smoothing = [0, 0.1]\n").error();
    assert!(
        e.contains("same network as task 0") && e.contains("`label_smoothing`"),
        "{e}"
    );
    // ... which is a real axis at λ = 0.5.
    let a = train("lambda = 0.5\nlabel-smoothing = [0, 0.1]\n");
    assert_eq!(a.result.as_ref().unwrap().len(), 2);
}
