//! Reporting periods: turning a request's calendar period or custom date range
//! into a half-open range of instants `[start, end)` in a tenant's time zone.
//!
//! # Rules
//!
//! * A period is defined by **local dates** in the tenant's IANA time zone:
//!   `[start_date, end_date)`, the end date being exclusive. Its instants are
//!   the local midnights that open `start_date` and `end_date`.
//! * Boundaries are always computed as *local midnights*, never as
//!   `start + 24h * k`: on daylight-saving days a local day lasts 23 or 25
//!   hours (in some zones 23.5 or 24.5), so adding fixed durations drifts off
//!   the calendar and puts sales into the wrong day, month or year.
//! * Some zones move their clocks at midnight. When local midnight **does not
//!   exist** (the clock jumps e.g. from 00:00 straight to 01:00, as in
//!   America/Havana, America/Santiago, Asia/Beirut or historically
//!   America/Sao_Paulo), the day starts at its first existing instant, i.e.
//!   the instant of the jump (local 01:00 in that example). If a whole local
//!   day is skipped (Pacific/Apia on 2011-12-30) that day is empty and starts
//!   where the next one does.
//! * When local midnight is **ambiguous** (the clock falls back from 01:00 to
//!   00:00, so 00:00–01:00 happens twice), the day starts at the earlier of
//!   the two instants, so that no instant belongs to two days.
//! * Calendar periods: DAY, ISO WEEK (Monday first), MONTH, QUARTER, YEAR, and
//!   fiscal quarter/year. The fiscal year containing a date starts on the 1st
//!   of `fiscal_year_start_month` of the date's year if the date's month is at
//!   least that month, else of the previous year; fiscal quarters are 3-month
//!   blocks from the fiscal-year start.
//! * The previous period has the same granularity and ends where this one
//!   starts (for a custom range: the same number of days just before). The
//!   same period last year shifts the local dates back one year, Feb 29
//!   mapping to Feb 28; it keeps the granularity only when the shifted dates
//!   are a calendar period of it (a shifted ISO week is a plain 7-day range).
//! * Only periods whose local dates all lie within the years
//!   [`MIN_YEAR`]`..=`[`MAX_YEAR`] are accepted; everything else is a
//!   [`PeriodError`]. No input makes this module panic.

use std::cmp::{max, min};

use chrono::{
    DateTime, Datelike, Days, MappedLocalTime, Months, NaiveDate, NaiveDateTime, NaiveTime, Offset,
    TimeDelta, TimeZone, Utc,
};
use chrono_tz::Tz;

/// First calendar year a period's local dates may fall in.
pub const MIN_YEAR: i32 = 1990;
/// Last calendar year a period's local dates may fall in.
pub const MAX_YEAR: i32 = 2110;

/// Size of a calendar period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Granularity {
    /// One local day.
    Day,
    /// An ISO week, Monday to Sunday.
    Week,
    /// A calendar month.
    Month,
    /// A calendar quarter (Jan–Mar, Apr–Jun, Jul–Sep, Oct–Dec).
    Quarter,
    /// A calendar year.
    Year,
    /// A 3-month block of the tenant's fiscal year.
    FiscalQuarter,
    /// The tenant's fiscal year, starting on the 1st of its fiscal start month.
    FiscalYear,
}

impl Granularity {
    /// Whether this granularity depends on the tenant's fiscal year start month.
    pub fn is_fiscal(self) -> bool {
        matches!(self, Granularity::FiscalQuarter | Granularity::FiscalYear)
    }
}

/// What a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeriodSpec {
    /// The calendar period of the given granularity that contains `date`.
    Calendar {
        /// Size of the period.
        granularity: Granularity,
        /// Any local date inside the period.
        date: NaiveDate,
    },
    /// The local dates `[start_date, end_date)`; `end_date` is exclusive and
    /// must be after `start_date`.
    Custom {
        /// First local date of the range.
        start_date: NaiveDate,
        /// First local date after the range (exclusive end).
        end_date: NaiveDate,
    },
    /// A fiscal year, or one of its quarters, named by the calendar year the
    /// fiscal year starts in: with a fiscal year starting in April, fiscal
    /// year 2025 is 2025-04-01 .. 2026-04-01.
    Fiscal {
        /// Calendar year in which the fiscal year starts.
        year: i32,
        /// Quarter 1–4, or `None` for the whole fiscal year.
        quarter: Option<u32>,
    },
}

/// A resolved period: local dates [start_date, end_date) and the instants [start, end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeriodRange {
    /// First local date of the period.
    pub start_date: NaiveDate,
    /// First local date after the period (exclusive).
    pub end_date: NaiveDate,
    /// Local midnight opening `start_date` (see [`local_midnight`]).
    pub start: DateTime<Utc>,
    /// Local midnight opening `end_date` (exclusive end instant).
    pub end: DateTime<Utc>,
    /// Granularity of a calendar period; `None` for custom ranges.
    pub granularity: Option<Granularity>,
}

/// Why a period could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    /// The date range has no days: its end is not after its start.
    #[error(
        "empty or inverted date range: end date {end_date} must be after start date {start_date}"
    )]
    EmptyRange {
        /// First date of the range.
        start_date: NaiveDate,
        /// Exclusive end date of the range.
        end_date: NaiveDate,
    },
    /// A date of the period lies outside the supported years.
    #[error("date {date} is outside the supported years 1990 to 2110")]
    OutOfRange {
        /// The offending date.
        date: NaiveDate,
    },
    /// The tenant's fiscal year start month is not a month number.
    #[error("fiscal year start month must be between 1 and 12, got {0}")]
    InvalidFiscalMonth(u32),
    /// A fiscal year outside the supported years.
    #[error("fiscal year {0} is outside the supported years 1990 to 2110")]
    FiscalYearOutOfRange(i32),
    /// A fiscal quarter that is not 1 to 4.
    #[error("fiscal quarter must be between 1 and 4, got {0}")]
    InvalidFiscalQuarter(u32),
}

/// Local midnight at the start of `date` in `tz` (gap -> first instant of the day, ambiguous -> earlier).
///
/// If local midnight does not exist because the clocks jump forward over it,
/// the result is the instant of the jump, the first instant whose local time
/// is at or after midnight of `date`. Dates so extreme that chrono cannot
/// convert them (far outside the supported years) are read as UTC midnight.
pub fn local_midnight(date: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let naive = date.and_time(NaiveTime::MIN);
    let fallback = naive.and_utc();
    // Keep two days away from chrono's representable limits so that neither
    // chrono-tz's local-to-UTC conversion nor the gap search can overflow.
    let margin = TimeDelta::days(2);
    if naive.checked_sub_signed(margin).is_none() || naive.checked_add_signed(margin).is_none() {
        return fallback;
    }
    match tz.from_local_datetime(&naive) {
        MappedLocalTime::Single(t) => t.with_timezone(&Utc),
        MappedLocalTime::Ambiguous(a, b) => min(a.with_timezone(&Utc), b.with_timezone(&Utc)),
        MappedLocalTime::None => first_instant_at_or_after(naive, tz).unwrap_or(fallback),
    }
}

/// Local date of an instant in tz.
///
/// Never panics: an instant whose local date chrono cannot represent (only at
/// the very ends of chrono's range) yields its UTC date.
pub fn local_date(t: DateTime<Utc>, tz: Tz) -> NaiveDate {
    local_naive(t.naive_utc(), tz).map_or_else(|| t.date_naive(), |local| local.date())
}

/// Number of days that the date ranges [a_start,a_end) and [b_start,b_end) share (0 if disjoint).
///
/// An empty or inverted range shares no days with anything.
pub fn overlap_days(
    a_start: NaiveDate,
    a_end: NaiveDate,
    b_start: NaiveDate,
    b_end: NaiveDate,
) -> i64 {
    let start = max(a_start, b_start);
    let end = min(a_end, b_end);
    max(0, end.signed_duration_since(start).num_days())
}

impl PeriodSpec {
    /// Resolves the spec to local dates and instants in `tz`.
    ///
    /// `fiscal_year_start_month` (1–12) is the tenant's setting; it is
    /// validated on every call, whatever the granularity, so a misconfigured
    /// tenant is reported rather than silently served.
    pub fn resolve(
        &self,
        tz: Tz,
        fiscal_year_start_month: u32,
    ) -> Result<PeriodRange, PeriodError> {
        check_fiscal_month(fiscal_year_start_month)?;
        match *self {
            PeriodSpec::Calendar { granularity, date } => {
                calendar_period(granularity, date, tz, fiscal_year_start_month)
            }
            PeriodSpec::Custom {
                start_date,
                end_date,
            } => build(start_date, end_date, tz, None),
            PeriodSpec::Fiscal { year, quarter } => {
                fiscal_period(year, quarter, tz, fiscal_year_start_month)
            }
        }
    }
}

impl PeriodRange {
    /// Previous period of the same granularity (custom: same number of days just before).
    ///
    /// For a calendar period this is the period of the same granularity that
    /// contains the day before `start_date`.
    pub fn previous(
        &self,
        tz: Tz,
        fiscal_year_start_month: u32,
    ) -> Result<PeriodRange, PeriodError> {
        check_fiscal_month(fiscal_year_start_month)?;
        self.check_dates()?;
        match self.granularity {
            Some(granularity) => {
                let day_before = pred(self.start_date)?;
                calendar_period(granularity, day_before, tz, fiscal_year_start_month)
            }
            None => {
                let days = u64::try_from(self.days()).map_err(|_| self.empty_error())?;
                let start_date = self.start_date.checked_sub_days(Days::new(days)).ok_or(
                    PeriodError::OutOfRange {
                        date: self.start_date,
                    },
                )?;
                build(start_date, self.start_date, tz, None)
            }
        }
    }

    /// The same period one year earlier (Feb 29 -> Feb 28).
    ///
    /// The period's local days are shifted: the first day and the last
    /// (inclusive) day each move back one year, Feb 29 becoming Feb 28, and
    /// the new exclusive end is the day after the shifted last day. This
    /// equals shifting `start_date` and `end_date` themselves except when
    /// `end_date` is Feb 29, where shifting it directly would drop Feb 28 (or
    /// produce an empty range).
    ///
    /// The result keeps the granularity tag only when the shifted days are
    /// themselves a calendar period of that granularity (a month stays a
    /// month; a week shifted one year starts on another weekday and is not an
    /// ISO week). Otherwise it is a plain range of days, so that its own
    /// previous period — what the comparison bundle's growth KPIs compare
    /// with — is the same number of days just before it, not the ISO week
    /// containing the day before, which would overlap it (docs/kpis.md).
    pub fn previous_year(
        &self,
        tz: Tz,
        fiscal_year_start_month: u32,
    ) -> Result<PeriodRange, PeriodError> {
        check_fiscal_month(fiscal_year_start_month)?;
        self.check_dates()?;
        let start_date = year_earlier(self.start_date)?;
        let last_day = year_earlier(pred(self.end_date)?)?;
        let end_date = succ(last_day)?;
        let granularity = match self.granularity {
            Some(g) => {
                let calendar = calendar_dates(g, start_date, fiscal_year_start_month)?;
                (calendar == (start_date, end_date)).then_some(g)
            }
            None => None,
        };
        build(start_date, end_date, tz, granularity)
    }

    /// The period of the same granularity right after this one (used for series of consecutive periods).
    ///
    /// For a calendar period this is the period containing `end_date`; for a
    /// custom range, the same number of days starting at `end_date`.
    pub fn next(&self, tz: Tz, fiscal_year_start_month: u32) -> Result<PeriodRange, PeriodError> {
        check_fiscal_month(fiscal_year_start_month)?;
        self.check_dates()?;
        match self.granularity {
            Some(granularity) => {
                calendar_period(granularity, self.end_date, tz, fiscal_year_start_month)
            }
            None => {
                let days = u64::try_from(self.days()).map_err(|_| self.empty_error())?;
                let end_date = self.end_date.checked_add_days(Days::new(days)).ok_or(
                    PeriodError::OutOfRange {
                        date: self.end_date,
                    },
                )?;
                build(self.end_date, end_date, tz, None)
            }
        }
    }

    /// Number of local days in [start_date, end_date).
    ///
    /// Zero or negative only for a hand-built range whose end is not after its start.
    pub fn days(&self) -> i64 {
        self.end_date
            .signed_duration_since(self.start_date)
            .num_days()
    }

    /// Whether an instant is in [start, end).
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start <= t && t < self.end
    }

    /// Checks that a (possibly hand-built) range is non-empty and within the
    /// supported years before deriving other periods from it.
    fn check_dates(&self) -> Result<(), PeriodError> {
        check_dates(self.start_date, self.end_date)
    }

    fn empty_error(&self) -> PeriodError {
        PeriodError::EmptyRange {
            start_date: self.start_date,
            end_date: self.end_date,
        }
    }
}

/// Resolves the calendar period of `granularity` containing `date`.
fn calendar_period(
    granularity: Granularity,
    date: NaiveDate,
    tz: Tz,
    fiscal_year_start_month: u32,
) -> Result<PeriodRange, PeriodError> {
    check_year(date)?;
    let (start_date, end_date) = calendar_dates(granularity, date, fiscal_year_start_month)?;
    build(start_date, end_date, tz, Some(granularity))
}

/// Resolves fiscal year `year` (the calendar year it starts in), or its
/// quarter `quarter`.
fn fiscal_period(
    year: i32,
    quarter: Option<u32>,
    tz: Tz,
    fiscal_year_start_month: u32,
) -> Result<PeriodRange, PeriodError> {
    if !(MIN_YEAR..=MAX_YEAR).contains(&year) {
        return Err(PeriodError::FiscalYearOutOfRange(year));
    }
    let (granularity, months_in) = match quarter {
        None => (Granularity::FiscalYear, 0),
        Some(q @ 1..=4) => (Granularity::FiscalQuarter, 3 * (q - 1)),
        Some(q) => return Err(PeriodError::InvalidFiscalQuarter(q)),
    };
    let year_start = first_of_month(year, fiscal_year_start_month)?;
    let date = year_start
        .checked_add_months(Months::new(months_in))
        .ok_or(PeriodError::OutOfRange { date: year_start })?;
    calendar_period(granularity, date, tz, fiscal_year_start_month)
}

/// Local dates `[start, end)` of the calendar period of `granularity`
/// containing `date`. `date` must already be within the supported years.
fn calendar_dates(
    granularity: Granularity,
    date: NaiveDate,
    fiscal_year_start_month: u32,
) -> Result<(NaiveDate, NaiveDate), PeriodError> {
    let out_of_range = PeriodError::OutOfRange { date };
    let (start, months) = match granularity {
        Granularity::Day => return Ok((date, succ(date)?)),
        Granularity::Week => {
            let back = u64::from(date.weekday().num_days_from_monday());
            let monday = date
                .checked_sub_days(Days::new(back))
                .ok_or(out_of_range.clone())?;
            let next_monday = monday.checked_add_days(Days::new(7)).ok_or(out_of_range)?;
            return Ok((monday, next_monday));
        }
        Granularity::Month => (first_of_month(date.year(), date.month())?, 1),
        Granularity::Quarter => {
            let first_month = (date.month() - 1) / 3 * 3 + 1;
            (first_of_month(date.year(), first_month)?, 3)
        }
        Granularity::Year => (first_of_month(date.year(), 1)?, 12),
        Granularity::FiscalYear => (fiscal_year_start(date, fiscal_year_start_month)?, 12),
        Granularity::FiscalQuarter => {
            let year_start = fiscal_year_start(date, fiscal_year_start_month)?;
            // Months elapsed since the fiscal year began, 0..=11.
            let into_year = (date.month() + 12 - fiscal_year_start_month) % 12;
            let quarter_start = year_start
                .checked_add_months(Months::new(into_year / 3 * 3))
                .ok_or(out_of_range.clone())?;
            (quarter_start, 3)
        }
    };
    let end = start
        .checked_add_months(Months::new(months))
        .ok_or(out_of_range)?;
    Ok((start, end))
}

/// First day of the fiscal year containing `date`.
fn fiscal_year_start(
    date: NaiveDate,
    fiscal_year_start_month: u32,
) -> Result<NaiveDate, PeriodError> {
    check_fiscal_month(fiscal_year_start_month)?;
    let year = if date.month() >= fiscal_year_start_month {
        date.year()
    } else {
        date.year()
            .checked_sub(1)
            .ok_or(PeriodError::OutOfRange { date })?
    };
    first_of_month(year, fiscal_year_start_month)
}

/// Builds a period from validated local dates, computing its instants.
fn build(
    start_date: NaiveDate,
    end_date: NaiveDate,
    tz: Tz,
    granularity: Option<Granularity>,
) -> Result<PeriodRange, PeriodError> {
    check_dates(start_date, end_date)?;
    Ok(PeriodRange {
        start_date,
        end_date,
        start: local_midnight(start_date, tz),
        end: local_midnight(end_date, tz),
        granularity,
    })
}

/// `[start_date, end_date)` must be non-empty and every date in it within the
/// supported years.
fn check_dates(start_date: NaiveDate, end_date: NaiveDate) -> Result<(), PeriodError> {
    if end_date <= start_date {
        return Err(PeriodError::EmptyRange {
            start_date,
            end_date,
        });
    }
    check_year(start_date)?;
    check_year(pred(end_date)?)
}

fn check_year(date: NaiveDate) -> Result<(), PeriodError> {
    if (MIN_YEAR..=MAX_YEAR).contains(&date.year()) {
        Ok(())
    } else {
        Err(PeriodError::OutOfRange { date })
    }
}

fn check_fiscal_month(month: u32) -> Result<(), PeriodError> {
    if (1..=12).contains(&month) {
        Ok(())
    } else {
        Err(PeriodError::InvalidFiscalMonth(month))
    }
}

fn first_of_month(year: i32, month: u32) -> Result<NaiveDate, PeriodError> {
    NaiveDate::from_ymd_opt(year, month, 1).ok_or(PeriodError::InvalidFiscalMonth(month))
}

fn pred(date: NaiveDate) -> Result<NaiveDate, PeriodError> {
    date.pred_opt().ok_or(PeriodError::OutOfRange { date })
}

fn succ(date: NaiveDate) -> Result<NaiveDate, PeriodError> {
    date.succ_opt().ok_or(PeriodError::OutOfRange { date })
}

/// The same month and day one year earlier; Feb 29 becomes Feb 28.
fn year_earlier(date: NaiveDate) -> Result<NaiveDate, PeriodError> {
    // chrono clamps the day to the end of the target month.
    date.checked_sub_months(Months::new(12))
        .ok_or(PeriodError::OutOfRange { date })
}

/// Local wall-clock time of the UTC time `utc` in `tz`, if representable.
fn local_naive(utc: NaiveDateTime, tz: Tz) -> Option<NaiveDateTime> {
    let offset = tz.offset_from_utc_datetime(&utc).fix();
    utc.checked_add_offset(offset)
}

/// The first instant whose local time in `tz` is at or after `local`.
///
/// Used when `local` falls in a gap: the answer is the instant the clocks
/// jumped over it. Real UTC offsets are far below 26 hours, so the local time
/// is before `local` at `local - 26h` (read as UTC) and after it at
/// `local + 26h`; a binary search over whole seconds finds the crossing.
fn first_instant_at_or_after(local: NaiveDateTime, tz: Tz) -> Option<DateTime<Utc>> {
    const WINDOW: i64 = 26 * 3600;
    let centre = local.and_utc().timestamp();
    let at_or_after = |secs: i64| -> Option<bool> {
        let t = DateTime::from_timestamp(secs, 0)?;
        Some(local_naive(t.naive_utc(), tz)? >= local)
    };
    let mut lo = centre.checked_sub(WINDOW)?;
    let mut hi = centre.checked_add(WINDOW)?;
    if at_or_after(lo)? || !at_or_after(hi)? {
        return None;
    }
    // Invariant: at_or_after(lo) is false, at_or_after(hi) is true.
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if at_or_after(mid)? {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    DateTime::from_timestamp(hi, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::{America, Asia, Australia, Pacific, UTC};

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).expect("valid test date")
    }

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().expect("valid RFC 3339 instant")
    }

    fn cal(granularity: Granularity, date: NaiveDate) -> PeriodSpec {
        PeriodSpec::Calendar { granularity, date }
    }

    fn custom(start_date: NaiveDate, end_date: NaiveDate) -> PeriodSpec {
        PeriodSpec::Custom {
            start_date,
            end_date,
        }
    }

    fn hours(p: &PeriodRange) -> f64 {
        (p.end - p.start).num_seconds() as f64 / 3600.0
    }

    #[test]
    fn month_march_2024_utc_with_previous_and_previous_year() {
        // March has 31 days; in UTC local midnights are UTC midnights.
        let p = cal(Granularity::Month, d(2024, 3, 15))
            .resolve(UTC, 1)
            .unwrap();
        assert_eq!((p.start_date, p.end_date), (d(2024, 3, 1), d(2024, 4, 1)));
        assert_eq!(p.start, t("2024-03-01T00:00:00Z"));
        assert_eq!(p.end, t("2024-04-01T00:00:00Z"));
        assert_eq!(p.granularity, Some(Granularity::Month));
        assert_eq!(p.days(), 31);

        // Previous: February of the leap year 2024, 29 days.
        let prev = p.previous(UTC, 1).unwrap();
        assert_eq!(
            (prev.start_date, prev.end_date),
            (d(2024, 2, 1), d(2024, 3, 1))
        );
        assert_eq!(prev.start, t("2024-02-01T00:00:00Z"));
        assert_eq!(prev.end, t("2024-03-01T00:00:00Z"));
        assert_eq!(prev.days(), 29);

        // Same period last year: March 2023.
        let ly = p.previous_year(UTC, 1).unwrap();
        assert_eq!((ly.start_date, ly.end_date), (d(2023, 3, 1), d(2023, 4, 1)));
        assert_eq!(ly.start, t("2023-03-01T00:00:00Z"));
        assert_eq!(ly.end, t("2023-04-01T00:00:00Z"));
        assert_eq!(ly.granularity, Some(Granularity::Month));
    }

    #[test]
    fn iso_week_monday_first() {
        // 2024-03-06 is a Wednesday; its week runs Mon 03-04 .. Mon 03-11.
        let p = cal(Granularity::Week, d(2024, 3, 6))
            .resolve(UTC, 1)
            .unwrap();
        assert_eq!((p.start_date, p.end_date), (d(2024, 3, 4), d(2024, 3, 11)));
        assert_eq!(p.start, t("2024-03-04T00:00:00Z"));
        assert_eq!(p.end, t("2024-03-11T00:00:00Z"));
        assert_eq!(p.days(), 7);

        // Monday and Sunday of that week resolve to the same week.
        for day in [d(2024, 3, 4), d(2024, 3, 10)] {
            assert_eq!(cal(Granularity::Week, day).resolve(UTC, 1).unwrap(), p);
        }
        // The previous week starts Mon 2024-02-26 (crossing into February).
        let prev = p.previous(UTC, 1).unwrap();
        assert_eq!(
            (prev.start_date, prev.end_date),
            (d(2024, 2, 26), d(2024, 3, 4))
        );
    }

    #[test]
    fn week_spanning_year_end() {
        // 2024-12-31 is a Tuesday; its week is Mon 2024-12-30 .. Mon 2025-01-06.
        let p = cal(Granularity::Week, d(2024, 12, 31))
            .resolve(UTC, 1)
            .unwrap();
        assert_eq!((p.start_date, p.end_date), (d(2024, 12, 30), d(2025, 1, 6)));
        // Sunday 2025-01-05 is in the same week.
        assert_eq!(
            cal(Granularity::Week, d(2025, 1, 5))
                .resolve(UTC, 1)
                .unwrap(),
            p
        );
        // next: Mon 2025-01-06 .. Mon 2025-01-13.
        let n = p.next(UTC, 1).unwrap();
        assert_eq!((n.start_date, n.end_date), (d(2025, 1, 6), d(2025, 1, 13)));
    }

    #[test]
    fn quarter_and_year() {
        // 2024-05-20 is in Q2: Apr 1 .. Jul 1 (30 + 31 + 30 = 91 days).
        let q = cal(Granularity::Quarter, d(2024, 5, 20))
            .resolve(UTC, 1)
            .unwrap();
        assert_eq!((q.start_date, q.end_date), (d(2024, 4, 1), d(2024, 7, 1)));
        assert_eq!(q.days(), 91);
        // Q4 boundaries: Oct 1 .. next Jan 1.
        let q4 = cal(Granularity::Quarter, d(2024, 12, 31))
            .resolve(UTC, 1)
            .unwrap();
        assert_eq!(
            (q4.start_date, q4.end_date),
            (d(2024, 10, 1), d(2025, 1, 1))
        );
        // Previous of Q1 2024 is Q4 2023.
        let q1 = cal(Granularity::Quarter, d(2024, 1, 1))
            .resolve(UTC, 1)
            .unwrap();
        let prev = q1.previous(UTC, 1).unwrap();
        assert_eq!(
            (prev.start_date, prev.end_date),
            (d(2023, 10, 1), d(2024, 1, 1))
        );

        // Leap year 2024 has 366 days.
        let y = cal(Granularity::Year, d(2024, 7, 4))
            .resolve(UTC, 1)
            .unwrap();
        assert_eq!((y.start_date, y.end_date), (d(2024, 1, 1), d(2025, 1, 1)));
        assert_eq!(y.start, t("2024-01-01T00:00:00Z"));
        assert_eq!(y.end, t("2025-01-01T00:00:00Z"));
        assert_eq!(y.days(), 366);
    }

    #[test]
    fn fiscal_periods_starting_in_april() {
        // Feb (2) < Apr (4): the fiscal year began 2023-04-01 and ends 2024-04-01.
        let fy = cal(Granularity::FiscalYear, d(2024, 2, 10))
            .resolve(UTC, 4)
            .unwrap();
        assert_eq!((fy.start_date, fy.end_date), (d(2023, 4, 1), d(2024, 4, 1)));
        assert_eq!(fy.granularity, Some(Granularity::FiscalYear));
        // Apr..Jun, Jul..Sep, Oct..Dec, Jan..Mar: Feb is in the 4th block.
        let fq = cal(Granularity::FiscalQuarter, d(2024, 2, 10))
            .resolve(UTC, 4)
            .unwrap();
        assert_eq!((fq.start_date, fq.end_date), (d(2024, 1, 1), d(2024, 4, 1)));
        // Its previous fiscal quarter is Oct..Dec 2023, the next Apr..Jun 2024.
        let prev = fq.previous(UTC, 4).unwrap();
        assert_eq!(
            (prev.start_date, prev.end_date),
            (d(2023, 10, 1), d(2024, 1, 1))
        );
        let next = fq.next(UTC, 4).unwrap();
        assert_eq!(
            (next.start_date, next.end_date),
            (d(2024, 4, 1), d(2024, 7, 1))
        );
        // 2024-04-01 opens fiscal year 2024-04-01 .. 2025-04-01.
        let fy2 = cal(Granularity::FiscalYear, d(2024, 4, 1))
            .resolve(UTC, 4)
            .unwrap();
        assert_eq!(
            (fy2.start_date, fy2.end_date),
            (d(2024, 4, 1), d(2025, 4, 1))
        );
        assert_eq!(fy.next(UTC, 4).unwrap(), fy2);
    }

    #[test]
    fn fiscal_periods_are_named_by_the_year_they_start_in() {
        let fy = |year, quarter, month| {
            let p = PeriodSpec::Fiscal { year, quarter }
                .resolve(UTC, month)
                .unwrap();
            (p.start_date, p.end_date, p.granularity)
        };
        assert_eq!(
            fy(2025, None, 4),
            (d(2025, 4, 1), d(2026, 4, 1), Some(Granularity::FiscalYear))
        );
        assert_eq!(
            fy(2025, Some(4), 4),
            (
                d(2026, 1, 1),
                d(2026, 4, 1),
                Some(Granularity::FiscalQuarter)
            )
        );
        assert_eq!(
            fy(2025, Some(2), 1),
            (
                d(2025, 4, 1),
                d(2025, 7, 1),
                Some(Granularity::FiscalQuarter)
            )
        );
        assert_eq!(
            fy(2025, Some(4), 10),
            (
                d(2026, 7, 1),
                d(2026, 10, 1),
                Some(Granularity::FiscalQuarter)
            )
        );
        let err = |year, quarter, month| {
            PeriodSpec::Fiscal { year, quarter }
                .resolve(UTC, month)
                .unwrap_err()
        };
        assert_eq!(err(2025, Some(5), 1), PeriodError::InvalidFiscalQuarter(5));
        assert_eq!(err(2025, Some(0), 1), PeriodError::InvalidFiscalQuarter(0));
        assert_eq!(
            err(i32::MAX, None, 1),
            PeriodError::FiscalYearOutOfRange(i32::MAX)
        );
        assert_eq!(err(1989, None, 4), PeriodError::FiscalYearOutOfRange(1989));
        assert_eq!(err(2025, None, 13), PeriodError::InvalidFiscalMonth(13));
        // The last supported fiscal year may not run past the last supported year.
        assert!(matches!(err(2110, None, 4), PeriodError::OutOfRange { .. }));
    }

    #[test]
    fn fiscal_periods_starting_in_january_equal_calendar() {
        for date in [
            d(2024, 1, 1),
            d(2024, 2, 10),
            d(2024, 8, 31),
            d(2024, 12, 31),
        ] {
            let fy = cal(Granularity::FiscalYear, date).resolve(UTC, 1).unwrap();
            let y = cal(Granularity::Year, date).resolve(UTC, 1).unwrap();
            assert_eq!((fy.start_date, fy.end_date), (y.start_date, y.end_date));
            let fq = cal(Granularity::FiscalQuarter, date)
                .resolve(UTC, 1)
                .unwrap();
            let q = cal(Granularity::Quarter, date).resolve(UTC, 1).unwrap();
            assert_eq!((fq.start_date, fq.end_date), (q.start_date, q.end_date));
        }
        // Start month 12: 2024-11-30 is in FY 2023-12-01 .. 2024-12-01,
        // quarter Sep..Nov = 2024-09-01 .. 2024-12-01.
        let fy = cal(Granularity::FiscalYear, d(2024, 11, 30))
            .resolve(UTC, 12)
            .unwrap();
        assert_eq!(
            (fy.start_date, fy.end_date),
            (d(2023, 12, 1), d(2024, 12, 1))
        );
        let fq = cal(Granularity::FiscalQuarter, d(2024, 11, 30))
            .resolve(UTC, 12)
            .unwrap();
        assert_eq!(
            (fq.start_date, fq.end_date),
            (d(2024, 9, 1), d(2024, 12, 1))
        );
    }

    #[test]
    fn new_york_spring_forward_day_is_23_hours() {
        // 2024-03-10: EST (UTC-5) until 02:00, then EDT (UTC-4).
        // Start 00:00 EST = 05:00Z; end 2024-03-11 00:00 EDT = 04:00Z -> 23 h.
        let p = cal(Granularity::Day, d(2024, 3, 10))
            .resolve(America::New_York, 1)
            .unwrap();
        assert_eq!(p.start, t("2024-03-10T05:00:00Z"));
        assert_eq!(p.end, t("2024-03-11T04:00:00Z"));
        assert_eq!(hours(&p), 23.0);
        assert!(p.contains(t("2024-03-11T03:59:59Z")));
        assert!(!p.contains(t("2024-03-11T04:00:00Z")));
        assert!(!p.contains(t("2024-03-10T04:59:59Z")));
    }

    #[test]
    fn new_york_fall_back_day_is_25_hours() {
        // 2024-11-03: EDT (UTC-4) until 02:00, then EST (UTC-5).
        // Start 00:00 EDT = 04:00Z; end 2024-11-04 00:00 EST = 05:00Z -> 25 h.
        let p = cal(Granularity::Day, d(2024, 11, 3))
            .resolve(America::New_York, 1)
            .unwrap();
        assert_eq!(p.start, t("2024-11-03T04:00:00Z"));
        assert_eq!(p.end, t("2024-11-04T05:00:00Z"));
        assert_eq!(hours(&p), 25.0);
    }

    #[test]
    fn new_york_month_across_dst() {
        // 2024-03-01 00:00 EST = 05:00Z; 2024-04-01 00:00 EDT = 04:00Z.
        let p = cal(Granularity::Month, d(2024, 3, 1))
            .resolve(America::New_York, 1)
            .unwrap();
        assert_eq!(p.start, t("2024-03-01T05:00:00Z"));
        assert_eq!(p.end, t("2024-04-01T04:00:00Z"));
        // 31 days minus the hour lost on 03-10.
        assert_eq!(hours(&p), 31.0 * 24.0 - 1.0);
    }

    #[test]
    fn kolkata_half_hour_offset() {
        // IST is UTC+5:30 all year: 2024-03-01 00:00 IST = 2024-02-29 18:30Z.
        let p = cal(Granularity::Day, d(2024, 3, 1))
            .resolve(Asia::Kolkata, 1)
            .unwrap();
        assert_eq!(p.start, t("2024-02-29T18:30:00Z"));
        assert_eq!(p.end, t("2024-03-01T18:30:00Z"));
        assert_eq!(
            local_date(t("2024-02-29T18:30:00Z"), Asia::Kolkata),
            d(2024, 3, 1)
        );
        assert_eq!(
            local_date(t("2024-02-29T18:29:59Z"), Asia::Kolkata),
            d(2024, 2, 29)
        );
    }

    #[test]
    fn adelaide_dst_end_day_is_25_hours() {
        // Adelaide: ACDT (UTC+10:30) until 2024-04-07 03:00, then ACST (UTC+9:30).
        // Start 2024-04-07 00:00 ACDT = 2024-04-06 13:30Z;
        // end 2024-04-08 00:00 ACST = 2024-04-07 14:30Z -> 25 h.
        let p = cal(Granularity::Day, d(2024, 4, 7))
            .resolve(Australia::Adelaide, 1)
            .unwrap();
        assert_eq!(p.start, t("2024-04-06T13:30:00Z"));
        assert_eq!(p.end, t("2024-04-07T14:30:00Z"));
        assert_eq!(hours(&p), 25.0);
        // Its ISO week (Mon 04-01 .. Mon 04-08) is 7 * 24 + 1 hours.
        let w = cal(Granularity::Week, d(2024, 4, 7))
            .resolve(Australia::Adelaide, 1)
            .unwrap();
        assert_eq!((w.start_date, w.end_date), (d(2024, 4, 1), d(2024, 4, 8)));
        assert_eq!(hours(&w), 169.0);
    }

    #[test]
    fn havana_midnight_gap_starts_at_first_valid_instant() {
        // chrono-tz: Havana 2024-03-10 00:00 does not exist (CST UTC-5 jumps to
        // CDT UTC-4 at 00:00, clocks read 01:00). First instant: 01:00 CDT = 05:00Z.
        let midnight = d(2024, 3, 10).and_time(NaiveTime::MIN);
        assert_eq!(
            America::Havana.from_local_datetime(&midnight),
            MappedLocalTime::None
        );
        let p = cal(Granularity::Day, d(2024, 3, 10))
            .resolve(America::Havana, 1)
            .unwrap();
        assert_eq!(p.start, t("2024-03-10T05:00:00Z"));
        // The previous day ends there too (23:59:59 CST = 04:59:59Z is still 03-09).
        let prev = p.previous(America::Havana, 1).unwrap();
        assert_eq!(prev.start, t("2024-03-09T05:00:00Z"));
        assert_eq!(prev.end, p.start);
        assert_eq!(
            local_date(t("2024-03-10T04:59:59Z"), America::Havana),
            d(2024, 3, 9)
        );
        assert_eq!(
            local_date(t("2024-03-10T05:00:00Z"), America::Havana),
            d(2024, 3, 10)
        );
        // 03-10 ends at 03-11 00:00 CDT = 04:00Z: 23 h.
        assert_eq!(p.end, t("2024-03-11T04:00:00Z"));
        assert_eq!(hours(&p), 23.0);
    }

    #[test]
    fn santiago_and_beirut_midnight_gaps() {
        // Santiago 2024-09-08: -04 jumps to -03 at 00:00 (chrono-tz: midnight is
        // None). First instant: 01:00 -03 = 04:00Z (= 00:00 -04).
        let midnight = d(2024, 9, 8).and_time(NaiveTime::MIN);
        assert_eq!(
            America::Santiago.from_local_datetime(&midnight),
            MappedLocalTime::None
        );
        assert_eq!(
            local_midnight(d(2024, 9, 8), America::Santiago),
            t("2024-09-08T04:00:00Z")
        );
        // Beirut 2024-03-31: EET (UTC+2) jumps to EEST (UTC+3) at 00:00.
        // First instant: 01:00 EEST = 2024-03-30 22:00Z.
        assert_eq!(
            local_midnight(d(2024, 3, 31), Asia::Beirut),
            t("2024-03-30T22:00:00Z")
        );
        // Sao Paulo 2018-11-04 (BRT -3 -> BRST -2 at 00:00): 01:00 -2 = 03:00Z.
        assert_eq!(
            local_midnight(d(2018, 11, 4), America::Sao_Paulo),
            t("2018-11-04T03:00:00Z")
        );
    }

    #[test]
    fn skipped_day_is_empty() {
        // Pacific/Apia skipped 2011-12-30 entirely (-10 -> +14 at the end of
        // 12-29). 12-31 00:00 +14 = 2011-12-30T10:00Z, and 12-30 starts there too.
        assert_eq!(
            local_midnight(d(2011, 12, 30), Pacific::Apia),
            t("2011-12-30T10:00:00Z")
        );
        assert_eq!(
            local_midnight(d(2011, 12, 31), Pacific::Apia),
            t("2011-12-30T10:00:00Z")
        );
        let p = cal(Granularity::Day, d(2011, 12, 30))
            .resolve(Pacific::Apia, 1)
            .unwrap();
        assert_eq!(p.start, p.end);
        assert_eq!(p.days(), 1);
    }

    #[test]
    fn havana_ambiguous_midnight_takes_earlier_instant() {
        // Havana 2024-11-03: CDT (UTC-4) falls back to CST (UTC-5) at 01:00 -> 00:00,
        // so 00:00 happens at 04:00Z (CDT) and 05:00Z (CST). Take 04:00Z.
        let midnight = d(2024, 11, 3).and_time(NaiveTime::MIN);
        assert!(matches!(
            America::Havana.from_local_datetime(&midnight),
            MappedLocalTime::Ambiguous(..)
        ));
        let p = cal(Granularity::Day, d(2024, 11, 3))
            .resolve(America::Havana, 1)
            .unwrap();
        assert_eq!(p.start, t("2024-11-03T04:00:00Z"));
        // Ends 2024-11-04 00:00 CST = 05:00Z: 25 h.
        assert_eq!(p.end, t("2024-11-04T05:00:00Z"));
        assert_eq!(hours(&p), 25.0);
        // The previous day ends exactly where this one begins (no overlap, no hole).
        assert_eq!(p.previous(America::Havana, 1).unwrap().end, p.start);
    }

    #[test]
    fn previous_year_of_leap_day() {
        // DAY 2024-02-29 -> 2023-02-28 (one day).
        let p = cal(Granularity::Day, d(2024, 2, 29))
            .resolve(UTC, 1)
            .unwrap();
        let ly = p.previous_year(UTC, 1).unwrap();
        assert_eq!(
            (ly.start_date, ly.end_date),
            (d(2023, 2, 28), d(2023, 3, 1))
        );
        assert_eq!(ly.granularity, Some(Granularity::Day));
        assert_eq!(ly.days(), 1);
    }

    #[test]
    fn previous_year_when_end_is_leap_day() {
        // Custom [2024-02-28, 2024-02-29) holds Feb 28 only; last year: Feb 28 2023,
        // i.e. [2023-02-28, 2023-03-01), not the empty [2023-02-28, 2023-02-28).
        let p = custom(d(2024, 2, 28), d(2024, 2, 29))
            .resolve(UTC, 1)
            .unwrap();
        let ly = p.previous_year(UTC, 1).unwrap();
        assert_eq!(
            (ly.start_date, ly.end_date),
            (d(2023, 2, 28), d(2023, 3, 1))
        );
        assert_eq!(ly.granularity, None);
        // Week Mon 2016-02-22 .. Mon 2016-02-29 -> 2015-02-22 .. 2015-03-01 (7 days).
        let w = cal(Granularity::Week, d(2016, 2, 24))
            .resolve(UTC, 1)
            .unwrap();
        assert_eq!((w.start_date, w.end_date), (d(2016, 2, 22), d(2016, 2, 29)));
        let lw = w.previous_year(UTC, 1).unwrap();
        assert_eq!(
            (lw.start_date, lw.end_date),
            (d(2015, 2, 22), d(2015, 3, 1))
        );
        // 2015-02-22 is a Sunday: the shifted days are not an ISO week, so the
        // result is a plain 7-day range (its previous period is the 7 days before).
        assert_eq!(lw.granularity, None);
    }

    #[test]
    fn previous_year_in_new_york_recomputes_instants() {
        // Custom 2024-03-01..2024-03-11 NY -> 2023-03-01..2023-03-11.
        // 2023-03-01 00:00 EST = 05:00Z; 2023-03-11 00:00 EST = 05:00Z
        // (DST began 2023-03-12, after the range).
        let p = custom(d(2024, 3, 1), d(2024, 3, 11))
            .resolve(America::New_York, 1)
            .unwrap();
        let ly = p.previous_year(America::New_York, 1).unwrap();
        assert_eq!(ly.start, t("2023-03-01T05:00:00Z"));
        assert_eq!(ly.end, t("2023-03-11T05:00:00Z"));
    }

    #[test]
    fn custom_range_previous_and_next() {
        // 2024-03-01..2024-03-11 is 10 days; the 10 days before: 2024-02-20..2024-03-01
        // (Feb 20..29 inclusive is 10 days in the leap year).
        let p = custom(d(2024, 3, 1), d(2024, 3, 11))
            .resolve(UTC, 1)
            .unwrap();
        assert_eq!(p.days(), 10);
        assert_eq!(p.granularity, None);
        let prev = p.previous(UTC, 1).unwrap();
        assert_eq!(
            (prev.start_date, prev.end_date),
            (d(2024, 2, 20), d(2024, 3, 1))
        );
        assert_eq!(prev.start, t("2024-02-20T00:00:00Z"));
        assert_eq!(prev.end, t("2024-03-01T00:00:00Z"));
        assert_eq!(prev.granularity, None);
        let next = p.next(UTC, 1).unwrap();
        assert_eq!(
            (next.start_date, next.end_date),
            (d(2024, 3, 11), d(2024, 3, 21))
        );
    }

    #[test]
    fn next_of_december_is_january() {
        // MONTH Dec 2024 -> Jan 2025 = [2025-01-01, 2025-02-01).
        let p = cal(Granularity::Month, d(2024, 12, 5))
            .resolve(UTC, 1)
            .unwrap();
        let n = p.next(UTC, 1).unwrap();
        assert_eq!((n.start_date, n.end_date), (d(2025, 1, 1), d(2025, 2, 1)));
        assert_eq!(n.start, t("2025-01-01T00:00:00Z"));
        assert_eq!(n.end, t("2025-02-01T00:00:00Z"));
        assert_eq!(n.granularity, Some(Granularity::Month));
        // Walking a series of 12 months returns to the same month a year later.
        let mut m = p;
        for _ in 0..12 {
            m = m.next(UTC, 1).unwrap();
        }
        assert_eq!((m.start_date, m.end_date), (d(2025, 12, 1), d(2026, 1, 1)));
    }

    #[test]
    fn inverted_or_empty_custom_range_is_an_error() {
        let err = custom(d(2024, 3, 11), d(2024, 3, 1))
            .resolve(UTC, 1)
            .unwrap_err();
        assert_eq!(
            err,
            PeriodError::EmptyRange {
                start_date: d(2024, 3, 11),
                end_date: d(2024, 3, 1)
            }
        );
        assert!(
            err.to_string()
                .contains("must be after start date 2024-03-11")
        );
        assert!(matches!(
            custom(d(2024, 3, 1), d(2024, 3, 1)).resolve(UTC, 1),
            Err(PeriodError::EmptyRange { .. })
        ));
        // A hand-built inverted range cannot be walked either.
        let bad = PeriodRange {
            start_date: d(2024, 3, 11),
            end_date: d(2024, 3, 1),
            start: t("2024-03-11T00:00:00Z"),
            end: t("2024-03-01T00:00:00Z"),
            granularity: None,
        };
        assert!(matches!(
            bad.previous(UTC, 1),
            Err(PeriodError::EmptyRange { .. })
        ));
        assert!(matches!(
            bad.next(UTC, 1),
            Err(PeriodError::EmptyRange { .. })
        ));
        assert!(matches!(
            bad.previous_year(UTC, 1),
            Err(PeriodError::EmptyRange { .. })
        ));
    }

    #[test]
    fn out_of_range_years_are_errors_without_panics() {
        let extremes = [
            NaiveDate::MIN,
            NaiveDate::MAX,
            d(0, 1, 1),
            d(-1, 12, 31),
            d(1989, 12, 31),
            d(2111, 1, 1),
            d(262_142, 12, 31),
        ];
        let granularities = [
            Granularity::Day,
            Granularity::Week,
            Granularity::Month,
            Granularity::Quarter,
            Granularity::Year,
            Granularity::FiscalQuarter,
            Granularity::FiscalYear,
        ];
        for &date in &extremes {
            for g in granularities {
                assert!(matches!(
                    cal(g, date).resolve(America::New_York, 4),
                    Err(PeriodError::OutOfRange { .. })
                ));
            }
            assert!(custom(date, d(2024, 1, 1)).resolve(UTC, 1).is_err());
            if date != d(2111, 1, 1) {
                assert!(custom(d(2024, 1, 1), date).resolve(UTC, 1).is_err());
            }
            for tz in [UTC, America::New_York, Pacific::Kiritimati, Pacific::Niue] {
                let m = local_midnight(date, tz);
                let _ = local_date(m, tz);
            }
        }
        for tz in [UTC, America::New_York, Pacific::Kiritimati, Asia::Kolkata] {
            let _ = local_date(DateTime::<Utc>::MAX_UTC, tz);
            let _ = local_date(DateTime::<Utc>::MIN_UTC, tz);
        }
        // An exclusive end of 2111-01-01 is fine: the last local day is 2110-12-31.
        let tail = custom(d(2110, 12, 1), d(2111, 1, 1))
            .resolve(UTC, 1)
            .unwrap();
        assert_eq!(tail.days(), 31);
        assert!(
            custom(d(2110, 12, 1), d(2111, 1, 2))
                .resolve(UTC, 1)
                .is_err()
        );
        // The message names the date and the supported years.
        let err = cal(Granularity::Day, d(1989, 12, 31))
            .resolve(UTC, 1)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "date 1989-12-31 is outside the supported years 1990 to 2110"
        );

        // Edges: the first and last supported days resolve...
        let first = cal(Granularity::Day, d(1990, 1, 1))
            .resolve(UTC, 1)
            .unwrap();
        let last = cal(Granularity::Year, d(2110, 6, 1))
            .resolve(UTC, 1)
            .unwrap();
        assert_eq!(last.end_date, d(2111, 1, 1));
        // ...but stepping past them is an error, not a panic.
        assert!(matches!(
            first.previous(UTC, 1),
            Err(PeriodError::OutOfRange { .. })
        ));
        assert!(matches!(
            first.previous_year(UTC, 1),
            Err(PeriodError::OutOfRange { .. })
        ));
        assert!(matches!(
            last.next(UTC, 1),
            Err(PeriodError::OutOfRange { .. })
        ));
        // A fiscal year starting in April that contains 1990-02-10 began 1989-04-01.
        assert!(matches!(
            cal(Granularity::FiscalYear, d(1990, 2, 10)).resolve(UTC, 4),
            Err(PeriodError::OutOfRange { .. })
        ));
        // Hand-built ranges at chrono's limits fail cleanly.
        let huge = PeriodRange {
            start_date: NaiveDate::MIN,
            end_date: NaiveDate::MAX,
            start: DateTime::<Utc>::MIN_UTC,
            end: DateTime::<Utc>::MAX_UTC,
            granularity: None,
        };
        assert!(huge.previous(UTC, 1).is_err());
        assert!(huge.next(UTC, 1).is_err());
        assert!(huge.previous_year(UTC, 1).is_err());
        assert!(huge.days() > 0);
    }

    #[test]
    fn invalid_fiscal_month_is_an_error() {
        for month in [0, 13, u32::MAX] {
            let err = cal(Granularity::FiscalYear, d(2024, 2, 10))
                .resolve(UTC, month)
                .unwrap_err();
            assert_eq!(err, PeriodError::InvalidFiscalMonth(month));
        }
        assert_eq!(
            PeriodError::InvalidFiscalMonth(13).to_string(),
            "fiscal year start month must be between 1 and 12, got 13"
        );
        let p = cal(Granularity::Month, d(2024, 2, 10))
            .resolve(UTC, 1)
            .unwrap();
        assert_eq!(p.previous(UTC, 0), Err(PeriodError::InvalidFiscalMonth(0)));
        assert_eq!(p.next(UTC, 13), Err(PeriodError::InvalidFiscalMonth(13)));
    }

    #[test]
    fn overlap_days_cases() {
        // Partial: [03-01, 03-11) and [03-05, 03-20) share 03-05..03-10 = 6 days.
        assert_eq!(
            overlap_days(d(2024, 3, 1), d(2024, 3, 11), d(2024, 3, 5), d(2024, 3, 20)),
            6
        );
        // Same, arguments swapped.
        assert_eq!(
            overlap_days(d(2024, 3, 5), d(2024, 3, 20), d(2024, 3, 1), d(2024, 3, 11)),
            6
        );
        // Disjoint.
        assert_eq!(
            overlap_days(d(2024, 3, 1), d(2024, 3, 5), d(2024, 4, 1), d(2024, 4, 5)),
            0
        );
        // Adjacent (end exclusive) shares nothing.
        assert_eq!(
            overlap_days(d(2024, 3, 1), d(2024, 3, 5), d(2024, 3, 5), d(2024, 3, 9)),
            0
        );
        // Containment: February 2024 (29 days) inside Q1 2024.
        assert_eq!(
            overlap_days(d(2024, 1, 1), d(2024, 4, 1), d(2024, 2, 1), d(2024, 3, 1)),
            29
        );
        assert_eq!(
            overlap_days(d(2024, 2, 1), d(2024, 3, 1), d(2024, 1, 1), d(2024, 4, 1)),
            29
        );
        // Identical ranges.
        assert_eq!(
            overlap_days(d(2024, 1, 1), d(2025, 1, 1), d(2024, 1, 1), d(2025, 1, 1)),
            366
        );
        // An inverted range overlaps nothing; extremes do not overflow.
        assert_eq!(
            overlap_days(d(2024, 3, 9), d(2024, 3, 1), d(2024, 3, 1), d(2024, 3, 9)),
            0
        );
        assert!(
            overlap_days(
                NaiveDate::MIN,
                NaiveDate::MAX,
                NaiveDate::MIN,
                NaiveDate::MAX
            ) > 0
        );
    }

    #[test]
    fn consecutive_days_tile_without_gaps() {
        // Across a year of New York days (two DST changes), each day's end is the
        // next day's start and every day is 23, 24 or 25 h long.
        let mut p = cal(Granularity::Day, d(2024, 1, 1))
            .resolve(America::New_York, 1)
            .unwrap();
        let mut lengths = std::collections::BTreeMap::new();
        for _ in 0..366 {
            let n = p.next(America::New_York, 1).unwrap();
            assert_eq!(n.start, p.end);
            *lengths.entry(hours(&p) as i64).or_insert(0) += 1;
            p = n;
        }
        // 2024: one 23 h day (03-10), one 25 h day (11-03), the rest 24 h.
        assert_eq!(lengths.get(&23), Some(&1));
        assert_eq!(lengths.get(&25), Some(&1));
        assert_eq!(lengths.get(&24), Some(&364));
    }
}
