//! HTTP beside gRPC: the browser dashboard, its JSON + Server-Sent Events API and the
//! operators' endpoints, bridged to the same [`JobManager`] as the gRPC services (no second
//! source of truth). Served on `--http-listen` (default 127.0.0.1:8080), its own port, so
//! that the gRPC server keeps tonic's HTTP/2 settings untouched.

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::jobs::JobManager;

mod metrics;

/// What every HTTP handler reads: cheap to clone.
#[derive(Clone)]
pub struct HttpState {
    pub jobs: JobManager,
    /// Becomes `true` when the server shuts down: long-lived responses (event streams)
    /// end then, so that the graceful shutdown does not wait on them.
    pub shutdown: watch::Receiver<bool>,
}

/// Every HTTP route of the server.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics::metrics))
        .with_state(state)
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
