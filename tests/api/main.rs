//! The integration test suite: one binary, a real server per test, real
//! SQLite files and (with `TEST_DATABASE_URL`) a real PostgreSQL.

mod abuse;
mod cli;
mod cli_docs;
mod cli_secure;
mod connect;
mod dashboard;
mod db;
mod grpc_web;
mod harness;
mod ingest;
mod kpi;
mod live;
mod observability;
mod process;
mod reliability;
mod security;
mod service;
mod store;
mod watch;
