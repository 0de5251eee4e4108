//! Scores of the predicted classes, from confusion counts: per-class precision, recall,
//! F1 and support ([`ClassMetrics`]), their macro and support-weighted [`Averages`],
//! accuracy, balanced accuracy and the Matthews correlation coefficient.

use crate::confusion::{confusion_counts, diagonal_sum, marginals};
use crate::mean;

/// Metrics of a single class (one-vs-rest).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClassMetrics {
    /// Class name.
    pub label: String,
    /// `tp / (tp + fp)`, or 0 when the class is never predicted.
    pub precision: f64,
    /// `tp / (tp + fn)`, or 0 when the class never occurs.
    pub recall: f64,
    /// Harmonic mean of precision and recall, or 0 when both are 0.
    pub f1: f64,
    /// Number of rows whose true class is this class.
    pub support: u64,
    /// One-vs-rest ROC AUC of this class's probability column; `None` when the
    /// class has no positive or no negative rows.
    pub roc_auc: Option<f64>,
}

/// Averaged precision / recall / F1 (macro or support-weighted).
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Averages {
    /// Averaged precision.
    pub precision: f64,
    /// Averaged recall.
    pub recall: f64,
    /// Averaged F1 (the average of per-class F1 scores, as in scikit-learn).
    pub f1: f64,
}

/// `num / den`, or 0 when `den == 0` (scikit-learn's `zero_division=0`).
fn ratio(num: f64, den: f64) -> f64 {
    if den == 0.0 { 0.0 } else { num / den }
}

/// Per-class metrics of row-major `k x k` confusion counts, `k = labels.len()`, with
/// `roc_auc` left `None` (see [`crate::evaluate`] for the definitions).
pub(crate) fn class_metrics(labels: &[String], counts: &[u64]) -> Vec<ClassMetrics> {
    let k = labels.len();
    let (support, predicted_as) = marginals(k, counts);
    labels
        .iter()
        .enumerate()
        .map(|(c, label)| {
            let tp = counts[c * k + c];
            let (tp_f, sup_f, pred_f) = (tp as f64, support[c] as f64, predicted_as[c] as f64);
            ClassMetrics {
                label: label.clone(),
                precision: ratio(tp_f, pred_f),
                recall: ratio(tp_f, sup_f),
                f1: ratio(2.0 * tp_f, pred_f + sup_f),
                support: support[c],
                roc_auc: None,
            }
        })
        .collect()
}

/// Unweighted mean over all classes, including those with zero support (all 0 when
/// there is no class).
pub(crate) fn macro_average(per_class: &[ClassMetrics]) -> Averages {
    averages(per_class, |_| 1.0, per_class.len() as f64)
}

/// Support-weighted mean over classes (all 0 when the total support is 0).
pub(crate) fn weighted_average(per_class: &[ClassMetrics]) -> Averages {
    let n_valid: u64 = per_class.iter().map(|m| m.support).sum();
    averages(per_class, |m| m.support as f64, n_valid as f64)
}

/// `sum(weight * metric) / total` of each metric (all 0 when `total == 0`).
fn averages(per_class: &[ClassMetrics], weight: fn(&ClassMetrics) -> f64, total: f64) -> Averages {
    if total == 0.0 {
        return Averages::default();
    }
    let wsum = |f: fn(&ClassMetrics) -> f64| {
        per_class.iter().map(|m| weight(m) * f(m)).sum::<f64>() / total
    };
    Averages {
        precision: wsum(|m| m.precision),
        recall: wsum(|m| m.recall),
        f1: wsum(|m| m.f1),
    }
}

/// Fraction of `n` rows on the diagonal of row-major `k x k` confusion counts (0 when
/// `n == 0`); rows left out of the counts count as incorrect.
pub(crate) fn accuracy(k: usize, counts: &[u64], n: usize) -> f64 {
    if n == 0 {
        0.0
    } else {
        diagonal_sum(k, counts) as f64 / n as f64
    }
}

/// `sklearn.metrics.balanced_accuracy_score(actual, predicted)` (`adjusted=False`)
/// for class indices `< k`.
///
/// The mean recall over the classes that occur in `actual`; classes that are
/// only predicted (or absent) are left out, as scikit-learn does after its
/// "y_pred contains classes not in y_true" warning. `None` for empty input
/// (scikit-learn raises).
pub fn balanced_accuracy(k: usize, actual: &[usize], predicted: &[usize]) -> Option<f64> {
    balanced_accuracy_of_counts(k, &confusion_counts(k, actual, predicted))
}

/// [`balanced_accuracy`] of row-major `k x k` confusion counts.
pub(crate) fn balanced_accuracy_of_counts(k: usize, counts: &[u64]) -> Option<f64> {
    let recalls: Vec<f64> = (0..k)
        .filter_map(|c| {
            let support: u64 = counts[c * k..(c + 1) * k].iter().sum();
            (support > 0).then(|| counts[c * k + c] as f64 / support as f64)
        })
        .collect();
    mean(&recalls)
}

/// `sklearn.metrics.matthews_corrcoef(actual, predicted)` for class indices `< k`
/// (the multiclass formula, which equals the binary phi coefficient for 2 classes).
///
/// `0.0` where scikit-learn returns 0 (the product of the two variances is 0,
/// e.g. only one class predicted or present); `None` for empty input
/// (scikit-learn raises).
pub fn matthews_corrcoef(k: usize, actual: &[usize], predicted: &[usize]) -> Option<f64> {
    mcc_of_counts(k, &confusion_counts(k, actual, predicted))
}

/// [`matthews_corrcoef`] of row-major `k x k` confusion counts. The covariances
/// are exact integers; the final product, square root and division are in
/// `f64` as in scikit-learn.
pub(crate) fn mcc_of_counts(k: usize, counts: &[u64]) -> Option<f64> {
    let wide = |v: Vec<u64>| v.into_iter().map(i128::from).collect::<Vec<_>>();
    let (t_sum, p_sum) = marginals(k, counts);
    let (t_sum, p_sum) = (wide(t_sum), wide(p_sum));
    let correct = i128::from(diagonal_sum(k, counts));
    let n: i128 = t_sum.iter().sum();
    if n == 0 {
        return None;
    }
    let dot = |x: &[i128], y: &[i128]| x.iter().zip(y).map(|(a, b)| a * b).sum::<i128>();
    let cov_ytyp = correct * n - dot(&t_sum, &p_sum);
    let cov_ypyp = n * n - dot(&p_sum, &p_sum);
    let cov_ytyt = n * n - dot(&t_sum, &t_sum);
    if cov_ypyp == 0 || cov_ytyt == 0 {
        return Some(0.0);
    }
    Some(cov_ytyp as f64 / (cov_ypyp as f64 * cov_ytyt as f64).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::assert_close;

    #[test]
    fn balanced_accuracy_like_sklearn() {
        // Docstring example: recalls 3/4 and 1/2 -> 0.625.
        assert_close(
            balanced_accuracy(2, &[0, 1, 0, 0, 1, 0], &[0, 1, 0, 0, 0, 1]).unwrap(),
            0.625,
        );
        // Class 2 is only predicted: left out -> (1/2 + 0) / 2.
        assert_close(balanced_accuracy(3, &[0, 0, 1], &[0, 2, 2]).unwrap(), 0.25);
        // A class that never occurs anywhere is ignored too.
        assert_close(balanced_accuracy(4, &[1, 1], &[1, 0]).unwrap(), 0.5);
        assert_eq!(balanced_accuracy(3, &[], &[]), None);
    }

    #[test]
    fn matthews_corrcoef_like_sklearn() {
        // Docstring example ([+1, +1, +1, -1] vs [+1, -1, +1, +1]) -> -1/3.
        assert_close(
            matthews_corrcoef(2, &[1, 1, 1, 0], &[1, 0, 1, 1]).unwrap(),
            -1.0 / 3.0,
        );
        assert_close(matthews_corrcoef(3, &[0, 1, 2], &[0, 1, 2]).unwrap(), 1.0);
        // One predicted class or one actual class: sklearn returns 0.
        assert_eq!(matthews_corrcoef(2, &[0, 0, 1], &[1, 1, 1]), Some(0.0));
        assert_eq!(matthews_corrcoef(3, &[2, 2], &[0, 1]), Some(0.0));
        assert_eq!(matthews_corrcoef(2, &[], &[]), None);
    }
}
