//! `WatchKpis`: a bundle at once, a new one after writes (coalesced per
//! interval), heartbeats, limits, shutdown, and the Connect streaming form.

use std::time::Duration;

use prost_types::Timestamp;
use salesmetrics::config::ServeConfig;
use salesmetrics::proto::v1 as pb;
use salesmetrics::proto::v1::watch_kpis_response::Event;
use serde_json::{Value, json};
use tonic::Streaming;

use super::db;
use super::harness::{TestServer, backend_tests, http1};

/// 2024-03-01T00:00:00Z.
const T0: i64 = 1_709_251_200;

/// The longest wait for any one message.
const WAIT: Duration = Duration::from_secs(20);

/// An order of `minor_units` USD cents at [`T0`].
fn order(id: &str, minor_units: i64) -> pb::Record {
    pb::Record {
        record: Some(pb::record::Record::Order(pb::Order {
            id: id.into(),
            amount: Some(pb::Money {
                currency_code: "USD".into(),
                minor_units,
            }),
            ordered_at: Some(Timestamp {
                seconds: T0,
                nanos: 0,
            }),
            customer_id: "c1".into(),
            rep_id: "r1".into(),
            ..Default::default()
        })),
    }
}

/// Ingests `records` over gRPC.
async fn ingest(server: &TestServer, records: Vec<pb::Record>) {
    let count = records.len();
    let result = server
        .ingest()
        .await
        .ingest_batch(pb::IngestBatchRequest {
            records,
            all_or_nothing: true,
        })
        .await
        .expect("ingest")
        .into_inner()
        .result
        .expect("result");
    assert_eq!(result.accepted_count as usize, count);
}

/// Watches March 2024's revenue, checked every `interval`.
fn watch_request(interval: Duration) -> pb::WatchKpisRequest {
    pb::WatchKpisRequest {
        request: Some(pb::GetKpisRequest {
            period: Some(pb::Period {
                period: Some(pb::period::Period::Calendar(pb::CalendarPeriod {
                    granularity: pb::Granularity::Month as i32,
                    date: Some(pb::Date {
                        year: 2024,
                        month: 3,
                        day: 1,
                    }),
                })),
            }),
            kpi_ids: vec!["revenue".into()],
            ..Default::default()
        }),
        min_interval: Some(prost_types::Duration {
            seconds: i64::try_from(interval.as_secs()).expect("seconds"),
            nanos: i32::try_from(interval.subsec_nanos()).expect("nanos"),
        }),
    }
}

/// Opens a watch.
async fn watch(server: &TestServer, interval: Duration) -> Streaming<pb::WatchKpisResponse> {
    server
        .kpi()
        .await
        .watch_kpis(watch_request(interval))
        .await
        .expect("WatchKpis")
        .into_inner()
}

/// The next event of a watch, within [`WAIT`].
async fn next(stream: &mut Streaming<pb::WatchKpisResponse>) -> Event {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("a message within the wait")
        .expect("no error")
        .expect("the stream goes on")
        .event
        .expect("an event")
}

/// The revenue of the next bundle, skipping heartbeats.
async fn next_revenue(stream: &mut Streaming<pb::WatchKpisResponse>) -> f64 {
    loop {
        if let Event::Kpis(kpis) = next(stream).await {
            let bundle = kpis.bundle.expect("bundle");
            assert_eq!(bundle.values[0].kpi_id, "revenue");
            return bundle.values[0].value.expect("revenue is defined");
        }
    }
}

/// A server on a fresh SQLite file with `change` applied to the defaults.
async fn sqlite_with(change: impl FnOnce(&mut ServeConfig)) -> TestServer {
    let (dir, url) = db::fresh_sqlite().await;
    let mut config = ServeConfig::for_database("");
    change(&mut config);
    TestServer::start("sqlite", url, config, Some(dir)).await
}

backend_tests! {
    /// The first bundle comes at once with the current revenue (19.99 USD);
    /// after a write of 5.01 USD the next bundle has 25.00 USD.
    #[tokio::test]
    async fn a_write_brings_a_new_bundle(server: TestServer) {
        ingest(&server, vec![order("o1", 1999)]).await;
        let mut stream = watch(&server, Duration::from_millis(100)).await;
        assert_eq!(next_revenue(&mut stream).await, 1999.0);
        ingest(&server, vec![order("o2", 501)]).await;
        assert_eq!(next_revenue(&mut stream).await, 2500.0);
        server.stop().await;
    }

    /// Five writes within one interval (3 s) bring at most two bundles, and
    /// the last one has all five orders (5 × 1.00 USD).
    #[tokio::test]
    async fn writes_within_an_interval_are_coalesced(server: TestServer) {
        let mut stream = watch(&server, Duration::from_secs(3)).await;
        assert_eq!(next_revenue(&mut stream).await, 0.0);
        for i in 0..5 {
            ingest(&server, vec![order(&format!("o{i}"), 100)]).await;
        }
        let mut bundles = 0;
        loop {
            let revenue = next_revenue(&mut stream).await;
            bundles += 1;
            if revenue == 500.0 {
                break;
            }
            assert!(revenue < 500.0, "{revenue}");
        }
        assert!(bundles <= 2, "{bundles} bundles for five writes in one interval");
        server.stop().await;
    }
}

/// With a heartbeat interval of 1 s and no writes, an open watch gets
/// heartbeats (with the time they were sent) after its first bundle.
#[tokio::test]
async fn an_idle_watch_gets_heartbeats() {
    let server = sqlite_with(|c| c.watch_heartbeat_seconds = 1).await;
    let mut stream = watch(&server, Duration::from_millis(100)).await;
    assert!(matches!(next(&mut stream).await, Event::Kpis(_)));
    let before = chrono::Utc::now().timestamp();
    for _ in 0..2 {
        let Event::Heartbeat(heartbeat) = next(&mut stream).await else {
            panic!("a heartbeat, as nothing changed");
        };
        let sent = heartbeat.sent_at.expect("sent_at").seconds;
        assert!(sent >= before, "{sent} >= {before}");
    }
    server.stop().await;
}

/// Beyond `--max-watches-per-tenant` (2) a watch is refused with
/// RESOURCE_EXHAUSTED; once one closes, a new one is accepted.
#[tokio::test]
async fn watches_per_tenant_are_limited() {
    let server = sqlite_with(|c| c.max_watches_per_tenant = 2).await;
    let first = watch(&server, Duration::from_millis(100)).await;
    let _second = watch(&server, Duration::from_millis(100)).await;
    let refused = server
        .kpi()
        .await
        .watch_kpis(watch_request(Duration::from_millis(100)))
        .await
        .expect_err("a third watch");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert_eq!(
        refused.message(),
        "this tenant has 2 KPI watches open, its limit; close one first"
    );
    drop(first);
    // The server notices the closed stream on its own; wait for it.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let attempt = server
            .kpi()
            .await
            .watch_kpis(watch_request(Duration::from_millis(100)))
            .await;
        match attempt {
            Ok(_) => break,
            Err(status) if tokio::time::Instant::now() < deadline => {
                assert_eq!(status.code(), tonic::Code::ResourceExhausted);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("the slot was never freed: {status:?}"),
        }
    }
    server.stop().await;
}

/// Beyond `--max-watches` (2) a watch is refused with RESOURCE_EXHAUSTED;
/// watches do not take concurrency slots: with `--max-concurrent-requests`
/// 2, two open watches leave GetKpis answering.
#[tokio::test]
async fn watches_per_server_are_limited_and_hold_no_concurrency_slot() {
    let server = sqlite_with(|c| {
        c.max_watches = 2;
        c.max_concurrent_requests = 2;
        c.max_tenant_share_percent = 100;
    })
    .await;
    let _first = watch(&server, Duration::from_millis(100)).await;
    let _second = watch(&server, Duration::from_millis(100)).await;
    let refused = server
        .kpi()
        .await
        .watch_kpis(watch_request(Duration::from_millis(100)))
        .await
        .expect_err("a third watch");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert_eq!(
        refused.message(),
        "the server has 2 KPI watches open, its limit; retry later"
    );
    let mut kpi = server.kpi().await;
    for _ in 0..2 {
        let answer = kpi
            .get_kpis(
                watch_request(Duration::from_secs(1))
                    .request
                    .expect("request"),
            )
            .await
            .expect("GetKpis is not refused");
        assert_eq!(
            answer.into_inner().bundle.expect("bundle").values[0].value,
            Some(0.0)
        );
    }
    server.stop().await;
}

/// A request without a period is INVALID_ARGUMENT naming
/// `request.period`; a `min_interval` below 100 ms is INVALID_ARGUMENT.
#[tokio::test]
async fn bad_watch_requests_are_refused() {
    let server = TestServer::sqlite().await;
    let mut kpi = server.kpi().await;
    let mut request = watch_request(Duration::from_secs(1));
    request.request.as_mut().expect("request").period = None;
    let status = kpi.watch_kpis(request).await.expect_err("no period");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(status.message(), "request.period: required");
    let status = kpi
        .watch_kpis(watch_request(Duration::from_millis(99)))
        .await
        .expect_err("too short");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "min_interval: must be between 100ms and 1 hour"
    );
    server.stop().await;
}

/// A shutdown ends an open watch at once with UNAVAILABLE "server shutting
/// down", and the server stops without waiting for its grace period (60 s).
#[tokio::test]
async fn shutdown_ends_watches() {
    let server = sqlite_with(|c| c.shutdown_grace_seconds = 60).await;
    let mut stream = watch(&server, Duration::from_millis(100)).await;
    assert!(matches!(next(&mut stream).await, Event::Kpis(_)));
    let stopping = tokio::spawn(server.stop());
    let ended = loop {
        match tokio::time::timeout(WAIT, stream.message())
            .await
            .expect("the watch ends within the wait")
        {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(ended.code(), tonic::Code::Unavailable);
    assert_eq!(ended.message(), "server shutting down");
    tokio::time::timeout(WAIT, stopping)
        .await
        .expect("the server stops well before its grace period")
        .expect("server task");
}

/// Reads the envelopes of a Connect stream from a raw HTTP/1.1 answer.
struct ConnectStream {
    stream: tokio::net::TcpStream,
    /// Bytes read and not yet de-chunked.
    raw: Vec<u8>,
    /// De-chunked body bytes not yet split into envelopes.
    body: Vec<u8>,
    /// Whether the status line and headers were read.
    head_read: bool,
}

impl ConnectStream {
    /// The next envelope: flags and JSON.
    async fn next(&mut self) -> (u8, Value) {
        use tokio::io::AsyncReadExt;
        loop {
            self.parse();
            if self.body.len() >= 5 {
                let len =
                    u32::from_be_bytes([self.body[1], self.body[2], self.body[3], self.body[4]])
                        as usize;
                if self.body.len() >= 5 + len {
                    let flags = self.body[0];
                    let json = serde_json::from_slice(&self.body[5..5 + len]).expect("JSON");
                    self.body.drain(..5 + len);
                    return (flags, json);
                }
            }
            let mut buffer = [0u8; 8192];
            let read = tokio::time::timeout(WAIT, self.stream.read(&mut buffer))
                .await
                .expect("data within the wait")
                .expect("read");
            assert!(read > 0, "the connection closed early");
            self.raw.extend_from_slice(&buffer[..read]);
        }
    }

    /// Moves complete chunks from `raw` to `body`.
    fn parse(&mut self) {
        if !self.head_read {
            let Some(end) = self.raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                return;
            };
            let head = String::from_utf8_lossy(&self.raw[..end]).to_ascii_lowercase();
            assert!(head.starts_with("http/1.1 200"), "{head}");
            assert!(
                head.contains("content-type: application/connect+json"),
                "{head}"
            );
            assert!(head.contains("transfer-encoding: chunked"), "{head}");
            self.raw.drain(..end + 4);
            self.head_read = true;
        }
        loop {
            let Some(line_end) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size = usize::from_str_radix(
                std::str::from_utf8(&self.raw[..line_end])
                    .expect("chunk size")
                    .trim(),
                16,
            )
            .expect("hex chunk size");
            if self.raw.len() < line_end + 2 + size + 2 {
                return;
            }
            self.body
                .extend_from_slice(&self.raw[line_end + 2..line_end + 2 + size]);
            self.raw.drain(..line_end + 2 + size + 2);
        }
    }
}

/// The JSON watch request for March 2024's revenue.
fn connect_watch_body(extra: Value) -> Vec<u8> {
    let mut request = json!({"request": {"period": {"calendar": {"granularity": "GRANULARITY_MONTH",
        "date": {"year": 2024, "month": 3, "day": 1}}}, "kpiIds": ["revenue"]}});
    if let (Some(request), Some(extra)) = (request.as_object_mut(), extra.as_object()) {
        request.extend(extra.clone());
    }
    let json = request.to_string().into_bytes();
    let mut body = vec![0];
    body.extend_from_slice(&u32::try_from(json.len()).expect("small").to_be_bytes());
    body.extend_from_slice(&json);
    body
}

/// Over the Connect protocol's streaming JSON (plain HTTP/1.1, as a
/// browser's `fetch` sends it), a watch sends its first bundle as an
/// envelope, then a new one after a write.
#[tokio::test]
async fn watches_stream_over_connect_json() {
    use tokio::io::AsyncWriteExt;
    let server = TestServer::sqlite().await;
    ingest(&server, vec![order("o1", 700)]).await;
    let body = connect_watch_body(json!({"minInterval": "0.100s"}));
    let mut stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /salesmetrics.v1.KpiService/WatchKpis HTTP/1.1\r\nHost: {}\r\n\
         Content-Type: application/connect+json\r\nConnect-Protocol-Version: 1\r\n\
         Content-Length: {}\r\n\r\n",
        server.addr,
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    stream.write_all(&body).await.expect("body");
    let mut connect = ConnectStream {
        stream,
        raw: Vec::new(),
        body: Vec::new(),
        head_read: false,
    };
    let (flags, first) = connect.next().await;
    assert_eq!(flags, 0);
    assert_eq!(
        first["kpis"]["bundle"]["values"][0]["value"], 700.0,
        "{first}"
    );
    ingest(&server, vec![order("o2", 300)]).await;
    loop {
        let (flags, message) = connect.next().await;
        assert_eq!(flags, 0, "{message}");
        if let Some(kpis) = message.get("kpis") {
            assert_eq!(kpis["bundle"]["values"][0]["value"], 1000.0, "{message}");
            break;
        }
        assert!(message.get("heartbeat").is_some(), "{message}");
    }
    drop(connect);
    server.stop().await;
}

/// An error before the stream starts (no period) comes as the
/// end-of-stream envelope (flag 2) of a 200 answer, with the error object.
#[tokio::test]
async fn connect_stream_errors_end_the_stream() {
    let server = TestServer::sqlite().await;
    let mut json = b"{\"request\": {}}".to_vec();
    let mut body = vec![0];
    body.extend_from_slice(&u32::try_from(json.len()).expect("small").to_be_bytes());
    body.append(&mut json);
    let answer = http1(
        server.addr,
        "POST /salesmetrics.v1.KpiService/WatchKpis HTTP/1.1\r\n\
         Content-Type: application/connect+json\r\n",
        &body,
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body[0], 2, "end-of-stream flag");
    let end: Value = serde_json::from_slice(&answer.body[5..]).expect("JSON");
    assert_eq!(end["error"]["code"], "invalid_argument", "{end}");
    assert_eq!(end["error"]["message"], "request.period: required");
    server.stop().await;
}
