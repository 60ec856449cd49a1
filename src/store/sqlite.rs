//! SQLite backend: the zero-set-up default, one file next to the binary.
//!
//! SQLite allows one writer at a time. Instead of letting writers race for the
//! file lock (and fail with "database is locked" once `busy_timeout` runs
//! out), every write goes through exactly one connection, so writers queue
//! for it in arrival order; reads use a separate pool and, in WAL mode, run
//! alongside the writer on a consistent snapshot.
//!
//! The writer is a synchronous `rusqlite` connection used on a blocking
//! thread: a batch of records is one transaction of cached prepared upserts
//! executed back to back, without a round trip per statement through sqlx's
//! SQLite worker thread (which bounded ingest at about 15k records/s). Reads
//! and migrations stay on sqlx.
//!
//! Every tenant's writes take turns at that one connection, so what a turn
//! does is kept short: the team checks of a batch (cycles, depth, the team
//! limit: up to 100 lookups per team) are worked out before the turn from a
//! read snapshot, and the turn only confirms that the tenant has not changed
//! since.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{CachedStatement, Connection, OptionalExtension, TransactionBehavior};
use sqlx::Connection as _;

use sqlx::sqlite::{
    Sqlite, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions,
    SqliteSynchronous,
};
use tokio::sync::Mutex;

use super::reads::{self, SqlReads};
use super::rows::{self, StoredTeams, TeamTree, TeamTreeGuard, Value};
use super::{
    ApiKeyInfo, BUMP_VERSION_SQL, Changes, DATA_VERSION_SQL, INSERT_API_KEY_SQL, INSERT_TENANT_SQL,
    LoadQueue, PARALLEL_LOAD_ATTEMPTS, PRUNABLE_TOMBSTONES_SQL, PRUNE_TOMBSTONES_SQL, PoolUsage,
    RAISE_PRUNED_VERSION_SQL, REVOKE_API_KEY_SQL, Store, StoreOptions, StoredApiKey,
    UPDATE_SETTINGS_SQL, UPSERT_TOMBSTONE_SQL, WriteOutcome, join_load_parts, load_parts,
    retention_nanos,
};
use crate::domain::{Dataset, Record, RecordType, TenantSettings};
use crate::error::{Error, Result};

/// The SQLite schema (`migrations/sqlite`), embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// How long a connection waits for a lock held by another process before
/// giving up (within this process the single writer makes that moot).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a write waits for its turn on the single writer connection. Large
/// batches queue behind each other, so this is generous.
const WRITE_QUEUE_TIMEOUT: Duration = Duration::from_secs(60);

/// Times a batch with teams has its team checks worked out before its turn
/// at the writer; the attempt after checks them in its turn (see
/// `SqliteStore::write_batch`).
const TEAM_PREDICTION_ATTEMPTS: usize = 3;

/// Read connections: enough for concurrent KPI queries on a small machine.
const READ_CONNECTIONS: u32 = 4;

/// Page cache of the writer connection, in KiB (SQLite's default is 2 MiB).
const WRITER_CACHE_KIB: i64 = 64 * 1024;

/// WAL pages after which a commit checkpoints (SQLite's default is 1000,
/// about 4 MiB): about 40 MiB of WAL between checkpoints.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 10_000;

/// Prepared statements the writer keeps: the 14 upserts and deletes plus the
/// few tenant and key statements, with room to spare.
const WRITER_STATEMENT_CACHE: usize = 64;

/// The SQL of one record table, built once from [`rows::table`].
struct Statements {
    /// Upsert that changes a row only when it writes (see [`upsert_sql`]).
    upsert: String,
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
    Statements {
        upsert: upsert_sql(t, &names),
        delete: format!("DELETE FROM {t} WHERE tenant_id = ?1 AND id = ?2"),
    }
}

/// One atomic statement per record: insert, or replace every column when the
/// version rule allows it. Per record rather than multi-row (as the
/// PostgreSQL backend does): SQLite runs in-process, so there is no round trip
/// to save, and a small cached statement measured about twice as fast as
/// 500-row statements. The statement changes one row when it inserts or
/// updates and none when the version rule skips the update, so "no change"
/// means stale. (That count is what `RETURNING 1` would say, without the
/// temporary table SQLite builds per statement for RETURNING.)
///
/// The last placeholder is the transaction's new data version, recorded as
/// the row's `changed_version` (the change feed).
fn upsert_sql(table: &str, columns: &[&str]) -> String {
    let placeholders: Vec<String> = (1..=columns.len() + 4).map(|i| format!("?{i}")).collect();
    let updates: Vec<String> = std::iter::once("version")
        .chain(columns.iter().copied())
        .chain(std::iter::once("changed_version"))
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    format!(
        "INSERT INTO {table} (tenant_id, id, version, {columns}, changed_version) VALUES ({placeholders}) \
         ON CONFLICT (tenant_id, id) DO UPDATE SET {updates} \
         WHERE excluded.version IS NULL OR {table}.version IS NULL \
         OR excluded.version > {table}.version",
        columns = columns.join(", "),
        placeholders = placeholders.join(", "),
        updates = updates.join(", "),
    )
}

/// The SQLite implementation of [`Store`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// The only connection that writes; writers queue for it (the lock is
    /// fair, so in arrival order).
    writer: Arc<Mutex<Connection>>,
    /// The reads, on connections that only read.
    reads: SqlReads<Sqlite>,
    /// The database file (a full load opens a read connection of its own).
    path: PathBuf,
    /// How long deletions stay in the change feed.
    tombstone_retention: Duration,
    /// Most teams one tenant may have (0: unlimited).
    max_teams_per_tenant: usize,
}

/// A record ready for the writer thread: its column values, owned.
struct EncodedRecord {
    /// Selects the table's statements.
    record_type: RecordType,
    /// Record id.
    id: String,
    /// Record version (`None`: always replaces).
    version: Option<i64>,
    /// Data column values, in [`rows::TableSpec::columns`] order.
    values: Vec<Value>,
    /// The record itself when it is a team, for the team-cycle check.
    team: Option<Record>,
}

impl EncodedRecord {
    fn of(record: &Record) -> Result<Self> {
        Ok(EncodedRecord {
            record_type: record.record_type(),
            id: record.id().to_string(),
            version: record.version(),
            values: rows::encode(record)?,
            team: matches!(record, Record::Team(_)).then(|| record.clone()),
        })
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the database file of a `sqlite:` URL and
    /// applies the embedded migrations.
    ///
    /// In-memory URLs (`sqlite::memory:`, `mode=memory`) are refused: the
    /// separate read and write connections would need a shared cache, whose
    /// table locks fail instead of waiting. Tests use a temporary file.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, StoreOptions::default()).await
    }

    /// [`SqliteStore::connect`] with settings beyond the URL.
    pub async fn connect_with(url: &str, store_options: StoreOptions) -> Result<Self> {
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
        // Migrations run on a connection of their own, closed before the
        // writer opens, so the writer is the only connection that writes.
        let mut migrator = SqliteConnection::connect_with(&options).await?;
        MIGRATOR
            .run(&mut migrator)
            .await
            .map_err(super::migrate_error)?;
        migrator.close().await?;
        let path = options.get_filename().to_path_buf();
        let writer_path = path.clone();
        let writer = tokio::task::spawn_blocking(move || open_writer(&writer_path))
            .await
            .map_err(|e| Error::internal(format!("opening the SQLite writer failed: {e}")))??;
        let reader = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .connect_with(options)
            .await?;
        Ok(SqliteStore {
            writer: Arc::new(Mutex::new(writer)),
            // A read transaction sees one snapshot of every table.
            reads: SqlReads {
                pool: reader,
                begin_snapshot: None,
            },
            path,
            tombstone_retention: store_options.tombstone_retention,
            max_teams_per_tenant: store_options.max_teams_per_tenant,
        })
    }

    /// Runs `write` on the writer connection on a blocking thread, after
    /// waiting (at most [`WRITE_QUEUE_TIMEOUT`]) for the writes queued before.
    /// The connection stays taken until `write` returns, even if the caller
    /// stops waiting, so a started transaction always ends (committed or
    /// rolled back) before the next one begins.
    async fn with_writer<T, F>(&self, write: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let mut conn =
            tokio::time::timeout(WRITE_QUEUE_TIMEOUT, Arc::clone(&self.writer).lock_owned())
                .await
                .map_err(|_| {
                    Error::unavailable(format!(
                        "no turn at the SQLite writer within {} s",
                        WRITE_QUEUE_TIMEOUT.as_secs()
                    ))
                })?;
        tokio::task::spawn_blocking(move || write(&mut conn))
            .await
            .map_err(|e| Error::internal(format!("SQLite write task failed: {e}")))?
    }

    async fn write_batch(
        &self,
        tenant: &str,
        records: &[Record],
        all_or_nothing: bool,
    ) -> Result<Vec<WriteOutcome>> {
        // The writer thread needs owned data; encoding here also keeps that
        // work out of the writer's turn.
        let encoded = Arc::new(
            records
                .iter()
                .map(EncodedRecord::of)
                .collect::<Result<Vec<_>>>()?,
        );
        let max_teams = self.max_teams_per_tenant;
        // The team checks of a batch are worked out before its turn at the
        // writer, from a snapshot of the tenant's teams; in its turn the
        // write only confirms that the snapshot is still current (no write
        // of the tenant came in between) and otherwise tries again. The last
        // attempt checks in its turn, so a tenant whose own concurrent
        // batches keep overtaking each other still gets its write through.
        let teams: Arc<Vec<Record>> = Arc::new(
            records
                .iter()
                .filter(|r| matches!(r, Record::Team(_)))
                .cloned()
                .collect(),
        );
        for attempt in 1..=TEAM_PREDICTION_ATTEMPTS {
            let prediction = if teams.is_empty() || attempt == TEAM_PREDICTION_ATTEMPTS {
                None
            } else {
                self.predict_teams(tenant, &teams).await?
            };
            let tenant = tenant.to_string();
            let encoded = Arc::clone(&encoded);
            let written = self
                .with_writer(move |conn| {
                    write_records(
                        conn,
                        &tenant,
                        &encoded,
                        all_or_nothing,
                        max_teams,
                        prediction.as_ref(),
                    )
                })
                .await?;
            if let Some(outcomes) = written {
                return Ok(outcomes);
            }
        }
        Err(Error::internal(
            "a checked team write was not written".to_string(),
        ))
    }

    /// The outcomes of `teams` (the team records of a batch, in order) as
    /// of the tenant's current data version, worked out on a blocking thread
    /// from one read snapshot (`None`: no such tenant).
    async fn predict_teams(
        &self,
        tenant: &str,
        teams: &Arc<Vec<Record>>,
    ) -> Result<Option<TeamPrediction>> {
        let mut read = self.reads.pool.begin().await?;
        let version: Option<i64> = sqlx::query_scalar(DATA_VERSION_SQL)
            .bind(tenant)
            .fetch_optional(&mut *read)
            .await?;
        let Some(data_version) = version else {
            return Ok(None);
        };
        let stored: StoredTeams =
            sqlx::query_as("SELECT id, parent_team_id, version FROM teams WHERE tenant_id = $1")
                .bind(tenant)
                .fetch_all(&mut *read)
                .await?;
        read.commit().await?;
        let teams = Arc::clone(teams);
        let max_teams = self.max_teams_per_tenant;
        let outcomes = tokio::task::spawn_blocking(move || {
            rows::predict_team_outcomes(stored, &teams, max_teams)
        })
        .await
        .map_err(|e| Error::internal(format!("team check task failed: {e}")))?;
        Ok(Some(TeamPrediction {
            data_version,
            outcomes,
        }))
    }

    async fn delete_ids(
        &self,
        tenant: &str,
        record_type: RecordType,
        ids: &[String],
    ) -> Result<u64> {
        let tenant = tenant.to_string();
        let ids = ids.to_vec();
        let retention = self.tombstone_retention;
        self.with_writer(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some(changed_version) = next_version(&tx, &tenant)? else {
                // No tenant, no records: nothing existed.
                return Ok(0);
            };
            let table = rows::table(record_type).table;
            let now = rows::now_nanos();
            let mut existed = 0;
            {
                let mut delete = tx.prepare_cached(&STATEMENTS[record_type as usize].delete)?;
                let mut tombstone = tx.prepare_cached(UPSERT_TOMBSTONE_SQL)?;
                for id in &ids {
                    if delete.execute((&tenant, id))? > 0 {
                        existed += 1;
                        tombstone.execute((&tenant, table, id, changed_version, now))?;
                    }
                }
            }
            if existed > 0 {
                tx.prepare_cached(BUMP_VERSION_SQL)?.execute([&tenant])?;
                let cutoff = now.saturating_sub(retention_nanos(retention));
                let pruned: Option<i64> = tx
                    .prepare_cached(PRUNABLE_TOMBSTONES_SQL)?
                    .query_row((&tenant, cutoff), |row| row.get(0))?;
                if let Some(pruned) = pruned {
                    tx.prepare_cached(PRUNE_TOMBSTONES_SQL)?
                        .execute((&tenant, cutoff))?;
                    tx.prepare_cached(RAISE_PRUNED_VERSION_SQL)?
                        .execute((pruned, &tenant))?;
                }
            }
            tx.commit()?;
            Ok(existed)
        })
        .await
    }
}

/// Opens the writer connection on the file the migrations just set up, with
/// the same pragmas as the read pool.
fn open_writer(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    // Ingest touches index pages all over the tables; a larger page cache
    // keeps them in the process instead of re-reading them from the OS, and
    // checkpointing less often writes a hot page back once instead of many
    // times (both measured on 1M-record ingests).
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
    conn.set_prepared_statement_cache_capacity(WRITER_STATEMENT_CACHE);
    Ok(conn)
}

/// Every record of `tenant` and its data version, from one snapshot, read
/// by rusqlite on connections of its own (on blocking threads): the rows
/// go straight from SQLite into records, several times faster than through
/// the async driver, which hands each row over from a worker thread.
///
/// The record types are read on parallel threads, each in a read
/// transaction of its own; the parts make one snapshot when every
/// transaction read the same data version of the tenant (every write that
/// changes the tenant raises it). Otherwise the load is tried again, and
/// the last attempt reads everything in one transaction.
fn load_tenant(path: &Path, tenant: &str) -> Result<(i64, Dataset)> {
    let parts = load_parts();
    if parts > 1 {
        for _ in 0..PARALLEL_LOAD_ATTEMPTS {
            if let Some(loaded) = load_tenant_on(path, tenant, parts)? {
                return Ok(loaded);
            }
        }
    }
    load_tenant_on(path, tenant, 1)?
        .ok_or_else(|| Error::internal("a tenant load read two versions in one transaction"))
}

/// Reads the tenant on `threads` threads, each taking the next record type
/// in its own read transaction; `None` when they read different data
/// versions of the tenant.
fn load_tenant_on(path: &Path, tenant: &str, threads: usize) -> Result<Option<(i64, Dataset)>> {
    let queue = LoadQueue::default();
    let read = || -> Result<(Option<i64>, Dataset)> {
        let flags =
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // A read transaction: its first statement starts the snapshot every
        // later statement sees, so the version matches the records.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        let version: Option<i64> = tx
            .query_row(DATA_VERSION_SQL, [tenant], |row| row.get(0))
            .optional()?;
        let mut dataset = Dataset::default();
        while let Some(record_type) = queue.next() {
            let mut statement = tx.prepare(reads::all_rows_sql(record_type))?;
            let mut rows = statement.query([tenant])?;
            while let Some(row) = rows.next()? {
                dataset.push(rows::read_sqlite_record(record_type, row)?);
            }
        }
        tx.commit()?;
        Ok((version, dataset))
    };
    if threads <= 1 {
        return join_load_parts([read()]);
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads).map(|_| scope.spawn(read)).collect();
        join_load_parts(
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))),
        )
    })
}

/// The team outcomes of a batch worked out before its write (see
/// [`rows::predict_team_outcomes`]).
struct TeamPrediction {
    /// The tenant's data version they were worked out at.
    data_version: i64,
    /// One per team record of the batch, in order.
    outcomes: Vec<WriteOutcome>,
}

/// Writes a batch in one transaction (see [`Store::write`]); runs on the
/// writer thread.
///
/// With a `prediction` made at the tenant's current data version, the team
/// records take their predicted outcomes instead of being checked here.
/// `None` (nothing written) when the prediction is out of date: the tenant
/// changed since, or a team write came out otherwise than predicted.
fn write_records(
    conn: &mut Connection,
    tenant: &str,
    records: &[EncodedRecord],
    all_or_nothing: bool,
    max_teams: usize,
    prediction: Option<&TeamPrediction>,
) -> Result<Option<Vec<WriteOutcome>>> {
    // IMMEDIATE takes the write lock up front, so the reads below (tenant,
    // team tree) cannot go stale before the writes. Dropping the transaction
    // on an early return rolls it back.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // The version this transaction will commit, should it change anything;
    // the write lock keeps it ours.
    let changed_version = next_version(&tx, tenant)?.ok_or_else(|| rows::unknown_tenant(tenant))?;
    let mut predicted = match prediction {
        Some(p) if p.data_version + 1 == changed_version => Some(p.outcomes.iter()),
        Some(_) => return Ok(None),
        None => None,
    };
    let mut teams = TeamTreeGuard::new(
        if predicted.is_none() && records.iter().any(|r| r.team.is_some()) {
            load_team_tree(&tx, tenant)?
        } else {
            TeamTree::new()
        },
        max_teams,
    );
    // The upserts of the batch, prepared (or taken from the cache) once each.
    let mut upserts: Vec<Option<CachedStatement<'_>>> = std::iter::repeat_with(|| None)
        .take(RecordType::ALL.len())
        .collect();
    let mut outcomes = Vec::with_capacity(records.len());
    for record in records {
        let expected = match (&record.team, &mut predicted) {
            (Some(_), Some(predicted)) => match predicted.next() {
                Some(rejected @ WriteOutcome::Rejected { .. }) => {
                    outcomes.push(rejected.clone());
                    continue;
                }
                Some(expected) => Some(expected),
                None => return Ok(None),
            },
            (Some(team), None) => {
                if let Some(rejected) = teams.check(team) {
                    outcomes.push(rejected);
                    continue;
                }
                None
            }
            (None, _) => None,
        };
        let upsert = match &mut upserts[record.record_type as usize] {
            Some(statement) => statement,
            slot => {
                slot.insert(tx.prepare_cached(&STATEMENTS[record.record_type as usize].upsert)?)
            }
        };
        let outcome = if write_one(upsert, tenant, record, changed_version)? {
            if let (Some(team), None) = (&record.team, &predicted) {
                teams.applied(team);
            }
            WriteOutcome::Accepted
        } else {
            WriteOutcome::Stale
        };
        if expected.is_some_and(|expected| *expected != outcome) {
            return Ok(None);
        }
        outcomes.push(outcome);
    }
    drop(upserts);
    let rejected = outcomes
        .iter()
        .any(|o| matches!(o, WriteOutcome::Rejected { .. }));
    if all_or_nothing && rejected {
        tx.rollback()?;
    } else {
        if outcomes.contains(&WriteOutcome::Accepted) {
            tx.prepare_cached(BUMP_VERSION_SQL)?.execute([tenant])?;
        }
        tx.commit()?;
    }
    Ok(Some(outcomes))
}

/// The data version the current write transaction commits if it changes
/// anything (`None`: no such tenant).
fn next_version(conn: &Connection, tenant: &str) -> Result<Option<i64>> {
    let version: Option<i64> = conn
        .prepare_cached(DATA_VERSION_SQL)?
        .query_row([tenant], |row| row.get(0))
        .optional()?;
    Ok(version.map(|v| v + 1))
}

fn load_team_tree(conn: &Connection, tenant: &str) -> Result<TeamTree> {
    let mut select =
        conn.prepare_cached("SELECT id, parent_team_id FROM teams WHERE tenant_id = ?1")?;
    let tree = select
        .query_map([tenant], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<TeamTree>>()?;
    Ok(tree)
}

/// Writes one record with its table's upsert; `false` when it was stale.
fn write_one(
    upsert: &mut CachedStatement<'_>,
    tenant: &str,
    record: &EncodedRecord,
    changed_version: i64,
) -> Result<bool> {
    upsert.raw_bind_parameter(1, tenant)?;
    upsert.raw_bind_parameter(2, &record.id)?;
    upsert.raw_bind_parameter(3, record.version)?;
    for (i, value) in record.values.iter().enumerate() {
        match value {
            Value::Text(t) => upsert.raw_bind_parameter(i + 4, t.as_deref())?,
            Value::Int(n) => upsert.raw_bind_parameter(i + 4, n)?,
        }
    }
    upsert.raw_bind_parameter(record.values.len() + 4, changed_version)?;
    // One row changed when inserted or updated, none when stale.
    Ok(upsert.raw_execute()? > 0)
}

/// Reads a row of [`API_KEY_COLUMNS`] on the writer connection.
fn api_key_info_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ApiKeyInfo> {
    Ok(ApiKeyInfo {
        id: row.get(0)?,
        tenant_id: row.get(1)?,
        name: row.get(2)?,
        created_at_nanos: row.get(3)?,
        revoked_at_nanos: row.get(4)?,
    })
}

/// Errors of the writer connection, mapped like sqlx's SQLite errors (see
/// `crate::error`): a database that stays busy or locked past the busy
/// timeout is UNAVAILABLE, anything else is internal (details logged only).
impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Self {
        match err.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                Error::Unavailable(err.into())
            }
            _ => Error::Internal(err.into()),
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<()> {
        self.reads.ping().await
    }

    fn pool_usage(&self) -> Vec<PoolUsage> {
        // The writer is one connection, always open: lent out while a write
        // holds it.
        let writing = u32::from(self.writer.try_lock().is_err());
        vec![
            PoolUsage::of("read", &self.reads.pool),
            PoolUsage {
                pool: "write",
                idle: 1 - writing,
                in_use: writing,
                max: 1,
            },
        ]
    }

    async fn insert_tenant(&self, tenant: &str, settings: &TenantSettings) -> Result<bool> {
        let settings = rows::settings_to_json(settings)?;
        let tenant = tenant.to_string();
        self.with_writer(move |conn| {
            let inserted = conn.prepare_cached(INSERT_TENANT_SQL)?.execute((
                &tenant,
                &settings,
                rows::now_nanos(),
            ))?;
            Ok(inserted > 0)
        })
        .await
    }

    async fn tenant_settings(&self, tenant: &str) -> Result<TenantSettings> {
        self.reads.tenant_settings(tenant).await
    }

    async fn update_tenant_settings(&self, tenant: &str, settings: &TenantSettings) -> Result<()> {
        let settings = rows::settings_to_json(settings)?;
        let id = tenant.to_string();
        let updated = self
            .with_writer(move |conn| {
                Ok(conn
                    .prepare_cached(UPDATE_SETTINGS_SQL)?
                    .execute((&settings, &id))?)
            })
            .await?;
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

    async fn load_versioned(&self, tenant: &str) -> Result<(i64, Dataset)> {
        let (path, tenant) = (self.path.clone(), tenant.to_string());
        tokio::task::spawn_blocking(move || load_tenant(&path, &tenant))
            .await
            .map_err(|e| Error::internal(format!("SQLite load task failed: {e}")))?
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
        let key_row = key.clone();
        let inserted = self
            .with_writer(move |conn| {
                let StoredApiKey { info, salt, hash } = &key_row;
                Ok(conn.prepare_cached(INSERT_API_KEY_SQL)?.execute((
                    &info.id,
                    &info.tenant_id,
                    &info.name,
                    salt,
                    hash,
                    info.created_at_nanos,
                    info.revoked_at_nanos,
                ))?)
            })
            .await?;
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
        let key_id = key_id.to_string();
        self.with_writer(move |conn| {
            Ok(conn
                .prepare_cached(&REVOKE_API_KEY_SQL)?
                .query_row((now_nanos, &key_id), api_key_info_from_row)
                .optional()?)
        })
        .await
    }
}
