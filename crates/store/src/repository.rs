//! Jobs and their event logs, as the service sees them: what a backend must keep.

use std::time::SystemTime;

use gradstream_domain::{JobEvent, JobKind, JobSpec, RunInfo};

use super::StoreError;

/// A job as stored: what was submitted, and everything that happened to it.
#[derive(Debug, Clone)]
pub struct StoredJob {
    pub id: String,
    pub request_id: Option<String>,
    pub kind: JobKind,
    pub spec: JobSpec,
    pub created: SystemTime,
    pub info: Option<RunInfo>,
    pub events: Vec<JobEvent>,
}

/// One write, applied in order by the writer.
#[derive(Debug, Clone, Copy)]
pub enum Write<'a> {
    Event(&'a JobEvent),
    Info { job_id: &'a str, info: &'a RunInfo },
}

/// Every job, its spec and its event log. Times are kept to the nanosecond and every f64
/// (NaN included) reads back bit for bit.
pub trait JobRepository: Send + Sync {
    /// Records a submitted job. A request id or job id already taken is a
    /// [`Conflict`](crate::StoreErrorKind::Conflict).
    fn insert_job(
        &self,
        id: &str,
        request_id: Option<&str>,
        kind: &JobKind,
        spec: &JobSpec,
        created: SystemTime,
    ) -> Result<(), StoreError>;

    /// The job a request id created, if any.
    fn job_for_request(&self, request_id: &str) -> Result<Option<String>, StoreError>;

    /// Applies a batch atomically: every write or none. Events come in seq order per job;
    /// a seq already stored is a `Conflict`, an event of an unknown job `NotFound`.
    fn append(&self, writes: &[Write<'_>]) -> Result<(), StoreError>;

    /// Every job with its events (in seq order), oldest job first.
    fn load_jobs(&self) -> Result<Vec<StoredJob>, StoreError>;

    /// Removes a job and everything of it: its record, its events and its checkpoints.
    /// Removing an unknown job is not an error.
    fn delete_job(&self, job_id: &str) -> Result<(), StoreError>;
}
