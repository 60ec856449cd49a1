//! The period and scope syntax of the command line, turned into proto messages.
//!
//! | text | period |
//! |---|---|
//! | `2025` | calendar year |
//! | `2025-Q1` | calendar quarter |
//! | `2025-03` | month |
//! | `2025-W07` | ISO week (Monday to Sunday) |
//! | `2025-03-15` | one day |
//! | `2025-03-01..2025-04-15` | custom range of local dates, end exclusive |
//! | `FY2025` | the tenant's fiscal year that **starts** in 2025 |
//! | `FY2025-Q2` | the second quarter of that fiscal year |
//!
//! A fiscal year is named by the calendar year it starts in (with a fiscal
//! year starting in April, FY2025 is 2025-04-01 .. 2026-04-01); the server
//! resolves it with the tenant's `fiscal_year_start_month`.

use chrono::{NaiveDate, Weekday};

use crate::api::convert::time::date_to_proto;
use crate::proto::v1::{
    self, CalendarPeriod, DateRange, FiscalPeriod, Granularity, Scope, ScopeKind,
    period::Period as PeriodKind,
};

/// A parsed period: a calendar period with its first day, or a custom range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeriodArg {
    /// A calendar period of the given granularity starting on `start`.
    Calendar {
        /// Length of the period.
        granularity: Granularity,
        /// First local date of the period.
        start: NaiveDate,
    },
    /// A fiscal year or quarter, named by the calendar year the fiscal year
    /// starts in; the server resolves it.
    Fiscal {
        /// Calendar year in which the fiscal year starts.
        year: i32,
        /// Quarter 1-4, or `None` for the whole fiscal year.
        quarter: Option<u32>,
    },
    /// Local dates `[start, end)`.
    Custom {
        /// First local date.
        start: NaiveDate,
        /// Local date after the last one.
        end: NaiveDate,
    },
}

impl PeriodArg {
    /// The proto message.
    pub fn to_proto(&self) -> v1::Period {
        let period = match *self {
            PeriodArg::Calendar { granularity, start } => PeriodKind::Calendar(CalendarPeriod {
                granularity: granularity as i32,
                date: Some(date_to_proto(start)),
            }),
            PeriodArg::Fiscal { year, quarter } => PeriodKind::Fiscal(FiscalPeriod {
                fiscal_year: year,
                fiscal_quarter: quarter.map_or(0, |q| q as i32),
            }),
            PeriodArg::Custom { start, end } => PeriodKind::Custom(DateRange {
                start_date: Some(date_to_proto(start)),
                end_date: Some(date_to_proto(end)),
            }),
        };
        v1::Period {
            period: Some(period),
        }
    }
}

/// A proto `Date` as `YYYY-MM-DD` (or `?` when absent).
pub fn date_text(date: Option<&v1::Date>) -> String {
    match date {
        Some(d) => format!("{:04}-{:02}-{:02}", d.year, d.month, d.day),
        None => "?".to_string(),
    }
}

/// A resolved period as `START<to>END (<note>ZONE)` (or `?` when absent),
/// e.g. `2025-03-01 .. 2025-04-01 (UTC)`.
pub fn period_text(period: Option<&v1::ResolvedPeriod>, to: &str, note: &str) -> String {
    match period {
        Some(p) => format!(
            "{}{to}{} ({note}{})",
            date_text(p.start_date.as_ref()),
            date_text(p.end_date.as_ref()),
            if p.time_zone.is_empty() {
                "UTC"
            } else {
                &p.time_zone
            }
        ),
        None => "?".to_string(),
    }
}

const PERIOD_HELP: &str = "expected YYYY, YYYY-Qn, YYYY-MM, YYYY-Www, YYYY-MM-DD, START..END (e.g. 2025-03-01..2025-04-15), FYYYYY or FYYYYY-Qn";

/// Parses the period syntax (see the module docs).
pub fn parse_period(text: &str) -> Result<PeriodArg, String> {
    let text = text.trim();
    if let Some((a, b)) = text.split_once("..") {
        let start = parse_day(a.trim())?;
        let end = parse_day(b.trim())?;
        if end <= start {
            return Err(format!(
                "the end of the range {text:?} must be after its start (the end date is exclusive)"
            ));
        }
        return Ok(PeriodArg::Custom { start, end });
    }
    let bad = || format!("invalid period {text:?}: {PERIOD_HELP}");
    if let Some(fiscal) = text.strip_prefix("FY").or_else(|| text.strip_prefix("fy")) {
        let (year, quarter) = match fiscal.split_once('-') {
            Some((year, q)) if q.len() == 2 && (q.starts_with('Q') || q.starts_with('q')) => {
                (year, Some(q[1..].parse::<u32>().map_err(|_| bad())?))
            }
            Some(_) => return Err(bad()),
            None => (fiscal, None),
        };
        if year.len() != 4 || !year.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let year: i32 = year.parse().map_err(|_| bad())?;
        return match quarter {
            None => Ok(PeriodArg::Fiscal {
                year,
                quarter: None,
            }),
            Some(q @ 1..=4) => Ok(PeriodArg::Fiscal {
                year,
                quarter: Some(q),
            }),
            Some(_) => Err(format!("invalid quarter in {text:?}: must be Q1 to Q4")),
        };
    }
    let parts: Vec<&str> = text.split('-').collect();
    let year = |s: &str| -> Result<i32, String> {
        if s.len() == 4 && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse::<i32>().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    match parts.as_slice() {
        [y] => Ok(PeriodArg::Calendar {
            granularity: Granularity::Year,
            start: NaiveDate::from_ymd_opt(year(y)?, 1, 1).ok_or_else(bad)?,
        }),
        [y, q] if q.len() == 2 && (q.starts_with('Q') || q.starts_with('q')) => {
            let quarter: u32 = q[1..].parse().map_err(|_| bad())?;
            if !(1..=4).contains(&quarter) {
                return Err(format!("invalid quarter in {text:?}: must be Q1 to Q4"));
            }
            Ok(PeriodArg::Calendar {
                granularity: Granularity::Quarter,
                start: NaiveDate::from_ymd_opt(year(y)?, (quarter - 1) * 3 + 1, 1)
                    .ok_or_else(bad)?,
            })
        }
        [y, w] if w.len() == 3 && (w.starts_with('W') || w.starts_with('w')) => {
            let week: u32 = w[1..].parse().map_err(|_| bad())?;
            let y = year(y)?;
            let start = NaiveDate::from_isoywd_opt(y, week, Weekday::Mon)
                .ok_or_else(|| format!("invalid week in {text:?}: {y} has no ISO week {week}"))?;
            Ok(PeriodArg::Calendar {
                granularity: Granularity::Week,
                start,
            })
        }
        [y, m] if m.len() == 2 && m.bytes().all(|b| b.is_ascii_digit()) => {
            let month: u32 = m.parse().map_err(|_| bad())?;
            let start = NaiveDate::from_ymd_opt(year(y)?, month, 1)
                .ok_or_else(|| format!("invalid month in {text:?}: must be 01 to 12"))?;
            Ok(PeriodArg::Calendar {
                granularity: Granularity::Month,
                start,
            })
        }
        [_, _, _] => Ok(PeriodArg::Calendar {
            granularity: Granularity::Day,
            start: parse_day(text)?,
        }),
        _ => Err(bad()),
    }
}

/// Parses `YYYY-MM-DD`.
pub fn parse_day(text: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| format!("invalid date {text:?}: expected YYYY-MM-DD, e.g. 2025-03-15"))
}

/// Parses `company`, `team:ID` or `rep:ID`.
pub fn parse_scope(text: &str) -> Result<Scope, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("company") {
        return Ok(Scope {
            kind: ScopeKind::Company as i32,
            id: String::new(),
        });
    }
    let (kind, id) = text
        .split_once(':')
        .ok_or_else(|| format!("invalid scope {text:?}: expected company, team:ID or rep:ID"))?;
    let kind = match kind.to_ascii_lowercase().as_str() {
        "team" => ScopeKind::Team,
        "rep" => ScopeKind::Rep,
        _ => {
            return Err(format!(
                "invalid scope {text:?}: expected company, team:ID or rep:ID"
            ));
        }
    };
    if id.is_empty() {
        return Err(format!("invalid scope {text:?}: the id after ':' is empty"));
    }
    Ok(Scope {
        kind: kind as i32,
        id: id.to_string(),
    })
}

/// A scope as text, the way it is written on the command line.
pub fn scope_text(scope: Option<&Scope>) -> String {
    match scope {
        Some(s) if s.kind == ScopeKind::Team as i32 => format!("team:{}", s.id),
        Some(s) if s.kind == ScopeKind::Rep as i32 => format!("rep:{}", s.id),
        _ => "company".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CLI's and the report's wording of a resolved period.
    #[test]
    fn resolved_periods_read_as_dates_and_zone() {
        let date = |year, month, day| Some(v1::Date { year, month, day });
        let march = v1::ResolvedPeriod {
            start_date: date(2025, 3, 1),
            end_date: date(2025, 4, 1),
            ..Default::default()
        };
        assert_eq!(
            period_text(Some(&march), " .. ", ""),
            "2025-03-01 .. 2025-04-01 (UTC)"
        );
        let berlin = v1::ResolvedPeriod {
            time_zone: "Europe/Berlin".into(),
            ..march
        };
        assert_eq!(
            period_text(Some(&berlin), " to ", "end exclusive, "),
            "2025-03-01 to 2025-04-01 (end exclusive, Europe/Berlin)"
        );
        assert_eq!(period_text(None, " .. ", ""), "?");
    }

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn calendar_periods_start_on_their_first_day() {
        let cases = [
            ("2025", Granularity::Year, day(2025, 1, 1)),
            ("2025-Q1", Granularity::Quarter, day(2025, 1, 1)),
            ("2025-q3", Granularity::Quarter, day(2025, 7, 1)),
            ("2025-03", Granularity::Month, day(2025, 3, 1)),
            ("2025-W07", Granularity::Week, day(2025, 2, 10)),
            ("2026-W01", Granularity::Week, day(2025, 12, 29)),
            ("2025-03-15", Granularity::Day, day(2025, 3, 15)),
        ];
        for (text, granularity, start) in cases {
            assert_eq!(
                parse_period(text),
                Ok(PeriodArg::Calendar { granularity, start }),
                "{text}"
            );
        }
    }

    #[test]
    fn ranges_are_end_exclusive_and_ordered() {
        assert_eq!(
            parse_period("2025-03-01..2025-04-15"),
            Ok(PeriodArg::Custom {
                start: day(2025, 3, 1),
                end: day(2025, 4, 15)
            })
        );
        assert!(
            parse_period("2025-03-01..2025-03-01")
                .unwrap_err()
                .contains("after its start")
        );
    }

    #[test]
    fn bad_periods_are_clear_errors() {
        for text in [
            "",
            "25",
            "2025-13",
            "2025-Q5",
            "2025-W54",
            "2025-02-30",
            "march",
            "2025-3",
            "x..y",
        ] {
            let err = parse_period(text).expect_err(text);
            assert!(err.contains("invalid"), "{text}: {err}");
        }
    }

    #[test]
    fn fiscal_periods_are_sent_for_the_server_to_resolve() {
        assert_eq!(
            parse_period("FY2025").unwrap().to_proto().period,
            Some(PeriodKind::Fiscal(FiscalPeriod {
                fiscal_year: 2025,
                fiscal_quarter: 0
            }))
        );
        assert_eq!(
            parse_period("fy2025-q4").unwrap().to_proto().period,
            Some(PeriodKind::Fiscal(FiscalPeriod {
                fiscal_year: 2025,
                fiscal_quarter: 4
            }))
        );
        for text in ["FY25", "FY2025-Q5", "FY2025-03", "FYX"] {
            assert!(
                parse_period(text).unwrap_err().contains("invalid"),
                "{text}"
            );
        }
    }

    #[test]
    fn scopes() {
        assert_eq!(
            parse_scope("company").unwrap().kind,
            ScopeKind::Company as i32
        );
        let team = parse_scope("team:emea").unwrap();
        assert_eq!(
            (team.kind, team.id.as_str()),
            (ScopeKind::Team as i32, "emea")
        );
        assert_eq!(parse_scope("rep:r1").unwrap().kind, ScopeKind::Rep as i32);
        assert!(parse_scope("rep:").is_err());
        assert!(parse_scope("region:x").is_err());
    }
}
