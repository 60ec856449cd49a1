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

use std::path::{Path, PathBuf};

use clap::Args;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

pub use crate::suggest::did_you_mean;

use crate::proto::v1::ingest_service_client::IngestServiceClient;
use crate::proto::v1::kpi_service_client::KpiServiceClient;

/// Where the server is and how to authenticate; shared by every client command.
#[derive(Debug, Clone, Args)]
pub struct ConnectOptions {
    /// The salesmetrics server: host:port (plaintext), http://host:port or
    /// https://host:port (TLS, verified against the system's roots or --ca-cert).
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

    /// PEM file of the CA that signed the server's certificate (https:// only;
    /// default: the system's trusted roots).
    #[arg(long, env = "SALESMETRICS_CA_CERT", value_name = "PEM", global = true)]
    pub ca_cert: Option<PathBuf>,

    /// PEM file of a client certificate, for servers that require one (mutual TLS).
    #[arg(
        long,
        env = "SALESMETRICS_CLIENT_CERT",
        value_name = "PEM",
        requires = "client_key",
        global = true
    )]
    pub client_cert: Option<PathBuf>,

    /// PEM file of the client certificate's private key.
    #[arg(
        long,
        env = "SALESMETRICS_CLIENT_KEY",
        value_name = "PEM",
        requires = "client_cert",
        global = true
    )]
    pub client_key: Option<PathBuf>,
}

/// The server address as a URL: `host:port` means `http://host:port`.
pub fn server_url(server: &str) -> anyhow::Result<String> {
    let server = server.trim();
    let url = match server.split_once("://") {
        None => format!("http://{server}"),
        Some(("http" | "https", _)) => server.to_string(),
        Some((scheme, _)) => anyhow::bail!(
            "invalid --server {server:?}: unsupported scheme {scheme:?}; \
             use host:port, http://host:port or https://host:port"
        ),
    };
    Ok(url)
}

fn read_pem(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("cannot read the {what} {}: {e}", path.display()))
}

/// Why connecting failed, with a hint at the usual fix.
fn connect_error(url: &str, tls: bool, err: &tonic::transport::Error) -> anyhow::Error {
    let mut causes = Vec::new();
    let mut refused = false;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            refused |= io.kind() == std::io::ErrorKind::ConnectionRefused;
        }
        let text = e.to_string();
        if !text.is_empty() && !causes.iter().any(|c: &String| c.contains(&text)) {
            causes.push(text);
        }
        source = e.source();
    }
    let cause = if refused {
        "connection refused".to_string()
    } else {
        causes
            .last()
            .cloned()
            .unwrap_or_else(|| "unknown error".into())
    };
    let hint = match (refused, tls) {
        (true, false) => " — is the server running? use https:// for a TLS server",
        (true, true) => " — is the server running?",
        (false, false) => " — use https:// for a TLS server",
        (false, true) => {
            " — is it a TLS server? pass --ca-cert <pem> for a certificate from a private CA, \
             and --client-cert/--client-key if it requires a client certificate"
        }
    };
    anyhow::anyhow!("cannot connect to {url}: {cause}{hint}")
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
        let url = server_url(&self.server)?;
        let tls = url.starts_with("https://");
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|err| anyhow::anyhow!("invalid --server {:?}: {err}", self.server))?
            .connect_timeout(std::time::Duration::from_secs(10));
        if tls {
            endpoint = endpoint
                .tls_config(self.tls_config()?)
                .map_err(|err| anyhow::anyhow!("invalid TLS settings: {err}"))?;
        } else if self.ca_cert.is_some() || self.client_cert.is_some() {
            anyhow::bail!(
                "--ca-cert and --client-cert need a TLS server: use --server https://{}",
                url.trim_start_matches("http://")
            );
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|err| connect_error(&url, tls, &err))?;
        let auth = Auth { header };
        Ok(Clients {
            ingest: IngestServiceClient::with_interceptor(channel.clone(), auth.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            kpi: KpiServiceClient::with_interceptor(channel, auth)
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        })
    }
}

impl ConnectOptions {
    /// TLS settings: the CA (default: the system's roots) and the client
    /// certificate, if any.
    fn tls_config(&self) -> anyhow::Result<ClientTlsConfig> {
        let mut tls = ClientTlsConfig::new();
        tls = match &self.ca_cert {
            Some(path) => {
                tls.ca_certificate(Certificate::from_pem(read_pem(path, "CA certificate")?))
            }
            None => tls.with_native_roots(),
        };
        if let (Some(cert), Some(key)) = (&self.client_cert, &self.client_key) {
            tls = tls.identity(Identity::from_pem(
                read_pem(cert, "client certificate")?,
                read_pem(key, "client key")?,
            ));
        }
        Ok(tls)
    }
}

/// Turns a gRPC status into a readable error.
pub fn status_error(what: &str, status: tonic::Status) -> anyhow::Error {
    let code = status.code();
    let message = status.message();
    match code {
        tonic::Code::Unavailable => anyhow::anyhow!(
            "{what}: server unavailable: {message} (for a TLS server use an https:// URL)"
        ),
        tonic::Code::Unauthenticated => {
            anyhow::anyhow!(
                "{what}: not authenticated ({message}); pass --api-key or set SALESMETRICS_API_KEY"
            )
        }
        // What a plaintext client sees from a TLS server: the TLS alert
        // breaks the HTTP/2 connection, reported as one of these depending on
        // when it arrives.
        _ if message.contains("h2 protocol error")
            || (code == tonic::Code::Unknown && message == "transport error")
            || (code == tonic::Code::Cancelled && message == "operation was canceled") =>
        {
            anyhow::anyhow!("{what}: {code:?}: {message} (for a TLS server use an https:// URL)")
        }
        _ => anyhow::anyhow!("{what}: {code:?}: {message}"),
    }
}

/// The caller's tenant settings, read with KpiService GetSettings (which a
/// tenant API key may call).
pub async fn tenant_settings(
    clients: &mut Clients,
) -> anyhow::Result<crate::proto::v1::TenantSettings> {
    clients
        .kpi
        .get_settings(crate::proto::v1::GetSettingsRequest {})
        .await
        .map_err(|status| status_error("reading the tenant settings", status))?
        .into_inner()
        .settings
        .ok_or_else(|| anyhow::anyhow!("the server returned no tenant settings"))
}

/// The tenant's reporting currency.
pub async fn tenant_currency(clients: &mut Clients) -> anyhow::Result<String> {
    Some(tenant_settings(clients).await?.currency_code)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| anyhow::anyhow!("the server returned no tenant currency"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::service::Interceptor;

    #[test]
    fn server_addresses_mean_one_thing() {
        assert_eq!(
            server_url("127.0.0.1:50051").unwrap(),
            "http://127.0.0.1:50051"
        );
        assert_eq!(server_url("http://h:1").unwrap(), "http://h:1");
        assert_eq!(server_url(" https://h:1 ").unwrap(), "https://h:1");
        assert!(
            server_url("ftp://h:1")
                .unwrap_err()
                .to_string()
                .contains("unsupported scheme")
        );
    }

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
