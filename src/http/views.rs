//! The HTTP API's JSON shapes: small views over the domain's types (which derive serde),
//! so that the API's names (`"RUNNING"`, `"type": "epoch"`, times in Unix milliseconds)
//! do not depend on how the domain spells its enums.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::domain::{
    EpochEnd, EventKind, IterationProgress, JobEvent, JobKind, JobSpec, LrPoint, LrSuggestion,
    ModelSelection, RangeTest,
};
use crate::jobs::JobSnapshot;

/// A job, as `GET /api/jobs/{id}` and each entry of `GET /api/jobs` show it.
#[derive(Serialize)]
pub struct JobView<'a> {
    pub id: &'a str,
    pub name: &'a str,
    /// `"training"` or `"range_test"`.
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range_test: Option<&'a RangeTest>,
    /// `QUEUED`, `RUNNING`, `SUCCEEDED`, `FAILED` or `CANCELLED`.
    pub status: &'static str,
    pub message: &'a str,
    pub created_ms: u64,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    pub epochs_completed: u32,
    /// Epochs the job trains over all of its runs (an ensemble's members × epochs).
    pub epochs_total: u64,
    /// `epochs_completed / epochs_total`, in [0, 1].
    pub progress: f64,
    pub best: Option<BestView>,
    /// The last recorded epoch's losses and accuracy (its full metrics are in its event).
    pub last_epoch: Option<EpochSummary>,
    pub device: &'a str,
    pub labels: &'a [String],
    pub parameter_count: u64,
    pub train_samples: u64,
    pub validation_samples: u64,
    pub class_weights: &'a [f64],
    pub train_class_counts: &'a [u64],
    pub resampled_class_counts: &'a [u64],
    /// The spec as the server keeps it (the domain's `JobSpec`, defaults filled in).
    pub spec: &'a JobSpec,
}

/// The best model so far.
#[derive(Serialize)]
pub struct BestView {
    pub run: u32,
    pub epoch: u32,
    /// `loss`, `accuracy`, `macro_f1`, `roc_auc` or `average_precision`.
    pub metric: &'static str,
    pub value: f64,
}

#[derive(Serialize)]
pub struct EpochSummary {
    pub run: u32,
    pub epoch: u32,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub validation_loss: Option<f64>,
    pub validation_accuracy: Option<f64>,
}

impl<'a> JobView<'a> {
    pub fn of(snap: &'a JobSnapshot) -> Self {
        let spec = &snap.spec;
        let epochs_total = match snap.kind {
            JobKind::Training => u64::from(spec.epochs) * spec.members(),
            JobKind::RangeTest(_) => 0,
        };
        let progress = if snap.status == crate::domain::JobStatus::Succeeded {
            1.0
        } else if epochs_total == 0 {
            0.0
        } else {
            (f64::from(snap.epochs_completed) / epochs_total as f64).min(1.0)
        };
        let run = snap.last_model.map_or(0, |(r, _)| r.0);
        Self {
            id: &snap.id,
            name: &spec.name,
            kind: match snap.kind {
                JobKind::Training => "training",
                JobKind::RangeTest(_) => "range_test",
            },
            range_test: match &snap.kind {
                JobKind::RangeTest(t) => Some(t),
                JobKind::Training => None,
            },
            status: snap.status.as_str(),
            message: &snap.message,
            created_ms: millis(snap.created),
            started_ms: snap.started.map(millis),
            finished_ms: snap.finished.map(millis),
            epochs_completed: snap.epochs_completed,
            epochs_total,
            progress,
            best: snap.best.map(|b| BestView {
                run: b.run.0,
                epoch: b.epoch,
                metric: metric_name(spec.best_model_metric),
                value: b.value,
            }),
            last_epoch: snap.last_epoch.as_ref().map(|e| EpochSummary {
                run,
                epoch: e.epoch,
                train_loss: e.train.loss,
                train_accuracy: e.train.accuracy,
                validation_loss: e.validation.as_ref().map(|m| m.loss),
                validation_accuracy: e.validation.as_ref().map(|m| m.accuracy),
            }),
            device: &snap.device,
            labels: &snap.labels,
            parameter_count: snap.parameter_count,
            train_samples: snap.train_samples,
            validation_samples: snap.validation_samples,
            class_weights: &snap.class_weights,
            train_class_counts: &snap.train_class_counts,
            resampled_class_counts: &snap.resampled_class_counts,
            spec,
        }
    }
}

/// `GET /api/jobs`: a page of jobs, oldest first.
#[derive(Serialize)]
pub struct JobPage<'a> {
    pub jobs: Vec<JobView<'a>>,
    /// Pass as `page_token` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// One event of a job's log, the `data:` of an SSE event: `seq`, `run`, `time_ms`, `type`
/// and the fields of that type.
#[derive(Serialize)]
pub struct EventView<'a> {
    pub seq: u64,
    pub run: u32,
    pub time_ms: u64,
    #[serde(flatten)]
    pub kind: KindView<'a>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum KindView<'a> {
    Status {
        status: &'static str,
        message: &'a str,
    },
    Iteration(&'a IterationProgress),
    Epoch(&'a EpochEnd),
    RangePoint(&'a LrPoint),
    RangeResult(&'a LrSuggestion),
}

impl<'a> EventView<'a> {
    pub fn of(e: &'a JobEvent) -> Self {
        Self {
            seq: e.seq,
            run: e.run.0,
            time_ms: millis(e.time),
            kind: match &e.kind {
                EventKind::Status { status, message } => KindView::Status {
                    status: status.as_str(),
                    message,
                },
                EventKind::Iteration(p) => KindView::Iteration(p),
                EventKind::Epoch(e) => KindView::Epoch(e),
                EventKind::RangePoint(p) => KindView::RangePoint(p),
                EventKind::RangeResult(r) => KindView::RangeResult(r),
            },
        }
    }
}

/// The `data:` of the SSE `end` event: the job's final status and its last seq.
#[derive(Serialize)]
pub struct EndView<'a> {
    pub status: &'static str,
    pub message: &'a str,
    pub last_seq: u64,
}

pub fn metric_name(m: ModelSelection) -> &'static str {
    match m {
        ModelSelection::Loss => "loss",
        ModelSelection::Accuracy => "accuracy",
        ModelSelection::MacroF1 => "macro_f1",
        ModelSelection::RocAuc => "roc_auc",
        ModelSelection::AveragePrecision => "average_precision",
    }
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
