//! Service settings, layered: built-in defaults, then `SALESMETRICS_*`
//! environment variables (and `DATABASE_URL`), then command-line flags.
//! The database URL may carry a password and the admin token is a secret,
//! so `Debug` redacts both.
//!
//! Security settings follow one start-up rule ([`ServeConfig::check_security`],
//! documented in `docs/security.md`): without `--auth on` the service only
//! listens on a loopback address (unless `--insecure-no-auth`), and with
//! `--auth on` an admin token is required.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

pub use crate::store::DEFAULT_DATABASE_URL;

use crate::auth::{AdminToken, AuthSettings};
use crate::store::DEFAULT_TOMBSTONE_RETENTION;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Whether tenant services need an API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum AuthMode {
    /// No keys: every call acts on tenant `default`. Loopback only, unless
    /// `--insecure-no-auth`.
    #[default]
    Off,
    /// Every IngestService and KpiService call needs `authorization: Bearer
    /// <API key>`; AdminService needs the admin token.
    On,
}

/// Settings of `salesmetrics serve`.
#[derive(Clone, Args)]
pub struct ServeConfig {
    /// Address to listen on.
    #[arg(long, env = "SALESMETRICS_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// Database URL: `sqlite://PATH` (embedded, the default) or
    /// `postgres://USER@HOST:PORT/DB`. `DATABASE_URL` is read when neither the
    /// flag nor `SALESMETRICS_DATABASE_URL` is set.
    #[arg(long, env = "SALESMETRICS_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Log format.
    #[arg(long, env = "SALESMETRICS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Largest number of records accepted in one ingest batch.
    #[arg(long, env = "SALESMETRICS_MAX_BATCH_SIZE", default_value_t = 10_000)]
    pub max_batch_size: usize,

    /// Largest gRPC message accepted or sent, in bytes.
    #[arg(long, env = "SALESMETRICS_MAX_MESSAGE_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_message_bytes: usize,

    /// Largest page of `GetBreakdown` rows; larger `page_size` requests are
    /// clamped to it.
    #[arg(long, env = "SALESMETRICS_MAX_PAGE_SIZE", default_value_t = 1000)]
    pub max_page_size: usize,

    /// Tenants whose records and indexes are kept in memory between KPI
    /// queries (least recently used dropped first). 0: load per query.
    #[arg(long, env = "SALESMETRICS_KPI_CACHE_TENANTS", default_value_t = 16)]
    pub kpi_cache_tenants: usize,

    /// Memory the cached KPI snapshots may take, in MiB, estimated from
    /// their records and indexes (least recently used tenants dropped
    /// first; the tenant just loaded is always kept). 0: no byte limit,
    /// only --kpi-cache-tenants.
    #[arg(long, env = "SALESMETRICS_KPI_CACHE_MIB", default_value_t = 0)]
    pub kpi_cache_mib: u64,

    /// Tenants whose KPI snapshots are loaded in the background when the
    /// server starts: those with the most record writes (at most
    /// --kpi-cache-tenants), so their first queries need not wait for a
    /// full load. 0: load each tenant at its first query.
    #[arg(long, env = "SALESMETRICS_WARM_TENANTS", default_value_t = 0)]
    pub warm_tenants: usize,

    /// Hours a deleted record stays in the change feed. A KPI snapshot
    /// older than the oldest kept deletion reloads its tenant in full
    /// instead of catching up; deletions are pruned when the tenant next
    /// deletes something.
    #[arg(
        long,
        env = "SALESMETRICS_TOMBSTONE_RETENTION_HOURS",
        default_value_t = DEFAULT_TOMBSTONE_RETENTION.as_secs() / 3600
    )]
    pub tombstone_retention_hours: u64,

    /// Batches of one ingest stream that may be in flight (processed or
    /// awaiting acknowledgement) at once.
    #[arg(long, env = "SALESMETRICS_MAX_IN_FLIGHT_BATCHES", default_value_t = 4)]
    pub max_in_flight_batches: usize,

    /// Seconds a StreamIngest stream may stay open without sending a batch
    /// before the server ends it (DEADLINE_EXCEEDED), so idle streams do not
    /// hold concurrency slots. 0: never.
    #[arg(
        long,
        env = "SALESMETRICS_STREAM_IDLE_TIMEOUT_SECONDS",
        default_value_t = 60
    )]
    pub stream_idle_timeout_seconds: u64,

    /// Most `WatchKpis` streams one tenant may have open; beyond it a new one
    /// is refused (RESOURCE_EXHAUSTED). Watches do not take concurrency slots.
    #[arg(long, env = "SALESMETRICS_MAX_WATCHES_PER_TENANT", default_value_t = crate::api::watch::MAX_WATCHES_PER_TENANT)]
    pub max_watches_per_tenant: usize,

    /// Most `WatchKpis` streams open on the server.
    #[arg(long, env = "SALESMETRICS_MAX_WATCHES", default_value_t = crate::api::watch::MAX_WATCHES)]
    pub max_watches: usize,

    /// Seconds without a bundle after which a `WatchKpis` stream gets a
    /// heartbeat message (at least 1).
    #[arg(long, env = "SALESMETRICS_WATCH_HEARTBEAT_SECONDS", default_value_t = crate::api::watch::HEARTBEAT_SECONDS)]
    pub watch_heartbeat_seconds: u64,

    /// Seconds a StreamIngest or ExportRecords stream may last in all; an
    /// older stream is ended (DEADLINE_EXCEEDED) and the client opens a new
    /// one. 0: no limit.
    #[arg(
        long,
        env = "SALESMETRICS_MAX_STREAM_LIFETIME_SECONDS",
        default_value_t = 3600
    )]
    pub max_stream_lifetime_seconds: u64,

    /// Most client connections open at once; a connection beyond it is
    /// closed as soon as it is accepted. Lowered at start to what the
    /// open-files limit allows. 0: unlimited.
    #[arg(long, env = "SALESMETRICS_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Most client connections open at once from one IP address (raise it,
    /// or set 0, behind a proxy that connects for every client). 0: unlimited.
    #[arg(
        long,
        env = "SALESMETRICS_MAX_CONNECTIONS_PER_PEER",
        default_value_t = 256
    )]
    pub max_connections_per_peer: usize,

    /// Seconds a new connection may stay silent (and, with TLS, take to
    /// complete its handshake) before it is closed. 0: no limit.
    #[arg(
        long,
        env = "SALESMETRICS_HANDSHAKE_TIMEOUT_SECONDS",
        default_value_t = 10
    )]
    pub handshake_timeout_seconds: u64,

    /// Seconds a connection may stay open without a call in progress before
    /// the server closes it (clients reconnect on their next call). 0: never.
    #[arg(
        long,
        env = "SALESMETRICS_CONNECTION_IDLE_TIMEOUT_SECONDS",
        default_value_t = 300
    )]
    pub connection_idle_timeout_seconds: u64,

    /// Seconds without anything received on a connection after which the
    /// server sends an HTTP/2 PING, to find connections whose client is
    /// gone (crashed, unplugged, behind a NAT that dropped it). 0: no PING.
    #[arg(
        long,
        env = "SALESMETRICS_KEEPALIVE_INTERVAL_SECONDS",
        default_value_t = 60
    )]
    pub keepalive_interval_seconds: u64,

    /// Seconds the client has to answer the keep-alive PING before the
    /// server closes the connection. At least 1.
    #[arg(
        long,
        env = "SALESMETRICS_KEEPALIVE_TIMEOUT_SECONDS",
        default_value_t = 20
    )]
    pub keepalive_timeout_seconds: u64,

    /// Failed authentications one IP address may make per minute; beyond
    /// them, every call from that address that needs a credential is
    /// refused (RESOURCE_EXHAUSTED) without a database read until the
    /// minute is over. 0: no limit.
    #[arg(
        long,
        env = "SALESMETRICS_MAX_FAILED_AUTH_PER_MINUTE",
        default_value_t = 60
    )]
    pub max_failed_auth_per_minute: u32,

    /// Most teams one tenant may have; ingesting a new team beyond it is
    /// REJECTED. 0: unlimited.
    #[arg(
        long,
        env = "SALESMETRICS_MAX_TEAMS_PER_TENANT",
        default_value_t = crate::store::DEFAULT_MAX_TEAMS_PER_TENANT
    )]
    pub max_teams_per_tenant: usize,

    /// Seconds that a shutdown waits for in-flight requests before it stops anyway.
    #[arg(
        long,
        env = "SALESMETRICS_SHUTDOWN_GRACE_SECONDS",
        default_value_t = 10
    )]
    pub shutdown_grace_seconds: u64,

    /// Authentication of IngestService and KpiService calls by API key.
    /// `off` is refused on a non-loopback address unless `--insecure-no-auth`.
    #[arg(long, env = "SALESMETRICS_AUTH", value_enum, default_value_t = AuthMode::Off)]
    pub auth: AuthMode,

    /// Allows `--auth off` on a non-loopback address (e.g. behind a trusted
    /// gateway that authenticates). Everyone who can connect has full access.
    #[arg(long, env = "SALESMETRICS_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,

    /// The admin credential for AdminService (`authorization: Bearer <token>`).
    /// Prefer `--admin-token-file`: flags show up in process listings.
    #[arg(long, env = "SALESMETRICS_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// File holding the admin token (surrounding whitespace ignored), e.g. a
    /// mounted secret.
    #[arg(
        long,
        env = "SALESMETRICS_ADMIN_TOKEN_FILE",
        conflicts_with = "admin_token"
    )]
    pub admin_token_file: Option<PathBuf>,

    /// PEM certificate chain; with `--tls-key`, serves TLS only.
    #[arg(long, env = "SALESMETRICS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "SALESMETRICS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA certificate(s); when set, clients must present a certificate
    /// signed by one of them (mutual TLS).
    #[arg(long, env = "SALESMETRICS_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// Deadline, in seconds, of calls that carry no `grpc-timeout`.
    #[arg(
        long,
        env = "SALESMETRICS_DEFAULT_TIMEOUT_SECONDS",
        default_value_t = 30
    )]
    pub default_timeout_seconds: u64,

    /// Longest deadline, in seconds, a client's `grpc-timeout` may ask for.
    #[arg(long, env = "SALESMETRICS_MAX_TIMEOUT_SECONDS", default_value_t = 300)]
    pub max_timeout_seconds: u64,

    /// Most calls (streams included) handled at once; more are refused with
    /// RESOURCE_EXHAUSTED instead of queueing. 0: unlimited.
    #[arg(
        long,
        env = "SALESMETRICS_MAX_CONCURRENT_REQUESTS",
        default_value_t = 256
    )]
    pub max_concurrent_requests: usize,

    /// Percent of the concurrency slots (--max-concurrent-requests) one
    /// tenant may hold at once, streams included, so one tenant cannot take
    /// every slot from the others. Applies with authentication on; 100: no
    /// share.
    #[arg(
        long,
        env = "SALESMETRICS_MAX_TENANT_SHARE_PERCENT",
        default_value_t = 50,
        value_parser = clap::value_parser!(u8).range(1..=100)
    )]
    pub max_tenant_share_percent: u8,

    /// Calls per second per tenant (token bucket, per replica). 0: unlimited.
    #[arg(
        long,
        env = "SALESMETRICS_RATE_LIMIT_PER_SECOND",
        default_value_t = 1000
    )]
    pub rate_limit_per_second: u32,

    /// Largest burst of calls per tenant above the steady rate.
    #[arg(long, env = "SALESMETRICS_RATE_LIMIT_BURST", default_value_t = 2000)]
    pub rate_limit_burst: u32,

    /// Seconds during which an API key id found unknown or revoked is
    /// refused without reading the database again (bounds what a flood of
    /// bad keys costs). 0: read the database on every call.
    #[arg(
        long,
        env = "SALESMETRICS_REFUSED_KEY_CACHE_SECONDS",
        default_value_t = 10
    )]
    pub refused_key_cache_seconds: u64,

    /// Most API key ids remembered as unknown or revoked.
    #[arg(
        long,
        env = "SALESMETRICS_REFUSED_KEY_CACHE_SIZE",
        default_value_t = 10_000
    )]
    pub refused_key_cache_size: usize,

    /// Serve Prometheus metrics at `http://ADDR/metrics` (plain HTTP, no
    /// credentials: bind it where only monitoring reaches). Off by default.
    #[arg(long, env = "SALESMETRICS_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,

    /// Export a trace span per call over OTLP/gRPC to this collector, e.g.
    /// `http://127.0.0.1:4317`. `OTEL_EXPORTER_OTLP_ENDPOINT` is read when
    /// neither the flag nor `SALESMETRICS_OTLP_ENDPOINT` is set. Off by default.
    #[arg(long, env = "SALESMETRICS_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,

    /// Browser origins allowed to call the gRPC-Web API (CORS), e.g.
    /// `https://dashboard.example.com`; repeat the flag or separate with
    /// commas; `*` allows any origin. None by default: no CORS headers.
    #[arg(
        long,
        env = "SALESMETRICS_CORS_ALLOW_ORIGIN",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    pub cors_allow_origin: Vec<String>,
}

impl ServeConfig {
    /// The store settings these options ask for.
    pub fn store_options(&self) -> crate::store::StoreOptions {
        crate::store::StoreOptions {
            tombstone_retention: Duration::from_secs(
                self.tombstone_retention_hours.saturating_mul(3600),
            ),
            max_teams_per_tenant: self.max_teams_per_tenant,
        }
    }

    /// The database URL: flag or `SALESMETRICS_DATABASE_URL`, else
    /// `DATABASE_URL`, else [`DEFAULT_DATABASE_URL`].
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .or_else(|| std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string())
    }

    /// How long a shutdown waits for in-flight requests.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_seconds)
    }

    /// Settings for tests and embedding: every default, listening on
    /// `listen`, storing at `database_url`.
    pub fn for_database(database_url: impl Into<String>) -> Self {
        ServeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url: Some(database_url.into()),
            log_format: LogFormat::Text,
            max_batch_size: 10_000,
            max_message_bytes: 16 * 1024 * 1024,
            max_page_size: 1000,
            kpi_cache_tenants: 16,
            kpi_cache_mib: 0,
            warm_tenants: 0,
            tombstone_retention_hours: DEFAULT_TOMBSTONE_RETENTION.as_secs() / 3600,
            max_in_flight_batches: 4,
            stream_idle_timeout_seconds: 60,
            max_watches_per_tenant: crate::api::watch::MAX_WATCHES_PER_TENANT,
            max_watches: crate::api::watch::MAX_WATCHES,
            watch_heartbeat_seconds: crate::api::watch::HEARTBEAT_SECONDS,
            max_stream_lifetime_seconds: 3600,
            max_connections: 10_000,
            max_connections_per_peer: 256,
            handshake_timeout_seconds: 10,
            connection_idle_timeout_seconds: 300,
            keepalive_interval_seconds: 60,
            keepalive_timeout_seconds: 20,
            max_failed_auth_per_minute: 60,
            max_teams_per_tenant: crate::store::DEFAULT_MAX_TEAMS_PER_TENANT,
            shutdown_grace_seconds: 10,
            auth: AuthMode::Off,
            insecure_no_auth: false,
            admin_token: None,
            admin_token_file: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            default_timeout_seconds: 30,
            max_timeout_seconds: 300,
            max_concurrent_requests: 256,
            max_tenant_share_percent: 50,
            rate_limit_per_second: 1000,
            rate_limit_burst: 2000,
            refused_key_cache_seconds: 10,
            refused_key_cache_size: 10_000,
            metrics_listen: None,
            otlp_endpoint: None,
            cors_allow_origin: Vec::new(),
        }
    }

    /// The OTLP collector to export spans to: flag or
    /// `SALESMETRICS_OTLP_ENDPOINT`, else `OTEL_EXPORTER_OTLP_ENDPOINT`;
    /// `None` when tracing export is off.
    pub fn otlp_endpoint(&self) -> Option<String> {
        self.otlp_endpoint
            .clone()
            .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok())
            .map(|url| url.trim().to_string())
            .filter(|url| !url.is_empty())
    }

    /// The admin token from `--admin-token` or `--admin-token-file`; `None`
    /// when neither is set. An unreadable or empty file is an error.
    pub fn admin_token(&self) -> anyhow::Result<Option<AdminToken>> {
        if let Some(path) = &self.admin_token_file {
            let text = std::fs::read_to_string(path).map_err(|err| {
                anyhow::anyhow!("cannot read the admin token file {}: {err}", path.display())
            })?;
            return AdminToken::new(&text).map(Some).ok_or_else(|| {
                anyhow::anyhow!("the admin token file {} is empty", path.display())
            });
        }
        match &self.admin_token {
            None => Ok(None),
            Some(token) => AdminToken::new(token)
                .map(Some)
                .ok_or_else(|| anyhow::anyhow!("--admin-token is empty")),
        }
    }

    /// The start-up rule, checked against the address actually listened on:
    ///
    /// * `--auth off` on a non-loopback address is refused unless
    ///   `--insecure-no-auth`;
    /// * `--auth on` needs an admin token (without one, no key could ever be
    ///   created).
    ///
    /// Returns the settings of the authentication layer.
    pub fn check_security(&self, listen: SocketAddr) -> anyhow::Result<AuthSettings> {
        let admin_token = self.admin_token()?;
        match self.auth {
            AuthMode::Off if !listen.ip().is_loopback() && !self.insecure_no_auth => {
                anyhow::bail!(
                    "refusing to listen on {listen} without authentication: anyone who can \
                     connect could read and change every record. Use --auth on with \
                     --admin-token-file (see docs/security.md), listen on 127.0.0.1, or pass \
                     --insecure-no-auth if a trusted gateway in front authenticates callers"
                );
            }
            AuthMode::On if admin_token.is_none() => {
                anyhow::bail!(
                    "--auth on needs an admin token (--admin-token-file or \
                     SALESMETRICS_ADMIN_TOKEN) to create tenants and API keys"
                );
            }
            _ => {}
        }
        if self.max_timeout_seconds == 0 || self.default_timeout_seconds == 0 {
            anyhow::bail!("timeouts must be at least one second");
        }
        if self.default_timeout_seconds > self.max_timeout_seconds {
            anyhow::bail!("--default-timeout-seconds exceeds --max-timeout-seconds");
        }
        if self.keepalive_timeout_seconds == 0 {
            anyhow::bail!(
                "--keepalive-timeout-seconds must be at least 1 (turn the PING off with --keepalive-interval-seconds 0)"
            );
        }
        if self.max_page_size == 0 || self.max_batch_size == 0 {
            anyhow::bail!("--max-page-size and --max-batch-size must be at least 1");
        }
        Ok(AuthSettings {
            require_api_key: self.auth == AuthMode::On,
            admin_token,
            max_concurrent_requests: self.max_concurrent_requests,
            max_calls_per_tenant: (self.max_concurrent_requests > 0
                && self.max_tenant_share_percent < 100)
                .then(|| {
                    (self.max_concurrent_requests * usize::from(self.max_tenant_share_percent))
                        .div_ceil(100)
                        .max(1)
                }),
            rate_limit_per_second: self.rate_limit_per_second,
            rate_limit_burst: self.rate_limit_burst,
            default_timeout: Duration::from_secs(self.default_timeout_seconds),
            refused_key_ttl: Duration::from_secs(self.refused_key_cache_seconds),
            refused_key_capacity: self.refused_key_cache_size,
            max_failed_auth_per_minute: self.max_failed_auth_per_minute,
        })
    }

    /// The connection limits of these settings, the total cap lowered to
    /// what `open_files` (the open-files limit, if known) leaves after
    /// [`crate::net::RESERVED_FDS`].
    pub fn connection_limits(&self, open_files: Option<u64>) -> crate::net::ConnectionLimits {
        let seconds = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        let mut max_connections = self.max_connections;
        // 0 stays "no cap": running out of descriptors then pauses accepting.
        if let Some(open_files) = open_files
            && max_connections > 0
        {
            // Keep 128 descriptors for the rest, or a quarter of a small limit.
            let reserved = crate::net::RESERVED_FDS.min(open_files / 4);
            let room = usize::try_from(open_files - reserved)
                .unwrap_or(usize::MAX)
                .max(1);
            if max_connections > room {
                tracing::warn!(
                    max_connections = self.max_connections,
                    open_files,
                    lowered_to = room,
                    "--max-connections exceeds what the open-files limit allows; lowered"
                );
                max_connections = room;
            }
        }
        crate::net::ConnectionLimits {
            max_connections,
            max_connections_per_peer: self.max_connections_per_peer,
            handshake_timeout: seconds(self.handshake_timeout_seconds),
            idle_timeout: seconds(self.connection_idle_timeout_seconds),
        }
    }

    /// How long a stream may last in all (`None`: no limit).
    pub fn max_stream_lifetime(&self) -> Option<Duration> {
        (self.max_stream_lifetime_seconds > 0)
            .then(|| Duration::from_secs(self.max_stream_lifetime_seconds))
    }

    /// How long a new connection may stay silent or take for its TLS
    /// handshake (`None`: no limit).
    pub fn handshake_timeout(&self) -> Option<Duration> {
        (self.handshake_timeout_seconds > 0)
            .then(|| Duration::from_secs(self.handshake_timeout_seconds))
    }

    /// The HTTP/2 keep-alive: how long without anything received before
    /// the server sends a PING, and how long it then waits for the answer
    /// (`None`: no PING).
    pub fn keepalive(&self) -> Option<(Duration, Duration)> {
        (self.keepalive_interval_seconds > 0).then(|| {
            (
                Duration::from_secs(self.keepalive_interval_seconds),
                Duration::from_secs(self.keepalive_timeout_seconds.max(1)),
            )
        })
    }

    /// The longest deadline a call may have.
    pub fn max_timeout(&self) -> Duration {
        Duration::from_secs(self.max_timeout_seconds)
    }
}

impl fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeConfig")
            .field("listen", &self.listen)
            .field("database_url", &redact_url(&self.database_url()))
            .field("log_format", &self.log_format)
            .field("max_batch_size", &self.max_batch_size)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("max_page_size", &self.max_page_size)
            .field("kpi_cache_tenants", &self.kpi_cache_tenants)
            .field("kpi_cache_mib", &self.kpi_cache_mib)
            .field("warm_tenants", &self.warm_tenants)
            .field("tombstone_retention_hours", &self.tombstone_retention_hours)
            .field("max_in_flight_batches", &self.max_in_flight_batches)
            .field(
                "stream_idle_timeout_seconds",
                &self.stream_idle_timeout_seconds,
            )
            .field("max_watches_per_tenant", &self.max_watches_per_tenant)
            .field("max_watches", &self.max_watches)
            .field("watch_heartbeat_seconds", &self.watch_heartbeat_seconds)
            .field(
                "max_stream_lifetime_seconds",
                &self.max_stream_lifetime_seconds,
            )
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_peer", &self.max_connections_per_peer)
            .field("handshake_timeout_seconds", &self.handshake_timeout_seconds)
            .field(
                "connection_idle_timeout_seconds",
                &self.connection_idle_timeout_seconds,
            )
            .field(
                "keepalive_interval_seconds",
                &self.keepalive_interval_seconds,
            )
            .field("keepalive_timeout_seconds", &self.keepalive_timeout_seconds)
            .field(
                "max_failed_auth_per_minute",
                &self.max_failed_auth_per_minute,
            )
            .field("max_teams_per_tenant", &self.max_teams_per_tenant)
            .field("shutdown_grace_seconds", &self.shutdown_grace_seconds)
            .field("auth", &self.auth)
            .field("insecure_no_auth", &self.insecure_no_auth)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field("admin_token_file", &self.admin_token_file)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("tls_client_ca", &self.tls_client_ca)
            .field("default_timeout_seconds", &self.default_timeout_seconds)
            .field("max_timeout_seconds", &self.max_timeout_seconds)
            .field("max_concurrent_requests", &self.max_concurrent_requests)
            .field("max_tenant_share_percent", &self.max_tenant_share_percent)
            .field("rate_limit_per_second", &self.rate_limit_per_second)
            .field("rate_limit_burst", &self.rate_limit_burst)
            .field("refused_key_cache_seconds", &self.refused_key_cache_seconds)
            .field("refused_key_cache_size", &self.refused_key_cache_size)
            .field("metrics_listen", &self.metrics_listen)
            .field(
                "otlp_endpoint",
                &self.otlp_endpoint().as_deref().map(redact_url),
            )
            .field("cors_allow_origin", &self.cors_allow_origin)
            .finish()
    }
}

/// A database URL with every credential replaced by `***`, safe to log:
///
/// * the password of the userinfo (`user:***@host`). A password with an
///   unencoded `@` (or `/`) is common, so the userinfo ends at the *last*
///   `@` before the query; with no `@` there but one after a `?` in what is
///   still the authority (no `/` yet), the password holds a `?` and the last
///   `@` of all ends it;
/// * the value of every query parameter whose name says it holds or names a
///   secret ([`is_secret_parameter`]: `password=`, `sslpassword=`, `sslkey=`,
///   `passfile=`, tokens…), including what an unencoded `&` in such a value
///   would split off.
///
/// It errs on the side of hiding too much: a URL it cannot read is shown
/// with more of it replaced, never with a secret left in.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return redact_query(url);
    };
    let query_start = rest.find('?').unwrap_or(rest.len());
    let before_query = &rest[..query_start];
    let at = before_query.rfind('@').or_else(|| {
        if before_query.contains('/') {
            None
        } else {
            rest.rfind('@')
        }
    });
    let (userinfo, after) = match at {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = match userinfo.split_once(':') {
                Some((user, _password)) => format!("{user}:***"),
                None => userinfo.to_string(),
            };
            (format!("{user}@"), &rest[at + 1..])
        }
        None => (String::new(), rest),
    };
    format!("{scheme}://{userinfo}{}", redact_query(after))
}

/// `text` with the values of its secret query parameters replaced by `***`.
fn redact_query(text: &str) -> String {
    let Some((base, query)) = text.split_once('?') else {
        return text.to_string();
    };
    let mut parameters = Vec::new();
    let mut in_secret = false;
    for parameter in query.split('&') {
        match parameter.split_once('=') {
            Some((name, _value)) if is_secret_parameter(name) => {
                parameters.push(format!("{name}=***"));
                in_secret = true;
            }
            Some(_) => {
                parameters.push(parameter.to_string());
                in_secret = false;
            }
            // No `=`: the tail of a secret value that held an unencoded `&`.
            None if in_secret => {}
            None => parameters.push(parameter.to_string()),
        }
    }
    format!("{base}?{}", parameters.join("&"))
}

/// Whether a query parameter holds a secret or names a file of one:
/// `password`, `sslpassword`, `sslkey`, `passfile`, and, to be safe, any
/// name with `pass`, `secret`, `token` or `key` in it.
fn is_secret_parameter(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["pass", "pwd", "secret", "token", "key"]
        .iter()
        .any(|word| name.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_token_is_redacted() {
        let mut config = ServeConfig::for_database("sqlite://x.db");
        config.admin_token = Some("hunter2-admin".into());
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    /// The connection cap is lowered to what the open-files limit leaves
    /// (128 kept, or a quarter of a small limit); 0 stays "no cap".
    #[test]
    fn the_connection_cap_fits_the_open_files_limit() {
        let mut config = ServeConfig::for_database("sqlite://x.db");
        let cap = |config: &ServeConfig, files| config.connection_limits(files).max_connections;
        assert_eq!(cap(&config, Some(1_048_576)), 10_000);
        assert_eq!(cap(&config, Some(4_096)), 3_968);
        assert_eq!(cap(&config, Some(128)), 96);
        assert_eq!(cap(&config, None), 10_000);
        config.max_connections = 0;
        assert_eq!(cap(&config, Some(128)), 0);
    }

    /// Keep-alive: a PING after 60 s, 20 s to answer, by default; interval
    /// 0 turns it off; a zero timeout is refused at start.
    #[test]
    fn keepalive_flags() {
        let config = parse_serve(&[]);
        assert_eq!(
            config.keepalive(),
            Some((Duration::from_secs(60), Duration::from_secs(20)))
        );
        let config = parse_serve(&[
            "--keepalive-interval-seconds",
            "5",
            "--keepalive-timeout-seconds",
            "2",
        ]);
        assert_eq!(
            config.keepalive(),
            Some((Duration::from_secs(5), Duration::from_secs(2)))
        );
        assert_eq!(
            parse_serve(&["--keepalive-interval-seconds", "0"]).keepalive(),
            None
        );
        let zero = parse_serve(&["--keepalive-timeout-seconds", "0"]);
        let loopback = SocketAddr::from(([127, 0, 0, 1], 50051));
        let err = zero.check_security(loopback).expect_err("refused");
        assert_eq!(
            err.to_string(),
            "--keepalive-timeout-seconds must be at least 1 (turn the PING off with --keepalive-interval-seconds 0)"
        );
    }

    fn parse_serve(args: &[&str]) -> ServeConfig {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from(["salesmetrics", "serve"].iter().chain(args))
            .expect("valid command line");
        match cli.command {
            crate::cli::Command::Serve(config) => *config,
            other => panic!("not serve: {other:?}"),
        }
    }

    /// Metrics, OTLP and CORS are off unless asked for; CORS origins may be
    /// repeated and comma-separated.
    #[test]
    fn observability_flags_are_off_by_default() {
        let config = parse_serve(&[]);
        assert_eq!(config.metrics_listen, None);
        assert_eq!(config.otlp_endpoint, None);
        assert!(config.cors_allow_origin.is_empty());

        let config = parse_serve(&[
            "--metrics-listen",
            "0.0.0.0:9090",
            "--otlp-endpoint",
            "http://collector:4317",
            "--cors-allow-origin",
            "https://a.example,https://b.example",
            "--cors-allow-origin",
            "https://c.example",
        ]);
        assert_eq!(
            config.metrics_listen,
            Some(SocketAddr::from(([0, 0, 0, 0], 9090)))
        );
        assert_eq!(
            config.otlp_endpoint().as_deref(),
            Some("http://collector:4317")
        );
        assert_eq!(
            config.cors_allow_origin,
            [
                "https://a.example",
                "https://b.example",
                "https://c.example"
            ]
        );
    }

    /// Every credential form of a database URL is redacted: userinfo
    /// passwords (with `@`, `/`, `?` or `:` in them), query parameters that
    /// carry passwords or key files (with an unencoded `&` in the value), and
    /// the `Debug` of the settings shows none of them.
    #[test]
    fn every_credential_form_is_redacted() {
        let cases = [
            (
                "postgres://app:p@ss@word@db:5432/sales",
                "postgres://app:***@db:5432/sales",
            ),
            (
                "postgres://app:a/b@c@db/sales?sslmode=require",
                "postgres://app:***@db/sales?sslmode=require",
            ),
            (
                "postgres://app:pa?ss@db/sales",
                "postgres://app:***@db/sales",
            ),
            ("postgres://app:x:y@db/sales", "postgres://app:***@db/sales"),
            (
                "postgres://db/sales?user=app&password=s3cret&sslmode=require",
                "postgres://db/sales?user=app&password=***&sslmode=require",
            ),
            (
                "postgres://app@db/sales?sslpassword=k3y&sslkey=/etc/k.pem&sslcert=/etc/c.pem",
                "postgres://app@db/sales?sslpassword=***&sslkey=***&sslcert=/etc/c.pem",
            ),
            (
                "postgres://db/sales?PASSWORD=s3c&ret&application_name=x",
                "postgres://db/sales?PASSWORD=***&application_name=x",
            ),
            (
                "postgres://db/sales?password=a@b",
                "postgres://db/sales?password=***",
            ),
            (
                "postgresql://app:s3cret@db/sales?password=s3cret",
                "postgresql://app:***@db/sales?password=***",
            ),
        ];
        for (url, redacted) in cases {
            assert_eq!(redact_url(url), redacted, "{url}");
            let config = ServeConfig::for_database(url);
            let debug = format!("{config:?}");
            for secret in [
                "s3c",
                "p@ss@word",
                "ss@word",
                "a/b",
                "pa?ss",
                "x:y",
                "k3y",
                "/etc/k.pem",
                "a@b",
            ] {
                if url.contains(secret) {
                    assert!(!debug.contains(secret), "{url}: {debug}");
                }
            }
        }
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/sales"),
            "postgres://app:***@db:5432/sales"
        );
        assert_eq!(
            redact_url("postgres://app@db/sales"),
            "postgres://app@db/sales"
        );
        assert_eq!(
            redact_url("sqlite://salesmetrics.db"),
            "sqlite://salesmetrics.db"
        );
    }
}
