//! Engine tests: SPEC Appendix examples verbatim, one hand-computed value for
//! every KPI id, the edge cases SPEC §5–§6 name, and property tests.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

use super::*;
use crate::domain::period::{Granularity, PeriodSpec};
use crate::domain::*;

// ---- builders ----------------------------------------------------------------

fn t(s: &str) -> Instant {
    DateTime::parse_from_rfc3339(s)
        .expect("test instant")
        .with_timezone(&Utc)
}

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).expect("test date")
}

fn month_in(y: i32, m: u32, tz: Tz) -> PeriodRange {
    PeriodSpec::Calendar {
        granularity: Granularity::Month,
        date: d(y, m, 1),
    }
    .resolve(tz, 1)
    .expect("month")
}

fn month(y: i32, m: u32) -> PeriodRange {
    month_in(y, m, Tz::UTC)
}

fn team(id: &str, parent: Option<&str>) -> Record {
    Record::Team(Team {
        id: id.into(),
        version: None,
        name: format!("Team {id}"),
        parent_team_id: parent.map(str::to_string),
    })
}

fn member(id: &str, rep: &str, team: Option<&str>, at: &str) -> Record {
    Record::TeamMembership(TeamMembership {
        id: id.into(),
        version: None,
        rep_id: rep.into(),
        team_id: team.map(str::to_string),
        effective_at: t(at),
    })
}

fn rep(id: &str) -> Record {
    Record::Rep(Rep {
        id: id.into(),
        version: None,
        name: format!("Rep {id}"),
        email: None,
    })
}

fn order(id: &str, amount: i64, at: &str, rep: Option<&str>) -> Order {
    Order {
        id: id.into(),
        version: None,
        amount,
        ordered_at: t(at),
        kind: OrderKind::New,
        customer_id: None,
        rep_id: rep.map(str::to_string),
        deal_id: None,
    }
}

fn customer(id: &str, acquired: &str, churned: Option<&str>, owner: Option<&str>) -> Record {
    Record::Customer(Customer {
        id: id.into(),
        version: None,
        acquired_at: t(acquired),
        churned_at: churned.map(t),
        owner_rep_id: owner.map(str::to_string),
        source: None,
        name: None,
    })
}

fn sub(id: &str, subscription: &str, customer: &str, mrr: i64, at: &str) -> Record {
    Record::SubscriptionChange(SubscriptionChange {
        id: id.into(),
        version: None,
        subscription_id: subscription.into(),
        customer_id: customer.into(),
        mrr,
        effective_at: t(at),
    })
}

fn deal(
    id: &str,
    status: DealStatus,
    amount: i64,
    created: &str,
    closed: Option<&str>,
    stage: Option<&str>,
    owner: Option<&str>,
) -> Record {
    Record::Deal(Deal {
        id: id.into(),
        version: None,
        amount,
        created_at: t(created),
        status,
        closed_at: closed.map(t),
        stage: stage.map(str::to_string),
        owner_rep_id: owner.map(str::to_string),
        customer_id: None,
        lead_id: None,
    })
}

fn stage(id: &str, deal: &str, stage: &str, at: &str) -> Record {
    Record::DealStageChange(DealStageChange {
        id: id.into(),
        version: None,
        deal_id: deal.into(),
        stage: stage.into(),
        entered_at: t(at),
    })
}

fn lead(
    id: &str,
    source: &str,
    created: &str,
    responded: Option<&str>,
    converted: Option<&str>,
    owner: Option<&str>,
) -> Record {
    Record::Lead(Lead {
        id: id.into(),
        version: None,
        source: source.into(),
        created_at: t(created),
        owner_rep_id: owner.map(str::to_string),
        first_response_at: responded.map(t),
        converted_at: converted.map(t),
        customer_id: None,
    })
}

fn activity(id: &str, rep: &str, kind: ActivityType, at: &str, seconds: Option<i64>) -> Record {
    Record::Activity(Activity {
        id: id.into(),
        version: None,
        rep_id: rep.into(),
        activity_type: kind,
        occurred_at: t(at),
        duration_seconds: seconds,
        lead_id: None,
        deal_id: None,
        customer_id: None,
    })
}

fn inquiry(id: &str, at: &str, responded: Option<&str>, rep: Option<&str>) -> Record {
    Record::Inquiry(Inquiry {
        id: id.into(),
        version: None,
        channel: "email".into(),
        received_at: t(at),
        first_response_at: responded.map(t),
        customer_id: None,
        rep_id: rep.map(str::to_string),
    })
}

fn csat(id: &str, score: i32, at: &str, rep: Option<&str>) -> Record {
    Record::CsatResponse(CsatResponse {
        id: id.into(),
        version: None,
        score,
        responded_at: t(at),
        customer_id: None,
        rep_id: rep.map(str::to_string),
    })
}

fn target(
    id: &str,
    metric: TargetMetric,
    value: i64,
    from: NaiveDate,
    to: NaiveDate,
    scope: TargetScope,
) -> Record {
    Record::Target(Target {
        id: id.into(),
        version: None,
        metric,
        value,
        start_date: from,
        end_date: to,
        scope,
    })
}

fn spend(id: &str, amount: i64, from: NaiveDate, to: NaiveDate, team: Option<&str>) -> Record {
    Record::Spend(Spend {
        id: id.into(),
        version: None,
        category: SpendCategory::Marketing,
        amount,
        start_date: from,
        end_date: to,
        team_id: team.map(str::to_string),
    })
}

fn dataset(records: Vec<Record>) -> Dataset {
    let mut data = Dataset::default();
    for r in records {
        data.push(r);
    }
    data
}

fn team_scope(id: &str) -> Scope {
    Scope::Team(id.into())
}

fn rep_scope(id: &str) -> Scope {
    Scope::Rep(id.into())
}

/// The value of one KPI (panics on an unknown id: tests only).
fn kv(e: &Engine, scope: &Scope, p: &PeriodRange, id: &str) -> KpiValue {
    e.value(scope, p, id).expect("catalog id")
}

fn val(e: &Engine, scope: &Scope, p: &PeriodRange, id: &str) -> Option<f64> {
    kv(e, scope, p, id).value
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() <= 1e-9 * b.abs().max(1.0))
}

#[track_caller]
fn assert_val(e: &Engine, scope: &Scope, p: &PeriodRange, id: &str, expected: f64) {
    let v = kv(e, scope, p, id);
    assert!(
        close(v.value, expected),
        "{id} for {scope:?}: expected {expected}, got {v:?}"
    );
}

#[track_caller]
fn assert_undefined(e: &Engine, scope: &Scope, p: &PeriodRange, id: &str) {
    let v = kv(e, scope, p, id);
    assert!(
        v.value.is_none(),
        "{id} for {scope:?} should be undefined, got {v:?}"
    );
    assert!(
        v.undefined_reason.as_deref().is_some_and(|r| !r.is_empty()),
        "{id}: an undefined value needs a reason"
    );
}

// ---- SPEC Appendix, verbatim ---------------------------------------------------

/// Appendix "A rep moves team".
#[test]
fn appendix_rep_moves_team() {
    let mut data = dataset(vec![
        team("A", None),
        team("B", None),
        rep("r1"),
        member("m1", "r1", Some("A"), "2024-01-01T00:00:00Z"),
        member("m2", "r1", Some("B"), "2024-03-15T12:00:00Z"),
    ]);
    data.orders
        .push(order("o1", 100, "2024-03-10T00:00:00Z", Some("r1")));
    // At its own instant the membership is not yet in force: still team A.
    data.orders
        .push(order("o2", 50, "2024-03-15T12:00:00Z", Some("r1")));
    data.orders
        .push(order("o3", 200, "2024-03-20T00:00:00Z", Some("r1")));
    let e = Engine::new(&data, TenantSettings::default());
    let march = month(2024, 3);
    assert_val(&e, &team_scope("A"), &march, "revenue", 150.0);
    assert_val(&e, &team_scope("B"), &march, "revenue", 200.0);
    assert_val(&e, &rep_scope("r1"), &march, "revenue", 350.0);
    assert_val(&e, &Scope::Company, &march, "revenue", 350.0);
    assert_val(&e, &team_scope("A"), &march, "active_reps", 1.0);
    assert_val(&e, &team_scope("B"), &march, "active_reps", 1.0);
    assert_val(&e, &Scope::Company, &march, "active_reps", 1.0);
    // February: r1 is in A all month, so B has no active rep.
    let feb = month(2024, 2);
    assert_val(&e, &team_scope("B"), &feb, "active_reps", 0.0);
    assert_undefined(&e, &team_scope("B"), &feb, "revenue_per_rep");
}

fn appendix_mrr_data() -> Dataset {
    let o = Some("r1");
    dataset(vec![
        rep("r1"),
        customer("c1", "2024-01-01T00:00:00Z", None, o),
        customer("c2", "2024-01-01T00:00:00Z", None, o),
        customer("c3", "2024-01-01T00:00:00Z", None, o),
        customer("c4", "2024-01-01T00:00:00Z", None, o),
        customer("c5", "2024-01-01T00:00:00Z", None, o),
        customer("c6", "2024-01-01T00:00:00Z", None, o),
        customer("c7", "2024-01-01T00:00:00Z", None, o),
        customer("c8", "2024-01-01T00:00:00Z", None, o),
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
        // c8 two changes at Feb 1 00:00: x-1 (500), x-2 (40) → 40; Apr 1 change not in force at end
        sub("x-1", "s8", "c8", 500, "2024-02-01T00:00:00Z"),
        sub("x-2", "s8", "c8", 40, "2024-02-01T00:00:00Z"),
        sub("x-3", "s8", "c8", 900, "2024-04-01T00:00:00Z"),
    ])
}

/// Appendix "MRR movements": every number listed there.
#[test]
fn appendix_mrr_movements() {
    let data = appendix_mrr_data();
    let e = Engine::new(&data, TenantSettings::default());
    let march = month(2024, 3);
    for scope in [Scope::Company, rep_scope("r1")] {
        let s = &scope;
        assert_val(&e, s, &march, "mrr_start", 720.0);
        assert_val(&e, s, &march, "mrr", 750.0);
        assert_val(&e, s, &march, "new_mrr", 110.0);
        assert_val(&e, s, &march, "reactivation_mrr", 150.0);
        assert_val(&e, s, &march, "expansion_mrr", 50.0);
        assert_val(&e, s, &march, "contraction_mrr", 200.0);
        assert_val(&e, s, &march, "churned_mrr", 80.0);
        assert_val(&e, s, &march, "net_new_mrr", 30.0);
        assert_val(&e, s, &march, "arr", 9000.0);
        assert_val(&e, s, &march, "mrr_churn_rate", 280.0 / 720.0);
        assert_val(&e, s, &march, "net_revenue_retention", 490.0 / 720.0);
        assert_val(&e, s, &march, "arpa", 750.0 / 7.0);
        assert_val(&e, s, &march, "mrr_quick_ratio", 310.0 / 280.0);
    }
    let v = kv(&e, &Scope::Company, &march, "mrr_churn_rate");
    assert_eq!((v.numerator, v.denominator), (Some(280.0), Some(720.0)));
    assert_eq!(
        kv(&e, &Scope::Company, &march, "mrr").exact_value,
        Some(750)
    );
}

fn appendix_funnel_data() -> Dataset {
    use DealStatus::*;
    dataset(vec![
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
        // d5 OPEN 3000, stage negotiation (top 3): skips stages
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
        // d8 WON 10000, created Mar 10, closed Apr 1 00:00 (still open at end; stage negotiation)
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
    ])
}

/// Appendix "Funnel and pipeline": every number listed there.
#[test]
fn appendix_funnel_and_pipeline() {
    let data = appendix_funnel_data();
    let e = Engine::new(&data, TenantSettings::default());
    let march = month(2024, 3);
    let c = &Scope::Company;
    let funnel = e.funnel(c, &march);
    let reached: Vec<i64> = funnel.iter().map(|f| f.reached).collect();
    // reached = [7, 6, 5, 4], won in the cohort 2
    assert_eq!(reached, vec![7, 6, 5, 4, 2]);
    assert_eq!(funnel[4].stage, "won");
    let leakage: Vec<Option<f64>> = funnel.iter().map(|f| f.leakage).collect();
    // leakage = [1/7, 1/6, 0.2, 0.5]
    for (got, want) in leakage.iter().zip([1.0 / 7.0, 1.0 / 6.0, 0.2, 0.5]) {
        assert!(close(*got, want), "{leakage:?}");
    }
    assert_eq!(leakage[4], None);
    // Open at end: d1, d4, d5, d6, d7, d8 → 25000
    assert_val(&e, c, &march, "pipeline_value", 25000.0);
    // 1000×0.5 + 0 + 3000×0.8 + 4000×0.1 + 5000×0.2 + 10000×0.8 = 12300
    assert_val(&e, c, &march, "weighted_pipeline_value", 12300.0);
    assert_val(&e, c, &march, "bookings", 7000.0);
    assert_val(&e, c, &march, "deals_won", 1.0);
    assert_val(&e, c, &march, "deals_lost", 1.0);
    assert_val(&e, c, &march, "win_rate", 0.5);
    assert_val(&e, c, &march, "deals_created", 7.0);
    // 19 days = 1 641 600 s
    assert_val(&e, c, &march, "sales_cycle", 1_641_600.0);
}

// ---- one hand-computed value for every KPI -------------------------------------

/// March 2024 (UTC) with three reps: r1 in `east`, r2 in `east-a` (a sub-team
/// of `east`), r3 in `west` until it joins `east` at Mar 16 00:00.
fn rich() -> Dataset {
    use ActivityType::*;
    use DealStatus::*;
    use TargetMetric::*;
    let (r1, r2, r3) = (Some("r1"), Some("r2"), Some("r3"));
    let mut data = dataset(vec![
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
            d(2024, 3, 1),
            d(2024, 4, 1),
            TargetScope::Company,
        ),
        target(
            "T2",
            Bookings,
            9000,
            d(2024, 2, 1),
            d(2024, 5, 1),
            TargetScope::Company,
        ),
        target(
            "T3",
            NewCustomers,
            4,
            d(2024, 3, 1),
            d(2024, 4, 1),
            TargetScope::Company,
        ),
        target(
            "T4",
            DealsWon,
            4,
            d(2024, 3, 1),
            d(2024, 4, 1),
            TargetScope::Company,
        ),
        target(
            "T5",
            Revenue,
            1000,
            d(2024, 3, 1),
            d(2024, 4, 1),
            TargetScope::Rep("r1".into()),
        ),
        target(
            "T6",
            Revenue,
            620,
            d(2024, 3, 16),
            d(2024, 4, 16),
            TargetScope::Rep("r2".into()),
        ),
        target(
            "T7",
            Revenue,
            3100,
            d(2024, 3, 1),
            d(2024, 4, 1),
            TargetScope::Rep("r3".into()),
        ),
        target(
            "T8",
            Revenue,
            1000,
            d(2024, 3, 1),
            d(2024, 4, 1),
            TargetScope::Team("east".into()),
        ),
        // Spend.
        spend("s1", 3100, d(2024, 3, 1), d(2024, 4, 1), None),
        spend("s2", 580, d(2024, 2, 16), d(2024, 3, 16), Some("east")),
    ]);
    let mut o = |id: &str, amount, at: &str, rep: Option<&str>, kind, customer: Option<&str>| {
        let mut x = order(id, amount, at, rep);
        x.kind = kind;
        x.customer_id = customer.map(str::to_string);
        data.orders.push(x);
    };
    o(
        "o1",
        1000,
        "2024-03-05T00:00:00Z",
        r1,
        OrderKind::New,
        Some("c1"),
    );
    o(
        "o2",
        500,
        "2024-03-06T00:00:00Z",
        r2,
        OrderKind::Upsell,
        Some("c1"),
    );
    o(
        "o3",
        300,
        "2024-03-10T00:00:00Z",
        r3,
        OrderKind::New,
        Some("c2"),
    );
    o(
        "o4",
        200,
        "2024-03-20T00:00:00Z",
        r3,
        OrderKind::CrossSell,
        Some("c3"),
    );
    o(
        "o5",
        100,
        "2024-03-21T00:00:00Z",
        None,
        OrderKind::New,
        None,
    );
    o(
        "o6",
        999,
        "2024-02-20T00:00:00Z",
        r1,
        OrderKind::New,
        Some("c1"),
    );
    data
}

/// Every catalog KPI on [`rich`], COMPANY scope, March 2024, computed by hand.
#[test]
fn every_kpi_has_a_hand_computed_value() {
    let data = rich();
    let e = Engine::new(&data, TenantSettings::default());
    let march = month(2024, 3);
    let day = 86_400.0;
    #[rustfmt::skip]
    let expected: &[(&str, Option<f64>)] = &[
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
        ("sales_cycle", Some(20.5 * day)),
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
    let ids: Vec<&str> = expected.iter().map(|(id, _)| *id).collect();
    let catalog: Vec<&str> = CATALOG.iter().map(|k| k.id).collect();
    assert_eq!(
        ids, catalog,
        "every catalog KPI needs a hand-computed value here"
    );
    for (id, want) in expected {
        let got = kv(&e, &Scope::Company, &march, id);
        match want {
            Some(w) => assert!(close(got.value, *w), "{id}: expected {w}, got {got:?}"),
            None => assert!(got.value.is_none(), "{id}: expected undefined, got {got:?}"),
        }
    }
}

/// The same fixture for TEAM and REP scopes: sub-teams, a rep moving
/// mid-period, customer-level attribution, targets of the named scope only.
#[test]
fn team_and_rep_scopes_on_the_rich_fixture() {
    let data = rich();
    let e = Engine::new(&data, TenantSettings::default());
    let march = month(2024, 3);
    let east = team_scope("east");
    let west = team_scope("west");
    let east_a = team_scope("east-a");
    // east = east + east-a: r1 1000, r2 500 (sub-team), r3's o4 200 (after joining Mar 16)
    assert_val(&e, &east, &march, "revenue", 1700.0);
    // west: r3's o3 300 (Mar 10, before the move)
    assert_val(&e, &west, &march, "revenue", 300.0);
    assert_val(&e, &east_a, &march, "revenue", 500.0);
    assert_val(&e, &rep_scope("r3"), &march, "revenue", 500.0);
    // active reps: east r1, r2, r3 (joined mid-March); west r3 (team at start); east-a r2
    assert_val(&e, &east, &march, "active_reps", 3.0);
    assert_val(&e, &west, &march, "active_reps", 1.0);
    assert_val(&e, &east_a, &march, "active_reps", 1.0);
    assert_val(&e, &rep_scope("r1"), &march, "active_reps", 1.0);
    // Targets count only for the scope they name: east has T8 (1000), east-a none.
    assert_val(&e, &east, &march, "revenue_target", 1000.0);
    assert_val(&e, &east_a, &march, "revenue_target", 0.0);
    assert_undefined(&e, &east_a, &march, "revenue_target_attainment");
    assert_undefined(&e, &east_a, &march, "pipeline_coverage");
    // east: remainder 1000 − 1700 < 0 → pipeline_coverage undefined
    assert_undefined(&e, &east, &march, "pipeline_coverage");
    // r2's own target: 620 × 16/31 = 320
    assert_val(&e, &rep_scope("r2"), &march, "revenue_target", 320.0);
    assert_eq!(
        kv(&e, &rep_scope("r2"), &march, "revenue_target").exact_value,
        None
    );
    assert_eq!(
        kv(&e, &Scope::Company, &march, "revenue_target").exact_value,
        Some(6200)
    );
    // reps_at_quota, TEAM: reps with a target whose team at end is in scope.
    // east at end: r1 ✓, r2 ✓ (east-a), r3 ✗ → 2/3; west: nobody → undefined
    assert_val(&e, &east, &march, "reps_at_quota", 2.0 / 3.0);
    assert_undefined(&e, &west, &march, "reps_at_quota");
    assert_val(&e, &rep_scope("r3"), &march, "reps_at_quota", 0.0);
    // Spend: east has s2 (300 in March); CAC = 300 ÷ new customers of east.
    // c2 acquired Mar 8 by r3 (west then), c3 Mar 18 by r3 (east then) → 1 → 300
    assert_val(&e, &east, &march, "new_customers", 1.0);
    assert_val(&e, &east, &march, "cac", 300.0);
    assert_val(&e, &west, &march, "new_customers", 1.0);
    // west has no spend: 0 ÷ 1 = 0
    assert_val(&e, &west, &march, "cac", 0.0);
    assert_undefined(&e, &rep_scope("r1"), &march, "cac");
    // MRR follows the customer's owner: c2 (owner r3) is in east at end
    // (r3's team at Apr 1) → new 80 in east; not in west at end.
    assert_val(&e, &east, &march, "new_mrr", 80.0);
    assert_val(&e, &west, &march, "mrr", 0.0);
    // east: c1 (r1) 100 → 150, c4 (r2, east-a) 60 → 0
    assert_val(&e, &east, &march, "mrr_start", 160.0);
    assert_val(&e, &east, &march, "mrr", 230.0);
    // Churn cohort at start: east has c1, c4, c6 (r1, r2, r1) → 2/3
    assert_val(&e, &east, &march, "customer_churn_rate", 2.0 / 3.0);
    assert_undefined(&e, &west, &march, "customer_churn_rate");
    // upsell rate follows the order's rep: east orders o1 (c1), o2 (c1 upsell), o4 (c3 cross-sell)
    assert_val(&e, &east, &march, "upsell_cross_sell_rate", 1.0);
    assert_val(&e, &west, &march, "upsell_cross_sell_rate", 0.0);
    // Records without a rep count for COMPANY only: o5 (100) is nowhere else.
    let by_rep: f64 = ["r1", "r2", "r3"]
        .iter()
        .filter_map(|r| val(&e, &rep_scope(r), &march, "revenue"))
        .sum();
    assert!(close(Some(by_rep), 2000.0));
}

// ---- edge cases ------------------------------------------------------------------

/// With no records, counts and sums are 0 (exact) and every ratio or mean is
/// undefined with a reason, never 0 or NaN.
#[test]
fn zero_denominators_are_undefined_with_a_reason() {
    let data = Dataset::default();
    let e = Engine::new(&data, TenantSettings::default());
    let march = month(2024, 3);
    for scope in [Scope::Company, team_scope("x"), rep_scope("r")] {
        let values = e.values(&scope, &march, &CATALOG.iter().collect::<Vec<_>>());
        for v in values {
            match v.value {
                Some(x) => {
                    assert!(
                        x.is_finite() && x == 0.0 || v.kpi_id == "active_reps",
                        "{v:?}"
                    );
                    assert!(v.undefined_reason.is_none());
                }
                None => assert!(v.undefined_reason.as_deref().is_some_and(|r| !r.is_empty())),
            }
        }
    }
    let c = &Scope::Company;
    for id in [
        "revenue_growth",
        "average_order_value",
        "win_rate",
        "average_deal_size",
        "sales_cycle",
        "pipeline_coverage",
        "revenue_target_attainment",
        "bookings_target_attainment",
        "new_customers_target_attainment",
        "deals_won_target_attainment",
        "reps_at_quota",
        "csat",
        "csat_average",
        "customer_churn_rate",
        "customer_retention_rate",
        "upsell_cross_sell_rate",
        "cac",
        "clv",
        "clv_to_cac",
        "mrr_churn_rate",
        "net_revenue_retention",
        "arpa",
        "mrr_quick_ratio",
        "lead_conversion_rate",
        "lead_response_time",
        "activities_per_deal_won",
        "inquiry_response_time",
        "revenue_per_rep",
        "bookings_per_rep",
    ] {
        assert_undefined(&e, c, &march, id);
    }
    let revenue = kv(&e, c, &march, "revenue");
    assert_eq!((revenue.value, revenue.exact_value), (Some(0.0), Some(0)));
    // A ratio keeps its numerator and denominator even when undefined.
    let win = kv(&e, c, &march, "win_rate");
    assert_eq!((win.numerator, win.denominator), (Some(0.0), Some(0.0)));
    // REP scope: active_reps is 1 by definition.
    assert_val(&e, &rep_scope("r"), &march, "active_reps", 1.0);
}

#[test]
fn customers_acquired_and_churned_inside_the_period() {
    let data = dataset(vec![
        customer(
            "in-out",
            "2024-03-02T00:00:00Z",
            Some("2024-03-20T00:00:00Z"),
            None,
        ),
        customer("old", "2024-01-01T00:00:00Z", None, None),
        // churned exactly at end: active at end, not churned in P
        customer(
            "edge",
            "2024-01-01T00:00:00Z",
            Some("2024-04-01T00:00:00Z"),
            None,
        ),
        // acquired exactly at start: not active at start (acquired_at < t fails), new in P
        customer("fresh", "2024-03-01T00:00:00Z", None, None),
    ]);
    let e = Engine::new(&data, TenantSettings::default());
    let (c, march) = (&Scope::Company, month(2024, 3));
    assert_val(&e, c, &march, "new_customers", 2.0); // in-out, fresh
    assert_val(&e, c, &march, "churned_customers", 1.0); // in-out
    assert_val(&e, c, &march, "active_customers", 3.0); // old, edge, fresh
    // cohort at start: old, edge; neither churned in P
    assert_val(&e, c, &march, "customer_churn_rate", 0.0);
    assert_val(&e, c, &march, "customer_retention_rate", 1.0);
    // churn rate 0 → CLV undefined
    assert_undefined(&e, c, &march, "clv");
}

/// SPEC §5 tie rule and "state at t counts what happened strictly before t".
#[test]
fn membership_ties_take_the_greatest_id() {
    let mut data = dataset(vec![
        team("A", None),
        team("B", None),
        member("m-1", "r1", Some("B"), "2024-03-01T00:00:00Z"),
        member("m-2", "r1", Some("A"), "2024-03-01T00:00:00Z"),
        // leaves all teams on Mar 20
        member("m-3", "r1", None, "2024-03-20T00:00:00Z"),
    ]);
    data.orders
        .push(order("o1", 10, "2024-03-01T00:00:00Z", Some("r1"))); // no team yet
    data.orders
        .push(order("o2", 20, "2024-03-05T00:00:00Z", Some("r1"))); // A (m-2 > m-1)
    data.orders
        .push(order("o3", 40, "2024-03-25T00:00:00Z", Some("r1"))); // no team
    let e = Engine::new(&data, TenantSettings::default());
    let march = month(2024, 3);
    assert_val(&e, &team_scope("A"), &march, "revenue", 20.0);
    assert_val(&e, &team_scope("B"), &march, "revenue", 0.0);
    assert_val(&e, &Scope::Company, &march, "revenue", 70.0);
    // "team at some instant of P" includes memberships effective in [start, end):
    // m-1 (B) and m-2 (A) take effect at start, so both teams count r1 active.
    assert_val(&e, &team_scope("A"), &march, "active_reps", 1.0);
    assert_val(&e, &team_scope("B"), &march, "active_reps", 1.0);
    // April: r1 has left all teams → no active rep anywhere.
    assert_val(&e, &Scope::Company, &month(2024, 4), "active_reps", 0.0);
}

/// A parent cycle in stored data must not hang: both teams become roots.
#[test]
fn team_cycles_are_guarded() {
    let mut data = dataset(vec![
        team("a", Some("b")),
        team("b", Some("a")),
        team("c", Some("a")),
        team("orphan", Some("deleted")),
        member("m1", "r1", Some("c"), "2024-01-01T00:00:00Z"),
    ]);
    data.orders
        .push(order("o1", 5, "2024-03-05T00:00:00Z", Some("r1")));
    let e = Engine::new(&data, TenantSettings::default());
    let march = month(2024, 3);
    assert_val(&e, &team_scope("a"), &march, "revenue", 5.0);
    let keys = e.breakdown_keys(&Scope::Company, &march, Dimension::Team);
    let roots: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
    assert_eq!(roots, vec!["a", "b", "orphan"]);
}

/// Deal stage at t: the latest change strictly before t; without one, the
/// `stage` field. Stage changes at equal instants: the greatest id wins.
#[test]
fn deal_stage_at_end_and_unknown_stages() {
    use DealStatus::*;
    let data = dataset(vec![
        deal(
            "x",
            Open,
            1000,
            "2024-03-01T00:00:00Z",
            None,
            Some("negotiation"),
            None,
        ),
        stage("x-1", "x", "proposal", "2024-03-10T00:00:00Z"),
        stage("x-2", "x", "qualification", "2024-03-10T00:00:00Z"),
        // entered exactly at end: not yet in force
        stage("x-3", "x", "negotiation", "2024-04-01T00:00:00Z"),
        deal(
            "y",
            Open,
            1000,
            "2024-03-01T00:00:00Z",
            None,
            Some("unknown"),
            None,
        ),
        // closed before end: not in the pipeline
        deal(
            "z",
            Lost,
            1000,
            "2024-03-01T00:00:00Z",
            Some("2024-03-31T00:00:00Z"),
            Some("proposal"),
            None,
        ),
        // created exactly at end: not open at end
        deal(
            "w",
            Open,
            1000,
            "2024-04-01T00:00:00Z",
            None,
            Some("proposal"),
            None,
        ),
    ]);
    let e = Engine::new(&data, TenantSettings::default());
    let (c, march) = (&Scope::Company, month(2024, 3));
    assert_val(&e, c, &march, "pipeline_value", 2000.0);
    // x at end: qualification (x-2 > x-1) → 1000 × 0.2; y unknown → 0
    assert_val(&e, c, &march, "weighted_pipeline_value", 200.0);
    // funnel: x reached negotiation (3) through its stage field, y index 0, z proposal (2)
    let reached: Vec<i64> = e.funnel(c, &march).iter().map(|f| f.reached).collect();
    assert_eq!(reached, vec![3, 2, 2, 1, 0]);
}

#[test]
fn targets_and_spend_prorate_across_period_boundaries() {
    let data = dataset(vec![
        // Q1 2024 = 91 days; March overlap 31 → 9100 × 31/91 = 3100
        target(
            "q",
            TargetMetric::Revenue,
            9100,
            d(2024, 1, 1),
            d(2024, 4, 1),
            TargetScope::Company,
        ),
        // Mar 20..Apr 10 = 21 days, 12 in March → 2100 × 12/21 = 1200
        target(
            "x",
            TargetMetric::Revenue,
            2100,
            d(2024, 3, 20),
            d(2024, 4, 10),
            TargetScope::Company,
        ),
        // entirely in February: no overlap
        target(
            "f",
            TargetMetric::Revenue,
            5000,
            d(2024, 2, 1),
            d(2024, 3, 1),
            TargetScope::Company,
        ),
        // 10 days Feb 25..Mar 6, 5 in March → 1000 × 5/10 = 500
        spend("s", 1000, d(2024, 2, 25), d(2024, 3, 6), None),
        customer("n", "2024-03-03T00:00:00Z", None, None),
    ]);
    let e = Engine::new(&data, TenantSettings::default());
    let (c, march) = (&Scope::Company, month(2024, 3));
    assert_val(&e, c, &march, "revenue_target", 4300.0);
    assert_val(&e, c, &march, "cac", 500.0);
    // February: q 9100 × 29/91 = 2900, f 5000 (wholly inside) → 7900
    assert_val(&e, c, &month(2024, 2), "revenue_target", 7900.0);
    // revenue 0 → remainder 4300 > 0, pipeline 0 → coverage 0
    assert_val(&e, c, &march, "pipeline_coverage", 0.0);
}

/// America/New_York, March 2024: the month starts at 05:00Z (EST) and ends at
/// 04:00Z (EDT); DST begins on Mar 10, a 23-hour day.
#[test]
fn dst_month_in_new_york() {
    let mut data = Dataset::default();
    data.orders
        .push(order("before", 1, "2024-03-01T04:59:59Z", None)); // Feb 29 23:59:59 EST
    data.orders
        .push(order("first", 10, "2024-03-01T05:00:00Z", None)); // Mar 1 00:00 EST
    data.orders
        .push(order("last", 100, "2024-04-01T03:59:59Z", None)); // Mar 31 23:59:59 EDT
    data.orders
        .push(order("after", 1000, "2024-04-01T04:00:00Z", None)); // Apr 1 00:00 EDT
    let settings = TenantSettings {
        time_zone: chrono_tz::America::New_York,
        ..TenantSettings::default()
    };
    let e = Engine::new(&data, settings);
    let march = month_in(2024, 3, chrono_tz::America::New_York);
    assert_val(&e, &Scope::Company, &march, "revenue", 110.0);
    // The DST day itself: Mar 10 00:00 EST (05:00Z) .. Mar 11 00:00 EDT (04:00Z).
    let dst_day = PeriodSpec::Calendar {
        granularity: Granularity::Day,
        date: d(2024, 3, 10),
    }
    .resolve(chrono_tz::America::New_York, 1)
    .expect("day");
    assert_eq!(dst_day.end - dst_day.start, chrono::TimeDelta::hours(23));
    // A UTC tenant reads the same orders differently.
    let utc = Engine::new(&data, TenantSettings::default());
    assert_val(&utc, &Scope::Company, &month(2024, 3), "revenue", 11.0);
}

/// Fiscal year starting in April: FY containing 2024-03-15 is 2023-04-01..2024-04-01.
#[test]
fn fiscal_year_periods() {
    let mut data = dataset(vec![
        // An annual target for the fiscal year, wholly inside it.
        target(
            "fy",
            TargetMetric::Revenue,
            1200,
            d(2023, 4, 1),
            d(2024, 4, 1),
            TargetScope::Company,
        ),
    ]);
    data.orders
        .push(order("a", 100, "2023-03-31T23:59:59Z", None));
    data.orders
        .push(order("b", 200, "2023-04-01T00:00:00Z", None));
    data.orders
        .push(order("c", 300, "2024-03-31T12:00:00Z", None));
    data.orders
        .push(order("d", 400, "2024-04-01T00:00:00Z", None));
    let settings = TenantSettings {
        fiscal_year_start_month: 4,
        ..TenantSettings::default()
    };
    let e = Engine::new(&data, settings);
    let fy = PeriodSpec::Calendar {
        granularity: Granularity::FiscalYear,
        date: d(2024, 3, 15),
    }
    .resolve(Tz::UTC, 4)
    .expect("fy");
    assert_eq!((fy.start_date, fy.end_date), (d(2023, 4, 1), d(2024, 4, 1)));
    let c = &Scope::Company;
    assert_val(&e, c, &fy, "revenue", 500.0);
    assert_val(&e, c, &fy, "revenue_target", 1200.0);
    // Fiscal Q4 (Jan..Mar 2024): 91 of 366 days of the target → 1200 × 91/366
    let q4 = PeriodSpec::Calendar {
        granularity: Granularity::FiscalQuarter,
        date: d(2024, 3, 15),
    }
    .resolve(Tz::UTC, 4)
    .expect("fq");
    assert_eq!((q4.start_date, q4.end_date), (d(2024, 1, 1), d(2024, 4, 1)));
    assert_val(&e, c, &q4, "revenue_target", 1200.0 * 91.0 / 366.0);
    // revenue_growth against the previous fiscal year (order a only): (500 − 100) ÷ 100
    assert_val(&e, c, &fy, "revenue_growth", 4.0);
}

#[test]
fn comparisons_and_relative_change() {
    let data = rich();
    let e = Engine::new(&data, TenantSettings::default());
    let march = month(2024, 3);
    let kpis: Vec<&KpiDef> = ["revenue", "win_rate"]
        .iter()
        .filter_map(|id| CATALOG.iter().find(|k| k.id == *id))
        .collect();
    let b = e.bundle(
        &Scope::Company,
        &march,
        &kpis,
        false,
        ComparisonKind::PreviousPeriod,
    );
    assert_eq!(
        b.comparison_period.map(|p| p.start_date),
        Some(d(2024, 2, 1))
    );
    let revenue = b.values[0].comparison.clone().expect("comparison");
    // February revenue 999: change (2100 − 999) ÷ 999
    assert_eq!(revenue.value, Some(999.0));
    assert!(close(revenue.relative_change, 1101.0 / 999.0));
    // No deals closed in February: comparison undefined with a reason, no change.
    let win = b.values[1].comparison.clone().expect("comparison");
    assert_eq!((win.value, win.relative_change), (None, None));
    assert!(win.undefined_reason.is_some());
    // Previous year: March 2023 revenue 0 → relative change undefined.
    let b = e.bundle(
        &Scope::Company,
        &march,
        &kpis,
        false,
        ComparisonKind::PreviousYear,
    );
    let revenue = b.values[0].comparison.clone().expect("comparison");
    assert_eq!((revenue.value, revenue.relative_change), (Some(0.0), None));
    assert_eq!(
        super::super::value::relative_change(Some(5.0), Some(4.0)),
        Some(0.25)
    );
    assert_eq!(super::super::value::relative_change(None, Some(4.0)), None);
}

/// Series: consecutive months, every period present; an empty period has
/// zero counts and undefined ratios.
#[test]
fn series_has_every_period() {
    let data = rich();
    let e = Engine::new(&data, TenantSettings::default());
    let kpis: Vec<&KpiDef> = CATALOG
        .iter()
        .filter(|k| ["revenue", "win_rate"].contains(&k.id))
        .collect();
    let bundles = e
        .series(
            &Scope::Company,
            &month(2024, 2),
            4,
            &kpis,
            true,
            ComparisonKind::None,
        )
        .expect("series");
    let starts: Vec<NaiveDate> = bundles.iter().map(|b| b.period.start_date).collect();
    assert_eq!(
        starts,
        vec![d(2024, 2, 1), d(2024, 3, 1), d(2024, 4, 1), d(2024, 5, 1)]
    );
    let revenue: Vec<Option<f64>> = bundles.iter().map(|b| b.values[0].value).collect();
    assert_eq!(
        revenue,
        vec![Some(999.0), Some(2100.0), Some(0.0), Some(0.0)]
    );
    assert_eq!(bundles[3].values[1].value, None);
    assert!(bundles.iter().all(|b| b.funnel.is_some()));
}

#[test]
fn breakdowns() {
    let data = rich();
    let e = Engine::new(&data, TenantSettings::default());
    let march = month(2024, 3);
    let c = &Scope::Company;
    let revenue: Vec<&KpiDef> = CATALOG.iter().filter(|k| k.id == "revenue").collect();
    // REP (COMPANY): every rep with a team in March.
    let keys = e.breakdown_keys(c, &march, Dimension::Rep);
    assert_eq!(
        keys.iter().map(|k| k.0.as_str()).collect::<Vec<_>>(),
        ["r1", "r2", "r3"]
    );
    assert_eq!(keys[0].1, "Rep r1");
    let rows = e.breakdown_rows(c, &march, Dimension::Rep, &keys, &revenue);
    let got: Vec<Option<f64>> = rows.iter().map(|r| r.values[0].value).collect();
    assert_eq!(got, vec![Some(1000.0), Some(500.0), Some(500.0)]);
    // REP (TEAM west): r3 was in west at start.
    let keys = e.breakdown_keys(&team_scope("west"), &march, Dimension::Rep);
    assert_eq!(
        keys.iter().map(|k| k.0.as_str()).collect::<Vec<_>>(),
        ["r3"]
    );
    // TEAM (COMPANY): the roots east, west; TEAM(east): east-a.
    let keys = e.breakdown_keys(c, &march, Dimension::Team);
    assert_eq!(
        keys.iter().map(|k| k.0.as_str()).collect::<Vec<_>>(),
        ["east", "west"]
    );
    let rows = e.breakdown_rows(c, &march, Dimension::Team, &keys, &revenue);
    assert_eq!(rows[0].values[0].value, Some(1700.0));
    assert_eq!(rows[1].values[0].value, Some(300.0));
    let keys = e.breakdown_keys(&team_scope("east"), &march, Dimension::Team);
    assert_eq!(
        keys,
        vec![("east-a".to_string(), "Team east-a".to_string())]
    );
    // LEAD_SOURCE: referral (l1), web (l2, l3).
    let keys = e.breakdown_keys(c, &march, Dimension::LeadSource);
    let rows = e.breakdown_rows(c, &march, Dimension::LeadSource, &keys, &[]);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].key, "web");
    assert_eq!(rows[1].values[0].value, Some(2.0)); // leads_created
    assert_eq!(rows[1].values[1].value, Some(0.5)); // conversion: l3 of l2, l3
    assert_eq!(rows[1].values[2].value, Some(7200.0)); // response: l2 only
    // ACTIVITY_TYPE: all eight types in type order.
    let keys = e.breakdown_keys(c, &march, Dimension::ActivityType);
    let rows = e.breakdown_rows(c, &march, Dimension::ActivityType, &keys, &[]);
    assert_eq!(rows.len(), 8);
    assert_eq!(rows[0].key, "CALL");
    assert_eq!(rows[0].values[0].value, Some(2.0));
    assert_eq!(rows[0].values[1].value, Some(720.0));
    // STAGE: the funnel, stages in pipeline order plus "won".
    let keys = e.breakdown_keys(c, &march, Dimension::Stage);
    let rows = e.breakdown_rows(c, &march, Dimension::Stage, &keys, &[]);
    let names: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(
        names,
        [
            "prospecting",
            "qualification",
            "proposal",
            "negotiation",
            "won"
        ]
    );
    // cohort dB (won → 3), dC (prospecting → 0), dD (proposal → 2): reached 3, 2, 2, 1; won 1
    let reached: Vec<Option<f64>> = rows.iter().map(|r| r.values[0].value).collect();
    assert_eq!(
        reached,
        vec![Some(3.0), Some(2.0), Some(2.0), Some(1.0), Some(1.0)]
    );
    assert!(close(rows[0].values[1].value, 1.0 / 3.0));
    assert_eq!(rows[4].values.len(), 1);
}

/// SPEC §7 REP rows for COMPANY: reps with a team at some instant of P, plus
/// reps with records in P but no team; TEAM scopes list only their reps.
#[test]
fn rep_breakdown_includes_reps_without_team_for_company() {
    let mut data = dataset(vec![
        team("A", None),
        member("m1", "r1", Some("A"), "2024-01-01T00:00:00Z"),
        // r2 left all teams before March: no team in P, but an order in P.
        member("m2", "r2", Some("A"), "2024-01-01T00:00:00Z"),
        member("m3", "r2", None, "2024-02-01T00:00:00Z"),
        // r4 has no team and no record in March: no row.
        member("m4", "r4", None, "2024-01-01T00:00:00Z"),
    ]);
    data.orders
        .push(order("o1", 10, "2024-03-05T00:00:00Z", Some("r2")));
    data.orders
        .push(order("o2", 20, "2024-03-05T00:00:00Z", Some("loner")));
    data.orders
        .push(order("o3", 30, "2024-02-05T00:00:00Z", Some("r4")));
    let e = Engine::new(&data, TenantSettings::default());
    let march = month(2024, 3);
    let keys = |s: &Scope| -> Vec<String> {
        e.breakdown_keys(s, &march, Dimension::Rep)
            .into_iter()
            .map(|k| k.0)
            .collect()
    };
    assert_eq!(keys(&Scope::Company), ["loner", "r1", "r2"]);
    assert_eq!(keys(&team_scope("A")), ["r1"]);
    assert_eq!(keys(&rep_scope("r4")), ["r4"]);
    // Breakdowns by TEAM for a REP scope have no rows.
    assert!(
        e.breakdown_keys(&rep_scope("r1"), &march, Dimension::Team)
            .is_empty()
    );
}

/// SPEC §5: a customer whose owner moves into a team counts there as new or
/// reactivation MRR, and as churned in the team it left; COMPANY sees nothing.
#[test]
fn customer_owner_moving_team_moves_its_mrr() {
    let data = dataset(vec![
        team("A", None),
        team("B", None),
        member("m1", "r1", Some("A"), "2024-01-01T00:00:00Z"),
        member("m2", "r1", Some("B"), "2024-03-15T00:00:00Z"),
        customer("c", "2024-01-01T00:00:00Z", None, Some("r1")),
        customer("fresh", "2024-01-01T00:00:00Z", None, Some("r1")),
        sub("s1", "sub", "c", 100, "2024-01-05T00:00:00Z"),
        // paid for the first time in March, after r1 joined B
        sub("s2", "sub-2", "fresh", 30, "2024-03-20T00:00:00Z"),
    ]);
    let e = Engine::new(&data, TenantSettings::default());
    let march = month(2024, 3);
    let (a, b) = (team_scope("A"), team_scope("B"));
    assert_val(&e, &a, &march, "churned_mrr", 100.0);
    assert_val(&e, &a, &march, "net_new_mrr", -100.0);
    // c had MRR before start (in A): reactivation in B; fresh never paid: new.
    assert_val(&e, &b, &march, "reactivation_mrr", 100.0);
    assert_val(&e, &b, &march, "new_mrr", 30.0);
    assert_val(&e, &Scope::Company, &march, "reactivation_mrr", 0.0);
    assert_val(&e, &Scope::Company, &march, "churned_mrr", 0.0);
    assert_val(&e, &Scope::Company, &march, "new_mrr", 30.0);
    // Customer counts follow the owner too: active at end in B, at start in A.
    assert_val(&e, &b, &march, "active_customers", 2.0);
    assert_val(&e, &a, &march, "active_customers", 0.0);
    assert_val(&e, &a, &march, "customer_retention_rate", 1.0);
}

// ---- property tests ----------------------------------------------------------------

mod properties {
    use super::*;
    use proptest::prelude::*;

    const TEAMS: [&str; 3] = ["t0", "t1", "t2"];
    const REPS: [&str; 4] = ["r0", "r1", "r2", "r3"];

    /// An instant between 2024-01-01 and 2024-05-01, on whole hours (so
    /// boundaries and ties are hit often).
    fn instant() -> impl Strategy<Value = Instant> {
        (0i64..(121 * 24)).prop_map(|h| t("2024-01-01T00:00:00Z") + chrono::TimeDelta::hours(h))
    }

    fn opt_rep() -> impl Strategy<Value = Option<String>> {
        proptest::option::of(proptest::sample::select(REPS.to_vec()).prop_map(str::to_string))
    }

    prop_compose! {
        fn arb_team()(i in 0usize..3, parent in proptest::option::of(0usize..4)) -> Team {
            Team {
                id: TEAMS[i].to_string(),
                version: None,
                name: TEAMS[i].to_string(),
                // index 3 is a team that does not exist (a root)
                parent_team_id: parent.map(|p| TEAMS.get(p).copied().unwrap_or("gone").to_string()),
            }
        }
    }

    prop_compose! {
        fn arb_membership()(n in 0u32..1000, rep in 0usize..4, team in proptest::option::of(0usize..4), at in instant()) -> TeamMembership {
            TeamMembership {
                id: format!("m{n}"),
                version: None,
                rep_id: REPS[rep].to_string(),
                team_id: team.map(|i| TEAMS.get(i).copied().unwrap_or("gone").to_string()),
                effective_at: at,
            }
        }
    }

    prop_compose! {
        fn arb_customer()(i in 0usize..6, acquired in instant(), churn in proptest::option::of(0i64..2000), owner in opt_rep()) -> Customer {
            Customer {
                id: format!("c{i}"),
                version: None,
                acquired_at: acquired,
                churned_at: churn.map(|h| acquired + chrono::TimeDelta::hours(h)),
                owner_rep_id: owner,
                source: None,
                name: None,
            }
        }
    }

    prop_compose! {
        fn arb_sub()(n in 0u32..1000, s in 0usize..4, c in 0usize..6, mrr in prop_oneof![Just(0i64), 1i64..500], at in instant()) -> SubscriptionChange {
            SubscriptionChange {
                id: format!("sc{n}"),
                version: None,
                subscription_id: format!("s{s}"),
                customer_id: format!("c{c}"),
                mrr,
                effective_at: at,
            }
        }
    }

    prop_compose! {
        fn arb_order()(n in 0u32..1000, amount in 1i64..1000, at in instant(), rep in 0usize..4, customer in proptest::option::of(0usize..6), kind in 0usize..4) -> Order {
            let mut o = order(&format!("o{n}"), amount, "2024-01-01T00:00:00Z", Some(REPS[rep]))
                .with_instant(at);
            o.customer_id = customer.map(|c| format!("c{c}"));
            o.kind = [OrderKind::New, OrderKind::Upsell, OrderKind::CrossSell, OrderKind::Renewal][kind];
            o
        }
    }

    trait WithInstant {
        fn with_instant(self, at: Instant) -> Self;
    }

    impl WithInstant for Order {
        fn with_instant(mut self, at: Instant) -> Self {
            self.ordered_at = at;
            self
        }
    }

    /// Upsert semantics: one record per id (the last one wins).
    fn dedup<T, F: Fn(&T) -> String>(items: Vec<T>, id: F) -> Vec<T> {
        let mut map: BTreeMap<String, T> = BTreeMap::new();
        for item in items {
            map.insert(id(&item), item);
        }
        map.into_values().collect()
    }

    prop_compose! {
        fn arb_dataset()(
            teams in proptest::collection::vec(arb_team(), 0..4),
            memberships in proptest::collection::vec(arb_membership(), 0..8),
            customers in proptest::collection::vec(arb_customer(), 0..7),
            subs in proptest::collection::vec(arb_sub(), 0..14),
            orders in proptest::collection::vec(arb_order(), 0..12),
        ) -> Dataset {
            Dataset {
                teams: dedup(teams, |t| t.id.clone()),
                team_memberships: dedup(memberships, |m| m.id.clone()),
                customers: dedup(customers, |c| c.id.clone()),
                subscription_changes: dedup(subs, |s| s.id.clone()),
                orders: dedup(orders, |o| o.id.clone()),
                ..Dataset::default()
            }
        }
    }

    fn later(at: Instant, hours: Option<i64>) -> Option<Instant> {
        hours.map(|h| at + chrono::TimeDelta::hours(h))
    }

    prop_compose! {
        fn arb_deal()(n in 0u32..1000, amount in 0i64..1000, at in instant(), close in proptest::option::of(0i64..1500), won in any::<bool>(), owner in opt_rep(), stage in 0usize..6) -> Deal {
            let closed_at = later(at, close);
            Deal {
                id: format!("d{n}"),
                version: None,
                amount,
                created_at: at,
                status: match (closed_at, won) {
                    (None, _) => DealStatus::Open,
                    (Some(_), true) => DealStatus::Won,
                    (Some(_), false) => DealStatus::Lost,
                },
                closed_at,
                stage: STAGES[stage].map(str::to_string),
                owner_rep_id: owner,
                customer_id: None,
                lead_id: None,
            }
        }
    }

    /// Stage names: the default pipeline's, one outside it, and none.
    const STAGES: [Option<&str>; 6] = [
        Some("prospecting"),
        Some("qualification"),
        Some("proposal"),
        Some("negotiation"),
        Some("parked"),
        None,
    ];

    prop_compose! {
        fn arb_lead()(n in 0u32..1000, at in instant(), respond in proptest::option::of(0i64..300), convert in proptest::option::of(0i64..900), owner in opt_rep(), referral in any::<bool>()) -> Lead {
            Lead {
                id: format!("l{n}"),
                version: None,
                source: if referral { "referral".into() } else { "web".into() },
                created_at: at,
                owner_rep_id: owner,
                first_response_at: later(at, respond),
                converted_at: later(at, convert),
                customer_id: None,
            }
        }
    }

    prop_compose! {
        fn arb_activity()(n in 0u32..1000, kind in 0usize..8, at in instant(), seconds in proptest::option::of(0i64..5000), rep in 0usize..4) -> Activity {
            Activity {
                id: format!("a{n}"),
                version: None,
                rep_id: REPS[rep].into(),
                activity_type: ActivityType::ALL[kind],
                occurred_at: at,
                duration_seconds: seconds,
                lead_id: None,
                deal_id: None,
                customer_id: None,
            }
        }
    }

    prop_compose! {
        fn arb_inquiry()(n in 0u32..1000, at in instant(), respond in proptest::option::of(0i64..100), rep in opt_rep()) -> Inquiry {
            Inquiry {
                id: format!("i{n}"),
                version: None,
                channel: "email".into(),
                received_at: at,
                first_response_at: later(at, respond),
                customer_id: None,
                rep_id: rep,
            }
        }
    }

    prop_compose! {
        fn arb_csat()(n in 0u32..1000, score in 1i32..6, at in instant(), rep in opt_rep()) -> CsatResponse {
            CsatResponse {
                id: format!("s{n}"),
                version: None,
                score,
                responded_at: at,
                customer_id: None,
                rep_id: rep,
            }
        }
    }

    prop_compose! {
        /// [`arb_dataset`] plus deals, leads, activities, inquiries and CSAT.
        fn arb_rich_dataset()(
            base in arb_dataset(),
            deals in proptest::collection::vec(arb_deal(), 0..10),
            leads in proptest::collection::vec(arb_lead(), 0..10),
            activities in proptest::collection::vec(arb_activity(), 0..16),
            inquiries in proptest::collection::vec(arb_inquiry(), 0..6),
            csat in proptest::collection::vec(arb_csat(), 0..6),
            changes in proptest::collection::vec((0usize..10, 0u32..1000, 0usize..5, instant()), 0..16),
        ) -> Dataset {
            let deals = dedup(deals, |d| d.id.clone());
            // Stage changes of the generated deals, before, during and after
            // their open span, into pipeline stages and one outside it.
            let deal_stage_changes = if deals.is_empty() {
                Vec::new()
            } else {
                let changes = changes
                    .into_iter()
                    .map(|(d, n, stage, at)| DealStageChange {
                        id: format!("g{n}"),
                        version: None,
                        deal_id: deals[d % deals.len()].id.clone(),
                        stage: STAGES[stage].unwrap_or("parked").to_string(),
                        entered_at: at,
                    })
                    .collect();
                dedup(changes, |c| c.id.clone())
            };
            Dataset {
                deal_stage_changes,
                deals,
                leads: dedup(leads, |l| l.id.clone()),
                activities: dedup(activities, |a| a.id.clone()),
                inquiries: dedup(inquiries, |i| i.id.clone()),
                csat_responses: dedup(csat, |c| c.id.clone()),
                ..base
            }
        }
    }

    fn scopes() -> Vec<Scope> {
        let mut s = vec![Scope::Company];
        s.extend(TEAMS.iter().map(|t| team_scope(t)));
        s.extend(REPS.iter().map(|r| rep_scope(r)));
        s
    }

    fn exact(e: &Engine, s: &Scope, p: &PeriodRange, id: &str) -> i64 {
        kv(e, s, p, id).exact_value.expect("whole value")
    }

    fn parent_of<'d>(data: &'d Dataset, team: &str) -> Option<&'d str> {
        let t = data.teams.iter().find(|t| t.id == team)?;
        let p = t.parent_team_id.as_deref()?;
        data.teams.iter().any(|t| t.id == p).then_some(p)
    }

    fn on_cycle(data: &Dataset, team: &str) -> bool {
        let mut cur = team;
        for _ in 0..=data.teams.len() {
            match parent_of(data, cur) {
                Some(p) if p == team => return true,
                Some(p) => cur = p,
                None => return false,
            }
        }
        false
    }

    fn naive_counts(data: &Dataset, scope: &Scope, rep: Option<&str>, t: Instant) -> bool {
        match scope {
            Scope::Company => true,
            Scope::Rep(r) => rep == Some(r.as_str()),
            Scope::Team(root) => {
                let Some(rep) = rep else { return false };
                let latest = data
                    .team_memberships
                    .iter()
                    .filter(|m| m.rep_id == rep && m.effective_at < t)
                    .max_by(|a, b| (a.effective_at, &a.id).cmp(&(b.effective_at, &b.id)));
                let Some(mut team) = latest.and_then(|m| m.team_id.as_deref()) else {
                    return false;
                };
                if !data.teams.iter().any(|x| x.id == team) {
                    return false;
                }
                for _ in 0..=data.teams.len() {
                    if team == root {
                        return true;
                    }
                    match parent_of(data, team) {
                        Some(p) => team = p,
                        None => return false,
                    }
                }
                false
            }
        }
    }

    proptest! {
        /// new + reactivation + expansion − contraction − churned = net_new_mrr
        /// (= mrr − mrr_start) in every scope, customers moving between
        /// owners' teams and subscriptions moving between customers included.
        #[test]
        fn mrr_movements_add_up_in_every_scope(data in arb_dataset(), m in 2u32..5) {
            let e = Engine::new(&data, TenantSettings::default());
            let p = month(2024, m);
            for s in scopes() {
                let moves = exact(&e, &s, &p, "new_mrr") + exact(&e, &s, &p, "reactivation_mrr")
                    + exact(&e, &s, &p, "expansion_mrr") - exact(&e, &s, &p, "contraction_mrr")
                    - exact(&e, &s, &p, "churned_mrr");
                let net = exact(&e, &s, &p, "net_new_mrr");
                prop_assert_eq!(moves, net, "scope {:?}", s);
                prop_assert_eq!(net, exact(&e, &s, &p, "mrr") - exact(&e, &s, &p, "mrr_start"));
            }
        }

        /// Σ REP-breakdown revenue = COMPANY revenue when every order has a rep.
        /// (REP attribution does not depend on teams, and the COMPANY REP
        /// breakdown lists reps with records in P, so this holds even when reps
        /// move.) Σ revenue of the root teams = revenue of the orders whose rep
        /// had a known team at ordered_at.
        #[test]
        fn rep_breakdown_sums_to_company_revenue(data in arb_dataset(), m in 2u32..5) {
            let e = Engine::new(&data, TenantSettings::default());
            let p = month(2024, m);
            let revenue: Vec<&KpiDef> = CATALOG.iter().filter(|k| k.id == "revenue").collect();
            let keys = e.breakdown_keys(&Scope::Company, &p, Dimension::Rep);
            let rows = e.breakdown_rows(&Scope::Company, &p, Dimension::Rep, &keys, &revenue);
            let by_rep: i64 = rows.iter().filter_map(|r| r.values[0].exact_value).sum();
            let company = exact(&e, &Scope::Company, &p, "revenue");
            prop_assert_eq!(by_rep, company);

            let keys = e.breakdown_keys(&Scope::Company, &p, Dimension::Team);
            let rows = e.breakdown_rows(&Scope::Company, &p, Dimension::Team, &keys, &revenue);
            let by_root: i64 = rows.iter().filter_map(|r| r.values[0].exact_value).sum();
            let index = super::super::Index::new(&data);
            let with_team: i64 = data.orders.iter()
                .filter(|o| p.contains(o.ordered_at))
                .filter(|o| o.rep_id.as_deref()
                    .and_then(|r| index.team_at(r, o.ordered_at))
                    .is_some_and(|t| index.team_exists(t)))
                .map(|o| o.amount)
                .sum();
            prop_assert_eq!(by_root, with_team);
        }

        /// customer_churn_rate + customer_retention_rate = 1 whenever a customer
        /// is active at start. Checked against the definitions: for a customer
        /// active at start (churned_at null or ≥ start), "churned_at ∈ P" ⇔
        /// "churned_at < end" ⇔ "not active at end", so the two numerators
        /// partition the denominator exactly (both attributed at start).
        #[test]
        fn churn_plus_retention_is_one(data in arb_dataset(), m in 2u32..5) {
            let e = Engine::new(&data, TenantSettings::default());
            let p = month(2024, m);
            for s in scopes() {
                let churn = kv(&e, &s, &p, "customer_churn_rate");
                let retention = kv(&e, &s, &p, "customer_retention_rate");
                prop_assert_eq!(churn.denominator, retention.denominator);
                match (churn.numerator, retention.numerator, churn.denominator) {
                    (Some(a), Some(b), Some(n)) if n > 0.0 => {
                        prop_assert_eq!(a + b, n);
                        let sum = churn.value.unwrap_or(f64::NAN) + retention.value.unwrap_or(f64::NAN);
                        prop_assert!((sum - 1.0).abs() < 1e-12);
                    }
                    _ => {
                        prop_assert!(churn.value.is_none() && retention.value.is_none());
                    }
                }
            }
        }

        /// Revenue and active customers in every scope equal a naive reading
        /// of SPEC §5 (latest membership strictly before t, ties by greatest
        /// id; TEAM = the team and its descendants) on acyclic team trees.
        #[test]
        fn attribution_matches_a_naive_reading_of_the_spec(data in arb_dataset(), m in 2u32..5) {
            prop_assume!(data.teams.iter().all(|t| !on_cycle(&data, &t.id)));
            let e = Engine::new(&data, TenantSettings::default());
            let p = month(2024, m);
            for s in scopes() {
                let revenue: i64 = data.orders.iter()
                    .filter(|o| p.contains(o.ordered_at) && naive_counts(&data, &s, o.rep_id.as_deref(), o.ordered_at))
                    .map(|o| o.amount)
                    .sum();
                prop_assert_eq!(exact(&e, &s, &p, "revenue"), revenue, "scope {:?}", s);
                let active: i64 = data.customers.iter()
                    .filter(|c| c.acquired_at < p.end && c.churned_at.is_none_or(|ch| ch >= p.end))
                    .filter(|c| naive_counts(&data, &s, c.owner_rep_id.as_deref(), p.end))
                    .count() as i64;
                prop_assert_eq!(exact(&e, &s, &p, "active_customers"), active, "scope {:?}", s);
            }
        }

        /// REP and TEAM scopes read only the records of their reps (per-rep
        /// windows, own deals and customers): every KPI equals the reading
        /// of all records through the scope filter, for every scope (reps
        /// moving between teams included) and two period lengths.
        #[test]
        fn rep_narrowing_changes_no_value(data in arb_rich_dataset(), m in 2u32..5) {
            let narrowed = Engine::new(&data, TenantSettings::default());
            let full = Engine::new(&data, TenantSettings::default()).without_rep_narrowing();
            let all: Vec<&KpiDef> = CATALOG.iter().collect();
            let quarter = PeriodSpec::Calendar {
                granularity: Granularity::Quarter,
                date: NaiveDate::from_ymd_opt(2024, m, 1).expect("date"),
            }
            .resolve(chrono_tz::UTC, 1)
            .expect("quarter");
            for p in [month(2024, m), quarter] {
                prop_assert_eq!(
                    super::super::reps_with_records_in(&narrowed.index, &p),
                    super::super::reps_with_records_scanned(&data, &p)
                );
                for s in scopes() {
                    prop_assert_eq!(narrowed.values(&s, &p, &all), full.values(&s, &p, &all), "{:?}", s);
                    prop_assert_eq!(narrowed.funnel(&s, &p), full.funnel(&s, &p), "{:?}", s);
                    for dimension in [Dimension::LeadSource, Dimension::ActivityType, Dimension::Stage] {
                        let keys = full.breakdown_keys(&s, &p, dimension);
                        prop_assert_eq!(
                            narrowed.breakdown_rows(&s, &p, dimension, &keys, &all),
                            full.breakdown_rows(&s, &p, dimension, &keys, &all),
                            "{:?} {:?}", s, dimension
                        );
                    }
                }
            }
        }

        /// The MRR timeline equals every customer's MRR read straight from
        /// the subscriptions, at every hour boundary and in between, and its
        /// totals are the sums of those.
        #[test]
        fn the_mrr_timeline_matches_the_subscriptions(data in arb_dataset(), h in 0i64..(121 * 24)) {
            let index = super::super::Index::new(&data);
            let at = t("2024-01-01T00:00:00Z") + chrono::TimeDelta::hours(h);
            for t in [at, at + chrono::TimeDelta::minutes(30)] {
                let reference = index.customer_mrr_at(t);
                let mut total = 0;
                let mut paying = 0;
                for c in index.mrr.customers() {
                    let m = index.mrr.mrr_of(c, t);
                    prop_assert_eq!(m, reference.get(c).copied().unwrap_or(0), "{} at {}", c, t);
                    total += m;
                    paying += i128::from(m > 0);
                }
                prop_assert!(reference.keys().all(|c| index.mrr.customers().any(|k| k == *c)));
                prop_assert_eq!(index.mrr.totals_at(t), (total, paying));
            }
        }

        /// No KPI is ever NaN or infinite; undefined always has a reason.
        #[test]
        fn values_are_finite_or_explained(data in arb_dataset(), m in 2u32..5) {
            let e = Engine::new(&data, TenantSettings::default());
            let p = month(2024, m);
            let all: Vec<&KpiDef> = CATALOG.iter().collect();
            for s in scopes() {
                for v in e.values(&s, &p, &all) {
                    match v.value {
                        Some(x) => prop_assert!(x.is_finite(), "{:?}", v),
                        None => prop_assert!(v.undefined_reason.is_some_and(|r| !r.is_empty())),
                    }
                }
            }
        }
    }
}
