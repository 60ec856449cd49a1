//! The dashboard served at `/` next to gRPC on the same port, and the
//! `report` command writing a self-contained HTML file with hand-checked
//! values.

use salesmetrics::proto::v1::ListKpisRequest;

use super::harness::{TestServer, http1};

/// `GET path` over HTTP/1.1 with extra header lines.
async fn get(
    server: &TestServer,
    path: &str,
    extra_headers: &str,
) -> super::harness::Http1Response {
    http1(
        server.addr,
        &format!("GET {path} HTTP/1.1\r\n{extra_headers}"),
        &[],
    )
    .await
}

/// The page, its script and style sheet come with their content types, an
/// ETag that answers 304 when it matches, and the page's security policy; an
/// unknown asset is 404; gRPC keeps working on the same port.
#[tokio::test]
async fn the_page_and_its_assets_are_served_next_to_grpc() {
    let server = TestServer::sqlite().await;

    let page = get(&server, "/", "").await;
    assert_eq!(page.status, 200, "{}", page.head);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert!(
        page.header("content-security-policy")
            .is_some_and(|csp| csp.contains("connect-src 'self'")),
        "{}",
        page.head
    );
    let html = String::from_utf8(page.body.clone()).expect("UTF-8 page");
    assert!(html.starts_with("<!doctype html>"), "{html}");
    assert!(html.contains("<script src=\"/assets/app.js\" defer></script>"));
    assert!(html.contains("<link rel=\"stylesheet\" href=\"/assets/app.css\">"));

    let etag = page.header("etag").expect("an ETag").to_string();
    let again = get(&server, "/", &format!("If-None-Match: {etag}\r\n")).await;
    assert_eq!(again.status, 304, "{}", again.head);
    assert!(again.body.is_empty());

    let script = get(&server, "/assets/app.js", "").await;
    assert_eq!(script.status, 200);
    assert_eq!(
        script.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert!(String::from_utf8_lossy(&script.body).contains("WatchKpis"));
    let style = get(&server, "/assets/app.css", "").await;
    assert_eq!(style.status, 200);
    assert_eq!(
        style.header("content-type"),
        Some("text/css; charset=utf-8")
    );

    let head = http1(server.addr, "HEAD /assets/app.css HTTP/1.1\r\n", &[]).await;
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(style.body.len().to_string().as_str())
    );

    let missing = get(&server, "/assets/missing.js", "").await;
    assert_eq!(missing.status, 404, "{}", missing.head);

    // gRPC on the same port: the catalog, "revenue" first.
    let kpis = server
        .kpi()
        .await
        .list_kpis(ListKpisRequest {})
        .await
        .expect("ListKpis over gRPC")
        .into_inner()
        .kpis;
    assert_eq!(kpis[0].id, "revenue");
    server.stop().await;
}

/// Runs the binary against `server` off the async runtime; expects success.
async fn cli_ok(server: &TestServer, args: &[&str]) -> String {
    let url = format!("http://{}", server.addr);
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_salesmetrics"))
            .args(&args)
            .env("SALESMETRICS_SERVER", url)
            .env_remove("SALESMETRICS_API_KEY")
            .output()
            .expect("run the salesmetrics binary")
    })
    .await
    .expect("join the CLI run");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "salesmetrics failed: {stderr}");
    stderr
}

/// Two reps; March has orders of 1,250.50 (r1) and 99.50 (r2), February one
/// of 500.00 (r1). The March report compared with February shows revenue
/// 1,350.00 USD, up (1350 - 500) / 500 = 170.0 %, two orders (up 100.0 %),
/// an average order value of 675.00 USD with its numerator 135000 (minor
/// units) and denominator 2, and one breakdown row per rep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_writes_the_period_with_hand_checked_values() {
    let server = TestServer::sqlite().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let reps = dir.path().join("reps.csv");
    std::fs::write(
        &reps,
        "id,name,email\nr1,Alice Martin,alice@example.com\nr2,Bruno Keller,bruno@example.com\n",
    )
    .expect("write reps.csv");
    let orders = dir.path().join("orders.csv");
    std::fs::write(
        &orders,
        "id,amount,ordered_at,kind,customer_id,rep_id\n\
         o1,1250.50,2025-03-10T14:30:00Z,new,c1,r1\n\
         o2,99.50,2025-03-31T23:59:59Z,upsell,c2,r2\n\
         o3,500,2025-02-15T09:00:00Z,new,c3,r1\n",
    )
    .expect("write orders.csv");
    let path = |p: &std::path::Path| p.to_str().expect("UTF-8 path").to_string();
    cli_ok(&server, &["import", &path(&reps), "--type", "reps"]).await;
    cli_ok(&server, &["import", &path(&orders), "--type", "orders"]).await;

    let report = dir.path().join("report.html");
    let said = cli_ok(
        &server,
        &[
            "report",
            "--period",
            "2025-03",
            "--compare",
            "previous",
            "--output",
            &path(&report),
        ],
    )
    .await;
    assert!(said.starts_with("wrote "), "{said}");
    let html = std::fs::read_to_string(&report).expect("the report file");

    assert!(html.starts_with("<!doctype html>"));
    assert!(!html.contains("<script"), "no scripts");
    assert!(
        !html.contains(" src=") && !html.contains(" href="),
        "nothing loaded from elsewhere"
    );
    assert!(html.contains("<title>salesmetrics report: company 2025-03-01 to 2025-04-01 (end exclusive, UTC)</title>"), "{html}");
    assert!(html.contains("compared with 2025-02-01 to 2025-03-01 (end exclusive, UTC)"));
    let tile = |id: &str| {
        let start = html
            .find(&format!("<div class=\"tile\" id=\"kpi-{id}\">"))
            .unwrap_or_else(|| panic!("tile {id}"));
        let end = start + html[start..].find("</dl></div>").expect("tile end");
        html[start..end].to_string()
    };
    let revenue = tile("revenue");
    assert!(
        revenue.contains("<div class=\"value\">1,350.00 USD</div>"),
        "{revenue}"
    );
    assert!(
        revenue.contains("<div class=\"change better\">▲ 170.0% better</div>"),
        "{revenue}"
    );
    assert!(
        revenue.contains("<dt>Comparison</dt><dd>500.00 USD</dd>"),
        "{revenue}"
    );
    assert!(
        revenue.contains("<svg class=\"spark\""),
        "12-period sparkline: {revenue}"
    );
    let orders = tile("orders");
    assert!(orders.contains("<div class=\"value\">2</div>"), "{orders}");
    assert!(orders.contains("▲ 100.0% better"), "{orders}");
    let aov = tile("average_order_value");
    assert!(
        aov.contains("<div class=\"value\">675.00 USD</div>"),
        "{aov}"
    );
    assert!(
        aov.contains("<dt>Numerator</dt><dd>135,000</dd><dt>Denominator</dt><dd>2</dd>"),
        "{aov}"
    );
    // Revenue vs target: March's bar carries its amount.
    assert!(
        html.contains("<title>25-03: 1,350.00 USD</title>"),
        "revenue bar"
    );
    assert!(
        html.contains("<title>25-02: 500.00 USD</title>"),
        "February bar"
    );
    // Breakdown by rep.
    assert!(
        html.contains("<tr><th scope=\"row\">Alice Martin</th><td>1,250.50 USD</td>"),
        "{html}"
    );
    assert!(html.contains("<tr><th scope=\"row\">Bruno Keller</th><td>99.50 USD</td>"));
    server.stop().await;
}
