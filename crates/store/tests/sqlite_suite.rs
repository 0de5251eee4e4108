//! The store suite (`gradstream_store::suite`) against the SQLite + local files store: one
//! test per case, each in a fresh temporary state directory.

gradstream_store::store_suite!(gradstream_store::suite::SqliteHarness);

/// Every case in turn in one folder, as `run_all` runs them for a new backend.
#[test]
fn run_all_in_one_folder() {
    let dir = tempfile::tempdir().unwrap();
    gradstream_store::suite::run_all(&gradstream_store::suite::SqliteHarness, dir.path());
}
