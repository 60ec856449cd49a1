//! Wiring: the gRPC services, health, reflection and graceful shutdown.
//!
//! [`serve`] takes an already-bound listener and a shutdown future, so the
//! binary passes SIGINT/SIGTERM and tests pass a oneshot, and tests can bind
//! `127.0.0.1:0`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::config::ServeConfig;
use crate::proto::v1;
use crate::store::Store;

/// The public services, as health and reflection name them.
pub const SERVICE_NAMES: [&str; 3] = [
    "salesmetrics.v1.IngestService",
    "salesmetrics.v1.KpiService",
    "salesmetrics.v1.AdminService",
];

/// How often the database is pinged to keep the health status current.
const HEALTH_PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// Serves every service on `listener` until `shutdown` resolves, then drains
/// in-flight requests for at most the configured grace period.
pub async fn serve(
    listener: TcpListener,
    config: ServeConfig,
    store: Arc<dyn Store>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let probe = tokio::spawn(probe_database(store.clone(), health_reporter));

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let listen = listener.local_addr()?;
    let auth = config.check_security(listen)?;
    if config.auth == crate::config::AuthMode::Off {
        if listen.ip().is_loopback() {
            tracing::info!(
                "authentication is off: every call acts on tenant \"default\" (loopback only)"
            );
        } else {
            tracing::warn!(%listen, "authentication is off on a non-loopback address (--insecure-no-auth)");
        }
    }
    let mut builder = tonic::transport::Server::builder().timeout(config.max_timeout());
    if let Some(tls) = tls_config(&config)? {
        builder = builder.tls_config(tls)?;
    } else if !listen.ip().is_loopback() {
        tracing::warn!(%listen, "serving plaintext on a non-loopback address; use --tls-cert/--tls-key or a TLS-terminating proxy");
    }
    // gRPC-Web (HTTP/1.1) for browser dashboards: the outermost layer turns
    // grpc-web calls into gRPC before authentication and limits see them.
    let router = builder
        .accept_http1(true)
        .layer(tonic_web::GrpcWebLayer::new())
        .layer(crate::auth::AuthLayer::new(store.clone(), auth))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    let router = crate::api::add_services(router, store, &config);

    // Shutdown: stop accepting, let in-flight calls finish, but never wait
    // longer than the grace period.
    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutdown requested; draining in-flight requests");
        let _ = drain_tx.send(());
    };
    // TCP_NODELAY: without it small unary responses wait for delayed ACKs
    // (tens of milliseconds per call on loopback).
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let serving = router.serve_with_incoming_shutdown(incoming, signal);
    let grace = config.shutdown_grace();
    let deadline = async move {
        if drain_rx.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let result = tokio::select! {
        result = serving => result.map_err(anyhow::Error::from),
        () = deadline => {
            tracing::warn!(grace_seconds = grace.as_secs(), "grace period over; stopping with requests still in flight");
            Ok(())
        }
    };
    probe.abort();
    result
}

/// The TLS settings of `--tls-cert`, `--tls-key` and `--tls-client-ca`;
/// `None` when TLS is not configured.
fn tls_config(config: &ServeConfig) -> anyhow::Result<Option<tonic::transport::ServerTlsConfig>> {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    let read = |path: &std::path::Path, what: &str| {
        std::fs::read(path)
            .map_err(|err| anyhow::anyhow!("cannot read the TLS {what} {}: {err}", path.display()))
    };
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(
        read(cert, "certificate")?,
        read(key, "key")?,
    ));
    if let Some(ca) = &config.tls_client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(read(ca, "client CA")?));
    }
    Ok(Some(tls))
}

/// Reports SERVING only while the database answers.
async fn probe_database(store: Arc<dyn Store>, reporter: HealthReporter) {
    let mut last = None;
    loop {
        let status = match store.ping().await {
            Ok(()) => ServingStatus::Serving,
            Err(err) => {
                tracing::warn!(error = %err, "database does not answer; health is NOT_SERVING");
                ServingStatus::NotServing
            }
        };
        if last != Some(status) {
            reporter.set_service_status("", status).await;
            for name in SERVICE_NAMES {
                reporter.set_service_status(name, status).await;
            }
            last = Some(status);
        }
        tokio::time::sleep(HEALTH_PROBE_INTERVAL).await;
    }
}
