//! The networks: the built-in MLP/CNN, and [`Network`], which is that or a user's
//! TorchScript module. The built-in network's weights are drawn from the job's own seeded
//! generator (PyTorch's default `nn.Linear` init), and dropout masks too, so a job is
//! reproducible even when other jobs share libtorch's global generator.

use std::cell::RefCell;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

use super::EngineError;
use super::script::ScriptModule;
use gradstream_domain::{Activation, CnnSpec, ConvBlock, MlpSpec, Pool};

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
        Self::with_shape(p, fan_in, &[fan_out, fan_in], rng)
    }

    /// A weight of `shape` (`[out, …]`) and a bias of `out`, both uniform in
    /// ±1/sqrt(fan_in): PyTorch's default for nn.Linear and nn.Conv2d alike.
    fn with_shape(p: nn::Path, fan_in: i64, shape: &[i64], rng: &mut ChaCha8Rng) -> Self {
        let bound = 1.0 / (fan_in as f32).sqrt();
        let mut uniform = |n: i64| -> Tensor {
            let v: Vec<f32> = (0..n).map(|_| rng.random_range(-bound..bound)).collect();
            Tensor::from_slice(&v)
        };
        let w = uniform(shape.iter().product()).view(shape);
        let b = uniform(shape[0]);
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

/// Convolution → [batch norm] → activation → [pooling].
struct Conv {
    conv: Dense,
    spec: ConvBlock,
    norm: Option<nn::BatchNorm>,
}

impl Conv {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let s = i64::from(self.spec.stride);
        let p = i64::from(self.spec.padding);
        let mut h = x.conv2d(
            &self.conv.weight,
            Some(&self.conv.bias),
            [s, s],
            [p, p],
            [1, 1],
            1,
        );
        if let Some(bn) = &self.norm {
            h = bn.forward_t(&h, train);
        }
        h = activate(&h, self.spec.activation);
        match self.spec.pool {
            Pool::None => h,
            Pool::Max(n) => {
                let n = i64::from(n);
                h.max_pool2d([n, n], [n, n], [0, 0], [1, 1], false)
            }
            Pool::Avg(n) => {
                let n = i64::from(n);
                h.avg_pool2d([n, n], [n, n], [0, 0], false, true, None::<i64>)
            }
        }
    }
}

/// PyTorch's batch norm: scale initialized to ones (tch's default is uniform).
fn batch_norm_config() -> nn::BatchNormConfig {
    nn::BatchNormConfig {
        ws_init: nn::Init::Const(1.0),
        bs_init: nn::Init::Const(0.0),
        eps: BN_EPS,
        momentum: BN_MOMENTUM,
        ..Default::default()
    }
}

/// Linear → [BatchNorm] → activation → [Dropout], repeated, then a linear head (logits);
/// for a CNN, convolution blocks first over the input read as an image.
pub struct Mlp {
    /// The CNN's input shape (channels, height, width), its blocks, and whether the map is
    /// averaged per channel (else flattened) before the dense layers.
    image: Option<([i64; 3], Vec<Conv>, bool)>,
    hidden: Vec<Hidden>,
    head: Dense,
    activation: Activation,
    dropout: f64,
    /// Behind a `RefCell` so that one forward pass serves training (which draws masks) and
    /// the diagnostics' layer outputs (which only read).
    dropout_rng: RefCell<ChaCha8Rng>,
}

impl Mlp {
    pub fn new(vs: &nn::Path, spec: &MlpSpec, inputs: i64, classes: i64, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Self::dense(vs, spec, inputs, classes, seed, &mut rng, None)
    }

    /// A CNN: its convolution blocks, then `cnn.dense`.
    pub fn new_cnn(vs: &nn::Path, cnn: &CnnSpec, classes: i64, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut ch = i64::from(cnn.input[0]);
        let mut convs = Vec::with_capacity(cnn.blocks.len());
        for (i, b) in cnn.blocks.iter().enumerate() {
            let p = vs / format!("conv{i}");
            let (out, k) = (i64::from(b.channels), i64::from(b.kernel));
            let conv = Dense::with_shape(&p / "conv", ch * k * k, &[out, ch, k, k], &mut rng);
            let norm = b
                .batch_norm
                .then(|| nn::batch_norm2d(&p / "batch_norm", out, batch_norm_config()));
            convs.push(Conv {
                conv,
                spec: *b,
                norm,
            });
            ch = out;
        }
        let image = (cnn.input.map(i64::from), convs, cnn.global_average_pool);
        let flat = cnn.flat_features() as i64;
        Self::dense(vs, &cnn.dense, flat, classes, seed, &mut rng, Some(image))
    }

    fn dense(
        vs: &nn::Path,
        spec: &MlpSpec,
        inputs: i64,
        classes: i64,
        seed: u64,
        rng: &mut ChaCha8Rng,
        image: Option<([i64; 3], Vec<Conv>, bool)>,
    ) -> Self {
        let mut fan_in = inputs;
        let mut hidden = Vec::new();
        for (i, &w) in spec.hidden_layers.iter().enumerate() {
            let p = vs / format!("hidden{i}");
            let dense = Dense::new(&p / "linear", fan_in, i64::from(w), rng);
            let norm = spec
                .batch_norm
                .then(|| nn::batch_norm1d(&p / "batch_norm", i64::from(w), batch_norm_config()));
            hidden.push(Hidden { dense, norm });
            fan_in = i64::from(w);
        }
        let head = Dense::new(vs / "head", fan_in, classes, rng);
        Self {
            image,
            hidden,
            head,
            activation: spec.activation,
            dropout: spec.dropout,
            dropout_rng: RefCell::new(ChaCha8Rng::seed_from_u64(seed ^ 0xD50F)),
        }
    }

    /// Position of the dropout generator, for checkpoints.
    pub fn dropout_word_pos(&self) -> u128 {
        self.dropout_rng.borrow().get_word_pos()
    }

    pub fn set_dropout_word_pos(&mut self, pos: u128) {
        self.dropout_rng.get_mut().set_word_pos(pos);
    }

    /// Logits. `train` selects batch statistics and dropout; evaluation uses running
    /// statistics and no dropout.
    pub fn forward_t(&mut self, x: &Tensor, train: bool) -> Tensor {
        self.forward_tapped(x, train, None)
    }
}

impl Mlp {
    /// The forward pass; with `tap`, each layer's output is recorded under its name
    /// (`conv<i>` after pooling, `hidden<i>` after the activation, `head`).
    fn forward_tapped(
        &self,
        x: &Tensor,
        train: bool,
        mut tap: Option<&mut Vec<(String, Tensor)>>,
    ) -> Tensor {
        let mut h = match &self.image {
            None => x.shallow_clone(),
            Some(([c, hh, w], convs, gap)) => {
                let mut m = x.view([-1, *c, *hh, *w]);
                for (i, conv) in convs.iter().enumerate() {
                    m = conv.forward_t(&m, train);
                    if let Some(out) = tap.as_deref_mut() {
                        out.push((format!("conv{i}"), m.shallow_clone()));
                    }
                }
                if *gap {
                    m.mean_dim(&[2i64, 3][..], false, Kind::Float)
                } else {
                    m.flatten(1, -1)
                }
            }
        };
        for (i, layer) in self.hidden.iter().enumerate() {
            h = layer.dense.forward(&h);
            if let Some(bn) = &layer.norm {
                h = bn.forward_t(&h, train);
            }
            h = activate(&h, self.activation);
            if let Some(out) = tap.as_deref_mut() {
                out.push((format!("hidden{i}"), h.shallow_clone()));
            }
            if train && self.dropout > 0.0 {
                h = dropout(&h, self.dropout, &mut self.dropout_rng.borrow_mut());
            }
        }
        let logits = self.head.forward(&h);
        if let Some(out) = tap {
            out.push(("head".to_string(), logits.shallow_clone()));
        }
        logits
    }

    fn convs(&self) -> &[Conv] {
        self.image.as_ref().map_or(&[][..], |(_, c, _)| c)
    }

    /// The activation of each layer of `layer_outputs`, in order (`None` for the head).
    pub fn layer_activations(&self) -> Vec<Option<Activation>> {
        self.convs()
            .iter()
            .map(|c| Some(c.spec.activation))
            .chain(self.hidden.iter().map(|_| Some(self.activation)))
            .chain(std::iter::once(None))
            .collect()
    }

    /// Each layer's weight matrix by layer name (`hidden0`…, `head`), sharing storage.
    pub fn layer_weights(&self) -> Vec<(String, Tensor)> {
        self.convs()
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("conv{i}"), c.conv.weight.shallow_clone()))
            .chain(
                self.hidden
                    .iter()
                    .enumerate()
                    .map(|(i, l)| (format!("hidden{i}"), l.dense.weight.shallow_clone())),
            )
            .chain(std::iter::once((
                "head".to_string(),
                self.head.weight.shallow_clone(),
            )))
            .collect()
    }

    /// Each layer's outputs in evaluation mode: hidden layers after their activation, then
    /// the head's logits.
    pub fn layer_outputs(&self, x: &Tensor) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(self.convs().len() + self.hidden.len() + 1);
        let _ = self.forward_tapped(x, false, Some(&mut out));
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
    Unflatten {
        dim: i64,
        unflattened_size: [i64; 3],
    },
    Conv2d {
        in_channels: i64,
        out_channels: i64,
        kernel_size: i64,
        stride: i64,
        padding: i64,
    },
    BatchNorm2d {
        num_features: i64,
        eps: f64,
        momentum: f64,
    },
    MaxPool2d {
        kernel_size: i64,
    },
    AvgPool2d {
        kernel_size: i64,
    },
    AdaptiveAvgPool2d {
        output_size: i64,
    },
    Flatten,
}

fn torch_activation(a: Activation) -> TorchLayer {
    match a {
        Activation::Relu => TorchLayer::ReLU,
        Activation::Tanh => TorchLayer::Tanh,
        Activation::Sigmoid => TorchLayer::Sigmoid,
        Activation::LeakyRelu => TorchLayer::LeakyReLU {
            negative_slope: 0.01,
        },
        Activation::Gelu => TorchLayer::GELU,
    }
}

impl Mlp {
    /// The model as a PyTorch `nn.Sequential`: its layers in order and its `state_dict`
    /// (names like `0.weight`, `1.running_mean`), CPU copies. `steps` becomes the batch
    /// norms' `num_batches_tracked`.
    pub fn sequential(&self, steps: i64) -> (Vec<TorchLayer>, Vec<(String, Tensor)>) {
        let copy = |t: &Tensor| t.detach().to_device(tch::Device::Cpu).copy();
        let mut layers = Vec::new();
        let mut state = Vec::new();
        let linear =
            |layers: &mut Vec<TorchLayer>, state: &mut Vec<(String, Tensor)>, d: &Dense| {
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
        if let Some((shape, convs, gap)) = &self.image {
            layers.push(TorchLayer::Unflatten {
                dim: 1,
                unflattened_size: *shape,
            });
            for c in convs {
                let idx = layers.len();
                let size = c.conv.weight.size();
                state.push((format!("{idx}.weight"), copy(&c.conv.weight)));
                state.push((format!("{idx}.bias"), copy(&c.conv.bias)));
                layers.push(TorchLayer::Conv2d {
                    in_channels: size[1],
                    out_channels: size[0],
                    kernel_size: size[2],
                    stride: i64::from(c.spec.stride),
                    padding: i64::from(c.spec.padding),
                });
                if let Some(bn) = &c.norm {
                    norms.push((layers.len(), bn));
                    layers.push(TorchLayer::BatchNorm2d {
                        num_features: size[0],
                        eps: BN_EPS,
                        momentum: BN_MOMENTUM,
                    });
                }
                layers.push(torch_activation(c.spec.activation));
                match c.spec.pool {
                    Pool::None => {}
                    Pool::Max(n) => layers.push(TorchLayer::MaxPool2d {
                        kernel_size: i64::from(n),
                    }),
                    Pool::Avg(n) => layers.push(TorchLayer::AvgPool2d {
                        kernel_size: i64::from(n),
                    }),
                }
            }
            if *gap {
                layers.push(TorchLayer::AdaptiveAvgPool2d { output_size: 1 });
            }
            layers.push(TorchLayer::Flatten);
        }
        for layer in &self.hidden {
            linear(&mut layers, &mut state, &layer.dense);
            if let Some(bn) = &layer.norm {
                norms.push((layers.len(), bn));
                layers.push(TorchLayer::BatchNorm1d {
                    num_features: bn.running_mean.size()[0],
                    eps: BN_EPS,
                    momentum: BN_MOMENTUM,
                });
            }
            layers.push(torch_activation(self.activation));
            if self.dropout > 0.0 {
                layers.push(TorchLayer::Dropout { p: self.dropout });
            }
        }
        linear(&mut layers, &mut state, &self.head);
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

/// The model a job trains: a built-in network, or a user's TorchScript module.
pub enum Network {
    Builtin(Box<Mlp>),
    Script(ScriptModule),
}

impl Network {
    /// Logits. `train` selects batch statistics and dropout; evaluation uses running
    /// statistics and no dropout.
    pub fn forward_t(&mut self, x: &Tensor, train: bool) -> Result<Tensor, EngineError> {
        match self {
            Self::Builtin(m) => Ok(m.forward_t(x, train)),
            Self::Script(s) => s.forward_t(x, train),
        }
    }

    /// Position of the dropout generator, for checkpoints (a TorchScript module draws from
    /// libtorch's generator: 0).
    pub fn dropout_word_pos(&self) -> u128 {
        match self {
            Self::Builtin(m) => m.dropout_word_pos(),
            Self::Script(_) => 0,
        }
    }

    pub fn set_dropout_word_pos(&mut self, pos: u128) {
        if let Self::Builtin(m) = self {
            m.set_dropout_word_pos(pos);
        }
    }

    /// Each layer's weight by layer name, sharing storage: a TorchScript module's
    /// parameters of two or more dimensions.
    pub fn layer_weights(&self) -> Vec<(String, Tensor)> {
        match self {
            Self::Builtin(m) => m.layer_weights(),
            Self::Script(s) => s.layer_weights(),
        }
    }

    /// Each layer's outputs in evaluation mode, by layer name (none for a TorchScript
    /// module, whose inner outputs are not visible).
    pub fn layer_outputs(&self, x: &Tensor) -> Vec<(String, Tensor)> {
        match self {
            Self::Builtin(m) => m.layer_outputs(x),
            Self::Script(_) => Vec::new(),
        }
    }

    /// The activation after each layer of `layer_weights` (`None` for the head and for
    /// a TorchScript module's layers).
    pub fn layer_activations(&self) -> Vec<Option<Activation>> {
        match self {
            Self::Builtin(m) => m.layer_activations(),
            Self::Script(s) => vec![None; s.layer_weights().len()],
        }
    }

    /// What a checkpoint needs besides the variables: a TorchScript module's saved bytes.
    pub fn checkpoint_entry(&self) -> Result<Option<(String, Tensor)>, EngineError> {
        match self {
            Self::Builtin(_) => Ok(None),
            Self::Script(s) => s.checkpoint_entry().map(Some),
        }
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
    let mask = to_device_async(
        Tensor::from_slice(&mask).view(x.size().as_slice()),
        x.device(),
    );
    x * mask
}

/// `t` (in host memory) on `device`, without the host waiting: on an accelerator the copy
/// goes through pinned memory and is queued on the device's stream (a copy from pageable
/// memory would wait for the device). On the CPU, `t` itself.
fn to_device_async(t: Tensor, device: Device) -> Tensor {
    match device {
        Device::Cpu => t,
        d => t.pin_memory(d).to_device_(d, t.kind(), true, false),
    }
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
