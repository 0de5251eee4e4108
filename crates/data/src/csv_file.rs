//! CSV datasets: a header row, numeric feature columns and one label column.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use super::{DataError, Dataset};
use gradstream_domain::SpecError;

const PATH_FIELD: &str = "spec.dataset.csv.path";
/// Messages shared with the streaming upload validator, which must say the same.
pub(super) const EMPTY_FILE: &str = "the file is empty; a header row and at least one data row are needed (an empty dataset cannot be trained on)";
pub(super) const HEADER_ONLY: &str =
    "the file has a header but no data rows (an empty dataset cannot be trained on); add rows";

/// Resolves a client-supplied path under `data_dir`, refusing anything that would leave it:
/// absolute paths, `..`, and symlinks pointing outside.
pub fn resolve_data_path(data_dir: &Path, relative: &str) -> Result<PathBuf, SpecError> {
    let rel = Path::new(relative);
    if rel.is_absolute() {
        return Err(SpecError::new(
            PATH_FIELD,
            format!(
                "'{relative}' is absolute; give a path relative to the server's data directory"
            ),
        ));
    }
    if rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(SpecError::new(
            PATH_FIELD,
            format!(
                "'{relative}' leaves the data directory ('..' is not allowed); give a path inside it"
            ),
        ));
    }
    let root = data_dir.canonicalize().map_err(|e| {
        SpecError::new(
            PATH_FIELD,
            format!("the server's data directory {} is not readable ({e}); ask the operator to check --data-dir", data_dir.display()),
        )
    })?;
    let full = root.join(rel).canonicalize().map_err(|e| {
        SpecError::new(
            PATH_FIELD,
            format!("'{relative}' cannot be opened in the data directory ({e}); check the name"),
        )
    })?;
    if !full.starts_with(&root) {
        return Err(SpecError::new(
            PATH_FIELD,
            format!(
                "'{relative}' is a link that leads outside the data directory; copy the file into it instead"
            ),
        ));
    }
    if !full.is_file() {
        return Err(SpecError::new(
            PATH_FIELD,
            format!("'{relative}' is not a regular file"),
        ));
    }
    Ok(full)
}

/// Class label as read: integers sort numerically, anything else as text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum LabelKey {
    Int(i64),
    Text(String),
}

/// Reads a CSV file. `shown` is the name used in error messages (the client's path).
pub fn load_csv(
    file: &Path,
    shown: &str,
    label_column: Option<&str>,
) -> Result<Dataset, DataError> {
    let malformed = |line: u64, column: u64, message: String| DataError::Malformed {
        file: shown.to_string(),
        line,
        column,
        message,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .trim(csv::Trim::All)
        .from_path(file)
        .map_err(|e| SpecError::new(PATH_FIELD, format!("'{shown}' cannot be opened: {e}")))?;
    let headers = reader.headers().map_err(|e| csv_error(shown, &e))?.clone();
    if headers.is_empty() || (headers.len() == 1 && headers[0].is_empty()) {
        return Err(malformed(1, 1, EMPTY_FILE.into()));
    }
    if headers.len() < 2 {
        return Err(malformed(
            1,
            1,
            format!(
                "the header has only one column ('{}'); a dataset needs at least one feature column and a label column",
                &headers[0]
            ),
        ));
    }
    let label_idx = match label_column {
        None => headers.len() - 1,
        Some(name) => headers.iter().position(|h| h == name).ok_or_else(|| {
            malformed(1, 1, format!(
                "there is no column named '{name}' in the header (columns: {}); set label_column to one of them, or leave it empty for the last column",
                headers.iter().collect::<Vec<_>>().join(", ")
            ))
        })?,
    };
    let width = headers.len() - 1;
    let mut features = Vec::new();
    let mut raw_labels: Vec<LabelKey> = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(csv_error(shown, &e)),
        }
        let line = record.position().map_or(0, |p| p.line());
        for (col, field) in record.iter().enumerate() {
            if col == label_idx {
                if field.is_empty() {
                    return Err(malformed(
                        line,
                        col as u64 + 1,
                        format!(
                            "the label ('{}') is empty; every row needs a label",
                            &headers[col]
                        ),
                    ));
                }
                raw_labels.push(match field.parse::<i64>() {
                    Ok(v) => LabelKey::Int(v),
                    Err(_) => LabelKey::Text(field.to_string()),
                });
                continue;
            }
            let value: f32 = field.parse().map_err(|_| {
                malformed(line, col as u64 + 1, format!(
                    "column '{}' has {:?}, which is not a number; every column except the label must be numeric",
                    &headers[col], field
                ))
            })?;
            if !value.is_finite() {
                return Err(malformed(
                    line,
                    col as u64 + 1,
                    format!(
                        "column '{}' has {field}, which is not finite; remove or impute the value",
                        &headers[col]
                    ),
                ));
            }
            features.push(value);
        }
    }
    if raw_labels.is_empty() {
        return Err(malformed(1, 1, HEADER_ONLY.into()));
    }
    // Integers sort numerically; if any label is text, all sort as text.
    let all_int = raw_labels.iter().all(|l| matches!(l, LabelKey::Int(_)));
    let keys: Vec<LabelKey> = if all_int {
        raw_labels
    } else {
        raw_labels
            .into_iter()
            .map(|l| match l {
                LabelKey::Int(_) => LabelKey::Text(label_text(&l)),
                t => t,
            })
            .collect()
    };
    let distinct: BTreeSet<&LabelKey> = keys.iter().collect();
    let index: BTreeMap<&LabelKey, usize> =
        distinct.iter().enumerate().map(|(i, k)| (*k, i)).collect();
    let labels: Vec<String> = distinct.iter().map(|k| label_text(k)).collect();
    let targets = keys.iter().map(|k| index[k]).collect();
    Ok(Dataset {
        width,
        feature_names: headers
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != label_idx)
            .map(|(_, h)| h.to_string())
            .collect(),
        features,
        targets,
        labels,
    })
}

fn label_text(k: &LabelKey) -> String {
    match k {
        LabelKey::Int(v) => v.to_string(),
        LabelKey::Text(s) => s.clone(),
    }
}

fn csv_error(shown: &str, e: &csv::Error) -> DataError {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            pos,
            expected_len,
            len,
        } => DataError::Malformed {
            file: shown.to_string(),
            line: pos.as_ref().map_or(0, |p| p.line()),
            column: (*len.min(expected_len)) + 1,
            message: format!(
                "the row has {len} fields but the header has {expected_len}; every row needs one value per column"
            ),
        },
        csv::ErrorKind::Utf8 { pos, err } => DataError::Malformed {
            file: shown.to_string(),
            line: pos.as_ref().map_or(0, |p| p.line()),
            column: err.field() as u64 + 1,
            message: "the field is not valid UTF-8; save the file as UTF-8".into(),
        },
        _ => DataError::Malformed {
            file: shown.to_string(),
            line: e.position().map_or(0, |p| p.line()),
            column: 1,
            message: format!("cannot be read as CSV: {e}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, text).unwrap();
        p
    }

    fn malformed_at(r: Result<Dataset, DataError>) -> (u64, u64, String) {
        match r {
            Err(DataError::Malformed {
                line,
                column,
                message,
                ..
            }) => (line, column, message),
            other => panic!("expected a malformed-file error, got {other:?}"),
        }
    }

    #[test]
    fn reads_features_and_sorts_integer_labels_numerically() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "a.csv", "x,y,label\n1,2,10\n3,4,9\n5,6,10\n");
        let ds = load_csv(&p, "a.csv", None).unwrap();
        assert_eq!(ds.width, 2);
        assert_eq!(ds.labels, vec!["9", "10"]);
        assert_eq!(ds.targets, vec![1, 0, 1]);
        assert_eq!(ds.features, vec![1., 2., 3., 4., 5., 6.]);
    }

    #[test]
    fn label_column_by_name_and_text_labels() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "a.csv", "kind,x\ncat,1\ndog,2\nant,3\n");
        let ds = load_csv(&p, "a.csv", Some("kind")).unwrap();
        assert_eq!(ds.labels, vec!["ant", "cat", "dog"]);
        assert_eq!(ds.targets, vec![1, 2, 0]);
        assert_eq!(ds.features, vec![1., 2., 3.]);
    }

    #[test]
    fn ragged_row_names_line_and_column() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "a.csv", "x,y,label\n1,2,0\n3,1\n");
        let (line, col, msg) = malformed_at(load_csv(&p, "a.csv", None));
        assert_eq!((line, col), (3, 3));
        assert!(msg.contains("2 fields but the header has 3"), "{msg}");
    }

    #[test]
    fn non_numeric_feature_names_line_and_column() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "a.csv", "x,y,label\n1,2,0\n3,abc,1\n");
        let (line, col, msg) = malformed_at(load_csv(&p, "a.csv", None));
        assert_eq!((line, col), (3, 2));
        assert!(msg.contains("'y'") && msg.contains("abc"), "{msg}");
    }

    #[test]
    fn missing_label_column_lists_the_columns() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "a.csv", "x,y\n1,0\n");
        let (line, col, msg) = malformed_at(load_csv(&p, "a.csv", Some("target")));
        assert_eq!((line, col), (1, 1));
        assert!(msg.contains("'target'") && msg.contains("x, y"), "{msg}");
    }

    #[test]
    fn empty_and_header_only_files_are_empty_datasets() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "e.csv", "");
        assert!(
            malformed_at(load_csv(&p, "e.csv", None))
                .2
                .contains("empty")
        );
        let p = write(d.path(), "h.csv", "x,label\n");
        assert!(
            malformed_at(load_csv(&p, "h.csv", None))
                .2
                .contains("empty dataset")
        );
    }

    #[test]
    fn paths_outside_the_data_dir_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        write(root.path(), "ok.csv", "x,y\n1,0\n");
        let secret = write(outside.path(), "secret.csv", "x,y\n1,0\n");
        std::os::unix::fs::symlink(&secret, root.path().join("link.csv")).unwrap();
        assert!(resolve_data_path(root.path(), "ok.csv").is_ok());
        assert!(resolve_data_path(root.path(), "./ok.csv").is_ok());
        for bad in [
            "/etc/passwd",
            "../x.csv",
            "sub/../../x.csv",
            "link.csv",
            "missing.csv",
        ] {
            let e = resolve_data_path(root.path(), bad).unwrap_err();
            assert_eq!(e.field, PATH_FIELD, "{bad}");
        }
    }
}
