//! The job manager: accepts jobs, queues them, runs each on its own OS thread (at most
//! `max_concurrent_jobs` at once), keeps every job's event log and lets any number of
//! watchers follow it. The async side only ever takes short locks here; training never
//! waits for a watcher.

mod job;

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tch::Device;

use job::{Job, JobObserver};
pub use job::{JobSnapshot, Subscription};

use crate::data::{self, DataError};
use crate::domain::{EventKind, JobSpec, JobStatus, SpecError};
use crate::engine::{self, EngineError};

/// Settings of the job manager.
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// CSV dataset paths are resolved under this directory.
    pub data_dir: PathBuf,
    pub device: Device,
    pub max_concurrent_jobs: usize,
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
        "the server is shutting down and accepts no new jobs; retry against another replica or after restart"
    )]
    ShuttingDown,
}

impl From<DataError> for JobError {
    fn from(e: DataError) -> Self {
        match e {
            DataError::Spec(s) => Self::InvalidSpec(s),
            other => Self::InvalidData(other),
        }
    }
}

/// Cheap to clone; all clones share one manager.
#[derive(Clone)]
pub struct JobManager {
    shared: Arc<Shared>,
}

struct Shared {
    config: JobsConfig,
    state: Mutex<State>,
    /// Signalled whenever a job thread ends.
    finished: Condvar,
}

struct State {
    jobs: HashMap<String, Arc<Job>>,
    /// Every job, oldest first.
    order: Vec<Arc<Job>>,
    queue: VecDeque<Arc<Job>>,
    running: usize,
    accepting: bool,
}

impl JobManager {
    pub fn new(config: JobsConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                state: Mutex::new(State {
                    jobs: HashMap::new(),
                    order: Vec::new(),
                    queue: VecDeque::new(),
                    running: 0,
                    accepting: true,
                }),
                finished: Condvar::new(),
            }),
        }
    }

    pub fn config(&self) -> &JobsConfig {
        &self.shared.config
    }

    /// Validates the spec, reads the dataset (blocking: call from a blocking context) and
    /// queues the job.
    pub fn submit(&self, spec: JobSpec) -> Result<JobSnapshot, JobError> {
        if !self.shared.lock().accepting {
            return Err(JobError::ShuttingDown);
        }
        spec.validate()?;
        let dataset = data::load(&spec.dataset, &self.shared.config.data_dir)?;
        if dataset.rows() == 0 {
            return Err(SpecError::new(
                "spec.dataset",
                "the dataset has no rows; an empty dataset cannot be trained on",
            )
            .into());
        }
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
        spec.validate_model_size(dataset.width as u64, dataset.labels.len() as u64)?;
        let job = Arc::new(Job::new(uuid::Uuid::new_v4().to_string(), spec, dataset));
        let mut state = self.shared.lock();
        if !state.accepting {
            return Err(JobError::ShuttingDown);
        }
        job.push(EventKind::Status {
            status: JobStatus::Queued,
            message: format!("queued behind {} job(s)", state.queue.len()),
        });
        state.jobs.insert(job.id.clone(), job.clone());
        state.order.push(job.clone());
        state.queue.push_back(job.clone());
        self.shared.schedule(&mut state);
        Ok(job.snapshot())
    }

    pub fn get(&self, id: &str) -> Result<JobSnapshot, JobError> {
        Ok(self.shared.find(id)?.snapshot())
    }

    /// Every job, oldest first.
    pub fn list(&self) -> Vec<JobSnapshot> {
        let jobs: Vec<Arc<Job>> = self.shared.lock().order.clone();
        jobs.iter().map(|j| j.snapshot()).collect()
    }

    /// Follows a job's events from `from_seq` (1-based; 0 means 1).
    pub fn subscribe(&self, id: &str, from_seq: u64) -> Result<Subscription, JobError> {
        Ok(Subscription::new(self.shared.find(id)?, from_seq))
    }

    /// Cancels a queued job at once, a running one at its next iteration. A finished job
    /// is returned unchanged.
    pub fn cancel(&self, id: &str) -> Result<JobSnapshot, JobError> {
        let mut state = self.shared.lock();
        let job = state
            .jobs
            .get(id)
            .cloned()
            .ok_or_else(|| JobError::NotFound(id.to_string()))?;
        Shared::cancel_locked(&mut state, &job, "cancelled by request");
        drop(state);
        Ok(job.snapshot())
    }

    /// Stops accepting jobs, cancels queued and running ones, and waits up to `grace` for
    /// running jobs to stop. Returns how many were still running at the deadline.
    pub fn shutdown(&self, grace: Duration) -> usize {
        let deadline = Instant::now() + grace;
        let mut state = self.shared.lock();
        state.accepting = false;
        let jobs: Vec<Arc<Job>> = state.order.clone();
        for job in &jobs {
            Shared::cancel_locked(&mut state, job, "cancelled: the server is shutting down");
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
        state.running
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State half-updated in a way that
        // matters more than refusing all further work would.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn find(&self, id: &str) -> Result<Arc<Job>, JobError> {
        self.lock()
            .jobs
            .get(id)
            .cloned()
            .ok_or_else(|| JobError::NotFound(id.to_string()))
    }

    fn cancel_locked(state: &mut State, job: &Arc<Job>, reason: &str) {
        // A running job sees the flag within one iteration; finished ones stay as they are.
        if job.request_cancel(reason) == JobStatus::Queued {
            state.queue.retain(|q| !Arc::ptr_eq(q, job));
            job.finish(JobStatus::Cancelled, reason.to_string());
        }
    }

    /// Starts queued jobs while there are free slots. Called with the state locked, so the
    /// RUNNING event is recorded before anyone can see the job leave the queue.
    fn schedule(self: &Arc<Self>, state: &mut State) {
        while state.running < self.config.max_concurrent_jobs.max(1) {
            let Some(job) = state.queue.pop_front() else {
                break;
            };
            job.start(engine::device_name(self.config.device));
            state.running += 1;
            let shared = self.clone();
            let thread_job = job.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("job-{}", &job.id[..8]))
                .spawn(move || shared.run(thread_job));
            if let Err(e) = spawned {
                state.running -= 1;
                job.finish(
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
        let dataset = job.take_dataset();
        let span = tracing::info_span!("job", id = %job.id);
        let _enter = span.enter();
        tracing::info!(name = %job.spec.name, "training started");
        let outcome = match dataset {
            Some(data) => std::panic::catch_unwind(AssertUnwindSafe(|| {
                let mut observer = JobObserver::new(&job);
                engine::train(
                    &job.spec,
                    &data,
                    self.config.device,
                    &mut observer,
                    job.cancel_flag(),
                )
            })),
            None => Ok(Err(EngineError::Cancelled)),
        };
        let (status, message) = match outcome {
            Ok(Ok(())) => (
                JobStatus::Succeeded,
                format!("trained {} epoch(s)", job.spec.epochs),
            ),
            Ok(Err(EngineError::Cancelled)) => (JobStatus::Cancelled, job.cancel_reason()),
            Ok(Err(e)) => (JobStatus::Failed, e.to_string()),
            Err(panic) => (
                JobStatus::Failed,
                format!(
                    "internal error while training: {}; other jobs are unaffected, please report this",
                    panic_message(&panic)
                ),
            ),
        };
        tracing::info!(status = status.as_str(), %message, "training ended");
        job.finish(status, message);
        let mut state = self.lock();
        state.running -= 1;
        self.schedule(&mut state);
        drop(state);
        self.finished.notify_all();
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
