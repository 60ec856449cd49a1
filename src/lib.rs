//! salesmetrics: a gRPC service that turns raw sales records into sales KPIs.
//!
//! The data path, one module per step:
//!
//! * [`proto`] — code generated from `proto/salesmetrics/v1` (the public contract).
//! * [`api`] — tonic handlers; converts proto messages into validated
//!   [`domain`] records (`TryFrom`, errors name the field path) and back.
//! * [`domain`] — records, validation rules, tenant settings, periods (no I/O;
//!   the `salesmetrics-core` crate, re-exported).
//! * [`store`] — the [`store::Store`] trait with one implementation per backend
//!   (SQLite embedded, PostgreSQL for scale), chosen once from the database URL.
//! * [`kpi`] — the KPI catalog and the engine that computes bundles from
//!   a tenant's records (`salesmetrics-core`, re-exported).
//! * [`snapshot`] — per-tenant snapshots of the records and their index,
//!   shared by queries until the tenant's data changes.
//! * [`client`] — the client subcommands of the binary (kpis, import, export, demo, report…).
//! * [`suggest`] — "did you mean": the closest known id to a mistyped one,
//!   for the CLI and the server's not-found answers alike.
//! * [`dashboard`] — the browser dashboard served at `/` on the gRPC listener.
//! * [`auth`] — API keys, the admin token, and the layer that authenticates
//!   and limits every call.
//! * [`server`], [`config`] — settings, wiring of the gRPC services, health,
//!   reflection and graceful shutdown.
//! * [`net`] — the accept loop: connection caps, the handshake and idle
//!   timeouts, the open-files limit.
//! * [`metrics`], [`telemetry`] — Prometheus metrics (`--metrics-listen`),
//!   the per-call layer that counts calls and opens their spans, logging and
//!   OTLP span export (`--otlp-endpoint`).
//!
//! The benchmark harness is the `salesmetrics-bench` crate (`crates/bench`),
//! a client of this library that is not part of the production binary.

pub mod api;
pub mod auth;
pub mod cli;
pub mod client;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod metrics;
pub mod net;
pub mod proto;
pub mod server;
pub mod snapshot;
pub mod store;
pub mod suggest;
pub mod telemetry;

pub use salesmetrics_core::{domain, heap, kpi};
