//! The row-major `n x k` probability matrix: the argmax prediction of each row, how
//! many rows a (possibly malformed) matrix has, and one class's column as binary scores.

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

/// Rows used of a (possibly malformed) `n x k` matrix: `min(actual.len(), probs.len() / k)`.
pub(crate) fn n_rows(actual: &[usize], probs: &[f32], k: usize) -> usize {
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

/// Column `c` of the probabilities as binary `(score, actual == c)` pairs, over the rows
/// with a valid class.
pub(crate) fn class_scores(
    actual: &[usize],
    probs: &[f32],
    k: usize,
    c: usize,
) -> impl Iterator<Item = (f64, bool)> {
    actual
        .iter()
        .zip(probs.chunks_exact(k.max(1)))
        .filter(move |&(&a, _)| a < k)
        .map(move |(&a, row)| (f64::from(row[c]), a == c))
}

/// [`class_scores`] as two vectors, scores and positive flags.
pub(crate) fn class_column(
    actual: &[usize],
    probs: &[f32],
    k: usize,
    c: usize,
) -> (Vec<f64>, Vec<bool>) {
    class_scores(actual, probs, k, c).unzip()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
