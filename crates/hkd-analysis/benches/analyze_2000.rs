//! Analysing a grid of 2,000 runs (200 configurations × 10 repeats, 30 epochs each, three
//! evaluation sets with attacks). Run with `cargo bench -p hkd-analysis --bench analyze_2000`.
//!
//! Prints the wall time of each phase: reading the run directories, building the tables,
//! writing CSV + Parquet + best.json + summary.md, and drawing the figures.

#[path = "../tests/suite/common/mod.rs"]
mod common;

use std::time::Instant;

use common::{Spec, write_run};
use hkd_analysis::{AnalyzeOptions, analyze, analyze_loaded, load_grid};
use hkd_rundir::{DistilFn, TeacherSpec};

fn main() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let root = dir.path();
    let t = Instant::now();
    let mut n = 0;
    for teacher in [TeacherSpec::Baseline, TeacherSpec::Human] {
        for distil in [DistilFn::Kl, DistilFn::Ce] {
            for (li, lambda) in [0.2, 0.4, 0.6, 0.8, 1.0].into_iter().enumerate() {
                for (ti, th) in [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 16.0, 20.0, 32.0, 64.0]
                    .into_iter()
                    .enumerate()
                {
                    for iter in 0..10u32 {
                        let acc = 0.7 + 0.01 * li as f64 + 0.001 * ti as f64 + 0.0005 * iter as f64;
                        let loss = 1.0 - 0.02 * li as f64 + 0.001 * iter as f64;
                        let mut spec = Spec::new(teacher.clone(), lambda, iter, acc, loss)
                            .distil(distil)
                            .eval_set("cifar10", acc, loss, 80.0 * loss, Some(loss + 0.5))
                            .eval_set("cinic", acc - 0.2, loss + 1.0, 800.0 * loss, None)
                            .eval_set("imagenet_far", acc - 0.3, loss + 1.5, 300.0 * loss, None);
                        spec.run.loss.as_hkd_mut().unwrap().temperature_human = th;
                        spec.run.training.epochs = 30;
                        write_run(root, &spec);
                        n += 1;
                    }
                }
            }
        }
    }
    println!(
        "wrote {n} run directories in {:.2} s",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let grid = load_grid(root).expect("load");
    let load_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let analysis = analyze_loaded(&grid, None).expect("tables");
    let tables_s = t.elapsed().as_secs_f64();
    println!(
        "read {} runs: {load_s:.3} s; runs table + averages ({} groups): {tables_s:.3} s",
        grid.runs.len(),
        analysis.groups.len()
    );

    let t = Instant::now();
    let opts = AnalyzeOptions {
        parquet: true,
        figures: false,
        html: false,
        ..AnalyzeOptions::new(root)
    };
    let report = analyze(&opts).expect("analyze");
    println!(
        "hkd-analyze without figures (read + tables + CSV + Parquet + best.json + summary.md): \
         {:.3} s for {} runs",
        t.elapsed().as_secs_f64(),
        report.runs
    );

    let t = Instant::now();
    let report = analyze(&AnalyzeOptions::new(root)).expect("analyze with figures");
    println!(
        "hkd-analyze with figures ({} SVG+PNG figures, incl. {} training-curve figures): {:.3} s",
        report.figures.len(),
        report.groups,
        t.elapsed().as_secs_f64()
    );
}
