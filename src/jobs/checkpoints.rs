//! The checkpoint thread: writes checkpoints (retried, fsynced) for the state writer, off
//! its thread, so that an epoch's checkpoint never holds back the events behind it. Only
//! an epoch's metrics event waits for it: the state writer commits an epoch event only
//! once every checkpoint its job sent before that event is dealt with. A checkpoint that
//! cannot be written is reported back ([`CheckpointWriter::take_failures`]); the state
//! writer fails its job itself, between its commits, before any later epoch of the job is
//! recorded.

use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::job::Job;
use super::persist::retried;
use crate::domain::{Checkpoint, RunId};
use crate::store::StateStore;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How many of a job's checkpoints were handed to the thread, and how many it has dealt
/// with (written, or reported as failed).
#[derive(Default)]
pub(super) struct CheckpointProgress {
    /// (sent, dealt with)
    counts: Mutex<(u64, u64)>,
    done: Condvar,
}

impl CheckpointProgress {
    fn sent(&self) {
        lock(&self.counts).0 += 1;
    }

    /// How many have been sent so far.
    pub fn queued(&self) -> u64 {
        lock(&self.counts).0
    }

    fn dealt_with(&self) {
        lock(&self.counts).1 += 1;
        self.done.notify_all();
    }

    /// Waits until the first `n` sent have been dealt with.
    pub fn wait_for(&self, n: u64) {
        let mut c = lock(&self.counts);
        while c.1 < n {
            c = self.done.wait(c).unwrap_or_else(|e| e.into_inner());
        }
    }
}

enum Work {
    Write(Arc<Job>, RunId, Checkpoint),
    Flush(mpsc::Sender<()>),
}

/// Checkpoints that could not be written: the job, and why.
type Failures = Arc<Mutex<Vec<(Arc<Job>, String)>>>;

/// The sending side, held by the state writer.
pub(super) struct CheckpointWriter {
    tx: mpsc::Sender<Work>,
    failures: Failures,
}

impl CheckpointWriter {
    /// Starts the thread; it ends when the writer is dropped.
    pub fn spawn(store: Arc<dyn StateStore>) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let failures = Failures::default();
        let reported = failures.clone();
        std::thread::Builder::new()
            .name("checkpoint-writer".into())
            .spawn(move || run(&*store, &rx, &reported))?;
        Ok(Self { tx, failures })
    }

    /// Queues a checkpoint of `job`'s `run`; `job.checkpoints` counts it.
    pub fn write(&self, job: Arc<Job>, run: RunId, c: Checkpoint) {
        job.checkpoints.sent();
        if let Err(mpsc::SendError(Work::Write(job, ..))) = self.tx.send(Work::Write(job, run, c)) {
            // The thread is gone (it only ends with this writer): nothing will write it.
            let why = "the checkpoint writer has stopped".to_string();
            lock(&self.failures).push((job.clone(), why));
            job.checkpoints.dealt_with();
        }
    }

    /// The checkpoints that failed since the last call, with their jobs.
    pub fn take_failures(&self) -> Vec<(Arc<Job>, String)> {
        std::mem::take(&mut *lock(&self.failures))
    }

    /// Waits until every checkpoint queued so far is dealt with.
    pub fn flush(&self) {
        let (done, wait) = mpsc::channel();
        if self.tx.send(Work::Flush(done)).is_ok() {
            let _ = wait.recv();
        }
    }
}

fn run(store: &dyn StateStore, rx: &mpsc::Receiver<Work>, failures: &Failures) {
    for work in rx {
        match work {
            Work::Write(job, run, c) => {
                if job.writes_current(None)
                    && let Err(e) = retried("checkpoint write", || {
                        store.write_checkpoint(&job.id, run, &c)
                    })
                {
                    let why = format!(
                        "checkpoint of epoch {} of run {run} not written: {e}",
                        c.epoch
                    );
                    lock(failures).push((job.clone(), why));
                }
                // After a failure is reported, so a waiting epoch event sees it.
                job.checkpoints.dealt_with();
            }
            Work::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}
