//! The writer thread: persists events, run info and checkpoints in the order they were
//! produced, off the training threads, then makes events visible to watchers. A watcher
//! therefore only ever sees events that are already on disk: whatever a client was told
//! survives a crash.

use std::sync::Arc;
use std::sync::mpsc;

use super::job::Job;
use crate::domain::Checkpoint;
use crate::domain::EventKind;
use crate::domain::{JobEvent, RunInfo};
use crate::store::{Store, Write, keep_best, prune_checkpoints, write_checkpoint};

/// Writes handled per transaction at most.
const BATCH: usize = 512;

pub(super) enum Persist {
    Event(Arc<Job>, Arc<JobEvent>),
    Info(String, RunInfo),
    Checkpoint(Arc<Job>, Checkpoint),
    /// Answered once everything sent before it is written.
    Flush(mpsc::Sender<()>),
}

#[derive(Clone)]
pub(super) struct Persister {
    tx: mpsc::Sender<Persist>,
}

impl Persister {
    /// Starts the writer thread; it ends when the last `Persister` is dropped.
    pub fn spawn(store: Arc<Store>) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("state-writer".into())
            .spawn(move || run(&store, &rx))?;
        Ok(Self { tx })
    }

    pub fn send(&self, p: Persist) {
        // Fails only after the writer stopped, at the very end of shutdown.
        if self.tx.send(p).is_err() {
            tracing::error!("state writer has stopped; an update was not saved");
        }
    }

    /// Waits until everything sent so far is written.
    pub fn flush(&self) {
        let (done, wait) = mpsc::channel();
        self.send(Persist::Flush(done));
        let _ = wait.recv();
    }
}

fn run(store: &Store, rx: &mpsc::Receiver<Persist>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        // Checkpoints first: a checkpoint always precedes its epoch's metrics event, so
        // recovery can trust that the checkpoint of every recorded epoch exists.
        for p in &batch {
            if let Persist::Checkpoint(job, c) = p
                && let Err(e) = write_checkpoint(&store.job_dir(&job.id), c)
            {
                tracing::error!(job = %job.id, epoch = c.epoch, error = %e, "checkpoint not written");
            }
        }
        let writes: Vec<Write<'_>> = batch
            .iter()
            .filter_map(|p| match p {
                Persist::Event(_, e) => Some(Write::Event(e)),
                Persist::Info(job_id, info) => Some(Write::Info { job_id, info }),
                _ => None,
            })
            .collect();
        if !writes.is_empty() {
            commit(store, &writes);
        }
        for p in batch {
            match p {
                Persist::Event(job, e) => {
                    job.mark_durable(e.seq);
                    if let EventKind::Epoch(end) = &e.kind {
                        let dir = store.job_dir(&job.id);
                        let epoch = job.spec.checkpoint_epoch(end);
                        if end.best_epoch == epoch
                            && let Err(err) = keep_best(&dir, epoch)
                        {
                            tracing::error!(job = %job.id, epoch, error = %err, "best model not kept");
                        }
                        // Older checkpoints are no longer needed once an epoch is recorded.
                        if let Err(err) = prune_checkpoints(&dir, epoch) {
                            tracing::warn!(job = %job.id, error = %err, "old checkpoints not removed");
                        }
                    }
                }
                Persist::Flush(done) => {
                    let _ = done.send(());
                }
                _ => {}
            }
        }
    }
}

/// Commits a batch, retrying a few times (a full disk may be freed, a lock released).
/// If it still fails the events stay visible in memory and the error is logged: the
/// service keeps running, but those events will be missing after a restart.
fn commit(store: &Store, writes: &[Write<'_>]) {
    const ATTEMPTS: u32 = 5;
    for attempt in 1..=ATTEMPTS {
        match store.write(writes) {
            Ok(()) => return,
            Err(e) if attempt < ATTEMPTS => {
                tracing::warn!(attempt, error = %e, "state database write failed; retrying");
                std::thread::sleep(std::time::Duration::from_millis(200 * u64::from(attempt)));
            }
            Err(e) => tracing::error!(error = %e, "events not saved to the state database"),
        }
    }
}
