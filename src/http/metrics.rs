//! `GET /metrics`: the server's Prometheus metrics in the OpenMetrics 1.0 text format
//! (Prometheus' own exposition format, standardized; Prometheus scrapes it natively), as
//! `crate::observability::metrics` writes them.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use super::HttpState;

/// The content type of the OpenMetrics text format.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    let jobs = state.jobs.clone();
    // Reading every job's status takes each job's lock briefly; off the async threads.
    match tokio::task::spawn_blocking(move || jobs.metrics_text()).await {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        // The task panicked: a bug, never the request's fault.
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the metrics could not be gathered: {e}\n"),
        )
            .into_response(),
    }
}
