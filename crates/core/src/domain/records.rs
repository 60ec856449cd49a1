//! Validated records. Every value here has passed the rules of
//! [`super::rules`] at the service's edge: ids are well-formed, instants are in
//! range, amounts are in the tenant's currency (stored as minor units),
//! categories are trimmed and lower-cased, and empty references are `None`.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use chrono::{DateTime, NaiveDate, Utc};

/// An instant in UTC.
pub type Instant = DateTime<Utc>;

/// A record's text field (ids, references, names): up to 24 bytes are kept
/// inline, without a heap allocation of their own, so the millions of short
/// ids a snapshot holds cost their struct field and nothing more.
pub type Text = compact_str::CompactString;

/// The kinds of record, one storage table each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordType {
    Team,
    TeamMembership,
    Rep,
    Customer,
    Lead,
    Deal,
    DealStageChange,
    Order,
    SubscriptionChange,
    Activity,
    Inquiry,
    CsatResponse,
    Target,
    Spend,
}

impl RecordType {
    /// Every record type, in dependency-free declaration order.
    pub const ALL: [RecordType; 14] = [
        RecordType::Team,
        RecordType::TeamMembership,
        RecordType::Rep,
        RecordType::Customer,
        RecordType::Lead,
        RecordType::Deal,
        RecordType::DealStageChange,
        RecordType::Order,
        RecordType::SubscriptionChange,
        RecordType::Activity,
        RecordType::Inquiry,
        RecordType::CsatResponse,
        RecordType::Target,
        RecordType::Spend,
    ];

    /// The snake_case name, as used in proto field names and table names.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::Team => "team",
            RecordType::TeamMembership => "team_membership",
            RecordType::Rep => "rep",
            RecordType::Customer => "customer",
            RecordType::Lead => "lead",
            RecordType::Deal => "deal",
            RecordType::DealStageChange => "deal_stage_change",
            RecordType::Order => "order",
            RecordType::SubscriptionChange => "subscription_change",
            RecordType::Activity => "activity",
            RecordType::Inquiry => "inquiry",
            RecordType::CsatResponse => "csat_response",
            RecordType::Target => "target",
            RecordType::Spend => "spend",
        }
    }
}

/// A sales team; teams form a tree through `parent_team_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct Team {
    /// Client-chosen id.
    pub id: Text,
    /// Optional version for out-of-order pipelines.
    pub version: Option<i64>,
    /// Display name.
    pub name: Text,
    /// Parent team; `None` (or an unknown team) makes this a root.
    pub parent_team_id: Option<Text>,
}

/// A rep joining `team_id` (or leaving all teams when `None`) at `effective_at`.
#[derive(Debug, Clone, PartialEq)]
pub struct TeamMembership {
    /// Client-chosen id.
    pub id: Text,
    /// Optional version.
    pub version: Option<i64>,
    /// The rep that moves.
    pub rep_id: Text,
    /// The team joined; `None` leaves all teams.
    pub team_id: Option<Text>,
    /// In force strictly after this instant.
    pub effective_at: Instant,
}

/// A sales representative.
#[derive(Debug, Clone, PartialEq)]
pub struct Rep {
    /// Client-chosen id.
    pub id: Text,
    /// Optional version.
    pub version: Option<i64>,
    /// Display name.
    pub name: Text,
    /// E-mail address.
    pub email: Option<Text>,
}

/// A customer account.
#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    /// Client-chosen id.
    pub id: Text,
    /// Optional version.
    pub version: Option<i64>,
    /// When the customer was acquired.
    pub acquired_at: Instant,
    /// When the customer churned (≥ acquired_at).
    pub churned_at: Option<Instant>,
    /// Owning rep (current value; ownership has no history).
    pub owner_rep_id: Option<Text>,
    /// Acquisition source, trimmed and lower-cased.
    pub source: Option<Text>,
    /// Display name.
    pub name: Option<Text>,
}

/// A sales lead.
#[derive(Debug, Clone, PartialEq)]
pub struct Lead {
    /// Client-chosen id.
    pub id: Text,
    /// Optional version.
    pub version: Option<i64>,
    /// Source, trimmed and lower-cased.
    pub source: Text,
    /// Creation instant.
    pub created_at: Instant,
    /// Owning rep.
    pub owner_rep_id: Option<Text>,
    /// First response (≥ created_at).
    pub first_response_at: Option<Instant>,
    /// Conversion (≥ created_at).
    pub converted_at: Option<Instant>,
    /// Customer the lead became.
    pub customer_id: Option<Text>,
}

/// Status of a deal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DealStatus {
    Open,
    Won,
    Lost,
}

/// A sales opportunity.
#[derive(Debug, Clone, PartialEq)]
pub struct Deal {
    /// Client-chosen id.
    pub id: Text,
    /// Optional version.
    pub version: Option<i64>,
    /// Value in minor units (≥ 0).
    pub amount: i64,
    /// Creation instant.
    pub created_at: Instant,
    /// Status.
    pub status: DealStatus,
    /// Close instant: `Some` iff WON/LOST, ≥ created_at.
    pub closed_at: Option<Instant>,
    /// Current stage name, trimmed and lower-cased.
    pub stage: Option<Text>,
    /// Owning rep.
    pub owner_rep_id: Option<Text>,
    /// Customer.
    pub customer_id: Option<Text>,
    /// Originating lead.
    pub lead_id: Option<Text>,
}

/// A deal entering a stage.
#[derive(Debug, Clone, PartialEq)]
pub struct DealStageChange {
    /// Client-chosen id.
    pub id: Text,
    /// Optional version.
    pub version: Option<i64>,
    /// The deal.
    pub deal_id: Text,
    /// Stage entered, trimmed and lower-cased.
    pub stage: Text,
    /// When.
    pub entered_at: Instant,
}

/// Kind of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderKind {
    New,
    Upsell,
    CrossSell,
    Renewal,
}

/// A sale.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    /// Client-chosen id.
    pub id: Text,
    /// Optional version.
    pub version: Option<i64>,
    /// Value in minor units (> 0).
    pub amount: i64,
    /// When it was placed.
    pub ordered_at: Instant,
    /// Kind of sale.
    pub kind: OrderKind,
    /// Customer.
    pub customer_id: Option<Text>,
    /// Credited rep.
    pub rep_id: Option<Text>,
    /// Originating deal.
    pub deal_id: Option<Text>,
}

/// A subscription billing `mrr` a month from `effective_at` (strictly after it).
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionChange {
    /// Client-chosen id.
    pub id: Text,
    /// Optional version.
    pub version: Option<i64>,
    /// The subscription.
    pub subscription_id: Text,
    /// Its customer.
    pub customer_id: Text,
    /// Monthly recurring revenue in minor units (≥ 0; 0 = cancelled).
    pub mrr: i64,
    /// When it takes effect.
    pub effective_at: Instant,
}

/// Type of an activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActivityType {
    Call,
    Email,
    Meeting,
    FollowUp,
    Proposal,
    Demo,
    NetworkingEvent,
    Social,
}

impl ActivityType {
    /// Every type, in catalog order.
    pub const ALL: [ActivityType; 8] = [
        ActivityType::Call,
        ActivityType::Email,
        ActivityType::Meeting,
        ActivityType::FollowUp,
        ActivityType::Proposal,
        ActivityType::Demo,
        ActivityType::NetworkingEvent,
        ActivityType::Social,
    ];

    /// Upper-case name as in the proto enum (without prefix), e.g. `FOLLOW_UP`.
    pub fn as_str(self) -> &'static str {
        match self {
            ActivityType::Call => "CALL",
            ActivityType::Email => "EMAIL",
            ActivityType::Meeting => "MEETING",
            ActivityType::FollowUp => "FOLLOW_UP",
            ActivityType::Proposal => "PROPOSAL",
            ActivityType::Demo => "DEMO",
            ActivityType::NetworkingEvent => "NETWORKING_EVENT",
            ActivityType::Social => "SOCIAL",
        }
    }
}

/// Something a rep did.
#[derive(Debug, Clone, PartialEq)]
pub struct Activity {
    /// Client-chosen id.
    pub id: Text,
    /// Optional version.
    pub version: Option<i64>,
    /// The rep.
    pub rep_id: Text,
    /// Type.
    pub activity_type: ActivityType,
    /// When.
    pub occurred_at: Instant,
    /// Seconds spent (≥ 0); `None` counts 0.
    pub duration_seconds: Option<i64>,
    /// Related lead.
    pub lead_id: Option<Text>,
    /// Related deal.
    pub deal_id: Option<Text>,
    /// Related customer.
    pub customer_id: Option<Text>,
}

/// A customer's request to sales.
#[derive(Debug, Clone, PartialEq)]
pub struct Inquiry {
    /// Client-chosen id.
    pub id: Text,
    /// Optional version.
    pub version: Option<i64>,
    /// Channel, trimmed and lower-cased.
    pub channel: Text,
    /// When received.
    pub received_at: Instant,
    /// First response (≥ received_at).
    pub first_response_at: Option<Instant>,
    /// Customer.
    pub customer_id: Option<Text>,
    /// Handling rep.
    pub rep_id: Option<Text>,
}

/// A CSAT survey answer.
#[derive(Debug, Clone, PartialEq)]
pub struct CsatResponse {
    /// Client-chosen id.
    pub id: Text,
    /// Optional version.
    pub version: Option<i64>,
    /// Score 1–5.
    pub score: i32,
    /// When answered.
    pub responded_at: Instant,
    /// Customer.
    pub customer_id: Option<Text>,
    /// Rated rep.
    pub rep_id: Option<Text>,
}

/// What a target measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetMetric {
    Revenue,
    Bookings,
    NewCustomers,
    DealsWon,
}

/// Whom a target is for: exactly one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TargetScope {
    Company,
    Team(String),
    Rep(String),
}

/// A goal for `[start_date, end_date)` in local dates.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Client-chosen id.
    pub id: Text,
    /// Optional version.
    pub version: Option<i64>,
    /// Metric.
    pub metric: TargetMetric,
    /// Minor units (REVENUE, BOOKINGS) or a count (≥ 0).
    pub value: i64,
    /// First local date.
    pub start_date: NaiveDate,
    /// Exclusive end date (> start_date).
    pub end_date: NaiveDate,
    /// Whom it is for.
    pub scope: TargetScope,
}

/// Category of spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpendCategory {
    Marketing,
    Sales,
}

/// Cost spread evenly over `[start_date, end_date)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Spend {
    /// Client-chosen id.
    pub id: Text,
    /// Optional version.
    pub version: Option<i64>,
    /// Category.
    pub category: SpendCategory,
    /// Minor units (≥ 0).
    pub amount: i64,
    /// First local date.
    pub start_date: NaiveDate,
    /// Exclusive end date (> start_date).
    pub end_date: NaiveDate,
    /// Team that spent it; `None` counts for the company only.
    pub team_id: Option<Text>,
}

/// Any one validated record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Team(Team),
    TeamMembership(TeamMembership),
    Rep(Rep),
    Customer(Customer),
    Lead(Lead),
    Deal(Deal),
    DealStageChange(DealStageChange),
    Order(Order),
    SubscriptionChange(SubscriptionChange),
    Activity(Activity),
    Inquiry(Inquiry),
    CsatResponse(CsatResponse),
    Target(Target),
    Spend(Spend),
}

macro_rules! for_each_record {
    ($self:expr, $r:ident => $body:expr) => {
        match $self {
            Record::Team($r) => $body,
            Record::TeamMembership($r) => $body,
            Record::Rep($r) => $body,
            Record::Customer($r) => $body,
            Record::Lead($r) => $body,
            Record::Deal($r) => $body,
            Record::DealStageChange($r) => $body,
            Record::Order($r) => $body,
            Record::SubscriptionChange($r) => $body,
            Record::Activity($r) => $body,
            Record::Inquiry($r) => $body,
            Record::CsatResponse($r) => $body,
            Record::Target($r) => $body,
            Record::Spend($r) => $body,
        }
    };
}

impl Record {
    /// The record's id.
    pub fn id(&self) -> &str {
        for_each_record!(self, r => &r.id)
    }

    /// The record's optional version.
    pub fn version(&self) -> Option<i64> {
        for_each_record!(self, r => r.version)
    }

    /// The record's type.
    pub fn record_type(&self) -> RecordType {
        match self {
            Record::Team(_) => RecordType::Team,
            Record::TeamMembership(_) => RecordType::TeamMembership,
            Record::Rep(_) => RecordType::Rep,
            Record::Customer(_) => RecordType::Customer,
            Record::Lead(_) => RecordType::Lead,
            Record::Deal(_) => RecordType::Deal,
            Record::DealStageChange(_) => RecordType::DealStageChange,
            Record::Order(_) => RecordType::Order,
            Record::SubscriptionChange(_) => RecordType::SubscriptionChange,
            Record::Activity(_) => RecordType::Activity,
            Record::Inquiry(_) => RecordType::Inquiry,
            Record::CsatResponse(_) => RecordType::CsatResponse,
            Record::Target(_) => RecordType::Target,
            Record::Spend(_) => RecordType::Spend,
        }
    }
}

crate::heap_fields! {
    Team => id, name, parent_team_id;
    TeamMembership => id, rep_id, team_id;
    Rep => id, name, email;
    Customer => id, owner_rep_id, source, name;
    Lead => id, source, owner_rep_id, customer_id;
    Deal => id, stage, owner_rep_id, customer_id, lead_id;
    DealStageChange => id, deal_id, stage;
    Order => id, customer_id, rep_id, deal_id;
    SubscriptionChange => id, subscription_id, customer_id;
    Activity => id, rep_id, lead_id, deal_id, customer_id;
    Inquiry => id, channel, customer_id, rep_id;
    CsatResponse => id, customer_id, rep_id;
    Target => id, scope;
    Spend => id, team_id;
    Dataset => teams, team_memberships, reps, customers, leads, deals, deal_stage_changes,
        orders, subscription_changes, activities, inquiries, csat_responses, targets, spends;
}

impl crate::heap::HeapBytes for TargetScope {
    fn heap_bytes(&self) -> usize {
        match self {
            TargetScope::Company => 0,
            TargetScope::Team(id) | TargetScope::Rep(id) => crate::heap::HeapBytes::heap_bytes(id),
        }
    }
}

/// Every record of one tenant, as the KPI engine reads them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dataset {
    /// Teams.
    pub teams: Vec<Team>,
    /// Team memberships.
    pub team_memberships: Vec<TeamMembership>,
    /// Reps.
    pub reps: Vec<Rep>,
    /// Customers.
    pub customers: Vec<Customer>,
    /// Leads.
    pub leads: Vec<Lead>,
    /// Deals.
    pub deals: Vec<Deal>,
    /// Deal stage changes.
    pub deal_stage_changes: Vec<DealStageChange>,
    /// Orders.
    pub orders: Vec<Order>,
    /// Subscription changes.
    pub subscription_changes: Vec<SubscriptionChange>,
    /// Activities.
    pub activities: Vec<Activity>,
    /// Inquiries.
    pub inquiries: Vec<Inquiry>,
    /// CSAT responses.
    pub csat_responses: Vec<CsatResponse>,
    /// Targets.
    pub targets: Vec<Target>,
    /// Spend.
    pub spends: Vec<Spend>,
}

/// Calls `$apply!(list_field)` for every list of a [`Dataset`] with the
/// record type it holds.
macro_rules! for_each_list {
    ($apply:ident) => {
        $apply!(teams, Team);
        $apply!(team_memberships, TeamMembership);
        $apply!(reps, Rep);
        $apply!(customers, Customer);
        $apply!(leads, Lead);
        $apply!(deals, Deal);
        $apply!(deal_stage_changes, DealStageChange);
        $apply!(orders, Order);
        $apply!(subscription_changes, SubscriptionChange);
        $apply!(activities, Activity);
        $apply!(inquiries, Inquiry);
        $apply!(csat_responses, CsatResponse);
        $apply!(targets, Target);
        $apply!(spends, Spend);
    };
}

/// Records of one list from which [`Dataset::with_changes`] copies the list
/// on a thread of its own.
const PARALLEL_COPY_FROM: usize = 10_000;

/// `old` (sorted by `id`) without the records whose ids are `gone`, with
/// `new` merged in by id: the gone records are found by binary search, the
/// places of the (few) new records too, and the rest is copied in runs.
fn merge_by_id<T: Clone>(
    old: &[T],
    mut new: Vec<T>,
    id: impl Fn(&T) -> &str,
    gone: &[&str],
) -> Vec<T> {
    new.sort_unstable_by(|a, b| id(a).cmp(id(b)));
    let mut skip: Vec<usize> = gone
        .iter()
        .filter_map(|g| old.binary_search_by(|o| id(o).cmp(g)).ok())
        .collect();
    skip.sort_unstable();
    skip.dedup();
    let mut out = Vec::with_capacity(old.len() + new.len());
    let mut at = 0;
    for record in new {
        let rest = old.get(at..).unwrap_or_default();
        let place = at + rest.partition_point(|o| id(o) < id(&record));
        copy_except(&mut out, old, at..place, &skip);
        out.push(record);
        at = place;
    }
    copy_except(&mut out, old, at..old.len(), &skip);
    out
}

/// Appends `old[range]` to `out`, leaving out the positions in `skip`
/// (sorted).
fn copy_except<T: Clone>(out: &mut Vec<T>, old: &[T], range: Range<usize>, skip: &[usize]) {
    let mut from = range.start;
    let first = skip.partition_point(|&s| s < range.start);
    for &s in skip.iter().skip(first).take_while(|&&s| s < range.end) {
        out.extend_from_slice(old.get(from..s).unwrap_or_default());
        from = s + 1;
    }
    out.extend_from_slice(old.get(from..range.end).unwrap_or_default());
}

impl Dataset {
    /// Applies changes read from the store's change feed in place (see
    /// [`Dataset::with_changes`]).
    pub fn apply_changes(&mut self, deleted: &[(RecordType, String)], upserts: Vec<Record>) {
        *self = self.with_changes(deleted, upserts);
    }

    /// This dataset with changes read from the store's change feed applied:
    /// the `deleted` records and the old versions of the `upserts` left out,
    /// the `upserts` in, every list in byte order of id (the order a load
    /// gives). Each list is copied once, the changes merged in at their
    /// places; large lists are copied on parallel threads.
    pub fn with_changes(&self, deleted: &[(RecordType, String)], upserts: Vec<Record>) -> Dataset {
        let mut gone: HashSet<(RecordType, String)> = deleted.iter().cloned().collect();
        gone.extend(
            upserts
                .iter()
                .map(|r| (r.record_type(), r.id().to_string())),
        );
        // The ids that leave each list (the lists without any are copied
        // as they are).
        let mut gone_ids: HashMap<RecordType, Vec<&str>> = HashMap::new();
        for (record_type, id) in &gone {
            gone_ids.entry(*record_type).or_default().push(id);
        }
        let gone = gone_ids;
        let mut fresh = Dataset::default();
        for record in upserts {
            fresh.push(record);
        }
        let mut out = Dataset::default();
        std::thread::scope(|scope| {
            macro_rules! merge_list {
                ($list:ident, $record_type:ident) => {
                    let old = &self.$list;
                    let new = std::mem::take(&mut fresh.$list);
                    let (gone, slot) = (&gone, &mut out.$list);
                    let job = move || match gone.get(&RecordType::$record_type) {
                        Some(ids) => merge_by_id(old, new, |r| r.id.as_str(), ids),
                        None => old.clone(),
                    };
                    if old.len() >= PARALLEL_COPY_FROM {
                        scope.spawn(move || *slot = job());
                    } else {
                        *slot = job();
                    }
                };
            }
            for_each_list!(merge_list);
        });
        out
    }

    /// Sorts the list of `record_type` by id, as a load ordered by id gives
    /// it (a list already in that order is only checked).
    pub fn sort_by_id(&mut self, record_type: RecordType) {
        macro_rules! sort {
            ($list:ident, $record_type:ident) => {
                if record_type == RecordType::$record_type
                    && !self.$list.is_sorted_by(|a, b| a.id <= b.id)
                {
                    self.$list.sort_unstable_by(|a, b| a.id.cmp(&b.id));
                }
            };
        }
        for_each_list!(sort);
    }

    /// Moves every record of `other` into this dataset, list by list (a
    /// list this dataset has no record of is taken over whole).
    pub fn absorb(&mut self, mut other: Dataset) {
        macro_rules! take {
            ($list:ident, $record_type:ident) => {
                if self.$list.is_empty() {
                    self.$list = std::mem::take(&mut other.$list);
                } else {
                    self.$list.append(&mut other.$list);
                }
            };
        }
        for_each_list!(take);
    }

    /// The number of records in every list.
    pub fn len(&self) -> usize {
        let mut n = 0;
        macro_rules! count {
            ($list:ident, $record_type:ident) => {
                n += self.$list.len();
            };
        }
        for_each_list!(count);
        n
    }

    /// Whether the dataset holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a record to the matching list (used by tests and loaders).
    pub fn push(&mut self, record: Record) {
        match record {
            Record::Team(r) => self.teams.push(r),
            Record::TeamMembership(r) => self.team_memberships.push(r),
            Record::Rep(r) => self.reps.push(r),
            Record::Customer(r) => self.customers.push(r),
            Record::Lead(r) => self.leads.push(r),
            Record::Deal(r) => self.deals.push(r),
            Record::DealStageChange(r) => self.deal_stage_changes.push(r),
            Record::Order(r) => self.orders.push(r),
            Record::SubscriptionChange(r) => self.subscription_changes.push(r),
            Record::Activity(r) => self.activities.push(r),
            Record::Inquiry(r) => self.inquiries.push(r),
            Record::CsatResponse(r) => self.csat_responses.push(r),
            Record::Target(r) => self.targets.push(r),
            Record::Spend(r) => self.spends.push(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::build::{dataset, rep, sale};

    /// A dataset's estimate: each list's slots and the strings its records
    /// own on the heap, each allocation with its overhead. Text of up to 24
    /// bytes is kept inline and owns nothing.
    #[test]
    fn a_dataset_estimates_its_records_and_their_strings() {
        use crate::heap::{ALLOCATION_OVERHEAD as A, HeapBytes};
        let long_id = "order-with-a-thirty-byte-id-x1";
        assert_eq!(long_id.len(), 30);
        let mut data = dataset([
            sale("o1", 100, "2024-03-01T00:00:00Z", None),
            sale(long_id, 300, "2024-03-03T00:00:00Z", Some("r1")),
        ]);
        data.orders.shrink_to_fit();
        // Two Order slots; "o1" and the rep "r1" inline; the 30-byte id on
        // the heap (its capacity is at least its length).
        let orders = 2 * std::mem::size_of::<Order>() + A;
        let long = data.orders.iter().find(|o| o.id == long_id).unwrap();
        assert!(long.id.is_heap_allocated() && long.id.capacity() >= 30);
        assert!(
            data.orders
                .iter()
                .all(|o| o.customer_id.is_none() && o.deal_id.is_none())
        );
        assert_eq!(data.heap_bytes(), orders + long.id.capacity() + A);
        assert_eq!(Dataset::default().heap_bytes(), 0);
    }

    /// Deletes and upserts land where a fresh load would put them: replaced
    /// records once, in id order, untouched lists unchanged.
    #[test]
    fn applied_changes_equal_loading_the_result() {
        let mut data = dataset([
            sale("o1", 100, "2024-03-01T00:00:00Z", None),
            sale("o3", 300, "2024-03-03T00:00:00Z", None),
            sale("o5", 500, "2024-03-05T00:00:00Z", None),
            rep("r1"),
        ]);
        data.apply_changes(
            &[(RecordType::Order, "o1".to_string())],
            vec![
                sale("o4", 400, "2024-03-04T00:00:00Z", None),
                sale("o3", 333, "2024-03-03T00:00:00Z", None),
                sale("o0", 1, "2024-03-01T00:00:00Z", None),
            ],
        );
        let expected = dataset([
            sale("o0", 1, "2024-03-01T00:00:00Z", None),
            sale("o3", 333, "2024-03-03T00:00:00Z", None),
            sale("o4", 400, "2024-03-04T00:00:00Z", None),
            sale("o5", 500, "2024-03-05T00:00:00Z", None),
            rep("r1"),
        ]);
        assert_eq!(data, expected);
    }

    /// The same on lists long enough to be copied on threads of their own:
    /// deletes, replacements (a new amount) and new records at the start, in
    /// the middle and at the end, against the dataset built directly.
    #[test]
    fn large_lists_take_changes_like_a_load() {
        let order =
            |i: u32, amount: i64| sale(&format!("o{i:06}"), amount, "2024-03-04T00:00:00Z", None);
        let data = dataset((0..12_000).map(|i| order(i * 2, 1)).chain([rep("r1")]));
        let changed = data.with_changes(
            &[
                (RecordType::Order, "o000000".to_string()),
                (RecordType::Order, "o010000".to_string()),
                (RecordType::Order, "none".to_string()),
            ],
            vec![
                order(23_998, 7),
                order(30_001, 7),
                order(5_001, 7),
                order(4, 7),
            ],
        );
        let expected = dataset(
            (0..12_000)
                .map(|i| i * 2)
                .filter(|&i| i != 0 && i != 10_000)
                .map(|i| order(i, if i == 4 || i == 23_998 { 7 } else { 1 }))
                .chain([order(5_001, 7), order(30_001, 7)])
                .chain([rep("r1")]),
        );
        let mut sorted = expected;
        sorted.orders.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(changed, sorted);
        assert_eq!(changed.orders.len(), 12_000);
    }
}
