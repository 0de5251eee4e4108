//! What a stored dataset holds, without reading its shards: `manifest.json`.

/// A stored dataset's description.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// Layout version (1).
    pub version: u32,
    pub width: usize,
    /// One row's shape (`[C, H, W]` for images, `[width]` for tables).
    pub row_shape: Vec<usize>,
    pub feature_names: Vec<String>,
    /// Class names in class order; the shards hold indices into it.
    pub labels: Vec<String>,
    pub rows: u64,
    /// Rows per class, in class order.
    pub class_counts: Vec<u64>,
    pub shards: Vec<ShardInfo>,
    /// Per feature, over every row.
    pub features: Vec<FeatureSummary>,
    pub source: SourceInfo,
}

impl Manifest {
    pub const VERSION: u32 = 1;
}

/// One shard's rows.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShardInfo {
    pub rows: u64,
    /// Rows per class in this shard, in class order.
    pub class_counts: Vec<u64>,
}

/// Where the data came from, fingerprinted.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SourceInfo {
    /// What the client named (a path, an upload's name) and its format.
    pub description: String,
    /// SHA-256 of the source's bytes (every file of it, in order), hex.
    pub sha256: String,
    pub bytes: u64,
}

/// A feature's statistics over every row.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FeatureSummary {
    pub mean: f64,
    /// Population standard deviation.
    pub std: f64,
    pub min: f64,
    pub max: f64,
}

/// Welford's one-pass mean and variance (numerically stable: no sum of squares), with
/// the range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Welford {
    n: u64,
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
}

impl Default for Welford {
    fn default() -> Self {
        Self {
            n: 0,
            mean: 0.0,
            m2: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl Welford {
    pub fn push(&mut self, x: f64) {
        self.n += 1;
        let delta = x - self.mean;
        self.mean += delta / self.n as f64;
        self.m2 += delta * (x - self.mean);
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }

    pub fn count(&self) -> u64 {
        self.n
    }

    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// Population variance (0 for fewer than two values).
    pub fn variance(&self) -> f64 {
        if self.n < 2 {
            0.0
        } else {
            self.m2 / self.n as f64
        }
    }

    pub fn summary(&self) -> FeatureSummary {
        FeatureSummary {
            mean: self.mean,
            std: self.variance().sqrt(),
            min: if self.n == 0 { 0.0 } else { self.min },
            max: if self.n == 0 { 0.0 } else { self.max },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welford_is_exact_where_sums_of_squares_are_not() {
        // Values around 1e9 with unit spread: the naive E[x^2] - E[x]^2 loses every digit.
        let xs: Vec<f64> = (0..1000).map(|i| 1e9 + f64::from(i % 3) - 1.0).collect();
        let mut w = Welford::default();
        xs.iter().for_each(|&x| w.push(x));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!((w.mean() - mean).abs() < 1e-6);
        assert!(
            (w.variance() - var).abs() < 1e-9,
            "{} vs {var}",
            w.variance()
        );
        let s = w.summary();
        assert_eq!((s.min, s.max), (1e9 - 1.0, 1e9 + 1.0));
    }
}
