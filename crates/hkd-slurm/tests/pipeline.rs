//! Pipelines: loading, overrides, local stage order, stopping at a failed stage, and the
//! Slurm dependencies of a dry run.

mod support;

use std::path::Path;

use hkd_slurm::{
    BinaryInfo, BinaryName, ExecutorChoice, GridDir, LaunchOptions, LocalEvent, Pipeline,
    PipelineOptions, PipelineRecord, Result, run_pipeline,
};
use support::Fake;

fn quiet(_: LocalEvent<'_>) {}
fn no_stage(_: &str, _: &Path, _: usize) {}

struct Setup {
    tmp: tempfile::TempDir,
    train: Fake,
    analyze: Fake,
}

/// Fakes: hkd-train with `--out=teachers` sleeps, then marks the teachers done; with
/// `--out=students` it fails unless the teachers are done. hkd-analyze records its call.
fn setup(teacher_exit: i32) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("teachers-done");
    let m = shlex::try_quote(&marker.to_string_lossy())
        .unwrap()
        .into_owned();
    let train_body = format!(
        "case \" $* \" in\n *' --out=teachers '*) sleep 0.3; touch {m}; exit {teacher_exit};;\n *' --out=students '*) [ -e {m} ] || exit 9;;\nesac\nexit 0"
    );
    let train = Fake::new(&tmp.path().join("train"), "hkd-train", &train_body);
    let analyze = Fake::new(&tmp.path().join("analyze"), "hkd-analyze", "exit 0");
    std::fs::create_dir_all(tmp.path().join("configs")).unwrap();
    std::fs::write(
        tmp.path().join("configs/train.toml"),
        "binary = \"hkd-train\"\nexecutor = \"local\"\n[grid]\nteacher = \"human\"\nepochs = 1\niter = [0, 1]\n",
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("configs/analyze.toml"),
        "binary = \"hkd-analyze\"\nargs = [\"runs\"]\n",
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("configs/pipeline.toml"),
        r#"
name = "study"
[[stage]]
name = "teachers"
config = "train.toml"
[stage.grid]
out = "teachers"
[[stage]]
name = "students"
config = "train.toml"
after = ["teachers"]
[stage.grid]
out = "students"
teacher = "best:teachers"
[stage.slurm]
mode = "multiprog"
tasks_per_job = 2
[[stage]]
name = "analyze"
config = "analyze.toml"
after = ["students"]
args = ["students"]
"#,
    )
    .unwrap();
    Setup {
        tmp,
        train,
        analyze,
    }
}

fn run(s: &Setup, executor: ExecutorChoice, dry_run: bool) -> Result<hkd_slurm::PipelineRun> {
    let pipeline = Pipeline::load(&s.tmp.path().join("configs/pipeline.toml"))?;
    let (train, analyze) = (s.train.path.clone(), s.analyze.path.clone());
    let find = move |name: BinaryName, sub: Option<&str>| -> Result<BinaryInfo> {
        let path = match name {
            BinaryName::Train => &train,
            BinaryName::Analyze => &analyze,
            BinaryName::Eval => panic!("no eval stage"),
        };
        Ok(BinaryInfo::at(name, path, sub))
    };
    run_pipeline(
        &pipeline,
        &PipelineOptions {
            grids_root: s.tmp.path().join("grids"),
            executor: Some(executor),
            after: vec![],
            workdir: s.tmp.path().to_path_buf(),
            launch: LaunchOptions {
                dry_run,
                dependency: None,
                jobs: Some(2),
                runner: "/opt/hkd/hkd-grid".into(),
                on_local_event: &quiet,
            },
            on_stage: &no_stage,
            find_binary: &find,
        },
    )
}

fn times(dir: &GridDir, n: usize) -> Vec<(jiff::Timestamp, jiff::Timestamp)> {
    (0..n)
        .map(|i| {
            let s = dir.read_state(i).unwrap().unwrap();
            (
                s.started.parse().unwrap(),
                s.ended.unwrap().parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn stages_load_with_their_overrides() {
    let s = setup(0);
    let p = Pipeline::load(&s.tmp.path().join("configs/pipeline.toml")).unwrap();
    assert_eq!(p.name, "study");
    let names: Vec<&str> = p.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["teachers", "students", "analyze"]);
    let students = &p.stages[1].config;
    assert_eq!(students.name(), "students");
    assert_eq!(students.task_count(), 2);
    assert_eq!(
        students.grid["teacher"].0,
        vec![hkd_slurm::config::GridPoint::One(
            hkd_slurm::config::Scalar::Str("best:teachers".into())
        )]
    );
    assert_eq!(students.slurm.mode, hkd_slurm::JobMode::Multiprog);
    assert_eq!(p.stages[0].config.slurm.mode, hkd_slurm::JobMode::Array);
    assert_eq!(p.stages[2].config.args, ["students"]);
    assert_eq!(p.executor, ExecutorChoice::Local);
}

#[test]
fn bad_pipelines_are_refused_with_the_stage_named() {
    let s = setup(0);
    let path = s.tmp.path().join("configs/bad.toml");
    std::fs::write(&path, "[[stage]]\nname = \"b\"\nconfig = \"train.toml\"\nafter = [\"a\"]\n[[stage]]\nname = \"a\"\nconfig = \"train.toml\"\n").unwrap();
    let err = Pipeline::load(&path).unwrap_err().to_string();
    assert!(err.contains("names no stage listed before it"), "{err}");
    std::fs::write(
        &path,
        "[[stage]]\nname = \"a\"\nconfig = \"train.toml\"\n[stage.slurm]\npartitoin = \"x\"\n",
    )
    .unwrap();
    let err = Pipeline::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("stage `a`") && err.contains("partitoin"),
        "{err}"
    );
    std::fs::write(
        &path,
        "[[stage]]\nname = \"a\"\nconfig = \"train.toml\"\ncolour = 1\n",
    )
    .unwrap();
    let err = Pipeline::load(&path).unwrap_err().to_string();
    assert!(err.contains("bad.toml") && err.contains("colour"), "{err}");
}

#[test]
fn local_stages_run_in_order() {
    let s = setup(0);
    let run = run(&s, ExecutorChoice::Local, false).unwrap();
    assert_eq!(run.record.stages.len(), 3);
    let teachers = GridDir::open(&run.record.stages[0].grid_dir).unwrap();
    let students = GridDir::open(&run.record.stages[1].grid_dir).unwrap();
    let teacher_end = times(&teachers, 2).iter().map(|t| t.1).max().unwrap();
    let student_start = times(&students, 2).iter().map(|t| t.0).min().unwrap();
    assert!(
        student_start >= teacher_end,
        "students started before the teachers ended"
    );
    // every student succeeded, i.e. saw the teachers' marker
    assert!(run.reports[1].outcomes.iter().all(|o| o.exit_code == 0));
    let analyze_calls = s.analyze.calls();
    assert_eq!(analyze_calls, vec![vec!["students".to_string()]]);
    let record = PipelineRecord::read(&run.dir).unwrap();
    assert_eq!(record, run.record);
    assert!(record.stages[1].grid_dir.ends_with("01-students"));
}

#[test]
fn a_failed_stage_stops_the_pipeline() {
    let s = setup(4);
    let err = run(&s, ExecutorChoice::Local, false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("stage `teachers`") && err.contains("later stages were not run"),
        "{err}"
    );
    assert!(
        s.train
            .calls()
            .iter()
            .all(|argv| argv.contains(&"--out=teachers".to_string())),
        "no student may run after the teachers failed"
    );
    assert!(s.analyze.calls().is_empty());
}

#[test]
fn slurm_dry_run_renders_every_stage_with_its_dependency() {
    let s = setup(0);
    let run = run(&s, ExecutorChoice::Slurm, true).unwrap();
    assert!(s.train.calls().is_empty() && s.analyze.calls().is_empty());
    let students = GridDir::open(&run.record.stages[1].grid_dir).unwrap();
    let manifest = students.read_manifest().unwrap();
    let sub = &manifest.submissions[0];
    assert!(sub.dry_run);
    assert_eq!(
        sub.dependency.as_deref(),
        Some("afterok:<jobs of teachers>")
    );
    assert_eq!(sub.jobs.len(), 1, "two students in one multiprog job");
    let script = std::fs::read_to_string(students.file("job-0-0.sh")).unwrap();
    assert!(script.contains("--multi-prog job-0-0.conf"), "{script}");
    let teachers = GridDir::open(&run.record.stages[0].grid_dir).unwrap();
    assert!(
        teachers.read_manifest().unwrap().submissions[0]
            .dependency
            .is_none()
    );
    assert!(teachers.file("job-0-0.sh").is_file());
}

#[test]
fn a_refused_task_in_any_stage_stops_the_pipeline_before_anything_runs() {
    let s = setup(0);
    let path = s.tmp.path().join("configs/pipeline.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    // the last stage's tasks are refused by hkd-analyze; the students' by hkd-train
    let text = text
        .replace(
            "args = [\"students\"]\n",
            "args = [\"students\"]\n[stage.grid]\ntop = [3, \"many\"]\n",
        )
        .replace(
            "teacher = \"best:teachers\"\n",
            "teacher = \"best:teachers\"\nmomentum = [0.9, 2]\n",
        );
    std::fs::write(&path, text).unwrap();
    let err = run(&s, ExecutorChoice::Local, false)
        .unwrap_err()
        .to_string();
    // stages are checked in order: the students' refusal is reported first
    assert!(
        err.contains("2 of 4 tasks would be refused by hkd-train")
            && err.contains("task 1 (")
            && err.contains("task 3 (")
            && err.contains("key `momentum`"),
        "{err}"
    );
    assert!(
        !s.tmp.path().join("grids").exists(),
        "nothing may be created for a refused pipeline"
    );
    assert!(s.train.calls().is_empty() && s.analyze.calls().is_empty());
    // only the analysis refused: still nothing runs, not even the teachers
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("momentum = [0.9, 2]\n", "");
    std::fs::write(&path, text).unwrap();
    let err = run(&s, ExecutorChoice::Local, false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("hkd-analyze") && err.contains("task 1") && err.contains("many"),
        "{err}"
    );
    assert!(!s.tmp.path().join("grids").exists());
    assert!(s.train.calls().is_empty());
}
