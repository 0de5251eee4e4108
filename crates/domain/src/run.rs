//! Runs: the units of work inside a job. Events, metrics and checkpoints belong to a run.
//!
//! Run 0 is the job's own run: the one model of a training job, a range test, and for an
//! ensemble the combined model (its metrics and its checkpoint). Runs 1, 2, … are the
//! job's child runs, in the order they start: an ensemble's members (member `m` is run
//! `m + 1`), and later a sweep's trials. Each run counts its own epochs from 1.

/// A run of a job. Its number is its place among the job's runs (see the module docs).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct RunId(pub u32);

impl RunId {
    /// The job's own run.
    pub const JOB: RunId = RunId(0);

    /// The `index`-th child run (0-based): an ensemble's member `index`.
    pub fn child(index: u32) -> Self {
        Self(index + 1)
    }

    /// This run's 0-based index among the job's child runs; `None` for the job's own run.
    pub fn child_index(self) -> Option<u32> {
        self.0.checked_sub(1)
    }
}

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_count_from_one() {
        assert_eq!(RunId::JOB.child_index(), None);
        for i in [0, 1, 7, u32::MAX - 1] {
            assert_eq!(RunId::child(i).child_index(), Some(i));
        }
    }
}
