//! Service settings, layered: built-in defaults, then `SALESMETRICS_*`
//! environment variables (and `DATABASE_URL`), then command-line flags.
//! The database URL may carry a password, so `Debug` redacts it.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, ValueEnum};

pub use crate::store::DEFAULT_DATABASE_URL;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
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

    /// Batches of one ingest stream that may be in flight (processed or
    /// awaiting acknowledgement) at once.
    #[arg(long, env = "SALESMETRICS_MAX_IN_FLIGHT_BATCHES", default_value_t = 4)]
    pub max_in_flight_batches: usize,

    /// Seconds that a shutdown waits for in-flight requests before it stops anyway.
    #[arg(
        long,
        env = "SALESMETRICS_SHUTDOWN_GRACE_SECONDS",
        default_value_t = 10
    )]
    pub shutdown_grace_seconds: u64,
}

impl ServeConfig {
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
            max_in_flight_batches: 4,
            shutdown_grace_seconds: 10,
        }
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
            .field("max_in_flight_batches", &self.max_in_flight_batches)
            .field("shutdown_grace_seconds", &self.shutdown_grace_seconds)
            .finish()
    }
}

/// A database URL with its password replaced by `***`, safe to log.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
