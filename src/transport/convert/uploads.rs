//! Uploaded datasets and models as the Datasets and Models services report them (domain → pb).

use super::timestamp;
use crate::domain::{DatasetInfo, ModelInfo, ModelParameter};
use crate::transport::pb;

impl From<&DatasetInfo> for pb::DatasetInfo {
    fn from(d: &DatasetInfo) -> Self {
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
}

impl From<&ModelInfo> for pb::ModelInfo {
    fn from(m: &ModelInfo) -> Self {
        pb::ModelInfo {
            id: m.id.clone(),
            name: m.name.clone(),
            bytes: m.bytes,
            sha256: m.sha256.clone(),
            created: Some(timestamp(m.created)),
            parameter_count: m.parameter_count,
            parameters: m.parameters.iter().map(pb::ModelParameter::from).collect(),
        }
    }
}

impl From<&ModelParameter> for pb::ModelParameter {
    fn from(p: &ModelParameter) -> Self {
        pb::ModelParameter {
            name: p.name.clone(),
            shape: p.shape.clone(),
            requires_grad: p.requires_grad,
        }
    }
}
