//! gRPC-Web: a browser-style HTTP/1.1 call reaches KpiService.

use prost::Message;
use salesmetrics::proto::v1 as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::harness::TestServer;

/// Decodes an HTTP/1.1 `Transfer-Encoding: chunked` body.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_text = std::str::from_utf8(&body[..line_end]).expect("chunk size is text");
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .expect("hex chunk size");
        body = &body[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

/// POST /salesmetrics.v1.KpiService/ListKpis over plain HTTP/1.1 with
/// `application/grpc-web+proto`: the answer is a grpc-web data frame holding
/// the catalog (65 entries: 64 KPIs and the funnel, "revenue" first) followed
/// by a trailer frame with `grpc-status:0`.
#[tokio::test]
async fn kpi_service_answers_grpc_web_over_http1() {
    let server = TestServer::sqlite().await;
    let mut stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    // An empty ListKpisRequest: one uncompressed frame of length 0.
    let frame = [0u8, 0, 0, 0, 0];
    let head = format!(
        "POST /salesmetrics.v1.KpiService/ListKpis HTTP/1.1\r\n\
         Host: {}\r\n\
         Content-Type: application/grpc-web+proto\r\n\
         X-Grpc-Web: 1\r\n\
         Content-Length: {}\r\n\
         Connection: close\r\n\r\n",
        server.addr,
        frame.len()
    );
    stream.write_all(head.as_bytes()).await.expect("send head");
    stream.write_all(&frame).await.expect("send body");
    let mut response = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        stream.read_to_end(&mut response),
    )
    .await
    .expect("answer within 20 s")
    .expect("read the answer");

    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP head and body");
    let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("content-type: application/grpc-web+proto"),
        "{head}"
    );
    let raw = &response[split + 4..];
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(raw)
    } else {
        raw.to_vec()
    };

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
