//! The rich fixture: March 2024 (UTC, default settings) with three reps —
//! r1 in `east`, r2 in `east-a` (a sub-team of `east`), r3 in `west` until it
//! joins `east` at Mar 16 00:00 — and records of every type, so that every
//! catalog KPI has a value worth checking. The values below are computed by
//! hand from docs/kpis.md, each with its working in a comment.

use crate::domain::*;

use super::ScopeRef::{Rep, Team};
use super::build::*;
use super::{DAY, Expected, ScopedExpected};

/// The fixture's records: teams, reps and memberships first, orders last.
pub fn records() -> Vec<Record> {
    use ActivityType::*;
    use DealStatus::*;
    use TargetMetric::*;
    let (r1, r2, r3) = (Some("r1"), Some("r2"), Some("r3"));
    let mut records = vec![
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
            TargetScope::Company,
        ),
        target(
            "T2",
            Bookings,
            9000,
            date(2024, 2, 1),
            date(2024, 5, 1),
            TargetScope::Company,
        ),
        target(
            "T3",
            NewCustomers,
            4,
            date(2024, 3, 1),
            date(2024, 4, 1),
            TargetScope::Company,
        ),
        target(
            "T4",
            DealsWon,
            4,
            date(2024, 3, 1),
            date(2024, 4, 1),
            TargetScope::Company,
        ),
        target(
            "T5",
            Revenue,
            1000,
            date(2024, 3, 1),
            date(2024, 4, 1),
            TargetScope::Rep("r1".into()),
        ),
        target(
            "T6",
            Revenue,
            620,
            date(2024, 3, 16),
            date(2024, 4, 16),
            TargetScope::Rep("r2".into()),
        ),
        target(
            "T7",
            Revenue,
            3100,
            date(2024, 3, 1),
            date(2024, 4, 1),
            TargetScope::Rep("r3".into()),
        ),
        target(
            "T8",
            Revenue,
            1000,
            date(2024, 3, 1),
            date(2024, 4, 1),
            TargetScope::Team("east".into()),
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
    ];
    // Orders.
    records.extend([
        order_with(
            "o1",
            1000,
            "2024-03-05T00:00:00Z",
            r1,
            OrderKind::New,
            Some("c1"),
        ),
        order_with(
            "o2",
            500,
            "2024-03-06T00:00:00Z",
            r2,
            OrderKind::Upsell,
            Some("c1"),
        ),
        order_with(
            "o3",
            300,
            "2024-03-10T00:00:00Z",
            r3,
            OrderKind::New,
            Some("c2"),
        ),
        order_with(
            "o4",
            200,
            "2024-03-20T00:00:00Z",
            r3,
            OrderKind::CrossSell,
            Some("c3"),
        ),
        order_with(
            "o5",
            100,
            "2024-03-21T00:00:00Z",
            None,
            OrderKind::New,
            None,
        ),
        order_with(
            "o6",
            999,
            "2024-02-20T00:00:00Z",
            r1,
            OrderKind::New,
            Some("c1"),
        ),
    ]);
    records
}

/// The fixture's records as a dataset.
pub fn dataset() -> Dataset {
    super::build::dataset(records())
}

/// The tenant settings the values below assume: the defaults (UTC, USD,
/// calendar fiscal year, the default pipeline, gross margin 1, CSAT ≥ 4
/// satisfied, "referral" as the referral source).
pub fn settings() -> TenantSettings {
    TenantSettings::default()
}

/// Every catalog KPI, in catalog order, COMPANY scope, March 2024.
pub const MARCH: &[Expected] = &[
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
    ("sales_cycle", Some(20.5 * DAY)),
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

/// Some KPIs for COMPANY in February 2024 (the month before [`MARCH`], as a
/// previous-period comparison sees it).
pub const FEBRUARY: &[Expected] = &[
    // o6
    ("revenue", Some(999.0)),
    ("orders", Some(1.0)),
    // dA (created Feb 1)
    ("deals_created", Some(1.0)),
    // l4
    ("leads_created", Some(1.0)),
    // c6 (acquired Feb 1)
    ("new_customers", Some(1.0)),
    // c5 (churned Feb 10)
    ("churned_customers", Some(1.0)),
    // at Mar 1: c1 100 + c4 60
    ("mrr", Some(160.0)),
    ("activities", Some(0.0)),
    // no deal closed in February
    ("win_rate", None),
];

/// TEAM and REP scopes, March 2024: sub-teams, a rep moving mid-period,
/// customer-level attribution, targets of the named scope only.
pub const MARCH_BY_SCOPE: &[ScopedExpected] = &[
    // east = east + east-a: r1 1000, r2 500 (sub-team), r3's o4 200 (after joining Mar 16)
    (Team("east"), "revenue", Some(1700.0)),
    // west: r3's o3 300 (Mar 10, before the move)
    (Team("west"), "revenue", Some(300.0)),
    (Team("east-a"), "revenue", Some(500.0)),
    (Rep("r3"), "revenue", Some(500.0)),
    // active reps: east r1, r2, r3 (joined mid-March); west r3 (team at start); east-a r2
    (Team("east"), "active_reps", Some(3.0)),
    (Team("west"), "active_reps", Some(1.0)),
    (Team("east-a"), "active_reps", Some(1.0)),
    (Rep("r1"), "active_reps", Some(1.0)),
    // Targets count only for the scope they name: east has T8 (1000), east-a none.
    (Team("east"), "revenue_target", Some(1000.0)),
    (Team("east-a"), "revenue_target", Some(0.0)),
    (Team("east-a"), "revenue_target_attainment", None),
    (Team("east-a"), "pipeline_coverage", None),
    // east: remainder 1000 − 1700 < 0 → pipeline_coverage undefined
    (Team("east"), "pipeline_coverage", None),
    // r2's own target: 620 × 16/31 = 320
    (Rep("r2"), "revenue_target", Some(320.0)),
    // reps_at_quota, TEAM: reps with a target whose team at end is in scope.
    // east at end: r1 ✓, r2 ✓ (east-a), r3 ✗ → 2/3; west: nobody → undefined
    (Team("east"), "reps_at_quota", Some(2.0 / 3.0)),
    (Team("west"), "reps_at_quota", None),
    (Rep("r3"), "reps_at_quota", Some(0.0)),
    // Spend: east has s2 (300 in March); CAC = 300 ÷ new customers of east.
    // c2 acquired Mar 8 by r3 (west then), c3 Mar 18 by r3 (east then) → 1 → 300
    (Team("east"), "new_customers", Some(1.0)),
    (Team("east"), "cac", Some(300.0)),
    (Team("west"), "new_customers", Some(1.0)),
    // west has no spend: 0 ÷ 1 = 0
    (Team("west"), "cac", Some(0.0)),
    // undefined for a REP scope (docs/kpis.md)
    (Rep("r1"), "cac", None),
    (Rep("r2"), "cac", None),
    // MRR follows the customer's owner: c2 (owner r3) is in east at end
    // (r3's team at Apr 1) → new 80 in east; not in west at end.
    (Team("east"), "new_mrr", Some(80.0)),
    (Team("west"), "mrr", Some(0.0)),
    // east: c1 (r1) 100 → 150, c4 (r2, east-a) 60 → 0
    (Team("east"), "mrr_start", Some(160.0)),
    (Team("east"), "mrr", Some(230.0)),
    // Churn cohort at start: east has c1, c4, c6 (r1, r2, r1) → 2/3
    (Team("east"), "customer_churn_rate", Some(2.0 / 3.0)),
    (Team("west"), "customer_churn_rate", None),
    // upsell rate follows the order's rep: east orders o1 (c1), o2 (c1 upsell), o4 (c3 cross-sell)
    (Team("east"), "upsell_cross_sell_rate", Some(1.0)),
    (Team("west"), "upsell_cross_sell_rate", Some(0.0)),
];

/// The funnel of March 2024 (COMPANY), `reached` per stage of the default
/// pipeline then "won": the cohort is dB (won → 3), dC (prospecting → 0) and
/// dD (proposal → 2), so 3, 2, 2, 1 and won 1.
pub const MARCH_FUNNEL_REACHED: [i64; 5] = [3, 2, 2, 1, 1];
