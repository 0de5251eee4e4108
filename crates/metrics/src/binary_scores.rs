//! Binary scores (`scores` paired with `positive` flags) compared as scikit-learn
//! compares them, and their cumulative counts per distinct score: the counting shared
//! by the ROC, precision–recall and threshold functions.

use std::cmp::Ordering;

/// `(canonical score, is_positive)` pairs of paired slices (a length mismatch is a caller
/// bug, caught by `debug_assert!`; in release only the common prefix is used).
pub(crate) fn canonical_pairs(scores: &[f64], positive: &[bool]) -> Vec<(f64, bool)> {
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
pub(crate) fn canonical_score(s: f64) -> f64 {
    if s.is_nan() {
        f64::NAN
    } else if s == 0.0 {
        0.0
    } else {
        s
    }
}

/// Sorts `pairs` by descending score and yields, per distinct score, the score and its
/// numbers of positive and negative rows.
pub(crate) fn tie_groups(pairs: &mut [(f64, bool)]) -> impl Iterator<Item = (f64, u64, u64)> {
    pairs.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
    pairs
        .chunk_by(|a, b| a.0.total_cmp(&b.0) == Ordering::Equal)
        .map(|group| {
            let dtp = group.iter().filter(|&&(_, p)| p).count() as u64;
            (group[0].0, dtp, group.len() as u64 - dtp)
        })
}

/// Cumulative counts per distinct score, scores descending
/// (`sklearn.metrics.confusion_matrix_at_thresholds`).
pub(crate) struct ThresholdCounts {
    /// Distinct canonical scores, descending.
    pub(crate) thresholds: Vec<f64>,
    /// Positives with `score >= thresholds[i]`.
    pub(crate) tps: Vec<u64>,
    /// Negatives with `score >= thresholds[i]`.
    pub(crate) fps: Vec<u64>,
}

impl ThresholdCounts {
    pub(crate) fn new(scores: &[f64], positive: &[bool]) -> Self {
        Self::of_pairs(&mut canonical_pairs(scores, positive))
    }

    /// The counts of `(canonical score, is_positive)` pairs; sorts `pairs` in place.
    pub(crate) fn of_pairs(pairs: &mut [(f64, bool)]) -> Self {
        let mut out = ThresholdCounts {
            thresholds: Vec::new(),
            tps: Vec::new(),
            fps: Vec::new(),
        };
        let (mut tp, mut fp) = (0u64, 0u64);
        for (score, dtp, dfp) in tie_groups(pairs) {
            tp += dtp;
            fp += dfp;
            out.thresholds.push(score);
            out.tps.push(tp);
            out.fps.push(fp);
        }
        out
    }

    pub(crate) fn n_pos(&self) -> u64 {
        self.tps.last().copied().unwrap_or(0)
    }

    pub(crate) fn n_neg(&self) -> u64 {
        self.fps.last().copied().unwrap_or(0)
    }
}
