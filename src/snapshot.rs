//! Per-tenant snapshots of the records and their [`Index`], kept in memory
//! and shared by every KPI query until the tenant's data changes.
//!
//! Every write or delete that changes a record adds one to the tenant's data
//! version in the same transaction (`tenants.data_version`). A query reads
//! that version (one primary-key read) and uses the cached snapshot when it
//! is at least that version; otherwise it brings the snapshot up to date and
//! replaces the cached one. So an acknowledged write is visible to the very
//! next query, on every replica, and a query never sees a half-applied batch.
//!
//! * Catching up: a stale snapshot reads only what changed since its
//!   version from the store's change feed (rows stamped with the version
//!   that wrote them, tombstones for deletes) and applies it on a blocking
//!   thread. A snapshot is held in parts, one per family of record types
//!   (the organisation, customers, deals, orders, leads, activities,
//!   inquiries, CSAT responses: see [`crate::kpi::index`]); only the
//!   families the changes touch are copied with the changes merged in and
//!   re-indexed (on parallel threads when large), and the new snapshot
//!   shares every other part with the old one. Only the first query of a
//!   tenant, or one whose snapshot is older than the retained tombstones,
//!   loads the tenant in full.
//! * One refresh per tenant at a time: queries that find the snapshot stale
//!   wait for the refresh in progress instead of starting their own, and use
//!   its result when it is at least as new as the version they read. The
//!   refresh runs as its own task, so it completes and is kept even when the
//!   query that started it gives up (a large tenant can take longer to load
//!   than a client's deadline).
//! * At most `tenants` tenants, and at most `bytes` bytes of snapshots
//!   (estimated, see [`Versioned::bytes`]), are kept; the least recently
//!   used tenant is dropped first (its memory is freed when its last query
//!   ends). The snapshot just loaded is always kept, even when it alone is
//!   over the byte budget. A tenant limit of 0 turns caching off: every
//!   query loads its own snapshot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use self_cell::self_cell;

use crate::domain::{Dataset, Record, RecordType, TenantSettings};
use crate::error::{Error, Result};
use crate::heap::HeapBytes;
use crate::kpi::engine::Engine;
use crate::kpi::index::{
    ActivityIndex, CsatIndex, CustomerIndex, DealIndex, Index, InquiryIndex, LeadIndex, OrderIndex,
    OrgIndex, Part,
};
use crate::metrics::Metrics;
use crate::store::Store;

/// The families of record types a snapshot indexes apart, so a change
/// rebuilds only its family's part of the index. A family's number
/// (`as usize`) is its place in a [`PerFamily`] array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Org,
    Customers,
    Deals,
    Orders,
    Leads,
    Activities,
    Inquiries,
    Csat,
}

impl Family {
    /// The family a record type belongs to.
    fn of(record_type: RecordType) -> Family {
        match record_type {
            RecordType::Team
            | RecordType::TeamMembership
            | RecordType::Rep
            | RecordType::Target
            | RecordType::Spend => Family::Org,
            RecordType::Customer | RecordType::SubscriptionChange => Family::Customers,
            RecordType::Deal | RecordType::DealStageChange => Family::Deals,
            RecordType::Order => Family::Orders,
            RecordType::Lead => Family::Leads,
            RecordType::Activity => Family::Activities,
            RecordType::Inquiry => Family::Inquiries,
            RecordType::CsatResponse => Family::Csat,
        }
    }
}

/// Splits a dataset into one dataset per family, in [`Family`]'s order.
fn split(data: Dataset) -> [Dataset; 8] {
    let Dataset {
        teams,
        team_memberships,
        reps,
        customers,
        leads,
        deals,
        deal_stage_changes,
        orders,
        subscription_changes,
        activities,
        inquiries,
        csat_responses,
        targets,
        spends,
    } = data;
    let empty = Dataset::default;
    [
        Dataset {
            teams,
            team_memberships,
            reps,
            targets,
            spends,
            ..empty()
        },
        Dataset {
            customers,
            subscription_changes,
            ..empty()
        },
        Dataset {
            deals,
            deal_stage_changes,
            ..empty()
        },
        Dataset { orders, ..empty() },
        Dataset { leads, ..empty() },
        Dataset {
            activities,
            ..empty()
        },
        Dataset {
            inquiries,
            ..empty()
        },
        Dataset {
            csat_responses,
            ..empty()
        },
    ]
}

/// Declares, per family, a part: the family's records and its part of the
/// index over them.
macro_rules! parts {
    ($($part:ident => $index:ident),* $(,)?) => {
        $(self_cell!(
            /// One family's records and its part of the index.
            struct $part {
                owner: Dataset,

                #[covariant]
                dependent: $index,
            }

            impl {Debug}
        );

        impl Build for $part {
            fn build(data: Dataset) -> Arc<Built<Self>> {
                let part = $part::new(data, |data| $index::new(data));
                let bytes = part.borrow_owner().heap_bytes() + part.borrow_dependent().heap_bytes();
                Arc::new(Built { part, bytes })
            }
        })*
    };
}

parts!(
    OrgPart => OrgIndex,
    CustomerPart => CustomerIndex,
    DealPart => DealIndex,
    OrderPart => OrderIndex,
    LeadPart => LeadIndex,
    ActivityPart => ActivityIndex,
    InquiryPart => InquiryIndex,
    CsatPart => CsatIndex,
);

/// How a part is built from its family's records.
trait Build: Sized + Send + Sync {
    /// Indexes a family's records (CPU work proportional to them).
    fn build(data: Dataset) -> Arc<Built<Self>>;
}

/// A part being built: on a thread of its own, or already.
enum Job<'s, P> {
    Spawned(std::thread::ScopedJoinHandle<'s, Option<Arc<Built<P>>>>),
    Done(Option<Arc<Built<P>>>),
}

impl<'s, P: Build + 's> Job<'s, P> {
    /// Builds the part from `data` if given, on a thread of `scope` when
    /// `parallel`.
    fn start<'e>(
        scope: &'s std::thread::Scope<'s, 'e>,
        parallel: bool,
        data: Option<Dataset>,
    ) -> Self {
        match data {
            Some(data) if parallel => Job::Spawned(scope.spawn(move || Some(P::build(data)))),
            data => Job::Done(data.map(P::build)),
        }
    }

    /// The part built, else `previous`'s (else an empty one). A panic while
    /// building is passed on.
    fn finish(self, previous: Option<&Arc<Built<P>>>) -> Arc<Built<P>> {
        let built = match self {
            Job::Spawned(handle) => handle
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e)),
            Job::Done(built) => built,
        };
        built
            .or_else(|| previous.cloned())
            .unwrap_or_else(|| P::build(Dataset::default()))
    }
}

/// A part and the memory it holds, estimated when it was built.
#[derive(Debug)]
struct Built<P> {
    part: P,
    bytes: usize,
}

/// Records from which a snapshot's parts are built on parallel threads.
const PARALLEL_FROM: usize = 20_000;

/// A tenant's records and the index over them, one part per family of
/// record types. Parts are immutable and shared: a snapshot brought up to
/// date rebuilds the parts of the families that changed and shares the
/// others with the snapshot before it.
#[derive(Debug, Clone)]
pub struct Snapshot {
    org: Arc<Built<OrgPart>>,
    customers: Arc<Built<CustomerPart>>,
    deals: Arc<Built<DealPart>>,
    orders: Arc<Built<OrderPart>>,
    leads: Arc<Built<LeadPart>>,
    activities: Arc<Built<ActivityPart>>,
    inquiries: Arc<Built<InquiryPart>>,
    csat: Arc<Built<CsatPart>>,
}

/// One family's records, or its changes, per family.
type PerFamily<T> = [T; 8];

impl Snapshot {
    /// Indexes `data` (CPU work proportional to the records: call it off the
    /// async runtime).
    pub fn build(data: Dataset) -> Self {
        Self::build_parts(split(data).map(Some), None)
    }

    /// Builds the parts whose datasets are given (`Some`), on parallel
    /// threads when they are large, and takes the others from `previous`.
    fn build_parts(data: PerFamily<Option<Dataset>>, previous: Option<&Snapshot>) -> Self {
        let [
            org,
            customers,
            deals,
            orders,
            leads,
            activities,
            inquiries,
            csat,
        ] = data;
        let records: usize = [
            &org,
            &customers,
            &deals,
            &orders,
            &leads,
            &activities,
            &inquiries,
            &csat,
        ]
        .iter()
        .filter_map(|d| d.as_ref())
        .map(Dataset::len)
        .sum();
        let parallel = records >= PARALLEL_FROM;
        std::thread::scope(|scope| {
            let org = Job::start(scope, parallel, org);
            let customers = Job::start(scope, parallel, customers);
            let deals = Job::start(scope, parallel, deals);
            let orders = Job::start(scope, parallel, orders);
            let leads = Job::start(scope, parallel, leads);
            let activities = Job::start(scope, parallel, activities);
            let inquiries = Job::start(scope, parallel, inquiries);
            let csat = Job::start(scope, parallel, csat);
            Snapshot {
                org: org.finish(previous.map(|p| &p.org)),
                customers: customers.finish(previous.map(|p| &p.customers)),
                deals: deals.finish(previous.map(|p| &p.deals)),
                orders: orders.finish(previous.map(|p| &p.orders)),
                leads: leads.finish(previous.map(|p| &p.leads)),
                activities: activities.finish(previous.map(|p| &p.activities)),
                inquiries: inquiries.finish(previous.map(|p| &p.inquiries)),
                csat: csat.finish(previous.map(|p| &p.csat)),
            }
        })
    }

    /// This snapshot with changes read from the store's change feed applied
    /// (see [`Dataset::with_changes`]): the families the changes touch are
    /// copied with their changes and re-indexed; the others are shared
    /// (call it off the async runtime).
    pub fn with_changes(&self, deleted: &[(RecordType, String)], upserts: Vec<Record>) -> Self {
        let mut gone: PerFamily<Vec<(RecordType, String)>> = Default::default();
        let mut fresh: PerFamily<Vec<Record>> = Default::default();
        for d in deleted {
            gone[Family::of(d.0) as usize].push(d.clone());
        }
        for record in upserts {
            fresh[Family::of(record.record_type()) as usize].push(record);
        }
        let owners = self.owners();
        let mut fresh = fresh.into_iter();
        let changed: PerFamily<Option<Dataset>> = std::array::from_fn(|i| {
            let upserts = fresh.next().unwrap_or_default();
            let touched = !gone[i].is_empty() || !upserts.is_empty();
            touched.then(|| owners[i].with_changes(&gone[i], upserts))
        });
        Self::build_parts(changed, Some(self))
    }

    /// Each family's records, in [`Family`]'s order.
    fn owners(&self) -> PerFamily<&Dataset> {
        [
            self.org.part.borrow_owner(),
            self.customers.part.borrow_owner(),
            self.deals.part.borrow_owner(),
            self.orders.part.borrow_owner(),
            self.leads.part.borrow_owner(),
            self.activities.part.borrow_owner(),
            self.inquiries.part.borrow_owner(),
            self.csat.part.borrow_owner(),
        ]
    }

    /// A copy of every record, in one dataset (for tests: it copies them all).
    pub fn to_dataset(&self) -> Dataset {
        let mut out = Dataset::default();
        for family in self.owners() {
            out.absorb(family.clone());
        }
        out
    }

    /// The teams, memberships, reps, targets and spend (the organisation).
    pub fn organisation(&self) -> &Dataset {
        self.org.part.borrow_owner()
    }

    /// The memory the snapshot holds, estimated: its records and its index
    /// (added up when its parts were built: cheap).
    pub fn heap_bytes(&self) -> usize {
        [
            self.org.bytes,
            self.customers.bytes,
            self.deals.bytes,
            self.orders.bytes,
            self.leads.bytes,
            self.activities.bytes,
            self.inquiries.bytes,
            self.csat.bytes,
        ]
        .iter()
        .sum()
    }

    /// The index over every part (cheap: it borrows them).
    pub fn index(&self) -> Index<'_> {
        Index {
            org: Part::Shared(self.org.part.borrow_dependent()),
            customers: Part::Shared(self.customers.part.borrow_dependent()),
            deals: Part::Shared(self.deals.part.borrow_dependent()),
            orders: Part::Shared(self.orders.part.borrow_dependent()),
            leads: Part::Shared(self.leads.part.borrow_dependent()),
            activities: Part::Shared(self.activities.part.borrow_dependent()),
            inquiries: Part::Shared(self.inquiries.part.borrow_dependent()),
            csat: Part::Shared(self.csat.part.borrow_dependent()),
        }
    }

    /// An engine over this snapshot with `settings` (cheap).
    pub fn engine(&self, settings: TenantSettings) -> Engine<'_> {
        Engine::with_index(self.index(), settings)
    }
}

/// A snapshot and the data version it was read at.
#[derive(Debug)]
pub struct Versioned {
    /// The tenant's data version of the snapshot.
    pub version: i64,
    /// The records and their index.
    pub snapshot: Snapshot,
    /// The memory the snapshot holds, estimated ([`Snapshot::heap_bytes`]).
    pub bytes: usize,
}

impl Versioned {
    /// Indexes `data`, read at `version` (CPU work proportional to the
    /// records: call it off the async runtime).
    fn build(version: i64, data: Dataset) -> Self {
        Self::new(version, Snapshot::build(data))
    }

    /// A snapshot read at `version`.
    fn new(version: i64, snapshot: Snapshot) -> Self {
        let bytes = snapshot.heap_bytes();
        Versioned {
            version,
            snapshot,
            bytes,
        }
    }
}

/// How much a [`SnapshotCache`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Tenants kept at most (0: no caching).
    pub tenants: usize,
    /// Estimated bytes of snapshots kept at most (0: no byte limit).
    pub bytes: u64,
}

/// One tenant's cache entry.
struct Slot {
    /// Tick of the last query (for least-recently-used eviction).
    last_used: u64,
    /// The snapshot, once loaded.
    current: Option<Arc<Versioned>>,
    /// Held while a load for this tenant is in progress.
    loading: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Default)]
struct State {
    tick: u64,
    slots: HashMap<String, Slot>,
}

impl State {
    /// Advances the clock and returns it with the tenant's slot, created
    /// (last used now, no snapshot, lock from `loading`) if missing.
    fn slot(
        &mut self,
        tenant: &str,
        loading: impl FnOnce() -> Arc<tokio::sync::Mutex<()>>,
    ) -> (u64, &mut Slot) {
        self.tick += 1;
        let tick = self.tick;
        let slot = self
            .slots
            .entry(tenant.to_string())
            .or_insert_with(|| Slot {
                last_used: tick,
                current: None,
                loading: loading(),
            });
        (tick, slot)
    }
}

/// The snapshots of the most recently queried tenants; see the module docs.
pub struct SnapshotCache {
    inner: Arc<Inner>,
}

/// The cache's state, shared with the load tasks it spawns.
struct Inner {
    store: Arc<dyn Store>,
    limits: CacheLimits,
    state: Mutex<State>,
    /// Where full loads and catch-ups are counted.
    metrics: Arc<Metrics>,
}

/// How a cache has refreshed its snapshots so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refreshes {
    /// Snapshots loaded in full (a tenant's first query, or a snapshot older
    /// than the retained tombstones).
    pub full_loads: u64,
    /// Snapshots brought up to date from the change feed.
    pub catch_ups: u64,
}

impl std::fmt::Debug for SnapshotCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotCache")
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

impl SnapshotCache {
    /// A cache over `store` keeping at most `capacity` tenants (0: none).
    pub fn new(store: Arc<dyn Store>, capacity: usize) -> Self {
        let limits = CacheLimits {
            tenants: capacity,
            bytes: 0,
        };
        Self::with_limits(store, limits, Arc::new(Metrics::new()))
    }

    /// A cache over `store` within `limits`, counting its refreshes and its
    /// size into `metrics`.
    pub fn with_limits(store: Arc<dyn Store>, limits: CacheLimits, metrics: Arc<Metrics>) -> Self {
        SnapshotCache {
            inner: Arc::new(Inner {
                store,
                limits,
                state: Mutex::new(State::default()),
                metrics,
            }),
        }
    }

    /// The tenant's current snapshot: the cached one when the tenant's data
    /// version has not changed, else a fresh one.
    ///
    /// A load runs as a task of its own: a query that gives up (deadline,
    /// cancelled call) does not abandon it, so the next query finds the
    /// snapshot loaded instead of starting again.
    pub async fn get(&self, tenant: &str) -> Result<Arc<Versioned>> {
        let inner = &self.inner;
        if inner.limits.tenants == 0 {
            return load(inner.store.as_ref(), tenant).await;
        }
        let version = inner.store.data_version(tenant).await?.unwrap_or(0);
        let loading = {
            let mut state = inner.state();
            let (tick, slot) = state.slot(tenant, Arc::default);
            slot.last_used = tick;
            if let Some(current) = slot.current.as_ref().filter(|c| c.version >= version) {
                return Ok(current.clone());
            }
            slot.loading.clone()
        };
        let guard = loading.clone().lock_owned().await;
        // A query that waited for the lock may find the refresh it waited
        // for has brought the snapshot up to (or past) its version.
        let previous = inner.cached(tenant);
        if let Some(current) = previous.as_ref().filter(|c| c.version >= version) {
            return Ok(current.clone());
        }
        let task_inner = inner.clone();
        let tenant = tenant.to_string();
        tokio::spawn(async move {
            // Held until the snapshot is stored: queries arriving meanwhile
            // wait for this load.
            let _guard = guard;
            let fresh = task_inner.refresh(&tenant, previous).await?;
            let replaced = {
                let mut state = task_inner.state();
                let (_, slot) = state.slot(&tenant, || loading);
                let old = slot.current.replace(fresh.clone());
                let evicted = task_inner.evict(&mut state, &tenant);
                task_inner.metrics.set_snapshot_cache(cached_bytes(&state));
                (old, evicted)
            };
            // Freeing a large snapshot takes a while: never under the lock,
            // nor on the async runtime.
            tokio::task::spawn_blocking(move || drop(replaced));
            Ok(fresh)
        })
        .await
        .map_err(|e| Error::internal(format!("snapshot load failed: {e}")))?
    }

    /// How many full loads and catch-ups the cache has done (for tests and
    /// metrics).
    pub fn refreshes(&self) -> Refreshes {
        let (full_loads, catch_ups) = self.inner.metrics.snapshot_refreshes();
        Refreshes {
            full_loads,
            catch_ups,
        }
    }

    /// How many tenants are cached (for tests and metrics).
    pub fn len(&self) -> usize {
        self.inner
            .state()
            .slots
            .values()
            .filter(|s| s.current.is_some())
            .count()
    }

    /// Whether no tenant is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Loads the snapshots of up to `count` tenants before anyone asks (at
    /// most as many as the cache keeps): those whose records were written
    /// most often, one after another, the busiest last, so that it is the
    /// most recently used and, when the byte budget cannot hold them all,
    /// the least busy are the ones dropped. Queries of a tenant being
    /// loaded wait for that load and share it, as they would any other.
    /// Returns the tenants loaded, in the order loaded; a tenant that fails
    /// to load is logged and skipped.
    pub async fn warm(&self, count: usize) -> Result<Vec<String>> {
        let count = count.min(self.inner.limits.tenants);
        if count == 0 {
            return Ok(Vec::new());
        }
        let mut loaded = Vec::new();
        let busiest = self.inner.store.most_written_tenants(count).await?;
        for tenant in busiest.into_iter().rev() {
            let started = std::time::Instant::now();
            match self.get(&tenant).await {
                Ok(snapshot) => {
                    tracing::info!(
                        %tenant,
                        version = snapshot.version,
                        bytes = snapshot.bytes,
                        seconds = started.elapsed().as_secs_f64(),
                        "warmed the tenant's KPI snapshot"
                    );
                    loaded.push(tenant);
                }
                Err(err) => {
                    tracing::warn!(%tenant, error = %err, "could not warm the tenant's KPI snapshot");
                }
            }
        }
        Ok(loaded)
    }

    /// The estimated bytes of the cached snapshots.
    pub fn bytes(&self) -> u64 {
        cached_bytes(&self.inner.state())
    }
}

/// The estimated bytes of the snapshots in `state`.
fn cached_bytes(state: &State) -> u64 {
    state
        .slots
        .values()
        .filter_map(|s| s.current.as_ref())
        .map(|c| c.bytes as u64)
        .sum()
}

impl Inner {
    /// Brings `previous` (the cached snapshot, if any) up to the tenant's
    /// current version: from the change feed when it can, else by a full load.
    async fn refresh(
        &self,
        tenant: &str,
        previous: Option<Arc<Versioned>>,
    ) -> Result<Arc<Versioned>> {
        if let Some(previous) = previous
            && let Some(changes) = self.store.changes_since(tenant, previous.version).await?
        {
            self.metrics.count_snapshot_refresh(false);
            if changes.version <= previous.version {
                return Ok(previous);
            }
            let fresh = tokio::task::spawn_blocking(move || {
                let snapshot = previous
                    .snapshot
                    .with_changes(&changes.deleted, changes.upserts);
                Versioned::new(changes.version, snapshot)
            })
            .await
            .map_err(|e| Error::internal(format!("indexing failed: {e}")))?;
            return Ok(Arc::new(fresh));
        }
        self.metrics.count_snapshot_refresh(true);
        load(self.store.as_ref(), tenant).await
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent at every await-free step, so a panic
        // elsewhere cannot leave it half-updated.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn cached(&self, tenant: &str) -> Option<Arc<Versioned>> {
        self.state().slots.get(tenant)?.current.clone()
    }

    /// Removes least recently used tenants (never `keep`) beyond the
    /// limits, and returns their slots (for the caller to free).
    fn evict(&self, state: &mut State, keep: &str) -> Vec<Slot> {
        let mut evicted = Vec::new();
        let over = |state: &State| {
            state.slots.len() > self.limits.tenants
                || (self.limits.bytes > 0 && cached_bytes(state) > self.limits.bytes)
        };
        while over(state) {
            let oldest = state
                .slots
                .iter()
                .filter(|(tenant, _)| tenant.as_str() != keep)
                .min_by_key(|(_, slot)| slot.last_used)
                .map(|(tenant, _)| tenant.clone());
            match oldest {
                Some(tenant) => evicted.extend(state.slots.remove(&tenant)),
                None => break,
            }
        }
        evicted
    }
}

/// Loads the tenant's records and builds the index (on a blocking thread).
async fn load(store: &dyn Store, tenant: &str) -> Result<Arc<Versioned>> {
    let started = std::time::Instant::now();
    let (version, data) = store.load_versioned(tenant).await?;
    let read = started.elapsed();
    let records = data.len();
    let fresh = tokio::task::spawn_blocking(move || {
        let fresh = Versioned::build(version, data);
        release_free_memory();
        fresh
    })
    .await
    .map_err(|e| Error::internal(format!("indexing failed: {e}")))?;
    tracing::info!(
        %tenant,
        version,
        records,
        bytes = fresh.bytes,
        read_seconds = read.as_secs_f64(),
        index_seconds = (started.elapsed() - read).as_secs_f64(),
        "loaded the tenant's KPI snapshot in full"
    );
    Ok(Arc::new(fresh))
}

/// Hands the memory the allocator holds free back to the operating system.
/// A full load frees about as much memory as the snapshot it leaves (the
/// rows being decoded, the records before they are sorted and split, the
/// index builders' scratch lists), on several threads; glibc's allocator
/// keeps what each thread's arena freed for reuse, so without this the
/// server's resident memory stays at the load's peak (its time is part of
/// the load's logged index seconds).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` takes no pointers and only returns free pages of
    // the allocator's own arenas to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;
    use crate::domain::Scope;
    use crate::domain::period::{Granularity, PeriodRange, PeriodSpec};
    use salesmetrics_core::testkit::build::{dataset, order};
    use salesmetrics_core::testkit::rich;

    fn march_2024() -> PeriodRange {
        PeriodSpec::Calendar {
            granularity: Granularity::Month,
            date: NaiveDate::from_ymd_opt(2024, 3, 1).expect("date"),
        }
        .resolve(chrono_tz::Tz::UTC, 1)
        .expect("month")
    }

    fn revenue(snapshot: &Snapshot, scope: Scope) -> Option<f64> {
        let engine = snapshot.engine(rich::settings());
        engine
            .value(&scope, &march_2024(), "revenue")
            .expect("catalog id")
            .value
    }

    /// Which parts two snapshots share, in [`Family`]'s order.
    fn shared(a: &Snapshot, b: &Snapshot) -> [bool; 8] {
        [
            Arc::ptr_eq(&a.org, &b.org),
            Arc::ptr_eq(&a.customers, &b.customers),
            Arc::ptr_eq(&a.deals, &b.deals),
            Arc::ptr_eq(&a.orders, &b.orders),
            Arc::ptr_eq(&a.leads, &b.leads),
            Arc::ptr_eq(&a.activities, &b.activities),
            Arc::ptr_eq(&a.inquiries, &b.inquiries),
            Arc::ptr_eq(&a.csat, &b.csat),
        ]
    }

    /// A change re-indexes its own family only, and the snapshot it gives
    /// answers exactly as one built from scratch. Rich fixture, March 2024:
    /// revenue 2100 (COMPANY), 1700 (east: r1 1000, r2 500, r3's o4 200
    /// after r3 joins east on Mar 16), 300 (west: r3's o3 on Mar 10).
    #[test]
    fn a_change_reindexes_only_its_family() {
        let base = Snapshot::build(dataset(rich::records()));
        assert_eq!(revenue(&base, Scope::Company), Some(2100.0));
        assert_eq!(revenue(&base, Scope::Team("east".into())), Some(1700.0));

        // o7: 50 by r3 on Mar 20, when r3 is in east.
        let o7 = Record::Order(order("o7", 50, "2024-03-20T00:00:00Z", Some("r3")));
        let with_order = base.with_changes(&[], vec![o7.clone()]);
        assert_eq!(
            shared(&base, &with_order),
            [true, true, true, false, true, true, true, true],
            "only the orders part is rebuilt"
        );
        assert_eq!(revenue(&with_order, Scope::Company), Some(2150.0));
        assert_eq!(
            revenue(&with_order, Scope::Team("east".into())),
            Some(1750.0)
        );
        assert_eq!(
            revenue(&with_order, Scope::Team("west".into())),
            Some(300.0)
        );

        // Without m4, r3 stays in west all March: east 1000 + 500, west
        // 300 (o3) + 200 (o4) + 50 (o7).
        let without_move =
            with_order.with_changes(&[(RecordType::TeamMembership, "m4".to_string())], vec![]);
        assert_eq!(
            shared(&with_order, &without_move),
            [false, true, true, true, true, true, true, true],
            "only the organisation part is rebuilt"
        );
        assert_eq!(
            revenue(&without_move, Scope::Team("east".into())),
            Some(1500.0)
        );
        assert_eq!(
            revenue(&without_move, Scope::Team("west".into())),
            Some(550.0)
        );

        // Every KPI of every scope equals a snapshot built from scratch.
        let records = rich::records()
            .into_iter()
            .chain([o7])
            .filter(|r| r.id() != "m4");
        let fresh = Snapshot::build(dataset(records));
        assert_eq!(without_move.to_dataset().len(), fresh.to_dataset().len());
        let kpis: Vec<_> = crate::kpi::CATALOG.iter().collect();
        for scope in [
            Scope::Company,
            Scope::Team("east".into()),
            Scope::Team("west".into()),
            Scope::Rep("r3".into()),
        ] {
            let a = without_move.engine(rich::settings());
            let b = fresh.engine(rich::settings());
            assert_eq!(
                a.values(&scope, &march_2024(), &kpis),
                b.values(&scope, &march_2024(), &kpis),
                "{scope:?}"
            );
        }
    }
}
