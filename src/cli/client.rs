//! Client commands: connect, call, print.

use std::process::ExitCode;

use tonic::transport::Channel;

use super::render::Renderer;
use super::{ClientArgs, SpecArgs};
use crate::transport::pb::{
    self, datasets_client::DatasetsClient, models_client::ModelsClient,
    trainer_client::TrainerClient,
};

type Result<T> = std::result::Result<T, String>;

pub(super) async fn connect(args: &ClientArgs) -> Result<TrainerClient<Channel>> {
    Ok(TrainerClient::new(channel(args).await?))
}

/// A connection to the server, for any of its services' clients.
async fn channel(args: &ClientArgs) -> Result<Channel> {
    tonic::transport::Endpoint::from_shared(args.server.clone())
        .map_err(|e| {
            format!(
                "--server {}: {e}; give a URL such as http://127.0.0.1:50051",
                args.server
            )
        })?
        .connect()
        .await
        .map_err(|e| {
            format!(
                "cannot reach the server at {}: {e}; is `gradstream serve` running there?",
                args.server
            )
        })
}

pub(super) fn status_error(e: tonic::Status) -> String {
    format!("{:?}: {}", e.code(), e.message())
}

/// Exit code for a finished job: success only when it succeeded.
fn exit_for(status: Option<pb::JobStatus>) -> ExitCode {
    match status {
        Some(pb::JobStatus::Succeeded) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

async fn follow(args: &ClientArgs, mut stream: tonic::Streaming<pb::JobEvent>) -> Result<ExitCode> {
    let mut r = Renderer::new(args.json);
    let mut last = None;
    while let Some(ev) = stream.message().await.map_err(status_error)? {
        if let Some(pb::job_event::Kind::Status(s)) = &ev.kind {
            last = pb::JobStatus::try_from(s.status).ok();
        }
        r.event(&ev);
    }
    r.finish();
    Ok(exit_for(last))
}

pub async fn train(args: &ClientArgs, spec: SpecArgs) -> Result<ExitCode> {
    let mut c = connect(args).await?;
    let stream = c
        .train(spec.to_request())
        .await
        .map_err(status_error)?
        .into_inner();
    follow(args, stream).await
}

pub async fn submit(args: &ClientArgs, spec: SpecArgs) -> Result<ExitCode> {
    let mut c = connect(args).await?;
    let job = c
        .submit_job(spec.to_request())
        .await
        .map_err(status_error)?
        .into_inner();
    Renderer::new(args.json).job_line(&job);
    Ok(ExitCode::SUCCESS)
}

pub async fn watch(args: &ClientArgs, job_id: &str, from_seq: u64) -> Result<ExitCode> {
    let mut c = connect(args).await?;
    let stream = c
        .watch_job(pb::WatchJobRequest {
            job_id: job_id.to_string(),
            from_seq,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    follow(args, stream).await
}

pub async fn list(args: &ClientArgs) -> Result<ExitCode> {
    let mut c = connect(args).await?;
    let mut jobs = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = c
            .list_jobs(pb::ListJobsRequest {
                page_size: 1000,
                page_token,
                ..Default::default()
            })
            .await
            .map_err(status_error)?
            .into_inner();
        jobs.extend(page.jobs);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let r = Renderer::new(args.json);
    r.job_table(&jobs);
    Ok(ExitCode::SUCCESS)
}

pub async fn get(args: &ClientArgs, job_id: &str) -> Result<ExitCode> {
    let mut c = connect(args).await?;
    let job = c
        .get_job(pb::GetJobRequest {
            job_id: job_id.to_string(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    Renderer::new(args.json).job_detail(&job);
    Ok(ExitCode::SUCCESS)
}

pub async fn cancel(args: &ClientArgs, job_id: &str) -> Result<ExitCode> {
    let mut c = connect(args).await?;
    let job = c
        .cancel_job(pb::CancelJobRequest {
            job_id: job_id.to_string(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    Renderer::new(args.json).job_line(&job);
    Ok(ExitCode::SUCCESS)
}

async fn datasets_client(args: &ClientArgs) -> Result<DatasetsClient<Channel>> {
    Ok(DatasetsClient::new(channel(args).await?))
}

/// Bytes per upload message.
const UPLOAD_CHUNK: usize = 256 * 1024;

/// An upload's messages: the header (made from the file's sha256, so the server can verify
/// what it received), then the file's bytes in chunks, fed by a task while a progress bar
/// counts them. Drop the task (`abort`) and clear the bar once the call returns.
struct FileStream<M> {
    messages: tokio_stream::wrappers::ReceiverStream<M>,
    feeder: tokio::task::JoinHandle<()>,
    bar: indicatif::ProgressBar,
}

async fn file_stream<M: Send + 'static>(
    args: &ClientArgs,
    file: &std::path::Path,
    header: impl FnOnce(String) -> M + Send + 'static,
    chunk: impl Fn(Vec<u8>) -> M + Send + 'static,
) -> Result<FileStream<M>> {
    use sha2::{Digest, Sha256};
    use tokio::io::AsyncReadExt;
    let open = || format!("cannot read {}", file.display());
    let size = tokio::fs::metadata(file)
        .await
        .map_err(|e| format!("{}: {e}", open()))?
        .len();
    let mut hasher = Sha256::new();
    let mut f = tokio::fs::File::open(file)
        .await
        .map_err(|e| format!("{}: {e}", open()))?;
    let mut buf = vec![0u8; UPLOAD_CHUNK];
    loop {
        let n = f
            .read(&mut buf)
            .await
            .map_err(|e| format!("{}: {e}", open()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let sha256: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let bar = super::render::byte_bar(size, args.json);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let path = file.to_path_buf();
    let feeder_bar = bar.clone();
    let feeder = tokio::spawn(async move {
        if tx.send(header(sha256)).await.is_err() {
            return;
        }
        let Ok(mut f) = tokio::fs::File::open(&path).await else {
            return;
        };
        let mut buf = vec![0u8; UPLOAD_CHUNK];
        while let Ok(n) = f.read(&mut buf).await {
            if n == 0 {
                break;
            }
            feeder_bar.inc(n as u64);
            if tx.send(chunk(buf[..n].to_vec())).await.is_err() {
                return;
            }
        }
    });
    Ok(FileStream {
        messages: tokio_stream::wrappers::ReceiverStream::new(rx),
        feeder,
        bar,
    })
}

/// The file's name, to show in listings when none is given.
fn display_name(file: &std::path::Path, name: Option<String>, default: &str) -> String {
    name.unwrap_or_else(|| {
        file.file_name()
            .map_or_else(|| default.into(), |n| n.to_string_lossy().into_owned())
    })
}

pub async fn upload(
    args: &ClientArgs,
    file: &std::path::Path,
    name: Option<String>,
    label_column: String,
) -> Result<ExitCode> {
    use pb::upload_dataset_request::Part;
    let mut c = datasets_client(args).await?;
    let name = display_name(file, name, "dataset");
    let stream = file_stream(
        args,
        file,
        move |sha256| pb::UploadDatasetRequest {
            part: Some(Part::Header(pb::DatasetHeader {
                name,
                format: pb::DatasetFormat::Csv as i32,
                label_column,
                sha256,
            })),
        },
        |bytes| pb::UploadDatasetRequest {
            part: Some(Part::Chunk(bytes)),
        },
    )
    .await?;
    let result = c.upload_dataset(stream.messages).await;
    stream.feeder.abort();
    stream.bar.finish_and_clear();
    let info = result.map_err(status_error)?.into_inner();
    Renderer::new(args.json).dataset(&info);
    Ok(ExitCode::SUCCESS)
}

async fn models_client(args: &ClientArgs) -> Result<ModelsClient<Channel>> {
    Ok(ModelsClient::new(channel(args).await?))
}

/// Streams a TorchScript file to the server's Models service.
pub async fn upload_model(
    args: &ClientArgs,
    file: &std::path::Path,
    name: Option<String>,
) -> Result<ExitCode> {
    use pb::upload_model_request::Part;
    let mut c = models_client(args).await?;
    let name = display_name(file, name, "model");
    let stream = file_stream(
        args,
        file,
        move |sha256| pb::UploadModelRequest {
            part: Some(Part::Header(pb::ModelHeader { name, sha256 })),
        },
        |bytes| pb::UploadModelRequest {
            part: Some(Part::Chunk(bytes)),
        },
    )
    .await?;
    let result = c.upload_model(stream.messages).await;
    stream.feeder.abort();
    stream.bar.finish_and_clear();
    let info = result.map_err(status_error)?.into_inner();
    Renderer::new(args.json).model(&info);
    Ok(ExitCode::SUCCESS)
}

pub async fn models(args: &ClientArgs) -> Result<ExitCode> {
    let mut c = models_client(args).await?;
    let all = c
        .list_models(pb::ListModelsRequest {})
        .await
        .map_err(status_error)?
        .into_inner()
        .models;
    let r = Renderer::new(args.json);
    for m in &all {
        r.model(m);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn model(args: &ClientArgs, id: &str) -> Result<ExitCode> {
    let mut c = models_client(args).await?;
    let info = c
        .get_model(pb::GetModelRequest {
            model_id: id.to_string(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    Renderer::new(args.json).model(&info);
    Ok(ExitCode::SUCCESS)
}

pub async fn delete_model(args: &ClientArgs, id: &str) -> Result<ExitCode> {
    let mut c = models_client(args).await?;
    c.delete_model(pb::DeleteModelRequest {
        model_id: id.to_string(),
    })
    .await
    .map_err(status_error)?;
    if !args.json {
        println!("deleted {id}");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn datasets(args: &ClientArgs) -> Result<ExitCode> {
    let mut c = datasets_client(args).await?;
    let all = c
        .list_datasets(pb::ListDatasetsRequest {})
        .await
        .map_err(status_error)?
        .into_inner()
        .datasets;
    let r = Renderer::new(args.json);
    for d in &all {
        r.dataset(d);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn dataset(args: &ClientArgs, id: &str) -> Result<ExitCode> {
    let mut c = datasets_client(args).await?;
    let info = c
        .get_dataset(pb::GetDatasetRequest {
            dataset_id: id.to_string(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    Renderer::new(args.json).dataset(&info);
    Ok(ExitCode::SUCCESS)
}

pub async fn delete_dataset(args: &ClientArgs, id: &str) -> Result<ExitCode> {
    let mut c = datasets_client(args).await?;
    c.delete_dataset(pb::DeleteDatasetRequest {
        dataset_id: id.to_string(),
    })
    .await
    .map_err(status_error)?;
    if !args.json {
        println!("deleted {id}");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn delete_job(args: &ClientArgs, job_id: &str) -> Result<ExitCode> {
    let mut c = connect(args).await?;
    c.delete_job(pb::DeleteJobRequest {
        job_id: job_id.to_string(),
    })
    .await
    .map_err(status_error)?;
    if !args.json {
        println!("deleted {job_id}");
    }
    Ok(ExitCode::SUCCESS)
}
