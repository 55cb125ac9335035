//! Run directories with known numbers, written through hkd_rundir (not by training).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use hkd_rundir::*;

/// Evaluation numbers of one set: (accuracy, ce_mean, ce_sum_batch_means, human CE).
pub type SetNumbers = (f64, f64, f64, Option<f64>);

/// Calibration detail of one set (what `hkd-eval` records since metrics version 2).
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    pub mean_confidence: f64,
    /// Occupied reliability bins: (bin index 0..15, count, mean confidence, accuracy).
    pub bins: Vec<(usize, usize, f64, f64)>,
    /// Temperature-scaled (CE, ECE, mean confidence, human CE), with `--calibrate-on`.
    pub scaled: Option<(f64, f64, f64, Option<f64>)>,
}

/// The 15 reliability bins with the given occupied ones.
pub fn bins(occupied: &[(usize, usize, f64, f64)]) -> Vec<ReliabilityBin> {
    (0..15)
        .map(|b| {
            let hit = occupied.iter().find(|o| o.0 == b);
            ReliabilityBin {
                lower: b as f64 / 15.0,
                upper: (b + 1) as f64 / 15.0,
                count: hit.map_or(0, |o| o.1),
                mean_confidence: hit.map(|o| o.2),
                accuracy: hit.map(|o| o.3),
            }
        })
        .collect()
}

/// What a synthetic run records: its specification (defaults of the tests: KL with
/// batchmean, no human smoothing, 4 epochs, batch 128, lr 0.1, weight decay 5e-4, seed
/// 100 + iter), its resolved teacher and its results.
#[derive(Debug, Clone)]
pub struct Spec {
    pub teacher: TeacherSpec,
    /// The run's specification (`config.toml`'s `[spec]`).
    pub run: RunSpec,
    /// Best validation accuracy / loss (best.json).
    pub best_acc: f64,
    pub best_loss: f64,
    /// Validation accuracy of the epochs after the best one (the last epoch's);
    /// `None`: `best_acc − 0.01`.
    pub last_acc: Option<f64>,
    /// Per evaluation set.
    pub eval: Option<BTreeMap<String, SetNumbers>>,
    /// Calibration detail per evaluation set (sets of `eval` without it have none, as
    /// reports written before metrics version 2).
    pub calibration: BTreeMap<String, Calibration>,
    /// The fitted temperature and its set.
    pub temperature: Option<(String, f64)>,
}

impl Spec {
    pub fn new(
        teacher: TeacherSpec,
        lambda: f64,
        iter: u32,
        best_acc: f64,
        best_loss: f64,
    ) -> Self {
        let run = RunSpec {
            student: "resnet8".into(),
            seed: 100 + iter as u64,
            iter,
            data: DataSpec {
                dir: "/data/hkd".into(),
                train_split: "train".into(),
                val_split: "val".into(),
            },
            teacher: TeacherChoice {
                teacher: match &teacher {
                    TeacherSpec::Run { dir, .. } => dir.display().to_string(),
                    TeacherSpec::Checkpoint { path, .. } => path.display().to_string(),
                    other => other.slug().to_string(),
                },
                teacher_arch: None,
            },
            loss: hkd_rundir::ObjectiveConfig::Hkd(DistillationConfig {
                lambda,
                gamma: 0.0,
                temperature_teacher: 1.0,
                temperature_human: 1.0,
                distil_fn: DistilFn::Kl,
                kl_reduction: KlReduction::BatchMean,
                human_smoothing: 0.0,
                ..DistillationConfig::default()
            }),
            training: TrainingSpec {
                epochs: 4,
                batch_size: 128,
                ..TrainingSpec::default()
            },
            optimizer: OptimizerSpec {
                lr: 0.1,
                momentum: 0.9,
                weight_decay: 5e-4,
            },
            schedule: ScheduleSpec {
                scheduler: SchedulerKind::Plateau,
                ..ScheduleSpec::default()
            },
        };
        Self {
            teacher,
            run,
            best_acc,
            best_loss,
            last_acc: None,
            eval: None,
            calibration: BTreeMap::new(),
            temperature: None,
        }
    }

    /// The accuracy of the epochs after the best one, so of the last epoch (below `best_acc`).
    pub fn last_acc(mut self, acc: f64) -> Self {
        assert!(
            acc < self.best_acc,
            "the best epoch has the highest accuracy"
        );
        self.last_acc = Some(acc);
        self
    }

    pub fn distil(mut self, d: DistilFn) -> Self {
        self.run.loss.as_hkd_mut().unwrap().distil_fn = d;
        self
    }

    pub fn lr(mut self, lr: f64) -> Self {
        self.run.optimizer.lr = lr;
        self
    }

    pub fn student(mut self, s: &str) -> Self {
        self.run.student = s.into();
        self
    }

    /// Any other change of the specification.
    pub fn with(mut self, change: impl FnOnce(&mut RunSpec)) -> Self {
        change(&mut self.run);
        self
    }

    pub fn eval_set(
        mut self,
        set: &str,
        acc: f64,
        ce: f64,
        ce_sum: f64,
        human: Option<f64>,
    ) -> Self {
        self.eval
            .get_or_insert_with(BTreeMap::new)
            .insert(set.into(), (acc, ce, ce_sum, human));
        self
    }

    /// Calibration detail of set `set` (which `eval_set` must also give).
    pub fn calibrated(mut self, set: &str, c: Calibration) -> Self {
        self.calibration.insert(set.into(), c);
        self
    }

    /// A temperature fitted on `set`.
    pub fn temperature(mut self, set: &str, t: f64) -> Self {
        self.temperature = Some((set.into(), t));
        self
    }

    pub fn config(&self) -> RunConfig {
        RunConfig::new(
            self.run.clone(),
            self.teacher.clone(),
            10,
            "feedbeef",
            "cpu",
        )
    }

    /// The run's directory under `root` (the trainer's layout).
    pub fn run_dir_in(&self, root: &Path) -> RunDir {
        self.config().run_dir_in(root)
    }

    /// The run's directory relative to the grid root, as the tables write it.
    pub fn rel_dir(&self) -> String {
        let c = self.config();
        format!("{}/{}/{}", c.teacher.slug(), c.spec.student, c.run_name)
    }

    /// The epochs of `metrics.jsonl`: accuracy rising to `best_acc` at the second-to-last
    /// epoch (the best epoch), then slightly lower (`last_acc`, else `best_acc − 0.01`).
    pub fn metrics(&self) -> Vec<EpochMetrics> {
        let epochs = self.run.training.epochs;
        let lr = self.run.optimizer.lr;
        let best_epoch = self.best_epoch();
        (1..=epochs)
            .map(|e| {
                let val_acc = if e == best_epoch {
                    self.best_acc
                } else if e < best_epoch {
                    self.best_acc * e as f64 / best_epoch as f64
                } else {
                    self.last_acc.unwrap_or(self.best_acc - 0.01)
                };
                let val_loss = if e == best_epoch {
                    self.best_loss
                } else {
                    self.best_loss + 0.1 * (e as f64 - best_epoch as f64).abs()
                };
                // hkd's parts (kd and human only with a soft term), or another
                // objective's own parts
                let soft: &[&str] = match self.run.loss.name() {
                    "hkd" if self.run.loss.as_hkd().unwrap().lambda > 0.0 => &["kd", "human"],
                    "hkd" => &[],
                    "kd" => &["kl"],
                    "dkd" => &["tckd", "nckd"],
                    "dist" => &["inter", "intra"],
                    other => panic!("no test parts for objective {other}"),
                };
                EpochMetrics {
                    epoch: e,
                    lr: lr * 0.9f64.powi(e as i32 - 1),
                    train_parts: hkd_rundir::LossPartValues(
                        [("hard".to_string(), 2.0 / e as f64)]
                            .into_iter()
                            .chain(soft.iter().map(|n| (n.to_string(), 1.0 / e as f64)))
                            .collect(),
                    ),
                    train_total: 1.5 / e as f64,
                    train_acc: 0.2 * e as f64 / epochs as f64 + 0.5,
                    val_acc,
                    val_loss,
                    seconds: 2.0,
                    images_per_s: 500.0,
                }
            })
            .collect()
    }

    pub fn best_epoch(&self) -> u32 {
        self.run.training.epochs.saturating_sub(1).max(1)
    }

    pub fn report(&self) -> Option<EvalReport> {
        let sets = self.eval.as_ref()?;
        Some(EvalReport {
            hkd_version: HKD_VERSION.to_string(),
            settings_hash: "h".into(),
            weights: "best.safetensors".into(),
            temperature: self.temperature.as_ref().map(|(set, t)| TemperatureFit {
                set: set.clone(),
                temperature: *t,
                nll_before: 1.0,
                nll_after: 0.75,
                at_bound: false,
            }),
            sets: sets
                .iter()
                .map(|(name, &(acc, ce, ce_sum, human))| {
                    let cal = self.calibration.get(name);
                    (
                        name.clone(),
                        SetMetrics {
                            mean_confidence: cal.map(|c| c.mean_confidence),
                            reliability: cal.map(|c| bins(&c.bins)).unwrap_or_default(),
                            temperature_scaled: cal.and_then(|c| c.scaled).map(
                                |(ce, ece, conf, human)| ScaledMetrics {
                                    ce_mean: ce,
                                    ece,
                                    brier: 0.125,
                                    mean_confidence: conf,
                                    reliability: bins(&[(14, 1000, conf, acc)]),
                                    human: human.map(|h| ScaledHuman { ce: h, kl: h - 0.5 }),
                                },
                            ),
                            source: format!("/data/{name}:test"),
                            images: 1000,
                            accuracy: acc,
                            ce_mean: ce,
                            ce_sum_batch_means: ce_sum,
                            ce_batch_size: 128,
                            ece: 0.125,
                            brier: 0.25,
                            human: human.map(|h| HumanAgreement {
                                ce: h,
                                kl: h - 0.5,
                                majority_agreement: 0.75,
                            }),
                            attacks: vec![
                                AttackMetrics {
                                    attack: "fgsm".into(),
                                    eps: 2.0 / 255.0,
                                    steps: 1,
                                    samples: 100,
                                    accuracy: acc / 2.0,
                                    ce_mean: ce * 2.0,
                                },
                                AttackMetrics {
                                    attack: "pgd".into(),
                                    eps: 8.0 / 255.0,
                                    steps: 10,
                                    samples: 100,
                                    accuracy: acc / 4.0,
                                    ce_mean: ce * 4.0,
                                },
                            ],
                        },
                    )
                })
                .collect(),
        })
    }
}

/// A small valid safetensors file (one f32 tensor `w` of two values): the analysis reads
/// only the header of a run's weights, to leave out runs whose weights are unreadable.
pub fn weights_bytes() -> Vec<u8> {
    let header = br#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend(1f32.to_le_bytes().into_iter().chain(2f32.to_le_bytes()));
    bytes
}

/// Writes a finished run under `root` (the trainer's layout), with weights, and returns it.
pub fn write_run(root: &Path, spec: &Spec) -> RunDir {
    let c = spec.config();
    let run = c.run_dir_in(root);
    run.create().unwrap();
    run.write_config(&c).unwrap();
    for weights in [RunDir::BEST_WEIGHTS, RunDir::LAST_WEIGHTS] {
        std::fs::write(run.file(weights), weights_bytes()).unwrap();
    }
    run.write_metrics(&spec.metrics()).unwrap();
    run.write_best(&BestRecord {
        epoch: spec.best_epoch(),
        val_acc: spec.best_acc,
        val_loss: spec.best_loss,
    })
    .unwrap();
    run.write_state(&RunState {
        epochs_completed: spec.run.training.epochs,
        batches_into_epoch: 0,
        epochs: spec.run.training.epochs,
        finished: true,
        trainer: serde_json::Value::Null,
    })
    .unwrap();
    if let Some(r) = spec.report() {
        run.write_eval(&r).unwrap();
    }
    run
}

/// The grid of most tests (numbers chosen so that every aggregate is exact in binary):
///
/// | group | iter: (best acc, best loss) | eval |
/// |---|---|---|
/// | human KL λ=0.5 | 0: (0.25, 2.0), 1: (0.75, 1.0), 2: (0.5, 1.5) | iters 0, 1: cinic + imagenet_far |
/// | human CE λ=0.5 | 0: (0.5, 1.25), 1: (0.5, 0.75) | none |
/// | baseline λ=0 | 0: (0.625, 1.125) | none |
/// | human KL λ=1 | 0: (0.875, 0.5), 1: (0.625, 0.75) | none |
pub fn write_grid(root: &Path) {
    let h = || TeacherSpec::Human;
    write_run(
        root,
        &Spec::new(h(), 0.5, 0, 0.25, 2.0)
            .eval_set("cinic", 0.5, 1.0, 8.0, Some(1.5))
            .eval_set("imagenet_far", 0.25, 2.0, 16.0, None),
    );
    write_run(
        root,
        &Spec::new(h(), 0.5, 1, 0.75, 1.0)
            .eval_set("cinic", 0.75, 0.5, 4.0, Some(1.0))
            .eval_set("imagenet_far", 0.5, 1.5, 12.0, None),
    );
    write_run(root, &Spec::new(h(), 0.5, 2, 0.5, 1.5));
    write_run(
        root,
        &Spec::new(h(), 0.5, 0, 0.5, 1.25).distil(DistilFn::Ce),
    );
    write_run(
        root,
        &Spec::new(h(), 0.5, 1, 0.5, 0.75).distil(DistilFn::Ce),
    );
    write_run(
        root,
        &Spec::new(TeacherSpec::Baseline, 0.0, 0, 0.625, 1.125),
    );
    write_run(root, &Spec::new(h(), 1.0, 0, 0.875, 0.5));
    write_run(root, &Spec::new(h(), 1.0, 1, 0.625, 0.75));
}

/// A teacher run spec for student runs (`TeacherSpec::Run`).
pub fn teacher_run(slug: &str) -> TeacherSpec {
    TeacherSpec::Run {
        dir: "/grid/human/resnet20/x".into(),
        arch: "resnet20".into(),
        slug: slug.into(),
    }
}

/// A parsed CSV: header and rows of cells.
pub struct Csv {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// The cells of one CSV line: fields may be quoted (`"0.5,0.75"`, with `""` for a quote),
/// as list settings such as `step_milestones` are; no field spans lines in these tables.
fn csv_cells(line: &str) -> Vec<String> {
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', false) if cell.is_empty() => quoted = true,
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            ('"', true) => quoted = false,
            (',', false) => cells.push(std::mem::take(&mut cell)),
            (c, _) => cell.push(c),
        }
    }
    assert!(!quoted, "unterminated quote in CSV line {line:?}");
    cells.push(cell);
    cells
}

impl Csv {
    pub fn read(path: &Path) -> Csv {
        let text = std::fs::read_to_string(path).unwrap();
        let mut lines = text.lines();
        let header = csv_cells(lines.next().unwrap());
        let rows = lines.map(csv_cells).collect::<Vec<_>>();
        for r in &rows {
            assert_eq!(
                r.len(),
                header.len(),
                "ragged CSV row in {}",
                path.display()
            );
        }
        Csv { header, rows }
    }

    pub fn col(&self, name: &str) -> usize {
        self.header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name} in {:?}", self.header))
    }

    pub fn has(&self, name: &str) -> bool {
        self.header.iter().any(|h| h == name)
    }

    /// The row whose `key` columns equal `values`.
    pub fn row(&self, keys: &[(&str, &str)]) -> &Vec<String> {
        let found: Vec<&Vec<String>> = self
            .rows
            .iter()
            .filter(|r| keys.iter().all(|(k, v)| r[self.col(k)] == *v))
            .collect();
        assert_eq!(found.len(), 1, "rows matching {keys:?}: {}", found.len());
        found[0]
    }

    pub fn f(&self, row: &[String], name: &str) -> f64 {
        let cell = &row[self.col(name)];
        cell.parse()
            .unwrap_or_else(|_| panic!("column {name}: `{cell}` is not a number"))
    }

    pub fn s<'a>(&self, row: &'a [String], name: &str) -> &'a str {
        &row[self.col(name)]
    }
}

/// Three arms of resnet8, like the second study's:
///
/// | arm | iters | best val acc | cinic acc, CE, confidence | test2k human CE |
/// |---|---|---|---|---|
/// | hard: baseline KL λ=0, LS 0 | 0–3 | 0.5 each | 0.5, (2.0, 2.5, 2.25, 2.0), 0.75 | (2.0, 2.0, 2.0, 2.0) |
/// | human: human CE λ=1, LS 0 | 0–3 | (0.75, 1.0, 1.0, 0.75) | 0.5, (1.5, 1.5, 1.75, 1.5), 0.5 | (1.5, 1.25, 1.5, 1.75) |
/// | ls: baseline KL λ=0, LS 0.21 | 0, 1, 3, 5 | 0.625 each | no evaluation | – |
///
/// hard and human are evaluated with a temperature (fitted on val; scaled cinic CE 1.25 and
/// 1.0), hard's cinic bins are (13: 500 at 0.875, acc 0.5), (7: 500 at 0.5, acc 0.5).
pub fn write_study(root: &Path) {
    let hard_ce = [2.0, 2.5, 2.25, 2.0];
    let human_acc = [0.75, 1.0, 1.0, 0.75];
    let human_ce = [1.5, 1.5, 1.75, 1.5];
    let human_hce = [1.5, 1.25, 1.5, 1.75];
    for i in 0..4u32 {
        let k = i as usize;
        write_run(
            root,
            &Spec::new(TeacherSpec::Baseline, 0.0, i, 0.5, 1.0)
                .eval_set("cinic", 0.5, hard_ce[k], 8.0, None)
                .eval_set("test2k", 0.5, 1.0, 4.0, Some(2.0))
                .calibrated(
                    "cinic",
                    Calibration {
                        mean_confidence: 0.75,
                        bins: vec![(7, 500, 0.5, 0.5), (13, 500, 0.875, 0.5)],
                        scaled: Some((1.25, 0.0625, 0.625, None)),
                    },
                )
                .calibrated(
                    "test2k",
                    Calibration {
                        mean_confidence: 0.75,
                        bins: vec![(13, 1000, 0.75, 0.5)],
                        scaled: Some((0.875, 0.0625, 0.5, Some(1.75))),
                    },
                )
                .temperature("val", 1.5),
        );
        write_run(
            root,
            &Spec::new(TeacherSpec::Human, 1.0, i, human_acc[k], 0.75)
                .distil(DistilFn::Ce)
                .eval_set("cinic", 0.5, human_ce[k], 6.0, None)
                .eval_set("test2k", 0.5, 1.0, 4.0, Some(human_hce[k]))
                .calibrated(
                    "cinic",
                    Calibration {
                        mean_confidence: 0.5,
                        bins: vec![(7, 1000, 0.5, 0.5)],
                        scaled: Some((1.0, 0.0, 0.5, None)),
                    },
                )
                .calibrated(
                    "test2k",
                    Calibration {
                        mean_confidence: 0.5,
                        bins: vec![(7, 1000, 0.5, 0.5)],
                        scaled: Some((0.75, 0.0, 0.5, Some(human_hce[k]))),
                    },
                )
                .temperature("val", 1.0),
        );
    }
    for i in [0u32, 1, 3, 5] {
        write_run(
            root,
            &Spec::new(TeacherSpec::Baseline, 0.0, i, 0.625, 1.0)
                .with(|s| s.loss.as_hkd_mut().unwrap().label_smoothing = 0.21),
        );
    }
}
