//! `gradstream.v1.Trainer`: each method validates, converts, calls the job manager and
//! maps the error.

use std::pin::Pin;

use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::pb::trainer_server::{Trainer, TrainerServer};
use super::{convert, pb, status};
use crate::jobs::{JobManager, JobSnapshot, Subscription};

/// Events buffered per watcher before the watcher's task waits for its client. The log
/// itself is unbounded, so a slow client only ever delays itself.
const WATCH_BUFFER: usize = 256;

pub fn service(jobs: JobManager) -> TrainerServer<TrainerService> {
    TrainerServer::new(TrainerService { jobs })
}

pub struct TrainerService {
    jobs: JobManager,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::JobEvent, Status>> + Send>>;

impl TrainerService {
    async fn submit(&self, req: pb::SubmitJobRequest) -> Result<JobSnapshot, Status> {
        let spec = convert::job_spec(req.spec).map_err(status::from_spec_error)?;
        let request_id = (!req.request_id.is_empty()).then_some(req.request_id);
        let jobs = self.jobs.clone();
        // Reading a CSV and writing the job record are blocking work.
        tokio::task::spawn_blocking(move || jobs.submit(spec, request_id))
            .await
            .map_err(|e| Status::internal(format!("submit task failed: {e}")))?
            .map_err(status::from_job_error)
    }
}

/// Streams a subscription to the client; stops when the log ends or the client goes away.
fn stream(mut sub: Subscription) -> EventStream {
    let (tx, rx) = mpsc::channel(WATCH_BUFFER);
    tokio::spawn(async move {
        loop {
            let batch = tokio::select! {
                b = sub.next_batch() => b,
                _ = tx.closed() => return,
            };
            let Some(batch) = batch else { return };
            for ev in batch {
                if tx.send(Ok(convert::event(&ev))).await.is_err() {
                    return;
                }
            }
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

#[tonic::async_trait]
impl Trainer for TrainerService {
    async fn submit_job(
        &self,
        req: Request<pb::SubmitJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let job = self.submit(req.into_inner()).await?;
        Ok(Response::new(convert::job(&job)))
    }

    type TrainStream = EventStream;

    async fn train(
        &self,
        req: Request<pb::SubmitJobRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let job = self.submit(req.into_inner()).await?;
        let sub = self
            .jobs
            .subscribe(&job.id, 1)
            .map_err(status::from_job_error)?;
        Ok(Response::new(stream(sub)))
    }

    type WatchJobStream = EventStream;

    async fn watch_job(
        &self,
        req: Request<pb::WatchJobRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let req = req.into_inner();
        let sub = self
            .jobs
            .subscribe(&req.job_id, req.from_seq)
            .map_err(status::from_job_error)?;
        Ok(Response::new(stream(sub)))
    }

    async fn get_job(&self, req: Request<pb::GetJobRequest>) -> Result<Response<pb::Job>, Status> {
        let job = self
            .jobs
            .get(&req.into_inner().job_id)
            .map_err(status::from_job_error)?;
        Ok(Response::new(convert::job(&job)))
    }

    async fn list_jobs(
        &self,
        req: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let query = convert::job_query(req.into_inner()).map_err(status::from_spec_error)?;
        let (jobs, next) = self.jobs.page(&query).map_err(status::from_job_error)?;
        Ok(Response::new(pb::ListJobsResponse {
            jobs: jobs.iter().map(convert::job).collect(),
            next_page_token: next.unwrap_or_default(),
        }))
    }

    async fn delete_job(
        &self,
        req: Request<pb::DeleteJobRequest>,
    ) -> Result<Response<pb::DeleteJobResponse>, Status> {
        let jobs = self.jobs.clone();
        let id = req.into_inner().job_id;
        tokio::task::spawn_blocking(move || jobs.delete(&id))
            .await
            .map_err(|e| Status::internal(format!("delete task failed: {e}")))?
            .map_err(status::from_job_error)?;
        Ok(Response::new(pb::DeleteJobResponse {}))
    }

    async fn cancel_job(
        &self,
        req: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let job = self
            .jobs
            .cancel(&req.into_inner().job_id)
            .map_err(status::from_job_error)?;
        Ok(Response::new(convert::job(&job)))
    }
}
