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
//! on every replica.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;
use tonic::codegen::http::{self, HeaderMap};
use tonic::codegen::{Body, Bytes, Service};

use super::keys::{self, AdminToken};
use super::rate::RateLimiter;
use crate::auth::{DEFAULT_TENANT, TenantId};
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
    /// Requests per second per tenant (0: unlimited).
    pub rate_limit_per_second: u32,
    /// Largest burst per tenant.
    pub rate_limit_burst: u32,
    /// Deadline of calls that carry no `grpc-timeout`.
    pub default_timeout: Duration,
}

/// Shared state of every clone of the layer's service.
struct State {
    store: Arc<dyn Store>,
    settings: AuthSettings,
    concurrency: Option<Arc<Semaphore>>,
    rate: RateLimiter,
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
    /// A layer checking keys against `store`.
    pub fn new(store: Arc<dyn Store>, settings: AuthSettings) -> Self {
        let concurrency = (settings.max_concurrent_requests > 0)
            .then(|| Arc::new(Semaphore::new(settings.max_concurrent_requests)));
        let rate = RateLimiter::new(settings.rate_limit_per_second, settings.rate_limit_burst);
        AuthLayer {
            state: Arc::new(State {
                store,
                settings,
                concurrency,
                rate,
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
    /// The tenant of an API key, or the status to answer with.
    async fn tenant_of_key(&self, presented: Option<&str>) -> Result<String, Status> {
        let Some((key_id, secret)) = presented.and_then(keys::parse) else {
            return Err(Status::unauthenticated(UNAUTHENTICATED));
        };
        let stored = match self.store.api_key(key_id).await {
            Ok(stored) => stored,
            // UNAVAILABLE / INTERNAL as usual: the caller may retry, and
            // nothing about the key is revealed.
            Err(err) => return Err(err.into()),
        };
        match stored {
            Some(stored)
                if stored.info.revoked_at_nanos.is_none() && keys::verify(&stored, secret) =>
            {
                Ok(stored.info.tenant_id)
            }
            _ => {
                tracing::info!(key_id, "refused API key (unknown, wrong or revoked)");
                Err(Status::unauthenticated(UNAUTHENTICATED))
            }
        }
    }

    /// Checks a call's credentials and rate; the tenant to act for, if any.
    async fn admit(&self, guard: Guard, headers: &HeaderMap) -> Result<Option<String>, Status> {
        match guard {
            Guard::Open => Ok(None),
            Guard::Admin => match &self.settings.admin_token {
                Some(token) if bearer(headers).is_some_and(|b| token.matches(b)) => Ok(None),
                Some(_) => Err(Status::unauthenticated(UNAUTHENTICATED)),
                None => Ok(None),
            },
            Guard::Tenant => {
                let tenant = if self.settings.require_api_key {
                    self.tenant_of_key(bearer(headers)).await?
                } else {
                    DEFAULT_TENANT.to_string()
                };
                if !self.rate.try_acquire(&tenant) {
                    return Err(Status::resource_exhausted(
                        "request rate limit of this tenant exceeded; retry later",
                    ));
                }
                Ok(Some(tenant))
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
            match state.admit(guard, request.headers()).await {
                Ok(Some(tenant)) => {
                    request.extensions_mut().insert(TenantId(tenant));
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
            Ok(response.map(|b| PermitBody::new(b, permit)))
        })
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
}

impl<B> PermitBody<B> {
    fn new(inner: B, permit: Option<OwnedSemaphorePermit>) -> Self {
        PermitBody {
            inner,
            _permit: permit,
        }
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
            rate_limit_per_second: 0,
            rate_limit_burst: 0,
            default_timeout: Duration::from_millis(50),
        };
        let mut service = AuthLayer::new(store, settings).layer(Slow(Duration::from_millis(500)));
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
}
