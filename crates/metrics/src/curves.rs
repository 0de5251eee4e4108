//! Threshold curves, probabilistic scores and threshold reports with
//! scikit-learn's (1.9) definitions.
//!
//! * [`roc_curve`]: `sklearn.metrics.roc_curve(positive, scores)` with the
//!   default `drop_intermediate=True` (first threshold `+inf`).
//! * [`precision_recall_curve`]: `sklearn.metrics.precision_recall_curve` with
//!   the default `drop_intermediate=False`, plus `average_precision_score`.
//! * [`balanced_accuracy`], [`matthews_corrcoef`], [`log_loss`],
//!   [`brier_score`]: the scikit-learn functions of the same names.
//! * [`best_f1_threshold`] / [`threshold_for_recall`]: operating points chosen
//!   among the precision–recall curve's thresholds.
//! * [`full_report`]: all of the above plus [`super::evaluate`] for one set of
//!   class probabilities.
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
//! * Scores are compared like [`super::roc_auc`]: `-0.0 == 0.0`, and NaN
//!   scores (which scikit-learn rejects) never panic: they are equal to each
//!   other and larger than every number, so a NaN can appear as a threshold.
//! * Length mismatches are caller bugs caught by `debug_assert!`; in release
//!   builds only the common prefix is used.

use std::cmp::Ordering;

use super::{Metrics, canonical_pairs, confusion_counts, evaluate};

/// Default point budget for [`RocCurve::downsample`], [`PrCurve::downsample`]
/// and [`Evaluation::downsample_curves`].
pub const DEFAULT_MAX_CURVE_POINTS: usize = 200;

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

/// One operating point of a binary classifier, rule `score >= threshold`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ThresholdPoint {
    /// The threshold (one of [`PrCurve::thresholds`]).
    pub threshold: f64,
    /// `tp / (tp + fp)` (never 0/0: at least one row scores `>= threshold`).
    pub precision: f64,
    /// `tp / (tp + fn)`.
    pub recall: f64,
    /// `2PR / (P + R)`, computed as the equal `2tp / (2tp + fp + fn)` (0 when `tp == 0`).
    pub f1: f64,
    /// 2x2 confusion counts `[tn, fp, fn, tp]`: the same row-major
    /// `[actual * 2 + predicted]` layout as [`super::ConfusionMatrix::counts`]
    /// with 0 = negative and 1 = positive (also `confusion_matrix(...).ravel()`).
    pub confusion: [u64; 4],
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

/// Everything [`full_report`] computes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Evaluation {
    /// [`evaluate_with_curves`]: the report of [`super::evaluate`] with the
    /// one-vs-rest curves of every class and the macro average precision.
    pub metrics: Metrics,
    /// [`balanced_accuracy`] of the argmax predictions.
    pub balanced_accuracy: Option<f64>,
    /// [`matthews_corrcoef`] of the argmax predictions.
    pub mcc: Option<f64>,
    /// [`log_loss`] of the probabilities.
    pub log_loss: Option<f64>,
    /// [`brier_score`] of the probabilities.
    pub brier: Option<f64>,
    /// `k == 2` only: operating points for class 1 (score = `probs[:, 1]`).
    pub threshold_report: Option<ThresholdReport>,
}

impl Metrics {
    /// Downsamples every curve to at most `max_points` points ([`RocCurve::downsample`],
    /// [`PrCurve::downsample`]); average precisions are unchanged.
    pub fn downsample_curves(&mut self, max_points: usize) {
        for c in &mut self.curves {
            if let Some(roc) = &mut c.roc {
                *roc = roc.downsample(max_points);
            }
            if let Some(pr) = &mut c.pr {
                *pr = pr.downsample(max_points);
            }
        }
    }
}

/// Cumulative counts per distinct score, scores descending
/// (`sklearn.metrics.confusion_matrix_at_thresholds`).
struct ThresholdCounts {
    /// Distinct canonical scores, descending.
    thresholds: Vec<f64>,
    /// Positives with `score >= thresholds[i]`.
    tps: Vec<u64>,
    /// Negatives with `score >= thresholds[i]`.
    fps: Vec<u64>,
}

impl ThresholdCounts {
    fn new(scores: &[f64], positive: &[bool]) -> Self {
        let mut pairs = canonical_pairs(scores, positive);
        pairs.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
        let mut out = ThresholdCounts {
            thresholds: Vec::new(),
            tps: Vec::new(),
            fps: Vec::new(),
        };
        let (mut tp, mut fp) = (0u64, 0u64);
        for group in pairs.chunk_by(|a, b| a.0.total_cmp(&b.0) == Ordering::Equal) {
            let dtp = group.iter().filter(|&&(_, p)| p).count() as u64;
            tp += dtp;
            fp += group.len() as u64 - dtp;
            out.thresholds.push(group[0].0);
            out.tps.push(tp);
            out.fps.push(fp);
        }
        out
    }

    fn n_pos(&self) -> u64 {
        self.tps.last().copied().unwrap_or(0)
    }

    fn n_neg(&self) -> u64 {
        self.fps.last().copied().unwrap_or(0)
    }

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
    let c = ThresholdCounts::new(scores, positive);
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

/// `sklearn.metrics.precision_recall_curve(positive, scores)` (default
/// `drop_intermediate=False`) together with
/// `sklearn.metrics.average_precision_score(positive, scores)`.
///
/// Returns `None` when there is no positive row (including empty input).
/// scikit-learn then only warns and returns recall 1 at every threshold (and
/// an average precision of 0), which is meaningless, so it is left out. Rows
/// that are all positive give a well-defined curve (precision 1, AP 1).
pub fn precision_recall_curve(scores: &[f64], positive: &[bool]) -> Option<PrCurve> {
    let c = ThresholdCounts::new(scores, positive);
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

/// The threshold (one of [`precision_recall_curve`]'s thresholds) that
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

/// The highest threshold (one of [`precision_recall_curve`]'s thresholds)
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

/// Evenly spaced indices into `0..len`, at most `max_points` of them (`max_points`
/// below 2 counts as 2), always including the first and the last; all of
/// `0..len` when `len <= max_points`.
pub fn downsample_indices(len: usize, max_points: usize) -> Vec<usize> {
    let max_points = max_points.max(2);
    if len <= max_points {
        return (0..len).collect();
    }
    // len > max_points >= 2, so the step (len - 1) / (max_points - 1) exceeds 1
    // and the rounded indices strictly increase.
    let (span, steps) = ((len - 1) as u128, (max_points - 1) as u128);
    (0..max_points as u128)
        .map(|i| ((i * span + steps / 2) / steps) as usize)
        .collect()
}

impl RocCurve {
    /// At most `max_points` points (see [`downsample_indices`]): the first
    /// (`+inf`, (0, 0)) and last ((1, 1)) points are kept, arrays stay aligned.
    pub fn downsample(&self, max_points: usize) -> RocCurve {
        let idx = downsample_indices(self.fpr.len(), max_points);
        RocCurve {
            fpr: idx.iter().map(|&i| self.fpr[i]).collect(),
            tpr: idx.iter().map(|&i| self.tpr[i]).collect(),
            thresholds: idx.iter().map(|&i| self.thresholds[i]).collect(),
        }
    }
}

impl PrCurve {
    /// At most `max_points` precision/recall points (see [`downsample_indices`]),
    /// keeping the first point (lowest threshold) and the last (precision 1,
    /// recall 0, no threshold). `thresholds` keeps the thresholds of the kept
    /// points, so it stays one shorter than `precision` and `recall`.
    /// `average_precision` is unchanged.
    pub fn downsample(&self, max_points: usize) -> PrCurve {
        let idx = downsample_indices(self.precision.len(), max_points);
        let last = self.precision.len().saturating_sub(1);
        PrCurve {
            precision: idx.iter().map(|&i| self.precision[i]).collect(),
            recall: idx.iter().map(|&i| self.recall[i]).collect(),
            thresholds: idx
                .iter()
                .filter(|&&i| i < last)
                .map(|&i| self.thresholds[i])
                .collect(),
            average_precision: self.average_precision,
        }
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
fn balanced_accuracy_of_counts(k: usize, counts: &[u64]) -> Option<f64> {
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
fn mcc_of_counts(k: usize, counts: &[u64]) -> Option<f64> {
    let mut t_sum = vec![0i128; k];
    let mut p_sum = vec![0i128; k];
    let mut correct = 0i128;
    for a in 0..k {
        for p in 0..k {
            let v = i128::from(counts[a * k + p]);
            t_sum[a] += v;
            p_sum[p] += v;
        }
        correct += i128::from(counts[a * k + a]);
    }
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

/// Rows used of a (possibly malformed) `n x k` matrix: `min(actual.len(), probs.len() / k)`.
fn n_rows(actual: &[usize], probs: &[f32], k: usize) -> usize {
    debug_assert_eq!(
        probs.len(),
        actual.len() * k,
        "probs must be an n x k matrix with n = actual.len()"
    );
    probs
        .len()
        .checked_div(k)
        .map_or(0, |r| r.min(actual.len()))
}

/// Whether scikit-learn accepts `p` as a probability (finite, in `[0, 1]`).
fn valid_probability(p: f32) -> bool {
    (0.0..=1.0).contains(&p)
}

/// Mean of `sklearn.metrics.average_precision_score` over the one-vs-rest
/// columns of `probs` whose class occurs in `actual` (classes without positive
/// rows have no PR curve and are left out); `None` if no class occurs.
///
/// This is [`Evaluation::macro_average_precision`] without building the
/// curves (it allocates one `n`-element column at a time), for filling
/// [`Metrics::average_precision`] cheaply. scikit-learn's multiclass
/// `average_precision_score(actual, probs)` only accepts inputs where every
/// class occurs, and then equals this; for `k == 2` this is the mean over both
/// columns, not the AP of class 1 alone. Rows with a class index `>= k` are
/// left out.
pub fn macro_average_precision(actual: &[usize], probs: &[f32], k: usize) -> Option<f64> {
    let n = n_rows(actual, probs, k);
    let (actual, probs) = (&actual[..n], &probs[..n * k]);
    let mut scores = Vec::with_capacity(n);
    let mut positive = Vec::with_capacity(n);
    let aps: Vec<f64> = (0..k)
        .filter_map(|c| {
            scores.clear();
            positive.clear();
            for (&a, row) in actual.iter().zip(probs.chunks_exact(k)) {
                if a < k {
                    scores.push(f64::from(row[c]));
                    positive.push(a == c);
                }
            }
            precision_recall_curve(&scores, &positive).map(|pr| pr.average_precision)
        })
        .collect();
    mean(&aps)
}

/// Arithmetic mean, `None` for an empty slice.
fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// `sklearn.metrics.log_loss(actual, probs, labels=range(k))`: the mean of
/// `-ln(clip(probs[i, actual[i]], eps, 1 - eps))` with `eps = f64::EPSILON`
/// (scikit-learn clips with the machine epsilon of the `float64` input).
/// Rows are not renormalised (scikit-learn 1.9 only warns).
///
/// `None` where scikit-learn raises: no rows, `k < 2`, a class index `>= k`,
/// or any probability NaN or outside `[0, 1]`.
pub fn log_loss(actual: &[usize], probs: &[f32], k: usize) -> Option<f64> {
    let n = n_rows(actual, probs, k);
    let (actual, probs) = (&actual[..n], &probs[..n * k]);
    if n == 0
        || k < 2
        || actual.iter().any(|&a| a >= k)
        || !probs.iter().all(|&p| valid_probability(p))
    {
        return None;
    }
    let total: f64 = actual
        .iter()
        .zip(probs.chunks_exact(k))
        .map(|(&a, row)| {
            -f64::from(row[a])
                .clamp(f64::EPSILON, 1.0 - f64::EPSILON)
                .ln()
        })
        .sum();
    Some(total / n as f64)
}

/// `sklearn.metrics.brier_score_loss` with its default `scale_by_half="auto"`.
///
/// * `k == 2`: the binary form on `y_proba = probs[:, 1]` with `pos_label=1`:
///   scikit-learn expands it to the two columns `(1 - p, p)`, sums the squared
///   errors of both and scales by 1/2, i.e. the mean of `(y - p)^2` (range [0, 1]).
/// * `k > 2`: `brier_score_loss(actual, probs, labels=range(k))`, the mean over
///   rows of `sum_c (onehot_c - p_c)^2`, not scaled (range [0, 2]).
///
/// `None` where scikit-learn raises: no rows, `k < 2`, a class index `>= k`,
/// or a probability it checks (column 1 for `k == 2`, all for `k > 2`) NaN or
/// outside `[0, 1]`.
pub fn brier_score(actual: &[usize], probs: &[f32], k: usize) -> Option<f64> {
    let n = n_rows(actual, probs, k);
    let (actual, probs) = (&actual[..n], &probs[..n * k]);
    if n == 0 || k < 2 || actual.iter().any(|&a| a >= k) {
        return None;
    }
    let rows = actual.iter().zip(probs.chunks_exact(k));
    if k == 2 {
        if !probs.chunks_exact(2).all(|row| valid_probability(row[1])) {
            return None;
        }
        let total: f64 = rows
            .map(|(&a, row)| {
                let (y, p) = (if a == 1 { 1.0 } else { 0.0 }, f64::from(row[1]));
                ((1.0 - y) - (1.0 - p)).powi(2) + (y - p).powi(2)
            })
            .sum();
        Some(total / n as f64 * 0.5)
    } else {
        if !probs.iter().all(|&p| valid_probability(p)) {
            return None;
        }
        let total: f64 = rows
            .map(|(&a, row)| {
                row.iter()
                    .enumerate()
                    .map(|(c, &p)| (if c == a { 1.0 } else { 0.0 } - f64::from(p)).powi(2))
                    .sum::<f64>()
            })
            .sum();
        Some(total / n as f64)
    }
}

/// The full report: [`super::evaluate`] plus curves, scores and (binary) operating points.
///
/// * `labels`: class names, `k = labels.len()`; `actual`: true class per row;
///   `probs`: `n x k` row-major probabilities; `loss`: passed to [`Metrics::loss`].
/// * `curves[c]`: [`roc_curve`] and [`precision_recall_curve`] of column `c`
///   against `actual == c` (every class, also for `k == 2`). Curves are not
///   downsampled; see [`Evaluation::downsample_curves`].
/// * `macro_average_precision` (also stored in `metrics.average_precision`):
///   [`macro_average_precision`], mean AP over classes with a defined PR curve.
///   (scikit-learn's multiclass `average_precision_score` only accepts inputs
///   where every class occurs, and then it is the same mean; for `k == 2`
///   this is the mean over both columns, not the AP of class 1 alone, which is
///   `curves[1].pr`.)
/// * `balanced_accuracy`, `mcc`: of the argmax predictions (as in `evaluate`).
/// * `log_loss`, `brier`: [`log_loss`] and [`brier_score`].
/// * `threshold_report` (`k == 2` only): [`best_f1_threshold`] and, when
///   `target_recall` is given, [`threshold_for_recall`] on column 1.
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

/// Column `c` of the probabilities as binary scores against `actual == c`, over the rows
/// with a valid class.
fn class_column(actual: &[usize], probs: &[f32], k: usize, c: usize) -> (Vec<f64>, Vec<bool>) {
    actual
        .iter()
        .zip(probs.chunks_exact(k.max(1)))
        .filter(|&(&a, _)| a < k)
        .map(|(&a, row)| (f64::from(row[c]), a == c))
        .unzip()
}

/// [`super::evaluate`] plus, per class, the one-vs-rest [`roc_curve`] and
/// [`precision_recall_curve`] of its probability column (`Metrics::curves`, not
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
    let mut metrics = evaluate(labels, actual, probs, loss);
    metrics.curves = labels
        .iter()
        .enumerate()
        .map(|(c, label)| {
            let (scores, positive) = class_column(actual, probs, k, c);
            ClassCurves {
                label: label.clone(),
                roc: roc_curve(&scores, &positive),
                pr: precision_recall_curve(&scores, &positive),
            }
        })
        .collect();
    let aps: Vec<f64> = metrics
        .curves
        .iter()
        .filter_map(|c| c.pr.as_ref().map(|pr| pr.average_precision))
        .collect();
    metrics.average_precision = mean(&aps);
    metrics
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPS: f64 = 1e-12;

    #[track_caller]
    fn assert_close(actual: f64, expected: f64) {
        assert!(
            (actual - expected).abs() <= EPS,
            "got {actual}, expected {expected}"
        );
    }

    #[track_caller]
    fn assert_all_close(actual: &[f64], expected: &[f64]) {
        assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
        for (&a, &e) in actual.iter().zip(expected) {
            if a.is_infinite() || e.is_infinite() {
                assert_eq!(a, e, "{actual:?} vs {expected:?}");
            } else {
                assert_close(a, e);
            }
        }
    }

    fn labels(k: usize) -> Vec<String> {
        (0..k).map(|c| format!("c{c}")).collect()
    }

    // sklearn's docstring example: y_true = [0, 0, 1, 1], scores [0.1, 0.4, 0.35, 0.8].
    const DOC_SCORES: [f64; 4] = [0.1, 0.4, 0.35, 0.8];
    const DOC_POSITIVE: [bool; 4] = [false, false, true, true];

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

    #[test]
    fn downsample_keeps_ends_and_alignment() {
        assert_eq!(downsample_indices(10, 4), vec![0, 3, 6, 9]);
        assert_eq!(downsample_indices(3, 5), vec![0, 1, 2]);
        assert_eq!(downsample_indices(5, 0), vec![0, 4]);
        assert_eq!(downsample_indices(0, 3), Vec::<usize>::new());
        for len in 1..60 {
            for max in 0..12 {
                let idx = downsample_indices(len, max);
                assert!(idx.len() <= max.max(2));
                assert_eq!(idx[0], 0);
                assert_eq!(*idx.last().unwrap(), len - 1);
                assert!(idx.windows(2).all(|w| w[0] < w[1]));
            }
        }

        let scores: Vec<f64> = (0..50).map(|i| f64::from(i) / 50.0).collect();
        let positive: Vec<bool> = (0..50).map(|i| i % 3 == 0).collect();
        let p = precision_recall_curve(&scores, &positive).unwrap();
        let d = p.downsample(5);
        assert_eq!(d.precision.len(), 5);
        assert_eq!(d.recall.len(), 5);
        assert_eq!(d.thresholds.len(), 4);
        assert_eq!(d.thresholds[0], p.thresholds[0]);
        assert_eq!((d.precision[4], d.recall[4]), (1.0, 0.0));
        // Each kept point keeps its own threshold.
        for (j, &t) in d.thresholds.iter().enumerate() {
            let i = p.thresholds.iter().position(|&x| x == t).unwrap();
            assert_eq!((d.precision[j], d.recall[j]), (p.precision[i], p.recall[i]));
        }
        assert_eq!(d.average_precision, p.average_precision);

        let r = roc_curve(&scores, &positive).unwrap();
        let d = r.downsample(6);
        assert!(d.fpr.len() <= 6);
        assert_eq!(d.thresholds[0], f64::INFINITY);
        assert_eq!((*d.fpr.last().unwrap(), *d.tpr.last().unwrap()), (1.0, 1.0));
        assert_eq!(r.downsample(1000), r);
    }

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

    #[test]
    fn log_loss_like_sklearn() {
        // Docstring example with ham = 0, spam = 1 (f32 inputs, so 1e-6).
        let probs = [0.1, 0.9, 0.9, 0.1, 0.8, 0.2, 0.35, 0.65];
        let l = log_loss(&[1, 0, 0, 1], &probs, 2).unwrap();
        assert!((l - 0.21616).abs() < 1e-5, "{l}");
        // Exact 0 and 1 are clipped to [eps, 1 - eps].
        let l = log_loss(&[1, 0], &[1.0, 0.0, 1.0, 0.0], 2).unwrap();
        let expected = (-(f64::EPSILON.ln()) - (1.0 - f64::EPSILON).ln()) / 2.0;
        assert_close(l, expected);
        // Undefined where sklearn raises.
        assert_eq!(log_loss(&[], &[], 2), None);
        assert_eq!(log_loss(&[0], &[1.0], 1), None);
        assert_eq!(log_loss(&[2], &[0.5, 0.5], 2), None);
        assert_eq!(log_loss(&[0], &[1.5, -0.5], 2), None);
    }

    #[test]
    fn brier_score_like_sklearn() {
        // Binary docstring example: y [0, 1, 1, 0], p [0.1, 0.9, 0.8, 0.3] -> 0.0375.
        let probs = [0.9, 0.1, 0.1, 0.9, 0.2, 0.8, 0.7, 0.3];
        let b = brier_score(&[0, 1, 1, 0], &probs, 2).unwrap();
        assert!((b - 0.0375).abs() < 1e-6, "{b}");
        // Single-class fold is fine for Brier: mean of (0 - p)^2.
        let b = brier_score(&[0, 0], &[0.75, 0.25, 0.5, 0.5], 2).unwrap();
        assert_close(b, (0.0625 + 0.25) / 2.0);
        // Multiclass docstring example -> 0.146... (not halved).
        let probs = [0.8, 0.1, 0.1, 0.2, 0.7, 0.1, 0.2, 0.2, 0.6];
        let b = brier_score(&[0, 1, 2], &probs, 3).unwrap();
        assert!((b - 0.44 / 3.0).abs() < 1e-6, "{b}");
        // Exact halves, multiclass: (0.25 + 0.25 + 0) per row.
        let b = brier_score(&[0], &[0.5, 0.5, 0.0], 3).unwrap();
        assert_close(b, 0.5);
        assert_eq!(brier_score(&[], &[], 3), None);
        assert_eq!(brier_score(&[3], &[0.5, 0.5, 0.0], 3), None);
        // k == 2 only checks column 1, like sklearn's binary form.
        assert!(brier_score(&[0], &[7.0, 0.5], 2).is_some());
        assert_eq!(brier_score(&[0], &[0.5, 1.5], 2), None);
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
