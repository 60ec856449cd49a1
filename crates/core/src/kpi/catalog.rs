//! The KPI catalog: every KPI's id, name, category, unit, formula in words and
//! which direction is good. It is the single source for `ListKpis` and for
//! `docs/kpis.md` (see [`catalog_markdown`]); the engine computes exactly the
//! ids listed here (plus the funnel, served as `KpiBundle.funnel`).

/// Unit of a KPI value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    /// Minor units of the tenant's currency.
    Money,
    /// A count.
    Count,
    /// A fraction (0.25 means 25 %).
    Ratio,
    /// Seconds.
    DurationSeconds,
    /// A CSAT score (1–5).
    Score,
    /// A plain number.
    Number,
}

impl Unit {
    /// Name used in the docs.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Money => "money",
            Unit::Count => "count",
            Unit::Ratio => "ratio",
            Unit::DurationSeconds => "duration (s)",
            Unit::Score => "score",
            Unit::Number => "number",
        }
    }
}

/// Catalog section of a KPI (SPEC §6 headings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// Sales performance.
    Performance,
    /// Customers and subscriptions.
    Customers,
    /// Leads and funnel.
    Leads,
    /// Activity.
    Activity,
    /// Productivity.
    Productivity,
}

impl Category {
    /// Heading used in the docs.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Performance => "Performance",
            Category::Customers => "Customers and subscriptions",
            Category::Leads => "Leads and funnel",
            Category::Activity => "Activity",
            Category::Productivity => "Productivity",
        }
    }
}

/// Which direction of a KPI is good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Higher is better.
    HigherIsBetter,
    /// Lower is better.
    LowerIsBetter,
    /// Neither (context decides).
    Neutral,
}

impl Direction {
    /// Words used in the docs.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::HigherIsBetter => "higher",
            Direction::LowerIsBetter => "lower",
            Direction::Neutral => "neutral",
        }
    }
}

/// One KPI of the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KpiDef {
    /// Id used in requests, e.g. `win_rate`.
    pub id: &'static str,
    /// Display name.
    pub name: &'static str,
    /// Section.
    pub category: Category,
    /// Unit of the value.
    pub unit: Unit,
    /// Formula in words (P = the period; see SPEC §5 for attribution).
    pub formula: &'static str,
    /// Which direction is good.
    pub direction: Direction,
}

/// Id of the funnel, which is served as `KpiBundle.funnel`, not as a value.
pub const FUNNEL_ID: &str = "funnel";

const fn kpi(
    id: &'static str,
    name: &'static str,
    category: Category,
    unit: Unit,
    direction: Direction,
    formula: &'static str,
) -> KpiDef {
    KpiDef {
        id,
        name,
        category,
        unit,
        formula,
        direction,
    }
}

use Category::{Activity, Customers, Leads, Performance, Productivity};
use Direction::{HigherIsBetter as Up, LowerIsBetter as Down, Neutral};
use Unit::{Count, DurationSeconds, Money, Number, Ratio, Score};

/// Every KPI, in catalog order (the order of values in a bundle).
pub const CATALOG: &[KpiDef] = &[
    // Performance
    kpi(
        "revenue",
        "Revenue",
        Performance,
        Money,
        Up,
        "sum(order.amount : ordered_at in P)",
    ),
    kpi(
        "revenue_growth",
        "Revenue growth",
        Performance,
        Ratio,
        Up,
        "(revenue(P) - revenue(previous P)) / revenue(previous P)",
    ),
    kpi(
        "orders",
        "Orders",
        Performance,
        Count,
        Up,
        "count(orders : ordered_at in P)",
    ),
    kpi(
        "average_order_value",
        "Average order value",
        Performance,
        Money,
        Up,
        "revenue / orders (average revenue per sale)",
    ),
    kpi(
        "bookings",
        "Bookings",
        Performance,
        Money,
        Up,
        "sum(deal.amount : status WON, closed_at in P)",
    ),
    kpi(
        "deals_won",
        "Deals won",
        Performance,
        Count,
        Up,
        "count(deals : status WON, closed_at in P)",
    ),
    kpi(
        "deals_lost",
        "Deals lost",
        Performance,
        Count,
        Down,
        "count(deals : status LOST, closed_at in P)",
    ),
    kpi(
        "win_rate",
        "Win rate",
        Performance,
        Ratio,
        Up,
        "deals_won / (deals_won + deals_lost)",
    ),
    kpi(
        "average_deal_size",
        "Average deal size",
        Performance,
        Money,
        Up,
        "bookings / deals_won",
    ),
    kpi(
        "sales_cycle",
        "Sales cycle",
        Performance,
        DurationSeconds,
        Down,
        "mean(closed_at - created_at : deals WON, closed_at in P)",
    ),
    kpi(
        "deals_created",
        "Deals created",
        Performance,
        Count,
        Up,
        "count(deals : created_at in P) (sales opportunities)",
    ),
    kpi(
        "pipeline_value",
        "Pipeline value",
        Performance,
        Money,
        Up,
        "sum(deal.amount : deals open at end of P)",
    ),
    kpi(
        "weighted_pipeline_value",
        "Weighted pipeline value",
        Performance,
        Money,
        Up,
        "sum(deal.amount x win probability of its stage at end : deals open at end of P); unknown stage counts 0",
    ),
    kpi(
        "pipeline_coverage",
        "Pipeline coverage",
        Performance,
        Ratio,
        Up,
        "pipeline_value / (revenue_target - revenue); undefined when there is no revenue target or the remainder is <= 0",
    ),
    kpi(
        "revenue_target",
        "Revenue target",
        Performance,
        Money,
        Neutral,
        "sum over the scope's own REVENUE targets of value x overlap_days(target, P) / days(target)",
    ),
    kpi(
        "bookings_target",
        "Bookings target",
        Performance,
        Money,
        Neutral,
        "sum over the scope's own BOOKINGS targets of value x overlap_days(target, P) / days(target)",
    ),
    kpi(
        "revenue_target_attainment",
        "Revenue target attainment",
        Performance,
        Ratio,
        Up,
        "revenue / revenue_target",
    ),
    kpi(
        "bookings_target_attainment",
        "Bookings target attainment",
        Performance,
        Ratio,
        Up,
        "bookings / bookings_target",
    ),
    kpi(
        "new_customers_target_attainment",
        "New customers target attainment",
        Performance,
        Ratio,
        Up,
        "new_customers / prorated NEW_CUSTOMERS target of the scope",
    ),
    kpi(
        "deals_won_target_attainment",
        "Deals won target attainment",
        Performance,
        Ratio,
        Up,
        "deals_won / prorated DEALS_WON target of the scope",
    ),
    kpi(
        "reps_at_quota",
        "Reps at quota",
        Performance,
        Ratio,
        Up,
        "among reps with a REVENUE target overlapping P (TEAM: whose team at end is in the scope; REP: the rep itself), the fraction whose revenue(REP, P) >= their prorated target",
    ),
    kpi(
        "csat",
        "CSAT",
        Performance,
        Ratio,
        Up,
        "count(responses : responded_at in P, score >= csat_satisfied_min_score) / count(responses : responded_at in P)",
    ),
    kpi(
        "csat_average",
        "CSAT average",
        Performance,
        Score,
        Up,
        "mean(score : responded_at in P)",
    ),
    // Customers and subscriptions
    kpi(
        "new_customers",
        "New customers",
        Customers,
        Count,
        Up,
        "count(customers : acquired_at in P)",
    ),
    kpi(
        "active_customers",
        "Active customers",
        Customers,
        Count,
        Up,
        "count(customers active at end of P)",
    ),
    kpi(
        "churned_customers",
        "Churned customers",
        Customers,
        Count,
        Down,
        "count(customers : churned_at in P)",
    ),
    kpi(
        "customer_churn_rate",
        "Customer churn rate",
        Customers,
        Ratio,
        Down,
        "count(active at start and churned_at in P) / count(active at start)",
    ),
    kpi(
        "customer_retention_rate",
        "Customer retention rate",
        Customers,
        Ratio,
        Up,
        "count(active at start and active at end) / count(active at start)",
    ),
    kpi(
        "upsell_cross_sell_rate",
        "Upsell / cross-sell rate",
        Customers,
        Ratio,
        Up,
        "distinct customers with an UPSELL or CROSS_SELL order in P / distinct customers with any order in P (orders without customer left out)",
    ),
    kpi(
        "cac",
        "Customer acquisition cost",
        Customers,
        Money,
        Down,
        "spend(P) / new_customers, spend(P) = sum(amount x overlap_days / days) over the scope's spend; undefined for a REP scope",
    ),
    kpi(
        "clv",
        "Customer lifetime value",
        Customers,
        Money,
        Up,
        "(revenue / ((active at start + active at end) / 2)) x gross_margin / customer_churn_rate",
    ),
    kpi(
        "clv_to_cac",
        "CLV to CAC",
        Customers,
        Ratio,
        Up,
        "clv / cac",
    ),
    kpi("mrr", "MRR", Customers, Money, Up, "total MRR at end of P"),
    kpi(
        "mrr_start",
        "MRR at start",
        Customers,
        Money,
        Neutral,
        "total MRR at start of P",
    ),
    kpi("arr", "ARR", Customers, Money, Up, "12 x mrr"),
    kpi(
        "new_mrr",
        "New MRR",
        Customers,
        Money,
        Up,
        "sum of m1 over customers with m0 = 0 < m1 that never had MRR > 0 before start",
    ),
    kpi(
        "reactivation_mrr",
        "Reactivation MRR",
        Customers,
        Money,
        Up,
        "sum of m1 over customers with m0 = 0 < m1 that had MRR > 0 before start",
    ),
    kpi(
        "expansion_mrr",
        "Expansion MRR",
        Customers,
        Money,
        Up,
        "sum of m1 - m0 over customers with 0 < m0 < m1",
    ),
    kpi(
        "contraction_mrr",
        "Contraction MRR",
        Customers,
        Money,
        Down,
        "sum of m0 - m1 over customers with 0 < m1 < m0",
    ),
    kpi(
        "churned_mrr",
        "Churned MRR",
        Customers,
        Money,
        Down,
        "sum of m0 over customers with m1 = 0 < m0",
    ),
    kpi(
        "net_new_mrr",
        "Net new MRR",
        Customers,
        Money,
        Up,
        "mrr - mrr_start (= new + reactivation + expansion - contraction - churned)",
    ),
    kpi(
        "mrr_churn_rate",
        "MRR churn rate",
        Customers,
        Ratio,
        Down,
        "(churned_mrr + contraction_mrr) / mrr_start",
    ),
    kpi(
        "net_revenue_retention",
        "Net revenue retention",
        Customers,
        Ratio,
        Up,
        "(mrr_start + expansion_mrr - contraction_mrr - churned_mrr) / mrr_start",
    ),
    kpi(
        "arpa",
        "Average revenue per account",
        Customers,
        Money,
        Up,
        "mrr / count(customers with MRR > 0 at end)",
    ),
    kpi(
        "mrr_quick_ratio",
        "MRR quick ratio",
        Customers,
        Ratio,
        Up,
        "(new_mrr + reactivation_mrr + expansion_mrr) / (contraction_mrr + churned_mrr)",
    ),
    // Leads and funnel
    kpi(
        "leads_created",
        "Leads created",
        Leads,
        Count,
        Up,
        "count(leads : created_at in P)",
    ),
    kpi(
        "lead_conversion_rate",
        "Lead conversion rate",
        Leads,
        Ratio,
        Up,
        "count(leads : created_at in P, converted_at set) / leads_created (the period's leads, converted at any time)",
    ),
    kpi(
        "lead_response_time",
        "Lead response time",
        Leads,
        DurationSeconds,
        Down,
        "mean(first_response_at - created_at : created_at in P, first_response_at set)",
    ),
    kpi(
        "referrals",
        "Referrals",
        Leads,
        Count,
        Up,
        "count(leads : created_at in P, source in referral_sources)",
    ),
    // Activity
    kpi(
        "activities",
        "Activities",
        Activity,
        Count,
        Up,
        "count(activities : occurred_at in P)",
    ),
    kpi(
        "calls",
        "Calls",
        Activity,
        Count,
        Up,
        "count(activities : type CALL, occurred_at in P)",
    ),
    kpi(
        "emails",
        "Emails",
        Activity,
        Count,
        Up,
        "count(activities : type EMAIL, occurred_at in P)",
    ),
    kpi(
        "meetings",
        "Meetings",
        Activity,
        Count,
        Up,
        "count(activities : type MEETING, occurred_at in P)",
    ),
    kpi(
        "follow_ups",
        "Follow-ups",
        Activity,
        Count,
        Up,
        "count(activities : type FOLLOW_UP, occurred_at in P)",
    ),
    kpi(
        "proposals_sent",
        "Proposals sent",
        Activity,
        Count,
        Up,
        "count(activities : type PROPOSAL, occurred_at in P)",
    ),
    kpi(
        "demos",
        "Demos",
        Activity,
        Count,
        Up,
        "count(activities : type DEMO, occurred_at in P)",
    ),
    kpi(
        "networking_events",
        "Networking events",
        Activity,
        Count,
        Up,
        "count(activities : type NETWORKING_EVENT, occurred_at in P)",
    ),
    kpi(
        "social_interactions",
        "Social interactions",
        Activity,
        Count,
        Up,
        "count(activities : type SOCIAL, occurred_at in P)",
    ),
    kpi(
        "time_on_activities",
        "Time on activities",
        Activity,
        DurationSeconds,
        Neutral,
        "sum(duration_seconds : occurred_at in P); a missing duration counts 0",
    ),
    kpi(
        "activities_per_deal_won",
        "Activities per deal won",
        Activity,
        Number,
        Down,
        "activities / deals_won",
    ),
    kpi(
        "inquiry_response_time",
        "Inquiry response time",
        Activity,
        DurationSeconds,
        Down,
        "mean(first_response_at - received_at : received_at in P, first_response_at set)",
    ),
    // Productivity
    kpi(
        "active_reps",
        "Active reps",
        Productivity,
        Count,
        Neutral,
        "reps whose team at some instant of P is in the scope (REP scope: 1; COMPANY: reps with any team at some instant of P)",
    ),
    kpi(
        "revenue_per_rep",
        "Revenue per rep",
        Productivity,
        Money,
        Up,
        "revenue / active_reps",
    ),
    kpi(
        "bookings_per_rep",
        "Bookings per rep",
        Productivity,
        Money,
        Up,
        "bookings / active_reps",
    ),
];

/// The funnel's catalog entry (computed into `KpiBundle.funnel`).
pub const FUNNEL: KpiDef = kpi(
    FUNNEL_ID,
    "Funnel",
    Leads,
    Count,
    Up,
    "for deals created in P, stages indexed 0..n-1 in pipeline order: a deal's highest index is the largest among the pipeline stages named by its history and its stage field (unknown names ignored, none known: 0; a WON deal: n-1); reached(k) = count(highest index >= k), reached(n) = deals of the cohort that are WON; leakage(k) = 1 - reached(k+1) / reached(k)",
);

/// How the engine reads the places where SPEC §5–§7 leave a choice; printed
/// at the end of `docs/kpis.md` so the decisions travel with the formulas.
pub const DECISIONS: &[&str] = &[
    "Attribution instants: orders at ordered_at; bookings, deals_won, deals_lost, win_rate, average_deal_size and sales_cycle at closed_at; deals_created and the funnel at created_at; pipeline_value and weighted_pipeline_value at end (deal owner's team at end); leads at created_at (the whole cohort, including conversion and response time); activities at occurred_at; inquiries at received_at; CSAT at responded_at. Customer figures use the customer's current owner_rep_id at the instants SPEC §5 lists; clv's 'active at start' and 'active at end' are attributed at start and at end.",
    "A subscription belongs, at an instant, to the customer named by its change in force then; a customer's MRR is the sum of the subscriptions that belong to it. 'Never had MRR > 0 before start' is checked on the customer's MRR after every group of simultaneous changes effective before start, so an intermediate state inside one instant never counts.",
    "revenue_target, bookings_target: a sum, so 0 (not undefined) when the scope has no target; the attainments are then undefined (division by 0). exact_value is given when every overlapping target lies wholly inside the period. 'No target' for pipeline_coverage means no REVENUE target of the scope overlaps the period.",
    "Targets count only for the scope they name: a TEAM target counts for that team only, not for its parent or sub-teams. Spend counts for TEAM(T) when its team_id is T or a descendant (TEAM scope = the subtree); COMPANY counts all spend, including spend without a team_id.",
    "reps_at_quota sums each rep's overlapping REVENUE targets (prorated) into one quota per rep; a rep with revenue equal to the quota is at quota.",
    "cac with no spend and new customers is 0 (defined); clv is undefined when no customer was active at start (churn rate undefined), when the churn rate is 0, or when there were no active customers at start and end. clv's numerator is revenue x gross_margin / average active customers, its denominator the churn rate.",
    "The funnel's highest index uses every stage change of the deal known at query time (also those after the period), matching 'named by its history'. A deal counts as won in the funnel when its status is WON, whenever it closed.",
    "active_reps considers reps named by memberships (only they can have a team); REP scope is 1 by definition. A membership to an unknown team counts as 'a team' for COMPANY but is in no TEAM subtree.",
    "Teams: a team whose parent is absent or unknown is a root; a team on a parent cycle (ingest rejects cycles; stored data is still guarded) is a root too, and its other descendants stay below it.",
    "Breakdowns: REP rows for a REP scope are that rep alone; TEAM rows for a REP scope are empty; COMPANY REP rows add reps named by an event record in P (order, deal created or closed, lead, customer acquired or churned, activity, inquiry, CSAT) that had no team. ACTIVITY_TYPE lists all eight types, STAGE every pipeline stage plus 'won' (values `reached` and `leakage`). Row order: REP, TEAM and LEAD_SOURCE by key; ACTIVITY_TYPE and STAGE in type / pipeline order.",
    "Comparisons: when the comparison period cannot be built (outside the supported years) every value's comparison is undefined with that reason. revenue_growth is always against the previous period, whatever comparison is asked for.",
    "Durations are computed from nanosecond-precise instants and reported in (fractional) seconds.",
];

/// The definition of a KPI id (including [`FUNNEL_ID`]), if it exists.
pub fn find(id: &str) -> Option<&'static KpiDef> {
    if id == FUNNEL_ID {
        return Some(&FUNNEL);
    }
    CATALOG.iter().find(|k| k.id == id)
}

/// Every catalog entry, the funnel last (what `ListKpis` serves).
pub fn all_with_funnel() -> impl Iterator<Item = &'static KpiDef> {
    CATALOG.iter().chain(std::iter::once(&FUNNEL))
}

/// `docs/kpis.md`, generated from the catalog.
pub fn catalog_markdown() -> String {
    let mut out = String::new();
    out.push_str("# KPI catalog\n\n");
    out.push_str(
        "<!-- Generated from crates/core/src/kpi/catalog.rs; do not edit. Regenerate with `UPDATE_DOCS=1 cargo test -p salesmetrics-core kpi::catalog`. -->\n\n",
    );
    out.push_str(
        "P is the period `[start, end)`; attribution to COMPANY, TEAM and REP scopes follows SPEC §5. \
Money is in minor units of the tenant's currency, durations in seconds, ratios are fractions. \
A division by zero makes the value undefined (with a reason), never 0.\n",
    );
    let sections = [Performance, Customers, Leads, Activity, Productivity];
    for section in sections {
        out.push_str(&format!(
            "\n## {}\n\n| id | name | unit | better | formula |\n|---|---|---|---|---|\n",
            section.as_str()
        ));
        for k in all_with_funnel().filter(|k| k.category == section) {
            out.push_str(&format!(
                "| `{}` | {} | {} | {} | {} |\n",
                k.id,
                k.name,
                k.unit.as_str(),
                k.direction.as_str(),
                k.formula.replace('|', "\\|")
            ));
        }
    }
    out.push_str("\n## Decisions where the spec leaves a choice\n\n");
    for d in DECISIONS {
        out.push_str(&format!("* {d}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_IDS: &[&str] = &[
        "revenue",
        "revenue_growth",
        "orders",
        "average_order_value",
        "bookings",
        "deals_won",
        "deals_lost",
        "win_rate",
        "average_deal_size",
        "sales_cycle",
        "deals_created",
        "pipeline_value",
        "weighted_pipeline_value",
        "pipeline_coverage",
        "revenue_target",
        "bookings_target",
        "revenue_target_attainment",
        "bookings_target_attainment",
        "new_customers_target_attainment",
        "deals_won_target_attainment",
        "reps_at_quota",
        "csat",
        "csat_average",
        "new_customers",
        "active_customers",
        "churned_customers",
        "customer_churn_rate",
        "customer_retention_rate",
        "upsell_cross_sell_rate",
        "cac",
        "clv",
        "clv_to_cac",
        "mrr",
        "mrr_start",
        "arr",
        "new_mrr",
        "reactivation_mrr",
        "expansion_mrr",
        "contraction_mrr",
        "churned_mrr",
        "net_new_mrr",
        "mrr_churn_rate",
        "net_revenue_retention",
        "arpa",
        "mrr_quick_ratio",
        "leads_created",
        "lead_conversion_rate",
        "lead_response_time",
        "referrals",
        "activities",
        "calls",
        "emails",
        "meetings",
        "follow_ups",
        "proposals_sent",
        "demos",
        "networking_events",
        "social_interactions",
        "time_on_activities",
        "activities_per_deal_won",
        "inquiry_response_time",
        "active_reps",
        "revenue_per_rep",
        "bookings_per_rep",
    ];

    #[test]
    fn catalog_lists_exactly_the_spec_ids_once() {
        let ids: Vec<&str> = CATALOG.iter().map(|k| k.id).collect();
        assert_eq!(ids, SPEC_IDS);
        assert!(find("funnel").is_some());
        assert!(find("nope").is_none());
    }

    #[test]
    fn docs_kpis_md_is_up_to_date() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/kpis.md");
        let generated = catalog_markdown();
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(path, &generated).expect("write docs/kpis.md");
            return;
        }
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == generated,
            "docs/kpis.md is out of date with crates/core/src/kpi/catalog.rs; regenerate it with \
             `UPDATE_DOCS=1 cargo test -p salesmetrics-core kpi::catalog`"
        );
    }
}
