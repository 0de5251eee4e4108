//! Learning-rate schedules that reproduce PyTorch's `torch.optim.lr_scheduler` bit for bit
//! (same operations in the same order, evaluated in `f64`), for a loop that runs `epochs`
//! epochs of `steps_per_epoch` optimizer steps.
//!
//! Driving protocol (mirrors the usual PyTorch loop):
//!
//! ```text
//! for epoch in 0..epochs {
//!     for _ in 0..steps_per_epoch {
//!         optimizer.set_lr(scheduler.lr());
//!         optimizer.step();
//!         scheduler.after_step();          // torch: OneCycleLR.step()
//!     }
//!     scheduler.after_epoch(Some(metric)); // torch: sched.step() / plateau.step(metric)
//! }
//! ```
//!
//! The per-epoch schedules use PyTorch's *chainable* (recursive) update, i.e. what
//! `scheduler.step()` runs, not the closed forms, because the two differ in the last bits.
//! Reference values are checked in `tests/fixtures/lr_schedules.json`, produced by
//! `tests/fixtures/make_lr_fixture.py`.

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};

/// `ReduceLROnPlateau`'s `eps`: a reduction smaller than this is ignored (torch default 1e-8).
const PLATEAU_EPS: f64 = 1e-8;

pub use gradstream_domain::LrSchedule;

/// Everything that changes while a [`Scheduler`] runs. Saving it with a checkpoint and
/// passing it to [`Scheduler::restore`] continues the run bit for bit.
///
/// Floats are serialized as strings holding Rust's shortest round-trip representation
/// (`"0.001"`, `"inf"`, `"-inf"`), so they survive any JSON parser exactly (serde_json's
/// default float parsing is not guaranteed to be correctly rounded) and `±inf` (the plateau's
/// initial `best`) can be represented at all.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SchedulerState {
    /// Epochs completed (`after_epoch` calls).
    pub epoch: u32,
    /// Optimizer steps completed (`after_step` calls) since the start of the run.
    pub step: u64,
    /// The learning rate for the next optimizer step.
    #[serde(with = "exact_f64")]
    pub lr: f64,
    /// ReduceOnPlateau: best metric so far (`+inf` / `-inf` before the first epoch).
    #[serde(with = "exact_f64")]
    pub best: f64,
    /// ReduceOnPlateau: consecutive epochs without improvement.
    pub num_bad_epochs: u32,
    /// ReduceOnPlateau: epochs of cooldown left.
    pub cooldown_counter: u32,
}

impl SchedulerState {
    /// The state as six numbers, for checkpoints.
    pub fn to_values(&self) -> [f64; 6] {
        [
            f64::from(self.epoch),
            self.step as f64,
            self.lr,
            self.best,
            f64::from(self.num_bad_epochs),
            f64::from(self.cooldown_counter),
        ]
    }

    /// The inverse of [`to_values`](Self::to_values).
    pub fn from_values(v: &[f64]) -> Option<Self> {
        let [epoch, step, lr, best, bad, cooldown] = *v else {
            return None;
        };
        Some(Self {
            epoch: epoch as u32,
            step: step as u64,
            lr,
            best,
            num_bad_epochs: bad as u32,
            cooldown_counter: cooldown as u32,
        })
    }
}

/// Computes the learning rate of every optimizer step of a run; see the module docs for the
/// calling protocol.
#[derive(Debug, Clone)]
pub struct Scheduler {
    schedule: LrSchedule,
    base_lr: f64,
    epochs: u32,
    steps_per_epoch: u32,
    state: SchedulerState,
}

impl Scheduler {
    /// A scheduler at the start of a run. `base_lr` is the job's learning rate (max_lr for
    /// OneCycle). The schedule is assumed to have passed [`validate`].
    pub fn new(schedule: LrSchedule, base_lr: f64, epochs: u32, steps_per_epoch: u32) -> Self {
        let best = match schedule {
            // torch: mode_worse
            LrSchedule::ReduceOnPlateau { maximize: true, .. } => f64::NEG_INFINITY,
            _ => f64::INFINITY,
        };
        let mut s = Scheduler {
            schedule,
            base_lr,
            epochs,
            steps_per_epoch,
            state: SchedulerState {
                epoch: 0,
                step: 0,
                lr: base_lr,
                best,
                num_bad_epochs: 0,
                cooldown_counter: 0,
            },
        };
        s.state.lr = s.initial_lr();
        s
    }

    /// A scheduler continuing a run from a saved [`SchedulerState`].
    pub fn from_state(
        schedule: LrSchedule,
        base_lr: f64,
        epochs: u32,
        steps_per_epoch: u32,
        state: &SchedulerState,
    ) -> Self {
        let mut s = Self::new(schedule, base_lr, epochs, steps_per_epoch);
        s.restore(state);
        s
    }

    /// The learning rate for the coming optimizer step (call before each step; the loop sets
    /// the optimizer's lr to it).
    pub fn lr(&self) -> f64 {
        self.state.lr
    }

    /// Called after each optimizer step.
    pub fn after_step(&mut self) {
        self.state.step += 1;
        if let LrSchedule::OneCycle { .. } = self.schedule {
            self.state.lr = self.one_cycle_lr(self.state.step);
        }
    }

    /// Called at the end of each epoch with the monitored metric. ReduceOnPlateau needs
    /// `Some`; with `None` it leaves its lr and counters unchanged (only the epoch counter
    /// advances). The other schedules ignore the metric.
    pub fn after_epoch(&mut self, metric: Option<f64>) {
        self.state.epoch += 1;
        let e = self.state.epoch;
        match self.schedule {
            LrSchedule::Constant | LrSchedule::OneCycle { .. } => {}
            // torch StepLR.get_lr: lr * gamma when last_epoch (>= 1 here) is a multiple of step_size.
            LrSchedule::Step { step_size, gamma } => {
                if e.is_multiple_of(step_size) {
                    self.state.lr *= gamma;
                }
            }
            LrSchedule::Exponential { gamma } => self.state.lr *= gamma,
            LrSchedule::Cosine {
                warmup_epochs,
                warmup_start_factor,
                eta_min,
            } => {
                let t_max = self.epochs.saturating_sub(warmup_epochs);
                if warmup_epochs == 0 {
                    self.state.lr = cosine_step(self.state.lr, self.base_lr, eta_min, t_max, e);
                } else if e < warmup_epochs {
                    // SequentialLR forwards to LinearLR.step() (last_epoch = e).
                    self.state.lr =
                        linear_step(self.state.lr, warmup_start_factor, warmup_epochs, e);
                } else if e == warmup_epochs {
                    // SequentialLR at the milestone: CosineAnnealingLR._update_lr(0), i.e. the
                    // closed form at last_epoch 0, computed from base_lr.
                    self.state.lr = cosine_closed_form(self.base_lr, eta_min, t_max, 0);
                } else {
                    self.state.lr = cosine_step(
                        self.state.lr,
                        self.base_lr,
                        eta_min,
                        t_max,
                        e - warmup_epochs,
                    );
                }
            }
            LrSchedule::ReduceOnPlateau {
                maximize,
                factor,
                patience,
                threshold,
                cooldown,
                min_lr,
            } => {
                let Some(current) = metric else { return };
                let st = &mut self.state;
                let better = if maximize {
                    let rel_epsilon = threshold + 1.0;
                    current > st.best * rel_epsilon
                } else {
                    let rel_epsilon = 1.0 - threshold;
                    current < st.best * rel_epsilon
                };
                if better {
                    st.best = current;
                    st.num_bad_epochs = 0;
                } else {
                    st.num_bad_epochs = st.num_bad_epochs.saturating_add(1);
                }
                if st.cooldown_counter > 0 {
                    st.cooldown_counter -= 1;
                    st.num_bad_epochs = 0; // ignore any bad epochs in cooldown
                }
                if st.num_bad_epochs > patience {
                    let old_lr = st.lr;
                    let new_lr = f64::max(old_lr * factor, min_lr);
                    if old_lr - new_lr > PLATEAU_EPS {
                        st.lr = new_lr;
                    }
                    st.cooldown_counter = cooldown;
                    st.num_bad_epochs = 0;
                }
            }
        }
    }

    /// Serializable state: position and plateau counters.
    pub fn state(&self) -> SchedulerState {
        self.state
    }

    /// Continues from a state taken with [`Scheduler::state`] from a scheduler built with the
    /// same schedule, base_lr, epochs and steps_per_epoch.
    pub fn restore(&mut self, s: &SchedulerState) {
        self.state = *s;
    }

    /// The lr of the first optimizer step: what the torch scheduler's constructor leaves in
    /// the optimizer.
    fn initial_lr(&self) -> f64 {
        match self.schedule {
            LrSchedule::Cosine {
                warmup_epochs,
                warmup_start_factor,
                ..
            } if warmup_epochs > 0 => {
                // LinearLR.get_lr at last_epoch 0.
                self.base_lr * warmup_start_factor
            }
            LrSchedule::OneCycle { .. } => self.one_cycle_lr(0),
            _ => self.base_lr,
        }
    }

    /// torch OneCycleLR.get_lr (two phases, cos annealing) at `last_epoch = step`.
    fn one_cycle_lr(&self, step: u64) -> f64 {
        let LrSchedule::OneCycle {
            pct_start,
            div_factor,
            final_div_factor,
        } = self.schedule
        else {
            return self.state.lr;
        };
        let total_steps = u64::from(self.epochs) * u64::from(self.steps_per_epoch);
        // torch raises past total_steps; we stay at the last value instead.
        let step_num = step.min(total_steps) as f64;
        let max_lr = self.base_lr;
        let initial_lr = max_lr / div_factor;
        let min_lr = initial_lr / final_div_factor;
        let phases = [
            (pct_start * total_steps as f64 - 1.0, initial_lr, max_lr),
            (total_steps as f64 - 1.0, max_lr, min_lr),
        ];
        let mut start_step = 0.0;
        for (i, &(end_step, start_lr, end_lr)) in phases.iter().enumerate() {
            if step_num <= end_step || i == phases.len() - 1 {
                let denom = end_step - start_step;
                // torch divides by zero (ZeroDivisionError) when a phase is a single step
                // (pct_start * total_steps == 1); we take that step as the phase's end.
                let pct = if denom == 0.0 {
                    1.0
                } else {
                    (step_num - start_step) / denom
                };
                return annealing_cos(start_lr, end_lr, pct);
            }
            start_step = end_step;
        }
        unreachable!("the last phase always matches")
    }
}

/// torch OneCycleLR._annealing_cos.
fn annealing_cos(start: f64, end: f64, pct: f64) -> f64 {
    let cos_out = (PI * pct).cos() + 1.0;
    end + (start - end) / 2.0 * cos_out
}

/// torch LinearLR.get_lr (end_factor 1) for `last_epoch >= 1`, chainable form.
fn linear_step(lr: f64, start_factor: f64, total_iters: u32, last_epoch: u32) -> f64 {
    let end_factor = 1.0;
    if last_epoch > total_iters {
        return lr;
    }
    lr * (1.0
        + (end_factor - start_factor)
            / (f64::from(total_iters) * start_factor
                + f64::from(last_epoch - 1) * (end_factor - start_factor)))
}

/// torch CosineAnnealingLR._get_closed_form_lr.
fn cosine_closed_form(base_lr: f64, eta_min: f64, t_max: u32, last_epoch: u32) -> f64 {
    eta_min
        + (base_lr - eta_min) * (1.0 + (PI * f64::from(last_epoch) / f64::from(t_max)).cos()) / 2.0
}

/// torch CosineAnnealingLR.get_lr for `last_epoch >= 1` reached through `step()` (the
/// chainable form; the `_step_count == 1` resume branch never runs in a stepped run).
fn cosine_step(lr: f64, base_lr: f64, eta_min: f64, t_max: u32, last_epoch: u32) -> f64 {
    let t = f64::from(t_max);
    let k = i64::from(last_epoch);
    let t_i = i64::from(t_max);
    if t_max != 0 && (k - 1 - t_i).rem_euclid(2 * t_i) == 0 {
        return lr + (base_lr - eta_min) * (1.0 - (PI / t).cos()) / 2.0;
    }
    (1.0 + (PI * f64::from(last_epoch) / t).cos())
        / (1.0 + (PI * f64::from(last_epoch - 1) / t).cos())
        * (lr - eta_min)
        + eta_min
}

/// Serde for `f64` as a string with the shortest representation that parses back to the
/// same bits (`"0.1"`, `"1e-8"`, `"inf"`, `"-inf"`, `"NaN"`).
mod exact_f64 {
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{v:?}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = f64;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string holding a float")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
                v.parse()
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_str(V)
    }
}
