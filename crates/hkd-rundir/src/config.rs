use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Every resolved setting of one run, as written to `config.toml`.
///
/// The trainer writes it before the first epoch; the evaluator reads the architecture from
/// it; the analysis reads the hyperparameters from it (never from the directory name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// hkd version that trained the run.
    pub hkd_version: String,
    /// The directory name of the run (see [`crate::run_name`]).
    pub run_name: String,
    /// Architecture of the trained network (registry name, e.g. `resnet8`).
    pub student: String,
    /// Number of classes of the network's output.
    pub classes: usize,
    /// Seed of weights, shuffling and augmentation.
    pub seed: u64,
    /// Repeat index of this configuration (the original's `iter`).
    pub iter: u32,
    /// Where the soft labels come from.
    pub teacher: TeacherSpec,
    pub distillation: DistillationSettings,
    pub optimizer: OptimizerSettings,
    pub data: DataSettings,
    /// Device the run was trained on (`cpu`, `cuda:0`).
    pub device: String,
}

impl RunConfig {
    /// The training mode implied by the teacher.
    pub fn mode(&self) -> Mode {
        self.teacher.mode()
    }
}

/// Where the soft labels of a run come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TeacherSpec {
    /// No soft labels: hard-label cross-entropy only.
    Baseline,
    /// Human label distributions (CIFAR-10H) as the soft target.
    Human,
    /// A network trained by hkd: its run directory and its weights.
    Run {
        dir: PathBuf,
        arch: String,
        /// Readable name used as the teacher directory level of the student runs.
        slug: String,
    },
    /// A bare checkpoint (safetensors or PyTorch) with its architecture given by the user.
    Checkpoint {
        path: PathBuf,
        arch: String,
        slug: String,
    },
}

impl TeacherSpec {
    pub fn mode(&self) -> Mode {
        match self {
            TeacherSpec::Baseline => Mode::Baseline,
            TeacherSpec::Human => Mode::Human,
            TeacherSpec::Run { .. } | TeacherSpec::Checkpoint { .. } => Mode::Student,
        }
    }

    /// The teacher level of the run directory: `baseline`, `human` or the teacher's slug.
    pub fn slug(&self) -> &str {
        match self {
            TeacherSpec::Baseline => "baseline",
            TeacherSpec::Human => "human",
            TeacherSpec::Run { slug, .. } | TeacherSpec::Checkpoint { slug, .. } => slug,
        }
    }

    /// Architecture of the teacher network, if there is one.
    pub fn arch(&self) -> Option<&str> {
        match self {
            TeacherSpec::Run { arch, .. } | TeacherSpec::Checkpoint { arch, .. } => Some(arch),
            _ => None,
        }
    }
}

/// The three ways of training of the HKD objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `L = CE(s, y)`.
    Baseline,
    /// `L = (1-λ)·CE + λ·T_h²·D(s/T_h, ĥ/T_h)`.
    Human,
    /// `L = (1-λ)·CE + λ·((1-γ)·T_t²·D(s/T_t, t/T_t) + γ·T_h²·D(s/T_h, ĥ/T_h))`.
    Student,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Baseline => "baseline",
            Mode::Human => "human",
            Mode::Student => "student",
        })
    }
}

/// The distillation hyperparameters of a run (the grid's usual axes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistillationSettings {
    pub lambda: f64,
    pub gamma: f64,
    pub temperature_teacher: f64,
    pub temperature_human: f64,
    pub distil_fn: DistilFn,
    pub kl_reduction: KlReduction,
    pub human_smoothing: f64,
}

/// The divergence D of the soft terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DistilFn {
    /// Kullback–Leibler divergence KL(target ‖ student).
    KL,
    /// Soft cross-entropy −Σ target·log softmax(student).
    CE,
}

impl fmt::Display for DistilFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DistilFn::KL => "KL",
            DistilFn::CE => "CE",
        })
    }
}

/// How the KL divergence is reduced over a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KlReduction {
    /// Sum over classes, mean over the batch: the true KL.
    Batchmean,
    /// Mean over all elements (PyTorch `KLDivLoss()`'s default; also divides by C), as
    /// the original project ran.
    ElementwiseMean,
}

impl fmt::Display for KlReduction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KlReduction::Batchmean => "batchmean",
            KlReduction::ElementwiseMean => "elementwise_mean",
        })
    }
}

/// Optimiser and schedule of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerSettings {
    pub epochs: u32,
    pub batch_size: usize,
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub scheduler: SchedulerKind,
}

/// Learning-rate schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchedulerKind {
    /// Reduce on plateau of validation accuracy (mode max, factor 0.9, patience 5): the original.
    Plateau,
    /// Step decay.
    Step,
    /// Cosine annealing to 0 over the run.
    Cosine,
}

impl fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SchedulerKind::Plateau => "plateau",
            SchedulerKind::Step => "step",
            SchedulerKind::Cosine => "cosine",
        })
    }
}

/// The data a run was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSettings {
    /// Dataset directory as given by the user (made absolute).
    pub dir: PathBuf,
    /// Hash of the dataset's manifest and files, to tell datasets apart.
    pub manifest_hash: String,
    pub train_split: String,
    pub val_split: String,
}
