//! Optimizers written out here rather than taken from tch, whose `nn::Optimizer` keeps its
//! state in C++ where a checkpoint cannot reach it. Each matches its `torch.optim` class
//! step for step (foreach=False, maximize=False, otherwise that class's defaults):
//!
//! - SGD: `torch.optim.SGD` with dampening 0; momentum buffer = the first gradient.
//! - Adam: `torch.optim.Adam` (amsgrad off), weight decay as L2 added to the gradient.
//! - AdamW: `torch.optim.AdamW` (amsgrad off), parameters times `1 - lr * wd` first.
//! - RMSprop: `torch.optim.RMSprop` (not centered).
//! - AdaDelta: `torch.optim.Adadelta`.
//!
//! As in torch.optim, a parameter without a gradient is skipped, and its state (its own step
//! count and buffers) is made at its first gradient. `tests/optimizers.rs` checks all of
//! them against torch.optim's numbers.
//!
//! Each update mirrors torch.optim's sequence of tensor operations. tch has no `alpha` for
//! `add` nor `value` for `addcmul`/`addcdiv`, so `x.add_(y, alpha=a)` becomes `x + y * a`
//! (which may differ from torch's fused multiply-add in the last bit), while `addcmul_` and
//! `addcdiv_` with a `value` scale their first factor first, which libtorch's kernels compute
//! in the same order.

use tch::{Device, Kind, TchError, Tensor, nn};

use gradstream_domain::OptimizerSpec;

/// Name of the state entry holding how many times `step` has been called.
const STEP: &str = "step";
/// Where `load_state` says a missing entry should have been.
const STATE: &str = "the optimizer state";

/// One parameter's state, made at its first gradient.
struct ParamState {
    /// Updates this parameter has had (torch.optim's per-parameter `step`).
    step: u64,
    /// The optimizer's buffers, in the order of [`buffer_names`], shaped like the parameter.
    buffers: Vec<Tensor>,
}

/// The per-parameter buffers `spec` keeps, in the order `ParamState::buffers` holds them.
fn buffer_names(spec: &OptimizerSpec) -> &'static [&'static str] {
    match *spec {
        OptimizerSpec::Sgd { momentum, .. } if momentum != 0.0 => &["momentum_buffer"],
        OptimizerSpec::Sgd { .. } => &[],
        OptimizerSpec::Adam { .. } => &["exp_avg", "exp_avg_sq"],
        OptimizerSpec::RmsProp { momentum, .. } if momentum > 0.0 => {
            &["square_avg", "momentum_buffer"]
        }
        OptimizerSpec::RmsProp { .. } => &["square_avg"],
        OptimizerSpec::AdaDelta { .. } => &["square_avg", "acc_delta"],
    }
}

/// Any of the optimizers, behind one interface, with its state in the open.
pub struct Optimizer {
    spec: OptimizerSpec,
    params: Vec<Tensor>,
    lr: f64,
    /// Calls of `step`.
    steps: u64,
    /// One per parameter; `None` until the parameter's first gradient.
    state: Vec<Option<ParamState>>,
}

impl Optimizer {
    /// An optimizer for the VarStore's trainable variables, in their (stable) order.
    pub fn new(spec: &OptimizerSpec, vs: &nn::VarStore, lr: f64) -> Result<Self, TchError> {
        Ok(Self::from_params(spec, vs.trainable_variables(), lr))
    }

    /// An optimizer for `params` (shallow clones of the tensors to update).
    pub fn from_params(spec: &OptimizerSpec, params: Vec<Tensor>, lr: f64) -> Self {
        Self {
            spec: *spec,
            state: params.iter().map(|_| None).collect(),
            params,
            lr,
            steps: 0,
        }
    }

    pub fn spec(&self) -> &OptimizerSpec {
        &self.spec
    }

    pub fn learning_rate(&self) -> f64 {
        self.lr
    }

    /// Takes effect at the next `step`.
    pub fn set_learning_rate(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// Zeroes the parameters' gradients (in place, as tch does; they stay defined).
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.zero_grad();
        }
    }

    /// One update of every parameter that has a gradient.
    pub fn step(&mut self) -> Result<(), TchError> {
        let spec = self.spec;
        let lr = self.lr;
        tch::no_grad(|| {
            for (p, slot) in self.params.iter_mut().zip(&mut self.state) {
                let grad = p.grad();
                if !grad.defined() {
                    continue;
                }
                let fresh = slot.is_none();
                if fresh {
                    let buffers = buffer_names(&spec)
                        .iter()
                        .map(|_| p.f_zeros_like())
                        .collect::<Result<_, _>>()?;
                    *slot = Some(ParamState { step: 0, buffers });
                }
                let Some(st) = slot.as_mut() else {
                    continue;
                };
                st.step += 1;
                update(&spec, lr, p, grad, st, fresh)?;
            }
            self.steps += 1;
            Ok(())
        })
    }

    /// Named state tensors, enough to resume bit for bit: `step` (calls of `step`), and for
    /// each parameter `i` that has had a gradient `param{i}.step` and its buffers
    /// (`param{i}.exp_avg`, …). Counts are 0-dim f64 tensors. All are copies on the CPU,
    /// so later steps do not change them.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let count = |n: u64| Tensor::scalar_tensor(n as f64, (Kind::Double, Device::Cpu));
        let names = buffer_names(&self.spec);
        let mut out = vec![(STEP.to_string(), count(self.steps))];
        for (i, st) in self.state.iter().enumerate() {
            let Some(st) = st else { continue };
            out.push((format!("param{i}.step"), count(st.step)));
            for (name, b) in names.iter().zip(&st.buffers) {
                let copy = b.detach().to_device_(Device::Cpu, b.kind(), false, true);
                out.push((format!("param{i}.{name}"), copy));
            }
        }
        out
    }

    /// Restores state produced by `state()` of an optimizer built from the same spec and
    /// parameters (in any order of entries; the tensors may be on any device). Checks every
    /// entry before changing anything: on error the optimizer is as it was.
    pub fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<(), TchError> {
        let names = buffer_names(&self.spec);
        let mut steps = None;
        // Per parameter: its step count and its buffers, by position in `names`.
        let mut found: Vec<(Option<u64>, Vec<Option<&Tensor>>)> = self
            .params
            .iter()
            .map(|_| (None, vec![None; names.len()]))
            .collect();
        for (name, t) in state {
            let duplicate = || TchError::FileFormat(format!("{name} appears twice in {STATE}"));
            if name == STEP {
                if steps.replace(count_of(name, t)?).is_some() {
                    return Err(duplicate());
                }
                continue;
            }
            let unknown = || {
                TchError::FileFormat(format!(
                    "{name} is not part of a {} optimizer's state for {} parameters",
                    self.spec.name(),
                    self.params.len()
                ))
            };
            let (i, field) = name
                .strip_prefix("param")
                .and_then(|rest| rest.split_once('.'))
                .and_then(|(i, field)| Some((i.parse::<usize>().ok()?, field)))
                .filter(|(i, field)| *i < self.params.len() && *name == format!("param{i}.{field}"))
                .ok_or_else(unknown)?;
            let (step, buffers) = &mut found[i];
            if field == STEP {
                if step.replace(count_of(name, t)?).is_some() {
                    return Err(duplicate());
                }
                continue;
            }
            let k = names.iter().position(|n| *n == field).ok_or_else(unknown)?;
            let want = self.params[i].size();
            if t.size() != want {
                return Err(TchError::Shape(format!(
                    "{name} has shape {:?} but parameter {i} has shape {want:?}",
                    t.size()
                )));
            }
            if buffers[k].replace(t).is_some() {
                return Err(duplicate());
            }
        }
        let steps = steps.ok_or_else(|| TchError::TensorNameNotFound(STEP.into(), STATE.into()))?;
        let mut loaded = Vec::with_capacity(self.params.len());
        for (i, (p, (step, buffers))) in self.params.iter().zip(found).enumerate() {
            let missing = |field: &str| {
                TchError::TensorNameNotFound(format!("param{i}.{field}"), STATE.into())
            };
            let Some(step) = step else {
                match buffers.iter().position(Option::is_some) {
                    Some(_) => return Err(missing(STEP)),
                    None => {
                        loaded.push(None);
                        continue;
                    }
                }
            };
            let buffers = buffers
                .into_iter()
                .zip(names)
                .map(|(t, field)| {
                    let t = t.ok_or_else(|| missing(field))?;
                    let mut b = p.f_zeros_like()?;
                    tch::no_grad(|| b.f_copy_(t))?;
                    Ok(b)
                })
                .collect::<Result<_, TchError>>()?;
            loaded.push(Some(ParamState { step, buffers }));
        }
        self.steps = steps;
        self.state = loaded;
        Ok(())
    }
}

/// A step count stored as a one-element tensor.
fn count_of(name: &str, t: &Tensor) -> Result<u64, TchError> {
    let bad = |why: String| TchError::FileFormat(format!("{name}: {why}"));
    if t.numel() != 1 {
        return Err(bad(format!(
            "a count needs one element, not shape {:?}",
            t.size()
        )));
    }
    let v = t.f_reshape([-1])?.f_double_value(&[0])?;
    if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < 2f64.powi(53) {
        Ok(v as u64)
    } else {
        Err(bad(format!("{v} is not a count")))
    }
}

/// `grad + p * wd`, torch.optim's L2 weight decay.
fn decayed(grad: Tensor, p: &Tensor, weight_decay: f64) -> Result<Tensor, TchError> {
    if weight_decay == 0.0 {
        Ok(grad)
    } else {
        grad.f_add(&p.f_mul_scalar(weight_decay)?)
    }
}

/// `t.addcmul_(x, x, value=v)`.
fn add_squared(t: &mut Tensor, x: &Tensor, v: f64) -> Result<(), TchError> {
    let _ = t.f_addcmul_(&x.f_mul_scalar(v)?, x)?;
    Ok(())
}

/// One parameter's update; `st.step` already counts it, `fresh` says it is the first.
fn update(
    spec: &OptimizerSpec,
    lr: f64,
    p: &mut Tensor,
    grad: Tensor,
    st: &mut ParamState,
    fresh: bool,
) -> Result<(), TchError> {
    match *spec {
        OptimizerSpec::Sgd {
            momentum,
            nesterov,
            weight_decay,
        } => {
            let mut grad = decayed(grad, p, weight_decay)?;
            if momentum != 0.0 {
                let buf = &mut st.buffers[0];
                if fresh {
                    buf.f_copy_(&grad)?;
                } else {
                    let _ = buf.f_mul_scalar_(momentum)?;
                    let _ = buf.f_add_(&grad)?;
                }
                grad = if nesterov {
                    grad.f_add(&buf.f_mul_scalar(momentum)?)?
                } else {
                    buf.shallow_clone()
                };
            }
            let _ = p.f_add_(&grad.f_mul_scalar(-lr)?)?;
        }
        OptimizerSpec::Adam {
            beta1,
            beta2,
            eps,
            weight_decay,
            decoupled,
        } => {
            let mut grad = grad;
            if weight_decay != 0.0 {
                if decoupled {
                    let _ = p.f_mul_scalar_(1.0 - lr * weight_decay)?;
                } else {
                    grad = decayed(grad, p, weight_decay)?;
                }
            }
            let [exp_avg, exp_avg_sq] = &mut st.buffers[..] else {
                unreachable!("Adam keeps two buffers")
            };
            let _ = exp_avg.f_lerp_(&grad, 1.0 - beta1)?;
            let _ = exp_avg_sq.f_mul_scalar_(beta2)?;
            add_squared(exp_avg_sq, &grad, 1.0 - beta2)?;
            // As torch.optim: the step count as f64, and `** 0.5` (pow, not sqrt).
            let step = st.step as f64;
            let bias_correction1 = 1.0 - beta1.powf(step);
            let bias_correction2 = 1.0 - beta2.powf(step);
            let step_size = lr / bias_correction1;
            let mut denom = exp_avg_sq
                .f_sqrt()?
                .f_div_scalar(bias_correction2.powf(0.5))?;
            let _ = denom.f_add_scalar_(eps)?;
            let _ = p.f_addcdiv_(&exp_avg.f_mul_scalar(-step_size)?, &denom)?;
        }
        OptimizerSpec::RmsProp {
            alpha,
            eps,
            momentum,
            weight_decay,
        } => {
            let grad = decayed(grad, p, weight_decay)?;
            let square_avg = &mut st.buffers[0];
            let _ = square_avg.f_mul_scalar_(alpha)?;
            add_squared(square_avg, &grad, 1.0 - alpha)?;
            let mut avg = square_avg.f_sqrt()?;
            let _ = avg.f_add_scalar_(eps)?;
            if momentum > 0.0 {
                let buf = &mut st.buffers[1];
                let _ = buf.f_mul_scalar_(momentum)?;
                let _ = buf.f_addcdiv_(&grad, &avg)?;
                let _ = p.f_add_(&buf.f_mul_scalar(-lr)?)?;
            } else {
                let _ = p.f_addcdiv_(&grad.f_mul_scalar(-lr)?, &avg)?;
            }
        }
        OptimizerSpec::AdaDelta {
            rho,
            eps,
            weight_decay,
        } => {
            let grad = decayed(grad, p, weight_decay)?;
            let [square_avg, acc_delta] = &mut st.buffers[..] else {
                unreachable!("AdaDelta keeps two buffers")
            };
            let _ = square_avg.f_mul_scalar_(rho)?;
            add_squared(square_avg, &grad, 1.0 - rho)?;
            let std = square_avg.f_add_scalar(eps)?.f_sqrt_()?;
            let mut delta = acc_delta.f_add_scalar(eps)?.f_sqrt_()?;
            let _ = delta.f_div_(&std)?;
            let _ = delta.f_mul_(&grad)?;
            let _ = acc_delta.f_mul_scalar_(rho)?;
            add_squared(acc_delta, &delta, 1.0 - rho)?;
            let _ = p.f_add_(&delta.f_mul_scalar(-lr)?)?;
        }
    }
    Ok(())
}

/// Zeiler's AdaDelta on its own: an [`Optimizer`] for `OptimizerSpec::AdaDelta`.
pub struct AdaDelta(Optimizer);

impl AdaDelta {
    pub fn new(params: Vec<Tensor>, lr: f64, rho: f64, eps: f64, weight_decay: f64) -> Self {
        let spec = OptimizerSpec::AdaDelta {
            rho,
            eps,
            weight_decay,
        };
        Self(Optimizer::from_params(&spec, params, lr))
    }

    pub fn zero_grad(&mut self) {
        self.0.zero_grad();
    }

    pub fn step(&mut self) -> Result<(), TchError> {
        self.0.step()
    }
}

impl From<AdaDelta> for Optimizer {
    fn from(o: AdaDelta) -> Self {
        o.0
    }
}
