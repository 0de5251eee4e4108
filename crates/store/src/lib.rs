//! Durable state: an SQLite database (WAL) under `--state-dir` with every job, its spec and
//! every event, plus checkpoint files beside it. Synchronous code; the job manager calls it
//! from its own writer thread, never from a training thread.

mod checkpoint;
mod schema;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};

pub use checkpoint::{
    keep_best, model_checkpoint, prune_checkpoints, read_checkpoint, read_checkpoint_file,
    take_resume_checkpoint, write_checkpoint,
};

use gradstream_data::UploadedDatasets;
use gradstream_domain::{
    DatasetInfo, EventKind, JobEvent, JobKind, JobSpec, ModelInfo, RunInfo, SpecError, UploadKind,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(
        "state database holds a record that cannot be read ({0}); was it written by a newer gradstream?"
    )]
    Decode(#[from] rmp_serde::decode::Error),
    #[error("a record could not be encoded for the state database: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("state directory: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "another gradstream server is using this state directory; stop it, or give this one its own --state-dir"
    )]
    Locked,
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
    #[error(
        "the state database has schema version {found}, newer than this gradstream understands ({known}); run a newer gradstream or restore a backup"
    )]
    TooNew { found: i64, known: i64 },
}

/// A job as stored: what was submitted, and everything that happened to it.
#[derive(Debug, Clone)]
pub struct StoredJob {
    pub id: String,
    pub request_id: Option<String>,
    pub kind: JobKind,
    pub spec: JobSpec,
    pub created: SystemTime,
    pub info: Option<RunInfo>,
    pub events: Vec<JobEvent>,
}

/// One write, applied in order by the writer.
pub enum Write<'a> {
    Event(&'a JobEvent),
    Info { job_id: &'a str, info: &'a RunInfo },
}

pub struct Store {
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

/// Nanoseconds since the Unix epoch: how the store keeps times, so they read back exactly.
pub fn nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

fn from_nanos(nanos: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos.max(0) as u64)
}

impl Store {
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
        schema::migrate(&mut conn)?;
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
        self.dir.join("jobs").join(job_id)
    }

    pub fn insert_job(
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
    pub fn job_for_request(&self, request_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT id FROM jobs WHERE request_id = ?1",
                params![request_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Applies writes in one transaction.
    pub fn write(&self, writes: &[Write<'_>]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO events (job_id, seq, time_ns, kind) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut info = tx.prepare_cached("UPDATE jobs SET info = ?2 WHERE id = ?1")?;
            for w in writes {
                match w {
                    Write::Event(e) => {
                        insert.execute(params![
                            e.job_id,
                            e.seq as i64,
                            nanos(e.time),
                            encode(&e.kind)?
                        ])?;
                    }
                    Write::Info { job_id, info: i } => {
                        info.execute(params![job_id, encode(i)?])?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Every job with its events, oldest first.
    pub fn load_jobs(&self) -> Result<Vec<StoredJob>, StoreError> {
        let conn = self.conn();
        let mut jobs_q = conn.prepare(
            "SELECT id, request_id, spec, created_ns, info, kind FROM jobs ORDER BY created_ns, rowid",
        )?;
        let mut events_q =
            conn.prepare("SELECT seq, time_ns, kind FROM events WHERE job_id = ?1 ORDER BY seq")?;
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
                    r.get::<_, i64>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })?;
            for e in rows {
                let (seq, time, kind) = e?;
                events.push(JobEvent {
                    job_id: id.clone(),
                    seq: seq as u64,
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

    /// Folder of uploaded dataset files (`<id>.csv`) and of uploads in progress (`tmp/`).
    pub fn datasets_dir(&self) -> PathBuf {
        self.dir.join(UploadKind::Dataset.dir())
    }

    pub fn dataset_file(&self, id: &str) -> PathBuf {
        self.datasets_dir().join(format!("{id}.csv"))
    }

    pub fn insert_dataset(&self, info: &DatasetInfo) -> Result<(), StoreError> {
        self.insert_upload(UploadKind::Dataset, &info.id, info, info.created)
    }

    pub fn dataset(&self, id: &str) -> Result<Option<DatasetInfo>, StoreError> {
        self.upload(UploadKind::Dataset, id)
    }

    /// Every dataset, oldest first.
    pub fn datasets(&self) -> Result<Vec<DatasetInfo>, StoreError> {
        self.uploads(UploadKind::Dataset)
    }

    /// Removes a dataset's record, then its file. Returns false if there was none.
    pub fn delete_dataset(&self, id: &str) -> Result<bool, StoreError> {
        self.delete_upload(UploadKind::Dataset, id, &self.dataset_file(id))
    }

    /// Folder of uploaded TorchScript models (`<id>.pt`) and of uploads in progress
    /// (`tmp/`).
    pub fn models_dir(&self) -> PathBuf {
        self.dir.join(UploadKind::Model.dir())
    }

    pub fn model_file(&self, id: &str) -> PathBuf {
        self.models_dir().join(format!("{id}.pt"))
    }

    pub fn insert_model(&self, info: &ModelInfo) -> Result<(), StoreError> {
        self.insert_upload(UploadKind::Model, &info.id, info, info.created)
    }

    pub fn model(&self, id: &str) -> Result<Option<ModelInfo>, StoreError> {
        self.upload(UploadKind::Model, id)
    }

    /// Every uploaded model, oldest first.
    pub fn models(&self) -> Result<Vec<ModelInfo>, StoreError> {
        self.uploads(UploadKind::Model)
    }

    /// Removes a model's record, then its file. Returns false if there was none.
    pub fn delete_model(&self, id: &str) -> Result<bool, StoreError> {
        self.delete_upload(UploadKind::Model, id, &self.model_file(id))
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

    /// Removes a job, its events and its files.
    pub fn delete_job(&self, job_id: &str) -> Result<(), StoreError> {
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

impl UploadedDatasets for Store {
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
