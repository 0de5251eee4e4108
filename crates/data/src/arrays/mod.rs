//! Labelled arrays from binary formats: NumPy (`.npy` features with a labels `.npy`, or one
//! `.npz` holding both) and IDX (the MNIST format: an images file and a labels file).
//!
//! Each format is read as an [`ArrayReader`]: a header ([`ArrayHeader`]: element type and
//! shape) and then its elements in row-major order, streamed, validated as they are read.
//! [`LabelledArrays`] pairs a features reader with a labels reader row by row, so a dataset of
//! any size passes through a fixed amount of memory; [`load_labelled`] collects one into an
//! in-memory [`Dataset`](crate::Dataset) for the in-memory path.

mod dtype;
mod idx;
mod labelled;
mod npy;

pub use dtype::{ByteOrder, ElementType};
pub use idx::open_idx;
pub(crate) use labelled::feature_name;
pub use labelled::{LabelledArrays, load_labelled};
#[cfg(test)]
pub(crate) use npy::tests::npy_bytes as npy_test_bytes;
pub use npy::{open_npy, open_npz_member};

use std::io::Read;

/// Why an array file cannot be read. Each message names the file, the array and, for a
/// bad value, its index, and says what to do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ArrayError {
    /// The header or layout is wrong, or the file cannot be read (`where_` is the file, or
    /// `file:member`).
    #[error("{where_}: {message}")]
    File { where_: String, message: String },
    /// One element is not acceptable.
    #[error("{where_}: {array}[{}]: {message}", index_text(.index))]
    Value {
        where_: String,
        array: String,
        index: Vec<usize>,
        message: String,
    },
}

fn index_text(index: &[usize]) -> String {
    index
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What an array file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArrayHeader {
    pub element: ElementType,
    /// Outermost first; `shape[0]` is the number of rows.
    pub shape: Vec<usize>,
}

impl ArrayHeader {
    /// Rows: the first dimension (1 for a 0-dimensional array).
    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }

    /// Elements per row: the product of the other dimensions.
    pub fn row_len(&self) -> usize {
        self.shape.iter().skip(1).product()
    }

    /// Refuses a shape whose sizes overflow, a row of more than [`MAX_ROW_VALUES`] values,
    /// or more data than the `available` bytes after the header (when known): a header is
    /// checked before anything is allocated from it.
    fn check(&self, where_: &str, available: Option<u64>) -> Result<(), ArrayError> {
        let error = |message: String| ArrayError::File {
            where_: where_.to_string(),
            message,
        };
        let row_len = self
            .shape
            .iter()
            .skip(1)
            .try_fold(1u64, |n, &d| n.checked_mul(d as u64))
            .filter(|&n| n <= MAX_ROW_VALUES)
            .ok_or_else(|| {
                error(format!(
                    "declares rows of shape {:?}, more than {MAX_ROW_VALUES} values each",
                    &self.shape[1.min(self.shape.len())..]
                ))
            })?;
        let bytes = (self.rows() as u64)
            .checked_mul(row_len)
            .and_then(|n| n.checked_mul(self.element.size() as u64));
        match (bytes, available) {
            (None, _) => Err(error(format!(
                "declares shape {:?}, which overflows",
                self.shape
            ))),
            (Some(b), Some(a)) if b > a => Err(error(format!(
                "declares shape {:?} ({b} bytes of data) but holds {a} bytes after its header; the file is truncated or its header is wrong",
                self.shape
            ))),
            _ => Ok(()),
        }
    }
}

/// Values one row of an array may hold (64 MiB of float32).
pub const MAX_ROW_VALUES: u64 = 1 << 24;

/// An array being read: its header, then its elements row by row.
pub struct ArrayReader {
    pub header: ArrayHeader,
    /// The file (or `file:member`) and the array's name, for messages.
    pub where_: String,
    pub name: String,
    source: Box<dyn Read + Send>,
    /// Rows read so far.
    row: usize,
    buf: Vec<u8>,
}

impl ArrayReader {
    /// A reader of `header`'s data from `source`, which holds `available` bytes after the
    /// header (when known); fails if the header does not fit them.
    fn new(
        header: ArrayHeader,
        where_: String,
        name: String,
        source: Box<dyn Read + Send>,
        available: Option<u64>,
    ) -> Result<Self, ArrayError> {
        header.check(&where_, available)?;
        Ok(Self {
            header,
            where_,
            name,
            source,
            row: 0,
            buf: Vec::new(),
        })
    }

    /// Rows not yet read.
    pub fn remaining(&self) -> usize {
        self.header.rows() - self.row
    }

    /// The next row's elements as `f64`, into `out` (resized to the row length); `false`
    /// after the last row.
    pub fn next_row(&mut self, out: &mut Vec<f64>) -> Result<bool, ArrayError> {
        if self.row >= self.header.rows() {
            return Ok(false);
        }
        let n = self.header.row_len();
        let size = self.header.element.size();
        self.buf.resize(n * size, 0);
        if let Err(e) = self.source.read_exact(&mut self.buf) {
            let message = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                format!(
                    "the data ends in row {} of {} declared by the header ({:?}); the file is truncated: write it again",
                    self.row,
                    self.header.rows(),
                    self.header.shape
                )
            } else {
                format!("cannot read row {}: {e}", self.row)
            };
            return Err(ArrayError::File {
                where_: self.where_.clone(),
                message,
            });
        }
        out.clear();
        out.extend(
            self.buf
                .chunks_exact(size)
                .map(|b| self.header.element.decode(b)),
        );
        self.row += 1;
        Ok(true)
    }

    /// The index of element `i` of row `row` in the full shape (for messages).
    pub fn index_of(&self, row: usize, i: usize) -> Vec<usize> {
        let mut index = vec![row];
        let dims = &self.header.shape[1.min(self.header.shape.len())..];
        let mut rest = i;
        let mut inner: Vec<usize> = Vec::with_capacity(dims.len());
        for &d in dims.iter().rev() {
            inner.push(rest % d.max(1));
            rest /= d.max(1);
        }
        index.extend(inner.into_iter().rev());
        index
    }

    /// The error for element `i` of the row just read.
    pub fn value_error(&self, i: usize, message: String) -> ArrayError {
        ArrayError::Value {
            where_: self.where_.clone(),
            array: self.name.clone(),
            index: self.index_of(self.row - 1, i),
            message,
        }
    }

    /// Fails unless nothing follows the last row.
    pub fn finish(&mut self) -> Result<(), ArrayError> {
        let mut extra = [0u8; 1];
        match self.source.read(&mut extra) {
            Ok(0) => Ok(()),
            Ok(_) => Err(ArrayError::File {
                where_: self.where_.clone(),
                message: format!(
                    "bytes follow the {} elements the header declares ({:?}); the shape in the header is wrong",
                    self.header.rows() * self.header.row_len(),
                    self.header.shape
                ),
            }),
            Err(e) => Err(ArrayError::File {
                where_: self.where_.clone(),
                message: e.to_string(),
            }),
        }
    }
}
