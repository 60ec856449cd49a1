//! Metrics and traces: the Prometheus endpoint of a real server counts known
//! calls and records exactly, and the real binary exports a span per call to
//! an OTLP/gRPC collector (a real tonic server in the test) and flushes it
//! on SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost_types::Timestamp;
use salesmetrics::config::ServeConfig;
use salesmetrics::proto::v1 as pb;
use salesmetrics::proto::v1::record::Record as R;
use tokio::sync::mpsc;
use tonic::Code;

use super::harness::{Http1Response, TestServer, http1};
use super::process::{start_binary, terminate};

/// 2024-03-01T00:00:00Z.
const T0: i64 = 1_709_251_200;

const INGEST_BATCH: &str = "/salesmetrics.v1.IngestService/IngestBatch";

fn rec(r: R) -> pb::Record {
    pb::Record { record: Some(r) }
}

fn order(id: &str, version: i64) -> pb::Record {
    rec(R::Order(pb::Order {
        id: id.into(),
        version: Some(version),
        amount: Some(pb::Money {
            currency_code: "USD".into(),
            minor_units: 10_000,
        }),
        ordered_at: Some(Timestamp {
            seconds: T0,
            nanos: 0,
        }),
        kind: pb::OrderKind::New as i32,
        customer_id: "c1".into(),
        rep_id: "r1".into(),
        deal_id: String::new(),
    }))
}

fn rep(id: &str) -> pb::Record {
    rec(R::Rep(pb::Rep {
        id: id.into(),
        name: format!("Rep {id}"),
        email: format!("{id}@example.com"),
        ..Default::default()
    }))
}

fn customer(id: &str) -> pb::Record {
    rec(R::Customer(pb::Customer {
        id: id.into(),
        acquired_at: Some(Timestamp {
            seconds: T0,
            nanos: 0,
        }),
        ..Default::default()
    }))
}

fn lead(id: &str) -> pb::Record {
    rec(R::Lead(pb::Lead {
        id: id.into(),
        source: "web".into(),
        created_at: Some(Timestamp {
            seconds: T0,
            nanos: 0,
        }),
        ..Default::default()
    }))
}

/// A deal with nothing but an id: rejected (no amount, no created_at…).
fn invalid_deal() -> pb::Record {
    rec(R::Deal(pb::Deal {
        id: "d-bad".into(),
        ..Default::default()
    }))
}

/// GET `path` from a metrics endpoint.
async fn scrape(addr: SocketAddr, path: &str) -> Http1Response {
    http1(addr, &format!("GET {path} HTTP/1.1\r\n"), &[]).await
}

/// The value of the sample `series` (name and labels, exactly as exposed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.parse().ok()
    })
}

/// Five IngestService calls and one call to a method that does not exist,
/// then a scrape; every count below is worked out from the calls:
///
/// 1. IngestBatch: orders o-1 (version 1), o-2 (version 1), rep r1, and a
///    deal without fields → OK; 3 ACCEPTED, 1 REJECTED (deal).
/// 2. IngestBatch: o-1 again at version 1 and rep r2 → OK; 1 STALE (order),
///    1 ACCEPTED (rep).
/// 3. IngestBatch, all_or_nothing: customer c1 and a customer with an
///    invalid id → INVALID_ARGUMENT; both customers count as REJECTED.
/// 4. StreamIngest: one batch with lead l1 → OK; 1 ACCEPTED (lead).
/// 5. ExportRecords of orders (server stream) → OK.
/// 6. grpc-web POST to /salesmetrics.v1.KpiService/Nope → UNIMPLEMENTED,
///    counted under method "unknown".
///
/// Then: IngestBatch has OK 2, INVALID_ARGUMENT 1 and a duration histogram
/// of 3 calls; ingested order 2, rep 2, lead 1, customer 0; stale order 1;
/// rejected deal 1, customer 2, order 0; the SQLite pools are reported
/// (write: 1 connection at most, open; read: 4 at most). Other paths are
/// 404, other methods 405, and the endpoint closes with the server.
#[tokio::test]
async fn the_metrics_endpoint_counts_calls_and_records() {
    let server = TestServer::sqlite_with_metrics(ServeConfig::for_database("")).await;
    let metrics_addr = server.metrics_addr.expect("metrics address");
    let mut ingest = server.ingest().await;

    let first = ingest
        .ingest_batch(pb::IngestBatchRequest {
            records: vec![order("o-1", 1), order("o-2", 1), rep("r1"), invalid_deal()],
            all_or_nothing: false,
        })
        .await
        .expect("batch 1")
        .into_inner()
        .result
        .expect("result");
    assert_eq!((first.accepted_count, first.rejected_count), (3, 1));
    let second = ingest
        .ingest_batch(pb::IngestBatchRequest {
            records: vec![order("o-1", 1), rep("r2")],
            all_or_nothing: false,
        })
        .await
        .expect("batch 2")
        .into_inner()
        .result
        .expect("result");
    assert_eq!((second.accepted_count, second.stale_count), (1, 1));
    let refused = ingest
        .ingest_batch(pb::IngestBatchRequest {
            records: vec![customer("c1"), customer("not an id!")],
            all_or_nothing: true,
        })
        .await
        .expect_err("all-or-nothing batch with an invalid record");
    assert_eq!(refused.code(), Code::InvalidArgument);

    let batch = pb::StreamIngestRequest {
        sequence: 1,
        records: vec![lead("l1")],
        all_or_nothing: false,
    };
    let mut acks = ingest
        .stream_ingest(tokio_stream::iter([batch]))
        .await
        .expect("stream")
        .into_inner();
    let ack = acks.message().await.expect("ack").expect("one ack");
    assert_eq!(ack.result.expect("result").accepted_count, 1);
    assert!(acks.message().await.expect("clean end").is_none());

    let mut export = ingest
        .export_records(pb::ExportRecordsRequest {
            record_type: pb::RecordType::Order as i32,
        })
        .await
        .expect("export")
        .into_inner();
    let mut exported = 0;
    while let Some(page) = export.message().await.expect("page") {
        exported += page.records.len();
    }
    assert_eq!(exported, 2);

    let unknown = http1(
        server.addr,
        "POST /salesmetrics.v1.KpiService/Nope HTTP/1.1\r\n\
         Content-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\n",
        &[0, 0, 0, 0, 0],
    )
    .await;
    assert_eq!(
        unknown.header("grpc-status"),
        Some("12"),
        "{}",
        unknown.head
    );

    let response = scrape(metrics_addr, "/metrics").await;
    assert_eq!(response.status, 200, "{}", response.head);
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = String::from_utf8(response.body).expect("UTF-8 metrics");
    let expected = [
        (
            format!("salesmetrics_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION")),
            1.0,
        ),
        (
            format!("salesmetrics_rpc_requests_total{{method=\"{INGEST_BATCH}\",code=\"OK\"}}"),
            2.0,
        ),
        (
            format!(
                "salesmetrics_rpc_requests_total{{method=\"{INGEST_BATCH}\",code=\"INVALID_ARGUMENT\"}}"
            ),
            1.0,
        ),
        (
            "salesmetrics_rpc_requests_total{method=\"/salesmetrics.v1.IngestService/StreamIngest\",code=\"OK\"}".into(),
            1.0,
        ),
        (
            "salesmetrics_rpc_requests_total{method=\"/salesmetrics.v1.IngestService/ExportRecords\",code=\"OK\"}".into(),
            1.0,
        ),
        (
            "salesmetrics_rpc_requests_total{method=\"unknown\",code=\"UNIMPLEMENTED\"}".into(),
            1.0,
        ),
        (
            format!("salesmetrics_rpc_duration_seconds_count{{method=\"{INGEST_BATCH}\"}}"),
            3.0,
        ),
        (
            format!("salesmetrics_rpc_duration_seconds_bucket{{method=\"{INGEST_BATCH}\",le=\"+Inf\"}}"),
            3.0,
        ),
        ("salesmetrics_records_ingested_total{type=\"order\"}".into(), 2.0),
        ("salesmetrics_records_ingested_total{type=\"rep\"}".into(), 2.0),
        ("salesmetrics_records_ingested_total{type=\"lead\"}".into(), 1.0),
        ("salesmetrics_records_ingested_total{type=\"customer\"}".into(), 0.0),
        ("salesmetrics_records_stale_total{type=\"order\"}".into(), 1.0),
        ("salesmetrics_records_rejected_total{type=\"deal\"}".into(), 1.0),
        ("salesmetrics_records_rejected_total{type=\"customer\"}".into(), 2.0),
        ("salesmetrics_records_rejected_total{type=\"order\"}".into(), 0.0),
        ("salesmetrics_db_pool_max_connections{pool=\"write\"}".into(), 1.0),
        ("salesmetrics_db_pool_max_connections{pool=\"read\"}".into(), 4.0),
    ];
    for (series, value) in &expected {
        assert_eq!(sample(&text, series), Some(*value), "{series} in\n{text}");
    }
    // No IngestBatch call took more than a minute, and every one is in a bucket.
    let sum = sample(
        &text,
        &format!("salesmetrics_rpc_duration_seconds_sum{{method=\"{INGEST_BATCH}\"}}"),
    )
    .expect("duration sum");
    assert!(sum > 0.0 && sum < 180.0, "{sum}");
    assert_eq!(
        sample(
            &text,
            &format!(
                "salesmetrics_rpc_duration_seconds_bucket{{method=\"{INGEST_BATCH}\",le=\"60\"}}"
            )
        ),
        Some(3.0)
    );
    // The single writer connection is open, idle or (just) lent out.
    let writer: f64 = ["idle", "in_use"]
        .iter()
        .map(|state| {
            sample(
                &text,
                &format!("salesmetrics_db_pool_connections{{pool=\"write\",state=\"{state}\"}}"),
            )
            .expect("writer pool gauge")
        })
        .sum();
    assert_eq!(writer, 1.0, "{text}");

    assert_eq!(scrape(metrics_addr, "/").await.status, 404);
    let post = http1(metrics_addr, "POST /metrics HTTP/1.1\r\n", b"x").await;
    assert_eq!(post.status, 405);

    server.stop().await;
    let mut closed = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(metrics_addr).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(closed, "the metrics endpoint stops with the server");
}

/// An OTLP/gRPC collector that hands every export request to the test.
struct Collector(mpsc::UnboundedSender<ExportTraceServiceRequest>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let _ = self.0.send(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// The caller's trace: W3C `traceparent` of trace
/// 0af7651916cd43dd8448eb211c80319c, parent span b7ad6b7169203331, sampled.
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// The binary with `--otlp-endpoint` (a collector in this test) and
/// `--metrics-listen 127.0.0.1:0` serves a ListKpis call carrying a
/// `traceparent`; its metrics port counts it; after SIGTERM (the batch
/// exporter would otherwise wait up to 5 s) the collector has received one
/// span for it: named `salesmetrics.v1.KpiService/ListKpis`, kind SERVER,
/// in the caller's trace with the caller's span as parent, status code OK,
/// from service `salesmetrics`.
#[tokio::test]
async fn the_binary_exports_a_span_per_call_over_otlp() {
    let (spans_tx, mut spans_rx) = mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the collector");
    let collector_addr = listener.local_addr().expect("collector address");
    let collector = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Collector(spans_tx)))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );

    let dir = tempfile::tempdir().expect("temporary directory");
    let endpoint = format!("http://{collector_addr}");
    let (mut child, address, log) = start_binary(
        dir.path(),
        &[
            "--otlp-endpoint",
            &endpoint,
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    let metrics_addr: SocketAddr = log
        .iter()
        .find(|e| e["fields"]["message"] == "serving metrics at /metrics")
        .and_then(|e| e["fields"]["address"].as_str())
        .expect("the metrics address is logged")
        .parse()
        .expect("metrics address");

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect to the child server");
    let mut kpi = pb::kpi_service_client::KpiServiceClient::new(channel);
    let mut request = tonic::Request::new(pb::ListKpisRequest::default());
    request
        .metadata_mut()
        .insert("traceparent", TRACEPARENT.parse().expect("metadata"));
    let catalog = kpi.list_kpis(request).await.expect("ListKpis").into_inner();
    assert_eq!(catalog.kpis.len(), 65, "the server serves with export on");

    let text = String::from_utf8(scrape(metrics_addr, "/metrics").await.body).expect("UTF-8");
    assert_eq!(
        sample(
            &text,
            "salesmetrics_rpc_requests_total{method=\"/salesmetrics.v1.KpiService/ListKpis\",code=\"OK\"}"
        ),
        Some(1.0),
        "{text}"
    );

    let exit = terminate(&mut child).await;
    assert!(exit.success(), "clean exit after SIGTERM: {exit:?}");

    // Everything exported has arrived by the time the process exited.
    let mut requests = Vec::new();
    while let Ok(request) = spans_rx.try_recv() {
        requests.push(request);
    }
    collector.abort();
    let mut found = Vec::new();
    for request in &requests {
        for resource_spans in &request.resource_spans {
            let service = resource_spans
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
                .and_then(|a| a.value.as_ref()?.value.clone());
            for scope in &resource_spans.scope_spans {
                for span in &scope.spans {
                    if span.name == "salesmetrics.v1.KpiService/ListKpis" {
                        found.push((service.clone(), span.clone()));
                    }
                }
            }
        }
    }
    assert_eq!(found.len(), 1, "one span for the call: {requests:#?}");
    let (service, span) = &found[0];
    assert_eq!(
        service,
        &Some(AnyValue::StringValue("salesmetrics".into())),
        "service.name"
    );
    assert_eq!(
        hex::encode(&span.trace_id),
        "0af7651916cd43dd8448eb211c80319c"
    );
    assert_eq!(hex::encode(&span.parent_span_id), "b7ad6b7169203331");
    assert_eq!(span.kind, 2, "SPAN_KIND_SERVER");
    let status_code = span
        .attributes
        .iter()
        .find(|a| a.key == "rpc.grpc.status_code")
        .and_then(|a| a.value.as_ref()?.value.clone());
    assert_eq!(status_code, Some(AnyValue::StringValue("OK".into())));
}

/// The metrics layer sits outside authentication: with `--auth on`, a
/// ListKpis call without an API key is refused (UNAUTHENTICATED) and
/// counted as such; the open health check is counted as OK.
#[tokio::test]
async fn refused_calls_are_counted_with_their_code() {
    let mut config = ServeConfig::for_database("");
    config.auth = salesmetrics::config::AuthMode::On;
    config.admin_token = Some("observability-admin-token".into());
    let server = TestServer::sqlite_with_metrics(config).await;
    let metrics_addr = server.metrics_addr.expect("metrics address");

    let refused = server
        .kpi()
        .await
        .list_kpis(pb::ListKpisRequest::default())
        .await
        .expect_err("no API key");
    assert_eq!(refused.code(), Code::Unauthenticated);
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health is open");

    let text = String::from_utf8(scrape(metrics_addr, "/metrics").await.body).expect("UTF-8");
    for series in [
        "salesmetrics_rpc_requests_total{method=\"/salesmetrics.v1.KpiService/ListKpis\",code=\"UNAUTHENTICATED\"}",
        "salesmetrics_rpc_requests_total{method=\"/grpc.health.v1.Health/Check\",code=\"OK\"}",
    ] {
        assert_eq!(sample(&text, series), Some(1.0), "{series} in\n{text}");
    }
    server.stop().await;
}

/// COMPANY KPIs of the year 2024.
fn kpis_of_2024(kpi_ids: &[&str]) -> pb::GetKpisRequest {
    pb::GetKpisRequest {
        kpi_ids: kpi_ids.iter().map(|id| id.to_string()).collect(),
        period: Some(pb::Period {
            period: Some(pb::period::Period::Calendar(pb::CalendarPeriod {
                granularity: pb::Granularity::Year as i32,
                date: Some(pb::Date {
                    year: 2024,
                    month: 6,
                    day: 1,
                }),
            })),
        }),
        ..Default::default()
    }
}

/// The snapshot counters: a tenant's first query loads it in full; a query
/// after a write catches up through the change feed; a query with nothing
/// new uses the snapshot as it is (neither counter moves).
#[tokio::test]
async fn the_metrics_count_full_loads_and_catch_ups() {
    let server = TestServer::sqlite_with_metrics(ServeConfig::for_database("")).await;
    let metrics_addr = server.metrics_addr.expect("metrics address");
    let mut ingest = server.ingest().await;
    let mut kpi = server.kpi().await;
    let query = || kpis_of_2024(&["orders"]);
    let counters = || async {
        let text = String::from_utf8(scrape(metrics_addr, "/metrics").await.body).expect("UTF-8");
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("{name} in {text}"))
        };
        (
            value("salesmetrics_snapshot_full_loads_total"),
            value("salesmetrics_snapshot_catch_ups_total"),
        )
    };
    assert_eq!(counters().await, (0, 0));
    kpi.get_kpis(query()).await.expect("first query");
    assert_eq!(counters().await, (1, 0), "the first query loads");
    ingest
        .ingest_batch(pb::IngestBatchRequest {
            records: vec![order("o-1", 1)],
            all_or_nothing: true,
        })
        .await
        .expect("write");
    kpi.get_kpis(query()).await.expect("query after a write");
    assert_eq!(counters().await, (1, 1), "a write is caught up");
    kpi.get_kpis(query()).await.expect("query with nothing new");
    assert_eq!(counters().await, (1, 1), "nothing new: no refresh");
    server.stop().await;
}

/// `--warm-tenants 1` on a database that already has records: the server
/// loads the tenant's snapshot by itself after it starts, and the tenant's
/// first query is answered from it (one order of 10 000 minor units on
/// 2024-03-01: orders 1 and revenue 10 000 in 2024) with no load of its
/// own.
#[tokio::test]
async fn a_warm_tenant_is_loaded_before_its_first_query() {
    let (dir, url) = super::db::fresh_sqlite().await;
    let store = salesmetrics::store::connect(&url).await.expect("store");
    let tenant = salesmetrics::auth::DEFAULT_TENANT;
    store.ensure_tenant(tenant).await.expect("tenant");
    let sale = salesmetrics_core::testkit::build::sale("o-1", 10_000, "2024-03-01T00:00:00Z", None);
    store.write(tenant, &[sale], false).await.expect("write");
    let mut config = ServeConfig::for_database("");
    config.warm_tenants = 1;
    let server = TestServer::launch("sqlite", url, config, Some(dir), true).await;
    let metrics_addr = server.metrics_addr.expect("metrics address");
    let full_loads = || async {
        let text = String::from_utf8(scrape(metrics_addr, "/metrics").await.body).expect("UTF-8");
        text.lines()
            .find_map(|l| {
                l.strip_prefix("salesmetrics_snapshot_full_loads_total ")?
                    .parse::<u64>()
                    .ok()
            })
            .expect("the full-load counter")
    };
    // No query is sent: only the warming can load the tenant.
    let mut waited = 0;
    while full_loads().await == 0 {
        assert!(waited < 600, "the tenant was not warmed within a minute");
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    let bundle = server
        .kpi()
        .await
        .get_kpis(kpis_of_2024(&["orders", "revenue"]))
        .await
        .expect("first query")
        .into_inner()
        .bundle
        .expect("a bundle");
    let mut values: Vec<(String, Option<f64>)> = bundle
        .values
        .iter()
        .map(|v| (v.kpi_id.clone(), v.value))
        .collect();
    values.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        values,
        [
            ("orders".to_string(), Some(1.0)),
            ("revenue".to_string(), Some(10_000.0))
        ]
    );
    assert_eq!(
        full_loads().await,
        1,
        "the first query used the warmed snapshot"
    );
    server.stop().await;
}
