//! Every validation error, with its message, and the config's serde form.
#![cfg(feature = "candle")]

use candle_core::{DType, Device, Tensor};
use hkd_losses::{
    DistilFn, DistillationConfig, DistillationLoss, DistillationMode, HumanTarget, KlReduction,
    LossError, LossValues, check_human_distributions,
};

const MODES: [DistillationMode; 3] = [
    DistillationMode::Baseline,
    DistillationMode::Human,
    DistillationMode::Student,
];

/// The loss of `mode` with the default config.
fn loss(mode: DistillationMode) -> DistillationLoss {
    DistillationLoss::new(mode, DistillationConfig::default()).unwrap()
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
    // The original project's values, with no label smoothing.
    let config = DistillationConfig::default();
    assert_eq!(config.lambda, 0.5);
    assert_eq!(config.gamma, 0.0);
    assert_eq!(config.temperature_teacher, 1.0);
    assert_eq!(config.temperature_human, 1.0);
    assert_eq!(config.distil_fn, DistilFn::Kl);
    assert_eq!(config.kl_reduction, KlReduction::ElementwiseMean);
    assert_eq!(config.human_smoothing, 0.02);
    assert_eq!(config.human_target, HumanTarget::Log);
    assert_eq!(config.label_smoothing, 0.0);
    for mode in MODES {
        let loss = DistillationLoss::new(mode, config).unwrap();
        assert_eq!(loss.mode(), mode);
        assert_eq!(*loss.config(), config);
    }
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
            // Checked in every mode, also where the field is unused.
            for mode in MODES {
                let error = DistillationLoss::new(mode, config).unwrap_err();
                match &error {
                    LossError::WeightOutOfRange { field: found, .. } => assert_eq!(*found, field),
                    other => panic!("{mode}, {field} = {value}: unexpected error {other:?}"),
                }
                let message = error.to_string();
                assert!(
                    message.contains(field) && message.contains("[0, 1]"),
                    "{message}"
                );
            }
        }
        for value in [0.0, 1.0, 0.3] {
            let mut config = DistillationConfig::default();
            match field {
                "lambda" => config.lambda = value,
                _ => config.gamma = value,
            }
            for mode in MODES {
                assert!(
                    DistillationLoss::new(mode, config).is_ok(),
                    "{mode}, {field} = {value}"
                );
            }
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
        let error = DistillationLoss::new(DistillationMode::Human, config).unwrap_err();
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
    assert!(DistillationLoss::new(DistillationMode::Human, zero).is_ok());
}

#[test]
fn label_smoothing_outside_zero_one_is_rejected() {
    for value in [
        -0.1,
        -f64::MIN_POSITIVE,
        1.0,
        1.5,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ] {
        let config = DistillationConfig {
            label_smoothing: value,
            ..DistillationConfig::default()
        };
        // Checked in every mode: the hard-label term exists in all of them.
        for mode in MODES {
            let error = DistillationLoss::new(mode, config).unwrap_err();
            assert!(
                matches!(error, LossError::InvalidLabelSmoothing { found } if found.to_bits() == value.to_bits()),
                "{mode}, {value}: {error:?}"
            );
            let message = error.to_string();
            assert!(
                message.contains("label_smoothing") && message.contains("[0, 1)"),
                "{message}"
            );
        }
    }
    for value in [0.0, 0.1, 0.5, 0.999] {
        let config = DistillationConfig {
            label_smoothing: value,
            ..DistillationConfig::default()
        };
        assert!(config.validate().is_ok(), "{value}");
    }
}

#[test]
fn teacher_is_required_in_student_mode_and_rejected_elsewhere() {
    let batch = inputs();
    let student = loss(DistillationMode::Student);
    assert!(student.needs_teacher_logits());
    let error = student
        .compute(&batch.student, &batch.labels, Some(&batch.human), None)
        .unwrap_err();
    assert!(matches!(error, LossError::MissingTeacher), "{error:?}");
    assert!(error.to_string().contains("student"));
    let almost_human = DistillationLoss::new(
        DistillationMode::Student,
        DistillationConfig {
            gamma: 0.999,
            ..DistillationConfig::default()
        },
    )
    .unwrap();
    assert!(almost_human.needs_teacher_logits());
    let error = almost_human
        .compute(&batch.student, &batch.labels, Some(&batch.human), None)
        .unwrap_err();
    assert!(matches!(error, LossError::MissingTeacher), "{error:?}");

    for mode in [DistillationMode::Baseline, DistillationMode::Human] {
        let loss = loss(mode);
        assert!(!loss.needs_teacher_logits(), "{mode}");
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
    let student_with_human_share = DistillationLoss::new(
        DistillationMode::Student,
        DistillationConfig {
            gamma: 0.5,
            ..DistillationConfig::default()
        },
    )
    .unwrap();
    for (loss, teacher) in [
        (loss(DistillationMode::Human), None),
        (student_with_human_share, Some(&batch.teacher)),
    ] {
        let mode = loss.mode();
        assert!(loss.needs_human_labels(), "{mode}");
        let error = loss
            .compute(&batch.student, &batch.labels, None, teacher)
            .unwrap_err();
        assert!(
            matches!(error, LossError::MissingHuman { mode: found } if found == mode),
            "{mode}: {error:?}"
        );
    }
    // A student with γ = 0 needs none: its human term has weight 0 and is reported as 0,
    // the total bit-identical to passing them.
    let student = loss(DistillationMode::Student);
    assert!(!student.needs_human_labels());
    let with = student_values(&student, &batch, true);
    let without = student
        .compute(&batch.student, &batch.labels, None, Some(&batch.teacher))
        .unwrap()
        .to_f64()
        .unwrap();
    assert_eq!(without.human_term, Some(0.0));
    assert_eq!(without.total.to_bits(), with.total.to_bits());
    assert_eq!(without.kd.map(f64::to_bits), with.kd.map(f64::to_bits));
    // Baseline mode needs no human labels and ignores them when given.
    let baseline = loss(DistillationMode::Baseline);
    assert!(!baseline.needs_human_labels());
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
    let loss = DistillationLoss::new(
        DistillationMode::Human,
        DistillationConfig {
            human_smoothing: 0.0,
            ..DistillationConfig::default()
        },
    )
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
    let student_loss = loss(DistillationMode::Student);
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
    let loss = loss(DistillationMode::Student);
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
    // γ = 0.5 so that both the teacher and the human term count.
    let loss = DistillationLoss::new(
        DistillationMode::Student,
        DistillationConfig {
            gamma: 0.5,
            ..DistillationConfig::default()
        },
    )
    .unwrap();
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
    let loss = loss(DistillationMode::Baseline);
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
    for (text, target) in [("log", HumanTarget::Log), ("pilot", HumanTarget::Pilot)] {
        assert_eq!(text.parse::<HumanTarget>().unwrap(), target);
        assert_eq!(target.to_string(), text);
    }
    for (field, result) in [
        ("mode", "teacher".parse::<DistillationMode>().map(|_| ())),
        ("distil_fn", "kl".parse::<DistilFn>().map(|_| ())),
        ("kl_reduction", "mean".parse::<KlReduction>().map(|_| ())),
        ("human_target", "raw".parse::<HumanTarget>().map(|_| ())),
        ("human_target", "Pilot".parse::<HumanTarget>().map(|_| ())),
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
    let full = r#"{"lambda": 0.3, "gamma": 0.7,
        "temperature_teacher": 4.0, "temperature_human": 2.0, "distil_fn": "CE",
        "kl_reduction": "batchmean", "human_smoothing": 0.01,
        "human_target": "pilot", "label_smoothing": 0.1}"#;
    let config: DistillationConfig = serde_json::from_str(full).unwrap();
    assert_eq!(
        config,
        DistillationConfig {
            lambda: 0.3,
            gamma: 0.7,
            temperature_teacher: 4.0,
            temperature_human: 2.0,
            distil_fn: DistilFn::Ce,
            kl_reduction: KlReduction::BatchMean,
            human_smoothing: 0.01,
            human_target: HumanTarget::Pilot,
            label_smoothing: 0.1,
        }
    );
    let round_trip: DistillationConfig =
        serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();
    assert_eq!(round_trip, config);

    let empty: DistillationConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(empty, DistillationConfig::default());
    let partial: DistillationConfig =
        serde_json::from_str(r#"{"lambda": 0.7, "human_target": "log"}"#).unwrap();
    assert_eq!(
        partial,
        DistillationConfig {
            lambda: 0.7,
            ..DistillationConfig::default()
        }
    );

    for bad in [
        r#"{"lamda": 0.5}"#,
        r#"{"distil_fn": "kl"}"#,
        r#"{"kl_reduction": "mean"}"#,
        r#"{"human_target": "raw"}"#,
        // The mode is not part of the config: it is given to `DistillationLoss::new`.
        r#"{"mode": "human"}"#,
    ] {
        assert!(
            serde_json::from_str::<DistillationConfig>(bad).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn at_gamma_one_the_teacher_is_optional_and_changes_nothing() {
    let batch = inputs();
    for distil_fn in [DistilFn::Kl, DistilFn::Ce] {
        let loss = DistillationLoss::new(
            DistillationMode::Student,
            DistillationConfig {
                gamma: 1.0,
                lambda: 0.7,
                temperature_teacher: 3.0,
                temperature_human: 2.0,
                distil_fn,
                ..DistillationConfig::default()
            },
        )
        .unwrap();
        assert!(!loss.needs_teacher_logits());
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
            ..DistillationConfig::default()
        };
        assert!(
            !DistillationLoss::new(mode, cfg)
                .unwrap()
                .needs_teacher_logits(),
            "{mode}"
        );
    }
}

#[test]
fn pilot_target_uses_raw_rows_without_smoothing_or_zero_check() {
    let batch = inputs();
    let values = |human_target, human_smoothing| {
        DistillationLoss::new(
            DistillationMode::Human,
            DistillationConfig {
                human_target,
                human_smoothing,
                ..DistillationConfig::default()
            },
        )
        .unwrap()
        .compute(&batch.student, &batch.labels, Some(&batch.human), None)
        .unwrap()
        .to_f64()
        .unwrap()
    };
    // The rows contain zeros: an error for the log target at ε = 0, fine for pilot.
    let pilot = values(HumanTarget::Pilot, 0.0);
    assert!(
        pilot.kd.unwrap().is_finite() && pilot.kd.unwrap() > 0.0,
        "{pilot:?}"
    );
    // ε does not enter the pilot target.
    assert_eq!(values(HumanTarget::Pilot, 0.02), pilot);
    assert_ne!(values(HumanTarget::Log, 0.02).kd, pilot.kd);
    // Human mode, KL, elementwise_mean, T_h = 1: kd = mean over N·C of p·(log p − log_softmax(s))
    // with p = softmax(h) of the raw rows.
    let softmax = |row: [f64; 3]| {
        let sum: f64 = row.iter().map(|x| x.exp()).sum();
        row.map(|x| x.exp() / sum)
    };
    let student = [[1.0, 0.0, -1.0], [0.5, 0.5, 2.0]];
    let human = [[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]];
    let mut expected = 0.0;
    for (s, h) in student.into_iter().zip(human) {
        let (p, q) = (softmax(h), softmax(s));
        expected += (0..3).map(|c| p[c] * (p[c].ln() - q[c].ln())).sum::<f64>();
    }
    expected /= 6.0;
    let kd = pilot.kd.unwrap();
    assert!(
        (kd - expected).abs() <= 1e-14,
        "kd {kd}, expected {expected}"
    );
}

#[test]
fn label_smoothing_mixes_the_hard_ce_with_the_uniform_ce_in_every_mode() {
    let batch = inputs();
    let values = |mode, label_smoothing| {
        let loss = DistillationLoss::new(
            mode,
            DistillationConfig {
                label_smoothing,
                gamma: 0.5,
                ..DistillationConfig::default()
            },
        )
        .unwrap();
        let teacher = loss.needs_teacher_logits().then_some(&batch.teacher);
        loss.compute(&batch.student, &batch.labels, Some(&batch.human), teacher)
            .unwrap()
            .to_f64()
            .unwrap()
    };
    // −log_softmax of the two rows; labels 0 and 2.
    let neg_log_softmax = |row: [f64; 3]| {
        let log_sum: f64 = row.iter().map(|x| x.exp()).sum::<f64>().ln();
        row.map(|x| log_sum - x)
    };
    let rows = [
        neg_log_softmax([1.0, 0.0, -1.0]),
        neg_log_softmax([0.5, 0.5, 2.0]),
    ];
    let ce = (rows[0][0] + rows[1][2]) / 2.0;
    let uniform = rows.iter().flatten().sum::<f64>() / 6.0;
    for mode in MODES {
        let plain = values(mode, 0.0);
        assert!((plain.hard_ce - ce).abs() <= 1e-14, "{mode}: {plain:?}");
        let alpha = 0.3;
        let smoothed = values(mode, alpha);
        let expected = (1.0 - alpha) * ce + alpha * uniform;
        assert!(
            (smoothed.hard_ce - expected).abs() <= 1e-14,
            "{mode}: hard_ce {} expected {expected}",
            smoothed.hard_ce
        );
        // Only the hard term changes.
        assert_eq!(
            (smoothed.kd, smoothed.teacher_term, smoothed.human_term),
            (plain.kd, plain.teacher_term, plain.human_term),
            "{mode}"
        );
        let total = match smoothed.kd {
            None => smoothed.hard_ce,
            Some(kd) => 0.5 * smoothed.hard_ce + 0.5 * kd,
        };
        assert!(
            (smoothed.total - total).abs() <= 1e-14,
            "{mode}: {smoothed:?}"
        );
    }
}
