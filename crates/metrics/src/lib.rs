//! Classification metrics with scikit-learn's (1.9) definitions.
//!
//! Everything here is a pure function over plain slices; no state, no I/O and
//! no dependencies beyond `std`. One file per family of metrics:
//!
//! * `confusion.rs`: [`ConfusionMatrix`] and [`confusion_counts`]
//!   (`sklearn.metrics.confusion_matrix`, rows actual, columns predicted).
//! * `classification.rs`: per-class precision / recall / F1 / support and their
//!   macro and support-weighted averages (`precision_recall_fscore_support` with
//!   `zero_division=0`), accuracy, balanced accuracy, MCC.
//! * `roc.rs`: ROC curve and ROC AUC (binary, and one-vs-rest macro for `k > 2`).
//! * `precision_recall.rs`: precision–recall curve and average precision.
//! * `probability.rs`: log loss and Brier score.
//! * `threshold.rs`: the binary threshold report (best F1, target recall).
//! * `downsample.rs`: curve downsampling.
//! * `report.rs`: the assembler, [`evaluate`], [`evaluate_with_curves`], [`full_report`].
//! * `matrix.rs`: the `n x k` probability matrix (argmax, row count, one class's column).
//! * `binary_scores.rs`: binary scores grouped by distinct value, shared by the curves.
//!
//! The curve, probability-score and threshold items are reached through [`curves`].
//!
//! Conventions shared by every function here:
//!
//! * Class probabilities are a row-major `n x k` `f32` matrix, true classes a
//!   `usize` per row; binary curve functions take `scores: &[f64]` and
//!   `positive: &[bool]`. All arithmetic is in `f64` (counts in integers).
//! * A threshold `t` predicts "positive" for `score >= t` (scikit-learn's
//!   curve convention).
//! * Where scikit-learn raises, or returns NaN, or only warns and returns a
//!   meaningless value, these functions return `None` (see each function).
//! * Scores are compared like [`roc_auc`]: `-0.0 == 0.0`, and NaN scores (which
//!   scikit-learn rejects) never panic: they are equal to each other and larger
//!   than every number, so a NaN can appear as a threshold.
//! * Length mismatches are caller bugs caught by `debug_assert!`; in release
//!   builds only the common prefix is used.

mod binary_scores;
mod classification;
mod confusion;
mod downsample;
mod matrix;
mod precision_recall;
mod probability;
mod report;
mod roc;
#[cfg(test)]
mod test_support;
mod threshold;

pub use classification::{Averages, ClassMetrics};
pub use confusion::{ConfusionMatrix, confusion_counts};
pub use matrix::argmax_rows;
pub use report::{
    Evaluation, Metrics, evaluate, evaluate_counts, evaluate_with_curves, full_report,
};
pub use roc::roc_auc;

/// Threshold curves, probabilistic scores and threshold reports: ROC and
/// precision–recall curves, balanced accuracy, MCC, log loss, Brier score, the
/// binary threshold report, curve downsampling and [`full_report`].
pub mod curves {
    pub use crate::classification::{balanced_accuracy, matthews_corrcoef};
    pub use crate::downsample::{DEFAULT_MAX_CURVE_POINTS, downsample_indices};
    pub use crate::precision_recall::{PrCurve, macro_average_precision, precision_recall_curve};
    pub use crate::probability::{brier_score, log_loss};
    pub use crate::report::{
        ClassCurves, Evaluation, evaluate_with_curves, full_report, full_report_for,
    };
    pub use crate::roc::{RocCurve, roc_curve};
    pub use crate::threshold::{
        ThresholdPoint, ThresholdReport, best_f1_threshold, threshold_for_recall, threshold_report,
    };
}

/// Arithmetic mean, `None` for an empty slice.
fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}
