//! `salesmetrics report`: one period's KPIs as a self-contained HTML file
//! (inline CSS and SVG, no scripts) with the dashboard's sections: KPI tiles
//! by category (value, change, formula, numerator, denominator, a 12-period
//! sparkline), revenue vs target, the MRR waterfall, the funnel and a
//! breakdown by rep. It prints on A4 as it shows on screen.

mod svg;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use chrono::{Months, NaiveDate};
use clap::Args;

use super::format;
use super::kpis::{CompareArg, fetch_kpis};
use super::period::{PeriodArg, date_text, parse_period, parse_scope, scope_text};
use super::{ConnectOptions, status_error};
use crate::api::convert::time::{date_from_proto, date_to_proto};
use crate::proto::v1::{
    BreakdownRow, Comparison, Dimension, Direction, GetBreakdownRequest, GetKpiSeriesRequest,
    Granularity, KpiBundle, KpiCategory, KpiDefinition, KpiValue, ListKpisRequest, ResolvedPeriod,
    Scope, Unit,
};
use svg::escape;

/// Periods in each sparkline and in the revenue vs target chart.
const SERIES_PERIODS: u32 = 12;

/// KPIs of the breakdown table.
const BREAKDOWN_KPIS: [&str; 6] = [
    "revenue",
    "bookings",
    "deals_won",
    "win_rate",
    "revenue_target_attainment",
    "activities",
];

/// Options of `salesmetrics report`.
#[derive(Debug, Args)]
#[command(after_long_help = "Examples:
  salesmetrics report --period 2025-03 --output report.html
  salesmetrics report --period 2025-Q1 --scope team:emea --compare previous-year --output emea-q1.html

The file needs nothing else to show: styles and charts are inline and it has
no scripts, so it can be mailed, archived or printed to PDF from a browser.
Money is shown in major units of the tenant currency, ratios as percentages
and their changes in percentage points; an undefined value is shown as — with
its reason.")]
pub struct ReportArgs {
    #[command(flatten)]
    pub connect: ConnectOptions,
    /// Whose KPIs: company, team:ID (with its sub-teams) or rep:ID.
    #[arg(long, default_value = "company", value_parser = parse_scope)]
    pub scope: Scope,
    /// The period, in the syntax of `salesmetrics kpis --period` (2025-03, 2025-Q1, 2025, FY2025…).
    #[arg(long, value_parser = parse_period)]
    pub period: PeriodArg,
    /// Compare with the previous period or the same period a year earlier.
    #[arg(long, value_enum, default_value = "previous")]
    pub compare: CompareArg,
    /// IANA time zone overriding the tenant's, e.g. Europe/Berlin.
    #[arg(long)]
    pub time_zone: Option<String>,
    /// The HTML file to write.
    #[arg(long, short)]
    pub output: PathBuf,
}

/// What a report shows.
pub struct ReportData {
    /// The KPI catalog.
    pub catalog: Vec<KpiDefinition>,
    /// The period's bundle, with its comparison.
    pub bundle: KpiBundle,
    /// The last periods up to and including the report's, oldest first.
    pub series: Vec<KpiBundle>,
    /// Breakdown rows by rep.
    pub reps: Vec<BreakdownRow>,
}

/// Runs `salesmetrics report`.
pub async fn run(args: ReportArgs) -> anyhow::Result<()> {
    let mut clients = args.connect.connect().await?;
    let catalog = clients
        .kpi
        .list_kpis(ListKpisRequest {})
        .await
        .map_err(|status| status_error("ListKpis", status))?
        .into_inner()
        .kpis;
    let comparison = match args.compare {
        CompareArg::Previous => Comparison::PreviousPeriod,
        CompareArg::Year => Comparison::PreviousYear,
    };
    let bundle = fetch_kpis(
        &mut clients,
        args.scope.clone(),
        args.period,
        Vec::new(),
        comparison,
        args.time_zone.clone(),
    )
    .await?;
    // The series ends with the report's period (a custom range: its month).
    let granularity = match args.period {
        PeriodArg::Calendar { granularity, .. } => granularity,
        PeriodArg::Fiscal {
            quarter: Some(_), ..
        } => Granularity::FiscalQuarter,
        PeriodArg::Fiscal { quarter: None, .. } => Granularity::FiscalYear,
        PeriodArg::Custom { .. } => Granularity::Month,
    };
    let start = bundle
        .period
        .as_ref()
        .and_then(|p| p.start_date.as_ref())
        .and_then(|d| date_from_proto(d).ok())
        .ok_or_else(|| anyhow::anyhow!("the server returned no period"))?;
    let series = clients
        .kpi
        .get_kpi_series(GetKpiSeriesRequest {
            scope: Some(args.scope.clone()),
            granularity: granularity as i32,
            first_period_date: Some(date_to_proto(periods_before(
                start,
                granularity,
                SERIES_PERIODS - 1,
            ))),
            period_count: SERIES_PERIODS as i32,
            kpi_ids: Vec::new(),
            comparison: Comparison::None as i32,
            time_zone: args.time_zone.clone().unwrap_or_default(),
        })
        .await
        .map_err(|status| status_error("GetKpiSeries", status))?
        .into_inner()
        .bundles;
    let mut reps = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = clients
            .kpi
            .get_breakdown(GetBreakdownRequest {
                scope: Some(args.scope.clone()),
                period: bundle.period.as_ref().map(period_of),
                dimension: Dimension::Rep as i32,
                kpi_ids: BREAKDOWN_KPIS.iter().map(|s| s.to_string()).collect(),
                time_zone: args.time_zone.clone().unwrap_or_default(),
                page_size: 1000,
                page_token: page_token.clone(),
            })
            .await
            .map_err(|status| status_error("GetBreakdown", status))?
            .into_inner();
        reps.extend(page.rows);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let html = render(&ReportData {
        catalog,
        bundle,
        series,
        reps,
    });
    std::fs::write(&args.output, &html)
        .map_err(|err| anyhow::anyhow!("cannot write {}: {err}", args.output.display()))?;
    eprintln!("wrote {} ({} bytes)", args.output.display(), html.len());
    Ok(())
}

/// The resolved period as a request's custom range (the same local dates).
fn period_of(resolved: &ResolvedPeriod) -> crate::proto::v1::Period {
    crate::proto::v1::Period {
        period: Some(crate::proto::v1::period::Period::Custom(
            crate::proto::v1::DateRange {
                start_date: resolved.start_date,
                end_date: resolved.end_date,
            },
        )),
    }
}

/// The first day of the period `n` periods before the one starting on `start`.
fn periods_before(start: NaiveDate, granularity: Granularity, n: u32) -> NaiveDate {
    let months = match granularity {
        Granularity::Day => return start - chrono::Days::new(u64::from(n)),
        Granularity::Week => return start - chrono::Days::new(7 * u64::from(n)),
        Granularity::Quarter | Granularity::FiscalQuarter => 3 * n,
        Granularity::Year | Granularity::FiscalYear => 12 * n,
        Granularity::Month | Granularity::Unspecified => n,
    };
    start
        .checked_sub_months(Months::new(months))
        .unwrap_or(start)
}

/// The heading of a catalog category.
fn category_title(category: i32) -> &'static str {
    match KpiCategory::try_from(category) {
        Ok(KpiCategory::Performance) => "Sales performance",
        Ok(KpiCategory::Customers) => "Customers and subscriptions",
        Ok(KpiCategory::Leads) => "Leads and funnel",
        Ok(KpiCategory::Activity) => "Activity",
        Ok(KpiCategory::Productivity) => "Productivity",
        _ => "Other",
    }
}

const STYLE: &str = "
:root{--fg:#1d2430;--muted:#5b6475;--line:#d8dde6;--accent:#2f6fdf;--good:#137a3a;--bad:#b42318;--target:#e08a00;font-family:system-ui,sans-serif;color:var(--fg)}
body{margin:1.5rem auto;max-width:60rem;padding:0 1rem}
h1{font-size:1.4rem;margin:0}h2{font-size:1.05rem;margin:1.2rem 0 .5rem;break-after:avoid}
.meta{color:var(--muted);font-size:.85rem}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(13rem,1fr));gap:.5rem}
.tile{border:1px solid var(--line);border-radius:6px;padding:.5rem .6rem;break-inside:avoid}
.name{font-size:.8rem;color:var(--muted)}.value{font-size:1.2rem;font-weight:600;font-variant-numeric:tabular-nums}
.change{font-size:.8rem;color:var(--muted)}.change.better{color:var(--good)}.change.worse{color:var(--bad)}
.reason{font-size:.75rem;color:var(--muted)}
dl{margin:.3rem 0 0;font-size:.72rem;display:grid;grid-template-columns:auto 1fr;gap:0 .4rem}dt{color:var(--muted)}dd{margin:0;overflow-wrap:anywhere}
.spark{width:100%;height:1.4rem}.spark path{fill:none;stroke:var(--accent);stroke-width:1.5;vector-effect:non-scaling-stroke}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(18rem,1fr));gap:.6rem}
figure{margin:0;border:1px solid var(--line);border-radius:6px;padding:.5rem;break-inside:avoid}figcaption{font-weight:600;font-size:.9rem}
.chart{width:100%;height:auto}.axis{stroke:var(--line)}.tick{font-size:10px;fill:var(--muted)}
.bar,.total{fill:var(--accent)}.up{fill:var(--good)}.down{fill:var(--bad)}.target{fill:none;stroke:var(--target);stroke-width:2}
table{border-collapse:collapse;width:100%;font-size:.82rem}th,td{padding:.3rem .5rem;border-top:1px solid var(--line);text-align:right;font-variant-numeric:tabular-nums}
th:first-child{text-align:left}
@media print{@page{size:A4;margin:12mm}body{margin:0;max-width:none;font-size:10pt}.tiles{grid-template-columns:repeat(4,1fr)}.charts{grid-template-columns:1fr 1fr}}
";

/// The report as an HTML document.
pub fn render(data: &ReportData) -> String {
    let bundle = &data.bundle;
    let currency = bundle.currency_code.as_str();
    let scope = scope_text(bundle.scope.as_ref());
    let period = period_text(bundle.period.as_ref());
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>salesmetrics report: {scope_e} {period_e}</title><style>{STYLE}</style></head><body>\
         <header><h1>Sales report: {scope_e}</h1><p class=\"meta\">Period {period_e}",
        scope_e = escape(&scope),
        period_e = escape(&period),
    );
    if let Some(comparison) = &bundle.comparison_period {
        let _ = write!(
            out,
            "; compared with {}",
            escape(&period_text(Some(comparison)))
        );
    }
    let _ = write!(out, "; money in {}.</p></header><main>", escape(currency));

    // Tiles, grouped like the catalog.
    let values: HashMap<&str, &KpiValue> = bundle
        .values
        .iter()
        .map(|v| (v.kpi_id.as_str(), v))
        .collect();
    let mut categories: Vec<i32> = Vec::new();
    for def in &data.catalog {
        if values.contains_key(def.id.as_str()) && !categories.contains(&def.category) {
            categories.push(def.category);
        }
    }
    for category in categories {
        let _ = write!(
            out,
            "<section><h2>{}</h2><div class=\"tiles\">",
            category_title(category)
        );
        for def in data.catalog.iter().filter(|d| d.category == category) {
            if let Some(value) = values.get(def.id.as_str()) {
                out.push_str(&tile(def, value, data, bundle.comparison_period.is_some()));
            }
        }
        out.push_str("</div></section>");
    }

    out.push_str("<section><h2>Charts</h2><div class=\"charts\">");
    out.push_str(&target_chart(data));
    out.push_str(&mrr_chart(bundle));
    out.push_str(&funnel_chart(bundle));
    out.push_str("</div></section>");
    out.push_str(&breakdown_table(data));
    out.push_str("</main></body></html>\n");
    out
}

/// A resolved period for people.
fn period_text(period: Option<&ResolvedPeriod>) -> String {
    super::period::period_text(period, " to ", "end exclusive, ")
}

/// A plain number (numerators and denominators).
fn plain(x: f64) -> String {
    format::unit_value(Unit::Number as i32, x, None, "")
}

fn tile(def: &KpiDefinition, value: &KpiValue, data: &ReportData, comparing: bool) -> String {
    let currency = data.bundle.currency_code.as_str();
    let mut out = format!(
        "<div class=\"tile\" id=\"kpi-{}\"><div class=\"name\">{}</div><div class=\"value\">{}</div>",
        escape(&def.id),
        escape(&def.name),
        escape(&match value.value {
            Some(x) =>
                format::kpi_number(&value.kpi_id, value.unit, x, value.exact_value, currency),
            None => "—".to_string(),
        })
    );
    if value.value.is_none() && !value.undefined_reason.is_empty() {
        let _ = write!(
            out,
            "<div class=\"reason\">{}</div>",
            escape(&value.undefined_reason)
        );
    }
    if comparing {
        let direction = Direction::try_from(def.direction).unwrap_or(Direction::Unspecified);
        let change = format::kpi_change(value, direction, false);
        if !change.is_empty() {
            let class = if change.ends_with(" better") {
                "change better"
            } else if change.ends_with(" worse") {
                "change worse"
            } else {
                "change"
            };
            let _ = write!(out, "<div class=\"{class}\">{}</div>", escape(&change));
        }
    }
    let points: Vec<Option<f64>> = data
        .series
        .iter()
        .map(|b| {
            b.values
                .iter()
                .find(|v| v.kpi_id == def.id)
                .and_then(|v| v.value)
        })
        .collect();
    if let Some(line) = svg::sparkline(&points) {
        out.push_str(&line);
    }
    let _ = write!(out, "<dl><dt>Formula</dt><dd>{}</dd>", escape(&def.formula));
    if let Some(n) = value.numerator {
        let _ = write!(out, "<dt>Numerator</dt><dd>{}</dd>", plain(n));
    }
    if let Some(d) = value.denominator {
        let _ = write!(out, "<dt>Denominator</dt><dd>{}</dd>", plain(d));
    }
    if comparing {
        let _ = write!(
            out,
            "<dt>Comparison</dt><dd>{}</dd>",
            escape(&format::comparison_value(value, currency))
        );
    }
    out.push_str("</dl></div>");
    out
}

fn value_of(bundle: &KpiBundle, id: &str) -> Option<f64> {
    bundle
        .values
        .iter()
        .find(|v| v.kpi_id == id)
        .and_then(|v| v.value)
}

fn figure(caption: &str, body: &str) -> String {
    format!(
        "<figure><figcaption>{}</figcaption>{body}</figure>",
        escape(caption)
    )
}

fn target_chart(data: &ReportData) -> String {
    let currency = data.bundle.currency_code.clone();
    let labels: Vec<String> = data
        .series
        .iter()
        .map(|b| {
            let start = date_text(b.period.as_ref().and_then(|p| p.start_date.as_ref()));
            start.get(2..7).unwrap_or(&start).to_string()
        })
        .collect();
    let revenue: Vec<Option<f64>> = data.series.iter().map(|b| value_of(b, "revenue")).collect();
    let target: Vec<Option<f64>> = data
        .series
        .iter()
        .map(|b| value_of(b, "revenue_target"))
        .collect();
    let tip = move |v: f64| format::money_f64(v, &currency);
    figure(
        "Revenue vs target (bars: revenue, line: revenue target)",
        &svg::bars_with_line(
            "Revenue and revenue target of the last 12 periods",
            &labels,
            &revenue,
            &target,
            &tip,
        ),
    )
}

fn mrr_chart(bundle: &KpiBundle) -> String {
    let currency = bundle.currency_code.as_str();
    let steps: Vec<svg::Step> = [
        ("Start", "mrr_start", None),
        ("New", "new_mrr", Some(1.0)),
        ("Reactivation", "reactivation_mrr", Some(1.0)),
        ("Expansion", "expansion_mrr", Some(1.0)),
        ("Contraction", "contraction_mrr", Some(-1.0)),
        ("Churn", "churned_mrr", Some(-1.0)),
        ("End", "mrr", None),
    ]
    .into_iter()
    .filter_map(|(label, id, sign)| {
        value_of(bundle, id).map(|amount| svg::Step {
            label: label.to_string(),
            sign,
            amount,
            text: format::money_f64(amount, currency),
        })
    })
    .collect();
    if steps.is_empty() {
        return figure("MRR movements", "<p>No MRR data.</p>");
    }
    figure(
        "MRR movements",
        &svg::waterfall(
            "MRR waterfall: start, new, reactivation, expansion, contraction, churn, end",
            &steps,
        ),
    )
}

fn funnel_chart(bundle: &KpiBundle) -> String {
    if bundle.funnel.is_empty() {
        return figure("Funnel", "<p>No funnel data.</p>");
    }
    let stages: Vec<(String, i64, String)> = bundle
        .funnel
        .iter()
        .map(|s| {
            let mut text = format::integer(s.reached);
            if let Some(leakage) = s.leakage {
                let _ = write!(text, " · {} leak", format::percent(leakage));
            }
            (s.stage.clone(), s.reached, text)
        })
        .collect();
    figure(
        "Funnel of the deals created in the period",
        &svg::funnel(
            "Funnel: deals reaching each stage, with the leakage to the next",
            &stages,
        ),
    )
}

fn breakdown_table(data: &ReportData) -> String {
    let mut out = String::from("<section><h2>Breakdown by rep</h2>");
    let Some(first) = data.reps.first() else {
        out.push_str("<p>No reps in this scope and period.</p></section>");
        return out;
    };
    let names: HashMap<&str, &str> = data
        .catalog
        .iter()
        .map(|d| (d.id.as_str(), d.name.as_str()))
        .collect();
    out.push_str("<table><thead><tr><th scope=\"col\">Rep</th>");
    for v in &first.values {
        let _ = write!(
            out,
            "<th scope=\"col\">{}</th>",
            escape(names.get(v.kpi_id.as_str()).copied().unwrap_or(&v.kpi_id))
        );
    }
    out.push_str("</tr></thead><tbody>");
    for row in &data.reps {
        let label = if row.label.is_empty() {
            &row.key
        } else {
            &row.label
        };
        let _ = write!(out, "<tr><th scope=\"row\">{}</th>", escape(label));
        for v in &row.values {
            let text = match v.value {
                Some(x) => format::kpi_number(
                    &v.kpi_id,
                    v.unit,
                    x,
                    v.exact_value,
                    &data.bundle.currency_code,
                ),
                None => "—".to_string(),
            };
            let _ = write!(out, "<td>{}</td>", escape(&text));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></section>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1::FunnelStage;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn series_start_eleven_periods_back() {
        assert_eq!(
            periods_before(day(2025, 3, 1), Granularity::Month, 11),
            day(2024, 4, 1)
        );
        assert_eq!(
            periods_before(day(2025, 1, 1), Granularity::Quarter, 11),
            day(2022, 4, 1)
        );
        assert_eq!(
            periods_before(day(2025, 2, 10), Granularity::Week, 2),
            day(2025, 1, 27)
        );
        assert_eq!(
            periods_before(day(2025, 4, 1), Granularity::FiscalYear, 1),
            day(2024, 4, 1)
        );
    }

    fn value(id: &str, unit: Unit, value: f64) -> KpiValue {
        KpiValue {
            kpi_id: id.into(),
            unit: unit as i32,
            value: Some(value),
            ..Default::default()
        }
    }

    #[test]
    fn tiles_show_value_change_and_formula() {
        let win_rate = KpiValue {
            numerator: Some(3.0),
            denominator: Some(4.0),
            comparison_value: Some(0.5),
            absolute_change: Some(0.25),
            relative_change: Some(0.5),
            ..value("win_rate", Unit::Ratio, 0.75)
        };
        let revenue = KpiValue {
            exact_value: Some(125_050),
            ..value("revenue", Unit::Money, 125_050.0)
        };
        let data = ReportData {
            catalog: vec![
                KpiDefinition {
                    id: "revenue".into(),
                    name: "Revenue".into(),
                    category: KpiCategory::Performance as i32,
                    unit: Unit::Money as i32,
                    formula: "sum(order.amount)".into(),
                    direction: Direction::HigherIsBetter as i32,
                },
                KpiDefinition {
                    id: "win_rate".into(),
                    name: "Win rate".into(),
                    category: KpiCategory::Performance as i32,
                    unit: Unit::Ratio as i32,
                    formula: "deals_won / (deals_won + deals_lost)".into(),
                    direction: Direction::HigherIsBetter as i32,
                },
            ],
            bundle: KpiBundle {
                currency_code: "USD".into(),
                comparison_period: Some(ResolvedPeriod::default()),
                values: vec![revenue, win_rate],
                funnel: vec![
                    FunnelStage {
                        index: 0,
                        stage: "lead".into(),
                        reached: 4,
                        leakage: Some(0.25),
                    },
                    FunnelStage {
                        index: 1,
                        stage: "won".into(),
                        reached: 3,
                        leakage: None,
                    },
                ],
                ..Default::default()
            },
            series: Vec::new(),
            reps: Vec::new(),
        };
        let html = render(&data);
        assert!(html.contains("<h2>Sales performance</h2>"), "{html}");
        assert!(html.contains("<div class=\"value\">1,250.50 USD</div>"));
        assert!(html.contains("<div class=\"value\">75.0%</div>"));
        assert!(html.contains("<div class=\"change better\">▲ 25.0 pp better</div>"));
        assert!(html.contains(
            "<dt>Formula</dt><dd>deals_won / (deals_won + deals_lost)</dd>\
             <dt>Numerator</dt><dd>3</dd><dt>Denominator</dt><dd>4</dd>"
        ));
        assert!(html.contains(">4 · 25.0% leak</text>"));
        assert!(!html.contains("<script"));
    }
}
