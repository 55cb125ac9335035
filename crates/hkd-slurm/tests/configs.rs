//! The shipped configs (configs/*.toml) parse, and the defaults stay small: the fixture
//! dataset, few epochs, a grid that finishes in minutes on a laptop.

use std::path::{Path, PathBuf};

use hkd_slurm::config::{GridPoint, Scalar};
use hkd_slurm::{BinaryName, GridConfig, JobMode, Pipeline};

fn configs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

fn one(config: &GridConfig, key: &str) -> Scalar {
    match config.grid[key].0.as_slice() {
        [GridPoint::One(s)] => s.clone(),
        other => panic!("{key}: {other:?}"),
    }
}

#[test]
fn train_config_is_a_small_grid_on_the_fixtures() {
    let c = GridConfig::load(&configs().join("train.toml")).unwrap();
    assert_eq!(c.binary, BinaryName::Train);
    assert_eq!(
        one(&c, "data"),
        Scalar::Str("fixtures/cifar10h-mini".into())
    );
    assert_eq!(one(&c, "student"), Scalar::Str("resnet8".into()));
    assert_eq!(one(&c, "epochs"), Scalar::Int(2));
    assert_eq!(one(&c, "threads"), Scalar::Int(1));
    assert_eq!(c.task_count(), 4);
    assert_eq!(c.slurm.mode, JobMode::Array);
    assert!(c.slurm.requeue && c.slurm.signal_before_timeout.is_some());
}

#[test]
fn evaluate_and_analyze_configs_read_the_train_grid() {
    let e = GridConfig::load(&configs().join("evaluate.toml")).unwrap();
    assert_eq!(
        (e.binary, e.subcommand.as_deref()),
        (BinaryName::Eval, Some("run"))
    );
    assert_eq!(e.args, ["runs/grid"]);
    assert_eq!(e.task_count(), 1);
    let a = GridConfig::load(&configs().join("analyze.toml")).unwrap();
    assert_eq!(a.binary, BinaryName::Analyze);
    assert_eq!(a.args, ["runs/grid"]);
}

#[test]
fn pipeline_chains_teachers_students_evaluate_analyze() {
    let p = Pipeline::load(&configs().join("pipeline.toml")).unwrap();
    let stages: Vec<(&str, Vec<&str>)> = p
        .stages
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.after.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        stages,
        [
            ("teachers", vec![]),
            ("students", vec!["teachers"]),
            ("evaluate", vec!["students"]),
            ("analyze", vec!["evaluate"]),
        ]
    );
    let students = &p.stages[1].config;
    assert_eq!(
        one(students, "teacher"),
        Scalar::Str("best:runs/study/teachers".into())
    );
    assert_eq!(students.task_count(), 4);
    assert_eq!(p.stages[0].config.task_count(), 1);
    assert_eq!(p.stages[2].config.args, ["runs/study/students"]);
}
