//! Where a job's data comes from (`spec.dataset`): a CSV file, labelled arrays (NumPy,
//! IDX), an upload or a synthetic dataset, and the checks on each.

use super::{SpecError, check, check_positive};

const MAX_FEATURES: u32 = 100_000;
const MAX_CLASSES: u32 = 1_000;
const MAX_SYNTHETIC_SAMPLES: u64 = 50_000_000;
/// Generated values (samples × features) a synthetic dataset may hold: 1 GiB of f32.
const MAX_SYNTHETIC_VALUES: u64 = 1 << 28;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum DatasetSpec {
    /// A CSV file, relative to the server's data directory.
    Csv {
        path: String,
        /// Header name of the label column; `None` = the last column.
        label_column: Option<String>,
    },
    /// Labelled arrays in files relative to the server's data directory.
    Arrays(ArraysSpec),
    Synthetic(SyntheticSpec),
    /// A dataset uploaded through the Datasets service.
    Uploaded {
        id: String,
    },
}

/// The file formats of labelled arrays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ArrayFormat {
    /// A features `.npy` (`[N, ...]`) and a labels `.npy` (`[N]`).
    Npy,
    /// One `.npz` holding both arrays.
    Npz,
    /// An IDX images file and an IDX labels file (the MNIST format).
    Idx,
}

/// Features and labels as arrays: `features` `[N, ...]` (a table `[N, F]`, or images
/// `[N, H, W]` / `[N, C, H, W]`, flattened row-major per row), labels `[N]` of integer
/// class ids.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ArraysSpec {
    pub format: ArrayFormat,
    /// The features (`Npy`), images (`Idx`) or archive (`Npz`) file.
    pub features_path: String,
    /// The labels file; empty for `Npz`, whose archive holds them.
    pub labels_path: String,
    /// `Npz` only: the archive's arrays (`features`, `labels` when empty).
    pub features_array: String,
    pub labels_array: String,
    /// Filled by the server at submit: the fingerprint of the stored copy the job trains
    /// on (a resumed job reads it, never the files again).
    #[serde(default)]
    pub stored: Option<String>,
    /// Filled by the server at submit: the stored copy is streamed (too large to load).
    /// Kept with the job, so a resumed job trains the same way whatever the server's
    /// limit is then.
    #[serde(default)]
    pub streamed: bool,
}

impl ArraysSpec {
    /// The `.npz` member names, defaults filled in.
    pub fn npz_arrays(&self) -> (&str, &str) {
        fn or<'a>(name: &'a str, default: &'static str) -> &'a str {
            if name.trim().is_empty() {
                default
            } else {
                name
            }
        }
        (
            or(&self.features_array, "features"),
            or(&self.labels_array, "labels"),
        )
    }

    fn validate(&self) -> Result<(), SpecError> {
        let f = "spec.dataset.arrays";
        check(
            !self.features_path.trim().is_empty(),
            &format!("{f}.features_path"),
            || {
                "is empty; give the features (or .npz) file's path relative to the server's data directory".into()
            },
        )?;
        match self.format {
            ArrayFormat::Npz => check(
                self.labels_path.is_empty(),
                &format!("{f}.labels_path"),
                || {
                    "must be empty for NPZ: the labels are an array of the .npz (labels_array)"
                        .into()
                },
            ),
            ArrayFormat::Npy | ArrayFormat::Idx => {
                check(
                    !self.labels_path.trim().is_empty(),
                    &format!("{f}.labels_path"),
                    || {
                        "is empty; give the labels file's path relative to the server's data directory".into()
                    },
                )?;
                check(
                    self.features_array.is_empty() && self.labels_array.is_empty(),
                    &format!("{f}.features_array"),
                    || {
                        "names .npz members; leave features_array and labels_array empty for NPY and IDX".into()
                    },
                )
            }
        }
    }
}

/// Gaussian clusters, one per class.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SyntheticSpec {
    pub samples: u64,
    pub features: u32,
    pub classes: u32,
    /// Relative class frequencies; empty = balanced.
    pub class_ratios: Vec<f64>,
    pub separation: f64,
    pub seed: u64,
}

impl DatasetSpec {
    /// Checks `spec.dataset`: a path or id is given, a synthetic dataset is within the limits.
    pub(super) fn validate(&self) -> Result<(), SpecError> {
        match self {
            DatasetSpec::Csv { path, .. } => {
                check(!path.trim().is_empty(), "spec.dataset.csv.path", || {
                    "is empty; give a CSV file's path relative to the server's data directory"
                        .into()
                })
            }
            DatasetSpec::Uploaded { id } => {
                check(!id.trim().is_empty(), "spec.dataset.dataset_id", || {
                    "is empty; give the id UploadDataset returned (list them with ListDatasets)"
                        .into()
                })
            }
            DatasetSpec::Arrays(a) => a.validate(),
            DatasetSpec::Synthetic(s) => s.validate(),
        }
    }
}

impl SyntheticSpec {
    /// Checks `spec.dataset.synthetic`: sizes within the limits, one ratio per class.
    fn validate(&self) -> Result<(), SpecError> {
        let f = "spec.dataset.synthetic";
        check(self.samples >= 1, &format!("{f}.samples"), || {
            "is 0, which makes an empty dataset; ask for at least one sample per class".into()
        })?;
        check(
            self.samples <= MAX_SYNTHETIC_SAMPLES,
            &format!("{f}.samples"),
            || {
                format!(
                    "{} is more than the limit of {MAX_SYNTHETIC_SAMPLES}",
                    self.samples
                )
            },
        )?;
        check(
            (1..=MAX_FEATURES).contains(&self.features),
            &format!("{f}.features"),
            || format!("must be 1 to {MAX_FEATURES}, got {}", self.features),
        )?;
        let values = self.samples * u64::from(self.features);
        check(
            values <= MAX_SYNTHETIC_VALUES,
            &format!("{f}.samples"),
            || {
                format!(
                    "{} samples x {} features is {values} values, more than the limit of {MAX_SYNTHETIC_VALUES}; use fewer samples or features",
                    self.samples, self.features
                )
            },
        )?;
        check(self.classes >= 2, &format!("{f}.classes"), || {
            format!(
                "a classifier needs at least 2 classes, got {}",
                self.classes
            )
        })?;
        check(self.classes <= MAX_CLASSES, &format!("{f}.classes"), || {
            format!("{} is more than the limit of {MAX_CLASSES}", self.classes)
        })?;
        check(
            self.separation.is_finite() && self.separation >= 0.0,
            &format!("{f}.separation"),
            || format!("must be a finite number >= 0, got {}", self.separation),
        )?;
        if !self.class_ratios.is_empty() {
            check(
                self.class_ratios.len() == self.classes as usize,
                &format!("{f}.class_ratios"),
                || {
                    format!(
                        "has {} entries for {} classes; give one ratio per class or none",
                        self.class_ratios.len(),
                        self.classes
                    )
                },
            )?;
            for (i, r) in self.class_ratios.iter().enumerate() {
                check_positive(*r, &format!("{f}.class_ratios[{i}]"))?;
            }
        }
        Ok(())
    }
}
