//! The evaluation manager on run directories: eval.json against hand computations,
//! skipping, failures that do not stop the others, missing sets, the original layout.

mod common;

use std::path::{Path, PathBuf};

use candle_core::Device;
use common::*;
use hkd_arch::Network;
use hkd_datasets::DatasetDir;
use hkd_evaluator::{
    AttackKind, AttackSettings, EvalError, EvalOptions, Evaluator, NoProgress, RunResult, SetSpec,
    SkipReason, Target, find_targets, generalization_array,
};
use hkd_rundir::{EvalReport, RunDir};

fn options() -> EvalOptions {
    EvalOptions {
        batch_size: 25,
        ce_batch_size: 16,
        ..EvalOptions::default()
    }
}

fn evaluate(
    targets: &[Target],
    sets: &[SetSpec],
    options: EvalOptions,
) -> Vec<hkd_evaluator::RunOutcome> {
    let evaluator = Evaluator::prepare(targets, sets, options, Device::Cpu).unwrap();
    evaluator.evaluate_all(targets, &NoProgress)
}

fn report(run: &RunDir) -> EvalReport {
    run.read_eval().unwrap()
}

/// A dataset directory with a `val` split (60 images, human labels) and three more.
fn data_dir(root: &Path) -> PathBuf {
    let dir = root.join("data");
    write_set(&dir, "val", &random_dataset(60, 1, true));
    write_set(&dir, "c10", &random_dataset(40, 2, false));
    write_set(&dir, "cinic", &random_dataset(30, 3, false));
    write_set(&dir, "far", &random_dataset(20, 4, false));
    dir
}

#[test]
fn eval_json_matches_hand_computed_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    let run = make_run(&tmp.path().join("runs"), "r1", "resnet8", 7, &data, "val");
    let targets = find_targets(&[tmp.path().join("runs")], None, 10).unwrap();
    assert_eq!(targets, vec![Target::Run(run.clone())]);
    let outcomes = evaluate(&targets, &[], options());
    assert!(
        matches!(outcomes[0].result, RunResult::Evaluated { .. }),
        "{:?}",
        outcomes[0].result
    );

    let r = report(&run);
    assert_eq!(r.weights, "best.safetensors");
    assert_eq!(r.settings_hash.len(), 64);
    let m = &r.sets["val"];
    assert_eq!(m.images, 60);
    assert!(m.source.ends_with(":val"), "{}", m.source);
    assert_eq!(m.ce_batch_size, 16);
    assert!(m.attacks.is_empty());

    // By hand: the dataset normalised here, the network loaded here, one forward pass.
    let dataset = DatasetDir::open(&data).unwrap().load_split("val").unwrap();
    let net = Network::new("resnet8", 10, &Device::Cpu, candle_core::DType::F32, 0).unwrap();
    net.load_weights(&run.file(RunDir::BEST_WEIGHTS)).unwrap();
    let logits = direct_logits(&net, &normalised_images(&dataset));
    let hand = hand_metrics(&logits, dataset.labels(), 16);
    close(m.accuracy, hand.accuracy, 1e-12, "accuracy");
    close(m.ce_mean, hand.ce, 1e-5, "CE");
    close(
        m.ce_sum_batch_means,
        hand.ce_batches,
        1e-5,
        "sum of batch means (16, 16, 16, 12)",
    );
    close(m.ece, hand.ece, 1e-5, "ECE");
    close(m.brier, hand.brier, 1e-5, "Brier");

    let human = dataset.human().unwrap();
    let (mut ce, mut kl, mut agree) = (0.0, 0.0, 0.0);
    for (row, h) in logits.chunks(10).zip(human.chunks(10)) {
        let p = softmax(row);
        for (&hc, &pc) in h.iter().zip(&p) {
            if hc > 0.0 {
                ce -= hc * pc.ln();
                kl += hc * (hc / pc).ln();
            }
        }
        let hmax = (0..10).fold(0, |b, c| if h[c] > h[b] { c } else { b });
        agree += (pred(row) == hmax) as u32 as f64;
    }
    let got = m.human.as_ref().expect("the val split has human labels");
    close(got.ce, ce / 60.0, 1e-5, "human CE");
    close(got.kl, kl / 60.0, 1e-5, "KL to human");
    close(
        got.majority_agreement,
        agree / 60.0,
        1e-12,
        "majority agreement",
    );
    assert!(got.ce > got.kl, "CE = KL + H(h) with H(h) > 0");
}

#[test]
fn calibration_detail_and_temperature_scaling_match_hand_computation() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    let run = make_run(&tmp.path().join("runs"), "r1", "resnet8", 7, &data, "val");
    let targets = vec![Target::Run(run.clone())];
    let sets: Vec<SetSpec> = ["val", "c10"]
        .iter()
        .map(|s| format!("{s}={}:{s}", data.display()).parse().unwrap())
        .collect();
    let calibrated = EvalOptions {
        calibrate_on: Some("val".into()),
        ..options()
    };

    // A set that is not evaluated is refused before any work.
    let err = Evaluator::prepare(
        &targets,
        &sets,
        EvalOptions {
            calibrate_on: Some("cinic".into()),
            ..options()
        },
        Device::Cpu,
    )
    .unwrap_err();
    assert!(
        matches!(err, EvalError::UnknownCalibrationSet { .. }),
        "{err}"
    );
    assert!(err.is_usage());
    assert!(err.to_string().contains("val, c10"), "{err}");

    let outcomes = evaluate(&targets, &sets, calibrated.clone());
    assert!(matches!(outcomes[0].result, RunResult::Evaluated { .. }));
    let r = report(&run);
    let fit = r.temperature.clone().expect("a temperature");
    assert_eq!(fit.set, "val");

    let net = Network::new("resnet8", 10, &Device::Cpu, candle_core::DType::F32, 0).unwrap();
    net.load_weights(&run.file(RunDir::BEST_WEIGHTS)).unwrap();
    let open = |split: &str| DatasetDir::open(&data).unwrap().load_split(split).unwrap();
    // By hand: mean NLL of softmax(z / T) on val, and its derivative in T is 0 at the fit.
    let val = open("val");
    let logits = direct_logits(&net, &normalised_images(&val));
    let nll = |t: f64| -> f64 {
        let scaled: Vec<f32> = logits.iter().map(|&z| (z as f64 / t) as f32).collect();
        scaled
            .chunks(10)
            .zip(val.labels())
            .map(|(row, &y)| -softmax(row)[y as usize].ln())
            .sum::<f64>()
            / 60.0
    };
    let t = fit.temperature;
    assert!(!fit.at_bound && t > 0.01 && t < 100.0, "{fit:?}");
    close(fit.nll_before, nll(1.0), 1e-5, "NLL at T = 1");
    close(fit.nll_after, nll(t), 1e-5, "NLL at the fitted T");
    assert!(nll(t * 1.05) > fit.nll_after && nll(t / 1.05) > fit.nll_after);
    assert!(fit.nll_after <= fit.nll_before);

    for (name, n) in [("val", 60), ("c10", 40)] {
        let m = &r.sets[name];
        let set = open(name);
        let logits = direct_logits(&net, &normalised_images(&set));
        // mean confidence and the bins behind the ECE
        let conf: f64 = logits
            .chunks(10)
            .map(|row| softmax(row)[pred(row)])
            .sum::<f64>()
            / n as f64;
        close(m.mean_confidence.unwrap(), conf, 1e-5, "mean confidence");
        assert_eq!(m.reliability.len(), 15);
        assert_eq!(m.reliability.iter().map(|b| b.count).sum::<usize>(), n);
        let from_bins: f64 = m
            .reliability
            .iter()
            .filter(|b| b.count > 0)
            .map(|b| {
                b.count as f64 / n as f64 * (b.accuracy.unwrap() - b.mean_confidence.unwrap()).abs()
            })
            .sum();
        close(m.ece, from_bins, 1e-12, "ECE from its bins");
        // temperature-scaled: the hand metrics of logits / T (accuracy unchanged)
        let scaled: Vec<f32> = logits.iter().map(|&z| (z as f64 / t) as f32).collect();
        let hand = hand_metrics(&scaled, set.labels(), 16);
        let ts = m.temperature_scaled.as_ref().expect("scaled metrics");
        close(ts.ce_mean, hand.ce, 1e-5, "scaled CE");
        close(ts.ece, hand.ece, 1e-5, "scaled ECE");
        close(ts.brier, hand.brier, 1e-5, "scaled Brier");
        close(
            hand.accuracy,
            m.accuracy,
            1e-12,
            "accuracy does not change with T",
        );
        assert_eq!(ts.human.is_some(), m.human.is_some(), "{name}");
        if let (Some(h), Some(human)) = (&ts.human, set.human()) {
            let ce: f64 = scaled
                .chunks(10)
                .zip(human.chunks(10))
                .map(|(row, h)| {
                    let p = softmax(row);
                    -(0..10)
                        .filter(|&c| h[c] > 0.0)
                        .map(|c| h[c] * p[c].ln())
                        .sum::<f64>()
                })
                .sum::<f64>()
                / n as f64;
            close(h.ce, ce, 1e-5, "scaled human CE");
            let entropy = m.human.as_ref().unwrap().ce - m.human.as_ref().unwrap().kl;
            close(
                h.ce - h.kl,
                entropy,
                1e-9,
                "CE − KL is the human entropy at any T",
            );
        }
    }
    // The calibration set is part of the settings hash: without it, evaluated again.
    let plain = evaluate(&targets, &sets, options());
    assert!(matches!(plain[0].result, RunResult::Evaluated { .. }));
    let r2 = report(&run);
    assert_ne!(r2.settings_hash, r.settings_hash);
    assert!(r2.temperature.is_none() && r2.sets["val"].temperature_scaled.is_none());
    assert_eq!(r2.sets["val"].ce_mean, r.sets["val"].ce_mean);
}

#[test]
fn rerun_skips_and_changes_reevaluate() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    let run = make_run(tmp.path(), "r", "plane2", 1, &data, "val");
    let targets = vec![Target::Run(run.clone())];
    let first = evaluate(&targets, &[], options());
    assert!(matches!(first[0].result, RunResult::Evaluated { .. }));
    let text = std::fs::read_to_string(run.file(RunDir::EVAL)).unwrap();

    let again = evaluate(&targets, &[], options());
    match &again[0].result {
        RunResult::Skipped(SkipReason::UpToDate { report_path }) => {
            assert_eq!(report_path, &run.file(RunDir::EVAL))
        }
        other => panic!("expected a skip, got {other:?}"),
    }
    assert_eq!(
        std::fs::read_to_string(run.file(RunDir::EVAL)).unwrap(),
        text
    );

    let forced = evaluate(
        &targets,
        &[],
        EvalOptions {
            force: true,
            ..options()
        },
    );
    assert!(matches!(forced[0].result, RunResult::Evaluated { .. }));
    let old_hash = report(&run).settings_hash;

    // The same data under another path is the same set: still up to date... under another
    // name it is not.
    let moved = tmp.path().join("moved");
    std::fs::rename(&data, &moved).unwrap();
    let renamed = evaluate(
        &targets,
        &[SetSpec::new("val", &moved, Some("val".into()))],
        options(),
    );
    assert!(
        matches!(renamed[0].result, RunResult::Skipped(_)),
        "{:?}",
        renamed[0].result
    );
    let other_name = evaluate(
        &targets,
        &[SetSpec::new("cifar10", &moved, Some("val".into()))],
        options(),
    );
    assert!(matches!(other_name[0].result, RunResult::Evaluated { .. }));

    // Other settings or other weights: evaluated again, with another hash.
    let sets = [SetSpec::new("val", &moved, Some("val".into()))];
    let bigger = evaluate(
        &targets,
        &sets,
        EvalOptions {
            batch_size: 7,
            ..options()
        },
    );
    assert!(matches!(bigger[0].result, RunResult::Evaluated { .. }));
    save_weights(&run, "plane2", 2);
    let retrained = evaluate(
        &targets,
        &sets,
        EvalOptions {
            batch_size: 7,
            ..options()
        },
    );
    assert!(matches!(retrained[0].result, RunResult::Evaluated { .. }));
    assert_ne!(report(&run).settings_hash, old_hash);
}

#[test]
fn a_corrupt_run_is_reported_and_the_others_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    let grid = tmp.path().join("grid");
    let good_a = make_run(
        &grid.join("baseline/resnet8"),
        "a",
        "resnet8",
        1,
        &data,
        "val",
    );
    let corrupt = make_run(
        &grid.join("baseline/resnet8"),
        "b",
        "resnet8",
        2,
        &data,
        "val",
    );
    std::fs::write(
        corrupt.file(RunDir::BEST_WEIGHTS),
        b"not a safetensors file at all",
    )
    .unwrap();
    let bad_config = make_run(&grid.join("human/resnet8"), "c", "resnet8", 3, &data, "val");
    std::fs::write(bad_config.file(RunDir::CONFIG), "student = [").unwrap();
    let wrong_arch = make_run(&grid.join("human/resnet8"), "d", "resnet8", 4, &data, "val");
    save_weights(&wrong_arch, "plane2", 4);
    let untrained = make_run(&grid.join("human/resnet8"), "e", "resnet8", 5, &data, "val");
    std::fs::remove_file(untrained.file(RunDir::BEST_WEIGHTS)).unwrap();
    let good_z = make_run(&grid.join("human/resnet8"), "z", "plane2", 6, &data, "val");

    let targets = find_targets(std::slice::from_ref(&grid), None, 10).unwrap();
    assert_eq!(targets.len(), 6);
    let outcomes = evaluate(&targets, &[], options());
    let by_name = |run: &RunDir| {
        outcomes
            .iter()
            .find(|o| o.target.path() == run.path())
            .unwrap()
    };

    for good in [&good_a, &good_z] {
        assert!(
            matches!(by_name(good).result, RunResult::Evaluated { .. }),
            "{:?}",
            by_name(good).result
        );
        assert_eq!(report(good).sets["val"].images, 60);
    }
    for (bad, needle) in [
        (&corrupt, "best.safetensors"),
        (&bad_config, "config.toml"),
        (&wrong_arch, "best.safetensors"),
    ] {
        match &by_name(bad).result {
            RunResult::Failed(e) => assert!(
                e.to_string().contains(needle),
                "{}: {e}",
                bad.path().display()
            ),
            other => panic!(
                "{}: expected a failure, got {other:?}",
                bad.path().display()
            ),
        }
        assert!(!bad.file(RunDir::EVAL).exists());
    }
    assert!(matches!(
        by_name(&untrained).result,
        RunResult::Skipped(SkipReason::NoWeights { .. })
    ));
    assert_eq!(outcomes.iter().filter(|o| o.failed()).count(), 3);
}

#[test]
fn a_missing_set_is_an_error_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    let run = make_run(tmp.path(), "r", "resnet8", 1, &data, "val");
    let targets = vec![Target::Run(run.clone())];

    let missing = SetSpec::new("cinic", tmp.path().join("nowhere"), None);
    let err = Evaluator::prepare(
        &targets,
        &[SetSpec::new("val", &data, None), missing],
        options(),
        Device::Cpu,
    )
    .unwrap_err();
    assert!(matches!(err, EvalError::SetUnavailable { .. }), "{err}");
    assert!(
        err.to_string().contains("cinic") && err.to_string().contains("nowhere"),
        "{err}"
    );

    let err = Evaluator::prepare(
        &targets,
        &[SetSpec::new("x", &data, Some("test".into()))],
        options(),
        Device::Cpu,
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("c10") && text.contains("far") && text.contains("\"test\""),
        "lists the available splits: {text}"
    );

    let err = Evaluator::prepare(
        &targets,
        &[SetSpec::new("x", &data, None)],
        options(),
        Device::Cpu,
    )
    .unwrap_err();
    assert!(matches!(err, EvalError::SplitNotNamed { .. }), "{err}");

    let dup = [
        SetSpec::new("a", &data, Some("val".into())),
        SetSpec::new("a", &data, Some("c10".into())),
    ];
    assert!(matches!(
        Evaluator::prepare(&targets, &dup, options(), Device::Cpu),
        Err(EvalError::DuplicateSet(_))
    ));

    assert!(!run.file(RunDir::EVAL).exists(), "nothing was evaluated");
}

#[test]
fn a_run_whose_data_moved_fails_alone_and_names_the_way_out() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    let moved_run = make_run(
        tmp.path(),
        "m",
        "resnet8",
        1,
        &tmp.path().join("gone"),
        "val",
    );
    let run = make_run(tmp.path(), "r", "plane2", 1, &data, "val");
    let targets = [Target::Run(moved_run.clone()), Target::Run(run.clone())];
    let outcomes = evaluate(&targets, &[], options());
    match &outcomes[0].result {
        RunResult::Failed(e) => {
            let text = e.to_string();
            assert!(
                text.contains("--set") && text.contains("config.toml") && text.contains("gone"),
                "{text}"
            );
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert!(!moved_run.file(RunDir::EVAL).exists());
    assert!(
        matches!(outcomes[1].result, RunResult::Evaluated { .. }),
        "{:?}",
        outcomes[1].result
    );
    assert_eq!(report(&run).sets["val"].images, 60);
}

#[test]
fn the_three_generalisation_sets_write_the_original_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    let run = make_run(
        &tmp.path().join("runs/human/resnet8"),
        "student_resnet8_iter_0",
        "resnet8",
        3,
        &data,
        "val",
    );
    let sets: Vec<SetSpec> = ["cifar10=DIR:c10", "cinic=DIR:cinic", "imagenet_far=DIR:far"]
        .iter()
        .map(|s| {
            s.replace("DIR", &data.display().to_string())
                .parse()
                .unwrap()
        })
        .collect();
    let outcomes = evaluate(
        &[Target::Run(run.clone())],
        &sets,
        EvalOptions {
            ce_batch_size: 128,
            ..options()
        },
    );
    let expected_path = tmp
        .path()
        .join("runs/human/resnet8/student_resnet8_iter_0_generalization.npy")
        .canonicalize()
        .ok();
    match &outcomes[0].result {
        RunResult::Evaluated { generalization, .. } => {
            assert_eq!(
                generalization.as_ref().map(|p| p.canonicalize().unwrap()),
                expected_path
            )
        }
        other => panic!("{other:?}"),
    }
    let r = report(&run);
    assert_eq!(
        r.sets.keys().collect::<Vec<_>>(),
        vec!["cifar10", "cinic", "imagenet_far"]
    );
    let (shape, values) = read_npy_f64(
        &tmp.path()
            .join("runs/human/resnet8/student_resnet8_iter_0_generalization.npy"),
    );
    assert_eq!(shape, vec![2, 3]);
    let m = |n: &str| &r.sets[n];
    assert_eq!(
        values,
        vec![
            100.0 * m("cifar10").accuracy,
            100.0 * m("cinic").accuracy,
            100.0 * m("imagenet_far").accuracy,
            m("cifar10").ce_sum_batch_means,
            m("cinic").ce_sum_batch_means,
            m("imagenet_far").ce_sum_batch_means,
        ]
    );
    // Fewer than 128 images: one batch, so the original loss equals the mean CE.
    close(values[3], m("cifar10").ce_mean, 1e-12, "one batch");
    assert_eq!(generalization_array(&r.sets).unwrap().to_vec(), values);

    // Without all three there is no such file.
    let tmp2 = tempfile::tempdir().unwrap();
    let run2 = make_run(tmp2.path(), "r2", "resnet8", 3, &data, "val");
    let out = evaluate(&[Target::Run(run2)], &sets[..2], options());
    assert!(matches!(
        out[0].result,
        RunResult::Evaluated {
            generalization: None,
            ..
        }
    ));
}

#[test]
fn bare_checkpoint_is_evaluated_beside_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    // A PyTorch checkpoint of the original project's format when ../shared is there,
    // else a safetensors file.
    let ckpt = match reference_dir("bare_checkpoint_is_evaluated_beside_itself (PyTorch part)") {
        Some(r) => {
            let dst = tmp.path().join("student_resnet8_best.pth.tar");
            std::fs::copy(r.join("torch/models/resnet8_legacy.pth.tar"), &dst).unwrap();
            dst
        }
        None => {
            let dst = tmp.path().join("student_resnet8_best.safetensors");
            Network::new("resnet8", 10, &Device::Cpu, candle_core::DType::F32, 1)
                .unwrap()
                .save_safetensors(&dst)
                .unwrap();
            dst
        }
    };
    let err = find_targets(std::slice::from_ref(&ckpt), None, 10).unwrap_err();
    assert!(err.to_string().contains("--arch"), "{err}");
    let targets = find_targets(std::slice::from_ref(&ckpt), Some("resnet8"), 10).unwrap();
    let err = Evaluator::prepare(&targets, &[], options(), Device::Cpu).unwrap_err();
    assert!(matches!(err, EvalError::NoSetsForCheckpoint(_)), "{err}");
    let out = evaluate(
        &targets,
        &[SetSpec::new("val", &data, Some("val".into()))],
        options(),
    );
    match &out[0].result {
        RunResult::Evaluated {
            report_path,
            report,
            ..
        } => {
            assert_eq!(
                report_path,
                &tmp.path().join("student_resnet8_best.eval.json")
            );
            assert_eq!(report.weights, ckpt.file_name().unwrap().to_string_lossy());
            let text = std::fs::read_to_string(report_path).unwrap();
            let back: EvalReport = serde_json::from_str(&text).unwrap();
            assert_eq!(back.settings_hash, report.settings_hash);
            // serde_json parses floats to within an ulp, not always bit-exactly.
            let (a, b) = (&back.sets["val"], &report.sets["val"]);
            assert_eq!(a.accuracy, b.accuracy);
            close(a.brier, b.brier, 1e-15, "Brier read back");
            close(a.ce_mean, b.ce_mean, 1e-15, "CE read back");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn attacks_are_recorded_per_attack_and_eps() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    let run = make_run(tmp.path(), "r", "plane2", 1, &data, "val");
    let attacks = AttackSettings {
        kinds: vec![AttackKind::Fgsm, AttackKind::Pgd],
        eps: vec![2.0 / 255.0, 8.0 / 255.0],
        pgd_steps: 2,
        samples: 20,
        seed: 3,
        batch_size: 8,
    };
    let out = evaluate(
        &[Target::Run(run.clone())],
        &[],
        EvalOptions {
            attacks: Some(attacks.clone()),
            ..options()
        },
    );
    assert!(
        matches!(out[0].result, RunResult::Evaluated { .. }),
        "{:?}",
        out[0].result
    );
    let a = &report(&run).sets["val"].attacks;
    let got: Vec<(&str, f64, u32, usize)> = a
        .iter()
        .map(|m| (m.attack.as_str(), m.eps, m.steps, m.samples))
        .collect();
    assert_eq!(
        got,
        vec![
            ("fgsm", 2.0 / 255.0, 1, 20),
            ("fgsm", 8.0 / 255.0, 1, 20),
            ("pgd", 2.0 / 255.0, 2, 20),
            ("pgd", 8.0 / 255.0, 2, 20)
        ]
    );
    assert!(
        a.iter()
            .all(|m| (0.0..=1.0).contains(&m.accuracy) && m.ce_mean > 0.0)
    );

    // Another attack seed is another setting.
    let again = evaluate(
        &[Target::Run(run)],
        &[],
        EvalOptions {
            attacks: Some(AttackSettings { seed: 4, ..attacks }),
            ..options()
        },
    );
    assert!(matches!(again[0].result, RunResult::Evaluated { .. }));
}
