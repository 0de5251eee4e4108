//! Optimizers with their state here rather than in tch's `nn::Optimizer`, which keeps it in
//! C++ where a checkpoint cannot reach it. Each matches its `torch.optim` class step for
//! step (maximize=False, otherwise that class's defaults):
//!
//! - SGD: `torch.optim.SGD(fused=True)` with dampening 0; momentum buffer = the first
//!   gradient. One fused multi-tensor kernel call per step (`fused.rs`).
//! - Adam: `torch.optim.Adam(fused=True)` (amsgrad off), weight decay as L2 added to the
//!   gradient. One fused call per step.
//! - AdamW: `torch.optim.AdamW(fused=True)` (amsgrad off), decoupled weight decay.
//! - RMSprop: `torch.optim.RMSprop` (not centered; foreach=False): written out here.
//! - AdaDelta: `torch.optim.Adadelta` (foreach=False): written out here (tch has none).
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

use crate::fused;

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
    /// Adam's: `step` as the 0-dim float32 tensor on the parameter's device that the fused
    /// kernel reads (and advances), as torch.optim keeps it.
    count: Option<Tensor>,
}

impl ParamState {
    /// The state of `p` after `step` updates, with `buffers` (zeros when `None`).
    fn new(
        spec: &OptimizerSpec,
        p: &Tensor,
        step: u64,
        buffers: Option<Vec<Tensor>>,
    ) -> Result<Self, TchError> {
        let buffers = match buffers {
            Some(b) => b,
            None => buffer_names(spec)
                .iter()
                .map(|_| p.f_zeros_like())
                .collect::<Result<_, _>>()?,
        };
        let count = matches!(spec, OptimizerSpec::Adam { .. })
            .then(|| Tensor::f_scalar_tensor(step as f64, (Kind::Float, p.device())))
            .transpose()?;
        Ok(Self {
            step,
            buffers,
            count,
        })
    }
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

    /// One update of every parameter that has a gradient: one fused call for SGD and
    /// Adam, one parameter after the other for the others.
    pub fn step(&mut self) -> Result<(), TchError> {
        let spec = self.spec;
        let lr = self.lr;
        tch::no_grad(|| {
            // The parameters with a gradient: (index, gradient, whether it is the first).
            let mut live = Vec::with_capacity(self.params.len());
            for (i, (p, slot)) in self.params.iter().zip(&mut self.state).enumerate() {
                let grad = p.grad();
                if !grad.defined() {
                    continue;
                }
                let fresh = slot.is_none();
                let st = match slot {
                    Some(st) => st,
                    None => slot.insert(ParamState::new(&spec, p, 0, None)?),
                };
                st.step += 1;
                live.push((i, grad, fresh));
            }
            match spec {
                OptimizerSpec::Sgd { .. } => self.fused_sgd(lr, &live)?,
                OptimizerSpec::Adam { .. } => self.fused_adam(lr, &live)?,
                OptimizerSpec::RmsProp { .. } | OptimizerSpec::AdaDelta { .. } => {
                    for (i, grad, _) in live {
                        let st = self.state[i].as_mut().expect("made above");
                        update(&spec, lr, &mut self.params[i], grad, st)?;
                    }
                }
            }
            self.steps += 1;
            Ok(())
        })
    }

    /// The state of parameter `i`, which has had a gradient.
    fn made(&self, i: usize) -> &ParamState {
        self.state[i]
            .as_ref()
            .expect("a parameter with a gradient has its state")
    }

    fn fused_adam(&self, lr: f64, live: &[(usize, Tensor, bool)]) -> Result<(), TchError> {
        let OptimizerSpec::Adam {
            beta1,
            beta2,
            eps,
            weight_decay,
            decoupled,
        } = self.spec
        else {
            return Ok(());
        };
        let mut s = fused::AdamStep {
            params: Vec::with_capacity(live.len()),
            grads: Vec::with_capacity(live.len()),
            exp_avgs: Vec::with_capacity(live.len()),
            exp_avg_sqs: Vec::with_capacity(live.len()),
            steps: Vec::with_capacity(live.len()),
        };
        for (i, grad, _) in live {
            let st = self.made(*i);
            let [exp_avg, exp_avg_sq] = &st.buffers[..] else {
                unreachable!("Adam keeps two buffers")
            };
            s.params.push(&self.params[*i]);
            s.grads.push(grad);
            s.exp_avgs.push(exp_avg);
            s.exp_avg_sqs.push(exp_avg_sq);
            s.steps
                .push(st.count.as_ref().expect("Adam's state has its count"));
        }
        fused::adam(&s, lr, beta1, beta2, weight_decay, eps, decoupled)
    }

    /// Fused SGD: the parameters whose momentum buffers are new in one call (torch.optim
    /// starts a buffer as the gradient), the others in another.
    fn fused_sgd(&self, lr: f64, live: &[(usize, Tensor, bool)]) -> Result<(), TchError> {
        let OptimizerSpec::Sgd {
            momentum,
            nesterov,
            weight_decay,
        } = self.spec
        else {
            return Ok(());
        };
        for first in [true, false] {
            let group: Vec<&(usize, Tensor, bool)> = live
                .iter()
                .filter(|(_, _, fresh)| *fresh == first)
                .collect();
            if group.is_empty() {
                continue;
            }
            let params: Vec<&Tensor> = group.iter().map(|(i, _, _)| &self.params[*i]).collect();
            let grads: Vec<&Tensor> = group.iter().map(|(_, g, _)| g).collect();
            let buffers: Vec<&Tensor> = group
                .iter()
                .filter_map(|(i, _, _)| self.made(*i).buffers.first())
                .collect();
            fused::sgd(
                &params,
                &grads,
                &buffers,
                lr,
                momentum,
                weight_decay,
                nesterov,
                first,
            )?;
        }
        Ok(())
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
            loaded.push(Some(ParamState::new(&self.spec, p, step, Some(buffers))?));
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

/// One parameter's update by an optimizer written out here (RMSprop, AdaDelta); `st.step`
/// already counts it.
fn update(
    spec: &OptimizerSpec,
    lr: f64,
    p: &mut Tensor,
    grad: Tensor,
    st: &mut ParamState,
) -> Result<(), TchError> {
    match *spec {
        OptimizerSpec::Sgd { .. } | OptimizerSpec::Adam { .. } => {
            return Err(TchError::Kind(format!(
                "{} takes the fused step, not a per-parameter one",
                spec.name()
            )));
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
