//! Which epoch's model a job keeps and when it stops: early stopping, the metric that
//! picks the best epoch, and which of a job's models a request means.

use super::{SpecError, check, check_non_negative};

/// Stop after `patience` epochs in which `best_model_metric` improved by no more than
/// `min_delta` on the best so far.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EarlyStopping {
    pub patience: u32,
    pub min_delta: f64,
}

impl EarlyStopping {
    /// Checks `spec.early_stopping`'s own settings.
    pub(super) fn validate(&self) -> Result<(), SpecError> {
        check(self.patience >= 1, "spec.early_stopping.patience", || {
            "must be at least 1 epoch; 3 to 10 is usual".into()
        })?;
        check_non_negative(self.min_delta, "spec.early_stopping.min_delta")
    }
}

/// Which of a job's models a request means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModelVersion {
    /// The best epoch's, by the spec's `best_model_metric`.
    #[default]
    Best,
    /// The last finished epoch's.
    Last,
}

/// How a job's best epoch is chosen: by a metric of the validation split (of the training
/// split when there is no validation split).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum ModelSelection {
    /// Lowest loss.
    #[default]
    Loss,
    Accuracy,
    MacroF1,
    /// An epoch whose ROC AUC is undefined never wins.
    RocAuc,
    /// Macro average precision; an epoch where it is undefined never wins.
    AveragePrecision,
}

impl ModelSelection {
    /// The metric's value as a score where higher is better (loss is negated); `None`
    /// when it is undefined.
    pub fn score(self, m: &gradstream_metrics::Metrics) -> Option<f64> {
        let v = match self {
            Self::Loss => Some(-m.loss),
            Self::Accuracy => Some(m.accuracy),
            Self::MacroF1 => Some(m.macro_avg.f1),
            Self::RocAuc => m.roc_auc,
            Self::AveragePrecision => m.average_precision,
        };
        v.filter(|v| !v.is_nan())
    }

    /// The metric's value as reported (loss not negated).
    pub fn value(self, m: &gradstream_metrics::Metrics) -> Option<f64> {
        self.score(m).map(|s| self.value_of_score(s))
    }

    /// A score (higher is better) back as the metric's value.
    pub fn value_of_score(self, score: f64) -> f64 {
        if self == Self::Loss { -score } else { score }
    }
}
