//! What hostile or careless clients send, and what they get back: huge
//! strings in every field, bytes that are not protobuf, floods of unknown
//! keys, keys revoked under an open stream, silent, idle or too many
//! connections, peers that stop answering, endless streams, floods of failed
//! authentications, huge team trees (also while another tenant writes); and
//! the operator's side: start-up errors that say what to fix, and
//! SIGHUP handled like SIGTERM.

use std::time::Duration;

use prost::Message as _;
use prost_types::Timestamp;
use salesmetrics::proto::v1 as pb;
use salesmetrics::proto::v1::record::Record as R;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use super::db;
use super::harness::{TestServer, backend_tests};

/// 2024-03-01T00:00:00Z.
const T0: i64 = 1_709_251_200;

/// Longest error message (or echoed reason) accepted from the server.
const SHORT: usize = 1_000;

/// 100 000 characters of client text, with characters that need escaping.
fn huge() -> String {
    "ab\"é\\".repeat(20_000)
}

/// Asserts `status` has `code` and short texts: its message and every
/// `BadRequest` violation in its details.
fn assert_short(what: &str, status: &Status, code: Code) {
    assert_eq!(status.code(), code, "{what}: {status:?}");
    assert!(
        status.message().len() < SHORT,
        "{what}: a message of {} bytes",
        status.message().len()
    );
    if let Some(bad) = status.get_details_bad_request() {
        for v in bad.field_violations {
            assert!(
                v.field.len() < SHORT && v.description.len() < SHORT,
                "{what}: a violation of {} + {} bytes",
                v.field.len(),
                v.description.len()
            );
        }
    }
}

fn ts(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

fn usd(minor_units: i64) -> Option<pb::Money> {
    Some(pb::Money {
        currency_code: "USD".into(),
        minor_units,
    })
}

fn order(id: &str, amount: i64) -> pb::Record {
    pb::Record {
        record: Some(R::Order(pb::Order {
            id: id.into(),
            amount: usd(amount),
            ordered_at: ts(T0),
            kind: pb::OrderKind::New as i32,
            customer_id: "c1".into(),
            rep_id: "r1".into(),
            ..Default::default()
        })),
    }
}

/// One valid record of each type with string fields.
fn records_with_strings() -> Vec<pb::Record> {
    let rec = |r| pb::Record { record: Some(r) };
    vec![
        rec(R::Team(pb::Team {
            id: "t1".into(),
            name: "Team".into(),
            parent_team_id: "t0".into(),
            ..Default::default()
        })),
        rec(R::TeamMembership(pb::TeamMembership {
            id: "m1".into(),
            rep_id: "r1".into(),
            team_id: "t1".into(),
            effective_at: ts(T0),
            ..Default::default()
        })),
        rec(R::Rep(pb::Rep {
            id: "r1".into(),
            name: "Ann".into(),
            email: "ann@example.com".into(),
            ..Default::default()
        })),
        rec(R::Customer(pb::Customer {
            id: "c1".into(),
            acquired_at: ts(T0),
            owner_rep_id: "r1".into(),
            source: "web".into(),
            name: "ACME".into(),
            ..Default::default()
        })),
        rec(R::Lead(pb::Lead {
            id: "l1".into(),
            source: "web".into(),
            created_at: ts(T0),
            owner_rep_id: "r1".into(),
            customer_id: "c1".into(),
            ..Default::default()
        })),
        rec(R::Deal(pb::Deal {
            id: "d1".into(),
            amount: usd(700),
            created_at: ts(T0),
            status: pb::DealStatus::Open as i32,
            stage: "proposal".into(),
            owner_rep_id: "r1".into(),
            customer_id: "c1".into(),
            lead_id: "l1".into(),
            ..Default::default()
        })),
        rec(R::DealStageChange(pb::DealStageChange {
            id: "s1".into(),
            deal_id: "d1".into(),
            stage: "prospecting".into(),
            entered_at: ts(T0),
            ..Default::default()
        })),
        order("o1", 100),
        rec(R::SubscriptionChange(pb::SubscriptionChange {
            id: "sc1".into(),
            subscription_id: "sub1".into(),
            customer_id: "c1".into(),
            mrr: usd(9_900),
            effective_at: ts(T0),
            ..Default::default()
        })),
        rec(R::Activity(pb::Activity {
            id: "a1".into(),
            rep_id: "r1".into(),
            r#type: pb::ActivityType::Call as i32,
            occurred_at: ts(T0),
            ..Default::default()
        })),
        rec(R::Inquiry(pb::Inquiry {
            id: "i1".into(),
            channel: "email".into(),
            received_at: ts(T0),
            customer_id: "c1".into(),
            rep_id: "r1".into(),
            ..Default::default()
        })),
        rec(R::CsatResponse(pb::CsatResponse {
            id: "q1".into(),
            score: 4,
            responded_at: ts(T0),
            customer_id: "c1".into(),
            rep_id: "r1".into(),
            ..Default::default()
        })),
        rec(R::Spend(pb::Spend {
            id: "p1".into(),
            category: pb::SpendCategory::Sales as i32,
            amount: usd(250),
            start_date: Some(pb::Date {
                year: 2024,
                month: 3,
                day: 1,
            }),
            end_date: Some(pb::Date {
                year: 2024,
                month: 4,
                day: 1,
            }),
            team_id: "t1".into(),
            ..Default::default()
        })),
    ]
}

/// Every copy of `record` with one of its string fields (nested ones, such
/// as a money's currency, included) replaced by `value`, read from the proto
/// descriptors so that no field is forgotten.
fn with_each_string_field(record: &pb::Record, value: &str) -> Vec<pb::Record> {
    use prost_reflect::{DescriptorPool, DynamicMessage, Kind, ReflectMessage, Value};

    fn variants(message: &DynamicMessage, value: &str) -> Vec<DynamicMessage> {
        let mut out = Vec::new();
        for field in message.descriptor().fields() {
            if !message.has_field(&field) && field.kind().as_message().is_some() {
                continue;
            }
            match field.kind() {
                Kind::String if !field.is_list() => {
                    let mut copy = message.clone();
                    copy.set_field(&field, Value::String(value.to_string()));
                    out.push(copy);
                }
                Kind::Message(_) if !field.is_list() => {
                    let Value::Message(inner) = message.get_field(&field).into_owned() else {
                        continue;
                    };
                    for changed in variants(&inner, value) {
                        let mut copy = message.clone();
                        copy.set_field(&field, Value::Message(changed));
                        out.push(copy);
                    }
                }
                _ => {}
            }
        }
        out
    }

    let pool = DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).expect("descriptors");
    let descriptor = pool
        .get_message_by_name("salesmetrics.v1.Record")
        .expect("Record");
    let message =
        DynamicMessage::decode(descriptor, record.encode_to_vec().as_slice()).expect("decode");
    variants(&message, value)
        .into_iter()
        .map(|m| m.transcode_to::<pb::Record>().expect("transcode"))
        .collect()
}

backend_tests! {
    /// Every string field of every RPC, sent with 100 000 characters, comes
    /// back as an error of the usual code whose message (and every detail)
    /// stays short: client text is echoed 16 characters at most.
    #[tokio::test]
    async fn huge_strings_in_every_field_get_short_errors(server: TestServer) {
        let b = server.backend;
        let huge = huge();
        let mut kpi = server.kpi().await;
        let mut ingest = server.ingest().await;
        let mut admin = server.admin().await;
        let period = Some(pb::Period {
            period: Some(pb::period::Period::Calendar(pb::CalendarPeriod {
                granularity: pb::Granularity::Month as i32,
                date: Some(pb::Date { year: 2024, month: 3, day: 1 }),
            })),
        });
        let team_scope = |id: &str| {
            Some(pb::Scope {
                kind: pb::ScopeKind::Team as i32,
                id: id.into(),
            })
        };

        // KpiService: kpi ids and time zones are INVALID_ARGUMENT, unknown
        // scope ids NOT_FOUND.
        let kpis = pb::GetKpisRequest { period, ..Default::default() };
        for (what, request, code) in [
            ("GetKpis kpi_ids", pb::GetKpisRequest { kpi_ids: vec![huge.clone()], ..kpis.clone() }, Code::InvalidArgument),
            ("GetKpis time_zone", pb::GetKpisRequest { time_zone: huge.clone(), ..kpis.clone() }, Code::InvalidArgument),
            ("GetKpis scope.id", pb::GetKpisRequest { scope: team_scope(&huge), ..kpis.clone() }, Code::NotFound),
        ] {
            let err = kpi.get_kpis(request).await.expect_err(what);
            assert_short(&format!("{b}: {what}"), &err, code);
        }
        let series = pb::GetKpiSeriesRequest {
            granularity: pb::Granularity::Month as i32,
            first_period_date: Some(pb::Date { year: 2024, month: 1, day: 1 }),
            period_count: 3,
            ..Default::default()
        };
        for (what, request, code) in [
            ("GetKpiSeries kpi_ids", pb::GetKpiSeriesRequest { kpi_ids: vec![huge.clone()], ..series.clone() }, Code::InvalidArgument),
            ("GetKpiSeries time_zone", pb::GetKpiSeriesRequest { time_zone: huge.clone(), ..series.clone() }, Code::InvalidArgument),
            ("GetKpiSeries scope.id", pb::GetKpiSeriesRequest { scope: team_scope(&huge), ..series.clone() }, Code::NotFound),
        ] {
            let err = kpi.get_kpi_series(request).await.expect_err(what);
            assert_short(&format!("{b}: {what}"), &err, code);
        }
        let breakdown = pb::GetBreakdownRequest {
            period,
            dimension: pb::Dimension::Rep as i32,
            ..Default::default()
        };
        for (what, request, code) in [
            ("GetBreakdown kpi_ids", pb::GetBreakdownRequest { kpi_ids: vec![huge.clone()], ..breakdown.clone() }, Code::InvalidArgument),
            ("GetBreakdown time_zone", pb::GetBreakdownRequest { time_zone: huge.clone(), ..breakdown.clone() }, Code::InvalidArgument),
            ("GetBreakdown page_token", pb::GetBreakdownRequest { page_token: huge.clone(), ..breakdown.clone() }, Code::InvalidArgument),
            ("GetBreakdown scope.id", pb::GetBreakdownRequest { scope: team_scope(&huge), ..breakdown.clone() }, Code::NotFound),
        ] {
            let err = kpi.get_breakdown(request).await.expect_err(what);
            assert_short(&format!("{b}: {what}"), &err, code);
        }

        // IngestService: every string field of every record type, in an
        // all-or-nothing batch (INVALID_ARGUMENT) and on a stream (every
        // reason of the acknowledgement short).
        let records: Vec<pb::Record> = records_with_strings()
            .iter()
            .flat_map(|r| with_each_string_field(r, &huge))
            .collect();
        assert!(records.len() > 40, "{} variants", records.len());
        for record in &records {
            let err = ingest
                .ingest_batch(pb::IngestBatchRequest {
                    records: vec![record.clone()],
                    all_or_nothing: true,
                })
                .await
                .expect_err("a huge field is refused");
            assert_short(&format!("{b}: IngestBatch {record:.100?}"), &err, Code::InvalidArgument);
        }
        let err = ingest
            .ingest_batch(pb::IngestBatchRequest { records: records.clone(), all_or_nothing: true })
            .await
            .expect_err("every huge field at once");
        assert_short(&format!("{b}: IngestBatch, all at once"), &err, Code::InvalidArgument);
        let mut acks = ingest
            .stream_ingest(tokio_stream::iter(vec![pb::StreamIngestRequest {
                sequence: 1,
                records: records.clone(),
                all_or_nothing: false,
            }]))
            .await
            .expect("stream opens")
            .into_inner();
        let ack = acks.message().await.expect("ack").expect("one ack");
        let result = ack.result.expect("result");
        assert_eq!(result.rejected_count as usize, records.len(), "{b}");
        for r in &result.results {
            assert!(
                r.id.len() < SHORT && r.field_path.len() < SHORT && r.reason.len() < SHORT,
                "{b}: record {} echoed {} + {} + {} bytes",
                r.index,
                r.id.len(),
                r.field_path.len(),
                r.reason.len()
            );
        }
        let err = ingest
            .delete_records(pb::DeleteRecordsRequest {
                record_type: pb::RecordType::Order as i32,
                ids: vec![huge.clone()],
            })
            .await
            .expect_err("DeleteRecords ids");
        assert_short(&format!("{b}: DeleteRecords ids"), &err, Code::InvalidArgument);

        // AdminService: ids, names and settings.
        let settings = |f: &dyn Fn(&mut pb::TenantSettings)| {
            let mut s = pb::TenantSettings {
                time_zone: "UTC".into(),
                currency_code: "USD".into(),
                fiscal_year_start_month: 1,
                ..Default::default()
            };
            f(&mut s);
            Some(s)
        };
        let bad_settings = [
            ("time_zone", settings(&|s| s.time_zone = huge.clone())),
            ("currency_code", settings(&|s| s.currency_code = huge.clone())),
            ("pipeline_stages.name", settings(&|s| {
                s.pipeline_stages = vec![pb::PipelineStage { name: huge.clone(), win_probability: 0.5 }];
            })),
            ("referral_sources", settings(&|s| s.referral_sources = vec![huge.clone()])),
        ];
        let err = admin
            .create_tenant(pb::CreateTenantRequest { tenant_id: huge.clone(), settings: None })
            .await
            .expect_err("CreateTenant tenant_id");
        assert_short(&format!("{b}: CreateTenant tenant_id"), &err, Code::InvalidArgument);
        for (what, s) in &bad_settings {
            let err = admin
                .create_tenant(pb::CreateTenantRequest { tenant_id: "t".into(), settings: s.clone() })
                .await
                .expect_err(what);
            assert_short(&format!("{b}: CreateTenant {what}"), &err, Code::InvalidArgument);
            let err = admin
                .update_tenant_settings(pb::UpdateTenantSettingsRequest {
                    tenant_id: String::new(),
                    settings: s.clone(),
                })
                .await
                .expect_err(what);
            assert_short(&format!("{b}: UpdateTenantSettings {what}"), &err, Code::InvalidArgument);
        }
        let err = admin
            .get_tenant_settings(pb::GetTenantSettingsRequest { tenant_id: huge.clone() })
            .await
            .expect_err("GetTenantSettings tenant_id");
        assert_short(&format!("{b}: GetTenantSettings"), &err, Code::InvalidArgument);
        let err = admin
            .update_tenant_settings(pb::UpdateTenantSettingsRequest {
                tenant_id: huge.clone(),
                settings: settings(&|_| {}),
            })
            .await
            .expect_err("UpdateTenantSettings tenant_id");
        assert_short(&format!("{b}: UpdateTenantSettings tenant_id"), &err, Code::InvalidArgument);
        for (what, request) in [
            ("CreateApiKey tenant_id", pb::CreateApiKeyRequest { tenant_id: huge.clone(), name: "k".into() }),
            ("CreateApiKey name", pb::CreateApiKeyRequest { tenant_id: "default".into(), name: huge.clone() }),
        ] {
            let err = admin.create_api_key(request).await.expect_err(what);
            assert_short(&format!("{b}: {what}"), &err, Code::InvalidArgument);
        }
        let err = admin
            .list_api_keys(pb::ListApiKeysRequest { tenant_id: huge.clone() })
            .await
            .expect_err("ListApiKeys tenant_id");
        assert_short(&format!("{b}: ListApiKeys"), &err, Code::InvalidArgument);
        let err = admin
            .revoke_api_key(pb::RevokeApiKeyRequest { key_id: huge.clone() })
            .await
            .expect_err("RevokeApiKey key_id");
        assert_short(&format!("{b}: RevokeApiKey"), &err, Code::InvalidArgument);

        // Valid ids of the longest allowed length that name nothing are
        // NOT_FOUND / ALREADY_EXISTS, echoed 16 characters at most.
        let long_id = "x".repeat(128);
        let err = admin
            .get_tenant_settings(pb::GetTenantSettingsRequest { tenant_id: long_id.clone() })
            .await
            .expect_err("unknown tenant");
        assert_short(&format!("{b}: unknown tenant"), &err, Code::NotFound);
        assert!(err.message().len() < 64, "{b}: {}", err.message());
        admin
            .create_tenant(pb::CreateTenantRequest { tenant_id: long_id.clone(), settings: None })
            .await
            .expect("a 128-character tenant id is valid");
        let err = admin
            .create_tenant(pb::CreateTenantRequest { tenant_id: long_id.clone(), settings: None })
            .await
            .expect_err("taken tenant id");
        assert_short(&format!("{b}: taken tenant"), &err, Code::AlreadyExists);
        assert!(err.message().len() < 64, "{b}: {}", err.message());
        let err = kpi
            .get_kpis(pb::GetKpisRequest { scope: team_scope(&long_id), ..kpis.clone() })
            .await
            .expect_err("unknown team");
        assert_eq!(err.message(), "team \"xxxxxxxxxxxxxxxx\"… not found", "{b}");
        server.stop().await;
    }
}

/// A codec that sends and receives raw bytes, to put what a generated client
/// never would on the wire.
#[derive(Debug, Clone, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Status> {
        use prost::bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        use prost::bytes::Buf;
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

/// `bytes` as the request message of the unary or server-streaming method at `path`.
async fn raw_call(
    server: &TestServer,
    path: &'static str,
    bytes: Vec<u8>,
    server_streaming: bool,
) -> Status {
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    grpc.ready().await.expect("ready");
    let name = path;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    let request = tonic::Request::new(bytes);
    if server_streaming {
        match grpc.server_streaming(request, path, RawCodec).await {
            Err(status) => status,
            Ok(response) => {
                let mut stream = response.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(_)) => {}
                        Ok(None) => panic!("{name}: the stream ended without an error"),
                        Err(status) => break status,
                    }
                }
            }
        }
    } else {
        grpc.unary(request, path, RawCodec)
            .await
            .expect_err("undecodable bytes are refused")
    }
}

/// Bytes that are not a protobuf message of the method's request type get
/// INVALID_ARGUMENT with one fixed message, on unary calls, server-streaming
/// calls, a client stream, and health checks alike.
#[tokio::test]
async fn undecodable_requests_are_invalid_argument() {
    const FIXED: &str = "the request message cannot be decoded";
    let server = TestServer::sqlite().await;
    // A varint that never ends; a field with wire type 7; a length beyond
    // the message.
    let garbage: [&[u8]; 3] = [
        &[
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ],
        &[0x0f, 0x01],
        &[0x0a, 0x7f, 0x01],
    ];
    for bytes in garbage {
        for (path, streaming) in [
            ("/salesmetrics.v1.KpiService/GetKpis", false),
            ("/salesmetrics.v1.IngestService/IngestBatch", false),
            ("/salesmetrics.v1.AdminService/CreateTenant", false),
            ("/salesmetrics.v1.IngestService/ExportRecords", true),
            ("/grpc.health.v1.Health/Check", false),
        ] {
            let status = raw_call(&server, path, bytes.to_vec(), streaming).await;
            assert_eq!(
                status.code(),
                Code::InvalidArgument,
                "{path} {bytes:?}: {status:?}"
            );
            assert_eq!(status.message(), FIXED, "{path} {bytes:?}");
        }
    }

    // On a stream: the first batch decodes, the second does not.
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    grpc.ready().await.expect("ready");
    let good = pb::StreamIngestRequest {
        sequence: 1,
        records: vec![order("o1", 5)],
        all_or_nothing: false,
    }
    .encode_to_vec();
    let response = grpc
        .streaming(
            tonic::Request::new(tokio_stream::iter(vec![good, vec![0x0f, 0x01]])),
            tonic::codegen::http::uri::PathAndQuery::from_static(
                "/salesmetrics.v1.IngestService/StreamIngest",
            ),
            RawCodec,
        )
        .await
        .expect("stream opens");
    let mut acks = response.into_inner();
    let first = acks.message().await.expect("first ack").expect("an ack");
    let first = pb::StreamIngestResponse::decode(first.as_slice()).expect("ack decodes");
    assert_eq!(first.sequence, 1);
    let err = tokio::time::timeout(Duration::from_secs(20), acks.message())
        .await
        .expect("answer within 20 s")
        .expect_err("the undecodable batch ends the stream");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(err.message(), FIXED);
    server.stop().await;
}

/// `salesmetrics serve` started as a child process with JSON logs on a
/// fresh SQLite file, and its log lines as they come.
struct Child {
    process: std::process::Child,
    address: String,
    log: std::sync::mpsc::Receiver<serde_json::Value>,
    _dir: tempfile::TempDir,
}

impl Child {
    fn start(extra_args: &[&str]) -> Child {
        use std::io::{BufRead, BufReader};
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut process = std::process::Command::new(env!("CARGO_BIN_EXE_salesmetrics"))
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
            .arg("--database-url")
            .arg(format!("sqlite://{}", dir.path().join("s.db").display()))
            .args(extra_args)
            .env_remove("SALESMETRICS_DATABASE_URL")
            .env_remove("DATABASE_URL")
            .env_remove("SALESMETRICS_METRICS_LISTEN")
            .env_remove("SALESMETRICS_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start the salesmetrics binary");
        let stderr = process.stderr.take().expect("stderr");
        let (tx, log) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let entry = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({ "fields": { "message": line } }));
                if tx.send(entry).is_err() {
                    break;
                }
            }
        });
        let mut child = Child {
            process,
            address: String::new(),
            log,
            _dir: dir,
        };
        let listening = child.wait_for("listening");
        child.address = listening["fields"]["address"]
            .as_str()
            .expect("address field")
            .to_string();
        child
    }

    /// The next log entry with `message` (at most 20 s away).
    fn wait_for(&mut self, message: &str) -> serde_json::Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let entry = self
                .log
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no log line {message:?} within 20 s"));
            if entry["fields"]["message"] == message {
                return entry;
            }
        }
    }

    fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &self.process.id().to_string()])
            .status()
            .expect("send the signal");
        assert!(status.success());
    }

    /// Waits (at most 20 s) for the process to exit.
    async fn exit(&mut self) -> std::process::ExitStatus {
        for _ in 0..400 {
            if let Some(exit) = self.process.try_wait().expect("wait for the child") {
                return exit;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.process.kill();
        panic!("the server did not exit within 20 s");
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// SIGHUP drains like SIGTERM: a stream open when it arrives is still
/// served to its end, then the process logs "stopped" and exits 0.
#[tokio::test]
async fn sighup_drains_and_stops_cleanly() {
    let mut child = Child::start(&[]);
    let mut ingest = salesmetrics::proto::v1::ingest_service_client::IngestServiceClient::connect(
        format!("http://{}", child.address),
    )
    .await
    .expect("connect");
    let (batches, rx) = tokio::sync::mpsc::channel(4);
    let mut acks = ingest
        .stream_ingest(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("stream opens")
        .into_inner();
    let batch = |sequence: i64| pb::StreamIngestRequest {
        sequence,
        records: vec![order(&format!("o{sequence}"), 5)],
        all_or_nothing: false,
    };
    batches.send(batch(1)).await.expect("send");
    assert_eq!(acks.message().await.expect("ack").expect("ack").sequence, 1);

    child.signal("HUP");
    let received = child.wait_for("signal received");
    assert_eq!(received["fields"]["signal"], "SIGHUP");
    child.wait_for("shutdown requested; draining in-flight requests");
    batches.send(batch(2)).await.expect("send after SIGHUP");
    let ack = acks
        .message()
        .await
        .expect("ack after SIGHUP")
        .expect("ack");
    assert_eq!(ack.sequence, 2);
    assert_eq!(ack.result.expect("result").accepted_count, 1);
    drop(batches);
    assert!(acks.message().await.expect("end").is_none());

    child.wait_for("stopped");
    let exit = child.exit().await;
    assert!(exit.success(), "exit after SIGHUP: {exit:?}");
}

/// Runs `salesmetrics serve` on `database_url` and returns its exit status
/// and stderr (it is expected to stop at start-up).
fn serve_output(database_url: &str) -> (std::process::ExitStatus, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_salesmetrics"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            database_url,
        ])
        .env_remove("SALESMETRICS_DATABASE_URL")
        .env_remove("DATABASE_URL")
        .env_remove("SALESMETRICS_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(std::process::Stdio::null())
        .output()
        .expect("run the binary");
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A SQLite file in a directory that does not exist, or in one that cannot
/// be written, is a start-up error that names the directory or file and the
/// cause, not "internal error".
#[test]
fn a_sqlite_path_that_cannot_be_created_says_why() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let missing = dir.path().join("no").join("such");
    let (status, stderr) = serve_output(&format!("sqlite://{}/x.db", missing.display()));
    assert!(!status.success());
    assert!(!stderr.contains("internal error"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot create the SQLite file {}/x.db: the directory {} does not exist",
            missing.display(),
            missing.display()
        )),
        "{stderr}"
    );

    // A directory without write permission (meaningless as root, who may
    // write anywhere).
    use std::os::unix::fs::PermissionsExt;
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).expect("mkdir");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o500)).expect("chmod");
    if std::fs::File::create(locked.join("probe")).is_err() {
        let (status, stderr) = serve_output(&format!("sqlite://{}/x.db", locked.display()));
        assert!(!status.success());
        assert!(
            stderr.contains(&format!(
                "cannot create the SQLite file {}/x.db",
                locked.display()
            )) && stderr.contains("ermission denied"),
            "{stderr}"
        );
    }
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).expect("chmod");
}

/// PostgreSQL over TLS: `sslmode=require` connects encrypted (the local
/// server offers TLS with a self-signed certificate); `sslmode=verify-full`
/// cannot verify that certificate and is a start-up error that names TLS and
/// the fix (with `TEST_DATABASE_URL` only).
#[tokio::test]
async fn postgres_over_tls_connects_and_an_unverifiable_certificate_is_explained() {
    let Some(url) = db::fresh_postgres().await else {
        return;
    };
    let tls_url = format!(
        "{url}{}sslmode=require",
        if url.contains('?') { '&' } else { '?' }
    );
    let store = salesmetrics::store::connect(&tls_url)
        .await
        .expect("connect with sslmode=require");
    store
        .ensure_tenant("tls-tenant")
        .await
        .expect("a write over TLS");
    let verify_url = tls_url.replace("sslmode=require", "sslmode=verify-full");
    let (status, stderr) = tokio::task::spawn_blocking(move || serve_output(&verify_url))
        .await
        .expect("join");
    assert!(!status.success());
    assert!(
        stderr.contains("TLS with PostgreSQL on ") && stderr.contains("sslrootcert="),
        "{stderr}"
    );
}

/// A PostgreSQL database that does not exist is a start-up error that names
/// it, its server and how to create it, with the URL's password redacted
/// (with `TEST_DATABASE_URL` only).
#[test]
fn a_missing_postgres_database_says_how_to_create_it() {
    let Ok(base) = std::env::var("TEST_DATABASE_URL") else {
        eprintln!("TEST_DATABASE_URL not set; skipping");
        return;
    };
    let name = format!("does_not_exist_{}_{}", std::process::id(), rand_suffix());
    let url = db::with_database(&base, &name);
    let (status, stderr) = serve_output(&url);
    assert!(!status.success());
    assert!(!stderr.contains("internal error"), "{stderr}");
    assert!(
        stderr.contains(&format!("database \"{name}\" does not exist on "))
            && stderr.contains("create it (createdb ")
            && stderr.contains("or fix --database-url"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&salesmetrics::config::redact_url(&url)),
        "{stderr}"
    );
}

/// A few random digits, so parallel runs do not collide.
fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
}

/// The admin token of the servers with authentication started here.
const ADMIN: &str = "abuse-admin-token-0123456789";

/// Settings with authentication on and [`ADMIN`] as the admin token.
fn secure_config() -> salesmetrics::config::ServeConfig {
    let mut config = salesmetrics::config::ServeConfig::for_database("");
    config.auth = salesmetrics::config::AuthMode::On;
    config.admin_token = Some(ADMIN.into());
    config
}

/// `message` with `authorization: Bearer <credential>`.
fn bearer<T>(message: T, credential: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {credential}").parse().expect("ascii"),
    );
    request
}

/// A new API key of `tenant` (created first when `create_tenant`).
struct Key {
    /// The key's id, for `RevokeApiKey`.
    id: String,
    /// The key itself, for `authorization`.
    secret: String,
}

/// A new key of `tenant` (created first when `create_tenant`).
async fn new_key(server: &TestServer, tenant: &str, create_tenant: bool) -> Key {
    let mut admin = server.admin().await;
    if create_tenant {
        admin
            .create_tenant(bearer(
                pb::CreateTenantRequest {
                    tenant_id: tenant.into(),
                    settings: None,
                },
                ADMIN,
            ))
            .await
            .expect("create tenant");
    }
    let created = admin
        .create_api_key(bearer(
            pb::CreateApiKeyRequest {
                tenant_id: tenant.into(),
                name: "key".into(),
            },
            ADMIN,
        ))
        .await
        .expect("create key")
        .into_inner();
    Key {
        id: created.api_key.expect("key listing").key_id,
        secret: created.key,
    }
}

/// The ids of the orders `key`'s tenant can export.
async fn order_ids(server: &TestServer, key: &str) -> Vec<String> {
    let mut stream = server
        .ingest()
        .await
        .export_records(bearer(
            pb::ExportRecordsRequest {
                record_type: pb::RecordType::Order as i32,
            },
            key,
        ))
        .await
        .expect("export")
        .into_inner();
    let mut ids = Vec::new();
    while let Some(page) = stream.message().await.expect("page") {
        for record in page.records {
            if let Some(R::Order(o)) = record.record {
                ids.push(o.id);
            }
        }
    }
    ids
}

backend_tests! {
    /// A key revoked while its stream is open: the next batch on that stream
    /// is refused with UNAUTHENTICATED and not written; the batch
    /// acknowledged before stays.
    #[tokio::test]
    async fn a_key_revoked_during_a_stream_ends_it(server: TestServer) {
        // The same backend, with authentication on.
        let b = server.backend;
        server.stop().await;
        let (dir, url) = match b {
            "sqlite" => {
                let (dir, url) = db::fresh_sqlite().await;
                (Some(dir), url)
            }
            _ => (None, db::fresh_postgres().await.expect("postgres")),
        };
        let server = TestServer::start(b, url, secure_config(), dir).await;
        let streaming = new_key(&server, "acme", true).await;
        let reader = new_key(&server, "acme", false).await;

        let (batches, rx) = tokio::sync::mpsc::channel(4);
        let mut acks = server
            .ingest()
            .await
            .stream_ingest(bearer(tokio_stream::wrappers::ReceiverStream::new(rx), &streaming.secret))
            .await
            .expect("stream opens")
            .into_inner();
        let batch = |sequence: i64| pb::StreamIngestRequest {
            sequence,
            records: vec![order(&format!("o{sequence}"), 5)],
            all_or_nothing: false,
        };
        batches.send(batch(1)).await.expect("send");
        let ack = acks.message().await.expect("ack").expect("ack");
        assert_eq!(ack.result.expect("result").accepted_count, 1, "{b}");

        server
            .admin()
            .await
            .revoke_api_key(bearer(
                pb::RevokeApiKeyRequest { key_id: streaming.id.clone() },
                ADMIN,
            ))
            .await
            .expect("revoke");
        batches.send(batch(2)).await.expect("send after revocation");
        let err = tokio::time::timeout(Duration::from_secs(20), acks.message())
            .await
            .expect("answer within 20 s")
            .expect_err("the stream of a revoked key ends");
        assert_eq!(err.code(), Code::Unauthenticated, "{b}: {err:?}");
        assert_eq!(err.message(), "missing or invalid credentials", "{b}");
        assert_eq!(order_ids(&server, &reader.secret).await, ["o1"], "{b}: o2 not written");
        server.stop().await;
    }
}

/// 500 calls with the same well-formed unknown key are all UNAUTHENTICATED,
/// but read the database once (the id is then remembered as unknown), as
/// `salesmetrics_api_key_lookups_total` shows; a real key still works.
#[tokio::test]
async fn a_flood_of_unknown_keys_reads_the_database_once() {
    let mut config = secure_config();
    // The limit per address would cut the flood off first.
    config.max_failed_auth_per_minute = 0;
    let server = TestServer::sqlite_with_metrics(config).await;
    let metrics = server.metrics_addr.expect("metrics address");
    let lookups = || async move {
        let response = super::harness::http1(metrics, "GET /metrics HTTP/1.1", b"").await;
        let text = String::from_utf8(response.body).expect("UTF-8");
        text.lines()
            .find_map(|l| l.strip_prefix("salesmetrics_api_key_lookups_total "))
            .expect("the lookup counter")
            .trim()
            .parse::<u64>()
            .expect("a number")
    };
    let unknown = format!("sm_{}_{}", "0123456789abcdef", "ab".repeat(32));
    let before = lookups().await;
    let mut kpi = server.kpi().await;
    for _ in 0..500 {
        let err = kpi
            .list_kpis(bearer(pb::ListKpisRequest {}, &unknown))
            .await
            .expect_err("an unknown key is refused");
        assert_eq!(err.code(), Code::Unauthenticated);
        assert_eq!(err.message(), "missing or invalid credentials");
    }
    let reads = lookups().await - before;
    assert!(reads <= 5, "{reads} database reads for 500 calls");

    let key = new_key(&server, "acme", true).await;
    kpi.list_kpis(bearer(pb::ListKpisRequest {}, &key.secret))
        .await
        .expect("a real key is served");
    // Revoked keys are remembered too, and refused at once.
    server
        .admin()
        .await
        .revoke_api_key(bearer(pb::RevokeApiKeyRequest { key_id: key.id }, ADMIN))
        .await
        .expect("revoke");
    let before = lookups().await;
    for _ in 0..100 {
        let err = kpi
            .list_kpis(bearer(pb::ListKpisRequest {}, &key.secret))
            .await
            .expect_err("revoked");
        assert_eq!(err.code(), Code::Unauthenticated);
    }
    let reads = lookups().await - before;
    assert!(
        reads <= 5,
        "{reads} database reads for 100 calls with a revoked key"
    );
    server.stop().await;
}

/// A tenant that opens as many idle streams as it can holds only its share
/// of the concurrency: with 8 slots and a 50 % share, tenant A's fifth call
/// is RESOURCE_EXHAUSTED with a message that says why, while tenant B is
/// served; when A's streams end, A is served again.
#[tokio::test]
async fn one_tenant_cannot_take_every_slot() {
    let (dir, url) = db::fresh_sqlite().await;
    let mut config = secure_config();
    config.max_concurrent_requests = 8;
    config.max_tenant_share_percent = 50;
    let server = TestServer::start("sqlite", url, config, Some(dir)).await;
    let a = new_key(&server, "tenant-a", true).await;
    let b = new_key(&server, "tenant-b", true).await;

    // Four idle streams: A's whole share (4 of 8 slots).
    let mut held = Vec::new();
    for _ in 0..4 {
        let (batches, rx) = tokio::sync::mpsc::channel::<pb::StreamIngestRequest>(1);
        let acks = server
            .ingest()
            .await
            .stream_ingest(bearer(
                tokio_stream::wrappers::ReceiverStream::new(rx),
                &a.secret,
            ))
            .await
            .expect("a stream within A's share opens")
            .into_inner();
        held.push((batches, acks));
    }
    let refused = server
        .kpi()
        .await
        .list_kpis(bearer(pb::ListKpisRequest {}, &a.secret))
        .await
        .expect_err("A is over its share");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused
            .message()
            .contains("its share of the server's concurrency"),
        "{refused:?}"
    );
    // B is served meanwhile, and more than once at a time.
    for _ in 0..3 {
        server
            .kpi()
            .await
            .list_kpis(bearer(pb::ListKpisRequest {}, &b.secret))
            .await
            .expect("B is served while A holds its share");
    }
    // A's streams end: its share is free again.
    drop(held);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = server
            .kpi()
            .await
            .list_kpis(bearer(pb::ListKpisRequest {}, &a.secret))
            .await;
        match answer {
            Ok(_) => break,
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "A's slots come back"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(status) => panic!("unexpected {status:?}"),
        }
    }
    server.stop().await;
}

/// A stream that sends nothing for `--stream-idle-timeout-seconds` is ended
/// with DEADLINE_EXCEEDED and a message that says why; a stream that keeps
/// sending is not.
#[tokio::test]
async fn an_idle_stream_is_ended() {
    let (dir, url) = db::fresh_sqlite().await;
    let mut config = salesmetrics::config::ServeConfig::for_database("");
    config.stream_idle_timeout_seconds = 1;
    let server = TestServer::start("sqlite", url, config, Some(dir)).await;
    let (batches, rx) = tokio::sync::mpsc::channel::<pb::StreamIngestRequest>(1);
    let mut acks = server
        .ingest()
        .await
        .stream_ingest(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("stream opens")
        .into_inner();
    // Batches every 300 ms for about two idle timeouts: acknowledged.
    for sequence in 0..6 {
        batches
            .send(pb::StreamIngestRequest {
                sequence,
                records: vec![order(&format!("idle-{sequence}"), 5)],
                all_or_nothing: false,
            })
            .await
            .expect("send");
        let ack = acks.message().await.expect("ack").expect("an ack");
        assert_eq!(ack.sequence, sequence);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Then nothing: the server ends the stream.
    let ended = tokio::time::timeout(Duration::from_secs(10), acks.message())
        .await
        .expect("ended within 10 s")
        .expect_err("an idle stream is ended");
    assert_eq!(ended.code(), Code::DeadlineExceeded, "{ended:?}");
    assert!(
        ended.message().contains("idle stream is closed"),
        "{ended:?}"
    );
    drop(batches);
    server.stop().await;
}

/// The value of an unlabelled (or fully labelled) sample on `/metrics`.
async fn metric(server: &TestServer, sample: &str) -> u64 {
    let addr = server.metrics_addr.expect("metrics address");
    let response = super::harness::http1(addr, "GET /metrics HTTP/1.1", b"").await;
    let text = String::from_utf8(response.body).expect("UTF-8");
    let prefix = format!("{sample} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("{sample} in the metrics"))
        .trim()
        .parse()
        .expect("a number")
}

/// Waits (at most 10 s) until `sample` reads `value`.
async fn wait_for_metric(server: &TestServer, sample: &str, value: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = metric(server, sample).await;
        if now == value {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{sample} is {now}, expected {value}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether the server closes `stream` (end of stream or reset) within 10 s
/// without sending anything.
async fn closed_by_server(stream: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) | Err(_) => false,
    }
}

/// A ListKpis call on `channel`.
async fn list_kpis_on(channel: &tonic::transport::Channel) -> Result<usize, Status> {
    salesmetrics::proto::v1::kpi_service_client::KpiServiceClient::new(channel.clone())
        .list_kpis(pb::ListKpisRequest {})
        .await
        .map(|r| r.into_inner().kpis.len())
}

/// A connection that sends nothing is closed after
/// `--handshake-timeout-seconds` (counted as `handshake_timeout`), while a
/// client that talks is served.
#[tokio::test]
async fn a_silent_connection_is_closed_after_the_handshake_timeout() {
    let mut config = salesmetrics::config::ServeConfig::for_database("");
    config.handshake_timeout_seconds = 1;
    let server = TestServer::sqlite_with_metrics(config).await;
    let mut silent = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    assert!(closed_by_server(&mut silent).await, "closed within 10 s");
    assert_eq!(
        metric(
            &server,
            "salesmetrics_connections_refused_total{reason=\"handshake_timeout\"}"
        )
        .await,
        1
    );
    let channel = server.channel().await;
    let kpis = list_kpis_on(&channel)
        .await
        .expect("a talking client is served");
    assert!(kpis > 0, "the catalog");
    server.stop().await;
}

/// With TLS, a connection that never sends a ClientHello is closed after
/// the handshake timeout, and so is one that starts a handshake and stalls;
/// a TLS client is served.
#[tokio::test]
async fn a_tls_connection_without_a_handshake_is_closed() {
    use tokio::io::AsyncWriteExt;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .expect("self-signed certificate");
    let dir = tempfile::tempdir().expect("tempdir");
    let cert_path = dir.path().join("server.pem");
    let key_path = dir.path().join("server.key");
    std::fs::write(&cert_path, cert.cert.pem()).expect("write certificate");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("write key");
    let mut config = salesmetrics::config::ServeConfig::for_database("");
    config.tls_cert = Some(cert_path);
    config.tls_key = Some(key_path);
    config.handshake_timeout_seconds = 1;
    let server = TestServer::sqlite_with_metrics(config).await;

    let mut silent = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    assert!(
        closed_by_server(&mut silent).await,
        "no ClientHello: closed"
    );
    // The first 5 bytes of a TLS record header (a handshake of 512 bytes),
    // then nothing.
    let mut stalled = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
        .await
        .expect("write");
    assert!(
        closed_by_server(&mut stalled).await,
        "stalled handshake: closed"
    );

    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(cert.cert.pem()))
        .domain_name("localhost");
    let channel = tonic::transport::Endpoint::from_shared(format!(
        "https://127.0.0.1:{}",
        server.addr.port()
    ))
    .expect("endpoint")
    .tls_config(tls)
    .expect("tls config")
    .connect()
    .await
    .expect("a TLS client connects");
    let kpis = list_kpis_on(&channel).await.expect("served over TLS");
    assert!(kpis > 0, "the catalog");
    server.stop().await;
}

/// With a cap of 3 connections (per peer, then in all): three clients are
/// served, the fourth connection is closed at once and counted, calls on
/// the open connections still work, and once one closes a new client is
/// served.
#[tokio::test]
async fn connections_beyond_the_caps_are_closed() {
    for per_peer in [true, false] {
        let mut config = salesmetrics::config::ServeConfig::for_database("");
        let reason = if per_peer {
            config.max_connections_per_peer = 3;
            "max_connections_per_peer"
        } else {
            config.max_connections = 3;
            config.max_connections_per_peer = 0;
            "max_connections"
        };
        let server = TestServer::sqlite_with_metrics(config).await;
        let refused = format!("salesmetrics_connections_refused_total{{reason=\"{reason}\"}}");
        let mut channels = Vec::new();
        for _ in 0..3 {
            let channel = server.channel().await;
            list_kpis_on(&channel).await.expect("within the cap");
            channels.push(channel);
        }
        assert_eq!(metric(&server, "salesmetrics_connections_open").await, 3);
        let mut fourth = tokio::net::TcpStream::connect(server.addr)
            .await
            .expect("the TCP connect itself succeeds");
        assert!(
            closed_by_server(&mut fourth).await,
            "{reason}: closed at once"
        );
        assert_eq!(metric(&server, &refused).await, 1, "{reason}");
        for channel in &channels {
            list_kpis_on(channel)
                .await
                .expect("the open connections still work");
        }
        channels.pop();
        wait_for_metric(&server, "salesmetrics_connections_open", 2).await;
        let channel = server.channel().await;
        list_kpis_on(&channel)
            .await
            .expect("a new client once one has left");
        assert_eq!(metric(&server, &refused).await, 1, "{reason}");
        drop(channels);
        server.stop().await;
    }
}

/// A connection without a call for `--connection-idle-timeout-seconds` is
/// closed (and counted); one with a stream open that long is not.
#[tokio::test]
async fn idle_connections_are_closed_but_busy_ones_are_not() {
    let mut config = salesmetrics::config::ServeConfig::for_database("");
    config.connection_idle_timeout_seconds = 1;
    let server = TestServer::sqlite_with_metrics(config).await;
    let idle = server.channel().await;
    list_kpis_on(&idle).await.expect("served");

    let (batches, rx) = tokio::sync::mpsc::channel::<pb::StreamIngestRequest>(1);
    let mut acks = server
        .ingest()
        .await
        .stream_ingest(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("stream opens")
        .into_inner();
    wait_for_metric(&server, "salesmetrics_connections_idle_closed_total", 1).await;
    drop(idle);
    wait_for_metric(&server, "salesmetrics_connections_open", 1).await;
    // The stream's connection stayed open: a batch sent now is acknowledged.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    batches
        .send(pb::StreamIngestRequest {
            sequence: 1,
            records: vec![order("busy-1", 5)],
            all_or_nothing: false,
        })
        .await
        .expect("send");
    let ack = acks.message().await.expect("ack").expect("an ack");
    assert_eq!(ack.result.expect("result").accepted_count, 1);
    assert_eq!(
        metric(&server, "salesmetrics_connections_idle_closed_total").await,
        1
    );
    drop(batches);
    server.stop().await;
}

/// A StreamIngest stream older than `--max-stream-lifetime-seconds` is ended
/// with DEADLINE_EXCEEDED and a message that says why, though it keeps
/// sending; the batches acknowledged before stay written.
#[tokio::test]
async fn a_stream_is_ended_at_its_lifetime() {
    let (dir, url) = db::fresh_sqlite().await;
    let mut config = salesmetrics::config::ServeConfig::for_database("");
    config.max_stream_lifetime_seconds = 1;
    let server = TestServer::start("sqlite", url, config, Some(dir)).await;
    let (batches, rx) = tokio::sync::mpsc::channel::<pb::StreamIngestRequest>(1);
    let mut acks = server
        .ingest()
        .await
        .stream_ingest(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("stream opens")
        .into_inner();
    let mut acknowledged = 0;
    let ended = loop {
        assert!(acknowledged < 50, "the stream ends within 50 batches");
        let _ = batches
            .send(pb::StreamIngestRequest {
                sequence: acknowledged,
                records: vec![order(&format!("life-{acknowledged}"), 5)],
                all_or_nothing: false,
            })
            .await;
        match acks.message().await {
            Ok(Some(ack)) => {
                assert_eq!(ack.sequence, acknowledged);
                acknowledged += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(None) => panic!("the stream ends with a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(ended.code(), Code::DeadlineExceeded, "{ended:?}");
    assert!(
        ended.message().contains("the longest a stream may last"),
        "{ended:?}"
    );
    assert!(acknowledged >= 3, "about 1 s of batches: {acknowledged}");
    let mut stream = server
        .ingest()
        .await
        .export_records(pb::ExportRecordsRequest {
            record_type: pb::RecordType::Order as i32,
        })
        .await
        .expect("export")
        .into_inner();
    let mut exported = 0;
    while let Some(page) = stream.message().await.expect("page") {
        exported += page.records.len();
    }
    assert!(
        exported >= acknowledged as usize,
        "{exported} < {acknowledged}"
    );
    drop(batches);
    server.stop().await;
}

/// An ExportRecords stream still open at `--max-stream-lifetime-seconds`
/// (its client reads slowly) ends with DEADLINE_EXCEEDED instead of the rest
/// of the records, so it cannot pass for a complete export.
#[tokio::test]
async fn an_export_is_ended_at_its_lifetime() {
    let (dir, url) = db::fresh_sqlite().await;
    let mut config = salesmetrics::config::ServeConfig::for_database("");
    config.max_stream_lifetime_seconds = 1;
    let server = TestServer::start("sqlite", url, config, Some(dir)).await;
    // More than HTTP/2 flow control lets the server send ahead (megabytes).
    const ORDERS: usize = 60_000;
    let mut ingest = server.ingest().await;
    for batch in 0..ORDERS / 10_000 {
        let orders: Vec<pb::Record> = (0..10_000)
            .map(|i| order(&format!("x{batch}-{i:05}"), 5))
            .collect();
        let written = ingest
            .ingest_batch(pb::IngestBatchRequest {
                records: orders,
                all_or_nothing: true,
            })
            .await
            .expect("ingest")
            .into_inner()
            .result
            .expect("result");
        assert_eq!(written.accepted_count, 10_000);
    }
    let mut stream = server
        .ingest()
        .await
        .export_records(pb::ExportRecordsRequest {
            record_type: pb::RecordType::Order as i32,
        })
        .await
        .expect("export")
        .into_inner();
    let first = stream.message().await.expect("a page").expect("a page");
    assert_eq!(first.records.len(), 500);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut exported = first.records.len();
    let ended = loop {
        match stream.message().await {
            Ok(Some(page)) => exported += page.records.len(),
            Ok(None) => panic!("the export ends with a status, not as complete"),
            Err(status) => break status,
        }
    };
    assert_eq!(ended.code(), Code::DeadlineExceeded, "{ended:?}");
    assert!(
        ended.message().contains("the longest a stream may last"),
        "{ended:?}"
    );
    assert!(exported < ORDERS, "{exported} of {ORDERS} exported");
    server.stop().await;
}

/// A flood of unknown keys from one address: the first 10 (the limit per
/// minute) are read from the database and refused as UNAUTHENTICATED; the
/// 90 after are RESOURCE_EXHAUSTED without a read. The limit is per address:
/// a valid key from the same address is refused too until the minute is
/// over, while health checks still answer.
#[tokio::test]
async fn a_flood_of_failed_authentications_is_cut_off_per_address() {
    let mut config = secure_config();
    config.max_failed_auth_per_minute = 10;
    let server = TestServer::sqlite_with_metrics(config).await;
    let key = new_key(&server, "acme", true).await;
    let before = metric(&server, "salesmetrics_api_key_lookups_total").await;
    let mut kpi = server.kpi().await;
    let mut codes = Vec::new();
    for i in 0..100 {
        // A different unknown id each time: no help from the refused-key cache.
        let unknown = format!("sm_{:016x}_{}", i, "ab".repeat(32));
        let err = kpi
            .list_kpis(bearer(pb::ListKpisRequest {}, &unknown))
            .await
            .expect_err("refused");
        codes.push(err.code());
        if err.code() == Code::ResourceExhausted {
            assert_eq!(
                err.message(),
                "too many failed authentications from this address; retry in a minute"
            );
        }
    }
    let unauthenticated = codes
        .iter()
        .filter(|c| **c == Code::Unauthenticated)
        .count();
    let exhausted = codes
        .iter()
        .filter(|c| **c == Code::ResourceExhausted)
        .count();
    assert_eq!((unauthenticated, exhausted), (10, 90));
    assert!(codes[..10].iter().all(|c| *c == Code::Unauthenticated));
    assert_eq!(
        metric(&server, "salesmetrics_api_key_lookups_total").await - before,
        10,
        "one database read per failure before the cut-off, none after"
    );
    let err = kpi
        .list_kpis(bearer(pb::ListKpisRequest {}, &key.secret))
        .await
        .expect_err("the address is cut off, whatever the key");
    assert_eq!(err.code(), Code::ResourceExhausted);
    let health = tonic_health::pb::health_client::HealthClient::new(server.channel().await)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health answers")
        .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    server.stop().await;
}

/// A team record of the test tenant.
fn team_record(id: &str, parent: Option<&str>) -> salesmetrics::domain::Record {
    salesmetrics::domain::Record::Team(salesmetrics::domain::Team {
        id: id.into(),
        version: None,
        name: id.into(),
        parent_team_id: parent.map(Into::into),
    })
}

/// With at most 3 teams per tenant, a fourth new team is REJECTED with a
/// reason naming the limit while updates of existing teams go through; a
/// team whose subtree would end up deeper than 100 levels cannot be moved.
async fn team_limits(store: std::sync::Arc<dyn salesmetrics::store::Store>) {
    use salesmetrics::store::WriteOutcome;
    store.ensure_tenant("few").await.expect("tenant");
    let outcomes = store
        .write(
            "few",
            &[
                team_record("a", None),
                team_record("b", Some("a")),
                team_record("c", None),
                team_record("d", None),
                team_record("c", Some("a")),
            ],
            false,
        )
        .await
        .expect("write");
    assert_eq!(
        outcomes,
        [
            WriteOutcome::Accepted,
            WriteOutcome::Accepted,
            WriteOutcome::Accepted,
            WriteOutcome::Rejected {
                field: "team.id".into(),
                reason: "the tenant has 3 teams, the most it may have; team \"d\" is not added"
                    .into(),
            },
            WriteOutcome::Accepted,
        ]
    );
}

/// A chain of 60 teams and a chain of 41: the root of the second may move
/// under level 59 of the first (its deepest team then at level 100), not
/// under level 60.
async fn deep_moves(store: std::sync::Arc<dyn salesmetrics::store::Store>) {
    use salesmetrics::store::WriteOutcome;
    store.ensure_tenant("deep").await.expect("tenant");
    let chain = |prefix: &str, n: usize| -> Vec<salesmetrics::domain::Record> {
        (0..n)
            .map(|i| {
                let parent = i.checked_sub(1).map(|p| format!("{prefix}{p}"));
                team_record(&format!("{prefix}{i}"), parent.as_deref())
            })
            .collect()
    };
    let mut teams = chain("c", 60);
    teams.extend(chain("x", 41));
    let outcomes = store.write("deep", &teams, false).await.expect("write");
    assert!(outcomes.iter().all(|o| *o == WriteOutcome::Accepted));
    let outcomes = store
        .write(
            "deep",
            &[
                team_record("x0", Some("c59")),
                team_record("x0", Some("c58")),
            ],
            false,
        )
        .await
        .expect("write");
    assert_eq!(
        outcomes,
        [
            WriteOutcome::Rejected {
                field: "team.parent_team_id".into(),
                reason: "under \"c59\" the teams below team \"x0\" would be more than 100 \
                         levels deep; team trees may be at most 100 levels deep"
                    .into(),
            },
            WriteOutcome::Accepted,
        ]
    );
}

/// Two batches of two new teams each, written at once by one tenant that
/// may have 3 teams: whichever is written second sees the first, so 3 teams
/// are stored and exactly one is REJECTED for the limit, in each of 20
/// tenants at once. (On SQLite both batches may have their team checks
/// worked out from the same snapshot before either is written; the second
/// then finds the tenant changed and checks again.)
async fn concurrent_team_batches(store: std::sync::Arc<dyn salesmetrics::store::Store>) {
    use salesmetrics::store::WriteOutcome;
    // Twenty tenants, so that the two batches overlap in some of them.
    let races = (0..20).map(|n| {
        let store = std::sync::Arc::clone(&store);
        tokio::spawn(async move {
            let tenant = format!("race-{n}");
            store.ensure_tenant(&tenant).await.expect("tenant");
            let first = [team_record("a", None), team_record("b", Some("a"))];
            let second = [team_record("c", None), team_record("d", Some("c"))];
            let (first, second) = tokio::join!(
                store.write(&tenant, &first, false),
                store.write(&tenant, &second, false)
            );
            let (_, dataset) = store.load_versioned(&tenant).await.expect("load");
            let outcomes: Vec<WriteOutcome> = first
                .expect("first batch")
                .into_iter()
                .chain(second.expect("second batch"))
                .collect();
            (outcomes, dataset.teams.len())
        })
    });
    for race in futures::future::join_all(races).await {
        let (outcomes, stored) = race.expect("race");
        let accepted = outcomes
            .iter()
            .filter(|o| **o == WriteOutcome::Accepted)
            .count();
        let rejected: Vec<&WriteOutcome> = outcomes
            .iter()
            .filter(|o| matches!(o, WriteOutcome::Rejected { .. }))
            .collect();
        assert_eq!(
            (accepted, rejected.len(), stored),
            (3, 1, 3),
            "{outcomes:?}"
        );
        let WriteOutcome::Rejected { field, reason } = rejected[0] else {
            unreachable!("filtered");
        };
        assert_eq!(field, "team.id");
        assert!(
            reason.starts_with("the tenant has 3 teams, the most it may have"),
            "{reason}"
        );
    }
}

/// Both team limits on a backend (`url`), with at most 3 teams per tenant
/// for the count and the default for the depth.
async fn team_limits_on(url: &str) {
    use salesmetrics::store::{StoreOptions, connect_with};
    let few = StoreOptions {
        max_teams_per_tenant: 3,
        ..StoreOptions::default()
    };
    team_limits(connect_with(url, few).await.expect("connect")).await;
    concurrent_team_batches(connect_with(url, few).await.expect("connect")).await;
    deep_moves(
        connect_with(url, StoreOptions::default())
            .await
            .expect("connect"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_limits_sqlite() {
    let (_dir, url) = db::fresh_sqlite().await;
    team_limits_on(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_limits_postgres() {
    let Some(url) = db::fresh_postgres().await else {
        return;
    };
    team_limits_on(&url).await;
    db::drop_postgres(&url).await;
}

/// Team `i` of tenant A's chain: its parent is team `i - 1`, except that
/// every 100th team starts a new root, so each chain is exactly as deep as a
/// team tree may be (100 levels) and the teams run into the count limit
/// rather than the depth limit.
fn chain_team(i: usize) -> pb::Record {
    let parent = if i.is_multiple_of(100) {
        String::new()
    } else {
        format!("t{}", i - 1)
    };
    pb::Record {
        record: Some(R::Team(pb::Team {
            id: format!("t{i}"),
            name: format!("Team {i}"),
            parent_team_id: parent,
            ..Default::default()
        })),
    }
}

/// How many records of `record_type` `key`'s tenant can export.
async fn count_records(server: &TestServer, key: &str, record_type: pb::RecordType) -> usize {
    let mut stream = server
        .ingest()
        .await
        .export_records(bearer(
            pb::ExportRecordsRequest {
                record_type: record_type as i32,
            },
            key,
        ))
        .await
        .expect("export")
        .into_inner();
    let mut count = 0;
    while let Some(page) = stream.message().await.expect("page") {
        count += page.records.len();
    }
    count
}

/// Tenant A sends 40 000 teams, parent before child, in batches of 10 000
/// (the most the server accepts), as chains 100 levels deep, while tenant B
/// writes one order at a time. The first batch fills A's 10 000 teams; the
/// three after are refused whole, each team REJECTED with the limit's reason,
/// and store nothing. Every one of B's writes succeeds and none waits a
/// second behind A's batches.
async fn a_deep_team_chain_does_not_hold_up_another_tenant(server: TestServer) {
    const BATCH: usize = 10_000;
    const TEAMS: usize = 40_000;
    let a = new_key(&server, "tenant-a", true).await;
    let b = new_key(&server, "tenant-b", true).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let b_writes = {
        let mut ingest = server.ingest().await;
        let stop = std::sync::Arc::clone(&stop);
        let secret = b.secret.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let started = std::time::Instant::now();
                let written = ingest
                    .ingest_batch(bearer(
                        pb::IngestBatchRequest {
                            records: vec![order(&format!("b{i}"), 100)],
                            all_or_nothing: false,
                        },
                        &secret,
                    ))
                    .await
                    .expect("B's write succeeds")
                    .into_inner()
                    .result
                    .expect("result");
                latencies.push(started.elapsed());
                assert_eq!(written.accepted_count, 1, "B's order b{i}");
                i += 1;
            }
            latencies
        })
    };
    // B is writing before A starts.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut ingest = server.ingest().await.max_decoding_message_size(64 << 20);
    let mut a_times = Vec::new();
    for start in (0..TEAMS).step_by(BATCH) {
        let started = std::time::Instant::now();
        let result = ingest
            .ingest_batch(bearer(
                pb::IngestBatchRequest {
                    records: (start..start + BATCH).map(chain_team).collect(),
                    all_or_nothing: false,
                },
                &a.secret,
            ))
            .await
            .expect("A's batch is answered")
            .into_inner()
            .result
            .expect("result");
        a_times.push(started.elapsed());
        if start == 0 {
            assert_eq!(result.accepted_count, 10_000, "{}", server.backend);
        } else {
            assert_eq!(
                (result.accepted_count, result.rejected_count),
                (0, 10_000),
                "{}",
                server.backend
            );
            let first = &result.results[0];
            assert_eq!(first.field_path, "records[0].team.id");
            assert_eq!(
                first.reason,
                format!(
                    "the tenant has 10000 teams, the most it may have; team \"t{start}\" is not added"
                )
            );
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut latencies = b_writes.await.expect("B's writer");
    assert_eq!(
        count_records(&server, &a.secret, pb::RecordType::Team).await,
        10_000
    );
    assert_eq!(
        count_records(&server, &b.secret, pb::RecordType::Order).await,
        latencies.len()
    );
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let max = *latencies.last().expect("B wrote");
    println!(
        "{}: A's batches took {:?}; B wrote {} orders meanwhile, p50 {:?}, max {:?}",
        server.backend,
        a_times,
        latencies.len(),
        p50,
        max
    );
    assert!(
        max < Duration::from_secs(1),
        "{}: B waited {max:?} behind A",
        server.backend
    );
    server.stop().await;
}

mod a_deep_team_chain_does_not_hold_up_another_tenant {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        let (dir, url) = db::fresh_sqlite().await;
        let server = TestServer::start("sqlite", url, secure_config(), Some(dir)).await;
        super::a_deep_team_chain_does_not_hold_up_another_tenant(server).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let Some(url) = db::fresh_postgres().await else {
            return;
        };
        let server = TestServer::start("postgres", url, secure_config(), None).await;
        super::a_deep_team_chain_does_not_hold_up_another_tenant(server).await;
    }
}

/// Reads one HTTP/2 frame from `stream`: its type, flags and payload
/// (`None` once the server has closed the connection).
async fn read_frame(stream: &mut tokio::net::TcpStream) -> Option<(u8, u8, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let mut head = [0u8; 9];
    stream.read_exact(&mut head).await.ok()?;
    let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; length];
    stream.read_exact(&mut payload).await.ok()?;
    Some((head[3], head[4], payload))
}

/// With a keep-alive PING after 1 s without traffic and 1 s to answer it
/// (and an idle timeout of a minute, so the PING is what counts): a client
/// that speaks HTTP/2 up to the SETTINGS exchange and then never answers
/// receives a PING and is closed. A live client with the same settings
/// keeps its one connection through 3 s of quiet, and its calls still work.
#[tokio::test]
async fn a_dead_peer_is_closed_by_keepalive() {
    use tokio::io::AsyncWriteExt;
    const SETTINGS: u8 = 0x4;
    const PING: u8 = 0x6;
    const ACK: u8 = 0x1;
    let mut config = salesmetrics::config::ServeConfig::for_database("");
    config.keepalive_interval_seconds = 1;
    config.keepalive_timeout_seconds = 1;
    config.connection_idle_timeout_seconds = 60;
    let server = TestServer::sqlite_with_metrics(config).await;

    let started = std::time::Instant::now();
    let mut dead = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    dead.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .expect("preface");
    // An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
    dead.write_all(&[0, 0, 0, SETTINGS, 0, 0, 0, 0, 0])
        .await
        .expect("settings");
    let mut pinged = false;
    let closed = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some((kind, flags, _)) = read_frame(&mut dead).await {
            if kind == SETTINGS && flags & ACK == 0 {
                // The server's SETTINGS, acknowledged: the last thing said.
                dead.write_all(&[0, 0, 0, SETTINGS, ACK, 0, 0, 0, 0])
                    .await
                    .expect("settings ack");
            }
            if kind == PING && flags & ACK == 0 {
                pinged = true;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "closed within 15 s");
    assert!(pinged, "the server sent a PING before closing");
    println!("the dead peer was closed after {:?}", started.elapsed());
    wait_for_metric(&server, "salesmetrics_connections_open", 0).await;

    let live = server.channel().await;
    list_kpis_on(&live).await.expect("served");
    assert_eq!(metric(&server, "salesmetrics_connections_open").await, 1);
    // Sampled through 3 s of quiet: the connection never closes (a reopened
    // one would leave a gap at 0).
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(metric(&server, "salesmetrics_connections_open").await, 1);
    }
    list_kpis_on(&live)
        .await
        .expect("still served after the quiet");
    assert_eq!(metric(&server, "salesmetrics_connections_open").await, 1);
    assert_eq!(
        metric(&server, "salesmetrics_connections_idle_closed_total").await,
        0
    );
    server.stop().await;
}
