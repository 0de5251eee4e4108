//! The dashboard in a real browser: headless Debian Chromium driven by `playwright-core`
//! (`tests/browser/dashboard.mjs`) against the real server on 127.0.0.1 port 0. What the
//! page shows is checked against the job's events read over gRPC.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{DEADLINE, TestServer, bounded, get_job, request, spec, wait_for_status};
use gradstream::transport::pb;
use serde_json::Value;

const CHROMIUM: &str = "/usr/bin/chromium";

/// What the driver needs, or a failure saying how to install it (never a silent pass).
fn driver() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let how = "install them with `sudo apt-get install chromium nodejs npm`, then run `make setup` \
               (it runs `npm ci` in tests/browser with PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1)";
    assert!(
        Path::new(CHROMIUM).exists(),
        "the browser test needs Chromium at {CHROMIUM}; {how}"
    );
    assert!(
        Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "the browser test needs node on PATH; {how}"
    );
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "the browser test needs playwright-core in tests/browser/node_modules; {how}"
    );
    dir.join("dashboard.mjs")
}

/// A job that keeps running (and reporting every iteration) until it is cancelled.
fn running_spec(name: &str) -> pb::JobSpec {
    let mut s = spec(6000, 3, 3000);
    s.name = name.into();
    s.report_every = 5;
    s
}

/// Runs the driver under [`DEADLINE`]; its JSON result, or a failure with its output.
fn run_driver(script: &Path, args: &[String]) -> Value {
    let mut child = Command::new("node")
        .arg(script)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start node");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > DEADLINE {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut out = String::new();
    let mut err = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    match status {
        Some(s) if s.success() => serde_json::from_str(out.trim().lines().last().unwrap_or(""))
            .unwrap_or_else(|e| panic!("the driver printed no result ({e}):\n{out}\n{err}")),
        Some(s) => panic!("the browser driver failed ({s}):\n{out}\n{err}"),
        None => panic!("the browser driver ran past {DEADLINE:?}:\n{out}\n{err}"),
    }
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// `xs` as the JSON parser reads their shortest decimals (the page prints numbers the
/// same way): equal to parsed values exactly when they are the same f64s.
fn exact(xs: &[f64]) -> Value {
    serde_json::from_str(&serde_json::to_string(xs).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_live_job_and_cancels_one_in_chromium() {
    let script = driver();
    let server = TestServer::start(2).await;
    let mut c = server.client().await;
    let mut ids = Vec::new();
    for name in ["watched", "to-cancel"] {
        let job = c.submit_job(request(running_spec(name))).await.unwrap();
        let id = job.into_inner().id;
        wait_for_status(&mut c, &id, pb::JobStatus::Running).await;
        ids.push(id);
    }
    let [watched, doomed] = <[String; 2]>::try_from(ids).unwrap();

    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser");
    std::fs::create_dir_all(&shots).unwrap();
    let base = format!("http://{}", server.server.http_addr.unwrap());
    let args = [
        base,
        watched.clone(),
        doomed.clone(),
        shots.display().to_string(),
    ];
    let shown = tokio::task::spawn_blocking(move || run_driver(&script, &args))
        .await
        .unwrap();

    // The loss chart gained points while the page watched.
    assert!(
        shown["after"].as_f64() > shown["before"].as_f64(),
        "{shown}"
    );
    assert!(shown["before"].as_f64().unwrap() > 0.0, "{shown}");

    // The confusion matrix and the curves are the job's own numbers for that epoch.
    let (run, epoch) = (
        shown["run"].as_u64().unwrap(),
        shown["epoch"].as_u64().unwrap(),
    );
    assert_eq!(shown["split"], "validation");
    let mut events = common::watch_stream(&mut c, &watched, 1).await;
    let recorded = bounded("the shown epoch's event over gRPC", async {
        loop {
            let e = events.message().await.unwrap().expect("the stream ended");
            if let Some(pb::job_event::Kind::Epoch(ep)) = e.kind
                && u64::from(e.run) == run
                && u64::from(ep.epoch) == epoch
            {
                return ep;
            }
        }
    })
    .await;
    let v = recorded.validation.unwrap();
    let cm = v.confusion_matrix.unwrap();
    let want: Vec<f64> = cm.counts.iter().map(|&n| n as f64).collect();
    assert_eq!(numbers(&shown["counts"]), want, "{shown}");
    assert_eq!(
        numbers(&shown["shownCounts"]),
        want,
        "the cells' text: {shown}"
    );
    let k = cm.labels.len();
    let fractions = numbers(&shown["fractions"]);
    for r in 0..k {
        let row: f64 = fractions[r * k..(r + 1) * k].iter().sum();
        assert!(
            (row - 1.0).abs() < 0.01,
            "row {r} of the normalised view: {fractions:?}"
        );
    }
    let aucs: Vec<f64> = v.per_class.iter().map(|c| c.roc_auc.unwrap()).collect();
    assert_eq!(shown["aucs"], exact(&aucs), "{shown}");
    let aps: Vec<f64> = v
        .curves
        .iter()
        .map(|c| c.pr.as_ref().unwrap().average_precision)
        .collect();
    assert_eq!(shown["aps"], exact(&aps), "{shown}");
    assert!(shown["rocPoints"].as_f64().unwrap() > 0.0, "{shown}");

    // 100,000 iterations and 1,000 epochs: old points thinned, the newest 1,000 exact, drawn.
    let h = &shown["history"];
    assert_eq!(h["received"], 100_000, "{h}");
    assert!(h["kept"].as_u64() <= h["max"].as_u64(), "{h}");
    assert_eq!(h["tailExact"], true, "{h}");
    assert_eq!(h["drawnPoints"], 101_000, "{h}");

    // The job cancelled from the page is CANCELLED; the watched one still runs.
    assert_eq!(
        get_job(&mut c, &doomed).await.status(),
        pb::JobStatus::Cancelled
    );
    assert_eq!(
        get_job(&mut c, &watched).await.status(),
        pb::JobStatus::Running
    );
    for shot in ["job.png", "jobs.png", "compare.png"] {
        let len = std::fs::metadata(shots.join(shot)).map_or(0, |m| m.len());
        assert!(len > 0, "no screenshot {shot} in {}", shots.display());
    }
    c.cancel_job(pb::CancelJobRequest { job_id: watched })
        .await
        .unwrap();
}
