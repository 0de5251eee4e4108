//! Client commands: connect, call, print.

use std::process::ExitCode;

use tonic::transport::Channel;

use super::render::Renderer;
use super::{ClientArgs, SpecArgs};
use crate::transport::pb::{self, trainer_client::TrainerClient};

type Result<T> = std::result::Result<T, String>;

async fn connect(args: &ClientArgs) -> Result<TrainerClient<Channel>> {
    TrainerClient::connect(args.server.clone())
        .await
        .map_err(|e| {
            format!(
                "cannot reach the server at {}: {e}; is `gradstream serve` running there?",
                args.server
            )
        })
}

fn status_error(e: tonic::Status) -> String {
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
    let jobs = c
        .list_jobs(pb::ListJobsRequest {})
        .await
        .map_err(status_error)?
        .into_inner()
        .jobs;
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
