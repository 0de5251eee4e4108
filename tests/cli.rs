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
    // Keep reading while the server stops: a watcher whose stdout pipe is full stops
    // reading its stream, and the server's graceful shutdown would wait on it.
    let rest = std::thread::spawn(move || {
        lines
            .map(|l| serde_json::from_str::<Value>(&l.unwrap()).unwrap())
            .collect::<Vec<_>>()
    });
    let (status, log) = server.terminate();
    assert!(status.success(), "exit status {status:?}");
    seen.extend(rest.join().unwrap());
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
        .args(["serve", "--listen", &addr, "--http-listen", "127.0.0.1:0"])
        .args(["--device", "cpu", "--state-dir"])
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
                "--http-listen",
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

#[test]
fn model_commands_predict_evaluate_plot_and_export() {
    let server = Server::start();
    let data = server._dirs.0.path();
    let mut csv = String::from("x1,x2,label\n");
    for i in 0..200 {
        let y = i % 2;
        csv.push_str(&format!(
            "{},{},{}\n",
            (i % 7) as f64 / 7.0 + y as f64,
            (i % 5) as f64 - y as f64,
            ["no", "yes"][y]
        ));
    }
    std::fs::write(data.join("train.csv"), &csv).unwrap();
    let out = server.cli(&[
        "train",
        "--json",
        "--csv",
        "train.csv",
        "--epochs",
        "3",
        "--hidden",
        "8",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let job_id = json_lines(&out)[0]["job_id"].as_str().unwrap().to_string();
    let local = data.join("train.csv");
    let local = local.to_str().unwrap();

    // predict: CSV out, one line per row plus a header; the label column is ignored.
    let out = server.cli(&["predict", "--job", &job_id, local]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "row,label,class_index,p_no,p_yes");
    assert_eq!(lines.len(), 201);
    let fields: Vec<&str> = lines[1].split(',').collect();
    let (p0, p1): (f64, f64) = (fields[3].parse().unwrap(), fields[4].parse().unwrap());
    assert!((p0 + p1 - 1.0).abs() < 1e-5, "{}", lines[1]);
    let json = json_lines(&server.cli(&["predict", "--json", "--job", &job_id, local]));
    assert_eq!(json.len(), 200);
    assert_eq!(json[0]["probabilities"].as_array().unwrap().len(), 2);
    // A bad value is named by file, line and column.
    let bad = data.join("bad.csv");
    std::fs::write(&bad, "x1,x2\n1,2\n3,oops\n").unwrap();
    let out = server.cli(&["predict", "--job", &job_id, bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.csv:3:2: 'oops' in column 'x2' is not a number"),
        "{err}"
    );

    // evaluate a local file, with a target recall and plots.
    let plots = data.join("plots");
    let out = server.cli(&[
        "evaluate",
        "--job",
        &job_id,
        "--file",
        local,
        "--target-recall",
        "0.8",
        "--plot",
        plots.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    for want in [
        "evaluated 200 rows",
        "evaluation confusion matrix",
        "balanced accuracy",
        "best F1",
        "target recall",
        "roc.svg",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    for name in ["roc.svg", "pr.svg"] {
        let svg = std::fs::read_to_string(plots.join(name)).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("<polyline"),
            "{name}: {svg:.200}"
        );
    }
    // evaluate a server-side CSV, as JSON.
    let e =
        &json_lines(&server.cli(&["evaluate", "--json", "--job", &job_id, "--csv", "train.csv"]))
            [0];
    assert_eq!(e["rows"], 200);
    // Its accuracy is the share of rows whose `predict` label is the row's label.
    let correct = json
        .iter()
        .enumerate()
        .filter(|(i, p)| p["label"] == ["no", "yes"][i % 2])
        .count();
    assert_eq!(
        e["metrics"]["accuracy"].as_f64().unwrap(),
        correct as f64 / 200.0
    );
    assert_eq!(e["curves"].as_array().unwrap().len(), 2);

    // export both formats.
    // The CLI creates the output folder.
    let out_dir = data.join("export");
    let pt = out_dir.join("m.pt");
    let out = server.cli(&[
        "export",
        "--job",
        &job_id,
        "--format",
        "torchscript",
        "-o",
        pt.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout(&out).contains("sha256"));
    assert!(std::fs::metadata(&pt).unwrap().len() > 1000);
    let st = out_dir.join("m.safetensors");
    let out = server.cli(&[
        "export",
        "--json",
        "--job",
        &job_id,
        "--format",
        "safetensors",
        "--model",
        "last",
        "-o",
        st.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files = json_lines(&out);
    assert_eq!(files.len(), 2);
    let card: Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("model_card.json")).unwrap()).unwrap();
    assert_eq!(card["model_version"], "last");
    assert_eq!(card["epoch"], 3);
    assert_eq!(card["labels"], serde_json::json!(["no", "yes"]));
    assert!(std::fs::metadata(&st).unwrap().len() > 100);
}

#[test]
fn lr_find_draws_the_curve_and_cnn_flags_train_a_cnn() {
    let server = Server::start();
    let out = server.cli(&["lr-find", "--samples", "600", "--iterations", "60"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    assert!(text.contains("suggested learning rate:"), "{text}");
    assert!(text.contains('*') && text.contains("loss/lr"), "{text}");
    let json = json_lines(&server.cli(&[
        "lr-find",
        "--json",
        "--samples",
        "600",
        "--iterations",
        "20",
    ]));
    assert_eq!(json.len(), 21, "20 points then the result");
    assert!(json[20]["suggested_learning_rate"].as_f64().unwrap() > 0.0);

    // 16 synthetic features read as a 1x4x4 image.
    let out = server.cli(&[
        "train",
        "--json",
        "--samples",
        "400",
        "--features",
        "16",
        "--epochs",
        "1",
        "--input-shape",
        "1,4,4",
        "--conv",
        "4,8",
        "--hidden",
        "8",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = json_lines(&out);
    assert_eq!(events.last().unwrap()["status"]["status"], "SUCCEEDED");
    let job_id = events[0]["job_id"].as_str().unwrap().to_string();
    let job = &json_lines(&server.cli(&["jobs", "get", "--json", &job_id]))[0];
    // conv 1*4*9+4, conv 4*8*9+8, dense 8*8+8 (1x1 map after two 2x2 pools), head 8*3+3.
    assert_eq!(job["parameter_count"], 40 + 296 + 72 + 27);
    let out = server.cli(&["train", "--input-shape", "1,4", "--features", "16"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("CHANNELS,HEIGHT,WIDTH"));
}

#[test]
fn models_commands_upload_a_torchscript_module_that_train_then_trains() {
    let server = Server::start();
    let (dir, _) = common::torchscript::torchscript_modules();
    let file = dir.path().join("mlp.pt");
    let out = server.cli(&["models", "upload", "--json", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info = &json_lines(&out)[0];
    let id = info["id"].as_str().unwrap().to_string();
    assert_eq!(info["name"], "mlp.pt");
    // fc1 8x32+32, bn 32+32, fc2 32x3+3.
    assert_eq!(info["parameter_count"], 288 + 64 + 99);
    let text = stdout(&server.cli(&["models", "list"]));
    assert!(
        text.contains(&id) && text.contains("fc1.weight[32x8]"),
        "{text}"
    );

    let out = server.cli(&[
        "train",
        "--json",
        "--samples",
        "400",
        "--features",
        "8",
        "--classes",
        "3",
        "--epochs",
        "2",
        "--torchscript",
        &id,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = json_lines(&out);
    assert_eq!(events.last().unwrap()["status"]["status"], "SUCCEEDED");
    let job_id = events[0]["job_id"].as_str().unwrap().to_string();
    let job = &json_lines(&server.cli(&["jobs", "get", "--json", &job_id]))[0];
    assert_eq!(job["parameter_count"], 288 + 64 + 99);

    // A module that does not fit the data: a clear refusal, exit code 1 or more.
    let out = server.cli(&["train", "--features", "5", "--torchscript", &id]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("spec.model.torchscript") && err.contains("[2, 5]"),
        "{err}"
    );
    let out = server.cli(&[
        "models",
        "upload",
        dir.path().join("state_dict.pt").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a TorchScript module"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = server.cli(&["models", "delete", &id]);
    assert!(out.status.success());
    assert!(stdout(&out).contains(&format!("deleted {id}")));
    let out = server.cli(&["models", "get", &id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("NotFound"));
}
