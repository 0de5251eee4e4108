//! Learning-rate schedules (`spec.lr_schedule`) and their checks.

use super::SpecError;

/// A learning-rate schedule, as given in a job spec (`spec.lr_schedule`).
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub enum LrSchedule {
    #[default]
    Constant,
    /// torch StepLR(step_size, gamma), stepped once per epoch.
    Step { step_size: u32, gamma: f64 },
    /// torch ExponentialLR(gamma), per epoch.
    Exponential { gamma: f64 },
    /// Linear warmup for `warmup_epochs` epochs (torch `LinearLR(start_factor =
    /// warmup_start_factor, end_factor = 1, total_iters = warmup_epochs)`), then
    /// `CosineAnnealingLR(T_max = epochs - warmup_epochs, eta_min)`: exactly torch
    /// `SequentialLR([LinearLR, CosineAnnealingLR], milestones = [warmup_epochs])`. With
    /// `warmup_epochs = 0` it is plain `CosineAnnealingLR(T_max = epochs, eta_min)`. Per epoch.
    Cosine {
        warmup_epochs: u32,
        warmup_start_factor: f64,
        eta_min: f64,
    },
    /// torch `OneCycleLR(max_lr, total_steps = epochs * steps_per_epoch, pct_start,
    /// anneal_strategy = 'cos', div_factor, final_div_factor, three_phase = False,
    /// cycle_momentum = False)`, stepped every iteration. The job's learning_rate is max_lr.
    OneCycle {
        pct_start: f64,
        div_factor: f64,
        final_div_factor: f64,
    },
    /// torch `ReduceLROnPlateau(mode = 'max' if maximize else 'min', factor, patience,
    /// threshold, threshold_mode = 'rel', cooldown, min_lr)` (eps = 1e-8), stepped once per
    /// epoch with the monitored metric value.
    ReduceOnPlateau {
        maximize: bool,
        factor: f64,
        patience: u32,
        threshold: f64,
        cooldown: u32,
        min_lr: f64,
    },
}

/// Checks a schedule from a job spec; the error names the field (`spec.lr_schedule.<field>`)
/// and says what to change.
pub fn validate_schedule(schedule: &LrSchedule, epochs: u32) -> Result<(), SpecError> {
    fn bad(field: &str, value: impl std::fmt::Display, rule: &str) -> Result<(), SpecError> {
        Err(SpecError::new(
            format!("spec.lr_schedule.{field}"),
            format!("is {value}; {rule}"),
        ))
    }
    fn gamma_ok(gamma: f64) -> Result<(), SpecError> {
        if gamma > 0.0 && gamma <= 1.0 {
            Ok(())
        } else {
            bad(
                "gamma",
                gamma,
                "set it to a value in (0, 1] (greater than 0, at most 1; 1 keeps the lr constant)",
            )
        }
    }
    match *schedule {
        LrSchedule::Constant => Ok(()),
        LrSchedule::Step { step_size, gamma } => {
            if step_size < 1 {
                return bad(
                    "step_size",
                    step_size,
                    "set it to at least 1 (epochs between decays)",
                );
            }
            gamma_ok(gamma)
        }
        LrSchedule::Exponential { gamma } => gamma_ok(gamma),
        LrSchedule::Cosine {
            warmup_epochs,
            warmup_start_factor,
            eta_min,
        } => {
            if warmup_epochs >= epochs {
                return bad(
                    "warmup_epochs",
                    warmup_epochs,
                    &format!(
                        "set it below spec.epochs ({epochs}) so that at least one cosine epoch remains, or use 0 for no warmup"
                    ),
                );
            }
            if !(warmup_start_factor > 0.0 && warmup_start_factor <= 1.0) {
                return bad(
                    "warmup_start_factor",
                    warmup_start_factor,
                    "set it to a value in (0, 1] (the fraction of the learning rate the warmup starts from)",
                );
            }
            if !(eta_min.is_finite() && eta_min >= 0.0) {
                return bad(
                    "eta_min",
                    eta_min,
                    "set it to a finite value >= 0 (the final learning rate)",
                );
            }
            Ok(())
        }
        LrSchedule::OneCycle {
            pct_start,
            div_factor,
            final_div_factor,
        } => {
            if !(pct_start > 0.0 && pct_start < 1.0) {
                return bad(
                    "pct_start",
                    pct_start,
                    "set it to a value in (0, 1) (the fraction of steps spent increasing the lr, e.g. 0.3)",
                );
            }
            if !(div_factor.is_finite() && div_factor > 0.0) {
                return bad(
                    "div_factor",
                    div_factor,
                    "set it to a finite value > 0 (initial lr = learning_rate / div_factor, e.g. 25)",
                );
            }
            if !(final_div_factor.is_finite() && final_div_factor > 0.0) {
                return bad(
                    "final_div_factor",
                    final_div_factor,
                    "set it to a finite value > 0 (final lr = initial lr / final_div_factor, e.g. 1e4)",
                );
            }
            Ok(())
        }
        LrSchedule::ReduceOnPlateau {
            factor,
            threshold,
            min_lr,
            ..
        } => {
            if !(factor > 0.0 && factor < 1.0) {
                return bad(
                    "factor",
                    factor,
                    "set it to a value in (0, 1) (the lr is multiplied by it on a plateau, e.g. 0.1)",
                );
            }
            if !(threshold.is_finite() && threshold >= 0.0) {
                return bad(
                    "threshold",
                    threshold,
                    "set it to a finite value >= 0 (relative improvement needed to count, e.g. 1e-4)",
                );
            }
            if !(min_lr.is_finite() && min_lr >= 0.0) {
                return bad(
                    "min_lr",
                    min_lr,
                    "set it to a finite value >= 0 (lower bound on the learning rate)",
                );
            }
            Ok(())
        }
    }
}
