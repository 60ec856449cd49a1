//! Who may call what: API keys for tenants, the admin token for
//! `AdminService`, and the limits applied before a handler runs.
//!
//! * [`keys`] — key format, salted hashes, the admin token (no I/O).
//! * [`rate`] — per-tenant token buckets.
//! * [`failures`] — failed authentications per client address.
//! * [`tenant`] — the tenant a call acts for, as handlers read it.
//! * [`layer`] — the tower layer wrapped around every service: it classifies
//!   each call by its path, authenticates it, puts the tenant into the
//!   request extensions ([`TenantId`]), and applies the
//!   concurrency limit, the rate limit and the default deadline.
//!
//! The rules are described for operators in `docs/security.md`.

pub mod failures;
pub mod keys;
pub mod layer;
pub mod rate;
pub mod tenant;

pub use keys::AdminToken;
pub use layer::{ApiKeyId, AuthLayer, AuthSettings, check_key_still_valid};
pub use tenant::{DEFAULT_TENANT, TenantId, tenant_of};
