//! Test helpers: fake hkd binaries (`fake.rs`, shared with hkd-grid's tests) and
//! fabricated run directories.
#![allow(dead_code, unused_imports)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hkd_rundir::{BestRecord, RunConfig, RunDir, RunSpec, RunState, TeacherSpec};
use hkd_slurm::{BinaryInfo, BinaryName, GridConfig, GridDir, Manifest};

mod fake;
pub use fake::Fake;

/// A fake hkd-train and its [`BinaryInfo`] (its flags are hkd-train's own, in-process).
pub fn fake_train(root: &Path, body: &str) -> (Fake, BinaryInfo) {
    let fake = Fake::new(root, "hkd-train", body);
    let info = BinaryInfo::at(BinaryName::Train, &fake.path, None);
    (fake, info)
}

/// The specification of a run: the defaults, with these settings.
pub fn spec(student: &str, lambda: f64, iter: u32, epochs: u32) -> RunSpec {
    let mut spec = RunSpec {
        student: student.into(),
        iter,
        ..RunSpec::default()
    };
    spec.loss.as_hkd_mut().unwrap().lambda = lambda;
    spec.training.epochs = epochs;
    spec
}

/// The resolved config of a run, as hkd-train would write it.
pub fn run_config(
    teacher: TeacherSpec,
    student: &str,
    lambda: f64,
    iter: u32,
    epochs: u32,
) -> RunConfig {
    RunConfig::new(spec(student, lambda, iter, epochs), teacher, 10, "0", "cpu")
}

/// A safetensors file without tensors, its metadata naming `arch` (as hkd writes it).
pub fn empty_safetensors(arch: &str) -> Vec<u8> {
    let header = format!("{{\"__metadata__\":{{\"arch\":\"{arch}\"}}}}");
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes
}

/// Writes a run: `config.toml`, and `last.json` with `epochs_done` (finished when equal
/// to the config's epochs), and `best.json` with `val_acc` and a `best.safetensors`
/// (without tensors) once an epoch is done.
pub fn write_run(run: &RunDir, config: &RunConfig, epochs_done: Option<u32>, val_acc: f64) {
    run.create().unwrap();
    run.write_config(config).unwrap();
    if let Some(done) = epochs_done {
        let epochs = config.spec.training.epochs;
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
            run.write(
                RunDir::BEST_WEIGHTS,
                &empty_safetensors(&config.spec.student),
            )
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
