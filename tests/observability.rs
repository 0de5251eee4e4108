//! Observability as an operator meets it: `/metrics` fetched over HTTP from the real server
//! and parsed by `prometheus_client`'s own parser, its counters moving as jobs run; the
//! OTLP trace export received by a collector of the test's own (an OTLP/gRPC receiver on
//! 127.0.0.1:0) with the expected span tree; TensorBoard event files read back by the
//! `tensorboard` package's `EventAccumulator` holding the job's own numbers.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::process::ServerProcess;
use common::*;
use gradstream::transport::pb;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::Value;
use tonic::Code;

/// Every sample of the server's `/metrics`, as `name{label=value,...}` → value, parsed by
/// `tests/reference/scrape_metrics.py` (urllib + `prometheus_client.parser`).
struct Scrape {
    samples: HashMap<String, f64>,
    types: HashMap<String, String>,
}

impl Scrape {
    fn of(http: std::net::SocketAddr) -> Self {
        let out = reference_json("scrape_metrics.py", &[&format!("http://{http}/metrics")]);
        let samples = out["samples"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_f64().unwrap()))
            .collect();
        let types = out["types"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        Self { samples, types }
    }

    /// A sample's value; a sample the server does not expose fails the test, except a
    /// labelled counter not yet created, which is 0.
    fn get(&self, key: &str) -> f64 {
        match self.samples.get(key) {
            Some(v) => *v,
            None if key.contains('=') && (key.contains("_total{") || key.contains("_count{")) => {
                0.0
            }
            None => panic!("/metrics has no sample {key}; it has {:?}", self.keys()),
        }
    }

    fn keys(&self) -> Vec<&String> {
        let mut k: Vec<&String> = self.samples.keys().collect();
        k.sort();
        k
    }
}

/// Runs a script of `tests/reference` in `.venv` and parses what it prints as JSON.
fn reference_json(script: &str, args: &[&str]) -> Value {
    serde_json::from_slice(&run_reference(script, args)).unwrap()
}

/// `/metrics` off the async threads (the script blocks), so the server keeps serving.
async fn scrape(http: std::net::SocketAddr) -> Scrape {
    bounded(
        "scraping /metrics",
        tokio::task::spawn_blocking(move || Scrape::of(http)),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_count_jobs_epochs_samples_rpcs_and_watchers() {
    let ts = TestServer::start(1).await;
    let http = ts.server.http_addr.expect("the test server serves HTTP");
    let mut c = ts.client().await;
    let before = scrape(http).await;

    assert_eq!(before.get("gradstream_jobs{status=succeeded}"), 0.0);
    assert_eq!(before.get("gradstream_watchers{stream=watch_job}"), 0.0);

    // A job trained through `Train`: 3 epochs.
    let events = bounded("a training job", train(&mut c, spec(400, 3, 3))).await;
    let job = succeeded_job(&mut c, &events).await;
    // A request answered with an error.
    let missing = c
        .get_job(pb::GetJobRequest {
            job_id: "no-such-job".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    let after = scrape(http).await;
    // Every metric family, with Prometheus' type and a conventional name (a labelled one
    // appears once it has a sample).
    for (name, kind) in [
        ("gradstream_jobs", "gauge"),
        ("gradstream_jobs_finished", "counter"),
        ("gradstream_epochs", "counter"),
        ("gradstream_training_samples", "counter"),
        ("gradstream_epoch_duration_seconds", "histogram"),
        ("gradstream_queue_wait_seconds", "histogram"),
        ("gradstream_watchers", "gauge"),
        ("gradstream_events_appended", "counter"),
        ("gradstream_grpc_requests", "counter"),
        ("gradstream_grpc_request_duration_seconds", "histogram"),
        ("gradstream_store_commit_duration_seconds", "histogram"),
    ] {
        assert_eq!(
            after.types.get(name).map(String::as_str),
            Some(kind),
            "{name} in {:?}",
            after.types
        );
    }
    let delta = |key: &str| after.get(key) - before.get(key);
    assert_eq!(delta("gradstream_epochs_total{}"), 3.0);
    assert_eq!(
        delta("gradstream_training_samples_total{}"),
        3.0 * job.train_samples as f64,
        "each epoch adds the training split ({} rows)",
        job.train_samples
    );
    assert_eq!(delta("gradstream_epoch_duration_seconds_count{}"), 3.0);
    assert_eq!(delta("gradstream_queue_wait_seconds_count{}"), 1.0);
    assert_eq!(
        delta("gradstream_jobs_finished_total{outcome=succeeded}"),
        1.0
    );
    assert_eq!(delta("gradstream_jobs_finished_total{outcome=failed}"), 0.0);
    assert_eq!(after.get("gradstream_jobs{status=succeeded}"), 1.0);
    assert_eq!(after.get("gradstream_jobs{status=running}"), 0.0);
    assert_eq!(
        delta("gradstream_events_appended_total{}"),
        events.len() as f64,
        "every event the stream carried was committed once"
    );
    assert!(delta("gradstream_store_commit_duration_seconds_count{}") >= 1.0);
    let train_ok = "gradstream_grpc_requests_total{code=OK,method=gradstream.v1.Trainer/Train}";
    assert_eq!(delta(train_ok), 1.0, "{:?}", after.keys());
    assert_eq!(
        delta("gradstream_grpc_requests_total{code=NOT_FOUND,method=gradstream.v1.Trainer/GetJob}"),
        1.0
    );
    assert_eq!(
        delta(
            "gradstream_grpc_request_duration_seconds_count{code=NOT_FOUND,method=gradstream.v1.Trainer/GetJob}"
        ),
        1.0
    );
    assert_eq!(after.get("gradstream_watchers{stream=train}"), 0.0);

    // A WatchJob stream is a watcher while it is open; cancelling its job ends it.
    // Far longer than the test (10,000 epochs): it ends only by the cancel.
    let mut long = spec(4000, 3, 10_000);
    long.name = "long".into();
    let id = c.submit_job(request(long)).await.unwrap().into_inner().id;
    let mut stream = watch_stream(&mut c, &id, 1).await;
    bounded("the watched job's first event", stream.message())
        .await
        .unwrap()
        .expect("the stream has a first event");
    let watching = scrape(http).await;
    assert_eq!(watching.get("gradstream_watchers{stream=watch_job}"), 1.0);
    c.cancel_job(pb::CancelJobRequest { job_id: id.clone() })
        .await
        .unwrap();
    let rest = bounded("the watch stream to end", collect(stream)).await;
    assert_eq!(
        statuses(&rest).last(),
        Some(&pb::JobStatus::Cancelled),
        "{}",
        last_message(&rest)
    );
    // The stream's end reaches the server's side of the connection a moment later.
    let ended = bounded("the watcher gauge to fall back to 0", async {
        loop {
            let s = scrape(http).await;
            if s.get("gradstream_watchers{stream=watch_job}") == 0.0 {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(
        ended.get("gradstream_jobs_finished_total{outcome=cancelled}")
            - before.get("gradstream_jobs_finished_total{outcome=cancelled}"),
        1.0,
        "{:?}",
        ended.samples
    );
    assert_eq!(ended.get("gradstream_jobs{status=cancelled}"), 1.0);
    assert_eq!(
        ended.get("gradstream_grpc_requests_total{code=OK,method=gradstream.v1.Trainer/WatchJob}"),
        1.0,
        "a stream is counted when it ends"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tensorboard_files_hold_the_jobs_scalars_and_pr_curves() {
    let logdir = tempfile::tempdir().unwrap();
    let dir = logdir.path().to_path_buf();
    let ts = TestServer::start_with(|c| c.tensorboard_dir = Some(dir)).await;
    let mut c = ts.client().await;
    let mut s = spec(400, 3, 3);
    s.name = "tb demo/1".into();
    s.report_every = 4;
    let events = bounded("a training job", train(&mut c, s)).await;
    let job = succeeded_job(&mut c, &events).await;
    // Shutting down flushes the export.
    let TestServer {
        server, data_dir, ..
    } = ts;
    bounded("the server to shut down", server.shutdown())
        .await
        .unwrap();
    drop(data_dir);

    let logdir_arg = logdir.path().to_str().unwrap().to_string();
    let runs =
        tokio::task::spawn_blocking(move || reference_json("read_tensorboard.py", &[&logdir_arg]))
            .await
            .unwrap();
    let runs = runs.as_object().unwrap();
    let run_name = format!("tb_demo_1-{}", &job.id[..8]);
    assert_eq!(
        runs.keys().collect::<Vec<_>>(),
        vec![&run_name],
        "one folder per job, named after the job"
    );
    let run = &runs[&run_name];
    let scalars = |tag: &str| -> Vec<(i64, f32)> {
        run["scalars"][tag]
            .as_array()
            .unwrap_or_else(|| panic!("no scalar {tag} in {}", run["scalars"]))
            .iter()
            .map(|p| (p[0].as_i64().unwrap(), p[1].as_f64().unwrap() as f32))
            .collect()
    };

    let iterations = iterations(&events);
    assert!(!iterations.is_empty());
    let want: Vec<(i64, f32)> = iterations
        .iter()
        .map(|p| (p.global_step as i64, p.loss as f32))
        .collect();
    assert_eq!(scalars("loss/iteration"), want);
    let want: Vec<(i64, f32)> = iterations
        .iter()
        .map(|p| (p.global_step as i64, p.learning_rate as f32))
        .collect();
    assert_eq!(scalars("learning_rate"), want);

    let epochs = epochs(&events);
    assert_eq!(epochs.len(), 3);
    let per_epoch = |f: &dyn Fn(&pb::EpochEnd) -> f64| -> Vec<(i64, f32)> {
        epochs
            .iter()
            .map(|e| (i64::from(e.epoch), f(e) as f32))
            .collect()
    };
    let train = |e: &pb::EpochEnd| e.train.clone().unwrap();
    let val = |e: &pb::EpochEnd| e.validation.clone().unwrap();
    assert_eq!(scalars("loss/train"), per_epoch(&|e| train(e).loss));
    assert_eq!(scalars("accuracy/train"), per_epoch(&|e| train(e).accuracy));
    assert_eq!(scalars("loss/validation"), per_epoch(&|e| val(e).loss));
    assert_eq!(
        scalars("accuracy/validation"),
        per_epoch(&|e| val(e).accuracy)
    );
    assert_eq!(
        scalars("f1_macro/validation"),
        per_epoch(&|e| val(e).r#macro.unwrap().f1)
    );
    assert_eq!(
        scalars("roc_auc/validation"),
        per_epoch(&|e| val(e).roc_auc.unwrap())
    );

    // A PR curve per class and epoch, as the pr_curves plugin stores it: [6, thresholds]
    // rows TP, FP, TN, FN, precision, recall. At threshold 0 every row is predicted
    // positive: recall 1, precision = the class's share of the validation rows.
    let last = val(epochs.last().unwrap());
    let total: u64 = last.confusion_matrix.as_ref().unwrap().counts.iter().sum();
    for class in &last.per_class {
        let tag = format!("pr_curve/validation/{}", class.label);
        let curve = run["pr_curves"][&tag]
            .as_array()
            .unwrap_or_else(|| panic!("no PR curve {tag} in {:?}", run["pr_curves"]));
        let steps: Vec<i64> = curve.iter().map(|c| c[0].as_i64().unwrap()).collect();
        assert_eq!(steps, vec![1, 2, 3], "{tag}");
        let (shape, rows) = (&curve[2][1], &curve[2][2]);
        assert_eq!(shape, &serde_json::json!([6, 101]), "{tag}");
        let at = |row: usize, i: usize| rows[row][i].as_f64().unwrap();
        assert_eq!(at(0, 0), class.support as f64, "{tag}: TP at threshold 0");
        assert_eq!(
            at(0, 0) + at(1, 0),
            total as f64,
            "{tag}: TP + FP at threshold 0"
        );
        assert_eq!(at(5, 0), 1.0, "{tag}: recall at threshold 0");
        let share = class.support as f64 / total as f64;
        assert!((at(4, 0) - share).abs() < 1e-6, "{tag}: precision at 0");
        // TP never grows with the threshold; TP + FN is always the class's rows.
        for i in 1..101 {
            assert!(at(0, i) <= at(0, i - 1), "{tag}: TP at threshold {i}");
            assert_eq!(at(0, i) + at(3, i), class.support as f64, "{tag}: TP + FN");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tensorboard_export_that_cannot_write_leaves_the_job_alone() {
    let logdir = tempfile::tempdir().unwrap();
    let dir = logdir.path().join("tb");
    let at = dir.clone();
    let ts = TestServer::start_with(|c| c.tensorboard_dir = Some(at)).await;
    // The export folder becomes a file: no job folder can be made in it.
    std::fs::remove_dir(&dir).unwrap();
    std::fs::write(&dir, "not a directory").unwrap();
    let mut c = ts.client().await;
    let events = bounded("a training job", train(&mut c, spec(200, 2, 2))).await;
    succeeded_job(&mut c, &events).await;
    assert_eq!(epochs(&events).len(), 2);
    assert_eq!(std::fs::read_to_string(&dir).unwrap(), "not a directory");
}

/// An OTLP/gRPC trace collector: keeps every span it is sent.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn otlp_export_has_the_rpc_job_and_epoch_span_tree() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let receiver = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let data = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_with_env(
        data.path(),
        state.path(),
        &[("GRADSTREAM_OTLP_ENDPOINT", endpoint.as_str())],
    );
    let mut c = pb::trainer_client::TrainerClient::connect(server.url.clone())
        .await
        .unwrap();
    // The caller's trace: W3C trace context in the request's metadata.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let mut req = tonic::Request::new(request(spec(300, 3, 3)));
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{caller_span}-01").parse().unwrap(),
    );
    let job = c.submit_job(req).await.unwrap().into_inner();
    wait_for_status(&mut c, &job.id, pb::JobStatus::Succeeded).await;
    // A graceful stop exports what is still buffered.
    let (status, log) = tokio::task::spawn_blocking(move || server.stop("TERM"))
        .await
        .unwrap();
    assert!(status.success(), "{}", log.join("\n"));

    let spans = bounded("the job's spans to reach the collector", async {
        loop {
            let spans = collector.spans.lock().unwrap().clone();
            let epochs = spans.iter().filter(|s| s.name == "epoch").count();
            if epochs >= 3 && spans.iter().any(|s| s.name == "job") {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    receiver.abort();

    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    let rpc = spans
        .iter()
        .find(|s| s.name == "gradstream.v1.Trainer/SubmitJob")
        .unwrap_or_else(|| panic!("no SubmitJob span in {names:?}"));
    assert_eq!(
        hex(&rpc.trace_id),
        trace_id,
        "the RPC joins the caller's trace"
    );
    assert_eq!(
        hex(&rpc.parent_span_id),
        caller_span,
        "the RPC's parent is the caller"
    );
    let job_span = spans
        .iter()
        .find(|s| s.name == "job")
        .unwrap_or_else(|| panic!("no job span in {names:?}"));
    assert_eq!(hex(&job_span.trace_id), trace_id);
    assert_eq!(
        job_span.parent_span_id, rpc.span_id,
        "the job's run is a child of the RPC that submitted it"
    );
    let epochs: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "epoch" && s.parent_span_id == job_span.span_id)
        .collect();
    assert_eq!(epochs.len(), 3, "one child span per epoch: {names:?}");
    for e in &epochs {
        assert_eq!(hex(&e.trace_id), trace_id);
        assert!(e.start_time_unix_nano >= job_span.start_time_unix_nano);
        assert!(e.end_time_unix_nano <= job_span.end_time_unix_nano);
    }
    // The polling GetJob calls carry no traceparent: each is a trace of its own.
    let get = spans
        .iter()
        .find(|s| s.name == "gradstream.v1.Trainer/GetJob")
        .unwrap_or_else(|| panic!("no GetJob span in {names:?}"));
    assert_ne!(hex(&get.trace_id), trace_id);
    assert!(get.parent_span_id.is_empty());
}
