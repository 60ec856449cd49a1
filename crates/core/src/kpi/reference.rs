//! The reference reading ([`Scan`]): every figure computed by scanning every
//! record through the scope filter, straight from the definitions in
//! docs/kpis.md, with no rollup and no narrowing to the scope's reps.
//!
//! It is the oracle the production reading ([`super::calc::Rolled`]) is
//! tested against (`rep_narrowing_changes_no_value` compares every KPI, the
//! funnel and the breakdowns of both), so it must stay independent of the
//! rollups: it reads the index only for the per-period windows of records
//! sorted by time and for the state rules (team, stage and MRR at an
//! instant). Compiled for tests and the `testkit` feature only; reach it
//! through [`super::engine::Engine::without_rep_narrowing`].

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use crate::domain::{DealStatus, Instant};

use super::calc::{Calc, Source};
use super::defs::activity::{ALL_ACTIVITIES, ActivitySource, ActivityTotals};
use super::defs::customers::{CustomerCohort, CustomerSource, MrrMovements, add_movement};
use super::defs::leads::{LeadFigures, LeadSource};
use super::defs::pipeline::PipelineSource;
use super::defs::sales::SalesSource;
use super::rollup::{Figures, is_upsell, nanos_between};

/// The reference reading: a scan of every record.
#[derive(Debug)]
pub(crate) struct Scan;

impl Source for Scan {
    fn narrows_reps(&self) -> bool {
        false
    }
}

impl<'a> Calc<'_, 'a> {
    /// Orders with ordered_at ∈ P in scope (order's rep at ordered_at).
    fn orders(&self) -> impl Iterator<Item = &'a crate::domain::Order> + '_ {
        self.window(&self.index.orders.by_time)
            .filter(|(t, o)| self.counts(o.rep_id.as_deref(), *t))
            .map(|(_, o)| o)
    }

    /// Deals with `status`, closed_at ∈ P, in scope at closed_at.
    fn closed_deals(
        &self,
        status: DealStatus,
    ) -> impl Iterator<Item = &'a crate::domain::Deal> + '_ {
        self.window(&self.index.deals.by_closed)
            .filter(move |(t, d)| d.status == status && self.counts(d.owner_rep_id.as_deref(), *t))
            .map(|(_, d)| d)
    }

    /// Deals with created_at ∈ P, in scope at created_at (the funnel cohort).
    fn created_deals(&self) -> impl Iterator<Item = &'a crate::domain::Deal> + '_ {
        self.window(&self.index.deals.by_created)
            .filter(|(t, d)| self.counts(d.owner_rep_id.as_deref(), *t))
            .map(|(_, d)| d)
    }

    /// Deals open at end, in scope at end: created_at < end and (OPEN or
    /// closed_at ≥ end).
    fn open_deals_at_end(&self) -> impl Iterator<Item = &'a crate::domain::Deal> + '_ {
        let end = self.p.end;
        self.index.deals.data.deals.iter().filter(move |d| {
            d.created_at < end
                && (d.status == DealStatus::Open || d.closed_at.is_none_or(|c| c >= end))
                && self.counts(d.owner_rep_id.as_deref(), end)
        })
    }

    /// Activities with occurred_at ∈ P, in scope (read from the per-type
    /// lists, whatever type each activity says it has).
    fn activities(&self) -> impl Iterator<Item = &'a crate::domain::Activity> + '_ {
        self.index
            .activities
            .lists()
            .flat_map(|by_time| self.window(by_time))
            .filter(|(t, a)| self.counts(Some(&a.rep_id), *t))
            .map(|(_, a)| a)
    }

    /// Customers active at `t` and in scope at `t`:
    /// acquired_at < t and (churned_at null or ≥ t).
    fn active_at(&self, t: Instant) -> impl Iterator<Item = &'a crate::domain::Customer> + '_ {
        self.index.customers.data.customers.iter().filter(move |c| {
            c.acquired_at < t
                && c.churned_at.is_none_or(|ch| ch >= t)
                && self.counts(c.owner_rep_id.as_deref(), t)
        })
    }
}

impl SalesSource for Scan {
    fn revenue(&self, c: &Calc<'_, '_>) -> i128 {
        c.orders().map(|o| i128::from(o.amount)).sum()
    }

    fn order_count(&self, c: &Calc<'_, '_>) -> i128 {
        c.orders().count() as i128
    }

    fn closed(&self, c: &Calc<'_, '_>) -> Figures<4> {
        let won = c.closed_deals(DealStatus::Won).count() as i128;
        let bookings = c
            .closed_deals(DealStatus::Won)
            .map(|d| i128::from(d.amount))
            .sum();
        let cycle = c
            .closed_deals(DealStatus::Won)
            .filter_map(|d| {
                d.closed_at
                    .map(|closed| nanos_between(d.created_at, closed))
            })
            .sum();
        let lost = c.closed_deals(DealStatus::Lost).count() as i128;
        [won, bookings, cycle, lost]
    }
}

impl PipelineSource for Scan {
    fn deals_created(&self, c: &Calc<'_, '_>) -> i128 {
        c.created_deals().count() as i128
    }

    fn pipeline_value(&self, c: &Calc<'_, '_>) -> i128 {
        c.open_deals_at_end().map(|d| i128::from(d.amount)).sum()
    }

    fn open_amount_in_stage(&self, c: &Calc<'_, '_>, stage: &str) -> i128 {
        c.open_deals_at_end()
            .filter(|d| c.index.stage_at(d, c.p.end) == Some(stage))
            .map(|d| i128::from(d.amount))
            .sum()
    }

    fn count_funnel(
        &self,
        c: &Calc<'_, '_>,
        position: &HashMap<&str, usize>,
        last: usize,
        count: &mut dyn FnMut(bool, usize),
    ) {
        for d in c.created_deals() {
            let is_won = d.status == DealStatus::Won;
            let highest = if is_won {
                last
            } else {
                c.highest_stage(d, position)
            };
            count(is_won, highest);
        }
    }
}

impl CustomerSource for Scan {
    fn new_customers(&self, c: &Calc<'_, '_>) -> i128 {
        c.window(&c.index.customers.by_acquired)
            .filter(|(t, cu)| c.counts(cu.owner_rep_id.as_deref(), *t))
            .count() as i128
    }

    fn churned_customers(&self, c: &Calc<'_, '_>) -> i128 {
        c.window(&c.index.customers.by_churned)
            .filter(|(t, cu)| c.counts(cu.owner_rep_id.as_deref(), *t))
            .count() as i128
    }

    fn active_count(&self, c: &Calc<'_, '_>, t: Instant) -> i128 {
        c.active_at(t).count() as i128
    }

    fn cohort(&self, c: &Calc<'_, '_>) -> CustomerCohort {
        let (start, end) = (c.p.start, c.p.end);
        let mut cohort = CustomerCohort::default();
        for customer in c.active_at(start) {
            cohort.active_at_start += 1;
            if customer.churned_at.is_some_and(|ch| c.p.contains(ch)) {
                cohort.churned_in_period += 1;
            }
            if customer.churned_at.is_none_or(|ch| ch >= end) {
                cohort.retained += 1;
            }
        }
        cohort
    }

    fn upsell_customers(&self, c: &Calc<'_, '_>) -> (usize, usize) {
        let mut any: HashSet<&str> = HashSet::default();
        let mut more: HashSet<&str> = HashSet::default();
        for o in c.orders() {
            if let Some(customer) = o.customer_id.as_deref() {
                any.insert(customer);
                if is_upsell(o) {
                    more.insert(customer);
                }
            }
        }
        (more.len(), any.len())
    }

    fn mrr(&self, c: &Calc<'_, '_>) -> MrrMovements {
        let (start, end) = (c.p.start, c.p.end);
        let timeline = &c.index.customers.mrr;
        let mut m = MrrMovements::default();
        // Integer sums: the order of customers does not matter.
        for customer in timeline.customers() {
            let m0 = if c.scope.counts_customer(c.index, customer, start) {
                timeline.mrr_of(customer, start)
            } else {
                0
            };
            let m1 = if c.scope.counts_customer(c.index, customer, end) {
                timeline.mrr_of(customer, end)
            } else {
                0
            };
            m.start += m0;
            m.end += m1;
            if m1 > 0 {
                m.paying_at_end += 1;
            }
            add_movement(&mut m, m0, m1, || c.index.had_mrr_before(customer, start));
        }
        m
    }
}

impl LeadSource for Scan {
    fn lead_figures(&self, c: &Calc<'_, '_>, source: Option<&str>) -> LeadFigures {
        c.leads()
            .filter(|l| source.is_none_or(|s| l.source == s))
            .fold(LeadFigures::default(), |mut f, l| {
                f.created += 1;
                f.converted += i128::from(l.converted_at.is_some());
                if let Some(r) = l.first_response_at {
                    f.responded += 1;
                    f.response_nanos += nanos_between(l.created_at, r);
                }
                f
            })
    }

    fn referrals(&self, c: &Calc<'_, '_>) -> i128 {
        let sources = &c.engine.settings().referral_sources;
        c.leads()
            .filter(|l| sources.iter().any(|s| *s == l.source))
            .count() as i128
    }
}

impl ActivitySource for Scan {
    fn activity_totals(&self, c: &Calc<'_, '_>) -> ActivityTotals {
        let mut totals = [(0i128, 0i128); ALL_ACTIVITIES + 1];
        for a in c.activities() {
            let seconds = i128::from(a.duration_seconds.unwrap_or(0));
            for i in [a.activity_type as usize, ALL_ACTIVITIES] {
                totals[i].0 += 1;
                totals[i].1 += seconds;
            }
        }
        totals
    }

    fn inquiry_responses(&self, c: &Calc<'_, '_>) -> (i128, i128) {
        c.window(&c.index.inquiries.by_time)
            .filter(|(t, i)| c.counts(i.rep_id.as_deref(), *t))
            .map(|(_, i)| i)
            .filter_map(|i| i.first_response_at.map(|r| nanos_between(i.received_at, r)))
            .fold((0i128, 0i128), |(s, n), x| (s + x, n + 1))
    }

    /// No rollup: the CSAT KPIs read the responses.
    fn csat(&self, _: &Calc<'_, '_>) -> Option<(i128, Figures<6>)> {
        None
    }
}

/// The reps named by the rep field of some record whose instant lies in P,
/// by a scan of every record: the reference the engine's
/// `reps_with_records_in` (binary searches per rep) is tested against.
#[cfg(test)]
pub(crate) fn reps_with_records_scanned<'d>(
    data: &'d crate::domain::Dataset,
    p: &crate::domain::period::PeriodRange,
) -> std::collections::BTreeSet<&'d str> {
    let mut out = std::collections::BTreeSet::new();
    let mut add = |rep: Option<&'d str>, t: Instant| {
        if let Some(rep) = rep
            && p.contains(t)
        {
            out.insert(rep);
        }
    };
    for o in &data.orders {
        add(o.rep_id.as_deref(), o.ordered_at);
    }
    for d in &data.deals {
        add(d.owner_rep_id.as_deref(), d.created_at);
        if let Some(c) = d.closed_at {
            add(d.owner_rep_id.as_deref(), c);
        }
    }
    for l in &data.leads {
        add(l.owner_rep_id.as_deref(), l.created_at);
    }
    for c in &data.customers {
        add(c.owner_rep_id.as_deref(), c.acquired_at);
        if let Some(ch) = c.churned_at {
            add(c.owner_rep_id.as_deref(), ch);
        }
    }
    for a in &data.activities {
        add(Some(a.rep_id.as_str()), a.occurred_at);
    }
    for i in &data.inquiries {
        add(i.rep_id.as_deref(), i.received_at);
    }
    for c in &data.csat_responses {
        add(c.rep_id.as_deref(), c.responded_at);
    }
    out
}
