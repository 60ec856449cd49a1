//! salesmetrics: a gRPC service that turns raw sales records into sales KPIs.
//!
//! The data path, one module per step:
//!
//! * [`proto`] — code generated from `proto/salesmetrics/v1` (the public contract).
//! * [`api`] — tonic handlers; converts proto messages into validated
//!   [`domain`] records (`TryFrom`, errors name the field path) and back.
//! * [`domain`] — records, validation rules, tenant settings, periods (no I/O).
//! * [`store`] — the [`store::Store`] trait with one implementation per backend
//!   (SQLite embedded, PostgreSQL for scale), chosen once from the database URL.
//! * [`kpi`] — the KPI catalog and the engine that computes bundles from
//!   a tenant's records.
//! * [`client`] — the client subcommands of the binary (kpis, import, export, demo…).
//! * [`auth`] — API keys, the admin token, and the layer that authenticates
//!   and limits every call.
//! * [`server`], [`config`] — settings, wiring of the gRPC services, health,
//!   reflection and graceful shutdown.
//! * [`metrics`], [`telemetry`] — Prometheus metrics (`--metrics-listen`),
//!   the per-call layer that counts calls and opens their spans, logging and
//!   OTLP span export (`--otlp-endpoint`).
//! * [`bench`] — `salesmetrics bench`, the benchmark harness (a client that
//!   starts the server as a child process).

pub mod api;
pub mod auth;
pub mod bench;
pub mod cli;
pub mod client;
pub mod config;
pub mod domain;
pub mod error;
pub mod kpi;
pub mod metrics;
pub mod proto;
pub mod server;
pub mod store;
pub mod telemetry;
