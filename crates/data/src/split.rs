//! Stratified train/validation split and z-score normalization.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::Dataset;

/// Row indices of the two splits.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub train: Vec<usize>,
    pub validation: Vec<usize>,
}

/// Samples of a class of `n` that the split holds out: `fraction` of them, rounded,
/// keeping at least one in training.
fn held_out(n: usize, fraction: f64) -> usize {
    ((n as f64 * fraction).round() as usize).min(n.saturating_sub(1))
}

/// Training samples per class that `stratified_split` leaves, from the class counts alone.
pub fn train_counts(class_counts: &[usize], fraction: f64) -> Vec<usize> {
    class_counts
        .iter()
        .map(|&n| n - held_out(n, fraction))
        .collect()
}

/// Holds out about `fraction` of every class for validation, keeping at least one sample
/// of each class in training.
pub fn stratified_split(data: &Dataset, fraction: f64, seed: u64) -> Split {
    let mask = HeldOut::new(&data.class_counts(), fraction, seed);
    let mut seen = vec![0usize; data.labels.len()];
    let mut split = Split {
        train: Vec::with_capacity(data.rows()),
        validation: Vec::new(),
    };
    for (i, &t) in data.targets.iter().enumerate() {
        let held = mask.is_held_out(t, seen[t]);
        seen[t] += 1;
        if held {
            &mut split.validation
        } else {
            &mut split.train
        }
        .push(i);
    }
    split
}

/// Which rows of each class the stratified split holds out, from the class counts alone:
/// the `k`-th row of class `c` (in storage order) is a validation row when
/// `is_held_out(c, k)`. So a split can be made while the rows stream past, in one pass,
/// and it is the same split as [`stratified_split`] of the same rows in memory. One bit
/// per row.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldOut {
    /// Per class, a bit per ordinal.
    bits: Vec<Vec<u64>>,
}

impl HeldOut {
    /// For each class in class order, the class's ordinals are shuffled by one generator
    /// seeded with `seed`, and the first `round(n * fraction)` (at most `n - 1`) are held out.
    pub fn new(class_counts: &[usize], fraction: f64, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let bits = class_counts
            .iter()
            .map(|&n| {
                let mut ordinals: Vec<u32> = (0..n as u32).collect();
                ordinals.shuffle(&mut rng);
                let mut words = vec![0u64; n.div_ceil(64)];
                for &k in &ordinals[..held_out(n, fraction)] {
                    words[k as usize / 64] |= 1 << (k % 64);
                }
                words
            })
            .collect();
        Self { bits }
    }

    /// Rows held out, over all classes.
    pub fn count(&self) -> usize {
        self.bits
            .iter()
            .flatten()
            .map(|w| w.count_ones() as usize)
            .sum()
    }

    /// Whether the `ordinal`-th row of `class` is a validation row.
    pub fn is_held_out(&self, class: usize, ordinal: usize) -> bool {
        self.bits[class][ordinal / 64] & (1 << (ordinal % 64)) != 0
    }
}

/// Per-feature mean and standard deviation of the training rows; applied to every split.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalizer {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normalizer {
    /// Statistics over `rows` of `data` (population std; a constant feature gets std 1).
    pub fn fit(data: &Dataset, rows: &[usize]) -> Self {
        let d = data.width;
        let n = rows.len().max(1) as f64;
        let mut mean = vec![0f64; d];
        for &r in rows {
            for (m, v) in mean.iter_mut().zip(data.row(r)) {
                *m += *v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut var = vec![0f64; d];
        for &r in rows {
            for ((s, v), m) in var.iter_mut().zip(data.row(r)).zip(&mean) {
                *s += (*v as f64 - m).powi(2);
            }
        }
        var.iter_mut().for_each(|s| *s /= n);
        Self::from_moments(&mean, &var)
    }

    /// From per-feature means and population variances (a constant feature, std below
    /// 1e-12, gets std 1 so that it normalizes to 0).
    pub fn from_moments(mean: &[f64], variance: &[f64]) -> Self {
        Self {
            mean: mean.iter().map(|&m| m as f32).collect(),
            std: variance
                .iter()
                .map(|v| {
                    let sd = v.sqrt();
                    if sd > 1e-12 { sd as f32 } else { 1.0 }
                })
                .collect(),
        }
    }

    /// Normalizes one row in place.
    pub fn apply_row(&self, row: &mut [f32]) {
        for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
            *v = (*v - m) / s;
        }
    }

    /// The normalized features of `rows`, row-major.
    pub fn apply(&self, data: &Dataset, rows: &[usize]) -> Vec<f32> {
        let mut out = Vec::with_capacity(rows.len() * data.width);
        for &r in rows {
            out.extend(
                data.row(r)
                    .iter()
                    .zip(&self.mean)
                    .zip(&self.std)
                    .map(|((v, m), s)| (v - m) / s),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(counts: &[usize]) -> Dataset {
        let targets: Vec<usize> = counts
            .iter()
            .enumerate()
            .flat_map(|(c, &n)| std::iter::repeat_n(c, n))
            .collect();
        Dataset {
            width: 1,
            feature_names: vec!["x".into()],
            features: (0..targets.len()).map(|i| i as f32).collect(),
            labels: (0..counts.len()).map(|c| c.to_string()).collect(),
            targets,
        }
    }

    #[test]
    fn split_is_stratified_disjoint_and_complete() {
        let d = data(&[90, 10]);
        let s = stratified_split(&d, 0.2, 1);
        let count = |rows: &[usize], c| rows.iter().filter(|&&r| d.targets[r] == c).count();
        assert_eq!((count(&s.validation, 0), count(&s.validation, 1)), (18, 2));
        assert_eq!((count(&s.train, 0), count(&s.train, 1)), (72, 8));
        let counts = train_counts(&d.class_counts(), 0.2);
        assert_eq!(counts.iter().sum::<usize>(), s.train.len());
        let mut all: Vec<usize> = s.train.iter().chain(&s.validation).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
    }

    /// The split as it was made before [`HeldOut`]: each class's row list shuffled by one
    /// generator, the first `held_out` of it validated. Jobs recorded then resume with the
    /// same split.
    fn shuffled_row_lists(data: &Dataset, fraction: f64, seed: u64) -> Split {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); data.labels.len()];
        for (i, &t) in data.targets.iter().enumerate() {
            by_class[t].push(i);
        }
        let (mut train, mut validation) = (Vec::new(), Vec::new());
        for mut rows in by_class {
            rows.shuffle(&mut rng);
            let held = held_out(rows.len(), fraction);
            validation.extend_from_slice(&rows[..held]);
            train.extend_from_slice(&rows[held..]);
        }
        train.sort_unstable();
        validation.sort_unstable();
        Split { train, validation }
    }

    #[test]
    fn held_out_bits_give_the_split_of_the_shuffled_row_lists() {
        let mut d = data(&[130, 7, 64, 1, 0, 300]);
        // Interleave the classes so that ordinals differ from row indices.
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        d.targets.shuffle(&mut rng);
        for (fraction, seed) in [(0.2, 1), (0.5, 99), (0.0, 3), (0.89, 12345)] {
            let split = stratified_split(&d, fraction, seed);
            assert_eq!(
                split,
                shuffled_row_lists(&d, fraction, seed),
                "fraction {fraction}, seed {seed}"
            );
            let mask = HeldOut::new(&d.class_counts(), fraction, seed);
            assert_eq!(mask.count(), split.validation.len());
        }
    }

    #[test]
    fn every_class_keeps_a_training_sample() {
        let d = data(&[5, 1]);
        let s = stratified_split(&d, 0.8, 1);
        assert!(s.train.iter().any(|&r| d.targets[r] == 1));
    }

    #[test]
    fn normalizer_uses_training_rows_only() {
        let d = data(&[2, 2]); // features 0,1,2,3
        let n = Normalizer::fit(&d, &[0, 1]); // mean 0.5, std 0.5
        assert_eq!(n.mean, vec![0.5]);
        assert_eq!(n.std, vec![0.5]);
        assert_eq!(n.apply(&d, &[0, 3]), vec![-1.0, 5.0]);
    }
}
