//! The confusion matrix: [`ConfusionMatrix`] and the counts it holds ([`confusion_counts`]).

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

/// Row and column sums of row-major `k x k` confusion counts: per class, the rows whose
/// true class it is (its support, `tp + fn`) and the rows predicted as it (`tp + fp`).
pub(crate) fn marginals(k: usize, counts: &[u64]) -> (Vec<u64>, Vec<u64>) {
    let mut support = vec![0u64; k];
    let mut predicted_as = vec![0u64; k];
    for a in 0..k {
        for p in 0..k {
            let v = counts[a * k + p];
            support[a] += v;
            predicted_as[p] += v;
        }
    }
    (support, predicted_as)
}

/// The diagonal sum of row-major `k x k` confusion counts: the correctly predicted rows.
pub(crate) fn diagonal_sum(k: usize, counts: &[u64]) -> u64 {
    (0..k).map(|c| counts[c * k + c]).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::named;

    #[test]
    fn confusion_counts_row_major() {
        // actual 0 -> predicted 1 once, actual 1 -> predicted 1 twice, actual 2 -> 0 once.
        let c = confusion_counts(3, &[0, 1, 1, 2], &[1, 1, 1, 0]);
        assert_eq!(c, vec![0, 1, 0, 0, 2, 0, 1, 0, 0]);
        let m = ConfusionMatrix {
            labels: named(&["a", "b", "c"]),
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
}
