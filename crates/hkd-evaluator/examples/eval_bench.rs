//! Throughput of evaluation and of attacks on the CPU: eval-mode forward images/s, and
//! FGSM / PGD-step images/s (one forward + backward to the input each).
//!
//! `cargo run --release -p hkd-evaluator --example eval_bench [ARCH] [BATCH]`

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use hkd_arch::Network;
use hkd_datasets::Normalization;
use hkd_evaluator::attack::{fgsm, input_gradient};
use hkd_evaluator::tensor_logits;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let arch = args.get(1).map(String::as_str).unwrap_or("resnet8");
    let batch: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(250);
    let device = Device::Cpu;
    let net = Network::new(arch, 10, &device, DType::F32, 0)?;
    let pixels = Tensor::rand(0f32, 1f32, (batch, 3, 32, 32), &device)?;
    let labels = Tensor::from_vec(
        (0..batch as u32).map(|i| i % 10).collect::<Vec<_>>(),
        batch,
        &device,
    )?;
    let norm = Normalization::CIFAR10;
    let normalised = norm.apply(&pixels)?;

    tensor_logits(&net, &normalised, batch)?; // warm-up
    let reps = 3;
    let t = Instant::now();
    for _ in 0..reps {
        tensor_logits(&net, &normalised, batch)?;
    }
    let eval = (reps * batch) as f64 / t.elapsed().as_secs_f64();

    input_gradient(&net, &pixels, &labels, &norm)?; // warm-up
    let t = Instant::now();
    for _ in 0..reps {
        fgsm(&net, &pixels, &labels, 8.0 / 255.0, &norm)?;
    }
    let attack = (reps * batch) as f64 / t.elapsed().as_secs_f64();
    println!(
        "{arch}, batch {batch}, {} threads: eval {eval:.0} images/s; FGSM (forward + input gradient) {attack:.0} images/s",
        candle_core::utils::get_num_threads()
    );
    Ok(())
}
