//! The file layout of each record type: one column per proto field (same
//! names), read by `import` and written by `export`, so a file round-trips.
//!
//! Money columns hold decimal amounts in major units (`1250.50`), converted to
//! minor units exactly with string arithmetic; the currency comes from the
//! `currency` column or the default currency. Instants are RFC 3339
//! (`2025-03-10T14:30:00Z`) or a date (`2025-03-10`, midnight UTC); dates are
//! `YYYY-MM-DD`; enum columns take the short name in any case (`won`) or the
//! proto name (`DEAL_STATUS_WON`). An empty cell means absent.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use clap::ValueEnum;
use prost_types::Timestamp;

use crate::api::convert::time::{date_to_proto, timestamp_to_proto};
use crate::client::format::{currency_exponent, minor_to_decimal};
use crate::client::period::date_text;
use crate::proto::v1::{
    self, ActivityType, DealStatus, OrderKind, RecordType, SpendCategory, TargetMetric,
    record::Record as R,
};

/// A record type as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RecordKind {
    /// Orders (sales).
    Orders,
    /// Deals (opportunities).
    Deals,
    /// Customers (accounts).
    Customers,
    /// Leads.
    Leads,
    /// Sales activities.
    Activities,
    /// Customer inquiries.
    Inquiries,
    /// CSAT survey responses.
    Csat,
    /// Teams.
    Teams,
    /// Reps.
    Reps,
    /// Team memberships of reps.
    Memberships,
    /// Deal stage changes.
    StageChanges,
    /// Subscription (MRR) changes.
    Subscriptions,
    /// Targets and quotas.
    Targets,
    /// Sales and marketing spend.
    Spend,
}

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// Free text or an id.
    Text,
    /// A whole number.
    Integer,
    /// `true` or `false`.
    Bool,
    /// A decimal amount in major units.
    Money,
    /// An ISO 4217 code.
    Currency,
    /// An instant: RFC 3339 or `YYYY-MM-DD`.
    Instant,
    /// A local date `YYYY-MM-DD`.
    Date,
    /// One of a fixed set of names.
    Enum,
}

/// One column of a record type's file layout.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// Name, equal to the proto field name.
    pub name: &'static str,
    /// Whether a record needs it.
    pub required: bool,
    /// What it holds.
    pub kind: ColumnKind,
}

const fn col(name: &'static str, required: bool, kind: ColumnKind) -> Column {
    Column {
        name,
        required,
        kind,
    }
}

use ColumnKind::{Bool, Currency, Date, Enum, Instant, Integer, Money, Text};

const VERSION: Column = col("version", false, Integer);

impl RecordKind {
    /// Every kind, in the order the documentation lists them.
    pub const ALL: [RecordKind; 14] = [
        RecordKind::Orders,
        RecordKind::Deals,
        RecordKind::Customers,
        RecordKind::Leads,
        RecordKind::Activities,
        RecordKind::Inquiries,
        RecordKind::Csat,
        RecordKind::Teams,
        RecordKind::Reps,
        RecordKind::Memberships,
        RecordKind::StageChanges,
        RecordKind::Subscriptions,
        RecordKind::Targets,
        RecordKind::Spend,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            RecordKind::Orders => "orders",
            RecordKind::Deals => "deals",
            RecordKind::Customers => "customers",
            RecordKind::Leads => "leads",
            RecordKind::Activities => "activities",
            RecordKind::Inquiries => "inquiries",
            RecordKind::Csat => "csat",
            RecordKind::Teams => "teams",
            RecordKind::Reps => "reps",
            RecordKind::Memberships => "memberships",
            RecordKind::StageChanges => "stage-changes",
            RecordKind::Subscriptions => "subscriptions",
            RecordKind::Targets => "targets",
            RecordKind::Spend => "spend",
        }
    }

    /// The proto record type.
    pub fn record_type(self) -> RecordType {
        match self {
            RecordKind::Orders => RecordType::Order,
            RecordKind::Deals => RecordType::Deal,
            RecordKind::Customers => RecordType::Customer,
            RecordKind::Leads => RecordType::Lead,
            RecordKind::Activities => RecordType::Activity,
            RecordKind::Inquiries => RecordType::Inquiry,
            RecordKind::Csat => RecordType::CsatResponse,
            RecordKind::Teams => RecordType::Team,
            RecordKind::Reps => RecordType::Rep,
            RecordKind::Memberships => RecordType::TeamMembership,
            RecordKind::StageChanges => RecordType::DealStageChange,
            RecordKind::Subscriptions => RecordType::SubscriptionChange,
            RecordKind::Targets => RecordType::Target,
            RecordKind::Spend => RecordType::Spend,
        }
    }

    /// Whether parsing or writing needs a currency (money columns, or target values).
    pub fn uses_money(self) -> bool {
        self.columns().iter().any(|c| c.kind == Money) || self == RecordKind::Targets
    }

    /// The columns, in file order.
    pub fn columns(self) -> &'static [Column] {
        match self {
            RecordKind::Orders => {
                const {
                    &[
                        col("id", true, Text),
                        col("amount", true, Money),
                        col("currency", false, Currency),
                        col("ordered_at", true, Instant),
                        col("kind", false, Enum),
                        col("customer_id", false, Text),
                        col("rep_id", false, Text),
                        col("deal_id", false, Text),
                        VERSION,
                    ]
                }
            }
            RecordKind::Deals => {
                const {
                    &[
                        col("id", true, Text),
                        col("amount", true, Money),
                        col("currency", false, Currency),
                        col("created_at", true, Instant),
                        col("status", true, Enum),
                        col("closed_at", false, Instant),
                        col("stage", false, Text),
                        col("owner_rep_id", false, Text),
                        col("customer_id", false, Text),
                        col("lead_id", false, Text),
                        VERSION,
                    ]
                }
            }
            RecordKind::Customers => {
                const {
                    &[
                        col("id", true, Text),
                        col("acquired_at", true, Instant),
                        col("churned_at", false, Instant),
                        col("owner_rep_id", false, Text),
                        col("source", false, Text),
                        col("name", false, Text),
                        VERSION,
                    ]
                }
            }
            RecordKind::Leads => {
                const {
                    &[
                        col("id", true, Text),
                        col("source", true, Text),
                        col("created_at", true, Instant),
                        col("owner_rep_id", false, Text),
                        col("first_response_at", false, Instant),
                        col("converted_at", false, Instant),
                        col("customer_id", false, Text),
                        VERSION,
                    ]
                }
            }
            RecordKind::Activities => {
                const {
                    &[
                        col("id", true, Text),
                        col("rep_id", true, Text),
                        col("type", true, Enum),
                        col("occurred_at", true, Instant),
                        col("duration_seconds", false, Integer),
                        col("lead_id", false, Text),
                        col("deal_id", false, Text),
                        col("customer_id", false, Text),
                        VERSION,
                    ]
                }
            }
            RecordKind::Inquiries => {
                const {
                    &[
                        col("id", true, Text),
                        col("channel", true, Text),
                        col("received_at", true, Instant),
                        col("first_response_at", false, Instant),
                        col("customer_id", false, Text),
                        col("rep_id", false, Text),
                        VERSION,
                    ]
                }
            }
            RecordKind::Csat => {
                const {
                    &[
                        col("id", true, Text),
                        col("score", true, Integer),
                        col("responded_at", true, Instant),
                        col("customer_id", false, Text),
                        col("rep_id", false, Text),
                        VERSION,
                    ]
                }
            }
            RecordKind::Teams => {
                const {
                    &[
                        col("id", true, Text),
                        col("name", true, Text),
                        col("parent_team_id", false, Text),
                        VERSION,
                    ]
                }
            }
            RecordKind::Reps => {
                const {
                    &[
                        col("id", true, Text),
                        col("name", true, Text),
                        col("email", false, Text),
                        VERSION,
                    ]
                }
            }
            RecordKind::Memberships => {
                const {
                    &[
                        col("id", true, Text),
                        col("rep_id", true, Text),
                        col("team_id", false, Text),
                        col("effective_at", true, Instant),
                        VERSION,
                    ]
                }
            }
            RecordKind::StageChanges => {
                const {
                    &[
                        col("id", true, Text),
                        col("deal_id", true, Text),
                        col("stage", true, Text),
                        col("entered_at", true, Instant),
                        VERSION,
                    ]
                }
            }
            RecordKind::Subscriptions => {
                const {
                    &[
                        col("id", true, Text),
                        col("subscription_id", true, Text),
                        col("customer_id", true, Text),
                        col("mrr", true, Money),
                        col("currency", false, Currency),
                        col("effective_at", true, Instant),
                        VERSION,
                    ]
                }
            }
            RecordKind::Targets => {
                const {
                    &[
                        col("id", true, Text),
                        col("metric", true, Enum),
                        col("value", true, Text),
                        col("start_date", true, Date),
                        col("end_date", true, Date),
                        col("company", false, Bool),
                        col("team_id", false, Text),
                        col("rep_id", false, Text),
                        VERSION,
                    ]
                }
            }
            RecordKind::Spend => {
                const {
                    &[
                        col("id", true, Text),
                        col("category", true, Enum),
                        col("amount", true, Money),
                        col("currency", false, Currency),
                        col("start_date", true, Date),
                        col("end_date", true, Date),
                        col("team_id", false, Text),
                        VERSION,
                    ]
                }
            }
        }
    }

    /// The names a file header may use, in order.
    pub fn header(self) -> Vec<&'static str> {
        self.columns().iter().map(|c| c.name).collect()
    }

    /// Maps a file's header to column positions; errors on unknown or missing columns.
    pub fn map_header<S: AsRef<str>>(self, header: &[S]) -> Result<Vec<Option<usize>>, String> {
        let columns = self.columns();
        let mut mapping = Vec::with_capacity(header.len());
        let mut seen = vec![false; columns.len()];
        for name in header {
            let name = name.as_ref().trim().trim_start_matches('\u{feff}');
            match columns
                .iter()
                .position(|c| c.name.eq_ignore_ascii_case(name))
            {
                Some(i) if seen[i] => return Err(format!("column {name:?} appears twice")),
                Some(i) => {
                    seen[i] = true;
                    mapping.push(Some(i));
                }
                None if name.is_empty() => mapping.push(None),
                None => {
                    return Err(format!(
                        "unknown column {name:?} for {}; the columns are: {}",
                        self.name(),
                        self.header().join(",")
                    ));
                }
            }
        }
        let missing: Vec<&str> = columns
            .iter()
            .zip(&seen)
            .filter(|(c, seen)| c.required && !**seen)
            .map(|(c, _)| c.name)
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "missing required column(s) for {}: {}",
                self.name(),
                missing.join(", ")
            ));
        }
        Ok(mapping)
    }
}

/// Parses a decimal amount in major units into minor units, exactly:
/// `parse_decimal("1250.5", 2)` is 125050. More decimals than the currency has
/// is an error, so nothing is rounded away.
pub fn parse_decimal(text: &str, exponent: u32) -> Result<i64, String> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let valid = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !valid(whole) || !valid(fraction) {
        return Err(format!(
            "invalid amount {text:?}: expected a decimal number like 1250.50"
        ));
    }
    if fraction.len() > exponent as usize {
        return Err(format!(
            "{text:?} has {} decimals, the currency has {exponent}",
            fraction.len()
        ));
    }
    let too_large = || format!("{text:?} is too large");
    let mut minor: i64 = 0;
    for b in whole.bytes().chain(fraction.bytes()) {
        minor = minor
            .checked_mul(10)
            .and_then(|m| m.checked_add(i64::from(b - b'0')))
            .ok_or_else(too_large)?;
    }
    for _ in fraction.len()..exponent as usize {
        minor = minor.checked_mul(10).ok_or_else(too_large)?;
    }
    Ok(if negative { -minor } else { minor })
}

/// Parses an instant: RFC 3339, or a date meaning midnight UTC.
pub fn parse_instant(text: &str) -> Result<Timestamp, String> {
    let text = text.trim();
    let instant: DateTime<Utc> = if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        t.with_timezone(&Utc)
    } else if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        day.and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc())
            .ok_or("invalid date")?
    } else {
        return Err(format!(
            "invalid instant {text:?}: expected RFC 3339 (2025-03-10T14:30:00Z) or a date (2025-03-10)"
        ));
    };
    Ok(timestamp_to_proto(instant))
}

/// An instant as RFC 3339 in UTC (`2025-03-10T14:30:00Z`).
pub fn instant_text(t: &Timestamp) -> String {
    match DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        None => format!("{}s", t.seconds),
    }
}

/// Parses an enum cell: the short name in any case (`won`, `Cross-Sell`) or the
/// full proto name (`DEAL_STATUS_WON`).
fn parse_enum<E>(
    text: &str,
    prefix: &str,
    from_name: impl Fn(&str) -> Option<E>,
    names: &[&str],
) -> Result<E, String> {
    let upper = text.trim().to_ascii_uppercase().replace(['-', ' '], "_");
    let full = if upper.starts_with(prefix) {
        upper
    } else {
        format!("{prefix}{upper}")
    };
    match from_name(&full) {
        Some(value) if !full.ends_with("_UNSPECIFIED") => Ok(value),
        _ => Err(format!(
            "invalid value {text:?}: expected one of {}",
            names.join(", ")
        )),
    }
}

/// The short lower-case name of an enum value (`DEAL_STATUS_WON` → `won`).
fn enum_text(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix)
        .unwrap_or(full)
        .to_ascii_lowercase()
}

/// One row of a file, as text cells aligned with [`RecordKind::columns`]
/// (an empty cell is an absent value).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Row {
    /// Cells in column order.
    pub cells: Vec<String>,
}

/// Reads typed values from a row; every error names its column.
struct Reader<'a> {
    columns: &'static [Column],
    row: &'a Row,
    default_currency: Option<&'a str>,
}

impl Reader<'_> {
    fn cell(&self, name: &str) -> &str {
        let i = self
            .columns
            .iter()
            .position(|c| c.name == name)
            .expect("column names are static");
        self.row.cells.get(i).map_or("", |s| s.trim())
    }

    fn text(&self, name: &str) -> String {
        self.cell(name).to_string()
    }

    fn required(&self, name: &str) -> Result<&str, String> {
        let cell = self.cell(name);
        if cell.is_empty() {
            Err(format!("{name}: required"))
        } else {
            Ok(cell)
        }
    }

    fn instant(&self, name: &str) -> Result<Option<Timestamp>, String> {
        let cell = self.cell(name);
        if cell.is_empty() {
            return Ok(None);
        }
        parse_instant(cell)
            .map(Some)
            .map_err(|e| format!("{name}: {e}"))
    }

    fn required_instant(&self, name: &str) -> Result<Option<Timestamp>, String> {
        self.required(name)?;
        self.instant(name)
    }

    fn date(&self, name: &str) -> Result<Option<v1::Date>, String> {
        let cell = self.required(name)?;
        NaiveDate::parse_from_str(cell, "%Y-%m-%d")
            .map(|d| Some(date_to_proto(d)))
            .map_err(|_| format!("{name}: invalid date {cell:?}: expected YYYY-MM-DD"))
    }

    fn integer(&self, name: &str) -> Result<Option<i64>, String> {
        let cell = self.cell(name);
        if cell.is_empty() {
            return Ok(None);
        }
        cell.parse::<i64>()
            .map(Some)
            .map_err(|_| format!("{name}: invalid whole number {cell:?}"))
    }

    fn version(&self) -> Result<Option<i64>, String> {
        self.integer("version")
    }

    fn currency(&self) -> Result<String, String> {
        let cell = self.cell("currency");
        if !cell.is_empty() {
            return Ok(cell.to_ascii_uppercase());
        }
        self.default_currency.map(str::to_string).ok_or_else(|| {
            "currency: required (no currency column value and no default currency)".to_string()
        })
    }

    fn money(&self, name: &str) -> Result<Option<v1::Money>, String> {
        let cell = self.required(name)?;
        let currency = self.currency()?;
        let minor = parse_decimal(cell, currency_exponent(&currency))
            .map_err(|e| format!("{name}: {e}"))?;
        Ok(Some(v1::Money {
            currency_code: currency,
            minor_units: minor,
        }))
    }

    fn bool(&self, name: &str) -> Result<bool, String> {
        match self.cell(name).to_ascii_lowercase().as_str() {
            "" | "false" | "0" | "no" | "n" => Ok(false),
            "true" | "1" | "yes" | "y" => Ok(true),
            other => Err(format!(
                "{name}: invalid boolean {other:?}: expected true or false"
            )),
        }
    }
}

/// Parses one row into a record of the given kind.
pub fn row_to_record(
    kind: RecordKind,
    row: &Row,
    default_currency: Option<&str>,
) -> Result<v1::Record, String> {
    let r = Reader {
        columns: kind.columns(),
        row,
        default_currency,
    };
    let id = r.required("id")?.to_string();
    let version = r.version()?;
    let record = match kind {
        RecordKind::Orders => R::Order(v1::Order {
            id,
            version,
            amount: r.money("amount")?,
            ordered_at: r.required_instant("ordered_at")?,
            kind: match r.cell("kind") {
                "" => OrderKind::Unspecified as i32,
                text => parse_enum(
                    text,
                    "ORDER_KIND_",
                    OrderKind::from_str_name,
                    &["new", "upsell", "cross_sell", "renewal"],
                )
                .map_err(|e| format!("kind: {e}"))? as i32,
            },
            customer_id: r.text("customer_id"),
            rep_id: r.text("rep_id"),
            deal_id: r.text("deal_id"),
        }),
        RecordKind::Deals => R::Deal(v1::Deal {
            id,
            version,
            amount: r.money("amount")?,
            created_at: r.required_instant("created_at")?,
            status: parse_enum(
                r.required("status")?,
                "DEAL_STATUS_",
                DealStatus::from_str_name,
                &["open", "won", "lost"],
            )
            .map_err(|e| format!("status: {e}"))? as i32,
            closed_at: r.instant("closed_at")?,
            stage: r.text("stage"),
            owner_rep_id: r.text("owner_rep_id"),
            customer_id: r.text("customer_id"),
            lead_id: r.text("lead_id"),
        }),
        RecordKind::Customers => R::Customer(v1::Customer {
            id,
            version,
            acquired_at: r.required_instant("acquired_at")?,
            churned_at: r.instant("churned_at")?,
            owner_rep_id: r.text("owner_rep_id"),
            source: r.text("source"),
            name: r.text("name"),
        }),
        RecordKind::Leads => R::Lead(v1::Lead {
            id,
            version,
            source: r.required("source")?.to_string(),
            created_at: r.required_instant("created_at")?,
            owner_rep_id: r.text("owner_rep_id"),
            first_response_at: r.instant("first_response_at")?,
            converted_at: r.instant("converted_at")?,
            customer_id: r.text("customer_id"),
        }),
        RecordKind::Activities => R::Activity(v1::Activity {
            id,
            version,
            rep_id: r.required("rep_id")?.to_string(),
            r#type: parse_enum(
                r.required("type")?,
                "ACTIVITY_TYPE_",
                ActivityType::from_str_name,
                &[
                    "call",
                    "email",
                    "meeting",
                    "follow_up",
                    "proposal",
                    "demo",
                    "networking_event",
                    "social",
                ],
            )
            .map_err(|e| format!("type: {e}"))? as i32,
            occurred_at: r.required_instant("occurred_at")?,
            duration_seconds: r.integer("duration_seconds")?,
            lead_id: r.text("lead_id"),
            deal_id: r.text("deal_id"),
            customer_id: r.text("customer_id"),
        }),
        RecordKind::Inquiries => R::Inquiry(v1::Inquiry {
            id,
            version,
            channel: r.required("channel")?.to_string(),
            received_at: r.required_instant("received_at")?,
            first_response_at: r.instant("first_response_at")?,
            customer_id: r.text("customer_id"),
            rep_id: r.text("rep_id"),
        }),
        RecordKind::Csat => R::CsatResponse(v1::CsatResponse {
            id,
            version,
            score: {
                r.required("score")?;
                let score = r.integer("score")?.unwrap_or_default();
                i32::try_from(score).map_err(|_| format!("score: {score} is out of range"))?
            },
            responded_at: r.required_instant("responded_at")?,
            customer_id: r.text("customer_id"),
            rep_id: r.text("rep_id"),
        }),
        RecordKind::Teams => R::Team(v1::Team {
            id,
            version,
            name: r.required("name")?.to_string(),
            parent_team_id: r.text("parent_team_id"),
        }),
        RecordKind::Reps => R::Rep(v1::Rep {
            id,
            version,
            name: r.required("name")?.to_string(),
            email: r.text("email"),
        }),
        RecordKind::Memberships => R::TeamMembership(v1::TeamMembership {
            id,
            version,
            rep_id: r.required("rep_id")?.to_string(),
            team_id: r.text("team_id"),
            effective_at: r.required_instant("effective_at")?,
        }),
        RecordKind::StageChanges => R::DealStageChange(v1::DealStageChange {
            id,
            version,
            deal_id: r.required("deal_id")?.to_string(),
            stage: r.required("stage")?.to_string(),
            entered_at: r.required_instant("entered_at")?,
        }),
        RecordKind::Subscriptions => R::SubscriptionChange(v1::SubscriptionChange {
            id,
            version,
            subscription_id: r.required("subscription_id")?.to_string(),
            customer_id: r.required("customer_id")?.to_string(),
            mrr: r.money("mrr")?,
            effective_at: r.required_instant("effective_at")?,
        }),
        RecordKind::Targets => {
            let metric = parse_enum(
                r.required("metric")?,
                "TARGET_METRIC_",
                TargetMetric::from_str_name,
                &["revenue", "bookings", "new_customers", "deals_won"],
            )
            .map_err(|e| format!("metric: {e}"))?;
            let value_text = r.required("value")?;
            let value = if matches!(metric, TargetMetric::Revenue | TargetMetric::Bookings) {
                let currency = r
                    .default_currency
                    .ok_or("value: a money target needs the tenant currency")?;
                parse_decimal(value_text, currency_exponent(currency))
                    .map_err(|e| format!("value: {e}"))?
            } else {
                value_text
                    .parse::<i64>()
                    .map_err(|_| format!("value: invalid whole number {value_text:?}"))?
            };
            R::Target(v1::Target {
                id,
                version,
                metric: metric as i32,
                value,
                start_date: r.date("start_date")?,
                end_date: r.date("end_date")?,
                company: r.bool("company")?,
                team_id: r.text("team_id"),
                rep_id: r.text("rep_id"),
            })
        }
        RecordKind::Spend => R::Spend(v1::Spend {
            id,
            version,
            category: parse_enum(
                r.required("category")?,
                "SPEND_CATEGORY_",
                SpendCategory::from_str_name,
                &["marketing", "sales"],
            )
            .map_err(|e| format!("category: {e}"))? as i32,
            amount: r.money("amount")?,
            start_date: r.date("start_date")?,
            end_date: r.date("end_date")?,
            team_id: r.text("team_id"),
        }),
    };
    Ok(v1::Record {
        record: Some(record),
    })
}

fn opt_instant(t: &Option<Timestamp>) -> String {
    t.as_ref().map(instant_text).unwrap_or_default()
}

fn money_cells(m: &Option<v1::Money>) -> [String; 2] {
    match m {
        Some(m) => [
            minor_to_decimal(m.minor_units, currency_exponent(&m.currency_code)),
            m.currency_code.clone(),
        ],
        None => [String::new(), String::new()],
    }
}

fn version_text(v: Option<i64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn opt_date(d: &Option<v1::Date>) -> String {
    if d.is_some() {
        date_text(d.as_ref())
    } else {
        String::new()
    }
}

/// Writes a record as a row of its kind's columns. `currency` is the tenant's,
/// used for the values of money targets. Returns `None` for a record of
/// another kind.
pub fn record_to_row(kind: RecordKind, record: &v1::Record, currency: &str) -> Option<Row> {
    let cells: Vec<String> = match (kind, record.record.as_ref()?) {
        (RecordKind::Orders, R::Order(o)) => {
            let [amount, currency] = money_cells(&o.amount);
            let kind = OrderKind::try_from(o.kind).unwrap_or(OrderKind::Unspecified);
            let kind = if kind == OrderKind::Unspecified {
                String::new()
            } else {
                enum_text(kind.as_str_name(), "ORDER_KIND_")
            };
            vec![
                o.id.clone(),
                amount,
                currency,
                opt_instant(&o.ordered_at),
                kind,
                o.customer_id.clone(),
                o.rep_id.clone(),
                o.deal_id.clone(),
                version_text(o.version),
            ]
        }
        (RecordKind::Deals, R::Deal(d)) => {
            let [amount, currency] = money_cells(&d.amount);
            let status = DealStatus::try_from(d.status).unwrap_or(DealStatus::Unspecified);
            vec![
                d.id.clone(),
                amount,
                currency,
                opt_instant(&d.created_at),
                enum_text(status.as_str_name(), "DEAL_STATUS_"),
                opt_instant(&d.closed_at),
                d.stage.clone(),
                d.owner_rep_id.clone(),
                d.customer_id.clone(),
                d.lead_id.clone(),
                version_text(d.version),
            ]
        }
        (RecordKind::Customers, R::Customer(c)) => vec![
            c.id.clone(),
            opt_instant(&c.acquired_at),
            opt_instant(&c.churned_at),
            c.owner_rep_id.clone(),
            c.source.clone(),
            c.name.clone(),
            version_text(c.version),
        ],
        (RecordKind::Leads, R::Lead(l)) => vec![
            l.id.clone(),
            l.source.clone(),
            opt_instant(&l.created_at),
            l.owner_rep_id.clone(),
            opt_instant(&l.first_response_at),
            opt_instant(&l.converted_at),
            l.customer_id.clone(),
            version_text(l.version),
        ],
        (RecordKind::Activities, R::Activity(a)) => {
            let kind = ActivityType::try_from(a.r#type).unwrap_or(ActivityType::Unspecified);
            vec![
                a.id.clone(),
                a.rep_id.clone(),
                enum_text(kind.as_str_name(), "ACTIVITY_TYPE_"),
                opt_instant(&a.occurred_at),
                version_text(a.duration_seconds),
                a.lead_id.clone(),
                a.deal_id.clone(),
                a.customer_id.clone(),
                version_text(a.version),
            ]
        }
        (RecordKind::Inquiries, R::Inquiry(i)) => vec![
            i.id.clone(),
            i.channel.clone(),
            opt_instant(&i.received_at),
            opt_instant(&i.first_response_at),
            i.customer_id.clone(),
            i.rep_id.clone(),
            version_text(i.version),
        ],
        (RecordKind::Csat, R::CsatResponse(c)) => vec![
            c.id.clone(),
            c.score.to_string(),
            opt_instant(&c.responded_at),
            c.customer_id.clone(),
            c.rep_id.clone(),
            version_text(c.version),
        ],
        (RecordKind::Teams, R::Team(t)) => vec![
            t.id.clone(),
            t.name.clone(),
            t.parent_team_id.clone(),
            version_text(t.version),
        ],
        (RecordKind::Reps, R::Rep(r)) => vec![
            r.id.clone(),
            r.name.clone(),
            r.email.clone(),
            version_text(r.version),
        ],
        (RecordKind::Memberships, R::TeamMembership(m)) => {
            vec![
                m.id.clone(),
                m.rep_id.clone(),
                m.team_id.clone(),
                opt_instant(&m.effective_at),
                version_text(m.version),
            ]
        }
        (RecordKind::StageChanges, R::DealStageChange(s)) => {
            vec![
                s.id.clone(),
                s.deal_id.clone(),
                s.stage.clone(),
                opt_instant(&s.entered_at),
                version_text(s.version),
            ]
        }
        (RecordKind::Subscriptions, R::SubscriptionChange(s)) => {
            let [mrr, currency] = money_cells(&s.mrr);
            vec![
                s.id.clone(),
                s.subscription_id.clone(),
                s.customer_id.clone(),
                mrr,
                currency,
                opt_instant(&s.effective_at),
                version_text(s.version),
            ]
        }
        (RecordKind::Targets, R::Target(t)) => {
            let metric = TargetMetric::try_from(t.metric).unwrap_or(TargetMetric::Unspecified);
            let value = if matches!(metric, TargetMetric::Revenue | TargetMetric::Bookings) {
                minor_to_decimal(t.value, currency_exponent(currency))
            } else {
                t.value.to_string()
            };
            vec![
                t.id.clone(),
                enum_text(metric.as_str_name(), "TARGET_METRIC_"),
                value,
                opt_date(&t.start_date),
                opt_date(&t.end_date),
                if t.company {
                    "true".to_string()
                } else {
                    String::new()
                },
                t.team_id.clone(),
                t.rep_id.clone(),
                version_text(t.version),
            ]
        }
        (RecordKind::Spend, R::Spend(s)) => {
            let [amount, currency] = money_cells(&s.amount);
            let category =
                SpendCategory::try_from(s.category).unwrap_or(SpendCategory::Unspecified);
            vec![
                s.id.clone(),
                enum_text(category.as_str_name(), "SPEND_CATEGORY_"),
                amount,
                currency,
                opt_date(&s.start_date),
                opt_date(&s.end_date),
                s.team_id.clone(),
                version_text(s.version),
            ]
        }
        _ => return None,
    };
    Some(Row { cells })
}

/// A row as a JSON object with the column names as keys (absent cells left out;
/// whole-number and boolean columns typed, everything else a string so
/// amounts stay exact).
pub fn row_to_json(kind: RecordKind, row: &Row) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    for (column, cell) in kind.columns().iter().zip(&row.cells) {
        if cell.is_empty() {
            continue;
        }
        let value = match column.kind {
            Integer => cell
                .parse::<i64>()
                .map_or_else(|_| cell.clone().into(), serde_json::Value::from),
            Bool => serde_json::Value::Bool(cell == "true"),
            _ => serde_json::Value::String(cell.clone()),
        };
        object.insert(column.name.to_string(), value);
    }
    serde_json::Value::Object(object)
}

/// Reads one NDJSON object into a row (keys are column names, any case).
pub fn json_to_row(kind: RecordKind, line: &str) -> Result<Row, String> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let serde_json::Value::Object(object) = value else {
        return Err("expected a JSON object".to_string());
    };
    let columns = kind.columns();
    let mut cells = vec![String::new(); columns.len()];
    for (key, value) in object {
        let i = columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(&key))
            .ok_or_else(|| {
                format!(
                    "unknown key {key:?}; the keys are: {}",
                    kind.header().join(",")
                )
            })?;
        cells[i] = match value {
            serde_json::Value::Null => String::new(),
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            _ => return Err(format!("{key}: expected a string, number or boolean")),
        };
    }
    Ok(Row { cells })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_convert_exactly_to_minor_units() {
        assert_eq!(parse_decimal("1250.50", 2), Ok(125_050));
        assert_eq!(parse_decimal("1250.5", 2), Ok(125_050));
        assert_eq!(parse_decimal("1250", 2), Ok(125_000));
        assert_eq!(parse_decimal("0.01", 2), Ok(1));
        assert_eq!(parse_decimal(".5", 2), Ok(50));
        assert_eq!(parse_decimal("7.", 2), Ok(700));
        assert_eq!(parse_decimal("-3.10", 2), Ok(-310));
        assert_eq!(parse_decimal("1500", 0), Ok(1500));
        assert_eq!(parse_decimal("1.234", 3), Ok(1234));
        // 0.1 + 0.2 style float trouble cannot happen: 19.99 is exactly 1999.
        assert_eq!(parse_decimal("19.99", 2), Ok(1999));
        assert_eq!(parse_decimal("92233720368547758.07", 2), Ok(i64::MAX));
    }

    #[test]
    fn bad_decimals_are_rejected() {
        assert!(
            parse_decimal("12.345", 2)
                .unwrap_err()
                .contains("3 decimals")
        );
        assert!(parse_decimal("1.5", 0).unwrap_err().contains("1 decimals"));
        for text in [
            "",
            ".",
            "1,250.00",
            "1e3",
            "abc",
            "1.2.3",
            "--1",
            "92233720368547758.08",
        ] {
            assert!(parse_decimal(text, 2).is_err(), "{text}");
        }
    }

    #[test]
    fn minor_units_print_back_exactly() {
        for (minor, exponent) in [
            (125_050, 2),
            (1, 2),
            (0, 2),
            (-310, 2),
            (1500, 0),
            (1234, 3),
        ] {
            let text = minor_to_decimal(minor, exponent);
            assert_eq!(parse_decimal(&text, exponent), Ok(minor), "{text}");
        }
    }

    #[test]
    fn instants_accept_rfc3339_and_dates() {
        assert_eq!(parse_instant("2025-03-10").unwrap().seconds, 1_741_564_800);
        assert_eq!(
            parse_instant("2025-03-10T01:00:00+01:00").unwrap().seconds,
            1_741_564_800
        );
        assert_eq!(
            instant_text(&parse_instant("2025-03-10T14:30:00Z").unwrap()),
            "2025-03-10T14:30:00Z"
        );
        assert!(parse_instant("10/03/2025").is_err());
    }

    #[test]
    fn enums_are_case_insensitive() {
        let row = |status: &str| Row {
            cells: [
                "d1",
                "10",
                "USD",
                "2025-03-01",
                status,
                "2025-03-02",
                "",
                "",
                "",
                "",
                "",
            ]
            .map(String::from)
            .to_vec(),
        };
        for status in ["won", "WON", "Won", "DEAL_STATUS_WON"] {
            let record = row_to_record(RecordKind::Deals, &row(status), None).unwrap();
            let Some(R::Deal(deal)) = record.record else {
                panic!()
            };
            assert_eq!(deal.status, DealStatus::Won as i32);
        }
        assert!(
            row_to_record(RecordKind::Deals, &row("maybe"), None)
                .unwrap_err()
                .starts_with("status:")
        );
        assert!(row_to_record(RecordKind::Deals, &row("unspecified"), None).is_err());
    }

    #[test]
    fn rows_round_trip_through_records() {
        let header = RecordKind::Orders.header();
        assert_eq!(
            header,
            [
                "id",
                "amount",
                "currency",
                "ordered_at",
                "kind",
                "customer_id",
                "rep_id",
                "deal_id",
                "version"
            ]
        );
        let row = Row {
            cells: [
                "o1",
                "1250.50",
                "USD",
                "2025-03-10T14:30:00Z",
                "cross_sell",
                "c1",
                "r1",
                "",
                "3",
            ]
            .map(String::from)
            .to_vec(),
        };
        let record = row_to_record(RecordKind::Orders, &row, Some("EUR")).unwrap();
        let Some(R::Order(order)) = &record.record else {
            panic!()
        };
        assert_eq!(order.amount.as_ref().unwrap().minor_units, 125_050);
        assert_eq!(
            record_to_row(RecordKind::Orders, &record, "USD"),
            Some(row.clone())
        );
        let json = row_to_json(RecordKind::Orders, &row);
        assert_eq!(json["version"], 3);
        assert_eq!(json_to_row(RecordKind::Orders, &json.to_string()), Ok(row));
    }

    #[test]
    fn default_currency_applies_when_the_column_is_empty() {
        let row = Row {
            cells: ["o1", "1500", "", "2025-03-10", "", "", "", "", ""]
                .map(String::from)
                .to_vec(),
        };
        let record = row_to_record(RecordKind::Orders, &row, Some("JPY")).unwrap();
        let Some(R::Order(order)) = record.record else {
            panic!()
        };
        assert_eq!(
            order.amount,
            Some(v1::Money {
                currency_code: "JPY".into(),
                minor_units: 1500
            })
        );
        assert!(
            row_to_record(RecordKind::Orders, &row, None)
                .unwrap_err()
                .starts_with("currency")
        );
    }

    #[test]
    fn headers_are_checked() {
        assert!(
            RecordKind::Orders
                .map_header(&["id", "amount", "ordered_at"])
                .is_ok()
        );
        assert!(
            RecordKind::Orders
                .map_header(&["ID", "Amount", "ordered_at", "rep_id"])
                .is_ok()
        );
        assert!(
            RecordKind::Orders
                .map_header(&["id", "amount"])
                .unwrap_err()
                .contains("ordered_at")
        );
        assert!(
            RecordKind::Orders
                .map_header(&["id", "amount", "ordered_at", "colour"])
                .unwrap_err()
                .contains("colour")
        );
    }
}

#[cfg(test)]
mod doc_tests {
    use super::RecordKind;

    /// docs/import.md lists the exact header of every record type.
    #[test]
    fn the_import_docs_list_every_header() {
        let docs = include_str!("../../docs/import.md");
        for kind in RecordKind::ALL {
            let line = format!(
                "{:<15}{}",
                format!("{}:", kind.name()),
                kind.header().join(",")
            );
            assert!(
                docs.contains(&line),
                "docs/import.md lacks the line {line:?}"
            );
        }
    }
}
