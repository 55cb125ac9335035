//! Train-step and eval throughput of hkd-arch's networks on any device: the benchmark that
//! `scripts/gpu-check.sh` runs on a GPU (docs/cuda.md). The training step is the CPU
//! throughput bench's (`benches/throughput.rs`): the teacher's eval forward, the student's
//! training forward, the KD loss, backward and SGD, in f32.
//!
//! ```text
//! hkd-bench [--device cpu|cuda:N] [--models a,b,c] [--batch-size N] [--eval-batch-size N]
//!           [--min-steps N] [--min-time SECONDS]
//! ```
//!
//! Defaults: `cuda:0`, resnet8,shake26-2x64d, batches of 128 (training) and 512
//! (evaluation), at least 5 timed steps and 3 s per phase after one warm-up step (the
//! median step counts). Each timed step ends with a device synchronisation.
//!
//! One JSON object per model and line: `model`, `device`, `train_batch`, `eval_batch`,
//! `train_img_per_s`, `eval_img_per_s`, `conv_path` (how the convolutions of the training
//! step run: `Generic`, candle's `Stock` backward, or the CPU `Kernels`; set with
//! `HKD_ARCH_GENERIC_BACKWARD=1|0`, see `hkd_kernels::Ops`), `cudnn` (whether
//! candle's `cudnn` feature was built in), `params`, `macs_per_image`.
//!
//! Built for a GPU by `scripts/cuda-toolchain.sh build` (into `target/cuda/dist/hkd-bench`);
//! here: `cargo run --release -p hkd-arch --example hkd-bench -- --device cpu`.

use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use hkd_arch::Network;
use hkd_kernels as kernels;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[path = "../../../bins/shared/allocator.rs"]
mod allocator;
#[path = "../benches/common/mod.rs"]
mod common;

use common::{BoxResult, Sgd, batch, time_it, train_step};

struct Args {
    device: String,
    models: Vec<String>,
    train_batch: usize,
    eval_batch: usize,
    min_steps: usize,
    min_time: Duration,
}

fn parse_args() -> BoxResult<Args> {
    let mut a = Args {
        device: "cuda:0".into(),
        models: vec!["resnet8".into(), "shake26-2x64d".into()],
        train_batch: 128,
        eval_batch: 512,
        min_steps: 5,
        min_time: Duration::from_secs(3),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--device" => a.device = value()?,
            "--models" => a.models = value()?.split(',').map(String::from).collect(),
            "--batch-size" => a.train_batch = value()?.parse()?,
            "--eval-batch-size" => a.eval_batch = value()?.parse()?,
            "--min-steps" => a.min_steps = value()?.parse()?,
            "--min-time" => a.min_time = Duration::from_secs_f64(value()?.parse()?),
            "-h" | "--help" => {
                println!(
                    "hkd-bench [--device cpu|cuda:N] [--models a,b,c] [--batch-size N] \
                     [--eval-batch-size N] [--min-steps N] [--min-time SECONDS]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other} (see --help)").into()),
        }
    }
    Ok(a)
}

fn open_device(name: &str) -> BoxResult<Device> {
    if name == "cpu" {
        return Ok(Device::Cpu);
    }
    let ordinal = match name.strip_prefix("cuda") {
        Some("") => 0,
        Some(rest) => rest
            .strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("bad device {name}: cpu or cuda:N"))?,
        None => return Err(format!("bad device {name}: cpu or cuda:N").into()),
    };
    Ok(Device::new_cuda(ordinal)?)
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn main() -> BoxResult<()> {
    allocator::keep_freed_memory();
    let args = parse_args()?;
    let dev = open_device(&args.device)?;
    // How the networks' 3×3 convolutions run on this device (all take the same path).
    let probe = Tensor::zeros((1, 1, 3, 3), DType::F32, &dev)?;
    let conv_path = kernels::conv_path(&probe, &probe, 1, 1, 1)?;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for arch in &args.models {
        let net = Network::new(arch, 10, &dev, DType::F32, 0)?;
        let teacher = Network::new(arch, 10, &dev, DType::F32, 1)?;
        let (xe, _) = batch(args.eval_batch, 10, &mut rng)?;
        let (xt, yt) = batch(args.train_batch, 10, &mut rng)?;
        let (xe, xt, yt) = (
            xe.to_device(&dev)?,
            xt.to_device(&dev)?,
            yt.to_device(&dev)?,
        );
        let mut sgd = Sgd::new(&net);
        let mut shake_rng = ChaCha8Rng::seed_from_u64(1);
        let eval_s = time_it(args.min_steps, args.min_time, || {
            net.forward_eval(&xe)?.sum_all()?.to_scalar::<f32>()?;
            Ok(())
        })?;
        let train_s = time_it(args.min_steps, args.min_time, || {
            train_step(&net, &teacher, &mut sgd, &mut shake_rng, &xt, &yt)?;
            dev.synchronize()?;
            Ok(())
        })?;
        let line = serde_json::json!({
            "model": arch,
            "device": args.device,
            "train_batch": args.train_batch,
            "eval_batch": args.eval_batch,
            "train_img_per_s": round1(args.train_batch as f64 / train_s),
            "eval_img_per_s": round1(args.eval_batch as f64 / eval_s),
            "conv_path": format!("{conv_path:?}"),
            "cudnn": cfg!(feature = "cudnn"),
            "params": net.num_parameters(),
            "macs_per_image": net.macs_per_image(),
        });
        println!("{line}");
    }
    Ok(())
}
