//! The KPI catalog: every KPI's id, name, category, unit, formula in words,
//! which direction is good and the function computing it. It is the single
//! source for `ListKpis`, for `docs/kpis.md` (see [`catalog_markdown`]) and
//! for the engine, which computes exactly the KPIs listed here (plus the
//! funnel, served as `KpiBundle.funnel`).
//!
//! The definitions themselves live with the figures they read, one module
//! per catalog section under [`super::defs`]; this module holds the types,
//! the catalog order ([`CATALOG`]), and the generated docs.

use super::calc::Calc;
use super::defs::{activity, customers, leads, pipeline, productivity, sales};
use super::value::KpiValue;

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

/// Catalog section of a KPI (the headings of docs/kpis.md).
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

/// One KPI of the catalog: what `ListKpis` serves, and how it is computed.
#[derive(Debug, Clone, Copy)]
pub struct KpiDef {
    /// Id used in requests, e.g. `win_rate`.
    pub id: &'static str,
    /// Display name.
    pub name: &'static str,
    /// Section.
    pub category: Category,
    /// Unit of the value.
    pub unit: Unit,
    /// Formula in words (P = the period; attribution as [`REFERENCE`] says).
    pub formula: &'static str,
    /// Which direction is good.
    pub direction: Direction,
    /// Computes the value for a (scope, period); the definition is passed
    /// back so the value carries its id and unit.
    pub(crate) compute: Compute,
}

/// A KPI's compute function.
pub(crate) type Compute = fn(&Calc<'_, '_>, &KpiDef) -> KpiValue;

/// Two definitions are the same KPI when their metadata agree (a function
/// pointer's address says nothing reliable about the function).
impl PartialEq for KpiDef {
    fn eq(&self, other: &Self) -> bool {
        (
            self.id,
            self.name,
            self.category,
            self.unit,
            self.formula,
            self.direction,
        ) == (
            other.id,
            other.name,
            other.category,
            other.unit,
            other.formula,
            other.direction,
        )
    }
}

impl Eq for KpiDef {}

impl KpiDef {
    /// An exact count or sum of this KPI.
    pub(crate) fn whole(&self, n: i128) -> KpiValue {
        KpiValue::whole(self.id, self.unit, n)
    }

    /// A real value of this KPI (`exact` when it is also a whole number).
    pub(crate) fn real(&self, x: f64, exact: Option<i128>) -> KpiValue {
        KpiValue::real(self.id, self.unit, x, exact)
    }

    /// `num ÷ den`, undefined with `reason` when `den` is 0.
    pub(crate) fn ratio(&self, num: f64, den: f64, reason: &str) -> KpiValue {
        KpiValue::ratio(self.id, self.unit, num, den, reason)
    }

    /// No value, for `reason`.
    pub(crate) fn undefined(&self, reason: &str) -> KpiValue {
        KpiValue::undefined(self.id, self.unit, reason)
    }
}

/// Id of the funnel, which is served as `KpiBundle.funnel`, not as a value.
pub const FUNNEL_ID: &str = "funnel";

/// A catalog entry, in the order the definitions read best: metadata, the
/// formula in words, then the function computing it.
pub(crate) const fn kpi(
    id: &'static str,
    name: &'static str,
    category: Category,
    unit: Unit,
    direction: Direction,
    formula: &'static str,
    compute: Compute,
) -> KpiDef {
    KpiDef {
        id,
        name,
        category,
        unit,
        formula,
        direction,
        compute,
    }
}

use Category::{Activity, Customers, Leads, Performance, Productivity};

/// The catalog's sections, in catalog order. Each KPI is defined once, in
/// the module of its figures ([`super::defs`]); this list only orders them.
const PARTS: &[&[KpiDef]] = &[
    sales::SALES,
    pipeline::PIPELINE,
    sales::TARGETS,
    activity::SERVICE_CSAT,
    customers::CUSTOMERS,
    leads::LEADS,
    activity::ACTIVITY,
    productivity::PRODUCTIVITY,
];

/// The number of KPIs in `parts`.
const fn count(parts: &[&[KpiDef]]) -> usize {
    let (mut n, mut i) = (0, 0);
    while i < parts.len() {
        n += parts[i].len();
        i += 1;
    }
    n
}

/// `parts` one after the other (a `const` slice concatenation).
const fn concat<const N: usize>(parts: &[&[KpiDef]]) -> [KpiDef; N] {
    let mut out = [FUNNEL; N];
    let (mut n, mut i) = (0, 0);
    while i < parts.len() {
        let mut j = 0;
        while j < parts[i].len() {
            out[n] = parts[i][j];
            n += 1;
            j += 1;
        }
        i += 1;
    }
    assert!(n == N, "every part is copied");
    out
}

const ORDERED: [KpiDef; count(PARTS)] = concat(PARTS);

/// Every KPI, in catalog order (the order of values in a bundle).
pub const CATALOG: &[KpiDef] = &ORDERED;

/// The funnel's catalog entry (computed into `KpiBundle.funnel`).
pub const FUNNEL: KpiDef = kpi(
    FUNNEL_ID,
    "Funnel",
    Leads,
    Unit::Count,
    Direction::HigherIsBetter,
    "for deals created in P, stages indexed 0..n-1 in pipeline order: a deal's highest index is the largest among the pipeline stages named by its history and its stage field (unknown names ignored, none known: 0; a WON deal: n-1); reached(k) = count(highest index >= k), reached(n) = deals of the cohort that are WON; leakage(k) = 1 - reached(k+1) / reached(k)",
    // Not a value: the funnel's rows come from `Engine::funnel`. Asked for
    // as a value, it is what any id the engine does not compute is.
    |_, k| k.undefined("unknown KPI"),
);

/// How the engine reads the places where several readings were possible; printed
/// at the end of `docs/kpis.md` so the decisions travel with the formulas.
pub const DECISIONS: &[&str] = &[
    "Attribution instants: orders at ordered_at; bookings, deals_won, deals_lost, win_rate, average_deal_size and sales_cycle at closed_at; deals_created and the funnel at created_at; pipeline_value and weighted_pipeline_value at end (deal owner's team at end); leads at created_at (the whole cohort, including conversion and response time); activities at occurred_at; inquiries at received_at; CSAT at responded_at. Customer figures use the customer's current owner_rep_id: new_customers at acquired_at, churned_customers at churned_at, customer_churn_rate and customer_retention_rate at start, active_customers, mrr and arpa at end, mrr_start at start; clv's 'active at start' and 'active at end' are attributed at start and at end.",
    "A subscription belongs, at an instant, to the customer named by its change in force then; a customer's MRR is the sum of the subscriptions that belong to it. 'Never had MRR > 0 before start' is checked on the customer's MRR after every group of simultaneous changes effective before start, so an intermediate state inside one instant never counts.",
    "revenue_target, bookings_target: a sum, so 0 (not undefined) when the scope has no target; the attainments are then undefined (division by 0). exact_value is given when every overlapping target lies wholly inside the period. 'No target' for pipeline_coverage means no REVENUE target of the scope overlaps the period.",
    "Targets count only for the scope they name: a TEAM target counts for that team only, not for its parent or sub-teams. Spend counts for TEAM(T) when its team_id is T or a descendant (TEAM scope = the subtree); COMPANY counts all spend, including spend without a team_id.",
    "reps_at_quota sums each rep's overlapping REVENUE targets (prorated) into one quota per rep; a rep with revenue equal to the quota is at quota.",
    "cac with no spend and new customers is 0 (defined); clv is undefined when no customer was active at start (churn rate undefined), when the churn rate is 0, or when there were no active customers at start and end. clv's numerator is revenue x gross_margin / average active customers, its denominator the churn rate.",
    "The funnel's highest index uses every stage change of the deal known at query time (also those after the period), matching 'named by its history'. A deal counts as won in the funnel when its status is WON, whenever it closed.",
    "active_reps considers reps named by memberships (only they can have a team); REP scope is 1 by definition. A membership to an unknown team counts as 'a team' for COMPANY but is in no TEAM subtree. A membership tied (same effective_at) with a membership of the same rep with a greater id loses the tie at every instant: it never puts the rep in its team, not even 'at some instant of P'.",
    "Teams: a team whose parent is absent or unknown is a root; a team on a parent cycle (ingest rejects cycles; stored data is still guarded) is a root too, and its other descendants stay below it.",
    "Breakdowns: REP rows for a REP scope are that rep alone; TEAM rows for a REP scope are empty; COMPANY REP rows add reps named by an event record in P (order, deal created or closed, lead, customer acquired or churned, activity, inquiry, CSAT) that had no team. ACTIVITY_TYPE lists all eight types, STAGE every pipeline stage plus 'won' (values `reached` and `leakage`). Row order: REP, TEAM and LEAD_SOURCE by key; ACTIVITY_TYPE and STAGE in type / pipeline order.",
    "Comparisons: when the comparison period cannot be built (outside the supported years) every value's comparison is undefined with that reason. The relative change is (value − comparison) ÷ |comparison|, so its sign always says whether the value went up (from −10 to −5 is +50 %); undefined when the comparison is 0 or either value is undefined. The absolute change is value − comparison (for a ratio, 0.05 is 5 percentage points). revenue_growth is always against the previous period, whatever comparison is asked for. The same period last year keeps its granularity only when the shifted dates are a calendar period of it (a month stays a month); a shifted ISO week starts on another weekday, so it is a plain range of days whose previous period is the same number of days just before it.",
    "Durations are computed from nanosecond-precise instants and reported in (fractional) seconds.",
    "Sums are added exactly (128-bit); a count or money sum beyond 9223372036854775807 (the largest exact_value) is undefined with that reason, never a rounded approximation.",
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

/// How periods, comparisons, states, scopes and attribution work: the rules
/// every formula below relies on, printed at the top of `docs/kpis.md`.
/// The engine's code points here (to docs/kpis.md) for these rules.
pub const REFERENCE: &str = "
## Periods

A period P is `[start, end)`: every instant t with start ≤ t < end. It is built from local dates \
in the tenant's time zone (a request may name another zone): either a calendar period — DAY, WEEK \
(ISO, Monday to Sunday), MONTH, QUARTER, YEAR, FISCAL_QUARTER or FISCAL_YEAR (starting in the \
tenant's `fiscal_year_start_month`), named by any date inside it — or a custom range of local dates \
`[start_date, end_date)`. Boundaries are local midnights, so a day of a daylight-saving change lasts \
23 or 25 hours. A local midnight that does not exist (the clocks jump over it) is the first instant \
of that day; an ambiguous one is the earlier instant.

## Comparisons

* **Previous period**: the period of the same granularity just before P; for a custom range, the \
same number of days just before it.
* **Same period last year**: P's dates shifted back one year (29 February becomes 28 February). \
It keeps P's granularity only when the shifted dates are themselves a calendar period of it; \
otherwise (a week, say) it is a plain range of days, whose previous period is the same number of \
days just before.
* Each value's comparison carries the relative change (value − comparison) ÷ |comparison|, whose \
sign always says whether the value went up (undefined when the comparison is 0 or either value is \
undefined), and the absolute change value − comparison (for ratios: percentage points).

## Events and states

An **event** is in P when its instant is in P (an order at `ordered_at`, …; see *Attribution \
instants* below). A **state at instant t** counts everything that happened strictly before t:

* a customer is active at t when `acquired_at` < t and it has not churned before t \
(`churned_at` empty or ≥ t);
* a deal is open at t when `created_at` < t and it is OPEN or closed at or after t;
* a deal's stage at t is the stage of its latest stage change entered before t, or its `stage` \
field when it has none;
* a subscription's MRR at t is the `mrr` of its latest change effective before t (0 if none); a \
customer's MRR is the sum over its subscriptions;
* a rep's team at t is the `team_id` of its latest membership effective before t.

So the state at `start` is the state before the period and the state at `end` the state after it.

## Scopes and attribution

* **COMPANY** counts every record of the tenant. **TEAM(T)** counts records of reps whose team, \
at the record's attribution instant, is T or one of its descendants in the current team tree. \
**REP(R)** counts records whose rep field (`rep_id`, `owner_rep_id`) is R. A record without a rep \
counts for COMPANY only.
* Customer figures (new, churned, active customers, churn and retention, MRR and its movements) \
use the customer's current `owner_rep_id` (ownership has no history); subscription changes follow \
their customer's owner. MRR movements compare, per customer, its MRR at start if it was in the \
scope at start (else 0) with its MRR at end if it is in the scope at end (else 0), so \
net new MRR = new + reactivation + expansion − contraction − churned in every scope.
* A rep is in a team \"at some instant of P\" when its team at start is in the scope, or a \
membership of it that is in force at some instant of P puts it there.
* Targets count only for the scope they name. Spend counts for a team through its `team_id` (and \
for the teams above it), never for a rep.

## Ties and absent values

* Records of one kind with the same instant are ordered by id, the greatest id being the latest: \
memberships, stage changes and subscription changes alike. A membership that loses such a tie is \
never in force, not even for an instant.
* An empty reference field means absent. References are not foreign keys: records may arrive in \
any order, and every KPI uses what is known at query time.
* Free-text categories (lead sources, inquiry channels, stage names, spend categories) are trimmed \
and lower-cased, so \"Proposal\" and \" proposal \" are one stage.
";

/// `docs/kpis.md`, generated from the catalog.
pub fn catalog_markdown() -> String {
    let mut out = String::new();
    out.push_str("# KPI catalog\n\n");
    out.push_str(
        "<!-- Generated from crates/core/src/kpi/catalog.rs; do not edit. Regenerate with `UPDATE_DOCS=1 cargo test -p salesmetrics-core kpi::catalog`. -->\n\n",
    );
    out.push_str(
        "This page is the complete reference of the KPIs: how periods, comparisons, scopes and \
attribution work, then every KPI's formula, then the decisions where several readings were possible. \
P is the period `[start, end)`. Money is in minor units of the tenant's currency, durations in \
seconds, ratios are fractions. A division by zero makes the value undefined (with a reason), never 0.\n",
    );
    out.push_str(REFERENCE);
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
    out.push_str("\n## Decisions where several readings were possible\n\n");
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
            "docs/kpis.md is out of date with the KPI definitions (crates/core/src/kpi/catalog.rs \
             and defs/); regenerate it with \
             `UPDATE_DOCS=1 cargo test -p salesmetrics-core kpi::catalog`"
        );
    }
}
