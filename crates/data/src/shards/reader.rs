//! Reading a stored dataset: its manifest, then any shard's rows in order.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::writer::stored;
use super::{Manifest, shard_files};
use crate::{DataError, Dataset};

/// A stored dataset, opened: its manifest read and its files checked against it.
#[derive(Debug, Clone)]
pub struct ShardedDataset {
    dir: PathBuf,
    pub manifest: Manifest,
}

impl ShardedDataset {
    pub fn open(dir: &Path) -> Result<Self, DataError> {
        let path = dir.join("manifest.json");
        let bytes = std::fs::read(&path).map_err(|e| stored(&path, e))?;
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| DataError::Stored {
            path: path.display().to_string(),
            message: format!("is not a dataset manifest: {e}"),
        })?;
        if manifest.version != Manifest::VERSION {
            return Err(DataError::Stored {
                path: path.display().to_string(),
                message: format!(
                    "is layout version {}, this server reads {}",
                    manifest.version,
                    Manifest::VERSION
                ),
            });
        }
        for (i, shard) in manifest.shards.iter().enumerate() {
            let (f, l) = shard_files(dir, i);
            for (file, bytes) in [
                (&f, shard.rows * manifest.width as u64 * 4),
                (&l, shard.rows * 4),
            ] {
                let len = std::fs::metadata(file).map_err(|e| stored(file, e))?.len();
                if len != bytes {
                    return Err(DataError::Stored {
                        path: file.display().to_string(),
                        message: format!(
                            "has {len} bytes where the manifest's {} rows need {bytes}; the stored dataset is damaged: upload it again",
                            shard.rows
                        ),
                    });
                }
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Shard `i`'s rows, from the first.
    pub fn shard(&self, i: usize) -> Result<ShardCursor, DataError> {
        let (f, l) = shard_files(&self.dir, i);
        let open = |p: &Path| {
            File::open(p)
                .map(|f| BufReader::with_capacity(1 << 20, f))
                .map_err(|e| stored(p, e))
        };
        Ok(ShardCursor {
            features: open(&f)?,
            labels: open(&l)?,
            path: f,
            remaining: self.manifest.shards[i].rows,
            classes: self.manifest.labels.len(),
            bytes: vec![0; self.manifest.width * 4],
        })
    }

    /// Every row in memory, in storage order (the in-memory path of small datasets).
    pub fn load(&self) -> Result<Dataset, DataError> {
        let m = &self.manifest;
        let mut features = Vec::with_capacity(m.rows as usize * m.width);
        let mut targets = Vec::with_capacity(m.rows as usize);
        let mut row = vec![0f32; m.width];
        for i in 0..m.shards.len() {
            let mut cursor = self.shard(i)?;
            while let Some(class) = cursor.next_row(&mut row)? {
                features.extend_from_slice(&row);
                targets.push(class);
            }
        }
        Ok(Dataset {
            width: m.width,
            feature_names: m.feature_names.clone(),
            features,
            targets,
            labels: m.labels.clone(),
        })
    }
}

/// One shard read in order, a row at a time, through fixed buffers.
pub struct ShardCursor {
    features: BufReader<File>,
    labels: BufReader<File>,
    path: PathBuf,
    remaining: u64,
    classes: usize,
    bytes: Vec<u8>,
}

impl ShardCursor {
    /// The next row's features into `out` (`width` long) and its class; `None` at the end.
    pub fn next_row(&mut self, out: &mut [f32]) -> Result<Option<usize>, DataError> {
        if self.remaining == 0 {
            return Ok(None);
        }
        let mut id = [0u8; 4];
        self.features
            .read_exact(&mut self.bytes)
            .and_then(|()| self.labels.read_exact(&mut id))
            .map_err(|e| stored(&self.path, e))?;
        for (o, b) in out.iter_mut().zip(self.bytes.chunks_exact(4)) {
            *o = f32::from_le_bytes(b.try_into().expect("4 bytes"));
        }
        let class = u32::from_le_bytes(id) as usize;
        if class >= self.classes {
            return Err(DataError::Stored {
                path: self.path.display().to_string(),
                message: format!(
                    "holds class {class} of {}; the stored dataset is damaged",
                    self.classes
                ),
            });
        }
        self.remaining -= 1;
        Ok(Some(class))
    }

    /// Rows left in the shard.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }
}
