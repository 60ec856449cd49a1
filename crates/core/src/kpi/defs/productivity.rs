//! Productivity: the reps active in the scope during the period, and revenue
//! and bookings per active rep. Read from the memberships, with no rollup.

use crate::kpi::calc::Calc;
use crate::kpi::catalog::{Category::Productivity, Direction::*, KpiDef, Unit::*, kpi};
use crate::kpi::index::ResolvedScope;

/// active_reps … bookings_per_rep, in catalog order.
pub(crate) const PRODUCTIVITY: &[KpiDef] = &[
    kpi(
        "active_reps",
        "Active reps",
        Productivity,
        Count,
        Neutral,
        "reps whose team at some instant of P is in the scope (REP scope: 1; COMPANY: reps with any team at some instant of P)",
        |c, k| k.whole(c.active_reps()),
    ),
    kpi(
        "revenue_per_rep",
        "Revenue per rep",
        Productivity,
        Money,
        HigherIsBetter,
        "revenue / active_reps",
        |c, k| {
            k.ratio(
                c.revenue() as f64,
                c.active_reps() as f64,
                "no rep of the scope was active in the period",
            )
        },
    ),
    kpi(
        "bookings_per_rep",
        "Bookings per rep",
        Productivity,
        Money,
        HigherIsBetter,
        "bookings / active_reps",
        |c, k| {
            k.ratio(
                c.bookings() as f64,
                c.active_reps() as f64,
                "no rep of the scope was active in the period",
            )
        },
    ),
];

impl Calc<'_, '_> {
    /// active_reps: reps whose team at some instant of P is in scope
    /// (REP: 1; COMPANY: reps with any team at some instant of P).
    fn active_reps(&self) -> i128 {
        *self
            .memo
            .active_reps
            .get_or_init(|| self.compute_active_reps())
    }

    fn compute_active_reps(&self) -> i128 {
        let (start, end) = (self.p.start, self.p.end);
        match &self.scope {
            ResolvedScope::Rep(_) => 1,
            ResolvedScope::Company => self
                .index
                .org
                .memberships
                .keys()
                .filter(|r| !self.index.teams_during(r, start, end).is_empty())
                .count() as i128,
            ResolvedScope::Team(teams) => self
                .index
                .org
                .memberships
                .keys()
                .filter(|r| {
                    self.index
                        .teams_during(r, start, end)
                        .iter()
                        .any(|t| teams.contains(t))
                })
                .count() as i128,
        }
    }
}
