//! The 36 PyTorch reference cases of `torch/losses/` (f64 to 1e-10, f32 to 1e-5) and the
//! six reference gradients (to 1e-9).
#![cfg(feature = "candle")]

mod common;

use candle_core::{DType, Tensor, Var};
use common::{
    ReferenceInputs, load_cases, load_f64, loss_of, losses_reference_dir, relative_error,
};
use hkd_losses::{DistillationLoss, DistillationMode, LossParts};

fn scalar(tensor: &Tensor) -> f64 {
    tensor
        .to_dtype(DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

/// The inputs a trainer passes in `mode`: human labels always (ignored in baseline mode),
/// teacher logits only in student mode.
fn compute(
    loss: &DistillationLoss,
    logits: &Tensor,
    hard: &Tensor,
    human: &Tensor,
    teacher: &Tensor,
) -> LossParts {
    let teacher = (loss.mode() == DistillationMode::Student).then_some(teacher);
    loss.compute(logits, hard, Some(human), teacher).unwrap()
}

/// Checks every part of every case against `tolerance` relative; returns the largest
/// relative error seen.
fn check_all_cases(test: &str, dtype: DType, labels: DType, tolerance: f64) -> Option<f64> {
    let dir = losses_reference_dir(test)?;
    let file = load_cases(&dir);
    assert_eq!(file.cases.len(), 36, "cases.json should list 36 cases");
    let inputs = ReferenceInputs::load(&dir);
    let logits = inputs.logits.to_dtype(dtype).unwrap();
    let human = inputs.human.to_dtype(dtype).unwrap();
    let teacher = inputs.teacher_logits.to_dtype(dtype).unwrap();
    let hard = inputs.hard.to_dtype(labels).unwrap();
    let mut worst: f64 = 0.0;
    for (index, case) in file.cases.iter().enumerate() {
        let loss = loss_of(case);
        let parts = compute(&loss, &logits, &hard, &human, &teacher);
        let values = parts.to_f64().unwrap();
        let mut check = |name: &str, found: f64, expected: f64| {
            let error = relative_error(found, expected);
            assert!(
                error <= tolerance,
                "case {index} ({case:?}): {name} is {found}, expected {expected} \
                 (relative error {error:e} > {tolerance:e})"
            );
            worst = worst.max(error);
        };
        let expected = &case.expected;
        check("hard_ce", scalar(&parts.hard_ce), expected.hard);
        check("total", scalar(&parts.total), expected.total);
        assert_eq!(values.hard_ce, scalar(&parts.hard_ce));
        assert_eq!(values.total, scalar(&parts.total));
        match &parts.kd {
            None => {
                // The reference logs kd = hard CE in baseline mode; there is no soft part.
                assert_eq!(case.mode, "baseline", "case {index}: kd missing");
                assert_eq!(expected.kd, expected.hard, "case {index}");
                assert_eq!(values.kd, None);
            }
            Some(kd) => {
                check("kd", scalar(kd), expected.kd);
                assert_eq!(values.kd, Some(scalar(kd)));
            }
        }
        for (name, part, value, expected) in [
            (
                "teacher_term",
                &parts.teacher_term,
                values.teacher_term,
                expected.teacher_term,
            ),
            (
                "human_term",
                &parts.human_term,
                values.human_term,
                expected.human_term,
            ),
        ] {
            match (part, expected) {
                (Some(part), Some(expected)) => {
                    check(name, scalar(part), expected);
                    assert_eq!(value, Some(scalar(part)));
                }
                (None, None) => assert_eq!(value, None),
                (found, expected) => panic!(
                    "case {index}: {name} presence differs: found {:?}, expected {expected:?}",
                    found.is_some()
                ),
            }
        }
    }
    Some(worst)
}

#[test]
fn all_36_cases_match_pytorch_in_f64_to_1e_10() {
    if let Some(worst) = check_all_cases(
        "all_36_cases_match_pytorch_in_f64_to_1e_10",
        DType::F64,
        DType::I64,
        1e-10,
    ) {
        eprintln!("f64, i64 labels: largest relative error {worst:e}");
    }
}

#[test]
fn all_36_cases_match_pytorch_with_u32_labels() {
    if let Some(worst) = check_all_cases(
        "all_36_cases_match_pytorch_with_u32_labels",
        DType::F64,
        DType::U32,
        1e-10,
    ) {
        eprintln!("f64, u32 labels: largest relative error {worst:e}");
    }
}

#[test]
fn all_36_cases_match_pytorch_in_f32_to_1e_5() {
    if let Some(worst) = check_all_cases(
        "all_36_cases_match_pytorch_in_f32_to_1e_5",
        DType::F32,
        DType::U32,
        1e-5,
    ) {
        eprintln!("f32, u32 labels: largest relative error {worst:e}");
    }
}

#[test]
fn gradients_of_total_match_pytorch_to_1e_9() {
    let Some(dir) = losses_reference_dir("gradients_of_total_match_pytorch_to_1e_9") else {
        return;
    };
    let file = load_cases(&dir);
    let inputs = ReferenceInputs::load(&dir);
    let mut checked = 0;
    for (index, case) in file.cases.iter().enumerate() {
        let Some(grad_file) = &case.grad_file else {
            continue;
        };
        let expected = load_f64(&dir.join(grad_file));
        let loss = loss_of(case);
        let student = Var::from_tensor(&inputs.logits).unwrap();
        let teacher = Var::from_tensor(&inputs.teacher_logits).unwrap();
        let parts = compute(
            &loss,
            student.as_tensor(),
            &inputs.hard,
            &inputs.human,
            teacher.as_tensor(),
        );
        let grads = parts.total.backward().unwrap();
        let gradient = grads
            .get(student.as_tensor())
            .expect("student gets a gradient");
        assert!(
            grads.get(teacher.as_tensor()).is_none(),
            "case {index}: the teacher must not receive a gradient"
        );
        assert_eq!(gradient.dims(), expected.dims());
        let largest = expected
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        let error = (gradient - &expected)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        eprintln!(
            "case {index} ({grad_file}): max |grad - expected| = {error:e} (max |expected| {largest:e})"
        );
        assert!(
            error <= 1e-9 * largest,
            "case {index} ({grad_file}): max abs gradient error {error:e} > 1e-9 * {largest:e}"
        );
        checked += 1;
    }
    assert_eq!(checked, 6, "cases.json should name six gradient files");
}

#[test]
fn only_the_total_carries_a_gradient() {
    let Some(dir) = losses_reference_dir("only_the_total_carries_a_gradient") else {
        return;
    };
    let file = load_cases(&dir);
    let inputs = ReferenceInputs::load(&dir);
    let case = file
        .cases
        .iter()
        .find(|case| case.mode == "student" && case.gamma > 0.0 && case.gamma < 1.0)
        .expect("a student case mixing teacher and human");
    let loss = loss_of(case);
    let student = Var::from_tensor(&inputs.logits).unwrap();
    let parts = compute(
        &loss,
        student.as_tensor(),
        &inputs.hard,
        &inputs.human,
        &inputs.teacher_logits,
    );
    let detached = [
        Some(&parts.hard_ce),
        parts.kd.as_ref(),
        parts.teacher_term.as_ref(),
        parts.human_term.as_ref(),
    ];
    for part in detached.into_iter().map(Option::unwrap) {
        let grads = part.backward().unwrap();
        assert!(
            grads.get(student.as_tensor()).is_none(),
            "a logged part is attached"
        );
    }
    let grads = parts.total.backward().unwrap();
    let norm = grads
        .get(student.as_tensor())
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert!(norm > 0.0);
}

/// The objectives of `torch/objectives/` (kd, dkd, dist, logit standardisation).
#[path = "reference/objectives.rs"]
mod objectives;
