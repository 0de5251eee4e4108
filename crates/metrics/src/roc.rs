//! ROC: the curve ([`RocCurve`], [`roc_curve`]) and its area ([`roc_auc`], also one-vs-rest
//! per class and averaged over classes for [`crate::evaluate`]).

use crate::binary_scores::{ThresholdCounts, canonical_pairs, canonical_score, tie_groups};
use crate::matrix::class_scores;
use crate::{ClassMetrics, mean};

/// A ROC curve, as returned by `sklearn.metrics.roc_curve` (`drop_intermediate=True`).
///
/// All three vectors have the same length (at least 2). Point `i` is the
/// false / true positive rate of the rule `score >= thresholds[i]`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RocCurve {
    /// Increasing false positive rates, from 0 to 1.
    pub fpr: Vec<f64>,
    /// Increasing true positive rates, from 0 to 1.
    pub tpr: Vec<f64>,
    /// Decreasing thresholds; `thresholds[0]` is `f64::INFINITY` (the point
    /// (0, 0), nothing predicted positive). Note that `serde_json` writes a
    /// non-finite float as `null`.
    pub thresholds: Vec<f64>,
}

/// `sklearn.metrics.roc_curve(positive, scores)` (default `drop_intermediate=True`).
///
/// Points are one per distinct score (descending thresholds), preceded by
/// `(0, 0)` at threshold `+inf`; interior points where neither the false nor
/// the true positive count has a corner (second difference 0) are dropped,
/// exactly as scikit-learn does (only when there are more than 2 distinct scores).
///
/// Returns `None` when there are no positive or no negative rows (including
/// empty input): there scikit-learn returns NaN rates (or raises).
pub fn roc_curve(scores: &[f64], positive: &[bool]) -> Option<RocCurve> {
    roc_curve_of(&ThresholdCounts::new(scores, positive))
}

/// [`roc_curve`] of counts already made.
pub(crate) fn roc_curve_of(c: &ThresholdCounts) -> Option<RocCurve> {
    let (n_pos, n_neg) = (c.n_pos(), c.n_neg());
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let m = c.thresholds.len();
    let second_diff = |v: &[u64], i: usize| v[i + 1] as i128 - 2 * v[i] as i128 + v[i - 1] as i128;
    let keep = |i: usize| {
        m <= 2 || i == 0 || i == m - 1 || second_diff(&c.fps, i) != 0 || second_diff(&c.tps, i) != 0
    };
    let mut roc = RocCurve {
        fpr: vec![0.0],
        tpr: vec![0.0],
        thresholds: vec![f64::INFINITY],
    };
    for i in (0..m).filter(|&i| keep(i)) {
        roc.fpr.push(c.fps[i] as f64 / n_neg as f64);
        roc.tpr.push(c.tps[i] as f64 / n_pos as f64);
        roc.thresholds.push(c.thresholds[i]);
    }
    Some(roc)
}

/// Binary ROC AUC of `scores` for the rows flagged in `positive`, exactly as
/// `sklearn.metrics.roc_auc_score(positive, scores)`.
///
/// Ties are handled like scikit-learn: the ROC curve has one point per
/// distinct score and the area is the trapezoidal rule over those points,
/// which equals the Mann–Whitney U statistic with average ranks divided by
/// `n_pos * n_neg` (a positive/negative pair with equal scores counts 1/2).
/// The area is accumulated exactly in integers and divided once at the end.
/// Runs in `O(n log n)` (one sort).
///
/// Returns `None` when there are no positive or no negative rows (where
/// scikit-learn raises). `-0.0` and `0.0` are treated as equal; NaN scores
/// (which scikit-learn rejects) are treated as equal to each other and larger
/// than every number. A length mismatch is a caller bug (`debug_assert!`);
/// in release only the common prefix is used.
pub fn roc_auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    auc_of_pairs(&mut canonical_pairs(scores, positive))
}

/// [`roc_auc`] of counts already made: the same exact integer area as
/// [`auc_of_pairs`], walking the cumulative counts instead of the tie groups.
pub(crate) fn roc_auc_of(c: &ThresholdCounts) -> Option<f64> {
    let (n_pos, n_neg) = (c.n_pos(), c.n_neg());
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let (mut tp, mut fp) = (0u64, 0u64);
    let mut area2: u128 = 0;
    for (&tp_new, &fp_new) in c.tps.iter().zip(&c.fps) {
        area2 += u128::from(fp_new - fp) * u128::from(tp + tp_new);
        (tp, fp) = (tp_new, fp_new);
    }
    let denom = 2 * u128::from(n_pos) * u128::from(n_neg);
    Some(area2 as f64 / denom as f64)
}

/// AUC of `(canonical score, is_positive)` pairs; sorts `pairs` in place.
fn auc_of_pairs(pairs: &mut [(f64, bool)]) -> Option<f64> {
    let n_pos = pairs.iter().filter(|&&(_, p)| p).count() as u64;
    let n_neg = pairs.len() as u64 - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    // Descending by score: walking down the thresholds traces the ROC curve
    // from (0, 0) to (1, 1), one point per distinct score.
    let (mut tp, mut fp) = (0u64, 0u64);
    // Twice the (unnormalised) area: each step adds dfp * (tp_prev + tp_new).
    let mut area2: u128 = 0;
    for (_, dtp, dfp) in tie_groups(pairs) {
        area2 += u128::from(dfp) * u128::from(2 * tp + dtp);
        tp += dtp;
        fp += dfp;
    }
    debug_assert_eq!((tp, fp), (n_pos, n_neg));
    let denom = 2 * u128::from(n_pos) * u128::from(n_neg);
    Some(area2 as f64 / denom as f64)
}

/// Sets each class's `roc_auc` to the one-vs-rest [`roc_auc`] of its probability column
/// (`probs` is `n x k` with `k = per_class.len()`, `actual` the true class per row):
/// `None` when the class has no positive or no negative row. Rows with a class `>= k`
/// are left out. One `n`-element buffer is reused for all classes.
pub(crate) fn set_one_vs_rest_aucs(
    per_class: &mut [ClassMetrics],
    actual: &[usize],
    probs: &[f32],
) {
    let k = per_class.len();
    let n_valid: u64 = per_class.iter().map(|m| m.support).sum();
    let mut pairs: Vec<(f64, bool)> = Vec::new();
    for (c, m) in per_class.iter_mut().enumerate() {
        m.roc_auc = if k >= 2 && m.support > 0 && m.support < n_valid {
            pairs.clear();
            pairs.extend(class_scores(actual, probs, k, c).map(|(s, p)| (canonical_score(s), p)));
            auc_of_pairs(&mut pairs)
        } else {
            None
        };
    }
}

/// The report's single ROC AUC ([`crate::Metrics::roc_auc`]): for two classes the AUC
/// of class 1, for more the mean of the defined per-class AUCs; `None` when undefined.
pub(crate) fn overall_roc_auc(per_class: &[ClassMetrics]) -> Option<f64> {
    match per_class.len() {
        0 | 1 => None,
        2 => per_class[1].roc_auc,
        _ => mean(
            &per_class
                .iter()
                .filter_map(|m| m.roc_auc)
                .collect::<Vec<_>>(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{DOC_POSITIVE, DOC_SCORES, assert_all_close, assert_close};

    /// O(n^2) Mann–Whitney reference: mean over (pos, neg) pairs of
    /// 1 if pos > neg, 1/2 if equal, 0 otherwise.
    fn brute_auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
        let mut wins = 0.0;
        let mut pairs = 0u64;
        for (i, &si) in scores.iter().enumerate() {
            if !positive[i] {
                continue;
            }
            for (j, &sj) in scores.iter().enumerate() {
                if positive[j] {
                    continue;
                }
                pairs += 1;
                if si > sj {
                    wins += 1.0;
                } else if si == sj {
                    wins += 0.5;
                }
            }
        }
        (pairs > 0).then(|| wins / pairs as f64)
    }

    #[test]
    fn auc_sklearn_doc_example() {
        // Pairs (pos, neg): 0.35>0.1 win, 0.35<0.4 loss, 0.8>0.1 win, 0.8>0.4 win
        // -> 3/4 = 0.75 (the example in sklearn's roc_auc_score docs).
        let auc = roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]);
        assert_close(auc.unwrap(), 0.75);
    }

    #[test]
    fn auc_with_ties_across_classes() {
        // positives {0.5, 0.9}, negatives {0.5, 0.2}.
        // 0.5 vs 0.5 tie -> 0.5, 0.5 > 0.2 -> 1, 0.9 beats both -> 2.
        // (0.5 + 1 + 2) / (2 * 2) = 3.5 / 4 = 0.875.
        let auc = roc_auc(&[0.5, 0.5, 0.2, 0.9], &[true, false, false, true]);
        assert_close(auc.unwrap(), 0.875);

        // Every score tied: every pair contributes 1/2 -> 0.5.
        let auc = roc_auc(&[0.3; 5], &[true, false, true, false, false]);
        assert_close(auc.unwrap(), 0.5);

        // A tie group mixing 2 positives and 1 negative at 0.6 above a negative at 0.1:
        // positives {0.6, 0.6}, negatives {0.6, 0.1}: each positive 0.5 + 1 = 1.5
        // -> 3 / 4 = 0.75.
        let auc = roc_auc(&[0.6, 0.6, 0.6, 0.1], &[true, true, false, false]);
        assert_close(auc.unwrap(), 0.75);

        // -0.0 and 0.0 are the same threshold (tie): 0.5 / 1.
        let auc = roc_auc(&[-0.0, 0.0], &[true, false]);
        assert_close(auc.unwrap(), 0.5);
    }

    #[test]
    fn auc_perfect_and_inverted() {
        assert_close(
            roc_auc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]).unwrap(),
            1.0,
        );
        assert_close(
            roc_auc(&[0.9, 0.8, 0.2, 0.1], &[false, false, true, true]).unwrap(),
            0.0,
        );
    }

    #[test]
    fn auc_undefined_for_single_class() {
        assert_eq!(roc_auc(&[0.1, 0.9, 0.5], &[true, true, true]), None);
        assert_eq!(roc_auc(&[0.1, 0.9, 0.5], &[false, false, false]), None);
        assert_eq!(roc_auc(&[], &[]), None);
    }

    #[test]
    fn auc_matches_brute_force_mann_whitney() {
        // Deterministic LCG; scores quantised to 7 levels so there are many ties.
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            state >> 33
        };
        for round in 0..50 {
            let n = 1 + (round * 7) % 60;
            let scores: Vec<f64> = (0..n).map(|_| (next() % 7) as f64 / 6.0).collect();
            let positive: Vec<bool> = (0..n).map(|_| next() % 3 == 0).collect();
            let fast = roc_auc(&scores, &positive);
            let slow = brute_auc(&scores, &positive);
            match (fast, slow) {
                (Some(a), Some(b)) => assert_close(a, b),
                (None, None) => {}
                other => panic!("mismatch {other:?} for n={n}"),
            }
        }
    }

    #[test]
    fn roc_curve_doc_example() {
        let r = roc_curve(&DOC_SCORES, &DOC_POSITIVE).unwrap();
        assert_all_close(&r.fpr, &[0.0, 0.0, 0.5, 0.5, 1.0]);
        assert_all_close(&r.tpr, &[0.0, 0.5, 0.5, 1.0, 1.0]);
        assert_all_close(&r.thresholds, &[f64::INFINITY, 0.8, 0.4, 0.35, 0.1]);
    }

    #[test]
    fn roc_curve_drops_collinear_points() {
        // tps = [1, 2, 2, 2], fps = [0, 0, 1, 2]: the point at score 2 lies on the
        // segment from (0, 1) to (1, 1) and is dropped (sklearn: thresholds [inf, 4, 3, 1]).
        let r = roc_curve(&[4.0, 3.0, 2.0, 1.0], &[true, true, false, false]).unwrap();
        assert_all_close(&r.fpr, &[0.0, 0.0, 0.0, 1.0]);
        assert_all_close(&r.tpr, &[0.0, 0.5, 1.0, 1.0]);
        assert_all_close(&r.thresholds, &[f64::INFINITY, 4.0, 3.0, 1.0]);
    }

    #[test]
    fn roc_curve_groups_ties() {
        // A tie at 0.9 between a positive and a negative is one diagonal step.
        let r = roc_curve(
            &[0.9, 0.9, 0.5, 0.3, 0.1],
            &[true, false, true, false, false],
        )
        .unwrap();
        assert_all_close(&r.fpr, &[0.0, 1.0 / 3.0, 1.0 / 3.0, 1.0]);
        assert_all_close(&r.tpr, &[0.0, 0.5, 1.0, 1.0]);
        assert_all_close(&r.thresholds, &[f64::INFINITY, 0.9, 0.5, 0.1]);

        // All scores tied: (0, 0) then (1, 1).
        let r = roc_curve(&[0.5; 4], &[true, false, true, false]).unwrap();
        assert_all_close(&r.fpr, &[0.0, 1.0]);
        assert_all_close(&r.tpr, &[0.0, 1.0]);
        assert_all_close(&r.thresholds, &[f64::INFINITY, 0.5]);

        // -0.0 and 0.0 are one threshold.
        let r = roc_curve(&[-0.0, 0.0], &[true, false]).unwrap();
        assert_eq!(r.thresholds.len(), 2);
    }

    #[test]
    fn roc_curve_undefined_for_single_class_and_empty() {
        assert_eq!(roc_curve(&[0.1, 0.9], &[true, true]), None);
        assert_eq!(roc_curve(&[0.1, 0.9], &[false, false]), None);
        assert_eq!(roc_curve(&[], &[]), None);
    }
}
