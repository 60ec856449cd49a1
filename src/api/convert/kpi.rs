//! KPI requests and answers: request fields into a [`Selection`] of KPIs, a
//! [`RequestedPeriod`], a [`Scope`], a comparison, a dimension and a page
//! (no I/O, so a bad request never touches the database), and the engine's
//! bundles, values, funnel and catalog back into proto.

use std::collections::HashSet;

use chrono::NaiveDate;
use chrono_tz::Tz;

use super::time::{date_to_proto, timestamp_to_proto};
use crate::domain::period::{Granularity, PeriodError, PeriodRange, PeriodSpec};
use crate::domain::{Scope, TenantSettings};
use crate::error::{Error, Result, quote};
use crate::kpi::catalog::{self, Category, Direction, FUNNEL_ID, KpiDef, Unit};
use crate::kpi::{Bundle, ComparisonKind, Dimension, FunnelRow, KpiValue};
use crate::proto::v1 as pb;

/// Breakdown page size when the request says 0.
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// Which KPIs a request asks for: values in catalog order and whether the
/// funnel is wanted.
#[derive(Debug, Clone)]
pub struct Selection {
    /// The KPIs whose values are wanted, in catalog order.
    pub kpis: Vec<&'static KpiDef>,
    /// Whether the funnel is wanted.
    pub funnel: bool,
}

/// Parses `kpi_ids`: empty means every KPI (and the funnel when
/// `allow_funnel`); an unknown id is INVALID_ARGUMENT `kpi_ids[i]`.
pub fn parse_kpi_ids(ids: &[String], field: &str, allow_funnel: bool) -> Result<Selection> {
    if ids.is_empty() {
        return Ok(Selection {
            kpis: catalog::CATALOG.iter().collect(),
            funnel: allow_funnel,
        });
    }
    let mut wanted: HashSet<&str> = HashSet::new();
    let mut funnel = false;
    for (i, id) in ids.iter().enumerate() {
        let path = format!("{field}[{i}]");
        match catalog::find(id) {
            Some(def) if def.id == FUNNEL_ID => {
                if !allow_funnel {
                    return Err(Error::invalid(
                        path,
                        "the funnel is not available here; use DIMENSION_STAGE",
                    ));
                }
                funnel = true;
            }
            Some(def) => {
                wanted.insert(def.id);
            }
            None => {
                return Err(Error::invalid(
                    path,
                    format!("unknown KPI id {}", quote(id)),
                ));
            }
        }
    }
    Ok(Selection {
        kpis: catalog::CATALOG
            .iter()
            .filter(|k| wanted.contains(k.id))
            .collect(),
        funnel,
    })
}

/// The request's time-zone override (`None`: the tenant's zone).
pub fn parse_time_zone(tz: &str, field: &str) -> Result<Option<Tz>> {
    let tz = tz.trim();
    if tz.is_empty() {
        return Ok(None);
    }
    tz.parse::<Tz>()
        .map(Some)
        .map_err(|_| Error::invalid(field, format!("unknown IANA time zone {}", quote(tz))))
}

pub fn parse_date(date: Option<&pb::Date>, field: &str) -> Result<NaiveDate> {
    let d = date.ok_or_else(|| Error::invalid(field, "required"))?;
    let (month, day) = (u32::try_from(d.month), u32::try_from(d.day));
    match (month, day) {
        (Ok(m), Ok(dd)) => NaiveDate::from_ymd_opt(d.year, m, dd),
        _ => None,
    }
    .ok_or_else(|| {
        Error::invalid(
            field,
            format!("{}-{}-{} is not a calendar date", d.year, d.month, d.day),
        )
    })
}

pub fn parse_granularity(g: i32, field: &str) -> Result<Granularity> {
    use pb::Granularity as G;
    match G::try_from(g) {
        Ok(G::Day) => Ok(Granularity::Day),
        Ok(G::Week) => Ok(Granularity::Week),
        Ok(G::Month) => Ok(Granularity::Month),
        Ok(G::Quarter) => Ok(Granularity::Quarter),
        Ok(G::Year) => Ok(Granularity::Year),
        Ok(G::FiscalQuarter) => Ok(Granularity::FiscalQuarter),
        Ok(G::FiscalYear) => Ok(Granularity::FiscalYear),
        Ok(G::Unspecified) => Err(Error::invalid(field, "required")),
        Err(_) => Err(Error::invalid(field, format!("unknown granularity {g}"))),
    }
}

pub fn period_error(field: &str, e: PeriodError) -> Error {
    match e {
        PeriodError::InvalidFiscalMonth(_) => Error::FailedPrecondition(e.to_string()),
        _ => Error::invalid(field, e.to_string()),
    }
}

/// A period as requested, before the tenant's zone and fiscal year are known;
/// `field` is the path blamed if it cannot be resolved.
#[derive(Debug, Clone, Copy)]
pub struct RequestedPeriod {
    /// The period, in terms of local dates.
    pub spec: PeriodSpec,
    /// The field blamed when it cannot be resolved.
    pub field: &'static str,
}

impl RequestedPeriod {
    /// Resolves the period in `settings.time_zone`.
    pub fn resolve(&self, settings: &TenantSettings) -> Result<PeriodRange> {
        self.spec
            .resolve(settings.time_zone, settings.fiscal_year_start_month)
            .map_err(|e| period_error(self.field, e))
    }
}

/// Parses the request's period (no I/O).
pub fn parse_period(period: Option<&pb::Period>) -> Result<RequestedPeriod> {
    use pb::period::Period as P;
    let (spec, field) = match period.and_then(|p| p.period.as_ref()) {
        None => return Err(Error::invalid("period", "required")),
        Some(P::Calendar(c)) => (
            PeriodSpec::Calendar {
                granularity: parse_granularity(c.granularity, "period.calendar.granularity")?,
                date: parse_date(c.date.as_ref(), "period.calendar.date")?,
            },
            "period.calendar.date",
        ),
        Some(P::Custom(c)) => (
            PeriodSpec::Custom {
                start_date: parse_date(c.start_date.as_ref(), "period.custom.start_date")?,
                end_date: parse_date(c.end_date.as_ref(), "period.custom.end_date")?,
            },
            "period.custom",
        ),
        Some(P::Fiscal(f)) => {
            let quarter = match f.fiscal_quarter {
                0 => None,
                q @ 1..=4 => Some(q.unsigned_abs()),
                q => {
                    return Err(Error::invalid(
                        "period.fiscal.fiscal_quarter",
                        format!("must be 1 to 4, or 0 for the whole fiscal year; got {q}"),
                    ));
                }
            };
            (
                PeriodSpec::Fiscal {
                    year: f.fiscal_year,
                    quarter,
                },
                "period.fiscal.fiscal_year",
            )
        }
    };
    Ok(RequestedPeriod { spec, field })
}

/// Parses the scope (no I/O); whether it exists is checked against the
/// tenant's data by the handler.
pub fn parse_scope(scope: Option<&pb::Scope>) -> Result<Scope> {
    use pb::ScopeKind as K;
    let (kind, id) = scope.map_or((0, ""), |s| (s.kind, s.id.trim()));
    match K::try_from(kind) {
        Ok(K::Unspecified | K::Company) => Ok(Scope::Company),
        Ok(K::Team) => {
            if id.is_empty() {
                return Err(Error::invalid("scope.id", "a TEAM scope needs a team id"));
            }
            Ok(Scope::Team(id.to_string()))
        }
        Ok(K::Rep) => {
            if id.is_empty() {
                return Err(Error::invalid("scope.id", "a REP scope needs a rep id"));
            }
            Ok(Scope::Rep(id.to_string()))
        }
        Err(_) => Err(Error::invalid(
            "scope.kind",
            format!("unknown scope kind {kind}"),
        )),
    }
}

pub fn parse_comparison(c: i32) -> Result<ComparisonKind> {
    use pb::Comparison as C;
    match C::try_from(c) {
        Ok(C::Unspecified | C::None) => Ok(ComparisonKind::None),
        Ok(C::PreviousPeriod) => Ok(ComparisonKind::PreviousPeriod),
        Ok(C::PreviousYear) => Ok(ComparisonKind::PreviousYear),
        Err(_) => Err(Error::invalid(
            "comparison",
            format!("unknown comparison {c}"),
        )),
    }
}

pub fn parse_dimension(d: i32) -> Result<Dimension> {
    use pb::Dimension as D;
    match D::try_from(d) {
        Ok(D::Rep) => Ok(Dimension::Rep),
        Ok(D::Team) => Ok(Dimension::Team),
        Ok(D::LeadSource) => Ok(Dimension::LeadSource),
        Ok(D::ActivityType) => Ok(Dimension::ActivityType),
        Ok(D::Stage) => Ok(Dimension::Stage),
        Ok(D::Unspecified) => Err(Error::invalid("dimension", "required")),
        Err(_) => Err(Error::invalid(
            "dimension",
            format!("unknown dimension {d}"),
        )),
    }
}

/// Page size: 0 → [`DEFAULT_PAGE_SIZE`] (or `max` when smaller), clamped to `max`.
pub fn parse_page_size(n: i32, max: usize) -> Result<usize> {
    match usize::try_from(n) {
        Ok(0) => Ok(DEFAULT_PAGE_SIZE.min(max)),
        Ok(n) => Ok(n.min(max)),
        Err(_) => Err(Error::invalid("page_size", "must not be negative")),
    }
}

const PAGE_TOKEN_PREFIX: &str = "offset:";

/// Page token → row offset ("" = first page).
pub fn parse_page_token(token: &str) -> Result<usize> {
    if token.is_empty() {
        return Ok(0);
    }
    token
        .strip_prefix(PAGE_TOKEN_PREFIX)
        .and_then(|n| n.parse::<usize>().ok())
        .ok_or_else(|| Error::invalid("page_token", "not a token returned by this service"))
}

pub fn page_token(offset: usize) -> String {
    format!("{PAGE_TOKEN_PREFIX}{offset}")
}

// ---- domain → proto -------------------------------------------------------

pub fn to_period(p: &PeriodRange, tz: Tz) -> pb::ResolvedPeriod {
    pb::ResolvedPeriod {
        start_date: Some(date_to_proto(p.start_date)),
        end_date: Some(date_to_proto(p.end_date)),
        start: Some(timestamp_to_proto(p.start)),
        end: Some(timestamp_to_proto(p.end)),
        time_zone: tz.name().to_string(),
    }
}

pub fn to_scope(s: &Scope) -> pb::Scope {
    let (kind, id) = match s {
        Scope::Company => (pb::ScopeKind::Company, String::new()),
        Scope::Team(t) => (pb::ScopeKind::Team, t.clone()),
        Scope::Rep(r) => (pb::ScopeKind::Rep, r.clone()),
    };
    pb::Scope {
        kind: kind as i32,
        id,
    }
}

pub fn to_unit(u: Unit) -> pb::Unit {
    match u {
        Unit::Money => pb::Unit::Money,
        Unit::Count => pb::Unit::Count,
        Unit::Ratio => pb::Unit::Ratio,
        Unit::DurationSeconds => pb::Unit::DurationSeconds,
        Unit::Score => pb::Unit::Score,
        Unit::Number => pb::Unit::Number,
    }
}

/// Keeps NaN and infinities out of responses.
pub fn finite(x: Option<f64>) -> Option<f64> {
    x.filter(|v| v.is_finite())
}

pub fn to_value(v: KpiValue) -> pb::KpiValue {
    let value = finite(v.value);
    let undefined_reason = match (value, v.undefined_reason) {
        (Some(_), _) => String::new(),
        (None, Some(r)) => r,
        (None, None) => "the value is not a finite number".to_string(),
    };
    let (comparison_value, comparison_undefined_reason, relative_change, absolute_change) =
        match v.comparison {
            None => (None, String::new(), None, None),
            Some(c) => {
                let cv = finite(c.value);
                let reason = if cv.is_some() {
                    String::new()
                } else {
                    c.undefined_reason.unwrap_or_default()
                };
                (
                    cv,
                    reason,
                    finite(c.relative_change),
                    finite(c.absolute_change),
                )
            }
        };
    pb::KpiValue {
        kpi_id: v.kpi_id.to_string(),
        unit: to_unit(v.unit) as i32,
        value,
        exact_value: v.exact_value.filter(|_| value.is_some()),
        undefined_reason,
        numerator: finite(v.numerator),
        denominator: finite(v.denominator),
        comparison_value,
        comparison_undefined_reason,
        relative_change,
        absolute_change,
    }
}

pub fn to_funnel(rows: Vec<FunnelRow>) -> Vec<pb::FunnelStage> {
    rows.into_iter()
        .map(|r| pb::FunnelStage {
            index: i32::try_from(r.index).unwrap_or(i32::MAX),
            stage: r.stage,
            reached: r.reached,
            leakage: finite(r.leakage),
        })
        .collect()
}

pub fn to_bundle(b: Bundle, tz: Tz, currency: &str) -> pb::KpiBundle {
    pb::KpiBundle {
        scope: Some(to_scope(&b.scope)),
        period: Some(to_period(&b.period, tz)),
        comparison_period: b.comparison_period.map(|p| to_period(&p, tz)),
        currency_code: currency.to_string(),
        values: b.values.into_iter().map(to_value).collect(),
        funnel: b.funnel.map(to_funnel).unwrap_or_default(),
    }
}

/// The catalog as `ListKpis` serves it.
pub fn catalog_proto() -> Vec<pb::KpiDefinition> {
    catalog::all_with_funnel()
        .map(|k| pb::KpiDefinition {
            id: k.id.to_string(),
            name: k.name.to_string(),
            category: match k.category {
                Category::Performance => pb::KpiCategory::Performance,
                Category::Customers => pb::KpiCategory::Customers,
                Category::Leads => pb::KpiCategory::Leads,
                Category::Activity => pb::KpiCategory::Activity,
                Category::Productivity => pb::KpiCategory::Productivity,
            } as i32,
            unit: to_unit(k.unit) as i32,
            formula: k.formula.to_string(),
            direction: match k.direction {
                Direction::HigherIsBetter => pb::Direction::HigherIsBetter,
                Direction::LowerIsBetter => pb::Direction::LowerIsBetter,
                Direction::Neutral => pb::Direction::Neutral,
            } as i32,
        })
        .collect()
}
