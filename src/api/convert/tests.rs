//! The conversions' rules, one case per rule, with the field path and reason
//! each violation must carry.

use super::*;
use crate::domain::rules::{END_INSTANT_SECONDS, MIN_INSTANT_SECONDS};
use crate::domain::{self, Record, RecordType};
use crate::proto::v1 as pb;
use pb::record::Record as PbRecord;
use prost_types::Timestamp;

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

fn with<T, F>(index: usize, unwrap: fn(&mut PbRecord) -> Option<&mut T>, mutate: F) -> pb::Record
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
fn long_input_is_not_echoed_in_full() {
    let long = "Q".repeat(10_000);
    let r = case!(Deal, 5, |m| m.amount = Some(pb::Money {
        currency_code: long.clone(),
        minor_units: 1
    }));
    let err = parse(r).expect_err("bad currency");
    assert!(err.reason.len() < 200, "{}", err.reason);
}

#[test]
fn fiscal_periods_are_parsed_for_the_server_to_resolve() {
    use crate::domain::period::PeriodSpec;
    let fiscal = |fiscal_year, fiscal_quarter| pb::Period {
        period: Some(pb::period::Period::Fiscal(pb::FiscalPeriod {
            fiscal_year,
            fiscal_quarter,
        })),
    };
    let year = kpi::parse_period(Some(&fiscal(2025, 0))).expect("fiscal year");
    assert_eq!(
        year.spec,
        PeriodSpec::Fiscal {
            year: 2025,
            quarter: None
        }
    );
    let quarter = kpi::parse_period(Some(&fiscal(2025, 4))).expect("fiscal quarter");
    assert_eq!(
        quarter.spec,
        PeriodSpec::Fiscal {
            year: 2025,
            quarter: Some(4)
        }
    );
    for bad in [-1, 5] {
        let err = kpi::parse_period(Some(&fiscal(2025, bad))).unwrap_err();
        assert!(
            err.to_string().contains("period.fiscal.fiscal_quarter"),
            "{err}"
        );
    }
}
