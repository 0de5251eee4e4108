//! Durable state, behind traits designed on the service's data model, so that a backend
//! can be swapped: [`JobRepository`] (jobs and their event logs), [`UploadCatalog`]
//! (uploaded datasets and models) and [`BlobStore`] (checkpoints, upload files). All are
//! `Send + Sync` and object-safe. [`SqliteStore`] implements them over an SQLite database
//! (WAL) under `--state-dir` with checkpoint files beside it; [`suite`] is the test suite
//! every implementation must pass. Synchronous code; the job manager
//! calls it from its own writer thread, never from a training thread.

mod blobs;
mod catalog;
mod checkpoint;
mod error;
mod legacy;
mod repository;
mod schema;
mod sqlite;
pub mod suite;

use std::time::{SystemTime, UNIX_EPOCH};

pub use blobs::BlobStore;
pub use catalog::UploadCatalog;
pub use error::{StoreError, StoreErrorKind};
pub use repository::{JobRepository, StoredJob, Write};
pub use sqlite::SqliteStore;

/// Everything the service keeps, behind one object: what the job manager holds (as
/// `Arc<dyn StateStore>`). Any backend that implements the three traits (and passes
/// [`suite`]) is one.
pub trait StateStore:
    JobRepository + UploadCatalog + BlobStore + gradstream_data::UploadedDatasets
{
}

impl<T: JobRepository + UploadCatalog + BlobStore + gradstream_data::UploadedDatasets> StateStore
    for T
{
}

/// The store the server runs on.
pub type Store = SqliteStore;

/// Nanoseconds since the Unix epoch: how the store keeps times, so they read back exactly.
pub fn nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}
