//! The model a job trains (`spec.model`): an MLP, a CNN of convolution blocks and a dense
//! head, or an uploaded TorchScript module; their checks, shapes and parameter counts.

use std::fmt;

use super::{JobSpec, SpecError, check, check_unit};

/// Trainable parameters a model may have (with Adam's state, about 1.6 GB of f32).
pub const MAX_PARAMETERS: u64 = 100_000_000;
const MAX_HIDDEN_LAYERS: usize = 64;
const MAX_LAYER_WIDTH: u32 = 65_536;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum ModelSpec {
    Mlp(MlpSpec),
    Cnn(CnnSpec),
    /// A user's TorchScript module, uploaded with `UploadModel`.
    TorchScript(ScriptSpec),
}

impl ModelSpec {
    /// The dense part: the whole MLP, or a CNN's head after its convolutions; none for a
    /// TorchScript module.
    pub fn dense(&self) -> Option<&MlpSpec> {
        match self {
            Self::Mlp(m) => Some(m),
            Self::Cnn(c) => Some(&c.dense),
            Self::TorchScript(_) => None,
        }
    }

    /// Checks `spec.model`: layer counts and sizes, a CNN's blocks and the feature map they
    /// leave, a TorchScript module's id and shape.
    pub(super) fn validate(&self) -> Result<(), SpecError> {
        match self {
            Self::Mlp(mlp) => mlp.validate("spec.model.mlp"),
            Self::Cnn(cnn) => cnn.validate(),
            Self::TorchScript(s) => s.validate(),
        }
    }
}

/// A user's TorchScript module. The client names `model_id` (and `input_shape`); the job
/// manager fills in the rest when the job is submitted, from the uploaded file and a trial
/// forward pass on the job's data.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScriptSpec {
    pub model_id: String,
    /// Rows are reshaped to `[batch, c, h, w]` when set; else passed as `[batch, features]`.
    pub input_shape: Option<[u32; 3]>,
    /// The uploaded module's file under the state directory.
    pub file: std::path::PathBuf,
    /// Elements of its parameters.
    pub parameters: u64,
    /// Its forward fails in training mode on a batch of one row (batch norm does that).
    pub needs_batch_of_two: bool,
}

impl ScriptSpec {
    /// Checks `spec.model.torchscript`: a module id, and a shape without zeros when given.
    fn validate(&self) -> Result<(), SpecError> {
        let f = "spec.model.torchscript";
        check(
            !self.model_id.trim().is_empty(),
            &format!("{f}.model_id"),
            || {
                "is empty; upload the module with UploadModel and give its id (ListModels shows them)".into()
            },
        )?;
        if let Some(shape) = &self.input_shape {
            check_shape(shape, &format!("{f}.input_shape"))?;
        }
        Ok(())
    }
}

/// Channels, height and width are each at least 1.
fn check_shape(shape: &[u32; 3], field: &str) -> Result<(), SpecError> {
    for (i, d) in shape.iter().enumerate() {
        check(*d >= 1, field, || {
            format!("dimension {i} is 0; channels, height and width must be at least 1")
        })?;
    }
    Ok(())
}

/// A convolutional network over feature columns read as an image (row-major
/// channels × height × width), then dense layers.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CnnSpec {
    /// Channels, height, width.
    pub input: [u32; 3],
    pub blocks: Vec<ConvBlock>,
    /// Average each channel over the map before the dense layers (then the parameter count
    /// does not depend on the image size); otherwise the map is flattened.
    pub global_average_pool: bool,
    pub dense: MlpSpec,
}

/// Convolution → [batch norm] → activation → [pooling].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ConvBlock {
    pub channels: u32,
    pub kernel: u32,
    pub stride: u32,
    pub padding: u32,
    pub batch_norm: bool,
    pub activation: Activation,
    pub pool: Pool,
}

impl ConvBlock {
    /// Checks the block at `g` (`spec.model.cnn.blocks[i]`).
    fn validate(&self, g: &str) -> Result<(), SpecError> {
        check(
            (1..=4096).contains(&self.channels),
            &format!("{g}.channels"),
            || format!("must be 1 to 4096, got {}", self.channels),
        )?;
        check(
            (1..=64).contains(&self.kernel),
            &format!("{g}.kernel_size"),
            || format!("must be 1 to 64, got {}", self.kernel),
        )?;
        check(self.stride >= 1, &format!("{g}.stride"), || {
            "must be at least 1".into()
        })?;
        check(
            self.padding < self.kernel.max(1),
            &format!("{g}.padding"),
            || {
                format!(
                    "must be smaller than kernel_size ({}), got {}",
                    self.kernel, self.padding
                )
            },
        )?;
        if let Pool::Max(n) | Pool::Avg(n) = self.pool {
            check(n >= 1, &format!("{g}.pool_size"), || {
                "must be at least 1".into()
            })?;
        }
        Ok(())
    }
}

/// Pooling after a convolution block, window = stride = the size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Pool {
    None,
    Max(u32),
    Avg(u32),
}

impl CnnSpec {
    /// The feature map after each block (channels, height, width), or the index of the
    /// first block that leaves nothing.
    pub fn shapes(&self) -> Result<Vec<[u64; 3]>, usize> {
        let [_, mut h, mut w] = self.input.map(u64::from);
        let mut out = Vec::with_capacity(self.blocks.len());
        for (i, b) in self.blocks.iter().enumerate() {
            let (k, s, p) = (
                u64::from(b.kernel),
                u64::from(b.stride.max(1)),
                u64::from(b.padding),
            );
            if h + 2 * p < k || w + 2 * p < k {
                return Err(i);
            }
            h = (h + 2 * p - k) / s + 1;
            w = (w + 2 * p - k) / s + 1;
            if let Pool::Max(n) | Pool::Avg(n) = b.pool {
                h /= u64::from(n.max(1));
                w /= u64::from(n.max(1));
            }
            if h == 0 || w == 0 {
                return Err(i);
            }
            out.push([u64::from(b.channels), h, w]);
        }
        Ok(out)
    }

    /// Inputs of the dense part.
    pub fn flat_features(&self) -> u64 {
        let [c, h, w] = self
            .shapes()
            .ok()
            .and_then(|s| s.last().copied())
            .unwrap_or(self.input.map(u64::from));
        if self.global_average_pool {
            c
        } else {
            c * h * w
        }
    }

    /// Checks `spec.model.cnn`: the input shape, each block, the feature map the blocks
    /// leave, then the dense head.
    fn validate(&self) -> Result<(), SpecError> {
        let f = "spec.model.cnn";
        check_shape(&self.input, &format!("{f}.input"))?;
        check(
            self.blocks.len() <= MAX_HIDDEN_LAYERS,
            &format!("{f}.blocks"),
            || {
                format!(
                    "has {} blocks, more than the limit of {MAX_HIDDEN_LAYERS}",
                    self.blocks.len()
                )
            },
        )?;
        for (i, b) in self.blocks.iter().enumerate() {
            b.validate(&format!("{f}.blocks[{i}]"))?;
        }
        if let Err(i) = self.shapes() {
            return Err(SpecError::new(
                format!("{f}.blocks[{i}]"),
                format!(
                    "leaves no feature map for a {}x{}x{} input; use padding, smaller kernels or strides, or fewer pooling blocks",
                    self.input[0], self.input[1], self.input[2]
                ),
            ));
        }
        self.dense.validate("spec.model.cnn.dense")
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MlpSpec {
    pub hidden_layers: Vec<u32>,
    pub activation: Activation,
    pub batch_norm: bool,
    pub dropout: f64,
}

impl MlpSpec {
    /// Checks the dense layers at `f` (`spec.model.mlp` or a CNN's `spec.model.cnn.dense`).
    fn validate(&self, f: &str) -> Result<(), SpecError> {
        check(
            self.hidden_layers.len() <= MAX_HIDDEN_LAYERS,
            &format!("{f}.hidden_layers"),
            || {
                format!(
                    "has {} layers, more than the limit of {MAX_HIDDEN_LAYERS}",
                    self.hidden_layers.len()
                )
            },
        )?;
        for (i, w) in self.hidden_layers.iter().enumerate() {
            check(
                (1..=MAX_LAYER_WIDTH).contains(w),
                &format!("{f}.hidden_layers[{i}]"),
                || format!("width must be 1 to {MAX_LAYER_WIDTH}, got {w}"),
            )?;
        }
        check_unit(self.dropout, &format!("{f}.dropout"), "dropout probability")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Activation {
    Relu,
    Tanh,
    Sigmoid,
    LeakyRelu,
    Gelu,
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Relu => "relu",
            Self::Tanh => "tanh",
            Self::Sigmoid => "sigmoid",
            Self::LeakyRelu => "leaky_relu",
            Self::Gelu => "gelu",
        })
    }
}

impl JobSpec {
    /// Parameters of all the models the job trains (every ensemble member's).
    pub fn total_parameter_count(&self, inputs: u64, classes: u64) -> u64 {
        self.parameter_count(inputs, classes)
            .saturating_mul(self.members())
    }

    /// Trainable parameters of the model for `inputs` features and `classes` classes.
    pub fn parameter_count(&self, inputs: u64, classes: u64) -> u64 {
        let mlp = match &self.model {
            ModelSpec::TorchScript(s) => return s.parameters,
            ModelSpec::Mlp(m) => m,
            ModelSpec::Cnn(c) => &c.dense,
        };
        let (mut total, mut fan_in) = (0u64, inputs);
        if let ModelSpec::Cnn(cnn) = &self.model {
            let mut ch = u64::from(cnn.input[0]);
            for b in &cnn.blocks {
                let (out, k) = (u64::from(b.channels), u64::from(b.kernel));
                total = total.saturating_add(ch.saturating_mul(out).saturating_mul(k * k) + out);
                if b.batch_norm {
                    total = total.saturating_add(2 * out);
                }
                ch = out;
            }
            fan_in = cnn.flat_features();
        }
        for &w in &mlp.hidden_layers {
            let w = u64::from(w);
            total = total.saturating_add(fan_in.saturating_mul(w).saturating_add(w));
            if mlp.batch_norm {
                total = total.saturating_add(2 * w);
            }
            fan_in = w;
        }
        total.saturating_add(fan_in.saturating_mul(classes).saturating_add(classes))
    }

    /// A CNN's input shape must hold exactly the dataset's feature columns.
    pub fn validate_inputs(&self, width: u64) -> Result<(), SpecError> {
        let (field, shape) = match &self.model {
            ModelSpec::Cnn(cnn) => ("spec.model.cnn.input", cnn.input),
            ModelSpec::TorchScript(ScriptSpec {
                input_shape: Some(shape),
                ..
            }) => ("spec.model.torchscript.input_shape", *shape),
            _ => return Ok(()),
        };
        let [c, h, w] = shape.map(u64::from);
        check(c * h * w == width, field, || {
            format!(
                "channels x height x width = {c} x {h} x {w} = {} but the dataset has {width} feature columns; give a shape whose product is {width}",
                c * h * w
            )
        })
    }

    /// Batch statistics need at least two samples: with batch norm, refuses a batch size
    /// that leaves a last batch of one sample (PyTorch refuses such a batch too).
    pub fn validate_batches(&self, train_samples: u64) -> Result<(), SpecError> {
        let batch_norm = self.model.dense().is_some_and(|d| d.batch_norm)
            || matches!(&self.model, ModelSpec::Cnn(c) if c.blocks.iter().any(|b| b.batch_norm))
            || matches!(&self.model, ModelSpec::TorchScript(s) if s.needs_batch_of_two);
        let bs = u64::from(self.batch_size);
        let single =
            train_samples == 1 || (train_samples > bs && train_samples % bs == 1) || bs == 1;
        check(!(batch_norm && single), "spec.batch_size", || {
            format!(
                "{} every batch needs at least 2 samples, but {train_samples} training samples in batches of {bs} leave a batch of 1; choose another batch size (e.g. {}) or validation_fraction",
                if matches!(self.model, ModelSpec::TorchScript(_)) {
                    "the TorchScript module fails on a training batch of one row (batch norm does that), so"
                } else {
                    "with batch_norm,"
                },
                if bs == 1 { 2 } else { bs + 1 }
            )
        })
    }

    /// Refuses models too large to train here, before any memory is allocated.
    pub fn validate_model_size(&self, inputs: u64, classes: u64) -> Result<(), SpecError> {
        let members = self.members();
        let n = self.total_parameter_count(inputs, classes);
        check(n <= MAX_PARAMETERS, "spec.model", || {
            let across = if members > 1 {
                format!(" (across {members} ensemble members)")
            } else {
                String::new()
            };
            format!(
                "the model would have {n} parameters{across} for {inputs} features and {classes} classes, more than the limit of {MAX_PARAMETERS}; use fewer or narrower hidden layers"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{
        ClassWeighting, DatasetSpec, LossSpec, LrSchedule, ModelSelection, OptimizerSpec,
    };

    #[test]
    fn parameter_count_matches_the_layers() {
        let spec = |hidden: Vec<u32>, batch_norm: bool| JobSpec {
            name: String::new(),
            dataset: DatasetSpec::Csv {
                path: "x.csv".into(),
                label_column: None,
            },
            model: ModelSpec::Mlp(MlpSpec {
                hidden_layers: hidden,
                activation: Activation::Relu,
                batch_norm,
                dropout: 0.0,
            }),
            epochs: 1,
            batch_size: 1,
            learning_rate: 0.1,
            optimizer: OptimizerSpec::adam_default(),
            class_weights: vec![],
            validation_fraction: 0.2,
            seed: 0,
            report_every: 0,
            best_model_metric: ModelSelection::Loss,
            class_weighting: ClassWeighting::Manual,
            resampling: None,
            ensemble: None,
            loss: LossSpec::CrossEntropy,
            gradient_clip_norm: None,
            early_stopping: None,
            lr_schedule: LrSchedule::Constant,
            layer_diagnostics: true,
            shuffle_buffer: None,
        };
        assert_eq!(spec(vec![], false).parameter_count(4, 3), 4 * 3 + 3);
        assert_eq!(
            spec(vec![8], true).parameter_count(4, 3),
            4 * 8 + 8 + 16 + 8 * 3 + 3
        );
        assert!(
            spec(vec![65_536; 8], false)
                .validate_model_size(10, 2)
                .is_err()
        );
        assert!(spec(vec![128], false).validate_model_size(32, 10).is_ok());
    }
}
