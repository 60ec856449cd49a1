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

fn some(s: &str) -> Option<String> {
    Some(s.to_string())
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

fn target(id: &str, metric: TargetMetric, value: i64, from: NaiveDate, to: NaiveDate, scope: TargetScope) -> Record {
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
    assert!(v.value.is_none(), "{id} for {scope:?} should be undefined, got {v:?}");
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
    data.orders.push(order("o1", 100, "2024-03-10T00:00:00Z", Some("r1")));
    // At its own instant the membership is not yet in force: still team A.
    data.orders.push(order("o2", 50, "2024-03-15T12:00:00Z", Some("r1")));
    data.orders.push(order("o3", 200, "2024-03-20T00:00:00Z", Some("r1")));
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
    assert_eq!(kv(&e, &Scope::Company, &march, "mrr").exact_value, Some(750));
}

fn appendix_funnel_data() -> Dataset {
    use DealStatus::*;
    dataset(vec![
        // d1 OPEN 1000, history prospecting → proposal (top index 2)
        deal("d1", Open, 1000, "2024-03-02T00:00:00Z", None, Some("proposal"), None),
        stage("d1-1", "d1", "prospecting", "2024-03-02T00:00:00Z"),
        stage("d1-2", "d1", "proposal", "2024-03-05T00:00:00Z"),
        // d2 WON 7000, created Mar 1, closed Mar 20, history prospecting (WON → top 3)
        deal("d2", Won, 7000, "2024-03-01T00:00:00Z", Some("2024-03-20T00:00:00Z"), None, None),
        stage("d2-1", "d2", "prospecting", "2024-03-01T00:00:00Z"),
        // d3 LOST 600, stage qualification, no history (top 1)
        deal("d3", Lost, 600, "2024-03-03T00:00:00Z", Some("2024-03-25T00:00:00Z"), Some("qualification"), None),
        // d4 OPEN 2000, stage "discovery" (not in the pipeline → index 0)
        deal("d4", Open, 2000, "2024-03-04T00:00:00Z", None, Some("discovery"), None),
        // d5 OPEN 3000, stage negotiation (top 3): skips stages
        deal("d5", Open, 3000, "2024-03-05T00:00:00Z", None, Some("negotiation"), None),
        // d7 OPEN 5000, history negotiation (Mar 3) then qualification (Mar 4) (top 3)
        deal("d7", Open, 5000, "2024-03-02T00:00:00Z", None, Some("qualification"), None),
        stage("d7-1", "d7", "negotiation", "2024-03-03T00:00:00Z"),
        stage("d7-2", "d7", "qualification", "2024-03-04T00:00:00Z"),
        // d8 WON 10000, created Mar 10, closed Apr 1 00:00 (still open at end; stage negotiation)
        deal("d8", Won, 10000, "2024-03-10T00:00:00Z", Some("2024-04-01T00:00:00Z"), Some("negotiation"), None),
        // d6 OPEN 4000 created Feb 28 (prospecting): not in the cohort
        deal("d6", Open, 4000, "2024-02-28T00:00:00Z", None, Some("prospecting"), None),
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
