//! The training engine: synchronous tch code, one call per job, on the caller's thread.
//! It knows nothing of tokio or gRPC; it reports through a [`Observer`] and stops when the
//! cancel flag is set.

mod epoch_metrics;
mod inference;
mod loader;
mod model;
mod optim;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tch::{Device, Kind, Reduction, Tensor, nn};

use epoch_metrics::{EpochOutputs, MetricsWorker};
pub use epoch_metrics::{Scores, metrics_of};
pub use inference::TrainedModel;
pub use loader::{Batch, BatchLoader, InMemoryLoader};
pub use model::{Mlp, TorchLayer};
pub use optim::{AdaDelta, Optimizer};

use crate::data::{Dataset, Normalizer, stratified_split};
use crate::domain::{EpochEnd, FeatureInfo, IterationProgress, JobSpec, ModelSpec, RunInfo};

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

/// Everything needed to continue training, bit for bit: after the end of `epoch` when
/// `iteration` is 0, otherwise inside `epoch` after its first `iteration` batches (taken
/// when a job is stopped mid-epoch; it then also holds the epoch's outputs so far, as
/// `partial.logits` and `partial.targets`).
pub struct Checkpoint {
    pub epoch: u32,
    pub iteration: u32,
    pub global_step: u64,
    /// Position of the dropout generator's stream.
    pub dropout_word_pos: u128,
    /// Model variables (`model.<name>`, batch-norm running statistics included) and
    /// optimizer state (`opt.<name>`), copied to the CPU.
    pub tensors: Vec<(String, Tensor)>,
}

/// Why training stopped early.
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
    #[error("internal error: {0}")]
    Internal(String),
    #[error("libtorch error: {0}")]
    Torch(#[from] tch::TchError),
}

/// Which device jobs train on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    /// CUDA when available, else CPU.
    Auto,
    Cpu,
    Cuda,
}

impl DeviceChoice {
    /// The device to use, or why it cannot be used.
    pub fn resolve(self) -> Result<Device, String> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Auto => Ok(Device::cuda_if_available()),
            Self::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
            Self::Cuda => Err(
                "--device cuda was asked for but no CUDA device is available; use --device auto or cpu"
                    .into(),
            ),
        }
    }
}

pub fn device_name(d: Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// Trains `spec` on `data`. Returns when all epochs ran, on cancel (`Err(Cancelled)`), or
/// on failure.
pub fn train(
    spec: &JobSpec,
    data: &Dataset,
    device: Device,
    observer: &mut dyn Observer,
    cancel: &AtomicBool,
    resume: Option<Checkpoint>,
) -> Result<(), EngineError> {
    let split = stratified_split(data, spec.validation_fraction, spec.seed);
    let norm = Normalizer::fit(data, &split.train);
    let train_targets: Vec<usize> = split.train.iter().map(|&r| data.targets[r]).collect();
    let mut loader = InMemoryLoader::new(
        &norm.apply(data, &split.train),
        data.width,
        &train_targets,
        spec.batch_size as usize,
        spec.seed.wrapping_add(1),
        device,
    );
    let validation = (!split.validation.is_empty()).then(|| EvalSet {
        features: Tensor::from_slice(&norm.apply(data, &split.validation))
            .view([split.validation.len() as i64, data.width as i64])
            .to_device(device),
        targets: split.validation.iter().map(|&r| data.targets[r]).collect(),
    });
    let features = FeatureInfo {
        names: data.feature_names.clone(),
        mean: norm.mean.clone(),
        std: norm.std.clone(),
    };
    train_with_loader(
        spec,
        &data.labels,
        &features,
        &mut loader,
        validation.as_ref(),
        device,
        observer,
        cancel,
        resume,
    )
}

/// The spec's model, freshly initialized from the job's seed, with its variables in `vs`.
pub fn build_model(vs: &nn::VarStore, spec: &JobSpec, inputs: usize, classes: usize) -> Mlp {
    match &spec.model {
        ModelSpec::Mlp(mlp) => Mlp::new(
            &vs.root(),
            mlp,
            inputs as i64,
            classes as i64,
            spec.seed.wrapping_add(2),
        ),
    }
}

/// A held-out split, evaluated at each epoch end.
pub struct EvalSet {
    pub features: Tensor,
    pub targets: Vec<usize>,
}

/// The training loop proper: any loader, any validation set.
#[allow(clippy::too_many_arguments)]
pub fn train_with_loader(
    spec: &JobSpec,
    labels: &[String],
    features: &FeatureInfo,
    loader: &mut dyn BatchLoader,
    validation: Option<&EvalSet>,
    device: Device,
    observer: &mut dyn Observer,
    cancel: &AtomicBool,
    resume: Option<Checkpoint>,
) -> Result<(), EngineError> {
    let vs = nn::VarStore::new(device);
    let mut model = build_model(&vs, spec, features.width(), labels.len());
    let mut opt = Optimizer::new(&spec.optimizer, &vs, spec.learning_rate)?;
    let weights = (!spec.class_weights.is_empty()).then(|| {
        Tensor::from_slice(&spec.class_weights)
            .to_kind(Kind::Float)
            .to_device(device)
    });
    let ipe = loader.batches_per_epoch();
    let report_every = match spec.report_every {
        0 => ipe.div_ceil(REPORTS_PER_EPOCH).max(1),
        n => n as usize,
    };
    observer.started(RunInfo {
        parameter_count: vs
            .trainable_variables()
            .iter()
            .map(|t| t.numel() as u64)
            .sum(),
        labels: labels.to_vec(),
        train_samples: loader.samples() as u64,
        validation_samples: validation.map_or(0, |v| v.targets.len() as u64),
        iterations_per_epoch: ipe as u32,
        device: device_name(device),
        features: features.clone(),
    });

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
    let mut worker = MetricsWorker::spawn(labels.to_vec(), spec.class_weights.clone())?;
    let mut epochs = || -> Result<(), EngineError> {
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
            for (i, batch) in loader.epoch(epoch).enumerate().skip(done) {
                if cancel.load(Ordering::Relaxed) {
                    // Leave a checkpoint of exactly here (at an epoch's first batch, the
                    // previous epoch's checkpoint is that).
                    if i > 0 {
                        let mut c = snapshot(&vs, &model, &opt, epoch, global_step)?;
                        c.iteration = i as u32;
                        c.tensors
                            .push(("partial.logits".into(), Tensor::f_cat(&outputs, 0)?.copy()));
                        c.tensors.push((
                            "partial.targets".into(),
                            Tensor::f_cat(&seen_targets, 0)?.copy(),
                        ));
                        observer.checkpoint(c);
                    }
                    return Err(EngineError::Cancelled);
                }
                let iteration = i as u32 + 1;
                global_step += 1;
                let logits = model.forward_t(&batch.features, true);
                let loss = logits.f_cross_entropy_loss(
                    &batch.targets,
                    weights.as_ref(),
                    Reduction::Mean,
                    -100,
                    0.0,
                )?;
                opt.zero_grad();
                loss.f_backward()?;
                let value = loss.f_double_value(&[])?;
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
                if !weightless {
                    opt.step()?;
                    window.add(value, batch.targets.size()[0] as usize);
                }
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
            observer.checkpoint(snapshot(&vs, &model, &opt, epoch, global_step)?);
            let train = Scores::from_batches(&outputs, &seen_targets)?;
            worker.submit(EpochOutputs {
                epoch,
                seconds: epoch_start.elapsed().as_secs_f64(),
                train,
                validation,
            })?;
        }
        Ok(())
    };
    let result = epochs();
    // Whatever happened, the epochs that ended are reported before the job's end.
    let finished = worker.finish(observer);
    result.and(finished)
}

/// A deep copy of the training state, on the CPU.
fn snapshot(
    vs: &nn::VarStore,
    model: &Mlp,
    opt: &Optimizer,
    epoch: u32,
    global_step: u64,
) -> Result<Checkpoint, EngineError> {
    let copy = |t: &Tensor| -> Result<Tensor, EngineError> {
        Ok(t.f_detach()?.f_to_device(Device::Cpu)?.copy())
    };
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let mut tensors = Vec::with_capacity(vars.len());
    for (name, t) in &vars {
        tensors.push((format!("model.{name}"), copy(t)?));
    }
    for (name, t) in opt.state() {
        tensors.push((format!("opt.{name}"), copy(&t)?));
    }
    Ok(Checkpoint {
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
    model: &mut Mlp,
    opt: &mut Optimizer,
    c: &Checkpoint,
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
/// must be restored.
fn load_model_vars(vs: &nn::VarStore, tensors: &[(String, Tensor)]) -> Result<(), EngineError> {
    let vars = vs.variables();
    let mut restored = 0;
    for (name, t) in tensors {
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
pub fn forward_eval(model: &mut Mlp, features: &Tensor) -> Result<Tensor, EngineError> {
    tch::no_grad(|| {
        let n = features.size()[0];
        let chunks: Vec<Tensor> = (0..n)
            .step_by(EVAL_CHUNK as usize)
            .map(|s| model.forward_t(&features.narrow(0, s, EVAL_CHUNK.min(n - s)), false))
            .collect();
        Ok(Tensor::f_cat(&chunks, 0)?)
    })
}
