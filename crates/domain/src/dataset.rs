//! What the server keeps of uploads: datasets and TorchScript models.

use std::time::SystemTime;

/// A dataset uploaded to the server and kept in its state directory.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DatasetInfo {
    pub id: String,
    pub name: String,
    pub rows: u64,
    pub features: u32,
    pub labels: Vec<String>,
    pub class_counts: Vec<u64>,
    pub bytes: u64,
    pub sha256: String,
    pub created: SystemTime,
    pub label_column: String,
}

/// A TorchScript module uploaded to the server and kept in its state directory.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelInfo {
    pub id: String,
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
    pub created: SystemTime,
    /// Elements of all its parameters.
    pub parameter_count: u64,
    /// In `named_parameters()` order.
    pub parameters: Vec<ModelParameter>,
}

/// One parameter of an uploaded module.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelParameter {
    /// Dotted PyTorch name, e.g. `0.weight`.
    pub name: String,
    pub shape: Vec<i64>,
    pub requires_grad: bool,
}

/// What an upload is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadKind {
    Dataset,
    Model,
}

impl UploadKind {
    pub const ALL: [UploadKind; 2] = [UploadKind::Dataset, UploadKind::Model];

    /// The folder of the state directory (and the store's table) that holds them.
    pub fn dir(self) -> &'static str {
        match self {
            Self::Dataset => "datasets",
            Self::Model => "models",
        }
    }

    /// The server flag that limits their size.
    pub fn limit_flag(self) -> &'static str {
        match self {
            Self::Dataset => "--max-dataset-bytes",
            Self::Model => "--max-model-bytes",
        }
    }
}

impl std::fmt::Display for UploadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Dataset => "dataset",
            Self::Model => "model",
        })
    }
}
