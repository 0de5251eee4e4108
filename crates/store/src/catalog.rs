//! Uploads: the records of uploaded datasets and TorchScript models.

use gradstream_domain::{DatasetInfo, ModelInfo};

use super::StoreError;

/// The uploads a job can name. Lists are oldest first. A delete removes the record and
/// then the uploaded file, and returns false when there was no record.
pub trait UploadCatalog: Send + Sync {
    /// An id already taken is a [`Conflict`](crate::StoreErrorKind::Conflict).
    fn insert_dataset(&self, info: &DatasetInfo) -> Result<(), StoreError>;
    fn dataset(&self, id: &str) -> Result<Option<DatasetInfo>, StoreError>;
    fn datasets(&self) -> Result<Vec<DatasetInfo>, StoreError>;
    fn delete_dataset(&self, id: &str) -> Result<bool, StoreError>;

    /// An id already taken is a [`Conflict`](crate::StoreErrorKind::Conflict).
    fn insert_model(&self, info: &ModelInfo) -> Result<(), StoreError>;
    fn model(&self, id: &str) -> Result<Option<ModelInfo>, StoreError>;
    fn models(&self) -> Result<Vec<ModelInfo>, StoreError>;
    fn delete_model(&self, id: &str) -> Result<bool, StoreError>;
}
