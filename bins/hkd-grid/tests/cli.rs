//! hkd-grid's command line with fake binaries: dry runs, config errors, local runs,
//! status, resubmit, and the rendered job scripts executed by bash as Slurm would
//! (hostile paths included).

mod common;

use std::path::Path;
use std::process::Command;

use common::{Fake, hkd_grid, only_grid, run};

/// A work directory whose name a careless script would execute.
const HOSTILE_DIR: &str = "work dir $(touch PWNED) `touch PWNED` it's \"q\"\nline2";

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn grid_cmd(work: &Path, fakes: &Fake) -> Command {
    let mut cmd = hkd_grid();
    cmd.current_dir(work)
        .env("HKD_BIN_DIR", fakes.path.parent().unwrap());
    cmd
}

#[test]
fn an_unreachable_slurm_controller_is_reported_with_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = Fake::new(tmp.path(), "hkd-train", "exit 0");
    // sbatch installed, no controller: what Slurm's sbatch prints then.
    Fake::new(
        tmp.path(),
        "sbatch",
        "echo 'sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)' >&2; exit 1",
    );
    let work = tmp.path().join("work");
    write(
        &work.join("g.toml"),
        "binary = \"hkd-train\"\n[grid]\nlambda = [0.5, 1.0]\n",
    );
    let path = format!(
        "{}:{}",
        fake.path.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let (code, _, stderr) = run(grid_cmd(&work, &fake).env("PATH", path).args([
        "g.toml",
        "--executor",
        "slurm",
        "--grids-dir",
        tmp.path().join("grids").to_str().unwrap(),
    ]));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("Unable to contact slurm controller")
            && stderr.contains("just slurm-up")
            && stderr.contains("--executor local"),
        "{stderr}"
    );
}

#[test]
fn dry_run_writes_the_grid_and_prints_it() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = Fake::new(tmp.path(), "hkd-train", "exit 0");
    let work = tmp.path().join("work");
    write(
        &work.join("configs/train.toml"),
        "binary = \"hkd-train\"\n[grid]\nlambda = [0.5, 1.0]\ndistil-fn = [\"KL\", \"CE\"]\n[slurm]\nmax_concurrent = 2\nmax_array_size = 1001\n",
    );
    let (code, stdout, stderr) = run(grid_cmd(&work, &fake).args([
        "configs/train.toml",
        "--dry-run",
        "--executor",
        "slurm",
    ]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("grid `train`: 4 tasks of hkd-train"),
        "{stderr}"
    );
    assert!(stderr.contains("dry run"), "{stderr}");
    let exe = fake.path.to_string_lossy();
    assert!(
        stdout.contains(&format!("{exe} --distil-fn=KL --lambda=0.5\n")),
        "{stdout}"
    );
    assert!(stdout.contains("#SBATCH --array=0-3%2"), "{stdout}");
    let grid = only_grid(&work.join("grids"));
    assert!(
        grid.file_name()
            .unwrap()
            .to_string_lossy()
            .ends_with("-train")
    );
    for f in ["tasks.txt", "manifest.json", "job-0-0.sh"] {
        assert!(grid.join(f).is_file(), "{f} missing");
    }
    let tasks = std::fs::read_to_string(grid.join("tasks.txt")).unwrap();
    assert_eq!(tasks.lines().count(), 4);
    assert!(fake.calls().is_empty(), "a dry run runs nothing");
    let (code, stdout, _) = run(hkd_grid().args(["status", grid.to_str().unwrap()]));
    assert_eq!(code, 0);
    assert!(stdout.contains("4 tasks: 4 not submitted"), "{stdout}");
}

/// Refused configs exit 2 (docs/README.md, "Exit codes"); a binary that cannot be found
/// exits 1.
#[test]
fn config_mistakes_are_reported_with_file_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = Fake::new(tmp.path(), "hkd-train", "exit 0");
    let work = tmp.path().join("work");
    write(&work.join("a.toml"), "binary = \"hkd-train\"\nepochs = 2\n");
    let (code, _, stderr) = run(grid_cmd(&work, &fake).args(["a.toml", "--dry-run"]));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("a.toml") && stderr.contains("epochs"),
        "{stderr}"
    );
    write(
        &work.join("b.toml"),
        "binary = \"hkd-train\"\n[grid]\nlamda = [0.5]\n",
    );
    let (code, _, stderr) = run(grid_cmd(&work, &fake).args(["b.toml", "--dry-run"]));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("b.toml") && stderr.contains("`lamda` is not a flag of hkd-train"),
        "{stderr}"
    );
    assert!(stderr.contains("Did you mean `lambda`"), "{stderr}");
    write(
        &work.join("c.toml"),
        "binary = \"hkd-eval\"\nsubcommand = \"run\"\nargs = [\"runs\"]\n",
    );
    let (code, _, stderr) = run(grid_cmd(&work, &fake).args(["c.toml", "--dry-run"]));
    assert_eq!(code, 1);
    assert!(stderr.contains("hkd-eval not found"), "{stderr}");
    write(&work.join("d.toml"), "binary = \"hkd-eval\"\n");
    let (code, _, stderr) = run(grid_cmd(&work, &fake).args(["d.toml", "--dry-run"]));
    assert_ne!(code, 0);
    assert!(
        stderr.contains("hkd-eval needs a subcommand: run, predict"),
        "{stderr}"
    );
    assert!(
        !work.join("grids").exists() || std::fs::read_dir(work.join("grids")).unwrap().count() == 0
    );
}

#[test]
fn local_runs_status_and_resubmit() {
    let tmp = tempfile::tempdir().unwrap();
    let fixed = tmp.path().join("fixed");
    let body = format!(
        "case \" $* \" in *' --iter=1 '*) [ -e {} ] || exit 4;; esac\nexit 0",
        shlex::try_quote(&fixed.to_string_lossy()).unwrap()
    );
    let fake = Fake::new(tmp.path(), "hkd-train", &body);
    let work = tmp.path().join("work");
    write(
        &work.join("t.toml"),
        "binary = \"hkd-train\"\nexecutor = \"local\"\n[grid]\nteacher = \"human\"\niter = [0, 1, 2]\n",
    );
    let (code, _, stderr) = run(grid_cmd(&work, &fake).args(["t.toml", "--jobs", "2"]));
    assert_eq!(code, 1, "a failed task fails the command: {stderr}");
    assert!(
        stderr.contains("executor: local (chosen), 2 at a time"),
        "{stderr}"
    );
    assert!(
        stderr.contains("3 tasks: 2 ok (0 already finished), 1 failed"),
        "{stderr}"
    );
    assert!(stderr.contains("task 1 exit 4"), "{stderr}");
    let grid = only_grid(&work.join("grids"));
    let (_, stdout, _) = run(hkd_grid().args(["status", grid.to_str().unwrap()]));
    assert!(stdout.contains("3 tasks: 2 done, 1 failed"), "{stdout}");
    let (_, json, _) = run(hkd_grid().args(["status", grid.to_str().unwrap(), "--json"]));
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed[1]["kind"], "failed");
    assert_eq!(parsed[1]["detail"], "exit 4");

    std::fs::write(&fixed, "").unwrap();
    let before = fake.calls().len();
    let (code, _, stderr) =
        run(hkd_grid()
            .current_dir(&work)
            .args(["resubmit", grid.to_str().unwrap(), "--failed"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("resubmitting 1 failed tasks (1)"),
        "{stderr}"
    );
    assert_eq!(fake.calls().len(), before + 1);
    let (_, stdout, _) = run(hkd_grid().args(["status", grid.to_str().unwrap()]));
    assert!(stdout.contains("3 tasks: 3 done"), "{stdout}");
    let (code, _, stderr) = run(hkd_grid().args(["resubmit", grid.to_str().unwrap(), "--failed"]));
    assert_eq!(code, 0);
    assert!(stderr.contains("no failed task"), "{stderr}");
}

/// Renders a grid in `mode` from a hostile work directory, then runs what Slurm would run
/// (the batch script, a multiprog rank, the wrap command) with bash and checks the fake
/// binary got exactly the task's arguments and nothing was executed.
fn scripts_run_under_bash(mode: &str) {
    let tmp = tempfile::tempdir().unwrap();
    // the setup lines run before the task, in its environment
    let fake = Fake::new(
        tmp.path(),
        "hkd-train",
        "[ \"${HKD_TEST_SETUP:-}\" = ran ] || exit 5",
    );
    let work = tmp.path().join(HOSTILE_DIR);
    let hostile_value = "$(touch PWNED) `touch PWNED` ' \" ;touch PWNED";
    write(
        &work.join("g.toml"),
        &format!(
            "binary = \"hkd-train\"\n[grid]\nteacher = \"human\"\nout = {hostile_value:?}\niter = [0, 1]\n[slurm]\nmode = \"{mode}\"\ntasks_per_job = 2\nsetup = [\"export HKD_TEST_SETUP=ran\"]\n"
        ),
    );
    let grids = work.join("grids");
    let (code, _, stderr) = run(grid_cmd(&work, &fake).args([
        "g.toml",
        "--dry-run",
        "--executor",
        "slurm",
        "--grids-dir",
        grids.to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{stderr}");
    let grid = only_grid(&grids);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(grid.join("manifest.json")).unwrap())
            .unwrap();
    let mut cmd = Command::new(if mode == "wrap" { "sh" } else { "bash" });
    cmd.env("SLURM_ARRAY_JOB_ID", "77")
        .env("SLURM_ARRAY_TASK_ID", "1")
        .env("SLURM_JOB_ID", "78")
        .env_remove("HKD_BIN_DIR");
    match mode {
        "array" => {
            cmd.current_dir(&grid).arg("job-0-0.sh");
        }
        "multiprog" => {
            let conf = std::fs::read_to_string(grid.join("job-0-0.conf")).unwrap();
            assert_eq!(conf, "0 ./task.sh 0\n1 ./task.sh 1\n");
            // srun hands the batch shell's environment (after the setup lines) to each rank
            cmd.current_dir(&grid)
                .env("HKD_TEST_SETUP", "ran")
                .args(["./task.sh", "1"]);
            let script = std::fs::read_to_string(grid.join("job-0-0.sh")).unwrap();
            assert!(script.contains("export HKD_TEST_SETUP=ran\n"), "{script}");
        }
        "wrap" => {
            let args = manifest["submissions"][0]["jobs"][1]["sbatch_args"]
                .as_array()
                .unwrap();
            let wrap = args
                .last()
                .unwrap()
                .as_str()
                .unwrap()
                .strip_prefix("--wrap=")
                .unwrap()
                .to_string();
            cmd.current_dir(&grid).args(["-c", &wrap]);
        }
        _ => unreachable!(),
    }
    let (code, _, stderr) = run(&mut cmd);
    assert_eq!(code, 0, "{stderr}");
    let calls = fake.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let expected: Vec<String> = manifest["tasks"][1]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .chain(["--resume".to_string()])
        .collect();
    assert_eq!(calls[0], expected);
    assert_eq!(calls[0][1], format!("--out={hostile_value}"));
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(grid.join("state/task-1.json")).unwrap())
            .unwrap();
    assert_eq!(state["exit_code"], 0);
    assert_eq!(state["job_id"], "77_1");
    for dir in [tmp.path(), &work, &grid] {
        assert!(
            !dir.join("PWNED").exists(),
            "something was executed in {}",
            dir.display()
        );
    }
}

#[test]
fn array_script_runs_under_bash_from_a_hostile_directory() {
    scripts_run_under_bash("array");
}

#[test]
fn multiprog_rank_runs_under_bash_from_a_hostile_directory() {
    scripts_run_under_bash("multiprog");
}

#[test]
fn wrap_command_runs_under_sh_from_a_hostile_directory() {
    scripts_run_under_bash("wrap");
}

#[test]
fn a_control_character_in_a_value_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = Fake::new(tmp.path(), "hkd-train", "exit 0");
    write(
        &tmp.path().join("n.toml"),
        "binary = \"hkd-train\"\n[grid]\nout = \"a\\nb\"\n",
    );
    let (code, _, stderr) = run(grid_cmd(tmp.path(), &fake).args(["n.toml", "--dry-run"]));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("U+000A") && stderr.contains("n.toml"),
        "{stderr}"
    );
}

/// Every grid here is refused before anything is written or run: the message names the
/// config file, each refused task's index and its key; no grid directory exists after,
/// neither hkd-train nor sbatch was called.
#[test]
fn refused_grids_are_reported_whole_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = Fake::new(tmp.path(), "hkd-train", "exit 0");
    let sbatch = Fake::new(&tmp.path().join("sbatch"), "sbatch", "echo 1; exit 0");
    let path = format!(
        "{}:{}",
        sbatch.path.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let work = tmp.path().join("work");
    let refused = |name: &str, grid: &str| -> String {
        let config = work.join(format!("{name}.toml"));
        write(
            &config,
            &format!("binary = \"hkd-train\"\nexecutor = \"slurm\"\n[grid]\n{grid}"),
        );
        let mut stderrs = String::new();
        for executor in ["slurm", "local"] {
            let (code, stdout, stderr) = run(grid_cmd(&work, &fake).env("PATH", &path).args([
                config.to_str().unwrap(),
                "--executor",
                executor,
            ]));
            assert_eq!(code, 2, "{name} ({executor}): {stdout}{stderr}");
            assert!(stderr.contains(&format!("{name}.toml")), "{stderr}");
            assert!(
                !work.join("grids").exists(),
                "{name} ({executor}): a grid directory was created"
            );
            stderrs = stderr;
        }
        assert!(fake.calls().is_empty(), "{name}: hkd-train ran");
        assert!(sbatch.calls().is_empty(), "{name}: sbatch ran");
        stderrs
    };
    // 0: 0.9 plateau, 1: 0.9 sgdr, 2: 2 plateau, 3: 2 sgdr
    let e = refused(
        "values",
        "teacher = \"human\"\nscheduler = [\"plateau\", \"sgdr\"]\nmomentum = [0.9, 2]\n",
    );
    assert!(
        e.contains("3 of 4 tasks would be refused by hkd-train"),
        "{e}"
    );
    assert!(!e.contains("task 0 ("), "{e}");
    for (index, key) in [(1, "scheduler"), (2, "momentum"), (3, "")] {
        let line = e
            .lines()
            .find(|l| l.contains(&format!("task {index} (")))
            .unwrap_or_else(|| panic!("task {index} is not named: {e}"));
        assert!(line.contains(&format!("key `{key}")), "{line}");
    }
    let e = refused("nested", "lambda = [[0.5, 1.0]]\n");
    assert!(
        e.contains("`lambda`") && e.contains("takes one value"),
        "{e}"
    );
    let e = refused("unknown", "lamda = [0.5]\n");
    assert!(
        e.contains("`lamda` is not a flag of hkd-train") && e.contains("Did you mean `lambda`"),
        "{e}"
    );
    let e = refused("switch", "resume = [\"yes\"]\n");
    assert!(e.contains("is a switch"), "{e}");
    let e = refused("twice", "lambda = [1, 1.0]\n");
    assert!(
        e.contains("task 1 (--lambda=1.0)") && e.contains("same run as task 0"),
        "{e}"
    );
}

/// Evaluation and analysis grids are expanded and checked in-process too: no hkd-eval or
/// hkd-analyze is run to learn their flags, a refused task is named before anything runs.
#[test]
fn evaluation_and_analysis_grids_are_checked_in_process() {
    let tmp = tempfile::tempdir().unwrap();
    let eval = Fake::new(&tmp.path().join("eval"), "hkd-eval", "exit 0");
    let analyze = Fake::new(&tmp.path().join("analyze"), "hkd-analyze", "exit 0");
    let work = tmp.path().join("work");
    write(
        &work.join("e.toml"),
        "binary = \"hkd-eval\"\nsubcommand = \"run\"\nargs = [\"runs\"]\n[grid]\nweights = [\"best\", \"worst\"]\n",
    );
    let (code, _, stderr) = run(grid_cmd(&work, &eval).args(["e.toml", "--dry-run"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("e.toml")
            && stderr.contains("1 of 2 tasks would be refused by hkd-eval")
            && stderr.contains("task 1 (--weights=worst)"),
        "{stderr}"
    );
    assert!(!work.join("grids").exists());
    write(
        &work.join("a.toml"),
        "binary = \"hkd-analyze\"\nargs = [\"runs\"]\n[grid]\ntop = [3, -1]\n",
    );
    let (code, _, stderr) = run(grid_cmd(&work, &analyze).args(["a.toml", "--dry-run"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("by hkd-analyze") && stderr.contains("task 1 (--top=-1)"),
        "{stderr}"
    );
    assert!(!work.join("grids").exists());
    // valid grids run with the task's exact arguments
    write(
        &work.join("ok.toml"),
        "binary = \"hkd-eval\"\nsubcommand = \"run\"\nexecutor = \"local\"\nargs = [\"runs\"]\n[grid]\nweights = [\"best\", \"last\"]\ndevice = \"cpu\"\n",
    );
    let (code, _, stderr) = run(grid_cmd(&work, &eval).args(["ok.toml"]));
    assert_eq!(code, 0, "{stderr}");
    let mut calls = eval.calls();
    calls.sort();
    assert_eq!(
        calls,
        [
            ["run", "runs", "--device=cpu", "--weights=best"],
            ["run", "runs", "--device=cpu", "--weights=last"]
        ]
    );
    assert!(analyze.calls().is_empty());
}

#[test]
fn a_teacher_that_is_not_there_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = Fake::new(tmp.path(), "hkd-train", "exit 0");
    let work = tmp.path().join("work");
    let grids = tmp.path().join("grids");
    write(
        &work.join("students.toml"),
        "name = \"students\"\nbinary = \"hkd-train\"\nexecutor = \"local\"\n[grid]\nteacher = \"runs/teachers/no-such-run\"\niter = [0, 1]\n",
    );
    let (code, _, stderr) =
        run(grid_cmd(&work, &fake).args(["students.toml", "--grids-dir", grids.to_str().unwrap()]));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("2 of 2 tasks would be refused")
            && stderr.contains("task 0")
            && stderr.contains("key `teacher`")
            && stderr.contains("no-such-run does not exist")
            && stderr.contains("train the teacher first"),
        "{stderr}"
    );
    assert!(!grids.exists(), "nothing written: {stderr}");

    // in a pipeline whose earlier stage writes there, the same teacher is expected
    write(
        &work.join("teachers.toml"),
        "binary = \"hkd-train\"\n[grid]\nout = \"runs/teachers\"\nteacher = \"baseline\"\n",
    );
    write(
        &work.join("pipe.toml"),
        "name = \"pipe\"\nexecutor = \"local\"\n[[stage]]\nname = \"teachers\"\nconfig = \"teachers.toml\"\n[[stage]]\nname = \"students\"\nconfig = \"students.toml\"\n[stage.grid]\nteacher = \"best:runs/teachers\"\n",
    );
    let (code, _, stderr) = run(grid_cmd(&work, &fake).args([
        "pipeline",
        "pipe.toml",
        "--dry-run",
        "--grids-dir",
        grids.to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{stderr}");
    // a stage whose teacher no earlier stage writes is refused, naming the stage
    write(
        &work.join("pipe.toml"),
        "name = \"pipe\"\nexecutor = \"local\"\n[[stage]]\nname = \"teachers\"\nconfig = \"teachers.toml\"\n[[stage]]\nname = \"students\"\nconfig = \"students.toml\"\n[stage.grid]\nteacher = \"best:runs/elsewhere\"\n",
    );
    let listed = std::fs::read_dir(&grids).map(|d| d.count()).unwrap_or(0);
    let (code, _, stderr) = run(grid_cmd(&work, &fake).args([
        "pipeline",
        "pipe.toml",
        "--grids-dir",
        grids.to_str().unwrap(),
    ]));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("stage `students`") && stderr.contains("elsewhere"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_dir(&grids).map(|d| d.count()).unwrap_or(0),
        listed,
        "nothing written: {stderr}"
    );
}
