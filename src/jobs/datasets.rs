//! Uploaded datasets: streamed in through a validator, kept under the state directory,
//! and protected from deletion while a job needs them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use super::{JobError, JobManager};
use crate::data::upload::{CsvUpload, UploadError, UploadLimits};
use crate::domain::{DatasetInfo, DatasetSpec, JobStatus, SpecError};
use crate::store::Store;

/// The first message of an upload.
#[derive(Debug, Clone, Default)]
pub struct UploadHeader {
    pub name: String,
    /// `None`: the last column.
    pub label_column: Option<String>,
    pub sha256: Option<String>,
}

/// An upload in progress. Dropping it before `finish` deletes what was received.
pub struct DatasetUpload {
    csv: Option<CsvUpload>,
    /// Set once the file has been moved into place.
    kept: bool,
    tmp: PathBuf,
    id: String,
    header: UploadHeader,
    store: Arc<Store>,
}

impl DatasetUpload {
    /// Validates and stores the next bytes.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), JobError> {
        match self.csv.as_mut() {
            Some(csv) => csv.push(chunk).map_err(JobError::Upload),
            None => Err(JobError::Upload(UploadError::Io(std::io::Error::other(
                "this upload already ended",
            )))),
        }
    }

    /// Checks the end of the file and the checksum, then makes the dataset visible.
    pub fn finish(mut self) -> Result<DatasetInfo, JobError> {
        let csv = self
            .csv
            .take()
            .ok_or_else(|| JobError::Internal("upload already finished".into()))?;
        let summary = csv
            .finish(self.header.sha256.as_deref())
            .map_err(JobError::Upload)?;
        let info = DatasetInfo {
            id: self.id.clone(),
            name: self.header.name.clone(),
            rows: summary.rows,
            features: summary.features,
            labels: summary.labels,
            class_counts: summary.class_counts,
            bytes: summary.bytes,
            sha256: summary.sha256,
            created: SystemTime::now(),
            label_column: summary.label_column,
        };
        std::fs::rename(&self.tmp, self.store.dataset_file(&self.id))
            .map_err(|e| JobError::Internal(format!("cannot keep the uploaded file: {e}")))?;
        self.kept = true;
        if let Err(e) = self.store.insert_dataset(&info) {
            let _ = std::fs::remove_file(self.store.dataset_file(&self.id));
            return Err(e.into());
        }
        Ok(info)
    }
}

impl Drop for DatasetUpload {
    fn drop(&mut self) {
        // The upload failed or was abandoned: nothing of it stays.
        if !self.kept {
            drop(self.csv.take());
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

impl JobManager {
    /// Starts an upload. Blocking file I/O: call from a blocking context.
    pub fn begin_upload(&self, header: UploadHeader) -> Result<DatasetUpload, JobError> {
        if header.name.trim().is_empty() {
            return Err(SpecError::new("header.name", "is empty; give the dataset a name").into());
        }
        let store = self.shared.store.clone();
        let id = uuid::Uuid::new_v4().to_string();
        let tmp = store.datasets_dir().join("tmp").join(format!("{id}.part"));
        let csv = CsvUpload::new(
            &tmp,
            &header.name,
            header.label_column.as_deref(),
            UploadLimits {
                max_bytes: self.shared.config.max_dataset_bytes,
            },
        )
        .map_err(JobError::Upload)?;
        Ok(DatasetUpload {
            csv: Some(csv),
            kept: false,
            tmp,
            id,
            header,
            store,
        })
    }

    /// Every uploaded dataset, oldest first.
    pub fn datasets(&self) -> Result<Vec<DatasetInfo>, JobError> {
        Ok(self.shared.store.datasets()?)
    }

    pub fn dataset(&self, id: &str) -> Result<DatasetInfo, JobError> {
        self.shared
            .store
            .dataset(id)?
            .ok_or_else(|| JobError::DatasetNotFound(id.to_string()))
    }

    /// Deletes a dataset unless a queued or running job uses it.
    pub fn delete_dataset(&self, id: &str) -> Result<(), JobError> {
        let state = self.shared.lock();
        let users: Vec<String> = state
            .order
            .iter()
            .filter(|j| matches!(&j.spec.dataset, DatasetSpec::Uploaded { id: d } if d == id))
            .filter(|j| matches!(j.status(), JobStatus::Queued | JobStatus::Running))
            .map(|j| j.id.clone())
            .collect();
        if !users.is_empty() {
            return Err(JobError::DatasetInUse {
                id: id.to_string(),
                jobs: users,
            });
        }
        // Deleted under the lock, so no job can start using it in between.
        if self.shared.store.delete_dataset(id)? {
            Ok(())
        } else {
            Err(JobError::DatasetNotFound(id.to_string()))
        }
    }
}
