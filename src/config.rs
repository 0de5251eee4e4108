//! Server settings. Each has a built-in default, can be set by an environment variable
//! `GRADSTREAM_*`, and a command-line flag overrides both.

use std::path::PathBuf;
use std::time::Duration;

use tch::Device;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Built-in defaults of the settings that have one, shared by the flags and `local`.
pub const DEFAULT_MAX_DATASET_BYTES: u64 = 1 << 30;
pub const DEFAULT_MAX_MODEL_BYTES: u64 = 256 << 20;
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 30;
pub const DEFAULT_MAX_IN_MEMORY_DATASET_BYTES: u64 = 512 << 20;

/// `gradstream serve` settings.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// Address to listen on; port 0 picks a free port (the log says which).
    #[arg(long, env = "GRADSTREAM_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: String,
    /// Address of the HTTP server beside gRPC (the browser dashboard, its JSON + SSE API,
    /// /metrics); port 0 picks a free port (the log says which); `off` serves no HTTP.
    #[arg(long, env = "GRADSTREAM_HTTP_LISTEN", default_value = "127.0.0.1:8080")]
    pub http_listen: String,
    /// CSV datasets named in job specs are read from under this directory.
    #[arg(long, env = "GRADSTREAM_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Where the server keeps its state; created if missing.
    #[arg(long, env = "GRADSTREAM_STATE_DIR", default_value = ".state")]
    pub state_dir: PathBuf,
    /// Jobs that train at the same time; the rest wait QUEUED in submission order.
    #[arg(long, env = "GRADSTREAM_MAX_CONCURRENT_JOBS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub max_concurrent_jobs: u16,
    /// Device to train on: auto picks CUDA when available, else CPU.
    #[arg(long, env = "GRADSTREAM_DEVICE", value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Log line format (the level comes from RUST_LOG, default info).
    #[arg(long, env = "GRADSTREAM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Largest dataset upload accepted, in bytes (default 1 GiB).
    #[arg(long, env = "GRADSTREAM_MAX_DATASET_BYTES", default_value_t = DEFAULT_MAX_DATASET_BYTES)]
    pub max_dataset_bytes: u64,
    /// A stored dataset (NumPy, IDX) whose features take more bytes than this is streamed
    /// from its shards with bounded memory instead of loaded (default 512 MiB).
    #[arg(long, env = "GRADSTREAM_MAX_IN_MEMORY_DATASET_BYTES", default_value_t = DEFAULT_MAX_IN_MEMORY_DATASET_BYTES)]
    pub max_in_memory_dataset_bytes: u64,
    /// Largest TorchScript model upload accepted, in bytes (default 256 MiB).
    #[arg(long, env = "GRADSTREAM_MAX_MODEL_BYTES", default_value_t = DEFAULT_MAX_MODEL_BYTES)]
    pub max_model_bytes: u64,
    /// libtorch intra-op threads (shared by all jobs); 0 = auto: the CPU cores divided among
    /// the concurrent jobs, less one core kept for the service itself (streams, metrics), at
    /// least 1.
    #[arg(long, env = "GRADSTREAM_TORCH_THREADS", default_value_t = 0)]
    pub torch_threads: u16,
    /// Seconds to wait for running jobs to stop on SIGTERM/SIGINT.
    #[arg(long, env = "GRADSTREAM_SHUTDOWN_GRACE", default_value_t = DEFAULT_SHUTDOWN_GRACE_SECS)]
    pub shutdown_grace: u64,
    /// Export OpenTelemetry traces (a span per RPC, per job run and per epoch) over
    /// OTLP/gRPC to this collector URL, such as http://127.0.0.1:4317; none by default.
    #[arg(long, env = "GRADSTREAM_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Write TensorBoard event files for every job under this directory (one folder per
    /// job; `tensorboard --logdir DIR` shows them); none by default.
    #[arg(long, env = "GRADSTREAM_TENSORBOARD_DIR")]
    pub tensorboard_dir: Option<PathBuf>,
}

impl ServeConfig {
    /// The defaults, on the CPU, listening on a free port of 127.0.0.1: a server for tests,
    /// benchmarks and embedding, independent of any GRADSTREAM_* variable.
    pub fn local(data_dir: PathBuf, state_dir: PathBuf) -> Self {
        Self {
            listen: "127.0.0.1:0".into(),
            http_listen: "127.0.0.1:0".into(),
            data_dir,
            state_dir,
            max_concurrent_jobs: 1,
            device: DeviceChoice::Cpu,
            log_format: LogFormat::Text,
            max_dataset_bytes: DEFAULT_MAX_DATASET_BYTES,
            max_model_bytes: DEFAULT_MAX_MODEL_BYTES,
            max_in_memory_dataset_bytes: DEFAULT_MAX_IN_MEMORY_DATASET_BYTES,
            torch_threads: 0,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE_SECS,
            otlp_endpoint: None,
            tensorboard_dir: None,
        }
    }

    /// The HTTP address to bind, or `None` when HTTP is off.
    pub fn http_listen(&self) -> Option<&str> {
        let addr = self.http_listen.trim();
        (!addr.is_empty() && !addr.eq_ignore_ascii_case("off")).then_some(addr)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace)
    }

    /// The intra-op thread count to give libtorch, resolving `0` (auto) for `cores` CPUs.
    pub fn torch_threads_for(&self, cores: usize) -> usize {
        match self.torch_threads {
            0 => (cores / usize::from(self.max_concurrent_jobs.max(1)))
                .saturating_sub(1)
                .max(1),
            n => usize::from(n),
        }
    }
}

/// Which device jobs train on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    /// CUDA when available, else CPU.
    Auto,
    Cpu,
    Cuda,
}

impl DeviceChoice {
    /// The device to use, or why it cannot be used.
    pub fn resolve(self) -> Result<Device, String> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Auto => Ok(Device::cuda_if_available()),
            Self::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
            Self::Cuda => Err(
                "--device cuda was asked for but no CUDA device is available; use --device auto or cpu"
                    .into(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeConfig,
    }

    #[test]
    fn defaults_load() {
        let c = Cli::try_parse_from(["gradstream"]).unwrap().serve;
        assert_eq!(c.listen, "127.0.0.1:50051");
        assert_eq!(c.http_listen(), Some("127.0.0.1:8080"));
        assert_eq!(c.data_dir, PathBuf::from("data"));
        assert_eq!(c.max_concurrent_jobs, 1);
        assert_eq!(c.device, DeviceChoice::Auto);
        assert_eq!(c.shutdown_grace(), Duration::from_secs(30));
        assert_eq!(c.torch_threads, 0);
        assert_eq!(
            (c.otlp_endpoint.as_deref(), c.tensorboard_dir.as_deref()),
            (None, None)
        );
        // `local` differs from the flags' defaults only where it says so.
        let l = ServeConfig::local(c.data_dir.clone(), c.state_dir.clone());
        assert_eq!(
            (
                l.max_concurrent_jobs,
                l.log_format,
                l.max_dataset_bytes,
                l.max_model_bytes,
                l.torch_threads,
                l.shutdown_grace
            ),
            (
                c.max_concurrent_jobs,
                c.log_format,
                c.max_dataset_bytes,
                c.max_model_bytes,
                c.torch_threads,
                c.shutdown_grace
            )
        );
        // Auto: one core kept for the service, the rest shared by the job slots.
        assert_eq!(c.torch_threads_for(2), 1);
        assert_eq!(c.torch_threads_for(16), 15);
        assert_eq!(c.torch_threads_for(1), 1);
    }

    #[test]
    fn flags_override_defaults_and_zero_slots_is_refused() {
        let c = Cli::try_parse_from([
            "gradstream",
            "--max-concurrent-jobs",
            "3",
            "--device",
            "cpu",
        ])
        .unwrap()
        .serve;
        assert_eq!(c.max_concurrent_jobs, 3);
        assert_eq!(c.device, DeviceChoice::Cpu);
        assert!(Cli::try_parse_from(["gradstream", "--max-concurrent-jobs", "0"]).is_err());
    }
}
