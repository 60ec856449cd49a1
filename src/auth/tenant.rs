//! Which tenant a call acts for. The authentication layer resolves it from
//! the caller's credentials and puts a [`TenantId`] into the request's
//! extensions; handlers read it with [`tenant_of`]. The tenant never comes
//! from a request body.

use tonic::Request;

/// The tenant a request acts for, put into the request's extensions by the
/// authentication layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantId(pub String);

pub use crate::domain::DEFAULT_TENANT;

/// The tenant of a request: the one the authentication layer resolved, or
/// [`DEFAULT_TENANT`] when the server runs without authentication.
pub fn tenant_of<T>(request: &Request<T>) -> String {
    request
        .extensions()
        .get::<TenantId>()
        .map(|t| t.0.clone())
        .unwrap_or_else(|| DEFAULT_TENANT.to_string())
}
