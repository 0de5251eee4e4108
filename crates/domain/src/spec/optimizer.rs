//! Optimizers (`spec.optimizer`), with PyTorch's defaults, and their checks.

use super::{SpecError, check, check_non_negative, check_positive, check_unit};

/// An optimizer with every default resolved (PyTorch's defaults).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum OptimizerSpec {
    Sgd {
        momentum: f64,
        nesterov: bool,
        weight_decay: f64,
    },
    /// Adam; with `decoupled` weight decay it is AdamW.
    Adam {
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
        decoupled: bool,
    },
    RmsProp {
        alpha: f64,
        eps: f64,
        momentum: f64,
        weight_decay: f64,
    },
    AdaDelta {
        rho: f64,
        eps: f64,
        weight_decay: f64,
    },
}

impl OptimizerSpec {
    pub fn adam_default() -> Self {
        Self::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Sgd { .. } => "sgd",
            Self::Adam {
                decoupled: false, ..
            } => "adam",
            Self::Adam {
                decoupled: true, ..
            } => "adamw",
            Self::RmsProp { .. } => "rmsprop",
            Self::AdaDelta { .. } => "adadelta",
        }
    }

    /// Checks `spec.optimizer`'s settings for the chosen optimizer.
    pub(super) fn validate(&self) -> Result<(), SpecError> {
        let f = "spec.optimizer";
        match *self {
            OptimizerSpec::Sgd {
                momentum,
                nesterov,
                weight_decay,
            } => {
                check_non_negative(momentum, &format!("{f}.momentum"))?;
                check_non_negative(weight_decay, &format!("{f}.weight_decay"))?;
                check(
                    !nesterov || momentum > 0.0,
                    &format!("{f}.nesterov"),
                    || {
                        "Nesterov momentum needs momentum > 0; set optimizer.momentum (0.9 is usual) or turn nesterov off".into()
                    },
                )
            }
            OptimizerSpec::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
                ..
            } => {
                check_unit(beta1, &format!("{f}.beta1"), "beta1")?;
                check_unit(beta2, &format!("{f}.beta2"), "beta2")?;
                check_positive(eps, &format!("{f}.eps"))?;
                check_non_negative(weight_decay, &format!("{f}.weight_decay"))
            }
            OptimizerSpec::RmsProp {
                alpha,
                eps,
                momentum,
                weight_decay,
            } => {
                check_unit(alpha, &format!("{f}.rho"), "rho (RMSprop alpha)")?;
                check_positive(eps, &format!("{f}.eps"))?;
                check_non_negative(momentum, &format!("{f}.momentum"))?;
                check_non_negative(weight_decay, &format!("{f}.weight_decay"))
            }
            OptimizerSpec::AdaDelta {
                rho,
                eps,
                weight_decay,
            } => {
                check(
                    rho.is_finite() && (0.0..=1.0).contains(&rho),
                    &format!("{f}.rho"),
                    || format!("must be in [0, 1], got {rho}; 0.9 is usual"),
                )?;
                check_positive(eps, &format!("{f}.eps"))?;
                check_non_negative(weight_decay, &format!("{f}.weight_decay"))
            }
        }
    }
}
