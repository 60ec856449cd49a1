//! The client side of the `salesmetrics` binary: subcommands that talk to a
//! running server over gRPC with the generated clients.
//!
//! * [`kpis`] — `kpis`, `series`, `breakdown` and `catalog` (KpiService).
//! * [`import`] / [`export`] — CSV and NDJSON files in and out
//!   (IngestService `StreamIngest` / `ExportRecords`), with the column layout
//!   of [`records`].
//! * [`demo`] — loads a deterministic sample dataset.
//! * [`report`] — one period's KPIs and charts as a self-contained HTML file.
//! * [`period`] — the period and scope syntax of the command line.
//! * [`format`] — how values are shown: money, percentages, durations, tables.

pub mod demo;
pub mod export;
pub mod format;
pub mod import;
pub mod kpis;
pub mod period;
pub mod records;
pub mod report;

use clap::Args;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::proto::v1::admin_service_client::AdminServiceClient;
use crate::proto::v1::ingest_service_client::IngestServiceClient;
use crate::proto::v1::kpi_service_client::KpiServiceClient;

/// Where the server is and how to authenticate; shared by every client command.
#[derive(Debug, Clone, Args)]
pub struct ConnectOptions {
    /// URL of the salesmetrics server.
    #[arg(
        long,
        env = "SALESMETRICS_SERVER",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    pub server: String,

    /// API key, sent as `authorization: Bearer <key>` metadata.
    #[arg(
        long,
        env = "SALESMETRICS_API_KEY",
        hide_env_values = true,
        global = true
    )]
    pub api_key: Option<String>,
}

/// Adds the `authorization` header to every request when an API key is set.
#[derive(Clone)]
pub struct Auth {
    header: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl tonic::service::Interceptor for Auth {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(header) = &self.header {
            request
                .metadata_mut()
                .insert("authorization", header.clone());
        }
        Ok(request)
    }
}

/// A channel that authenticates its requests.
pub type AuthChannel = InterceptedService<Channel, Auth>;

/// Generated clients sharing one connection.
#[derive(Clone)]
pub struct Clients {
    /// IngestService.
    pub ingest: IngestServiceClient<AuthChannel>,
    /// KpiService.
    pub kpi: KpiServiceClient<AuthChannel>,
    /// AdminService.
    pub admin: AdminServiceClient<AuthChannel>,
}

/// Largest message the client accepts (exports and series can be large).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

impl ConnectOptions {
    /// Connects to the server.
    pub async fn connect(&self) -> anyhow::Result<Clients> {
        let header = match &self.api_key {
            Some(key) if !key.is_empty() => Some(
                format!("Bearer {key}")
                    .parse::<MetadataValue<_>>()
                    .map_err(|_| {
                        anyhow::anyhow!("the API key contains characters not allowed in a header")
                    })?,
            ),
            _ => None,
        };
        let endpoint = Endpoint::from_shared(self.server.clone())
            .map_err(|err| anyhow::anyhow!("invalid --server URL {:?}: {err}", self.server))?
            .connect_timeout(std::time::Duration::from_secs(10));
        let channel = endpoint
            .connect()
            .await
            .map_err(|err| anyhow::anyhow!("cannot connect to {}: {err}", self.server))?;
        let auth = Auth { header };
        Ok(Clients {
            ingest: IngestServiceClient::with_interceptor(channel.clone(), auth.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            kpi: KpiServiceClient::with_interceptor(channel.clone(), auth.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            admin: AdminServiceClient::with_interceptor(channel, auth),
        })
    }
}

/// Turns a gRPC status into a readable error.
pub fn status_error(what: &str, status: tonic::Status) -> anyhow::Error {
    let code = status.code();
    let message = status.message();
    match code {
        tonic::Code::Unavailable => anyhow::anyhow!("{what}: server unavailable: {message}"),
        tonic::Code::Unauthenticated => {
            anyhow::anyhow!(
                "{what}: not authenticated ({message}); pass --api-key or set SALESMETRICS_API_KEY"
            )
        }
        _ => anyhow::anyhow!("{what}: {code:?}: {message}"),
    }
}

/// The tenant's reporting currency, read with AdminService GetTenantSettings.
pub async fn tenant_currency(clients: &mut Clients) -> anyhow::Result<String> {
    let response = clients
        .admin
        .get_tenant_settings(crate::proto::v1::GetTenantSettingsRequest::default())
        .await
        .map_err(|status| status_error("reading the tenant settings", status))?
        .into_inner();
    response
        .settings
        .map(|s| s.currency_code)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| anyhow::anyhow!("the server returned no tenant currency"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::service::Interceptor;

    #[test]
    fn the_api_key_goes_into_the_authorization_header() {
        let mut auth = Auth {
            header: Some("Bearer k-123".parse().unwrap()),
        };
        let request = auth.call(tonic::Request::new(())).unwrap();
        assert_eq!(
            request.metadata().get("authorization").unwrap(),
            "Bearer k-123"
        );
        let mut anonymous = Auth { header: None };
        let request = anonymous.call(tonic::Request::new(())).unwrap();
        assert!(request.metadata().get("authorization").is_none());
    }
}
