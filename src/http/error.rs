//! The HTTP API's errors: a JSON body `{"error": "..."}` that names the field and the fix,
//! with the status code of the one mapping of [`JobError`] (`transport::status`).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::domain::SpecError;
use crate::jobs::JobError;
use crate::transport::status::http_from_job_error;

/// An error answer of the HTTP API.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        let (code, message) = http_from_job_error(e);
        Self {
            status: StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message,
        }
    }
}

/// A bad query parameter or header: 400, like a bad spec field over gRPC.
impl From<SpecError> for ApiError {
    fn from(e: SpecError) -> Self {
        JobError::InvalidSpec(e).into()
    }
}

impl ApiError {
    /// A blocking task that did not complete: a bug or a server going away.
    pub fn task_failed(e: tokio::task::JoinError) -> Self {
        JobError::Internal(format!("request task failed: {e}")).into()
    }
}

#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: &self.message,
            }),
        )
            .into_response()
    }
}

/// A route that does not exist, as a JSON error like every other API answer.
pub async fn no_route(uri: axum::extract::OriginalUri) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: format!(
            "no API endpoint at {}; see the README's \"Dashboard and HTTP API\" for the endpoints",
            uri.path()
        ),
    }
}
