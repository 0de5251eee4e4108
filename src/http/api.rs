//! The jobs JSON API: list (with the filters and paging of [`JobManager::page`]), get and
//! cancel. Each handler is a short recipe: parse, call the job manager, map the error,
//! answer with a view.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};

use super::HttpState;
use super::error::ApiError;
use super::views::{JobPage, JobView};
use crate::domain::{JobStatus, SpecError};
use crate::jobs::JobQuery;

/// Jobs a page holds when `page_size` is not given.
const DEFAULT_PAGE_SIZE: usize = 100;

/// `GET /api/jobs?status=RUNNING,QUEUED&name=demo&page_size=50&page_token=...`
pub async fn list(
    State(state): State<HttpState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let query = job_query(&params)?;
    let (snaps, next) = state.jobs.page(&query)?;
    let page = JobPage {
        jobs: snaps.iter().map(JobView::of).collect(),
        next_page_token: next,
    };
    Ok(Json(page).into_response())
}

/// `GET /api/jobs/{id}`
pub async fn get(
    State(state): State<HttpState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let snap = state.jobs.get(&id)?;
    Ok(Json(JobView::of(&snap)).into_response())
}

/// `POST /api/jobs/{id}/cancel`: a queued job at once, a running one at its next
/// iteration; a finished job is returned unchanged.
pub async fn cancel(
    State(state): State<HttpState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let snap = state.jobs.cancel(&id)?;
    Ok(Json(JobView::of(&snap)).into_response())
}

/// The list's query parameters, each bad one named with its fix.
fn job_query(params: &HashMap<String, String>) -> Result<JobQuery, SpecError> {
    let mut query = JobQuery {
        page_size: DEFAULT_PAGE_SIZE,
        ..JobQuery::default()
    };
    for (key, value) in params {
        match key.as_str() {
            "status" => {
                query.statuses = value
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(parse_status)
                    .collect::<Result<_, _>>()?;
            }
            "name" => query.name_contains = value.clone(),
            "page_size" => {
                query.page_size = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| {
                        SpecError::new(
                            "page_size",
                            format!(
                                "'{value}' is not a page size; use a whole number from 1 to 1000"
                            ),
                        )
                    })?;
            }
            "page_token" => query.after = Some(value.clone()).filter(|t| !t.is_empty()),
            other => {
                return Err(SpecError::new(
                    other,
                    "is not a parameter of GET /api/jobs; use status, name, page_size or page_token",
                ));
            }
        }
    }
    Ok(query)
}

fn parse_status(s: &str) -> Result<JobStatus, SpecError> {
    let s = s.trim();
    JobStatus::ALL
        .into_iter()
        .find(|st| st.as_str().eq_ignore_ascii_case(s))
        .ok_or_else(|| {
            SpecError::new(
                "status",
                format!(
                    "'{s}' is not a job status; use one or more of QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED, separated by commas"
                ),
            )
        })
}
