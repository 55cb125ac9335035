//! The trainer's resumable state and the `last.*` files that hold it.
//!
//! `last.json`'s opaque `trainer` field holds a [`TrainerState`]: the schedule and its
//! state, the best epoch so far, the running sums of a partial epoch, and the SHA-256 of
//! `last.safetensors`. `last.optimizer.safetensors` holds the momentum buffers and, in its
//! metadata (`hkd_run_state`), the same [`RunState`] as `last.json`.
//!
//! The three files are written in the order weights → optimizer → `last.json`, each
//! atomically. On resume the trainer checks that they belong together (the hash of the
//! weights and the state copies): a crash between two of the writes is detected and the
//! newest consistent state is used; if there is none the run starts again from epoch 1
//! (training is deterministic, so only time is lost).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use hkd_arch::Network;
use hkd_rundir::{BestRecord, LossPartValues, RunDir, RunState};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::optim::Sgd;
use crate::schedule::Scheduler;

/// Version of [`TrainerState`]'s layout.
pub const TRAINER_STATE_FORMAT: u32 = 1;

/// Metadata key of `last.optimizer.safetensors` holding the [`RunState`] as JSON.
pub const OPTIMIZER_STATE_KEY: &str = "hkd_run_state";

/// Settings of a run that `config.toml` has no field for; a resumed run must have the
/// same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraSettings {
    /// Validation batch size.
    pub eval_batch_size: usize,
    /// Limit of training batches per epoch, if any.
    pub max_batches: Option<usize>,
    /// Seed of the random streams (from seed and iter).
    pub stream_seed: u64,
}

/// Running sums of the training part of an epoch.
///
/// A checkpoint written before hkd 0.3 has fixed parts (`hard`, `kd`, `teacher`,
/// `human`); it reads as those named parts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "EpochSumsFile")]
pub struct EpochSums {
    /// Images trained on.
    pub images: u64,
    /// Σ batch size × each loss part, by the objective's part names.
    pub parts: LossPartValues,
    /// Σ batch size × total loss.
    pub total: f64,
    /// Correct top-1 predictions on the augmented batches.
    pub correct: u64,
    /// Wall time of the training batches.
    pub train_seconds: f64,
}

impl EpochSums {
    /// Adds `weight × value` to the sum of part `name`.
    pub fn add_part(&mut self, name: &str, weight: f64, value: f64) {
        match self.parts.0.iter_mut().find(|(n, _)| n == name) {
            Some((_, sum)) => *sum += weight * value,
            None => self.parts.0.push((name.to_owned(), weight * value)),
        }
    }
}

/// [`EpochSums`] as stored: today's named parts, or hkd 0.2's fixed ones.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EpochSumsFile {
    images: u64,
    #[serde(default)]
    parts: Option<LossPartValues>,
    #[serde(default)]
    hard: Option<f64>,
    #[serde(default)]
    kd: Option<f64>,
    #[serde(default)]
    teacher: Option<f64>,
    #[serde(default)]
    human: Option<f64>,
    total: f64,
    correct: u64,
    train_seconds: f64,
}

impl From<EpochSumsFile> for EpochSums {
    fn from(f: EpochSumsFile) -> Self {
        let parts = f.parts.unwrap_or_else(|| {
            LossPartValues(
                [
                    ("hard", f.hard),
                    ("kd", f.kd),
                    ("teacher", f.teacher),
                    ("human", f.human),
                ]
                .into_iter()
                .filter_map(|(n, v)| v.map(|v| (n.to_owned(), v)))
                .collect(),
            )
        });
        EpochSums {
            images: f.images,
            parts,
            total: f.total,
            correct: f.correct,
            train_seconds: f.train_seconds,
        }
    }
}

/// A partial epoch, left by a stop signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartialEpoch {
    /// Batches of the epoch already trained.
    pub batches: u32,
    /// Their sums.
    pub sums: EpochSums,
}

/// The trainer's part of `last.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainerState {
    /// [`TRAINER_STATE_FORMAT`].
    pub format: u32,
    /// Settings outside `config.toml`.
    pub settings: ExtraSettings,
    /// The learning-rate schedule and its state.
    pub scheduler: Scheduler,
    /// Best epoch so far (what `best.json` holds).
    pub best: Option<BestRecord>,
    /// The partial epoch a stop left, if any.
    pub partial: Option<PartialEpoch>,
    /// SHA-256 (hex) of the `last.safetensors` written with this state.
    pub weights_sha256: String,
}

/// What a resumed run continues from.
pub struct Checkpoint {
    /// `last.json` (or the copy in the optimizer file, where that is the newer consistent one).
    pub state: RunState,
    /// Its trainer part.
    pub trainer: TrainerState,
    /// Momentum buffers by parameter name.
    pub buffers: HashMap<String, Tensor>,
}

/// Writes `last.safetensors`, `last.optimizer.safetensors` and `last.json`, in that order.
pub fn write_checkpoint(
    run: &RunDir,
    net: &Network,
    sgd: &Sgd,
    mut state: RunState,
    mut trainer: TrainerState,
) -> Result<RunState> {
    let weights = run.file(RunDir::LAST_WEIGHTS);
    net.save_safetensors(&weights)
        .map_err(|e| TrainError::arch(format!("writing {}", weights.display()), e))?;
    trainer.weights_sha256 = sha256_file(&weights)?;
    state.trainer = serde_json::to_value(&trainer).map_err(|e| TrainError::Checkpoint {
        path: run.file(RunDir::LAST),
        reason: format!("cannot serialise the trainer state: {e}"),
    })?;
    let state_json = serde_json::to_string(&state).map_err(|e| TrainError::Checkpoint {
        path: run.file(RunDir::LAST),
        reason: format!("cannot serialise the run state: {e}"),
    })?;
    let buffers = sgd.buffers()?;
    let metadata = HashMap::from([(OPTIMIZER_STATE_KEY.to_string(), state_json)]);
    let bytes =
        safetensors::serialize(buffers.iter().map(|(n, t)| (n.as_str(), t)), Some(metadata))
            .map_err(|e| TrainError::Checkpoint {
                path: run.file(RunDir::LAST_OPTIMIZER),
                reason: format!("cannot serialise the momentum buffers: {e}"),
            })?;
    run.write(RunDir::LAST_OPTIMIZER, &bytes)?;
    run.write_state(&state)?;
    Ok(state)
}

/// Reads the newest consistent checkpoint of a run; `None` when there is none (no
/// `last.json` yet, or files that do not belong together — logged).
pub fn read_checkpoint(run: &RunDir) -> Result<Option<Checkpoint>> {
    let last = run.file(RunDir::LAST);
    if !last.is_file() {
        return Ok(None);
    }
    let weights = run.file(RunDir::LAST_WEIGHTS);
    let opt_path = run.file(RunDir::LAST_OPTIMIZER);
    // A damaged last.json is repaired from the copy of the state that the momentum file
    // holds, when that copy matches the weights; else the message says what to do.
    let state = match run.read_state() {
        Ok(state) => state,
        Err(e) => {
            return match state_from_optimizer_file(&opt_path, &weights) {
                Some(state) => {
                    tracing::warn!(
                        "{e}; continuing from the state saved with the momentum buffers in {}",
                        opt_path.display()
                    );
                    run.write_state(&state)?;
                    read_checkpoint(run)
                }
                None => Err(TrainError::Checkpoint {
                    path: last,
                    reason: format!(
                        "{e}; {} holds no copy of it that matches {}, so the run cannot continue from its checkpoint: pass --overwrite to train it again from epoch 1 (or move the run directory away to keep it)",
                        opt_path.display(),
                        weights.display()
                    ),
                }),
            };
        }
    };
    let trainer = parse_trainer(&state, &last)?;
    if !weights.is_file() || !opt_path.is_file() {
        tracing::warn!(
            "{} is there but {} or {} is missing; starting the run again from epoch 1",
            last.display(),
            weights.display(),
            opt_path.display()
        );
        return Ok(None);
    }
    let weights_hash = sha256_file(&weights)?;
    let bytes = std::fs::read(&opt_path).map_err(|e| TrainError::io("read", &opt_path, e))?;
    let bad = |reason: String| TrainError::Checkpoint {
        path: opt_path.clone(),
        reason,
    };
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| {
        bad(format!(
            "not a safetensors file: {e}; delete the run with --overwrite"
        ))
    })?;
    let opt_state: Option<RunState> = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(OPTIMIZER_STATE_KEY))
        .and_then(|s| serde_json::from_str(s).ok());
    let buffers = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)?;
    if trainer.weights_sha256 == weights_hash && opt_state.as_ref() == Some(&state) {
        return Ok(Some(Checkpoint {
            state,
            trainer,
            buffers,
        }));
    }
    if let Some(opt_state) = opt_state {
        let opt_trainer = parse_trainer(&opt_state, &opt_path)?;
        if opt_trainer.weights_sha256 == weights_hash {
            tracing::warn!(
                "{} is older than the weights and momentum files (a stop during a checkpoint write); continuing from their state",
                last.display()
            );
            run.write_state(&opt_state)?;
            return Ok(Some(Checkpoint {
                state: opt_state,
                trainer: opt_trainer,
                buffers,
            }));
        }
    }
    tracing::warn!(
        "the last.* files of {} do not belong together: the SHA-256 of {} matches neither {} nor the state saved with the momentum buffers (a stop during a checkpoint write, or a file changed or damaged since); starting the run again from epoch 1",
        run.path().display(),
        weights.display(),
        last.display()
    );
    Ok(None)
}

/// The run state saved in the momentum file's metadata, if it parses and names `weights`'
/// current SHA-256.
fn state_from_optimizer_file(opt_path: &Path, weights: &Path) -> Option<RunState> {
    let bytes = std::fs::read(opt_path).ok()?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).ok()?;
    let state: RunState =
        serde_json::from_str(meta.metadata().as_ref()?.get(OPTIMIZER_STATE_KEY)?).ok()?;
    let trainer = parse_trainer(&state, opt_path).ok()?;
    (trainer.weights_sha256 == sha256_file(weights).ok()?).then_some(state)
}

fn parse_trainer(state: &RunState, path: &Path) -> Result<TrainerState> {
    let trainer: TrainerState = serde_json::from_value(state.trainer.clone()).map_err(|e| TrainError::Checkpoint {
        path: path.to_path_buf(),
        reason: format!("its trainer state is not one this hkd-train writes ({e}); start the run again with --overwrite"),
    })?;
    if trainer.format != TRAINER_STATE_FORMAT {
        return Err(TrainError::Checkpoint {
            path: path.to_path_buf(),
            reason: format!(
                "trainer state format {} (this hkd-train reads {TRAINER_STATE_FORMAT}); start the run again with --overwrite",
                trainer.format
            ),
        });
    }
    Ok(trainer)
}

/// SHA-256 (hex) of a file's content ([`hkd_rundir::sha256_file`]).
pub fn sha256_file(path: &Path) -> Result<String> {
    hkd_rundir::sha256_file(path).map_err(|e| TrainError::io("read", path, e))
}
