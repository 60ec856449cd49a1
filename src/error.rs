//! The service's error type and its one mapping to gRPC status codes.
//! Internal details are logged here and never returned to the caller.

use tonic::{Code, Status};

/// Result with the service's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input; `field` is the path of the offending field. → INVALID_ARGUMENT
    /// with `google.rpc.BadRequest` details.
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// Path of the offending field, e.g. `records[2].deal.closed_at`.
        field: String,
        /// Why, in words.
        reason: String,
    },
    /// Several bad records in one all-or-nothing batch. → INVALID_ARGUMENT with
    /// one `BadRequest` field violation each.
    #[error("{} invalid field(s), first: {}", .0.len(), .0.first().map(|(f, r)| format!("{f}: {r}")).unwrap_or_default())]
    InvalidFields(Vec<(String, String)>),
    /// A named team, rep or tenant does not exist. → NOT_FOUND
    #[error("{0}")]
    NotFound(String),
    /// The entity to create exists already (a tenant id). → ALREADY_EXISTS
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is valid but the current state forbids it. → FAILED_PRECONDITION
    #[error("{0}")]
    FailedPrecondition(String),
    /// A limit was exceeded. → RESOURCE_EXHAUSTED
    #[error("{0}")]
    ResourceExhausted(String),
    /// The database cannot be reached, or stays busy past its timeout; the
    /// call may be retried. → UNAVAILABLE, the cause logged only. The cause is
    /// whatever the backend reported (a driver error, a timeout), so no
    /// backend's error type leaks into the others.
    #[error("the database is unavailable; retry later")]
    Unavailable(#[source] anyhow::Error),
    /// A bug or an unexpected database error. → INTERNAL, details logged only.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl Error {
    /// An INVALID_ARGUMENT error for one field.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// An UNAVAILABLE error with a cause for the log.
    pub fn unavailable(cause: impl std::fmt::Display) -> Self {
        Error::Unavailable(anyhow::anyhow!("{cause}"))
    }

    /// An internal error with a message for the log.
    pub fn internal(message: impl std::fmt::Display) -> Self {
        Error::Internal(anyhow::anyhow!("{message}"))
    }
}

/// Client text as echoed in an error message: quoted, and cut after 16
/// characters (then `…`). Every echo of a request value goes through here,
/// so an error stays small whatever the client sent: an error message
/// travels in a response header, which clients limit in size (a huge echo
/// would turn the real error into "metadata size exceeds hard limit").
pub fn quote(s: &str) -> String {
    const MAX: usize = 16;
    if s.chars().count() <= MAX {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head:?}…")
    }
}

/// The start of tonic's message for a request message above
/// `max_decoding_message_size` (answered with OUT_OF_RANGE by tonic).
const TONIC_OVERSIZE: &str = "Error, decoded message length too large";

/// The starts of tonic's messages for request bytes it cannot decode, all
/// answered with INTERNAL by tonic: not protobuf (prost's decode error, whose
/// text varies with the bytes), a bad gRPC frame, a body that ends inside a
/// frame, a unary call without a message.
const TONIC_UNDECODABLE: [&str; 4] = [
    "failed to decode Protobuf message",
    "protocol error: received message with",
    "Unexpected EOF decoding stream",
    "Missing request message",
];

/// The one answer to request bytes that cannot be decoded. Fixed, so that
/// nothing of the client's bytes (nor of the decoder's state) is echoed.
pub const UNDECODABLE_REQUEST: &str = "the request message cannot be decoded";

/// Relabels the statuses tonic itself answers when it cannot read a request
/// message, before any handler code runs; both are the client's fault, not
/// the server's:
///
/// * OUT_OF_RANGE for a message above the size limit becomes
///   RESOURCE_EXHAUSTED, the code of every limit, with a plain message;
/// * INTERNAL for undecodable bytes becomes INVALID_ARGUMENT with the fixed
///   message [`UNDECODABLE_REQUEST`].
///
/// Any other status is returned unchanged (the service's own INTERNAL
/// answers say "internal error", which matches none of tonic's texts).
pub fn relabel_request_error(status: Status) -> Status {
    match status.code() {
        Code::OutOfRange if status.message().starts_with(TONIC_OVERSIZE) => {}
        Code::Internal
            if TONIC_UNDECODABLE
                .iter()
                .any(|start| status.message().starts_with(start)) =>
        {
            return Status::invalid_argument(UNDECODABLE_REQUEST);
        }
        _ => return status,
    }
    // "…: found 123 bytes, the limit is: 100 bytes"
    let numbers: Vec<&str> = status
        .message()
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .collect();
    match numbers.as_slice() {
        [found, limit] => Status::resource_exhausted(format!(
            "request message of {found} bytes exceeds the limit of {limit} bytes"
        )),
        _ => Status::resource_exhausted("request message exceeds the size limit"),
    }
}

/// [`relabel_request_error`] for a gRPC response whose status is in its
/// headers (a trailers-only error response, as tonic sends when it cannot
/// decode a unary request).
pub fn relabel_request_error_response<B>(response: &mut tonic::codegen::http::Response<B>) {
    let headers = response.headers_mut();
    // OUT_OF_RANGE or INTERNAL: the only codes relabelled.
    if !matches!(
        headers.get("grpc-status").map(|v| v.as_bytes()),
        Some(b"11" | b"13")
    ) {
        return;
    }
    let Some(status) = Status::from_header_map(headers) else {
        return;
    };
    let before = status.code();
    let relabelled = relabel_request_error(status);
    if relabelled.code() != before {
        headers.remove("grpc-message");
        headers.remove("grpc-status-details-bin");
        // Cannot fail: the message is ASCII text.
        let _ = relabelled.add_header(headers);
    }
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_)
            // A broken conversation with the database (e.g. a connection
            // cut while TLS is negotiated): a new connection may work.
            | sqlx::Error::Protocol(_) => Error::Unavailable(err.into()),
            sqlx::Error::Database(db) if is_unavailable_code(db.code().as_deref()) => {
                Error::Unavailable(err.into())
            }
            _ => Error::Internal(err.into()),
        }
    }
}

/// PostgreSQL SQLSTATE classes that mean "the server is going away or not ready"
/// (57P01 admin shutdown, 57P03 cannot connect now, 08xxx connection exceptions)
/// and SQLite's busy / locked codes.
fn is_unavailable_code(code: Option<&str>) -> bool {
    match code {
        Some(c) => {
            c.starts_with("08")
                || c == "57P01"
                || c == "57P02"
                || c == "57P03"
                || c == "5"
                || c == "6"
        }
        None => false,
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        use tonic_types::{ErrorDetails, StatusExt};
        match err {
            Error::InvalidArgument { field, reason } => {
                let details =
                    ErrorDetails::with_bad_request_violation(field.clone(), reason.clone());
                Status::with_error_details(
                    Code::InvalidArgument,
                    format!("{field}: {reason}"),
                    details,
                )
            }
            Error::InvalidFields(violations) => {
                let message = Error::InvalidFields(violations.clone()).to_string();
                let mut details = ErrorDetails::new();
                for (field, reason) in violations {
                    details.add_bad_request_violation(field, reason);
                }
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            Error::NotFound(m) => Status::not_found(m),
            Error::AlreadyExists(m) => Status::already_exists(m),
            Error::FailedPrecondition(m) => Status::failed_precondition(m),
            Error::ResourceExhausted(m) => Status::resource_exhausted(m),
            Error::Unavailable(source) => {
                tracing::warn!(error = %source, "database unavailable");
                Status::unavailable("the database is unavailable; retry later")
            }
            Error::Internal(source) => {
                tracing::error!(error = ?source, "internal error");
                Status::internal("internal error")
            }
        }
    }
}
