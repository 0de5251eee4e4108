//! The writer thread: persists events, run info and checkpoints in the order they were
//! produced, off the training threads, then makes events visible to watchers. Checkpoints
//! are written by the checkpoint thread (`checkpoints.rs`); an epoch's metrics event is
//! committed only once its checkpoint is on disk, every other event without waiting. A watcher
//! therefore only ever sees events that are already on disk: whatever a client was told
//! survives a crash. A write that still fails after its retries (a full disk, a read-only
//! file system) fails the jobs it was for (`Job::storage_failed`): nothing is shown or
//! claimed that is not on disk, and the server carries on.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Instant;

use super::checkpoints::CheckpointWriter;
use super::job::Job;
use crate::domain::{Checkpoint, EventKind, JobEvent, RunId, RunInfo};
use crate::observability::Observability;
use crate::store::{StateStore, StoreError, Write};

/// Writes handled per transaction at most.
const BATCH: usize = 512;

pub(super) enum Persist {
    /// An event, with the job's log generation when it was pushed.
    Event(Arc<Job>, Arc<JobEvent>, u64),
    Info(Arc<Job>, RunInfo),
    Checkpoint(Arc<Job>, RunId, Checkpoint),
    /// Answered once everything sent before it is written.
    Flush(mpsc::Sender<()>),
}

#[derive(Clone)]
pub(super) struct Persister {
    tx: mpsc::Sender<Persist>,
}

impl Persister {
    /// Starts the writer thread; it ends when the last `Persister` is dropped.
    /// What it commits is reported to `observe` (metrics, TensorBoard).
    pub fn spawn(store: Arc<dyn StateStore>, observe: Arc<Observability>) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let checkpoints = CheckpointWriter::spawn(store.clone())?;
        std::thread::Builder::new()
            .name("state-writer".into())
            .spawn(move || run(&*store, &rx, &checkpoints, &observe))?;
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

/// Attempts per write before the jobs it was for fail.
const ATTEMPTS: u32 = 5;

/// Runs `write` until it succeeds, fails for a reason no retry mends (a conflict, an
/// unknown job), or `ATTEMPTS` tries failed for one that may pass (a full disk may be
/// freed, a lock released), waiting a little longer after each.
pub(super) fn retried<T>(
    what: &str,
    mut write: impl FnMut() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut attempt = 1;
    loop {
        match write() {
            Ok(v) => return Ok(v),
            Err(e) if e.is_write_fault() && attempt < ATTEMPTS => {
                tracing::warn!(attempt, error = %e, "{what} failed; retrying");
                std::thread::sleep(std::time::Duration::from_millis(100 * u64::from(attempt)));
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The writes of a batch that are still current, with the job each is for.
fn current_writes(batch: &[Persist]) -> Vec<(&Arc<Job>, Write<'_>)> {
    batch
        .iter()
        .filter_map(|p| match p {
            Persist::Event(job, e, g) if job.writes_current(Some(*g)) => {
                Some((job, Write::Event(e)))
            }
            Persist::Info(job, info) if job.writes_current(None) => Some((
                job,
                Write::Info {
                    job_id: &job.id,
                    info,
                },
            )),
            _ => None,
        })
        .collect()
}

/// Commits the batch's writes in one transaction; if that fails, each job's writes in a
/// transaction of their own, so that one job's failure (its disk quota, a conflict of its
/// own) fails that job only. A job whose writes still fail is failed by the store.
/// Returns the jobs whose writes are not on disk.
fn commit<'a>(store: &dyn StateStore, batch: &'a [Persist]) -> Vec<&'a Arc<Job>> {
    let writes = current_writes(batch);
    let mut failed = Vec::new();
    if writes.is_empty() {
        return failed;
    }
    let all: Vec<Write<'_>> = writes.iter().map(|(_, w)| *w).collect();
    let Err(e) = retried("state database write", || store.append(&all)) else {
        return failed;
    };
    tracing::warn!(error = %e, "batch not saved; saving each job's events on their own");
    let mut jobs: Vec<&Arc<Job>> = Vec::new();
    for (job, _) in &writes {
        if !jobs.iter().any(|j| Arc::ptr_eq(j, job)) {
            jobs.push(job);
        }
    }
    for job in jobs {
        let own: Vec<Write<'_>> = writes
            .iter()
            .filter(|(j, _)| Arc::ptr_eq(j, job))
            .map(|(_, w)| *w)
            .collect();
        if let Err(e) = retried("state database write", || store.append(&own)) {
            tracing::error!(job = %job.id, error = %e, "events not saved to the state database");
            job.storage_failed(&format!("events not saved: {e}"));
            failed.push(job);
        }
    }
    failed
}

/// Fails the jobs whose checkpoints could not be written (here, between commits).
fn fail_for_checkpoints(checkpoints: &CheckpointWriter) {
    for (job, why) in checkpoints.take_failures() {
        tracing::error!(job = %job.id, %why, "checkpoint not saved");
        job.storage_failed(&why);
    }
}

fn run(
    store: &dyn StateStore,
    rx: &mpsc::Receiver<Persist>,
    checkpoints: &CheckpointWriter,
    observe: &Observability,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        fail_for_checkpoints(checkpoints);
        // What a job failed by the store still sends, from before its failure, is dropped.
        batch.retain(|p| match p {
            Persist::Event(job, _, generation) => job.writes_current(Some(*generation)),
            Persist::Checkpoint(job, ..) | Persist::Info(job, _) => job.writes_current(None),
            Persist::Flush(_) => true,
        });
        // Checkpoints go to the checkpoint thread, in order. A checkpoint always precedes
        // its epoch's metrics event, so an epoch event waits until every checkpoint its
        // job sent before it is dealt with: the checkpoint of every recorded epoch exists,
        // and one that cannot be written has failed its job (whose later events are then
        // dropped) before its epoch is recorded. Other events do not wait.
        let mut barriers: Vec<(Arc<Job>, u64)> = Vec::new();
        let mut rest = Vec::with_capacity(batch.len());
        for p in batch {
            match p {
                Persist::Checkpoint(job, run, c) => checkpoints.write(job, run, c),
                Persist::Event(job, e, g) => {
                    if matches!(e.kind, EventKind::Epoch(_)) {
                        barriers.push((job.clone(), job.checkpoints.queued()));
                    }
                    rest.push(Persist::Event(job, e, g));
                }
                other => rest.push(other),
            }
        }
        for (job, n) in &barriers {
            job.checkpoints.wait_for(*n);
        }
        fail_for_checkpoints(checkpoints);
        let batch = rest;
        let started = Instant::now();
        let failed = commit(store, &batch);
        if batch
            .iter()
            .any(|p| matches!(p, Persist::Event(..) | Persist::Info(..)))
        {
            observe.store_committed(started.elapsed());
        }
        let committed = |job: &Arc<Job>, generation: u64| {
            job.writes_current(Some(generation)) && !failed.iter().any(|f| Arc::ptr_eq(f, job))
        };
        // Everything committed is shown before anything else can fail a job, so a job
        // failed below keeps every event that is on disk; nothing else is shown.
        for p in &batch {
            match p {
                Persist::Event(job, e, g) if committed(job, *g) => {
                    // Counted before it is shown: whoever saw an event sees it counted.
                    observe.event_committed(&job.spec.name, e);
                    job.mark_durable(e.seq);
                }
                Persist::Info(job, info)
                    if job.writes_current(None) && !failed.iter().any(|f| Arc::ptr_eq(f, job)) =>
                {
                    observe.run_info_committed(&job.id, info);
                }
                _ => {}
            }
        }
        for p in &batch {
            match p {
                Persist::Event(job, e, g) => {
                    if !committed(job, *g) {
                        continue;
                    }
                    if let EventKind::Epoch(end) = &e.kind {
                        let (run, epoch) = (e.run, end.epoch);
                        if (end.best_run, end.best_epoch) == (run, epoch)
                            && let Err(err) =
                                retried("best model link", || store.keep_best(&job.id, run, epoch))
                        {
                            job.storage_failed(&format!(
                                "the best epoch's model (epoch {epoch} of run {run}) not kept: {err}"
                            ));
                            continue;
                        }
                        // Once a run records an epoch, its older checkpoints and those of the
                        // runs before it are no longer needed: a job resumes from its latest run,
                        // whose checkpoints carry what they need of the runs before (an
                        // ensemble member's hold the members before it; the ensemble's
                        // own, every member). The kept best model stays.
                        if let Err(err) = store
                            .prune_checkpoints(&job.id, run, epoch)
                            .and_then(|()| store.prune_earlier_runs(&job.id, run))
                        {
                            tracing::warn!(job = %job.id, error = %err, "old checkpoints not removed");
                        }
                    }
                }
                Persist::Flush(done) => {
                    // Everything sent before the flush, checkpoints included.
                    checkpoints.flush();
                    fail_for_checkpoints(checkpoints);
                    let _ = done.send(());
                }
                _ => {}
            }
        }
    }
}
