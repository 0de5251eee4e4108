//! The server's own dataset layout, written once and read many times, row by row, without
//! loading it: a directory per dataset with fixed-width little-endian shards and a manifest.
//!
//! ```text
//! <dataset>/manifest.json        rows, classes, per-shard and per-class counts,
//!                                per-feature statistics, the source's checksum
//! <dataset>/shard-000000.f32     rows x width float32 features, row-major
//! <dataset>/shard-000000.u32     rows uint32 class indices (into manifest.labels)
//! ```
//!
//! Row `i` of a shard is at byte `i * width * 4` of its `.f32` file and `i * 4` of its
//! `.u32` file: a shard can be memory-mapped or read at any row without an index, and read
//! in order with one buffered pass. [`ShardWriter`] builds a dataset in a `.partial`
//! directory and renames it into place only when complete (an interrupted or failed
//! ingest leaves nothing behind); [`ShardedDataset`] opens one and checks every file's
//! size against its manifest.

mod manifest;
mod reader;
mod writer;

pub use manifest::{FeatureSummary, Manifest, ShardInfo, SourceInfo, Welford};
pub use reader::{ShardCursor, ShardedDataset};
pub use writer::{ShardWriter, ingest_arrays};

/// Features per shard file: 64 MiB of float32 at most (at least one row).
pub const SHARD_BYTES: usize = 64 << 20;

/// Rows per shard for `width` features.
pub fn rows_per_shard(width: usize) -> usize {
    (SHARD_BYTES / (width.max(1) * 4)).max(1)
}

fn shard_files(dir: &std::path::Path, i: usize) -> (std::path::PathBuf, std::path::PathBuf) {
    (
        dir.join(format!("shard-{i:06}.f32")),
        dir.join(format!("shard-{i:06}.u32")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arrays::{LabelledArrays, load_labelled, open_npy};

    fn source() -> SourceInfo {
        SourceInfo {
            description: "test".into(),
            sha256: "00".into(),
            bytes: 0,
        }
    }

    /// Text labels in sorted order.
    fn sorted(names: &[String]) -> Vec<usize> {
        let mut s: Vec<&String> = names.iter().collect();
        s.sort();
        names
            .iter()
            .map(|n| s.iter().position(|x| *x == n).unwrap())
            .collect()
    }

    #[test]
    fn rows_round_trip_through_shards_with_classes_in_final_order() {
        let dir = tempfile::tempdir().unwrap();
        let at = dir.path().join("d1");
        let mut w =
            ShardWriter::with_shard_rows(&at, 2, vec![2], vec!["x".into(), "y".into()], 2).unwrap();
        let rows = [
            ([1f32, 10.], "b"),
            ([2., 20.], "a"),
            ([3., 30.], "b"),
            ([4., 40.], "c"),
            ([5., 50.], "b"),
        ];
        for (r, l) in &rows {
            w.push(r, l).unwrap();
        }
        assert!(!at.exists(), "nothing is in place before finish");
        let m = w.finish(sorted, source()).unwrap();
        assert_eq!(m.labels, vec!["a", "b", "c"]);
        assert_eq!(m.class_counts, vec![1, 3, 1]);
        assert_eq!(
            m.shards
                .iter()
                .map(|s| (s.rows, s.class_counts.clone()))
                .collect::<Vec<_>>(),
            vec![(2, vec![1, 1, 0]), (2, vec![0, 1, 1]), (1, vec![0, 1, 0])]
        );
        assert_eq!(
            (m.features[0].mean, m.features[0].min, m.features[0].max),
            (3.0, 1.0, 5.0)
        );
        assert!((m.features[1].std - 200f64.sqrt()).abs() < 1e-12);
        assert!(!dir.path().join("d1.partial").exists());

        let d = ShardedDataset::open(&at).unwrap().load().unwrap();
        assert_eq!(d.targets, vec![1, 0, 1, 2, 1]);
        assert_eq!(
            d.features,
            vec![1., 10., 2., 20., 3., 30., 4., 40., 5., 50.]
        );
        assert_eq!(d.feature_names, vec!["x", "y"]);
    }

    #[test]
    fn arrays_ingested_load_as_the_arrays_do() {
        let dir = tempfile::tempdir().unwrap();
        let (x, y) = (dir.path().join("x.npy"), dir.path().join("y.npy"));
        let data: Vec<u8> = (0..24)
            .flat_map(|i| (i as f32 * 0.5).to_le_bytes())
            .collect();
        std::fs::write(&x, crate::arrays::npy_test_bytes("<f4", &[6, 2, 2], &data)).unwrap();
        let labels: Vec<u8> = [3i64, 1, 3, 10, 1, 3]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        std::fs::write(&y, crate::arrays::npy_test_bytes("<i8", &[6], &labels)).unwrap();
        let open = || {
            LabelledArrays::new(
                open_npy(&x, "x.npy", "features").unwrap(),
                open_npy(&y, "y.npy", "labels").unwrap(),
            )
            .unwrap()
        };
        let at = dir.path().join("stored");
        let m = ingest_arrays(open(), &at, source()).unwrap();
        assert_eq!((m.rows, m.row_shape.clone()), (6, vec![2, 2]));
        assert_eq!(m.labels, vec!["1", "3", "10"]);
        assert_eq!(
            ShardedDataset::open(&at).unwrap().load().unwrap(),
            load_labelled(open()).unwrap()
        );
    }

    #[test]
    fn an_unfinished_ingest_leaves_nothing_and_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let at = dir.path().join("d");
        let mut w = ShardWriter::with_shard_rows(&at, 1, vec![1], vec!["x".into()], 1).unwrap();
        w.push(&[1.0], "a").unwrap();
        drop(w);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        let mut w = ShardWriter::with_shard_rows(&at, 1, vec![1], vec!["x".into()], 1).unwrap();
        w.push(&[1.0], "a").unwrap();
        w.push(&[2.0], "b").unwrap();
        w.finish(sorted, source()).unwrap();
        let shard = at.join("shard-000001.f32");
        std::fs::write(&shard, [0u8; 2]).unwrap();
        let e = ShardedDataset::open(&at).unwrap_err().to_string();
        assert!(
            e.contains("shard-000001.f32") && e.contains("damaged"),
            "{e}"
        );
    }
}
