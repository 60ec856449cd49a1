//! The KPI engine: pure computation of KPI values, funnels, bundles, series
//! and breakdowns from a tenant's records ([`Dataset`]), its settings, a
//! [`Scope`] and a [`PeriodRange`]. No I/O: the API loads the data and calls
//! [`Engine`]. Every KPI's formula (SPEC §6) sits next to the code computing it.
//!
//! Attribution (SPEC §5) is done by [`ResolvedScope::counts`]: a record counts
//! for REP(R) when its rep field is R, for TEAM(T) when its rep's team at the
//! attribution instant is in T's subtree, and always for COMPANY.

use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use crate::domain::period::{PeriodError, PeriodRange, overlap_days};
use crate::domain::{
    ActivityType, Dataset, DealStatus, Instant, Scope, TargetMetric, TargetScope, TenantSettings,
};

use super::catalog::{CATALOG, KpiDef, Unit};
use super::index::{ByTime, Index, MembershipSpan, ResolvedScope};
use super::rollup::{
    CSAT_SCORES, Figures, STAGE_BITS, STAGES_OVERFLOW, STAGES_WON, Span, Stocks, Sums, add,
    is_upsell, nanos_between, sum_range,
};
use super::value::{ComparisonValue, KpiValue, relative_change};

/// What to compare a period with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComparisonKind {
    /// No comparison.
    None,
    /// The previous period of the same granularity (custom: same number of days).
    PreviousPeriod,
    /// The same period one year earlier.
    PreviousYear,
}

/// One row of the funnel (SPEC §6): index `n` (the last row) is "won".
#[derive(Debug, Clone, PartialEq)]
pub struct FunnelRow {
    /// Index in pipeline order; `n` = won.
    pub index: usize,
    /// Stage name, `"won"` for the last row.
    pub stage: String,
    /// reached(k): deals of the cohort whose highest stage index is ≥ k
    /// (the last row: deals of the cohort that are WON).
    pub reached: i64,
    /// leakage(k) = 1 − reached(k+1) ÷ reached(k); `None` on the last row or
    /// when reached(k) = 0.
    pub leakage: Option<f64>,
}

/// A set of KPI values for one scope and period.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    /// The scope.
    pub scope: Scope,
    /// The period.
    pub period: PeriodRange,
    /// The comparison period, when one was asked for and could be built.
    pub comparison_period: Option<PeriodRange>,
    /// Values in the order asked for.
    pub values: Vec<KpiValue>,
    /// The funnel, when asked for.
    pub funnel: Option<Vec<FunnelRow>>,
}

/// Dimension of a breakdown (SPEC §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    /// One row per rep in scope.
    Rep,
    /// One row per direct child team of the scope team (COMPANY: root teams).
    Team,
    /// One row per lead source of the scope's leads created in P.
    LeadSource,
    /// One row per activity type.
    ActivityType,
    /// One row per pipeline stage, plus "won".
    Stage,
}

/// One breakdown row.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakdownRow {
    /// Rep id, team id, lead source, activity type or stage name.
    pub key: String,
    /// Display label (rep or team name when known, else the key).
    pub label: String,
    /// The row's values.
    pub values: Vec<KpiValue>,
}

/// The engine's index: built by the engine itself, or shared (held by the
/// service's snapshot cache).
#[derive(Debug)]
enum IndexRef<'a> {
    Owned(Box<Index<'a>>),
    Shared(&'a Index<'a>),
}

impl<'a> std::ops::Deref for IndexRef<'a> {
    type Target = Index<'a>;

    fn deref(&self) -> &Index<'a> {
        match self {
            IndexRef::Owned(index) => index,
            IndexRef::Shared(index) => index,
        }
    }
}

/// Computes KPIs over one tenant's records. Cheap to create over an existing
/// [`Index`] ([`Engine::with_index`]): one per request.
#[derive(Debug)]
pub struct Engine<'a> {
    index: IndexRef<'a>,
    settings: TenantSettings,
    /// Whether REP scopes read only their rep's records (always, except in
    /// the test that proves it changes nothing).
    narrow_reps: bool,
}

impl<'a> Engine<'a> {
    /// Indexes the dataset. `settings.time_zone` is the zone periods are read
    /// in (apply a request's override before calling).
    pub fn new(data: &'a Dataset, settings: TenantSettings) -> Self {
        Engine {
            index: IndexRef::Owned(Box::new(Index::new(data))),
            settings,
            narrow_reps: true,
        }
    }

    /// An engine over an index built earlier (the index does not depend on
    /// the settings, so one index serves every request of its dataset).
    pub fn with_index(index: &'a Index<'a>, settings: TenantSettings) -> Self {
        Engine {
            index: IndexRef::Shared(index),
            settings,
            narrow_reps: true,
        }
    }

    /// The same engine reading every record for REP scopes too (the
    /// reference the narrowed reading is tested against).
    #[cfg(test)]
    pub(crate) fn without_rep_narrowing(mut self) -> Self {
        self.narrow_reps = false;
        self
    }

    /// The settings in use.
    pub fn settings(&self) -> &TenantSettings {
        &self.settings
    }

    /// Whether a team id is known.
    pub fn team_exists(&self, team: &str) -> bool {
        self.index.team_exists(team)
    }

    /// Whether a rep id is known (Rep record, membership, or any record's rep field).
    pub fn rep_exists(&self, rep: &str) -> bool {
        self.index.rep_exists(rep)
    }

    /// The values of `kpis` for a scope and period, in the order given.
    pub fn values(&self, scope: &Scope, period: &PeriodRange, kpis: &[&KpiDef]) -> Vec<KpiValue> {
        let calc = Calc::new(self, scope, *period);
        kpis.iter().map(|k| calc.value(k)).collect()
    }

    /// The value of one KPI (`None` for an id not in [`CATALOG`]).
    pub fn value(&self, scope: &Scope, period: &PeriodRange, id: &str) -> Option<KpiValue> {
        let def = CATALOG.iter().find(|k| k.id == id)?;
        Some(Calc::new(self, scope, *period).value(def))
    }

    /// The funnel of deals created in the period (SPEC §6).
    pub fn funnel(&self, scope: &Scope, period: &PeriodRange) -> Vec<FunnelRow> {
        Calc::new(self, scope, *period).funnel()
    }

    /// A bundle: `kpis` values (with comparisons), and the funnel when
    /// `with_funnel`.
    pub fn bundle(
        &self,
        scope: &Scope,
        period: &PeriodRange,
        kpis: &[&KpiDef],
        with_funnel: bool,
        comparison: ComparisonKind,
    ) -> Bundle {
        let mut values = self.values(scope, period, kpis);
        let mut comparison_period = None;
        if comparison != ComparisonKind::None {
            match self.comparison_period(period, comparison) {
                Ok(cp) => {
                    let previous = self.values(scope, &cp, kpis);
                    for (v, c) in values.iter_mut().zip(previous) {
                        v.comparison = Some(ComparisonValue {
                            relative_change: relative_change(v.value, c.value),
                            value: c.value,
                            undefined_reason: c.undefined_reason,
                        });
                    }
                    comparison_period = Some(cp);
                }
                Err(e) => {
                    let reason = format!("the comparison period cannot be built: {e}");
                    for v in &mut values {
                        v.comparison = Some(ComparisonValue {
                            value: None,
                            undefined_reason: Some(reason.clone()),
                            relative_change: None,
                        });
                    }
                }
            }
        }
        Bundle {
            scope: scope.clone(),
            period: *period,
            comparison_period,
            values,
            funnel: with_funnel.then(|| self.funnel(scope, period)),
        }
    }

    /// One bundle per consecutive period starting with `first` (every period
    /// present; counts and sums of an empty period are 0).
    pub fn series(
        &self,
        scope: &Scope,
        first: &PeriodRange,
        count: usize,
        kpis: &[&KpiDef],
        with_funnel: bool,
        comparison: ComparisonKind,
    ) -> Result<Vec<Bundle>, PeriodError> {
        let mut out = Vec::with_capacity(count);
        let mut period = *first;
        for i in 0..count {
            if i > 0 {
                period = period.next(
                    self.settings.time_zone,
                    self.settings.fiscal_year_start_month,
                )?;
            }
            out.push(self.bundle(scope, &period, kpis, with_funnel, comparison));
        }
        Ok(out)
    }

    /// The comparison period of `period`.
    pub fn comparison_period(
        &self,
        period: &PeriodRange,
        kind: ComparisonKind,
    ) -> Result<PeriodRange, PeriodError> {
        let tz = self.settings.time_zone;
        match kind {
            ComparisonKind::PreviousYear => period.previous_year(tz),
            _ => period.previous(tz, self.settings.fiscal_year_start_month),
        }
    }

    /// The sorted keys (with labels) of a breakdown, before paging.
    pub fn breakdown_keys(
        &self,
        scope: &Scope,
        period: &PeriodRange,
        dimension: Dimension,
    ) -> Vec<(String, String)> {
        let label_rep = |r: &str| {
            self.index
                .rep_names
                .get(r)
                .map_or_else(|| r.to_string(), |n| n.to_string())
        };
        let label_team = |t: &str| {
            self.index
                .team_names
                .get(t)
                .map_or_else(|| t.to_string(), |n| n.to_string())
        };
        match dimension {
            Dimension::Rep => self
                .reps_in_scope(scope, period)
                .into_iter()
                .map(|r| (r.clone(), label_rep(&r)))
                .collect(),
            Dimension::Team => {
                let teams: Vec<&str> = match scope {
                    Scope::Company => self.index.roots.clone(),
                    Scope::Team(t) => self
                        .index
                        .children
                        .get(t.as_str())
                        .cloned()
                        .unwrap_or_default(),
                    Scope::Rep(_) => Vec::new(),
                };
                let sorted: BTreeSet<&str> = teams.into_iter().collect();
                sorted
                    .into_iter()
                    .map(|t| (t.to_string(), label_team(t)))
                    .collect()
            }
            Dimension::LeadSource => {
                let calc = Calc::new(self, scope, *period);
                let sources: BTreeSet<&str> = calc.leads().map(|l| l.source.as_str()).collect();
                sources
                    .into_iter()
                    .map(|s| (s.to_string(), s.to_string()))
                    .collect()
            }
            Dimension::ActivityType => ActivityType::ALL
                .iter()
                .map(|t| (t.as_str().to_string(), t.as_str().to_string()))
                .collect(),
            Dimension::Stage => self
                .settings
                .pipeline_stages
                .iter()
                .map(|s| s.name.clone())
                .chain(std::iter::once(WON.to_string()))
                .map(|s| (s.clone(), s))
                .collect(),
        }
    }

    /// The rows for the given keys (from [`Engine::breakdown_keys`]).
    /// REP and TEAM rows carry `kpis`; the other dimensions have fixed KPIs:
    /// LEAD_SOURCE leads_created, lead_conversion_rate, lead_response_time;
    /// ACTIVITY_TYPE activities, time_on_activities; STAGE `reached` (count)
    /// and `leakage` (ratio, absent on the "won" row).
    pub fn breakdown_rows(
        &self,
        scope: &Scope,
        period: &PeriodRange,
        dimension: Dimension,
        keys: &[(String, String)],
        kpis: &[&KpiDef],
    ) -> Vec<BreakdownRow> {
        let row = |(key, label): &(String, String), values| BreakdownRow {
            key: key.clone(),
            label: label.clone(),
            values,
        };
        match dimension {
            Dimension::Rep => keys
                .iter()
                .map(|k| row(k, self.values(&Scope::Rep(k.0.clone()), period, kpis)))
                .collect(),
            Dimension::Team => keys
                .iter()
                .map(|k| row(k, self.values(&Scope::Team(k.0.clone()), period, kpis)))
                .collect(),
            Dimension::LeadSource => {
                let calc = Calc::new(self, scope, *period);
                keys.iter()
                    .map(|k| row(k, calc.lead_values(Some(k.0.as_str()))))
                    .collect()
            }
            Dimension::ActivityType => {
                let calc = Calc::new(self, scope, *period);
                keys.iter()
                    .map(|k| {
                        let t = ActivityType::ALL.iter().find(|t| t.as_str() == k.0);
                        let values = vec![
                            KpiValue::whole(
                                "activities",
                                Unit::Count,
                                calc.activity_count(t.copied()),
                            ),
                            KpiValue::whole(
                                "time_on_activities",
                                Unit::DurationSeconds,
                                calc.activity_seconds(t.copied()),
                            ),
                        ];
                        row(k, values)
                    })
                    .collect()
            }
            Dimension::Stage => {
                let funnel = self.funnel(scope, period);
                keys.iter()
                    .filter_map(|k| {
                        let f = funnel.iter().find(|f| f.stage == k.0)?;
                        let mut values = vec![KpiValue::whole(
                            "reached",
                            Unit::Count,
                            i128::from(f.reached),
                        )];
                        if f.index + 1 < funnel.len() {
                            values.push(match f.leakage {
                                Some(l) => KpiValue::real("leakage", Unit::Ratio, l, None),
                                None => KpiValue::undefined(
                                    "leakage",
                                    Unit::Ratio,
                                    "no deal of the cohort reached this stage",
                                ),
                            });
                        }
                        Some(row(k, values))
                    })
                    .collect()
            }
        }
    }

    /// Reps of a REP breakdown: reps whose team at some instant of P is in
    /// scope (COMPANY: every rep with a team at some instant of P, plus reps
    /// with records in P but no team; REP: the rep itself), sorted by id.
    fn reps_in_scope(&self, scope: &Scope, period: &PeriodRange) -> Vec<String> {
        let (start, end) = (period.start, period.end);
        let mut reps: BTreeSet<&str> = BTreeSet::new();
        match scope {
            Scope::Rep(r) => return vec![r.clone()],
            Scope::Team(t) => {
                let subtree = self.index.subtree(t);
                for rep in self.index.memberships.keys() {
                    if self
                        .index
                        .teams_during(rep, start, end)
                        .iter()
                        .any(|t| subtree.contains(t))
                    {
                        reps.insert(rep);
                    }
                }
            }
            Scope::Company => {
                for rep in self.index.memberships.keys() {
                    if !self.index.teams_during(rep, start, end).is_empty() {
                        reps.insert(rep);
                    }
                }
                reps.extend(reps_with_records_in(&self.index, period));
            }
        }
        reps.into_iter().map(str::to_string).collect()
    }
}

/// Name of the funnel's last row.
pub const WON: &str = "won";

/// Reps named by the rep field of an event record whose instant is in P.
/// The reps named by the rep field of some record whose instant lies in P
/// (orders, deals created or closed, leads, customers acquired or churned,
/// activities, inquiries, CSAT responses): a binary search per rep and list.
fn reps_with_records_in<'a>(index: &Index<'a>, p: &PeriodRange) -> BTreeSet<&'a str> {
    fn add<'a, T>(out: &mut BTreeSet<&'a str>, by_time: &ByTime<'a, T>, p: &PeriodRange) {
        let period = Span::period(p.start, p.end);
        for (rep, items) in by_time.rep_lists() {
            if !period.positions(items).is_empty() {
                out.insert(rep);
            }
        }
    }
    let mut out = BTreeSet::new();
    add(&mut out, &index.orders_by_time, p);
    add(&mut out, &index.deals_by_created, p);
    add(&mut out, &index.deals_by_closed, p);
    add(&mut out, &index.leads_by_created, p);
    add(&mut out, &index.customers_by_acquired, p);
    add(&mut out, &index.customers_by_churned, p);
    add(&mut out, &index.activities_by_time, p);
    add(&mut out, &index.inquiries_by_time, p);
    add(&mut out, &index.csat_by_time, p);
    out
}

/// [`reps_with_records_in`] by a scan of every record: the reference it is
/// tested against.
#[cfg(test)]
fn reps_with_records_scanned<'d>(data: &'d Dataset, p: &PeriodRange) -> BTreeSet<&'d str> {
    let mut out = BTreeSet::new();
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

/// MRR totals and movements of a scope over a period (SPEC §6).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct MrrMovements {
    /// Σ m0: MRR at start of customers in scope at start.
    start: i128,
    /// Σ m1: MRR at end of customers in scope at end.
    end: i128,
    new: i128,
    reactivation: i128,
    expansion: i128,
    contraction: i128,
    churned: i128,
    /// Customers with m1 > 0.
    paying_at_end: i128,
}

/// Adds a customer's movement from `m0` (at start) to `m1` (at end);
/// `paid_before` tells whether its MRR was > 0 at some instant before start.
fn add_movement(m: &mut MrrMovements, m0: i128, m1: i128, paid_before: impl FnOnce() -> bool) {
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
struct CustomerCohort {
    /// Active at start (in scope at start).
    active_at_start: i128,
    /// Of those, churned_at in P.
    churned_in_period: i128,
    /// Of those, active at end.
    retained: i128,
}

/// Counts and sums over a set of leads.
#[derive(Debug, Clone, Copy, Default)]
struct LeadFigures {
    created: i128,
    converted: i128,
    /// Leads with a first response.
    responded: i128,
    /// Σ first_response_at − created_at over those, in nanoseconds.
    response_nanos: i128,
}

impl LeadFigures {
    /// Adds a lead's conversion and response (not its creation).
    fn add(&mut self, l: &crate::domain::Lead) {
        self.converted += i128::from(l.converted_at.is_some());
        if let Some(r) = l.first_response_at {
            self.responded += 1;
            self.response_nanos += nanos_between(l.created_at, r);
        }
    }

    /// leads_created = count(leads : created_at ∈ P)
    fn created_value(&self) -> KpiValue {
        KpiValue::whole("leads_created", Unit::Count, self.created)
    }

    /// lead_conversion_rate = count(created_at ∈ P, converted_at set) ÷ leads_created
    fn conversion_rate(&self) -> KpiValue {
        KpiValue::ratio(
            "lead_conversion_rate",
            Unit::Ratio,
            self.converted as f64,
            self.created as f64,
            "no leads were created in the period",
        )
    }

    /// lead_response_time = mean(first_response_at − created_at : created_at ∈ P, responded)
    fn response_time(&self) -> KpiValue {
        KpiValue::ratio(
            "lead_response_time",
            Unit::DurationSeconds,
            nanos_to_seconds(self.response_nanos),
            self.responded as f64,
            "no lead created in the period has a first response",
        )
    }
}

/// Computation for one (scope, period).
struct Calc<'e, 'a> {
    engine: &'e Engine<'a>,
    index: &'e Index<'a>,
    scope: ResolvedScope<'a>,
    scope_id: Scope,
    p: PeriodRange,
    /// The reps whose records the scope can count, in P or at its bounds
    /// (REP: the rep; TEAM: reps in the subtree at some instant of P);
    /// `None` (COMPANY): every record. Reading only their records is exact
    /// because every record is still checked by the scope filter, and every
    /// figure read this way is an integer sum or count (order-free).
    narrow: Option<Vec<&'a str>>,
    /// TEAM scope read through the rollups: each narrowing rep with the
    /// spans (after, until] during which its team was in the subtree.
    team_spans: Vec<(&'a str, Vec<MembershipSpan>)>,
    mrr: OnceCell<MrrMovements>,
    /// Figures several KPIs share, computed once per (scope, period).
    memo: Memo<'a>,
}

/// Slot of "every type" in [`ActivityTotals`].
const ALL_ACTIVITIES: usize = ActivityType::ALL.len();

/// (count, seconds) per activity type, then of all types.
type ActivityTotals = [(i128, i128); ALL_ACTIVITIES + 1];

/// Shared figures of one (scope, period), computed on first use.
#[derive(Default)]
struct Memo<'a> {
    revenue: OnceCell<i128>,
    bookings: OnceCell<i128>,
    deals_won: OnceCell<i128>,
    deals_lost: OnceCell<i128>,
    new_customers: OnceCell<i128>,
    cohort: OnceCell<CustomerCohort>,
    active_reps: OnceCell<i128>,
    activities: OnceCell<ActivityTotals>,
    open_deals: OnceCell<Vec<&'a crate::domain::Deal>>,
    pipeline_value: OnceCell<i128>,
    closed: OnceCell<Figures<4>>,
    leads: OnceCell<LeadFigures>,
}

fn nanos_to_seconds(n: i128) -> f64 {
    n as f64 / 1e9
}

impl<'e, 'a> Calc<'e, 'a> {
    fn new(engine: &'e Engine<'a>, scope: &Scope, p: PeriodRange) -> Self {
        let index: &'e Index<'a> = &engine.index;
        let resolved = ResolvedScope::new(index, scope);
        let narrow: Option<Vec<&'a str>> = match &resolved {
            _ if !engine.narrow_reps => None,
            ResolvedScope::Company => None,
            ResolvedScope::Rep(rep) => Some(
                index
                    .known_reps
                    .get(rep.as_str())
                    .copied()
                    .into_iter()
                    .collect(),
            ),
            // A record counts for TEAM(T) only if its rep's team at the
            // attribution instant (in P, or P's start or end) is in T's
            // subtree; `teams_during` lists every team a rep has at some
            // instant of [start, end] (the team at end is the team of a
            // membership taking effect before start or within P).
            ResolvedScope::Team(teams) => Some(
                index
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
            scope: resolved,
            scope_id: scope.clone(),
            p,
            narrow,
            team_spans,
            mrr: OnceCell::new(),
            memo: Memo::default(),
        }
    }

    /// Whether a record with rep `rep` and attribution instant `t` counts.
    fn counts(&self, rep: Option<&str>, t: Instant) -> bool {
        self.scope.counts(self.index, rep, t)
    }

    fn data(&self) -> &'a Dataset {
        self.index.data
    }

    /// Whether figures are read from the rollups: always, except in the
    /// reference engine of the tests, which scans every record.
    fn rolled(&self) -> bool {
        self.engine.narrow_reps
    }

    /// The positions of the scope's records of `by_time` in P: ranges of
    /// the whole list (COMPANY) or of reps' lists (REP: its own; TEAM: each
    /// rep's records while its team was in the subtree).
    fn ranges<T>(&self, by_time: &ByTime<'a, T>) -> Vec<(Option<&'a str>, Range<usize>)> {
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
    fn total<T, const N: usize>(
        &self,
        by_time: &ByTime<'a, T>,
        sums: &Sums<'a, N>,
    ) -> (i128, Figures<N>) {
        let (mut count, mut figures) = (0, [0; N]);
        for (rep, r) in self.ranges(by_time) {
            count += r.len() as i128;
            add(&mut figures, &sum_range(sums.list(rep), &r));
        }
        (count, figures)
    }

    /// The scope's value of a stock at `t` (TEAM: the reps whose team at
    /// `t` is in the subtree).
    fn stock_at<const N: usize>(&self, stocks: &Stocks<'a, N>, t: Instant) -> Figures<N> {
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
    fn window<'s, T>(
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

    /// The items of `by_owner` of the narrowing reps, or `all` (COMPANY).
    fn candidates<'s, T>(
        &'s self,
        all: &'a [T],
        by_owner: &'s HashMap<&'a str, Vec<&'a T>>,
    ) -> impl Iterator<Item = &'a T> + 's {
        let (all, reps): (&'a [T], &[&'a str]) = match &self.narrow {
            None => (all, &[]),
            Some(reps) => (&[], reps),
        };
        all.iter().chain(
            reps.iter()
                .flat_map(move |rep| by_owner.get(rep).into_iter().flatten().copied()),
        )
    }

    /// The deals the scope can count.
    fn candidate_deals(&self) -> impl Iterator<Item = &'a crate::domain::Deal> + '_ {
        self.candidates(&self.data().deals, &self.index.deals_by_owner)
    }

    /// The customers the scope can count.
    fn candidate_customers(&self) -> impl Iterator<Item = &'a crate::domain::Customer> + '_ {
        self.candidates(&self.data().customers, &self.index.customers_by_owner)
    }

    // ---- events -------------------------------------------------------

    /// Orders with ordered_at ∈ P in scope (order's rep at ordered_at).
    fn orders(&self) -> impl Iterator<Item = &'a crate::domain::Order> + '_ {
        self.window(&self.index.orders_by_time)
            .filter(|(t, o)| self.counts(o.rep_id.as_deref(), *t))
            .map(|(_, o)| o)
    }

    /// revenue = sum(order.amount : ordered_at ∈ P)
    fn revenue(&self) -> i128 {
        *self.memo.revenue.get_or_init(|| {
            if self.rolled() {
                let rollup = &self.index.rollups.orders;
                self.total(&self.index.orders_by_time, rollup).1[0]
            } else {
                self.orders().map(|o| i128::from(o.amount)).sum()
            }
        })
    }

    /// orders = count(orders : ordered_at ∈ P)
    fn order_count(&self) -> i128 {
        if self.rolled() {
            let rollup = &self.index.rollups.orders;
            self.total(&self.index.orders_by_time, rollup).0
        } else {
            self.orders().count() as i128
        }
    }

    /// The rollup of the deals closed in P: [won, Σ won amount, Σ won
    /// cycle nanoseconds, lost].
    /// Computed once per (scope, period): four KPIs and their memos read it.
    fn closed_figures(&self) -> Figures<4> {
        *self.memo.closed.get_or_init(|| {
            let rollup = &self.index.rollups.closed;
            self.total(&self.index.deals_by_closed, rollup).1
        })
    }

    /// Deals with `status`, closed_at ∈ P, in scope at closed_at.
    fn closed_deals(
        &self,
        status: DealStatus,
    ) -> impl Iterator<Item = &'a crate::domain::Deal> + '_ {
        self.window(&self.index.deals_by_closed)
            .filter(move |(t, d)| d.status == status && self.counts(d.owner_rep_id.as_deref(), *t))
            .map(|(_, d)| d)
    }

    /// bookings = sum(deal.amount : WON, closed_at ∈ P)
    fn bookings(&self) -> i128 {
        *self.memo.bookings.get_or_init(|| {
            if self.rolled() {
                return self.closed_figures()[1];
            }
            self.closed_deals(DealStatus::Won)
                .map(|d| i128::from(d.amount))
                .sum()
        })
    }

    /// count(deals : status, closed_at ∈ P)
    fn count_closed(&self, status: DealStatus) -> i128 {
        let cell = match status {
            DealStatus::Won => &self.memo.deals_won,
            DealStatus::Lost => &self.memo.deals_lost,
            DealStatus::Open => return 0,
        };
        *cell.get_or_init(|| {
            if self.rolled() {
                let f = self.closed_figures();
                return if status == DealStatus::Won {
                    f[0]
                } else {
                    f[3]
                };
            }
            self.closed_deals(status).count() as i128
        })
    }

    /// Deals with created_at ∈ P, in scope at created_at (the funnel cohort).
    fn created_deals(&self) -> impl Iterator<Item = &'a crate::domain::Deal> + '_ {
        self.window(&self.index.deals_by_created)
            .filter(|(t, d)| self.counts(d.owner_rep_id.as_deref(), *t))
            .map(|(_, d)| d)
    }

    /// Deals open at end, in scope at end: created_at < end and (OPEN or
    /// closed_at ≥ end). Found once per (scope, period): three KPIs use them.
    fn open_deals_at_end(&self) -> impl Iterator<Item = &'a crate::domain::Deal> + '_ {
        let end = self.p.end;
        self.memo
            .open_deals
            .get_or_init(|| {
                self.candidate_deals()
                    .filter(|d| {
                        d.created_at < end
                            && (d.status == DealStatus::Open
                                || d.closed_at.is_none_or(|c| c >= end))
                            && self.counts(d.owner_rep_id.as_deref(), end)
                    })
                    .collect()
            })
            .iter()
            .copied()
    }

    /// sum(amount : open at end)
    fn pipeline_value(&self) -> i128 {
        *self.memo.pipeline_value.get_or_init(|| {
            if self.rolled() {
                return self.stock_at(&self.index.rollups.open_deals, self.p.end)[1];
            }
            self.open_deals_at_end().map(|d| i128::from(d.amount)).sum()
        })
    }

    /// weighted_pipeline_value = Σ amount × probability(stage at end) over
    /// the deals open at end: per stage of the pipeline (the first stage of
    /// a name wins, as a search would), probability × the stage's open
    /// amount, summed in pipeline order. Stages outside the pipeline have
    /// probability 0.
    fn weighted_pipeline_value(&self) -> f64 {
        let end = self.p.end;
        let scanned: HashMap<&str, i128> = if self.rolled() {
            HashMap::default()
        } else {
            let mut amounts: HashMap<&str, i128> = HashMap::default();
            for d in self.open_deals_at_end() {
                if let Some(stage) = self.index.stage_at(d, end) {
                    *amounts.entry(stage).or_default() += i128::from(d.amount);
                }
            }
            amounts
        };
        let mut seen: HashSet<&str> = HashSet::default();
        let mut total = 0.0;
        for stage in &self.engine.settings.pipeline_stages {
            let name = stage.name.as_str();
            if !seen.insert(name) {
                continue;
            }
            let amount = if self.rolled() {
                self.index
                    .rollups
                    .open_by_stage
                    .get(name)
                    .map_or(0, |stocks| self.stock_at(stocks, end)[0])
            } else {
                scanned.get(name).copied().unwrap_or(0)
            };
            total += amount as f64 * stage.win_probability;
        }
        total
    }

    /// Leads with created_at ∈ P, in scope at created_at.
    fn leads(&self) -> impl Iterator<Item = &'a crate::domain::Lead> + '_ {
        self.window(&self.index.leads_by_created)
            .filter(|(t, l)| self.counts(l.owner_rep_id.as_deref(), *t))
            .map(|(_, l)| l)
    }

    /// Activities with occurred_at ∈ P, in scope.
    fn activities(&self) -> impl Iterator<Item = &'a crate::domain::Activity> + '_ {
        self.window(&self.index.activities_by_time)
            .filter(|(t, a)| self.counts(Some(&a.rep_id), *t))
            .map(|(_, a)| a)
    }

    /// (count, seconds) of the scope's activities in P per type (indexed by
    /// `ActivityType as usize`), and of all types at index
    /// [`ALL_ACTIVITIES`]: one pass serves the nine activity KPIs.
    fn activity_totals(&self) -> &ActivityTotals {
        self.memo.activities.get_or_init(|| {
            let mut totals = [(0i128, 0i128); ALL_ACTIVITIES + 1];
            if self.rolled() {
                for (kind, (by_time, sums)) in self.index.rollups.activities.iter().enumerate() {
                    let (count, [seconds]) = self.total(by_time, sums);
                    for i in [kind, ALL_ACTIVITIES] {
                        totals[i].0 += count;
                        totals[i].1 += seconds;
                    }
                }
                return totals;
            }
            for a in self.activities() {
                let seconds = i128::from(a.duration_seconds.unwrap_or(0));
                for i in [a.activity_type as usize, ALL_ACTIVITIES] {
                    totals[i].0 += 1;
                    totals[i].1 += seconds;
                }
            }
            totals
        })
    }

    fn activity_slot(kind: Option<ActivityType>) -> usize {
        kind.map_or(ALL_ACTIVITIES, |k| k as usize)
    }

    /// count(activities : occurred_at ∈ P[, type])
    fn activity_count(&self, kind: Option<ActivityType>) -> i128 {
        self.activity_totals()[Self::activity_slot(kind)].0
    }

    /// sum(duration_seconds : occurred_at ∈ P[, type]); missing counts 0.
    fn activity_seconds(&self, kind: Option<ActivityType>) -> i128 {
        self.activity_totals()[Self::activity_slot(kind)].1
    }

    /// (count, [Σ score, count with score ≥ s per s of [`CSAT_SCORES`]]) of
    /// the scope's CSAT responses in P, from the rollup (`None` in the
    /// reference engine).
    fn csat_figures(&self) -> Option<(i128, Figures<6>)> {
        let rollup = &self.index.rollups.csat;
        self.rolled()
            .then(|| self.total(&self.index.csat_by_time, rollup))
    }

    fn csat_responses(&self) -> impl Iterator<Item = &'a crate::domain::CsatResponse> + '_ {
        self.window(&self.index.csat_by_time)
            .filter(|(t, c)| self.counts(c.rep_id.as_deref(), *t))
            .map(|(_, c)| c)
    }

    /// (distinct customers with an UPSELL or CROSS_SELL order in P, distinct
    /// customers with any order in P), orders without a customer left out.
    fn upsell_customers(&self) -> (usize, usize) {
        if !self.rolled() {
            let mut any: HashSet<&str> = HashSet::default();
            let mut more: HashSet<&str> = HashSet::default();
            for o in self.orders() {
                if let Some(c) = o.customer_id.as_deref() {
                    any.insert(c);
                    if is_upsell(o) {
                        more.insert(c);
                    }
                }
            }
            return (more.len(), any.len());
        }
        // A customer's first order in each range is the one whose link to
        // its previous order lies before the range: one range (COMPANY,
        // REP) is a count of those; a TEAM's ranges are merged by a bit set
        // over customer numbers. Neither reads the orders themselves.
        let by_time = &self.index.orders_by_time;
        let ranges = self.ranges(by_time);
        let rollups = &self.index.rollups;
        let (mut more_count, mut any_count) = (0, 0);
        if ranges.len() <= 1 {
            for (rep, r) in ranges {
                let start = r.start;
                for link in rollups.order_links.list(rep).get(r).unwrap_or_default() {
                    any_count += usize::from(link.prev_any as usize <= start);
                    more_count += usize::from(link.prev_more as usize <= start);
                }
            }
            return (more_count, any_count);
        }
        let words = rollups.order_customers.div_ceil(64);
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
            for link in rollups.order_links.list(rep).get(r).unwrap_or_default() {
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

    // ---- customers ------------------------------------------------------

    /// new_customers = count(customers : acquired_at ∈ P), owner at acquired_at.
    fn new_customers(&self) -> i128 {
        *self.memo.new_customers.get_or_init(|| {
            if self.rolled() {
                let rollup = &self.index.rollups.acquired;
                return self.total(&self.index.customers_by_acquired, rollup).0;
            }
            self.window(&self.index.customers_by_acquired)
                .filter(|(t, c)| self.counts(c.owner_rep_id.as_deref(), *t))
                .count() as i128
        })
    }

    /// count(customers active at `t` and in scope at `t`).
    fn active_count(&self, t: Instant) -> i128 {
        if self.rolled() {
            return self.stock_at(&self.index.rollups.active_customers, t)[0];
        }
        self.active_at(t).count() as i128
    }

    /// Customers active at `t` and in scope at `t`:
    /// acquired_at < t and (churned_at null or ≥ t).
    fn active_at(&self, t: Instant) -> impl Iterator<Item = &'a crate::domain::Customer> + '_ {
        self.candidate_customers().filter(move |c| {
            c.acquired_at < t
                && c.churned_at.is_none_or(|ch| ch >= t)
                && self.counts(c.owner_rep_id.as_deref(), t)
        })
    }

    /// The churn / retention cohort: active at start (attributed at start).
    fn cohort(&self) -> CustomerCohort {
        *self.memo.cohort.get_or_init(|| self.compute_cohort())
    }

    fn compute_cohort(&self) -> CustomerCohort {
        let (start, end) = (self.p.start, self.p.end);
        let mut c = CustomerCohort::default();
        if self.rolled() {
            // Active at start and churned in P: churned in P, acquired
            // before start, in scope at start. The others active at start
            // are still active at end.
            c.active_at_start = self.active_count(start);
            c.churned_in_period = self
                .window(&self.index.customers_by_churned)
                .filter(|(_, cu)| {
                    cu.acquired_at < start && self.counts(cu.owner_rep_id.as_deref(), start)
                })
                .count() as i128;
            c.retained = c.active_at_start - c.churned_in_period;
            return c;
        }
        for customer in self.active_at(start) {
            c.active_at_start += 1;
            if customer.churned_at.is_some_and(|ch| self.p.contains(ch)) {
                c.churned_in_period += 1;
            }
            if customer.churned_at.is_none_or(|ch| ch >= end) {
                c.retained += 1;
            }
        }
        c
    }

    /// Target values of the scope's own targets of `metric`, prorated:
    /// Σ value × overlap_days(target, P) ÷ days(target). Returns the sum,
    /// whether any target overlaps P, and the exact sum when every
    /// overlapping target lies wholly inside P.
    fn target(&self, metric: TargetMetric) -> (f64, bool, Option<i128>) {
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

    /// spend(P) = Σ amount × overlap_days ÷ days over the scope's spend
    /// (COMPANY: all; TEAM: team_id in the subtree). `None` for a REP scope.
    fn spend(&self) -> Option<f64> {
        let teams = match &self.scope {
            ResolvedScope::Rep(_) => return None,
            ResolvedScope::Team(t) => Some(t),
            ResolvedScope::Company => None,
        };
        Some(
            self.data()
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

    /// MRR movements: per customer, m0 = MRR at start if in scope at start
    /// (else 0), m1 = MRR at end if in scope at end (else 0).
    fn mrr(&self) -> &MrrMovements {
        self.mrr.get_or_init(|| {
            let (start, end) = (self.p.start, self.p.end);
            let timeline = &self.index.mrr;
            let mut m = MrrMovements::default();
            if matches!(self.scope, ResolvedScope::Company) && self.engine.narrow_reps {
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
            if self.rolled() {
                // Per owner rep: a rep in scope at start and end brings its
                // customers' totals and the movements of those whose MRR
                // changed; a rep that leaves the scope during P loses its
                // MRR at start (churned); one that joins gains each of its
                // customers' MRR at end (new or reactivation).
                for &rep in self.narrow.iter().flatten() {
                    let Some(changes) = timeline.of_owner(rep) else {
                        continue;
                    };
                    let at_start = self.counts(Some(rep), start);
                    let at_end = self.counts(Some(rep), end);
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
                            let customers = self.index.customers_by_owner.get(rep);
                            for c in customers.into_iter().flatten() {
                                let c = c.id.as_str();
                                let m1 = timeline.mrr_of(c, end);
                                add_movement(&mut m, 0, m1, || self.index.had_mrr_before(c, start));
                            }
                        }
                        (false, false) => {}
                    }
                }
                return m;
            }
            // Integer sums: the order of customers does not matter. A REP or
            // TEAM counts only customers owned by its reps.
            let customers: Vec<&str> = match self.narrow {
                Some(_) => self.candidate_customers().map(|c| c.id.as_str()).collect(),
                None => timeline.customers().collect(),
            };
            for c in customers {
                let m0 = if self.scope.counts_customer(self.index, c, start) {
                    timeline.mrr_of(c, start)
                } else {
                    0
                };
                let m1 = if self.scope.counts_customer(self.index, c, end) {
                    timeline.mrr_of(c, end)
                } else {
                    0
                };
                m.start += m0;
                m.end += m1;
                if m1 > 0 {
                    m.paying_at_end += 1;
                }
                add_movement(&mut m, m0, m1, || self.index.had_mrr_before(c, start));
            }
            m
        })
    }

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
                .memberships
                .keys()
                .filter(|r| !self.index.teams_during(r, start, end).is_empty())
                .count() as i128,
            ResolvedScope::Team(teams) => self
                .index
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

    /// reps_at_quota: among reps with a REVENUE target overlapping P (TEAM:
    /// whose team at end is in scope; REP: the rep itself), the fraction whose
    /// revenue(REP, P) ≥ their prorated target. Returns (at quota, with target).
    fn reps_at_quota(&self) -> (i128, i128) {
        let mut quotas: BTreeMap<&str, f64> = BTreeMap::new();
        // A REP scope counts only its own quota.
        let targets: Vec<&crate::domain::Target> = match &self.scope_id {
            Scope::Rep(_) => self.index.targets_of(&self.scope_id).to_vec(),
            _ => self.data().targets.iter().collect(),
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

    // ---- funnel -----------------------------------------------------------

    /// The highest pipeline index among the stages a deal was ever in (its
    /// stage changes and its own stage); 0 when none is in the pipeline.
    fn highest_stage(&self, d: &crate::domain::Deal, position: &HashMap<&str, usize>) -> usize {
        let history = self
            .index
            .stage_changes
            .get(d.id.as_str())
            .into_iter()
            .flatten()
            .map(|s| s.2);
        history
            .chain(d.stage.as_deref())
            .filter_map(|s| position.get(s).copied())
            .max()
            .unwrap_or(0)
    }

    /// The funnel of deals created in P (SPEC §6).
    fn funnel(&self) -> Vec<FunnelRow> {
        let stages = &self.engine.settings.pipeline_stages;
        let n = stages.len();
        let position: HashMap<&str, usize> = stages
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        // Deals of the cohort per highest stage index reached (WON: the
        // last stage), and the WON ones.
        let mut at_highest = vec![0i64; n];
        let mut won = 0i64;
        let mut count = |is_won: bool, highest: usize| {
            if let Some(slot) = at_highest.get_mut(highest) {
                *slot += 1;
            }
            won += i64::from(is_won);
        };
        let last = n.saturating_sub(1);
        if self.rolled() {
            let rollups = &self.index.rollups;
            let mut label_position = [None; STAGE_BITS];
            for (name, &bit) in &rollups.stage_labels {
                if let Some(slot) = label_position.get_mut(bit as usize) {
                    *slot = position.get(name).copied();
                }
            }
            let by_created = &self.index.deals_by_created;
            for (rep, r) in self.ranges(by_created) {
                let deals = by_created.list(rep).get(r.clone()).unwrap_or_default();
                let masks = rollups.created_stages.list(rep).get(r).unwrap_or_default();
                // The masks alone, without reading the deals, except when
                // a deal has stages beyond the bits.
                for (i, &mask) in masks.iter().enumerate() {
                    let is_won = mask & STAGES_WON != 0;
                    let highest = if is_won {
                        last
                    } else if mask & STAGES_OVERFLOW != 0 {
                        match deals.get(i) {
                            Some(&(_, d)) => self.highest_stage(d, &position),
                            None => 0,
                        }
                    } else {
                        let mut highest = 0;
                        let mut bits = mask;
                        while bits != 0 {
                            let bit = bits.trailing_zeros() as usize;
                            bits &= bits - 1;
                            if let Some(&Some(p)) = label_position.get(bit) {
                                highest = highest.max(p);
                            }
                        }
                        highest
                    };
                    count(is_won, highest);
                }
            }
        } else {
            for d in self.created_deals() {
                let is_won = d.status == DealStatus::Won;
                let highest = if is_won {
                    last
                } else {
                    self.highest_stage(d, &position)
                };
                count(is_won, highest);
            }
        }
        // reached[k] for k in 0..=n: deals whose highest index is ≥ k;
        // reached[n] = WON deals of the cohort.
        let mut reached = vec![0i64; n + 1];
        let mut running = 0;
        for k in (0..n).rev() {
            running += at_highest[k];
            reached[k] = running;
        }
        reached[n] = won;
        let mut rows: Vec<FunnelRow> = Vec::with_capacity(n + 1);
        for k in 0..=n {
            let stage = stages.get(k).map_or(WON, |s| s.name.as_str()).to_string();
            // leakage(k) = 1 − reached(k+1) ÷ reached(k)
            let leakage = match (reached.get(k), reached.get(k + 1)) {
                (Some(&here), Some(&next)) if k < n && here > 0 => {
                    Some(1.0 - next as f64 / here as f64)
                }
                _ => None,
            };
            rows.push(FunnelRow {
                index: k,
                stage,
                reached: reached.get(k).copied().unwrap_or(0),
                leakage,
            });
        }
        rows
    }

    /// LEAD_SOURCE row values over the scope's leads created in P (of one
    /// source, or all when `None`).
    fn lead_values(&self, source: Option<&str>) -> Vec<KpiValue> {
        if self.rolled() {
            let leads = match source {
                None => self.lead_figures(),
                Some(source) => self.source_figures(source),
            };
            return vec![
                leads.created_value(),
                leads.conversion_rate(),
                leads.response_time(),
            ];
        }
        let leads = self
            .leads()
            .filter(|l| source.is_none_or(|s| l.source == s))
            .fold(LeadFigures::default(), |mut f, l| {
                f.created += 1;
                f.add(l);
                f
            });
        vec![
            leads.created_value(),
            leads.conversion_rate(),
            leads.response_time(),
        ]
    }

    /// The figures of the scope's leads of one source created in P, from
    /// the rollups.
    fn source_figures(&self, source: &str) -> LeadFigures {
        let Some((by_time, rollup)) = self.index.rollups.leads_by_source.get(source) else {
            return LeadFigures::default();
        };
        let (created, [converted, responded, response_nanos]) = self.total(by_time, rollup);
        LeadFigures {
            created,
            converted,
            responded,
            response_nanos,
        }
    }

    /// The figures of the scope's leads created in P.
    fn lead_figures(&self) -> LeadFigures {
        *self.memo.leads.get_or_init(|| self.compute_lead_figures())
    }

    fn compute_lead_figures(&self) -> LeadFigures {
        if self.rolled() {
            let rollup = &self.index.rollups.leads;
            let (created, [converted, responded, response_nanos]) =
                self.total(&self.index.leads_by_created, rollup);
            return LeadFigures {
                created,
                converted,
                responded,
                response_nanos,
            };
        }
        self.leads().fold(LeadFigures::default(), |mut f, l| {
            f.created += 1;
            f.add(l);
            f
        })
    }

    // ---- one KPI ----------------------------------------------------------

    /// Computes one catalog KPI.
    fn value(&self, def: &KpiDef) -> KpiValue {
        let id = def.id;
        let unit = def.unit;
        let whole = |n: i128| KpiValue::whole(id, unit, n);
        let ratio = |num: f64, den: f64, reason: &str| KpiValue::ratio(id, unit, num, den, reason);
        let undefined = |reason: &str| KpiValue::undefined(id, unit, reason);
        match id {
            // revenue = sum(order.amount : ordered_at ∈ P)
            "revenue" => whole(self.revenue()),
            // revenue_growth = (revenue(P) − revenue(prev P)) ÷ revenue(prev P)
            "revenue_growth" => {
                let settings = &self.engine.settings;
                match self
                    .p
                    .previous(settings.time_zone, settings.fiscal_year_start_month)
                {
                    Ok(prev) => {
                        let now = self.revenue();
                        let before = Calc::new(self.engine, &self.scope_id, prev).revenue();
                        ratio(
                            (now - before) as f64,
                            before as f64,
                            "there was no revenue in the previous period",
                        )
                    }
                    Err(e) => undefined(&format!("the previous period cannot be built: {e}")),
                }
            }
            // orders = count(orders : ordered_at ∈ P)
            "orders" => whole(self.order_count()),
            // average_order_value = revenue ÷ orders
            "average_order_value" => ratio(
                self.revenue() as f64,
                self.order_count() as f64,
                "there were no orders in the period",
            ),
            // bookings = sum(deal.amount : WON, closed_at ∈ P)
            "bookings" => whole(self.bookings()),
            // deals_won = count(deals : WON, closed_at ∈ P)
            "deals_won" => whole(self.count_closed(DealStatus::Won)),
            // deals_lost = count(deals : LOST, closed_at ∈ P)
            "deals_lost" => whole(self.count_closed(DealStatus::Lost)),
            // win_rate = deals_won ÷ (deals_won + deals_lost)
            "win_rate" => {
                let won = self.count_closed(DealStatus::Won);
                let lost = self.count_closed(DealStatus::Lost);
                ratio(
                    won as f64,
                    (won + lost) as f64,
                    "no deals were closed in the period",
                )
            }
            // average_deal_size = bookings ÷ deals_won
            "average_deal_size" => ratio(
                self.bookings() as f64,
                self.count_closed(DealStatus::Won) as f64,
                "no deals were won in the period",
            ),
            // sales_cycle = mean(closed_at − created_at : WON, closed_at ∈ P)
            "sales_cycle" => {
                let (sum, n) = if self.rolled() {
                    let f = self.closed_figures();
                    (f[2], f[0])
                } else {
                    self.closed_deals(DealStatus::Won)
                        .filter_map(|d| d.closed_at.map(|c| nanos_between(d.created_at, c)))
                        .fold((0i128, 0i128), |(s, n), x| (s + x, n + 1))
                };
                ratio(
                    nanos_to_seconds(sum),
                    n as f64,
                    "no deals were won in the period",
                )
            }
            // deals_created = count(deals : created_at ∈ P)
            "deals_created" => whole(if self.rolled() {
                let rollup = &self.index.rollups.created;
                self.total(&self.index.deals_by_created, rollup).0
            } else {
                self.created_deals().count() as i128
            }),
            // pipeline_value = sum(amount : deals open at end)
            "pipeline_value" => whole(self.pipeline_value()),
            // weighted_pipeline_value = sum(amount × probability(stage at end) : open at end)
            "weighted_pipeline_value" => {
                KpiValue::real(id, unit, self.weighted_pipeline_value(), None)
            }
            // pipeline_coverage = pipeline_value ÷ (revenue_target − revenue);
            // undefined when there is no target or the remainder ≤ 0.
            "pipeline_coverage" => {
                let (target, any, _) = self.target(TargetMetric::Revenue);
                let pipeline = self.pipeline_value();
                let remainder = target - self.revenue() as f64;
                if !any {
                    undefined("the scope has no revenue target overlapping the period")
                } else if remainder <= 0.0 {
                    let mut v = undefined("the revenue target is already met (remainder ≤ 0)");
                    v.numerator = Some(pipeline as f64);
                    v.denominator = Some(remainder);
                    v
                } else {
                    ratio(pipeline as f64, remainder, "")
                }
            }
            // revenue_target = Σ value × overlap_days(target, P) ÷ days(target)
            "revenue_target" => {
                let (v, _, exact) = self.target(TargetMetric::Revenue);
                KpiValue::real(id, unit, v, exact)
            }
            // bookings_target = Σ value × overlap_days(target, P) ÷ days(target)
            "bookings_target" => {
                let (v, _, exact) = self.target(TargetMetric::Bookings);
                KpiValue::real(id, unit, v, exact)
            }
            // revenue_target_attainment = revenue ÷ revenue_target
            "revenue_target_attainment" => ratio(
                self.revenue() as f64,
                self.target(TargetMetric::Revenue).0,
                "the scope's revenue target for the period is 0 or absent",
            ),
            // bookings_target_attainment = bookings ÷ bookings_target
            "bookings_target_attainment" => ratio(
                self.bookings() as f64,
                self.target(TargetMetric::Bookings).0,
                "the scope's bookings target for the period is 0 or absent",
            ),
            // new_customers_target_attainment = new_customers ÷ prorated NEW_CUSTOMERS target
            "new_customers_target_attainment" => ratio(
                self.new_customers() as f64,
                self.target(TargetMetric::NewCustomers).0,
                "the scope's new customers target for the period is 0 or absent",
            ),
            // deals_won_target_attainment = deals_won ÷ prorated DEALS_WON target
            "deals_won_target_attainment" => ratio(
                self.count_closed(DealStatus::Won) as f64,
                self.target(TargetMetric::DealsWon).0,
                "the scope's deals won target for the period is 0 or absent",
            ),
            "reps_at_quota" => {
                let (at, with) = self.reps_at_quota();
                ratio(
                    at as f64,
                    with as f64,
                    "no rep in scope has a revenue target overlapping the period",
                )
            }
            // csat = count(score ≥ min : responded_at ∈ P) ÷ count(responded_at ∈ P)
            "csat" => {
                let min = self.engine.settings.csat_satisfied_min_score;
                let (sat, n) = match self.csat_figures() {
                    Some((n, f)) if CSAT_SCORES.contains(&min) => {
                        let slot = (min - CSAT_SCORES.start() + 1) as usize;
                        (f[slot], n)
                    }
                    _ => self
                        .csat_responses()
                        .fold((0, 0), |(s, n), c| (s + i128::from(c.score >= min), n + 1)),
                };
                ratio(sat as f64, n as f64, "no CSAT responses in the period")
            }
            // csat_average = mean(score : responded_at ∈ P)
            "csat_average" => {
                let (sum, n) = match self.csat_figures() {
                    Some((n, f)) => (f[0], n),
                    None => self
                        .csat_responses()
                        .fold((0, 0), |(s, n), c| (s + i128::from(c.score), n + 1)),
                };
                ratio(sum as f64, n as f64, "no CSAT responses in the period")
            }
            // new_customers = count(customers : acquired_at ∈ P)
            "new_customers" => whole(self.new_customers()),
            // active_customers = count(customers active at end), owner at end
            "active_customers" => whole(self.active_count(self.p.end)),
            // churned_customers = count(customers : churned_at ∈ P), owner at churned_at
            "churned_customers" => whole(if self.rolled() {
                let rollup = &self.index.rollups.churned;
                self.total(&self.index.customers_by_churned, rollup).0
            } else {
                self.window(&self.index.customers_by_churned)
                    .filter(|(t, c)| self.counts(c.owner_rep_id.as_deref(), *t))
                    .count() as i128
            }),
            // customer_churn_rate = count(active at start ∧ churned_at ∈ P) ÷ count(active at start)
            "customer_churn_rate" => {
                let c = self.cohort();
                ratio(
                    c.churned_in_period as f64,
                    c.active_at_start as f64,
                    "no customers were active at the start of the period",
                )
            }
            // customer_retention_rate = count(active at start ∧ active at end) ÷ count(active at start)
            "customer_retention_rate" => {
                let c = self.cohort();
                ratio(
                    c.retained as f64,
                    c.active_at_start as f64,
                    "no customers were active at the start of the period",
                )
            }
            // upsell_cross_sell_rate = distinct customers with UPSELL/CROSS_SELL
            // order in P ÷ distinct customers with any order in P
            "upsell_cross_sell_rate" => {
                let (more, any) = self.upsell_customers();
                ratio(
                    more as f64,
                    any as f64,
                    "no orders with a customer in the period",
                )
            }
            // cac = spend(P) ÷ new_customers; REP scope: undefined
            "cac" => self.cac(),
            "clv" => self.clv(),
            // clv_to_cac = clv ÷ cac
            "clv_to_cac" => {
                let clv = self.clv();
                let cac = self.cac();
                match (clv.value, cac.value) {
                    (None, _) => undefined(&format!(
                        "CLV is undefined: {}",
                        clv.undefined_reason.unwrap_or_default()
                    )),
                    (_, None) => undefined(&format!(
                        "CAC is undefined: {}",
                        cac.undefined_reason.unwrap_or_default()
                    )),
                    (Some(a), Some(b)) => ratio(a, b, "CAC is 0 (no spend)"),
                }
            }
            // mrr = total MRR at end (customers in scope at end)
            "mrr" => whole(self.mrr().end),
            // mrr_start = total MRR at start (customers in scope at start)
            "mrr_start" => whole(self.mrr().start),
            // arr = 12 × mrr
            "arr" => whole(12 * self.mrr().end),
            "new_mrr" => whole(self.mrr().new),
            "reactivation_mrr" => whole(self.mrr().reactivation),
            "expansion_mrr" => whole(self.mrr().expansion),
            "contraction_mrr" => whole(self.mrr().contraction),
            "churned_mrr" => whole(self.mrr().churned),
            // net_new_mrr = mrr − mrr_start
            "net_new_mrr" => whole(self.mrr().end - self.mrr().start),
            // mrr_churn_rate = (churned_mrr + contraction_mrr) ÷ mrr_start
            "mrr_churn_rate" => {
                let m = self.mrr();
                ratio(
                    (m.churned + m.contraction) as f64,
                    m.start as f64,
                    "there was no MRR at the start of the period",
                )
            }
            // net_revenue_retention = (mrr_start + expansion − contraction − churned) ÷ mrr_start
            "net_revenue_retention" => {
                let m = self.mrr();
                ratio(
                    (m.start + m.expansion - m.contraction - m.churned) as f64,
                    m.start as f64,
                    "there was no MRR at the start of the period",
                )
            }
            // arpa = mrr ÷ count(customers with MRR > 0 at end)
            "arpa" => {
                let m = self.mrr();
                ratio(
                    m.end as f64,
                    m.paying_at_end as f64,
                    "no customer has MRR at the end of the period",
                )
            }
            // mrr_quick_ratio = (new + reactivation + expansion) ÷ (contraction + churned)
            "mrr_quick_ratio" => {
                let m = self.mrr();
                ratio(
                    (m.new + m.reactivation + m.expansion) as f64,
                    (m.contraction + m.churned) as f64,
                    "no MRR was lost (contraction and churn are 0) in the period",
                )
            }
            "leads_created" => self.lead_figures().created_value(),
            "lead_conversion_rate" => self.lead_figures().conversion_rate(),
            "lead_response_time" => self.lead_figures().response_time(),
            // referrals = count(leads : created_at ∈ P, source ∈ referral_sources)
            "referrals" => {
                let sources = &self.engine.settings.referral_sources;
                if self.rolled() {
                    let distinct: BTreeSet<&str> = sources.iter().map(String::as_str).collect();
                    whole(
                        distinct
                            .into_iter()
                            .map(|s| self.source_figures(s).created)
                            .sum(),
                    )
                } else {
                    whole(self.leads().filter(|l| sources.contains(&l.source)).count() as i128)
                }
            }
            // activities = count(activities : occurred_at ∈ P); per type likewise
            "activities" => whole(self.activity_count(None)),
            "calls" => whole(self.activity_count(Some(ActivityType::Call))),
            "emails" => whole(self.activity_count(Some(ActivityType::Email))),
            "meetings" => whole(self.activity_count(Some(ActivityType::Meeting))),
            "follow_ups" => whole(self.activity_count(Some(ActivityType::FollowUp))),
            "proposals_sent" => whole(self.activity_count(Some(ActivityType::Proposal))),
            "demos" => whole(self.activity_count(Some(ActivityType::Demo))),
            "networking_events" => whole(self.activity_count(Some(ActivityType::NetworkingEvent))),
            "social_interactions" => whole(self.activity_count(Some(ActivityType::Social))),
            // time_on_activities = sum(duration_seconds : occurred_at ∈ P)
            "time_on_activities" => whole(self.activity_seconds(None)),
            // activities_per_deal_won = activities ÷ deals_won
            "activities_per_deal_won" => ratio(
                self.activity_count(None) as f64,
                self.count_closed(DealStatus::Won) as f64,
                "no deals were won in the period",
            ),
            // inquiry_response_time = mean(first_response_at − received_at : received_at ∈ P, responded)
            "inquiry_response_time" => {
                let (sum, n) = if self.rolled() {
                    let rollup = &self.index.rollups.inquiries;
                    let [n, sum] = self.total(&self.index.inquiries_by_time, rollup).1;
                    (sum, n)
                } else {
                    self.window(&self.index.inquiries_by_time)
                        .filter(|(t, i)| self.counts(i.rep_id.as_deref(), *t))
                        .map(|(_, i)| i)
                        .filter_map(|i| {
                            i.first_response_at.map(|r| nanos_between(i.received_at, r))
                        })
                        .fold((0i128, 0i128), |(s, n), x| (s + x, n + 1))
                };
                ratio(
                    nanos_to_seconds(sum),
                    n as f64,
                    "no inquiry received in the period has a first response",
                )
            }
            "active_reps" => whole(self.active_reps()),
            // revenue_per_rep = revenue ÷ active_reps
            "revenue_per_rep" => ratio(
                self.revenue() as f64,
                self.active_reps() as f64,
                "no rep of the scope was active in the period",
            ),
            // bookings_per_rep = bookings ÷ active_reps
            "bookings_per_rep" => ratio(
                self.bookings() as f64,
                self.active_reps() as f64,
                "no rep of the scope was active in the period",
            ),
            _ => undefined("unknown KPI"),
        }
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
        let per_customer = self.revenue() as f64 / average * self.engine.settings.gross_margin;
        KpiValue::ratio(
            id,
            unit,
            per_customer,
            churn_rate,
            "no customers churned in the period (churn rate 0)",
        )
    }
}

/// Prorates `value` over [start_date, end_date) to the period's local dates:
/// ((value × overlap ÷ days, overlap), exact value when the range lies wholly
/// inside the period or outside it).
fn prorate(
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

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
