//! Train-step and eval throughput of resnet8, resnet20 and shake26-2x16d on the CPU, with
//! the same step timed in PyTorch (`bench/torch_reference.py`) when `import torch` works.
//!
//! `cargo bench -p hkd-arch --bench throughput` (`just bench`). Arguments after `--`:
//! model names to pick (default: resnet8 resnet20 shake26-2x16d), `--quick` (one
//! repetition, short timings), `--no-torch` (skip PyTorch), `--reps N` (alternating
//! repetitions, default 3), `--only train|eval` (time one phase, for profiling; prints
//! NaN for the other).
//!
//! - eval: `Phase::Eval` forward of a batch of 512 images;
//! - train step (batch 128): a teacher of the same architecture in `Phase::Eval`, the
//!   student's `Phase::Train` forward, the KD loss (1−λ)·CE + λ·T²·KL(teacher‖student)
//!   (T = 4, λ = 0.5), backward, and SGD with momentum 0.9 and weight decay 5e-4 by hand.
//!
//! Each repetition times the Rust side (median step of at least 3 steps and 2 s per phase)
//! and then runs the PyTorch script once for the same model; the figures are the medians
//! over the repetitions. Threads: `RAYON_NUM_THREADS` (set to the number of CPUs when
//! unset; PyTorch gets the same number). The Python interpreter is `$HKD_TORCH_PYTHON`,
//! else `python3`.
//!
//! One JSON object per model and line: `model`, `threads`, `train_img_per_s`,
//! `eval_img_per_s`, `peak_rss_mib` (VmHWM during the training steps), `train_gflops`
//! (4 forward passes' multiply-adds per image: teacher forward + student forward and
//! backward ≈ 1 + 3, × 2 flops), `eval_gflops`, and with PyTorch `torch_train_img_per_s`,
//! `torch_eval_img_per_s`, `torch_peak_rss_mib`, `train_ratio`, `eval_ratio` (ours / PyTorch).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use candle_core::{D, DType, Device, Tensor, Var};
use hkd_arch::{Network, Phase};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[path = "../../../bins/shared/allocator.rs"]
mod allocator;

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

const EVAL_BATCH: usize = 512;
const TRAIN_BATCH: usize = 128;
const LR: f64 = 0.01;
const MOMENTUM: f64 = 0.9;
const WEIGHT_DECAY: f64 = 5e-4;
const TEMPERATURE: f64 = 4.0;
const LAMBDA: f64 = 0.5;

fn batch(n: usize, rng: &mut ChaCha8Rng) -> candle_core::Result<(Tensor, Tensor)> {
    let x: Vec<f32> = (0..n * 3 * 32 * 32)
        .map(|_| rng.random::<f32>() * 2.0 - 1.0)
        .collect();
    let y: Vec<u32> = (0..n).map(|_| rng.random_range(0..10u32)).collect();
    Ok((
        Tensor::from_vec(x, (n, 3, 32, 32), &Device::Cpu)?,
        Tensor::from_vec(y, n, &Device::Cpu)?,
    ))
}

/// Runs `step` once to warm up, then at least `min_reps` times and at least `min_time`;
/// returns the median seconds per step.
fn time_it(
    min_reps: usize,
    min_time: Duration,
    mut step: impl FnMut() -> BoxResult<()>,
) -> BoxResult<f64> {
    step()?;
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < min_reps || start.elapsed() < min_time {
        let t = Instant::now();
        step()?;
        times.push(t.elapsed().as_secs_f64());
    }
    Ok(median(&mut times))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Resets the process's peak RSS (Linux: `5` to /proc/self/clear_refs); best effort.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// VmHWM of /proc/self/status in MiB (NaN where unavailable).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// (1−λ)·CE(s, y) + λ·T²·KL(softmax(t/T) ‖ softmax(s/T)), batch mean.
fn kd_loss(s: &Tensor, t: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
    let n = s.dim(0)? as f64;
    let ce = candle_nn::loss::cross_entropy(s, y)?;
    let log_ps = candle_nn::ops::log_softmax(&(s / TEMPERATURE)?, D::Minus1)?;
    let log_pt = candle_nn::ops::log_softmax(&(t / TEMPERATURE)?, D::Minus1)?;
    let kl = (log_pt.exp()? * (log_pt - log_ps)?)?.sum_all()?;
    (ce * (1.0 - LAMBDA))? + (kl * (LAMBDA * TEMPERATURE * TEMPERATURE / n))?
}

/// SGD with momentum and weight decay (PyTorch's `torch.optim.SGD`).
struct Sgd {
    params: Vec<(Var, Option<Tensor>)>,
}

impl Sgd {
    fn step(&mut self, grads: &candle_core::backprop::GradStore) -> candle_core::Result<()> {
        for (var, buf) in &mut self.params {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let p = var.as_detached_tensor();
            let d = (g + (&p * WEIGHT_DECAY)?)?;
            let b = match buf.take() {
                Some(b) => ((b * MOMENTUM)? + d)?,
                None => d,
            };
            var.set(&(p - (&b * LR)?)?)?;
            *buf = Some(b);
        }
        Ok(())
    }
}

#[derive(Default)]
struct Figures {
    train: Vec<f64>,
    eval: Vec<f64>,
    peak: Vec<f64>,
}

impl Figures {
    fn medians(&mut self) -> (f64, f64, f64) {
        (
            median(&mut self.train),
            median(&mut self.eval),
            median(&mut self.peak),
        )
    }
}

/// The Python interpreter for the PyTorch side, if `import torch` works with it.
fn torch_python() -> Option<String> {
    let python = std::env::var("HKD_TORCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python)
        .args(["-c", "import torch"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        Some(python)
    } else {
        eprintln!(
            "throughput: PyTorch is not available (`{python} -c 'import torch'` failed; set \
             HKD_TORCH_PYTHON to an interpreter that has it): printing hkd-arch figures only"
        );
        None
    }
}

/// One run of bench/torch_reference.py: (train img/s, eval img/s, peak RSS MiB).
fn run_torch(python: &str, model: &str, threads: usize, quick: bool) -> BoxResult<(f64, f64, f64)> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench/torch_reference.py");
    let mut cmd = Command::new(python);
    cmd.arg(&script)
        .args(["--model", model, "--threads", &threads.to_string()])
        .args(["--train-batch", &TRAIN_BATCH.to_string()])
        .args(["--eval-batch", &EVAL_BATCH.to_string()]);
    if quick {
        cmd.args(["--reps", "1", "--min-time", "0"]);
    }
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(format!(
            "torch_reference.py failed for {model}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let get = |k: &str| v[k].as_f64().ok_or_else(|| format!("no `{k}` in {v}"));
    Ok((
        get("train_img_per_s")?,
        get("eval_img_per_s")?,
        get("peak_rss_mib")?,
    ))
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn main() -> BoxResult<()> {
    allocator::keep_freed_memory();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // SAFETY: single-threaded at this point (no rayon pool or other threads yet).
        // Set, candle also stops re-reading /proc/cpuinfo on every matmul.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", cpus.to_string()) };
    }
    let threads: usize = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cpus);
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let quick = args.iter().any(|a| a == "--quick");
    let no_torch = args.iter().any(|a| a == "--no-torch");
    let mut reps = if quick { 1 } else { 3 };
    let mut picked = Vec::new();
    let mut only: Option<String> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--reps" {
            reps = it
                .next()
                .and_then(|v| v.parse().ok())
                .ok_or("--reps needs a number")?;
        } else if a == "--only" {
            only = Some(
                it.next()
                    .filter(|v| *v == "train" || *v == "eval")
                    .ok_or("--only needs `train` or `eval`")?
                    .clone(),
            );
        } else if !a.starts_with("--") {
            picked.push(a.clone());
        }
    }
    let models: Vec<String> = if picked.is_empty() {
        ["resnet8", "resnet20", "shake26-2x16d"]
            .map(String::from)
            .to_vec()
    } else {
        picked
    };
    let (min_steps, min_time) = if quick {
        (1, Duration::ZERO)
    } else {
        (3, Duration::from_secs(2))
    };
    let python = if no_torch { None } else { torch_python() };

    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for arch in &models {
        let net = Network::new(arch, 10, &Device::Cpu, DType::F32, 0)?;
        let teacher = Network::new(arch, 10, &Device::Cpu, DType::F32, 1)?;
        let (xe, _) = batch(EVAL_BATCH, &mut rng)?;
        let (xt, yt) = batch(TRAIN_BATCH, &mut rng)?;
        let mut sgd = Sgd {
            params: net
                .trainable_parameters()
                .into_iter()
                .map(|(_, v)| (v, None))
                .collect(),
        };
        let mut shake_rng = ChaCha8Rng::seed_from_u64(1);
        let mut ours = Figures::default();
        let mut torch = Figures::default();
        for _ in 0..reps {
            let skip = |phase: &str| only.as_deref().is_some_and(|o| o != phase);
            let eval_s = if skip("eval") {
                f64::NAN
            } else {
                time_it(min_steps, min_time, || {
                    let y = net.forward_eval(&xe)?;
                    y.sum_all()?.to_scalar::<f32>()?;
                    Ok(())
                })?
            };
            reset_peak_rss();
            let train_s = if skip("train") {
                f64::NAN
            } else {
                time_it(min_steps, min_time, || {
                    let t = teacher.forward_eval(&xt)?;
                    let s = net.forward(
                        &xt,
                        Phase::Train {
                            rng: &mut shake_rng,
                        },
                    )?;
                    let grads = kd_loss(&s, &t, &yt)?.backward()?;
                    sgd.step(&grads)?;
                    Ok(())
                })?
            };
            ours.eval.push(EVAL_BATCH as f64 / eval_s);
            ours.train.push(TRAIN_BATCH as f64 / train_s);
            ours.peak.push(peak_rss_mib());
            if let Some(py) = &python {
                let (tr, ev, pk) = run_torch(py, arch, threads, quick)?;
                torch.train.push(tr);
                torch.eval.push(ev);
                torch.peak.push(pk);
            }
        }
        let (train, eval, peak) = ours.medians();
        let macs = net.macs_per_image() as f64;
        let mut line = serde_json::json!({
            "model": arch,
            "threads": threads,
            "train_batch": TRAIN_BATCH,
            "eval_batch": EVAL_BATCH,
            "train_img_per_s": round1(train),
            "eval_img_per_s": round1(eval),
            "peak_rss_mib": round1(peak),
            "train_gflops": round1(train * macs * 4.0 * 2.0 / 1e9),
            "eval_gflops": round1(eval * macs * 2.0 / 1e9),
            "params": net.num_parameters(),
            "macs_per_image": net.macs_per_image(),
            "reps": reps,
        });
        if python.is_some() {
            let (ttrain, teval, tpeak) = torch.medians();
            let obj = line.as_object_mut().ok_or("not an object")?;
            obj.insert("torch_train_img_per_s".into(), round1(ttrain).into());
            obj.insert("torch_eval_img_per_s".into(), round1(teval).into());
            obj.insert("torch_peak_rss_mib".into(), round1(tpeak).into());
            obj.insert(
                "train_ratio".into(),
                ((train / ttrain * 1000.0).round() / 1000.0).into(),
            );
            obj.insert(
                "eval_ratio".into(),
                ((eval / teval * 1000.0).round() / 1000.0).into(),
            );
        }
        println!("{line}");
    }
    Ok(())
}
