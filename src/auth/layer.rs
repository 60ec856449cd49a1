//! The tower layer that authenticates and limits every call.
//!
//! Calls are classified by path, default-deny:
//!
//! * `/grpc.health.v1.Health/*` and `/grpc.reflection.*` are open and
//!   unlimited (probes must work on an overloaded server);
//! * `/salesmetrics.v1.AdminService/*` needs the admin token when one is
//!   configured;
//! * everything else needs a tenant API key when authentication is on, and
//!   acts on tenant `default` when it is off.
//!
//! Every call that is not open then takes a slot of the global concurrency
//! limit (none free → RESOURCE_EXHAUSTED at once: load shedding, not
//! queueing; the slot is held until the response body ends, so an open
//! stream counts), one token of its tenant's rate limit (→
//! RESOURCE_EXHAUSTED), and, when the client sent no `grpc-timeout`, the
//! default deadline (→ DEADLINE_EXCEEDED). A `grpc-timeout` from the client
//! is capped by tonic's `Server::timeout` (the configured maximum).
//!
//! Failed authentication is UNAUTHENTICATED with the same message whatever
//! was wrong (missing header, malformed key, unknown id, wrong secret,
//! revoked key), so an answer never helps guessing. Keys are looked up on
//! every call (one primary-key read), so a revoked key is refused at once,
//! on every replica; a key id found unknown or revoked is remembered for a
//! short while ([`RefusedKeys`]), so a flood of such keys does not read the
//! database per call. Refusals are logged at most once per second per
//! reason, with the number of refusals not logged since ([`LogSampler`]).
//!
//! The layer puts the id of the key a call authenticated with into the
//! request extensions ([`ApiKeyId`]), so a long stream can check, batch by
//! batch, that its key was not revoked meanwhile ([`check_key_still_valid`]).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;
use tonic::codegen::http::{self, HeaderMap};
use tonic::codegen::{Body, Bytes, Service};

use super::keys::{self, AdminToken};
use super::rate::RateLimiter;
use crate::auth::{DEFAULT_TENANT, TenantId};
use crate::metrics::Metrics;
use crate::store::Store;

/// The one answer to every failed authentication.
const UNAUTHENTICATED: &str = "missing or invalid credentials";

/// What the layer enforces.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Whether tenant services need an API key.
    pub require_api_key: bool,
    /// The admin credential; `None` leaves AdminService open (only allowed
    /// with authentication off, see `ServeConfig::check_security`).
    pub admin_token: Option<AdminToken>,
    /// Most calls handled at once (0: unlimited).
    pub max_concurrent_requests: usize,
    /// Most calls one authenticated tenant may have in progress at once
    /// (`None`: no share).
    pub max_calls_per_tenant: Option<usize>,
    /// Requests per second per tenant (0: unlimited).
    pub rate_limit_per_second: u32,
    /// Largest burst per tenant.
    pub rate_limit_burst: u32,
    /// Deadline of calls that carry no `grpc-timeout`.
    pub default_timeout: Duration,
    /// How long a key id found unknown or revoked is refused without a
    /// database read (zero: always read).
    pub refused_key_ttl: Duration,
    /// Most key ids remembered as refused.
    pub refused_key_capacity: usize,
}

/// The id of the API key a call authenticated with, put into the request's
/// extensions by the layer (absent without authentication).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyId(pub String);

/// Whether the key a call authenticated with is still valid (exists, not
/// revoked): checked by long calls between units of work, so that revoking
/// a key also stops the streams it opened. UNAUTHENTICATED, with the same
/// message as every refused credential, when it is not.
pub async fn check_key_still_valid(store: &dyn Store, key: &ApiKeyId) -> Result<(), Status> {
    match store.api_key(&key.0).await {
        Ok(Some(stored)) if stored.info.revoked_at_nanos.is_none() => Ok(()),
        Ok(_) => {
            tracing::info!(key_id = key.0, "API key revoked during a call; ending it");
            Err(Status::unauthenticated(UNAUTHENTICATED))
        }
        Err(err) => Err(err.into()),
    }
}

/// Key ids recently found unknown or revoked, refused without a database
/// read until their entry is `ttl` old. Both answers are stable (ids are
/// random, so an unknown id does not come into use by chance, and a revoked
/// key stays revoked), so the only cost of the cache is memory, bounded by
/// `capacity`: when it is full of live entries, an arbitrary one makes room.
#[derive(Debug)]
struct RefusedKeys {
    /// How long an entry is trusted.
    ttl: Duration,
    /// Most entries.
    capacity: usize,
    /// Key id → when it was found unknown or revoked.
    entries: Mutex<HashMap<String, Instant>>,
}

impl RefusedKeys {
    fn new(ttl: Duration, capacity: usize) -> Self {
        RefusedKeys {
            ttl,
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `key_id` was refused less than `ttl` ago.
    fn contains(&self, key_id: &str) -> bool {
        if self.ttl.is_zero() {
            return false;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(key_id) {
            Some(since) if since.elapsed() < self.ttl => true,
            Some(_) => {
                entries.remove(key_id);
                false
            }
            None => false,
        }
    }

    /// Remembers `key_id` as refused.
    fn insert(&self, key_id: &str) {
        if self.ttl.is_zero() || self.capacity == 0 {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity {
            let ttl = self.ttl;
            entries.retain(|_, since| since.elapsed() < ttl);
        }
        if entries.len() >= self.capacity
            && let Some(evicted) = entries.keys().next().cloned()
        {
            entries.remove(&evicted);
        }
        entries.insert(key_id.to_string(), Instant::now());
    }
}

/// Logs refused credentials at most once per [`LogSampler::INTERVAL`] per
/// reason, so that a flood of bad keys cannot flood the log; each line says
/// how many refusals of its reason were not logged since the last one.
#[derive(Debug, Default)]
struct LogSampler {
    /// Reason → (when it was last logged, refusals not logged since).
    reasons: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

impl LogSampler {
    const INTERVAL: Duration = Duration::from_secs(1);

    /// `Some(suppressed)` when a refusal for `reason` is to be logged now
    /// (with the number suppressed since the last line), `None` when it is
    /// only counted.
    fn sample(&self, reason: &'static str) -> Option<u64> {
        let now = Instant::now();
        let mut reasons = self.reasons.lock().unwrap_or_else(|e| e.into_inner());
        match reasons.get_mut(reason) {
            Some((last, suppressed)) if now.duration_since(*last) < Self::INTERVAL => {
                *suppressed += 1;
                None
            }
            Some((last, suppressed)) => {
                *last = now;
                Some(std::mem::take(suppressed))
            }
            None => {
                reasons.insert(reason, (now, 0));
                Some(0)
            }
        }
    }

    /// Logs a refused well-formed key, sampled.
    fn refused_key(&self, key_id: &str, reason: &'static str) {
        if let Some(suppressed) = self.sample(reason) {
            tracing::info!(
                key_id,
                reason,
                suppressed,
                "refused API key ({suppressed} more refusals for this reason not logged since the last line)"
            );
        }
    }
}

/// Shared state of every clone of the layer's service.
struct State {
    store: Arc<dyn Store>,
    settings: AuthSettings,
    concurrency: Option<Arc<Semaphore>>,
    /// Calls in progress per authenticated tenant.
    tenant_calls: Arc<Mutex<HashMap<String, usize>>>,
    rate: RateLimiter,
    /// Key ids refused without a database read.
    refused_keys: RefusedKeys,
    /// Sampling of the refusal log lines.
    refusal_log: LogSampler,
    /// Where database reads of keys are counted.
    metrics: Arc<Metrics>,
}

/// The layer; see the module docs.
#[derive(Clone)]
pub struct AuthLayer {
    state: Arc<State>,
}

impl std::fmt::Debug for AuthLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthLayer")
            .field("settings", &self.state.settings)
            .finish_non_exhaustive()
    }
}

impl AuthLayer {
    /// A layer checking keys against `store`, counting key reads into `metrics`.
    pub fn new(store: Arc<dyn Store>, settings: AuthSettings, metrics: Arc<Metrics>) -> Self {
        let concurrency = (settings.max_concurrent_requests > 0)
            .then(|| Arc::new(Semaphore::new(settings.max_concurrent_requests)));
        let rate = RateLimiter::new(settings.rate_limit_per_second, settings.rate_limit_burst);
        let refused_keys =
            RefusedKeys::new(settings.refused_key_ttl, settings.refused_key_capacity);
        AuthLayer {
            state: Arc::new(State {
                store,
                settings,
                concurrency,
                tenant_calls: Arc::default(),
                rate,
                refused_keys,
                refusal_log: LogSampler::default(),
                metrics,
            }),
        }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticated {
            inner,
            state: self.state.clone(),
        }
    }
}

/// The service the layer wraps around the router.
#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    state: Arc<State>,
}

/// What a call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guard {
    /// Health and reflection.
    Open,
    /// AdminService.
    Admin,
    /// Everything else: a tenant's data.
    Tenant,
}

fn guard_of(path: &str) -> Guard {
    if path.starts_with("/grpc.health.v1.Health/") || path.starts_with("/grpc.reflection.") {
        Guard::Open
    } else if path.starts_with("/salesmetrics.v1.AdminService/") {
        Guard::Admin
    } else {
        Guard::Tenant
    }
}

/// The bearer credential of a request, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credential) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credential.trim())
}

impl State {
    /// The tenant and key id of an API key, or the status to answer with.
    async fn tenant_of_key(&self, presented: Option<&str>) -> Result<(String, String), Status> {
        let Some((key_id, secret)) = presented.and_then(keys::parse) else {
            return Err(Status::unauthenticated(UNAUTHENTICATED));
        };
        if self.refused_keys.contains(key_id) {
            self.refusal_log
                .refused_key(key_id, "unknown or revoked (remembered)");
            return Err(Status::unauthenticated(UNAUTHENTICATED));
        }
        self.metrics.count_api_key_lookup();
        let stored = match self.store.api_key(key_id).await {
            Ok(stored) => stored,
            // UNAVAILABLE / INTERNAL as usual: the caller may retry, and
            // nothing about the key is revealed.
            Err(err) => return Err(err.into()),
        };
        let reason = match stored {
            None => "unknown",
            Some(stored) if stored.info.revoked_at_nanos.is_some() => "revoked",
            Some(stored) if !keys::verify(&stored, secret) => "wrong secret",
            Some(stored) => return Ok((stored.info.tenant_id, key_id.to_string())),
        };
        // A wrong secret is not remembered: the key's owner must still get in.
        if reason != "wrong secret" {
            self.refused_keys.insert(key_id);
        }
        self.refusal_log.refused_key(key_id, reason);
        Err(Status::unauthenticated(UNAUTHENTICATED))
    }

    /// Checks a call's credentials and rate; the tenant to act for (and the
    /// key it authenticated with), if any.
    async fn admit(
        &self,
        guard: Guard,
        headers: &HeaderMap,
    ) -> Result<Option<(String, Option<String>)>, Status> {
        match guard {
            Guard::Open => Ok(None),
            Guard::Admin => match &self.settings.admin_token {
                Some(token) if bearer(headers).is_some_and(|b| token.matches(b)) => Ok(None),
                Some(_) => Err(Status::unauthenticated(UNAUTHENTICATED)),
                None => Ok(None),
            },
            Guard::Tenant => {
                let (tenant, key_id) = if self.settings.require_api_key {
                    let (tenant, key_id) = self.tenant_of_key(bearer(headers)).await?;
                    (tenant, Some(key_id))
                } else {
                    (DEFAULT_TENANT.to_string(), None)
                };
                if !self.rate.try_acquire(&tenant) {
                    return Err(Status::resource_exhausted(
                        "request rate limit of this tenant exceeded; retry later",
                    ));
                }
                Ok(Some((tenant, key_id)))
            }
        }
    }
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Authenticated<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<PermitBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        // The clone that was polled ready serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let state = self.state.clone();
        let guard = guard_of(request.uri().path());
        // A KPI watch is long-lived: it counts against the watch limits
        // (`crate::api::watch`), not the concurrency slots, which it gives
        // back once it has started.
        let long_lived = request.uri().path() == crate::api::watch::WATCH_KPIS_PATH;
        Box::pin(async move {
            if guard == Guard::Open {
                let mut response = inner.call(request).await?;
                crate::error::relabel_request_error_response(&mut response);
                return Ok(response.map(|b| PermitBody::new(b, None)));
            }
            let permit = match &state.concurrency {
                None => None,
                Some(semaphore) => match semaphore.clone().try_acquire_owned() {
                    Ok(permit) => Some(permit),
                    Err(_) => {
                        return Ok(refuse(Status::resource_exhausted(
                            "the server is at its concurrency limit; retry later",
                        )));
                    }
                },
            };
            let mut tenant_slot = None;
            match state.admit(guard, request.headers()).await {
                Ok(Some((tenant, key_id))) => {
                    if let Some(max) = state.settings.max_calls_per_tenant {
                        match TenantSlot::take(&state.tenant_calls, &tenant, max) {
                            Some(slot) => tenant_slot = Some(slot),
                            None => {
                                return Ok(refuse(Status::resource_exhausted(format!(
                                    "this tenant has {max} calls in progress, its share of the \
                                     server's concurrency; retry when one has ended"
                                ))));
                            }
                        }
                    }
                    request.extensions_mut().insert(TenantId(tenant));
                    if let Some(key_id) = key_id {
                        request.extensions_mut().insert(ApiKeyId(key_id));
                    }
                }
                Ok(None) => {}
                Err(status) => return Ok(refuse(status)),
            }
            let has_deadline = request.headers().contains_key("grpc-timeout");
            let response = if has_deadline {
                inner.call(request).await?
            } else {
                match tokio::time::timeout(state.settings.default_timeout, inner.call(request))
                    .await
                {
                    Ok(response) => response?,
                    Err(_) => {
                        return Ok(refuse(Status::deadline_exceeded(
                            "the call took longer than the server's default deadline",
                        )));
                    }
                }
            };
            let mut response = response;
            crate::error::relabel_request_error_response(&mut response);
            if long_lived {
                return Ok(response.map(|b| PermitBody::new(b, None)));
            }
            Ok(response.map(|b| PermitBody::new(b, permit).with_tenant_slot(tenant_slot)))
        })
    }
}

/// One call in progress of a tenant, counted against its share of the
/// concurrency until dropped (with the response body, so a stream counts
/// for its whole life).
pub struct TenantSlot {
    calls: Arc<Mutex<HashMap<String, usize>>>,
    tenant: String,
}

impl TenantSlot {
    /// A slot of `tenant`, unless it holds `max` already.
    fn take(calls: &Arc<Mutex<HashMap<String, usize>>>, tenant: &str, max: usize) -> Option<Self> {
        let mut counts = calls.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(tenant.to_string()).or_default();
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(TenantSlot {
            calls: calls.clone(),
            tenant: tenant.to_string(),
        })
    }
}

impl Drop for TenantSlot {
    fn drop(&mut self) {
        let mut counts = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.tenant) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.tenant);
            }
        }
    }
}

/// A gRPC error response (status in the headers, empty body).
fn refuse<B: Default>(status: Status) -> http::Response<PermitBody<B>> {
    status.into_http::<B>().map(|b| PermitBody::new(b, None))
}

/// A response body that holds a concurrency slot until it is dropped, so a
/// streaming response counts as in flight until it ends.
#[derive(Default)]
pub struct PermitBody<B> {
    inner: B,
    _permit: Option<OwnedSemaphorePermit>,
    _tenant_slot: Option<TenantSlot>,
}

impl<B> PermitBody<B> {
    fn new(inner: B, permit: Option<OwnedSemaphorePermit>) -> Self {
        PermitBody {
            inner,
            _permit: permit,
            _tenant_slot: None,
        }
    }

    fn with_tenant_slot(mut self, slot: Option<TenantSlot>) -> Self {
        self._tenant_slot = slot;
        self
    }
}

impl<B> Body for PermitBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_health_and_reflection_are_open() {
        assert_eq!(guard_of("/grpc.health.v1.Health/Check"), Guard::Open);
        assert_eq!(
            guard_of("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            Guard::Open
        );
        assert_eq!(
            guard_of("/salesmetrics.v1.AdminService/CreateApiKey"),
            Guard::Admin
        );
        assert_eq!(
            guard_of("/salesmetrics.v1.KpiService/GetKpis"),
            Guard::Tenant
        );
        assert_eq!(guard_of("/anything.Else/X"), Guard::Tenant);
        assert_eq!(guard_of("/grpc.health.v1.HealthX/Check"), Guard::Tenant);
    }

    /// A service that answers 200 after `delay`.
    #[derive(Clone)]
    struct Slow(Duration);

    impl Service<http::Request<()>> for Slow {
        type Response = http::Response<tonic::body::Body>;
        type Error = std::convert::Infallible;
        type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            let delay = self.0;
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                Ok(http::Response::new(tonic::body::Body::default()))
            })
        }
    }

    fn grpc_status<B>(response: &http::Response<B>) -> Option<&str> {
        response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
    }

    /// Calls without `grpc-timeout` get the default deadline
    /// (DEADLINE_EXCEEDED); calls with one are left to tonic's cap.
    #[tokio::test]
    async fn the_default_deadline_applies_only_without_grpc_timeout() {
        use tower::Layer;
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = crate::store::connect(&url).await.expect("store");
        let settings = AuthSettings {
            require_api_key: false,
            admin_token: None,
            max_concurrent_requests: 0,
            max_calls_per_tenant: None,
            rate_limit_per_second: 0,
            rate_limit_burst: 0,
            default_timeout: Duration::from_millis(50),
            refused_key_ttl: Duration::from_secs(10),
            refused_key_capacity: 10,
        };
        let mut service = AuthLayer::new(store, settings, Arc::new(Metrics::new()))
            .layer(Slow(Duration::from_millis(500)));
        let request = || {
            http::Request::builder()
                .uri("/salesmetrics.v1.KpiService/GetKpis")
                .body(())
                .expect("request")
        };
        let timed_out = service.call(request()).await.expect("response");
        assert_eq!(grpc_status(&timed_out), Some("4"), "DEADLINE_EXCEEDED");

        let mut with_deadline = request();
        with_deadline
            .headers_mut()
            .insert("grpc-timeout", "10S".parse().expect("header"));
        let served = service.call(with_deadline).await.expect("response");
        assert_eq!(grpc_status(&served), None, "the inner answer");
    }

    #[test]
    fn bearer_credentials_are_read_case_insensitively() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert("authorization", "bearer abc".parse().unwrap());
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer(&headers), None);
    }

    #[test]
    fn refused_keys_expire_and_stay_bounded() {
        let cache = RefusedKeys::new(Duration::from_millis(50), 3);
        for id in ["a", "b", "c", "d", "e"] {
            cache.insert(id);
        }
        assert!(cache.contains("e"), "the newest entry is kept");
        let live = ["a", "b", "c", "d", "e"]
            .iter()
            .filter(|id| cache.contains(id))
            .count();
        assert_eq!(live, 3, "at most the capacity");
        std::thread::sleep(Duration::from_millis(80));
        assert!(!cache.contains("e"), "expired");
        let off = RefusedKeys::new(Duration::ZERO, 3);
        off.insert("a");
        assert!(!off.contains("a"));
    }

    #[test]
    fn refusals_are_logged_once_per_interval_per_reason() {
        let sampler = LogSampler::default();
        assert_eq!(sampler.sample("unknown"), Some(0));
        assert_eq!(sampler.sample("unknown"), None);
        assert_eq!(sampler.sample("unknown"), None);
        assert_eq!(sampler.sample("revoked"), Some(0), "reasons are separate");
        {
            let mut reasons = sampler.reasons.lock().unwrap();
            let last = &mut reasons.get_mut("unknown").unwrap().0;
            *last = last.checked_sub(LogSampler::INTERVAL).unwrap_or(*last);
        }
        assert_eq!(sampler.sample("unknown"), Some(2), "the suppressed count");
    }
}
