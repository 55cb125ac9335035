//! Grid expansion: the cartesian product of the `[grid]` axes, checked against the
//! binary's flags.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::binary::{BinaryInfo, suggest};
use crate::config::{GridConfig, GridPoint, Scalar};
use crate::error::{GridError, Result};

/// The value of one flag in one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TaskValue {
    /// A switch (`--resume`): present when true.
    Switch(bool),
    /// `--flag=value`.
    Value(String),
    /// `--flag=v1 --flag=v2 …`.
    Repeat(Vec<String>),
}

impl TaskValue {
    fn push_args(&self, flag: &str, out: &mut Vec<String>) {
        match self {
            TaskValue::Switch(true) => out.push(format!("--{flag}")),
            TaskValue::Switch(false) => {}
            TaskValue::Value(v) => out.push(format!("--{flag}={v}")),
            TaskValue::Repeat(vs) => out.extend(vs.iter().map(|v| format!("--{flag}={v}"))),
        }
    }
}

/// One task: one run of the binary with one point of the grid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// Position in the grid (array task id, line of `tasks.txt`).
    pub index: usize,
    /// Arguments after the executable: subcommand and positionals (the first
    /// `positional` of them), then the grid's `--flag=value`s and switches.
    pub args: Vec<String>,
    /// How many leading `args` are the subcommand and positional arguments.
    #[serde(default)]
    pub positional: usize,
}

impl Task {
    fn flag_args(&self) -> &[String] {
        &self.args[self.positional.min(self.args.len())..]
    }

    /// The value of `flag` in this task, if the grid sets it once (`--flag=value`).
    pub fn value(&self, flag: &str) -> Option<&str> {
        let mut found = None;
        for arg in self.flag_args() {
            if let Some(rest) = arg.strip_prefix("--")
                && let Some(v) = rest.strip_prefix(flag).and_then(|r| r.strip_prefix('='))
            {
                if found.is_some() {
                    return None; // repeated: no single value
                }
                found = Some(v);
            }
        }
        found
    }

    /// True if the task passes `--flag` (a switch, or with any value).
    pub fn sets(&self, flag: &str) -> bool {
        self.flag_args().iter().any(|arg| {
            arg.strip_prefix("--")
                .and_then(|rest| rest.strip_prefix(flag))
                .is_some_and(|r| r.is_empty() || r.starts_with('='))
        })
    }
}

/// Expands `config`'s grid into tasks, in a stable order: keys sorted, the last key
/// varying fastest (the original's `flatten_grid`). Every key must be a long flag of
/// `binary` ([`BinaryInfo::flags`]); switches take booleans; flags with possible values
/// take one of them.
pub fn expand(config: &GridConfig, binary: &BinaryInfo, path: &Path) -> Result<Vec<Task>> {
    let mut axes: Vec<(&str, Vec<TaskValue>)> = Vec::with_capacity(config.grid.len());
    for (key, axis) in &config.grid {
        let Some(flag) = binary.flags.get(key) else {
            let hint = suggest(key, binary.flags.keys())
                .map(|s| format!(" Did you mean `{s}`?"))
                .unwrap_or_default();
            let known: Vec<&str> = binary
                .flags
                .keys()
                .map(String::as_str)
                .filter(|k| !matches!(*k, "help" | "version"))
                .collect();
            return Err(GridError::config(
                path,
                format!(
                    "[grid] key `{key}` is not a flag of {} (asked `{} --help`).{hint} Its flags: {}",
                    binary.name,
                    binary.path.display(),
                    known.join(", ")
                ),
            ));
        };
        if matches!(key.as_str(), "help" | "version") {
            return Err(GridError::config(
                path,
                format!("[grid] key `{key}` would only print text: remove it"),
            ));
        }
        let mut values = Vec::with_capacity(axis.0.len());
        for point in &axis.0 {
            let value = match (point, flag.takes_value) {
                (GridPoint::One(Scalar::Bool(b)), false) => TaskValue::Switch(*b),
                (GridPoint::One(other), false) => {
                    return Err(GridError::config(
                        path,
                        format!(
                            "[grid] key `{key}`: --{key} is a switch of {} and takes true or false, found {other:?}",
                            binary.name
                        ),
                    ));
                }
                (GridPoint::Repeat(_), false) => {
                    return Err(GridError::config(
                        path,
                        format!(
                            "[grid] key `{key}`: --{key} is a switch and cannot be repeated with values"
                        ),
                    ));
                }
                (GridPoint::One(s), true) => TaskValue::Value(s.render()),
                (GridPoint::Repeat(list), true) => {
                    TaskValue::Repeat(list.iter().map(Scalar::render).collect())
                }
            };
            let rendered: Vec<&String> = match &value {
                TaskValue::Value(v) => vec![v],
                TaskValue::Repeat(vs) => vs.iter().collect(),
                TaskValue::Switch(_) => vec![],
            };
            for v in rendered {
                if !flag.possible_values.is_empty() && !flag.possible_values.contains(v) {
                    return Err(GridError::config(
                        path,
                        format!(
                            "[grid] key `{key}`: {v:?} is not a value --{key} of {} accepts; possible values: {}",
                            binary.name,
                            flag.possible_values.join(", ")
                        ),
                    ));
                }
            }
            values.push(value);
        }
        axes.push((key.as_str(), values));
    }

    let mut fixed: Vec<String> = Vec::new();
    if let Some(sub) = &config.subcommand {
        fixed.push(sub.clone());
    }
    fixed.extend(config.args.iter().cloned());
    let positional = fixed.len();

    // each axis value rendered once into its argument words
    let rendered: Vec<Vec<Vec<String>>> = axes
        .iter()
        .map(|(flag, values)| {
            values
                .iter()
                .map(|v| {
                    let mut words = Vec::new();
                    v.push_args(flag, &mut words);
                    words
                })
                .collect()
        })
        .collect();
    let count: usize = axes.iter().map(|(_, v)| v.len()).product();
    let width = positional
        + rendered
            .iter()
            .map(|r| r.iter().map(Vec::len).max().unwrap_or(0))
            .sum::<usize>();
    let mut tasks = Vec::with_capacity(count);
    let mut digits = vec![0usize; axes.len()];
    for index in 0..count {
        let mut args = Vec::with_capacity(width);
        args.extend(fixed.iter().cloned());
        for (axis, &digit) in rendered.iter().zip(&digits) {
            args.extend(axis[digit].iter().cloned());
        }
        tasks.push(Task {
            index,
            args,
            positional,
        });
        // advance the mixed-radix counter, last axis fastest
        for pos in (0..axes.len()).rev() {
            digits[pos] += 1;
            if digits[pos] < axes[pos].1.len() {
                break;
            }
            digits[pos] = 0;
        }
    }
    Ok(tasks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binary::FlagInfo;
    use crate::config::BinaryName;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    fn train_binary() -> BinaryInfo {
        let mut flags = BTreeMap::new();
        for f in ["out", "lambda", "iter", "teacher", "set"] {
            flags.insert(
                f.to_string(),
                FlagInfo {
                    takes_value: true,
                    ..Default::default()
                },
            );
        }
        flags.insert(
            "distil-fn".into(),
            FlagInfo {
                takes_value: true,
                default: Some("KL".into()),
                possible_values: vec!["KL".into(), "CE".into()],
            },
        );
        flags.insert("resume".into(), FlagInfo::default());
        flags.insert("help".into(), FlagInfo::default());
        BinaryInfo {
            name: BinaryName::Train,
            path: PathBuf::from("/opt/hkd/hkd-train"),
            subcommand: None,
            flags,
        }
    }

    fn config(text: &str) -> GridConfig {
        GridConfig::from_toml_str(text, Path::new("t.toml")).unwrap()
    }

    #[test]
    fn product_is_sorted_by_key_with_the_last_key_fastest() {
        let c = config(
            "binary = \"hkd-train\"\n[grid]\nlambda = [0.5, 1.0]\ndistil-fn = [\"KL\", \"CE\"]\niter = [0, 1, 2]\n",
        );
        let tasks = expand(&c, &train_binary(), Path::new("t.toml")).unwrap();
        assert_eq!(tasks.len(), 12);
        // keys sorted: distil-fn, iter, lambda
        assert_eq!(
            tasks[0].args,
            ["--distil-fn=KL", "--iter=0", "--lambda=0.5"]
        );
        assert_eq!(
            tasks[1].args,
            ["--distil-fn=KL", "--iter=0", "--lambda=1.0"]
        );
        assert_eq!(
            tasks[2].args,
            ["--distil-fn=KL", "--iter=1", "--lambda=0.5"]
        );
        assert_eq!(
            tasks[11].args,
            ["--distil-fn=CE", "--iter=2", "--lambda=1.0"]
        );
        assert!(tasks.iter().enumerate().all(|(i, t)| t.index == i));
        assert_eq!(tasks[7].value("iter"), Some("0"));
        assert_eq!(tasks[7].value("distil-fn"), Some("CE"));
    }

    #[test]
    fn subcommand_args_switches_and_repeats() {
        let c = config(
            "binary = \"hkd-train\"\nsubcommand = \"run\"\nargs = [\"runs dir\"]\n[grid]\nresume = [true, false]\nset = [[\"a=1\", \"b=2\"]]\n",
        );
        let tasks = expand(&c, &train_binary(), Path::new("t.toml")).unwrap();
        assert_eq!(tasks.len(), 2);
        assert_eq!(
            tasks[0].args,
            ["run", "runs dir", "--resume", "--set=a=1", "--set=b=2"]
        );
        assert_eq!(tasks[1].args, ["run", "runs dir", "--set=a=1", "--set=b=2"]);
        assert!(tasks[0].sets("resume"));
        assert!(!tasks[1].sets("resume"));
    }

    #[test]
    fn unknown_flags_and_bad_values_are_errors() {
        let bin = train_binary();
        let err = expand(
            &config("binary = \"hkd-train\"\n[grid]\nlamda = [1]\n"),
            &bin,
            Path::new("configs/x.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("configs/x.toml"), "{err}");
        assert!(err.contains("`lamda` is not a flag of hkd-train"), "{err}");
        assert!(err.contains("Did you mean `lambda`"), "{err}");
        let err = expand(
            &config("binary = \"hkd-train\"\n[grid]\ndistil-fn = [\"KD\"]\n"),
            &bin,
            Path::new("x.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("possible values: KL, CE"), "{err}");
        let err = expand(
            &config("binary = \"hkd-train\"\n[grid]\nresume = [\"yes\"]\n"),
            &bin,
            Path::new("x.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("is a switch"), "{err}");
    }

    #[test]
    fn values_starting_with_a_dash_stay_values() {
        let c = config("binary = \"hkd-train\"\n[grid]\nlambda = [-0.5]\n");
        let tasks = expand(&c, &train_binary(), Path::new("t.toml")).unwrap();
        assert_eq!(tasks[0].args, ["--lambda=-0.5"]);
    }
}
