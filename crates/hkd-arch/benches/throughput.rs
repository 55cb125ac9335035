//! Train-step and eval throughput on the CPU of the CIFAR-10H networks (resnet8, resnet20,
//! shake26-2x16d) and of the CIFAR-100 KD benchmark's teacher → student pairs
//! (RepDistiller's: resnet32x4 → resnet8x4, vgg13 → vgg8, wrn_40_2 → wrn_16_2,
//! resnet32x4 → shufflev2, resnet32x4 → mobilenetv2), with the same step timed in PyTorch
//! (`bench/torch_reference.py`) when `import torch` works.
//!
//! `cargo bench -p hkd-arch --bench throughput` (`just bench`). Arguments after `--`:
//! what to time (default: all eight; a net by name, a pair as `teacher:student`),
//! `--quick` (one repetition, short timings), `--no-torch` (skip PyTorch), `--reps N`
//! (alternating repetitions, default 3), `--only train|eval` (time one phase, for
//! profiling; prints NaN for the other).
//!
//! - eval: `Phase::Eval` forward of a batch of 512 images (the student's, for a pair);
//! - train step: the teacher in `Phase::Eval` (for a net, one of the same architecture),
//!   the student's `Phase::Train` forward, the KD loss (1−λ)·CE + λ·T²·KL(teacher‖student)
//!   (T = 4, λ = 0.5), backward, and SGD with momentum 0.9 and weight decay 5e-4 by hand;
//!   batch 128 and 10 classes for a net, RepDistiller's batch 64 and 100 classes for a
//!   pair. PyTorch's pairs are RepDistiller's own `models` package
//!   (`$HKD_REPDISTILLER_DIR`, a checkout of HobbitLong/RepDistiller); without it the
//!   pairs print hkd-arch's figures only.
//!
//! Each repetition times the Rust side (median step of at least 3 steps and 2 s per phase)
//! and then runs the PyTorch script once for the same model; the figures are the medians
//! over the repetitions. Threads: `RAYON_NUM_THREADS` (set to the number of CPUs when
//! unset; PyTorch gets the same number). The Python interpreter is `$HKD_TORCH_PYTHON`,
//! else `python3`.
//!
//! First line: `peak_matmul_gflops`, a 1024³ f32 matmul through candle on the same
//! threads (what the machine attains on dense work, the yardstick for the GFLOP/s below).
//! Then one JSON object per net or pair and line: `model`, `teacher` (pairs), `threads`,
//! `train_img_per_s`, `eval_img_per_s`, `peak_rss_mib` (VmHWM during the training steps),
//! `train_gflops` (multiply-adds per image of the teacher forward + 3 × the student's
//! forward, × 2 flops), `eval_gflops`, `direct_conv` (the instruction set of the direct
//! 3×3 convolutions, `avx512` or `avx2`, or `off`), and with PyTorch
//! `torch_train_img_per_s`, `torch_eval_img_per_s`, `torch_peak_rss_mib`, `train_ratio`,
//! `eval_ratio` (ours / PyTorch).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use candle_core::{DType, Device};
use hkd_arch::Network;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[path = "../../../bins/shared/allocator.rs"]
mod allocator;
mod common;

use common::{BoxResult, Sgd, batch, median, time_it, train_step};

const EVAL_BATCH: usize = 512;
const TRAIN_BATCH: usize = 128;
/// RepDistiller's CIFAR-100 recipe: batch 64, 100 classes.
const PAIR_BATCH: usize = 64;
const PAIR_CLASSES: usize = 100;

/// The nets and pairs timed by default.
const DEFAULT_MODELS: [&str; 8] = [
    "resnet8",
    "resnet20",
    "shake26-2x16d",
    "resnet32x4:resnet8x4",
    "vgg13:vgg8",
    "wrn_40_2:wrn_16_2",
    "resnet32x4:shufflev2",
    "resnet32x4:mobilenetv2",
];

/// What one line times: a teacher and a student (the same architecture for a net).
struct Setup {
    name: String,
    teacher: String,
    student: String,
    pair: bool,
    classes: usize,
    train_batch: usize,
}

impl Setup {
    fn parse(name: &str) -> Setup {
        match name.split_once(':') {
            Some((t, s)) => Setup {
                name: name.to_string(),
                teacher: t.to_string(),
                student: s.to_string(),
                pair: true,
                classes: PAIR_CLASSES,
                train_batch: PAIR_BATCH,
            },
            None => Setup {
                name: name.to_string(),
                teacher: name.to_string(),
                student: name.to_string(),
                pair: false,
                classes: 10,
                train_batch: TRAIN_BATCH,
            },
        }
    }
}

/// GFLOP/s of a 1024×1024 by 1024×1024 f32 matmul through candle (median of 5 after a
/// warm-up), on the compute pool.
fn peak_matmul_gflops() -> BoxResult<f64> {
    let n = 1024;
    let a = candle_core::Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu)?;
    let b = candle_core::Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu)?;
    let s = time_it(5, Duration::from_millis(500), || {
        hkd_arch::on_compute_pool(|| -> candle_core::Result<()> {
            a.matmul(&b)?.sum_all()?.to_scalar::<f32>()?;
            Ok(())
        })?;
        Ok(())
    })?;
    Ok(2.0 * (n * n * n) as f64 / s / 1e9)
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
fn run_torch(
    python: &str,
    setup: &Setup,
    threads: usize,
    quick: bool,
) -> BoxResult<(f64, f64, f64)> {
    let model = &setup.name;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench/torch_reference.py");
    let mut cmd = Command::new(python);
    cmd.arg(&script)
        .args(["--model", model, "--threads", &threads.to_string()])
        .args(["--train-batch", &setup.train_batch.to_string()])
        .args(["--eval-batch", &EVAL_BATCH.to_string()])
        .args(["--classes", &setup.classes.to_string()]);
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
        DEFAULT_MODELS.map(String::from).to_vec()
    } else {
        picked
    };
    let has_repdistiller = std::env::var_os("HKD_REPDISTILLER_DIR").is_some();
    let (min_steps, min_time) = if quick {
        (1, Duration::ZERO)
    } else {
        (3, Duration::from_secs(2))
    };
    let python = if no_torch { None } else { torch_python() };
    println!(
        "{}",
        serde_json::json!({
            "peak_matmul_gflops": round1(peak_matmul_gflops()?),
            "threads": threads,
        })
    );

    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for setup in models.iter().map(|m| Setup::parse(m)) {
        let net = Network::new(&setup.student, setup.classes, &Device::Cpu, DType::F32, 0)?;
        let teacher = Network::new(&setup.teacher, setup.classes, &Device::Cpu, DType::F32, 1)?;
        let (xe, _) = batch(EVAL_BATCH, setup.classes as u32, &mut rng)?;
        let (xt, yt) = batch(setup.train_batch, setup.classes as u32, &mut rng)?;
        let mut sgd = Sgd::new(&net);
        let mut shake_rng = ChaCha8Rng::seed_from_u64(1);
        let python = python.as_ref().filter(|_| !setup.pair || has_repdistiller);
        if setup.pair && python.is_none() && !no_torch {
            eprintln!(
                "throughput: {}: PyTorch's side needs RepDistiller's models (set HKD_REPDISTILLER_DIR to a checkout of HobbitLong/RepDistiller): hkd-arch figures only",
                setup.name
            );
        }
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
                    train_step(&net, &teacher, &mut sgd, &mut shake_rng, &xt, &yt)
                })?
            };
            ours.eval.push(EVAL_BATCH as f64 / eval_s);
            ours.train.push(setup.train_batch as f64 / train_s);
            ours.peak.push(peak_rss_mib());
            if let Some(py) = python {
                let (tr, ev, pk) = run_torch(py, &setup, threads, quick)?;
                torch.train.push(tr);
                torch.eval.push(ev);
                torch.peak.push(pk);
            }
        }
        let (train, eval, peak) = ours.medians();
        let macs = net.macs_per_image() as f64;
        let train_macs = teacher.macs_per_image() as f64 + 3.0 * macs;
        let mut line = serde_json::json!({
            "model": setup.student,
            "threads": threads,
            "classes": setup.classes,
            "train_batch": setup.train_batch,
            "eval_batch": EVAL_BATCH,
            "train_img_per_s": round1(train),
            "eval_img_per_s": round1(eval),
            "peak_rss_mib": round1(peak),
            "train_gflops": round1(train * train_macs * 2.0 / 1e9),
            "eval_gflops": round1(eval * macs * 2.0 / 1e9),
            "params": net.num_parameters(),
            "macs_per_image": net.macs_per_image(),
            "reps": reps,
            "direct_conv": hkd_kernels::direct_conv_isa().unwrap_or("off"),
        });
        if setup.pair
            && let Some(obj) = line.as_object_mut()
        {
            obj.insert("teacher".into(), setup.teacher.clone().into());
            obj.insert(
                "teacher_macs_per_image".into(),
                teacher.macs_per_image().into(),
            );
        }
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
