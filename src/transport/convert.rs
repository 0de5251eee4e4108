//! The one place where protobuf types and domain types meet.

use std::time::SystemTime;

use super::pb;
use crate::domain::{
    Activation, ClassWeighting, CnnSpec, ConvBlock, DatasetInfo, DatasetSpec, EarlyStopping,
    EnsembleSpec, EpochEnd, EventKind, IterationProgress, JobEvent, JobKind, JobSpec, JobStatus,
    LossSpec, LrPoint, LrSchedule, LrSuggestion, MlpSpec, ModelInfo, ModelSelection, ModelSpec,
    ModelVersion, OptimizerSpec, Pool, RangeTest, ResamplingMethod, ResamplingSpec, ScriptSpec,
    SpecError, SyntheticSpec,
};
use crate::jobs::{EvalData, ExportFormat, JobError, JobQuery, JobSnapshot, Predictions};
use crate::metrics::curves::{ClassCurves, ThresholdPoint};
use crate::metrics::{Averages, ClassMetrics, ConfusionMatrix, Evaluation, Metrics};

const DEFAULT_VALIDATION_FRACTION: f64 = 0.2;
const DEFAULT_SEPARATION: f64 = 3.0;

pub fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(t)
}

// ---- requests → domain ----

pub fn job_spec(spec: Option<pb::JobSpec>) -> Result<JobSpec, SpecError> {
    let s = spec.ok_or_else(|| SpecError::new("spec", "is required: describe the job to run"))?;
    Ok(JobSpec {
        name: s.name,
        dataset: dataset(s.dataset)?,
        model: model(s.model)?,
        epochs: s.epochs,
        batch_size: s.batch_size,
        learning_rate: s.learning_rate,
        optimizer: optimizer(s.optimizer)?,
        class_weights: s.class_weights,
        validation_fraction: s.validation_fraction.unwrap_or(DEFAULT_VALIDATION_FRACTION),
        seed: s.seed,
        report_every: s.report_every,
        best_model_metric: model_selection(s.best_model_metric)?,
        class_weighting: class_weighting(s.class_weighting, s.effective_number_beta)?,
        resampling: resampling(s.resampling)?,
        ensemble: ensemble(s.ensemble)?,
        loss: loss(s.loss)?,
        lr_schedule: lr_schedule(s.lr_schedule, s.best_model_metric)?,
        layer_diagnostics: s.layer_diagnostics.unwrap_or(true),
        gradient_clip_norm: s.gradient_clip_norm,
        early_stopping: s.early_stopping.map(|e| EarlyStopping {
            patience: e.patience,
            min_delta: e.min_delta,
        }),
    })
}

/// Default of `effective_number_beta`.
const DEFAULT_BETA: f64 = 0.999;
/// Default of `resampling.k_neighbors`.
const DEFAULT_K_NEIGHBORS: u32 = 5;
/// Default of `loss.gamma`.
const DEFAULT_FOCAL_GAMMA: f64 = 2.0;

fn lr_schedule(s: Option<pb::LrSchedule>, metric: i32) -> Result<LrSchedule, SpecError> {
    use pb::lr_schedule::Kind;
    Ok(match s.and_then(|s| s.kind) {
        None => LrSchedule::Constant,
        Some(Kind::Step(s)) => LrSchedule::Step {
            step_size: s.step_size,
            gamma: s.gamma,
        },
        Some(Kind::Exponential(s)) => LrSchedule::Exponential { gamma: s.gamma },
        Some(Kind::Cosine(s)) => LrSchedule::Cosine {
            warmup_epochs: s.warmup_epochs,
            warmup_start_factor: s.warmup_start_factor.unwrap_or(1.0 / 3.0),
            eta_min: s.eta_min,
        },
        Some(Kind::OneCycle(s)) => LrSchedule::OneCycle {
            pct_start: s.pct_start.unwrap_or(0.3),
            div_factor: s.div_factor.unwrap_or(25.0),
            final_div_factor: s.final_div_factor.unwrap_or(1e4),
        },
        Some(Kind::ReduceOnPlateau(s)) => LrSchedule::ReduceOnPlateau {
            maximize: model_selection(metric)? != ModelSelection::Loss,
            factor: s.factor.unwrap_or(0.1),
            patience: s.patience.unwrap_or(10),
            threshold: s.threshold.unwrap_or(1e-4),
            cooldown: s.cooldown,
            min_lr: s.min_lr,
        },
    })
}

fn lr_schedule_to_pb(s: LrSchedule) -> Option<pb::LrSchedule> {
    use pb::lr_schedule::Kind;
    let kind = match s {
        LrSchedule::Constant => return None,
        LrSchedule::Step { step_size, gamma } => Kind::Step(pb::StepSchedule { step_size, gamma }),
        LrSchedule::Exponential { gamma } => Kind::Exponential(pb::ExponentialSchedule { gamma }),
        LrSchedule::Cosine {
            warmup_epochs,
            warmup_start_factor,
            eta_min,
        } => Kind::Cosine(pb::CosineSchedule {
            warmup_epochs,
            warmup_start_factor: Some(warmup_start_factor),
            eta_min,
        }),
        LrSchedule::OneCycle {
            pct_start,
            div_factor,
            final_div_factor,
        } => Kind::OneCycle(pb::OneCycleSchedule {
            pct_start: Some(pct_start),
            div_factor: Some(div_factor),
            final_div_factor: Some(final_div_factor),
        }),
        LrSchedule::ReduceOnPlateau {
            factor,
            patience,
            threshold,
            cooldown,
            min_lr,
            ..
        } => Kind::ReduceOnPlateau(pb::PlateauSchedule {
            factor: Some(factor),
            patience: Some(patience),
            threshold: Some(threshold),
            cooldown,
            min_lr,
        }),
    };
    Some(pb::LrSchedule { kind: Some(kind) })
}

fn class_weighting(v: i32, beta: Option<f64>) -> Result<ClassWeighting, SpecError> {
    use pb::ClassWeighting as W;
    match W::try_from(v) {
        Ok(W::Unspecified | W::Manual) => Ok(ClassWeighting::Manual),
        Ok(W::None) => Ok(ClassWeighting::None),
        Ok(W::Balanced) => Ok(ClassWeighting::Balanced),
        Ok(W::EffectiveNumber) => Ok(ClassWeighting::EffectiveNumber {
            beta: beta.unwrap_or(DEFAULT_BETA),
        }),
        Err(_) => Err(SpecError::new(
            "spec.class_weighting",
            format!("{v} is not a ClassWeighting; use NONE, MANUAL, BALANCED or EFFECTIVE_NUMBER"),
        )),
    }
}

fn resampling(r: Option<pb::Resampling>) -> Result<Option<ResamplingSpec>, SpecError> {
    use pb::ResamplingMethod as M;
    let Some(r) = r else { return Ok(None) };
    let method = match M::try_from(r.method) {
        Ok(M::Unspecified | M::None) => return Ok(None),
        Ok(M::RandomOversample) => ResamplingMethod::RandomOversample,
        Ok(M::RandomUndersample) => ResamplingMethod::RandomUndersample,
        Ok(M::Smote) => ResamplingMethod::Smote {
            k_neighbors: r.k_neighbors.unwrap_or(DEFAULT_K_NEIGHBORS),
        },
        Err(_) => {
            return Err(SpecError::new(
                "spec.resampling.method",
                format!(
                    "{} is not a ResamplingMethod; use NONE, RANDOM_OVERSAMPLE, RANDOM_UNDERSAMPLE or SMOTE",
                    r.method
                ),
            ));
        }
    };
    Ok(Some(ResamplingSpec {
        method,
        ratio: r.ratio.unwrap_or(1.0),
        per_epoch: r.per_epoch,
    }))
}

fn ensemble(e: Option<pb::Ensemble>) -> Result<Option<EnsembleSpec>, SpecError> {
    use pb::EnsembleKind as K;
    let Some(e) = e else { return Ok(None) };
    match K::try_from(e.kind) {
        Ok(K::Unspecified | K::None) => Ok(None),
        Ok(K::BalancedBagging) => Ok(Some(EnsembleSpec::BalancedBagging { members: e.members })),
        Err(_) => Err(SpecError::new(
            "spec.ensemble.kind",
            format!(
                "{} is not an EnsembleKind; use NONE or BALANCED_BAGGING",
                e.kind
            ),
        )),
    }
}

fn loss(l: Option<pb::Loss>) -> Result<LossSpec, SpecError> {
    use pb::LossKind as K;
    let Some(l) = l else {
        return Ok(LossSpec::CrossEntropy);
    };
    match K::try_from(l.kind) {
        Ok(K::Unspecified | K::CrossEntropy) => Ok(LossSpec::CrossEntropy),
        Ok(K::Focal) => Ok(LossSpec::Focal {
            gamma: l.gamma.unwrap_or(DEFAULT_FOCAL_GAMMA),
        }),
        Err(_) => Err(SpecError::new(
            "spec.loss.kind",
            format!("{} is not a LossKind; use CROSS_ENTROPY or FOCAL", l.kind),
        )),
    }
}

fn csv_dataset(c: pb::CsvDataset) -> DatasetSpec {
    DatasetSpec::Csv {
        path: c.path,
        label_column: (!c.label_column.is_empty()).then_some(c.label_column),
    }
}

pub fn model_version(v: i32) -> Result<ModelVersion, SpecError> {
    match pb::ModelVersion::try_from(v) {
        Ok(pb::ModelVersion::Unspecified | pb::ModelVersion::Best) => Ok(ModelVersion::Best),
        Ok(pb::ModelVersion::Last) => Ok(ModelVersion::Last),
        Err(_) => Err(SpecError::new(
            "model",
            format!("{v} is not a ModelVersion; use MODEL_VERSION_BEST or MODEL_VERSION_LAST"),
        )),
    }
}

pub fn export_format(v: i32) -> Result<ExportFormat, SpecError> {
    match pb::ExportFormat::try_from(v) {
        Ok(pb::ExportFormat::Torchscript) => Ok(ExportFormat::TorchScript),
        Ok(pb::ExportFormat::Safetensors) => Ok(ExportFormat::Safetensors),
        _ => Err(SpecError::new(
            "format",
            "is required; use EXPORT_FORMAT_TORCHSCRIPT or EXPORT_FORMAT_SAFETENSORS",
        )),
    }
}

pub fn eval_data(d: Option<pb::evaluate_request::Data>) -> Result<EvalData, SpecError> {
    use pb::evaluate_request::Data;
    match d {
        Some(Data::DatasetId(id)) => Ok(EvalData::Dataset(DatasetSpec::Uploaded { id })),
        Some(Data::Csv(c)) => Ok(EvalData::Dataset(csv_dataset(c))),
        Some(Data::Rows(r)) => Ok(EvalData::Rows(
            r.rows.into_iter().map(|r| (r.values, r.label)).collect(),
        )),
        None => Err(SpecError::new(
            "data",
            "is required: give dataset_id, csv or rows with labels",
        )),
    }
}

fn model_selection(v: i32) -> Result<ModelSelection, SpecError> {
    use pb::ModelSelectionMetric as M;
    match M::try_from(v) {
        Ok(M::Unspecified | M::Loss) => Ok(ModelSelection::Loss),
        Ok(M::Accuracy) => Ok(ModelSelection::Accuracy),
        Ok(M::MacroF1) => Ok(ModelSelection::MacroF1),
        Ok(M::RocAuc) => Ok(ModelSelection::RocAuc),
        Ok(M::AveragePrecision) => Ok(ModelSelection::AveragePrecision),
        Err(_) => Err(SpecError::new(
            "spec.best_model_metric",
            format!(
                "{v} is not a ModelSelectionMetric; use LOSS, ACCURACY, MACRO_F1, ROC_AUC or AVERAGE_PRECISION"
            ),
        )),
    }
}

fn model_selection_to_pb(m: ModelSelection) -> pb::ModelSelectionMetric {
    use pb::ModelSelectionMetric as M;
    match m {
        ModelSelection::Loss => M::Loss,
        ModelSelection::Accuracy => M::Accuracy,
        ModelSelection::MacroF1 => M::MacroF1,
        ModelSelection::RocAuc => M::RocAuc,
        ModelSelection::AveragePrecision => M::AveragePrecision,
    }
}

fn dataset(d: Option<pb::Dataset>) -> Result<DatasetSpec, SpecError> {
    use pb::dataset::Source;
    match d.and_then(|d| d.source) {
        Some(Source::Csv(c)) => Ok(csv_dataset(c)),
        Some(Source::Synthetic(s)) => Ok(DatasetSpec::Synthetic(SyntheticSpec {
            samples: u64::from(s.samples),
            features: s.features,
            classes: s.classes,
            class_ratios: s.class_ratios,
            separation: s.separation.unwrap_or(DEFAULT_SEPARATION),
            seed: s.seed,
        })),
        Some(Source::DatasetId(id)) => Ok(DatasetSpec::Uploaded { id }),
        None => Err(SpecError::new(
            "spec.dataset",
            "is required: set dataset.csv (a file under the server's data directory), dataset.dataset_id (an uploaded dataset) or dataset.synthetic",
        )),
    }
}

fn mlp_spec(mlp: pb::Mlp) -> Result<MlpSpec, SpecError> {
    Ok(MlpSpec {
        hidden_layers: mlp.hidden_layers,
        activation: activation(mlp.activation)?,
        batch_norm: mlp.batch_norm,
        dropout: mlp.dropout,
    })
}

fn model(m: Option<pb::Model>) -> Result<ModelSpec, SpecError> {
    match m.and_then(|m| m.kind) {
        Some(pb::model::Kind::Mlp(mlp)) => Ok(ModelSpec::Mlp(mlp_spec(mlp)?)),
        Some(pb::model::Kind::Torchscript(t)) => Ok(ModelSpec::TorchScript(ScriptSpec {
            model_id: t.model_id,
            input_shape: match t.input_shape[..] {
                [] => None,
                [c, h, w] => Some([c, h, w]),
                _ => {
                    return Err(SpecError::new(
                        "spec.model.torchscript.input_shape",
                        format!(
                            "has {} values; give none (rows as [batch, features]) or three: channels, height, width",
                            t.input_shape.len()
                        ),
                    ));
                }
            },
            // Filled in by the job manager from the uploaded model.
            file: Default::default(),
            parameters: 0,
            needs_batch_of_two: false,
        })),
        Some(pb::model::Kind::Cnn(c)) => Ok(ModelSpec::Cnn(CnnSpec {
            input: [c.channels, c.height, c.width],
            blocks: c
                .blocks
                .into_iter()
                .map(|b| {
                    let size = b.pool_size.unwrap_or(2);
                    Ok(ConvBlock {
                        channels: b.channels,
                        kernel: b.kernel_size,
                        stride: b.stride.unwrap_or(1),
                        padding: b.padding,
                        batch_norm: b.batch_norm,
                        activation: activation(b.activation)?,
                        pool: match pb::PoolKind::try_from(b.pool) {
                            Ok(pb::PoolKind::Max) => Pool::Max(size),
                            Ok(pb::PoolKind::Avg) => Pool::Avg(size),
                            _ => Pool::None,
                        },
                    })
                })
                .collect::<Result<_, SpecError>>()?,
            global_average_pool: c.global_average_pool,
            dense: mlp_spec(c.dense.unwrap_or_default())?,
        })),
        None => Err(SpecError::new(
            "spec.model",
            "is required: set model.mlp (for example hidden_layers [64])",
        )),
    }
}

fn activation(v: i32) -> Result<Activation, SpecError> {
    use pb::Activation as A;
    match A::try_from(v) {
        Ok(A::Unspecified | A::Relu) => Ok(Activation::Relu),
        Ok(A::Tanh) => Ok(Activation::Tanh),
        Ok(A::Sigmoid) => Ok(Activation::Sigmoid),
        Ok(A::LeakyRelu) => Ok(Activation::LeakyRelu),
        Ok(A::Gelu) => Ok(Activation::Gelu),
        Err(_) => Err(SpecError::new(
            "spec.model.mlp.activation",
            format!("{v} is not a known activation; use RELU, TANH, SIGMOID, LEAKY_RELU or GELU"),
        )),
    }
}

fn optimizer(o: Option<pb::Optimizer>) -> Result<OptimizerSpec, SpecError> {
    use pb::OptimizerKind as K;
    let Some(o) = o else {
        return Ok(OptimizerSpec::adam_default());
    };
    let wd = o.weight_decay.unwrap_or(0.0);
    Ok(match K::try_from(o.kind) {
        Ok(k @ (K::Unspecified | K::Adam | K::Adamw)) => {
            let decoupled = k == K::Adamw;
            OptimizerSpec::Adam {
                beta1: o.beta1.unwrap_or(0.9),
                beta2: o.beta2.unwrap_or(0.999),
                eps: o.eps.unwrap_or(1e-8),
                // PyTorch's AdamW defaults to 0.01, Adam to 0.
                weight_decay: o.weight_decay.unwrap_or(if decoupled { 0.01 } else { 0.0 }),
                decoupled,
            }
        }
        Ok(K::Sgd) => OptimizerSpec::Sgd {
            momentum: o.momentum,
            nesterov: o.nesterov,
            weight_decay: wd,
        },
        Ok(K::Rmsprop) => OptimizerSpec::RmsProp {
            alpha: o.rho.unwrap_or(0.99),
            eps: o.eps.unwrap_or(1e-8),
            momentum: o.momentum,
            weight_decay: wd,
        },
        Ok(K::Adadelta) => OptimizerSpec::AdaDelta {
            rho: o.rho.unwrap_or(0.9),
            eps: o.eps.unwrap_or(1e-6),
            weight_decay: wd,
        },
        Err(_) => {
            return Err(SpecError::new(
                "spec.optimizer.kind",
                format!(
                    "{} is not a known optimizer; use SGD, ADAM, ADAMW, RMSPROP or ADADELTA",
                    o.kind
                ),
            ));
        }
    })
}

/// Default page size of ListJobs.
const DEFAULT_PAGE_SIZE: usize = 100;

pub fn job_query(r: pb::ListJobsRequest) -> Result<JobQuery, SpecError> {
    let statuses = r
        .statuses
        .iter()
        .enumerate()
        .map(|(i, s)| match pb::JobStatus::try_from(*s) {
            Ok(pb::JobStatus::Queued) => Ok(JobStatus::Queued),
            Ok(pb::JobStatus::Running) => Ok(JobStatus::Running),
            Ok(pb::JobStatus::Succeeded) => Ok(JobStatus::Succeeded),
            Ok(pb::JobStatus::Failed) => Ok(JobStatus::Failed),
            Ok(pb::JobStatus::Cancelled) => Ok(JobStatus::Cancelled),
            _ => Err(SpecError::new(
                format!("statuses[{i}]"),
                format!(
                    "{s} is not a job status; use QUEUED, RUNNING, SUCCEEDED, FAILED or CANCELLED"
                ),
            )),
        })
        .collect::<Result<_, _>>()?;
    if r.page_size > 1000 {
        return Err(SpecError::new(
            "page_size",
            format!("{} is more than the limit of 1000", r.page_size),
        ));
    }
    Ok(JobQuery {
        page_size: match r.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n as usize,
        },
        after: (!r.page_token.is_empty()).then_some(r.page_token),
        statuses,
        name_contains: r.name_contains,
    })
}

// ---- domain → responses ----

pub fn spec_to_pb(s: &JobSpec) -> pb::JobSpec {
    let dataset = match &s.dataset {
        DatasetSpec::Csv { path, label_column } => pb::dataset::Source::Csv(pb::CsvDataset {
            path: path.clone(),
            label_column: label_column.clone().unwrap_or_default(),
        }),
        DatasetSpec::Uploaded { id } => pb::dataset::Source::DatasetId(id.clone()),
        DatasetSpec::Synthetic(x) => pb::dataset::Source::Synthetic(pb::SyntheticDataset {
            samples: x.samples as u32,
            features: x.features,
            classes: x.classes,
            class_ratios: x.class_ratios.clone(),
            separation: Some(x.separation),
            seed: x.seed,
        }),
    };
    let activation = |a: Activation| match a {
        Activation::Relu => pb::Activation::Relu,
        Activation::Tanh => pb::Activation::Tanh,
        Activation::Sigmoid => pb::Activation::Sigmoid,
        Activation::LeakyRelu => pb::Activation::LeakyRelu,
        Activation::Gelu => pb::Activation::Gelu,
    } as i32;
    let mlp = |m: &MlpSpec| pb::Mlp {
        hidden_layers: m.hidden_layers.clone(),
        activation: activation(m.activation),
        batch_norm: m.batch_norm,
        dropout: m.dropout,
    };
    let model = match &s.model {
        ModelSpec::Mlp(m) => pb::model::Kind::Mlp(mlp(m)),
        ModelSpec::TorchScript(t) => pb::model::Kind::Torchscript(pb::TorchScriptModel {
            model_id: t.model_id.clone(),
            input_shape: t.input_shape.map_or_else(Vec::new, |s| s.to_vec()),
        }),
        ModelSpec::Cnn(c) => pb::model::Kind::Cnn(pb::Cnn {
            channels: c.input[0],
            height: c.input[1],
            width: c.input[2],
            blocks: c
                .blocks
                .iter()
                .map(|b| {
                    let (pool, size) = match b.pool {
                        Pool::None => (pb::PoolKind::None, None),
                        Pool::Max(n) => (pb::PoolKind::Max, Some(n)),
                        Pool::Avg(n) => (pb::PoolKind::Avg, Some(n)),
                    };
                    pb::ConvBlock {
                        channels: b.channels,
                        kernel_size: b.kernel,
                        stride: Some(b.stride),
                        padding: b.padding,
                        batch_norm: b.batch_norm,
                        activation: activation(b.activation),
                        pool: pool as i32,
                        pool_size: size,
                    }
                })
                .collect(),
            global_average_pool: c.global_average_pool,
            dense: Some(mlp(&c.dense)),
        }),
    };
    pb::JobSpec {
        name: s.name.clone(),
        dataset: Some(pb::Dataset {
            source: Some(dataset),
        }),
        model: Some(pb::Model { kind: Some(model) }),
        epochs: s.epochs,
        batch_size: s.batch_size,
        learning_rate: s.learning_rate,
        optimizer: Some(optimizer_to_pb(&s.optimizer)),
        class_weights: s.class_weights.clone(),
        validation_fraction: Some(s.validation_fraction),
        seed: s.seed,
        report_every: s.report_every,
        best_model_metric: model_selection_to_pb(s.best_model_metric) as i32,
        class_weighting: match s.class_weighting {
            ClassWeighting::None => pb::ClassWeighting::None,
            ClassWeighting::Manual => pb::ClassWeighting::Manual,
            ClassWeighting::Balanced => pb::ClassWeighting::Balanced,
            ClassWeighting::EffectiveNumber { .. } => pb::ClassWeighting::EffectiveNumber,
        } as i32,
        effective_number_beta: match s.class_weighting {
            ClassWeighting::EffectiveNumber { beta } => Some(beta),
            _ => None,
        },
        resampling: s.resampling.map(|r| {
            let (method, k_neighbors) = match r.method {
                ResamplingMethod::RandomOversample => {
                    (pb::ResamplingMethod::RandomOversample, None)
                }
                ResamplingMethod::RandomUndersample => {
                    (pb::ResamplingMethod::RandomUndersample, None)
                }
                ResamplingMethod::Smote { k_neighbors } => {
                    (pb::ResamplingMethod::Smote, Some(k_neighbors))
                }
            };
            pb::Resampling {
                method: method as i32,
                ratio: Some(r.ratio),
                k_neighbors,
                per_epoch: r.per_epoch,
            }
        }),
        ensemble: s.ensemble.map(|e| pb::Ensemble {
            kind: pb::EnsembleKind::BalancedBagging as i32,
            members: e.members(),
        }),
        lr_schedule: lr_schedule_to_pb(s.lr_schedule),
        layer_diagnostics: Some(s.layer_diagnostics),
        gradient_clip_norm: s.gradient_clip_norm,
        early_stopping: s.early_stopping.map(|e| pb::EarlyStopping {
            patience: e.patience,
            min_delta: e.min_delta,
        }),
        loss: Some(match s.loss {
            LossSpec::CrossEntropy => pb::Loss {
                kind: pb::LossKind::CrossEntropy as i32,
                gamma: None,
            },
            LossSpec::Focal { gamma } => pb::Loss {
                kind: pb::LossKind::Focal as i32,
                gamma: Some(gamma),
            },
        }),
    }
}

fn optimizer_to_pb(o: &OptimizerSpec) -> pb::Optimizer {
    use pb::OptimizerKind as K;
    let base = pb::Optimizer::default();
    match *o {
        OptimizerSpec::Sgd {
            momentum,
            nesterov,
            weight_decay,
        } => pb::Optimizer {
            kind: K::Sgd as i32,
            momentum,
            nesterov,
            weight_decay: Some(weight_decay),
            ..base
        },
        OptimizerSpec::Adam {
            beta1,
            beta2,
            eps,
            weight_decay,
            decoupled,
        } => pb::Optimizer {
            kind: if decoupled { K::Adamw } else { K::Adam } as i32,
            beta1: Some(beta1),
            beta2: Some(beta2),
            eps: Some(eps),
            weight_decay: Some(weight_decay),
            ..base
        },
        OptimizerSpec::RmsProp {
            alpha,
            eps,
            momentum,
            weight_decay,
        } => pb::Optimizer {
            kind: K::Rmsprop as i32,
            rho: Some(alpha),
            eps: Some(eps),
            momentum,
            weight_decay: Some(weight_decay),
            ..base
        },
        OptimizerSpec::AdaDelta {
            rho,
            eps,
            weight_decay,
        } => pb::Optimizer {
            kind: K::Adadelta as i32,
            rho: Some(rho),
            eps: Some(eps),
            weight_decay: Some(weight_decay),
            ..base
        },
    }
}

pub fn status(s: JobStatus) -> pb::JobStatus {
    match s {
        JobStatus::Queued => pb::JobStatus::Queued,
        JobStatus::Running => pb::JobStatus::Running,
        JobStatus::Succeeded => pb::JobStatus::Succeeded,
        JobStatus::Failed => pb::JobStatus::Failed,
        JobStatus::Cancelled => pb::JobStatus::Cancelled,
    }
}

pub fn job(j: &JobSnapshot) -> pb::Job {
    let range = match j.kind {
        JobKind::RangeTest(t) => Some(t),
        JobKind::Training => None,
    };
    pb::Job {
        id: j.id.clone(),
        spec: Some(spec_to_pb(&j.spec)),
        status: status(j.status) as i32,
        message: j.message.clone(),
        created: Some(timestamp(j.created)),
        started: j.started.map(timestamp),
        finished: j.finished.map(timestamp),
        epochs_completed: j.epochs_completed,
        last_epoch: j.last_epoch.as_ref().map(epoch_end),
        parameter_count: j.parameter_count,
        labels: j.labels.clone(),
        train_samples: j.train_samples,
        validation_samples: j.validation_samples,
        device: j.device.clone(),
        best_epoch: j.best.map_or(0, |(e, _)| e),
        best_metric_value: j.best.map(|(_, v)| v),
        feature_names: j.features.names.clone(),
        class_weights: j.class_weights.clone(),
        train_class_counts: j.train_class_counts.clone(),
        resampled_class_counts: j.resampled_class_counts.clone(),
        kind: match j.kind {
            JobKind::Training => pb::JobKind::Training,
            JobKind::RangeTest(_) => pb::JobKind::RangeTest,
        } as i32,
        range_min_lr: range.map(|t| t.min_lr),
        range_max_lr: range.map(|t| t.max_lr),
        range_iterations: range.map(|t| t.iterations),
    }
}

/// A `FindLearningRate` request as the spec and the test's settings (unset: the defaults).
pub fn range_test(req: pb::FindLearningRateRequest) -> Result<(JobSpec, RangeTest), SpecError> {
    let d = RangeTest::DEFAULT;
    Ok((
        job_spec(req.spec)?,
        RangeTest {
            min_lr: req.min_lr.unwrap_or(d.min_lr),
            max_lr: req.max_lr.unwrap_or(d.max_lr),
            iterations: req.iterations.unwrap_or(d.iterations),
        },
    ))
}

fn lr_point(p: &LrPoint) -> pb::LrPoint {
    pb::LrPoint {
        iteration: p.iteration,
        learning_rate: p.learning_rate,
        loss: p.loss,
        smoothed_loss: p.smoothed_loss,
    }
}

fn lr_suggestion(s: &LrSuggestion) -> pb::LrSuggestion {
    pb::LrSuggestion {
        suggested_learning_rate: s.suggested,
        min_loss_learning_rate: s.min_loss,
        diverged: s.diverged,
        iterations: s.iterations,
    }
}

/// What a range-test job's event means to a `FindLearningRate` stream: a point, the
/// result, the job's failure or cancellation, or nothing (its other status changes).
pub fn lr_finder_event(e: &JobEvent) -> Option<Result<pb::LrFinderEvent, JobError>> {
    use pb::lr_finder_event::Kind;
    let kind = match &e.kind {
        EventKind::RangePoint(p) => Kind::Point(lr_point(p)),
        EventKind::RangeResult(s) => Kind::Result(lr_suggestion(s)),
        EventKind::Status { status, message }
            if matches!(status, JobStatus::Failed | JobStatus::Cancelled) =>
        {
            return Some(Err(JobError::RangeTestEnded {
                id: e.job_id.clone(),
                status: *status,
                message: message.clone(),
            }));
        }
        _ => return None,
    };
    Some(Ok(pb::LrFinderEvent {
        kind: Some(kind),
        job_id: e.job_id.clone(),
    }))
}

pub fn event(e: &JobEvent) -> pb::JobEvent {
    use pb::job_event::Kind;
    let kind = match &e.kind {
        EventKind::Status { status: s, message } => Kind::Status(pb::StatusChange {
            status: status(*s) as i32,
            message: message.clone(),
        }),
        EventKind::Iteration(p) => Kind::Iteration(iteration(p)),
        EventKind::Epoch(x) => Kind::Epoch(epoch_end(x)),
        EventKind::RangePoint(p) => Kind::RangePoint(lr_point(p)),
        EventKind::RangeResult(r) => Kind::RangeResult(lr_suggestion(r)),
    };
    pb::JobEvent {
        job_id: e.job_id.clone(),
        seq: e.seq,
        time: Some(timestamp(e.time)),
        kind: Some(kind),
    }
}

fn iteration(p: &IterationProgress) -> pb::IterationProgress {
    pb::IterationProgress {
        epoch: p.epoch,
        iteration: p.iteration,
        iterations_per_epoch: p.iterations_per_epoch,
        global_step: p.global_step,
        loss: p.loss,
        learning_rate: p.learning_rate,
        samples_per_second: p.samples_per_second,
        member: p.member,
    }
}

fn epoch_end(e: &EpochEnd) -> pb::EpochEnd {
    pb::EpochEnd {
        epoch: e.epoch,
        train: Some(metrics(&e.train)),
        validation: e.validation.as_ref().map(metrics),
        seconds: e.seconds,
        best_epoch: e.best_epoch,
        member: e.member,
        ensemble: e.ensemble,
        generalization_gap: e.generalization_gap,
        diagnostics_seconds: e.diagnostics_seconds,
        overfitting: e.overfitting,
        layers: e
            .layers
            .iter()
            .map(|l| pb::LayerDiagnostics {
                name: l.name.clone(),
                activation_mean: l.activation_mean,
                activation_std: l.activation_std,
                saturated_fraction: l.saturated_fraction,
                dead_fraction: l.dead_fraction,
                weight_norm: l.weight_norm,
                gradient_norm: l.gradient_norm,
                update_ratio: l.update_ratio,
            })
            .collect(),
    }
}

fn averages(a: &Averages) -> pb::Averages {
    pb::Averages {
        precision: a.precision,
        recall: a.recall,
        f1: a.f1,
    }
}

fn class_metrics(c: &ClassMetrics) -> pb::ClassMetrics {
    pb::ClassMetrics {
        label: c.label.clone(),
        precision: c.precision,
        recall: c.recall,
        f1: c.f1,
        support: c.support,
        roc_auc: c.roc_auc,
    }
}

fn confusion(c: &ConfusionMatrix) -> pb::ConfusionMatrix {
    pb::ConfusionMatrix {
        labels: c.labels.clone(),
        counts: c.counts.clone(),
    }
}

fn metrics(m: &Metrics) -> pb::Metrics {
    pb::Metrics {
        loss: m.loss,
        accuracy: m.accuracy,
        confusion_matrix: Some(confusion(&m.confusion_matrix)),
        per_class: m.per_class.iter().map(class_metrics).collect(),
        r#macro: Some(averages(&m.macro_avg)),
        weighted: Some(averages(&m.weighted)),
        roc_auc: m.roc_auc,
        curves: m.curves.iter().map(class_curves).collect(),
        average_precision: m.average_precision,
    }
}

fn class_curves(c: &ClassCurves) -> pb::ClassCurves {
    pb::ClassCurves {
        label: c.label.clone(),
        roc: c.roc.as_ref().map(|r| pb::RocCurve {
            fpr: r.fpr.clone(),
            tpr: r.tpr.clone(),
            thresholds: r.thresholds.clone(),
        }),
        pr: c.pr.as_ref().map(|p| pb::PrCurve {
            precision: p.precision.clone(),
            recall: p.recall.clone(),
            thresholds: p.thresholds.clone(),
            average_precision: p.average_precision,
        }),
    }
}

/// `labels` is `[negative, positive]`, the order of the confusion counts.
fn threshold_point(p: &ThresholdPoint, labels: &[String]) -> pb::ThresholdPoint {
    pb::ThresholdPoint {
        threshold: p.threshold,
        precision: p.precision,
        recall: p.recall,
        f1: p.f1,
        confusion_matrix: Some(pb::ConfusionMatrix {
            labels: labels.to_vec(),
            counts: p.confusion.to_vec(),
        }),
    }
}

pub fn evaluation(e: &Evaluation, epoch: u32) -> pb::Evaluation {
    let labels = &e.metrics.confusion_matrix.labels;
    let label = |i: usize| labels.get(i).cloned().unwrap_or_default();
    pb::Evaluation {
        metrics: Some(metrics(&e.metrics)),
        balanced_accuracy: e.balanced_accuracy,
        matthews_corrcoef: e.mcc,
        log_loss: e.log_loss,
        brier_score: e.brier,
        threshold_report: e.threshold_report.as_ref().map(|t| {
            let sides = [label(1 - t.positive.min(1)), label(t.positive)];
            pb::ThresholdReport {
                positive_label: label(t.positive),
                best_f1: t.best_f1.as_ref().map(|p| threshold_point(p, &sides)),
                target_recall: t
                    .at_target_recall
                    .as_ref()
                    .map(|p| threshold_point(p, &sides)),
            }
        }),
        epoch,
        rows: e.metrics.confusion_matrix.counts.iter().sum(),
    }
}

pub fn predictions(p: &Predictions) -> pb::PredictResponse {
    let k = p.labels.len().max(1);
    pb::PredictResponse {
        predictions: p
            .probabilities
            .chunks_exact(k)
            .zip(&p.classes)
            .map(|(probs, &c)| pb::Prediction {
                label: p.labels[c].clone(),
                class_index: c as u32,
                probabilities: probs.to_vec(),
            })
            .collect(),
        labels: p.labels.clone(),
        epoch: p.epoch,
    }
}

pub fn dataset_info(d: &DatasetInfo) -> pb::DatasetInfo {
    pb::DatasetInfo {
        id: d.id.clone(),
        name: d.name.clone(),
        rows: d.rows,
        features: d.features,
        classes: d.labels.len() as u32,
        labels: d.labels.clone(),
        class_counts: d.class_counts.clone(),
        bytes: d.bytes,
        sha256: d.sha256.clone(),
        created: Some(timestamp(d.created)),
        label_column: d.label_column.clone(),
    }
}

pub fn model_info(m: &ModelInfo) -> pb::ModelInfo {
    pb::ModelInfo {
        id: m.id.clone(),
        name: m.name.clone(),
        bytes: m.bytes,
        sha256: m.sha256.clone(),
        created: Some(timestamp(m.created)),
        parameter_count: m.parameter_count,
        parameters: m
            .parameters
            .iter()
            .map(|p| pb::ModelParameter {
                name: p.name.clone(),
                shape: p.shape.clone(),
                requires_grad: p.requires_grad,
            })
            .collect(),
    }
}
