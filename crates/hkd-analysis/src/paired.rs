//! Paired comparison: every configuration against one reference configuration, repeat by
//! repeat (`iter`), with 95 % Student-t intervals over the pairs (`paired_deltas.csv`).
//!
//! Repeat `i` of every arm of a study shares its initial weights, data order and
//! augmentation with repeat `i` of the reference (the random streams depend only on seed and
//! iter), so the difference of two arms is estimated per repeat: `d_i = x_i − r_i`, its mean
//! `d̄`, sample sd `s` (ddof = 1) and the interval `d̄ ± t_{0.975, n−1} · s / √n`.

use std::collections::{BTreeMap, BTreeSet};

use polars::prelude::*;

use crate::aggregate::GroupSummary;
use crate::error::{AnalysisError, Result};
use crate::table::{RunsTable, any_value_string};

/// Two-sided 95 % quantiles `t_{0.975, df}` of Student's t for df = 1…30.
const T975: [f64; 30] = [
    12.706204736,
    4.302652730,
    3.182446305,
    2.776445105,
    2.570581836,
    2.446911851,
    2.364624252,
    2.306004135,
    2.262157163,
    2.228138852,
    2.200985160,
    2.178812830,
    2.160368656,
    2.144786688,
    2.131449546,
    2.119905299,
    2.109815578,
    2.100922040,
    2.093024054,
    2.085963447,
    2.079613845,
    2.073873068,
    2.068657610,
    2.063898562,
    2.059538553,
    2.055529439,
    2.051830516,
    2.048407142,
    2.045229642,
    2.042272456,
];

/// `t_{0.975, df}` for df ≥ 30 at 30, 40, 60, 120 and ∞ (the normal quantile).
const T975_TAIL: [(f64, f64); 5] = [
    (30.0, 2.042272456),
    (40.0, 2.021075390),
    (60.0, 2.000297822),
    (120.0, 1.979930405),
    (f64::INFINITY, 1.959963985),
];

/// The 0.975 quantile of Student's t with `df` degrees of freedom (the half-width factor of
/// a two-sided 95 % interval): exact to 9 decimals for df ≤ 30, 40, 60, 120; between
/// those, linear in 1/df (error below 1e-4). `None` for df = 0.
pub fn t_quantile_975(df: usize) -> Option<f64> {
    match df {
        0 => None,
        1..=30 => Some(T975[df - 1]),
        _ => {
            let inv = 1.0 / df as f64;
            T975_TAIL.windows(2).find_map(|w| {
                let ((d0, q0), (d1, q1)) = (w[0], w[1]);
                (df as f64 >= d0 && (df as f64) <= d1).then(|| {
                    let (i0, i1) = (1.0 / d0, 1.0 / d1);
                    q0 + (q1 - q0) * (i0 - inv) / (i0 - i1)
                })
            })
        }
    }
}

/// The two-sided 95 % Student-t interval of the mean of `n` values with sample sd `sd`
/// (ddof = 1): `mean ∓ t_{0.975, n−1} · sd / √n`. `None` for fewer than two values. The one
/// interval of this crate: paired deltas and the group means of `average_results.csv`.
pub fn t_interval_95(mean: f64, sd: f64, n: usize) -> Option<(f64, f64)> {
    let t = t_quantile_975(n.saturating_sub(1))?;
    let h = t * sd / (n as f64).sqrt();
    Some((mean - h, mean + h))
}

/// `--paired-against KEY=VALUE[,KEY=VALUE…]`, parsed: the key values that select the
/// reference configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceSelector {
    pub pairs: Vec<(String, String)>,
}

impl std::str::FromStr for ReferenceSelector {
    type Err = AnalysisError;

    /// `teacher=baseline,label_smoothing=0.0`. A part without `=` continues the value
    /// before it, so that list values stay whole (`step_milestones=0.5,0.75`).
    fn from_str(text: &str) -> Result<Self> {
        let bad = |reason: String| AnalysisError::PairedAgainst {
            message: format!(
                "`{text}`: {reason}; expected KEY=VALUE[,KEY=VALUE…] with grouping keys, e.g. \
                 --paired-against teacher=baseline,label_smoothing=0.0"
            ),
        };
        let mut pairs: Vec<(String, String)> = Vec::new();
        for part in text.split(',') {
            match part.split_once('=') {
                Some((k, v)) => {
                    let (k, v) = (k.trim(), v.trim());
                    if k.is_empty() || v.is_empty() {
                        return Err(bad(format!("`{part}` has an empty key or value")));
                    }
                    if pairs.iter().any(|(x, _)| x == k) {
                        return Err(bad(format!("key `{k}` is given twice")));
                    }
                    pairs.push((k.to_string(), v.to_string()));
                }
                None => match pairs.last_mut() {
                    Some((_, v)) if !part.trim().is_empty() => {
                        v.push(',');
                        v.push_str(part.trim());
                    }
                    _ => return Err(bad(format!("`{part}` is not KEY=VALUE"))),
                },
            }
        }
        if pairs.is_empty() {
            return Err(bad("no KEY=VALUE".into()));
        }
        Ok(ReferenceSelector { pairs })
    }
}

/// Whether a group's key value equals a value given on the command line: as text, or as
/// numbers (`0` selects `0.0`).
fn same_value(group: &str, given: &str) -> bool {
    group == given
        || matches!(
            (group.parse::<f64>(), given.parse::<f64>()),
            (Ok(a), Ok(b)) if a == b
        )
}

/// The index of the one group that `selector` selects. Every key must be a grouping key;
/// no match or several matches are errors that list what there is.
pub fn select_reference(
    groups: &[GroupSummary],
    keys: &[String],
    selector: &ReferenceSelector,
) -> Result<usize> {
    for (k, _) in &selector.pairs {
        if !keys.contains(k) {
            return Err(AnalysisError::PairedAgainst {
                message: format!(
                    "`{k}` is not a grouping key of this analysis; the keys are {} (a key is \
                     one when it varies in the grid, or with --group-by)",
                    keys.join(", ")
                ),
            });
        }
    }
    let matched: Vec<usize> = groups
        .iter()
        .enumerate()
        .filter(|(_, g)| {
            selector
                .pairs
                .iter()
                .all(|(k, v)| g.key(k).is_some_and(|gv| same_value(gv, v)))
        })
        .map(|(i, _)| i)
        .collect();
    match matched.as_slice() {
        [one] => Ok(*one),
        [] => {
            let values: Vec<String> = selector
                .pairs
                .iter()
                .map(|(k, _)| {
                    let vs: BTreeSet<&str> = groups.iter().filter_map(|g| g.key(k)).collect();
                    format!(
                        "{k} ∈ {{{}}}",
                        vs.into_iter().collect::<Vec<_>>().join(", ")
                    )
                })
                .collect();
            Err(AnalysisError::PairedAgainst {
                message: format!(
                    "no configuration has {}; the grid has {}",
                    describe(&selector.pairs),
                    values.join("; ")
                ),
            })
        }
        many => {
            let given: Vec<&str> = selector.pairs.iter().map(|(k, _)| k.as_str()).collect();
            let distinguishing: Vec<&str> = keys
                .iter()
                .map(String::as_str)
                .filter(|k| !given.contains(k))
                .filter(|k| {
                    many.iter()
                        .map(|&i| groups[i].key(k).unwrap_or(""))
                        .collect::<BTreeSet<_>>()
                        .len()
                        > 1
                })
                .collect();
            let listed: Vec<String> = many
                .iter()
                .map(|&i| {
                    let values: Vec<String> = distinguishing
                        .iter()
                        .map(|k| format!("{k}={}", groups[i].key(k).unwrap_or("")))
                        .collect();
                    format!("({})", values.join(", "))
                })
                .collect();
            Err(AnalysisError::PairedAgainst {
                message: format!(
                    "{} configurations have {}: {}; add {} to choose one",
                    many.len(),
                    describe(&selector.pairs),
                    listed.join(", "),
                    distinguishing
                        .iter()
                        .map(|k| format!("{k}=…"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            })
        }
    }
}

fn describe(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// For each row of the runs table, the index of its group in `groups` (matched on the
/// key values as text).
pub fn run_groups(
    table: &RunsTable,
    keys: &[String],
    groups: &[GroupSummary],
) -> Result<Vec<Option<usize>>> {
    let cols = keys
        .iter()
        .map(|k| table.frame.column(k))
        .collect::<PolarsResult<Vec<_>>>()
        .map_err(AnalysisError::table("read group keys of runs"))?;
    let index: BTreeMap<Vec<&str>, usize> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| (g.keys.iter().map(|(_, v)| v.as_str()).collect(), i))
        .collect();
    Ok((0..table.frame.height())
        .map(|row| {
            let values: Vec<String> = cols
                .iter()
                .map(|c| c.get(row).map(|v| any_value_string(&v)).unwrap_or_default())
                .collect();
            let values: Vec<&str> = values.iter().map(String::as_str).collect();
            index.get(&values).copied()
        })
        .collect())
}

/// The runs-table columns compared in `paired_deltas.csv`, in order: the best-epoch
/// validation accuracy and CE, then per evaluation set its accuracy, CE, ECE, the signed
/// confidence − accuracy gap, human CE and KL where the set has human labels, and the
/// temperature-scaled CE, ECE, gap, human CE and KL where present.
pub fn paired_metrics(table: &RunsTable) -> Vec<String> {
    let mut out = vec!["val_acc".to_string(), "val_loss".to_string()];
    for set in &table.eval_sets {
        let mut m = vec!["acc", "ce", "ece"];
        if set.confidence {
            m.push("gap");
        }
        if set.human {
            m.extend(["human_ce", "human_kl"]);
        }
        if set.scaled {
            m.extend(["ts_ce", "ts_ece", "ts_gap"]);
        }
        if set.scaled_human {
            m.extend(["ts_human_ce", "ts_human_kl"]);
        }
        out.extend(m.into_iter().map(|x| set.column(x)));
    }
    out
}

/// The endpoints of the summary's paired table: the best-epoch validation accuracy, then
/// per set accuracy, CE, ECE, human CE, and the temperature-scaled CE and human CE (a
/// subset of [`paired_metrics`]).
pub fn main_endpoints(table: &RunsTable) -> Vec<String> {
    let mut out = vec!["val_acc".to_string()];
    for set in &table.eval_sets {
        let mut m = vec!["acc", "ce", "ece"];
        if set.human {
            m.push("human_ce");
        }
        if set.scaled {
            m.push("ts_ce");
        }
        if set.scaled_human {
            m.push("ts_human_ce");
        }
        out.extend(m.into_iter().map(|x| set.column(x)));
    }
    out
}

/// One row of `paired_deltas.csv`: one configuration against the reference on one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct PairedDelta {
    /// The configuration's group (index into the groups).
    pub group: usize,
    /// Runs-table column (`eval_cinic_ce`, `val_acc`, …).
    pub metric: String,
    /// The iters present in both, ascending.
    pub iters: Vec<u32>,
    /// Means over the paired iters only (so that `delta_mean = config_mean − reference_mean`).
    pub reference_mean: Option<f64>,
    pub config_mean: Option<f64>,
    /// Mean of `config − reference` over the pairs.
    pub delta_mean: Option<f64>,
    /// Sample sd (ddof = 1) of the deltas; `None` for fewer than two pairs.
    pub delta_sd: Option<f64>,
    /// `delta_mean ∓ t_{0.975, n−1} · delta_sd / √n`; `None` for fewer than two pairs.
    pub ci95: Option<(f64, f64)>,
    /// What differs from a plain paired comparison (iters missing on either side,
    /// duplicated iters, too few pairs); empty when both have the same iters.
    pub note: String,
}

impl PairedDelta {
    pub fn n_pairs(&self) -> usize {
        self.iters.len()
    }
}

/// Values of one metric of one group, by iter (duplicated iters averaged), and the iters
/// that were duplicated.
type ByIter = (BTreeMap<u32, f64>, Vec<u32>);

fn by_iter(rows: &[usize], iters: &[Option<u32>], values: &[Option<f64>]) -> ByIter {
    let mut acc: BTreeMap<u32, (f64, usize)> = BTreeMap::new();
    for &r in rows {
        if let (Some(i), Some(v)) = (iters[r], values[r])
            && v.is_finite()
        {
            let e = acc.entry(i).or_default();
            e.0 += v;
            e.1 += 1;
        }
    }
    let dup = acc
        .iter()
        .filter(|(_, (_, n))| *n > 1)
        .map(|(i, _)| *i)
        .collect();
    (
        acc.into_iter()
            .map(|(i, (s, n))| (i, s / n as f64))
            .collect(),
        dup,
    )
}

fn list(iters: &[u32]) -> String {
    iters
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

fn f64_column(table: &RunsTable, name: &str) -> Result<Vec<Option<f64>>> {
    let c = table
        .frame
        .column(name)
        .map_err(AnalysisError::table("read a paired metric"))?
        .cast(&DataType::Float64)
        .map_err(AnalysisError::table("read a paired metric as float"))?;
    let ca = c
        .f64()
        .map_err(AnalysisError::table("read a paired metric as float"))?
        .clone();
    Ok((0..ca.len()).map(|i| ca.get(i)).collect())
}

/// One paired comparison of `config` against `reference` (values by iter).
fn compare(group: usize, metric: &str, reference: &ByIter, config: &ByIter) -> PairedDelta {
    let (r, r_dup) = reference;
    let (c, c_dup) = config;
    let iters: Vec<u32> = r.keys().filter(|i| c.contains_key(i)).copied().collect();
    let n = iters.len();
    let mut notes = Vec::new();
    if r.is_empty() {
        notes.push("the reference has no values".to_string());
    } else if c.is_empty() {
        notes.push("the configuration has no values".to_string());
    } else {
        if n < r.len() {
            notes.push(format!("{n} of the reference's {} iters", r.len()));
        }
        let extra: Vec<u32> = c.keys().filter(|i| !r.contains_key(i)).copied().collect();
        if !extra.is_empty() {
            notes.push(format!(
                "iter{} {} without a reference left out",
                if extra.len() == 1 { "" } else { "s" },
                list(&extra)
            ));
        }
    }
    for (who, dup) in [("reference", r_dup), ("configuration", c_dup)] {
        if !dup.is_empty() {
            notes.push(format!("iter {} twice in the {who}: averaged", list(dup)));
        }
    }
    if n == 1 {
        notes.push("one pair: no interval".to_string());
    }
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let rv: Vec<f64> = iters.iter().map(|i| r[i]).collect();
    let cv: Vec<f64> = iters.iter().map(|i| c[i]).collect();
    let d: Vec<f64> = cv.iter().zip(&rv).map(|(c, r)| c - r).collect();
    let delta_mean = mean(&d);
    let delta_sd = match (delta_mean, n) {
        (Some(m), 2..) => {
            Some((d.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt())
        }
        _ => None,
    };
    let ci95 = match (delta_mean, delta_sd) {
        (Some(m), Some(s)) => t_interval_95(m, s, n),
        _ => None,
    };
    PairedDelta {
        group,
        metric: metric.to_string(),
        iters,
        reference_mean: mean(&rv),
        config_mean: mean(&cv),
        delta_mean,
        delta_sd,
        ci95,
        note: notes.join("; "),
    }
}

/// Every configuration (but the reference) against the reference on every metric of
/// [`paired_metrics`]: rows by configuration in table order, then metric.
/// `membership` is [`run_groups`] of the table (`crate::Analysis::run_groups`).
pub fn paired_deltas(
    table: &RunsTable,
    membership: &[Option<usize>],
    groups: usize,
    reference: usize,
) -> Result<Vec<PairedDelta>> {
    let iter_col = table
        .frame
        .column("iter")
        .and_then(|c| c.u32().cloned())
        .map_err(AnalysisError::table("read iter column"))?;
    let iters: Vec<Option<u32>> = (0..iter_col.len()).map(|i| iter_col.get(i)).collect();
    let mut rows_of: Vec<Vec<usize>> = vec![Vec::new(); groups];
    for (row, g) in membership.iter().enumerate() {
        if let Some(g) = g {
            rows_of[*g].push(row);
        }
    }
    let mut out = Vec::new();
    let metrics = paired_metrics(table);
    let values: Vec<Vec<Option<f64>>> = metrics
        .iter()
        .map(|m| f64_column(table, m))
        .collect::<Result<_>>()?;
    let refs: Vec<ByIter> = values
        .iter()
        .map(|v| by_iter(&rows_of[reference], &iters, v))
        .collect();
    for (g, rows) in rows_of.iter().enumerate() {
        if g == reference {
            continue;
        }
        for ((metric, v), r) in metrics.iter().zip(&values).zip(&refs) {
            out.push(compare(g, metric, r, &by_iter(rows, &iters, v)));
        }
    }
    Ok(out)
}

/// `paired_deltas.csv` as a frame: the configuration's keys, then `metric`, `n_pairs`,
/// `iters` (space-separated), `reference_mean`, `config_mean`, `delta_mean`, `delta_sd`,
/// `ci95_low`, `ci95_high`, `note`.
pub fn paired_frame(
    deltas: &[PairedDelta],
    keys: &[String],
    groups: &[GroupSummary],
) -> Result<DataFrame> {
    let n = deltas.len();
    let mut columns: Vec<Column> = keys
        .iter()
        .enumerate()
        .map(|(k, name)| {
            Column::new(
                name.as_str().into(),
                deltas
                    .iter()
                    .map(|d| groups[d.group].keys[k].1.clone())
                    .collect::<Vec<String>>(),
            )
        })
        .collect();
    let f = |name: &str, get: &dyn Fn(&PairedDelta) -> Option<f64>| {
        Column::new(name.into(), deltas.iter().map(get).collect::<Vec<_>>())
    };
    columns.extend([
        Column::new(
            "metric".into(),
            deltas.iter().map(|d| d.metric.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "n_pairs".into(),
            deltas
                .iter()
                .map(|d| d.n_pairs() as u32)
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "iters".into(),
            deltas.iter().map(|d| list(&d.iters)).collect::<Vec<_>>(),
        ),
        f("reference_mean", &|d| d.reference_mean),
        f("config_mean", &|d| d.config_mean),
        f("delta_mean", &|d| d.delta_mean),
        f("delta_sd", &|d| d.delta_sd),
        f("ci95_low", &|d| d.ci95.map(|c| c.0)),
        f("ci95_high", &|d| d.ci95.map(|c| c.1)),
        Column::new(
            "note".into(),
            deltas.iter().map(|d| d.note.clone()).collect::<Vec<_>>(),
        ),
    ]);
    DataFrame::new(n, columns).map_err(AnalysisError::table("build paired deltas"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles_from_the_table_and_between() {
        assert_eq!(t_quantile_975(0), None);
        assert_eq!(t_quantile_975(1), Some(12.706204736));
        assert_eq!(t_quantile_975(3), Some(3.182446305));
        assert_eq!(t_quantile_975(30), Some(2.042272456));
        assert_eq!(t_quantile_975(60), Some(2.000297822));
        // t_{0.975, 50} = 2.008559112, t_{0.975, 1000} = 1.962339081
        assert!((t_quantile_975(50).unwrap() - 2.008559112).abs() < 1e-4);
        assert!((t_quantile_975(1000).unwrap() - 1.962339081).abs() < 1e-4);
        assert!(t_quantile_975(1_000_000).unwrap() > 1.959963985);
    }

    #[test]
    fn t_intervals_of_a_mean() {
        // n = 3, mean 0.625, sd 0.125: 0.625 ∓ 4.302652730 · 0.125 / √3
        let h = 4.302652730 * 0.125 / 3f64.sqrt();
        assert_eq!(t_interval_95(0.625, 0.125, 3), Some((0.625 - h, 0.625 + h)));
        // n = 4: √4 = 2, half-width 3.182446305 · 0.5 / 2
        assert_eq!(
            t_interval_95(1.0, 0.5, 4),
            Some((1.0 - 0.79561157625, 1.0 + 0.79561157625))
        );
        assert_eq!(t_interval_95(0.5, 0.0, 1), None);
        assert_eq!(t_interval_95(0.5, 0.0, 0), None);
    }

    #[test]
    fn selectors_parse_and_keep_list_values_whole() {
        let s: ReferenceSelector = "teacher=baseline, label_smoothing=0.0".parse().unwrap();
        assert_eq!(
            s.pairs,
            [
                ("teacher".to_string(), "baseline".to_string()),
                ("label_smoothing".to_string(), "0.0".to_string())
            ]
        );
        let s: ReferenceSelector = "step_milestones=0.5,0.75,teacher=human".parse().unwrap();
        assert_eq!(s.pairs[0].1, "0.5,0.75");
        assert_eq!(s.pairs[1].1, "human");
        for bad in ["", "teacher", "=x", "teacher=", "a=1,a=2", ",a=1"] {
            let e = bad.parse::<ReferenceSelector>().unwrap_err();
            assert!(e.to_string().contains("KEY=VALUE"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_paired_delta_by_hand() {
        let by = |v: &[(u32, f64)]| -> ByIter { (v.iter().copied().collect(), Vec::new()) };
        // deltas 0.25, 0.75, 0.5, 0.5 (exact in binary): mean 0.5, sd √(0.125/3)
        let r = by(&[(0, 0.5), (1, 0.25), (2, 0.5), (3, 0.25)]);
        let c = by(&[(0, 0.75), (1, 1.0), (2, 1.0), (3, 0.75)]);
        let d = compare(1, "m", &r, &c);
        assert_eq!(d.iters, [0, 1, 2, 3]);
        assert_eq!(d.delta_mean, Some(0.5));
        assert_eq!(
            (d.reference_mean, d.config_mean),
            (Some(0.375), Some(0.875))
        );
        let sd = (0.125f64 / 3.0).sqrt();
        assert!((d.delta_sd.unwrap() - sd).abs() < 1e-15);
        let h = 3.182446305 * sd / 2.0;
        let (lo, hi) = d.ci95.unwrap();
        assert!((lo - (0.5 - h)).abs() < 1e-12 && (hi - (0.5 + h)).abs() < 1e-12);
        assert_eq!(d.note, "");

        // three common iters, one extra on the configuration's side
        let c = by(&[(0, 0.75), (1, 1.0), (3, 0.75), (7, 0.0)]);
        let d = compare(1, "m", &r, &c);
        assert_eq!(d.iters, [0, 1, 3]);
        assert_eq!(d.delta_mean, Some(0.5));
        assert_eq!(
            d.note,
            "3 of the reference's 4 iters; iter 7 without a reference left out"
        );
        let c = by(&[(2, 1.0)]);
        let d = compare(1, "m", &r, &c);
        assert_eq!((d.delta_mean, d.delta_sd, d.ci95), (Some(0.5), None, None));
        assert_eq!(
            d.note,
            "1 of the reference's 4 iters; one pair: no interval"
        );
        let d = compare(1, "m", &r, &by(&[]));
        assert_eq!((d.n_pairs(), d.delta_mean), (0, None));
        assert_eq!(d.note, "the configuration has no values");
    }
}
