//! Training on a stored dataset too large to load: the split made from the manifest's class
//! counts ([`HeldOut`]), one pass over the shards for the training rows' statistics and
//! the validation rows, then the training rows streamed every epoch ([`StreamingLoader`]).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tch::{Device, Tensor};

use super::{
    EngineError, EvalSet, Observer, Run, SHUFFLE_SEED, StreamingLoader, StreamingOptions,
    TrainOutcome, TrainingState, run_info, train_model,
};
use gradstream_data::shards::{ShardedDataset, Welford};
use gradstream_data::{HeldOut, Normalizer, imbalance, train_counts};
use gradstream_domain::{Checkpoint, JobSpec, RunId};

/// Trains `spec` on the stored dataset `data`, streaming its training rows; the validation
/// split (`validation_fraction` of the rows) is held in memory for the epoch ends.
/// Resampling and ensembles need every training row at once and are refused (the job
/// manager says so at submit).
pub fn train_stored(
    spec: &JobSpec,
    data: &Arc<ShardedDataset>,
    options: StreamingOptions,
    device: Device,
    observer: &mut dyn Observer,
    cancel: &AtomicBool,
    resume: Option<(RunId, Checkpoint)>,
) -> Result<TrainOutcome, EngineError> {
    if spec.resampling.is_some() || spec.ensemble.is_some() {
        return Err(EngineError::Internal(
            "resampling and ensembles need every training row in memory; this dataset is streamed"
                .into(),
        ));
    }
    let resume = match resume {
        Some((RunId::JOB, c)) => Some(TrainingState::from_checkpoint(&c)?),
        Some((run, _)) => {
            return Err(EngineError::Internal(format!(
                "cannot resume a single model from a checkpoint of run {run}"
            )));
        }
        None => None,
    };
    let m = &data.manifest;
    let counts: Vec<usize> = m.class_counts.iter().map(|&n| n as usize).collect();
    let held = Arc::new(HeldOut::new(&counts, spec.validation_fraction, spec.seed));
    let (norm, validation) = one_pass(data, &held, device)?;
    let train_counts = train_counts(&counts, spec.validation_fraction);
    let class_weights =
        imbalance::resolve_class_weights(spec.class_weighting, &spec.class_weights, &train_counts);
    observer.started(run_info(
        spec,
        &m.labels,
        &m.feature_names,
        &norm,
        &class_weights,
        &train_counts,
        &train_counts,
        validation.as_ref().map_or(0, |v| v.targets.len()),
        device,
    ));
    let norm = Arc::new(norm);
    let mut loader = StreamingLoader::new(
        data.clone(),
        held,
        norm,
        StreamingOptions {
            batch_size: spec.batch_size as usize,
            ..options
        },
        spec.seed.wrapping_add(SHUFFLE_SEED),
        device,
    );
    let run = Run {
        spec,
        labels: &m.labels,
        width: m.width,
        class_weights: &class_weights,
        device,
        id: RunId::JOB,
        finished: &[],
    };
    train_model(
        &run,
        &mut loader,
        validation.as_ref(),
        observer,
        cancel,
        resume,
    )
    .map(|t| t.outcome)
}

/// The training rows' per-feature mean and population standard deviation (Welford; a
/// constant feature gets 1, as [`Normalizer::fit`] gives it) and the validation rows,
/// normalized, from one pass over the shards in storage order.
fn one_pass(
    data: &ShardedDataset,
    held: &HeldOut,
    device: Device,
) -> Result<(Normalizer, Option<EvalSet>), EngineError> {
    let m = &data.manifest;
    let read = |e: gradstream_data::DataError| {
        EngineError::Internal(format!("reading the stored dataset failed: {e}"))
    };
    let mut stats = vec![Welford::default(); m.width];
    let mut ordinal = vec![0usize; m.labels.len()];
    let (mut features, mut targets) = (Vec::new(), Vec::new());
    let mut row = vec![0f32; m.width];
    for s in 0..m.shards.len() {
        let mut cursor = data.shard(s).map_err(read)?;
        while let Some(class) = cursor.next_row(&mut row).map_err(read)? {
            let k = ordinal[class];
            ordinal[class] += 1;
            if held.is_held_out(class, k) {
                features.extend_from_slice(&row);
                targets.push(class);
            } else {
                for (w, &v) in stats.iter_mut().zip(&row) {
                    w.push(f64::from(v));
                }
            }
        }
    }
    let norm = Normalizer::from_moments(
        &stats.iter().map(Welford::mean).collect::<Vec<_>>(),
        &stats.iter().map(Welford::variance).collect::<Vec<_>>(),
    );
    features
        .chunks_exact_mut(m.width)
        .for_each(|r| norm.apply_row(r));
    let validation = (!targets.is_empty()).then(|| EvalSet {
        features: Tensor::from_slice(&features)
            .view([targets.len() as i64, m.width as i64])
            .to_device(device),
        targets,
    });
    Ok((norm, validation))
}
