//! CSV datasets read by path: a header row, numeric feature columns and one label column,
//! checked by the rules in [`csv_rules`](super::csv_rules).

use std::path::{Component, Path, PathBuf};

use super::csv_rules::{CsvRules, Problem, Table};
use super::{DataError, Dataset};
use gradstream_domain::SpecError;

const PATH_FIELD: &str = "spec.dataset.csv.path";

/// Resolves a client-supplied path under `data_dir`, refusing anything that would leave it:
/// absolute paths, `..`, and symlinks pointing outside.
pub fn resolve_data_path(data_dir: &Path, relative: &str) -> Result<PathBuf, SpecError> {
    resolve_data_path_for(data_dir, relative, PATH_FIELD)
}

/// [`resolve_data_path`] for the spec field `field` (named in its errors).
pub fn resolve_data_path_for(
    data_dir: &Path,
    relative: &str,
    field: &str,
) -> Result<PathBuf, SpecError> {
    let rel = Path::new(relative);
    if rel.is_absolute() {
        return Err(SpecError::new(
            field,
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
            field,
            format!(
                "'{relative}' leaves the data directory ('..' is not allowed); give a path inside it"
            ),
        ));
    }
    let root = data_dir.canonicalize().map_err(|e| {
        SpecError::new(
            field,
            format!("the server's data directory {} is not readable ({e}); ask the operator to check --data-dir", data_dir.display()),
        )
    })?;
    let full = root.join(rel).canonicalize().map_err(|e| {
        SpecError::new(
            field,
            format!("'{relative}' cannot be opened in the data directory ({e}); check the name"),
        )
    })?;
    if !full.starts_with(&root) {
        return Err(SpecError::new(
            field,
            format!(
                "'{relative}' is a link that leads outside the data directory; copy the file into it instead"
            ),
        ));
    }
    if !full.is_file() {
        return Err(SpecError::new(
            field,
            format!("'{relative}' is not a regular file"),
        ));
    }
    Ok(full)
}

/// Reads a CSV file. `shown` is the name used in error messages (the client's path).
pub fn load_csv(
    file: &Path,
    shown: &str,
    label_column: Option<&str>,
) -> Result<Dataset, DataError> {
    let mut reader = CsvRules::reader_builder()
        .from_path(file)
        .map_err(|e| SpecError::new(PATH_FIELD, format!("'{shown}' cannot be opened: {e}")))?;
    let mut rules = CsvRules::new(label_column);
    let mut features = Vec::new();
    let mut labels = Vec::new();
    let mut record = csv::ByteRecord::new();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                return Err(Problem::unreadable(line, &e).in_file(shown));
            }
        }
        let line = record.position().map_or(0, |p| p.line());
        let label = rules
            .record(&record, line, |v| features.push(v))
            .map_err(|p| p.in_file(shown))?;
        labels.extend(label);
    }
    let Table {
        header, classes, ..
    } = rules.finish().map_err(|p| p.in_file(shown))?;
    Ok(Dataset {
        width: header.width(),
        feature_names: header.feature_names(),
        features,
        targets: labels.iter().map(|l| classes.of(l)).collect(),
        labels: classes.names,
    })
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
