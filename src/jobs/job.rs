//! One job: its spec, its state and its event log, and the watcher side of the log.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::sync::watch;

use super::checkpoints::CheckpointProgress;
use super::persist::{Persist, Persister};
use crate::data::Dataset;
use crate::domain::{
    Checkpoint, EpochEnd, EventKind, FeatureInfo, JobEvent, JobKind, JobSpec, JobStatus,
    ModelSelection, RunId, RunInfo,
};
use crate::observability::TraceParent;
use crate::store::StoredJob;

/// A consistent copy of a job's state.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSnapshot {
    pub id: String,
    pub kind: JobKind,
    pub spec: JobSpec,
    pub status: JobStatus,
    pub message: String,
    pub created: SystemTime,
    pub started: Option<SystemTime>,
    pub finished: Option<SystemTime>,
    /// Training epochs recorded, over all of the job's runs.
    pub epochs_completed: u32,
    pub last_epoch: Option<EpochEnd>,
    /// The run and epoch of the last recorded model (an ensemble's: its own, once
    /// evaluated; before that, the member checkpoint that carries the members so far).
    pub last_model: Option<(RunId, u32)>,
    pub parameter_count: u64,
    pub labels: Vec<String>,
    pub train_samples: u64,
    pub validation_samples: u64,
    pub device: String,
    /// The best epoch (and its run) by the spec's `best_model_metric`, and that metric's
    /// value.
    pub best: Option<Best>,
    pub features: FeatureInfo,
    /// The class weights training uses (empty: unweighted).
    pub class_weights: Vec<f64>,
    /// Training rows per class, before and after resampling.
    pub train_class_counts: Vec<u64>,
    pub resampled_class_counts: Vec<u64>,
}

/// The best model so far: a run's epoch and its score (higher is better) or, in a
/// snapshot, the metric's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Best {
    pub run: RunId,
    pub epoch: u32,
    pub value: f64,
}

/// Why a job was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A client cancelled it: it ends CANCELLED.
    Cancelled,
    /// The server is shutting down: it goes back to QUEUED and resumes after a restart.
    Shutdown,
}

pub(super) struct Job {
    pub id: String,
    pub request_id: Option<String>,
    pub kind: JobKind,
    pub spec: JobSpec,
    created: SystemTime,
    cancel: AtomicBool,
    inner: Mutex<Inner>,
    /// Carries the number of durable events; watchers wait on it.
    log_len: watch::Sender<u64>,
    persister: Persister,
    /// The checkpoints handed to the checkpoint thread, and those it has dealt with.
    pub checkpoints: CheckpointProgress,
    /// The trace of the request that submitted it: its runs' spans are children of it.
    pub trace_parent: TraceParent,
}

struct Inner {
    status: JobStatus,
    message: String,
    started: Option<SystemTime>,
    finished: Option<SystemTime>,
    /// Training epochs recorded per run (an ensemble's evaluation is not one).
    run_epochs: BTreeMap<RunId, u32>,
    /// The run and epoch of the last training epoch recorded: where a restart resumes.
    last_recorded: Option<(RunId, u32)>,
    last_model: Option<(RunId, u32)>,
    last_epoch: Option<EpochEnd>,
    info: Option<RunInfo>,
    labels: Vec<String>,
    device: String,
    selection: ModelSelection,
    /// The best epoch so far and its selection score.
    best: Option<Best>,
    stop_reason: Option<StopReason>,
    /// Held from submit until the job starts; then owned by the training thread. A job
    /// recovered after a restart reads its dataset again when it starts.
    dataset: Option<Dataset>,
    events: Vec<Arc<JobEvent>>,
    /// Events `..durable` are on disk; only those are shown to watchers.
    durable: u64,
    /// Set at shutdown: streams of jobs that will not finish in this process end.
    streams_closed: bool,
    /// Why the store could not keep this job's progress, once it could not.
    storage_error: Option<String>,
    /// Bumped when events that were never committed are dropped from the log; the writer
    /// skips events of an older generation.
    generation: u64,
    /// True while a job thread runs this job.
    on_thread: bool,
    /// Set when not even the FAILED status of a job failed by the store could be saved:
    /// its streams end with what is on disk.
    gave_up: bool,
}

impl Inner {
    fn new(selection: ModelSelection, labels: Vec<String>, dataset: Option<Dataset>) -> Self {
        Self {
            selection,
            best: None,
            status: JobStatus::Queued,
            message: String::new(),
            started: None,
            finished: None,
            run_epochs: BTreeMap::new(),
            last_recorded: None,
            last_model: None,
            last_epoch: None,
            info: None,
            labels,
            device: String::new(),
            stop_reason: None,
            dataset,
            events: Vec::new(),
            durable: 0,
            streams_closed: false,
            storage_error: None,
            generation: 0,
            on_thread: false,
            gave_up: false,
        }
    }

    fn epochs_completed(&self) -> u32 {
        self.run_epochs.values().sum()
    }

    /// Rebuilds the state the events give from the first `len` events alone.
    fn replay(&mut self, len: usize) {
        self.events.truncate(len);
        let fresh = Inner::new(self.selection, Vec::new(), None);
        self.status = fresh.status;
        self.message = fresh.message;
        self.started = fresh.started;
        self.finished = fresh.finished;
        self.run_epochs = fresh.run_epochs;
        self.last_recorded = fresh.last_recorded;
        self.last_model = fresh.last_model;
        self.last_epoch = fresh.last_epoch;
        self.best = fresh.best;
        let events = std::mem::take(&mut self.events);
        for e in &events {
            self.apply(e.run, &e.kind, e.time);
        }
        self.events = events;
    }

    /// The one place an event changes a job's state (live, and when replaying the log).
    fn apply(&mut self, run: RunId, kind: &EventKind, time: SystemTime) {
        match kind {
            EventKind::Status { status, message } => {
                self.status = *status;
                self.message = message.clone();
                match status {
                    JobStatus::Running => self.started = self.started.or(Some(time)),
                    s if s.is_terminal() => self.finished = Some(time),
                    _ => {}
                }
            }
            EventKind::Epoch(e) => {
                if !e.ensemble {
                    self.run_epochs.insert(run, e.epoch);
                    self.last_recorded = Some((run, e.epoch));
                }
                self.last_model = Some((run, e.epoch));
                if (e.best_run, e.best_epoch) == (run, e.epoch)
                    && let Some(score) = self.selection.score(e.selection_metrics())
                {
                    self.best = Some(Best {
                        run,
                        epoch: e.epoch,
                        value: score,
                    });
                }
                self.last_epoch = Some((**e).clone());
            }
            EventKind::Iteration(_) | EventKind::RangePoint(_) | EventKind::RangeResult(_) => {}
        }
    }
}

impl Job {
    pub fn new(
        id: String,
        request_id: Option<String>,
        kind: JobKind,
        spec: JobSpec,
        dataset: Option<Dataset>,
        labels: Vec<String>,
        persister: Persister,
    ) -> Self {
        let selection = spec.best_model_metric;
        Self {
            id,
            request_id,
            kind,
            spec,
            created: SystemTime::now(),
            cancel: AtomicBool::new(false),
            inner: Mutex::new(Inner::new(selection, labels, dataset)),
            log_len: watch::channel(0).0,
            persister,
            checkpoints: CheckpointProgress::default(),
            trace_parent: TraceParent::current(),
        }
    }

    /// A job read back from the state database, its state rebuilt from its events.
    pub fn restore(stored: StoredJob, persister: Persister) -> Self {
        let mut inner = Inner::new(stored.spec.best_model_metric, Vec::new(), None);
        if let Some(info) = &stored.info {
            inner.labels = info.labels.clone();
            inner.device = info.device.clone();
        }
        inner.info = stored.info;
        for e in stored.events {
            inner.apply(e.run, &e.kind, e.time);
            inner.events.push(Arc::new(e));
        }
        inner.durable = inner.events.len() as u64;
        Self {
            id: stored.id,
            request_id: stored.request_id,
            kind: stored.kind,
            spec: stored.spec,
            created: stored.created,
            cancel: AtomicBool::new(false),
            log_len: watch::channel(inner.durable).0,
            inner: Mutex::new(inner),
            persister,
            checkpoints: CheckpointProgress::default(),
            trace_parent: TraceParent::default(),
        }
    }

    pub fn created(&self) -> SystemTime {
        self.created
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends an event (next seq) and applies it to the job's state under one lock, then
    /// hands it to the writer, which shows it to watchers once it is on disk. Events after
    /// a terminal status are dropped: the log ends there.
    pub fn push(self: &Arc<Self>, run: RunId, kind: EventKind) {
        let mut inner = self.lock();
        self.append(&mut inner, run, kind);
    }

    /// Records the end of the job thread's work: `status` and `message`, unless the store
    /// failed the job meanwhile, which then ends FAILED saying so. Returns what it recorded.
    pub fn finish(self: &Arc<Self>, status: JobStatus, message: String) -> (JobStatus, String) {
        let mut inner = self.lock();
        inner.on_thread = false;
        let (status, message) = match &inner.storage_error {
            Some(why) => (JobStatus::Failed, why.clone()),
            None => (status, message),
        };
        let kind = EventKind::Status {
            status,
            message: message.clone(),
        };
        self.append(&mut inner, RunId::JOB, kind);
        (status, message)
    }

    fn append(self: &Arc<Self>, inner: &mut Inner, run: RunId, kind: EventKind) {
        if inner.status.is_terminal() && !inner.events.is_empty() {
            return;
        }
        // Once the store failed this job, only its final status is still recorded.
        let terminal = matches!(&kind, EventKind::Status { status, .. } if status.is_terminal());
        if inner.storage_error.is_some() && !terminal {
            return;
        }
        let time = SystemTime::now();
        inner.apply(run, &kind, time);
        let seq = inner.events.len() as u64 + 1;
        let event = Arc::new(JobEvent {
            job_id: self.id.clone(),
            seq,
            run,
            time,
            kind,
        });
        inner.events.push(event.clone());
        // Sent under the lock, so the writer receives this job's events in seq order.
        self.persister
            .send(Persist::Event(self.clone(), event, inner.generation));
    }

    /// Called by the writer when it could not commit this job's events or checkpoint
    /// (after its retries). Everything not on disk is dropped from the log (watchers never
    /// saw it) and the job's state is what the disk holds; the job is stopped and ends
    /// FAILED saying why. A later failure to record that FAILED status is only logged: the
    /// job then stays FAILED in memory and resumes from its last saved epoch after a
    /// restart.
    pub fn storage_failed(self: &Arc<Self>, why: &str) {
        let mut inner = self.lock();
        if inner.storage_error.is_some() {
            // Its FAILED status could not be saved either.
            inner.gave_up = true;
            drop(inner);
            self.log_len.send_modify(|_| {});
            return;
        }
        inner.generation += 1;
        let durable = inner.durable as usize;
        inner.replay(durable);
        let message = format!(
            "the server could not save this job's progress ({why}); nothing after {} was kept. Free space in the state directory or make it writable, then submit the job again",
            match inner.last_recorded {
                None => "its start".to_string(),
                Some((RunId::JOB, epoch)) => format!("epoch {epoch}"),
                Some((run, epoch)) => format!("epoch {epoch} of run {run}"),
            }
        );
        tracing::error!(job = %self.id, %message, "job failed by the state store");
        inner.storage_error = Some(message.clone());
        self.cancel.store(true, Ordering::SeqCst);
        let on_thread = inner.on_thread;
        drop(inner);
        // A job thread records the end itself; otherwise it is recorded here.
        if !on_thread {
            self.set_status(JobStatus::Failed, message);
        }
    }

    /// Whether the writer should still write an event or checkpoint of `generation`.
    pub fn writes_current(&self, generation: Option<u64>) -> bool {
        let inner = self.lock();
        inner.storage_error.is_none() || generation.is_some_and(|g| g == inner.generation)
    }

    /// Called by the writer once events up to `seq` are on disk.
    pub fn mark_durable(&self, seq: u64) {
        let mut inner = self.lock();
        if seq > inner.durable && seq <= inner.events.len() as u64 {
            inner.durable = seq;
            drop(inner);
            self.log_len.send_replace(seq);
        }
    }

    /// Ends every open stream of this job once it has delivered what is on disk.
    pub fn close_streams(&self) {
        self.lock().streams_closed = true;
        self.log_len.send_modify(|_| {});
    }

    pub fn status(&self) -> JobStatus {
        self.lock().status
    }

    /// Training epochs recorded in `run`.
    pub fn run_epochs(&self, run: RunId) -> u32 {
        self.lock().run_epochs.get(&run).copied().unwrap_or(0)
    }

    /// The run and epoch of the last training epoch recorded.
    pub fn last_recorded(&self) -> Option<(RunId, u32)> {
        self.lock().last_recorded
    }

    pub fn has_events(&self) -> bool {
        !self.lock().events.is_empty()
    }

    /// Records RUNNING on `device`, for a job thread that is about to start. False (and
    /// nothing recorded) when the job has ended meanwhile (failed by the store).
    pub fn start(self: &Arc<Self>, device: String, message: String) -> bool {
        let mut inner = self.lock();
        if inner.status.is_terminal() {
            return false;
        }
        inner.device = device;
        inner.on_thread = true;
        let kind = EventKind::Status {
            status: JobStatus::Running,
            message,
        };
        self.append(&mut inner, RunId::JOB, kind);
        true
    }

    /// The job thread could not be started after all.
    pub fn not_started(self: &Arc<Self>, message: String) {
        self.lock().on_thread = false;
        self.set_status(JobStatus::Failed, message);
    }

    /// Keeps what a run reports about itself at its start (and writes it), unless the
    /// store has failed the job.
    pub fn record_info(self: &Arc<Self>, info: RunInfo) {
        {
            let mut inner = self.lock();
            if inner.storage_error.is_some() {
                return;
            }
            inner.labels = info.labels.clone();
            inner.info = Some(info.clone());
        }
        self.persister.send(Persist::Info(self.clone(), info));
    }

    /// Hands a checkpoint of `run` to the writer.
    pub fn save_checkpoint(self: &Arc<Self>, run: RunId, checkpoint: Checkpoint) {
        self.persister
            .send(Persist::Checkpoint(self.clone(), run, checkpoint));
    }

    /// The metric that picks the best epoch, and the best epoch so far with its score.
    pub fn best(&self) -> (ModelSelection, Option<Best>) {
        let inner = self.lock();
        (inner.selection, inner.best)
    }

    /// The recorded events for which `f` gives a value, oldest first.
    pub fn events_matching<T>(&self, f: impl Fn(&EventKind) -> Option<T>) -> Vec<T> {
        self.lock()
            .events
            .iter()
            .filter_map(|e| f(&e.kind))
            .collect()
    }

    pub fn set_status(self: &Arc<Self>, status: JobStatus, message: String) {
        self.push(RunId::JOB, EventKind::Status { status, message });
    }

    /// Asks the job to stop and returns its status at that moment. A client's cancel wins
    /// over a shutdown: a job cancelled during the shutdown grace period stays cancelled.
    pub fn request_stop(&self, reason: StopReason) -> JobStatus {
        let mut inner = self.lock();
        if !inner.status.is_terminal() {
            self.cancel.store(true, Ordering::SeqCst);
            if inner.stop_reason.is_none() || reason == StopReason::Cancelled {
                inner.stop_reason = Some(reason);
            }
        }
        inner.status
    }

    pub fn cancel_flag(&self) -> &AtomicBool {
        &self.cancel
    }

    pub fn stop_reason(&self) -> Option<StopReason> {
        self.lock().stop_reason
    }

    /// The metrics event of `run`'s `epoch`, if it is recorded.
    pub fn epoch_end(&self, run: RunId, epoch: u32) -> Option<EpochEnd> {
        self.lock().events.iter().rev().find_map(|e| match &e.kind {
            EventKind::Epoch(end) if (e.run, end.epoch) == (run, epoch) => Some((**end).clone()),
            _ => None,
        })
    }

    pub fn take_dataset(&self) -> Option<Dataset> {
        self.lock().dataset.take()
    }

    pub fn snapshot(&self) -> JobSnapshot {
        let inner = self.lock();
        let info = inner.info.as_ref();
        JobSnapshot {
            id: self.id.clone(),
            kind: self.kind,
            spec: self.spec.clone(),
            status: inner.status,
            message: inner.message.clone(),
            created: self.created,
            started: inner.started,
            finished: inner.finished,
            epochs_completed: inner.epochs_completed(),
            last_epoch: inner.last_epoch.clone(),
            last_model: inner.last_model,
            parameter_count: info.map_or(0, |i| i.parameter_count),
            labels: inner.labels.clone(),
            train_samples: info.map_or(0, |i| i.train_samples),
            validation_samples: info.map_or(0, |i| i.validation_samples),
            device: inner.device.clone(),
            best: inner.best.map(|b| Best {
                value: inner.selection.value_of_score(b.value),
                ..b
            }),
            features: info.map(|i| i.features.clone()).unwrap_or_default(),
            class_weights: info.map(|i| i.class_weights.clone()).unwrap_or_default(),
            train_class_counts: info
                .map(|i| i.train_class_counts.clone())
                .unwrap_or_default(),
            resampled_class_counts: info
                .map(|i| i.resampled_class_counts.clone())
                .unwrap_or_default(),
        }
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

    /// The next events in order (every event once, only once it is on disk), waiting for
    /// new ones; `None` after the terminal status event has been returned, or at shutdown
    /// once everything on disk was delivered.
    pub async fn next_batch(&mut self) -> Option<Vec<Arc<JobEvent>>> {
        loop {
            // Mark the current length seen *before* reading the log, so an event made
            // durable after the read wakes `changed()` below.
            self.log_len.borrow_and_update();
            {
                let inner = self.job.lock();
                let len = inner.durable;
                if len >= self.next {
                    let batch = inner.events[(self.next - 1) as usize..len as usize].to_vec();
                    self.next = len + 1;
                    return Some(batch);
                }
                let all_on_disk = inner.durable == inner.events.len() as u64;
                let ended = inner.status.is_terminal() || inner.streams_closed;
                if ended && (all_on_disk || inner.gave_up) {
                    return None;
                }
            }
            if self.log_len.changed().await.is_err() {
                return None;
            }
        }
    }
}
