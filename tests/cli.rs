//! The real binary as a user runs it: `serve` in its own process (port 0, address read from
//! its log), the client commands against it, and SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_gradstream");

struct Server {
    child: Child,
    url: String,
    log: mpsc::Receiver<String>,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl Server {
    /// Starts `gradstream serve`, configured through GRADSTREAM_* variables, and waits for
    /// its `listening on ADDR` line.
    fn start() -> Self {
        let data = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let mut child = Command::new(BIN)
            .arg("serve")
            .env("GRADSTREAM_LISTEN", "127.0.0.1:0")
            .env("GRADSTREAM_DATA_DIR", data.path())
            .env("GRADSTREAM_STATE_DIR", state.path().join("nested"))
            .env("GRADSTREAM_DEVICE", "cpu")
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, log) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let addr = loop {
            let line = log.recv().expect("server exited before listening");
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        assert!(state.path().join("nested").is_dir(), "state dir created");
        Self {
            child,
            url: format!("http://{addr}"),
            log,
            _dirs: (data, state),
        }
    }

    fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .args(["--server", &self.url])
            .output()
            .unwrap()
    }

    fn terminate(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = self.child.wait().unwrap();
        (status, self.log.iter().collect())
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

    // A long job is running when SIGTERM arrives: it is stopped, its stream ends, and the
    // process exits cleanly.
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
    assert_eq!(last["status"]["status"], "CANCELLED", "{last}");
    assert!(
        last["status"]["message"]
            .as_str()
            .unwrap()
            .contains("shutting down")
    );
    assert!(
        !watcher.wait().unwrap().success(),
        "a cancelled job's watch exits non-zero"
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
