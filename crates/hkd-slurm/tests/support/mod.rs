//! Test helpers: fake hkd binaries (`fake.rs`, shared with hkd-grid's tests) and
//! fabricated run directories.
#![allow(dead_code, unused_imports)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hkd_rundir::{
    BestRecord, DataSettings, DistilFn, DistillationSettings, KlReduction, OptimizerSettings,
    RunConfig, RunDir, RunState, SchedulerKind, TeacherSpec,
};
use hkd_slurm::{BinaryInfo, BinaryName, GridConfig, GridDir, Manifest};

mod fake;
pub use fake::{Fake, TRAIN_HELP};

/// A fake hkd-train and its [`BinaryInfo`] (asked through `--help`, like the real one).
pub fn fake_train(root: &Path, body: &str) -> (Fake, BinaryInfo) {
    let fake = Fake::new(root, "hkd-train", TRAIN_HELP, body);
    let info = BinaryInfo::ask(BinaryName::Train, &fake.path, None).unwrap();
    (fake, info)
}

/// The resolved config of a run, as hkd-train would write it.
pub fn run_config(
    teacher: TeacherSpec,
    student: &str,
    lambda: f64,
    iter: u32,
    epochs: u32,
) -> RunConfig {
    RunConfig {
        hkd_version: hkd_rundir::HKD_VERSION.into(),
        run_name: hkd_rundir::run_name(student, DistilFn::KL, 1.0, 1.0, lambda, 0.0, iter),
        student: student.into(),
        classes: 10,
        seed: 0,
        iter,
        teacher,
        distillation: DistillationSettings {
            lambda,
            gamma: 0.0,
            temperature_teacher: 1.0,
            temperature_human: 1.0,
            distil_fn: DistilFn::KL,
            kl_reduction: KlReduction::ElementwiseMean,
            human_smoothing: 0.02,
        },
        optimizer: OptimizerSettings {
            epochs,
            batch_size: 128,
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 1e-4,
            scheduler: SchedulerKind::Plateau,
        },
        data: DataSettings {
            dir: PathBuf::from("/data"),
            manifest_hash: "0".into(),
            train_split: "train".into(),
            val_split: "val".into(),
        },
        device: "cpu".into(),
    }
}

/// Writes a run: `config.toml`, and `last.json` with `epochs_done` (finished when equal
/// to the config's epochs), and `best.json` with `val_acc` once an epoch is done.
pub fn write_run(run: &RunDir, config: &RunConfig, epochs_done: Option<u32>, val_acc: f64) {
    run.create().unwrap();
    run.write_config(config).unwrap();
    if let Some(done) = epochs_done {
        let epochs = config.optimizer.epochs;
        run.write_state(&RunState {
            epochs_completed: done,
            batches_into_epoch: 0,
            epochs,
            finished: done == epochs,
            trainer: serde_json::Value::Null,
        })
        .unwrap();
        if done > 0 {
            run.write_best(&BestRecord {
                epoch: done,
                val_acc,
                val_loss: 1.0,
            })
            .unwrap();
        }
    }
}

/// Parses config text, prepares a grid directory under `root` with `binary`.
pub fn prepared(root: &Path, config_text: &str, binary: BinaryInfo) -> (GridDir, Manifest) {
    let config_path = root.join("grid.toml");
    std::fs::write(&config_path, config_text).unwrap();
    let config = GridConfig::load(&config_path).unwrap();
    let dir = GridDir::create(&root.join("grids"), config.name()).unwrap();
    let manifest = hkd_slurm::prepare(config, &config_path, binary, &dir, root).unwrap();
    (dir, manifest)
}

/// Task params as a sorted map (for assertions).
pub fn argv_map(argv: &[String]) -> BTreeMap<String, String> {
    argv.iter()
        .filter_map(|a| a.strip_prefix("--"))
        .map(|a| match a.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (a.to_string(), String::new()),
        })
        .collect()
}
