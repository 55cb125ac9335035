//! A grid holding run directories written by hkd 0.1 (`config.toml` without `[spec]`),
//! next to runs of today's layout: the analysis reads the old runs' hyperparameters from
//! their config (read through `hkd_rundir::LegacyRunConfig`) and averages them with the
//! new runs of the same configuration.

use std::path::{Path, PathBuf};

use crate::common::*;
use hkd_analysis::*;
use hkd_rundir::{DistilFn, KlReduction, TeacherSpec};
use hkd_test_support::run_0_1;

fn tables_only(root: &Path) -> AnalyzeOptions {
    AnalyzeOptions {
        figures: false,
        ..AnalyzeOptions::new(root)
    }
}

/// `eval.json` of hkd 0.1's `hkd-eval run --set cinic=…`.
const EVAL_0_1: &str = r#"{
  "hkd_version": "0.1.0",
  "settings_hash": "5e771265",
  "weights": "best.safetensors",
  "sets": {
    "cinic": {
      "source": "/data/hkd:cinic",
      "images": 500,
      "accuracy": 0.5,
      "ce_mean": 1.25,
      "ce_sum_batch_means": 5.0,
      "ce_batch_size": 128,
      "ece": 0.125,
      "brier": 0.625,
      "human": {
        "ce": 1.5,
        "kl": 0.75,
        "majority_agreement": 0.5
      },
      "attacks": []
    }
  }
}"#;

/// Writes the hkd 0.1 run under `root` at its 0.1 path, file by file (not through
/// today's hkd_rundir), and returns its directory. (That hkd-eval evaluates such a run
/// with real weights is tested in bins/hkd-eval/tests/cli.rs.)
fn write_run_0_1(root: &Path) -> PathBuf {
    let dir = root.join("human/plane2").join(run_0_1::NAME);
    std::fs::create_dir_all(&dir).unwrap();
    let config = run_0_1::config("/data/hkd", "val");
    for (file, text) in [
        ("config.toml", config.as_str()),
        ("metrics.jsonl", run_0_1::METRICS),
        ("best.json", run_0_1::BEST),
        ("last.json", run_0_1::LAST),
        ("eval.json", EVAL_0_1),
    ] {
        std::fs::write(dir.join(file), text).unwrap();
    }
    // (safetensors, whose format did not change; the analysis reads their header only)
    for weights in ["best.safetensors", "last.safetensors"] {
        std::fs::write(dir.join(weights), weights_bytes()).unwrap();
    }
    dir
}

/// The configuration of the hkd 0.1 run, as a run of today (repeat `iter`).
fn same_configuration_today(iter: u32, best_acc: f64, best_loss: f64) -> Spec {
    Spec::new(TeacherSpec::Human, 0.25, iter, best_acc, best_loss)
        .student("plane2")
        .distil(DistilFn::Ce)
        .with(|s| {
            s.seed = 7;
            s.loss.as_hkd_mut().unwrap().temperature_human = 2.0;
            s.loss.as_hkd_mut().unwrap().kl_reduction = KlReduction::ElementwiseMean;
            s.loss.as_hkd_mut().unwrap().human_smoothing = 0.02;
            s.training.epochs = 3;
            s.training.batch_size = 64;
            s.optimizer.lr = 0.05;
            s.optimizer.weight_decay = 1e-4;
        })
}

#[test]
fn a_run_directory_of_hkd_0_1_is_analysed_with_its_hyperparameters() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_run_0_1(root);
    let today = same_configuration_today(0, 0.625, 1.25);
    write_run(root, &today);
    write_run(
        root,
        &same_configuration_today(0, 0.5, 1.0).with(|s| s.loss.as_hkd_mut().unwrap().lambda = 0.5),
    );

    let report = analyze(&tables_only(root)).unwrap();
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(report.runs, 3);

    let runs = Csv::read(&report.out_dir.join("runs.csv"));
    let old = runs.row(&[("run_dir", &format!("human/plane2/{}", run_0_1::NAME))]);
    for (column, value) in [
        // the settings hkd 0.1 recorded
        ("run_name", run_0_1::NAME),
        ("hkd_version", "0.1.0"),
        ("teacher", "human"),
        ("mode", "human"),
        ("student", "plane2"),
        ("distil_fn", "CE"),
        ("lambda", "0.25"),
        ("gamma", "0.0"),
        ("temperature_teacher", "1.0"),
        ("temperature_human", "2.0"),
        ("kl_reduction", "elementwise_mean"),
        ("human_smoothing", "0.02"),
        ("epochs", "3"),
        ("batch_size", "64"),
        ("lr", "0.05"),
        ("momentum", "0.9"),
        ("weight_decay", "0.0001"),
        ("scheduler", "plateau"),
        ("seed", "7"),
        ("iter", "1"),
        ("classes", "10"),
        ("train_split", "train"),
        ("val_split", "val"),
        ("data_manifest_hash", "feedbeef"),
        ("data_dir", "/data/hkd"),
        // the settings hkd 0.1 did not record in config.toml: their defaults
        ("eval_batch_size", "512"),
        ("max_batches", ""),
        ("human_target", "log"),
        ("label_smoothing", "0.0"),
        ("plateau_factor", "0.9"),
        ("plateau_patience", "5"),
        // its results
        ("epochs_recorded", "3"),
        ("best_epoch", "2"),
        ("val_acc", "0.375"),
        ("val_loss", "1.75"),
        ("final_val_acc", "0.3125"),
        ("eval_cinic_acc", "0.5"),
        ("eval_cinic_ce_sum_batch_means", "5.0"),
        ("eval_cinic_human_ce", "1.5"),
    ] {
        assert_eq!(runs.s(old, column), value, "{column}");
    }

    // The old run and today's run of the same configuration are repeats of one group;
    // the other λ is another group, and nothing else varies.
    assert_eq!(report.groups, 2);
    assert!(
        report.grouping.added.is_empty(),
        "{:?}",
        report.grouping.added
    );
    assert!(
        report.grouping.warnings.is_empty(),
        "{:?}",
        report.grouping.warnings
    );
    let avg = Csv::read(&report.out_dir.join("average_results.csv"));
    let r = avg.row(&[("distil_fn", "CE"), ("lambda", "0.25")]);
    assert_eq!(avg.s(r, "student"), "plane2");
    assert_eq!(avg.s(r, "temperature_human"), "2.0");
    assert_eq!(avg.f(r, "runs"), 2.0);
    assert_eq!(avg.f(r, "val_acc_mean"), 0.5);
    assert_eq!(avg.f(r, "val_acc_max"), 0.625);
    assert_eq!(avg.s(r, "best_run_dir"), today.rel_dir());
    assert_eq!(avg.f(r, "eval_cinic_runs"), 1.0);
    assert_eq!(avg.f(r, "val_acc_cin"), 50.0);

    // Figures and summary too.
    let report = analyze(&AnalyzeOptions::new(root)).unwrap();
    assert!(!report.figures.is_empty());
    let summary = std::fs::read_to_string(&report.summary).unwrap();
    assert!(summary.contains("plane2"), "{summary}");
}

#[test]
fn a_grid_of_hkd_0_1_runs_only_is_analysed() {
    let dir = tempfile::tempdir().unwrap();
    let run = write_run_0_1(dir.path());
    let report = analyze(&tables_only(dir.path())).unwrap();
    assert_eq!((report.runs, report.groups), (1, 1));
    let (path, best) = report.grid_best.clone().unwrap();
    assert_eq!(path, dir.path().join("best.json"));
    assert_eq!(best.run_dir, Path::new("human/plane2").join(run_0_1::NAME));
    assert_eq!(best.group["lambda"], "0.25");
    assert_eq!(best.group["distil_fn"], "CE");
    assert_eq!(best.mean_val_acc, 0.375);
    assert_eq!(dir.path().join(&best.run_dir), run);
}
