//! NumPy's `.npy` format (versions 1.0–3.0) and `.npz` archives of them (`numpy.savez`,
//! stored, or `numpy.savez_compressed`, deflated): the header's dictionary gives the element
//! type, the order and the shape; the elements follow, read as a stream.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use super::{ArrayError, ArrayHeader, ArrayReader, ElementType};

const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// Largest header accepted (NumPy writes a few hundred bytes).
const MAX_HEADER: usize = 1 << 20;

/// Opens `path` (shown as `shown` in messages) as the array `name`.
pub fn open_npy(path: &Path, shown: &str, name: &str) -> Result<ArrayReader, ArrayError> {
    let file = File::open(path).map_err(|e| file_error(shown, format!("cannot be opened: {e}")))?;
    let len = file.metadata().map(|m| m.len()).ok();
    let mut source = BufReader::with_capacity(1 << 16, file);
    let (header, header_bytes) = read_header(&mut source, shown)?;
    ArrayReader::new(
        header,
        shown.to_string(),
        name.to_string(),
        Box::new(source),
        len.map(|l| l.saturating_sub(header_bytes)),
    )
}

/// Opens member `name` (`name.npy` in the archive) of the `.npz` at `path`.
pub fn open_npz_member(path: &Path, shown: &str, name: &str) -> Result<ArrayReader, ArrayError> {
    let file = File::open(path).map_err(|e| file_error(shown, format!("cannot be opened: {e}")))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| {
        file_error(
            shown,
            format!("is not a .npz (zip) archive: {e}; write it with numpy.savez"),
        )
    })?;
    let member = format!("{name}.npy");
    if !archive.file_names().any(|n| n == member) {
        let mut names: Vec<&str> = archive.file_names().collect();
        names.sort_unstable();
        return Err(file_error(
            shown,
            format!(
                "has no array '{name}' (members: {}); save it as numpy.savez(path, {name}=...)",
                names.join(", ")
            ),
        ));
    }
    let (start, compressed, method, size) = {
        let entry = archive
            .by_name(&member)
            .map_err(|e| file_error(shown, format!("cannot read member {member}: {e}")))?;
        (
            entry.data_start(),
            entry.compressed_size(),
            entry.compression(),
            entry.size(),
        )
    };
    let where_ = format!("{shown}:{member}");
    let mut file = archive.into_inner();
    file.seek(SeekFrom::Start(start))
        .map_err(|e| file_error(&where_, e.to_string()))?;
    let raw = BufReader::with_capacity(1 << 16, file.take(compressed));
    let mut source: Box<dyn Read + Send> = match method {
        zip::CompressionMethod::Stored => Box::new(raw),
        zip::CompressionMethod::Deflated => Box::new(flate2::read::DeflateDecoder::new(raw)),
        other => {
            return Err(file_error(
                &where_,
                format!("is compressed with {other:?}; use numpy.savez or numpy.savez_compressed"),
            ));
        }
    };
    let (header, header_bytes) = read_header(&mut source, &where_)?;
    let available = Some(size.saturating_sub(header_bytes));
    ArrayReader::new(header, where_, name.to_string(), source, available)
}

fn file_error(where_: &str, message: String) -> ArrayError {
    ArrayError::File {
        where_: where_.to_string(),
        message,
    }
}

/// Reads the magic, version and header dictionary; with the header's length in bytes.
fn read_header(source: &mut dyn Read, where_: &str) -> Result<(ArrayHeader, u64), ArrayError> {
    let truncated = |_| {
        file_error(
            where_,
            "ends inside the .npy header; the file is truncated".into(),
        )
    };
    let mut lead = [0u8; 8];
    source.read_exact(&mut lead).map_err(truncated)?;
    if &lead[..6] != MAGIC {
        return Err(file_error(
            where_,
            "is not a .npy file (no \\x93NUMPY magic); write it with numpy.save".into(),
        ));
    }
    let (len, len_bytes) = match lead[6] {
        1 => {
            let mut b = [0u8; 2];
            source.read_exact(&mut b).map_err(truncated)?;
            (usize::from(u16::from_le_bytes(b)), 2)
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            source.read_exact(&mut b).map_err(truncated)?;
            (u32::from_le_bytes(b) as usize, 4)
        }
        v => {
            return Err(file_error(
                where_,
                format!(
                    "is .npy format version {v}.{}, which is not supported (1.0 to 3.0 are)",
                    lead[7]
                ),
            ));
        }
    };
    if len > MAX_HEADER {
        return Err(file_error(
            where_,
            format!("declares a {len}-byte header; that is not a .npy file"),
        ));
    }
    let mut text = vec![0u8; len];
    source.read_exact(&mut text).map_err(truncated)?;
    let text = String::from_utf8(text)
        .map_err(|_| file_error(where_, "has a header that is not text".into()))?;
    let header = parse_dict(&text)
        .map_err(|m| file_error(where_, format!("header {}: {m}", text.trim())))?;
    Ok((header, 8 + len_bytes + len as u64))
}

/// `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`.
fn parse_dict(text: &str) -> Result<ArrayHeader, String> {
    let descr = value_of(text, "descr")?;
    let descr = descr
        .strip_prefix('\'')
        .and_then(|d| d.split('\'').next())
        .ok_or("'descr' is not a simple type string (structured arrays are not supported)")?;
    let element = ElementType::from_numpy(descr).ok_or_else(|| {
        format!("element type '{descr}' is not numeric; store floats, integers or booleans")
    })?;
    let fortran = value_of(text, "fortran_order")?;
    if fortran.starts_with("True") {
        return Err(
            "the array is in Fortran order; save numpy.ascontiguousarray(a) instead".into(),
        );
    }
    if !fortran.starts_with("False") {
        return Err("'fortran_order' is neither True nor False".into());
    }
    let shape = value_of(text, "shape")?;
    let inner = shape
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or("'shape' is not a tuple")?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.trim_end_matches('L').parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| "'shape' holds something that is not a dimension".to_string())?;
    Ok(ArrayHeader { element, shape })
}

/// The text right after `'key':`.
fn value_of<'a>(text: &'a str, key: &str) -> Result<&'a str, String> {
    let at = text
        .find(&format!("'{key}'"))
        .ok_or_else(|| format!("has no '{key}'"))?;
    let rest = &text[at + key.len() + 2..];
    let rest = rest.trim_start();
    rest.strip_prefix(':')
        .map(str::trim_start)
        .ok_or_else(|| format!("'{key}' has no value"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A version 1.0 `.npy` of `descr` and `shape` with `data` as its elements.
    pub(crate) fn npy_bytes(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
        let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
        let shape = match dims.len() {
            1 => format!("({},)", dims[0]),
            _ => format!("({})", dims.join(", ")),
        };
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = MAGIC.to_vec();
        out.extend([1, 0]);
        out.extend((header.len() as u16).to_le_bytes());
        out.extend(header.as_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn header_dictionaries() {
        let h =
            parse_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2, 2), }").unwrap();
        assert_eq!(h.shape, vec![3, 2, 2]);
        assert_eq!((h.rows(), h.row_len()), (3, 4));
        let h = parse_dict("{'descr': '|u1', 'fortran_order': False, 'shape': (5,), }").unwrap();
        assert_eq!((h.rows(), h.row_len()), (5, 1));
        let e =
            parse_dict("{'descr': '<f8', 'fortran_order': True, 'shape': (2, 2), }").unwrap_err();
        assert!(e.contains("ascontiguousarray"), "{e}");
        let e =
            parse_dict("{'descr': '<U3', 'fortran_order': False, 'shape': (2,), }").unwrap_err();
        assert!(e.contains("not numeric"), "{e}");
        let e = parse_dict("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }")
            .unwrap_err();
        assert!(e.contains("structured"), "{e}");
    }

    #[test]
    fn reads_rows_and_catches_truncation_and_extra_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
        let path = dir.path().join("x.npy");
        std::fs::write(&path, npy_bytes("<f4", &[3, 2], &data)).unwrap();
        let mut r = open_npy(&path, "x.npy", "features").unwrap();
        let mut row = Vec::new();
        assert!(r.next_row(&mut row).unwrap());
        assert_eq!(row, vec![0.0, 1.0]);
        assert!(r.next_row(&mut row).unwrap() && r.next_row(&mut row).unwrap());
        assert_eq!(row, vec![4.0, 5.0]);
        assert!(!r.next_row(&mut row).unwrap());
        r.finish().unwrap();

        // A header that promises more than the file holds fails before anything is read or
        // allocated from it, as does one whose sizes overflow.
        std::fs::write(&path, npy_bytes("<f4", &[4, 2], &data)).unwrap();
        let e = open_npy(&path, "x.npy", "features")
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.starts_with("x.npy: declares shape [4, 2] (32 bytes of data) but holds 24"),
            "{e}"
        );
        let huge = usize::MAX / 2;
        std::fs::write(&path, npy_bytes("<f4", &[2, huge, 4], &data)).unwrap();
        let e = open_npy(&path, "x.npy", "features")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("more than 16777216 values"), "{e}");

        std::fs::write(&path, npy_bytes("<f4", &[2, 2], &data)).unwrap();
        let mut r = open_npy(&path, "x.npy", "features").unwrap();
        while r.next_row(&mut row).unwrap() {}
        assert!(r.finish().unwrap_err().to_string().contains("bytes follow"));

        std::fs::write(&path, b"not numpy at all").unwrap();
        let e = open_npy(&path, "x.npy", "features")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("numpy.save"), "{e}");
    }
}
