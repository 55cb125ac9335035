//! One training run: resolve the settings, prepare the run directory, train, validate,
//! checkpoint, stop on request.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use candle_core::{D, DType, Device, Tensor};
use hkd_arch::{Network, Phase};
use hkd_datasets::{Dataset, DatasetDir, Loader, LoaderConfig};
use hkd_losses::{Objective, ObjectiveInputs, OutputValues};
use hkd_rundir::{
    BestRecord, DigestCache, EpochMetrics, Execution, LossPartValues, Provenance, RunConfig,
    RunDir, RunSpec, RunState, RunStatus, SchedulerKind, absolute, resolve_teacher,
};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;

use crate::checkpoint::{
    Checkpoint, EpochSums, ExtraSettings, PartialEpoch, TRAINER_STATE_FORMAT, TrainerState,
    read_checkpoint, write_checkpoint,
};
use crate::error::{Result, TrainError};
use crate::optim::Sgd;
use crate::runtime::StopFlag;
use crate::schedule::{ScheduleSettings, Scheduler};
use crate::teacher::{check_teacher_arch, load_teacher};

/// How a call of [`train`] ended (errors aside).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every epoch is done.
    Finished {
        /// The run directory.
        run_dir: PathBuf,
        /// The best epoch.
        best: BestRecord,
    },
    /// `--resume` found the run already finished; nothing was done.
    AlreadyFinished {
        /// The run directory.
        run_dir: PathBuf,
    },
    /// A stop was requested (signal); `last.*` hold the state to resume from.
    Stopped {
        /// The run directory.
        run_dir: PathBuf,
        /// Epochs fully done.
        epochs_completed: u32,
        /// Batches of the next epoch done.
        batches_into_epoch: u32,
    },
}

/// Facts about a run, given to [`Observer::run_started`].
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// The run directory.
    pub run_dir: PathBuf,
    /// The run's settings.
    pub config: RunConfig,
    /// `(epochs_completed, batches_into_epoch)` when resumed from a checkpoint.
    pub resumed_from: Option<(u32, u32)>,
    /// Training batches per epoch.
    pub batches_per_epoch: usize,
    /// Images of the training split.
    pub train_images: usize,
    /// Images of the validation split.
    pub val_images: usize,
    /// Trainable parameters of the student.
    pub parameters: u64,
}

/// Receives progress of a run (the binary draws a progress bar and prints the original's
/// metric line). Every method has an empty default.
pub trait Observer {
    /// The run is about to start its first (or resumed) epoch.
    fn run_started(&mut self, _info: &RunInfo) {}
    /// Epoch `epoch` (1-based) of `epochs` starts at batch `first_batch` (0-based) of `batches`.
    fn epoch_started(&mut self, _epoch: u32, _epochs: u32, _first_batch: usize, _batches: usize) {}
    /// Batch `batch` (1-based) of `batches` is trained; `loss` is its total loss.
    fn batch_done(&mut self, _epoch: u32, _batch: usize, _batches: usize, _loss: f64) {}
    /// The epoch is validated and recorded; `improved` when it is the new best.
    fn epoch_done(&mut self, _metrics: &EpochMetrics, _improved: bool) {}
}

/// An [`Observer`] that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoObserver;

impl Observer for NoObserver {}

/// Everything [`train`] resolved before touching the run directory: every check that can
/// fail before training (settings, architectures, device, teacher and its weights,
/// dataset) has passed when a `Plan` exists.
pub struct Plan {
    /// The run's settings, as `config.toml` will hold them.
    pub config: RunConfig,
    /// Where the run lives.
    pub run_dir: RunDir,
    /// Settings that `config.toml` has no field for.
    pub extra: ExtraSettings,
    /// The schedule.
    pub schedule: ScheduleSettings,
    execution: Execution,
    teacher: Option<Network>,
    device: Device,
    train_set: Arc<Dataset>,
    val_set: Arc<Dataset>,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("config", &self.config)
            .field("run_dir", &self.run_dir)
            .field("extra", &self.extra)
            .field("schedule", &self.schedule)
            .finish_non_exhaustive()
    }
}

/// Checks an architecture name against the registry.
fn check_arch(field: &'static str, name: &str) -> Result<()> {
    hkd_arch::ArchSpec::parse(name)
        .map(|_| ())
        .map_err(|e| TrainError::InvalidOption {
            field,
            found: name.to_string(),
            expected: format!("an architecture name ({e}); `hkd-train models` lists them"),
        })
}

/// Resolves a run: validates the specification, opens the device, resolves the teacher
/// and loads its weights, loads the dataset splits and hashes the dataset, and names the
/// run directory. Nothing is written; everything that can fail before training fails
/// here.
pub fn plan(spec: &RunSpec, execution: &Execution) -> Result<Plan> {
    spec.validate()?;
    check_arch("student", &spec.student)?;
    if let Some(arch) = &spec.teacher.teacher_arch {
        check_arch("teacher_arch", arch)?;
    }
    let (device, device_name) = hkd_arch::device(&execution.device)?;
    let teacher = resolve_teacher(&spec.teacher)?;
    check_teacher_arch(spec, &teacher)?;
    if let Some((run, record)) = &teacher.picked {
        tracing::info!(
            "teacher {}: {} (best epoch {}, val_acc {:.4})",
            spec.teacher.teacher,
            run.display(),
            record.epoch,
            record.val_acc
        );
    }
    if teacher.unfinished {
        tracing::warn!(
            "teacher run {} is not finished; using its best weights so far",
            spec.teacher.teacher
        );
    }
    let data = &spec.data;
    let data_err = |source| TrainError::Dataset {
        path: data.dir.clone(),
        source,
    };
    let dir = DatasetDir::open(&data.dir).map_err(data_err)?;
    let train_set = dir.load_split(&data.train_split).map_err(data_err)?;
    let val_set = dir.load_split(&data.val_split).map_err(data_err)?;
    let dataset_hash = dir.manifest_hash().map_err(data_err)?;
    if train_set.is_empty() {
        return Err(TrainError::invalid(
            "train_split",
            &data.train_split,
            "a split with at least one image",
        ));
    }
    if val_set.is_empty() {
        return Err(TrainError::invalid(
            "val_split",
            &data.val_split,
            "a split with at least one image",
        ));
    }
    let classes = train_set.num_classes();
    if val_set.num_classes() != classes {
        return Err(TrainError::invalid(
            "val_split",
            format!("{} with {} classes", data.val_split, val_set.num_classes()),
            format!(
                "the {classes} classes of the train split {}",
                data.train_split
            ),
        ));
    }
    // The objective checks its settings once more, with the mode, and says what it needs.
    let loss = spec.loss.build(teacher.spec.mode())?;
    if loss.needs().human && train_set.human().is_none() {
        return Err(TrainError::invalid(
            "teacher",
            format!(
                "{} (needs human label distributions) with split `{}` of {}, which has none",
                spec.teacher.teacher,
                data.train_split,
                data.dir.display()
            ),
            "a train split with human labels (CIFAR-10H), or --teacher baseline, or a teacher network with --gamma 0",
        ));
    }
    let teacher_net = load_teacher(&teacher, classes, &device)?;
    let mut split_files = Vec::new();
    for split in [&data.train_split, &data.val_split] {
        if split_files.iter().all(|(s, _, _)| s != split) {
            split_files.push((
                split.as_str(),
                dir.split_settings_hash(split).map_err(data_err)?,
                dir.split_files(split).map_err(data_err)?,
            ));
        }
    }
    let provenance = Provenance::of(
        &data.dir,
        &split_files,
        teacher.weights.as_deref(),
        &mut DigestCache::default(),
    );
    let mut recorded = spec.clone();
    recorded.data.dir = absolute(&data.dir);
    let config = RunConfig {
        hkd_version: hkd_rundir::HKD_VERSION.to_string(),
        run_name: spec.run_name(),
        classes,
        device: device_name,
        dataset_hash,
        teacher: teacher.spec.clone(),
        spec: recorded,
        provenance: Some(provenance),
    };
    let run_dir = RunDir::in_output(
        &execution.out,
        teacher.spec.slug(),
        &spec.student,
        &config.run_name,
    );
    let s = &spec.schedule;
    let schedule = match s.scheduler {
        SchedulerKind::Plateau => ScheduleSettings::Plateau {
            factor: s.plateau_factor,
            patience: s.plateau_patience,
        },
        SchedulerKind::Step => ScheduleSettings::Step {
            milestones: s.step_milestones.clone(),
            gamma: s.step_gamma,
        },
        SchedulerKind::Cosine => ScheduleSettings::Cosine {
            min_lr: s.cosine_min_lr,
        },
    };
    let extra = ExtraSettings {
        eval_batch_size: spec.training.eval_batch_size,
        max_batches: spec.training.max_batches,
        stream_seed: spec.stream_seed(),
    };
    Ok(Plan {
        config,
        run_dir,
        extra,
        schedule,
        execution: execution.clone(),
        teacher: teacher_net,
        device,
        train_set: Arc::new(train_set),
        val_set: Arc::new(val_set),
    })
}

enum Start {
    Fresh,
    Resume(Box<Checkpoint>),
}

/// Trains one run as `spec` says, where and how `execution` says; see
/// `docs/training.md`. `stop` is polled after every batch; `observer` sees the progress.
/// The run directory is locked for the whole call.
pub fn train(
    spec: &RunSpec,
    execution: &Execution,
    observer: &mut dyn Observer,
    stop: &StopFlag,
) -> Result<Outcome> {
    run(plan(spec, execution)?, observer, stop)
}

/// Trains a run that [`plan`] resolved: [`train`] after its checks, for callers that
/// report what fails before any work differently from what fails later.
pub fn run(plan: Plan, observer: &mut dyn Observer, stop: &StopFlag) -> Result<Outcome> {
    let run = plan.run_dir.clone();
    // A directory with a lock file is a run directory: lock first, so that a run another
    // process is clearing (--overwrite) is reported as in use, not as foreign. Otherwise
    // check first, so that no lock file is left in a directory that is not a run's.
    let _lock = if run.file(RunDir::LOCK).exists() {
        let lock = run.lock()?;
        refuse_foreign_directory(&run)?;
        lock
    } else {
        refuse_foreign_directory(&run)?;
        run.lock()?
    };
    let start = match prepare_run_dir(&plan)? {
        None => {
            tracing::info!("{}: already finished; nothing to do", run.path().display());
            return Ok(Outcome::AlreadyFinished {
                run_dir: run.path().to_path_buf(),
            });
        }
        Some(start) => start,
    };
    Session::new(plan, start)?.run(observer, stop)
}

/// Files a run directory may hold besides the run's own: the lock and temporary files of
/// interrupted atomic writes.
fn is_scratch(name: &str) -> bool {
    name == RunDir::LOCK || (name.starts_with(".hkd-") && name.ends_with(".tmp"))
}

/// Refuses to write into an existing directory that holds something other than a run.
fn refuse_foreign_directory(run: &RunDir) -> Result<()> {
    let path = run.path();
    if !path.exists() || run.has_config() {
        return Ok(());
    }
    let foreign = std::fs::read_dir(path)
        .map_err(|e| TrainError::io("list", path, e))?
        .filter_map(|e| e.ok())
        .any(|e| !is_scratch(&e.file_name().to_string_lossy()));
    if foreign {
        return Err(TrainError::NotARunDir {
            dir: path.to_path_buf(),
            reason: "hkd-train will not write into it; move it away or choose another --out".into(),
        });
    }
    Ok(())
}

/// Removes what interrupted writes left (`.hkd-*.tmp`) and checks that the directory is
/// writable, before any work is done. Called with the run's lock held.
fn tidy_and_probe(run: &RunDir) -> Result<()> {
    let path = run.path();
    for entry in std::fs::read_dir(path).map_err(|e| TrainError::io("list", path, e))? {
        let entry = entry.map_err(|e| TrainError::io("list", path, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != RunDir::LOCK && is_scratch(&name) {
            let f = entry.path();
            std::fs::remove_file(&f).map_err(|e| TrainError::io("remove the stale", &f, e))?;
            tracing::info!("removed {}, left by an interrupted write", f.display());
        }
    }
    tempfile::Builder::new()
        .prefix(".hkd-probe-")
        .suffix(".tmp")
        .tempfile_in(path)
        .map_err(|e| TrainError::io("write into", path, e))?;
    Ok(())
}

/// Decides how to start from what the run directory holds and the flags; `None` when the
/// run is finished and `--resume` was given. A stored specification that differs from
/// the given one is refused first, whatever the run's state.
fn prepare_run_dir(plan: &Plan) -> Result<Option<Start>> {
    let run = &plan.run_dir;
    let path = run.path();
    let execution = &plan.execution;
    tidy_and_probe(run)?;
    let status = run.status();
    if status == RunStatus::NotStarted {
        return fresh(plan).map(Some);
    }
    if execution.overwrite {
        tracing::info!("--overwrite: deleting the run in {}", path.display());
        clear_run_dir(run)?;
        return fresh(plan).map(Some);
    }
    let stored = run
        .read_config()
        .map_err(|source| TrainError::UnreadableConfig { source })?;
    let differences = config_differences(&stored, &plan.config);
    if !differences.is_empty() {
        return Err(TrainError::ConfigMismatch {
            dir: path.to_path_buf(),
            differences,
        });
    }
    if !execution.resume {
        return Err(TrainError::RunExists {
            dir: path.to_path_buf(),
            status: describe(&status),
        });
    }
    if status == RunStatus::Finished {
        return Ok(None);
    }
    if stored.device != plan.config.device {
        tracing::warn!(
            "resuming a run trained on {} on {}: the result will not be bit-identical to an uninterrupted run",
            stored.device,
            plan.config.device
        );
    }
    match read_checkpoint(run)? {
        Some(cp) => {
            if cp.trainer.settings != plan.extra || cp.trainer.scheduler.settings != plan.schedule {
                return Err(TrainError::ConfigMismatch {
                    dir: path.to_path_buf(),
                    differences: vec![format!(
                        "the checkpoint's trainer settings (eval batch size {}, batch limit {:?}, schedule {:?}) differ from the given ones (eval batch size {}, batch limit {:?}, schedule {:?})",
                        cp.trainer.settings.eval_batch_size,
                        cp.trainer.settings.max_batches,
                        cp.trainer.scheduler.settings,
                        plan.extra.eval_batch_size,
                        plan.extra.max_batches,
                        plan.schedule
                    )],
                });
            }
            Ok(Some(Start::Resume(Box::new(cp))))
        }
        None => {
            // Started but no usable checkpoint: begin again, keeping nothing stale.
            for name in [RunDir::METRICS, RunDir::BEST, RunDir::BEST_WEIGHTS] {
                let f = run.file(name);
                if f.exists() {
                    std::fs::remove_file(&f).map_err(|e| TrainError::io("delete", &f, e))?;
                }
            }
            fresh(plan).map(Some)
        }
    }
}

/// Deletes everything in the run directory but its lock (which this process holds: a
/// new lock file would let a second process in).
fn clear_run_dir(run: &RunDir) -> Result<()> {
    let path = run.path();
    for entry in std::fs::read_dir(path).map_err(|e| TrainError::io("list", path, e))? {
        let entry = entry.map_err(|e| TrainError::io("list", path, e))?;
        if entry.file_name() == RunDir::LOCK {
            continue;
        }
        let p = entry.path();
        let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        removed.map_err(|e| TrainError::io("delete", &p, e))?;
    }
    Ok(())
}

fn fresh(plan: &Plan) -> Result<Start> {
    plan.run_dir.write_config(&plan.config)?;
    Ok(Start::Fresh)
}

fn describe(status: &RunStatus) -> String {
    match status {
        RunStatus::NotStarted => "not started".into(),
        RunStatus::Finished => "finished".into(),
        RunStatus::FinishedForOtherInputs { changes } => {
            format!("finished from other inputs: {}", changes.join("; "))
        }
        RunStatus::InProgress {
            epochs_completed,
            epochs,
        } => {
            format!("in progress, {epochs_completed} of {epochs} epochs done")
        }
    }
}

/// `key: stored -> given` for every difference that makes the stored run another run:
/// the specification's identity, the resolved teacher, the dataset's content and its
/// number of classes (not the hkd version, the device or where the dataset lies).
fn config_differences(stored: &RunConfig, given: &RunConfig) -> Vec<String> {
    let mut out = stored.spec.identity_differences(&given.spec);
    if stored.teacher.slug() != given.teacher.slug() {
        out.push(format!(
            "teacher: {} -> {}",
            stored.teacher.slug(),
            given.teacher.slug()
        ));
    }
    let hash_changed = |why: &str| {
        format!(
            "dataset_hash: {} -> {} ({why})",
            stored.dataset_hash, given.dataset_hash
        )
    };
    match (&stored.provenance, &given.provenance) {
        (Some(was), Some(now)) => {
            // the splits the run reads decide, not the rest of the dataset directory
            let data = was.data_changes(now);
            if !data.is_empty() && stored.dataset_hash != given.dataset_hash {
                out.push(hash_changed(&format!(
                    "the dataset changed: {}",
                    data.join("; ")
                )));
            } else {
                // the same directory hash: the record itself differs (edited or damaged)
                out.extend(data);
            }
            out.extend(was.teacher_changes(now));
        }
        // a run of an older hkd records the whole dataset directory's hash only
        _ if stored.dataset_hash != given.dataset_hash => {
            out.push(hash_changed("another dataset, or the same one changed"))
        }
        _ => {}
    }
    if stored.classes != given.classes {
        out.push(format!("classes: {} -> {}", stored.classes, given.classes));
    }
    out
}

/// The state of a run being trained.
struct Session {
    plan: Plan,
    student: Network,
    teacher: Option<Network>,
    loss: Box<dyn Objective>,
    sgd: Sgd,
    scheduler: Scheduler,
    best: Option<BestRecord>,
    epochs_completed: u32,
    partial: Option<PartialEpoch>,
    resumed_from: Option<(u32, u32)>,
    train_loader: Loader,
    val_loader: Loader,
}

impl Session {
    fn new(mut plan: Plan, start: Start) -> Result<Self> {
        let teacher = plan.teacher.take();
        let cfg = &plan.config;
        let seed = plan.extra.stream_seed;
        let student = Network::new(
            &cfg.spec.student,
            cfg.classes,
            &plan.device,
            DType::F32,
            seed,
        )
        .map_err(|e| TrainError::arch(format!("building student {}", cfg.spec.student), e))?;
        let loss = cfg.spec.loss.build(cfg.mode())?;
        let o = &cfg.spec.optimizer;
        let mut sgd = Sgd::new(
            student.trainable_parameters(),
            o.lr,
            o.momentum,
            o.weight_decay,
        );
        let mut scheduler = Scheduler::new(plan.schedule.clone(), o.lr, cfg.spec.training.epochs);
        let mut best = None;
        let mut epochs_completed = 0;
        let mut partial = None;
        let mut resumed_from = None;
        if let Start::Resume(cp) = start {
            let Checkpoint {
                state,
                trainer,
                buffers,
            } = *cp;
            let weights = plan.run_dir.file(RunDir::LAST_WEIGHTS);
            student
                .load_weights(&weights)
                .map_err(|e| TrainError::Checkpoint {
                    path: weights.clone(),
                    reason: format!("cannot load it into {}: {e}", cfg.spec.student),
                })?;
            sgd.load_buffers(buffers, &plan.run_dir.file(RunDir::LAST_OPTIMIZER))?;
            scheduler = trainer.scheduler;
            best = trainer.best;
            epochs_completed = state.epochs_completed;
            partial = trainer.partial;
            let batches = partial.as_ref().map(|p| p.batches).unwrap_or(0);
            if batches != state.batches_into_epoch {
                return Err(TrainError::Checkpoint {
                    path: plan.run_dir.file(RunDir::LAST),
                    reason: format!(
                        "batches_into_epoch is {} but the trainer state holds {batches} batches; start again with --overwrite",
                        state.batches_into_epoch
                    ),
                });
            }
            resumed_from = Some((state.epochs_completed, state.batches_into_epoch));
        }
        let mut train_cfg = LoaderConfig::train(cfg.spec.training.batch_size, seed);
        train_cfg.prefetch = 2;
        let train_loader = Loader::new(plan.train_set.clone(), train_cfg).map_err(|source| {
            TrainError::Dataset {
                path: cfg.spec.data.dir.clone(),
                source,
            }
        })?;
        let val_loader = Loader::new(
            plan.val_set.clone(),
            LoaderConfig::eval(plan.extra.eval_batch_size),
        )
        .map_err(|source| TrainError::Dataset {
            path: cfg.spec.data.dir.clone(),
            source,
        })?;
        Ok(Session {
            plan,
            student,
            teacher,
            loss,
            sgd,
            scheduler,
            best,
            epochs_completed,
            partial,
            resumed_from,
            train_loader,
            val_loader,
        })
    }

    fn batches_per_epoch(&self) -> usize {
        let n = self.train_loader.num_batches();
        self.plan.extra.max_batches.map_or(n, |m| m.min(n))
    }

    fn trainer_state(&self, partial: Option<PartialEpoch>) -> TrainerState {
        TrainerState {
            format: TRAINER_STATE_FORMAT,
            settings: self.plan.extra.clone(),
            scheduler: self.scheduler.clone(),
            best: self.best.clone(),
            partial,
            weights_sha256: String::new(),
        }
    }

    fn checkpoint(
        &self,
        batches_into_epoch: u32,
        partial: Option<PartialEpoch>,
        finished: bool,
    ) -> Result<()> {
        let state = RunState {
            epochs_completed: self.epochs_completed,
            batches_into_epoch,
            epochs: self.plan.config.spec.training.epochs,
            finished,
            trainer: serde_json::Value::Null,
        };
        write_checkpoint(
            &self.plan.run_dir,
            &self.student,
            &self.sgd,
            state,
            self.trainer_state(partial),
        )?;
        Ok(())
    }

    fn run(mut self, observer: &mut dyn Observer, stop: &StopFlag) -> Result<Outcome> {
        let cfg = self.plan.config.clone();
        let run_dir = self.plan.run_dir.path().to_path_buf();
        let epochs = cfg.spec.training.epochs;
        let batches = self.batches_per_epoch();
        let info = RunInfo {
            run_dir: run_dir.clone(),
            config: cfg.clone(),
            resumed_from: self.resumed_from,
            batches_per_epoch: batches,
            train_images: self.plan.train_set.len(),
            val_images: self.plan.val_set.len(),
            parameters: self.student.num_parameters(),
        };
        tracing::info!(
            "run {}: {} ({} parameters, objective {}, {} mode, teacher {}) on {}; {} training images in {} batches of {}, {} validation images; {} epochs",
            run_dir.display(),
            cfg.spec.student,
            info.parameters,
            cfg.spec.loss.name(),
            cfg.mode(),
            cfg.teacher.slug(),
            cfg.device,
            info.train_images,
            batches,
            cfg.spec.training.batch_size,
            info.val_images,
            epochs
        );
        if let Some((e, b)) = self.resumed_from {
            tracing::info!("resuming after epoch {e}, batch {b} of epoch {}", e + 1);
        }
        observer.run_started(&info);
        // A stop may come before anything was trained; `last.*` must exist when we exit 75.
        let mut checkpoint_is_current = self.resumed_from.is_some();
        while self.epochs_completed < epochs {
            let epoch_index = self.epochs_completed;
            let epoch = epoch_index + 1;
            if stop.is_requested() {
                if !checkpoint_is_current {
                    self.checkpoint(0, None, false)?;
                }
                return Ok(self.stopped(0));
            }
            let (first_batch, mut sums) = match self.partial.take() {
                Some(p) => (p.batches as usize, p.sums),
                None => (0, EpochSums::default()),
            };
            let lr = self.scheduler.lr();
            self.sgd.lr = lr;
            observer.epoch_started(epoch, epochs, first_batch, batches);
            let started = Instant::now();
            let mut iter = self.train_loader.epoch_from(
                u64::from(epoch_index),
                first_batch,
                &self.plan.device,
            );
            for b in first_batch..batches {
                let batch = match iter.next() {
                    Some(batch) => batch.map_err(|source| TrainError::Dataset {
                        path: cfg.spec.data.dir.clone(),
                        source,
                    })?,
                    None => break,
                };
                let n = batch.len();
                let mut rng = shake_rng(self.plan.extra.stream_seed, epoch_index, b);
                let (student, teacher, loss, sgd) =
                    (&self.student, &self.teacher, &self.loss, &mut self.sgd);
                // The whole step on the compute pool: one hand-off per batch, not per op.
                // Inner `Err`: the loss was not finite (its value); nothing was updated.
                type Step = std::result::Result<(OutputValues, u64), f64>;
                let step = hkd_arch::on_compute_pool(|| -> Result<Step> {
                    let logits = student
                        .forward(&batch.images, Phase::Train { rng: &mut rng })
                        .map_err(|e| {
                            TrainError::arch(
                                format!("student forward, epoch {epoch} batch {}", b + 1),
                                e,
                            )
                        })?;
                    // At γ = 1 the teacher term has weight 0: no teacher forward pass.
                    let needs = loss.needs();
                    let teacher_logits = match teacher {
                        Some(t) if needs.teacher_logits => {
                            Some(t.forward_eval(&batch.images).map_err(|e| {
                                TrainError::arch(
                                    format!("teacher forward, epoch {epoch} batch {}", b + 1),
                                    e,
                                )
                            })?)
                        }
                        _ => None,
                    };
                    // At γ = 0 a student's human term has weight 0: no human labels needed.
                    let human = batch.human.as_ref().filter(|_| needs.human);
                    let parts = loss.compute(&ObjectiveInputs {
                        student_logits: &logits,
                        hard_labels: &batch.labels,
                        teacher_logits: teacher_logits.as_ref(),
                        human,
                        epoch,
                    })?;
                    let values = parts.values()?;
                    if !values.total.is_finite() {
                        return Ok(Err(values.total));
                    }
                    let grads = parts.total.backward()?;
                    sgd.step(&grads)?;
                    drop(grads);
                    Ok(Ok((values, count_correct(&logits, &batch.labels)?)))
                })?;
                let (values, correct) = match step {
                    Ok(done) => done,
                    Err(value) => {
                        return Err(TrainError::NonFiniteLoss {
                            epoch,
                            batch: b + 1,
                            batches,
                            value,
                            dir: run_dir.clone(),
                            last_good: self.last_good(),
                        });
                    }
                };
                let w = n as f64;
                sums.images += n as u64;
                for (name, value) in &values.parts {
                    sums.add_part(name, w, *value);
                }
                sums.total += w * values.total;
                sums.correct += correct;
                tracing::debug!(
                    "epoch {epoch} batch {}/{batches} loss {:.6}",
                    b + 1,
                    values.total
                );
                observer.batch_done(epoch, b + 1, batches, values.total);
                if stop.is_requested() && b + 1 < batches {
                    drop(iter);
                    sums.train_seconds += started.elapsed().as_secs_f64();
                    let done = (b + 1) as u32;
                    self.checkpoint(
                        done,
                        Some(PartialEpoch {
                            batches: done,
                            sums,
                        }),
                        false,
                    )?;
                    tracing::info!(
                        "stop requested: checkpoint written after batch {done} of epoch {epoch}; resume with --resume"
                    );
                    return Ok(self.stopped(done));
                }
            }
            drop(iter);
            sums.train_seconds += started.elapsed().as_secs_f64();
            let val_started = Instant::now();
            let (val_acc, val_loss) = evaluate(&self.student, &self.val_loader, &self.plan.device)?;
            let val_seconds = val_started.elapsed().as_secs_f64();
            let images = sums.images.max(1) as f64;
            let train_parts = LossPartValues(
                self.loss
                    .part_names()
                    .into_iter()
                    .map(|name| {
                        (
                            name.to_owned(),
                            sums.parts.get(name).unwrap_or(0.0) / images,
                        )
                    })
                    .collect(),
            );
            let metrics = EpochMetrics {
                epoch,
                lr,
                train_parts,
                train_total: sums.total / images,
                train_acc: sums.correct as f64 / images,
                val_acc,
                val_loss,
                seconds: sums.train_seconds + val_seconds,
                images_per_s: if sums.train_seconds > 0.0 {
                    sums.images as f64 / sums.train_seconds
                } else {
                    0.0
                },
            };
            self.scheduler.step(val_acc);
            let improved = self.best.as_ref().is_none_or(|b| val_acc > b.val_acc);
            if improved {
                let record = BestRecord {
                    epoch,
                    val_acc,
                    val_loss,
                };
                let path = self.plan.run_dir.file(RunDir::BEST_WEIGHTS);
                self.student
                    .save_safetensors(&path)
                    .map_err(|e| TrainError::arch(format!("writing {}", path.display()), e))?;
                self.plan.run_dir.write_best(&record)?;
                self.best = Some(record);
            }
            self.plan.run_dir.record_epoch(&metrics)?;
            observer.epoch_done(&metrics, improved);
            tracing::info!("{}", epoch_line(&metrics, epochs, improved));
            self.epochs_completed = epoch;
            self.checkpoint(0, None, epoch == epochs)?;
            checkpoint_is_current = true;
        }
        let best = self.best.clone().ok_or_else(|| TrainError::Checkpoint {
            path: self.plan.run_dir.file(RunDir::BEST),
            reason: "no best epoch recorded after training".into(),
        })?;
        tracing::info!(
            "finished {}: best epoch {} with validation accuracy {:.2} %",
            run_dir.display(),
            best.epoch,
            100.0 * best.val_acc
        );
        Ok(Outcome::Finished { run_dir, best })
    }

    fn stopped(&self, batches_into_epoch: u32) -> Outcome {
        Outcome::Stopped {
            run_dir: self.plan.run_dir.path().to_path_buf(),
            epochs_completed: self.epochs_completed,
            batches_into_epoch,
        }
    }

    fn last_good(&self) -> String {
        match self.plan.run_dir.read_state() {
            Ok(s) if s.batches_into_epoch > 0 => format!(
                "last.* after epoch {} and {} batches of epoch {}",
                s.epochs_completed,
                s.batches_into_epoch,
                s.epochs_completed + 1
            ),
            Ok(s) => format!("last.* after epoch {}", s.epochs_completed),
            Err(_) => "no checkpoint yet".into(),
        }
    }
}

/// The one-line summary of an epoch that goes to the log.
pub fn epoch_line(m: &EpochMetrics, epochs: u32, improved: bool) -> String {
    let parts = m
        .train_parts
        .0
        .iter()
        .map(|(name, value)| format!("{name} {value:.4}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "epoch {}/{} lr {:.4e} | train loss {:.4} ({parts}) acc {:.2} % | val acc {:.2} % loss {:.4} | {:.1} s, {:.0} img/s{}",
        m.epoch,
        epochs,
        m.lr,
        m.train_total,
        100.0 * m.train_acc,
        100.0 * m.val_acc,
        m.val_loss,
        m.seconds,
        m.images_per_s,
        if improved { " | best" } else { "" }
    )
}

/// The Shake-Shake coefficients' random stream of one batch: a pure function of (seed,
/// epoch, batch), so a resumed run draws the same coefficients.
fn shake_rng(seed: u64, epoch: u32, batch: usize) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[0..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(b"hkdshake");
    key[16..24].copy_from_slice(&u64::from(epoch).to_le_bytes());
    key[24..32].copy_from_slice(&(batch as u64).to_le_bytes());
    ChaCha8Rng::from_seed(key)
}

fn count_correct(logits: &Tensor, labels: &Tensor) -> Result<u64> {
    let predicted = logits.argmax(D::Minus1)?;
    let correct = predicted
        .eq(&labels.to_dtype(predicted.dtype())?)?
        .to_dtype(DType::F32)?
        .sum_all()?
        .to_scalar::<f32>()?;
    Ok(correct as u64)
}

/// Accuracy and mean per-image cross-entropy of `net` in evaluation mode over every
/// batch of `loader`.
pub fn evaluate(net: &Network, loader: &Loader, device: &Device) -> Result<(f64, f64)> {
    let mut correct = 0u64;
    let mut images = 0u64;
    let mut ce_sum = 0f64;
    for batch in loader.epoch(0, device) {
        let batch = batch.map_err(|source| TrainError::Dataset {
            path: PathBuf::from("<validation split>"),
            source,
        })?;
        let logits = net
            .forward_eval(&batch.images)
            .map_err(|e| TrainError::arch("validation forward", e))?;
        let log_probs = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let picked = log_probs.gather(&batch.labels.unsqueeze(1)?, 1)?;
        ce_sum -= picked.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;
        correct += count_correct(&logits, &batch.labels)?;
        images += batch.len() as u64;
    }
    let n = images.max(1) as f64;
    Ok((correct as f64 / n, ce_sum / n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shake_streams_depend_on_every_part_of_the_key() {
        use rand::RngCore;
        let first = |s, e, b| shake_rng(s, e, b).next_u64();
        assert_eq!(first(1, 2, 3), first(1, 2, 3));
        assert_ne!(first(1, 2, 3), first(2, 2, 3));
        assert_ne!(first(1, 2, 3), first(1, 3, 3));
        assert_ne!(first(1, 2, 3), first(1, 2, 4));
    }
}
