//! Logs and traces of `salesmetrics serve`.
//!
//! Logs go to stderr (text or JSON), filtered by `RUST_LOG` (default `info`).
//! With an OTLP endpoint (`--otlp-endpoint`, `SALESMETRICS_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_ENDPOINT`), the spans of salesmetrics — one per gRPC
//! call, opened by [`crate::metrics::layer`], with the calls' log events
//! attached — are also exported over OTLP/gRPC in batches, under the service
//! name `salesmetrics` (or `OTEL_SERVICE_NAME`). A call that carries a W3C
//! `traceparent` header joins the caller's trace.
//!
//! The export filter is separate from `RUST_LOG`: every salesmetrics span
//! (whatever its level) and its events at INFO and above, so traces stay
//! complete while the text log stays quiet. [`Telemetry::shutdown`] sends
//! the spans still buffered; the binary calls it after the server stopped.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::LogFormat;

/// The service name spans are exported under, unless `OTEL_SERVICE_NAME` says otherwise.
pub const SERVICE_NAME: &str = "salesmetrics";

/// What must outlive the server: the span exporter, if any.
#[derive(Debug, Default)]
#[must_use = "call shutdown() to send the spans still buffered"]
pub struct Telemetry {
    /// The OTLP pipeline; `None` when export is off.
    tracer_provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still buffered (waiting at most the exporter's
    /// timeout) and stops the exporter.
    pub async fn shutdown(self) {
        let Some(provider) = self.tracer_provider else {
            return;
        };
        // `shutdown` blocks until the batch is sent, which needs the runtime.
        let result = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "could not send the last spans"),
            Err(err) => tracing::warn!(error = %err, "could not send the last spans"),
        }
    }
}

/// Sets up logging and, with `otlp_endpoint`, span export. Needs a Tokio
/// runtime (the OTLP client runs on it). Logging set up before (e.g. by a
/// test) is left as it is.
pub fn init(format: LogFormat, otlp_endpoint: Option<&str>) -> anyhow::Result<Telemetry> {
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: log files and collectors get plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let text = (format == LogFormat::Text).then(|| {
        tracing_subscriber::fmt::layer()
            .with_ansi(colour)
            .with_writer(std::io::stderr)
            .with_filter(filter())
    });
    let json = (format == LogFormat::Json).then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(filter())
    });

    let tracer_provider = otlp_endpoint.map(tracer_provider).transpose()?;
    let otel = tracer_provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(SERVICE_NAME))
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                meta.target().starts_with("salesmetrics")
                    && (meta.is_span() || *meta.level() <= tracing::Level::INFO)
            }))
    });
    if tracer_provider.is_some() {
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
    }

    if let Err(err) = tracing_subscriber::registry()
        .with(text)
        .with(json)
        .with(otel)
        .try_init()
    {
        eprintln!("logging already initialised: {err}");
    }
    if let Some(endpoint) = otlp_endpoint {
        tracing::info!(endpoint = %crate::config::redact_url(endpoint), "exporting spans over OTLP/gRPC");
    }
    Ok(Telemetry { tracer_provider })
}

/// The batch span pipeline to the OTLP/gRPC collector at `endpoint`.
fn tracer_provider(endpoint: &str) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|err| anyhow::anyhow!("cannot set up OTLP export to {endpoint}: {err}"))?;
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").map_or(true, |name| name.trim().is_empty()) {
        resource = resource.with_service_name(SERVICE_NAME);
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}
