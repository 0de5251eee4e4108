//! HTTP beside gRPC: the browser dashboard, its JSON + Server-Sent Events API and the
//! operators' endpoints, bridged to the same [`JobManager`] as the gRPC services (no second
//! source of truth). Served on `--http-listen` (default 127.0.0.1:8080), its own port, so
//! that the gRPC server keeps tonic's HTTP/2 settings untouched.
//!
//! `api.rs` jobs as JSON, `sse.rs` a job's events as Server-Sent Events, `export.rs` model
//! downloads, `views.rs` the JSON shapes, `error.rs` errors as JSON with their status code,
//! `assets.rs` the embedded dashboard.

mod api;
mod assets;
mod error;
mod export;
mod metrics;
mod sse;
mod views;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::jobs::JobManager;

/// What every HTTP handler reads: cheap to clone.
#[derive(Clone)]
pub struct HttpState {
    pub jobs: JobManager,
    /// Becomes `true` when the server shuts down: long-lived responses (event streams)
    /// end then, so that the graceful shutdown does not wait on them.
    pub shutdown: watch::Receiver<bool>,
}

/// Every HTTP route of the server: the dashboard, the API under `/api`, `/healthz`.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/", get(assets::index))
        .route("/assets/{name}", get(assets::asset))
        .nest("/api", api_routes())
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics::metrics))
        .with_state(state)
}

/// The JSON + SSE API (see the README's "Dashboard and HTTP API").
fn api_routes() -> Router<HttpState> {
    Router::new()
        .route("/jobs", get(api::list))
        .route("/jobs/{id}", get(api::get))
        .route("/jobs/{id}/events", get(sse::events))
        .route("/jobs/{id}/cancel", post(api::cancel))
        .route("/jobs/{id}/model", get(export::download))
        .fallback(error::no_route)
}

/// Liveness for load balancers and Kubernetes probes: the process answers HTTP.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Serves `router` on `listener` until `shutdown` completes, then finishes the requests
/// in flight (streams end when the server's shutdown ends them).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
