//! Where a job's data comes from (`spec.dataset`): a CSV file, an upload or a synthetic
//! dataset, and the checks on each.

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
    Synthetic(SyntheticSpec),
    /// A dataset uploaded through the Datasets service.
    Uploaded {
        id: String,
    },
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
