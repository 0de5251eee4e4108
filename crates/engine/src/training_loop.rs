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
use crate::epoch::{Epoch, Partial};
use crate::epoch_metrics::{EpochOutputs, MetricsWorker};
use crate::loss::{class_weight_tensor, step_loss, training_loss};
use crate::schedule::{Scheduler, SchedulerState};
use crate::step_losses::{READ_EVERY, StepAt, StepLosses};
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
    /// Some class weighs 0, so a batch may have nothing to learn from (its loss is 0/0):
    /// each step's loss is then read before its update, to skip that update.
    read_each_step: bool,
    /// Step losses not yet read back from the device.
    losses: StepLosses,
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
/// their outputs when resuming inside an epoch.
pub(crate) struct Start {
    first_epoch: u32,
    skip: usize,
    partial: Option<Partial>,
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
        let read_each_step = run.class_weights.contains(&0.0);
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
        let loss_of = |logits: &Tensor, targets: &Tensor| {
            batch_loss_sums(logits, targets, weights.as_ref(), spec.loss)
        };
        let (start, global_step) = match resume {
            Some(c) => resume_at(&vs, &mut model, &mut opt, c, loss_of)?,
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
            read_each_step,
            losses: StepLosses::default(),
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
        partial: Option<Partial>,
    ) -> Result<Option<String>, EngineError> {
        let mut e = Epoch::new(epoch, self.ipe, self.validation.is_none(), partial);
        for (i, batch) in loader.epoch(epoch).enumerate().skip(done) {
            if self.cancel.load(Ordering::Relaxed) {
                self.settle(&mut e)?;
                self.cancel_checkpoint(&e, i)?;
                return Err(EngineError::Cancelled);
            }
            self.step(&mut e, i as u32 + 1, batch)?;
        }
        if let Some(error) = loader.take_error() {
            return Err(error);
        }
        self.end_epoch(e)
    }

    /// Leaves a checkpoint of exactly here, after the epoch's first `i` batches (at an
    /// epoch's first batch, the previous epoch's checkpoint is that).
    fn cancel_checkpoint(&mut self, e: &Epoch, i: usize) -> Result<(), EngineError> {
        if i > 0 {
            let mut c = self.snapshot(e.epoch)?;
            c.iteration = i as u32;
            c.tensors.extend(e.partial_entries()?);
            self.observer.checkpoint(self.run.id, c.into_checkpoint()?);
        }
        Ok(())
    }

    /// Trains on the epoch's `iteration`-th batch (1-based). Nothing here waits for the
    /// device: the step's loss is read back with others' (see [`Self::settle`]).
    fn step(&mut self, e: &mut Epoch, iteration: u32, batch: Batch) -> Result<(), EngineError> {
        let spec = self.run.spec;
        self.global_step += 1;
        let (logits, loss) = step_loss(
            &mut self.model,
            &mut self.opt,
            &batch,
            self.weights.as_ref(),
            spec,
        )?;
        let samples = batch.targets.size()[0] as usize;
        let weight = self
            .weights
            .as_ref()
            .map(|w| w.f_index_select(0, &batch.targets)?.f_sum(Kind::Double))
            .transpose()?;
        let at = StepAt {
            step: self.global_step,
            epoch: e.epoch,
            iteration,
            // The rate of the update before this loss (which produced it).
            learning_rate: self.opt.learning_rate(),
            samples,
        };
        self.losses.push(at, &loss, weight);
        let mut weightless = false;
        if self.read_each_step || self.losses.len() >= READ_EVERY {
            weightless = self.settle(e)?;
        }
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
        }
        self.scheduler.after_step();
        self.worker.poll(self.observer);
        e.record(&logits, batch.targets)?;
        if (iteration as usize).is_multiple_of(self.report_every) || iteration as usize == self.ipe
        {
            self.settle(e)?;
            self.report_progress(e, iteration);
        }
        Ok(())
    }

    /// Reads back the losses of the steps since the last read (one copy from the device)
    /// and checks them in step order: the first that is not finite or has exploded fails
    /// the run, named by its step. Each counts towards the progress window and the epoch's
    /// training loss. True when the last of them had nothing to learn from (only rows of
    /// class weight 0: its loss is 0/0, which is skipped, not a divergence).
    fn settle(&mut self, e: &mut Epoch) -> Result<bool, EngineError> {
        let mut weightless = false;
        for s in self.losses.read()? {
            weightless = s.weightless();
            if weightless {
                continue;
            }
            let at = s.at;
            if !s.loss.is_finite() {
                return Err(EngineError::Diverged {
                    step: at.step,
                    epoch: at.epoch,
                    iteration: at.iteration,
                    loss: s.loss,
                    learning_rate: at.learning_rate,
                });
            }
            if let Some(smoothed) = self.watch.exploded(s.loss) {
                return Err(EngineError::Exploded {
                    step: at.step,
                    epoch: at.epoch,
                    iteration: at.iteration,
                    loss: smoothed,
                    lowest: self.watch.lowest(),
                    factor: DivergenceWatch::FACTOR,
                    learning_rate: at.learning_rate,
                });
            }
            e.window.add(s.loss, at.samples);
            e.add_loss(s.loss, s.weight);
        }
        Ok(weightless)
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
        self.settle(&mut e)?;
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
        let train = e.train_outputs(self.run.labels.len())?;
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
/// global step it has reached. `loss_of` gives the loss sums of logits (an old mid-epoch
/// checkpoint's, which has no others).
fn resume_at(
    vs: &nn::VarStore,
    model: &mut Network,
    opt: &mut Optimizer,
    c: TrainingState,
    loss_of: impl Fn(&Tensor, &Tensor) -> Result<(f64, f64), tch::TchError>,
) -> Result<(Start, u64), EngineError> {
    let entries = restore(vs, model, opt, &c)?;
    let partial = Partial::from_entries(&entries, vs.device(), loss_of)?;
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

/// A batch's training loss times what it is the mean over (the rows' class weights, or
/// their count), and that: the epoch loss's sums.
fn batch_loss_sums(
    logits: &Tensor,
    targets: &Tensor,
    weights: Option<&Tensor>,
    loss: LossSpec,
) -> Result<(f64, f64), tch::TchError> {
    let mean = training_loss(logits, targets, weights, loss)?.f_double_value(&[])?;
    let weight = match weights {
        Some(w) => w
            .f_index_select(0, targets)?
            .f_sum(Kind::Double)?
            .f_double_value(&[])?,
        None => targets.size()[0] as f64,
    };
    Ok((mean * weight, weight))
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
