//! The real `gradstream serve` in its own process, on 127.0.0.1:0, its address read from
//! its log; stopped for real with a signal.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;

pub const BIN: &str = env!("CARGO_BIN_EXE_gradstream");

pub struct ServerProcess {
    child: Child,
    pub url: String,
    log: mpsc::Receiver<String>,
}

impl ServerProcess {
    /// Starts `gradstream serve`, configured through GRADSTREAM_* variables, and waits for
    /// its `listening on ADDR` line.
    pub fn start(data_dir: &Path, state_dir: &Path) -> Self {
        let mut child = Command::new(BIN)
            .arg("serve")
            .env("GRADSTREAM_LISTEN", "127.0.0.1:0")
            .env("GRADSTREAM_DATA_DIR", data_dir)
            .env("GRADSTREAM_STATE_DIR", state_dir)
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
        Self {
            child,
            url: format!("http://{addr}"),
            log,
        }
    }

    /// Runs a client command of the same binary against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .args(["--server", &self.url])
            .output()
            .unwrap()
    }

    /// Sends `signal` (e.g. "TERM", "KILL") and waits for the process to exit; returns its
    /// exit status and every log line it wrote.
    pub fn stop(mut self, signal: &str) -> (ExitStatus, Vec<String>) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{signal} {pid}");
        let status = self.child.wait().unwrap();
        (status, self.log.iter().collect())
    }
}
