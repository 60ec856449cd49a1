//! Conversions between proto messages and domain types: "parse, don't validate".
//!
//! Every proto record is converted once, at the API edge, into a validated
//! [`domain::Record`]; a violation names the full field path
//! (`records[3].deal.closed_at`) and says why in words. The rules are those of
//! SPEC §2–§4:
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

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Tz;
use prost_types::Timestamp;

use crate::domain::{self, Instant, Record, RecordType};
use crate::error::Error;
use crate::proto::v1 as pb;
use pb::record::Record as PbRecord;

/// Longest accepted id, in characters.
pub const MAX_ID_LEN: usize = 128;
/// Longest accepted free text (names, e-mails, categories), in characters.
pub const MAX_TEXT_LEN: usize = 256;
/// Most pipeline stages or referral sources a tenant may configure.
pub const MAX_SETTINGS_LIST_LEN: usize = 100;
/// First accepted instant, 2000-01-01T00:00:00Z, in Unix seconds.
pub const MIN_INSTANT_SECONDS: i64 = 946_684_800;
/// First instant no longer accepted, 2100-01-01T00:00:00Z, in Unix seconds.
pub const END_INSTANT_SECONDS: i64 = 4_102_444_800;

/// Active ISO 4217 currency codes accepted as a tenant's reporting currency
/// (ISO 4217 list one as of 2025). Precious metals (XAU, XAG, XPD, XPT), bond
/// market units (XBA–XBD), the SDR and other supranational units (XDR, XSU,
/// XUA) and the testing and "no currency" codes (XTS, XXX) are left out: none
/// of them is money a business reports sales in.
pub const ISO_4217_CODES: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD",
    "CAD", "CDF", "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU", "CRC", "CUC", "CUP",
    "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP",
    "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS",
    "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW",
    "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD",
    "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD", "NGN",
    "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR",
    "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SLL",
    "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY",
    "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS", "VED", "VES",
    "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG", "ZWL",
];

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

type Parsed<T> = Result<T, FieldViolation>;

/// Whether `s` is a well-formed id: 1–128 characters of `[A-Za-z0-9._:-]`.
pub fn is_valid_id(s: &str) -> bool {
    id_problem(s).is_none()
}

fn id_problem(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("is required".to_string());
    }
    let len = s.chars().count();
    if len > MAX_ID_LEN {
        return Some(format!(
            "must be at most {MAX_ID_LEN} characters, got {len}"
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
    {
        return Some(format!(
            "contains {c:?}; only A-Z, a-z, 0-9, '.', '_', ':' and '-' are allowed"
        ));
    }
    None
}

/// Validates an id at `path`.
pub fn parse_id(path: &str, value: String) -> Result<String, FieldViolation> {
    match id_problem(&value) {
        None => Ok(value),
        Some(reason) => Err(FieldViolation::new(path, reason)),
    }
}

/// Shortens client text echoed in a reason so that errors stay small.
fn quote(s: &str) -> String {
    const MAX: usize = 16;
    if s.chars().count() <= MAX {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head:?}…")
    }
}

/// The fields of one message at `base` (e.g. `records[3].deal`), with the
/// tenant's currency for money fields.
struct Fields<'a> {
    base: String,
    currency: &'a str,
}

impl Fields<'_> {
    fn path(&self, field: &str) -> String {
        format!("{}.{}", self.base, field)
    }

    fn err(&self, field: &str, reason: impl Into<String>) -> FieldViolation {
        FieldViolation::new(self.path(field), reason)
    }

    fn id(&self, field: &str, value: String) -> Parsed<String> {
        parse_id(&self.path(field), value)
    }

    fn reference(&self, field: &str, value: String) -> Parsed<Option<String>> {
        if value.is_empty() {
            Ok(None)
        } else {
            self.id(field, value).map(Some)
        }
    }

    fn instant(&self, field: &str, value: Option<Timestamp>) -> Parsed<Instant> {
        match value {
            None => Err(self.err(field, "is required")),
            Some(ts) => self.timestamp(field, ts),
        }
    }

    fn optional_instant(&self, field: &str, value: Option<Timestamp>) -> Parsed<Option<Instant>> {
        value.map(|ts| self.timestamp(field, ts)).transpose()
    }

    fn timestamp(&self, field: &str, ts: Timestamp) -> Parsed<Instant> {
        let nanos = u32::try_from(ts.nanos)
            .ok()
            .filter(|n| *n < 1_000_000_000)
            .ok_or_else(|| self.err(field, "nanos must be within 0..=999999999"))?;
        if !(MIN_INSTANT_SECONDS..END_INSTANT_SECONDS).contains(&ts.seconds) {
            return Err(self.err(
                field,
                "must be within [2000-01-01T00:00:00Z, 2100-01-01T00:00:00Z)",
            ));
        }
        DateTime::<Utc>::from_timestamp(ts.seconds, nanos).ok_or_else(|| {
            self.err(
                field,
                "must be within [2000-01-01T00:00:00Z, 2100-01-01T00:00:00Z)",
            )
        })
    }

    /// `value`, if present, must not be before `earlier` (the instant of `earlier_field`).
    fn not_before(
        &self,
        field: &str,
        value: Option<Instant>,
        earlier_field: &str,
        earlier: Instant,
    ) -> Parsed<()> {
        match value {
            Some(t) if t < earlier => {
                Err(self.err(field, format!("must not be before {earlier_field}")))
            }
            _ => Ok(()),
        }
    }

    /// A required money amount in the tenant's currency, in minor units.
    fn money(&self, field: &str, value: Option<pb::Money>) -> Parsed<i64> {
        let money = value.ok_or_else(|| self.err(field, "is required"))?;
        if money.currency_code != self.currency {
            let reason = if money.currency_code.is_empty() {
                format!("is required (the tenant's currency is {})", self.currency)
            } else {
                format!(
                    "must be the tenant's currency {}, got {}",
                    self.currency,
                    quote(&money.currency_code)
                )
            };
            return Err(self.err(&format!("{field}.currency_code"), reason));
        }
        Ok(money.minor_units)
    }

    /// Free text is bounded in length and free of control characters (a NUL
    /// byte, for one, cannot be stored in PostgreSQL text, and both backends
    /// must accept exactly the same input).
    fn text_len(&self, field: &str, value: &str) -> Parsed<()> {
        if value.chars().any(char::is_control) {
            return Err(self.err(field, "must not contain control characters"));
        }
        let len = value.chars().count();
        if len > MAX_TEXT_LEN {
            return Err(self.err(
                field,
                format!("must be at most {MAX_TEXT_LEN} characters, got {len}"),
            ));
        }
        Ok(())
    }

    /// A required display name: kept as sent, must not be blank.
    fn name(&self, field: &str, value: String) -> Parsed<String> {
        if value.trim().is_empty() {
            return Err(self.err(field, "is required and must not be blank"));
        }
        self.text_len(field, &value)?;
        Ok(value)
    }

    /// Optional free text kept as sent; empty means absent.
    fn optional_text(&self, field: &str, value: String) -> Parsed<Option<String>> {
        if value.is_empty() {
            return Ok(None);
        }
        self.text_len(field, &value)?;
        Ok(Some(value))
    }

    /// An optional category, trimmed and lower-cased; blank means absent.
    fn category(&self, field: &str, value: &str) -> Parsed<Option<String>> {
        let normalized = normalize_category(value);
        if normalized.is_empty() {
            return Ok(None);
        }
        self.text_len(field, &normalized)?;
        Ok(Some(normalized))
    }

    /// A required category, trimmed and lower-cased, not blank.
    fn required_category(&self, field: &str, value: &str) -> Parsed<String> {
        self.category(field, value)?
            .ok_or_else(|| self.err(field, "is required and must not be blank"))
    }

    fn date(&self, field: &str, value: Option<pb::Date>) -> Parsed<NaiveDate> {
        let d = value.ok_or_else(|| self.err(field, "is required"))?;
        let date = u32::try_from(d.month)
            .ok()
            .zip(u32::try_from(d.day).ok())
            .and_then(|(m, day)| NaiveDate::from_ymd_opt(d.year, m, day))
            .ok_or_else(|| self.err(field, "is not a valid calendar date"))?;
        if !(2000..=2099).contains(&date.year())
            && date != NaiveDate::from_ymd_opt(2100, 1, 1).unwrap_or(date)
        {
            return Err(self.err(field, "must be within [2000-01-01, 2100-01-01]"));
        }
        Ok(date)
    }

    /// `[start_date, end_date)` with `end_date > start_date`.
    fn date_range(
        &self,
        start: Option<pb::Date>,
        end: Option<pb::Date>,
    ) -> Parsed<(NaiveDate, NaiveDate)> {
        let start = self.date("start_date", start)?;
        let end = self.date("end_date", end)?;
        if end <= start {
            return Err(self.err("end_date", "must be after start_date"));
        }
        Ok((start, end))
    }

    fn non_negative(&self, field: &str, value: i64) -> Parsed<i64> {
        if value < 0 {
            return Err(self.err(field, format!("must be >= 0, got {value}")));
        }
        Ok(value)
    }
}

/// Trims and lower-cases a free-text category.
pub fn normalize_category(value: &str) -> String {
    value.trim().to_lowercase()
}

fn enum_reason(value: i32) -> String {
    if value == 0 {
        "is required".to_string()
    } else {
        format!("unknown value {value}")
    }
}

/// Converts the proto record at `records[index]` into a validated domain
/// record, checking money against the tenant's `currency`.
pub fn record_from_proto(
    index: usize,
    record: pb::Record,
    currency: &str,
) -> Result<Record, FieldViolation> {
    let base = format!("records[{index}]");
    let Some(inner) = record.record else {
        return Err(FieldViolation::new(
            base,
            "is empty; set exactly one record type (team, rep, deal, …)",
        ));
    };
    let f = |name: &str| Fields {
        base: format!("{base}.{name}"),
        currency,
    };
    Ok(match inner {
        PbRecord::Team(m) => Record::Team(team(&f("team"), m)?),
        PbRecord::TeamMembership(m) => {
            Record::TeamMembership(team_membership(&f("team_membership"), m)?)
        }
        PbRecord::Rep(m) => Record::Rep(rep(&f("rep"), m)?),
        PbRecord::Customer(m) => Record::Customer(customer(&f("customer"), m)?),
        PbRecord::Lead(m) => Record::Lead(lead(&f("lead"), m)?),
        PbRecord::Deal(m) => Record::Deal(deal(&f("deal"), m)?),
        PbRecord::DealStageChange(m) => {
            Record::DealStageChange(deal_stage_change(&f("deal_stage_change"), m)?)
        }
        PbRecord::Order(m) => Record::Order(order(&f("order"), m)?),
        PbRecord::SubscriptionChange(m) => {
            Record::SubscriptionChange(subscription_change(&f("subscription_change"), m)?)
        }
        PbRecord::Activity(m) => Record::Activity(activity(&f("activity"), m)?),
        PbRecord::Inquiry(m) => Record::Inquiry(inquiry(&f("inquiry"), m)?),
        PbRecord::CsatResponse(m) => Record::CsatResponse(csat_response(&f("csat_response"), m)?),
        PbRecord::Target(m) => Record::Target(target(&f("target"), m)?),
        PbRecord::Spend(m) => Record::Spend(spend(&f("spend"), m)?),
    })
}

fn team(f: &Fields, m: pb::Team) -> Parsed<domain::Team> {
    Ok(domain::Team {
        id: f.id("id", m.id)?,
        version: m.version,
        name: f.name("name", m.name)?,
        parent_team_id: f.reference("parent_team_id", m.parent_team_id)?,
    })
}

fn team_membership(f: &Fields, m: pb::TeamMembership) -> Parsed<domain::TeamMembership> {
    Ok(domain::TeamMembership {
        id: f.id("id", m.id)?,
        version: m.version,
        rep_id: f.id("rep_id", m.rep_id)?,
        team_id: f.reference("team_id", m.team_id)?,
        effective_at: f.instant("effective_at", m.effective_at)?,
    })
}

fn rep(f: &Fields, m: pb::Rep) -> Parsed<domain::Rep> {
    Ok(domain::Rep {
        id: f.id("id", m.id)?,
        version: m.version,
        name: f.name("name", m.name)?,
        email: f.optional_text("email", m.email)?,
    })
}

fn customer(f: &Fields, m: pb::Customer) -> Parsed<domain::Customer> {
    let id = f.id("id", m.id)?;
    let acquired_at = f.instant("acquired_at", m.acquired_at)?;
    let churned_at = f.optional_instant("churned_at", m.churned_at)?;
    f.not_before("churned_at", churned_at, "acquired_at", acquired_at)?;
    Ok(domain::Customer {
        id,
        version: m.version,
        acquired_at,
        churned_at,
        owner_rep_id: f.reference("owner_rep_id", m.owner_rep_id)?,
        source: f.category("source", &m.source)?,
        name: f.optional_text("name", m.name)?,
    })
}

fn lead(f: &Fields, m: pb::Lead) -> Parsed<domain::Lead> {
    let id = f.id("id", m.id)?;
    let source = f.required_category("source", &m.source)?;
    let created_at = f.instant("created_at", m.created_at)?;
    let first_response_at = f.optional_instant("first_response_at", m.first_response_at)?;
    f.not_before(
        "first_response_at",
        first_response_at,
        "created_at",
        created_at,
    )?;
    let converted_at = f.optional_instant("converted_at", m.converted_at)?;
    f.not_before("converted_at", converted_at, "created_at", created_at)?;
    Ok(domain::Lead {
        id,
        version: m.version,
        source,
        created_at,
        owner_rep_id: f.reference("owner_rep_id", m.owner_rep_id)?,
        first_response_at,
        converted_at,
        customer_id: f.reference("customer_id", m.customer_id)?,
    })
}

fn deal(f: &Fields, m: pb::Deal) -> Parsed<domain::Deal> {
    let id = f.id("id", m.id)?;
    let amount = f.money("amount", m.amount)?;
    let amount = f.non_negative("amount", amount)?;
    let created_at = f.instant("created_at", m.created_at)?;
    let status = match pb::DealStatus::try_from(m.status) {
        Ok(pb::DealStatus::Open) => domain::DealStatus::Open,
        Ok(pb::DealStatus::Won) => domain::DealStatus::Won,
        Ok(pb::DealStatus::Lost) => domain::DealStatus::Lost,
        Ok(pb::DealStatus::Unspecified) | Err(_) => {
            return Err(f.err("status", enum_reason(m.status)));
        }
    };
    let closed_at = f.optional_instant("closed_at", m.closed_at)?;
    match (status, closed_at) {
        (domain::DealStatus::Open, Some(_)) => {
            return Err(f.err("closed_at", "must be absent while the deal is OPEN"));
        }
        (domain::DealStatus::Won | domain::DealStatus::Lost, None) => {
            return Err(f.err("closed_at", "is required when the status is WON or LOST"));
        }
        _ => {}
    }
    f.not_before("closed_at", closed_at, "created_at", created_at)?;
    Ok(domain::Deal {
        id,
        version: m.version,
        amount,
        created_at,
        status,
        closed_at,
        stage: f.category("stage", &m.stage)?,
        owner_rep_id: f.reference("owner_rep_id", m.owner_rep_id)?,
        customer_id: f.reference("customer_id", m.customer_id)?,
        lead_id: f.reference("lead_id", m.lead_id)?,
    })
}

fn deal_stage_change(f: &Fields, m: pb::DealStageChange) -> Parsed<domain::DealStageChange> {
    Ok(domain::DealStageChange {
        id: f.id("id", m.id)?,
        version: m.version,
        deal_id: f.id("deal_id", m.deal_id)?,
        stage: f.required_category("stage", &m.stage)?,
        entered_at: f.instant("entered_at", m.entered_at)?,
    })
}

fn order(f: &Fields, m: pb::Order) -> Parsed<domain::Order> {
    let id = f.id("id", m.id)?;
    let amount = f.money("amount", m.amount)?;
    if amount <= 0 {
        return Err(f.err("amount", format!("must be > 0, got {amount}")));
    }
    let kind = match pb::OrderKind::try_from(m.kind) {
        Ok(pb::OrderKind::Unspecified | pb::OrderKind::New) => domain::OrderKind::New,
        Ok(pb::OrderKind::Upsell) => domain::OrderKind::Upsell,
        Ok(pb::OrderKind::CrossSell) => domain::OrderKind::CrossSell,
        Ok(pb::OrderKind::Renewal) => domain::OrderKind::Renewal,
        Err(_) => return Err(f.err("kind", enum_reason(m.kind))),
    };
    Ok(domain::Order {
        id,
        version: m.version,
        amount,
        ordered_at: f.instant("ordered_at", m.ordered_at)?,
        kind,
        customer_id: f.reference("customer_id", m.customer_id)?,
        rep_id: f.reference("rep_id", m.rep_id)?,
        deal_id: f.reference("deal_id", m.deal_id)?,
    })
}

fn subscription_change(
    f: &Fields,
    m: pb::SubscriptionChange,
) -> Parsed<domain::SubscriptionChange> {
    let id = f.id("id", m.id)?;
    let subscription_id = f.id("subscription_id", m.subscription_id)?;
    let customer_id = f.id("customer_id", m.customer_id)?;
    let mrr = f.money("mrr", m.mrr)?;
    Ok(domain::SubscriptionChange {
        id,
        version: m.version,
        subscription_id,
        customer_id,
        mrr: f.non_negative("mrr", mrr)?,
        effective_at: f.instant("effective_at", m.effective_at)?,
    })
}

fn activity(f: &Fields, m: pb::Activity) -> Parsed<domain::Activity> {
    let id = f.id("id", m.id)?;
    let rep_id = f.id("rep_id", m.rep_id)?;
    let activity_type = match pb::ActivityType::try_from(m.r#type) {
        Ok(pb::ActivityType::Call) => domain::ActivityType::Call,
        Ok(pb::ActivityType::Email) => domain::ActivityType::Email,
        Ok(pb::ActivityType::Meeting) => domain::ActivityType::Meeting,
        Ok(pb::ActivityType::FollowUp) => domain::ActivityType::FollowUp,
        Ok(pb::ActivityType::Proposal) => domain::ActivityType::Proposal,
        Ok(pb::ActivityType::Demo) => domain::ActivityType::Demo,
        Ok(pb::ActivityType::NetworkingEvent) => domain::ActivityType::NetworkingEvent,
        Ok(pb::ActivityType::Social) => domain::ActivityType::Social,
        Ok(pb::ActivityType::Unspecified) | Err(_) => {
            return Err(f.err("type", enum_reason(m.r#type)));
        }
    };
    let occurred_at = f.instant("occurred_at", m.occurred_at)?;
    let duration_seconds = m
        .duration_seconds
        .map(|d| f.non_negative("duration_seconds", d))
        .transpose()?;
    Ok(domain::Activity {
        id,
        version: m.version,
        rep_id,
        activity_type,
        occurred_at,
        duration_seconds,
        lead_id: f.reference("lead_id", m.lead_id)?,
        deal_id: f.reference("deal_id", m.deal_id)?,
        customer_id: f.reference("customer_id", m.customer_id)?,
    })
}

fn inquiry(f: &Fields, m: pb::Inquiry) -> Parsed<domain::Inquiry> {
    let id = f.id("id", m.id)?;
    let channel = f.required_category("channel", &m.channel)?;
    let received_at = f.instant("received_at", m.received_at)?;
    let first_response_at = f.optional_instant("first_response_at", m.first_response_at)?;
    f.not_before(
        "first_response_at",
        first_response_at,
        "received_at",
        received_at,
    )?;
    Ok(domain::Inquiry {
        id,
        version: m.version,
        channel,
        received_at,
        first_response_at,
        customer_id: f.reference("customer_id", m.customer_id)?,
        rep_id: f.reference("rep_id", m.rep_id)?,
    })
}

fn csat_response(f: &Fields, m: pb::CsatResponse) -> Parsed<domain::CsatResponse> {
    let id = f.id("id", m.id)?;
    if !(1..=5).contains(&m.score) {
        return Err(f.err("score", format!("must be within 1..=5, got {}", m.score)));
    }
    Ok(domain::CsatResponse {
        id,
        version: m.version,
        score: m.score,
        responded_at: f.instant("responded_at", m.responded_at)?,
        customer_id: f.reference("customer_id", m.customer_id)?,
        rep_id: f.reference("rep_id", m.rep_id)?,
    })
}

fn target(f: &Fields, m: pb::Target) -> Parsed<domain::Target> {
    let id = f.id("id", m.id)?;
    let metric = match pb::TargetMetric::try_from(m.metric) {
        Ok(pb::TargetMetric::Revenue) => domain::TargetMetric::Revenue,
        Ok(pb::TargetMetric::Bookings) => domain::TargetMetric::Bookings,
        Ok(pb::TargetMetric::NewCustomers) => domain::TargetMetric::NewCustomers,
        Ok(pb::TargetMetric::DealsWon) => domain::TargetMetric::DealsWon,
        Ok(pb::TargetMetric::Unspecified) | Err(_) => {
            return Err(f.err("metric", enum_reason(m.metric)));
        }
    };
    let value = f.non_negative("value", m.value)?;
    let (start_date, end_date) = f.date_range(m.start_date, m.end_date)?;
    let team = f.reference("team_id", m.team_id)?;
    let rep = f.reference("rep_id", m.rep_id)?;
    let scope = match (m.company, team, rep) {
        (true, None, None) => domain::TargetScope::Company,
        (false, Some(team), None) => domain::TargetScope::Team(team),
        (false, None, Some(rep)) => domain::TargetScope::Rep(rep),
        (false, None, None) => {
            return Err(FieldViolation::new(
                f.base.clone(),
                "set exactly one of company, team_id and rep_id; none is set",
            ));
        }
        _ => {
            return Err(FieldViolation::new(
                f.base.clone(),
                "set exactly one of company, team_id and rep_id; several are set",
            ));
        }
    };
    Ok(domain::Target {
        id,
        version: m.version,
        metric,
        value,
        start_date,
        end_date,
        scope,
    })
}

fn spend(f: &Fields, m: pb::Spend) -> Parsed<domain::Spend> {
    let id = f.id("id", m.id)?;
    let category = match pb::SpendCategory::try_from(m.category) {
        Ok(pb::SpendCategory::Marketing) => domain::SpendCategory::Marketing,
        Ok(pb::SpendCategory::Sales) => domain::SpendCategory::Sales,
        Ok(pb::SpendCategory::Unspecified) | Err(_) => {
            return Err(f.err("category", enum_reason(m.category)));
        }
    };
    let amount = f.money("amount", m.amount)?;
    let amount = f.non_negative("amount", amount)?;
    let (start_date, end_date) = f.date_range(m.start_date, m.end_date)?;
    Ok(domain::Spend {
        id,
        version: m.version,
        category,
        amount,
        start_date,
        end_date,
        team_id: f.reference("team_id", m.team_id)?,
    })
}

// ---------------------------------------------------------------------------
// Record types and ids as sent.

/// The proto record type of a domain record type.
pub fn record_type_to_proto(t: RecordType) -> pb::RecordType {
    match t {
        RecordType::Team => pb::RecordType::Team,
        RecordType::TeamMembership => pb::RecordType::TeamMembership,
        RecordType::Rep => pb::RecordType::Rep,
        RecordType::Customer => pb::RecordType::Customer,
        RecordType::Lead => pb::RecordType::Lead,
        RecordType::Deal => pb::RecordType::Deal,
        RecordType::DealStageChange => pb::RecordType::DealStageChange,
        RecordType::Order => pb::RecordType::Order,
        RecordType::SubscriptionChange => pb::RecordType::SubscriptionChange,
        RecordType::Activity => pb::RecordType::Activity,
        RecordType::Inquiry => pb::RecordType::Inquiry,
        RecordType::CsatResponse => pb::RecordType::CsatResponse,
        RecordType::Target => pb::RecordType::Target,
        RecordType::Spend => pb::RecordType::Spend,
    }
}

/// Parses a required proto record type at `path` (UNSPECIFIED and unknown
/// values are rejected).
pub fn record_type_from_proto(path: &str, value: i32) -> Result<RecordType, FieldViolation> {
    let t = pb::RecordType::try_from(value).unwrap_or(pb::RecordType::Unspecified);
    RecordType::ALL
        .into_iter()
        .find(|rt| t != pb::RecordType::Unspecified && record_type_to_proto(*rt) == t)
        .ok_or_else(|| FieldViolation::new(path, enum_reason(value)))
}

/// The type and id of a proto record as sent, before validation (for
/// per-record results). An empty record has type UNSPECIFIED and id "".
pub fn proto_record_identity(record: &pb::Record) -> (pb::RecordType, &str) {
    use pb::RecordType as T;
    match &record.record {
        None => (T::Unspecified, ""),
        Some(PbRecord::Team(m)) => (T::Team, &m.id),
        Some(PbRecord::TeamMembership(m)) => (T::TeamMembership, &m.id),
        Some(PbRecord::Rep(m)) => (T::Rep, &m.id),
        Some(PbRecord::Customer(m)) => (T::Customer, &m.id),
        Some(PbRecord::Lead(m)) => (T::Lead, &m.id),
        Some(PbRecord::Deal(m)) => (T::Deal, &m.id),
        Some(PbRecord::DealStageChange(m)) => (T::DealStageChange, &m.id),
        Some(PbRecord::Order(m)) => (T::Order, &m.id),
        Some(PbRecord::SubscriptionChange(m)) => (T::SubscriptionChange, &m.id),
        Some(PbRecord::Activity(m)) => (T::Activity, &m.id),
        Some(PbRecord::Inquiry(m)) => (T::Inquiry, &m.id),
        Some(PbRecord::CsatResponse(m)) => (T::CsatResponse, &m.id),
        Some(PbRecord::Target(m)) => (T::Target, &m.id),
        Some(PbRecord::Spend(m)) => (T::Spend, &m.id),
    }
}

// ---------------------------------------------------------------------------
// Domain → proto (export).

fn timestamp(t: Instant) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        // Always < 1e9 for instants built by this module, so the cast is exact.
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn date(d: NaiveDate) -> pb::Date {
    pb::Date {
        year: d.year(),
        month: i32::try_from(d.month()).unwrap_or(0),
        day: i32::try_from(d.day()).unwrap_or(0),
    }
}

fn money(minor_units: i64, currency: &str) -> pb::Money {
    pb::Money {
        currency_code: currency.to_string(),
        minor_units,
    }
}

fn text(value: &Option<String>) -> String {
    value.clone().unwrap_or_default()
}

/// Converts a stored record back into its proto form; money carries the
/// tenant's `currency`.
pub fn record_to_proto(record: &Record, currency: &str) -> pb::Record {
    let inner = match record {
        Record::Team(r) => PbRecord::Team(pb::Team {
            id: r.id.clone(),
            version: r.version,
            name: r.name.clone(),
            parent_team_id: text(&r.parent_team_id),
        }),
        Record::TeamMembership(r) => PbRecord::TeamMembership(pb::TeamMembership {
            id: r.id.clone(),
            version: r.version,
            rep_id: r.rep_id.clone(),
            team_id: text(&r.team_id),
            effective_at: Some(timestamp(r.effective_at)),
        }),
        Record::Rep(r) => PbRecord::Rep(pb::Rep {
            id: r.id.clone(),
            version: r.version,
            name: r.name.clone(),
            email: text(&r.email),
        }),
        Record::Customer(r) => PbRecord::Customer(pb::Customer {
            id: r.id.clone(),
            version: r.version,
            acquired_at: Some(timestamp(r.acquired_at)),
            churned_at: r.churned_at.map(timestamp),
            owner_rep_id: text(&r.owner_rep_id),
            source: text(&r.source),
            name: text(&r.name),
        }),
        Record::Lead(r) => PbRecord::Lead(pb::Lead {
            id: r.id.clone(),
            version: r.version,
            source: r.source.clone(),
            created_at: Some(timestamp(r.created_at)),
            owner_rep_id: text(&r.owner_rep_id),
            first_response_at: r.first_response_at.map(timestamp),
            converted_at: r.converted_at.map(timestamp),
            customer_id: text(&r.customer_id),
        }),
        Record::Deal(r) => PbRecord::Deal(pb::Deal {
            id: r.id.clone(),
            version: r.version,
            amount: Some(money(r.amount, currency)),
            created_at: Some(timestamp(r.created_at)),
            status: match r.status {
                domain::DealStatus::Open => pb::DealStatus::Open,
                domain::DealStatus::Won => pb::DealStatus::Won,
                domain::DealStatus::Lost => pb::DealStatus::Lost,
            } as i32,
            closed_at: r.closed_at.map(timestamp),
            stage: text(&r.stage),
            owner_rep_id: text(&r.owner_rep_id),
            customer_id: text(&r.customer_id),
            lead_id: text(&r.lead_id),
        }),
        Record::DealStageChange(r) => PbRecord::DealStageChange(pb::DealStageChange {
            id: r.id.clone(),
            version: r.version,
            deal_id: r.deal_id.clone(),
            stage: r.stage.clone(),
            entered_at: Some(timestamp(r.entered_at)),
        }),
        Record::Order(r) => PbRecord::Order(pb::Order {
            id: r.id.clone(),
            version: r.version,
            amount: Some(money(r.amount, currency)),
            ordered_at: Some(timestamp(r.ordered_at)),
            kind: match r.kind {
                domain::OrderKind::New => pb::OrderKind::New,
                domain::OrderKind::Upsell => pb::OrderKind::Upsell,
                domain::OrderKind::CrossSell => pb::OrderKind::CrossSell,
                domain::OrderKind::Renewal => pb::OrderKind::Renewal,
            } as i32,
            customer_id: text(&r.customer_id),
            rep_id: text(&r.rep_id),
            deal_id: text(&r.deal_id),
        }),
        Record::SubscriptionChange(r) => PbRecord::SubscriptionChange(pb::SubscriptionChange {
            id: r.id.clone(),
            version: r.version,
            subscription_id: r.subscription_id.clone(),
            customer_id: r.customer_id.clone(),
            mrr: Some(money(r.mrr, currency)),
            effective_at: Some(timestamp(r.effective_at)),
        }),
        Record::Activity(r) => PbRecord::Activity(pb::Activity {
            id: r.id.clone(),
            version: r.version,
            rep_id: r.rep_id.clone(),
            r#type: match r.activity_type {
                domain::ActivityType::Call => pb::ActivityType::Call,
                domain::ActivityType::Email => pb::ActivityType::Email,
                domain::ActivityType::Meeting => pb::ActivityType::Meeting,
                domain::ActivityType::FollowUp => pb::ActivityType::FollowUp,
                domain::ActivityType::Proposal => pb::ActivityType::Proposal,
                domain::ActivityType::Demo => pb::ActivityType::Demo,
                domain::ActivityType::NetworkingEvent => pb::ActivityType::NetworkingEvent,
                domain::ActivityType::Social => pb::ActivityType::Social,
            } as i32,
            occurred_at: Some(timestamp(r.occurred_at)),
            duration_seconds: r.duration_seconds,
            lead_id: text(&r.lead_id),
            deal_id: text(&r.deal_id),
            customer_id: text(&r.customer_id),
        }),
        Record::Inquiry(r) => PbRecord::Inquiry(pb::Inquiry {
            id: r.id.clone(),
            version: r.version,
            channel: r.channel.clone(),
            received_at: Some(timestamp(r.received_at)),
            first_response_at: r.first_response_at.map(timestamp),
            customer_id: text(&r.customer_id),
            rep_id: text(&r.rep_id),
        }),
        Record::CsatResponse(r) => PbRecord::CsatResponse(pb::CsatResponse {
            id: r.id.clone(),
            version: r.version,
            score: r.score,
            responded_at: Some(timestamp(r.responded_at)),
            customer_id: text(&r.customer_id),
            rep_id: text(&r.rep_id),
        }),
        Record::Target(r) => {
            let (company, team_id, rep_id) = match &r.scope {
                domain::TargetScope::Company => (true, String::new(), String::new()),
                domain::TargetScope::Team(t) => (false, t.clone(), String::new()),
                domain::TargetScope::Rep(rep) => (false, String::new(), rep.clone()),
            };
            PbRecord::Target(pb::Target {
                id: r.id.clone(),
                version: r.version,
                metric: match r.metric {
                    domain::TargetMetric::Revenue => pb::TargetMetric::Revenue,
                    domain::TargetMetric::Bookings => pb::TargetMetric::Bookings,
                    domain::TargetMetric::NewCustomers => pb::TargetMetric::NewCustomers,
                    domain::TargetMetric::DealsWon => pb::TargetMetric::DealsWon,
                } as i32,
                value: r.value,
                start_date: Some(date(r.start_date)),
                end_date: Some(date(r.end_date)),
                company,
                team_id,
                rep_id,
            })
        }
        Record::Spend(r) => PbRecord::Spend(pb::Spend {
            id: r.id.clone(),
            version: r.version,
            category: match r.category {
                domain::SpendCategory::Marketing => pb::SpendCategory::Marketing,
                domain::SpendCategory::Sales => pb::SpendCategory::Sales,
            } as i32,
            amount: Some(money(r.amount, currency)),
            start_date: Some(date(r.start_date)),
            end_date: Some(date(r.end_date)),
            team_id: text(&r.team_id),
        }),
    };
    pb::Record {
        record: Some(inner),
    }
}

// ---------------------------------------------------------------------------
// Tenant settings.

/// Converts proto settings at `base` (e.g. `settings`) into validated domain
/// settings, reporting every invalid field at once. Stage names and referral
/// sources are trimmed and lower-cased; stage names must be unique after
/// that, repeated referral sources are kept once.
pub fn settings_from_proto(
    base: &str,
    s: pb::TenantSettings,
) -> Result<domain::TenantSettings, Vec<FieldViolation>> {
    let mut violations = Vec::new();
    let mut bad = |field: String, reason: String| {
        violations.push(FieldViolation::new(format!("{base}.{field}"), reason));
    };

    let time_zone = if s.time_zone.is_empty() {
        bad("time_zone".into(), "is required".into());
        None
    } else {
        match s.time_zone.parse::<Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                bad(
                    "time_zone".into(),
                    format!("{} is not an IANA time zone name", quote(&s.time_zone)),
                );
                None
            }
        }
    };

    if !ISO_4217_CODES.contains(&s.currency_code.as_str()) {
        let reason = if s.currency_code.is_empty() {
            "is required".to_string()
        } else {
            format!(
                "{} is not an active ISO 4217 currency code (three upper-case letters, e.g. USD)",
                quote(&s.currency_code)
            )
        };
        bad("currency_code".into(), reason);
    }

    let fiscal_year_start_month = match u32::try_from(s.fiscal_year_start_month) {
        Ok(m @ 1..=12) => m,
        _ => {
            bad(
                "fiscal_year_start_month".into(),
                format!("must be within 1..=12, got {}", s.fiscal_year_start_month),
            );
            1
        }
    };

    if s.pipeline_stages.is_empty() {
        bad(
            "pipeline_stages".into(),
            "must contain at least one stage".into(),
        );
    } else if s.pipeline_stages.len() > MAX_SETTINGS_LIST_LEN {
        bad(
            "pipeline_stages".into(),
            format!(
                "has {} stages; at most {MAX_SETTINGS_LIST_LEN} are allowed",
                s.pipeline_stages.len()
            ),
        );
    }
    let mut pipeline_stages: Vec<domain::PipelineStage> = Vec::new();
    for (i, stage) in s.pipeline_stages.iter().enumerate() {
        let name = normalize_category(&stage.name);
        let name_field = format!("pipeline_stages[{i}].name");
        if name.is_empty() {
            bad(name_field, "is required and must not be blank".into());
        } else if name.chars().count() > MAX_TEXT_LEN {
            bad(
                name_field,
                format!("must be at most {MAX_TEXT_LEN} characters"),
            );
        } else if pipeline_stages.iter().any(|s| s.name == name) {
            bad(
                name_field,
                format!("duplicates the stage name {}", quote(&name)),
            );
        }
        let p = stage.win_probability;
        if !(p.is_finite() && (0.0..=1.0).contains(&p)) {
            bad(
                format!("pipeline_stages[{i}].win_probability"),
                format!("must be a number within [0, 1], got {p}"),
            );
        }
        pipeline_stages.push(domain::PipelineStage {
            name,
            win_probability: p,
        });
    }

    let gross_margin = s.gross_margin;
    if !(gross_margin.is_finite() && gross_margin > 0.0 && gross_margin <= 1.0) {
        bad(
            "gross_margin".into(),
            format!("must be a number within (0, 1], got {gross_margin}"),
        );
    }

    if !(1..=5).contains(&s.csat_satisfied_min_score) {
        bad(
            "csat_satisfied_min_score".into(),
            format!("must be within 1..=5, got {}", s.csat_satisfied_min_score),
        );
    }

    if s.referral_sources.len() > MAX_SETTINGS_LIST_LEN {
        bad(
            "referral_sources".into(),
            format!(
                "has {} entries; at most {MAX_SETTINGS_LIST_LEN} are allowed",
                s.referral_sources.len()
            ),
        );
    }
    let mut referral_sources: Vec<String> = Vec::new();
    for (i, source) in s.referral_sources.iter().enumerate() {
        let source = normalize_category(source);
        if source.is_empty() {
            bad(format!("referral_sources[{i}]"), "must not be blank".into());
        } else if source.chars().count() > MAX_TEXT_LEN {
            bad(
                format!("referral_sources[{i}]"),
                format!("must be at most {MAX_TEXT_LEN} characters"),
            );
        } else if !referral_sources.contains(&source) {
            referral_sources.push(source);
        }
    }

    match time_zone {
        Some(time_zone) if violations.is_empty() => Ok(domain::TenantSettings {
            time_zone,
            currency_code: s.currency_code,
            fiscal_year_start_month,
            pipeline_stages,
            gross_margin,
            csat_satisfied_min_score: s.csat_satisfied_min_score,
            referral_sources,
        }),
        _ => Err(violations),
    }
}

/// Converts domain settings into their proto form.
pub fn settings_to_proto(s: &domain::TenantSettings) -> pb::TenantSettings {
    pb::TenantSettings {
        time_zone: s.time_zone.name().to_string(),
        currency_code: s.currency_code.clone(),
        fiscal_year_start_month: i32::try_from(s.fiscal_year_start_month).unwrap_or(1),
        pipeline_stages: s
            .pipeline_stages
            .iter()
            .map(|p| pb::PipelineStage {
                name: p.name.clone(),
                win_probability: p.win_probability,
            })
            .collect(),
        gross_margin: s.gross_margin,
        csat_satisfied_min_score: s.csat_satisfied_min_score,
        referral_sources: s.referral_sources.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CUR: &str = "USD";

    fn ts(seconds: i64) -> Option<Timestamp> {
        Some(Timestamp { seconds, nanos: 0 })
    }

    /// 2024-03-01T00:00:00Z.
    const T0: i64 = 1_709_251_200;

    fn usd(minor_units: i64) -> Option<pb::Money> {
        Some(pb::Money {
            currency_code: CUR.into(),
            minor_units,
        })
    }

    fn d(year: i32, month: i32, day: i32) -> Option<pb::Date> {
        Some(pb::Date { year, month, day })
    }

    fn rec(r: PbRecord) -> pb::Record {
        pb::Record { record: Some(r) }
    }

    /// One valid record of every type, each with every optional field set.
    fn valid_records() -> Vec<pb::Record> {
        vec![
            rec(PbRecord::Team(pb::Team {
                id: "t1".into(),
                version: Some(3),
                name: "Team One".into(),
                parent_team_id: "t0".into(),
            })),
            rec(PbRecord::TeamMembership(pb::TeamMembership {
                id: "m1".into(),
                version: None,
                rep_id: "r1".into(),
                team_id: "t1".into(),
                effective_at: ts(T0),
            })),
            rec(PbRecord::Rep(pb::Rep {
                id: "r1".into(),
                version: None,
                name: "Ann".into(),
                email: "ann@example.com".into(),
            })),
            rec(PbRecord::Customer(pb::Customer {
                id: "c1".into(),
                version: None,
                acquired_at: ts(T0),
                churned_at: ts(T0 + 10),
                owner_rep_id: "r1".into(),
                source: "referral".into(),
                name: "ACME".into(),
            })),
            rec(PbRecord::Lead(pb::Lead {
                id: "l1".into(),
                version: None,
                source: "web".into(),
                created_at: ts(T0),
                owner_rep_id: "r1".into(),
                first_response_at: ts(T0 + 1),
                converted_at: ts(T0 + 2),
                customer_id: "c1".into(),
            })),
            rec(PbRecord::Deal(pb::Deal {
                id: "d1".into(),
                version: None,
                amount: usd(1000),
                created_at: ts(T0),
                status: pb::DealStatus::Won as i32,
                closed_at: ts(T0 + 100),
                stage: "proposal".into(),
                owner_rep_id: "r1".into(),
                customer_id: "c1".into(),
                lead_id: "l1".into(),
            })),
            rec(PbRecord::DealStageChange(pb::DealStageChange {
                id: "s1".into(),
                version: None,
                deal_id: "d1".into(),
                stage: "proposal".into(),
                entered_at: ts(T0),
            })),
            rec(PbRecord::Order(pb::Order {
                id: "o1".into(),
                version: None,
                amount: usd(500),
                ordered_at: Some(Timestamp {
                    seconds: T0,
                    nanos: 123_456_789,
                }),
                kind: pb::OrderKind::Upsell as i32,
                customer_id: "c1".into(),
                rep_id: "r1".into(),
                deal_id: "d1".into(),
            })),
            rec(PbRecord::SubscriptionChange(pb::SubscriptionChange {
                id: "sc1".into(),
                version: None,
                subscription_id: "sub1".into(),
                customer_id: "c1".into(),
                mrr: usd(0),
                effective_at: ts(T0),
            })),
            rec(PbRecord::Activity(pb::Activity {
                id: "a1".into(),
                version: None,
                rep_id: "r1".into(),
                r#type: pb::ActivityType::Demo as i32,
                occurred_at: ts(T0),
                duration_seconds: Some(0),
                lead_id: "l1".into(),
                deal_id: "d1".into(),
                customer_id: "c1".into(),
            })),
            rec(PbRecord::Inquiry(pb::Inquiry {
                id: "i1".into(),
                version: None,
                channel: "email".into(),
                received_at: ts(T0),
                first_response_at: ts(T0),
                customer_id: "c1".into(),
                rep_id: "r1".into(),
            })),
            rec(PbRecord::CsatResponse(pb::CsatResponse {
                id: "q1".into(),
                version: None,
                score: 5,
                responded_at: ts(T0),
                customer_id: "c1".into(),
                rep_id: "r1".into(),
            })),
            rec(PbRecord::Target(pb::Target {
                id: "g1".into(),
                version: None,
                metric: pb::TargetMetric::Revenue as i32,
                value: 0,
                start_date: d(2024, 1, 1),
                end_date: d(2024, 4, 1),
                company: false,
                team_id: String::new(),
                rep_id: "r1".into(),
            })),
            rec(PbRecord::Spend(pb::Spend {
                id: "p1".into(),
                version: None,
                category: pb::SpendCategory::Marketing as i32,
                amount: usd(0),
                start_date: d(2024, 2, 28),
                end_date: d(2100, 1, 1),
                team_id: "t1".into(),
            })),
        ]
    }

    fn parse(r: pb::Record) -> Result<Record, FieldViolation> {
        record_from_proto(3, r, CUR)
    }

    #[test]
    fn every_valid_record_round_trips_exactly() {
        let records = valid_records();
        assert_eq!(records.len(), RecordType::ALL.len());
        for (i, r) in records.into_iter().enumerate() {
            let parsed = record_from_proto(i, r.clone(), CUR).expect("valid record");
            assert_eq!(record_to_proto(&parsed, CUR), r);
            let (t, _) = proto_record_identity(&r);
            assert_eq!(t, record_type_to_proto(parsed.record_type()));
        }
    }

    fn with<T, F>(
        index: usize,
        unwrap: fn(&mut PbRecord) -> Option<&mut T>,
        mutate: F,
    ) -> pb::Record
    where
        F: FnOnce(&mut T),
    {
        let mut r = valid_records().swap_remove(index);
        if let Some(inner) = r.record.as_mut().and_then(unwrap) {
            mutate(inner);
        }
        r
    }

    macro_rules! case {
        ($variant:ident, $idx:expr, |$m:ident| $body:expr) => {
            with(
                $idx,
                |r| match r {
                    PbRecord::$variant(m) => Some(m),
                    _ => None,
                },
                |$m: &mut pb::$variant| {
                    $body;
                },
            )
        };
    }

    /// (record, expected field path, expected substring of the reason).
    fn invalid_cases() -> Vec<(pb::Record, &'static str, &'static str)> {
        vec![
            // Ids.
            (
                case!(Team, 0, |m| m.id = String::new()),
                "records[3].team.id",
                "is required",
            ),
            (
                case!(Team, 0, |m| m.id = "x".repeat(129)),
                "records[3].team.id",
                "at most 128",
            ),
            (
                case!(Team, 0, |m| m.id = "a b".into()),
                "records[3].team.id",
                "only A-Z",
            ),
            (
                case!(Team, 0, |m| m.id = "é".into()),
                "records[3].team.id",
                "only A-Z",
            ),
            (
                case!(Team, 0, |m| m.parent_team_id = "a/b".into()),
                "records[3].team.parent_team_id",
                "only A-Z",
            ),
            (
                case!(Order, 7, |m| m.rep_id = "r 1".into()),
                "records[3].order.rep_id",
                "only A-Z",
            ),
            // Required fields.
            (
                case!(Team, 0, |m| m.name = "  ".into()),
                "records[3].team.name",
                "must not be blank",
            ),
            (
                case!(Rep, 2, |m| m.name = String::new()),
                "records[3].rep.name",
                "is required",
            ),
            (
                case!(TeamMembership, 1, |m| m.rep_id = String::new()),
                "records[3].team_membership.rep_id",
                "is required",
            ),
            (
                case!(TeamMembership, 1, |m| m.effective_at = None),
                "records[3].team_membership.effective_at",
                "is required",
            ),
            (
                case!(Customer, 3, |m| m.acquired_at = None),
                "records[3].customer.acquired_at",
                "is required",
            ),
            (
                case!(Lead, 4, |m| m.source = " \t ".into()),
                "records[3].lead.source",
                "is required",
            ),
            (
                case!(Deal, 5, |m| m.amount = None),
                "records[3].deal.amount",
                "is required",
            ),
            (
                case!(DealStageChange, 6, |m| m.deal_id = String::new()),
                "records[3].deal_stage_change.deal_id",
                "is required",
            ),
            (
                case!(DealStageChange, 6, |m| m.stage = " ".into()),
                "records[3].deal_stage_change.stage",
                "is required",
            ),
            (
                case!(SubscriptionChange, 8, |m| m.subscription_id = String::new()),
                "records[3].subscription_change.subscription_id",
                "is required",
            ),
            (
                case!(SubscriptionChange, 8, |m| m.customer_id = String::new()),
                "records[3].subscription_change.customer_id",
                "is required",
            ),
            (
                case!(SubscriptionChange, 8, |m| m.mrr = None),
                "records[3].subscription_change.mrr",
                "is required",
            ),
            (
                case!(Activity, 9, |m| m.rep_id = String::new()),
                "records[3].activity.rep_id",
                "is required",
            ),
            (
                case!(Inquiry, 10, |m| m.channel = String::new()),
                "records[3].inquiry.channel",
                "is required",
            ),
            (
                case!(CsatResponse, 11, |m| m.responded_at = None),
                "records[3].csat_response.responded_at",
                "is required",
            ),
            (
                case!(Target, 12, |m| m.start_date = None),
                "records[3].target.start_date",
                "is required",
            ),
            (
                case!(Spend, 13, |m| m.end_date = None),
                "records[3].spend.end_date",
                "is required",
            ),
            // Timestamps.
            (
                case!(Order, 7, |m| m.ordered_at = ts(MIN_INSTANT_SECONDS - 1)),
                "records[3].order.ordered_at",
                "within [2000-01-01T00:00:00Z, 2100-01-01T00:00:00Z)",
            ),
            (
                case!(Order, 7, |m| m.ordered_at = ts(END_INSTANT_SECONDS)),
                "records[3].order.ordered_at",
                "within [2000-01-01T00:00:00Z",
            ),
            (
                case!(Order, 7, |m| m.ordered_at = ts(i64::MAX)),
                "records[3].order.ordered_at",
                "within [2000-01-01T00:00:00Z",
            ),
            (
                case!(Order, 7, |m| m.ordered_at = Some(Timestamp {
                    seconds: T0,
                    nanos: 1_000_000_000
                })),
                "records[3].order.ordered_at",
                "nanos",
            ),
            (
                case!(Order, 7, |m| m.ordered_at = Some(Timestamp {
                    seconds: T0,
                    nanos: -1
                })),
                "records[3].order.ordered_at",
                "nanos",
            ),
            (
                case!(Customer, 3, |m| m.churned_at = ts(0)),
                "records[3].customer.churned_at",
                "within [2000-01-01T00:00:00Z",
            ),
            // Money.
            (
                case!(Deal, 5, |m| m.amount = Some(pb::Money {
                    currency_code: "EUR".into(),
                    minor_units: 1
                })),
                "records[3].deal.amount.currency_code",
                "tenant's currency USD, got \"EUR\"",
            ),
            (
                case!(Order, 7, |m| m.amount = Some(pb::Money {
                    currency_code: String::new(),
                    minor_units: 1
                })),
                "records[3].order.amount.currency_code",
                "is required",
            ),
            (
                case!(Deal, 5, |m| m.amount = usd(-1)),
                "records[3].deal.amount",
                ">= 0",
            ),
            (
                case!(Order, 7, |m| m.amount = usd(0)),
                "records[3].order.amount",
                "> 0",
            ),
            (
                case!(SubscriptionChange, 8, |m| m.mrr = usd(-5)),
                "records[3].subscription_change.mrr",
                ">= 0",
            ),
            (
                case!(Spend, 13, |m| m.amount = usd(-1)),
                "records[3].spend.amount",
                ">= 0",
            ),
            // Enums.
            (
                case!(Deal, 5, |m| m.status = 0),
                "records[3].deal.status",
                "is required",
            ),
            (
                case!(Deal, 5, |m| m.status = 9),
                "records[3].deal.status",
                "unknown value 9",
            ),
            (
                case!(Order, 7, |m| m.kind = 42),
                "records[3].order.kind",
                "unknown value 42",
            ),
            (
                case!(Activity, 9, |m| m.r#type = 0),
                "records[3].activity.type",
                "is required",
            ),
            (
                case!(Activity, 9, |m| m.r#type = 99),
                "records[3].activity.type",
                "unknown value",
            ),
            (
                case!(Target, 12, |m| m.metric = 0),
                "records[3].target.metric",
                "is required",
            ),
            (
                case!(Target, 12, |m| m.metric = -1),
                "records[3].target.metric",
                "unknown value",
            ),
            (
                case!(Spend, 13, |m| m.category = 0),
                "records[3].spend.category",
                "is required",
            ),
            (
                case!(Spend, 13, |m| m.category = 3),
                "records[3].spend.category",
                "unknown value",
            ),
            // Deal closing.
            (
                case!(Deal, 5, |m| m.closed_at = None),
                "records[3].deal.closed_at",
                "required when the status is WON or LOST",
            ),
            (
                case!(Deal, 5, |m| {
                    m.status = pb::DealStatus::Lost as i32;
                    m.closed_at = None
                }),
                "records[3].deal.closed_at",
                "required when",
            ),
            (
                case!(Deal, 5, |m| m.status = pb::DealStatus::Open as i32),
                "records[3].deal.closed_at",
                "must be absent while the deal is OPEN",
            ),
            (
                case!(Deal, 5, |m| m.closed_at = ts(T0 - 1)),
                "records[3].deal.closed_at",
                "must not be before created_at",
            ),
            // Instant ordering.
            (
                case!(Customer, 3, |m| m.churned_at = ts(T0 - 1)),
                "records[3].customer.churned_at",
                "must not be before acquired_at",
            ),
            (
                case!(Lead, 4, |m| m.first_response_at = ts(T0 - 1)),
                "records[3].lead.first_response_at",
                "must not be before created_at",
            ),
            (
                case!(Lead, 4, |m| m.converted_at = ts(T0 - 1)),
                "records[3].lead.converted_at",
                "must not be before created_at",
            ),
            (
                case!(Inquiry, 10, |m| m.first_response_at = ts(T0 - 1)),
                "records[3].inquiry.first_response_at",
                "must not be before received_at",
            ),
            // Scores and durations.
            (
                case!(CsatResponse, 11, |m| m.score = 0),
                "records[3].csat_response.score",
                "within 1..=5, got 0",
            ),
            (
                case!(CsatResponse, 11, |m| m.score = 6),
                "records[3].csat_response.score",
                "within 1..=5, got 6",
            ),
            (
                case!(Activity, 9, |m| m.duration_seconds = Some(-1)),
                "records[3].activity.duration_seconds",
                ">= 0",
            ),
            // Targets.
            (
                case!(Target, 12, |m| m.rep_id = String::new()),
                "records[3].target",
                "none is set",
            ),
            (
                case!(Target, 12, |m| m.company = true),
                "records[3].target",
                "several are set",
            ),
            (
                case!(Target, 12, |m| m.team_id = "t1".into()),
                "records[3].target",
                "several are set",
            ),
            (
                case!(Target, 12, |m| m.value = -1),
                "records[3].target.value",
                ">= 0",
            ),
            (
                case!(Target, 12, |m| m.end_date = d(2024, 1, 1)),
                "records[3].target.end_date",
                "after start_date",
            ),
            (
                case!(Target, 12, |m| m.start_date = d(2023, 2, 29)),
                "records[3].target.start_date",
                "not a valid calendar date",
            ),
            (
                case!(Target, 12, |m| m.start_date = d(2024, 13, 1)),
                "records[3].target.start_date",
                "not a valid calendar date",
            ),
            (
                case!(Target, 12, |m| m.start_date = d(2024, -1, 1)),
                "records[3].target.start_date",
                "not a valid calendar date",
            ),
            (
                case!(Target, 12, |m| m.start_date = d(1999, 12, 31)),
                "records[3].target.start_date",
                "within [2000-01-01, 2100-01-01]",
            ),
            // Spend dates.
            (
                case!(Spend, 13, |m| m.end_date = d(2024, 2, 28)),
                "records[3].spend.end_date",
                "after start_date",
            ),
            (
                case!(Spend, 13, |m| m.end_date = d(2100, 1, 2)),
                "records[3].spend.end_date",
                "within [2000-01-01, 2100-01-01]",
            ),
            // Length caps.
            (
                case!(Rep, 2, |m| m.name = "n".repeat(257)),
                "records[3].rep.name",
                "at most 256",
            ),
            (
                case!(Rep, 2, |m| m.email = "e".repeat(257)),
                "records[3].rep.email",
                "at most 256",
            ),
            (
                case!(Customer, 3, |m| m.name = "n".repeat(257)),
                "records[3].customer.name",
                "at most 256",
            ),
            (
                case!(Customer, 3, |m| m.source = "s".repeat(257)),
                "records[3].customer.source",
                "at most 256",
            ),
            (
                case!(Lead, 4, |m| m.source = "s".repeat(257)),
                "records[3].lead.source",
                "at most 256",
            ),
            (
                case!(Deal, 5, |m| m.stage = "s".repeat(257)),
                "records[3].deal.stage",
                "at most 256",
            ),
            (
                case!(Inquiry, 10, |m| m.channel = "c".repeat(257)),
                "records[3].inquiry.channel",
                "at most 256",
            ),
            // Control characters (NUL cannot be stored by PostgreSQL).
            (
                case!(Rep, 2, |m| m.name = "Ada\0".into()),
                "records[3].rep.name",
                "control characters",
            ),
            (
                case!(Lead, 4, |m| m.source = "web\nsite".into()),
                "records[3].lead.source",
                "control characters",
            ),
            // Empty record.
            (pb::Record { record: None }, "records[3]", "is empty"),
        ]
    }

    #[test]
    fn each_rule_reports_its_field_path_and_reason() {
        for (record, path, reason) in invalid_cases() {
            let err = parse(record.clone()).expect_err(path);
            assert_eq!(err.field, path, "{record:?}");
            assert!(
                err.reason.contains(reason),
                "{path}: reason {:?} should contain {reason:?}",
                err.reason
            );
        }
    }

    #[test]
    fn categories_are_trimmed_and_lower_cased_and_empty_references_are_none() {
        let r = case!(Lead, 4, |m| {
            m.source = "  Web Form ".into();
            m.owner_rep_id = String::new();
            m.customer_id = String::new();
        });
        let Ok(Record::Lead(lead)) = parse(r) else {
            panic!("valid lead")
        };
        assert_eq!(lead.source, "web form");
        assert_eq!(lead.owner_rep_id, None);
        assert_eq!(lead.customer_id, None);

        let r = case!(Deal, 5, |m| m.stage = " Proposal ".into());
        let Ok(Record::Deal(deal)) = parse(r) else {
            panic!("valid deal")
        };
        assert_eq!(deal.stage.as_deref(), Some("proposal"));
        let r = case!(Deal, 5, |m| m.stage = "   ".into());
        let Ok(Record::Deal(deal)) = parse(r) else {
            panic!("valid deal")
        };
        assert_eq!(deal.stage, None);

        let r = case!(Inquiry, 10, |m| m.channel = "E-Mail".into());
        let Ok(Record::Inquiry(i)) = parse(r) else {
            panic!("valid inquiry")
        };
        assert_eq!(i.channel, "e-mail");
        let r = case!(Customer, 3, |m| m.source = " Partner".into());
        let Ok(Record::Customer(c)) = parse(r) else {
            panic!("valid customer")
        };
        assert_eq!(c.source.as_deref(), Some("partner"));
        let r = case!(DealStageChange, 6, |m| m.stage = "Negotiation".into());
        let Ok(Record::DealStageChange(s)) = parse(r) else {
            panic!("valid stage change")
        };
        assert_eq!(s.stage, "negotiation");
    }

    #[test]
    fn edge_values_are_accepted() {
        let ok = [
            case!(Team, 0, |m| m.id = "A-z_0.9:x".into()),
            case!(Team, 0, |m| m.id = "x".repeat(128)),
            case!(Order, 7, |m| m.kind = 0),
            case!(Order, 7, |m| m.ordered_at = ts(MIN_INSTANT_SECONDS)),
            case!(Order, 7, |m| m.ordered_at = Some(Timestamp {
                seconds: END_INSTANT_SECONDS - 1,
                nanos: 999_999_999
            })),
            case!(Deal, 5, |m| {
                m.status = pb::DealStatus::Open as i32;
                m.closed_at = None
            }),
            case!(Deal, 5, |m| m.closed_at = ts(T0)),
            case!(Deal, 5, |m| m.amount = usd(0)),
            case!(Customer, 3, |m| m.churned_at = ts(T0)),
            case!(CsatResponse, 11, |m| m.score = 1),
            case!(Target, 12, |m| {
                m.rep_id = String::new();
                m.company = true
            }),
            case!(Target, 12, |m| {
                m.rep_id = String::new();
                m.team_id = "t1".into()
            }),
            case!(Rep, 2, |m| m.name = "n".repeat(256)),
        ];
        for r in ok {
            assert!(parse(r.clone()).is_ok(), "{r:?}");
        }
        let Ok(Record::Order(o)) = parse(case!(Order, 7, |m| m.kind = 0)) else {
            panic!("valid order")
        };
        assert_eq!(o.kind, domain::OrderKind::New);
    }

    #[test]
    fn record_types_parse_and_reject_unspecified() {
        for t in RecordType::ALL {
            let p = record_type_to_proto(t) as i32;
            assert_eq!(record_type_from_proto("record_type", p), Ok(t));
        }
        let err = record_type_from_proto("record_type", 0).expect_err("unspecified");
        assert_eq!(
            (err.field.as_str(), err.reason.as_str()),
            ("record_type", "is required")
        );
        let err = record_type_from_proto("record_type", 77).expect_err("unknown");
        assert_eq!(err.reason, "unknown value 77");
    }

    fn default_settings() -> pb::TenantSettings {
        settings_to_proto(&domain::TenantSettings::default())
    }

    #[test]
    fn default_settings_round_trip() {
        let s = default_settings();
        let parsed = settings_from_proto("settings", s.clone()).expect("valid");
        assert_eq!(parsed, domain::TenantSettings::default());
        assert_eq!(settings_to_proto(&parsed), s);
    }

    #[test]
    fn settings_normalize_names_and_sources() {
        let mut s = default_settings();
        s.time_zone = "Europe/Berlin".into();
        s.currency_code = "EUR".into();
        s.pipeline_stages[0].name = " Prospecting ".into();
        s.referral_sources = vec![" Referral ".into(), "Partner".into(), "referral".into()];
        let parsed = settings_from_proto("settings", s).expect("valid");
        assert_eq!(parsed.time_zone, chrono_tz::Europe::Berlin);
        assert_eq!(parsed.pipeline_stages[0].name, "prospecting");
        assert_eq!(parsed.referral_sources, vec!["referral", "partner"]);
    }

    #[test]
    fn each_settings_rule_reports_its_field_path() {
        type Mutate = fn(&mut pb::TenantSettings);
        let cases: Vec<(Mutate, &str, &str)> = vec![
            (
                |s| s.time_zone = String::new(),
                "settings.time_zone",
                "is required",
            ),
            (
                |s| s.time_zone = "Mars/Olympus".into(),
                "settings.time_zone",
                "not an IANA time zone",
            ),
            (
                |s| s.currency_code = "usd".into(),
                "settings.currency_code",
                "not an active ISO 4217",
            ),
            (
                |s| s.currency_code = "XXX".into(),
                "settings.currency_code",
                "not an active ISO 4217",
            ),
            (
                |s| s.currency_code = String::new(),
                "settings.currency_code",
                "is required",
            ),
            (
                |s| s.fiscal_year_start_month = 0,
                "settings.fiscal_year_start_month",
                "within 1..=12",
            ),
            (
                |s| s.fiscal_year_start_month = 13,
                "settings.fiscal_year_start_month",
                "within 1..=12",
            ),
            (
                |s| s.pipeline_stages.clear(),
                "settings.pipeline_stages",
                "at least one stage",
            ),
            (
                |s| s.pipeline_stages[1].name = " ".into(),
                "settings.pipeline_stages[1].name",
                "must not be blank",
            ),
            (
                |s| s.pipeline_stages[2].name = "Prospecting".into(),
                "settings.pipeline_stages[2].name",
                "duplicates",
            ),
            (
                |s| s.pipeline_stages[1].win_probability = 1.5,
                "settings.pipeline_stages[1].win_probability",
                "within [0, 1]",
            ),
            (
                |s| s.pipeline_stages[1].win_probability = -0.1,
                "settings.pipeline_stages[1].win_probability",
                "within [0, 1]",
            ),
            (
                |s| s.pipeline_stages[1].win_probability = f64::NAN,
                "settings.pipeline_stages[1].win_probability",
                "within [0, 1]",
            ),
            (
                |s| s.gross_margin = 0.0,
                "settings.gross_margin",
                "within (0, 1]",
            ),
            (
                |s| s.gross_margin = 1.01,
                "settings.gross_margin",
                "within (0, 1]",
            ),
            (
                |s| s.gross_margin = f64::INFINITY,
                "settings.gross_margin",
                "within (0, 1]",
            ),
            (
                |s| s.csat_satisfied_min_score = 0,
                "settings.csat_satisfied_min_score",
                "within 1..=5",
            ),
            (
                |s| s.csat_satisfied_min_score = 6,
                "settings.csat_satisfied_min_score",
                "within 1..=5",
            ),
            (
                |s| s.referral_sources = vec!["ok".into(), "  ".into()],
                "settings.referral_sources[1]",
                "must not be blank",
            ),
        ];
        for (mutate, path, reason) in cases {
            let mut s = default_settings();
            mutate(&mut s);
            let errs = settings_from_proto("settings", s).expect_err(path);
            assert_eq!(errs.len(), 1, "{path}: {errs:?}");
            assert_eq!(errs[0].field, path);
            assert!(
                errs[0].reason.contains(reason),
                "{path}: {:?}",
                errs[0].reason
            );
        }
    }

    #[test]
    fn settings_report_every_invalid_field() {
        let mut s = default_settings();
        s.fiscal_year_start_month = 0;
        s.gross_margin = 0.0;
        let errs = settings_from_proto("settings", s).expect_err("invalid");
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["settings.fiscal_year_start_month", "settings.gross_margin"]
        );
        assert!(matches!(
            violations_error(errs),
            Error::InvalidFields(v) if v.len() == 2
        ));
    }

    #[test]
    fn currency_list_is_sorted_unique_codes() {
        assert!(ISO_4217_CODES.windows(2).all(|w| w[0] < w[1]));
        assert!(
            ISO_4217_CODES
                .iter()
                .all(|c| c.len() == 3 && c.chars().all(|ch| ch.is_ascii_uppercase()))
        );
        assert!(ISO_4217_CODES.contains(&"USD") && ISO_4217_CODES.contains(&"EUR"));
    }

    #[test]
    fn long_input_is_not_echoed_in_full() {
        let long = "Q".repeat(10_000);
        let r = case!(Deal, 5, |m| m.amount = Some(pb::Money {
            currency_code: long.clone(),
            minor_units: 1
        }));
        let err = parse(r).expect_err("bad currency");
        assert!(err.reason.len() < 200, "{}", err.reason);
    }
}
