//! Class-imbalance primitives: class weights, resampling of a training split (random over-
//! and undersampling, SMOTE) and balanced bagging draws.
//!
//! A training split is `features` (row-major `n x width`), `targets` (one class index `< k`
//! per row) and `k` classes. Everything here is pure and deterministic for a given
//! [`ChaCha8Rng`] state; none of it is meant for a validation split.
//!
//! # The `ratio` of a [`Resampling`]
//!
//! Like imbalanced-learn's float `sampling_strategy`, generalised to any number of classes.
//! Let `M` be the largest class count and `m` the smallest.
//!
//! * Oversampling (random or SMOTE): the goal is `G = int(ratio * M)` (truncation, as
//!   imbalanced-learn's `int(...)`; computed in `f64`). Every class with fewer than `G` rows
//!   is grown to exactly `G`; the others are left as they are.
//! * Undersampling: the goal is `G = int(m / ratio)` (truncation, computed in `f64`). Every
//!   class with more than `G` rows is cut to exactly `G`; the others are left as they are.
//!   `G >= m` always, so the smallest class is never cut.
//!
//! `ratio` must be finite and in `(0, 1]`; `1` balances the classes fully. A ratio that asks
//! for no change is accepted and returns the split unchanged.

use rand::Rng;
use rand::seq::index;
use rand_chacha::ChaCha8Rng;

use gradstream_domain::{ClassWeighting, JobSpec, ResamplingMethod, ResamplingSpec, SpecError};

/// Field name used in errors about [`Resampling`]'s `ratio`.
pub const FIELD_RATIO: &str = "resampling.ratio";
/// Field name used in errors about [`Resampling::Smote`]'s `k_neighbors`.
pub const FIELD_K_NEIGHBORS: &str = "resampling.k_neighbors";
/// Field name used in errors about the `beta` of [`effective_number_weights`].
pub const FIELD_BETA: &str = "effective_number_beta";

/// A bad parameter (naming the spec field and what to change) or malformed training data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImbalanceError {
    #[error("{field}: {message}")]
    Parameter {
        /// Dotted name of the spec field, e.g. `resampling.k_neighbors`.
        field: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The training split itself is malformed (a caller bug or an empty class).
    #[error("training data: {0}")]
    Data(String),
}

impl ImbalanceError {
    /// The spec field a parameter error is about; `None` for a data error.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::Parameter { field, .. } => Some(field),
            Self::Data(_) => None,
        }
    }

    fn parameter(field: &'static str, message: String) -> Self {
        Self::Parameter { field, message }
    }
}

// ---------------------------------------------------------------------------------------
// Class weights
// ---------------------------------------------------------------------------------------

/// Number of rows of each class: `counts[c]` = rows with target `c`.
///
/// # Panics
/// If a target is `>= k`.
pub fn counts(targets: &[usize], k: usize) -> Vec<usize> {
    let mut counts = vec![0usize; k];
    for &t in targets {
        assert!(t < k, "target {t} is not a class index below k = {k}");
        counts[t] += 1;
    }
    counts
}

/// scikit-learn's `compute_class_weight("balanced", classes=np.arange(k), y)`:
/// `w_c = n_samples / (n_classes * count_c)`, computed in `f64` exactly as scikit-learn does
/// (bit-identical). A class with count 0 gets `inf` (scikit-learn refuses such a class).
pub fn balanced_weights(counts: &[usize]) -> Vec<f64> {
    let n: usize = counts.iter().sum();
    let k = counts.len() as f64;
    counts.iter().map(|&c| n as f64 / (k * c as f64)).collect()
}

/// Checks that `beta` is usable by [`effective_number_weights`]: finite and in `[0, 1)`.
pub fn validate_beta(beta: f64) -> Result<(), ImbalanceError> {
    if beta.is_finite() && (0.0..1.0).contains(&beta) {
        Ok(())
    } else {
        Err(ImbalanceError::parameter(
            FIELD_BETA,
            format!(
                "must be in [0, 1), got {beta}; 0 gives equal weights, values close to 1 \
                 (0.99, 0.999, 0.9999) approach inverse class frequency"
            ),
        ))
    }
}

/// Class-balanced weights from the effective number of samples (Cui et al., CVPR 2019,
/// "Class-Balanced Loss Based on Effective Number of Samples"):
/// `w_c = (1 - beta) / (1 - beta^n_c)`, then scaled so the weights sum to `k` (as the
/// paper's reference code does). `beta = 0` gives all ones; as `beta -> 1` the weights
/// approach inverse class frequency (normalised). A class with count 0 gets `inf`
/// weight before normalisation, so every weight becomes NaN or 0; callers pass classes with
/// at least one row.
///
/// # Panics
/// If `beta` is not in `[0, 1)`; check it first with [`validate_beta`].
pub fn effective_number_weights(counts: &[usize], beta: f64) -> Vec<f64> {
    if let Err(e) = validate_beta(beta) {
        panic!("{e}");
    }
    let raw: Vec<f64> = counts
        .iter()
        .map(|&n| (1.0 - beta) / (1.0 - beta.powf(n as f64)))
        .collect();
    let sum: f64 = raw.iter().sum();
    let k = counts.len() as f64;
    raw.into_iter().map(|w| w / sum * k).collect()
}

// ---------------------------------------------------------------------------------------
// Resampling
// ---------------------------------------------------------------------------------------

/// How to resample a training split. See the module docs for `ratio`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Resampling {
    /// Grow every class below `int(ratio * M)` rows to that many by duplicating its own rows,
    /// drawn uniformly with replacement. Originals are kept.
    RandomOversample { ratio: f64 },
    /// Cut every class above `int(m / ratio)` rows to that many, a uniform draw without
    /// replacement of its rows.
    RandomUndersample { ratio: f64 },
    /// Grow every class below `int(ratio * M)` rows to that many with SMOTE points between
    /// a row and one of its `k_neighbors` nearest rows of the same class. Originals are kept.
    Smote { k_neighbors: usize, ratio: f64 },
}

impl Resampling {
    /// The method's `ratio`.
    pub fn ratio(&self) -> f64 {
        match *self {
            Self::RandomOversample { ratio }
            | Self::RandomUndersample { ratio }
            | Self::Smote { ratio, .. } => ratio,
        }
    }
}

/// Where a row of a [`Resampled`] split comes from.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Origin {
    /// A copy of input row `.0` (an original, a duplicate from oversampling, or a row kept by
    /// undersampling).
    Original(usize),
    /// A SMOTE point `x_a + t * (x_b - x_a)` (in `f32`) between input rows `a` and `b` of
    /// the same class; `t` in `[0, 1)`.
    Synthetic { a: usize, b: usize, t: f32 },
}

/// A resampled training split: rows in the same layout as the input, and where each came
/// from.
#[derive(Debug, Clone, PartialEq)]
pub struct Resampled {
    /// Row-major `targets.len() x width`.
    pub features: Vec<f32>,
    pub targets: Vec<usize>,
    /// One per output row.
    pub origin: Vec<Origin>,
    /// Rows per class in the input.
    pub class_counts_before: Vec<usize>,
    /// Rows per class in the output.
    pub class_counts_after: Vec<usize>,
}

impl Resampled {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }
}

fn check_ratio(ratio: f64) -> Result<(), ImbalanceError> {
    if ratio.is_finite() && ratio > 0.0 && ratio <= 1.0 {
        Ok(())
    } else {
        Err(ImbalanceError::parameter(
            FIELD_RATIO,
            format!(
                "must be a finite number in (0, 1], got {ratio}; 1 balances the classes \
                 fully, 0.5 brings the minority classes to half of the majority \
                 (oversampling) or the majority classes to twice the minority (undersampling)"
            ),
        ))
    }
}

fn check_counts(counts: &[usize]) -> Result<(), ImbalanceError> {
    if counts.is_empty() {
        return Err(ImbalanceError::Data(
            "there are no classes; resampling needs at least one".into(),
        ));
    }
    if let Some(c) = counts.iter().position(|&n| n == 0) {
        return Err(ImbalanceError::Data(format!(
            "class {c} has no training rows; every class needs at least one to be resampled"
        )));
    }
    Ok(())
}

/// The class counts `resample` will produce from `counts` (see the module docs), after
/// checking the parameters as [`validate`] does. Useful at submit time to size the job.
pub fn target_counts(method: &Resampling, counts: &[usize]) -> Result<Vec<usize>, ImbalanceError> {
    validate(method, counts)?;
    Ok(goals(method, counts))
}

/// Goal counts, assuming `validate` passed.
fn goals(method: &Resampling, counts: &[usize]) -> Vec<usize> {
    match *method {
        Resampling::RandomOversample { ratio } | Resampling::Smote { ratio, .. } => {
            let big = counts.iter().copied().max().unwrap_or(0);
            let goal = (ratio * big as f64) as usize;
            counts.iter().map(|&n| n.max(goal)).collect()
        }
        Resampling::RandomUndersample { ratio } => {
            let small = counts.iter().copied().min().unwrap_or(0);
            // Saturates at usize::MAX for a tiny ratio, which then cuts nothing.
            let goal = (small as f64 / ratio) as usize;
            counts.iter().map(|&n| n.min(goal)).collect()
        }
    }
}

/// Checks `method` against the training split's class counts alone (so it can run at submit
/// time, before any data is loaded): `ratio` finite and in `(0, 1]`; for SMOTE,
/// `k_neighbors >= 1` and every class SMOTE would grow has at least `k_neighbors + 1` rows;
/// every class has at least one row.
pub fn validate(method: &Resampling, counts: &[usize]) -> Result<(), ImbalanceError> {
    check_ratio(method.ratio())?;
    if let Resampling::Smote { k_neighbors, .. } = *method
        && k_neighbors == 0
    {
        return Err(ImbalanceError::parameter(
            FIELD_K_NEIGHBORS,
            "must be at least 1; 5 is the usual choice".into(),
        ));
    }
    check_counts(counts)?;
    if let Resampling::Smote { k_neighbors, .. } = *method {
        let goal = goals(method, counts);
        // The smallest class that must grow (ties: the lowest class index).
        let smallest = (0..counts.len())
            .filter(|&c| goal[c] > counts[c])
            .min_by_key(|&c| counts[c]);
        if let Some(c) = smallest
            && k_neighbors >= counts[c]
        {
            let n = counts[c];
            let message = if n == 1 {
                format!(
                    "is {k_neighbors}, but class {c}, which SMOTE must grow, has a single \
                     training row and no neighbour to interpolate with; use random \
                     oversampling, or gather more rows of that class"
                )
            } else {
                format!(
                    "is {k_neighbors}, but SMOTE needs k_neighbors + 1 rows in every class it \
                     grows and the smallest of those, class {c}, has {n} training rows; set \
                     resampling.k_neighbors to at most {}",
                    n - 1
                )
            };
            return Err(ImbalanceError::parameter(FIELD_K_NEIGHBORS, message));
        }
    }
    Ok(())
}

/// Row indices of each class, in input order.
fn rows_by_class(targets: &[usize], k: usize) -> Vec<Vec<usize>> {
    let mut by_class = vec![Vec::new(); k];
    for (i, &t) in targets.iter().enumerate() {
        by_class[t].push(i);
    }
    by_class
}

/// Resamples a training split (never a validation split) by `method`.
///
/// Output order: for oversampling and SMOTE every input row first, in input order, then the
/// new rows grouped by class in ascending class order; for undersampling the kept rows in
/// input order. The result is a deterministic function of the input and the rng's state.
/// Errors when the parameters fail [`validate`] or the split is malformed
/// (`features.len() != targets.len() * width`, a target `>= k`, an empty class).
pub fn resample(
    features: &[f32],
    width: usize,
    targets: &[usize],
    k: usize,
    method: &Resampling,
    rng: &mut ChaCha8Rng,
) -> Result<Resampled, ImbalanceError> {
    if features.len() != targets.len().saturating_mul(width) {
        return Err(ImbalanceError::Data(format!(
            "{} feature values for {} rows of width {width}; expected rows x width",
            features.len(),
            targets.len()
        )));
    }
    if let Some((i, &t)) = targets.iter().enumerate().find(|&(_, &t)| t >= k) {
        return Err(ImbalanceError::Data(format!(
            "row {i} has class index {t}, but there are only {k} classes"
        )));
    }
    let before = counts(targets, k);
    validate(method, &before)?;
    let goal = goals(method, &before);
    let by_class = rows_by_class(targets, k);

    let out = match *method {
        Resampling::RandomUndersample { .. } => {
            let mut keep = vec![true; targets.len()];
            for (c, rows) in by_class.iter().enumerate() {
                if goal[c] < rows.len() {
                    for &i in rows {
                        keep[i] = false;
                    }
                    for p in index::sample(rng, rows.len(), goal[c]) {
                        keep[rows[p]] = true;
                    }
                }
            }
            let n_out: usize = goal.iter().sum();
            let mut out = Output::with_capacity(n_out, width);
            for (i, _) in keep.iter().enumerate().filter(|&(_, &kept)| kept) {
                out.push_original(features, width, targets, i);
            }
            out
        }
        Resampling::RandomOversample { .. } => {
            let mut out = Output::originals(features, width, targets, goal.iter().sum());
            for (c, rows) in by_class.iter().enumerate() {
                for _ in rows.len()..goal[c] {
                    let i = rows[rng.random_range(0..rows.len())];
                    out.push_original(features, width, targets, i);
                }
            }
            out
        }
        Resampling::Smote { k_neighbors, .. } => {
            let mut out = Output::originals(features, width, targets, goal.iter().sum());
            for (c, rows) in by_class.iter().enumerate() {
                if goal[c] > rows.len() {
                    smote_class(
                        features,
                        width,
                        c,
                        rows,
                        goal[c] - rows.len(),
                        k_neighbors,
                        rng,
                        &mut out,
                    );
                }
            }
            out
        }
    };
    let after = counts(&out.targets, k);
    debug_assert_eq!(after, goal);
    Ok(Resampled {
        features: out.features,
        targets: out.targets,
        origin: out.origin,
        class_counts_before: before,
        class_counts_after: after,
    })
}

struct Output {
    features: Vec<f32>,
    targets: Vec<usize>,
    origin: Vec<Origin>,
}

impl Output {
    fn with_capacity(rows: usize, width: usize) -> Self {
        Self {
            features: Vec::with_capacity(rows * width),
            targets: Vec::with_capacity(rows),
            origin: Vec::with_capacity(rows),
        }
    }

    /// Every input row, in order, with room for `rows` in all.
    fn originals(features: &[f32], width: usize, targets: &[usize], rows: usize) -> Self {
        let mut out = Self::with_capacity(rows, width);
        out.features.extend_from_slice(features);
        out.targets.extend_from_slice(targets);
        out.origin.extend((0..targets.len()).map(Origin::Original));
        out
    }

    fn push_original(&mut self, features: &[f32], width: usize, targets: &[usize], i: usize) {
        self.features
            .extend_from_slice(&features[i * width..(i + 1) * width]);
        self.targets.push(targets[i]);
        self.origin.push(Origin::Original(i));
    }
}

fn squared_distance(x: &[f32], y: &[f32]) -> f64 {
    x.iter()
        .zip(y)
        .map(|(&p, &q)| {
            let d = f64::from(p) - f64::from(q);
            d * d
        })
        .sum()
}

/// Positions (into `rows`) of the `k` nearest rows to `rows[a]`, excluding `a` itself, by
/// squared Euclidean distance (in `f64`), ties broken by position; nearest first. `scratch`
/// is reused across calls (no allocation per pair).
fn nearest(
    features: &[f32],
    width: usize,
    rows: &[usize],
    a: usize,
    k: usize,
    scratch: &mut Vec<(f64, usize)>,
    into: &mut [usize],
) {
    let row = |i: usize| &features[rows[i] * width..(rows[i] + 1) * width];
    let xa = row(a);
    scratch.clear();
    scratch.extend(
        (0..rows.len())
            .filter(|&j| j != a)
            .map(|j| (squared_distance(xa, row(j)), j)),
    );
    let order = |x: &(f64, usize), y: &(f64, usize)| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1));
    if k < scratch.len() {
        scratch.select_nth_unstable_by(k - 1, order);
        scratch.truncate(k);
    }
    scratch.sort_unstable_by(order);
    for (slot, &(_, j)) in into.iter_mut().zip(scratch.iter()) {
        *slot = j;
    }
}

/// Appends `need` SMOTE points of class `c` (whose input rows are `rows`, at least
/// `k_neighbors + 1` of them). Neighbour lists are computed on first use of a row as `a`, so
/// the cost is O(distinct a * n_c * width) <= O(n_c^2 * width).
#[allow(clippy::too_many_arguments)]
fn smote_class(
    features: &[f32],
    width: usize,
    c: usize,
    rows: &[usize],
    need: usize,
    k_neighbors: usize,
    rng: &mut ChaCha8Rng,
    out: &mut Output,
) {
    let n = rows.len();
    debug_assert!(k_neighbors >= 1 && k_neighbors < n);
    let mut neighbours = vec![0usize; n * k_neighbors];
    let mut known = vec![false; n];
    let mut scratch = Vec::with_capacity(n - 1);
    for _ in 0..need {
        let pa = rng.random_range(0..n);
        let list = &mut neighbours[pa * k_neighbors..(pa + 1) * k_neighbors];
        if !known[pa] {
            nearest(features, width, rows, pa, k_neighbors, &mut scratch, list);
            known[pa] = true;
        }
        let pb = list[rng.random_range(0..k_neighbors)];
        let t: f32 = rng.random();
        let (a, b) = (rows[pa], rows[pb]);
        let xa = &features[a * width..(a + 1) * width];
        let xb = &features[b * width..(b + 1) * width];
        out.features
            .extend(xa.iter().zip(xb).map(|(&p, &q)| p + t * (q - p)));
        out.targets.push(c);
        out.origin.push(Origin::Synthetic { a, b, t });
    }
}

// ---------------------------------------------------------------------------------------
// Balanced bagging
// ---------------------------------------------------------------------------------------

/// Row indices of one balanced-bagging ensemble member's training set. With `m` the smallest
/// class count: every row of each class that has exactly `m` rows, and for every larger class
/// a uniform draw without replacement of `m` of its rows, so each class contributes `m`
/// rows and the set has `k * m` distinct rows. Returned in ascending order. Classes are
/// drawn in ascending class order; a class with `m` rows draws nothing from `rng`. Empty if
/// some class has no rows (or `k == 0`).
///
/// # Panics
/// If a target is `>= k`.
pub fn balanced_bootstrap(targets: &[usize], k: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let by_class = rows_by_class(targets, k);
    let Some(m) = by_class.iter().map(Vec::len).min() else {
        return Vec::new();
    };
    let mut picked = Vec::with_capacity(k * m);
    for rows in &by_class {
        if rows.len() == m {
            picked.extend_from_slice(rows);
        } else {
            picked.extend(
                index::sample(rng, rows.len(), m)
                    .into_iter()
                    .map(|p| rows[p]),
            );
        }
    }
    picked.sort_unstable();
    picked
}

// ---------------------------------------------------------------------------------------
// From a job's spec
// ---------------------------------------------------------------------------------------

impl From<&ResamplingSpec> for Resampling {
    fn from(r: &ResamplingSpec) -> Self {
        match r.method {
            ResamplingMethod::RandomOversample => Self::RandomOversample { ratio: r.ratio },
            ResamplingMethod::RandomUndersample => Self::RandomUndersample { ratio: r.ratio },
            ResamplingMethod::Smote { k_neighbors } => Self::Smote {
                k_neighbors: k_neighbors as usize,
                ratio: r.ratio,
            },
        }
    }
}

impl From<ImbalanceError> for SpecError {
    fn from(e: ImbalanceError) -> Self {
        match e {
            ImbalanceError::Parameter { field, message } => {
                SpecError::new(format!("spec.{field}"), message)
            }
            ImbalanceError::Data(m) => SpecError::new("spec.dataset", m),
        }
    }
}

/// The class weights training uses, from the training split's class counts; empty means
/// unweighted.
pub fn resolve_class_weights(
    weighting: ClassWeighting,
    manual: &[f64],
    train_counts: &[usize],
) -> Vec<f64> {
    match weighting {
        ClassWeighting::None => Vec::new(),
        ClassWeighting::Manual => manual.to_vec(),
        ClassWeighting::Balanced => balanced_weights(train_counts),
        ClassWeighting::EffectiveNumber { beta } => effective_number_weights(train_counts, beta),
    }
}

/// Rows per class one model of `spec` trains on each epoch: the training split's counts
/// after resampling, or one ensemble member's balanced draw (`k` times the smallest class).
/// Refuses resampling settings that do not fit the counts (SMOTE's `k_neighbors`).
pub fn planned_counts(spec: &JobSpec, train_counts: &[usize]) -> Result<Vec<usize>, SpecError> {
    if let Some(r) = &spec.resampling {
        return Ok(target_counts(&Resampling::from(r), train_counts)?);
    }
    if spec.ensemble.is_some() {
        let m = train_counts.iter().copied().min().unwrap_or(0);
        return Ok(vec![m; train_counts.len()]);
    }
    Ok(train_counts.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// A split with the given class counts, rows of classes interleaved, random features.
    fn split(class_counts: &[usize], width: usize, seed: u64) -> (Vec<f32>, Vec<usize>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut targets: Vec<usize> = class_counts
            .iter()
            .enumerate()
            .flat_map(|(c, &n)| std::iter::repeat_n(c, n))
            .collect();
        rand::seq::SliceRandom::shuffle(targets.as_mut_slice(), &mut rng);
        let features = (0..targets.len() * width)
            .map(|_| rng.random_range(-3.0f32..3.0))
            .collect();
        (features, targets)
    }

    fn run(
        class_counts: &[usize],
        method: &Resampling,
        seed: u64,
    ) -> (Vec<f32>, Vec<usize>, Resampled) {
        let width = 3;
        let (x, y) = split(class_counts, width, seed);
        let mut rng = ChaCha8Rng::seed_from_u64(seed + 1000);
        let r = resample(&x, width, &y, class_counts.len(), method, &mut rng).unwrap();
        (x, y, r)
    }

    fn row(x: &[f32], width: usize, i: usize) -> &[f32] {
        &x[i * width..(i + 1) * width]
    }

    /// Every row matches what its origin says; returns nothing, panics otherwise.
    fn check_origins(x: &[f32], y: &[usize], r: &Resampled, width: usize) {
        assert_eq!(r.features.len(), r.targets.len() * width);
        assert_eq!(r.origin.len(), r.targets.len());
        for (i, (origin, &out_t)) in r.origin.iter().zip(&r.targets).enumerate() {
            let got = row(&r.features, width, i);
            match *origin {
                Origin::Original(s) => {
                    assert_eq!(got, row(x, width, s));
                    assert_eq!(out_t, y[s]);
                }
                Origin::Synthetic { a, b, t } => {
                    assert_ne!(a, b);
                    assert_eq!(y[a], out_t);
                    assert_eq!(y[b], out_t);
                    assert!((0.0..1.0).contains(&t));
                    let (xa, xb) = (row(x, width, a), row(x, width, b));
                    for j in 0..width {
                        let want = xa[j] + t * (xb[j] - xa[j]);
                        assert_eq!(got[j].to_bits(), want.to_bits());
                        // On the segment between a and b (up to f32 rounding).
                        let (lo, hi) = (xa[j].min(xb[j]), xa[j].max(xb[j]));
                        let slack = 1e-6 * lo.abs().max(hi.abs());
                        assert!(lo - slack <= got[j] && got[j] <= hi + slack);
                    }
                }
            }
        }
    }

    /// Originals are the first n rows, unchanged and in order.
    fn check_originals_first(x: &[f32], y: &[usize], r: &Resampled) {
        let n = y.len();
        assert_eq!(&r.features[..x.len()], x);
        assert_eq!(&r.targets[..n], y);
        for (i, o) in r.origin[..n].iter().enumerate() {
            assert_eq!(*o, Origin::Original(i));
        }
    }

    #[test]
    fn counts_and_class_weights() {
        assert_eq!(counts(&[0, 2, 2, 1, 2], 4), vec![1, 1, 3, 0]);
        let w = balanced_weights(&[10, 30]);
        assert_eq!(w, vec![40.0 / 20.0, 40.0 / 60.0]);
        assert_eq!(balanced_weights(&[5, 5, 5]), vec![1.0; 3]);

        assert_eq!(effective_number_weights(&[1, 10, 1000], 0.0), vec![1.0; 3]);
        let beta = 0.99;
        let w = effective_number_weights(&[10, 100], beta);
        let raw = [
            (1.0 - beta) / (1.0 - beta.powi(10)),
            (1.0 - beta) / (1.0 - beta.powi(100)),
        ];
        let s = raw[0] + raw[1];
        for c in 0..2 {
            assert!((w[c] - raw[c] / s * 2.0).abs() < 1e-12);
        }
        assert!(w[0] > w[1]);
        let w = effective_number_weights(&[3, 50, 7, 900], 0.999);
        assert!((w.iter().sum::<f64>() - 4.0).abs() < 1e-12);
        // Near 1 the weights approach normalised inverse frequency.
        let w = effective_number_weights(&[10, 40], 1.0 - 1e-9);
        assert!((w[0] / w[1] - 4.0).abs() < 1e-5);
    }

    #[test]
    fn beta_errors() {
        for beta in [-0.1, 1.0, 1.5, f64::NAN, f64::INFINITY] {
            let e = validate_beta(beta).unwrap_err();
            assert_eq!(e.field(), Some(FIELD_BETA));
            assert!(e.to_string().contains("[0, 1)"), "{e}");
        }
        validate_beta(0.0).unwrap();
        validate_beta(0.9999).unwrap();
    }

    #[test]
    #[should_panic(expected = "effective_number_beta")]
    fn effective_number_weights_panics_on_bad_beta() {
        effective_number_weights(&[1, 2], 1.0);
    }

    #[test]
    fn random_oversample_hits_targets() {
        let cases: &[(&[usize], f64, &[usize])] = &[
            (&[30, 4], 1.0, &[30, 30]),
            (&[30, 4], 0.5, &[30, 15]),
            (&[4, 30], 0.1, &[4, 30]), // int(3.0) = 3 < 4: unchanged
            (&[20, 7, 3], 1.0, &[20, 20, 20]),
            (&[20, 7, 3], 0.5, &[20, 10, 10]),
            (&[20, 7, 3], 0.3, &[20, 7, 6]),
            (&[7, 20, 3], 0.33, &[7, 20, 6]), // int(6.6) = 6
        ];
        for &(cc, ratio, want) in cases {
            let (x, y, r) = run(cc, &Resampling::RandomOversample { ratio }, 1);
            assert_eq!(r.class_counts_before, cc);
            assert_eq!(r.class_counts_after, want, "{cc:?} ratio {ratio}");
            assert_eq!(counts(&r.targets, cc.len()), want);
            check_originals_first(&x, &y, &r);
            check_origins(&x, &y, &r, 3);
            assert!(r.origin.iter().all(|o| matches!(o, Origin::Original(_))));
        }
    }

    #[test]
    fn smote_hits_targets_and_interpolates_between_neighbours() {
        let cases: &[(&[usize], f64, usize, &[usize])] = &[
            (&[40, 6], 1.0, 5, &[40, 40]),
            (&[40, 6], 0.5, 1, &[40, 20]),
            (&[25, 9, 3], 1.0, 2, &[25, 25, 25]),
            (&[25, 9, 3], 0.6, 2, &[25, 15, 15]),
            (&[9, 25, 3, 25], 0.2, 2, &[9, 25, 5, 25]),
        ];
        for (seed, &(cc, ratio, kn, want)) in cases.iter().enumerate() {
            let method = Resampling::Smote {
                k_neighbors: kn,
                ratio,
            };
            let (x, y, r) = run(cc, &method, seed as u64);
            assert_eq!(r.class_counts_after, want, "{cc:?} ratio {ratio}");
            check_originals_first(&x, &y, &r);
            check_origins(&x, &y, &r, 3);
            let n = y.len();
            assert!(
                r.origin[n..]
                    .iter()
                    .all(|o| matches!(o, Origin::Synthetic { .. }))
            );
            // Appended rows grouped by ascending class.
            assert!(r.targets[n..].windows(2).all(|p| p[0] <= p[1]));
            for o in &r.origin[n..] {
                let Origin::Synthetic { a, b, .. } = *o else {
                    unreachable!()
                };
                // Brute force: b is no farther from a than a's k-th nearest same-class row.
                let mut d: Vec<f64> = (0..n)
                    .filter(|&j| j != a && y[j] == y[a])
                    .map(|j| squared_distance(row(&x, 3, a), row(&x, 3, j)))
                    .collect();
                d.sort_by(f64::total_cmp);
                let dab = squared_distance(row(&x, 3, a), row(&x, 3, b));
                assert!(dab <= d[kn - 1], "b is not among a's {kn} nearest");
            }
        }
    }

    #[test]
    fn smote_neighbours_on_a_line() {
        // Class 0: points 0, 1, 2, 3, 10 on a line; class 1 is the majority elsewhere.
        let xs0 = [0.0f32, 1.0, 2.0, 3.0, 10.0];
        let mut x: Vec<f32> = Vec::new();
        let mut y = Vec::new();
        for &v in &xs0 {
            x.extend([v, 0.0]);
            y.push(0);
            // Interleave majority rows, very close to class 0's (must not be neighbours).
            x.extend([v + 0.01, 0.0]);
            y.push(1);
            x.extend([v + 0.02, 0.0]);
            y.push(1);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let r = resample(
            &x,
            2,
            &y,
            2,
            &Resampling::Smote {
                k_neighbors: 1,
                ratio: 1.0,
            },
            &mut rng,
        )
        .unwrap();
        assert_eq!(r.class_counts_after, vec![10, 10]);
        // Nearest (ties by input order): 0->1, 1->0, 2->1, 3->2, 10->3 (row indices 3*i).
        let nn = |a: usize| match a / 3 {
            0 => 1,
            1 => 0,
            2 => 1,
            3 => 2,
            4 => 3,
            _ => unreachable!(),
        } * 3;
        for o in &r.origin[15..] {
            let Origin::Synthetic { a, b, .. } = *o else {
                panic!("{o:?}")
            };
            assert_eq!(b, nn(a), "a = {a}");
        }
    }

    #[test]
    fn random_undersample_hits_targets() {
        let cases: &[(&[usize], f64, &[usize])] = &[
            (&[30, 4], 1.0, &[4, 4]),
            (&[30, 4], 0.5, &[8, 4]),
            (&[4, 30], 0.1, &[4, 30]), // int(40.0) = 40 > 30: unchanged
            (&[20, 7, 3], 1.0, &[3, 3, 3]),
            (&[20, 7, 3], 0.5, &[6, 6, 3]),
            (&[20, 7, 3], 0.25, &[12, 7, 3]),
            (&[20, 7, 3], 0.3, &[10, 7, 3]), // int(3 / 0.3) = int(10.0) = 10
        ];
        for &(cc, ratio, want) in cases {
            let (x, y, r) = run(cc, &Resampling::RandomUndersample { ratio }, 2);
            assert_eq!(r.class_counts_after, want, "{cc:?} ratio {ratio}");
            check_origins(&x, &y, &r, 3);
            // Kept rows are distinct and in input order.
            let src: Vec<usize> = r
                .origin
                .iter()
                .map(|o| match *o {
                    Origin::Original(i) => i,
                    Origin::Synthetic { .. } => panic!("synthetic row from undersampling"),
                })
                .collect();
            assert!(src.windows(2).all(|p| p[0] < p[1]));
            // Classes not cut keep every row.
            for c in 0..cc.len() {
                if want[c] == cc[c] {
                    let kept = src.iter().filter(|&&i| y[i] == c).count();
                    assert_eq!(kept, cc[c]);
                }
            }
        }
    }

    #[test]
    fn unchanged_when_nothing_to_do() {
        let cc = [10, 10, 10];
        for method in [
            Resampling::RandomOversample { ratio: 1.0 },
            Resampling::RandomUndersample { ratio: 1.0 },
            Resampling::Smote {
                k_neighbors: 50,
                ratio: 1.0,
            },
        ] {
            let (x, y, r) = run(&cc, &method, 3);
            assert_eq!(r.features, x);
            assert_eq!(r.targets, y);
        }
        // Ratio too small to grow anything: k_neighbors is not checked against any class.
        let (x, y, r) = run(
            &[20, 7, 3],
            &Resampling::Smote {
                k_neighbors: 50,
                ratio: 0.1,
            },
            3,
        );
        assert_eq!((r.features, r.targets), (x, y));
    }

    #[test]
    fn deterministic_for_a_seed() {
        for method in [
            Resampling::RandomOversample { ratio: 0.8 },
            Resampling::RandomUndersample { ratio: 0.8 },
            Resampling::Smote {
                k_neighbors: 3,
                ratio: 0.8,
            },
        ] {
            let (_, _, r1) = run(&[50, 12, 5], &method, 4);
            let (_, _, r2) = run(&[50, 12, 5], &method, 4);
            assert_eq!(r1, r2);
            let (x, y) = split(&[50, 12, 5], 3, 4);
            let mut rng = ChaCha8Rng::seed_from_u64(99);
            let r3 = resample(&x, 3, &y, 3, &method, &mut rng).unwrap();
            assert_ne!(
                r1.origin, r3.origin,
                "{method:?}: another seed, another draw"
            );
        }
    }

    #[test]
    fn balanced_bootstrap_draws() {
        let cc = [40, 6, 15, 6];
        let (_, y) = split(&cc, 1, 5);
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let idx = balanced_bootstrap(&y, 4, &mut rng);
        assert_eq!(idx.len(), 4 * 6);
        assert!(idx.windows(2).all(|p| p[0] < p[1]), "sorted, no duplicates");
        let picked: Vec<usize> = idx.iter().map(|&i| y[i]).collect();
        assert_eq!(counts(&picked, 4), vec![6; 4]);
        // Smallest classes contribute every row.
        for c in [1, 3] {
            let all: Vec<usize> = (0..y.len()).filter(|&i| y[i] == c).collect();
            let got: Vec<usize> = idx.iter().copied().filter(|&i| y[i] == c).collect();
            assert_eq!(got, all);
        }
        let again = balanced_bootstrap(&y, 4, &mut ChaCha8Rng::seed_from_u64(11));
        assert_eq!(idx, again);
        let next = balanced_bootstrap(&y, 4, &mut rng);
        assert_ne!(idx, next, "successive members differ");
        assert!(balanced_bootstrap(&[0, 0, 2], 3, &mut rng).is_empty());
    }

    fn err(method: &Resampling, cc: &[usize]) -> ImbalanceError {
        let e = validate(method, cc).unwrap_err();
        let (x, y) = split(cc, 2, 6);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        assert_eq!(
            resample(&x, 2, &y, cc.len(), method, &mut rng).unwrap_err(),
            e
        );
        e
    }

    #[test]
    fn bad_ratio() {
        for ratio in [
            0.0,
            -0.5,
            1.0001,
            2.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            for method in [
                Resampling::RandomOversample { ratio },
                Resampling::RandomUndersample { ratio },
                Resampling::Smote {
                    k_neighbors: 1,
                    ratio,
                },
            ] {
                let e = err(&method, &[10, 3]);
                assert_eq!(e.field(), Some(FIELD_RATIO));
                assert!(
                    e.to_string()
                        .starts_with("resampling.ratio: must be a finite number in (0, 1]"),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn bad_k_neighbors() {
        let e = err(
            &Resampling::Smote {
                k_neighbors: 0,
                ratio: 1.0,
            },
            &[10, 3],
        );
        assert_eq!(e.field(), Some(FIELD_K_NEIGHBORS));
        assert!(e.to_string().contains("at least 1"), "{e}");

        // Class 2 (3 rows) must grow: k_neighbors at most 2.
        let e = err(
            &Resampling::Smote {
                k_neighbors: 3,
                ratio: 1.0,
            },
            &[20, 7, 3],
        );
        assert_eq!(e.field(), Some(FIELD_K_NEIGHBORS));
        let msg = e.to_string();
        assert!(msg.contains("class 2, has 3 training rows"), "{msg}");
        assert!(msg.contains("resampling.k_neighbors to at most 2"), "{msg}");
        validate(
            &Resampling::Smote {
                k_neighbors: 2,
                ratio: 1.0,
            },
            &[20, 7, 3],
        )
        .unwrap();

        // The binding class is the smallest one that grows.
        let e = err(
            &Resampling::Smote {
                k_neighbors: 5,
                ratio: 1.0,
            },
            &[5, 20, 8],
        );
        assert!(
            e.to_string().contains("class 0, has 5 training rows"),
            "{e}"
        );
        assert!(e.to_string().contains("at most 4"), "{e}");

        // A single-row class cannot be grown by SMOTE at all.
        let e = err(
            &Resampling::Smote {
                k_neighbors: 1,
                ratio: 1.0,
            },
            &[9, 1],
        );
        assert_eq!(e.field(), Some(FIELD_K_NEIGHBORS));
        assert!(e.to_string().contains("single training row"), "{e}");
    }

    #[test]
    fn bad_data() {
        let method = Resampling::RandomOversample { ratio: 1.0 };
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let e = resample(&[0.0; 5], 2, &[0, 1, 1], 2, &method, &mut rng).unwrap_err();
        assert!(matches!(e, ImbalanceError::Data(_)), "{e}");
        let e = resample(&[0.0; 6], 2, &[0, 1, 2], 2, &method, &mut rng).unwrap_err();
        assert!(e.to_string().contains("row 2 has class index 2"), "{e}");
        let e = resample(&[0.0; 6], 2, &[0, 0, 2], 3, &method, &mut rng).unwrap_err();
        assert!(
            e.to_string().contains("class 1 has no training rows"),
            "{e}"
        );
        assert_eq!(e.field(), None);
        let e = validate(&method, &[]).unwrap_err();
        assert!(matches!(e, ImbalanceError::Data(_)));
    }

    #[test]
    fn target_counts_matches_resample() {
        let m = Resampling::Smote {
            k_neighbors: 2,
            ratio: 0.5,
        };
        assert_eq!(target_counts(&m, &[20, 7, 3]).unwrap(), vec![20, 10, 10]);
        let m = Resampling::RandomUndersample { ratio: 1e-300 };
        assert_eq!(target_counts(&m, &[20, 7, 3]).unwrap(), vec![20, 7, 3]);
    }

    #[test]
    fn spec_round_trips_through_json() {
        let m = Resampling::Smote {
            k_neighbors: 5,
            ratio: 0.75,
        };
        let s = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<Resampling>(&s).unwrap(), m);
    }
}
