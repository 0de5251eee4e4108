//! Jobs: snapshots as `pb::Job` (domain → pb), `ListJobs` queries and `FindLearningRate`
//! requests (pb → domain).

use super::{DEFAULT_PAGE_SIZE, timestamp};
use crate::domain::{JobKind, JobSpec, JobStatus, RangeTest, SpecError};
use crate::jobs::{JobQuery, JobSnapshot};
use crate::transport::pb;

impl From<&JobSnapshot> for pb::Job {
    fn from(j: &JobSnapshot) -> Self {
        let range = match j.kind {
            JobKind::RangeTest(t) => Some(t),
            JobKind::Training => None,
        };
        pb::Job {
            id: j.id.clone(),
            spec: Some((&j.spec).into()),
            status: pb::JobStatus::from(j.status) as i32,
            message: j.message.clone(),
            created: Some(timestamp(j.created)),
            started: j.started.map(timestamp),
            finished: j.finished.map(timestamp),
            epochs_completed: j.epochs_completed,
            last_epoch: j
                .last_epoch
                .as_ref()
                .zip(j.last_model)
                .map(|(e, (run, _))| super::events::epoch_end_pb(e, run)),
            parameter_count: j.parameter_count,
            labels: j.labels.clone(),
            train_samples: j.train_samples,
            validation_samples: j.validation_samples,
            device: j.device.clone(),
            best_epoch: j.best.map_or(0, |b| b.epoch),
            best_run: j.best.map_or(0, |b| b.run.0),
            best_metric_value: j.best.map(|b| b.value),
            feature_names: j.features.names.clone(),
            class_weights: j.class_weights.clone(),
            train_class_counts: j.train_class_counts.clone(),
            resampled_class_counts: j.resampled_class_counts.clone(),
            kind: match j.kind {
                JobKind::Training => pb::JobKind::Training,
                JobKind::RangeTest(_) => pb::JobKind::RangeTest,
            } as i32,
            range_min_lr: range.map(|t| t.min_lr),
            range_max_lr: range.map(|t| t.max_lr),
            range_iterations: range.map(|t| t.iterations),
        }
    }
}

/// A `FindLearningRate` request as the spec and the test's settings (unset: the defaults).
/// A function, not an impl: the request is two domain values.
pub fn range_test(req: pb::FindLearningRateRequest) -> Result<(JobSpec, RangeTest), SpecError> {
    let d = RangeTest::DEFAULT;
    Ok((
        super::job_spec(req.spec)?,
        RangeTest {
            min_lr: req.min_lr.unwrap_or(d.min_lr),
            max_lr: req.max_lr.unwrap_or(d.max_lr),
            iterations: req.iterations.unwrap_or(d.iterations),
        },
    ))
}

/// Statuses are checked first, then the page size (at most 1000; 0 means the default).
impl TryFrom<pb::ListJobsRequest> for JobQuery {
    type Error = SpecError;

    fn try_from(r: pb::ListJobsRequest) -> Result<Self, SpecError> {
        let statuses = r
            .statuses
            .iter()
            .enumerate()
            .map(|(i, s)| match pb::JobStatus::try_from(*s) {
                Ok(pb::JobStatus::Queued) => Ok(JobStatus::Queued),
                Ok(pb::JobStatus::Running) => Ok(JobStatus::Running),
                Ok(pb::JobStatus::Succeeded) => Ok(JobStatus::Succeeded),
                Ok(pb::JobStatus::Failed) => Ok(JobStatus::Failed),
                Ok(pb::JobStatus::Cancelled) => Ok(JobStatus::Cancelled),
                _ => Err(SpecError::new(
                    format!("statuses[{i}]"),
                    format!(
                        "{s} is not a job status; use QUEUED, RUNNING, SUCCEEDED, FAILED or CANCELLED"
                    ),
                )),
            })
            .collect::<Result<_, _>>()?;
        if r.page_size > 1000 {
            return Err(SpecError::new(
                "page_size",
                format!("{} is more than the limit of 1000", r.page_size),
            ));
        }
        Ok(JobQuery {
            page_size: match r.page_size {
                0 => DEFAULT_PAGE_SIZE,
                n => n as usize,
            },
            after: (!r.page_token.is_empty()).then_some(r.page_token),
            statuses,
            name_contains: r.name_contains,
        })
    }
}
