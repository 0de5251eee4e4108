//! Large files: checkpoints by job and run, and where uploaded files live.

use std::path::PathBuf;

use gradstream_domain::{Checkpoint, RunId};

use super::StoreError;

/// Checkpoints of each run of each job, and the local files of uploads.
///
/// A checkpoint of iteration 0 is its run's epoch's; one of a later iteration is the job's
/// single mid-epoch resume checkpoint (a job is stopped inside one run). A write is atomic:
/// a reader sees the whole checkpoint or none of it, even after a crash.
pub trait BlobStore: Send + Sync {
    fn write_checkpoint(&self, job_id: &str, run: RunId, c: &Checkpoint) -> Result<(), StoreError>;

    /// The checkpoint of the end of `run`'s `epoch`. Missing is `NotFound`, undecodable
    /// `Corrupt`.
    fn read_checkpoint(
        &self,
        job_id: &str,
        run: RunId,
        epoch: u32,
    ) -> Result<Checkpoint, StoreError>;

    /// The checkpoint holding the model of `run`'s `epoch`: its epoch checkpoint, or the
    /// kept best one. `None` when neither exists.
    fn model_checkpoint(
        &self,
        job_id: &str,
        run: RunId,
        epoch: u32,
    ) -> Result<Option<Checkpoint>, StoreError>;

    /// Keeps the checkpoint of `run`'s `epoch` as the job's best model, past pruning, and
    /// drops the previous best (of any run).
    fn keep_best(&self, job_id: &str, run: RunId, epoch: u32) -> Result<(), StoreError>;

    /// Removes `run`'s epoch checkpoints older than `recorded` (the kept best one stays).
    fn prune_checkpoints(&self, job_id: &str, run: RunId, recorded: u32) -> Result<(), StoreError>;

    /// Removes the epoch checkpoints of the child runs that came before `run`: for a child
    /// run, the children numbered below it; for the job's own run, every child (the kept
    /// best one and a mid-epoch checkpoint stay).
    fn prune_earlier_runs(&self, job_id: &str, run: RunId) -> Result<(), StoreError>;

    /// Takes the mid-epoch checkpoint and its run, if there is one: it is gone once
    /// returned.
    fn take_resume_checkpoint(
        &self,
        job_id: &str,
    ) -> Result<Option<(RunId, Checkpoint)>, StoreError>;

    /// Where an uploaded dataset's file (`<id>.csv`) lives.
    fn dataset_file(&self, id: &str) -> PathBuf;
    /// Folder of uploaded dataset files; uploads in progress go to its `tmp/`.
    fn datasets_dir(&self) -> PathBuf;
    /// Where an uploaded TorchScript model's file (`<id>.pt`) lives.
    fn model_file(&self, id: &str) -> PathBuf;
    /// Folder of uploaded model files; uploads in progress go to its `tmp/`.
    fn models_dir(&self) -> PathBuf;
}
