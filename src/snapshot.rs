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
//!   that wrote them, tombstones for deletes), applies it to a copy of its
//!   records and rebuilds the index in memory, on a blocking thread (large
//!   tenants on parallel threads). Only
//!   the first query of a tenant, or one whose snapshot is older than the
//!   retained tombstones, loads the tenant in full.
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

use crate::domain::{Dataset, TenantSettings};
use crate::error::{Error, Result};
use crate::heap::HeapBytes;
use crate::kpi::engine::Engine;
use crate::kpi::index::Index;
use crate::metrics::Metrics;
use crate::store::Store;

self_cell!(
    /// A tenant's records and the index over them.
    pub struct Snapshot {
        owner: Dataset,

        #[covariant]
        dependent: Index,
    }

    impl {Debug}
);

impl Snapshot {
    /// Indexes `data` (CPU work proportional to the records: call it off the
    /// async runtime).
    pub fn build(data: Dataset) -> Self {
        Snapshot::new(data, |data| Index::new(data))
    }

    /// The memory the snapshot holds, estimated: its records and its index
    /// (walks the records: call it off the async runtime).
    pub fn heap_bytes(&self) -> usize {
        self.borrow_owner().heap_bytes() + self.borrow_dependent().heap_bytes()
    }

    /// An engine over this snapshot with `settings` (cheap).
    pub fn engine(&self, settings: TenantSettings) -> Engine<'_> {
        Engine::with_index(self.borrow_dependent(), settings)
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
        let snapshot = Snapshot::build(data);
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
                let data = previous
                    .snapshot
                    .borrow_owner()
                    .with_changes(&changes.deleted, changes.upserts);
                Versioned::build(changes.version, data)
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
    let (version, data) = store.load_versioned(tenant).await?;
    let fresh = tokio::task::spawn_blocking(move || Versioned::build(version, data))
        .await
        .map_err(|e| Error::internal(format!("indexing failed: {e}")))?;
    Ok(Arc::new(fresh))
}
