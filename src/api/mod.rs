//! gRPC handlers and the conversions between proto messages and domain types.
//!
//! Every handler finds its tenant with [`tenant_of`]; the tenant never comes
//! from a request body.

use tonic::Request;

pub mod admin;
pub mod convert;
pub mod ingest;
pub mod kpi;

/// The tenant a request acts for, put into the request's extensions by the
/// authentication layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantId(pub String);

/// The tenant used when authentication is off (the embedded quick start).
pub const DEFAULT_TENANT: &str = "default";

/// The tenant of a request: the one the authentication layer resolved, or
/// [`DEFAULT_TENANT`] when the server runs without authentication.
pub fn tenant_of<T>(request: &Request<T>) -> String {
    request
        .extensions()
        .get::<TenantId>()
        .map(|t| t.0.clone())
        .unwrap_or_else(|| DEFAULT_TENANT.to_string())
}

/// Adds the public salesmetrics services to a router, each limited to the
/// configured message size; ingest counts record outcomes into `metrics`.
pub fn add_services<L>(
    router: tonic::transport::server::Router<L>,
    store: std::sync::Arc<dyn crate::store::Store>,
    config: &crate::config::ServeConfig,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
) -> tonic::transport::server::Router<L> {
    use crate::proto::v1::admin_service_server::AdminServiceServer;
    use crate::proto::v1::ingest_service_server::IngestServiceServer;
    use crate::proto::v1::kpi_service_server::KpiServiceServer;

    let limit = config.max_message_bytes;
    let limits = ingest::IngestLimits {
        max_batch_size: config.max_batch_size,
        max_in_flight_batches: config.max_in_flight_batches,
    };
    let ingest = IngestServiceServer::new(ingest::IngestApi::new(store.clone(), limits, metrics))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let kpi = KpiServiceServer::new(kpi::KpiApi::new(
        store.clone(),
        kpi::KpiLimits {
            max_page_size: config.max_page_size,
            cached_tenants: config.kpi_cache_tenants,
        },
    ))
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
