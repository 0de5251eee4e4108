//! The SQLite + local files store: jobs, events and upload records in `gradstream.db`
//! (WAL), checkpoints and uploaded files in folders beside it.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};

use gradstream_data::UploadedDatasets;
use gradstream_domain::{
    Checkpoint, DatasetInfo, EventKind, JobEvent, JobKind, JobSpec, ModelInfo, RunId, SpecError,
    UploadKind,
};

use super::{
    BlobStore, JobRepository, StoreError, StoredJob, UploadCatalog, Write, checkpoint, nanos,
    schema,
};

pub struct SqliteStore {
    conn: Mutex<Connection>,
    dir: PathBuf,
    /// Held open with an exclusive lock: one server per state directory.
    _lock: std::fs::File,
}

/// Records are MessagePack of the domain types (named fields, so fields can be added): a
/// binary format, so every f64 (NaN included) round-trips exactly.
fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    Ok(rmp_serde::to_vec_named(value)?)
}

pub(crate) fn job_dir(state_dir: &Path, job_id: &str) -> PathBuf {
    state_dir.join("jobs").join(job_id)
}

pub(crate) fn run_dir(state_dir: &Path, job_id: &str, run: RunId) -> PathBuf {
    job_dir(state_dir, job_id)
        .join("runs")
        .join(run.0.to_string())
}

fn from_nanos(nanos: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos.max(0) as u64)
}

impl SqliteStore {
    /// Opens (creating if needed) `state_dir/gradstream.db` and runs pending migrations.
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(state_dir.join("jobs"))?;
        let lock = std::fs::File::create(state_dir.join("lock"))?;
        if lock.try_lock().is_err() {
            return Err(StoreError::Locked);
        }
        // Uploads that were in progress when the process stopped are abandoned.
        for kind in UploadKind::ALL {
            let tmp = state_dir.join(kind.dir()).join("tmp");
            match std::fs::remove_dir_all(&tmp) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
            std::fs::create_dir_all(&tmp)?;
        }
        let mut conn = Connection::open(state_dir.join("gradstream.db"))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // NORMAL: a committed transaction survives a process crash (SIGKILL); only a power
        // loss may lose the last transactions.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(Duration::from_secs(5))?;
        schema::migrate(&mut conn, state_dir)?;
        Ok(Self {
            conn: Mutex::new(conn),
            dir: state_dir.to_path_buf(),
            _lock: lock,
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Folder for a job's files (checkpoints).
    pub fn job_dir(&self, job_id: &str) -> PathBuf {
        job_dir(&self.dir, job_id)
    }

    /// Folder for a run's checkpoints: `jobs/<job>/runs/<run>/`.
    pub fn run_dir(&self, job_id: &str, run: RunId) -> PathBuf {
        run_dir(&self.dir, job_id, run)
    }

    fn insert_upload<T: serde::Serialize>(
        &self,
        kind: UploadKind,
        id: &str,
        info: &T,
        created: std::time::SystemTime,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            &format!(
                "INSERT INTO {} (id, info, created_ns) VALUES (?1, ?2, ?3)",
                kind.dir()
            ),
            params![id, encode(info)?, nanos(created)],
        )?;
        Ok(())
    }

    fn upload<T: serde::de::DeserializeOwned>(
        &self,
        kind: UploadKind,
        id: &str,
    ) -> Result<Option<T>, StoreError> {
        let blob: Option<Vec<u8>> = self
            .conn()
            .query_row(
                &format!("SELECT info FROM {} WHERE id = ?1", kind.dir()),
                params![id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(blob.map(|b| rmp_serde::from_slice(&b)).transpose()?)
    }

    fn uploads<T: serde::de::DeserializeOwned>(
        &self,
        kind: UploadKind,
    ) -> Result<Vec<T>, StoreError> {
        let conn = self.conn();
        let mut q = conn.prepare(&format!(
            "SELECT info FROM {} ORDER BY created_ns, rowid",
            kind.dir()
        ))?;
        let blobs = q.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
        let mut out = Vec::new();
        for b in blobs {
            out.push(rmp_serde::from_slice(&b?)?);
        }
        Ok(out)
    }

    fn delete_upload(&self, kind: UploadKind, id: &str, file: &Path) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            &format!("DELETE FROM {} WHERE id = ?1", kind.dir()),
            params![id],
        )?;
        match std::fs::remove_file(file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        Ok(n > 0)
    }
}

impl UploadedDatasets for SqliteStore {
    fn locate(&self, id: &str) -> Result<(PathBuf, String, String), SpecError> {
        let field = "spec.dataset.dataset_id";
        match self.dataset(id) {
            Ok(Some(info)) => Ok((self.dataset_file(id), info.label_column, info.name)),
            Ok(None) => Err(SpecError::new(
                field,
                format!(
                    "no dataset with id '{id}'; upload it first, or list the known ones with ListDatasets"
                ),
            )),
            Err(e) => Err(SpecError::new(field, format!("'{id}' cannot be read: {e}"))),
        }
    }
}

impl JobRepository for SqliteStore {
    fn insert_job(
        &self,
        id: &str,
        request_id: Option<&str>,
        kind: &JobKind,
        spec: &JobSpec,
        created: SystemTime,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO jobs (id, request_id, spec, created_ns, kind) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, request_id, encode(spec)?, nanos(created), encode(kind)?],
        )?;
        Ok(())
    }

    /// The job a request id created, if any.
    fn job_for_request(&self, request_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT id FROM jobs WHERE request_id = ?1",
                params![request_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Applies writes in one transaction: see [`JobRepository::append`].
    fn append(&self, writes: &[Write<'_>]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO events (job_id, seq, run, time_ns, kind) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let mut info = tx.prepare_cached("UPDATE jobs SET info = ?2 WHERE id = ?1")?;
            for w in writes {
                match w {
                    Write::Event(e) => {
                        insert.execute(params![
                            e.job_id,
                            e.seq as i64,
                            e.run.0,
                            nanos(e.time),
                            encode(&e.kind)?
                        ])?;
                    }
                    Write::Info { job_id, info: i } => {
                        if info.execute(params![job_id, encode(i)?])? == 0 {
                            return Err(StoreError::UnknownJob(job_id.to_string()));
                        }
                    }
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Every job with its events, oldest first.
    fn load_jobs(&self) -> Result<Vec<StoredJob>, StoreError> {
        let conn = self.conn();
        let mut jobs_q = conn.prepare(
            "SELECT id, request_id, spec, created_ns, info, kind FROM jobs ORDER BY created_ns, rowid",
        )?;
        let mut events_q = conn
            .prepare("SELECT seq, run, time_ns, kind FROM events WHERE job_id = ?1 ORDER BY seq")?;
        let rows = jobs_q.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Vec<u8>>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Option<Vec<u8>>>(4)?,
                r.get::<_, Option<Vec<u8>>>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, request_id, spec, created, info, kind) = row?;
            let mut events = Vec::new();
            let rows = events_q.query_map(params![id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, u32>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                ))
            })?;
            for e in rows {
                let (seq, run, time, kind) = e?;
                events.push(JobEvent {
                    job_id: id.clone(),
                    seq: seq as u64,
                    run: RunId(run),
                    time: from_nanos(time),
                    kind: rmp_serde::from_slice::<EventKind>(&kind)?,
                });
            }
            out.push(StoredJob {
                spec: rmp_serde::from_slice(&spec)?,
                info: info.map(|i| rmp_serde::from_slice(&i)).transpose()?,
                kind: kind
                    .map(|k| rmp_serde::from_slice(&k))
                    .transpose()?
                    .unwrap_or_default(),
                id,
                request_id,
                created: from_nanos(created),
                events,
            });
        }
        Ok(out)
    }

    /// Removes a job, its events and its files.
    fn delete_job(&self, job_id: &str) -> Result<(), StoreError> {
        {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            tx.execute("DELETE FROM events WHERE job_id = ?1", params![job_id])?;
            tx.execute("DELETE FROM jobs WHERE id = ?1", params![job_id])?;
            tx.commit()?;
        }
        match std::fs::remove_dir_all(self.job_dir(job_id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

impl UploadCatalog for SqliteStore {
    fn insert_dataset(&self, info: &DatasetInfo) -> Result<(), StoreError> {
        self.insert_upload(UploadKind::Dataset, &info.id, info, info.created)
    }

    fn dataset(&self, id: &str) -> Result<Option<DatasetInfo>, StoreError> {
        self.upload(UploadKind::Dataset, id)
    }

    /// Every dataset, oldest first.
    fn datasets(&self) -> Result<Vec<DatasetInfo>, StoreError> {
        self.uploads(UploadKind::Dataset)
    }

    /// Removes a dataset's record, then its file. Returns false if there was none.
    fn delete_dataset(&self, id: &str) -> Result<bool, StoreError> {
        self.delete_upload(UploadKind::Dataset, id, &self.dataset_file(id))
    }

    fn insert_model(&self, info: &ModelInfo) -> Result<(), StoreError> {
        self.insert_upload(UploadKind::Model, &info.id, info, info.created)
    }

    fn model(&self, id: &str) -> Result<Option<ModelInfo>, StoreError> {
        self.upload(UploadKind::Model, id)
    }

    /// Every uploaded model, oldest first.
    fn models(&self) -> Result<Vec<ModelInfo>, StoreError> {
        self.uploads(UploadKind::Model)
    }

    /// Removes a model's record, then its file. Returns false if there was none.
    fn delete_model(&self, id: &str) -> Result<bool, StoreError> {
        self.delete_upload(UploadKind::Model, id, &self.model_file(id))
    }
}

/// Checkpoints live in their run's folder ([`SqliteStore::run_dir`]), as the free
/// functions of [`checkpoint`] write them.
impl BlobStore for SqliteStore {
    fn write_checkpoint(&self, job_id: &str, run: RunId, c: &Checkpoint) -> Result<(), StoreError> {
        checkpoint::write_checkpoint(&self.run_dir(job_id, run), c).map(drop)
    }

    fn read_checkpoint(
        &self,
        job_id: &str,
        run: RunId,
        epoch: u32,
    ) -> Result<Checkpoint, StoreError> {
        checkpoint::read_checkpoint(&self.run_dir(job_id, run), epoch)
    }

    fn model_checkpoint(
        &self,
        job_id: &str,
        run: RunId,
        epoch: u32,
    ) -> Result<Option<Checkpoint>, StoreError> {
        checkpoint::read_model_checkpoint(&self.run_dir(job_id, run), epoch)
    }

    fn keep_best(&self, job_id: &str, run: RunId, epoch: u32) -> Result<(), StoreError> {
        checkpoint::keep_best(&self.job_dir(job_id).join("runs"), run, epoch)
    }

    fn prune_checkpoints(&self, job_id: &str, run: RunId, recorded: u32) -> Result<(), StoreError> {
        checkpoint::prune_checkpoints(&self.run_dir(job_id, run), recorded)
    }

    fn prune_earlier_runs(&self, job_id: &str, run: RunId) -> Result<(), StoreError> {
        for (other, dir) in checkpoint::run_dirs(&self.job_dir(job_id).join("runs"))? {
            if other != RunId::JOB && (run == RunId::JOB || other < run) {
                checkpoint::prune_checkpoints(&dir, u32::MAX)?;
            }
        }
        Ok(())
    }

    fn take_resume_checkpoint(
        &self,
        job_id: &str,
    ) -> Result<Option<(RunId, Checkpoint)>, StoreError> {
        checkpoint::take_resume_checkpoint(&self.job_dir(job_id).join("runs"))
    }

    fn dataset_file(&self, id: &str) -> PathBuf {
        self.datasets_dir().join(format!("{id}.csv"))
    }

    /// Folder of uploaded dataset files (`<id>.csv`) and of uploads in progress (`tmp/`).
    fn datasets_dir(&self) -> PathBuf {
        self.dir.join(UploadKind::Dataset.dir())
    }

    fn model_file(&self, id: &str) -> PathBuf {
        self.models_dir().join(format!("{id}.pt"))
    }

    /// Folder of uploaded TorchScript models (`<id>.pt`) and of uploads in progress
    /// (`tmp/`).
    fn models_dir(&self) -> PathBuf {
        self.dir.join(UploadKind::Model.dir())
    }
}
