//! The KPI catalog and the engine that computes KPI bundles.
//!
//! * [`catalog`] — every KPI's id, name, unit, formula and direction; the
//!   source of `ListKpis` and `docs/kpis.md`.
//! * [`engine`] — pure computation from a tenant's records, settings, a scope
//!   and a period (values, comparisons, funnel, series, breakdowns).
//! * [`index`] — per-snapshot lookups implementing SPEC §5's state and
//!   attribution rules (team at an instant, stage at an instant, MRR at an
//!   instant, team subtrees).
//! * [`rollup`] — prefix sums and stocks built with the index, so additive
//!   figures of a period and stocks at an instant cost binary searches.
//! * [`value`] — the value type the engine returns.

pub mod catalog;
pub mod engine;
pub mod index;
pub mod rollup;
pub mod value;

pub use catalog::{CATALOG, KpiDef, Unit};
pub use engine::{BreakdownRow, Bundle, ComparisonKind, Dimension, Engine, FunnelRow};
pub use value::{ComparisonValue, KpiValue};
