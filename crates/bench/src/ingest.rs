//! The ingest step: stream the generated records to a running server over
//! `StreamIngest`, and load the same rows with the database's fastest path
//! (the baseline our throughput is compared with).
//!
//! The baselines reuse the real migrations and the store's row mapping
//! (`salesmetrics::store::rows`), so they write exactly the tables, columns
//! and indexes the server writes into:
//!
//! * SQLite: one transaction of prepared plain `INSERT`s into a scratch file
//!   through `rusqlite`, with the server writer's pragmas (WAL,
//!   `synchronous = NORMAL`, 64 MiB page cache).
//! * PostgreSQL: `COPY … FROM STDIN` (text format) per table into a scratch
//!   database.
//!
//! Neither baseline validates, upserts or checks versions; that is the point:
//! they bound what the database itself can take.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use sqlx::Connection;
use tonic::transport::{Channel, Endpoint};

use salesmetrics::domain::{Record, RecordType};
use salesmetrics::proto::v1;
use salesmetrics::store::rows::{self, Value};

/// Largest gRPC message the benchmark clients accept.
pub const CLIENT_MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// The tenant the benchmark writes as (the server runs without authentication).
pub const TENANT: &str = salesmetrics::auth::DEFAULT_TENANT;

/// What a streamed ingest did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IngestOutcome {
    /// Records sent (all of them unless the time limit stopped the stream).
    pub records_sent: usize,
    /// Batches acknowledged.
    pub batches: usize,
    /// Records the server accepted.
    pub accepted: u64,
    /// Records skipped as stale.
    pub stale: u64,
    /// Records rejected (the generator makes none; anything here is a bug).
    pub rejected: u64,
    /// The first rejection reason, if any, to find the bug.
    pub first_rejection: Option<String>,
    /// Wall-clock seconds from the first batch sent to the last acknowledgement.
    pub seconds: f64,
    /// Acknowledged records per second.
    pub records_per_second: f64,
    /// False when the time limit stopped the stream before every record was sent.
    pub complete: bool,
}

/// What a baseline load did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BaselineOutcome {
    /// How the rows were loaded, in words.
    pub method: String,
    /// Rows loaded.
    pub rows: usize,
    /// Wall-clock seconds of the load (conversion to rows included).
    pub seconds: f64,
    /// Rows per second.
    pub rows_per_second: f64,
}

/// Connects a gRPC channel to `endpoint` (`http://127.0.0.1:PORT`).
pub async fn connect(endpoint: &str) -> anyhow::Result<Channel> {
    Endpoint::from_shared(endpoint.to_string())
        .context("endpoint")?
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .with_context(|| format!("cannot connect to {endpoint}"))
}

/// Streams `records` to the server at `endpoint` in batches of `batch_size`
/// over one `StreamIngest` call, and waits for every acknowledgement. Stops
/// sending when `time_limit` has passed (the outcome then says incomplete).
pub async fn stream_ingest(
    endpoint: &str,
    records: Arc<Vec<v1::Record>>,
    batch_size: usize,
    time_limit: Duration,
) -> anyhow::Result<IngestOutcome> {
    let batch_size = batch_size.max(1);
    let mut client = v1::ingest_service_client::IngestServiceClient::new(connect(endpoint).await?)
        .max_decoding_message_size(CLIENT_MAX_MESSAGE_BYTES)
        .max_encoding_message_size(CLIENT_MAX_MESSAGE_BYTES);
    let batches = records.len().div_ceil(batch_size);
    let started = Instant::now();
    let deadline = started + time_limit;
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sent_counter = sent.clone();
    // Batches are built lazily, so at most the in-flight ones are copied;
    // HTTP/2 flow control and the server's in-flight bound pace the sender.
    let outbound = futures::stream::iter(0..batches)
        .take_while(move |_| futures::future::ready(Instant::now() < deadline))
        .map(move |batch| {
            let chunk = &records[batch * batch_size..((batch + 1) * batch_size).min(records.len())];
            sent_counter.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed);
            v1::StreamIngestRequest {
                sequence: batch as i64,
                records: chunk.to_vec(),
                all_or_nothing: false,
            }
        });
    let mut inbound = client
        .stream_ingest(outbound)
        .await
        .context("StreamIngest")?
        .into_inner();
    let mut outcome = IngestOutcome {
        records_sent: 0,
        batches: 0,
        accepted: 0,
        stale: 0,
        rejected: 0,
        first_rejection: None,
        seconds: 0.0,
        records_per_second: 0.0,
        complete: false,
    };
    // The acknowledgements may lag the deadline by the in-flight batches; allow a minute.
    let ack_deadline = deadline + Duration::from_secs(60);
    loop {
        let next = tokio::time::timeout_at(ack_deadline.into(), inbound.message())
            .await
            .context("timed out waiting for ingest acknowledgements")?
            .context("StreamIngest acknowledgement")?;
        let Some(ack) = next else { break };
        outcome.batches += 1;
        if let Some(result) = ack.result {
            outcome.accepted += result.accepted_count.max(0) as u64;
            outcome.stale += result.stale_count.max(0) as u64;
            outcome.rejected += result.rejected_count.max(0) as u64;
            if outcome.first_rejection.is_none() {
                outcome.first_rejection = result
                    .results
                    .iter()
                    .find(|r| r.outcome == v1::RecordOutcome::Rejected as i32)
                    .map(|r| format!("{} {}: {} ({})", r.index, r.id, r.reason, r.field_path));
            }
        }
    }
    outcome.seconds = started.elapsed().as_secs_f64();
    outcome.records_sent = sent.load(std::sync::atomic::Ordering::Relaxed);
    outcome.complete = outcome.batches == batches;
    outcome.records_per_second =
        (outcome.accepted + outcome.stale + outcome.rejected) as f64 / outcome.seconds.max(1e-9);
    Ok(outcome)
}

/// Loads `records` into a new SQLite file at `path` (schema from the real
/// migrations) in one transaction of prepared inserts, and times it.
///
/// The inserts run on a synchronous `rusqlite` connection, SQLite's fastest
/// path from Rust (no per-statement hop to another thread), so the baseline
/// bounds what the file itself can take. The load blocks the calling thread
/// for its duration; nothing else of the benchmark runs meanwhile.
pub async fn sqlite_baseline(
    path: &Path,
    records: &[v1::Record],
) -> anyhow::Result<BaselineOutcome> {
    use sqlx::sqlite::{
        SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous,
    };
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal);
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .context("open the SQLite baseline file")?;
    salesmetrics::store::sqlite::MIGRATOR
        .run(&mut conn)
        .await
        .context("migrate the SQLite baseline file")?;
    conn.close().await?;
    let statements: Vec<String> = RecordType::ALL
        .iter()
        .map(|rt| {
            let table = rows::table(*rt);
            let placeholders: Vec<String> = (1..=table.columns.len() + 3)
                .map(|i| format!("?{i}"))
                .collect();
            format!(
                "INSERT INTO {} (tenant_id, id, version, {}) VALUES ({})",
                table.table,
                column_list(table),
                placeholders.join(", ")
            )
        })
        .collect();
    let records = domain_records(records)?;
    let mut conn = rusqlite::Connection::open(path).context("open the SQLite baseline file")?;
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "cache_size", -64 * 1024)?;
    let started = Instant::now();
    let tx = conn.transaction()?;
    {
        let mut prepared = statements
            .iter()
            .map(|sql| tx.prepare(sql))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for record in &records {
            let insert = &mut prepared[record.record_type() as usize];
            insert.raw_bind_parameter(1, TENANT)?;
            insert.raw_bind_parameter(2, record.id())?;
            insert.raw_bind_parameter(3, None::<i64>)?;
            for (i, value) in rows::encode(record)?.iter().enumerate() {
                match value {
                    Value::Int(v) => insert.raw_bind_parameter(i + 4, v)?,
                    Value::Text(v) => insert.raw_bind_parameter(i + 4, v.as_deref())?,
                }
            }
            insert.raw_execute().context("baseline insert")?;
        }
    }
    tx.commit()?;
    let seconds = started.elapsed().as_secs_f64();
    conn.close().map_err(|(_, e)| e)?;
    Ok(BaselineOutcome {
        method: "SQLite: one transaction of prepared INSERTs via rusqlite \
                 (WAL, synchronous=NORMAL, 64 MiB cache)"
            .into(),
        rows: records.len(),
        seconds,
        rows_per_second: records.len() as f64 / seconds.max(1e-9),
    })
}

/// Loads `records` into the empty PostgreSQL database at `url` (schema from
/// the real migrations) with one `COPY … FROM STDIN` per table, and times it.
pub async fn postgres_baseline(
    url: &str,
    records: &[v1::Record],
) -> anyhow::Result<BaselineOutcome> {
    let mut conn = sqlx::postgres::PgConnection::connect(url)
        .await
        .context("connect to the PostgreSQL baseline database")?;
    salesmetrics::store::postgres::MIGRATOR
        .run(&mut conn)
        .await
        .context("migrate the PostgreSQL baseline database")?;
    let records = domain_records(records)?;
    let started = Instant::now();
    let mut by_table: Vec<Vec<&Record>> = vec![Vec::new(); RecordType::ALL.len()];
    for record in &records {
        by_table[record.record_type() as usize].push(record);
    }
    for (record_type, table_rows) in RecordType::ALL.iter().zip(&by_table) {
        if table_rows.is_empty() {
            continue;
        }
        let table = rows::table(*record_type);
        let statement = format!(
            "COPY {} (tenant_id, id, version, {}) FROM STDIN",
            table.table,
            column_list(table)
        );
        let mut copy = conn.copy_in_raw(&statement).await.context("COPY")?;
        let mut buffer = Vec::with_capacity(1 << 20);
        for record in table_rows {
            buffer.extend_from_slice(TENANT.as_bytes());
            buffer.push(b'\t');
            copy_text(&mut buffer, record.id());
            buffer.extend_from_slice(b"\t\\N");
            for value in rows::encode(record)? {
                buffer.push(b'\t');
                match value {
                    Value::Int(Some(v)) => buffer.extend_from_slice(v.to_string().as_bytes()),
                    Value::Text(Some(v)) => copy_text(&mut buffer, &v),
                    Value::Int(None) | Value::Text(None) => buffer.extend_from_slice(b"\\N"),
                }
            }
            buffer.push(b'\n');
            if buffer.len() >= 1 << 20 {
                copy.send(std::mem::take(&mut buffer)).await?;
                buffer.reserve(1 << 20);
            }
        }
        if !buffer.is_empty() {
            copy.send(buffer).await?;
        }
        copy.finish().await.context("COPY finish")?;
    }
    let seconds = started.elapsed().as_secs_f64();
    conn.close().await?;
    Ok(BaselineOutcome {
        method: "PostgreSQL: COPY FROM STDIN (text) per table".into(),
        rows: records.len(),
        seconds,
        rows_per_second: records.len() as f64 / seconds.max(1e-9),
    })
}

/// Appends `text` escaped for COPY's text format.
fn copy_text(buffer: &mut Vec<u8>, text: &str) {
    for byte in text.bytes() {
        match byte {
            b'\\' => buffer.extend_from_slice(b"\\\\"),
            b'\t' => buffer.extend_from_slice(b"\\t"),
            b'\n' => buffer.extend_from_slice(b"\\n"),
            b'\r' => buffer.extend_from_slice(b"\\r"),
            other => buffer.push(other),
        }
    }
}

/// The generated records as validated domain records, converted by the
/// service's own conversion (outside the timed load: the baselines measure
/// the database, not validation).
fn domain_records(records: &[v1::Record]) -> anyhow::Result<Vec<Record>> {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            salesmetrics::api::convert::record_from_proto(i, r.clone(), super::generate::CURRENCY)
                .map_err(|v| anyhow::anyhow!("generated record {}: {}", v.field, v.reason))
        })
        .collect()
}

/// A table's data columns, comma-separated, in the order [`rows::encode`] yields them.
fn column_list(table: &rows::TableSpec) -> String {
    table
        .columns
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}
