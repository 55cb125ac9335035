//! `hkd-grid`: expand an hkd grid config into Slurm jobs (or local runs), submit them,
//! show their status, resubmit failed tasks, and run pipelines. See `docs/grid.md`.
#![forbid(unsafe_code)]
// Doc comments on clap types are --help text, written for the terminal (`<OUT>`,
// `DIR[:split]`), not rustdoc markup.
#![allow(rustdoc::invalid_html_tags, rustdoc::broken_intra_doc_links)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

#[path = "../../shared/runtime.rs"]
mod runtime;
use hkd_slurm::{
    BinaryInfo, ExecutorChoice, ExecutorKind, GridConfig, GridDir, LaunchOptions, LocalEvent,
    Pipeline, PipelineOptions, PipelineRecord, RunOptions, SchedulerView, choose_executor,
    create_and_prepare, default_jobs, failed_tasks, grid_status, launch, resubmit_executor,
    run_pipeline, run_task,
};

#[derive(Parser, Debug)]
#[command(
    name = "hkd-grid",
    version,
    about = "Expand an hkd grid config into Slurm jobs or local runs, submit them, watch them, resubmit failures",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    /// Grid config (configs/train.toml, …).
    config: Option<PathBuf>,
    #[command(flatten)]
    launch: LaunchArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Args, Debug, Clone)]
struct LaunchArgs {
    /// Write the grid directory and print what would run; submit or run nothing.
    #[arg(long)]
    dry_run: bool,
    /// Where the tasks run: auto = slurm when sbatch is on PATH, else local. Overrides the
    /// config's `executor`.
    #[arg(long, value_name = "auto|slurm|local")]
    executor: Option<ExecutorChoice>,
    /// Start only after these Slurm jobs succeeded (--dependency=afterok:…); repeatable or
    /// comma-separated.
    #[arg(long, value_name = "JOBID", value_delimiter = ',')]
    after: Vec<String>,
    /// Local executor: tasks at once (default: cores / the grid's `threads`, else 1).
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// Directory in which grid directories are created.
    #[arg(long, value_name = "DIR", default_value = "grids")]
    grids_dir: PathBuf,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show each task of a grid (or pipeline) directory: pending, running, done or failed.
    Status {
        /// A grids/<timestamp>-<name>/ directory.
        dir: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long, conflicts_with = "watch")]
        json: bool,
        /// Keep watching until no task is pending or running (Ctrl-C stops it): on a
        /// terminal the table redrawn in place, else one line per task whose state changed.
        #[arg(long)]
        watch: bool,
        /// Seconds between two looks with --watch.
        #[arg(long, value_name = "S", default_value_t = 2.0, requires = "watch")]
        interval: f64,
    },
    /// Submit tasks of a grid again (runs resume): the failed, timed-out or cancelled
    /// ones, and/or those a submission that stopped half-way left out.
    #[command(group = clap::ArgGroup::new("selection").required(true).multiple(true).args(["failed", "unsubmitted"]))]
    Resubmit {
        dir: PathBuf,
        /// The tasks whose status is `failed`.
        #[arg(long)]
        failed: bool,
        /// The tasks no submission included (sbatch refused a job, the rest were not sent).
        #[arg(long)]
        unsubmitted: bool,
        #[arg(long)]
        dry_run: bool,
        /// Default: the executor of the grid's last submission.
        #[arg(long, value_name = "auto|slurm|local")]
        executor: Option<ExecutorChoice>,
        #[arg(long, value_name = "N")]
        jobs: Option<usize>,
    },
    /// Cancel the queued and running jobs of a grid (or of every stage of a pipeline).
    Cancel {
        /// A grids/<timestamp>-<name>/ directory.
        dir: PathBuf,
    },
    /// Run a pipeline of grids (teachers → students → evaluate → analyze).
    Pipeline {
        /// Pipeline file (configs/pipeline.toml).
        file: PathBuf,
        /// Apply the file's [profile.NAME] (e.g. `short` in configs/kd-benchmark.toml).
        #[arg(long, value_name = "NAME")]
        profile: Option<String>,
        #[command(flatten)]
        launch: LaunchArgs,
    },
    /// Run one task of a grid (what the job scripts call).
    #[command(hide = true)]
    Exec {
        /// Requeue the Slurm job if the task checkpointed after SIGUSR1 (exit 75).
        #[arg(long)]
        requeue_on_checkpoint: bool,
        dir: PathBuf,
        index: usize,
    },
}

fn main() -> ExitCode {
    runtime::init_logging("warn", true);
    let cli = match runtime::parse_cli::<Cli>("hkd-grid") {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let result = match cli.command {
        Some(Command::Status {
            dir,
            json: _,
            watch: true,
            interval,
        }) => cmd_watch(&dir, interval),
        Some(Command::Status { dir, json, .. }) => cmd_status(&dir, json),
        Some(Command::Resubmit {
            dir,
            failed,
            unsubmitted,
            dry_run,
            executor,
            jobs,
        }) => cmd_resubmit(&dir, failed, unsubmitted, dry_run, executor, jobs),
        Some(Command::Pipeline {
            file,
            profile,
            launch,
        }) => cmd_pipeline(&file, profile.as_deref(), &launch),
        Some(Command::Cancel { dir }) => cmd_cancel(&dir),
        Some(Command::Exec {
            requeue_on_checkpoint,
            dir,
            index,
        }) => cmd_exec(&dir, index, requeue_on_checkpoint),
        None => match &cli.config {
            Some(config) => cmd_grid(config, &cli.launch),
            None => Err(anyhow::anyhow!(
                "give a grid config (hkd-grid configs/train.toml) or a command (status, resubmit, pipeline); see --help"
            )),
        },
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // a submission that stopped half-way: the accepted job ids still go to stdout
            if let Some(hkd_slurm::GridError::PartialSubmission { job_ids, .. }) =
                e.downcast_ref::<hkd_slurm::GridError>()
                && !job_ids.is_empty()
            {
                println!("{}", job_ids.join(","));
            }
            runtime::fail("hkd-grid", e.as_ref(), exit_code_of(&e))
        }
    }
}

/// The exit-code policy (docs/README.md): 2 for a config or command line that is refused
/// before anything runs, 1 for everything else that failed.
fn exit_code_of(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<hkd_slurm::GridError>() {
        Some(
            hkd_slurm::GridError::Config { .. }
            | hkd_slurm::GridError::Unsafe { .. }
            | hkd_slurm::GridError::Pipeline { .. },
        ) => runtime::EXIT_USAGE,
        _ => runtime::EXIT_FAILED,
    }
}

fn runner() -> Result<PathBuf> {
    std::env::current_exe().context("cannot find the path of hkd-grid itself (the task runner)")
}

fn print_local_event(event: LocalEvent<'_>) {
    match event {
        LocalEvent::Started { .. } => {}
        LocalEvent::Finished {
            outcome,
            done,
            total,
        } => {
            let what = match outcome.exit_code {
                0 => "done".to_string(),
                75 => "checkpointed (exit 75)".to_string(),
                c => format!("FAILED (exit {c})"),
            };
            eprintln!(
                "hkd-grid: [{done}/{total}] task {} {what} ({}, {:.1} s)",
                outcome.index,
                outcome.action.as_str(),
                outcome.seconds
            );
        }
    }
}

fn dependency(after: &[String]) -> Result<Option<String>> {
    let ids: Vec<&str> = after
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect();
    for id in &ids {
        if !id.chars().all(|c| c.is_ascii_digit() || c == '_') {
            bail!("--after {id:?} is not a Slurm job id (digits, or <job>_<task>)");
        }
    }
    Ok((!ids.is_empty()).then(|| format!("afterok:{}", ids.join(":"))))
}

fn cmd_grid(config_path: &Path, args: &LaunchArgs) -> Result<ExitCode> {
    let config = GridConfig::load(config_path)?;
    let executor = choose_executor(args.executor.unwrap_or(config.executor), args.dry_run)?;
    let binary = BinaryInfo::find(config.binary, config.subcommand.as_deref())?;
    let workdir = std::env::current_dir().context("cannot read the current directory")?;
    let (dir, mut manifest) =
        create_and_prepare(config, config_path, binary, &args.grids_dir, &workdir)?;
    eprintln!(
        "hkd-grid: grid `{}`: {} tasks of {} -> {}",
        manifest.name,
        manifest.tasks.len(),
        manifest.binary.name,
        dir.path().display()
    );
    let jobs = args.jobs.unwrap_or_else(|| default_jobs(&manifest.config));
    eprintln!(
        "hkd-grid: executor: {}{}",
        executor.reason(),
        if executor.kind() == ExecutorKind::Local {
            format!(", {jobs} at a time")
        } else {
            String::new()
        }
    );
    let tasks: Vec<usize> = (0..manifest.tasks.len()).collect();
    let options = LaunchOptions {
        dry_run: args.dry_run,
        dependency: dependency(&args.after)?,
        jobs: Some(jobs),
        runner: runner()?,
        on_local_event: &print_local_event,
    };
    let live = (executor.kind() == ExecutorKind::Local && !args.dry_run).then(LiveView::start);
    if let Some(live) = &live {
        live.watch(None, dir.path());
    }
    let report = launch(&dir, &mut manifest, executor.as_ref(), &tasks, &options);
    drop(live);
    finish_launch(&dir, &manifest, &report?, args.dry_run)
}

fn finish_launch(
    dir: &GridDir,
    manifest: &hkd_slurm::Manifest,
    report: &hkd_slurm::LaunchReport,
    dry_run: bool,
) -> Result<ExitCode> {
    if dry_run {
        println!("# {}", dir.file(hkd_slurm::manifest::TASKS_TXT).display());
        let text = hkd_slurm::tasks_txt(manifest);
        let lines: Vec<&str> = text.lines().collect();
        for line in lines.iter().take(20) {
            println!("{line}");
        }
        if lines.len() > 20 {
            println!("# … {} more", lines.len() - 20);
        }
        for job in report.rendered.iter().take(3) {
            match &job.script {
                Some((name, contents)) => {
                    println!("# {}", dir.file(name).display());
                    print!("{contents}");
                }
                None => println!("# sbatch {}", hkd_slurm::quote::join(&job.sbatch_args)),
            }
        }
        if report.rendered.len() > 3 {
            println!("# … {} more jobs", report.rendered.len() - 3);
        }
        eprintln!("hkd-grid: dry run: nothing submitted or run");
        return Ok(ExitCode::SUCCESS);
    }
    match report.submission.executor {
        ExecutorKind::Slurm => {
            for job in &report.submission.jobs {
                eprintln!(
                    "hkd-grid: submitted job {} ({}: tasks {})",
                    job.job_id.as_deref().unwrap_or("?"),
                    job.script.as_deref().unwrap_or("--wrap"),
                    hkd_slurm::render::compress_indices(&job.tasks)
                );
            }
            // the job ids on stdout, for scripts (`--after $(…)`)
            println!("{}", report.job_ids().join(","));
            eprintln!(
                "hkd-grid: watch it with: hkd-grid status {}",
                dir.path().display()
            );
            Ok(ExitCode::SUCCESS)
        }
        ExecutorKind::Local => {
            let failed_outright = report
                .outcomes
                .iter()
                .any(|o| o.exit_code != 0 && o.exit_code != hkd_rundir::EXIT_CHECKPOINTED);
            if let Some(sig) = report.interrupted_by.as_ref().filter(|_| !failed_outright) {
                let checkpointed = report
                    .outcomes
                    .iter()
                    .filter(|o| o.exit_code == hkd_rundir::EXIT_CHECKPOINTED)
                    .count();
                let not_started = manifest.tasks.len().min(
                    report
                        .submission
                        .jobs
                        .iter()
                        .map(|j| j.tasks.len())
                        .sum::<usize>(),
                ) - report.outcomes.len();
                eprintln!(
                    "hkd-grid: interrupted by SIG{sig}: {checkpointed} running tasks checkpointed, {not_started} not started; run the same command again to resume them (finished runs are skipped)"
                );
                return Ok(ExitCode::from(runtime::EXIT_INTERRUPTED));
            }
            let failed = report.failed_local();
            let skipped = report
                .outcomes
                .iter()
                .filter(|o| o.action == hkd_slurm::TaskAction::Skip)
                .count();
            eprintln!(
                "hkd-grid: {} tasks: {} ok ({} already finished), {} failed",
                report.outcomes.len(),
                report.outcomes.len() - failed.len(),
                skipped,
                failed.len()
            );
            for o in &failed {
                eprintln!(
                    "hkd-grid:   task {} exit {}: see {}",
                    o.index,
                    o.exit_code,
                    dir.log_path(o.index).display()
                );
            }
            if failed.is_empty() {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!(
                    "hkd-grid: rerun the failed tasks (they resume) with: hkd-grid resubmit {} --failed",
                    dir.path().display()
                );
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

fn statuses_of(dir: &GridDir) -> Result<Vec<hkd_slurm::TaskStatus>> {
    let manifest = dir.read_manifest()?;
    let view = SchedulerView::query(&manifest);
    Ok(grid_status(dir, &manifest, &view))
}

/// `status`'s table: one line per task, then the counts.
fn table(statuses: &[hkd_slurm::TaskStatus]) -> String {
    let mut out = format!("{:>5}  {:<13}  {:<12}  detail\n", "task", "status", "job");
    for s in statuses {
        out.push_str(&format!(
            "{:>5}  {:<13}  {:<12}  {}\n",
            s.index,
            s.kind.to_string(),
            s.job.as_deref().unwrap_or("-"),
            s.detail
        ));
    }
    out.push_str(&hkd_slurm::status::summary(statuses));
    out
}

fn print_table(statuses: &[hkd_slurm::TaskStatus]) {
    println!("{}", table(statuses));
}

fn cmd_status(dir: &Path, json: bool) -> Result<ExitCode> {
    let stages = stage_statuses(dir)?;
    match (json, stages.as_slice()) {
        (true, [(None, statuses)]) => println!("{}", serde_json::to_string_pretty(statuses)?),
        (true, _) => {
            let mut all = serde_json::Map::new();
            for (stage, statuses) in &stages {
                let name = stage.as_ref().map(|(n, _)| n.clone()).unwrap_or_default();
                all.insert(name, serde_json::to_value(statuses)?);
            }
            println!("{}", serde_json::to_string_pretty(&all)?);
        }
        (false, _) => {
            for (stage, statuses) in &stages {
                if let Some((name, grid_dir)) = stage {
                    println!("== stage {name} ({})", grid_dir.display());
                }
                print_table(statuses);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A stage's name and grid directory (none for a plain grid), and its tasks' statuses.
type StageStatuses = (Option<(String, PathBuf)>, Vec<hkd_slurm::TaskStatus>);

/// Each stage's name (none for a plain grid) and its tasks' statuses.
fn stage_statuses(dir: &Path) -> Result<Vec<StageStatuses>> {
    if dir.join(hkd_slurm::pipeline::PIPELINE_JSON).is_file() {
        let record = PipelineRecord::read(dir)?;
        record
            .stages
            .iter()
            .map(|stage| {
                let statuses = statuses_of(&GridDir::open(&stage.grid_dir)?)?;
                Ok((Some((stage.name.clone(), stage.grid_dir.clone())), statuses))
            })
            .collect()
    } else {
        Ok(vec![(None, statuses_of(&GridDir::open(dir)?)?)])
    }
}

/// The per-task view of `status --watch` and of a local grid while it runs: on a terminal,
/// `status`'s tables redrawn in place; otherwise a plain line per task whose state or
/// progress changed since the last look.
struct Watch {
    terminal: bool,
    seen: std::collections::HashMap<(Option<String>, usize), (String, String)>,
}

impl Watch {
    fn new(terminal: bool) -> Watch {
        Watch {
            terminal,
            seen: std::collections::HashMap::new(),
        }
    }

    /// Shows `stages` once; `footer` ends a redrawn screen.
    fn show(
        &mut self,
        out: &mut impl std::io::Write,
        stages: &[StageStatuses],
        footer: &str,
    ) -> std::io::Result<()> {
        if self.terminal {
            // clear the screen and go home, then the tables as `status` prints them
            write!(out, "\x1b[2J\x1b[H")?;
            for (stage, statuses) in stages {
                if let Some((name, grid_dir)) = stage {
                    writeln!(out, "== stage {name} ({})", grid_dir.display())?;
                }
                writeln!(out, "{}", table(statuses))?;
            }
            writeln!(out, "{}: {footer}", hkd_slurm::manifest::now())?;
        } else {
            for (stage, statuses) in stages {
                for s in statuses {
                    let now = (s.kind.to_string(), s.detail.clone());
                    let key = (stage.as_ref().map(|(n, _)| n.clone()), s.index);
                    if self.seen.get(&key) != Some(&now) {
                        writeln!(
                            out,
                            "{}task {}: {}: {}",
                            stage_prefix(stage),
                            s.index,
                            now.0,
                            now.1
                        )?;
                        self.seen.insert(key, now);
                    }
                }
            }
        }
        out.flush()
    }

    /// The counts per stage, for the end of a plain (not redrawn) view.
    fn summary(
        &self,
        out: &mut impl std::io::Write,
        stages: &[StageStatuses],
    ) -> std::io::Result<()> {
        if !self.terminal {
            for (stage, statuses) in stages {
                let prefix = stage_prefix(stage);
                writeln!(out, "{prefix}{}", hkd_slurm::status::summary(statuses))?;
            }
        }
        out.flush()
    }
}

/// `"name: "` for a pipeline stage's lines, nothing for a lone grid's.
fn stage_prefix(stage: &Option<(String, PathBuf)>) -> String {
    stage
        .as_ref()
        .map(|(n, _)| format!("{n}: "))
        .unwrap_or_default()
}

/// Whether any task of `stages` is pending or running.
fn any_active(stages: &[StageStatuses]) -> bool {
    stages.iter().flat_map(|(_, s)| s).any(|s| {
        matches!(
            s.kind,
            hkd_slurm::status::StatusKind::Pending | hkd_slurm::status::StatusKind::Running
        )
    })
}

/// `status --watch`: looks every `interval` seconds until no task is pending or running.
fn cmd_watch(dir: &Path, interval: f64) -> Result<ExitCode> {
    use std::io::IsTerminal;
    if !(interval.is_finite() && interval > 0.0) {
        eprintln!("hkd-grid: error: --interval {interval}: expected a number of seconds > 0");
        return Ok(ExitCode::from(runtime::EXIT_USAGE));
    }
    let mut watch = Watch::new(std::io::stdout().is_terminal());
    let footer = format!("every {interval} s, Ctrl-C to stop");
    loop {
        let stages = stage_statuses(dir)?;
        watch.show(&mut std::io::stdout().lock(), &stages, &footer)?;
        if !any_active(&stages) {
            watch.summary(&mut std::io::stdout().lock(), &stages)?;
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(std::time::Duration::from_secs_f64(interval));
    }
}

/// The grid a [`LiveView`] shows: its pipeline stage (if any) and directory.
type LiveTarget = std::sync::Arc<std::sync::Mutex<Option<(Option<String>, PathBuf)>>>;

/// The live view of a local grid while it runs, on stderr: [`Watch`] every second over
/// the grid (or the pipeline stage) that [`LiveView::watch`] last named, until dropped.
struct LiveView {
    target: LiveTarget,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LiveView {
    /// Starts the view; `HKD_GRID_LIVE=0` turns it off (the per-task lines remain).
    fn start() -> LiveView {
        use std::io::IsTerminal;
        use std::sync::atomic::Ordering;
        let target = LiveTarget::default();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let off = std::env::var("HKD_GRID_LIVE").is_ok_and(|v| v == "0");
        let thread = (!off).then(|| {
            let (target, stop) = (target.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut watch = Watch::new(std::io::stderr().is_terminal());
                let show = |watch: &mut Watch| {
                    let current = target.lock().map(|t| t.clone()).unwrap_or(None);
                    let Some((stage, dir)) = current else { return };
                    // a grid being written or a manifest mid-update: look again next time
                    let Ok(statuses) = statuses_of_dir(&dir) else {
                        return;
                    };
                    let stages = [(stage.map(|s| (s, dir.clone())), statuses)];
                    let _ = watch.show(&mut std::io::stderr().lock(), &stages, "running here");
                };
                while !stop.load(Ordering::Relaxed) {
                    show(&mut watch);
                    for _ in 0..10 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                }
                // the final state, so that the last change is shown too
                show(&mut watch);
            })
        });
        LiveView {
            target,
            stop,
            thread,
        }
    }

    /// Watch the grid in `dir` (of pipeline stage `stage`) from now on.
    fn watch(&self, stage: Option<&str>, dir: &Path) {
        if let Ok(mut t) = self.target.lock() {
            *t = Some((stage.map(str::to_owned), dir.to_path_buf()));
        }
    }
}

impl Drop for LiveView {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn statuses_of_dir(dir: &Path) -> Result<Vec<hkd_slurm::TaskStatus>> {
    statuses_of(&GridDir::open(dir)?)
}

fn cmd_cancel(dir: &Path) -> Result<ExitCode> {
    let grids: Vec<PathBuf> = if dir.join(hkd_slurm::pipeline::PIPELINE_JSON).is_file() {
        PipelineRecord::read(dir)?
            .stages
            .into_iter()
            .map(|s| s.grid_dir)
            .collect()
    } else {
        vec![dir.to_path_buf()]
    };
    for grid in grids {
        let grid = GridDir::open(&grid)?;
        let manifest = grid.read_manifest()?;
        let mut kinds: Vec<ExecutorKind> = manifest
            .submissions
            .iter()
            .filter(|s| !s.dry_run)
            .map(|s| s.executor)
            .collect();
        kinds.dedup();
        if kinds.is_empty() {
            eprintln!("hkd-grid: {}: nothing was submitted", grid.path().display());
        }
        for kind in kinds {
            let ids = hkd_slurm::executor_of(kind, "cancel").cancel(&manifest)?;
            eprintln!(
                "hkd-grid: {}: cancelled {} ({kind})",
                grid.path().display(),
                if ids.is_empty() {
                    "no job".to_string()
                } else {
                    format!("jobs {}", ids.join(","))
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_resubmit(
    dir: &Path,
    failed: bool,
    unsubmitted: bool,
    dry_run: bool,
    executor: Option<ExecutorChoice>,
    jobs: Option<usize>,
) -> Result<ExitCode> {
    let dir = GridDir::open(dir)?;
    let mut manifest = dir.read_manifest()?;
    let mut selected = Vec::new();
    if failed {
        selected.extend(failed_tasks(&dir, &manifest));
    }
    if unsubmitted {
        selected.extend(hkd_slurm::unsubmitted_tasks(&manifest));
    }
    selected.sort_unstable();
    selected.dedup();
    let what = match (failed, unsubmitted) {
        (true, true) => "failed or unsubmitted",
        (true, false) => "failed",
        _ => "unsubmitted",
    };
    if selected.is_empty() {
        eprintln!("hkd-grid: no {what} task in {}", dir.path().display());
        return Ok(ExitCode::SUCCESS);
    }
    let executor = resubmit_executor(&manifest, executor, dry_run)?;
    eprintln!(
        "hkd-grid: resubmitting {} {what} tasks ({}) with executor {}",
        selected.len(),
        hkd_slurm::render::compress_indices(&selected),
        executor.reason()
    );
    let options = LaunchOptions {
        dry_run,
        dependency: None,
        jobs: Some(jobs.unwrap_or_else(|| default_jobs(&manifest.config))),
        runner: runner()?,
        on_local_event: &print_local_event,
    };
    let report = launch(&dir, &mut manifest, executor.as_ref(), &selected, &options)?;
    finish_launch(&dir, &manifest, &report, dry_run)
}

fn cmd_pipeline(file: &Path, profile: Option<&str>, args: &LaunchArgs) -> Result<ExitCode> {
    let pipeline = Pipeline::load_profile(file, profile)?;
    let workdir = std::env::current_dir().context("cannot read the current directory")?;
    let local = choose_executor(args.executor.unwrap_or(pipeline.executor), args.dry_run)?.kind()
        == ExecutorKind::Local;
    let live = (local && !args.dry_run).then(LiveView::start);
    let on_stage = |name: &str, dir: &Path, tasks: usize| {
        eprintln!(
            "hkd-grid: stage `{name}`: {tasks} tasks -> {}",
            dir.display()
        );
        if let Some(live) = &live {
            live.watch(Some(name), dir);
        }
    };
    let find = |name, sub: Option<&str>| BinaryInfo::find(name, sub);
    let options = PipelineOptions {
        grids_root: args.grids_dir.clone(),
        executor: args.executor,
        after: args
            .after
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        workdir,
        launch: LaunchOptions {
            dry_run: args.dry_run,
            dependency: None,
            jobs: args.jobs,
            runner: runner()?,
            on_local_event: &print_local_event,
        },
        on_stage: &on_stage,
        find_binary: &find,
    };
    dependency(&options.after)?;
    let run = run_pipeline(&pipeline, &options);
    drop(live);
    let run = run?;
    eprintln!("hkd-grid: executor: {}", run.executor.reason());
    for stage in &run.record.stages {
        if !stage.job_ids.is_empty() {
            eprintln!(
                "hkd-grid: stage `{}`: jobs {}{}",
                stage.name,
                stage.job_ids.join(","),
                if stage.after.is_empty() {
                    String::new()
                } else {
                    format!(" (after {})", stage.after.join(", "))
                }
            );
        }
    }
    eprintln!(
        "hkd-grid: pipeline `{}` {} -> {}; watch it with: hkd-grid status {}",
        run.record.name,
        if args.dry_run {
            "written (dry run)"
        } else if run.executor.kind() == ExecutorKind::Slurm {
            "submitted"
        } else {
            "finished"
        },
        run.dir.display(),
        run.dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn cmd_exec(dir: &Path, index: usize, requeue_on_checkpoint: bool) -> Result<ExitCode> {
    let dir = GridDir::open(dir)?;
    let manifest = dir.read_manifest()?;
    let outcome = run_task(
        &dir,
        &manifest,
        index,
        RunOptions {
            forward_signals: true,
            requeue_on_checkpoint,
        },
    )?;
    eprintln!(
        "hkd-grid: task {index} ({}) exit {} after {:.1} s; log: {}",
        outcome.action.as_str(),
        outcome.exit_code,
        outcome.seconds,
        dir.log_path(index).display()
    );
    Ok(ExitCode::from(outcome.exit_code.clamp(0, 255) as u8))
}
