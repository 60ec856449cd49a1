//! The tower layer that measures every gRPC call and gives it a span.
//!
//! A call is counted once, when its status is known:
//!
//! * an error answered without a body ("Trailers-Only": tonic's error
//!   responses, and the refusals of the authentication layer) carries
//!   `grpc-status` in the response headers, and is counted when the headers
//!   are sent;
//! * every other call (successes, and errors of streams) sends `grpc-status`
//!   in the trailers after the body, and is counted when the trailers pass;
//! * a body that ends without any `grpc-status` counts as UNKNOWN;
//! * a call dropped before its status: DEADLINE_EXCEEDED once its deadline
//!   has passed (tonic's `Server::timeout`, outside this layer, then answers
//!   DEADLINE_EXCEEDED), CANCELLED before that (the client went away).
//!
//! The duration is from the arrival of the request until that moment, so for
//! a stream it is the stream's whole life.
//!
//! The span (`grpc`, named after the method for OpenTelemetry) covers the
//! same interval: it is entered while the handler runs and closed when the
//! status is counted, with the status code recorded on it. It is a DEBUG
//! span, so text logs at the default level do not carry it; the OTLP export
//! (see `crate::telemetry`) takes every salesmetrics span.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tonic::codegen::http;
use tonic::codegen::{Body, Bytes, Service};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::{Metrics, code_name};

/// The layer; see the module docs.
#[derive(Debug, Clone)]
pub struct RpcLayer {
    metrics: Arc<Metrics>,
    max_timeout: Duration,
}

impl RpcLayer {
    /// A layer counting into `metrics`, for a server whose longest deadline
    /// (tonic's `Server::timeout`) is `max_timeout`.
    pub fn new(metrics: Arc<Metrics>, max_timeout: Duration) -> Self {
        RpcLayer {
            metrics,
            max_timeout,
        }
    }
}

impl<S> tower::Layer<S> for RpcLayer {
    type Service = Measured<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Measured {
            inner,
            metrics: self.metrics.clone(),
            max_timeout: self.max_timeout,
        }
    }
}

/// The service the layer wraps around the router.
#[derive(Debug, Clone)]
pub struct Measured<S> {
    inner: S,
    metrics: Arc<Metrics>,
    max_timeout: Duration,
}

/// The deadline tonic enforces on a call: the client's `grpc-timeout`
/// (`<up to 8 digits><H|M|S|m|u|n>`), capped at `max`.
fn deadline_of(headers: &http::HeaderMap, max: Duration) -> Duration {
    let parsed = headers
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
            let n: u64 = digits.parse().ok()?;
            Some(match unit {
                "H" => Duration::from_secs(n.saturating_mul(3600)),
                "M" => Duration::from_secs(n.saturating_mul(60)),
                "S" => Duration::from_secs(n),
                "m" => Duration::from_millis(n),
                "u" => Duration::from_micros(n),
                "n" => Duration::from_nanos(n),
                _ => return None,
            })
        });
    parsed.map_or(max, |d| d.min(max))
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Measured<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = http::Response<MeasuredBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let started = Instant::now();
        let method = self.metrics.method_label(request.uri().path());
        // OpenTelemetry names gRPC spans `package.Service/Method`.
        let name = method.strip_prefix('/').unwrap_or(&method);
        let (service, rpc_method) = name.split_once('/').unwrap_or((name, ""));
        let span = tracing::debug_span!(
            "grpc",
            otel.name = name,
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            rpc.system = "grpc",
            rpc.service = service,
            rpc.method = rpc_method,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        if !span.is_disabled() {
            // Join the caller's trace (W3C `traceparent`) when it sent one.
            let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
                propagator.extract(&HeaderExtractor(request.headers()))
            });
            let _ = span.set_parent(parent);
        }
        let mut recorder = Recorder {
            metrics: self.metrics.clone(),
            method,
            started,
            deadline: deadline_of(request.headers(), self.max_timeout),
            span: Some(span.clone()),
        };
        let future = self.inner.call(request).instrument(span);
        Box::pin(async move {
            let response = match future.await {
                Ok(response) => response,
                Err(err) => {
                    // Turned into a status by tonic outside this layer.
                    recorder.finish("UNKNOWN");
                    return Err(err);
                }
            };
            if let Some(status) = response.headers().get("grpc-status") {
                recorder.finish(code_name(status.as_bytes()));
            }
            Ok(response.map(|inner| MeasuredBody {
                inner,
                recorder: recorder.span.is_some().then_some(recorder),
            }))
        })
    }
}

/// Reads trace context from request headers.
struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Counts one call exactly once: at [`Recorder::finish`], or when dropped
/// unfinished.
struct Recorder {
    metrics: Arc<Metrics>,
    /// The `method` label.
    method: Arc<str>,
    started: Instant,
    /// How long tonic lets the call run.
    deadline: Duration,
    /// The call's span; `None` once the call is counted.
    span: Option<tracing::Span>,
}

impl Recorder {
    /// Counts the call with status `code` and closes its span.
    fn finish(&mut self, code: &'static str) {
        let Some(span) = self.span.take() else {
            return;
        };
        self.metrics
            .observe_rpc(&self.method, code, self.started.elapsed());
        span.record("rpc.grpc.status_code", code);
        // Server-side errors, as the OpenTelemetry gRPC conventions list them.
        if matches!(
            code,
            "UNKNOWN"
                | "DEADLINE_EXCEEDED"
                | "UNIMPLEMENTED"
                | "INTERNAL"
                | "UNAVAILABLE"
                | "DATA_LOSS"
        ) {
            span.record("otel.status_code", "ERROR");
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if self.span.is_some() {
            let code = if self.started.elapsed() >= self.deadline {
                "DEADLINE_EXCEEDED"
            } else {
                "CANCELLED"
            };
            self.finish(code);
        }
    }
}

/// A response body that counts its call when the status passes by.
pub struct MeasuredBody<B> {
    inner: B,
    /// `None` when the call was already counted (status in the headers).
    recorder: Option<Recorder>,
}

impl<B: Default> Default for MeasuredBody<B> {
    fn default() -> Self {
        MeasuredBody {
            inner: B::default(),
            recorder: None,
        }
    }
}

impl<B> Body for MeasuredBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Some(recorder) = &mut this.recorder {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(status) = frame.trailers_ref().and_then(|t| t.get("grpc-status")) {
                        recorder.finish(code_name(status.as_bytes()));
                    } else if this.inner.is_end_stream() {
                        // Sent in full without a status: not a cancellation.
                        recorder.finish("UNKNOWN");
                    }
                }
                Poll::Ready(Some(Err(_)) | None) => recorder.finish("UNKNOWN"),
                Poll::Pending => {}
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_come_from_grpc_timeout_capped_at_the_maximum() {
        let max = Duration::from_secs(300);
        let with = |value: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert("grpc-timeout", value.parse().expect("header"));
            deadline_of(&headers, max)
        };
        assert_eq!(deadline_of(&http::HeaderMap::new(), max), max);
        assert_eq!(with("1500m"), Duration::from_millis(1500));
        assert_eq!(with("2S"), Duration::from_secs(2));
        assert_eq!(with("3M"), Duration::from_secs(180));
        assert_eq!(with("1H"), max);
        assert_eq!(with("250u"), Duration::from_micros(250));
        assert_eq!(with("7n"), Duration::from_nanos(7));
        assert_eq!(with("12x"), max);
        assert_eq!(with(""), max);
    }
}
