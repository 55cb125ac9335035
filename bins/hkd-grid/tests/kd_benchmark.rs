//! The CIFAR-100 KD benchmark through `configs/kd-benchmark.toml --profile short`, on a
//! synthetic CIFAR-100 written in the official python release's format by the test: the
//! release prepared with the real hkd-data, a resnet32x4 teacher, resnet8x4 students from
//! hard labels, with `kd` and with `dkd` from that teacher, and the analysis — with the real
//! hkd-train and hkd-analyze (target/debug) and the local executor. About a minute.
//!
//! Needs the binaries built (`cargo build --workspace --bins`, as `just test` does);
//! without them the test says SKIPPED on stderr and passes, except in CI (`CI=true`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{assert_current, find_hkd_train, hkd_grid, run, skip_or_fail, workspace_root};
use hkd_rundir::RunConfig;
use hkd_test_support::cifar100::{Part, write_python};

fn beside_train(train: &Path, name: &str) -> PathBuf {
    train.parent().unwrap().join(name)
}

/// Every run directory (holding config.toml) under `root`.
fn runs_under(root: &Path) -> Vec<(PathBuf, RunConfig)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let config = d.join("config.toml");
        if config.is_file() {
            let text = std::fs::read_to_string(&config).unwrap();
            out.push((d.clone(), RunConfig::from_toml_str(&text).unwrap()));
            continue;
        }
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn the_short_benchmark_prepares_cifar100_and_trains_ce_kd_and_dkd_students_from_a_teacher() {
    let test =
        "the_short_benchmark_prepares_cifar100_and_trains_ce_kd_and_dkd_students_from_a_teacher";
    let Some(train) = find_hkd_train() else {
        skip_or_fail(
            test,
            "hkd-train is not built (cargo build --workspace --bins)",
        );
        return;
    };
    let (data, analyze) = (
        beside_train(&train, "hkd-data"),
        beside_train(&train, "hkd-analyze"),
    );
    if !data.is_file() || !analyze.is_file() {
        skip_or_fail(
            test,
            "hkd-data or hkd-analyze is not built (cargo build --workspace --bins)",
        );
        return;
    }
    assert_current(&train);
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    write_python(
        &work.join("download"),
        &Part::synthetic(96, 0),
        &Part::synthetic(40, 1),
    );
    let (code, _, err) = run(Command::new(&data).current_dir(work).args([
        "prepare",
        "cifar100",
        "--src",
        "download",
        "--out",
        "data/cifar100",
    ]));
    assert_eq!(code, 0, "{err}");

    let config = workspace_root().join("configs/kd-benchmark.toml");
    let (code, _, err) = run(hkd_grid()
        .current_dir(work)
        .env("HKD_BIN_DIR", train.parent().unwrap())
        .arg("pipeline")
        .arg(&config)
        .args(["--profile", "short", "--executor", "local", "--jobs", "2"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("pipeline `kd-benchmark-short` finished"),
        "{err}"
    );

    // One teacher, resnet32x4 on 100 classes, the recipe's settings (2 short epochs).
    let root = work.join("runs/kd-benchmark-short");
    let teachers = runs_under(&root.join("teachers"));
    assert_eq!(teachers.len(), 1, "{teachers:?}");
    let (teacher_dir, teacher) = &teachers[0];
    assert_eq!(teacher.spec.student, "resnet32x4");
    assert_eq!(teacher.classes, 100);
    let t = &teacher.spec.training;
    assert_eq!((t.epochs, t.batch_size, t.max_batches), (2, 16, Some(2)));
    let o = &teacher.spec.optimizer;
    assert_eq!((o.lr, o.momentum, o.weight_decay), (0.05, 0.9, 0.0005));
    assert_eq!(teacher.spec.data.val_split, "test");

    // Two repeats of each student arm, each from that teacher (kd, dkd) or none (ce).
    let students = runs_under(&root.join("students"));
    let mut arms: Vec<(String, String, u32)> = students
        .iter()
        .map(|(dir, c)| {
            assert_eq!(c.spec.student, "resnet8x4", "{}", dir.display());
            assert_eq!(c.classes, 100, "{}", dir.display());
            let from = match c.spec.loss.name() {
                "hkd" => "hard labels".to_string(),
                _ => {
                    let record = std::fs::read_to_string(dir.join("config.toml")).unwrap();
                    assert!(
                        record.contains(
                            &teacher_dir
                                .file_name()
                                .unwrap()
                                .to_string_lossy()
                                .to_string()
                        ),
                        "{}: not from the teacher run {}",
                        dir.display(),
                        teacher_dir.display()
                    );
                    "teacher".to_string()
                }
            };
            (c.spec.loss.name().to_string(), from, c.spec.iter)
        })
        .collect();
    arms.sort();
    let expected: Vec<(String, String, u32)> = [
        ("dkd", "teacher"),
        ("hkd", "hard labels"),
        ("kd", "teacher"),
    ]
    .iter()
    .flat_map(|(o, f)| (0..2).map(move |i| (o.to_string(), f.to_string(), i)))
    .collect();
    assert_eq!(arms, expected);
    // Each run's metrics hold two epochs with a test accuracy, and its best record.
    for (dir, _) in &students {
        let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
        let epochs: Vec<serde_json::Value> = metrics
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(epochs.len(), 2, "{}", dir.display());
        for e in &epochs {
            let acc = e["val_acc"].as_f64().unwrap();
            assert!((0.0..=100.0).contains(&acc), "{}: {e}", dir.display());
        }
        assert!(dir.join("best.safetensors").is_file());
    }

    // The analysis: a row per arm and one per run.
    let analysis = root.join("analysis");
    let rows = |file: &str| {
        let text = std::fs::read_to_string(analysis.join(file)).unwrap();
        text.lines().skip(1).map(str::to_string).collect::<Vec<_>>()
    };
    let groups = rows("average_results.csv");
    assert_eq!(groups.len(), 3, "{groups:?}");
    for objective in [",dkd,", ",kd,", ",hkd,"] {
        assert_eq!(
            groups.iter().filter(|r| r.contains(objective)).count(),
            1,
            "{objective}: {groups:?}"
        );
    }
    assert_eq!(rows("runs.csv").len(), 6);
    assert!(root.join("analysis/summary.md").is_file());
}
