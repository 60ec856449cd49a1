//! Sales results and targets: revenue, orders, bookings, closed deals, the
//! targets and their attainment, reps at quota (the "Performance" section of
//! docs/kpis.md, less the pipeline and CSAT).
//!
//! Revenue, bookings and deals won are read by other sections too (per-rep
//! figures, CLV, pipeline coverage, activities per deal won); each is
//! memoised once per (scope, period).

use std::collections::BTreeMap;

use crate::domain::{DealStatus, Scope, TargetMetric, TargetScope};

use crate::kpi::calc::{Calc, Rolled, nanos_to_seconds, prorate};
use crate::kpi::catalog::{Category::Performance, Direction::*, KpiDef, Unit::*, kpi};
use crate::kpi::index::ResolvedScope;
use crate::kpi::rollup::Figures;
use crate::kpi::value::KpiValue;

/// revenue … sales_cycle, in catalog order.
pub(crate) const SALES: &[KpiDef] = &[
    kpi(
        "revenue",
        "Revenue",
        Performance,
        Money,
        HigherIsBetter,
        "sum(order.amount : ordered_at in P)",
        |c, k| k.whole(c.revenue()),
    ),
    kpi(
        "revenue_growth",
        "Revenue growth",
        Performance,
        Ratio,
        HigherIsBetter,
        "(revenue(P) - revenue(previous P)) / revenue(previous P)",
        revenue_growth,
    ),
    kpi(
        "orders",
        "Orders",
        Performance,
        Count,
        HigherIsBetter,
        "count(orders : ordered_at in P)",
        |c, k| k.whole(c.order_count()),
    ),
    kpi(
        "average_order_value",
        "Average order value",
        Performance,
        Money,
        HigherIsBetter,
        "revenue / orders (average revenue per sale)",
        |c, k| {
            k.ratio(
                c.revenue() as f64,
                c.order_count() as f64,
                "there were no orders in the period",
            )
        },
    ),
    kpi(
        "bookings",
        "Bookings",
        Performance,
        Money,
        HigherIsBetter,
        "sum(deal.amount : status WON, closed_at in P)",
        |c, k| k.whole(c.bookings()),
    ),
    kpi(
        "deals_won",
        "Deals won",
        Performance,
        Count,
        HigherIsBetter,
        "count(deals : status WON, closed_at in P)",
        |c, k| k.whole(c.count_closed(DealStatus::Won)),
    ),
    kpi(
        "deals_lost",
        "Deals lost",
        Performance,
        Count,
        LowerIsBetter,
        "count(deals : status LOST, closed_at in P)",
        |c, k| k.whole(c.count_closed(DealStatus::Lost)),
    ),
    kpi(
        "win_rate",
        "Win rate",
        Performance,
        Ratio,
        HigherIsBetter,
        "deals_won / (deals_won + deals_lost)",
        |c, k| {
            let won = c.count_closed(DealStatus::Won);
            let lost = c.count_closed(DealStatus::Lost);
            k.ratio(
                won as f64,
                (won + lost) as f64,
                "no deals were closed in the period",
            )
        },
    ),
    kpi(
        "average_deal_size",
        "Average deal size",
        Performance,
        Money,
        HigherIsBetter,
        "bookings / deals_won",
        |c, k| {
            k.ratio(
                c.bookings() as f64,
                c.count_closed(DealStatus::Won) as f64,
                "no deals were won in the period",
            )
        },
    ),
    kpi(
        "sales_cycle",
        "Sales cycle",
        Performance,
        DurationSeconds,
        LowerIsBetter,
        "mean(closed_at - created_at : deals WON, closed_at in P)",
        |c, k| {
            let f = c.closed_figures();
            let (sum, n) = (f[2], f[0]);
            k.ratio(
                nanos_to_seconds(sum),
                n as f64,
                "no deals were won in the period",
            )
        },
    ),
];

/// revenue_target … reps_at_quota, in catalog order.
pub(crate) const TARGETS: &[KpiDef] = &[
    kpi(
        "revenue_target",
        "Revenue target",
        Performance,
        Money,
        Neutral,
        "sum over the scope's own REVENUE targets of value x overlap_days(target, P) / days(target)",
        |c, k| {
            let (v, _, exact) = c.target(TargetMetric::Revenue);
            k.real(v, exact)
        },
    ),
    kpi(
        "bookings_target",
        "Bookings target",
        Performance,
        Money,
        Neutral,
        "sum over the scope's own BOOKINGS targets of value x overlap_days(target, P) / days(target)",
        |c, k| {
            let (v, _, exact) = c.target(TargetMetric::Bookings);
            k.real(v, exact)
        },
    ),
    kpi(
        "revenue_target_attainment",
        "Revenue target attainment",
        Performance,
        Ratio,
        HigherIsBetter,
        "revenue / revenue_target",
        |c, k| {
            k.ratio(
                c.revenue() as f64,
                c.target(TargetMetric::Revenue).0,
                "the scope's revenue target for the period is 0 or absent",
            )
        },
    ),
    kpi(
        "bookings_target_attainment",
        "Bookings target attainment",
        Performance,
        Ratio,
        HigherIsBetter,
        "bookings / bookings_target",
        |c, k| {
            k.ratio(
                c.bookings() as f64,
                c.target(TargetMetric::Bookings).0,
                "the scope's bookings target for the period is 0 or absent",
            )
        },
    ),
    kpi(
        "new_customers_target_attainment",
        "New customers target attainment",
        Performance,
        Ratio,
        HigherIsBetter,
        "new_customers / prorated NEW_CUSTOMERS target of the scope",
        |c, k| {
            k.ratio(
                c.new_customers() as f64,
                c.target(TargetMetric::NewCustomers).0,
                "the scope's new customers target for the period is 0 or absent",
            )
        },
    ),
    kpi(
        "deals_won_target_attainment",
        "Deals won target attainment",
        Performance,
        Ratio,
        HigherIsBetter,
        "deals_won / prorated DEALS_WON target of the scope",
        |c, k| {
            k.ratio(
                c.count_closed(DealStatus::Won) as f64,
                c.target(TargetMetric::DealsWon).0,
                "the scope's deals won target for the period is 0 or absent",
            )
        },
    ),
    kpi(
        "reps_at_quota",
        "Reps at quota",
        Performance,
        Ratio,
        HigherIsBetter,
        "among reps with a REVENUE target overlapping P (TEAM: whose team at end is in the scope; REP: the rep itself), the fraction whose revenue(REP, P) >= their prorated target",
        |c, k| {
            let (at, with) = c.reps_at_quota();
            k.ratio(
                at as f64,
                with as f64,
                "no rep in scope has a revenue target overlapping the period",
            )
        },
    ),
];

/// revenue_growth = (revenue(P) − revenue(prev P)) ÷ revenue(prev P); the
/// previous period whatever comparison the request asks for.
fn revenue_growth(c: &Calc<'_, '_>, k: &KpiDef) -> KpiValue {
    let settings = c.engine.settings();
    match c
        .p
        .previous(settings.time_zone, settings.fiscal_year_start_month)
    {
        Ok(prev) => {
            let now = c.revenue();
            let before = c.for_period(prev).revenue();
            k.ratio(
                (now - before) as f64,
                before as f64,
                "there was no revenue in the previous period",
            )
        }
        Err(e) => k.undefined(&format!("the previous period cannot be built: {e}")),
    }
}

/// How the sales figures are read (production: [`Rolled`]).
pub(crate) trait SalesSource {
    /// revenue = sum(order.amount : ordered_at ∈ P), order's rep at ordered_at.
    fn revenue(&self, c: &Calc<'_, '_>) -> i128;
    /// orders = count(orders : ordered_at ∈ P).
    fn order_count(&self, c: &Calc<'_, '_>) -> i128;
    /// The scope's deals closed in P (owner at closed_at): [won, Σ won
    /// amount, Σ won closed_at − created_at in nanoseconds, lost].
    fn closed(&self, c: &Calc<'_, '_>) -> Figures<4>;
}

impl SalesSource for Rolled {
    fn revenue(&self, c: &Calc<'_, '_>) -> i128 {
        c.total(&c.index.orders.by_time, &c.index.orders.rollups.amounts)
            .1[0]
    }

    fn order_count(&self, c: &Calc<'_, '_>) -> i128 {
        c.total(&c.index.orders.by_time, &c.index.orders.rollups.amounts)
            .0
    }

    fn closed(&self, c: &Calc<'_, '_>) -> Figures<4> {
        c.total(&c.index.deals.by_closed, &c.index.deals.rollups.closed)
            .1
    }
}

impl Calc<'_, '_> {
    /// revenue = sum(order.amount : ordered_at ∈ P)
    pub(crate) fn revenue(&self) -> i128 {
        *self.memo.revenue.get_or_init(|| self.source.revenue(self))
    }

    /// orders = count(orders : ordered_at ∈ P)
    fn order_count(&self) -> i128 {
        self.source.order_count(self)
    }

    /// The figures of the deals closed in P: [won, Σ won amount, Σ won
    /// cycle nanoseconds, lost].
    /// Computed once per (scope, period): four KPIs and their memos read it.
    fn closed_figures(&self) -> Figures<4> {
        *self.memo.closed.get_or_init(|| self.source.closed(self))
    }

    /// bookings = sum(deal.amount : WON, closed_at ∈ P)
    pub(crate) fn bookings(&self) -> i128 {
        *self.memo.bookings.get_or_init(|| self.closed_figures()[1])
    }

    /// count(deals : status, closed_at ∈ P)
    pub(crate) fn count_closed(&self, status: DealStatus) -> i128 {
        let cell = match status {
            DealStatus::Won => &self.memo.deals_won,
            DealStatus::Lost => &self.memo.deals_lost,
            DealStatus::Open => return 0,
        };
        *cell.get_or_init(|| {
            let f = self.closed_figures();
            if status == DealStatus::Won {
                f[0]
            } else {
                f[3]
            }
        })
    }

    /// Target values of the scope's own targets of `metric`, prorated:
    /// Σ value × overlap_days(target, P) ÷ days(target). Returns the sum,
    /// whether any target overlaps P, and the exact sum when every
    /// overlapping target lies wholly inside P.
    pub(crate) fn target(&self, metric: TargetMetric) -> (f64, bool, Option<i128>) {
        let mut total = 0.0;
        let mut any = false;
        let mut exact: Option<i128> = Some(0);
        for t in self.index.targets_of(&self.scope_id) {
            if t.metric != metric {
                continue;
            }
            let (share, whole) = prorate(t.value, t.start_date, t.end_date, &self.p);
            if share.1 > 0 {
                any = true;
                total += share.0;
                exact = match (exact, whole) {
                    (Some(e), Some(w)) => Some(e + w),
                    _ => None,
                };
            }
        }
        (total, any, exact)
    }

    /// reps_at_quota: among reps with a REVENUE target overlapping P (TEAM:
    /// whose team at end is in scope; REP: the rep itself), the fraction whose
    /// revenue(REP, P) ≥ their prorated target. Returns (at quota, with target).
    fn reps_at_quota(&self) -> (i128, i128) {
        let mut quotas: BTreeMap<&str, f64> = BTreeMap::new();
        // A REP scope counts only its own quota.
        let targets: Vec<&crate::domain::Target> = match &self.scope_id {
            Scope::Rep(_) => self.index.targets_of(&self.scope_id).to_vec(),
            _ => self.index.org.data.targets.iter().collect(),
        };
        for t in targets {
            if let (TargetMetric::Revenue, TargetScope::Rep(rep)) = (t.metric, &t.scope) {
                let ((share, days), _) = prorate(t.value, t.start_date, t.end_date, &self.p);
                if days > 0 {
                    *quotas.entry(rep.as_str()).or_default() += share;
                }
            }
        }
        let (mut at, mut with) = (0, 0);
        for (rep, quota) in quotas {
            let in_scope = match &self.scope {
                ResolvedScope::Company => true,
                ResolvedScope::Rep(r) => r == rep,
                ResolvedScope::Team(teams) => self
                    .index
                    .team_at(rep, self.p.end)
                    .is_some_and(|t| teams.contains(t)),
            };
            if !in_scope {
                continue;
            }
            with += 1;
            let revenue = Calc::new(self.engine, &Scope::Rep(rep.to_string()), self.p).revenue();
            if revenue as f64 >= quota {
                at += 1;
            }
        }
        (at, with)
    }
}
