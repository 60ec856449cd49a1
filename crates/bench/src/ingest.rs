//! The ingest step: stream the generated records to a running server over
//! `StreamIngest`, and load the same rows with the database's fastest path
//! (the baseline our throughput is compared with).
//!
//! The baselines reuse the real migrations, so they write into exactly the
//! tables and indexes the server writes into:
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

use salesmetrics::proto::v1::{self, record::Record as Kind};

use super::generate::kind_name;

/// Largest gRPC message the benchmark clients accept.
pub const CLIENT_MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// The tenant the benchmark writes as (the server runs without authentication).
pub const TENANT: &str = salesmetrics::api::DEFAULT_TENANT;

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
    sqlx::migrate!("../../migrations/sqlite")
        .run(&mut conn)
        .await
        .context("migrate the SQLite baseline file")?;
    conn.close().await?;
    let statements: Vec<String> = TABLES
        .iter()
        .map(|table| {
            let placeholders: Vec<String> = (1..=table.columns.len() + 3)
                .map(|i| format!("?{i}"))
                .collect();
            format!(
                "INSERT INTO {} (tenant_id, id, version, {}) VALUES ({})",
                table.name,
                table.columns.join(", "),
                placeholders.join(", ")
            )
        })
        .collect();
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
        for record in records {
            let (table, id, values) = row(record);
            let insert = &mut prepared[table];
            insert.raw_bind_parameter(1, TENANT)?;
            insert.raw_bind_parameter(2, id)?;
            insert.raw_bind_parameter(3, None::<i64>)?;
            for (i, value) in values.iter().enumerate() {
                match value {
                    Value::Int(v) => insert.raw_bind_parameter(i + 4, v)?,
                    Value::Text(v) => insert.raw_bind_parameter(i + 4, v)?,
                    Value::Owned(v) => insert.raw_bind_parameter(i + 4, v)?,
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
    sqlx::migrate!("../../migrations/postgres")
        .run(&mut conn)
        .await
        .context("migrate the PostgreSQL baseline database")?;
    let started = Instant::now();
    let mut by_table: Vec<Vec<&v1::Record>> = vec![Vec::new(); TABLES.len()];
    for record in records {
        by_table[table_of(record)].push(record);
    }
    for (table, rows) in TABLES.iter().zip(&by_table) {
        if rows.is_empty() {
            continue;
        }
        let statement = format!(
            "COPY {} (tenant_id, id, version, {}) FROM STDIN",
            table.name,
            table.columns.join(", ")
        );
        let mut copy = conn.copy_in_raw(&statement).await.context("COPY")?;
        let mut buffer = Vec::with_capacity(1 << 20);
        for record in rows {
            let (_, id, values) = row(record);
            buffer.extend_from_slice(TENANT.as_bytes());
            buffer.push(b'\t');
            copy_text(&mut buffer, id);
            buffer.extend_from_slice(b"\t\\N");
            for value in values {
                buffer.push(b'\t');
                match value {
                    Value::Int(Some(v)) => buffer.extend_from_slice(v.to_string().as_bytes()),
                    Value::Text(Some(v)) => copy_text(&mut buffer, v),
                    Value::Owned(v) => copy_text(&mut buffer, &v),
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

/// One record table of the migrations: its name and its columns after
/// `tenant_id, id, version`, in the order [`row`] yields values.
struct Table {
    name: &'static str,
    columns: &'static [&'static str],
}

/// The record tables, indexed as [`table_of`] returns.
const TABLES: [Table; 14] = [
    Table {
        name: "teams",
        columns: &["name", "parent_team_id"],
    },
    Table {
        name: "team_memberships",
        columns: &["rep_id", "team_id", "effective_at"],
    },
    Table {
        name: "reps",
        columns: &["name", "email"],
    },
    Table {
        name: "customers",
        columns: &[
            "acquired_at",
            "churned_at",
            "owner_rep_id",
            "source",
            "name",
        ],
    },
    Table {
        name: "leads",
        columns: &[
            "source",
            "created_at",
            "owner_rep_id",
            "first_response_at",
            "converted_at",
            "customer_id",
        ],
    },
    Table {
        name: "deals",
        columns: &[
            "amount",
            "created_at",
            "status",
            "closed_at",
            "stage",
            "owner_rep_id",
            "customer_id",
            "lead_id",
        ],
    },
    Table {
        name: "deal_stage_changes",
        columns: &["deal_id", "stage", "entered_at"],
    },
    Table {
        name: "orders",
        columns: &[
            "amount",
            "ordered_at",
            "kind",
            "customer_id",
            "rep_id",
            "deal_id",
        ],
    },
    Table {
        name: "subscription_changes",
        columns: &["subscription_id", "customer_id", "mrr", "effective_at"],
    },
    Table {
        name: "activities",
        columns: &[
            "rep_id",
            "activity_type",
            "occurred_at",
            "duration_seconds",
            "lead_id",
            "deal_id",
            "customer_id",
        ],
    },
    Table {
        name: "inquiries",
        columns: &[
            "channel",
            "received_at",
            "first_response_at",
            "customer_id",
            "rep_id",
        ],
    },
    Table {
        name: "csat_responses",
        columns: &["score", "responded_at", "customer_id", "rep_id"],
    },
    Table {
        name: "targets",
        columns: &[
            "metric",
            "value",
            "start_date",
            "end_date",
            "scope_kind",
            "scope_id",
        ],
    },
    Table {
        name: "spends",
        columns: &["category", "amount", "start_date", "end_date", "team_id"],
    },
];

/// A column value of a baseline row.
enum Value<'a> {
    /// INTEGER / BIGINT, NULL when `None`.
    Int(Option<i64>),
    /// TEXT, NULL when `None`.
    Text(Option<&'a str>),
    /// TEXT built for the row (dates).
    Owned(String),
}

fn table_of(record: &v1::Record) -> usize {
    match &record.record {
        Some(Kind::Team(_)) => 0,
        Some(Kind::TeamMembership(_)) => 1,
        Some(Kind::Rep(_)) => 2,
        Some(Kind::Customer(_)) => 3,
        Some(Kind::Lead(_)) => 4,
        Some(Kind::Deal(_)) => 5,
        Some(Kind::DealStageChange(_)) => 6,
        Some(Kind::Order(_)) => 7,
        Some(Kind::SubscriptionChange(_)) => 8,
        Some(Kind::Activity(_)) => 9,
        Some(Kind::Inquiry(_)) => 10,
        Some(Kind::CsatResponse(_)) => 11,
        Some(Kind::Target(_)) => 12,
        Some(Kind::Spend(_)) => 13,
        None => panic!(
            "the generator makes no empty records ({})",
            kind_name(record)
        ),
    }
}

fn nanos(t: &Option<prost_types::Timestamp>) -> Option<i64> {
    t.as_ref()
        .map(|t| t.seconds * 1_000_000_000 + i64::from(t.nanos))
}

fn text(s: &str) -> Value<'_> {
    Value::Text((!s.is_empty()).then_some(s))
}

fn instant(t: &Option<prost_types::Timestamp>) -> Value<'static> {
    Value::Int(nanos(t))
}

fn amount(m: &Option<v1::Money>) -> Value<'static> {
    Value::Int(Some(m.as_ref().map_or(0, |m| m.minor_units)))
}

/// Dates as the store keeps them: `YYYY-MM-DD`.
fn iso_date(d: &Option<v1::Date>) -> Value<'static> {
    let d = d.unwrap_or_default();
    Value::Owned(format!("{:04}-{:02}-{:02}", d.year, d.month, d.day))
}

fn enum_text(s: &'static str) -> Value<'static> {
    Value::Text(Some(s))
}

/// A record as (table index, id, values of the table's columns).
fn row(record: &v1::Record) -> (usize, &str, Vec<Value<'_>>) {
    let table = table_of(record);
    match record.record.as_ref().expect("non-empty record") {
        Kind::Team(r) => (table, &r.id, vec![text(&r.name), text(&r.parent_team_id)]),
        Kind::TeamMembership(r) => (
            table,
            &r.id,
            vec![text(&r.rep_id), text(&r.team_id), instant(&r.effective_at)],
        ),
        Kind::Rep(r) => (table, &r.id, vec![text(&r.name), text(&r.email)]),
        Kind::Customer(r) => (
            table,
            &r.id,
            vec![
                instant(&r.acquired_at),
                instant(&r.churned_at),
                text(&r.owner_rep_id),
                text(&r.source),
                text(&r.name),
            ],
        ),
        Kind::Lead(r) => (
            table,
            &r.id,
            vec![
                text(&r.source),
                instant(&r.created_at),
                text(&r.owner_rep_id),
                instant(&r.first_response_at),
                instant(&r.converted_at),
                text(&r.customer_id),
            ],
        ),
        Kind::Deal(r) => {
            let status = match v1::DealStatus::try_from(r.status) {
                Ok(v1::DealStatus::Won) => "WON",
                Ok(v1::DealStatus::Lost) => "LOST",
                _ => "OPEN",
            };
            (
                table,
                &r.id,
                vec![
                    amount(&r.amount),
                    instant(&r.created_at),
                    enum_text(status),
                    instant(&r.closed_at),
                    text(&r.stage),
                    text(&r.owner_rep_id),
                    text(&r.customer_id),
                    text(&r.lead_id),
                ],
            )
        }
        Kind::DealStageChange(r) => (
            table,
            &r.id,
            vec![text(&r.deal_id), text(&r.stage), instant(&r.entered_at)],
        ),
        Kind::Order(r) => {
            let kind = match v1::OrderKind::try_from(r.kind) {
                Ok(v1::OrderKind::Upsell) => "UPSELL",
                Ok(v1::OrderKind::CrossSell) => "CROSS_SELL",
                Ok(v1::OrderKind::Renewal) => "RENEWAL",
                _ => "NEW",
            };
            (
                table,
                &r.id,
                vec![
                    amount(&r.amount),
                    instant(&r.ordered_at),
                    enum_text(kind),
                    text(&r.customer_id),
                    text(&r.rep_id),
                    text(&r.deal_id),
                ],
            )
        }
        Kind::SubscriptionChange(r) => (
            table,
            &r.id,
            vec![
                text(&r.subscription_id),
                text(&r.customer_id),
                amount(&r.mrr),
                instant(&r.effective_at),
            ],
        ),
        Kind::Activity(r) => {
            let activity_type = match v1::ActivityType::try_from(r.r#type) {
                Ok(v1::ActivityType::Email) => "EMAIL",
                Ok(v1::ActivityType::Meeting) => "MEETING",
                Ok(v1::ActivityType::FollowUp) => "FOLLOW_UP",
                Ok(v1::ActivityType::Proposal) => "PROPOSAL",
                Ok(v1::ActivityType::Demo) => "DEMO",
                Ok(v1::ActivityType::NetworkingEvent) => "NETWORKING_EVENT",
                Ok(v1::ActivityType::Social) => "SOCIAL",
                _ => "CALL",
            };
            (
                table,
                &r.id,
                vec![
                    text(&r.rep_id),
                    enum_text(activity_type),
                    instant(&r.occurred_at),
                    Value::Int(r.duration_seconds),
                    text(&r.lead_id),
                    text(&r.deal_id),
                    text(&r.customer_id),
                ],
            )
        }
        Kind::Inquiry(r) => (
            table,
            &r.id,
            vec![
                text(&r.channel),
                instant(&r.received_at),
                instant(&r.first_response_at),
                text(&r.customer_id),
                text(&r.rep_id),
            ],
        ),
        Kind::CsatResponse(r) => (
            table,
            &r.id,
            vec![
                Value::Int(Some(i64::from(r.score))),
                instant(&r.responded_at),
                text(&r.customer_id),
                text(&r.rep_id),
            ],
        ),
        Kind::Target(r) => {
            let metric = match v1::TargetMetric::try_from(r.metric) {
                Ok(v1::TargetMetric::Bookings) => "BOOKINGS",
                Ok(v1::TargetMetric::NewCustomers) => "NEW_CUSTOMERS",
                Ok(v1::TargetMetric::DealsWon) => "DEALS_WON",
                _ => "REVENUE",
            };
            let (scope_kind, scope_id) = if r.company {
                ("COMPANY", Value::Text(None))
            } else if !r.team_id.is_empty() {
                ("TEAM", text(&r.team_id))
            } else {
                ("REP", text(&r.rep_id))
            };
            (
                table,
                &r.id,
                vec![
                    enum_text(metric),
                    Value::Int(Some(r.value)),
                    iso_date(&r.start_date),
                    iso_date(&r.end_date),
                    enum_text(scope_kind),
                    scope_id,
                ],
            )
        }
        Kind::Spend(r) => {
            let category = match v1::SpendCategory::try_from(r.category) {
                Ok(v1::SpendCategory::Sales) => "SALES",
                _ => "MARKETING",
            };
            (
                table,
                &r.id,
                vec![
                    enum_text(category),
                    amount(&r.amount),
                    iso_date(&r.start_date),
                    iso_date(&r.end_date),
                    text(&r.team_id),
                ],
            )
        }
    }
}
