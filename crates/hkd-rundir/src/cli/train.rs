//! `hkd-train`'s command line: the binary parses it, and `hkd-grid` parses
//! every task of a grid with it in-process (to validate the task and to know its run
//! directory) — no help text is scraped, no flag is listed twice.
//!
//! A `--config FILE` holds any of the settings as TOML, either flat (`lambda = 0.9`,
//! the flag names with `_`) or nested like the `[spec]` table of a run's `config.toml`
//! (`[loss]` / `lambda = 0.9`); a run's `config.toml` itself is accepted (its `[spec]` is
//! used), which reproduces that run. The file's settings are turned into flags and parsed
//! by the same clap definition before the command line's, which override them: one parser,
//! one set of checks, one set of defaults.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{ArgAction, Args, CommandFactory, FromArgMatches, Parser};

use crate::naming::py_float;
use crate::spec::{InvalidSetting, RunSpec};

/// Where and how a run executes. Nothing here changes a run's result or its identity.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct Execution {
    /// Master output directory; the run goes to OUT/<teacher-slug>/<student>/<run-name>/.
    #[arg(long, value_name = "DIR", default_value = "runs")]
    pub out: PathBuf,
    /// cpu, cuda:N or auto (the first CUDA GPU if this build has CUDA and one is visible).
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// CPU threads [default: all cores].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub threads: Option<u32>,
    /// Continue the run from its last checkpoint (a run that does not exist yet starts
    /// fresh, a finished one exits 0 at once); its stored specification must match.
    #[arg(long, conflicts_with = "overwrite")]
    pub resume: bool,
    /// Delete an existing run at the same place and start again.
    #[arg(long)]
    pub overwrite: bool,
}

/// The flags of `hkd-train` (training): a config file, the run's [`RunSpec`] and its
/// [`Execution`].
#[derive(Debug, Clone, PartialEq, Parser)]
#[command(name = "hkd-train", args_override_self = true, max_term_width = 100)]
pub struct TrainCommand {
    /// TOML file with any of the settings (the flag names with `_`, flat or in the
    /// sections of a run's config.toml; a run's config.toml itself reproduces that run);
    /// flags on the command line override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Resolve everything, print the run directory and its config.toml, train nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub execution: Execution,
    #[command(flatten)]
    pub spec: RunSpec,
}

/// Why a command line (or a grid task) is not a valid training request.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// clap refused the arguments (unknown flag, value of the wrong type or not among the
    /// possible values); the message is clap's.
    #[error("{0}")]
    Usage(String),
    /// A `--config` file cannot be read or holds something that is not a setting.
    #[error("config file {}: {reason}", path.display())]
    ConfigFile { path: PathBuf, reason: String },
    /// A value is out of range.
    #[error("invalid setting {0}")]
    Invalid(#[from] InvalidSetting),
}

impl CommandError {
    /// The key a usage error is about (`lambda` for `--lambda`), when clap names one.
    pub fn key(&self) -> Option<String> {
        match self {
            CommandError::Invalid(i) => Some(i.key.clone()),
            CommandError::Usage(msg) | CommandError::ConfigFile { reason: msg, .. } => key_of(msg),
        }
    }
}

impl TrainCommand {
    /// The clap command (for `--help`, and for `hkd-grid` to look up a grid key).
    pub fn clap_command() -> clap::Command {
        with_negative_numbers(<TrainCommand as CommandFactory>::command())
    }

    /// Parses `hkd-train`'s arguments (without the program name): the `--config` file's
    /// settings first, then `args`, which override them; then checks every value
    /// ([`RunSpec::validate`]). Relative paths stay relative (to the current directory).
    pub fn parse_args<I, T>(args: I) -> Result<TrainCommand, CommandError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let first = parse(&args)?;
        let parsed = match &first.config {
            None => first,
            Some(path) => {
                let file_args = config_file_args(path)?;
                // The file alone must parse: its errors name the file.
                parse(&file_args).map_err(|e| CommandError::ConfigFile {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                let mut all = file_args;
                all.extend(args);
                parse(&all)?
            }
        };
        parsed.spec.validate()?;
        Ok(parsed)
    }

    /// Like [`parse_args`](Self::parse_args) for a task that runs in `workdir`: the
    /// `--config` file and every relative path (output, dataset, teacher) are taken
    /// against `workdir`, and the result holds them absolute.
    pub fn parse_in(args: &[String], workdir: &Path) -> Result<TrainCommand, CommandError> {
        let first = parse(args)?;
        let mut cmd = match &first.config {
            // the common case: one parse
            None => {
                first.spec.validate()?;
                first
            }
            Some(config) => {
                let mut args: Vec<String> = args.to_vec();
                args.push(format!("--config={}", workdir.join(config).display()));
                Self::parse_args(args)?
            }
        };
        cmd.make_paths_absolute(workdir);
        Ok(cmd)
    }

    /// Joins every relative path of the request (output, dataset, a teacher path or
    /// `best:` directory, the config file) to `base`, normalised lexically
    /// ([`normalize_against`]).
    pub fn make_paths_absolute(&mut self, base: &Path) {
        let join = |p: &Path| normalize_against(base, p);
        self.execution.out = join(&self.execution.out);
        self.spec.data.dir = join(&self.spec.data.dir);
        if let Some(c) = &self.config {
            self.config = Some(join(c));
        }
        let t = &mut self.spec.teacher.teacher;
        if !matches!(t.as_str(), "baseline" | "human") {
            *t = match t.strip_prefix("best:") {
                Some(dir) => format!("best:{}", join(Path::new(dir)).display()),
                None => join(Path::new(t.as_str())).display().to_string(),
            };
        }
    }
}

/// One clap parse of `args` (no program name).
fn parse<T: Into<OsString> + Clone>(args: &[T]) -> Result<TrainCommand, CommandError> {
    let argv =
        std::iter::once(OsString::from("hkd-train")).chain(args.iter().cloned().map(Into::into));
    let matches = TrainCommand::clap_command()
        .try_get_matches_from(argv)
        .map_err(usage)?;
    TrainCommand::from_arg_matches(&matches).map_err(usage)
}

fn usage(e: clap::Error) -> CommandError {
    CommandError::Usage(one_line(&e))
}

/// `cmd` with every option that takes a value accepting a negative number (`--lr -0.1`),
/// in its subcommands too: the value then reaches the validator, which names the flag and
/// the range, instead of clap reading `-0` as an unknown flag.
pub fn with_negative_numbers(cmd: clap::Command) -> clap::Command {
    cmd.mut_args(|a| {
        if a.get_action().takes_values() && !a.is_positional() {
            a.allow_negative_numbers(true)
        } else {
            a
        }
    })
    .mut_subcommands(with_negative_numbers)
}

/// clap's message on one line, without `error: ` and the usage block and tip.
pub fn one_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let lines: Vec<&str> = text
        .lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let joined = lines.join("; ");
    joined
        .strip_prefix("error: ")
        .unwrap_or(&joined)
        .to_string()
}

/// The key (`lambda` for `--lambda`) a one-line clap message is about, if it names one.
pub fn key_of(message: &str) -> Option<String> {
    let start = message.find("'--")? + 3;
    let rest = &message[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .unwrap_or(rest.len());
    Some(rest[..end].replace('-', "_"))
}

/// `base.join(path)` unless `path` is absolute, with `.` and `a/..` removed lexically
/// (no file system access), so that `runs`, `./runs` and `x/../runs` are one path.
pub fn normalize_against(base: &Path, path: &Path) -> PathBuf {
    use std::path::Component;
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The settings of a `--config` file as `--flag=value` arguments.
fn config_file_args(path: &Path) -> Result<Vec<OsString>, CommandError> {
    let fail = |reason: String| CommandError::ConfigFile {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    let mut table: toml::Table = toml::from_str(&text)
        .map_err(|e| fail(format!("not TOML: {}", e.to_string().trim_end())))?;
    // A run's config.toml: its [spec] is the specification.
    if let Some(toml::Value::Table(spec)) = table.remove("spec") {
        table = spec;
    }
    let command = TrainCommand::clap_command();
    let mut out = Vec::new();
    settings_as_args(&table, &command, &mut out).map_err(fail)?;
    Ok(out)
}

/// The settings of `table` (and its tables) as flags; every bad key at once, one per
/// `; `-separated part, so that a file with three mistakes is fixed in one go.
fn settings_as_args(
    table: &toml::Table,
    command: &clap::Command,
    out: &mut Vec<OsString>,
) -> Result<(), String> {
    let mut errors = Vec::new();
    collect_settings(table, command, out, &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

fn collect_settings(
    table: &toml::Table,
    command: &clap::Command,
    out: &mut Vec<OsString>,
    errors: &mut Vec<String>,
) {
    for (key, value) in table {
        if let toml::Value::Table(inner) = value {
            collect_settings(inner, command, out, errors);
            continue;
        }
        if let Err(e) = setting_as_args(key, value, command, out) {
            errors.push(e);
        }
    }
}

fn setting_as_args(
    key: &str,
    value: &toml::Value,
    command: &clap::Command,
    out: &mut Vec<OsString>,
) -> Result<(), String> {
    {
        let flag = key.replace('_', "-");
        let arg = command
            .get_arguments()
            .find(|a| a.get_id().as_str() == key || a.get_long() == Some(flag.as_str()))
            .filter(|a| a.get_long() != Some("config"))
            .ok_or_else(|| {
                format!(
                    "unknown setting `{key}`; the settings are hkd-train's flags with `_` for `-` (hkd-train --help, docs/training.md)"
                )
            })?;
        let long = arg.get_long().unwrap_or(key);
        let switch = matches!(arg.get_action(), ArgAction::SetTrue);
        let scalar = |v: &toml::Value| -> Result<String, String> {
            match v {
                toml::Value::String(s) => Ok(s.clone()),
                toml::Value::Integer(i) => Ok(i.to_string()),
                toml::Value::Float(x) => Ok(py_float(*x)),
                toml::Value::Boolean(b) => Ok(b.to_string()),
                other => Err(format!(
                    "`{key}` is a {}, expected a string, number or boolean",
                    other.type_str()
                )),
            }
        };
        match value {
            toml::Value::Boolean(b) if switch => {
                if *b {
                    out.push(format!("--{long}").into());
                }
            }
            _ if switch => {
                return Err(format!("`{key}` is a switch: true or false"));
            }
            toml::Value::Array(items) => {
                if arg.get_value_delimiter().is_none() {
                    return Err(format!("`{key}` takes one value, not a list"));
                }
                let parts = items.iter().map(scalar).collect::<Result<Vec<_>, _>>()?;
                out.push(format!("--{long}={}", parts.join(",")).into());
            }
            other => out.push(format!("--{long}={}", scalar(other)?).into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_flags_give_the_specification_defaults() {
        let cmd = TrainCommand::parse_args(Vec::<String>::new()).unwrap();
        assert_eq!(cmd.spec, RunSpec::default());
        assert_eq!(cmd.execution.out, PathBuf::from("runs"));
        assert!(!cmd.execution.resume && !cmd.execution.overwrite && !cmd.dry_run);
    }

    #[test]
    fn flags_reach_every_section() {
        let cmd = TrainCommand::parse_args([
            "--lr=0.01",
            "--distil-fn",
            "kd",
            "--kl-reduction=batchmean",
            "--step-milestones=0.3,0.6",
            "--data=d",
            "--label-smoothing=0.1",
            "--scheduler=COSINE",
        ])
        .unwrap();
        assert_eq!(cmd.spec.optimizer.lr, 0.01);
        assert_eq!(
            cmd.spec.loss.as_hkd().unwrap().distil_fn,
            hkd_losses::DistilFn::Kl
        );
        assert_eq!(
            cmd.spec.loss.as_hkd().unwrap().kl_reduction,
            hkd_losses::KlReduction::BatchMean
        );
        assert_eq!(cmd.spec.schedule.step_milestones, vec![0.3, 0.6]);
        assert_eq!(cmd.spec.data.dir, PathBuf::from("d"));
        assert_eq!(cmd.spec.loss.as_hkd().unwrap().label_smoothing, 0.1);
        assert_eq!(
            cmd.spec.schedule.scheduler,
            crate::spec::SchedulerKind::Cosine
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = TrainCommand::parse_args(["--momentum=2"]).unwrap_err();
        assert_eq!(e.key().as_deref(), Some("momentum"), "{e}");
        let e = TrainCommand::parse_args(["--scheduler=sgdr"]).unwrap_err();
        assert_eq!(e.key().as_deref(), Some("scheduler"), "{e}");
        assert!(e.to_string().contains("plateau"), "{e}");
        let e = TrainCommand::parse_args(["--lamda=1"]).unwrap_err();
        assert!(e.to_string().contains("--lamda"), "{e}");
        let e = TrainCommand::parse_args(["--lambda=x"]).unwrap_err();
        assert_eq!(e.key().as_deref(), Some("lambda"), "{e}");
    }

    #[test]
    fn config_files_flat_nested_or_a_run_config_and_flags_override_them() {
        let dir = tempfile::tempdir().unwrap();
        let flat = dir.path().join("flat.toml");
        std::fs::write(
            &flat,
            "lambda = 0.9\nepochs = 7\nstudent = \"resnet20\"\ndistil_fn = \"KD\"\ndata = \"x\"\nstep_milestones = [0.25, 0.5]\n",
        )
        .unwrap();
        let cmd = TrainCommand::parse_args([
            "--config".into(),
            flat.display().to_string(),
            "--epochs=3".into(),
        ])
        .unwrap();
        assert_eq!(cmd.spec.loss.as_hkd().unwrap().lambda, 0.9);
        assert_eq!(cmd.spec.training.epochs, 3);
        assert_eq!(cmd.spec.student, "resnet20");
        assert_eq!(cmd.spec.data.dir, PathBuf::from("x"));
        assert_eq!(cmd.spec.schedule.step_milestones, vec![0.25, 0.5]);
        assert_eq!(cmd.spec.training.batch_size, 128);

        let nested = dir.path().join("nested.toml");
        let mut spec = RunSpec::default();
        spec.optimizer.lr = 0.003;
        spec.teacher.teacher_arch = Some("resnet8".into());
        let text = format!(
            "hkd_version = \"x\"\n[spec]\n{}",
            toml::to_string(&spec).unwrap().replace("\n[", "\n[spec.")
        );
        std::fs::write(&nested, text).unwrap();
        let cmd = TrainCommand::parse_args(["--config".to_string(), nested.display().to_string()])
            .unwrap();
        assert_eq!(cmd.spec, spec);

        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "lamda = 0.9\n").unwrap();
        let e = TrainCommand::parse_args(["--config".to_string(), bad.display().to_string()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.toml") && e.contains("lamda"), "{e}");
        std::fs::write(&bad, "lambda = 1.5\n").unwrap();
        let e = TrainCommand::parse_args(["--config".to_string(), bad.display().to_string()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("lambda") && e.contains("1.5"), "{e}");
    }

    #[test]
    fn task_paths_resolve_against_the_work_directory() {
        let args: Vec<String> = ["--out=r", "--data=d", "--teacher=best:t"]
            .map(String::from)
            .to_vec();
        let cmd = TrainCommand::parse_in(&args, Path::new("/w")).unwrap();
        assert_eq!(cmd.execution.out, PathBuf::from("/w/r"));
        assert_eq!(cmd.spec.data.dir, PathBuf::from("/w/d"));
        assert_eq!(cmd.spec.teacher.teacher, "best:/w/t");
        let args: Vec<String> = ["--out=./r/", "--data=x/../d"].map(String::from).to_vec();
        let cmd = TrainCommand::parse_in(&args, Path::new("/w/.")).unwrap();
        assert_eq!(cmd.execution.out, PathBuf::from("/w/r"));
        assert_eq!(cmd.spec.data.dir, PathBuf::from("/w/d"));
    }
}
