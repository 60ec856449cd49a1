//! `KpiService`: converts requests into a scope, a period and KPI ids, reads
//! the tenant's settings from the [`Store`] and its records from the
//! [`SnapshotCache`], runs the pure [`Engine`] (on a blocking thread: it is
//! CPU work) and converts the result.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::NaiveDate;
use chrono_tz::Tz;
use tonic::{Request, Response, Status};

use crate::api::tenant_of;
use crate::domain::period::{Granularity, PeriodError, PeriodRange, PeriodSpec};
use crate::domain::{Scope, TenantSettings};
use crate::error::{Error, Result};
use crate::kpi::catalog::{self, Category, Direction, FUNNEL_ID, KpiDef, Unit};
use crate::kpi::{Bundle, ComparisonKind, Dimension, Engine, FunnelRow, KpiValue};
use crate::proto::v1 as pb;
use crate::proto::v1::kpi_service_server::KpiService;
use crate::snapshot::{Snapshot, SnapshotCache};
use crate::store::Store;

/// Smallest and largest `GetKpiSeries.period_count`.
pub const MAX_SERIES_PERIODS: i32 = 366;
/// Breakdown page size when the request says 0.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Default of the largest breakdown page (`--max-page-size`).
pub const MAX_PAGE_SIZE: usize = 1000;

/// Default number of tenants whose snapshots are kept (`--kpi-cache-tenants`).
pub const CACHED_TENANTS: usize = 16;

/// Limits and caching of the KPI queries.
#[derive(Debug, Clone, Copy)]
pub struct KpiLimits {
    /// Largest breakdown page; larger `page_size` requests are clamped.
    pub max_page_size: usize,
    /// Tenants whose snapshots are kept in memory (0: none).
    pub cached_tenants: usize,
}

impl Default for KpiLimits {
    fn default() -> Self {
        KpiLimits {
            max_page_size: MAX_PAGE_SIZE,
            cached_tenants: CACHED_TENANTS,
        }
    }
}

/// The KpiService handlers.
#[derive(Clone)]
pub struct KpiApi {
    store: Arc<dyn Store>,
    snapshots: Arc<SnapshotCache>,
    limits: KpiLimits,
}

impl KpiApi {
    /// Handlers reading from `store` within `limits`.
    pub fn new(store: Arc<dyn Store>, limits: KpiLimits) -> Self {
        let snapshots = Arc::new(SnapshotCache::new(store.clone(), limits.cached_tenants));
        KpiApi {
            store,
            snapshots,
            limits,
        }
    }
}

/// Which KPIs a request asks for: values in catalog order and whether the
/// funnel is wanted.
#[derive(Debug, Clone)]
struct Selection {
    kpis: Vec<&'static KpiDef>,
    funnel: bool,
}

/// Parses `kpi_ids`: empty means every KPI (and the funnel when
/// `allow_funnel`); an unknown id is INVALID_ARGUMENT `kpi_ids[i]`.
fn parse_kpi_ids(ids: &[String], field: &str, allow_funnel: bool) -> Result<Selection> {
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
            None => return Err(Error::invalid(path, format!("unknown KPI id {id:?}"))),
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
fn parse_time_zone(tz: &str, field: &str) -> Result<Option<Tz>> {
    let tz = tz.trim();
    if tz.is_empty() {
        return Ok(None);
    }
    tz.parse::<Tz>()
        .map(Some)
        .map_err(|_| Error::invalid(field, format!("unknown IANA time zone {tz:?}")))
}

fn parse_date(date: Option<&pb::Date>, field: &str) -> Result<NaiveDate> {
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

fn parse_granularity(g: i32, field: &str) -> Result<Granularity> {
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

fn period_error(field: &str, e: PeriodError) -> Error {
    match e {
        PeriodError::InvalidFiscalMonth(_) => Error::FailedPrecondition(e.to_string()),
        _ => Error::invalid(field, e.to_string()),
    }
}

/// A period as requested, before the tenant's zone and fiscal year are known;
/// `field` is the path blamed if it cannot be resolved.
#[derive(Debug, Clone, Copy)]
struct RequestedPeriod {
    spec: PeriodSpec,
    field: &'static str,
}

impl RequestedPeriod {
    /// Resolves the period in `settings.time_zone`.
    fn resolve(&self, settings: &TenantSettings) -> Result<PeriodRange> {
        self.spec
            .resolve(settings.time_zone, settings.fiscal_year_start_month)
            .map_err(|e| period_error(self.field, e))
    }
}

/// Parses the request's period (no I/O).
fn parse_period(period: Option<&pb::Period>) -> Result<RequestedPeriod> {
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
    };
    Ok(RequestedPeriod { spec, field })
}

/// Parses the scope (no I/O); see [`check_scope`] for existence.
fn parse_scope(scope: Option<&pb::Scope>) -> Result<Scope> {
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

/// NOT_FOUND for a team not in the tenant's data, or a rep that has no Rep
/// record and is not named by any membership or record.
fn check_scope(scope: &Scope, engine: &Engine) -> Result<()> {
    match scope {
        Scope::Team(id) if !engine.team_exists(id) => {
            Err(Error::NotFound(format!("team {id:?} not found")))
        }
        Scope::Rep(id) if !engine.rep_exists(id) => {
            Err(Error::NotFound(format!("rep {id:?} not found")))
        }
        _ => Ok(()),
    }
}

fn parse_comparison(c: i32) -> Result<ComparisonKind> {
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

fn parse_dimension(d: i32) -> Result<Dimension> {
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
fn parse_page_size(n: i32, max: usize) -> Result<usize> {
    match usize::try_from(n) {
        Ok(0) => Ok(DEFAULT_PAGE_SIZE.min(max)),
        Ok(n) => Ok(n.min(max)),
        Err(_) => Err(Error::invalid("page_size", "must not be negative")),
    }
}

const PAGE_TOKEN_PREFIX: &str = "offset:";

/// Page token → row offset ("" = first page).
fn parse_page_token(token: &str) -> Result<usize> {
    if token.is_empty() {
        return Ok(0);
    }
    token
        .strip_prefix(PAGE_TOKEN_PREFIX)
        .and_then(|n| n.parse::<usize>().ok())
        .ok_or_else(|| Error::invalid("page_token", "not a token returned by this service"))
}

fn page_token(offset: usize) -> String {
    format!("{PAGE_TOKEN_PREFIX}{offset}")
}

// ---- domain → proto -------------------------------------------------------

fn to_date(d: NaiveDate) -> pb::Date {
    use chrono::Datelike;
    pb::Date {
        year: d.year(),
        month: d.month() as i32,
        day: d.day() as i32,
    }
}

fn to_timestamp(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

fn to_period(p: &PeriodRange, tz: Tz) -> pb::ResolvedPeriod {
    pb::ResolvedPeriod {
        start_date: Some(to_date(p.start_date)),
        end_date: Some(to_date(p.end_date)),
        start: Some(to_timestamp(p.start)),
        end: Some(to_timestamp(p.end)),
        time_zone: tz.name().to_string(),
    }
}

fn to_scope(s: &Scope) -> pb::Scope {
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

fn to_unit(u: Unit) -> pb::Unit {
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
fn finite(x: Option<f64>) -> Option<f64> {
    x.filter(|v| v.is_finite())
}

fn to_value(v: KpiValue) -> pb::KpiValue {
    let value = finite(v.value);
    let undefined_reason = match (value, v.undefined_reason) {
        (Some(_), _) => String::new(),
        (None, Some(r)) => r,
        (None, None) => "the value is not a finite number".to_string(),
    };
    let (comparison_value, comparison_undefined_reason, relative_change) = match v.comparison {
        None => (None, String::new(), None),
        Some(c) => {
            let cv = finite(c.value);
            let reason = if cv.is_some() {
                String::new()
            } else {
                c.undefined_reason.unwrap_or_default()
            };
            (cv, reason, finite(c.relative_change))
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
    }
}

fn to_funnel(rows: Vec<FunnelRow>) -> Vec<pb::FunnelStage> {
    rows.into_iter()
        .map(|r| pb::FunnelStage {
            index: i32::try_from(r.index).unwrap_or(i32::MAX),
            stage: r.stage,
            reached: r.reached,
            leakage: finite(r.leakage),
        })
        .collect()
}

fn to_bundle(b: Bundle, tz: Tz, currency: &str) -> pb::KpiBundle {
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

/// Runs CPU-bound engine work off the async runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(format!("KPI computation failed: {e}")))?
}

// ---- the requests, validated and computed -----------------------------------
//
// Each request is first parsed without I/O (so a bad request never touches
// the database), then the tenant's settings fix the zone and fiscal year,
// then the tenant's snapshot is fetched and the engine runs on a blocking thread.

/// Settings with the request's time-zone override applied.
fn with_zone(mut settings: TenantSettings, tz: Option<Tz>) -> TenantSettings {
    if let Some(tz) = tz {
        settings.time_zone = tz;
    }
    settings
}

/// A validated GetKpis request.
struct KpisQuery {
    tz: Option<Tz>,
    selection: Selection,
    comparison: ComparisonKind,
    period: RequestedPeriod,
    scope: Scope,
}

impl KpisQuery {
    fn parse(req: &pb::GetKpisRequest) -> Result<Self> {
        Ok(KpisQuery {
            tz: parse_time_zone(&req.time_zone, "time_zone")?,
            selection: parse_kpi_ids(&req.kpi_ids, "kpi_ids", true)?,
            comparison: parse_comparison(req.comparison)?,
            period: parse_period(req.period.as_ref())?,
            scope: parse_scope(req.scope.as_ref())?,
        })
    }

    fn run(
        self,
        period: PeriodRange,
        settings: TenantSettings,
        data: &Snapshot,
    ) -> Result<pb::GetKpisResponse> {
        let (tz, currency) = (settings.time_zone, settings.currency_code.clone());
        let engine = data.engine(settings);
        check_scope(&self.scope, &engine)?;
        let bundle = engine.bundle(
            &self.scope,
            &period,
            &self.selection.kpis,
            self.selection.funnel,
            self.comparison,
        );
        Ok(pb::GetKpisResponse {
            bundle: Some(to_bundle(bundle, tz, &currency)),
        })
    }
}

/// A validated GetKpiSeries request.
struct SeriesQuery {
    tz: Option<Tz>,
    selection: Selection,
    comparison: ComparisonKind,
    first: RequestedPeriod,
    count: usize,
    scope: Scope,
}

impl SeriesQuery {
    fn parse(req: &pb::GetKpiSeriesRequest) -> Result<Self> {
        let tz = parse_time_zone(&req.time_zone, "time_zone")?;
        let selection = parse_kpi_ids(&req.kpi_ids, "kpi_ids", true)?;
        let comparison = parse_comparison(req.comparison)?;
        let granularity = parse_granularity(req.granularity, "granularity")?;
        let date = parse_date(req.first_period_date.as_ref(), "first_period_date")?;
        if !(1..=MAX_SERIES_PERIODS).contains(&req.period_count) {
            return Err(Error::invalid(
                "period_count",
                format!("must be between 1 and {MAX_SERIES_PERIODS}"),
            ));
        }
        Ok(SeriesQuery {
            tz,
            selection,
            comparison,
            first: RequestedPeriod {
                spec: PeriodSpec::Calendar { granularity, date },
                field: "first_period_date",
            },
            count: usize::try_from(req.period_count).unwrap_or(1),
            scope: parse_scope(req.scope.as_ref())?,
        })
    }

    fn run(
        self,
        first: PeriodRange,
        settings: TenantSettings,
        data: &Snapshot,
    ) -> Result<pb::GetKpiSeriesResponse> {
        let (tz, currency) = (settings.time_zone, settings.currency_code.clone());
        let engine = data.engine(settings);
        check_scope(&self.scope, &engine)?;
        let bundles = engine
            .series(
                &self.scope,
                &first,
                self.count,
                &self.selection.kpis,
                self.selection.funnel,
                self.comparison,
            )
            .map_err(|e| period_error("period_count", e))?;
        Ok(pb::GetKpiSeriesResponse {
            bundles: bundles
                .into_iter()
                .map(|b| to_bundle(b, tz, &currency))
                .collect(),
        })
    }
}

/// A validated GetBreakdown request.
struct BreakdownQuery {
    tz: Option<Tz>,
    dimension: Dimension,
    selection: Selection,
    page_size: usize,
    offset: usize,
    period: RequestedPeriod,
    scope: Scope,
}

impl BreakdownQuery {
    fn parse(req: &pb::GetBreakdownRequest, limits: KpiLimits) -> Result<Self> {
        Ok(BreakdownQuery {
            tz: parse_time_zone(&req.time_zone, "time_zone")?,
            dimension: parse_dimension(req.dimension)?,
            selection: parse_kpi_ids(&req.kpi_ids, "kpi_ids", false)?,
            page_size: parse_page_size(req.page_size, limits.max_page_size)?,
            offset: parse_page_token(&req.page_token)?,
            period: parse_period(req.period.as_ref())?,
            scope: parse_scope(req.scope.as_ref())?,
        })
    }

    fn run(
        self,
        period: PeriodRange,
        settings: TenantSettings,
        data: &Snapshot,
    ) -> Result<pb::GetBreakdownResponse> {
        let tz = settings.time_zone;
        let engine = data.engine(settings);
        check_scope(&self.scope, &engine)?;
        let keys = engine.breakdown_keys(&self.scope, &period, self.dimension);
        let page: Vec<_> = keys
            .iter()
            .skip(self.offset)
            .take(self.page_size)
            .cloned()
            .collect();
        let next = self.offset.saturating_add(page.len());
        let rows = engine.breakdown_rows(
            &self.scope,
            &period,
            self.dimension,
            &page,
            &self.selection.kpis,
        );
        Ok(pb::GetBreakdownResponse {
            period: Some(to_period(&period, tz)),
            rows: rows
                .into_iter()
                .map(|r| pb::BreakdownRow {
                    key: r.key,
                    label: r.label,
                    values: r.values.into_iter().map(to_value).collect(),
                })
                .collect(),
            next_page_token: if next < keys.len() {
                page_token(next)
            } else {
                String::new()
            },
        })
    }
}

impl KpiApi {
    /// The tenant's settings with the request's zone, and the period resolved in them.
    async fn settings_and_period(
        &self,
        tenant: &str,
        tz: Option<Tz>,
        period: RequestedPeriod,
    ) -> Result<(TenantSettings, PeriodRange)> {
        let settings = with_zone(self.store.tenant_settings(tenant).await?, tz);
        let period = period.resolve(&settings)?;
        Ok((settings, period))
    }
}

#[tonic::async_trait]
impl KpiService for KpiApi {
    async fn get_kpis(
        &self,
        request: Request<pb::GetKpisRequest>,
    ) -> std::result::Result<Response<pb::GetKpisResponse>, Status> {
        let tenant = tenant_of(&request);
        let query = KpisQuery::parse(request.get_ref())?;
        let (settings, period) = self
            .settings_and_period(&tenant, query.tz, query.period)
            .await?;
        let data = self.snapshots.get(&tenant).await?;
        Ok(Response::new(
            blocking(move || query.run(period, settings, &data.snapshot)).await?,
        ))
    }

    async fn get_kpi_series(
        &self,
        request: Request<pb::GetKpiSeriesRequest>,
    ) -> std::result::Result<Response<pb::GetKpiSeriesResponse>, Status> {
        let tenant = tenant_of(&request);
        let query = SeriesQuery::parse(request.get_ref())?;
        let (settings, first) = self
            .settings_and_period(&tenant, query.tz, query.first)
            .await?;
        let data = self.snapshots.get(&tenant).await?;
        Ok(Response::new(
            blocking(move || query.run(first, settings, &data.snapshot)).await?,
        ))
    }

    async fn get_breakdown(
        &self,
        request: Request<pb::GetBreakdownRequest>,
    ) -> std::result::Result<Response<pb::GetBreakdownResponse>, Status> {
        let tenant = tenant_of(&request);
        let query = BreakdownQuery::parse(request.get_ref(), self.limits)?;
        let (settings, period) = self
            .settings_and_period(&tenant, query.tz, query.period)
            .await?;
        let data = self.snapshots.get(&tenant).await?;
        Ok(Response::new(
            blocking(move || query.run(period, settings, &data.snapshot)).await?,
        ))
    }

    async fn list_kpis(
        &self,
        _request: Request<pb::ListKpisRequest>,
    ) -> std::result::Result<Response<pb::ListKpisResponse>, Status> {
        Ok(Response::new(pb::ListKpisResponse {
            kpis: catalog_proto(),
        }))
    }
}
