//! Compares `imbalance::balanced_weights` against scikit-learn's
//! `compute_class_weight("balanced", ...)` on randomly generated skewed label sets
//! (binary and multiclass, from one rare row per class to heavy majorities).
//!
//! The cases are written to a temporary JSON file and weighed by
//! `tests/reference/class_weights.py`, run with the interpreter named by the
//! `GRADSTREAM_PYTHON` environment variable, or else
//! `<CARGO_MANIFEST_DIR>/.venv/bin/python`. The test fails (it does not skip) when that
//! interpreter cannot run the script.

mod common;

use common::rng::Rng;

use gradstream::data::imbalance::{balanced_weights, counts};

use std::path::Path;

/// Cases generated.
const N_CASES: usize = 50;
const TOL: f64 = 1e-12;

/// Uniform in `lo..=hi`.
fn range(rng: &mut Rng, lo: usize, hi: usize) -> usize {
    lo + rng.below(hi - lo + 1)
}

/// A skewed label set over `k` classes: every class at least once, the rest drawn with
/// class `c`'s probability proportional to `skew^c` (then the classes' order is shuffled).
fn generate_case(rng: &mut Rng, index: usize) -> (usize, Vec<usize>) {
    let k = if index.is_multiple_of(3) {
        2
    } else {
        range(rng, 2, 8)
    };
    let n = range(rng, k, if index.is_multiple_of(5) { 20 } else { 2000 });
    let skew = 0.05 + 0.9 * rng.unit();
    let p: Vec<f64> = (0..k).map(|c| skew.powi(c as i32)).collect();
    let total: f64 = p.iter().sum();
    let mut perm: Vec<usize> = (0..k).collect();
    for i in (1..k).rev() {
        perm.swap(i, range(rng, 0, i));
    }
    let mut y: Vec<usize> = (0..k).collect();
    for _ in k..n {
        let mut u = rng.unit() * total;
        let mut c = 0;
        while c + 1 < k && u >= p[c] {
            u -= p[c];
            c += 1;
        }
        y.push(perm[c]);
    }
    for i in (1..y.len()).rev() {
        y.swap(i, range(rng, 0, i));
    }
    (k, y)
}

#[test]
fn balanced_weights_equal_scikit_learn() {
    let mut rng = Rng(0x1b_a1a_4ce);
    let cases: Vec<(usize, Vec<usize>)> =
        (0..N_CASES).map(|i| generate_case(&mut rng, i)).collect();
    // The generator covers binary, many classes, and extreme skew.
    assert!(cases.iter().any(|(k, _)| *k == 2));
    assert!(cases.iter().any(|(k, _)| *k >= 6));
    assert!(cases.iter().any(|(k, y)| {
        let c = counts(y, *k);
        c.iter().max().unwrap() / c.iter().min().unwrap() >= 100
    }));

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("imbalance_reference");
    std::fs::create_dir_all(&dir).unwrap();
    let cases_path = dir.join("cases.json");
    let out_path = dir.join("weights.json");
    let _ = std::fs::remove_file(&out_path);
    let labels: Vec<&Vec<usize>> = cases.iter().map(|(_, y)| y).collect();
    std::fs::write(&cases_path, serde_json::to_vec(&labels).unwrap()).unwrap();

    common::run_reference("class_weights.py", &[&cases_path, &out_path]);

    let result: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out_path).unwrap()).unwrap();
    let expected = result["weights"].as_array().expect("weights array");
    assert_eq!(expected.len(), cases.len());
    for (i, ((k, y), want)) in cases.iter().zip(expected).enumerate() {
        let want: Vec<f64> = want
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let got = balanced_weights(&counts(y, *k));
        assert_eq!(got.len(), want.len(), "case {i}: k");
        for (c, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= TOL,
                "case {i} (k = {k}, n = {}), class {c}: ours {g}, scikit-learn {w} \
                 (version {})",
                y.len(),
                result["sklearn_version"]
            );
        }
    }
}
