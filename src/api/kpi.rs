//! KpiService handlers.
