//! `GET /api/jobs/{id}/events`: a job's event log as Server-Sent Events. Each event's
//! `id:` is its seq, so a browser that reconnects sends `Last-Event-ID` and resumes right
//! after it (no gap, no duplicate); `?from_seq=N` starts at seq N. After the job's last
//! event comes `event: end`. At a server shutdown the stream closes without `end`, so an
//! `EventSource` reconnects (to the restarted server) and resumes.
//!
//! The stream is a [`Subscription`] (a position in the job's log): it holds references to
//! the events of one batch at most and encodes one event each time the connection asks
//! for more, so a slow browser costs no memory beyond the log the job keeps anyway.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use tokio::sync::watch;

use super::HttpState;
use super::error::ApiError;
use super::views::{EndView, EventView};
use crate::domain::{JobEvent, SpecError};
use crate::jobs::{JobManager, Subscription};
use crate::observability::{WatcherGuard, WatcherKind};

/// `GET /api/jobs/{id}/events[?from_seq=N]`, header `Last-Event-ID: SEQ`.
pub async fn events(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let from_seq = first_seq(&params, &headers)?;
    let sub = state.jobs.subscribe(&id, from_seq)?;
    let follow = Follow {
        jobs: state.jobs.clone(),
        id,
        sub,
        pending: VecDeque::new(),
        last_seq: from_seq.saturating_sub(1),
        shutdown: state.shutdown.clone(),
        done: false,
        _watcher: state.jobs.metrics().watcher(WatcherKind::Sse),
    };
    Ok(Sse::new(follow.into_stream()).keep_alive(KeepAlive::default()))
}

/// The first seq to send: after `Last-Event-ID` (a reconnecting browser), else
/// `from_seq`, else 1.
fn first_seq(params: &HashMap<String, String>, headers: &HeaderMap) -> Result<u64, SpecError> {
    for key in params.keys() {
        if key != "from_seq" {
            return Err(SpecError::new(
                key.as_str(),
                "is not a parameter of GET /api/jobs/{id}/events; use from_seq (or the Last-Event-ID header)",
            ));
        }
    }
    if let Some(last) = headers.get("last-event-id") {
        let text = last.to_str().unwrap_or_default().trim();
        let seq: u64 = text.parse().map_err(|_| {
            SpecError::new(
                "Last-Event-ID",
                format!("'{text}' is not an event seq; send the id: of the last event received, a whole number"),
            )
        })?;
        return seq.checked_add(1).ok_or_else(|| {
            SpecError::new(
                "Last-Event-ID",
                format!(
                    "'{text}' is beyond every event seq; send the id: of the last event received"
                ),
            )
        });
    }
    match params.get("from_seq") {
        None => Ok(1),
        Some(v) => v.parse::<u64>().map(|n| n.max(1)).map_err(|_| {
            SpecError::new(
                "from_seq",
                format!("'{v}' is not a seq; use a whole number (1 is the first event)"),
            )
        }),
    }
}

/// One SSE connection's position in the job's log.
struct Follow {
    jobs: JobManager,
    id: String,
    sub: Subscription,
    /// The rest of the last batch: references into the job's log.
    pending: VecDeque<Arc<JobEvent>>,
    last_seq: u64,
    shutdown: watch::Receiver<bool>,
    done: bool,
    /// Counts this connection in `gradstream_watchers{stream="sse"}` while it lives.
    _watcher: WatcherGuard,
}

impl Follow {
    fn into_stream(self) -> impl Stream<Item = Result<Event, Infallible>> {
        futures_util::stream::unfold(self, |mut f| async move {
            let event = f.next().await?;
            Some((Ok(event), f))
        })
    }

    /// The next SSE event: a job event, then `end` once; `None` when the stream closes.
    async fn next(&mut self) -> Option<Event> {
        if self.done {
            return None;
        }
        loop {
            if let Some(e) = self.pending.pop_front() {
                self.last_seq = e.seq;
                return Some(job_event(&e));
            }
            let batch = tokio::select! {
                batch = self.sub.next_batch() => batch,
                // The server is stopping: close without `end`, the job is not over.
                _ = self.shutdown.wait_for(|&stopped| stopped) => {
                    self.done = true;
                    return None;
                }
            };
            match batch {
                Some(batch) => self.pending.extend(batch),
                None => {
                    self.done = true;
                    return self.end();
                }
            }
        }
    }

    /// After the log's last event: `event: end` if the job has ended; nothing (the
    /// connection closes) if its streams were closed by a shutdown with the job
    /// unfinished, so that the browser reconnects later and resumes.
    fn end(&self) -> Option<Event> {
        let snap = self.jobs.get(&self.id).ok()?;
        if !snap.status.is_terminal() {
            return None;
        }
        let end = EndView {
            status: snap.status.as_str(),
            message: &snap.message,
            last_seq: self.last_seq,
        };
        Some(Event::default().event("end").data(json(&end)))
    }
}

fn job_event(e: &JobEvent) -> Event {
    Event::default()
        .id(e.seq.to_string())
        .data(json(&EventView::of(e)))
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value)
        .unwrap_or_else(|e| format!(r#"{{"error":"cannot encode the event as JSON: {e}"}}"#))
}
