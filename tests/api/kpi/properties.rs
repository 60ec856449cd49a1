//! Property tests over real servers: random datasets (every record type,
//! repeated ids, versions, random tenant settings) give identical bundles on
//! SQLite and PostgreSQL, and any interleaving of inserts, replacements,
//! stale writes and deletes gives the same bundles as loading the final
//! state fresh.
//!
//! Each case starts fresh servers, so case counts are modest (see
//! [`config`]; `PROPTEST_CASES=200` for a longer hunt); proptest runs inside
//! a tokio runtime built by the test, and failures shrink.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use prost_types::Timestamp;
use salesmetrics::api::convert::proto_record_identity;
use salesmetrics::proto::v1 as pb;
use salesmetrics::proto::v1::record::Record as R;

use super::super::harness::TestServer;
use super::{rec, usd};

const TEAMS: [&str; 3] = ["t0", "t1", "t2"];
const REPS: [&str; 4] = ["r0", "r1", "r2", "r3"];
const STAGES: [&str; 5] = [
    "prospecting",
    "qualification",
    "proposal",
    "negotiation",
    "discovery",
];
/// 2024-01-01T00:00:00Z.
const JAN_1: i64 = 1_704_067_200;
/// Hours from Jan 1 to May 1, 2024.
const HOURS: i64 = 121 * 24;

/// `cases` cases (or `PROPTEST_CASES` when set, for a longer hunt).
fn config(cases: u32) -> Config {
    Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(cases),
        max_shrink_iters: 64,
        failure_persistence: None,
        ..Config::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

// ---- strategies ------------------------------------------------------------------

/// An instant between 2024-01-01 and 2024-05-01 on a whole hour (so period
/// boundaries and equal instants are hit often).
fn instant() -> impl Strategy<Value = i64> {
    (0..HOURS).prop_map(|h| JAN_1 + h * 3600)
}

fn at(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

/// `seconds` plus a random non-negative number of hours, maybe.
fn later(seconds: i64) -> impl Strategy<Value = Option<Timestamp>> {
    proptest::option::of(0i64..1500).prop_map(move |h| h.map(|h| at(seconds + h * 3600).unwrap()))
}

fn day() -> impl Strategy<Value = NaiveDate> {
    (0u64..120).prop_map(|d| {
        NaiveDate::from_ymd_opt(2024, 1, 1)
            .expect("date")
            .checked_add_days(chrono::Days::new(d))
            .expect("date")
    })
}

fn pb_date(d: NaiveDate) -> Option<pb::Date> {
    Some(pb::Date {
        year: d.year(),
        month: d.month() as i32,
        day: d.day() as i32,
    })
}

/// A date range of 1 to 90 days starting within the first four months.
fn date_range() -> impl Strategy<Value = (Option<pb::Date>, Option<pb::Date>)> {
    (day(), 1u64..90).prop_map(|(start, len)| {
        let end = start
            .checked_add_days(chrono::Days::new(len))
            .expect("date");
        (pb_date(start), pb_date(end))
    })
}

/// An id `<prefix><n>` with a mixed-case prefix, so the "greatest id wins"
/// tie rule is exercised on ids whose byte order differs from a locale's.
fn tie_id(prefix: &'static str) -> impl Strategy<Value = String> {
    (proptest::sample::select(vec!["", "X", "x", "_"]), 0u32..40)
        .prop_map(move |(p, n)| format!("{p}{prefix}{n}"))
}

fn opt_rep() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just(String::new()),
        4 => proptest::sample::select(REPS.to_vec()).prop_map(str::to_string),
    ]
}

fn rep_id() -> impl Strategy<Value = String> {
    proptest::sample::select(REPS.to_vec()).prop_map(str::to_string)
}

fn opt_customer() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), (0..6).prop_map(|i| format!("c{i}"))]
}

/// A team whose parent has a lower index (no cycles) or does not exist.
fn arb_team() -> impl Strategy<Value = pb::Record> {
    (0usize..3, proptest::option::of(0usize..3)).prop_map(|(i, parent)| {
        let parent = match parent {
            Some(p) if p < i => TEAMS[p].to_string(),
            Some(_) => "gone".to_string(),
            None => String::new(),
        };
        rec(R::Team(pb::Team {
            id: TEAMS[i].into(),
            name: format!("Team {i}"),
            parent_team_id: parent,
            ..Default::default()
        }))
    })
}

fn arb_rep() -> impl Strategy<Value = pb::Record> {
    (rep_id(), "[A-Z][a-z]{1,6}").prop_map(|(id, name)| {
        rec(R::Rep(pb::Rep {
            id,
            name,
            email: String::new(),
            ..Default::default()
        }))
    })
}

fn arb_membership() -> impl Strategy<Value = pb::Record> {
    (
        tie_id("m"),
        rep_id(),
        prop_oneof![
            1 => Just(String::new()),
            1 => Just("gone".to_string()),
            6 => proptest::sample::select(TEAMS.to_vec()).prop_map(str::to_string),
        ],
        instant(),
    )
        .prop_map(|(id, rep_id, team_id, t)| {
            rec(R::TeamMembership(pb::TeamMembership {
                id,
                rep_id,
                team_id,
                effective_at: at(t),
                ..Default::default()
            }))
        })
}

fn arb_customer() -> impl Strategy<Value = pb::Record> {
    (0usize..6, instant(), opt_rep())
        .prop_flat_map(|(i, acquired, owner)| {
            // acquired before 2024 sometimes, so customers are active at start
            let acquired = acquired - 24 * 3600 * 40;
            (Just(i), Just(acquired), later(acquired), Just(owner))
        })
        .prop_map(|(i, acquired, churned, owner)| {
            rec(R::Customer(pb::Customer {
                id: format!("c{i}"),
                acquired_at: at(acquired),
                churned_at: churned,
                owner_rep_id: owner,
                source: String::new(),
                name: String::new(),
                ..Default::default()
            }))
        })
}

fn arb_subscription_change() -> impl Strategy<Value = pb::Record> {
    (
        tie_id("sc"),
        0usize..4,
        0usize..6,
        prop_oneof![Just(0i64), 1i64..500],
        instant(),
    )
        .prop_map(|(id, s, c, mrr, t)| {
            rec(R::SubscriptionChange(pb::SubscriptionChange {
                id,
                subscription_id: format!("s{s}"),
                customer_id: format!("c{c}"),
                mrr: usd(mrr),
                effective_at: at(t),
                ..Default::default()
            }))
        })
}

fn arb_order() -> impl Strategy<Value = pb::Record> {
    (
        0u32..40,
        1i64..1000,
        instant(),
        opt_rep(),
        1i32..5,
        opt_customer(),
    )
        .prop_map(|(n, amount, t, rep_id, kind, customer_id)| {
            rec(R::Order(pb::Order {
                id: format!("o{n}"),
                amount: usd(amount),
                ordered_at: at(t),
                kind,
                customer_id,
                rep_id,
                deal_id: String::new(),
                ..Default::default()
            }))
        })
}

fn arb_deal() -> impl Strategy<Value = pb::Record> {
    (
        0usize..6,
        1i64..5000,
        instant(),
        1i32..4,
        0i64..1500,
        proptest::option::of(proptest::sample::select(STAGES.to_vec())),
        opt_rep(),
    )
        .prop_map(|(i, amount, created, status, hours, stage, owner)| {
            let closed = (status != pb::DealStatus::Open as i32).then(|| created + hours * 3600);
            rec(R::Deal(pb::Deal {
                id: format!("d{i}"),
                amount: usd(amount),
                created_at: at(created),
                status,
                closed_at: closed.and_then(at),
                stage: stage.unwrap_or_default().to_string(),
                owner_rep_id: owner,
                customer_id: String::new(),
                lead_id: String::new(),
                ..Default::default()
            }))
        })
}

fn arb_stage_change() -> impl Strategy<Value = pb::Record> {
    (
        tie_id("sg"),
        0usize..6,
        proptest::sample::select(STAGES.to_vec()),
        instant(),
    )
        .prop_map(|(id, d, stage, t)| {
            rec(R::DealStageChange(pb::DealStageChange {
                id,
                deal_id: format!("d{d}"),
                stage: stage.into(),
                entered_at: at(t),
                ..Default::default()
            }))
        })
}

fn arb_lead() -> impl Strategy<Value = pb::Record> {
    (
        0usize..5,
        proptest::sample::select(vec!["web", "referral", " Partner "]),
        instant(),
        opt_rep(),
    )
        .prop_flat_map(|(i, source, created, owner)| {
            (
                Just(i),
                Just(source),
                Just(created),
                later(created),
                later(created),
                Just(owner),
            )
        })
        .prop_map(|(i, source, created, responded, converted, owner)| {
            rec(R::Lead(pb::Lead {
                id: format!("l{i}"),
                source: source.into(),
                created_at: at(created),
                owner_rep_id: owner,
                first_response_at: responded,
                converted_at: converted,
                customer_id: String::new(),
                ..Default::default()
            }))
        })
}

fn arb_activity() -> impl Strategy<Value = pb::Record> {
    (
        0u32..40,
        rep_id(),
        1i32..9,
        instant(),
        proptest::option::of(0i64..7200),
    )
        .prop_map(|(n, rep_id, kind, t, seconds)| {
            rec(R::Activity(pb::Activity {
                id: format!("a{n}"),
                rep_id,
                r#type: kind,
                occurred_at: at(t),
                duration_seconds: seconds,
                lead_id: String::new(),
                deal_id: String::new(),
                customer_id: String::new(),
                ..Default::default()
            }))
        })
}

fn arb_inquiry() -> impl Strategy<Value = pb::Record> {
    (0u32..20, instant(), opt_rep())
        .prop_flat_map(|(n, t, rep)| (Just(n), Just(t), later(t), Just(rep)))
        .prop_map(|(n, t, responded, rep_id)| {
            rec(R::Inquiry(pb::Inquiry {
                id: format!("i{n}"),
                channel: "email".into(),
                received_at: at(t),
                first_response_at: responded,
                customer_id: String::new(),
                rep_id,
                ..Default::default()
            }))
        })
}

fn arb_csat() -> impl Strategy<Value = pb::Record> {
    (0u32..20, 1i32..6, instant(), opt_rep()).prop_map(|(n, score, t, rep_id)| {
        rec(R::CsatResponse(pb::CsatResponse {
            id: format!("q{n}"),
            score,
            responded_at: at(t),
            customer_id: String::new(),
            rep_id,
            ..Default::default()
        }))
    })
}

fn arb_target() -> impl Strategy<Value = pb::Record> {
    (0u32..10, 1i32..5, 1i64..5000, date_range(), 0usize..8).prop_map(
        |(n, metric, value, (start_date, end_date), owner)| {
            // 0: company, 1..=3: a team (t0..t2), 4..=7: a rep (r0..r3)
            let (company, team_id, rep_id) = match owner {
                0 => (true, String::new(), String::new()),
                1..=3 => (false, TEAMS[owner - 1].to_string(), String::new()),
                _ => (false, String::new(), REPS[owner - 4].to_string()),
            };
            rec(R::Target(pb::Target {
                id: format!("g{n}"),
                metric,
                value,
                start_date,
                end_date,
                company,
                team_id,
                rep_id,
                ..Default::default()
            }))
        },
    )
}

fn arb_spend() -> impl Strategy<Value = pb::Record> {
    (
        0u32..10,
        1i32..3,
        1i64..10_000,
        date_range(),
        prop_oneof![
            Just(String::new()),
            proptest::sample::select(TEAMS.to_vec()).prop_map(str::to_string)
        ],
    )
        .prop_map(|(n, category, amount, (start_date, end_date), team_id)| {
            rec(R::Spend(pb::Spend {
                id: format!("p{n}"),
                category,
                amount: usd(amount),
                start_date,
                end_date,
                team_id,
                ..Default::default()
            }))
        })
}

/// A small random dataset of every record type, ids repeating (a later
/// record replaces an earlier one with the same id).
fn arb_records() -> impl Strategy<Value = Vec<pb::Record>> {
    use proptest::collection::vec;
    (
        (
            vec(arb_team(), 1..6),
            vec(arb_rep(), 0..4),
            vec(arb_membership(), 1..10),
            vec(arb_customer(), 1..8),
            vec(arb_subscription_change(), 0..14),
            vec(arb_order(), 1..16),
        ),
        (
            vec(arb_deal(), 1..8),
            vec(arb_stage_change(), 0..10),
            vec(arb_lead(), 0..6),
            vec(arb_activity(), 0..10),
            vec(arb_inquiry(), 0..5),
            vec(arb_csat(), 0..5),
            vec(arb_target(), 0..6),
            vec(arb_spend(), 0..4),
        ),
    )
        .prop_map(|((a, b, c, d, e, f), (g, h, i, j, k, l, m, n))| {
            let mut all = Vec::new();
            for part in [a, b, c, d, e, f, g, h, i, j, k, l, m, n] {
                all.extend(part);
            }
            all
        })
}

/// The `version` field of any record.
fn version_mut(record: &mut pb::Record) -> &mut Option<i64> {
    match record.record.as_mut().expect("a record") {
        R::Team(m) => &mut m.version,
        R::TeamMembership(m) => &mut m.version,
        R::Rep(m) => &mut m.version,
        R::Customer(m) => &mut m.version,
        R::Lead(m) => &mut m.version,
        R::Deal(m) => &mut m.version,
        R::DealStageChange(m) => &mut m.version,
        R::Order(m) => &mut m.version,
        R::SubscriptionChange(m) => &mut m.version,
        R::Activity(m) => &mut m.version,
        R::Inquiry(m) => &mut m.version,
        R::CsatResponse(m) => &mut m.version,
        R::Target(m) => &mut m.version,
        R::Spend(m) => &mut m.version,
    }
}

/// [`arb_records`] with a version 1..=3 on about a third of the records, so
/// some writes are skipped as stale.
fn arb_versioned_records() -> impl Strategy<Value = Vec<pb::Record>> {
    arb_records()
        .prop_flat_map(|records| {
            let n = records.len();
            (
                Just(records),
                proptest::collection::vec(proptest::option::weighted(0.35, 1i64..4), n),
            )
        })
        .prop_map(|(mut records, versions)| {
            for (r, v) in records.iter_mut().zip(versions) {
                *version_mut(r) = v;
            }
            records
        })
}

/// The version rule (docs/api.md): a write is skipped as stale when it has a version that is not
/// greater than the stored record's version.
fn is_stale(new: &mut pb::Record, stored: Option<&mut pb::Record>) -> bool {
    let new_version = *version_mut(new);
    let stored_version = stored.and_then(|s| *version_mut(s));
    matches!((new_version, stored_version), (Some(n), Some(s)) if n <= s)
}

/// Random tenant settings (currency stays USD, as the records are in USD);
/// `None`: the defaults.
fn arb_settings() -> impl Strategy<Value = Option<pb::TenantSettings>> {
    let stages = proptest::sample::subsequence(
        vec![
            "prospecting",
            "qualification",
            "proposal",
            "negotiation",
            "closing",
        ],
        1..=5,
    )
    .prop_flat_map(|names| {
        let n = names.len();
        (Just(names), proptest::collection::vec(0u32..=20, n))
    })
    .prop_map(|(names, twentieths)| {
        names
            .into_iter()
            .zip(twentieths)
            .map(|(name, p)| pb::PipelineStage {
                name: name.into(),
                win_probability: f64::from(p) / 20.0,
            })
            .collect::<Vec<_>>()
    });
    proptest::option::weighted(
        0.7,
        (
            proptest::sample::select(vec![
                "UTC",
                "America/New_York",
                "Europe/Berlin",
                "Asia/Kolkata",
            ]),
            1i32..=12,
            stages,
            1u32..=20,
            1i32..=5,
            proptest::sample::subsequence(vec!["referral", "partner", "web"], 0..=2),
        )
            .prop_map(|(tz, fiscal, pipeline_stages, margin, csat, referrals)| {
                pb::TenantSettings {
                    time_zone: tz.into(),
                    currency_code: "USD".into(),
                    fiscal_year_start_month: fiscal,
                    pipeline_stages,
                    gross_margin: f64::from(margin) / 20.0,
                    csat_satisfied_min_score: csat,
                    referral_sources: referrals.into_iter().map(String::from).collect(),
                }
            }),
    )
}

/// Applies `settings` (when some) to the server's tenant over AdminService.
async fn apply_settings(server: &TestServer, settings: &Option<pb::TenantSettings>) {
    if let Some(settings) = settings {
        server
            .admin()
            .await
            .update_tenant_settings(pb::UpdateTenantSettingsRequest {
                tenant_id: String::new(),
                settings: Some(settings.clone()),
            })
            .await
            .expect("update settings");
    }
}

/// A GetKpis request for a random scope (unknown ones included), period and
/// comparison, all KPIs, maybe in New York time.
fn arb_query() -> impl Strategy<Value = pb::GetKpisRequest> {
    let scope = prop_oneof![
        2 => Just((pb::ScopeKind::Company, String::new())),
        3 => proptest::sample::select(TEAMS.to_vec())
            .prop_map(|t| (pb::ScopeKind::Team, t.to_string())),
        3 => proptest::sample::select(REPS.to_vec())
            .prop_map(|r| (pb::ScopeKind::Rep, r.to_string())),
        1 => proptest::sample::select(vec!["gone", "ghost"])
            .prop_map(|x| (if x == "gone" { pb::ScopeKind::Team } else { pb::ScopeKind::Rep }, x.to_string())),
    ];
    let period = prop_oneof![
        3 => (1i32..6).prop_map(|m| super::month(2024, m)),
        1 => (day(), 1u64..50).prop_map(|(start, len)| {
            let end = start.checked_add_days(chrono::Days::new(len)).expect("date");
            Some(pb::Period {
                period: Some(pb::period::Period::Custom(pb::DateRange {
                    start_date: pb_date(start),
                    end_date: pb_date(end),
                })),
            })
        }),
        1 => day().prop_map(|d| super::calendar(pb::Granularity::Week, d.year(), d.month() as i32, d.day() as i32)),
        1 => Just(super::calendar(pb::Granularity::Quarter, 2024, 2, 1)),
    ];
    (
        scope,
        period,
        prop_oneof![
            Just(pb::Comparison::PreviousPeriod),
            Just(pb::Comparison::PreviousYear),
            Just(pb::Comparison::None),
        ],
        prop_oneof![3 => Just(""), 1 => Just("America/New_York")],
    )
        .prop_map(|((kind, id), period, comparison, tz)| pb::GetKpisRequest {
            scope: Some(pb::Scope {
                kind: kind as i32,
                id,
            }),
            period,
            kpi_ids: vec![],
            comparison: comparison as i32,
            time_zone: tz.into(),
        })
}

// ---- running ---------------------------------------------------------------------

/// Ingests `records` in one batch (not all-or-nothing) and returns the result.
async fn ingest_batch(server: &TestServer, records: Vec<pb::Record>) -> pb::BatchResult {
    server
        .ingest()
        .await
        .ingest_batch(pb::IngestBatchRequest {
            records,
            all_or_nothing: false,
        })
        .await
        .expect("ingest")
        .into_inner()
        .result
        .unwrap_or_default()
}

/// How many queries of a property test were answered with a bundle, so a
/// generator that only produced NOT_FOUND scopes cannot pass unnoticed.
#[derive(Default)]
struct Answered {
    bundles: std::cell::Cell<u32>,
    queries: std::cell::Cell<u32>,
}

impl Answered {
    fn count(&self, answer: &Answer) {
        self.queries.set(self.queries.get() + 1);
        if answer.is_ok() {
            self.bundles.set(self.bundles.get() + 1);
        }
    }

    /// At least half the queries were answered with a bundle.
    fn check(&self) {
        let (bundles, queries) = (self.bundles.get(), self.queries.get());
        println!("{bundles} of {queries} queries answered with a bundle");
        assert!(2 * bundles >= queries, "{bundles} of {queries}");
    }
}

/// A GetKpis answer as something comparable: the bundle or the status code.
type Answer = Result<pb::KpiBundle, (tonic::Code, String)>;

async fn answer(server: &TestServer, req: pb::GetKpisRequest) -> Answer {
    super::try_kpis(server, req)
        .await
        .map_err(|s| (s.code(), s.message().to_string()))
}

fn case_error(what: &str, query: &pb::GetKpisRequest, a: &Answer, b: &Answer) -> String {
    // Name the first differing KPI so a failure is readable.
    if let (Ok(a), Ok(b)) = (a, b) {
        for (x, y) in a.values.iter().zip(&b.values) {
            if x != y {
                return format!("{what}: {query:?}\n  {x:?}\n≠ {y:?}");
            }
        }
        if a.funnel != b.funnel {
            return format!("{what}: {query:?}\n  {:?}\n≠ {:?}", a.funnel, b.funnel);
        }
    }
    format!("{what}: {query:?}\n  {a:?}\n≠ {b:?}")
}

/// Random datasets, ingested over gRPC into a SQLite server and a
/// PostgreSQL server, give equal ingest results and equal `GetKpis`
/// responses (all KPIs and the funnel, with comparisons, any scope and
/// period, random tenant settings; NOT_FOUND alike for unknown scopes).
/// 12 cases × 4 queries.
#[test]
fn sqlite_and_postgres_give_identical_bundles() {
    if std::env::var("TEST_DATABASE_URL").is_err() {
        println!("TEST_DATABASE_URL not set: skipping the SQLite/PostgreSQL comparison");
        return;
    }
    let rt = runtime();
    let answered = Answered::default();
    let mut runner = TestRunner::new(config(12));
    let strategy = (
        arb_versioned_records(),
        arb_settings(),
        proptest::collection::vec(arb_query(), 4),
    );
    let result = runner.run(&strategy, |(records, settings, queries)| {
        rt.block_on(async {
            let sqlite = TestServer::sqlite().await;
            let postgres = TestServer::postgres().await.expect("TEST_DATABASE_URL");
            let outcome = async {
                apply_settings(&sqlite, &settings).await;
                apply_settings(&postgres, &settings).await;
                let a = ingest_batch(&sqlite, records.clone()).await;
                let b = ingest_batch(&postgres, records.clone()).await;
                if a != b {
                    return Err(format!("ingest results differ:\n  {a:?}\n≠ {b:?}"));
                }
                if a.rejected_count != 0 {
                    return Err(format!("the generator made invalid records: {a:?}"));
                }
                for query in &queries {
                    let x = answer(&sqlite, query.clone()).await;
                    let y = answer(&postgres, query.clone()).await;
                    answered.count(&x);
                    if x != y {
                        return Err(case_error("sqlite ≠ postgres", query, &x, &y));
                    }
                }
                Ok(())
            }
            .await;
            sqlite.stop().await;
            postgres.stop().await;
            outcome.map_err(TestCaseError::fail)
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    answered.check();
}

/// One step of a write history.
#[derive(Debug, Clone)]
enum Op {
    /// Ingest these records in one batch.
    Upsert(Vec<pb::Record>),
    /// Delete records of one type by id (unknown ids included).
    Delete(pb::RecordType, Vec<String>),
}

/// A history over two datasets with the same id space: the first loaded in
/// one batch, then batches drawn from either (so records are inserted, or
/// replaced by a different version, or written again unchanged) and deletes
/// of ids either may hold.
fn arb_history() -> impl Strategy<Value = Vec<Op>> {
    (arb_versioned_records(), arb_versioned_records()).prop_flat_map(|(first, second)| {
        let load = Op::Upsert(first.clone());
        let pool: Vec<pb::Record> = first.into_iter().chain(second).collect();
        let n = pool.len().max(1);
        let op = prop_oneof![
            3 => proptest::collection::vec(0..n, 1..8).prop_map(|picks| ("upsert", picks)),
            1 => proptest::collection::vec(0..n, 1..4).prop_map(|picks| ("delete", picks)),
        ];
        (Just(pool), proptest::collection::vec(op, 1..12)).prop_map(move |(pool, ops)| {
            let steps = ops.into_iter().map(|(kind, picks)| {
                let chosen: Vec<pb::Record> = picks.iter().map(|&i| pool[i].clone()).collect();
                if kind == "upsert" {
                    return Op::Upsert(chosen);
                }
                // Delete the ids of the first pick's type among the picks.
                let (t, _) = proto_record_identity(&chosen[0]);
                let ids = chosen
                    .iter()
                    .map(proto_record_identity)
                    .filter(|(u, _)| *u == t)
                    .map(|(_, id)| id.to_string())
                    .chain(std::iter::once("never-written".to_string()))
                    .collect();
                Op::Delete(t, ids)
            });
            std::iter::once(load.clone()).chain(steps).collect()
        })
    })
}

/// Any interleaving of inserts, replacements and deletes applied to server A
/// (queried after every step, so its snapshot catches up through the change
/// feed) gives the same `GetKpis` responses as the final state (modelled in
/// the test) loaded into a fresh server B. A is PostgreSQL when
/// `TEST_DATABASE_URL` is set (B SQLite), otherwise both are SQLite.
/// 12 cases × 4 queries.
#[test]
fn any_write_history_equals_loading_the_final_state() {
    let on_postgres = std::env::var("TEST_DATABASE_URL").is_ok();
    if !on_postgres {
        println!("TEST_DATABASE_URL not set: server A is SQLite too");
    }
    let rt = runtime();
    let answered = Answered::default();
    let mut runner = TestRunner::new(config(12));
    let strategy = (
        arb_history(),
        arb_settings(),
        proptest::collection::vec(arb_query(), 4),
    );
    let result = runner.run(&strategy, |(history, settings, queries)| {
        rt.block_on(async {
            let a = if on_postgres {
                TestServer::postgres().await.expect("TEST_DATABASE_URL")
            } else {
                TestServer::sqlite().await
            };
            let b = TestServer::sqlite().await;
            let outcome = async {
                apply_settings(&a, &settings).await;
                apply_settings(&b, &settings).await;
                // The final state: the last write of each (type, id) that was
                // not stale and not deleted since.
                let mut model: BTreeMap<(i32, String), pb::Record> = BTreeMap::new();
                let mut ingest = a.ingest().await;
                for op in &history {
                    match op {
                        Op::Upsert(records) => {
                            let result = ingest_batch(&a, records.clone()).await;
                            let mut stale = 0;
                            for r in records {
                                let mut r = r.clone();
                                let (t, id) = proto_record_identity(&r);
                                let key = (t as i32, id.to_string());
                                if is_stale(&mut r, model.get_mut(&key)) {
                                    stale += 1;
                                } else {
                                    model.insert(key, r);
                                }
                            }
                            let expected = (records.len() as i32 - stale, stale, 0);
                            let got = (
                                result.accepted_count,
                                result.stale_count,
                                result.rejected_count,
                            );
                            if got != expected {
                                return Err(format!(
                                    "expected (accepted, stale, rejected) {expected:?}: {result:?}"
                                ));
                            }
                        }
                        Op::Delete(t, ids) => {
                            ingest
                                .delete_records(pb::DeleteRecordsRequest {
                                    record_type: *t as i32,
                                    ids: ids.clone(),
                                })
                                .await
                                .map_err(|e| format!("delete: {e:?}"))?;
                            for id in ids {
                                model.remove(&(*t as i32, id.clone()));
                            }
                        }
                    }
                    // A query after every step: A's snapshot follows the
                    // history through the change feed (catching up after
                    // upserts, deletes and re-creations), so the answers
                    // below come from a caught-up snapshot, not a reload.
                    if let Some(query) = queries.first() {
                        let _ = answer(&a, query.clone()).await;
                    }
                }
                let fresh: Vec<pb::Record> = model.into_values().collect();
                let n = fresh.len();
                let result = ingest_batch(&b, fresh).await;
                if result.accepted_count as usize != n {
                    return Err(format!("final state not accepted: {result:?}"));
                }
                for query in &queries {
                    let x = answer(&a, query.clone()).await;
                    let y = answer(&b, query.clone()).await;
                    answered.count(&x);
                    if x != y {
                        return Err(case_error("history ≠ final state", query, &x, &y));
                    }
                }
                Ok(())
            }
            .await;
            a.stop().await;
            b.stop().await;
            outcome.map_err(TestCaseError::fail)
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    answered.check();
}

// ---- concurrent writers and readers ------------------------------------------------

/// Writers of [`random_interleavings_match_the_reference_engine`]: each owns
/// the record types whose number modulo this count is its own, so no two
/// writers ever touch the same record and the state at any moment is fixed
/// by how many operations of each writer have been applied.
const WRITERS: usize = 3;

/// The writer that owns a record type.
fn writer_of(t: pb::RecordType) -> usize {
    t as usize % WRITERS
}

/// Splits a history into one list of operations per writer, in history
/// order (an upsert of several types becomes one upsert per writer).
fn split_history(history: &[Op]) -> Vec<Vec<Op>> {
    let mut per_writer: Vec<Vec<Op>> = vec![Vec::new(); WRITERS];
    for op in history {
        match op {
            Op::Upsert(records) => {
                let mut parts: Vec<Vec<pb::Record>> = vec![Vec::new(); WRITERS];
                for r in records {
                    parts[writer_of(proto_record_identity(r).0)].push(r.clone());
                }
                for (w, part) in parts.into_iter().enumerate() {
                    if !part.is_empty() {
                        per_writer[w].push(Op::Upsert(part));
                    }
                }
            }
            Op::Delete(t, ids) => per_writer[writer_of(*t)].push(Op::Delete(*t, ids.clone())),
        }
    }
    per_writer
}

/// A writer's records after each prefix of its operations: entry k is the
/// state after its first k operations (the version rule and deletes applied).
fn writer_states(ops: &[Op]) -> Vec<BTreeMap<(i32, String), pb::Record>> {
    let mut model: BTreeMap<(i32, String), pb::Record> = BTreeMap::new();
    let mut states = vec![model.clone()];
    for op in ops {
        match op {
            Op::Upsert(records) => {
                for r in records {
                    let mut r = r.clone();
                    let (t, id) = proto_record_identity(&r);
                    let key = (t as i32, id.to_string());
                    if !is_stale(&mut r, model.get_mut(&key)) {
                        model.insert(key, r);
                    }
                }
            }
            Op::Delete(t, ids) => {
                for id in ids {
                    model.remove(&(*t as i32, id.clone()));
                }
            }
        }
        states.push(model.clone());
    }
    states
}

/// The reference engine's answer to `req` over `records`: the engine in its
/// full-scan form, on a dataset built in memory from the records, converted
/// as the service converts its answers. Errors are compared by code only.
fn reference_answer(
    records: Vec<pb::Record>,
    settings: &salesmetrics::domain::TenantSettings,
    req: &pb::GetKpisRequest,
) -> Answer {
    use salesmetrics::api::convert::kpi::{
        parse_comparison, parse_kpi_ids, parse_period, parse_scope, parse_time_zone, to_bundle,
    };
    use salesmetrics::api::convert::record_from_proto;
    use salesmetrics::domain::{Dataset, Scope};
    use salesmetrics::kpi::Engine;
    let code = |e: salesmetrics::error::Error| (tonic::Status::from(e).code(), String::new());
    let upserts = records
        .into_iter()
        .enumerate()
        .map(|(i, r)| record_from_proto(i, r, &settings.currency_code).expect("a valid record"))
        .collect();
    let mut data = Dataset::default();
    data.apply_changes(&[], upserts);
    let mut settings = settings.clone();
    if let Some(tz) = parse_time_zone(&req.time_zone, "time_zone").map_err(code)? {
        settings.time_zone = tz;
    }
    let settings = &settings;
    let selection = parse_kpi_ids(&req.kpi_ids, "kpi_ids", true).map_err(code)?;
    let comparison = parse_comparison(req.comparison).map_err(code)?;
    let period = parse_period(req.period.as_ref())
        .and_then(|p| p.resolve(settings))
        .map_err(code)?;
    let scope = parse_scope(req.scope.as_ref()).map_err(code)?;
    let engine = Engine::new(&data, settings.clone()).without_rep_narrowing();
    let unknown = match &scope {
        Scope::Team(id) => !engine.team_exists(id),
        Scope::Rep(id) => !engine.rep_exists(id),
        Scope::Company => false,
    };
    if unknown {
        return Err((tonic::Code::NotFound, String::new()));
    }
    let bundle = engine.bundle(
        &scope,
        &period,
        &selection.kpis,
        selection.funnel,
        comparison,
    );
    Ok(to_bundle(
        bundle,
        settings.time_zone,
        &settings.currency_code,
    ))
}

/// One query of a concurrent run: what was asked, how many operations of
/// each writer were acknowledged before it was sent and had been started
/// when its answer came, and the answer.
#[derive(Debug)]
struct Observed {
    query: pb::GetKpisRequest,
    acked_before: Vec<usize>,
    sent_after: Vec<usize>,
    answer: Answer,
}

/// Per writer: operations started and operations acknowledged.
#[derive(Default)]
struct WriterProgress {
    sent: Vec<std::sync::atomic::AtomicUsize>,
    acked: Vec<std::sync::atomic::AtomicUsize>,
}

impl WriterProgress {
    fn new() -> Self {
        WriterProgress {
            sent: (0..WRITERS).map(|_| Default::default()).collect(),
            acked: (0..WRITERS).map(|_| Default::default()).collect(),
        }
    }

    fn read(counters: &[std::sync::atomic::AtomicUsize]) -> Vec<usize> {
        counters
            .iter()
            .map(|c| c.load(std::sync::atomic::Ordering::SeqCst))
            .collect()
    }
}

/// Sends `query`, noting the writers' progress before and after.
async fn observe(
    server: &TestServer,
    progress: &WriterProgress,
    query: pb::GetKpisRequest,
) -> Observed {
    let acked_before = WriterProgress::read(&progress.acked);
    let answer = answer(server, query.clone()).await;
    let sent_after = WriterProgress::read(&progress.sent);
    Observed {
        query,
        acked_before,
        sent_after,
        answer,
    }
}

/// Every combination of per-writer operation counts between `lo` and `hi`.
fn candidates(lo: &[usize], hi: &[usize]) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new()];
    for (&l, &h) in lo.iter().zip(hi) {
        out = out
            .into_iter()
            .flat_map(|prefix| {
                (l..=h.max(l)).map(move |k| {
                    let mut next = prefix.clone();
                    next.push(k);
                    next
                })
            })
            .collect();
    }
    out
}

/// Random histories split over three concurrent writers (each waits for
/// its acknowledgement before its next operation, and queries after each),
/// while a fourth client queries throughout. Every answer equals the
/// reference engine run on a state that holds every operation acknowledged
/// before the query was sent and none that had not been started when its
/// answer came (the operations in flight meanwhile may or may not be in
/// it, each as a whole). The server's snapshot follows the writes through
/// the change feed. PostgreSQL when `TEST_DATABASE_URL` is set, else SQLite.
/// 10 cases.
#[test]
fn random_interleavings_match_the_reference_engine() {
    let on_postgres = std::env::var("TEST_DATABASE_URL").is_ok();
    let rt = runtime();
    let answered = Answered::default();
    // Queries that overlapped a write in flight (their state is one of
    // several); some must, or the test shows nothing about concurrency.
    let overlapped = std::cell::Cell::new(0u32);
    let mut runner = TestRunner::new(config(10));
    let strategy = (
        arb_history(),
        arb_settings(),
        proptest::collection::vec(arb_query(), 4),
    );
    let result = runner.run(&strategy, |(history, settings, queries)| {
        rt.block_on(async {
            let server = if on_postgres {
                TestServer::postgres().await.expect("TEST_DATABASE_URL")
            } else {
                TestServer::sqlite().await
            };
            let outcome = async {
                apply_settings(&server, &settings).await;
                let stored = server
                    .admin()
                    .await
                    .get_tenant_settings(pb::GetTenantSettingsRequest {
                        tenant_id: String::new(),
                    })
                    .await
                    .map_err(|e| format!("settings: {e:?}"))?
                    .into_inner()
                    .settings
                    .ok_or("no settings")?;
                let domain_settings =
                    salesmetrics::api::convert::settings_from_proto("settings", stored)
                        .map_err(|e| format!("settings: {e:?}"))?;
                let per_writer = split_history(&history);
                let progress = WriterProgress::new();
                let writing = std::sync::atomic::AtomicUsize::new(WRITERS);
                let writers = per_writer.iter().enumerate().map(|(w, ops)| {
                    let (server, progress, queries, writing) =
                        (&server, &progress, &queries, &writing);
                    async move {
                        let mut seen = Vec::new();
                        let mut ingest = server.ingest().await;
                        for (n, op) in ops.iter().enumerate() {
                            progress.sent[w].fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            match op {
                                Op::Upsert(records) => {
                                    ingest
                                        .ingest_batch(pb::IngestBatchRequest {
                                            records: records.clone(),
                                            all_or_nothing: false,
                                        })
                                        .await
                                        .expect("ingest");
                                }
                                Op::Delete(t, ids) => {
                                    ingest
                                        .delete_records(pb::DeleteRecordsRequest {
                                            record_type: *t as i32,
                                            ids: ids.clone(),
                                        })
                                        .await
                                        .expect("delete");
                                }
                            }
                            progress.acked[w].fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            let query = queries[(w + n) % queries.len()].clone();
                            seen.push(observe(server, progress, query).await);
                        }
                        writing.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                        seen
                    }
                });
                let reader = async {
                    let mut seen = Vec::new();
                    let mut n = 0;
                    while writing.load(std::sync::atomic::Ordering::SeqCst) > 0 || n == 0 {
                        let query = queries[n % queries.len()].clone();
                        seen.push(observe(&server, &progress, query).await);
                        n += 1;
                    }
                    seen
                };
                let (by_writers, by_reader) =
                    tokio::join!(futures::future::join_all(writers), reader);
                let states: Vec<_> = per_writer.iter().map(|ops| writer_states(ops)).collect();
                for observed in by_writers.into_iter().flatten().chain(by_reader) {
                    answered.count(&observed.answer);
                    if observed.acked_before != observed.sent_after {
                        overlapped.set(overlapped.get() + 1);
                    }
                    let mut tried = Vec::new();
                    let matched = candidates(&observed.acked_before, &observed.sent_after)
                        .into_iter()
                        .any(|counts| {
                            let records: Vec<pb::Record> = counts
                                .iter()
                                .enumerate()
                                .flat_map(|(w, &k)| states[w][k].values().cloned())
                                .collect();
                            let expected =
                                reference_answer(records, &domain_settings, &observed.query);
                            let same = match (&expected, &observed.answer) {
                                (Ok(a), Ok(b)) => a == b,
                                (Err(a), Err(b)) => a.0 == b.0,
                                _ => false,
                            };
                            if !same {
                                tried.push((counts, expected));
                            }
                            same
                        });
                    if !matched {
                        let (counts, expected) = tried.swap_remove(0);
                        return Err(format!(
                            "no state between {:?} and {:?} gives the answer; with {counts:?}: {}",
                            observed.acked_before,
                            observed.sent_after,
                            case_error(
                                "server ≠ reference",
                                &observed.query,
                                &observed.answer,
                                &expected
                            )
                        ));
                    }
                }
                Ok(())
            }
            .await;
            server.stop().await;
            outcome.map_err(TestCaseError::fail)
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    answered.check();
    println!("{} queries overlapped a write in flight", overlapped.get());
    assert!(overlapped.get() > 0, "no query overlapped a write");
}
