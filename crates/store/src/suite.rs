//! The store test suite, written once: every implementation of [`JobRepository`] +
//! [`UploadCatalog`] + [`BlobStore`] must pass it.
//!
//! Always compiled (it needs no dependency of its own, so no feature gate): a backend
//! crate implements [`Harness`] and invokes [`store_suite!`](crate::store_suite) in one of
//! its integration tests, which makes one `#[test]` per case, each in a fresh temporary
//! directory (the invoking crate needs `tempfile` as a dev-dependency). [`run_all`] runs
//! every case in turn. `tests/sqlite_suite.rs` runs it against [`SqliteHarness`].

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gradstream_domain::{
    Activation, Checkpoint, ClassWeighting, DType, DatasetInfo, DatasetSpec, EarlyStopping,
    EventKind, FeatureInfo, HostTensor, IterationProgress, JobEvent, JobKind, JobSpec, JobStatus,
    LossSpec, LrPoint, LrSchedule, LrSuggestion, MlpSpec, ModelInfo, ModelParameter,
    ModelSelection, ModelSpec, OptimizerSpec, RangeTest, RunId, RunInfo,
};

/// The job's own run.
const R0: RunId = RunId::JOB;

use crate::{
    BlobStore, JobRepository, SqliteStore, StoreError, StoreErrorKind, StoredJob, UploadCatalog,
    Write,
};

/// How the suite opens and tampers with one implementation's state.
pub trait Harness {
    type Store: JobRepository + UploadCatalog + BlobStore;

    /// Opens (creating) the store whose state lives in `dir`, an empty folder at first.
    fn open(&self, dir: &Path) -> Result<Self::Store, StoreError>;

    /// With the store closed: marks its schema as one newer than this binary knows.
    fn make_schema_newer(&self, dir: &Path);

    /// With the store closed: cuts the stored checkpoint of `epoch` of `job_id` short.
    fn truncate_checkpoint(&self, dir: &Path, job_id: &str, epoch: u32);

    /// Whether anything of `job_id`'s files (its checkpoint folder) is left.
    fn job_files_exist(&self, dir: &Path, job_id: &str) -> bool;
}

/// Runs every case, each in its own folder under `dir`.
pub fn run_all<H: Harness>(h: &H, dir: &Path) {
    crate::store_suite!(@list @run h, dir);
}

/// One `#[test]` per suite case against a [`Harness`] expression, each in a fresh temporary
/// directory.
#[macro_export]
macro_rules! store_suite {
    ($harness:expr) => {
        $crate::store_suite!(@list @tests $harness);
    };
    // The cases, listed once: hands them to the `@tests` or `@run` arm.
    (@list $($head:tt)*) => {
        $crate::store_suite!($($head)*;
            job_round_trip,
            append_is_atomic,
            reused_request_id_is_a_conflict,
            interleaved_events_stay_per_job_in_order,
            delete_removes_the_job_and_only_it,
            uploads_catalog,
            checkpoints_round_trip_bit_for_bit,
            prune_keeps_the_recorded_epoch_and_newer,
            keep_best_survives_pruning_and_only_one_stays,
            take_resume_returns_once,
            runs_keep_their_own_checkpoints,
            reopen_sees_everything,
            second_open_is_locked,
            truncated_checkpoint_is_corrupt,
            newer_schema_is_refused,
        );
    };
    (@tests $harness:expr; $($case:ident),* $(,)?) => {$(
        #[test]
        fn $case() {
            let dir = tempfile::tempdir().unwrap();
            $crate::suite::$case(&$harness, dir.path());
        }
    )*};
    (@run $h:expr, $dir:expr; $($case:ident),* $(,)?) => {$({
        let sub = $dir.join(stringify!($case));
        std::fs::create_dir_all(&sub).unwrap();
        $crate::suite::$case($h, &sub);
    })*};
}

/// The SQLite + local files store, as the suite sees it.
pub struct SqliteHarness;

impl Harness for SqliteHarness {
    type Store = SqliteStore;

    fn open(&self, dir: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open(dir)
    }

    fn make_schema_newer(&self, dir: &Path) {
        let conn = rusqlite::Connection::open(dir.join("gradstream.db")).unwrap();
        conn.execute(
            "INSERT INTO schema_migrations (version, applied_ns) VALUES (?1, 0)",
            [crate::schema::latest() + 1],
        )
        .unwrap();
    }

    fn truncate_checkpoint(&self, dir: &Path, job_id: &str, epoch: u32) {
        let p = crate::checkpoint::path(&crate::sqlite::run_dir(dir, job_id, R0), epoch);
        let len = std::fs::metadata(&p).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(len / 2).unwrap();
    }

    fn job_files_exist(&self, dir: &Path, job_id: &str) -> bool {
        dir.join("jobs").join(job_id).exists()
    }
}

fn open<H: Harness>(h: &H, dir: &Path) -> H::Store {
    h.open(dir).unwrap()
}

/// A time with nanoseconds, so truncation to micro- or milliseconds shows.
fn time(n: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789 + n)
}

pub(crate) fn spec(name: &str) -> JobSpec {
    JobSpec {
        name: name.into(),
        dataset: DatasetSpec::Csv {
            path: "x.csv".into(),
            label_column: Some("label".into()),
        },
        model: ModelSpec::Mlp(MlpSpec {
            hidden_layers: vec![8, 4],
            activation: Activation::Relu,
            batch_norm: true,
            dropout: 0.1,
        }),
        epochs: 3,
        batch_size: 16,
        learning_rate: 0.1 + 0.2,
        optimizer: OptimizerSpec::adam_default(),
        class_weights: vec![f64::MIN_POSITIVE, 1.0 / 3.0],
        validation_fraction: 0.2,
        seed: u64::MAX,
        report_every: 0,
        best_model_metric: ModelSelection::Loss,
        class_weighting: ClassWeighting::Balanced,
        resampling: None,
        ensemble: None,
        loss: LossSpec::Focal { gamma: -0.0 },
        gradient_clip_norm: Some(f64::NAN),
        early_stopping: Some(EarlyStopping {
            patience: 2,
            min_delta: f64::EPSILON,
        }),
        lr_schedule: LrSchedule::Constant,
        layer_diagnostics: true,
        shuffle_buffer: None,
    }
}

fn info() -> RunInfo {
    RunInfo {
        parameter_count: 123,
        labels: vec!["a".into(), "b".into()],
        train_samples: 80,
        validation_samples: 20,
        iterations_per_epoch: 5,
        device: "cpu".into(),
        features: FeatureInfo {
            names: vec!["x".into()],
            mean: vec![f32::NAN],
            std: vec![1.5],
        },
        class_weights: vec![0.25, f64::NAN],
        train_class_counts: vec![40, 40],
        resampled_class_counts: vec![],
    }
}

/// The events of a job, seq `from..=to`, with awkward f64s (NaN, infinities, -0.0).
fn events(job_id: &str, from: u64, to: u64) -> Vec<JobEvent> {
    (from..=to)
        .map(|seq| JobEvent {
            job_id: job_id.into(),
            seq,
            run: RunId((seq % 3) as u32),
            time: time(seq),
            kind: match seq % 4 {
                0 => EventKind::Status {
                    status: JobStatus::Running,
                    message: format!("event {seq}"),
                },
                1 => EventKind::Iteration(IterationProgress {
                    epoch: 1,
                    iteration: seq as u32,
                    iterations_per_epoch: 5,
                    global_step: seq,
                    loss: f64::NAN,
                    learning_rate: -0.0,
                    samples_per_second: f64::INFINITY,
                }),
                2 => EventKind::RangePoint(LrPoint {
                    iteration: seq as u32,
                    learning_rate: 1e-300,
                    loss: f64::from_bits(0x7ff8_0000_dead_beef),
                    smoothed_loss: -f64::NAN,
                }),
                _ => EventKind::RangeResult(LrSuggestion {
                    suggested: 0.1 + 0.2,
                    min_loss: f64::NEG_INFINITY,
                    diverged: seq % 8 == 3,
                    iterations: 5,
                }),
            },
        })
        .collect()
}

fn insert<S: JobRepository>(s: &S, id: &str, request_id: Option<&str>, n: u64) {
    s.insert_job(id, request_id, &JobKind::Training, &spec(id), time(n))
        .unwrap();
}

fn append_events<S: JobRepository>(s: &S, events: &[JobEvent]) {
    let writes: Vec<Write<'_>> = events.iter().map(Write::Event).collect();
    s.append(&writes).unwrap();
}

/// MessagePack of a value: equal bytes mean every f64 is equal bit for bit.
fn bits<T: serde::Serialize>(v: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(v).unwrap()
}

fn assert_events(got: &[JobEvent], want: &[JobEvent]) {
    assert_eq!(got.len(), want.len(), "number of events");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(
            (&g.job_id, g.seq, g.run, g.time),
            (&w.job_id, w.seq, w.run, w.time)
        );
        assert_eq!(bits(&g.kind), bits(&w.kind), "event {}", w.seq);
    }
}

fn job<'a>(jobs: &'a [StoredJob], id: &str) -> &'a StoredJob {
    jobs.iter()
        .find(|j| j.id == id)
        .unwrap_or_else(|| panic!("job {id} is missing"))
}

fn ids(jobs: &[StoredJob]) -> Vec<&str> {
    jobs.iter().map(|j| j.id.as_str()).collect()
}

/// Spec, kind, request id, created time (to the nanosecond), run info and events.
pub fn job_round_trip<H: Harness>(h: &H, dir: &Path) {
    let s = open(h, dir);
    let range = JobKind::RangeTest(RangeTest::DEFAULT);
    s.insert_job("j1", Some("req-1"), &range, &spec("j1"), time(1))
        .unwrap();
    insert(&s, "j2", None, 2);
    let ev = events("j1", 1, 8);
    let info = info();
    let mut writes: Vec<Write<'_>> = ev[..4].iter().map(Write::Event).collect();
    writes.push(Write::Info {
        job_id: "j1",
        info: &info,
    });
    writes.extend(ev[4..].iter().map(Write::Event));
    s.append(&writes).unwrap();

    assert_eq!(s.job_for_request("req-1").unwrap().as_deref(), Some("j1"));
    assert_eq!(s.job_for_request("req-2").unwrap(), None);
    let jobs = s.load_jobs().unwrap();
    assert_eq!(ids(&jobs), ["j1", "j2"], "oldest first");
    let j = job(&jobs, "j1");
    assert_eq!(j.request_id.as_deref(), Some("req-1"));
    assert_eq!(j.kind, range);
    assert_eq!(j.created, time(1));
    assert_eq!(bits(&j.spec), bits(&spec("j1")));
    assert_eq!(j.info.as_ref().map(bits), Some(bits(&info)));
    assert_events(&j.events, &ev);
    let j2 = job(&jobs, "j2");
    assert_eq!(
        (j2.kind, j2.request_id.as_deref()),
        (JobKind::Training, None)
    );
    assert!(j2.info.is_none() && j2.events.is_empty());
}

/// A batch with a duplicate seq, or an event or run info of an unknown job, fails as a
/// whole: nothing of it is visible.
pub fn append_is_atomic<H: Harness>(h: &H, dir: &Path) {
    let s = open(h, dir);
    insert(&s, "j1", None, 1);
    let stored = events("j1", 1, 2);
    append_events(&s, &stored);
    let info = info();

    let fresh = events("j1", 3, 4);
    let dup = events("j1", 2, 2);
    let batch = [Write::Event(&fresh[0]), Write::Event(&dup[0])];
    let e = s.append(&batch).unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::Conflict, "{e}");

    let within = [Write::Event(&fresh[0]), Write::Event(&fresh[0])];
    let e = s.append(&within).unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::Conflict, "{e}");

    let unknown = events("nope", 1, 1);
    let batch = [
        Write::Event(&fresh[0]),
        Write::Info {
            job_id: "j1",
            info: &info,
        },
        Write::Event(&unknown[0]),
    ];
    let e = s.append(&batch).unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::NotFound, "{e}");

    let batch = [
        Write::Event(&fresh[0]),
        Write::Info {
            job_id: "nope",
            info: &info,
        },
    ];
    let e = s.append(&batch).unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::NotFound, "{e}");

    let jobs = s.load_jobs().unwrap();
    assert_eq!(ids(&jobs), ["j1"]);
    assert!(jobs[0].info.is_none(), "the run info of a failed batch");
    assert_events(&jobs[0].events, &stored);
    // The store still takes the next good batch.
    append_events(&s, &fresh);
    assert_eq!(s.load_jobs().unwrap()[0].events.len(), 4);
}

pub fn reused_request_id_is_a_conflict<H: Harness>(h: &H, dir: &Path) {
    let s = open(h, dir);
    insert(&s, "j1", Some("req"), 1);
    let e = s
        .insert_job("j2", Some("req"), &JobKind::Training, &spec("j2"), time(2))
        .unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::Conflict, "{e}");
    let e = s
        .insert_job("j1", None, &JobKind::Training, &spec("j1"), time(3))
        .unwrap_err();
    assert_eq!(
        e.kind(),
        StoreErrorKind::Conflict,
        "a duplicate job id: {e}"
    );
    assert_eq!(s.job_for_request("req").unwrap().as_deref(), Some("j1"));
    assert_eq!(ids(&s.load_jobs().unwrap()), ["j1"]);
}

pub fn interleaved_events_stay_per_job_in_order<H: Harness>(h: &H, dir: &Path) {
    let s = open(h, dir);
    insert(&s, "a", None, 1);
    insert(&s, "b", None, 2);
    let (a, b) = (events("a", 1, 6), events("b", 1, 6));
    for chunk in 0..3 {
        let r = chunk * 2..chunk * 2 + 2;
        let writes: Vec<Write<'_>> = a[r.clone()]
            .iter()
            .zip(&b[r])
            .flat_map(|(x, y)| [Write::Event(y), Write::Event(x)])
            .collect();
        s.append(&writes).unwrap();
    }
    let jobs = s.load_jobs().unwrap();
    assert_events(&job(&jobs, "a").events, &a);
    assert_events(&job(&jobs, "b").events, &b);
}

pub fn delete_removes_the_job_and_only_it<H: Harness>(h: &H, dir: &Path) {
    let s = open(h, dir);
    insert(&s, "gone", Some("r1"), 1);
    insert(&s, "kept", Some("r2"), 2);
    append_events(&s, &events("gone", 1, 3));
    let kept = events("kept", 1, 3);
    append_events(&s, &kept);
    for id in ["gone", "kept"] {
        s.write_checkpoint(id, R0, &checkpoint(1, 0)).unwrap();
        s.write_checkpoint(id, R0, &checkpoint(1, 7)).unwrap();
    }
    s.delete_job("gone").unwrap();
    s.delete_job("never-was").unwrap();

    let jobs = s.load_jobs().unwrap();
    assert_eq!(ids(&jobs), ["kept"]);
    assert_events(&jobs[0].events, &kept);
    assert_eq!(s.job_for_request("r1").unwrap(), None);
    let e = s.read_checkpoint("gone", R0, 1).unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::NotFound, "{e}");
    assert!(s.take_resume_checkpoint("gone").unwrap().is_none());
    assert!(!h.job_files_exist(dir, "gone"), "the job's folder");
    assert!(h.job_files_exist(dir, "kept"));
    assert_eq!(s.read_checkpoint("kept", R0, 1).unwrap(), checkpoint(1, 0));
    // The id may be used again, with nothing of the old job in it.
    insert(&s, "gone", Some("r1"), 3);
    assert!(job(&s.load_jobs().unwrap(), "gone").events.is_empty());
}

fn dataset(id: &str, n: u64) -> DatasetInfo {
    DatasetInfo {
        id: id.into(),
        name: format!("{id}.csv"),
        rows: 10,
        features: 3,
        labels: vec!["x".into(), "y".into()],
        class_counts: vec![4, 6],
        bytes: 100,
        sha256: "ab".repeat(32),
        created: time(n),
        label_column: "label".into(),
    }
}

fn model(id: &str, n: u64) -> ModelInfo {
    ModelInfo {
        id: id.into(),
        name: format!("{id}.pt"),
        bytes: 200,
        sha256: "cd".repeat(32),
        created: time(n),
        parameter_count: 12,
        parameters: vec![ModelParameter {
            name: "0.weight".into(),
            shape: vec![3, 4],
            requires_grad: true,
        }],
    }
}

pub fn uploads_catalog<H: Harness>(h: &H, dir: &Path) {
    let s = open(h, dir);
    s.insert_dataset(&dataset("d2", 2)).unwrap();
    s.insert_dataset(&dataset("d1", 1)).unwrap();
    s.insert_model(&model("m1", 1)).unwrap();
    let e = s.insert_dataset(&dataset("d1", 3)).unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::Conflict, "{e}");
    let e = s.insert_model(&model("m1", 3)).unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::Conflict, "{e}");

    assert_eq!(s.dataset("d1").unwrap(), Some(dataset("d1", 1)));
    assert_eq!(s.dataset("nope").unwrap(), None);
    assert_eq!(s.datasets().unwrap(), [dataset("d1", 1), dataset("d2", 2)]);
    assert_eq!(s.model("m1").unwrap(), Some(model("m1", 1)));
    assert_eq!(s.models().unwrap(), [model("m1", 1)]);

    std::fs::create_dir_all(s.datasets_dir().join("tmp")).unwrap();
    std::fs::write(s.dataset_file("d1"), "x,label\n").unwrap();
    std::fs::write(s.model_file("m1"), "pt").unwrap();
    assert!(s.delete_dataset("d1").unwrap());
    assert!(!s.dataset_file("d1").exists(), "the dataset's file");
    assert!(!s.delete_dataset("d1").unwrap());
    assert!(!s.delete_dataset("nope").unwrap());
    assert!(s.delete_model("m1").unwrap());
    assert!(!s.model_file("m1").exists(), "the model's file");
    assert!(!s.delete_model("m1").unwrap());
    assert_eq!(s.datasets().unwrap(), [dataset("d2", 2)]);
    assert_eq!(s.models().unwrap(), []);
    assert!(
        s.models_dir().join("tmp").is_dir(),
        "the upload temp folder"
    );
}

fn tensor(dtype: DType, shape: Vec<usize>, seed: u8) -> HostTensor {
    let n = shape.iter().product::<usize>() * dtype.size();
    let data = (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect();
    HostTensor::new(dtype, shape, data).unwrap()
}

/// A checkpoint of epoch `epoch` (mid-epoch at `iteration` > 0), tensors in name order.
fn checkpoint(epoch: u32, iteration: u32) -> Checkpoint {
    let nan = f64::from_bits(0x7ff8_0000_0000_0001).to_le_bytes().to_vec();
    Checkpoint {
        epoch,
        iteration,
        global_step: u64::from(epoch) * 1000 + u64::from(iteration),
        dropout_word_pos: (u128::from(u64::MAX) << 64) | u128::from(epoch),
        tensors: vec![
            (
                "model.a".into(),
                tensor(DType::F32, vec![2, 3], epoch as u8),
            ),
            ("model.b".into(), tensor(DType::BF16, vec![4], 1)),
            (
                "model.nan".into(),
                HostTensor::new(DType::F64, vec![1], nan).unwrap(),
            ),
            (
                "opt.flags".into(),
                HostTensor::new(DType::Bool, vec![3], vec![1, 0, 1]).unwrap(),
            ),
            ("opt.step".into(), tensor(DType::I64, vec![], 2)),
            ("opt.u8".into(), tensor(DType::U8, vec![5], 3)),
        ],
    }
}

pub fn checkpoints_round_trip_bit_for_bit<H: Harness>(h: &H, dir: &Path) {
    let s = open(h, dir);
    let c = checkpoint(2, 0);
    s.write_checkpoint("j", R0, &c).unwrap();
    assert_eq!(s.read_checkpoint("j", R0, 2).unwrap(), c);
    assert_eq!(s.model_checkpoint("j", R0, 2).unwrap(), Some(c));
    assert_eq!(s.model_checkpoint("j", R0, 3).unwrap(), None);
    let e = s.read_checkpoint("j", R0, 3).unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::NotFound, "{e}");
    let e = s.read_checkpoint("other", R0, 2).unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::NotFound, "{e}");
    // Written again (a retried epoch): replaced whole.
    let c2 = checkpoint(2, 0);
    s.write_checkpoint("j", R0, &c2).unwrap();
    assert_eq!(s.read_checkpoint("j", R0, 2).unwrap(), c2);
}

fn write_epochs<S: BlobStore>(s: &S, job: &str, epochs: std::ops::RangeInclusive<u32>) {
    for epoch in epochs {
        s.write_checkpoint(job, R0, &checkpoint(epoch, 0)).unwrap();
    }
}

fn present<S: BlobStore>(s: &S, job: &str, epochs: std::ops::RangeInclusive<u32>) -> Vec<u32> {
    epochs
        .filter(|&e| s.read_checkpoint(job, R0, e).is_ok())
        .collect()
}

pub fn prune_keeps_the_recorded_epoch_and_newer<H: Harness>(h: &H, dir: &Path) {
    let s = open(h, dir);
    write_epochs(&s, "j", 1..=4);
    write_epochs(&s, "other", 1..=2);
    s.prune_checkpoints("j", R0, 3).unwrap();
    assert_eq!(present(&s, "j", 0..=5), [3, 4]);
    assert_eq!(s.read_checkpoint("j", R0, 4).unwrap(), checkpoint(4, 0));
    assert_eq!(present(&s, "other", 0..=5), [1, 2], "another job's");
    s.prune_checkpoints("never-was", R0, 3).unwrap();
}

pub fn keep_best_survives_pruning_and_only_one_stays<H: Harness>(h: &H, dir: &Path) {
    let s = open(h, dir);
    for epoch in 1..=4 {
        write_epochs(&s, "j", epoch..=epoch);
        if epoch == 2 || epoch == 3 {
            s.keep_best("j", R0, epoch).unwrap();
        }
        s.prune_checkpoints("j", R0, epoch).unwrap();
    }
    assert_eq!(present(&s, "j", 0..=5), [4]);
    assert_eq!(
        s.model_checkpoint("j", R0, 3).unwrap(),
        Some(checkpoint(3, 0))
    );
    assert_eq!(
        s.model_checkpoint("j", R0, 2).unwrap(),
        None,
        "the previous best"
    );
    assert_eq!(
        s.model_checkpoint("j", R0, 4).unwrap(),
        Some(checkpoint(4, 0))
    );
    assert_eq!(s.model_checkpoint("j", R0, 1).unwrap(), None);
}

pub fn take_resume_returns_once<H: Harness>(h: &H, dir: &Path) {
    let s = open(h, dir);
    assert_eq!(s.take_resume_checkpoint("j").unwrap(), None);
    write_epochs(&s, "j", 1..=1);
    let mid = checkpoint(2, 17);
    s.write_checkpoint("j", R0, &mid).unwrap();
    assert_eq!(
        present(&s, "j", 0..=3),
        [1],
        "a mid-epoch one is no epoch's"
    );
    assert_eq!(s.take_resume_checkpoint("j").unwrap(), Some((R0, mid)));
    assert_eq!(s.take_resume_checkpoint("j").unwrap(), None);
    assert_eq!(present(&s, "j", 0..=3), [1]);
}

/// Each run has its own epochs: pruning one leaves the others, the best is one for the
/// whole job, and the mid-epoch checkpoint comes back with its run.
pub fn runs_keep_their_own_checkpoints<H: Harness>(h: &H, dir: &Path) {
    let s = open(h, dir);
    let (r1, r2) = (RunId::child(0), RunId::child(1));
    for run in [r1, r2] {
        for epoch in 1..=3 {
            s.write_checkpoint("j", run, &checkpoint(epoch + run.0 * 10, 0))
                .unwrap();
        }
    }
    let e = s.read_checkpoint("j", r1, 22).unwrap_err();
    assert_eq!(
        e.kind(),
        StoreErrorKind::NotFound,
        "run 2's epoch, looked up in run 1"
    );
    s.keep_best("j", r1, 22).unwrap_err();
    s.prune_checkpoints("j", r1, 13).unwrap();
    let epochs = |run: RunId| -> Vec<u32> {
        (0..40)
            .filter(|&e| s.read_checkpoint("j", run, e).is_ok())
            .collect()
    };
    assert_eq!(epochs(r1), [13]);
    assert_eq!(epochs(r2), [21, 22, 23], "another run's");
    assert_eq!(epochs(R0), Vec::<u32>::new());

    s.keep_best("j", r2, 21).unwrap();
    s.prune_checkpoints("j", r2, 23).unwrap();
    assert_eq!(
        s.model_checkpoint("j", r2, 21).unwrap(),
        Some(checkpoint(21, 0))
    );
    s.write_checkpoint("j", R0, &checkpoint(1, 0)).unwrap();
    s.keep_best("j", R0, 1).unwrap();
    assert_eq!(
        s.model_checkpoint("j", r2, 21).unwrap(),
        None,
        "one best per job: run 2's went when run 0's was kept"
    );
    assert_eq!(
        s.model_checkpoint("j", R0, 1).unwrap(),
        Some(checkpoint(1, 0))
    );

    s.write_checkpoint("j", r1, &checkpoint(14, 0)).unwrap();
    s.prune_earlier_runs("j", r1).unwrap();
    assert_eq!(epochs(r1), [13, 14], "its own");
    assert_eq!(epochs(r2), [23], "a later run's");
    assert_eq!(epochs(R0), [1], "the job's own run's");
    s.prune_earlier_runs("j", r2).unwrap();
    assert!(epochs(r1).is_empty(), "run 1 came before run 2");
    assert_eq!((epochs(r2), epochs(R0)), (vec![23], vec![1]));
    s.write_checkpoint("j", r1, &checkpoint(14, 0)).unwrap();
    s.prune_earlier_runs("j", R0).unwrap();
    assert!(
        epochs(r1).is_empty() && epochs(r2).is_empty(),
        "every child run came before the job's own"
    );
    assert_eq!(epochs(R0), [1], "run 0's kept");
    assert_eq!(
        s.model_checkpoint("j", R0, 1).unwrap(),
        Some(checkpoint(1, 0)),
        "the kept best"
    );
    s.prune_earlier_runs("never-was", R0).unwrap();

    let mid = checkpoint(4, 9);
    s.write_checkpoint("j", r2, &mid).unwrap();
    assert_eq!(s.take_resume_checkpoint("j").unwrap(), Some((r2, mid)));
    assert_eq!(s.take_resume_checkpoint("j").unwrap(), None);
    assert!(
        epochs(r2).is_empty(),
        "taking the mid-epoch checkpoint left no epoch behind"
    );
}

/// Everything written is there after the store is dropped and opened again.
pub fn reopen_sees_everything<H: Harness>(h: &H, dir: &Path) {
    let ev = events("j", 1, 5);
    let info = info();
    {
        let s = open(h, dir);
        insert(&s, "j", Some("req"), 1);
        append_events(&s, &ev);
        s.append(&[Write::Info {
            job_id: "j",
            info: &info,
        }])
        .unwrap();
        s.insert_dataset(&dataset("d", 1)).unwrap();
        s.insert_model(&model("m", 1)).unwrap();
        write_epochs(&s, "j", 1..=2);
        s.keep_best("j", R0, 1).unwrap();
        s.write_checkpoint("j", R0, &checkpoint(3, 4)).unwrap();
    }
    let s = open(h, dir);
    let jobs = s.load_jobs().unwrap();
    assert_eq!(ids(&jobs), ["j"]);
    assert_eq!(jobs[0].created, time(1));
    assert_eq!(jobs[0].info.as_ref().map(bits), Some(bits(&info)));
    assert_events(&jobs[0].events, &ev);
    assert_eq!(s.job_for_request("req").unwrap().as_deref(), Some("j"));
    assert_eq!(s.datasets().unwrap(), [dataset("d", 1)]);
    assert_eq!(s.models().unwrap(), [model("m", 1)]);
    assert_eq!(s.read_checkpoint("j", R0, 2).unwrap(), checkpoint(2, 0));
    assert_eq!(
        s.model_checkpoint("j", R0, 1).unwrap(),
        Some(checkpoint(1, 0))
    );
    assert_eq!(
        s.take_resume_checkpoint("j").unwrap(),
        Some((R0, checkpoint(3, 4)))
    );
}

pub fn second_open_is_locked<H: Harness>(h: &H, dir: &Path) {
    let first = open(h, dir);
    match h.open(dir) {
        Err(StoreError::Locked) => {}
        Err(e) => panic!("expected the Locked error, got {e}"),
        Ok(_) => panic!("a second open of a state directory in use succeeded"),
    }
    drop(first);
    open(h, dir);
}

pub fn truncated_checkpoint_is_corrupt<H: Harness>(h: &H, dir: &Path) {
    {
        let s = open(h, dir);
        write_epochs(&s, "j", 1..=1);
    }
    h.truncate_checkpoint(dir, "j", 1);
    let s = open(h, dir);
    for e in [
        s.read_checkpoint("j", R0, 1).unwrap_err(),
        s.model_checkpoint("j", R0, 1).unwrap_err(),
    ] {
        assert_eq!(e.kind(), StoreErrorKind::Corrupt, "{e}");
        assert!(
            e.to_string().contains("epoch-000001"),
            "names the file: {e}"
        );
    }
}

pub fn newer_schema_is_refused<H: Harness>(h: &H, dir: &Path) {
    drop(open(h, dir));
    h.make_schema_newer(dir);
    match h.open(dir) {
        Err(e) => assert_eq!(e.kind(), StoreErrorKind::TooNew, "{e}"),
        Ok(_) => panic!("a database of a newer schema was opened"),
    }
}

/// Callers hold the stores as trait objects.
#[allow(dead_code)]
fn object_safe(s: std::sync::Arc<SqliteStore>) {
    let _: std::sync::Arc<dyn JobRepository> = s.clone();
    let _: std::sync::Arc<dyn UploadCatalog> = s.clone();
    let _: std::sync::Arc<dyn BlobStore> = s;
}
