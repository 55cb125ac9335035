//! Grid expansion: the cartesian product of the `[grid]` axes, checked against the
//! binary's own command line (in-process), task by task.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::binary::{BinaryInfo, suggest};
use crate::config::{BinaryName, GridConfig, GridPoint, Scalar};
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
    /// The task's flags: its arguments after the subcommand and positionals.
    pub fn flag_args(&self) -> &[String] {
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
/// `binary` (its clap definition, in-process); switches take booleans; an inner list is
/// one value joined by `,` for flags that take a list (`step-milestones = [[0.3, 0.6]]`)
/// and a repeated flag for flags that repeat (`set = [["a=x", "b=y"]]`). The values
/// themselves are checked by [`check_tasks`].
pub fn expand(config: &GridConfig, binary: &BinaryInfo, path: &Path) -> Result<Vec<Task>> {
    // before anything is allocated: a product of many axes grows fast
    let count = config
        .grid
        .values()
        .try_fold(1usize, |n, axis| n.checked_mul(axis.0.len()))
        .filter(|&n| n <= MAX_TASKS);
    if count.is_none() {
        let sizes: Vec<String> = config
            .grid
            .iter()
            .filter(|(_, a)| a.0.len() > 1)
            .map(|(k, a)| format!("{k} ({})", a.0.len()))
            .collect();
        return Err(GridError::config(
            path,
            format!(
                "the grid's axes make more than {MAX_TASKS} tasks ({}); split it into several grids or pipeline stages",
                sizes.join(" × ")
            ),
        ));
    }
    let command = binary.command()?;
    let known: Vec<String> = command
        .get_arguments()
        .filter_map(|a| a.get_long())
        .filter(|l| !matches!(*l, "help" | "version"))
        .map(str::to_string)
        .collect();
    let mut axes: Vec<(&str, Vec<TaskValue>)> = Vec::with_capacity(config.grid.len());
    for (key, axis) in &config.grid {
        if matches!(key.as_str(), "help" | "version") {
            return Err(GridError::config(
                path,
                format!("[grid] key `{key}` would only print text: remove it"),
            ));
        }
        let Some(arg) = command
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()))
        else {
            let hint = suggest(key, known.iter())
                .map(|s| format!(" Did you mean `{s}`?"))
                .unwrap_or_default();
            return Err(GridError::config(
                path,
                format!(
                    "[grid] key `{key}` is not a flag of {}.{hint} Its flags: {}",
                    binary.name,
                    known.join(", ")
                ),
            ));
        };
        let switch = !arg.get_action().takes_values();
        let repeats = matches!(arg.get_action(), clap::ArgAction::Append);
        let list = arg.get_value_delimiter().is_some();
        let mut values = Vec::with_capacity(axis.0.len());
        for point in &axis.0 {
            let value = match (point, switch) {
                (GridPoint::One(Scalar::Bool(b)), true) => TaskValue::Switch(*b),
                (GridPoint::One(other), true) => {
                    return Err(GridError::config(
                        path,
                        format!(
                            "[grid] key `{key}`: --{key} is a switch of {} and takes true or false, found {}",
                            binary.name,
                            other.render()
                        ),
                    ));
                }
                (GridPoint::Repeat(_), true) => {
                    return Err(GridError::config(
                        path,
                        format!(
                            "[grid] key `{key}`: --{key} is a switch and cannot be repeated with values"
                        ),
                    ));
                }
                (GridPoint::One(s), false) => TaskValue::Value(s.render()),
                (GridPoint::Repeat(items), false) if list => TaskValue::Value(
                    items
                        .iter()
                        .map(Scalar::render)
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                (GridPoint::Repeat(items), false) if repeats => {
                    TaskValue::Repeat(items.iter().map(Scalar::render).collect())
                }
                (GridPoint::Repeat(_), false) => {
                    return Err(GridError::config(
                        path,
                        format!(
                            "[grid] key `{key}`: --{key} of {} takes one value, but a value of the axis is a list; write the axis as a flat list of values",
                            binary.name
                        ),
                    ));
                }
            };
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

/// Refuses a task that trains the same network as an earlier one: the two differ only in
/// settings that cannot change the result (say `label_smoothing` at λ = 1), which a grid
/// axis over them would do.
fn same_network(
    request: &hkd_rundir::TrainCommand,
    index: usize,
    teachers: &mut crate::plan::TeacherCache,
    effective: &mut std::collections::HashMap<String, (usize, hkd_rundir::RunSpec)>,
) -> Option<String> {
    let place = teachers.identity_key(request);
    // the run's place without its name, then what it trains
    let place = place
        .rsplit_once('\u{0}')
        .map_or(place.clone(), |(p, _)| p.to_string());
    let what: Vec<String> = request
        .spec
        .effective_identity()
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let key = format!("{place}\u{0}{}", what.join("\u{0}"));
    match effective.get(&key) {
        Some((first, spec)) => {
            let inert = request.spec.inert_settings();
            let differing: Vec<String> = spec
                .identity_differences(&request.spec)
                .into_iter()
                .filter_map(|d| d.split_once(':').map(|(k, _)| k.to_string()))
                .collect();
            let reasons: Vec<String> = inert
                .iter()
                .filter(|i| differing.iter().any(|k| k == i.key))
                .map(|i| format!("`{}`: {}", i.key, i.because))
                .collect();
            Some(format!(
                "trains the same network as task {first}: they differ only in {}, which cannot change the result here ({}); drop that axis or its extra values",
                differing
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                reasons.join("; ")
            ))
        }
        None => {
            effective.insert(key, (index, request.spec.clone()));
            None
        }
    }
}

/// Records the settings of `spec` that are away from their defaults where they cannot
/// change the result, for one warning per key.
fn note_inert(
    spec: &hkd_rundir::RunSpec,
    index: usize,
    noted: &mut std::collections::BTreeMap<String, (String, Vec<usize>)>,
) {
    let defaults: std::collections::HashMap<String, String> =
        spec.defaults().identity().into_iter().collect();
    let identity: std::collections::HashMap<String, String> = spec.identity().into_iter().collect();
    for inert in spec.inert_settings() {
        let (given, default) = (identity.get(inert.key), defaults.get(inert.key));
        if given.is_some() && given != default {
            noted
                .entry(inert.key.to_string())
                .or_insert_with(|| (inert.because.clone(), Vec::new()))
                .1
                .push(index);
        }
    }
}

/// The most tasks one grid may have (a Slurm cluster's array limit is far lower; beyond
/// this a typo in the axes is more likely than a plan).
pub const MAX_TASKS: usize = 100_000;

/// How many problems [`check_tasks`] lists before summing up the rest.
const MAX_LISTED_PROBLEMS: usize = 20;

/// Parses every task with the binary's own command line, in-process, and reports every
/// task that would be refused (unknown flag, wrong type, value out of range, naming the
/// task and the key) for the whole grid at once. For `hkd-train` it also refuses two tasks
/// that are the same run (same identity, output and teacher, e.g. `lambda = [1, 1.0]`).
/// Relative paths resolve against `workdir`, where the tasks will run.
///
/// Returns the warnings for the caller to print (settings given where they cannot change
/// the result), so that it can say which grid or stage they are about.
pub fn check_tasks(
    tasks: &[Task],
    binary: &BinaryInfo,
    workdir: &Path,
    path: &Path,
) -> Result<Vec<String>> {
    check_tasks_after(tasks, binary, workdir, path, &[])
}

/// The output directories the hkd-train tasks of `tasks` write (absolute): where a later
/// pipeline stage may find its teachers.
pub fn train_outputs(tasks: &[Task], binary: &BinaryInfo, workdir: &Path) -> Vec<PathBuf> {
    if binary.name != BinaryName::Train {
        return Vec::new();
    }
    let mut outs: Vec<PathBuf> = tasks
        .iter()
        .filter_map(|t| hkd_rundir::TrainCommand::parse_in(t.flag_args(), workdir).ok())
        .map(|r| r.execution.out)
        .collect();
    outs.sort();
    outs.dedup();
    outs
}

/// A teacher that names a path which is not there and that no earlier stage writes
/// (`produced`: their output directories): why, else `None`. `baseline`, `human` and
/// teachers that resolve are fine.
fn missing_teacher(request: &hkd_rundir::TrainCommand, produced: &[PathBuf]) -> Option<String> {
    let named = &request.spec.teacher.teacher;
    if matches!(named.as_str(), "baseline" | "human") {
        return None;
    }
    let path = Path::new(named.strip_prefix("best:").unwrap_or(named));
    if path.exists()
        || produced
            .iter()
            .any(|o| path.starts_with(o) || o.starts_with(path))
    {
        return None;
    }
    let why = match hkd_rundir::resolve_teacher(&request.spec.teacher) {
        Ok(_) => return None,
        Err(e) => e.to_string(),
    };
    Some(format!(
        "{why}; no earlier stage of a pipeline writes there: train the teacher first (or put its grid before this one in a pipeline), or fix the path"
    ))
}

/// [`check_tasks`] for a pipeline stage after stages whose hkd-train tasks write the
/// output directories `produced` ([`train_outputs`]): a teacher path that does not exist
/// is refused unless one of those will hold it.
pub fn check_tasks_after(
    tasks: &[Task],
    binary: &BinaryInfo,
    workdir: &Path,
    path: &Path,
    produced: &[PathBuf],
) -> Result<Vec<String>> {
    let mut problems: Vec<String> = Vec::new();
    let mut seen: std::collections::HashMap<String, (usize, std::path::PathBuf)> =
        std::collections::HashMap::new();
    let command = binary.command()?;
    let mut teachers = crate::plan::TeacherCache::default();
    // Tasks by what they train: the run's place without the settings that cannot change
    // its result (label smoothing at λ = 1, …), for refusing axes over such settings.
    let mut effective: std::collections::HashMap<String, (usize, hkd_rundir::RunSpec)> =
        std::collections::HashMap::new();
    let mut inert_given: std::collections::BTreeMap<String, (String, Vec<usize>)> =
        std::collections::BTreeMap::new();
    for task in tasks {
        let shown = task.flag_args().join(" ");
        let problem = match binary.name {
            BinaryName::Train => {
                match hkd_rundir::TrainCommand::parse_in(task.flag_args(), workdir) {
                    Ok(request) => {
                        let key = teachers.identity_key(&request);
                        match seen.get(&key) {
                            Some((first, data)) if *data != request.spec.data.dir => Some(format!(
                                "is the same run as task {first} but for --data ({} vs {}): where the data lies is not part of a run's identity (its content is checked by hash), so two datasets need two --out directories",
                                data.display(),
                                request.spec.data.dir.display()
                            )),
                            Some((first, _)) => Some(format!(
                                "is the same run as task {first} (same settings once parsed, e.g. 1 and 1.0): remove the duplicate value from the grid"
                            )),
                            None if missing_teacher(&request, produced).is_some() => {
                                missing_teacher(&request, produced)
                                    .map(|why| format!("key `teacher`: {why}"))
                            }
                            None => {
                                seen.insert(key, (task.index, request.spec.data.dir.clone()));
                                let same = same_network(
                                    &request,
                                    task.index,
                                    &mut teachers,
                                    &mut effective,
                                );
                                if same.is_none() {
                                    note_inert(&request.spec, task.index, &mut inert_given);
                                }
                                same
                            }
                        }
                    }
                    Err(e) => Some(match e.key() {
                        Some(k) => format!("key `{}`: {e}", k.replace('_', "-")),
                        None => e.to_string(),
                    }),
                }
            }
            BinaryName::Eval | BinaryName::Analyze => {
                let argv = std::iter::once(binary.name.file_name().to_string()).chain(
                    task.args
                        .iter()
                        .skip(usize::from(binary.subcommand.is_some()))
                        .cloned(),
                );
                command.clone().try_get_matches_from(argv).err().map(|e| {
                    let message = hkd_rundir::cli::one_line(&e);
                    match hkd_rundir::cli::key_of(&message) {
                        Some(k) => format!("key `{}`: {message}", k.replace('_', "-")),
                        None => message,
                    }
                })
            }
        };
        if let Some(p) = problem {
            problems.push(format!("task {} ({shown}): {p}", task.index));
        }
    }
    if problems.is_empty() {
        return Ok(inert_given
            .iter()
            .map(|(key, (because, at))| {
                format!(
                    "`{key}` is set away from its default in {} task(s) (first: task {}) where it cannot change the result: {because}; the runs are named after it all the same",
                    at.len(),
                    at[0]
                )
            })
            .collect());
    }
    let total = problems.len();
    let mut message = format!(
        "{total} of {} tasks would be refused by {}; nothing was submitted:",
        tasks.len(),
        binary.name
    );
    for p in problems.iter().take(MAX_LISTED_PROBLEMS) {
        message.push_str("\n  ");
        message.push_str(p);
    }
    if total > MAX_LISTED_PROBLEMS {
        message.push_str(&format!("\n  … and {} more", total - MAX_LISTED_PROBLEMS));
    }
    Err(GridError::config(path, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary(name: BinaryName, sub: Option<&str>) -> BinaryInfo {
        BinaryInfo::at(name, Path::new("/opt/hkd/bin"), sub)
    }

    fn config(text: &str) -> GridConfig {
        GridConfig::from_toml_str(text, Path::new("t.toml")).unwrap()
    }

    fn expand_and_check(text: &str) -> Result<Vec<Task>> {
        let c = config(text);
        let b = binary(c.binary, c.subcommand.as_deref());
        let tasks = expand(&c, &b, Path::new("configs/x.toml"))?;
        check_tasks(&tasks, &b, Path::new("/w"), Path::new("configs/x.toml"))?;
        Ok(tasks)
    }

    #[test]
    fn product_is_sorted_by_key_with_the_last_key_fastest() {
        let tasks = expand_and_check(
            "binary = \"hkd-train\"\n[grid]\nlambda = [0.5, 1.0]\ndistil-fn = [\"KL\", \"CE\"]\niter = [0, 1, 2]\n",
        )
        .unwrap();
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
    fn subcommand_args_switches_repeats_and_lists() {
        let tasks = expand_and_check(
            "binary = \"hkd-eval\"\nsubcommand = \"run\"\nargs = [\"runs dir\"]\n[grid]\nforce = [true, false]\nset = [[\"a=1\", \"b=2\"]]\n",
        )
        .unwrap();
        assert_eq!(tasks.len(), 2);
        assert_eq!(
            tasks[0].args,
            ["run", "runs dir", "--force", "--set=a=1", "--set=b=2"]
        );
        assert_eq!(tasks[1].args, ["run", "runs dir", "--set=a=1", "--set=b=2"]);
        assert!(tasks[0].sets("force"));
        assert!(!tasks[1].sets("force"));
        let tasks = expand_and_check(
            "binary = \"hkd-train\"\n[grid]\nscheduler = \"step\"\nstep-milestones = [[0.3, 0.6], [0.5]]\n",
        )
        .unwrap();
        assert_eq!(
            tasks[0].args,
            ["--scheduler=step", "--step-milestones=0.3,0.6"]
        );
    }

    #[test]
    fn unknown_flags_and_bad_values_are_errors_naming_task_and_key() {
        let err = |text: &str| expand_and_check(text).unwrap_err().to_string();
        let e = err("binary = \"hkd-train\"\n[grid]\nlamda = [1]\n");
        assert!(e.contains("configs/x.toml"), "{e}");
        assert!(e.contains("`lamda` is not a flag of hkd-train"), "{e}");
        assert!(e.contains("Did you mean `lambda`"), "{e}");
        let e = err("binary = \"hkd-train\"\n[grid]\nscheduler = [\"plateau\", \"sgdr\"]\n");
        assert!(
            e.contains("1 of 2 tasks") && e.contains("task 1") && e.contains("key `scheduler`"),
            "{e}"
        );
        assert!(e.contains("plateau, step, cosine"), "{e}");
        let e = err("binary = \"hkd-train\"\n[grid]\nmomentum = [0.9, 2]\nlr = [0.1, -1]\n");
        assert!(e.contains("3 of 4 tasks"), "{e}");
        assert!(
            e.contains("key `momentum`") && e.contains("key `lr`"),
            "{e}"
        );
        let e = err("binary = \"hkd-train\"\n[grid]\nresume = [\"yes\"]\n");
        assert!(e.contains("is a switch"), "{e}");
        let e = err("binary = \"hkd-train\"\n[grid]\nlambda = [[0.5, 1.0]]\n");
        assert!(e.contains("takes one value"), "{e}");
        let e = err("binary = \"hkd-train\"\n[grid]\nlambda = [1, 1.0]\n");
        assert!(
            e.contains("task 1") && e.contains("same run as task 0"),
            "{e}"
        );
        let e = err(
            "binary = \"hkd-eval\"\nsubcommand = \"run\"\nargs = [\"r\"]\n[grid]\nweights = [\"best\", \"worst\"]\n",
        );
        assert!(e.contains("task 1") && e.contains("worst"), "{e}");
    }

    #[test]
    fn a_grid_of_too_many_tasks_is_refused_before_expanding() {
        let axes: String = (0..40)
            .map(|i| format!("lr{i} = [0.1, 0.2]\n"))
            .collect::<String>()
            .replace("lr0 ", "lr ");
        let e = expand_and_check(&format!("binary = \"hkd-train\"\n[grid]\n{axes}"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("more than 100000 tasks") && e.contains("lr (2)"),
            "{e}"
        );
    }

    #[test]
    fn values_starting_with_a_dash_stay_values() {
        let c = config("binary = \"hkd-train\"\n[grid]\nlambda = [-0.5]\n");
        let tasks = expand(&c, &binary(BinaryName::Train, None), Path::new("t.toml")).unwrap();
        assert_eq!(tasks[0].args, ["--lambda=-0.5"]);
    }
}
