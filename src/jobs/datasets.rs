//! Uploaded datasets: streamed in through a validator, kept under the state directory,
//! and protected from deletion while a job needs them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use super::{JobError, JobManager};
use crate::data::upload::{CsvUpload, UploadError, UploadLimits};
use crate::domain::UploadKind;
use crate::domain::{DatasetInfo, DatasetSpec, JobStatus, SpecError};
use crate::store::StateStore;

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
    part: PartFile,
    id: String,
    header: UploadHeader,
    store: Arc<dyn StateStore>,
}

/// An upload's temporary file: deleted when dropped, unless it was kept.
pub(super) struct PartFile {
    pub(super) tmp: PathBuf,
    /// Set once the file has been moved into place.
    kept: bool,
}

impl PartFile {
    /// `<dir>/tmp/<id>.part`.
    pub(super) fn new(dir: &std::path::Path, id: &str) -> Self {
        Self {
            tmp: dir.join("tmp").join(format!("{id}.part")),
            kept: false,
        }
    }

    /// Moves the file to `dest`; it is no longer this guard's to delete.
    pub(super) fn keep(&mut self, dest: &std::path::Path) -> Result<(), JobError> {
        std::fs::rename(&self.tmp, dest)
            .map_err(|e| JobError::Internal(format!("cannot keep the uploaded file: {e}")))?;
        self.kept = true;
        Ok(())
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        // The upload failed or was abandoned: nothing of it stays.
        if !self.kept {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// The error of a step of an upload of `kind`.
pub(super) fn upload_error(kind: UploadKind) -> impl Fn(UploadError) -> JobError {
    move |error| JobError::Upload { kind, error }
}

/// A chunk arriving after the upload ended.
pub(super) fn already_ended(kind: UploadKind) -> JobError {
    upload_error(kind)(UploadError::Io(std::io::Error::other(
        "this upload already ended",
    )))
}

/// An upload receiving its bytes.
pub trait Upload {
    /// Validates and stores the next bytes.
    fn push(&mut self, chunk: &[u8]) -> Result<(), JobError>;
}

impl Upload for DatasetUpload {
    fn push(&mut self, chunk: &[u8]) -> Result<(), JobError> {
        match self.csv.as_mut() {
            Some(csv) => csv.push(chunk).map_err(upload_error(UploadKind::Dataset)),
            None => Err(already_ended(UploadKind::Dataset)),
        }
    }
}

impl DatasetUpload {
    /// Checks the end of the file and the checksum, then makes the dataset visible.
    pub fn finish(mut self) -> Result<DatasetInfo, JobError> {
        let csv = self
            .csv
            .take()
            .ok_or_else(|| JobError::Internal("upload already finished".into()))?;
        let summary = csv
            .finish(self.header.sha256.as_deref())
            .map_err(upload_error(UploadKind::Dataset))?;
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
        self.part.keep(&self.store.dataset_file(&self.id))?;
        if let Err(e) = self.store.insert_dataset(&info) {
            let _ = std::fs::remove_file(self.store.dataset_file(&self.id));
            return Err(e.into());
        }
        Ok(info)
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
        let part = PartFile::new(&store.datasets_dir(), &id);
        let csv = CsvUpload::new(
            &part.tmp,
            &header.name,
            header.label_column.as_deref(),
            UploadLimits::dataset(self.shared.config.max_dataset_bytes),
        )
        .map_err(upload_error(UploadKind::Dataset))?;
        Ok(DatasetUpload {
            csv: Some(csv),
            part,
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
            .ok_or_else(|| JobError::not_found(UploadKind::Dataset, id))
    }

    /// Deletes a dataset unless a queued or running job uses it.
    pub fn delete_dataset(&self, id: &str) -> Result<(), JobError> {
        self.delete_unused(
            UploadKind::Dataset,
            id,
            |spec| matches!(&spec.dataset, DatasetSpec::Uploaded { id: d } if d == id),
            |store| store.delete_dataset(id),
        )
    }

    /// Deletes an upload (`delete` returns whether there was one) unless a queued or
    /// running job `uses` it.
    pub(super) fn delete_unused(
        &self,
        kind: UploadKind,
        id: &str,
        uses: impl Fn(&crate::domain::JobSpec) -> bool,
        delete: impl FnOnce(&dyn StateStore) -> Result<bool, crate::store::StoreError>,
    ) -> Result<(), JobError> {
        self.shared.scheduler.with_jobs(|jobs| {
            let users: Vec<String> = jobs
                .iter()
                .filter(|j| uses(&j.spec))
                .filter(|j| matches!(j.status(), JobStatus::Queued | JobStatus::Running))
                .map(|j| j.id.clone())
                .collect();
            if !users.is_empty() {
                return Err(JobError::InUse {
                    kind,
                    id: id.to_string(),
                    jobs: users,
                });
            }
            // Deleted under the lock, so no job can start using it in between.
            if delete(&*self.shared.store)? {
                Ok(())
            } else {
                Err(JobError::not_found(kind, id))
            }
        })
    }
}
