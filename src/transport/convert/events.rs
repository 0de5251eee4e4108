//! A job's events for `WatchJob` and `FindLearningRate`, with what they carry: status
//! changes, progress, epoch ends, metrics, curves and range-test points (domain → pb).

use super::timestamp;
use crate::domain::{
    EpochEnd, EventKind, IterationProgress, JobEvent, JobStatus, LayerDiagnostics, LrPoint,
    LrSuggestion, RunId,
};
use crate::jobs::JobError;
use crate::metrics::curves::{ClassCurves, PrCurve, RocCurve};
use crate::metrics::{Averages, ClassMetrics, ConfusionMatrix, Metrics};
use crate::transport::pb;

/// What a range-test job's event means to a `FindLearningRate` stream: a point, the
/// result, the job's failure or cancellation, or nothing (its other status changes).
pub fn lr_finder_event(e: &JobEvent) -> Option<Result<pb::LrFinderEvent, JobError>> {
    use pb::lr_finder_event::Kind;
    let kind = match &e.kind {
        EventKind::RangePoint(p) => Kind::Point(p.into()),
        EventKind::RangeResult(s) => Kind::Result(s.into()),
        EventKind::Status { status, message }
            if matches!(status, JobStatus::Failed | JobStatus::Cancelled) =>
        {
            return Some(Err(JobError::RangeTestEnded {
                id: e.job_id.clone(),
                status: *status,
                message: message.clone(),
            }));
        }
        _ => return None,
    };
    Some(Ok(pb::LrFinderEvent {
        kind: Some(kind),
        job_id: e.job_id.clone(),
    }))
}

impl From<JobStatus> for pb::JobStatus {
    fn from(s: JobStatus) -> Self {
        match s {
            JobStatus::Queued => pb::JobStatus::Queued,
            JobStatus::Running => pb::JobStatus::Running,
            JobStatus::Succeeded => pb::JobStatus::Succeeded,
            JobStatus::Failed => pb::JobStatus::Failed,
            JobStatus::Cancelled => pb::JobStatus::Cancelled,
        }
    }
}

impl From<&JobEvent> for pb::JobEvent {
    fn from(e: &JobEvent) -> Self {
        use pb::job_event::Kind;
        let kind = match &e.kind {
            EventKind::Status { status, message } => Kind::Status(pb::StatusChange {
                status: pb::JobStatus::from(*status) as i32,
                message: message.clone(),
            }),
            EventKind::Iteration(p) => Kind::Iteration(iteration_pb(p, e.run)),
            EventKind::Epoch(x) => Kind::Epoch(epoch_end_pb(x, e.run)),
            EventKind::RangePoint(p) => Kind::RangePoint(p.into()),
            EventKind::RangeResult(r) => Kind::RangeResult(r.into()),
        };
        pb::JobEvent {
            job_id: e.job_id.clone(),
            seq: e.seq,
            time: Some(timestamp(e.time)),
            kind: Some(kind),
            run: e.run.0,
        }
    }
}

impl From<&LrPoint> for pb::LrPoint {
    fn from(p: &LrPoint) -> Self {
        pb::LrPoint {
            iteration: p.iteration,
            learning_rate: p.learning_rate,
            loss: p.loss,
            smoothed_loss: p.smoothed_loss,
        }
    }
}

impl From<&LrSuggestion> for pb::LrSuggestion {
    fn from(s: &LrSuggestion) -> Self {
        pb::LrSuggestion {
            suggested_learning_rate: s.suggested,
            min_loss_learning_rate: s.min_loss,
            diverged: s.diverged,
            iterations: s.iterations,
        }
    }
}

/// Progress of `run`; `member` is the run's place among the job's children.
fn iteration_pb(p: &IterationProgress, run: RunId) -> pb::IterationProgress {
    pb::IterationProgress {
        epoch: p.epoch,
        iteration: p.iteration,
        iterations_per_epoch: p.iterations_per_epoch,
        global_step: p.global_step,
        loss: p.loss,
        learning_rate: p.learning_rate,
        samples_per_second: p.samples_per_second,
        member: run.child_index(),
    }
}

/// An epoch of `run`; `member` is the run's place among the job's children.
pub(super) fn epoch_end_pb(e: &EpochEnd, run: RunId) -> pb::EpochEnd {
    pb::EpochEnd {
        epoch: e.epoch,
        train: Some((&e.train).into()),
        validation: e.validation.as_ref().map(pb::Metrics::from),
        seconds: e.seconds,
        best_epoch: e.best_epoch,
        best_run: e.best_run.0,
        member: run.child_index(),
        ensemble: e.ensemble,
        generalization_gap: e.generalization_gap,
        diagnostics_seconds: e.diagnostics_seconds,
        overfitting: e.overfitting,
        layers: e.layers.iter().map(pb::LayerDiagnostics::from).collect(),
    }
}

impl From<&LayerDiagnostics> for pb::LayerDiagnostics {
    fn from(l: &LayerDiagnostics) -> Self {
        pb::LayerDiagnostics {
            name: l.name.clone(),
            activation_mean: l.activation_mean,
            activation_std: l.activation_std,
            saturated_fraction: l.saturated_fraction,
            dead_fraction: l.dead_fraction,
            weight_norm: l.weight_norm,
            gradient_norm: l.gradient_norm,
            update_ratio: l.update_ratio,
        }
    }
}

impl From<&Metrics> for pb::Metrics {
    fn from(m: &Metrics) -> Self {
        pb::Metrics {
            loss: m.loss,
            accuracy: m.accuracy,
            confusion_matrix: Some((&m.confusion_matrix).into()),
            per_class: m.per_class.iter().map(pb::ClassMetrics::from).collect(),
            r#macro: Some((&m.macro_avg).into()),
            weighted: Some((&m.weighted).into()),
            roc_auc: m.roc_auc,
            curves: m.curves.iter().map(pb::ClassCurves::from).collect(),
            average_precision: m.average_precision,
        }
    }
}

impl From<&Averages> for pb::Averages {
    fn from(a: &Averages) -> Self {
        pb::Averages {
            precision: a.precision,
            recall: a.recall,
            f1: a.f1,
        }
    }
}

impl From<&ClassMetrics> for pb::ClassMetrics {
    fn from(c: &ClassMetrics) -> Self {
        pb::ClassMetrics {
            label: c.label.clone(),
            precision: c.precision,
            recall: c.recall,
            f1: c.f1,
            support: c.support,
            roc_auc: c.roc_auc,
        }
    }
}

impl From<&ConfusionMatrix> for pb::ConfusionMatrix {
    fn from(c: &ConfusionMatrix) -> Self {
        pb::ConfusionMatrix {
            labels: c.labels.clone(),
            counts: c.counts.clone(),
        }
    }
}

impl From<&ClassCurves> for pb::ClassCurves {
    fn from(c: &ClassCurves) -> Self {
        pb::ClassCurves {
            label: c.label.clone(),
            roc: c.roc.as_ref().map(pb::RocCurve::from),
            pr: c.pr.as_ref().map(pb::PrCurve::from),
        }
    }
}

impl From<&RocCurve> for pb::RocCurve {
    fn from(r: &RocCurve) -> Self {
        pb::RocCurve {
            fpr: r.fpr.clone(),
            tpr: r.tpr.clone(),
            thresholds: r.thresholds.clone(),
        }
    }
}

impl From<&PrCurve> for pb::PrCurve {
    fn from(p: &PrCurve) -> Self {
        pb::PrCurve {
            precision: p.precision.clone(),
            recall: p.recall.clone(),
            thresholds: p.thresholds.clone(),
            average_precision: p.average_precision,
        }
    }
}
