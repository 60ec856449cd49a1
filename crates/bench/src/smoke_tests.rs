//! Smoke test of the benchmark harness: its steps run in-process at the
//! 100k scale against a real server on a fresh SQLite file (the generator's
//! checks use a tiny scale). It checks that the generator is deterministic
//! and makes what it plans, that the service accepts every generated record,
//! and that the report has every row. It never asserts timings.
//!
//! The 100k run takes a while in a debug build, so it runs only when
//! `SALESMETRICS_BENCH_SMOKE` is set: the `bench` step of `.ci/run` sets it,
//! a plain `cargo test` skips it and says so.

use std::net::SocketAddr;
use std::time::Duration;

use salesmetrics::config::ServeConfig;
use salesmetrics::proto::v1::kpi_service_client::KpiServiceClient;
use salesmetrics::proto::v1::record::Record as Kind;
use salesmetrics::proto::v1::{Granularity, ScopeKind};
use tokio::sync::oneshot;

use crate::generate::{self, TEAMS};
use crate::queries::{QueryLimits, get_kpis_request};
use crate::{BaselineTarget, ServerUnderTest, StepOptions, run_steps};

/// A real server on `127.0.0.1:0` over a fresh SQLite file, in-process.
struct TestServer {
    addr: SocketAddr,
    database_url: String,
    shutdown: oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    async fn sqlite() -> TestServer {
        let dir = tempfile::tempdir().expect("temporary directory");
        let database_url = format!("sqlite://{}", dir.path().join("bench.db").display());
        let mut config = ServeConfig::for_database("");
        config.database_url = Some(database_url.clone());
        let store = salesmetrics::store::connect(&database_url)
            .await
            .expect("open the database");
        store
            .ensure_tenant(salesmetrics::auth::DEFAULT_TENANT)
            .await
            .expect("create the default tenant");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let (shutdown, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(salesmetrics::server::serve_with_metrics(
            listener,
            None,
            config,
            store,
            async {
                let _ = rx.await;
            },
        ));
        TestServer {
            addr,
            database_url,
            shutdown,
            handle,
            _dir: dir,
        }
    }

    async fn kpi(&self) -> KpiServiceClient<tonic::transport::Channel> {
        KpiServiceClient::new(
            crate::ingest::connect(&format!("http://{}", self.addr))
                .await
                .expect("connect"),
        )
    }

    async fn stop(self) {
        let _ = self.shutdown.send(());
        self.handle
            .await
            .expect("the server task")
            .expect("the server stops cleanly");
    }
}

/// The generator's checks: small enough to count by hand.
const RECORDS: u64 = 2_000;
/// The harness smoke test: the `bench --scale 100k` data set.
const SMOKE_RECORDS: u64 = 100_000;
const SEED: u64 = 20_251_231;
/// June 2025 in UTC (the month the query rows ask about), Unix seconds.
const JUNE_2025_START: i64 = 1_748_736_000;
const JULY_2025_START: i64 = 1_751_328_000;

#[test]
fn the_generator_is_deterministic_and_makes_what_it_plans() {
    let first = generate::generate(RECORDS, SEED);
    let second = generate::generate(RECORDS, SEED);
    assert_eq!(first, second, "same seed, same records");
    assert_ne!(
        first.records,
        generate::generate(RECORDS, SEED + 1).records,
        "another seed, other records"
    );

    let counts = first.counts();
    let planned = first.planned;
    let expected = [
        ("activity", planned.activities),
        ("order", planned.orders),
        ("lead", planned.leads),
        ("deal", planned.deals),
        ("deal_stage_change", planned.deal_stage_changes),
        ("customer", planned.customers),
        ("subscription_change", planned.subscription_changes),
        ("inquiry", planned.inquiries),
        ("csat_response", planned.csat_responses),
        ("rep", planned.reps),
        ("team", TEAMS),
    ];
    for (kind, count) in expected {
        assert_eq!(counts.get(kind), Some(&count), "{kind}");
    }
    // Per million: 400k activities, 150k orders... so at 2 000 records:
    assert_eq!(planned.activities, 800);
    assert_eq!(planned.orders, 300);
    assert_eq!(planned.deal_stage_changes, 300);
    assert_eq!(planned.customers, 60);
    // Reps change teams: more memberships than reps.
    assert!(counts["team_membership"] > planned.reps);
    assert!(counts["target"] > 0 && counts["spend"] > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_harness_ingests_everything_and_reports_every_row() {
    if std::env::var_os("SALESMETRICS_BENCH_SMOKE").is_none() {
        eprintln!(
            "skipped: the 100k harness smoke test runs with SALESMETRICS_BENCH_SMOKE=1 (the bench step of .ci/run)"
        );
        return;
    }
    let server = TestServer::sqlite().await;
    let scratch = tempfile::tempdir().expect("temporary directory");
    let generated = generate::generate(SMOKE_RECORDS, SEED);
    let total = generated.records.len();
    let june_2025_orders = generated
        .records
        .iter()
        .filter_map(|r| match &r.record {
            Some(Kind::Order(order)) => order.ordered_at.as_ref().map(|t| t.seconds),
            _ => None,
        })
        .filter(|t| (JUNE_2025_START..JULY_2025_START).contains(t))
        .count() as i64;
    let under_test = ServerUnderTest {
        endpoint: format!("http://{}", server.addr),
        database_url: server.database_url.clone(),
        backend: "sqlite".to_string(),
        pid: None,
    };
    let options = StepOptions {
        scale: SMOKE_RECORDS,
        seed: SEED,
        baseline: BaselineTarget::SqliteFile(scratch.path().join("baseline.db")),
        batch_size: 1_000,
        ingest_time_limit: Duration::from_secs(120),
        limits: QueryLimits {
            requests: 5,
            seconds_per_row: 30.0,
            clients: 4,
            throughput_seconds: 0.5,
        },
        live: crate::LiveSettings {
            seconds: 2.0,
            clients: 2,
            records_per_second: 2000.0,
        },
    };
    let report = run_steps(&under_test, generated, options)
        .await
        .expect("the harness runs");

    let ingest = report.ingest.as_ref().expect("an ingest section");
    assert!(ingest.service.complete);
    assert_eq!(ingest.service.records_sent, total);
    assert_eq!(
        (ingest.service.accepted as usize, ingest.service.rejected),
        (total, 0),
        "every generated record is valid: {:?}",
        ingest.service.first_rejection
    );
    assert_eq!(ingest.baseline.as_ref().map(|b| b.rows), Some(total));

    let names = report.row_names();
    let mut expected = vec![
        "ingest".to_string(),
        "ListKpis (transport floor)".to_string(),
    ];
    for scope in ["COMPANY", "TEAM", "REP"] {
        for granularity in ["MONTH", "QUARTER", "YEAR"] {
            expected.push(format!("GetKpis {scope} {granularity}"));
        }
    }
    expected.push("GetKpiSeries COMPANY 12 MONTHS".into());
    expected.push("GetBreakdown COMPANY by REP MONTH".into());
    expected.push(crate::queries::WRITE_THEN_READ.into());
    expected.push("throughput GetKpis COMPANY MONTH, all KPIs".into());
    expected.push("raw SQL COMPANY MONTH (5 figures)".into());
    expected.push(
        "live GetKpis (COMPANY, TEAM, REP MONTH) with 2 queriers, producer at 2000 records/s"
            .into(),
    );
    expected.push(
        "live GetKpis (COMPANY, TEAM, REP MONTH) with 2 queriers, producer at max rate".into(),
    );
    assert_eq!(names, expected);
    for row in &report.latency {
        assert_eq!(row.errors, 0, "{}: {:?}", row.name, row.first_error);
        assert_eq!(row.requests, 5, "{}", row.name);
        assert!(row.p50_ms.is_some() && row.p99_ms.is_some(), "{}", row.name);
    }
    let throughput = report.throughput.as_ref().expect("a throughput row");
    assert_eq!(throughput.errors, 0);
    assert!(throughput.requests > 0);
    let raw = report.raw_sql.as_ref().expect("a raw-SQL row");
    assert_eq!(
        raw.service.as_ref(),
        Some(&raw.raw_sql),
        "GetKpis and raw SQL agree on COMPANY MONTH"
    );
    assert!(raw.raw_sql.orders > 0, "June 2025 has orders");
    assert_eq!(raw.raw_sql.orders, june_2025_orders);

    // The request the latency rows time, through the suite's own client.
    let bundle = server
        .kpi()
        .await
        .get_kpis(get_kpis_request(ScopeKind::Company, "", Granularity::Month))
        .await
        .expect("GetKpis")
        .into_inner()
        .bundle
        .expect("a bundle");
    // Every live answer saw every batch acknowledged before it was asked,
    // and the live orders (40 per batch, all in June 2025) are all counted.
    for row in &report.live {
        assert_eq!(
            row.queries.errors,
            0,
            "{}: {:?}",
            row.name(),
            row.queries.first_error
        );
        assert!(row.batches > 0 && row.fresh > 0, "{}", row.name());
        assert_eq!((row.stale, row.inconsistent), (0, 0), "{}", row.name());
    }
    let live_orders: u64 =
        report.live.iter().map(|r| r.batches).sum::<u64>() * crate::live::ORDERS_PER_BATCH;
    let orders = bundle.values.iter().find(|v| v.kpi_id == "orders");
    assert_eq!(
        orders.and_then(|v| v.exact_value),
        Some(june_2025_orders + live_orders as i64)
    );

    let markdown = report.to_markdown();
    for name in &expected[1..] {
        assert!(markdown.contains(name.as_str()), "{name} in the Markdown");
    }
    let json = serde_json::to_value(&report).expect("the report serialises");
    assert_eq!(json["backend"], "sqlite");
    assert_eq!(json["latency"].as_array().map(Vec::len), Some(13));
    server.stop().await;
}
