//! Uploaded TorchScript modules (the `Models` service; `ModelInfo` in the contract):
//! streamed in, checked to load as a trainable module, kept under the state directory, and
//! protected from deletion while a job needs them. At submit, a job's `model.torchscript`
//! is resolved to its file and tried on the job's data.

use std::sync::Arc;
use std::time::SystemTime;

use super::datasets::{PartFile, Upload, already_ended, upload_error};
use super::{JobError, JobManager};
use crate::data::upload::{UploadError, UploadLimits, UploadSink};
use crate::domain::UploadKind;
use crate::domain::{JobSpec, ModelInfo, ModelSpec, SpecError};
use crate::engine::script;
use crate::store::StateStore;

/// The first message of a model upload.
#[derive(Debug, Clone, Default)]
pub struct ModelHeader {
    pub name: String,
    pub sha256: Option<String>,
}

/// A model upload in progress. Dropping it before `finish` deletes what was received.
pub struct ModelUpload {
    sink: Option<UploadSink>,
    part: PartFile,
    id: String,
    header: ModelHeader,
    store: Arc<dyn StateStore>,
}

impl Upload for ModelUpload {
    fn push(&mut self, chunk: &[u8]) -> Result<(), JobError> {
        match self.sink.as_mut() {
            Some(sink) => sink.write(chunk).map_err(upload_error(UploadKind::Model)),
            None => Err(already_ended(UploadKind::Model)),
        }
    }
}

impl ModelUpload {
    /// Checks the checksum and that the file loads as a trainable TorchScript module, then
    /// makes the model visible.
    pub fn finish(mut self) -> Result<ModelInfo, JobError> {
        let failed = upload_error(UploadKind::Model);
        let sink = self
            .sink
            .take()
            .ok_or_else(|| already_ended(UploadKind::Model))?;
        let (bytes, sha256) = sink
            .finish(self.header.sha256.as_deref())
            .map_err(&failed)?;
        let parameters =
            script::inspect(&self.part.tmp).map_err(|m| failed(UploadError::BadModel(m)))?;
        let info = ModelInfo {
            id: self.id.clone(),
            name: self.header.name.clone(),
            bytes,
            sha256,
            created: SystemTime::now(),
            parameter_count: parameters
                .iter()
                .map(|p| p.shape.iter().product::<i64>().max(0) as u64)
                .sum(),
            parameters,
        };
        let dest = self.store.model_file(&self.id);
        self.part.keep(&dest)?;
        if let Err(e) = self.store.insert_model(&info) {
            let _ = std::fs::remove_file(&dest);
            return Err(e.into());
        }
        Ok(info)
    }
}

impl JobManager {
    /// Starts a model upload. Blocking file I/O: call from a blocking context.
    pub fn begin_model_upload(&self, header: ModelHeader) -> Result<ModelUpload, JobError> {
        if header.name.trim().is_empty() {
            return Err(SpecError::new("header.name", "is empty; give the model a name").into());
        }
        let store = self.shared.store.clone();
        let id = uuid::Uuid::new_v4().to_string();
        let part = PartFile::new(&store.models_dir(), &id);
        let sink = UploadSink::create(
            &part.tmp,
            UploadLimits::model(self.shared.config.max_model_bytes),
        )
        .map_err(upload_error(UploadKind::Model))?;
        Ok(ModelUpload {
            sink: Some(sink),
            part,
            id,
            header,
            store,
        })
    }

    /// Every uploaded model, oldest first.
    pub fn models(&self) -> Result<Vec<ModelInfo>, JobError> {
        Ok(self.shared.store.models()?)
    }

    pub fn model(&self, id: &str) -> Result<ModelInfo, JobError> {
        self.shared
            .store
            .model(id)?
            .ok_or_else(|| JobError::not_found(UploadKind::Model, id))
    }

    /// Deletes a model unless a queued or running job uses it.
    pub fn delete_model(&self, id: &str) -> Result<(), JobError> {
        self.delete_unused(
            UploadKind::Model,
            id,
            |spec| matches!(&spec.model, ModelSpec::TorchScript(s) if s.model_id == id),
            |store| store.delete_model(id),
        )
    }

    /// Fills in a `model.torchscript` spec's file and parameter count from the uploaded
    /// model (whether it needs batches of two is filled by [`fit_model`] once the data is
    /// known).
    pub(super) fn resolve_model(&self, spec: &mut JobSpec) -> Result<(), JobError> {
        let ModelSpec::TorchScript(s) = &mut spec.model else {
            return Ok(());
        };
        let Some(info) = self.shared.store.model(&s.model_id)? else {
            return Err(SpecError::new(
                "spec.model.torchscript.model_id",
                format!(
                    "no model with id '{}'; upload it with UploadModel first, or list the known ones with ListModels",
                    s.model_id
                ),
            )
            .into());
        };
        s.file = self.shared.store.model_file(&s.model_id);
        s.parameters = info.parameter_count;
        Ok(())
    }
}

/// Tries a `model.torchscript` module on data of `width` features and `classes` classes,
/// and records whether it needs training batches of two rows.
pub(super) fn fit_model(spec: &mut JobSpec, width: usize, classes: usize) -> Result<(), JobError> {
    let ModelSpec::TorchScript(s) = &mut spec.model else {
        return Ok(());
    };
    s.needs_batch_of_two = script::check_fit(&s.file, s.input_shape, width, classes)
        .map_err(|m| SpecError::new("spec.model.torchscript", m))?;
    Ok(())
}
