//! Precision–recall: the curve with its average precision ([`PrCurve`],
//! [`precision_recall_curve`]) and the macro average precision over classes.

use crate::binary_scores::ThresholdCounts;
use crate::matrix::{class_scores, n_rows};
use crate::mean;

/// A precision–recall curve, as returned by `sklearn.metrics.precision_recall_curve`
/// (`drop_intermediate=False`), with the average precision of the same input.
///
/// `precision` and `recall` have `m + 1` entries and `thresholds` has `m`
/// (one per distinct score): point `i < m` is the rule `score >= thresholds[i]`;
/// the last point (precision 1, recall 0) has no threshold.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PrCurve {
    /// `tp / (tp + fp)` per threshold, then a final 1.
    pub precision: Vec<f64>,
    /// Decreasing `tp / n_pos` per threshold, then a final 0.
    pub recall: Vec<f64>,
    /// Increasing distinct scores.
    pub thresholds: Vec<f64>,
    /// `sklearn.metrics.average_precision_score`: `sum_i (R_i - R_{i+1}) P_i`
    /// over the full (not downsampled) curve.
    pub average_precision: f64,
}

/// `sklearn.metrics.precision_recall_curve(positive, scores)` (default
/// `drop_intermediate=False`) together with
/// `sklearn.metrics.average_precision_score(positive, scores)`.
///
/// Returns `None` when there is no positive row (including empty input).
/// scikit-learn then only warns and returns recall 1 at every threshold (and
/// an average precision of 0), which is meaningless, so it is left out. Rows
/// that are all positive give a well-defined curve (precision 1, AP 1).
pub fn precision_recall_curve(scores: &[f64], positive: &[bool]) -> Option<PrCurve> {
    precision_recall_curve_of(&ThresholdCounts::new(scores, positive))
}

/// [`precision_recall_curve`] of counts already made.
pub(crate) fn precision_recall_curve_of(c: &ThresholdCounts) -> Option<PrCurve> {
    let n_pos = c.n_pos();
    if n_pos == 0 {
        return None;
    }
    let m = c.thresholds.len();
    let mut precision = Vec::with_capacity(m + 1);
    let mut recall = Vec::with_capacity(m + 1);
    // Reverse so that thresholds increase and recall decreases.
    for i in (0..m).rev() {
        let (tp, fp) = (c.tps[i], c.fps[i]);
        precision.push(tp as f64 / (tp + fp) as f64);
        recall.push(tp as f64 / n_pos as f64);
    }
    precision.push(1.0);
    recall.push(0.0);
    let thresholds: Vec<f64> = c.thresholds.iter().rev().copied().collect();
    // Step integral: -sum(diff(recall) * precision[:-1]), clipped at 0 like sklearn.
    let sum: f64 = recall
        .windows(2)
        .zip(&precision)
        .map(|(r, &p)| (r[1] - r[0]) * p)
        .sum();
    let average_precision = (-sum).max(0.0);
    Some(PrCurve {
        precision,
        recall,
        thresholds,
        average_precision,
    })
}

/// Mean of `sklearn.metrics.average_precision_score` over the one-vs-rest
/// columns of `probs` whose class occurs in `actual` (classes without positive
/// rows have no PR curve and are left out); `None` if no class occurs.
///
/// This is the average precision of [`crate::evaluate_with_curves`] without building the
/// curves (it allocates one `n`-element column at a time), for filling
/// [`crate::Metrics::average_precision`] cheaply. scikit-learn's multiclass
/// `average_precision_score(actual, probs)` only accepts inputs where every
/// class occurs, and then equals this; for `k == 2` this is the mean over both
/// columns, not the AP of class 1 alone. Rows with a class index `>= k` are
/// left out.
pub fn macro_average_precision(actual: &[usize], probs: &[f32], k: usize) -> Option<f64> {
    let n = n_rows(actual, probs, k);
    let (actual, probs) = (&actual[..n], &probs[..n * k]);
    let mut column: (Vec<f64>, Vec<bool>) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let aps: Vec<f64> = (0..k)
        .filter_map(|c| {
            column.0.clear();
            column.1.clear();
            column.extend(class_scores(actual, probs, k, c));
            precision_recall_curve(&column.0, &column.1).map(|pr| pr.average_precision)
        })
        .collect();
    mean(&aps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{DOC_POSITIVE, DOC_SCORES, assert_all_close, assert_close};

    #[test]
    fn pr_curve_doc_example() {
        let p = precision_recall_curve(&DOC_SCORES, &DOC_POSITIVE).unwrap();
        assert_all_close(&p.precision, &[0.5, 2.0 / 3.0, 0.5, 1.0, 1.0]);
        assert_all_close(&p.recall, &[1.0, 1.0, 0.5, 0.5, 0.0]);
        assert_all_close(&p.thresholds, &[0.1, 0.35, 0.4, 0.8]);
        // 0.5 * 1 + 0.5 * 2/3 (the docstring's 0.83).
        assert_close(p.average_precision, 5.0 / 6.0);
    }

    #[test]
    fn pr_curve_ties_single_class_and_empty() {
        let p = precision_recall_curve(&[0.5; 4], &[true, false, true, false]).unwrap();
        assert_all_close(&p.precision, &[0.5, 1.0]);
        assert_all_close(&p.recall, &[1.0, 0.0]);
        assert_all_close(&p.thresholds, &[0.5]);
        assert_close(p.average_precision, 0.5);

        // All positive: precision 1 everywhere, AP 1.
        let p = precision_recall_curve(&[0.1, 0.5, 0.2], &[true; 3]).unwrap();
        assert_all_close(&p.precision, &[1.0; 4]);
        assert_all_close(&p.recall, &[1.0, 2.0 / 3.0, 1.0 / 3.0, 0.0]);
        assert_close(p.average_precision, 1.0);

        // No positive rows: sklearn only warns (recall set to 1); we return None.
        assert_eq!(precision_recall_curve(&[0.1, 0.5], &[false, false]), None);
        assert_eq!(precision_recall_curve(&[], &[]), None);
    }
}
