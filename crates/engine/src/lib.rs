//! The training engine: synchronous tch code, one call per job, on the caller's thread.
//! It knows nothing of tokio or gRPC; it reports through a [`Observer`] and stops when the
//! cancel flag is set.

mod diagnostics;
mod ensemble;
mod epoch_metrics;
mod host;
mod inference;
mod loader;
mod lr_finder;
mod model;
mod optim;
pub mod schedule;
pub mod script;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tch::{Device, Kind, Reduction, Tensor, nn};

use diagnostics::{DivergenceWatch, clip_grad_norm, layer_diagnostics, weights_before};
use epoch_metrics::{EpochOutputs, MetricsWorker};
pub use epoch_metrics::{LossFn, probability_metrics};
pub use epoch_metrics::{Scores, metrics_of};
pub use inference::{Portable, TrainedModel};
pub use loader::{Batch, BatchLoader, InMemoryLoader, ResamplingLoader};
pub use lr_finder::find_learning_rate;
pub use model::{Mlp, Network, TorchLayer};
pub use optim::{AdaDelta, Optimizer};
use schedule::{Scheduler, SchedulerState};

use gradstream_data::{Dataset, Normalizer, imbalance, stratified_split};
use gradstream_domain::{
    Checkpoint, EpochEnd, FeatureInfo, IterationProgress, JobSpec, LossSpec, LrSchedule, ModelSpec,
    RunInfo,
};

/// Rows per forward pass when evaluating, to bound memory.
const EVAL_CHUNK: i64 = 8192;
/// Progress events per epoch when the spec leaves `report_every` at 0.
const REPORTS_PER_EPOCH: usize = 20;

/// Receives what happens during training. Called on the training thread; implementations
/// must return quickly (hand heavy work such as writing files to another thread).
pub trait Observer {
    fn started(&mut self, info: RunInfo);
    fn iteration(&mut self, progress: IterationProgress);
    /// The state at the end of an epoch, before that epoch's `epoch_end`.
    fn checkpoint(&mut self, checkpoint: Checkpoint);
    fn epoch_end(&mut self, epoch: EpochEnd);
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
/// Returns when all epochs ran, on cancel (`Err(Cancelled)`), or on failure. `resume`'s
/// epoch is a checkpoint epoch ([`JobSpec::checkpoint_epoch`]).
pub fn train(
    spec: &JobSpec,
    data: &Dataset,
    device: Device,
    observer: &mut dyn Observer,
    cancel: &AtomicBool,
    resume: Option<Checkpoint>,
) -> Result<TrainOutcome, EngineError> {
    let resume = resume.map(TrainingState::from_checkpoint).transpose()?;
    let Prepared {
        split,
        norm,
        train,
        train_counts,
        class_weights,
    } = prepare(spec, data);
    let k = data.labels.len();
    let planned = imbalance::planned_counts(spec, &train_counts)
        .map_err(|e| EngineError::Internal(e.to_string()))?;
    let validation = (!split.validation.is_empty()).then(|| EvalSet {
        features: Tensor::from_slice(&norm.apply(data, &split.validation))
            .view([split.validation.len() as i64, data.width as i64])
            .to_device(device),
        targets: split.validation.iter().map(|&r| data.targets[r]).collect(),
    });
    let samples: usize = planned.iter().sum();
    observer.started(RunInfo {
        parameter_count: spec.total_parameter_count(data.width as u64, k as u64),
        labels: data.labels.clone(),
        train_samples: samples as u64,
        validation_samples: validation.as_ref().map_or(0, |v| v.targets.len() as u64),
        iterations_per_epoch: samples.div_ceil(spec.batch_size as usize) as u32,
        device: device_name(device),
        features: FeatureInfo {
            names: data.feature_names.clone(),
            mean: norm.mean.clone(),
            std: norm.std.clone(),
        },
        class_weights: class_weights.clone(),
        train_class_counts: train_counts.iter().map(|&c| c as u64).collect(),
        resampled_class_counts: planned.iter().map(|&c| c as u64).collect(),
    });
    let run = Run {
        spec,
        labels: &data.labels,
        width: data.width,
        class_weights: &class_weights,
        device,
        member: None,
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
    /// Ensembles: the member this loop trains.
    pub member: Option<Member<'a>>,
}

/// An ensemble member's place: its index and the final variables of the members before it
/// (they go into its checkpoints, so a resumed job has them).
pub struct Member<'a> {
    pub index: u32,
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

/// The training loop of one model: any loader, any validation set. `resume`'s epoch is
/// the model's own (for an ensemble member, counted from its first epoch). Returns the
/// model's final variables and whether early stopping ended it.
pub fn train_model(
    run: &Run<'_>,
    loader: &mut dyn BatchLoader,
    validation: Option<&EvalSet>,
    observer: &mut dyn Observer,
    cancel: &AtomicBool,
    resume: Option<TrainingState>,
) -> Result<Trained, EngineError> {
    let (spec, device) = (run.spec, run.device);
    let labels = run.labels;
    let vs = nn::VarStore::new(device);
    let state = resume.as_ref().map(|c| c.tensors.as_slice());
    let mut model = build_model(&vs, spec, run.width, labels.len(), state)?;
    let mut opt = Optimizer::new(&spec.optimizer, &vs, spec.learning_rate)?;
    let weights = class_weight_tensor(run.class_weights, device);
    let ipe = loader.batches_per_epoch();
    let report_every = match spec.report_every {
        0 => ipe.div_ceil(REPORTS_PER_EPOCH).max(1),
        n => n as usize,
    };
    let member = run.member.as_ref().map(|m| m.index);
    // Checkpoints: an ensemble member's epochs are numbered on from the members before it,
    // and carry those members' variables.
    let offset = member.map_or(0, |m| m * spec.epochs);
    let finished = run.member.as_ref().map_or(&[][..], |m| m.finished);
    let snapshot = |model: &Network,
                    opt: &Optimizer,
                    scheduler: &Scheduler,
                    stopper: Option<&EarlyStopper>,
                    epoch: u32,
                    step: u64| {
        let mut c = snapshot(&vs, model, opt, offset + epoch, step)?;
        if let Some(s) = stopper {
            c.tensors
                .push((STOPPER_KEY.into(), Tensor::from_slice(&s.state())));
        }
        c.tensors.push((
            SCHEDULER_KEY.into(),
            Tensor::from_slice(&scheduler.state().to_values()),
        ));
        for (j, tensors) in finished.iter().enumerate() {
            for (name, t) in tensors {
                c.tensors
                    .push((format!("member{j}.{name}"), t.shallow_clone()));
            }
        }
        Ok::<_, EngineError>(c)
    };
    let loss_fn = LossFn::new(run.class_weights, spec.loss);
    // The diagnostic sample: the first validation rows, fixed for the whole run.
    let fixed_sample = validation
        .map(|v| {
            let n = v.features.size()[0].min(diagnostics::SAMPLE_ROWS);
            v.features.f_narrow(0, 0, n)
        })
        .transpose()?;
    let k = labels.len() as f64;
    let chance = match spec.loss {
        LossSpec::CrossEntropy => k.ln(),
        LossSpec::Focal { gamma } => (1.0 - 1.0 / k).powf(gamma) * k.ln(),
    };
    let mut watch = DivergenceWatch::new(chance);
    let mut stopping = spec.early_stopping.map(EarlyStopper::new);
    let saved = |key| resume.as_ref().and_then(|c| values(c, key));
    if let (Some(s), Some(state)) = (stopping.as_mut(), saved(STOPPER_KEY)) {
        s.restore(&state);
    }
    let mut scheduler = Scheduler::new(
        spec.lr_schedule,
        spec.learning_rate,
        spec.epochs,
        ipe as u32,
    );
    if let Some(state) = saved(SCHEDULER_KEY).and_then(|v| SchedulerState::from_values(&v)) {
        scheduler.restore(&state);
    }
    // These need each epoch's metrics before the next epoch starts.
    let synchronous =
        stopping.is_some() || matches!(spec.lr_schedule, LrSchedule::ReduceOnPlateau { .. });

    let (first_epoch, mut skip, mut global_step, mut partial) = match resume {
        Some(c) => {
            let partial = restore(&vs, &mut model, &mut opt, &c)?;
            match c.iteration {
                0 => (c.epoch + 1, 0, c.global_step, None),
                k => (c.epoch, k as usize, c.global_step, partial),
            }
        }
        None => (1, 0, 0, None),
    };
    let mut worker = MetricsWorker::spawn(labels.to_vec(), loss_fn, member)?;
    let mut epochs = || -> Result<TrainOutcome, EngineError> {
        for epoch in first_epoch..=spec.epochs {
            let epoch_start = Instant::now();
            let mut window = Window::new();
            let mut outputs: Vec<Tensor> = Vec::with_capacity(ipe);
            let mut seen_targets: Vec<Tensor> = Vec::with_capacity(ipe);
            // Resuming inside an epoch: its first batches were trained before the stop.
            if let Some((logits, targets)) = partial.take() {
                outputs.push(logits);
                seen_targets.push(targets);
            }
            let done = std::mem::take(&mut skip);
            let mut before_last_step = Vec::new();
            let mut diagnostics_seconds = 0.0;
            let mut last_batch: Option<Tensor> = None;
            for (i, batch) in loader.epoch(epoch).enumerate().skip(done) {
                if cancel.load(Ordering::Relaxed) {
                    // Leave a checkpoint of exactly here (at an epoch's first batch, the
                    // previous epoch's checkpoint is that).
                    if i > 0 {
                        let mut c = snapshot(
                            &model,
                            &opt,
                            &scheduler,
                            stopping.as_ref(),
                            epoch,
                            global_step,
                        )?;
                        c.iteration = i as u32;
                        c.tensors
                            .push(("partial.logits".into(), Tensor::f_cat(&outputs, 0)?.copy()));
                        c.tensors.push((
                            "partial.targets".into(),
                            Tensor::f_cat(&seen_targets, 0)?.copy(),
                        ));
                        observer.checkpoint(c.into_checkpoint()?);
                    }
                    return Err(EngineError::Cancelled);
                }
                let iteration = i as u32 + 1;
                global_step += 1;
                let (logits, value) =
                    step_loss(&mut model, &mut opt, &batch, weights.as_ref(), spec)?;
                // A batch whose samples all have class weight 0 has a 0/0 mean loss and
                // nothing to learn from: it is skipped, not a divergence.
                let weightless = !value.is_finite()
                    && weights
                        .as_ref()
                        .map(|w| {
                            w.f_index_select(0, &batch.targets)?
                                .f_sum(Kind::Double)?
                                .f_double_value(&[])
                        })
                        .transpose()?
                        .is_some_and(|sum| sum == 0.0);
                if !value.is_finite() && !weightless {
                    return Err(EngineError::Diverged {
                        step: global_step,
                        epoch,
                        iteration,
                        loss: value,
                        learning_rate: opt.learning_rate(),
                    });
                }
                if !weightless && let Some(smoothed) = watch.exploded(value) {
                    return Err(EngineError::Exploded {
                        step: global_step,
                        epoch,
                        iteration,
                        loss: smoothed,
                        lowest: watch.lowest(),
                        factor: DivergenceWatch::FACTOR,
                        learning_rate: opt.learning_rate(),
                    });
                }
                if let Some(max) = spec.gradient_clip_norm {
                    let _ = clip_grad_norm(&vs, max)?;
                }
                if spec.layer_diagnostics && iteration as usize == ipe {
                    let start = Instant::now();
                    before_last_step = weights_before(&model)?;
                    diagnostics_seconds += start.elapsed().as_secs_f64();
                    last_batch = Some(batch.features.shallow_clone());
                }
                opt.set_learning_rate(scheduler.lr());
                if !weightless {
                    opt.step()?;
                    window.add(value, batch.targets.size()[0] as usize);
                }
                scheduler.after_step();
                worker.poll(observer);
                outputs.push(logits.detach());
                seen_targets.push(batch.targets);
                if (iteration as usize).is_multiple_of(report_every) || iteration as usize == ipe {
                    observer.iteration(IterationProgress {
                        epoch,
                        iteration,
                        iterations_per_epoch: ipe as u32,
                        global_step,
                        loss: window.mean_loss(),
                        learning_rate: opt.learning_rate(),
                        samples_per_second: window.samples_per_second(),
                        member,
                    });
                    window = Window::new();
                }
            }
            let validation = validation
                .map(|v| -> Result<_, EngineError> {
                    let logits = forward_eval(&mut model, &v.features)?;
                    Ok(Scores::with_targets(&logits, v.targets.clone())?)
                })
                .transpose()?;
            let sample = fixed_sample.as_ref().or(last_batch.as_ref());
            let start = Instant::now();
            let layers = match sample {
                Some(sample) if spec.layer_diagnostics => {
                    layer_diagnostics(&model, sample, &before_last_step)?
                }
                _ => Vec::new(),
            };
            diagnostics_seconds += start.elapsed().as_secs_f64();
            let train = Scores::from_batches(&outputs, &seen_targets)?;
            worker.submit(EpochOutputs {
                epoch,
                seconds: epoch_start.elapsed().as_secs_f64(),
                train,
                validation,
                layers,
                diagnostics_seconds,
            })?;
            let end = if synchronous {
                Some(worker.next()?)
            } else {
                None
            };
            let metric = end
                .as_ref()
                .and_then(|e| spec.best_model_metric.value(e.selection_metrics()));
            scheduler.after_epoch(metric);
            let stop = match (&end, stopping.as_mut()) {
                (Some(end), Some(s)) => s.update(spec, end),
                _ => None,
            };
            // The checkpoint (with the scheduler's and the early stopper's state after this
            // epoch) goes before the epoch's metrics.
            observer.checkpoint(
                snapshot(
                    &model,
                    &opt,
                    &scheduler,
                    stopping.as_ref(),
                    epoch,
                    global_step,
                )?
                .into_checkpoint()?,
            );
            if let Some(end) = end {
                observer.epoch_end(end);
                if let Some(why) = stop {
                    return Ok(TrainOutcome::StoppedEarly(why));
                }
            }
        }
        Ok(TrainOutcome::Completed)
    };
    let result = epochs();
    // Whatever happened, the epochs that ended are reported before the job's end.
    let reported = worker.finish(observer);
    let outcome = result.and_then(|o| reported.map(|()| o))?;
    Ok(Trained {
        vars: model_state(&vs, &model)?,
        outcome,
    })
}

/// The model's variables (`model.<name>`, CPU copies, sorted by name), and a TorchScript
/// model's module: all that rebuilds it.
fn model_state(vs: &nn::VarStore, model: &Network) -> Result<Vec<(String, Tensor)>, EngineError> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let mut state = vars
        .into_iter()
        .map(|(name, t)| {
            Ok((
                format!("model.{name}"),
                t.f_detach()?.f_to_device(Device::Cpu)?.copy(),
            ))
        })
        .collect::<Result<Vec<_>, EngineError>>()?;
    state.extend(model.checkpoint_entry()?);
    Ok(state)
}

/// TrainingState entries of the scheduler's and the early stopper's state.
const SCHEDULER_KEY: &str = "sched.state";
const STOPPER_KEY: &str = "stop.state";

/// The numbers a checkpoint saved under `key`, if it has them.
fn values(c: &TrainingState, key: &str) -> Option<Vec<f64>> {
    let (_, t) = c.tensors.iter().find(|(n, _)| n == key)?;
    Vec::<f64>::try_from(t).ok()
}

/// Counts epochs without improvement of the spec's `best_model_metric`.
struct EarlyStopper {
    rule: gradstream_domain::EarlyStopping,
    best: Option<(u32, f64)>,
    since_best: u32,
}

impl EarlyStopper {
    /// `[best epoch (0: none yet), best score, epochs since the best]`, for checkpoints.
    fn state(&self) -> [f64; 3] {
        let (epoch, score) = self.best.unwrap_or((0, 0.0));
        [f64::from(epoch), score, f64::from(self.since_best)]
    }

    fn restore(&mut self, state: &[f64]) {
        if let [epoch, score, since] = *state {
            self.best = (epoch >= 1.0).then_some((epoch as u32, score));
            self.since_best = since as u32;
        }
    }

    fn new(rule: gradstream_domain::EarlyStopping) -> Self {
        Self {
            rule,
            best: None,
            since_best: 0,
        }
    }

    /// Records an epoch; why training should stop, if it should.
    fn update(&mut self, spec: &JobSpec, end: &EpochEnd) -> Option<String> {
        let metric = spec.best_model_metric;
        let score = metric.score(end.selection_metrics());
        match (self.best, score) {
            (None, Some(s)) => self.best = Some((end.epoch, s)),
            (Some((_, b)), Some(s)) if s > b + self.rule.min_delta => {
                self.best = Some((end.epoch, s));
                self.since_best = 0;
            }
            _ => self.since_best += 1,
        }
        if self.since_best < self.rule.patience || end.epoch >= spec.epochs {
            return None;
        }
        let (best_epoch, best) = self.best?;
        let value = metric.value_of_score(best);
        Some(format!(
            "stopped early after epoch {}: {:?} has not improved by more than {} for {} epoch(s); the best epoch is {best_epoch} ({value:.6}), and its weights are the job's model",
            end.epoch, metric, self.rule.min_delta, self.rule.patience
        ))
    }
}

/// The class weights as a tensor on `device`; `None` when unweighted (empty).
fn class_weight_tensor(weights: &[f64], device: Device) -> Option<Tensor> {
    (!weights.is_empty()).then(|| {
        Tensor::from_slice(weights)
            .to_kind(Kind::Float)
            .to_device(device)
    })
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

/// One step's forward pass (training mode), loss and backward pass, gradients zeroed
/// first; the logits and the loss's value. The caller decides whether to step.
fn step_loss(
    model: &mut Network,
    opt: &mut Optimizer,
    batch: &Batch,
    weights: Option<&Tensor>,
    spec: &JobSpec,
) -> Result<(Tensor, f64), EngineError> {
    let logits = model.forward_t(&batch.features, true)?;
    let loss = training_loss(&logits, &batch.targets, weights, spec.loss)?;
    opt.zero_grad();
    loss.f_backward()?;
    Ok((logits, loss.f_double_value(&[])?))
}

/// The loss trained on: class-weighted cross-entropy, or the softmax focal loss
/// `-w_y (1 - p_y)^gamma log p_y` reduced the same way (sum over the batch divided by the
/// sum of its rows' class weights), which is cross-entropy when gamma is 0.
fn training_loss(
    logits: &Tensor,
    targets: &Tensor,
    weights: Option<&Tensor>,
    loss: LossSpec,
) -> Result<Tensor, tch::TchError> {
    match loss {
        LossSpec::CrossEntropy => {
            logits.f_cross_entropy_loss(targets, weights, Reduction::Mean, -100, 0.0)
        }
        LossSpec::Focal { gamma } => {
            let log_p = logits
                .f_log_softmax(-1, Kind::Float)?
                .f_gather(1, &targets.f_unsqueeze(1)?, false)?
                .f_squeeze_dim(1)?;
            let focus = log_p
                .f_exp()?
                .f_neg()?
                .f_add_scalar(1.0)?
                .f_clamp_min(0.0)?
                .f_pow_tensor_scalar(gamma)?;
            let per_row = focus.f_mul(&log_p)?.f_neg()?;
            match weights {
                None => per_row.f_mean(Kind::Float),
                Some(w) => {
                    let w_y = w.f_index_select(0, targets)?;
                    per_row
                        .f_mul(&w_y)?
                        .f_sum(Kind::Float)?
                        .f_div(&w_y.f_sum(Kind::Float)?)
                }
            }
        }
    }
}

/// A deep copy of the training state, on the CPU.
fn snapshot(
    vs: &nn::VarStore,
    model: &Network,
    opt: &Optimizer,
    epoch: u32,
    global_step: u64,
) -> Result<TrainingState, EngineError> {
    let mut tensors = model_state(vs, model)?;
    for (name, t) in opt.state() {
        tensors.push((
            format!("opt.{name}"),
            t.f_detach()?.f_to_device(Device::Cpu)?.copy(),
        ));
    }
    Ok(TrainingState {
        epoch,
        iteration: 0,
        global_step,
        dropout_word_pos: model.dropout_word_pos(),
        tensors,
    })
}

/// Loads a checkpoint into a freshly built model and optimizer of the same spec; returns
/// the partial epoch's outputs (logits, targets) if it has them.
fn restore(
    vs: &nn::VarStore,
    model: &mut Network,
    opt: &mut Optimizer,
    c: &TrainingState,
) -> Result<Option<(Tensor, Tensor)>, EngineError> {
    load_model_vars(vs, &c.tensors)?;
    let mut opt_state = Vec::new();
    let (mut logits, mut targets) = (None, None);
    for (name, t) in &c.tensors {
        match name.as_str() {
            "partial.logits" => logits = Some(t.f_to_device(vs.device())?),
            "partial.targets" => targets = Some(t.f_to_device(vs.device())?),
            _ => {}
        }
        if let Some(state) = name.strip_prefix("opt.") {
            opt_state.push((state.to_string(), t.f_to_device(vs.device())?));
        }
    }
    opt.load_state(&opt_state)?;
    model.set_dropout_word_pos(c.dropout_word_pos);
    Ok(logits.zip(targets))
}

/// Copies a checkpoint's `model.*` tensors into the variables of `vs`; every variable
/// must be restored. (A TorchScript model's module entry is not a variable.)
fn load_model_vars(vs: &nn::VarStore, tensors: &[(String, Tensor)]) -> Result<(), EngineError> {
    let vars = vs.variables();
    let mut restored = 0;
    for (name, t) in tensors {
        if name == script::MODULE_KEY {
            continue;
        }
        if let Some(var) = name.strip_prefix("model.") {
            let mut dst = vars
                .get(var)
                .ok_or_else(|| {
                    EngineError::Internal(format!(
                        "checkpoint has variable '{var}' that the model lacks"
                    ))
                })?
                .shallow_clone();
            tch::no_grad(|| dst.f_copy_(t))?;
            restored += 1;
        }
    }
    if restored != vars.len() {
        return Err(EngineError::Internal(format!(
            "checkpoint restores {restored} of the model's {} variables",
            vars.len()
        )));
    }
    Ok(())
}

/// Loss and throughput since the last progress report.
struct Window {
    start: Instant,
    loss_sum: f64,
    steps: usize,
    samples: usize,
}

impl Window {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            loss_sum: 0.0,
            steps: 0,
            samples: 0,
        }
    }

    fn add(&mut self, loss: f64, samples: usize) {
        self.loss_sum += loss;
        self.steps += 1;
        self.samples += samples;
    }

    fn mean_loss(&self) -> f64 {
        self.loss_sum / self.steps.max(1) as f64
    }

    fn samples_per_second(&self) -> f64 {
        let s = self.start.elapsed().as_secs_f64();
        if s > 0.0 {
            self.samples as f64 / s
        } else {
            0.0
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn focal_loss_matches_its_definition_and_is_cross_entropy_at_gamma_0() {
        let logits = Tensor::randn([40, 3], (Kind::Float, Device::Cpu)) * 2.0;
        let targets = Tensor::randint(3, [40], (Kind::Int64, Device::Cpu));
        let scores = Scores::from_tensors(&logits, &targets).unwrap();
        let labels: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        for weights in [vec![], vec![0.5, 3.0, 1.0]] {
            let w =
                (!weights.is_empty()).then(|| Tensor::from_slice(&weights).to_kind(Kind::Float));
            let value = |loss| {
                training_loss(&logits, &targets, w.as_ref(), loss)
                    .unwrap()
                    .double_value(&[])
            };
            // gamma 0 is exactly cross-entropy.
            let ce = value(LossSpec::CrossEntropy);
            let focal0 = value(LossSpec::Focal { gamma: 0.0 });
            assert!((ce - focal0).abs() < 1e-6, "{ce} vs {focal0}");
            // gamma 2: libtorch's value equals the plain-Rust definition used for metrics.
            let focal = value(LossSpec::Focal { gamma: 2.0 });
            let reference = metrics_of(
                &scores,
                &LossFn::new(&weights, LossSpec::Focal { gamma: 2.0 }),
                &labels,
                false,
            )
            .loss;
            assert!((focal - reference).abs() < 1e-5, "{focal} vs {reference}");
            assert!(focal < ce, "focal loss down-weights rows: {focal} < {ce}");
        }
    }
}
