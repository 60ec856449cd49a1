//! KpiService over real gRPC on SQLite and (with `TEST_DATABASE_URL`)
//! PostgreSQL, with every record ingested through `IngestBatch`: one
//! hand-computed value per KPI id, the SPEC Appendix examples, series,
//! breakdowns with paging, freshness after upserts and deletes, a DST month,
//! a fiscal year, request validation, and (in [`properties`]) property tests
//! that both backends and any write history give identical bundles.

mod properties;

use chrono::DateTime;
use prost_types::Timestamp;
use salesmetrics::proto::v1 as pb;
use salesmetrics::proto::v1::record::Record as R;
use tonic::{Code, Status};

use super::db;
use super::harness::TestServer;

// ---- record builders (proto messages, as a client sends them) ----------------

/// An RFC 3339 instant as a proto timestamp.
fn ts(s: &str) -> Option<Timestamp> {
    let t = DateTime::parse_from_rfc3339(s).expect("test instant");
    Some(Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    })
}

fn opt_ts(s: Option<&str>) -> Option<Timestamp> {
    s.and_then(ts)
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
        version: None,
        name: format!("Team {id}"),
        parent_team_id: s(parent),
    }))
}

fn member(id: &str, rep: &str, team: Option<&str>, at: &str) -> pb::Record {
    rec(R::TeamMembership(pb::TeamMembership {
        id: id.into(),
        version: None,
        rep_id: rep.into(),
        team_id: s(team),
        effective_at: ts(at),
    }))
}

fn rep(id: &str) -> pb::Record {
    rec(R::Rep(pb::Rep {
        id: id.into(),
        version: None,
        name: format!("Rep {id}"),
        email: String::new(),
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
        version: None,
        amount: usd(amount),
        ordered_at: ts(at),
        kind: kind as i32,
        customer_id: s(customer),
        rep_id: s(rep),
        deal_id: String::new(),
    }))
}

/// A NEW order without customer.
fn sale(id: &str, amount: i64, at: &str, rep: Option<&str>) -> pb::Record {
    order(id, amount, at, rep, pb::OrderKind::New, None)
}

fn customer(id: &str, acquired: &str, churned: Option<&str>, owner: Option<&str>) -> pb::Record {
    rec(R::Customer(pb::Customer {
        id: id.into(),
        version: None,
        acquired_at: ts(acquired),
        churned_at: opt_ts(churned),
        owner_rep_id: s(owner),
        source: String::new(),
        name: String::new(),
    }))
}

fn sub(id: &str, subscription: &str, customer: &str, mrr: i64, at: &str) -> pb::Record {
    rec(R::SubscriptionChange(pb::SubscriptionChange {
        id: id.into(),
        version: None,
        subscription_id: subscription.into(),
        customer_id: customer.into(),
        mrr: usd(mrr),
        effective_at: ts(at),
    }))
}

fn deal(
    id: &str,
    status: pb::DealStatus,
    amount: i64,
    created: &str,
    closed: Option<&str>,
    stage: Option<&str>,
    owner: Option<&str>,
) -> pb::Record {
    rec(R::Deal(pb::Deal {
        id: id.into(),
        version: None,
        amount: usd(amount),
        created_at: ts(created),
        status: status as i32,
        closed_at: opt_ts(closed),
        stage: s(stage),
        owner_rep_id: s(owner),
        customer_id: String::new(),
        lead_id: String::new(),
    }))
}

fn stage(id: &str, deal: &str, stage: &str, at: &str) -> pb::Record {
    rec(R::DealStageChange(pb::DealStageChange {
        id: id.into(),
        version: None,
        deal_id: deal.into(),
        stage: stage.into(),
        entered_at: ts(at),
    }))
}

fn lead(
    id: &str,
    source: &str,
    created: &str,
    responded: Option<&str>,
    converted: Option<&str>,
    owner: Option<&str>,
) -> pb::Record {
    rec(R::Lead(pb::Lead {
        id: id.into(),
        version: None,
        source: source.into(),
        created_at: ts(created),
        owner_rep_id: s(owner),
        first_response_at: opt_ts(responded),
        converted_at: opt_ts(converted),
        customer_id: String::new(),
    }))
}

fn activity(
    id: &str,
    rep: &str,
    kind: pb::ActivityType,
    at: &str,
    seconds: Option<i64>,
) -> pb::Record {
    rec(R::Activity(pb::Activity {
        id: id.into(),
        version: None,
        rep_id: rep.into(),
        r#type: kind as i32,
        occurred_at: ts(at),
        duration_seconds: seconds,
        lead_id: String::new(),
        deal_id: String::new(),
        customer_id: String::new(),
    }))
}

fn inquiry(id: &str, at: &str, responded: Option<&str>, rep: Option<&str>) -> pb::Record {
    rec(R::Inquiry(pb::Inquiry {
        id: id.into(),
        version: None,
        channel: "email".into(),
        received_at: ts(at),
        first_response_at: opt_ts(responded),
        customer_id: String::new(),
        rep_id: s(rep),
    }))
}

fn csat(id: &str, score: i32, at: &str, rep: Option<&str>) -> pb::Record {
    rec(R::CsatResponse(pb::CsatResponse {
        id: id.into(),
        version: None,
        score,
        responded_at: ts(at),
        customer_id: String::new(),
        rep_id: s(rep),
    }))
}

/// Whose target: the company, a team or a rep.
#[derive(Clone, Copy)]
enum Owner<'a> {
    Company,
    Team(&'a str),
    Rep(&'a str),
}

fn target(
    id: &str,
    metric: pb::TargetMetric,
    value: i64,
    from: Option<pb::Date>,
    to: Option<pb::Date>,
    owner: Owner<'_>,
) -> pb::Record {
    let (company, team_id, rep_id) = match owner {
        Owner::Company => (true, String::new(), String::new()),
        Owner::Team(t) => (false, t.to_string(), String::new()),
        Owner::Rep(r) => (false, String::new(), r.to_string()),
    };
    rec(R::Target(pb::Target {
        id: id.into(),
        version: None,
        metric: metric as i32,
        value,
        start_date: from,
        end_date: to,
        company,
        team_id,
        rep_id,
    }))
}

fn spend(
    id: &str,
    amount: i64,
    from: Option<pb::Date>,
    to: Option<pb::Date>,
    team: Option<&str>,
) -> pb::Record {
    rec(R::Spend(pb::Spend {
        id: id.into(),
        version: None,
        category: pb::SpendCategory::Marketing as i32,
        amount: usd(amount),
        start_date: from,
        end_date: to,
        team_id: s(team),
    }))
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

// ---- the rich fixture: every KPI, hand-computed ------------------------------

/// The engine unit tests' `rich()` fixture as proto records: March 2024 (UTC)
/// with three reps: r1 in `east`, r2 in `east-a` (a sub-team of `east`), r3 in
/// `west` until it joins `east` at Mar 16 00:00.
fn rich() -> Vec<pb::Record> {
    use pb::ActivityType::*;
    use pb::DealStatus::*;
    use pb::OrderKind::*;
    use pb::TargetMetric::*;
    let (r1, r2, r3) = (Some("r1"), Some("r2"), Some("r3"));
    vec![
        team("east", None),
        team("east-a", Some("east")),
        team("west", None),
        rep("r1"),
        rep("r2"),
        rep("r3"),
        member("m1", "r1", Some("east"), "2024-01-01T00:00:00Z"),
        member("m2", "r2", Some("east-a"), "2024-01-01T00:00:00Z"),
        member("m3", "r3", Some("west"), "2024-01-01T00:00:00Z"),
        member("m4", "r3", Some("east"), "2024-03-16T00:00:00Z"),
        // Customers.
        customer("c1", "2023-06-01T00:00:00Z", None, r1),
        customer("c2", "2024-03-08T00:00:00Z", None, r3),
        customer("c3", "2024-03-18T00:00:00Z", None, r3),
        customer(
            "c4",
            "2023-01-01T00:00:00Z",
            Some("2024-03-25T00:00:00Z"),
            r2,
        ),
        customer(
            "c5",
            "2023-05-01T00:00:00Z",
            Some("2024-02-10T00:00:00Z"),
            None,
        ),
        // Churned exactly at start: active at start (churned_at ≥ start) and churned in P.
        customer(
            "c6",
            "2024-02-01T00:00:00Z",
            Some("2024-03-01T00:00:00Z"),
            r1,
        ),
        // Subscriptions.
        sub("sc1", "sub-1", "c1", 100, "2024-01-01T00:00:00Z"),
        sub("sc2", "sub-1", "c1", 150, "2024-03-10T00:00:00Z"),
        sub("sc3", "sub-2", "c2", 80, "2024-03-09T00:00:00Z"),
        sub("sc4", "sub-3", "c4", 60, "2023-06-01T00:00:00Z"),
        sub("sc5", "sub-3", "c4", 0, "2024-03-25T00:00:00Z"),
        // Deals.
        deal(
            "dA",
            Won,
            4000,
            "2024-02-01T00:00:00Z",
            Some("2024-03-11T00:00:00Z"),
            Some("negotiation"),
            r1,
        ),
        deal(
            "dB",
            Won,
            2000,
            "2024-03-01T00:00:00Z",
            Some("2024-03-03T00:00:00Z"),
            Some("proposal"),
            r2,
        ),
        deal(
            "dC",
            Lost,
            1500,
            "2024-03-02T00:00:00Z",
            Some("2024-03-09T00:00:00Z"),
            Some("prospecting"),
            r3,
        ),
        deal(
            "dD",
            Open,
            10000,
            "2024-03-05T00:00:00Z",
            None,
            Some("proposal"),
            r1,
        ),
        deal(
            "dE",
            Open,
            3000,
            "2024-01-10T00:00:00Z",
            None,
            Some("qualification"),
            r2,
        ),
        stage("dE-1", "dE", "negotiation", "2024-04-02T00:00:00Z"),
        // Leads.
        lead(
            "l1",
            "referral",
            "2024-03-02T00:00:00Z",
            Some("2024-03-02T01:00:00Z"),
            Some("2024-03-20T00:00:00Z"),
            r1,
        ),
        lead(
            "l2",
            "web",
            "2024-03-03T00:00:00Z",
            Some("2024-03-03T02:00:00Z"),
            None,
            r2,
        ),
        lead(
            "l3",
            "web",
            "2024-03-04T00:00:00Z",
            None,
            Some("2024-04-05T00:00:00Z"),
            r3,
        ),
        lead("l4", "web", "2024-02-27T00:00:00Z", None, None, r1),
        // Activities.
        activity("a1", "r1", Call, "2024-03-02T00:00:00Z", Some(600)),
        activity("a2", "r1", Email, "2024-03-03T00:00:00Z", None),
        activity("a3", "r2", Meeting, "2024-03-04T00:00:00Z", Some(1800)),
        activity("a4", "r2", FollowUp, "2024-03-05T00:00:00Z", Some(300)),
        activity("a5", "r3", Proposal, "2024-03-06T00:00:00Z", Some(0)),
        activity("a6", "r3", Demo, "2024-03-07T00:00:00Z", Some(2400)),
        activity(
            "a7",
            "r1",
            NetworkingEvent,
            "2024-03-08T00:00:00Z",
            Some(7200),
        ),
        activity("a8", "r2", Social, "2024-03-09T00:00:00Z", Some(60)),
        activity("a9", "r1", Call, "2024-03-10T00:00:00Z", Some(120)),
        activity("a10", "r1", Call, "2024-04-01T00:00:00Z", Some(100)),
        // Inquiries and CSAT.
        inquiry(
            "i1",
            "2024-03-05T00:00:00Z",
            Some("2024-03-05T00:20:00Z"),
            r1,
        ),
        inquiry(
            "i2",
            "2024-03-06T00:00:00Z",
            Some("2024-03-06T00:10:00Z"),
            None,
        ),
        inquiry("i3", "2024-03-07T00:00:00Z", None, r2),
        csat("cs1", 5, "2024-03-03T00:00:00Z", r1),
        csat("cs2", 4, "2024-03-04T00:00:00Z", r2),
        csat("cs3", 2, "2024-03-05T00:00:00Z", r3),
        csat("cs4", 3, "2024-03-06T00:00:00Z", None),
        // Targets.
        target(
            "T1",
            Revenue,
            6200,
            date(2024, 3, 1),
            date(2024, 4, 1),
            Owner::Company,
        ),
        target(
            "T2",
            Bookings,
            9000,
            date(2024, 2, 1),
            date(2024, 5, 1),
            Owner::Company,
        ),
        target(
            "T3",
            NewCustomers,
            4,
            date(2024, 3, 1),
            date(2024, 4, 1),
            Owner::Company,
        ),
        target(
            "T4",
            DealsWon,
            4,
            date(2024, 3, 1),
            date(2024, 4, 1),
            Owner::Company,
        ),
        target(
            "T5",
            Revenue,
            1000,
            date(2024, 3, 1),
            date(2024, 4, 1),
            Owner::Rep("r1"),
        ),
        target(
            "T6",
            Revenue,
            620,
            date(2024, 3, 16),
            date(2024, 4, 16),
            Owner::Rep("r2"),
        ),
        target(
            "T7",
            Revenue,
            3100,
            date(2024, 3, 1),
            date(2024, 4, 1),
            Owner::Rep("r3"),
        ),
        target(
            "T8",
            Revenue,
            1000,
            date(2024, 3, 1),
            date(2024, 4, 1),
            Owner::Team("east"),
        ),
        // Spend.
        spend("s1", 3100, date(2024, 3, 1), date(2024, 4, 1), None),
        spend(
            "s2",
            580,
            date(2024, 2, 16),
            date(2024, 3, 16),
            Some("east"),
        ),
        // Orders.
        order("o1", 1000, "2024-03-05T00:00:00Z", r1, New, Some("c1")),
        order("o2", 500, "2024-03-06T00:00:00Z", r2, Upsell, Some("c1")),
        order("o3", 300, "2024-03-10T00:00:00Z", r3, New, Some("c2")),
        order("o4", 200, "2024-03-20T00:00:00Z", r3, CrossSell, Some("c3")),
        order("o5", 100, "2024-03-21T00:00:00Z", None, New, None),
        order("o6", 999, "2024-02-20T00:00:00Z", r1, New, Some("c1")),
    ]
}

/// Every catalog KPI on [`rich`], COMPANY scope, March 2024, computed by hand
/// (the same table as the engine's `every_kpi_has_a_hand_computed_value`).
const RICH_MARCH: &[(&str, Option<f64>)] = &[
    // o1..o5 in March: 1000 + 500 + 300 + 200 + 100 (o6 is in February)
    ("revenue", Some(2100.0)),
    // February revenue is o6 = 999: (2100 − 999) ÷ 999
    ("revenue_growth", Some(1101.0 / 999.0)),
    ("orders", Some(5.0)),
    // 2100 ÷ 5
    ("average_order_value", Some(420.0)),
    // dA 4000 (closed Mar 11) + dB 2000 (closed Mar 3)
    ("bookings", Some(6000.0)),
    ("deals_won", Some(2.0)),
    // dC
    ("deals_lost", Some(1.0)),
    // 2 ÷ (2 + 1)
    ("win_rate", Some(2.0 / 3.0)),
    // 6000 ÷ 2
    ("average_deal_size", Some(3000.0)),
    // dA: Feb 1 → Mar 11 = 39 days (leap year); dB: 2 days; mean 20.5 days
    ("sales_cycle", Some(20.5 * 86_400.0)),
    // dB, dC, dD (dA created Feb 1, dE Jan 10)
    ("deals_created", Some(3.0)),
    // open at end: dD 10000 + dE 3000
    ("pipeline_value", Some(13000.0)),
    // dD proposal 0.5 → 5000; dE qualification at end (its negotiation change is Apr 2) 0.2 → 600
    ("weighted_pipeline_value", Some(5600.0)),
    // 13000 ÷ (6200 − 2100)
    ("pipeline_coverage", Some(13000.0 / 4100.0)),
    // T1 only (T5..T8 are other scopes' targets): 6200 × 31/31
    ("revenue_target", Some(6200.0)),
    // T2: 9000 × 31 ÷ 90 (Feb 1..May 1 = 29 + 31 + 30 days)
    ("bookings_target", Some(3100.0)),
    // 2100 ÷ 6200
    ("revenue_target_attainment", Some(2100.0 / 6200.0)),
    // 6000 ÷ 3100
    ("bookings_target_attainment", Some(6000.0 / 3100.0)),
    // new customers c2, c3 = 2; T3 = 4
    ("new_customers_target_attainment", Some(0.5)),
    // 2 ÷ T4 4
    ("deals_won_target_attainment", Some(0.5)),
    // r1 1000 ≥ 1000 ✓; r2 500 ≥ 620 × 16/31 = 320 ✓; r3 300 + 200 = 500 < 3100 ✗ → 2/3
    ("reps_at_quota", Some(2.0 / 3.0)),
    // scores 5, 4, 2, 3: two ≥ 4 of four
    ("csat", Some(0.5)),
    // 14 ÷ 4
    ("csat_average", Some(3.5)),
    // c2 (Mar 8), c3 (Mar 18)
    ("new_customers", Some(2.0)),
    // at end: c1, c2, c3 (c4 churned Mar 25, c6 at Mar 1, c5 in Feb)
    ("active_customers", Some(3.0)),
    // c4, c6
    ("churned_customers", Some(2.0)),
    // active at start: c1, c4, c6 (c6 churned_at = start is still active at start); churned in P: c4, c6
    ("customer_churn_rate", Some(2.0 / 3.0)),
    // of c1, c4, c6 only c1 is active at end
    ("customer_retention_rate", Some(1.0 / 3.0)),
    // customers with orders: c1, c2, c3 (o5 has none); with UPSELL/CROSS_SELL: c1 (o2), c3 (o4)
    ("upsell_cross_sell_rate", Some(2.0 / 3.0)),
    // spend: s1 3100 + s2 580 × 15/29 = 300 (Feb 16..Mar 16 is 29 days, 15 in March) → 3400 ÷ 2
    ("cac", Some(1700.0)),
    // (2100 ÷ ((3 + 3) ÷ 2)) × 1.0 ÷ (2/3) = 700 × 1.5
    ("clv", Some(1050.0)),
    // 1050 ÷ 1700
    ("clv_to_cac", Some(1050.0 / 1700.0)),
    // end: c1 150 + c2 80 (c4 cancelled Mar 25)
    ("mrr", Some(230.0)),
    // start: c1 100 + c4 60
    ("mrr_start", Some(160.0)),
    // 12 × 230
    ("arr", Some(2760.0)),
    // c2: 0 → 80, never paid before
    ("new_mrr", Some(80.0)),
    ("reactivation_mrr", Some(0.0)),
    // c1: 100 → 150
    ("expansion_mrr", Some(50.0)),
    ("contraction_mrr", Some(0.0)),
    // c4: 60 → 0
    ("churned_mrr", Some(60.0)),
    // 230 − 160 = 80 + 0 + 50 − 0 − 60
    ("net_new_mrr", Some(70.0)),
    // (60 + 0) ÷ 160
    ("mrr_churn_rate", Some(60.0 / 160.0)),
    // (160 + 50 − 0 − 60) ÷ 160
    ("net_revenue_retention", Some(150.0 / 160.0)),
    // 230 ÷ 2 paying customers
    ("arpa", Some(115.0)),
    // (80 + 0 + 50) ÷ (0 + 60)
    ("mrr_quick_ratio", Some(130.0 / 60.0)),
    // l1, l2, l3 (l4 is February)
    ("leads_created", Some(3.0)),
    // l1 and l3 (converted in April still counts: a cohort)
    ("lead_conversion_rate", Some(2.0 / 3.0)),
    // l1 3600 s, l2 7200 s; l3 has no response
    ("lead_response_time", Some(5400.0)),
    // l1 (source "referral")
    ("referrals", Some(1.0)),
    // a1..a9 (a10 is Apr 1 00:00 = end, excluded)
    ("activities", Some(9.0)),
    ("calls", Some(2.0)),
    ("emails", Some(1.0)),
    ("meetings", Some(1.0)),
    ("follow_ups", Some(1.0)),
    ("proposals_sent", Some(1.0)),
    ("demos", Some(1.0)),
    ("networking_events", Some(1.0)),
    ("social_interactions", Some(1.0)),
    // 600 + 0 (missing) + 1800 + 300 + 0 + 2400 + 7200 + 60 + 120
    ("time_on_activities", Some(12480.0)),
    // 9 ÷ 2
    ("activities_per_deal_won", Some(4.5)),
    // i1 1200 s, i2 600 s; i3 unanswered
    ("inquiry_response_time", Some(900.0)),
    // r1, r2, r3 all have a team during March
    ("active_reps", Some(3.0)),
    // 2100 ÷ 3
    ("revenue_per_rep", Some(700.0)),
    // 6000 ÷ 3
    ("bookings_per_rep", Some(2000.0)),
];

/// Every KPI id of `GetKpis` (all KPIs, with and without a comparison) on the
/// rich fixture, on every backend, against the hand-computed table; the
/// values are in `ListKpis` order and carry their units and fractions.
#[tokio::test]
async fn every_kpi_has_a_hand_computed_value_on_every_backend() {
    for server in TestServer::all().await {
        let b = server.backend;
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
        let table: Vec<&str> = RICH_MARCH.iter().map(|(id, _)| *id).collect();
        assert_eq!(table, catalog, "every KPI needs a hand-computed value here");

        let plain = kpis(&server, kpis_request(march(), &[])).await;
        let ids: Vec<&str> = plain.values.iter().map(|v| v.kpi_id.as_str()).collect();
        assert_eq!(ids, table, "{b}: all KPIs, in catalog order");
        for (id, want) in RICH_MARCH {
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
        assert_eq!(reached, [3, 2, 2, 1, 1], "{b}");

        // With PREVIOUS_PERIOD: the same values, plus February's.
        let mut req = kpis_request(march(), &[]);
        req.comparison = pb::Comparison::PreviousPeriod as i32;
        let compared = kpis(&server, req).await;
        for (id, want) in RICH_MARCH {
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
        // February by hand: o6 999; one order; dA created Feb 1; lead l4; c6
        // acquired Feb 1; c5 churned Feb 10; MRR at Mar 1 = c1 100 + c4 60.
        for (id, feb_value) in [
            ("revenue", 999.0),
            ("orders", 1.0),
            ("deals_created", 1.0),
            ("leads_created", 1.0),
            ("new_customers", 1.0),
            ("churned_customers", 1.0),
            ("mrr", 160.0),
            ("activities", 0.0),
        ] {
            let v = value(&compared, id);
            assert_eq!(v.comparison_value, Some(feb_value), "{b}: {id} {v:?}");
        }
        // (2100 − 999) ÷ 999; orders (5 − 1) ÷ 1; activities 9 vs 0: undefined.
        assert!(close(
            value(&compared, "revenue").relative_change,
            1101.0 / 999.0
        ));
        assert_eq!(value(&compared, "orders").relative_change, Some(4.0));
        assert_eq!(value(&compared, "activities").relative_change, None);
        // No deal closed in February: win rate undefined there, with a reason.
        let win = value(&compared, "win_rate");
        assert_eq!((win.comparison_value, win.relative_change), (None, None));
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

/// TEAM and REP scopes of the rich fixture over gRPC (the engine's
/// `team_and_rep_scopes_on_the_rich_fixture`).
#[tokio::test]
async fn team_and_rep_scopes_of_the_rich_fixture() {
    for server in TestServer::all().await {
        let b = server.backend;
        ingest(&server, rich()).await;
        let east = kpis_of(&server, team_scope("east"), march(), &[]).await;
        let west = kpis_of(&server, team_scope("west"), march(), &[]).await;
        let east_a = kpis_of(&server, team_scope("east-a"), march(), &[]).await;
        let r2 = kpis_of(&server, rep_scope("r2"), march(), &[]).await;
        let r3 = kpis_of(&server, rep_scope("r3"), march(), &[]).await;
        // east = east + east-a: r1 1000, r2 500 (sub-team), r3's o4 200 (after joining Mar 16)
        assert_kpi(b, &east, "revenue", Some(1700.0));
        // west: r3's o3 300 (Mar 10, before the move)
        assert_kpi(b, &west, "revenue", Some(300.0));
        assert_kpi(b, &east_a, "revenue", Some(500.0));
        assert_kpi(b, &r3, "revenue", Some(500.0));
        // active reps: east r1, r2, r3 (joined mid-March); west r3; east-a r2
        assert_kpi(b, &east, "active_reps", Some(3.0));
        assert_kpi(b, &west, "active_reps", Some(1.0));
        assert_kpi(b, &east_a, "active_reps", Some(1.0));
        // Targets count only for the scope they name: east T8, east-a none.
        assert_kpi(b, &east, "revenue_target", Some(1000.0));
        assert_kpi(b, &east_a, "revenue_target", Some(0.0));
        assert_kpi(b, &east_a, "revenue_target_attainment", None);
        // east: remainder 1000 − 1700 < 0 → pipeline_coverage undefined
        assert_kpi(b, &east, "pipeline_coverage", None);
        // r2's own target: 620 × 16/31 = 320
        assert_kpi(b, &r2, "revenue_target", Some(320.0));
        // reps_at_quota: east r1 ✓, r2 ✓, r3 ✗; west: nobody; r3: 0
        assert_kpi(b, &east, "reps_at_quota", Some(2.0 / 3.0));
        assert_kpi(b, &west, "reps_at_quota", None);
        assert_kpi(b, &r3, "reps_at_quota", Some(0.0));
        // east: new customer c3 (r3 in east on Mar 18); spend s2 300 in March
        assert_kpi(b, &east, "new_customers", Some(1.0));
        assert_kpi(b, &east, "cac", Some(300.0));
        assert_kpi(b, &west, "cac", Some(0.0));
        assert_kpi(b, &r2, "cac", None);
        // MRR follows the owner: c2 (r3, east at end) is new in east
        assert_kpi(b, &east, "new_mrr", Some(80.0));
        assert_kpi(b, &west, "mrr", Some(0.0));
        assert_kpi(b, &east, "mrr_start", Some(160.0));
        assert_kpi(b, &east, "mrr", Some(230.0));
        assert_kpi(b, &east, "customer_churn_rate", Some(2.0 / 3.0));
        assert_kpi(b, &west, "customer_churn_rate", None);
        assert_kpi(b, &east, "upsell_cross_sell_rate", Some(1.0));
        assert_kpi(b, &west, "upsell_cross_sell_rate", Some(0.0));
        server.stop().await;
    }
}

// ---- SPEC Appendix over gRPC ---------------------------------------------------

/// Appendix "A rep moves team".
#[tokio::test]
async fn appendix_rep_moves_team() {
    for server in TestServer::all().await {
        let b = server.backend;
        ingest(
            &server,
            vec![
                team("A", None),
                team("B", None),
                rep("r1"),
                member("m1", "r1", Some("A"), "2024-01-01T00:00:00Z"),
                member("m2", "r1", Some("B"), "2024-03-15T12:00:00Z"),
                sale("o1", 100, "2024-03-10T00:00:00Z", Some("r1")),
                // At its own instant the membership is not yet in force: still A.
                sale("o2", 50, "2024-03-15T12:00:00Z", Some("r1")),
                sale("o3", 200, "2024-03-20T00:00:00Z", Some("r1")),
            ],
        )
        .await;
        let ids = ["revenue", "active_reps", "revenue_per_rep"];
        let a = kpis_of(&server, team_scope("A"), march(), &ids).await;
        let bb = kpis_of(&server, team_scope("B"), march(), &ids).await;
        let r1 = kpis_of(&server, rep_scope("r1"), march(), &ids).await;
        let company = kpis_of(&server, None, march(), &ids).await;
        assert_kpi(b, &a, "revenue", Some(150.0));
        assert_kpi(b, &bb, "revenue", Some(200.0));
        assert_kpi(b, &r1, "revenue", Some(350.0));
        assert_kpi(b, &company, "revenue", Some(350.0));
        assert_kpi(b, &a, "active_reps", Some(1.0));
        assert_kpi(b, &bb, "active_reps", Some(1.0));
        assert_kpi(b, &company, "active_reps", Some(1.0));
        // February: r1 is in A all month, so B has no active rep.
        let feb = kpis_of(&server, team_scope("B"), month(2024, 2), &ids).await;
        assert_kpi(b, &feb, "active_reps", Some(0.0));
        assert_kpi(b, &feb, "revenue_per_rep", None);
        server.stop().await;
    }
}

/// The Appendix's MRR records: eight customers of r1.
fn appendix_mrr() -> Vec<pb::Record> {
    let o = Some("r1");
    let mut records = vec![rep("r1")];
    for c in ["c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8"] {
        records.push(customer(c, "2024-01-01T00:00:00Z", None, o));
    }
    records.extend([
        // c1 100 from Jan 10, 0 from Feb 10, 150 from Mar 5 → reactivation 150
        sub("c1-1", "s1", "c1", 100, "2024-01-10T00:00:00Z"),
        sub("c1-2", "s1", "c1", 0, "2024-02-10T00:00:00Z"),
        sub("c1-3", "s1", "c1", 150, "2024-03-05T00:00:00Z"),
        // c2 50 from Mar 3 → new 50
        sub("c2-1", "s2", "c2", 50, "2024-03-03T00:00:00Z"),
        // c3 200 from Jan 1, 250 from Mar 10 → expansion 50
        sub("c3-1", "s3", "c3", 200, "2024-01-01T00:00:00Z"),
        sub("c3-2", "s3", "c3", 250, "2024-03-10T00:00:00Z"),
        // c4 300 from Feb 1, 100 from Mar 12 → contraction 200
        sub("c4-1", "s4", "c4", 300, "2024-02-01T00:00:00Z"),
        sub("c4-2", "s4", "c4", 100, "2024-03-12T00:00:00Z"),
        // c5 80 from Feb 1, 0 from Mar 31 23:00 → churned 80
        sub("c5-1", "s5", "c5", 80, "2024-02-01T00:00:00Z"),
        sub("c5-2", "s5", "c5", 0, "2024-03-31T23:00:00Z"),
        // c6 subscription a 100 from Feb 1; on Mar 2 a → 0 and b → 100 → no movement
        sub("c6-a1", "s6a", "c6", 100, "2024-02-01T00:00:00Z"),
        sub("c6-a2", "s6a", "c6", 0, "2024-03-02T00:00:00Z"),
        sub("c6-b1", "s6b", "c6", 100, "2024-03-02T00:00:00Z"),
        // c7 0 from Feb 1 (trial), 60 from Mar 15 → new 60
        sub("c7-1", "s7", "c7", 0, "2024-02-01T00:00:00Z"),
        sub("c7-2", "s7", "c7", 60, "2024-03-15T00:00:00Z"),
        // c8 two changes at Feb 1 00:00: x-1 (500), x-2 (40) → 40; Apr 1 change not in force at end.
        // Sent in reverse id order: the tie rule, not arrival order, decides.
        sub("x-2", "s8", "c8", 40, "2024-02-01T00:00:00Z"),
        sub("x-1", "s8", "c8", 500, "2024-02-01T00:00:00Z"),
        sub("x-3", "s8", "c8", 900, "2024-04-01T00:00:00Z"),
    ]);
    records
}

/// Appendix "MRR movements": every number listed there, COMPANY and REP r1.
#[tokio::test]
async fn appendix_mrr_movements() {
    for server in TestServer::all().await {
        let b = server.backend;
        ingest(&server, appendix_mrr()).await;
        for scope in [None, rep_scope("r1")] {
            let m = kpis_of(&server, scope, march(), &[]).await;
            for (id, want) in [
                ("mrr_start", 720.0),
                ("mrr", 750.0),
                ("new_mrr", 110.0),
                ("reactivation_mrr", 150.0),
                ("expansion_mrr", 50.0),
                ("contraction_mrr", 200.0),
                ("churned_mrr", 80.0),
                ("net_new_mrr", 30.0),
                ("arr", 9000.0),
                ("mrr_churn_rate", 280.0 / 720.0),
                ("net_revenue_retention", 490.0 / 720.0),
                ("arpa", 750.0 / 7.0),
                ("mrr_quick_ratio", 310.0 / 280.0),
            ] {
                assert_kpi(b, &m, id, Some(want));
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

/// The Appendix's funnel deals.
fn appendix_funnel() -> Vec<pb::Record> {
    use pb::DealStatus::*;
    vec![
        // d1 OPEN 1000, history prospecting → proposal (top index 2)
        deal(
            "d1",
            Open,
            1000,
            "2024-03-02T00:00:00Z",
            None,
            Some("proposal"),
            None,
        ),
        stage("d1-1", "d1", "prospecting", "2024-03-02T00:00:00Z"),
        stage("d1-2", "d1", "proposal", "2024-03-05T00:00:00Z"),
        // d2 WON 7000, created Mar 1, closed Mar 20, history prospecting (WON → top 3)
        deal(
            "d2",
            Won,
            7000,
            "2024-03-01T00:00:00Z",
            Some("2024-03-20T00:00:00Z"),
            None,
            None,
        ),
        stage("d2-1", "d2", "prospecting", "2024-03-01T00:00:00Z"),
        // d3 LOST 600, stage qualification, no history (top 1)
        deal(
            "d3",
            Lost,
            600,
            "2024-03-03T00:00:00Z",
            Some("2024-03-25T00:00:00Z"),
            Some("qualification"),
            None,
        ),
        // d4 OPEN 2000, stage "discovery" (not in the pipeline → index 0)
        deal(
            "d4",
            Open,
            2000,
            "2024-03-04T00:00:00Z",
            None,
            Some("discovery"),
            None,
        ),
        // d5 OPEN 3000, stage negotiation (top 3)
        deal(
            "d5",
            Open,
            3000,
            "2024-03-05T00:00:00Z",
            None,
            Some("negotiation"),
            None,
        ),
        // d7 OPEN 5000, history negotiation (Mar 3) then qualification (Mar 4) (top 3)
        deal(
            "d7",
            Open,
            5000,
            "2024-03-02T00:00:00Z",
            None,
            Some("qualification"),
            None,
        ),
        stage("d7-1", "d7", "negotiation", "2024-03-03T00:00:00Z"),
        stage("d7-2", "d7", "qualification", "2024-03-04T00:00:00Z"),
        // d8 WON 10000, created Mar 10, closed Apr 1 00:00 (open at end, negotiation)
        deal(
            "d8",
            Won,
            10000,
            "2024-03-10T00:00:00Z",
            Some("2024-04-01T00:00:00Z"),
            Some("negotiation"),
            None,
        ),
        // d6 OPEN 4000 created Feb 28 (prospecting): not in the cohort
        deal(
            "d6",
            Open,
            4000,
            "2024-02-28T00:00:00Z",
            None,
            Some("prospecting"),
            None,
        ),
    ]
}

/// Appendix "Funnel and pipeline": every number, the funnel both as
/// `KpiBundle.funnel` and as the STAGE breakdown.
#[tokio::test]
async fn appendix_funnel_and_pipeline() {
    const STAGES: [&str; 5] = [
        "prospecting",
        "qualification",
        "proposal",
        "negotiation",
        "won",
    ];
    for server in TestServer::all().await {
        let b = server.backend;
        ingest(&server, appendix_funnel()).await;
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
                .zip([7, 6, 5, 4, 2])
                .collect::<Vec<_>>(),
            "{b}"
        );
        // leakage = [1/7, 1/6, 0.2, 0.5], none on the won row
        let leakage = [1.0 / 7.0, 1.0 / 6.0, 0.2, 0.5];
        for (row, want) in m.funnel.iter().zip(leakage) {
            assert!(close(row.leakage, want), "{b}: {row:?}");
        }
        assert_eq!(m.funnel[4].leakage, None);
        let indexes: Vec<i32> = m.funnel.iter().map(|f| f.index).collect();
        assert_eq!(indexes, [0, 1, 2, 3, 4]);
        // Open at end: d1, d4, d5, d6, d7, d8 → 25000;
        // weighted 1000×0.5 + 0 + 3000×0.8 + 4000×0.1 + 5000×0.2 + 10000×0.8
        for (id, want) in [
            ("pipeline_value", 25000.0),
            ("weighted_pipeline_value", 12300.0),
            ("bookings", 7000.0),
            ("deals_won", 1.0),
            ("deals_lost", 1.0),
            ("win_rate", 0.5),
            ("deals_created", 7.0),
            // 19 days
            ("sales_cycle", 1_641_600.0),
        ] {
            assert_kpi(b, &m, id, Some(want));
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
            [Some(7.0), Some(6.0), Some(5.0), Some(4.0), Some(2.0)]
        );
        for (row, want) in rows.iter().zip(leakage) {
            assert!(close(row.values[1].value, want), "{b}: {row:?}");
        }
        assert_eq!(rows[4].values.len(), 1, "the won row has no leakage");
        server.stop().await;
    }
}

// ---- series, breakdowns, freshness, time zones, fiscal years -----------------------

/// GetKpiSeries: consecutive months, every one present; an empty month has
/// zero counts and sums and undefined ratios and means (with reasons), while
/// states (MRR, open pipeline) carry on.
#[tokio::test]
async fn series_has_every_period_zero_filled() {
    for server in TestServer::all().await {
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
        for (id, want) in RICH_MARCH {
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

/// GetBreakdown by REP, TEAM, LEAD_SOURCE, ACTIVITY_TYPE and STAGE on the
/// rich fixture, paged.
#[tokio::test]
async fn breakdowns_by_every_dimension_with_paging() {
    use pb::Dimension as D;
    for server in TestServer::all().await {
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
        assert_eq!(west.rows[0].values.len(), RICH_MARCH.len());

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
            [Some(3.0), Some(2.0), Some(2.0), Some(1.0), Some(1.0)],
            "{b}"
        );
        // leakage(0) = 1 − 2/3
        assert!(close(stages.rows[0].values[1].value, 1.0 / 3.0));
        server.stop().await;
    }
}

/// A KPI reflects a batch acknowledged just before; replacing an order and
/// deleting one change revenue accordingly.
#[tokio::test]
async fn kpis_reflect_upserts_and_deletes_at_once() {
    for server in TestServer::all().await {
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

/// The orders of the engine's DST test: either side of both New York
/// boundaries of March 2024.
fn dst_orders() -> Vec<pb::Record> {
    vec![
        sale("before", 1, "2024-03-01T04:59:59Z", None), // Feb 29 23:59:59 EST
        sale("first", 10, "2024-03-01T05:00:00Z", None), // Mar 1 00:00 EST
        sale("last", 100, "2024-04-01T03:59:59Z", None), // Mar 31 23:59:59 EDT
        sale("after", 1000, "2024-04-01T04:00:00Z", None), // Apr 1 00:00 EDT
    ]
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

/// America/New_York in March 2024: the month runs from 05:00Z (EST) to
/// 04:00Z (EDT) and Mar 10 is 23 hours long; the zone comes from the
/// request's override or from the tenant's settings (AdminService).
#[tokio::test]
async fn dst_month_in_new_york_by_override_and_by_settings() {
    for server in TestServer::all().await {
        let b = server.backend;
        ingest(&server, dst_orders()).await;
        let request = |tz: &str, period| {
            let mut req = kpis_request(period, &["revenue"]);
            req.time_zone = tz.into();
            req
        };
        // A UTC tenant: before 1 + first 10 in March.
        let utc = kpis(&server, request("", march())).await;
        assert_kpi(b, &utc, "revenue", Some(11.0));
        assert_eq!(utc.period.clone().expect("period").time_zone, "UTC");

        // The request's override: first 10 + last 100.
        let ny = kpis(&server, request("America/New_York", march())).await;
        assert_kpi(b, &ny, "revenue", Some(110.0));
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
        update_settings(&server, |s| s.time_zone = "America/New_York".into()).await;
        let tenant = kpis(&server, request("", march())).await;
        assert_kpi(b, &tenant, "revenue", Some(110.0));
        assert_eq!(tenant.period.expect("period").time_zone, "America/New_York");
        // February in New York ends at Mar 1 05:00Z: "before" is in it.
        let feb = kpis(&server, request("", month(2024, 2))).await;
        assert_kpi(b, &feb, "revenue", Some(1.0));
        // An override beats the tenant's zone.
        let back = kpis(&server, request("UTC", march())).await;
        assert_kpi(b, &back, "revenue", Some(11.0));
        server.stop().await;
    }
}

/// A fiscal year starting in April (tenant settings): FY containing
/// 2024-03-15 is 2023-04-01..2024-04-01.
#[tokio::test]
async fn fiscal_year_starting_in_april() {
    for server in TestServer::all().await {
        let b = server.backend;
        ingest(
            &server,
            vec![
                // An annual target for the fiscal year, wholly inside it.
                target(
                    "fy",
                    pb::TargetMetric::Revenue,
                    1200,
                    date(2023, 4, 1),
                    date(2024, 4, 1),
                    Owner::Company,
                ),
                sale("a", 100, "2023-03-31T23:59:59Z", None),
                sale("b", 200, "2023-04-01T00:00:00Z", None),
                sale("c", 300, "2024-03-31T12:00:00Z", None),
                sale("d", 400, "2024-04-01T00:00:00Z", None),
            ],
        )
        .await;
        update_settings(&server, |s| s.fiscal_year_start_month = 4).await;
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
        // b 200 + c 300
        assert_kpi(b, &fy, "revenue", Some(500.0));
        assert_kpi(b, &fy, "revenue_target", Some(1200.0));
        // previous fiscal year: order a only → (500 − 100) ÷ 100
        assert_kpi(b, &fy, "revenue_growth", Some(4.0));
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
        assert_kpi(b, &q4, "revenue_target", Some(1200.0 * 91.0 / 366.0));
        assert_kpi(b, &q4, "revenue", Some(300.0));
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

#[tokio::test]
async fn get_kpis_returns_values_in_catalog_order_with_comparison() {
    for server in TestServer::all().await {
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

#[tokio::test]
async fn invalid_arguments_name_their_field() {
    for server in TestServer::all().await {
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

/// Requests are validated before the data is looked at: a request that is
/// both malformed and names an unknown team is INVALID_ARGUMENT, not
/// NOT_FOUND; and on PostgreSQL, with the database gone, a bad request is
/// still INVALID_ARGUMENT while a good one fails with the store.
#[tokio::test]
async fn bad_requests_are_rejected_before_touching_data() {
    for server in TestServer::all().await {
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

#[tokio::test]
async fn unknown_team_or_rep_is_not_found() {
    for server in TestServer::all().await {
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

#[tokio::test]
async fn series_checks_the_period_count_and_fills_every_period() {
    for server in TestServer::all().await {
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

#[tokio::test]
async fn breakdown_pages_through_sorted_rows() {
    for server in TestServer::all().await {
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

/// Each server keeps a snapshot of the tenant's records between queries; a
/// write or delete through another replica of the same database changes the
/// tenant's data version, so the next query here sees it at once.
#[tokio::test]
async fn a_replica_sees_writes_made_through_another_at_once() {
    for writer in TestServer::all().await {
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
