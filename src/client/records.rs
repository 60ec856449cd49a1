//! The file layout of each record type: one column per proto field (same
//! names), read by `import` and written by `export`, so a file round-trips.
//! The layout is read from the proto descriptors built into the binary, so a
//! field added to a record message is a column with no change here.
//!
//! Money columns hold decimal amounts in major units (`1250.50`), converted to
//! minor units exactly with string arithmetic; the currency comes from the
//! `currency` column or the default currency. Instants are RFC 3339
//! (`2025-03-10T14:30:00Z`) or a date (`2025-03-10`, midnight UTC); dates are
//! `YYYY-MM-DD`; enum columns take the short name in any case (`won`) or the
//! proto name (`DEAL_STATUS_WON`). An empty cell means absent.

use std::sync::LazyLock;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use clap::ValueEnum;
use prost::Message as _;
use prost_reflect::{
    DescriptorPool, DynamicMessage, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor, Value,
};
use prost_types::Timestamp;

use crate::api::convert::time::{date_to_proto, timestamp_to_proto};
use crate::client::format::{currency_exponent, minor_to_decimal};
use crate::client::period::date_text;
use crate::proto::v1::{self, RecordType, TargetMetric};

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

use ColumnKind::{Bool, Currency, Date, Enum, Instant, Integer, Money, Text};

/// Columns a row of each kind must fill besides `id`. The server checks the
/// same rules; checking them at the header gives one clear error before any
/// row is sent. (Everything else about the columns comes from the proto.)
fn required_columns(kind: RecordKind) -> &'static [&'static str] {
    match kind {
        RecordKind::Orders => &["amount", "ordered_at"],
        RecordKind::Deals => &["amount", "created_at", "status"],
        RecordKind::Customers => &["acquired_at"],
        RecordKind::Leads => &["source", "created_at"],
        RecordKind::Activities => &["rep_id", "type", "occurred_at"],
        RecordKind::Inquiries => &["channel", "received_at"],
        RecordKind::Csat => &["score", "responded_at"],
        RecordKind::Teams | RecordKind::Reps => &["name"],
        RecordKind::Memberships => &["rep_id", "effective_at"],
        RecordKind::StageChanges => &["deal_id", "stage", "entered_at"],
        RecordKind::Subscriptions => &["subscription_id", "customer_id", "mrr", "effective_at"],
        RecordKind::Targets => &["metric", "value", "start_date", "end_date"],
        RecordKind::Spend => &["category", "amount", "start_date", "end_date"],
    }
}

/// A record type's file layout, read from the proto message of that type:
/// one column per field, in field order, named like the field, except that
/// `version` comes last and a money field is followed by the `currency`
/// column. A field added to the proto is a column of import and export
/// with no change here.
struct Layout {
    /// The field of `salesmetrics.v1.Record` that holds this type.
    record_field: FieldDescriptor,
    /// The message of this type.
    message: MessageDescriptor,
    /// The columns, in file order.
    columns: Vec<Column>,
    /// The field behind each column (`None` for `currency`).
    fields: Vec<Option<FieldDescriptor>>,
}

/// The layouts, indexed by `RecordKind as usize`.
static LAYOUTS: LazyLock<Vec<Layout>> =
    LazyLock::new(|| RecordKind::ALL.iter().map(|kind| layout(*kind)).collect());

/// The proto package's descriptors, built into the binary by `build.rs`.
static DESCRIPTORS: LazyLock<DescriptorPool> = LazyLock::new(|| {
    // The set was produced by protox from proto/ at build time; a unit
    // test decodes it, so failing here would be a build defect.
    DescriptorPool::decode(v1::FILE_DESCRIPTOR_SET).expect("the built-in descriptor set decodes")
});

fn layout(kind: RecordKind) -> Layout {
    let record = DESCRIPTORS
        .get_message_by_name("salesmetrics.v1.Record")
        .expect("salesmetrics.v1.Record is in the descriptor set");
    let field_name = kind
        .record_type()
        .as_str_name()
        .trim_start_matches("RECORD_TYPE_")
        .to_ascii_lowercase();
    let record_field = record
        .get_field_by_name(&field_name)
        .expect("every record type is a field of Record");
    let Kind::Message(message) = record_field.kind() else {
        unreachable!("the fields of Record are messages")
    };
    let required = required_columns(kind);
    let mut columns = Vec::new();
    let mut fields = Vec::new();
    let mut version = None;
    let mut has_currency = false;
    for field in message.fields() {
        // Names live as long as the process, like the layouts that hold them.
        let name: &'static str = Box::leak(field.name().to_string().into_boxed_str());
        let column_kind = match field.kind() {
            Kind::Bool => Bool,
            Kind::Enum(_) => Enum,
            // A target's value is money or a count, depending on its metric.
            Kind::Int64 if kind == RecordKind::Targets && name == "value" => Text,
            Kind::Int32 | Kind::Int64 => Integer,
            Kind::Message(m) if m.full_name() == "salesmetrics.v1.Money" => Money,
            Kind::Message(m) if m.full_name() == "salesmetrics.v1.Date" => Date,
            Kind::Message(m) if m.full_name() == "google.protobuf.Timestamp" => Instant,
            _ => Text,
        };
        let column = Column {
            name,
            required: name == "id" || required.contains(&name),
            kind: column_kind,
        };
        if name == "version" {
            version = Some((column, field));
            continue;
        }
        columns.push(column);
        fields.push(Some(field));
        if column_kind == Money && !has_currency {
            has_currency = true;
            columns.push(Column {
                name: "currency",
                required: false,
                kind: Currency,
            });
            fields.push(None);
        }
    }
    if let Some((column, field)) = version {
        columns.push(column);
        fields.push(Some(field));
    }
    Layout {
        record_field,
        message,
        columns,
        fields,
    }
}

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

    /// The columns, in file order (see [`Layout`]).
    pub fn columns(self) -> &'static [Column] {
        &self.layout().columns
    }

    fn layout(self) -> &'static Layout {
        &LAYOUTS[self as usize]
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
                        "unknown column {name:?} for {}{}; the columns are: {}",
                        self.name(),
                        super::did_you_mean(name, columns.iter().map(|c| c.name)),
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

/// The common prefix of an enum's value names (`DEAL_STATUS_`), from its
/// `*_UNSPECIFIED` value.
fn enum_prefix(values: &EnumDescriptor) -> String {
    values
        .get_value(0)
        .map(|v| v.name().trim_end_matches("UNSPECIFIED").to_string())
        .unwrap_or_default()
}

/// Parses an enum cell: the short name in any case (`won`, `Cross-Sell`) or the
/// full proto name (`DEAL_STATUS_WON`). `*_UNSPECIFIED` is not a value.
fn parse_enum(text: &str, values: &EnumDescriptor) -> Result<i32, String> {
    let prefix = enum_prefix(values);
    let upper = text.trim().to_ascii_uppercase().replace(['-', ' '], "_");
    let full = if upper.starts_with(&prefix) {
        upper
    } else {
        format!("{prefix}{upper}")
    };
    match values.get_value_by_name(&full) {
        Some(value) if value.number() != 0 => Ok(value.number()),
        _ => {
            let names: Vec<String> = values
                .values()
                .filter(|v| v.number() != 0)
                .map(|v| enum_text(v.name(), &prefix))
                .collect();
            Err(format!(
                "invalid value {text:?}: expected one of {}",
                names.join(", ")
            ))
        }
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

/// Parses one row into a record of the given kind: each cell into the field
/// of its column, by the field's type; every error names its column.
pub fn row_to_record(
    kind: RecordKind,
    row: &Row,
    default_currency: Option<&str>,
) -> Result<v1::Record, String> {
    let layout = kind.layout();
    let cell = |i: usize| row.cells.get(i).map_or("", |s| s.trim());
    let currency = || -> Result<String, String> {
        let given = layout
            .columns
            .iter()
            .position(|c| c.kind == Currency)
            .map_or("", cell);
        if !given.is_empty() {
            return Ok(given.to_ascii_uppercase());
        }
        default_currency.map(str::to_string).ok_or_else(|| {
            "currency: required (no currency column value and no default currency)".to_string()
        })
    };
    let mut message = DynamicMessage::new(layout.message.clone());
    for (i, (column, field)) in layout.columns.iter().zip(&layout.fields).enumerate() {
        let Some(field) = field else { continue };
        let name = column.name;
        let text = cell(i);
        if text.is_empty() {
            if column.required {
                return Err(format!("{name}: required"));
            }
            continue;
        }
        let value = match (column.kind, field.kind()) {
            (Integer, Kind::Int32) => {
                let n = parse_integer(name, text)?;
                Value::I32(i32::try_from(n).map_err(|_| format!("{name}: {n} is out of range"))?)
            }
            (Integer, _) => Value::I64(parse_integer(name, text)?),
            (Bool, _) => Value::Bool(match text.to_ascii_lowercase().as_str() {
                "false" | "0" | "no" | "n" => false,
                "true" | "1" | "yes" | "y" => true,
                other => {
                    return Err(format!(
                        "{name}: invalid boolean {other:?}: expected true or false"
                    ));
                }
            }),
            (Enum, Kind::Enum(values)) => {
                Value::EnumNumber(parse_enum(text, &values).map_err(|e| format!("{name}: {e}"))?)
            }
            (Money, Kind::Message(money)) => {
                let currency = currency()?;
                let minor = parse_decimal(text, currency_exponent(&currency))
                    .map_err(|e| format!("{name}: {e}"))?;
                let money_value = v1::Money {
                    currency_code: currency,
                    minor_units: minor,
                };
                dynamic(money, &money_value)?
            }
            (Instant, Kind::Message(timestamp)) => {
                let instant = parse_instant(text).map_err(|e| format!("{name}: {e}"))?;
                dynamic(timestamp, &instant)?
            }
            (Date, Kind::Message(date)) => {
                let parsed = NaiveDate::parse_from_str(text, "%Y-%m-%d")
                    .map_err(|_| format!("{name}: invalid date {text:?}: expected YYYY-MM-DD"))?;
                dynamic(date, &date_to_proto(parsed))?
            }
            // A target's value: money in the tenant's currency for revenue
            // and bookings targets, a count otherwise.
            (Text, Kind::Int64) => Value::I64(if is_money_target(&message) {
                let currency =
                    default_currency.ok_or("value: a money target needs the tenant currency")?;
                parse_decimal(text, currency_exponent(currency))
                    .map_err(|e| format!("{name}: {e}"))?
            } else {
                text.parse::<i64>()
                    .map_err(|_| format!("{name}: invalid whole number {text:?}"))?
            }),
            _ => Value::String(text.to_string()),
        };
        message.set_field(field, value);
    }
    let mut record = DynamicMessage::new(layout.record_field.parent_message().clone());
    record.set_field(&layout.record_field, Value::Message(message));
    // The message was built from this binary's own descriptors, so it
    // always transcodes; say so rather than panic if it ever does not.
    record
        .transcode_to::<v1::Record>()
        .map_err(|e| format!("cannot build the record: {e}"))
}

fn parse_integer(name: &str, text: &str) -> Result<i64, String> {
    text.parse::<i64>()
        .map_err(|_| format!("{name}: invalid whole number {text:?}"))
}

/// A generated proto message as the value of a field of type `descriptor`.
fn dynamic(descriptor: MessageDescriptor, message: &impl prost::Message) -> Result<Value, String> {
    DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())
        .map(Value::Message)
        .map_err(|e| format!("cannot build the record: {e}"))
}

/// Whether a target (being read or written) is a revenue or bookings
/// target, whose value is money.
fn is_money_target(target: &DynamicMessage) -> bool {
    let metric = target
        .get_field_by_name("metric")
        .and_then(|v| v.as_enum_number())
        .and_then(|n| TargetMetric::try_from(n).ok());
    matches!(metric, Some(TargetMetric::Revenue | TargetMetric::Bookings))
}

/// Writes a record as a row of its kind's columns. `currency` is the tenant's,
/// used for the values of money targets. Returns `None` for a record of
/// another kind.
pub fn record_to_row(kind: RecordKind, record: &v1::Record, currency: &str) -> Option<Row> {
    let layout = kind.layout();
    let record = DynamicMessage::decode(
        layout.record_field.parent_message().clone(),
        record.encode_to_vec().as_slice(),
    )
    .ok()?;
    if !record.has_field(&layout.record_field) {
        return None;
    }
    let message = record.get_field(&layout.record_field).as_message()?.clone();
    let mut money_currency = String::new();
    let mut cells = Vec::with_capacity(layout.columns.len());
    for (column, field) in layout.columns.iter().zip(&layout.fields) {
        let Some(field) = field else {
            cells.push(std::mem::take(&mut money_currency));
            continue;
        };
        let present = !field.supports_presence() || message.has_field(field);
        let value = message.get_field(field);
        let cell = match (column.kind, value.as_ref()) {
            _ if !present => String::new(),
            (Text, Value::I64(n)) if is_money_target(&message) => {
                minor_to_decimal(*n, currency_exponent(currency))
            }
            (Bool, Value::Bool(b)) => if *b { "true" } else { "" }.to_string(),
            (Enum, Value::EnumNumber(0)) => String::new(),
            (Enum, Value::EnumNumber(n)) => match field.kind() {
                Kind::Enum(values) => values
                    .get_value(*n)
                    .map(|v| enum_text(v.name(), &enum_prefix(&values)))
                    .unwrap_or_default(),
                _ => String::new(),
            },
            (Money, Value::Message(m)) => {
                let money: v1::Money = m.transcode_to().ok()?;
                money_currency = money.currency_code.clone();
                minor_to_decimal(money.minor_units, currency_exponent(&money.currency_code))
            }
            (Instant, Value::Message(m)) => instant_text(&m.transcode_to().ok()?),
            (Date, Value::Message(m)) => date_text(Some(&m.transcode_to().ok()?)),
            (_, Value::String(text)) => text.clone(),
            (_, Value::I64(n)) => n.to_string(),
            (_, Value::I32(n)) => n.to_string(),
            _ => String::new(),
        };
        cells.push(cell);
    }
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
    use crate::proto::v1::DealStatus;
    use crate::proto::v1::record::Record as R;

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

    /// Every column of every record type survives row → record → row, so
    /// import and export agree on the whole layout.
    #[test]
    fn every_column_of_every_type_round_trips() {
        for kind in RecordKind::ALL {
            let cells = kind
                .columns()
                .iter()
                .map(|column| {
                    match column.kind {
                        // A revenue target's value: money in the tenant's currency.
                        Text if kind == RecordKind::Targets && column.name == "value" => "12.50",
                        Text => "x-1",
                        Integer => "7",
                        Bool => "true",
                        Money => "12.50",
                        Currency => "USD",
                        Instant => "2025-03-10T14:30:00Z",
                        Date => "2025-03-01",
                        // The first value of every enum here: new, open, call, revenue, marketing.
                        Enum => match kind {
                            RecordKind::Orders => "new",
                            RecordKind::Deals => "open",
                            RecordKind::Activities => "call",
                            RecordKind::Targets => "revenue",
                            _ => "marketing",
                        },
                    }
                    .to_string()
                })
                .collect();
            let row = Row { cells };
            let record = row_to_record(kind, &row, Some("USD"))
                .unwrap_or_else(|e| panic!("{}: {e}", kind.name()));
            assert_eq!(
                record_to_row(kind, &record, "USD"),
                Some(row),
                "{}",
                kind.name()
            );
            let other = if kind == RecordKind::Orders {
                RecordKind::Deals
            } else {
                RecordKind::Orders
            };
            assert_eq!(
                record_to_row(other, &record, "USD"),
                None,
                "{}",
                kind.name()
            );
        }
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
