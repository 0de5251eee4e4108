//! A trained model loaded from a checkpoint: class probabilities for raw feature rows, and
//! the model in the forms PyTorch loads (TorchScript, an `nn.Sequential` state dict).

use tch::{CModule, Device, Kind, Tensor, nn};

use super::model::TorchLayer;
use super::{Checkpoint, EngineError, Mlp, build_model, forward_eval, load_model_vars};
use crate::domain::{FeatureInfo, JobSpec};

pub struct TrainedModel {
    /// Owns the model's variables.
    _vs: nn::VarStore,
    model: Mlp,
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
        let mut vs = nn::VarStore::new(device);
        let model = build_model(&vs, spec, features.width(), classes);
        load_model_vars(&vs, &c.tensors)?;
        vs.freeze();
        let d = features.width() as i64;
        let stat = |v: &[f32]| -> Result<Tensor, EngineError> {
            Ok(Tensor::from_slice(v).f_view([1, d])?.f_to_device(device)?)
        };
        Ok(Self {
            _vs: vs,
            model,
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
        let probs = forward_eval(&mut self.model, &x)?
            .f_softmax(-1, Kind::Float)?
            .f_to_device(Device::Cpu)?
            .f_flatten(0, -1)?;
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
                let out = self.normalize(&inputs[0]).and_then(|x| {
                    Ok(self.model.forward_t(&x, false).f_softmax(-1, Kind::Float)?)
                });
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

    /// The equivalent PyTorch `nn.Sequential` (layers and state dict).
    pub fn sequential(&self) -> (Vec<TorchLayer>, Vec<(String, Tensor)>) {
        self.model.sequential(self.global_step as i64)
    }
}
