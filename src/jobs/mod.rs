//! The job manager: accepts jobs, queues them, runs each on its own OS thread (at most
//! `max_concurrent_jobs` at once), keeps every job's event log and lets any number of
//! watchers follow it. Everything a job is given and produces goes to the state store
//! through one writer thread; after a restart, jobs continue where they were. The async
//! side only ever takes short locks here; training never waits for a watcher or a disk.

mod datasets;
mod job;
mod model_uploads;
mod models;
mod persist;

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tch::Device;

pub use datasets::{DatasetUpload, Upload, UploadHeader};
use job::{Job, JobObserver};
pub use job::{JobSnapshot, StopReason, Subscription};
pub use model_uploads::{ModelHeader, ModelUpload};
pub use models::{EvalData, ExportFormat, ExportedFile, Predictions};
use persist::Persister;

use crate::data::{self, DataError};
use crate::domain::{DatasetSpec, JobSpec, JobStatus, ModelSpec, SpecError, UploadKind};
use crate::engine::{self, EngineError};
use crate::store::{self, Store, StoreError, read_checkpoint, take_resume_checkpoint};

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
    #[error("internal error: {0}")]
    Internal(String),
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
            other => Self::InvalidData(other),
        }
    }
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        Self::Internal(e.to_string())
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
    store: Arc<Store>,
    persister: Persister,
    state: Mutex<State>,
    /// Signalled whenever a job thread ends.
    finished: Condvar,
    /// Trained models loaded for predictions and exports.
    models: models::ModelCache,
    /// Learning rates suggested by range tests, by `range_key`.
    suggestions: Mutex<HashMap<String, f64>>,
}

struct State {
    jobs: HashMap<String, Arc<Job>>,
    /// Every job, oldest first.
    order: Vec<Arc<Job>>,
    by_request: HashMap<String, Arc<Job>>,
    queue: VecDeque<Arc<Job>>,
    running: usize,
    accepting: bool,
}

impl JobManager {
    /// A manager over `store`, with every job the store holds: finished jobs as they were,
    /// queued jobs queued again, and jobs that were running when the process stopped
    /// queued first, to resume from their last checkpoint.
    pub fn open(config: JobsConfig, store: Arc<Store>) -> Result<(Self, Recovered), JobError> {
        let persister = Persister::spawn(store.clone())
            .map_err(|e| JobError::Internal(format!("cannot start the state writer: {e}")))?;
        let shared = Arc::new(Shared {
            config,
            store: store.clone(),
            persister: persister.clone(),
            state: Mutex::new(State {
                jobs: HashMap::new(),
                order: Vec::new(),
                by_request: HashMap::new(),
                queue: VecDeque::new(),
                running: 0,
                accepting: true,
            }),
            finished: Condvar::new(),
            models: models::ModelCache::default(),
            suggestions: Mutex::new(HashMap::new()),
        });
        let mut recovered = Recovered::default();
        let mut interrupted = Vec::new();
        let mut waiting = Vec::new();
        {
            let mut state = shared.lock();
            for stored in store.load_jobs()? {
                let job = Arc::new(Job::restore(stored, persister.clone()));
                recovered.jobs += 1;
                match job.status() {
                    JobStatus::Running => {
                        let epoch = job.epochs_completed();
                        job.set_status(
                            JobStatus::Queued,
                            format!("the server restarted while this job was running; it will resume from the checkpoint of epoch {epoch}, its last recorded one"),
                        );
                        interrupted.push(job.clone());
                    }
                    JobStatus::Queued => {
                        if !job.has_events() {
                            job.set_status(JobStatus::Queued, "queued".into());
                        }
                        waiting.push(job.clone());
                    }
                    _ => {}
                }
                state.jobs.insert(job.id.clone(), job.clone());
                if let Some(r) = &job.request_id {
                    state.by_request.insert(r.clone(), job.clone());
                }
                state.order.push(job);
            }
            recovered.interrupted = interrupted.len();
            recovered.requeued = waiting.len();
            state.queue.extend(interrupted.into_iter().chain(waiting));
            shared.schedule(&mut state);
        }
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
        if let Some(existing) = self.existing(&spec, request_id.as_deref())? {
            return Ok(existing);
        }
        if !self.shared.lock().accepting {
            return Err(JobError::ShuttingDown);
        }
        let mut spec = spec;
        let dataset = self.checked_dataset(&mut spec)?;
        let mut state = self.shared.lock();
        if !state.accepting {
            return Err(JobError::ShuttingDown);
        }
        // An uploaded dataset deleted while this submit was reading it.
        if let DatasetSpec::Uploaded { id } = &spec.dataset
            && self.shared.store.dataset(id)?.is_none()
        {
            return Err(JobError::not_found(UploadKind::Dataset, id));
        }
        if let ModelSpec::TorchScript(m) = &spec.model
            && self.shared.store.model(&m.model_id)?.is_none()
        {
            return Err(JobError::not_found(UploadKind::Model, &m.model_id));
        }
        // A retry that raced with its first attempt.
        if let Some(r) = &request_id
            && let Some(job) = state.by_request.get(r)
        {
            return same_spec(job, &spec, r);
        }
        let job = Arc::new(Job::new(
            uuid::Uuid::new_v4().to_string(),
            request_id.clone(),
            spec,
            dataset,
            self.shared.persister.clone(),
        ));
        // The job row is committed before the client hears of the job.
        self.shared
            .store
            .insert_job(&job.id, request_id.as_deref(), &job.spec, job.created())?;
        job.set_status(
            JobStatus::Queued,
            format!("queued behind {} job(s)", state.queue.len()),
        );
        state.jobs.insert(job.id.clone(), job.clone());
        if let Some(r) = request_id {
            state.by_request.insert(r, job.clone());
        }
        state.order.push(job.clone());
        state.queue.push_back(job.clone());
        self.shared.schedule(&mut state);
        Ok(job.snapshot())
    }

    /// Reads the spec's dataset and runs every check that needs it.
    /// For a TorchScript model, this also resolves the uploaded module and tries it on the
    /// data (filling in what the spec derives from it).
    fn checked_dataset(&self, spec: &mut JobSpec) -> Result<data::Dataset, JobError> {
        self.resolve_model(spec)?;
        let dataset = data::load(
            &spec.dataset,
            &self.shared.config.data_dir,
            &*self.shared.store,
        )?;
        if dataset.labels.len() < 2 {
            return Err(SpecError::new(
                "spec.dataset",
                format!(
                    "the dataset has only one class ('{}'); a classifier needs at least 2 distinct labels",
                    dataset.labels.join("")
                ),
            )
            .into());
        }
        spec.validate_class_weights(Some(&dataset.labels))?;
        spec.validate_inputs(dataset.width as u64)?;
        model_uploads::fit_model(spec, dataset.width, dataset.labels.len())?;
        spec.validate_model_size(dataset.width as u64, dataset.labels.len() as u64)?;
        let train_counts = data::train_counts(&dataset.class_counts(), spec.validation_fraction);
        let planned = data::imbalance::planned_counts(spec, &train_counts)?;
        spec.validate_batches(planned.iter().sum::<usize>() as u64)?;
        Ok(dataset)
    }

    /// The learning-rate range test on `spec` (validated like a submit), on the calling
    /// thread; its suggestion is remembered for later jobs of the same spec.
    pub fn find_learning_rate(
        &self,
        spec: JobSpec,
        test: engine::RangeTest,
        on_point: &mut dyn FnMut(engine::LrPoint),
        cancel: &std::sync::atomic::AtomicBool,
    ) -> Result<engine::LrSuggestion, JobError> {
        spec.validate()?;
        if !(test.min_lr > 0.0 && test.max_lr > test.min_lr && test.max_lr.is_finite()) {
            return Err(SpecError::new(
                "max_lr",
                format!(
                    "the range must satisfy 0 < min_lr < max_lr, got {} to {}; 1e-7 to 10 is usual",
                    test.min_lr, test.max_lr
                ),
            )
            .into());
        }
        if !(2..=10_000).contains(&test.iterations) {
            return Err(
                SpecError::new("iterations", "must be 2 to 10000; 100 to 300 is usual").into(),
            );
        }
        let mut spec = spec;
        let dataset = self.checked_dataset(&mut spec)?;
        let found = engine::find_learning_rate(
            &spec,
            &dataset,
            self.shared.config.device,
            test,
            on_point,
            cancel,
        )
        .map_err(|e| JobError::Internal(e.to_string()))?;
        self.shared
            .suggestions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(range_key(&spec), found.suggested);
        Ok(found)
    }

    fn existing(
        &self,
        spec: &JobSpec,
        request_id: Option<&str>,
    ) -> Result<Option<JobSnapshot>, JobError> {
        let Some(r) = request_id else { return Ok(None) };
        match self.shared.lock().by_request.get(r) {
            Some(job) => same_spec(job, spec, r).map(Some),
            None => Ok(None),
        }
    }

    pub fn get(&self, id: &str) -> Result<JobSnapshot, JobError> {
        Ok(self.shared.find(id)?.snapshot())
    }

    /// A page of jobs (oldest first) that pass the query's filters, starting after its
    /// token (the last job of the previous page), and the token of the next page if any.
    pub fn page(&self, query: &JobQuery) -> Result<(Vec<JobSnapshot>, Option<String>), JobError> {
        let jobs: Vec<Arc<Job>> = self.shared.lock().order.clone();
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
        if !self.shared.find(id)?.status().is_terminal() {
            return Err(JobError::NotFinished(id.to_string()));
        }
        // Everything the writer still holds for this job goes first (outside the lock:
        // the writer may be busy with other jobs' checkpoints).
        self.shared.persister.flush();
        let mut state = self.shared.lock();
        let job = state.job(id)?;
        self.shared.store.delete_job(id)?;
        state.jobs.remove(id);
        state.order.retain(|j| j.id != id);
        self.shared.models.forget(id);
        if let Some(r) = &job.request_id {
            state.by_request.remove(r);
        }
        job.close_streams();
        Ok(())
    }

    /// Follows a job's events from `from_seq` (1-based; 0 means 1).
    pub fn subscribe(&self, id: &str, from_seq: u64) -> Result<Subscription, JobError> {
        Ok(Subscription::new(self.shared.find(id)?, from_seq))
    }

    /// Cancels a queued job at once, a running one at its next iteration. A finished job
    /// is returned unchanged.
    pub fn cancel(&self, id: &str) -> Result<JobSnapshot, JobError> {
        let mut state = self.shared.lock();
        let job = state.job(id)?;
        if job.request_stop(StopReason::Cancelled) == JobStatus::Queued {
            state.queue.retain(|q| !Arc::ptr_eq(q, &job));
            job.set_status(JobStatus::Cancelled, "cancelled by request".into());
            drop(job.take_dataset());
        }
        drop(state);
        Ok(job.snapshot())
    }

    /// Stops accepting jobs and stops running ones at their next iteration; they go back to
    /// QUEUED and resume from their last checkpoint after a restart. Waits up to `grace`
    /// for them, writes everything out and ends every open stream. Returns how many jobs
    /// were still running at the deadline.
    pub fn shutdown(&self, grace: Duration) -> usize {
        let deadline = Instant::now() + grace;
        let mut state = self.shared.lock();
        state.accepting = false;
        state.queue.clear();
        let jobs: Vec<Arc<Job>> = state.order.clone();
        for job in &jobs {
            job.request_stop(StopReason::Shutdown);
        }
        while state.running > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = self
                .shared
                .finished
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let still_running = state.running;
        drop(state);
        self.shared.persister.flush();
        for job in &jobs {
            job.close_streams();
        }
        still_running
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

/// What a range test depends on: the spec without its learning rate, schedule, epochs,
/// early stopping and name.
fn range_key(spec: &JobSpec) -> String {
    let mut s = spec.clone();
    s.name.clear();
    s.learning_rate = 0.0;
    s.epochs = 0;
    s.lr_schedule = crate::domain::LrSchedule::Constant;
    s.early_stopping = None;
    serde_json::to_string(&s).unwrap_or_default()
}

fn same_spec(job: &Arc<Job>, spec: &JobSpec, request_id: &str) -> Result<JobSnapshot, JobError> {
    if job.spec.as_requested() == spec.as_requested() {
        Ok(job.snapshot())
    } else {
        Err(JobError::RequestIdReused(request_id.to_string()))
    }
}

impl State {
    fn job(&self, id: &str) -> Result<Arc<Job>, JobError> {
        self.jobs
            .get(id)
            .cloned()
            .ok_or_else(|| JobError::NotFound(id.to_string()))
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State half-updated in a way that
        // matters more than refusing all further work would.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn find(&self, id: &str) -> Result<Arc<Job>, JobError> {
        self.lock().job(id)
    }

    /// Starts queued jobs while there are free slots. Called with the state locked, so the
    /// RUNNING event is recorded before anyone can see the job leave the queue.
    fn schedule(self: &Arc<Self>, state: &mut State) {
        while state.accepting && state.running < self.config.max_concurrent_jobs.max(1) {
            let Some(job) = state.queue.pop_front() else {
                break;
            };
            job.start(engine::device_name(self.config.device));
            state.running += 1;
            let shared = self.clone();
            let thread_job = job.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("job-{}", &job.id[..8.min(job.id.len())]))
                .spawn(move || shared.run(thread_job));
            if let Err(e) = spawned {
                state.running -= 1;
                job.set_status(
                    JobStatus::Failed,
                    format!(
                        "could not start a training thread: {e}; the server may be out of resources"
                    ),
                );
            }
        }
    }

    /// The body of a job thread.
    fn run(self: Arc<Self>, job: Arc<Job>) {
        let span = tracing::info_span!("job", id = %job.id);
        let _enter = span.enter();
        tracing::info!(name = %job.spec.name, "training started");
        let (status, message) = match self.train(&job) {
            Ok(()) => (
                JobStatus::Succeeded,
                format!("trained {} epoch(s)", job.spec.epochs),
            ),
            Err(EngineError::StoppedEarly(why)) => (JobStatus::Succeeded, why),
            Err(EngineError::Cancelled) => match job.stop_reason() {
                Some(StopReason::Shutdown) => (
                    JobStatus::Queued,
                    format!(
                        "stopped by a server shutdown after {} complete epoch(s); it will resume where it stopped when the server restarts",
                        job.epochs_completed()
                    ),
                ),
                _ => (JobStatus::Cancelled, "cancelled by request".into()),
            },
            Err(e @ (EngineError::Diverged { .. } | EngineError::Exploded { .. })) => {
                let suggested = self
                    .suggestions
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&range_key(&job.spec))
                    .copied();
                let hint = suggested.map_or(String::new(), |lr| {
                    format!("; a learning-rate range test on this spec suggested {lr:e}")
                });
                (JobStatus::Failed, format!("{e}{hint}"))
            }
            Err(e) => (JobStatus::Failed, e.to_string()),
        };
        tracing::info!(status = status.as_str(), %message, "training ended");
        job.set_status(status, message);
        let mut state = self.lock();
        state.running -= 1;
        self.schedule(&mut state);
        drop(state);
        self.finished.notify_all();
    }

    /// Reads the dataset if needed, loads the checkpoint to resume from, and trains.
    /// A panic in libtorch or our code fails this job only.
    fn train(&self, job: &Arc<Job>) -> Result<(), EngineError> {
        std::panic::catch_unwind(AssertUnwindSafe(|| {
            let data = match job.take_dataset() {
                Some(d) => d,
                None => data::load(&job.spec.dataset, &self.config.data_dir, &*self.store)
                    .map_err(|e| {
                        EngineError::Internal(format!("the dataset can no longer be read: {e}"))
                    })?,
            };
            let dir = self.store.job_dir(&job.id);
            let completed = job.epochs_completed();
            let cannot = |e: StoreError| EngineError::Internal(format!("cannot resume: {e}"));
            // A mid-epoch checkpoint from a shutdown, if it continues the recorded epochs;
            // otherwise the checkpoint of the last recorded epoch.
            let mid_epoch = take_resume_checkpoint(&dir).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "mid-epoch checkpoint unreadable; resuming from the last epoch");
                None
            });
            let resume = match mid_epoch {
                Some(c) if c.epoch == completed + 1 => Some(c),
                _ if completed == 0 => None,
                _ => Some(read_checkpoint(&dir, completed).map_err(cannot)?),
            };
            let mut observer = JobObserver::new(job);
            engine::train(
                &job.spec,
                &data,
                self.config.device,
                &mut observer,
                job.cancel_flag(),
                resume,
            )
        }))
        .unwrap_or_else(|panic| {
            Err(EngineError::Internal(format!(
                "{}; other jobs are unaffected, please report this",
                panic_message(&panic)
            )))
        })
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}
