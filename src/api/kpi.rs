//! `KpiService`: converts requests into a scope, a period and KPI ids, reads
//! the tenant's settings from the [`Store`] and its records from the
//! [`SnapshotCache`], runs the pure [`Engine`] (on a blocking thread: it is
//! CPU work) and converts the result. `WatchKpis` sends the `GetKpis`
//! answer again whenever the tenant's data changes ([`crate::api::watch`]).

use std::sync::Arc;

use chrono_tz::Tz;
use tonic::{Request, Response, Status};

use crate::api::convert::kpi::{
    RequestedPeriod, Selection, catalog_proto, page_token, parse_comparison, parse_date,
    parse_dimension, parse_granularity, parse_kpi_ids, parse_page_size, parse_page_token,
    parse_period, parse_scope, parse_time_zone, period_error, to_bundle, to_period, to_value,
};
use crate::api::watch::{self, WatchStart, Watches};
use crate::auth::{ApiKeyId, tenant_of};
use crate::domain::period::{PeriodRange, PeriodSpec};
use crate::domain::{Scope, TenantSettings};
use crate::error::{Error, Result, quote};
use crate::kpi::{ComparisonKind, Dimension, Engine};
use crate::metrics::Metrics;
use crate::proto::v1 as pb;
use crate::proto::v1::kpi_service_server::KpiService;
use crate::snapshot::{CacheLimits, Snapshot, SnapshotCache};
use crate::store::Store;

/// Smallest and largest `GetKpiSeries.period_count`.
pub const MAX_SERIES_PERIODS: i32 = 366;
/// Default of the largest breakdown page (`--max-page-size`).
pub const MAX_PAGE_SIZE: usize = 1000;

/// Default number of tenants whose snapshots are kept (`--kpi-cache-tenants`).
pub const CACHED_TENANTS: usize = 16;

/// Limits and caching of the KPI queries.
#[derive(Debug, Clone, Copy)]
pub struct KpiLimits {
    /// Largest breakdown page; larger `page_size` requests are clamped.
    pub max_page_size: usize,
    /// How many tenants' snapshots, and how many bytes of them, are kept
    /// in memory.
    pub cache: CacheLimits,
}

impl Default for KpiLimits {
    fn default() -> Self {
        KpiLimits {
            max_page_size: MAX_PAGE_SIZE,
            cache: CacheLimits {
                tenants: CACHED_TENANTS,
                bytes: 0,
            },
        }
    }
}

/// The KpiService handlers.
#[derive(Clone)]
pub struct KpiApi {
    store: Arc<dyn Store>,
    snapshots: Arc<SnapshotCache>,
    limits: KpiLimits,
    /// The open `WatchKpis` streams.
    watches: Arc<Watches>,
}

impl KpiApi {
    /// Handlers reading from `store` within `limits`, counting snapshot refreshes into `metrics`.
    pub fn new(store: Arc<dyn Store>, limits: KpiLimits, metrics: Arc<Metrics>) -> Self {
        let snapshots = Arc::new(SnapshotCache::with_limits(
            store.clone(),
            limits.cache,
            metrics,
        ));
        KpiApi {
            store,
            snapshots,
            limits,
            watches: Watches::new(
                watch::WatchLimits::default(),
                tokio::sync::watch::channel(false).1,
            ),
        }
    }

    /// Starts loading the snapshots of up to `count` tenants in the
    /// background, the most written ones (see [`SnapshotCache::warm`]).
    pub fn warm_in_background(&self, count: usize) {
        if count == 0 {
            return;
        }
        let snapshots = self.snapshots.clone();
        tokio::spawn(async move {
            if let Err(err) = snapshots.warm(count).await {
                tracing::warn!(error = %err, "could not list the tenants to warm");
            }
        });
    }

    /// These handlers with `watches` (its limits, and the server's shutdown
    /// signal that ends every watch).
    pub fn with_watches(mut self, watches: Arc<Watches>) -> Self {
        self.watches = watches;
        self
    }
}

/// NOT_FOUND for a team not in the tenant's data, or a rep that has no Rep
/// record and is not named by any membership or record. The message names
/// the closest team (or rep) id of the same tenant when one is close: the
/// candidates come from this tenant's snapshot only.
fn check_scope(scope: &Scope, engine: &Engine, data: &Snapshot) -> Result<()> {
    use crate::suggest::closest;
    let records = data.organisation();
    let hint = |close: Option<&str>| {
        close
            .map(|c| format!("; did you mean {}?", quote(c)))
            .unwrap_or_default()
    };
    match scope {
        Scope::Team(id) if !engine.team_exists(id) => {
            let close = closest(id, records.teams.iter().map(|t| t.id.as_str()));
            Err(Error::NotFound(format!(
                "team {} not found{}",
                quote(id),
                hint(close)
            )))
        }
        Scope::Rep(id) if !engine.rep_exists(id) => {
            let reps = records.reps.iter().map(|r| r.id.as_str());
            let members = records.team_memberships.iter().map(|m| m.rep_id.as_str());
            let close = closest(id, reps.chain(members));
            Err(Error::NotFound(format!(
                "rep {} not found{}",
                quote(id),
                hint(close)
            )))
        }
        _ => Ok(()),
    }
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
        check_scope(&self.scope, &engine, data)?;
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
        check_scope(&self.scope, &engine, data)?;
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
        let (tz, currency_code) = (settings.time_zone, settings.currency_code.clone());
        let engine = data.engine(settings);
        check_scope(&self.scope, &engine, data)?;
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
            currency_code,
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

    /// The GetKpis answer for `tenant`, and the data version it reflects.
    async fn kpis(
        &self,
        tenant: &str,
        request: &pb::GetKpisRequest,
    ) -> Result<(pb::GetKpisResponse, i64)> {
        let query = KpisQuery::parse(request)?;
        let (settings, period) = self
            .settings_and_period(tenant, query.tz, query.period)
            .await?;
        let data = self.snapshots.get(tenant).await?;
        let version = data.version;
        let response = blocking(move || query.run(period, settings, &data.snapshot)).await?;
        Ok((response, version))
    }
}

#[tonic::async_trait]
impl KpiService for KpiApi {
    async fn get_kpis(
        &self,
        request: Request<pb::GetKpisRequest>,
    ) -> std::result::Result<Response<pb::GetKpisResponse>, Status> {
        let tenant = tenant_of(&request);
        Ok(Response::new(
            self.kpis(&tenant, request.get_ref()).await?.0,
        ))
    }

    type WatchKpisStream = watch::WatchStream;

    async fn watch_kpis(
        &self,
        request: Request<pb::WatchKpisRequest>,
    ) -> std::result::Result<Response<Self::WatchKpisStream>, Status> {
        let tenant = tenant_of(&request);
        let key = request.extensions().get::<ApiKeyId>().cloned();
        let request = request.into_inner();
        let min_interval = watch::parse_min_interval(request.min_interval.as_ref())?;
        let query = request.request.unwrap_or_default();
        let first = self
            .kpis(&tenant, &query)
            .await
            .map_err(|err| watch::within("request", err))?;
        let api = self.clone();
        let watched = tenant.clone();
        let compute: watch::Compute = Box::new(move || {
            let (api, tenant, query) = (api.clone(), watched.clone(), query.clone());
            Box::pin(async move { api.kpis(&tenant, &query).await })
        });
        let stream = watch::start(
            &self.watches,
            self.store.clone(),
            WatchStart {
                tenant,
                key,
                min_interval,
                first,
                compute,
            },
        )?;
        Ok(Response::new(stream))
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

    async fn get_settings(
        &self,
        request: Request<pb::GetSettingsRequest>,
    ) -> std::result::Result<Response<pb::GetSettingsResponse>, Status> {
        let tenant = tenant_of(&request);
        let settings = crate::api::admin::own_settings(self.store.as_ref(), tenant).await?;
        Ok(Response::new(settings))
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
