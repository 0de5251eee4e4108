//! The job manager: the façade the transport calls. It validates and records jobs, hands
//! them to the [`scheduler`] (queue, slots, threads, cancel, shutdown, recovery), which
//! runs each through its kind (`kinds/`) and keeps every job's event log for any number of
//! watchers. Everything a job is given and produces goes to the state store through one
//! writer thread (`persist`); after a restart, jobs continue where they were. The async
//! side only ever takes short locks here; training never waits for a watcher or a disk.

mod checkpoints;
mod datasets;
mod job;
mod kind;
mod kinds;
mod module_uploads;
mod persist;
mod scheduler;
#[cfg(test)]
mod scheduler_tests;
mod stored_datasets;
mod trained_models;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tch::Device;

pub use datasets::{DatasetUpload, Upload, UploadHeader};
use job::Job;
pub use job::{JobSnapshot, StopReason, Subscription};
pub use kind::{Interruption, Outcome, RunContext, Runner, Start};
pub use module_uploads::{ModelHeader, ModelUpload};
use persist::Persister;
use scheduler::{Added, Scheduler};
pub use trained_models::{EvalData, ExportFormat, ExportedFile, Predictions};

use crate::data::{self, DataError};
use crate::domain::{
    DEFAULT_SHUFFLE_BUFFER, DatasetSpec, JobKind, JobSpec, JobStatus, ModelSpec, RangeTest,
    SpecError, UploadKind,
};
use crate::engine::EngineError;
use crate::observability::{Metrics, Observability};
use crate::store::{self, StateStore, StoreError};

/// Settings of the job manager.
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// CSV dataset paths are resolved under this directory.
    pub data_dir: PathBuf,
    pub device: Device,
    pub max_concurrent_jobs: usize,
    /// Largest dataset upload accepted, in bytes.
    pub max_dataset_bytes: u64,
    /// Largest TorchScript model upload accepted, in bytes.
    pub max_model_bytes: u64,
    /// Where stored copies of datasets live (`<state>/datasets`).
    pub datasets_dir: PathBuf,
    /// A stored dataset whose features take more bytes than this is streamed from its
    /// shards instead of loaded into memory.
    pub max_in_memory_dataset_bytes: u64,
    /// Where every job writes TensorBoard event files, if anywhere.
    pub tensorboard_dir: Option<PathBuf>,
}

/// What the job manager refuses, and why.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    InvalidSpec(#[from] SpecError),
    #[error("spec.dataset: {0}")]
    InvalidData(DataError),
    #[error("no job with id '{0}'; list jobs to see the known ids")]
    NotFound(String),
    #[error(
        "request_id '{0}' was already used for a job with a different spec; use a new request_id for a new job"
    )]
    RequestIdReused(String),
    #[error(
        "the server is shutting down and accepts no new jobs; retry against another replica or after restart"
    )]
    ShuttingDown,
    #[error("job '{0}' has not finished; cancel it first, then delete it")]
    NotFinished(String),
    #[error("{kind} upload: {error}")]
    Upload {
        kind: UploadKind,
        error: crate::data::upload::UploadError,
    },
    #[error("no {kind} with id '{id}'; list {kind}s to see the known ids")]
    UploadNotFound { kind: UploadKind, id: String },
    #[error("{kind} '{id}' is used by queued or running job(s) {}; cancel them or wait until they finish", jobs.join(", "))]
    InUse {
        kind: UploadKind,
        id: String,
        jobs: Vec<String>,
    },
    #[error("{0}")]
    NoModel(String),
    #[error("range test job '{id}' ended {}: {message}", status.as_str())]
    RangeTestEnded {
        id: String,
        status: JobStatus,
        message: String,
    },
    #[error("internal error: {0}")]
    Internal(String),
    /// The state store could not do what was asked; its kind decides the status code.
    #[error("{0}")]
    Store(StoreError),
}

impl JobError {
    /// No upload of `kind` with this id.
    pub fn not_found(kind: UploadKind, id: &str) -> Self {
        Self::UploadNotFound {
            kind,
            id: id.to_string(),
        }
    }
}

impl From<EngineError> for JobError {
    fn from(e: EngineError) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<DataError> for JobError {
    fn from(e: DataError) -> Self {
        match e {
            DataError::Spec(s) => Self::InvalidSpec(s),
            // The server's own copy, not the client's data.
            e @ DataError::Stored { .. } => Self::Internal(e.to_string()),
            other => Self::InvalidData(other),
        }
    }
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// What recovery found in the state directory.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    pub jobs: usize,
    pub requeued: usize,
    pub interrupted: usize,
}

/// Cheap to clone; all clones share one manager.
#[derive(Clone)]
pub struct JobManager {
    shared: Arc<Shared>,
}

struct Shared {
    config: JobsConfig,
    store: Arc<dyn StateStore>,
    scheduler: Arc<Scheduler>,
    /// Trained models loaded for predictions and exports.
    trained: trained_models::ModelCache,
    /// This server's metrics and TensorBoard export, fed by the writer thread.
    observability: Arc<Observability>,
}

impl JobManager {
    /// A manager over `store`, with every job the store holds: finished jobs as they were,
    /// queued jobs queued again, and jobs that were running when the process stopped
    /// queued first, to resume from their last checkpoint.
    pub fn open(
        config: JobsConfig,
        store: Arc<dyn StateStore>,
    ) -> Result<(Self, Recovered), JobError> {
        let stored = store.load_jobs()?;
        let runner = Arc::new(kinds::Kinds {
            config: config.clone(),
            store: store.clone(),
            suggestions: kinds::Suggestions::from_stored(&stored),
        });
        Self::with_runner(config, store, runner, stored)
    }

    /// The same over any runner: the scheduler's tests use one of their own.
    fn with_runner(
        config: JobsConfig,
        store: Arc<dyn StateStore>,
        runner: Arc<dyn Runner>,
        stored: Vec<store::StoredJob>,
    ) -> Result<(Self, Recovered), JobError> {
        let observability = Arc::new(Observability::new(config.tensorboard_dir.clone()).map_err(
            |e| JobError::Internal(format!("cannot start the TensorBoard export: {e}")),
        )?);
        let persister = Persister::spawn(store.clone(), observability.clone())
            .map_err(|e| JobError::Internal(format!("cannot start the state writer: {e}")))?;
        let (scheduler, recovered) =
            Scheduler::open(stored, persister, runner, config.max_concurrent_jobs);
        let shared = Arc::new(Shared {
            config,
            store,
            scheduler,
            trained: trained_models::ModelCache::default(),
            observability,
        });
        Ok((Self { shared }, recovered))
    }

    /// Validates the spec, reads the dataset (blocking: call from a blocking context),
    /// records the job and queues it. A `request_id` seen before returns that job instead.
    pub fn submit(
        &self,
        spec: JobSpec,
        request_id: Option<String>,
    ) -> Result<JobSnapshot, JobError> {
        spec.validate()?;
        self.enqueue(JobKind::Training, spec, request_id)
    }

    /// Queues a learning-rate range test of `spec` (validated like a submit) as a job of
    /// its own: it waits for a slot, is listed and can be cancelled like any job, its
    /// points are its events and its suggestion the last one.
    pub fn submit_range_test(
        &self,
        spec: JobSpec,
        test: RangeTest,
        request_id: Option<String>,
    ) -> Result<JobSnapshot, JobError> {
        spec.validate()?;
        test.validate()?;
        self.enqueue(JobKind::RangeTest(test), spec, request_id)
    }

    /// Reads the dataset, checks the spec against it, records the job and queues it.
    fn enqueue(
        &self,
        kind: JobKind,
        mut spec: JobSpec,
        request_id: Option<String>,
    ) -> Result<JobSnapshot, JobError> {
        if let Some(existing) = self.existing(kind, &spec, request_id.as_deref())? {
            return Ok(existing);
        }
        if !self.shared.scheduler.accepting() {
            return Err(JobError::ShuttingDown);
        }
        let (dataset, labels) = self.checked_dataset(&mut spec)?;
        if dataset.is_none() && matches!(kind, JobKind::RangeTest(_)) {
            return Err(SpecError::new(
                "spec.dataset",
                "a learning-rate range test reads its dataset in memory, and this one is streamed (larger than --max-in-memory-dataset-bytes); run the test on a sample of it",
            )
            .into());
        }
        let store = &self.shared.store;
        let added = self.shared.scheduler.add(request_id.as_deref(), || {
            // An upload deleted while this submit was reading it.
            if let DatasetSpec::Uploaded { id } = &spec.dataset
                && store.dataset(id)?.is_none()
            {
                return Err(JobError::not_found(UploadKind::Dataset, id));
            }
            if let ModelSpec::TorchScript(m) = &spec.model
                && store.model(&m.model_id)?.is_none()
            {
                return Err(JobError::not_found(UploadKind::Model, &m.model_id));
            }
            let job = Arc::new(Job::new(
                uuid::Uuid::new_v4().to_string(),
                request_id.clone(),
                kind,
                spec.clone(),
                dataset,
                labels.clone(),
                self.shared.scheduler.persister().clone(),
            ));
            // The job row is committed before the client hears of the job.
            store.insert_job(
                &job.id,
                request_id.as_deref(),
                &job.kind,
                &job.spec,
                job.created(),
            )?;
            Ok(job)
        })?;
        match added {
            Added::New(snapshot) => Ok(*snapshot),
            // A retry that raced with its first attempt.
            Added::Existing(job) => same_request(&job, kind, &spec, request_id.as_deref()),
        }
    }

    /// Reads the spec's dataset and runs every check that needs it: the rows in memory, or
    /// `None` for a stored dataset too large for memory, which the job streams.
    /// For a TorchScript model, this also resolves the uploaded module and tries it on the
    /// data (filling in what the spec derives from it).
    fn checked_dataset(
        &self,
        spec: &mut JobSpec,
    ) -> Result<(Option<data::Dataset>, Vec<String>), JobError> {
        self.resolve_model(spec)?;
        let config = &self.shared.config;
        let (dataset, shape) = match &mut spec.dataset {
            DatasetSpec::Arrays(arrays) => {
                let (fingerprint, stored) =
                    stored_datasets::store_arrays(arrays, &config.data_dir, &config.datasets_dir)?;
                arrays.stored = Some(fingerprint);
                let m = &stored.manifest;
                let counts = m.class_counts.iter().map(|&n| n as usize).collect();
                let shape = (m.labels.clone(), m.width, counts);
                arrays.streamed =
                    !stored_datasets::fits_in_memory(&stored, config.max_in_memory_dataset_bytes);
                if arrays.streamed {
                    (None, shape)
                } else {
                    (Some(stored.load()?), shape)
                }
            }
            other => {
                let d = data::load(other, &config.data_dir, &*self.shared.store)?;
                let shape = (d.labels.clone(), d.width, d.class_counts());
                (Some(d), shape)
            }
        };
        let (labels, width, class_counts) = shape;
        if labels.len() < 2 {
            return Err(SpecError::new(
                "spec.dataset",
                format!(
                    "the dataset has only one class ('{}'); a classifier needs at least 2 distinct labels",
                    labels.join("")
                ),
            )
            .into());
        }
        if dataset.is_none() {
            streamable(
                spec,
                width,
                &class_counts,
                config.max_in_memory_dataset_bytes,
            )?;
        }
        spec.validate_class_weights(Some(&labels))?;
        spec.validate_inputs(width as u64)?;
        module_uploads::fit_model(spec, width, labels.len())?;
        spec.validate_model_size(width as u64, labels.len() as u64)?;
        let train_counts = data::train_counts(&class_counts, spec.validation_fraction);
        let planned = data::imbalance::planned_counts(spec, &train_counts)?;
        spec.validate_batches(planned.iter().sum::<usize>() as u64)?;
        Ok((dataset, labels))
    }

    fn existing(
        &self,
        kind: JobKind,
        spec: &JobSpec,
        request_id: Option<&str>,
    ) -> Result<Option<JobSnapshot>, JobError> {
        let Some(r) = request_id else { return Ok(None) };
        match self.shared.scheduler.for_request(r) {
            Some(job) => same_request(&job, kind, spec, Some(r)).map(Some),
            None => Ok(None),
        }
    }

    pub fn get(&self, id: &str) -> Result<JobSnapshot, JobError> {
        Ok(self.shared.scheduler.find(id)?.snapshot())
    }

    /// A page of jobs (oldest first) that pass the query's filters, starting after its
    /// token (the last job of the previous page), and the token of the next page if any.
    pub fn page(&self, query: &JobQuery) -> Result<(Vec<JobSnapshot>, Option<String>), JobError> {
        let jobs: Vec<Arc<Job>> = self.shared.scheduler.jobs();
        let start = match &query.after {
            None => 0,
            Some(token) => {
                let (created, id) = parse_token(token)?;
                jobs.iter()
                    .position(|j| {
                        (store::nanos(j.created()), j.id.as_str()) > (created, id.as_str())
                    })
                    .unwrap_or(jobs.len())
            }
        };
        let size = query.page_size.clamp(1, 1000);
        let mut page = Vec::with_capacity(size);
        let mut more = None;
        for job in &jobs[start..] {
            let snap = job.snapshot();
            if !query.statuses.is_empty() && !query.statuses.contains(&snap.status) {
                continue;
            }
            if !snap.spec.name.contains(&query.name_contains) {
                continue;
            }
            if page.len() == size {
                let last: &JobSnapshot = page.last().expect("page is full");
                more = Some(format!("{}.{}", store::nanos(last.created), last.id));
                break;
            }
            page.push(snap);
        }
        Ok((page, more))
    }

    /// Removes a finished job, its events and its files.
    pub fn delete(&self, id: &str) -> Result<(), JobError> {
        let scheduler = &self.shared.scheduler;
        if !scheduler.find(id)?.status().is_terminal() {
            return Err(JobError::NotFinished(id.to_string()));
        }
        // Everything the writer still holds for this job goes first (outside the lock:
        // the writer may be busy with other jobs' checkpoints).
        scheduler.persister().flush();
        scheduler.remove(id, |_| Ok(self.shared.store.delete_job(id)?))?;
        self.shared.trained.forget(id);
        Ok(())
    }

    /// Follows a job's events from `from_seq` (1-based; 0 means 1).
    pub fn subscribe(&self, id: &str, from_seq: u64) -> Result<Subscription, JobError> {
        Ok(Subscription::new(self.shared.scheduler.find(id)?, from_seq))
    }

    /// Cancels a queued job at once, a running one at its next iteration. A finished job
    /// is returned unchanged.
    pub fn cancel(&self, id: &str) -> Result<JobSnapshot, JobError> {
        self.shared.scheduler.cancel(id)
    }

    /// Stops accepting jobs and stops running ones at their next iteration; they go back to
    /// QUEUED and resume from their last checkpoint after a restart. Waits up to `grace`
    /// for them, writes everything out and ends every open stream. Returns how many jobs
    /// were still running at the deadline.
    pub fn shutdown(&self, grace: Duration) -> usize {
        let left = self.shared.scheduler.shutdown(grace);
        self.shared.observability.flush();
        left
    }

    /// This server's metrics (the RPC layer and the streams report to them).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.observability.metrics
    }

    /// Every metric in the OpenMetrics text format, the job counts as of now.
    pub fn metrics_text(&self) -> String {
        let statuses: Vec<JobStatus> = self
            .shared
            .scheduler
            .jobs()
            .iter()
            .map(|j| j.status())
            .collect();
        self.metrics().render(statuses)
    }
}

/// What `page` returns.
#[derive(Debug, Clone, Default)]
pub struct JobQuery {
    pub page_size: usize,
    /// The previous page's token.
    pub after: Option<String>,
    pub statuses: Vec<JobStatus>,
    pub name_contains: String,
}

fn parse_token(token: &str) -> Result<(i64, String), JobError> {
    token
        .split_once('.')
        .and_then(|(t, id)| Some((t.parse().ok()?, id.to_string())))
        .ok_or_else(|| {
            SpecError::new(
                "page_token",
                "is not a token this server gave out; pass next_page_token from the previous response, or leave it empty",
            )
            .into()
        })
}

/// The job of a request id seen before, if this request asks for the same job.
/// Refuses what a streamed dataset cannot do: the remedies that draw from every training
/// row at once, and a shuffle buffer and validation split that would not fit in the
/// memory the server keeps for rows (`limit` bytes).
fn streamable(
    spec: &JobSpec,
    width: usize,
    class_counts: &[usize],
    limit: u64,
) -> Result<(), SpecError> {
    let rows: usize = class_counts.iter().sum();
    let why = |field: &str, what: &str| {
        SpecError::new(
            field,
            format!(
                "{what} needs every training row in memory, and this dataset ({rows} rows) is larger than the server keeps in memory ({limit} bytes of features, --max-in-memory-dataset-bytes); use class_weighting instead, or a smaller dataset"
            ),
        )
    };
    if spec.resampling.is_some() {
        return Err(why("spec.resampling", "resampling"));
    }
    if spec.ensemble.is_some() {
        return Err(why("spec.ensemble", "balanced bagging"));
    }
    let train: usize = data::train_counts(class_counts, spec.validation_fraction)
        .iter()
        .sum();
    let validation = rows - train;
    let buffer = (spec.shuffle_buffer.unwrap_or(DEFAULT_SHUFFLE_BUFFER) as usize).min(train);
    let row_bytes = width as u64 * 4;
    let held = (buffer + validation) as u64 * row_bytes;
    if held > limit {
        let field = if buffer as u64 * row_bytes > limit / 2 {
            "spec.shuffle_buffer"
        } else {
            "spec.validation_fraction"
        };
        return Err(SpecError::new(
            field,
            format!(
                "a streamed dataset holds its shuffle buffer ({buffer} rows) and its validation split ({validation} rows) in memory: {held} bytes of {width} features, more than --max-in-memory-dataset-bytes ({limit}); lower shuffle_buffer or validation_fraction"
            ),
        ));
    }
    Ok(())
}

fn same_request(
    job: &Job,
    kind: JobKind,
    spec: &JobSpec,
    request_id: Option<&str>,
) -> Result<JobSnapshot, JobError> {
    if job.kind == kind && job.spec.as_requested() == spec.as_requested() {
        Ok(job.snapshot())
    } else {
        Err(JobError::RequestIdReused(
            request_id.unwrap_or_default().to_string(),
        ))
    }
}
