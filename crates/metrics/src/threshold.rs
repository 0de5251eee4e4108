//! The binary threshold report: operating points ([`ThresholdPoint`]) chosen among the
//! precision–recall curve's thresholds, the best-F1 one and the one reaching a recall.

use crate::binary_scores::ThresholdCounts;
use crate::matrix::class_column;

/// One operating point of a binary classifier, rule `score >= threshold`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ThresholdPoint {
    /// The threshold (one of [`crate::curves::PrCurve::thresholds`]).
    pub threshold: f64,
    /// `tp / (tp + fp)` (never 0/0: at least one row scores `>= threshold`).
    pub precision: f64,
    /// `tp / (tp + fn)`.
    pub recall: f64,
    /// `2PR / (P + R)`, computed as the equal `2tp / (2tp + fp + fn)` (0 when `tp == 0`).
    pub f1: f64,
    /// 2x2 confusion counts `[tn, fp, fn, tp]`: the same row-major
    /// `[actual * 2 + predicted]` layout as [`crate::ConfusionMatrix::counts`]
    /// with 0 = negative and 1 = positive (also `confusion_matrix(...).ravel()`).
    pub confusion: [u64; 4],
}

/// Binary operating points on the scores of class 1.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ThresholdReport {
    /// The class the report is about (its probability is the score): 1 unless asked.
    pub positive: usize,
    /// The threshold maximising F1 ([`best_f1_threshold`]).
    pub best_f1: Option<ThresholdPoint>,
    /// The requested recall, if any.
    pub target_recall: Option<f64>,
    /// The highest threshold reaching `target_recall` ([`threshold_for_recall`]).
    pub at_target_recall: Option<ThresholdPoint>,
}

impl ThresholdCounts {
    /// The operating point at (descending) index `i`.
    fn point(&self, i: usize) -> ThresholdPoint {
        let (tp, fp) = (self.tps[i], self.fps[i]);
        let (n_pos, n_neg) = (self.n_pos(), self.n_neg());
        let fn_ = n_pos - tp;
        let tn = n_neg - fp;
        let f1_den = 2 * tp + fp + fn_;
        ThresholdPoint {
            threshold: self.thresholds[i],
            precision: tp as f64 / (tp + fp) as f64,
            recall: tp as f64 / n_pos as f64,
            f1: if tp == 0 {
                0.0
            } else {
                (2 * tp) as f64 / f1_den as f64
            },
            confusion: [tn, fp, fn_, tp],
        }
    }
}

/// The threshold (one of [`crate::curves::precision_recall_curve`]'s thresholds) that
/// maximises F1 for the rule `score >= threshold`.
///
/// F1 values are compared exactly (as fractions `2tp / (2tp + fp + fn)`);
/// ties go to the highest threshold (the fewest positive predictions).
/// Returns `None` when there is no positive row (including empty input).
pub fn best_f1_threshold(scores: &[f64], positive: &[bool]) -> Option<ThresholdPoint> {
    let c = ThresholdCounts::new(scores, positive);
    let n_pos = c.n_pos();
    if n_pos == 0 {
        return None;
    }
    // F1 = 2tp / (tp + fp + n_pos); `c.tps` is descending by threshold.
    let mut best = 0;
    for i in 1..c.thresholds.len() {
        let (num_b, den_b) = (
            c.tps[best] as u128,
            (c.tps[best] + c.fps[best] + n_pos) as u128,
        );
        let (num_i, den_i) = (c.tps[i] as u128, (c.tps[i] + c.fps[i] + n_pos) as u128);
        if num_i * den_b > num_b * den_i {
            best = i;
        }
    }
    Some(c.point(best))
}

/// The highest threshold (one of [`crate::curves::precision_recall_curve`]'s thresholds)
/// whose recall `tp / n_pos` (as the `f64` scikit-learn computes) is
/// `>= target_recall`.
///
/// Returns `None` when there is no positive row, or no threshold reaches the
/// target (`target_recall > 1` or NaN). Any `target_recall <= 0` gives the
/// highest threshold.
pub fn threshold_for_recall(
    scores: &[f64],
    positive: &[bool],
    target_recall: f64,
) -> Option<ThresholdPoint> {
    let c = ThresholdCounts::new(scores, positive);
    let n_pos = c.n_pos();
    if n_pos == 0 {
        return None;
    }
    (0..c.thresholds.len())
        .find(|&i| c.tps[i] as f64 / n_pos as f64 >= target_recall)
        .map(|i| c.point(i))
}

/// Operating points on the probability of class `positive` (a row is positive when its
/// probability is `>=` the threshold): [`best_f1_threshold`] and, with `target_recall`,
/// [`threshold_for_recall`].
pub fn threshold_report(
    actual: &[usize],
    probs: &[f32],
    k: usize,
    positive: usize,
    target_recall: Option<f64>,
) -> ThresholdReport {
    let (scores, is_positive) = class_column(actual, probs, k, positive);
    ThresholdReport {
        positive,
        best_f1: best_f1_threshold(&scores, &is_positive),
        target_recall,
        at_target_recall: target_recall
            .and_then(|t| threshold_for_recall(&scores, &is_positive, t)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{DOC_POSITIVE, DOC_SCORES, assert_close};

    // scores descending 0.9, 0.8, 0.7, 0.6 with positives at 0.9 and 0.6:
    // F1 = 2/3, 1/2, 2/5, 2/3 -> a tie between 0.9 and 0.6.
    const TIE_SCORES: [f64; 4] = [0.7, 0.9, 0.6, 0.8];
    const TIE_POSITIVE: [bool; 4] = [false, true, true, false];

    #[test]
    fn best_f1_ties_go_to_the_highest_threshold() {
        let p = best_f1_threshold(&TIE_SCORES, &TIE_POSITIVE).unwrap();
        assert_eq!(p.threshold, 0.9);
        assert_close(p.precision, 1.0);
        assert_close(p.recall, 0.5);
        assert_close(p.f1, 2.0 / 3.0);
        assert_eq!(p.confusion, [2, 0, 1, 1]); // tn, fp, fn, tp

        // Doc example: F1 at 0.1, 0.35, 0.4, 0.8 = 2/3, 4/5, 1/2, 2/3 -> 0.35.
        let p = best_f1_threshold(&DOC_SCORES, &DOC_POSITIVE).unwrap();
        assert_eq!(p.threshold, 0.35);
        assert_close(p.f1, 0.8);
        assert_eq!(p.confusion, [1, 1, 0, 2]);

        assert_eq!(best_f1_threshold(&[0.3, 0.4], &[false, false]), None);
        assert_eq!(best_f1_threshold(&[], &[]), None);
    }

    #[test]
    fn threshold_for_recall_picks_the_highest_reaching_threshold() {
        let at = |t| threshold_for_recall(&TIE_SCORES, &TIE_POSITIVE, t).map(|p| p.threshold);
        assert_eq!(at(0.0), Some(0.9));
        assert_eq!(at(0.5), Some(0.9));
        assert_eq!(at(0.6), Some(0.6));
        assert_eq!(at(1.0), Some(0.6));
        assert_eq!(at(1.5), None);
        assert_eq!(at(f64::NAN), None);
        let p = threshold_for_recall(&TIE_SCORES, &TIE_POSITIVE, 1.0).unwrap();
        assert_eq!(p.confusion, [0, 2, 0, 2]);
        assert_close(p.precision, 0.5);
        assert_close(p.f1, 2.0 / 3.0);
        assert_eq!(threshold_for_recall(&[0.2], &[false], 0.5), None);
    }
}
