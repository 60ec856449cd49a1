//! The Connect protocol's JSON form of every RPC, on the gRPC port: a
//! browser or `curl` sends `POST /salesmetrics.v1.KpiService/GetKpis` with
//! `Content-Type: application/json` and gets the answer as JSON.
//!
//! The layer sits outside gRPC-Web, the way gRPC-Web sits outside gRPC: it
//! turns a Connect request into a gRPC one (the JSON body into one
//! length-prefixed protobuf message, `Connect-Timeout-Ms` into
//! `grpc-timeout`, every other header, such as `authorization`, unchanged),
//! so metrics, authentication, limits and the handlers treat it like any
//! gRPC call, then turns the gRPC answer (message, `grpc-status`,
//! `grpc-message`, `grpc-status-details-bin`) into the Connect one. The
//! JSON form of each message comes from the descriptor set the build
//! produces ([`json`]), never from hand-written code.
//!
//! What the layer answers itself, before any other layer sees the call:
//!
//! * 415 for a POST to an RPC path whose content type is neither gRPC,
//!   gRPC-Web nor Connect JSON, or Connect JSON of the wrong kind (unary
//!   JSON for a streaming method and the other way round);
//! * 404 `unimplemented` for a method the server does not have;
//! * 413 `resource_exhausted` for a body above `--max-message-bytes`;
//! * 400 `invalid_argument` for a body that is not the method's request
//!   message in JSON.
//!
//! Unary methods take `application/json`; server-streaming ones take
//! `application/connect+json` ([`stream`]). Client-streaming methods
//! (`StreamIngest`) are served over gRPC and gRPC-Web only.

mod error;
mod json;
mod stream;

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use http_body_util::{BodyExt as _, Full, Limited};
use prost_reflect::MethodDescriptor;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::http::{self, HeaderMap, HeaderValue, StatusCode, header};
use tonic::codegen::{Bytes, Service};

pub use error::connect_code;

/// Request headers of the Connect protocol, besides the standard ones (for
/// CORS preflights).
pub const CONNECT_REQUEST_HEADERS: [&str; 2] = ["connect-protocol-version", "connect-timeout-ms"];

/// The content type of unary Connect JSON.
const JSON: &str = "application/json";

/// The layer; see the module docs.
#[derive(Debug, Clone)]
pub struct ConnectLayer {
    settings: Arc<Settings>,
}

/// What the layer enforces.
#[derive(Debug)]
struct Settings {
    /// Largest request body, in bytes (`--max-message-bytes`).
    max_body_bytes: usize,
    /// Longest deadline a call may have (`--max-timeout-seconds`).
    max_timeout: Duration,
}

impl ConnectLayer {
    /// A layer accepting request bodies of at most `max_body_bytes` and
    /// deadlines of at most `max_timeout`.
    pub fn new(max_body_bytes: usize, max_timeout: Duration) -> Self {
        ConnectLayer {
            settings: Arc::new(Settings {
                max_body_bytes,
                max_timeout,
            }),
        }
    }
}

impl<S> tower::Layer<S> for ConnectLayer {
    type Service = Connect<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Connect {
            inner,
            settings: self.settings.clone(),
        }
    }
}

/// The service the layer wraps around gRPC-Web and the rest.
#[derive(Debug, Clone)]
pub struct Connect<S> {
    inner: S,
    settings: Arc<Settings>,
}

/// What a request is, by method, path and content type.
enum Route {
    /// Not Connect: gRPC, gRPC-Web, or not a POST to an RPC path.
    PassThrough,
    /// Unary Connect JSON for this method.
    Unary(MethodDescriptor),
    /// Server-streaming Connect JSON for this method.
    Stream(MethodDescriptor),
    /// Answered by the layer itself.
    Refuse(http::Response<Body>),
}

/// The content type of a request, lowercased, without spaces.
fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Whether `path` has the form of an RPC path, `/package.Service/Method`.
fn is_rpc_path(path: &str) -> bool {
    path.strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .is_some_and(|(service, method)| {
            service.contains('.') && !method.is_empty() && !method.contains('/')
        })
}

fn route<B>(request: &http::Request<B>) -> Route {
    if request.method() != http::Method::POST || !is_rpc_path(request.uri().path()) {
        return Route::PassThrough;
    }
    let content_type = content_type(request.headers());
    let streaming = match content_type.as_str() {
        t if t.starts_with("application/grpc") => return Route::PassThrough,
        "application/json" | "application/json;charset=utf-8" => false,
        t if t == stream::CONTENT_TYPE => true,
        _ => {
            return Route::Refuse(refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &Status::unimplemented(
                    "unsupported content type: use application/json (unary calls), \
                     application/connect+json (server streams), application/grpc or \
                     application/grpc-web",
                ),
            ));
        }
    };
    let Some(method) = json::method_of(request.uri().path()) else {
        return Route::Refuse(refuse(
            StatusCode::NOT_FOUND,
            &Status::unimplemented("this server has no such method"),
        ));
    };
    match (
        streaming,
        method.is_client_streaming(),
        method.is_server_streaming(),
    ) {
        (false, false, false) => Route::Unary(method),
        (true, false, true) => Route::Stream(method),
        (_, true, _) => Route::Refuse(refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &Status::unimplemented(format!(
                "{} streams requests; call it over gRPC or gRPC-Web",
                method.name()
            )),
        )),
        (false, _, true) => Route::Refuse(refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &Status::unimplemented(format!(
                "{} streams its answer; send application/connect+json",
                method.name()
            )),
        )),
        (true, _, false) => Route::Refuse(refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &Status::unimplemented(format!("{} is unary; send application/json", method.name())),
        )),
    }
}

/// A unary Connect answer: `body` as JSON with HTTP `status`.
fn json_response(status: StatusCode, body: Vec<u8>) -> http::Response<Body> {
    let mut response = http::Response::new(Body::new(Full::new(Bytes::from(body))));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    response
}

/// A unary Connect error answer with the HTTP status of its code.
fn error_response(status: &Status) -> http::Response<Body> {
    let http_status = StatusCode::from_u16(connect_code(status.code()).1)
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    refuse(http_status, status)
}

/// A Connect error answer with a given HTTP status.
fn refuse(http_status: StatusCode, status: &Status) -> http::Response<Body> {
    json_response(
        http_status,
        error::error_json(status).to_string().into_bytes(),
    )
}

/// Why a request body could not be read.
enum BodyError {
    /// It exceeds the limit.
    TooLarge,
    /// The connection failed while reading it.
    Broken,
}

/// The whole request body, however many chunks it arrives in, if it is at
/// most `max` bytes.
async fn read_body<B>(body: B, max: usize) -> Result<Bytes, BodyError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Err(_) => Err(BodyError::Broken),
    }
}

/// The answer to a body that could not be read.
fn body_error(err: BodyError, max: usize) -> http::Response<Body> {
    match err {
        BodyError::TooLarge => refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            &Status::resource_exhausted(format!("request body exceeds the limit of {max} bytes")),
        ),
        BodyError::Broken => refuse(
            StatusCode::BAD_REQUEST,
            &Status::invalid_argument("the request body could not be read"),
        ),
    }
}

/// The deadline of `Connect-Timeout-Ms` (at most 10 digits), capped at
/// `max`; `None` without the header.
fn connect_timeout(headers: &HeaderMap, max: Duration) -> Result<Option<Duration>, Status> {
    let Some(value) = headers.get("connect-timeout-ms") else {
        return Ok(None);
    };
    let millis = value
        .to_str()
        .ok()
        .filter(|v| !v.is_empty() && v.len() <= 10 && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| {
            Status::invalid_argument("Connect-Timeout-Ms must be a number of milliseconds")
        })?;
    Ok(Some(Duration::from_millis(millis).min(max)))
}

/// Checks the protocol headers a Connect request may carry: a protocol
/// version (only 1 exists) and no compression (the server offers none).
fn check_protocol(headers: &HeaderMap, encoding_header: &str) -> Result<(), Status> {
    if let Some(version) = headers.get("connect-protocol-version")
        && version.as_bytes() != b"1"
    {
        return Err(Status::invalid_argument(
            "Connect-Protocol-Version must be 1",
        ));
    }
    if let Some(encoding) = headers.get(encoding_header)
        && encoding.as_bytes() != b"identity"
    {
        return Err(Status::unimplemented(format!(
            "compressed requests are not supported ({encoding_header}: identity only)"
        )));
    }
    Ok(())
}

/// One gRPC message frame: uncompressed, 4-byte big-endian length, bytes.
fn grpc_frame(message: &[u8]) -> Option<Bytes> {
    let len = u32::try_from(message.len()).ok()?;
    let mut frame = Vec::with_capacity(5 + message.len());
    frame.push(0);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(message);
    Some(Bytes::from(frame))
}

/// The gRPC request a Connect request becomes: the same path, extensions
/// and headers (but the Connect ones), the message as one frame, and the
/// deadline as `grpc-timeout`. HTTP/2, as gRPC is (the HTTP version the
/// client used only matters to the connection, which is already read).
fn grpc_request(
    mut parts: http::request::Parts,
    message: &[u8],
    timeout: Option<Duration>,
) -> Result<http::Request<Body>, Status> {
    let frame = grpc_frame(message)
        .ok_or_else(|| Status::resource_exhausted("the request message is too large"))?;
    let headers = &mut parts.headers;
    for name in [
        "content-length",
        "connect-protocol-version",
        "connect-timeout-ms",
        "connect-content-encoding",
        "connect-accept-encoding",
        "content-encoding",
        "accept-encoding",
        "grpc-timeout",
    ] {
        headers.remove(name);
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
    if let Some(timeout) = timeout {
        // gRPC allows at most 8 digits.
        let millis = timeout.as_millis().min(99_999_999);
        if let Ok(value) = HeaderValue::from_str(&format!("{millis}m")) {
            headers.insert("grpc-timeout", value);
        }
    }
    parts.version = http::Version::HTTP_2;
    Ok(http::Request::from_parts(
        parts,
        Body::new(Full::new(frame)),
    ))
}

/// The status of a gRPC answer whose status came with its headers (a
/// "trailers-only" answer: every error before the handler's first message).
fn status_in_headers(headers: &HeaderMap) -> Option<Status> {
    headers
        .contains_key("grpc-status")
        .then(|| Status::from_header_map(headers))
        .flatten()
}

/// Splits gRPC message frames off the front of `buffer`; an error for a
/// compressed frame (the server compresses nothing it was not asked to).
fn take_frame(buffer: &mut Vec<u8>) -> Result<Option<Vec<u8>>, Status> {
    if buffer.len() < 5 {
        return Ok(None);
    }
    if buffer[0] != 0 {
        return Err(Status::internal("unexpected compressed message"));
    }
    let len = u32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]) as usize;
    if buffer.len() < 5 + len {
        return Ok(None);
    }
    let message = buffer[5..5 + len].to_vec();
    buffer.drain(..5 + len);
    Ok(Some(message))
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Connect<S>
where
    S: Service<http::Request<Body>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    ReqBody: http_body::Body<Data = Bytes> + Send + 'static,
    ReqBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        // The clone that was polled ready serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let settings = self.settings.clone();
        match route(&request) {
            Route::PassThrough => {
                let future = inner.call(request.map(Body::new));
                Box::pin(async move { Ok(future.await?.map(Body::new)) })
            }
            Route::Refuse(response) => Box::pin(async move { Ok(response) }),
            Route::Unary(method) => {
                Box::pin(async move { Ok(unary(inner, &settings, method, request).await) })
            }
            Route::Stream(method) => {
                Box::pin(async move { Ok(stream::call(inner, &settings, method, request).await) })
            }
        }
    }
}

/// A unary Connect call: JSON in, gRPC through the inner layers, JSON out.
async fn unary<S, ReqBody, ResBody>(
    mut inner: S,
    settings: &Settings,
    method: MethodDescriptor,
    request: http::Request<ReqBody>,
) -> http::Response<Body>
where
    S: Service<http::Request<Body>, Response = http::Response<ResBody>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    ReqBody: http_body::Body<Data = Bytes>,
    ReqBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    ResBody: http_body::Body<Data = Bytes>,
    ResBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = request.into_parts();
    let timeout = match check_protocol(&parts.headers, "content-encoding")
        .and_then(|()| connect_timeout(&parts.headers, settings.max_timeout))
    {
        Ok(timeout) => timeout,
        Err(status) => return error_response(&status),
    };
    let body = match read_body(body, settings.max_body_bytes).await {
        Ok(body) => body,
        Err(err) => return body_error(err, settings.max_body_bytes),
    };
    let message = match json::decode(&method.input(), &body) {
        Ok(message) => message,
        Err(reason) => return error_response(&Status::invalid_argument(reason)),
    };
    let grpc = match grpc_request(parts, &message, timeout) {
        Ok(grpc) => grpc,
        Err(status) => return error_response(&status),
    };
    let call = async {
        let response = inner.call(grpc).await.map_err(|err| {
            tracing::warn!(error = %err.into(), "a Connect call failed inside the server");
            Status::internal("internal error")
        })?;
        unary_answer(&method, response).await
    };
    let answer = match timeout {
        Some(timeout) => tokio::time::timeout(timeout, call)
            .await
            .unwrap_or_else(|_| {
                Err(Status::deadline_exceeded(
                    "the call took longer than its Connect-Timeout-Ms",
                ))
            }),
        None => call.await,
    };
    match answer {
        Ok(json) => json_response(StatusCode::OK, json),
        Err(status) => error_response(&status),
    }
}

/// The JSON message of a unary gRPC answer, or its error status.
async fn unary_answer<B>(
    method: &MethodDescriptor,
    response: http::Response<B>,
) -> Result<Vec<u8>, Status>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = response.into_parts();
    if let Some(status) = status_in_headers(&parts.headers) {
        return Err(status);
    }
    let collected = body.collect().await.map_err(|err| {
        tracing::warn!(error = %err.into(), "a Connect call's answer broke off");
        Status::unavailable("the answer broke off; retry")
    })?;
    let status = collected
        .trailers()
        .and_then(Status::from_header_map)
        .unwrap_or_else(|| Status::unknown("the call ended without a status"));
    if status.code() != tonic::Code::Ok {
        return Err(status);
    }
    let mut data = collected.to_bytes().to_vec();
    let message =
        take_frame(&mut data)?.ok_or_else(|| Status::internal("the answer has no message"))?;
    json::encode(&method.output(), &message).map_err(|err| {
        tracing::warn!(error = %err, "a Connect answer cannot be written as JSON");
        Status::internal("internal error")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_paths_are_recognised() {
        assert!(is_rpc_path("/salesmetrics.v1.KpiService/GetKpis"));
        assert!(is_rpc_path("/grpc.health.v1.Health/Check"));
        assert!(!is_rpc_path("/"));
        assert!(!is_rpc_path("/index.html"));
        assert!(!is_rpc_path("/KpiService/GetKpis"));
        assert!(!is_rpc_path("/a.B/c/d"));
    }

    #[test]
    fn connect_timeouts_are_capped_and_checked() {
        let max = Duration::from_secs(300);
        let mut headers = HeaderMap::new();
        assert_eq!(connect_timeout(&headers, max).ok(), Some(None));
        headers.insert("connect-timeout-ms", HeaderValue::from_static("1500"));
        assert_eq!(
            connect_timeout(&headers, max).ok(),
            Some(Some(Duration::from_millis(1500)))
        );
        headers.insert("connect-timeout-ms", HeaderValue::from_static("9999999999"));
        assert_eq!(connect_timeout(&headers, max).ok(), Some(Some(max)));
        for bad in ["", "-1", "1.5", "12345678901", "soon"] {
            headers.insert("connect-timeout-ms", HeaderValue::from_static(bad));
            assert!(connect_timeout(&headers, max).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn frames_are_split_when_whole() {
        let mut buffer = grpc_frame(b"abc").expect("frame").to_vec();
        buffer.extend_from_slice(&grpc_frame(b"").expect("frame")[..3]);
        assert_eq!(take_frame(&mut buffer).ok(), Some(Some(b"abc".to_vec())));
        assert_eq!(take_frame(&mut buffer).ok(), Some(None));
        buffer.extend_from_slice(&[0, 0]);
        assert_eq!(take_frame(&mut buffer).ok(), Some(Some(Vec::new())));
        assert!(buffer.is_empty());
    }
}
