//! The one mapping from domain errors to gRPC status codes. No catch-all arm: a new error
//! kind must be given a code here.

use tonic::{Code, Status};

use crate::data::upload::UploadError;
use crate::domain::{JobStatus, SpecError};
use crate::jobs::JobError;
use crate::store::StoreErrorKind;

pub fn from_job_error(e: JobError) -> Status {
    let code = match &e {
        JobError::InvalidSpec(_) | JobError::InvalidData(_) => Code::InvalidArgument,
        JobError::NotFound(_) => Code::NotFound,
        JobError::ShuttingDown => Code::Unavailable,
        JobError::RequestIdReused(_) => Code::AlreadyExists,
        JobError::Internal(_) => Code::Internal,
        JobError::Store(e) => match e.kind() {
            StoreErrorKind::NotFound => Code::NotFound,
            StoreErrorKind::Conflict => Code::Aborted,
            // A full or read-only disk, a busy database: the server cannot do it now.
            StoreErrorKind::Unavailable | StoreErrorKind::Full | StoreErrorKind::ReadOnly => {
                Code::Unavailable
            }
            StoreErrorKind::Corrupt => Code::DataLoss,
            StoreErrorKind::TooNew => Code::FailedPrecondition,
            StoreErrorKind::Internal => Code::Internal,
        },
        JobError::UploadNotFound { .. } => Code::NotFound,
        JobError::InUse { .. } | JobError::NotFinished(_) | JobError::NoModel(_) => {
            Code::FailedPrecondition
        }
        JobError::RangeTestEnded { status, .. } => match status {
            JobStatus::Cancelled => Code::Cancelled,
            // Stopped by a shutdown: it runs again after the restart.
            JobStatus::Queued | JobStatus::Running => Code::Unavailable,
            JobStatus::Failed | JobStatus::Succeeded => Code::Internal,
        },
        JobError::Upload { error, .. } => match error {
            UploadError::Malformed(_)
            | UploadError::BadModel(_)
            | UploadError::ChecksumMismatch { .. } => Code::InvalidArgument,
            UploadError::TooLarge { .. } => Code::ResourceExhausted,
            UploadError::Io(_) => Code::Internal,
        },
    };
    Status::new(code, e.to_string())
}

pub fn from_spec_error(e: SpecError) -> Status {
    from_job_error(JobError::InvalidSpec(e))
}

/// A blocking task that did not complete (it panicked or the runtime is shutting down):
/// a bug or a server going away, never the request's fault.
pub fn from_task_error(e: tokio::task::JoinError) -> Status {
    Status::internal(format!("request task failed: {e}"))
}

/// A unary request whose body ended before its message (as tonic says it).
pub fn missing_request() -> Status {
    Status::internal("Missing request message.")
}
