//! `hkd-eval`: evaluate hkd runs (generalisation, human alignment, calibration,
//! robustness) and predict logits for `.npy` images. See `docs/evaluation.md`.
// `unsafe` only in the allocator's one option call (bins/shared/allocator.rs)
#![deny(unsafe_code)]

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::{Context, Result};
use hkd_evaluator::{
    AttackSettings, EvalOptions, Evaluator, Progress, RunResult, SetSpec, Shard,
    check_calibration_set, find_targets, parse_attacks, parse_device, parse_eps_list,
    predict_to_file, read_sets_file,
};
use hkd_rundir::cli::eval::{
    EvalCli as Cli, EvalCommand as Command, EvalRunArgs as RunArgs, PredictArgs,
};
use indicatif::{ProgressBar, ProgressStyle};

#[path = "../../shared/allocator.rs"]
mod allocator;
#[path = "../../shared/runtime.rs"]
mod runtime;

fn main() -> ExitCode {
    allocator::keep_freed_memory();
    let cli = match runtime::parse_cli::<Cli>("hkd-eval") {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    if let Some(n) = cli.threads {
        hkd_arch::configure_threads(Some(n as usize));
    }
    runtime::init_logging(if cli.quiet { "warn" } else { "info" }, true);
    let result = match &cli.command {
        Command::Run(args) => run(&cli, args),
        Command::Predict(args) => predict(&cli, args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let usage = e
                .chain()
                .find_map(|c| c.downcast_ref::<hkd_evaluator::EvalError>())
                .is_some_and(hkd_evaluator::EvalError::is_usage);
            let code = if usage {
                runtime::EXIT_USAGE
            } else {
                runtime::EXIT_FAILED
            };
            runtime::fail("hkd-eval", e.as_ref(), code)
        }
    }
}

fn run(cli: &Cli, args: &RunArgs) -> Result<ExitCode> {
    let mut sets = args
        .sets
        .iter()
        .map(|s| s.parse::<SetSpec>())
        .collect::<Result<Vec<_>, _>>()?;
    let shard: Shard = args.shard.parse()?;
    if let Some(file) = &args.sets_file {
        sets.extend(read_sets_file(file)?);
    }
    if let Some(name) = &args.calibrate_on {
        // before any target is searched or set loaded: a typo costs nothing
        check_calibration_set(&sets, name)?;
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
        weights: args.weights,
        attacks,
        force: args.force,
        calibrate_on: args.calibrate_on.clone(),
    };
    let found = find_targets(&args.paths, args.arch.as_deref(), args.classes)?;
    let total = found.len();
    let targets = shard.select(found);
    let device = parse_device(&cli.device)?;
    if shard != Shard::all() {
        println!(
            "shard {}: {} of {total}",
            shard,
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
                let temperature = report
                    .temperature
                    .as_ref()
                    .map(|t| format!("  T {:.4} (on {})", t.temperature, t.set))
                    .unwrap_or_default();
                println!(
                    "evaluated  {path}  {}{temperature}  -> {}",
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
                // one line per run on stdout, whatever the error's own layout
                let one_line: Vec<String> = e
                    .to_string()
                    .lines()
                    .map(|l| l.trim().to_string())
                    .filter(|l| !l.is_empty())
                    .collect();
                println!("FAILED     {path}  {}", one_line.join(" | "));
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
    // refused inputs (weights that are not sound) are exit 2 when nothing else failed
    let refused =
        |o: &&hkd_evaluator::RunOutcome| matches!(&o.result, RunResult::Failed(e) if e.is_usage());
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else if failed.iter().all(refused) {
        ExitCode::from(runtime::EXIT_USAGE)
    } else {
        ExitCode::from(runtime::EXIT_FAILED)
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
