//! The store's error, and what kind of failure it is, whatever the backend: callers decide
//! from the kind (retry, report a full disk, refuse a duplicate) and never from a backend's
//! own codes.

use std::io::ErrorKind;

use rusqlite::ffi;

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
    #[error("no job with id '{0}' in the state database")]
    UnknownJob(String),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
    #[error(
        "the state database has schema version {found}, newer than this gradstream understands ({known}); run a newer gradstream or restore a backup"
    )]
    TooNew { found: i64, known: i64 },
}

/// What kind of failure a [`StoreError`] is, the same for every backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreErrorKind {
    /// The record or file asked for does not exist (an event of an unknown job, too).
    NotFound,
    /// A unique key is taken: a reused request id, a duplicate id or event seq.
    Conflict,
    /// Busy, locked, or an I/O failure that may pass: worth retrying.
    Unavailable,
    /// No space left: disk full, file too large, quota exceeded.
    Full,
    /// The state cannot be written: read-only file system, no permission.
    ReadOnly,
    /// A stored record or checkpoint cannot be decoded.
    Corrupt,
    /// The stored schema is newer than this binary understands.
    TooNew,
    /// Anything else: a bug, or a failure no retry will mend.
    Internal,
}

impl StoreError {
    pub fn kind(&self) -> StoreErrorKind {
        match self {
            Self::Sqlite(e) => sqlite_kind(e),
            Self::Decode(_) | Self::Corrupt(_) => StoreErrorKind::Corrupt,
            Self::Encode(_) | Self::Checkpoint(_) => StoreErrorKind::Internal,
            Self::Io(e) => io_kind(e),
            // Passes once the other server stops.
            Self::Locked => StoreErrorKind::Unavailable,
            Self::UnknownJob(_) => StoreErrorKind::NotFound,
            Self::TooNew { .. } => StoreErrorKind::TooNew,
        }
    }

    /// A write failed for a reason outside the program (space, permissions, a busy or
    /// failing disk), which may be mended while it runs: the writer retries and reports it.
    pub fn is_write_fault(&self) -> bool {
        matches!(
            self.kind(),
            StoreErrorKind::Full | StoreErrorKind::ReadOnly | StoreErrorKind::Unavailable
        )
    }
}

/// By the extended result code, so a unique violation is told from a foreign key one.
fn sqlite_kind(e: &rusqlite::Error) -> StoreErrorKind {
    use StoreErrorKind as K;
    match e {
        rusqlite::Error::SqliteFailure(f, _) => match f.extended_code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => K::Conflict,
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => K::NotFound,
            code => match code & 0xff {
                ffi::SQLITE_BUSY
                | ffi::SQLITE_LOCKED
                | ffi::SQLITE_IOERR
                | ffi::SQLITE_CANTOPEN => K::Unavailable,
                ffi::SQLITE_FULL => K::Full,
                ffi::SQLITE_READONLY | ffi::SQLITE_PERM | ffi::SQLITE_AUTH => K::ReadOnly,
                ffi::SQLITE_CORRUPT | ffi::SQLITE_NOTADB => K::Corrupt,
                ffi::SQLITE_NOTFOUND => K::NotFound,
                _ => K::Internal,
            },
        },
        rusqlite::Error::QueryReturnedNoRows => K::NotFound,
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::Utf8Error(..) => K::Corrupt,
        _ => K::Internal,
    }
}

/// By `ErrorKind`, which std derives from the OS error number (`raw_os_error`), so this
/// holds wherever errno values differ.
fn io_kind(e: &std::io::Error) -> StoreErrorKind {
    use StoreErrorKind as K;
    match e.kind() {
        ErrorKind::NotFound => K::NotFound,
        ErrorKind::AlreadyExists => K::Conflict,
        ErrorKind::StorageFull | ErrorKind::FileTooLarge | ErrorKind::QuotaExceeded => K::Full,
        ErrorKind::ReadOnlyFilesystem | ErrorKind::PermissionDenied => K::ReadOnly,
        ErrorKind::InvalidData | ErrorKind::UnexpectedEof => K::Corrupt,
        ErrorKind::InvalidInput | ErrorKind::Unsupported | ErrorKind::OutOfMemory => K::Internal,
        // Busy, interrupted, timed out, a failing disk: may pass.
        _ => K::Unavailable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(code: i32) -> StoreErrorKind {
        StoreError::Io(std::io::Error::from_raw_os_error(code)).kind()
    }

    // Linux errno values, spelled out so no libc dependency is needed.
    const EPERM: i32 = 1;
    const EACCES: i32 = 13;
    const EFBIG: i32 = 27;
    const ENOSPC: i32 = 28;
    const EROFS: i32 = 30;
    const EDQUOT: i32 = 122;
    const EBUSY: i32 = 16;
    const EIO: i32 = 5;
    const ENOENT: i32 = 2;

    #[cfg(target_os = "linux")]
    #[test]
    fn os_errors_are_classified_by_their_number() {
        assert_eq!(os(ENOSPC), StoreErrorKind::Full);
        assert_eq!(os(EFBIG), StoreErrorKind::Full);
        assert_eq!(os(EDQUOT), StoreErrorKind::Full);
        assert_eq!(os(EROFS), StoreErrorKind::ReadOnly);
        assert_eq!(os(EACCES), StoreErrorKind::ReadOnly);
        assert_eq!(os(EPERM), StoreErrorKind::ReadOnly);
        assert_eq!(os(EBUSY), StoreErrorKind::Unavailable);
        assert_eq!(os(EIO), StoreErrorKind::Unavailable);
        assert_eq!(os(ENOENT), StoreErrorKind::NotFound);
        let full = StoreError::Io(std::io::Error::from_raw_os_error(ENOSPC));
        assert!(full.is_write_fault());
        assert!(StoreError::Io(std::io::Error::from_raw_os_error(EROFS)).is_write_fault());
        assert!(!StoreError::Io(std::io::Error::from_raw_os_error(ENOENT)).is_write_fault());
    }

    fn sqlite(code: i32) -> StoreError {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(ffi::Error::new(code), None))
    }

    #[test]
    fn sqlite_result_codes_are_classified() {
        let cases = [
            (ffi::SQLITE_FULL, StoreErrorKind::Full),
            (ffi::SQLITE_READONLY, StoreErrorKind::ReadOnly),
            (ffi::SQLITE_READONLY_DIRECTORY, StoreErrorKind::ReadOnly),
            (ffi::SQLITE_BUSY, StoreErrorKind::Unavailable),
            (ffi::SQLITE_BUSY_SNAPSHOT, StoreErrorKind::Unavailable),
            (ffi::SQLITE_LOCKED, StoreErrorKind::Unavailable),
            (ffi::SQLITE_IOERR_FSYNC, StoreErrorKind::Unavailable),
            (ffi::SQLITE_CORRUPT, StoreErrorKind::Corrupt),
            (ffi::SQLITE_NOTADB, StoreErrorKind::Corrupt),
            (ffi::SQLITE_CONSTRAINT_UNIQUE, StoreErrorKind::Conflict),
            (ffi::SQLITE_CONSTRAINT_PRIMARYKEY, StoreErrorKind::Conflict),
            (ffi::SQLITE_CONSTRAINT_FOREIGNKEY, StoreErrorKind::NotFound),
            (ffi::SQLITE_CONSTRAINT_NOTNULL, StoreErrorKind::Internal),
            (ffi::SQLITE_MISUSE, StoreErrorKind::Internal),
        ];
        for (code, kind) in cases {
            assert_eq!(sqlite(code).kind(), kind, "code {code}");
        }
        assert!(sqlite(ffi::SQLITE_FULL).is_write_fault());
        assert!(!sqlite(ffi::SQLITE_CONSTRAINT_UNIQUE).is_write_fault());
    }

    /// A real SQLITE_FULL: a database that may not grow past a few pages.
    #[test]
    fn a_database_that_cannot_grow_is_full() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (b BLOB); PRAGMA max_page_count = 4;")
            .unwrap();
        let blob = vec![0u8; 64 * 1024];
        let err = (0..100)
            .find_map(|_| conn.execute("INSERT INTO t VALUES (?1)", [&blob]).err())
            .expect("the insert must fail once the page limit is reached");
        let err = StoreError::from(err);
        assert_eq!(err.kind(), StoreErrorKind::Full, "{err}");
        assert!(err.is_write_fault());
    }

    #[test]
    fn the_other_variants_have_their_kind() {
        assert_eq!(StoreError::Locked.kind(), StoreErrorKind::Unavailable);
        assert_eq!(
            StoreError::TooNew { found: 9, known: 4 }.kind(),
            StoreErrorKind::TooNew
        );
        assert_eq!(
            StoreError::Corrupt("x".into()).kind(),
            StoreErrorKind::Corrupt
        );
        let undecodable = rmp_serde::from_slice::<String>(&[0xc1]).unwrap_err();
        assert_eq!(
            StoreError::from(undecodable).kind(),
            StoreErrorKind::Corrupt
        );
        assert!(!StoreError::Locked.to_string().is_empty());
        assert!(
            StoreError::Locked
                .to_string()
                .contains("another gradstream server is using this state directory")
        );
    }
}
