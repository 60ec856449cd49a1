//! The query step: latency of the KPI calls, throughput under 32 concurrent
//! clients, and a raw-SQL baseline over the same database.
//!
//! Every loop is bounded twice: by a number of requests and by a time budget,
//! whichever ends first; a row says how many requests it actually timed. Each
//! latency row starts with one untimed warm-up request (connection set-up,
//! statement caches), so p50/p99 describe a warm service.
//!
//! The periods asked about lie in the last year of the generated data:
//! June 2025 (MONTH), Q2 2025 (QUARTER), 2025 (YEAR), and the 12 months of 2025
//! for the series.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context;
use tonic::transport::Channel;

use salesmetrics::proto::v1;
use salesmetrics::proto::v1::kpi_service_client::KpiServiceClient;

use super::generate::QueryTargets;
use super::ingest::{CLIENT_MAX_MESSAGE_BYTES, TENANT, connect};

/// How long and how often the query step runs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QueryLimits {
    /// Timed requests per latency row (at most).
    pub requests: usize,
    /// Time budget of one latency row, in seconds (the row stops early when spent).
    pub seconds_per_row: f64,
    /// Concurrent clients of the throughput run.
    pub clients: usize,
    /// Duration of the throughput run, in seconds.
    pub throughput_seconds: f64,
}

/// Latency of one kind of request.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LatencyRow {
    /// What was asked, e.g. `GetKpis COMPANY MONTH`.
    pub name: String,
    /// Requests timed (successful ones).
    pub requests: usize,
    /// Requests that failed (not timed).
    pub errors: usize,
    /// The first error, if any.
    pub first_error: Option<String>,
    /// Median latency in milliseconds (nearest rank); `None` without requests.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency in milliseconds (nearest rank).
    pub p99_ms: Option<f64>,
    /// Mean latency in milliseconds.
    pub mean_ms: Option<f64>,
    /// Slowest request in milliseconds.
    pub max_ms: Option<f64>,
    /// True when the time budget, not the request count, ended the row.
    pub stopped_by_time: bool,
    /// Latency of the untimed warm-up request in milliseconds (the only
    /// figure of a row when one request takes longer than the budget).
    pub warmup_ms: Option<f64>,
}

/// Throughput of `GetKpis` under concurrent clients.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ThroughputRow {
    /// What was asked.
    pub name: String,
    /// Concurrent clients, each on its own connection.
    pub clients: usize,
    /// Wall-clock seconds from start until the last in-flight request returned.
    pub seconds: f64,
    /// Successful requests (bundles) in that time.
    pub requests: usize,
    /// Failed requests.
    pub errors: usize,
    /// The first error, if any.
    pub first_error: Option<String>,
    /// Bundles per second.
    pub bundles_per_second: f64,
}

/// The raw-SQL figures of COMPANY June 2025, and whether `GetKpis` agrees.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RawSqlFigures {
    /// Sum of order amounts.
    pub revenue: i64,
    /// Number of orders.
    pub orders: i64,
    /// Number of deals won.
    pub deals_won: i64,
    /// Sum of won deal amounts.
    pub bookings: i64,
    /// Number of customers acquired.
    pub new_customers: i64,
}

/// A local date, as the proto spells it.
fn date(year: i32, month: i32, day: i32) -> Option<v1::Date> {
    Some(v1::Date { year, month, day })
}

/// A calendar period of the given granularity containing 2025-06-15.
fn period(granularity: v1::Granularity) -> Option<v1::Period> {
    Some(v1::Period {
        period: Some(v1::period::Period::Calendar(v1::CalendarPeriod {
            granularity: granularity as i32,
            date: date(2025, 6, 15),
        })),
    })
}

fn scope(kind: v1::ScopeKind, id: &str) -> Option<v1::Scope> {
    Some(v1::Scope {
        kind: kind as i32,
        id: id.to_string(),
    })
}

/// A `GetKpis` request for every KPI.
pub fn get_kpis_request(
    kind: v1::ScopeKind,
    id: &str,
    granularity: v1::Granularity,
) -> v1::GetKpisRequest {
    v1::GetKpisRequest {
        scope: scope(kind, id),
        period: period(granularity),
        kpi_ids: Vec::new(),
        comparison: v1::Comparison::None as i32,
        time_zone: String::new(),
    }
}

async fn kpi_client(endpoint: &str) -> anyhow::Result<KpiServiceClient<Channel>> {
    Ok(KpiServiceClient::new(connect(endpoint).await?)
        .max_decoding_message_size(CLIENT_MAX_MESSAGE_BYTES)
        .max_encoding_message_size(CLIENT_MAX_MESSAGE_BYTES))
}

/// Times `call` up to `limits.requests` times within `limits.seconds_per_row`,
/// after one untimed warm-up call. Returns the row and the last successful answer.
pub async fn time_calls<F, Fut, T, E>(
    name: &str,
    limits: &QueryLimits,
    mut call: F,
) -> (LatencyRow, Option<T>)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let budget = Duration::from_secs_f64(limits.seconds_per_row.max(0.001));
    let mut first_error = None;
    let mut errors = 0;
    let mut last = None;
    let warmup_started = Instant::now();
    let mut warmup_ms = None;
    match call().await {
        Ok(answer) => {
            warmup_ms = Some(warmup_started.elapsed().as_secs_f64() * 1e3);
            last = Some(answer);
        }
        Err(err) => {
            errors += 1;
            first_error = Some(err.to_string());
        }
    }
    // The budget is for the timed requests: a slow warm-up (the cold
    // snapshot load) does not cut the row short.
    let started = Instant::now();
    let mut samples = Vec::with_capacity(limits.requests);
    let mut stopped_by_time = false;
    for _ in 0..limits.requests {
        // At least one timed request, however slow the warm-up was.
        if !samples.is_empty() && started.elapsed() >= budget {
            stopped_by_time = true;
            break;
        }
        let t = Instant::now();
        match call().await {
            Ok(answer) => {
                samples.push(t.elapsed().as_secs_f64() * 1e3);
                last = Some(answer);
            }
            Err(err) => {
                errors += 1;
                first_error.get_or_insert_with(|| err.to_string());
            }
        }
    }
    let mut row = latency_row(name, samples, errors, first_error, stopped_by_time);
    row.warmup_ms = warmup_ms;
    (row, last)
}

/// Summarises latency samples (milliseconds).
pub fn latency_row(
    name: &str,
    mut samples: Vec<f64>,
    errors: usize,
    first_error: Option<String>,
    stopped_by_time: bool,
) -> LatencyRow {
    samples.sort_by(f64::total_cmp);
    let rank = |q: f64| -> Option<f64> {
        if samples.is_empty() {
            return None;
        }
        let index = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
        Some(samples[index])
    };
    LatencyRow {
        name: name.to_string(),
        requests: samples.len(),
        errors,
        first_error,
        p50_ms: rank(0.50),
        p99_ms: rank(0.99),
        mean_ms: (!samples.is_empty()).then(|| samples.iter().sum::<f64>() / samples.len() as f64),
        max_ms: samples.last().copied(),
        stopped_by_time,
        warmup_ms: None,
    }
}

/// The latency rows: `ListKpis` (the transport's floor), `GetKpis` for COMPANY, TEAM and REP × MONTH, QUARTER and
/// YEAR; a 12-month series; a REP breakdown of the COMPANY for the month.
pub async fn latency_suite(
    endpoint: &str,
    targets: &QueryTargets,
    limits: &QueryLimits,
) -> anyhow::Result<Vec<LatencyRow>> {
    let client = kpi_client(endpoint).await?;
    let mut rows = Vec::new();
    // No storage, no engine: what the transport alone costs.
    let row = time_calls("ListKpis (transport floor)", limits, || {
        let mut client = client.clone();
        async move { client.list_kpis(v1::ListKpisRequest {}).await }
    })
    .await
    .0;
    progress(&row);
    rows.push(row);
    let scopes = [
        (v1::ScopeKind::Company, String::new(), "COMPANY"),
        (v1::ScopeKind::Team, targets.team_id.clone(), "TEAM"),
        (v1::ScopeKind::Rep, targets.rep_id.clone(), "REP"),
    ];
    let granularities = [
        (v1::Granularity::Month, "MONTH"),
        (v1::Granularity::Quarter, "QUARTER"),
        (v1::Granularity::Year, "YEAR"),
    ];
    for (kind, id, scope_name) in &scopes {
        for (granularity, granularity_name) in granularities {
            let request = get_kpis_request(*kind, id, granularity);
            let name = format!("GetKpis {scope_name} {granularity_name}");
            let row = time_calls(&name, limits, || {
                let mut client = client.clone();
                let request = request.clone();
                async move { client.get_kpis(request).await }
            })
            .await
            .0;
            progress(&row);
            rows.push(row);
        }
    }
    let series = v1::GetKpiSeriesRequest {
        scope: scope(v1::ScopeKind::Company, ""),
        granularity: v1::Granularity::Month as i32,
        first_period_date: date(2025, 1, 1),
        period_count: 12,
        kpi_ids: Vec::new(),
        comparison: v1::Comparison::None as i32,
        time_zone: String::new(),
    };
    let row = time_calls("GetKpiSeries COMPANY 12 MONTHS", limits, || {
        let mut client = client.clone();
        let request = series.clone();
        async move { client.get_kpi_series(request).await }
    })
    .await
    .0;
    progress(&row);
    rows.push(row);
    let breakdown = v1::GetBreakdownRequest {
        scope: scope(v1::ScopeKind::Company, ""),
        period: period(v1::Granularity::Month),
        dimension: v1::Dimension::Rep as i32,
        kpi_ids: Vec::new(),
        time_zone: String::new(),
        page_size: 1000,
        page_token: String::new(),
    };
    let row = time_calls("GetBreakdown COMPANY by REP MONTH", limits, || {
        let mut client = client.clone();
        let request = breakdown.clone();
        async move { client.get_breakdown(request).await }
    })
    .await
    .0;
    progress(&row);
    rows.push(row);
    let row = write_then_read(endpoint, &client, limits).await?;
    progress(&row);
    rows.push(row);
    Ok(rows)
}

/// Name of the write-then-read row.
pub const WRITE_THEN_READ: &str = "write-then-read GetKpis COMPANY MONTH";

/// The first `GetKpis` COMPANY MONTH after a one-record write: each round
/// writes one order (acknowledged first, untimed) and times the query that
/// must reflect it, so every timed query refreshes the tenant's snapshot.
/// The orders fall on 2025-01-15, outside the month the query rows ask
/// about, so no other row's figures change.
async fn write_then_read(
    endpoint: &str,
    client: &KpiServiceClient<Channel>,
    limits: &QueryLimits,
) -> anyhow::Result<LatencyRow> {
    let mut ingest = v1::ingest_service_client::IngestServiceClient::new(connect(endpoint).await?)
        .max_decoding_message_size(CLIENT_MAX_MESSAGE_BYTES);
    let request = get_kpis_request(v1::ScopeKind::Company, "", v1::Granularity::Month);
    let budget = Duration::from_secs_f64(limits.seconds_per_row.max(0.001));
    let started = Instant::now();
    let (mut samples, mut errors, mut first_error) = (Vec::new(), 0, None);
    let mut stopped_by_time = false;
    for round in 0..limits.requests {
        if !samples.is_empty() && started.elapsed() >= budget {
            stopped_by_time = true;
            break;
        }
        let order = v1::Order {
            id: format!("bench-write-then-read-{round:06}"),
            amount: Some(v1::Money {
                currency_code: super::generate::CURRENCY.to_string(),
                minor_units: 100,
            }),
            ordered_at: Some(prost_types::Timestamp {
                seconds: 1_736_899_200, // 2025-01-15T00:00:00Z
                nanos: 0,
            }),
            ..Default::default()
        };
        let write = ingest
            .ingest_batch(v1::IngestBatchRequest {
                records: vec![v1::Record {
                    record: Some(v1::record::Record::Order(order)),
                }],
                all_or_nothing: true,
            })
            .await;
        if let Err(err) = write {
            errors += 1;
            first_error.get_or_insert_with(|| err.to_string());
            continue;
        }
        let t = Instant::now();
        match client.clone().get_kpis(request.clone()).await {
            Ok(_) => samples.push(t.elapsed().as_secs_f64() * 1e3),
            Err(err) => {
                errors += 1;
                first_error.get_or_insert_with(|| err.to_string());
            }
        }
    }
    Ok(latency_row(
        WRITE_THEN_READ,
        samples,
        errors,
        first_error,
        stopped_by_time,
    ))
}

fn progress(row: &LatencyRow) {
    eprintln!(
        "  {}: {} requests, p50 {} ms",
        row.name,
        row.requests,
        row.p50_ms.map_or("-".into(), |v| format!("{v:.1}"))
    );
}

/// `GetKpis` COMPANY MONTH (all KPIs) from `limits.clients` concurrent
/// clients, each on its own connection, for `limits.throughput_seconds`.
pub async fn throughput(endpoint: &str, limits: &QueryLimits) -> anyhow::Result<ThroughputRow> {
    /// A hard cap on requests per client, so the loop is bounded by count too.
    const MAX_REQUESTS_PER_CLIENT: usize = 1_000_000;
    let clients = limits.clients.max(1);
    let mut connected = Vec::with_capacity(clients);
    for _ in 0..clients {
        connected.push(kpi_client(endpoint).await?);
    }
    let request = get_kpis_request(v1::ScopeKind::Company, "", v1::Granularity::Month);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(limits.throughput_seconds.max(0.001));
    let mut tasks = Vec::with_capacity(clients);
    for mut client in connected {
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut failed, mut first_error) = (0usize, 0usize, None);
            for _ in 0..MAX_REQUESTS_PER_CLIENT {
                if Instant::now() >= deadline {
                    break;
                }
                match client.get_kpis(request.clone()).await {
                    Ok(_) => ok += 1,
                    Err(status) => {
                        failed += 1;
                        first_error.get_or_insert_with(|| status.to_string());
                    }
                }
            }
            (ok, failed, first_error)
        }));
    }
    let (mut requests, mut errors, mut first_error) = (0, 0, None);
    for task in tasks {
        let (ok, failed, error) = task.await.context("throughput client")?;
        requests += ok;
        errors += failed;
        first_error = first_error.or(error);
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(ThroughputRow {
        name: "GetKpis COMPANY MONTH, all KPIs".into(),
        clients,
        seconds,
        requests,
        errors,
        first_error,
        bundles_per_second: requests as f64 / seconds.max(1e-9),
    })
}

/// June 2025 in UTC nanoseconds, `[start, end)` (the tenant's default zone is UTC).
const MONTH_START_NANOS: i64 = 1_748_736_000 * 1_000_000_000;
const MONTH_END_NANOS: i64 = 1_751_328_000 * 1_000_000_000;

/// The raw-SQL baseline: revenue, orders, deals_won, bookings and
/// new_customers of COMPANY June 2025 by three straightforward aggregate
/// queries over the raw tables (no rollups), timed like the latency rows.
/// Returns the row and the figures of the last run.
pub async fn raw_sql_baseline(
    database_url: &str,
    limits: &QueryLimits,
) -> anyhow::Result<(LatencyRow, RawSqlFigures)> {
    let name = "raw SQL COMPANY MONTH (5 figures)";
    if database_url.starts_with("postgres") {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(database_url)
            .await
            .context("connect to the PostgreSQL database for the raw-SQL baseline")?;
        let (row, last) = time_calls(name, limits, || postgres_figures(pool.clone())).await;
        pool.close().await;
        Ok((row, last.context("no raw-SQL query succeeded")?))
    } else {
        use std::str::FromStr;
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(database_url)?.read_only(true);
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .context("open the SQLite database for the raw-SQL baseline")?;
        let (row, last) = time_calls(name, limits, || sqlite_figures(pool.clone())).await;
        pool.close().await;
        Ok((row, last.context("no raw-SQL query succeeded")?))
    }
}

async fn sqlite_figures(pool: sqlx::SqlitePool) -> Result<RawSqlFigures, sqlx::Error> {
    let (revenue, orders): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(SUM(amount), 0), COUNT(*) FROM orders \
         WHERE tenant_id = ?1 AND ordered_at >= ?2 AND ordered_at < ?3",
    )
    .bind(TENANT)
    .bind(MONTH_START_NANOS)
    .bind(MONTH_END_NANOS)
    .fetch_one(&pool)
    .await?;
    let (bookings, deals_won): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(SUM(amount), 0), COUNT(*) FROM deals \
         WHERE tenant_id = ?1 AND status = 'WON' AND closed_at >= ?2 AND closed_at < ?3",
    )
    .bind(TENANT)
    .bind(MONTH_START_NANOS)
    .bind(MONTH_END_NANOS)
    .fetch_one(&pool)
    .await?;
    let (new_customers,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM customers \
         WHERE tenant_id = ?1 AND acquired_at >= ?2 AND acquired_at < ?3",
    )
    .bind(TENANT)
    .bind(MONTH_START_NANOS)
    .bind(MONTH_END_NANOS)
    .fetch_one(&pool)
    .await?;
    Ok(RawSqlFigures {
        revenue,
        orders,
        deals_won,
        bookings,
        new_customers,
    })
}

async fn postgres_figures(pool: sqlx::PgPool) -> Result<RawSqlFigures, sqlx::Error> {
    let (revenue, orders): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(SUM(amount), 0)::BIGINT, COUNT(*) FROM orders \
         WHERE tenant_id = $1 AND ordered_at >= $2 AND ordered_at < $3",
    )
    .bind(TENANT)
    .bind(MONTH_START_NANOS)
    .bind(MONTH_END_NANOS)
    .fetch_one(&pool)
    .await?;
    let (bookings, deals_won): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(SUM(amount), 0)::BIGINT, COUNT(*) FROM deals \
         WHERE tenant_id = $1 AND status = 'WON' AND closed_at >= $2 AND closed_at < $3",
    )
    .bind(TENANT)
    .bind(MONTH_START_NANOS)
    .bind(MONTH_END_NANOS)
    .fetch_one(&pool)
    .await?;
    let (new_customers,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM customers \
         WHERE tenant_id = $1 AND acquired_at >= $2 AND acquired_at < $3",
    )
    .bind(TENANT)
    .bind(MONTH_START_NANOS)
    .bind(MONTH_END_NANOS)
    .fetch_one(&pool)
    .await?;
    Ok(RawSqlFigures {
        revenue,
        orders,
        deals_won,
        bookings,
        new_customers,
    })
}

/// The same five figures as `GetKpis` COMPANY MONTH returns them.
pub async fn service_figures(endpoint: &str) -> anyhow::Result<RawSqlFigures> {
    let mut client = kpi_client(endpoint).await?;
    let bundle = client
        .get_kpis(get_kpis_request(
            v1::ScopeKind::Company,
            "",
            v1::Granularity::Month,
        ))
        .await
        .context("GetKpis")?
        .into_inner()
        .bundle
        .context("GetKpis returned no bundle")?;
    let exact = |id: &str| -> i64 {
        bundle
            .values
            .iter()
            .find(|v| v.kpi_id == id)
            .and_then(|v| v.exact_value)
            .unwrap_or(-1)
    };
    Ok(RawSqlFigures {
        revenue: exact("revenue"),
        orders: exact("orders"),
        deals_won: exact("deals_won"),
        bookings: exact("bookings"),
        new_customers: exact("new_customers"),
    })
}
