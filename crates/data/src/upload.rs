//! Validating a CSV dataset that arrives in chunks (gRPC client streaming) without ever holding
//! the whole file: every chunk is written to a temporary file, hashed, and every complete row is
//! checked as soon as its last byte arrives by the rules [`load_csv`](super::load_csv) reads the
//! whole file with ([`csv_rules`](super::csv_rules)), so with the same messages, lines and
//! columns.
//!
//! Rows are found by a small scanner that follows the CSV grammar of the `csv` crate (quoted
//! fields may hold delimiters and line breaks; `\r`, `\n` and `\r\n` end a row; empty lines are
//! skipped). Only the bytes of the row still incomplete are kept between chunks; each run of
//! complete rows is parsed by a `csv::Reader`, so field contents, trimming and UTF-8 checks are
//! the crate's own.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::DataError;
use super::csv_rules::{CsvRules, Problem, Table};
use gradstream_domain::UploadKind;

/// What an upload may not exceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadLimits {
    /// The most bytes the file may have.
    pub max_bytes: u64,
    /// What the file is (it names the limit's flag in the error message).
    pub kind: UploadKind,
}

impl UploadLimits {
    /// `--max-dataset-bytes`.
    pub fn dataset(max_bytes: u64) -> Self {
        Self {
            max_bytes,
            kind: UploadKind::Dataset,
        }
    }

    /// `--max-model-bytes`.
    pub fn model(max_bytes: u64) -> Self {
        Self {
            max_bytes,
            kind: UploadKind::Model,
        }
    }
}

/// The bytes of an upload as they arrive: written to a file, hashed, counted against the
/// limit. Every upload kind writes through one.
pub struct UploadSink {
    limits: UploadLimits,
    out: BufWriter<File>,
    hasher: Sha256,
    /// Bytes received so far.
    bytes: u64,
}

impl UploadSink {
    /// Creates `dest` (a temporary file the caller renames into place or deletes).
    pub fn create(dest: &Path, limits: UploadLimits) -> Result<Self, UploadError> {
        Ok(Self {
            limits,
            out: BufWriter::new(File::create(dest)?),
            hasher: Sha256::new(),
            bytes: 0,
        })
    }

    /// Appends `chunk`, refusing it if the file would exceed the limit.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), UploadError> {
        let UploadLimits { max_bytes, kind } = self.limits;
        if self.bytes.saturating_add(chunk.len() as u64) > max_bytes {
            return Err(UploadError::TooLarge {
                kind,
                limit: max_bytes,
            });
        }
        self.out.write_all(chunk)?;
        self.hasher.update(chunk);
        self.bytes += chunk.len() as u64;
        Ok(())
    }

    /// Flushes and fsyncs the file; checks the client's sha256 (hex) when given. Returns
    /// the size and the sha256.
    pub fn finish(self, expected_sha256: Option<&str>) -> Result<(u64, String), UploadError> {
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        let sha256: String = self
            .hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if let Some(expected) = expected_sha256
            && !expected.trim().eq_ignore_ascii_case(&sha256)
        {
            return Err(UploadError::ChecksumMismatch {
                expected: expected.to_string(),
                actual: sha256,
            });
        }
        Ok((self.bytes, sha256))
    }
}

/// What a complete, valid upload holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSummary {
    /// Data rows (the header not counted).
    pub rows: u64,
    /// Feature columns: every column but the label.
    pub features: u32,
    /// Class names in class order, as `load_csv` orders them.
    pub labels: Vec<String>,
    /// Rows per class, aligned with `labels`.
    pub class_counts: Vec<u64>,
    /// Bytes received and written.
    pub bytes: u64,
    /// SHA-256 of the bytes, lowercase hex.
    pub sha256: String,
    /// Header name of the label column.
    pub label_column: String,
}

/// Why an upload was refused. Every message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The file is not a valid dataset; same messages, lines and columns as `load_csv`.
    #[error(transparent)]
    Malformed(DataError),
    /// The file is not a usable model; the message says why and what to do.
    #[error("{0}")]
    BadModel(String),
    /// More bytes than the server allows (`flag`).
    #[error(
        "the {kind} exceeds the limit of {limit} bytes; upload a smaller file, or ask the operator to raise {}",
        kind.limit_flag()
    )]
    TooLarge { kind: UploadKind, limit: u64 },
    /// The bytes received do not hash to what the client announced.
    #[error(
        "the uploaded bytes have sha256 {actual}, but the client announced {expected}; the data changed in transit or the wrong file was sent; upload it again"
    )]
    ChecksumMismatch { expected: String, actual: String },
    /// The temporary file could not be written.
    #[error("cannot store the uploaded dataset: {0}")]
    Io(#[from] io::Error),
}

/// Where the row scanner is, following `csv_core`'s reader (delimiter `,`, quote `"`, doubled
/// quotes as escapes, `\r`, `\n` or `\r\n` as terminator, no comments).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    StartRecord,
    StartField,
    InField,
    InQuoted,
    /// A quote seen inside a quoted field: either an escaped quote or the field's end.
    QuoteInQuoted,
}

impl Scan {
    /// The state after byte `b`, and whether `b` ended a row.
    fn step(self, b: u8) -> (Scan, bool) {
        let term = b == b'\n' || b == b'\r';
        match self {
            // Empty lines are not rows.
            Scan::StartRecord if term => (Scan::StartRecord, false),
            Scan::StartRecord | Scan::StartField => match b {
                b'"' => (Scan::InQuoted, false),
                b',' => (Scan::StartField, false),
                _ if term => (Scan::StartRecord, true),
                _ => (Scan::InField, false),
            },
            Scan::InField => match b {
                b',' => (Scan::StartField, false),
                _ if term => (Scan::StartRecord, true),
                _ => (Scan::InField, false),
            },
            Scan::InQuoted => match b {
                b'"' => (Scan::QuoteInQuoted, false),
                _ => (Scan::InQuoted, false),
            },
            Scan::QuoteInQuoted => match b {
                b'"' => (Scan::InQuoted, false),
                b',' => (Scan::StartField, false),
                _ if term => (Scan::StartRecord, true),
                // `"ab"c`: the rest of the field is taken literally.
                _ => (Scan::InField, false),
            },
        }
    }
}

const BOM: [u8; 3] = [0xef, 0xbb, 0xbf];

/// A CSV dataset being received chunk by chunk.
pub struct CsvUpload {
    shown: String,
    sink: UploadSink,
    /// The bytes after the last complete row: the row still arriving.
    tail: Vec<u8>,
    /// Bytes before `tail` (all parsed).
    parsed_bytes: u64,
    /// `\n` bytes before `tail`: the csv crate's line number there, less one.
    parsed_lines: u64,
    scan: Scan,
    /// How many bytes of a leading UTF-8 byte order mark have been seen; `None` once decided.
    bom_matched: Option<usize>,
    rules: CsvRules,
    /// Set once a call failed: the upload cannot go on.
    failed: bool,
}

impl CsvUpload {
    /// `dest` is a temporary file path (the caller renames it into place on success and deletes
    /// it on failure); `shown` is the name used in error messages (the dataset name);
    /// `label_column` None = last column.
    pub fn new(
        dest: &Path,
        shown: &str,
        label_column: Option<&str>,
        limits: UploadLimits,
    ) -> Result<Self, UploadError> {
        Ok(CsvUpload {
            shown: shown.to_string(),
            sink: UploadSink::create(dest, limits)?,
            tail: Vec::new(),
            parsed_bytes: 0,
            parsed_lines: 0,
            scan: Scan::StartRecord,
            bom_matched: Some(0),
            rules: CsvRules::new(label_column),
            failed: false,
        })
    }

    /// Appends bytes: writes them to the file, feeds the incremental parser, updates the sha256.
    /// Validates every complete row as soon as it is seen (so an error is reported at the chunk
    /// that contains it).
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), UploadError> {
        if self.failed {
            return Err(already_failed());
        }
        let result = self.push_inner(chunk);
        self.failed = result.is_err();
        result
    }

    /// End of stream: validates the last (possibly unterminated) row, flushes and fsyncs the
    /// file, checks the expected sha256 (hex) when given, and returns the summary.
    pub fn finish(mut self, expected_sha256: Option<&str>) -> Result<UploadSummary, UploadError> {
        if self.failed {
            return Err(already_failed());
        }
        let tail = std::mem::take(&mut self.tail);
        if !tail.is_empty() {
            self.parse(&tail, &[])?;
        }
        let Table {
            header,
            rows,
            classes,
        } = self.rules.finish().map_err(|p| malformed(&self.shown, p))?;
        let (bytes, sha256) = self.sink.finish(expected_sha256)?;
        Ok(UploadSummary {
            rows,
            features: u32::try_from(header.width()).unwrap_or(u32::MAX),
            labels: classes.names,
            class_counts: classes.counts,
            bytes,
            sha256,
            label_column: header.label_column().to_string(),
        })
    }

    fn push_inner(&mut self, chunk: &[u8]) -> Result<(), UploadError> {
        self.sink.write(chunk)?;
        match self.scan(chunk) {
            None => self.tail.extend_from_slice(chunk),
            Some(end) => {
                let mut tail = std::mem::take(&mut self.tail);
                self.parse(&tail, &chunk[..end])?;
                tail.clear();
                tail.extend_from_slice(&chunk[end..]);
                self.tail = tail;
            }
        }
        Ok(())
    }

    /// Runs the row scanner over `chunk`; returns the offset just past the last row end in it.
    fn scan(&mut self, chunk: &[u8]) -> Option<usize> {
        let mut end = None;
        for (i, &b) in chunk.iter().enumerate() {
            if let Some(n) = self.bom_matched {
                // The csv crate drops a byte order mark at the very start of the input.
                if b == BOM[n] {
                    self.bom_matched = (n + 1 < BOM.len()).then_some(n + 1);
                    continue;
                }
                self.bom_matched = None;
                // Not a mark after all: its first bytes were data (none of them ends a row).
                for &p in &BOM[..n] {
                    self.scan = self.scan.step(p).0;
                }
            }
            let (next, row_end) = self.scan.step(b);
            self.scan = next;
            if row_end {
                end = Some(i + 1);
            }
        }
        end
    }

    /// Parses `a` then `b`, which together end exactly at a row end (or at the end of input).
    fn parse(&mut self, a: &[u8], b: &[u8]) -> Result<(), UploadError> {
        let builder = CsvRules::reader_builder();
        if self.parsed_bytes == 0 {
            // The start of the file: one contiguous buffer, so a byte order mark is dropped
            // exactly as when the whole file is read.
            let mut all = Vec::with_capacity(a.len() + b.len());
            all.extend_from_slice(a);
            all.extend_from_slice(b);
            self.read_rows(builder.from_reader(&all[..]))?;
        } else {
            // Later slices start mid-file: hand the reader their first byte alone, so that
            // bytes which look like a byte order mark are kept as data.
            let (first, a, b) = if a.is_empty() {
                (&b[..1], a, &b[1..])
            } else {
                (&a[..1], &a[1..], b)
            };
            self.read_rows(builder.from_reader(first.chain(a).chain(b)))?;
        }
        self.parsed_bytes += (a.len() + b.len()) as u64;
        self.parsed_lines += count_newlines(a) + count_newlines(b);
        Ok(())
    }

    fn read_rows<R: Read>(&mut self, mut reader: csv::Reader<R>) -> Result<(), UploadError> {
        let mut record = csv::ByteRecord::new();
        loop {
            match reader.read_byte_record(&mut record) {
                Ok(false) => return Ok(()),
                Ok(true) => {}
                Err(e) => {
                    let line = e.position().map_or(0, |p| self.parsed_lines + p.line());
                    return Err(malformed(&self.shown, Problem::unreadable(line, &e)));
                }
            }
            // The csv crate's line: where the previous row ended.
            let line = self.parsed_lines + record.position().map_or(1, |p| p.line());
            if let Err(p) = self.rules.record(&record, line, |_| {}) {
                return Err(malformed(&self.shown, p));
            }
        }
    }
}

/// A broken rule in the upload named `shown`.
fn malformed(shown: &str, problem: Problem) -> UploadError {
    UploadError::Malformed(problem.in_file(shown))
}

fn already_failed() -> UploadError {
    UploadError::Io(io::Error::other(
        "this upload already failed; start a new one",
    ))
}

fn count_newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load_csv;

    const NO_LIMIT: UploadLimits = UploadLimits {
        max_bytes: u64::MAX,
        kind: UploadKind::Dataset,
    };

    /// A small deterministic generator for chunk sizes.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    /// Chunk sizes covering `len` bytes: whole, one byte at a time, and random sizes.
    fn chunkings(len: usize, seed: u64) -> Vec<Vec<usize>> {
        let mut out = vec![vec![len], vec![1; len]];
        let mut rng = Rng(seed | 1);
        for round in 0..24 {
            let max = [2, 3, 5, 8, 17, 64][round % 6];
            let mut sizes = Vec::new();
            let mut left = len;
            while left > 0 {
                // Empty chunks too: a stream may carry them.
                let n = rng.below(max + 1).min(left);
                sizes.push(n);
                left -= n;
            }
            out.push(sizes);
        }
        out
    }

    struct Outcome {
        result: Result<UploadSummary, UploadError>,
        /// Index of the push that failed; `None` when finish (or nothing) failed.
        failed_push: Option<usize>,
        /// Bytes pushed before the failing call, the failing chunk included.
        bytes_at_failure: usize,
    }

    fn upload(
        dest: &Path,
        data: &[u8],
        sizes: &[usize],
        label: Option<&str>,
        limits: UploadLimits,
        sha: Option<&str>,
    ) -> Outcome {
        let mut up = CsvUpload::new(dest, "up.csv", label, limits).unwrap();
        let mut at = 0;
        for (i, &n) in sizes.iter().enumerate() {
            if let Err(e) = up.push(&data[at..at + n]) {
                return Outcome {
                    result: Err(e),
                    failed_push: Some(i),
                    bytes_at_failure: at + n,
                };
            }
            at += n;
        }
        assert_eq!(at, data.len());
        Outcome {
            result: up.finish(sha),
            failed_push: None,
            bytes_at_failure: at,
        }
    }

    fn where_malformed(e: &UploadError) -> (String, u64, u64, String) {
        match e {
            UploadError::Malformed(DataError::Malformed {
                file,
                line,
                column,
                message,
            }) => (file.clone(), *line, *column, message.clone()),
            other => panic!("expected a malformed-file error, got {other:?}"),
        }
    }

    fn sha_hex(data: &[u8]) -> String {
        Sha256::digest(data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Uploads `data` in many chunkings and checks each outcome against `load_csv` on the
    /// same bytes: the same summary, or the same error at the same line and column. Returns
    /// the outcomes of the chunkings.
    fn same_as_load_csv(data: &[u8], label: Option<&str>) -> Vec<(Vec<usize>, Outcome)> {
        let dir = tempfile::tempdir().unwrap();
        let whole = dir.path().join("whole.csv");
        std::fs::write(&whole, data).unwrap();
        let expected = load_csv(&whole, "up.csv", label);
        let dest = dir.path().join("upload.tmp");
        let mut outcomes = Vec::new();
        for sizes in chunkings(data.len(), data.len() as u64 * 7919 + 17) {
            let o = upload(&dest, data, &sizes, label, NO_LIMIT, None);
            let ctx = format!("{:?} in chunks {sizes:?}", String::from_utf8_lossy(data));
            match (&expected, &o.result) {
                (Ok(ds), Ok(s)) => {
                    assert_eq!(s.rows, ds.rows() as u64, "{ctx}");
                    assert_eq!(s.features as usize, ds.width, "{ctx}");
                    assert_eq!(s.labels, ds.labels, "{ctx}");
                    let counts: Vec<u64> =
                        ds.class_counts().into_iter().map(|c| c as u64).collect();
                    assert_eq!(s.class_counts, counts, "{ctx}");
                    assert_eq!(s.bytes, data.len() as u64, "{ctx}");
                    assert_eq!(s.sha256, sha_hex(data), "{ctx}");
                    assert_eq!(std::fs::read(&dest).unwrap(), data, "{ctx}");
                }
                (Err(want), Err(got)) => {
                    let (file, line, column, message) = where_malformed(got);
                    let DataError::Malformed {
                        line: l,
                        column: c,
                        message: m,
                        ..
                    } = want
                    else {
                        panic!("load_csv gave {want:?} for {ctx}");
                    };
                    assert_eq!(file, "up.csv", "{ctx}");
                    assert_eq!((line, column, &message), (*l, *c, m), "{ctx}");
                    assert_eq!(got.to_string(), want.to_string(), "{ctx}");
                }
                (want, got) => panic!("load_csv gave {want:?}, the upload {got:?}, for {ctx}"),
            }
            outcomes.push((sizes, o));
        }
        outcomes
    }

    #[test]
    fn valid_files_in_any_chunking_match_load_csv_byte_for_byte() {
        let cases: &[(&str, Option<&str>)] = &[
            ("x,y,label\n1,2,10\n3,4,9\n5,6,10\n", None),
            // Quoted fields with a comma and an embedded newline, in the header and in rows.
            (
                "\"a,b\",y,label\n1,\"2\",\"cat\nwith newline\"\n\" 3 \",4,\"dog, big\"\n5,6,\"cat\nwith newline\"\n",
                None,
            ),
            ("kind,x\ncat,1\ndog,2\nant,3", Some("kind")),
            ("x,label\r\n1,a\r\n2,b\r\n", None),
            ("x,label\r1,a\r2,b\r", None),
            ("\u{feff}x,label\n1,0\n2,1\n", None),
            ("\n\nx,label\n\n1,0\n\r\n\n2,1\n\n", None),
            // Integer labels written differently are one class; mixed labels sort as text.
            ("x,label\n1,05\n2,5\n3,+5\n4,-1\n", None),
            ("x,label\n1,05\n2,b\n3,10\n4,9\n", None),
            (" x , label \n 1 , a \n\t2\t,\tb\t\n", Some("label")),
            ("x,label\n1,\"a\"\"b\"\n2,\"a\"\"b\"\n3,c\n", None),
            ("x,label\n1e3,1\n-0.5,2\n.5,3", None),
            // A quote after a space is data: the label is `""`.
            ("x,label\n1, \"\" \n2,a\n", None),
            // An unterminated quote: the rest of the file is one label.
            ("x,label\n1,0\n2,\"1\n3,1\n", None),
        ];
        for &(text, label) in cases {
            for (_, o) in same_as_load_csv(text.as_bytes(), label) {
                assert!(o.result.is_ok(), "{text:?}: {:?}", o.result.err());
            }
        }
    }

    #[test]
    fn summary_names_the_label_column_and_counts_classes() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("u.tmp");
        let data = b"kind,x,y\ncat,1,2\ndog,2,3\ncat,3,4\n";
        let s = upload(&dest, data, &[data.len()], Some("kind"), NO_LIMIT, None)
            .result
            .unwrap();
        assert_eq!(s.label_column, "kind");
        assert_eq!(s.features, 2);
        assert_eq!(s.rows, 3);
        assert_eq!(s.labels, vec!["cat", "dog"]);
        assert_eq!(s.class_counts, vec![2, 1]);
        let s = upload(&dest, b"a,b\n1,2\n", &[8], None, NO_LIMIT, None)
            .result
            .unwrap();
        assert_eq!(s.label_column, "b");
    }

    #[test]
    fn malformed_files_fail_like_load_csv() {
        let cases: &[(&[u8], Option<&str>)] = &[
            (b"x,y,label\n1,2,0\n3,1\n", None),
            (b"x,y,label\n1,2,0\n3,1,2,4\n5,6,7\n", None),
            (b"x,y,label\n1,2,0\n3,abc,1\n", None),
            (b"x,y,label\n1,2,0\n3,inf,1\n", None),
            (b"x,y,label\n1,2,0\n3,NaN,1\n", None),
            (b"x,y,label\n1,2,0\n3,4,\n", None),
            (b"x,y,label\n1,2,0\n3,4,\"\" \n", None),
            (b"x,y\n1,0\n", Some("target")),
            (b"x,y\n", Some("target")),
            (b"label\n1\n", None),
            (b" \n1,2\n", None),
            (b"", None),
            (b"\n\r\n", None),
            (b"x,label\n", None),
            (b"x,label", None),
            (b"x,label\n\n\n", None),
            (b"\xef\xbb\xbf", None),
            (b"\xef\xbbx,label\n1,0\n", None),
            // Line numbers as the csv crate counts them (where the previous row ended).
            (b"x,label\r\n1,0\r\n2,z,3\r\n", None),
            (b"x,label\n\n1,0\n\n\n2,z,3\n", None),
            (b"x,label\n1,0\n2,\"a\nb\nc\"\n3,\"4\n5\",z\n", None),
            // Unterminated quote: the rest of the file is one field.
            (b"x,label\n1,0\n\"2,1\n3,1\n", None),
            // A quote inside an unquoted field is data.
            (b"x,label\n1,0\n2, \"a,b\"\n", None),
            (b"x,label\n1,0\n2a\"b,1\n", None),
            (b"x,label\n1,0\n\"2\"x,1\n", None),
            // Invalid UTF-8, in a row and in the header; a mark mid-file is data.
            (b"x,label\n1,0\n2,\xff\n", None),
            (b"x,\xfflabel\n1,0\n", None),
            (b"x,label\n1,0\n\xef\xbb\xbf2,1\n", None),
        ];
        for &(data, label) in cases {
            for (_, o) in same_as_load_csv(data, label) {
                assert!(o.result.is_err(), "{:?}", String::from_utf8_lossy(data));
            }
        }
    }

    /// The push that fails is the one whose chunk completes the bad row.
    fn fails_at_the_push_completing(data: &str, row_end: &str, label: Option<&str>) {
        let end = data.find(row_end).unwrap() + row_end.len();
        for (sizes, o) in same_as_load_csv(data.as_bytes(), label) {
            let failed = o
                .failed_push
                .unwrap_or_else(|| panic!("{data:?} in chunks {sizes:?} failed only at finish"));
            let before: usize = sizes[..failed].iter().sum();
            assert!(
                before < end && end <= o.bytes_at_failure,
                "{data:?} in chunks {sizes:?}: failed at push {failed}"
            );
        }
    }

    #[test]
    fn errors_are_reported_by_the_push_that_completes_the_row() {
        fails_at_the_push_completing("x,y,label\n1,2,0\n3,1\n4,5,6\n", "3,1\n", None);
        fails_at_the_push_completing("x,y,label\n1,2,0\n3,1\n", "3,1\n", None);
        fails_at_the_push_completing("x,y,label\n1,2,0\n3,abc,1\n4,5,6\n", "abc,1\n", None);
        fails_at_the_push_completing(
            "x,y,label\n1,\"2\n\",0\n3,\"a\nb\",1\n4,5,6\n",
            "b\",1\n",
            None,
        );
        fails_at_the_push_completing("x,y\n1,0\n2,1\n", "x,y\n", Some("target"));
    }

    #[test]
    fn an_error_in_an_unterminated_last_row_is_reported_at_finish() {
        for (_, o) in same_as_load_csv(b"x,label\n1,0\n2,x,3", None) {
            assert!(o.failed_push.is_none());
            assert_eq!(where_malformed(&o.result.unwrap_err()).1, 3);
        }
    }

    #[test]
    fn too_large_fails_as_soon_as_the_limit_is_crossed() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("u.tmp");
        let data = b"x,label\n1,0\n2,1\n3,0\n"; // 20 bytes
        let limits = UploadLimits::dataset(16);
        let o = upload(&dest, data, &[6, 6, 6, 2], None, limits, None);
        assert_eq!(o.failed_push, Some(2));
        let e = o.result.unwrap_err();
        assert!(
            matches!(e, UploadError::TooLarge { limit: 16, .. }),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains("limit of 16 bytes") && msg.contains("--max-dataset-bytes"),
            "{msg}"
        );
        let exact = UploadLimits::dataset(data.len() as u64);
        let s = upload(&dest, data, &[6, 6, 6, 2], None, exact, None);
        assert_eq!(s.result.unwrap().bytes, 20);
        // After a failure the upload stays failed.
        let mut up = CsvUpload::new(&dest, "up.csv", None, limits).unwrap();
        assert!(up.push(data).is_err());
        assert!(matches!(up.push(b"x"), Err(UploadError::Io(_))));
    }

    #[test]
    fn the_checksum_is_checked_when_given() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("u.tmp");
        let data = b"x,label\n1,0\n2,1\n";
        let right = sha_hex(data);
        let s = upload(&dest, data, &[5, 11], None, NO_LIMIT, Some(&right))
            .result
            .unwrap();
        assert_eq!(s.sha256, right);
        let upper = right.to_uppercase();
        assert!(
            upload(&dest, data, &[16], None, NO_LIMIT, Some(&upper))
                .result
                .is_ok()
        );
        let wrong = sha_hex(b"something else");
        match upload(&dest, data, &[16], None, NO_LIMIT, Some(&wrong)).result {
            Err(UploadError::ChecksumMismatch { expected, actual }) => {
                assert_eq!((expected, actual), (wrong, right));
            }
            other => panic!("expected a checksum mismatch, got {other:?}"),
        }
    }

    #[test]
    fn empty_and_header_only_uploads_fail_at_finish() {
        for (data, wording) in [
            (&b""[..], "the file is empty"),
            (b"\n\n", "the file is empty"),
            (b"x,label\n", "empty dataset"),
            (b"x,label", "empty dataset"),
        ] {
            for (_, o) in same_as_load_csv(data, None) {
                assert!(o.failed_push.is_none(), "{data:?}");
                let msg = where_malformed(&o.result.unwrap_err()).3;
                assert!(msg.contains(wording), "{data:?}: {msg}");
            }
        }
    }

    #[test]
    fn memory_holds_only_the_row_still_arriving() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("u.tmp");
        let mut up = CsvUpload::new(&dest, "up.csv", None, NO_LIMIT).unwrap();
        up.push(b"a,b,label\n").unwrap();
        let row = b"1.25,2.5,7\n";
        for _ in 0..10_000 {
            up.push(&row[..4]).unwrap();
            up.push(&row[4..]).unwrap();
            assert!(up.tail.len() < row.len());
        }
        let s = up.finish(None).unwrap();
        assert_eq!(s.rows, 10_000);
        assert_eq!(s.class_counts, vec![10_000]);
        assert_eq!(std::fs::metadata(&dest).unwrap().len(), s.bytes);
    }
}
