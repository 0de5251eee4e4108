//! The one place where protobuf types and domain types meet.

use std::time::SystemTime;

use super::pb;
use crate::domain::{
    Activation, DatasetInfo, DatasetSpec, EpochEnd, EventKind, IterationProgress, JobEvent,
    JobSpec, JobStatus, MlpSpec, ModelSpec, OptimizerSpec, SpecError, SyntheticSpec,
};
use crate::jobs::{JobQuery, JobSnapshot};
use crate::metrics::{Averages, ClassMetrics, ConfusionMatrix, Metrics};

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
    })
}

fn dataset(d: Option<pb::Dataset>) -> Result<DatasetSpec, SpecError> {
    use pb::dataset::Source;
    match d.and_then(|d| d.source) {
        Some(Source::Csv(c)) => Ok(DatasetSpec::Csv {
            path: c.path,
            label_column: (!c.label_column.is_empty()).then_some(c.label_column),
        }),
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

fn model(m: Option<pb::Model>) -> Result<ModelSpec, SpecError> {
    match m.and_then(|m| m.kind) {
        Some(pb::model::Kind::Mlp(mlp)) => Ok(ModelSpec::Mlp(MlpSpec {
            hidden_layers: mlp.hidden_layers,
            activation: activation(mlp.activation)?,
            batch_norm: mlp.batch_norm,
            dropout: mlp.dropout,
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
    let ModelSpec::Mlp(m) = &s.model;
    let activation = match m.activation {
        Activation::Relu => pb::Activation::Relu,
        Activation::Tanh => pb::Activation::Tanh,
        Activation::Sigmoid => pb::Activation::Sigmoid,
        Activation::LeakyRelu => pb::Activation::LeakyRelu,
        Activation::Gelu => pb::Activation::Gelu,
    };
    pb::JobSpec {
        name: s.name.clone(),
        dataset: Some(pb::Dataset {
            source: Some(dataset),
        }),
        model: Some(pb::Model {
            kind: Some(pb::model::Kind::Mlp(pb::Mlp {
                hidden_layers: m.hidden_layers.clone(),
                activation: activation as i32,
                batch_norm: m.batch_norm,
                dropout: m.dropout,
            })),
        }),
        epochs: s.epochs,
        batch_size: s.batch_size,
        learning_rate: s.learning_rate,
        optimizer: Some(optimizer_to_pb(&s.optimizer)),
        class_weights: s.class_weights.clone(),
        validation_fraction: Some(s.validation_fraction),
        seed: s.seed,
        report_every: s.report_every,
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
    }
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
    }
}

fn epoch_end(e: &EpochEnd) -> pb::EpochEnd {
    pb::EpochEnd {
        epoch: e.epoch,
        train: Some(metrics(&e.train)),
        validation: e.validation.as_ref().map(metrics),
        seconds: e.seconds,
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
