//! The server's stored copies of datasets (`data::shards`), one per source fingerprint,
//! under `<state>/datasets/`: written once at the first submit that names the files, then
//! the only thing jobs read (a resumed job never reads the source files again, so editing
//! or deleting them cannot change it). Small copies are trained in memory, large ones
//! streamed.

use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::data::shards::{ShardedDataset, SourceInfo, ingest_arrays};
use crate::data::{self, DataError};
use crate::domain::{ArrayFormat, ArraysSpec};

/// One ingest at a time: two submits of the same new files write it once.
static INGEST: Mutex<()> = Mutex::new(());

/// The stored copy of the arrays `spec` names (written now if it does not exist yet),
/// and its fingerprint.
pub(super) fn store_arrays(
    spec: &ArraysSpec,
    data_dir: &Path,
    root: &Path,
) -> Result<(String, Arc<ShardedDataset>), DataError> {
    let files = data::array_files(spec, data_dir)?;
    let (fingerprint, bytes) = fingerprint_of(spec, &files)?;
    let dir = root.join(&fingerprint);
    let _one = INGEST.lock().unwrap_or_else(|e| e.into_inner());
    if dir.join("manifest.json").exists() {
        match ShardedDataset::open(&dir) {
            Ok(stored) => return Ok((fingerprint, Arc::new(stored))),
            // A damaged copy is written again from the files, which are at hand.
            Err(e) => {
                tracing::warn!(error = %e, "a stored dataset is damaged; storing it again");
                std::fs::remove_dir_all(&dir).map_err(|e| DataError::Stored {
                    path: dir.display().to_string(),
                    message: e.to_string(),
                })?;
            }
        }
    }
    {
        std::fs::create_dir_all(root).map_err(|e| DataError::Stored {
            path: root.display().to_string(),
            message: e.to_string(),
        })?;
        let source = SourceInfo {
            description: describe(spec),
            sha256: fingerprint.clone(),
            bytes,
        };
        ingest_arrays(data::open_arrays(spec, data_dir)?, &dir, source)?;
        // The files are read twice (hashed, then stored): a file replaced in between would
        // leave other rows under this fingerprint, so the copy is kept only if they match.
        if fingerprint_of(spec, &files)?.0 != fingerprint {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(DataError::Spec(crate::domain::SpecError::new(
                "spec.dataset.arrays",
                "the files changed while the server was storing them; submit again once they are written",
            )));
        }
    }
    Ok((fingerprint, Arc::new(ShardedDataset::open(&dir)?)))
}

/// The stored copy `fingerprint`.
pub(super) fn open(root: &Path, fingerprint: &str) -> Result<Arc<ShardedDataset>, DataError> {
    Ok(Arc::new(ShardedDataset::open(&root.join(fingerprint))?))
}

/// Whether a stored copy is trained in memory: its features fit in `limit` bytes.
pub(super) fn fits_in_memory(data: &ShardedDataset, limit: u64) -> bool {
    let m = &data.manifest;
    m.rows.saturating_mul(m.width as u64 * 4) <= limit
}

/// SHA-256 over what decides the stored rows: the format, the archive's member names and
/// every file's bytes (each preceded by its length); with the files' total size.
fn fingerprint_of(
    spec: &ArraysSpec,
    files: &[std::path::PathBuf],
) -> Result<(String, u64), DataError> {
    let mut h = Sha256::new();
    let (x, y) = spec.npz_arrays();
    h.update(format!("gradstream arrays v1 {:?} {x} {y}\n", spec.format));
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for file in files {
        let unreadable = |e: std::io::Error| DataError::Stored {
            path: file.display().to_string(),
            message: format!("cannot be read: {e}"),
        };
        let mut f = std::fs::File::open(file).map_err(unreadable)?;
        let len = f.metadata().map_err(unreadable)?.len();
        h.update(len.to_le_bytes());
        total += len;
        loop {
            let n = f.read(&mut buf).map_err(unreadable)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((hex, total))
}

fn describe(spec: &ArraysSpec) -> String {
    match spec.format {
        ArrayFormat::Npz => format!("npz {}", spec.features_path),
        ArrayFormat::Npy => format!("npy {} + {}", spec.features_path, spec.labels_path),
        ArrayFormat::Idx => format!("idx {} + {}", spec.features_path, spec.labels_path),
    }
}
