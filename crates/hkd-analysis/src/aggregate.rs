//! `average_results.csv`: runs grouped over their repeats (`iter`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use hkd_rundir::GridBest;
use polars::prelude::*;

use crate::error::{AnalysisError, Result};
use crate::paired::t_interval_95;
use crate::table::{
    DEFAULT_GROUP_KEYS, RunsTable, any_value_string, groupable_columns, other_hyperparameters,
    varying_columns,
};

/// The original project's suffixes for its generalisation sets, by hkd evaluation set
/// name: `val_acc_cin` is CINIC-10, `val_acc_im` ImageNet-far. (The original's unsuffixed
/// `val_acc`/`val_loss` are the training validation results.)
pub const LEGACY_SET_SUFFIXES: [(&str, &str); 2] = [("cinic", "_cin"), ("imagenet_far", "_im")];

/// The grouping actually used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grouping {
    /// Key columns, in table order.
    pub keys: Vec<String>,
    /// Keys added to the defaults because they vary in this grid (empty with `--group-by`).
    pub added: Vec<String>,
    /// Notes about the grouping (hyperparameters averaged over, repeated `iter`s).
    pub warnings: Vec<String>,
}

/// Chooses the grouping keys: `group_by` if given (each must be one of
/// [`groupable_columns`]), else [`DEFAULT_GROUP_KEYS`] plus every hyperparameter of
/// [`other_hyperparameters`] that varies. Warns when a hyperparameter that is not a key
/// varies inside a group (it is averaged over) and when a group has the same `iter` twice.
pub fn resolve_grouping(table: &RunsTable, group_by: Option<&[String]>) -> Result<Grouping> {
    let allowed = groupable_columns();
    let (keys, added) = match group_by {
        None => {
            let others = other_hyperparameters();
            let others: Vec<&str> = others.iter().map(String::as_str).collect();
            let added = varying_columns(&table.frame, &others)?;
            let mut keys: Vec<String> = DEFAULT_GROUP_KEYS.iter().map(|s| s.to_string()).collect();
            keys.extend(added.iter().cloned());
            (keys, added)
        }
        Some(list) => {
            let mut keys: Vec<String> = Vec::new();
            for k in list.iter().map(|k| k.trim()).filter(|k| !k.is_empty()) {
                if !allowed.iter().any(|a| a == k) {
                    return Err(AnalysisError::UnknownGroupKey {
                        key: k.to_string(),
                        allowed: allowed.join(", "),
                    });
                }
                if !keys.iter().any(|x| x == k) {
                    keys.push(k.to_string());
                }
            }
            if keys.is_empty() {
                return Err(AnalysisError::EmptyGroupBy);
            }
            (keys, Vec::new())
        }
    };

    let frame = &table.frame;
    let key_cols = keys
        .iter()
        .map(|k| frame.column(k))
        .collect::<PolarsResult<Vec<_>>>()
        .map_err(AnalysisError::table("look up group keys"))?;
    let row_key = |i: usize| -> String {
        key_cols
            .iter()
            .map(|c| c.get(i).map(|v| any_value_string(&v)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\u{1f}")
    };
    let row_keys: Vec<String> = (0..frame.height()).map(row_key).collect();

    let mut warnings = Vec::new();
    let others = other_hyperparameters();
    let hyper: Vec<&str> = DEFAULT_GROUP_KEYS
        .iter()
        .copied()
        .chain(others.iter().map(String::as_str))
        .filter(|h| !keys.iter().any(|k| k == h))
        .collect();
    for h in hyper {
        let col = frame
            .column(h)
            .map_err(AnalysisError::table("look up hyperparameter column"))?;
        let mut values: HashMap<&str, BTreeSet<String>> = HashMap::new();
        for (i, key) in row_keys.iter().enumerate() {
            let v = col.get(i).map(|v| any_value_string(&v)).unwrap_or_default();
            values.entry(key.as_str()).or_default().insert(v);
        }
        let mixed: Vec<&BTreeSet<String>> = values.values().filter(|s| s.len() > 1).collect();
        if !mixed.is_empty() {
            let all: BTreeSet<&String> = mixed.iter().flat_map(|s| s.iter()).collect();
            warnings.push(format!(
                "`{h}` is not a group key but varies inside {} group(s) (values {}): those runs \
                 are averaged together; add it to --group-by to keep them apart",
                mixed.len(),
                all.into_iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    if !keys.iter().any(|k| k == "iter") {
        let iter = frame
            .column("iter")
            .and_then(|c| c.u32().cloned())
            .map_err(AnalysisError::table("read iter column"))?;
        let run_dir = frame
            .column("run_dir")
            .and_then(|c| c.str().cloned())
            .map_err(AnalysisError::table("read run_dir column"))?;
        let mut seen: HashMap<(&str, Option<u32>), &str> = HashMap::new();
        for (i, key) in row_keys.iter().enumerate() {
            let dir = run_dir.get(i).unwrap_or("");
            if let Some(first) = seen.insert((key.as_str(), iter.get(i)), dir) {
                warnings.push(format!(
                    "{first} and {dir} are the same configuration with the same iter {}: both \
                     are counted as repeats",
                    iter.get(i).unwrap_or(0)
                ));
            }
        }
    }
    Ok(Grouping {
        keys,
        added,
        warnings,
    })
}

fn best_first(
    descending_metric: &str,
    ascending_tiebreak: &str,
) -> (Vec<Expr>, SortMultipleOptions) {
    (
        vec![
            col(descending_metric),
            col(ascending_tiebreak),
            col("run_dir"),
        ],
        SortMultipleOptions::default()
            .with_order_descending_multi([true, false, false])
            .with_nulls_last(true)
            .with_maintain_order(true),
    )
}

/// Groups the runs table by `keys` (over repeats) and aggregates; see `docs/analysis.md`
/// for every column. Standard deviations are sample standard deviations (ddof = 1, as
/// pandas' `std`), null for a group of one run. Rows are sorted by the keys.
pub fn average_results(table: &RunsTable, keys: &[String]) -> Result<DataFrame> {
    let (by, opts) = best_first("val_acc", "val_loss");
    let mut aggs: Vec<Expr> = vec![
        len().cast(DataType::UInt32).alias("runs"),
        col("val_acc").mean().alias("val_acc_mean"),
        col("val_acc").std(1).alias("val_acc_std"),
        // the last epoch's accuracy (`final_val_acc`), beside the best epoch's (`val_acc`)
        col("final_val_acc").mean().alias("val_acc_last_mean"),
        col("final_val_acc").std(1).alias("val_acc_last_std"),
        col("final_val_acc")
            .count()
            .cast(DataType::UInt32)
            .alias("__val_acc_last_n"),
        col("val_loss").mean().alias("val_loss_mean"),
        col("val_loss").std(1).alias("val_loss_std"),
        col("val_acc").max().alias("val_acc_max"),
        col("iter")
            .sort_by(by.clone(), opts.clone())
            .first()
            .alias("best_iter"),
        col("run_dir")
            .sort_by(by, opts)
            .first()
            .alias("best_run_dir"),
        col("best_epoch").mean().alias("best_epoch_mean"),
        col("train_seconds").mean().alias("train_seconds_mean"),
    ];
    if table.has_temperature() {
        aggs.push(
            col("eval_temperature")
                .mean()
                .alias("eval_temperature_mean"),
        );
        aggs.push(col("eval_temperature").std(1).alias("eval_temperature_std"));
    }
    for set in &table.eval_sets {
        let acc = set.column("acc");
        aggs.push(
            col(acc.as_str())
                .count()
                .cast(DataType::UInt32)
                .alias(set.column("runs")),
        );
        for m in set.averaged_metrics() {
            let c = set.column(&m);
            aggs.push(col(c.as_str()).mean().alias(format!("{c}_mean")));
            aggs.push(col(c.as_str()).std(1).alias(format!("{c}_std")));
        }
    }
    // The original project's generalisation columns (CINIC-10, ImageNet-far).
    let mut legacy_after: Vec<Expr> = Vec::new();
    for (set_name, sfx) in LEGACY_SET_SUFFIXES {
        let Some(set) = table.eval_sets.iter().find(|s| s.set == set_name) else {
            continue;
        };
        let acc = set.column("acc");
        let ce = set.column("ce");
        // Nulls sort last, so the first is an evaluated run whenever the group has one;
        // `best_iter<sfx>` is blanked below for groups without any.
        let (by, opts) = best_first(&acc, &ce);
        aggs.push(col(acc.as_str()).max().alias(format!("__max_acc{sfx}")));
        aggs.push(
            col("iter")
                .sort_by(by, opts)
                .first()
                .alias(format!("__best_iter{sfx}")),
        );
        legacy_after.push(
            when(col(set.column("runs")).gt(lit(0u32)))
                .then(col(format!("__best_iter{sfx}")))
                .otherwise(lit(NULL).cast(DataType::UInt32))
                .alias(format!("best_iter{sfx}")),
        );
        legacy_after.push((col(format!("{acc}_mean")) * lit(100.0)).alias(format!("val_acc{sfx}")));
        legacy_after.push(
            col(format!("{}_mean", set.column("ce_sum_batch_means")))
                .alias(format!("val_loss{sfx}")),
        );
        legacy_after
            .push((col(format!("__max_acc{sfx}")) * lit(100.0)).alias(format!("max_acc{sfx}")));
    }

    let key_exprs: Vec<Expr> = keys.iter().map(|k| col(k.as_str())).collect();
    let key_names: Vec<PlSmallStr> = keys.iter().map(|k| k.as_str().into()).collect();
    let mut legacy: Vec<Expr> = Vec::new();
    if keys.iter().any(|k| k == "temperature_human") {
        legacy.push(col("temperature_human").alias("temperature_h"));
    }
    if keys.iter().any(|k| k == "temperature_teacher") {
        legacy.push(col("temperature_teacher").alias("temperature_t"));
    }
    legacy.push((col("val_acc_mean") * lit(100.0)).alias("val_acc"));
    legacy.push(col("val_loss_mean").alias("val_loss"));
    legacy.push((col("val_acc_max") * lit(100.0)).alias("max_acc"));
    legacy.extend(legacy_after);

    let mut out = table
        .frame
        .clone()
        .lazy()
        .group_by(key_exprs)
        .agg(aggs)
        .sort(
            key_names,
            SortMultipleOptions::default().with_maintain_order(true),
        )
        .with_columns(legacy)
        .collect()
        .map_err(AnalysisError::table("group runs over repeats"))?;
    insert_ci95(&mut out, "val_acc", "runs")?;
    insert_ci95(&mut out, "val_acc_last", "__val_acc_last_n")?;
    let scratch: Vec<PlSmallStr> = out
        .get_column_names()
        .into_iter()
        .filter(|n| n.starts_with("__"))
        .cloned()
        .collect();
    for n in scratch {
        out = out
            .drop(n.as_str())
            .map_err(AnalysisError::table("drop scratch column"))?;
    }
    Ok(out)
}

/// Inserts `<metric>_ci95_low` and `<metric>_ci95_high` right after `<metric>_std`: the 95 %
/// Student-t interval of `<metric>_mean` over the `n_col` values of each group
/// ([`t_interval_95`]), null for fewer than two values.
fn insert_ci95(out: &mut DataFrame, metric: &str, n_col: &str) -> Result<()> {
    let mean = f64_at(out, &format!("{metric}_mean"))?;
    let sd = f64_at(out, &format!("{metric}_std"))?;
    let n = u32_at(out, n_col)?;
    let (low, high): (Vec<Option<f64>>, Vec<Option<f64>>) = (0..out.height())
        .map(|i| match (mean[i], sd[i], n[i]) {
            (Some(m), Some(s), Some(n)) => t_interval_95(m, s, n as usize).unzip(),
            _ => (None, None),
        })
        .unzip();
    let at = out
        .try_get_column_index(&format!("{metric}_std"))
        .map_err(AnalysisError::table("place the interval columns"))?
        + 1;
    out.insert_column(at, Column::new(format!("{metric}_ci95_low").into(), low))
        .and_then(|df| {
            df.insert_column(
                at + 1,
                Column::new(format!("{metric}_ci95_high").into(), high),
            )
        })
        .map_err(AnalysisError::table("add the interval columns"))?;
    Ok(())
}

/// Evaluation results of one group on one set.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalSummary {
    /// Runs of the group with results on this set.
    pub runs: u32,
    pub acc_mean: Option<f64>,
    pub acc_std: Option<f64>,
    pub ce_mean: Option<f64>,
    pub ce_std: Option<f64>,
    pub human_ce_mean: Option<f64>,
    pub human_ce_std: Option<f64>,
}

/// One row of `average_results.csv`, for figures and summaries.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSummary {
    /// `(key, value as text)` in key order (floats as Python prints them).
    pub keys: Vec<(String, String)>,
    /// λ of the group, when `lambda` is a key.
    pub lambda: Option<f64>,
    pub runs: u32,
    /// Best-epoch validation accuracy (`best.json`: the highest over the run's epochs),
    /// mean and sample sd over the runs.
    pub val_acc_mean: f64,
    pub val_acc_std: Option<f64>,
    /// Its 95 % Student-t interval over the runs (`None` for one run).
    pub val_acc_ci95: Option<(f64, f64)>,
    /// Last-epoch validation accuracy (the final line of `metrics.jsonl`), mean, sample sd
    /// and 95 % Student-t interval over the runs (`None` where undefined).
    pub val_acc_last_mean: Option<f64>,
    pub val_acc_last_std: Option<f64>,
    pub val_acc_last_ci95: Option<(f64, f64)>,
    pub val_loss_mean: f64,
    pub val_loss_std: Option<f64>,
    pub val_acc_max: f64,
    pub best_iter: u32,
    /// Best run of the group (highest best validation accuracy; ties: lower validation
    /// loss, then path order), relative to the grid root.
    pub best_run_dir: String,
    /// By evaluation set name; sets without results for this group are absent.
    pub eval: BTreeMap<String, EvalSummary>,
}

impl GroupSummary {
    /// The value of key `k`, if it is a key.
    pub fn key(&self, k: &str) -> Option<&str> {
        self.keys
            .iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.as_str())
    }

    /// `k=v` pairs joined by `, ` for the given keys.
    pub fn label(&self, keys: &[&str]) -> String {
        self.keys
            .iter()
            .filter(|(k, _)| keys.contains(&k.as_str()))
            .map(|(k, v)| format!("{}={v}", short_key(k)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A file-name-safe name of the group, from all its keys.
    pub fn slug(&self) -> String {
        let raw = self
            .keys
            .iter()
            .map(|(k, v)| match k.as_str() {
                "teacher" | "student" | "distil_fn" => v.clone(),
                "lambda" => format!("l{v}"),
                "gamma" => format!("g{v}"),
                "temperature_teacher" => format!("tt{v}"),
                "temperature_human" => format!("th{v}"),
                _ => format!("{k}{v}"),
            })
            .collect::<Vec<_>>()
            .join("_");
        let safe: String = raw
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        // File systems take 255 bytes per name; figures add a suffix and an extension. A
        // longer slug (a teacher run's slug, many objective settings) keeps its start and
        // ends in a hash of the whole, so that it stays unique.
        if safe.len() <= MAX_SLUG {
            return safe;
        }
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(safe.as_bytes());
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("{}-h{hex}", &safe[..MAX_SLUG - 18])
    }
}

/// The longest [`GroupSummary::slug`], in bytes (ASCII).
pub const MAX_SLUG: usize = 160;

/// Short names of keys in labels and file names.
pub fn short_key(k: &str) -> &str {
    match k {
        "lambda" => "λ",
        "gamma" => "γ",
        "temperature_teacher" => "Tt",
        "temperature_human" => "Th",
        "distil_fn" => "D",
        "human_smoothing" => "ε",
        "label_smoothing" => "LS",
        "human_target" => "target",
        "train_split" => "split",
        other => other,
    }
}

fn f64_at(df: &DataFrame, name: &str) -> Result<Vec<Option<f64>>> {
    let c = df
        .column(name)
        .map_err(AnalysisError::table("read aggregate column"))?
        .cast(&DataType::Float64)
        .map_err(AnalysisError::table("read aggregate column as float"))?;
    let ca = c
        .f64()
        .map_err(AnalysisError::table("read aggregate column as float"))?;
    Ok((0..ca.len()).map(|i| ca.get(i)).collect())
}

fn u32_at(df: &DataFrame, name: &str) -> Result<Vec<Option<u32>>> {
    let c = df
        .column(name)
        .map_err(AnalysisError::table("read aggregate column"))?
        .cast(&DataType::UInt32)
        .map_err(AnalysisError::table("read aggregate column as integer"))?;
    let ca = c
        .u32()
        .map_err(AnalysisError::table("read aggregate column as integer"))?;
    Ok((0..ca.len()).map(|i| ca.get(i)).collect())
}

/// The rows of an `average_results` frame as [`GroupSummary`]s, in table order.
pub fn group_summaries(
    averages: &DataFrame,
    keys: &[String],
    table: &RunsTable,
) -> Result<Vec<GroupSummary>> {
    let n = averages.height();
    let key_cols = keys
        .iter()
        .map(|k| averages.column(k))
        .collect::<PolarsResult<Vec<_>>>()
        .map_err(AnalysisError::table("read group keys"))?;
    let runs = u32_at(averages, "runs")?;
    let acc_mean = f64_at(averages, "val_acc_mean")?;
    let acc_std = f64_at(averages, "val_acc_std")?;
    let interval = |metric: &str| -> Result<Vec<Option<(f64, f64)>>> {
        let low = f64_at(averages, &format!("{metric}_ci95_low"))?;
        let high = f64_at(averages, &format!("{metric}_ci95_high"))?;
        Ok(low.into_iter().zip(high).map(|(l, h)| l.zip(h)).collect())
    };
    let acc_ci = interval("val_acc")?;
    let last_mean = f64_at(averages, "val_acc_last_mean")?;
    let last_std = f64_at(averages, "val_acc_last_std")?;
    let last_ci = interval("val_acc_last")?;
    let loss_mean = f64_at(averages, "val_loss_mean")?;
    let loss_std = f64_at(averages, "val_loss_std")?;
    let acc_max = f64_at(averages, "val_acc_max")?;
    let best_iter = u32_at(averages, "best_iter")?;
    let best_dir_ca = averages
        .column("best_run_dir")
        .and_then(|c| c.str().cloned())
        .map_err(AnalysisError::table("read best_run_dir"))?;
    let best_dir: Vec<Option<String>> = (0..best_dir_ca.len())
        .map(|i| best_dir_ca.get(i).map(str::to_string))
        .collect();
    let lambda = if keys.iter().any(|k| k == "lambda") {
        Some(f64_at(averages, "lambda")?)
    } else {
        None
    };
    /// Mean and std columns of one metric.
    type MeanStd = (Vec<Option<f64>>, Vec<Option<f64>>);
    struct SetCols {
        name: String,
        runs: Vec<Option<u32>>,
        acc: MeanStd,
        ce: MeanStd,
        human: Option<MeanStd>,
    }
    let mut sets = Vec::new();
    for set in &table.eval_sets {
        let pair = |m: &str| -> Result<MeanStd> {
            let c = set.column(m);
            Ok((
                f64_at(averages, &format!("{c}_mean"))?,
                f64_at(averages, &format!("{c}_std"))?,
            ))
        };
        sets.push(SetCols {
            name: set.set.clone(),
            runs: u32_at(averages, &set.column("runs"))?,
            acc: pair("acc")?,
            ce: pair("ce")?,
            human: if set.human {
                Some(pair("human_ce")?)
            } else {
                None
            },
        });
    }

    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut eval = BTreeMap::new();
        for s in &sets {
            let r = s.runs[i].unwrap_or(0);
            if r == 0 {
                continue;
            }
            eval.insert(
                s.name.clone(),
                EvalSummary {
                    runs: r,
                    acc_mean: s.acc.0[i],
                    acc_std: s.acc.1[i],
                    ce_mean: s.ce.0[i],
                    ce_std: s.ce.1[i],
                    human_ce_mean: s.human.as_ref().and_then(|h| h.0[i]),
                    human_ce_std: s.human.as_ref().and_then(|h| h.1[i]),
                },
            );
        }
        out.push(GroupSummary {
            keys: keys
                .iter()
                .zip(&key_cols)
                .map(|(k, c)| {
                    let v = c.get(i).map(|v| any_value_string(&v)).unwrap_or_default();
                    (k.clone(), v)
                })
                .collect(),
            lambda: lambda.as_ref().and_then(|l| l[i]),
            runs: runs[i].unwrap_or(0),
            val_acc_mean: acc_mean[i].unwrap_or(f64::NAN),
            val_acc_std: acc_std[i],
            val_acc_ci95: acc_ci[i],
            val_acc_last_mean: last_mean[i],
            val_acc_last_std: last_std[i],
            val_acc_last_ci95: last_ci[i],
            val_loss_mean: loss_mean[i].unwrap_or(f64::NAN),
            val_loss_std: loss_std[i],
            val_acc_max: acc_max[i].unwrap_or(f64::NAN),
            best_iter: best_iter[i].unwrap_or(0),
            best_run_dir: best_dir[i].clone().unwrap_or_default(),
            eval,
        });
    }
    Ok(out)
}

/// The best group by mean validation accuracy (ties: lower mean validation loss, then
/// table order), and its best run, as the grid root's `best.json`. `None` without groups.
///
/// [`GridBest::std_val_acc`] is 0 for a group of one run (the sample standard deviation is
/// undefined there; `runs` says so).
pub fn grid_best(groups: &[GroupSummary]) -> Option<GridBest> {
    let best = groups.iter().reduce(|a, b| {
        let better = b.val_acc_mean > a.val_acc_mean
            || (b.val_acc_mean == a.val_acc_mean && b.val_loss_mean < a.val_loss_mean);
        if better { b } else { a }
    })?;
    Some(GridBest {
        run_dir: best.best_run_dir.clone().into(),
        group: best.keys.iter().cloned().collect(),
        mean_val_acc: best.val_acc_mean,
        std_val_acc: best.val_acc_std.unwrap_or(0.0),
        runs: best.runs as usize,
    })
}
