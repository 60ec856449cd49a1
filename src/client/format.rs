//! How values are shown on a terminal: money in major units, ratios as
//! percentages, durations as `3d 4h`, aligned tables (comfy-table, fitted to
//! the terminal's width) and sparklines.

use crate::proto::v1::{Direction, KpiValue, Unit};

/// Digits after the decimal point of a currency's major unit (ISO 4217),
/// from the domain's currency rules.
pub fn currency_exponent(code: &str) -> u32 {
    crate::domain::rules::currency_minor_digits(code)
}

/// Groups the digits of a non-negative integer with commas: `12500` → `12,500`.
fn group_thousands(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// An integer with thousands separators: `-1234567` → `-1,234,567`.
pub fn integer(value: i64) -> String {
    let sign = if value < 0 { "-" } else { "" };
    format!(
        "{sign}{}",
        group_thousands(&value.unsigned_abs().to_string())
    )
}

/// Minor units as a major-unit decimal without grouping: `125050` → `1250.50`.
/// The exact inverse of [`crate::client::records::parse_decimal`].
pub fn minor_to_decimal(minor: i64, exponent: u32) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    if exponent == 0 {
        return format!("{sign}{abs}");
    }
    let scale = 10u64.pow(exponent);
    format!(
        "{sign}{}.{:0width$}",
        abs / scale,
        abs % scale,
        width = exponent as usize
    )
}

/// Money in minor units, shown in major units with grouping: `1250050, "USD"` → `12,500.50 USD`.
pub fn money(minor: i64, currency: &str) -> String {
    let exponent = currency_exponent(currency);
    let plain = minor_to_decimal(minor, exponent);
    let (sign, rest) = plain
        .strip_prefix('-')
        .map_or(("", plain.as_str()), |r| ("-", r));
    let (whole, fraction) = rest
        .split_once('.')
        .map_or((rest, None), |(w, f)| (w, Some(f)));
    let mut out = format!("{sign}{}", group_thousands(whole));
    if let Some(fraction) = fraction {
        out.push('.');
        out.push_str(fraction);
    }
    if !currency.is_empty() {
        out.push(' ');
        out.push_str(currency);
    }
    out
}

/// Money given as a (possibly fractional) number of minor units, e.g. a mean.
pub fn money_f64(minor: f64, currency: &str) -> String {
    if !minor.is_finite() || minor.abs() >= 9.0e18 {
        return format!("{minor} (minor units) {currency}");
    }
    money(minor.round() as i64, currency)
}

/// A fraction as a percentage with one decimal: `0.125` → `12.5%`.
pub fn percent(ratio: f64) -> String {
    format!("{:.1}%", ratio * 100.0)
}

/// A duration in seconds, shown with its two largest units: `273600` → `3d 4h`,
/// `7500` → `2h 5m`, `45` → `45s`.
pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() {
        return format!("{seconds}s");
    }
    let sign = if seconds < 0.0 { "-" } else { "" };
    let total = seconds.abs().round() as u64;
    let (days, hours, minutes, secs) = (
        total / 86_400,
        total % 86_400 / 3600,
        total % 3600 / 60,
        total % 60,
    );
    let text = if days > 0 {
        if hours > 0 {
            format!("{days}d {hours}h")
        } else {
            format!("{days}d")
        }
    } else if hours > 0 {
        if minutes > 0 {
            format!("{hours}h {minutes}m")
        } else {
            format!("{hours}h")
        }
    } else if minutes > 0 {
        if secs > 0 {
            format!("{minutes}m {secs}s")
        } else {
            format!("{minutes}m")
        }
    } else {
        format!("{secs}s")
    };
    format!("{sign}{text}")
}

/// A plain number with up to two decimals.
fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        integer(value as i64)
    } else {
        format!("{value:.2}")
    }
}

/// A defined value of the given unit, for a person.
pub fn unit_value(unit: i32, value: f64, exact: Option<i64>, currency: &str) -> String {
    match Unit::try_from(unit).unwrap_or(Unit::Unspecified) {
        Unit::Money => match exact {
            Some(minor) => money(minor, currency),
            None => money_f64(value, currency),
        },
        Unit::Count => exact.map_or_else(|| number(value), integer),
        Unit::Ratio => percent(value),
        Unit::DurationSeconds => duration(value),
        Unit::Score => format!("{value:.2}"),
        Unit::Number | Unit::Unspecified => number(value),
    }
}

/// Ratio KPIs that compare two amounts of the same kind and are read as a
/// multiple (`3.2×`), not as a fraction (`320.0%`).
const MULTIPLES: [&str; 2] = ["mrr_quick_ratio", "clv_to_cac"];

/// Whether a KPI is read as a multiple.
pub fn is_multiple(kpi_id: &str) -> bool {
    MULTIPLES.contains(&kpi_id)
}

/// A multiple with one decimal: `9.125` → `9.1×`.
pub fn multiple(value: f64) -> String {
    format!("{value:.1}×")
}

/// A defined value of a KPI, for a person (multiples as `9.1×`).
pub fn kpi_number(
    kpi_id: &str,
    unit: i32,
    value: f64,
    exact: Option<i64>,
    currency: &str,
) -> String {
    if is_multiple(kpi_id) {
        multiple(value)
    } else {
        unit_value(unit, value, exact, currency)
    }
}

/// A KPI value for a person: the value, or `—  (reason)` when undefined.
pub fn kpi_value(value: &KpiValue, currency: &str) -> String {
    match value.value {
        Some(v) => kpi_number(&value.kpi_id, value.unit, v, value.exact_value, currency),
        None => undefined(&value.undefined_reason),
    }
}

/// An undefined value with its reason.
pub fn undefined(reason: &str) -> String {
    if reason.is_empty() {
        "—".to_string()
    } else {
        format!("—  ({reason})")
    }
}

/// The comparison value of a KPI, or `—  (reason)`.
pub fn comparison_value(value: &KpiValue, currency: &str) -> String {
    match value.comparison_value {
        Some(v) => {
            // A whole-number comparison of a money or count KPI is shown exactly.
            let exact = (v.fract() == 0.0 && v.abs() < 9.0e15).then_some(v as i64);
            kpi_number(&value.kpi_id, value.unit, v, exact, currency)
        }
        None => undefined(&value.comparison_undefined_reason),
    }
}

/// A relative change with an arrow: `▲ 12.5%`, `▼ 3.0%`, `= 0.0%`; empty when undefined.
pub fn change(relative: Option<f64>) -> String {
    match relative {
        Some(r) if r > 0.0 => format!("▲ {}", percent(r)),
        Some(r) if r < 0.0 => format!("▼ {}", percent(-r)),
        Some(_) => "= 0.0%".to_string(),
        None => String::new(),
    }
}

/// Whether a change is good for the KPI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The KPI moved the way that is good for it.
    Better,
    /// The KPI moved the way that is bad for it.
    Worse,
    /// No change, or the KPI has no good direction.
    Neither,
}

/// Whether a change of sign `delta` is good for a KPI of `direction`.
pub fn verdict(direction: Direction, delta: f64) -> Verdict {
    let up = match direction {
        Direction::HigherIsBetter => Verdict::Better,
        Direction::LowerIsBetter => Verdict::Worse,
        _ => return Verdict::Neither,
    };
    if delta > 0.0 {
        up
    } else if delta < 0.0 {
        match up {
            Verdict::Better => Verdict::Worse,
            _ => Verdict::Better,
        }
    } else {
        Verdict::Neither
    }
}

/// A KPI's change from its comparison, for a person: a ratio's change in
/// percentage points (`▲ 2.5 pp`: a relative change of a fraction would
/// mislead), a multiple's as a difference of multiples (`▲ 0.4×`), anything
/// else as a relative change (`▼ 3.0%`). The arrow says whether the value went
/// up; `better`/`worse` (in green/red when `colour`) whether that is good for
/// the KPI, by its `direction`. Empty when the change is undefined.
pub fn kpi_change(value: &KpiValue, direction: Direction, colour: bool) -> String {
    let ratio = Unit::try_from(value.unit) == Ok(Unit::Ratio);
    let (delta, text) = if is_multiple(&value.kpi_id) {
        match value.absolute_change {
            Some(d) => (d, format!("{:.1}×", d.abs())),
            None => return String::new(),
        }
    } else if ratio {
        match value.absolute_change {
            Some(d) => (d, format!("{:.1} pp", d.abs() * 100.0)),
            None => return String::new(),
        }
    } else {
        match value.relative_change {
            Some(r) => (r, percent(r.abs())),
            None => return String::new(),
        }
    };
    let arrow = if delta > 0.0 {
        "▲"
    } else if delta < 0.0 {
        "▼"
    } else {
        "="
    };
    match verdict(direction, delta) {
        Verdict::Better if colour => format!("\x1b[32m{arrow} {text} better\x1b[0m"),
        Verdict::Worse if colour => format!("\x1b[31m{arrow} {text} worse\x1b[0m"),
        Verdict::Better => format!("{arrow} {text} better"),
        Verdict::Worse => format!("{arrow} {text} worse"),
        Verdict::Neither => format!("{arrow} {text}"),
    }
}

/// Whether to colour output: standard output is a terminal and `NO_COLOR`
/// is not set.
pub fn use_colour() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal()
}

/// Eight-level sparkline of the values; undefined values are blanks.
pub fn sparkline(values: &[Option<f64>]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let defined: Vec<f64> = values
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    let (min, max) = defined
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    values
        .iter()
        .map(|v| match v {
            Some(v) if v.is_finite() => {
                if max > min {
                    let level = ((v - min) / (max - min) * 7.0).round() as usize;
                    BARS[level.min(7)]
                } else {
                    BARS[3]
                }
            }
            _ => ' ',
        })
        .collect()
}

/// Alignment of a table column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Left-aligned (text).
    Left,
    /// Right-aligned (numbers).
    Right,
}

/// Renders rows as an aligned table with a header and a rule under it.
pub fn table(header: &[&str], align: &[Align], rows: &[Vec<String>]) -> String {
    table_with_notes(header, align, rows, &[])
}

/// Like [`table`], with a free-text note after each row (e.g. why a value is
/// undefined) in a last, unnamed column, so a long note does not widen the
/// columns before it.
///
/// On a terminal the table fits its width: long text wraps inside its
/// column. Anywhere else (a pipe, a file) nothing wraps, so each row stays
/// on one line for `grep`, `cut` and scripts.
pub fn table_with_notes(
    header: &[&str],
    align: &[Align],
    rows: &[Vec<String>],
    notes: &[String],
) -> String {
    // A table that is not told to ignore the terminal reports the terminal's
    // width when standard output is one, and none otherwise.
    let width = comfy_table::Table::new().width();
    layout(header, align, rows, notes, width)
}

/// The layout of [`table_with_notes`] for a screen `width` columns wide, or
/// unbounded when `None`.
///
/// The preset: no borders and no vertical lines; columns two spaces apart
/// and the first one at the margin; a `─` rule under the header; trailing
/// spaces trimmed. ANSI colour in a cell takes no width (comfy-table measures
/// the visible text).
pub fn layout(
    header: &[&str],
    align: &[Align],
    rows: &[Vec<String>],
    notes: &[String],
    width: Option<u16>,
) -> String {
    use comfy_table::{
        CellAlignment, ColumnConstraint, ContentArrangement, LineStyle, Table, TableStyle,
    };

    let with_notes = notes.iter().any(|n| !n.is_empty());
    let mut table = Table::new();
    table
        .force_no_tty()
        .load_style(TableStyle::new().header_separator(LineStyle::none().fill('─').junction('─')));
    match width {
        Some(width) => {
            table
                .set_content_arrangement(ContentArrangement::Dynamic)
                .set_width(width);
        }
        None => {
            table.set_content_arrangement(ContentArrangement::Disabled);
        }
    }
    let mut head: Vec<&str> = header.to_vec();
    if with_notes {
        head.push("");
    }
    table.set_header(head);
    for (i, row) in rows.iter().enumerate() {
        let mut cells: Vec<&str> = row.iter().map(String::as_str).collect();
        cells.resize(header.len(), "");
        if with_notes {
            cells.push(notes.get(i).map_or("", String::as_str));
        }
        table.add_row(cells);
    }
    let last = table.column_count().saturating_sub(1);
    let content_widths = table.column_max_content_widths();
    for (i, column) in table.column_iter_mut().enumerate() {
        // With no vertical lines comfy-table still puts one space between
        // columns: with one space of padding on the right, columns stand two
        // spaces apart, the first starts at the margin and the rule ends
        // with the last.
        column.set_padding((0, u16::from(i < last)));
        let right = align.get(i).copied() == Some(Align::Right);
        if right {
            column.set_cell_alignment(CellAlignment::Right);
        }
        // The first column (the row's key), numbers and short text never
        // wrap: long text columns give way.
        let content = content_widths.get(i).copied().unwrap_or(0);
        if i == 0 || right || content <= 8 {
            column.set_constraint(ColumnConstraint::ContentWidth);
        }
    }
    // The rule spans the columns, not the notes after them.
    let ruled: usize = content_widths
        .iter()
        .take(header.len())
        .map(|w| usize::from(*w))
        .sum::<usize>()
        + 2 * header.len().saturating_sub(1);
    let mut out = String::new();
    let mut rule_done = false;
    for line in table.trim_fmt().lines() {
        if with_notes && !rule_done && !line.is_empty() && line.chars().all(|c| c == '─') {
            out.extend(line.chars().take(ruled));
            rule_done = true;
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_in_major_units() {
        assert_eq!(money(1_250_000, "USD"), "12,500.00 USD");
        assert_eq!(money(125_050, "EUR"), "1,250.50 EUR");
        assert_eq!(money(-5, "USD"), "-0.05 USD");
        assert_eq!(money(1_234_567, "JPY"), "1,234,567 JPY");
        assert_eq!(money(1_234, "KWD"), "1.234 KWD");
        assert_eq!(money(0, "USD"), "0.00 USD");
        assert_eq!(money_f64(12_345.6, "USD"), "123.46 USD");
    }

    #[test]
    fn percentages_have_one_decimal() {
        assert_eq!(percent(0.125), "12.5%");
        assert_eq!(percent(1.0), "100.0%");
        assert_eq!(percent(0.0), "0.0%");
        assert_eq!(change(Some(0.125)), "▲ 12.5%");
        assert_eq!(change(Some(-0.03)), "▼ 3.0%");
        assert_eq!(change(None), "");
    }

    fn value(id: &str, unit: Unit, relative: Option<f64>, absolute: Option<f64>) -> KpiValue {
        KpiValue {
            kpi_id: id.into(),
            unit: unit as i32,
            relative_change: relative,
            absolute_change: absolute,
            ..KpiValue::default()
        }
    }

    #[test]
    fn changes_of_ratios_are_percentage_points() {
        // win_rate 0.20 → 0.25: +5 points (not +25 %), and up is good.
        let v = value("win_rate", Unit::Ratio, Some(0.25), Some(0.05));
        assert_eq!(
            kpi_change(&v, Direction::HigherIsBetter, false),
            "▲ 5.0 pp better"
        );
        // churn 0.10 → 0.08: −2 points, and down is good.
        let v = value("customer_churn_rate", Unit::Ratio, Some(-0.2), Some(-0.02));
        assert_eq!(
            kpi_change(&v, Direction::LowerIsBetter, false),
            "▼ 2.0 pp better"
        );
        let v = value("win_rate", Unit::Ratio, None, None);
        assert_eq!(kpi_change(&v, Direction::HigherIsBetter, false), "");
    }

    #[test]
    fn multiples_show_as_times() {
        assert_eq!(multiple(9.1), "9.1×");
        let v = KpiValue {
            value: Some(9.125),
            comparison_value: Some(1.0),
            ..value("mrr_quick_ratio", Unit::Ratio, Some(8.125), Some(8.125))
        };
        assert_eq!(kpi_value(&v, "USD"), "9.1×");
        assert_eq!(comparison_value(&v, "USD"), "1.0×");
        assert_eq!(
            kpi_change(&v, Direction::HigherIsBetter, false),
            "▲ 8.1× better"
        );
        let v = value("clv_to_cac", Unit::Ratio, Some(-0.5), Some(-1.5));
        assert_eq!(
            kpi_change(&v, Direction::HigherIsBetter, false),
            "▼ 1.5× worse"
        );
        // An ordinary ratio is still a percentage.
        let v = KpiValue {
            value: Some(0.25),
            ..value("win_rate", Unit::Ratio, None, None)
        };
        assert_eq!(kpi_value(&v, "USD"), "25.0%");
    }

    #[test]
    fn other_changes_are_relative_and_judged_by_direction() {
        let v = value("revenue", Unit::Money, Some(0.125), Some(500.0));
        assert_eq!(
            kpi_change(&v, Direction::HigherIsBetter, false),
            "▲ 12.5% better"
        );
        // Sales cycle went up: worse.
        let v = value(
            "sales_cycle",
            Unit::DurationSeconds,
            Some(0.5),
            Some(3600.0),
        );
        assert_eq!(
            kpi_change(&v, Direction::LowerIsBetter, false),
            "▲ 50.0% worse"
        );
        // A neutral KPI has no verdict; no change is neither.
        let v = value(
            "time_on_activities",
            Unit::DurationSeconds,
            Some(-0.1),
            Some(-1.0),
        );
        assert_eq!(kpi_change(&v, Direction::Neutral, false), "▼ 10.0%");
        let v = value("revenue", Unit::Money, Some(0.0), Some(0.0));
        assert_eq!(kpi_change(&v, Direction::HigherIsBetter, false), "= 0.0%");
        // Colour: green when better, red when worse; the table aligns by
        // the visible text.
        let v = value("revenue", Unit::Money, Some(-0.125), Some(-500.0));
        let coloured = kpi_change(&v, Direction::HigherIsBetter, true);
        assert_eq!(coloured, "\x1b[31m▼ 12.5% worse\x1b[0m");
        let t = table(
            &["change"],
            &[Align::Right],
            &[vec![coloured], vec!["x".into()]],
        );
        assert!(t.ends_with("\n            x\n"), "{t:?}");
    }

    #[test]
    fn durations_use_two_units() {
        assert_eq!(duration(3.0 * 86_400.0 + 4.0 * 3600.0), "3d 4h");
        assert_eq!(duration(2.0 * 3600.0 + 5.0 * 60.0), "2h 5m");
        assert_eq!(duration(45.0), "45s");
        assert_eq!(duration(0.0), "0s");
        assert_eq!(duration(86_400.0), "1d");
        assert_eq!(duration(1_641_600.0), "19d");
        assert_eq!(duration(125.0), "2m 5s");
    }

    #[test]
    fn integers_are_grouped() {
        assert_eq!(integer(0), "0");
        assert_eq!(integer(999), "999");
        assert_eq!(integer(1000), "1,000");
        assert_eq!(integer(-1_234_567), "-1,234,567");
    }

    #[test]
    fn sparkline_scales_between_min_and_max() {
        assert_eq!(sparkline(&[Some(0.0), Some(7.0), None, Some(3.5)]), "▁█ ▅");
        assert_eq!(sparkline(&[Some(2.0), Some(2.0)]), "▄▄");
    }

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["KPI", "value"],
            &[Align::Left, Align::Right],
            &[
                vec!["revenue".into(), "1.00 USD".into()],
                vec!["orders".into(), "12".into()],
            ],
        );
        assert_eq!(
            t,
            "KPI         value\n─────────────────\nrevenue  1.00 USD\norders         12\n"
        );
    }

    #[test]
    fn notes_follow_the_row_in_a_last_column() {
        let t = layout(
            &["KPI", "value"],
            &[Align::Left, Align::Right],
            &[
                vec!["win_rate".into(), "—".into()],
                vec!["orders".into(), "12".into()],
            ],
            &["(no closed deals)".into(), String::new()],
            None,
        );
        assert_eq!(
            t,
            "KPI       value\n\
             ───────────────\n\
             win_rate      —  (no closed deals)\n\
             orders       12\n"
        );
    }

    #[test]
    fn tables_fit_a_narrow_screen_by_wrapping_long_text() {
        let formula = "sum of the amounts of the orders placed in the period, \
                       refunds excluded, in the reporting currency";
        let rows = vec![
            vec!["revenue".to_string(), "money".into(), formula.into()],
            vec![
                "orders".to_string(),
                "count".into(),
                "count of orders".into(),
            ],
        ];
        let header = ["id", "unit", "formula"];
        let align = [Align::Left; 3];
        // Unbounded (not a terminal): one line per row.
        let wide = layout(&header, &align, &rows, &[], None);
        assert_eq!(wide.lines().count(), 4, "{wide}");
        assert!(
            wide.lines()
                .nth(2)
                .is_some_and(|l| l.ends_with("reporting currency"))
        );
        // 40 columns: every line fits and the formula wraps in its column,
        // all of its words kept.
        let narrow = layout(&header, &align, &rows, &[], Some(40));
        assert!(narrow.lines().count() > 4, "{narrow}");
        for line in narrow.lines() {
            assert!(line.chars().count() <= 40, "{line:?} in\n{narrow}");
        }
        let words: Vec<&str> = narrow
            .lines()
            .skip(2)
            .flat_map(|l| l.split_whitespace())
            .collect();
        let expected: Vec<&str> = ["revenue", "money"]
            .into_iter()
            .chain(formula.split_whitespace())
            .chain(["orders", "count", "count", "of", "orders"])
            .collect();
        let mut sorted_words = words.clone();
        sorted_words.sort_unstable();
        let mut sorted_expected = expected.clone();
        sorted_expected.sort_unstable();
        assert_eq!(sorted_words, sorted_expected, "{narrow}");
    }
}
