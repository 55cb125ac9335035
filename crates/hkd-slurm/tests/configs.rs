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

#[test]
fn kd_benchmark_is_repdistillers_recipe_and_its_short_profile_only_shortens_it() {
    let path = configs().join("kd-benchmark.toml");
    let full = Pipeline::load(&path).unwrap();
    let short = Pipeline::load_profile(&path, Some("short")).unwrap();
    assert_eq!(full.name, "kd-benchmark");
    assert_eq!(short.name, "kd-benchmark-short");
    let names: Vec<&str> = full.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["teacher", "ce", "kd", "dkd", "analyze"]);
    for (f, s) in full.stages.iter().zip(&short.stages) {
        if f.name == "analyze" {
            assert_eq!(f.config.args, ["runs/kd-benchmark/students"]);
            assert_eq!(s.config.args, ["runs/kd-benchmark-short/students"]);
            continue;
        }
        // RepDistiller's train_student.py / mdistiller's CIFAR-100 recipe.
        for (key, value) in [
            ("epochs", Scalar::Int(240)),
            ("batch-size", Scalar::Int(64)),
            ("lr", Scalar::Float(0.05)),
            ("momentum", Scalar::Float(0.9)),
            ("weight-decay", Scalar::Float(0.0005)),
            ("scheduler", Scalar::Str("step".into())),
            ("step-gamma", Scalar::Float(0.1)),
            ("val-split", Scalar::Str("test".into())),
            ("data", Scalar::Str("data/cifar100".into())),
        ] {
            assert_eq!(one(&f.config, key), value, "{}: {key}", f.name);
        }
        assert_eq!(one(&s.config, "epochs"), Scalar::Int(2), "{}", s.name);
        assert_eq!(one(&s.config, "max-batches"), Scalar::Int(2), "{}", s.name);
        // Everything else of the recipe is the same in the short version.
        for key in [
            "lr",
            "weight-decay",
            "step-milestones",
            "objective",
            "temperature",
        ] {
            assert_eq!(
                f.config.grid.get(key),
                s.config.grid.get(key),
                "{}: {key}",
                f.name
            );
        }
        let out = |c: &GridConfig| match one(c, "out") {
            Scalar::Str(o) => o,
            other => panic!("{other:?}"),
        };
        assert!(out(&f.config).starts_with("runs/kd-benchmark/"));
        assert!(out(&s.config).starts_with("runs/kd-benchmark-short/"));
    }
    let kd = &full.stages[2].config;
    assert_eq!(one(kd, "objective"), Scalar::Str("kd".into()));
    assert_eq!(one(kd, "ce-weight"), Scalar::Float(0.1));
    assert_eq!(one(kd, "kl-weight"), Scalar::Float(0.9));
    let dkd = &full.stages[3].config;
    assert_eq!(one(dkd, "beta-nckd"), Scalar::Float(8.0));
    assert_eq!(one(dkd, "warmup-epochs"), Scalar::Int(20));
    assert_eq!(full.stages[2].config.task_count(), 5);
    assert_eq!(short.stages[2].config.task_count(), 2);

    let err = Pipeline::load_profile(&path, Some("quick"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no [profile.quick]") && err.contains("short"),
        "{err}"
    );
}
