//! One job: its spec, its state and its event log, and the watcher side of the log.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::sync::watch;

use crate::data::Dataset;
use crate::domain::{
    EpochEnd, EventKind, IterationProgress, JobEvent, JobSpec, JobStatus, RunInfo,
};
use crate::engine::Observer;

/// A consistent copy of a job's state.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSnapshot {
    pub id: String,
    pub spec: JobSpec,
    pub status: JobStatus,
    pub message: String,
    pub created: SystemTime,
    pub started: Option<SystemTime>,
    pub finished: Option<SystemTime>,
    pub epochs_completed: u32,
    pub last_epoch: Option<EpochEnd>,
    pub parameter_count: u64,
    pub labels: Vec<String>,
    pub train_samples: u64,
    pub validation_samples: u64,
    pub device: String,
}

pub(super) struct Job {
    pub id: String,
    pub spec: JobSpec,
    created: SystemTime,
    cancel: AtomicBool,
    inner: Mutex<Inner>,
    /// Carries the number of events in the log; watchers wait on it.
    log_len: watch::Sender<u64>,
}

struct Inner {
    status: JobStatus,
    message: String,
    started: Option<SystemTime>,
    finished: Option<SystemTime>,
    epochs_completed: u32,
    last_epoch: Option<EpochEnd>,
    info: Option<RunInfo>,
    labels: Vec<String>,
    device: String,
    cancel_reason: String,
    /// Held from submit until the job starts; then owned by the training thread.
    dataset: Option<Dataset>,
    events: Vec<Arc<JobEvent>>,
}

impl Job {
    pub fn new(id: String, spec: JobSpec, dataset: Dataset) -> Self {
        Self {
            id,
            spec,
            created: SystemTime::now(),
            cancel: AtomicBool::new(false),
            inner: Mutex::new(Inner {
                status: JobStatus::Queued,
                message: String::new(),
                started: None,
                finished: None,
                epochs_completed: 0,
                last_epoch: None,
                info: None,
                labels: dataset.labels.clone(),
                device: String::new(),
                cancel_reason: String::new(),
                dataset: Some(dataset),
                events: Vec::new(),
            }),
            log_len: watch::channel(0).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends an event (next seq) and applies it to the job's state, under one lock, then
    /// wakes watchers. Events after a terminal status are dropped: the log ends there.
    pub fn push(&self, kind: EventKind) {
        let mut inner = self.lock();
        if inner.status.is_terminal() && !inner.events.is_empty() {
            return;
        }
        match &kind {
            EventKind::Status { status, message } => {
                inner.status = *status;
                inner.message = message.clone();
                if status.is_terminal() {
                    inner.finished = Some(SystemTime::now());
                }
            }
            EventKind::Epoch(e) => {
                inner.epochs_completed = e.epoch;
                inner.last_epoch = Some((**e).clone());
            }
            EventKind::Iteration(_) => {}
        }
        let seq = inner.events.len() as u64 + 1;
        inner.events.push(Arc::new(JobEvent {
            job_id: self.id.clone(),
            seq,
            time: SystemTime::now(),
            kind,
        }));
        drop(inner);
        self.log_len.send_replace(seq);
    }

    pub fn start(&self, device: String) {
        {
            let mut inner = self.lock();
            inner.started = Some(SystemTime::now());
            inner.device = device.clone();
        }
        self.push(EventKind::Status {
            status: JobStatus::Running,
            message: format!("training on {device}"),
        });
    }

    pub fn finish(&self, status: JobStatus, message: String) {
        self.push(EventKind::Status { status, message });
    }

    /// Sets the cancel flag (first reason wins) and returns the status at that moment.
    pub fn request_cancel(&self, reason: &str) -> JobStatus {
        let mut inner = self.lock();
        if !inner.status.is_terminal() && !self.cancel.swap(true, Ordering::SeqCst) {
            inner.cancel_reason = reason.to_string();
        }
        inner.status
    }

    pub fn cancel_flag(&self) -> &AtomicBool {
        &self.cancel
    }

    pub fn cancel_reason(&self) -> String {
        self.lock().cancel_reason.clone()
    }

    pub fn take_dataset(&self) -> Option<Dataset> {
        self.lock().dataset.take()
    }

    pub fn snapshot(&self) -> JobSnapshot {
        let inner = self.lock();
        let info = inner.info.as_ref();
        JobSnapshot {
            id: self.id.clone(),
            spec: self.spec.clone(),
            status: inner.status,
            message: inner.message.clone(),
            created: self.created,
            started: inner.started,
            finished: inner.finished,
            epochs_completed: inner.epochs_completed,
            last_epoch: inner.last_epoch.clone(),
            parameter_count: info.map_or(0, |i| i.parameter_count),
            labels: inner.labels.clone(),
            train_samples: info.map_or(0, |i| i.train_samples),
            validation_samples: info.map_or(0, |i| i.validation_samples),
            device: inner.device.clone(),
        }
    }
}

/// Feeds engine reports into the job's log.
pub(super) struct JobObserver<'a> {
    job: &'a Job,
}

impl<'a> JobObserver<'a> {
    pub fn new(job: &'a Job) -> Self {
        Self { job }
    }
}

impl Observer for JobObserver<'_> {
    fn started(&mut self, info: RunInfo) {
        self.job.lock().info = Some(info);
    }

    fn iteration(&mut self, progress: IterationProgress) {
        self.job.push(EventKind::Iteration(progress));
    }

    fn epoch_end(&mut self, epoch: EpochEnd) {
        self.job.push(EventKind::Epoch(Box::new(epoch)));
    }
}

/// One watcher's position in a job's log.
pub struct Subscription {
    job: Arc<Job>,
    log_len: watch::Receiver<u64>,
    next: u64,
}

impl Subscription {
    pub(super) fn new(job: Arc<Job>, from_seq: u64) -> Self {
        let log_len = job.log_len.subscribe();
        Self {
            job,
            log_len,
            next: from_seq.max(1),
        }
    }

    /// The next events in order (every event once), waiting for new ones; `None` after the
    /// terminal status event has been returned.
    pub async fn next_batch(&mut self) -> Option<Vec<Arc<JobEvent>>> {
        loop {
            // Mark the current length seen *before* reading the log, so an event pushed
            // after the read wakes `changed()` below.
            self.log_len.borrow_and_update();
            {
                let inner = self.job.lock();
                let len = inner.events.len() as u64;
                if len >= self.next {
                    let batch = inner.events[(self.next - 1) as usize..].to_vec();
                    self.next = len + 1;
                    return Some(batch);
                }
                if inner.status.is_terminal() {
                    return None;
                }
            }
            if self.log_len.changed().await.is_err() {
                return None;
            }
        }
    }
}
