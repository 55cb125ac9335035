//! `hkd-eval`: evaluate hkd runs (generalisation, human alignment, calibration,
//! robustness) and predict logits for `.npy` images. See `docs/evaluation.md`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use hkd_evaluator::{
    AttackSettings, EvalOptions, Evaluator, Progress, RunResult, SetSpec, Shard, WeightsChoice,
    find_targets, parse_attacks, parse_device, parse_eps_list, predict_to_file, read_sets_file,
};
use indicatif::{ProgressBar, ProgressStyle};

#[path = "../../shared/allocator.rs"]
mod allocator;

/// Evaluate hkd runs and predict logits.
#[derive(Parser)]
#[command(name = "hkd-eval", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,

    /// Device: cpu, cuda, cuda:N, or auto (CUDA when available).
    #[arg(long, global = true, default_value = "auto")]
    device: String,

    /// CPU threads for tensor operations (default: the physical cores).
    #[arg(long, global = true)]
    threads: Option<usize>,

    /// Only warnings and errors on stderr.
    #[arg(long, short, global = true)]
    quiet: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Evaluate run directories (found recursively) or bare checkpoints; write
    /// <run>/eval.json and, with the sets cifar10, cinic and imagenet_far, the original
    /// <run>_generalization.npy beside the run.
    Run(RunArgs),
    /// Write the logits of a network for an .npy of images.
    Predict(PredictArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum WeightsArg {
    Best,
    Last,
}

#[derive(Args)]
struct RunArgs {
    /// Run directories, directories searched for runs, or checkpoint files (with --arch).
    #[arg(required = true)]
    paths: Vec<PathBuf>,

    /// An evaluation set, NAME=DIR[:split] (repeat). Default: each run's own validation
    /// split, recorded as `val`. Without :split, the split called NAME, or the only split.
    #[arg(long = "set", value_name = "NAME=DIR[:split]")]
    sets: Vec<SetSpec>,

    /// A TOML file with a [sets] table of NAME = "DIR[:split]" (added to --set).
    #[arg(long, value_name = "FILE")]
    sets_file: Option<PathBuf>,

    /// Architecture of bare checkpoint files (e.g. resnet8).
    #[arg(long)]
    arch: Option<String>,

    /// Outputs of bare checkpoint networks.
    #[arg(long, default_value_t = 10)]
    classes: usize,

    /// Weights of a run directory to evaluate.
    #[arg(long, value_enum, default_value = "best")]
    weights: WeightsArg,

    /// Images per evaluation batch.
    #[arg(long, default_value_t = hkd_evaluator::DEFAULT_BATCH_SIZE)]
    batch_size: usize,

    /// Batch size of the original's summed loss (ce_sum_batch_means).
    #[arg(long, default_value_t = hkd_evaluator::metrics::ORIGINAL_BATCH_SIZE)]
    ce_batch_size: usize,

    /// Evaluate again even when eval.json has the same settings.
    #[arg(long)]
    force: bool,

    /// Attacks to run: fgsm, pgd or fgsm,pgd (off by default).
    #[arg(long, value_name = "LIST")]
    attack: Option<String>,

    /// Attack radii in pixel units [0,1], fractions allowed.
    #[arg(long, default_value = "1/255,2/255,4/255,8/255")]
    eps: String,

    /// PGD steps (step size 2.5·ε/steps).
    #[arg(long, default_value_t = 10)]
    pgd_steps: u32,

    /// Images attacked per set (a seeded stratified subset).
    #[arg(long, default_value_t = 1000)]
    attack_samples: usize,

    /// Seed of the attacked subset and of PGD's random starts.
    #[arg(long, default_value_t = 0)]
    attack_seed: u64,

    /// Images per attacked batch.
    #[arg(long, default_value_t = 250)]
    attack_batch_size: usize,

    /// Evaluate only shard K of N of the targets found (every N-th, from the K-th), so
    /// that N tasks split one evaluation, e.g. a grid axis shard = ["1/2", "2/2"].
    #[arg(long, value_name = "K/N", default_value = "1/1")]
    shard: Shard,
}

#[derive(Args)]
struct PredictArgs {
    /// Architecture (e.g. resnet8, shake26-2x16d).
    #[arg(long)]
    arch: String,
    /// Weights: .safetensors or a PyTorch checkpoint.
    #[arg(long)]
    weights: PathBuf,
    /// Images: f32 N×3×H×W already normalised, or u8 N×H×W×3 (normalised with the CIFAR-10 statistics).
    #[arg(long)]
    images: PathBuf,
    /// Output .npy: f32 N×classes logits.
    #[arg(long)]
    out: PathBuf,
    /// Outputs of the network.
    #[arg(long, default_value_t = 10)]
    classes: usize,
    /// Images per batch.
    #[arg(long, default_value_t = hkd_evaluator::DEFAULT_BATCH_SIZE)]
    batch_size: usize,
}

fn main() -> ExitCode {
    allocator::keep_freed_memory();
    let cli = Cli::parse();
    if let Some(n) = cli.threads {
        if n == 0 {
            eprintln!("error: --threads must be at least 1");
            return ExitCode::from(2);
        }
        // SAFETY: set before any other thread exists (the first thing main does after
        // parsing); candle and rayon read these when their thread pools start.
        unsafe {
            std::env::set_var("RAYON_NUM_THREADS", n.to_string());
            std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
        }
    }
    let default_level = if cli.quiet { "warn" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    let result = match &cli.command {
        Command::Run(args) => run(&cli, args),
        Command::Predict(args) => predict(&cli, args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: &Cli, args: &RunArgs) -> Result<ExitCode> {
    let mut sets = args.sets.clone();
    if let Some(file) = &args.sets_file {
        sets.extend(read_sets_file(file)?);
    }
    let attacks = match &args.attack {
        None => None,
        Some(list) => Some(AttackSettings {
            kinds: parse_attacks(list)?,
            eps: parse_eps_list(&args.eps)?,
            pgd_steps: args.pgd_steps,
            samples: args.attack_samples,
            seed: args.attack_seed,
            batch_size: args.attack_batch_size,
        }),
    };
    let options = EvalOptions {
        batch_size: args.batch_size,
        ce_batch_size: args.ce_batch_size,
        weights: match args.weights {
            WeightsArg::Best => WeightsChoice::Best,
            WeightsArg::Last => WeightsChoice::Last,
        },
        attacks,
        force: args.force,
    };
    let found = find_targets(&args.paths, args.arch.as_deref(), args.classes)?;
    let total = found.len();
    let targets = args.shard.select(found);
    let device = parse_device(&cli.device)?;
    if args.shard != Shard::all() {
        println!(
            "shard {}: {} of {total}",
            args.shard,
            plural(targets.len(), "target")
        );
    }
    if targets.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    tracing::info!(
        "{} to evaluate on {device:?}",
        plural(targets.len(), "target")
    );
    let evaluator = Evaluator::prepare(&targets, &sets, options, device)
        .context("before evaluating any run")?;
    let progress = BarProgress::new(!cli.quiet && std::io::stderr().is_terminal());
    let outcomes = evaluator.evaluate_all(&targets, &progress);

    let (mut evaluated, mut skipped, mut failed) = (0, 0, Vec::new());
    for o in &outcomes {
        let path = o.target.path().display();
        match &o.result {
            RunResult::Evaluated {
                report,
                report_path,
                generalization,
            } => {
                evaluated += 1;
                let summary: Vec<String> = report
                    .sets
                    .iter()
                    .map(|(name, m)| format!("{name} acc {:.4} ce {:.4}", m.accuracy, m.ce_mean))
                    .collect();
                println!(
                    "evaluated  {path}  {}  -> {}",
                    summary.join(", "),
                    report_path.display()
                );
                if let Some(g) = generalization {
                    println!("           original layout -> {}", g.display());
                }
            }
            RunResult::Skipped(why) => {
                skipped += 1;
                println!("skipped    {path}  ({why})");
            }
            RunResult::Failed(e) => {
                println!("FAILED     {path}  {e}");
                failed.push(o);
            }
        }
    }
    println!(
        "{} evaluated, {} skipped, {} failed",
        plural(evaluated, "run"),
        skipped,
        failed.len()
    );
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn predict(cli: &Cli, args: &PredictArgs) -> Result<ExitCode> {
    let device = parse_device(&cli.device)?;
    let p = predict_to_file(
        &args.arch,
        args.classes,
        &args.weights,
        &args.images,
        &args.out,
        args.batch_size,
        &device,
    )?;
    tracing::info!(
        "{} images ({:?}) -> {} ({}×{} f32 logits)",
        p.images,
        p.input,
        args.out.display(),
        p.images,
        p.classes
    );
    Ok(ExitCode::SUCCESS)
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
struct BarProgress {
    enabled: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl BarProgress {
    fn new(enabled: bool) -> Self {
        BarProgress {
            enabled,
            bar: Mutex::new(None),
        }
    }
}

impl Progress for BarProgress {
    fn begin(&self, label: &str, total: u64) {
        if !self.enabled {
            return;
        }
        let bar = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template(
            "{msg} [{bar:30}] {pos}/{len} batches {elapsed_precise} eta {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(label.to_string());
        if let Ok(mut slot) = self.bar.lock() {
            *slot = Some(bar);
        }
    }

    fn advance(&self, n: u64) {
        if let Ok(slot) = self.bar.lock()
            && let Some(bar) = slot.as_ref()
        {
            bar.inc(n);
        }
    }

    fn end(&self) {
        if let Ok(mut slot) = self.bar.lock()
            && let Some(bar) = slot.take()
        {
            bar.finish_and_clear();
        }
    }
}
