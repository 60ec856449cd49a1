//! The core of salesmetrics: the domain and the KPI engine, with no I/O.
//!
//! * [`domain`] — validated records, tenant settings, scopes and periods.
//! * [`kpi`] — the KPI catalog and the engine that computes bundles from a
//!   tenant's records.
//! * `testkit` — shared test fixtures with hand-computed KPI values (this
//!   crate's tests, and other crates' with the `testkit` feature).
//!
//! Nothing here reads a file, a socket or a clock of its own: the service
//! (the `salesmetrics` crate) converts proto messages into these types,
//! stores them and hands them to the engine. The crate depends on no async
//! runtime, database driver or RPC framework, and the compiler keeps it so.

pub mod domain;
pub mod heap;
pub mod kpi;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
