//! Checkpoints: the model's variables, the optimizer's state and the training position at
//! the end of an epoch, in one safetensors file per epoch of each run
//! (`jobs/<job>/runs/<run>/epoch-000042.safetensors`), written to a temporary name and
//! renamed, so a crash never leaves a half-written one.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use gradstream_domain::{Checkpoint, DType, HostTensor, RunId};
use safetensors::tensor::{Dtype, SafeTensors, View};

use super::StoreError;

pub(crate) fn path(dir: &Path, epoch: u32) -> PathBuf {
    dir.join(format!("epoch-{epoch:06}.safetensors"))
}

/// A hard link to the best epoch's checkpoint, kept when older epochs are pruned.
pub(crate) fn best_path(dir: &Path, epoch: u32) -> PathBuf {
    dir.join(format!("best-epoch-{epoch:06}.safetensors"))
}

/// The run folders under a job's `runs/`, with their runs.
pub(crate) fn run_dirs(runs: &Path) -> Result<Vec<(RunId, PathBuf)>, StoreError> {
    let rd = match std::fs::read_dir(runs) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut dirs: Vec<(RunId, PathBuf)> = rd
        .flatten()
        .filter_map(|e| {
            let run = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((RunId(run), e.path()))
        })
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// Keeps the checkpoint of `run`'s `epoch` (under the job's `runs` folder) as the job's
/// best model (a hard link, or a copy where links are not supported) and drops the
/// previous best, of whichever run. Called once the epoch's metrics event is committed;
/// the link is made under a temporary name and renamed into place.
pub fn keep_best(runs: &Path, run: RunId, epoch: u32) -> Result<(), StoreError> {
    let dir = runs.join(run.0.to_string());
    let src = path(&dir, epoch);
    let dst = best_path(&dir, epoch);
    let tmp = dst.with_extension("safetensors.tmp");
    let _ = std::fs::remove_file(&tmp);
    if std::fs::hard_link(&src, &tmp).is_err() {
        std::fs::copy(&src, &tmp)?;
    }
    std::fs::rename(&tmp, &dst)?;
    for (_, d) in run_dirs(runs)? {
        for entry in std::fs::read_dir(&d)?.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("best-epoch-") && entry.path() != dst {
                std::fs::remove_file(entry.path())?;
            }
        }
    }
    std::fs::File::open(&dir)?.sync_all()?;
    Ok(())
}

/// The checkpoint of a job stopped mid-epoch (at a shutdown), read once when it resumes.
pub(crate) fn resume_path(dir: &Path) -> PathBuf {
    dir.join("resume.safetensors")
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Checkpoint(e.to_string())
}

pub fn write_checkpoint(dir: &Path, c: &Checkpoint) -> Result<PathBuf, StoreError> {
    std::fs::create_dir_all(dir)?;
    let meta = [
        ("meta.epoch", i64::from(c.epoch)),
        ("meta.global_step", c.global_step as i64),
        ("meta.iteration", i64::from(c.iteration)),
        ("meta.dropout_word_pos_lo", c.dropout_word_pos as u64 as i64),
        (
            "meta.dropout_word_pos_hi",
            (c.dropout_word_pos >> 64) as u64 as i64,
        ),
    ]
    .map(|(n, v)| (n, HostTensor::scalar_i64(v)));
    let all = meta
        .iter()
        .map(|(n, t)| (*n, Entry(t)))
        .chain(c.tensors.iter().map(|(n, t)| (n.as_str(), Entry(t))));
    let target = match c.iteration {
        0 => path(dir, c.epoch),
        _ => resume_path(dir),
    };
    let tmp = target.with_extension("safetensors.tmp");
    let written = safetensors::tensor::serialize_to_file(all, &None, &tmp)
        .map_err(|e| io_or(e, &tmp))
        .and_then(|()| Ok(std::fs::File::open(&tmp)?.sync_all()?));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &target)?;
    // The rename itself must reach the disk too.
    std::fs::File::open(dir)?.sync_all()?;
    Ok(target)
}

/// An I/O failure stays an I/O error (so a full disk reads as one); anything else is a
/// checkpoint error naming the file.
fn io_or(e: safetensors::SafeTensorError, p: &Path) -> StoreError {
    match e {
        safetensors::SafeTensorError::IoError(io) => StoreError::Io(io),
        other => err(format!("{}: {other:?}", p.display())),
    }
}

/// A host tensor as safetensors sees one.
struct Entry<'a>(&'a HostTensor);

impl View for Entry<'_> {
    fn dtype(&self) -> Dtype {
        to_dtype(self.0.dtype)
    }
    fn shape(&self) -> &[usize] {
        &self.0.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.0.data)
    }
    fn data_len(&self) -> usize {
        self.0.data.len()
    }
}

fn to_dtype(d: DType) -> Dtype {
    match d {
        DType::Bool => Dtype::BOOL,
        DType::U8 => Dtype::U8,
        DType::I8 => Dtype::I8,
        DType::I16 => Dtype::I16,
        DType::I32 => Dtype::I32,
        DType::I64 => Dtype::I64,
        DType::F16 => Dtype::F16,
        DType::BF16 => Dtype::BF16,
        DType::F32 => Dtype::F32,
        DType::F64 => Dtype::F64,
    }
}

fn from_dtype(d: Dtype) -> Option<DType> {
    Some(match d {
        Dtype::BOOL => DType::Bool,
        Dtype::U8 => DType::U8,
        Dtype::I8 => DType::I8,
        Dtype::I16 => DType::I16,
        Dtype::I32 => DType::I32,
        Dtype::I64 => DType::I64,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        Dtype::F32 => DType::F32,
        Dtype::F64 => DType::F64,
        _ => return None,
    })
}

/// Removes the epoch checkpoints older than `recorded`, the last epoch whose metrics event
/// is committed: recovery resumes from that one, and newer ones may still be needed.
pub fn prune_checkpoints(dir: &Path, recorded: u32) -> Result<(), StoreError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    for entry in rd.flatten() {
        let name = entry.file_name();
        let epoch = name
            .to_str()
            .and_then(|n| n.strip_prefix("epoch-"))
            .and_then(|n| n.strip_suffix(".safetensors"))
            .and_then(|n| n.parse::<u32>().ok());
        if epoch.is_some_and(|e| e < recorded) {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

pub fn read_checkpoint(dir: &Path, epoch: u32) -> Result<Checkpoint, StoreError> {
    read(&path(dir, epoch))
}

/// The checkpoint holding the model of `epoch` ([`model_checkpoint`]), read. A file pruned
/// between finding and reading it counts as missing, and the kept best one is tried.
pub(crate) fn read_model_checkpoint(
    dir: &Path,
    epoch: u32,
) -> Result<Option<Checkpoint>, StoreError> {
    for p in [path(dir, epoch), best_path(dir, epoch)] {
        match read(&p) {
            Err(StoreError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => continue,
            read => return read.map(Some),
        }
    }
    Ok(None)
}

/// Takes the mid-epoch checkpoint under a job's `runs` folder and its run, if there is
/// one: it is removed once read, so it is never used twice. (There is one at most; should
/// a crash have left an older run's behind, the latest run's is taken and every one goes.)
pub fn take_resume_checkpoint(runs: &Path) -> Result<Option<(RunId, Checkpoint)>, StoreError> {
    let found: Vec<(RunId, PathBuf)> = run_dirs(runs)?
        .into_iter()
        .map(|(run, d)| (run, resume_path(&d)))
        .filter(|(_, p)| p.exists())
        .collect();
    let Some((run, latest)) = found.last() else {
        return Ok(None);
    };
    let c = read(latest)?;
    for (_, p) in &found {
        std::fs::remove_file(p)?;
    }
    Ok(Some((*run, c)))
}

pub(crate) fn read(p: &Path) -> Result<Checkpoint, StoreError> {
    let bytes = std::fs::read(p)?;
    let file = SafeTensors::deserialize(&bytes)
        .map_err(|e| StoreError::Corrupt(format!("{}: {e:?}", p.display())))?;
    let mut meta = std::collections::HashMap::new();
    let mut rest = Vec::new();
    for (name, view) in file.tensors() {
        let dtype = from_dtype(view.dtype()).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "{}: tensor '{name}' has unsupported type {:?}",
                p.display(),
                view.dtype()
            ))
        })?;
        let t = HostTensor::new(dtype, view.shape().to_vec(), view.data().to_vec())
            .map_err(|e| StoreError::Corrupt(format!("{}: '{name}': {e}", p.display())))?;
        match name.strip_prefix("meta.") {
            Some(m) => {
                let v = t.as_i64().ok_or_else(|| {
                    StoreError::Corrupt(format!("{}: {name} is not an integer", p.display()))
                })?;
                meta.insert(m.to_string(), v);
            }
            None => rest.push((name, t)),
        }
    }
    // safetensors orders entries by type, then name; keep them by name.
    rest.sort_by(|a, b| a.0.cmp(&b.0));
    let get = |k: &str| {
        meta.get(k)
            .copied()
            .ok_or_else(|| StoreError::Corrupt(format!("{} lacks meta.{k}", p.display())))
    };
    Ok(Checkpoint {
        epoch: get("epoch")? as u32,
        iteration: meta.get("iteration").copied().unwrap_or(0) as u32,
        global_step: get("global_step")? as u64,
        dropout_word_pos: (get("dropout_word_pos_lo")? as u64 as u128)
            | ((get("dropout_word_pos_hi")? as u64 as u128) << 64),
        tensors: rest,
    })
}
