//! Classification metrics with scikit-learn's definitions.
//!
//! Everything here is a pure function over plain slices; no state, no I/O and
//! no dependencies beyond `std`. The definitions follow scikit-learn:
//!
//! * [`confusion_counts`] / [`ConfusionMatrix`]: `sklearn.metrics.confusion_matrix`
//!   (rows are the actual class, columns the predicted class).
//! * Per-class precision / recall / F1 and their macro and support-weighted
//!   averages: `sklearn.metrics.precision_recall_fscore_support` with
//!   `zero_division=0` and `labels=` all classes.
//! * [`roc_auc`]: binary `sklearn.metrics.roc_auc_score`; [`evaluate`] uses it
//!   one-vs-rest for `multi_class="ovr", average="macro"`.
//!
//! Class probabilities arrive as a row-major `n x k` `f32` matrix; all
//! accumulation is done in integers or `f64`.

pub mod curves;

use std::cmp::Ordering;

pub use curves::{Evaluation, evaluate_with_curves, full_report};

/// A `k x k` confusion matrix: `counts[actual * k + predicted]` is the number of
/// rows whose true class is `actual` and whose predicted class is `predicted`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ConfusionMatrix {
    /// Class names, in class-index order (`labels.len() == k`).
    pub labels: Vec<String>,
    /// Row-major counts, `counts.len() == k * k`, indexed `[actual * k + predicted]`.
    pub counts: Vec<u64>,
}

impl ConfusionMatrix {
    /// Number of classes `k` (the matrix is `k x k`).
    pub fn n(&self) -> usize {
        self.labels.len()
    }

    /// Count of rows with true class `actual` that were predicted as `predicted`.
    ///
    /// # Panics
    /// Panics if `actual >= self.n()` or `predicted >= self.n()`, like slice indexing.
    pub fn get(&self, actual: usize, predicted: usize) -> u64 {
        let n = self.n();
        assert!(
            actual < n && predicted < n,
            "confusion matrix index ({actual}, {predicted}) out of range for {n} classes"
        );
        self.counts[actual * n + predicted]
    }
}

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

/// The full evaluation report produced by [`evaluate`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Metrics {
    /// The loss supplied by the caller, passed through unchanged.
    pub loss: f64,
    /// Fraction of rows whose predicted class equals the true class (0 when there are no rows).
    pub accuracy: f64,
    /// Confusion matrix over all `k` classes.
    pub confusion_matrix: ConfusionMatrix,
    /// Per-class metrics, in class-index order.
    pub per_class: Vec<ClassMetrics>,
    /// Unweighted mean over all `k` classes (including classes with zero support).
    pub macro_avg: Averages,
    /// Support-weighted mean over classes (all zero when total support is 0).
    pub weighted: Averages,
    /// Binary (`k == 2`): AUC of class 1. Multiclass (`k > 2`): mean of the
    /// defined per-class one-vs-rest AUCs. `None` when undefined.
    pub roc_auc: Option<f64>,
    /// Mean of the per-class average precisions over the classes where it is defined.
    #[serde(default)]
    pub average_precision: Option<f64>,
    /// One-vs-rest ROC and precision-recall curves per class, in class-index order; empty
    /// unless computed ([`curves::evaluate_with_curves`]).
    #[serde(default)]
    pub curves: Vec<curves::ClassCurves>,
}

/// Builds the row-major `n_classes x n_classes` confusion counts,
/// `counts[actual * n_classes + predicted]`.
///
/// `actual` and `predicted` are paired element-wise. Never panics in release
/// builds: an entry `>= n_classes` (or a length mismatch) is a caller bug,
/// caught by a `debug_assert!` in debug builds and skipped (pairs beyond the
/// shorter slice ignored) in release builds.
pub fn confusion_counts(n_classes: usize, actual: &[usize], predicted: &[usize]) -> Vec<u64> {
    debug_assert_eq!(
        actual.len(),
        predicted.len(),
        "actual and predicted must have the same length"
    );
    let mut counts = vec![0u64; n_classes * n_classes];
    for (&a, &p) in actual.iter().zip(predicted) {
        debug_assert!(
            a < n_classes && p < n_classes,
            "class index out of range: actual {a}, predicted {p}, n_classes {n_classes}"
        );
        if a < n_classes && p < n_classes {
            counts[a * n_classes + p] += 1;
        }
    }
    counts
}

/// Index of the maximum in each row of a row-major `n x k` matrix.
///
/// Ties go to the lowest index (like `numpy.argmax`). Unlike numpy, a NaN
/// never wins over a number; a row that is entirely NaN yields 0. Returns an
/// empty vector when `k == 0`; a trailing partial row (`probs.len()` not a
/// multiple of `k`, a caller bug caught by `debug_assert!`) is ignored.
pub fn argmax_rows(probs: &[f32], k: usize) -> Vec<usize> {
    if k == 0 {
        debug_assert!(probs.is_empty(), "k == 0 with non-empty probs");
        return Vec::new();
    }
    debug_assert_eq!(probs.len() % k, 0, "probs.len() must be a multiple of k");
    probs
        .chunks_exact(k)
        .map(|row| {
            let mut best = 0;
            let mut best_val = row[0];
            for (j, &v) in row.iter().enumerate().skip(1) {
                if v > best_val || (best_val.is_nan() && !v.is_nan()) {
                    best = j;
                    best_val = v;
                }
            }
            best
        })
        .collect()
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

/// `(canonical score, is_positive)` pairs of paired slices (a length mismatch is a caller
/// bug, caught by `debug_assert!`; in release only the common prefix is used).
fn canonical_pairs(scores: &[f64], positive: &[bool]) -> Vec<(f64, bool)> {
    debug_assert_eq!(
        scores.len(),
        positive.len(),
        "scores and positive must have the same length"
    );
    scores
        .iter()
        .zip(positive)
        .map(|(&s, &p)| (canonical_score(s), p))
        .collect()
}

/// Maps `-0.0` to `0.0` and every NaN to the same NaN so that
/// [`f64::total_cmp`] groups exactly the scores scikit-learn considers tied.
fn canonical_score(s: f64) -> f64 {
    if s.is_nan() {
        f64::NAN
    } else if s == 0.0 {
        0.0
    } else {
        s
    }
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
    pairs.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
    let (mut tp, mut fp) = (0u64, 0u64);
    // Twice the (unnormalised) area: each step adds dfp * (tp_prev + tp_new).
    let mut area2: u128 = 0;
    for group in pairs.chunk_by(|a, b| a.0.total_cmp(&b.0) == Ordering::Equal) {
        let dtp = group.iter().filter(|&&(_, p)| p).count() as u64;
        let dfp = group.len() as u64 - dtp;
        area2 += u128::from(dfp) * u128::from(2 * tp + dtp);
        tp += dtp;
        fp += dfp;
    }
    debug_assert_eq!((tp, fp), (n_pos, n_neg));
    let denom = 2 * u128::from(n_pos) * u128::from(n_neg);
    Some(area2 as f64 / denom as f64)
}

/// `num / den`, or 0 when `den == 0` (scikit-learn's `zero_division=0`).
fn ratio(num: f64, den: f64) -> f64 {
    if den == 0.0 { 0.0 } else { num / den }
}

/// Computes the whole report.
///
/// * `labels`: class names; `k = labels.len()`.
/// * `actual`: true class index per row (`n = actual.len()`), each `< k`.
/// * `probs`: `n x k` row-major class probabilities (rows sum to ~1).
/// * `loss`: passed through to [`Metrics::loss`].
///
/// Predictions are [`argmax_rows`]`(probs, k)`; `accuracy = correct / n`
/// (0 when `n == 0`). Per class `c` (with `fn` the false negatives):
/// `precision = tp / (tp + fp)`, `recall = tp / (tp + fn)`,
/// `f1 = 2pr / (p + r)`, each 0 when its denominator is 0 (scikit-learn
/// `zero_division=0`; F1 is computed as the equivalent `2tp / (2tp + fp + fn)`
/// to avoid rounding); `support` = number of rows with `actual == c`;
/// `roc_auc` = one-vs-rest [`roc_auc`] of column `c` (`None` if undefined).
///
/// `macro_avg` is the unweighted mean over all `k` classes (including classes
/// with zero support); `weighted` the support-weighted mean (all 0 when the
/// total support is 0). Macro F1 is the mean of per-class F1s, not the F1 of
/// the mean precision and recall.
///
/// `roc_auc`: for `k == 2` the AUC of class 1 (score = probability of class 1,
/// scikit-learn's binary case); for `k > 2` the mean of the per-class OvR AUCs
/// over the classes where it is defined (`None` if none is); `None` for `k < 2`.
///
/// Shape mismatches and class indices `>= k` are caller bugs caught by
/// `debug_assert!`. In release builds only the first
/// `min(actual.len(), probs.len() / k)` rows are used, and rows whose true
/// class is out of range count as incorrect for accuracy but are left out of
/// the confusion matrix, the supports and the AUCs. Never panics in release.
///
/// Memory: besides the `n` predictions it allocates one reusable `n`-element
/// buffer for the AUCs, shared by all classes.
pub fn evaluate(labels: &[String], actual: &[usize], probs: &[f32], loss: f64) -> Metrics {
    let k = labels.len();
    debug_assert_eq!(
        probs.len(),
        actual.len() * k,
        "probs must be an n x k matrix with n = actual.len(), k = labels.len()"
    );
    let n = probs
        .len()
        .checked_div(k)
        .map_or(0, |rows| rows.min(actual.len()));
    let actual = &actual[..n];
    let probs = &probs[..n * k];

    let predicted = argmax_rows(probs, k);
    let counts = confusion_counts(k, actual, &predicted);
    let correct: u64 = (0..k).map(|c| counts[c * k + c]).sum();
    let accuracy = if n == 0 {
        0.0
    } else {
        correct as f64 / n as f64
    };

    // Column sums give predicted-as-c (tp + fp), row sums the support (tp + fn).
    let mut predicted_as = vec![0u64; k];
    let mut support = vec![0u64; k];
    for a in 0..k {
        for p in 0..k {
            let v = counts[a * k + p];
            support[a] += v;
            predicted_as[p] += v;
        }
    }
    let n_valid: u64 = support.iter().sum();

    let mut pairs: Vec<(f64, bool)> = Vec::new();
    let mut per_class = Vec::with_capacity(k);
    for (c, label) in labels.iter().enumerate() {
        let tp = counts[c * k + c];
        let (tp_f, sup_f, pred_f) = (tp as f64, support[c] as f64, predicted_as[c] as f64);
        let roc_auc = if k >= 2 && support[c] > 0 && support[c] < n_valid {
            pairs.clear();
            pairs.extend(
                actual
                    .iter()
                    .zip(probs.chunks_exact(k))
                    .filter(|&(&a, _)| a < k)
                    .map(|(&a, row)| (canonical_score(f64::from(row[c])), a == c)),
            );
            auc_of_pairs(&mut pairs)
        } else {
            None
        };
        per_class.push(ClassMetrics {
            label: label.clone(),
            precision: ratio(tp_f, pred_f),
            recall: ratio(tp_f, sup_f),
            f1: ratio(2.0 * tp_f, pred_f + sup_f),
            support: support[c],
            roc_auc,
        });
    }

    let mut macro_avg = Averages::default();
    let mut weighted = Averages::default();
    if k > 0 {
        let kf = k as f64;
        macro_avg = Averages {
            precision: per_class.iter().map(|m| m.precision).sum::<f64>() / kf,
            recall: per_class.iter().map(|m| m.recall).sum::<f64>() / kf,
            f1: per_class.iter().map(|m| m.f1).sum::<f64>() / kf,
        };
    }
    if n_valid > 0 {
        let total = n_valid as f64;
        let wsum = |f: fn(&ClassMetrics) -> f64| {
            per_class
                .iter()
                .map(|m| m.support as f64 * f(m))
                .sum::<f64>()
                / total
        };
        weighted = Averages {
            precision: wsum(|m| m.precision),
            recall: wsum(|m| m.recall),
            f1: wsum(|m| m.f1),
        };
    }

    let roc_auc = match k {
        0 | 1 => None,
        2 => per_class[1].roc_auc,
        _ => {
            let defined: Vec<f64> = per_class.iter().filter_map(|m| m.roc_auc).collect();
            if defined.is_empty() {
                None
            } else {
                Some(defined.iter().sum::<f64>() / defined.len() as f64)
            }
        }
    };

    Metrics {
        loss,
        accuracy,
        confusion_matrix: ConfusionMatrix {
            labels: labels.to_vec(),
            counts,
        },
        per_class,
        macro_avg,
        weighted,
        roc_auc,
        average_precision: None,
        curves: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPS: f64 = 1e-12;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= EPS
    }

    #[track_caller]
    fn assert_close(actual: f64, expected: f64) {
        assert!(close(actual, expected), "got {actual}, expected {expected}");
    }

    fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    /// One-hot-ish probability rows that make `argmax` equal `predicted`.
    fn probs_for(predicted: &[usize], k: usize) -> Vec<f32> {
        let mut probs = vec![0.1f32; predicted.len() * k];
        for (i, &p) in predicted.iter().enumerate() {
            probs[i * k + p] = 0.8;
        }
        probs
    }

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
    fn confusion_counts_row_major() {
        // actual 0 -> predicted 1 once, actual 1 -> predicted 1 twice, actual 2 -> 0 once.
        let c = confusion_counts(3, &[0, 1, 1, 2], &[1, 1, 1, 0]);
        assert_eq!(c, vec![0, 1, 0, 0, 2, 0, 1, 0, 0]);
        let m = ConfusionMatrix {
            labels: labels(&["a", "b", "c"]),
            counts: c,
        };
        assert_eq!(m.n(), 3);
        assert_eq!(m.get(0, 1), 1);
        assert_eq!(m.get(1, 1), 2);
        assert_eq!(m.get(2, 0), 1);
        assert_eq!(m.get(2, 2), 0);
    }

    #[test]
    fn confusion_counts_empty() {
        assert_eq!(confusion_counts(2, &[], &[]), vec![0; 4]);
        assert!(confusion_counts(0, &[], &[]).is_empty());
    }

    #[test]
    fn argmax_ties_go_to_lowest_index() {
        let probs = [
            0.2, 0.4, 0.4, // tie between 1 and 2 -> 1
            0.5, 0.5, 0.0, // tie between 0 and 1 -> 0
            1.0, 1.0, 1.0, // all equal -> 0
            0.1, 0.2, 0.7, // clear winner -> 2
        ];
        assert_eq!(argmax_rows(&probs, 3), vec![1, 0, 0, 2]);
    }

    #[test]
    fn argmax_nan_never_wins() {
        let nan = f32::NAN;
        let probs = [
            nan, 0.1, 0.2, // leading NaN -> 2
            0.3, nan, 0.1, // NaN in the middle -> 0
            nan, nan, nan, // all NaN -> 0
            nan, -1.0, -1.0, // NaN then a tie -> 1
        ];
        assert_eq!(argmax_rows(&probs, 3), vec![2, 0, 0, 1]);
    }

    #[test]
    fn argmax_empty() {
        assert!(argmax_rows(&[], 3).is_empty());
        assert!(argmax_rows(&[], 0).is_empty());
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
    fn evaluate_three_classes_with_never_predicted_class() {
        // actual    = [0, 0, 0, 1, 1, 2, 2]
        // predicted = [0, 0, 1, 1, 0, 0, 1]   (class 2 is never predicted)
        //
        // Confusion (rows actual, cols predicted):
        //   a: [2, 1, 0]
        //   b: [1, 1, 0]
        //   c: [1, 1, 0]
        //
        // a: tp=2 fp=2 fn=1 -> P=2/4=1/2, R=2/3, F1=2*2/(4+2+1)=4/7, support 3
        // b: tp=1 fp=2 fn=1 -> P=1/3,      R=1/2, F1=2/(2+2+1)=2/5,   support 2
        // c: tp=0 fp=0 fn=2 -> P=0 (zero_division), R=0, F1=0,       support 2
        //
        // accuracy = 3/7
        // macro:    P=(1/2+1/3+0)/3=5/18, R=(2/3+1/2+0)/3=7/18, F1=(4/7+2/5)/3=34/105
        // weighted: P=(3/2+2/3+0)/7=13/42, R=(2+1+0)/7=3/7,
        //           F1=(12/7+4/5+0)/7=88/245
        let actual = [0, 0, 0, 1, 1, 2, 2];
        let predicted = [0, 0, 1, 1, 0, 0, 1];
        let probs = probs_for(&predicted, 3);
        let names = labels(&["a", "b", "c"]);
        let m = evaluate(&names, &actual, &probs, 0.25);

        assert_eq!(m.loss, 0.25);
        assert_close(m.accuracy, 3.0 / 7.0);
        assert_eq!(m.confusion_matrix.labels, names);
        assert_eq!(m.confusion_matrix.counts, vec![2, 1, 0, 1, 1, 0, 1, 1, 0]);

        let expected = [
            ("a", 1.0 / 2.0, 2.0 / 3.0, 4.0 / 7.0, 3),
            ("b", 1.0 / 3.0, 1.0 / 2.0, 2.0 / 5.0, 2),
            ("c", 0.0, 0.0, 0.0, 2),
        ];
        assert_eq!(m.per_class.len(), 3);
        for (got, &(label, p, r, f1, support)) in m.per_class.iter().zip(&expected) {
            assert_eq!(got.label, label);
            assert_close(got.precision, p);
            assert_close(got.recall, r);
            assert_close(got.f1, f1);
            assert_eq!(got.support, support);
        }

        assert_close(m.macro_avg.precision, 5.0 / 18.0);
        assert_close(m.macro_avg.recall, 7.0 / 18.0);
        assert_close(m.macro_avg.f1, 34.0 / 105.0);
        assert_close(m.weighted.precision, 13.0 / 42.0);
        assert_close(m.weighted.recall, 3.0 / 7.0);
        assert_close(m.weighted.f1, 88.0 / 245.0);
    }

    #[test]
    fn evaluate_multiclass_macro_ovr_auc() {
        // row  actual  probs
        // r0   0       [0.6, 0.3, 0.1]
        // r1   1       [0.2, 0.5, 0.3]
        // r2   2       [0.3, 0.3, 0.4]
        // r3   0       [0.3, 0.4, 0.3]
        // r4   1       [0.1, 0.3, 0.6]
        //
        // class 0: pos {0.6, 0.3}, neg {0.2, 0.3, 0.1}
        //   0.6 beats all 3 -> 3; 0.3: win, tie (1/2), win -> 2.5  => 5.5/6 = 11/12
        // class 1: pos {0.5, 0.3}, neg {0.3, 0.3, 0.4}
        //   0.5 beats all 3 -> 3; 0.3: tie, tie, loss -> 1        => 4/6 = 2/3
        // class 2: pos {0.4}, neg {0.1, 0.3, 0.3, 0.6}
        //   wins 3 of 4                                           => 3/4
        // macro OvR = (11/12 + 8/12 + 9/12) / 3 = 7/9
        //
        // predicted = [0, 1, 2, 1, 2] -> accuracy 3/5.
        let probs = [
            0.6, 0.3, 0.1, //
            0.2, 0.5, 0.3, //
            0.3, 0.3, 0.4, //
            0.3, 0.4, 0.3, //
            0.1, 0.3, 0.6, //
        ];
        let actual = [0, 1, 2, 0, 1];
        let m = evaluate(&labels(&["x", "y", "z"]), &actual, &probs, 0.0);
        assert_close(m.accuracy, 3.0 / 5.0);
        assert_close(m.per_class[0].roc_auc.unwrap(), 11.0 / 12.0);
        assert_close(m.per_class[1].roc_auc.unwrap(), 2.0 / 3.0);
        assert_close(m.per_class[2].roc_auc.unwrap(), 3.0 / 4.0);
        assert_close(m.roc_auc.unwrap(), 7.0 / 9.0);
    }

    #[test]
    fn evaluate_multiclass_auc_skips_undefined_classes() {
        // Class 2 never occurs: its OvR AUC is None and is left out of the mean.
        // class 0: pos {0.7, 0.4}, neg {0.2, 0.5}: 0.7 wins 2, 0.4 wins 1 -> 3/4
        // class 1: pos {0.6, 0.3}, neg {0.2, 0.4}: 0.6 wins 2, 0.3 wins 1 -> 3/4
        //          (column 1 = [0.2, 0.6, 0.4, 0.3] for rows [0, 1, 0, 1])
        // mean over defined = 3/4.
        let probs = [
            0.7, 0.2, 0.1, //
            0.2, 0.6, 0.2, //
            0.4, 0.4, 0.2, //
            0.5, 0.3, 0.2, //
        ];
        let actual = [0, 1, 0, 1];
        let m = evaluate(&labels(&["a", "b", "c"]), &actual, &probs, 0.0);
        assert_close(m.per_class[0].roc_auc.unwrap(), 0.75);
        assert_close(m.per_class[1].roc_auc.unwrap(), 0.75);
        assert_eq!(m.per_class[2].roc_auc, None);
        assert_eq!(m.per_class[2].support, 0);
        assert_close(m.roc_auc.unwrap(), 0.75);
    }

    #[test]
    fn evaluate_binary_uses_class_one_auc() {
        // Same data as the sklearn doc example: P(class 1) = [0.1, 0.4, 0.35, 0.8],
        // actual = [0, 0, 1, 1] -> AUC 0.75.
        // predicted = [0, 0, 0, 1]: accuracy 3/4;
        // class 0: tp=2 fp=1 fn=0 -> P=2/3, R=1, F1=4/5;
        // class 1: tp=1 fp=0 fn=1 -> P=1,   R=1/2, F1=2/3.
        let probs = [0.9, 0.1, 0.6, 0.4, 0.65, 0.35, 0.2, 0.8];
        let m = evaluate(&labels(&["neg", "pos"]), &[0, 0, 1, 1], &probs, 0.5);
        assert_close(m.roc_auc.unwrap(), 0.75);
        assert_eq!(m.roc_auc, m.per_class[1].roc_auc);
        assert_close(m.accuracy, 0.75);
        assert_close(m.per_class[0].precision, 2.0 / 3.0);
        assert_close(m.per_class[0].recall, 1.0);
        assert_close(m.per_class[0].f1, 0.8);
        assert_close(m.per_class[1].precision, 1.0);
        assert_close(m.per_class[1].recall, 0.5);
        assert_close(m.per_class[1].f1, 2.0 / 3.0);
        assert_close(m.macro_avg.f1, (0.8 + 2.0 / 3.0) / 2.0);
    }

    #[test]
    fn evaluate_binary_single_class_has_no_auc() {
        let probs = [0.9, 0.1, 0.4, 0.6];
        let m = evaluate(&labels(&["neg", "pos"]), &[1, 1], &probs, 0.0);
        assert_eq!(m.roc_auc, None);
        assert_eq!(m.per_class[0].roc_auc, None);
        assert_eq!(m.per_class[1].roc_auc, None);
        assert_close(m.accuracy, 0.5);
    }

    #[test]
    fn evaluate_empty_input() {
        let m = evaluate(&labels(&["a", "b", "c"]), &[], &[], 1.5);
        assert_eq!(m.loss, 1.5);
        assert_eq!(m.accuracy, 0.0);
        assert_eq!(m.confusion_matrix.counts, vec![0; 9]);
        assert_eq!(m.confusion_matrix.n(), 3);
        assert_eq!(m.per_class.len(), 3);
        for c in &m.per_class {
            assert_eq!((c.precision, c.recall, c.f1, c.support), (0.0, 0.0, 0.0, 0));
            assert_eq!(c.roc_auc, None);
        }
        assert_eq!(m.macro_avg, Averages::default());
        assert_eq!(m.weighted, Averages::default());
        assert_eq!(m.roc_auc, None);

        let m = evaluate(&[], &[], &[], 0.0);
        assert_eq!(m.accuracy, 0.0);
        assert!(m.per_class.is_empty());
        assert_eq!(m.roc_auc, None);
    }
}
