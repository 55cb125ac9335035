//! [`TrainOptions`]: every setting of one run as the user gives it (flags of `hkd-train`,
//! or fields of a `--config run.toml`), with the original project's defaults.

use std::path::{Path, PathBuf};

use hkd_rundir::{DistilFn, KlReduction, SchedulerKind};
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Result, TrainError};

/// Every setting of one training run, before resolution (teacher lookup, dataset hash,
/// device). Field names are the long flag names of `hkd-train` with `_` for `-`; a
/// `--config run.toml` holds any subset of them, and missing fields take the defaults
/// below, which equal the original `train_student.py`'s where it had the setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainOptions {
    /// Master output directory: the run goes to `<out>/<teacher-slug>/<student>/<run-name>/`.
    pub out: PathBuf,
    /// Dataset directory (any layout `hkd-datasets` reads).
    pub data: PathBuf,
    /// Split trained on (the original: CIFAR-10H's 10k images).
    pub train_split: String,
    /// Split validated on after every epoch (the original: the 50k CIFAR-10 train images).
    pub val_split: String,
    /// `baseline` | `human` | a teacher run directory | a weights file | `best:<dir>`.
    pub teacher: String,
    /// Architecture of a teacher given as a weights file (read from the file's metadata or
    /// its run directory when absent).
    pub teacher_arch: Option<String>,
    /// Architecture trained.
    pub student: String,
    /// Seed of weights, shuffling, augmentation and Shake-Shake coefficients.
    pub seed: u64,
    /// Repeat index of the configuration; also varies the random streams (see
    /// [`TrainOptions::stream_seed`]).
    pub iter: u32,
    /// λ: weight of the soft part of the loss.
    pub lambda: f64,
    /// γ: share of the soft part that comes from the human labels (student mode).
    pub gamma: f64,
    /// Temperature of the teacher term.
    pub temperature_teacher: f64,
    /// Temperature of the human term.
    pub temperature_human: f64,
    /// Divergence of the soft terms: `KL` (the original's `KD`) or `CE`.
    #[serde(deserialize_with = "deserialize_distil_fn")]
    pub distil_fn: DistilFn,
    /// Reduction of KL: `elementwise_mean` (the original's `nn.KLDivLoss()`) or `batchmean`.
    pub kl_reduction: KlReduction,
    /// ε of the human label smoothing `(h + ε) / (1 + C·ε)`.
    pub human_smoothing: f64,
    /// Epochs to train.
    pub epochs: u32,
    /// Training batch size.
    pub batch_size: usize,
    /// Validation batch size (does not change any result).
    pub eval_batch_size: usize,
    /// Initial learning rate.
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// SGD weight decay (L2 added to the gradient).
    pub weight_decay: f64,
    /// Learning-rate schedule.
    pub scheduler: SchedulerKind,
    /// `plateau`: factor applied to the learning rate on a plateau.
    pub plateau_factor: f64,
    /// `plateau`: epochs without improvement of the validation accuracy tolerated.
    pub plateau_patience: u32,
    /// `step`: fractions of the epochs after which the learning rate is multiplied by
    /// `step_gamma`.
    pub step_milestones: Vec<f64>,
    /// `step`: factor at each milestone.
    pub step_gamma: f64,
    /// `cosine`: learning rate reached at the end of the run.
    pub cosine_min_lr: f64,
    /// `cpu`, `cuda:N` or `auto`.
    pub device: String,
    /// CPU threads (default: all cores).
    pub threads: Option<usize>,
    /// Train at most this many batches per epoch (smoke tests and debugging).
    pub max_batches: Option<usize>,
    /// Continue the run from its `last.*` files.
    pub resume: bool,
    /// Delete an existing run at the same place and start again.
    pub overwrite: bool,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            out: PathBuf::from("runs"),
            data: PathBuf::from("data"),
            train_split: "train".into(),
            val_split: "val".into(),
            teacher: "human".into(),
            teacher_arch: None,
            student: "resnet8".into(),
            seed: 0,
            iter: 0,
            lambda: 0.5,
            gamma: 0.0,
            temperature_teacher: 1.0,
            temperature_human: 1.0,
            distil_fn: DistilFn::KL,
            kl_reduction: KlReduction::ElementwiseMean,
            human_smoothing: 0.02,
            epochs: 500,
            batch_size: 128,
            eval_batch_size: 512,
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 1e-4,
            scheduler: SchedulerKind::Plateau,
            plateau_factor: 0.9,
            plateau_patience: 5,
            step_milestones: vec![0.5, 0.75],
            step_gamma: 0.1,
            cosine_min_lr: 0.0,
            device: "auto".into(),
            threads: None,
            max_batches: None,
            resume: false,
            overwrite: false,
        }
    }
}

impl TrainOptions {
    /// Reads a `--config` TOML file: any subset of the fields, the rest default.
    pub fn from_toml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::ConfigFile {
            path: path.to_path_buf(),
            reason: format!("cannot read it: {e}"),
        })?;
        Self::from_toml_str(&text).map_err(|reason| TrainError::ConfigFile {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses the text of a `--config` file; the error is a readable message.
    pub fn from_toml_str(text: &str) -> std::result::Result<Self, String> {
        toml::from_str(text).map_err(|e| {
            format!(
                "{}; the fields are the long flags of hkd-train with `_` for `-` (see docs/training.md)",
                e.to_string().trim_end()
            )
        })
    }

    /// The seed of every random stream of the run: `seed` when `iter` is 0, else a value
    /// that differs per repeat, so that repeats of one configuration differ without a
    /// seed axis in the grid.
    pub fn stream_seed(&self) -> u64 {
        stream_seed(self.seed, self.iter)
    }

    /// Checks every number, name and combination that can be checked without touching
    /// the disk.
    pub fn validate(&self) -> Result<()> {
        let unit = |field: &'static str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(TrainError::invalid(field, v, "a number in [0, 1]"))
            }
        };
        let positive = |field: &'static str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(TrainError::invalid(field, v, "a finite number > 0"))
            }
        };
        let non_negative = |field: &'static str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(TrainError::invalid(field, v, "a finite number >= 0"))
            }
        };
        unit("lambda", self.lambda)?;
        unit("gamma", self.gamma)?;
        positive("temperature_teacher", self.temperature_teacher)?;
        positive("temperature_human", self.temperature_human)?;
        non_negative("human_smoothing", self.human_smoothing)?;
        positive("lr", self.lr)?;
        non_negative("momentum", self.momentum)?;
        non_negative("weight_decay", self.weight_decay)?;
        if self.epochs == 0 {
            return Err(TrainError::invalid("epochs", 0, "at least 1"));
        }
        if self.batch_size == 0 {
            return Err(TrainError::invalid("batch_size", 0, "at least 1"));
        }
        if self.eval_batch_size == 0 {
            return Err(TrainError::invalid("eval_batch_size", 0, "at least 1"));
        }
        if self.max_batches == Some(0) {
            return Err(TrainError::invalid(
                "max_batches",
                0,
                "at least 1 (or leave it out)",
            ));
        }
        if self.threads == Some(0) {
            return Err(TrainError::invalid(
                "threads",
                0,
                "at least 1 (or leave it out for all cores)",
            ));
        }
        if !(self.plateau_factor > 0.0 && self.plateau_factor < 1.0) {
            return Err(TrainError::invalid(
                "plateau_factor",
                self.plateau_factor,
                "a number in (0, 1)",
            ));
        }
        positive("step_gamma", self.step_gamma)?;
        if let Some(m) = self
            .step_milestones
            .iter()
            .find(|m| !(**m > 0.0 && **m <= 1.0))
        {
            return Err(TrainError::invalid(
                "step_milestones",
                m,
                "fractions of the epochs in (0, 1], e.g. 0.5,0.75",
            ));
        }
        if self.step_milestones.windows(2).any(|w| w[0] > w[1]) {
            return Err(TrainError::invalid(
                "step_milestones",
                format!("{:?}", self.step_milestones),
                "fractions in increasing order",
            ));
        }
        non_negative("cosine_min_lr", self.cosine_min_lr)?;
        if self.cosine_min_lr > self.lr {
            return Err(TrainError::invalid(
                "cosine_min_lr",
                self.cosine_min_lr,
                format!("at most the initial lr {}", self.lr),
            ));
        }
        if self.resume && self.overwrite {
            return Err(TrainError::invalid(
                "resume",
                "both --resume and --overwrite",
                "at most one of them: --resume continues a run, --overwrite deletes it",
            ));
        }
        if self.teacher.trim().is_empty() {
            return Err(TrainError::invalid(
                "teacher",
                "an empty value",
                "baseline, human, a teacher run directory, a weights file or best:<dir>",
            ));
        }
        hkd_arch::ArchSpec::parse(&self.student).map_err(|e| TrainError::InvalidOption {
            field: "student",
            found: self.student.clone(),
            expected: format!("an architecture name ({e}); `hkd-train models` lists them"),
        })?;
        if let Some(arch) = &self.teacher_arch {
            hkd_arch::ArchSpec::parse(arch).map_err(|e| TrainError::InvalidOption {
                field: "teacher_arch",
                found: arch.clone(),
                expected: format!("an architecture name ({e}); `hkd-train models` lists them"),
            })?;
        }
        for (field, split) in [
            ("train_split", &self.train_split),
            ("val_split", &self.val_split),
        ] {
            hkd_datasets::check_split_name(split)
                .map_err(|e| TrainError::invalid(field, split, e.to_string()))?;
        }
        Ok(())
    }
}

/// See [`TrainOptions::stream_seed`]: `seed` for repeat 0, else `seed` mixed with the
/// repeat index by a SplitMix64 step.
pub fn stream_seed(seed: u64, iter: u32) -> u64 {
    if iter == 0 {
        return seed;
    }
    let mut z = seed ^ (u64::from(iter)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Parses a divergence name: `KL`, `CE`, or the original's `KD` (= `KL`); case-insensitive.
pub fn parse_distil_fn(text: &str) -> std::result::Result<DistilFn, String> {
    match text.to_ascii_uppercase().as_str() {
        "KL" | "KD" => Ok(DistilFn::KL),
        "CE" => Ok(DistilFn::CE),
        _ => Err(format!(
            "`{text}` is not a divergence; expected KL (or the original's KD) or CE"
        )),
    }
}

/// Parses a KL reduction: `batchmean` or `elementwise_mean` (also `mean`, PyTorch's name).
pub fn parse_kl_reduction(text: &str) -> std::result::Result<KlReduction, String> {
    match text.to_ascii_lowercase().as_str() {
        "batchmean" => Ok(KlReduction::Batchmean),
        "elementwise_mean" | "mean" => Ok(KlReduction::ElementwiseMean),
        _ => Err(format!(
            "`{text}` is not a KL reduction; expected batchmean (the true KL) or elementwise_mean (the original's)"
        )),
    }
}

/// Parses a scheduler name: `plateau`, `step` or `cosine`.
pub fn parse_scheduler(text: &str) -> std::result::Result<SchedulerKind, String> {
    match text.to_ascii_lowercase().as_str() {
        "plateau" => Ok(SchedulerKind::Plateau),
        "step" => Ok(SchedulerKind::Step),
        "cosine" => Ok(SchedulerKind::Cosine),
        _ => Err(format!(
            "`{text}` is not a scheduler; expected plateau, step or cosine"
        )),
    }
}

fn deserialize_distil_fn<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<DistilFn, D::Error> {
    let text = String::deserialize(d)?;
    parse_distil_fn(&text).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file_overrides_defaults_and_rejects_unknown_fields() {
        let o = TrainOptions::from_toml_str(
            "lambda = 0.9\ndistil_fn = \"KD\"\nstudent = \"resnet20\"\n",
        )
        .unwrap();
        assert_eq!(o.lambda, 0.9);
        assert_eq!(o.distil_fn, DistilFn::KL);
        assert_eq!(o.student, "resnet20");
        assert_eq!(o.epochs, 500);
        let err = TrainOptions::from_toml_str("lamda = 0.9\n").unwrap_err();
        assert!(err.contains("lamda"), "{err}");
    }

    #[test]
    fn validation_names_the_field() {
        let o = TrainOptions {
            lambda: 1.5,
            ..TrainOptions::default()
        };
        let msg = o.validate().unwrap_err().to_string();
        assert!(msg.contains("lambda") && msg.contains("1.5"), "{msg}");
        let o = TrainOptions {
            student: "resnet7x".into(),
            ..TrainOptions::default()
        };
        let msg = o.validate().unwrap_err().to_string();
        assert!(msg.contains("student") && msg.contains("resnet7x"), "{msg}");
        assert!(TrainOptions::default().validate().is_ok());
    }

    #[test]
    fn stream_seed_is_the_seed_for_the_first_repeat_and_differs_per_repeat() {
        assert_eq!(stream_seed(7, 0), 7);
        let seeds: std::collections::HashSet<u64> = (0..100).map(|i| stream_seed(7, i)).collect();
        assert_eq!(seeds.len(), 100);
    }
}
