//! Shared test set-up: a real server on 127.0.0.1:0 in this process, and the generated client.
#![allow(dead_code)]

pub mod process;
pub mod rng;
pub mod torchscript;

use std::path::Path;

use gradstream::config::ServeConfig;
use gradstream::server::{self, RunningServer};
use gradstream::transport::pb::{self, trainer_client::TrainerClient};
use tonic::transport::Channel;

pub struct TestServer {
    pub server: RunningServer,
    pub data_dir: tempfile::TempDir,
    _state_dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start(max_concurrent_jobs: u16) -> Self {
        Self::start_with(|c| c.max_concurrent_jobs = max_concurrent_jobs).await
    }

    /// A server with the test defaults, adjusted by `adjust`.
    pub async fn start_with(adjust: impl FnOnce(&mut ServeConfig)) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let state_dir = tempfile::tempdir().unwrap();
        let mut config = ServeConfig::local(
            data_dir.path().to_path_buf(),
            state_dir.path().to_path_buf(),
        );
        adjust(&mut config);
        let server = server::start(&config).await.unwrap();
        Self {
            server,
            data_dir,
            _state_dir: state_dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    pub async fn client(&self) -> TrainerClient<Channel> {
        TrainerClient::connect(self.url()).await.unwrap()
    }

    pub fn write_csv(&self, name: &str, text: &str) {
        let path = self.data_dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, text).unwrap();
    }

    pub fn data_path(&self) -> &Path {
        self.data_dir.path()
    }

    pub fn state_path(&self) -> &Path {
        self._state_dir.path()
    }
}

/// A small, quick synthetic job.
pub fn spec(samples: u32, classes: u32, epochs: u32) -> pb::JobSpec {
    pb::JobSpec {
        name: "test".into(),
        dataset: Some(pb::Dataset {
            source: Some(pb::dataset::Source::Synthetic(pb::SyntheticDataset {
                samples,
                features: 8,
                classes,
                class_ratios: vec![],
                separation: Some(1.5),
                seed: 3,
            })),
        }),
        model: mlp(vec![16], pb::Activation::Relu, false, 0.0),
        epochs,
        batch_size: 32,
        learning_rate: 0.01,
        optimizer: None,
        class_weights: vec![],
        validation_fraction: None,
        seed: 11,
        report_every: 0,
        best_model_metric: 0,
        ..Default::default()
    }
}

/// The synthetic dataset of a spec made by [`spec`].
pub fn synthetic(s: &mut pb::JobSpec) -> &mut pb::SyntheticDataset {
    match s.dataset.as_mut().and_then(|d| d.source.as_mut()) {
        Some(pb::dataset::Source::Synthetic(x)) => x,
        _ => panic!("the spec's dataset is not synthetic"),
    }
}

/// An MLP model message.
pub fn mlp(
    hidden_layers: Vec<u32>,
    activation: pb::Activation,
    batch_norm: bool,
    dropout: f64,
) -> Option<pb::Model> {
    Some(pb::Model {
        kind: Some(pb::model::Kind::Mlp(pb::Mlp {
            hidden_layers,
            activation: activation as i32,
            batch_norm,
            dropout,
        })),
    })
}

pub fn csv_spec(path: &str, label_column: &str) -> pb::JobSpec {
    let mut s = spec(0, 0, 2);
    s.dataset = Some(pb::Dataset {
        source: Some(pb::dataset::Source::Csv(pb::CsvDataset {
            path: path.into(),
            label_column: label_column.into(),
        })),
    });
    s
}

pub fn request(spec: pb::JobSpec) -> pb::SubmitJobRequest {
    pb::SubmitJobRequest {
        spec: Some(spec),
        request_id: String::new(),
    }
}

/// Reads a stream to its end.
pub async fn collect(mut s: tonic::Streaming<pb::JobEvent>) -> Vec<pb::JobEvent> {
    let mut out = Vec::new();
    while let Some(e) = s.message().await.unwrap() {
        out.push(e);
    }
    out
}

pub async fn train(c: &mut TrainerClient<Channel>, spec: pb::JobSpec) -> Vec<pb::JobEvent> {
    collect(c.train(request(spec)).await.unwrap().into_inner()).await
}

pub async fn watch(
    c: &mut TrainerClient<Channel>,
    job_id: &str,
    from_seq: u64,
) -> Vec<pb::JobEvent> {
    collect(watch_stream(c, job_id, from_seq).await).await
}

/// A job's event stream from `from_seq`, to read at one's own pace.
pub async fn watch_stream(
    c: &mut TrainerClient<Channel>,
    job_id: &str,
    from_seq: u64,
) -> tonic::Streaming<pb::JobEvent> {
    let req = pb::WatchJobRequest {
        job_id: job_id.into(),
        from_seq,
    };
    c.watch_job(req).await.unwrap().into_inner()
}

pub async fn get_job(c: &mut TrainerClient<Channel>, job_id: &str) -> pb::Job {
    c.get_job(pb::GetJobRequest {
        job_id: job_id.into(),
    })
    .await
    .unwrap()
    .into_inner()
}

/// Every job, as ListJobs gives them.
pub async fn list_jobs(c: &mut TrainerClient<Channel>) -> Vec<pb::Job> {
    c.list_jobs(pb::ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .jobs
}

/// How long a bounded wait may take before it fails its test.
pub const DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);

/// `f`, or a failed test naming `what` if it takes longer than [`DEADLINE`].
pub async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Polls until job `job_id` has `status`, under [`DEADLINE`].
pub async fn wait_for_status(
    c: &mut TrainerClient<Channel>,
    job_id: &str,
    status: pb::JobStatus,
) -> pb::Job {
    bounded(&format!("job {job_id} to be {status:?}"), async {
        loop {
            let j = get_job(c, job_id).await;
            if j.status() == status {
                return j;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
}

/// The job of a finished history, after checking it succeeded.
pub async fn succeeded_job(c: &mut TrainerClient<Channel>, events: &[pb::JobEvent]) -> pb::Job {
    assert_eq!(
        statuses(events).last(),
        Some(&pb::JobStatus::Succeeded),
        "{}",
        last_message(events)
    );
    c.get_job(pb::GetJobRequest {
        job_id: events[0].job_id.clone(),
    })
    .await
    .unwrap()
    .into_inner()
}

/// The epoch of the model `Predict` answers with by default (the best), asked with one row
/// of `features` zeros.
pub async fn predicting_epoch(
    c: &mut TrainerClient<Channel>,
    job_id: &str,
    features: usize,
) -> u32 {
    c.predict(pb::PredictRequest {
        job_id: job_id.into(),
        rows: vec![pb::FeatureRow {
            values: vec![0.0; features],
        }],
        model: 0,
    })
    .await
    .unwrap()
    .into_inner()
    .epoch
}

/// Runs a learning-rate range test to its end: its points and its suggestion.
pub async fn range_test(
    c: &mut TrainerClient<Channel>,
    req: pb::FindLearningRateRequest,
) -> (Vec<pb::LrPoint>, pb::LrSuggestion) {
    let mut stream = c.find_learning_rate(req).await.unwrap().into_inner();
    let mut points = Vec::new();
    let mut result = None;
    while let Some(e) = stream.message().await.unwrap() {
        match e.kind.unwrap() {
            pb::lr_finder_event::Kind::Point(p) => points.push(p),
            pb::lr_finder_event::Kind::Result(r) => result = Some(r),
        }
    }
    (points, result.expect("a result ends the stream"))
}

pub fn statuses(events: &[pb::JobEvent]) -> Vec<pb::JobStatus> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(pb::job_event::Kind::Status(s)) => pb::JobStatus::try_from(s.status).ok(),
            _ => None,
        })
        .collect()
}

pub fn last_message(events: &[pb::JobEvent]) -> String {
    events
        .iter()
        .rev()
        .find_map(|e| match &e.kind {
            Some(pb::job_event::Kind::Status(s)) => Some(s.message.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

pub fn iterations(events: &[pb::JobEvent]) -> Vec<pb::IterationProgress> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(pb::job_event::Kind::Iteration(p)) => Some(*p),
            _ => None,
        })
        .collect()
}

pub fn epochs(events: &[pb::JobEvent]) -> Vec<pb::EpochEnd> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(pb::job_event::Kind::Epoch(x)) => Some(x.clone()),
            _ => None,
        })
        .collect()
}

/// The Python of `.venv` (PyTorch, scikit-learn): `GRADSTREAM_PYTHON`, else the
/// repository's `.venv/bin/python`, which `make test` creates.
pub fn python() -> std::path::PathBuf {
    std::env::var_os("GRADSTREAM_PYTHON")
        .map(Into::into)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"))
}

/// Runs a reference script from `tests/reference` with `args`; panics with its output if
/// it fails. Returns what it printed.
pub fn run_reference(script: &str, args: &[impl AsRef<std::ffi::OsStr>]) -> Vec<u8> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/reference")
        .join(script);
    let out = std::process::Command::new(python())
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}); run `make test` to create .venv",
                python().display()
            )
        });
    assert!(
        out.status.success(),
        "{} failed: {}\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Seqs are 1, 2, 3… with no gaps or repeats.
pub fn assert_gap_free(events: &[pb::JobEvent]) {
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    let want: Vec<u64> = (1..=events.len() as u64).collect();
    assert_eq!(seqs, want, "event seqs must run 1..n without gaps");
}
