//! The scheduler with a job kind of its own (`Fake`), which does what each job's name says:
//! `ok` succeeds at once, `gate` waits until the test opens its gate, `block` runs until it
//! is cancelled, `panic` panics. Real store, real threads; every wait has a deadline that
//! fails the test instead of hanging it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::kind::{Interruption, Outcome, RunContext, Runner, Start};
use super::{JobError, JobManager, JobSnapshot, JobsConfig, Recovered};
use crate::domain::{EventKind, JobEvent, JobKind, JobSpec, JobStatus, RunId};
use crate::store::{JobRepository, Store, StoredJob, Write};
use crate::transport::{convert, pb};

const DEADLINE: Duration = Duration::from_secs(30);

/// What the fake kind saw: (job name, "start" | "end").
type Log = mpsc::Receiver<(String, &'static str)>;

struct Fake {
    log: Mutex<mpsc::Sender<(String, &'static str)>>,
    gate: (Mutex<bool>, Condvar),
    running: AtomicUsize,
    most_running: AtomicUsize,
}

impl Fake {
    fn new() -> (Arc<Self>, Log) {
        let (tx, rx) = mpsc::channel();
        let fake = Arc::new(Self {
            log: Mutex::new(tx),
            gate: (Mutex::new(false), Condvar::new()),
            running: AtomicUsize::new(0),
            most_running: AtomicUsize::new(0),
        });
        (fake, rx)
    }

    fn open_gate(&self) {
        *self.gate.0.lock().unwrap() = true;
        self.gate.1.notify_all();
    }

    fn note(&self, name: &str, what: &'static str) {
        let _ = self.log.lock().unwrap().send((name.to_string(), what));
    }
}

impl Runner for Fake {
    fn starting(&self, job: &JobSnapshot) -> Start {
        Start {
            device: "fake".into(),
            message: format!("fake start of {}", job.spec.name),
        }
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Outcome {
        let name = ctx.spec().name.clone();
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_running.fetch_max(now, Ordering::SeqCst);
        self.note(&name, "start");
        let outcome = match name.split('-').next().unwrap_or_default() {
            "ok" => Outcome::Succeeded("done".into()),
            "gate" => {
                let (lock, cv) = &self.gate;
                let open = cv
                    .wait_timeout_while(lock.lock().unwrap(), DEADLINE, |open| !*open)
                    .unwrap();
                if *open.0 {
                    Outcome::Succeeded("through the gate".into())
                } else {
                    Outcome::Failed("the test never opened the gate".into())
                }
            }
            "block" => {
                let until = Instant::now() + DEADLINE;
                while !ctx.cancel_flag().load(Ordering::SeqCst) && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Outcome::Stopped
            }
            "panic" => panic!("the fake kind panicked"),
            other => Outcome::Failed(format!("unknown fake job '{other}'")),
        };
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.note(&name, "end");
        outcome
    }

    fn interrupted(&self, job: &JobSnapshot, why: Interruption) -> String {
        format!("fake {why:?} of {}", job.spec.name)
    }
}

fn spec(name: &str) -> JobSpec {
    let mut s = convert::job_spec(Some(pb::JobSpec {
        name: name.into(),
        dataset: Some(pb::Dataset {
            source: Some(pb::dataset::Source::Synthetic(pb::SyntheticDataset {
                samples: 40,
                features: 4,
                classes: 2,
                ..Default::default()
            })),
        }),
        model: Some(pb::Model {
            kind: Some(pb::model::Kind::Mlp(pb::Mlp {
                hidden_layers: vec![4],
                ..Default::default()
            })),
        }),
        epochs: 1,
        batch_size: 8,
        learning_rate: 0.01,
        ..Default::default()
    }))
    .unwrap();
    s.name = name.into();
    s
}

struct Setup {
    jobs: JobManager,
    fake: Arc<Fake>,
    log: Log,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

/// A manager with `slots` over a fresh store holding `stored` (written there for real, then
/// read back as recovery reads it).
fn setup(slots: usize, stored: Vec<StoredJob>) -> (Setup, Recovered) {
    let state = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(state.path()).unwrap());
    for job in &stored {
        store
            .insert_job(
                &job.id,
                job.request_id.as_deref(),
                &job.kind,
                &job.spec,
                job.created,
            )
            .unwrap();
        let writes: Vec<Write<'_>> = job.events.iter().map(Write::Event).collect();
        store.append(&writes).unwrap();
    }
    let stored = store.load_jobs().unwrap();
    let (fake, log) = Fake::new();
    let config = JobsConfig {
        data_dir: data.path().to_path_buf(),
        device: tch::Device::Cpu,
        max_concurrent_jobs: slots,
        max_dataset_bytes: 1 << 20,
        max_model_bytes: 1 << 20,
        datasets_dir: state.path().join("datasets"),
        max_in_memory_dataset_bytes: 1 << 20,
        tensorboard_dir: None,
    };
    let (jobs, recovered) = JobManager::with_runner(config, store, fake.clone(), stored).unwrap();
    let s = Setup {
        jobs,
        fake,
        log,
        _dirs: (state, data),
    };
    (s, recovered)
}

impl Setup {
    fn submit(&self, name: &str) -> String {
        self.jobs.submit(spec(name), None).unwrap().id
    }

    /// The next thing the fake kind saw.
    fn next(&self) -> (String, &'static str) {
        self.log
            .recv_timeout(DEADLINE)
            .expect("the fake kind reported nothing in time")
    }

    fn status(&self, id: &str) -> JobStatus {
        self.jobs.get(id).unwrap().status
    }

    /// Waits until job `id` has `status`.
    fn wait_for(&self, id: &str, status: JobStatus) -> JobSnapshot {
        let until = Instant::now() + DEADLINE;
        loop {
            let j = self.jobs.get(id).unwrap();
            if j.status == status {
                return j;
            }
            assert!(
                Instant::now() < until,
                "job {} is {:?} ({}), not {status:?}",
                j.spec.name,
                j.status,
                j.message
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

#[test]
fn one_slot_runs_jobs_one_at_a_time_in_submission_order() {
    let (s, _) = setup(1, Vec::new());
    let a = s.submit("gate-a");
    assert_eq!(s.next(), ("gate-a".into(), "start"));
    let b = s.submit("ok-b");
    let c = s.submit("ok-c");
    assert_eq!(s.status(b.as_str()), JobStatus::Queued);
    assert_eq!(s.status(c.as_str()), JobStatus::Queued);
    assert!(
        s.jobs
            .get(&c)
            .unwrap()
            .message
            .contains("queued behind 1 job(s)")
    );
    s.fake.open_gate();
    let order: Vec<_> = (0..5).map(|_| s.next()).collect();
    assert_eq!(
        order,
        [
            ("gate-a".into(), "end"),
            ("ok-b".into(), "start"),
            ("ok-b".into(), "end"),
            ("ok-c".into(), "start"),
            ("ok-c".into(), "end"),
        ]
    );
    for id in [&a, &b, &c] {
        s.wait_for(id, JobStatus::Succeeded);
    }
    assert_eq!(s.fake.most_running.load(Ordering::SeqCst), 1);
    let started = s.jobs.get(&a).unwrap();
    assert_eq!(started.device, "fake");
}

#[test]
fn two_slots_run_two_jobs_and_queue_the_third() {
    let (s, _) = setup(2, Vec::new());
    let ids: Vec<String> = ["gate-1", "gate-2", "gate-3"]
        .iter()
        .map(|n| s.submit(n))
        .collect();
    let mut started = vec![s.next(), s.next()];
    started.sort();
    assert_eq!(
        started,
        [("gate-1".into(), "start"), ("gate-2".into(), "start")]
    );
    assert_eq!(s.status(&ids[2]), JobStatus::Queued);
    assert_eq!(s.fake.running.load(Ordering::SeqCst), 2);
    s.fake.open_gate();
    for id in &ids {
        s.wait_for(id, JobStatus::Succeeded);
    }
    assert_eq!(s.fake.most_running.load(Ordering::SeqCst), 2);
}

#[test]
fn cancel_stops_a_queued_job_at_once_and_a_running_one_at_its_boundary() {
    let (s, _) = setup(1, Vec::new());
    let running = s.submit("block-r");
    assert_eq!(s.next(), ("block-r".into(), "start"));
    let queued = s.submit("ok-q");
    let q = s.jobs.cancel(&queued).unwrap();
    assert_eq!(q.status, JobStatus::Cancelled);
    assert_eq!(q.message, "cancelled by request");
    // Cancelling a finished job changes nothing.
    assert_eq!(s.jobs.cancel(&queued).unwrap().status, JobStatus::Cancelled);
    assert_eq!(s.jobs.cancel(&running).unwrap().status, JobStatus::Running);
    assert_eq!(s.next(), ("block-r".into(), "end"));
    let r = s.wait_for(&running, JobStatus::Cancelled);
    assert_eq!(r.message, "cancelled by request");
    // The cancelled queued job never ran: the next thing to run is a new job.
    let after = s.submit("ok-after");
    assert_eq!(s.next(), ("ok-after".into(), "start"));
    s.wait_for(&after, JobStatus::Succeeded);
    assert!(matches!(
        s.jobs.cancel("no-such-job"),
        Err(JobError::NotFound(_))
    ));
}

#[test]
fn a_panicking_job_fails_alone_and_the_next_one_runs() {
    let (s, _) = setup(1, Vec::new());
    let bad = s.submit("panic-x");
    let good = s.submit("ok-y");
    let failed = s.wait_for(&bad, JobStatus::Failed);
    assert!(
        failed.message.contains("the fake kind panicked")
            && failed.message.contains("other jobs are unaffected"),
        "{}",
        failed.message
    );
    s.wait_for(&good, JobStatus::Succeeded);
}

#[test]
fn shutdown_puts_running_jobs_back_in_the_queue_and_refuses_new_ones() {
    let (s, _) = setup(1, Vec::new());
    let running = s.submit("block-s");
    assert_eq!(s.next(), ("block-s".into(), "start"));
    let queued = s.submit("ok-never");
    let mut watcher = s.jobs.subscribe(&running, 1).unwrap();
    assert_eq!(s.jobs.shutdown(DEADLINE), 0);
    let r = s.jobs.get(&running).unwrap();
    assert_eq!(
        (r.status, r.message.as_str()),
        (JobStatus::Queued, "fake Shutdown of block-s")
    );
    assert_eq!(s.status(&queued), JobStatus::Queued);
    assert!(matches!(
        s.jobs.submit(spec("ok-late"), None),
        Err(JobError::ShuttingDown)
    ));
    // The watcher's stream ends once it has everything on disk.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let seen = rt.block_on(async {
        let mut seen = Vec::new();
        loop {
            match tokio::time::timeout(DEADLINE, watcher.next_batch())
                .await
                .expect("the stream did not end after shutdown")
            {
                Some(batch) => seen.extend(batch),
                None => return seen,
            }
        }
    });
    let statuses: Vec<JobStatus> = seen
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Status { status, .. } => Some(*status),
            _ => None,
        })
        .collect();
    assert_eq!(
        statuses,
        [JobStatus::Queued, JobStatus::Running, JobStatus::Queued]
    );
    // The job that never started never ran.
    assert_eq!(s.next(), ("block-s".into(), "end"));
    assert!(s.log.try_recv().is_err());
}

/// A job as the store would hand it back, with these statuses recorded.
fn stored(name: &str, statuses: &[JobStatus], age: u64) -> StoredJob {
    let id = format!("{name}-id");
    StoredJob {
        id: id.clone(),
        request_id: Some(format!("{name}-request")),
        kind: JobKind::Training,
        spec: spec(name),
        created: SystemTime::UNIX_EPOCH + Duration::from_secs(age),
        info: None,
        events: statuses
            .iter()
            .enumerate()
            .map(|(i, s)| JobEvent {
                job_id: id.clone(),
                seq: i as u64 + 1,
                run: RunId::JOB,
                time: SystemTime::UNIX_EPOCH + Duration::from_secs(age + i as u64),
                kind: EventKind::Status {
                    status: *s,
                    message: String::new(),
                },
            })
            .collect(),
    }
}

#[test]
fn recovery_queues_interrupted_jobs_first_then_waiting_ones_and_leaves_finished_ones() {
    use JobStatus::*;
    let (s, recovered) = setup(
        1,
        vec![
            stored("ok-waiting", &[Queued], 1),
            stored("ok-finished", &[Queued, Running, Succeeded], 2),
            stored("ok-interrupted", &[Queued, Running], 3),
            stored("ok-cancelled", &[Queued, Cancelled], 4),
        ],
    );
    assert_eq!(
        recovered,
        Recovered {
            jobs: 4,
            requeued: 1,
            interrupted: 1
        }
    );
    let order: Vec<_> = (0..4).map(|_| s.next()).collect();
    assert_eq!(
        order,
        [
            ("ok-interrupted".into(), "start"),
            ("ok-interrupted".into(), "end"),
            ("ok-waiting".into(), "start"),
            ("ok-waiting".into(), "end"),
        ]
    );
    let done = s.wait_for("ok-interrupted-id", Succeeded);
    assert_eq!(done.message, "done");
    s.wait_for("ok-waiting-id", Succeeded);
    // The interrupted job's log says why it was queued again, then runs on gap-free.
    let mut statuses = HashMap::new();
    let mut sub = s.jobs.subscribe("ok-interrupted-id", 1).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let events = rt.block_on(async {
        let mut all = Vec::new();
        while let Some(b) = tokio::time::timeout(DEADLINE, sub.next_batch())
            .await
            .expect("the log did not end")
        {
            all.extend(b);
        }
        all
    });
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1);
        if let EventKind::Status { status, message } = &e.kind {
            statuses.insert(e.seq, (*status, message.clone()));
        }
    }
    assert_eq!(
        statuses[&3],
        (Queued, "fake Restart of ok-interrupted".to_string())
    );
    assert_eq!(statuses[&4].0, Running);
    assert_eq!(s.status("ok-finished-id"), Succeeded);
    assert_eq!(s.status("ok-cancelled-id"), Cancelled);
    assert!(s.log.try_recv().is_err(), "finished jobs ran again");
    // Request ids survive recovery: a retry returns the recovered job.
    let again = s
        .jobs
        .submit(spec("ok-finished"), Some("ok-finished-request".into()))
        .unwrap();
    assert_eq!(again.id, "ok-finished-id");
}
