//! SQLite backend: the zero-set-up default, one file next to the binary.
//!
//! SQLite allows one writer at a time. Instead of letting writers race for the
//! file lock (and fail with "database is locked" once `busy_timeout` runs
//! out), every write goes through a pool of exactly one connection, so writers
//! queue in the pool; reads use a separate pool and, in WAL mode, run
//! alongside the writer on a consistent snapshot.

use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool,
    SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, Sqlite};

use super::rows::{self, TeamTree, TeamTreeGuard, Value};
use super::{
    API_KEY_COLUMNS, ApiKeyInfo, PoolUsage, Store, StoredApiKey, WriteOutcome, api_key_from_row,
    insert_api_key_sql,
};
use crate::domain::{Dataset, Record, RecordType, TenantSettings};
use crate::error::{Error, Result};

/// How long a connection waits for a lock held by another process before
/// giving up (within this process the single writer makes that moot).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a write waits for its turn on the single writer connection. Large
/// batches queue behind each other, so this is generous.
const WRITE_QUEUE_TIMEOUT: Duration = Duration::from_secs(60);

/// Read connections: enough for concurrent KPI queries on a small machine.
const READ_CONNECTIONS: u32 = 4;

/// The SQL of one record table, built once from [`rows::table`].
struct Statements {
    /// Upsert that returns a row only when it wrote (see [`upsert_sql`]).
    upsert: String,
    /// `id > ?2 ORDER BY id LIMIT ?3`, for export.
    page: String,
    /// Every row of the tenant, ordered by id.
    all: String,
    /// One id.
    delete: String,
}

/// Statements per record type, indexed by `RecordType as usize`.
static STATEMENTS: LazyLock<Vec<Statements>> =
    LazyLock::new(|| RecordType::ALL.iter().map(|rt| statements(*rt)).collect());

fn statements(record_type: RecordType) -> Statements {
    let spec = rows::table(record_type);
    let t = spec.table;
    let names: Vec<&str> = spec.columns.iter().map(|(name, _)| *name).collect();
    let select = format!("SELECT id, version, {} FROM {t}", names.join(", "));
    Statements {
        upsert: upsert_sql(t, &names),
        page: format!("{select} WHERE tenant_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3"),
        all: format!("{select} WHERE tenant_id = ?1 ORDER BY id"),
        delete: format!("DELETE FROM {t} WHERE tenant_id = ?1 AND id = ?2"),
    }
}

/// One atomic statement per record: insert, or replace every column when the
/// version rule allows it. Per record rather than multi-row (as the
/// PostgreSQL backend does): SQLite runs in-process, so there is no round trip
/// to save, and a small cached statement measured about twice as fast as
/// 500-row statements. `RETURNING 1` yields a row only if the row was
/// inserted or updated, so "no row" means stale. (Upsert with RETURNING needs
/// SQLite ≥ 3.35; the bundled libsqlite3-sys 0.30 ships 3.46.)
fn upsert_sql(table: &str, columns: &[&str]) -> String {
    let placeholders: Vec<String> = (1..=columns.len() + 3).map(|i| format!("?{i}")).collect();
    let updates: Vec<String> = std::iter::once("version")
        .chain(columns.iter().copied())
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    format!(
        "INSERT INTO {table} (tenant_id, id, version, {columns}) VALUES ({placeholders}) \
         ON CONFLICT (tenant_id, id) DO UPDATE SET {updates} \
         WHERE excluded.version IS NULL OR {table}.version IS NULL \
         OR excluded.version > {table}.version \
         RETURNING 1",
        columns = columns.join(", "),
        placeholders = placeholders.join(", "),
        updates = updates.join(", "),
    )
}

type Query<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>;

fn bind(query: Query<'_>, value: Value) -> Query<'_> {
    match value {
        Value::Text(t) => query.bind(t),
        Value::Int(i) => query.bind(i),
    }
}

/// The SQLite implementation of [`Store`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// The only connection that writes (max 1 connection): writers queue here.
    writer: SqlitePool,
    /// Connections that only read.
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file of a `sqlite:` URL and
    /// applies the embedded migrations.
    ///
    /// In-memory URLs (`sqlite::memory:`, `mode=memory`) are refused: the
    /// separate read and write pools would need a shared cache, whose table
    /// locks fail instead of waiting. Tests use a temporary file.
    pub async fn connect(url: &str) -> Result<Self> {
        if url.contains(":memory:") || url.contains("mode=memory") {
            return Err(Error::invalid(
                "database_url",
                "in-memory SQLite is not supported; use a file (sqlite://path/to/file.db)",
            ));
        }
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|_| Error::invalid("database_url", "not a valid sqlite: URL"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // With WAL, NORMAL syncs at checkpoints rather than on every
            // commit: a committed transaction survives a crash of this
            // process (it is in the WAL file); only an OS crash or power loss
            // may lose the last commits, and never corrupts the file. FULL
            // would cost an fsync per batch for that last bit.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(false);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(WRITE_QUEUE_TIMEOUT)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("migrations/sqlite")
            .run(&writer)
            .await
            .map_err(super::migrate_error)?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .connect_with(options)
            .await?;
        Ok(SqliteStore { writer, reader })
    }

    async fn write_batch(
        &self,
        tenant: &str,
        records: &[Record],
        all_or_nothing: bool,
    ) -> Result<Vec<WriteOutcome>> {
        // IMMEDIATE takes the write lock up front, so the reads below (tenant,
        // team tree) cannot go stale before the writes.
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let exists = sqlx::query("SELECT 1 FROM tenants WHERE id = ?1")
            .bind(tenant)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(rows::unknown_tenant(tenant));
        }
        let mut teams = TeamTreeGuard::new(if rows::has_teams(records) {
            load_team_tree(&mut tx, tenant).await?
        } else {
            TeamTree::new()
        });
        let mut outcomes = Vec::with_capacity(records.len());
        for record in records {
            if let Some(rejected) = teams.check(record) {
                outcomes.push(rejected);
                continue;
            }
            if upsert(&mut tx, tenant, record).await? {
                teams.applied(record);
                outcomes.push(WriteOutcome::Accepted);
            } else {
                outcomes.push(WriteOutcome::Stale);
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
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let mut existed = 0;
        for id in ids {
            existed += sqlx::query(sql)
                .bind(tenant)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        if existed > 0 {
            sqlx::query(BUMP_VERSION_SQL)
                .bind(tenant)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(existed)
    }

    async fn export_page(
        &self,
        tenant: &str,
        record_type: RecordType,
        after_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Record>> {
        // Every valid id is non-empty, so "after the empty string" is "from the start".
        sqlx::query(&STATEMENTS[record_type as usize].page)
            .bind(tenant)
            .bind(after_id.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(|row| rows::read_record(record_type, row))
            .collect()
    }

    async fn load(&self, tenant: &str) -> Result<(i64, Dataset)> {
        // One read transaction: every table is read from the same snapshot.
        let mut tx = self.reader.begin().await?;
        // First statement: the snapshot starts here, so the version matches
        // the records read after it.
        let version: Option<i64> = sqlx::query_scalar(DATA_VERSION_SQL)
            .bind(tenant)
            .fetch_optional(&mut *tx)
            .await?;
        let mut dataset = Dataset::default();
        for record_type in RecordType::ALL {
            let rows = sqlx::query(&STATEMENTS[record_type as usize].all)
                .bind(tenant)
                .fetch_all(&mut *tx)
                .await?;
            for row in &rows {
                dataset.push(rows::read_record(record_type, row)?);
            }
        }
        tx.commit().await?;
        Ok((version.unwrap_or(0), dataset))
    }
}

/// The data version of a tenant (see migrations/*/0003_data_version.sql).
const DATA_VERSION_SQL: &str = "SELECT data_version FROM tenants WHERE id = ?1";

/// Adds one to the tenant's data version (inside a write transaction).
const BUMP_VERSION_SQL: &str = "UPDATE tenants SET data_version = data_version + 1 WHERE id = ?1";

async fn load_team_tree(conn: &mut SqliteConnection, tenant: &str) -> Result<TeamTree> {
    let rows = sqlx::query("SELECT id, parent_team_id FROM teams WHERE tenant_id = ?1")
        .bind(tenant)
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
}

/// Writes one record; `false` when it was stale.
async fn upsert(conn: &mut SqliteConnection, tenant: &str, record: &Record) -> Result<bool> {
    let mut query = sqlx::query(&STATEMENTS[record.record_type() as usize].upsert)
        .bind(tenant)
        .bind(record.id())
        .bind(record.version());
    for value in rows::encode(record)? {
        query = bind(query, value);
    }
    Ok(query.fetch_optional(conn).await?.is_some())
}

impl Store for SqliteStore {
    fn ping(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            sqlx::query("SELECT 1").execute(&self.reader).await?;
            Ok(())
        })
    }

    fn pool_usage(&self) -> Vec<PoolUsage> {
        vec![
            PoolUsage::of("read", &self.reader),
            PoolUsage::of("write", &self.writer),
        ]
    }

    fn ensure_tenant<'a>(&'a self, tenant: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let settings = rows::settings_to_json(&TenantSettings::default())?;
            sqlx::query(
                "INSERT INTO tenants (id, settings, created_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(tenant)
            .bind(settings)
            .bind(rows::now_nanos())
            .execute(&self.writer)
            .await?;
            Ok(())
        })
    }

    fn tenant_settings<'a>(&'a self, tenant: &'a str) -> BoxFuture<'a, Result<TenantSettings>> {
        Box::pin(async move {
            let row = sqlx::query("SELECT settings FROM tenants WHERE id = ?1")
                .bind(tenant)
                .fetch_optional(&self.reader)
                .await?
                .ok_or_else(|| rows::unknown_tenant(tenant))?;
            rows::settings_from_json(&row.try_get::<String, _>(0)?)
        })
    }

    fn update_tenant_settings<'a>(
        &'a self,
        tenant: &'a str,
        settings: &'a TenantSettings,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let updated = sqlx::query("UPDATE tenants SET settings = ?1 WHERE id = ?2")
                .bind(rows::settings_to_json(settings)?)
                .bind(tenant)
                .execute(&self.writer)
                .await?
                .rows_affected();
            if updated == 0 {
                return Err(rows::unknown_tenant(tenant));
            }
            Ok(())
        })
    }

    fn write<'a>(
        &'a self,
        tenant: &'a str,
        records: &'a [Record],
        all_or_nothing: bool,
    ) -> BoxFuture<'a, Result<Vec<WriteOutcome>>> {
        Box::pin(self.write_batch(tenant, records, all_or_nothing))
    }

    fn delete<'a>(
        &'a self,
        tenant: &'a str,
        record_type: RecordType,
        ids: &'a [String],
    ) -> BoxFuture<'a, Result<u64>> {
        Box::pin(self.delete_ids(tenant, record_type, ids))
    }

    fn export<'a>(
        &'a self,
        tenant: &'a str,
        record_type: RecordType,
        after_id: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<Record>>> {
        Box::pin(self.export_page(tenant, record_type, after_id, limit))
    }

    fn load_versioned<'a>(&'a self, tenant: &'a str) -> BoxFuture<'a, Result<(i64, Dataset)>> {
        Box::pin(self.load(tenant))
    }

    fn data_version<'a>(&'a self, tenant: &'a str) -> BoxFuture<'a, Result<Option<i64>>> {
        Box::pin(async move {
            Ok(sqlx::query_scalar(DATA_VERSION_SQL)
                .bind(tenant)
                .fetch_optional(&self.reader)
                .await?)
        })
    }

    fn create_tenant<'a>(
        &'a self,
        tenant: &'a str,
        settings: &'a TenantSettings,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let created = sqlx::query(
                "INSERT INTO tenants (id, settings, created_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(tenant)
            .bind(rows::settings_to_json(settings)?)
            .bind(rows::now_nanos())
            .execute(&self.writer)
            .await?
            .rows_affected();
            if created == 0 {
                return Err(Error::AlreadyExists(format!(
                    "tenant {tenant:?} already exists"
                )));
            }
            Ok(())
        })
    }

    fn insert_api_key<'a>(&'a self, key: &'a StoredApiKey) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let sql = insert_api_key_sql('?');
            let inserted = sqlx::query(&sql)
                .bind(&key.info.id)
                .bind(&key.info.tenant_id)
                .bind(&key.info.name)
                .bind(&key.salt)
                .bind(&key.hash)
                .bind(key.info.created_at_nanos)
                .bind(key.info.revoked_at_nanos)
                .execute(&self.writer)
                .await?
                .rows_affected();
            if inserted == 0 {
                return Err(rows::unknown_tenant(&key.info.tenant_id));
            }
            Ok(())
        })
    }

    fn api_key<'a>(&'a self, key_id: &'a str) -> BoxFuture<'a, Result<Option<StoredApiKey>>> {
        Box::pin(async move {
            let sql = format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = ?1");
            let row = sqlx::query(&sql)
                .bind(key_id)
                .fetch_optional(&self.reader)
                .await?;
            row.as_ref().map(api_key_from_row).transpose()
        })
    }

    fn api_keys<'a>(&'a self, tenant: &'a str) -> BoxFuture<'a, Result<Vec<ApiKeyInfo>>> {
        Box::pin(async move {
            let exists = sqlx::query("SELECT 1 FROM tenants WHERE id = ?1")
                .bind(tenant)
                .fetch_optional(&self.reader)
                .await?;
            if exists.is_none() {
                return Err(rows::unknown_tenant(tenant));
            }
            let sql = format!(
                "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE tenant_id = ?1 ORDER BY created_at, id"
            );
            sqlx::query(&sql)
                .bind(tenant)
                .fetch_all(&self.reader)
                .await?
                .iter()
                .map(|row| api_key_from_row(row).map(|k| k.info))
                .collect()
        })
    }

    fn revoke_api_key<'a>(
        &'a self,
        key_id: &'a str,
        now_nanos: i64,
    ) -> BoxFuture<'a, Result<Option<ApiKeyInfo>>> {
        Box::pin(async move {
            let sql = format!(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1 \
                 RETURNING {API_KEY_COLUMNS}"
            );
            let row = sqlx::query(&sql)
                .bind(key_id)
                .bind(now_nanos)
                .fetch_optional(&self.writer)
                .await?;
            Ok(row
                .as_ref()
                .map(api_key_from_row)
                .transpose()?
                .map(|k| k.info))
        })
    }
}
