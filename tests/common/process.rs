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
    /// The HTTP server's base URL (dashboard, JSON + SSE API), read from its log.
    pub http_url: String,
    log: mpsc::Receiver<String>,
}

impl ServerProcess {
    /// Starts `gradstream serve`, configured through GRADSTREAM_* variables, and waits for
    /// its `listening on ADDR` line.
    pub fn start(data_dir: &Path, state_dir: &Path) -> Self {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve");
        Self::spawn(cmd, data_dir, state_dir)
    }

    /// The same, with extra environment variables (`GRADSTREAM_OTLP_ENDPOINT`, ...).
    pub fn start_with_env(data_dir: &Path, state_dir: &Path, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve").envs(env.iter().copied());
        Self::spawn(cmd, data_dir, state_dir)
    }

    /// The same, with the state directory on a `size` tmpfs (`"8m"`) of its own: the
    /// server runs in a private user and mount namespace (`unshare`) where the tmpfs is
    /// mounted over `state_dir`. Outside, the tmpfs is reached through [`Self::root`].
    pub fn start_on_tmpfs(data_dir: &Path, state_dir: &Path, size: &str) -> Self {
        let mut cmd = Command::new("unshare");
        cmd.args(["--user", "--map-root-user", "--mount", "sh", "-c"])
            .arg(r#"mount -t tmpfs -o "size=$1" tmpfs "$2" && exec "$3" serve"#)
            .args(["sh", size])
            .arg(state_dir)
            .arg(BIN);
        Self::spawn(cmd, data_dir, state_dir)
    }

    /// `path` as this server sees it (through its mount namespace).
    pub fn root(&self, path: &Path) -> std::path::PathBuf {
        Path::new(&format!("/proc/{}/root", self.child.id())).join(path.strip_prefix("/").unwrap())
    }

    fn spawn(mut cmd: Command, data_dir: &Path, state_dir: &Path) -> Self {
        let mut child = cmd
            .env("GRADSTREAM_LISTEN", "127.0.0.1:0")
            .env("GRADSTREAM_HTTP_LISTEN", "127.0.0.1:0")
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
        let mut http_url = String::new();
        let addr = loop {
            let line = log.recv().expect("server exited before listening");
            if let Some(rest) = line.split("dashboard on ").nth(1) {
                let url = rest.split_whitespace().next().unwrap();
                http_url = url.trim_end_matches('/').to_string();
            }
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        Self {
            child,
            url: format!("http://{addr}"),
            http_url,
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

/// A test that ends (or fails) without stopping its server does not leave it running.
impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
