//! The HTTP JSON + Server-Sent Events API against a real server on 127.0.0.1 port 0,
//! through a real HTTP/1 client (hyper), checked against what the gRPC API says.

mod common;

use std::collections::HashMap;

use common::{TestServer, bounded, request, spec, wait_for_status};
use gradstream::transport::pb;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use pb::trainer_client::TrainerClient;
use serde_json::Value;
use tonic::transport::Channel;

/// A plain HTTP client of one server's HTTP port.
struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

impl Http {
    fn of(server: &TestServer) -> Self {
        let addr = server
            .server
            .http_addr
            .expect("the test server serves HTTP");
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base: format!("http://{addr}"),
        }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> hyper::Response<Incoming> {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::new())).unwrap();
        bounded(&format!("{method} {path}"), self.client.request(req))
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Status, headers and the whole body.
    async fn fetch(&self, method: &str, path: &str) -> (u16, hyper::HeaderMap, Vec<u8>) {
        let resp = self.send(method, path, &[]).await;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = bounded("a response body", resp.into_body().collect())
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        (status, headers, body)
    }

    async fn json(&self, method: &str, path: &str) -> (u16, Value) {
        let (status, headers, body) = self.fetch(method, path).await;
        assert_eq!(
            headers["content-type"],
            "application/json",
            "{method} {path}: {}",
            String::from_utf8_lossy(&body)
        );
        (status, serde_json::from_slice(&body).unwrap())
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body) = self.json("GET", path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// The error of a request that must fail with `status`.
    async fn error(&self, method: &str, path: &str, status: u16) -> String {
        let (got, body) = self.json(method, path).await;
        assert_eq!(got, status, "{method} {path}: {body}");
        body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path}: no \"error\" in {body}"))
            .to_string()
    }

    async fn events(&self, path: &str, headers: &[(&str, &str)]) -> SseReader {
        let resp = self.send("GET", path, headers).await;
        assert_eq!(resp.status(), 200, "GET {path}");
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        SseReader {
            body: resp.into_body(),
            buf: String::new(),
        }
    }
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq)]
struct Sse {
    id: Option<u64>,
    event: String,
    data: String,
}

impl Sse {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

/// Reads an event stream as a browser does (comments are keep-alives, skipped).
struct SseReader {
    body: Incoming,
    buf: String,
}

impl SseReader {
    /// The next event, or `None` when the server closed the stream.
    async fn next(&mut self) -> Option<Sse> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut event = Sse {
                    id: None,
                    event: "message".into(),
                    data: String::new(),
                };
                let mut fields = 0;
                for line in block.lines() {
                    let Some((field, value)) = line.split_once(':') else {
                        continue;
                    };
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "" => continue,
                        "id" => event.id = Some(value.parse().expect("a numeric id")),
                        "event" => event.event = value.into(),
                        "data" => {
                            if !event.data.is_empty() {
                                event.data.push('\n');
                            }
                            event.data.push_str(value);
                        }
                        _ => {}
                    }
                    fields += 1;
                }
                if fields > 0 {
                    return Some(event);
                }
                continue;
            }
            let frame = bounded("the next SSE bytes", self.body.frame()).await?;
            if let Ok(data) = frame.expect("the event stream failed").into_data() {
                self.buf.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
    }

    /// Every event up to and including `end`; fails if the stream closes before it.
    async fn until_end(&mut self) -> Vec<Sse> {
        let mut out = Vec::new();
        loop {
            let e = self
                .next()
                .await
                .expect("the stream closed before its end event");
            let end = e.event == "end";
            out.push(e);
            if end {
                return out;
            }
        }
    }
}

/// `x` as the JSON parser reads the shortest decimal that prints it: equal to a parsed
/// value exactly when the server printed the same f64.
fn exact(x: f64) -> Value {
    serde_json::from_str(&serde_json::to_string(&x).unwrap()).unwrap()
}

fn quick_spec(name: &str, epochs: u32) -> pb::JobSpec {
    let mut s = spec(600, 3, epochs);
    s.name = name.into();
    s.report_every = 4;
    s
}

/// A job that stays RUNNING until it is cancelled.
fn long_spec(name: &str) -> pb::JobSpec {
    let mut s = spec(4000, 3, 500);
    s.name = name.into();
    s.report_every = 1;
    s
}

async fn submit(c: &mut TrainerClient<Channel>, s: pb::JobSpec) -> String {
    c.submit_job(request(s)).await.unwrap().into_inner().id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_listed_got_and_filtered_as_grpc_shows_them() {
    let server = TestServer::start(2).await;
    let mut c = server.client().await;
    let http = Http::of(&server);
    let alpha = common::train(&mut c, quick_spec("alpha-run", 2)).await;
    let beta = common::train(&mut c, quick_spec("beta-run", 1)).await;
    let alpha = common::succeeded_job(&mut c, &alpha).await;
    let beta = common::succeeded_job(&mut c, &beta).await;

    let all = http.get("/api/jobs").await;
    let ids: Vec<&str> = all["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [alpha.id.as_str(), beta.id.as_str()], "oldest first");
    assert!(all.get("next_page_token").is_none(), "{all}");

    let job = http.get(&format!("/api/jobs/{}", alpha.id)).await;
    assert_eq!(job["name"], "alpha-run");
    assert_eq!(job["kind"], "training");
    assert_eq!(job["status"], "SUCCEEDED");
    assert_eq!(job["epochs_completed"], alpha.epochs_completed);
    assert_eq!(job["epochs_total"], 2);
    assert_eq!(job["progress"], 1.0);
    assert_eq!(job["labels"], serde_json::json!(alpha.labels));
    assert_eq!(job["parameter_count"], alpha.parameter_count);
    assert_eq!(job["best"]["epoch"], alpha.best_epoch);
    assert_eq!(job["best"]["metric"], "loss");
    assert_eq!(job["spec"]["epochs"], 2);
    assert_eq!(
        job["last_epoch"]["validation_loss"],
        exact(
            alpha
                .last_epoch
                .as_ref()
                .unwrap()
                .validation
                .as_ref()
                .unwrap()
                .loss
        )
    );

    let by_name = http.get("/api/jobs?name=beta").await;
    assert_eq!(by_name["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(by_name["jobs"][0]["id"], beta.id.as_str());
    let done = http.get("/api/jobs?status=SUCCEEDED,FAILED").await;
    assert_eq!(done["jobs"].as_array().unwrap().len(), 2);
    let running = http.get("/api/jobs?status=running").await;
    assert_eq!(running["jobs"].as_array().unwrap().len(), 0);

    let first = http.get("/api/jobs?page_size=1").await;
    assert_eq!(first["jobs"][0]["id"], alpha.id.as_str());
    let token = first["next_page_token"].as_str().unwrap();
    let second = http
        .get(&format!("/api/jobs?page_size=1&page_token={token}"))
        .await;
    assert_eq!(second["jobs"][0]["id"], beta.id.as_str());
    assert!(second.get("next_page_token").is_none(), "{second}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_json_errors_naming_the_field_and_the_fix() {
    let server = TestServer::start(1).await;
    let http = Http::of(&server);

    let e = http.error("GET", "/api/jobs/no-such-job", 404).await;
    assert!(e.contains("no-such-job") && e.contains("list jobs"), "{e}");
    let e = http
        .error("POST", "/api/jobs/no-such-job/cancel", 404)
        .await;
    assert!(e.contains("no-such-job"), "{e}");
    let e = http.error("GET", "/api/jobs/no-such-job/events", 404).await;
    assert!(e.contains("no-such-job"), "{e}");
    let e = http
        .error("GET", "/api/jobs/no-such-job/model?format=torchscript", 404)
        .await;
    assert!(e.contains("no-such-job"), "{e}");

    let e = http.error("GET", "/api/jobs?status=DONE", 400).await;
    assert!(
        e.starts_with("status: 'DONE' is not a job status") && e.contains("SUCCEEDED"),
        "{e}"
    );
    let e = http.error("GET", "/api/jobs?page_size=0", 400).await;
    assert!(
        e.starts_with("page_size:") && e.contains("1 to 1000"),
        "{e}"
    );
    let e = http.error("GET", "/api/jobs?page_token=xyz", 400).await;
    assert!(e.starts_with("page_token:"), "{e}");
    let e = http.error("GET", "/api/jobs?colour=red", 400).await;
    assert!(
        e.starts_with("colour:") && e.contains("status, name"),
        "{e}"
    );
    let e = http.error("GET", "/api/nothing-here", 404).await;
    assert!(
        e.contains("/api/nothing-here") && e.contains("README"),
        "{e}"
    );

    let mut c = server.client().await;
    let id = submit(&mut c, quick_spec("queued", 1)).await;
    let e = http
        .error("GET", &format!("/api/jobs/{id}/events?from_seq=first"), 400)
        .await;
    assert!(e.starts_with("from_seq: 'first' is not a seq"), "{e}");
    let resp = http
        .send(
            "GET",
            &format!("/api/jobs/{id}/events"),
            &[("Last-Event-ID", "x7")],
        )
        .await;
    assert_eq!(resp.status(), 400);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("Last-Event-ID: 'x7'"),
        "{body}"
    );
    let e = http
        .error("GET", &format!("/api/jobs/{id}/model"), 400)
        .await;
    assert!(e.starts_with("format: is required"), "{e}");
    let e = http
        .error("GET", &format!("/api/jobs/{id}/model?format=onnx"), 400)
        .await;
    assert!(e.contains("torchscript or safetensors"), "{e}");
    let e = http
        .error(
            "GET",
            &format!("/api/jobs/{id}/model?format=torchscript&version=newest"),
            400,
        )
        .await;
    assert!(
        e.starts_with("version:") && e.contains("best or last"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_is_cancelled_over_http() {
    let server = TestServer::start(1).await;
    let mut c = server.client().await;
    let http = Http::of(&server);
    let running = submit(&mut c, long_spec("long")).await;
    let queued = submit(&mut c, long_spec("behind")).await;
    wait_for_status(&mut c, &running, pb::JobStatus::Running).await;

    let (status, job) = http
        .json("POST", &format!("/api/jobs/{queued}/cancel"))
        .await;
    assert_eq!(status, 200, "{job}");
    assert_eq!(
        job["status"], "CANCELLED",
        "a queued job is cancelled at once"
    );
    let e = http
        .error(
            "GET",
            &format!("/api/jobs/{queued}/model?format=torchscript"),
            409,
        )
        .await;
    assert!(
        !e.is_empty(),
        "a job without a finished epoch has no model to download"
    );
    let (status, job) = http
        .json("POST", &format!("/api/jobs/{running}/cancel"))
        .await;
    assert_eq!(status, 200, "{job}");
    wait_for_status(&mut c, &running, pb::JobStatus::Cancelled).await;
    let cancelled = http.get("/api/jobs?status=CANCELLED").await;
    assert_eq!(cancelled["jobs"].as_array().unwrap().len(), 2);
}

/// Files of a gRPC export, by name.
async fn grpc_export(
    c: &mut TrainerClient<Channel>,
    job: &str,
    format: pb::ExportFormat,
) -> HashMap<String, Vec<u8>> {
    let mut s = c
        .export_model(pb::ExportModelRequest {
            job_id: job.into(),
            model: pb::ModelVersion::Best as i32,
            format: format as i32,
        })
        .await
        .unwrap()
        .into_inner();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    while let Some(chunk) = s.message().await.unwrap() {
        match chunk.part.unwrap() {
            pb::export_chunk::Part::File(f) => files.push((f.name, Vec::new())),
            pb::export_chunk::Part::Data(d) => files.last_mut().unwrap().1.extend(d),
        }
    }
    files.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exported_model_downloads_and_loads_in_pytorch() {
    let server = TestServer::start(1).await;
    let mut c = server.client().await;
    let http = Http::of(&server);
    let events = common::train(&mut c, quick_spec("export", 2)).await;
    let job = common::succeeded_job(&mut c, &events).await;
    let dir = tempfile::tempdir().unwrap();

    let (status, headers, pt) = http
        .fetch(
            "GET",
            &format!("/api/jobs/{}/model?format=torchscript", job.id),
        )
        .await;
    assert_eq!(status, 200);
    let disposition = headers["content-disposition"].to_str().unwrap();
    assert!(disposition.starts_with("attachment; filename=") && disposition.contains("model.pt"));
    assert_eq!(&pt[..2], b"PK", "a TorchScript file is a zip archive");
    std::fs::write(dir.path().join("model.pt"), &pt).unwrap();

    let (status, headers, tar) = http
        .fetch(
            "GET",
            &format!("/api/jobs/{}/model?format=safetensors&version=best", job.id),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/x-tar");
    let tar_path = dir.path().join("model.tar");
    std::fs::write(&tar_path, &tar).unwrap();
    // The archive is read by GNU tar, as a user's shell would.
    let out = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&tar_path)
        .arg("-C")
        .arg(dir.path())
        .output()
        .expect("tar is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let grpc = grpc_export(&mut c, &job.id, pb::ExportFormat::Safetensors).await;
    let mut names: Vec<&String> = grpc.keys().collect();
    names.sort();
    assert_eq!(names, ["model.safetensors", "model_card.json"]);
    for (name, bytes) in &grpc {
        let got = std::fs::read(dir.path().join(name)).unwrap();
        assert!(
            got == *bytes,
            "{name}: the download differs from ExportModel's"
        );
    }

    // Both downloads load in PyTorch and answer like Predict.
    let rows: Vec<Vec<f32>> = (0..16)
        .map(|i| {
            (0..8)
                .map(|j| ((i * 7 + j * 3) % 11) as f32 / 3.0 - 1.5)
                .collect()
        })
        .collect();
    let rows_path = dir.path().join("rows.json");
    std::fs::write(&rows_path, serde_json::to_vec(&rows).unwrap()).unwrap();
    let out_path = dir.path().join("out.json");
    let p = |name: &str| dir.path().join(name);
    common::run_reference(
        "check_export.py",
        &[
            &p("model.pt"),
            &p("model.safetensors"),
            &p("model_card.json"),
            &rows_path,
            &out_path,
        ],
    );
    let out: Value = serde_json::from_slice(&std::fs::read(&out_path).unwrap()).unwrap();
    let predicted = c
        .predict(pb::PredictRequest {
            job_id: job.id.clone(),
            rows: rows
                .iter()
                .map(|r| pb::FeatureRow { values: r.clone() })
                .collect(),
            model: 0,
        })
        .await
        .unwrap()
        .into_inner();
    for format in ["torchscript", "safetensors"] {
        for (i, want) in predicted.predictions.iter().enumerate() {
            for (j, a) in want.probabilities.iter().enumerate() {
                let b = out[format][i][j].as_f64().unwrap();
                assert!(
                    (f64::from(*a) - b).abs() <= 1e-5,
                    "{format}: row {i} class {j}: Predict {a}, PyTorch {b}"
                );
            }
        }
    }
}

/// `events` as their seqs.
fn seqs(events: &[Sse]) -> Vec<u64> {
    events.iter().filter_map(|e| e.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_resumes_after_a_dropped_connection_with_the_exact_remaining_events() {
    let server = TestServer::start(1).await;
    let mut c = server.client().await;
    let http = Http::of(&server);
    let id = submit(&mut c, quick_spec("resume", 3)).await;
    let path = format!("/api/jobs/{id}/events");

    // Read a few events of the running job, then drop the connection.
    let mut first = http.events(&path, &[]).await;
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let e = first.next().await.expect("the stream ended early");
        assert_eq!(e.event, "message");
        seen.push(e);
    }
    drop(first);

    // Reconnect as a browser does, with the id of the last event received.
    let last = seen.last().unwrap().id.unwrap().to_string();
    let rest = http
        .events(&path, &[("Last-Event-ID", last.as_str())])
        .await
        .until_end()
        .await;
    let (end, rest) = rest.split_last().unwrap();
    assert_eq!(end.event, "end");
    let joined: Vec<Sse> = seen.iter().chain(rest).cloned().collect();
    let n = joined.len() as u64;
    assert_eq!(
        seqs(&joined),
        (1..=n).collect::<Vec<_>>(),
        "each seq once, in order"
    );
    assert_eq!(end.json()["status"], "SUCCEEDED");
    assert_eq!(end.json()["last_seq"], n);

    // The same events, payloads included, as a fresh full read and as gRPC's WatchJob.
    let full = http.events(&path, &[]).await.until_end().await;
    assert_eq!(&full[..full.len() - 1], &joined[..]);
    let grpc = common::watch(&mut c, &id, 1).await;
    assert_eq!(grpc.len() as u64, n);
    for (sse, g) in joined.iter().zip(&grpc) {
        let e = sse.json();
        assert_eq!(e["seq"], g.seq);
        assert_eq!(e["run"], g.run);
        match g.kind.as_ref().unwrap() {
            pb::job_event::Kind::Status(s) => {
                assert_eq!(e["type"], "status");
                assert_eq!(
                    e["status"],
                    s.status().as_str_name().trim_start_matches("JOB_STATUS_")
                );
            }
            pb::job_event::Kind::Iteration(p) => {
                assert_eq!(e["type"], "iteration");
                assert_eq!(e["global_step"], p.global_step);
                assert_eq!(e["loss"], exact(p.loss));
            }
            pb::job_event::Kind::Epoch(ep) => {
                assert_eq!(e["type"], "epoch");
                assert_eq!(e["epoch"], ep.epoch);
                let v = ep.validation.as_ref().unwrap();
                let cm = &e["validation"]["confusion_matrix"]["counts"];
                assert_eq!(
                    *cm,
                    serde_json::json!(v.confusion_matrix.as_ref().unwrap().counts)
                );
                assert_eq!(e["validation"]["loss"], exact(v.loss));
            }
            other => panic!("unexpected event {other:?}"),
        }
    }

    // ?from_seq=K starts at K; after the last event only `end` comes.
    let from = http
        .events(&format!("{path}?from_seq=4"), &[])
        .await
        .until_end()
        .await;
    assert_eq!(&from[..from.len() - 1], &joined[3..]);
    let past = http
        .events(&path, &[("Last-Event-ID", &n.to_string())])
        .await
        .until_end()
        .await;
    assert_eq!(past.len(), 1);
    assert_eq!(past[0].event, "end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_streams_end_when_the_server_shuts_down() {
    let mut server = TestServer::start(1).await;
    let mut c = server.client().await;
    let http = Http::of(&server);
    let id = submit(&mut c, long_spec("shutdown")).await;
    wait_for_status(&mut c, &id, pb::JobStatus::Running).await;
    let mut stream = http.events(&format!("/api/jobs/{id}/events"), &[]).await;
    assert!(stream.next().await.is_some());
    server.server.begin_shutdown();
    // The stream closes (bounded by DEADLINE) without an `end`: the job is not over, it
    // resumes after a restart, and a browser reconnects then.
    let rest = bounded("the stream to close at shutdown", async {
        let mut rest = Vec::new();
        while let Some(e) = stream.next().await {
            rest.push(e);
        }
        rest
    })
    .await;
    assert!(rest.iter().all(|e| e.event == "message"), "{rest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_is_served_from_the_binary() {
    let server = TestServer::start(1).await;
    let http = Http::of(&server);
    let (status, headers, page) = http.fetch("GET", "/").await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let page = String::from_utf8(page).unwrap();
    for asset in ["/assets/app.js", "/assets/charts.js", "/assets/style.css"] {
        assert!(page.contains(asset), "{asset}");
        let (status, _, body) = http.fetch("GET", asset).await;
        assert_eq!(status, 200, "{asset}");
        assert!(!body.is_empty());
    }
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "nothing from the internet"
    );
    let (status, _, _) = http.fetch("GET", "/assets/nothing.js").await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ensembles_events_name_their_runs() {
    let server = TestServer::start(1).await;
    let mut c = server.client().await;
    let http = Http::of(&server);
    let mut s = quick_spec("bagging", 1);
    s.ensemble = Some(pb::Ensemble {
        kind: pb::EnsembleKind::BalancedBagging as i32,
        members: 2,
    });
    let events = common::train(&mut c, s).await;
    let job = common::succeeded_job(&mut c, &events).await;

    let view = http.get(&format!("/api/jobs/{}", job.id)).await;
    assert_eq!(view["epochs_total"], 2, "{view}");
    assert_eq!(view["epochs_completed"], job.epochs_completed);
    let sse = http
        .events(&format!("/api/jobs/{}/events", job.id), &[])
        .await
        .until_end()
        .await;
    let epochs: Vec<(u64, u64, bool)> = sse
        .iter()
        .filter(|e| e.event == "message")
        .map(Sse::json)
        .filter(|e| e["type"] == "epoch")
        .map(|e| {
            (
                e["run"].as_u64().unwrap(),
                e["epoch"].as_u64().unwrap(),
                e["ensemble"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(epochs, [(1, 1, false), (2, 1, false), (0, 1, true)]);
    let iteration_runs: std::collections::BTreeSet<u64> = sse
        .iter()
        .filter(|e| e.event == "message")
        .map(Sse::json)
        .filter(|e| e["type"] == "iteration")
        .map(|e| e["run"].as_u64().unwrap())
        .collect();
    assert_eq!(iteration_runs, [1, 2].into());
}
