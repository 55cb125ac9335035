//! Properties of the objective on random inputs: KL ≥ 0, KL = 0 at the target, soft CE =
//! KL + target entropy, T²-scaling of the gradient, finiteness for extreme logits.
#![cfg(feature = "candle")]

use candle_core::{DType, Device, Tensor, Var};
use hkd_losses::{
    DistilFn, DistillationConfig, DistillationLoss, DistillationMode, HumanTarget, KlReduction,
    LossValues,
};
use proptest::prelude::*;

/// A random batch: student logits, teacher logits, human rows (some with zeros), labels.
#[derive(Debug, Clone)]
struct Batch {
    batch: usize,
    classes: usize,
    student: Vec<f64>,
    teacher: Vec<f64>,
    human: Vec<f64>,
    labels: Vec<u32>,
}

impl Batch {
    fn tensors(&self) -> (Tensor, Tensor, Tensor, Tensor) {
        let shape = (self.batch, self.classes);
        let cpu = &Device::Cpu;
        (
            Tensor::from_vec(self.student.clone(), shape, cpu).unwrap(),
            Tensor::from_vec(self.teacher.clone(), shape, cpu).unwrap(),
            Tensor::from_vec(self.human.clone(), shape, cpu).unwrap(),
            Tensor::from_vec(self.labels.clone(), self.batch, cpu).unwrap(),
        )
    }
}

fn batch_strategy(logit_range: f64) -> impl Strategy<Value = Batch> {
    (1usize..6, 2usize..8).prop_flat_map(move |(batch, classes)| {
        let cells = batch * classes;
        (
            prop::collection::vec(-logit_range..logit_range, cells),
            prop::collection::vec(-logit_range..logit_range, cells),
            // Weights with exact zeros about a third of the time; one positive per row.
            prop::collection::vec(prop_oneof![Just(0.0), 0.0..1.0f64, 0.0..1.0f64], cells),
            prop::collection::vec(0..classes as u32, batch),
        )
            .prop_map(move |(student, teacher, mut human, labels)| {
                for row in human.chunks_mut(classes) {
                    row[0] += 1e-3;
                    let sum: f64 = row.iter().sum();
                    row.iter_mut().for_each(|value| *value /= sum);
                }
                Batch {
                    batch,
                    classes,
                    student,
                    teacher,
                    human,
                    labels,
                }
            })
    })
}

fn reduction_strategy() -> impl Strategy<Value = KlReduction> {
    prop_oneof![
        Just(KlReduction::BatchMean),
        Just(KlReduction::ElementwiseMean)
    ]
}

fn values(mode: DistillationMode, config: DistillationConfig, batch: &Batch) -> LossValues {
    let (student, teacher, human, labels) = batch.tensors();
    let teacher = (mode == DistillationMode::Student).then_some(&teacher);
    DistillationLoss::new(mode, config)
        .unwrap()
        .compute(&student, &labels, Some(&human), teacher)
        .unwrap()
        .to_f64()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn kl_soft_parts_are_never_negative(
        batch in batch_strategy(20.0),
        reduction in reduction_strategy(),
        lambda in 0.0..=1.0f64,
        gamma in 0.0..=1.0f64,
        temperature_teacher in 0.25..10.0f64,
        temperature_human in 0.25..10.0f64,
        human_smoothing in 1e-4..0.1f64,
    ) {
        let config = DistillationConfig {
            lambda,
            gamma,
            temperature_teacher,
            temperature_human,
            distil_fn: DistilFn::Kl,
            kl_reduction: reduction,
            human_smoothing,
            ..DistillationConfig::default()
        };
        let student = values(DistillationMode::Student, config, &batch);
        let human = values(DistillationMode::Human, config, &batch);
        for value in [
            student.kd.unwrap(),
            student.teacher_term.unwrap(),
            student.human_term.unwrap(),
            human.kd.unwrap(),
        ] {
            prop_assert!(value >= -1e-12, "a KL part is negative: {value}");
        }
        prop_assert!(student.total.is_finite() && student.total >= 0.0);
        // The human term alone (γ = 1) equals human mode's kd.
        let only_human = values(
            DistillationMode::Student,
            DistillationConfig { gamma: 1.0, ..config },
            &batch,
        );
        prop_assert!((only_human.kd.unwrap() - human.kd.unwrap()).abs() <= 1e-12 * (1.0 + human.kd.unwrap()));
    }

    #[test]
    fn kl_is_zero_when_the_student_equals_the_teacher(
        batch in batch_strategy(20.0),
        reduction in reduction_strategy(),
        temperature in 0.25..10.0f64,
        shift in -5.0..5.0f64,
    ) {
        // A constant shift per batch does not change softmax.
        let student = Batch {
            student: batch.teacher.iter().map(|logit| logit + shift).collect(),
            ..batch.clone()
        };
        let config = DistillationConfig {
            gamma: 0.0,
            temperature_teacher: temperature,
            distil_fn: DistilFn::Kl,
            kl_reduction: reduction,
            ..DistillationConfig::default()
        };
        let at_target = values(DistillationMode::Student, config, &student);
        prop_assert!(at_target.teacher_term.unwrap().abs() <= 1e-12, "{at_target:?}");
        prop_assert!(at_target.kd.unwrap().abs() <= 1e-12, "{at_target:?}");
        // And it is not zero elsewhere: where the tempered distributions of the unmodified
        // random student and the teacher differ visibly, the KL is positive. (Distinct logits
        // are not enough: at T = 0.25 both softmaxes can saturate on the same class.)
        let elsewhere = values(DistillationMode::Student, config, &batch);
        let softmax = |row: &[f64]| {
            let max = row.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x / temperature));
            let exp: Vec<f64> = row.iter().map(|&x| (x / temperature - max).exp()).collect();
            let sum: f64 = exp.iter().sum();
            exp.into_iter().map(|e| e / sum).collect::<Vec<f64>>()
        };
        let distinct = batch
            .student
            .chunks(batch.classes)
            .zip(batch.teacher.chunks(batch.classes))
            .any(|(s, t)| softmax(s).iter().zip(softmax(t)).any(|(p, q)| (p - q).abs() > 1e-3));
        if distinct {
            prop_assert!(elsewhere.kd.unwrap() > 0.0, "{elsewhere:?}");
        }
    }

    #[test]
    fn kl_is_zero_when_the_student_equals_the_smoothed_human_target(
        batch in batch_strategy(20.0),
        reduction in reduction_strategy(),
        temperature in 0.25..10.0f64,
        human_smoothing in 1e-4..0.1f64,
    ) {
        let classes = batch.classes as f64;
        let student = Batch {
            student: batch
                .human
                .iter()
                .map(|h| ((h + human_smoothing) / (1.0 + classes * human_smoothing)).ln())
                .collect(),
            ..batch.clone()
        };
        let config = DistillationConfig {
            temperature_human: temperature,
            distil_fn: DistilFn::Kl,
            kl_reduction: reduction,
            human_smoothing,
            ..DistillationConfig::default()
        };
        let at_target = values(DistillationMode::Human, config, &student);
        prop_assert!(at_target.kd.unwrap().abs() <= 1e-12, "{at_target:?}");
    }

    #[test]
    fn pilot_kl_is_never_negative_and_zero_at_the_raw_human_rows(
        batch in batch_strategy(20.0),
        reduction in reduction_strategy(),
        temperature in 0.25..10.0f64,
        gamma in 0.0..=1.0f64,
    ) {
        // The pilot target is softmax(h/T_h): student logits equal to h give KL = 0, with
        // zeros in h and whatever human_smoothing says (it is not used).
        let config = DistillationConfig {
            gamma,
            temperature_human: temperature,
            distil_fn: DistilFn::Kl,
            kl_reduction: reduction,
            human_smoothing: 0.0,
            human_target: HumanTarget::Pilot,
            ..DistillationConfig::default()
        };
        let elsewhere = values(DistillationMode::Student, config, &batch);
        for value in [elsewhere.kd.unwrap(), elsewhere.teacher_term.unwrap(), elsewhere.human_term.unwrap()] {
            prop_assert!(value >= -1e-12, "a KL part is negative: {elsewhere:?}");
        }
        let student = Batch {
            student: batch.human.clone(),
            ..batch.clone()
        };
        let at_target = values(DistillationMode::Human, config, &student);
        prop_assert!(at_target.kd.unwrap().abs() <= 1e-12, "{at_target:?}");
    }

    #[test]
    fn soft_ce_is_kl_plus_the_target_entropy(
        batch in batch_strategy(10.0),
        temperature in 0.25..10.0f64,
    ) {
        let config = DistillationConfig {
            gamma: 0.0,
            temperature_teacher: temperature,
            kl_reduction: KlReduction::BatchMean,
            ..DistillationConfig::default()
        };
        let student = DistillationMode::Student;
        let kl = values(student, DistillationConfig { distil_fn: DistilFn::Kl, ..config }, &batch);
        let ce = values(student, DistillationConfig { distil_fn: DistilFn::Ce, ..config }, &batch);
        let mut entropy = 0.0;
        for row in batch.teacher.chunks(batch.classes) {
            let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let weights: Vec<f64> = row.iter().map(|t| ((t - max) / temperature).exp()).collect();
            let sum: f64 = weights.iter().sum();
            entropy -= weights.iter().map(|w| w / sum).filter(|p| *p > 0.0).map(|p| p * p.ln()).sum::<f64>();
        }
        let expected = kl.kd.unwrap() + temperature * temperature * entropy / batch.batch as f64;
        prop_assert!((ce.kd.unwrap() - expected).abs() <= 1e-9 * (1.0 + expected.abs()),
            "CE {} vs KL + T²·H {}", ce.kd.unwrap(), expected);
    }

    #[test]
    fn teacher_term_gradient_is_t_times_the_probability_difference(
        batch in batch_strategy(20.0),
        reduction in reduction_strategy(),
        distil_fn in prop_oneof![Just(DistilFn::Kl), Just(DistilFn::Ce)],
        temperature in 0.25..10.0f64,
    ) {
        // L = T²·D(s/T, t/T)/divisor, so ∂L/∂s = T·(softmax(s/T) − softmax(t/T))/divisor for
        // KL and soft CE alike (they differ by the target's entropy, constant in s). Without
        // the T² factor it would be 1/T² of this. Soft CE is always averaged over the batch;
        // KL's `reduction` chooses the batch or all N·C elements.
        let divisor = match (distil_fn, reduction) {
            (DistilFn::Kl, KlReduction::ElementwiseMean) => batch.batch * batch.classes,
            _ => batch.batch,
        } as f64;
        let gradient = teacher_gradient(&batch, temperature, reduction, distil_fn);
        let expected: Vec<f64> = softmax_rows(&batch.student, batch.classes, temperature)
            .iter()
            .zip(softmax_rows(&batch.teacher, batch.classes, temperature))
            .map(|(p_student, p_teacher)| temperature * (p_student - p_teacher) / divisor)
            .collect();
        for (index, (got, want)) in gradient.iter().zip(&expected).enumerate() {
            prop_assert!((got - want).abs() <= 1e-12 * temperature.max(1.0),
                "T = {temperature}, {reduction:?}, {distil_fn}: ∂L/∂s[{index}] = {got}, expected {want}");
        }
    }

    #[test]
    fn t_squared_keeps_the_gradient_size_as_the_temperature_grows(batch in batch_strategy(0.5)) {
        // As T → ∞, T·(softmax(s/T) − softmax(t/T)) → ((s − t) − mean(s − t))/C per row: the
        // gradient tends to a fixed size instead of vanishing like 1/T. The next term of the
        // expansion is below 2·max|s + t|/T of it, under 0.2 % at T = 1000 for logits in ±0.5.
        let limit: Vec<f64> = batch
            .student
            .chunks(batch.classes)
            .zip(batch.teacher.chunks(batch.classes))
            .flat_map(|(student, teacher)| {
                let difference: Vec<f64> = student.iter().zip(teacher).map(|(s, t)| s - t).collect();
                let mean = difference.iter().sum::<f64>() / batch.classes as f64;
                difference
                    .into_iter()
                    .map(move |d| (d - mean) / (batch.classes * batch.batch) as f64)
            })
            .collect();
        let limit_norm = norm(&limit);
        prop_assume!(limit_norm > 1e-6);
        let gradient = teacher_gradient(&batch, 1000.0, KlReduction::BatchMean, DistilFn::Kl);
        let ratio = norm(&gradient) / limit_norm;
        prop_assert!((0.98..=1.02).contains(&ratio),
            "at T = 1000 the gradient norm is {ratio} times its limit");
    }
}

/// Row-wise softmax of `logits / temperature` in f64.
fn softmax_rows(logits: &[f64], classes: usize, temperature: f64) -> Vec<f64> {
    logits
        .chunks(classes)
        .flat_map(|row| {
            let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let weights: Vec<f64> = row
                .iter()
                .map(|l| ((l - max) / temperature).exp())
                .collect();
            let sum: f64 = weights.iter().sum();
            weights.into_iter().map(move |w| w / sum)
        })
        .collect()
}

fn norm(values: &[f64]) -> f64 {
    values.iter().map(|v| v * v).sum::<f64>().sqrt()
}

const TEMPERATURES: [f64; 4] = [1.0, 2.0, 4.0, 8.0];

/// ∂L/∂s for the teacher term alone (λ = 1, γ = 0), flattened.
fn teacher_gradient(
    batch: &Batch,
    temperature: f64,
    kl_reduction: KlReduction,
    distil_fn: DistilFn,
) -> Vec<f64> {
    let (student, teacher, human, labels) = batch.tensors();
    let student = Var::from_tensor(&student).unwrap();
    let loss = DistillationLoss::new(
        DistillationMode::Student,
        DistillationConfig {
            lambda: 1.0,
            gamma: 0.0,
            temperature_teacher: temperature,
            kl_reduction,
            distil_fn,
            ..DistillationConfig::default()
        },
    )
    .unwrap();
    let parts = loss
        .compute(student.as_tensor(), &labels, Some(&human), Some(&teacher))
        .unwrap();
    let grads = parts.total.backward().unwrap();
    grads
        .get(student.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

/// ‖∂L/∂s‖ of the teacher term (batchmean KL) at each of [`TEMPERATURES`].
fn teacher_gradient_norms(batch: &Batch) -> Vec<f64> {
    TEMPERATURES
        .iter()
        .map(|&temperature| {
            norm(&teacher_gradient(
                batch,
                temperature,
                KlReduction::BatchMean,
                DistilFn::Kl,
            ))
        })
        .collect()
}

#[test]
fn t_squared_scaling_on_a_fixed_batch() {
    let batch = Batch {
        batch: 2,
        classes: 4,
        student: vec![0.3, -0.2, 0.1, 0.0, -0.4, 0.25, 0.05, 0.1],
        teacher: vec![-0.1, 0.2, 0.4, -0.3, 0.2, -0.1, 0.0, 0.3],
        human: vec![0.25; 8],
        labels: vec![0, 3],
    };
    let norms = teacher_gradient_norms(&batch);
    for norm in &norms {
        let ratio = norm / norms[0];
        assert!((0.9..=1.1).contains(&ratio), "gradient norms {norms:?}");
    }
}

#[test]
fn extreme_logits_stay_finite_in_f32() {
    let cpu = &Device::Cpu;
    let student = Tensor::new(&[[1e4f32, -1e4, 0.0], [-3e4, 3e4, 1e3]], cpu).unwrap();
    let teacher = Tensor::new(&[[-2e4f32, 2e4, 5.0], [8e3, -8e3, 0.0]], cpu).unwrap();
    let human = Tensor::new(&[[0.0f32, 1.0, 0.0], [1.0, 0.0, 0.0]], cpu).unwrap();
    let labels = Tensor::new(&[2u32, 0], cpu).unwrap();
    for distil_fn in [DistilFn::Kl, DistilFn::Ce] {
        // γ = 0.5 and batchmean (the defaults before they became the original project's)
        // so that both soft terms are present and large.
        let loss = DistillationLoss::new(
            DistillationMode::Student,
            DistillationConfig {
                distil_fn,
                gamma: 0.5,
                kl_reduction: KlReduction::BatchMean,
                temperature_teacher: 0.5,
                ..DistillationConfig::default()
            },
        )
        .unwrap();
        let student = Var::from_tensor(&student).unwrap();
        let parts = loss
            .compute(student.as_tensor(), &labels, Some(&human), Some(&teacher))
            .unwrap();
        let values = parts.to_f64().unwrap();
        for value in [
            values.hard_ce,
            values.kd.unwrap(),
            values.teacher_term.unwrap(),
            values.human_term.unwrap(),
            values.total,
        ] {
            assert!(value.is_finite() && value > 1e3, "{distil_fn}: {values:?}");
        }
        let gradient = parts.total.backward().unwrap();
        let gradient = gradient.get(student.as_tensor()).unwrap();
        let finite = gradient
            .to_dtype(DType::F64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap()
            .iter()
            .all(|value| value.is_finite());
        assert!(finite, "{distil_fn}: gradient has non-finite entries");
    }
}
