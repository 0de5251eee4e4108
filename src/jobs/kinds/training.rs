//! The training kind: one model (or an ensemble) trained for the spec's epochs by
//! `engine::train`, resumed from the last recorded checkpoint after a restart.

use std::sync::Arc;

use crate::data::shards::ShardedDataset;
use crate::data::{self, Dataset};
use crate::domain::{
    ArraysSpec, Checkpoint, ClassWeighting, DEFAULT_SHUFFLE_BUFFER, DatasetSpec, EpochEnd,
    EventKind, IterationProgress, JobSpec, LossSpec, RunId, RunInfo,
};
use crate::engine::{self, EngineError, Observer, StreamingOptions, TrainOutcome};
use crate::jobs::kind::{Outcome, RunContext};
use crate::jobs::stored_datasets;
use crate::observability::EpochSpans;
use crate::store::{StateStore, StoreError};

use super::Kinds;

/// Reads the dataset if needed, loads the checkpoint to resume from, and trains.
pub(super) fn run(kinds: &Kinds, ctx: &mut RunContext<'_>) -> Outcome {
    let spec = ctx.spec().clone();
    match train(kinds, ctx, &spec) {
        Ok(TrainOutcome::Completed) => {
            Outcome::Succeeded(format!("trained {} epoch(s)", spec.epochs))
        }
        Ok(TrainOutcome::StoppedEarly(why)) => Outcome::Succeeded(why),
        Err(EngineError::Cancelled) => Outcome::Stopped,
        Err(e @ (EngineError::Diverged { .. } | EngineError::Exploded { .. })) => {
            let hint = kinds.suggestions.get(&spec).map_or(String::new(), |lr| {
                format!("; a learning-rate range test on this spec suggested {lr:e}")
            });
            Outcome::Failed(format!("{e}{hint}"))
        }
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

fn train(
    kinds: &Kinds,
    ctx: &mut RunContext<'_>,
    spec: &JobSpec,
) -> Result<TrainOutcome, EngineError> {
    let ctx: &RunContext<'_> = ctx;
    // An ensemble whose own metrics are recorded has done its work (a restart came before
    // its SUCCEEDED): its members' checkpoints are gone, its model is run 0's.
    let evaluated =
        ctx.events_matching(|k| matches!(k, EventKind::Epoch(e) if e.ensemble).then_some(()));
    if !evaluated.is_empty() {
        return Ok(TrainOutcome::Completed);
    }
    let data = dataset(kinds, ctx)?;
    let resume = resume_point(&*kinds.store, ctx)?;
    let mut observer = TrainingObserver {
        ctx,
        epochs: EpochSpans::default(),
    };
    match data {
        JobData::InMemory(data) => engine::train(
            spec,
            &data,
            kinds.config.device,
            &mut observer,
            ctx.cancel_flag(),
            resume,
        ),
        JobData::Streamed(data) => {
            let options = StreamingOptions {
                batch_size: spec.batch_size as usize,
                shuffle_buffer: spec.shuffle_buffer.unwrap_or(DEFAULT_SHUFFLE_BUFFER) as usize,
                prefetch: PREFETCH_BATCHES,
            };
            ctx.running(format!(
                "streaming {} rows from {} shards of the stored dataset (shuffle buffer {} rows, {} batches prefetched)",
                data.manifest.rows,
                data.manifest.shards.len(),
                options.shuffle_buffer,
                options.prefetch
            ));
            engine::train_stored(
                spec,
                &data,
                options,
                kinds.config.device,
                &mut observer,
                ctx.cancel_flag(),
                resume,
            )
        }
    }
}

/// Batches a streamed dataset prepares ahead of training.
const PREFETCH_BATCHES: usize = 8;

/// A job's rows: in memory, or a stored dataset streamed from its shards.
pub(super) enum JobData {
    InMemory(Dataset),
    Streamed(Arc<ShardedDataset>),
}

/// The dataset read at submit time, or read again (a job recovered after a restart): a
/// stored copy is opened (never the source files), and streamed when it is too large.
pub(super) fn dataset(kinds: &Kinds, ctx: &RunContext<'_>) -> Result<JobData, EngineError> {
    let lost = |e: data::DataError| {
        EngineError::Internal(format!("the dataset can no longer be read: {e}"))
    };
    if let Some(d) = ctx.take_dataset() {
        return Ok(JobData::InMemory(d));
    }
    let config = &kinds.config;
    match &ctx.spec().dataset {
        // Streamed or not as decided at submit, whatever the server's limit is now.
        DatasetSpec::Arrays(ArraysSpec {
            stored: Some(fingerprint),
            streamed,
            ..
        }) => {
            let stored = stored_datasets::open(&config.datasets_dir, fingerprint).map_err(lost)?;
            if *streamed {
                Ok(JobData::Streamed(stored))
            } else {
                Ok(JobData::InMemory(stored.load().map_err(lost)?))
            }
        }
        other => Ok(JobData::InMemory(
            data::load(other, &config.data_dir, &*kinds.store).map_err(lost)?,
        )),
    }
}

/// A mid-epoch checkpoint from a shutdown, if it continues the recorded epochs (of the
/// last run recorded, or of a later run that had recorded none); otherwise the checkpoint
/// of the last recorded epoch; nothing for a job that recorded none.
fn resume_point(
    store: &dyn StateStore,
    ctx: &RunContext<'_>,
) -> Result<Option<(RunId, Checkpoint)>, EngineError> {
    let last = ctx.last_recorded();
    let cannot = |e: StoreError| EngineError::Internal(format!("cannot resume: {e}"));
    let mid_epoch = store.take_resume_checkpoint(ctx.job_id()).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "mid-epoch checkpoint unreadable; resuming from the last epoch");
        None
    });
    let continues = |run: RunId, c: &Checkpoint| {
        last.is_none_or(|(r, _)| run >= r) && c.epoch == ctx.run_epochs(run) + 1
    };
    Ok(match (mid_epoch, last) {
        (Some((run, c)), _) if continues(run, &c) => Some((run, c)),
        (_, None) => None,
        (_, Some((run, epoch))) => Some((
            run,
            store
                .read_checkpoint(ctx.job_id(), run, epoch)
                .map_err(cannot)?,
        )),
    })
}

/// Feeds engine reports into the job's log and the writer.
struct TrainingObserver<'c, 'j> {
    ctx: &'c RunContext<'j>,
    /// The trace span of the epoch in progress.
    epochs: EpochSpans,
}

impl Observer for TrainingObserver<'_, '_> {
    fn started(&mut self, info: RunInfo) {
        let imbalance = imbalance_summary(self.ctx.spec(), &info);
        self.ctx.record_info(info);
        if let Some(message) = imbalance {
            self.ctx.running(message);
        }
    }

    fn iteration(&mut self, run: RunId, progress: IterationProgress) {
        self.epochs.progress(run, progress.epoch);
        self.ctx.push_in(run, EventKind::Iteration(progress));
    }

    fn checkpoint(&mut self, run: RunId, checkpoint: Checkpoint) {
        if checkpoint.iteration == 0 {
            self.epochs.ended(run, checkpoint.epoch);
        }
        // A mid-epoch checkpoint only matters to a job that will resume.
        if checkpoint.iteration > 0 && !self.ctx.stopping_for_shutdown() {
            return;
        }
        self.ctx.save_checkpoint(run, checkpoint);
    }

    fn epoch_end(&mut self, run: RunId, mut epoch: EpochEnd) {
        // Only this thread pushes epoch events, so the best cannot change in between.
        let spec = self.ctx.spec();
        let (selection, best) = self.ctx.best();
        // An ensemble's model is the whole ensemble: only its own metrics can be best.
        let candidate = spec.ensemble.is_none() || epoch.ensemble;
        let score = selection
            .score(epoch.selection_metrics())
            .filter(|_| candidate);
        let this = (run, epoch.epoch);
        (epoch.best_run, epoch.best_epoch) = match (best, score) {
            (Some(b), Some(new)) if new > b.value => this,
            (None, Some(_)) => this,
            (Some(b), _) => (b.run, b.epoch),
            (None, None) => (RunId::JOB, 0),
        };
        self.ctx.push_in(run, EventKind::Epoch(Box::new(epoch)));
    }
}

/// What a job does about class imbalance, for a status message at its start: the class
/// weights it uses, and the class counts before and after resampling. `None` when it does
/// nothing about it.
fn imbalance_summary(spec: &JobSpec, info: &RunInfo) -> Option<String> {
    let mut parts = Vec::new();
    if !info.class_weights.is_empty() {
        let how = match spec.class_weighting {
            ClassWeighting::Balanced => "BALANCED",
            ClassWeighting::EffectiveNumber { .. } => "EFFECTIVE_NUMBER",
            _ => "MANUAL",
        };
        let w: Vec<String> = info
            .labels
            .iter()
            .zip(&info.class_weights)
            .map(|(l, w)| format!("{l}={w:.4}"))
            .collect();
        parts.push(format!("class weights ({how}): {}", w.join(", ")));
    }
    let counts = |c: &[u64]| {
        info.labels
            .iter()
            .zip(c)
            .map(|(l, n)| format!("{l}:{n}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    if spec.resampling.is_some() || spec.ensemble.is_some() {
        let what = if let Some(e) = spec.ensemble {
            format!("balanced bagging, {} members, each", e.members())
        } else {
            "resampling".to_string()
        };
        parts.push(format!(
            "{what}: training rows per class {} -> {}",
            counts(&info.train_class_counts),
            counts(&info.resampled_class_counts)
        ));
    }
    if let LossSpec::Focal { gamma } = spec.loss {
        parts.push(format!("focal loss (gamma {gamma})"));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}
