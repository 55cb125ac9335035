//! Test helpers: fake hkd binaries (shell scripts that print clap-like help and record
//! their argv) and fabricated run directories.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hkd_rundir::{
    BestRecord, DataSettings, DistilFn, DistillationSettings, KlReduction, OptimizerSettings,
    RunConfig, RunDir, RunState, SchedulerKind, TeacherSpec,
};
use hkd_slurm::{BinaryInfo, BinaryName, GridConfig, GridDir, Manifest};

/// clap's long help of a binary with hkd-train's grid-relevant flags and defaults.
pub const TRAIN_HELP: &str = "\
Train one hkd run

Usage: hkd-train [OPTIONS] [COMMAND]

Commands:
  models  List the architectures
  flags   Print the long names of the training flags
  help    Print this message or the help of the given subcommand(s)

Options:
      --config <FILE>
          TOML file with any of the settings below

      --out <DIR>
          Master output directory

          [default: runs]

      --data <DIR>
          Dataset directory

          [default: data]

      --teacher <TEACHER>
          Soft labels: baseline, human, a run directory or best:<dir>

          [default: human]

      --student <ARCH>
          [default: resnet8]

      --seed <SEED>
          [default: 0]

      --iter <ITER>
          [default: 0]

      --lambda <LAMBDA>
          [default: 0.5]

      --gamma <GAMMA>
          [default: 0]

      --temperature-teacher <T>
          [default: 1]

      --temperature-human <T>
          [default: 1]

      --distil-fn <KL|CE>
          [default: KL]

      --epochs <EPOCHS>
          [default: 500]

      --threads <N>
          CPU threads [default: all cores]

      --resume
          Continue the run from its last checkpoint

      --overwrite
          Delete an existing run and start again

  -h, --help
          Print help (see a summary with '-h')

  -V, --version
          Print version
";

/// A fake executable in `dir/bin/<name>`: `--help` prints `help`; otherwise it appends
/// its arguments (NUL-separated, one call per file) under `dir/calls/` and runs `body`
/// (bash, with the arguments in "$@").
pub struct Fake {
    pub root: PathBuf,
    pub path: PathBuf,
}

impl Fake {
    pub fn new(root: &Path, name: &str, help: &str, body: &str) -> Fake {
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(root.join("calls")).unwrap();
        let path = bin.join(name);
        let calls = root.join("calls");
        let script = format!(
            "#!/bin/bash\nif [ \"${{1:-}}\" = --help ]; then cat <<'HELP_EOF'\n{help}HELP_EOF\nexit 0; fi\n\
             f={calls}/call-$(date +%s%N)-$$\nprintf '%s\\0' \"$@\" > \"$f.tmp\" && mv \"$f.tmp\" \"$f\"\n{body}\n",
            calls = shlex::try_quote(&calls.to_string_lossy()).unwrap(),
        );
        std::fs::write(&path, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        Fake {
            root: root.to_path_buf(),
            path,
        }
    }

    /// Every recorded call's argv, in call order.
    pub fn calls(&self) -> Vec<Vec<String>> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.root.join("calls"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.to_string_lossy().ends_with(".tmp"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|f| {
                let bytes = std::fs::read(f).unwrap();
                let text = String::from_utf8(bytes).unwrap();
                text.split('\0')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .collect()
    }
}

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
