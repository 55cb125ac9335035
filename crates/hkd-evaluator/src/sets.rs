//! Evaluation sets: `NAME=DIR[:split]` specifications, sets files, and loaded sets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use hkd_datasets::{Dataset, DatasetDir, check_split_name};
use serde::Deserialize;

use crate::error::{EvalError, Result};

/// The set names whose results also go into the original `<run>_generalization.npy`, in
/// its column order.
pub const GENERALIZATION_SETS: [&str; 3] = ["cifar10", "cinic", "imagenet_far"];

/// Name of the set used when none is given: the run's own validation split.
pub const DEFAULT_SET_NAME: &str = "val";

/// One evaluation set as the user names it: `NAME=DIR[:split]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SetSpec {
    /// Name under which the results are recorded (`cifar10`, `cinic`, `imagenet_far`, …).
    pub name: String,
    /// Dataset directory (any layout `hkd-datasets` reads).
    pub dir: PathBuf,
    /// Split of the directory; `None`: the split called `name` if there is one, else the
    /// directory's only split.
    pub split: Option<String>,
}

impl SetSpec {
    /// A set of `split` (or the default split) of `dir`, recorded as `name`.
    pub fn new(name: impl Into<String>, dir: impl Into<PathBuf>, split: Option<String>) -> Self {
        SetSpec {
            name: name.into(),
            dir: dir.into(),
            split,
        }
    }

    /// `DIR` or `DIR:split` as given.
    pub fn describe(&self) -> String {
        match &self.split {
            Some(s) => format!("{}:{s}", self.dir.display()),
            None => self.dir.display().to_string(),
        }
    }

    /// Parses `DIR[:split]` (the part after `NAME=`) for a set called `name`.
    pub fn parse_source(name: &str, source: &str) -> Result<SetSpec> {
        let whole = format!("{name}={source}");
        let bad = |reason: &str| EvalError::SetSpec {
            spec: whole.clone(),
            reason: reason.to_string(),
        };
        check_name(name).map_err(|r| bad(&r))?;
        if source.is_empty() {
            return Err(bad("the directory is empty"));
        }
        // `DIR:split` when the part after the last ':' looks like a split name (no path
        // separators); otherwise the whole text is the directory.
        let (dir, split) = match source.rsplit_once(':') {
            Some((dir, split)) if !dir.is_empty() && !split.contains(['/', '\\']) => {
                if split.is_empty() {
                    return Err(bad("the split after ':' is empty"));
                }
                check_split_name(split).map_err(|e| bad(&e.to_string()))?;
                (dir, Some(split.to_string()))
            }
            _ => (source, None),
        };
        Ok(SetSpec::new(name, dir, split))
    }
}

fn check_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("the set name before '=' is empty".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(format!(
            "set name {name:?}: use ASCII letters, digits, '_', '-' or '.'"
        ));
    }
    Ok(())
}

impl FromStr for SetSpec {
    type Err = EvalError;

    /// Parses `NAME=DIR` or `NAME=DIR:split`.
    fn from_str(s: &str) -> Result<SetSpec> {
        let (name, source) = s.split_once('=').ok_or_else(|| EvalError::SetSpec {
            spec: s.to_string(),
            reason: "no '=' between the name and the directory".into(),
        })?;
        SetSpec::parse_source(name.trim(), source.trim())
    }
}

impl std::fmt::Display for SetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.name, self.describe())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetsFileToml {
    sets: BTreeMap<String, String>,
}

/// Reads a sets file: TOML with a `[sets]` table of `NAME = "DIR[:split]"`. Relative
/// directories are taken relative to the current directory, as on the command line.
pub fn read_sets_file(path: &Path) -> Result<Vec<SetSpec>> {
    let bad = |reason: String| EvalError::SetsFile {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    let parsed: SetsFileToml =
        toml::from_str(&text).map_err(|e| bad(format!("cannot parse: {e}")))?;
    if parsed.sets.is_empty() {
        return Err(bad("the [sets] table is empty".into()));
    }
    parsed
        .sets
        .iter()
        .map(|(name, source)| SetSpec::parse_source(name, source))
        .collect()
}

/// Checks that no two specs share a name.
pub fn check_unique_names(specs: &[SetSpec]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for s in specs {
        if !seen.insert(s.name.as_str()) {
            return Err(EvalError::DuplicateSet(s.name.clone()));
        }
    }
    Ok(())
}

/// A set loaded into memory, with what identifies its content.
#[derive(Debug, Clone)]
pub struct LoadedSet {
    /// Name under which results are recorded.
    pub name: String,
    /// `DIR:split` that was loaded (recorded as [`hkd_rundir::SetMetrics::source`]).
    pub source: String,
    /// The images, labels and human labels.
    pub dataset: Arc<Dataset>,
    /// [`Dataset::content_hash`]: part of the settings hash, so the same data under
    /// another path counts as the same set.
    pub content_hash: String,
}

/// Opens the directory of `spec`, picks the split and loads it.
pub fn load_set(spec: &SetSpec) -> Result<LoadedSet> {
    let unavailable = |source| EvalError::SetUnavailable {
        name: spec.name.clone(),
        source_desc: spec.describe(),
        source: Box::new(source),
    };
    let dir = DatasetDir::open(&spec.dir).map_err(unavailable)?;
    let split = match &spec.split {
        Some(s) => s.clone(),
        None => {
            let names = dir.split_names();
            if dir.has_split(&spec.name) {
                spec.name.clone()
            } else if names.len() == 1 {
                names[0].clone()
            } else {
                return Err(EvalError::SplitNotNamed {
                    name: spec.name.clone(),
                    dir: spec.dir.clone(),
                    available: names,
                });
            }
        }
    };
    let dataset = dir.load_split(&split).map_err(unavailable)?;
    let content_hash = dataset.content_hash();
    Ok(LoadedSet {
        name: spec.name.clone(),
        source: format!("{}:{split}", spec.dir.display()),
        dataset: Arc::new(dataset),
        content_hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_name_dir_and_split() {
        let s: SetSpec = "cifar10=data/real:val".parse().unwrap();
        assert_eq!(s, SetSpec::new("cifar10", "data/real", Some("val".into())));
        let s: SetSpec = "cinic=/x/cinic".parse().unwrap();
        assert_eq!(s, SetSpec::new("cinic", "/x/cinic", None));
        let s: SetSpec = "a=./odd:dir/sub".parse().unwrap();
        assert_eq!(s.dir, PathBuf::from("./odd:dir/sub"));
        assert_eq!(s.split, None);
    }

    #[test]
    fn rejects_malformed_specs() {
        for bad in [
            "cifar10",
            "=dir",
            "x=",
            "x=dir:",
            "bad name=dir",
            "x=dir:.hidden",
        ] {
            let err = bad.parse::<SetSpec>().unwrap_err();
            assert!(err.to_string().contains("NAME=DIR"), "{bad}: {err}");
        }
    }
}
