//! gRPC-Web: a browser-style HTTP/1.1 call reaches KpiService, and CORS
//! (`--cors-allow-origin`) lets the configured browser origins make it.

use prost::Message;
use salesmetrics::config::ServeConfig;
use salesmetrics::proto::v1 as pb;

use super::db;
use super::harness::{Http1Response, TestServer, http1};

/// An empty ListKpisRequest: one uncompressed frame of length 0.
const EMPTY_FRAME: [u8; 5] = [0, 0, 0, 0, 0];

/// POST /salesmetrics.v1.KpiService/ListKpis as grpc-web, with extra headers.
async fn list_kpis_grpc_web(server: &TestServer, extra_headers: &str) -> Http1Response {
    let head = format!(
        "POST /salesmetrics.v1.KpiService/ListKpis HTTP/1.1\r\n\
         Content-Type: application/grpc-web+proto\r\n\
         X-Grpc-Web: 1\r\n{extra_headers}"
    );
    http1(server.addr, &head, &EMPTY_FRAME).await
}

/// A browser's CORS preflight for a grpc-web call from `origin`.
async fn preflight(server: &TestServer, origin: &str) -> Http1Response {
    let head = format!(
        "OPTIONS /salesmetrics.v1.KpiService/ListKpis HTTP/1.1\r\n\
         Origin: {origin}\r\n\
         Access-Control-Request-Method: POST\r\n\
         Access-Control-Request-Headers: content-type,x-grpc-web,authorization\r\n"
    );
    http1(server.addr, &head, &[]).await
}

/// A server on a fresh SQLite file with `--cors-allow-origin` set to `origins`.
async fn server_with_cors(origins: &[&str]) -> TestServer {
    let (dir, url) = db::fresh_sqlite().await;
    let mut config = ServeConfig::for_database("");
    config.cors_allow_origin = origins.iter().map(|o| o.to_string()).collect();
    TestServer::start("sqlite", url, config, Some(dir)).await
}

/// POST /salesmetrics.v1.KpiService/ListKpis over plain HTTP/1.1 with
/// `application/grpc-web+proto`: the answer is a grpc-web data frame holding
/// the catalog (65 entries: 64 KPIs and the funnel, "revenue" first) followed
/// by a trailer frame with `grpc-status:0`. Without `--cors-allow-origin`
/// the answer carries no CORS header, even to a request with an `Origin`.
#[tokio::test]
async fn kpi_service_answers_grpc_web_over_http1() {
    let server = TestServer::sqlite().await;
    let response = list_kpis_grpc_web(&server, "Origin: https://dash.example.com\r\n").await;
    let head = &response.head;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(
        response.header("content-type"),
        Some("application/grpc-web+proto"),
        "{head}"
    );
    assert!(!head.contains("access-control-"), "{head}");
    let body = &response.body;

    // Frame 1: data (flag 0), then the message.
    assert_eq!(body[0], 0, "first frame is data");
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    let message = pb::ListKpisResponse::decode(&body[5..5 + len]).expect("ListKpisResponse");
    assert_eq!(message.kpis.len(), 65);
    assert_eq!(message.kpis[0].id, "revenue");
    // Frame 2: trailers (flag 0x80) with the status.
    let trailer = &body[5 + len..];
    assert_eq!(trailer[0], 0x80, "second frame is the trailer");
    let trailer_text = String::from_utf8_lossy(&trailer[5..]).to_ascii_lowercase();
    assert!(trailer_text.contains("grpc-status:0"), "{trailer_text}");
    server.stop().await;
}

/// Without `--cors-allow-origin`, a preflight gets no CORS headers, so a
/// browser refuses the cross-origin call.
#[tokio::test]
async fn without_allowed_origins_a_preflight_gets_no_cors_headers() {
    let server = TestServer::sqlite().await;
    let response = preflight(&server, "https://dash.example.com").await;
    assert!(
        !response.head.contains("access-control-"),
        "{}",
        response.head
    );
    server.stop().await;
}

/// `--cors-allow-origin https://dash.example.com,https://ops.example.com`:
/// a preflight from either origin is answered 200 with that origin, POST,
/// the grpc-web request headers (authorization included) and a 24 h max age;
/// a preflight from another origin gets no `access-control-allow-origin`.
/// The grpc-web call itself then carries the origin and exposes
/// grpc-status, grpc-message and grpc-status-details-bin to the script.
#[tokio::test]
async fn allowed_origins_pass_the_cors_preflight_and_see_the_grpc_status() {
    let server = server_with_cors(&["https://dash.example.com,https://ops.example.com"]).await;
    for origin in ["https://dash.example.com", "https://ops.example.com"] {
        let response = preflight(&server, origin).await;
        assert_eq!(response.status, 200, "{}", response.head);
        assert_eq!(
            response.header("access-control-allow-origin"),
            Some(origin),
            "{}",
            response.head
        );
        assert_eq!(
            response.header("access-control-allow-methods"),
            Some("post")
        );
        let allowed = response
            .header("access-control-allow-headers")
            .expect("allow-headers");
        for header in [
            "authorization",
            "content-type",
            "x-grpc-web",
            "grpc-timeout",
        ] {
            assert!(allowed.contains(header), "{header} in {allowed}");
        }
        assert_eq!(response.header("access-control-max-age"), Some("86400"));
    }

    let refused = preflight(&server, "https://evil.example.net").await;
    assert_eq!(
        refused.header("access-control-allow-origin"),
        None,
        "{}",
        refused.head
    );

    let call = list_kpis_grpc_web(&server, "Origin: https://dash.example.com\r\n").await;
    assert_eq!(call.status, 200, "{}", call.head);
    assert_eq!(
        call.header("access-control-allow-origin"),
        Some("https://dash.example.com")
    );
    assert_eq!(
        call.header("access-control-expose-headers"),
        Some("grpc-status,grpc-message,grpc-status-details-bin"),
        "{}",
        call.head
    );
    assert_eq!(call.body[0], 0, "the call is served: a data frame first");
    server.stop().await;
}

/// `--cors-allow-origin '*'` allows any origin (`access-control-allow-origin: *`).
#[tokio::test]
async fn a_star_allows_every_origin() {
    let server = server_with_cors(&["*"]).await;
    let response = preflight(&server, "https://anything.example.org").await;
    assert_eq!(response.status, 200, "{}", response.head);
    assert_eq!(response.header("access-control-allow-origin"), Some("*"));
    server.stop().await;
}
