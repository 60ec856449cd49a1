//! Customers and subscriptions: new, active and churned customers, churn and
//! retention of the customers active at start, upsell / cross-sell, CAC,
//! CLV, and MRR with its movements. Customer figures follow the customer's
//! current `owner_rep_id`, at the instants docs/kpis.md lists.

use crate::domain::Instant;

use crate::kpi::calc::{Calc, Rolled, prorate};
use crate::kpi::catalog::{Category::Customers, Direction::*, KpiDef, Unit, Unit::*, kpi};
use crate::kpi::index::ResolvedScope;
use crate::kpi::value::KpiValue;

/// new_customers … mrr_quick_ratio, in catalog order.
pub(crate) const CUSTOMERS: &[KpiDef] = &[
    kpi(
        "new_customers",
        "New customers",
        Customers,
        Count,
        HigherIsBetter,
        "count(customers : acquired_at in P)",
        |c, k| k.whole(c.new_customers()),
    ),
    kpi(
        "active_customers",
        "Active customers",
        Customers,
        Count,
        HigherIsBetter,
        "count(customers active at end of P)",
        |c, k| k.whole(c.active_count(c.p.end)),
    ),
    kpi(
        "churned_customers",
        "Churned customers",
        Customers,
        Count,
        LowerIsBetter,
        "count(customers : churned_at in P)",
        |c, k| k.whole(c.source.churned_customers(c)),
    ),
    kpi(
        "customer_churn_rate",
        "Customer churn rate",
        Customers,
        Ratio,
        LowerIsBetter,
        "count(active at start and churned_at in P) / count(active at start)",
        |c, k| {
            let cohort = c.cohort();
            k.ratio(
                cohort.churned_in_period as f64,
                cohort.active_at_start as f64,
                "no customers were active at the start of the period",
            )
        },
    ),
    kpi(
        "customer_retention_rate",
        "Customer retention rate",
        Customers,
        Ratio,
        HigherIsBetter,
        "count(active at start and active at end) / count(active at start)",
        |c, k| {
            let cohort = c.cohort();
            k.ratio(
                cohort.retained as f64,
                cohort.active_at_start as f64,
                "no customers were active at the start of the period",
            )
        },
    ),
    kpi(
        "upsell_cross_sell_rate",
        "Upsell / cross-sell rate",
        Customers,
        Ratio,
        HigherIsBetter,
        "distinct customers with an UPSELL or CROSS_SELL order in P / distinct customers with any order in P (orders without customer left out)",
        |c, k| {
            let (more, any) = c.source.upsell_customers(c);
            k.ratio(
                more as f64,
                any as f64,
                "no orders with a customer in the period",
            )
        },
    ),
    kpi(
        "cac",
        "Customer acquisition cost",
        Customers,
        Money,
        LowerIsBetter,
        "spend(P) / new_customers, spend(P) = sum(amount x overlap_days / days) over the scope's spend; undefined for a REP scope",
        |c, _| c.cac(),
    ),
    kpi(
        "clv",
        "Customer lifetime value",
        Customers,
        Money,
        HigherIsBetter,
        "(revenue / ((active at start + active at end) / 2)) x gross_margin / customer_churn_rate",
        |c, _| c.clv(),
    ),
    kpi(
        "clv_to_cac",
        "CLV to CAC",
        Customers,
        Ratio,
        HigherIsBetter,
        "clv / cac",
        clv_to_cac,
    ),
    kpi(
        "mrr",
        "MRR",
        Customers,
        Money,
        HigherIsBetter,
        "total MRR at end of P",
        |c, k| k.whole(c.mrr().end),
    ),
    kpi(
        "mrr_start",
        "MRR at start",
        Customers,
        Money,
        Neutral,
        "total MRR at start of P",
        |c, k| k.whole(c.mrr().start),
    ),
    kpi(
        "arr",
        "ARR",
        Customers,
        Money,
        HigherIsBetter,
        "12 x mrr",
        |c, k| k.whole(12 * c.mrr().end),
    ),
    kpi(
        "new_mrr",
        "New MRR",
        Customers,
        Money,
        HigherIsBetter,
        "sum of m1 over customers with m0 = 0 < m1 that never had MRR > 0 before start",
        |c, k| k.whole(c.mrr().new),
    ),
    kpi(
        "reactivation_mrr",
        "Reactivation MRR",
        Customers,
        Money,
        HigherIsBetter,
        "sum of m1 over customers with m0 = 0 < m1 that had MRR > 0 before start",
        |c, k| k.whole(c.mrr().reactivation),
    ),
    kpi(
        "expansion_mrr",
        "Expansion MRR",
        Customers,
        Money,
        HigherIsBetter,
        "sum of m1 - m0 over customers with 0 < m0 < m1",
        |c, k| k.whole(c.mrr().expansion),
    ),
    kpi(
        "contraction_mrr",
        "Contraction MRR",
        Customers,
        Money,
        LowerIsBetter,
        "sum of m0 - m1 over customers with 0 < m1 < m0",
        |c, k| k.whole(c.mrr().contraction),
    ),
    kpi(
        "churned_mrr",
        "Churned MRR",
        Customers,
        Money,
        LowerIsBetter,
        "sum of m0 over customers with m1 = 0 < m0",
        |c, k| k.whole(c.mrr().churned),
    ),
    kpi(
        "net_new_mrr",
        "Net new MRR",
        Customers,
        Money,
        HigherIsBetter,
        "mrr - mrr_start (= new + reactivation + expansion - contraction - churned)",
        |c, k| k.whole(c.mrr().end - c.mrr().start),
    ),
    kpi(
        "mrr_churn_rate",
        "MRR churn rate",
        Customers,
        Ratio,
        LowerIsBetter,
        "(churned_mrr + contraction_mrr) / mrr_start",
        |c, k| {
            let m = c.mrr();
            k.ratio(
                (m.churned + m.contraction) as f64,
                m.start as f64,
                "there was no MRR at the start of the period",
            )
        },
    ),
    kpi(
        "net_revenue_retention",
        "Net revenue retention",
        Customers,
        Ratio,
        HigherIsBetter,
        "(mrr_start + expansion_mrr - contraction_mrr - churned_mrr) / mrr_start",
        |c, k| {
            let m = c.mrr();
            k.ratio(
                (m.start + m.expansion - m.contraction - m.churned) as f64,
                m.start as f64,
                "there was no MRR at the start of the period",
            )
        },
    ),
    kpi(
        "arpa",
        "Average revenue per account",
        Customers,
        Money,
        HigherIsBetter,
        "mrr / count(customers with MRR > 0 at end)",
        |c, k| {
            let m = c.mrr();
            k.ratio(
                m.end as f64,
                m.paying_at_end as f64,
                "no customer has MRR at the end of the period",
            )
        },
    ),
    kpi(
        "mrr_quick_ratio",
        "MRR quick ratio",
        Customers,
        Ratio,
        HigherIsBetter,
        "(new_mrr + reactivation_mrr + expansion_mrr) / (contraction_mrr + churned_mrr)",
        |c, k| {
            let m = c.mrr();
            k.ratio(
                (m.new + m.reactivation + m.expansion) as f64,
                (m.contraction + m.churned) as f64,
                "no MRR was lost (contraction and churn are 0) in the period",
            )
        },
    ),
];

/// clv_to_cac = clv ÷ cac; when either is undefined, its reason is passed on.
fn clv_to_cac(c: &Calc<'_, '_>, k: &KpiDef) -> KpiValue {
    let clv = c.clv();
    let cac = c.cac();
    match (clv.value, cac.value) {
        (None, _) => k.undefined(&format!(
            "CLV is undefined: {}",
            clv.undefined_reason.unwrap_or_default()
        )),
        (_, None) => k.undefined(&format!(
            "CAC is undefined: {}",
            cac.undefined_reason.unwrap_or_default()
        )),
        (Some(a), Some(b)) => k.ratio(a, b, "CAC is 0 (no spend)"),
    }
}

/// MRR totals and movements of a scope over a period (see the MRR KPIs in
/// docs/kpis.md).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct MrrMovements {
    /// Σ m0: MRR at start of customers in scope at start.
    pub(crate) start: i128,
    /// Σ m1: MRR at end of customers in scope at end.
    pub(crate) end: i128,
    pub(crate) new: i128,
    pub(crate) reactivation: i128,
    pub(crate) expansion: i128,
    pub(crate) contraction: i128,
    pub(crate) churned: i128,
    /// Customers with m1 > 0.
    pub(crate) paying_at_end: i128,
}

/// Adds a customer's movement from `m0` (at start) to `m1` (at end);
/// `paid_before` tells whether its MRR was > 0 at some instant before start.
pub(crate) fn add_movement(
    m: &mut MrrMovements,
    m0: i128,
    m1: i128,
    paid_before: impl FnOnce() -> bool,
) {
    if m0 == 0 && m1 > 0 {
        // new = m1 if m0 = 0 < m1 and never MRR > 0 before start;
        // reactivation = m1 if m0 = 0 < m1 otherwise.
        if paid_before() {
            m.reactivation += m1;
        } else {
            m.new += m1;
        }
    } else if 0 < m0 && m0 < m1 {
        m.expansion += m1 - m0; // expansion = m1 − m0 if 0 < m0 < m1
    } else if 0 < m1 && m1 < m0 {
        m.contraction += m0 - m1; // contraction = m0 − m1 if 0 < m1 < m0
    } else if m1 == 0 && m0 > 0 {
        m.churned += m0; // churned = m0 if m1 = 0 < m0
    }
}

/// Customer counts behind churn, retention and CLV.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CustomerCohort {
    /// Active at start (in scope at start).
    pub(crate) active_at_start: i128,
    /// Of those, churned_at in P.
    pub(crate) churned_in_period: i128,
    /// Of those, active at end.
    pub(crate) retained: i128,
}

/// How the customer figures are read (production: [`Rolled`]).
pub(crate) trait CustomerSource {
    /// new_customers = count(customers : acquired_at ∈ P), owner at acquired_at.
    fn new_customers(&self, c: &Calc<'_, '_>) -> i128;
    /// churned_customers = count(customers : churned_at ∈ P), owner at churned_at.
    fn churned_customers(&self, c: &Calc<'_, '_>) -> i128;
    /// count(customers active at `t` and in scope at `t`): acquired_at < t
    /// and (churned_at null or ≥ t).
    fn active_count(&self, c: &Calc<'_, '_>, t: Instant) -> i128;
    /// The churn / retention cohort: active at start (attributed at start).
    fn cohort(&self, c: &Calc<'_, '_>) -> CustomerCohort;
    /// (distinct customers with an UPSELL or CROSS_SELL order in P, distinct
    /// customers with any order in P), orders without a customer left out.
    fn upsell_customers(&self, c: &Calc<'_, '_>) -> (usize, usize);
    /// MRR movements: per customer, m0 = MRR at start if in scope at start
    /// (else 0), m1 = MRR at end if in scope at end (else 0).
    fn mrr(&self, c: &Calc<'_, '_>) -> MrrMovements;
}

impl CustomerSource for Rolled {
    fn new_customers(&self, c: &Calc<'_, '_>) -> i128 {
        let rollup = &c.index.customers.acquired;
        c.total(&c.index.customers.by_acquired, rollup).0
    }

    fn churned_customers(&self, c: &Calc<'_, '_>) -> i128 {
        let rollup = &c.index.customers.churned;
        c.total(&c.index.customers.by_churned, rollup).0
    }

    fn active_count(&self, c: &Calc<'_, '_>, t: Instant) -> i128 {
        c.stock_at(&c.index.customers.active_customers, t)[0]
    }

    fn cohort(&self, c: &Calc<'_, '_>) -> CustomerCohort {
        let start = c.p.start;
        // Active at start and churned in P: churned in P, acquired
        // before start, in scope at start. The others active at start
        // are still active at end.
        let active_at_start = c.active_count(start);
        let churned_in_period = c
            .window(&c.index.customers.by_churned)
            .filter(|(_, cu)| cu.acquired_at < start && c.counts(cu.owner_rep_id.as_deref(), start))
            .count() as i128;
        CustomerCohort {
            active_at_start,
            churned_in_period,
            retained: active_at_start - churned_in_period,
        }
    }

    fn upsell_customers(&self, c: &Calc<'_, '_>) -> (usize, usize) {
        // A customer's first order in each range is the one whose link to
        // its previous order lies before the range: one range (COMPANY,
        // REP) is a count of those; a TEAM's ranges are merged by a bit set
        // over customer numbers. Neither reads the orders themselves.
        let by_time = &c.index.orders.by_time;
        let ranges = c.ranges(by_time);
        let rollups = &c.index.orders.rollups;
        let (mut more_count, mut any_count) = (0, 0);
        if ranges.len() <= 1 {
            for (rep, r) in ranges {
                let start = r.start;
                for link in rollups.links.list(rep).get(r).unwrap_or_default() {
                    any_count += usize::from(link.prev_any as usize <= start);
                    more_count += usize::from(link.prev_more as usize <= start);
                }
            }
            return (more_count, any_count);
        }
        let words = rollups.customers.div_ceil(64);
        let (mut any_bits, mut more_bits) = (vec![0u64; words], vec![0u64; words]);
        let mark = |bits: &mut [u64], customer: u32| -> usize {
            let (word, bit) = (customer as usize / 64, 1u64 << (customer % 64));
            match bits.get_mut(word) {
                Some(w) if *w & bit == 0 => {
                    *w |= bit;
                    1
                }
                _ => 0,
            }
        };
        for (rep, r) in ranges {
            let start = r.start;
            for link in rollups.links.list(rep).get(r).unwrap_or_default() {
                if link.prev_any as usize <= start {
                    any_count += mark(&mut any_bits, link.customer);
                }
                if link.prev_more as usize <= start {
                    more_count += mark(&mut more_bits, link.customer);
                }
            }
        }
        (more_count, any_count)
    }

    fn mrr(&self, c: &Calc<'_, '_>) -> MrrMovements {
        let (start, end) = (c.p.start, c.p.end);
        let timeline = &c.index.customers.mrr;
        let mut m = MrrMovements::default();
        if matches!(c.scope, ResolvedScope::Company) {
            // Every customer counts: the totals come from the timeline,
            // and only customers whose MRR changed in [start, end) can
            // have a movement.
            (m.start, _) = timeline.totals_at(start);
            (m.end, m.paying_at_end) = timeline.totals_at(end);
            for (m0, m1, paid_before) in timeline.all().movements(start, end) {
                add_movement(&mut m, m0, m1, || paid_before);
            }
            return m;
        }
        // Per owner rep: a rep in scope at start and end brings its
        // customers' totals and the movements of those whose MRR
        // changed; a rep that leaves the scope during P loses its
        // MRR at start (churned); one that joins gains each of its
        // customers' MRR at end (new or reactivation).
        for &rep in c.narrow.iter().flatten() {
            let Some(changes) = timeline.of_owner(rep) else {
                continue;
            };
            let at_start = c.counts(Some(rep), start);
            let at_end = c.counts(Some(rep), end);
            if at_start {
                m.start += changes.totals_at(start).0;
            }
            if at_end {
                let (total, paying) = changes.totals_at(end);
                m.end += total;
                m.paying_at_end += paying;
            }
            match (at_start, at_end) {
                (true, true) => {
                    for (m0, m1, paid_before) in changes.movements(start, end) {
                        add_movement(&mut m, m0, m1, || paid_before);
                    }
                }
                (true, false) => m.churned += changes.totals_at(start).0,
                (false, true) => {
                    let customers = c.index.customers.by_owner.get(rep);
                    for customer in customers.into_iter().flatten() {
                        let id = customer.id.as_str();
                        let m1 = timeline.mrr_of(id, end);
                        add_movement(&mut m, 0, m1, || c.index.had_mrr_before(id, start));
                    }
                }
                (false, false) => {}
            }
        }
        m
    }
}

impl Calc<'_, '_> {
    /// new_customers = count(customers : acquired_at ∈ P), owner at acquired_at.
    pub(crate) fn new_customers(&self) -> i128 {
        *self
            .memo
            .new_customers
            .get_or_init(|| self.source.new_customers(self))
    }

    /// count(customers active at `t` and in scope at `t`).
    pub(crate) fn active_count(&self, t: Instant) -> i128 {
        self.source.active_count(self, t)
    }

    /// The churn / retention cohort: active at start (attributed at start).
    fn cohort(&self) -> CustomerCohort {
        *self.memo.cohort.get_or_init(|| self.source.cohort(self))
    }

    /// MRR movements, computed once per (scope, period).
    fn mrr(&self) -> &MrrMovements {
        self.mrr.get_or_init(|| self.source.mrr(self))
    }

    /// spend(P) = Σ amount × overlap_days ÷ days over the scope's spend
    /// (COMPANY: all; TEAM: team_id in the subtree). `None` for a REP scope.
    fn spend(&self) -> Option<f64> {
        let teams = match &self.scope {
            ResolvedScope::Rep(_) => return None,
            ResolvedScope::Team(t) => Some(t),
            ResolvedScope::Company => None,
        };
        Some(
            self.index
                .org
                .data
                .spends
                .iter()
                .filter(|s| match teams {
                    None => true,
                    Some(t) => s.team_id.as_deref().is_some_and(|id| t.contains(id)),
                })
                .map(|s| prorate(s.amount, s.start_date, s.end_date, &self.p).0.0)
                .sum(),
        )
    }

    /// cac = spend(P) ÷ new_customers; REP scope: undefined (spend is never a rep's).
    fn cac(&self) -> KpiValue {
        match self.spend() {
            None => KpiValue::undefined(
                "cac",
                Unit::Money,
                "spend is not attributed to reps, so CAC is undefined for a rep",
            ),
            Some(spend) => KpiValue::ratio(
                "cac",
                Unit::Money,
                spend,
                self.new_customers() as f64,
                "no new customers in the period",
            ),
        }
    }

    /// clv = (revenue ÷ ((active at start + active at end) ÷ 2)) × gross_margin
    /// ÷ customer_churn_rate. Numerator: revenue per average active customer
    /// × gross margin; denominator: the churn rate.
    fn clv(&self) -> KpiValue {
        let id = "clv";
        let unit = Unit::Money;
        let cohort = self.cohort();
        let active_end = self.active_count(self.p.end) as f64;
        let average = (cohort.active_at_start as f64 + active_end) / 2.0;
        if average == 0.0 {
            return KpiValue::undefined(
                id,
                unit,
                "no customers were active at the start or end of the period",
            );
        }
        if cohort.active_at_start == 0 {
            return KpiValue::undefined(
                id,
                unit,
                "the customer churn rate is undefined (no active customers at start)",
            );
        }
        let churn_rate = cohort.churned_in_period as f64 / cohort.active_at_start as f64;
        let per_customer = self.revenue() as f64 / average * self.engine.settings().gross_margin;
        KpiValue::ratio(
            id,
            unit,
            per_customer,
            churn_rate,
            "no customers churned in the period (churn rate 0)",
        )
    }
}
