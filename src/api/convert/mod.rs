//! Conversions between proto messages and domain types: "parse, don't validate".
//!
//! Every proto record is converted once, at the API edge, into a validated
//! [`domain::Record`]; a violation names the full field path
//! (`records[3].deal.closed_at`) and says why in words. The rules themselves
//! live in the domain ([`crate::domain::rules`]); here they meet the proto
//! fields:
//!
//! * ids (and every non-empty reference id): 1–128 characters of `[A-Za-z0-9._:-]`;
//!   an empty reference means absent (`None`);
//! * required fields present; instants within [2000-01-01T00:00:00Z,
//!   2100-01-01T00:00:00Z) with nanos in `0..1_000_000_000`; local dates within
//!   [2000-01-01, 2100-01-01] and ranges with `end_date > start_date`;
//! * money in the tenant's currency (violation at `<field>.currency_code`);
//!   amounts ≥ 0, orders > 0 (violation at the money field itself, e.g.
//!   `records[0].order.amount`, as the end-to-end check expects);
//! * enums: `*_UNSPECIFIED` and unknown numbers are rejected, except
//!   `ORDER_KIND_UNSPECIFIED`, which means NEW;
//! * ordering rules between instants (closed_at ≥ created_at, …);
//! * free-text categories trimmed and lower-cased; names must not be blank;
//!   every free text is capped at [`MAX_TEXT_LEN`] characters to bound storage.
//!
//! Conversions that need the tenant's currency are plain functions taking it
//! (a `TryFrom` impl cannot carry that context). Domain → proto conversions
//! (for export) are exact inverses for already-normalised input.
//!
//! One module per part of the contract:
//!
//! * [`records`] — `Record` ↔ [`domain::Record`], record types and ids as sent;
//! * [`settings`] — `TenantSettings` ↔ [`domain::TenantSettings`];
//! * [`kpi`] — KPI requests into scopes, periods and selections, and bundles,
//!   values and the catalog back into proto;
//! * [`admin`] — API keys;
//! * [`time`] — instants and dates, both ways (used by all of the above).
//!
//! The server's handlers, the CLI and the bench all convert through here.

pub mod admin;
pub mod kpi;
pub mod records;
pub mod settings;
pub mod time;

pub use records::{
    proto_record_identity, record_from_proto, record_to_proto, record_type_from_proto,
    record_type_to_proto,
};
pub use settings::{settings_from_proto, settings_to_proto};

use crate::domain::rules::id_problem;
use crate::error::Error;
pub use crate::error::quote;

/// One invalid field: its full path and why it is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Full path of the field, e.g. `records[3].deal.closed_at`.
    pub field: String,
    /// Why, in words.
    pub reason: String,
}

impl FieldViolation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        FieldViolation {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<FieldViolation> for Error {
    fn from(v: FieldViolation) -> Self {
        Error::InvalidArgument {
            field: v.field,
            reason: v.reason,
        }
    }
}

/// Turns a list of violations into one error: INVALID_ARGUMENT with one
/// `BadRequest` field violation each.
pub fn violations_error(mut violations: Vec<FieldViolation>) -> Error {
    if violations.len() == 1
        && let Some(v) = violations.pop()
    {
        return v.into();
    }
    Error::InvalidFields(
        violations
            .into_iter()
            .map(|v| (v.field, v.reason))
            .collect(),
    )
}

/// A converted value or the violation that stops it.
pub type Parsed<T> = Result<T, FieldViolation>;

/// Validates an id at `path`.
pub fn parse_id(path: &str, value: String) -> Result<String, FieldViolation> {
    match id_problem(&value) {
        None => Ok(value),
        Some(reason) => Err(FieldViolation::new(path, reason)),
    }
}

/// Why a required proto enum value is refused.
pub fn enum_reason(value: i32) -> String {
    if value == 0 {
        "is required".to_string()
    } else {
        format!("unknown value {value}")
    }
}

#[cfg(test)]
mod tests;
