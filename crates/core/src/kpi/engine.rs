//! The KPI engine: pure computation of KPI values, funnels, bundles, series
//! and breakdowns from a tenant's records ([`Dataset`]), its settings, a
//! [`Scope`] and a [`PeriodRange`]. No I/O: the API loads the data and calls
//! [`Engine`]. Every KPI's formula sits next to the code computing it, in
//! its definition (see [`super::defs`]); the engine asks each definition for
//! its value over a [`Calc`] of the (scope, period).
//!
//! Attribution (docs/kpis.md, *Scopes and attribution*) is done by [`super::index::ResolvedScope::counts`]: a record counts
//! for REP(R) when its rep field is R, for TEAM(T) when its rep's team at the
//! attribution instant is in T's subtree, and always for COMPANY.

use std::collections::BTreeSet;
// The engine's tests import this module's names (`use super::*`).
#[cfg(test)]
use std::collections::BTreeMap;

use crate::domain::period::{PeriodError, PeriodRange};
use crate::domain::{ActivityType, Dataset, Scope, TenantSettings};

use super::calc::{Calc, Rolled, Source};
use super::catalog::{CATALOG, KpiDef, Unit};
use super::index::{ByTime, Index};
// The reference `reps_with_records_in` is tested against, where the tests
// look for it.
#[cfg(test)]
use super::reference::reps_with_records_scanned;
use super::rollup::Span;
use super::value::{ComparisonValue, KpiValue, absolute_change, relative_change};

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

/// One row of the funnel (see `funnel` in docs/kpis.md): index `n` (the last row) is "won".
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

/// Dimension of a breakdown (docs/api.md, GetBreakdown).
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

/// Computes KPIs over one tenant's records. Cheap to create over an existing
/// [`Index`] ([`Engine::with_index`]): one per request.
#[derive(Debug)]
pub struct Engine<'a> {
    index: Index<'a>,
    settings: TenantSettings,
    /// Where figures come from: the rollups ([`Rolled`]), except in the
    /// reference engine of the tests, which scans every record.
    source: &'static dyn Source,
}

impl<'a> Engine<'a> {
    /// Indexes the dataset. `settings.time_zone` is the zone periods are read
    /// in (apply a request's override before calling).
    pub fn new(data: &'a Dataset, settings: TenantSettings) -> Self {
        Engine {
            index: Index::new(data),
            settings,
            source: &Rolled,
        }
    }

    /// An engine over an index built earlier (the index does not depend on
    /// the settings, so one index serves every request of its dataset).
    pub fn with_index(index: Index<'a>, settings: TenantSettings) -> Self {
        Engine {
            index,
            settings,
            source: &Rolled,
        }
    }

    /// The reference engine: the same engine computing every figure by a
    /// scan of every record, REP and TEAM scopes included (no rollups, no
    /// narrowing to the scope's reps). It is the oracle the production
    /// reading is tested against.
    #[cfg(any(test, feature = "testkit"))]
    pub fn without_rep_narrowing(mut self) -> Self {
        self.source = &super::reference::Scan;
        self
    }

    /// The index the engine reads.
    pub(crate) fn index(&self) -> &Index<'a> {
        &self.index
    }

    /// Where the engine's figures come from.
    pub(crate) fn source(&self) -> &'static dyn Source {
        self.source
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
        kpis.iter().map(|k| (k.compute)(&calc, k)).collect()
    }

    /// The value of one KPI (`None` for an id not in [`CATALOG`]).
    pub fn value(&self, scope: &Scope, period: &PeriodRange, id: &str) -> Option<KpiValue> {
        let def = CATALOG.iter().find(|k| k.id == id)?;
        Some((def.compute)(&Calc::new(self, scope, *period), def))
    }

    /// The funnel of deals created in the period (see `funnel` in docs/kpis.md).
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
                            absolute_change: absolute_change(v.value, c.value),
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
                            absolute_change: None,
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
            ComparisonKind::PreviousYear => {
                period.previous_year(tz, self.settings.fiscal_year_start_month)
            }
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
                .org
                .rep_names
                .get(r)
                .map_or_else(|| r.to_string(), |n| n.to_string())
        };
        let label_team = |t: &str| {
            self.index
                .org
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
                    Scope::Company => self.index.org.roots.clone(),
                    Scope::Team(t) => self
                        .index
                        .org
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
                for rep in self.index.org.memberships.keys() {
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
                for rep in self.index.org.memberships.keys() {
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
    add(&mut out, &index.orders.by_time, p);
    add(&mut out, &index.deals.by_created, p);
    add(&mut out, &index.deals.by_closed, p);
    add(&mut out, &index.leads.by_created, p);
    add(&mut out, &index.customers.by_acquired, p);
    add(&mut out, &index.customers.by_churned, p);
    for by_time in index.activities.lists() {
        add(&mut out, by_time, p);
    }
    add(&mut out, &index.inquiries.by_time, p);
    add(&mut out, &index.csat.by_time, p);
    out
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
