//! hkd-analysis on run directories with known numbers.

use std::path::Path;

use crate::common::*;
use hkd_analysis::*;
use hkd_rundir::{
    GridBest, HumanTarget, KlReduction, RunDir, RunSpec, SchedulerKind, TeacherSpec, best_run_under,
};

fn tables_only(root: &Path) -> AnalyzeOptions {
    AnalyzeOptions {
        figures: false,
        ..AnalyzeOptions::new(root)
    }
}

const KL05: [(&str, &str); 3] = [("teacher", "human"), ("distil_fn", "KL"), ("lambda", "0.5")];
const CE05: [(&str, &str); 3] = [("teacher", "human"), ("distil_fn", "CE"), ("lambda", "0.5")];
const KL10: [(&str, &str); 3] = [("teacher", "human"), ("distil_fn", "KL"), ("lambda", "1.0")];
const BASE: [(&str, &str); 1] = [("teacher", "baseline")];

#[test]
fn averages_over_repeats_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    write_grid(dir.path());
    let report = analyze(&tables_only(dir.path())).unwrap();
    assert_eq!((report.runs, report.groups), (8, 4));
    assert!(report.skipped.is_empty());
    assert_eq!(
        report.grouping.keys,
        DEFAULT_GROUP_KEYS.map(String::from).to_vec(),
        "nothing else varies, so the default keys are used as they are"
    );

    let avg = Csv::read(&report.out_dir.join("average_results.csv"));
    // sorted by the keys: baseline < human; CE < KL; λ ascending
    let order: Vec<(&str, &str, &str)> = avg
        .rows
        .iter()
        .map(|r| {
            (
                avg.s(r, "teacher"),
                avg.s(r, "distil_fn"),
                avg.s(r, "lambda"),
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            ("baseline", "KL", "0.0"),
            ("human", "CE", "0.5"),
            ("human", "KL", "0.5"),
            ("human", "KL", "1.0")
        ]
    );

    let r = avg.row(&KL05);
    assert_eq!(avg.f(r, "runs"), 3.0);
    assert_eq!(avg.f(r, "val_acc_mean"), 0.5);
    assert_eq!(avg.f(r, "val_acc_std"), 0.25, "sample std, ddof = 1");
    assert_eq!(avg.f(r, "val_loss_mean"), 1.5);
    assert_eq!(avg.f(r, "val_loss_std"), 0.5);
    assert_eq!(avg.f(r, "val_acc_max"), 0.75);
    assert_eq!(avg.f(r, "best_iter"), 1.0);
    assert_eq!(
        avg.s(r, "best_run_dir"),
        Spec::new(TeacherSpec::Human, 0.5, 1, 0.75, 1.0).rel_dir()
    );
    assert_eq!(avg.f(r, "best_epoch_mean"), 3.0);
    assert_eq!(avg.f(r, "train_seconds_mean"), 8.0);
    // the original's names and units: percent, same loss
    assert_eq!(avg.f(r, "val_acc"), 50.0);
    assert_eq!(avg.f(r, "max_acc"), 75.0);
    assert_eq!(avg.f(r, "val_loss"), 1.5);
    assert_eq!(avg.f(r, "temperature_h"), 1.0);
    assert_eq!(avg.f(r, "temperature_t"), 1.0);

    // tie on accuracy: the lower validation loss wins
    let r = avg.row(&CE05);
    assert_eq!(avg.f(r, "val_acc_mean"), 0.5);
    assert_eq!(avg.f(r, "val_acc_std"), 0.0);
    assert_eq!(avg.f(r, "val_loss_mean"), 1.0);
    assert_eq!(avg.f(r, "val_loss_std"), 0.125f64.sqrt());
    assert_eq!(avg.f(r, "best_iter"), 1.0);

    // one run: no std (empty cell, as pandas' NaN)
    let r = avg.row(&BASE);
    assert_eq!(avg.f(r, "runs"), 1.0);
    assert_eq!(avg.f(r, "val_acc_mean"), 0.625);
    assert_eq!(avg.s(r, "val_acc_std"), "");
    assert_eq!(avg.s(r, "val_loss_std"), "");
    assert_eq!(avg.f(r, "best_iter"), 0.0);

    let r = avg.row(&KL10);
    assert_eq!(avg.f(r, "val_acc_mean"), 0.75);
    assert_eq!(avg.f(r, "val_acc_std"), 0.03125f64.sqrt());
    assert_eq!(avg.f(r, "best_iter"), 0.0);
}

#[test]
fn evaluation_columns_average_over_the_runs_that_have_them() {
    let dir = tempfile::tempdir().unwrap();
    write_grid(dir.path());
    let report = analyze(&tables_only(dir.path())).unwrap();

    let runs = Csv::read(&report.out_dir.join("runs.csv"));
    assert_eq!(runs.rows.len(), 8);
    for c in [
        "eval_cinic_acc",
        "eval_cinic_ce",
        "eval_cinic_ce_sum_batch_means",
        "eval_cinic_human_ce",
        "eval_cinic_human_kl",
        "eval_cinic_human_majority_agreement",
        "eval_cinic_fgsm_eps2_255_acc",
        "eval_cinic_pgd_eps8_255_ce",
        "eval_imagenet_far_acc",
        "eval_imagenet_far_ece",
    ] {
        assert!(runs.has(c), "runs.csv lacks {c}");
    }
    assert!(
        !runs.has("eval_imagenet_far_human_ce"),
        "no run has human labels on imagenet_far"
    );
    let evaluated = runs
        .rows
        .iter()
        .filter(|r| !runs.s(r, "eval_cinic_acc").is_empty())
        .count();
    assert_eq!(evaluated, 2);

    let avg = Csv::read(&report.out_dir.join("average_results.csv"));
    let r = avg.row(&KL05);
    assert_eq!(avg.f(r, "eval_cinic_runs"), 2.0);
    assert_eq!(avg.f(r, "eval_cinic_acc_mean"), 0.625);
    assert_eq!(avg.f(r, "eval_cinic_acc_std"), 0.03125f64.sqrt());
    assert_eq!(avg.f(r, "eval_cinic_ce_mean"), 0.75);
    assert_eq!(avg.f(r, "eval_cinic_human_ce_mean"), 1.25);
    assert_eq!(avg.f(r, "eval_cinic_ece_mean"), 0.125);
    assert_eq!(avg.f(r, "eval_cinic_ece_std"), 0.0);
    assert_eq!(avg.f(r, "eval_cinic_fgsm_eps2_255_acc_mean"), 0.3125);
    assert_eq!(avg.f(r, "eval_cinic_pgd_eps8_255_acc_mean"), 0.15625);
    assert_eq!(avg.f(r, "eval_imagenet_far_acc_mean"), 0.375);
    // the original's generalisation columns
    assert_eq!(avg.f(r, "val_acc_cin"), 62.5);
    assert_eq!(
        avg.f(r, "val_loss_cin"),
        6.0,
        "mean of the sums of batch means"
    );
    assert_eq!(avg.f(r, "max_acc_cin"), 75.0);
    assert_eq!(avg.f(r, "best_iter_cin"), 1.0);
    assert_eq!(avg.f(r, "val_acc_im"), 37.5);
    assert_eq!(avg.f(r, "val_loss_im"), 14.0);
    assert_eq!(avg.f(r, "max_acc_im"), 50.0);
    assert_eq!(avg.f(r, "best_iter_im"), 1.0);

    // a group without evaluation: zero evaluated runs and empty cells, not zeros
    let r = avg.row(&CE05);
    assert_eq!(avg.f(r, "eval_cinic_runs"), 0.0);
    for c in [
        "eval_cinic_acc_mean",
        "val_acc_cin",
        "val_loss_cin",
        "max_acc_cin",
        "best_iter_cin",
        "val_acc_im",
    ] {
        assert_eq!(avg.s(r, c), "", "{c} should be empty");
    }
}

#[test]
fn grid_best_json_names_the_best_group_and_its_best_run() {
    let dir = tempfile::tempdir().unwrap();
    write_grid(dir.path());
    let report = analyze(&tables_only(dir.path())).unwrap();
    let (path, best) = report.grid_best.clone().unwrap();
    assert_eq!(path, dir.path().join("best.json"));
    let on_disk: GridBest = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(on_disk, best);
    assert_eq!(best.mean_val_acc, 0.75);
    assert_eq!(best.std_val_acc, 0.03125f64.sqrt());
    assert_eq!(best.runs, 2);
    assert_eq!(best.group["teacher"], "human");
    assert_eq!(best.group["distil_fn"], "KL");
    assert_eq!(best.group["lambda"], "1.0");
    assert_eq!(best.group.len(), 7);
    assert_eq!(
        best.run_dir,
        Path::new(&Spec::new(TeacherSpec::Human, 1.0, 0, 0.875, 0.5).rel_dir())
    );
    // what `hkd-train --teacher best:<grid>` resolves
    let (run, record) = best_run_under(dir.path()).unwrap();
    assert_eq!(run.path(), dir.path().join(&best.run_dir));
    assert_eq!(record.val_acc, 0.875);
}

#[test]
fn best_group_ties_on_accuracy_go_to_the_lower_loss() {
    let dir = tempfile::tempdir().unwrap();
    let h = || TeacherSpec::Human;
    // both groups average 0.5; λ=1 has the lower mean loss; one-run group has std 0 in best.json
    write_run(dir.path(), &Spec::new(h(), 0.5, 0, 0.25, 1.0));
    write_run(dir.path(), &Spec::new(h(), 0.5, 1, 0.75, 1.0));
    write_run(dir.path(), &Spec::new(h(), 1.0, 0, 0.5, 0.5));
    let report = analyze(&tables_only(dir.path())).unwrap();
    let (_, best) = report.grid_best.unwrap();
    assert_eq!(best.group["lambda"], "1.0");
    assert_eq!(best.runs, 1);
    assert_eq!(best.std_val_acc, 0.0);
}

#[test]
fn varying_hyperparameters_join_the_default_keys() {
    let dir = tempfile::tempdir().unwrap();
    let h = || TeacherSpec::Human;
    write_run(dir.path(), &Spec::new(h(), 0.5, 0, 0.5, 1.0));
    write_run(dir.path(), &Spec::new(h(), 0.5, 1, 0.75, 1.0));
    // another lr gives another run name (`…+lr=0.05`), beside the others
    write_run(dir.path(), &Spec::new(h(), 0.5, 0, 0.25, 2.0).lr(0.05));
    write_run(
        dir.path(),
        &Spec::new(h(), 0.5, 0, 0.125, 2.0).student("resnet20"),
    );
    let report = analyze(&tables_only(dir.path())).unwrap();
    assert_eq!(report.grouping.added, ["lr"]);
    assert_eq!(report.groups, 3);
    let avg = Csv::read(&report.out_dir.join("average_results.csv"));
    let r = avg.row(&[("student", "resnet8"), ("lr", "0.1")]);
    assert_eq!(avg.f(r, "val_acc_mean"), 0.625);
    let r = avg.row(&[("student", "resnet8"), ("lr", "0.05")]);
    assert_eq!(avg.f(r, "val_acc_mean"), 0.25);
    let r = avg.row(&[("student", "resnet20")]);
    assert_eq!(avg.f(r, "val_acc_mean"), 0.125);
    assert!(
        report.grouping.warnings.is_empty(),
        "{:?}",
        report.grouping.warnings
    );
}

#[test]
fn group_by_overrides_the_keys_and_warns_about_what_it_averages_over() {
    let dir = tempfile::tempdir().unwrap();
    write_grid(dir.path());
    let opts = AnalyzeOptions {
        group_by: Some(vec!["teacher".into()]),
        ..tables_only(dir.path())
    };
    let report = analyze(&opts).unwrap();
    assert_eq!(report.grouping.keys, ["teacher"]);
    let avg = Csv::read(&report.out_dir.join("average_results.csv"));
    assert_eq!(
        avg.header[..3],
        ["teacher", "runs", "val_acc_mean"].map(String::from)
    );
    assert!(
        !avg.has("temperature_h"),
        "legacy key aliases only for key columns"
    );
    let r = avg.row(&[("teacher", "human")]);
    assert_eq!(avg.f(r, "runs"), 7.0);
    // 0.25 + 0.75 + 0.5 + 0.5 + 0.5 + 0.875 + 0.625 = 4
    assert!((avg.f(r, "val_acc_mean") - 4.0 / 7.0).abs() < 1e-15);
    assert_eq!(avg.f(r, "val_acc_max"), 0.875);
    assert_eq!(avg.f(r, "best_iter"), 0.0);
    let warned = report.grouping.warnings.join("\n");
    assert!(
        warned.contains("`distil_fn`") && warned.contains("`lambda`"),
        "{warned}"
    );
    assert!(
        warned.contains("same configuration with the same iter"),
        "repeats with equal iter inside a group are reported: {warned}"
    );

    let bad = AnalyzeOptions {
        group_by: Some(vec!["teacher".into(), "learning_rate".into()]),
        ..tables_only(dir.path())
    };
    let e = analyze(&bad).unwrap_err().to_string();
    assert!(e.contains("learning_rate") && e.contains("lambda"), "{e}");
}

#[test]
fn half_written_and_corrupt_runs_are_left_out_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let h = || TeacherSpec::Human;
    write_run(root, &Spec::new(h(), 0.5, 0, 0.5, 1.0));
    write_run(root, &Spec::new(h(), 0.5, 1, 0.75, 1.0));

    // config.toml only: the trainer just started
    let s = Spec::new(h(), 0.5, 2, 0.0, 0.0);
    let c = s.config();
    let started = c.run_dir_in(root);
    started.create().unwrap();
    started.write_config(&c).unwrap();
    // stopped after 2 of 4 epochs
    let unfinished = write_run(root, &Spec::new(h(), 0.5, 3, 0.875, 0.5));
    let mut state = unfinished.read_state().unwrap();
    state.finished = false;
    state.epochs_completed = 2;
    unfinished.write_state(&state).unwrap();
    // finished, but a metrics line is corrupt
    let corrupt_metrics = write_run(root, &Spec::new(h(), 0.5, 4, 0.875, 0.5));
    let text = std::fs::read_to_string(corrupt_metrics.file(RunDir::METRICS)).unwrap();
    std::fs::write(
        corrupt_metrics.file(RunDir::METRICS),
        text.replacen("{\"epoch\":2", "{\"epoch\":2,,", 1),
    )
    .unwrap();
    // finished, without best.json
    let no_best = write_run(root, &Spec::new(h(), 0.5, 5, 0.875, 0.5));
    std::fs::remove_file(no_best.file(RunDir::BEST)).unwrap();
    // unparsable config
    let bad_config = write_run(root, &Spec::new(h(), 0.5, 6, 0.875, 0.5));
    std::fs::write(bad_config.file(RunDir::CONFIG), "student = [").unwrap();
    // truncated last.json
    let bad_state = write_run(root, &Spec::new(h(), 0.5, 7, 0.875, 0.5));
    std::fs::write(bad_state.file(RunDir::LAST), "{\"epochs_comp").unwrap();
    // corrupt eval.json: the run stays, without evaluation data
    let bad_eval = write_run(
        root,
        &Spec::new(h(), 0.5, 8, 0.25, 2.0).eval_set("cinic", 0.5, 1.0, 8.0, None),
    );
    std::fs::write(bad_eval.file(RunDir::EVAL), "{").unwrap();
    // finished, but best.safetensors (what `--teacher best:` and hkd-eval load) is cut off
    let cut_weights = write_run(root, &Spec::new(h(), 0.5, 9, 0.875, 0.5));
    let bytes = weights_bytes();
    std::fs::write(
        cut_weights.file(RunDir::BEST_WEIGHTS),
        &bytes[..bytes.len() - 4],
    )
    .unwrap();

    let report = analyze(&tables_only(root)).unwrap();
    assert_eq!(report.runs, 3);
    let reasons: Vec<(&Path, &str)> = report
        .skipped
        .iter()
        .map(|s| (s.dir.as_path(), s.reason.as_str()))
        .collect();
    assert_eq!(reasons.len(), 7, "{reasons:#?}");
    let reason = |run: &RunDir| {
        reasons
            .iter()
            .find(|(dir, _)| *dir == run.path())
            .map(|(_, r)| *r)
            .unwrap_or_else(|| panic!("{} is not skipped: {reasons:#?}", run.path().display()))
    };
    assert_eq!(reason(&started), "unfinished (no last.json yet)");
    assert_eq!(reason(&unfinished), "unfinished (2 of 4 epochs done)");
    assert!(
        reason(&corrupt_metrics).contains("metrics.jsonl")
            && reason(&corrupt_metrics).contains("line 2"),
        "{}",
        reason(&corrupt_metrics)
    );
    assert!(
        reason(&no_best).contains("best.json"),
        "{}",
        reason(&no_best)
    );
    assert!(
        reason(&bad_config).contains("config.toml"),
        "{}",
        reason(&bad_config)
    );
    assert!(
        reason(&bad_state).starts_with("unfinished (last.json unreadable"),
        "{}",
        reason(&bad_state)
    );
    assert!(
        reason(&cut_weights).contains("best.safetensors"),
        "{}",
        reason(&cut_weights)
    );
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(
        report.warnings[0].contains("eval.json"),
        "{}",
        report.warnings[0]
    );

    let avg = Csv::read(&report.out_dir.join("average_results.csv"));
    assert_eq!(avg.rows.len(), 1);
    let r = &avg.rows[0];
    assert_eq!(avg.f(r, "runs"), 3.0);
    assert_eq!(avg.f(r, "val_acc_mean"), 0.5);
    assert!(
        !avg.has("eval_cinic_runs"),
        "the only eval.json was unreadable"
    );

    let summary = std::fs::read_to_string(&report.summary).unwrap();
    assert!(summary.contains("7 run directories left out"), "{summary}");
    assert!(summary.contains("no last.json yet"));
}

#[test]
fn runs_whose_weights_were_not_kept_are_analysed_from_their_records() {
    // a results archive (docs/results/study3/archive) keeps every run file but the weights
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let h = || TeacherSpec::Human;
    let kept = write_run(root, &Spec::new(h(), 0.5, 0, 0.5, 1.0));
    let archived = write_run(root, &Spec::new(h(), 0.5, 1, 0.75, 1.0));
    for weights in [RunDir::BEST_WEIGHTS, RunDir::LAST_WEIGHTS] {
        std::fs::remove_file(archived.file(weights)).unwrap();
    }
    let report = analyze(&tables_only(root)).unwrap();
    assert_eq!(report.runs, 2, "{:?}", report.skipped);
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    let avg = Csv::read(&report.out_dir.join("average_results.csv"));
    assert_eq!(avg.f(&avg.rows[0], "val_acc_mean"), 0.625);
    assert!(kept.file(RunDir::BEST_WEIGHTS).is_file());
}

#[test]
fn a_grid_of_only_unfinished_runs_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let run = write_run(dir.path(), &Spec::new(TeacherSpec::Human, 0.5, 0, 0.5, 1.0));
    std::fs::remove_file(run.file(RunDir::LAST)).unwrap();
    let e = analyze(&tables_only(dir.path())).unwrap_err();
    assert!(
        matches!(
            e,
            AnalysisError::NoRuns {
                found: 1,
                skipped: 1,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains(&dir.path().display().to_string()));
    let e = analyze(&tables_only(&dir.path().join("missing"))).unwrap_err();
    assert!(e.to_string().contains("missing"), "{e}");
}

#[test]
fn a_single_run_directory_gets_tables_but_keeps_its_own_best_json() {
    let dir = tempfile::tempdir().unwrap();
    let run = write_run(dir.path(), &Spec::new(TeacherSpec::Human, 0.5, 0, 0.5, 1.0));
    let before = std::fs::read_to_string(run.file(RunDir::BEST)).unwrap();
    let report = analyze(&tables_only(run.path())).unwrap();
    assert_eq!(report.runs, 1);
    assert!(report.grid_best.is_none());
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("itself a run directory"))
    );
    assert_eq!(
        std::fs::read_to_string(run.file(RunDir::BEST)).unwrap(),
        before
    );
    let runs = Csv::read(&report.out_dir.join("runs.csv"));
    assert_eq!(runs.s(&runs.rows[0], "run_dir"), ".");
}

#[test]
fn parquet_holds_the_same_tables() {
    use polars::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    write_grid(dir.path());
    let opts = AnalyzeOptions {
        parquet: true,
        ..tables_only(dir.path())
    };
    let report = analyze(&opts).unwrap();
    let names: Vec<String> = report
        .tables
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "runs.csv",
            "runs.parquet",
            "average_results.csv",
            "average_results.parquet"
        ]
    );
    let file = std::fs::File::open(report.out_dir.join("average_results.parquet")).unwrap();
    let df = ParquetReader::new(file).finish().unwrap();
    let grid = load_grid(dir.path()).unwrap();
    let analysis = analyze_loaded(&grid, None).unwrap();
    assert!(df.equals_missing(&analysis.averages));
    let file = std::fs::File::open(report.out_dir.join("runs.parquet")).unwrap();
    let df = ParquetReader::new(file).finish().unwrap();
    assert_eq!(df.height(), 8);
    assert!(df.equals_missing(&analysis.table.frame));
}

#[test]
fn runs_table_has_every_hyperparameter_and_training_result() {
    let dir = tempfile::tempdir().unwrap();
    write_run(
        dir.path(),
        &Spec::new(
            teacher_run("human-resnet20-KL-th1.0-tt1.0-l1.0-g0.0-i0"),
            0.5,
            3,
            0.5,
            1.0,
        ),
    );
    let grid = load_grid(dir.path()).unwrap();
    let table = runs_table(&grid.runs).unwrap();
    let df = &table.frame;
    assert_eq!(df.height(), 1);
    let get = |c: &str| any_value_string(&df.column(c).unwrap().get(0).unwrap());
    assert_eq!(get("teacher"), "human-resnet20-KL-th1.0-tt1.0-l1.0-g0.0-i0");
    assert_eq!(get("mode"), "student");
    assert_eq!(get("teacher_arch"), "resnet20");
    assert_eq!(get("iter"), "3");
    assert_eq!(get("seed"), "103");
    assert_eq!(get("lambda"), "0.5");
    assert_eq!(get("weight_decay"), "0.0005");
    assert_eq!(get("kl_reduction"), "batchmean");
    assert_eq!(get("scheduler"), "plateau");
    assert_eq!(get("epochs_recorded"), "4");
    assert_eq!(get("best_epoch"), "3");
    assert_eq!(get("val_acc"), "0.5");
    assert_eq!(get("final_val_acc"), "0.49");
    assert_eq!(get("final_val_loss"), "1.1");
    assert_eq!(get("train_seconds"), "8.0");
    assert_eq!(get("images_per_s"), "500.0");
    assert_eq!(get("final_lr"), hkd_rundir::py_float(0.1 * 0.9f64.powi(3)));
    // the settings the specification added, at the values the run recorded (its defaults)
    assert_eq!(get("epochs"), "4");
    assert_eq!(get("batch_size"), "128");
    assert_eq!(get("eval_batch_size"), "512");
    assert_eq!(get("max_batches"), "", "unset: an empty cell");
    assert_eq!(get("human_smoothing"), "0.0");
    assert_eq!(get("human_target"), "log");
    assert_eq!(get("label_smoothing"), "0.0");
    assert_eq!(get("plateau_factor"), "0.9");
    assert_eq!(get("plateau_patience"), "5");
    assert_eq!(get("step_milestones"), "0.5,0.75");
    assert_eq!(get("step_gamma"), "0.1");
    assert_eq!(get("cosine_min_lr"), "0.0");
    assert_eq!(get("train_split"), "train");
    assert_eq!(get("data_manifest_hash"), "feedbeef");
    assert_eq!(get("data_dir"), "/data/hkd");
    assert!(table.eval_sets.is_empty());
    for k in groupable_columns() {
        assert!(df.column(&k).is_ok(), "group key {k} is not a column");
    }
}

/// The hyperparameter columns: the identity settings of `RunSpec` (default group keys
/// first, then the specification's order), then the dataset's; a new setting of the
/// specification becomes a column (and a group key candidate) by itself.
#[test]
fn runs_csv_has_a_column_for_every_setting_of_the_specification() {
    let dir = tempfile::tempdir().unwrap();
    let spec = Spec::new(TeacherSpec::Human, 0.5, 1, 0.5, 1.0).with(|s| {
        s.loss.as_hkd_mut().unwrap().human_target = HumanTarget::Pilot;
        s.loss.as_hkd_mut().unwrap().label_smoothing = 0.125;
        s.training.eval_batch_size = 256;
        s.training.max_batches = Some(7);
        s.schedule.scheduler = SchedulerKind::Step;
        s.schedule.plateau_factor = 0.5;
        s.schedule.plateau_patience = 3;
        s.schedule.step_milestones = vec![0.25, 0.5];
        s.schedule.step_gamma = 0.2;
        s.schedule.cosine_min_lr = 0.001;
        s.data.val_split = "val5k".into();
    });
    write_run(dir.path(), &spec);
    let report = analyze(&tables_only(dir.path())).unwrap();
    let runs = Csv::read(&report.out_dir.join("runs.csv"));
    let hyperparameters = [
        "teacher",
        "student",
        "distil_fn",
        "lambda",
        "gamma",
        "temperature_teacher",
        "temperature_human",
        "train_split",
        "val_split",
        "objective",
        "kl_reduction",
        "human_smoothing",
        "human_target",
        "label_smoothing",
        // the settings of the other objectives (kd, dkd, dist), each once
        "temperature",
        "ce_weight",
        "kl_weight",
        "logit_std",
        "alpha_tckd",
        "beta_nckd",
        "warmup_epochs",
        "beta_inter",
        "gamma_intra",
        "epochs",
        "batch_size",
        "eval_batch_size",
        "max_batches",
        "lr",
        "momentum",
        "weight_decay",
        "scheduler",
        "plateau_factor",
        "plateau_patience",
        "step_milestones",
        "step_gamma",
        "cosine_min_lr",
        "classes",
        "data_manifest_hash",
    ];
    let expected: Vec<&str> = ["run_dir", "run_name"]
        .into_iter()
        .chain(hyperparameters)
        .chain([
            "mode",
            "teacher_arch",
            "iter",
            "seed",
            "device",
            "hkd_version",
            "data_dir",
            "epochs_recorded",
        ])
        .collect();
    assert_eq!(runs.header[..expected.len()], expected);
    assert_eq!(
        other_hyperparameters(),
        hyperparameters[DEFAULT_GROUP_KEYS.len()..],
        "the non-default hyperparameters, in table order"
    );
    for key in RunSpec::identity_keys() {
        assert!(
            runs.has(&key) && groupable_columns().contains(&key),
            "identity setting {key} is not a groupable column"
        );
    }

    let r = &runs.rows[0];
    assert_eq!(runs.s(r, "run_dir"), spec.rel_dir());
    assert_eq!(runs.s(r, "run_name"), spec.run.run_name());
    for (column, value) in [
        ("val_split", "val5k"),
        ("human_target", "pilot"),
        ("label_smoothing", "0.125"),
        ("eval_batch_size", "256"),
        ("max_batches", "7"),
        ("scheduler", "step"),
        ("plateau_factor", "0.5"),
        ("plateau_patience", "3"),
        ("step_milestones", "0.25,0.5"),
        ("step_gamma", "0.2"),
        ("cosine_min_lr", "0.001"),
        ("seed", "101"),
        ("iter", "1"),
    ] {
        assert_eq!(runs.s(r, column), value, "{column}");
    }
}

/// Runs that differ in one hyperparameter only are different configurations: with the
/// default grouping the setting joins the keys and they are not averaged together.
#[test]
fn a_setting_that_varies_keeps_its_runs_apart() {
    type Change = fn(&mut RunSpec);
    let changes: [(&str, &str, Change); 14] = [
        ("label_smoothing", "0.1", |s| {
            s.loss.as_hkd_mut().unwrap().label_smoothing = 0.1
        }),
        ("human_target", "pilot", |s| {
            s.loss.as_hkd_mut().unwrap().human_target = HumanTarget::Pilot
        }),
        ("human_smoothing", "0.001", |s| {
            s.loss.as_hkd_mut().unwrap().human_smoothing = 0.001
        }),
        ("kl_reduction", "elementwise_mean", |s| {
            s.loss.as_hkd_mut().unwrap().kl_reduction = KlReduction::ElementwiseMean
        }),
        ("lr", "0.05", |s| s.optimizer.lr = 0.05),
        ("eval_batch_size", "100", |s| {
            s.training.eval_batch_size = 100
        }),
        ("max_batches", "3", |s| s.training.max_batches = Some(3)),
        ("epochs", "6", |s| s.training.epochs = 6),
        ("plateau_factor", "0.5", |s| s.schedule.plateau_factor = 0.5),
        ("plateau_patience", "2", |s| s.schedule.plateau_patience = 2),
        ("step_milestones", "0.3", |s| {
            s.schedule.step_milestones = vec![0.3]
        }),
        ("step_gamma", "0.5", |s| s.schedule.step_gamma = 0.5),
        ("cosine_min_lr", "0.01", |s| s.schedule.cosine_min_lr = 0.01),
        ("train_split", "train8k", |s| {
            s.data.train_split = "train8k".into()
        }),
    ];
    for (key, value, change) in changes {
        let dir = tempfile::tempdir().unwrap();
        let h = || TeacherSpec::Human;
        write_run(dir.path(), &Spec::new(h(), 0.5, 0, 0.5, 1.0));
        write_run(dir.path(), &Spec::new(h(), 0.5, 1, 0.75, 1.0));
        let other = Spec::new(h(), 0.5, 0, 0.25, 2.0).with(change);
        write_run(dir.path(), &other);
        let report = analyze(&tables_only(dir.path())).unwrap();
        assert_eq!(report.runs, 3, "{key}");
        assert_eq!(report.grouping.added, [key], "{key}");
        assert_eq!(report.groups, 2, "{key}");
        assert!(
            report.grouping.warnings.is_empty(),
            "{key}: {:?}",
            report.grouping.warnings
        );
        let avg = Csv::read(&report.out_dir.join("average_results.csv"));
        let r = avg.row(&[(key, value)]);
        assert_eq!(avg.f(r, "runs"), 1.0, "{key}");
        assert_eq!(avg.f(r, "val_acc_mean"), 0.25, "{key}");
        assert_eq!(avg.s(r, "best_run_dir"), other.rel_dir(), "{key}");
        let rest: Vec<&Vec<String>> = avg.rows.iter().filter(|row| *row != r).collect();
        assert_eq!(avg.f(rest[0], "runs"), 2.0, "{key}");
        assert_eq!(avg.f(rest[0], "val_acc_mean"), 0.625, "{key}");
    }
}

#[test]
fn attack_tags_name_eps_in_255ths() {
    assert_eq!(attack_tag("fgsm", 2.0 / 255.0), "fgsm_eps2_255");
    assert_eq!(attack_tag("pgd", 8.0 / 255.0), "pgd_eps8_255");
    assert_eq!(attack_tag("pgd", 0.01), "pgd_eps0p01");
    assert_eq!(attack_tag("fgsm", 0.0), "fgsm_eps0p0");
}

#[test]
fn objectives_are_grouped_and_labelled_apart() {
    let dir = tempfile::tempdir().unwrap();
    let h = || TeacherSpec::Human;
    fn objective(
        name: &'static str,
        change: fn(&mut serde_json::Value),
    ) -> impl FnOnce(&mut RunSpec) {
        move |spec: &mut RunSpec| {
            let config = hkd_rundir::ObjectiveConfig::default_of(name).unwrap();
            let mut value = serde_json::to_value(config).unwrap();
            change(&mut value);
            spec.loss = serde_json::from_value(value).unwrap();
        }
    }
    let same: fn(&mut serde_json::Value) = |_| {};
    let t2: fn(&mut serde_json::Value) = |v| v["temperature"] = 2.0.into();
    for iter in 0..2 {
        let acc = |base: f64| base + 0.01 * iter as f64;
        write_run(dir.path(), &Spec::new(h(), 0.5, iter, acc(0.50), 1.0));
        write_run(
            dir.path(),
            &Spec::new(h(), 0.5, iter, acc(0.60), 1.0).with(objective("kd", same)),
        );
        write_run(
            dir.path(),
            &Spec::new(h(), 0.5, iter, acc(0.62), 1.0).with(objective("kd", t2)),
        );
        write_run(
            dir.path(),
            &Spec::new(h(), 0.5, iter, acc(0.70), 1.0).with(objective("dkd", same)),
        );
        write_run(
            dir.path(),
            &Spec::new(h(), 0.5, iter, acc(0.80), 1.0).with(objective("dist", same)),
        );
    }
    let report = analyze(&AnalyzeOptions::new(dir.path())).unwrap();
    assert_eq!((report.runs, report.groups), (10, 5));
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    for key in ["objective", "temperature"] {
        assert!(
            report.grouping.added.iter().any(|k| k == key),
            "{key}: {:?}",
            report.grouping.added
        );
    }
    let avg = Csv::read(&report.out_dir.join("average_results.csv"));
    let mean = |keys: &[(&str, &str)]| avg.f(avg.row(keys), "val_acc_mean");
    assert!((mean(&[("objective", "hkd")]) - 0.505).abs() < 1e-12);
    assert!((mean(&[("objective", "kd"), ("temperature", "4.0")]) - 0.605).abs() < 1e-12);
    assert!((mean(&[("objective", "kd"), ("temperature", "2.0")]) - 0.625).abs() < 1e-12);
    assert!((mean(&[("objective", "dkd")]) - 0.705).abs() < 1e-12);
    assert!((mean(&[("objective", "dist")]) - 0.805).abs() < 1e-12);
    // dkd's settings are columns, empty for the other objectives' runs.
    let runs = Csv::read(&report.out_dir.join("runs.csv"));
    assert!(runs.has("beta_nckd") && runs.has("gamma_intra"));
    let r = runs.row(&[("objective", "dkd"), ("iter", "0")]);
    assert_eq!(runs.f(r, "beta_nckd"), 8.0);
    let r = runs.row(&[("objective", "kd"), ("iter", "0"), ("temperature", "2.0")]);
    assert_eq!(runs.s(r, "beta_nckd"), "");
    // Each configuration's label in summary.md names its objective and what sets it apart.
    let summary = std::fs::read_to_string(report.out_dir.join("summary.md")).unwrap();
    for label in ["dkd", "dist", "temperature"] {
        assert!(summary.contains(label), "{label}: {summary}");
    }
}

/// KD papers report the best epoch's test accuracy (RepDistiller's and mdistiller's "best
/// accuracy", the maximum over epochs); the honest number is the last epoch's. Both are
/// reported per run and per group, each with mean, sd and a 95 % t-interval over repeats.
#[test]
fn best_and_last_epoch_accuracy_each_with_mean_sd_and_interval() {
    let dir = tempfile::tempdir().unwrap();
    // human KL λ=0.5, three repeats, (best epoch, last epoch) accuracy:
    //   iter 0: (0.5, 0.125), iter 1: (0.75, 0.625), iter 2: (0.625, 0.375)
    // the baseline, one run: (0.5, 0.375)
    let human = [(0, 0.5, 0.125), (1, 0.75, 0.625), (2, 0.625, 0.375)];
    for (iter, best, last) in human {
        write_run(
            dir.path(),
            &Spec::new(TeacherSpec::Human, 0.5, iter, best, 1.0).last_acc(last),
        );
    }
    write_run(
        dir.path(),
        &Spec::new(TeacherSpec::Baseline, 0.0, 0, 0.5, 1.0).last_acc(0.375),
    );
    let report = analyze(&tables_only(dir.path())).unwrap();
    assert_eq!((report.runs, report.groups), (4, 2));

    // per run: `val_acc` is best.json's, the maximum over the epochs of metrics.jsonl;
    // `final_val_acc` the last epoch's
    let runs = Csv::read(&report.out_dir.join("runs.csv"));
    for (iter, best, last) in human {
        let it = iter.to_string();
        let r = runs.row(&[("teacher", "human"), ("iter", it.as_str())]);
        assert_eq!(runs.f(r, "val_acc"), best);
        assert_eq!(runs.f(r, "final_val_acc"), last);
        let spec = Spec::new(TeacherSpec::Human, 0.5, iter, best, 1.0).last_acc(last);
        let epochs = spec.metrics();
        let max = epochs.iter().map(|m| m.val_acc).fold(f64::MIN, f64::max);
        assert_eq!(max, best, "best.json holds the maximum over epochs");
        assert_eq!(epochs.last().unwrap().val_acc, last);
    }

    let avg = Csv::read(&report.out_dir.join("average_results.csv"));
    let at = |name: &str| avg.col(name);
    let std = at("val_acc_std");
    assert_eq!(
        avg.header[std + 1..std + 8],
        [
            "val_acc_ci95_low",
            "val_acc_ci95_high",
            "val_acc_last_mean",
            "val_acc_last_std",
            "val_acc_last_ci95_low",
            "val_acc_last_ci95_high",
            "val_loss_mean",
        ]
        .map(String::from),
        "each accuracy's interval beside its mean and sd"
    );
    assert!(!avg.header.iter().any(|h| h.starts_with("__")));

    // t_{0.975, 2} = 4.302652730 (n = 3 repeats)
    let t2 = 4.302652730;
    // best epoch: mean (0.5 + 0.75 + 0.625) / 3 = 0.625; deviations −0.125, 0.125, 0, so
    // sd = √(0.03125 / 2) = 0.125; half-width 4.302652730 · 0.125 / √3 = 0.3105172139868…;
    // interval [0.3144827860131…, 0.9355172139868…]
    let r = avg.row(&[("teacher", "human")]);
    assert_eq!(avg.f(r, "runs"), 3.0);
    assert_eq!(avg.f(r, "val_acc_mean"), 0.625);
    assert_eq!(avg.f(r, "val_acc_std"), 0.125);
    let h = t2 * 0.125 / 3f64.sqrt();
    assert_eq!(avg.f(r, "val_acc_ci95_low"), 0.625 - h);
    assert_eq!(avg.f(r, "val_acc_ci95_high"), 0.625 + h);
    assert!((avg.f(r, "val_acc_ci95_low") - 0.3144827860131277).abs() < 1e-12);
    assert!((avg.f(r, "val_acc_ci95_high") - 0.9355172139868724).abs() < 1e-12);
    // last epoch: mean (0.125 + 0.625 + 0.375) / 3 = 0.375; deviations −0.25, 0.25, 0, so
    // sd = √(0.125 / 2) = 0.25; half-width 4.302652730 · 0.25 / √3 = 0.6210344279737…;
    // interval [−0.2460344279737…, 0.9960344279737…]
    assert_eq!(avg.f(r, "val_acc_last_mean"), 0.375);
    assert_eq!(avg.f(r, "val_acc_last_std"), 0.25);
    let h = t2 * 0.25 / 3f64.sqrt();
    assert_eq!(avg.f(r, "val_acc_last_ci95_low"), 0.375 - h);
    assert_eq!(avg.f(r, "val_acc_last_ci95_high"), 0.375 + h);
    assert!((avg.f(r, "val_acc_last_ci95_low") + 0.24603442797374464).abs() < 1e-12);
    assert!((avg.f(r, "val_acc_last_ci95_high") - 0.9960344279737446).abs() < 1e-12);
    // the existing columns are unchanged: best epoch, the original's percent
    assert_eq!(avg.f(r, "val_acc_max"), 0.75);
    assert_eq!(avg.f(r, "val_acc"), 62.5);

    // one run: means, but no sd and no interval (empty cells)
    let r = avg.row(&BASE);
    assert_eq!(avg.f(r, "val_acc_mean"), 0.5);
    assert_eq!(avg.f(r, "val_acc_last_mean"), 0.375);
    for c in [
        "val_acc_std",
        "val_acc_ci95_low",
        "val_acc_ci95_high",
        "val_acc_last_std",
        "val_acc_last_ci95_low",
        "val_acc_last_ci95_high",
    ] {
        assert_eq!(avg.s(r, c), "", "{c}");
    }

    // the typed rows carry the same numbers
    let analysis = analyze_loaded(&load_grid(dir.path()).unwrap(), None).unwrap();
    let g = analysis
        .groups
        .iter()
        .find(|g| g.key("teacher") == Some("human"))
        .unwrap();
    assert_eq!((g.val_acc_mean, g.val_acc_std), (0.625, Some(0.125)));
    let h = t2 * 0.125 / 3f64.sqrt();
    assert_eq!(g.val_acc_ci95, Some((0.625 - h, 0.625 + h)));
    assert_eq!(
        (g.val_acc_last_mean, g.val_acc_last_std),
        (Some(0.375), Some(0.25))
    );
    let h = t2 * 0.25 / 3f64.sqrt();
    assert_eq!(g.val_acc_last_ci95, Some((0.375 - h, 0.375 + h)));
    let b = analysis
        .groups
        .iter()
        .find(|g| g.key("teacher") == Some("baseline"))
        .unwrap();
    assert_eq!(
        (b.val_acc_ci95, b.val_acc_last_mean, b.val_acc_last_ci95),
        (None, Some(0.375), None)
    );
    assert_eq!(
        report.best_group.as_ref().map(|g| g.key("teacher")),
        Some(Some("human"))
    );

    // summary.md: both numbers, each with its interval, and what they mean
    let md = std::fs::read_to_string(&report.summary).unwrap();
    assert!(
        md.contains(
            "| runs | val acc, best epoch | 95 % CI | val acc, last epoch | 95 % CI | val CE |"
        ),
        "{md}"
    );
    assert!(
        md.contains(
            "| 3 | 0.6250 ± 0.1250 | [0.3145, 0.9355] | 0.3750 ± 0.2500 | [-0.2460, 0.9960] |"
        ),
        "{md}"
    );
    assert!(md.contains("| 1 | 0.5000 | – | 0.3750 | – |"), "{md}");
    assert!(
        md.contains(
            "mean validation accuracy 0.6250 ± 0.1250 over 3 run(s) at the best epoch, \
             0.3750 ± 0.2500 at the last epoch"
        ),
        "{md}"
    );
    assert!(md.contains("selected on the test set"), "{md}");
}
