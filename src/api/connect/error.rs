//! Connect errors: the JSON form of a gRPC status, and its HTTP status.

use base64::Engine as _;
use prost::Message as _;
use tonic::{Code, Status};

use super::json;

/// The Connect name of a gRPC code and the HTTP status of a unary answer
/// carrying it (the Connect protocol's table).
pub fn connect_code(code: Code) -> (&'static str, u16) {
    match code {
        Code::Ok => ("ok", 200),
        Code::Cancelled => ("canceled", 499),
        Code::Unknown => ("unknown", 500),
        Code::InvalidArgument => ("invalid_argument", 400),
        Code::DeadlineExceeded => ("deadline_exceeded", 504),
        Code::NotFound => ("not_found", 404),
        Code::AlreadyExists => ("already_exists", 409),
        Code::PermissionDenied => ("permission_denied", 403),
        Code::ResourceExhausted => ("resource_exhausted", 429),
        Code::FailedPrecondition => ("failed_precondition", 400),
        Code::Aborted => ("aborted", 409),
        Code::OutOfRange => ("out_of_range", 400),
        Code::Unimplemented => ("unimplemented", 501),
        Code::Internal => ("internal", 500),
        Code::Unavailable => ("unavailable", 503),
        Code::DataLoss => ("data_loss", 500),
        Code::Unauthenticated => ("unauthenticated", 401),
    }
}

/// The Connect error object of a status: `code`, `message` (when not
/// empty) and `details`, one per `google.protobuf.Any` of the status's
/// `grpc-status-details-bin`: `type` (the message's full name), `value`
/// (its protobuf bytes, base64) and `debug` (its JSON, for types the server
/// knows, such as `google.rpc.BadRequest`).
pub fn error_json(status: &Status) -> serde_json::Value {
    let mut error = serde_json::Map::new();
    error.insert("code".into(), connect_code(status.code()).0.into());
    if !status.message().is_empty() {
        error.insert("message".into(), status.message().into());
    }
    let details: Vec<serde_json::Value> = tonic_types::pb::Status::decode(status.details())
        .map(|s| s.details)
        .unwrap_or_default()
        .into_iter()
        .map(|any| {
            let type_name = any.type_url.rsplit('/').next().unwrap_or_default();
            let mut detail = serde_json::Map::new();
            detail.insert("type".into(), type_name.into());
            detail.insert(
                "value".into(),
                base64::engine::general_purpose::STANDARD_NO_PAD
                    .encode(&any.value)
                    .into(),
            );
            if let Some(debug) = json::debug_value(type_name, &any.value) {
                detail.insert("debug".into(), debug);
            }
            serde_json::Value::Object(detail)
        })
        .collect();
    if !details.is_empty() {
        error.insert("details".into(), details.into());
    }
    serde_json::Value::Object(error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::{ErrorDetails, StatusExt};

    #[test]
    fn bad_request_details_are_rendered_with_their_json() {
        let status = Status::with_error_details(
            Code::InvalidArgument,
            "records[0].deal.amount: must not be negative",
            ErrorDetails::with_bad_request_violation(
                "records[0].deal.amount",
                "must not be negative",
            ),
        );
        let json = error_json(&status);
        assert_eq!(json["code"], "invalid_argument");
        assert_eq!(
            json["message"],
            "records[0].deal.amount: must not be negative"
        );
        let detail = &json["details"][0];
        assert_eq!(detail["type"], "google.rpc.BadRequest");
        assert_eq!(
            detail["debug"],
            serde_json::json!({"fieldViolations": [{
                "field": "records[0].deal.amount",
                "description": "must not be negative"
            }]})
        );
        let value = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(detail["value"].as_str().expect("base64 text"))
            .expect("base64");
        let decoded = tonic_types::pb::BadRequest::decode(value.as_slice()).expect("BadRequest");
        assert_eq!(decoded.field_violations[0].field, "records[0].deal.amount");
    }

    #[test]
    fn a_status_without_message_or_details_is_just_a_code() {
        assert_eq!(
            error_json(&Status::new(Code::Unavailable, "")),
            serde_json::json!({"code": "unavailable"})
        );
        assert_eq!(
            connect_code(Code::Unauthenticated),
            ("unauthenticated", 401)
        );
        assert_eq!(
            connect_code(Code::DeadlineExceeded),
            ("deadline_exceeded", 504)
        );
    }
}
