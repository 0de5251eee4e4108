//! Balanced bagging: members trained one after the other, each on every row of the
//! smallest class and an equal-sized draw of every other class, then the ensemble (the mean
//! of the members' probabilities) evaluated once.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor, nn};

use super::{
    BAGGING_SEED, EngineError, EvalSet, InMemoryLoader, LossFn, Network, Observer, Resume, Run,
    SHUFFLE_SEED, TrainOutcome, TrainSplit, TrainingState, build_model, in_chunks,
    probability_metrics, train_model,
};
use crate::training_state::load_model_vars;
use gradstream_data::imbalance::balanced_bootstrap;
use gradstream_domain::{EpochEnd, RunId};

/// Trains the members not yet trained, each as its own run (member `m` is
/// `RunId::child(m)`; `resume` is a member's checkpoint, which carries the members before
/// it), then reports the ensemble's metrics and its checkpoint (every member's variables)
/// in the job's own run.
pub(super) fn train(
    run: &Run<'_>,
    members: u32,
    split: &TrainSplit,
    validation: Option<&EvalSet>,
    observer: &mut dyn Observer,
    cancel: &AtomicBool,
    resume: Option<Resume>,
) -> Result<TrainOutcome, EngineError> {
    let spec = run.spec;
    let epochs = spec.epochs;
    // Every member takes as many steps (its draws are of equal size); the ensemble's
    // checkpoint records the last one's.
    let mut global_step = 0;
    let (first, mut finished, mut resume) = match resume {
        None => (0, Vec::new(), None),
        Some(Resume { run: r, state: c }) => {
            let member = r.child_index().filter(|&m| m < members).ok_or_else(|| {
                EngineError::Internal(format!(
                    "an ensemble of {members} members cannot resume from run {r}"
                ))
            })?;
            let mut finished = member_vars(&c, member);
            if c.epoch == epochs && c.iteration == 0 {
                // That member had finished: its variables are the checkpoint's model.
                finished.push(own_vars(&c));
                global_step = c.global_step;
                (member + 1, finished, None)
            } else {
                (member, finished, Some(c))
            }
        }
    };
    for m in first..members {
        let mut rng =
            ChaCha8Rng::seed_from_u64(spec.seed.wrapping_add(BAGGING_SEED) ^ (u64::from(m) << 32));
        let rows = balanced_bootstrap(&split.targets, split.classes, &mut rng);
        let mut features = Vec::with_capacity(rows.len() * split.width);
        for &r in &rows {
            features.extend_from_slice(&split.features[r * split.width..(r + 1) * split.width]);
        }
        let targets: Vec<usize> = rows.iter().map(|&r| split.targets[r]).collect();
        let mut loader = InMemoryLoader::new(
            &features,
            split.width,
            &targets,
            spec.batch_size as usize,
            spec.seed.wrapping_add(SHUFFLE_SEED) ^ (u64::from(m) << 40),
            run.device,
        );
        let member_run = Run {
            id: RunId::child(m),
            finished: &finished,
            ..*run
        };
        // Early stopping is refused for ensembles (JobSpec::validate), so a member runs
        // all its epochs.
        let trained = train_model(
            &member_run,
            &mut loader,
            validation,
            observer,
            cancel,
            resume.take(),
        )?;
        global_step = trained.global_step;
        finished.push(trained.vars);
    }

    // The ensemble's model, checkpointed before its metrics like any epoch's: every
    // member's variables (`member<j>.model.<name>`).
    let mut tensors = Vec::new();
    for (j, vars) in finished.iter().enumerate() {
        for (name, t) in vars {
            tensors.push((format!("member{j}.{name}"), t.shallow_clone()));
        }
    }
    let combined = TrainingState {
        epoch: epochs,
        iteration: 0,
        global_step,
        dropout_word_pos: 0,
        tensors,
    };
    observer.checkpoint(RunId::JOB, combined.into_checkpoint()?);

    let start = Instant::now();
    let models = finished
        .iter()
        .map(|vars| member_model(run.spec, run.width, run.labels.len(), run.device, vars))
        .collect::<Result<Vec<_>, _>>()?;
    let mut models: Vec<Network> = models.into_iter().map(|(_, m)| m).collect();
    let loss = LossFn::new(run.class_weights, spec.loss);
    let mut metrics = |x: &Tensor, targets: &[usize], curves: bool| {
        let probs = mean_probabilities(&mut models, x)?;
        let l = loss.of_probabilities(&probs, targets);
        Ok::<_, EngineError>(probability_metrics(run.labels, targets, &probs, l, curves))
    };
    let train_x = Tensor::from_slice(&split.features)
        .f_view([split.targets.len() as i64, split.width as i64])?
        .f_to_device(run.device)?;
    let train = metrics(&train_x, &split.targets, validation.is_none())?;
    let validation = validation
        .map(|v| metrics(&v.features, &v.targets, true))
        .transpose()?;
    observer.epoch_end(
        RunId::JOB,
        EpochEnd {
            epoch: epochs,
            train,
            validation,
            seconds: start.elapsed().as_secs_f64(),
            best_epoch: 0,
            best_run: RunId::JOB,
            ensemble: true,
            generalization_gap: None,
            overfitting: false,
            layers: Vec::new(),
            diagnostics_seconds: 0.0,
        },
    );
    Ok(TrainOutcome::Completed)
}

/// The mean of the members' softmax probabilities on `x` (evaluation mode), row-major
/// `n x k` in host memory.
fn mean_probabilities(models: &mut [Network], x: &Tensor) -> Result<Vec<f32>, EngineError> {
    let mean = in_chunks(x, |c| mean_softmax(models.iter_mut(), c))?
        .f_to_device(Device::Cpu)?
        .f_flatten(0, -1)?;
    Ok(Vec::<f32>::try_from(&mean)?)
}

/// The mean of the models' softmax probabilities on `x` (evaluation mode), `[n, k]` on
/// `x`'s device. One model: its probabilities exactly.
pub(super) fn mean_softmax<'a>(
    models: impl Iterator<Item = &'a mut Network>,
    x: &Tensor,
) -> Result<Tensor, EngineError> {
    let mut sum: Option<Tensor> = None;
    let mut count = 0;
    for m in models {
        let p = m.forward_t(x, false)?.f_softmax(-1, Kind::Float)?;
        sum = Some(match sum {
            None => p,
            Some(s) => s.f_add(&p)?,
        });
        count += 1;
    }
    let sum = sum.ok_or_else(|| EngineError::Internal("a model without members".into()))?;
    Ok(if count == 1 {
        sum
    } else {
        sum.f_div_scalar(f64::from(count))?
    })
}

/// A model of `spec` rebuilt on `device` from its variables (`model.<name>`): an ensemble's
/// member, or a checkpoint's model.
pub(super) fn member_model(
    spec: &gradstream_domain::JobSpec,
    width: usize,
    classes: usize,
    device: Device,
    vars: &[(String, Tensor)],
) -> Result<(nn::VarStore, Network), EngineError> {
    let vs = nn::VarStore::new(device);
    let model = build_model(&vs, spec, width, classes, Some(vars))?;
    load_model_vars(&vs, vars)?;
    Ok((vs, model))
}

/// The variables of members `0..count` carried in a checkpoint (`member<j>.model.<name>`),
/// renamed `model.<name>`.
pub fn member_vars(c: &TrainingState, count: u32) -> Vec<Vec<(String, Tensor)>> {
    (0..count)
        .map(|j| {
            let prefix = format!("member{j}.");
            c.tensors
                .iter()
                .filter_map(|(name, t)| {
                    name.strip_prefix(&prefix)
                        .map(|rest| (rest.to_string(), t.shallow_clone()))
                })
                .collect()
        })
        .collect()
}

/// The checkpoint's own model variables (none in an ensemble's combined checkpoint).
pub(super) fn own_vars(c: &TrainingState) -> Vec<(String, Tensor)> {
    c.tensors
        .iter()
        .filter(|(name, _)| name.starts_with("model."))
        .map(|(name, t)| (name.clone(), t.shallow_clone()))
        .collect()
}

/// How many finished members' variables a checkpoint carries.
pub fn members_in(c: &TrainingState) -> u32 {
    c.tensors
        .iter()
        .filter_map(|(name, _)| {
            name.strip_prefix("member")?
                .split_once('.')?
                .0
                .parse::<u32>()
                .ok()
        })
        .map(|j| j + 1)
        .max()
        .unwrap_or(0)
}
