//! The grid config file (`configs/train.toml`, …): which binary, which grid of flags, how
//! to run it. See `docs/grid.md` for the reference.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{GridError, Result};
use crate::quote::{argument_problem, directive_problem, extra_directive_problem};

pub use hkd_rundir::absolute;
pub use hkd_rundir::cli::BinaryName;

/// Where the tasks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorChoice {
    /// Slurm when `sbatch` is on `PATH`, else local.
    #[default]
    Auto,
    Slurm,
    Local,
}

impl std::str::FromStr for ExecutorChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(ExecutorChoice::Auto),
            "slurm" => Ok(ExecutorChoice::Slurm),
            "local" => Ok(ExecutorChoice::Local),
            other => Err(format!(
                "unknown executor {other:?}: expected auto, slurm or local"
            )),
        }
    }
}

/// How tasks are packed into Slurm jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobMode {
    /// One job array; array task `i` runs grid task `i` (`--array=…%max_concurrent`).
    #[default]
    Array,
    /// `tasks_per_job` tasks share one allocation through `srun --multi-prog` (the
    /// original's default).
    Multiprog,
    /// One `sbatch --wrap` job per task.
    Wrap,
}

impl fmt::Display for JobMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JobMode::Array => "array",
            JobMode::Multiprog => "multiprog",
            JobMode::Wrap => "wrap",
        })
    }
}

/// An integer or a string in the config (`time = 30` minutes or `time = "1-00:00:00"`,
/// `mem = 4000` megabytes or `mem = "4G"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    Int(u64),
    Str(String),
}

impl fmt::Display for IntOrString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrString::Int(i) => write!(f, "{i}"),
            IntOrString::Str(s) => f.write_str(s),
        }
    }
}

/// `[slurm]`: resources and packing of the jobs.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlurmSettings {
    /// `array` (default), `multiprog` or `wrap`.
    pub mode: JobMode,
    /// `--time`: minutes (integer) or any sbatch time string.
    pub time: Option<IntOrString>,
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// GPUs per task, as `--gres=gpu:N` (the original's `n_gpus`).
    pub gpus: u32,
    pub cpus_per_task: Option<u32>,
    /// `--mem`: megabytes (integer) or an sbatch size string (`"4G"`). Per job; in
    /// multiprog mode `--mem-per-cpu` would be the per-task knob (use `extra`).
    pub mem: Option<IntOrString>,
    pub constraint: Option<String>,
    /// Extra `#SBATCH` lines, each an sbatch option (`"--mail-type=END"`).
    pub extra: Vec<String>,
    /// Shell lines run before the task (`"module load cuda"`). Shell code by design:
    /// written verbatim into the job script.
    pub setup: Vec<String>,
    /// Multiprog: how many tasks share one allocation (the original's
    /// `multiprog_batch_size`). Default 4.
    pub tasks_per_job: Option<u32>,
    /// Array: at most this many array tasks run at once (`%K`).
    pub max_concurrent: Option<u32>,
    /// Seconds before the time limit at which Slurm sends SIGUSR1, so that hkd-train
    /// checkpoints and exits with code 75 (`--signal=[B:]USR1@N`).
    pub signal_before_timeout: Option<u32>,
    /// Requeue a task that checkpointed on that signal (exit 75), so it resumes.
    pub requeue: bool,
    /// The cluster's `MaxArraySize` (array indices must be below it); bigger grids are
    /// split into several arrays. Default: asked from `scontrol show config`, else 1001
    /// (Slurm's default).
    pub max_array_size: Option<usize>,
}

impl SlurmSettings {
    /// Tasks per multiprog job (default 4).
    pub fn tasks_per_job(&self) -> usize {
        self.tasks_per_job.unwrap_or(4).max(1) as usize
    }
}

/// `[local]`: the local executor.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalSettings {
    /// Tasks run at once (`--jobs` overrides). Default: cores / `threads` of the grid if
    /// it sets one value of `threads`, else 1.
    pub jobs: Option<usize>,
}

/// One value of a grid axis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl Scalar {
    /// The text passed to the binary: strings as they are, integers in decimal, floats
    /// the way Python prints them (`1.0`, `0.25`), so run names match the original's.
    pub fn render(&self) -> String {
        match self {
            Scalar::Bool(b) => b.to_string(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(x) => hkd_rundir::py_float(*x),
            Scalar::Str(s) => s.clone(),
        }
    }
}

/// The value one grid axis takes at one grid point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum GridPoint {
    /// `--flag value` once (or, for a boolean switch, present/absent).
    One(Scalar),
    /// `--flag v1 --flag v2 …`: written as an inner list, `set = [["a=x", "b=y"]]`.
    Repeat(Vec<Scalar>),
}

/// All values of one grid axis (a scalar in the file is a one-element axis).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct GridAxis(pub Vec<GridPoint>);

impl<'de> Deserialize<'de> for GridAxis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error;
        let value = toml::Value::deserialize(d)?;
        fn scalar(v: &toml::Value) -> std::result::Result<Scalar, String> {
            match v {
                toml::Value::String(s) => Ok(Scalar::Str(s.clone())),
                toml::Value::Integer(i) => Ok(Scalar::Int(*i)),
                toml::Value::Float(x) => Ok(Scalar::Float(*x)),
                toml::Value::Boolean(b) => Ok(Scalar::Bool(*b)),
                other => Err(format!(
                    "a {} is not a grid value: expected a string, number or boolean",
                    other.type_str()
                )),
            }
        }
        let points = match &value {
            toml::Value::Array(items) => items
                .iter()
                .map(|item| match item {
                    toml::Value::Array(inner) => inner
                        .iter()
                        .map(scalar)
                        .collect::<std::result::Result<Vec<_>, _>>()
                        .map(GridPoint::Repeat),
                    other => scalar(other).map(GridPoint::One),
                })
                .collect::<std::result::Result<Vec<_>, _>>(),
            other => scalar(other).map(|s| vec![GridPoint::One(s)]),
        }
        .map_err(D::Error::custom)?;
        if points.is_empty() {
            return Err(D::Error::custom(
                "an empty list would make a grid without tasks: give at least one value",
            ));
        }
        Ok(GridAxis(points))
    }
}

/// A grid config file, parsed. Unknown keys anywhere are errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridConfig {
    /// Name of the grid (directory `grids/<timestamp>-<name>/`, job names). Default: the
    /// config file's stem.
    #[serde(default)]
    pub name: Option<String>,
    /// `hkd-train`, `hkd-eval` or `hkd-analyze`.
    pub binary: BinaryName,
    /// A subcommand of the binary placed first (`hkd-eval run`).
    #[serde(default)]
    pub subcommand: Option<String>,
    /// Positional arguments, the same in every task, after the subcommand.
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub executor: ExecutorChoice,
    /// Each key a long flag of the binary (without `--`), each value a list.
    #[serde(default)]
    pub grid: BTreeMap<String, GridAxis>,
    #[serde(default)]
    pub slurm: SlurmSettings,
    #[serde(default)]
    pub local: LocalSettings,
}

impl GridConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<GridConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| GridError::io("read", path, e))?;
        Self::from_toml_str(&text, path)
    }

    /// Parses and validates config text; `path` is only used in messages and for the
    /// default name.
    pub fn from_toml_str(text: &str, path: &Path) -> Result<GridConfig> {
        let mut config: GridConfig =
            toml::from_str(text).map_err(|e| GridError::config(path, e.to_string()))?;
        config.fill_name(path);
        config.validate(path)?;
        Ok(config)
    }

    /// Builds a config from a TOML table (a pipeline stage after its overrides).
    pub fn from_table(table: toml::Table, path: &Path) -> Result<GridConfig> {
        let mut config: GridConfig = table
            .try_into()
            .map_err(|e: toml::de::Error| GridError::config(path, e.to_string()))?;
        config.fill_name(path);
        config.validate(path)?;
        Ok(config)
    }

    fn fill_name(&mut self, path: &Path) {
        if self.name.is_none() {
            self.name = Some(
                path.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "grid".into()),
            );
        }
    }

    /// The grid's name (set by loading).
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("grid")
    }

    /// Number of tasks of the grid (product of the axis lengths).
    pub fn task_count(&self) -> usize {
        self.grid.values().map(|a| a.0.len()).product()
    }

    /// Checks every value that reaches a shell or an `#SBATCH` line, and the shapes the
    /// serde types cannot express.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let refuse = |what: String, value: &str, why: String| GridError::Unsafe {
            path: path.to_path_buf(),
            what,
            value: value.to_string(),
            why,
        };
        let name = self.name();
        let name_ok = !name.is_empty()
            && !name.starts_with(['.', '-'])
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !name_ok {
            return Err(refuse(
                "name".into(),
                name,
                "a grid name is used in directory and job names: use letters, digits, '.', '_' and '-' (not first)".into(),
            ));
        }
        if let Some(sub) = &self.subcommand
            && let Some(why) = argument_problem(sub)
        {
            return Err(refuse("subcommand".into(), sub, why));
        }
        // the binary's own command line says which subcommands it has (in-process)
        self.binary
            .command(self.subcommand.as_deref())
            .map_err(|why| GridError::config(path, why))?;
        for (i, arg) in self.args.iter().enumerate() {
            if let Some(why) = argument_problem(arg) {
                return Err(refuse(format!("args[{i}]"), arg, why));
            }
        }
        for (key, axis) in &self.grid {
            let key_ok = !key.is_empty()
                && !key.starts_with('-')
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
            if !key_ok {
                return Err(GridError::config(
                    path,
                    format!(
                        "[grid] key {key:?} is not a flag name: write the long flag without its dashes, e.g. `lambda` for --lambda"
                    ),
                ));
            }
            for point in &axis.0 {
                let scalars: &[Scalar] = match point {
                    GridPoint::One(s) => std::slice::from_ref(s),
                    GridPoint::Repeat(v) => v,
                };
                for s in scalars {
                    if let Scalar::Str(text) = s
                        && let Some(why) = argument_problem(text)
                    {
                        return Err(refuse(format!("[grid] value of `{key}`"), text, why));
                    }
                }
            }
        }
        let s = &self.slurm;
        let tokens = [
            ("[slurm] partition", s.partition.clone()),
            ("[slurm] account", s.account.clone()),
            ("[slurm] qos", s.qos.clone()),
            ("[slurm] constraint", s.constraint.clone()),
            ("[slurm] time", s.time.as_ref().map(|t| t.to_string())),
            ("[slurm] mem", s.mem.as_ref().map(|m| m.to_string())),
        ];
        for (what, value) in tokens {
            if let Some(v) = value
                && let Some(why) = directive_problem(&v)
            {
                return Err(refuse(what.into(), &v, why));
            }
        }
        for (i, line) in s.extra.iter().enumerate() {
            if let Some(why) = extra_directive_problem(line) {
                return Err(refuse(format!("[slurm] extra[{i}]"), line, why));
            }
        }
        for (i, line) in s.setup.iter().enumerate() {
            if let Some(c) = line.chars().find(|c| c.is_control()) {
                return Err(refuse(
                    format!("[slurm] setup[{i}]"),
                    line,
                    format!(
                        "it contains the control character U+{:04X}; give one shell line per list entry",
                        c as u32
                    ),
                ));
            }
        }
        let positive = [
            ("tasks_per_job", s.tasks_per_job),
            ("max_concurrent", s.max_concurrent),
            ("cpus_per_task", s.cpus_per_task),
            ("signal_before_timeout", s.signal_before_timeout),
        ];
        for (key, value) in positive {
            if value == Some(0) {
                return Err(GridError::config(
                    path,
                    format!(
                        "[slurm] {key} = 0 is not allowed: give a positive number or leave it out"
                    ),
                ));
            }
        }
        if s.max_array_size == Some(0) {
            return Err(GridError::config(
                path,
                "[slurm] max_array_size = 0 is not allowed: give the cluster's MaxArraySize",
            ));
        }
        if s.requeue && s.signal_before_timeout.is_none() {
            return Err(GridError::config(
                path,
                "[slurm] requeue = true needs signal_before_timeout (seconds): the requeue happens \
                 when hkd-train checkpoints on that signal and exits with code 75",
            ));
        }
        if self.local.jobs == Some(0) {
            return Err(GridError::config(
                path,
                "[local] jobs = 0 is not allowed: give at least 1",
            ));
        }
        Ok(())
    }

    /// A stable hash of the parsed config (hex SHA-256 of its canonical JSON).
    pub fn hash(&self) -> String {
        use sha2::Digest;
        let json = serde_json::to_vec(self).unwrap_or_default();
        let digest = sha2::Sha256::digest(&json);
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<GridConfig> {
        GridConfig::from_toml_str(text, Path::new("configs/test.toml"))
    }

    #[test]
    fn full_config_parses() {
        let c = parse(
            r#"
            name = "study"
            binary = "hkd-train"
            executor = "local"
            [grid]
            lambda = [0.5, 1.0]
            distil-fn = ["KL", "CE"]
            epochs = 2
            set = [["a=1", "b=2"]]
            [slurm]
            mode = "multiprog"
            time = 30
            mem = "4G"
            gpus = 1
            tasks_per_job = 2
            max_concurrent = 3
            signal_before_timeout = 120
            requeue = true
            extra = ["--mail-type=END"]
            setup = ["module load cuda"]
            [local]
            jobs = 2
            "#,
        )
        .unwrap();
        assert_eq!(c.name(), "study");
        assert_eq!(c.binary, BinaryName::Train);
        assert_eq!(c.executor, ExecutorChoice::Local);
        assert_eq!(c.task_count(), 4);
        assert_eq!(c.grid["epochs"].0, vec![GridPoint::One(Scalar::Int(2))]);
        assert_eq!(
            c.grid["set"].0,
            vec![GridPoint::Repeat(vec![
                Scalar::Str("a=1".into()),
                Scalar::Str("b=2".into())
            ])]
        );
        assert_eq!(c.slurm.mode, JobMode::Multiprog);
        assert_eq!(c.slurm.time, Some(IntOrString::Int(30)));
        assert_eq!(c.slurm.tasks_per_job(), 2);
        assert_eq!(c.local.jobs, Some(2));
    }

    #[test]
    fn default_name_is_the_file_stem_and_mode_is_array() {
        let c = parse("binary = \"hkd-eval\"\nsubcommand = \"run\"\n").unwrap();
        assert_eq!(c.name(), "test");
        // the binary's own command line says which subcommands it has
        let e = parse("binary = \"hkd-eval\"\n").unwrap_err().to_string();
        assert!(e.contains("needs a subcommand: run, predict"), "{e}");
        let e = parse("binary = \"hkd-eval\"\nsubcommand = \"evaluate\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no subcommand `evaluate`"), "{e}");
        assert_eq!(c.slurm.mode, JobMode::Array);
        assert_eq!(c.task_count(), 1);
    }

    #[test]
    fn unknown_keys_name_the_file_and_the_key() {
        let err = parse("binary = \"hkd-train\"\nepochs = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("configs/test.toml"), "{err}");
        assert!(err.contains("epochs"), "{err}");
        let err = parse("binary = \"hkd-train\"\n[slurm]\npartitoin = \"gpu\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("partitoin"), "{err}");
        assert!(err.contains("configs/test.toml"), "{err}");
        let err = parse("binary = \"hkd-trian\"\n").unwrap_err().to_string();
        assert!(err.contains("hkd-trian"), "{err}");
    }

    #[test]
    fn bad_grid_values_are_refused() {
        let err = parse("binary = \"hkd-train\"\n[grid]\nlambda = []\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("empty list"), "{err}");
        let err = parse("binary = \"hkd-train\"\n[grid]\nlambda = { a = 1 }\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a grid value"), "{err}");
        let err = parse("binary = \"hkd-train\"\n[grid]\nout = [\"a\\nb\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("U+000A"), "{err}");
        let err = parse("binary = \"hkd-train\"\n[grid]\n\"--lambda\" = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("without its dashes"), "{err}");
    }

    #[test]
    fn sbatch_values_must_be_tokens() {
        let err = parse("binary = \"hkd-train\"\n[slurm]\npartition = \"gpu\\n#SBATCH --x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("partition"), "{err}");
        let err = parse("binary = \"hkd-train\"\n[slurm]\naccount = \"a b\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("account"), "{err}");
        let err = parse("binary = \"hkd-train\"\n[slurm]\nrequeue = true\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("signal_before_timeout"), "{err}");
        let err = parse("binary = \"hkd-train\"\nname = \"a/b\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("name"), "{err}");
    }

    #[test]
    fn scalars_render_like_python() {
        assert_eq!(Scalar::Float(1.0).render(), "1.0");
        assert_eq!(Scalar::Float(0.25).render(), "0.25");
        assert_eq!(Scalar::Int(3).render(), "3");
        assert_eq!(Scalar::Str("KL".into()).render(), "KL");
    }

    #[test]
    fn hash_changes_with_content() {
        let a = parse("binary = \"hkd-train\"\n[grid]\nlambda = [0.5]\n").unwrap();
        let b = parse("binary = \"hkd-train\"\n[grid]\nlambda = [0.6]\n").unwrap();
        assert_eq!(a.hash(), a.clone().hash());
        assert_ne!(a.hash(), b.hash());
        assert_eq!(a.hash().len(), 64);
    }
}
