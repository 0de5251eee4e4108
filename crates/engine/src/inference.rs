//! A trained model loaded from a checkpoint: class probabilities for raw feature rows, and
//! the model in the forms PyTorch loads (TorchScript, an `nn.Sequential` state dict).

use tch::{CModule, Device, Kind, Tensor, nn};

use super::ensemble::{mean_softmax, member_model, member_vars, members_in, own_vars};
use super::model::TorchLayer;
use gradstream_domain::Checkpoint;

use super::{EngineError, Network, TrainingState, in_chunks};
use gradstream_domain::{FeatureInfo, JobSpec};

pub struct TrainedModel {
    /// One model, or an ensemble's members (each with the store owning its variables);
    /// the probabilities are the mean of theirs.
    members: Vec<(nn::VarStore, Network)>,
    features: FeatureInfo,
    /// The normalization statistics as `[1, d]` tensors on the model's device (made once:
    /// a tensor built from host memory inside a trace would be recorded as zeros).
    mean: Tensor,
    std: Tensor,
    classes: usize,
    /// Training steps taken when the checkpoint was made.
    global_step: u64,
    device: Device,
}

impl TrainedModel {
    /// The model of `spec` with the variables of checkpoint `c`, frozen, on `device`.
    pub fn load(
        spec: &JobSpec,
        features: &FeatureInfo,
        classes: usize,
        c: &Checkpoint,
        device: Device,
    ) -> Result<Self, EngineError> {
        let c = &TrainingState::from_checkpoint(c)?;
        // An ensemble's checkpoint holds its members (`member<j>.…`); one trained before
        // runs existed holds its last member as its own model, like a lone model's.
        let mut sets = member_vars(c, members_in(c));
        let own = own_vars(c);
        if !own.is_empty() || sets.is_empty() {
            sets.push(own);
        }
        let members = sets
            .iter()
            .map(|vars| {
                let (mut vs, model) = member_model(spec, features.width(), classes, device, vars)?;
                vs.freeze();
                Ok((vs, model))
            })
            .collect::<Result<Vec<_>, EngineError>>()?;
        let d = features.width() as i64;
        let stat = |v: &[f32]| -> Result<Tensor, EngineError> {
            Ok(Tensor::from_slice(v).f_view([1, d])?.f_to_device(device)?)
        };
        Ok(Self {
            members,
            mean: stat(&features.mean)?,
            std: stat(&features.std)?,
            features: features.clone(),
            classes,
            global_step: c.global_step,
            device,
        })
    }

    pub fn width(&self) -> usize {
        self.features.width()
    }

    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Row-major `n x k` class probabilities of `rows` (row-major `n x d` raw values; the
    /// caller has checked the shape and that every value is finite).
    pub fn probabilities(&mut self, rows: &[f32]) -> Result<Vec<f32>, EngineError> {
        let d = self.width();
        let n = rows.len() / d.max(1);
        let x = Tensor::from_slice(rows)
            .f_view([n as i64, d as i64])?
            .f_to_device(self.device)?;
        let x = self.normalize(&x)?;
        let members = &mut self.members;
        let probs = in_chunks(&x, |c| mean_softmax(members.iter_mut().map(|(_, m)| m), c))?;
        let probs = probs.f_to_device(Device::Cpu)?.f_flatten(0, -1)?;
        Ok(Vec::<f32>::try_from(&probs)?)
    }

    /// `(x - mean) / std`, as at training time.
    fn normalize(&self, x: &Tensor) -> Result<Tensor, EngineError> {
        Ok(x.f_sub(&self.mean)?.f_div(&self.std)?)
    }

    /// A TorchScript module (traced): `forward(raw_features [n, d] float32)` returns class
    /// probabilities `[n, k]`, the normalization included. Traced on the CPU.
    pub fn torchscript(&mut self, path: &std::path::Path) -> Result<(), EngineError> {
        if self.device != Device::Cpu {
            return Err(EngineError::Internal(
                "TorchScript export needs the model on the CPU".into(),
            ));
        }
        let example = Tensor::zeros([2, self.width() as i64], (Kind::Float, Device::Cpu));
        let mut failure = None;
        let module = CModule::create_by_tracing(
            "GradstreamClassifier",
            "forward",
            &[example],
            &mut |inputs| {
                let out = self
                    .normalize(&inputs[0])
                    .and_then(|x| mean_softmax(self.members.iter_mut().map(|(_, m)| m), &x));
                match out {
                    Ok(p) => vec![p],
                    Err(e) => {
                        failure = Some(e);
                        vec![inputs[0].shallow_clone()]
                    }
                }
            },
        )?;
        if let Some(e) = failure {
            return Err(e);
        }
        module.save(path)?;
        Ok(())
    }

    /// Members in the model (1 unless it is an ensemble).
    pub fn members(&self) -> usize {
        self.members.len()
    }

    /// The model in the form PyTorch rebuilds it from: for built-in models the equivalent
    /// `nn.Sequential` (layers and state dict); for an ensemble, the state dict of an
    /// `nn.ModuleList` of such `Sequential`s (names prefixed `<member>.`). For a
    /// TorchScript model, its parameters by dotted name (prefixed `<member>.` likewise) and
    /// each member's trained module as `torch.jit.save` writes it.
    pub fn portable(&self) -> Result<Portable, EngineError> {
        let steps = self.global_step as i64;
        let prefix = |j: usize, n: String| {
            if self.members.len() == 1 {
                n
            } else {
                format!("{j}.{n}")
            }
        };
        let mut layers = Vec::new();
        let mut state = Vec::new();
        let mut modules = Vec::new();
        for (j, (_, m)) in self.members.iter().enumerate() {
            match m {
                Network::Builtin(m) => {
                    let (l, s) = m.sequential(steps);
                    layers = l;
                    state.extend(s.into_iter().map(|(n, t)| (prefix(j, n), t)));
                }
                Network::Script(s) => {
                    let params = s.parameters()?;
                    state.extend(params.into_iter().map(|(n, t)| (prefix(j, n), t)));
                    modules.push(s.to_bytes()?);
                }
            }
        }
        Ok(if modules.is_empty() {
            Portable::Sequential { layers, state }
        } else {
            Portable::Script { state, modules }
        })
    }
}

/// A trained model as PyTorch rebuilds it.
pub enum Portable {
    /// Built-in models: `nn.Sequential` layers and the state dict.
    Sequential {
        layers: Vec<TorchLayer>,
        state: Vec<(String, Tensor)>,
    },
    /// TorchScript models: the parameters (buffers are only in the modules) and each
    /// member's trained module.
    Script {
        state: Vec<(String, Tensor)>,
        modules: Vec<Vec<u8>>,
    },
}
