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
