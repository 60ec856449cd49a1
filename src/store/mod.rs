//! Storage: one [`Store`] trait, one implementation per backend, chosen once at
//! start-up from the database URL ([`connect`]).
//!
//! Rows carry their tenant; instants are stored as integer nanoseconds since
//! the Unix epoch and local dates as ISO `YYYY-MM-DD` text, so both backends
//! compare and order them identically.
//!
//! Why two backends: SQLite needs no set-up (the default), PostgreSQL lets
//! several stateless replicas share one database. Each backend keeps its own
//! migrations and its own write path (SQLite: one rusqlite connection on a
//! blocking thread; PostgreSQL: array upserts with retries). What is the same
//! is written once, because the two schemas are column for column identical:
//! the row format ([`rows`]), the reads (`reads.rs`), the tenant and API-key
//! statements (below), and tenant creation (provided methods of [`Store`]).

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;

use crate::domain::{Dataset, Record, RecordType, TenantSettings};
use crate::error::{Error, Result};

mod copy_load;
mod open_error;
pub mod postgres;
mod reads;
pub mod rows;
pub mod sqlite;

pub use open_error::explain_open_error;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Where the data lives when nothing else is configured: `./salesmetrics.db`.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://salesmetrics.db";

/// How long deletions stay in the change feed by default (`--tombstone-retention-hours`).
pub const DEFAULT_TOMBSTONE_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Most teams a tenant may have by default (`--max-teams-per-tenant`).
pub const DEFAULT_MAX_TEAMS_PER_TENANT: usize = 10_000;

/// Settings of a store beyond its URL.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// How long a deletion stays in the change feed. A KPI snapshot older
    /// than the oldest deletion still kept is reloaded in full instead of
    /// catching up.
    pub tombstone_retention: Duration,
    /// Most teams one tenant may have; a new team beyond it is rejected
    /// (0: unlimited).
    pub max_teams_per_tenant: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            tombstone_retention: DEFAULT_TOMBSTONE_RETENTION,
            max_teams_per_tenant: DEFAULT_MAX_TEAMS_PER_TENANT,
        }
    }
}

/// A retention as nanoseconds (saturating: a huge retention keeps everything).
fn retention_nanos(retention: Duration) -> i64 {
    i64::try_from(retention.as_nanos()).unwrap_or(i64::MAX)
}

/// Changes to a tenant's records after some data version, read from the
/// change feed in one consistent snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    /// The tenant's data version the changes bring a snapshot to.
    pub version: i64,
    /// Records deleted since (type and id); applied before `upserts`.
    pub deleted: Vec<(RecordType, String)>,
    /// Records written since, as they are now.
    pub upserts: Vec<Record>,
}

/// Opens the store named by `url` and brings its schema up to date.
///
/// * `sqlite:` URLs (`sqlite://path/to/file.db`, `sqlite:file.db`) open a SQLite
///   file, created if missing ([`SqliteStore::connect`]).
/// * `postgres://` and `postgresql://` URLs open a PostgreSQL pool
///   ([`PostgresStore::connect`]).
/// * Anything else is INVALID_ARGUMENT on `database_url`.
///
/// An unreachable database is [`Error::Unavailable`]; at start-up,
/// [`explain_open_error`] says what failed and what to do.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>> {
    connect_with(url, StoreOptions::default()).await
}

/// [`connect`] with settings beyond the URL.
pub async fn connect_with(url: &str, options: StoreOptions) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect_with(url, options).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::connect_with(url, options).await?))
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

/// An API key as described to administrators: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyInfo {
    /// Key id, the non-secret part of the key (`sm_<id>_<secret>`).
    pub id: String,
    /// The tenant the key acts for.
    pub tenant_id: String,
    /// Free-text label.
    pub name: String,
    /// Creation instant, nanoseconds since the Unix epoch.
    pub created_at_nanos: i64,
    /// Revocation instant, nanoseconds since the Unix epoch; `None` while valid.
    pub revoked_at_nanos: Option<i64>,
}

/// An API key as stored: its description plus what verifies a presented
/// secret (see `crate::auth::keys`). The secret itself is never stored.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredApiKey {
    /// The public description.
    pub info: ApiKeyInfo,
    /// Random per-key salt, hex.
    pub salt: String,
    /// hex(SHA-256(salt bytes ‖ secret)).
    pub hash: String,
}

impl std::fmt::Debug for StoredApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredApiKey")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// How busy one connection pool is, for the `salesmetrics_db_pool_*` metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage {
    /// Which pool: `read` or `write` (SQLite), `main` (PostgreSQL).
    pub pool: &'static str,
    /// Open connections that are idle.
    pub idle: u32,
    /// Open connections that are lent out.
    pub in_use: u32,
    /// Most connections the pool opens.
    pub max: u32,
}

impl PoolUsage {
    /// The usage of an sqlx pool right now.
    fn of<DB: sqlx::Database>(pool: &'static str, p: &sqlx::Pool<DB>) -> Self {
        let size = p.size();
        let idle = u32::try_from(p.num_idle()).unwrap_or(u32::MAX).min(size);
        PoolUsage {
            pool,
            idle,
            in_use: size - idle,
            max: p.options().get_max_connections(),
        }
    }
}

/// The storage operations the API and the KPI engine need.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Checks that the database answers.
    async fn ping(&self) -> Result<()>;

    /// The usage of each connection pool (no I/O: read from the pools).
    fn pool_usage(&self) -> Vec<PoolUsage>;

    /// Creates a tenant with `settings` unless the id is taken (then
    /// changes nothing); whether it was created.
    async fn insert_tenant(&self, tenant: &str, settings: &TenantSettings) -> Result<bool>;

    /// Creates the tenant with default settings if it does not exist.
    async fn ensure_tenant(&self, tenant: &str) -> Result<()> {
        self.insert_tenant(tenant, &TenantSettings::default())
            .await?;
        Ok(())
    }

    /// The tenant's settings; NOT_FOUND if there is no such tenant.
    async fn tenant_settings(&self, tenant: &str) -> Result<TenantSettings>;

    /// Replaces the tenant's settings.
    async fn update_tenant_settings(&self, tenant: &str, settings: &TenantSettings) -> Result<()>;

    /// Writes validated records in one transaction (upsert by id, version rules,
    /// team-cycle check) and returns one outcome per record, in order; later
    /// records of the batch see earlier ones. When `all_or_nothing` is true and
    /// any outcome is `Rejected`, nothing is written (the other outcomes say
    /// what would have happened). NOT_FOUND if the tenant does not exist.
    async fn write(
        &self,
        tenant: &str,
        records: &[Record],
        all_or_nothing: bool,
    ) -> Result<Vec<WriteOutcome>>;

    /// Deletes records by id (idempotent); returns how many existed. Deleting
    /// forgets the version, so the id can be written again with any version.
    async fn delete(&self, tenant: &str, record_type: RecordType, ids: &[String]) -> Result<u64>;

    /// Up to `limit` records of a type with id > `after_id`, in byte order of
    /// id (identical on both backends). An unknown tenant has no records.
    async fn export(
        &self,
        tenant: &str,
        record_type: RecordType,
        after_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Record>>;

    /// Every record of the tenant, for the KPI engine, read from one
    /// consistent snapshot; each list is in byte order of id. An unknown tenant
    /// has no records.
    async fn load_dataset(&self, tenant: &str) -> Result<Dataset> {
        Ok(self.load_versioned(tenant).await?.1)
    }

    /// Every record of a tenant with the tenant's data version of the same
    /// snapshot (0 for a tenant that does not exist: no records).
    async fn load_versioned(&self, tenant: &str) -> Result<(i64, Dataset)>;

    /// The tenant's data version: a counter that grows with every committed
    /// change to its records (`None` for an unknown tenant).
    async fn data_version(&self, tenant: &str) -> Result<Option<i64>>;

    /// Up to `limit` tenants that have records, those whose records were
    /// written most often (the highest data versions) first.
    async fn most_written_tenants(&self, limit: usize) -> Result<Vec<String>>;

    /// What changed in the tenant's records after data version `since`, from
    /// the change feed; `None` when deletions after `since` may have been
    /// pruned already (then only a full load is exact).
    async fn changes_since(&self, tenant: &str, since: i64) -> Result<Option<Changes>>;

    // Tenants and API keys.

    /// Creates a tenant with `settings`; [`Error::AlreadyExists`] if the id is taken.
    async fn create_tenant(&self, tenant: &str, settings: &TenantSettings) -> Result<()> {
        if !self.insert_tenant(tenant, settings).await? {
            return Err(Error::AlreadyExists(format!(
                "tenant {} already exists",
                crate::error::quote(tenant)
            )));
        }
        Ok(())
    }

    /// Stores a new API key; NOT_FOUND if its tenant does not exist.
    async fn insert_api_key(&self, key: &StoredApiKey) -> Result<()>;

    /// The key with this id, revoked or not; `None` if there is none.
    async fn api_key(&self, key_id: &str) -> Result<Option<StoredApiKey>>;

    /// A tenant's keys, oldest first; NOT_FOUND if the tenant does not exist.
    async fn api_keys(&self, tenant: &str) -> Result<Vec<ApiKeyInfo>>;

    /// Marks a key revoked at `now_nanos` (a revoked key keeps its first
    /// revocation time) and returns it; `None` if there is no such key.
    async fn revoke_api_key(&self, key_id: &str, now_nanos: i64) -> Result<Option<ApiKeyInfo>>;
}

/// A tenant's settings. The default tenant (used when authentication is off)
/// exists implicitly: it is created, with default settings, on first use.
/// Any other unknown tenant is NOT_FOUND.
pub async fn settings_of(store: &dyn Store, tenant: &str) -> Result<TenantSettings> {
    match store.tenant_settings(tenant).await {
        Err(Error::NotFound(_)) if tenant == crate::domain::DEFAULT_TENANT => {
            store.ensure_tenant(tenant).await?;
            store.tenant_settings(tenant).await
        }
        other => other,
    }
}

// The statements both backends run with the same text. Placeholders are
// `$N`, numbered in the order they first appear: sqlx (both drivers) reads
// the number, and SQLite itself numbers `$`-named parameters in order of
// first appearance, so positional binds line up on the rusqlite writer too.

/// Threads (SQLite) or connections (PostgreSQL) a full load of a tenant
/// reads on at most.
const MAX_LOAD_PARTS: usize = 4;

/// Parallel loads tried before a load in one transaction.
const PARALLEL_LOAD_ATTEMPTS: usize = 3;

/// The parts a full load reads in parallel: one per core, at most
/// [`MAX_LOAD_PARTS`].
fn load_parts() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_LOAD_PARTS)
}

/// The record types in the order the parts of a parallel load take them:
/// the largest lists first, so the parts finish together.
const LOAD_ORDER: [RecordType; 14] = [
    RecordType::Activity,
    RecordType::Order,
    RecordType::DealStageChange,
    RecordType::Lead,
    RecordType::Deal,
    RecordType::SubscriptionChange,
    RecordType::Customer,
    RecordType::Inquiry,
    RecordType::CsatResponse,
    RecordType::Target,
    RecordType::Spend,
    RecordType::TeamMembership,
    RecordType::Rep,
    RecordType::Team,
];

/// Hands out the record types of [`LOAD_ORDER`] to the parts of a load.
#[derive(Debug, Default)]
struct LoadQueue(std::sync::atomic::AtomicUsize);

impl LoadQueue {
    /// The next record type to read, if any is left.
    fn next(&self) -> Option<RecordType> {
        LOAD_ORDER
            .get(self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
            .copied()
    }
}

/// One snapshot made of the parts of a parallel load (each part: the
/// tenant's data version its transaction read, and the records it read),
/// when every part read the same version; `None` otherwise (a write landed
/// between their snapshots).
fn join_load_parts(
    parts: impl IntoIterator<Item = Result<(Option<i64>, Dataset)>>,
) -> Result<Option<(i64, Dataset)>> {
    let mut version = None;
    let mut dataset = Dataset::default();
    for (i, part) in parts.into_iter().enumerate() {
        let (part_version, part) = part?;
        if i > 0 && part_version != version {
            return Ok(None);
        }
        version = part_version;
        dataset.absorb(part);
    }
    Ok(Some((version.unwrap_or(0), dataset)))
}

/// The data version of a tenant (see migrations/*/0003_data_version.sql).
const DATA_VERSION_SQL: &str = "SELECT data_version FROM tenants WHERE id = $1";

/// The tenants with the most record writes so far (the highest data
/// versions; `$1` how many), busiest first, ties by id.
const MOST_WRITTEN_TENANTS_SQL: &str = "SELECT id FROM tenants WHERE data_version > 0 \
     ORDER BY data_version DESC, id LIMIT $1";

/// Records a deletion in the change feed (`$1` tenant, `$2` table, `$3` id,
/// `$4` the deleting transaction's data version, `$5` when, in nanoseconds).
const UPSERT_TOMBSTONE_SQL: &str = "INSERT INTO tombstones \
     (tenant_id, record_table, id, changed_version, deleted_at) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (tenant_id, record_table, id) DO UPDATE SET \
     changed_version = excluded.changed_version, deleted_at = excluded.deleted_at";

/// The highest version among a tenant's tombstones older than `$2`.
const PRUNABLE_TOMBSTONES_SQL: &str =
    "SELECT MAX(changed_version) FROM tombstones WHERE tenant_id = $1 AND deleted_at < $2";

/// Drops a tenant's tombstones older than `$2`.
const PRUNE_TOMBSTONES_SQL: &str =
    "DELETE FROM tombstones WHERE tenant_id = $1 AND deleted_at < $2";

/// Raises a tenant's `tombstones_pruned_version` to `$1` (never lowers it).
const RAISE_PRUNED_VERSION_SQL: &str = "UPDATE tenants SET tombstones_pruned_version = $1 \
     WHERE id = $2 AND tombstones_pruned_version < $1";

/// Creates a tenant unless the id is taken (then changes nothing).
const INSERT_TENANT_SQL: &str = "INSERT INTO tenants (id, settings, created_at) VALUES ($1, $2, $3) \
     ON CONFLICT (id) DO NOTHING";

/// Replaces a tenant's settings (`$1` settings JSON, `$2` tenant).
const UPDATE_SETTINGS_SQL: &str = "UPDATE tenants SET settings = $1 WHERE id = $2";

/// Adds one to the tenant's data version (inside a write transaction).
const BUMP_VERSION_SQL: &str = "UPDATE tenants SET data_version = data_version + 1 WHERE id = $1";

/// `INSERT` of an API key that writes nothing when the tenant does not exist.
const INSERT_API_KEY_SQL: &str = "INSERT INTO api_keys \
     (id, tenant_id, name, salt, hash, created_at, revoked_at) \
     SELECT $1, $2, $3, $4, $5, $6, $7 \
     WHERE EXISTS (SELECT 1 FROM tenants WHERE id = $2)";

/// Revokes a key (`$1` the revocation time, `$2` the key id); a revoked key
/// keeps its first revocation time. Returns the key's [`API_KEY_COLUMNS`].
static REVOKE_API_KEY_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 \
         RETURNING {API_KEY_COLUMNS}"
    )
});

/// Columns of [`ApiKeyInfo`] then salt and hash, in [`api_key_from_row`] order.
const API_KEY_COLUMNS: &str = "id, tenant_id, name, created_at, revoked_at, salt, hash";

/// Reads a row of [`API_KEY_COLUMNS`].
fn api_key_from_row<'r, R>(row: &'r R) -> Result<StoredApiKey>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(StoredApiKey {
        info: ApiKeyInfo {
            id: row.try_get(0)?,
            tenant_id: row.try_get(1)?,
            name: row.try_get(2)?,
            created_at_nanos: row.try_get(3)?,
            revoked_at_nanos: row.try_get(4)?,
        },
        salt: row.try_get(5)?,
        hash: row.try_get(6)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Record;
    use salesmetrics_core::testkit::build::{dataset, order, rep};

    /// On SQLite (no table statistics), the change feed of every record
    /// type is read through its (tenant_id, changed_version) index, so a
    /// catch-up reads the changed rows only, not every row of the tenant.
    #[tokio::test]
    async fn sqlite_reads_the_change_feed_through_its_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feed.db");
        connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        for record_type in RecordType::ALL {
            let sql = format!(
                "EXPLAIN QUERY PLAN {}",
                reads::changed_rows_sql(record_type)
            );
            let mut statement = conn.prepare(&sql).unwrap();
            let plan: Vec<String> = statement
                .query_map(rusqlite::params!["t1", 7], |row| row.get::<_, String>(3))
                .unwrap()
                .collect::<std::result::Result<_, _>>()
                .unwrap();
            let index = format!("{}_tenant_changed_version", rows::table(record_type).table);
            assert!(
                plan.len() == 1 && plan[0].contains(&index),
                "{record_type:?}: {plan:?}"
            );
        }
    }

    /// The queue hands out every record type once, the largest lists first.
    #[test]
    fn a_load_queue_hands_out_every_record_type_once() {
        let queue = LoadQueue::default();
        let handed: Vec<RecordType> = std::iter::from_fn(|| queue.next()).collect();
        assert_eq!(handed.first(), Some(&RecordType::Activity));
        let mut sorted = handed.clone();
        sorted.sort_by_key(|t| *t as usize);
        assert_eq!(sorted, RecordType::ALL.to_vec());
        assert_eq!(queue.next(), None);
    }

    /// Parts of one version make one dataset; parts of two versions make
    /// none (the load is tried again).
    #[test]
    fn load_parts_join_only_at_one_version() {
        let orders = || {
            dataset([Record::Order(order(
                "o1",
                100,
                "2024-03-01T00:00:00Z",
                None,
            ))])
        };
        let reps = || dataset([rep("r1"), rep("r2")]);
        let joined = join_load_parts([Ok((Some(7), orders())), Ok((Some(7), reps()))])
            .expect("no error")
            .expect("one version");
        assert_eq!(joined.0, 7);
        assert_eq!((joined.1.orders.len(), joined.1.reps.len()), (1, 2));
        let torn = join_load_parts([Ok((Some(7), orders())), Ok((Some(8), reps()))]);
        assert!(
            matches!(torn, Ok(None)),
            "two versions are not one snapshot"
        );
        // An unknown tenant (no version) with no records: version 0.
        let empty = join_load_parts([
            Ok((None, Dataset::default())),
            Ok((None, Dataset::default())),
        ]);
        assert!(matches!(empty, Ok(Some((0, d))) if d.is_empty()));
    }
}
