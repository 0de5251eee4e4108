//! Datasets: reading CSV files safely, generating synthetic data, the stratified split and
//! normalization. Plain Rust: no tensors, no tokio.

pub mod arrays;
mod csv_file;
mod csv_rules;
pub mod imbalance;
pub mod shards;
mod split;
mod synthetic;
pub mod upload;

use std::path::{Path, PathBuf};

pub use csv_file::{load_csv, resolve_data_path, resolve_data_path_for};
pub use split::{HeldOut, Normalizer, Split, stratified_split, train_counts};
pub use synthetic::generate;

use gradstream_domain::{ArrayFormat, ArraysSpec, DatasetSpec, SpecError};

/// A labelled table held in memory: `features` is row-major `rows x width`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub width: usize,
    /// Column names of the features, in column order (`width` of them).
    pub feature_names: Vec<String>,
    pub features: Vec<f32>,
    /// Class index of each row, into `labels`.
    pub targets: Vec<usize>,
    /// Class names in class order.
    pub labels: Vec<String>,
}

impl Dataset {
    pub fn rows(&self) -> usize {
        self.targets.len()
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.features[i * self.width..(i + 1) * self.width]
    }

    /// Samples per class, in class order.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.labels.len()];
        for &t in &self.targets {
            counts[t] += 1;
        }
        counts
    }
}

/// Why a dataset could not be loaded. Every message says where and what to change.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A spec field is wrong (bad path, label column not found…).
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// An array file (NumPy, IDX) is malformed or holds a bad value; the message names the
    /// file, the array and the index.
    #[error(transparent)]
    Array(#[from] arrays::ArrayError),
    /// The server's stored copy of a dataset cannot be written or read.
    #[error("stored dataset {path}: {message}")]
    Stored { path: String, message: String },
    /// The file itself is malformed; the message carries `file:line:column`.
    #[error("{file}:{line}:{column}: {message}")]
    Malformed {
        file: String,
        line: u64,
        column: u64,
        message: String,
    },
}

/// Where uploaded datasets live.
pub trait UploadedDatasets {
    /// The file, label column and name of an uploaded dataset.
    fn locate(&self, id: &str) -> Result<(PathBuf, String, String), SpecError>;
}

/// Loads the dataset a spec names. CSV paths are resolved under `data_dir`; uploaded
/// datasets through `uploaded`.
pub fn load(
    spec: &DatasetSpec,
    data_dir: &Path,
    uploaded: &dyn UploadedDatasets,
) -> Result<Dataset, DataError> {
    match spec {
        DatasetSpec::Csv { path, label_column } => {
            let file = resolve_data_path(data_dir, path)?;
            load_csv(&file, path, label_column.as_deref())
        }
        DatasetSpec::Arrays(a) => load_arrays(a, data_dir),
        DatasetSpec::Synthetic(s) => Ok(generate(s)?),
        DatasetSpec::Uploaded { id } => {
            let (file, label_column, name) = uploaded.locate(id)?;
            load_csv(&file, &name, Some(&label_column))
        }
    }
}

/// Reads labelled arrays named by `spec` under `data_dir` into memory.
pub fn load_arrays(spec: &ArraysSpec, data_dir: &Path) -> Result<Dataset, DataError> {
    Ok(arrays::load_labelled(open_arrays(spec, data_dir)?)?)
}

/// The files `spec` names, resolved under `data_dir`: the features (or archive) file, then
/// the labels file if it is one of its own.
pub fn array_files(spec: &ArraysSpec, data_dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let f = "spec.dataset.arrays";
    let mut files = vec![resolve_data_path_for(
        data_dir,
        &spec.features_path,
        &format!("{f}.features_path"),
    )?];
    if spec.format != ArrayFormat::Npz {
        files.push(resolve_data_path_for(
            data_dir,
            &spec.labels_path,
            &format!("{f}.labels_path"),
        )?);
    }
    Ok(files)
}

/// The arrays `spec` names, opened for streaming (headers read and checked).
pub fn open_arrays(
    spec: &ArraysSpec,
    data_dir: &Path,
) -> Result<arrays::LabelledArrays, DataError> {
    let files = array_files(spec, data_dir)?;
    let shown = spec.features_path.as_str();
    Ok(match spec.format {
        ArrayFormat::Npz => {
            let (x, y) = spec.npz_arrays();
            arrays::LabelledArrays::new(
                arrays::open_npz_member(&files[0], shown, x)?,
                arrays::open_npz_member(&files[0], shown, y)?,
            )?
        }
        ArrayFormat::Npy | ArrayFormat::Idx => {
            let open = match spec.format {
                ArrayFormat::Idx => arrays::open_idx,
                _ => arrays::open_npy,
            };
            arrays::LabelledArrays::new(
                open(&files[0], shown, "features")?,
                open(&files[1], &spec.labels_path, "labels")?,
            )?
        }
    })
}
