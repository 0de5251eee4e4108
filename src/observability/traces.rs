//! OpenTelemetry traces over OTLP/gRPC (`--otlp-endpoint`): the tracing layer that exports
//! our spans, the span of each RPC (its parent taken from the request's W3C `traceparent`),
//! the span of each job run (its parent carried to the job's thread explicitly, as a
//! [`TraceParent`]) and its epochs' spans ([`EpochSpans`]). Without an endpoint these spans
//! are ordinary `tracing` spans: the log shows them and nothing is exported.

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::Registry;
use tracing_subscriber::filter::Targets;

use crate::domain::RunId;

/// The name our spans are exported under (the OTel resource's `service.name`).
const SERVICE_NAME: &str = "gradstream";

/// The exporter of a process: flushes and stops it at [`Otlp::shutdown`].
pub struct Otlp {
    provider: SdkTracerProvider,
}

impl Otlp {
    /// Starts exporting to `endpoint` (such as `http://127.0.0.1:4317`) and returns the
    /// `tracing` layer to install. Call it inside a tokio runtime, which must outlive the
    /// exporter: its gRPC channel runs on it. Only gradstream's own spans are exported (at
    /// INFO and above), not those of the libraries (the exporter's own calls included).
    pub fn start(endpoint: &str) -> Result<(Self, impl Layer<Registry> + Send + Sync), String> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .map_err(|e| {
                format!("--otlp-endpoint {endpoint}: {e}; give a URL such as http://127.0.0.1:4317")
            })?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder_empty()
                    .with_service_name(SERVICE_NAME)
                    .build(),
            )
            .build();
        let tracer = provider.tracer(SERVICE_NAME);
        let layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(Targets::new().with_target("gradstream", tracing::Level::INFO));
        Ok((Self { provider }, layer))
    }

    /// Exports every span still buffered, then stops. Blocks: call it off the async
    /// threads (the runtime must still run).
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "not every trace span was exported");
        }
    }
}

/// Reads W3C trace context from HTTP (gRPC metadata) headers.
struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// The span of one RPC, `method` being `package.Service/Method`: a server span whose parent
/// is the caller's trace when the request carries a `traceparent` header.
pub fn rpc_span(headers: &http::HeaderMap, method: &str) -> Span {
    let (service, name) = method.split_once('/').unwrap_or((method, ""));
    let span = tracing::info_span!(
        parent: None,
        "rpc",
        otel.name = %method,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %name,
        rpc.grpc.status_code = tracing::field::Empty,
    );
    let parent = TraceContextPropagator::new().extract(&Headers(headers));
    // Fails only while no OpenTelemetry layer is installed: then there is nothing to link.
    let _ = span.set_parent(parent);
    span
}

/// Where a job was asked for (the span current when it was submitted), kept with the job
/// until its thread starts, so that its run is a child of the RPC that submitted it.
#[derive(Clone, Default)]
pub struct TraceParent(Option<opentelemetry::Context>);

impl TraceParent {
    /// The current span's trace context (none outside a span).
    pub fn current() -> Self {
        let span = Span::current();
        Self((!span.is_disabled()).then(|| span.context()))
    }

    /// The span of one run of the job `id` (a restart starts another), a child of this.
    pub fn job_span(&self, id: &str) -> Span {
        let span = tracing::info_span!("job", id = %id);
        if let Some(cx) = &self.0 {
            let _ = span.set_parent(cx.clone());
        }
        span
    }
}

/// The span of the epoch being trained, a child of the current (the job's) span: opened at
/// the epoch's first progress report, closed at its end-of-epoch checkpoint (or when the
/// run ends).
#[derive(Default)]
pub struct EpochSpans {
    open: Option<(RunId, u32, Span)>,
    /// The epoch whose span was closed last (a late report of it opens none).
    closed: Option<(RunId, u32)>,
}

impl EpochSpans {
    /// Progress in `epoch` of `run`: opens its span unless it is open.
    pub fn progress(&mut self, run: RunId, epoch: u32) {
        if matches!(&self.open, Some((r, e, _)) if (*r, *e) == (run, epoch))
            || self.closed == Some((run, epoch))
        {
            return;
        }
        let span = tracing::info_span!("epoch", run = %run, epoch);
        self.open = Some((run, epoch, span));
    }

    /// `epoch` of `run` ended: closes its span.
    pub fn ended(&mut self, run: RunId, epoch: u32) {
        if matches!(&self.open, Some((r, e, _)) if (*r, *e) == (run, epoch)) {
            self.open = None;
            self.closed = Some((run, epoch));
        }
    }
}
