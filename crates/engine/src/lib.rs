//! The training engine: synchronous tch code, one call per job, on the caller's thread.
//! It knows nothing of tokio or gRPC; it reports through a [`Observer`] and stops when the
//! cancel flag is set.

mod diagnostics;
mod early_stopping;
mod ensemble;
mod epoch;
mod epoch_metrics;
mod fused;
mod host;
mod inference;
mod loader;
mod loss;
mod lr_finder;
mod model;
mod optim;
pub mod schedule;
pub mod script;
mod step_losses;
mod stored;
mod streaming;
mod training_loop;
mod training_state;
mod window;

use std::sync::atomic::AtomicBool;

use tch::{Device, Tensor, nn};

pub use epoch_metrics::{LossFn, probability_metrics};
pub use epoch_metrics::{Scores, metrics_of};
pub use inference::{Portable, TrainedModel};
pub use loader::{Batch, BatchLoader, InMemoryLoader, ResamplingLoader};
pub use lr_finder::find_learning_rate;
pub use model::{Mlp, Network, TorchLayer};
pub use optim::{AdaDelta, Optimizer};
pub use stored::train_stored;
pub use streaming::{StreamingLoader, StreamingOptions};
use training_loop::TrainingLoop;

use gradstream_data::{Dataset, Normalizer, imbalance, stratified_split};
use gradstream_domain::{
    Checkpoint, EpochEnd, FeatureInfo, IterationProgress, JobSpec, ModelSpec, RunId, RunInfo,
};

/// Rows per forward pass when evaluating, to bound memory.
const EVAL_CHUNK: i64 = 8192;

/// Receives what happens during training. Called on the training thread; implementations
/// must return quickly (hand heavy work such as writing files to another thread).
///
/// Every report but `started` names its run: [`RunId::JOB`] for one model; an ensemble's
/// member `m` is `RunId::child(m)`, and its combined model (metrics and checkpoint) is
/// `RunId::JOB`.
pub trait Observer {
    fn started(&mut self, info: RunInfo);
    fn iteration(&mut self, run: RunId, progress: IterationProgress);
    /// The state at the end of one of `run`'s epochs, before that epoch's `epoch_end`.
    fn checkpoint(&mut self, run: RunId, checkpoint: Checkpoint);
    fn epoch_end(&mut self, run: RunId, epoch: EpochEnd);
}

/// Where a job resumes: a checkpoint of one of its runs.
struct Resume {
    run: RunId,
    state: TrainingState,
}

/// The engine's side of a [`Checkpoint`]: the same fields with the tensors as tch tensors
/// (on the CPU). After the end of `epoch` when `iteration` is 0, otherwise inside `epoch`
/// after its first `iteration` batches (taken when a job is stopped mid-epoch; it then
/// also holds the epoch's outputs so far, as `partial.logits` and `partial.targets`).
/// `host.rs` converts between the two.
pub struct TrainingState {
    pub epoch: u32,
    pub iteration: u32,
    pub global_step: u64,
    /// Position of the dropout generator's stream.
    pub dropout_word_pos: u128,
    /// Model variables (`model.<name>`, batch-norm running statistics included) and
    /// optimizer state (`opt.<name>`), copied to the CPU.
    pub tensors: Vec<(String, Tensor)>,
}

/// How a training run that did not fail ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrainOutcome {
    /// Every epoch of the spec ran.
    Completed,
    /// Early stopping ended the run; the message says why.
    StoppedEarly(String),
}

/// What a trained model's loop hands back: its final variables and how it ended.
pub struct Trained {
    /// `model.<name>`, CPU copies.
    pub vars: Vec<(String, Tensor)>,
    /// Optimizer steps the model took.
    pub global_step: u64,
    pub outcome: TrainOutcome,
}

/// Why training stopped before it ended.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cancelled")]
    Cancelled,
    #[error(
        "the training loss became {loss} at step {step} (epoch {epoch}, iteration {iteration}); \
         the learning rate ({learning_rate:e}) is likely too high: try a value 10 times smaller"
    )]
    Diverged {
        step: u64,
        epoch: u32,
        iteration: u32,
        loss: f64,
        learning_rate: f64,
    },
    #[error(
        "the training loss exploded at step {step} (epoch {epoch}, iteration {iteration}): smoothed over the last steps it rose to {loss:.4}, more than {factor} times its lowest ({lowest:.4}); the learning rate ({learning_rate:e}) is likely too high: try a value 10 times smaller"
    )]
    Exploded {
        step: u64,
        epoch: u32,
        iteration: u32,
        loss: f64,
        lowest: f64,
        factor: f64,
        learning_rate: f64,
    },
    #[error("internal error: {0}")]
    Internal(String),
    #[error("libtorch error: {0}")]
    Torch(#[from] tch::TchError),
}

pub fn device_name(d: Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// Seeds derived from the job's seed (the split uses the seed itself).
const SHUFFLE_SEED: u64 = 1;
const INIT_SEED: u64 = 2;
const RESAMPLE_SEED: u64 = 3;
const BAGGING_SEED: u64 = 4;

/// Trains `spec` on `data`: one model, or an ensemble's members one after the other.
/// Returns when all epochs ran, on cancel (`Err(Cancelled)`), or on failure. `resume` is
/// the checkpoint of the run to continue (for an ensemble, a member's: the members before
/// it are in it).
pub fn train(
    spec: &JobSpec,
    data: &Dataset,
    device: Device,
    observer: &mut dyn Observer,
    cancel: &AtomicBool,
    resume: Option<(RunId, Checkpoint)>,
) -> Result<TrainOutcome, EngineError> {
    let resume = resume
        .map(|(run, c)| TrainingState::from_checkpoint(&c).map(|state| Resume { run, state }))
        .transpose()?;
    let Prepared {
        split,
        norm,
        train,
        train_counts,
        class_weights,
    } = prepare(spec, data);
    let planned = imbalance::planned_counts(spec, &train_counts)
        .map_err(|e| EngineError::Internal(e.to_string()))?;
    let validation = (!split.validation.is_empty()).then(|| EvalSet {
        features: Tensor::from_slice(&norm.apply(data, &split.validation))
            .view([split.validation.len() as i64, data.width as i64])
            .to_device(device),
        targets: split.validation.iter().map(|&r| data.targets[r]).collect(),
    });
    observer.started(run_info(
        spec,
        &data.labels,
        &data.feature_names,
        &norm,
        &class_weights,
        &train_counts,
        &planned,
        validation.as_ref().map_or(0, |v| v.targets.len()),
        device,
    ));
    let run = Run {
        spec,
        labels: &data.labels,
        width: data.width,
        class_weights: &class_weights,
        device,
        id: RunId::JOB,
        finished: &[],
    };
    if let Some(e) = spec.ensemble {
        return ensemble::train(
            &run,
            e.members(),
            &train,
            validation.as_ref(),
            observer,
            cancel,
            resume,
        );
    }
    let mut loader: Box<dyn BatchLoader> = match &spec.resampling {
        None => Box::new(plain_loader(spec, &train, device)),
        Some(r) => Box::new(ResamplingLoader::new(
            train,
            imbalance::Resampling::from(r),
            r.per_epoch,
            spec.batch_size as usize,
            spec.seed.wrapping_add(SHUFFLE_SEED),
            spec.seed.wrapping_add(RESAMPLE_SEED),
            device,
        )?),
    };
    let resume = match resume {
        Some(r) if r.run != RunId::JOB => {
            return Err(EngineError::Internal(format!(
                "cannot resume a single model from a checkpoint of run {}",
                r.run
            )));
        }
        r => r.map(|r| r.state),
    };
    train_model(
        &run,
        &mut *loader,
        validation.as_ref(),
        observer,
        cancel,
        resume,
    )
    .map(|t| t.outcome)
}

/// What a job reports when its training starts.
#[allow(clippy::too_many_arguments)]
fn run_info(
    spec: &JobSpec,
    labels: &[String],
    feature_names: &[String],
    norm: &Normalizer,
    class_weights: &[f64],
    train_counts: &[usize],
    planned: &[usize],
    validation_samples: usize,
    device: Device,
) -> RunInfo {
    let samples: usize = planned.iter().sum();
    let width = feature_names.len() as u64;
    RunInfo {
        parameter_count: spec.total_parameter_count(width, labels.len() as u64),
        labels: labels.to_vec(),
        train_samples: samples as u64,
        validation_samples: validation_samples as u64,
        iterations_per_epoch: samples.div_ceil(spec.batch_size as usize) as u32,
        device: device_name(device),
        features: FeatureInfo {
            names: feature_names.to_vec(),
            mean: norm.mean.clone(),
            std: norm.std.clone(),
        },
        class_weights: class_weights.to_vec(),
        train_class_counts: train_counts.iter().map(|&c| c as u64).collect(),
        resampled_class_counts: planned.iter().map(|&c| c as u64).collect(),
    }
}

/// What every run of a spec starts from: the split, the normalizer fitted on the training
/// rows, the normalized training split, its class counts and the class weights.
struct Prepared {
    split: gradstream_data::Split,
    norm: Normalizer,
    train: TrainSplit,
    train_counts: Vec<usize>,
    class_weights: Vec<f64>,
}

fn prepare(spec: &JobSpec, data: &Dataset) -> Prepared {
    let split = stratified_split(data, spec.validation_fraction, spec.seed);
    let norm = Normalizer::fit(data, &split.train);
    let k = data.labels.len();
    let train = TrainSplit {
        features: norm.apply(data, &split.train),
        targets: split.train.iter().map(|&r| data.targets[r]).collect(),
        width: data.width,
        classes: k,
    };
    let train_counts = imbalance::counts(&train.targets, k);
    let class_weights =
        imbalance::resolve_class_weights(spec.class_weighting, &spec.class_weights, &train_counts);
    Prepared {
        split,
        norm,
        train,
        train_counts,
        class_weights,
    }
}

/// The normalized training split, in host memory.
pub struct TrainSplit {
    /// Row-major `n x width`.
    pub features: Vec<f32>,
    pub targets: Vec<usize>,
    pub width: usize,
    pub classes: usize,
}

/// What one model's training loop needs besides its data.
pub struct Run<'a> {
    pub spec: &'a JobSpec,
    pub labels: &'a [String],
    pub width: usize,
    /// One per class; empty means unweighted.
    pub class_weights: &'a [f64],
    pub device: Device,
    /// The run this loop trains: the job's own, or an ensemble member's.
    pub id: RunId,
    /// An ensemble member's: the final variables of the members before it (they go into
    /// its checkpoints as `member<j>.…`, so a resumed job has them). Empty otherwise.
    pub finished: &'a [Vec<(String, Tensor)>],
}

/// The spec's model with its variables in `vs`: freshly initialized from the job's seed,
/// or, for a TorchScript model, the module carried in `state` (checkpoint tensors named
/// `model.…`) if it has one, else the uploaded file.
pub fn build_model(
    vs: &nn::VarStore,
    spec: &JobSpec,
    inputs: usize,
    classes: usize,
    state: Option<&[(String, Tensor)]>,
) -> Result<Network, EngineError> {
    let seed = spec.seed.wrapping_add(INIT_SEED);
    Ok(match &spec.model {
        ModelSpec::Mlp(mlp) => Network::Builtin(Box::new(Mlp::new(
            &vs.root(),
            mlp,
            inputs as i64,
            classes as i64,
            seed,
        ))),
        ModelSpec::Cnn(cnn) => Network::Builtin(Box::new(Mlp::new_cnn(
            &vs.root(),
            cnn,
            classes as i64,
            seed,
        ))),
        ModelSpec::TorchScript(s) => {
            let bytes = match state.map(script::module_bytes).transpose()?.flatten() {
                Some(b) => b,
                None => std::fs::read(&s.file).map_err(|e| {
                    EngineError::Internal(format!(
                        "cannot read the TorchScript model '{}' ({}): {e}",
                        s.model_id,
                        s.file.display()
                    ))
                })?,
            };
            Network::Script(script::ScriptModule::load(&bytes, vs, s.input_shape)?)
        }
    })
}

/// A held-out split, evaluated at each epoch end.
pub struct EvalSet {
    pub features: Tensor,
    pub targets: Vec<usize>,
}

/// The training loop of one model (one run): any loader, any validation set. `resume` is
/// a checkpoint of that run. Returns the model's final variables and whether early
/// stopping ended it.
pub fn train_model(
    run: &Run<'_>,
    loader: &mut dyn BatchLoader,
    validation: Option<&EvalSet>,
    observer: &mut dyn Observer,
    cancel: &AtomicBool,
    resume: Option<TrainingState>,
) -> Result<Trained, EngineError> {
    let (mut training, start) =
        TrainingLoop::new(run, &*loader, validation, observer, cancel, resume)?;
    let result = training.run(loader, start);
    training.finish(result)
}

/// The training split in a loader that shuffles it every epoch, without resampling.
fn plain_loader(spec: &JobSpec, train: &TrainSplit, device: Device) -> InMemoryLoader {
    InMemoryLoader::new(
        &train.features,
        train.width,
        &train.targets,
        spec.batch_size as usize,
        spec.seed.wrapping_add(SHUFFLE_SEED),
        device,
    )
}

/// Evaluation-mode logits of `model` on `features`, in chunks to bound memory.
pub fn forward_eval(model: &mut Network, features: &Tensor) -> Result<Tensor, EngineError> {
    in_chunks(features, |x| model.forward_t(x, false))
}

/// `f` applied to `x` in chunks of rows, without gradients, concatenated.
fn in_chunks(
    x: &Tensor,
    mut f: impl FnMut(&Tensor) -> Result<Tensor, EngineError>,
) -> Result<Tensor, EngineError> {
    tch::no_grad(|| {
        let n = x.size()[0];
        let chunks = (0..n)
            .step_by(EVAL_CHUNK as usize)
            .map(|s| f(&x.narrow(0, s, EVAL_CHUNK.min(n - s))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Tensor::f_cat(&chunks, 0)?)
    })
}
