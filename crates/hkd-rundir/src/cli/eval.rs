//! `hkd-eval`'s command line. Values with a grammar of their own (`--set NAME=DIR[:split]`,
//! `--shard K/N`, `--attack`, `--eps`) are kept as text here and parsed by `hkd-evaluator`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::files::RunDir;

/// Images per evaluation batch, unless `--batch-size` says otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 500;

/// Batch size of the original project's summed validation loss (`ce_sum_batch_means`).
pub const ORIGINAL_BATCH_SIZE: usize = 128;

/// Evaluate hkd runs and predict logits.
#[derive(Debug, Clone, Parser)]
#[command(name = "hkd-eval", version, about, long_about = None, args_override_self = true)]
pub struct EvalCli {
    #[command(subcommand)]
    pub command: EvalCommand,

    /// Device: cpu, cuda, cuda:N, or auto (CUDA when available).
    #[arg(long, global = true, default_value = "auto")]
    pub device: String,

    /// CPU threads for tensor operations (default: all cores).
    #[arg(long, global = true, value_parser = clap::value_parser!(u32).range(1..))]
    pub threads: Option<u32>,

    /// Only warnings and errors on stderr.
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

/// `hkd-eval`'s subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum EvalCommand {
    /// Evaluate run directories (found recursively) or bare checkpoints; write
    /// <run>/eval.json and, with the sets cifar10, cinic and imagenet_far, the original
    /// <run>_generalization.npy beside the run.
    Run(EvalRunArgs),
    /// Write the logits of a network for an .npy of images.
    Predict(PredictArgs),
}

/// Which weights of a run directory are evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum WeightsChoice {
    /// `best.safetensors`: the epoch of the best validation accuracy (the default).
    #[default]
    Best,
    /// `last.safetensors`: the last completed epoch.
    Last,
}

impl WeightsChoice {
    /// File name inside the run directory.
    pub fn file_name(self) -> &'static str {
        match self {
            WeightsChoice::Best => RunDir::BEST_WEIGHTS,
            WeightsChoice::Last => RunDir::LAST_WEIGHTS,
        }
    }
}

/// `hkd-eval run`.
#[derive(Debug, Clone, Args)]
pub struct EvalRunArgs {
    /// Run directories, directories searched for runs, or checkpoint files (with --arch).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,

    /// An evaluation set, NAME=DIR[:split] (repeat). Default: each run's own validation
    /// split, recorded as `val`. Without :split, the split called NAME, or the only split.
    #[arg(long = "set", value_name = "NAME=DIR[:split]")]
    pub sets: Vec<String>,

    /// A TOML file with a [sets] table of NAME = "DIR[:split]" (added to --set).
    #[arg(long, value_name = "FILE")]
    pub sets_file: Option<PathBuf>,

    /// Architecture of bare checkpoint files (e.g. resnet8).
    #[arg(long)]
    pub arch: Option<String>,

    /// Outputs of bare checkpoint networks.
    #[arg(long, default_value_t = 10)]
    pub classes: usize,

    /// Weights of a run directory to evaluate.
    #[arg(long, value_enum, default_value_t = WeightsChoice::Best)]
    pub weights: WeightsChoice,

    /// Images per evaluation batch.
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE)]
    pub batch_size: usize,

    /// Batch size of the original's summed loss (ce_sum_batch_means).
    #[arg(long, default_value_t = ORIGINAL_BATCH_SIZE)]
    pub ce_batch_size: usize,

    /// Evaluate again even when eval.json has the same settings.
    #[arg(long)]
    pub force: bool,

    /// Attacks to run: fgsm, pgd or fgsm,pgd (off by default).
    #[arg(long, value_name = "LIST")]
    pub attack: Option<String>,

    /// Attack radii in pixel units [0, 1], fractions allowed.
    #[arg(long, default_value = "1/255,2/255,4/255,8/255")]
    pub eps: String,

    /// PGD steps (step size 2.5·ε/steps).
    #[arg(long, default_value_t = 10)]
    pub pgd_steps: u32,

    /// Images attacked per set (a seeded stratified subset).
    #[arg(long, default_value_t = 1000)]
    pub attack_samples: usize,

    /// Seed of the attacked subset and of PGD's random starts.
    #[arg(long, default_value_t = 0)]
    pub attack_seed: u64,

    /// Images per attacked batch.
    #[arg(long, default_value_t = 250)]
    pub attack_batch_size: usize,

    /// Fit one temperature per run on the set NAME (minimum NLL of logits/T) and record
    /// the temperature-scaled metrics of every set; NAME must be one of the sets
    /// evaluated (`val` without --set).
    #[arg(long, value_name = "NAME")]
    pub calibrate_on: Option<String>,

    /// Evaluate only shard K of N of the targets found (every N-th, from the K-th), so
    /// that N tasks split one evaluation, e.g. a grid axis shard = ["1/2", "2/2"].
    #[arg(long, value_name = "K/N", default_value = "1/1")]
    pub shard: String,
}

/// `hkd-eval predict`.
#[derive(Debug, Clone, Args)]
pub struct PredictArgs {
    /// Architecture (e.g. resnet8, shake26-2x16d).
    #[arg(long)]
    pub arch: String,
    /// Weights: .safetensors or a PyTorch checkpoint.
    #[arg(long)]
    pub weights: PathBuf,
    /// Images: f32 N×3×H×W already normalised, or u8 N×H×W×3 (normalised with the CIFAR-10 statistics).
    #[arg(long)]
    pub images: PathBuf,
    /// Output .npy: f32 N×classes logits.
    #[arg(long)]
    pub out: PathBuf,
    /// Outputs of the network.
    #[arg(long, default_value_t = 10)]
    pub classes: usize,
    /// Images per batch.
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE)]
    pub batch_size: usize,
}
