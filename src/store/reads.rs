//! The read paths both backends share. The two schemas are column for column
//! identical and both sqlx drivers take `$N` placeholders, so every read —
//! settings, data version, export pages, the whole dataset, API keys — is one
//! piece of SQL and one piece of decoding, written once for any sqlx
//! database. A backend only says which pool it reads from and how a read
//! transaction starts (PostgreSQL needs REPEATABLE READ for one snapshot
//! across statements; a SQLite read transaction is one snapshot already).

use std::sync::LazyLock;

use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use super::rows::{self, read_record};
use super::{
    API_KEY_COLUMNS, ApiKeyInfo, Changes, DATA_VERSION_SQL, MOST_WRITTEN_TENANTS_SQL, StoredApiKey,
    api_key_from_row,
};
use crate::domain::{Record, RecordType, TenantSettings};
use crate::error::{Error, Result};

/// `SELECT id, version, <data columns> FROM <table>` of one record type,
/// the row layout every record read uses.
pub(super) fn select_sql(record_type: RecordType) -> &'static str {
    &STATEMENTS[record_type as usize].select
}

/// The SQL that reads the rows of one record type of tenant `$1` written
/// after data version `$2` (the change feed's statement).
pub(super) fn changed_rows_sql(record_type: RecordType) -> &'static str {
    &STATEMENTS[record_type as usize].changed
}

/// The read SQL of one record table, built once from [`rows::table`].
struct ReadStatements {
    /// `SELECT id, version, <data columns> FROM <table>`: what every read
    /// below selects.
    select: String,
    /// `id > $2 ORDER BY id LIMIT $3`, for export.
    page: String,
    /// Every row of the tenant, ordered by id.
    all: String,
    /// The rows written after data version `$2` (the change feed), found
    /// through the (tenant_id, changed_version) index. No `ORDER BY id`:
    /// with it SQLite walks the primary key through every row of the
    /// tenant to save a sort, which made each catch-up read whole tables;
    /// the reader sorts the few rows instead.
    changed: String,
}

/// Read statements per record type, indexed by `RecordType as usize`.
static STATEMENTS: LazyLock<Vec<ReadStatements>> = LazyLock::new(|| {
    RecordType::ALL
        .iter()
        .map(|record_type| {
            let spec = rows::table(*record_type);
            let names: Vec<&str> = spec.columns.iter().map(|(name, _)| *name).collect();
            let select = format!(
                "SELECT id, version, {} FROM {}",
                names.join(", "),
                spec.table
            );
            ReadStatements {
                page: format!("{select} WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3"),
                all: format!("{select} WHERE tenant_id = $1 ORDER BY id"),
                changed: format!("{select} WHERE tenant_id = $1 AND changed_version > $2"),
                select,
            }
        })
        .collect()
});

/// The SQL that reads every row of one record type of tenant `$1`, ordered
/// by id (the full load's statement, for a backend that loads otherwise).
pub(super) fn all_rows_sql(record_type: RecordType) -> &'static str {
    &STATEMENTS[record_type as usize].all
}

/// The shared reads over one backend's pool.
#[derive(Debug)]
pub(super) struct SqlReads<DB: Database> {
    /// The pool reads run on.
    pub pool: Pool<DB>,
    /// The statement that opens a read transaction seeing one snapshot
    /// (`None`: the driver's plain `BEGIN`).
    pub begin_snapshot: Option<&'static str>,
}

impl<DB: Database> Clone for SqlReads<DB> {
    fn clone(&self) -> Self {
        SqlReads {
            pool: self.pool.clone(),
            begin_snapshot: self.begin_snapshot,
        }
    }
}

impl<DB> SqlReads<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'r> &'r str: Decode<'r, DB> + Type<DB>,
    for<'r> i64: Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// The tenant's settings; NOT_FOUND if there is no such tenant.
    pub async fn tenant_settings(&self, tenant: &str) -> Result<TenantSettings> {
        let row = sqlx::query("SELECT settings FROM tenants WHERE id = $1")
            .bind(tenant)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| rows::unknown_tenant(tenant))?;
        rows::settings_from_json(&row.try_get::<String, _>(0)?)
    }

    /// The tenant's data version (`None` for an unknown tenant).
    pub async fn data_version(&self, tenant: &str) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(DATA_VERSION_SQL)
            .bind(tenant)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Up to `limit` tenants with records, the most written first.
    pub async fn most_written_tenants(&self, limit: usize) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(MOST_WRITTEN_TENANTS_SQL)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?)
    }

    /// Up to `limit` records of a type with id > `after_id`, in id order.
    pub async fn export(
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
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| read_record(record_type, row))
            .collect()
    }

    /// What changed after data version `since`, in one snapshot; `None`
    /// when tombstones after `since` may have been pruned.
    pub async fn changes_since(&self, tenant: &str, since: i64) -> Result<Option<Changes>> {
        let mut tx = self.begin().await?;
        // First statement: the snapshot starts here, so the version matches
        // the changes read after it.
        let Some(row) = sqlx::query(
            "SELECT data_version, tombstones_pruned_version FROM tenants WHERE id = $1",
        )
        .bind(tenant)
        .fetch_optional(&mut *tx)
        .await?
        else {
            // No tenant: no records, and nothing changed.
            return Ok(Some(Changes::default()));
        };
        let version: i64 = row.try_get(0)?;
        let pruned: i64 = row.try_get(1)?;
        if since < pruned {
            return Ok(None);
        }
        let mut changes = Changes {
            version,
            ..Changes::default()
        };
        if since >= version {
            return Ok(Some(changes));
        }
        let deleted = sqlx::query(
            "SELECT record_table, id FROM tombstones WHERE tenant_id = $1 AND changed_version > $2",
        )
        .bind(tenant)
        .bind(since)
        .fetch_all(&mut *tx)
        .await?;
        for row in &deleted {
            let table: String = row.try_get(0)?;
            let record_type = RecordType::ALL
                .into_iter()
                .find(|t| rows::table(*t).table == table)
                .ok_or_else(|| Error::internal(format!("tombstone of unknown table {table}")))?;
            changes.deleted.push((record_type, row.try_get(1)?));
        }
        for record_type in RecordType::ALL {
            let rows = sqlx::query(changed_rows_sql(record_type))
                .bind(tenant)
                .bind(since)
                .fetch_all(&mut *tx)
                .await?;
            let mut upserts = rows
                .iter()
                .map(|row| read_record(record_type, row))
                .collect::<Result<Vec<_>>>()?;
            upserts.sort_unstable_by(|a, b| a.id().cmp(b.id()));
            changes.upserts.append(&mut upserts);
        }
        tx.commit().await?;
        Ok(Some(changes))
    }

    /// Opens a read transaction that sees one snapshot of every table.
    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, DB>> {
        Ok(match self.begin_snapshot {
            Some(statement) => self.pool.begin_with(statement).await?,
            None => self.pool.begin().await?,
        })
    }

    /// The key with this id, revoked or not.
    pub async fn api_key(&self, key_id: &str) -> Result<Option<StoredApiKey>> {
        let sql = format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(key_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(api_key_from_row).transpose()
    }

    /// A tenant's keys, oldest first; NOT_FOUND if the tenant does not exist.
    pub async fn api_keys(&self, tenant: &str) -> Result<Vec<ApiKeyInfo>> {
        let exists = sqlx::query("SELECT 1 FROM tenants WHERE id = $1")
            .bind(tenant)
            .fetch_optional(&self.pool)
            .await?;
        if exists.is_none() {
            return Err(rows::unknown_tenant(tenant));
        }
        let sql = format!(
            "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, id"
        );
        sqlx::query(&sql)
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| api_key_from_row(row).map(|k| k.info))
            .collect()
    }
}
