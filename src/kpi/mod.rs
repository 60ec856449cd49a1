//! The KPI catalog and the engine that computes KPI bundles.
