//! Wiring: the gRPC services, health, reflection, metrics, CORS and graceful
//! shutdown.
//!
//! [`serve`] takes an already-bound listener and a shutdown future, so the
//! binary passes SIGINT/SIGTERM and tests pass a oneshot, and tests can bind
//! `127.0.0.1:0`; [`serve_with_metrics`] takes the metrics listener the same
//! way.
//!
//! Every call passes these layers, outermost first: the dashboard (answers
//! `GET /` and `/assets/…` itself, see [`crate::dashboard`]), CORS (only with
//! `--cors-allow-origin`; answers browser preflights), Connect (turns
//! HTTP/JSON calls into gRPC, see [`crate::api::connect`]), gRPC-Web (turns
//! HTTP/1.1 grpc-web calls into gRPC), metrics and the call's span (so
//! refusals below are counted too), authentication and limits.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::config::ServeConfig;
use crate::metrics::Metrics;
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
/// in-flight requests for at most the configured grace period. With
/// `--metrics-listen`, binds that address and serves metrics there too.
pub async fn serve(
    listener: TcpListener,
    config: ServeConfig,
    store: Arc<dyn Store>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let metrics_listener = match config.metrics_listen {
        Some(address) => Some(bind_metrics(address).await?),
        None => None,
    };
    serve_with_metrics(listener, metrics_listener, config, store, shutdown).await
}

/// Binds the `--metrics-listen` address.
pub async fn bind_metrics(address: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .map_err(|err| anyhow::anyhow!("cannot listen for metrics on {address}: {err}"))
}

/// [`serve`], with Prometheus metrics served on `metrics_listener` (if any)
/// until the server stops.
pub async fn serve_with_metrics(
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    config: ServeConfig,
    store: Arc<dyn Store>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let metrics_endpoint = metrics_listener.map(|listener| {
        tokio::spawn(crate::metrics::http::serve(
            listener,
            metrics.clone(),
            store.clone(),
            std::future::pending(),
        ))
    });
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let probe = tokio::spawn(probe_database(store.clone(), health_reporter));

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        // google.rpc.BadRequest & co., so clients can decode error details.
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        // google.rpc.BadRequest & co., so clients can decode error details.
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
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
    let connection_limits = config.connection_limits(crate::net::raise_fd_limit());
    let connection_metrics = metrics.clone();
    // Keep-alive pings find connections whose client is gone; the idle
    // timeout (in `net`) closes those that are alive but unused.
    let mut builder = tonic::transport::Server::builder()
        .timeout(config.max_timeout())
        .http2_keepalive_interval(config.keepalive().map(|(interval, _)| interval))
        .http2_keepalive_timeout(config.keepalive().map(|(_, timeout)| timeout));
    if let Some(tls) = tls_config(&config)? {
        builder = builder.tls_config(tls)?;
    } else if !listen.ip().is_loopback() {
        tracing::warn!(%listen, "serving plaintext on a non-loopback address; use --tls-cert/--tls-key or a TLS-terminating proxy");
    }
    // gRPC-Web (HTTP/1.1) for browser dashboards: CORS answers preflights,
    // then grpc-web calls become gRPC before metrics, authentication and
    // limits see them (see the module docs).
    let router = builder
        .accept_http1(true)
        .layer(crate::dashboard::DashboardLayer)
        .layer(tower::util::option_layer(cors_layer(&config)?))
        .layer(crate::api::connect::ConnectLayer::new(
            config.max_message_bytes,
            config.max_timeout(),
        ))
        .layer(tonic_web::GrpcWebLayer::new())
        .layer(crate::metrics::layer::RpcLayer::new(
            metrics.clone(),
            config.max_timeout(),
        ))
        .layer(crate::auth::AuthLayer::new(
            store.clone(),
            auth,
            metrics.clone(),
        ))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    // Shutdown: stop accepting, end KPI watches, let in-flight calls finish,
    // but never wait longer than the grace period.
    let (stopping_tx, stopping_rx) = tokio::sync::watch::channel(false);
    let router = crate::api::add_services(router, store, &config, metrics, stopping_rx);
    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutdown requested; draining in-flight requests");
        let _ = stopping_tx.send(true);
        let _ = drain_tx.send(());
    };
    let incoming = crate::net::incoming(listener, connection_limits, connection_metrics);
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
    if let Some(endpoint) = metrics_endpoint {
        endpoint.abort();
    }
    result
}

/// Request headers a gRPC-Web client sends (besides the CORS-safelisted
/// ones); a Connect client also sends [`crate::api::connect::CONNECT_REQUEST_HEADERS`].
const CORS_ALLOW_HEADERS: [&str; 5] = [
    "authorization",
    "content-type",
    "grpc-timeout",
    "x-grpc-web",
    "x-user-agent",
];

/// Response headers a browser script may read: the status of the call.
const CORS_EXPOSE_HEADERS: [&str; 3] = ["grpc-status", "grpc-message", "grpc-status-details-bin"];

/// How long a browser may cache a preflight answer.
const CORS_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// The CORS layer of `--cors-allow-origin` (as tonic-web recommends);
/// `None` when no origin is allowed, so responses carry no CORS headers.
/// Credentials travel in the `authorization` header, never in cookies, so
/// `allow-credentials` is not sent (and `*` stays usable).
fn cors_layer(config: &ServeConfig) -> anyhow::Result<Option<tower_http::cors::CorsLayer>> {
    use tonic::codegen::http::{HeaderName, HeaderValue, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};

    let origins: Vec<&str> = config
        .cors_allow_origin
        .iter()
        .flat_map(|o| o.split(','))
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .collect();
    if origins.is_empty() {
        return Ok(None);
    }
    let allow_origin = if origins.contains(&"*") {
        AllowOrigin::any()
    } else {
        let values = origins
            .iter()
            .map(|o| {
                HeaderValue::from_str(o.trim_end_matches('/'))
                    .map_err(|_| anyhow::anyhow!("--cors-allow-origin {o:?} is not a valid origin"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        AllowOrigin::list(values)
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([Method::POST])
            .allow_headers(
                CORS_ALLOW_HEADERS
                    .iter()
                    .chain(&crate::api::connect::CONNECT_REQUEST_HEADERS)
                    .map(|h| HeaderName::from_static(h))
                    .collect::<Vec<_>>(),
            )
            .expose_headers(CORS_EXPOSE_HEADERS.map(HeaderName::from_static))
            .max_age(CORS_MAX_AGE),
    ))
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
    if let Some(timeout) = config.handshake_timeout() {
        tls = tls.timeout(timeout);
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
