//! Activity and service: activity counts and time per type, activities per
//! deal won, inquiry response time, and CSAT. (CSAT sits in the
//! "Performance" section of the catalog, as docs/kpis.md shows; its figures
//! are the service figures here.)

use crate::domain::{ActivityType, DealStatus};

use crate::kpi::calc::{Calc, Rolled, nanos_to_seconds};
use crate::kpi::catalog::{
    Category::{Activity, Performance},
    Direction::*,
    KpiDef,
    Unit::*,
    kpi,
};
use crate::kpi::rollup::{CSAT_SCORES, Figures};

/// csat, csat_average: in the catalog between the targets and customers.
pub(crate) const SERVICE_CSAT: &[KpiDef] = &[
    kpi(
        "csat",
        "CSAT",
        Performance,
        Ratio,
        HigherIsBetter,
        "count(responses : responded_at in P, score >= csat_satisfied_min_score) / count(responses : responded_at in P)",
        |c, k| {
            let min = c.engine.settings().csat_satisfied_min_score;
            let (sat, n) = match c.source.csat(c) {
                Some((n, f)) if CSAT_SCORES.contains(&min) => {
                    let slot = (min - CSAT_SCORES.start() + 1) as usize;
                    (f[slot], n)
                }
                // A threshold outside the scores the rollup counts is
                // read from the responses.
                _ => c
                    .csat_responses()
                    .fold((0, 0), |(s, n), r| (s + i128::from(r.score >= min), n + 1)),
            };
            k.ratio(sat as f64, n as f64, "no CSAT responses in the period")
        },
    ),
    kpi(
        "csat_average",
        "CSAT average",
        Performance,
        Score,
        HigherIsBetter,
        "mean(score : responded_at in P)",
        |c, k| {
            let (sum, n) = match c.source.csat(c) {
                Some((n, f)) => (f[0], n),
                None => c
                    .csat_responses()
                    .fold((0, 0), |(s, n), r| (s + i128::from(r.score), n + 1)),
            };
            k.ratio(sum as f64, n as f64, "no CSAT responses in the period")
        },
    ),
];

/// activities … inquiry_response_time, in catalog order.
pub(crate) const ACTIVITY: &[KpiDef] = &[
    kpi(
        "activities",
        "Activities",
        Activity,
        Count,
        HigherIsBetter,
        "count(activities : occurred_at in P)",
        |c, k| k.whole(c.activity_count(None)),
    ),
    kpi(
        "calls",
        "Calls",
        Activity,
        Count,
        HigherIsBetter,
        "count(activities : type CALL, occurred_at in P)",
        |c, k| k.whole(c.activity_count(Some(ActivityType::Call))),
    ),
    kpi(
        "emails",
        "Emails",
        Activity,
        Count,
        HigherIsBetter,
        "count(activities : type EMAIL, occurred_at in P)",
        |c, k| k.whole(c.activity_count(Some(ActivityType::Email))),
    ),
    kpi(
        "meetings",
        "Meetings",
        Activity,
        Count,
        HigherIsBetter,
        "count(activities : type MEETING, occurred_at in P)",
        |c, k| k.whole(c.activity_count(Some(ActivityType::Meeting))),
    ),
    kpi(
        "follow_ups",
        "Follow-ups",
        Activity,
        Count,
        HigherIsBetter,
        "count(activities : type FOLLOW_UP, occurred_at in P)",
        |c, k| k.whole(c.activity_count(Some(ActivityType::FollowUp))),
    ),
    kpi(
        "proposals_sent",
        "Proposals sent",
        Activity,
        Count,
        HigherIsBetter,
        "count(activities : type PROPOSAL, occurred_at in P)",
        |c, k| k.whole(c.activity_count(Some(ActivityType::Proposal))),
    ),
    kpi(
        "demos",
        "Demos",
        Activity,
        Count,
        HigherIsBetter,
        "count(activities : type DEMO, occurred_at in P)",
        |c, k| k.whole(c.activity_count(Some(ActivityType::Demo))),
    ),
    kpi(
        "networking_events",
        "Networking events",
        Activity,
        Count,
        HigherIsBetter,
        "count(activities : type NETWORKING_EVENT, occurred_at in P)",
        |c, k| k.whole(c.activity_count(Some(ActivityType::NetworkingEvent))),
    ),
    kpi(
        "social_interactions",
        "Social interactions",
        Activity,
        Count,
        HigherIsBetter,
        "count(activities : type SOCIAL, occurred_at in P)",
        |c, k| k.whole(c.activity_count(Some(ActivityType::Social))),
    ),
    kpi(
        "time_on_activities",
        "Time on activities",
        Activity,
        DurationSeconds,
        Neutral,
        "sum(duration_seconds : occurred_at in P); a missing duration counts 0",
        |c, k| k.whole(c.activity_seconds(None)),
    ),
    kpi(
        "activities_per_deal_won",
        "Activities per deal won",
        Activity,
        Number,
        LowerIsBetter,
        "activities / deals_won",
        |c, k| {
            k.ratio(
                c.activity_count(None) as f64,
                c.count_closed(DealStatus::Won) as f64,
                "no deals were won in the period",
            )
        },
    ),
    kpi(
        "inquiry_response_time",
        "Inquiry response time",
        Activity,
        DurationSeconds,
        LowerIsBetter,
        "mean(first_response_at - received_at : received_at in P, first_response_at set)",
        |c, k| {
            let (sum, n) = c.source.inquiry_responses(c);
            k.ratio(
                nanos_to_seconds(sum),
                n as f64,
                "no inquiry received in the period has a first response",
            )
        },
    ),
];

/// Slot of "every type" in [`ActivityTotals`].
pub(crate) const ALL_ACTIVITIES: usize = ActivityType::ALL.len();

/// (count, seconds) per activity type, then of all types.
pub(crate) type ActivityTotals = [(i128, i128); ALL_ACTIVITIES + 1];

/// How the activity and service figures are read (production: [`Rolled`]).
pub(crate) trait ActivitySource {
    /// (count, seconds) of the scope's activities in P per type (indexed by
    /// `ActivityType as usize`), and of all types at index
    /// [`ALL_ACTIVITIES`]; a missing duration counts 0.
    fn activity_totals(&self, c: &Calc<'_, '_>) -> ActivityTotals;
    /// (Σ first_response_at − received_at in nanoseconds, count) over the
    /// scope's inquiries received in P that have a first response.
    fn inquiry_responses(&self, c: &Calc<'_, '_>) -> (i128, i128);
    /// (count, [Σ score, count with score ≥ s per s of [`CSAT_SCORES`]]) of
    /// the scope's CSAT responses in P, when read from a rollup; `None`
    /// reads the responses.
    fn csat(&self, c: &Calc<'_, '_>) -> Option<(i128, Figures<6>)>;
}

impl ActivitySource for Rolled {
    fn activity_totals(&self, c: &Calc<'_, '_>) -> ActivityTotals {
        let mut totals = [(0i128, 0i128); ALL_ACTIVITIES + 1];
        for (kind, (by_time, sums)) in c.index.activities.by_type.iter().enumerate() {
            let (count, [seconds]) = c.total(by_time, sums);
            for i in [kind, ALL_ACTIVITIES] {
                totals[i].0 += count;
                totals[i].1 += seconds;
            }
        }
        totals
    }

    fn inquiry_responses(&self, c: &Calc<'_, '_>) -> (i128, i128) {
        let rollup = &c.index.inquiries.figures;
        let [n, sum] = c.total(&c.index.inquiries.by_time, rollup).1;
        (sum, n)
    }

    fn csat(&self, c: &Calc<'_, '_>) -> Option<(i128, Figures<6>)> {
        Some(c.total(&c.index.csat.by_time, &c.index.csat.figures))
    }
}

impl Calc<'_, '_> {
    /// The activity totals, one pass for the nine activity KPIs.
    fn activity_totals(&self) -> &ActivityTotals {
        self.memo
            .activities
            .get_or_init(|| self.source.activity_totals(self))
    }

    fn activity_slot(kind: Option<ActivityType>) -> usize {
        kind.map_or(ALL_ACTIVITIES, |k| k as usize)
    }

    /// count(activities : occurred_at ∈ P[, type])
    pub(crate) fn activity_count(&self, kind: Option<ActivityType>) -> i128 {
        self.activity_totals()[Self::activity_slot(kind)].0
    }

    /// sum(duration_seconds : occurred_at ∈ P[, type]); missing counts 0.
    pub(crate) fn activity_seconds(&self, kind: Option<ActivityType>) -> i128 {
        self.activity_totals()[Self::activity_slot(kind)].1
    }

    /// CSAT responses with responded_at ∈ P, in scope at responded_at.
    pub(crate) fn csat_responses(
        &self,
    ) -> impl Iterator<Item = &'_ crate::domain::CsatResponse> + '_ {
        self.window(&self.index.csat.by_time)
            .filter(|(t, c)| self.counts(c.rep_id.as_deref(), *t))
            .map(|(_, c)| c)
    }
}
