//! Proto records ↔ validated domain records, and record types and ids as
//! sent (for per-record results before validation).

use chrono::NaiveDate;
use prost_types::Timestamp;

use super::time::{date_from_proto, date_to_proto, instant_from_proto, timestamp_to_proto};
use super::{FieldViolation, Parsed, enum_reason, parse_id, quote};
use crate::domain::rules::{normalize_category, text_problem};
use crate::domain::{self, Instant, Record, RecordType, Text};
use crate::proto::v1 as pb;
use pb::record::Record as PbRecord;

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
        instant_from_proto(&ts).map_err(|reason| self.err(field, reason))
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

    /// Free text within the domain's bounds ([`text_problem`]).
    fn text_len(&self, field: &str, value: &str) -> Parsed<()> {
        match text_problem(value) {
            None => Ok(()),
            Some(reason) => Err(self.err(field, reason)),
        }
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
        date_from_proto(&d).map_err(|reason| self.err(field, reason))
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
        id: f.id("id", m.id)?.into(),
        version: m.version,
        name: f.name("name", m.name)?.into(),
        parent_team_id: f
            .reference("parent_team_id", m.parent_team_id)?
            .map(Into::into),
    })
}

fn team_membership(f: &Fields, m: pb::TeamMembership) -> Parsed<domain::TeamMembership> {
    Ok(domain::TeamMembership {
        id: f.id("id", m.id)?.into(),
        version: m.version,
        rep_id: f.id("rep_id", m.rep_id)?.into(),
        team_id: f.reference("team_id", m.team_id)?.map(Into::into),
        effective_at: f.instant("effective_at", m.effective_at)?,
    })
}

fn rep(f: &Fields, m: pb::Rep) -> Parsed<domain::Rep> {
    Ok(domain::Rep {
        id: f.id("id", m.id)?.into(),
        version: m.version,
        name: f.name("name", m.name)?.into(),
        email: f.optional_text("email", m.email)?.map(Into::into),
    })
}

fn customer(f: &Fields, m: pb::Customer) -> Parsed<domain::Customer> {
    let id = f.id("id", m.id)?;
    let acquired_at = f.instant("acquired_at", m.acquired_at)?;
    let churned_at = f.optional_instant("churned_at", m.churned_at)?;
    f.not_before("churned_at", churned_at, "acquired_at", acquired_at)?;
    Ok(domain::Customer {
        id: id.into(),
        version: m.version,
        acquired_at,
        churned_at,
        owner_rep_id: f.reference("owner_rep_id", m.owner_rep_id)?.map(Into::into),
        source: f.category("source", &m.source)?.map(Into::into),
        name: f.optional_text("name", m.name)?.map(Into::into),
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
        id: id.into(),
        version: m.version,
        source: source.into(),
        created_at,
        owner_rep_id: f.reference("owner_rep_id", m.owner_rep_id)?.map(Into::into),
        first_response_at,
        converted_at,
        customer_id: f.reference("customer_id", m.customer_id)?.map(Into::into),
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
        id: id.into(),
        version: m.version,
        amount,
        created_at,
        status,
        closed_at,
        stage: f.category("stage", &m.stage)?.map(Into::into),
        owner_rep_id: f.reference("owner_rep_id", m.owner_rep_id)?.map(Into::into),
        customer_id: f.reference("customer_id", m.customer_id)?.map(Into::into),
        lead_id: f.reference("lead_id", m.lead_id)?.map(Into::into),
    })
}

fn deal_stage_change(f: &Fields, m: pb::DealStageChange) -> Parsed<domain::DealStageChange> {
    Ok(domain::DealStageChange {
        id: f.id("id", m.id)?.into(),
        version: m.version,
        deal_id: f.id("deal_id", m.deal_id)?.into(),
        stage: f.required_category("stage", &m.stage)?.into(),
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
        id: id.into(),
        version: m.version,
        amount,
        ordered_at: f.instant("ordered_at", m.ordered_at)?,
        kind,
        customer_id: f.reference("customer_id", m.customer_id)?.map(Into::into),
        rep_id: f.reference("rep_id", m.rep_id)?.map(Into::into),
        deal_id: f.reference("deal_id", m.deal_id)?.map(Into::into),
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
        id: id.into(),
        version: m.version,
        subscription_id: subscription_id.into(),
        customer_id: customer_id.into(),
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
        id: id.into(),
        version: m.version,
        rep_id: rep_id.into(),
        activity_type,
        occurred_at,
        duration_seconds,
        lead_id: f.reference("lead_id", m.lead_id)?.map(Into::into),
        deal_id: f.reference("deal_id", m.deal_id)?.map(Into::into),
        customer_id: f.reference("customer_id", m.customer_id)?.map(Into::into),
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
        id: id.into(),
        version: m.version,
        channel: channel.into(),
        received_at,
        first_response_at,
        customer_id: f.reference("customer_id", m.customer_id)?.map(Into::into),
        rep_id: f.reference("rep_id", m.rep_id)?.map(Into::into),
    })
}

fn csat_response(f: &Fields, m: pb::CsatResponse) -> Parsed<domain::CsatResponse> {
    let id = f.id("id", m.id)?;
    if !(1..=5).contains(&m.score) {
        return Err(f.err("score", format!("must be within 1..=5, got {}", m.score)));
    }
    Ok(domain::CsatResponse {
        id: id.into(),
        version: m.version,
        score: m.score,
        responded_at: f.instant("responded_at", m.responded_at)?,
        customer_id: f.reference("customer_id", m.customer_id)?.map(Into::into),
        rep_id: f.reference("rep_id", m.rep_id)?.map(Into::into),
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
        id: id.into(),
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
        id: id.into(),
        version: m.version,
        category,
        amount,
        start_date,
        end_date,
        team_id: f.reference("team_id", m.team_id)?.map(Into::into),
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

fn money(minor_units: i64, currency: &str) -> pb::Money {
    pb::Money {
        currency_code: currency.to_string(),
        minor_units,
    }
}

fn text(value: &Option<Text>) -> String {
    value.as_deref().unwrap_or_default().to_string()
}

/// Converts a stored record back into its proto form; money carries the
/// tenant's `currency`.
pub fn record_to_proto(record: &Record, currency: &str) -> pb::Record {
    let inner = match record {
        Record::Team(r) => PbRecord::Team(pb::Team {
            id: r.id.to_string(),
            version: r.version,
            name: r.name.to_string(),
            parent_team_id: text(&r.parent_team_id),
        }),
        Record::TeamMembership(r) => PbRecord::TeamMembership(pb::TeamMembership {
            id: r.id.to_string(),
            version: r.version,
            rep_id: r.rep_id.to_string(),
            team_id: text(&r.team_id),
            effective_at: Some(timestamp_to_proto(r.effective_at)),
        }),
        Record::Rep(r) => PbRecord::Rep(pb::Rep {
            id: r.id.to_string(),
            version: r.version,
            name: r.name.to_string(),
            email: text(&r.email),
        }),
        Record::Customer(r) => PbRecord::Customer(pb::Customer {
            id: r.id.to_string(),
            version: r.version,
            acquired_at: Some(timestamp_to_proto(r.acquired_at)),
            churned_at: r.churned_at.map(timestamp_to_proto),
            owner_rep_id: text(&r.owner_rep_id),
            source: text(&r.source),
            name: text(&r.name),
        }),
        Record::Lead(r) => PbRecord::Lead(pb::Lead {
            id: r.id.to_string(),
            version: r.version,
            source: r.source.to_string(),
            created_at: Some(timestamp_to_proto(r.created_at)),
            owner_rep_id: text(&r.owner_rep_id),
            first_response_at: r.first_response_at.map(timestamp_to_proto),
            converted_at: r.converted_at.map(timestamp_to_proto),
            customer_id: text(&r.customer_id),
        }),
        Record::Deal(r) => PbRecord::Deal(pb::Deal {
            id: r.id.to_string(),
            version: r.version,
            amount: Some(money(r.amount, currency)),
            created_at: Some(timestamp_to_proto(r.created_at)),
            status: match r.status {
                domain::DealStatus::Open => pb::DealStatus::Open,
                domain::DealStatus::Won => pb::DealStatus::Won,
                domain::DealStatus::Lost => pb::DealStatus::Lost,
            } as i32,
            closed_at: r.closed_at.map(timestamp_to_proto),
            stage: text(&r.stage),
            owner_rep_id: text(&r.owner_rep_id),
            customer_id: text(&r.customer_id),
            lead_id: text(&r.lead_id),
        }),
        Record::DealStageChange(r) => PbRecord::DealStageChange(pb::DealStageChange {
            id: r.id.to_string(),
            version: r.version,
            deal_id: r.deal_id.to_string(),
            stage: r.stage.to_string(),
            entered_at: Some(timestamp_to_proto(r.entered_at)),
        }),
        Record::Order(r) => PbRecord::Order(pb::Order {
            id: r.id.to_string(),
            version: r.version,
            amount: Some(money(r.amount, currency)),
            ordered_at: Some(timestamp_to_proto(r.ordered_at)),
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
            id: r.id.to_string(),
            version: r.version,
            subscription_id: r.subscription_id.to_string(),
            customer_id: r.customer_id.to_string(),
            mrr: Some(money(r.mrr, currency)),
            effective_at: Some(timestamp_to_proto(r.effective_at)),
        }),
        Record::Activity(r) => PbRecord::Activity(pb::Activity {
            id: r.id.to_string(),
            version: r.version,
            rep_id: r.rep_id.to_string(),
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
            occurred_at: Some(timestamp_to_proto(r.occurred_at)),
            duration_seconds: r.duration_seconds,
            lead_id: text(&r.lead_id),
            deal_id: text(&r.deal_id),
            customer_id: text(&r.customer_id),
        }),
        Record::Inquiry(r) => PbRecord::Inquiry(pb::Inquiry {
            id: r.id.to_string(),
            version: r.version,
            channel: r.channel.to_string(),
            received_at: Some(timestamp_to_proto(r.received_at)),
            first_response_at: r.first_response_at.map(timestamp_to_proto),
            customer_id: text(&r.customer_id),
            rep_id: text(&r.rep_id),
        }),
        Record::CsatResponse(r) => PbRecord::CsatResponse(pb::CsatResponse {
            id: r.id.to_string(),
            version: r.version,
            score: r.score,
            responded_at: Some(timestamp_to_proto(r.responded_at)),
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
                id: r.id.to_string(),
                version: r.version,
                metric: match r.metric {
                    domain::TargetMetric::Revenue => pb::TargetMetric::Revenue,
                    domain::TargetMetric::Bookings => pb::TargetMetric::Bookings,
                    domain::TargetMetric::NewCustomers => pb::TargetMetric::NewCustomers,
                    domain::TargetMetric::DealsWon => pb::TargetMetric::DealsWon,
                } as i32,
                value: r.value,
                start_date: Some(date_to_proto(r.start_date)),
                end_date: Some(date_to_proto(r.end_date)),
                company,
                team_id,
                rep_id,
            })
        }
        Record::Spend(r) => PbRecord::Spend(pb::Spend {
            id: r.id.to_string(),
            version: r.version,
            category: match r.category {
                domain::SpendCategory::Marketing => pb::SpendCategory::Marketing,
                domain::SpendCategory::Sales => pb::SpendCategory::Sales,
            } as i32,
            amount: Some(money(r.amount, currency)),
            start_date: Some(date_to_proto(r.start_date)),
            end_date: Some(date_to_proto(r.end_date)),
            team_id: text(&r.team_id),
        }),
    };
    pb::Record {
        record: Some(inner),
    }
}
