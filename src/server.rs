//! Starting and stopping the whole server: bind, serve, and shut down in order (health
//! NOT_SERVING, stop accepting jobs, stop running jobs, end streams, close).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::ServeConfig;
use crate::jobs::{JobManager, JobsConfig};
use crate::store::Store;
use crate::transport::{self, ServeError};
use crate::{engine, http};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Device(String),
    #[error("cannot listen on {addr}: {source}; pick another {flag} address or port")]
    Bind {
        flag: &'static str,
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot open the state in {path}: {message}")]
    State { path: String, message: String },
    #[error("cannot create {what} {path}: {source}")]
    Dir {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
}

/// A server running on the current tokio runtime.
pub struct RunningServer {
    pub addr: SocketAddr,
    /// The HTTP server's address (dashboard, JSON + SSE API), unless HTTP is off.
    pub http_addr: Option<SocketAddr>,
    pub jobs: JobManager,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServeError>>,
    /// The HTTP server, which stops once the jobs are stopped.
    http_task: Option<JoinHandle<()>>,
}

/// How long a shutdown waits for HTTP requests in flight (downloads) after gRPC closed.
const HTTP_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

impl RunningServer {
    /// Graceful shutdown; returns when the server has closed.
    pub async fn shutdown(mut self) -> Result<(), ServeError> {
        self.begin_shutdown();
        self.wait().await
    }

    /// Waits until the server closes (after a shutdown).
    pub async fn wait(self) -> Result<(), ServeError> {
        let served = match self.task.await {
            Ok(r) => r,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        if let Some(http) = self.http_task
            && tokio::time::timeout(HTTP_DRAIN, http).await.is_err()
        {
            tracing::warn!("HTTP requests still open {HTTP_DRAIN:?} after the shutdown; closing");
        }
        served
    }

    /// Starts a graceful shutdown without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Binds and starts serving. `listening on ADDR` is logged once the socket is bound.
pub async fn start(config: &ServeConfig) -> Result<RunningServer, StartError> {
    let device = config.device.resolve().map_err(StartError::Device)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let torch_threads = config.torch_threads_for(cores);
    // Process-wide: libtorch has one intra-op pool setting for all jobs.
    tch::set_num_threads(torch_threads as i32);
    std::fs::create_dir_all(&config.state_dir).map_err(|source| StartError::Dir {
        what: "state directory",
        path: config.state_dir.display().to_string(),
        source,
    })?;
    if let Some(dir) = &config.tensorboard_dir {
        std::fs::create_dir_all(dir).map_err(|source| StartError::Dir {
            what: "TensorBoard directory (--tensorboard-dir)",
            path: dir.display().to_string(),
            source,
        })?;
    }
    let store = Arc::new(
        Store::open(&config.state_dir).map_err(|e| StartError::State {
            path: config.state_dir.display().to_string(),
            message: e.to_string(),
        })?,
    );
    let (listener, addr) = bind(&config.listen, "--listen").await?;
    let http_listener = match config.http_listen() {
        Some(http) => Some(bind(http, "--http-listen").await?),
        None => None,
    };
    let (jobs, recovered) = JobManager::open(
        JobsConfig {
            data_dir: config.data_dir.clone(),
            device,
            max_concurrent_jobs: usize::from(config.max_concurrent_jobs),
            max_dataset_bytes: config.max_dataset_bytes,
            max_model_bytes: config.max_model_bytes,
            datasets_dir: config.state_dir.join("datasets"),
            max_in_memory_dataset_bytes: config.max_in_memory_dataset_bytes,
            tensorboard_dir: config.tensorboard_dir.clone(),
        },
        store,
    )
    .map_err(|e| StartError::State {
        path: config.state_dir.display().to_string(),
        message: e.to_string(),
    })?;
    if recovered.jobs > 0 {
        tracing::info!(
            jobs = recovered.jobs,
            resuming = recovered.interrupted,
            queued = recovered.requeued,
            "recovered jobs from the state directory"
        );
    }
    let (health, health_service) = tonic_health::server::health_reporter();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    // Fired once the jobs are stopped: the HTTP server then closes as the gRPC one does.
    let (http_stop, http_stopped) = watch::channel(false);
    let grace = config.shutdown_grace();
    let drain_jobs = jobs.clone();
    let drain_health = health.clone();
    let shutdown = async move {
        let _ = stop_rx.await;
        tracing::info!("shutting down: refusing new jobs, stopping running ones");
        transport::set_not_serving(&drain_health).await;
        let left = tokio::task::spawn_blocking(move || drain_jobs.shutdown(grace))
            .await
            .unwrap_or(0);
        if left > 0 {
            tracing::warn!(left, "jobs still running after the shutdown grace period");
        }
        let _ = http_stop.send(true);
    };
    let task = tokio::spawn(transport::serve(
        listener,
        jobs.clone(),
        health,
        health_service,
        shutdown,
    ));
    let (http_addr, http_task) = match http_listener {
        Some((listener, http_addr)) => {
            let router = http::router(http::HttpState {
                jobs: jobs.clone(),
                shutdown: http_stopped.clone(),
            });
            let mut stopped = http_stopped;
            let task = tokio::spawn(async move {
                let stop = async move {
                    let _ = stopped.wait_for(|&s| s).await;
                };
                if let Err(e) = http::serve(listener, router, stop).await {
                    tracing::error!(error = %e, "the HTTP server stopped");
                }
            });
            tracing::info!("dashboard on http://{http_addr}/");
            (Some(http_addr), Some(task))
        }
        None => (None, None),
    };
    tracing::info!(
        device = %engine::device_name(device),
        data_dir = %config.data_dir.display(),
        max_concurrent_jobs = config.max_concurrent_jobs,
        torch_threads,
        "listening on {addr}"
    );
    Ok(RunningServer {
        addr,
        http_addr,
        jobs,
        stop: Some(stop_tx),
        task,
        http_task,
    })
}

/// Binds `addr` (the value of `flag`) and says where it is bound.
async fn bind(addr: &str, flag: &'static str) -> Result<(TcpListener, SocketAddr), StartError> {
    let error = |source| StartError::Bind {
        flag,
        addr: addr.to_string(),
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(error)?;
    let bound = listener.local_addr().map_err(error)?;
    Ok((listener, bound))
}
