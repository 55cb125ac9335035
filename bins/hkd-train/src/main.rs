//! `hkd-train`: train one hkd run (a teacher or a student). See `docs/training.md`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use hkd_rundir::{DistilFn, EpochMetrics, KlReduction, SchedulerKind};
use hkd_trainer::{
    EXIT_CHECKPOINTED, Observer, Outcome, RunInfo, StopFlag, TrainError, TrainOptions,
    parse_distil_fn, parse_kl_reduction, parse_scheduler,
};
use indicatif::{ProgressBar, ProgressStyle};

#[path = "../../shared/allocator.rs"]
mod allocator;

/// Train one hkd run: a teacher (`--teacher baseline|human`) or a student of a teacher
/// network. The run goes to <OUT>/<teacher-slug>/<student>/<run-name>/ (docs/training.md).
#[derive(Parser, Debug)]
#[command(
    name = "hkd-train",
    version,
    args_conflicts_with_subcommands = true,
    max_term_width = 100
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the architectures (names for --student / --teacher-arch) with their trainable
    /// parameters and multiply-adds per 32x32 image (10 classes).
    Models {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the long names of the training flags, one per line (for grid tools).
    Flags,
}

/// The training flags. Each has a field of the same name (with `_` for `-`) in a
/// `--config` file; flags given on the command line override the file.
#[derive(Args, Debug, Clone)]
struct TrainArgs {
    /// TOML file with any of the settings below (field names: the flag names with `_`);
    /// flags on the command line override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Master output directory; the run goes to OUT/<teacher-slug>/<student>/<run-name>/.
    #[arg(long, value_name = "DIR", default_value = "runs")]
    out: PathBuf,
    /// Dataset directory (any layout hkd-data reads).
    #[arg(long, value_name = "DIR", default_value = "data")]
    data: PathBuf,
    /// Split to train on.
    #[arg(long, value_name = "SPLIT", default_value = "train")]
    train_split: String,
    /// Split to validate on after every epoch.
    #[arg(long, value_name = "SPLIT", default_value = "val")]
    val_split: String,

    /// Soft labels: baseline (none), human, a teacher run directory, a weights file, or
    /// best:<dir> (the best finished run under dir).
    #[arg(long, value_name = "TEACHER", default_value = "human")]
    teacher: String,
    /// Architecture of a teacher given as a weights file without hkd metadata.
    #[arg(long, value_name = "ARCH")]
    teacher_arch: Option<String>,
    /// Architecture to train (`hkd-train models` lists them).
    #[arg(long, value_name = "ARCH", default_value = "resnet8")]
    student: String,
    /// Seed of weights, shuffling, augmentation and Shake-Shake coefficients.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Repeat index of this configuration (part of the run name; varies the random streams).
    #[arg(long, default_value_t = 0)]
    iter: u32,

    /// λ: weight of the soft part of the loss, in [0, 1].
    #[arg(long, default_value_t = 0.5)]
    lambda: f64,
    /// γ: share of the soft part from the human labels (student mode), in [0, 1].
    #[arg(long, default_value_t = 0.0)]
    gamma: f64,
    /// Temperature of the teacher term.
    #[arg(long, value_name = "T", default_value_t = 1.0)]
    temperature_teacher: f64,
    /// Temperature of the human term.
    #[arg(long, value_name = "T", default_value_t = 1.0)]
    temperature_human: f64,
    /// Divergence of the soft terms: KL (the original's KD) or CE.
    #[arg(long, value_name = "KL|CE", default_value = "KL", value_parser = parse_distil_fn)]
    distil_fn: DistilFn,
    /// Reduction of KL: elementwise_mean (the original's nn.KLDivLoss(), divides by the
    /// number of classes too) or batchmean (the true KL).
    #[arg(long, value_name = "REDUCTION", default_value = "elementwise_mean", value_parser = parse_kl_reduction)]
    kl_reduction: KlReduction,
    /// ε of the human label smoothing (h + ε) / (1 + C·ε).
    #[arg(long, value_name = "EPS", default_value_t = 0.02)]
    human_smoothing: f64,

    /// Epochs to train.
    #[arg(long, default_value_t = 500)]
    epochs: u32,
    /// Training batch size.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Validation batch size (changes no result beyond float rounding).
    #[arg(long, default_value_t = 512)]
    eval_batch_size: usize,
    /// Initial learning rate.
    #[arg(long, default_value_t = 0.1)]
    lr: f64,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    /// SGD weight decay.
    #[arg(long, default_value_t = 1e-4)]
    weight_decay: f64,
    /// Learning-rate schedule: plateau (the original's), step or cosine.
    #[arg(long, value_name = "plateau|step|cosine", default_value = "plateau", value_parser = parse_scheduler)]
    scheduler: SchedulerKind,
    /// plateau: factor applied to the learning rate on a plateau of validation accuracy.
    #[arg(long, default_value_t = 0.9)]
    plateau_factor: f64,
    /// plateau: epochs without improvement tolerated before reducing.
    #[arg(long, default_value_t = 5)]
    plateau_patience: u32,
    /// step: fractions of the epochs after which the learning rate is multiplied by
    /// --step-gamma.
    #[arg(long, value_name = "F,F,..", value_delimiter = ',', default_values_t = [0.5, 0.75])]
    step_milestones: Vec<f64>,
    /// step: factor applied at each milestone.
    #[arg(long, default_value_t = 0.1)]
    step_gamma: f64,
    /// cosine: learning rate reached at the end of the run.
    #[arg(long, value_name = "LR", default_value_t = 0.0)]
    cosine_min_lr: f64,

    /// cpu, cuda:N or auto (the first CUDA GPU if this build has CUDA and one is visible).
    #[arg(long, default_value = "auto")]
    device: String,
    /// CPU threads [default: all cores].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Train at most N batches per epoch (smoke tests, debugging).
    #[arg(long, value_name = "N")]
    max_batches: Option<usize>,
    /// Continue the run from its last checkpoint; a run that does not exist yet starts
    /// fresh, a finished run exits 0 at once.
    #[arg(long, conflicts_with = "overwrite")]
    resume: bool,
    /// Delete an existing run at the same place and start again.
    #[arg(long)]
    overwrite: bool,
    /// Resolve everything, print the run directory and its config.toml, train nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Copies the listed fields from the command-line arguments into the options: all of
/// them (`all = true`), or only those given on the command line.
macro_rules! copy_fields {
    ($opts:ident, $args:ident, $given:expr; $($field:ident),* $(,)?) => {
        $( if $given(stringify!($field)) { $opts.$field = $args.$field.clone(); } )*
    };
}

fn apply_args(opts: &mut TrainOptions, args: &TrainArgs, given: &dyn Fn(&str) -> bool) {
    copy_fields!(opts, args, given;
        out, data, train_split, val_split, teacher, teacher_arch, student, seed, iter,
        lambda, gamma, temperature_teacher, temperature_human, distil_fn, kl_reduction,
        human_smoothing, epochs, batch_size, eval_batch_size, lr, momentum, weight_decay,
        scheduler, plateau_factor, plateau_patience, step_milestones, step_gamma,
        cosine_min_lr, device, threads, max_batches, resume, overwrite);
}

/// The options of a run: the config file (if any), overridden by the flags given on the
/// command line; without a config file the flags and their defaults.
// TrainError is large, but it is built at most once per process here.
#[allow(clippy::result_large_err)]
fn build_options(args: &TrainArgs, matches: &ArgMatches) -> Result<TrainOptions, TrainError> {
    match &args.config {
        None => {
            let mut opts = TrainOptions::default();
            apply_args(&mut opts, args, &|_| true);
            Ok(opts)
        }
        Some(path) => {
            let mut opts = TrainOptions::from_toml_file(path)?;
            let given =
                |id: &str| matches!(matches.value_source(id), Some(ValueSource::CommandLine));
            apply_args(&mut opts, args, &given);
            Ok(opts)
        }
    }
}

/// Progress for people: a bar per epoch on a terminal, and the original's metric line
/// on stdout after every epoch.
struct CliObserver {
    terminal: bool,
    bar: Option<ProgressBar>,
}

impl Observer for CliObserver {
    fn run_started(&mut self, info: &RunInfo) {
        if let Some((e, b)) = info.resumed_from {
            tracing::debug!("resumed at epoch {e} batch {b}");
        }
    }

    fn epoch_started(&mut self, epoch: u32, epochs: u32, first_batch: usize, batches: usize) {
        if !self.terminal {
            return;
        }
        let bar = ProgressBar::new(batches as u64).with_position(first_batch as u64);
        let style = ProgressStyle::with_template(
            "{prefix} [{bar:32}] {pos}/{len} batches {msg} ({elapsed} elapsed, {eta} left)",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(format!("epoch {epoch}/{epochs}"));
        self.bar = Some(bar);
    }

    fn batch_done(&mut self, _epoch: u32, batch: usize, _batches: usize, loss: f64) {
        if let Some(bar) = &self.bar {
            bar.set_position(batch as u64);
            bar.set_message(format!("loss {loss:.4}"));
        }
    }

    fn epoch_done(&mut self, metrics: &EpochMetrics, _improved: bool) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        // The original project's line, for tools that parse it (accuracy in percent).
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "{{\"metric\": \"val_accuracy\", \"value\": {}}}",
            100.0 * metrics.val_acc
        );
        let _ = out.flush();
    }
}

fn print_models(json: bool) {
    let models = hkd_arch::known_architectures();
    if json {
        for m in models {
            let line = serde_json::json!({
                "name": m.name, "alias_of": m.alias_of, "params": m.params,
                "macs": m.macs, "description": m.description,
            });
            println!("{line}");
        }
        return;
    }
    println!(
        "{:<22} {:>12} {:>10}  description",
        "name", "parameters", "MMACs"
    );
    for m in models {
        let desc = match &m.alias_of {
            Some(a) => format!("= {a}: {}", m.description),
            None => m.description.clone(),
        };
        println!(
            "{:<22} {:>12} {:>10.1}  {desc}",
            m.name,
            m.params,
            m.macs as f64 / 1e6
        );
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

#[allow(clippy::result_large_err)]
fn main() -> ExitCode {
    allocator::keep_freed_memory();
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    match cli.command {
        Some(Command::Models { json }) => {
            print_models(json);
            return ExitCode::SUCCESS;
        }
        Some(Command::Flags) => {
            for arg in TrainArgs::augment_args(clap::Command::new("x")).get_arguments() {
                if let Some(long) = arg.get_long() {
                    println!("{long}");
                }
            }
            return ExitCode::SUCCESS;
        }
        None => {}
    }
    let options = match build_options(&cli.train, &matches).and_then(|o| o.validate().map(|()| o)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // Before anything starts a thread or touches candle.
    let threads = hkd_trainer::configure_threads(options.threads);
    init_tracing();
    tracing::info!(
        "hkd-train {}, {threads} CPU threads",
        env!("CARGO_PKG_VERSION")
    );

    if cli.train.dry_run {
        return match hkd_trainer::plan(&options) {
            Ok(plan) => {
                println!("run directory: {}", plan.run_dir.path().display());
                println!("status: {:?}", plan.run_dir.status());
                match toml::to_string_pretty(&plan.config) {
                    Ok(text) => print!("{text}"),
                    Err(e) => eprintln!("cannot print the config: {e}"),
                }
                ExitCode::SUCCESS
            }
            Err(e) => report(&e),
        };
    }

    let stop = StopFlag::new();
    if let Err(e) = stop.install_signal_handlers() {
        tracing::warn!(
            "cannot install the SIGTERM/SIGUSR1 handlers ({e}); a signal will kill the run without a checkpoint"
        );
    }
    let mut observer = CliObserver {
        terminal: std::io::stderr().is_terminal(),
        bar: None,
    };
    match hkd_trainer::train(&options, &mut observer, &stop) {
        Ok(Outcome::Finished { .. }) | Ok(Outcome::AlreadyFinished { .. }) => ExitCode::SUCCESS,
        Ok(Outcome::Stopped {
            run_dir,
            epochs_completed,
            batches_into_epoch,
        }) => {
            tracing::info!(
                "stopped after epoch {epochs_completed} + {batches_into_epoch} batches; {} holds the checkpoint; exit {EXIT_CHECKPOINTED} (rerun with --resume)",
                run_dir.display()
            );
            ExitCode::from(EXIT_CHECKPOINTED as u8)
        }
        Err(e) => report(&e),
    }
}

/// Prints an error and returns its exit status: 2 for bad settings, 1 otherwise.
fn report(e: &TrainError) -> ExitCode {
    tracing::error!("{e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        tracing::error!("  caused by: {s}");
        source = s.source();
    }
    match e {
        TrainError::InvalidOption { .. } | TrainError::ConfigFile { .. } => ExitCode::from(2),
        _ => ExitCode::FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_defaults_equal_the_library_defaults() {
        let matches = Cli::command().get_matches_from(["hkd-train"]);
        let cli = Cli::from_arg_matches(&matches).unwrap();
        assert_eq!(
            build_options(&cli.train, &matches).unwrap(),
            TrainOptions::default()
        );
    }

    #[test]
    fn command_line_flags_override_the_config_file() {
        let dir = std::env::temp_dir().join(format!("hkd-train-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("run.toml");
        std::fs::write(&file, "lambda = 0.9\nepochs = 7\nstudent = \"resnet20\"\n").unwrap();
        let matches = Cli::command().get_matches_from([
            "hkd-train",
            "--config",
            file.to_str().unwrap(),
            "--epochs",
            "3",
            "--distil-fn",
            "KD",
        ]);
        let cli = Cli::from_arg_matches(&matches).unwrap();
        let o = build_options(&cli.train, &matches).unwrap();
        assert_eq!(
            (o.lambda, o.epochs, o.student.as_str()),
            (0.9, 3, "resnet20")
        );
        assert_eq!(o.distil_fn, DistilFn::KL);
        assert_eq!(o.batch_size, 128);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
