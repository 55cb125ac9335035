//! Rendering a 10,000-task grid: expansion, `tasks.txt`, sbatch scripts (array and
//! multiprog), `manifest.json`, and the whole dry run written to disk.
//!
//! `cargo run --release -p hkd-slurm --example render_bench` (part of `just bench`)
//! prints the median of 7 rounds per step.

use std::path::{Path, PathBuf};
use std::time::Instant;

use hkd_slurm::config::JobMode;
use hkd_slurm::{
    BinaryInfo, BinaryName, GridConfig, GridDir, LaunchOptions, LocalEvent, RenderContext,
    SlurmExecutor, check_tasks, expand, launch, prepare, render_jobs, tasks_txt,
};

const CONFIG: &str = r#"
name = "bench"
binary = "hkd-train"
[grid]
out = "/scratch/hkd/runs"
data = "/scratch/hkd/data/cifar10h"
teacher = "human"
student = "resnet8"
epochs = 150
threads = 2
lambda = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
gamma = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
distil-fn = ["KL", "CE"]
temperature-human = [1.0, 2.0, 4.0, 8.0, 16.0]
iter = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
[slurm]
time = "04:00:00"
cpus_per_task = 2
mem = "4G"
max_concurrent = 200
signal_before_timeout = 120
requeue = true
max_array_size = 10001
tasks_per_job = 50
"#;

/// hkd-train at a made-up path: its flags are known in-process, nothing is run.
fn binary() -> BinaryInfo {
    BinaryInfo::at(BinaryName::Train, Path::new("/opt/hkd/bin/hkd-train"), None)
}

fn median_ms(mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[3]
}

fn quiet(_: LocalEvent<'_>) {}

fn row(label: &str, ms: f64, note: &str) {
    println!("  {label:<30} {ms:8.2} ms{note}");
}

fn main() {
    let path = Path::new("bench.toml");
    let config = GridConfig::from_toml_str(CONFIG, path).expect("bench config");
    let bin = binary();
    let tasks = expand(&config, &bin, path).expect("expand");
    assert_eq!(tasks.len(), 10_000);
    let indices: Vec<usize> = (0..tasks.len()).collect();
    println!("10,000-task grid (hkd-train, 5 axes), median of 7 rounds:");

    let t = median_ms(|| {
        std::hint::black_box(expand(&config, &bin, path).unwrap());
    });
    row("expand", t, "");

    // every task parsed by hkd-train's own command line, in-process
    let workdir = Path::new("/scratch/hkd");
    let t = median_ms(|| {
        check_tasks(&tasks, &bin, workdir, path).unwrap();
    });
    row("check every task", t, "");

    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = GridDir::create(tmp.path(), "bench").unwrap();
    let manifest = prepare(config.clone(), path, bin.clone(), &dir, tmp.path()).unwrap();
    let t = median_ms(|| {
        std::hint::black_box(tasks_txt(&manifest));
    });
    row("tasks.txt (quoting)", t, "");

    let runner = PathBuf::from("/opt/hkd/bin/hkd-grid");
    for mode in [JobMode::Array, JobMode::Multiprog] {
        let mut slurm = config.slurm.clone();
        slurm.mode = mode;
        let ctx = RenderContext {
            name: "bench",
            slurm: &slurm,
            grid_dir: dir.path(),
            workdir: tmp.path(),
            runner: &runner,
            submission: 0,
            max_array_size: 10_001,
        };
        let jobs = render_jobs(&ctx, &indices).len();
        let t = median_ms(|| {
            std::hint::black_box(render_jobs(&ctx, &indices));
        });
        row(&format!("render {mode} ({jobs} jobs)"), t, "");
    }

    let t = median_ms(|| {
        std::hint::black_box(serde_json::to_string_pretty(&manifest).unwrap());
    });
    row("manifest.json", t, "");

    let executor = SlurmExecutor::new("bench");
    let options = LaunchOptions {
        dry_run: true,
        dependency: None,
        jobs: None,
        runner: runner.clone(),
        on_local_event: &quiet,
    };
    for mode in [JobMode::Array, JobMode::Multiprog] {
        let mut cfg = config.clone();
        cfg.slurm.mode = mode;
        let t = median_ms(|| {
            let dir = GridDir::create(tmp.path(), "bench").unwrap();
            let mut manifest = prepare(cfg.clone(), path, bin.clone(), &dir, tmp.path()).unwrap();
            launch(&dir, &mut manifest, &executor, &indices, &options).unwrap();
        });
        row(
            &format!("whole dry run, {mode}"),
            t,
            "  (expand; check every task; write tasks.txt, manifest.json, scripts)",
        );
    }
}
