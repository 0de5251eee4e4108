//! The one place where protobuf types and domain types meet, one file per message family:
//! [`spec`] (job specs, both ways), [`events`] (events, epoch ends, metrics and curves),
//! [`jobs`] (job snapshots, queries and range tests), [`uploads`] (dataset and model
//! infos) and [`models`] (predictions, evaluations, export formats and model versions).
//!
//! A conversion is a `From`/`TryFrom` impl where it needs nothing but the message (for
//! example `pb::Job::from(&snapshot)`, `JobSpec::try_from(pb_spec)`); the functions here and
//! in the files beside take what an impl cannot: an enum's raw `i32` (its error names the
//! value), a required message that may be absent, or extra context (an epoch number).
//! Requests become domain values with the defaults `proto/gradstream/v1/trainer.proto`
//! documents for unset fields; errors are [`SpecError`]s naming the field as the proto does.

mod events;
mod jobs;
mod models;
mod spec;
#[cfg(test)]
mod tests;
mod uploads;

use std::time::SystemTime;

use crate::domain::SpecError;

pub use events::lr_finder_event;
pub use jobs::range_test;
pub use models::{eval_data, evaluation, export_format, model_version};
pub use spec::job_spec;

// ---- defaults the proto documents for unset fields ----

/// `JobSpec.validation_fraction`.
const DEFAULT_VALIDATION_FRACTION: f64 = 0.2;
/// `SyntheticDataset.separation`.
const DEFAULT_SEPARATION: f64 = 3.0;
/// `JobSpec.effective_number_beta`.
const DEFAULT_BETA: f64 = 0.999;
/// `Resampling.k_neighbors`.
const DEFAULT_K_NEIGHBORS: u32 = 5;
/// `Loss.gamma`.
const DEFAULT_FOCAL_GAMMA: f64 = 2.0;
/// Page size of `ListJobs` when `page_size` is 0.
const DEFAULT_PAGE_SIZE: usize = 100;

pub fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(t)
}

/// A proto enum field's raw value as the domain's value, through the proto enum `P`; a
/// value `P` does not know is an error naming `field`, with `message` of the value.
fn enum_field<P, D>(
    v: i32,
    field: &str,
    message: impl FnOnce(i32) -> String,
) -> Result<D, SpecError>
where
    P: TryFrom<i32>,
    D: From<P>,
{
    P::try_from(v)
        .map(D::from)
        .map_err(|_| SpecError::new(field, message(v)))
}
