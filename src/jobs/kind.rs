//! The one interface between the scheduler and what a job does. The scheduler owns the
//! queue, the slots, the threads, the event log and persistence; a [`Runner`] is called on
//! the job's thread with a [`RunContext`] and says how the work ended.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::StopReason;
use super::job::{Best, Job, JobSnapshot};
use crate::data::Dataset;
use crate::domain::{
    Checkpoint, EventKind, JobKind, JobSpec, JobStatus, ModelSelection, RunId, RunInfo,
};

/// How a job's work ended, as its kind reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded(String),
    Failed(String),
    /// The kind saw the cancel flag and stopped; the scheduler makes this CANCELLED (a
    /// client asked) or QUEUED (a shutdown: it resumes after the restart).
    Stopped,
}

/// What RUNNING says when a job starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// The device the job runs on (`cpu`, `cuda:0`).
    pub device: String,
    pub message: String,
}

/// Why a running job goes back to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interruption {
    /// The server is shutting down and the job stopped at an iteration boundary.
    Shutdown,
    /// The server found the job RUNNING when it started (it had crashed or been killed).
    Restart,
}

/// Runs jobs of the kinds it knows. Called on the job's own OS thread (`run`) or under the
/// scheduler's lock (`starting`, `interrupted`: these must be quick).
pub trait Runner: Send + Sync + 'static {
    /// The device and RUNNING message for `job`, which is about to start.
    fn starting(&self, job: &JobSnapshot) -> Start;
    /// Does the job's work, reporting through `ctx`, until it ends or `ctx` is cancelled.
    /// A panic here fails this job only.
    fn run(&self, ctx: &mut RunContext<'_>) -> Outcome;
    /// The QUEUED message of `job`, interrupted as `why`, saying where it will resume.
    fn interrupted(&self, job: &JobSnapshot, why: Interruption) -> String;
}

/// What a running job can see and do. Every event goes through the job's log (numbered,
/// persisted, then shown to watchers); nothing here blocks on a watcher or a disk.
///
/// A job has runs ([`RunId`]): its own, and child runs (an ensemble's members, a sweep's
/// trials) that a kind starts by reporting into them: `push_in` and `save_checkpoint`
/// take the run, and each run's progress is kept apart (`run_epochs`), so that a resumed
/// job finds where each of its runs stopped.
pub struct RunContext<'a> {
    job: &'a Arc<Job>,
}

impl<'a> RunContext<'a> {
    pub(super) fn new(job: &'a Arc<Job>) -> Self {
        Self { job }
    }

    pub fn job_id(&self) -> &str {
        &self.job.id
    }

    pub fn kind(&self) -> JobKind {
        self.job.kind
    }

    pub fn spec(&self) -> &JobSpec {
        &self.job.spec
    }

    /// Set when the job is cancelled or the server shuts down: stop at the next boundary
    /// and return [`Outcome::Stopped`].
    pub fn cancel_flag(&self) -> &AtomicBool {
        self.job.cancel_flag()
    }

    /// True once a shutdown (not a client) asked the job to stop: state worth resuming
    /// from should be checkpointed.
    pub fn stopping_for_shutdown(&self) -> bool {
        self.job.stop_reason() == Some(StopReason::Shutdown)
    }

    /// Appends an event of the job's own run to its log.
    pub fn push(&self, event: EventKind) {
        self.job.push(RunId::JOB, event);
    }

    /// Appends an event of `run` to the job's log; the first one starts that run.
    pub fn push_in(&self, run: RunId, event: EventKind) {
        self.job.push(run, event);
    }

    /// A RUNNING status with a new message (what the run does, once it knows).
    pub fn running(&self, message: String) {
        self.job.set_status(JobStatus::Running, message);
    }

    /// What the run reports about itself at its start.
    pub fn record_info(&self, info: RunInfo) {
        self.job.record_info(info);
    }

    /// Hands a checkpoint of `run` to the writer; it is on disk before any event pushed
    /// after it.
    pub fn save_checkpoint(&self, run: RunId, checkpoint: Checkpoint) {
        self.job.save_checkpoint(run, checkpoint);
    }

    /// The dataset read at submit time, once (a recovered job has none: read it again).
    pub fn take_dataset(&self) -> Option<Dataset> {
        self.job.take_dataset()
    }

    /// Training epochs recorded so far in `run`.
    pub fn run_epochs(&self, run: RunId) -> u32 {
        self.job.run_epochs(run)
    }

    /// The run and epoch of the last training epoch recorded (a resumed job continues
    /// after it).
    pub fn last_recorded(&self) -> Option<(RunId, u32)> {
        self.job.last_recorded()
    }

    /// The metric that picks the best epoch, and the best epoch so far with its score.
    pub fn best(&self) -> (ModelSelection, Option<Best>) {
        self.job.best()
    }

    /// The job's recorded events for which `f` gives a value, oldest first.
    pub fn events_matching<T>(&self, f: impl Fn(&EventKind) -> Option<T>) -> Vec<T> {
        self.job.events_matching(f)
    }
}
