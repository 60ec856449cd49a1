//! HTTP/JSON (the Connect protocol): every unary RPC answers JSON over
//! plain HTTP/1.1 on the gRPC port, with the same values as over gRPC, and
//! the examples of docs/api.md run with `curl` give the documented output.

use prost_types::Timestamp;
use salesmetrics::config::{AuthMode, ServeConfig};
use salesmetrics::proto::v1 as pb;
use serde_json::{Value, json};

use super::db;
use super::harness::{TestServer, backend_tests, http1};

/// The admin token of the servers with authentication.
const ADMIN: &str = "connect-admin-token-0123456789";

/// 2024-03-01T00:00:00Z.
const T0: i64 = 1_709_251_200;

/// An answer: HTTP status, content type, JSON body.
struct JsonAnswer {
    status: u16,
    content_type: Option<String>,
    body: Value,
}

/// POST `json` to `/<method>` as `application/json`, with `extra` header lines.
async fn post(server: &TestServer, method: &str, json: &str, extra: &str) -> JsonAnswer {
    post_raw(server, method, "application/json", json.as_bytes(), extra).await
}

/// POST `body` to `/<method>` with `content_type` and `extra` header lines.
async fn post_raw(
    server: &TestServer,
    method: &str,
    content_type: &str,
    body: &[u8],
    extra: &str,
) -> JsonAnswer {
    let head = format!("POST /{method} HTTP/1.1\r\nContent-Type: {content_type}\r\n{extra}");
    let response = http1(server.addr, &head, body).await;
    let parsed = serde_json::from_slice(&response.body).unwrap_or_else(|_| {
        panic!(
            "{method}: JSON answer expected, got {} {:?}",
            response.status,
            String::from_utf8_lossy(&response.body)
        )
    });
    JsonAnswer {
        status: response.status,
        content_type: response.header("content-type").map(str::to_string),
        body: parsed,
    }
}

/// The JSON of an order of `minor_units` USD cents at [`T0`] by rep r1.
fn order_json(id: &str, minor_units: i64) -> Value {
    json!({"order": {
        "id": id,
        "amount": {"currencyCode": "USD", "minorUnits": minor_units.to_string()},
        "orderedAt": "2024-03-01T00:00:00Z",
        "customerId": "c1",
        "repId": "r1"
    }})
}

/// GetKpis of March 2024 (company), revenue only, as JSON.
const GET_REVENUE: &str = r#"{"period": {"calendar": {"granularity": "GRANULARITY_MONTH",
    "date": {"year": 2024, "month": 3, "day": 1}}}, "kpiIds": ["revenue"]}"#;

backend_tests! {
    /// Two orders (19.99 and 5.01 USD) ingested as JSON make March 2024's
    /// revenue 2500 cents, in GetKpis over JSON and over gRPC alike; the
    /// series, breakdown, catalog, deletion, tenant settings and health
    /// answer JSON too, each with its hand-checked values.
    #[tokio::test]
    async fn every_unary_rpc_answers_json(server: TestServer) {
        let batch = json!({"records": [order_json("o1", 1999), order_json("o2", 501)]});
        let ingested = post(&server, "salesmetrics.v1.IngestService/IngestBatch", &batch.to_string(), "").await;
        assert_eq!(ingested.status, 200, "{}", ingested.body);
        assert_eq!(ingested.content_type.as_deref(), Some("application/json"));
        assert_eq!(ingested.body["result"]["acceptedCount"], 2, "{}", ingested.body);
        assert_eq!(ingested.body["result"]["results"][1]["outcome"], "RECORD_OUTCOME_ACCEPTED");
        assert_eq!(ingested.body["result"]["results"][1]["id"], "o2");

        let kpis = post(&server, "salesmetrics.v1.KpiService/GetKpis", GET_REVENUE, "Connect-Protocol-Version: 1\r\nConnect-Timeout-Ms: 10000\r\n").await;
        assert_eq!(kpis.status, 200, "{}", kpis.body);
        let bundle = &kpis.body["bundle"];
        assert_eq!(bundle["currencyCode"], "USD");
        assert_eq!(bundle["period"]["startDate"], json!({"year": 2024, "month": 3, "day": 1}));
        assert_eq!(bundle["period"]["start"], "2024-03-01T00:00:00Z");
        let revenue = &bundle["values"][0];
        assert_eq!(revenue["kpiId"], "revenue");
        assert_eq!(revenue["unit"], "UNIT_MONEY");
        assert_eq!(revenue["value"], 2500.0);
        // int64 travels as a string in the proto3 JSON mapping.
        assert_eq!(revenue["exactValue"], "2500");

        // The same request over gRPC gives the same bundle.
        let grpc = server
            .kpi()
            .await
            .get_kpis(pb::GetKpisRequest {
                period: Some(pb::Period {
                    period: Some(pb::period::Period::Calendar(pb::CalendarPeriod {
                        granularity: pb::Granularity::Month as i32,
                        date: Some(pb::Date { year: 2024, month: 3, day: 1 }),
                    })),
                }),
                kpi_ids: vec!["revenue".into()],
                ..Default::default()
            })
            .await
            .expect("GetKpis over gRPC")
            .into_inner();
        let grpc_revenue = &grpc.bundle.expect("bundle").values[0];
        assert_eq!(grpc_revenue.value, Some(2500.0));
        assert_eq!(grpc_revenue.exact_value, Some(2500));

        let series = post(&server, "salesmetrics.v1.KpiService/GetKpiSeries", r#"{"granularity": "GRANULARITY_MONTH",
            "firstPeriodDate": {"year": 2024, "month": 2, "day": 1}, "periodCount": 2, "kpiIds": ["revenue"]}"#, "").await;
        assert_eq!(series.status, 200, "{}", series.body);
        assert_eq!(series.body["bundles"][0]["values"][0]["value"], 0.0);
        assert_eq!(series.body["bundles"][1]["values"][0]["value"], 2500.0);

        let breakdown = post(&server, "salesmetrics.v1.KpiService/GetBreakdown", r#"{"period": {"calendar": {"granularity": "GRANULARITY_MONTH",
            "date": {"year": 2024, "month": 3, "day": 1}}}, "dimension": "DIMENSION_REP", "kpiIds": ["revenue"]}"#, "").await;
        assert_eq!(breakdown.status, 200, "{}", breakdown.body);
        assert_eq!(breakdown.body["rows"][0]["key"], "r1");
        assert_eq!(breakdown.body["rows"][0]["values"][0]["value"], 2500.0);
        assert_eq!(breakdown.body["rows"].as_array().map(Vec::len), Some(1));

        let catalog = post(&server, "salesmetrics.v1.KpiService/ListKpis", "{}", "").await;
        assert_eq!(catalog.status, 200);
        assert_eq!(catalog.body["kpis"].as_array().map(Vec::len), Some(65));
        assert_eq!(catalog.body["kpis"][0]["id"], "revenue");

        let deleted = post(&server, "salesmetrics.v1.IngestService/DeleteRecords",
            r#"{"recordType": "RECORD_TYPE_ORDER", "ids": ["o2", "nope"]}"#, "").await;
        assert_eq!(deleted.status, 200, "{}", deleted.body);
        assert_eq!(deleted.body, json!({"deletedCount": 1}));
        let kpis = post(&server, "salesmetrics.v1.KpiService/GetKpis", GET_REVENUE, "").await;
        assert_eq!(kpis.body["bundle"]["values"][0]["value"], 1999.0);

        let settings = post(&server, "salesmetrics.v1.AdminService/GetTenantSettings", r#"{"tenantId": "default"}"#, "").await;
        assert_eq!(settings.status, 200, "{}", settings.body);
        assert_eq!(settings.body["tenantId"], "default");
        assert_eq!(settings.body["settings"]["currencyCode"], "USD");
        let mut changed = settings.body["settings"].clone();
        changed["fiscalYearStartMonth"] = json!(4);
        let updated = post(&server, "salesmetrics.v1.AdminService/UpdateTenantSettings",
            &json!({"tenantId": "default", "settings": changed}).to_string(), "").await;
        assert_eq!(updated.status, 200, "{}", updated.body);
        assert_eq!(updated.body["settings"]["fiscalYearStartMonth"], 4);

        let health = post(&server, "grpc.health.v1.Health/Check", "{}", "").await;
        assert_eq!(health.body, json!({"status": "SERVING"}));
        server.stop().await;
    }

    /// An invalid record in an all-or-nothing batch is 400 invalid_argument
    /// with a `google.rpc.BadRequest` detail naming the field, in its
    /// protobuf (base64) and JSON forms; nothing is stored.
    #[tokio::test]
    async fn errors_carry_their_details(server: TestServer) {
        let batch = json!({"records": [order_json("o1", 100), order_json("o2", -5)], "allOrNothing": true});
        let answer = post(&server, "salesmetrics.v1.IngestService/IngestBatch", &batch.to_string(), "").await;
        assert_eq!(answer.status, 400, "{}", answer.body);
        assert_eq!(answer.content_type.as_deref(), Some("application/json"));
        assert_eq!(answer.body["code"], "invalid_argument");
        let detail = &answer.body["details"][0];
        assert_eq!(detail["type"], "google.rpc.BadRequest");
        let violation = &detail["debug"]["fieldViolations"][0];
        assert_eq!(violation["field"], "records[1].order.amount", "{}", answer.body);
        assert_eq!(violation["description"], "must be > 0, got -5");
        let value = detail["value"].as_str().expect("base64 value");
        assert!(!value.is_empty() && !value.ends_with('='), "{value}");

        let kpis = post(&server, "salesmetrics.v1.KpiService/GetKpis", GET_REVENUE, "").await;
        assert_eq!(kpis.body["bundle"]["values"][0]["value"], 0.0, "nothing stored");

        // A request the handler rejects: GetKpis without a period.
        let answer = post(&server, "salesmetrics.v1.KpiService/GetKpis", "{}", "").await;
        assert_eq!(answer.status, 400);
        assert_eq!(answer.body["details"][0]["debug"]["fieldViolations"][0]["field"], "period");
        server.stop().await;
    }
}

/// Settings with authentication on and [`ADMIN`] as the admin token.
fn secure_config() -> ServeConfig {
    let mut config = ServeConfig::for_database("");
    config.auth = AuthMode::On;
    config.admin_token = Some(ADMIN.into());
    config
}

/// With authentication on, the `authorization` header passes through: the
/// admin token creates a tenant and a key over JSON; a KPI call without a
/// key is 401 unauthenticated, with the key 200; once the key is revoked
/// (over JSON) it is 401 again.
#[tokio::test]
async fn authentication_applies_to_json_calls() {
    let (dir, url) = db::fresh_sqlite().await;
    let server = TestServer::start("sqlite", url, secure_config(), Some(dir)).await;
    let admin = format!("Authorization: Bearer {ADMIN}\r\n");
    let created = post(
        &server,
        "salesmetrics.v1.AdminService/CreateTenant",
        r#"{"tenantId": "acme"}"#,
        &admin,
    )
    .await;
    assert_eq!(created.status, 200, "{}", created.body);
    assert_eq!(created.body["tenantId"], "acme");
    let no_admin = post(
        &server,
        "salesmetrics.v1.AdminService/CreateTenant",
        r#"{"tenantId": "other"}"#,
        "",
    )
    .await;
    assert_eq!(no_admin.status, 401);
    let key = post(
        &server,
        "salesmetrics.v1.AdminService/CreateApiKey",
        r#"{"tenantId": "acme", "name": "dashboard"}"#,
        &admin,
    )
    .await;
    assert_eq!(key.status, 200, "{}", key.body);
    let secret = key.body["key"].as_str().expect("key").to_string();
    let key_id = key.body["apiKey"]["keyId"]
        .as_str()
        .expect("key id")
        .to_string();

    let anonymous = post(
        &server,
        "salesmetrics.v1.KpiService/GetKpis",
        GET_REVENUE,
        "",
    )
    .await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(
        anonymous.body,
        json!({"code": "unauthenticated", "message": "missing or invalid credentials"})
    );
    let tenant = format!("Authorization: Bearer {secret}\r\n");
    let allowed = post(
        &server,
        "salesmetrics.v1.KpiService/GetKpis",
        GET_REVENUE,
        &tenant,
    )
    .await;
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    assert_eq!(allowed.body["bundle"]["values"][0]["value"], 0.0);

    let listed = post(
        &server,
        "salesmetrics.v1.AdminService/ListApiKeys",
        r#"{"tenantId": "acme"}"#,
        &admin,
    )
    .await;
    assert_eq!(listed.body["apiKeys"][0]["keyId"], key_id.as_str());
    let revoked = post(
        &server,
        "salesmetrics.v1.AdminService/RevokeApiKey",
        &json!({ "keyId": key_id }).to_string(),
        &admin,
    )
    .await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    let refused = post(
        &server,
        "salesmetrics.v1.KpiService/GetKpis",
        GET_REVENUE,
        &tenant,
    )
    .await;
    assert_eq!(refused.status, 401);
    server.stop().await;
}

/// What the layer answers itself: 415 for a content type that is neither
/// JSON, gRPC nor gRPC-Web (and for unary JSON to a streaming method), 404
/// unimplemented for an unknown method, 400 invalid_argument for a body
/// that is not JSON or names an unknown field (cut short), and for a bad
/// Connect-Timeout-Ms; `application/json; charset=utf-8` is JSON too.
#[tokio::test]
async fn bad_requests_get_clear_answers() {
    let server = TestServer::sqlite().await;
    let text = post_raw(
        &server,
        "salesmetrics.v1.KpiService/ListKpis",
        "text/plain",
        b"{}",
        "",
    )
    .await;
    assert_eq!(text.status, 415);
    assert_eq!(text.body["code"], "unimplemented");
    let streaming = post(
        &server,
        "salesmetrics.v1.IngestService/ExportRecords",
        "{}",
        "",
    )
    .await;
    assert_eq!(streaming.status, 415);
    assert_eq!(
        streaming.body["message"],
        "ExportRecords streams its answer; send application/connect+json"
    );

    let unknown = post(
        &server,
        "salesmetrics.v1.KpiService/GetEverything",
        "{}",
        "",
    )
    .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(
        unknown.body,
        json!({"code": "unimplemented", "message": "this server has no such method"})
    );

    let broken = post(
        &server,
        "salesmetrics.v1.KpiService/GetKpis",
        r#"{"kpiIds": ["#,
        "",
    )
    .await;
    assert_eq!(broken.status, 400);
    assert_eq!(
        broken.body,
        json!({"code": "invalid_argument",
               "message": "the request body is not valid JSON (line 1, column 12)"})
    );
    let long_name = "k".repeat(5000);
    let unknown_field = post(
        &server,
        "salesmetrics.v1.KpiService/GetKpis",
        &format!(r#"{{"{long_name}": 1}}"#),
        "",
    )
    .await;
    assert_eq!(unknown_field.status, 400);
    assert_eq!(
        unknown_field.body["message"],
        "salesmetrics.v1.GetKpisRequest has no field \"kkkkkkkkkkkkkkkk\"… (line 1, column 5003)"
    );

    let charset = post_raw(
        &server,
        "salesmetrics.v1.KpiService/ListKpis",
        "application/json; charset=utf-8",
        b"{}",
        "",
    )
    .await;
    assert_eq!(charset.status, 200);
    assert_eq!(charset.body["kpis"][0]["id"], "revenue");

    let bad_timeout = post(
        &server,
        "salesmetrics.v1.KpiService/ListKpis",
        "{}",
        "Connect-Timeout-Ms: soon\r\n",
    )
    .await;
    assert_eq!(bad_timeout.status, 400);
    assert_eq!(
        bad_timeout.body["message"],
        "Connect-Timeout-Ms must be a number of milliseconds"
    );
    server.stop().await;
}

/// A body above `--max-message-bytes` (1000 here) is 413
/// resource_exhausted, whether it comes with a length or in chunks; a body
/// below it in several chunks is read whole.
#[tokio::test]
async fn bodies_are_limited_and_may_arrive_in_chunks() {
    let (dir, url) = db::fresh_sqlite().await;
    let mut config = ServeConfig::for_database("");
    config.max_message_bytes = 1000;
    let server = TestServer::start("sqlite", url, config, Some(dir)).await;
    let padding = " ".repeat(1200);
    let big = post(
        &server,
        "salesmetrics.v1.KpiService/ListKpis",
        &format!("{{{padding}}}"),
        "",
    )
    .await;
    assert_eq!(big.status, 413);
    assert_eq!(
        big.body,
        json!({"code": "resource_exhausted",
               "message": "request body exceeds the limit of 1000 bytes"})
    );

    let (status, body) = chunked(&server, &["{\"kpiIds\":", " [\"rev", "enue\"],", &padding]).await;
    assert_eq!(status, 413, "{body}");
    let (status, body) = chunked(
        &server,
        &[
            "{\"period\": {\"calendar\": {\"granularity\": \"GRANULARITY_MONTH\",",
            " \"date\": {\"year\": 2024, \"month\": 3, \"day\": 1}}},",
            " \"kpiIds\": [\"rev",
            "enue\"]}",
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["bundle"]["values"][0]["kpiId"], "revenue");
    server.stop().await;
}

/// GetKpis as JSON sent with `Transfer-Encoding: chunked`, one chunk per
/// piece, each written separately.
async fn chunked(server: &TestServer, pieces: &[&str]) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /salesmetrics.v1.KpiService/GetKpis HTTP/1.1\r\nHost: {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n",
        server.addr
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    for piece in pieces {
        let chunk = format!("{:x}\r\n{piece}\r\n", piece.len());
        stream.write_all(chunk.as_bytes()).await.expect("chunk");
        stream.flush().await.expect("flush");
    }
    stream.write_all(b"0\r\n\r\n").await.expect("last chunk");
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("answer within 20 s")
    .expect("read");
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        // One chunk is enough for these small answers.
        body.split_once("\r\n")
            .map(|(_, rest)| rest.rsplit_once("\r\n0\r\n").map_or(rest, |(b, _)| b))
            .unwrap_or(body)
            .to_string()
    } else {
        body.to_string()
    };
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// With `--cors-allow-origin`, a browser's preflight for a JSON call (the
/// Connect headers included) is allowed, and the call's answer carries the
/// origin.
#[tokio::test]
async fn cors_allows_json_calls() {
    let (dir, url) = db::fresh_sqlite().await;
    let mut config = ServeConfig::for_database("");
    config.cors_allow_origin = vec!["https://dash.example.com".into()];
    let server = TestServer::start("sqlite", url, config, Some(dir)).await;
    let preflight = http1(
        server.addr,
        "OPTIONS /salesmetrics.v1.KpiService/GetKpis HTTP/1.1\r\n\
         Origin: https://dash.example.com\r\n\
         Access-Control-Request-Method: POST\r\n\
         Access-Control-Request-Headers: content-type,connect-protocol-version,connect-timeout-ms,authorization\r\n",
        &[],
    )
    .await;
    assert_eq!(preflight.status, 200, "{}", preflight.head);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("https://dash.example.com")
    );
    let allowed = preflight
        .header("access-control-allow-headers")
        .expect("allowed headers");
    for name in [
        "content-type",
        "connect-protocol-version",
        "connect-timeout-ms",
        "authorization",
    ] {
        assert!(allowed.contains(name), "{name} in {allowed}");
    }
    let call = http1(
        server.addr,
        "POST /salesmetrics.v1.KpiService/ListKpis HTTP/1.1\r\n\
         Origin: https://dash.example.com\r\nContent-Type: application/json\r\n",
        b"{}",
    )
    .await;
    assert_eq!(call.status, 200);
    assert_eq!(
        call.header("access-control-allow-origin"),
        Some("https://dash.example.com")
    );
    server.stop().await;
}

/// Every `curl` example of docs/api.md (a ```sh block starting with
/// `curl`), run against a test server, prints the JSON of the ```json block
/// that follows it.
#[tokio::test]
async fn the_documented_curl_examples_print_the_documented_answers() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md"))
        .expect("read docs/api.md");
    let examples = curl_examples(&doc);
    assert!(examples.len() >= 3, "{} examples", examples.len());
    let server = TestServer::sqlite().await;
    for (command, expected) in examples {
        let command = command.replace("127.0.0.1:50051", &server.addr.to_string());
        let shell = command.clone();
        let output = tokio::task::spawn_blocking(move || {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(&shell)
                .output()
        })
        .await
        .expect("curl thread")
        .expect("run curl");
        assert!(output.status.success(), "{command}: {output:?}");
        let printed: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
            panic!(
                "{command} printed {:?}",
                String::from_utf8_lossy(&output.stdout)
            )
        });
        let expected: Value = serde_json::from_str(&expected).expect("documented JSON");
        assert_eq!(printed, expected, "{command}");
    }
    server.stop().await;
}

/// The (command, expected JSON) pairs of the `curl` examples in `doc`.
fn curl_examples(doc: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(lang) = line.strip_prefix("```") else {
            continue;
        };
        let lang = lang.trim().to_string();
        let body: Vec<&str> = lines
            .by_ref()
            .take_while(|l| !l.starts_with("```"))
            .collect();
        blocks.push((lang, body.join("\n")));
    }
    blocks
        .windows(2)
        .filter(|pair| pair[0].0 == "sh" && pair[0].1.trim_start().starts_with("curl"))
        .map(|pair| {
            assert_eq!(
                pair[1].0, "json",
                "a curl example is followed by its answer"
            );
            (pair[0].1.clone(), pair[1].1.clone())
        })
        .collect()
}

/// The same ingest over gRPC and JSON stores the same record: a JSON order
/// is read back through gRPC's ExportRecords with its exact values.
#[tokio::test]
async fn json_records_are_stored_exactly() {
    let server = TestServer::sqlite().await;
    let batch = json!({"records": [order_json("o9", 123_456_789_012)]});
    let answer = post(
        &server,
        "salesmetrics.v1.IngestService/IngestBatch",
        &batch.to_string(),
        "",
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let mut export = server
        .ingest()
        .await
        .export_records(pb::ExportRecordsRequest {
            record_type: pb::RecordType::Order as i32,
        })
        .await
        .expect("export")
        .into_inner();
    let page = export.message().await.expect("page").expect("one page");
    let Some(pb::record::Record::Order(order)) = &page.records[0].record else {
        panic!("an order: {page:?}");
    };
    assert_eq!(
        order.amount,
        Some(pb::Money {
            currency_code: "USD".into(),
            minor_units: 123_456_789_012
        })
    );
    assert_eq!(
        order.ordered_at,
        Some(Timestamp {
            seconds: T0,
            nanos: 0
        })
    );
    server.stop().await;
}

/// A server-streaming method over `application/connect+json`:
/// ExportRecords sends its page of two orders as one envelope, then the
/// end-of-stream envelope `{}`.
#[tokio::test]
async fn server_streams_answer_connect_envelopes() {
    let server = TestServer::sqlite().await;
    let batch = json!({"records": [order_json("o1", 100), order_json("o2", 200)]});
    let answer = post(
        &server,
        "salesmetrics.v1.IngestService/IngestBatch",
        &batch.to_string(),
        "",
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let json = br#"{"recordType": "RECORD_TYPE_ORDER"}"#;
    let mut body = vec![0];
    body.extend_from_slice(&u32::try_from(json.len()).expect("small").to_be_bytes());
    body.extend_from_slice(json);
    let answer = http1(
        server.addr,
        "POST /salesmetrics.v1.IngestService/ExportRecords HTTP/1.1\r\n\
         Content-Type: application/connect+json\r\n",
        &body,
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("content-type"),
        Some("application/connect+json")
    );
    let mut envelopes = Vec::new();
    let mut rest = answer.body.as_slice();
    while let [flags, a, b, c, d, tail @ ..] = rest {
        let len = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
        let message: Value = serde_json::from_slice(&tail[..len]).expect("JSON");
        envelopes.push((*flags, message));
        rest = &tail[len..];
    }
    assert_eq!(envelopes.len(), 2, "{envelopes:?}");
    assert_eq!(envelopes[0].0, 0);
    let ids: Vec<&Value> = envelopes[0].1["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| &r["order"]["id"])
        .collect();
    assert_eq!(ids, [&json!("o1"), &json!("o2")]);
    assert_eq!(envelopes[1], (2, json!({})));
    server.stop().await;
}
