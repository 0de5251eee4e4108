//! The MLP. Weights are drawn from the job's own seeded generator (PyTorch's default
//! `nn.Linear` init), and dropout masks too, so a job is reproducible even when other jobs
//! share libtorch's global generator.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

use crate::domain::{Activation, MlpSpec};

/// PyTorch's `BatchNorm1d` defaults.
const BN_EPS: f64 = 1e-5;
const BN_MOMENTUM: f64 = 0.1;

struct Dense {
    weight: Tensor,
    bias: Tensor,
}

impl Dense {
    /// `U(-1/sqrt(fan_in), 1/sqrt(fan_in))` for weight and bias, as PyTorch's nn.Linear.
    fn new(p: nn::Path, fan_in: i64, fan_out: i64, rng: &mut ChaCha8Rng) -> Self {
        let bound = 1.0 / (fan_in as f32).sqrt();
        let mut uniform = |n: i64| -> Tensor {
            let v: Vec<f32> = (0..n).map(|_| rng.random_range(-bound..bound)).collect();
            Tensor::from_slice(&v)
        };
        let w = uniform(fan_out * fan_in).view([fan_out, fan_in]);
        let b = uniform(fan_out);
        Self {
            weight: p.var_copy("weight", &w),
            bias: p.var_copy("bias", &b),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, Some(&self.bias))
    }
}

struct Hidden {
    dense: Dense,
    norm: Option<nn::BatchNorm>,
}

/// Linear → [BatchNorm] → activation → [Dropout], repeated, then a linear head (logits).
pub struct Mlp {
    hidden: Vec<Hidden>,
    head: Dense,
    activation: Activation,
    dropout: f64,
    dropout_rng: ChaCha8Rng,
}

impl Mlp {
    pub fn new(vs: &nn::Path, spec: &MlpSpec, inputs: i64, classes: i64, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut fan_in = inputs;
        let mut hidden = Vec::new();
        for (i, &w) in spec.hidden_layers.iter().enumerate() {
            let p = vs / format!("hidden{i}");
            let dense = Dense::new(&p / "linear", fan_in, i64::from(w), &mut rng);
            let norm = spec.batch_norm.then(|| {
                // PyTorch initializes the scale to ones (tch's default is uniform).
                let cfg = nn::BatchNormConfig {
                    ws_init: nn::Init::Const(1.0),
                    bs_init: nn::Init::Const(0.0),
                    eps: BN_EPS,
                    momentum: BN_MOMENTUM,
                    ..Default::default()
                };
                nn::batch_norm1d(&p / "batch_norm", i64::from(w), cfg)
            });
            hidden.push(Hidden { dense, norm });
            fan_in = i64::from(w);
        }
        let head = Dense::new(vs / "head", fan_in, classes, &mut rng);
        Self {
            hidden,
            head,
            activation: spec.activation,
            dropout: spec.dropout,
            dropout_rng: ChaCha8Rng::seed_from_u64(seed ^ 0xD50F),
        }
    }

    /// Position of the dropout generator, for checkpoints.
    pub fn dropout_word_pos(&self) -> u128 {
        self.dropout_rng.get_word_pos()
    }

    pub fn set_dropout_word_pos(&mut self, pos: u128) {
        self.dropout_rng.set_word_pos(pos);
    }

    /// Logits. `train` selects batch statistics and dropout; evaluation uses running
    /// statistics and no dropout.
    pub fn forward_t(&mut self, x: &Tensor, train: bool) -> Tensor {
        let mut h = x.shallow_clone();
        for layer in &self.hidden {
            h = layer.dense.forward(&h);
            if let Some(bn) = &layer.norm {
                h = bn.forward_t(&h, train);
            }
            h = activate(&h, self.activation);
            if train && self.dropout > 0.0 {
                h = dropout(&h, self.dropout, &mut self.dropout_rng);
            }
        }
        self.head.forward(&h)
    }
}

impl Mlp {
    pub fn activation(&self) -> Activation {
        self.activation
    }

    /// Each layer's weight matrix by layer name (`hidden0`…, `head`), sharing storage.
    pub fn layer_weights(&self) -> Vec<(String, Tensor)> {
        self.hidden
            .iter()
            .enumerate()
            .map(|(i, l)| (format!("hidden{i}"), l.dense.weight.shallow_clone()))
            .chain(std::iter::once((
                "head".to_string(),
                self.head.weight.shallow_clone(),
            )))
            .collect()
    }

    /// Each layer's outputs in evaluation mode: hidden layers after their activation, then
    /// the head's logits.
    pub fn layer_outputs(&self, x: &Tensor) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(self.hidden.len() + 1);
        let mut h = x.shallow_clone();
        for (i, layer) in self.hidden.iter().enumerate() {
            h = layer.dense.forward(&h);
            if let Some(bn) = &layer.norm {
                h = bn.forward_t(&h, false);
            }
            h = activate(&h, self.activation);
            out.push((format!("hidden{i}"), h.shallow_clone()));
        }
        out.push(("head".to_string(), self.head.forward(&h)));
        out
    }
}

/// One layer of the equivalent PyTorch `nn.Sequential`, as constructor name and arguments.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "type")]
pub enum TorchLayer {
    Linear {
        in_features: i64,
        out_features: i64,
    },
    BatchNorm1d {
        num_features: i64,
        eps: f64,
        momentum: f64,
    },
    ReLU,
    Tanh,
    Sigmoid,
    LeakyReLU {
        negative_slope: f64,
    },
    GELU,
    Dropout {
        p: f64,
    },
}

impl Mlp {
    /// The model as a PyTorch `nn.Sequential`: its layers in order and its `state_dict`
    /// (names like `0.weight`, `1.running_mean`), CPU copies. `steps` becomes the batch
    /// norms' `num_batches_tracked`.
    pub fn sequential(&self, steps: i64) -> (Vec<TorchLayer>, Vec<(String, Tensor)>) {
        let copy = |t: &Tensor| t.detach().to_device(tch::Device::Cpu).copy();
        let mut layers = Vec::new();
        let mut state = Vec::new();
        let mut linear = |layers: &mut Vec<TorchLayer>, d: &Dense| {
            let idx = layers.len();
            let size = d.weight.size();
            state.push((format!("{idx}.weight"), copy(&d.weight)));
            state.push((format!("{idx}.bias"), copy(&d.bias)));
            layers.push(TorchLayer::Linear {
                in_features: size[1],
                out_features: size[0],
            });
        };
        let mut norms = Vec::new();
        for layer in &self.hidden {
            linear(&mut layers, &layer.dense);
            if let Some(bn) = &layer.norm {
                norms.push((layers.len(), bn));
                layers.push(TorchLayer::BatchNorm1d {
                    num_features: bn.running_mean.size()[0],
                    eps: BN_EPS,
                    momentum: BN_MOMENTUM,
                });
            }
            layers.push(match self.activation {
                Activation::Relu => TorchLayer::ReLU,
                Activation::Tanh => TorchLayer::Tanh,
                Activation::Sigmoid => TorchLayer::Sigmoid,
                Activation::LeakyRelu => TorchLayer::LeakyReLU {
                    negative_slope: 0.01,
                },
                Activation::Gelu => TorchLayer::GELU,
            });
            if self.dropout > 0.0 {
                layers.push(TorchLayer::Dropout { p: self.dropout });
            }
        }
        linear(&mut layers, &self.head);
        for (idx, bn) in norms {
            if let Some(w) = &bn.ws {
                state.push((format!("{idx}.weight"), copy(w)));
            }
            if let Some(b) = &bn.bs {
                state.push((format!("{idx}.bias"), copy(b)));
            }
            state.push((format!("{idx}.running_mean"), copy(&bn.running_mean)));
            state.push((format!("{idx}.running_var"), copy(&bn.running_var)));
            state.push((format!("{idx}.num_batches_tracked"), Tensor::from(steps)));
        }
        state.sort_by(|a, b| a.0.cmp(&b.0));
        (layers, state)
    }
}

fn activate(x: &Tensor, a: Activation) -> Tensor {
    match a {
        Activation::Relu => x.relu(),
        Activation::Tanh => x.tanh(),
        Activation::Sigmoid => x.sigmoid(),
        Activation::LeakyRelu => x.leaky_relu(),
        Activation::Gelu => x.gelu("none"),
    }
}

/// Inverted dropout with a mask from our own generator.
fn dropout(x: &Tensor, p: f64, rng: &mut ChaCha8Rng) -> Tensor {
    let keep = 1.0 - p;
    let n = x.numel();
    let scale = (1.0 / keep) as f32;
    let mask: Vec<f32> = (0..n)
        .map(|_| {
            if rng.random::<f64>() < keep {
                scale
            } else {
                0.0
            }
        })
        .collect();
    let mask = Tensor::from_slice(&mask)
        .view(x.size().as_slice())
        .to_kind(Kind::Float)
        .to_device(x.device());
    x * mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn spec(batch_norm: bool, dropout: f64) -> MlpSpec {
        MlpSpec {
            hidden_layers: vec![8],
            activation: Activation::Relu,
            batch_norm,
            dropout,
        }
    }

    #[test]
    fn batch_norm_uses_batch_stats_in_training_and_running_stats_in_eval() {
        let vs = nn::VarStore::new(Device::Cpu);
        let mut m = Mlp::new(&vs.root(), &spec(true, 0.0), 3, 2, 1);
        let x = Tensor::randn([16, 3], (Kind::Float, Device::Cpu)) * 5.0 + 3.0;
        let bn = m.hidden[0].norm.as_ref().unwrap();
        let before = bn.running_mean.copy();
        // Training mode: the normalized pre-activations have ~zero batch mean.
        let pre = bn.forward_t(&m.hidden[0].dense.forward(&x), true);
        let mean = pre
            .mean_dim(0, false, Kind::Float)
            .abs()
            .max()
            .double_value(&[]);
        assert!(mean < 1e-5, "batch mean after BN in training: {mean}");
        assert!(
            !bn.running_mean.equal(&before),
            "training updates running stats"
        );
        // Evaluation mode: running statistics, which do not change.
        let running = bn.running_mean.copy();
        let a = m.forward_t(&x, false);
        let b = m.forward_t(&x.narrow(0, 0, 4), false);
        assert!(bn_equal(&m, &running));
        // In eval, a sample's output does not depend on the rest of the batch.
        assert!(a.narrow(0, 0, 4).allclose(&b, 1e-6, 1e-6, false));
        // In training it does.
        let c = m.forward_t(&x, true);
        let d = m.forward_t(&x.narrow(0, 0, 4), true);
        assert!(!c.narrow(0, 0, 4).allclose(&d, 1e-4, 1e-4, false));
    }

    fn bn_equal(m: &Mlp, running: &Tensor) -> bool {
        m.hidden[0]
            .norm
            .as_ref()
            .unwrap()
            .running_mean
            .equal(running)
    }

    #[test]
    fn dropout_only_in_training() {
        let vs = nn::VarStore::new(Device::Cpu);
        let mut m = Mlp::new(&vs.root(), &spec(false, 0.5), 3, 2, 1);
        let x = Tensor::randn([32, 3], (Kind::Float, Device::Cpu));
        let e1 = m.forward_t(&x, false);
        let e2 = m.forward_t(&x, false);
        assert!(e1.equal(&e2), "evaluation is deterministic");
        let t1 = m.forward_t(&x, true);
        let t2 = m.forward_t(&x, true);
        assert!(!t1.equal(&t2), "training draws new dropout masks");
    }

    #[test]
    fn same_seed_same_weights() {
        let a = nn::VarStore::new(Device::Cpu);
        let b = nn::VarStore::new(Device::Cpu);
        let mut ma = Mlp::new(&a.root(), &spec(true, 0.0), 4, 3, 9);
        let mut mb = Mlp::new(&b.root(), &spec(true, 0.0), 4, 3, 9);
        let x = Tensor::ones([2, 4], (Kind::Float, Device::Cpu));
        assert!(ma.forward_t(&x, false).equal(&mb.forward_t(&x, false)));
        // 4*8+8 + 8+8 (BN) + 8*3+3
        let params: i64 = a
            .trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum();
        assert_eq!(params, 40 + 16 + 27);
    }
}
