//! The report assembler: [`evaluate`] builds [`Metrics`] from the classification and
//! ROC scores, [`evaluate_with_curves`] adds the curves, and [`full_report`] gathers
//! everything into an [`Evaluation`].

use crate::binary_scores::{ThresholdCounts, canonical_score};
use crate::classification::{
    accuracy, balanced_accuracy_of_counts, class_metrics, macro_average, mcc_of_counts,
    weighted_average,
};
use crate::confusion::{ConfusionMatrix, confusion_counts};
use crate::curves::{PrCurve, RocCurve, ThresholdReport};
use crate::matrix::{argmax_rows, class_scores, n_rows};
use crate::precision_recall::precision_recall_curve_of;
use crate::probability::{brier_score, log_loss};
use crate::roc::{overall_roc_auc, roc_auc_of, roc_curve_of, set_one_vs_rest_aucs};
use crate::threshold::threshold_report;
use crate::{Averages, ClassMetrics, mean};

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
    /// unless computed ([`evaluate_with_curves`]).
    #[serde(default)]
    pub curves: Vec<ClassCurves>,
}

/// One class's one-vs-rest curves (score = that class's probability column).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClassCurves {
    /// Class name.
    pub label: String,
    /// `None` when the class has no positive or no negative rows.
    pub roc: Option<RocCurve>,
    /// `None` when the class has no positive rows.
    pub pr: Option<PrCurve>,
}

/// Everything [`full_report`] computes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Evaluation {
    /// [`evaluate_with_curves`]: the report of [`evaluate`] with the
    /// one-vs-rest curves of every class and the macro average precision.
    pub metrics: Metrics,
    /// [`crate::curves::balanced_accuracy`] of the argmax predictions.
    pub balanced_accuracy: Option<f64>,
    /// [`crate::curves::matthews_corrcoef`] of the argmax predictions.
    pub mcc: Option<f64>,
    /// [`log_loss`] of the probabilities.
    pub log_loss: Option<f64>,
    /// [`brier_score`] of the probabilities.
    pub brier: Option<f64>,
    /// `k == 2` only: operating points for class 1 (score = `probs[:, 1]`).
    pub threshold_report: Option<ThresholdReport>,
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
/// `roc_auc` = one-vs-rest [`crate::roc_auc`] of column `c` (`None` if undefined).
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
    let n = n_rows(actual, probs, k);
    let (actual, probs) = (&actual[..n], &probs[..n * k]);

    let predicted = argmax_rows(probs, k);
    let counts = confusion_counts(k, actual, &predicted);
    let mut m = counted(labels, counts, loss, n);
    set_one_vs_rest_aucs(&mut m.per_class, actual, probs);
    m.roc_auc = overall_roc_auc(&m.per_class);
    m
}

/// The metrics of confusion counts over `n` rows (rows left out of the counts count as
/// incorrect), the probability-based ones left `None`.
fn counted(labels: &[String], counts: Vec<u64>, loss: f64, n: usize) -> Metrics {
    let k = labels.len();
    let per_class = class_metrics(labels, &counts);
    Metrics {
        loss,
        accuracy: accuracy(k, &counts, n),
        macro_avg: macro_average(&per_class),
        weighted: weighted_average(&per_class),
        roc_auc: None,
        confusion_matrix: ConfusionMatrix {
            labels: labels.to_vec(),
            counts,
        },
        per_class,
        average_precision: None,
        curves: Vec::new(),
    }
}

/// The metrics that need only the confusion counts (row-major `k x k`, actual by
/// predicted) and the loss: what [`evaluate`] gives of the same predictions, with the
/// probability-based ones (`roc_auc`, every class's AUC, `average_precision`, curves)
/// left `None`. For outputs reduced where they were made (a training epoch's, on the
/// device), without the scores themselves.
pub fn evaluate_counts(labels: &[String], counts: Vec<u64>, loss: f64) -> Metrics {
    debug_assert_eq!(counts.len(), labels.len().pow(2), "k x k confusion counts");
    let n = counts.iter().sum::<u64>() as usize;
    counted(labels, counts, loss, n)
}

/// [`evaluate`] plus, per class, the one-vs-rest [`crate::curves::roc_curve`] and
/// [`crate::curves::precision_recall_curve`] of its probability column (`Metrics::curves`, not
/// downsampled), and their macro average precision (`Metrics::average_precision`: the
/// mean over the classes whose PR curve is defined).
pub fn evaluate_with_curves(
    labels: &[String],
    actual: &[usize],
    probs: &[f32],
    loss: f64,
) -> Metrics {
    let k = labels.len();
    let n = n_rows(actual, probs, k);
    let (actual, probs) = (&actual[..n], &probs[..n * k]);
    let predicted = argmax_rows(probs, k);
    let mut metrics = counted(labels, confusion_counts(k, actual, &predicted), loss, n);
    // One sort per class serves its AUC and both of its curves.
    let mut pairs: Vec<(f64, bool)> = Vec::with_capacity(n);
    metrics.curves = labels
        .iter()
        .enumerate()
        .map(|(c, label)| {
            pairs.clear();
            pairs.extend(class_scores(actual, probs, k, c).map(|(s, p)| (canonical_score(s), p)));
            let counts = ThresholdCounts::of_pairs(&mut pairs);
            metrics.per_class[c].roc_auc = roc_auc_of(&counts);
            ClassCurves {
                label: label.clone(),
                roc: roc_curve_of(&counts),
                pr: precision_recall_curve_of(&counts),
            }
        })
        .collect();
    metrics.roc_auc = overall_roc_auc(&metrics.per_class);
    let aps: Vec<f64> = metrics
        .curves
        .iter()
        .filter_map(|c| c.pr.as_ref().map(|pr| pr.average_precision))
        .collect();
    metrics.average_precision = mean(&aps);
    metrics
}

/// The full report: [`evaluate`] plus curves, scores and (binary) operating points.
///
/// * `labels`: class names, `k = labels.len()`; `actual`: true class per row;
///   `probs`: `n x k` row-major probabilities; `loss`: passed to [`Metrics::loss`].
/// * `curves[c]`: [`crate::curves::roc_curve`] and [`crate::curves::precision_recall_curve`] of column `c`
///   against `actual == c` (every class, also for `k == 2`). Curves are not
///   downsampled; see [`Metrics::downsample_curves`].
/// * `metrics.average_precision`:
///   [`crate::curves::macro_average_precision`], mean AP over classes with a defined PR curve.
///   (scikit-learn's multiclass `average_precision_score` only accepts inputs
///   where every class occurs, and then it is the same mean; for `k == 2`
///   this is the mean over both columns, not the AP of class 1 alone, which is
///   `curves[1].pr`.)
/// * `balanced_accuracy`, `mcc`: of the argmax predictions (as in `evaluate`).
/// * `log_loss`, `brier`: [`log_loss`] and [`brier_score`].
/// * `threshold_report` (`k == 2` only): [`crate::curves::best_f1_threshold`] and, when
///   `target_recall` is given, [`crate::curves::threshold_for_recall`] on column 1.
///
/// Rows are truncated like `evaluate` (`min(actual.len(), probs.len() / k)`);
/// rows with a class index `>= k` (a caller bug) are left out of the curves,
/// balanced accuracy and MCC, and make log loss and Brier score `None`.
pub fn full_report(
    labels: &[String],
    actual: &[usize],
    probs: &[f32],
    loss: f64,
    target_recall: Option<f64>,
) -> Evaluation {
    full_report_for(labels, actual, probs, loss, 1, target_recall)
}

/// [`full_report`] with the threshold report about class `positive` (two classes only).
pub fn full_report_for(
    labels: &[String],
    actual: &[usize],
    probs: &[f32],
    loss: f64,
    positive: usize,
    target_recall: Option<f64>,
) -> Evaluation {
    let k = labels.len();
    let n = n_rows(actual, probs, k);
    let (actual, probs) = (&actual[..n], &probs[..n * k]);
    let metrics = evaluate_with_curves(labels, actual, probs, loss);
    let counts = &metrics.confusion_matrix.counts;
    let threshold_report =
        (k == 2).then(|| threshold_report(actual, probs, k, positive, target_recall));

    Evaluation {
        balanced_accuracy: balanced_accuracy_of_counts(k, counts),
        mcc: mcc_of_counts(k, counts),
        log_loss: log_loss(actual, probs, k),
        brier: brier_score(actual, probs, k),
        metrics,
        threshold_report,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::curves::{
        DEFAULT_MAX_CURVE_POINTS, best_f1_threshold, brier_score, macro_average_precision,
        precision_recall_curve, roc_curve, threshold_for_recall,
    };
    use crate::matrix::class_column;
    use crate::test_support::{DOC_SCORES, assert_close, labels, named};

    /// One-hot-ish probability rows that make `argmax` equal `predicted`.
    fn probs_for(predicted: &[usize], k: usize) -> Vec<f32> {
        let mut probs = vec![0.1f32; predicted.len() * k];
        for (i, &p) in predicted.iter().enumerate() {
            probs[i * k + p] = 0.8;
        }
        probs
    }

    #[test]
    fn curves_share_one_sort_and_change_nothing_evaluate_gives() {
        // Scores quantised to 5 levels (many ties) over 4 classes, one of them absent.
        let (n, k) = (200, 4);
        let actual: Vec<usize> = (0..n).map(|i| (i * 7 % 11) % 3).collect();
        let probs: Vec<f32> = (0..n * k)
            .map(|i| ((i * 13 % 17) % 5) as f32 / 4.0)
            .collect();
        let names = labels(k);
        let with = evaluate_with_curves(&names, &actual, &probs, 0.5);
        let plain = evaluate(&names, &actual, &probs, 0.5);
        assert_eq!(with.per_class, plain.per_class);
        assert_eq!(with.roc_auc, plain.roc_auc);
        assert_eq!(with.confusion_matrix, plain.confusion_matrix);
        for c in 0..k {
            let (scores, positive) = class_column(&actual, &probs, k, c);
            assert_eq!(with.curves[c].roc, roc_curve(&scores, &positive));
            assert_eq!(
                with.curves[c].pr,
                precision_recall_curve(&scores, &positive)
            );
        }
        assert!(with.curves[3].roc.is_none() && with.per_class[3].roc_auc.is_none());
    }

    #[test]
    fn counts_give_what_evaluate_gives_less_the_probability_metrics() {
        let actual = [0, 0, 0, 1, 1, 2, 2, 2, 1];
        let predicted = [0, 0, 1, 1, 0, 0, 1, 2, 1];
        let names = labels(3);
        let full = evaluate(&names, &actual, &probs_for(&predicted, 3), 0.25);
        let counted = evaluate_counts(&names, confusion_counts(3, &actual, &predicted), 0.25);
        let mut want = full.clone();
        want.roc_auc = None;
        for c in &mut want.per_class {
            c.roc_auc = None;
        }
        assert_eq!(counted, want);
        assert!(
            full.roc_auc.is_some(),
            "the full report has the AUC counts cannot give"
        );
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
        let names = named(&["a", "b", "c"]);
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
        let m = evaluate(&named(&["x", "y", "z"]), &actual, &probs, 0.0);
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
        let m = evaluate(&named(&["a", "b", "c"]), &actual, &probs, 0.0);
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
        let m = evaluate(&named(&["neg", "pos"]), &[0, 0, 1, 1], &probs, 0.5);
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
        let m = evaluate(&named(&["neg", "pos"]), &[1, 1], &probs, 0.0);
        assert_eq!(m.roc_auc, None);
        assert_eq!(m.per_class[0].roc_auc, None);
        assert_eq!(m.per_class[1].roc_auc, None);
        assert_close(m.accuracy, 0.5);
    }

    #[test]
    fn evaluate_empty_input() {
        let m = evaluate(&named(&["a", "b", "c"]), &[], &[], 1.5);
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

    #[test]
    fn nan_scores_do_not_panic() {
        let scores = [f64::NAN, 0.3, f64::NAN, 0.1];
        let positive = [true, false, false, true];
        let r = roc_curve(&scores, &positive).unwrap();
        // NaN ranks above every number: it is the first finite-rank threshold.
        assert!(r.thresholds[1].is_nan());
        let p = precision_recall_curve(&scores, &positive).unwrap();
        assert!(p.thresholds.last().unwrap().is_nan());
        assert!(best_f1_threshold(&scores, &positive).is_some());
        assert!(threshold_for_recall(&scores, &positive, 0.5).is_some());
        let probs = [f32::NAN, 0.5, 0.5, 0.5];
        assert_eq!(log_loss(&[0, 1], &probs, 2), None);
        assert_eq!(brier_score(&[0, 1], &[0.5, f32::NAN, 0.5, 0.5], 2), None);
        let e = full_report(&labels(2), &[0, 1], &probs, 0.0, Some(0.5));
        assert_eq!(e.log_loss, None);
    }

    #[test]
    fn full_report_binary() {
        // The doc example as two columns; class 1 is the positive class.
        let probs: Vec<f32> = DOC_SCORES
            .iter()
            .flat_map(|&s| [1.0 - s as f32, s as f32])
            .collect();
        let actual = [0, 0, 1, 1];
        let e = full_report(&labels(2), &actual, &probs, 0.5, Some(1.0));
        assert_eq!(e.metrics.loss, 0.5);
        assert_eq!(e.metrics.curves.len(), 2);
        assert!(
            e.metrics
                .curves
                .iter()
                .all(|c| c.roc.is_some() && c.pr.is_some())
        );
        let ap1 = e.metrics.curves[1].pr.as_ref().unwrap().average_precision;
        assert!((ap1 - 5.0 / 6.0).abs() < 1e-6);
        let ap0 = e.metrics.curves[0].pr.as_ref().unwrap().average_precision;
        assert_close(e.metrics.average_precision.unwrap(), (ap0 + ap1) / 2.0);
        assert_eq!(
            macro_average_precision(&actual, &probs, 2),
            e.metrics.average_precision
        );
        let t = e.threshold_report.as_ref().unwrap();
        assert_eq!(t.target_recall, Some(1.0));
        assert_eq!(t.best_f1.unwrap().confusion, [1, 1, 0, 2]);
        assert_eq!(t.best_f1.unwrap().threshold, f64::from(0.35f32));
        assert_eq!(t.at_target_recall.unwrap().confusion, [1, 1, 0, 2]);
        // predicted = [0, 0, 0, 1]: recalls 1 and 1/2.
        assert_close(e.balanced_accuracy.unwrap(), 0.75);
        assert!(e.mcc.is_some() && e.log_loss.is_some() && e.brier.is_some());

        // Without a target recall there is no target point.
        let e = full_report(&labels(2), &actual, &probs, 0.0, None);
        assert_eq!(e.threshold_report.unwrap().at_target_recall, None);
    }

    #[test]
    fn full_report_multiclass_with_empty_and_single_class() {
        // Class 2 never occurs: no ROC, no PR for it; macro AP over classes 0 and 1.
        let probs = [
            0.7, 0.2, 0.1, //
            0.2, 0.6, 0.2, //
            0.4, 0.4, 0.2, //
            0.5, 0.3, 0.2, //
        ];
        let e = full_report(&labels(3), &[0, 1, 0, 1], &probs, 0.0, Some(0.5));
        assert!(e.threshold_report.is_none());
        assert!(e.metrics.curves[2].roc.is_none() && e.metrics.curves[2].pr.is_none());
        let aps: Vec<f64> = e.metrics.curves[..2]
            .iter()
            .map(|c| c.pr.as_ref().unwrap().average_precision)
            .collect();
        assert_close(
            e.metrics.average_precision.unwrap(),
            (aps[0] + aps[1]) / 2.0,
        );

        // A single-class fold: only that class has a PR curve (AP 1), no ROC anywhere.
        let e = full_report(&labels(3), &[1, 1, 1, 1], &probs, 0.0, None);
        assert!(e.metrics.curves.iter().all(|c| c.roc.is_none()));
        assert!(e.metrics.curves[0].pr.is_none() && e.metrics.curves[2].pr.is_none());
        assert_close(e.metrics.average_precision.unwrap(), 1.0);
        assert_eq!(e.mcc, Some(0.0));
        // predicted = [0, 1, 0, 0]: recall of class 1 = 1/4.
        assert_close(e.balanced_accuracy.unwrap(), 0.25);

        // Empty input: nothing defined, nothing panics.
        let e = full_report(&labels(3), &[], &[], 0.0, Some(0.5));
        assert!(
            e.metrics
                .curves
                .iter()
                .all(|c| c.roc.is_none() && c.pr.is_none())
        );
        assert_eq!(
            (
                e.metrics.average_precision,
                e.balanced_accuracy,
                e.mcc,
                e.log_loss,
                e.brier
            ),
            (None, None, None, None, None)
        );
        let mut e = full_report(&labels(2), &[], &[], 0.0, Some(0.5));
        assert_eq!(e.threshold_report.as_ref().unwrap().best_f1, None);
        e.metrics.downsample_curves(DEFAULT_MAX_CURVE_POINTS);
        let e = full_report(&[], &[], &[], 0.0, None);
        assert!(e.metrics.curves.is_empty());
    }
}
