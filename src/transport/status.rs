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

/// The HTTP status code and message of a job manager error, for the HTTP API: the gRPC
/// code of [`from_job_error`] (so that `JobError` has one mapping) turned into HTTP's by
/// the table of `google.rpc.Code`. No catch-all arm.
pub fn http_from_job_error(e: JobError) -> (u16, String) {
    let status = from_job_error(e);
    let http = match status.code() {
        Code::Ok => 200,
        Code::InvalidArgument | Code::OutOfRange => 400,
        Code::FailedPrecondition => 409,
        Code::Unauthenticated => 401,
        Code::PermissionDenied => 403,
        Code::NotFound => 404,
        Code::Aborted | Code::AlreadyExists => 409,
        Code::ResourceExhausted => 429,
        Code::Cancelled => 499,
        Code::DataLoss | Code::Unknown | Code::Internal => 500,
        Code::Unimplemented => 501,
        Code::Unavailable => 503,
        Code::DeadlineExceeded => 504,
    };
    (http, status.message().to_string())
}
