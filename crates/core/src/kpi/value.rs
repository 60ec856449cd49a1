//! KPI values as the engine returns them (converted to proto at the API edge).

use super::catalog::Unit;

/// Why a whole value beyond the exact 64-bit range is undefined.
pub const OVERFLOW_REASON: &str =
    "the sum exceeds the largest exact value (9223372036854775807 minor units or units)";

/// A KPI's value, with what it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct KpiValue {
    /// KPI id, e.g. `revenue`.
    pub kpi_id: &'static str,
    /// Unit of the value.
    pub unit: Unit,
    /// The value; `None` when undefined (see `undefined_reason`). Never NaN.
    pub value: Option<f64>,
    /// The exact value when it is a whole number (counts, money sums, duration sums).
    pub exact_value: Option<i64>,
    /// Why the value is undefined; `None` when defined.
    pub undefined_reason: Option<String>,
    /// Numerator of a ratio or mean.
    pub numerator: Option<f64>,
    /// Denominator of a ratio or mean.
    pub denominator: Option<f64>,
    /// The comparison, when one was asked for.
    pub comparison: Option<ComparisonValue>,
}

/// A value's comparison with another period.
#[derive(Debug, Clone, PartialEq)]
pub struct ComparisonValue {
    /// The value in the comparison period; `None` when undefined.
    pub value: Option<f64>,
    /// Why the comparison value is undefined.
    pub undefined_reason: Option<String>,
    /// (value − comparison) ÷ |comparison|; `None` when the comparison is 0
    /// or either value is undefined.
    pub relative_change: Option<f64>,
    /// value − comparison (for a ratio: the change in ratio units, shown as
    /// percentage points); `None` when either value is undefined.
    pub absolute_change: Option<f64>,
}

impl KpiValue {
    /// A whole-number value (count, money sum, duration sum). Sums are
    /// added in 128 bits, so they never wrap; one that does not fit the
    /// exact 64-bit value (a money sum beyond 2^63 − 1 minor units) is
    /// undefined with that reason rather than a rounded approximation.
    pub fn whole(kpi_id: &'static str, unit: Unit, n: i128) -> Self {
        let Ok(exact) = i64::try_from(n) else {
            return Self::undefined(kpi_id, unit, OVERFLOW_REASON);
        };
        KpiValue {
            kpi_id,
            unit,
            value: Some(n as f64),
            exact_value: Some(exact),
            undefined_reason: None,
            numerator: None,
            denominator: None,
            comparison: None,
        }
    }

    /// A value that is not necessarily whole (e.g. a prorated target);
    /// `exact_value` is set only when `exact` says the value is whole.
    pub fn real(kpi_id: &'static str, unit: Unit, x: f64, exact: Option<i128>) -> Self {
        if !x.is_finite() {
            return Self::undefined(kpi_id, unit, "the value is not a finite number");
        }
        KpiValue {
            exact_value: exact.and_then(|n| i64::try_from(n).ok()),
            value: Some(x),
            ..Self::undefined(kpi_id, unit, "")
        }
        .defined()
    }

    /// An undefined value with a reason in words.
    pub fn undefined(kpi_id: &'static str, unit: Unit, reason: &str) -> Self {
        KpiValue {
            kpi_id,
            unit,
            value: None,
            exact_value: None,
            undefined_reason: Some(reason.to_string()),
            numerator: None,
            denominator: None,
            comparison: None,
        }
    }

    /// numerator ÷ denominator; undefined with `reason` when the denominator
    /// is 0 (numerator and denominator are reported either way).
    pub fn ratio(kpi_id: &'static str, unit: Unit, num: f64, den: f64, reason: &str) -> Self {
        let mut v = if den == 0.0 {
            Self::undefined(kpi_id, unit, reason)
        } else {
            let x = num / den;
            if x.is_finite() {
                Self::real(kpi_id, unit, x, None)
            } else {
                Self::undefined(kpi_id, unit, "the value is not a finite number")
            }
        };
        if num.is_finite() && den.is_finite() {
            v.numerator = Some(num);
            v.denominator = Some(den);
        }
        v
    }

    fn defined(mut self) -> Self {
        self.undefined_reason = None;
        self
    }
}

/// (value − comparison) ÷ |comparison|, `None` when the comparison is 0 or
/// either is undefined. Dividing by the magnitude keeps the sign meaning
/// "went up": from −10 to −5 is +50 %, not −50 % (docs/kpis.md).
pub fn relative_change(value: Option<f64>, comparison: Option<f64>) -> Option<f64> {
    let (v, c) = (value?, comparison?);
    if c == 0.0 {
        return None;
    }
    let r = (v - c) / c.abs();
    r.is_finite().then_some(r)
}

/// value − comparison, `None` when either is undefined.
pub fn absolute_change(value: Option<f64>, comparison: Option<f64>) -> Option<f64> {
    let d = value? - comparison?;
    d.is_finite().then_some(d)
}
