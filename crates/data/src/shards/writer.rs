//! Writing a dataset into shards, once, as its rows stream in from any format.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::{Manifest, ShardInfo, SourceInfo, Welford, rows_per_shard, shard_files};
use crate::DataError;
use crate::arrays::LabelledArrays;

/// Builds a stored dataset in `<dir>.partial` and moves it to `dir` when finished; dropped
/// unfinished (an error, a cancelled upload), it removes what it wrote.
pub struct ShardWriter {
    dir: PathBuf,
    partial: PathBuf,
    width: usize,
    row_shape: Vec<usize>,
    feature_names: Vec<String>,
    rows_per_shard: usize,
    open: Option<OpenShard>,
    shards: Vec<ShardInfo>,
    /// Labels in the order they first appeared; the shards hold these provisional ids
    /// until [`ShardWriter::finish`] knows the class order.
    names: Vec<String>,
    ids: HashMap<String, u32>,
    stats: Vec<Welford>,
    rows: u64,
    done: bool,
    bytes: Vec<u8>,
}

struct OpenShard {
    features: BufWriter<File>,
    labels: BufWriter<File>,
    info: ShardInfo,
}

impl ShardWriter {
    /// A writer of rows of `width` features (`row_shape` is one row's shape); `dir` must not
    /// exist yet.
    pub fn create(
        dir: &Path,
        width: usize,
        row_shape: Vec<usize>,
        feature_names: Vec<String>,
    ) -> Result<Self, DataError> {
        Self::with_shard_rows(dir, width, row_shape, feature_names, rows_per_shard(width))
    }

    /// [`ShardWriter::create`] with `rows_per_shard` rows in every shard but the last.
    pub fn with_shard_rows(
        dir: &Path,
        width: usize,
        row_shape: Vec<usize>,
        feature_names: Vec<String>,
        rows_per_shard: usize,
    ) -> Result<Self, DataError> {
        let partial = dir.with_extension("partial");
        // A partial directory is what an interrupted ingest left: nothing refers to it.
        if partial.exists() {
            fs::remove_dir_all(&partial).map_err(|e| stored(&partial, e))?;
        }
        fs::create_dir_all(&partial).map_err(|e| stored(&partial, e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            partial,
            width,
            row_shape,
            feature_names,
            rows_per_shard: rows_per_shard.max(1),
            open: None,
            shards: Vec::new(),
            names: Vec::new(),
            ids: HashMap::new(),
            stats: vec![Welford::default(); width],
            rows: 0,
            done: false,
            bytes: Vec::with_capacity(width * 4),
        })
    }

    /// Appends one row (`row.len() == width`, finite values: the readers check both).
    pub fn push(&mut self, row: &[f32], label: &str) -> Result<(), DataError> {
        debug_assert_eq!(row.len(), self.width);
        let id = match self.ids.get(label) {
            Some(&id) => id,
            None => {
                let id = self.names.len() as u32;
                self.names.push(label.to_string());
                self.ids.insert(label.to_string(), id);
                id
            }
        };
        if self.open.is_none() {
            self.open = Some(self.start_shard()?);
        }
        self.bytes.clear();
        for (w, &v) in self.stats.iter_mut().zip(row) {
            w.push(f64::from(v));
            self.bytes.extend_from_slice(&v.to_le_bytes());
        }
        let partial = &self.partial;
        let shard = self.open.as_mut().expect("a shard is open");
        shard
            .features
            .write_all(&self.bytes)
            .and_then(|()| shard.labels.write_all(&id.to_le_bytes()))
            .map_err(|e| stored(partial, e))?;
        shard.info.rows += 1;
        let counts = &mut shard.info.class_counts;
        if counts.len() <= id as usize {
            counts.resize(id as usize + 1, 0);
        }
        counts[id as usize] += 1;
        self.rows += 1;
        if shard.info.rows as usize >= self.rows_per_shard {
            self.close_shard()?;
        }
        Ok(())
    }

    fn start_shard(&self) -> Result<OpenShard, DataError> {
        let (f, l) = shard_files(&self.partial, self.shards.len());
        let create = |p: &Path| {
            File::create(p)
                .map(|f| BufWriter::with_capacity(1 << 20, f))
                .map_err(|e| stored(p, e))
        };
        Ok(OpenShard {
            features: create(&f)?,
            labels: create(&l)?,
            info: ShardInfo {
                rows: 0,
                class_counts: Vec::new(),
            },
        })
    }

    fn close_shard(&mut self) -> Result<(), DataError> {
        if let Some(shard) = self.open.take() {
            for w in [shard.features, shard.labels] {
                let file = w
                    .into_inner()
                    .map_err(|e| stored(&self.partial, e.into_error()))?;
                file.sync_all().map_err(|e| stored(&self.partial, e))?;
            }
            self.shards.push(shard.info);
        }
        Ok(())
    }

    /// Rows pushed so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Ends the dataset: `order` puts the labels seen (in order of first appearance) into
    /// class order, giving for each its class index; the shards' ids are rewritten to
    /// class indices where they differ, the manifest is written, and the directory moves
    /// into place.
    pub fn finish(
        mut self,
        order: impl FnOnce(&[String]) -> Vec<usize>,
        source: SourceInfo,
    ) -> Result<Manifest, DataError> {
        self.close_shard()?;
        let class_of = order(&self.names);
        debug_assert_eq!(class_of.len(), self.names.len());
        let k = self.names.len();
        let mut labels = vec![String::new(); k];
        for (id, &c) in class_of.iter().enumerate() {
            labels[c] = self.names[id].clone();
        }
        let identity = class_of.iter().enumerate().all(|(i, &c)| i == c);
        let mut class_counts = vec![0u64; k];
        for (i, shard) in self.shards.iter_mut().enumerate() {
            let mut counts = vec![0u64; k];
            for (id, &n) in shard.class_counts.iter().enumerate() {
                counts[class_of[id]] += n;
                class_counts[class_of[id]] += n;
            }
            shard.class_counts = counts;
            if !identity {
                remap_labels(&shard_files(&self.partial, i).1, &class_of)?;
            }
        }
        let manifest = Manifest {
            version: Manifest::VERSION,
            width: self.width,
            row_shape: std::mem::take(&mut self.row_shape),
            feature_names: std::mem::take(&mut self.feature_names),
            labels,
            rows: self.rows,
            class_counts,
            shards: std::mem::take(&mut self.shards),
            features: self.stats.iter().map(Welford::summary).collect(),
            source,
        };
        let path = self.partial.join("manifest.json");
        let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
        write_synced(&path, &json)?;
        sync_dir(&self.partial)?;
        fs::rename(&self.partial, &self.dir).map_err(|e| stored(&self.dir, e))?;
        if let Some(parent) = self.dir.parent() {
            sync_dir(parent)?;
        }
        self.done = true;
        Ok(manifest)
    }
}

impl Drop for ShardWriter {
    fn drop(&mut self) {
        if !self.done {
            self.open = None;
            let _ = fs::remove_dir_all(&self.partial);
        }
    }
}

/// Rewrites a shard's label file with `class_of[id]` for each provisional id.
fn remap_labels(path: &Path, class_of: &[usize]) -> Result<(), DataError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| stored(path, e))?;
    for word in bytes.chunks_exact_mut(4) {
        let id = u32::from_le_bytes(word.try_into().expect("4 bytes"));
        word.copy_from_slice(&(class_of[id as usize] as u32).to_le_bytes());
    }
    write_synced(path, &bytes)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    File::create(path)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .map_err(|e| stored(path, e))
}

fn sync_dir(dir: &Path) -> Result<(), DataError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| stored(dir, e))
}

pub(super) fn stored(path: &Path, e: std::io::Error) -> DataError {
    DataError::Stored {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Writes `arrays` (NumPy, IDX) into a stored dataset at `dir`; classes are the ids that
/// occur, in increasing order (as [`crate::arrays::load_labelled`] orders them).
pub fn ingest_arrays(
    mut arrays: LabelledArrays,
    dir: &Path,
    source: SourceInfo,
) -> Result<Manifest, DataError> {
    let width = arrays.width();
    let shape = arrays.row_shape();
    let names = (0..width)
        .map(|i| crate::arrays::feature_name(&shape, i))
        .collect();
    let mut writer = ShardWriter::create(dir, width, shape, names)?;
    let mut row = Vec::with_capacity(width);
    while let Some(id) = arrays.next_row(&mut row)? {
        writer.push(&row, &id.to_string())?;
    }
    writer.finish(numeric_order, source)
}

/// Class indices for integer labels in increasing numeric order.
fn numeric_order(names: &[String]) -> Vec<usize> {
    let mut by_value: Vec<(u64, usize)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.parse().expect("ids are integers"), i))
        .collect();
    by_value.sort_unstable();
    let mut class_of = vec![0; names.len()];
    for (c, &(_, i)) in by_value.iter().enumerate() {
        class_of[i] = c;
    }
    class_of
}
