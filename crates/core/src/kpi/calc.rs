//! [`Calc`]: the computation of one (scope, period), which every KPI's
//! compute function reads (see [`super::defs`]).
//!
//! A `Calc` resolves the scope once, knows which reps' records the scope can
//! count (`narrow`), and memoises the figures several KPIs share, so a bundle
//! computes each figure once. Where a figure comes from is its [`Source`]:
//! production reads the rollups ([`Rolled`], built with the index), the
//! tests' reference engine scans every record (`reference::Scan`, compiled
//! only for tests and the `testkit` feature). The source is the only thing
//! the two engines differ in, so the rollups are tested against an
//! independent reading of every KPI's definition.
//!
//! This module holds what every category shares: the reading primitives
//! over the index and the rollups ([`Calc::ranges`], [`Calc::total`],
//! [`Calc::stock_at`], [`Calc::window`]), the memo, and the helpers for
//! durations and prorating. The figures belong to the category modules of
//! [`super::defs`], next to the KPIs that use them.

use std::cell::OnceCell;
use std::fmt::Debug;
use std::ops::Range;

use crate::domain::period::{PeriodRange, overlap_days};
use crate::domain::{Instant, Scope};

use super::defs::activity::{ActivitySource, ActivityTotals};
use super::defs::customers::{CustomerCohort, CustomerSource, MrrMovements};
use super::defs::leads::{LeadFigures, LeadSource};
use super::defs::pipeline::PipelineSource;
use super::defs::sales::SalesSource;
use super::engine::Engine;
use super::index::{ByTime, Index, MembershipSpan, ResolvedScope};
use super::rollup::{Figures, Span, Stocks, Sums, add};

/// Where the figures that have a rollup come from: every category's source
/// trait, one implementation per reading.
pub(crate) trait Source:
    SalesSource + PipelineSource + CustomerSource + LeadSource + ActivitySource + Debug + Sync
{
    /// Whether REP and TEAM scopes read only their reps' records (`narrow`).
    /// The reference scan reads every record through the scope filter, so
    /// that narrowing is tested too.
    fn narrows_reps(&self) -> bool;
}

/// The production reading: the rollups of the index (prefix sums and
/// stocks), binary searches instead of scans. Each category module
/// implements its source trait for it.
#[derive(Debug)]
pub(crate) struct Rolled;

impl Source for Rolled {
    fn narrows_reps(&self) -> bool {
        true
    }
}

/// Computation for one (scope, period).
pub(crate) struct Calc<'e, 'a> {
    /// The engine (settings, source).
    pub(crate) engine: &'e Engine<'a>,
    /// The engine's index.
    pub(crate) index: &'e Index<'a>,
    /// Where figures come from (the engine's source).
    pub(crate) source: &'static dyn Source,
    /// The scope, resolved against the team tree.
    pub(crate) scope: ResolvedScope<'a>,
    /// The scope as asked for (to build other periods' `Calc`s).
    pub(crate) scope_id: Scope,
    /// The period.
    pub(crate) p: PeriodRange,
    /// The reps whose records the scope can count, in P or at its bounds
    /// (REP: the rep; TEAM: reps in the subtree at some instant of P);
    /// `None` (COMPANY): every record. Reading only their records is exact
    /// because every record is still checked by the scope filter, and every
    /// figure read this way is an integer sum or count (order-free).
    pub(crate) narrow: Option<Vec<&'a str>>,
    /// TEAM scope read through the rollups: each narrowing rep with the
    /// spans (after, until] during which its team was in the subtree.
    pub(crate) team_spans: Vec<(&'a str, Vec<MembershipSpan>)>,
    /// MRR movements, computed on first use (eleven KPIs read them).
    pub(crate) mrr: OnceCell<MrrMovements>,
    /// Figures several KPIs share, computed once per (scope, period).
    pub(crate) memo: Memo,
}

/// Shared figures of one (scope, period), computed on first use.
#[derive(Default)]
pub(crate) struct Memo {
    pub(crate) revenue: OnceCell<i128>,
    pub(crate) bookings: OnceCell<i128>,
    pub(crate) deals_won: OnceCell<i128>,
    pub(crate) deals_lost: OnceCell<i128>,
    pub(crate) new_customers: OnceCell<i128>,
    pub(crate) cohort: OnceCell<CustomerCohort>,
    pub(crate) active_reps: OnceCell<i128>,
    pub(crate) activities: OnceCell<ActivityTotals>,
    pub(crate) pipeline_value: OnceCell<i128>,
    pub(crate) closed: OnceCell<Figures<4>>,
    pub(crate) leads: OnceCell<LeadFigures>,
}

/// Nanoseconds as (fractional) seconds, the unit of duration KPIs.
pub(crate) fn nanos_to_seconds(n: i128) -> f64 {
    n as f64 / 1e9
}

impl<'e, 'a> Calc<'e, 'a> {
    pub(crate) fn new(engine: &'e Engine<'a>, scope: &Scope, p: PeriodRange) -> Self {
        let index: &'e Index<'a> = engine.index();
        let source = engine.source();
        let resolved = ResolvedScope::new(index, scope);
        let narrow: Option<Vec<&'a str>> = match &resolved {
            _ if !source.narrows_reps() => None,
            ResolvedScope::Company => None,
            ResolvedScope::Rep(rep) => Some(index.known_rep(rep).into_iter().collect()),
            // A record counts for TEAM(T) only if its rep's team at the
            // attribution instant (in P, or P's start or end) is in T's
            // subtree; `teams_during` lists every team a rep has at some
            // instant of [start, end] (the team at end is the team of a
            // membership taking effect before start or within P).
            ResolvedScope::Team(teams) => Some(
                index
                    .org
                    .memberships
                    .keys()
                    .copied()
                    .filter(|rep| {
                        index
                            .teams_during(rep, p.start, p.end)
                            .iter()
                            .any(|t| teams.contains(t))
                    })
                    .collect(),
            ),
        };
        let team_spans = match (&resolved, &narrow) {
            (ResolvedScope::Team(teams), Some(reps)) => reps
                .iter()
                .map(|rep| (*rep, index.team_spans(rep, teams)))
                .filter(|(_, spans)| !spans.is_empty())
                .collect(),
            _ => Vec::new(),
        };
        Calc {
            engine,
            index,
            source,
            scope: resolved,
            scope_id: scope.clone(),
            p,
            narrow,
            team_spans,
            mrr: OnceCell::new(),
            memo: Memo::default(),
        }
    }

    /// The same scope over another period (revenue growth's previous period).
    pub(crate) fn for_period(&self, p: PeriodRange) -> Calc<'e, 'a> {
        Calc::new(self.engine, &self.scope_id, p)
    }

    /// Whether a record with rep `rep` and attribution instant `t` counts.
    pub(crate) fn counts(&self, rep: Option<&str>, t: Instant) -> bool {
        self.scope.counts(self.index, rep, t)
    }

    /// The positions of the scope's records of `by_time` in P: ranges of
    /// the whole list (COMPANY) or of reps' lists (REP: its own; TEAM: each
    /// rep's records while its team was in the subtree).
    pub(crate) fn ranges<T>(
        &self,
        by_time: &ByTime<'a, T>,
    ) -> Vec<(Option<&'a str>, Range<usize>)> {
        let period = Span::period(self.p.start, self.p.end);
        match &self.scope {
            ResolvedScope::Company => vec![(None, period.positions(by_time.list(None)))],
            ResolvedScope::Rep(_) => self
                .narrow
                .iter()
                .flatten()
                .map(|rep| (Some(*rep), period.positions(by_time.list(Some(rep)))))
                .collect(),
            ResolvedScope::Team(_) => self
                .team_spans
                .iter()
                .flat_map(|(rep, spans)| {
                    let items = by_time.list(Some(rep));
                    spans.iter().map(move |&(after, until)| {
                        let span = Span {
                            after,
                            until,
                            ..period
                        };
                        (Some(*rep), span.positions(items))
                    })
                })
                .filter(|(_, r)| !r.is_empty())
                .collect(),
        }
    }

    /// (count, sums) of the scope's records of `by_time` in P, from the
    /// rollup `sums` built over that list.
    pub(crate) fn total<T, const N: usize>(
        &self,
        by_time: &ByTime<'a, T>,
        sums: &Sums<'a, T, N>,
    ) -> (i128, Figures<N>) {
        let (mut count, mut figures) = (0, [0; N]);
        for (rep, r) in self.ranges(by_time) {
            count += r.len() as i128;
            add(&mut figures, &sums.range(by_time, rep, &r));
        }
        (count, figures)
    }

    /// The scope's value of a stock at `t` (TEAM: the reps whose team at
    /// `t` is in the subtree).
    pub(crate) fn stock_at<const N: usize>(
        &self,
        stocks: &Stocks<'a, N>,
        t: Instant,
    ) -> Figures<N> {
        match &self.scope {
            ResolvedScope::Company => stocks.at(None, t),
            ResolvedScope::Rep(rep) => stocks.at(Some(rep), t),
            ResolvedScope::Team(teams) => {
                let mut figures = [0; N];
                for rep in self.narrow.iter().flatten() {
                    if self
                        .index
                        .team_at(rep, t)
                        .is_some_and(|team| teams.contains(team))
                    {
                        add(&mut figures, &stocks.at(Some(rep), t));
                    }
                }
                figures
            }
        }
    }

    /// The records of `by_time` in P that the scope can count (see
    /// `narrow`), with their instants; callers still apply the scope filter.
    pub(crate) fn window<'s, T>(
        &'s self,
        by_time: &'s ByTime<'a, T>,
    ) -> impl Iterator<Item = (Instant, &'a T)> + 's {
        let (start, end) = (self.p.start, self.p.end);
        let (all, reps): (Option<&ByTime<'a, T>>, &[&'a str]) = match &self.narrow {
            None => (Some(by_time), &[]),
            Some(reps) => (None, reps),
        };
        all.into_iter()
            .flat_map(move |b| b.window(start, end))
            .chain(
                reps.iter()
                    .flat_map(move |rep| by_time.window_of(Some(rep), start, end)),
            )
    }

    /// Leads with created_at ∈ P, in scope at created_at (also the keys of
    /// a LEAD_SOURCE breakdown).
    pub(crate) fn leads(&self) -> impl Iterator<Item = &'a crate::domain::Lead> + '_ {
        self.window(&self.index.leads.by_created)
            .filter(|(t, l)| self.counts(l.owner_rep_id.as_deref(), *t))
            .map(|(_, l)| l)
    }
}

/// Prorates `value` over [start_date, end_date) to the period's local dates:
/// ((value × overlap ÷ days, overlap), exact value when the range lies wholly
/// inside the period or outside it).
pub(crate) fn prorate(
    value: i64,
    start_date: chrono::NaiveDate,
    end_date: chrono::NaiveDate,
    p: &PeriodRange,
) -> ((f64, i64), Option<i128>) {
    let days = end_date.signed_duration_since(start_date).num_days();
    let overlap = overlap_days(start_date, end_date, p.start_date, p.end_date);
    if days <= 0 || overlap <= 0 {
        return ((0.0, 0), Some(0));
    }
    let share = value as f64 * overlap as f64 / days as f64;
    let exact = (overlap == days).then_some(i128::from(value));
    ((share, overlap), exact)
}
