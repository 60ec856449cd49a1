//! Shared test fixtures: small hand-checked datasets and, for each, ONE table
//! of the KPI values computed by hand from the definitions in docs/kpis.md.
//!
//! The engine's unit tests (`kpi::engine` tests) compute these datasets
//! directly; the service's integration tests (`tests/api`) convert the same
//! records to proto with the service's own conversion, ingest them over
//! gRPC and check the same tables, so a fixture and its expected values are
//! written once.
//!
//! * [`build`] — terse builders for domain records (tests only).
//! * [`rich`] — March 2024 with three reps, two team trees and every record
//!   type: a hand-computed value for every catalog KPI, plus TEAM and REP
//!   scopes and February.
//! * [`appendix`] — the three worked examples (a rep moving team, MRR
//!   movements, funnel and pipeline) with every number they list.
//! * [`periods`] — a New York month across a DST change and a fiscal year
//!   starting in April.
//!
//! Compiled for this crate's tests and, with the `testkit` feature, for other
//! crates' tests; never part of a release build.

pub mod appendix;
pub mod build;
pub mod periods;
pub mod rich;

use crate::domain::Scope;

/// A scope named in a table of expected values (a `const`-friendly
/// [`Scope`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeRef {
    /// The whole tenant.
    Company,
    /// A team (and its sub-teams), by id.
    Team(&'static str),
    /// A rep, by id.
    Rep(&'static str),
}

impl ScopeRef {
    /// The domain scope this names.
    pub fn to_scope(self) -> Scope {
        match self {
            ScopeRef::Company => Scope::Company,
            ScopeRef::Team(id) => Scope::Team(id.to_string()),
            ScopeRef::Rep(id) => Scope::Rep(id.to_string()),
        }
    }
}

/// A KPI id and its expected value; `None` means undefined (with a reason).
pub type Expected = (&'static str, Option<f64>);

/// An [`Expected`] value for one scope.
pub type ScopedExpected = (ScopeRef, &'static str, Option<f64>);

/// Seconds in a day.
pub const DAY: f64 = 86_400.0;
