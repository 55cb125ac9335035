//! Pipelines: grids run one after another (teachers → students → evaluate → analyze), on
//! Slurm chained with `--dependency=afterok:<job ids>`, locally stage by stage.
//!
//! ```toml
//! name = "hkd-study"
//! [[stage]]
//! name = "teachers"
//! config = "train.toml"          # relative to this file
//! [stage.grid]                   # replaces or adds keys of the config's [grid]
//! out = "runs/study/teachers"
//! [[stage]]
//! name = "students"
//! config = "train.toml"
//! after = ["teachers"]           # stages listed before this one
//! [stage.grid]
//! teacher = "best:runs/study/teachers"
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::binary::BinaryInfo;
use crate::config::{BinaryName, ExecutorChoice, GridConfig};
use crate::error::{GridError, Result};
use crate::executor::{Executor, choose_executor};
use crate::manifest::{ExecutorKind, GridDir, now};
use crate::ops::{LaunchOptions, LaunchReport, launch, prepare_after};

/// `pipeline.json` in a pipeline's directory.
pub const PIPELINE_JSON: &str = "pipeline.json";

/// One stage of a pipeline file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    /// Stage name (letters, digits, `._-`); also its grid's name.
    pub name: String,
    /// The grid config, relative to the pipeline file.
    pub config: PathBuf,
    /// Stages (listed earlier) whose every task must succeed first.
    #[serde(default)]
    pub after: Vec<String>,
    /// Keys replacing or adding to the config's `[grid]`.
    #[serde(default)]
    pub grid: toml::Table,
    /// Keys replacing or adding to the config's `[slurm]`.
    #[serde(default)]
    pub slurm: toml::Table,
    /// Replaces the config's positional `args`.
    #[serde(default)]
    pub args: Option<Vec<String>>,
}

/// A pipeline file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Default: the file's stem.
    #[serde(default)]
    pub name: Option<String>,
    /// One executor for every stage (default: the first stage config's).
    #[serde(default)]
    pub executor: Option<ExecutorChoice>,
    #[serde(rename = "stage")]
    pub stages: Vec<StageConfig>,
    /// Named variants of the pipeline (`hkd-grid pipeline FILE --profile NAME`), e.g. a
    /// short version of a long protocol.
    #[serde(default, rename = "profile")]
    pub profiles: std::collections::BTreeMap<String, ProfileConfig>,
}

/// A profile of a pipeline file: `[profile.NAME]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    /// What the profile is for (shown nowhere but the file).
    #[serde(default)]
    pub description: Option<String>,
    /// The stages `grid` applies to.
    #[serde(default)]
    pub stages: Vec<String>,
    /// Keys replacing or adding to the `[grid]` of every stage in `stages`.
    #[serde(default)]
    pub grid: toml::Table,
    /// Per stage (`[profile.NAME.stage.STAGE]`), after `grid`.
    #[serde(default)]
    pub stage: std::collections::BTreeMap<String, ProfileStage>,
}

/// What a profile changes in one stage: `[profile.NAME.stage.STAGE]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileStage {
    /// Keys replacing or adding to the stage's `[grid]`.
    #[serde(default)]
    pub grid: toml::Table,
    /// Keys replacing or adding to the stage's `[slurm]`.
    #[serde(default)]
    pub slurm: toml::Table,
    /// Replaces the stage's positional `args`.
    #[serde(default)]
    pub args: Option<Vec<String>>,
}

/// A stage, resolved: its config with the overrides applied.
#[derive(Debug, Clone)]
pub struct Stage {
    pub name: String,
    pub config_path: PathBuf,
    pub config: GridConfig,
    pub after: Vec<String>,
}

/// A pipeline file, loaded and checked.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub path: PathBuf,
    pub name: String,
    pub executor: ExecutorChoice,
    pub stages: Vec<Stage>,
}

impl Pipeline {
    /// Reads the pipeline and every stage config; checks names and `after` references.
    pub fn load(path: &Path) -> Result<Pipeline> {
        Pipeline::load_profile(path, None)
    }

    /// As [`Pipeline::load`], with the overrides of profile `profile` (`[profile.NAME]`)
    /// applied; the pipeline is then named `<name>-<profile>`.
    pub fn load_profile(path: &Path, profile: Option<&str>) -> Result<Pipeline> {
        let err = |message: String| GridError::Pipeline {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| GridError::io("read", path, e))?;
        let file: PipelineConfig =
            toml::from_str(&text).map_err(|e| GridError::config(path, e.to_string()))?;
        if file.stages.is_empty() {
            return Err(err("no [[stage]]: a pipeline needs at least one".into()));
        }
        let name = file.name.clone().unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "pipeline".into())
        });
        let chosen = match profile {
            None => None,
            Some(p) => Some(file.profiles.get(p).ok_or_else(|| {
                err(format!(
                    "no [profile.{p}]; the file has {}",
                    if file.profiles.is_empty() {
                        "no profiles".to_string()
                    } else {
                        file.profiles
                            .keys()
                            .map(String::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ))
            })?),
        };
        for (pname, pconf) in &file.profiles {
            for s in pconf.stages.iter().chain(pconf.stage.keys()) {
                if !file.stages.iter().any(|st| &st.name == s) {
                    return Err(err(format!(
                        "[profile.{pname}] names stage `{s}`, which the pipeline does not have"
                    )));
                }
            }
        }
        let name = match profile {
            Some(p) => format!("{name}-{p}"),
            None => name,
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let mut stages: Vec<Stage> = Vec::new();
        for stage in &file.stages {
            if stages.iter().any(|s| s.name == stage.name) {
                return Err(err(format!("two stages are named `{}`", stage.name)));
            }
            for dep in &stage.after {
                if !stages.iter().any(|s| &s.name == dep) {
                    return Err(err(format!(
                        "stage `{}`: after = [\"{dep}\"] names no stage listed before it",
                        stage.name
                    )));
                }
            }
            let config_path = base.join(&stage.config);
            let stage_text = std::fs::read_to_string(&config_path)
                .map_err(|e| GridError::io("read", &config_path, e))?;
            let mut table: toml::Table = toml::from_str(&stage_text)
                .map_err(|e| GridError::config(&config_path, e.to_string()))?;
            merge_section(&mut table, "grid", &stage.grid);
            merge_section(&mut table, "slurm", &stage.slurm);
            if let Some(p) = chosen
                && p.stages.contains(&stage.name)
            {
                merge_section(&mut table, "grid", &p.grid);
            }
            let own = chosen.and_then(|p| p.stage.get(&stage.name));
            if let Some(own) = own {
                merge_section(&mut table, "grid", &own.grid);
                merge_section(&mut table, "slurm", &own.slurm);
            }
            if let Some(args) = own.and_then(|o| o.args.as_ref()).or(stage.args.as_ref()) {
                table.insert(
                    "args".into(),
                    toml::Value::Array(args.iter().cloned().map(toml::Value::String).collect()),
                );
            }
            table.insert("name".into(), toml::Value::String(stage.name.clone()));
            let shown = PathBuf::from(format!(
                "{} (stage `{}` from {})",
                path.display(),
                stage.name,
                config_path.display()
            ));
            let config = GridConfig::from_table(table, &shown)?;
            stages.push(Stage {
                name: stage.name.clone(),
                config_path,
                config,
                after: stage.after.clone(),
            });
        }
        let executor = file.executor.unwrap_or(stages[0].config.executor);
        Ok(Pipeline {
            path: path.to_path_buf(),
            name,
            executor,
            stages,
        })
    }
}

fn merge_section(table: &mut toml::Table, key: &str, overrides: &toml::Table) {
    if overrides.is_empty() {
        return;
    }
    let entry = table
        .entry(key.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let toml::Value::Table(section) = entry {
        for (k, v) in overrides {
            section.insert(k.clone(), v.clone());
        }
    }
}

/// One stage in `pipeline.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    pub name: String,
    /// The stage's grid directory (absolute).
    pub grid_dir: PathBuf,
    pub after: Vec<String>,
    #[serde(default)]
    pub job_ids: Vec<String>,
    /// Local executor: tasks that did not exit 0.
    #[serde(default)]
    pub failed_tasks: Vec<usize>,
}

/// `pipeline.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineRecord {
    pub name: String,
    pub pipeline_path: PathBuf,
    pub created: String,
    pub executor: ExecutorKind,
    pub dry_run: bool,
    pub stages: Vec<StageRecord>,
}

impl PipelineRecord {
    pub fn read(dir: &Path) -> Result<PipelineRecord> {
        let path = dir.join(PIPELINE_JSON);
        let text = std::fs::read_to_string(&path).map_err(|e| GridError::io("read", &path, e))?;
        serde_json::from_str(&text)
            .map_err(|e| GridError::grid_dir(&path, format!("not a valid pipeline record: {e}")))
    }

    fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(PIPELINE_JSON);
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| GridError::grid_dir(&path, e.to_string()))?;
        hkd_rundir::write_atomic(&path, text.as_bytes())
            .map_err(|e| GridError::io("write", &path, e))
    }
}

/// What a pipeline launch did.
#[derive(Debug)]
pub struct PipelineRun {
    pub dir: PathBuf,
    pub executor: Box<dyn Executor>,
    pub record: PipelineRecord,
    pub reports: Vec<LaunchReport>,
}

/// Options of [`run_pipeline`].
pub struct PipelineOptions<'a> {
    /// Where `<timestamp>-<name>/` is created.
    pub grids_root: PathBuf,
    pub executor: Option<ExecutorChoice>,
    /// Job ids the first stages wait for (`afterok`).
    pub after: Vec<String>,
    pub workdir: PathBuf,
    pub launch: LaunchOptions<'a>,
    /// Called when a stage starts (name, grid dir, task count).
    pub on_stage: &'a dyn Fn(&str, &Path, usize),
    /// Finds a binary (tests substitute fakes); default [`BinaryInfo::find`].
    pub find_binary: &'a dyn Fn(BinaryName, Option<&str>) -> Result<BinaryInfo>,
}

/// Prepares every stage (so a bad stage fails before anything runs), then launches them
/// in order: on Slurm each with `afterok` on its `after` stages' jobs, locally one after
/// another, stopping at the first stage with a failed task.
pub fn run_pipeline(pipeline: &Pipeline, options: &PipelineOptions<'_>) -> Result<PipelineRun> {
    let dry_run = options.launch.dry_run;
    let executor = choose_executor(options.executor.unwrap_or(pipeline.executor), dry_run)?;
    let mut binaries: HashMap<(BinaryName, Option<String>), BinaryInfo> = HashMap::new();
    // where the earlier stages' hkd-train tasks write: a later stage's teachers may be there
    let mut produced: Vec<std::path::PathBuf> = Vec::new();
    for stage in &pipeline.stages {
        let key = (stage.config.binary, stage.config.subcommand.clone());
        if let std::collections::hash_map::Entry::Vacant(slot) = binaries.entry(key) {
            let info =
                (options.find_binary)(stage.config.binary, stage.config.subcommand.as_deref())?;
            slot.insert(info);
        }
        // check every task of every stage now, before anything is created
        let info = &binaries[&(stage.config.binary, stage.config.subcommand.clone())];
        let in_stage = |e: GridError| match e {
            GridError::Config { path, message } => GridError::Config {
                path,
                message: format!("stage `{}`: {message}", stage.name),
            },
            other => other,
        };
        let tasks =
            crate::grid::expand(&stage.config, info, &stage.config_path).map_err(in_stage)?;
        let warnings = crate::grid::check_tasks_after(
            &tasks,
            info,
            &options.workdir,
            &stage.config_path,
            &produced,
        )
        .map_err(in_stage)?;
        produced.extend(crate::grid::train_outputs(&tasks, info, &options.workdir));
        for warning in warnings {
            tracing::warn!(
                "{}: stage `{}`: {warning}",
                pipeline.path.display(),
                stage.name
            );
        }
    }
    let root = GridDir::create(&options.grids_root, &pipeline.name)?;
    let dir = root.path().to_path_buf();
    let mut record = PipelineRecord {
        name: pipeline.name.clone(),
        pipeline_path: crate::config::absolute(&pipeline.path),
        created: now(),
        executor: executor.kind(),
        dry_run,
        stages: Vec::new(),
    };
    let mut reports = Vec::new();
    let mut ids_by_stage: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut produced: Vec<std::path::PathBuf> = Vec::new();
    for (n, stage) in pipeline.stages.iter().enumerate() {
        let stage_dir = GridDir::create_at(&dir.join(format!("{n:02}-{}", stage.name)))?;
        let info = binaries[&(stage.config.binary, stage.config.subcommand.clone())].clone();
        let mut manifest = prepare_after(
            stage.config.clone(),
            &stage.config_path,
            info.clone(),
            &stage_dir,
            &options.workdir,
            &produced,
        )?;
        produced.extend(crate::grid::train_outputs(
            &manifest.tasks,
            &info,
            &options.workdir,
        ));
        (options.on_stage)(&stage.name, stage_dir.path(), manifest.tasks.len());
        let mut wait_for: Vec<String> = stage
            .after
            .iter()
            .flat_map(|s| ids_by_stage.get(s).cloned().unwrap_or_default())
            .collect();
        if stage.after.is_empty() {
            wait_for.extend(options.after.iter().cloned());
        }
        let dependency = if dry_run && !stage.after.is_empty() {
            executor.dependency(&[format!("<jobs of {}>", stage.after.join(","))])
        } else {
            executor.dependency(&wait_for)
        };
        let mut launch_options = options.launch.clone();
        launch_options.dependency = dependency;
        let tasks: Vec<usize> = (0..manifest.tasks.len()).collect();
        // recorded before it runs, so that `status DIR` shows a local pipeline's stage
        // while it runs (the local executor returns when the stage has finished)
        record.stages.push(StageRecord {
            name: stage.name.clone(),
            grid_dir: stage_dir.path().to_path_buf(),
            after: stage.after.clone(),
            job_ids: Vec::new(),
            failed_tasks: Vec::new(),
        });
        record.write(&dir)?;
        let report = launch(
            &stage_dir,
            &mut manifest,
            executor.as_ref(),
            &tasks,
            &launch_options,
        )?;
        let failed: Vec<usize> = report.failed_local().iter().map(|o| o.index).collect();
        ids_by_stage.insert(stage.name.clone(), report.job_ids());
        if let Some(last) = record.stages.last_mut() {
            last.job_ids = report.job_ids();
            last.failed_tasks = failed.clone();
        }
        record.write(&dir)?;
        reports.push(report);
        if !failed.is_empty() {
            return Err(GridError::Pipeline {
                path: pipeline.path.clone(),
                message: format!(
                    "stage `{}`: tasks {:?} failed (see {}/logs/); later stages were not run. \
                     Fix the cause, then `hkd-grid resubmit {} --failed`",
                    stage.name,
                    failed,
                    stage_dir.path().display(),
                    stage_dir.path().display()
                ),
            });
        }
    }
    Ok(PipelineRun {
        dir,
        executor,
        record,
        reports,
    })
}
