//! Configuration families: one colour and one short name per family, the same in every
//! figure.
//!
//! A **family** is a configuration up to λ and the student: every grouping key but `lambda`
//! and `student` (the λ figures' x axis and panels). Families are numbered in table order
//! (the order of `average_results.csv`), and family `i` is drawn in colour `i` everywhere.
//! A family's name holds the keys that tell families apart: the teacher, D and the objective whenever they
//! vary, any other key only where it differs from the most common value among families;
//! a teacher run is named by its architecture (`teacher=resnet20`, with what differs
//! between teachers of one architecture: `teacher=resnet20 (λ=0.5)`), not its full slug.
//! The full identity of every name is in `fig/legend.csv`.

use std::collections::{BTreeMap, BTreeSet};

use plotters::style::RGBColor;
use polars::prelude::*;

use crate::aggregate::{GroupSummary, short_key};
use crate::error::{AnalysisError, Result};
use crate::load::RunRecord;

/// Keys that are not part of a family: the λ figures' axis and panels.
const NOT_FAMILY: [&str; 2] = ["lambda", "student"];

/// Keys named in a family's name whenever they vary (not only where they differ from the
/// most common value).
const ALWAYS_NAMED: [&str; 3] = ["teacher", "distil_fn", "objective"];

/// Colour `i` of the palette: Okabe–Ito-like colour-blind-safe colours, then plotters'
/// Palette99.
pub(crate) fn palette(i: usize) -> RGBColor {
    const BASE: [RGBColor; 8] = [
        RGBColor(0, 114, 178),
        RGBColor(213, 94, 0),
        RGBColor(0, 158, 115),
        RGBColor(204, 121, 167),
        RGBColor(230, 159, 0),
        RGBColor(86, 180, 233),
        RGBColor(0, 0, 0),
        RGBColor(240, 228, 66),
    ];
    if i < BASE.len() {
        BASE[i]
    } else {
        use plotters::style::{Color, Palette, Palette99};
        let c = Palette99::pick(i).to_rgba();
        RGBColor(c.0, c.1, c.2)
    }
}

/// The families of a grid's configurations, their names, colours and the tags that tell the
/// configurations of one family apart.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Families {
    /// The family of each group (index into `names`).
    pub family_of: Vec<usize>,
    /// Short name of each family, e.g. `teacher=human, D=CE`.
    pub names: Vec<String>,
    /// Per group: `λ=0.5` (when a family holds several λ) and `student=resnet20` (when a
    /// family holds several students, where it is not the most common one); empty when
    /// neither.
    pub tags: Vec<String>,
    /// `k=v` of the family keys that are the same for every group (for subtitles).
    pub constant: String,
}

/// Whether `key` takes more than one value over the groups.
fn varies(groups: &[GroupSummary], key: &str) -> bool {
    groups
        .iter()
        .map(|g| g.key(key).unwrap_or(""))
        .collect::<BTreeSet<_>>()
        .len()
        > 1
}

/// The most common of `values` (ties: the first in sorted order).
fn modal<'a>(values: impl IntoIterator<Item = &'a str>) -> &'a str {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for v in values {
        *counts.entry(v).or_default() += 1;
    }
    let top = counts.values().copied().max().unwrap_or(0);
    counts
        .into_iter()
        .find(|&(_, n)| n == top)
        .map_or("", |(v, _)| v)
}

/// A part of a teacher slug in the figures' notation: `l0.5` → `λ=0.5`, `g0.0` → `γ=0.0`,
/// `th1.0` → `Th=1.0`, `tt2.0` → `Tt=2.0`, `i1` → `iter=1`; anything else as it is.
fn slug_part(part: &str) -> String {
    for (prefix, name) in [
        ("th", "Th"),
        ("tt", "Tt"),
        ("l", "λ"),
        ("g", "γ"),
        ("i", "iter"),
    ] {
        if let Some(v) = part.strip_prefix(prefix)
            && v.parse::<f64>().is_ok()
        {
            return format!("{name}={v}");
        }
    }
    part.to_string()
}

/// Short names of teacher values: `baseline` and `human` as they are; a teacher run or
/// checkpoint by its architecture, with the parts of its slug that differ from the other
/// teachers of that architecture when there are several.
fn teacher_names(
    groups: &[GroupSummary],
    runs: &[RunRecord],
    run_groups: &[Option<usize>],
) -> BTreeMap<String, String> {
    let mut arch_of: BTreeMap<String, String> = BTreeMap::new();
    for (run, g) in runs.iter().zip(run_groups) {
        if g.is_some()
            && let Some(arch) = run.config.teacher.arch()
        {
            arch_of
                .entry(run.config.teacher.slug().to_string())
                .or_insert_with(|| arch.to_string());
        }
    }
    let slugs: BTreeSet<&str> = groups.iter().filter_map(|g| g.key("teacher")).collect();
    let mut by_arch: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut names = BTreeMap::new();
    for slug in slugs {
        match arch_of.get(slug) {
            Some(arch) => by_arch.entry(arch.as_str()).or_default().push(slug),
            None => {
                names.insert(slug.to_string(), slug.to_string());
            }
        }
    }
    for (arch, slugs) in by_arch {
        if let [one] = slugs.as_slice() {
            names.insert(one.to_string(), arch.to_string());
            continue;
        }
        let parts: Vec<Vec<&str>> = slugs.iter().map(|s| s.split('-').collect()).collect();
        let same_shape = parts.iter().all(|p| p.len() == parts[0].len());
        for (k, (slug, p)) in slugs.iter().zip(&parts).enumerate() {
            let differing: Vec<&str> = if same_shape {
                (0..p.len())
                    .filter(|&i| parts.iter().any(|q| q[i] != p[i]))
                    .map(|i| p[i])
                    .collect()
            } else {
                Vec::new()
            };
            let name = if differing.is_empty() {
                format!("{arch} #{}", k + 1)
            } else {
                let readable: Vec<String> = differing.iter().map(|t| slug_part(t)).collect();
                format!("{arch} ({})", readable.join(", "))
            };
            names.insert(slug.to_string(), name);
        }
    }
    names
}

impl Families {
    /// The families of `groups` (grouped by `keys`); `runs` and `run_groups` give the
    /// teachers' architectures.
    pub fn new(
        groups: &[GroupSummary],
        keys: &[String],
        runs: &[RunRecord],
        run_groups: &[Option<usize>],
    ) -> Families {
        let family_keys: Vec<&str> = keys
            .iter()
            .map(String::as_str)
            .filter(|k| !NOT_FAMILY.contains(k))
            .collect();
        let mut index: BTreeMap<Vec<&str>, usize> = BTreeMap::new();
        let mut members: Vec<usize> = Vec::new();
        let family_of: Vec<usize> = groups
            .iter()
            .enumerate()
            .map(|(gi, g)| {
                let id: Vec<&str> = family_keys.iter().map(|k| g.key(k).unwrap_or("")).collect();
                let next = index.len();
                *index.entry(id).or_insert_with(|| {
                    members.push(gi);
                    next
                })
            })
            .collect();
        // one representative group per family
        let reps: Vec<&GroupSummary> = members.iter().map(|&g| &groups[g]).collect();
        // A key tells families apart where it takes two or more values among the families
        // that have it (an empty value: the configuration's objective has no such key), so
        // DKD's β, the same for every DKD family, does not lengthen their names.
        let present = |k: &str| -> Vec<&str> {
            reps.iter()
                .map(|g| g.key(k).unwrap_or(""))
                .filter(|v| !v.is_empty())
                .collect()
        };
        let named: Vec<&str> = family_keys
            .iter()
            .copied()
            .filter(|&k| present(k).into_iter().collect::<BTreeSet<_>>().len() > 1)
            .collect();
        let teachers = teacher_names(groups, runs, run_groups);
        let modes: BTreeMap<&str, &str> = named.iter().map(|&k| (k, modal(present(k)))).collect();
        let mut names: Vec<String> = reps
            .iter()
            .map(|g| {
                let parts: Vec<String> = named
                    .iter()
                    // an empty value is a key this configuration's objective does not have
                    .filter(|&&k| !g.key(k).unwrap_or("").is_empty())
                    .filter(|&&k| ALWAYS_NAMED.contains(&k) || g.key(k).unwrap_or("") != modes[k])
                    .map(|&k| {
                        let v = g.key(k).unwrap_or("");
                        let v = if k == "teacher" {
                            teachers.get(v).map_or(v, String::as_str)
                        } else {
                            v
                        };
                        format!("{}={v}", short_key(k))
                    })
                    .collect();
                if parts.is_empty() {
                    "all runs".to_string()
                } else {
                    parts.join(", ")
                }
            })
            .collect();
        // names are unique by construction; a clash of shortened teacher names is numbered
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for name in &mut names {
            let n = seen.entry(name.clone()).or_default();
            *n += 1;
            if *n > 1 {
                name.push_str(&format!(" #{n}"));
            }
        }
        let constant_keys: Vec<&str> = family_keys
            .iter()
            .copied()
            .filter(|k| !varies(groups, k))
            .collect();
        let constant = groups
            .first()
            .map(|g| g.label(&constant_keys))
            .unwrap_or_default();

        // tags: λ and the student where a family holds several of them (the student only
        // where it is not the most common one)
        let within = |key: &str| {
            keys.iter().any(|k| k == key) && {
                let mut seen: BTreeMap<usize, &str> = BTreeMap::new();
                groups.iter().zip(&family_of).any(|(g, f)| {
                    let v = g.key(key).unwrap_or("");
                    *seen.entry(*f).or_insert(v) != v
                })
            }
        };
        let tag_lambda = within("lambda");
        let tag_student = within("student");
        let common_student = modal(groups.iter().map(|g| g.key("student").unwrap_or("")));
        let tags = groups
            .iter()
            .map(|g| {
                let mut t = Vec::new();
                if tag_lambda {
                    t.push(format!("λ={}", g.key("lambda").unwrap_or("")));
                }
                if tag_student && g.key("student").unwrap_or("") != common_student {
                    t.push(format!("student={}", g.key("student").unwrap_or("")));
                }
                t.join(", ")
            })
            .collect();
        Families {
            family_of,
            names,
            tags,
            constant,
        }
    }

    /// The colour of group `g`'s family.
    pub fn colour(&self, g: usize) -> RGBColor {
        palette(self.family_of[g])
    }

    /// The name of group `g`'s family.
    pub fn name(&self, g: usize) -> &str {
        &self.names[self.family_of[g]]
    }

    /// The configuration's label: its family's name and its tag.
    pub fn config_label(&self, g: usize) -> String {
        match self.tags[g].as_str() {
            "" => self.name(g).to_string(),
            tag => format!("{}, {tag}", self.name(g)),
        }
    }

    /// `fig/legend.csv`: one row per configuration, `label` (as in the figures), `family`,
    /// `colour` (`#rrggbb`), then the full value of every key.
    pub fn legend_frame(&self, groups: &[GroupSummary], keys: &[String]) -> Result<DataFrame> {
        let hex = |c: RGBColor| format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2);
        let mut columns = vec![
            Column::new(
                "label".into(),
                (0..groups.len())
                    .map(|g| self.config_label(g))
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "family".into(),
                (0..groups.len())
                    .map(|g| self.name(g).to_string())
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "colour".into(),
                (0..groups.len())
                    .map(|g| hex(self.colour(g)))
                    .collect::<Vec<_>>(),
            ),
        ];
        for (k, name) in keys.iter().enumerate() {
            columns.push(Column::new(
                name.as_str().into(),
                groups
                    .iter()
                    .map(|g| g.keys[k].1.clone())
                    .collect::<Vec<_>>(),
            ));
        }
        DataFrame::new(groups.len(), columns).map_err(AnalysisError::table("build legend table"))
    }
}
