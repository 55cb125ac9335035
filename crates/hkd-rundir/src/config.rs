use std::path::PathBuf;

use hkd_losses::{
    DistilFn, DistillationConfig, DistillationMode as Mode, KlReduction, ObjectiveConfig,
};
use serde::{Deserialize, Serialize};

use crate::spec::{
    DataSpec, OptimizerSpec, RunSpec, ScheduleSpec, SchedulerKind, TeacherChoice, TrainingSpec,
};

/// `config.toml`: the run's full specification and what was resolved from it.
///
/// The trainer writes it before the first epoch; the evaluator reads the architecture from
/// it; the analysis reads the hyperparameters from it (never from the directory name);
/// `hkd-train --resume` and `hkd-grid` compare its specification with theirs. Files
/// written by hkd 0.1 (no `[spec]` table) are read through [`LegacyRunConfig`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// hkd version that trained the run.
    pub hkd_version: String,
    /// The directory name of the run ([`RunSpec::run_name`]).
    pub run_name: String,
    /// Number of classes of the network's output (from the dataset).
    pub classes: usize,
    /// Device the run was trained on (`cpu`, `cuda:0`); not part of the identity.
    pub device: String,
    /// Hash of the dataset's manifest and files, to tell datasets apart.
    pub dataset_hash: String,
    /// Where the soft labels come from, resolved.
    pub teacher: TeacherSpec,
    /// Every setting of the run, as given (paths made absolute).
    pub spec: RunSpec,
    /// What the run is made from, by content (its splits' files, its teacher's weights);
    /// absent in runs of older hkd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<crate::Provenance>,
}

impl RunConfig {
    /// The config of a run of `spec` with the resolved `teacher`, on a dataset with
    /// `classes` classes and manifest hash `dataset_hash`, trained on `device`; the run
    /// name is the specification's and the version this hkd's.
    pub fn new(
        spec: RunSpec,
        teacher: TeacherSpec,
        classes: usize,
        dataset_hash: impl Into<String>,
        device: impl Into<String>,
    ) -> RunConfig {
        RunConfig {
            hkd_version: crate::HKD_VERSION.to_string(),
            run_name: spec.run_name(),
            classes,
            device: device.into(),
            dataset_hash: dataset_hash.into(),
            teacher,
            spec,
            provenance: None,
        }
    }

    /// Where this run lives under the output directory `out`.
    pub fn run_dir_in(&self, out: &std::path::Path) -> crate::RunDir {
        crate::RunDir::in_output(out, self.teacher.slug(), &self.spec.student, &self.run_name)
    }

    /// The training mode implied by the teacher.
    pub fn mode(&self) -> Mode {
        self.teacher.mode()
    }

    /// The slug naming this run when it is a teacher: see [`RunSpec::teacher_slug`].
    pub fn teacher_slug(&self) -> String {
        self.spec.teacher_slug(self.teacher.slug())
    }

    /// Parses `config.toml`'s text: the current layout, or hkd 0.1's (no `[spec]`).
    pub fn from_toml_str(text: &str) -> Result<RunConfig, String> {
        let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        if table.contains_key("spec") {
            RunConfig::deserialize(table).map_err(|e| e.to_string())
        } else {
            LegacyRunConfig::deserialize(table)
                .map(RunConfig::from)
                .map_err(|e| format!("{e} (read as an hkd 0.1 config.toml, which has no [spec])"))
        }
    }
}

/// `config.toml` as hkd 0.1 wrote it: the distillation and optimiser settings and the
/// data, without the schedule's parameters, the validation batch size and the batch limit
/// (those were in `last.json`; they read as their defaults here).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegacyRunConfig {
    pub hkd_version: String,
    pub run_name: String,
    pub student: String,
    pub classes: usize,
    pub seed: u64,
    pub iter: u32,
    pub teacher: TeacherSpec,
    pub distillation: LegacyDistillation,
    pub optimizer: LegacyOptimizer,
    pub data: LegacyData,
    pub device: String,
}

/// `[distillation]` of hkd 0.1.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegacyDistillation {
    pub lambda: f64,
    pub gamma: f64,
    pub temperature_teacher: f64,
    pub temperature_human: f64,
    pub distil_fn: DistilFn,
    pub kl_reduction: KlReduction,
    pub human_smoothing: f64,
}

/// `[optimizer]` of hkd 0.1.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegacyOptimizer {
    pub epochs: u32,
    pub batch_size: usize,
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub scheduler: SchedulerKind,
}

/// `[data]` of hkd 0.1.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegacyData {
    pub dir: PathBuf,
    pub manifest_hash: String,
    pub train_split: String,
    pub val_split: String,
}

impl From<LegacyRunConfig> for RunConfig {
    fn from(old: LegacyRunConfig) -> Self {
        let d = old.distillation;
        let o = old.optimizer;
        let defaults = RunSpec::default();
        RunConfig {
            hkd_version: old.hkd_version,
            run_name: old.run_name,
            classes: old.classes,
            device: old.device,
            dataset_hash: old.data.manifest_hash,
            spec: RunSpec {
                student: old.student,
                seed: old.seed,
                iter: old.iter,
                data: DataSpec {
                    dir: old.data.dir,
                    train_split: old.data.train_split,
                    val_split: old.data.val_split,
                },
                teacher: TeacherChoice {
                    teacher: match &old.teacher {
                        TeacherSpec::Run { dir, .. } => dir.display().to_string(),
                        TeacherSpec::Checkpoint { path, .. } => path.display().to_string(),
                        other => other.slug().to_string(),
                    },
                    teacher_arch: match &old.teacher {
                        TeacherSpec::Checkpoint { arch, .. } => Some(arch.clone()),
                        _ => None,
                    },
                },
                loss: ObjectiveConfig::Hkd(DistillationConfig {
                    lambda: d.lambda,
                    gamma: d.gamma,
                    temperature_teacher: d.temperature_teacher,
                    temperature_human: d.temperature_human,
                    distil_fn: d.distil_fn,
                    kl_reduction: d.kl_reduction,
                    human_smoothing: d.human_smoothing,
                    ..DistillationConfig::default()
                }),
                training: TrainingSpec {
                    epochs: o.epochs,
                    batch_size: o.batch_size,
                    ..defaults.training
                },
                optimizer: OptimizerSpec {
                    lr: o.lr,
                    momentum: o.momentum,
                    weight_decay: o.weight_decay,
                },
                schedule: ScheduleSpec {
                    scheduler: o.scheduler,
                    ..defaults.schedule
                },
            },
            teacher: old.teacher,
            provenance: None,
        }
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
