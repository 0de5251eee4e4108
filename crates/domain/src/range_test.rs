//! The learning-rate range test (a kind of job, `JobKind::RangeTest`): its settings, its
//! points (events of the job) and what it found.

use serde::{Deserialize, Serialize};

use crate::SpecError;

/// Settings of one range test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RangeTest {
    pub min_lr: f64,
    pub max_lr: f64,
    pub iterations: u32,
}

impl RangeTest {
    /// The settings a request leaves unset: 1e-7 to 10 over 200 iterations.
    pub const DEFAULT: Self = Self {
        min_lr: 1e-7,
        max_lr: 10.0,
        iterations: 200,
    };

    /// Every check of the settings themselves (the spec is checked as for a training job).
    pub fn validate(&self) -> Result<(), SpecError> {
        if !(self.min_lr > 0.0 && self.max_lr > self.min_lr && self.max_lr.is_finite()) {
            return Err(SpecError::new(
                "max_lr",
                format!(
                    "the range must satisfy 0 < min_lr < max_lr, got {} to {}; 1e-7 to 10 is usual",
                    self.min_lr, self.max_lr
                ),
            ));
        }
        if !(2..=10_000).contains(&self.iterations) {
            return Err(SpecError::new(
                "iterations",
                "must be 2 to 10000; 100 to 300 is usual",
            ));
        }
        Ok(())
    }
}

/// One iteration of the test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LrPoint {
    pub iteration: u32,
    pub learning_rate: f64,
    pub loss: f64,
    pub smoothed_loss: f64,
}

/// What the test found.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LrSuggestion {
    pub suggested: f64,
    pub min_loss: f64,
    pub diverged: bool,
    pub iterations: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_settings_are_valid_and_bad_ones_name_their_field() {
        RangeTest::DEFAULT.validate().unwrap();
        let bad = |t: RangeTest| t.validate().unwrap_err().field;
        let d = RangeTest::DEFAULT;
        assert_eq!(bad(RangeTest { min_lr: 0.0, ..d }), "max_lr");
        assert_eq!(bad(RangeTest { max_lr: 1e-8, ..d }), "max_lr");
        assert_eq!(
            bad(RangeTest {
                max_lr: f64::INFINITY,
                ..d
            }),
            "max_lr"
        );
        assert_eq!(bad(RangeTest { iterations: 1, ..d }), "iterations");
        assert_eq!(
            bad(RangeTest {
                iterations: 10_001,
                ..d
            }),
            "iterations"
        );
    }
}
