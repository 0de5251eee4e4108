//! The `gradstream` command line: `serve`, and client commands that talk to a server
//! through the generated gRPC client.

mod client;
mod plot;
mod render;
mod spec_args;
mod trained_models;

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{LogFormat, ServeConfig};
use crate::observability::Otlp;
use crate::transport::pb;

pub use spec_args::SpecArgs;
use trained_models::{EvalSource, FormatArg, VersionArg};

#[derive(Debug, Parser)]
#[command(
    name = "gradstream",
    version,
    about = "Train neural networks on libtorch over gRPC, and watch them learn."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// How client commands reach the server and print.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// Server URL.
    #[arg(
        long,
        env = "GRADSTREAM_SERVER",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    pub server: String,
    /// Print events and jobs as JSON lines, for scripts.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC server.
    Serve(ServeConfig),
    /// Submit a job and follow it live until it ends.
    Train {
        #[command(flatten)]
        spec: SpecArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The learning-rate range test on a job spec: the loss as the learning rate grows,
    /// drawn in the terminal, and a suggested learning rate.
    LrFind {
        #[command(flatten)]
        spec: SpecArgs,
        #[arg(long, default_value_t = 1e-7)]
        min_lr: f64,
        #[arg(long, default_value_t = 10.0)]
        max_lr: f64,
        #[arg(long, default_value_t = 200)]
        iterations: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Submit a job and print its id (does not wait).
    Submit {
        #[command(flatten)]
        spec: SpecArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Follow a job's events (history first, then live) until it ends.
    Watch {
        job_id: String,
        /// First event to show.
        #[arg(long, default_value_t = 1)]
        from_seq: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List or inspect jobs.
    Jobs {
        #[command(subcommand)]
        command: JobsCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Upload, list, inspect or delete datasets kept by the server.
    Datasets {
        #[command(subcommand)]
        command: DatasetsCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Upload, list, inspect or delete TorchScript models kept by the server.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Cancel a queued or running job.
    Cancel {
        job_id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Class probabilities for the rows of a local CSV file, printed as CSV (or JSON lines).
    Predict {
        #[arg(long = "job")]
        job_id: String,
        /// Feature columns are matched by header name (extra columns such as the label are
        /// ignored), or by position when the file has exactly one column per feature.
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = VersionArg::Best)]
        model: VersionArg,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Metrics, confusion matrix, curves and thresholds of a trained model on labelled data.
    Evaluate {
        #[arg(long = "job")]
        job_id: String,
        #[command(flatten)]
        source: EvalSource,
        /// Header name of the label column (default: the last column).
        #[arg(long)]
        label_column: Option<String>,
        /// Binary problems: also report the highest threshold reaching this recall.
        #[arg(long)]
        target_recall: Option<f64>,
        /// Binary problems: the class the threshold report is about (default: the second label).
        #[arg(long)]
        positive_label: Option<String>,
        #[arg(long, value_enum, default_value_t = VersionArg::Best)]
        model: VersionArg,
        /// Write the ROC and precision-recall curves as SVG files into this directory.
        #[arg(long)]
        plot: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Download a trained model as TorchScript, or as safetensors plus a JSON model card.
    Export {
        #[arg(long = "job")]
        job_id: String,
        #[arg(long, value_enum)]
        format: FormatArg,
        /// Output file; a model card is written next to it, as model_card.json.
        #[arg(short, long)]
        output: PathBuf,
        #[arg(long, value_enum, default_value_t = VersionArg::Best)]
        model: VersionArg,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum DatasetsCommand {
    /// Stream a CSV file to the server; it is validated as it goes.
    Upload {
        file: std::path::PathBuf,
        /// Name to show in listings (default: the file name).
        #[arg(long)]
        name: Option<String>,
        /// Header name of the label column (default: the last column).
        #[arg(long, default_value = "")]
        label_column: String,
    },
    /// All datasets, oldest first.
    List,
    /// One dataset.
    Get { dataset_id: String },
    /// Delete a dataset that no queued or running job uses.
    Delete { dataset_id: String },
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Stream a TorchScript file (torch.jit.save of a scripted or traced module) to the
    /// server; train it with `gradstream train --torchscript ID`.
    Upload {
        file: std::path::PathBuf,
        /// Name to show in listings (default: the file name).
        #[arg(long)]
        name: Option<String>,
    },
    /// All models, oldest first.
    List,
    /// One model, with its parameters.
    Get { model_id: String },
    /// Delete a model that no queued or running job uses.
    Delete { model_id: String },
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// All jobs, oldest first.
    List,
    /// One job, with its latest metrics.
    Get { job_id: String },
    /// Remove a finished job, its events and its files.
    Delete { job_id: String },
}

/// Runs the CLI; returns the process exit code.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let log_format = match &cli.command {
        Command::Serve(c) => c.log_format,
        _ => LogFormat::Text,
    };
    let otlp_endpoint = match &cli.command {
        Command::Serve(c) => c.otlp_endpoint.clone(),
        _ => None,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let otlp = {
        // The OTLP exporter's gRPC channel runs on the runtime.
        let _runtime = runtime.enter();
        init_tracing(
            log_format,
            matches!(cli.command, Command::Serve(_)),
            otlp_endpoint.as_deref(),
        )
    };
    let otlp = match otlp {
        Ok(otlp) => otlp,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(config) => serve(config).await,
            Command::Train { spec, client } => client::train(&client, spec).await,
            Command::Submit { spec, client } => client::submit(&client, spec).await,
            Command::LrFind {
                spec,
                min_lr,
                max_lr,
                iterations,
                client,
            } => {
                let req = pb::FindLearningRateRequest {
                    spec: spec.to_request().spec,
                    min_lr: Some(min_lr),
                    max_lr: Some(max_lr),
                    iterations: Some(iterations),
                };
                trained_models::lr_find(&client, req).await
            }
            Command::Watch {
                job_id,
                from_seq,
                client,
            } => client::watch(&client, &job_id, from_seq).await,
            Command::Jobs { command, client } => match command {
                JobsCommand::List => client::list(&client).await,
                JobsCommand::Get { job_id } => client::get(&client, &job_id).await,
                JobsCommand::Delete { job_id } => client::delete_job(&client, &job_id).await,
            },
            Command::Cancel { job_id, client } => client::cancel(&client, &job_id).await,
            Command::Predict {
                job_id,
                file,
                model,
                client,
            } => trained_models::predict(&client, &job_id, &file, model).await,
            Command::Evaluate {
                job_id,
                source,
                label_column,
                target_recall,
                positive_label,
                model,
                plot,
                client,
            } => {
                let report = trained_models::ThresholdArgs {
                    target_recall,
                    positive_label,
                };
                trained_models::evaluate(
                    &client,
                    &job_id,
                    source,
                    label_column,
                    report,
                    model,
                    plot,
                )
                .await
            }
            Command::Export {
                job_id,
                format,
                output,
                model,
                client,
            } => trained_models::export(&client, &job_id, format, &output, model).await,
            Command::Models { command, client } => match command {
                ModelsCommand::Upload { file, name } => {
                    client::upload_model(&client, &file, name).await
                }
                ModelsCommand::List => client::models(&client).await,
                ModelsCommand::Get { model_id } => client::model(&client, &model_id).await,
                ModelsCommand::Delete { model_id } => {
                    client::delete_model(&client, &model_id).await
                }
            },
            Command::Datasets { command, client } => match command {
                DatasetsCommand::Upload {
                    file,
                    name,
                    label_column,
                } => client::upload(&client, &file, name, label_column).await,
                DatasetsCommand::List => client::datasets(&client).await,
                DatasetsCommand::Get { dataset_id } => client::dataset(&client, &dataset_id).await,
                DatasetsCommand::Delete { dataset_id } => {
                    client::delete_dataset(&client, &dataset_id).await
                }
            },
        }
    });
    // The runtime still runs (its worker threads): the last spans are exported on it.
    if let Some(otlp) = otlp {
        otlp.shutdown();
    }
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs to stderr (level from RUST_LOG) and, given an OTLP endpoint, exports trace spans
/// there; the returned exporter is to be shut down at exit. Call inside the runtime.
fn init_tracing(
    format: LogFormat,
    serving: bool,
    otlp_endpoint: Option<&str>,
) -> Result<Option<Otlp>, String> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};
    let default = if serving { "info" } else { "warn" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt.with_filter(filter).boxed(),
        LogFormat::Json => fmt.json().with_filter(filter).boxed(),
    };
    let (otlp, spans) = match otlp_endpoint {
        Some(endpoint) => {
            let (otlp, layer) = Otlp::start(endpoint)?;
            (Some(otlp), Some(layer))
        }
        None => (None, None),
    };
    tracing_subscriber::registry().with(spans).with(fmt).init();
    Ok(otlp)
}

async fn serve(config: ServeConfig) -> Result<std::process::ExitCode, String> {
    let grace = config.shutdown_grace();
    let mut server = crate::server::start(&config)
        .await
        .map_err(|e| e.to_string())?;
    let signal = shutdown_signal().await;
    tracing::info!(signal, "signal received");
    server.begin_shutdown();
    // Jobs get `grace` to stop; the transport a little longer to flush the last events.
    match tokio::time::timeout(grace + std::time::Duration::from_secs(5), server.wait()).await {
        Ok(Ok(())) => {
            tracing::info!("server stopped");
            Ok(std::process::ExitCode::SUCCESS)
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => {
            tracing::warn!("shutdown grace period exceeded; exiting anyway");
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        }
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}
