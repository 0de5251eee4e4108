//! A trained job's model: which version (`model`), export formats and evaluation data
//! (pb → domain), predictions and evaluations (domain → pb).

use super::enum_field;
use crate::domain::{DatasetSpec, ModelVersion, SpecError};
use crate::jobs::{EvalData, ExportFormat, Predictions};
use crate::metrics::Evaluation;
use crate::metrics::curves::ThresholdPoint;
use crate::transport::pb;

/// Unspecified is the proto's default, the best epoch's model.
impl From<pb::ModelVersion> for ModelVersion {
    fn from(v: pb::ModelVersion) -> Self {
        match v {
            pb::ModelVersion::Unspecified | pb::ModelVersion::Best => ModelVersion::Best,
            pb::ModelVersion::Last => ModelVersion::Last,
        }
    }
}

/// A request's `model` field.
pub fn model_version(v: i32) -> Result<ModelVersion, SpecError> {
    enum_field::<pb::ModelVersion, _>(v, "model", |v| {
        format!("{v} is not a ModelVersion; use MODEL_VERSION_BEST or MODEL_VERSION_LAST")
    })
}

/// A request's `format` field, which has no default.
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

impl TryFrom<pb::evaluate_request::Data> for EvalData {
    type Error = SpecError;

    fn try_from(d: pb::evaluate_request::Data) -> Result<Self, SpecError> {
        use pb::evaluate_request::Data;
        Ok(match d {
            Data::DatasetId(id) => EvalData::Dataset(DatasetSpec::Uploaded { id }),
            Data::Csv(c) => EvalData::Dataset(c.into()),
            Data::Arrays(a) => EvalData::Dataset(DatasetSpec::Arrays(a.try_into().map_err(
                |e: SpecError| SpecError::new(e.field.replace("spec.dataset.", ""), e.message),
            )?)),
            Data::Rows(r) => {
                EvalData::Rows(r.rows.into_iter().map(|r| (r.values, r.label)).collect())
            }
        })
    }
}

/// An `EvaluateRequest`'s data, which is required.
pub fn eval_data(d: Option<pb::evaluate_request::Data>) -> Result<EvalData, SpecError> {
    d.ok_or_else(|| {
        SpecError::new(
            "data",
            "is required: give dataset_id, csv, arrays or rows with labels",
        )
    })?
    .try_into()
}

impl From<&Predictions> for pb::PredictResponse {
    fn from(p: &Predictions) -> Self {
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
}

/// `epoch` is the one whose model was evaluated. A function, not an impl: the evaluation
/// does not know it.
pub fn evaluation(e: &Evaluation, epoch: u32) -> pb::Evaluation {
    let labels = &e.metrics.confusion_matrix.labels;
    let label = |i: usize| labels.get(i).cloned().unwrap_or_default();
    pb::Evaluation {
        metrics: Some((&e.metrics).into()),
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

/// `labels` is `[negative, positive]`, the order of the confusion counts; the point does
/// not carry them.
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
