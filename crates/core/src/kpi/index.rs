//! An index over a tenant's [`Dataset`], built once with its snapshot: the
//! lookups that the state and attribution rules of docs/kpis.md need, the time-sorted
//! lists, and the rollups over them ([`super::rollup`]). Everything here is
//! derived data; the dataset is not copied.
//!
//! The index is made of one part per family of record types ([`OrgIndex`],
//! [`CustomerIndex`], [`DealIndex`], [`OrderIndex`], [`LeadIndex`],
//! [`ActivityIndex`], [`InquiryIndex`], [`CsatIndex`]), each built from its
//! family's records alone: every figure that combines families (a team's
//! revenue needs the memberships and the orders) combines their parts when
//! it is read. So the service's snapshots re-index only the families a
//! change touches and share the other parts ([`Part::Shared`]).

// Fx hashing: the keys are short ids from our own store, and the engine does
// millions of lookups per bundle (SipHash was a sixth of its time).
use std::ops::Range;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use super::rollup::{
    DealRollups, OrderRollups, StageChanges, Stocks, Sums, active_customers, activity_rollups,
    csat_figures, lead_figures, leads_by_source, response, sums,
};
use crate::domain::{
    Activity, CsatResponse, Customer, Dataset, Deal, Inquiry, Instant, Lead, Order, Scope, Target,
    TargetScope,
};
use crate::heap::HeapBytes;

/// Records of one kind sorted by one of their instants, so the records of a
/// period are one contiguous run found by binary search; optionally also
/// per rep (the record's own rep field), so a REP scope reads only its rep's
/// records.
///
/// Compact on purpose (it is much of an index's memory): the list of all
/// records holds one reference per record and reads each record's instant
/// from the record itself; a rep's list holds each of its records' instant
/// and 4-byte position in the list of all, so that the many binary
/// searches of a TEAM scope (per rep, per span, per list) read one array
/// and no records.
#[derive(Debug)]
pub struct ByTime<'a, T> {
    /// The records, sorted by instant.
    items: Vec<&'a T>,
    /// The instant a record is sorted by (`None`: the record is not listed).
    at: fn(&T) -> Option<Instant>,
    /// Per rep field value: the instant and position in `items` of each
    /// of its records, in ascending order (when built with
    /// [`ByTime::with_reps`]).
    by_rep: Option<HashMap<&'a str, Vec<(Instant, u32)>>>,
}

/// A list of a [`ByTime`], sorted by instant: every record, or one rep's.
/// Cheap to copy; positions are positions in this list.
#[derive(Debug)]
pub struct List<'s, 'a, T> {
    /// The whole list's records.
    items: &'s [&'a T],
    /// The instant of a record.
    at: fn(&T) -> Option<Instant>,
    /// A rep's instants and positions in `items` (`None`: every record).
    positions: Option<&'s [(Instant, u32)]>,
}

impl<T> Clone for List<'_, '_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for List<'_, '_, T> {}

impl<'s, 'a, T> List<'s, 'a, T> {
    /// The number of records.
    pub fn len(&self) -> usize {
        self.positions
            .map_or(self.items.len(), <[(Instant, u32)]>::len)
    }

    /// Whether the list has no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The instant a listed record is sorted by.
    fn instant(&self, record: &T) -> Instant {
        (self.at)(record).unwrap_or(Instant::MIN_UTC)
    }

    /// The record at position `i`.
    pub fn record(&self, i: usize) -> Option<&'a T> {
        let i = match self.positions {
            None => i,
            Some(positions) => positions.get(i)?.1 as usize,
        };
        self.items.get(i).copied()
    }

    /// The record at position `i`, with its instant.
    pub fn get(&self, i: usize) -> Option<(Instant, &'a T)> {
        match self.positions {
            None => self.items.get(i).map(|&r| (self.instant(r), r)),
            Some(positions) => {
                let &(t, p) = positions.get(i)?;
                Some((t, *self.items.get(p as usize)?))
            }
        }
    }

    /// The number of leading records whose instant satisfies `before`
    /// (which must hold for a prefix of the list and not after it).
    pub fn partition_point(&self, before: impl Fn(Instant) -> bool) -> usize {
        match self.positions {
            None => self.items.partition_point(|r| before(self.instant(r))),
            Some(positions) => positions.partition_point(|(t, _)| before(*t)),
        }
    }

    /// The records at `positions` of this list, with their instants.
    pub fn range(self, positions: Range<usize>) -> impl Iterator<Item = (Instant, &'a T)> + 's {
        let end = positions.end.min(self.len());
        (positions.start.min(end)..end).filter_map(move |i| self.get(i))
    }

    /// Every record, in order, without working out the instants (the
    /// whole list is then a plain walk of its array).
    pub fn records(self) -> impl Iterator<Item = &'a T> + 's {
        let items = self.items;
        let (all, rep) = match self.positions {
            None => (Some(items.iter().copied()), None),
            Some(positions) => (
                None,
                Some(
                    positions
                        .iter()
                        .filter_map(move |&(_, p)| items.get(p as usize).copied()),
                ),
            ),
        };
        all.into_iter().flatten().chain(rep.into_iter().flatten())
    }

    /// The positions of the records whose instant t satisfies start ≤ t < end.
    pub fn between(&self, start: Instant, end: Instant) -> Range<usize> {
        let lo = self.partition_point(|t| t < start);
        let hi = self.partition_point(|t| t < end).max(lo);
        lo..hi
    }
}

impl<'a, T> ByTime<'a, T> {
    /// Sorts `records` by their instant `at` (records without one are left
    /// out).
    pub fn new(records: impl Iterator<Item = &'a T>, at: fn(&T) -> Option<Instant>) -> Self {
        let mut keyed: Vec<(Instant, &'a T)> = records.filter_map(|r| Some((at(r)?, r))).collect();
        keyed.sort_by_key(|(t, _)| *t);
        ByTime {
            items: keyed.into_iter().map(|(_, r)| r).collect(),
            at,
            by_rep: None,
        }
    }

    /// Like [`ByTime::new`], and also grouped by `rep_of(record)`.
    ///
    /// Each record's rep is looked up once, in the order `records` gives
    /// (the records' own order in memory), and kept as a small number, so
    /// grouping the sorted list touches no record and hashes no string.
    pub fn with_reps(
        records: impl Iterator<Item = &'a T>,
        at: fn(&T) -> Option<Instant>,
        rep_of: impl Fn(&'a T) -> Option<&'a str>,
    ) -> Self {
        const NO_REP: u32 = u32::MAX;
        let mut numbers: HashMap<&'a str, u32> = HashMap::default();
        let mut reps: Vec<(&'a str, usize)> = Vec::new();
        let mut keyed: Vec<(Instant, u32, &'a T)> = records
            .filter_map(|record| {
                let t = at(record)?;
                let number = rep_of(record).map_or(NO_REP, |rep| {
                    let number = *numbers.entry(rep).or_insert_with(|| {
                        reps.push((rep, 0));
                        u32::try_from(reps.len() - 1).unwrap_or(NO_REP)
                    });
                    if let Some((_, count)) = reps.get_mut(number as usize) {
                        *count += 1;
                    }
                    number
                });
                Some((t, number, record))
            })
            .collect();
        keyed.sort_by_key(|(t, _, _)| *t);
        let mut lists: Vec<Vec<(Instant, u32)>> = reps
            .iter()
            .map(|(_, count)| Vec::with_capacity(*count))
            .collect();
        let mut items = Vec::with_capacity(keyed.len());
        for (position, (t, number, record)) in keyed.into_iter().enumerate() {
            items.push(record);
            // A list of more than u32::MAX records leaves the rest out of
            // its reps' lists rather than point at the wrong records.
            if let (Some(list), Ok(position)) =
                (lists.get_mut(number as usize), u32::try_from(position))
            {
                list.push((t, position));
            }
        }
        ByTime {
            items,
            at,
            by_rep: Some(reps.into_iter().map(|(rep, _)| rep).zip(lists).collect()),
        }
    }

    /// Every record (`rep` `None`) or one rep's records, sorted by instant
    /// (empty for a rep without records, or when the list is not grouped
    /// by rep).
    pub fn list(&self, rep: Option<&str>) -> List<'_, 'a, T> {
        let positions = rep.map(|rep| {
            self.by_rep
                .as_ref()
                .and_then(|by_rep| by_rep.get(rep))
                .map_or(&[][..], Vec::as_slice)
        });
        List {
            items: &self.items,
            at: self.at,
            positions,
        }
    }

    /// The records whose instant t satisfies start ≤ t < end, with t.
    pub fn window(
        &self,
        start: Instant,
        end: Instant,
    ) -> impl Iterator<Item = (Instant, &'a T)> + '_ {
        self.window_of(None, start, end)
    }

    /// The rep id as held by this list, when the list is grouped by rep and
    /// has records of `rep`.
    pub fn rep_key(&self, rep: &str) -> Option<&'a str> {
        self.by_rep
            .as_ref()?
            .get_key_value(rep)
            .map(|(key, _)| *key)
    }

    /// Every rep's list (none when the list is not grouped by rep).
    pub fn rep_lists(&self) -> impl Iterator<Item = (&'a str, List<'_, 'a, T>)> + '_ {
        self.by_rep.iter().flatten().map(|(rep, positions)| {
            let list = List {
                items: &self.items,
                at: self.at,
                positions: Some(positions.as_slice()),
            };
            (*rep, list)
        })
    }

    /// [`ByTime::window`], narrowed to the records of `rep` when `rep` is
    /// given and the index is grouped by rep (a superset otherwise: callers
    /// still apply their scope filter).
    pub fn window_of(
        &self,
        rep: Option<&str>,
        start: Instant,
        end: Instant,
    ) -> impl Iterator<Item = (Instant, &'a T)> + '_ {
        let list = match (rep, &self.by_rep) {
            (Some(rep), Some(_)) => self.list(Some(rep)),
            _ => self.list(None),
        };
        list.range(list.between(start, end))
    }
}

/// A span (after, until] of time (`until` `None`: unbounded).
pub type MembershipSpan = (Option<Instant>, Option<Instant>);

/// One membership of a rep, in (effective_at, id) order.
#[derive(Debug, Clone, Copy)]
pub struct MembershipEntry<'a> {
    /// When it takes effect (in force strictly after).
    pub effective_at: Instant,
    /// Membership id (tie-breaker: the greatest id is the latest).
    pub id: &'a str,
    /// Team joined; `None` = left all teams.
    pub team_id: Option<&'a str>,
}

/// One subscription change, in (effective_at, id) order per subscription
/// (for the tests' reading of every customer's MRR).
#[cfg(test)]
#[derive(Debug, Clone, Copy)]
struct SubscriptionEntry<'a> {
    /// When it takes effect.
    effective_at: Instant,
    /// Change id.
    id: &'a str,
    /// The subscription's customer from this change on.
    customer_id: &'a str,
    /// MRR from this change on.
    mrr: i64,
}

/// A part of an [`Index`]: built with it ([`Part::Owned`]), or shared with
/// other snapshots of the same tenant ([`Part::Shared`]).
#[derive(Debug)]
pub enum Part<'a, T> {
    /// Built for this index alone.
    Owned(Box<T>),
    /// Held elsewhere (a snapshot's parts) and shared.
    Shared(&'a T),
}

impl<T> std::ops::Deref for Part<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        match self {
            Part::Owned(part) => part,
            Part::Shared(part) => part,
        }
    }
}

/// Lookups over one tenant's records, one part per family of record types
/// (the organisation, customers, deals, orders, leads, activities,
/// inquiries, CSAT responses). A part is built from its family's records
/// alone, so a snapshot whose changes touch one family rebuilds that part
/// and shares the others with the snapshot before it.
#[derive(Debug)]
pub struct Index<'a> {
    /// Teams, memberships, reps, targets and spend.
    pub org: Part<'a, OrgIndex<'a>>,
    /// Customers and their subscriptions.
    pub customers: Part<'a, CustomerIndex<'a>>,
    /// Deals and their stage changes.
    pub deals: Part<'a, DealIndex<'a>>,
    /// Orders.
    pub orders: Part<'a, OrderIndex<'a>>,
    /// Leads.
    pub leads: Part<'a, LeadIndex<'a>>,
    /// Activities.
    pub activities: Part<'a, ActivityIndex<'a>>,
    /// Inquiries.
    pub inquiries: Part<'a, InquiryIndex<'a>>,
    /// CSAT responses.
    pub csat: Part<'a, CsatIndex<'a>>,
}

/// The organisation: teams, memberships, reps, targets and spend.
#[derive(Debug)]
pub struct OrgIndex<'a> {
    /// The records this part was built from.
    pub data: &'a Dataset,
    /// Memberships per rep, sorted by (effective_at, id).
    pub memberships: HashMap<&'a str, Vec<MembershipEntry<'a>>>,
    /// Known teams: id → display name.
    pub team_names: HashMap<&'a str, &'a str>,
    /// Direct children of each team in the current tree.
    pub children: HashMap<&'a str, Vec<&'a str>>,
    /// Teams whose parent is absent, unknown, or that sit on a parent cycle.
    pub roots: Vec<&'a str>,
    /// Rep display names.
    pub rep_names: HashMap<&'a str, &'a str>,
    /// Rep ids named by Rep records, memberships and REP targets.
    reps: HashSet<&'a str>,
    /// Targets per scope they belong to, in dataset order.
    /// (COMPANY's, TEAM's by team id, REP's by rep id.)
    targets: [HashMap<&'a str, Vec<&'a Target>>; 3],
}

/// Customers and their subscriptions.
#[derive(Debug)]
pub struct CustomerIndex<'a> {
    /// The records this part was built from.
    pub data: &'a Dataset,
    /// Customers by id.
    pub by_id: HashMap<&'a str, &'a Customer>,
    /// Customers per owner rep.
    pub by_owner: HashMap<&'a str, Vec<&'a Customer>>,
    /// Every customer's MRR over time.
    pub mrr: MrrTimeline<'a>,
    /// Customers by acquired_at.
    pub by_acquired: ByTime<'a, Customer>,
    /// Churned customers by churned_at.
    pub by_churned: ByTime<'a, Customer>,
    /// Customers by acquired_at: the count alone.
    pub acquired: Sums<'a, Customer, 0>,
    /// Customers by churned_at: the count alone.
    pub churned: Sums<'a, Customer, 0>,
    /// Customers active, per owner: [count], over (acquired_at, churned_at].
    pub active_customers: Stocks<'a, 1>,
}

/// Deals and their stage changes.
#[derive(Debug)]
pub struct DealIndex<'a> {
    /// The records this part was built from.
    pub data: &'a Dataset,
    /// Deals by id.
    pub by_id: HashMap<&'a str, &'a Deal>,
    /// Deals per owner rep.
    pub by_owner: HashMap<&'a str, Vec<&'a Deal>>,
    /// Stage changes per deal, sorted by (entered_at, id).
    pub stage_changes: StageChanges<'a>,
    /// Deals by created_at.
    pub by_created: ByTime<'a, Deal>,
    /// Closed deals by closed_at.
    pub by_closed: ByTime<'a, Deal>,
    /// The deal rollups (closed and created sums, open stocks, stages).
    pub rollups: DealRollups<'a>,
}

/// Orders.
#[derive(Debug)]
pub struct OrderIndex<'a> {
    /// Orders by ordered_at.
    pub by_time: ByTime<'a, Order>,
    /// The order rollups (amounts, links between a customer's orders).
    pub rollups: OrderRollups<'a>,
}

/// Leads.
#[derive(Debug)]
pub struct LeadIndex<'a> {
    /// Leads by created_at.
    pub by_created: ByTime<'a, Lead>,
    /// Leads by created_at: [converted, responded, Σ response nanoseconds].
    pub figures: Sums<'a, Lead, 3>,
    /// Per lead source: its leads by created_at, and the same sums as
    /// `figures` over them.
    pub by_source: HashMap<&'a str, (ByTime<'a, Lead>, Sums<'a, Lead, 3>)>,
}

/// Activities: one list per type and no list of all of them (every figure
/// over activities is a sum over types, and a list of all would hold each
/// activity twice more).
#[derive(Debug)]
pub struct ActivityIndex<'a> {
    /// Per activity type (`ActivityType as usize`): the type's activities by
    /// occurred_at, and [Σ duration_seconds] over them.
    pub by_type: Vec<(ByTime<'a, Activity>, Sums<'a, Activity, 1>)>,
}

/// Inquiries.
#[derive(Debug)]
pub struct InquiryIndex<'a> {
    /// Inquiries by received_at.
    pub by_time: ByTime<'a, Inquiry>,
    /// Inquiries by received_at: [responded, Σ response nanoseconds].
    pub figures: Sums<'a, Inquiry, 2>,
}

/// CSAT responses.
#[derive(Debug)]
pub struct CsatIndex<'a> {
    /// CSAT responses by responded_at.
    pub by_time: ByTime<'a, CsatResponse>,
    /// CSAT responses by responded_at: [Σ score, then the count with a
    /// score ≥ s for each s of [`super::rollup::CSAT_SCORES`]].
    pub figures: Sums<'a, CsatResponse, 6>,
}

crate::heap_fields! {
    Index<'_> => org, customers, deals, orders, leads, activities, inquiries, csat;
    OrgIndex<'_> => memberships, team_names, children, roots, rep_names, reps, targets;
    CustomerIndex<'_> => by_id, by_owner, mrr, by_acquired, by_churned, acquired,
        churned, active_customers;
    DealIndex<'_> => by_id, by_owner, stage_changes, by_created, by_closed, rollups;
    OrderIndex<'_> => by_time, rollups;
    LeadIndex<'_> => by_created, figures, by_source;
    ActivityIndex<'_> => by_type;
    InquiryIndex<'_> => by_time, figures;
    CsatIndex<'_> => by_time, figures;
    MrrTimeline<'_> => per_customer, first_positive, all, by_owner;
    MrrChanges<'_> => changes, moves, totals;
}

impl<T: HeapBytes> HeapBytes for Part<'_, T> {
    fn heap_bytes(&self) -> usize {
        match self {
            // A shared part is counted where it is held.
            Part::Shared(_) => 0,
            Part::Owned(part) => {
                size_of::<T>() + crate::heap::ALLOCATION_OVERHEAD + part.heap_bytes()
            }
        }
    }
}

impl<T> HeapBytes for ByTime<'_, T> {
    fn heap_bytes(&self) -> usize {
        self.items.heap_bytes() + self.by_rep.heap_bytes()
    }
}

crate::heap_plain!(MembershipEntry<'_>, Move);

/// The key of a target's scope in [`Index`]'s targets.
fn target_key(scope: &Scope) -> (usize, &str) {
    match scope {
        Scope::Company => (0, ""),
        Scope::Team(t) => (1, t.as_str()),
        Scope::Rep(r) => (2, r.as_str()),
    }
}

impl<'a> Index<'a> {
    /// Indexes a dataset: every part, on parallel threads when the dataset
    /// is large enough for that to pay.
    pub fn new(data: &'a Dataset) -> Self {
        Self::build(data, worth_parallel(data))
    }

    /// [`Index::new`], on parallel threads or not as `par` says.
    pub(crate) fn build(data: &'a Dataset, par: bool) -> Self {
        let (((org, customers), (deals, orders)), ((leads, activities), (inquiries, csat))) = both(
            par,
            || {
                both(
                    par,
                    || both(par, || OrgIndex::new(data), || CustomerIndex::new(data)),
                    || both(par, || DealIndex::new(data), || OrderIndex::new(data)),
                )
            },
            || {
                both(
                    par,
                    || both(par, || LeadIndex::new(data), || ActivityIndex::new(data)),
                    || both(par, || InquiryIndex::new(data), || CsatIndex::new(data)),
                )
            },
        );
        Index {
            org: Part::Owned(Box::new(org)),
            customers: Part::Owned(Box::new(customers)),
            deals: Part::Owned(Box::new(deals)),
            orders: Part::Owned(Box::new(orders)),
            leads: Part::Owned(Box::new(leads)),
            activities: Part::Owned(Box::new(activities)),
            inquiries: Part::Owned(Box::new(inquiries)),
            csat: Part::Owned(Box::new(csat)),
        }
    }

    /// The rep id as held by the index, when some part names it (a Rep
    /// record, a membership, a target or any record's rep field).
    pub fn known_rep(&self, rep: &str) -> Option<&'a str> {
        // Each family's list of all its records is grouped by rep: its keys
        // are the reps the family names.
        self.org
            .reps
            .get(rep)
            .copied()
            .or_else(|| self.customers.by_acquired.rep_key(rep))
            .or_else(|| self.deals.by_created.rep_key(rep))
            .or_else(|| self.orders.by_time.rep_key(rep))
            .or_else(|| self.leads.by_created.rep_key(rep))
            .or_else(|| self.activities.lists().find_map(|l| l.rep_key(rep)))
            .or_else(|| self.inquiries.by_time.rep_key(rep))
            .or_else(|| self.csat.by_time.rep_key(rep))
    }

    /// The targets set for exactly `scope`, in dataset order.
    pub fn targets_of(&self, scope: &Scope) -> &[&'a Target] {
        let (kind, id) = target_key(scope);
        self.org
            .targets
            .get(kind)
            .and_then(|targets| targets.get(id))
            .map_or(&[], Vec::as_slice)
    }

    /// The rep's team at `t`: team of its latest membership with
    /// effective_at < t (ties: greatest id); `None` if none or it left all teams.
    pub fn team_at(&self, rep: &str, t: Instant) -> Option<&'a str> {
        let list = self.org.memberships.get(rep)?;
        let n = list.partition_point(|m| m.effective_at < t);
        list.get(n.checked_sub(1)?)?.team_id
    }

    /// The spans (after, until] during which `rep`'s team is in `teams`
    /// (`until` `None`: from `after` on), one per membership.
    pub fn team_spans(&self, rep: &str, teams: &HashSet<&str>) -> Vec<MembershipSpan> {
        let Some(list) = self.org.memberships.get(rep) else {
            return Vec::new();
        };
        list.iter()
            .enumerate()
            .filter(|(_, m)| m.team_id.is_some_and(|t| teams.contains(t)))
            .map(|(i, m)| {
                (
                    Some(m.effective_at),
                    list.get(i + 1).map(|n| n.effective_at),
                )
            })
            .collect()
    }

    /// The teams a rep is in "at some instant of P": its team at `start` and
    /// the team of each membership with effective_at in [start, end) that is
    /// in force at some instant. A membership tied (same effective_at) with a
    /// membership of the same rep with a greater id loses the tie at every
    /// instant, so it never puts the rep in its team (docs/kpis.md).
    pub fn teams_during(&self, rep: &str, start: Instant, end: Instant) -> Vec<&'a str> {
        let mut teams: Vec<&str> = self.team_at(rep, start).into_iter().collect();
        if let Some(list) = self.org.memberships.get(rep) {
            // Sorted by (effective_at, id): a tie's loser is followed by a
            // membership with the same effective_at.
            teams.extend(
                list.iter()
                    .enumerate()
                    .filter(|(_, m)| start <= m.effective_at && m.effective_at < end)
                    .filter(|(i, m)| {
                        list.get(i + 1)
                            .is_none_or(|next| next.effective_at != m.effective_at)
                    })
                    .filter_map(|(_, m)| m.team_id),
            );
        }
        teams
    }

    /// Team `team` and all its descendants in the current tree (cycle-safe).
    /// Empty when the team is unknown.
    pub fn subtree(&self, team: &str) -> HashSet<&'a str> {
        let mut seen = HashSet::default();
        let Some((&root, _)) = self.org.team_names.get_key_value(team) else {
            return seen;
        };
        let mut stack = vec![root];
        while let Some(t) = stack.pop() {
            if seen.insert(t)
                && let Some(kids) = self.org.children.get(t)
            {
                stack.extend(kids.iter().copied());
            }
        }
        seen
    }

    /// Whether a team id is a known team.
    pub fn team_exists(&self, team: &str) -> bool {
        self.org.team_names.contains_key(team)
    }

    /// Whether a rep id is known (Rep record, membership or any rep field).
    pub fn rep_exists(&self, rep: &str) -> bool {
        self.known_rep(rep).is_some()
    }

    /// Stage of a deal at `t`: its latest stage change with entered_at < t
    /// (ties: greatest id), else its `stage` field.
    pub fn stage_at(&self, deal: &'a Deal, t: Instant) -> Option<&'a str> {
        let list = self.deals.stage_changes.of(deal.id.as_str());
        let n = list.partition_point(|s| s.entered_at < t);
        if let Some(last) = n.checked_sub(1).and_then(|i| list.get(i)) {
            return Some(last.stage.as_str());
        }
        deal.stage.as_deref()
    }

    /// Every customer's MRR at `t` (customers with MRR 0 may be missing),
    /// straight from the subscriptions: the reference [`MrrTimeline`] is
    /// tested against.
    #[cfg(test)]
    pub fn customer_mrr_at(&self, t: Instant) -> HashMap<&'a str, i128> {
        let mut subscriptions: HashMap<&str, Vec<SubscriptionEntry>> = HashMap::default();
        for s in &self.customers.data.subscription_changes {
            subscriptions
                .entry(s.subscription_id.as_str())
                .or_default()
                .push(SubscriptionEntry {
                    effective_at: s.effective_at,
                    id: &s.id,
                    customer_id: &s.customer_id,
                    mrr: s.mrr,
                });
        }
        sort_lists(&mut subscriptions, |s| (s.effective_at, s.id));
        let mut out: HashMap<&str, i128> = HashMap::default();
        for list in subscriptions.values() {
            let n = list.partition_point(|s| s.effective_at < t);
            if let Some(s) = n.checked_sub(1).and_then(|i| list.get(i))
                && s.mrr > 0
            {
                *out.entry(s.customer_id).or_default() += i128::from(s.mrr);
            }
        }
        out
    }

    /// Whether the customer had MRR > 0 at some instant before `t`.
    pub fn had_mrr_before(&self, customer: &str, t: Instant) -> bool {
        self.customers
            .mrr
            .first_positive
            .get(customer)
            .is_some_and(|&first| first < t)
    }

    /// The owner rep of a customer (current value), if the customer is known.
    pub fn owner_of(&self, customer: &str) -> Option<&'a str> {
        self.customers.by_id.get(customer)?.owner_rep_id.as_deref()
    }
}

/// A scope resolved against an index: the team subtree is computed once.
#[derive(Debug, Clone)]
pub enum ResolvedScope<'a> {
    /// Every record.
    Company,
    /// Records whose rep's team at the attribution instant is in this set.
    Team(HashSet<&'a str>),
    /// Records whose rep field is this rep.
    Rep(String),
}

impl<'a> ResolvedScope<'a> {
    /// Resolves a scope (an unknown team has an empty subtree).
    pub fn new(index: &Index<'a>, scope: &Scope) -> Self {
        match scope {
            Scope::Company => ResolvedScope::Company,
            Scope::Team(t) => ResolvedScope::Team(index.subtree(t)),
            Scope::Rep(r) => ResolvedScope::Rep(r.clone()),
        }
    }

    /// Whether a record with rep field `rep`, attributed at `t`, counts (docs/kpis.md, *Scopes and attribution*).
    pub fn counts(&self, index: &Index<'a>, rep: Option<&str>, t: Instant) -> bool {
        match self {
            ResolvedScope::Company => true,
            ResolvedScope::Rep(r) => rep == Some(r.as_str()),
            ResolvedScope::Team(teams) => rep
                .and_then(|rep| index.team_at(rep, t))
                .is_some_and(|team| teams.contains(team)),
        }
    }

    /// Whether a customer counts at `t` (through its current owner).
    pub fn counts_customer(&self, index: &Index<'a>, customer: &str, t: Instant) -> bool {
        match self {
            ResolvedScope::Company => true,
            _ => self.counts(index, index.owner_of(customer), t),
        }
    }
}

/// Records from which an index is built on parallel threads: below it,
/// starting threads costs more than it saves.
const PARALLEL_FROM: usize = 20_000;

/// Whether `data` is large enough to index on parallel threads.
fn worth_parallel(data: &Dataset) -> bool {
    let records = data.orders.len()
        + data.deals.len()
        + data.deal_stage_changes.len()
        + data.leads.len()
        + data.activities.len()
        + data.customers.len()
        + data.subscription_changes.len()
        + data.inquiries.len()
        + data.csat_responses.len();
    records >= PARALLEL_FROM
}

/// Runs `a` and `b`, on two threads when `parallel` (then a panic in
/// either is passed on), else one after the other.
pub(crate) fn both<A: Send, B: Send>(
    parallel: bool,
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    if !parallel {
        return (a(), b());
    }
    std::thread::scope(|s| {
        let b = s.spawn(b);
        let a = a();
        let b = b.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        (a, b)
    })
}

/// Sorts each list of `map` by `key`.
fn sort_lists<K, V, O: Ord>(map: &mut HashMap<K, Vec<V>>, key: impl Fn(&V) -> O) {
    for list in map.values_mut() {
        list.sort_by_key(|v| key(v));
    }
}

impl<'a> OrgIndex<'a> {
    /// Indexes the teams, memberships, reps, targets and spend of `data`.
    pub fn new(data: &'a Dataset) -> Self {
        let mut memberships: HashMap<&str, Vec<MembershipEntry>> = HashMap::default();
        for m in &data.team_memberships {
            memberships
                .entry(m.rep_id.as_str())
                .or_default()
                .push(MembershipEntry {
                    effective_at: m.effective_at,
                    id: &m.id,
                    team_id: m.team_id.as_deref(),
                });
        }
        sort_lists(&mut memberships, |m| (m.effective_at, m.id));
        let team_names: HashMap<&str, &str> = data
            .teams
            .iter()
            .map(|t| (t.id.as_str(), t.name.as_str()))
            .collect();
        let (children, roots) = team_tree(data, &team_names);
        let mut targets: [HashMap<&str, Vec<&Target>>; 3] = Default::default();
        let mut reps: HashSet<&str> = HashSet::default();
        for t in &data.targets {
            let (kind, id) = match &t.scope {
                TargetScope::Company => (0, ""),
                TargetScope::Team(team) => (1, team.as_str()),
                TargetScope::Rep(rep) => {
                    reps.insert(rep.as_str());
                    (2, rep.as_str())
                }
            };
            targets[kind].entry(id).or_default().push(t);
        }
        reps.extend(data.reps.iter().map(|r| r.id.as_str()));
        reps.extend(memberships.keys().copied());
        OrgIndex {
            data,
            memberships,
            team_names,
            children,
            roots,
            rep_names: data
                .reps
                .iter()
                .map(|r| (r.id.as_str(), r.name.as_str()))
                .collect(),
            reps,
            targets,
        }
    }
}

impl<'a> CustomerIndex<'a> {
    /// Indexes the customers and subscription changes of `data`.
    pub fn new(data: &'a Dataset) -> Self {
        let owner = |c: &'a Customer| c.owner_rep_id.as_deref();
        let by_acquired = ByTime::with_reps(data.customers.iter(), |c| Some(c.acquired_at), owner);
        let by_churned = ByTime::with_reps(data.customers.iter(), |c| c.churned_at, owner);
        CustomerIndex {
            data,
            by_id: data.customers.iter().map(|c| (c.id.as_str(), c)).collect(),
            by_owner: group_by_rep(&data.customers, owner),
            mrr: MrrTimeline::new(data),
            acquired: sums(&by_acquired, |_: &Customer| []),
            churned: sums(&by_churned, |_: &Customer| []),
            active_customers: active_customers(data),
            by_acquired,
            by_churned,
        }
    }
}

impl<'a> DealIndex<'a> {
    /// Indexes the deals and deal stage changes of `data`.
    pub fn new(data: &'a Dataset) -> Self {
        let stage_changes = StageChanges::new(&data.deal_stage_changes);
        let owner = |d: &'a Deal| d.owner_rep_id.as_deref();
        let by_created = ByTime::with_reps(data.deals.iter(), |d| Some(d.created_at), owner);
        let by_closed = ByTime::with_reps(data.deals.iter(), |d| d.closed_at, owner);
        let rollups = DealRollups::new(data, &by_created, &by_closed, &stage_changes);
        DealIndex {
            data,
            by_id: data.deals.iter().map(|d| (d.id.as_str(), d)).collect(),
            by_owner: group_by_rep(&data.deals, owner),
            stage_changes,
            by_created,
            by_closed,
            rollups,
        }
    }
}

impl<'a> OrderIndex<'a> {
    /// Indexes the orders of `data`.
    pub fn new(data: &'a Dataset) -> Self {
        let rep = |o: &'a Order| o.rep_id.as_deref();
        let by_time = ByTime::with_reps(data.orders.iter(), |o| Some(o.ordered_at), rep);
        OrderIndex {
            rollups: OrderRollups::new(data, &by_time),
            by_time,
        }
    }
}

impl<'a> LeadIndex<'a> {
    /// Indexes the leads of `data`.
    pub fn new(data: &'a Dataset) -> Self {
        let owner = |l: &'a Lead| l.owner_rep_id.as_deref();
        let by_created = ByTime::with_reps(data.leads.iter(), |l| Some(l.created_at), owner);
        LeadIndex {
            figures: sums(&by_created, lead_figures),
            by_source: leads_by_source(data),
            by_created,
        }
    }
}

impl<'a> ActivityIndex<'a> {
    /// Indexes the activities of `data`.
    pub fn new(data: &'a Dataset) -> Self {
        ActivityIndex {
            by_type: activity_rollups(data),
        }
    }

    /// The per-type lists of activities by occurred_at.
    pub fn lists(&self) -> impl Iterator<Item = &ByTime<'a, Activity>> + '_ {
        self.by_type.iter().map(|(by_time, _)| by_time)
    }
}

impl<'a> InquiryIndex<'a> {
    /// Indexes the inquiries of `data`.
    pub fn new(data: &'a Dataset) -> Self {
        let rep = |i: &'a Inquiry| i.rep_id.as_deref();
        let by_time = ByTime::with_reps(data.inquiries.iter(), |i| Some(i.received_at), rep);
        InquiryIndex {
            figures: sums(&by_time, |i: &Inquiry| {
                response(i.received_at, i.first_response_at)
            }),
            by_time,
        }
    }
}

impl<'a> CsatIndex<'a> {
    /// Indexes the CSAT responses of `data`.
    pub fn new(data: &'a Dataset) -> Self {
        let rep = |c: &'a CsatResponse| c.rep_id.as_deref();
        let by_time = ByTime::with_reps(data.csat_responses.iter(), |c| Some(c.responded_at), rep);
        CsatIndex {
            figures: sums(&by_time, csat_figures),
            by_time,
        }
    }
}

/// Records grouped by a rep field (records without one are left out).
fn group_by_rep<'a, T>(
    records: &'a [T],
    rep_of: impl Fn(&'a T) -> Option<&'a str>,
) -> HashMap<&'a str, Vec<&'a T>> {
    let mut out: HashMap<&'a str, Vec<&'a T>> = HashMap::default();
    for record in records {
        if let Some(rep) = rep_of(record) {
            out.entry(rep).or_default().push(record);
        }
    }
    out
}

/// Children map and roots of the current team tree. A team whose parent is
/// absent or unknown is a root; teams on a parent cycle (which ingest rejects,
/// but stored data is not trusted blindly) are made roots too, so every team
/// is reachable exactly once.
fn team_tree<'a>(
    data: &'a Dataset,
    names: &HashMap<&'a str, &'a str>,
) -> (HashMap<&'a str, Vec<&'a str>>, Vec<&'a str>) {
    let parent: HashMap<&str, &str> = data
        .teams
        .iter()
        .filter_map(|t| {
            let p = t.parent_team_id.as_deref()?;
            (names.contains_key(p) && p != t.id).then_some((t.id.as_str(), p))
        })
        .collect();
    let mut children: HashMap<&str, Vec<&str>> = HashMap::default();
    let mut roots = Vec::new();
    for t in &data.teams {
        let id = t.id.as_str();
        // On a cycle ⇔ walking up the parents comes back to this team.
        let on_cycle = {
            let mut seen = HashSet::default();
            let mut cur = id;
            let mut cycle = false;
            while let Some(&p) = parent.get(cur) {
                if p == id {
                    cycle = true;
                    break;
                }
                if !seen.insert(p) {
                    break;
                }
                cur = p;
            }
            cycle
        };
        match parent.get(id) {
            Some(&p) if !on_cycle => children.entry(p).or_default().push(id),
            _ => roots.push(id),
        }
    }
    for kids in children.values_mut() {
        kids.sort_unstable();
        kids.dedup();
    }
    roots.sort_unstable();
    roots.dedup();
    (children, roots)
}

/// One change of a customer's MRR, in [`MrrTimeline`]'s list of changes.
#[derive(Debug, Clone, Copy)]
struct Move {
    /// MRR just before.
    was: i128,
    /// MRR from just after.
    now: i128,
    /// 1 + the position of the customer's previous change (0: none).
    prev: u32,
    /// The position of the customer's next change (`u32::MAX`: none).
    next: u32,
    /// Whether the customer's MRR was ever > 0 before this change.
    paid_before: bool,
}

/// Every customer's MRR over time, from the subscription changes: a
/// subscription counts for the customer named by its change in force, and a
/// change is in force strictly after its effective_at (ties: greatest id).
#[derive(Debug, Default)]
pub struct MrrTimeline<'a> {
    /// Per customer: (instant, MRR from just after that instant), sorted.
    per_customer: HashMap<&'a str, Vec<(Instant, i128)>>,
    /// First instant after which each customer's MRR was > 0.
    first_positive: HashMap<&'a str, Instant>,
    /// Every customer's changes.
    all: MrrChanges<'a>,
    /// The changes of the customers of each owner rep (a customer's owner is
    /// its record's current owner_rep_id).
    by_owner: HashMap<&'a str, MrrChanges<'a>>,
}

/// Changes of the MRR of a set of customers, in time order, with running
/// totals.
#[derive(Debug, Default)]
pub struct MrrChanges<'a> {
    /// (instant, customer) whenever a customer's MRR changes, by instant.
    changes: Vec<(Instant, &'a str)>,
    /// Per entry of `changes`: the customer's MRR before and after, and
    /// links to its previous and next change.
    moves: Vec<Move>,
    /// Per entry of `changes`: (instant, total MRR, customers with MRR > 0)
    /// from just after it.
    totals: Vec<(Instant, i128, i128)>,
}

impl<'a> MrrChanges<'a> {
    fn push(&mut self, at: Instant, customer: &'a str, m: Move) {
        let (total, paying) = self.totals.last().map_or((0, 0), |&(_, t, p)| (t, p));
        let total = total + m.now - m.was;
        let paying = paying + i128::from(m.now > 0) - i128::from(m.was > 0);
        self.changes.push((at, customer));
        self.moves.push(m);
        self.totals.push((at, total, paying));
    }

    /// Links each change to the customer's previous and next one.
    fn link(&mut self) {
        let mut last: HashMap<&str, usize> = HashMap::default();
        for (i, &(_, customer)) in self.changes.iter().enumerate() {
            if let Some(p) = last.insert(customer, i) {
                self.moves[i].prev = u32::try_from(p + 1).unwrap_or(u32::MAX);
                self.moves[p].next = u32::try_from(i).unwrap_or(u32::MAX);
            }
        }
    }

    /// Each customer whose MRR changes at some instant of [start, end),
    /// once: (MRR at start, MRR at end, whether its MRR was > 0 at some
    /// instant before start). Costs the number of changes in the period.
    pub fn movements(
        &self,
        start: Instant,
        end: Instant,
    ) -> impl Iterator<Item = (i128, i128, bool)> + '_ {
        let lo = self.changes.partition_point(|(t, _)| *t < start);
        let hi = self.changes.partition_point(|(t, _)| *t < end).max(lo);
        let moves = self.moves.get(lo..hi).unwrap_or_default();
        moves
            .iter()
            .filter(move |m| m.prev as usize <= lo)
            .map(move |first| {
                let mut last = first;
                while let Some(next) = self.moves.get(last.next as usize)
                    && (last.next as usize) < hi
                {
                    last = next;
                }
                (first.was, last.now, first.paid_before)
            })
    }

    /// (Σ MRR, customers with MRR > 0) at `t`.
    pub fn totals_at(&self, t: Instant) -> (i128, i128) {
        let n = self.totals.partition_point(|(at, _, _)| *at < t);
        n.checked_sub(1)
            .map_or((0, 0), |i| (self.totals[i].1, self.totals[i].2))
    }
}

impl<'a> MrrTimeline<'a> {
    /// Replays every subscription change in (effective_at, id) order, one
    /// instant at a time.
    pub fn new(data: &'a Dataset) -> Self {
        let mut changes: Vec<_> = data.subscription_changes.iter().collect();
        changes.sort_by(|a, b| (a.effective_at, &a.id).cmp(&(b.effective_at, &b.id)));
        // subscription -> (customer, mrr) currently in force.
        let mut current: HashMap<&str, (&str, i64)> = HashMap::default();
        let mut mrr: HashMap<&str, i128> = HashMap::default();
        let mut timeline = MrrTimeline::default();
        let owners: HashMap<&str, &str> = data
            .customers
            .iter()
            .filter_map(|c| Some((c.id.as_str(), c.owner_rep_id.as_deref()?)))
            .collect();
        let mut changes = changes.into_iter().peekable();
        while let Some(head) = changes.next() {
            let at = head.effective_at;
            let mut touched: Vec<&str> = Vec::new();
            let mut before: HashMap<&str, i128> = HashMap::default();
            let mut group = vec![head];
            while let Some(c) = changes.next_if(|c| c.effective_at == at) {
                group.push(c);
            }
            for c in group {
                let new = (c.customer_id.as_str(), c.mrr);
                let old = current.insert(&c.subscription_id, new);
                for (customer, delta) in old
                    .map(|(customer, m)| (customer, -i128::from(m)))
                    .into_iter()
                    .chain([(new.0, i128::from(new.1))])
                {
                    let value = mrr.entry(customer).or_default();
                    before.entry(customer).or_insert_with(|| {
                        touched.push(customer);
                        *value
                    });
                    *value += delta;
                }
            }
            for customer in touched {
                let (was, now) = (before[customer], mrr[customer]);
                if was == now {
                    continue;
                }
                let paid_before = timeline
                    .first_positive
                    .get(customer)
                    .is_some_and(|&f| f < at);
                if now > 0 {
                    timeline.first_positive.entry(customer).or_insert(at);
                }
                timeline
                    .per_customer
                    .entry(customer)
                    .or_default()
                    .push((at, now));
                let m = Move {
                    was,
                    now,
                    prev: 0,
                    next: u32::MAX,
                    paid_before,
                };
                timeline.all.push(at, customer, m);
                if let Some(owner) = owners.get(customer) {
                    timeline
                        .by_owner
                        .entry(owner)
                        .or_default()
                        .push(at, customer, m);
                }
            }
        }
        timeline.all.link();
        for changes in timeline.by_owner.values_mut() {
            changes.link();
        }
        timeline
    }

    /// Every customer's changes.
    pub fn all(&self) -> &MrrChanges<'a> {
        &self.all
    }

    /// The changes of the customers an owner rep owns (none: `None`).
    pub fn of_owner(&self, rep: &str) -> Option<&MrrChanges<'a>> {
        self.by_owner.get(rep)
    }

    /// A customer's MRR at `t` (0 for a customer without subscriptions).
    pub fn mrr_of(&self, customer: &str, t: Instant) -> i128 {
        let Some(points) = self.per_customer.get(customer) else {
            return 0;
        };
        let n = points.partition_point(|(at, _)| *at < t);
        n.checked_sub(1).map_or(0, |i| points[i].1)
    }

    /// (Σ MRR of every customer, customers with MRR > 0) at `t`.
    pub fn totals_at(&self, t: Instant) -> (i128, i128) {
        self.all.totals_at(t)
    }

    /// Every customer that ever had a subscription change.
    pub fn customers(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.per_customer.keys().copied()
    }
}
