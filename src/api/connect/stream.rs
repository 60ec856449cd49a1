//! Server-streaming Connect JSON (`application/connect+json`), which a
//! browser reads with `fetch` and a `ReadableStream`.
//!
//! Request and answer bodies are sequences of envelopes: one flags byte, a
//! 4-byte big-endian length, then that many bytes of JSON. The request holds
//! one envelope (the request message); the answer holds one envelope per
//! message and ends with an end-of-stream envelope (flag `0x02`) holding
//! `{}` when the call succeeded or `{"error": {...}}` (the object of a unary
//! error) when it failed. The HTTP status is 200 either way.

use std::pin::Pin;

use futures::StreamExt as _;
use http_body_util::{BodyExt as _, StreamBody};
use prost_reflect::MethodDescriptor;
use tokio::time::Instant;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::http::{self, HeaderValue, StatusCode, header};
use tonic::codegen::{Bytes, Service};

use super::{
    Settings, body_error, check_protocol, connect_timeout, error, error_response, grpc_request,
    json, status_in_headers, take_frame,
};

/// The content type of streaming Connect JSON.
pub const CONTENT_TYPE: &str = "application/connect+json";

/// The flag of the end-of-stream envelope.
const END_STREAM: u8 = 0x02;

/// One envelope.
fn envelope(flags: u8, json: &[u8]) -> Bytes {
    let len = u32::try_from(json.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(5 + json.len());
    out.push(flags);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(json);
    Bytes::from(out)
}

/// The end-of-stream envelope of a call that ended with `status`.
fn end_of_stream(status: &Status) -> Bytes {
    let body = if status.code() == tonic::Code::Ok {
        serde_json::json!({})
    } else {
        serde_json::json!({ "error": error::error_json(status) })
    };
    envelope(END_STREAM, body.to_string().as_bytes())
}

/// The request message of a streaming request body: exactly one
/// uncompressed envelope.
fn request_json(body: &[u8]) -> Result<&[u8], Status> {
    let malformed = || {
        Status::invalid_argument(
            "the request body must be one envelope: flags 0, a 4-byte big-endian length, \
             then the JSON request message",
        )
    };
    let [flags, a, b, c, d, rest @ ..] = body else {
        return Err(malformed());
    };
    let len = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
    if *flags != 0 || rest.len() != len {
        return Err(malformed());
    }
    Ok(rest)
}

/// A streaming answer: `frames` as the body of a 200.
fn streaming_response(
    frames: impl futures::Stream<Item = Bytes> + Send + 'static,
) -> http::Response<Body> {
    let body = StreamBody::new(
        frames.map(|bytes| Ok::<_, std::convert::Infallible>(http_body::Frame::data(bytes))),
    );
    let mut response = http::Response::new(Body::new(body));
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

/// A server-streaming Connect call.
pub(super) async fn call<S, ReqBody, ResBody>(
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
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = request.into_parts();
    // Errors found before the call starts are unary-style answers (an HTTP
    // error status and a JSON error body), as the protocol allows.
    let timeout = match check_protocol(&parts.headers, "connect-content-encoding")
        .and_then(|()| connect_timeout(&parts.headers, settings.max_timeout))
    {
        Ok(timeout) => timeout,
        Err(status) => return error_response(&status),
    };
    let body = match super::read_body(body, settings.max_body_bytes.saturating_add(5)).await {
        Ok(body) => body,
        Err(err) => return body_error(err, settings.max_body_bytes),
    };
    let message = match request_json(&body)
        .and_then(|json| json::decode(&method.input(), json).map_err(Status::invalid_argument))
    {
        Ok(message) => message,
        Err(status) => return error_response(&status),
    };
    let grpc = match grpc_request(parts, &message, timeout) {
        Ok(grpc) => grpc,
        Err(status) => return error_response(&status),
    };
    let deadline = timeout.map(|t| Instant::now() + t);
    let started = async {
        inner.call(grpc).await.map_err(|err| {
            tracing::warn!(error = %err.into(), "a Connect stream failed inside the server");
            Status::internal("internal error")
        })
    };
    let response = match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, started)
            .await
            .unwrap_or_else(|_| Err(deadline_passed())),
        None => started.await,
    };
    let response = match response {
        Ok(response) => response,
        Err(status) => return streaming_response(futures::stream::iter([end_of_stream(&status)])),
    };
    let (parts, body) = response.into_parts();
    if let Some(status) = status_in_headers(&parts.headers) {
        return streaming_response(futures::stream::iter([end_of_stream(&status)]));
    }
    let state = Relay {
        body: Box::pin(body),
        buffer: Vec::new(),
        output: method.output(),
        deadline,
        ended: false,
    };
    streaming_response(futures::stream::unfold(state, Relay::next))
}

/// The status of a stream that outlived its Connect-Timeout-Ms.
fn deadline_passed() -> Status {
    Status::deadline_exceeded("the call took longer than its Connect-Timeout-Ms")
}

/// Turns the gRPC answer of a stream into envelopes, message by message.
struct Relay<B> {
    /// The gRPC answer body.
    body: Pin<Box<B>>,
    /// Bytes of a message frame not yet complete.
    buffer: Vec<u8>,
    /// The type of the messages.
    output: prost_reflect::MessageDescriptor,
    /// When the call's Connect-Timeout-Ms ends it.
    deadline: Option<Instant>,
    /// Whether the end-of-stream envelope was sent.
    ended: bool,
}

impl<B> Relay<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// The next envelope, and the state after it.
    async fn next(mut self) -> Option<(Bytes, Self)> {
        if self.ended {
            return None;
        }
        let status = loop {
            match take_frame(&mut self.buffer) {
                Ok(Some(message)) => match json::encode(&self.output, &message) {
                    Ok(json) => return Some((envelope(0, &json), self)),
                    Err(err) => {
                        tracing::warn!(error = %err, "a streamed message cannot be written as JSON");
                        break Status::internal("internal error");
                    }
                },
                Ok(None) => {}
                Err(status) => break status,
            }
            let frame = match self.deadline {
                Some(deadline) => {
                    match tokio::time::timeout_at(deadline, self.body.frame()).await {
                        Ok(frame) => frame,
                        Err(_) => break deadline_passed(),
                    }
                }
                None => self.body.frame().await,
            };
            match frame {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.buffer.extend_from_slice(&data),
                    Err(frame) => {
                        if let Some(trailers) = frame.trailers_ref() {
                            break Status::from_header_map(trailers).unwrap_or_else(|| {
                                Status::unknown("the call ended without a status")
                            });
                        }
                    }
                },
                Some(Err(err)) => {
                    tracing::debug!(error = %err.into(), "a Connect stream broke off");
                    break Status::unavailable("the stream broke off; retry");
                }
                None => break Status::unknown("the call ended without a status"),
            }
        };
        self.ended = true;
        Some((end_of_stream(&status), self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_one_envelope() {
        let body = envelope(0, b"{}");
        assert_eq!(request_json(&body).ok(), Some(&b"{}"[..]));
        assert!(request_json(&envelope(1, b"{}")).is_err());
        assert!(request_json(&body[..6]).is_err());
        assert!(request_json(b"{}").is_err());
    }

    #[test]
    fn the_end_of_stream_envelope_carries_the_error() {
        let ok = end_of_stream(&Status::ok(""));
        assert_eq!(&ok[..], &[2, 0, 0, 0, 2, b'{', b'}']);
        let failed = end_of_stream(&Status::unavailable("server shutting down"));
        assert_eq!(failed[0], 2);
        let json: serde_json::Value = serde_json::from_slice(&failed[5..]).expect("JSON");
        assert_eq!(
            json,
            serde_json::json!({"error": {"code": "unavailable", "message": "server shutting down"}})
        );
    }
}
