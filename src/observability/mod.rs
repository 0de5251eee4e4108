//! Observability: Prometheus metrics ([`metrics`], served at `GET /metrics`), OpenTelemetry
//! traces ([`traces`], the RPC layer [`rpc`]) and the TensorBoard export ([`tensorboard`]).
//!
//! The job manager owns one [`Observability`] per server. Its writer thread reports what it
//! committed here (so metrics and TensorBoard only ever see what is on disk, exactly once),
//! the transport wraps its server in [`rpc::RpcLayer`] and holds a [`WatcherGuard`] in each
//! stream. Nothing here runs inside the engine.

pub mod metrics;
pub mod rpc;
pub mod tensorboard;
pub mod traces;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use metrics::{Metrics, WatcherGuard, WatcherKind};
use tensorboard::TensorBoard;
pub use traces::{EpochSpans, Otlp, TraceParent};

use crate::domain::{JobEvent, RunInfo};

/// What one server observes: its metrics and, with `--tensorboard-dir`, its export.
pub struct Observability {
    pub metrics: Arc<Metrics>,
    tensorboard: Option<TensorBoard>,
}

impl Observability {
    /// Fresh metrics; a TensorBoard export under `tensorboard_dir` when given.
    pub fn new(tensorboard_dir: Option<PathBuf>) -> std::io::Result<Self> {
        Ok(Self {
            metrics: Arc::new(Metrics::new()),
            tensorboard: tensorboard_dir.map(TensorBoard::start).transpose()?,
        })
    }

    /// The writer thread committed `event` of the job named `job_name`.
    pub fn event_committed(&self, job_name: &str, event: &Arc<JobEvent>) {
        self.metrics.event_committed(event);
        if let Some(tb) = &self.tensorboard {
            tb.event_committed(job_name, event);
        }
    }

    /// The writer thread committed a run's facts.
    pub fn run_info_committed(&self, job_id: &str, info: &RunInfo) {
        self.metrics.run_info(job_id, info);
    }

    /// One transaction of the writer thread took `elapsed`.
    pub fn store_committed(&self, elapsed: Duration) {
        self.metrics.store_committed(elapsed);
    }

    /// Waits until the TensorBoard export has written everything sent so far.
    pub fn flush(&self) {
        if let Some(tb) = &self.tensorboard {
            tb.flush();
        }
    }
}
