//! The run specification: every setting of one training run, defined once.
//!
//! [`RunSpec`] is a tree of small typed structs in burn's style, one per concern (data,
//! teacher, loss, training loop, optimiser, schedule). Each struct's `Default` is the one
//! place its defaults are written; the same structs are serde types (the `[spec]` table
//! of `config.toml`) and clap argument groups (the flags of `hkd-train`, flattened by
//! [`crate::cli::TrainCommand`], which `hkd-grid` also parses in-process). The loss part
//! is `hkd-losses`' own [`ObjectiveConfig`] (the objective and its settings), embedded, not
//! mirrored.
//!
//! A run's **identity** ([`RunSpec::identity`]) is the whole specification minus where
//! its inputs lie (the dataset directory) and how the teacher was named (the resolved
//! teacher enters the run's path as its slug). Two specifications with the same identity
//! and the same teacher are the same run; any other difference gives another run
//! directory ([`RunSpec::run_name`]). The identity holds the objective's settings only
//! (`objective` and, say, `temperature` for `kd`; a setting of another objective is
//! refused when the specification is parsed), so two objectives never share a run.
//! [`RunSpec::inert_settings`] names the settings that cannot change this run's result
//! (label smoothing at λ = 1, say); the grid refuses axes over them.

use std::path::PathBuf;

use clap::Args;
use hkd_losses::{InertSetting, ObjectiveConfig};
use serde::{Deserialize, Serialize};

use crate::naming::py_float;

/// The data a run trains and validates on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct DataSpec {
    /// Dataset directory (any layout hkd-data reads).
    #[arg(long = "data", value_name = "DIR", default_value_os_t = DataSpec::default().dir)]
    pub dir: PathBuf,
    /// Split to train on (the original: CIFAR-10H's 10,000 images).
    #[arg(long, value_name = "SPLIT", default_value_t = DataSpec::default().train_split)]
    pub train_split: String,
    /// Split validated on after every epoch (the original: the 50,000 CIFAR-10 training
    /// images).
    #[arg(long, value_name = "SPLIT", default_value_t = DataSpec::default().val_split)]
    pub val_split: String,
}

impl Default for DataSpec {
    fn default() -> Self {
        DataSpec {
            dir: PathBuf::from("data"),
            train_split: "train".into(),
            val_split: "val".into(),
        }
    }
}

/// Where the soft labels come from, as the user names it (resolved into a
/// [`crate::TeacherSpec`] by [`crate::resolve_teacher`]).
// Its doc comments are --help text (`best:<dir>`), not rustdoc markup.
#[allow(rustdoc::invalid_html_tags)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct TeacherChoice {
    /// Soft labels: baseline (none), human, a teacher run directory, a weights file, or
    /// best:<dir> (the best finished run under dir).
    #[arg(long, value_name = "TEACHER", default_value_t = TeacherChoice::default().teacher)]
    pub teacher: String,
    /// Architecture of a teacher given as a weights file without hkd metadata.
    #[arg(long, value_name = "ARCH")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub teacher_arch: Option<String>,
}

impl TeacherChoice {
    /// Where the soft labels of a run with this teacher come from: `baseline` (none),
    /// `human`, or a teacher network (`student` mode) for anything else — what
    /// [`crate::resolve_teacher`] resolves it to.
    pub fn mode(&self) -> hkd_losses::DistillationMode {
        match self.teacher.as_str() {
            "baseline" => hkd_losses::DistillationMode::Baseline,
            "human" => hkd_losses::DistillationMode::Human,
            _ => hkd_losses::DistillationMode::Student,
        }
    }
}

impl Default for TeacherChoice {
    fn default() -> Self {
        TeacherChoice {
            teacher: "human".into(),
            teacher_arch: None,
        }
    }
}

/// The training loop: epochs and batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct TrainingSpec {
    /// Epochs to train.
    #[arg(long, value_name = "N", default_value_t = TrainingSpec::default().epochs)]
    pub epochs: u32,
    /// Training batch size.
    #[arg(long, value_name = "N", default_value_t = TrainingSpec::default().batch_size)]
    pub batch_size: usize,
    /// Validation batch size (changes the validation numbers only by float rounding).
    #[arg(long, value_name = "N", default_value_t = TrainingSpec::default().eval_batch_size)]
    pub eval_batch_size: usize,
    /// Train at most N batches per epoch (smoke tests, debugging).
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_batches: Option<usize>,
}

impl Default for TrainingSpec {
    fn default() -> Self {
        TrainingSpec {
            epochs: 500,
            batch_size: 128,
            eval_batch_size: 512,
            max_batches: None,
        }
    }
}

/// SGD with PyTorch's semantics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct OptimizerSpec {
    /// Initial learning rate.
    #[arg(long, value_name = "LR", default_value_t = OptimizerSpec::default().lr)]
    pub lr: f64,
    /// SGD momentum, in [0, 1).
    #[arg(long, value_name = "μ", default_value_t = OptimizerSpec::default().momentum)]
    pub momentum: f64,
    /// SGD weight decay (L2 added to the gradient).
    #[arg(long, value_name = "WD", default_value_t = OptimizerSpec::default().weight_decay)]
    pub weight_decay: f64,
}

impl Default for OptimizerSpec {
    fn default() -> Self {
        OptimizerSpec {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 1e-4,
        }
    }
}

/// Learning-rate schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum SchedulerKind {
    /// Reduce on a plateau of the validation accuracy (the original's).
    Plateau,
    /// Step decay at fractions of the epochs.
    Step,
    /// Cosine annealing over the run.
    Cosine,
}

impl SchedulerKind {
    /// The spelling in configs and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            SchedulerKind::Plateau => "plateau",
            SchedulerKind::Step => "step",
            SchedulerKind::Cosine => "cosine",
        }
    }
}

impl std::fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The learning-rate schedule and its parameters (each used by one kind).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleSpec {
    /// Learning-rate schedule: plateau (the original's), step or cosine.
    #[arg(long, value_enum, ignore_case = true, default_value_t = ScheduleSpec::default().scheduler)]
    pub scheduler: SchedulerKind,
    /// plateau: factor applied to the learning rate on a plateau of validation accuracy.
    #[arg(long, value_name = "F", default_value_t = ScheduleSpec::default().plateau_factor)]
    pub plateau_factor: f64,
    /// plateau: epochs without improvement tolerated before reducing.
    #[arg(long, value_name = "N", default_value_t = ScheduleSpec::default().plateau_patience)]
    pub plateau_patience: u32,
    /// step: fractions of the epochs after which the learning rate is multiplied by
    /// --step-gamma.
    #[arg(long, value_name = "F,F,..", value_delimiter = ',', default_values_t = ScheduleSpec::default().step_milestones)]
    pub step_milestones: Vec<f64>,
    /// step: factor applied at each milestone.
    #[arg(long, value_name = "G", default_value_t = ScheduleSpec::default().step_gamma)]
    pub step_gamma: f64,
    /// cosine: learning rate reached at the end of the run.
    #[arg(long, value_name = "LR", default_value_t = ScheduleSpec::default().cosine_min_lr)]
    pub cosine_min_lr: f64,
}

impl Default for ScheduleSpec {
    fn default() -> Self {
        ScheduleSpec {
            scheduler: SchedulerKind::Plateau,
            plateau_factor: 0.9,
            plateau_patience: 5,
            step_milestones: vec![0.5, 0.75],
            step_gamma: 0.1,
            cosine_min_lr: 0.0,
        }
    }
}

/// Every setting of one training run (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct RunSpec {
    /// Architecture to train (`hkd-train models` lists them).
    #[arg(long, value_name = "ARCH", default_value_t = RunSpec::default().student)]
    pub student: String,
    /// Seed of weights, shuffling, augmentation and Shake-Shake coefficients.
    #[arg(long, value_name = "N", default_value_t = RunSpec::default().seed)]
    pub seed: u64,
    /// Repeat index of this configuration (part of the run name; varies the random
    /// streams, so repeats differ without a seed axis).
    #[arg(long, value_name = "N", default_value_t = RunSpec::default().iter)]
    pub iter: u32,
    #[command(flatten, next_help_heading = "Data")]
    pub data: DataSpec,
    #[command(flatten, next_help_heading = "Teacher")]
    pub teacher: TeacherChoice,
    #[command(flatten, next_help_heading = "Objective")]
    pub loss: ObjectiveConfig,
    #[command(flatten, next_help_heading = "Training loop")]
    pub training: TrainingSpec,
    #[command(flatten, next_help_heading = "Optimiser (SGD)")]
    pub optimizer: OptimizerSpec,
    #[command(flatten, next_help_heading = "Learning-rate schedule")]
    pub schedule: ScheduleSpec,
}

impl Default for RunSpec {
    fn default() -> Self {
        RunSpec {
            student: "resnet8".into(),
            seed: 0,
            iter: 0,
            data: DataSpec::default(),
            teacher: TeacherChoice::default(),
            loss: ObjectiveConfig::default(),
            training: TrainingSpec::default(),
            optimizer: OptimizerSpec::default(),
            schedule: ScheduleSpec::default(),
        }
    }
}

/// A setting with an invalid value: the key (as in config files, the flag with `_`), what
/// was found and what is expected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`{key}` is {found}, expected {expected}")]
pub struct InvalidSetting {
    /// The setting's key, e.g. `lambda`, `step_milestones`.
    pub key: String,
    /// The value given.
    pub found: String,
    /// What would be accepted.
    pub expected: String,
}

impl InvalidSetting {
    /// `key` is `found`, expected `expected`.
    pub fn new(key: &str, found: impl ToString, expected: impl ToString) -> Self {
        InvalidSetting {
            key: key.to_string(),
            found: found.to_string(),
            expected: expected.to_string(),
        }
    }
}

/// The keys of [`RunSpec::identity`] that the original project's run name already spells
/// out (see [`RunSpec::run_name`]).
const NAMED_KEYS: [&str; 7] = [
    "student",
    "distil_fn",
    "temperature_human",
    "temperature_teacher",
    "lambda",
    "gamma",
    "iter",
];

/// Leaves of the specification that are not part of a run's identity: where the dataset
/// lies (its content is checked through its manifest hash) and how the teacher was named
/// (the resolved teacher is the run path's teacher level).
const NOT_IDENTITY: [&str; 3] = ["dir", "teacher", "teacher_arch"];

/// Run names longer than this replace the spelled-out extra settings by their hash.
const MAX_NAME_LEN: usize = 200;

impl RunSpec {
    /// Checks every value that can be checked without the disk, the dataset or the
    /// architecture registry; the first problem names its key.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let finite_positive = |key: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(InvalidSetting::new(key, v, "a finite number > 0"))
            }
        };
        let non_negative = |key: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(InvalidSetting::new(key, v, "a finite number >= 0"))
            }
        };
        let at_least_one = |key: &str, v: usize| {
            if v >= 1 {
                Ok(())
            } else {
                Err(InvalidSetting::new(key, v, "at least 1"))
            }
        };
        if self.student.trim().is_empty() {
            return Err(InvalidSetting::new(
                "student",
                "an empty name",
                "an architecture name; `hkd-train models` lists them",
            ));
        }
        for (key, split) in [
            ("train_split", &self.data.train_split),
            ("val_split", &self.data.val_split),
        ] {
            let ok = !split.is_empty()
                && !split.starts_with('.')
                && split
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if !ok {
                return Err(InvalidSetting::new(
                    key,
                    format!("{split:?}"),
                    "a split name: ASCII letters, digits, '_', '-' or '.', not starting with '.'",
                ));
            }
        }
        if self.teacher.teacher.trim().is_empty() {
            return Err(InvalidSetting::new(
                "teacher",
                "an empty value",
                "baseline, human, a teacher run directory, a weights file or best:<dir>",
            ));
        }
        if let Some(arch) = &self.teacher.teacher_arch
            && arch.trim().is_empty()
        {
            return Err(InvalidSetting::new(
                "teacher_arch",
                "an empty name",
                "an architecture name (or leave it out)",
            ));
        }
        self.loss.validate().map_err(|e| {
            let (key, found) = loss_error_key(&e);
            InvalidSetting::new(key, found, strip_key(&e.to_string(), key))
        })?;
        self.loss.check_mode(self.teacher.mode()).map_err(|e| {
            InvalidSetting::new(
                "objective",
                format!(
                    "{} with --teacher {}",
                    self.loss.name(),
                    self.teacher.teacher
                ),
                format!("an objective this teacher can give a target to: {e}"),
            )
        })?;
        if self.training.epochs == 0 {
            return Err(InvalidSetting::new("epochs", 0, "at least 1"));
        }
        at_least_one("batch_size", self.training.batch_size)?;
        at_least_one("eval_batch_size", self.training.eval_batch_size)?;
        if let Some(m) = self.training.max_batches {
            at_least_one("max_batches", m)?;
        }
        finite_positive("lr", self.optimizer.lr)?;
        if !(self.optimizer.momentum.is_finite() && (0.0..1.0).contains(&self.optimizer.momentum)) {
            return Err(InvalidSetting::new(
                "momentum",
                self.optimizer.momentum,
                "a number in [0, 1) (0.9 is usual)",
            ));
        }
        non_negative("weight_decay", self.optimizer.weight_decay)?;
        let s = &self.schedule;
        if !(s.plateau_factor > 0.0 && s.plateau_factor < 1.0) {
            return Err(InvalidSetting::new(
                "plateau_factor",
                s.plateau_factor,
                "a number in (0, 1)",
            ));
        }
        finite_positive("step_gamma", s.step_gamma)?;
        if let Some(m) = s
            .step_milestones
            .iter()
            .find(|m| !(**m > 0.0 && **m <= 1.0))
        {
            return Err(InvalidSetting::new(
                "step_milestones",
                m,
                "fractions of the epochs in (0, 1], e.g. 0.5,0.75",
            ));
        }
        if s.step_milestones.windows(2).any(|w| w[0] > w[1]) {
            return Err(InvalidSetting::new(
                "step_milestones",
                join_floats(&s.step_milestones),
                "fractions in increasing order",
            ));
        }
        non_negative("cosine_min_lr", s.cosine_min_lr)?;
        if s.cosine_min_lr > self.optimizer.lr {
            return Err(InvalidSetting::new(
                "cosine_min_lr",
                s.cosine_min_lr,
                format!("at most the initial lr {}", self.optimizer.lr),
            ));
        }
        Ok(())
    }

    /// The seed of every random stream of the run: `seed` for repeat 0, else `seed`
    /// mixed with the repeat index by a SplitMix64 step, so that repeats of one
    /// configuration differ without a seed axis in the grid.
    pub fn stream_seed(&self) -> u64 {
        if self.iter == 0 {
            return self.seed;
        }
        let mut z = self.seed ^ (u64::from(self.iter)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The settings that identify the run, as `(key, value)` sorted by section and key:
    /// every leaf of the specification except the dataset directory and the
    /// teacher as named (see the module docs). Values are rendered canonically (floats as
    /// Python prints them, lists joined by `,`); unset optional settings are absent.
    pub fn identity(&self) -> Vec<(String, String)> {
        let value = serde_json::to_value(self).unwrap_or_default();
        let mut out = Vec::new();
        leaves("", &value, &mut out);
        // sorted by section and key explicitly: serde_json's map order depends on a cargo
        // feature (`preserve_order`) that another crate of a build may switch on
        out.sort();
        out.into_iter()
            .filter(|(_, k, _)| !NOT_IDENTITY.contains(&k.as_str()))
            .map(|(_, k, v)| (k, v))
            .collect()
    }

    /// Every key [`identity`](Self::identity) can hold, in the specification's
    /// declaration order (optional settings included), e.g. for the columns of a table.
    pub fn identity_keys() -> Vec<String> {
        use clap::Args as _;
        RunSpec::augment_args(clap::Command::new("spec"))
            .get_arguments()
            .map(|a| a.get_id().to_string())
            .filter(|k| !NOT_IDENTITY.contains(&k.as_str()))
            .collect()
    }

    /// The identity settings that differ from their defaults (those of this run's
    /// objective for its settings) and that the run name does not spell out, as
    /// `(key, value)`: for `hkd` every key but the original name's, for another objective
    /// every key but the student, the repeat and the objective's settings.
    pub fn extra_identity(&self) -> Vec<(String, String)> {
        let defaults: std::collections::HashMap<String, String> =
            self.defaults().identity().into_iter().collect();
        let spelled: Vec<String> = match self.loss {
            ObjectiveConfig::Hkd(_) => NAMED_KEYS.iter().map(|k| k.to_string()).collect(),
            _ => ["student", "iter", "objective"]
                .iter()
                .map(|k| k.to_string())
                .chain(self.loss.setting_keys())
                .collect(),
        };
        self.identity()
            .into_iter()
            .filter(|(k, v)| !spelled.contains(k) && defaults.get(k).is_none_or(|d| d != v))
            .collect()
    }

    /// The suffix that makes a name unique beyond the original's keys: `+key=value` for
    /// every [`extra_identity`](Self::extra_identity) setting (empty when all are at their
    /// defaults); past [`MAX_NAME_LEN`] characters in all, `+h=` and 16 hex digits of their
    /// SHA-256 instead.
    fn extras_suffix(&self, base_len: usize) -> String {
        let extras = self.extra_identity();
        let spelled: String = extras.iter().map(|(k, v)| format!("+{k}={v}")).collect();
        if base_len + spelled.len() <= MAX_NAME_LEN {
            return spelled;
        }
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(spelled.as_bytes());
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("+h={hex}")
    }

    /// The settings the original names spell out, in their order: student, D, T_h, T_t,
    /// λ, γ, iter (floats as Python prints them); `None` for objectives other than `hkd`.
    fn named_values(&self) -> Option<[String; 7]> {
        let ObjectiveConfig::Hkd(l) = &self.loss else {
            return None;
        };
        Some([
            self.student.clone(),
            l.distil_fn.to_string(),
            py_float(l.temperature_human),
            py_float(l.temperature_teacher),
            py_float(l.lambda),
            py_float(l.gamma),
            self.iter.to_string(),
        ])
    }

    /// The objective's own settings as `(key, value)` in declaration order, as the
    /// identity renders them (for the names of objectives other than `hkd`).
    fn objective_values(&self) -> Vec<(String, String)> {
        let identity: std::collections::HashMap<String, String> =
            self.identity().into_iter().collect();
        self.loss
            .setting_keys()
            .into_iter()
            .filter_map(|k| identity.get(&k).cloned().map(|v| (k, v)))
            .collect()
    }

    /// `base` followed by the `+key=value` suffix (see [`run_name`](Self::run_name)).
    fn with_extras(&self, base: String) -> String {
        let suffix = self.extras_suffix(base.len());
        base + &suffix
    }

    /// The run directory name. For `hkd`, the original project's
    /// `student_<arch>_distil_fn_<D>_temperature_h_<Th>_temperature_t_<Tt>_lambda_<λ>_gamma_<γ>_iter_<i>`;
    /// for another objective `student_<arch>_objective_<name>_<key>_<value>…_iter_<i>`
    /// with every setting of the objective in its declaration order (e.g.
    /// `student_resnet8x4_objective_kd_temperature_4.0_ce_weight_0.1_…_iter_0`). Either is
    /// followed by `+key=value` for every other identity setting that is not at its
    /// default (e.g. `…_iter_0+lr=0.01+seed=3`). A run with defaults everywhere else keeps
    /// the original name exactly.
    pub fn run_name(&self) -> String {
        match self.named_values() {
            Some([student, d, th, tt, l, g, i]) => self.with_extras(format!(
                "student_{student}_distil_fn_{d}_temperature_h_{th}_temperature_t_{tt}_lambda_{l}_gamma_{g}_iter_{i}"
            )),
            None => {
                let settings: String = self
                    .objective_values()
                    .iter()
                    .map(|(k, v)| format!("_{k}_{v}"))
                    .collect();
                self.with_extras(format!(
                    "student_{}_objective_{}{settings}_iter_{}",
                    self.student,
                    self.loss.name(),
                    self.iter
                ))
            }
        }
    }

    /// The slug that names a teacher run as the teacher level of its students' paths:
    /// `<its own teacher level>-<arch>-<D>-th<Th>-tt<Tt>-l<λ>-g<γ>-i<iter>` plus the same
    /// `+key=value` suffix as [`run_name`](Self::run_name), e.g.
    /// `human-resnet20-KL-th1.0-tt1.0-l1.0-g0.0-i0+epochs=15`; for objectives other than
    /// `hkd`, `<level>-<arch>-<objective>-i<iter>` and the suffix, in which the
    /// objective's settings that differ from its defaults are spelled too.
    pub fn teacher_slug(&self, own_teacher_level: &str) -> String {
        match self.named_values() {
            Some([student, d, th, tt, l, g, i]) => self.with_extras(format!(
                "{own_teacher_level}-{student}-{d}-th{th}-tt{tt}-l{l}-g{g}-i{i}"
            )),
            None => {
                let base = format!(
                    "{own_teacher_level}-{}-{}-i{}",
                    self.student,
                    self.loss.name(),
                    self.iter
                );
                let spelled: String = self
                    .objective_values()
                    .into_iter()
                    .zip(self.objective_defaults())
                    .filter(|((_, v), (_, d))| v != d)
                    .map(|((k, v), _)| format!("+{k}={v}"))
                    .collect();
                self.with_extras(base + &spelled)
            }
        }
    }

    /// The objective's settings at their defaults, rendered as in the identity.
    fn objective_defaults(&self) -> Vec<(String, String)> {
        self.defaults().objective_values()
    }

    /// The default specification with this run's objective (at its defaults): what the
    /// settings of this run are "not at their default" against.
    pub fn defaults(&self) -> RunSpec {
        RunSpec {
            loss: ObjectiveConfig::default_of(self.loss.name()).unwrap_or_default(),
            ..RunSpec::default()
        }
    }

    /// The settings of this run that cannot change its result, with why: the objective's
    /// own (label smoothing at λ = 1, the human temperature at γ = 0, …) and the target's
    /// (γ with `--teacher human`), for the teacher as named (`baseline`, `human`, or a
    /// network). A grid refuses to vary one of them ([`Self::effective_identity`]).
    pub fn inert_settings(&self) -> Vec<InertSetting> {
        self.loss.inert(self.teacher.mode())
    }

    /// The identity without the [`inert_settings`](Self::inert_settings): two
    /// specifications with the same effective identity train the same network.
    pub fn effective_identity(&self) -> Vec<(String, String)> {
        let inert: Vec<&str> = self
            .inert_settings()
            .iter()
            .map(|i| i.key)
            .collect::<Vec<_>>();
        self.identity()
            .into_iter()
            .filter(|(k, _)| !inert.contains(&k.as_str()))
            .collect()
    }

    /// `key: stored -> given` for every identity setting that differs between two
    /// specifications.
    pub fn identity_differences(&self, given: &RunSpec) -> Vec<String> {
        let a = self.identity();
        let b = given.identity();
        let mut keys: Vec<&String> = a.iter().chain(b.iter()).map(|(k, _)| k).collect();
        let mut seen = std::collections::HashSet::new();
        keys.retain(|k| seen.insert(*k));
        let get = |list: &[(String, String)], k: &str| {
            list.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| "(unset)".into())
        };
        keys.into_iter()
            .filter_map(|k| {
                let (x, y) = (get(&a, k), get(&b, k));
                (x != y).then(|| format!("{k}: {x} -> {y}"))
            })
            .collect()
    }
}

/// Flattens a serialized specification into `(section path, leaf key, canonical value)`.
fn leaves(section: &str, value: &serde_json::Value, out: &mut Vec<(String, String, String)>) {
    if let serde_json::Value::Object(map) = value {
        for (k, v) in map {
            match v {
                serde_json::Value::Object(_) => leaves(&format!("{section}{k}."), v, out),
                serde_json::Value::Null => {}
                other => out.push((section.to_string(), k.clone(), render(other))),
            }
        }
    }
}

fn render(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Number(n) => match n.as_f64() {
            Some(x) if n.is_f64() => py_float(x),
            _ => n.to_string(),
        },
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Array(items) => items.iter().map(render).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

fn join_floats(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| py_float(*v))
        .collect::<Vec<_>>()
        .join(",")
}

/// The key and value a loss validation error is about.
fn loss_error_key(e: &hkd_losses::LossError) -> (&'static str, String) {
    match e.setting() {
        Some((key, found)) => (key, found.to_string()),
        None => ("loss", e.to_string()),
    }
}

/// The loss error's "expected …" part (its message without the leading field and value).
fn strip_key(message: &str, _key: &str) -> String {
    match message.find("expected ") {
        Some(i) => message[i + "expected ".len()..].to_string(),
        None => message.to_string(),
    }
}
