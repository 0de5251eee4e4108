//! The real binary as a user runs it: `serve` in its own process (port 0, address read from
//! its log), the client commands against it, and SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

use common::process::{BIN, ServerProcess};
use serde_json::Value;

struct Server {
    process: ServerProcess,
    url: String,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl Server {
    fn start() -> Self {
        let data = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let process = ServerProcess::start(data.path(), &state.path().join("nested"));
        assert!(state.path().join("nested").is_dir(), "state dir created");
        Self {
            url: process.url.clone(),
            process,
            _dirs: (data, state),
        }
    }

    fn cli(&self, args: &[&str]) -> Output {
        self.process.cli(args)
    }

    fn terminate(self) -> (std::process::ExitStatus, Vec<String>) {
        self.process.stop("TERM")
    }
}

fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const SMALL: &[&str] = &[
    "--samples",
    "600",
    "--features",
    "4",
    "--classes",
    "2",
    "--epochs",
    "2",
    "--hidden",
    "8",
];

#[test]
fn client_commands_against_a_served_process_then_sigterm() {
    let server = Server::start();

    // train --json: one JSON object per event, seq 1..n, ending SUCCEEDED.
    let out = server.cli(&[&["train", "--json", "--name", "cli-json"], SMALL].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = json_lines(&out);
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());
    assert_eq!(events.last().unwrap()["status"]["status"], "SUCCEEDED");
    let epoch = events
        .iter()
        .rev()
        .find(|e| e.get("epoch").is_some())
        .unwrap();
    assert_eq!(epoch["epoch"]["epoch"], 2);
    assert_eq!(
        epoch["epoch"]["validation"]["confusion_matrix"]["labels"],
        serde_json::json!(["0", "1"])
    );
    let job_id = events[0]["job_id"].as_str().unwrap().to_string();

    // train for humans: progress, confusion matrix and per-class table each epoch.
    let out = server.cli(&[&["train"], SMALL].concat());
    assert!(out.status.success());
    let text = stdout(&out);
    assert_eq!(
        text.matches("validation confusion matrix").count(),
        2,
        "{text}"
    );
    assert!(
        text.contains("precision") && text.contains("SUCCEEDED"),
        "{text}"
    );

    // submit, then watch the whole history.
    let out = server.cli(&[&["submit", "--json"], SMALL].concat());
    let submitted = json_lines(&out);
    let id = submitted[0]["id"].as_str().unwrap().to_string();
    let watched = json_lines(&server.cli(&["watch", &id, "--json"]));
    assert_eq!(watched.first().unwrap()["status"]["status"], "QUEUED");
    assert_eq!(watched.last().unwrap()["status"]["status"], "SUCCEEDED");

    // jobs list / get.
    let listed = json_lines(&server.cli(&["jobs", "list", "--json"]));
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0]["id"], job_id.as_str());
    assert_eq!(listed[0]["name"], "cli-json");
    let text = stdout(&server.cli(&["jobs", "get", &job_id]));
    assert!(
        text.contains("SUCCEEDED") && text.contains("parameters:  58"),
        "{text}"
    );

    // datasets upload / list / get, training on it, delete.
    let file = server._dirs.0.path().join("upload-me.csv");
    let mut csv = String::from("x1,x2,label\n");
    for i in 0..200 {
        csv.push_str(&format!(
            "{},{},{}\n",
            i % 7,
            (i % 2) * 5,
            ["no", "yes"][i % 2]
        ));
    }
    std::fs::write(&file, &csv).unwrap();
    let out = server.cli(&[
        "datasets",
        "upload",
        "--json",
        "--name",
        "yesno",
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info = &json_lines(&out)[0];
    assert_eq!(
        (info["rows"].as_u64(), info["features"].as_u64()),
        (Some(200), Some(2))
    );
    assert_eq!(info["labels"], serde_json::json!(["no", "yes"]));
    let dataset_id = info["id"].as_str().unwrap().to_string();
    let listed = json_lines(&server.cli(&["datasets", "list", "--json"]));
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], dataset_id.as_str());
    let text = stdout(&server.cli(&["datasets", "get", &dataset_id]));
    assert!(
        text.contains("yesno") && text.contains("no:100 yes:100"),
        "{text}"
    );
    let out = server.cli(&[
        "train",
        "--json",
        "--epochs",
        "1",
        "--hidden",
        "4",
        "--dataset-id",
        &dataset_id,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        json_lines(&out).last().unwrap()["status"]["status"],
        "SUCCEEDED"
    );
    assert!(
        server
            .cli(&["datasets", "delete", &dataset_id])
            .status
            .success()
    );
    let out = server.cli(&["datasets", "get", &dataset_id]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("NotFound"));
    // A malformed file: the line and column, non-zero exit.
    std::fs::write(&file, "x1,label\n1,a\nb,a\n").unwrap();
    let out = server.cli(&["datasets", "upload", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("InvalidArgument") && err.contains("upload-me.csv:3:1:"),
        "{err}"
    );

    // A bad spec: non-zero exit, the field named on stderr.
    let out = server.cli(&["train", "--epochs", "0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("InvalidArgument") && err.contains("spec.epochs"),
        "{err}"
    );
    // An unknown id.
    let out = server.cli(&["cancel", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("NotFound"));

    // A long job is running when SIGTERM arrives: it goes back to QUEUED (to resume after a
    // restart), its stream ends cleanly, and the process exits cleanly.
    let long = server.cli(&[
        "submit",
        "--json",
        "--samples",
        "4000",
        "--epochs",
        "1000",
        "--report-every",
        "1",
    ]);
    let long_id = json_lines(&long)[0]["id"].as_str().unwrap().to_string();
    let mut watcher = Command::new(BIN)
        .args(["watch", &long_id, "--json", "--server", &server.url])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the watcher has seen the job train.
    let mut lines = BufReader::new(watcher.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
        let iteration = v.get("iteration").is_some();
        seen.push(v);
        if iteration {
            break;
        }
    }
    let (status, log) = server.terminate();
    assert!(status.success(), "exit status {status:?}");
    seen.extend(lines.map(|l| serde_json::from_str::<Value>(&l.unwrap()).unwrap()));
    let last = seen.last().unwrap();
    assert_eq!(last["status"]["status"], "QUEUED", "{last}");
    assert!(
        last["status"]["message"]
            .as_str()
            .unwrap()
            .contains("stopped by a server shutdown"),
        "{last}"
    );
    assert!(
        !watcher.wait().unwrap().success(),
        "an unfinished job's watch exits non-zero"
    );
    assert!(log.iter().any(|l| l.contains("SIGTERM")), "{log:?}");
    assert!(log.iter().any(|l| l.contains("server stopped")), "{log:?}");
}

#[test]
fn serve_refuses_a_missing_cuda_device_or_a_busy_port_clearly() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--listen", &addr, "--device", "cpu", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    if !tch::Cuda::is_available() {
        let out = Command::new(BIN)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--device",
                "cuda",
                "--state-dir",
            ])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("no CUDA device is available"));
    }
}
