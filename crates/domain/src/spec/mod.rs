//! A training job's specification and the checks that need no data.

use std::fmt;

mod dataset;
mod imbalance;
mod optimizer;
mod schedule;
mod selection;

pub use dataset::{DatasetSpec, SyntheticSpec};
pub use imbalance::{
    ClassWeighting, EnsembleSpec, LossSpec, MAX_ENSEMBLE_MEMBERS, ResamplingMethod, ResamplingSpec,
};
pub use optimizer::OptimizerSpec;
pub use schedule::{LrSchedule, validate_schedule};
pub use selection::{EarlyStopping, ModelSelection, ModelVersion};

/// Upper bound on `epochs`; more is almost certainly a mistake (a unit mix-up).
pub const MAX_EPOCHS: u32 = 10_000;
/// Upper bound on `batch_size`.
pub const MAX_BATCH_SIZE: u32 = 1 << 20;
/// Trainable parameters a model may have (with Adam's state, about 1.6 GB of f32).
pub const MAX_PARAMETERS: u64 = 100_000_000;
const MAX_HIDDEN_LAYERS: usize = 64;
const MAX_LAYER_WIDTH: u32 = 65_536;

/// A bad field in a request: which field, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    /// Dotted path of the field, as named in the proto (`spec.batch_size`).
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl SpecError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JobSpec {
    pub name: String,
    pub dataset: DatasetSpec,
    pub model: ModelSpec,
    pub epochs: u32,
    pub batch_size: u32,
    pub learning_rate: f64,
    pub optimizer: OptimizerSpec,
    /// One per class in class order; empty = unweighted.
    pub class_weights: Vec<f64>,
    pub validation_fraction: f64,
    pub seed: u64,
    /// Iterations between progress reports; 0 = about 20 per epoch.
    pub report_every: u32,
    /// The metric that picks the best epoch's model.
    #[serde(default)]
    pub best_model_metric: ModelSelection,
    #[serde(default)]
    pub class_weighting: ClassWeighting,
    /// Resampling of the training split; `None` = as it is.
    #[serde(default)]
    pub resampling: Option<ResamplingSpec>,
    /// Train an ensemble; `None` = one model.
    #[serde(default)]
    pub ensemble: Option<EnsembleSpec>,
    #[serde(default)]
    pub loss: LossSpec,
    /// Largest total L2 norm of the gradients; `None` = no clipping.
    #[serde(default)]
    pub gradient_clip_norm: Option<f64>,
    /// Stop when `best_model_metric` stops improving; `None` = train every epoch.
    #[serde(default)]
    pub early_stopping: Option<EarlyStopping>,
    #[serde(default)]
    pub lr_schedule: LrSchedule,
    /// Per-layer diagnostics at each epoch end.
    #[serde(default = "yes")]
    pub layer_diagnostics: bool,
}

fn yes() -> bool {
    true
}

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
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MlpSpec {
    pub hidden_layers: Vec<u32>,
    pub activation: Activation,
    pub batch_norm: bool,
    pub dropout: f64,
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

fn check(ok: bool, field: &str, message: impl FnOnce() -> String) -> Result<(), SpecError> {
    if ok {
        Ok(())
    } else {
        Err(SpecError::new(field, message()))
    }
}

fn check_unit(value: f64, field: &str, what: &str) -> Result<(), SpecError> {
    check(
        value.is_finite() && (0.0..1.0).contains(&value),
        field,
        || format!("{what} must be in [0, 1), got {value}"),
    )
}

fn check_non_negative(value: f64, field: &str) -> Result<(), SpecError> {
    check(value.is_finite() && value >= 0.0, field, || {
        format!("must be a finite number >= 0, got {value}")
    })
}

fn check_positive(value: f64, field: &str) -> Result<(), SpecError> {
    check(value.is_finite() && value > 0.0, field, || {
        format!("must be a finite number > 0, got {value}")
    })
}

impl JobSpec {
    /// The number under which the checkpoint holding `end`'s model is stored: the epoch for
    /// one model; for ensembles, epochs count on across members (member `m`'s epoch `e` is
    /// `m * epochs + e`) and the ensemble's own metrics belong to the last one.
    pub fn checkpoint_epoch(&self, end: &crate::EpochEnd) -> u32 {
        match (end.member, self.ensemble) {
            (Some(m), _) => m * self.epochs + end.epoch,
            (None, Some(e)) if end.ensemble => e.members() * self.epochs,
            _ => end.epoch,
        }
    }

    /// Every check that needs no data. Checks that need the dataset (class weights against
    /// the number of classes, an empty file) happen when the dataset is read.
    pub fn validate(&self) -> Result<(), SpecError> {
        check(self.epochs >= 1, "spec.epochs", || {
            "must be at least 1; set the number of passes over the training data".into()
        })?;
        check(self.epochs <= MAX_EPOCHS, "spec.epochs", || {
            format!(
                "{} is more than the limit of {MAX_EPOCHS}; use fewer epochs",
                self.epochs
            )
        })?;
        check(self.batch_size >= 1, "spec.batch_size", || {
            "must be at least 1; 32 to 256 is typical".into()
        })?;
        check(self.batch_size <= MAX_BATCH_SIZE, "spec.batch_size", || {
            format!(
                "{} is more than the limit of {MAX_BATCH_SIZE}",
                self.batch_size
            )
        })?;
        check(
            self.learning_rate.is_finite() && self.learning_rate > 0.0,
            "spec.learning_rate",
            || {
                format!(
                    "must be a finite number > 0, got {}; 0.001 is a usual start for Adam",
                    self.learning_rate
                )
            },
        )?;
        check(
            self.validation_fraction.is_finite() && (0.0..0.9).contains(&self.validation_fraction),
            "spec.validation_fraction",
            || {
                format!(
                    "must be in [0, 0.9), got {}; 0.2 holds out a fifth of the data",
                    self.validation_fraction
                )
            },
        )?;
        self.validate_class_weights(None)?;
        self.validate_imbalance()?;
        self.validate_dynamics()?;
        validate_schedule(&self.lr_schedule, self.epochs)?;
        self.optimizer.validate()?;
        self.validate_model()?;
        self.dataset.validate()
    }

    /// Gradient clipping and early stopping.
    fn validate_dynamics(&self) -> Result<(), SpecError> {
        if let Some(c) = self.gradient_clip_norm {
            check_positive(c, "spec.gradient_clip_norm")?;
        }
        if let Some(e) = &self.early_stopping {
            e.validate()?;
            check(self.ensemble.is_none(), "spec.early_stopping", || {
                "applies to single models, not to ensembles; remove it or spec.ensemble".into()
            })?;
        }
        Ok(())
    }

    /// The spec as a client gives it: without what the server derives when the job is
    /// submitted (a TorchScript model's file, parameter count and batch needs).
    pub fn as_requested(&self) -> JobSpec {
        let mut s = self.clone();
        if let ModelSpec::TorchScript(t) = &mut s.model {
            t.file = Default::default();
            t.parameters = 0;
            t.needs_batch_of_two = false;
        }
        s
    }

    /// Models trained: an ensemble's members, else 1.
    pub fn members(&self) -> u64 {
        self.ensemble.map_or(1, |e| u64::from(e.members()))
    }

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

    fn validate_model(&self) -> Result<(), SpecError> {
        let (f, mlp) = match &self.model {
            ModelSpec::Mlp(mlp) => ("spec.model.mlp", mlp),
            ModelSpec::TorchScript(s) => {
                let f = "spec.model.torchscript";
                check(
                    !s.model_id.trim().is_empty(),
                    &format!("{f}.model_id"),
                    || {
                        "is empty; upload the module with UploadModel and give its id (ListModels shows them)".into()
                    },
                )?;
                if let Some(shape) = s.input_shape {
                    for (i, d) in shape.iter().enumerate() {
                        check(*d >= 1, &format!("{f}.input_shape"), || {
                            format!(
                                "dimension {i} is 0; channels, height and width must be at least 1"
                            )
                        })?;
                    }
                }
                return Ok(());
            }
            ModelSpec::Cnn(cnn) => {
                let f = "spec.model.cnn";
                for (i, d) in cnn.input.iter().enumerate() {
                    check(*d >= 1, &format!("{f}.input"), || {
                        format!("dimension {i} is 0; channels, height and width must be at least 1")
                    })?;
                }
                check(
                    cnn.blocks.len() <= MAX_HIDDEN_LAYERS,
                    &format!("{f}.blocks"),
                    || {
                        format!(
                            "has {} blocks, more than the limit of {MAX_HIDDEN_LAYERS}",
                            cnn.blocks.len()
                        )
                    },
                )?;
                for (i, b) in cnn.blocks.iter().enumerate() {
                    let g = format!("{f}.blocks[{i}]");
                    check(
                        (1..=4096).contains(&b.channels),
                        &format!("{g}.channels"),
                        || format!("must be 1 to 4096, got {}", b.channels),
                    )?;
                    check(
                        (1..=64).contains(&b.kernel),
                        &format!("{g}.kernel_size"),
                        || format!("must be 1 to 64, got {}", b.kernel),
                    )?;
                    check(b.stride >= 1, &format!("{g}.stride"), || {
                        "must be at least 1".into()
                    })?;
                    check(b.padding < b.kernel.max(1), &format!("{g}.padding"), || {
                        format!(
                            "must be smaller than kernel_size ({}), got {}",
                            b.kernel, b.padding
                        )
                    })?;
                    if let Pool::Max(n) | Pool::Avg(n) = b.pool {
                        check(n >= 1, &format!("{g}.pool_size"), || {
                            "must be at least 1".into()
                        })?;
                    }
                }
                if let Err(i) = cnn.shapes() {
                    return Err(SpecError::new(
                        format!("{f}.blocks[{i}]"),
                        format!(
                            "leaves no feature map for a {}x{}x{} input; use padding, smaller kernels or strides, or fewer pooling blocks",
                            cnn.input[0], cnn.input[1], cnn.input[2]
                        ),
                    ));
                }
                ("spec.model.cnn.dense", &cnn.dense)
            }
        };
        check(
            mlp.hidden_layers.len() <= MAX_HIDDEN_LAYERS,
            &format!("{f}.hidden_layers"),
            || {
                format!(
                    "has {} layers, more than the limit of {MAX_HIDDEN_LAYERS}",
                    mlp.hidden_layers.len()
                )
            },
        )?;
        for (i, w) in mlp.hidden_layers.iter().enumerate() {
            check(
                (1..=MAX_LAYER_WIDTH).contains(w),
                &format!("{f}.hidden_layers[{i}]"),
                || format!("width must be 1 to {MAX_LAYER_WIDTH}, got {w}"),
            )?;
        }
        check_unit(mlp.dropout, &format!("{f}.dropout"), "dropout probability")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
