//! `kpis`, `series`, `breakdown` and `catalog`: KpiService as tables or JSON.

use std::collections::HashMap;

use clap::{Args, ValueEnum};
use serde_json::{Value, json};

use super::format::{self, Align};
use super::period::{PeriodArg, date_text, parse_period, parse_scope, scope_text};
use super::{Clients, ConnectOptions, status_error};
use crate::proto::v1::{
    Comparison, Dimension, Direction, FunnelStage, GetBreakdownRequest, GetKpiSeriesRequest,
    GetKpisRequest, Granularity, KpiBundle, KpiValue, ResolvedPeriod, Scope,
};

const PERIOD_LONG_HELP: &str = "Period: 2025 (year), 2025-Q1 (quarter), 2025-03 (month), \
2025-W07 (ISO week), 2025-03-15 (day), 2025-03-01..2025-04-15 (local dates, end exclusive), \
FY2025 (the tenant's fiscal year starting in 2025) or FY2025-Q2 (a quarter of it).";

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// An aligned table for people.
    Table,
    /// JSON.
    Json,
    /// CSV with a header row and raw numbers (money in minor units).
    Csv,
}

/// `--format`, or JSON for the `--json` shorthand.
fn output_format(format: Option<OutputFormat>, json: bool) -> OutputFormat {
    match (format, json) {
        (Some(format), _) => format,
        (None, true) => OutputFormat::Json,
        (None, false) => OutputFormat::Table,
    }
}

/// What to compare with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompareArg {
    /// The period of the same length just before.
    Previous,
    /// The same period one year earlier.
    #[value(alias = "previous-year")]
    Year,
}

/// Options of `salesmetrics kpis`.
#[derive(Debug, Args)]
#[command(after_long_help = "Examples:
  salesmetrics kpis --period 2025-03
  salesmetrics kpis --scope team:emea --period 2025-Q1 --compare year
  salesmetrics kpis --scope rep:r1 --period 2025-03-01..2025-04-15 --kpi revenue,win_rate --json

Money is shown in major units of the tenant currency, ratios as percentages,
durations as 3d 4h; an undefined value is shown as — with its reason.")]
pub struct KpisArgs {
    #[command(flatten)]
    pub connect: ConnectOptions,
    /// Whose KPIs: company, team:ID (with its sub-teams) or rep:ID.
    #[arg(long, default_value = "company", value_parser = parse_scope)]
    pub scope: Scope,
    /// The period.
    #[arg(long, value_parser = parse_period, long_help = PERIOD_LONG_HELP)]
    pub period: PeriodArg,
    /// Compare with the previous period or the same period a year earlier.
    #[arg(long, value_enum)]
    pub compare: Option<CompareArg>,
    /// KPI ids, comma-separated (default: all; see `salesmetrics catalog`).
    #[arg(long, value_delimiter = ',')]
    pub kpi: Vec<String>,
    /// IANA time zone overriding the tenant's, e.g. Europe/Berlin.
    #[arg(long)]
    pub time_zone: Option<String>,
    /// Output format.
    #[arg(long, value_enum)]
    pub format: Option<OutputFormat>,
    /// Print JSON (the same as --format json).
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
}

/// Options of `salesmetrics series`.
#[derive(Debug, Args)]
#[command(after_long_help = "Examples:
  salesmetrics series --granularity month --from 2025-01 --count 12 --kpi revenue,orders
  salesmetrics series --scope team:emea --granularity week --from 2025-W01 --count 8 --json

--from takes the period syntax of `kpis --period`; its first day falls in the first period.")]
pub struct SeriesArgs {
    #[command(flatten)]
    pub connect: ConnectOptions,
    /// Whose KPIs: company, team:ID or rep:ID.
    #[arg(long, default_value = "company", value_parser = parse_scope)]
    pub scope: Scope,
    /// Length of each period.
    #[arg(long, value_enum, default_value = "month")]
    pub granularity: GranularityArg,
    /// The first period (any date inside it), e.g. 2025-01 or 2025-03-15.
    #[arg(long, value_parser = parse_period)]
    pub from: PeriodArg,
    /// Number of periods (1-366).
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(i32).range(1..=366))]
    pub count: i32,
    /// KPI ids, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    pub kpi: Vec<String>,
    /// IANA time zone overriding the tenant's.
    #[arg(long)]
    pub time_zone: Option<String>,
    /// Output format.
    #[arg(long, value_enum)]
    pub format: Option<OutputFormat>,
    /// Print JSON (the same as --format json).
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
}

/// Granularity of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GranularityArg {
    /// Days.
    Day,
    /// ISO weeks.
    Week,
    /// Months.
    Month,
    /// Quarters.
    Quarter,
    /// Years.
    Year,
    /// Quarters of the tenant's fiscal year.
    FiscalQuarter,
    /// The tenant's fiscal years.
    FiscalYear,
}

impl GranularityArg {
    fn to_proto(self) -> Granularity {
        match self {
            GranularityArg::Day => Granularity::Day,
            GranularityArg::Week => Granularity::Week,
            GranularityArg::Month => Granularity::Month,
            GranularityArg::Quarter => Granularity::Quarter,
            GranularityArg::Year => Granularity::Year,
            GranularityArg::FiscalQuarter => Granularity::FiscalQuarter,
            GranularityArg::FiscalYear => Granularity::FiscalYear,
        }
    }
}

/// Dimension of a breakdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DimensionArg {
    /// One row per rep.
    Rep,
    /// One row per direct child team (company: root teams).
    Team,
    /// One row per lead source.
    Source,
    /// One row per activity type.
    Activity,
    /// One row per pipeline stage (the funnel).
    Stage,
}

/// KPIs shown per rep or team when `--kpi` is not given (all of them would not fit a terminal).
const DEFAULT_BREAKDOWN_KPIS: &[&str] = &[
    "revenue",
    "orders",
    "bookings",
    "deals_won",
    "win_rate",
    "activities",
];

/// Options of `salesmetrics breakdown`.
#[derive(Debug, Args)]
#[command(after_long_help = "Examples:
  salesmetrics breakdown --period 2025-03 --by rep
  salesmetrics breakdown --scope team:emea --period 2025-Q1 --by team --kpi revenue,win_rate
  salesmetrics breakdown --period 2025 --by stage

By rep or team the default KPIs are revenue, orders, bookings, deals_won,
win_rate and activities; --kpi all asks for every KPI. Source, activity and
stage rows have fixed KPIs.")]
pub struct BreakdownArgs {
    #[command(flatten)]
    pub connect: ConnectOptions,
    /// Whose KPIs: company, team:ID or rep:ID.
    #[arg(long, default_value = "company", value_parser = parse_scope)]
    pub scope: Scope,
    /// The period.
    #[arg(long, value_parser = parse_period, long_help = PERIOD_LONG_HELP)]
    pub period: PeriodArg,
    /// What to break down by.
    #[arg(long, value_enum)]
    pub by: DimensionArg,
    /// KPI ids for rep and team rows, comma-separated, or `all`.
    #[arg(long, value_delimiter = ',')]
    pub kpi: Vec<String>,
    /// The KPI rows are sorted by, highest first (default: the first KPI;
    /// stages keep pipeline order); rows with the same value, or none, follow
    /// in natural key order (r2 before r10).
    #[arg(long, value_name = "KPI")]
    pub sort: Option<String>,
    /// IANA time zone overriding the tenant's.
    #[arg(long)]
    pub time_zone: Option<String>,
    /// Output format.
    #[arg(long, value_enum)]
    pub format: Option<OutputFormat>,
    /// Print JSON (the same as --format json).
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
}

/// Compares keys in natural order: runs of digits by their number, so
/// `r2 < r10`; otherwise byte by byte.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (na, nb) = (&a[..da], &b[..db]);
                // Without leading zeros, a longer run is a larger number.
                let trim = |n: &[u8]| -> usize { n.iter().take_while(|c| **c == b'0').count() };
                let (ta, tb) = (&na[trim(na)..], &nb[trim(nb)..]);
                let order = ta
                    .len()
                    .cmp(&tb.len())
                    .then_with(|| ta.cmp(tb))
                    .then(da.cmp(&db));
                if order != Ordering::Equal {
                    return order;
                }
                a = &a[da..];
                b = &b[db..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

/// Sorts breakdown rows by `kpi` (highest first, undefined last), then by
/// key in natural order.
pub fn sort_rows(rows: &mut [crate::proto::v1::BreakdownRow], kpi: &str) {
    let value = |r: &crate::proto::v1::BreakdownRow| {
        r.values
            .iter()
            .find(|v| v.kpi_id == kpi)
            .and_then(|v| v.value)
    };
    rows.sort_by(|a, b| {
        let order = match (value(a), value(b)) {
            (Some(x), Some(y)) => y.total_cmp(&x),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        };
        order.then_with(|| natural_cmp(&a.key, &b.key))
    });
}

/// Options of `salesmetrics catalog`.
#[derive(Debug, Args)]
#[command(after_long_help = "Examples:
  salesmetrics catalog
  salesmetrics catalog --json | jq -r '.[] | select(.unit == \"ratio\") | .id'

The ids are what --kpi takes in kpis, series and breakdown. In the table,
the good column says whether higher (↑) or lower (↓) values are better.
The catalog is built into the binary: no server is needed.")]
pub struct CatalogArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The `--kpi` ids (`all` or none: every KPI), each checked against the
/// compiled-in catalog.
fn kpi_ids(kpi: &[String]) -> anyhow::Result<Vec<String>> {
    let ids: Vec<String> = kpi
        .iter()
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty() && k != "all")
        .collect();
    for id in &ids {
        check_kpi_id(id)?;
    }
    Ok(ids)
}

/// An error for an id that is not in the catalog, with the closest id.
fn check_kpi_id(id: &str) -> anyhow::Result<()> {
    let catalog = crate::api::convert::kpi::catalog_proto();
    if catalog.iter().any(|k| k.id == id) {
        return Ok(());
    }
    anyhow::bail!(
        "unknown KPI id {id:?}{} (see `salesmetrics catalog`)",
        super::did_you_mean(id, catalog.iter().map(|k| k.id.as_str()))
    )
}

/// Puts `values` into the order of `ids` (the `--kpi` order); the server
/// answers in catalog order.
fn order_values(values: &mut [KpiValue], ids: &[String]) {
    let position = |v: &KpiValue| {
        ids.iter()
            .position(|id| *id == v.kpi_id)
            .unwrap_or(ids.len())
    };
    values.sort_by_key(position);
}

/// Runs `salesmetrics kpis`.
pub async fn kpis(args: KpisArgs) -> anyhow::Result<()> {
    let format = output_format(args.format, args.json);
    let mut clients = args.connect.connect().await?;
    let comparison = match args.compare {
        None => Comparison::None,
        Some(CompareArg::Previous) => Comparison::PreviousPeriod,
        Some(CompareArg::Year) => Comparison::PreviousYear,
    };
    let ids = kpi_ids(&args.kpi)?;
    let mut bundle = fetch_kpis(
        &mut clients,
        args.scope,
        args.period,
        ids.clone(),
        comparison,
        args.time_zone,
    )
    .await?;
    order_values(&mut bundle.values, &ids);
    match format {
        OutputFormat::Json => {
            println!("{}", serde_json::to_string_pretty(&bundle_json(&bundle))?)
        }
        OutputFormat::Csv => print!("{}", bundle_csv(&bundle)?),
        OutputFormat::Table => print!(
            "{}",
            bundle_text(&bundle, &directions(), format::use_colour())
        ),
    }
    Ok(())
}

/// Which direction is good for each KPI, from the compiled-in catalog.
fn directions() -> HashMap<String, Direction> {
    crate::api::convert::kpi::catalog_proto()
        .into_iter()
        .map(|k| {
            let direction = Direction::try_from(k.direction).unwrap_or(Direction::Unspecified);
            (k.id, direction)
        })
        .collect()
}

fn opt<T: ToString>(x: Option<T>) -> String {
    x.map(|x| x.to_string()).unwrap_or_default()
}

/// The raw number of a value: exact when whole (money in minor units), else
/// the double; empty when undefined.
fn raw(v: &KpiValue) -> String {
    match (v.value, v.exact_value) {
        (Some(_), Some(exact)) => exact.to_string(),
        (value, _) => opt(value),
    }
}

fn csv_text(header: &[String], rows: &[Vec<String>]) -> anyhow::Result<String> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(header)?;
    for row in rows {
        writer.write_record(row)?;
    }
    Ok(String::from_utf8(writer.into_inner()?)?)
}

/// A bundle as CSV: one row per KPI, raw numbers (money in minor units of the
/// `currency` column).
pub fn bundle_csv(bundle: &KpiBundle) -> anyhow::Result<String> {
    let header: Vec<String> = [
        "kpi",
        "unit",
        "value",
        "currency",
        "undefined_reason",
        "comparison_value",
        "relative_change",
        "absolute_change",
    ]
    .map(String::from)
    .to_vec();
    let rows: Vec<Vec<String>> = bundle
        .values
        .iter()
        .map(|v| {
            vec![
                v.kpi_id.clone(),
                unit_name(v.unit),
                raw(v),
                bundle.currency_code.clone(),
                v.undefined_reason.clone(),
                opt(v.comparison_value),
                opt(v.relative_change),
                opt(v.absolute_change),
            ]
        })
        .collect();
    csv_text(&header, &rows)
}

/// The first local date of `period`. A fiscal period is resolved by the
/// server (it knows the tenant's fiscal year), with a one-KPI GetKpis call.
async fn first_date(
    clients: &mut Clients,
    period: PeriodArg,
    time_zone: Option<String>,
) -> anyhow::Result<crate::proto::v1::Date> {
    match period {
        PeriodArg::Calendar { start, .. } | PeriodArg::Custom { start, .. } => {
            Ok(crate::api::convert::time::date_to_proto(start))
        }
        PeriodArg::Fiscal { .. } => {
            let ids = vec!["orders".to_string()];
            let bundle = fetch_kpis(
                clients,
                Scope::default(),
                period,
                ids,
                Comparison::None,
                time_zone,
            )
            .await?;
            bundle
                .period
                .and_then(|p| p.start_date)
                .ok_or_else(|| anyhow::anyhow!("the server returned no period"))
        }
    }
}

/// Calls GetKpis.
pub async fn fetch_kpis(
    clients: &mut Clients,
    scope: Scope,
    period: PeriodArg,
    kpi_ids: Vec<String>,
    comparison: Comparison,
    time_zone: Option<String>,
) -> anyhow::Result<KpiBundle> {
    let response = clients
        .kpi
        .get_kpis(GetKpisRequest {
            scope: Some(scope),
            period: Some(period.to_proto()),
            kpi_ids,
            comparison: comparison as i32,
            time_zone: time_zone.unwrap_or_default(),
        })
        .await
        .map_err(|status| status_error("GetKpis", status))?
        .into_inner();
    response
        .bundle
        .ok_or_else(|| anyhow::anyhow!("the server returned no KPI bundle"))
}

/// A resolved period for people.
fn period_text(period: Option<&ResolvedPeriod>) -> String {
    super::period::period_text(period, " .. ", "")
}

/// A bundle as a readable table; `directions` (by KPI id) judge the changes,
/// coloured when `colour`.
pub fn bundle_text(
    bundle: &KpiBundle,
    directions: &HashMap<String, Direction>,
    colour: bool,
) -> String {
    let mut out = format!(
        "Scope {}   period {}",
        scope_text(bundle.scope.as_ref()),
        period_text(bundle.period.as_ref())
    );
    let comparing = bundle.comparison_period.is_some();
    if comparing {
        out.push_str(&format!(
            "   compared with {}",
            period_text(bundle.comparison_period.as_ref())
        ));
    }
    out.push_str("\n\n");
    let currency = &bundle.currency_code;
    let mut notes = Vec::with_capacity(bundle.values.len());
    let rows: Vec<Vec<String>> = bundle
        .values
        .iter()
        .map(|v| {
            // Undefined values show as "—" with the reason after the row, so a
            // long reason does not widen the columns.
            let mut note = Vec::new();
            let value = match v.value {
                Some(_) => format::kpi_value(v, currency),
                None => {
                    note.push(v.undefined_reason.clone());
                    "—".to_string()
                }
            };
            let mut row = vec![v.kpi_id.clone(), value];
            if comparing {
                let comparison = match v.comparison_value {
                    Some(_) => format::comparison_value(v, currency),
                    None => {
                        if !v.comparison_undefined_reason.is_empty()
                            && v.comparison_undefined_reason != v.undefined_reason
                        {
                            note.push(format!("comparison: {}", v.comparison_undefined_reason));
                        }
                        "—".to_string()
                    }
                };
                row.push(comparison);
                let direction = directions
                    .get(&v.kpi_id)
                    .copied()
                    .unwrap_or(Direction::Unspecified);
                row.push(format::kpi_change(v, direction, colour));
            }
            note.retain(|n| !n.is_empty());
            notes.push(if note.is_empty() {
                String::new()
            } else {
                format!("({})", note.join("; "))
            });
            row
        })
        .collect();
    if comparing {
        out.push_str(&format::table_with_notes(
            &["KPI", "value", "comparison", "change"],
            &[Align::Left, Align::Right, Align::Right, Align::Right],
            &rows,
            &notes,
        ));
    } else {
        out.push_str(&format::table_with_notes(
            &["KPI", "value"],
            &[Align::Left, Align::Right],
            &rows,
            &notes,
        ));
    }
    if !bundle.funnel.is_empty() {
        out.push_str("\nFunnel of the deals created in the period\n");
        out.push_str(&funnel_text(&bundle.funnel));
    }
    out
}

fn funnel_text(funnel: &[FunnelStage]) -> String {
    let rows: Vec<Vec<String>> = funnel
        .iter()
        .map(|s| {
            vec![
                s.stage.clone(),
                format::integer(s.reached),
                s.leakage.map(format::percent).unwrap_or_default(),
            ]
        })
        .collect();
    format::table(
        &["stage", "reached", "leakage"],
        &[Align::Left, Align::Right, Align::Right],
        &rows,
    )
}

fn unit_name(unit: i32) -> String {
    crate::proto::v1::Unit::try_from(unit)
        .map(|u| {
            u.as_str_name()
                .trim_start_matches("UNIT_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| unit.to_string())
}

fn period_json(period: Option<&ResolvedPeriod>) -> Value {
    match period {
        Some(p) => json!({
            "start_date": date_text(p.start_date.as_ref()),
            "end_date": date_text(p.end_date.as_ref()),
            "start": p.start.as_ref().map(super::records::instant_text),
            "end": p.end.as_ref().map(super::records::instant_text),
            "time_zone": p.time_zone,
        }),
        None => Value::Null,
    }
}

/// A KPI value as JSON (absent numbers are `null`).
pub fn value_json(v: &KpiValue) -> Value {
    json!({
        "id": v.kpi_id,
        "unit": unit_name(v.unit),
        "value": v.value,
        "exact_value": v.exact_value,
        "undefined_reason": (!v.undefined_reason.is_empty()).then_some(&v.undefined_reason),
        "numerator": v.numerator,
        "denominator": v.denominator,
        "comparison_value": v.comparison_value,
        "comparison_undefined_reason": (!v.comparison_undefined_reason.is_empty()).then_some(&v.comparison_undefined_reason),
        "relative_change": v.relative_change,
        "absolute_change": v.absolute_change,
    })
}

/// A bundle as JSON.
pub fn bundle_json(bundle: &KpiBundle) -> Value {
    json!({
        "scope": scope_text(bundle.scope.as_ref()),
        "period": period_json(bundle.period.as_ref()),
        "comparison_period": period_json(bundle.comparison_period.as_ref()),
        "currency": bundle.currency_code,
        "values": bundle.values.iter().map(value_json).collect::<Vec<_>>(),
        "funnel": bundle.funnel.iter().map(|s| json!({
            "index": s.index, "stage": s.stage, "reached": s.reached, "leakage": s.leakage,
        })).collect::<Vec<_>>(),
    })
}

/// Runs `salesmetrics series`.
pub async fn series(args: SeriesArgs) -> anyhow::Result<()> {
    let format = output_format(args.format, args.json);
    let mut clients = args.connect.connect().await?;
    let first_period_date = first_date(&mut clients, args.from, args.time_zone.clone()).await?;
    let ids = kpi_ids(&args.kpi)?;
    let response = clients
        .kpi
        .get_kpi_series(GetKpiSeriesRequest {
            scope: Some(args.scope),
            granularity: args.granularity.to_proto() as i32,
            first_period_date: Some(first_period_date),
            period_count: args.count,
            kpi_ids: ids.clone(),
            comparison: Comparison::None as i32,
            time_zone: args.time_zone.unwrap_or_default(),
        })
        .await
        .map_err(|status| status_error("GetKpiSeries", status))?
        .into_inner();
    let mut bundles = response.bundles;
    for bundle in &mut bundles {
        order_values(&mut bundle.values, &ids);
    }
    match format {
        OutputFormat::Json => {
            let periods: Vec<Value> = bundles.iter().map(bundle_json).collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({ "periods": periods }))?
            );
        }
        OutputFormat::Csv => print!("{}", series_csv(&bundles)?),
        OutputFormat::Table => print!("{}", series_text(&bundles)),
    }
    Ok(())
}

/// KPI ids of a series, in the order of its first bundle.
fn series_kpis(bundles: &[KpiBundle]) -> Vec<String> {
    bundles
        .first()
        .map(|b| b.values.iter().map(|v| v.kpi_id.clone()).collect())
        .unwrap_or_default()
}

fn value_of<'a>(bundle: &'a KpiBundle, id: &str) -> Option<&'a KpiValue> {
    bundle.values.iter().find(|v| v.kpi_id == id)
}

/// A series as CSV: one row per period, one column per KPI, raw numbers.
pub fn series_csv(bundles: &[KpiBundle]) -> anyhow::Result<String> {
    let ids = series_kpis(bundles);
    let mut header: Vec<String> = vec!["start_date".into(), "end_date".into()];
    header.extend(ids.iter().cloned());
    let rows: Vec<Vec<String>> = bundles
        .iter()
        .map(|b| {
            let period = b.period.as_ref();
            let mut row = vec![
                date_text(period.and_then(|p| p.start_date.as_ref())),
                date_text(period.and_then(|p| p.end_date.as_ref())),
            ];
            row.extend(
                ids.iter()
                    .map(|id| value_of(b, id).map(raw).unwrap_or_default()),
            );
            row
        })
        .collect();
    csv_text(&header, &rows)
}

/// A series as a table: one row per period, one column per KPI, then a
/// sparkline per KPI.
pub fn series_text(bundles: &[KpiBundle]) -> String {
    let (Some(first), Some(last)) = (bundles.first(), bundles.last()) else {
        return "no periods\n".to_string();
    };
    let mut out = format!(
        "Scope {}   {} periods from {} to {}\n\n",
        scope_text(first.scope.as_ref()),
        bundles.len(),
        date_text(first.period.as_ref().and_then(|p| p.start_date.as_ref())),
        date_text(last.period.as_ref().and_then(|p| p.end_date.as_ref())),
    );
    let ids = series_kpis(bundles);
    let mut header: Vec<&str> = vec!["period"];
    header.extend(ids.iter().map(String::as_str));
    let rows: Vec<Vec<String>> = bundles
        .iter()
        .map(|b| {
            let mut row = vec![date_text(
                b.period.as_ref().and_then(|p| p.start_date.as_ref()),
            )];
            row.extend(ids.iter().map(|id| {
                value_of(b, id)
                    .map(|v| short_value(v, &b.currency_code))
                    .unwrap_or_else(|| "—".to_string())
            }));
            row
        })
        .collect();
    let mut align = vec![Align::Left];
    align.resize(header.len(), Align::Right);
    out.push_str(&format::table(&header, &align, &rows));
    if bundles.len() > 1 {
        out.push('\n');
        let width = ids.iter().map(|id| id.chars().count()).max().unwrap_or(0);
        for id in &ids {
            let values: Vec<Option<f64>> = bundles
                .iter()
                .map(|b| value_of(b, id).and_then(|v| v.value))
                .collect();
            out.push_str(&format!("{id:<width$}  {}\n", format::sparkline(&values)));
        }
    }
    out
}

/// A value for a table cell: undefined is a bare "—" (reasons would not fit).
fn short_value(v: &KpiValue, currency: &str) -> String {
    match v.value {
        Some(x) => format::kpi_number(&v.kpi_id, v.unit, x, v.exact_value, currency),
        None => "—".to_string(),
    }
}

/// Runs `salesmetrics breakdown`, following every page.
pub async fn breakdown(args: BreakdownArgs) -> anyhow::Result<()> {
    let mut clients = args.connect.connect().await?;
    let dimension = match args.by {
        DimensionArg::Rep => Dimension::Rep,
        DimensionArg::Team => Dimension::Team,
        DimensionArg::Source => Dimension::LeadSource,
        DimensionArg::Activity => Dimension::ActivityType,
        DimensionArg::Stage => Dimension::Stage,
    };
    let kpis = if args.kpi.is_empty() && matches!(args.by, DimensionArg::Rep | DimensionArg::Team) {
        DEFAULT_BREAKDOWN_KPIS
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        kpi_ids(&args.kpi)?
    };
    if let Some(sort) = &args.sort {
        check_kpi_id(sort).map_err(|e| anyhow::anyhow!("--sort: {e}"))?;
    }
    let mut rows = Vec::new();
    let mut period = None;
    let mut currency: String;
    let mut page_token = String::new();
    loop {
        let response = clients
            .kpi
            .get_breakdown(GetBreakdownRequest {
                scope: Some(args.scope.clone()),
                period: Some(args.period.to_proto()),
                dimension: dimension as i32,
                kpi_ids: kpis.clone(),
                time_zone: args.time_zone.clone().unwrap_or_default(),
                page_size: 1000,
                page_token: page_token.clone(),
            })
            .await
            .map_err(|status| status_error("GetBreakdown", status))?
            .into_inner();
        period = period.or(response.period);
        currency = response.currency_code;
        rows.extend(response.rows.into_iter().map(|mut row| {
            order_values(&mut row.values, &kpis);
            row
        }));
        if response.next_page_token.is_empty() {
            break;
        }
        page_token = response.next_page_token;
    }
    // Stages keep their pipeline order unless a sort is asked for.
    let default_sort = (args.by != DimensionArg::Stage)
        .then(|| {
            rows.first()
                .and_then(|r| r.values.first())
                .map(|v| v.kpi_id.clone())
        })
        .flatten();
    let sort_by = args.sort.clone().or(default_sort);
    if let Some(kpi) = &sort_by {
        if !rows.is_empty() && !rows[0].values.iter().any(|v| &v.kpi_id == kpi) {
            anyhow::bail!("--sort {kpi:?}: not a KPI of these rows");
        }
        sort_rows(&mut rows, kpi);
    }
    let format = output_format(args.format, args.json);
    if format == OutputFormat::Csv {
        let ids: Vec<String> = rows
            .first()
            .map(|r| r.values.iter().map(|v| v.kpi_id.clone()).collect())
            .unwrap_or_default();
        let mut header: Vec<String> = vec!["key".into(), "label".into()];
        header.extend(ids.iter().cloned());
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                let mut row = vec![r.key.clone(), r.label.clone()];
                row.extend(ids.iter().map(|id| {
                    r.values
                        .iter()
                        .find(|v| &v.kpi_id == id)
                        .map(raw)
                        .unwrap_or_default()
                }));
                row
            })
            .collect();
        print!("{}", csv_text(&header, &table)?);
        return Ok(());
    }
    if format == OutputFormat::Json {
        let rows: Vec<Value> = rows
            .iter()
            .map(|r| json!({ "key": r.key, "label": r.label, "values": r.values.iter().map(value_json).collect::<Vec<_>>() }))
            .collect();
        let out = json!({ "scope": scope_text(Some(&args.scope)), "period": period_json(period.as_ref()), "currency": currency, "rows": rows });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "Scope {}   period {}\n",
        scope_text(Some(&args.scope)),
        period_text(period.as_ref())
    );
    if rows.is_empty() {
        println!("no rows");
        return Ok(());
    }
    // Labels add nothing when they repeat the keys (sources, activity types, stages).
    let show_label = rows.iter().any(|r| !r.label.is_empty() && r.label != r.key);
    let mut header: Vec<String> = vec!["key".into()];
    if show_label {
        header.push("label".into());
    }
    header.extend(rows[0].values.iter().map(|v| v.kpi_id.clone()));
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut row = vec![r.key.clone()];
            if show_label {
                row.push(r.label.clone());
            }
            row.extend(r.values.iter().map(|v| short_value(v, &currency)));
            row
        })
        .collect();
    let header_refs: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut align = vec![Align::Left; if show_label { 2 } else { 1 }];
    align.resize(header.len(), Align::Right);
    print!("{}", format::table(&header_refs, &align, &table_rows));
    Ok(())
}

/// Runs `salesmetrics catalog` (offline: the catalog is compiled in).
pub async fn catalog(args: CatalogArgs) -> anyhow::Result<()> {
    let kpis = crate::api::convert::kpi::catalog_proto();
    let short = |name: &str, prefix: &str| name.trim_start_matches(prefix).to_ascii_lowercase();
    if args.json {
        let out: Vec<Value> = kpis
            .iter()
            .map(|k| {
                json!({
                    "id": k.id,
                    "name": k.name,
                    "category": crate::proto::v1::KpiCategory::try_from(k.category).map(|c| short(c.as_str_name(), "KPI_CATEGORY_")).unwrap_or_default(),
                    "unit": unit_name(k.unit),
                    "formula": k.formula,
                    "direction": crate::proto::v1::Direction::try_from(k.direction).map(|d| short(d.as_str_name(), "DIRECTION_")).unwrap_or_default(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = kpis
        .iter()
        .map(|k| {
            let direction = match crate::proto::v1::Direction::try_from(k.direction) {
                Ok(crate::proto::v1::Direction::HigherIsBetter) => "↑",
                Ok(crate::proto::v1::Direction::LowerIsBetter) => "↓",
                _ => "",
            };
            vec![
                k.id.clone(),
                k.name.clone(),
                unit_name(k.unit),
                direction.to_string(),
                k.formula.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        format::table(
            &["id", "name", "unit", "good", "formula"],
            &[Align::Left; 5],
            &rows
        )
    );
    Ok(())
}
