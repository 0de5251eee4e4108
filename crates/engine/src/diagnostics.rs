//! Seeing inside training: per-layer diagnostics at each epoch end, gradient clipping, and
//! early detection of a loss that explodes.

use tch::{Kind, Tensor, nn};

use super::{EngineError, Network};
use gradstream_domain::{Activation, LayerDiagnostics};

/// Rows of the fixed sample the diagnostics are computed on.
pub const SAMPLE_ROWS: i64 = 256;
/// An output this close to a sigmoid's or tanh's bound counts as saturated.
const SATURATION_MARGIN: f64 = 0.01;

/// Per-layer statistics of `model` on `sample` (evaluation mode), with the gradients left
/// by the last optimizer step and the weights from just before it (`before`).
pub fn layer_diagnostics(
    model: &Network,
    sample: &Tensor,
    before: &[(String, Tensor)],
) -> Result<Vec<LayerDiagnostics>, EngineError> {
    let activations = model.layer_activations();
    let weights = model.layer_weights();
    let outputs = tch::no_grad(|| model.layer_outputs(sample));
    let mut out = Vec::with_capacity(weights.len());
    for ((name, w), activation) in weights.iter().zip(&activations) {
        // A TorchScript module's inner outputs are not visible: weights and gradients only.
        let output = outputs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a.f_to_kind(Kind::Double))
            .transpose()?;
        let (mut saturated, mut dead, mut mean, mut std) = (None, None, None, None);
        if let Some(a) = &output {
            mean = Some(a.f_mean(Kind::Double)?.f_double_value(&[])?);
            std = Some(a.f_std(false)?.f_double_value(&[])?);
            saturated = match activation {
                Some(Activation::Tanh) => {
                    Some(fraction(&a.f_abs()?.f_ge(1.0 - SATURATION_MARGIN)?)?)
                }
                Some(Activation::Sigmoid) => Some(fraction(
                    &a.f_le(SATURATION_MARGIN)?
                        .f_logical_or(&a.f_ge(1.0 - SATURATION_MARGIN)?)?,
                )?),
                _ => None,
            };
            // A ReLU unit is dead when it outputs 0 for every row of the sample.
            dead = match activation {
                Some(Activation::Relu) => {
                    let active = a.f_gt(0.0)?.f_any_dim(0, false)?;
                    Some(1.0 - fraction(&active)?)
                }
                _ => None,
            };
        }
        let weight_norm = w.f_norm()?.f_double_value(&[])?;
        let grad = w.grad();
        let gradient_norm = if grad.defined() {
            grad.f_norm()?.f_double_value(&[])?
        } else {
            0.0
        };
        let update_ratio = match before.iter().find(|(n, _)| n == name) {
            Some((_, b)) if weight_norm > 0.0 => {
                w.f_sub(b)?.f_norm()?.f_double_value(&[])?
                    / b.f_norm()?.f_double_value(&[])?.max(f64::MIN_POSITIVE)
            }
            _ => 0.0,
        };
        out.push(LayerDiagnostics {
            name: name.clone(),
            activation_mean: mean,
            activation_std: std,
            saturated_fraction: saturated,
            dead_fraction: dead,
            weight_norm,
            gradient_norm,
            update_ratio,
        });
    }
    Ok(out)
}

/// The share of `true` in a boolean tensor.
fn fraction(mask: &Tensor) -> Result<f64, EngineError> {
    Ok(mask
        .f_to_kind(Kind::Double)?
        .f_mean(Kind::Double)?
        .f_double_value(&[])?)
}

/// Copies of the layer weights, to measure the next step's update.
pub fn weights_before(model: &Network) -> Result<Vec<(String, Tensor)>, EngineError> {
    model
        .layer_weights()
        .into_iter()
        .map(|(n, w)| Ok((n, w.f_detach()?.copy())))
        .collect()
}

/// Scales all gradients so that their total L2 norm is at most `max` (PyTorch's
/// `clip_grad_norm_`: factor `max / (norm + 1e-6)` clamped to 1). Everything stays on the
/// device: nothing is read back on the training step. Returns the norm before clipping.
pub fn clip_grad_norm(vs: &nn::VarStore, max: f64) -> Result<Tensor, EngineError> {
    let grads: Vec<Tensor> = vs
        .trainable_variables()
        .iter()
        .map(|v| v.grad())
        .filter(|g| g.defined())
        .collect();
    let norms = grads
        .iter()
        .map(|g| g.f_norm())
        .collect::<Result<Vec<_>, _>>()?;
    if norms.is_empty() {
        return Ok(Tensor::from(0f32));
    }
    let total = Tensor::f_stack(&norms, 0)?.f_norm()?;
    let factor = total
        .f_add_scalar(1e-6)?
        .f_reciprocal()?
        .f_mul_scalar(max)?
        .f_clamp_max(1.0)?;
    tch::no_grad(|| -> Result<(), EngineError> {
        for g in &grads {
            let _ = g.shallow_clone().f_mul_(&factor)?;
        }
        Ok(())
    })?;
    Ok(total)
}

/// Watches the training loss for an explosion before it becomes NaN: the loss smoothed
/// over about 10 steps rising to more than `FACTOR` times its lowest value so far, and
/// above the loss of guessing (uniform probabilities over the classes). Both must hold:
/// a well-fit model's tiny loss can easily jump tenfold on a noisy batch, but a loss worse
/// than guessing after having been far better is not noise.
pub struct DivergenceWatch {
    smoothed: Option<f64>,
    lowest: f64,
    chance: f64,
}

impl DivergenceWatch {
    pub const FACTOR: f64 = 10.0;
    const SMOOTHING: f64 = 0.9;

    /// `chance`: the loss of uniform probabilities, `ln k` for cross-entropy.
    pub fn new(chance: f64) -> Self {
        Self {
            smoothed: None,
            lowest: f64::INFINITY,
            chance,
        }
    }

    /// The lowest smoothed loss so far.
    pub fn lowest(&self) -> f64 {
        self.lowest
    }

    /// Adds a step's loss; the smoothed loss when it has exploded.
    pub fn exploded(&mut self, loss: f64) -> Option<f64> {
        let s = match self.smoothed {
            None => loss,
            Some(s) => Self::SMOOTHING * s + (1.0 - Self::SMOOTHING) * loss,
        };
        self.smoothed = Some(s);
        self.lowest = self.lowest.min(s);
        (s > Self::FACTOR * self.lowest && s > self.chance).then_some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rising_loss_is_caught_and_noise_is_not() {
        let chance = 2f64.ln();
        let mut w = DivergenceWatch::new(chance);
        // A loss falling with noise never triggers.
        for i in 0..500 {
            let noise = if i % 7 == 0 { 3.0 } else { 1.0 };
            assert!(
                w.exploded(2.0 / (1.0 + i as f64 / 20.0) * noise).is_none(),
                "step {i}"
            );
        }
        // A fitted model's tiny loss jumping tenfold is not an explosion.
        let mut w = DivergenceWatch::new(chance);
        for i in 0..300 {
            let loss = if i < 200 { 0.003 } else { 0.04 };
            assert!(w.exploded(loss).is_none(), "step {i}");
        }
        // Rising tenfold over the low point, and above chance, triggers.
        let mut w = DivergenceWatch::new(chance);
        let mut caught = None;
        for i in 0..200 {
            let loss = if i < 50 {
                1.0
            } else {
                1.0 * 1.2f64.powi(i - 50)
            };
            if let Some(s) = w.exploded(loss) {
                caught = Some((i, s));
                break;
            }
        }
        let (step, smoothed) = caught.expect("caught");
        assert!(smoothed > 10.0 && step < 80, "{step} {smoothed}");
    }
}

#[cfg(test)]
mod layer_tests {
    use super::*;
    use crate::Mlp;
    use gradstream_domain::MlpSpec;
    use tch::Device;

    fn model(activation: Activation) -> (nn::VarStore, Network) {
        let vs = nn::VarStore::new(Device::Cpu);
        let spec = MlpSpec {
            hidden_layers: vec![32],
            activation,
            batch_norm: false,
            dropout: 0.0,
        };
        let m = Mlp::new(&vs.root(), &spec, 4, 2, 3);
        (vs, Network::Builtin(Box::new(m)))
    }

    fn sample() -> Tensor {
        Tensor::randn([64, 4], (Kind::Float, Device::Cpu))
    }

    #[test]
    fn a_network_built_to_saturate_reports_saturation() {
        for activation in [Activation::Tanh, Activation::Sigmoid] {
            let (vs, m) = model(activation);
            let d = layer_diagnostics(&m, &sample(), &[]).unwrap();
            assert!(
                d[0].saturated_fraction.unwrap() < 0.5,
                "{activation:?}: {d:?}"
            );
            // Weights scaled 1000 times push every pre-activation far into the tails.
            tch::no_grad(|| {
                for (_, mut w) in vs.variables() {
                    let _ = w.f_mul_scalar_(1000.0).unwrap();
                }
            });
            let d = layer_diagnostics(&m, &sample(), &[]).unwrap();
            assert!(
                d[0].saturated_fraction.unwrap() > 0.95,
                "{activation:?}: {d:?}"
            );
            assert!(
                d[1].saturated_fraction.is_none(),
                "the head is not saturating"
            );
        }
    }

    #[test]
    fn a_dead_relu_network_reports_dead_units() {
        let (vs, m) = model(Activation::Relu);
        let d = layer_diagnostics(&m, &sample(), &[]).unwrap();
        assert!(d[0].dead_fraction.unwrap() < 0.5, "{d:?}");
        // Biases of -1000 make every hidden unit output 0 for every row.
        tch::no_grad(|| {
            let mut b = vs.variables()["hidden0.linear.bias"].shallow_clone();
            let _ = b.f_fill_(-1000.0).unwrap();
        });
        let d = layer_diagnostics(&m, &sample(), &[]).unwrap();
        assert_eq!(d[0].dead_fraction, Some(1.0));
        assert_eq!(d[0].activation_std, Some(0.0));
    }

    #[test]
    fn clipping_scales_the_gradients_to_the_norm_as_pytorch_does() {
        let (vs, mut m) = model(Activation::Relu);
        let x = sample();
        let loss = m
            .forward_t(&x, true)
            .unwrap()
            .pow_tensor_scalar(2)
            .sum(Kind::Float)
            * 100.0;
        loss.backward();
        let norm = |max: f64| clip_grad_norm(&vs, max).unwrap().double_value(&[]);
        let before = norm(f64::INFINITY);
        assert!(before > 1.0);
        let reported = norm(1.0);
        assert_eq!(reported, before);
        let after = norm(f64::INFINITY);
        // torch: factor max / (norm + 1e-6).
        assert!((after - before / (before + 1e-6)).abs() < 1e-5, "{after}");
    }
}
