//! A real salesmetrics server on `127.0.0.1:0` per test, with generated clients.

use std::net::SocketAddr;

use salesmetrics::config::ServeConfig;
use salesmetrics::proto::v1::admin_service_client::AdminServiceClient;
use salesmetrics::proto::v1::ingest_service_client::IngestServiceClient;
use salesmetrics::proto::v1::kpi_service_client::KpiServiceClient;
use tokio::sync::oneshot;
use tonic::transport::Channel;

use super::db;

/// A running server and what keeps its database alive.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// "sqlite" or "postgres", for assertion messages.
    pub backend: &'static str,
    /// The database URL it uses.
    pub database_url: String,
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

    /// One server per available backend: SQLite always, PostgreSQL when configured.
    pub async fn all() -> Vec<TestServer> {
        let mut servers = vec![Self::sqlite().await];
        servers.extend(Self::postgres().await);
        servers
    }

    /// Starts a server with the given settings on the given database.
    pub async fn start(
        backend: &'static str,
        database_url: String,
        mut config: ServeConfig,
        dir: Option<tempfile::TempDir>,
    ) -> TestServer {
        config.database_url = Some(database_url.clone());
        let store = salesmetrics::store::connect(&database_url)
            .await
            .expect("open the test database");
        store
            .ensure_tenant(salesmetrics::api::DEFAULT_TENANT)
            .await
            .expect("create the default tenant");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(salesmetrics::server::serve(
            listener,
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
