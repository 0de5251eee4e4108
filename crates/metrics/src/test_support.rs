//! Helpers shared by the unit tests.

const EPS: f64 = 1e-12;

#[track_caller]
pub fn assert_close(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() <= EPS,
        "got {actual}, expected {expected}"
    );
}

#[track_caller]
pub fn assert_all_close(actual: &[f64], expected: &[f64]) {
    assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
    for (&a, &e) in actual.iter().zip(expected) {
        if a.is_infinite() || e.is_infinite() {
            assert_eq!(a, e, "{actual:?} vs {expected:?}");
        } else {
            assert_close(a, e);
        }
    }
}

/// Class names `c0 .. c{k-1}`.
pub fn labels(k: usize) -> Vec<String> {
    (0..k).map(|c| format!("c{c}")).collect()
}

/// Class names from string literals.
pub fn named(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

// sklearn's docstring example: y_true = [0, 0, 1, 1], scores [0.1, 0.4, 0.35, 0.8].
pub const DOC_SCORES: [f64; 4] = [0.1, 0.4, 0.35, 0.8];
pub const DOC_POSITIVE: [bool; 4] = [false, false, true, true];
