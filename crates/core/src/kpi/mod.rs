//! The KPI catalog and the engine that computes KPI bundles.
//!
//! * [`catalog`] — the KPI definition type, the catalog order, and
//!   `docs/kpis.md`; the source of `ListKpis`.
//! * `defs` — every KPI's definition (id, name, unit, formula, direction and
//!   compute function), one module per part of the catalog, next to the
//!   figures it reads.
//! * `calc` — the computation of one (scope, period) the definitions read:
//!   scope resolution, memoised figures, reading primitives.
//! * [`engine`] — pure computation from a tenant's records, settings, a scope
//!   and a period (values, comparisons, funnel, series, breakdowns).
//! * [`index`] — per-snapshot lookups implementing the state and
//!   attribution rules (team at an instant, stage at an instant, MRR at an
//!   instant, team subtrees).
//! * [`rollup`] — prefix sums and stocks built with the index, so additive
//!   figures of a period and stocks at an instant cost binary searches.
//! * [`value`] — the value type the engine returns.
//! * `reference` (tests and the `testkit` feature) — every figure by a scan
//!   of every record, the oracle the rollups are tested against.

mod calc;
pub mod catalog;
mod defs;
pub mod engine;
pub mod index;
#[cfg(any(test, feature = "testkit"))]
mod reference;
pub mod rollup;
pub mod value;

pub use catalog::{CATALOG, KpiDef, Unit};
pub use engine::{BreakdownRow, Bundle, ComparisonKind, Dimension, Engine, FunnelRow};
pub use value::{ComparisonValue, KpiValue};
