//! Prometheus metrics: what the service counts, and the text it serves on
//! `--metrics-listen` (exposition format 0.0.4).
//!
//! * [`Metrics`] is the registry: counters and histograms kept in memory,
//!   shared by every part of the server through an `Arc`.
//! * [`layer`] counts every gRPC call (method, status code, duration) and
//!   opens a tracing span per call (exported over OTLP when configured).
//! * [`http`] serves `GET /metrics` on its own port.
//!
//! Why hand-written rather than a metrics crate: the service needs a handful
//! of counters, one histogram and a few gauges, all of which fit in this file
//! (one mutex, no global registry, no extra dependencies). The names and
//! labels are documented in `docs/operations.md` ("Metrics and tracing").
//!
//! Labels are bounded: a `method` label is only ever one of the methods the
//! server serves (anything else is counted as `unknown`), and a `type` label
//! one of the record types, so a client cannot grow the registry.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;

use crate::domain::RecordType;
use crate::proto::v1 as pb;
use crate::store::PoolUsage;

pub mod http;
pub mod layer;

/// Upper bounds, in seconds, of the RPC duration histogram buckets.
pub const DURATION_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// The `method` label of calls to paths the server does not serve.
pub const UNKNOWN_METHOD: &str = "unknown";

/// The `type` label of records whose type was not set.
const UNSPECIFIED_TYPE: &str = "unspecified";

/// gRPC status codes by number, as the `code` label spells them.
const CODE_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The `code` label of a `grpc-status` value; anything unparseable is UNKNOWN.
pub fn code_name(grpc_status: &[u8]) -> &'static str {
    std::str::from_utf8(grpc_status)
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .and_then(|n| CODE_NAMES.get(n).copied())
        .unwrap_or("UNKNOWN")
}

/// Calls of one method: how many per status code, and how long they took.
#[derive(Debug, Default)]
struct MethodStats {
    /// Calls per status code name.
    codes: BTreeMap<&'static str, u64>,
    /// Calls per duration bucket (not cumulative; [`DURATION_BUCKETS`] order,
    /// then one for longer calls).
    buckets: [u64; DURATION_BUCKETS.len() + 1],
    /// Sum of all durations, in seconds.
    seconds: f64,
    /// Calls.
    count: u64,
}

/// Per record type: records ACCEPTED, STALE and REJECTED by ingest.
#[derive(Debug, Default)]
struct RecordCounters {
    ingested: AtomicU64,
    stale: AtomicU64,
    rejected: AtomicU64,
}

/// What happened to one ingested record, as the record counters count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Written (inserted or replaced).
    Ingested,
    /// Skipped: the stored record has a newer version.
    Stale,
    /// Refused: invalid, or part of a refused batch.
    Rejected,
}

/// Picks one counter of a [`RecordCounters`].
type CounterOf = fn(&RecordCounters) -> &AtomicU64;

/// The registry; see the module docs.
#[derive(Debug)]
pub struct Metrics {
    /// Every `/package.Service/Method` path the server serves.
    known_methods: HashSet<Arc<str>>,
    /// [`UNKNOWN_METHOD`], shared.
    unknown_method: Arc<str>,
    /// Call statistics per method path.
    rpc: Mutex<BTreeMap<String, MethodStats>>,
    /// Record outcomes per [`RecordType::ALL`] index, then one for records
    /// without a type.
    records: [RecordCounters; RecordType::ALL.len() + 1],
    /// API keys read from the database to authenticate a call.
    api_key_lookups: AtomicU64,
    /// KPI snapshots loaded in full.
    snapshot_full_loads: AtomicU64,
    /// KPI snapshots brought up to date from the change feed.
    snapshot_catch_ups: AtomicU64,
    /// Estimated bytes of the cached KPI snapshots.
    snapshot_cache_bytes: AtomicU64,
    /// Client connections open now.
    connections_open: AtomicU64,
    /// Connections closed at once, per [`ConnectionRefusal::ALL`] index.
    connections_refused: [AtomicU64; ConnectionRefusal::ALL.len()],
    /// Connections closed after going without a call for the idle timeout.
    connections_idle_closed: AtomicU64,
}

/// Why a new connection was closed before tonic served it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionRefusal {
    /// The server holds `--max-connections` already.
    MaxConnections,
    /// The client's address holds `--max-connections-per-peer` already.
    MaxConnectionsPerPeer,
    /// Nothing was sent within `--handshake-timeout-seconds`.
    HandshakeTimeout,
}

impl ConnectionRefusal {
    /// Every reason, in the order of the `reason` labels.
    pub const ALL: [ConnectionRefusal; 3] = [
        ConnectionRefusal::MaxConnections,
        ConnectionRefusal::MaxConnectionsPerPeer,
        ConnectionRefusal::HandshakeTimeout,
    ];

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionRefusal::MaxConnections => "max_connections",
            ConnectionRefusal::MaxConnectionsPerPeer => "max_connections_per_peer",
            ConnectionRefusal::HandshakeTimeout => "handshake_timeout",
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// An empty registry knowing the methods of the salesmetrics, health and
    /// reflection services.
    pub fn new() -> Self {
        let mut known_methods = HashSet::new();
        for set in [
            pb::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
        ] {
            known_methods.extend(method_paths(set).into_iter().map(Arc::from));
        }
        for version in ["v1", "v1alpha"] {
            let path = format!("/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo");
            known_methods.insert(Arc::from(path));
        }
        Metrics {
            known_methods,
            unknown_method: Arc::from(UNKNOWN_METHOD),
            rpc: Mutex::new(BTreeMap::new()),
            records: Default::default(),
            api_key_lookups: AtomicU64::new(0),
            snapshot_full_loads: AtomicU64::new(0),
            snapshot_catch_ups: AtomicU64::new(0),
            snapshot_cache_bytes: AtomicU64::new(0),
            connections_open: AtomicU64::new(0),
            connections_refused: Default::default(),
            connections_idle_closed: AtomicU64::new(0),
        }
    }

    /// Counts a client connection opened.
    pub fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a client connection closed.
    pub fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Counts a connection closed before it was served.
    pub fn count_connection_refused(&self, reason: ConnectionRefusal) {
        self.connections_refused[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection closed for going without a call too long.
    pub fn count_idle_connection_closed(&self) {
        self.connections_idle_closed.fetch_add(1, Ordering::Relaxed);
    }

    /// The `method` label of a request path: the path itself if the server
    /// serves it, else [`UNKNOWN_METHOD`].
    pub fn method_label(&self, path: &str) -> Arc<str> {
        self.known_methods
            .get(path)
            .unwrap_or(&self.unknown_method)
            .clone()
    }

    /// Counts one finished call of `method` (a [`Metrics::method_label`]).
    pub fn observe_rpc(&self, method: &str, code: &'static str, duration: Duration) {
        let seconds = duration.as_secs_f64();
        let bucket = DURATION_BUCKETS
            .iter()
            .position(|&le| seconds <= le)
            .unwrap_or(DURATION_BUCKETS.len());
        let mut rpc = self.rpc.lock().unwrap_or_else(|e| e.into_inner());
        let stats = match rpc.get_mut(method) {
            Some(stats) => stats,
            None => rpc.entry(method.to_string()).or_default(),
        };
        *stats.codes.entry(code).or_default() += 1;
        stats.buckets[bucket] += 1;
        stats.seconds += seconds;
        stats.count += 1;
    }

    /// Counts one ingested record's outcome under its type (`None`: a
    /// record whose type could not be told, counted as `unspecified`).
    pub fn count_record(&self, record_type: Option<RecordType>, outcome: RecordOutcome) {
        let index = record_type
            .and_then(|t| RecordType::ALL.iter().position(|&a| a == t))
            .unwrap_or(RecordType::ALL.len());
        let counters = &self.records[index];
        let counter = match outcome {
            RecordOutcome::Ingested => &counters.ingested,
            RecordOutcome::Stale => &counters.stale,
            RecordOutcome::Rejected => &counters.rejected,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one read of an API key from the database by the
    /// authentication layer.
    pub fn count_api_key_lookup(&self) {
        self.api_key_lookups.fetch_add(1, Ordering::Relaxed);
    }

    /// API keys read from the database to authenticate calls, so far.
    pub fn api_key_lookups(&self) -> u64 {
        self.api_key_lookups.load(Ordering::Relaxed)
    }

    /// Counts one refresh of a KPI snapshot: a full load, or a catch-up
    /// from the change feed.
    pub fn count_snapshot_refresh(&self, full_load: bool) {
        let counter = if full_load {
            &self.snapshot_full_loads
        } else {
            &self.snapshot_catch_ups
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Sets the estimated bytes of the cached KPI snapshots.
    pub fn set_snapshot_cache(&self, bytes: u64) {
        self.snapshot_cache_bytes.store(bytes, Ordering::Relaxed);
    }

    /// KPI snapshots loaded in full and caught up, so far.
    pub fn snapshot_refreshes(&self) -> (u64, u64) {
        (
            self.snapshot_full_loads.load(Ordering::Relaxed),
            self.snapshot_catch_ups.load(Ordering::Relaxed),
        )
    }

    /// Every metric in the Prometheus text format 0.0.4, with `pools` (the
    /// store's [`Store::pool_usage`](crate::store::Store::pool_usage) now).
    pub fn render(&self, pools: &[PoolUsage]) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing to a String cannot fail.
        let _ = self.write_all(&mut out, pools);
        out
    }

    fn write_all(&self, out: &mut String, pools: &[PoolUsage]) -> std::fmt::Result {
        header(
            out,
            "salesmetrics_build_info",
            "gauge",
            "Always 1; the version of the running binary is a label.",
        )?;
        writeln!(
            out,
            "salesmetrics_build_info{{version=\"{}\"}} 1",
            escape(env!("CARGO_PKG_VERSION"))
        )?;

        let rpc = self.rpc.lock().unwrap_or_else(|e| e.into_inner());
        header(
            out,
            "salesmetrics_rpc_requests_total",
            "counter",
            "gRPC calls finished, by method and status code.",
        )?;
        for (method, stats) in rpc.iter() {
            for (code, n) in &stats.codes {
                writeln!(
                    out,
                    "salesmetrics_rpc_requests_total{{method=\"{}\",code=\"{code}\"}} {n}",
                    escape(method)
                )?;
            }
        }
        header(
            out,
            "salesmetrics_rpc_duration_seconds",
            "histogram",
            "Time from a call's arrival until its status is sent, by method.",
        )?;
        for (method, stats) in rpc.iter() {
            let method = escape(method);
            let mut cumulative = 0;
            for (le, n) in DURATION_BUCKETS.iter().zip(&stats.buckets) {
                cumulative += n;
                writeln!(
                    out,
                    "salesmetrics_rpc_duration_seconds_bucket{{method=\"{method}\",le=\"{le}\"}} {cumulative}"
                )?;
            }
            writeln!(
                out,
                "salesmetrics_rpc_duration_seconds_bucket{{method=\"{method}\",le=\"+Inf\"}} {}",
                stats.count
            )?;
            writeln!(
                out,
                "salesmetrics_rpc_duration_seconds_sum{{method=\"{method}\"}} {}",
                stats.seconds
            )?;
            writeln!(
                out,
                "salesmetrics_rpc_duration_seconds_count{{method=\"{method}\"}} {}",
                stats.count
            )?;
        }
        drop(rpc);

        let types = RecordType::ALL
            .iter()
            .map(|t| t.as_str())
            .chain([UNSPECIFIED_TYPE]);
        let families: [(&str, &str, CounterOf); 3] = [
            (
                "salesmetrics_records_ingested_total",
                "Records stored by ingest (outcome ACCEPTED), by record type.",
                |c| &c.ingested,
            ),
            (
                "salesmetrics_records_stale_total",
                "Records skipped by ingest because their version was not newer (outcome STALE), by record type.",
                |c| &c.stale,
            ),
            (
                "salesmetrics_records_rejected_total",
                "Records refused by ingest (outcome REJECTED), by record type.",
                |c| &c.rejected,
            ),
        ];
        for (name, help, counter) in families {
            header(out, name, "counter", help)?;
            for (record_type, counters) in types.clone().zip(&self.records) {
                let n = counter(counters).load(Ordering::Relaxed);
                writeln!(out, "{name}{{type=\"{record_type}\"}} {n}")?;
            }
        }

        header(
            out,
            "salesmetrics_api_key_lookups_total",
            "counter",
            "API keys read from the database to authenticate calls (key ids recently found unknown or revoked are refused without a read).",
        )?;
        writeln!(
            out,
            "salesmetrics_api_key_lookups_total {}",
            self.api_key_lookups()
        )?;

        let (full_loads, catch_ups) = self.snapshot_refreshes();
        header(
            out,
            "salesmetrics_snapshot_full_loads_total",
            "counter",
            "KPI snapshots loaded in full (a tenant's first query, or a snapshot older than the retained deletions).",
        )?;
        writeln!(out, "salesmetrics_snapshot_full_loads_total {full_loads}")?;
        header(
            out,
            "salesmetrics_snapshot_catch_ups_total",
            "counter",
            "KPI snapshots brought up to date from the change feed instead of a full load.",
        )?;
        writeln!(out, "salesmetrics_snapshot_catch_ups_total {catch_ups}")?;
        header(
            out,
            "salesmetrics_snapshot_cache_bytes",
            "gauge",
            "Estimated memory of the cached KPI snapshots (records and indexes), in bytes.",
        )?;
        writeln!(
            out,
            "salesmetrics_snapshot_cache_bytes {}",
            self.snapshot_cache_bytes.load(Ordering::Relaxed)
        )?;

        header(
            out,
            "salesmetrics_connections_open",
            "gauge",
            "Client connections open now (gRPC port).",
        )?;
        writeln!(
            out,
            "salesmetrics_connections_open {}",
            self.connections_open.load(Ordering::Relaxed)
        )?;
        header(
            out,
            "salesmetrics_connections_refused_total",
            "counter",
            "Client connections closed before any call, by reason (max_connections, max_connections_per_peer, handshake_timeout).",
        )?;
        for (reason, n) in ConnectionRefusal::ALL.iter().zip(&self.connections_refused) {
            writeln!(
                out,
                "salesmetrics_connections_refused_total{{reason=\"{}\"}} {}",
                reason.as_str(),
                n.load(Ordering::Relaxed)
            )?;
        }
        header(
            out,
            "salesmetrics_connections_idle_closed_total",
            "counter",
            "Client connections closed after going without a call for --connection-idle-timeout-seconds.",
        )?;
        writeln!(
            out,
            "salesmetrics_connections_idle_closed_total {}",
            self.connections_idle_closed.load(Ordering::Relaxed)
        )?;

        header(
            out,
            "salesmetrics_db_pool_connections",
            "gauge",
            "Open database connections, by pool and state (idle or in_use).",
        )?;
        for p in pools {
            let pool = p.pool;
            writeln!(
                out,
                "salesmetrics_db_pool_connections{{pool=\"{pool}\",state=\"idle\"}} {}",
                p.idle
            )?;
            writeln!(
                out,
                "salesmetrics_db_pool_connections{{pool=\"{pool}\",state=\"in_use\"}} {}",
                p.in_use
            )?;
        }
        header(
            out,
            "salesmetrics_db_pool_max_connections",
            "gauge",
            "Most connections each database pool opens.",
        )?;
        for p in pools {
            writeln!(
                out,
                "salesmetrics_db_pool_max_connections{{pool=\"{}\"}} {}",
                p.pool, p.max
            )?;
        }
        Ok(())
    }
}

/// The `# HELP` and `# TYPE` lines of a metric family.
fn header(out: &mut String, name: &str, kind: &str, help: &str) -> std::fmt::Result {
    writeln!(out, "# HELP {name} {help}")?;
    writeln!(out, "# TYPE {name} {kind}")
}

/// A label value escaped for the text format (backslash, quote, newline).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `/package.Service/Method` of every method in an encoded descriptor set.
fn method_paths(encoded: &[u8]) -> Vec<String> {
    let Ok(set) = prost_types::FileDescriptorSet::decode(encoded) else {
        return Vec::new();
    };
    let mut paths = Vec::new();
    for file in &set.file {
        let package = file.package();
        for service in &file.service {
            for method in &service.method {
                paths.push(format!("/{package}.{}/{}", service.name(), method.name()));
            }
        }
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_status_values_are_named() {
        assert_eq!(code_name(b"0"), "OK");
        assert_eq!(code_name(b"3"), "INVALID_ARGUMENT");
        assert_eq!(code_name(b"16"), "UNAUTHENTICATED");
        assert_eq!(code_name(b"17"), "UNKNOWN");
        assert_eq!(code_name(b"x"), "UNKNOWN");
    }

    #[test]
    fn only_served_methods_become_labels() {
        let metrics = Metrics::new();
        for path in [
            "/salesmetrics.v1.IngestService/IngestBatch",
            "/salesmetrics.v1.KpiService/GetKpis",
            "/salesmetrics.v1.AdminService/CreateApiKey",
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ] {
            assert_eq!(&*metrics.method_label(path), path);
        }
        assert_eq!(
            &*metrics.method_label("/salesmetrics.v1.KpiService/Nope"),
            UNKNOWN_METHOD
        );
        assert_eq!(&*metrics.method_label("/"), UNKNOWN_METHOD);
    }

    /// Durations of 2 ms, 40 ms and 3 s: the buckets are cumulative, `+Inf`
    /// and `_count` are 3, `_sum` is 3.042.
    #[test]
    fn the_duration_histogram_is_cumulative() {
        let metrics = Metrics::new();
        let method = "/salesmetrics.v1.KpiService/GetKpis";
        for ms in [2, 40, 3000] {
            metrics.observe_rpc(method, "OK", Duration::from_millis(ms));
        }
        let text = metrics.render(&[]);
        let bucket = |le: &str| {
            format!("salesmetrics_rpc_duration_seconds_bucket{{method=\"{method}\",le=\"{le}\"}}")
        };
        for (le, n) in [
            ("0.001", 0),
            ("0.0025", 1),
            ("0.025", 1),
            ("0.05", 2),
            ("2.5", 2),
            ("5", 3),
            ("60", 3),
            ("+Inf", 3),
        ] {
            assert!(
                text.contains(&format!("{} {n}\n", bucket(le))),
                "le={le}: {text}"
            );
        }
        assert!(text.contains(&format!(
            "salesmetrics_rpc_duration_seconds_count{{method=\"{method}\"}} 3\n"
        )));
        assert!(text.contains(&format!(
            "salesmetrics_rpc_requests_total{{method=\"{method}\",code=\"OK\"}} 3\n"
        )));
        let sum_line = text
            .lines()
            .find(|l| l.starts_with("salesmetrics_rpc_duration_seconds_sum"))
            .expect("sum line");
        let sum: f64 = sum_line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((sum - 3.042).abs() < 1e-9, "{sum_line}");
    }

    /// Outcomes are counted per record type; records without a type count
    /// as `unspecified`.
    #[test]
    fn record_outcomes_are_counted_per_type() {
        let metrics = Metrics::new();
        let order = Some(RecordType::Order);
        let deal = Some(RecordType::Deal);
        metrics.count_record(order, RecordOutcome::Ingested);
        metrics.count_record(order, RecordOutcome::Ingested);
        metrics.count_record(order, RecordOutcome::Stale);
        metrics.count_record(deal, RecordOutcome::Rejected);
        metrics.count_record(None, RecordOutcome::Rejected);
        let text = metrics.render(&[]);
        for line in [
            "salesmetrics_records_ingested_total{type=\"order\"} 2\n",
            "salesmetrics_records_stale_total{type=\"order\"} 1\n",
            "salesmetrics_records_rejected_total{type=\"order\"} 0\n",
            "salesmetrics_records_ingested_total{type=\"deal\"} 0\n",
            "salesmetrics_records_rejected_total{type=\"deal\"} 1\n",
            "salesmetrics_records_rejected_total{type=\"unspecified\"} 1\n",
        ] {
            assert!(text.contains(line), "{line}: {text}");
        }
    }
}
