//! What a job does: the closed set of job kinds.

use serde::{Deserialize, Serialize};

use crate::RangeTest;

/// What a job does. The set is closed: the job manager runs each kind through its own
/// module (`src/jobs/kinds/`).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub enum JobKind {
    /// Train the spec's model (or ensemble) for its epochs.
    #[default]
    Training,
    /// The learning-rate range test on the spec's model, optimizer and data.
    RangeTest(RangeTest),
}
