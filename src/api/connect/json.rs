//! The JSON form of the messages (the proto3 JSON mapping), driven by the
//! descriptor set the build produces: no message has hand-written JSON.

use std::sync::LazyLock;

use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, MethodDescriptor};

use crate::error::quote;

/// Every message the server speaks: the public services, health, and the
/// `google.rpc` error details (for the `debug` form of error details).
static DESCRIPTORS: LazyLock<DescriptorPool> = LazyLock::new(|| {
    let mut pool = DescriptorPool::new();
    for set in [
        crate::proto::v1::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_types::pb::FILE_DESCRIPTOR_SET,
    ] {
        pool.decode_file_descriptor_set(set)
            .expect("the built-in descriptor sets decode");
    }
    pool
});

/// The method of an RPC path (`/salesmetrics.v1.KpiService/GetKpis`), if
/// the server has it.
pub fn method_of(path: &str) -> Option<MethodDescriptor> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    DESCRIPTORS
        .get_service_by_name(service)?
        .methods()
        .find(|m| m.name() == method)
}

/// A JSON request body as the protobuf bytes of `message`, or a fixed
/// message saying what is wrong (the offending field's name, cut by
/// [`quote`], when the decoder names one; never the client's text
/// otherwise).
pub fn decode(message: &MessageDescriptor, json: &[u8]) -> Result<Vec<u8>, String> {
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let parsed = DynamicMessage::deserialize(message.clone(), &mut deserializer)
        .and_then(|m| deserializer.end().map(|()| m));
    match parsed {
        Ok(decoded) => Ok(decoded.encode_to_vec()),
        Err(err) => Err(describe(message, &err)),
    }
}

/// What is wrong with a JSON body, without echoing it.
fn describe(message: &MessageDescriptor, err: &serde_json::Error) -> String {
    let name = message.full_name();
    let at = format!("line {}, column {}", err.line(), err.column());
    let text = err.to_string();
    if let Some(field) = quoted_after(&text, "unrecognized field name '") {
        return format!("{name} has no field {} ({at})", quote(field));
    }
    if let Some(value) = quoted_after(&text, "unrecognized enum value '") {
        return format!("unknown enum value {} ({at})", quote(value));
    }
    match err.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            format!("the request body is not valid JSON ({at})")
        }
        _ => format!(
            "the request body is not a {name} in the proto3 JSON mapping: a value has the \
             wrong type or form ({at})"
        ),
    }
}

/// The text between `start` (ending in a quote) and the last quote, if
/// `text` has `start`.
fn quoted_after<'a>(text: &'a str, start: &str) -> Option<&'a str> {
    let rest = &text[text.find(start)? + start.len()..];
    rest.rsplit_once('\'').map(|(quoted, _)| quoted)
}

/// The proto3 JSON of the protobuf bytes of a `message` (defaults omitted,
/// 64-bit integers as strings, enums by name, camelCase field names).
pub fn encode(message: &MessageDescriptor, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let decoded = DynamicMessage::decode(message.clone(), bytes)
        .map_err(|err| format!("cannot decode a {}: {err}", message.full_name()))?;
    serde_json::to_vec(&decoded)
        .map_err(|err| format!("cannot write a {} as JSON: {err}", message.full_name()))
}

/// The readable form of an error detail (`google.protobuf.Any` contents)
/// whose type the server knows, e.g. `google.rpc.BadRequest`.
pub fn debug_value(type_name: &str, bytes: &[u8]) -> Option<serde_json::Value> {
    let message = DESCRIPTORS.get_message_by_name(type_name)?;
    let decoded = DynamicMessage::decode(message, bytes).ok()?;
    serde_json::to_value(&decoded).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get_kpis_request() -> MessageDescriptor {
        method_of("/salesmetrics.v1.KpiService/GetKpis")
            .expect("GetKpis")
            .input()
    }

    #[test]
    fn methods_are_found_by_path() {
        assert_eq!(
            method_of("/salesmetrics.v1.AdminService/CreateTenant")
                .map(|m| m.output().full_name().to_string()),
            Some("salesmetrics.v1.CreateTenantResponse".to_string())
        );
        assert!(method_of("/grpc.health.v1.Health/Check").is_some());
        assert!(method_of("/salesmetrics.v1.KpiService/Nope").is_none());
        assert!(method_of("/salesmetrics.v1.Nope/GetKpis").is_none());
        assert!(method_of("salesmetrics.v1.KpiService").is_none());
    }

    #[test]
    fn both_field_name_forms_are_accepted() {
        let camel = decode(
            &get_kpis_request(),
            br#"{"kpiIds":["revenue"],"timeZone":"UTC"}"#,
        );
        let snake = decode(
            &get_kpis_request(),
            br#"{"kpi_ids":["revenue"],"time_zone":"UTC"}"#,
        );
        assert_eq!(camel, snake);
        let bytes = camel.expect("decodes");
        let request = crate::proto::v1::GetKpisRequest::decode(bytes.as_slice()).expect("proto");
        assert_eq!(request.kpi_ids, ["revenue"]);
        assert_eq!(request.time_zone, "UTC");
    }

    #[test]
    fn errors_name_the_field_but_never_echo_long_text() {
        let long = "x".repeat(10_000);
        let body = format!(r#"{{"{long}": 1}}"#);
        let err = decode(&get_kpis_request(), body.as_bytes()).expect_err("unknown field");
        assert_eq!(
            err,
            "salesmetrics.v1.GetKpisRequest has no field \"xxxxxxxxxxxxxxxx\"… (line 1, column 10003)"
        );
        let body = br#"{"comparison": "COMPARISON_NEXT_CENTURY"}"#;
        let err = decode(&get_kpis_request(), body).expect_err("enum");
        assert_eq!(
            err,
            "unknown enum value \"COMPARISON_NEXT_\"… (line 1, column 40)"
        );
        let err = decode(&get_kpis_request(), b"{\"kpiIds\": [").expect_err("eof");
        assert_eq!(
            err,
            "the request body is not valid JSON (line 1, column 12)"
        );
        let body = format!(r#"{{"timeZone": 7, "x": "{long}"}}"#);
        let err = decode(&get_kpis_request(), body.as_bytes()).expect_err("wrong type");
        assert!(err.starts_with("the request body is not a salesmetrics.v1.GetKpisRequest"));
        assert!(err.len() < 200, "{err}");
        let err = decode(&get_kpis_request(), b"{} {}").expect_err("trailing");
        assert_eq!(err, "the request body is not valid JSON (line 1, column 4)");
    }

    #[test]
    fn responses_follow_the_proto3_json_mapping() {
        let response = crate::proto::v1::FunnelStage {
            index: 0,
            stage: "won".into(),
            reached: 3,
            leakage: None,
        };
        let message = DESCRIPTORS
            .get_message_by_name("salesmetrics.v1.FunnelStage")
            .expect("FunnelStage");
        let json = encode(&message, &response.encode_to_vec()).expect("encodes");
        assert_eq!(
            String::from_utf8(json).expect("utf-8"),
            r#"{"stage":"won","reached":"3"}"#
        );
    }
}
