//! A training job's specification and the checks that need no data: JobSpec, SpecError and
//! the top-level checks here; each part of the spec, with its own checks, in a file beside.

mod dataset;
mod imbalance;
mod model;
mod optimizer;
mod schedule;
mod selection;

pub use dataset::{ArrayFormat, ArraysSpec, DatasetSpec, SyntheticSpec};
pub use imbalance::{
    ClassWeighting, EnsembleSpec, LossSpec, MAX_ENSEMBLE_MEMBERS, ResamplingMethod, ResamplingSpec,
};
pub use model::{Activation, CnnSpec, ConvBlock, MlpSpec, ModelSpec, Pool, ScriptSpec};
pub use optimizer::OptimizerSpec;
pub use schedule::{LrSchedule, validate_schedule};
pub use selection::{EarlyStopping, ModelSelection, ModelVersion};

/// Upper bound on `epochs`; more is almost certainly a mistake (a unit mix-up).
pub const MAX_EPOCHS: u32 = 10_000;
/// Upper bound on `batch_size`.
pub const MAX_BATCH_SIZE: u32 = 1 << 20;

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
    /// Rows a streamed dataset mixes at once; `None` means [`DEFAULT_SHUFFLE_BUFFER`].
    #[serde(default)]
    pub shuffle_buffer: Option<u32>,
}

/// Shuffle buffer of a streamed dataset when the spec sets none.
pub const DEFAULT_SHUFFLE_BUFFER: u32 = 65_536;
/// Largest shuffle buffer accepted.
pub const MAX_SHUFFLE_BUFFER: u32 = 1 << 24;

fn yes() -> bool {
    true
}

/// Field checks the parts share: `Err` naming `field` with `message` unless `ok`.
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
        if let Some(b) = self.shuffle_buffer {
            check(
                (1..=MAX_SHUFFLE_BUFFER).contains(&b),
                "spec.shuffle_buffer",
                || {
                    format!(
                        "must be 1 to {MAX_SHUFFLE_BUFFER} rows, got {b}; unset means {DEFAULT_SHUFFLE_BUFFER}"
                    )
                },
            )?;
        }
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
        self.model.validate()?;
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
        if let DatasetSpec::Arrays(a) = &mut s.dataset {
            a.stored = None;
            a.streamed = false;
        }
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
}
