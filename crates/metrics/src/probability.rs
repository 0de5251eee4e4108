//! Scores of the probabilities themselves: log loss ([`log_loss`]) and Brier score
//! ([`brier_score`]).

use crate::matrix::n_rows;

/// Whether scikit-learn accepts `p` as a probability (finite, in `[0, 1]`).
fn valid_probability(p: f32) -> bool {
    (0.0..=1.0).contains(&p)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::assert_close;

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
}
