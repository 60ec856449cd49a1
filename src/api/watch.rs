//! `WatchKpis` streams: their limits, and the loop that sends a bundle
//! whenever the tenant's data changes.
//!
//! A watch checks the tenant's data version (one primary-key read, so a
//! write through any replica is seen) every `min_interval`, and sends a new
//! bundle when it grew: at most one bundle per interval, however many writes
//! came in between. When no bundle was sent for the heartbeat interval, it
//! sends a heartbeat, so proxies keep the stream open.
//!
//! Watches are long-lived, so they do not hold the server's concurrency
//! slots (the authentication layer releases those once a watch has
//! started); they count against their own limits instead, per tenant and
//! per server (`--max-watches-per-tenant`, `--max-watches`). A watch ends
//! when the client goes away, when its API key is revoked
//! (UNAUTHENTICATED), when the data cannot be read (that status), and at
//! shutdown, at once, with UNAVAILABLE "server shutting down", so the
//! graceful drain does not wait for it.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, watch};
use tonic::Status;

use crate::auth::{ApiKeyId, check_key_still_valid};
use crate::error::{Error, Result};
use crate::proto::v1 as pb;
use crate::store::Store;

/// The gRPC path of `WatchKpis`.
pub const WATCH_KPIS_PATH: &str = "/salesmetrics.v1.KpiService/WatchKpis";

/// `min_interval` when the request sets none.
pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Smallest `min_interval`.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Largest `min_interval`.
pub const MAX_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// Default of `--max-watches-per-tenant`.
pub const MAX_WATCHES_PER_TENANT: usize = 16;
/// Default of `--max-watches`.
pub const MAX_WATCHES: usize = 256;
/// Default of `--watch-heartbeat-seconds`.
pub const HEARTBEAT_SECONDS: u64 = 15;

/// The message of a watch ended by a shutdown.
pub const SHUTTING_DOWN: &str = "server shutting down";

/// Limits of the watches.
#[derive(Debug, Clone, Copy)]
pub struct WatchLimits {
    /// Most watches one tenant may have open.
    pub per_tenant: usize,
    /// Most watches open on the server.
    pub total: usize,
    /// Time without a bundle after which a heartbeat is sent.
    pub heartbeat: Duration,
}

impl Default for WatchLimits {
    fn default() -> Self {
        WatchLimits {
            per_tenant: MAX_WATCHES_PER_TENANT,
            total: MAX_WATCHES,
            heartbeat: Duration::from_secs(HEARTBEAT_SECONDS),
        }
    }
}

/// The open watches of a server, and its shutdown signal.
#[derive(Debug)]
pub struct Watches {
    /// The limits.
    limits: WatchLimits,
    /// Open watches per tenant (tenants with none are removed).
    open: Mutex<HashMap<String, usize>>,
    /// Becomes true when the server starts shutting down.
    stopping: watch::Receiver<bool>,
}

impl Watches {
    /// Watches within `limits`, all ended when `stopping` becomes true.
    pub fn new(limits: WatchLimits, stopping: watch::Receiver<bool>) -> Arc<Self> {
        Arc::new(Watches {
            limits,
            open: Mutex::new(HashMap::new()),
            stopping,
        })
    }

    /// A slot for a new watch of `tenant`; RESOURCE_EXHAUSTED when the
    /// tenant or the server has as many open as allowed.
    fn open(self: &Arc<Self>, tenant: &str) -> Result<WatchSlot> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let total: usize = open.values().sum();
        if total >= self.limits.total {
            return Err(Error::ResourceExhausted(format!(
                "the server has {} KPI watches open, its limit; retry later",
                self.limits.total
            )));
        }
        let count = open.entry(tenant.to_string()).or_default();
        if *count >= self.limits.per_tenant {
            return Err(Error::ResourceExhausted(format!(
                "this tenant has {} KPI watches open, its limit; close one first",
                self.limits.per_tenant
            )));
        }
        *count += 1;
        Ok(WatchSlot {
            watches: self.clone(),
            tenant: tenant.to_string(),
        })
    }
}

/// One open watch, counted until dropped.
struct WatchSlot {
    watches: Arc<Watches>,
    tenant: String,
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut open = self
            .watches
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.tenant) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.tenant);
            }
        }
    }
}

/// The `min_interval` of a request: unset is [`DEFAULT_MIN_INTERVAL`];
/// outside [`MIN_INTERVAL`, `MAX_INTERVAL`] is INVALID_ARGUMENT.
pub fn parse_min_interval(interval: Option<&prost_types::Duration>) -> Result<Duration> {
    let Some(interval) = interval else {
        return Ok(DEFAULT_MIN_INTERVAL);
    };
    let out_of_range = || Error::invalid("min_interval", "must be between 100ms and 1 hour");
    let seconds = u64::try_from(interval.seconds).map_err(|_| out_of_range())?;
    let nanos = u32::try_from(interval.nanos).map_err(|_| out_of_range())?;
    if nanos >= 1_000_000_000 {
        return Err(out_of_range());
    }
    let interval = Duration::new(seconds, nanos);
    if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&interval) {
        return Err(out_of_range());
    }
    Ok(interval)
}

/// An error of the embedded request with its field paths under `prefix`
/// (`request.period` rather than `period`).
pub fn within(prefix: &str, err: Error) -> Error {
    match err {
        Error::InvalidArgument { field, reason } => Error::InvalidArgument {
            field: format!("{prefix}.{field}"),
            reason,
        },
        Error::InvalidFields(fields) => Error::InvalidFields(
            fields
                .into_iter()
                .map(|(field, reason)| (format!("{prefix}.{field}"), reason))
                .collect(),
        ),
        other => other,
    }
}

/// Computes the watched bundle: the answer and the data version it reflects.
pub type Compute =
    Box<dyn Fn() -> BoxFuture<'static, Result<(pb::GetKpisResponse, i64)>> + Send + Sync>;

/// The messages of a watch.
pub type WatchStream =
    Pin<Box<dyn futures::Stream<Item = std::result::Result<pb::WatchKpisResponse, Status>> + Send>>;

/// What a new watch needs.
pub struct WatchStart {
    /// The tenant watched.
    pub tenant: String,
    /// The key the call authenticated with, checked between messages.
    pub key: Option<ApiKeyId>,
    /// Shortest time between bundles; also how often the version is read.
    pub min_interval: Duration,
    /// The first bundle and its data version.
    pub first: (pb::GetKpisResponse, i64),
    /// Computes a new bundle.
    pub compute: Compute,
}

/// Opens a watch (RESOURCE_EXHAUSTED beyond the limits) and starts its loop.
pub fn start(
    watches: &Arc<Watches>,
    store: Arc<dyn Store>,
    start: WatchStart,
) -> Result<WatchStream> {
    let slot = watches.open(&start.tenant)?;
    let (tx, rx) = mpsc::channel(1);
    let heartbeat = watches.limits.heartbeat;
    let stopping = watches.stopping.clone();
    tokio::spawn(async move {
        let _slot = slot;
        run(store, start, heartbeat, stopping, tx).await;
    });
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
}

/// A bundle message.
fn kpis(response: pb::GetKpisResponse) -> pb::WatchKpisResponse {
    pb::WatchKpisResponse {
        event: Some(pb::watch_kpis_response::Event::Kpis(response)),
    }
}

/// The loop of one watch; returns when the watch ends.
async fn run(
    store: Arc<dyn Store>,
    start: WatchStart,
    heartbeat_every: Duration,
    mut stopping: watch::Receiver<bool>,
    tx: mpsc::Sender<std::result::Result<pb::WatchKpisResponse, Status>>,
) {
    let WatchStart {
        tenant,
        key,
        min_interval,
        first: (first, mut version),
        compute,
    } = start;
    if tx.send(Ok(kpis(first))).await.is_err() {
        return;
    }
    let now = tokio::time::Instant::now();
    let mut poll = tokio::time::interval_at(now + min_interval, min_interval);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heartbeat = tokio::time::interval_at(now + heartbeat_every, heartbeat_every);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ended = loop {
        let message = tokio::select! {
            () = stopped(&mut stopping) => {
                break Status::unavailable(SHUTTING_DOWN);
            }
            () = tx.closed() => return,
            _ = poll.tick() => {
                match store.data_version(&tenant).await {
                    Ok(current) if current.unwrap_or(0) > version => {}
                    Ok(_) => continue,
                    Err(err) => break err.into(),
                }
                if let Some(status) = revoked(store.as_ref(), key.as_ref()).await {
                    break status;
                }
                match compute().await {
                    Ok((response, computed_at)) => {
                        version = version.max(computed_at);
                        heartbeat.reset();
                        kpis(response)
                    }
                    Err(err) => break Status::from(within("request", err)),
                }
            }
            _ = heartbeat.tick() => {
                if let Some(status) = revoked(store.as_ref(), key.as_ref()).await {
                    break status;
                }
                pb::WatchKpisResponse {
                    event: Some(pb::watch_kpis_response::Event::Heartbeat(pb::WatchHeartbeat {
                        sent_at: Some(crate::api::convert::time::timestamp_to_proto(
                            chrono::Utc::now(),
                        )),
                    })),
                }
            }
        };
        if tx.send(Ok(message)).await.is_err() {
            return;
        }
    };
    let _ = tx.send(Err(ended)).await;
}

/// Resolves once the server is shutting down.
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    if stopping.wait_for(|stopping| *stopping).await.is_err() {
        // No shutdown signal (handlers built without a server): never.
        std::future::pending::<()>().await;
    }
}

/// The status ending a watch whose API key was revoked, if it was.
async fn revoked(store: &dyn Store, key: Option<&ApiKeyId>) -> Option<Status> {
    check_key_still_valid(store, key?).await.err()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn duration(seconds: i64, nanos: i32) -> prost_types::Duration {
        prost_types::Duration { seconds, nanos }
    }

    #[test]
    fn min_intervals_are_checked() {
        assert_eq!(parse_min_interval(None).ok(), Some(Duration::from_secs(1)));
        assert_eq!(
            parse_min_interval(Some(&duration(0, 100_000_000))).ok(),
            Some(Duration::from_millis(100))
        );
        assert_eq!(
            parse_min_interval(Some(&duration(3600, 0))).ok(),
            Some(Duration::from_secs(3600))
        );
        for bad in [
            duration(0, 99_999_999),
            duration(3600, 1),
            duration(-1, 0),
            duration(0, -5),
        ] {
            let err = parse_min_interval(Some(&bad)).expect_err("out of range");
            assert_eq!(
                err.to_string(),
                "min_interval: must be between 100ms and 1 hour"
            );
        }
    }

    #[test]
    fn limits_count_per_tenant_and_per_server() {
        let (_tx, rx) = watch::channel(false);
        let watches = Watches::new(
            WatchLimits {
                per_tenant: 2,
                total: 3,
                heartbeat: Duration::from_secs(15),
            },
            rx,
        );
        let a1 = watches.open("a").expect("a1");
        let _a2 = watches.open("a").expect("a2");
        assert_eq!(
            watches.open("a").err().map(|e| e.to_string()),
            Some("this tenant has 2 KPI watches open, its limit; close one first".into())
        );
        let _b1 = watches.open("b").expect("b1");
        assert_eq!(
            watches.open("c").err().map(|e| e.to_string()),
            Some("the server has 3 KPI watches open, its limit; retry later".into())
        );
        drop(a1);
        let _c1 = watches.open("c").expect("a slot was freed");
    }

    #[test]
    fn embedded_field_paths_are_prefixed() {
        let err = within("request", Error::invalid("period", "required"));
        assert_eq!(err.to_string(), "request.period: required");
    }
}
