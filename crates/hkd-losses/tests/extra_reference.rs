//! The PyTorch reference cases of `tests/data/extra_cases.json` for the settings the shared
//! cases do not cover: label smoothing of the hard-label term and the `pilot` human target.
//! Same inputs (`$HKD_REFERENCE_DIR/torch/losses`) and tolerances as `reference.rs`: f64
//! to 1e-10, f32 to 1e-5, gradients to 1e-9. Regenerate the data with
//! `tests/data/make_extra_reference.py`.
#![cfg(feature = "candle")]

mod common;

use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor, Var};
use common::{ReferenceInputs, load_f64, losses_reference_dir, relative_error};
use hkd_losses::{DistillationConfig, DistillationLoss, DistillationMode, HumanTarget, LossValues};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct ExtraFile {
    made_with: String,
    cases: Vec<ExtraCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtraCase {
    name: String,
    mode: DistillationMode,
    /// Every field written out, in the crate's serde spelling.
    config: DistillationConfig,
    expected: Expected,
    grad_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    hard: f64,
    kd: Option<f64>,
    teacher_term: Option<f64>,
    human_term: Option<f64>,
    total: f64,
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn load_extra_cases() -> ExtraFile {
    let path = data_dir().join("extra_cases.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    let file: ExtraFile = serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("{} does not parse: {error}", path.display()));
    assert!(file.made_with.starts_with("PyTorch"), "{}", file.made_with);
    assert_eq!(
        file.cases.len(),
        24,
        "extra_cases.json should list 24 cases"
    );
    file
}

/// The inputs a trainer passes: human labels always, teacher logits in student mode.
fn values(
    mode: DistillationMode,
    config: DistillationConfig,
    logits: &Tensor,
    hard: &Tensor,
    human: &Tensor,
    teacher: &Tensor,
) -> LossValues {
    let teacher = (mode == DistillationMode::Student).then_some(teacher);
    DistillationLoss::new(mode, config)
        .unwrap()
        .compute(logits, hard, Some(human), teacher)
        .unwrap()
        .to_f64()
        .unwrap()
}

/// The parts as (name, found, expected); a part missing on one side only is a failure.
fn compare(name: &str, found: &LossValues, expected: &Expected) -> Vec<(&'static str, f64, f64)> {
    let mut pairs = vec![
        ("hard_ce", found.hard_ce, expected.hard),
        ("total", found.total, expected.total),
    ];
    for (part, found, expected) in [
        ("kd", found.kd, expected.kd),
        ("teacher_term", found.teacher_term, expected.teacher_term),
        ("human_term", found.human_term, expected.human_term),
    ] {
        match (found, expected) {
            (Some(found), Some(expected)) => pairs.push((part, found, expected)),
            (None, None) => {}
            (found, expected) => {
                panic!("{name}: {part} presence differs: found {found:?}, expected {expected:?}")
            }
        }
    }
    pairs
}

fn check_all_cases(test: &str, dtype: DType, labels: DType, tolerance: f64) {
    let Some(dir) = losses_reference_dir(test) else {
        return;
    };
    let inputs = ReferenceInputs::load(&dir);
    let logits = inputs.logits.to_dtype(dtype).unwrap();
    let human = inputs.human.to_dtype(dtype).unwrap();
    let teacher = inputs.teacher_logits.to_dtype(dtype).unwrap();
    let hard = inputs.hard.to_dtype(labels).unwrap();
    let mut worst: f64 = 0.0;
    for case in load_extra_cases().cases {
        let found = values(case.mode, case.config, &logits, &hard, &human, &teacher);
        for (part, found, expected) in compare(&case.name, &found, &case.expected) {
            let error = relative_error(found, expected);
            assert!(
                error <= tolerance,
                "{} ({case:?}): {part} is {found}, expected {expected} \
                 (relative error {error:e} > {tolerance:e})",
                case.name
            );
            worst = worst.max(error);
        }
    }
    eprintln!("{dtype:?}, {labels:?} labels: largest relative error {worst:e}");
}

#[test]
fn label_smoothing_and_pilot_cases_match_pytorch_in_f64_to_1e_10() {
    check_all_cases(
        "label_smoothing_and_pilot_cases_match_pytorch_in_f64_to_1e_10",
        DType::F64,
        DType::I64,
        1e-10,
    );
}

#[test]
fn label_smoothing_and_pilot_cases_match_pytorch_in_f32_to_1e_5() {
    check_all_cases(
        "label_smoothing_and_pilot_cases_match_pytorch_in_f32_to_1e_5",
        DType::F32,
        DType::U32,
        1e-5,
    );
}

#[test]
fn label_smoothing_and_pilot_gradients_match_pytorch_to_1e_9() {
    let Some(dir) =
        losses_reference_dir("label_smoothing_and_pilot_gradients_match_pytorch_to_1e_9")
    else {
        return;
    };
    let inputs = ReferenceInputs::load(&dir);
    let mut checked = 0;
    for case in load_extra_cases().cases {
        let Some(grad_file) = &case.grad_file else {
            continue;
        };
        let expected = load_f64(&data_dir().join(grad_file));
        let student = Var::from_tensor(&inputs.logits).unwrap();
        let teacher = (case.mode == DistillationMode::Student).then_some(&inputs.teacher_logits);
        let parts = DistillationLoss::new(case.mode, case.config)
            .unwrap()
            .compute(
                student.as_tensor(),
                &inputs.hard,
                Some(&inputs.human),
                teacher,
            )
            .unwrap();
        let grads = parts.total.backward().unwrap();
        let gradient = grads
            .get(student.as_tensor())
            .expect("student gets a gradient");
        assert_eq!(gradient.dims(), expected.dims());
        let max_abs = |tensor: &Tensor| {
            tensor
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        let largest = max_abs(&expected);
        let error = max_abs(&(gradient - &expected).unwrap());
        eprintln!(
            "{} ({grad_file}): max |grad - expected| = {error:e} (max |expected| {largest:e})",
            case.name
        );
        assert!(
            error <= 1e-9 * largest,
            "{} ({grad_file}): max abs gradient error {error:e} > 1e-9 * {largest:e}",
            case.name
        );
        checked += 1;
    }
    assert_eq!(
        checked, 5,
        "extra_cases.json should name five gradient files"
    );
}

/// The data can tell the new settings apart: with label smoothing 0 or the `log` human
/// target instead, every case's total misses PyTorch's by far more than the tolerance.
#[test]
fn the_extra_cases_depend_on_the_new_settings() {
    let Some(dir) = losses_reference_dir("the_extra_cases_depend_on_the_new_settings") else {
        return;
    };
    let inputs = ReferenceInputs::load(&dir);
    let file = load_extra_cases();
    let (mut smoothed, mut pilot) = (0, 0);
    for case in &file.cases {
        let config = case.config;
        assert!(
            config.label_smoothing > 0.0 || config.human_target == HumanTarget::Pilot,
            "{}: neither new setting is used",
            case.name
        );
        smoothed += usize::from(config.label_smoothing > 0.0);
        pilot += usize::from(config.human_target == HumanTarget::Pilot);
        let mut reverted = [
            DistillationConfig {
                label_smoothing: 0.0,
                ..config
            },
            DistillationConfig {
                human_target: HumanTarget::Log,
                ..config
            },
        ]
        .into_iter()
        .filter(|other| *other != config);
        let other = reverted.next().expect("a setting to revert");
        let found = values(
            case.mode,
            other,
            &inputs.logits,
            &inputs.hard,
            &inputs.human,
            &inputs.teacher_logits,
        );
        let error = relative_error(found.total, case.expected.total);
        assert!(
            error > 1e-4,
            "{}: {other:?} gives total {} within {error:e} of the expected {}",
            case.name,
            found.total,
            case.expected.total
        );
    }
    assert_eq!((smoothed, pilot), (6, 19), "cases per setting");
}
