//! Gaussian clusters: one centre per class, unit-variance points around it.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::Dataset;
use gradstream_domain::{SpecError, SyntheticSpec};

/// Samples per class: proportional to the ratios, rounded, summing to `samples`.
fn class_sizes(spec: &SyntheticSpec) -> Vec<u64> {
    let k = spec.classes as usize;
    let ratios: Vec<f64> = if spec.class_ratios.is_empty() {
        vec![1.0; k]
    } else {
        spec.class_ratios.clone()
    };
    let total: f64 = ratios.iter().sum();
    let mut sizes: Vec<u64> = ratios
        .iter()
        .map(|r| (spec.samples as f64 * r / total).floor() as u64)
        .collect();
    // Hand out the remainder to the classes with the largest fractional parts.
    let mut rest = spec.samples - sizes.iter().sum::<u64>();
    let mut order: Vec<usize> = (0..k).collect();
    let frac = |i: usize| spec.samples as f64 * ratios[i] / total - sizes[i] as f64;
    order.sort_by(|&a, &b| frac(b).total_cmp(&frac(a)).then(a.cmp(&b)));
    for &i in order.iter().cycle() {
        if rest == 0 {
            break;
        }
        sizes[i] += 1;
        rest -= 1;
    }
    sizes
}

/// Generates the dataset. Rows are interleaved in a seeded random order.
pub fn generate(spec: &SyntheticSpec) -> Result<Dataset, SpecError> {
    let sizes = class_sizes(spec);
    if let Some(c) = sizes.iter().position(|&n| n == 0) {
        return Err(SpecError::new(
            "spec.dataset.synthetic.samples",
            format!(
                "{} samples leave class {c} with none at these class_ratios; raise samples or that class's ratio",
                spec.samples
            ),
        ));
    }
    let d = spec.features as usize;
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let centres: Vec<f32> = (0..spec.classes as usize * d)
        .map(|_| rng.sample::<f64, _>(StandardNormal) as f32 * spec.separation as f32)
        .collect();
    let mut targets: Vec<usize> = sizes
        .iter()
        .enumerate()
        .flat_map(|(c, &n)| std::iter::repeat_n(c, n as usize))
        .collect();
    // Fisher–Yates with our own generator so the order is reproducible.
    for i in (1..targets.len()).rev() {
        let j = rng.random_range(0..=i);
        targets.swap(i, j);
    }
    let mut features = Vec::with_capacity(targets.len() * d);
    for &c in &targets {
        let centre = &centres[c * d..(c + 1) * d];
        features.extend(
            centre
                .iter()
                .map(|m| m + rng.sample::<f64, _>(StandardNormal) as f32),
        );
    }
    Ok(Dataset {
        width: d,
        feature_names: (0..d).map(|i| format!("x{i}")).collect(),
        features,
        targets,
        labels: (0..spec.classes).map(|c| c.to_string()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(samples: u64, ratios: Vec<f64>) -> SyntheticSpec {
        SyntheticSpec {
            samples,
            features: 3,
            classes: ratios.len().max(2) as u32,
            class_ratios: ratios,
            separation: 3.0,
            seed: 7,
        }
    }

    #[test]
    fn sizes_follow_ratios_and_sum_to_samples() {
        let s = spec(1000, vec![98.0, 2.0]);
        assert_eq!(class_sizes(&s), vec![980, 20]);
        let s = spec(10, vec![1.0, 1.0, 1.0]);
        assert_eq!(class_sizes(&s).iter().sum::<u64>(), 10);
    }

    #[test]
    fn same_seed_same_data() {
        let a = generate(&spec(100, vec![])).unwrap();
        let b = generate(&spec(100, vec![])).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.rows(), 100);
        assert_eq!(a.class_counts(), vec![50, 50]);
    }

    #[test]
    fn a_class_with_no_samples_is_refused() {
        let e = generate(&spec(10, vec![1000.0, 1.0])).unwrap_err();
        assert!(e.message.contains("class 1"), "{e}");
    }
}
