//! The live step: the service as it is used all day. One producer streams
//! batches of mixed records (at a fixed rate, or as fast as the server takes
//! them) while several clients ask `GetKpis` (COMPANY, TEAM and REP, June
//! 2025, every KPI) in a loop, each on its own connection.
//!
//! Freshness is checked on every answer, not sampled: every order the
//! producer writes belongs to one marker rep, who is a member of the TEAM
//! scope's team, and falls in the month asked about, so the `orders` KPI of
//! every scope grows by exactly [`ORDERS_PER_BATCH`] per batch. An answer is
//! fresh when it counts at least every batch acknowledged before its request
//! was sent (and, as a sanity bound, no batch that was not yet sent when the
//! answer came).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use salesmetrics::proto::v1;
use salesmetrics::proto::v1::kpi_service_client::KpiServiceClient;

use super::generate::{CURRENCY, QueryTargets};
use super::ingest::{CLIENT_MAX_MESSAGE_BYTES, connect};
use super::queries::{LatencyRow, get_kpis_request, latency_row};

/// Records per producer batch.
pub const BATCH_RECORDS: usize = 100;

/// Orders (all of the marker rep) per producer batch; the rest of a batch
/// is activities, leads and deals.
pub const ORDERS_PER_BATCH: u64 = 40;

/// The rep every producer order belongs to.
pub const MARKER_REP: &str = "bench-live-marker";

/// The KPI whose value the freshness check reads.
const COUNTER_KPI: &str = "orders";

/// 2025-06-01T00:00:00Z: the producer's records fall in the month the
/// queries ask about.
const JUNE_2025: i64 = 1_748_736_000;

/// How one live run goes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LiveOptions {
    /// Producer rate in records per second; `None`: as fast as the server
    /// acknowledges (a few batches in flight).
    pub records_per_second: Option<f64>,
    /// Concurrent querying clients.
    pub clients: usize,
    /// Duration in seconds.
    pub seconds: f64,
}

/// What one live run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LiveRow {
    /// The run's options.
    pub options: LiveOptions,
    /// Query latency (every answer, all three scopes together).
    pub queries: LatencyRow,
    /// Records acknowledged per second over the run.
    pub ingest_records_per_second: f64,
    /// Batches acknowledged.
    pub batches: u64,
    /// Answers that counted every batch acknowledged before they were sent.
    pub fresh: u64,
    /// Answers that missed such a batch (must be 0).
    pub stale: u64,
    /// Answers whose count was not a whole number of batches, or counted a
    /// batch not yet sent (must be 0).
    pub inconsistent: u64,
}

impl LiveRow {
    /// The row's name in the report.
    pub fn name(&self) -> String {
        let rate = self
            .options
            .records_per_second
            .map_or_else(|| "max rate".to_string(), |r| format!("{r:.0} records/s"));
        format!(
            "live GetKpis (COMPANY, TEAM, REP MONTH) with {} queriers, producer at {rate}",
            self.options.clients
        )
    }

    /// Fresh answers over all checked answers, as a percentage.
    pub fn fresh_percent(&self) -> f64 {
        let checked = self.fresh + self.stale;
        if checked == 0 {
            return 0.0;
        }
        self.fresh as f64 * 100.0 / checked as f64
    }
}

/// Counters the producer and the queriers share.
#[derive(Default)]
struct Progress {
    /// Batches whose sending has started.
    sent: AtomicU64,
    /// Batches acknowledged.
    acked: AtomicU64,
}

fn at(seconds: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

fn money(minor_units: i64) -> Option<v1::Money> {
    Some(v1::Money {
        currency_code: CURRENCY.to_string(),
        minor_units,
    })
}

fn record(r: v1::record::Record) -> v1::Record {
    v1::Record { record: Some(r) }
}

/// The marker rep and its membership of the TEAM scope's team (written
/// once, before the run).
fn setup_records(targets: &QueryTargets) -> Vec<v1::Record> {
    vec![
        record(v1::record::Record::Rep(v1::Rep {
            id: MARKER_REP.to_string(),
            name: "Live marker".to_string(),
            ..Default::default()
        })),
        record(v1::record::Record::TeamMembership(v1::TeamMembership {
            id: format!("{MARKER_REP}-membership"),
            rep_id: MARKER_REP.to_string(),
            team_id: targets.team_id.clone(),
            effective_at: at(1_577_836_800), // 2020-01-01
            ..Default::default()
        })),
    ]
}

/// Batch `n` of run `run`: [`ORDERS_PER_BATCH`] orders of the marker rep,
/// then activities, leads and deals, all in June 2025.
fn batch(run: &str, n: u64) -> Vec<v1::Record> {
    (0..BATCH_RECORDS as u64)
        .map(|i| {
            let id = format!("live-{run}-{n}-{i}");
            // Spread over June, away from its edges.
            let t = at(JUNE_2025 + 3600 + ((n * 131 + i * 17) % (28 * 24)) as i64 * 3600);
            let r = match i {
                i if i < ORDERS_PER_BATCH => v1::record::Record::Order(v1::Order {
                    id,
                    amount: money(1_000 + i as i64),
                    ordered_at: t,
                    rep_id: MARKER_REP.to_string(),
                    ..Default::default()
                }),
                i if i < 70 => v1::record::Record::Activity(v1::Activity {
                    id,
                    rep_id: MARKER_REP.to_string(),
                    r#type: v1::ActivityType::Call as i32,
                    occurred_at: t,
                    duration_seconds: Some(300),
                    ..Default::default()
                }),
                i if i < 90 => v1::record::Record::Lead(v1::Lead {
                    id,
                    source: "live".to_string(),
                    created_at: t,
                    owner_rep_id: MARKER_REP.to_string(),
                    ..Default::default()
                }),
                _ => v1::record::Record::Deal(v1::Deal {
                    id,
                    amount: money(50_000),
                    created_at: t,
                    status: v1::DealStatus::Open as i32,
                    stage: "qualified".to_string(),
                    owner_rep_id: MARKER_REP.to_string(),
                    ..Default::default()
                }),
            };
            record(r)
        })
        .collect()
}

/// The `orders` count of an answer.
fn counter(response: &v1::GetKpisResponse) -> Option<i64> {
    response
        .bundle
        .as_ref()?
        .values
        .iter()
        .find(|v| v.kpi_id == COUNTER_KPI)?
        .exact_value
}

/// Writes the marker rep and its membership (acknowledged before anything
/// is measured).
pub async fn prepare(endpoint: &str, targets: &QueryTargets) -> anyhow::Result<()> {
    let mut ingest = v1::ingest_service_client::IngestServiceClient::new(connect(endpoint).await?);
    let result = ingest
        .ingest_batch(v1::IngestBatchRequest {
            records: setup_records(targets),
            all_or_nothing: true,
        })
        .await
        .context("live set-up batch")?
        .into_inner();
    anyhow::ensure!(
        result.result.is_some_and(|r| r.accepted_count == 2),
        "the live set-up batch was not accepted"
    );
    Ok(())
}

/// One live run (`run` names its record ids, so runs do not overwrite each
/// other). [`prepare`] must have run first.
pub async fn run(
    endpoint: &str,
    targets: &QueryTargets,
    run: &str,
    options: LiveOptions,
) -> anyhow::Result<LiveRow> {
    let kpi = KpiServiceClient::new(connect(endpoint).await?)
        .max_decoding_message_size(CLIENT_MAX_MESSAGE_BYTES);
    let requests = [
        get_kpis_request(v1::ScopeKind::Company, "", v1::Granularity::Month),
        get_kpis_request(
            v1::ScopeKind::Team,
            &targets.team_id,
            v1::Granularity::Month,
        ),
        get_kpis_request(v1::ScopeKind::Rep, MARKER_REP, v1::Granularity::Month),
    ];
    // The counts before the run: every later answer adds whole batches.
    let mut base = Vec::new();
    for request in &requests {
        let answer = kpi.clone().get_kpis(request.clone()).await?.into_inner();
        base.push(counter(&answer).context("the orders KPI has no exact value")?);
    }
    let base = Arc::new(base);
    let requests = Arc::new(requests);
    let progress = Arc::new(Progress::default());
    let duration = Duration::from_secs_f64(options.seconds.max(0.1));
    let started = Instant::now();
    let deadline = started + duration;

    let producer = tokio::spawn(produce(
        endpoint.to_string(),
        run.to_string(),
        options.records_per_second,
        deadline,
        progress.clone(),
    ));
    let mut queriers = Vec::new();
    for client in 0..options.clients.max(1) {
        let kpi = KpiServiceClient::new(connect(endpoint).await?)
            .max_decoding_message_size(CLIENT_MAX_MESSAGE_BYTES);
        queriers.push(tokio::spawn(query_loop(
            kpi,
            client,
            requests.clone(),
            base.clone(),
            progress.clone(),
            deadline,
        )));
    }
    let mut tally = Tally::default();
    for querier in queriers {
        tally.merge(querier.await.context("querier")?);
    }
    let batches = producer.await.context("producer")??;
    let elapsed = started.elapsed().as_secs_f64();
    let name = format!("live {run}");
    let queries = latency_row(&name, tally.samples, tally.errors, tally.first_error, true);
    Ok(LiveRow {
        options,
        queries,
        ingest_records_per_second: (batches * BATCH_RECORDS as u64) as f64 / elapsed.max(1e-9),
        batches,
        fresh: tally.fresh,
        stale: tally.stale,
        inconsistent: tally.inconsistent,
    })
}

/// Streams batches over one `StreamIngest` call until `deadline`: paced at
/// `rate` records per second, or with up to 4 batches in flight. Returns the
/// batches acknowledged.
async fn produce(
    endpoint: String,
    run: String,
    rate: Option<f64>,
    deadline: Instant,
    progress: Arc<Progress>,
) -> anyhow::Result<u64> {
    let mut client = v1::ingest_service_client::IngestServiceClient::new(connect(&endpoint).await?)
        .max_encoding_message_size(CLIENT_MAX_MESSAGE_BYTES);
    let (tx, rx) = tokio::sync::mpsc::channel::<v1::StreamIngestRequest>(1);
    let mut inbound = client
        .stream_ingest(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|request| (request, rx))
        }))
        .await
        .context("StreamIngest")?
        .into_inner();
    let sender_progress = progress.clone();
    let sender = tokio::spawn(async move {
        let interval = rate.map(|r| Duration::from_secs_f64(BATCH_RECORDS as f64 / r.max(1.0)));
        let mut next = Instant::now();
        for n in 0u64.. {
            if Instant::now() >= deadline {
                break;
            }
            if let Some(interval) = interval {
                tokio::time::sleep_until(next.into()).await;
                next += interval;
            } else {
                // At most 4 batches in flight.
                while sender_progress.sent.load(Ordering::SeqCst)
                    >= sender_progress.acked.load(Ordering::SeqCst) + 4
                {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            let request = v1::StreamIngestRequest {
                sequence: n as i64,
                records: batch(&run, n),
                all_or_nothing: true,
            };
            sender_progress.sent.fetch_add(1, Ordering::SeqCst);
            if tx.send(request).await.is_err() {
                break;
            }
        }
    });
    while let Some(ack) = inbound
        .message()
        .await
        .context("StreamIngest acknowledgement")?
    {
        let accepted = ack.result.map_or(0, |r| r.accepted_count);
        anyhow::ensure!(
            accepted == BATCH_RECORDS as i32,
            "a live batch was not accepted in full"
        );
        progress.acked.fetch_add(1, Ordering::SeqCst);
    }
    sender.await.context("producer sender")?;
    Ok(progress.acked.load(Ordering::SeqCst))
}

/// What the queriers saw.
#[derive(Default)]
struct Tally {
    samples: Vec<f64>,
    errors: usize,
    first_error: Option<String>,
    fresh: u64,
    stale: u64,
    inconsistent: u64,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.samples.extend(other.samples);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.fresh += other.fresh;
        self.stale += other.stale;
        self.inconsistent += other.inconsistent;
    }
}

/// Queries until `deadline`, cycling through the scopes (each client starts
/// at a different one), checking every answer's freshness.
async fn query_loop(
    mut kpi: KpiServiceClient<tonic::transport::Channel>,
    client: usize,
    requests: Arc<[v1::GetKpisRequest; 3]>,
    base: Arc<Vec<i64>>,
    progress: Arc<Progress>,
    deadline: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut i = client;
    while Instant::now() < deadline {
        let which = i % requests.len();
        i += 1;
        let acked_before = progress.acked.load(Ordering::SeqCst);
        let t = Instant::now();
        let answer = kpi.get_kpis(requests[which].clone()).await;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let sent_after = progress.sent.load(Ordering::SeqCst);
        match answer {
            Ok(answer) => {
                tally.samples.push(ms);
                let added = counter(answer.get_ref()).map(|c| c - base[which]);
                match added {
                    Some(added)
                        if added >= 0
                            && (added as u64).is_multiple_of(ORDERS_PER_BATCH)
                            && added as u64 / ORDERS_PER_BATCH <= sent_after =>
                    {
                        if added as u64 / ORDERS_PER_BATCH >= acked_before {
                            tally.fresh += 1;
                        } else {
                            tally.stale += 1;
                        }
                    }
                    _ => tally.inconsistent += 1,
                }
            }
            Err(err) => {
                tally.errors += 1;
                tally.first_error.get_or_insert_with(|| err.to_string());
            }
        }
    }
    tally
}

/// Runs [`prepare`] and then one run per rate (`None`: the producer's
/// maximum), printing progress.
pub async fn live_suite(
    endpoint: &str,
    targets: &QueryTargets,
    rates: &[Option<f64>],
    clients: usize,
    seconds: f64,
) -> anyhow::Result<Vec<LiveRow>> {
    prepare(endpoint, targets).await?;
    let mut rows = Vec::new();
    for (n, rate) in rates.iter().enumerate() {
        let row = run(
            endpoint,
            targets,
            &format!("r{n}"),
            LiveOptions {
                records_per_second: *rate,
                clients,
                seconds,
            },
        )
        .await?;
        eprintln!(
            "  {}: {} queries, p50 {} ms, p99 {} ms, {:.0} records/s, {:.1} % fresh",
            row.name(),
            row.queries.requests,
            row.queries.p50_ms.map_or("-".into(), |v| format!("{v:.1}")),
            row.queries.p99_ms.map_or("-".into(), |v| format!("{v:.1}")),
            row.ingest_records_per_second,
            row.fresh_percent()
        );
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch has the documented mix: 40 marker orders, then activities,
    /// leads and deals, 100 records with distinct ids, all in June 2025.
    #[test]
    fn a_batch_has_the_documented_mix() {
        let records = batch("t", 7);
        assert_eq!(records.len(), 100);
        let orders = records
            .iter()
            .filter(|r| {
                matches!(&r.record, Some(v1::record::Record::Order(o)) if o.rep_id == MARKER_REP)
            })
            .count();
        assert_eq!(orders, 40);
        let ids: std::collections::HashSet<_> = records
            .iter()
            .map(|r| salesmetrics::api::convert::records::proto_record_identity(r).1)
            .collect();
        assert_eq!(ids.len(), 100);
        let june = JUNE_2025..JUNE_2025 + 30 * 86_400;
        for r in &records {
            let t = match &r.record {
                Some(v1::record::Record::Order(o)) => o.ordered_at,
                Some(v1::record::Record::Activity(a)) => a.occurred_at,
                Some(v1::record::Record::Lead(l)) => l.created_at,
                Some(v1::record::Record::Deal(d)) => d.created_at,
                _ => None,
            };
            assert!(june.contains(&t.expect("instant").seconds));
        }
    }
}
