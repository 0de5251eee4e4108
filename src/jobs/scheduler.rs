//! The scheduler: the queue (in order of submission; jobs interrupted by a restart first),
//! the slots (`max_concurrent_jobs`), one OS thread per running job, cancel, graceful
//! shutdown and recovery. It knows nothing of what a job does: that is the [`Runner`]'s.

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::job::{Job, JobSnapshot, StopReason};
use super::kind::{Interruption, Outcome, RunContext, Runner};
use super::persist::Persister;
use super::{JobError, Recovered};
use crate::domain::JobStatus;
use crate::store::StoredJob;

pub(super) struct Scheduler {
    runner: Arc<dyn Runner>,
    persister: Persister,
    slots: usize,
    state: Mutex<State>,
    /// Signalled whenever a job thread ends.
    finished: Condvar,
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

/// What [`Scheduler::add`] did.
pub(super) enum Added {
    /// A new job, now queued.
    New(Box<JobSnapshot>),
    /// The request id was seen before: this is its job, untouched.
    Existing(Arc<Job>),
}

impl Scheduler {
    /// A scheduler over the stored jobs: finished ones as they were, queued ones queued
    /// again, and those that were running when the process stopped queued first.
    pub fn open(
        stored: Vec<StoredJob>,
        persister: Persister,
        runner: Arc<dyn Runner>,
        slots: usize,
    ) -> (Arc<Self>, Recovered) {
        let scheduler = Arc::new(Self {
            runner,
            persister: persister.clone(),
            slots: slots.max(1),
            state: Mutex::new(State {
                jobs: HashMap::new(),
                order: Vec::new(),
                by_request: HashMap::new(),
                queue: VecDeque::new(),
                running: 0,
                accepting: true,
            }),
            finished: Condvar::new(),
        });
        let mut recovered = Recovered::default();
        let (mut interrupted, mut waiting) = (Vec::new(), Vec::new());
        let mut state = scheduler.lock();
        for stored in stored {
            let job = Arc::new(Job::restore(stored, persister.clone()));
            recovered.jobs += 1;
            match job.status() {
                JobStatus::Running => {
                    let message = scheduler
                        .runner
                        .interrupted(&job.snapshot(), Interruption::Restart);
                    job.set_status(JobStatus::Queued, message);
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
            state.insert(job);
        }
        recovered.interrupted = interrupted.len();
        recovered.requeued = waiting.len();
        state.queue.extend(interrupted.into_iter().chain(waiting));
        scheduler.schedule(&mut state);
        drop(state);
        (scheduler, recovered)
    }

    pub fn persister(&self) -> &Persister {
        &self.persister
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State half-updated in a way that
        // matters more than refusing all further work would.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues the job `create` makes, under the scheduler's lock, unless the server is
    /// shutting down or `request_id` already has a job (a retry that raced its first
    /// attempt). `create` records the job durably before it is queued.
    pub fn add(
        self: &Arc<Self>,
        request_id: Option<&str>,
        create: impl FnOnce() -> Result<Arc<Job>, JobError>,
    ) -> Result<Added, JobError> {
        let mut state = self.lock();
        if !state.accepting {
            return Err(JobError::ShuttingDown);
        }
        if let Some(job) = request_id.and_then(|r| state.by_request.get(r)) {
            return Ok(Added::Existing(job.clone()));
        }
        let job = create()?;
        job.set_status(
            JobStatus::Queued,
            format!("queued behind {} job(s)", state.queue.len()),
        );
        state.insert(job.clone());
        state.queue.push_back(job.clone());
        self.schedule(&mut state);
        Ok(Added::New(Box::new(job.snapshot())))
    }

    /// True while new jobs are accepted.
    pub fn accepting(&self) -> bool {
        self.lock().accepting
    }

    pub fn find(&self, id: &str) -> Result<Arc<Job>, JobError> {
        self.lock().job(id)
    }

    pub fn for_request(&self, request_id: &str) -> Option<Arc<Job>> {
        self.lock().by_request.get(request_id).cloned()
    }

    /// Every job, oldest first.
    pub fn jobs(&self) -> Vec<Arc<Job>> {
        self.lock().order.clone()
    }

    /// Calls `f` with every job, oldest first, under the scheduler's lock: nothing is
    /// queued meanwhile (an upload is deleted this way, so no new job can start using it).
    pub fn with_jobs<T>(&self, f: impl FnOnce(&[Arc<Job>]) -> T) -> T {
        f(&self.lock().order)
    }

    /// Removes a job once `remove` (which deletes what is stored of it) succeeds, under
    /// the scheduler's lock, so no one finds a half-deleted job.
    pub fn remove(
        &self,
        id: &str,
        remove: impl FnOnce(&Job) -> Result<(), JobError>,
    ) -> Result<(), JobError> {
        let mut state = self.lock();
        let job = state.job(id)?;
        // Checked again under the lock: the store may have rewound the job meanwhile.
        if !job.status().is_terminal() {
            return Err(JobError::NotFinished(id.to_string()));
        }
        remove(&job)?;
        state.jobs.remove(id);
        state.order.retain(|j| j.id != id);
        if let Some(r) = &job.request_id {
            state.by_request.remove(r);
        }
        job.close_streams();
        Ok(())
    }

    /// Cancels a queued job at once, a running one at its next iteration. A finished job
    /// is returned unchanged.
    pub fn cancel(&self, id: &str) -> Result<JobSnapshot, JobError> {
        let mut state = self.lock();
        let job = state.job(id)?;
        job.request_stop(StopReason::Cancelled);
        // Only a job still waiting in the queue ends here; a running one ends on its
        // thread (whatever its status says: the store may have rewound it).
        if let Some(at) = state.queue.iter().position(|q| Arc::ptr_eq(q, &job)) {
            state.queue.remove(at);
            job.set_status(JobStatus::Cancelled, "cancelled by request".into());
            drop(job.take_dataset());
        }
        drop(state);
        Ok(job.snapshot())
    }

    /// Stops accepting jobs and stops running ones at their next iteration; they go back to
    /// QUEUED and resume after a restart. Waits up to `grace` for them, writes everything
    /// out and ends every open stream. Returns how many were still running at the deadline.
    pub fn shutdown(&self, grace: Duration) -> usize {
        let deadline = Instant::now() + grace;
        let mut state = self.lock();
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
                .finished
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let still_running = state.running;
        drop(state);
        self.persister.flush();
        for job in &jobs {
            job.close_streams();
        }
        still_running
    }

    /// Starts queued jobs while there are free slots. Called with the state locked, so the
    /// RUNNING event is recorded before anyone can see the job leave the queue.
    fn schedule(self: &Arc<Self>, state: &mut State) {
        while state.accepting && state.running < self.slots {
            let Some(job) = state.queue.pop_front() else {
                break;
            };
            let start = self.runner.starting(&job.snapshot());
            // False for a job the store failed while it waited.
            if !job.start(start.device, start.message) {
                continue;
            }
            state.running += 1;
            let scheduler = self.clone();
            let thread_job = job.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("job-{}", &job.id[..8.min(job.id.len())]))
                .spawn(move || scheduler.run(thread_job));
            if let Err(e) = spawned {
                state.running -= 1;
                job.not_started(format!(
                    "could not start a job thread: {e}; the server may be out of resources"
                ));
            }
        }
    }

    /// The body of a job thread: the runner's work, its outcome recorded, the next job
    /// started. A panic fails this job only.
    fn run(self: Arc<Self>, job: Arc<Job>) {
        let span = job.trace_parent.job_span(&job.id);
        let _enter = span.enter();
        tracing::info!(name = %job.spec.name, kind = ?job.kind, "job started");
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            self.runner.run(&mut RunContext::new(&job))
        }))
        .unwrap_or_else(|panic| {
            Outcome::Failed(format!(
                "internal error: {}; other jobs are unaffected, please report this",
                panic_message(&panic)
            ))
        });
        let (status, message) = match outcome {
            Outcome::Succeeded(m) => (JobStatus::Succeeded, m),
            Outcome::Failed(m) => (JobStatus::Failed, m),
            Outcome::Stopped => match job.stop_reason() {
                Some(StopReason::Shutdown) => (
                    JobStatus::Queued,
                    self.runner
                        .interrupted(&job.snapshot(), Interruption::Shutdown),
                ),
                _ => (JobStatus::Cancelled, "cancelled by request".into()),
            },
        };
        let (status, message) = job.finish(status, message);
        tracing::info!(status = status.as_str(), %message, "job ended");
        let mut state = self.lock();
        state.running -= 1;
        self.schedule(&mut state);
        drop(state);
        self.finished.notify_all();
    }
}

impl State {
    fn job(&self, id: &str) -> Result<Arc<Job>, JobError> {
        self.jobs
            .get(id)
            .cloned()
            .ok_or_else(|| JobError::NotFound(id.to_string()))
    }

    fn insert(&mut self, job: Arc<Job>) {
        self.jobs.insert(job.id.clone(), job.clone());
        if let Some(r) = &job.request_id {
            self.by_request.insert(r.clone(), job.clone());
        }
        self.order.push(job);
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
