use std::time::SystemTime;

use gradstream_metrics::Metrics;

use crate::{LrPoint, LrSuggestion, RunId};

/// Where a job is in its life. QUEUED → RUNNING → one of the three terminal states;
/// a queued job may also go straight to CANCELLED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [JobStatus; 5] = [
        Self::Queued,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
    ];

    /// True for the states a job never leaves.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Running => "RUNNING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
        }
    }
}

/// One entry in a job's event log. `seq` runs 1, 2, 3… per job with no gaps, across all
/// of its runs.
#[derive(Debug, Clone, PartialEq)]
pub struct JobEvent {
    pub job_id: String,
    pub seq: u64,
    /// The run the event belongs to; statuses are the job's own ([`RunId::JOB`]).
    pub run: RunId,
    pub time: SystemTime,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum EventKind {
    Status {
        status: JobStatus,
        message: String,
    },
    Iteration(IterationProgress),
    Epoch(Box<EpochEnd>),
    /// A range test's iteration.
    RangePoint(LrPoint),
    /// What a range test found; its last event before SUCCEEDED.
    RangeResult(LrSuggestion),
}

/// Training progress over the iterations since the previous report.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct IterationProgress {
    pub epoch: u32,
    pub iteration: u32,
    pub iterations_per_epoch: u32,
    pub global_step: u64,
    pub loss: f64,
    pub learning_rate: f64,
    pub samples_per_second: f64,
}

/// Metrics at the end of an epoch.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochEnd {
    pub epoch: u32,
    pub train: Metrics,
    pub validation: Option<Metrics>,
    pub seconds: f64,
    /// The best epoch so far by the spec's `best_model_metric` (this one or an earlier
    /// one); set by the job as the event is recorded, 0 when no epoch qualifies.
    #[serde(default)]
    pub best_epoch: u32,
    /// The run of `best_epoch` (the job's own run when the job has one model).
    #[serde(default)]
    pub best_run: RunId,
    /// The ensemble's metrics (averaged member probabilities), once after the last member,
    /// in the job's own run. An evaluation, not a training epoch: `epoch` is the members'
    /// last.
    #[serde(default)]
    pub ensemble: bool,
    /// Validation loss minus training loss.
    #[serde(default)]
    pub generalization_gap: Option<f64>,
    /// Validation loss rose while training loss fell, against the previous epoch.
    #[serde(default)]
    pub overfitting: bool,
    /// Per-layer diagnostics on a fixed sample.
    #[serde(default)]
    pub layers: Vec<LayerDiagnostics>,
    /// Time spent computing `layers`.
    #[serde(default)]
    pub diagnostics_seconds: f64,
}

/// What one layer does on the diagnostic sample (see the proto for each field).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LayerDiagnostics {
    pub name: String,
    /// Of the layer's outputs; absent for a TorchScript module's layers.
    pub activation_mean: Option<f64>,
    pub activation_std: Option<f64>,
    pub saturated_fraction: Option<f64>,
    pub dead_fraction: Option<f64>,
    pub weight_norm: f64,
    pub gradient_norm: f64,
    pub update_ratio: f64,
}

impl EpochEnd {
    /// The metrics model selection looks at: validation, else training.
    pub fn selection_metrics(&self) -> &Metrics {
        self.validation.as_ref().unwrap_or(&self.train)
    }
}

/// What the engine learned while setting up a run: reported once, before the first iteration.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunInfo {
    pub parameter_count: u64,
    pub labels: Vec<String>,
    pub train_samples: u64,
    pub validation_samples: u64,
    pub iterations_per_epoch: u32,
    pub device: String,
    #[serde(default)]
    pub features: FeatureInfo,
    /// The class weights training uses (empty: unweighted).
    #[serde(default)]
    pub class_weights: Vec<f64>,
    /// Training rows per class, before and after resampling (one ensemble member's draw
    /// for ensembles).
    #[serde(default)]
    pub train_class_counts: Vec<u64>,
    #[serde(default)]
    pub resampled_class_counts: Vec<u64>,
}

/// The model's inputs: feature names in column order and the z-scoring applied to them
/// (statistics of the training split).
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct FeatureInfo {
    pub names: Vec<String>,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl FeatureInfo {
    pub fn width(&self) -> usize {
        self.names.len()
    }
}
