//! The rules of a CSV dataset, in one place: what the header must hold, where the label is,
//! what every row and field must be, how class labels are ordered, and the message each
//! broken rule gives (line, column and what to change). [`load_csv`](super::load_csv) reads a
//! whole file through them and [`CsvUpload`](super::upload::CsvUpload) a file arriving in
//! chunks, so both refuse the same files with the same messages.
//!
//! Records come in as the `csv` crate reads them with no header handling, flexible widths and
//! no trimming; the rules check the width, then UTF-8, then trim, as the crate's own strict
//! reader would.

use std::collections::BTreeMap;

use super::DataError;

const EMPTY_FILE: &str = "the file is empty; a header row and at least one data row are needed (an empty dataset cannot be trained on)";
const HEADER_ONLY: &str =
    "the file has a header but no data rows (an empty dataset cannot be trained on); add rows";

/// A broken rule: where (1-based line and column) and what to change. The reader that met it
/// names the file with [`Problem::in_file`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    line: u64,
    column: u64,
    message: String,
}

impl Problem {
    fn new(line: u64, column: u64, message: impl Into<String>) -> Self {
        Problem {
            line,
            column,
            message: message.into(),
        }
    }

    /// The csv crate could not read the input at `line` (an I/O error).
    pub(crate) fn unreadable(line: u64, e: &csv::Error) -> Self {
        Problem::new(line, 1, format!("cannot be read as CSV: {e}"))
    }

    /// The error as the crate reports it, naming `file` as the client knows it.
    pub(crate) fn in_file(self, file: &str) -> DataError {
        DataError::Malformed {
            file: file.to_string(),
            line: self.line,
            column: self.column,
            message: self.message,
        }
    }
}

/// Class label as read: integers sort numerically, anything else as text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum LabelKey {
    Int(i64),
    Text(String),
}

impl LabelKey {
    fn parse(field: &str) -> Self {
        match field.parse::<i64>() {
            Ok(v) => LabelKey::Int(v),
            Err(_) => LabelKey::Text(field.to_string()),
        }
    }

    fn text(&self) -> String {
        match self {
            LabelKey::Int(v) => v.to_string(),
            LabelKey::Text(s) => s.clone(),
        }
    }
}

/// The header row, checked: column names (trimmed) and which one is the label.
#[derive(Debug)]
pub(crate) struct Header {
    names: Vec<String>,
    label_idx: usize,
}

impl Header {
    /// Checks the first record; `label_column` None = the last column.
    fn new(names: &csv::StringRecord, label_column: Option<&str>) -> Result<Self, Problem> {
        if names.is_empty() || (names.len() == 1 && names[0].is_empty()) {
            return Err(Problem::new(1, 1, EMPTY_FILE));
        }
        if names.len() < 2 {
            return Err(Problem::new(
                1,
                1,
                format!(
                    "the header has only one column ('{}'); a dataset needs at least one feature column and a label column",
                    &names[0]
                ),
            ));
        }
        let label_idx = match label_column {
            None => names.len() - 1,
            Some(name) => names.iter().position(|h| h == name).ok_or_else(|| {
                Problem::new(1, 1, format!(
                    "there is no column named '{name}' in the header (columns: {}); set label_column to one of them, or leave it empty for the last column",
                    names.iter().collect::<Vec<_>>().join(", ")
                ))
            })?,
        };
        Ok(Header {
            names: names.iter().map(str::to_string).collect(),
            label_idx,
        })
    }

    /// Feature columns: every column but the label.
    pub(crate) fn width(&self) -> usize {
        self.names.len() - 1
    }

    /// Header name of the label column.
    pub(crate) fn label_column(&self) -> &str {
        &self.names[self.label_idx]
    }

    /// Names of the feature columns, in column order.
    pub(crate) fn feature_names(&self) -> Vec<String> {
        let label_idx = self.label_idx;
        (self.names.iter().enumerate())
            .filter(|&(i, _)| i != label_idx)
            .map(|(_, h)| h.clone())
            .collect()
    }

    /// Checks a data row (as [`trimmed_fields`] gives it, width already checked): every
    /// feature a finite number, handed to `feature` in column order; the label not empty.
    fn row(
        &self,
        line: u64,
        fields: &csv::StringRecord,
        mut feature: impl FnMut(f32),
    ) -> Result<LabelKey, Problem> {
        let mut label = None;
        for (col, field) in fields.iter().enumerate() {
            let name = &self.names[col];
            let column = col as u64 + 1;
            if col == self.label_idx {
                if field.is_empty() {
                    return Err(Problem::new(
                        line,
                        column,
                        format!("the label ('{name}') is empty; every row needs a label"),
                    ));
                }
                label = Some(LabelKey::parse(field));
                continue;
            }
            let Ok(value) = field.parse::<f32>() else {
                return Err(Problem::new(
                    line,
                    column,
                    format!(
                        "column '{name}' has {field:?}, which is not a number; every column except the label must be numeric"
                    ),
                ));
            };
            if !value.is_finite() {
                return Err(Problem::new(
                    line,
                    column,
                    format!(
                        "column '{name}' has {field}, which is not finite; remove or impute the value"
                    ),
                ));
            }
            feature(value);
        }
        Ok(label.expect("the width was checked, so the label column is there"))
    }

    /// One value per column.
    fn check_width(&self, line: u64, len: usize) -> Result<(), Problem> {
        let (len, expected_len) = (len as u64, self.names.len() as u64);
        if len == expected_len {
            return Ok(());
        }
        Err(Problem::new(
            line,
            len.min(expected_len) + 1,
            format!(
                "the row has {len} fields but the header has {expected_len}; every row needs one value per column"
            ),
        ))
    }
}

/// The fields of `record` as text, trimmed (Unicode whitespace, as the csv crate trims).
fn trimmed_fields(record: &csv::ByteRecord, line: u64) -> Result<csv::StringRecord, Problem> {
    let mut fields = csv::StringRecord::from_byte_record(record.clone()).map_err(|e| {
        Problem::new(
            line,
            e.utf8_error().field() as u64 + 1,
            "the field is not valid UTF-8; save the file as UTF-8",
        )
    })?;
    fields.trim();
    Ok(fields)
}

/// The classes of a dataset in class order: integers numerically if every label is one,
/// otherwise all as text (an integer label as its number: `05` reads as `5`).
#[derive(Debug)]
pub(crate) struct Classes {
    /// Class names in class order.
    pub(crate) names: Vec<String>,
    /// Rows per class, aligned with `names`.
    pub(crate) counts: Vec<u64>,
    /// Every label as read, to its class.
    index: BTreeMap<LabelKey, usize>,
}

impl Classes {
    fn new(tally: BTreeMap<LabelKey, u64>) -> Self {
        let all_int = tally.keys().all(|k| matches!(k, LabelKey::Int(_)));
        // Distinct texts in class order (a BTreeMap orders texts; the tally orders integers).
        let mut order: Vec<(String, u64)> = Vec::new();
        if all_int {
            order.extend(tally.iter().map(|(k, &n)| (k.text(), n)));
        } else {
            let mut text: BTreeMap<String, u64> = BTreeMap::new();
            for (k, &n) in &tally {
                *text.entry(k.text()).or_default() += n;
            }
            order.extend(text);
        }
        let (names, counts): (Vec<String>, Vec<u64>) = order.into_iter().unzip();
        let position: BTreeMap<&str, usize> = (names.iter().enumerate())
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let index = tally
            .into_keys()
            .map(|k| {
                let i = position[k.text().as_str()];
                (k, i)
            })
            .collect();
        Classes {
            names,
            counts,
            index,
        }
    }

    /// The class of a label [`CsvRules::record`] returned.
    pub(crate) fn of(&self, label: &LabelKey) -> usize {
        self.index[label]
    }
}

/// A whole valid dataset's shape, once every record has passed.
#[derive(Debug)]
pub(crate) struct Table {
    pub(crate) header: Header,
    /// Data rows (the header not counted).
    pub(crate) rows: u64,
    pub(crate) classes: Classes,
}

/// The rules applied record by record: the first record is the header, every later one a
/// data row. Holds only the header and the label counts.
#[derive(Debug)]
pub(crate) struct CsvRules {
    label_column: Option<String>,
    header: Option<Header>,
    rows: u64,
    tally: BTreeMap<LabelKey, u64>,
}

impl CsvRules {
    /// `label_column` None = the last column.
    pub(crate) fn new(label_column: Option<&str>) -> Self {
        CsvRules {
            label_column: label_column.map(str::to_string),
            header: None,
            rows: 0,
            tally: BTreeMap::new(),
        }
    }

    /// A csv reader that yields records as [`CsvRules::record`] takes them.
    pub(crate) fn reader_builder() -> csv::ReaderBuilder {
        let mut builder = csv::ReaderBuilder::new();
        builder.has_headers(false).flexible(true);
        builder
    }

    /// Checks the next record, read at `line` (the csv crate's line for it: where the
    /// previous record ended).
    /// For a data row, hands its features to `feature` and returns its label; for the
    /// header, returns None.
    pub(crate) fn record(
        &mut self,
        record: &csv::ByteRecord,
        line: u64,
        feature: impl FnMut(f32),
    ) -> Result<Option<LabelKey>, Problem> {
        let Some(header) = &self.header else {
            let names = trimmed_fields(record, line)?;
            self.header = Some(Header::new(&names, self.label_column.as_deref())?);
            return Ok(None);
        };
        header.check_width(line, record.len())?;
        let label = header.row(line, &trimmed_fields(record, line)?, feature)?;
        *self.tally.entry(label.clone()).or_default() += 1;
        self.rows += 1;
        Ok(Some(label))
    }

    /// End of input: a dataset needs a header and at least one row.
    pub(crate) fn finish(self) -> Result<Table, Problem> {
        let Some(header) = self.header else {
            return Err(Problem::new(1, 1, EMPTY_FILE));
        };
        if self.rows == 0 {
            return Err(Problem::new(1, 1, HEADER_ONLY));
        }
        Ok(Table {
            header,
            rows: self.rows,
            classes: Classes::new(self.tally),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load_csv;
    use crate::upload::{CsvUpload, UploadError, UploadLimits};

    /// The message `load_csv` gives for `text`, and that of an upload of the same bytes in
    /// two chunks; both must be the same.
    fn both_messages(text: &[u8], label: Option<&str>) -> String {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.csv");
        std::fs::write(&file, text).unwrap();
        let loaded = load_csv(&file, "bad.csv", label).unwrap_err();
        let mut up = CsvUpload::new(
            &dir.path().join("upload.tmp"),
            "bad.csv",
            label,
            UploadLimits::dataset(u64::MAX),
        )
        .unwrap();
        let (a, b) = text.split_at(text.len() / 2);
        let uploaded = match up.push(a).and_then(|()| up.push(b)) {
            Err(e) => e,
            Ok(()) => up.finish(None).unwrap_err(),
        };
        assert!(
            matches!(uploaded, UploadError::Malformed(_)),
            "{uploaded:?}"
        );
        let shown = String::from_utf8_lossy(text);
        assert_eq!(loaded.to_string(), uploaded.to_string(), "{shown:?}");
        loaded.to_string()
    }

    #[test]
    fn loader_and_upload_give_the_same_message() {
        let cases: &[(&[u8], Option<&str>, &str)] = &[
            (
                b"a,b,y\n1,2,0\n3,x4,1\n",
                None,
                "bad.csv:3:2: column 'b' has \"x4\", which is not a number; every column except the label must be numeric",
            ),
            (
                b"a,b,y\n1,NaN,0\n",
                None,
                "bad.csv:2:2: column 'b' has NaN, which is not finite; remove or impute the value",
            ),
            (
                b"a,b,y\n1,inf,0\n",
                None,
                "bad.csv:2:2: column 'b' has inf, which is not finite; remove or impute the value",
            ),
            (
                b"a,b,y\n1,2,0\n3,4,1\n5,1\n",
                None,
                "bad.csv:4:3: the row has 2 fields but the header has 3; every row needs one value per column",
            ),
            (
                b"a,b,y\n1,2,0,9\n",
                None,
                "bad.csv:2:4: the row has 4 fields but the header has 3; every row needs one value per column",
            ),
            (
                b"a,y\n1,\n",
                None,
                "bad.csv:2:2: the label ('y') is empty; every row needs a label",
            ),
            (
                b"a,b,y\n1,2,0\n",
                Some("target"),
                "bad.csv:1:1: there is no column named 'target' in the header (columns: a, b, y); set label_column to one of them, or leave it empty for the last column",
            ),
            (
                b"y\n1\n",
                None,
                "bad.csv:1:1: the header has only one column ('y'); a dataset needs at least one feature column and a label column",
            ),
            (b"", None, &format!("bad.csv:1:1: {EMPTY_FILE}")),
            (b"a,b,y\n", None, &format!("bad.csv:1:1: {HEADER_ONLY}")),
            (
                b"a,y\n1,0\n2,\xff\n",
                None,
                "bad.csv:3:2: the field is not valid UTF-8; save the file as UTF-8",
            ),
        ];
        for &(text, label, want) in cases {
            assert_eq!(both_messages(text, label), want);
        }
    }

    #[test]
    fn the_width_is_checked_before_utf8_and_fields_left_to_right() {
        // A short row with a bad byte: the width is named, as the strict csv reader does.
        let mut rules = CsvRules::new(None);
        let header = csv::ByteRecord::from(vec!["a", "b", "y"]);
        assert_eq!(rules.record(&header, 1, |_| {}), Ok(None));
        let short = csv::ByteRecord::from(vec![&b"\xff"[..], b"1"]);
        let p = rules.record(&short, 2, |_| {}).unwrap_err();
        assert_eq!((p.line, p.column), (2, 3));
        // The first bad field wins: here the empty label before the bad number.
        let mut rules = CsvRules::new(Some("a"));
        rules.record(&header, 1, |_| {}).unwrap();
        let row = csv::ByteRecord::from(vec!["", "x", "1"]);
        let p = rules.record(&row, 2, |_| {}).unwrap_err();
        assert_eq!((p.column, p.message.contains("label ('a')")), (1, true));
    }

    #[test]
    fn rows_hand_over_trimmed_features_and_labels_order_into_classes() {
        let mut rules = CsvRules::new(Some("kind"));
        let mut features = Vec::new();
        let mut labels = Vec::new();
        for (line, r) in [
            vec!["x", " kind ", "z"],
            vec![" 1 ", "05", "2"],
            vec!["3", "b", "4"],
            vec!["5", "5", "6"],
            vec!["7", "10", "8"],
        ]
        .into_iter()
        .enumerate()
        {
            let record = csv::ByteRecord::from(r);
            let got = rules.record(&record, line as u64 + 1, |v| features.push(v));
            labels.extend(got.unwrap());
        }
        assert_eq!(features, vec![1., 2., 3., 4., 5., 6., 7., 8.]);
        let table = rules.finish().unwrap();
        assert_eq!(table.rows, 4);
        assert_eq!(table.header.width(), 2);
        assert_eq!(table.header.label_column(), "kind");
        assert_eq!(table.header.feature_names(), vec!["x", "z"]);
        // A text label: everything sorts as text, `05` and `5` being the class `5`.
        assert_eq!(table.classes.names, vec!["10", "5", "b"]);
        assert_eq!(table.classes.counts, vec![1, 2, 1]);
        let of: Vec<usize> = labels.iter().map(|l| table.classes.of(l)).collect();
        assert_eq!(of, vec![1, 2, 1, 0]);
    }

    #[test]
    fn integer_labels_sort_numerically() {
        let mut tally = BTreeMap::new();
        for (k, n) in [(10, 2), (9, 1), (-1, 3)] {
            tally.insert(LabelKey::Int(k), n);
        }
        let classes = Classes::new(tally);
        assert_eq!(classes.names, vec!["-1", "9", "10"]);
        assert_eq!(classes.counts, vec![3, 1, 2]);
        assert_eq!(classes.of(&LabelKey::Int(10)), 2);
    }
}
