//! Using a job's trained models: predictions, evaluation on new data, export. The model of
//! an epoch is read from that epoch's checkpoint (the best epoch's is kept when older
//! checkpoints are pruned) and cached, so repeated calls do not reload it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use tch::Device;

use super::job::{Job, JobSnapshot};
use super::{JobError, JobManager};
use crate::data::{self, DataError, Dataset};
use crate::domain::{DatasetSpec, ModelVersion, RunId, SpecError};
use crate::engine::{LossFn, Portable, TrainedModel};
use crate::metrics::curves::full_report_for;
use crate::metrics::{self, Evaluation};
use crate::store::StoreErrorKind;

/// Models kept loaded, most recently used last.
const CACHED_MODELS: usize = 4;

/// Class probabilities for a batch of rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    pub labels: Vec<String>,
    /// The epoch whose model answered.
    pub epoch: u32,
    /// Row-major `n x k`.
    pub probabilities: Vec<f32>,
    /// The most probable class of each row (ties go to the lower index).
    pub classes: Vec<usize>,
}

/// Labelled data to evaluate on.
#[derive(Debug, Clone)]
pub enum EvalData {
    /// An uploaded dataset or a CSV file in the data directory.
    Dataset(DatasetSpec),
    /// Rows sent with the request: raw feature values and a label.
    Rows(Vec<(Vec<f32>, String)>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    TorchScript,
    Safetensors,
}

/// One exported file.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedFile {
    pub name: String,
    pub bytes: Vec<u8>,
}

impl ExportedFile {
    pub fn sha256(&self) -> String {
        format!("{:x}", Sha256::digest(&self.bytes))
    }
}

type Loaded = Arc<Mutex<TrainedModel>>;
/// Job, run, epoch, and whether the model is on the CPU.
type CacheKey = (String, RunId, u32, bool);

/// Where a job's model is: a run's epoch checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ModelAt {
    run: RunId,
    epoch: u32,
}

#[derive(Default)]
pub(super) struct ModelCache {
    entries: Mutex<VecDeque<(CacheKey, Loaded)>>,
}

impl JobManager {
    /// Class probabilities of raw feature rows.
    pub fn predict(
        &self,
        job_id: &str,
        version: ModelVersion,
        rows: &[Vec<f32>],
    ) -> Result<Predictions, JobError> {
        let (snap, ModelAt { epoch, .. }, model) =
            self.trained(job_id, version, self.shared.config.device)?;
        let flat = flatten_rows(rows.iter().map(Vec::as_slice), &snap, "rows")?;
        let probabilities = lock(&model).probabilities(&flat)?;
        let k = snap.labels.len();
        Ok(Predictions {
            labels: snap.labels,
            epoch,
            classes: metrics::argmax_rows(&probabilities, k),
            probabilities,
        })
    }

    /// Every metric and curve of the model on labelled data.
    pub fn evaluate(
        &self,
        job_id: &str,
        version: ModelVersion,
        data: EvalData,
        target_recall: Option<f64>,
        positive_label: Option<&str>,
    ) -> Result<(u32, Evaluation), JobError> {
        let snap = self.shared.scheduler.find(job_id)?.snapshot();
        let positive = positive_label
            .map(|l| class_of(&snap.labels, l, "positive_label"))
            .transpose()?;
        if let Some(r) = target_recall {
            if !(r > 0.0 && r <= 1.0) {
                return Err(SpecError::new(
                    "target_recall",
                    format!("{r} is not a recall; give a value in (0, 1], e.g. 0.9"),
                )
                .into());
            }
            if snap.labels.len() != 2 {
                return Err(SpecError::new(
                    "target_recall",
                    format!(
                        "applies to binary problems only; this job has {} classes",
                        snap.labels.len()
                    ),
                )
                .into());
            }
        }
        let (flat, actual) = match data {
            EvalData::Rows(rows) => {
                if rows.is_empty() {
                    return Err(
                        SpecError::new("rows", "is empty; send at least one labelled row").into(),
                    );
                }
                let flat =
                    flatten_rows(rows.iter().map(|(v, _)| v.as_slice()), &snap, "rows.rows")?;
                let actual = rows
                    .iter()
                    .enumerate()
                    .map(|(i, (_, label))| {
                        class_of(&snap.labels, label, &format!("rows.rows[{i}].label"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                (flat, actual)
            }
            EvalData::Dataset(spec) => {
                let config = &self.shared.config;
                if let DatasetSpec::Arrays(a) = &spec {
                    // Evaluated in memory: refuse before reading more than the limit.
                    let arrays = data::open_arrays(a, &config.data_dir).map_err(eval_data_error)?;
                    let bytes = (arrays.rows() as u64).saturating_mul(arrays.width() as u64 * 4);
                    if bytes > config.max_in_memory_dataset_bytes {
                        return Err(SpecError::new(
                            "arrays",
                            format!(
                                "{} rows x {} features is {bytes} bytes, more than Evaluate reads into memory (--max-in-memory-dataset-bytes, {}); evaluate a sample of the rows",
                                arrays.rows(),
                                arrays.width(),
                                config.max_in_memory_dataset_bytes
                            ),
                        )
                        .into());
                    }
                }
                let ds = data::load(&spec, &config.data_dir, &*self.shared.store)
                    .map_err(eval_data_error)?;
                dataset_rows(&ds, &snap)?
            }
        };
        let (_, ModelAt { epoch, .. }, model) =
            self.trained(job_id, version, self.shared.config.device)?;
        let probs = lock(&model).probabilities(&flat)?;
        let loss =
            LossFn::new(&snap.class_weights, snap.spec.loss).of_probabilities(&probs, &actual);
        let report = full_report_for(
            &snap.labels,
            &actual,
            &probs,
            loss,
            positive.unwrap_or(1),
            target_recall,
        );
        Ok((epoch, report))
    }

    /// The model as files PyTorch loads.
    pub fn export(
        &self,
        job_id: &str,
        version: ModelVersion,
        format: ExportFormat,
    ) -> Result<Vec<ExportedFile>, JobError> {
        let (snap, at, model) = self.trained(job_id, version, Device::Cpu)?;
        let tmp = export_dir()?;
        let mut model = lock(&model);
        match format {
            ExportFormat::TorchScript => {
                let path = tmp.path().join("model.pt");
                model.torchscript(&path)?;
                Ok(vec![ExportedFile {
                    name: "model.pt".into(),
                    bytes: std::fs::read(&path).map_err(internal)?,
                }])
            }
            ExportFormat::Safetensors => {
                let portable = model.portable()?;
                let (layers, state, modules) = match portable {
                    Portable::Sequential { layers, state } => (layers, state, Vec::new()),
                    Portable::Script { state, modules } => (Vec::new(), state, modules),
                };
                let path = tmp.path().join("model.safetensors");
                let named: Vec<(&str, &tch::Tensor)> =
                    state.iter().map(|(n, t)| (n.as_str(), t)).collect();
                tch::Tensor::write_safetensors(&named, &path).map_err(internal)?;
                let job = self.shared.scheduler.find(job_id)?;
                let module_names = module_file_names(modules.len());
                let card = model_card(
                    &snap,
                    &job,
                    at,
                    version,
                    &layers,
                    model.members(),
                    &module_names,
                );
                let mut files = vec![ExportedFile {
                    name: "model.safetensors".into(),
                    bytes: std::fs::read(&path).map_err(internal)?,
                }];
                files.extend(
                    module_names
                        .into_iter()
                        .zip(modules)
                        .map(|(name, bytes)| ExportedFile { name, bytes }),
                );
                files.push(ExportedFile {
                    name: "model_card.json".into(),
                    bytes: serde_json::to_vec_pretty(&card).map_err(internal)?,
                });
                Ok(files)
            }
        }
    }

    /// The job, the epoch of the asked-for model, and that model loaded on `device`.
    fn trained(
        &self,
        job_id: &str,
        version: ModelVersion,
        device: Device,
    ) -> Result<(JobSnapshot, ModelAt, Loaded), JobError> {
        // While a job trains, a newer epoch may be recorded and the older checkpoint pruned
        // between choosing the epoch and reading its file: then choose again. Any other
        // failure is returned at once.
        let mut attempts = 3;
        let (snap, at, c) = loop {
            attempts -= 1;
            let snap = self.shared.scheduler.find(job_id)?.snapshot();
            let at = model_at(&snap, job_id, version)?;
            let key = (job_id.to_string(), at.run, at.epoch, device == Device::Cpu);
            if let Some(m) = self.shared.trained.get(&key) {
                return Ok((snap, at, m));
            }
            match self.shared.store.model_checkpoint(job_id, at.run, at.epoch) {
                Ok(Some(c)) => break (snap, at, c),
                Err(e) if attempts == 0 || e.kind() != StoreErrorKind::NotFound => {
                    return Err(e.into());
                }
                Ok(None) if attempts == 0 => {
                    return Err(JobError::Internal(format!(
                        "the checkpoint of epoch {} of run {} of job '{job_id}' is missing",
                        at.epoch, at.run
                    )));
                }
                _ => continue,
            }
        };
        let model = TrainedModel::load(&snap.spec, &snap.features, snap.labels.len(), &c, device)?;
        let model = Arc::new(Mutex::new(model));
        let key = (job_id.to_string(), at.run, at.epoch, device == Device::Cpu);
        self.shared.trained.put(key, model.clone());
        Ok((snap, at, model))
    }
}

impl ModelCache {
    fn get(&self, key: &CacheKey) -> Option<Loaded> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let i = entries.iter().position(|(k, _)| k == key)?;
        let entry = entries.remove(i)?;
        let model = entry.1.clone();
        entries.push_back(entry);
        Some(model)
    }

    fn put(&self, key: CacheKey, model: Loaded) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|(k, _)| *k != key);
        entries.push_back((key, model));
        while entries.len() > CACHED_MODELS {
            entries.pop_front();
        }
    }

    /// Drops a deleted job's models.
    pub(super) fn forget(&self, job_id: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|(k, _)| k.0 != job_id);
    }
}

fn lock(m: &Loaded) -> std::sync::MutexGuard<'_, TrainedModel> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn internal(e: impl std::fmt::Display) -> JobError {
    JobError::Internal(e.to_string())
}

/// A private folder for the files of one export (libtorch writes TorchScript to a path).
fn export_dir() -> Result<tempfile::TempDir, JobError> {
    tempfile::Builder::new()
        .prefix("gradstream-export-")
        .tempdir()
        .map_err(internal)
}

/// Checks every row has one finite value per feature and lays them out row-major.
fn flatten_rows<'a>(
    rows: impl ExactSizeIterator<Item = &'a [f32]>,
    snap: &JobSnapshot,
    field: &str,
) -> Result<Vec<f32>, JobError> {
    let d = snap.features.width();
    if rows.len() == 0 {
        return Err(SpecError::new(field, "is empty; send at least one row").into());
    }
    let mut flat = Vec::with_capacity(rows.len() * d);
    for (i, row) in rows.enumerate() {
        if row.len() != d {
            return Err(SpecError::new(
                format!("{field}[{i}]"),
                format!(
                    "has {} values but the model takes {d} features ({}); send one value per feature, in that order",
                    row.len(),
                    snap.features.names.join(", ")
                ),
            )
            .into());
        }
        if let Some(j) = row.iter().position(|v| !v.is_finite()) {
            return Err(SpecError::new(
                format!("{field}[{i}].values[{j}]"),
                format!(
                    "feature '{}' is {}; every value must be a finite number",
                    snap.features.names[j], row[j]
                ),
            )
            .into());
        }
        flat.extend_from_slice(row);
    }
    Ok(flat)
}

fn class_of(labels: &[String], label: &str, field: &str) -> Result<usize, JobError> {
    labels.iter().position(|l| l == label).ok_or_else(|| {
        SpecError::new(
            field,
            format!(
                "'{label}' is not one of the job's labels ({}); use one of those",
                labels.join(", ")
            ),
        )
        .into()
    })
}

/// A dataset's rows with its labels mapped onto the job's classes; its feature columns
/// must be the model's, by name and order.
fn dataset_rows(ds: &Dataset, snap: &JobSnapshot) -> Result<(Vec<f32>, Vec<usize>), JobError> {
    let names = &snap.features.names;
    if ds.width != names.len() || ds.feature_names != *names {
        return Err(SpecError::new(
            "data",
            format!(
                "the data's feature columns ({}) are not the model's ({}); give the same columns, in the same order",
                ds.feature_names.join(", "),
                names.join(", ")
            ),
        )
        .into());
    }
    let map = ds
        .labels
        .iter()
        .map(|l| class_of(&snap.labels, l, "data"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((
        ds.features.clone(),
        ds.targets.iter().map(|&t| map[t]).collect(),
    ))
}

/// Errors reading evaluation data, named after the request's fields.
fn eval_data_error(e: DataError) -> JobError {
    match e {
        DataError::Spec(s) => SpecError::new(
            s.field
                .strip_prefix("spec.dataset.")
                .unwrap_or(&s.field)
                .to_string(),
            s.message,
        )
        .into(),
        malformed => SpecError::new("data", malformed.to_string()).into(),
    }
}

/// What a user of the exported weights needs to rebuild and trust the model.
fn model_card(
    snap: &JobSnapshot,
    job: &Arc<Job>,
    at: ModelAt,
    version: ModelVersion,
    layers: &[crate::engine::TorchLayer],
    members: usize,
    modules: &[String],
) -> serde_json::Value {
    let metrics = job.epoch_end(at.run, at.epoch);
    // The spec as trained, less the server's own path to an uploaded module.
    let mut training = snap.spec.clone();
    if let crate::domain::ModelSpec::TorchScript(t) = &mut training.model {
        t.file = Default::default();
    }
    let architecture = if modules.is_empty() {
        serde_json::json!({
            "framework": if members > 1 { "torch.nn.ModuleList of torch.nn.Sequential" } else { "torch.nn.Sequential" },
            "layers": layers,
            "members": members,
            "combine": if members > 1 { "mean of the members' softmax probabilities; state_dict names are <member>.<layer>.<param>" } else { "single model" },
            "input_features": snap.features.width(),
            "classes": snap.labels.len(),
            "output": "logits; softmax over the last dimension gives the class probabilities",
        })
    } else {
        let input_shape = match &snap.spec.model {
            crate::domain::ModelSpec::TorchScript(s) => s.input_shape,
            _ => None,
        };
        serde_json::json!({
            "framework": "TorchScript (your uploaded module, trained)",
            "modules": modules,
            "members": members,
            "combine": if members > 1 { "mean of the members' softmax probabilities; model.safetensors names are <member>.<parameter>" } else { "single model" },
            "parameters": "model.safetensors holds the trained parameters by their named_parameters() names; buffers (batch-norm running statistics) are only in the module files",
            "input_features": snap.features.width(),
            "input_shape": input_shape,
            "classes": snap.labels.len(),
            "output": "each module returns logits for normalized rows; softmax over the last dimension gives the class probabilities",
        })
    };
    serde_json::json!({
        "format": "gradstream.model_card.v1",
        "job_id": snap.id,
        "name": snap.spec.name,
        "model_version": match version { ModelVersion::Best => "best", ModelVersion::Last => "last" },
        "epoch": at.epoch,
        "run": at.run.0,
        "best_model_metric": format!("{:?}", snap.spec.best_model_metric),
        "architecture": architecture,
        "normalization": {
            "rule": "x_normalized = (x - mean) / std, per feature, before the first layer",
            "mean": snap.features.mean,
            "std": snap.features.std,
        },
        "features": snap.features.names,
        "labels": snap.labels,
        "training": training,
        "metrics": metrics,
    })
}

/// Where the model `version` names is; an error when there is none yet.
fn model_at(snap: &JobSnapshot, job_id: &str, version: ModelVersion) -> Result<ModelAt, JobError> {
    let Some((run, last)) = snap.last_model else {
        return Err(JobError::NoModel(format!(
            "job '{job_id}' has no trained model yet: no epoch has finished (status {}); wait for its first epoch",
            snap.status.as_str()
        )));
    };
    match version {
        ModelVersion::Last => Ok(ModelAt { run, epoch: last }),
        ModelVersion::Best => snap
            .best
            .map(|b| ModelAt {
                run: b.run,
                epoch: b.epoch,
            })
            .ok_or_else(|| {
                JobError::NoModel(format!(
                    "job '{job_id}' has no best model: its best_model_metric is undefined in every epoch so far; ask for the LAST model"
                ))
            }),
    }
}

/// The file name of each trained TorchScript module in an export.
fn module_file_names(count: usize) -> Vec<String> {
    match count {
        0 => Vec::new(),
        1 => vec!["module.pt".into()],
        n => (0..n).map(|j| format!("module-member{j}.pt")).collect(),
    }
}
