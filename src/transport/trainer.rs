//! `gradstream.v1.Trainer`: each method validates, converts, calls the job manager and
//! maps the error.

use std::pin::Pin;

use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::pb::trainer_server::{Trainer, TrainerServer};
use super::watch::{Feeds, WithWatch};
use super::{blocking, convert, pb, status};
use crate::jobs::{JobError, JobManager, JobQuery, JobSnapshot, Subscription};
use crate::observability::{WatcherGuard, WatcherKind};

/// Events buffered per watcher before the watcher's task waits for its client. The log
/// itself is unbounded, so a slow client only ever delays itself.
const WATCH_BUFFER: usize = 256;

/// Largest request accepted (a Predict or Evaluate with many rows), in bytes.
const MAX_REQUEST_BYTES: usize = 64 << 20;

/// The Trainer service, with `WatchJob` answered by the `watch` route: every event is
/// encoded once per job, and the same bytes go to each watcher.
pub fn service(jobs: JobManager) -> WithWatch<TrainerServer<TrainerService>> {
    let feeds = Feeds::default();
    let trainer = TrainerService {
        jobs: jobs.clone(),
        feeds: feeds.clone(),
    };
    WithWatch::new(
        TrainerServer::new(trainer).max_decoding_message_size(MAX_REQUEST_BYTES),
        jobs,
        feeds,
    )
}

pub struct TrainerService {
    jobs: JobManager,
    /// The encoded logs of watched jobs (a deleted job's is freed).
    feeds: Feeds,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::JobEvent, Status>> + Send>>;

impl TrainerService {
    async fn submit(&self, req: pb::SubmitJobRequest) -> Result<JobSnapshot, Status> {
        let spec = convert::job_spec(req.spec).map_err(status::from_spec_error)?;
        let request_id = (!req.request_id.is_empty()).then_some(req.request_id);
        let jobs = self.jobs.clone();
        // Reading a CSV and writing the job record are blocking work.
        blocking(move || jobs.submit(spec, request_id)).await
    }
}

/// Bytes per ExportChunk data message.
const EXPORT_CHUNK: usize = 1 << 20;

type ExportStream = Pin<Box<dyn Stream<Item = Result<pb::ExportChunk, Status>> + Send>>;

/// Streams a subscription to the client; stops when the log ends or the client goes away.
/// The stream's task holds `watcher`, so the stream is counted while it lives.
fn stream(mut sub: Subscription, watcher: WatcherGuard) -> EventStream {
    let (tx, rx) = mpsc::channel(WATCH_BUFFER);
    tokio::spawn(async move {
        let _watcher = watcher;
        loop {
            let batch = tokio::select! {
                b = sub.next_batch() => b,
                _ = tx.closed() => return,
            };
            let Some(batch) = batch else { return };
            for ev in batch {
                if tx.send(Ok(pb::JobEvent::from(ev.as_ref()))).await.is_err() {
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
        Ok(Response::new(pb::Job::from(&job)))
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
        let watcher = self.jobs.metrics().watcher(WatcherKind::Train);
        Ok(Response::new(stream(sub, watcher)))
    }

    type WatchJobStream = EventStream;

    /// Not reached through [`service`], whose `watch` route answers `WatchJob` from the
    /// job's shared encoded log; the same stream for a bare `TrainerServer`.
    async fn watch_job(
        &self,
        req: Request<pb::WatchJobRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let req = req.into_inner();
        let sub = self
            .jobs
            .subscribe(&req.job_id, req.from_seq)
            .map_err(status::from_job_error)?;
        let watcher = self.jobs.metrics().watcher(WatcherKind::WatchJob);
        Ok(Response::new(stream(sub, watcher)))
    }

    async fn get_job(&self, req: Request<pb::GetJobRequest>) -> Result<Response<pb::Job>, Status> {
        let job = self
            .jobs
            .get(&req.into_inner().job_id)
            .map_err(status::from_job_error)?;
        Ok(Response::new(pb::Job::from(&job)))
    }

    async fn list_jobs(
        &self,
        req: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let query = JobQuery::try_from(req.into_inner()).map_err(status::from_spec_error)?;
        let (jobs, next) = self.jobs.page(&query).map_err(status::from_job_error)?;
        Ok(Response::new(pb::ListJobsResponse {
            jobs: jobs.iter().map(pb::Job::from).collect(),
            next_page_token: next.unwrap_or_default(),
        }))
    }

    async fn delete_job(
        &self,
        req: Request<pb::DeleteJobRequest>,
    ) -> Result<Response<pb::DeleteJobResponse>, Status> {
        let jobs = self.jobs.clone();
        let id = req.into_inner().job_id;
        let deleted = id.clone();
        blocking(move || jobs.delete(&id)).await?;
        self.feeds.forget(&deleted);
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
        Ok(Response::new(pb::Job::from(&job)))
    }

    async fn predict(
        &self,
        req: Request<pb::PredictRequest>,
    ) -> Result<Response<pb::PredictResponse>, Status> {
        let req = req.into_inner();
        let version = convert::model_version(req.model).map_err(status::from_spec_error)?;
        let rows: Vec<Vec<f32>> = req.rows.into_iter().map(|r| r.values).collect();
        let jobs = self.jobs.clone();
        let p = blocking(move || jobs.predict(&req.job_id, version, &rows)).await?;
        Ok(Response::new(pb::PredictResponse::from(&p)))
    }

    async fn evaluate(
        &self,
        req: Request<pb::EvaluateRequest>,
    ) -> Result<Response<pb::Evaluation>, Status> {
        let req = req.into_inner();
        let version = convert::model_version(req.model).map_err(status::from_spec_error)?;
        let data = convert::eval_data(req.data).map_err(status::from_spec_error)?;
        let jobs = self.jobs.clone();
        let (epoch, e) = blocking(move || {
            let positive = (!req.positive_label.is_empty()).then_some(req.positive_label.as_str());
            jobs.evaluate(&req.job_id, version, data, req.target_recall, positive)
        })
        .await?;
        Ok(Response::new(convert::evaluation(&e, epoch)))
    }

    type FindLearningRateStream =
        Pin<Box<dyn Stream<Item = Result<pb::LrFinderEvent, Status>> + Send>>;

    /// Submits a range-test job and streams its points and suggestion. A bad spec is an
    /// RPC error; a client that goes away before the end cancels the job.
    async fn find_learning_rate(
        &self,
        req: Request<pb::FindLearningRateRequest>,
    ) -> Result<Response<Self::FindLearningRateStream>, Status> {
        let (spec, test) =
            convert::range_test(req.into_inner()).map_err(status::from_spec_error)?;
        let jobs = self.jobs.clone();
        let job = blocking(move || jobs.submit_range_test(spec, test, None)).await?;
        let mut sub = self
            .jobs
            .subscribe(&job.id, 1)
            .map_err(status::from_job_error)?;
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        let jobs = self.jobs.clone();
        let watcher = self.jobs.metrics().watcher(WatcherKind::Train);
        tokio::spawn(async move {
            let _watcher = watcher;
            // Whether the client got the test's last word: its result or why it ended.
            let mut last_word = false;
            let ended = loop {
                let batch = tokio::select! {
                    b = sub.next_batch() => b,
                    _ = tx.closed() => break false,
                };
                let Some(batch) = batch else { break true };
                for ev in batch {
                    let Some(out) = convert::lr_finder_event(&ev) else {
                        continue;
                    };
                    last_word |= matches!(
                        &out,
                        Err(_)
                            | Ok(pb::LrFinderEvent {
                                kind: Some(pb::lr_finder_event::Kind::Result(_)),
                                ..
                            })
                    );
                    if tx.send(out.map_err(status::from_job_error)).await.is_err() {
                        break;
                    }
                }
                if tx.is_closed() {
                    break false;
                }
            };
            if !ended {
                // The client went away: the test is of no use to anyone now.
                let _ = jobs.cancel(&job.id);
            } else if !last_word && let Ok(j) = jobs.get(&job.id) {
                // The stream closed without the test's end on disk: at a shutdown (the
                // job runs again after the restart), or when its FAILED status could not
                // be saved.
                let _ = tx
                    .send(Err(status::from_job_error(JobError::RangeTestEnded {
                        id: j.id,
                        status: j.status,
                        message: j.message,
                    })))
                    .await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type ExportModelStream = ExportStream;

    async fn export_model(
        &self,
        req: Request<pb::ExportModelRequest>,
    ) -> Result<Response<ExportStream>, Status> {
        let req = req.into_inner();
        let version = convert::model_version(req.model).map_err(status::from_spec_error)?;
        let format = convert::export_format(req.format).map_err(status::from_spec_error)?;
        let jobs = self.jobs.clone();
        let files = blocking(move || jobs.export(&req.job_id, version, format)).await?;
        let mut chunks = Vec::new();
        for f in files {
            chunks.push(Ok(pb::ExportChunk {
                part: Some(pb::export_chunk::Part::File(pb::ExportedFile {
                    name: f.name.clone(),
                    size: f.bytes.len() as u64,
                    sha256: f.sha256(),
                })),
            }));
            for c in f.bytes.chunks(EXPORT_CHUNK) {
                chunks.push(Ok(pb::ExportChunk {
                    part: Some(pb::export_chunk::Part::Data(c.to_vec())),
                }));
            }
        }
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }
}
