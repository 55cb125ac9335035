//! Rendering sbatch jobs for the three modes.
//!
//! Every job runs its tasks through the task runner, `hkd-grid exec <grid dir> <index>`,
//! which reads the task's arguments from `manifest.json` and starts the binary without a
//! shell. So the only values the scripts carry are two absolute paths (single-quoted), the
//! work directory (single-quoted), integers, and `#SBATCH` option values checked to be
//! single tokens ([`crate::quote::directive_problem`]). Grid values never reach a shell.
//!
//! - `array`: one script per chunk of at most `max_array_size` tasks,
//!   `#SBATCH --array=<indices>%<max_concurrent>`; the batch shell `exec`s the runner, so
//!   `--signal=B:USR1@N` reaches it and it forwards the signal to the binary.
//! - `multiprog`: one script per `tasks_per_job` tasks; `srun --multi-prog job-S-J.conf`
//!   runs `./task.sh <index>` on each rank; `--signal=USR1@N` reaches the steps.
//! - `wrap`: `sbatch <options> --wrap '<cd; setup; exec runner>'` per task.

use std::fmt::Write as _;
use std::path::Path;

use crate::config::{JobMode, SlurmSettings};
use crate::quote::quote;

/// Where the rendered jobs will run.
#[derive(Debug, Clone)]
pub struct RenderContext<'a> {
    /// Grid name (validated: letters, digits, `._-`).
    pub name: &'a str,
    pub slurm: &'a SlurmSettings,
    /// Absolute grid directory.
    pub grid_dir: &'a Path,
    /// Absolute work directory of the tasks.
    pub workdir: &'a Path,
    /// Absolute path of the `hkd-grid` executable that runs tasks.
    pub runner: &'a Path,
    /// Submission number (0 = first), part of the file names.
    pub submission: usize,
    /// Number of array indices the cluster accepts (`MaxArraySize`); indices are
    /// `0..max_array_size`.
    pub max_array_size: usize,
}

/// A file the job needs besides its script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraFile {
    pub name: String,
    pub contents: String,
    pub executable: bool,
}

/// One rendered Slurm job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedJob {
    /// Script file name in the grid directory and its contents (`None` in wrap mode).
    pub script: Option<(String, String)>,
    pub extra_files: Vec<ExtraFile>,
    /// Arguments for `sbatch` besides `--parsable` and `--dependency`.
    pub sbatch_args: Vec<String>,
    pub tasks: Vec<usize>,
    pub array_offset: Option<usize>,
}

/// File name of the script shared by multiprog ranks.
pub const TASK_SH: &str = "task.sh";

/// Renders the jobs that run `tasks` (grid task indices, ascending).
pub fn render_jobs(ctx: &RenderContext<'_>, tasks: &[usize]) -> Vec<RenderedJob> {
    match ctx.slurm.mode {
        JobMode::Array => render_array(ctx, tasks),
        JobMode::Multiprog => render_multiprog(ctx, tasks),
        JobMode::Wrap => tasks.iter().map(|&t| render_wrap(ctx, t)).collect(),
    }
}

/// The sbatch options of the config, as `--opt=value` words (validated tokens).
fn resource_options(
    ctx: &RenderContext<'_>,
    ntasks: usize,
    output: &str,
    batch_signal: bool,
) -> Vec<String> {
    let s = ctx.slurm;
    let mut o = vec![
        format!("--job-name={}", ctx.name),
        format!("--output={output}"),
        format!("--ntasks={ntasks}"),
    ];
    if let Some(c) = s.cpus_per_task {
        o.push(format!("--cpus-per-task={c}"));
    }
    if let Some(t) = &s.time {
        o.push(format!("--time={t}"));
    }
    if let Some(m) = &s.mem {
        o.push(format!("--mem={m}"));
    }
    if let Some(p) = &s.partition {
        o.push(format!("--partition={p}"));
    }
    if let Some(a) = &s.account {
        o.push(format!("--account={a}"));
    }
    if let Some(q) = &s.qos {
        o.push(format!("--qos={q}"));
    }
    if let Some(c) = &s.constraint {
        o.push(format!("--constraint={c}"));
    }
    if s.gpus > 0 {
        o.push(format!("--gres=gpu:{}", s.gpus));
    }
    if let Some(n) = s.signal_before_timeout {
        let target = if batch_signal { "B:" } else { "" };
        o.push(format!("--signal={target}USR1@{n}"));
    }
    if s.requeue {
        o.push("--requeue".into());
    }
    o.extend(s.extra.iter().cloned());
    o
}

fn header(ctx: &RenderContext<'_>, options: &[String], tasks: &[usize]) -> String {
    let mut script = String::from("#!/bin/bash\n");
    for opt in options {
        let _ = writeln!(script, "#SBATCH {opt}");
    }
    let _ = writeln!(
        script,
        "# hkd-grid {}: grid {}, submission {}, tasks {}",
        env!("CARGO_PKG_VERSION"),
        ctx.name,
        ctx.submission,
        compress_indices(tasks)
    );
    script.push_str("set -u\n");
    let _ = writeln!(
        script,
        "cd -- {} || exit 1",
        quote(&ctx.workdir.to_string_lossy())
    );
    for line in &ctx.slurm.setup {
        script.push_str(line);
        script.push('\n');
    }
    script
}

fn runner_command(ctx: &RenderContext<'_>, index_expr: &str, self_requeue: bool) -> String {
    format!(
        "exec {} exec {}{} {index_expr}",
        quote(&ctx.runner.to_string_lossy()),
        if self_requeue {
            "--requeue-on-checkpoint "
        } else {
            ""
        },
        quote(&ctx.grid_dir.to_string_lossy()),
    )
}

fn render_array(ctx: &RenderContext<'_>, tasks: &[usize]) -> Vec<RenderedJob> {
    let chunk = ctx.max_array_size.max(1);
    let mut jobs = Vec::new();
    let mut start = 0;
    while start < tasks.len() {
        let offset = (tasks[start] / chunk) * chunk;
        let end = tasks[start..]
            .iter()
            .position(|&t| t >= offset + chunk)
            .map(|p| start + p)
            .unwrap_or(tasks.len());
        let mine = &tasks[start..end];
        let indices: Vec<usize> = mine.iter().map(|t| t - offset).collect();
        let mut spec = compress_indices(&indices);
        if let Some(k) = ctx.slurm.max_concurrent {
            let _ = write!(spec, "%{k}");
        }
        let mut options = resource_options(ctx, 1, "logs/slurm-%A_%a.out", true);
        options.insert(1, format!("--array={spec}"));
        let mut script = header(ctx, &options, mine);
        let index_expr = if offset == 0 {
            "\"$SLURM_ARRAY_TASK_ID\"".to_string()
        } else {
            format!("\"$((SLURM_ARRAY_TASK_ID + {offset}))\"")
        };
        script.push_str(&runner_command(ctx, &index_expr, ctx.slurm.requeue));
        script.push('\n');
        let name = format!("job-{}-{}.sh", ctx.submission, jobs.len());
        jobs.push(RenderedJob {
            script: Some((name.clone(), script)),
            extra_files: vec![],
            sbatch_args: vec![name],
            tasks: mine.to_vec(),
            array_offset: Some(offset),
        });
        start = end;
    }
    jobs
}

fn task_sh(ctx: &RenderContext<'_>) -> ExtraFile {
    ExtraFile {
        name: TASK_SH.into(),
        contents: format!(
            "#!/bin/bash\n# one multiprog rank: run grid task $1\n{}\n",
            runner_command(ctx, "\"$1\"", false)
        ),
        executable: true,
    }
}

fn render_multiprog(ctx: &RenderContext<'_>, tasks: &[usize]) -> Vec<RenderedJob> {
    let per_job = ctx.slurm.tasks_per_job();
    tasks
        .chunks(per_job)
        .enumerate()
        .map(|(j, mine)| {
            let options = resource_options(ctx, mine.len(), "logs/slurm-%j.out", false);
            let conf_name = format!("job-{}-{j}.conf", ctx.submission);
            let mut conf = String::new();
            for (rank, t) in mine.iter().enumerate() {
                let _ = writeln!(conf, "{rank} ./{TASK_SH} {t}");
            }
            let mut script = header(ctx, &options, mine);
            let _ = writeln!(script, "cd -- {} || exit 1", quote(&ctx.grid_dir.to_string_lossy()));
            let _ = writeln!(script, "srun --kill-on-bad-exit=0 --multi-prog {conf_name}");
            script.push_str("rc=$?\n");
            if ctx.slurm.requeue {
                let _ = writeln!(
                    script,
                    "# a task checkpointed on the USR1 before the time limit: run the job again, finished tasks are skipped\n\
                     if [ \"$rc\" -eq {} ]; then scontrol requeue \"$SLURM_JOB_ID\"; fi",
                    hkd_rundir::EXIT_CHECKPOINTED
                );
            }
            script.push_str("exit \"$rc\"\n");
            let name = format!("job-{}-{j}.sh", ctx.submission);
            RenderedJob {
                script: Some((name.clone(), script)),
                extra_files: vec![
                    task_sh(ctx),
                    ExtraFile {
                        name: conf_name,
                        contents: conf,
                        executable: false,
                    },
                ],
                sbatch_args: vec![name],
                tasks: mine.to_vec(),
                array_offset: None,
            }
        })
        .collect()
}

fn render_wrap(ctx: &RenderContext<'_>, task: usize) -> RenderedJob {
    let mut args = resource_options(ctx, 1, "logs/slurm-%j.out", true);
    let mut command = format!(
        "cd -- {} || exit 1\n",
        quote(&ctx.workdir.to_string_lossy())
    );
    for line in &ctx.slurm.setup {
        command.push_str(line);
        command.push('\n');
    }
    command.push_str(&runner_command(ctx, &task.to_string(), ctx.slurm.requeue));
    args.push(format!("--wrap={command}"));
    RenderedJob {
        script: None,
        extra_files: vec![],
        sbatch_args: args,
        tasks: vec![task],
        array_offset: None,
    }
}

/// `[0,1,2,5,7,8]` → `"0-2,5,7-8"` (sorted input; the form `--array` takes).
pub fn compress_indices(indices: &[usize]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < indices.len() {
        let mut j = i;
        while j + 1 < indices.len() && indices[j + 1] == indices[j] + 1 {
            j += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if j == i {
            let _ = write!(out, "{}", indices[i]);
        } else {
            let _ = write!(out, "{}-{}", indices[i], indices[j]);
        }
        i = j + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::IntOrString;
    use std::path::PathBuf;

    fn ctx<'a>(
        slurm: &'a SlurmSettings,
        grid: &'a Path,
        work: &'a Path,
        runner: &'a Path,
    ) -> RenderContext<'a> {
        RenderContext {
            name: "train",
            slurm,
            grid_dir: grid,
            workdir: work,
            runner,
            submission: 0,
            max_array_size: 1001,
        }
    }

    #[test]
    fn compresses_index_lists() {
        assert_eq!(compress_indices(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
        assert_eq!(compress_indices(&[3]), "3");
        assert_eq!(compress_indices(&[]), "");
    }

    #[test]
    fn array_script_has_the_directives_and_runs_the_runner() {
        let slurm = SlurmSettings {
            time: Some(IntOrString::Int(30)),
            partition: Some("cpu".into()),
            gpus: 1,
            cpus_per_task: Some(2),
            mem: Some(IntOrString::Str("4G".into())),
            max_concurrent: Some(2),
            signal_before_timeout: Some(120),
            requeue: true,
            extra: vec!["--mail-type=END".into()],
            setup: vec!["module load rust".into()],
            ..Default::default()
        };
        let grid = PathBuf::from("/g/it's here");
        let work = PathBuf::from("/w");
        let runner = PathBuf::from("/bin dir/hkd-grid");
        let jobs = render_jobs(&ctx(&slurm, &grid, &work, &runner), &[0, 1, 2, 4]);
        assert_eq!(jobs.len(), 1);
        let (name, script) = jobs[0].script.as_ref().unwrap();
        assert_eq!(name, "job-0-0.sh");
        for line in [
            "#SBATCH --array=0-2,4%2",
            "#SBATCH --job-name=train",
            "#SBATCH --output=logs/slurm-%A_%a.out",
            "#SBATCH --cpus-per-task=2",
            "#SBATCH --time=30",
            "#SBATCH --mem=4G",
            "#SBATCH --partition=cpu",
            "#SBATCH --gres=gpu:1",
            "#SBATCH --signal=B:USR1@120",
            "#SBATCH --requeue",
            "#SBATCH --mail-type=END",
            "module load rust",
            "exec '/bin dir/hkd-grid' exec --requeue-on-checkpoint \"/g/it's here\" \"$SLURM_ARRAY_TASK_ID\"",
        ] {
            assert!(
                script.lines().any(|l| l == line),
                "missing {line:?} in\n{script}"
            );
        }
        assert_eq!(jobs[0].sbatch_args, ["job-0-0.sh"]);
        assert_eq!(jobs[0].array_offset, Some(0));
    }

    #[test]
    fn big_arrays_are_split_with_offsets() {
        let slurm = SlurmSettings::default();
        let p = PathBuf::from("/x");
        let mut c = ctx(&slurm, &p, &p, &p);
        c.max_array_size = 4;
        let tasks: Vec<usize> = (0..10).collect();
        let jobs = render_jobs(&c, &tasks);
        assert_eq!(jobs.len(), 3);
        assert_eq!(jobs[1].tasks, [4, 5, 6, 7]);
        assert_eq!(jobs[1].array_offset, Some(4));
        let script = &jobs[1].script.as_ref().unwrap().1;
        assert!(script.contains("#SBATCH --array=0-3\n"), "{script}");
        assert!(
            script.contains("\"$((SLURM_ARRAY_TASK_ID + 4))\""),
            "{script}"
        );
        assert_eq!(jobs[2].tasks, [8, 9]);
        // a resubmission of scattered tasks keeps each in its chunk
        let jobs = render_jobs(&c, &[1, 6, 9]);
        assert_eq!(jobs.len(), 3);
        assert!(jobs[2].script.as_ref().unwrap().1.contains("--array=1\n"));
    }

    #[test]
    fn multiprog_packs_tasks_into_allocations() {
        let slurm = SlurmSettings {
            mode: JobMode::Multiprog,
            tasks_per_job: Some(2),
            signal_before_timeout: Some(60),
            requeue: true,
            ..Default::default()
        };
        let p = PathBuf::from("/grid dir");
        let r = PathBuf::from("/r/hkd-grid");
        let jobs = render_jobs(&ctx(&slurm, &p, &p, &r), &[0, 1, 2]);
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].tasks, [0, 1]);
        assert_eq!(jobs[1].tasks, [2]);
        let script = &jobs[0].script.as_ref().unwrap().1;
        assert!(script.contains("#SBATCH --ntasks=2\n"), "{script}");
        assert!(script.contains("#SBATCH --signal=USR1@60\n"), "{script}");
        assert!(script.contains("srun --kill-on-bad-exit=0 --multi-prog job-0-0.conf\n"));
        assert!(script.contains("scontrol requeue"));
        let conf = &jobs[1].extra_files[1];
        assert_eq!(conf.name, "job-0-1.conf");
        assert_eq!(conf.contents, "0 ./task.sh 2\n");
        let task_sh = &jobs[0].extra_files[0];
        assert!(task_sh.executable);
        assert!(
            task_sh
                .contents
                .contains("exec /r/hkd-grid exec '/grid dir' \"$1\""),
            "{}",
            task_sh.contents
        );
    }

    #[test]
    fn wrap_puts_everything_on_the_command_line() {
        let slurm = SlurmSettings {
            mode: JobMode::Wrap,
            qos: Some("short".into()),
            ..Default::default()
        };
        let p = PathBuf::from("/g");
        let jobs = render_jobs(&ctx(&slurm, &p, &p, &p), &[5]);
        assert_eq!(jobs.len(), 1);
        assert!(jobs[0].script.is_none());
        assert!(jobs[0].sbatch_args.contains(&"--qos=short".to_string()));
        let wrap = jobs[0].sbatch_args.last().unwrap();
        assert_eq!(wrap, "--wrap=cd -- /g || exit 1\nexec /g exec /g 5");
    }
}
