//! One model's training loop ([`crate::train_model`]): built from a [`Run`] (and the
//! state it resumes from), it trains epoch after epoch, reports through the [`Observer`],
//! leaves checkpoints, and hands each epoch's outputs to the [`MetricsWorker`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tch::{Kind, Tensor, nn};

use crate::diagnostics::{
    self, DivergenceWatch, clip_grad_norm, layer_diagnostics, weights_before,
};
use crate::early_stopping::EarlyStopper;
use crate::epoch_metrics::{EpochOutputs, MetricsWorker};
use crate::loss::{class_weight_tensor, step_loss};
use crate::schedule::{Scheduler, SchedulerState};
use crate::training_state::{SCHEDULER_KEY, STOPPER_KEY, model_state, restore, snapshot, values};
use crate::window::Window;
use crate::{
    Batch, BatchLoader, EngineError, EvalSet, LossFn, Network, Observer, Optimizer, Run, Scores,
    TrainOutcome, Trained, TrainingState, build_model, forward_eval,
};
use gradstream_domain::{IterationProgress, LossSpec, LrSchedule};

/// Progress events per epoch when the spec leaves `report_every` at 0.
const REPORTS_PER_EPOCH: usize = 20;

/// One model's training: its variables, optimizer, schedule, watchers and metrics worker,
/// and the step it has reached.
pub(crate) struct TrainingLoop<'a> {
    run: &'a Run<'a>,
    validation: Option<&'a EvalSet>,
    observer: &'a mut dyn Observer,
    cancel: &'a AtomicBool,
    vs: nn::VarStore,
    model: Network,
    opt: Optimizer,
    /// The class weights on the device; `None` when unweighted.
    weights: Option<Tensor>,
    /// Batches per epoch.
    ipe: usize,
    /// Batches between progress reports.
    report_every: usize,
    /// The diagnostic sample: the first validation rows, fixed for the whole run.
    fixed_sample: Option<Tensor>,
    watch: DivergenceWatch,
    stopper: Option<EarlyStopper>,
    scheduler: Scheduler,
    /// Early stopping and reduce-on-plateau need each epoch's metrics before the next
    /// epoch starts.
    synchronous: bool,
    global_step: u64,
    worker: MetricsWorker,
}

/// Where the loop starts: its first epoch, the batches of that epoch already trained, and
/// their outputs (logits, targets) when resuming inside an epoch.
pub(crate) struct Start {
    first_epoch: u32,
    skip: usize,
    partial: Option<(Tensor, Tensor)>,
}

/// What an epoch gathers while it runs, for its progress reports and its end.
struct Epoch {
    epoch: u32,
    start: Instant,
    window: Window,
    outputs: Vec<Tensor>,
    targets: Vec<Tensor>,
    /// Layer diagnostics: the weights before the epoch's last step, that step's batch, and
    /// the time spent on them.
    before_last_step: Vec<(String, Tensor)>,
    last_batch: Option<Tensor>,
    diagnostics_seconds: f64,
}

impl Epoch {
    fn new(epoch: u32, ipe: usize, partial: Option<(Tensor, Tensor)>) -> Self {
        let start = Instant::now();
        let window = Window::new();
        let mut outputs: Vec<Tensor> = Vec::with_capacity(ipe);
        let mut targets: Vec<Tensor> = Vec::with_capacity(ipe);
        // Resuming inside an epoch: its first batches were trained before the stop.
        if let Some((logits, seen)) = partial {
            outputs.push(logits);
            targets.push(seen);
        }
        Self {
            epoch,
            start,
            window,
            outputs,
            targets,
            before_last_step: Vec::new(),
            last_batch: None,
            diagnostics_seconds: 0.0,
        }
    }
}

impl<'a> TrainingLoop<'a> {
    /// Builds the model and everything that trains it, restored from `resume` if given,
    /// and starts the metrics worker.
    pub(crate) fn new(
        run: &'a Run<'a>,
        loader: &dyn BatchLoader,
        validation: Option<&'a EvalSet>,
        observer: &'a mut dyn Observer,
        cancel: &'a AtomicBool,
        resume: Option<TrainingState>,
    ) -> Result<(Self, Start), EngineError> {
        let (spec, device) = (run.spec, run.device);
        let vs = nn::VarStore::new(device);
        let state = resume.as_ref().map(|c| c.tensors.as_slice());
        let mut model = build_model(&vs, spec, run.width, run.labels.len(), state)?;
        let mut opt = Optimizer::new(&spec.optimizer, &vs, spec.learning_rate)?;
        let weights = class_weight_tensor(run.class_weights, device);
        let ipe = loader.batches_per_epoch();
        let report_every = match spec.report_every {
            0 => ipe.div_ceil(REPORTS_PER_EPOCH).max(1),
            n => n as usize,
        };
        let loss_fn = LossFn::new(run.class_weights, spec.loss);
        let fixed_sample = validation
            .map(|v| {
                let n = v.features.size()[0].min(diagnostics::SAMPLE_ROWS);
                v.features.f_narrow(0, 0, n)
            })
            .transpose()?;
        let watch = DivergenceWatch::new(chance_loss(spec.loss, run.labels.len()));
        let mut stopper = spec.early_stopping.map(EarlyStopper::new);
        let saved = |key| resume.as_ref().and_then(|c| values(c, key));
        if let (Some(s), Some(state)) = (stopper.as_mut(), saved(STOPPER_KEY)) {
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
        let synchronous =
            stopper.is_some() || matches!(spec.lr_schedule, LrSchedule::ReduceOnPlateau { .. });
        let (start, global_step) = match resume {
            Some(c) => resume_at(&vs, &mut model, &mut opt, c)?,
            None => (
                Start {
                    first_epoch: 1,
                    skip: 0,
                    partial: None,
                },
                0,
            ),
        };
        let worker = MetricsWorker::spawn(run.labels.to_vec(), loss_fn, run.id)?;
        let training = Self {
            run,
            validation,
            observer,
            cancel,
            vs,
            model,
            opt,
            weights,
            ipe,
            report_every,
            fixed_sample,
            watch,
            stopper,
            scheduler,
            synchronous,
            global_step,
            worker,
        };
        Ok((training, start))
    }

    /// The epochs from `start` to the spec's last, unless early stopping ends them.
    pub(crate) fn run(
        &mut self,
        loader: &mut dyn BatchLoader,
        mut start: Start,
    ) -> Result<TrainOutcome, EngineError> {
        for epoch in start.first_epoch..=self.run.spec.epochs {
            let done = std::mem::take(&mut start.skip);
            if let Some(why) = self.run_epoch(loader, epoch, done, start.partial.take())? {
                return Ok(TrainOutcome::StoppedEarly(why));
            }
        }
        Ok(TrainOutcome::Completed)
    }

    /// Reports the epochs that ended (whatever `result` is, before the job's end) and hands
    /// back the model's final variables.
    pub(crate) fn finish(
        self,
        result: Result<TrainOutcome, EngineError>,
    ) -> Result<Trained, EngineError> {
        let reported = self.worker.finish(self.observer);
        let outcome = result.and_then(|o| reported.map(|()| o))?;
        Ok(Trained {
            vars: model_state(&self.vs, &self.model)?,
            global_step: self.global_step,
            outcome,
        })
    }

    /// One epoch, its first `done` batches skipped (they were trained before a resume);
    /// why training should stop early, if it should.
    fn run_epoch(
        &mut self,
        loader: &mut dyn BatchLoader,
        epoch: u32,
        done: usize,
        partial: Option<(Tensor, Tensor)>,
    ) -> Result<Option<String>, EngineError> {
        let mut e = Epoch::new(epoch, self.ipe, partial);
        for (i, batch) in loader.epoch(epoch).enumerate().skip(done) {
            if self.cancel.load(Ordering::Relaxed) {
                self.cancel_checkpoint(&e, i)?;
                return Err(EngineError::Cancelled);
            }
            self.step(&mut e, i as u32 + 1, batch)?;
        }
        self.end_epoch(e)
    }

    /// Leaves a checkpoint of exactly here, after the epoch's first `i` batches (at an
    /// epoch's first batch, the previous epoch's checkpoint is that).
    fn cancel_checkpoint(&mut self, e: &Epoch, i: usize) -> Result<(), EngineError> {
        if i > 0 {
            let mut c = self.snapshot(e.epoch)?;
            c.iteration = i as u32;
            c.tensors.push((
                "partial.logits".into(),
                Tensor::f_cat(&e.outputs, 0)?.copy(),
            ));
            c.tensors.push((
                "partial.targets".into(),
                Tensor::f_cat(&e.targets, 0)?.copy(),
            ));
            self.observer.checkpoint(self.run.id, c.into_checkpoint()?);
        }
        Ok(())
    }

    /// Trains on the epoch's `iteration`-th batch (1-based).
    fn step(&mut self, e: &mut Epoch, iteration: u32, batch: Batch) -> Result<(), EngineError> {
        let spec = self.run.spec;
        self.global_step += 1;
        let (logits, value) = step_loss(
            &mut self.model,
            &mut self.opt,
            &batch,
            self.weights.as_ref(),
            spec,
        )?;
        let weightless = self.is_weightless(value, &batch)?;
        self.check_divergence(value, weightless, e.epoch, iteration)?;
        if let Some(max) = spec.gradient_clip_norm {
            let _ = clip_grad_norm(&self.vs, max)?;
        }
        if spec.layer_diagnostics && iteration as usize == self.ipe {
            let start = Instant::now();
            e.before_last_step = weights_before(&self.model)?;
            e.diagnostics_seconds += start.elapsed().as_secs_f64();
            e.last_batch = Some(batch.features.shallow_clone());
        }
        self.opt.set_learning_rate(self.scheduler.lr());
        if !weightless {
            self.opt.step()?;
            e.window.add(value, batch.targets.size()[0] as usize);
        }
        self.scheduler.after_step();
        self.worker.poll(self.observer);
        e.outputs.push(logits.detach());
        e.targets.push(batch.targets);
        if (iteration as usize).is_multiple_of(self.report_every) || iteration as usize == self.ipe
        {
            self.report_progress(e, iteration);
        }
        Ok(())
    }

    /// Whether a batch whose loss is `value` has only samples of class weight 0: its mean
    /// loss is 0/0 and it has nothing to learn from, so it is skipped, not a divergence.
    fn is_weightless(&self, value: f64, batch: &Batch) -> Result<bool, EngineError> {
        Ok(!value.is_finite()
            && self
                .weights
                .as_ref()
                .map(|w| {
                    w.f_index_select(0, &batch.targets)?
                        .f_sum(Kind::Double)?
                        .f_double_value(&[])
                })
                .transpose()?
                .is_some_and(|sum| sum == 0.0))
    }

    /// Fails when the step's loss is not finite or has exploded.
    fn check_divergence(
        &mut self,
        value: f64,
        weightless: bool,
        epoch: u32,
        iteration: u32,
    ) -> Result<(), EngineError> {
        if !value.is_finite() && !weightless {
            return Err(EngineError::Diverged {
                step: self.global_step,
                epoch,
                iteration,
                loss: value,
                learning_rate: self.opt.learning_rate(),
            });
        }
        if !weightless && let Some(smoothed) = self.watch.exploded(value) {
            return Err(EngineError::Exploded {
                step: self.global_step,
                epoch,
                iteration,
                loss: smoothed,
                lowest: self.watch.lowest(),
                factor: DivergenceWatch::FACTOR,
                learning_rate: self.opt.learning_rate(),
            });
        }
        Ok(())
    }

    /// The progress since the last report, then a new window.
    fn report_progress(&mut self, e: &mut Epoch, iteration: u32) {
        self.observer.iteration(
            self.run.id,
            IterationProgress {
                epoch: e.epoch,
                iteration,
                iterations_per_epoch: self.ipe as u32,
                global_step: self.global_step,
                loss: e.window.mean_loss(),
                learning_rate: self.opt.learning_rate(),
                samples_per_second: e.window.samples_per_second(),
            },
        );
        e.window = Window::new();
    }

    /// The epoch's end: validation, diagnostics, its outputs to the metrics worker (and,
    /// when synchronous, its metrics back), the scheduler and early stopping, then the
    /// checkpoint before the epoch's metrics. Why training should stop early, if it should.
    fn end_epoch(&mut self, mut e: Epoch) -> Result<Option<String>, EngineError> {
        let spec = self.run.spec;
        let validation = match self.validation {
            Some(v) => {
                let logits = forward_eval(&mut self.model, &v.features)?;
                Some(Scores::with_targets(&logits, v.targets.clone())?)
            }
            None => None,
        };
        let sample = self.fixed_sample.as_ref().or(e.last_batch.as_ref());
        let start = Instant::now();
        let layers = match sample {
            Some(sample) if spec.layer_diagnostics => {
                layer_diagnostics(&self.model, sample, &e.before_last_step)?
            }
            _ => Vec::new(),
        };
        e.diagnostics_seconds += start.elapsed().as_secs_f64();
        let train = Scores::from_batches(&e.outputs, &e.targets)?;
        self.worker.submit(EpochOutputs {
            epoch: e.epoch,
            seconds: e.start.elapsed().as_secs_f64(),
            train,
            validation,
            layers,
            diagnostics_seconds: e.diagnostics_seconds,
        })?;
        let end = if self.synchronous {
            Some(self.worker.next()?)
        } else {
            None
        };
        let metric = end
            .as_ref()
            .and_then(|end| spec.best_model_metric.value(end.selection_metrics()));
        self.scheduler.after_epoch(metric);
        let stop = match (&end, self.stopper.as_mut()) {
            (Some(end), Some(s)) => s.update(spec, end),
            _ => None,
        };
        // The checkpoint (with the scheduler's and the early stopper's state after this
        // epoch) goes before the epoch's metrics.
        self.checkpoint(e.epoch)?;
        match end {
            Some(end) => {
                self.observer.epoch_end(self.run.id, end);
                Ok(stop)
            }
            None => Ok(None),
        }
    }

    /// Reports the checkpoint at the end of `epoch`.
    fn checkpoint(&mut self, epoch: u32) -> Result<(), EngineError> {
        let c = self.snapshot(epoch)?.into_checkpoint()?;
        self.observer.checkpoint(self.run.id, c);
        Ok(())
    }

    /// The training state now, inside or at the end of `epoch`: the model and optimizer,
    /// the early stopper's and the scheduler's state, and for an ensemble member the
    /// variables of the members before it.
    fn snapshot(&self, epoch: u32) -> Result<TrainingState, EngineError> {
        let mut c = snapshot(&self.vs, &self.model, &self.opt, epoch, self.global_step)?;
        if let Some(s) = &self.stopper {
            c.tensors
                .push((STOPPER_KEY.into(), Tensor::from_slice(&s.state())));
        }
        c.tensors.push((
            SCHEDULER_KEY.into(),
            Tensor::from_slice(&self.scheduler.state().to_values()),
        ));
        for (j, tensors) in self.run.finished.iter().enumerate() {
            for (name, t) in tensors {
                c.tensors
                    .push((format!("member{j}.{name}"), t.shallow_clone()));
            }
        }
        Ok(c)
    }
}

/// Loads `c` into the freshly built model and optimizer; where the loop starts, and the
/// global step it has reached.
fn resume_at(
    vs: &nn::VarStore,
    model: &mut Network,
    opt: &mut Optimizer,
    c: TrainingState,
) -> Result<(Start, u64), EngineError> {
    let partial = restore(vs, model, opt, &c)?;
    let start = match c.iteration {
        0 => Start {
            first_epoch: c.epoch + 1,
            skip: 0,
            partial: None,
        },
        k => Start {
            first_epoch: c.epoch,
            skip: k as usize,
            partial,
        },
    };
    Ok((start, c.global_step))
}

/// The loss of predicting every class with equal probability: where divergence is
/// measured from.
fn chance_loss(loss: LossSpec, classes: usize) -> f64 {
    let k = classes as f64;
    match loss {
        LossSpec::CrossEntropy => k.ln(),
        LossSpec::Focal { gamma } => (1.0 - 1.0 / k).powf(gamma) * k.ln(),
    }
}
