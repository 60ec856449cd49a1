//! Storage: one [`Store`] trait, one implementation per backend, chosen once at
//! start-up from the database URL ([`connect`]).
//!
//! Rows carry their tenant; instants are stored as integer nanoseconds since
//! the Unix epoch and local dates as ISO `YYYY-MM-DD` text, so both backends
//! compare and order them identically.
//!
//! Why two backends: SQLite needs no set-up (the default), PostgreSQL lets
//! several stateless replicas share one database. Each backend keeps its own
//! SQL and migrations; only the row format (`rows.rs`) is shared, because the
//! two schemas are column for column identical.

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::domain::{Dataset, Record, RecordType, TenantSettings};
use crate::error::{Error, Result};

pub mod postgres;
mod rows;
pub mod sqlite;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Where the data lives when nothing else is configured: `./salesmetrics.db`.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://salesmetrics.db";

/// Opens the store named by `url` and brings its schema up to date.
///
/// * `sqlite:` URLs (`sqlite://path/to/file.db`, `sqlite:file.db`) open a SQLite
///   file, created if missing ([`SqliteStore::connect`]).
/// * `postgres://` and `postgresql://` URLs open a PostgreSQL pool
///   ([`PostgresStore::connect`]).
/// * Anything else is INVALID_ARGUMENT on `database_url`.
///
/// An unreachable database is [`Error::Unavailable`].
pub async fn connect(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::connect(url).await?))
    } else {
        Err(Error::invalid(
            "database_url",
            "expected a sqlite:, postgres:// or postgresql:// URL",
        ))
    }
}

/// Maps a migration failure: database errors keep their own mapping (so an
/// unreachable database stays UNAVAILABLE), anything else is internal.
fn migrate_error(err: sqlx::migrate::MigrateError) -> Error {
    match err {
        sqlx::migrate::MigrateError::Execute(e) => e.into(),
        other => Error::internal(format!("migration failed: {other}")),
    }
}

/// What a write did to one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Inserted or replaced.
    Accepted,
    /// Skipped: its version is not greater than the stored one.
    Stale,
    /// Rejected by a rule that needs stored state (a team-tree cycle).
    Rejected {
        /// Field path relative to the record, e.g. `team.parent_team_id`.
        field: String,
        /// Why.
        reason: String,
    },
}

/// The storage operations the API and the KPI engine need.
pub trait Store: Send + Sync + 'static {
    /// Checks that the database answers.
    fn ping(&self) -> BoxFuture<'_, Result<()>>;

    /// Creates the tenant with default settings if it does not exist.
    fn ensure_tenant<'a>(&'a self, tenant: &'a str) -> BoxFuture<'a, Result<()>>;

    /// The tenant's settings; NOT_FOUND if there is no such tenant.
    fn tenant_settings<'a>(&'a self, tenant: &'a str) -> BoxFuture<'a, Result<TenantSettings>>;

    /// Replaces the tenant's settings.
    fn update_tenant_settings<'a>(
        &'a self,
        tenant: &'a str,
        settings: &'a TenantSettings,
    ) -> BoxFuture<'a, Result<()>>;

    /// Writes validated records in one transaction (upsert by id, version rules,
    /// team-cycle check) and returns one outcome per record, in order; later
    /// records of the batch see earlier ones. When `all_or_nothing` is true and
    /// any outcome is `Rejected`, nothing is written (the other outcomes say
    /// what would have happened). NOT_FOUND if the tenant does not exist.
    fn write<'a>(
        &'a self,
        tenant: &'a str,
        records: &'a [Record],
        all_or_nothing: bool,
    ) -> BoxFuture<'a, Result<Vec<WriteOutcome>>>;

    /// Deletes records by id (idempotent); returns how many existed. Deleting
    /// forgets the version, so the id can be written again with any version.
    fn delete<'a>(
        &'a self,
        tenant: &'a str,
        record_type: RecordType,
        ids: &'a [String],
    ) -> BoxFuture<'a, Result<u64>>;

    /// Up to `limit` records of a type with id > `after_id`, in byte order of
    /// id (identical on both backends). An unknown tenant has no records.
    fn export<'a>(
        &'a self,
        tenant: &'a str,
        record_type: RecordType,
        after_id: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<Record>>>;

    /// Every record of the tenant, for the KPI engine, read from one
    /// consistent snapshot; each list is in byte order of id. An unknown tenant
    /// has no records.
    fn load_dataset<'a>(&'a self, tenant: &'a str) -> BoxFuture<'a, Result<Dataset>>;
}
