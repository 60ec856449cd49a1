//! Instants and local dates, proto ↔ domain: the one place where
//! `google.protobuf.Timestamp` and `salesmetrics.v1.Date` meet chrono.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use prost_types::Timestamp;

use crate::domain::Instant;
use crate::domain::rules::{date_from_parts, instant_from_unix};
use crate::proto::v1 as pb;

/// A proto timestamp as an instant within the supported years; otherwise
/// what is wrong, in words.
pub fn instant_from_proto(ts: &Timestamp) -> Result<Instant, &'static str> {
    instant_from_unix(ts.seconds, ts.nanos)
}

/// A proto date as a local date within the supported years; otherwise what
/// is wrong, in words.
pub fn date_from_proto(d: &pb::Date) -> Result<NaiveDate, &'static str> {
    date_from_parts(d.year, d.month, d.day)
}

/// An instant as a proto timestamp.
pub fn timestamp_to_proto(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        // Below 1e9 except within a leap second, which chrono never builds
        // from a Unix timestamp.
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// Nanoseconds since the Unix epoch (as stored for API keys) as a proto
/// timestamp.
pub fn timestamp_from_nanos(nanos: i64) -> Timestamp {
    Timestamp {
        seconds: nanos.div_euclid(1_000_000_000),
        // The remainder is within 0..1e9, so it fits.
        nanos: i32::try_from(nanos.rem_euclid(1_000_000_000)).unwrap_or(0),
    }
}

/// A local date as a proto date.
pub fn date_to_proto(d: NaiveDate) -> pb::Date {
    pb::Date {
        year: d.year(),
        month: i32::try_from(d.month()).unwrap_or(0),
        day: i32::try_from(d.day()).unwrap_or(0),
    }
}
