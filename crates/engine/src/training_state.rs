//! A model's training state as a [`TrainingState`]: taken (`snapshot`, on the CPU) and
//! loaded back into a freshly built model and optimizer (`restore`).

use tch::{Device, Tensor, nn};

use crate::{EngineError, Network, Optimizer, TrainingState, script};

/// TrainingState entries of the scheduler's and the early stopper's state.
pub(crate) const SCHEDULER_KEY: &str = "sched.state";
pub(crate) const STOPPER_KEY: &str = "stop.state";

/// The numbers a checkpoint saved under `key`, if it has them.
pub(crate) fn values(c: &TrainingState, key: &str) -> Option<Vec<f64>> {
    let (_, t) = c.tensors.iter().find(|(n, _)| n == key)?;
    Vec::<f64>::try_from(t).ok()
}

/// The model's variables (`model.<name>`, CPU copies, sorted by name), and a TorchScript
/// model's module: all that rebuilds it.
pub(crate) fn model_state(
    vs: &nn::VarStore,
    model: &Network,
) -> Result<Vec<(String, Tensor)>, EngineError> {
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

/// A deep copy of the training state, on the CPU.
pub(crate) fn snapshot(
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
/// its `partial.*` entries (a mid-epoch checkpoint's outputs so far; see `epoch.rs`).
pub(crate) fn restore(
    vs: &nn::VarStore,
    model: &mut Network,
    opt: &mut Optimizer,
    c: &TrainingState,
) -> Result<Vec<(String, Tensor)>, EngineError> {
    load_model_vars(vs, &c.tensors)?;
    let mut opt_state = Vec::new();
    let mut partial = Vec::new();
    for (name, t) in &c.tensors {
        if name.starts_with("partial.") {
            partial.push((name.clone(), t.shallow_clone()));
        }
        if let Some(state) = name.strip_prefix("opt.") {
            opt_state.push((state.to_string(), t.f_to_device(vs.device())?));
        }
    }
    opt.load_state(&opt_state)?;
    model.set_dropout_word_pos(c.dropout_word_pos);
    Ok(partial)
}

/// Copies a checkpoint's `model.*` tensors into the variables of `vs`; every variable
/// must be restored. (A TorchScript model's module entry is not a variable.)
pub(crate) fn load_model_vars(
    vs: &nn::VarStore,
    tensors: &[(String, Tensor)],
) -> Result<(), EngineError> {
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
