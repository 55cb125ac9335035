//! The field's objectives against their upstream PyTorch code
//! (`$HKD_REFERENCE_DIR/torch/objectives/`: torchdistill's `KDLoss`, `DISTLoss`,
//! `LogitStdKDLoss` and mdistiller's `dkd_loss`, in float64): every case's loss and its
//! gradient with respect to the student logits, through the registry
//! ([`ObjectiveConfig::build`]) as a trainer uses it — f64 to 1e-10, f32 to 1e-5 — and a
//! check that the comparison is sharp (an expected value moved by 1e-6 relative fails).

use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor, Var};
use hkd_losses::{Dist, DistillationMode, Dkd, Kd, ObjectiveConfig, ObjectiveInputs, TargetMix};
use serde::Deserialize;

use super::common::{load_f64, load_i64};

#[derive(Debug, Deserialize)]
struct CasesFile {
    dtype: String,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
struct Case {
    set: String,
    objective: String,
    target: String,
    params: serde_json::Map<String, serde_json::Value>,
    expected_total: f64,
    grad_file: String,
}

fn dir(test: &str) -> Option<PathBuf> {
    hkd_test_support::reference_dir(test, "torch/objectives/cases.json")
        .map(|d| d.join("torch/objectives"))
}

fn load_cases(dir: &Path) -> CasesFile {
    let text = std::fs::read_to_string(dir.join("cases.json")).expect("cases.json");
    let file: CasesFile = serde_json::from_str(&text).expect("cases.json parses");
    assert_eq!(file.dtype, "float64");
    assert_eq!(file.cases.len(), 28, "cases.json should list 28 cases");
    file
}

fn param(case: &Case, key: &str) -> f64 {
    case.params[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{case:?}: no number `{key}`"))
}

/// The target of a case: the teacher (γ = 0) or the human distributions unsmoothed
/// (ε = 0, zeros clamped as the reference does), and the run mode it needs.
fn target_of(case: &Case) -> (TargetMix, DistillationMode) {
    match case.target.as_str() {
        "teacher" => (
            TargetMix {
                gamma: 0.0,
                human_smoothing: 0.0,
            },
            DistillationMode::Student,
        ),
        "human" => (
            TargetMix {
                gamma: 0.0,
                human_smoothing: 0.0,
            },
            DistillationMode::Human,
        ),
        other => panic!("unknown target {other}"),
    }
}

/// The hkd settings of a case. DKD and DIST's references are the distillation term alone
/// (mdistiller and torchdistill add the CE elsewhere): CE weight 0, no warm-up.
fn objective_of(case: &Case) -> (ObjectiveConfig, DistillationMode) {
    let (target, mode) = target_of(case);
    let objective = match case.objective.as_str() {
        "kd" | "kd_logit_std" => {
            assert!(
                case.params
                    .get("reduction")
                    .is_none_or(|r| r == "batchmean")
            );
            if let Some(eps) = case.params.get("eps") {
                assert_eq!(eps.as_f64(), Some(hkd_losses::functional::LOGIT_STD_EPS));
            }
            ObjectiveConfig::Kd(Kd {
                temperature: param(case, "temperature"),
                ce_weight: param(case, "alpha_ce"),
                kl_weight: param(case, "beta_kl"),
                logit_std: case.objective == "kd_logit_std",
                target,
            })
        }
        "dkd" => ObjectiveConfig::Dkd(Dkd {
            temperature: param(case, "temperature"),
            ce_weight: 0.0,
            alpha_tckd: param(case, "alpha_tckd"),
            beta_nckd: param(case, "beta_nckd"),
            warmup_epochs: 0,
            logit_std: false,
            target,
        }),
        "dist" => {
            assert_eq!(param(case, "eps"), hkd_losses::objectives::dist::DIST_EPS);
            ObjectiveConfig::Dist(Dist {
                temperature: param(case, "tau"),
                ce_weight: 0.0,
                beta_inter: param(case, "beta_inter"),
                gamma_intra: param(case, "gamma_intra"),
                logit_std: false,
                target,
            })
        }
        other => panic!("unknown objective {other}"),
    };
    (objective, mode)
}

struct Inputs {
    logits: Tensor,
    teacher: Tensor,
    human: Tensor,
    hard: Tensor,
}

fn inputs(dir: &Path, set: &str, dtype: DType) -> Inputs {
    let f = |name: &str| {
        load_f64(&dir.join(format!("{set}_{name}.npy")))
            .to_dtype(dtype)
            .unwrap()
    };
    Inputs {
        logits: f("logits"),
        teacher: f("teacher_logits"),
        human: f("human"),
        hard: load_i64(&dir.join(format!("{set}_hard.npy"))),
    }
}

/// The loss and its gradient with respect to the student logits, in f64.
fn loss_and_gradient(case: &Case, inputs: &Inputs) -> (f64, Vec<f64>) {
    let (config, mode) = objective_of(case);
    let objective = config.build(mode).unwrap();
    let student = Var::from_tensor(&inputs.logits).unwrap();
    let needs = objective.needs();
    let output = objective
        .compute(&ObjectiveInputs {
            student_logits: student.as_tensor(),
            hard_labels: &inputs.hard,
            teacher_logits: needs.teacher_logits.then_some(&inputs.teacher),
            human: needs.human.then_some(&inputs.human),
            epoch: 1,
        })
        .unwrap();
    let total = output
        .total
        .to_dtype(DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    let values = output.values().unwrap();
    assert_eq!(values.total, total);
    let grads = output.total.backward().unwrap();
    let gradient = grads
        .get(student.as_tensor())
        .expect("the student logits get a gradient")
        .to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    (total, gradient)
}

/// The largest difference relative to the expected value's size: for a vector, the
/// largest absolute difference over the largest absolute expected entry.
fn relative_difference(found: &[f64], expected: &[f64]) -> f64 {
    assert_eq!(found.len(), expected.len());
    let scale = expected.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let worst = found
        .iter()
        .zip(expected)
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    if scale == 0.0 { worst } else { worst / scale }
}

fn check_every_case(test: &str, dtype: DType, tolerance: f64) {
    let Some(dir) = dir(test) else { return };
    let file = load_cases(&dir);
    let mut worst = (0.0f64, 0.0f64);
    for (index, case) in file.cases.iter().enumerate() {
        let inputs = inputs(&dir, &case.set, dtype);
        let (total, gradient) = loss_and_gradient(case, &inputs);
        let expected_gradient = load_f64(&dir.join(&case.grad_file))
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let total_error = relative_difference(&[total], &[case.expected_total]);
        let gradient_error = relative_difference(&gradient, &expected_gradient);
        assert!(
            total_error <= tolerance && gradient_error <= tolerance,
            "case {index} ({} {} target {} {:?}) in {dtype:?}: total {total} against {} \
             (relative {total_error:e}), gradient relative {gradient_error:e}; tolerance {tolerance:e}",
            case.set,
            case.objective,
            case.target,
            case.params,
            case.expected_total,
        );
        worst = (worst.0.max(total_error), worst.1.max(gradient_error));
        if dtype == DType::F64 {
            // The comparison is sharp: the reference moved by 1e-6 relative fails it.
            let moved = case.expected_total * (1.0 + 1e-6);
            assert!(
                relative_difference(&[total], &[moved]) > tolerance,
                "case {index}"
            );
            let (at, _) =
                expected_gradient
                    .iter()
                    .enumerate()
                    .fold(
                        (0, 0.0f64),
                        |(i, m), (j, v)| if v.abs() > m { (j, v.abs()) } else { (i, m) },
                    );
            let mut moved = expected_gradient.clone();
            moved[at] *= 1.0 + 1e-6;
            assert!(
                relative_difference(&gradient, &moved) > tolerance,
                "case {index}"
            );
        }
    }
    eprintln!(
        "{test}: 28 cases in {dtype:?}, worst relative difference: total {:e}, gradient {:e}",
        worst.0, worst.1
    );
}

#[test]
fn objectives_match_their_upstream_code_in_f64() {
    check_every_case(
        "objectives_match_their_upstream_code_in_f64",
        DType::F64,
        1e-10,
    );
}

#[test]
fn objectives_match_their_upstream_code_in_f32() {
    check_every_case(
        "objectives_match_their_upstream_code_in_f32",
        DType::F32,
        1e-5,
    );
}

/// With a warm-up, DKD's term at epoch e is min(e / warm-up, 1) of the full term (the CE
/// is not warmed up), as in mdistiller's `DKD.forward_train`.
#[test]
fn dkd_warms_up_linearly_over_the_first_epochs() {
    let Some(dir) = dir("dkd_warms_up_linearly_over_the_first_epochs") else {
        return;
    };
    let inputs = inputs(&dir, "c100", DType::F64);
    let at = |epoch: u32, warmup_epochs: u32| {
        let objective = ObjectiveConfig::Dkd(Dkd {
            warmup_epochs,
            ..Dkd::default()
        })
        .build(DistillationMode::Student)
        .unwrap();
        let values = objective
            .compute(&ObjectiveInputs {
                student_logits: &inputs.logits,
                hard_labels: &inputs.hard,
                teacher_logits: Some(&inputs.teacher),
                human: None,
                epoch,
            })
            .unwrap()
            .values()
            .unwrap();
        let part = |name: &str| values.parts.iter().find(|(n, _)| *n == name).unwrap().1;
        (values.total, part("hard"), part("tckd") + part("nckd"))
    };
    let (_, hard, full) = at(20, 20);
    assert!(full > 1.0, "{full}");
    for (epoch, share) in [
        (1, 1.0 / 20.0),
        (5, 0.25),
        (19, 0.95),
        (20, 1.0),
        (240, 1.0),
    ] {
        let (total, h, term) = at(epoch, 20);
        assert_eq!(h, hard);
        assert!(
            (term - share * full).abs() <= 1e-12 * full,
            "epoch {epoch}: {term} vs {share} × {full}"
        );
        assert!(
            (total - (hard + term)).abs() <= 1e-12 * total,
            "epoch {epoch}"
        );
    }
    assert_eq!(at(1, 0).2, full, "no warm-up");
}
