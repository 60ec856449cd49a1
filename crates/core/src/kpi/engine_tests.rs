//! Engine tests: the worked examples and the rich fixture of the testkit
//! (`crate::testkit`, shared with the gRPC tests) against their
//! hand-computed tables, the edge cases docs/kpis.md settles, and property
//! tests.

use chrono::NaiveDate;
use chrono_tz::Tz;

use super::*;
use crate::domain::period::{Granularity, PeriodSpec};
use crate::domain::*;
use crate::testkit::build::{date as d, instant as t, *};
use crate::testkit::{Expected, ScopedExpected, appendix, periods, rich};

// ---- helpers -----------------------------------------------------------------

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

/// `expected` (within 1e-9 relative), or undefined with a reason when `None`.
#[track_caller]
fn assert_expected(e: &Engine, scope: &Scope, p: &PeriodRange, id: &str, expected: Option<f64>) {
    match expected {
        Some(w) => assert_val(e, scope, p, id, w),
        None => assert_undefined(e, scope, p, id),
    }
}

/// Every value of a table for one scope and period.
#[track_caller]
fn assert_table(e: &Engine, scope: &Scope, p: &PeriodRange, table: &[Expected]) {
    for (id, want) in table {
        assert_expected(e, scope, p, id, *want);
    }
}

/// Every value of a table of scoped values for one period.
#[track_caller]
fn assert_scoped_table(e: &Engine, p: &PeriodRange, table: &[ScopedExpected]) {
    for (scope, id, want) in table {
        assert_expected(e, &scope.to_scope(), p, id, *want);
    }
}

// ---- the worked examples (testkit::appendix), every number they list -----------

/// "A rep moves team".
#[test]
fn appendix_rep_moves_team() {
    let data = dataset(appendix::rep_moves_team());
    let e = Engine::new(&data, TenantSettings::default());
    assert_scoped_table(&e, &month(2024, 3), appendix::REP_MOVES_TEAM_MARCH);
    assert_scoped_table(&e, &month(2024, 2), appendix::REP_MOVES_TEAM_FEBRUARY);
}

/// "MRR movements": every number listed there.
#[test]
fn appendix_mrr_movements() {
    let data = dataset(appendix::mrr());
    let e = Engine::new(&data, TenantSettings::default());
    let march = month(2024, 3);
    for scope in [Scope::Company, rep_scope("r1")] {
        assert_table(&e, &scope, &march, appendix::MRR_MARCH);
    }
    let v = kv(&e, &Scope::Company, &march, "mrr_churn_rate");
    assert_eq!((v.numerator, v.denominator), (Some(280.0), Some(720.0)));
    assert_eq!(
        kv(&e, &Scope::Company, &march, "mrr").exact_value,
        Some(750)
    );
}

/// "Funnel and pipeline": every number listed there.
#[test]
fn appendix_funnel_and_pipeline() {
    let data = dataset(appendix::funnel());
    let e = Engine::new(&data, TenantSettings::default());
    let march = month(2024, 3);
    let c = &Scope::Company;
    let funnel = e.funnel(c, &march);
    let reached: Vec<i64> = funnel.iter().map(|f| f.reached).collect();
    assert_eq!(reached, appendix::FUNNEL_REACHED);
    assert_eq!(funnel[4].stage, "won");
    let leakage: Vec<Option<f64>> = funnel.iter().map(|f| f.leakage).collect();
    for (got, want) in leakage.iter().zip(appendix::FUNNEL_LEAKAGE) {
        assert!(close(*got, want), "{leakage:?}");
    }
    assert_eq!(leakage[4], None);
    assert_table(&e, c, &march, appendix::FUNNEL_MARCH);
}

// ---- one hand-computed value for every KPI (testkit::rich) ---------------------

/// Every catalog KPI on the rich fixture, COMPANY scope, March 2024, and
/// some of February's, computed by hand.
#[test]
fn every_kpi_has_a_hand_computed_value() {
    let data = rich::dataset();
    let e = Engine::new(&data, rich::settings());
    let ids: Vec<&str> = rich::MARCH.iter().map(|(id, _)| *id).collect();
    let catalog: Vec<&str> = CATALOG.iter().map(|k| k.id).collect();
    assert_eq!(
        ids, catalog,
        "every catalog KPI needs a hand-computed value here"
    );
    assert_table(&e, &Scope::Company, &month(2024, 3), rich::MARCH);
    assert_table(&e, &Scope::Company, &month(2024, 2), rich::FEBRUARY);
}

/// The same fixture for TEAM and REP scopes: sub-teams, a rep moving
/// mid-period, customer-level attribution, targets of the named scope only.
#[test]
fn team_and_rep_scopes_on_the_rich_fixture() {
    let data = rich::dataset();
    let e = Engine::new(&data, rich::settings());
    let march = month(2024, 3);
    assert_scoped_table(&e, &march, rich::MARCH_BY_SCOPE);
    // A prorated target has no exact value; a whole one has.
    assert_eq!(
        kv(&e, &rep_scope("r2"), &march, "revenue_target").exact_value,
        None
    );
    assert_eq!(
        kv(&e, &Scope::Company, &march, "revenue_target").exact_value,
        Some(6200)
    );
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

/// The tie rule of docs/kpis.md and "state at t counts what happened strictly before t".
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
    // "team at some instant of P" includes memberships in force in [start, end):
    // m-1 (B) and m-2 (A) take effect at start, but m-1 loses the tie to m-2
    // and is never in force, so only A counts r1 active.
    assert_val(&e, &team_scope("A"), &march, "active_reps", 1.0);
    assert_val(&e, &team_scope("B"), &march, "active_reps", 0.0);
    // April: r1 has left all teams → no active rep anywhere.
    assert_val(&e, &Scope::Company, &month(2024, 4), "active_reps", 0.0);
}

/// A membership that loses a tie is never in force: it puts its rep in its
/// team at no instant, so not "at some instant of P" either.
#[test]
fn a_membership_losing_a_tie_is_never_in_force() {
    let mut data = dataset(vec![
        team("A", None),
        team("B", None),
        rep("r1"),
        member("m-1", "r1", Some("A"), "2024-01-01T00:00:00Z"),
        // Same instant: m-2b (A) has the greater id and wins; m-2a (B) loses.
        member("m-2a", "r1", Some("B"), "2024-03-10T00:00:00Z"),
        member("m-2b", "r1", Some("A"), "2024-03-10T00:00:00Z"),
    ]);
    data.orders
        .push(order("o1", 300, "2024-03-15T00:00:00Z", Some("r1")));
    let e = Engine::new(&data, TenantSettings::default());
    let march = month(2024, 3);
    // r1 is in A at every instant of March; never in B.
    assert_val(&e, &team_scope("B"), &march, "active_reps", 0.0);
    assert_undefined(&e, &team_scope("B"), &march, "revenue_per_rep");
    assert_undefined(&e, &team_scope("B"), &march, "bookings_per_rep");
    assert_val(&e, &team_scope("A"), &march, "active_reps", 1.0);
    assert_val(&e, &team_scope("A"), &march, "revenue_per_rep", 300.0);
    // No REP row for r1 under B.
    let keys = e.breakdown_keys(&team_scope("B"), &march, Dimension::Rep);
    assert!(keys.iter().all(|(k, _)| k != "r1"), "{keys:?}");
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
    let data = dataset(periods::new_york_orders());
    let e = Engine::new(&data, periods::new_york_settings());
    let march = month_in(2024, 3, periods::NEW_YORK);
    assert_val(
        &e,
        &Scope::Company,
        &march,
        "revenue",
        periods::NEW_YORK_MARCH_REVENUE,
    );
    assert_val(
        &e,
        &Scope::Company,
        &month_in(2024, 2, periods::NEW_YORK),
        "revenue",
        periods::NEW_YORK_FEBRUARY_REVENUE,
    );
    // The DST day itself: Mar 10 00:00 EST (05:00Z) .. Mar 11 00:00 EDT (04:00Z).
    let dst_day = PeriodSpec::Calendar {
        granularity: Granularity::Day,
        date: d(2024, 3, 10),
    }
    .resolve(periods::NEW_YORK, 1)
    .expect("day");
    assert_eq!(dst_day.end - dst_day.start, chrono::TimeDelta::hours(23));
    // A UTC tenant reads the same orders differently.
    let utc = Engine::new(&data, TenantSettings::default());
    assert_val(
        &utc,
        &Scope::Company,
        &month(2024, 3),
        "revenue",
        periods::UTC_MARCH_REVENUE,
    );
}

/// Fiscal year starting in April: FY containing 2024-03-15 is 2023-04-01..2024-04-01.
#[test]
fn fiscal_year_periods() {
    let data = dataset(periods::fiscal_year());
    let e = Engine::new(&data, periods::fiscal_year_settings());
    let fy = PeriodSpec::Calendar {
        granularity: Granularity::FiscalYear,
        date: d(2024, 3, 15),
    }
    .resolve(Tz::UTC, 4)
    .expect("fy");
    assert_eq!((fy.start_date, fy.end_date), (d(2023, 4, 1), d(2024, 4, 1)));
    let c = &Scope::Company;
    // revenue, the annual target, and revenue_growth against the previous
    // fiscal year
    assert_table(&e, c, &fy, periods::FISCAL_YEAR);
    // Fiscal Q4 (Jan..Mar 2024): 91 of 366 days of the target → 1200 × 91/366
    let q4 = PeriodSpec::Calendar {
        granularity: Granularity::FiscalQuarter,
        date: d(2024, 3, 15),
    }
    .resolve(Tz::UTC, 4)
    .expect("fq");
    assert_eq!((q4.start_date, q4.end_date), (d(2024, 1, 1), d(2024, 4, 1)));
    assert_table(&e, c, &q4, periods::FISCAL_Q4);
}

#[test]
fn comparisons_and_relative_change() {
    let data = rich::dataset();
    let e = Engine::new(&data, rich::settings());
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

/// The same week last year is not an ISO week (it starts on another weekday),
/// so the comparison period is a plain 7-day range and its own previous
/// period is the 7 days just before it, not the ISO week containing its
/// first day's eve (which would overlap it).
#[test]
fn previous_year_of_a_week_compares_with_the_seven_days_before() {
    let data = dataset(vec![
        sale("o1", 100, "2023-03-18T12:00:00Z", None),
        sale("o2", 1000, "2023-03-21T12:00:00Z", None),
        sale("o3", 10, "2023-03-25T12:00:00Z", None),
        sale("o4", 20, "2023-03-26T12:00:00Z", None),
        sale("o5", 40, "2023-03-30T12:00:00Z", None),
        sale("o6", 5, "2024-03-26T12:00:00Z", None),
    ]);
    let e = Engine::new(&data, TenantSettings::default());
    // ISO week containing Wed 2024-03-27: [Mon 2024-03-25, Mon 2024-04-01).
    let week = PeriodSpec::Calendar {
        granularity: Granularity::Week,
        date: d(2024, 3, 27),
    }
    .resolve(Tz::UTC, 1)
    .expect("week");
    let kpis: Vec<&KpiDef> = ["revenue", "revenue_growth"]
        .iter()
        .filter_map(|id| CATALOG.iter().find(|k| k.id == *id))
        .collect();
    let b = e.bundle(
        &Scope::Company,
        &week,
        &kpis,
        false,
        ComparisonKind::PreviousYear,
    );
    // Shifted one year: [Sat 2023-03-25, Sat 2023-04-01), not an ISO week.
    let cp = b.comparison_period.expect("comparison period");
    assert_eq!(
        (cp.start_date, cp.end_date),
        (d(2023, 3, 25), d(2023, 4, 1))
    );
    assert_eq!(cp.granularity, None);
    // The week itself: o6 = 5.
    assert_eq!(b.values[0].value, Some(5.0));
    // Comparison revenue: o3 + o4 + o5 = 10 + 20 + 40 = 70.
    let revenue = b.values[0].comparison.clone().expect("comparison");
    assert_eq!(revenue.value, Some(70.0));
    // Its previous period is [2023-03-18, 2023-03-25): o1 + o2 = 100 + 1000 = 1100,
    // so growth is (70 − 1100) ÷ 1100. Keeping the WEEK tag would have compared
    // with the ISO week [Mon 2023-03-20, Mon 2023-03-27): o2 + o3 + o4 = 1030.
    let growth = b.values[1].comparison.clone().expect("comparison");
    assert!(
        close(growth.value, (70.0 - 1100.0) / 1100.0),
        "comparison revenue_growth: {growth:?}"
    );
}

/// A relative change divides by |comparison| so its sign says whether the
/// value went up, also when the comparison is negative; the absolute change
/// is value − comparison.
#[test]
fn relative_change_of_a_negative_comparison_keeps_its_sign() {
    let data = dataset(vec![
        sale("o1", 1000, "2024-01-10T00:00:00Z", None),
        sale("o2", 900, "2024-02-10T00:00:00Z", None),
        sale("o3", 450, "2024-03-10T00:00:00Z", None),
    ]);
    let e = Engine::new(&data, TenantSettings::default());
    let kpis: Vec<&KpiDef> = ["revenue_growth", "revenue"]
        .iter()
        .filter_map(|id| CATALOG.iter().find(|k| k.id == *id))
        .collect();
    let b = e.bundle(
        &Scope::Company,
        &month(2024, 3),
        &kpis,
        false,
        ComparisonKind::PreviousPeriod,
    );
    // March growth (450 − 900) ÷ 900 = −0.5; February's (900 − 1000) ÷ 1000 = −0.1.
    let growth = &b.values[0];
    assert!(close(growth.value, -0.5), "{growth:?}");
    let c = growth.comparison.clone().expect("comparison");
    assert!(close(c.value, -0.1), "{c:?}");
    // It went down: (−0.5 − (−0.1)) ÷ |−0.1| = −4 (÷ −0.1 would say +4).
    assert!(close(c.relative_change, -4.0), "{c:?}");
    assert!(close(c.absolute_change, -0.4), "{c:?}");
    // Revenue 900 → 450: −50 %, −450.
    let revenue = b.values[1].comparison.clone().expect("comparison");
    assert!(close(revenue.relative_change, -0.5));
    assert_eq!(revenue.absolute_change, Some(-450.0));
    // From −10 to −5 went up by half of |−10|.
    assert_eq!(
        super::super::value::relative_change(Some(-5.0), Some(-10.0)),
        Some(0.5)
    );
    assert_eq!(
        super::super::value::absolute_change(Some(-5.0), Some(-10.0)),
        Some(5.0)
    );
    assert_eq!(super::super::value::absolute_change(None, Some(1.0)), None);
}

/// Series: consecutive months, every period present; an empty period has
/// zero counts and undefined ratios.
#[test]
fn series_has_every_period() {
    let data = rich::dataset();
    let e = Engine::new(&data, rich::settings());
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
    let data = rich::dataset();
    let e = Engine::new(&data, rich::settings());
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
    assert_eq!(reached, rich::MARCH_FUNNEL_REACHED.map(|n| Some(n as f64)));
    assert!(close(rows[0].values[1].value, 1.0 / 3.0));
    assert_eq!(rows[4].values.len(), 1);
}

/// REP rows for COMPANY (docs/kpis.md, decisions): reps with a team at some instant of P, plus
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

/// docs/kpis.md (MRR movements): a customer whose owner moves into a team counts there as new or
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
                id: TEAMS[i].into(),
                version: None,
                name: TEAMS[i].into(),
                // index 3 is a team that does not exist (a root)
                parent_team_id: parent.map(|p| TEAMS.get(p).copied().unwrap_or("gone").into()),
            }
        }
    }

    prop_compose! {
        fn arb_membership()(n in 0u32..1000, rep in 0usize..4, team in proptest::option::of(0usize..4), at in instant()) -> TeamMembership {
            TeamMembership {
                id: format!("m{n}").into(),
                version: None,
                rep_id: REPS[rep].into(),
                team_id: team.map(|i| TEAMS.get(i).copied().unwrap_or("gone").into()),
                effective_at: at,
            }
        }
    }

    prop_compose! {
        fn arb_customer()(i in 0usize..6, acquired in instant(), churn in proptest::option::of(0i64..2000), owner in opt_rep()) -> Customer {
            Customer {
                id: format!("c{i}").into(),
                version: None,
                acquired_at: acquired,
                churned_at: churn.map(|h| acquired + chrono::TimeDelta::hours(h)),
                owner_rep_id: owner.map(Into::into),
                source: None,
                name: None,
            }
        }
    }

    prop_compose! {
        fn arb_sub()(n in 0u32..1000, s in 0usize..4, c in 0usize..6, mrr in prop_oneof![Just(0i64), 1i64..500], at in instant()) -> SubscriptionChange {
            SubscriptionChange {
                id: format!("sc{n}").into(),
                version: None,
                subscription_id: format!("s{s}").into(),
                customer_id: format!("c{c}").into(),
                mrr,
                effective_at: at,
            }
        }
    }

    prop_compose! {
        fn arb_order()(n in 0u32..1000, amount in 1i64..1000, at in instant(), rep in 0usize..4, customer in proptest::option::of(0usize..6), kind in 0usize..4) -> Order {
            let mut o = order(&format!("o{n}"), amount, "2024-01-01T00:00:00Z", Some(REPS[rep]))
                .with_instant(at);
            o.customer_id = customer.map(|c| format!("c{c}")).map(Into::into);
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
                teams: dedup(teams, |t| t.id.to_string()),
                team_memberships: dedup(memberships, |m| m.id.to_string()),
                customers: dedup(customers, |c| c.id.to_string()),
                subscription_changes: dedup(subs, |s| s.id.to_string()),
                orders: dedup(orders, |o| o.id.to_string()),
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
                id: format!("d{n}").into(),
                version: None,
                amount,
                created_at: at,
                status: match (closed_at, won) {
                    (None, _) => DealStatus::Open,
                    (Some(_), true) => DealStatus::Won,
                    (Some(_), false) => DealStatus::Lost,
                },
                closed_at,
                stage: STAGES[stage].map(Into::into),
                owner_rep_id: owner.map(Into::into),
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
                id: format!("l{n}").into(),
                version: None,
                source: if referral { "referral".into() } else { "web".into() },
                created_at: at,
                owner_rep_id: owner.map(Into::into),
                first_response_at: later(at, respond),
                converted_at: later(at, convert),
                customer_id: None,
            }
        }
    }

    prop_compose! {
        fn arb_activity()(n in 0u32..1000, kind in 0usize..8, at in instant(), seconds in proptest::option::of(0i64..5000), rep in 0usize..4) -> Activity {
            Activity {
                id: format!("a{n}").into(),
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
                id: format!("i{n}").into(),
                version: None,
                channel: "email".into(),
                received_at: at,
                first_response_at: later(at, respond),
                customer_id: None,
                rep_id: rep.map(Into::into),
            }
        }
    }

    prop_compose! {
        fn arb_csat()(n in 0u32..1000, score in 1i32..6, at in instant(), rep in opt_rep()) -> CsatResponse {
            CsatResponse {
                id: format!("s{n}").into(),
                version: None,
                score,
                responded_at: at,
                customer_id: None,
                rep_id: rep.map(Into::into),
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
            let deals = dedup(deals, |d| d.id.to_string());
            // Stage changes of the generated deals, before, during and after
            // their open span, into pipeline stages and one outside it.
            let deal_stage_changes = if deals.is_empty() {
                Vec::new()
            } else {
                let changes = changes
                    .into_iter()
                    .map(|(d, n, stage, at)| DealStageChange {
                        id: format!("g{n}").into(),
                        version: None,
                        deal_id: deals[d % deals.len()].id.clone(),
                        stage: STAGES[stage].unwrap_or("parked").into(),
                        entered_at: at,
                    })
                    .collect();
                dedup(changes, |c| c.id.to_string())
            };
            Dataset {
                deal_stage_changes,
                deals,
                leads: dedup(leads, |l| l.id.to_string()),
                activities: dedup(activities, |a| a.id.to_string()),
                inquiries: dedup(inquiries, |i| i.id.to_string()),
                csat_responses: dedup(csat, |c| c.id.to_string()),
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

        /// An index built on parallel threads gives exactly the values of one
        /// built on a single thread, every KPI of every scope.
        #[test]
        fn parallel_and_sequential_indexes_agree(data in arb_dataset(), m in 2u32..5) {
            let p = month(2024, m);
            let one = super::super::Index::build(&data, false);
            let two = super::super::Index::build(&data, true);
            let a = Engine::with_index(one, TenantSettings::default());
            let b = Engine::with_index(two, TenantSettings::default());
            let all: Vec<&KpiDef> = CATALOG.iter().collect();
            for s in scopes() {
                prop_assert_eq!(a.values(&s, &p, &all), b.values(&s, &p, &all));
            }
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
        /// of docs/kpis.md (latest membership strictly before t, ties by greatest
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
                for c in index.customers.mrr.customers() {
                    let m = index.customers.mrr.mrr_of(c, t);
                    prop_assert_eq!(m, reference.get(c).copied().unwrap_or(0), "{} at {}", c, t);
                    total += m;
                    paying += i128::from(m > 0);
                }
                prop_assert!(reference.keys().all(|c| index.customers.mrr.customers().any(|k| k == *c)));
                prop_assert_eq!(index.customers.mrr.totals_at(t), (total, paying));
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

/// Money sums that do not fit the exact 64-bit value are undefined with
/// that reason, never a rounded double: two March orders of 2^62 and 2^62
/// minor units sum to 2^63, one more than `i64::MAX`. The order count stays
/// exact, and one order of 2^62 alone is exact.
#[test]
fn sums_beyond_the_exact_range_are_undefined_not_rounded() {
    let half = 1i64 << 62;
    let data = dataset([
        sale("big-1", half, "2024-03-05T00:00:00Z", None),
        sale("big-2", half, "2024-03-06T00:00:00Z", None),
        sale("big-3", half, "2024-04-06T00:00:00Z", None),
    ]);
    let e = Engine::new(&data, TenantSettings::default());
    let c = &Scope::Company;
    let revenue = kv(&e, c, &month(2024, 3), "revenue");
    assert_eq!(revenue.value, None);
    assert_eq!(revenue.exact_value, None);
    assert_eq!(
        revenue.undefined_reason.as_deref(),
        Some(crate::kpi::value::OVERFLOW_REASON)
    );
    assert_eq!(kv(&e, c, &month(2024, 3), "orders").exact_value, Some(2));
    let april = kv(&e, c, &month(2024, 4), "revenue");
    assert_eq!(
        (april.exact_value, april.value),
        (Some(half), Some(half as f64))
    );
}
