//! The tower layer around the gRPC server: each request gets its span ([`traces::rpc_span`])
//! and is counted in `gradstream_grpc_requests_total` with its latency, by method and
//! status code.
//!
//! The code is read where gRPC puts it: in the response headers of an error answered at
//! once ("trailers-only"), else in the trailers at the end of the body. So a unary call is
//! counted when its answer has been sent, and a **stream when it ends** (its trailers), its
//! latency being the stream's whole life; a stream whose client goes away before its end is
//! counted `CANCELLED`.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame, SizeHint};
use tracing::{Instrument, Span};

use super::metrics::Metrics;
use super::traces;

/// Adds [`RpcService`] to every route of a tonic server.
#[derive(Clone)]
pub struct RpcLayer {
    metrics: Arc<Metrics>,
}

impl RpcLayer {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> tower::Layer<S> for RpcLayer {
    type Service = RpcService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RpcService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for RpcService<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<RpcBody<ResBody>>;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let method = known_method(request.uri().path());
        let span = traces::rpc_span(request.headers(), &method);
        let mut call = Call {
            metrics: self.metrics.clone(),
            method,
            start: Instant::now(),
            span: span.clone(),
            done: false,
        };
        let response = span.in_scope(|| self.inner.call(request));
        Box::pin(
            async move {
                match response.await {
                    Ok(response) => {
                        if let Some(code) = response.headers().get("grpc-status") {
                            call.finish(code.as_bytes());
                        }
                        Ok(response.map(|body| RpcBody {
                            inner: Box::pin(body),
                            call,
                        }))
                    }
                    Err(e) => {
                        call.finish(b"2");
                        Err(e)
                    }
                }
            }
            .instrument(span),
        )
    }
}

/// One request until its code is known.
struct Call {
    metrics: Arc<Metrics>,
    method: String,
    start: Instant,
    /// Kept open until the response ends.
    span: Span,
    done: bool,
}

impl Call {
    /// Records the request with its `grpc-status` value (a number as text).
    fn finish(&mut self, status: &[u8]) {
        if self.done {
            return;
        }
        self.done = true;
        let code = std::str::from_utf8(status)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .map_or("UNKNOWN", code_name);
        self.span.record("rpc.grpc.status_code", code);
        self.metrics
            .rpc_done(&self.method, code, self.start.elapsed());
        self.span = Span::none();
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // The body was dropped before its trailers: the client went away.
        self.finish(b"1");
    }
}

/// The response body, watched for the trailers that carry `grpc-status`.
pub struct RpcBody<B> {
    inner: Pin<Box<B>>,
    call: Call,
}

impl<B: Body> Body for RpcBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let frame = this.inner.as_mut().poll_frame(cx);
        match &frame {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(code) = f.trailers_ref().and_then(|t| t.get("grpc-status")) {
                    this.call.finish(code.as_bytes());
                }
            }
            // A body that ends without a status is not a valid gRPC answer.
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => this.call.finish(b"2"),
            Poll::Pending => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The gRPC name of a status code, as the specification spells it.
fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

/// The method label of a request path: `package.Service/Method` for a method the server
/// has (from the descriptors it serves), else `unknown`, so that clients cannot add label
/// values without bound.
fn known_method(path: &str) -> String {
    static KNOWN: OnceLock<HashSet<String>> = OnceLock::new();
    let known = KNOWN.get_or_init(crate::transport::method_names);
    let method = path.trim_start_matches('/');
    if known.contains(method) {
        method.to_string()
    } else {
        "unknown".to_string()
    }
}

#[cfg(test)]
mod method_tests {
    use super::known_method;

    #[test]
    fn only_our_services_name_their_methods() {
        assert_eq!(
            known_method("/gradstream.v1.Trainer/GetJob"),
            "gradstream.v1.Trainer/GetJob"
        );
        assert_eq!(
            known_method("/grpc.health.v1.Health/Check"),
            "grpc.health.v1.Health/Check"
        );
        assert_eq!(known_method("/x12345/Y"), "unknown");
        assert_eq!(
            known_method("/gradstream.v1.Trainer/NoSuchMethod"),
            "unknown"
        );
    }
}
