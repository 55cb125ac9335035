//! The evaluation manager: finds what to evaluate, loads every set once, evaluates each
//! run (skipping those already evaluated with the same settings), and reports per run.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::Device;
use hkd_rundir::{
    EvalReport, HKD_VERSION, RunDir, SetMetrics, TemperatureFit, find_run_dirs, write_atomic,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::attack::{AttackSettings, attack_set};
use crate::error::{EvalError, Result};
use crate::forward::{dataset_logits, load_network};
use crate::metrics::{fit_temperature, scaled_metrics, set_metrics};
use crate::npy::write_npy;
use crate::progress::Progress;
use crate::sets::{
    DEFAULT_SET_NAME, GENERALIZATION_SETS, LoadedSet, SetSpec, check_unique_names, load_set,
};

/// Version of what the evaluator measures; part of the settings hash, so a change of the
/// metrics makes every run count as not yet evaluated. 2: mean confidence, reliability
/// bins and temperature scaling (`--calibrate-on`).
pub const METRICS_VERSION: u32 = 2;

pub use hkd_rundir::cli::eval::{DEFAULT_BATCH_SIZE, WeightsChoice};

/// Suffix of a bare checkpoint's report file (`<checkpoint stem>.eval.json`).
pub const CHECKPOINT_REPORT_SUFFIX: &str = ".eval.json";

/// Suffix of the original project's result file (`<run>_generalization.npy`).
pub const GENERALIZATION_SUFFIX: &str = "_generalization.npy";

/// How runs are evaluated.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalOptions {
    /// Images per evaluation batch.
    pub batch_size: usize,
    /// Batch size of [`SetMetrics::ce_sum_batch_means`] (the original's 128).
    pub ce_batch_size: usize,
    /// Which weights of a run directory.
    pub weights: WeightsChoice,
    /// Attacks to run (none by default).
    pub attacks: Option<AttackSettings>,
    /// Evaluate even when `eval.json` has the same settings hash.
    pub force: bool,
    /// Fit one temperature per run on this set (one of the evaluated sets' names) and
    /// record the temperature-scaled metrics of every set.
    pub calibrate_on: Option<String>,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            batch_size: DEFAULT_BATCH_SIZE,
            ce_batch_size: crate::metrics::ORIGINAL_BATCH_SIZE,
            weights: WeightsChoice::Best,
            attacks: None,
            force: false,
            calibrate_on: None,
        }
    }
}

impl EvalOptions {
    /// Checks the values are usable.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(EvalError::InvalidOption {
                option: "--batch-size",
                reason: "0; expected at least 1".into(),
            });
        }
        if self.ce_batch_size == 0 {
            return Err(EvalError::InvalidOption {
                option: "--ce-batch-size",
                reason: "0; expected at least 1".into(),
            });
        }
        if let Some(a) = &self.attacks {
            a.validate()?;
        }
        Ok(())
    }
}

/// Something to evaluate.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// A run directory (architecture and classes from its `config.toml`).
    Run(RunDir),
    /// A bare weights file (safetensors or PyTorch checkpoint) with its architecture.
    Checkpoint {
        /// The weights file.
        path: PathBuf,
        /// Architecture name.
        arch: String,
        /// Number of outputs.
        classes: usize,
    },
}

impl Target {
    /// The run directory or the checkpoint file.
    pub fn path(&self) -> &Path {
        match self {
            Target::Run(run) => run.path(),
            Target::Checkpoint { path, .. } => path,
        }
    }

    /// Where the report goes: `<run>/eval.json`, or `<checkpoint stem>.eval.json` beside a
    /// bare checkpoint.
    pub fn report_path(&self) -> PathBuf {
        match self {
            Target::Run(run) => run.file(RunDir::EVAL),
            Target::Checkpoint { path, .. } => path.with_file_name(format!(
                "{}{CHECKPOINT_REPORT_SUFFIX}",
                checkpoint_stem(path)
            )),
        }
    }

    /// Where the original's `_generalization.npy` goes: beside the run directory
    /// (`<parent>/<run-name>_generalization.npy`), or beside a bare checkpoint with its
    /// extension (`.pth.tar`, `.pth`, `.safetensors`, …) replaced, as the original did.
    pub fn generalization_path(&self) -> Result<PathBuf> {
        match self {
            Target::Run(run) => {
                let abs = run
                    .path()
                    .canonicalize()
                    .map_err(|e| EvalError::io("resolve", run.path(), e))?;
                let name = abs
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let parent = abs.parent().unwrap_or(Path::new("/"));
                Ok(parent.join(format!("{name}{GENERALIZATION_SUFFIX}")))
            }
            Target::Checkpoint { path, .. } => Ok(
                path.with_file_name(format!("{}{GENERALIZATION_SUFFIX}", checkpoint_stem(path)))
            ),
        }
    }
}

/// File name of a checkpoint without its weights extension.
fn checkpoint_stem(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for ext in [
        ".pth.tar",
        ".safetensors",
        ".pth",
        ".pt",
        ".tar",
        ".ckpt",
        ".bin",
    ] {
        if let Some(stem) = name.strip_suffix(ext)
            && !stem.is_empty()
        {
            return stem.to_string();
        }
    }
    name
}

/// Turns the paths given by the user into targets: a directory is searched recursively for
/// run directories (those holding `config.toml`); a file is a bare checkpoint and needs
/// `checkpoint_arch`. Targets come out sorted and without duplicates.
pub fn find_targets(
    paths: &[PathBuf],
    checkpoint_arch: Option<&str>,
    classes: usize,
) -> Result<Vec<Target>> {
    if paths.is_empty() {
        return Err(EvalError::NoTargets {
            path: PathBuf::from("."),
            reason: "no path given; name run directories, a directory of runs, or a checkpoint with --arch".into(),
        });
    }
    let mut targets = Vec::new();
    for path in paths {
        if path.is_file() {
            let arch = checkpoint_arch.ok_or_else(|| EvalError::NoTargets {
                path: path.clone(),
                reason: "is a file: a bare checkpoint needs its architecture, e.g. --arch resnet8"
                    .into(),
            })?;
            targets.push(Target::Checkpoint {
                path: path.clone(),
                arch: arch.to_string(),
                classes,
            });
        } else if path.is_dir() {
            let runs = find_run_dirs(path)?;
            if runs.is_empty() {
                return Err(EvalError::NoTargets {
                    path: path.clone(),
                    reason: format!(
                        "holds no run directory (a directory with {})",
                        RunDir::CONFIG
                    ),
                });
            }
            targets.extend(runs.into_iter().map(Target::Run));
        } else {
            return Err(EvalError::NoTargets {
                path: path.clone(),
                reason: "does not exist".into(),
            });
        }
    }
    targets.sort();
    targets.dedup();
    Ok(targets)
}

/// Checks that `--calibrate-on NAME` names one of the sets every run is evaluated on: one
/// of `sets`, or with none given the default set (`val`, each run's own validation split).
pub fn check_calibration_set(sets: &[SetSpec], name: &str) -> Result<()> {
    let available: Vec<String> = if sets.is_empty() {
        vec![DEFAULT_SET_NAME.to_string()]
    } else {
        sets.iter().map(|s| s.name.clone()).collect()
    };
    if available.iter().any(|n| n == name) {
        Ok(())
    } else {
        Err(EvalError::UnknownCalibrationSet {
            name: name.to_string(),
            available,
        })
    }
}

/// Why a run was not evaluated.
#[derive(Debug, Clone, PartialEq)]
pub enum SkipReason {
    /// Its report has the same settings hash (use `force` to evaluate again).
    UpToDate {
        /// The existing report.
        report_path: PathBuf,
    },
    /// The run has no weights file yet (training not started, failed early, or running).
    NoWeights {
        /// The file that is missing.
        expected: PathBuf,
    },
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::UpToDate { report_path } => write!(
                f,
                "already evaluated with the same sets and settings ({}); --force evaluates again",
                report_path.display()
            ),
            SkipReason::NoWeights { expected } => {
                write!(f, "no weights yet: {} is missing", expected.display())
            }
        }
    }
}

/// What happened to one target.
#[derive(Debug)]
pub enum RunResult {
    /// Evaluated; the report was written.
    Evaluated {
        /// The report as written.
        report: EvalReport,
        /// Where it was written.
        report_path: PathBuf,
        /// The `_generalization.npy` written, when the three sets were given.
        generalization: Option<PathBuf>,
    },
    /// Not evaluated, on purpose.
    Skipped(SkipReason),
    /// Evaluation failed.
    Failed(EvalError),
}

/// One target and what happened to it.
#[derive(Debug)]
pub struct RunOutcome {
    /// The run or checkpoint.
    pub target: Target,
    /// The result.
    pub result: RunResult,
}

impl RunOutcome {
    /// True when the evaluation failed.
    pub fn failed(&self) -> bool {
        matches!(self.result, RunResult::Failed(_))
    }
}

/// Evaluates targets on sets loaded once; see [`Evaluator::prepare`].
pub struct Evaluator {
    device: Device,
    options: EvalOptions,
    explicit: Vec<Arc<LoadedSet>>,
    /// Per run directory: its default set (its own validation split), or why it has none.
    defaults: HashMap<PathBuf, std::result::Result<Arc<LoadedSet>, String>>,
}

impl std::fmt::Debug for Evaluator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluator")
            .field("device", &self.device)
            .field("options", &self.options)
            .field(
                "sets",
                &self.explicit.iter().map(|s| &s.source).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Evaluator {
    /// Checks the options and loads every set before any run is evaluated, so that a
    /// missing or unreadable set is an error up front.
    ///
    /// With `sets` empty, each run is evaluated on its own validation split (from its
    /// `config.toml`, recorded as set `val`); a bare checkpoint then is an error. A run
    /// whose config cannot be read is not an error here: it fails on its own later.
    pub fn prepare(
        targets: &[Target],
        sets: &[SetSpec],
        options: EvalOptions,
        device: Device,
    ) -> Result<Evaluator> {
        options.validate()?;
        check_unique_names(sets)?;
        if let Some(name) = &options.calibrate_on {
            check_calibration_set(sets, name)?;
        }
        let mut cache: HashMap<(PathBuf, Option<String>), Arc<LoadedSet>> = HashMap::new();
        let mut load = |spec: &SetSpec| -> Result<Arc<LoadedSet>> {
            let key = (spec.dir.clone(), spec.split.clone());
            if let Some(set) = cache.get(&key) {
                let mut renamed = (**set).clone();
                renamed.name = spec.name.clone();
                return Ok(Arc::new(renamed));
            }
            tracing::info!("loading set {spec}");
            let set = Arc::new(load_set(spec)?);
            tracing::info!(
                "set {}: {} images from {}",
                set.name,
                set.dataset.len(),
                set.source
            );
            cache.insert(key, set.clone());
            Ok(set)
        };
        let mut explicit = Vec::new();
        for spec in sets {
            explicit.push(load(spec)?);
        }
        let mut defaults = HashMap::new();
        if sets.is_empty() {
            for target in targets {
                match target {
                    Target::Checkpoint { path, .. } => {
                        return Err(EvalError::NoSetsForCheckpoint(path.clone()));
                    }
                    Target::Run(run) => {
                        let entry = match run.read_config() {
                            Ok(config) => {
                                let spec = SetSpec::new(
                                    DEFAULT_SET_NAME,
                                    &config.spec.data.dir,
                                    Some(config.spec.data.val_split.clone()),
                                );
                                // one run's moved or broken data fails that run only
                                load(&spec).map_err(|e| match e {
                                    EvalError::SetUnavailable { source_desc, source, .. } => EvalError::SetUnavailable {
                                        name: format!(
                                            "{DEFAULT_SET_NAME} (the validation split named in {}; name the sets with --set if the data moved)",
                                            run.file(RunDir::CONFIG).display()
                                        ),
                                        source_desc,
                                        source,
                                    }
                                    .to_string(),
                                    other => other.to_string(),
                                })
                            }
                            Err(e) => Err(e.to_string()),
                        };
                        defaults.insert(run.path().to_path_buf(), entry);
                    }
                }
            }
        }
        Ok(Evaluator {
            device,
            options,
            explicit,
            defaults,
        })
    }

    /// The options.
    pub fn options(&self) -> &EvalOptions {
        &self.options
    }

    /// The device networks run on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Evaluates every target in order; a failure is recorded and the next target goes on.
    pub fn evaluate_all(&self, targets: &[Target], progress: &dyn Progress) -> Vec<RunOutcome> {
        targets
            .iter()
            .enumerate()
            .map(|(i, target)| {
                tracing::info!("[{}/{}] {}", i + 1, targets.len(), target.path().display());
                let outcome = self.evaluate(target, progress);
                match &outcome.result {
                    RunResult::Evaluated { report_path, .. } => {
                        tracing::info!(
                            "evaluated {}: {}",
                            target.path().display(),
                            report_path.display()
                        )
                    }
                    RunResult::Skipped(why) => {
                        tracing::info!("skipped {}: {why}", target.path().display())
                    }
                    RunResult::Failed(e) => {
                        tracing::error!("FAILED {}: {e}", target.path().display())
                    }
                }
                outcome
            })
            .collect()
    }

    /// Evaluates one target.
    pub fn evaluate(&self, target: &Target, progress: &dyn Progress) -> RunOutcome {
        let result = match self.evaluate_inner(target, progress) {
            Ok(r) => r,
            Err(e) => RunResult::Failed(e),
        };
        RunOutcome {
            target: target.clone(),
            result,
        }
    }

    fn sets_for(&self, target: &Target) -> Result<Vec<Arc<LoadedSet>>> {
        if !self.explicit.is_empty() {
            return Ok(self.explicit.clone());
        }
        match self.defaults.get(target.path()) {
            Some(Ok(set)) => Ok(vec![set.clone()]),
            Some(Err(why)) => Err(EvalError::NoTargets {
                path: target.path().to_path_buf(),
                reason: format!("has no usable default set: {why}"),
            }),
            None => Err(EvalError::NoTargets {
                path: target.path().to_path_buf(),
                reason: "was not prepared with this evaluator; pass it to Evaluator::prepare"
                    .into(),
            }),
        }
    }

    fn evaluate_inner(&self, target: &Target, progress: &dyn Progress) -> Result<RunResult> {
        let (arch, classes, weights, weights_label) = match target {
            Target::Run(run) => {
                let config = run.read_config()?;
                let file = self.options.weights.file_name();
                let weights = run.file(file);
                if !weights.is_file() {
                    return Ok(RunResult::Skipped(SkipReason::NoWeights {
                        expected: weights,
                    }));
                }
                if !run.is_finished() {
                    tracing::warn!(
                        "{} is not finished; evaluating its current {file} (it is evaluated again once it changes)",
                        run.path().display()
                    );
                }
                (
                    config.spec.student,
                    config.classes,
                    weights,
                    file.to_string(),
                )
            }
            Target::Checkpoint {
                path,
                arch,
                classes,
            } => {
                let label = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (arch.clone(), *classes, path.clone(), label)
            }
        };
        let sets = self.sets_for(target)?;
        let weights_sha256 = sha256_file(&weights)?;
        let settings_hash = settings_hash(&SettingsHashInput {
            metrics_version: METRICS_VERSION,
            arch: &arch,
            classes,
            weights_file: &weights_label,
            weights_sha256: &weights_sha256,
            sets: sets
                .iter()
                .map(|s| (s.name.as_str(), s.content_hash.as_str()))
                .collect(),
            batch_size: self.options.batch_size,
            ce_batch_size: self.options.ce_batch_size,
            attacks: self.options.attacks.as_ref(),
            calibrate_on: self.options.calibrate_on.as_deref(),
        })?;
        let report_path = target.report_path();
        if !self.options.force && report_path.is_file() {
            match read_report(&report_path) {
                Ok(old) if old.settings_hash == settings_hash => {
                    return Ok(RunResult::Skipped(SkipReason::UpToDate { report_path }));
                }
                Ok(_) => tracing::info!(
                    "{}: settings changed, evaluating again",
                    report_path.display()
                ),
                Err(e) => tracing::warn!("{e}; evaluating again"),
            }
        }

        let net = load_network(&arch, classes, &weights, &self.device)?;
        // Every set's logits first: the temperature fitted on one set scales them all.
        let mut all_logits = Vec::with_capacity(sets.len());
        for set in &sets {
            let dataset = &set.dataset;
            if dataset.num_classes() != classes {
                return Err(EvalError::ClassMismatch {
                    set: set.name.clone(),
                    set_classes: dataset.num_classes(),
                    arch: arch.clone(),
                    net_classes: classes,
                });
            }
            let label = format!("{} on {}", short_name(target), set.name);
            let logits = dataset_logits(&net, dataset, self.options.batch_size, progress, &label)?;
            if let Some(i) = logits.iter().position(|v| !v.is_finite()) {
                return Err(EvalError::NonFinite {
                    set: set.name.clone(),
                    row: i / classes,
                });
            }
            all_logits.push(logits);
        }
        let temperature = match &self.options.calibrate_on {
            None => None,
            Some(name) => {
                let i = sets.iter().position(|s| &s.name == name).ok_or_else(|| {
                    EvalError::UnknownCalibrationSet {
                        name: name.clone(),
                        available: sets.iter().map(|s| s.name.clone()).collect(),
                    }
                })?;
                let fit = fit_temperature(&all_logits[i], classes, sets[i].dataset.labels())?;
                if fit.at_bound {
                    tracing::warn!(
                        "{}: the NLL on {name} is lowest at the end of the searched range, T = {}",
                        short_name(target),
                        fit.temperature
                    );
                }
                tracing::info!(
                    "{}: temperature {:.4} fitted on {name} (NLL {:.4} -> {:.4})",
                    short_name(target),
                    fit.temperature,
                    fit.nll_before,
                    fit.nll_after
                );
                Some(TemperatureFit {
                    set: name.clone(),
                    temperature: fit.temperature,
                    nll_before: fit.nll_before,
                    nll_after: fit.nll_after,
                    at_bound: fit.at_bound,
                })
            }
        };
        let mut results = BTreeMap::new();
        for (set, logits) in sets.iter().zip(&all_logits) {
            let dataset = &set.dataset;
            let label = format!("{} on {}", short_name(target), set.name);
            let mut metrics = set_metrics(
                set.source.clone(),
                logits,
                classes,
                dataset.labels(),
                dataset.human(),
                self.options.ce_batch_size,
            )?;
            if let Some(fit) = &temperature {
                metrics.temperature_scaled = Some(scaled_metrics(
                    logits,
                    classes,
                    dataset.labels(),
                    dataset.human(),
                    fit.temperature,
                )?);
            }
            if let Some(attacks) = &self.options.attacks {
                metrics.attacks = attack_set(&net, set, attacks, progress)?;
            }
            tracing::info!(
                "{label}: accuracy {:.4}, CE {:.4}, ECE {:.4}",
                metrics.accuracy,
                metrics.ce_mean,
                metrics.ece
            );
            results.insert(set.name.clone(), metrics);
        }
        let report = EvalReport {
            hkd_version: HKD_VERSION.to_string(),
            settings_hash,
            weights: weights_label,
            sets: results,
            temperature,
        };
        match target {
            Target::Run(run) => run.write_eval(&report)?,
            Target::Checkpoint { .. } => {
                let mut text = serde_json::to_string_pretty(&report).map_err(|e| {
                    EvalError::MetricInput(format!("cannot serialise the report: {e}"))
                })?;
                text.push('\n');
                write_atomic(&report_path, text.as_bytes())
                    .map_err(|e| EvalError::io("write", &report_path, e))?;
            }
        }
        let generalization = match generalization_array(&report.sets) {
            Some(values) => {
                let path = target.generalization_path()?;
                write_npy(&path, &[2, 3], &values)?;
                Some(path)
            }
            None => None,
        };
        Ok(RunResult::Evaluated {
            report,
            report_path,
            generalization,
        })
    }
}

fn short_name(target: &Target) -> String {
    target
        .path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| target.path().display().to_string())
}

fn read_report(path: &Path) -> Result<EvalReport> {
    let text = std::fs::read_to_string(path).map_err(|e| EvalError::io("read", path, e))?;
    serde_json::from_str(&text).map_err(|e| EvalError::Npy {
        path: path.to_path_buf(),
        reason: format!("not a valid evaluation report: {e}"),
    })
}

/// The original's `<run>_generalization.npy` content when the sets `cifar10`, `cinic` and
/// `imagenet_far` are all present: 2×3 f64, row 0 the accuracies in percent
/// (`100·correct/total`, as the original), row 1 the sums of batch-mean cross-entropies
/// ([`SetMetrics::ce_sum_batch_means`]), columns in that set order.
pub fn generalization_array(sets: &BTreeMap<String, SetMetrics>) -> Option<[f64; 6]> {
    let m: Vec<&SetMetrics> = GENERALIZATION_SETS
        .iter()
        .map(|n| sets.get(*n))
        .collect::<Option<_>>()?;
    Some([
        100.0 * m[0].accuracy,
        100.0 * m[1].accuracy,
        100.0 * m[2].accuracy,
        m[0].ce_sum_batch_means,
        m[1].ce_sum_batch_means,
        m[2].ce_sum_batch_means,
    ])
}

/// Everything that decides an evaluation's result; its hash is [`EvalReport::settings_hash`].
#[derive(Debug, Serialize)]
pub struct SettingsHashInput<'a> {
    /// [`METRICS_VERSION`].
    pub metrics_version: u32,
    /// Architecture name.
    pub arch: &'a str,
    /// Outputs of the network.
    pub classes: usize,
    /// Weights file name (relative to the run).
    pub weights_file: &'a str,
    /// SHA-256 of the weights file's bytes.
    pub weights_sha256: &'a str,
    /// (set name, content hash) per set, in the order evaluated.
    pub sets: Vec<(&'a str, &'a str)>,
    /// Evaluation batch size.
    pub batch_size: usize,
    /// Batch size of the original's summed loss.
    pub ce_batch_size: usize,
    /// Attacks, if any.
    pub attacks: Option<&'a AttackSettings>,
    /// The set the temperature is fitted on, if any.
    pub calibrate_on: Option<&'a str>,
}

/// SHA-256 (hex) of the canonical JSON of `input`.
pub fn settings_hash(input: &SettingsHashInput<'_>) -> Result<String> {
    let json = serde_json::to_string(input)
        .map_err(|e| EvalError::MetricInput(format!("cannot serialise the settings: {e}")))?;
    Ok(hex(&Sha256::digest(json.as_bytes())))
}

/// SHA-256 (hex) of a file's bytes ([`hkd_rundir::sha256_file`]).
pub fn sha256_file(path: &Path) -> Result<String> {
    hkd_rundir::sha256_file(path).map_err(|e| EvalError::io("read", path, e))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_stems_drop_weight_extensions() {
        assert_eq!(
            checkpoint_stem(Path::new("a/student_x_best.pth.tar")),
            "student_x_best"
        );
        assert_eq!(checkpoint_stem(Path::new("m.safetensors")), "m");
        assert_eq!(checkpoint_stem(Path::new("weights")), "weights");
        let t = Target::Checkpoint {
            path: PathBuf::from("d/s_best.pth.tar"),
            arch: "resnet8".into(),
            classes: 10,
        };
        assert_eq!(t.report_path(), PathBuf::from("d/s_best.eval.json"));
        assert_eq!(
            t.generalization_path().unwrap(),
            PathBuf::from("d/s_best_generalization.npy")
        );
    }
}
