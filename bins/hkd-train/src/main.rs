//! `hkd-train`: train one hkd run (a teacher or a student). See `docs/training.md`.
// `unsafe` only in the allocator's one option call (bins/shared/allocator.rs)
#![deny(unsafe_code)]
// Doc comments on clap types are --help text, written for the terminal (`<OUT>`,
// `DIR[:split]`), not rustdoc markup.
#![allow(rustdoc::invalid_html_tags, rustdoc::broken_intra_doc_links)]

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hkd_rundir::{CommandError, EpochMetrics, TrainCommand};
use hkd_trainer::{EXIT_CHECKPOINTED, Observer, Outcome, RunInfo, StopFlag, TrainError};
use indicatif::{ProgressBar, ProgressStyle};

#[path = "../../shared/allocator.rs"]
mod allocator;
#[path = "../../shared/runtime.rs"]
mod runtime;

/// Train one hkd run: a teacher (`--teacher baseline|human`) or a student of a teacher
/// network. The run goes to <OUT>/<teacher-slug>/<student>/<run-name>/ (docs/training.md).
#[derive(Parser, Debug)]
#[command(
    name = "hkd-train",
    version,
    args_conflicts_with_subcommands = true,
    args_override_self = true,
    max_term_width = 100
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    train: TrainCommand,
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
    /// Print the long names of the training flags, one per line.
    Flags,
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

fn main() -> ExitCode {
    allocator::keep_freed_memory();
    // The stop signals before anything else: a signal at any moment checkpoints (or, before
    // the run directory is touched, exits 75 with nothing written), never kills with 143.
    let stop = StopFlag::new();
    if let Err(e) = stop.install_signal_handlers() {
        eprintln!(
            "hkd-train: warning: cannot install the SIGTERM/SIGUSR1/SIGHUP handlers ({e}); a signal will kill the run without a checkpoint"
        );
    }
    // clap first: --help, --version, subcommands and usage errors (exit 2).
    let cli = match runtime::parse_cli::<Cli>("hkd-train") {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match cli.command {
        Some(Command::Models { json }) => {
            print_models(json);
            return ExitCode::SUCCESS;
        }
        Some(Command::Flags) => {
            for arg in TrainCommand::clap_command().get_arguments() {
                if let Some(long) = arg.get_long() {
                    println!("{long}");
                }
            }
            return ExitCode::SUCCESS;
        }
        None => {}
    }
    // Then the one parser of a run request: the --config file, the flags over it, checks.
    let request = match TrainCommand::parse_args(std::env::args_os().skip(1)) {
        Ok(r) => r,
        Err(e) => {
            let code = runtime::fail("hkd-train", &e, runtime::EXIT_USAGE);
            if matches!(e, CommandError::Usage(_)) {
                eprintln!("For more information, try '--help'.");
            }
            return code;
        }
    };
    // Before anything starts a thread or touches candle.
    let threads = hkd_arch::configure_threads(request.execution.threads.map(|n| n as usize));
    runtime::init_logging("info", true);
    tracing::info!(
        "hkd-train {}, {threads} CPU threads",
        env!("CARGO_PKG_VERSION")
    );

    if request.dry_run {
        return match hkd_trainer::plan(&request.spec, &request.execution) {
            Ok(plan) => {
                println!("run directory: {}", plan.run_dir.path().display());
                println!("status: {:?}", plan.run_dir.status());
                match toml::to_string_pretty(&plan.config) {
                    Ok(text) => print!("{text}"),
                    Err(e) => eprintln!("cannot print the config: {e}"),
                }
                ExitCode::SUCCESS
            }
            Err(e) => runtime::fail("hkd-train", &e, runtime::EXIT_USAGE),
        };
    }

    let mut observer = CliObserver {
        terminal: std::io::stderr().is_terminal(),
        bar: None,
    };
    // Everything that fails before the run directory is touched (settings, teacher,
    // data, device) is refused input (exit 2); what fails after is a failed run (1).
    let plan = match hkd_trainer::plan(&request.spec, &request.execution) {
        Ok(p) => p,
        Err(e) => return runtime::fail("hkd-train", &e, runtime::EXIT_USAGE),
    };
    if stop.is_requested() {
        tracing::info!(
            "stopped by a signal before the run started; nothing written; exit {EXIT_CHECKPOINTED} (rerun to start it)"
        );
        return ExitCode::from(runtime::EXIT_INTERRUPTED);
    }
    match hkd_trainer::run(plan, &mut observer, &stop) {
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
            ExitCode::from(runtime::EXIT_INTERRUPTED)
        }
        Err(e) => report(&e),
    }
}

/// Prints an error and returns its exit status: 2 for bad settings, 1 otherwise.
fn report(e: &TrainError) -> ExitCode {
    let code = match e {
        TrainError::InvalidOption { .. } | TrainError::Setting(_) => runtime::EXIT_USAGE,
        _ => runtime::EXIT_FAILED,
    };
    runtime::fail("hkd-train", e, code)
}
