//! The IDX format of the MNIST files: two zero bytes, a type code, the number of
//! dimensions, each dimension as a big-endian `u32`, then the elements, big-endian.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use super::{ArrayError, ArrayHeader, ArrayReader, ElementType};

/// Opens the IDX file at `path` (shown as `shown`) as the array `name`.
pub fn open_idx(path: &Path, shown: &str, name: &str) -> Result<ArrayReader, ArrayError> {
    let error = |message: String| ArrayError::File {
        where_: shown.to_string(),
        message,
    };
    let file = File::open(path).map_err(|e| error(format!("cannot be opened: {e}")))?;
    let len = file.metadata().map(|m| m.len()).ok();
    let mut source = BufReader::with_capacity(1 << 16, file);
    let truncated = |_| error("ends inside the IDX header; the file is truncated".into());
    let mut magic = [0u8; 4];
    source.read_exact(&mut magic).map_err(truncated)?;
    if magic[..2] != [0, 0] {
        return Err(error(
            "is not an IDX file (it does not start with two zero bytes); give the uncompressed MNIST-format file (gunzip it first)".into(),
        ));
    }
    let element = ElementType::from_idx(magic[2]).ok_or_else(|| {
        error(format!(
            "has IDX type code 0x{:02X}; known are 0x08 (u8), 0x09 (i8), 0x0B (i16), 0x0C (i32), 0x0D (f32), 0x0E (f64)",
            magic[2]
        ))
    })?;
    if magic[3] == 0 {
        return Err(error(
            "declares 0 dimensions; an IDX file needs at least one".into(),
        ));
    }
    let mut shape = Vec::with_capacity(usize::from(magic[3]));
    for _ in 0..magic[3] {
        let mut d = [0u8; 4];
        source.read_exact(&mut d).map_err(truncated)?;
        shape.push(u32::from_be_bytes(d) as usize);
    }
    let header_bytes = 4 + 4 * shape.len() as u64;
    ArrayReader::new(
        ArrayHeader { element, shape },
        shown.to_string(),
        name.to_string(),
        Box::new(source),
        len.map(|l| l.saturating_sub(header_bytes)),
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An IDX file of unsigned bytes with `shape`.
    pub(crate) fn idx_u8(shape: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0, 0x08, shape.len() as u8];
        for d in shape {
            out.extend(d.to_be_bytes());
        }
        out.extend(data);
        out
    }

    #[test]
    fn reads_images_and_refuses_what_is_not_idx() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("images.idx");
        let data: Vec<u8> = (0..12).collect();
        std::fs::write(&path, idx_u8(&[3, 2, 2], &data)).unwrap();
        let mut r = open_idx(&path, "images.idx", "images").unwrap();
        assert_eq!(r.header.shape, vec![3, 2, 2]);
        let mut row = Vec::new();
        r.next_row(&mut row).unwrap();
        r.next_row(&mut row).unwrap();
        assert_eq!(row, vec![4.0, 5.0, 6.0, 7.0]);
        assert_eq!(r.index_of(2, 3), vec![2, 1, 1]);

        std::fs::write(&path, [0x1f, 0x8b, 8, 0]).unwrap();
        let e = open_idx(&path, "images.idx", "images")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("gunzip"), "{e}");
        std::fs::write(&path, [0, 0, 0x0A, 1, 0, 0, 0, 1]).unwrap();
        let e = open_idx(&path, "images.idx", "images")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("0x0A"), "{e}");
    }
}
