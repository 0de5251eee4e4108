//! `WatchJob` with each event encoded once: this route sits in front of the generated
//! Trainer service and answers `WatchJob` from the job's shared log of gRPC-framed
//! `pb::JobEvent`s ([`Feeds`]), handing the same bytes to every watcher's HTTP/2 stream
//! without a copy. Every other method goes to the Trainer service.

mod feed;

use std::convert::Infallible;
use std::task::{Context, Poll};

use tonic::Status;
use tonic::body::Body;
use tonic::codec::Streaming;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;
use tonic_prost::ProstDecoder;

pub use feed::Feeds;

use super::{pb, status};
use crate::jobs::JobManager;

/// The method this route answers, as gRPC names it.
const WATCH_JOB: &str = "/gradstream.v1.Trainer/WatchJob";

/// Largest `WatchJobRequest` accepted, in bytes (it holds a job id and a number).
const MAX_REQUEST_BYTES: usize = 64 << 10;

/// `inner` (the Trainer service), with `WatchJob` answered from shared encoded logs.
#[derive(Clone)]
pub struct WithWatch<S> {
    inner: S,
    jobs: JobManager,
    feeds: Feeds,
}

impl<S> WithWatch<S> {
    pub fn new(inner: S, jobs: JobManager, feeds: Feeds) -> Self {
        Self { inner, jobs, feeds }
    }
}

impl<S: NamedService> NamedService for WithWatch<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for WithWatch<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if req.uri().path() != WATCH_JOB {
            return Box::pin(self.inner.call(req));
        }
        let (jobs, feeds) = (self.jobs.clone(), self.feeds.clone());
        Box::pin(async move { Ok(watch_job(&jobs, &feeds, req).await) })
    }
}

/// `WatchJob`: the job's events from `from_seq`, as the gRPC frames of `pb::JobEvent`s
/// (the bytes the generated service would send), then the status in the trailers.
async fn watch_job(
    jobs: &JobManager,
    feeds: &Feeds,
    req: http::Request<Body>,
) -> http::Response<Body> {
    let stream = match read_request(req).await.and_then(|r| {
        feeds
            .watch(jobs, &r.job_id, r.from_seq)
            .map_err(status::from_job_error)
    }) {
        Ok(stream) => stream,
        Err(status) => return status.into_http(),
    };
    let mut response = http::Response::new(Body::new(stream));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    response
}

/// The request's one message.
async fn read_request(req: http::Request<Body>) -> Result<pb::WatchJobRequest, Status> {
    let decoder = ProstDecoder::<pb::WatchJobRequest>::default();
    let mut messages =
        Streaming::new_request(decoder, req.into_body(), None, Some(MAX_REQUEST_BYTES));
    messages
        .message()
        .await?
        .ok_or_else(status::missing_request)
}
