//! Curve downsampling: evenly spaced points of a [`RocCurve`] or [`PrCurve`] (and of
//! every curve in a [`Metrics`]), keeping both ends.

use crate::Metrics;
use crate::curves::{PrCurve, RocCurve};

/// Default point budget for [`RocCurve::downsample`], [`PrCurve::downsample`]
/// and [`Metrics::downsample_curves`].
pub const DEFAULT_MAX_CURVE_POINTS: usize = 200;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::curves::{precision_recall_curve, roc_curve};

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
}
