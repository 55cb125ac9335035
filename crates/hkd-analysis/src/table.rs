//! The runs table: one row per finished run, every hyperparameter and metric.

use std::collections::{BTreeMap, BTreeSet};

use hkd_rundir::{RunSpec, py_float};
use polars::prelude::*;

use crate::error::{AnalysisError, Result};
use crate::load::RunRecord;

/// The default grouping keys of `average_results.csv`: the grid's usual axes.
pub const DEFAULT_GROUP_KEYS: [&str; 7] = [
    "teacher",
    "student",
    "distil_fn",
    "lambda",
    "gamma",
    "temperature_teacher",
    "temperature_human",
];

/// Settings of the specification that are not hyperparameters: the repeat's seed and
/// index (runs that differ only in them are repeats of one configuration).
pub const REPEAT_KEYS: [&str; 2] = ["seed", "iter"];

/// Hyperparameter columns beyond [`DEFAULT_GROUP_KEYS`]: every other setting of a run's
/// identity (`hkd_rundir::RunSpec::identity_keys`, so a new setting of the specification
/// becomes a column without a change here), then the dataset's classes and manifest hash.
/// With the default grouping, any of them that takes more than one value in the grid joins
/// the keys, so that runs trained differently are never averaged together.
pub fn other_hyperparameters() -> Vec<String> {
    RunSpec::identity_keys()
        .into_iter()
        .filter(|k| !DEFAULT_GROUP_KEYS.contains(&k.as_str()) && !REPEAT_KEYS.contains(&k.as_str()))
        .chain(["classes".to_string(), "data_manifest_hash".to_string()])
        .collect()
}

/// Configuration columns that are not hyperparameters of the objective but may still be
/// chosen with `--group-by` (`mode` and `teacher_arch` follow from `teacher`).
pub const DESCRIPTIVE_CONFIG_COLUMNS: [&str; 8] = [
    "mode",
    "teacher_arch",
    "iter",
    "seed",
    "device",
    "hkd_version",
    "data_dir",
    "run_name",
];

/// Every column that may be a `--group-by` key.
pub fn groupable_columns() -> Vec<String> {
    DEFAULT_GROUP_KEYS
        .iter()
        .map(|s| s.to_string())
        .chain(other_hyperparameters())
        .chain(DESCRIPTIVE_CONFIG_COLUMNS.iter().map(|s| s.to_string()))
        .collect()
}

/// The keys of a serialized specification whose values are lists.
fn list_keys(value: &serde_json::Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if let serde_json::Value::Object(map) = value {
        for (k, v) in map {
            match v {
                serde_json::Value::Object(_) => out.extend(list_keys(v)),
                serde_json::Value::Array(_) => {
                    out.insert(k.clone());
                }
                _ => {}
            }
        }
    }
    out
}

/// A column of one identity setting: unsigned integers, floats or text, whichever all
/// present values parse as (an optional setting left unset is null); a list setting
/// (`step_milestones`) is always text, so that its column has one type in every grid.
fn identity_column(name: &str, values: Vec<Option<String>>, list: bool) -> Column {
    let present = || values.iter().flatten();
    if list {
        return Column::new(name.into(), values);
    }
    if present().all(|v| v.parse::<u64>().is_ok()) {
        let parsed: Vec<Option<u64>> = values
            .iter()
            .map(|v| v.as_ref().and_then(|v| v.parse().ok()))
            .collect();
        return Column::new(name.into(), parsed);
    }
    if present().all(|v| v.parse::<f64>().is_ok()) {
        let parsed: Vec<Option<f64>> = values
            .iter()
            .map(|v| v.as_ref().and_then(|v| v.parse().ok()))
            .collect();
        return Column::new(name.into(), parsed);
    }
    Column::new(name.into(), values)
}

/// One robustness result column family: attack name and ε, and its column tag.
#[derive(Debug, Clone, PartialEq)]
pub struct AttackColumns {
    pub attack: String,
    pub eps: f64,
    /// `fgsm_eps2_255` for ε = 2/255, `pgd_eps0p01` for ε = 0.01.
    pub tag: String,
}

/// The evaluation columns present for one named evaluation set.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalSetColumns {
    /// The set's name in `eval.json` (`cifar10`, `cinic`, `imagenet_far`, `val`, …).
    pub set: String,
    /// Some run has human-agreement metrics on this set.
    pub human: bool,
    /// Some run recorded its mean confidence (and reliability bins) on this set.
    pub confidence: bool,
    /// Some run has temperature-scaled metrics on this set (`hkd-eval --calibrate-on`).
    pub scaled: bool,
    /// Some run has temperature-scaled human metrics on this set.
    pub scaled_human: bool,
    /// Attacks some run was evaluated with on this set, by attack then ε.
    pub attacks: Vec<AttackColumns>,
}

impl EvalSetColumns {
    /// The per-run metric suffixes that `average_results.csv` averages (mean and std).
    pub fn averaged_metrics(&self) -> Vec<String> {
        let mut m: Vec<String> = ["acc", "ce", "ce_sum_batch_means", "ece", "brier"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if self.confidence {
            m.extend(["confidence", "gap"].map(String::from));
        }
        if self.human {
            m.extend(
                ["human_ce", "human_kl", "human_majority_agreement"]
                    .iter()
                    .map(|s| s.to_string()),
            );
        }
        if self.scaled {
            m.extend(["ts_ce", "ts_ece", "ts_brier", "ts_confidence", "ts_gap"].map(String::from));
        }
        if self.scaled_human {
            m.extend(["ts_human_ce", "ts_human_kl"].map(String::from));
        }
        for a in &self.attacks {
            m.push(format!("{}_acc", a.tag));
            m.push(format!("{}_ce", a.tag));
        }
        m
    }

    /// Column name `eval_<set>_<metric>`.
    pub fn column(&self, metric: &str) -> String {
        eval_column(&self.set, metric)
    }
}

/// `eval_<set>_<metric>`, the name of an evaluation column of `runs.csv`.
pub fn eval_column(set: &str, metric: &str) -> String {
    format!("eval_{set}_{metric}")
}

/// The column tag of an attack at `eps`: `<attack>_eps<k>_255` when ε is a whole multiple
/// k of 1/255 (as usual in pixel space), else `<attack>_eps<ε with . as p>`.
pub fn attack_tag(attack: &str, eps: f64) -> String {
    let k = (eps * 255.0).round();
    if k >= 1.0 && (eps * 255.0 - k).abs() < 1e-6 {
        format!("{attack}_eps{}_255", k as u64)
    } else {
        format!("{attack}_eps{}", py_float(eps).replace('.', "p"))
    }
}

impl RunsTable {
    /// Some run has a fitted temperature (columns `eval_temperature_set`, `eval_temperature`).
    pub fn has_temperature(&self) -> bool {
        self.frame.column("eval_temperature").is_ok()
    }
}

/// The runs table and what its evaluation columns are.
#[derive(Debug, Clone)]
pub struct RunsTable {
    /// One row per run, in path order (see `docs/analysis.md` for every column).
    pub frame: DataFrame,
    /// Evaluation sets found in any run's `eval.json`, by name.
    pub eval_sets: Vec<EvalSetColumns>,
}

fn eval_schema(runs: &[RunRecord]) -> Vec<EvalSetColumns> {
    let mut sets: BTreeMap<String, EvalSetColumns> = BTreeMap::new();
    for r in runs {
        let Some(report) = &r.eval else { continue };
        for (name, m) in &report.sets {
            let entry = sets.entry(name.clone()).or_insert_with(|| EvalSetColumns {
                set: name.clone(),
                human: false,
                confidence: false,
                scaled: false,
                scaled_human: false,
                attacks: Vec::new(),
            });
            entry.human |= m.human.is_some();
            entry.confidence |= m.mean_confidence.is_some();
            if let Some(ts) = &m.temperature_scaled {
                entry.scaled = true;
                entry.scaled_human |= ts.human.is_some();
            }
            for a in &m.attacks {
                let tag = attack_tag(&a.attack, a.eps);
                if !entry.attacks.iter().any(|x| x.tag == tag) {
                    entry.attacks.push(AttackColumns {
                        attack: a.attack.clone(),
                        eps: a.eps,
                        tag,
                    });
                }
            }
        }
    }
    sets.into_values()
        .map(|mut set| {
            set.attacks
                .sort_by(|a, b| a.attack.cmp(&b.attack).then(a.eps.total_cmp(&b.eps)));
            set
        })
        .collect()
}

fn str_col(name: &str, values: Vec<String>) -> Column {
    Column::new(name.into(), values)
}

fn f64_col(name: &str, values: Vec<f64>) -> Column {
    Column::new(name.into(), values)
}

fn opt_f64_col(name: &str, values: Vec<Option<f64>>) -> Column {
    Column::new(name.into(), values)
}

fn u32_col(name: &str, values: Vec<u32>) -> Column {
    Column::new(name.into(), values)
}

fn u64_col(name: &str, values: Vec<u64>) -> Column {
    Column::new(name.into(), values)
}

/// Builds the runs table (one row per run, in the order given).
pub fn runs_table(runs: &[RunRecord]) -> Result<RunsTable> {
    let eval_sets = eval_schema(runs);
    let n = runs.len();
    let s = |f: &dyn Fn(&RunRecord) -> String| runs.iter().map(f).collect::<Vec<_>>();
    let f = |f: &dyn Fn(&RunRecord) -> f64| runs.iter().map(f).collect::<Vec<_>>();
    let u = |f: &dyn Fn(&RunRecord) -> u32| runs.iter().map(f).collect::<Vec<_>>();
    let last = |f: &dyn Fn(&hkd_rundir::EpochMetrics) -> f64| {
        runs.iter()
            .map(|r| r.last_epoch().map(f))
            .collect::<Vec<_>>()
    };

    let mut columns = vec![
        str_col("run_dir", s(&|r| r.rel_dir.clone())),
        str_col("run_name", s(&|r| r.config.run_name.clone())),
        str_col("teacher", s(&|r| r.config.teacher.slug().to_string())),
    ];
    // hyperparameters: the identity of the specification, default keys first
    let identities: Vec<BTreeMap<String, String>> = runs
        .iter()
        .map(|r| r.config.spec.identity().into_iter().collect())
        .collect();
    let keys = RunSpec::identity_keys();
    let ordered = DEFAULT_GROUP_KEYS
        .iter()
        .filter(|k| keys.iter().any(|x| x == *k))
        .map(|k| k.to_string())
        .chain(
            keys.iter()
                .filter(|k| {
                    !DEFAULT_GROUP_KEYS.contains(&k.as_str()) && !REPEAT_KEYS.contains(&k.as_str())
                })
                .cloned(),
        );
    let lists: BTreeSet<String> = serde_json::to_value(RunSpec::default())
        .ok()
        .map(|v| list_keys(&v))
        .unwrap_or_default();
    for key in ordered {
        columns.push(identity_column(
            &key,
            identities.iter().map(|m| m.get(&key).cloned()).collect(),
            lists.contains(&key),
        ));
    }
    columns.extend([
        u64_col(
            "classes",
            runs.iter().map(|r| r.config.classes as u64).collect(),
        ),
        str_col("data_manifest_hash", s(&|r| r.config.dataset_hash.clone())),
        // descriptive
        str_col("mode", s(&|r| r.config.mode().to_string())),
        Column::new(
            "teacher_arch".into(),
            runs.iter()
                .map(|r| r.config.teacher.arch().map(str::to_string))
                .collect::<Vec<Option<String>>>(),
        ),
        u32_col("iter", u(&|r| r.config.spec.iter)),
        u64_col("seed", runs.iter().map(|r| r.config.spec.seed).collect()),
        str_col("device", s(&|r| r.config.device.clone())),
        str_col("hkd_version", s(&|r| r.config.hkd_version.clone())),
        str_col(
            "data_dir",
            s(&|r| r.config.spec.data.dir.display().to_string()),
        ),
        // training results
        u32_col("epochs_recorded", u(&|r| r.metrics.len() as u32)),
        u32_col("best_epoch", u(&|r| r.best.epoch)),
        f64_col("val_acc", f(&|r| r.best.val_acc)),
        f64_col("val_loss", f(&|r| r.best.val_loss)),
        opt_f64_col("final_val_acc", last(&|m| m.val_acc)),
        opt_f64_col("final_val_loss", last(&|m| m.val_loss)),
        opt_f64_col("final_train_acc", last(&|m| m.train_acc)),
        opt_f64_col("final_train_total", last(&|m| m.train_total)),
        opt_f64_col("final_lr", last(&|m| m.lr)),
        f64_col(
            "train_seconds",
            f(&|r| r.metrics.iter().map(|m| m.seconds).sum()),
        ),
        f64_col(
            "images_per_s",
            f(&|r| {
                r.metrics.iter().map(|m| m.images_per_s).sum::<f64>()
                    / r.metrics.len().max(1) as f64
            }),
        ),
    ]);

    if runs
        .iter()
        .any(|r| r.eval.as_ref().is_some_and(|e| e.temperature.is_some()))
    {
        fn fit(r: &RunRecord) -> Option<&hkd_rundir::TemperatureFit> {
            r.eval.as_ref().and_then(|e| e.temperature.as_ref())
        }
        columns.push(Column::new(
            "eval_temperature_set".into(),
            runs.iter()
                .map(|r| fit(r).map(|t| t.set.clone()))
                .collect::<Vec<Option<String>>>(),
        ));
        columns.push(opt_f64_col(
            "eval_temperature",
            runs.iter().map(|r| fit(r).map(|t| t.temperature)).collect(),
        ));
    }
    for set in &eval_sets {
        let opt = |name: &str, get: &dyn Fn(&hkd_rundir::SetMetrics) -> Option<f64>| {
            opt_f64_col(
                &set.column(name),
                runs.iter()
                    .map(|r| set_metrics(r, &set.set).and_then(get))
                    .collect(),
            )
        };
        columns.push(Column::new(
            set.column("images").into(),
            runs.iter()
                .map(|r| set_metrics(r, &set.set).map(|m| m.images as u64))
                .collect::<Vec<Option<u64>>>(),
        ));
        columns.push(opt("acc", &|m| Some(m.accuracy)));
        columns.push(opt("ce", &|m| Some(m.ce_mean)));
        columns.push(opt("ce_sum_batch_means", &|m| Some(m.ce_sum_batch_means)));
        columns.push(Column::new(
            set.column("ce_batch_size").into(),
            runs.iter()
                .map(|r| set_metrics(r, &set.set).map(|m| m.ce_batch_size as u64))
                .collect::<Vec<Option<u64>>>(),
        ));
        columns.push(opt("ece", &|m| Some(m.ece)));
        columns.push(opt("brier", &|m| Some(m.brier)));
        if set.confidence {
            columns.push(opt("confidence", &|m| m.mean_confidence));
            columns.push(opt("gap", &|m| m.confidence_gap()));
        }
        if set.human {
            columns.push(opt("human_ce", &|m| m.human.as_ref().map(|h| h.ce)));
            columns.push(opt("human_kl", &|m| m.human.as_ref().map(|h| h.kl)));
            columns.push(opt("human_majority_agreement", &|m| {
                m.human.as_ref().map(|h| h.majority_agreement)
            }));
        }
        if set.scaled {
            let ts = |get: fn(&hkd_rundir::ScaledMetrics) -> f64| {
                move |m: &hkd_rundir::SetMetrics| m.temperature_scaled.as_ref().map(get)
            };
            columns.push(opt("ts_ce", &ts(|t| t.ce_mean)));
            columns.push(opt("ts_ece", &ts(|t| t.ece)));
            columns.push(opt("ts_brier", &ts(|t| t.brier)));
            columns.push(opt("ts_confidence", &ts(|t| t.mean_confidence)));
            columns.push(opt("ts_gap", &|m| {
                m.temperature_scaled
                    .as_ref()
                    .map(|t| t.mean_confidence - m.accuracy)
            }));
        }
        if set.scaled_human {
            let human = |m: &hkd_rundir::SetMetrics| {
                m.temperature_scaled.as_ref().and_then(|t| t.human.clone())
            };
            columns.push(opt("ts_human_ce", &|m| human(m).map(|h| h.ce)));
            columns.push(opt("ts_human_kl", &|m| human(m).map(|h| h.kl)));
        }
        for a in &set.attacks {
            let find = |m: &hkd_rundir::SetMetrics| {
                m.attacks
                    .iter()
                    .find(|x| attack_tag(&x.attack, x.eps) == a.tag)
                    .cloned()
            };
            columns.push(opt(&format!("{}_acc", a.tag), &|m| {
                find(m).map(|x| x.accuracy)
            }));
            columns.push(opt(&format!("{}_ce", a.tag), &|m| {
                find(m).map(|x| x.ce_mean)
            }));
        }
    }

    let frame = DataFrame::new(n, columns).map_err(AnalysisError::table("build runs table"))?;
    Ok(RunsTable { frame, eval_sets })
}

fn set_metrics<'a>(r: &'a RunRecord, set: &str) -> Option<&'a hkd_rundir::SetMetrics> {
    r.eval.as_ref().and_then(|e| e.sets.get(set))
}

/// Hyperparameter columns (of [`OTHER_HYPERPARAMETERS`]) that take more than one value.
pub(crate) fn varying_columns(frame: &DataFrame, candidates: &[&str]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for name in candidates {
        let col = frame
            .column(name)
            .map_err(AnalysisError::table("look up hyperparameter column"))?;
        let distinct: BTreeSet<String> = (0..col.len())
            .map(|i| col.get(i).map(|v| any_value_string(&v)).unwrap_or_default())
            .collect();
        if distinct.len() > 1 {
            out.push(name.to_string());
        }
    }
    Ok(out)
}

/// A cell as text: floats the way Python prints them (`1.0`, `0.25`), strings as they are,
/// null as the empty string.
pub fn any_value_string(v: &AnyValue<'_>) -> String {
    match v {
        AnyValue::Null => String::new(),
        AnyValue::Float64(x) => py_float(*x),
        AnyValue::Float32(x) => py_float(*x as f64),
        AnyValue::String(s) => s.to_string(),
        AnyValue::StringOwned(s) => s.to_string(),
        other => other.to_string(),
    }
}
