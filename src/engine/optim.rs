//! Optimizers: tch's SGD, Adam, AdamW and RMSprop, and a hand-written AdaDelta (tch has
//! none) that matches `torch.optim.Adadelta`.

use tch::{TchError, Tensor, nn};

use crate::domain::OptimizerSpec;

/// Zeiler's AdaDelta, step for step as `torch.optim.Adadelta` (foreach=False).
pub struct AdaDelta {
    params: Vec<Tensor>,
    square_avg: Vec<Tensor>,
    acc_delta: Vec<Tensor>,
    lr: f64,
    rho: f64,
    eps: f64,
    weight_decay: f64,
}

impl AdaDelta {
    pub fn new(params: Vec<Tensor>, lr: f64, rho: f64, eps: f64, weight_decay: f64) -> Self {
        let zeros = |ps: &[Tensor]| ps.iter().map(|p| p.zeros_like().detach()).collect();
        Self {
            square_avg: zeros(&params),
            acc_delta: zeros(&params),
            params,
            lr,
            rho,
            eps,
            weight_decay,
        }
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.zero_grad();
        }
    }

    pub fn step(&mut self) -> Result<(), TchError> {
        tch::no_grad(|| {
            for ((p, sq), acc) in self
                .params
                .iter_mut()
                .zip(&mut self.square_avg)
                .zip(&mut self.acc_delta)
            {
                let mut grad = p.grad();
                if !grad.defined() {
                    continue;
                }
                if self.weight_decay != 0.0 {
                    grad = grad.f_add(&(&*p * self.weight_decay))?;
                }
                // square_avg = rho * square_avg + (1 - rho) * grad²
                let _ = sq.f_mul_scalar_(self.rho)?;
                let _ = sq.f_add_(&(grad.f_square()? * (1.0 - self.rho)))?;
                // delta = sqrt(acc_delta + eps) / sqrt(square_avg + eps) * grad
                let std = (&*sq + self.eps).f_sqrt()?;
                let delta = (&*acc + self.eps).f_sqrt()?.f_div(&std)?.f_mul(&grad)?;
                // acc_delta = rho * acc_delta + (1 - rho) * delta²
                let _ = acc.f_mul_scalar_(self.rho)?;
                let _ = acc.f_add_(&(delta.f_square()? * (1.0 - self.rho)))?;
                let _ = p.f_add_(&(delta * -self.lr))?;
            }
            Ok(())
        })
    }
}

/// Any of the optimizers, behind one interface.
pub enum Optimizer {
    Tch(nn::Optimizer),
    AdaDelta(AdaDelta),
}

impl Optimizer {
    pub fn new(spec: &OptimizerSpec, vs: &nn::VarStore, lr: f64) -> Result<Self, TchError> {
        use nn::OptimizerConfig;
        Ok(match *spec {
            OptimizerSpec::Sgd {
                momentum,
                nesterov,
                weight_decay,
            } => Self::Tch(nn::sgd(momentum, 0.0, weight_decay, nesterov).build(vs, lr)?),
            OptimizerSpec::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
                decoupled: false,
            } => Self::Tch(
                nn::adam(beta1, beta2, weight_decay)
                    .eps(eps)
                    .build(vs, lr)?,
            ),
            OptimizerSpec::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
                decoupled: true,
            } => Self::Tch(
                nn::adamw(beta1, beta2, weight_decay)
                    .eps(eps)
                    .build(vs, lr)?,
            ),
            OptimizerSpec::RmsProp {
                alpha,
                eps,
                momentum,
                weight_decay,
            } => Self::Tch(nn::rms_prop(alpha, eps, weight_decay, momentum, false).build(vs, lr)?),
            OptimizerSpec::AdaDelta {
                rho,
                eps,
                weight_decay,
            } => Self::AdaDelta(AdaDelta::new(
                vs.trainable_variables(),
                lr,
                rho,
                eps,
                weight_decay,
            )),
        })
    }

    pub fn zero_grad(&mut self) {
        match self {
            Self::Tch(o) => o.zero_grad(),
            Self::AdaDelta(o) => o.zero_grad(),
        }
    }

    pub fn step(&mut self) -> Result<(), TchError> {
        match self {
            Self::Tch(o) => {
                o.step();
                Ok(())
            }
            Self::AdaDelta(o) => o.step(),
        }
    }
}
