//! Versioned schema migrations, applied in order at start. A migration is never edited once
//! released; changes are new migrations appended to the list.

use std::path::Path;

use rusqlite::{Connection, Transaction};

use super::StoreError;

/// A migration's data step, run after its SQL in the same transaction: what SQL alone
/// cannot do (records that must be decoded, files beside the database).
type DataStep = fn(&Transaction<'_>, &Path) -> Result<(), StoreError>;

/// (version, SQL). Version N's SQL turns schema N-1 into schema N.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE jobs (
         id          TEXT PRIMARY KEY,
         request_id  TEXT UNIQUE,
         spec        BLOB NOT NULL,      -- MessagePack of domain::JobSpec
         created_ns  INTEGER NOT NULL,
         info        BLOB                -- MessagePack of domain::RunInfo, once training started
     );
     CREATE TABLE events (
         job_id   TEXT NOT NULL REFERENCES jobs(id),
         seq      INTEGER NOT NULL,
         time_ns  INTEGER NOT NULL,
         kind     BLOB NOT NULL,         -- MessagePack of domain::EventKind
         PRIMARY KEY (job_id, seq)
     ) WITHOUT ROWID;",
    ),
    (
        2,
        "CREATE TABLE datasets (
         id          TEXT PRIMARY KEY,
         info        BLOB NOT NULL,     -- MessagePack of domain::DatasetInfo
         created_ns  INTEGER NOT NULL
     );",
    ),
    (
        3,
        "CREATE TABLE models (
         id          TEXT PRIMARY KEY,
         info        BLOB NOT NULL,     -- MessagePack of domain::ModelInfo
         created_ns  INTEGER NOT NULL
     );",
    ),
    (
        4,
        "ALTER TABLE jobs ADD COLUMN kind BLOB;  -- MessagePack of domain::JobKind; NULL: training",
    ),
    (
        5,
        "ALTER TABLE events ADD COLUMN run INTEGER NOT NULL DEFAULT 0;  -- domain::RunId",
    ),
];

/// The data steps, by version.
fn data_step(version: i64) -> Option<DataStep> {
    match version {
        5 => Some(super::legacy::into_runs),
        _ => None,
    }
}

pub fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// Applies the migrations after the database's version, each in its own transaction with
/// its data step (which may touch files under `state_dir`).
pub fn migrate(conn: &mut Connection, state_dir: &Path) -> Result<(), StoreError> {
    migrate_to(conn, state_dir, latest())
}

/// [`migrate`], stopping at `target` (tests build old databases with it).
pub fn migrate_to(conn: &mut Connection, state_dir: &Path, target: i64) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version     INTEGER PRIMARY KEY,
             applied_ns  INTEGER NOT NULL
         );",
    )?;
    let current: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    if current > latest() {
        return Err(StoreError::TooNew {
            found: current,
            known: latest(),
        });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > current && m.0 <= target) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        if let Some(step) = data_step(*version) {
            step(&tx, state_dir)?;
        }
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_ns) VALUES (?1, ?2)",
            rusqlite::params![version, super::nanos(std::time::SystemTime::now())],
        )?;
        tx.commit()?;
        tracing::info!(version, "applied state schema migration");
    }
    Ok(())
}
