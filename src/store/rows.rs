//! The row format both backends share: which table and columns hold each
//! record type, how a domain record becomes column values and back, the
//! settings JSON, and the team-cycle rule.
//!
//! The two schemas are column for column identical and only use two SQL value
//! kinds (nullable text and nullable 64-bit integer), so encoding and decoding
//! live here once; the backends only build their own SQL text, bind a
//! [`Value`] and read one back. That keeps the SQL per backend while the
//! field-by-field mapping cannot drift between them. The benchmark's
//! baseline loads write through the same mapping.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use chrono::{DateTime, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::domain::{
    Activity, ActivityType, CsatResponse, Customer, Deal, DealStageChange, DealStatus, Inquiry,
    Instant, Lead, Order, OrderKind, PipelineStage, Record, RecordType, Rep, Spend, SpendCategory,
    SubscriptionChange, Target, TargetMetric, TargetScope, Team, TeamMembership, TenantSettings,
};
use crate::error::{Error, Result, quote};
use crate::store::WriteOutcome;

/// The SQL type of a data column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `TEXT` (ids, categories, enums, local dates).
    Text,
    /// `BIGINT` (amounts, counts, nanosecond instants).
    Int,
}

/// Where one record type is stored. Every table also has `tenant_id`, `id` and
/// `version` in front of `columns`.
#[derive(Debug)]
pub struct TableSpec {
    /// Table name.
    pub table: &'static str,
    /// Data columns, in the order [`encode`] produces and [`decode`] consumes.
    pub columns: &'static [(&'static str, Kind)],
}

use Kind::{Int, Text};

/// The table of each record type, indexed by `RecordType as usize`.
static TABLES: [TableSpec; 14] = [
    TableSpec {
        table: "teams",
        columns: &[("name", Text), ("parent_team_id", Text)],
    },
    TableSpec {
        table: "team_memberships",
        columns: &[("rep_id", Text), ("team_id", Text), ("effective_at", Int)],
    },
    TableSpec {
        table: "reps",
        columns: &[("name", Text), ("email", Text)],
    },
    TableSpec {
        table: "customers",
        columns: &[
            ("acquired_at", Int),
            ("churned_at", Int),
            ("owner_rep_id", Text),
            ("source", Text),
            ("name", Text),
        ],
    },
    TableSpec {
        table: "leads",
        columns: &[
            ("source", Text),
            ("created_at", Int),
            ("owner_rep_id", Text),
            ("first_response_at", Int),
            ("converted_at", Int),
            ("customer_id", Text),
        ],
    },
    TableSpec {
        table: "deals",
        columns: &[
            ("amount", Int),
            ("created_at", Int),
            ("status", Text),
            ("closed_at", Int),
            ("stage", Text),
            ("owner_rep_id", Text),
            ("customer_id", Text),
            ("lead_id", Text),
        ],
    },
    TableSpec {
        table: "deal_stage_changes",
        columns: &[("deal_id", Text), ("stage", Text), ("entered_at", Int)],
    },
    TableSpec {
        table: "orders",
        columns: &[
            ("amount", Int),
            ("ordered_at", Int),
            ("kind", Text),
            ("customer_id", Text),
            ("rep_id", Text),
            ("deal_id", Text),
        ],
    },
    TableSpec {
        table: "subscription_changes",
        columns: &[
            ("subscription_id", Text),
            ("customer_id", Text),
            ("mrr", Int),
            ("effective_at", Int),
        ],
    },
    TableSpec {
        table: "activities",
        columns: &[
            ("rep_id", Text),
            ("activity_type", Text),
            ("occurred_at", Int),
            ("duration_seconds", Int),
            ("lead_id", Text),
            ("deal_id", Text),
            ("customer_id", Text),
        ],
    },
    TableSpec {
        table: "inquiries",
        columns: &[
            ("channel", Text),
            ("received_at", Int),
            ("first_response_at", Int),
            ("customer_id", Text),
            ("rep_id", Text),
        ],
    },
    TableSpec {
        table: "csat_responses",
        columns: &[
            ("score", Int),
            ("responded_at", Int),
            ("customer_id", Text),
            ("rep_id", Text),
        ],
    },
    TableSpec {
        table: "targets",
        columns: &[
            ("metric", Text),
            ("value", Int),
            ("start_date", Text),
            ("end_date", Text),
            ("scope_kind", Text),
            ("scope_id", Text),
        ],
    },
    TableSpec {
        table: "spends",
        columns: &[
            ("category", Text),
            ("amount", Int),
            ("start_date", Text),
            ("end_date", Text),
            ("team_id", Text),
        ],
    },
];

/// The table that stores `record_type`.
pub fn table(record_type: RecordType) -> &'static TableSpec {
    &TABLES[record_type as usize]
}

/// One column value, as bound to or read from a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A nullable `TEXT`.
    Text(Option<crate::domain::Text>),
    /// A nullable `BIGINT`.
    Int(Option<i64>),
}

fn text(s: &str) -> Value {
    Value::Text(Some(s.into()))
}

fn opt_text(s: &Option<crate::domain::Text>) -> Value {
    Value::Text(s.clone())
}

fn int(i: i64) -> Value {
    Value::Int(Some(i))
}

fn nanos(t: &Instant) -> Result<i64> {
    // Validated instants lie in [2000, 2100), well inside i64 nanoseconds.
    t.timestamp_nanos_opt()
        .ok_or_else(|| Error::internal(format!("instant {t} does not fit i64 nanoseconds")))
}

fn instant(t: &Instant) -> Result<Value> {
    Ok(int(nanos(t)?))
}

fn opt_instant(t: &Option<Instant>) -> Result<Value> {
    Ok(Value::Int(t.as_ref().map(nanos).transpose()?))
}

fn date(d: &NaiveDate) -> Value {
    Value::Text(Some(d.format("%Y-%m-%d").to_string().into()))
}

fn deal_status_str(s: DealStatus) -> &'static str {
    match s {
        DealStatus::Open => "OPEN",
        DealStatus::Won => "WON",
        DealStatus::Lost => "LOST",
    }
}

fn order_kind_str(k: OrderKind) -> &'static str {
    match k {
        OrderKind::New => "NEW",
        OrderKind::Upsell => "UPSELL",
        OrderKind::CrossSell => "CROSS_SELL",
        OrderKind::Renewal => "RENEWAL",
    }
}

fn target_metric_str(m: TargetMetric) -> &'static str {
    match m {
        TargetMetric::Revenue => "REVENUE",
        TargetMetric::Bookings => "BOOKINGS",
        TargetMetric::NewCustomers => "NEW_CUSTOMERS",
        TargetMetric::DealsWon => "DEALS_WON",
    }
}

fn spend_category_str(c: SpendCategory) -> &'static str {
    match c {
        SpendCategory::Marketing => "MARKETING",
        SpendCategory::Sales => "SALES",
    }
}

/// The record's data column values, in [`TableSpec::columns`] order (without
/// tenant, id and version).
pub fn encode(record: &Record) -> Result<Vec<Value>> {
    Ok(match record {
        Record::Team(r) => vec![text(&r.name), opt_text(&r.parent_team_id)],
        Record::TeamMembership(r) => vec![
            text(&r.rep_id),
            opt_text(&r.team_id),
            instant(&r.effective_at)?,
        ],
        Record::Rep(r) => vec![text(&r.name), opt_text(&r.email)],
        Record::Customer(r) => vec![
            instant(&r.acquired_at)?,
            opt_instant(&r.churned_at)?,
            opt_text(&r.owner_rep_id),
            opt_text(&r.source),
            opt_text(&r.name),
        ],
        Record::Lead(r) => vec![
            text(&r.source),
            instant(&r.created_at)?,
            opt_text(&r.owner_rep_id),
            opt_instant(&r.first_response_at)?,
            opt_instant(&r.converted_at)?,
            opt_text(&r.customer_id),
        ],
        Record::Deal(r) => vec![
            int(r.amount),
            instant(&r.created_at)?,
            text(deal_status_str(r.status)),
            opt_instant(&r.closed_at)?,
            opt_text(&r.stage),
            opt_text(&r.owner_rep_id),
            opt_text(&r.customer_id),
            opt_text(&r.lead_id),
        ],
        Record::DealStageChange(r) => {
            vec![text(&r.deal_id), text(&r.stage), instant(&r.entered_at)?]
        }
        Record::Order(r) => vec![
            int(r.amount),
            instant(&r.ordered_at)?,
            text(order_kind_str(r.kind)),
            opt_text(&r.customer_id),
            opt_text(&r.rep_id),
            opt_text(&r.deal_id),
        ],
        Record::SubscriptionChange(r) => vec![
            text(&r.subscription_id),
            text(&r.customer_id),
            int(r.mrr),
            instant(&r.effective_at)?,
        ],
        Record::Activity(r) => vec![
            text(&r.rep_id),
            text(r.activity_type.as_str()),
            instant(&r.occurred_at)?,
            Value::Int(r.duration_seconds),
            opt_text(&r.lead_id),
            opt_text(&r.deal_id),
            opt_text(&r.customer_id),
        ],
        Record::Inquiry(r) => vec![
            text(&r.channel),
            instant(&r.received_at)?,
            opt_instant(&r.first_response_at)?,
            opt_text(&r.customer_id),
            opt_text(&r.rep_id),
        ],
        Record::CsatResponse(r) => vec![
            int(i64::from(r.score)),
            instant(&r.responded_at)?,
            opt_text(&r.customer_id),
            opt_text(&r.rep_id),
        ],
        Record::Target(r) => {
            let (kind, id) = match &r.scope {
                TargetScope::Company => ("COMPANY", None),
                TargetScope::Team(id) => ("TEAM", Some(id.clone())),
                TargetScope::Rep(id) => ("REP", Some(id.clone())),
            };
            vec![
                text(target_metric_str(r.metric)),
                int(r.value),
                date(&r.start_date),
                date(&r.end_date),
                text(kind),
                Value::Text(id.map(Into::into)),
            ]
        }
        Record::Spend(r) => vec![
            text(spend_category_str(r.category)),
            int(r.amount),
            date(&r.start_date),
            date(&r.end_date),
            opt_text(&r.team_id),
        ],
    })
}

/// Reads a row's data values back in column order; every getter names the
/// column it expected, so a schema mismatch is a clear internal error.
struct Columns {
    table: &'static str,
    values: std::vec::IntoIter<Value>,
}

impl Columns {
    fn corrupt(&self, what: &str) -> Error {
        Error::internal(format!("table {}: {what}", self.table))
    }

    fn opt_text(&mut self) -> Result<Option<crate::domain::Text>> {
        match self.values.next() {
            Some(Value::Text(t)) => Ok(t),
            _ => Err(self.corrupt("expected a text column")),
        }
    }

    fn text(&mut self) -> Result<crate::domain::Text> {
        self.opt_text()?
            .ok_or_else(|| self.corrupt("unexpected NULL text"))
    }

    fn opt_int(&mut self) -> Result<Option<i64>> {
        match self.values.next() {
            Some(Value::Int(i)) => Ok(i),
            _ => Err(self.corrupt("expected an integer column")),
        }
    }

    fn int(&mut self) -> Result<i64> {
        self.opt_int()?
            .ok_or_else(|| self.corrupt("unexpected NULL integer"))
    }

    fn opt_instant(&mut self) -> Result<Option<Instant>> {
        Ok(self.opt_int()?.map(DateTime::from_timestamp_nanos))
    }

    fn instant(&mut self) -> Result<Instant> {
        Ok(DateTime::from_timestamp_nanos(self.int()?))
    }

    fn date(&mut self) -> Result<NaiveDate> {
        let s = self.text()?;
        NaiveDate::parse_from_str(&s, "%Y-%m-%d").map_err(|_| self.corrupt("bad date"))
    }

    /// Parses an enum column with `name_of` as the inverse.
    fn enumeration<T: Copy>(&mut self, all: &[T], name_of: fn(T) -> &'static str) -> Result<T> {
        let s = self.text()?;
        all.iter()
            .copied()
            .find(|v| name_of(*v) == s)
            .ok_or_else(|| self.corrupt(&format!("unknown enum value {s:?}")))
    }
}

/// Rebuilds a record from its id, version and data values (as [`encode`]
/// produced them).
pub(super) fn decode(
    record_type: RecordType,
    id: crate::domain::Text,
    version: Option<i64>,
    values: Vec<Value>,
) -> Result<Record> {
    let spec = table(record_type);
    if values.len() != spec.columns.len() {
        return Err(Error::internal(format!(
            "table {}: {} values for {} columns",
            spec.table,
            values.len(),
            spec.columns.len()
        )));
    }
    let mut c = Columns {
        table: spec.table,
        values: values.into_iter(),
    };
    Ok(match record_type {
        RecordType::Team => Record::Team(Team {
            id,
            version,
            name: c.text()?,
            parent_team_id: c.opt_text()?,
        }),
        RecordType::TeamMembership => Record::TeamMembership(TeamMembership {
            id,
            version,
            rep_id: c.text()?,
            team_id: c.opt_text()?,
            effective_at: c.instant()?,
        }),
        RecordType::Rep => Record::Rep(Rep {
            id,
            version,
            name: c.text()?,
            email: c.opt_text()?,
        }),
        RecordType::Customer => Record::Customer(Customer {
            id,
            version,
            acquired_at: c.instant()?,
            churned_at: c.opt_instant()?,
            owner_rep_id: c.opt_text()?,
            source: c.opt_text()?,
            name: c.opt_text()?,
        }),
        RecordType::Lead => Record::Lead(Lead {
            id,
            version,
            source: c.text()?,
            created_at: c.instant()?,
            owner_rep_id: c.opt_text()?,
            first_response_at: c.opt_instant()?,
            converted_at: c.opt_instant()?,
            customer_id: c.opt_text()?,
        }),
        RecordType::Deal => Record::Deal(Deal {
            id,
            version,
            amount: c.int()?,
            created_at: c.instant()?,
            status: c.enumeration(
                &[DealStatus::Open, DealStatus::Won, DealStatus::Lost],
                deal_status_str,
            )?,
            closed_at: c.opt_instant()?,
            stage: c.opt_text()?,
            owner_rep_id: c.opt_text()?,
            customer_id: c.opt_text()?,
            lead_id: c.opt_text()?,
        }),
        RecordType::DealStageChange => Record::DealStageChange(DealStageChange {
            id,
            version,
            deal_id: c.text()?,
            stage: c.text()?,
            entered_at: c.instant()?,
        }),
        RecordType::Order => Record::Order(Order {
            id,
            version,
            amount: c.int()?,
            ordered_at: c.instant()?,
            kind: c.enumeration(
                &[
                    OrderKind::New,
                    OrderKind::Upsell,
                    OrderKind::CrossSell,
                    OrderKind::Renewal,
                ],
                order_kind_str,
            )?,
            customer_id: c.opt_text()?,
            rep_id: c.opt_text()?,
            deal_id: c.opt_text()?,
        }),
        RecordType::SubscriptionChange => Record::SubscriptionChange(SubscriptionChange {
            id,
            version,
            subscription_id: c.text()?,
            customer_id: c.text()?,
            mrr: c.int()?,
            effective_at: c.instant()?,
        }),
        RecordType::Activity => Record::Activity(Activity {
            id,
            version,
            rep_id: c.text()?,
            activity_type: c.enumeration(&ActivityType::ALL, ActivityType::as_str)?,
            occurred_at: c.instant()?,
            duration_seconds: c.opt_int()?,
            lead_id: c.opt_text()?,
            deal_id: c.opt_text()?,
            customer_id: c.opt_text()?,
        }),
        RecordType::Inquiry => Record::Inquiry(Inquiry {
            id,
            version,
            channel: c.text()?,
            received_at: c.instant()?,
            first_response_at: c.opt_instant()?,
            customer_id: c.opt_text()?,
            rep_id: c.opt_text()?,
        }),
        RecordType::CsatResponse => Record::CsatResponse(CsatResponse {
            id,
            version,
            score: {
                let score = c.int()?;
                i32::try_from(score).map_err(|_| c.corrupt("score out of range"))?
            },
            responded_at: c.instant()?,
            customer_id: c.opt_text()?,
            rep_id: c.opt_text()?,
        }),
        RecordType::Target => {
            let metric = c.enumeration(
                &[
                    TargetMetric::Revenue,
                    TargetMetric::Bookings,
                    TargetMetric::NewCustomers,
                    TargetMetric::DealsWon,
                ],
                target_metric_str,
            )?;
            let value = c.int()?;
            let start_date = c.date()?;
            let end_date = c.date()?;
            let scope_kind = c.text()?;
            let scope_id = c.opt_text()?;
            let scope = match (scope_kind.as_str(), scope_id) {
                ("COMPANY", None) => TargetScope::Company,
                ("TEAM", Some(id)) => TargetScope::Team(id.to_string()),
                ("REP", Some(id)) => TargetScope::Rep(id.to_string()),
                _ => return Err(c.corrupt("bad target scope")),
            };
            Record::Target(Target {
                id,
                version,
                metric,
                value,
                start_date,
                end_date,
                scope,
            })
        }
        RecordType::Spend => Record::Spend(Spend {
            id,
            version,
            category: c.enumeration(
                &[SpendCategory::Marketing, SpendCategory::Sales],
                spend_category_str,
            )?,
            amount: c.int()?,
            start_date: c.date()?,
            end_date: c.date()?,
            team_id: c.opt_text()?,
        }),
    })
}

/// Team tree as `id → parent_team_id`, for the cycle check.
pub(super) type TeamTree = HashMap<String, Option<String>>;

/// Deepest a team tree may be: a root is level 1, so a team may have at most
/// 99 ancestors. Real organisations are a few levels deep; the bound keeps
/// every tree check (and every subtree walk of the KPI engine) short, so a
/// batch of teams costs time in proportion to its size, never to the square
/// of a chain's length.
pub const MAX_TEAM_DEPTH: usize = 100;

/// Why giving team `id` the parent `parent` is refused, or `None` if it is
/// fine: it would close a cycle in `tree`, or put the team deeper than
/// [`MAX_TEAM_DEPTH`] levels. An unknown parent ends the chain (it is a
/// root). The walk up from `parent` stops after [`MAX_TEAM_DEPTH`] steps,
/// so one check costs at most that many lookups.
pub(super) fn team_cycle(tree: &TeamTree, id: &str, parent: Option<&str>) -> Option<String> {
    let parent = parent?;
    if parent == id {
        return Some(format!("team {} cannot be its own parent", quote(id)));
    }
    // Levels from `parent` up to its root, `parent` included.
    let mut levels = 1;
    let mut current = parent;
    loop {
        match tree.get(current) {
            Some(Some(next)) if next == id => {
                return Some(format!(
                    "team {} would become its own ancestor: its new parent {} descends from it",
                    quote(id),
                    quote(parent)
                ));
            }
            // A parent that is not a known team makes `current` a root.
            Some(Some(next)) if tree.contains_key(next.as_str()) => {
                levels += 1;
                if levels >= MAX_TEAM_DEPTH {
                    return Some(format!(
                        "team {} would be more than {MAX_TEAM_DEPTH} levels deep under {}; \
                         team trees may be at most {MAX_TEAM_DEPTH} levels deep",
                        quote(id),
                        quote(parent)
                    ));
                }
                current = next;
            }
            _ => return None,
        }
    }
}

/// Levels from `team` up to its root, `team` included (0 when `team` is
/// not a known team), counted up to `MAX_TEAM_DEPTH + 1` at most.
fn levels_to_root(tree: &TeamTree, team: &str) -> usize {
    let mut levels = 0;
    let mut current = Some(team);
    while let Some(id) = current {
        let Some(parent) = tree.get(id) else { break };
        levels += 1;
        if levels > MAX_TEAM_DEPTH {
            break;
        }
        current = parent.as_deref();
    }
    levels
}

/// The team tree of one batch being written: loaded once from the tenant's
/// stored teams, then kept up to date with the batch's own accepted team
/// writes, so a later record sees the earlier ones.
pub(super) struct TeamTreeGuard {
    /// `id → parent_team_id` of every team as of the current batch position.
    tree: TeamTree,
    /// `id → its child teams`, built when a team that may have children is
    /// first moved, then kept up to date.
    children: Option<HashMap<String, Vec<String>>>,
    /// Most teams the tenant may have (0: unlimited).
    max_teams: usize,
}

impl TeamTreeGuard {
    /// Starts from the stored `(id, parent_team_id)` pairs; at most
    /// `max_teams` teams (0: unlimited).
    pub fn new(tree: TeamTree, max_teams: usize) -> Self {
        TeamTreeGuard {
            tree,
            children: None,
            max_teams,
        }
    }

    /// The rejection for a team write that would close a cycle, put a team
    /// (or a team below it) deeper than [`MAX_TEAM_DEPTH`] levels, or add a
    /// team beyond the tenant's limit; `None` for any other record.
    pub fn check(&mut self, record: &Record) -> Option<WriteOutcome> {
        let Record::Team(team) = record else {
            return None;
        };
        let rejected = |field: &str, reason: String| WriteOutcome::Rejected {
            field: field.to_string(),
            reason,
        };
        let parent = team.parent_team_id.as_deref();
        if let Some(reason) = team_cycle(&self.tree, &team.id, parent) {
            return Some(rejected("team.parent_team_id", reason));
        }
        let known = self.tree.contains_key(team.id.as_str());
        if !known && self.max_teams > 0 && self.tree.len() >= self.max_teams {
            return Some(rejected(
                "team.id",
                format!(
                    "the tenant has {} teams, the most it may have; team {} is not added",
                    self.max_teams,
                    quote(&team.id)
                ),
            ));
        }
        if let Some(parent) = parent.filter(|_| known) {
            // A team that already exists may have teams below it, which
            // move down with it.
            let height = self.subtree_height(&team.id);
            if height > 1 && levels_to_root(&self.tree, parent) + height > MAX_TEAM_DEPTH {
                return Some(rejected(
                    "team.parent_team_id",
                    format!(
                        "under {} the teams below team {} would be more than \
                         {MAX_TEAM_DEPTH} levels deep; team trees may be at most \
                         {MAX_TEAM_DEPTH} levels deep",
                        quote(parent),
                        quote(&team.id)
                    ),
                ));
            }
        }
        None
    }

    /// Levels of the subtree of `id`, `id` included, counted up to
    /// `MAX_TEAM_DEPTH + 1` at most.
    fn subtree_height(&mut self, id: &str) -> usize {
        let tree = &self.tree;
        let children = self.children.get_or_insert_with(|| {
            let mut children: HashMap<String, Vec<String>> = HashMap::new();
            for (child, parent) in tree {
                if let Some(parent) = parent {
                    children
                        .entry(parent.clone())
                        .or_default()
                        .push(child.clone());
                }
            }
            children
        });
        let mut level: Vec<&str> = vec![id];
        let mut height = 0;
        while !level.is_empty() && height <= MAX_TEAM_DEPTH {
            height += 1;
            level = level
                .iter()
                .filter_map(|team| children.get(*team))
                .flatten()
                .map(String::as_str)
                .collect();
        }
        height
    }

    /// Records that `record` was written.
    pub fn applied(&mut self, record: &Record) {
        if let Record::Team(team) = record {
            let old = self.tree.insert(
                team.id.to_string(),
                team.parent_team_id.as_deref().map(str::to_string),
            );
            if let Some(children) = &mut self.children {
                if let Some(Some(old)) = old
                    && let Some(siblings) = children.get_mut(&old)
                {
                    siblings.retain(|c| *c != team.id);
                }
                if let Some(parent) = &team.parent_team_id {
                    children
                        .entry(parent.to_string())
                        .or_default()
                        .push(team.id.to_string());
                }
            }
        }
    }
}

/// A tenant's stored teams as read outside the write transaction: `(id,
/// parent_team_id, version)`.
pub(super) type StoredTeams = Vec<(String, Option<String>, Option<i64>)>;

/// What each team record of a batch will do, in batch order (the other
/// records are not in the list), worked out from `stored` as if the batch
/// were written right after that snapshot: the tree checks of
/// [`TeamTreeGuard`] and the version rule of the upserts (a stored team is
/// replaced when either version is missing or the new one is greater).
///
/// The checks cost up to [`MAX_TEAM_DEPTH`] lookups per team, so a batch of
/// thousands of teams takes a noticeable time; computed before the write,
/// that time is not spent holding the database's writer. The write then
/// only has to confirm that the snapshot is still current.
pub(super) fn predict_team_outcomes(
    stored: StoredTeams,
    teams: &[Record],
    max_teams: usize,
) -> Vec<WriteOutcome> {
    let mut versions: HashMap<String, Option<i64>> = HashMap::with_capacity(stored.len());
    let mut tree = TeamTree::with_capacity(stored.len());
    for (id, parent, version) in stored {
        versions.insert(id.clone(), version);
        tree.insert(id, parent);
    }
    let mut guard = TeamTreeGuard::new(tree, max_teams);
    teams
        .iter()
        .filter(|record| matches!(record, Record::Team(_)))
        .map(|record| {
            if let Some(rejected) = guard.check(record) {
                return rejected;
            }
            let version = record.version();
            let replaces = match versions.get(record.id()) {
                None => true,
                Some(stored) => version.is_none() || stored.is_none() || version > *stored,
            };
            if replaces {
                versions.insert(record.id().to_string(), version);
                guard.applied(record);
                WriteOutcome::Accepted
            } else {
                WriteOutcome::Stale
            }
        })
        .collect()
}

/// Most records one upsert writes (PostgreSQL backend): saves a round trip
/// per record while keeping each statement's arrays and its result small.
pub(super) const MAX_ROWS_PER_UPSERT: usize = 500;

/// Splits a batch into runs that one upsert statement can write without
/// changing the batch's meaning: consecutive records of one type with
/// distinct ids (one statement cannot touch a row twice, and a later record
/// with the same id must see the earlier one), at most
/// [`MAX_ROWS_PER_UPSERT`] each. Teams stay alone: each is checked against the
/// tree as of its position in the batch.
pub(super) fn upsert_runs(records: &[Record]) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0;
    let mut ids: HashSet<&str> = HashSet::new();
    for (i, record) in records.iter().enumerate() {
        let extends = i > start
            && record.record_type() == records[start].record_type()
            && !matches!(record, Record::Team(_))
            && i - start < MAX_ROWS_PER_UPSERT
            && !ids.contains(record.id());
        if !extends && i > start {
            runs.push(start..i);
            start = i;
            ids.clear();
        }
        ids.insert(record.id());
    }
    if start < records.len() {
        runs.push(start..records.len());
    }
    runs
}

/// Whether a batch writes any team (and so needs the team tree).
pub(super) fn has_teams(records: &[Record]) -> bool {
    records.iter().any(|r| matches!(r, Record::Team(_)))
}

/// Reads one record row laid out as `id, version, <data columns>` through
/// the row's getters of a `TEXT` (as [`crate::domain::Text`], made from the
/// driver's borrowed text without an intermediate `String`) and a `BIGINT`
/// (as `i64`) column by position: the same code for every driver.
fn read_columns(
    record_type: RecordType,
    text: impl Fn(usize) -> Result<Option<crate::domain::Text>>,
    int: impl Fn(usize) -> Result<Option<i64>>,
) -> Result<Record> {
    let spec = table(record_type);
    let id = text(0)?.ok_or_else(|| Error::internal(format!("table {}: NULL id", spec.table)))?;
    let version = int(1)?;
    let values = spec
        .columns
        .iter()
        .enumerate()
        .map(|(i, (_, kind))| {
            Ok(match kind {
                Kind::Text => Value::Text(text(i + 2)?),
                Kind::Int => Value::Int(int(i + 2)?),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    decode(record_type, id, version, values)
}

/// [`read_columns`] for a row read by sqlx (either backend).
pub(super) fn read_record<'r, R>(record_type: RecordType, row: &'r R) -> Result<Record>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    &'r str: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    read_columns(
        record_type,
        |i| Ok(row.try_get::<Option<&str>, _>(i)?.map(Into::into)),
        |i| Ok(row.try_get(i)?),
    )
}

/// [`read_columns`] for a row read by rusqlite (SQLite's full load).
pub(super) fn read_sqlite_record(record_type: RecordType, row: &rusqlite::Row) -> Result<Record> {
    read_columns(
        record_type,
        |i| {
            let text = row.get_ref(i)?.as_str_or_null().map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
            })?;
            Ok(text.map(Into::into))
        },
        |i| Ok(row.get(i)?),
    )
}

/// [`read_columns`] for a row of PostgreSQL's binary `COPY` format: each
/// field's bytes (`None`: NULL), text as UTF-8, integers big-endian.
pub(super) fn read_copy_record(
    record_type: RecordType,
    fields: &[Option<&[u8]>],
) -> Result<Record> {
    let field = |i: usize| {
        fields.get(i).copied().ok_or_else(|| {
            Error::internal(format!(
                "COPY row of {} fields has no field {i}",
                fields.len()
            ))
        })
    };
    read_columns(
        record_type,
        |i| {
            field(i)?
                .map(|bytes| {
                    std::str::from_utf8(bytes)
                        .map(Into::into)
                        .map_err(|_| Error::internal("COPY text field is not UTF-8"))
                })
                .transpose()
        },
        |i| {
            field(i)?
                .map(|bytes| match bytes.len() {
                    8 => Ok(i64::from_be_bytes(bytes.try_into().unwrap_or([0; 8]))),
                    4 => Ok(i64::from(i32::from_be_bytes(
                        bytes.try_into().unwrap_or([0; 4]),
                    ))),
                    n => Err(Error::internal(format!("COPY integer field of {n} bytes"))),
                })
                .transpose()
        },
    )
}

/// The error for a write or settings call on a tenant that does not exist.
pub(super) fn unknown_tenant(tenant: &str) -> Error {
    Error::NotFound(format!("tenant {} does not exist", quote(tenant)))
}

/// Now, in nanoseconds since the Unix epoch (for `tenants.created_at`).
pub(super) fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// Tenant settings as stored in `tenants.settings` (JSON). Private to the
/// store so the domain type stays free of serde; the time zone is kept by its
/// IANA name. Fractions are stored as decimal strings (Rust's shortest
/// round-trip form) because serde_json's default float parser is not always
/// correctly rounded, and settings must read back bit for bit.
#[derive(Debug, Serialize, Deserialize)]
struct SettingsJson {
    time_zone: String,
    currency_code: String,
    fiscal_year_start_month: u32,
    pipeline_stages: Vec<StageJson>,
    gross_margin: String,
    csat_satisfied_min_score: i32,
    referral_sources: Vec<String>,
}

/// One pipeline stage in [`SettingsJson`].
#[derive(Debug, Serialize, Deserialize)]
struct StageJson {
    name: String,
    win_probability: String,
}

/// Serializes settings for the `tenants.settings` column.
pub(super) fn settings_to_json(settings: &TenantSettings) -> Result<String> {
    let json = SettingsJson {
        time_zone: settings.time_zone.name().to_string(),
        currency_code: settings.currency_code.clone(),
        fiscal_year_start_month: settings.fiscal_year_start_month,
        pipeline_stages: settings
            .pipeline_stages
            .iter()
            .map(|s| StageJson {
                name: s.name.clone(),
                win_probability: s.win_probability.to_string(),
            })
            .collect(),
        gross_margin: settings.gross_margin.to_string(),
        csat_satisfied_min_score: settings.csat_satisfied_min_score,
        referral_sources: settings.referral_sources.clone(),
    };
    serde_json::to_string(&json).map_err(Error::internal)
}

/// Parses the `tenants.settings` column.
pub(super) fn settings_from_json(text: &str) -> Result<TenantSettings> {
    let corrupt = |what: &str| Error::internal(format!("tenant settings: {what}"));
    let json: SettingsJson =
        serde_json::from_str(text).map_err(|e| corrupt(&format!("bad JSON: {e}")))?;
    let fraction = |s: &str| s.parse::<f64>().map_err(|_| corrupt("bad number"));
    Ok(TenantSettings {
        time_zone: json
            .time_zone
            .parse()
            .map_err(|_| corrupt("unknown time zone"))?,
        currency_code: json.currency_code,
        fiscal_year_start_month: json.fiscal_year_start_month,
        pipeline_stages: json
            .pipeline_stages
            .iter()
            .map(|s| {
                Ok(PipelineStage {
                    name: s.name.clone(),
                    win_probability: fraction(&s.win_probability)?,
                })
            })
            .collect::<Result<_>>()?,
        gross_margin: fraction(&json.gross_margin)?,
        csat_satisfied_min_score: json.csat_satisfied_min_score,
        referral_sources: json.referral_sources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_bit_for_bit() {
        let mut s = TenantSettings {
            gross_margin: 0.1 + 0.2, // 0.30000000000000004: needs 17 digits
            time_zone: chrono_tz::Europe::Berlin,
            ..TenantSettings::default()
        };
        s.pipeline_stages[0].win_probability = 1.0 / 3.0;
        let back = settings_from_json(&settings_to_json(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }

    fn rep(id: &str) -> Record {
        Record::Rep(Rep {
            id: id.into(),
            version: None,
            name: id.into(),
            email: None,
        })
    }

    fn team(id: &str) -> Record {
        Record::Team(Team {
            id: id.into(),
            version: None,
            name: id.into(),
            parent_team_id: None,
        })
    }

    #[test]
    fn runs_split_on_type_duplicates_teams_and_size() {
        assert_eq!(upsert_runs(&[]), Vec::<Range<usize>>::new());
        let batch = [rep("a"), rep("b"), rep("a"), team("t"), team("u"), rep("c")];
        assert_eq!(upsert_runs(&batch), [0..2, 2..3, 3..4, 4..5, 5..6]);
        let many: Vec<Record> = (0..1001).map(|i| rep(&format!("r{i}"))).collect();
        assert_eq!(upsert_runs(&many), [0..500, 500..1000, 1000..1001]);
    }

    #[test]
    fn cycles() {
        let tree: TeamTree = [
            ("a".to_string(), Some("b".to_string())),
            ("b".to_string(), Some("c".to_string())),
            ("c".to_string(), None),
        ]
        .into_iter()
        .collect();
        assert!(team_cycle(&tree, "a", Some("a")).is_some());
        assert!(team_cycle(&tree, "c", Some("a")).is_some());
        assert!(team_cycle(&tree, "c", Some("x")).is_none());
        assert!(team_cycle(&tree, "c", None).is_none());
        assert!(team_cycle(&tree, "d", Some("a")).is_none());
    }

    fn team_under(id: &str, parent: Option<&str>) -> Record {
        Record::Team(Team {
            id: id.into(),
            version: None,
            name: id.into(),
            parent_team_id: parent.map(Into::into),
        })
    }

    /// A chain `c0 ← c1 ← … ← c{n-1}` (c0 the root).
    fn chain(n: usize) -> TeamTree {
        (0..n)
            .map(|i| (format!("c{i}"), i.checked_sub(1).map(|p| format!("c{p}"))))
            .collect()
    }

    #[test]
    fn moving_a_team_keeps_its_subtree_within_the_depth_limit() {
        // A chain of 60 and a separate chain of 41 under "x0".
        let mut tree = chain(60);
        for i in 0..41_usize {
            tree.insert(format!("x{i}"), i.checked_sub(1).map(|p| format!("x{p}")));
        }
        let mut guard = TeamTreeGuard::new(tree, 0);
        // x0's subtree is 41 levels: under c58 (59 levels) it would reach 100.
        assert_eq!(guard.check(&team_under("x0", Some("c58"))), None);
        // Under c59 (60 levels) it would reach 101.
        let Some(WriteOutcome::Rejected { field, reason }) =
            guard.check(&team_under("x0", Some("c59")))
        else {
            panic!("refused");
        };
        assert_eq!(field, "team.parent_team_id");
        assert!(reason.contains("more than 100 levels deep"), "{reason}");
        // A leaf (x40) may go under c59: 61 levels.
        assert_eq!(guard.check(&team_under("x40", Some("c59"))), None);
        // Once x1..x40 move elsewhere, x0 is a leaf and may go under c59.
        guard.applied(&team_under("x1", None));
        assert_eq!(guard.check(&team_under("x0", Some("c59"))), None);
    }

    #[test]
    fn teams_beyond_the_limit_are_refused_but_existing_ones_change() {
        let mut guard = TeamTreeGuard::new(chain(3), 4);
        assert_eq!(guard.check(&team_under("new", None)), None);
        guard.applied(&team_under("new", None));
        let Some(WriteOutcome::Rejected { field, reason }) =
            guard.check(&team_under("newer", None))
        else {
            panic!("refused");
        };
        assert_eq!(field, "team.id");
        assert!(reason.contains("the tenant has 4 teams"), "{reason}");
        assert_eq!(guard.check(&team_under("c2", None)), None, "an update");
        let mut unlimited = TeamTreeGuard::new(chain(3), 0);
        assert_eq!(unlimited.check(&team_under("newer", None)), None);
    }

    fn versioned_team(id: &str, version: Option<i64>, parent: Option<&str>) -> Record {
        Record::Team(Team {
            id: id.into(),
            version,
            name: id.into(),
            parent_team_id: parent.map(Into::into),
        })
    }

    #[test]
    fn predicted_team_outcomes_follow_the_version_rule_and_the_tree() {
        // Stored: "a" at version 2, "b" without a version under "a".
        let stored = vec![
            ("a".to_string(), None, Some(2)),
            ("b".to_string(), Some("a".to_string()), None),
        ];
        let batch = [
            // Older than the stored version: stale.
            versioned_team("a", Some(1), None),
            rep("r1"),
            // The tree is checked first: "a" under "b" would close a cycle.
            versioned_team("a", Some(3), Some("b")),
            // Once "b" is a root, "a" may go under it (and is at version 3).
            versioned_team("b", Some(1), None),
            versioned_team("a", Some(3), Some("b")),
            // Not newer: stale, so "a" stays under "b"…
            versioned_team("a", Some(3), None),
            // …and "b" under "a" would close a cycle.
            versioned_team("b", Some(2), Some("a")),
            // A third team, beyond the limit of 2.
            versioned_team("c", None, None),
        ];
        let outcomes = predict_team_outcomes(stored, &batch, 2);
        let rejected = |field: &str, reason: &str| WriteOutcome::Rejected {
            field: field.to_string(),
            reason: reason.to_string(),
        };
        assert_eq!(
            outcomes,
            [
                WriteOutcome::Stale,
                rejected(
                    "team.parent_team_id",
                    "team \"a\" would become its own ancestor: its new parent \"b\" descends from it"
                ),
                WriteOutcome::Accepted,
                WriteOutcome::Accepted,
                WriteOutcome::Stale,
                rejected(
                    "team.parent_team_id",
                    "team \"b\" would become its own ancestor: its new parent \"a\" descends from it"
                ),
                rejected(
                    "team.id",
                    "the tenant has 2 teams, the most it may have; team \"c\" is not added"
                ),
            ]
        );
    }
}
