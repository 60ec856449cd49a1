//! gRPC handlers and the conversions between proto messages and domain types.
//!
//! Every handler finds its tenant with [`crate::auth::tenant_of`]; the
//! tenant never comes from a request body.

pub mod admin;
pub mod connect;
pub mod convert;
pub mod ingest;
pub mod kpi;
pub mod watch;

/// Adds the public salesmetrics services to a router, each limited to the
/// configured message size; ingest counts record outcomes into `metrics`;
/// KPI watches end when `stopping` becomes true.
pub fn add_services<L>(
    router: tonic::transport::server::Router<L>,
    store: std::sync::Arc<dyn crate::store::Store>,
    config: &crate::config::ServeConfig,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> tonic::transport::server::Router<L> {
    use crate::proto::v1::admin_service_server::AdminServiceServer;
    use crate::proto::v1::ingest_service_server::IngestServiceServer;
    use crate::proto::v1::kpi_service_server::KpiServiceServer;

    let limit = config.max_message_bytes;
    let limits = ingest::IngestLimits {
        max_batch_size: config.max_batch_size,
        max_in_flight_batches: config.max_in_flight_batches,
        stream_idle_timeout: (config.stream_idle_timeout_seconds > 0)
            .then(|| std::time::Duration::from_secs(config.stream_idle_timeout_seconds)),
        max_stream_lifetime: config.max_stream_lifetime(),
    };
    let ingest = IngestServiceServer::new(ingest::IngestApi::new(
        store.clone(),
        limits,
        metrics.clone(),
    ))
    .max_decoding_message_size(limit)
    .max_encoding_message_size(limit);
    let kpi_api = kpi::KpiApi::new(
        store.clone(),
        kpi::KpiLimits {
            max_page_size: config.max_page_size,
            cache: crate::snapshot::CacheLimits {
                tenants: config.kpi_cache_tenants,
                bytes: config.kpi_cache_mib.saturating_mul(1 << 20),
            },
        },
        metrics,
    )
    .with_watches(watch::Watches::new(
        watch::WatchLimits {
            per_tenant: config.max_watches_per_tenant,
            total: config.max_watches,
            heartbeat: std::time::Duration::from_secs(config.watch_heartbeat_seconds.max(1)),
        },
        stopping,
    ));
    kpi_api.warm_in_background(config.warm_tenants);
    let kpi = KpiServiceServer::new(kpi_api)
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let admin = AdminServiceServer::new(admin::AdminApi::new(store))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    router
        .add_service(ingest)
        .add_service(kpi)
        .add_service(admin)
}
