//! Settings for imbalanced classes: class weights and weighting, resampling of the training
//! split, ensembles and the loss, with their checks and how they combine.

use super::{JobSpec, SpecError, check, check_unit};

/// Where the class weights come from.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub enum ClassWeighting {
    /// Unweighted.
    None,
    /// `class_weights` as given (empty = unweighted).
    #[default]
    Manual,
    /// `n / (k * count_c)` over the training split (scikit-learn's "balanced").
    Balanced,
    /// Cui et al.: `(1 - beta) / (1 - beta^count_c)`, scaled to sum to `k`.
    EffectiveNumber { beta: f64 },
}

impl ClassWeighting {
    /// Checks the weighting against whether `spec.class_weights` are given (`manual`), and
    /// the effective number's beta.
    fn validate(&self, manual: bool) -> Result<(), SpecError> {
        match self {
            ClassWeighting::Manual => {}
            ClassWeighting::None => check(!manual, "spec.class_weights", || {
                "are given but class_weighting is NONE; set class_weighting to MANUAL to use them, or remove them".into()
            })?,
            ClassWeighting::Balanced | ClassWeighting::EffectiveNumber { .. } => {
                check(!manual, "spec.class_weights", || {
                    "are given together with a class_weighting that computes the weights (BALANCED or EFFECTIVE_NUMBER); remove class_weights, or set class_weighting to MANUAL".into()
                })?
            }
        }
        if let ClassWeighting::EffectiveNumber { beta } = *self {
            check_unit(beta, "spec.effective_number_beta", "beta")?;
        }
        Ok(())
    }
}

/// Resampling of the training split.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ResamplingSpec {
    pub method: ResamplingMethod,
    /// In (0, 1]: see `data::imbalance` for the target sizes.
    pub ratio: f64,
    /// A new draw every epoch, or one before training.
    pub per_epoch: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ResamplingMethod {
    RandomOversample,
    RandomUndersample,
    Smote { k_neighbors: u32 },
}

impl ResamplingSpec {
    /// Checks `spec.resampling`'s ratio and SMOTE's neighbours.
    fn validate(&self) -> Result<(), SpecError> {
        check(
            self.ratio.is_finite() && self.ratio > 0.0 && self.ratio <= 1.0,
            "spec.resampling.ratio",
            || {
                format!(
                    "must be in (0, 1], got {}; 1 makes the classes equal, 0.5 brings the smaller ones to half the largest",
                    self.ratio
                )
            },
        )?;
        if let ResamplingMethod::Smote { k_neighbors } = self.method {
            check(k_neighbors >= 1, "spec.resampling.k_neighbors", || {
                "must be at least 1; 5 is usual".into()
            })?;
        }
        Ok(())
    }
}

/// An ensemble of models trained on different draws of the training split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EnsembleSpec {
    /// Each member: all rows of the smallest class and as many drawn from each other class.
    BalancedBagging { members: u32 },
}

impl EnsembleSpec {
    pub fn members(&self) -> u32 {
        match self {
            Self::BalancedBagging { members } => *members,
        }
    }

    /// Checks `spec.ensemble.members`.
    fn validate(&self) -> Result<(), SpecError> {
        let m = self.members();
        check(
            (2..=MAX_ENSEMBLE_MEMBERS).contains(&m),
            "spec.ensemble.members",
            || format!("must be 2 to {MAX_ENSEMBLE_MEMBERS}, got {m}; 5 to 10 is usual"),
        )
    }
}

/// Most members an ensemble may have.
pub const MAX_ENSEMBLE_MEMBERS: u32 = 50;

/// The training loss (both honour the class weights).
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub enum LossSpec {
    #[default]
    CrossEntropy,
    /// Softmax focal loss with focusing parameter `gamma` (0 = cross-entropy).
    Focal { gamma: f64 },
}

impl LossSpec {
    /// Checks the focal loss's gamma.
    fn validate(&self) -> Result<(), SpecError> {
        if let LossSpec::Focal { gamma } = *self {
            check(
                gamma.is_finite() && (0.0..=20.0).contains(&gamma),
                "spec.loss.gamma",
                || format!("must be in [0, 20], got {gamma}; 2 is usual (0 is cross-entropy)"),
            )?;
        }
        Ok(())
    }
}

impl JobSpec {
    /// Class weighting, resampling, ensemble and loss settings, and how they combine.
    pub(super) fn validate_imbalance(&self) -> Result<(), SpecError> {
        self.class_weighting
            .validate(!self.class_weights.is_empty())?;
        if let Some(r) = &self.resampling {
            r.validate()?;
        }
        if let Some(e) = &self.ensemble {
            e.validate()?;
            check(self.resampling.is_none(), "spec.resampling", || {
                "cannot be combined with BALANCED_BAGGING, which already balances each member's data; remove one of them".into()
            })?;
        }
        self.loss.validate()
    }

    /// Class weights: none negative or non-finite, not all zero, and (when the number of
    /// classes is known) one per class.
    pub fn validate_class_weights(&self, classes: Option<&[String]>) -> Result<(), SpecError> {
        let w = &self.class_weights;
        if w.is_empty() {
            return Ok(());
        }
        for (i, v) in w.iter().enumerate() {
            check(
                v.is_finite() && *v >= 0.0,
                &format!("spec.class_weights[{i}]"),
                || format!("must be a finite number >= 0, got {v}"),
            )?;
        }
        check(w.iter().any(|v| *v > 0.0), "spec.class_weights", || {
            "are all zero; give at least one class a weight > 0, or leave the list empty for unweighted training".into()
        })?;
        if let Some(labels) = classes {
            check(w.len() == labels.len(), "spec.class_weights", || {
                format!(
                    "has {} entries but the dataset has {} classes ({}); give one weight per class in that order",
                    w.len(),
                    labels.len(),
                    labels.join(", ")
                )
            })?;
        }
        Ok(())
    }
}
