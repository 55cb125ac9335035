//! A lab's own short training loop on hkd's crates: a student from `hkd-arch` (ResNet-8),
//! trained with an objective the lab writes itself through `hkd_losses::Objective`, next to
//! one of hkd's built-in objectives (`kd` from soft labels) chosen by name.
//!
//! The data are synthetic (each class a fixed random pattern under noise, with soft labels
//! that put 0.8 on the class and 0.2 on its neighbour), so that the example needs no files.
//! It exits with an error if either objective fails to lower its loss.

use candle_core::{D, DType, Device, Tensor, Var};
use hkd_arch::{Network, Phase};
use hkd_losses::functional::{hard_cross_entropy, human_target_logits, log_softmax};
use hkd_losses::{
    DistillationMode, Kd, LossError, Needs, Objective, ObjectiveConfig, ObjectiveInputs,
    ObjectiveOutput, Part,
};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;

type Error = Box<dyn std::error::Error>;

const CLASSES: usize = 10;
const SIZE: usize = 16;
const BATCH: usize = 32;
const STEPS: usize = 40;

/// Reverse-KL distillation, the lab's own objective: `CE(s, y) + w·KL(softmax(s) ‖ p)` with
/// `p` the soft labels. Mode-seeking: the student is pushed to put its mass where the soft
/// labels do, not to cover all of them.
#[derive(Debug)]
struct ReverseKl {
    weight: f64,
}

impl Objective for ReverseKl {
    fn needs(&self) -> Needs {
        Needs {
            teacher_logits: false,
            human: true,
        }
    }

    fn part_names(&self) -> Vec<&'static str> {
        vec!["hard", "reverse_kl"]
    }

    fn compute(&self, inputs: &ObjectiveInputs<'_>) -> hkd_losses::Result<ObjectiveOutput> {
        let student = inputs.student_logits;
        let soft = inputs.human.ok_or(LossError::MissingInput {
            objective: "reverse_kl",
            input: "human",
        })?;
        let hard = hard_cross_entropy(student, inputs.hard_labels, 0.0)?;
        let log_q = log_softmax(student)?;
        // log p of the soft labels, smoothed a little so that it is finite everywhere
        let log_p = human_target_logits(soft, 0.01)?;
        let batch = student.dim(0)? as f64;
        let reverse_kl = (log_q.exp()? * (&log_q - &log_p)?)?
            .sum_all()?
            .affine(1.0 / batch, 0.0)?;
        let total = (&hard + reverse_kl.affine(self.weight, 0.0)?)?;
        Ok(ObjectiveOutput {
            total,
            parts: vec![
                Part {
                    name: "hard",
                    value: hard.detach(),
                },
                Part {
                    name: "reverse_kl",
                    value: reverse_kl.detach(),
                },
            ],
        })
    }
}

/// A batch of synthetic images `[N, 3, SIZE, SIZE]`, their classes and soft labels.
struct Data {
    images: Tensor,
    labels: Tensor,
    soft: Tensor,
}

fn synthetic(device: &Device, step: u64) -> Result<Data, Error> {
    // one fixed pattern per class, the same every step
    let patterns = Tensor::randn(0f32, 1.0, (CLASSES, 3 * SIZE * SIZE), &Device::Cpu)?;
    let labels: Vec<u32> = (0..BATCH as u32)
        .map(|i| (i * 7 + step as u32 * 3) % CLASSES as u32)
        .collect();
    let labels = Tensor::new(labels.as_slice(), &Device::Cpu)?;
    let noise = Tensor::randn(0f32, 1.0, (BATCH, 3 * SIZE * SIZE), &Device::Cpu)?;
    let images = (patterns.index_select(&labels, 0)? + noise)?
        .reshape((BATCH, 3, SIZE, SIZE))?
        .to_device(device)?;
    let one_hot = |shift: u32| -> Result<Tensor, Error> {
        let rows: Vec<u32> = labels
            .to_vec1::<u32>()?
            .iter()
            .map(|c| (c + shift) % CLASSES as u32)
            .collect();
        let rows = Tensor::new(rows.as_slice(), &Device::Cpu)?;
        Ok(Tensor::eye(CLASSES, DType::F32, &Device::Cpu)?.index_select(&rows, 0)?)
    };
    let soft = ((one_hot(0)? * 0.8)? + (one_hot(1)? * 0.2)?)?.to_device(device)?;
    Ok(Data {
        images,
        labels: labels.to_device(device)?,
        soft,
    })
}

/// Plain SGD on the student's parameters.
fn sgd_step(params: &[(String, Var)], grads: &candle_core::backprop::GradStore, lr: f64) -> Result<(), Error> {
    for (_, var) in params {
        if let Some(g) = grads.get(var.as_tensor()) {
            var.set(&(var.as_tensor() - g.affine(lr, 0.0)?)?)?;
        }
    }
    Ok(())
}

/// Trains a fresh ResNet-8 for [`STEPS`] steps with `objective`; returns the mean loss of
/// the first and of the last ten steps.
fn train(name: &str, objective: &dyn Objective, device: &Device) -> Result<(f64, f64), Error> {
    let student = Network::new("resnet8", CLASSES, device, DType::F32, 0)?;
    let params = student.trainable_parameters();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut losses = Vec::with_capacity(STEPS);
    for step in 0..STEPS {
        let data = synthetic(device, step as u64)?;
        let logits = student.forward(&data.images, Phase::Train { rng: &mut rng })?;
        let needs = objective.needs();
        let output = objective.compute(&ObjectiveInputs {
            student_logits: &logits,
            hard_labels: &data.labels,
            teacher_logits: None,
            human: needs.human.then_some(&data.soft),
            epoch: 1,
        })?;
        let values = output.values()?;
        if step % 10 == 0 {
            let parts: Vec<String> = values
                .parts
                .iter()
                .map(|(n, v)| format!("{n} {v:.4}"))
                .collect();
            println!("{name} step {step:>2}: loss {:.4} ({})", values.total, parts.join(", "));
        }
        losses.push(values.total);
        let grads = output.total.backward()?;
        sgd_step(&params, &grads, 0.05)?;
    }
    let accuracy = {
        let data = synthetic(device, STEPS as u64)?;
        let predicted = student.forward_eval(&data.images)?.argmax(D::Minus1)?;
        predicted
            .eq(&data.labels)?
            .to_dtype(DType::F32)?
            .mean_all()?
            .to_scalar::<f32>()?
    };
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    let (first, last) = (mean(&losses[..10]), mean(&losses[STEPS - 10..]));
    println!("{name}: mean loss {first:.4} over the first ten steps, {last:.4} over the last ten; accuracy on a fresh batch {:.0} %", 100.0 * accuracy);
    Ok((first, last))
}

fn main() -> Result<(), Error> {
    let device = Device::Cpu;
    let own = ReverseKl { weight: 1.0 };
    // A built-in objective, chosen by name as hkd-train's --objective does, with its soft
    // target from the "human" (soft-label) input.
    let builtin = ObjectiveConfig::default_of("kd")?;
    assert!(matches!(builtin, ObjectiveConfig::Kd(Kd { .. })));
    let builtin = builtin.build(DistillationMode::Human)?;
    let mut failed = Vec::new();
    for (name, objective) in [("reverse_kl (own)", &own as &dyn Objective), ("kd (built in)", builtin.as_ref())] {
        let (first, last) = train(name, objective, &device)?;
        if !(last < first) {
            failed.push(format!("{name}: the loss did not fall ({first:.4} -> {last:.4})"));
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; ").into())
    }
}
