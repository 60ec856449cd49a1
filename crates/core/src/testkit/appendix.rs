//! The three worked examples, all in UTC with the default settings and
//! March 2024 as the period: a rep moving team mid-month, every kind of MRR
//! movement, and a funnel and pipeline with stage histories. Each fixture
//! comes with every number the example lists, computed by hand from
//! docs/kpis.md.

use crate::domain::*;

use super::ScopeRef::{Company, Rep, Team};
use super::build::*;
use super::{Expected, ScopedExpected};

/// "A rep moves team": r1 is in team A from Jan 1 and joins team B at
/// 2024-03-15 12:00; orders of 100 (Mar 10), 50 (at Mar 15 12:00 exactly)
/// and 200 (Mar 20).
pub fn rep_moves_team() -> Vec<Record> {
    vec![
        team("A", None),
        team("B", None),
        rep("r1"),
        member("m1", "r1", Some("A"), "2024-01-01T00:00:00Z"),
        member("m2", "r1", Some("B"), "2024-03-15T12:00:00Z"),
        sale("o1", 100, "2024-03-10T00:00:00Z", Some("r1")),
        // At its own instant the membership is not yet in force: still team A.
        sale("o2", 50, "2024-03-15T12:00:00Z", Some("r1")),
        sale("o3", 200, "2024-03-20T00:00:00Z", Some("r1")),
    ]
}

/// [`rep_moves_team`] in March 2024.
pub const REP_MOVES_TEAM_MARCH: &[ScopedExpected] = &[
    // o1 100 + o2 50 (B not yet in force at its own instant)
    (Team("A"), "revenue", Some(150.0)),
    (Team("B"), "revenue", Some(200.0)),
    (Rep("r1"), "revenue", Some(350.0)),
    (Company, "revenue", Some(350.0)),
    (Team("A"), "active_reps", Some(1.0)),
    (Team("B"), "active_reps", Some(1.0)),
    (Company, "active_reps", Some(1.0)),
];

/// [`rep_moves_team`] in February 2024: r1 is in A all month, so B has no
/// active rep.
pub const REP_MOVES_TEAM_FEBRUARY: &[ScopedExpected] = &[
    (Team("B"), "active_reps", Some(0.0)),
    (Team("B"), "revenue_per_rep", None),
];

/// "MRR movements": eight customers of r1, one subscription each unless said.
/// The two changes of c8 at the same instant come in reverse id order, so
/// the tie rule (greatest id), not arrival order, decides.
pub fn mrr() -> Vec<Record> {
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
        // c7 0 from Feb 1 (trial), 60 from Mar 15 → new 60 (never had MRR > 0 before)
        sub("c7-1", "s7", "c7", 0, "2024-02-01T00:00:00Z"),
        sub("c7-2", "s7", "c7", 60, "2024-03-15T00:00:00Z"),
        // c8 two changes at Feb 1 00:00: x-1 (500), x-2 (40) → 40 (greatest id);
        // the Apr 1 00:00 change is not in force at end → no movement
        sub("x-2", "s8", "c8", 40, "2024-02-01T00:00:00Z"),
        sub("x-1", "s8", "c8", 500, "2024-02-01T00:00:00Z"),
        sub("x-3", "s8", "c8", 900, "2024-04-01T00:00:00Z"),
    ]);
    records
}

/// [`mrr`] in March 2024, the same for COMPANY and for REP r1 (every
/// customer is r1's).
pub const MRR_MARCH: &[Expected] = &[
    // c3 200 + c4 300 + c5 80 + c6 100 + c8 40 (c1 is at 0 since Feb 10, c7 on a trial at 0)
    ("mrr_start", Some(720.0)),
    // c1 150 + c2 50 + c3 250 + c4 100 + c6 100 + c7 60 + c8 40
    ("mrr", Some(750.0)),
    // c2 50 + c7 60
    ("new_mrr", Some(110.0)),
    ("reactivation_mrr", Some(150.0)),
    ("expansion_mrr", Some(50.0)),
    ("contraction_mrr", Some(200.0)),
    ("churned_mrr", Some(80.0)),
    // 750 − 720 = 110 + 150 + 50 − 200 − 80
    ("net_new_mrr", Some(30.0)),
    // 12 × 750
    ("arr", Some(9000.0)),
    // (200 + 80) ÷ 720
    ("mrr_churn_rate", Some(280.0 / 720.0)),
    // (720 + 50 − 200 − 80) ÷ 720
    ("net_revenue_retention", Some(490.0 / 720.0)),
    // 750 ÷ 7 paying customers (c5 churned)
    ("arpa", Some(750.0 / 7.0)),
    // (110 + 150 + 50) ÷ (200 + 80)
    ("mrr_quick_ratio", Some(310.0 / 280.0)),
];

/// "Funnel and pipeline": deals d1..d5, d7, d8 created in March (the cohort)
/// and d6 created in February.
pub fn funnel() -> Vec<Record> {
    use DealStatus::*;
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
    ]
}

/// [`funnel`]'s March funnel, `reached` per stage of the default pipeline
/// (prospecting, qualification, proposal, negotiation) then "won": 7, 6, 5,
/// 4, and 2 won in the cohort.
pub const FUNNEL_REACHED: [i64; 5] = [7, 6, 5, 4, 2];

/// [`funnel`]'s March leakage per pipeline stage (none on the "won" row).
pub const FUNNEL_LEAKAGE: [f64; 4] = [1.0 / 7.0, 1.0 / 6.0, 0.2, 0.5];

/// [`funnel`]'s deal KPIs, COMPANY, March 2024.
pub const FUNNEL_MARCH: &[Expected] = &[
    // Open at end: d1, d4, d5, d6, d7, d8 (closed_at ≥ end)
    ("pipeline_value", Some(25000.0)),
    // 1000×0.5 + 0 + 3000×0.8 + 4000×0.1 + 5000×0.2 + 10000×0.8
    ("weighted_pipeline_value", Some(12300.0)),
    // d2
    ("bookings", Some(7000.0)),
    ("deals_won", Some(1.0)),
    // d3
    ("deals_lost", Some(1.0)),
    ("win_rate", Some(0.5)),
    ("deals_created", Some(7.0)),
    // d2: Mar 1 → Mar 20 = 19 days = 1 641 600 s
    ("sales_cycle", Some(1_641_600.0)),
];
