//! A real salesmetrics server on `127.0.0.1:0` per test, with generated clients.

use std::net::SocketAddr;

use salesmetrics::config::ServeConfig;
use salesmetrics::proto::v1::admin_service_client::AdminServiceClient;
use salesmetrics::proto::v1::ingest_service_client::IngestServiceClient;
use salesmetrics::proto::v1::kpi_service_client::KpiServiceClient;
use tokio::sync::oneshot;
use tonic::transport::Channel;

use super::db;

/// Runs each test once per backend, as `<module>::<name>::sqlite` and
/// `<module>::<name>::postgres`, so a failure on one backend does not hide
/// the other and the test name says which one failed.
///
/// ```ignore
/// backend_tests! {
///     /// What the test shows.
///     #[tokio::test]
///     async fn name(server: TestServer) {
///         // … uses `server` …
///         server.stop().await;
///     }
/// }
/// ```
///
/// Each test keeps its own attributes (doc comment, `#[tokio::test]` with
/// its flavor), copied onto both variants; the body sees the enclosing
/// module's items. The `postgres` variant starts no server and returns (with
/// a note) when `TEST_DATABASE_URL` is not set, as [`TestServer::postgres`]
/// does.
macro_rules! backend_tests {
    ($(
        $(#[$attr:meta])*
        async fn $name:ident($server:ident: TestServer) $body:block
    )*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($server: $crate::harness::TestServer) $body

            $(#[$attr])*
            async fn sqlite() {
                run($crate::harness::TestServer::sqlite().await).await;
            }

            $(#[$attr])*
            async fn postgres() {
                let Some(server) = $crate::harness::TestServer::postgres().await else {
                    return;
                };
                run(server).await;
            }
        }
    )*};
}
pub(crate) use backend_tests;

/// A running server and what keeps its database alive.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// "sqlite" or "postgres", for assertion messages.
    pub backend: &'static str,
    /// The database URL it uses.
    pub database_url: String,
    /// Where it serves Prometheus metrics, if it does.
    pub metrics_addr: Option<SocketAddr>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// A server on a fresh SQLite file.
    pub async fn sqlite() -> TestServer {
        let (dir, url) = db::fresh_sqlite().await;
        Self::start("sqlite", url, ServeConfig::for_database(""), Some(dir)).await
    }

    /// A server on a fresh PostgreSQL database, when `TEST_DATABASE_URL` is set.
    pub async fn postgres() -> Option<TestServer> {
        let url = db::fresh_postgres().await?;
        Some(Self::start("postgres", url, ServeConfig::for_database(""), None).await)
    }

    /// Starts a server with the given settings on the given database.
    pub async fn start(
        backend: &'static str,
        database_url: String,
        config: ServeConfig,
        dir: Option<tempfile::TempDir>,
    ) -> TestServer {
        Self::launch(backend, database_url, config, dir, false).await
    }

    /// A server on a fresh SQLite file that also serves metrics on a port
    /// of its own ([`TestServer::metrics_addr`]).
    pub async fn sqlite_with_metrics(config: ServeConfig) -> TestServer {
        let (dir, url) = db::fresh_sqlite().await;
        Self::launch("sqlite", url, config, Some(dir), true).await
    }

    /// Starts a server with the given settings on the given database,
    /// serving metrics on a port of its own when `with_metrics`.
    pub async fn launch(
        backend: &'static str,
        database_url: String,
        mut config: ServeConfig,
        dir: Option<tempfile::TempDir>,
        with_metrics: bool,
    ) -> TestServer {
        config.database_url = Some(database_url.clone());
        let store = salesmetrics::store::connect(&database_url)
            .await
            .expect("open the test database");
        store
            .ensure_tenant(salesmetrics::auth::DEFAULT_TENANT)
            .await
            .expect("create the default tenant");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let metrics_listener = if with_metrics {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind 127.0.0.1:0 for metrics");
            Some(listener)
        } else {
            None
        };
        let metrics_addr = metrics_listener
            .as_ref()
            .map(|l| l.local_addr().expect("metrics address"));
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(salesmetrics::server::serve_with_metrics(
            listener,
            metrics_listener,
            config,
            store,
            async {
                let _ = rx.await;
            },
        ));
        TestServer {
            addr,
            backend,
            database_url,
            metrics_addr,
            shutdown: Some(tx),
            handle: Some(handle),
            _dir: dir,
        }
    }

    /// A connected channel.
    pub async fn channel(&self) -> Channel {
        tonic::transport::Endpoint::from_shared(format!("http://{}", self.addr))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect to the test server")
    }

    /// An IngestService client.
    pub async fn ingest(&self) -> IngestServiceClient<Channel> {
        IngestServiceClient::new(self.channel().await)
    }

    /// A KpiService client.
    pub async fn kpi(&self) -> KpiServiceClient<Channel> {
        KpiServiceClient::new(self.channel().await)
    }

    /// An AdminService client.
    pub async fn admin(&self) -> AdminServiceClient<Channel> {
        AdminServiceClient::new(self.channel().await)
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle
                .await
                .expect("server task")
                .expect("server stopped cleanly");
        }
        if self.backend == "postgres" {
            db::drop_postgres(&self.database_url).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// An HTTP/1.1 response read to its end.
pub struct Http1Response {
    /// The status code.
    pub status: u16,
    /// The status line and headers, lowercased.
    pub head: String,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Http1Response {
    /// The value of a header (first occurrence), lowercased.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == name).then(|| value.trim())
        })
    }
}

/// Sends `head` (request line and headers, without the blank line; the
/// request is sent with `Connection: close`) and `body` over a new plain
/// TCP connection and reads the whole answer.
pub async fn http1(addr: SocketAddr, head: &str, body: &[u8]) -> Http1Response {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "{}\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        head.trim_end(),
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send head");
    stream.write_all(body).await.expect("send body");
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
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let raw = &response[split + 4..];
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(raw)
    } else {
        raw.to_vec()
    };
    Http1Response { status, head, body }
}

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
