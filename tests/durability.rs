//! Durable state against a real server process: SIGKILL mid-epoch and SIGTERM, restarts on
//! the same state directory, and retried submits.

mod common;

use common::process::{self, ServerProcess};
use common::*;
use gradstream::transport::pb::{self, job_event::Kind, trainer_client::TrainerClient};
use tonic::Code;
use tonic::transport::Channel;

struct Dirs {
    data: tempfile::TempDir,
    state: tempfile::TempDir,
}

impl Dirs {
    fn new() -> Self {
        Self {
            data: tempfile::tempdir().unwrap(),
            state: tempfile::tempdir().unwrap(),
        }
    }

    fn start(&self) -> ServerProcess {
        ServerProcess::start(self.data.path(), self.state.path())
    }
}

async fn connect(p: &ServerProcess) -> TrainerClient<Channel> {
    TrainerClient::connect(p.url.clone()).await.unwrap()
}

/// A job long enough to be interrupted mid-way: 10 epochs of 100 iterations, with batch
/// norm and dropout so that every piece of state (running statistics, optimizer moments,
/// the dropout generator) must be restored for the metrics to match.
fn long_spec() -> pb::JobSpec {
    // 2 x 4000 samples, 800 of each held out: 6400 train = 100 full batches.
    let mut s = spec(8000, 2, 10);
    s.batch_size = 64;
    s.report_every = 10;
    s.model = mlp(vec![32, 16], pb::Activation::Relu, true, 0.1);
    s
}

/// Reads a job's stream until `stop` says so; returns what was read.
async fn read_until(
    c: &mut TrainerClient<Channel>,
    job_id: &str,
    stop: impl Fn(&pb::JobEvent) -> bool,
) -> Vec<pb::JobEvent> {
    let mut s = c
        .watch_job(pb::WatchJobRequest {
            job_id: job_id.into(),
            from_seq: 1,
        })
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    while let Some(e) = s.message().await.unwrap() {
        let done = stop(&e);
        seen.push(e);
        if done {
            break;
        }
    }
    seen
}

fn epoch_of(e: &pb::JobEvent) -> Option<u32> {
    match &e.kind {
        Some(Kind::Epoch(x)) => Some(x.epoch),
        _ => None,
    }
}

/// The metrics of every epoch (without the wall time, which differs run to run).
fn metrics_by_epoch(events: &[pb::JobEvent]) -> Vec<(u32, pb::Metrics, pb::Metrics)> {
    epochs(events)
        .into_iter()
        .map(|e| (e.epoch, e.train.unwrap(), e.validation.unwrap()))
        .collect()
}

/// After an interruption and a restart: the history has no gaps, everything seen before
/// is its prefix, every epoch ended exactly once, and the metrics equal an uninterrupted
/// run's.
async fn check_resumed_history(
    c: &mut TrainerClient<Channel>,
    job_id: &str,
    seen_before: &[pb::JobEvent],
    reference: &[pb::JobEvent],
) {
    let history = watch(c, job_id, 1).await;
    assert_gap_free(&history);
    if let Some(i) = (0..seen_before.len()).find(|&i| history.get(i) != Some(&seen_before[i])) {
        panic!(
            "acknowledged events survive: event {i} differs\nseen before: {:?}\nafter restart: {:?}",
            seen_before[i],
            history.get(i)
        );
    }
    assert_eq!(
        statuses(&history).last(),
        Some(&pb::JobStatus::Succeeded),
        "{}",
        last_message(&history)
    );
    let resumed = history.iter().any(|e| {
        matches!(&e.kind, Some(Kind::Status(s)) if s.status == pb::JobStatus::Running as i32
            && s.message.contains("resumed after"))
    });
    assert!(resumed, "a RUNNING event says where training resumed");
    let ends: Vec<u32> = history.iter().filter_map(epoch_of).collect();
    assert_eq!(
        ends,
        (1..=10).collect::<Vec<_>>(),
        "every epoch ended exactly once, in order"
    );
    assert_eq!(
        metrics_by_epoch(&history),
        metrics_by_epoch(reference),
        "same metrics as an uninterrupted run"
    );
    // The same best epoch, and its kept model answers exactly as the uninterrupted run's.
    let get = |id: &str| pb::GetJobRequest { job_id: id.into() };
    let job = c.get_job(get(job_id)).await.unwrap().into_inner();
    let want = c
        .get_job(get(&reference[0].job_id))
        .await
        .unwrap()
        .into_inner();
    assert!(want.best_epoch >= 1);
    assert_eq!(job.best_epoch, want.best_epoch);
    for model in [pb::ModelVersion::Best, pb::ModelVersion::Last] {
        assert_same_predictions(c, job_id, &reference[0].job_id, model, 0.25).await;
    }
}

/// `Predict` of one row of `value`s answers the same from both jobs' `model`.
async fn assert_same_predictions(
    c: &mut TrainerClient<Channel>,
    job_id: &str,
    reference_id: &str,
    model: pb::ModelVersion,
    value: f32,
) {
    let predict = |id: &str| pb::PredictRequest {
        job_id: id.into(),
        rows: vec![pb::FeatureRow {
            values: vec![value; 8],
        }],
        model: model as i32,
    };
    let got = c.predict(predict(job_id)).await.unwrap().into_inner();
    let expected = c.predict(predict(reference_id)).await.unwrap().into_inner();
    assert_eq!(got, expected, "{model:?} model after the interruption");
}

/// Submits `spec` to `server`, kills the server with SIGKILL mid-epoch (after epoch 3 ended
/// and some progress of epoch 4 was reported), restarts it on the same state directory and
/// checks the resumed job against `reference` (see [`check_resumed_history`]). Returns the
/// restarted server and a client of it.
async fn killed_mid_epoch_and_resumed(
    dirs: &Dirs,
    server: ServerProcess,
    spec: pb::JobSpec,
    reference: &[pb::JobEvent],
) -> (ServerProcess, TrainerClient<Channel>) {
    let (job_id, seen, server, mut c) = kill_mid_epoch_and_restart(dirs, server, spec).await;
    check_resumed_history(&mut c, &job_id, &seen, reference).await;
    (server, c)
}

/// A job's id, the events seen before the kill, the restarted server and a client of it.
type Restarted = (
    String,
    Vec<pb::JobEvent>,
    ServerProcess,
    TrainerClient<Channel>,
);

/// Submits `spec`, kills the server with SIGKILL mid-epoch (once epoch 4 reported
/// progress), and restarts it on the same state directory.
async fn kill_mid_epoch_and_restart(
    dirs: &Dirs,
    server: ServerProcess,
    spec: pb::JobSpec,
) -> Restarted {
    kill_and_restart(
        dirs,
        server,
        spec,
        |e| matches!(&e.kind, Some(Kind::Iteration(p)) if p.epoch >= 4 && p.iteration >= 30),
    )
    .await
}

/// Submits `spec`, kills the server with SIGKILL once `stop` says so of an event, and
/// restarts it on the same state directory.
async fn kill_and_restart(
    dirs: &Dirs,
    server: ServerProcess,
    spec: pb::JobSpec,
    stop: impl Fn(&pb::JobEvent) -> bool,
) -> Restarted {
    let mut c = connect(&server).await;
    let job = c.submit_job(request(spec)).await.unwrap().into_inner();
    let seen = read_until(&mut c, &job.id, stop).await;
    let (status, _) = server.stop("KILL");
    assert!(!status.success());
    let server = dirs.start();
    let c = connect(&server).await;
    (job.id, seen, server, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_epoch_then_restart_resumes_from_the_last_checkpoint() {
    let dirs = Dirs::new();
    let server = dirs.start();
    let mut c = connect(&server).await;
    // The reference: the same spec, uninterrupted.
    let reference = train(&mut c, long_spec()).await;
    assert_eq!(statuses(&reference).last(), Some(&pb::JobStatus::Succeeded));

    let (server, mut c) =
        killed_mid_epoch_and_resumed(&dirs, server, long_spec(), &reference).await;
    // The finished reference job is still there, unchanged.
    assert!(watch(&mut c, &reference[0].job_id, 1).await == reference);
    server.stop("TERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_requeues_the_running_job_and_keeps_the_queue() {
    let dirs = Dirs::new();
    let server = dirs.start();
    let mut c = connect(&server).await;
    let reference = train(&mut c, long_spec()).await;
    let running = c
        .submit_job(request(long_spec()))
        .await
        .unwrap()
        .into_inner();
    let queued = c
        .submit_job(request(spec(500, 2, 2)))
        .await
        .unwrap()
        .into_inner();
    let seen = read_until(&mut c, &running.id, |e| epoch_of(e) == Some(2)).await;
    let (status, log) = server.stop("TERM");
    assert!(status.success(), "{log:?}");

    let server = dirs.start();
    let mut c = connect(&server).await;
    check_resumed_history(&mut c, &running.id, &seen, &reference).await;
    // Stopped at an iteration boundary with a checkpoint of exactly there: after the
    // restart no iteration is trained (or reported) twice.
    let history = watch(&mut c, &running.id, 1).await;
    let mut reported: Vec<(u32, u32)> = iterations(&history)
        .iter()
        .map(|p| (p.epoch, p.iteration))
        .collect();
    let n = reported.len();
    reported.sort_unstable();
    reported.dedup();
    assert_eq!(
        reported.len(),
        n,
        "an iteration was reported twice after the shutdown"
    );
    assert_eq!(
        n,
        10 * 10,
        "every 10th of 100 iterations in 10 epochs, once"
    );
    let q = watch(&mut c, &queued.id, 1).await;
    assert_gap_free(&q);
    assert_eq!(statuses(&q).first(), Some(&pb::JobStatus::Queued));
    assert_eq!(statuses(&q).last(), Some(&pb::JobStatus::Succeeded));
    server.stop("TERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_submit_returns_the_same_job_even_after_a_restart() {
    let dirs = Dirs::new();
    let server = dirs.start();
    let mut c = connect(&server).await;
    let req = || pb::SubmitJobRequest {
        spec: Some(spec(300, 2, 1)),
        request_id: "client-42".into(),
    };
    // One server per state directory.
    let second = std::process::Command::new(process::BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--device",
            "cpu",
            "--state-dir",
        ])
        .arg(dirs.state.path())
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr)
            .contains("another gradstream server is using this state directory")
    );
    let first = c.submit_job(req()).await.unwrap().into_inner();
    let again = c.submit_job(req()).await.unwrap().into_inner();
    assert_eq!(first.id, again.id);
    let mut other = req();
    other.spec.as_mut().unwrap().epochs = 2;
    let err = c.submit_job(other).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert!(err.message().contains("client-42"), "{}", err.message());
    let done = watch(&mut c, &first.id, 1).await;
    assert_eq!(statuses(&done).last(), Some(&pb::JobStatus::Succeeded));
    server.stop("KILL");

    let server = dirs.start();
    let mut c = connect(&server).await;
    let after = c.submit_job(req()).await.unwrap().into_inner();
    assert_eq!(after.id, first.id);
    assert_eq!(after.status, pb::JobStatus::Succeeded as i32);
    let jobs = list_jobs(&mut c).await;
    assert_eq!(jobs.len(), 1, "no second job was created");
    server.stop("TERM");
}

/// The run, member and epoch of each epoch event, and its metrics.
fn ensemble_history(events: &[pb::JobEvent]) -> Vec<(u32, Option<u32>, u32, bool, pb::EpochEnd)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(Kind::Epoch(x)) => {
                let mut x = x.clone();
                // Wall times differ between runs; everything else must not.
                x.seconds = 0.0;
                x.diagnostics_seconds = 0.0;
                Some((e.run, x.member, x.epoch, x.ensemble, x))
            }
            _ => None,
        })
        .collect()
}

/// A 3-member ensemble of `epochs` epochs on skewed data, and its uninterrupted run.
async fn ensemble_and_reference(
    c: &mut TrainerClient<Channel>,
    epochs: u32,
) -> (pb::JobSpec, Vec<pb::JobEvent>) {
    let mut s = long_spec();
    s.epochs = epochs;
    s.model = mlp(vec![32, 16], pb::Activation::Relu, true, 0.0);
    common::synthetic(&mut s).class_ratios = vec![0.7, 0.3];
    s.ensemble = Some(pb::Ensemble {
        kind: pb::EnsembleKind::BalancedBagging as i32,
        members: 3,
    });
    let reference = bounded("the uninterrupted ensemble", train(c, s.clone())).await;
    assert_eq!(statuses(&reference).last(), Some(&pb::JobStatus::Succeeded));
    (s, reference)
}

/// After a restart: the resumed ensemble's log continues what was `seen` without a gap,
/// it succeeds, every member epoch comes once, in order, then the ensemble, all equal to
/// the uninterrupted run's, and it predicts as that run does. Returns its log.
async fn check_resumed_ensemble(
    c: &mut TrainerClient<Channel>,
    job_id: &str,
    seen: &[pb::JobEvent],
    reference: &[pb::JobEvent],
) -> Vec<pb::JobEvent> {
    let history = bounded("the resumed ensemble", watch(c, job_id, 1)).await;
    assert_gap_free(&history);
    assert_eq!(&history[..seen.len()], seen);
    assert_eq!(
        statuses(&history).last(),
        Some(&pb::JobStatus::Succeeded),
        "{}",
        last_message(&history)
    );
    assert_eq!(ensemble_history(&history), ensemble_history(reference));
    assert_same_predictions(
        c,
        job_id,
        &reference[0].job_id,
        pb::ModelVersion::Unspecified,
        0.5,
    )
    .await;
    history
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ensemble_killed_mid_member_resumes_with_the_finished_members() {
    let dirs = Dirs::new();
    let server = dirs.start();
    let mut c = connect(&server).await;
    let (s, reference) = ensemble_and_reference(&mut c, 3).await;
    // Kill it inside member 1's second epoch: member 0 is finished, member 1 is not.
    let (job_id, seen, server, mut c) = kill_and_restart(
        &dirs,
        server,
        s,
        |e| matches!(&e.kind, Some(Kind::Iteration(p)) if p.member == Some(1) && p.epoch == 2),
    )
    .await;
    check_resumed_ensemble(&mut c, &job_id, &seen, &reference).await;
    server.stop("TERM");
}

/// A shutdown inside a member stops it at an iteration boundary with a checkpoint of that
/// member's run: after the restart that member continues exactly there (no iteration
/// trained twice) and the ensemble ends as the uninterrupted one did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ensemble_stopped_by_sigterm_mid_member_resumes_in_that_member() {
    let dirs = Dirs::new();
    let server = dirs.start();
    let mut c = connect(&server).await;
    let (s, reference) = ensemble_and_reference(&mut c, 2).await;
    let job = c.submit_job(request(s)).await.unwrap().into_inner();
    let seen = bounded(
        "member 1's first progress report",
        read_until(
            &mut c,
            &job.id,
            |e| matches!(&e.kind, Some(Kind::Iteration(p)) if p.member == Some(1)),
        ),
    )
    .await;
    let (status, log) = server.stop("TERM");
    assert!(status.success(), "{log:?}");

    let server = dirs.start();
    let mut c = connect(&server).await;
    let history = check_resumed_ensemble(&mut c, &job.id, &seen, &reference).await;
    let mut reported: Vec<(u32, u32, u32)> = history
        .iter()
        .filter_map(|e| match &e.kind {
            Some(Kind::Iteration(p)) => Some((e.run, p.epoch, p.iteration)),
            _ => None,
        })
        .collect();
    let n = reported.len();
    reported.sort_unstable();
    reported.dedup();
    assert_eq!(reported.len(), n, "an iteration was reported twice");
    server.stop("TERM");
}

/// Killed once the ensemble's own metrics are recorded (before or after its SUCCEEDED,
/// whichever the kill lands on): after the restart the job ends SUCCEEDED with one
/// ensemble evaluation, and its model (run 0's checkpoint) predicts as the uninterrupted
/// one does, though the members' checkpoints are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ensemble_killed_after_its_evaluation_ends_without_training_again() {
    let dirs = Dirs::new();
    let server = dirs.start();
    let mut c = connect(&server).await;
    let (s, reference) = ensemble_and_reference(&mut c, 2).await;
    let (job_id, _, server, mut c) = kill_and_restart(
        &dirs,
        server,
        s,
        |e| matches!(&e.kind, Some(Kind::Epoch(x)) if x.ensemble),
    )
    .await;
    let history = bounded("the restarted ensemble", watch(&mut c, &job_id, 1)).await;
    assert_gap_free(&history);
    assert_eq!(
        statuses(&history).last(),
        Some(&pb::JobStatus::Succeeded),
        "{}",
        last_message(&history)
    );
    assert_eq!(ensemble_history(&history), ensemble_history(&reference));
    assert_same_predictions(
        &mut c,
        &job_id,
        &reference[0].job_id,
        pb::ModelVersion::Best,
        0.5,
    )
    .await;
    server.stop("TERM");
}

/// A user's TorchScript module with batch norm (no dropout, so the run is deterministic):
/// its running statistics live only in the module, which checkpoints carry as saved bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torchscript_model_killed_mid_epoch_resumes_with_its_batch_norm_statistics() {
    let (modules, _) = common::torchscript::torchscript_modules();
    let dirs = Dirs::new();
    let server = dirs.start();
    let mut c = connect(&server).await;
    let mut m = common::torchscript::models_client(server.url.clone()).await;
    let module =
        common::torchscript::upload_model(&mut m, &modules.path().join("mlp_nodrop.pt"), None)
            .await
            .unwrap();
    let mut s = long_spec();
    common::synthetic(&mut s).classes = 3;
    // 6401 training rows: batches of 64 would leave one of a single row.
    s.batch_size = 60;
    s.model = common::torchscript::torchscript(&module.id, vec![]);
    let reference = train(&mut c, s.clone()).await;
    assert_eq!(
        statuses(&reference).last(),
        Some(&pb::JobStatus::Succeeded),
        "{}",
        last_message(&reference)
    );
    let (server, _) = killed_mid_epoch_and_resumed(&dirs, server, s, &reference).await;
    server.stop("TERM");
}

/// Early stopping counts its patience across a restart: the killed job stops after the
/// same epoch, with the same message, as an uninterrupted one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_stopping_counts_its_patience_across_a_restart() {
    let dirs = Dirs::new();
    let server = dirs.start();
    let mut c = connect(&server).await;
    let mut s = long_spec();
    // No epoch after the first improves by 1e9: training stops 5 epochs later, after epoch 6.
    s.early_stopping = Some(pb::EarlyStopping {
        patience: 5,
        min_delta: 1e9,
    });
    let reference = train(&mut c, s.clone()).await;
    let message = last_message(&reference);
    assert!(
        message.starts_with("stopped early after epoch 6"),
        "{message}"
    );
    let (job_id, _, server, mut c) = kill_mid_epoch_and_restart(&dirs, server, s).await;
    let history = watch(&mut c, &job_id, 1).await;
    assert_gap_free(&history);
    assert_eq!(statuses(&history).last(), Some(&pb::JobStatus::Succeeded));
    assert_eq!(last_message(&history), message);
    let ends: Vec<u32> = history.iter().filter_map(epoch_of).collect();
    assert_eq!(ends, (1..=6).collect::<Vec<_>>());
    assert_eq!(metrics_by_epoch(&history), metrics_by_epoch(&reference));
    server.stop("TERM");
}

/// [`long_spec`] on the same rows as arrays (`long-x.npy`, `long-y.npy`).
fn long_arrays_spec() -> pb::JobSpec {
    let mut s = long_spec();
    s.dataset = Some(pb::Dataset {
        source: Some(pb::dataset::Source::Arrays(pb::ArrayDataset {
            format: pb::ArrayFormat::Npy as i32,
            features_path: "long-x.npy".into(),
            labels_path: "long-y.npy".into(),
            ..Default::default()
        })),
    });
    s.shuffle_buffer = Some(500);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_job_killed_mid_epoch_resumes_from_its_stored_copy_after_the_files_are_gone() {
    let dirs = Dirs::new();
    // 8,000 rows x 8 features = 256,000 bytes: streamed under a 128 KiB limit, which its
    // shuffle buffer and validation split, (500 + 1,600) rows x 32 bytes, fit.
    let env = [("GRADSTREAM_MAX_IN_MEMORY_DATASET_BYTES", "131072")];
    let start = || ServerProcess::start_with_env(dirs.data.path(), dirs.state.path(), &env);
    let long = dirs.data.path().as_os_str().to_os_string();
    run_reference("write_arrays.py", &[long.as_os_str(), "long".as_ref()]);
    let server = start();
    let mut c = connect(&server).await;
    let reference = bounded("the reference job", train(&mut c, long_arrays_spec())).await;
    assert_eq!(
        statuses(&reference).last(),
        Some(&pb::JobStatus::Succeeded),
        "{}",
        last_message(&reference)
    );
    let job = c
        .submit_job(request(long_arrays_spec()))
        .await
        .unwrap()
        .into_inner();
    let seen = bounded(
        "epoch 4 of the streamed job",
        read_until(
            &mut c,
            &job.id,
            |e| matches!(&e.kind, Some(Kind::Iteration(p)) if p.epoch >= 4 && p.iteration >= 30),
        ),
    )
    .await;
    let (status, _) = server.stop("KILL");
    assert!(!status.success());
    // The source files are gone: only the server's stored copy can resume the job.
    for f in ["long-x.npy", "long-y.npy"] {
        std::fs::remove_file(dirs.data.path().join(f)).unwrap();
    }
    let server = start();
    let mut c = connect(&server).await;
    bounded(
        "the resumed job",
        check_resumed_history(&mut c, &job.id, &seen, &reference),
    )
    .await;
    let history = bounded("the resumed history", watch(&mut c, &job.id, 1)).await;
    assert!(
        history.iter().any(|e| matches!(&e.kind, Some(Kind::Status(s))
            if s.message.contains("streaming 8000 rows") && s.message.contains("shuffle buffer 500 rows"))),
        "the job streamed: {}",
        last_message(&history)
    );
    server.stop("TERM");
}
