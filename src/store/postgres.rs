//! PostgreSQL backend: how salesmetrics scales past one machine. Several
//! stateless replicas may write the same tenant at once, so every rule is
//! enforced by the database, not by the process: the version rule is part of
//! the upsert statement itself, and batches that touch the team tree lock the
//! tenant row first so two replicas cannot each add half of a cycle.
//! Transactions that lose a deadlock or serialization race are retried.
//!
//! Every statement is a network round trip, so runs of records are written
//! with one upsert each (about 10× faster for a 10 000-record batch than one
//! statement per record), its rows bound as one array per column: one
//! prepared statement per table whatever the run's length, and fewer binds
//! than a multi-row `VALUES` list (measured a little faster on 300k-record
//! ingests, with less server memory).

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, Postgres};

use super::copy_load;
use super::reads::SqlReads;
use super::rows::{self, TeamTree, TeamTreeGuard, Value};
use super::{
    ApiKeyInfo, BUMP_VERSION_SQL, Changes, INSERT_API_KEY_SQL, INSERT_TENANT_SQL, LoadQueue,
    PARALLEL_LOAD_ATTEMPTS, PRUNABLE_TOMBSTONES_SQL, PRUNE_TOMBSTONES_SQL, PoolUsage,
    RAISE_PRUNED_VERSION_SQL, REVOKE_API_KEY_SQL, Store, StoreOptions, StoredApiKey,
    UPDATE_SETTINGS_SQL, UPSERT_TOMBSTONE_SQL, WriteOutcome, api_key_from_row, join_load_parts,
    load_parts, retention_nanos,
};
use crate::domain::{Dataset, Record, RecordType, TenantSettings};
use crate::error::{Error, Result};

/// The PostgreSQL schema (`migrations/postgres`), embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// How long a request waits for a pooled connection (or a new one) before
/// the database counts as unavailable: short, so an unreachable database
/// fails fast with UNAVAILABLE instead of hanging the request.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections per replica.
const MAX_CONNECTIONS: u32 = 10;

/// Attempts for a write transaction that hit a deadlock or serialization
/// failure (SQLSTATE 40P01 / 40001), which PostgreSQL (and compatible
/// distributed engines) expect the client to retry.
const WRITE_ATTEMPTS: u32 = 3;

/// The SQL of one record table, built once from [`rows::table`].
struct Statements {
    /// One id.
    delete: String,
    /// Upsert of a run of records (see [`upsert_sql`]).
    upsert: String,
}

/// Statements per record type, indexed by `RecordType as usize`.
static STATEMENTS: LazyLock<Vec<Statements>> =
    LazyLock::new(|| RecordType::ALL.iter().map(|rt| statements(*rt)).collect());

fn statements(record_type: RecordType) -> Statements {
    let spec = rows::table(record_type);
    let t = spec.table;
    Statements {
        delete: format!("DELETE FROM {t} WHERE tenant_id = $1 AND id = $2"),
        upsert: upsert_sql(t, spec.columns),
    }
}

/// One atomic statement per run of records (see [`rows::upsert_runs`]):
/// insert, or replace every column when the version rule allows it.
/// `RETURNING id` yields the rows actually inserted or updated, so an id
/// missing from the result was stale.
/// A concurrent upsert of the same key waits for the first to commit and then
/// re-evaluates the rule.
///
/// The rows come as one array per column (`$2` ids, `$3` versions, then the
/// data columns) unnested into rows, so the statement text is the same for
/// every run of a table: PostgreSQL parses and plans it once per connection,
/// and a run costs a handful of binds instead of ten per record.
fn upsert_sql(table: &str, columns: &[(&str, rows::Kind)]) -> String {
    let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
    let arrays: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, (_, kind))| {
            let array_type = match kind {
                rows::Kind::Text => "text[]",
                rows::Kind::Int => "bigint[]",
            };
            format!("${}::{array_type}", i + 4)
        })
        .collect();
    let updates: Vec<String> = std::iter::once("version")
        .chain(names.iter().copied())
        .chain(std::iter::once("changed_version"))
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    // The last parameter is the transaction's new data version, recorded as
    // every written row's `changed_version` (the change feed).
    let changed_version = columns.len() + 4;
    format!(
        "INSERT INTO {table} (tenant_id, id, version, {columns}, changed_version) \
         SELECT $1, *, ${changed_version}::bigint FROM UNNEST($2::text[], $3::bigint[], {arrays}) \
         ON CONFLICT (tenant_id, id) DO UPDATE SET {updates} \
         WHERE excluded.version IS NULL OR {table}.version IS NULL \
         OR excluded.version > {table}.version \
         RETURNING id",
        columns = names.join(", "),
        arrays = arrays.join(", "),
        updates = updates.join(", "),
    )
}

/// The values of one data column of a run, bound as one array.
enum ColumnArray {
    /// A `TEXT` column, bound as `text[]`.
    Text(Vec<Option<String>>),
    /// A `BIGINT` column, bound as `bigint[]`.
    Int(Vec<Option<i64>>),
}

/// The PostgreSQL implementation of [`Store`].
#[derive(Debug, Clone)]
pub struct PostgresStore {
    /// The reads (and their pool, which the writes share: PostgreSQL handles
    /// concurrent writers).
    reads: SqlReads<Postgres>,
    /// How long deletions stay in the change feed.
    tombstone_retention: Duration,
    /// Most teams one tenant may have (0: unlimited).
    max_teams_per_tenant: usize,
    /// Connections full loads may take beyond one each: a load reads on
    /// parallel connections only while this leaves the rest of the pool to
    /// writes and other reads.
    extra_load_connections: Arc<tokio::sync::Semaphore>,
}

impl PostgresStore {
    /// Connects to a `postgres://` URL and applies the embedded migrations
    /// (sqlx holds an advisory lock meanwhile, so replicas starting together
    /// migrate once).
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, StoreOptions::default()).await
    }

    /// [`PostgresStore::connect`] with settings beyond the URL.
    pub async fn connect_with(url: &str, store_options: StoreOptions) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|_| Error::invalid("database_url", "not a valid PostgreSQL URL"))?;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await.map_err(super::migrate_error)?;
        Ok(PostgresStore {
            extra_load_connections: Arc::new(tokio::sync::Semaphore::new(
                MAX_CONNECTIONS as usize / 2,
            )),
            reads: SqlReads {
                pool,
                // One snapshot for every table of a load (READ COMMITTED
                // would take a new one per statement).
                begin_snapshot: Some("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"),
            },
            tombstone_retention: store_options.tombstone_retention,
            max_teams_per_tenant: store_options.max_teams_per_tenant,
        })
    }

    /// The pool reads and writes run on.
    fn pool(&self) -> &PgPool {
        &self.reads.pool
    }

    async fn write_batch(
        &self,
        tenant: &str,
        records: &[Record],
        all_or_nothing: bool,
    ) -> Result<Vec<WriteOutcome>> {
        let mut attempt = 1;
        loop {
            match self.write_once(tenant, records, all_or_nothing).await {
                Err(Error::Internal(err)) if attempt < WRITE_ATTEMPTS && is_retryable(&err) => {
                    tracing::debug!(attempt, error = %err, "retrying write transaction");
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn write_once(
        &self,
        tenant: &str,
        records: &[Record],
        all_or_nothing: bool,
    ) -> Result<Vec<WriteOutcome>> {
        let mut tx = self.pool().begin().await?;
        // Every write locks the tenant row first, serializing the writes of a
        // tenant across replicas: the team tree read below stays current
        // until commit, the data version (bumped last) counts commits
        // exactly, and two batches can never deadlock on each other's rows.
        let changed_version = lock_next_version(&mut tx, tenant)
            .await?
            .ok_or_else(|| rows::unknown_tenant(tenant))?;
        let mut teams = TeamTreeGuard::new(
            if rows::has_teams(records) {
                load_team_tree(&mut tx, tenant).await?
            } else {
                TeamTree::new()
            },
            self.max_teams_per_tenant,
        );
        let mut outcomes = Vec::with_capacity(records.len());
        for run in rows::upsert_runs(records) {
            let run = &records[run];
            // Teams are alone in their run, so a rejection is the run's only record.
            if let Some(rejected) = run.iter().find_map(|r| teams.check(r)) {
                outcomes.push(rejected);
                continue;
            }
            let written = upsert(&mut tx, tenant, run, changed_version).await?;
            for record in run {
                if written.contains(record.id()) {
                    teams.applied(record);
                    outcomes.push(WriteOutcome::Accepted);
                } else {
                    outcomes.push(WriteOutcome::Stale);
                }
            }
        }
        let rejected = outcomes
            .iter()
            .any(|o| matches!(o, WriteOutcome::Rejected { .. }));
        if all_or_nothing && rejected {
            tx.rollback().await?;
        } else {
            if outcomes.contains(&WriteOutcome::Accepted) {
                sqlx::query(BUMP_VERSION_SQL)
                    .bind(tenant)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        }
        Ok(outcomes)
    }

    async fn delete_ids(
        &self,
        tenant: &str,
        record_type: RecordType,
        ids: &[String],
    ) -> Result<u64> {
        let sql = &STATEMENTS[record_type as usize].delete;
        let mut tx = self.pool().begin().await?;
        // The tenant row lock orders deletes with writes (see write_once).
        let Some(changed_version) = lock_next_version(&mut tx, tenant).await? else {
            // No tenant, no records: nothing existed.
            return Ok(0);
        };
        let table = rows::table(record_type).table;
        let now = rows::now_nanos();
        let mut existed = 0;
        for id in ids {
            let deleted = sqlx::query(sql)
                .bind(tenant)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if deleted > 0 {
                existed += deleted;
                sqlx::query(UPSERT_TOMBSTONE_SQL)
                    .bind(tenant)
                    .bind(table)
                    .bind(id)
                    .bind(changed_version)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        if existed > 0 {
            sqlx::query(BUMP_VERSION_SQL)
                .bind(tenant)
                .execute(&mut *tx)
                .await?;
            let cutoff = now.saturating_sub(retention_nanos(self.tombstone_retention));
            let pruned: Option<i64> = sqlx::query_scalar(PRUNABLE_TOMBSTONES_SQL)
                .bind(tenant)
                .bind(cutoff)
                .fetch_one(&mut *tx)
                .await?;
            if let Some(pruned) = pruned {
                sqlx::query(PRUNE_TOMBSTONES_SQL)
                    .bind(tenant)
                    .bind(cutoff)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(RAISE_PRUNED_VERSION_SQL)
                    .bind(pruned)
                    .bind(tenant)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(existed)
    }
}

/// Whether a failed transaction may simply be run again: a deadlock
/// (40P01) or a serialization failure (40001).
fn is_retryable(err: &anyhow::Error) -> bool {
    err.downcast_ref::<sqlx::Error>()
        .and_then(|e| e.as_database_error())
        .and_then(|db| db.code())
        .is_some_and(|code| code == "40P01" || code == "40001")
}

/// Locks the tenant row and returns the data version the transaction
/// commits if it changes anything (`None`: no such tenant). Every write
/// takes this lock first, so the writes of a tenant are serialized across
/// replicas and the version is this transaction's alone.
async fn lock_next_version(conn: &mut PgConnection, tenant: &str) -> Result<Option<i64>> {
    let version: Option<i64> =
        sqlx::query_scalar("SELECT data_version FROM tenants WHERE id = $1 FOR UPDATE")
            .bind(tenant)
            .fetch_optional(conn)
            .await?;
    Ok(version.map(|v| v + 1))
}

async fn load_team_tree(conn: &mut PgConnection, tenant: &str) -> Result<TeamTree> {
    let rows = sqlx::query("SELECT id, parent_team_id FROM teams WHERE tenant_id = $1")
        .bind(tenant)
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
}

/// Writes a run of records of one type with distinct ids; returns the ids
/// that were written (the others were stale).
async fn upsert(
    conn: &mut PgConnection,
    tenant: &str,
    run: &[Record],
    changed_version: i64,
) -> Result<HashSet<String>> {
    let Some(first) = run.first() else {
        return Ok(HashSet::new());
    };
    let record_type = first.record_type();
    let mut ids = Vec::with_capacity(run.len());
    let mut versions = Vec::with_capacity(run.len());
    let mut columns: Vec<ColumnArray> = rows::table(record_type)
        .columns
        .iter()
        .map(|(_, kind)| match kind {
            rows::Kind::Text => ColumnArray::Text(Vec::with_capacity(run.len())),
            rows::Kind::Int => ColumnArray::Int(Vec::with_capacity(run.len())),
        })
        .collect();
    for record in run {
        ids.push(record.id());
        versions.push(record.version());
        let values = rows::encode(record)?;
        if values.len() != columns.len() {
            return Err(Error::internal(format!(
                "{} values for {} columns",
                values.len(),
                columns.len()
            )));
        }
        for (column, value) in columns.iter_mut().zip(values) {
            match (column, value) {
                (ColumnArray::Text(column), Value::Text(v)) => column.push(v.map(String::from)),
                (ColumnArray::Int(column), Value::Int(v)) => column.push(v),
                _ => return Err(Error::internal("value kind does not match its column")),
            }
        }
    }
    let mut query = sqlx::query(&STATEMENTS[record_type as usize].upsert)
        .bind(tenant)
        .bind(ids)
        .bind(versions);
    for column in columns {
        query = match column {
            ColumnArray::Text(values) => query.bind(values),
            ColumnArray::Int(values) => query.bind(values),
        };
    }
    query
        .bind(changed_version)
        .fetch_all(conn)
        .await?
        .iter()
        .map(|row| Ok(row.try_get::<String, _>(0)?))
        .collect()
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> Result<()> {
        self.reads.ping().await
    }

    fn pool_usage(&self) -> Vec<PoolUsage> {
        vec![PoolUsage::of("main", self.pool())]
    }

    async fn insert_tenant(&self, tenant: &str, settings: &TenantSettings) -> Result<bool> {
        let created = sqlx::query(INSERT_TENANT_SQL)
            .bind(tenant)
            .bind(rows::settings_to_json(settings)?)
            .bind(rows::now_nanos())
            .execute(self.pool())
            .await?
            .rows_affected();
        Ok(created > 0)
    }

    async fn tenant_settings(&self, tenant: &str) -> Result<TenantSettings> {
        self.reads.tenant_settings(tenant).await
    }

    async fn update_tenant_settings(&self, tenant: &str, settings: &TenantSettings) -> Result<()> {
        let updated = sqlx::query(UPDATE_SETTINGS_SQL)
            .bind(rows::settings_to_json(settings)?)
            .bind(tenant)
            .execute(self.pool())
            .await?
            .rows_affected();
        if updated == 0 {
            return Err(rows::unknown_tenant(tenant));
        }
        Ok(())
    }

    async fn write(
        &self,
        tenant: &str,
        records: &[Record],
        all_or_nothing: bool,
    ) -> Result<Vec<WriteOutcome>> {
        self.write_batch(tenant, records, all_or_nothing).await
    }

    async fn delete(&self, tenant: &str, record_type: RecordType, ids: &[String]) -> Result<u64> {
        self.delete_ids(tenant, record_type, ids).await
    }

    async fn export(
        &self,
        tenant: &str,
        record_type: RecordType,
        after_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Record>> {
        self.reads
            .export(tenant, record_type, after_id, limit)
            .await
    }

    /// Reads the record types on parallel connections (one per core, each
    /// a task of its own, as long as loads together take at most half the
    /// pool), each in a REPEATABLE READ transaction; the parts
    /// make one snapshot when every transaction read the same data version
    /// of the tenant (every write that changes the tenant raises it).
    /// Otherwise the load is tried again, and the last attempt reads
    /// everything in one transaction.
    async fn load_versioned(&self, tenant: &str) -> Result<(i64, Dataset)> {
        let wanted = u32::try_from(load_parts().saturating_sub(1)).unwrap_or(0);
        // Fewer parts (down to one) while other loads hold the extra connections.
        let permits = (1..=wanted)
            .rev()
            .find_map(|n| self.extra_load_connections.try_acquire_many(n).ok());
        let parts = 1 + permits.as_ref().map_or(0, |p| p.num_permits());
        if parts > 1 {
            for _ in 0..PARALLEL_LOAD_ATTEMPTS {
                let queue = Arc::new(LoadQueue::default());
                let tasks: Vec<_> = (0..parts)
                    .map(|_| {
                        let (reads, queue) = (self.reads.clone(), queue.clone());
                        let tenant = tenant.to_string();
                        tokio::spawn(
                            async move { copy_load::load_part(&reads, &tenant, &queue).await },
                        )
                    })
                    .collect();
                let mut loaded = Vec::with_capacity(tasks.len());
                for task in tasks {
                    loaded.push(
                        task.await.map_err(|e| {
                            Error::internal(format!("tenant load task failed: {e}"))
                        })?,
                    );
                }
                if let Some(loaded) = join_load_parts(loaded)? {
                    return Ok(loaded);
                }
            }
        }
        let (version, dataset) =
            copy_load::load_part(&self.reads, tenant, &LoadQueue::default()).await?;
        Ok((version.unwrap_or(0), dataset))
    }

    async fn data_version(&self, tenant: &str) -> Result<Option<i64>> {
        self.reads.data_version(tenant).await
    }

    async fn most_written_tenants(&self, limit: usize) -> Result<Vec<String>> {
        self.reads.most_written_tenants(limit).await
    }

    async fn changes_since(&self, tenant: &str, since: i64) -> Result<Option<Changes>> {
        self.reads.changes_since(tenant, since).await
    }

    async fn insert_api_key(&self, key: &StoredApiKey) -> Result<()> {
        let inserted = sqlx::query(INSERT_API_KEY_SQL)
            .bind(&key.info.id)
            .bind(&key.info.tenant_id)
            .bind(&key.info.name)
            .bind(&key.salt)
            .bind(&key.hash)
            .bind(key.info.created_at_nanos)
            .bind(key.info.revoked_at_nanos)
            .execute(self.pool())
            .await?
            .rows_affected();
        if inserted == 0 {
            return Err(rows::unknown_tenant(&key.info.tenant_id));
        }
        Ok(())
    }

    async fn api_key(&self, key_id: &str) -> Result<Option<StoredApiKey>> {
        self.reads.api_key(key_id).await
    }

    async fn api_keys(&self, tenant: &str) -> Result<Vec<ApiKeyInfo>> {
        self.reads.api_keys(tenant).await
    }

    async fn revoke_api_key(&self, key_id: &str, now_nanos: i64) -> Result<Option<ApiKeyInfo>> {
        let row = sqlx::query(&REVOKE_API_KEY_SQL)
            .bind(now_nanos)
            .bind(key_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row
            .as_ref()
            .map(api_key_from_row)
            .transpose()?
            .map(|k| k.info))
    }
}
