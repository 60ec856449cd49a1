//! Rollups: prefix sums built with a tenant's snapshot, so an additive
//! figure of a period (a count, an amount, a duration) is two binary searches
//! and a subtraction instead of a scan of the period's records, and a stock
//! at an instant (deals open, customers active) is one binary search instead
//! of a scan of the tenant's whole history.
//!
//! Everything here is exact integer arithmetic, and every rollup exists for
//! the whole tenant and per rep, the same split as [`ByTime`]: COMPANY reads
//! the tenant's lists, REP its rep's, and TEAM the lists of its reps, over
//! the spans of time during which each rep belonged to the team's subtree.

use std::ops::Range;

use rustc_hash::FxHashMap as HashMap;

use crate::domain::{
    Activity, ActivityType, CsatResponse, Dataset, Deal, DealStageChange, DealStatus, Instant,
    Lead, Order, OrderKind,
};

use super::index::{ByTime, List};
use crate::heap::HeapBytes;

/// Figures of one record, or their sum over several.
pub type Figures<const N: usize> = [i128; N];

/// Adds `b` to `a`, figure by figure.
pub fn add<const N: usize>(a: &mut Figures<N>, b: &Figures<N>) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

fn sub<const N: usize>(a: &Figures<N>, b: &Figures<N>) -> Figures<N> {
    let mut out = *a;
    for (x, y) in out.iter_mut().zip(b) {
        *x -= y;
    }
    out
}

/// Prefix sums of `figures` over a sorted list: `out[i]` is the sum of the
/// first `i` entries.
fn prefix<X, const N: usize>(
    items: &[(Instant, X)],
    figures: impl Fn(&X) -> Figures<N>,
) -> Vec<Figures<N>> {
    let mut out = Vec::with_capacity(items.len() + 1);
    let mut running = [0i128; N];
    out.push(running);
    for (_, x) in items {
        add(&mut running, &figures(x));
        out.push(running);
    }
    out
}

/// Positions of a list between two prefix sums kept by [`Sums`].
pub const SUM_BLOCK: usize = 16;

/// The prefix sums of `figures` over a sorted list kept every
/// [`SUM_BLOCK`] positions: `out[k]` is the sum of the first
/// k × `SUM_BLOCK` entries, for every k × `SUM_BLOCK` ≤ the list's length.
fn kept_prefix<T, const N: usize>(
    items: List<'_, '_, T>,
    figures: fn(&T) -> Figures<N>,
) -> Vec<Figures<N>> {
    let mut out = Vec::with_capacity(items.len() / SUM_BLOCK + 1);
    let mut running = [0i128; N];
    for (i, x) in items.records().enumerate() {
        if i.is_multiple_of(SUM_BLOCK) {
            out.push(running);
        }
        add(&mut running, &figures(x));
    }
    if items.len().is_multiple_of(SUM_BLOCK) {
        out.push(running);
    }
    out
}

/// The instants that count for a windowed figure: start ≤ t < end, and, for
/// a rep's records under a TEAM scope, after < t ≤ until (the span during
/// which the rep's team was in the subtree; `None`: unbounded).
#[derive(Debug, Clone, Copy)]
pub struct Span {
    /// Inclusive start of the period.
    pub start: Instant,
    /// Exclusive end of the period.
    pub end: Instant,
    /// Exclusive lower bound of a membership span.
    pub after: Option<Instant>,
    /// Inclusive upper bound of a membership span.
    pub until: Option<Instant>,
}

impl Span {
    /// The period [start, end) alone.
    pub fn period(start: Instant, end: Instant) -> Self {
        Span {
            start,
            end,
            after: None,
            until: None,
        }
    }

    /// The positions of a sorted list whose instants count.
    pub fn positions<T>(&self, items: List<'_, '_, T>) -> Range<usize> {
        let mut lo = items.partition_point(|t| t < self.start);
        if let Some(a) = self.after {
            lo = lo.max(items.partition_point(|t| t <= a));
        }
        let mut hi = items.partition_point(|t| t < self.end);
        if let Some(b) = self.until {
            hi = hi.min(items.partition_point(|t| t <= b));
        }
        lo..hi.max(lo)
    }
}

/// One value per record of a [`ByTime`] list and of each of its per-rep
/// lists, in the same order: read by the positions of a span.
#[derive(Debug)]
pub struct Aligned<'a, V> {
    all: Vec<V>,
    by_rep: HashMap<&'a str, Vec<V>>,
}

impl<'a, V> Aligned<'a, V> {
    /// Computes the values of each list with `values` (given the whole list).
    pub fn new<T>(
        by_time: &ByTime<'a, T>,
        mut values: impl FnMut(List<'_, 'a, T>) -> Vec<V>,
    ) -> Self {
        Aligned {
            all: values(by_time.list(None)),
            by_rep: by_time
                .rep_lists()
                .map(|(rep, items)| (rep, values(items)))
                .collect(),
        }
    }

    /// The values of every record (`rep` `None`) or of one rep's records.
    pub fn list(&self, rep: Option<&str>) -> &[V] {
        match rep {
            None => &self.all,
            Some(rep) => self.by_rep.get(rep).map_or(&[], Vec::as_slice),
        }
    }
}

/// Sums of N figures of the records of a [`ByTime`] list and of each of its
/// per-rep lists, over any range of positions: the prefix sums kept every
/// [`SUM_BLOCK`] positions, plus the figures of the at most
/// `SUM_BLOCK` − 1 records between a kept sum and each end of the range,
/// worked out when read. A prefix sum per record would cost
/// `SUM_BLOCK` times the memory for the same exact answer.
#[derive(Debug)]
pub struct Sums<'a, T, const N: usize> {
    kept: Aligned<'a, Figures<N>>,
    figures: fn(&T) -> Figures<N>,
}

/// Sums `figures` of each record of `by_time`.
pub fn sums<'a, T, const N: usize>(
    by_time: &ByTime<'a, T>,
    figures: fn(&T) -> Figures<N>,
) -> Sums<'a, T, N> {
    Sums {
        kept: Aligned::new(by_time, |items| kept_prefix(items, figures)),
        figures,
    }
}

impl<'a, T, const N: usize> Sums<'a, T, N> {
    /// The sums of the records at `positions` of `by_time` (the list these
    /// sums were built over), of all records (`rep` `None`) or of `rep`'s.
    pub fn range(
        &self,
        by_time: &ByTime<'a, T>,
        rep: Option<&str>,
        positions: &Range<usize>,
    ) -> Figures<N> {
        let items = by_time.list(rep);
        let (start, end) = (positions.start, positions.end.min(items.len()));
        if start >= end {
            return [0; N];
        }
        if end - start <= 2 * SUM_BLOCK {
            return self.add_up(items, start..end, [0; N]);
        }
        let kept = self.kept.list(rep);
        sub(
            &self.prefix_at(kept, items, end),
            &self.prefix_at(kept, items, start),
        )
    }

    /// The sum of the first `i` records of `items`.
    fn prefix_at(&self, kept: &[Figures<N>], items: List<'_, 'a, T>, i: usize) -> Figures<N> {
        let block = i / SUM_BLOCK;
        let base = kept.get(block).copied().unwrap_or([0; N]);
        self.add_up(items, block * SUM_BLOCK..i, base)
    }

    /// `total` plus the figures of the records at `positions` of `items`.
    fn add_up(
        &self,
        items: List<'_, 'a, T>,
        positions: Range<usize>,
        mut total: Figures<N>,
    ) -> Figures<N> {
        for i in positions {
            if let Some(record) = items.record(i) {
                add(&mut total, &(self.figures)(record));
            }
        }
        total
    }
}

/// A stock over time: each record adds its figures over (from, to] spans
/// (`to` `None`: for ever), and the value at T sums the spans with
/// from < T ≤ to. Stored as signed changes at instants, sorted, with prefix
/// sums: the value at T is the sum of the changes at instants < T.
#[derive(Debug, Default)]
pub struct Stock<const N: usize> {
    /// The instants of the changes, sorted.
    times: Vec<Instant>,
    /// `prefix[i]`: the sum of the first `i` changes.
    prefix: Vec<Figures<N>>,
}

impl<const N: usize> Stock<N> {
    fn new(mut changes: Vec<(Instant, Figures<N>)>) -> Self {
        changes.sort_by_key(|(t, _)| *t);
        let prefix = prefix(&changes, |f| *f);
        Stock {
            times: changes.into_iter().map(|(t, _)| t).collect(),
            prefix,
        }
    }

    /// The value at `t`.
    pub fn at(&self, t: Instant) -> Figures<N> {
        let n = self.times.partition_point(|at| *at < t);
        self.prefix.get(n).copied().unwrap_or([0; N])
    }
}

/// A [`Stock`] of the whole tenant and one per rep.
#[derive(Debug, Default)]
pub struct Stocks<'a, const N: usize> {
    all: Stock<N>,
    by_rep: HashMap<&'a str, Stock<N>>,
}

/// Collects the (from, to] spans of records for a [`Stocks`].
pub struct StocksBuilder<'a, const N: usize> {
    all: Vec<(Instant, Figures<N>)>,
    by_rep: HashMap<&'a str, Vec<(Instant, Figures<N>)>>,
}

impl<'a, const N: usize> Default for StocksBuilder<'a, N> {
    fn default() -> Self {
        StocksBuilder {
            all: Vec::new(),
            by_rep: HashMap::default(),
        }
    }
}

impl<'a, const N: usize> StocksBuilder<'a, N> {
    /// Adds `figures` over (from, to] for the tenant and for `rep`. An empty
    /// span (to ≤ from) adds nothing.
    pub fn span(
        &mut self,
        rep: Option<&'a str>,
        from: Instant,
        to: Option<Instant>,
        figures: Figures<N>,
    ) {
        if to.is_some_and(|to| to <= from) {
            return;
        }
        let minus = figures.map(|x| -x);
        let push = |list: &mut Vec<(Instant, Figures<N>)>| {
            list.push((from, figures));
            if let Some(to) = to {
                list.push((to, minus));
            }
        };
        push(&mut self.all);
        if let Some(rep) = rep {
            push(self.by_rep.entry(rep).or_default());
        }
    }

    /// The stocks.
    pub fn build(self) -> Stocks<'a, N> {
        Stocks {
            all: Stock::new(self.all),
            by_rep: self
                .by_rep
                .into_iter()
                .map(|(rep, changes)| (rep, Stock::new(changes)))
                .collect(),
        }
    }
}

impl<const N: usize> Stocks<'_, N> {
    /// The value at `t` of the whole tenant (`rep` `None`) or of one rep.
    pub fn at(&self, rep: Option<&str>, t: Instant) -> Figures<N> {
        match rep {
            None => self.all.at(t),
            Some(rep) => self.by_rep.get(rep).map_or([0; N], |s| s.at(t)),
        }
    }
}

crate::heap_fields! {
    OrderRollups<'_> => amounts, links;
    DealRollups<'_> => closed, created, open_deals, open_by_stage, stage_labels, created_stages;
}

impl<V: HeapBytes> HeapBytes for Aligned<'_, V> {
    fn heap_bytes(&self) -> usize {
        self.all.heap_bytes() + self.by_rep.heap_bytes()
    }
}

impl<T, const N: usize> HeapBytes for Sums<'_, T, N> {
    fn heap_bytes(&self) -> usize {
        self.kept.heap_bytes()
    }
}

impl HeapBytes for StageChanges<'_> {
    fn heap_bytes(&self) -> usize {
        self.changes.heap_bytes() + self.by_deal.heap_bytes()
    }
}

impl<const N: usize> HeapBytes for Stock<N> {
    fn heap_bytes(&self) -> usize {
        self.times.heap_bytes() + self.prefix.heap_bytes()
    }
}

impl<const N: usize> HeapBytes for Stocks<'_, N> {
    fn heap_bytes(&self) -> usize {
        self.all.heap_bytes() + self.by_rep.heap_bytes()
    }
}

crate::heap_plain!(OrderLink);

/// Nanoseconds between two instants.
pub fn nanos_between(from: Instant, to: Instant) -> i128 {
    let d = to.signed_duration_since(from);
    i128::from(d.num_seconds()) * 1_000_000_000 + i128::from(d.subsec_nanos())
}

/// Lowest and highest CSAT score a response may have: the CSAT rollup counts
/// responses with a score of at least each of them.
pub const CSAT_SCORES: std::ops::RangeInclusive<i32> = 1..=5;

/// The bit of [`DealRollups::created_stages`] that marks a deal with a stage
/// beyond the first [`STAGE_BITS`] names: its stages are read from its
/// history instead.
pub const STAGES_OVERFLOW: u64 = 1 << 63;

/// The bit of [`DealRollups::created_stages`] that marks a WON deal.
pub const STAGES_WON: u64 = 1 << 62;

/// Stage names with a bit of their own in [`DealRollups::created_stages`].
pub const STAGE_BITS: usize = 62;

/// One order's entry in [`OrderRollups::links`].
#[derive(Debug, Clone, Copy)]
pub struct OrderLink {
    /// 1 + the position of the same customer's previous order (0: none).
    pub prev_any: u32,
    /// The same among UPSELL/CROSS_SELL orders.
    pub prev_more: u32,
    /// The customer, as a number below [`OrderRollups::customers`].
    pub customer: u32,
}

/// An [`OrderRollups::links`] value that no range start reaches.
pub const NO_LINK: u32 = u32::MAX;

/// Per activity type (`ActivityType as usize`): its activities by
/// occurred_at and [Σ duration_seconds] over them.
pub(crate) fn activity_rollups(
    data: &Dataset,
) -> Vec<(ByTime<'_, Activity>, Sums<'_, Activity, 1>)> {
    // One pass over the records (the largest family) groups them by type.
    let mut of_type: Vec<Vec<&Activity>> = vec![Vec::new(); ActivityType::ALL.len()];
    for a in &data.activities {
        if let Some(list) = of_type.get_mut(a.activity_type as usize) {
            list.push(a);
        }
    }
    of_type
        .into_iter()
        .map(|activities| {
            let by_time = ByTime::with_reps(
                activities.into_iter(),
                |a| Some(a.occurred_at),
                |a| Some(a.rep_id.as_str()),
            );
            let seconds = sums(&by_time, |a: &Activity| {
                [i128::from(a.duration_seconds.unwrap_or(0))]
            });
            (by_time, seconds)
        })
        .collect()
}

/// Per lead source: its leads by created_at and their lead figures.
pub(crate) fn leads_by_source(
    data: &Dataset,
) -> HashMap<&str, (ByTime<'_, Lead>, Sums<'_, Lead, 3>)> {
    let mut by_source: HashMap<&str, Vec<&Lead>> = HashMap::default();
    for l in &data.leads {
        by_source.entry(l.source.as_str()).or_default().push(l);
    }
    by_source
        .into_iter()
        .map(|(source, leads)| {
            let by_time = ByTime::with_reps(
                leads.into_iter(),
                |l| Some(l.created_at),
                |l| l.owner_rep_id.as_deref(),
            );
            let figures = sums(&by_time, lead_figures);
            (source, (by_time, figures))
        })
        .collect()
}

/// The order rollups.
#[derive(Debug)]
pub struct OrderRollups<'a> {
    /// Orders by ordered_at: [Σ amount].
    pub amounts: Sums<'a, Order, 1>,
    /// Per order of the orders-by-time list: (1 + the position in the same
    /// list of the previous order of the same customer, the same among
    /// UPSELL/CROSS_SELL orders), 0 for none: the first order of a customer
    /// in a range of positions is the one whose link is ≤ the range's start.
    /// [`NO_LINK`] for an order without a customer (both) or that is not an
    /// UPSELL/CROSS_SELL (the second), which is never a first.
    pub links: Aligned<'a, OrderLink>,
    /// The number of distinct customers named by orders (the bound of
    /// [`OrderLink::customer`]).
    pub customers: usize,
}

impl<'a> OrderRollups<'a> {
    /// The rollups of `data`'s orders over their list by ordered_at.
    pub fn new(data: &'a Dataset, orders: &ByTime<'a, Order>) -> Self {
        // Each order's customer as a number, and whether the order is an
        // upsell, looked up once in the records' own order.
        let mut customer_numbers: HashMap<&'a str, u32> = HashMap::default();
        let keys: Vec<Option<(u32, bool)>> = data
            .orders
            .iter()
            .map(|o| {
                let c = o.customer_id.as_deref()?;
                let next = u32::try_from(customer_numbers.len()).unwrap_or(u32::MAX);
                Some((*customer_numbers.entry(c).or_insert(next), is_upsell(o)))
            })
            .collect();
        let key = |o: &Order| {
            precomputed(&data.orders, &keys, o, |o| {
                o.customer_id
                    .as_deref()
                    .and_then(|c| customer_numbers.get(c))
                    .map(|&n| (n, is_upsell(o)))
            })
        };
        // Per customer: 1 + the position of its last order so far, and of
        // its last upsell; reset after each list.
        let mut last: Vec<(u32, u32)> = vec![(0, 0); customer_numbers.len()];
        let links = Aligned::new(orders, |items| {
            let links: Vec<OrderLink> = items
                .records()
                .enumerate()
                .map(|(i, o)| {
                    let entry = key(o).and_then(|(number, upsell)| {
                        Some((number, upsell, last.get_mut(number as usize)?))
                    });
                    let Some((number, upsell, entry)) = entry else {
                        return OrderLink {
                            prev_any: NO_LINK,
                            prev_more: NO_LINK,
                            customer: 0,
                        };
                    };
                    let here = u32::try_from(i + 1).unwrap_or(NO_LINK);
                    let (prev_any, prev_more) = *entry;
                    entry.0 = here;
                    if upsell {
                        entry.1 = here;
                    }
                    OrderLink {
                        prev_any,
                        prev_more: if upsell { prev_more } else { NO_LINK },
                        customer: number,
                    }
                })
                .collect();
            for link in links.iter().filter(|l| l.prev_any != NO_LINK) {
                if let Some(entry) = last.get_mut(link.customer as usize) {
                    *entry = (0, 0);
                }
            }
            links
        });
        OrderRollups {
            links,
            customers: customer_numbers.len(),
            amounts: sums(orders, |o: &Order| [i128::from(o.amount)]),
        }
    }
}

/// The value worked out for `record` in `values` (one per record of
/// `records`, in their order), found by the record's position; `compute`
/// for a record that is not one of `records`.
fn precomputed<T, V: Copy>(
    records: &[T],
    values: &[V],
    record: &T,
    compute: impl FnOnce(&T) -> V,
) -> V {
    position_in(records, record)
        .and_then(|i| values.get(i).copied())
        .unwrap_or_else(|| compute(record))
}

/// The position of `record` in `records`, when it is one of them (found
/// from its address: no comparison of fields).
fn position_in<T>(records: &[T], record: &T) -> Option<usize> {
    let size = std::mem::size_of::<T>();
    let offset = (record as *const T as usize).checked_sub(records.as_ptr() as usize)?;
    (size > 0 && offset % size == 0)
        .then_some(offset / size)
        .filter(|&i| i < records.len())
}

/// The deal rollups.
#[derive(Debug)]
pub struct DealRollups<'a> {
    /// Deals by closed_at: [won, Σ won amount, Σ won closed_at − created_at
    /// in nanoseconds, lost].
    pub closed: Sums<'a, Deal, 4>,
    /// Deals by created_at: the count alone.
    pub created: Sums<'a, Deal, 0>,
    /// Deals open, per owner: [count, Σ amount]. A deal is open over
    /// (created_at, closed_at] when WON/LOST with a close instant, and over
    /// (created_at, ∞) otherwise.
    pub open_deals: Stocks<'a, 2>,
    /// Σ amount of open deals per stage at an instant, by stage name (the
    /// stage at T is that of the latest stage change entered before T, else
    /// the deal's own stage).
    pub open_by_stage: HashMap<&'a str, Stocks<'a, 1>>,
    /// A bit per stage name seen in the deals and their stage changes (the
    /// first [`STAGE_BITS`] names; see [`STAGES_OVERFLOW`]).
    pub stage_labels: HashMap<&'a str, u32>,
    /// Per deal of the deals-by-created_at list: the bits of every stage it
    /// was ever in (its own and its changes'), and [`STAGES_WON`], for the
    /// funnel.
    pub created_stages: Aligned<'a, u64>,
}

/// Stage changes per deal, each deal's sorted by (entered_at, id): one
/// list of references grouped by deal, and per deal id the run of its
/// changes in that list (a list per deal would cost a header and an
/// allocation per deal, and a copy of each change's fields).
#[derive(Debug, Default)]
pub struct StageChanges<'a> {
    /// Every change, grouped by deal.
    changes: Vec<&'a DealStageChange>,
    /// Per deal id: (first position, count) of its changes in `changes`.
    by_deal: HashMap<&'a str, (u32, u32)>,
}

impl<'a> StageChanges<'a> {
    /// Groups `changes` by deal and sorts each deal's by (entered_at, id).
    pub fn new(changes: &'a [DealStageChange]) -> Self {
        let Some(first) = changes.first() else {
            return StageChanges::default();
        };
        let mut by_deal: HashMap<&'a str, (u32, u32)> = HashMap::default();
        for c in changes {
            by_deal.entry(c.deal_id.as_str()).or_default().1 += 1;
        }
        // Each deal's run starts where the previous deal's ends; its count
        // then counts the changes placed so far.
        let mut start = 0u32;
        for run in by_deal.values_mut() {
            let count = run.1;
            *run = (start, 0);
            start = start.saturating_add(count);
        }
        let mut grouped: Vec<&'a DealStageChange> = vec![first; changes.len()];
        for c in changes {
            if let Some(run) = by_deal.get_mut(c.deal_id.as_str())
                && let Some(slot) = grouped.get_mut((run.0 + run.1) as usize)
            {
                *slot = c;
                run.1 += 1;
            }
        }
        for &(start, count) in by_deal.values() {
            if let Some(run) = grouped.get_mut(start as usize..(start + count) as usize) {
                run.sort_by(|a, b| (a.entered_at, &a.id).cmp(&(b.entered_at, &b.id)));
            }
        }
        StageChanges {
            changes: grouped,
            by_deal,
        }
    }

    /// The changes of one deal, sorted by (entered_at, id).
    pub fn of(&self, deal: &str) -> &[&'a DealStageChange] {
        self.by_deal
            .get(deal)
            .and_then(|&(start, count)| self.changes.get(start as usize..(start + count) as usize))
            .unwrap_or_default()
    }

    /// Every change (grouped by deal).
    pub fn all(&self) -> impl Iterator<Item = &'a DealStageChange> + '_ {
        self.changes.iter().copied()
    }
}

impl<'a> DealRollups<'a> {
    /// The rollups of `data`'s deals over their lists by created_at and by
    /// closed_at and their stage changes.
    pub fn new(
        data: &'a Dataset,
        by_created: &ByTime<'a, Deal>,
        by_closed: &ByTime<'a, Deal>,
        stage_changes: &StageChanges<'a>,
    ) -> Self {
        let mut stage_labels: HashMap<&'a str, u32> = HashMap::default();
        let names = data.deals.iter().filter_map(|d| d.stage.as_deref());
        let changed = stage_changes.all().map(|c| c.stage.as_str());
        for name in names.chain(changed) {
            let next = stage_labels.len() as u32;
            if (next as usize) < STAGE_BITS {
                stage_labels.entry(name).or_insert(next);
            }
        }
        let bit = |name: &str| stage_labels.get(name).map_or(STAGES_OVERFLOW, |b| 1 << b);
        let mask = |d: &Deal| {
            stage_changes
                .of(d.id.as_str())
                .iter()
                .map(|c| c.stage.as_str())
                .chain(d.stage.as_deref())
                .fold(0, |mask, name| mask | bit(name))
                | if d.status == DealStatus::Won {
                    STAGES_WON
                } else {
                    0
                }
        };
        // Each deal's mask once, in the records' own order.
        let masks: Vec<u64> = data.deals.iter().map(mask).collect();
        let created_stages = Aligned::new(by_created, |items| {
            items
                .records()
                .map(|d| precomputed(&data.deals, &masks, d, mask))
                .collect()
        });
        DealRollups {
            created_stages,
            stage_labels,
            closed: sums(by_closed, |d: &Deal| {
                let won = d.status == DealStatus::Won;
                let cycle = d.closed_at.map_or(0, |c| nanos_between(d.created_at, c));
                [
                    i128::from(won),
                    if won { i128::from(d.amount) } else { 0 },
                    if won { cycle } else { 0 },
                    i128::from(d.status == DealStatus::Lost),
                ]
            }),
            created: sums(by_created, |_: &Deal| []),
            open_deals: open_deals(data),
            open_by_stage: open_by_stage(data, stage_changes),
        }
    }
}

/// Customers active, per owner: [count], over (acquired_at, churned_at].
pub(crate) fn active_customers(data: &Dataset) -> Stocks<'_, 1> {
    let mut b = StocksBuilder::default();
    for c in &data.customers {
        b.span(c.owner_rep_id.as_deref(), c.acquired_at, c.churned_at, [1]);
    }
    b.build()
}

/// A CSAT response's [score, then 1 for each s of [`CSAT_SCORES`] the score
/// reaches].
pub(crate) fn csat_figures(c: &CsatResponse) -> Figures<6> {
    let mut f = [0; 6];
    f[0] = i128::from(c.score);
    for (slot, min) in f[1..].iter_mut().zip(CSAT_SCORES) {
        *slot = i128::from(c.score >= min);
    }
    f
}

/// [responded, Σ response nanoseconds] of a record received at `from` and
/// first answered at `to`.
pub(crate) fn response(from: Instant, to: Option<Instant>) -> Figures<2> {
    to.map_or([0, 0], |to| [1, nanos_between(from, to)])
}

/// A lead's [converted, responded, Σ response nanoseconds].
pub(crate) fn lead_figures(l: &Lead) -> Figures<3> {
    let [responded, nanos] = response(l.created_at, l.first_response_at);
    [i128::from(l.converted_at.is_some()), responded, nanos]
}

/// Whether an order counts towards upsell_cross_sell_rate's numerator.
pub fn is_upsell(o: &Order) -> bool {
    matches!(o.kind, OrderKind::Upsell | OrderKind::CrossSell)
}

/// The instant after which a deal is no longer open: its close instant when
/// WON or LOST (`None`: open for ever).
fn open_until(d: &Deal) -> Option<Instant> {
    if d.status == DealStatus::Open {
        None
    } else {
        d.closed_at
    }
}

fn open_deals(data: &Dataset) -> Stocks<'_, 2> {
    let mut b = StocksBuilder::default();
    for d in &data.deals {
        let figures = [1, i128::from(d.amount)];
        b.span(
            d.owner_rep_id.as_deref(),
            d.created_at,
            open_until(d),
            figures,
        );
    }
    b.build()
}

fn open_by_stage<'a>(
    data: &'a Dataset,
    stage_changes: &StageChanges<'a>,
) -> HashMap<&'a str, Stocks<'a, 1>> {
    let mut builders: HashMap<&'a str, StocksBuilder<'a, 1>> = HashMap::default();
    for d in &data.deals {
        let owner = d.owner_rep_id.as_deref();
        let until = open_until(d);
        let amount = [i128::from(d.amount)];
        // The deal's own stage holds up to the first change; change i's
        // stage over (entered_i, entered_i+1]; each span cut to the deal's
        // open span (created_at, until].
        let mut from = d.created_at;
        let mut stage = d.stage.as_deref();
        for c in stage_changes.of(d.id.as_str()) {
            let (entered, next) = (c.entered_at, c.stage.as_str());
            let to = until.map_or(entered, |u| u.min(entered));
            if let Some(s) = stage {
                builders
                    .entry(s)
                    .or_default()
                    .span(owner, from, Some(to), amount);
            }
            from = from.max(entered);
            stage = Some(next);
        }
        if let Some(s) = stage {
            builders
                .entry(s)
                .or_default()
                .span(owner, from, until, amount);
        }
    }
    builders
        .into_iter()
        .map(|(stage, b)| (stage, b.build()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::build::{dataset, sale, stage};

    /// Stage changes of three deals, given interleaved and out of order:
    /// each deal's are listed together, sorted by entered_at and then id
    /// (s5 and s4 tie at 09:00); a deal without changes has none.
    #[test]
    fn stage_changes_are_grouped_by_deal_in_entered_order() {
        let data = dataset([
            stage("s1", "d2", "won", "2024-03-04T09:00:00Z"),
            stage("s2", "d1", "proposal", "2024-03-03T09:00:00Z"),
            stage("s5", "d1", "demo", "2024-03-02T09:00:00Z"),
            stage("s3", "d3", "demo", "2024-03-01T09:00:00Z"),
            stage("s4", "d1", "qualified", "2024-03-02T09:00:00Z"),
            stage("s6", "d2", "demo", "2024-03-01T09:00:00Z"),
        ]);
        let changes = StageChanges::new(&data.deal_stage_changes);
        let ids =
            |deal: &str| -> Vec<&str> { changes.of(deal).iter().map(|c| c.id.as_str()).collect() };
        assert_eq!(ids("d1"), ["s4", "s5", "s2"]);
        assert_eq!(ids("d2"), ["s6", "s1"]);
        assert_eq!(ids("d3"), ["s3"]);
        assert!(ids("d4").is_empty());
        let mut all: Vec<&str> = changes.all().map(|c| c.id.as_str()).collect();
        all.sort_unstable();
        assert_eq!(all, ["s1", "s2", "s3", "s4", "s5", "s6"]);
        assert!(StageChanges::new(&[]).of("d1").is_empty());
    }

    /// The sums of every range of positions, of lists shorter and longer
    /// than a block and ending on and off a block's edge, for all records
    /// and per rep, equal the amounts added up one by one: (1 + position)
    /// × 10 for the records in time order, so each range has its own sum.
    #[test]
    fn the_sums_of_any_range_equal_adding_its_records() {
        for len in [
            0,
            1,
            SUM_BLOCK - 1,
            SUM_BLOCK,
            2 * SUM_BLOCK + 1,
            5 * SUM_BLOCK + 3,
        ] {
            let data = dataset((0..len).map(|i| {
                let at = format!("2024-03-01T00:{:02}:{:02}Z", i / 60, i % 60);
                let rep = ["r1", "r2", "r3"][i % 3];
                sale(&format!("o{i:03}"), (i as i64 + 1) * 10, &at, Some(rep))
            }));
            let by_time = ByTime::with_reps(
                data.orders.iter(),
                |o| Some(o.ordered_at),
                |o: &Order| o.rep_id.as_deref(),
            );
            let amounts = sums(&by_time, |o: &Order| [i128::from(o.amount)]);
            for rep in [None, Some("r1"), Some("r2"), Some("r3")] {
                let items = by_time.list(rep);
                for start in 0..=items.len() {
                    for end in start..=items.len() + 1 {
                        let expected: i128 = items
                            .range(start..end)
                            .map(|(_, o)| i128::from(o.amount))
                            .sum();
                        let got = amounts.range(&by_time, rep, &(start..end));
                        assert_eq!(got, [expected], "{len} records, {rep:?}, {start}..{end}");
                    }
                }
            }
        }
    }
}
