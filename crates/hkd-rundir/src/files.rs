use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::RunConfig;
use crate::error::RunDirError;
use crate::eval::EvalReport;

type Result<T> = std::result::Result<T, RunDirError>;

/// SHA-256 of a file's bytes, as lowercase hex: the digest run files record for weights
/// (`last.json`, eval.json), read in 1 MiB blocks.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, flushed to
/// disk, then renamed over `path`. Readers see the old file or the new one, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // 0666 minus the umask, like any other tool's output (tempfile's own default is 0600,
    // which would hide results from lab mates and other accounts' analysis jobs).
    let mut tmp = tempfile::Builder::new()
        .prefix(".hkd-")
        .suffix(".tmp")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// One line of `metrics.jsonl`: one finished epoch.
///
/// Lines written before hkd 0.3 have fixed loss parts (`train_hard`, `train_kd`,
/// `train_teacher`, `train_human`); they read as the parts `hard`, `kd`, `teacher` and
/// `human`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "EpochMetricsLine")]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: u32,
    /// Learning rate used during the epoch.
    pub lr: f64,
    /// The objective's loss parts, by the objective's names (`hard`, `kd`, `kl`, `tckd`,
    /// …; `hkd_losses::Objective::part_names`), averaged over the epoch's batches
    /// (weighted by batch size).
    pub train_parts: LossPartValues,
    /// The training loss, averaged likewise.
    pub train_total: f64,
    /// Training top-1 accuracy on the augmented batches.
    pub train_acc: f64,
    /// Validation top-1 accuracy in [0, 1].
    pub val_acc: f64,
    /// Validation mean per-image cross-entropy.
    pub val_loss: f64,
    /// Wall time of the epoch (training and validation).
    pub seconds: f64,
    /// Training images per second.
    pub images_per_s: f64,
}

impl EpochMetrics {
    /// The epoch's value of the loss part `name`, if the objective has it.
    pub fn part(&self, name: &str) -> Option<f64> {
        self.train_parts.get(name)
    }
}

/// Named loss parts in the objective's order; a JSON object in that order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LossPartValues(pub Vec<(String, f64)>);

impl LossPartValues {
    /// The value of part `name`.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    /// The part names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(n, _)| n.as_str())
    }
}

impl<S: Into<String>, const N: usize> From<[(S, f64); N]> for LossPartValues {
    fn from(parts: [(S, f64); N]) -> Self {
        LossPartValues(parts.into_iter().map(|(n, v)| (n.into(), v)).collect())
    }
}

impl Serialize for LossPartValues {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for LossPartValues {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = LossPartValues;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of loss part names and numbers")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<LossPartValues, A::Error> {
                let mut out = Vec::new();
                while let Some((name, value)) = map.next_entry::<String, f64>()? {
                    out.push((name, value));
                }
                Ok(LossPartValues(out))
            }
        }
        deserializer.deserialize_map(Visit)
    }
}

/// A `metrics.jsonl` line as written: today's, or one with hkd 0.2's fixed parts.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EpochMetricsLine {
    epoch: u32,
    lr: f64,
    #[serde(default)]
    train_parts: Option<LossPartValues>,
    #[serde(default)]
    train_hard: Option<f64>,
    #[serde(default)]
    train_kd: Option<f64>,
    #[serde(default)]
    train_teacher: Option<f64>,
    #[serde(default)]
    train_human: Option<f64>,
    train_total: f64,
    train_acc: f64,
    val_acc: f64,
    val_loss: f64,
    seconds: f64,
    images_per_s: f64,
}

impl TryFrom<EpochMetricsLine> for EpochMetrics {
    type Error = String;

    fn try_from(line: EpochMetricsLine) -> std::result::Result<Self, String> {
        let legacy = [
            ("hard", line.train_hard),
            ("kd", line.train_kd),
            ("teacher", line.train_teacher),
            ("human", line.train_human),
        ];
        let train_parts = match (line.train_parts, line.train_hard) {
            (Some(parts), None) => parts,
            (None, Some(_)) => LossPartValues(
                legacy
                    .into_iter()
                    .filter_map(|(n, v)| v.map(|v| (n.to_string(), v)))
                    .collect(),
            ),
            (Some(_), Some(_)) => {
                return Err("both `train_parts` and hkd 0.2's `train_hard` are present".into());
            }
            (None, None) => return Err("missing field `train_parts`".into()),
        };
        Ok(EpochMetrics {
            epoch: line.epoch,
            lr: line.lr,
            train_parts,
            train_total: line.train_total,
            train_acc: line.train_acc,
            val_acc: line.val_acc,
            val_loss: line.val_loss,
            seconds: line.seconds,
            images_per_s: line.images_per_s,
        })
    }
}

/// `best.json`: the epoch whose weights are in `best.safetensors`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BestRecord {
    pub epoch: u32,
    pub val_acc: f64,
    pub val_loss: f64,
}

/// `last.json`: how far the run got, for resuming and for status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunState {
    /// Epochs fully done (training and validation).
    pub epochs_completed: u32,
    /// Batches of epoch `epochs_completed + 1` already trained (non-zero only after a
    /// signal stopped the run mid-epoch).
    pub batches_into_epoch: u32,
    /// Total epochs of the run.
    pub epochs: u32,
    /// True once the last epoch is done and every file is written.
    pub finished: bool,
    /// The trainer's own state (scheduler, running sums of a partial epoch); opaque here.
    #[serde(default)]
    pub trainer: serde_json::Value,
}

/// Where a run stands, as the grid and the analysis see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunStatus {
    /// No `config.toml`: nothing was started here.
    NotStarted,
    /// Started; `epochs_completed` of `epochs` done (0 of them if no checkpoint yet).
    InProgress {
        epochs_completed: u32,
        epochs: u32,
    },
    Finished,
    /// Finished, but from other inputs than the ones it would be made from now (its
    /// dataset changed, or its teacher was retrained): [`RunDir::status_for`] says which,
    /// one line each with both hashes. Never skipped: `hkd-train --resume` refuses it.
    FinishedForOtherInputs {
        changes: Vec<String>,
    },
}

/// The grid root's `best.json`, written by the analysis: the best configuration by mean
/// validation accuracy over its repeats, and the best run of that configuration, which
/// `hkd-train --teacher best:<grid>` uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridBest {
    /// Best run of the best configuration, relative to the grid root.
    pub run_dir: PathBuf,
    /// Hyperparameters of the configuration.
    pub group: BTreeMap<String, String>,
    pub mean_val_acc: f64,
    pub std_val_acc: f64,
    pub runs: usize,
}

/// A run directory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    pub const CONFIG: &'static str = "config.toml";
    pub const METRICS: &'static str = "metrics.jsonl";
    pub const BEST_WEIGHTS: &'static str = "best.safetensors";
    pub const BEST: &'static str = "best.json";
    pub const LAST_WEIGHTS: &'static str = "last.safetensors";
    pub const LAST_OPTIMIZER: &'static str = "last.optimizer.safetensors";
    pub const LAST: &'static str = "last.json";
    pub const EVAL: &'static str = "eval.json";

    /// A run directory at `path` (nothing is created).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// `<out>/<teacher_slug>/<student>/<run_name>`.
    pub fn in_output(out: &Path, teacher_slug: &str, student: &str, run_name: &str) -> Self {
        Self::new(out.join(teacher_slug).join(student).join(run_name))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Path of a file of this run (use the associated constants for names).
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Creates the directory (and parents).
    pub fn create(&self) -> Result<()> {
        std::fs::create_dir_all(&self.path).map_err(|e| RunDirError::io("create", &self.path, e))
    }

    pub fn has_config(&self) -> bool {
        self.file(Self::CONFIG).is_file()
    }

    pub fn read_config(&self) -> Result<RunConfig> {
        let path = self.file(Self::CONFIG);
        let text = read_string(&path)?;
        RunConfig::from_toml_str(&text).map_err(|e| RunDirError::parse(&path, "run config", e))
    }

    pub fn write_config(&self, config: &RunConfig) -> Result<()> {
        let text = toml::to_string_pretty(config)
            .map_err(|e| RunDirError::parse(self.file(Self::CONFIG), "run config", e))?;
        self.write(Self::CONFIG, text.as_bytes())
    }

    /// All epochs recorded so far (empty if the file does not exist yet).
    pub fn read_metrics(&self) -> Result<Vec<EpochMetrics>> {
        let path = self.file(Self::METRICS);
        if !path.exists() {
            return Ok(Vec::new());
        }
        let text = read_string(&path)?;
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, line)| {
                serde_json::from_str(line).map_err(|e| {
                    RunDirError::parse(&path, "metrics file", format!("line {}: {e}", i + 1))
                })
            })
            .collect()
    }

    /// Records one epoch: drops any recorded epoch `>= m.epoch` (left by a run that was
    /// resumed from an earlier checkpoint), appends `m` and rewrites the file atomically.
    pub fn record_epoch(&self, m: &EpochMetrics) -> Result<()> {
        let mut all = self.read_metrics()?;
        all.retain(|e| e.epoch < m.epoch);
        all.push(m.clone());
        self.write_metrics(&all)
    }

    /// Rewrites `metrics.jsonl` with exactly `epochs`.
    pub fn write_metrics(&self, epochs: &[EpochMetrics]) -> Result<()> {
        let mut text = String::new();
        for e in epochs {
            let line = serde_json::to_string(e)
                .map_err(|err| RunDirError::parse(self.file(Self::METRICS), "metrics file", err))?;
            text.push_str(&line);
            text.push('\n');
        }
        self.write(Self::METRICS, text.as_bytes())
    }

    pub fn read_best(&self) -> Result<BestRecord> {
        self.read_json(Self::BEST, "best record")
    }

    pub fn write_best(&self, best: &BestRecord) -> Result<()> {
        self.write_json(Self::BEST, best, "best record")
    }

    pub fn read_state(&self) -> Result<RunState> {
        self.read_json(Self::LAST, "run state")
    }

    pub fn write_state(&self, state: &RunState) -> Result<()> {
        self.write_json(Self::LAST, state, "run state")
    }

    pub fn read_eval(&self) -> Result<EvalReport> {
        self.read_json(Self::EVAL, "evaluation report")
    }

    pub fn write_eval(&self, report: &EvalReport) -> Result<()> {
        self.write_json(Self::EVAL, report, "evaluation report")
    }

    /// Where the run stands. An unreadable `last.json` counts as in progress with no epoch
    /// done (the trainer will refuse to resume from it with the parse error).
    pub fn status(&self) -> RunStatus {
        if !self.has_config() {
            return RunStatus::NotStarted;
        }
        match self.read_state() {
            Ok(s) if s.finished => RunStatus::Finished,
            Ok(s) => RunStatus::InProgress {
                epochs_completed: s.epochs_completed,
                epochs: s.epochs,
            },
            Err(_) => RunStatus::InProgress {
                epochs_completed: 0,
                epochs: self
                    .read_config()
                    .map(|c| c.spec.training.epochs)
                    .unwrap_or(0),
            },
        }
    }

    pub fn is_finished(&self) -> bool {
        self.status() == RunStatus::Finished
    }

    /// Checks that a weights file of this run (e.g. [`RunDir::BEST_WEIGHTS`]) is a
    /// readable safetensors file: its header parses and every tensor's data lies inside
    /// the file. Reads the header only, so it is cheap for grids of thousands of runs.
    pub fn check_weights(&self, name: &str) -> Result<()> {
        let path = self.file(name);
        let bad = |why: String| RunDirError::parse(&path, "weights file", why);
        let mut file = std::fs::File::open(&path).map_err(|e| RunDirError::io("open", &path, e))?;
        let size = file
            .metadata()
            .map_err(|e| RunDirError::io("read", &path, e))?
            .len();
        let mut len = [0u8; 8];
        std::io::Read::read_exact(&mut file, &mut len)
            .map_err(|_| bad(format!("{size} bytes, too short for a safetensors header")))?;
        let len = u64::from_le_bytes(len);
        if len > size.saturating_sub(8) || len > 100 << 20 {
            return Err(bad(format!(
                "its header claims {len} bytes but the file has {size}: not a safetensors file, or cut off"
            )));
        }
        let mut header = vec![0u8; len as usize];
        std::io::Read::read_exact(&mut file, &mut header)
            .map_err(|e| RunDirError::io("read", &path, e))?;
        let header: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&header)
            .map_err(|e| bad(format!("its header is not safetensors JSON: {e}")))?;
        let data = size - 8 - len;
        for (tensor, entry) in header.iter().filter(|(k, _)| *k != "__metadata__") {
            let end = entry
                .get("data_offsets")
                .and_then(|o| o.get(1))
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| bad(format!("tensor `{tensor}` has no data_offsets")))?;
            if end > data {
                return Err(bad(format!(
                    "tensor `{tensor}` ends at byte {end} of {data} data bytes: the file is cut off"
                )));
            }
        }
        Ok(())
    }

    /// Writes a file of this run atomically.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.file(name);
        write_atomic(&path, bytes).map_err(|e| RunDirError::io("write", &path, e))
    }

    fn read_json<T: DeserializeOwned>(&self, name: &str, what: &'static str) -> Result<T> {
        let path = self.file(name);
        let text = read_string(&path)?;
        serde_json::from_str(&text).map_err(|e| RunDirError::parse(&path, what, e))
    }

    fn write_json<T: Serialize>(&self, name: &str, value: &T, what: &'static str) -> Result<()> {
        let mut text = serde_json::to_string_pretty(value)
            .map_err(|e| RunDirError::parse(self.file(name), what, e))?;
        text.push('\n');
        self.write(name, text.as_bytes())
    }
}

fn read_string(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| RunDirError::io("read", path, e))
}

/// All run directories under `root` (a directory holding `config.toml`), in path order.
/// `root` itself counts if it is one. Run directories are not searched further; hidden
/// directories are skipped.
pub fn find_run_dirs(root: &Path) -> Result<Vec<RunDir>> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let run = RunDir::new(&dir);
        if run.has_config() {
            found.push(run);
            continue;
        }
        let entries = std::fs::read_dir(&dir).map_err(|e| RunDirError::io("list", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| RunDirError::io("list", &dir, e))?;
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if !hidden && entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(entry.path());
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The best run under `root`: the run named by `root/best.json` (written by the analysis:
/// best configuration by mean validation accuracy) if present, else the finished run with
/// readable best weights and the highest best validation accuracy (ties: lower validation
/// loss, then path order).
pub fn best_run_under(root: &Path) -> Result<(RunDir, BestRecord)> {
    let grid_best = root.join(RunDir::BEST);
    if grid_best.is_file() && !RunDir::new(root).has_config() {
        let text = read_string(&grid_best)?;
        let best: GridBest = serde_json::from_str(&text)
            .map_err(|e| RunDirError::parse(&grid_best, "grid best record", e))?;
        let run = RunDir::new(root.join(&best.run_dir));
        let record = run.read_best()?;
        return Ok((run, record));
    }
    let mut best: Option<(RunDir, BestRecord)> = None;
    for run in find_run_dirs(root)? {
        if !run.is_finished() || run.check_weights(RunDir::BEST_WEIGHTS).is_err() {
            continue;
        }
        let Ok(record) = run.read_best() else {
            continue;
        };
        let better = match &best {
            None => true,
            Some((_, b)) => {
                record.val_acc > b.val_acc
                    || (record.val_acc == b.val_acc && record.val_loss < b.val_loss)
            }
        };
        if better {
            best = Some((run, record));
        }
    }
    best.ok_or_else(|| RunDirError::NoRuns(root.to_path_buf()))
}
