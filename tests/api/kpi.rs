//! KpiService over real gRPC on SQLite and (with `TEST_DATABASE_URL`)
//! PostgreSQL, each test once per backend (`kpi::<test>::sqlite`,
//! `kpi::<test>::postgres`), with every record ingested through
//! `IngestBatch`: the testkit's fixtures (`salesmetrics_core::testkit`,
//! converted to proto by the service's own conversion) against the same
//! hand-computed tables the engine's unit tests check, series, breakdowns
//! with paging, freshness after upserts and deletes, a DST month, a fiscal
//! year, request validation, and (in [`properties`]) property tests that
//! both backends and any write history give identical bundles.

mod properties;

use chrono::DateTime;
use prost_types::Timestamp;
use salesmetrics::api::convert::{record_to_proto, settings_to_proto};
use salesmetrics::domain::Record;
use salesmetrics::proto::v1 as pb;
use salesmetrics::proto::v1::record::Record as R;
use salesmetrics_core::testkit::{self, ScopeRef, ScopedExpected, appendix, periods};
use tonic::{Code, Status};

use super::db;
use super::harness::{TestServer, backend_tests};

// ---- record builders (proto messages, as a client sends them) ----------------

/// An RFC 3339 instant as a proto timestamp.
fn ts(s: &str) -> Option<Timestamp> {
    let t = DateTime::parse_from_rfc3339(s).expect("test instant");
    Some(Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    })
}

fn usd(minor_units: i64) -> Option<pb::Money> {
    Some(pb::Money {
        currency_code: "USD".into(),
        minor_units,
    })
}

fn date(year: i32, month: i32, day: i32) -> Option<pb::Date> {
    Some(pb::Date { year, month, day })
}

fn rec(r: R) -> pb::Record {
    pb::Record { record: Some(r) }
}

fn s(x: Option<&str>) -> String {
    x.unwrap_or_default().to_string()
}

fn team(id: &str, parent: Option<&str>) -> pb::Record {
    rec(R::Team(pb::Team {
        id: id.into(),
        name: format!("Team {id}"),
        parent_team_id: s(parent),
        ..Default::default()
    }))
}

fn member(id: &str, rep: &str, team: Option<&str>, at: &str) -> pb::Record {
    rec(R::TeamMembership(pb::TeamMembership {
        id: id.into(),
        rep_id: rep.into(),
        team_id: s(team),
        effective_at: ts(at),
        ..Default::default()
    }))
}

fn rep(id: &str) -> pb::Record {
    rec(R::Rep(pb::Rep {
        id: id.into(),
        name: format!("Rep {id}"),
        email: String::new(),
        ..Default::default()
    }))
}

fn order(
    id: &str,
    amount: i64,
    at: &str,
    rep: Option<&str>,
    kind: pb::OrderKind,
    customer: Option<&str>,
) -> pb::Record {
    rec(R::Order(pb::Order {
        id: id.into(),
        amount: usd(amount),
        ordered_at: ts(at),
        kind: kind as i32,
        customer_id: s(customer),
        rep_id: s(rep),
        deal_id: String::new(),
        ..Default::default()
    }))
}

/// A NEW order without customer.
fn sale(id: &str, amount: i64, at: &str, rep: Option<&str>) -> pb::Record {
    order(id, amount, at, rep, pb::OrderKind::New, None)
}

// ---- request helpers ---------------------------------------------------------

/// Ingests `records` in one all-or-nothing batch and checks every one was accepted.
async fn ingest(server: &TestServer, records: Vec<pb::Record>) {
    let n = records.len();
    let result = server
        .ingest()
        .await
        .ingest_batch(pb::IngestBatchRequest {
            records,
            all_or_nothing: true,
        })
        .await
        .expect("ingest")
        .into_inner()
        .result
        .unwrap_or_default();
    assert_eq!(
        result.accepted_count as usize, n,
        "{}: {result:?}",
        server.backend
    );
}

/// A calendar period of `granularity` around a date.
fn calendar(granularity: pb::Granularity, y: i32, m: i32, d: i32) -> Option<pb::Period> {
    Some(pb::Period {
        period: Some(pb::period::Period::Calendar(pb::CalendarPeriod {
            granularity: granularity as i32,
            date: date(y, m, d),
        })),
    })
}

fn month(y: i32, m: i32) -> Option<pb::Period> {
    calendar(pb::Granularity::Month, y, m, 15)
}

fn march() -> Option<pb::Period> {
    month(2024, 3)
}

fn scope(kind: pb::ScopeKind, id: &str) -> Option<pb::Scope> {
    Some(pb::Scope {
        kind: kind as i32,
        id: id.into(),
    })
}

fn team_scope(id: &str) -> Option<pb::Scope> {
    scope(pb::ScopeKind::Team, id)
}

fn rep_scope(id: &str) -> Option<pb::Scope> {
    scope(pb::ScopeKind::Rep, id)
}

/// A GetKpis request for COMPANY with no comparison.
fn kpis_request(period: Option<pb::Period>, ids: &[&str]) -> pb::GetKpisRequest {
    pb::GetKpisRequest {
        scope: None,
        period,
        kpi_ids: ids.iter().map(|s| s.to_string()).collect(),
        comparison: 0,
        time_zone: String::new(),
    }
}

async fn try_kpis(server: &TestServer, req: pb::GetKpisRequest) -> Result<pb::KpiBundle, Status> {
    Ok(server
        .kpi()
        .await
        .get_kpis(req)
        .await?
        .into_inner()
        .bundle
        .expect("bundle"))
}

async fn kpis(server: &TestServer, req: pb::GetKpisRequest) -> pb::KpiBundle {
    try_kpis(server, req).await.expect("GetKpis")
}

/// GetKpis for one scope and period, the listed KPIs (empty: all).
async fn kpis_of(
    server: &TestServer,
    scope: Option<pb::Scope>,
    period: Option<pb::Period>,
    ids: &[&str],
) -> pb::KpiBundle {
    let mut req = kpis_request(period, ids);
    req.scope = scope;
    kpis(server, req).await
}

async fn try_breakdown(
    server: &TestServer,
    req: pb::GetBreakdownRequest,
) -> Result<pb::GetBreakdownResponse, Status> {
    Ok(server.kpi().await.get_breakdown(req).await?.into_inner())
}

fn breakdown_request(
    scope: Option<pb::Scope>,
    period: Option<pb::Period>,
    dimension: pb::Dimension,
    ids: &[&str],
) -> pb::GetBreakdownRequest {
    pb::GetBreakdownRequest {
        scope,
        period,
        dimension: dimension as i32,
        kpi_ids: ids.iter().map(|s| s.to_string()).collect(),
        time_zone: String::new(),
        page_size: 0,
        page_token: String::new(),
    }
}

/// The value of `id` in a bundle (panics when it is missing).
fn value<'a>(bundle: &'a pb::KpiBundle, id: &str) -> &'a pb::KpiValue {
    bundle
        .values
        .iter()
        .find(|v| v.kpi_id == id)
        .unwrap_or_else(|| panic!("{id} missing from the bundle"))
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() <= 1e-9 * b.abs().max(1.0))
}

/// `id` is `expected` (within 1e-9 relative), or undefined with a reason when `None`.
#[track_caller]
fn assert_kpi(backend: &str, bundle: &pb::KpiBundle, id: &str, expected: Option<f64>) {
    assert_value(backend, value(bundle, id), expected);
}

#[track_caller]
fn assert_value(backend: &str, v: &pb::KpiValue, expected: Option<f64>) {
    let id = &v.kpi_id;
    match expected {
        Some(w) => assert!(
            close(v.value, w),
            "{backend}: {id}: expected {w}, got {v:?}"
        ),
        None => {
            assert!(
                v.value.is_none(),
                "{backend}: {id}: expected undefined, got {v:?}"
            );
            assert!(
                !v.undefined_reason.is_empty(),
                "{backend}: {id}: an undefined value needs a reason"
            );
        }
    }
}

/// The field path of an INVALID_ARGUMENT (its message starts with it).
fn field_of(status: &Status) -> String {
    status
        .message()
        .split(':')
        .next()
        .unwrap_or_default()
        .to_string()
}

// ---- the testkit's fixtures as a client sends them -----------------------------

/// Domain records as proto messages, through the service's own conversion
/// (money in the default tenant's currency, which is the fixtures').
fn to_proto(records: Vec<Record>) -> Vec<pb::Record> {
    let currency = testkit::rich::settings().currency_code;
    records
        .iter()
        .map(|r| record_to_proto(r, &currency))
        .collect()
}

/// The testkit's rich fixture (`salesmetrics_core::testkit::rich`): March
/// 2024 (UTC) with three reps: r1 in `east`, r2 in `east-a` (a sub-team of
/// `east`), r3 in `west` until it joins `east` at Mar 16 00:00.
fn rich() -> Vec<pb::Record> {
    to_proto(testkit::rich::records())
}

/// A table's scope as a request names it (COMPANY: no scope).
fn scope_of(scope: ScopeRef) -> Option<pb::Scope> {
    match scope {
        ScopeRef::Company => None,
        ScopeRef::Team(id) => team_scope(id),
        ScopeRef::Rep(id) => rep_scope(id),
    }
}

/// Every value of a table of scoped values for one period, one request per
/// entry (for the listed KPIs; empty: all).
async fn assert_scoped_table(
    server: &TestServer,
    period: Option<pb::Period>,
    ids: &[&str],
    table: &[ScopedExpected],
) {
    for (scope, id, want) in table {
        let bundle = kpis_of(server, scope_of(*scope), period, ids).await;
        let b = format!("{} {scope:?}", server.backend);
        assert_kpi(&b, &bundle, id, *want);
    }
}

backend_tests! {
    /// Every KPI id of `GetKpis` (all KPIs, with and without a comparison) on the
    /// rich fixture against the testkit's hand-computed table (the one the
    /// engine's unit tests check), proving the wire: the values are in
    /// `ListKpis` order and carry their units and fractions.
    #[tokio::test]
    async fn every_kpi_has_a_hand_computed_value(server: TestServer) {
        let b = server.backend;
        // The table assumes the fixture's settings: the new tenant's defaults.
        let settings = server
            .admin()
            .await
            .get_tenant_settings(pb::GetTenantSettingsRequest::default())
            .await
            .expect("get settings")
            .into_inner()
            .settings;
        assert_eq!(
            settings,
            Some(settings_to_proto(&testkit::rich::settings())),
            "{b}"
        );
        ingest(&server, rich()).await;
        let catalog: Vec<String> = server
            .kpi()
            .await
            .list_kpis(pb::ListKpisRequest {})
            .await
            .expect("ListKpis")
            .into_inner()
            .kpis
            .into_iter()
            .map(|k| k.id)
            .filter(|id| id != "funnel")
            .collect();
        let table: Vec<&str> = testkit::rich::MARCH.iter().map(|(id, _)| *id).collect();
        assert_eq!(table, catalog, "every KPI needs a hand-computed value here");

        let plain = kpis(&server, kpis_request(march(), &[])).await;
        let ids: Vec<&str> = plain.values.iter().map(|v| v.kpi_id.as_str()).collect();
        assert_eq!(ids, table, "{b}: all KPIs, in catalog order");
        for (id, want) in testkit::rich::MARCH {
            assert_kpi(b, &plain, id, *want);
        }
        // Exact values, units, numerators and denominators.
        assert_eq!(value(&plain, "revenue").exact_value, Some(2100));
        assert_eq!(value(&plain, "revenue").unit, pb::Unit::Money as i32);
        assert_eq!(value(&plain, "orders").unit, pb::Unit::Count as i32);
        assert_eq!(value(&plain, "win_rate").unit, pb::Unit::Ratio as i32);
        assert_eq!(
            value(&plain, "sales_cycle").unit,
            pb::Unit::DurationSeconds as i32
        );
        assert_eq!(value(&plain, "csat_average").unit, pb::Unit::Score as i32);
        let win = value(&plain, "win_rate");
        assert_eq!((win.numerator, win.denominator), (Some(2.0), Some(3.0)));
        assert_eq!(value(&plain, "time_on_activities").exact_value, Some(12480));
        assert_eq!(value(&plain, "revenue_target").exact_value, Some(6200));
        assert_eq!(plain.currency_code, "USD");
        assert!(plain.comparison_period.is_none());
        // The funnel comes with "all KPIs": cohort dB (won → 3), dC
        // (prospecting → 0), dD (proposal → 2): reached 3, 2, 2, 1; won 1.
        let reached: Vec<i64> = plain.funnel.iter().map(|f| f.reached).collect();
        assert_eq!(reached, testkit::rich::MARCH_FUNNEL_REACHED, "{b}");

        // With PREVIOUS_PERIOD: the same values, plus February's.
        let mut req = kpis_request(march(), &[]);
        req.comparison = pb::Comparison::PreviousPeriod as i32;
        let compared = kpis(&server, req).await;
        for (id, want) in testkit::rich::MARCH {
            assert_kpi(b, &compared, id, *want);
        }
        let feb = compared
            .comparison_period
            .clone()
            .expect("comparison period");
        assert_eq!(
            (feb.start_date, feb.end_date),
            (date(2024, 2, 1), date(2024, 3, 1))
        );
        // February by hand (the testkit's table, as comparison values).
        for (id, feb_value) in testkit::rich::FEBRUARY {
            let v = value(&compared, id);
            assert_eq!(v.comparison_value, *feb_value, "{b}: {id} {v:?}");
        }
        // (2100 − 999) ÷ 999; orders (5 − 1) ÷ 1; activities 9 vs 0: undefined.
        assert!(close(
            value(&compared, "revenue").relative_change,
            1101.0 / 999.0
        ));
        assert_eq!(value(&compared, "orders").relative_change, Some(4.0));
        // The absolute change is value − comparison: 2100 − 999, 5 − 1, 9 − 0
        // (defined even where the relative change is not).
        assert_eq!(value(&compared, "revenue").absolute_change, Some(1101.0));
        assert_eq!(value(&compared, "orders").absolute_change, Some(4.0));
        assert_eq!(value(&compared, "activities").absolute_change, Some(9.0));
        assert_eq!(value(&compared, "activities").relative_change, None);
        // No deal closed in February: win rate undefined there, with a reason.
        let win = value(&compared, "win_rate");
        assert_eq!((win.comparison_value, win.relative_change), (None, None));
        assert_eq!(win.absolute_change, None);
        assert!(!win.comparison_undefined_reason.is_empty());

        // PREVIOUS_YEAR: March 2023 had no orders → change undefined.
        let mut req = kpis_request(march(), &["revenue"]);
        req.comparison = pb::Comparison::PreviousYear as i32;
        let last_year = kpis(&server, req).await;
        let revenue = value(&last_year, "revenue");
        assert_eq!(
            (revenue.comparison_value, revenue.relative_change),
            (Some(0.0), None)
        );
        assert_eq!(
            last_year.comparison_period.expect("period").start_date,
            date(2023, 3, 1)
        );

        // A custom range's previous period is the same number of days just
        // before: Mar 1..Mar 11 (10 days) ← Feb 20..Mar 1, which holds o6.
        let mut req = kpis_request(
            Some(pb::Period {
                period: Some(pb::period::Period::Custom(pb::DateRange {
                    start_date: date(2024, 3, 1),
                    end_date: date(2024, 3, 11),
                })),
            }),
            &["revenue"],
        );
        req.comparison = pb::Comparison::PreviousPeriod as i32;
        let custom = kpis(&server, req).await;
        // o1 1000 (Mar 5) + o2 500 (Mar 6) + o3 300 (Mar 10)
        assert_eq!(value(&custom, "revenue").exact_value, Some(1800), "{b}");
        assert_eq!(value(&custom, "revenue").comparison_value, Some(999.0));
        let before = custom.comparison_period.expect("comparison period");
        assert_eq!(
            (before.start_date, before.end_date),
            (date(2024, 2, 20), date(2024, 3, 1))
        );
        // Same day last year: Feb 29 maps to Feb 28.
        let mut req = kpis_request(calendar(pb::Granularity::Day, 2024, 2, 29), &["revenue"]);
        req.comparison = pb::Comparison::PreviousYear as i32;
        let leap = kpis(&server, req).await;
        let previous = leap.comparison_period.expect("comparison period");
        assert_eq!(
            (previous.start_date, previous.end_date),
            (date(2023, 2, 28), date(2023, 3, 1)),
            "{b}"
        );
        server.stop().await;
    }
}

backend_tests! {
    /// TEAM and REP scopes of the rich fixture over gRPC, against the
    /// testkit's table (the engine's `team_and_rep_scopes_on_the_rich_fixture`).
    #[tokio::test]
    async fn team_and_rep_scopes_of_the_rich_fixture(server: TestServer) {
        ingest(&server, rich()).await;
        assert_scoped_table(&server, march(), &[], testkit::rich::MARCH_BY_SCOPE).await;
        server.stop().await;
    }
}

// ---- the worked examples (testkit::appendix) over gRPC --------------------------

backend_tests! {
    /// "A rep moves team".
    #[tokio::test]
    async fn appendix_rep_moves_team(server: TestServer) {
        ingest(&server, to_proto(appendix::rep_moves_team())).await;
        let ids = ["revenue", "active_reps", "revenue_per_rep"];
        assert_scoped_table(&server, march(), &ids, appendix::REP_MOVES_TEAM_MARCH).await;
        assert_scoped_table(
            &server,
            month(2024, 2),
            &ids,
            appendix::REP_MOVES_TEAM_FEBRUARY,
        )
        .await;
        server.stop().await;
    }
}

backend_tests! {
    /// "MRR movements": every number listed there, COMPANY and REP r1.
    #[tokio::test]
    async fn appendix_mrr_movements(server: TestServer) {
        let b = server.backend;
        ingest(&server, to_proto(appendix::mrr())).await;
        for scope in [None, rep_scope("r1")] {
            let m = kpis_of(&server, scope, march(), &[]).await;
            for (id, want) in appendix::MRR_MARCH {
                assert_kpi(b, &m, id, *want);
            }
            let churn = value(&m, "mrr_churn_rate");
            assert_eq!(
                (churn.numerator, churn.denominator),
                (Some(280.0), Some(720.0))
            );
            assert_eq!(value(&m, "mrr").exact_value, Some(750));
            assert_eq!(value(&m, "arr").exact_value, Some(9000));
        }
        server.stop().await;
    }
}

backend_tests! {
    /// "Funnel and pipeline": every number, the funnel both as
    /// `KpiBundle.funnel` and as the STAGE breakdown.
    #[tokio::test]
    async fn appendix_funnel_and_pipeline(server: TestServer) {
        const STAGES: [&str; 5] = [
            "prospecting",
            "qualification",
            "proposal",
            "negotiation",
            "won",
        ];
        let b = server.backend;
        ingest(&server, to_proto(appendix::funnel())).await;
        let m = kpis(&server, kpis_request(march(), &[])).await;
        // reached = [7, 6, 5, 4], won in the cohort 2
        let funnel: Vec<(&str, i64)> = m
            .funnel
            .iter()
            .map(|f| (f.stage.as_str(), f.reached))
            .collect();
        assert_eq!(
            funnel,
            STAGES
                .iter()
                .copied()
                .zip(appendix::FUNNEL_REACHED)
                .collect::<Vec<_>>(),
            "{b}"
        );
        // leakage = [1/7, 1/6, 0.2, 0.5], none on the won row
        let leakage = appendix::FUNNEL_LEAKAGE;
        for (row, want) in m.funnel.iter().zip(leakage) {
            assert!(close(row.leakage, want), "{b}: {row:?}");
        }
        assert_eq!(m.funnel[4].leakage, None);
        let indexes: Vec<i32> = m.funnel.iter().map(|f| f.index).collect();
        assert_eq!(indexes, [0, 1, 2, 3, 4]);
        for (id, want) in appendix::FUNNEL_MARCH {
            assert_kpi(b, &m, id, *want);
        }
        // "funnel" alone: only the funnel, no values.
        let only = kpis(&server, kpis_request(march(), &["funnel"])).await;
        assert!(only.values.is_empty());
        assert_eq!(only.funnel, m.funnel);

        // The same funnel as the STAGE breakdown.
        let rows = try_breakdown(
            &server,
            breakdown_request(None, march(), pb::Dimension::Stage, &[]),
        )
        .await
        .expect("STAGE")
        .rows;
        let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, STAGES, "{b}");
        let reached: Vec<Option<f64>> = rows.iter().map(|r| r.values[0].value).collect();
        assert_eq!(
            reached,
            appendix::FUNNEL_REACHED.map(|n| Some(n as f64))
        );
        for (row, want) in rows.iter().zip(leakage) {
            assert!(close(row.values[1].value, want), "{b}: {row:?}");
        }
        assert_eq!(rows[4].values.len(), 1, "the won row has no leakage");
        server.stop().await;
    }
}

backend_tests! {
    /// Stage names are trimmed and lower-cased on ingest (deal stage, stage
    /// change) and in the settings (pipeline stages), so " Proposal " and
    /// "proposal" are one stage in the funnel, the STAGE breakdown and the
    /// weighted pipeline.
    #[tokio::test]
    async fn stage_names_are_trimmed_and_lower_cased(server: TestServer) {
        use salesmetrics::domain::DealStatus;
        use testkit::build::{deal, stage};
        let b = server.backend;
        update_settings(&server, |s| {
            s.pipeline_stages = [(" Prospecting ", 0.1), ("PROPOSAL", 0.5), (" Negotiation", 0.8)]
                .into_iter()
                .map(|(name, p)| pb::PipelineStage {
                    name: name.into(),
                    win_probability: p,
                })
                .collect();
        })
        .await;
        let stored = server
            .admin()
            .await
            .get_tenant_settings(pb::GetTenantSettingsRequest::default())
            .await
            .expect("get settings")
            .into_inner()
            .settings
            .expect("settings");
        let names: Vec<&str> = stored
            .pipeline_stages
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names, ["prospecting", "proposal", "negotiation"], "{b}");
        ingest(
            &server,
            to_proto(vec![
                deal(
                    "d1",
                    DealStatus::Open,
                    1000,
                    "2024-03-05T00:00:00Z",
                    None,
                    Some(" Proposal "),
                    None,
                ),
                deal(
                    "d2",
                    DealStatus::Open,
                    2000,
                    "2024-03-06T00:00:00Z",
                    None,
                    Some("prospecting"),
                    None,
                ),
                stage("s1", "d2", " NEGOTIATION ", "2024-03-07T00:00:00Z"),
            ]),
        )
        .await;
        // d1 reached proposal (index 1), d2 negotiation (index 2): reached
        // prospecting 2, proposal 2, negotiation 1, won 0.
        let m = kpis(&server, kpis_request(march(), &["weighted_pipeline_value", "funnel"])).await;
        let funnel: Vec<(&str, i64)> = m
            .funnel
            .iter()
            .map(|f| (f.stage.as_str(), f.reached))
            .collect();
        assert_eq!(
            funnel,
            [("prospecting", 2), ("proposal", 2), ("negotiation", 1), ("won", 0)],
            "{b}"
        );
        // Open at end: d1 in proposal 0.5 × 1000 + d2 in negotiation 0.8 × 2000.
        assert_kpi(b, &m, "weighted_pipeline_value", Some(2100.0));
        let rows = try_breakdown(
            &server,
            breakdown_request(None, march(), pb::Dimension::Stage, &[]),
        )
        .await
        .expect("STAGE")
        .rows;
        let reached: Vec<(&str, Option<f64>)> = rows
            .iter()
            .map(|r| (r.key.as_str(), r.values[0].value))
            .collect();
        assert_eq!(
            reached,
            [
                ("prospecting", Some(2.0)),
                ("proposal", Some(2.0)),
                ("negotiation", Some(1.0)),
                ("won", Some(0.0)),
            ],
            "{b}"
        );
        server.stop().await;
    }
}

// ---- series, breakdowns, freshness, time zones, fiscal years -----------------------

backend_tests! {
    /// GetKpiSeries: consecutive months, every one present; an empty month has
    /// zero counts and sums and undefined ratios and means (with reasons), while
    /// states (MRR, open pipeline) carry on.
    #[tokio::test]
    async fn series_has_every_period_zero_filled(server: TestServer) {
        let b = server.backend;
        ingest(&server, rich()).await;
        let bundles = server
            .kpi()
            .await
            .get_kpi_series(pb::GetKpiSeriesRequest {
                scope: None,
                granularity: pb::Granularity::Month as i32,
                first_period_date: date(2024, 2, 5),
                period_count: 4,
                kpi_ids: vec![],
                comparison: 0,
                time_zone: String::new(),
            })
            .await
            .expect("series")
            .into_inner()
            .bundles;
        let starts: Vec<_> = bundles
            .iter()
            .map(|x| x.period.clone().expect("period").start_date)
            .collect();
        assert_eq!(
            starts,
            [
                date(2024, 2, 1),
                date(2024, 3, 1),
                date(2024, 4, 1),
                date(2024, 5, 1)
            ],
            "{b}"
        );
        let revenue: Vec<Option<i64>> = bundles
            .iter()
            .map(|x| value(x, "revenue").exact_value)
            .collect();
        assert_eq!(revenue, [Some(999), Some(2100), Some(0), Some(0)]);
        // March in the series equals March alone.
        for (id, want) in testkit::rich::MARCH {
            assert_kpi(b, &bundles[1], id, *want);
        }
        // April: only a10 (Apr 1 00:00) happened.
        assert_kpi(b, &bundles[2], "activities", Some(1.0));
        let may = &bundles[3];
        for id in [
            "revenue",
            "orders",
            "bookings",
            "deals_won",
            "deals_lost",
            "deals_created",
            "new_customers",
            "churned_customers",
            "leads_created",
            "referrals",
            "activities",
            "calls",
            "time_on_activities",
            "revenue_target",
            "bookings_target",
            "churned_mrr",
        ] {
            assert_kpi(b, may, id, Some(0.0));
            assert_eq!(value(may, id).exact_value, Some(0), "{b}: {id}");
        }
        for id in [
            "revenue_growth",
            "average_order_value",
            "win_rate",
            "average_deal_size",
            "sales_cycle",
            "csat",
            "csat_average",
            "upsell_cross_sell_rate",
            "lead_conversion_rate",
            "lead_response_time",
            "activities_per_deal_won",
            "inquiry_response_time",
            "revenue_target_attainment",
            "pipeline_coverage",
        ] {
            assert_kpi(b, may, id, None);
        }
        // States carry on: c1 150 + c2 80; dD + dE still open; three customers.
        assert_kpi(b, may, "mrr", Some(230.0));
        assert_kpi(b, may, "pipeline_value", Some(13000.0));
        assert_kpi(b, may, "active_customers", Some(3.0));
        // With PREVIOUS_PERIOD each bundle compares with the month before it.
        let compared = server
            .kpi()
            .await
            .get_kpi_series(pb::GetKpiSeriesRequest {
                scope: None,
                granularity: pb::Granularity::Month as i32,
                first_period_date: date(2024, 2, 5),
                period_count: 3,
                kpi_ids: vec!["revenue".into()],
                comparison: pb::Comparison::PreviousPeriod as i32,
                time_zone: String::new(),
            })
            .await
            .expect("series with comparison")
            .into_inner()
            .bundles;
        let pairs: Vec<(Option<f64>, Option<f64>)> = compared
            .iter()
            .map(|x| (x.values[0].value, x.values[0].comparison_value))
            .collect();
        // January 0 → Feb 999 → Mar 2100 → Apr 0
        assert_eq!(
            pairs,
            [
                (Some(999.0), Some(0.0)),
                (Some(2100.0), Some(999.0)),
                (Some(0.0), Some(2100.0))
            ],
            "{b}"
        );
        assert_eq!(compared[2].values[0].relative_change, Some(-1.0));
        // The funnel is present in every bundle; May's is all zeros.
        assert!(bundles.iter().all(|x| x.funnel.len() == 5));
        assert!(
            may.funnel
                .iter()
                .all(|f| f.reached == 0 && f.leakage.is_none())
        );
        server.stop().await;
    }
}

backend_tests! {
    /// GetBreakdown by REP, TEAM, LEAD_SOURCE, ACTIVITY_TYPE and STAGE on the
    /// rich fixture, paged.
    #[tokio::test]
    async fn breakdowns_by_every_dimension_with_paging(server: TestServer) {
        use pb::Dimension as D;
        let b = server.backend;
        ingest(&server, rich()).await;
        let keys = |r: &pb::GetBreakdownResponse| -> Vec<String> {
            r.rows.iter().map(|row| row.key.clone()).collect()
        };
        let revenues = |r: &pb::GetBreakdownResponse| -> Vec<Option<i64>> {
            r.rows.iter().map(|row| row.values[0].exact_value).collect()
        };

        // REP (COMPANY), two per page: r1, r2 | r3, with names as labels.
        let mut req = breakdown_request(None, march(), D::Rep, &["revenue"]);
        req.page_size = 2;
        let first = try_breakdown(&server, req.clone()).await.expect("REP");
        assert_eq!(keys(&first), ["r1", "r2"], "{b}");
        assert_eq!(first.rows[0].label, "Rep r1");
        assert_eq!(revenues(&first), [Some(1000), Some(500)]);
        assert!(!first.next_page_token.is_empty());
        req.page_token = first.next_page_token.clone();
        let second = try_breakdown(&server, req).await.expect("REP page 2");
        assert_eq!(keys(&second), ["r3"]);
        assert_eq!(revenues(&second), [Some(500)]);
        assert!(second.next_page_token.is_empty());
        // REP (TEAM west): r3 was in west at start; all KPIs when none named.
        let west = try_breakdown(
            &server,
            breakdown_request(team_scope("west"), march(), D::Rep, &[]),
        )
        .await
        .expect("REP west");
        assert_eq!(keys(&west), ["r3"]);
        assert_eq!(west.rows[0].values.len(), testkit::rich::MARCH.len());

        // TEAM (COMPANY): the roots; TEAM(east): its child east-a.
        let roots = try_breakdown(
            &server,
            breakdown_request(None, march(), D::Team, &["revenue", "active_reps"]),
        )
        .await
        .expect("TEAM");
        assert_eq!(keys(&roots), ["east", "west"], "{b}");
        assert_eq!(revenues(&roots), [Some(1700), Some(300)]);
        assert_eq!(roots.rows[0].values[1].value, Some(3.0));
        assert_eq!(roots.rows[0].label, "Team east");
        let children = try_breakdown(
            &server,
            breakdown_request(team_scope("east"), march(), D::Team, &["revenue"]),
        )
        .await
        .expect("TEAM east");
        assert_eq!(keys(&children), ["east-a"]);
        assert_eq!(revenues(&children), [Some(500)]);

        // LEAD_SOURCE: referral (l1), web (l2, l3).
        let sources = try_breakdown(
            &server,
            breakdown_request(None, march(), D::LeadSource, &[]),
        )
        .await
        .expect("LEAD_SOURCE");
        assert_eq!(keys(&sources), ["referral", "web"], "{b}");
        let cells = |row: &pb::BreakdownRow| -> Vec<(String, Option<f64>)> {
            row.values
                .iter()
                .map(|v| (v.kpi_id.clone(), v.value))
                .collect()
        };
        // referral: l1 converted, answered after 3600 s
        assert_eq!(
            cells(&sources.rows[0]),
            [
                ("leads_created".to_string(), Some(1.0)),
                ("lead_conversion_rate".to_string(), Some(1.0)),
                ("lead_response_time".to_string(), Some(3600.0)),
            ]
        );
        // web: l2 (answered after 7200 s), l3 (converted in April)
        assert_eq!(
            cells(&sources.rows[1]),
            [
                ("leads_created".to_string(), Some(2.0)),
                ("lead_conversion_rate".to_string(), Some(0.5)),
                ("lead_response_time".to_string(), Some(7200.0)),
            ]
        );
        // A REP scope's lead sources: r2 has l2 only.
        let r2 = try_breakdown(
            &server,
            breakdown_request(rep_scope("r2"), march(), D::LeadSource, &[]),
        )
        .await
        .expect("LEAD_SOURCE r2");
        assert_eq!(keys(&r2), ["web"]);

        // ACTIVITY_TYPE: eight rows in type order, five then three.
        let mut req = breakdown_request(None, march(), D::ActivityType, &[]);
        req.page_size = 5;
        let first = try_breakdown(&server, req.clone()).await.expect("TYPE");
        assert_eq!(
            keys(&first),
            ["CALL", "EMAIL", "MEETING", "FOLLOW_UP", "PROPOSAL"],
            "{b}"
        );
        // CALL: a1 600 s + a9 120 s; EMAIL: a2 without duration
        assert_eq!(
            cells(&first.rows[0]),
            [
                ("activities".to_string(), Some(2.0)),
                ("time_on_activities".to_string(), Some(720.0)),
            ]
        );
        assert_eq!(first.rows[1].values[1].value, Some(0.0));
        req.page_token = first.next_page_token.clone();
        let second = try_breakdown(&server, req).await.expect("TYPE page 2");
        assert_eq!(keys(&second), ["DEMO", "NETWORKING_EVENT", "SOCIAL"]);
        assert!(second.next_page_token.is_empty());
        // NETWORKING_EVENT: a7 7200 s
        assert_eq!(second.rows[1].values[1].value, Some(7200.0));

        // STAGE: cohort dB (won), dC (prospecting), dD (proposal).
        let stages = try_breakdown(&server, breakdown_request(None, march(), D::Stage, &[]))
            .await
            .expect("STAGE");
        let reached: Vec<Option<f64>> = stages.rows.iter().map(|r| r.values[0].value).collect();
        assert_eq!(
            reached,
            testkit::rich::MARCH_FUNNEL_REACHED.map(|n| Some(n as f64)),
            "{b}"
        );
        // leakage(0) = 1 − 2/3
        assert!(close(stages.rows[0].values[1].value, 1.0 / 3.0));
        server.stop().await;
    }
}

backend_tests! {
    /// A KPI reflects a batch acknowledged just before; replacing an order and
    /// deleting one change revenue accordingly.
    #[tokio::test]
    async fn kpis_reflect_upserts_and_deletes_at_once(server: TestServer) {
        let b = server.backend;
        let revenue = |bundle: &pb::KpiBundle| value(bundle, "revenue").exact_value;
        let ids = ["revenue", "orders", "bookings"];
        let fresh = kpis(&server, kpis_request(march(), &ids)).await;
        assert_eq!(revenue(&fresh), Some(0), "{b}");

        ingest(&server, rich()).await;
        let loaded = kpis(&server, kpis_request(march(), &ids)).await;
        assert_eq!(revenue(&loaded), Some(2100), "{b}");

        // Replace o1 (1000 in March) with 4000: 2100 − 1000 + 4000.
        ingest(
            &server,
            vec![order(
                "o1",
                4000,
                "2024-03-05T00:00:00Z",
                Some("r1"),
                pb::OrderKind::New,
                Some("c1"),
            )],
        )
        .await;
        let replaced = kpis(&server, kpis_request(march(), &ids)).await;
        assert_eq!(revenue(&replaced), Some(5100), "{b}");
        assert_kpi(b, &replaced, "orders", Some(5.0));

        // Move o6 (999, February) into March: + 999, one more order.
        ingest(
            &server,
            vec![sale("o6", 999, "2024-03-31T23:59:59Z", Some("r1"))],
        )
        .await;
        let moved = kpis(&server, kpis_request(march(), &ids)).await;
        assert_eq!(revenue(&moved), Some(6099), "{b}");

        // Delete o2 (500) and won deal dB (2000); an unknown id is ignored.
        let mut client = server.ingest().await;
        for (record_type, ids) in [
            (pb::RecordType::Order, vec!["o2", "nope"]),
            (pb::RecordType::Deal, vec!["dB"]),
        ] {
            client
                .delete_records(pb::DeleteRecordsRequest {
                    record_type: record_type as i32,
                    ids: ids.into_iter().map(String::from).collect(),
                })
                .await
                .expect("delete");
        }
        let deleted = kpis(&server, kpis_request(march(), &ids)).await;
        assert_eq!(revenue(&deleted), Some(5599), "{b}");
        assert_kpi(b, &deleted, "orders", Some(5.0));
        assert_kpi(b, &deleted, "bookings", Some(4000.0));

        // Writing a deleted id again brings it back.
        ingest(
            &server,
            vec![order(
                "o2",
                500,
                "2024-03-06T00:00:00Z",
                Some("r2"),
                pb::OrderKind::Upsell,
                Some("c1"),
            )],
        )
        .await;
        let back = kpis(&server, kpis_request(march(), &ids)).await;
        assert_eq!(revenue(&back), Some(6099), "{b}");
        server.stop().await;
    }
}

/// The testkit's orders either side of both New York boundaries of March
/// 2024 (the engine's DST test).
fn dst_orders() -> Vec<pb::Record> {
    to_proto(periods::new_york_orders())
}

async fn update_settings(server: &TestServer, change: impl FnOnce(&mut pb::TenantSettings)) {
    let mut admin = server.admin().await;
    let mut settings = admin
        .get_tenant_settings(pb::GetTenantSettingsRequest::default())
        .await
        .expect("get settings")
        .into_inner()
        .settings
        .expect("settings");
    change(&mut settings);
    admin
        .update_tenant_settings(pb::UpdateTenantSettingsRequest {
            tenant_id: String::new(),
            settings: Some(settings),
        })
        .await
        .expect("update settings");
}

backend_tests! {
    /// America/New_York in March 2024: the month runs from 05:00Z (EST) to
    /// 04:00Z (EDT) and Mar 10 is 23 hours long; the zone comes from the
    /// request's override or from the tenant's settings (AdminService).
    #[tokio::test]
    async fn dst_month_in_new_york_by_override_and_by_settings(server: TestServer) {
        let b = server.backend;
        ingest(&server, dst_orders()).await;
        let request = |tz: &str, period| {
            let mut req = kpis_request(period, &["revenue"]);
            req.time_zone = tz.into();
            req
        };
        // A UTC tenant: before 1 + first 10 in March.
        let utc = kpis(&server, request("", march())).await;
        assert_kpi(b, &utc, "revenue", Some(periods::UTC_MARCH_REVENUE));
        assert_eq!(utc.period.clone().expect("period").time_zone, "UTC");

        // The request's override: first 10 + last 100.
        let ny = kpis(&server, request("America/New_York", march())).await;
        assert_kpi(b, &ny, "revenue", Some(periods::NEW_YORK_MARCH_REVENUE));
        let period = ny.period.expect("period");
        assert_eq!(period.time_zone, "America/New_York");
        assert_eq!(period.start, ts("2024-03-01T05:00:00Z"));
        assert_eq!(period.end, ts("2024-04-01T04:00:00Z"));
        let dst_day = kpis(
            &server,
            request(
                "America/New_York",
                calendar(pb::Granularity::Day, 2024, 3, 10),
            ),
        )
        .await
        .period
        .expect("period");
        let hours =
            (dst_day.end.expect("end").seconds - dst_day.start.expect("start").seconds) / 3600;
        assert_eq!(hours, 23, "{b}");
        // Breakdowns take the override too.
        let mut req = breakdown_request(None, march(), pb::Dimension::Stage, &[]);
        req.time_zone = "America/New_York".into();
        let stages = try_breakdown(&server, req).await.expect("STAGE");
        let period = stages.period.expect("period");
        assert_eq!(period.start, ts("2024-03-01T05:00:00Z"), "{b}");
        assert_eq!(period.time_zone, "America/New_York");

        // The tenant's zone, set over AdminService.
        update_settings(&server, |s| {
            *s = settings_to_proto(&periods::new_york_settings())
        })
        .await;
        let tenant = kpis(&server, request("", march())).await;
        assert_kpi(b, &tenant, "revenue", Some(periods::NEW_YORK_MARCH_REVENUE));
        assert_eq!(tenant.period.expect("period").time_zone, "America/New_York");
        // February in New York ends at Mar 1 05:00Z: "before" is in it.
        let feb = kpis(&server, request("", month(2024, 2))).await;
        assert_kpi(b, &feb, "revenue", Some(periods::NEW_YORK_FEBRUARY_REVENUE));
        // An override beats the tenant's zone.
        let back = kpis(&server, request("UTC", march())).await;
        assert_kpi(b, &back, "revenue", Some(periods::UTC_MARCH_REVENUE));
        server.stop().await;
    }
}

backend_tests! {
    /// A fiscal year starting in April (tenant settings): FY containing
    /// 2024-03-15 is 2023-04-01..2024-04-01.
    #[tokio::test]
    async fn fiscal_year_starting_in_april(server: TestServer) {
        let b = server.backend;
        ingest(&server, to_proto(periods::fiscal_year())).await;
        update_settings(&server, |s| {
            *s = settings_to_proto(&periods::fiscal_year_settings())
        })
        .await;
        let ids = ["revenue", "revenue_growth", "revenue_target"];
        let mut req = kpis_request(calendar(pb::Granularity::FiscalYear, 2024, 3, 15), &ids);
        req.comparison = pb::Comparison::PreviousPeriod as i32;
        let fy = kpis(&server, req).await;
        let period = fy.period.clone().expect("period");
        assert_eq!(
            (period.start_date, period.end_date),
            (date(2023, 4, 1), date(2024, 4, 1)),
            "{b}"
        );
        for (id, want) in periods::FISCAL_YEAR {
            assert_kpi(b, &fy, id, *want);
        }
        assert_eq!(value(&fy, "revenue").comparison_value, Some(100.0));
        let previous = fy.comparison_period.expect("comparison");
        assert_eq!(previous.start_date, date(2022, 4, 1));
        // Fiscal Q4 (Jan..Mar 2024): 91 of 366 days of the target.
        let q4 = kpis(
            &server,
            kpis_request(calendar(pb::Granularity::FiscalQuarter, 2024, 3, 15), &ids),
        )
        .await;
        let period = q4.period.clone().expect("period");
        assert_eq!(
            (period.start_date, period.end_date),
            (date(2024, 1, 1), date(2024, 4, 1))
        );
        for (id, want) in periods::FISCAL_Q4 {
            assert_kpi(b, &q4, id, *want);
        }
        server.stop().await;
    }
}

// ---- request handling (formerly handler unit tests on an in-memory store) -------

/// A team `east`; rep r1 with a Rep record and no team; r2 only named by a
/// membership (east) and orders; o3 has no rep and falls on Feb 29 in New York.
fn small() -> Vec<pb::Record> {
    vec![
        team("east", None),
        rep("r1"),
        member("m1", "r2", Some("east"), "2024-01-01T00:00:00Z"),
        sale("o1", 100, "2024-03-10T00:00:00Z", Some("r2")),
        sale("o2", 50, "2024-02-10T00:00:00Z", Some("r2")),
        // 2024-03-01T02:00Z is Feb 29 in New York
        sale("o3", 7, "2024-03-01T02:00:00Z", None),
    ]
}

backend_tests! {
    #[tokio::test]
    async fn get_kpis_returns_values_in_catalog_order_with_comparison(server: TestServer) {
        ingest(&server, small()).await;
        let mut req = kpis_request(march(), &["orders", "revenue", "funnel"]);
        req.comparison = pb::Comparison::PreviousPeriod as i32;
        let bundle = kpis(&server, req).await;
        let ids: Vec<&str> = bundle.values.iter().map(|v| v.kpi_id.as_str()).collect();
        assert_eq!(ids, ["revenue", "orders"], "{}", server.backend);
        // March (UTC): o1 100 + o3 7; February: o2 50 → (107 − 50) ÷ 50
        let revenue = &bundle.values[0];
        assert_eq!(revenue.exact_value, Some(107));
        assert_eq!(revenue.unit, pb::Unit::Money as i32);
        assert_eq!(revenue.comparison_value, Some(50.0));
        assert_eq!(revenue.relative_change, Some(57.0 / 50.0));
        assert_eq!(bundle.funnel.len(), 5);
        assert_eq!(bundle.currency_code, "USD");
        assert_eq!(
            bundle.scope.expect("scope").kind,
            pb::ScopeKind::Company as i32
        );
        let period = bundle.period.expect("period");
        assert_eq!(period.time_zone, "UTC");
        assert_eq!(period.start_date, date(2024, 3, 1));
        assert!(bundle.comparison_period.is_some());
        server.stop().await;
    }
}

backend_tests! {
    #[tokio::test]
    async fn invalid_arguments_name_their_field(server: TestServer) {
        ingest(&server, small()).await;
        let invalid = |err: Status| {
            assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
            field_of(&err)
        };
        let mut req = kpis_request(march(), &["revenue"]);
        req.time_zone = "Mars/Olympus".into();
        let err = try_kpis(&server, req).await.expect_err("bad zone");
        assert_eq!(invalid(err), "time_zone", "{}", server.backend);

        let err = try_kpis(&server, kpis_request(march(), &["revenue", "nope"]))
            .await
            .expect_err("bad id");
        assert_eq!(invalid(err), "kpi_ids[1]");

        let inverted = Some(pb::Period {
            period: Some(pb::period::Period::Custom(pb::DateRange {
                start_date: date(2024, 3, 10),
                end_date: date(2024, 3, 1),
            })),
        });
        let err = try_kpis(&server, kpis_request(inverted, &[]))
            .await
            .expect_err("inverted");
        assert_eq!(invalid(err), "period.custom");

        let err = try_kpis(&server, kpis_request(None, &[]))
            .await
            .expect_err("no period");
        assert_eq!(invalid(err), "period");

        let err = try_kpis(
            &server,
            kpis_request(calendar(pb::Granularity::Month, 2024, 2, 30), &[]),
        )
        .await
        .expect_err("bad date");
        assert_eq!(invalid(err), "period.calendar.date");

        let err = try_kpis(
            &server,
            kpis_request(calendar(pb::Granularity::Unspecified, 2024, 3, 1), &[]),
        )
        .await
        .expect_err("no granularity");
        assert_eq!(invalid(err), "period.calendar.granularity");

        let mut req = kpis_request(march(), &[]);
        req.comparison = 99;
        let err = try_kpis(&server, req).await.expect_err("bad comparison");
        assert_eq!(invalid(err), "comparison");

        let mut req = kpis_request(march(), &[]);
        req.scope = scope(pb::ScopeKind::Rep, " ");
        let err = try_kpis(&server, req).await.expect_err("no rep id");
        assert_eq!(invalid(err), "scope.id");

        // Breakdowns: the funnel is not a row KPI; dimension required.
        let err = try_breakdown(
            &server,
            breakdown_request(None, march(), pb::Dimension::Rep, &["funnel"]),
        )
        .await
        .expect_err("funnel in a breakdown");
        assert_eq!(invalid(err), "kpi_ids[0]");
        let err = try_breakdown(
            &server,
            breakdown_request(None, march(), pb::Dimension::Unspecified, &[]),
        )
        .await
        .expect_err("no dimension");
        assert_eq!(invalid(err), "dimension");
        server.stop().await;
    }
}

backend_tests! {
    /// Requests are validated before the data is looked at: a request that is
    /// both malformed and names an unknown team is INVALID_ARGUMENT, not
    /// NOT_FOUND; and on PostgreSQL, with the database gone, a bad request is
    /// still INVALID_ARGUMENT while a good one fails with the store.
    #[tokio::test]
    async fn bad_requests_are_rejected_before_touching_data(server: TestServer) {
        ingest(&server, small()).await;
        let mut req = kpis_request(march(), &["nope"]);
        req.scope = team_scope("nowhere");
        let err = try_kpis(&server, req).await.expect_err("bad id");
        assert_eq!(err.code(), Code::InvalidArgument, "{}", server.backend);

        if server.backend == "postgres" {
            // Drop the database under the running server.
            db::drop_postgres(&server.database_url).await;
            let err = try_kpis(&server, kpis_request(march(), &["nope"]))
                .await
                .expect_err("bad id");
            assert_eq!(err.code(), Code::InvalidArgument);
            let mut req = kpis_request(march(), &[]);
            req.scope = team_scope("");
            let err = try_kpis(&server, req).await.expect_err("no team id");
            assert_eq!(field_of(&err), "scope.id");
            // A valid request does reach the (missing) database.
            let err = try_kpis(&server, kpis_request(march(), &[]))
                .await
                .expect_err("database gone");
            assert!(
                matches!(err.code(), Code::Unavailable | Code::Internal),
                "{err:?}"
            );
        }
        server.stop().await;
    }
}

backend_tests! {
    #[tokio::test]
    async fn unknown_team_or_rep_is_not_found(server: TestServer) {
        ingest(&server, small()).await;
        let scoped = |s| {
            let mut req = kpis_request(march(), &["revenue"]);
            req.scope = s;
            req
        };
        for unknown in [team_scope("west"), rep_scope("ghost")] {
            let err = try_kpis(&server, scoped(unknown))
                .await
                .expect_err("unknown");
            assert_eq!(err.code(), Code::NotFound, "{}", server.backend);
        }
        let err = try_breakdown(
            &server,
            breakdown_request(team_scope("west"), march(), pb::Dimension::Rep, &[]),
        )
        .await
        .expect_err("unknown team");
        assert_eq!(err.code(), Code::NotFound);
        // r1 has a Rep record; r2 is only named by a membership and orders.
        let r1 = kpis(&server, scoped(rep_scope("r1"))).await;
        assert_eq!(value(&r1, "revenue").exact_value, Some(0));
        let r2 = kpis(&server, scoped(rep_scope("r2"))).await;
        assert_eq!(value(&r2, "revenue").exact_value, Some(100));
        let east = kpis(&server, scoped(team_scope("east"))).await;
        assert_eq!(value(&east, "revenue").exact_value, Some(100));
        // Deleting the team makes it unknown.
        server
            .ingest()
            .await
            .delete_records(pb::DeleteRecordsRequest {
                record_type: pb::RecordType::Team as i32,
                ids: vec!["east".into()],
            })
            .await
            .expect("delete team");
        let err = try_kpis(&server, scoped(team_scope("east")))
            .await
            .expect_err("deleted team");
        assert_eq!(err.code(), Code::NotFound);
        server.stop().await;
    }
}

backend_tests! {
    #[tokio::test]
    async fn series_checks_the_period_count_and_fills_every_period(server: TestServer) {
        ingest(&server, small()).await;
        let mut client = server.kpi().await;
        let req = |count| pb::GetKpiSeriesRequest {
            scope: None,
            granularity: pb::Granularity::Month as i32,
            first_period_date: date(2024, 1, 5),
            period_count: count,
            kpi_ids: vec!["revenue".into(), "average_order_value".into()],
            comparison: 0,
            time_zone: String::new(),
        };
        for bad in [0, 367, -1] {
            let err = client.get_kpi_series(req(bad)).await.expect_err("count");
            assert_eq!(field_of(&err), "period_count", "{}", server.backend);
        }
        let mut no_granularity = req(3);
        no_granularity.granularity = 0;
        let err = client
            .get_kpi_series(no_granularity)
            .await
            .expect_err("granularity");
        assert_eq!(field_of(&err), "granularity");
        let bundles = client
            .get_kpi_series(req(3))
            .await
            .expect("series")
            .into_inner()
            .bundles;
        let revenue: Vec<Option<i64>> = bundles.iter().map(|b| b.values[0].exact_value).collect();
        assert_eq!(revenue, [Some(0), Some(50), Some(107)]);
        // January: no orders → average undefined with a reason.
        assert_eq!(bundles[0].values[1].value, None);
        assert!(!bundles[0].values[1].undefined_reason.is_empty());
        // 366 periods is the most, and every one is there.
        let mut days = req(366);
        days.granularity = pb::Granularity::Day as i32;
        let days = client
            .get_kpi_series(days)
            .await
            .expect("366 days")
            .into_inner()
            .bundles;
        assert_eq!(days.len(), 366);
        let total: i64 = days.iter().filter_map(|b| b.values[0].exact_value).sum();
        assert_eq!(total, 157);
        server.stop().await;
    }
}

backend_tests! {
    #[tokio::test]
    async fn breakdown_pages_through_sorted_rows(server: TestServer) {
        ingest(&server, small()).await;
        let req = |size, token: &str| {
            let mut req = breakdown_request(None, march(), pb::Dimension::ActivityType, &[]);
            req.page_size = size;
            req.page_token = token.into();
            req
        };
        let first = try_breakdown(&server, req(5, "")).await.expect("page 1");
        assert_eq!(first.rows.len(), 5, "{}", server.backend);
        assert_eq!(first.rows[0].key, "CALL");
        let second = try_breakdown(&server, req(5, &first.next_page_token))
            .await
            .expect("page 2");
        assert_eq!(second.rows.len(), 3);
        assert!(second.next_page_token.is_empty());
        // A token past the end: an empty last page.
        let past = try_breakdown(&server, req(5, "offset:100"))
            .await
            .expect("past the end");
        assert!(past.rows.is_empty() && past.next_page_token.is_empty());
        let err = try_breakdown(&server, req(5, "garbage"))
            .await
            .expect_err("token");
        assert_eq!(field_of(&err), "page_token");
        let err = try_breakdown(&server, req(-1, "")).await.expect_err("size");
        assert_eq!(field_of(&err), "page_size");
        // REP breakdown (COMPANY): r2 has a team; no row for r1 (no team, no records).
        let rows = try_breakdown(
            &server,
            breakdown_request(None, march(), pb::Dimension::Rep, &["revenue"]),
        )
        .await
        .expect("REP")
        .rows;
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].key.as_str(), rows[0].values[0].exact_value),
            ("r2", Some(100))
        );
        server.stop().await;
    }
}

backend_tests! {
    /// Each server keeps a snapshot of the tenant's records between queries; a
    /// write or delete through another replica of the same database changes the
    /// tenant's data version, so the next query here sees it at once.
    #[tokio::test]
    async fn a_replica_sees_writes_made_through_another_at_once(writer: TestServer) {
        let b = writer.backend;
        // The reader: a second server on the same database ("replica" so that
        // stopping it leaves the database to the writer).
        let reader = TestServer::start(
            "replica",
            writer.database_url.clone(),
            salesmetrics::config::ServeConfig::for_database(""),
            None,
        )
        .await;
        let ids = ["revenue", "orders"];
        let revenue = |bundle: &pb::KpiBundle| value(bundle, "revenue").exact_value;
        ingest(&writer, rich()).await;
        // Twice from the reader: the second answer comes from its snapshot.
        for _ in 0..2 {
            let bundle = kpis(&reader, kpis_request(march(), &ids)).await;
            assert_eq!(revenue(&bundle), Some(2100), "{b}");
        }
        // o1 (1000 in March) becomes 4000 through the writer: 2100 − 1000 + 4000.
        ingest(
            &writer,
            vec![order(
                "o1",
                4000,
                "2024-03-05T00:00:00Z",
                Some("r1"),
                pb::OrderKind::New,
                Some("c1"),
            )],
        )
        .await;
        let bundle = kpis(&reader, kpis_request(march(), &ids)).await;
        assert_eq!(revenue(&bundle), Some(5100), "{b}");
        // Deleting o1 through the writer: 5100 − 4000; both servers agree.
        writer
            .ingest()
            .await
            .delete_records(pb::DeleteRecordsRequest {
                record_type: pb::RecordType::Order as i32,
                ids: vec!["o1".into()],
            })
            .await
            .expect("delete");
        let bundle = kpis(&reader, kpis_request(march(), &ids)).await;
        assert_eq!(revenue(&bundle), Some(1100), "{b}");
        assert_eq!(
            kpis(&writer, kpis_request(march(), &ids)).await,
            bundle,
            "{b}"
        );
        reader.stop().await;
        writer.stop().await;
    }
}

/// The snapshot cache keeps at most its capacity of tenants, and a cached
/// snapshot is reused until the tenant's data version changes.
#[tokio::test]
async fn the_snapshot_cache_is_bounded_and_versioned() {
    use salesmetrics::snapshot::SnapshotCache;
    let (_dir, url) = db::fresh_sqlite().await;
    let store = salesmetrics::store::connect(&url).await.expect("store");
    let settings = salesmetrics::domain::TenantSettings::default();
    for tenant in ["t1", "t2", "t3"] {
        store
            .create_tenant(tenant, &settings)
            .await
            .expect("tenant");
    }
    let cache = SnapshotCache::new(store.clone(), 2);
    let first = cache.get("t1").await.expect("t1");
    assert_eq!(first.version, 0);
    let again = cache.get("t1").await.expect("t1 again");
    assert!(std::sync::Arc::ptr_eq(&first, &again), "reused");
    cache.get("t2").await.expect("t2");
    cache.get("t3").await.expect("t3");
    assert_eq!(cache.len(), 2);

    let rep = salesmetrics::domain::Record::Rep(salesmetrics::domain::Rep {
        id: "r1".into(),
        version: None,
        name: "Ann".into(),
        email: None,
    });
    store.write("t1", &[rep], false).await.expect("write");
    let after = cache.get("t1").await.expect("t1 after a write");
    assert_eq!(after.version, 1);
    assert!(!std::sync::Arc::ptr_eq(&first, &after), "reloaded");
    assert_eq!(cache.len(), 2);
    // Off: nothing is kept.
    let off = SnapshotCache::new(store, 0);
    off.get("t1").await.expect("t1 uncached");
    assert!(off.is_empty());
}

/// With a byte budget the cache drops least recently used tenants until the
/// estimated bytes of what it keeps fit, but always keeps the tenant just
/// loaded; the gauge in /metrics follows.
#[tokio::test]
async fn the_snapshot_cache_keeps_within_its_byte_budget() {
    use salesmetrics::snapshot::{CacheLimits, SnapshotCache};
    let (_dir, url) = db::fresh_sqlite().await;
    let store = salesmetrics::store::connect(&url).await.expect("store");
    let settings = salesmetrics::domain::TenantSettings::default();
    // Tenants of 10, 20 and 30 reps: three snapshots of growing size.
    for (n, tenant) in [(10, "t1"), (20, "t2"), (30, "t3")] {
        store
            .create_tenant(tenant, &settings)
            .await
            .expect("tenant");
        let reps: Vec<_> = (0..n)
            .map(|i| {
                salesmetrics::domain::Record::Rep(salesmetrics::domain::Rep {
                    id: format!("{tenant}-rep-{i}").into(),
                    version: None,
                    name: format!("Rep {i}").into(),
                    email: None,
                })
            })
            .collect();
        store.write(tenant, &reps, false).await.expect("write");
    }
    // The estimates, from a cache without a byte limit.
    let unbounded = SnapshotCache::new(store.clone(), 16);
    let mut bytes = std::collections::HashMap::new();
    for tenant in ["t1", "t2", "t3"] {
        let snapshot = unbounded.get(tenant).await.expect("load");
        assert!(snapshot.bytes > 0, "{tenant}: {}", snapshot.bytes);
        bytes.insert(tenant, snapshot.bytes as u64);
    }
    assert!(
        bytes["t1"] < bytes["t2"] && bytes["t2"] < bytes["t3"],
        "{bytes:?}"
    );
    assert_eq!(unbounded.bytes(), bytes.values().sum::<u64>());

    // Room for t1 and t2, not for t3 beside either of them.
    let metrics = std::sync::Arc::new(salesmetrics::metrics::Metrics::new());
    let limits = CacheLimits {
        tenants: 16,
        bytes: bytes["t1"] + bytes["t2"],
    };
    let cache = SnapshotCache::with_limits(store.clone(), limits, metrics.clone());
    cache.get("t1").await.expect("t1");
    cache.get("t2").await.expect("t2");
    assert_eq!(cache.len(), 2);
    assert_eq!(cache.bytes(), bytes["t1"] + bytes["t2"]);
    let gauge = |metrics: &salesmetrics::metrics::Metrics| {
        let text = metrics.render(&[]);
        text.lines()
            .find_map(|l| l.strip_prefix("salesmetrics_snapshot_cache_bytes "))
            .map(|v| v.parse::<u64>().expect("number"))
    };
    assert_eq!(gauge(&metrics), Some(bytes["t1"] + bytes["t2"]));
    // t3 alone is over what is left: t1 (least recently used) and then t2 go.
    cache.get("t3").await.expect("t3");
    assert_eq!(cache.len(), 1);
    assert_eq!(cache.bytes(), bytes["t3"]);
    assert_eq!(gauge(&metrics), Some(bytes["t3"]));

    // A budget below one snapshot still keeps the tenant just loaded.
    let tiny = SnapshotCache::with_limits(
        store,
        CacheLimits {
            tenants: 16,
            bytes: 1,
        },
        metrics,
    );
    let first = tiny.get("t2").await.expect("t2");
    let again = tiny.get("t2").await.expect("t2 again");
    assert!(std::sync::Arc::ptr_eq(&first, &again), "kept and reused");
    tiny.get("t1").await.expect("t1");
    assert_eq!(tiny.len(), 1);
    assert_eq!(tiny.bytes(), bytes["t1"]);
}

/// `--max-page-size` clamps breakdown pages (and the default page).
#[tokio::test]
async fn the_breakdown_page_limit_is_configurable() {
    let (dir, url) = db::fresh_sqlite().await;
    let mut config = salesmetrics::config::ServeConfig::for_database("");
    config.max_page_size = 3;
    let server = TestServer::start("sqlite", url, config, Some(dir)).await;
    ingest(&server, small()).await;
    let mut keys = Vec::new();
    let mut token = String::new();
    for size in [5, 0, 3] {
        let mut req = breakdown_request(None, march(), pb::Dimension::ActivityType, &[]);
        req.page_size = size;
        req.page_token = token.clone();
        let page = try_breakdown(&server, req).await.expect("page");
        // 8 activity types: pages of 3, 3 and 2 whatever was asked.
        assert_eq!(page.rows.len(), if keys.len() < 6 { 3 } else { 2 });
        keys.extend(page.rows.into_iter().map(|r| r.key));
        token = page.next_page_token;
    }
    assert!(token.is_empty());
    assert_eq!(keys.len(), 8);
    assert_eq!(keys[0], "CALL");
    server.stop().await;
}

#[tokio::test]
async fn list_kpis_serves_the_catalog() {
    let server = TestServer::sqlite().await;
    let kpis = server
        .kpi()
        .await
        .list_kpis(pb::ListKpisRequest {})
        .await
        .expect("ListKpis")
        .into_inner()
        .kpis;
    assert_eq!(kpis.len(), salesmetrics::kpi::CATALOG.len() + 1);
    assert_eq!(kpis[0].id, "revenue");
    assert_eq!(kpis[0].direction, pb::Direction::HigherIsBetter as i32);
    assert_eq!(kpis[0].unit, pb::Unit::Money as i32);
    assert!(
        kpis.iter()
            .all(|k| !k.formula.is_empty() && !k.name.is_empty())
    );
    assert!(kpis.iter().any(|k| k.id == "funnel"));
    server.stop().await;
}
