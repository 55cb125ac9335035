//! Every validation error, with its message, and the config's serde form.

use candle_core::{DType, Device, Tensor};
use hkd_losses::{
    DistilFn, DistillationConfig, DistillationLoss, DistillationMode, KlReduction, LossError,
    LossValues, check_human_distributions,
};

fn config(mode: DistillationMode) -> DistillationConfig {
    DistillationConfig {
        mode,
        ..DistillationConfig::default()
    }
}

struct Inputs {
    student: Tensor,
    labels: Tensor,
    human: Tensor,
    teacher: Tensor,
}

/// A valid batch: N = 2, C = 3, f64 on the CPU.
fn inputs() -> Inputs {
    let cpu = &Device::Cpu;
    Inputs {
        student: Tensor::new(&[[1.0f64, 0.0, -1.0], [0.5, 0.5, 2.0]], cpu).unwrap(),
        labels: Tensor::new(&[0u32, 2], cpu).unwrap(),
        human: Tensor::new(&[[1.0f64, 0.0, 0.0], [0.2, 0.3, 0.5]], cpu).unwrap(),
        teacher: Tensor::new(&[[2.0f64, 0.0, 0.0], [0.0, 1.0, 3.0]], cpu).unwrap(),
    }
}

/// The loss values of the batch in student mode, with or without the teacher's logits.
fn student_values(loss: &DistillationLoss, batch: &Inputs, teacher: bool) -> LossValues {
    loss.compute(
        &batch.student,
        &batch.labels,
        Some(&batch.human),
        teacher.then_some(&batch.teacher),
    )
    .unwrap()
    .to_f64()
    .unwrap()
}

#[test]
fn default_config_is_valid_and_documented_values() {
    let config = DistillationConfig::default();
    assert_eq!(config.mode, DistillationMode::Baseline);
    assert_eq!(config.lambda, 0.5);
    assert_eq!(config.gamma, 0.5);
    assert_eq!(config.temperature_teacher, 1.0);
    assert_eq!(config.temperature_human, 1.0);
    assert_eq!(config.distil_fn, DistilFn::Kl);
    assert_eq!(config.kl_reduction, KlReduction::BatchMean);
    assert_eq!(config.human_smoothing, 0.02);
    assert!(DistillationLoss::new(config).is_ok());
}

#[test]
fn lambda_and_gamma_outside_zero_one_are_rejected() {
    for field in ["lambda", "gamma"] {
        for value in [-0.1, 1.0 + 1e-12, f64::NAN, f64::INFINITY, 7.0] {
            let mut config = DistillationConfig::default();
            match field {
                "lambda" => config.lambda = value,
                _ => config.gamma = value,
            }
            let error = DistillationLoss::new(config).unwrap_err();
            match &error {
                LossError::WeightOutOfRange { field: found, .. } => assert_eq!(*found, field),
                other => panic!("{field} = {value}: unexpected error {other:?}"),
            }
            let message = error.to_string();
            assert!(
                message.contains(field) && message.contains("[0, 1]"),
                "{message}"
            );
        }
        for value in [0.0, 1.0, 0.3] {
            let mut config = DistillationConfig::default();
            match field {
                "lambda" => config.lambda = value,
                _ => config.gamma = value,
            }
            assert!(DistillationLoss::new(config).is_ok(), "{field} = {value}");
        }
    }
}

#[test]
fn non_positive_or_non_finite_temperatures_are_rejected() {
    for field in ["temperature_teacher", "temperature_human"] {
        for value in [0.0, -1.0, f64::NAN, f64::INFINITY, -0.0] {
            let mut config = DistillationConfig::default();
            match field {
                "temperature_teacher" => config.temperature_teacher = value,
                _ => config.temperature_human = value,
            }
            let error = config.validate().unwrap_err();
            assert!(
                matches!(&error, LossError::InvalidTemperature { field: found, .. } if *found == field),
                "{field} = {value}: {error:?}"
            );
            assert!(error.to_string().contains(field));
        }
    }
    let config = DistillationConfig {
        temperature_teacher: 1e-3,
        temperature_human: 100.0,
        ..DistillationConfig::default()
    };
    assert!(config.validate().is_ok());
}

#[test]
fn negative_or_non_finite_smoothing_is_rejected() {
    for value in [-0.01, f64::NAN, f64::INFINITY] {
        let config = DistillationConfig {
            human_smoothing: value,
            ..DistillationConfig::default()
        };
        let error = DistillationLoss::new(config).unwrap_err();
        assert!(
            matches!(error, LossError::InvalidSmoothing { .. }),
            "{value}: {error:?}"
        );
        assert!(error.to_string().contains("human_smoothing"));
    }
    let zero = DistillationConfig {
        human_smoothing: 0.0,
        ..DistillationConfig::default()
    };
    assert!(DistillationLoss::new(zero).is_ok());
}

#[test]
fn teacher_is_required_in_student_mode_and_rejected_elsewhere() {
    let batch = inputs();
    let student = DistillationLoss::new(config(DistillationMode::Student)).unwrap();
    let error = student
        .compute(&batch.student, &batch.labels, Some(&batch.human), None)
        .unwrap_err();
    assert!(matches!(error, LossError::MissingTeacher), "{error:?}");
    assert!(error.to_string().contains("student"));
    let almost_human = DistillationLoss::new(DistillationConfig {
        gamma: 0.999,
        ..config(DistillationMode::Student)
    })
    .unwrap();
    assert!(almost_human.config().needs_teacher_logits());
    let error = almost_human
        .compute(&batch.student, &batch.labels, Some(&batch.human), None)
        .unwrap_err();
    assert!(matches!(error, LossError::MissingTeacher), "{error:?}");

    for mode in [DistillationMode::Baseline, DistillationMode::Human] {
        let loss = DistillationLoss::new(config(mode)).unwrap();
        let error = loss
            .compute(
                &batch.student,
                &batch.labels,
                Some(&batch.human),
                Some(&batch.teacher),
            )
            .unwrap_err();
        assert!(
            matches!(error, LossError::UnexpectedTeacher { mode: found } if found == mode),
            "{mode}: {error:?}"
        );
        assert!(error.to_string().contains(mode.as_str()));
    }
}

#[test]
fn human_labels_are_required_in_human_and_student_mode() {
    let batch = inputs();
    for (mode, teacher) in [
        (DistillationMode::Human, None),
        (DistillationMode::Student, Some(&batch.teacher)),
    ] {
        let loss = DistillationLoss::new(config(mode)).unwrap();
        let error = loss
            .compute(&batch.student, &batch.labels, None, teacher)
            .unwrap_err();
        assert!(
            matches!(error, LossError::MissingHuman { mode: found } if found == mode),
            "{mode}: {error:?}"
        );
    }
    // Baseline mode needs no human labels and ignores them when given.
    let baseline = DistillationLoss::new(config(DistillationMode::Baseline)).unwrap();
    let without = baseline
        .compute(&batch.student, &batch.labels, None, None)
        .unwrap()
        .to_f64()
        .unwrap();
    let with = baseline
        .compute(&batch.student, &batch.labels, Some(&batch.human), None)
        .unwrap()
        .to_f64()
        .unwrap();
    assert_eq!(without, with);
    assert_eq!(without.total, without.hard_ce);
    assert_eq!(
        (without.kd, without.teacher_term, without.human_term),
        (None, None, None)
    );
}

#[test]
fn zero_smoothing_rejects_rows_with_zeros_and_accepts_positive_rows() {
    let batch = inputs();
    let loss = DistillationLoss::new(DistillationConfig {
        mode: DistillationMode::Human,
        human_smoothing: 0.0,
        ..DistillationConfig::default()
    })
    .unwrap();
    let error = loss
        .compute(&batch.student, &batch.labels, Some(&batch.human), None)
        .unwrap_err();
    assert!(
        matches!(error, LossError::ZeroHumanProbabilityWithoutSmoothing { min } if min == 0.0),
        "{error:?}"
    );
    assert!(error.to_string().contains("human_smoothing"));

    let positive = Tensor::new(&[[0.8f64, 0.1, 0.1], [0.2, 0.3, 0.5]], &Device::Cpu).unwrap();
    let values = loss
        .compute(&batch.student, &batch.labels, Some(&positive), None)
        .unwrap()
        .to_f64()
        .unwrap();
    assert!(
        values.kd.unwrap().is_finite() && values.total.is_finite(),
        "{values:?}"
    );
}

#[test]
fn shape_mismatches_name_the_input() {
    let batch = inputs();
    let cpu = &Device::Cpu;
    let student_loss = DistillationLoss::new(config(DistillationMode::Student)).unwrap();
    let compute = |student: &Tensor, labels: &Tensor, human: &Tensor, teacher: &Tensor| {
        student_loss.compute(student, labels, Some(human), Some(teacher))
    };
    let cases: Vec<(&str, Result<_, _>)> = vec![
        (
            "student_logits",
            compute(
                &batch.student.flatten_all().unwrap(),
                &batch.labels,
                &batch.human,
                &batch.teacher,
            ),
        ),
        (
            "student_logits",
            compute(
                &Tensor::zeros((0, 3), DType::F64, cpu).unwrap(),
                &Tensor::zeros(0, DType::U32, cpu).unwrap(),
                &batch.human,
                &batch.teacher,
            ),
        ),
        (
            "hard_labels",
            compute(
                &batch.student,
                &batch.labels.unsqueeze(1).unwrap(),
                &batch.human,
                &batch.teacher,
            ),
        ),
        (
            "hard_labels",
            compute(
                &batch.student,
                &Tensor::new(&[0u32, 1, 2], cpu).unwrap(),
                &batch.human,
                &batch.teacher,
            ),
        ),
        (
            "human",
            compute(
                &batch.student,
                &batch.labels,
                &Tensor::zeros((2, 4), DType::F64, cpu).unwrap(),
                &batch.teacher,
            ),
        ),
        (
            "human",
            compute(
                &batch.student,
                &batch.labels,
                &batch.human.t().unwrap(),
                &batch.teacher,
            ),
        ),
        (
            "teacher_logits",
            compute(
                &batch.student,
                &batch.labels,
                &batch.human,
                &Tensor::zeros((3, 3), DType::F64, cpu).unwrap(),
            ),
        ),
    ];
    for (input, result) in cases {
        let error = result.unwrap_err();
        assert!(
            matches!(&error, LossError::ShapeMismatch { input: found, .. } if *found == input),
            "{input}: {error:?}"
        );
        assert!(error.to_string().contains(input), "{error}");
    }
}

#[test]
fn unsupported_dtypes_name_the_input() {
    let batch = inputs();
    let loss = DistillationLoss::new(config(DistillationMode::Student)).unwrap();
    let as_u32 = |tensor: &Tensor| tensor.to_dtype(DType::U32).unwrap();
    let cases = [
        (
            "student_logits",
            loss.compute(
                &as_u32(&batch.student),
                &batch.labels,
                Some(&batch.human),
                Some(&batch.teacher),
            ),
        ),
        (
            "hard_labels",
            loss.compute(
                &batch.student,
                &batch.labels.to_dtype(DType::F32).unwrap(),
                Some(&batch.human),
                Some(&batch.teacher),
            ),
        ),
        (
            "human",
            loss.compute(
                &batch.student,
                &batch.labels,
                Some(&as_u32(&batch.human)),
                Some(&batch.teacher),
            ),
        ),
        (
            "teacher_logits",
            loss.compute(
                &batch.student,
                &batch.labels,
                Some(&batch.human),
                Some(&batch.teacher.to_dtype(DType::I64).unwrap()),
            ),
        ),
    ];
    for (input, result) in cases {
        let error = result.unwrap_err();
        assert!(
            matches!(&error, LossError::UnsupportedDType { input: found, .. } if *found == input),
            "{input}: {error:?}"
        );
    }
}

#[test]
fn mixed_float_dtypes_and_label_dtypes_agree() {
    let batch = inputs();
    let loss = DistillationLoss::new(config(DistillationMode::Student)).unwrap();
    let reference = student_values(&loss, &batch, true);
    for labels in [DType::I64, DType::U8] {
        let values = loss
            .compute(
                &batch.student,
                &batch.labels.to_dtype(labels).unwrap(),
                Some(&batch.human),
                Some(&batch.teacher),
            )
            .unwrap()
            .to_f64()
            .unwrap();
        assert_eq!(values, reference, "{labels:?} labels");
    }
    // f32 human and teacher are cast to the f64 student's dtype.
    let parts = loss
        .compute(
            &batch.student,
            &batch.labels,
            Some(&batch.human.to_dtype(DType::F32).unwrap()),
            Some(&batch.teacher.to_dtype(DType::F32).unwrap()),
        )
        .unwrap();
    assert_eq!(parts.total.dtype(), DType::F64);
    assert!((parts.to_f64().unwrap().total - reference.total).abs() < 1e-6);
}

#[test]
fn out_of_range_labels_are_an_error_on_the_cpu() {
    let batch = inputs();
    let loss = DistillationLoss::new(config(DistillationMode::Baseline)).unwrap();
    let labels = Tensor::new(&[0u32, 3], &Device::Cpu).unwrap();
    let error = loss
        .compute(&batch.student, &labels, None, None)
        .unwrap_err();
    assert!(matches!(error, LossError::Candle(_)), "{error:?}");
}

#[test]
fn human_rows_are_checked_by_check_human_distributions() {
    let cpu = &Device::Cpu;
    assert!(check_human_distributions(&inputs().human, 1e-9).is_ok());
    let bad = [
        (
            Tensor::new(&[[0.5f64, 0.5], [1.2, -0.2]], cpu).unwrap(),
            1,
            "-0.2",
        ),
        (
            Tensor::new(&[[0.5f32, 0.4], [0.5, 0.5]], cpu).unwrap(),
            0,
            "sum",
        ),
        (
            Tensor::new(&[[0.5f64, 0.5], [f64::NAN, 1.0]], cpu).unwrap(),
            1,
            "NaN",
        ),
    ];
    for (human, expected_row, problem) in bad {
        let error = check_human_distributions(&human, 1e-6).unwrap_err();
        match &error {
            LossError::InvalidHumanRow {
                row,
                problem: found,
                ..
            } => {
                assert_eq!(*row, expected_row);
                assert!(found.contains(problem), "{found}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let error =
        check_human_distributions(&Tensor::new(&[0.5f64, 0.5], cpu).unwrap(), 1e-6).unwrap_err();
    assert!(matches!(
        error,
        LossError::ShapeMismatch { input: "human", .. }
    ));
}

#[test]
fn enum_spellings_parse_and_display() {
    for (text, mode) in [
        ("baseline", DistillationMode::Baseline),
        ("human", DistillationMode::Human),
        ("student", DistillationMode::Student),
    ] {
        assert_eq!(text.parse::<DistillationMode>().unwrap(), mode);
        assert_eq!(mode.to_string(), text);
    }
    assert_eq!("KL".parse::<DistilFn>().unwrap(), DistilFn::Kl);
    assert_eq!("CE".parse::<DistilFn>().unwrap(), DistilFn::Ce);
    assert_eq!(
        "batchmean".parse::<KlReduction>().unwrap(),
        KlReduction::BatchMean
    );
    assert_eq!(
        "elementwise_mean".parse::<KlReduction>().unwrap(),
        KlReduction::ElementwiseMean
    );
    for (field, result) in [
        ("mode", "teacher".parse::<DistillationMode>().map(|_| ())),
        ("distil_fn", "kl".parse::<DistilFn>().map(|_| ())),
        ("kl_reduction", "mean".parse::<KlReduction>().map(|_| ())),
    ] {
        let error = result.unwrap_err();
        assert!(
            matches!(&error, LossError::UnknownVariant { field: found, .. } if *found == field),
            "{error:?}"
        );
        assert!(error.to_string().contains(field));
    }
}

#[test]
fn config_reads_from_serde_with_defaults_and_rejects_unknown_fields() {
    let full = r#"{"mode": "student", "lambda": 0.3, "gamma": 0.7,
        "temperature_teacher": 4.0, "temperature_human": 2.0, "distil_fn": "CE",
        "kl_reduction": "elementwise_mean", "human_smoothing": 0.01}"#;
    let config: DistillationConfig = serde_json::from_str(full).unwrap();
    assert_eq!(
        config,
        DistillationConfig {
            mode: DistillationMode::Student,
            lambda: 0.3,
            gamma: 0.7,
            temperature_teacher: 4.0,
            temperature_human: 2.0,
            distil_fn: DistilFn::Ce,
            kl_reduction: KlReduction::ElementwiseMean,
            human_smoothing: 0.01,
        }
    );
    let round_trip: DistillationConfig =
        serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();
    assert_eq!(round_trip, config);

    let partial: DistillationConfig = serde_json::from_str(r#"{"mode": "human"}"#).unwrap();
    assert_eq!(partial, config_with_mode_human());

    for bad in [
        r#"{"mode": "human", "lamda": 0.5}"#,
        r#"{"distil_fn": "kl"}"#,
        r#"{"kl_reduction": "mean"}"#,
        r#"{"mode": "teacher"}"#,
    ] {
        assert!(
            serde_json::from_str::<DistillationConfig>(bad).is_err(),
            "{bad}"
        );
    }
}

fn config_with_mode_human() -> DistillationConfig {
    config(DistillationMode::Human)
}

#[test]
fn at_gamma_one_the_teacher_is_optional_and_changes_nothing() {
    let batch = inputs();
    for distil_fn in [DistilFn::Kl, DistilFn::Ce] {
        let loss = DistillationLoss::new(DistillationConfig {
            gamma: 1.0,
            lambda: 0.7,
            temperature_teacher: 3.0,
            temperature_human: 2.0,
            distil_fn,
            ..config(DistillationMode::Student)
        })
        .unwrap();
        assert!(!loss.config().needs_teacher_logits());
        let with = student_values(&loss, &batch, true);
        let without = student_values(&loss, &batch, false);
        assert_eq!(with.teacher_term, Some(0.0), "{distil_fn}");
        assert_eq!(without.teacher_term, Some(0.0), "{distil_fn}");
        assert!(without.human_term.is_some_and(|h| h > 0.0), "{without:?}");
        assert_eq!(
            (
                with.total.to_bits(),
                with.kd.map(f64::to_bits),
                with.human_term.map(f64::to_bits)
            ),
            (
                without.total.to_bits(),
                without.kd.map(f64::to_bits),
                without.human_term.map(f64::to_bits)
            ),
            "{distil_fn}: {with:?} vs {without:?}"
        );
    }
    for mode in [DistillationMode::Baseline, DistillationMode::Human] {
        let cfg = DistillationConfig {
            gamma: 1.0,
            ..config(mode)
        };
        assert!(!cfg.needs_teacher_logits(), "{mode}");
    }
}
