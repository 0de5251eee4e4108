//! The server's Prometheus metrics: one [`Metrics`] per server (per `JobManager`), with its
//! own registry, so that servers in one process (the tests run several) never share a
//! counter. Every metric is changed by one named function here, called from the few places
//! where what it counts happens (the writer thread's commits, the RPC layer, the streams);
//! nothing else knows a metric's name.
//!
//! Names follow Prometheus' conventions: the `gradstream_` prefix, base units (seconds),
//! `_total` on counters, and no job ids in labels (their number is unbounded).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::{EncodeLabelSet, text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::domain::{EventKind, JobEvent, JobStatus, RunInfo};

/// Epoch durations: 10 ms to about 20 minutes.
const EPOCH_SECONDS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 300.0, 1200.0,
];
/// Time in the queue: 1 ms to an hour.
const QUEUE_SECONDS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0, 3600.0,
];
/// RPC latency (streams last as long as they stream): 0.5 ms to 10 minutes.
const RPC_SECONDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 60.0, 600.0,
];
/// One state-store transaction: 0.1 ms to 10 s.
const COMMIT_SECONDS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 1.0, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabels {
    stream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    method: String,
    code: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The kinds of long-lived streams that follow a job: `gradstream_watchers{stream=...}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatcherKind {
    /// A gRPC `WatchJob` stream.
    WatchJob,
    /// A gRPC `Train` (or `FindLearningRate`) stream.
    Train,
    /// An HTTP Server-Sent Events stream.
    Sse,
}

impl WatcherKind {
    fn label(self) -> &'static str {
        match self {
            Self::WatchJob => "watch_job",
            Self::Train => "train",
            Self::Sse => "sse",
        }
    }
}

/// Counts one active watcher for as long as it lives: take one with
/// [`Metrics::watcher`] when a stream starts and keep it in the stream; dropping the
/// stream (its end, or the client going away) drops the guard.
#[must_use = "the watcher is counted only while the guard lives"]
pub struct WatcherGuard(Gauge);

impl Drop for WatcherGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The metrics of one server.
pub struct Metrics {
    registry: Registry,
    jobs: Family<StatusLabels, Gauge>,
    jobs_finished: Family<OutcomeLabels, Counter>,
    epochs: Counter,
    training_samples: Counter,
    epoch_duration: Histogram,
    queue_wait: Histogram,
    watchers: Family<StreamLabels, Gauge>,
    events: Counter,
    rpc_requests: Family<RpcLabels, Counter>,
    rpc_duration: HistogramFamily<RpcLabels>,
    store_commit: Histogram,
    /// What the writer thread remembers between commits: when each waiting job was
    /// queued, and each run's training rows per epoch.
    pending: Mutex<Pending>,
    /// Held while the status gauge is set and the registry encoded, so that two scrapes
    /// at once each see their own job counts.
    scrape: Mutex<()>,
}

#[derive(Default)]
struct Pending {
    queued_at: HashMap<String, SystemTime>,
    train_rows: HashMap<String, u64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("gradstream");
        let jobs = Family::<StatusLabels, Gauge>::default();
        registry.register("jobs", "Jobs by status", jobs.clone());
        let jobs_finished = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "jobs_finished",
            "Jobs that reached a terminal status, by outcome (succeeded, failed, cancelled)",
            jobs_finished.clone(),
        );
        let epochs = Counter::default();
        registry.register(
            "epochs",
            "Training epochs completed (every run, ensemble members included)",
            epochs.clone(),
        );
        let training_samples = Counter::default();
        registry.register(
            "training_samples",
            "Training rows processed: each completed epoch adds its run's training split (after resampling)",
            training_samples.clone(),
        );
        let epoch_duration = Histogram::new(EPOCH_SECONDS);
        registry.register_with_unit(
            "epoch_duration",
            "Wall time of a training epoch",
            Unit::Seconds,
            epoch_duration.clone(),
        );
        let queue_wait = Histogram::new(QUEUE_SECONDS);
        registry.register_with_unit(
            "queue_wait",
            "Time a job waited QUEUED before it started RUNNING",
            Unit::Seconds,
            queue_wait.clone(),
        );
        let watchers = Family::<StreamLabels, Gauge>::default();
        registry.register(
            "watchers",
            "Open streams following a job, by stream (watch_job, train, sse)",
            watchers.clone(),
        );
        for kind in [WatcherKind::WatchJob, WatcherKind::Train, WatcherKind::Sse] {
            // Each stream kind is exposed (at 0) before its first watcher.
            watchers.get_or_create_owned(&StreamLabels {
                stream: kind.label().into(),
            });
        }
        let events = Counter::default();
        registry.register(
            "events_appended",
            "Job events committed to the state store (and so shown to watchers)",
            events.clone(),
        );
        let rpc_requests = Family::<RpcLabels, Counter>::default();
        registry.register(
            "grpc_requests",
            "gRPC requests handled, by method and status code (streams counted when they end)",
            rpc_requests.clone(),
        );
        let rpc_duration: HistogramFamily<RpcLabels> =
            Family::new_with_constructor(|| Histogram::new(RPC_SECONDS));
        registry.register_with_unit(
            "grpc_request_duration",
            "gRPC request latency, from the request's headers to the response's end, by method and status code",
            Unit::Seconds,
            rpc_duration.clone(),
        );
        let store_commit = Histogram::new(COMMIT_SECONDS);
        registry.register_with_unit(
            "store_commit_duration",
            "Time of one state-store transaction of the writer thread (events and run info)",
            Unit::Seconds,
            store_commit.clone(),
        );
        Self {
            registry,
            jobs,
            jobs_finished,
            epochs,
            training_samples,
            epoch_duration,
            queue_wait,
            watchers,
            events,
            rpc_requests,
            rpc_duration,
            store_commit,
            pending: Mutex::new(Pending::default()),
            scrape: Mutex::new(()),
        }
    }

    /// Every metric in the OpenMetrics text format (Prometheus' exposition format), with
    /// the statuses of the server's jobs (the gauge is set from them at each scrape, so it
    /// can never drift).
    pub fn render(&self, statuses: impl IntoIterator<Item = JobStatus>) -> String {
        let _one = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        let mut counts: HashMap<JobStatus, i64> = JobStatus::ALL.iter().map(|s| (*s, 0)).collect();
        for s in statuses {
            *counts.entry(s).or_default() += 1;
        }
        for (status, n) in counts {
            self.jobs
                .get_or_create(&StatusLabels {
                    status: status.as_str().to_ascii_lowercase(),
                })
                .set(n);
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = text::encode(&mut out, &self.registry);
        out
    }

    /// A job's run facts were committed: remembers its training rows per epoch (for an
    /// ensemble, a member's draw).
    pub fn run_info(&self, job_id: &str, info: &RunInfo) {
        let rows = if info.resampled_class_counts.is_empty() {
            info.train_samples
        } else {
            info.resampled_class_counts.iter().sum()
        };
        self.pending().train_rows.insert(job_id.to_string(), rows);
    }

    /// An event was committed to the store: counts it and what it says.
    pub fn event_committed(&self, event: &JobEvent) {
        self.events.inc();
        match &event.kind {
            EventKind::Status { status, .. } => self.status_committed(event, *status),
            EventKind::Epoch(end) if !end.ensemble => self.epoch_done(&event.job_id, end.seconds),
            _ => {}
        }
    }

    fn status_committed(&self, event: &JobEvent, status: JobStatus) {
        match status {
            JobStatus::Queued => {
                self.pending()
                    .queued_at
                    .insert(event.job_id.clone(), event.time);
            }
            JobStatus::Running => {
                let queued = self.pending().queued_at.remove(&event.job_id);
                if let Some(waited) = queued.and_then(|q| event.time.duration_since(q).ok()) {
                    self.queue_wait.observe(waited.as_secs_f64());
                }
            }
            terminal => self.job_finished(&event.job_id, terminal),
        }
    }

    /// An epoch was committed, after `seconds` of training.
    fn epoch_done(&self, job_id: &str, seconds: f64) {
        self.epochs.inc();
        self.epoch_duration.observe(seconds);
        let rows = self.pending().train_rows.get(job_id).copied();
        if let Some(rows) = rows {
            self.training_samples.inc_by(rows);
        }
    }

    /// A job reached a terminal status.
    fn job_finished(&self, job_id: &str, outcome: JobStatus) {
        self.jobs_finished
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str().to_ascii_lowercase(),
            })
            .inc();
        let mut pending = self.pending();
        pending.queued_at.remove(job_id);
        pending.train_rows.remove(job_id);
    }

    /// One transaction of the writer thread took `elapsed`.
    pub fn store_committed(&self, elapsed: Duration) {
        self.store_commit.observe(elapsed.as_secs_f64());
    }

    /// An RPC ended with `code` (its gRPC name, such as `OK` or `NOT_FOUND`).
    pub fn rpc_done(&self, method: &str, code: &str, elapsed: Duration) {
        let labels = RpcLabels {
            method: method.to_string(),
            code: code.to_string(),
        };
        self.rpc_requests.get_or_create(&labels).inc();
        self.rpc_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a watcher of `kind` until the guard is dropped.
    pub fn watcher(&self, kind: WatcherKind) -> WatcherGuard {
        let gauge = self.watchers.get_or_create_owned(&StreamLabels {
            stream: kind.label().into(),
        });
        gauge.inc();
        WatcherGuard(gauge)
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}
