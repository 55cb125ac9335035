//! Learning-rate schedules, stepped once per epoch after validation.
//!
//! - `plateau`: PyTorch's `ReduceLROnPlateau(mode="max", factor, patience,
//!   threshold=1e-4, threshold_mode="rel", cooldown=0, min_lr=0, eps=1e-8)` on the
//!   validation accuracy: the original project's schedule.
//! - `step`: the learning rate is multiplied by `gamma` after each milestone
//!   `floor(fraction · epochs)` (default 0.1 at 50 % and 75 %: the schedule of the
//!   original's unused `adjust_learning_rate`).
//! - `cosine`: `min + (lr0 − min)·(1 + cos(π·e/E))/2` for epoch `e` (0-based) of `E`
//!   (PyTorch's `CosineAnnealingLR(T_max=E, eta_min=min)` stepped per epoch).

use serde::{Deserialize, Serialize};

use hkd_rundir::SchedulerKind;

/// Relative improvement the plateau schedule needs to count an epoch as better.
pub const PLATEAU_THRESHOLD: f64 = 1e-4;
/// Smallest learning-rate change the plateau schedule applies (PyTorch's `eps`).
pub const PLATEAU_EPS: f64 = 1e-8;

/// The parameters of a schedule (what the user chose).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScheduleSettings {
    /// Reduce on plateau of the validation accuracy.
    Plateau {
        /// Multiplier of the learning rate on a plateau.
        factor: f64,
        /// Epochs without improvement tolerated.
        patience: u32,
    },
    /// Step decay at fractions of the run.
    Step {
        /// Fractions of the epochs, increasing.
        milestones: Vec<f64>,
        /// Multiplier at each milestone.
        gamma: f64,
    },
    /// Cosine annealing over the run.
    Cosine {
        /// Learning rate at the end.
        min_lr: f64,
    },
}

impl ScheduleSettings {
    /// The kind, as recorded in the run's config.
    pub fn kind(&self) -> SchedulerKind {
        match self {
            ScheduleSettings::Plateau { .. } => SchedulerKind::Plateau,
            ScheduleSettings::Step { .. } => SchedulerKind::Step,
            ScheduleSettings::Cosine { .. } => SchedulerKind::Cosine,
        }
    }
}

/// A schedule and its state; serialised into the run's `last.json` so a resumed run
/// continues it exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scheduler {
    /// What schedule.
    pub settings: ScheduleSettings,
    /// Initial learning rate.
    pub base_lr: f64,
    /// Epochs of the run.
    pub epochs: u32,
    /// Learning rate of the next epoch.
    pub lr: f64,
    /// Epochs stepped so far.
    pub epochs_stepped: u32,
    /// Plateau: best validation accuracy so far (`None` before the first step).
    pub best: Option<f64>,
    /// Plateau: epochs since the last improvement.
    pub bad_epochs: u32,
    /// Plateau: epochs of cooldown left (always 0 with cooldown 0; kept for fidelity).
    pub cooldown_left: u32,
}

impl Scheduler {
    /// A fresh schedule starting at `base_lr`.
    pub fn new(settings: ScheduleSettings, base_lr: f64, epochs: u32) -> Self {
        let mut s = Scheduler {
            settings,
            base_lr,
            epochs,
            lr: base_lr,
            epochs_stepped: 0,
            best: None,
            bad_epochs: 0,
            cooldown_left: 0,
        };
        s.lr = s.closed_form(0).unwrap_or(base_lr);
        s
    }

    /// Learning rate for the next epoch.
    pub fn lr(&self) -> f64 {
        self.lr
    }

    /// Steps the schedule at the end of an epoch with its validation accuracy.
    pub fn step(&mut self, val_acc: f64) {
        self.epochs_stepped += 1;
        if let ScheduleSettings::Plateau { factor, patience } = self.settings {
            let better = match self.best {
                None => true,
                Some(best) => val_acc > best * (1.0 + PLATEAU_THRESHOLD),
            };
            if better {
                self.best = Some(val_acc);
                self.bad_epochs = 0;
            } else {
                self.bad_epochs += 1;
            }
            if self.cooldown_left > 0 {
                self.cooldown_left -= 1;
                self.bad_epochs = 0;
            }
            if self.bad_epochs > patience {
                let new_lr = self.lr * factor;
                if self.lr - new_lr > PLATEAU_EPS {
                    self.lr = new_lr;
                }
                self.cooldown_left = 0;
                self.bad_epochs = 0;
            }
        } else if let Some(lr) = self.closed_form(self.epochs_stepped) {
            self.lr = lr;
        }
    }

    /// The learning rate of epoch `epoch` (0-based) for the schedules that are a
    /// function of the epoch.
    fn closed_form(&self, epoch: u32) -> Option<f64> {
        match &self.settings {
            ScheduleSettings::Plateau { .. } => None,
            ScheduleSettings::Step { milestones, gamma } => {
                let passed = milestones
                    .iter()
                    .filter(|m| epoch >= (**m * f64::from(self.epochs)).floor() as u32)
                    .count();
                Some(self.base_lr * gamma.powi(passed as i32))
            }
            ScheduleSettings::Cosine { min_lr } => {
                let t = f64::from(epoch.min(self.epochs)) / f64::from(self.epochs.max(1));
                Some(
                    min_lr
                        + (self.base_lr - min_lr) * (1.0 + (std::f64::consts::PI * t).cos()) / 2.0,
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(s: &mut Scheduler, accs: &[f64]) -> Vec<f64> {
        accs.iter()
            .map(|&a| {
                let lr = s.lr();
                s.step(a);
                lr
            })
            .collect()
    }

    #[test]
    fn plateau_reduces_after_patience_plus_one_bad_epochs_like_pytorch() {
        // PyTorch ReduceLROnPlateau(mode=max, factor=0.5, patience=2) on these accuracies
        // gives lrs 1,1,1,1,1,0.5,0.5,0.5,0.25,0.25 (the reduction happens in the step of
        // the 3rd epoch without improvement and applies from the next epoch).
        let mut s = Scheduler::new(
            ScheduleSettings::Plateau {
                factor: 0.5,
                patience: 2,
            },
            1.0,
            10,
        );
        let lrs = run(
            &mut s,
            &[10.0, 20.0, 20.0, 20.0, 20.0, 19.0, 18.0, 17.0, 16.0, 15.0],
        );
        assert_eq!(
            lrs,
            vec![1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]
        );
        // An improvement smaller than the relative threshold does not count.
        let mut s = Scheduler::new(
            ScheduleSettings::Plateau {
                factor: 0.5,
                patience: 0,
            },
            1.0,
            10,
        );
        let lrs = run(&mut s, &[50.0, 50.004, 50.1]);
        assert_eq!(lrs, vec![1.0, 1.0, 0.5]);
    }

    #[test]
    fn step_follows_the_milestones() {
        let mut s = Scheduler::new(
            ScheduleSettings::Step {
                milestones: vec![0.5, 0.75],
                gamma: 0.1,
            },
            0.1,
            8,
        );
        let lrs = run(&mut s, &[0.0; 8]);
        let expected = [0.1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001];
        for (a, b) in lrs.iter().zip(expected) {
            assert!((a - b).abs() < 1e-12, "{lrs:?}");
        }
    }

    #[test]
    fn cosine_goes_from_lr_to_min() {
        let mut s = Scheduler::new(ScheduleSettings::Cosine { min_lr: 0.0 }, 0.1, 4);
        let lrs = run(&mut s, &[0.0; 4]);
        let expected = [
            0.1,
            0.1 * (1.0 + (0.25f64 * std::f64::consts::PI).cos()) / 2.0,
            0.05,
            0.1 * (1.0 + (0.75f64 * std::f64::consts::PI).cos()) / 2.0,
        ];
        for (a, b) in lrs.iter().zip(expected) {
            assert!((a - b).abs() < 1e-12, "{lrs:?}");
        }
        assert!(s.lr().abs() < 1e-12);
    }
}
