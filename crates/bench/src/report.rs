//! The benchmark report: one value with everything a run measured, printed
//! as a Markdown table on stdout and written as JSON with `--json-out`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::generate::PlannedCounts;
use super::ingest::{BaselineOutcome, IngestOutcome};
use super::queries::{LatencyRow, RawSqlFigures, ThroughputRow};

/// The machine a run took place on.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Machine {
    /// Cores this process may use (`std::thread::available_parallelism`).
    pub cores: usize,
    /// Total memory in MiB (`MemTotal` of `/proc/meminfo`), when known.
    pub memory_mib: Option<u64>,
    /// CPU model (`model name` of `/proc/cpuinfo`), when known.
    pub cpu: Option<String>,
    /// Operating system and architecture, e.g. `linux x86_64`.
    pub os: String,
}

impl Machine {
    /// Reads what this machine is.
    pub fn detect() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_mib = meminfo
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kib| kib / 1024);
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|line| line.starts_with("model name"))
            .and_then(|line| line.split_once(':'))
            .map(|(_, model)| model.trim().to_string());
        Machine {
            cores,
            memory_mib,
            cpu,
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
        }
    }
}

/// The commit the binary was run from: `git rev-parse --short HEAD`, or "unknown".
pub fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// The ingest part of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IngestSection {
    /// The streamed ingest through the service.
    pub service: IngestOutcome,
    /// The server's peak resident set (VmHWM) after ingest, in MiB, when
    /// the server ran as a child process on Linux.
    pub server_peak_rss_mib: Option<f64>,
    /// The database's fastest path, when it ran.
    pub baseline: Option<BaselineOutcome>,
    /// Service records/s ÷ baseline rows/s.
    pub fraction_of_baseline: Option<f64>,
}

/// The raw-SQL baseline part of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RawSqlSection {
    /// Its latency.
    pub latency: LatencyRow,
    /// What raw SQL computed.
    pub raw_sql: RawSqlFigures,
    /// What `GetKpis` returned for the same figures.
    pub service: Option<RawSqlFigures>,
    /// `GetKpis` COMPANY MONTH p50 ÷ raw-SQL p50 (below 1: the service is faster).
    pub service_p50_over_raw_p50: Option<f64>,
}

/// A restart of the server on the loaded database: how long the first
/// query waits for the tenant's snapshot, and how much memory it holds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ColdStart {
    /// The first `GetKpis` COMPANY MONTH (all KPIs) after the restart, in ms.
    pub first_query_ms: f64,
    /// The second one (the snapshot now cached), in ms.
    pub second_query_ms: f64,
    /// Resident set (VmRSS) of the restarted server before any query, in MiB.
    pub idle_rss_mib: Option<f64>,
    /// Resident set after the first query, in MiB.
    pub loaded_rss_mib: Option<f64>,
    /// (loaded − idle) resident bytes ÷ records stored.
    pub rss_bytes_per_record: Option<f64>,
    /// Records stored at the restart: the generated ones and those the
    /// live and write-then-read rows added.
    pub records: usize,
}

/// Everything one run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// When the run started (UTC, RFC 3339).
    pub started_at: String,
    /// The machine.
    pub machine: Machine,
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// The requested scale (records).
    pub scale: u64,
    /// The generator's seed.
    pub seed: u64,
    /// The commit, or "unknown".
    pub commit: String,
    /// Whether the binary was built with optimisations.
    pub release_build: bool,
    /// Records generated, in total.
    pub records: usize,
    /// Records generated per type.
    pub counts: BTreeMap<String, usize>,
    /// The planned scaled counts.
    pub planned: PlannedCounts,
    /// Ingest throughput and memory.
    pub ingest: Option<IngestSection>,
    /// The server's peak resident set (VmHWM) at the end of the run, in MiB
    /// (after the queries, which load data of their own).
    pub server_peak_rss_end_mib: Option<f64>,
    /// Latency rows.
    pub latency: Vec<LatencyRow>,
    /// Throughput under concurrent clients.
    pub throughput: Option<ThroughputRow>,
    /// The raw-SQL baseline.
    pub raw_sql: Option<RawSqlSection>,
    /// The live runs (writes and queries at once).
    pub live: Vec<super::live::LiveRow>,
    /// The first query after a restart, and the memory its snapshot takes
    /// (only when the bench started the server itself).
    pub cold_start: Option<ColdStart>,
    /// Limits the query step ran under.
    pub limits: super::queries::QueryLimits,
    /// Phase durations in seconds (generation, ingest, baseline, queries…).
    pub phase_seconds: BTreeMap<String, f64>,
}

fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_string(), |v| format!("{v:.1}"))
}

impl Report {
    /// The report as Markdown: a header of facts, then one table.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let _ = writeln!(
            out,
            "### salesmetrics bench — {} — scale {} (seed {})\n",
            self.backend, self.scale, self.seed
        );
        let _ = writeln!(
            out,
            "commit `{}`, {} build, started {}; machine: {} cores, {} MiB, {}, {}\n",
            self.commit,
            if self.release_build {
                "release"
            } else {
                "debug"
            },
            self.started_at,
            m.cores,
            m.memory_mib.map_or("?".into(), |v| v.to_string()),
            m.cpu.as_deref().unwrap_or("unknown CPU"),
            m.os
        );
        let counts: Vec<String> = self
            .counts
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(out, "records: {} ({})\n", self.records, counts.join(", "));
        let _ = writeln!(out, "| measurement | value | detail |");
        let _ = writeln!(out, "|---|---|---|");
        if let Some(ingest) = &self.ingest {
            let s = &ingest.service;
            let _ = writeln!(
                out,
                "| ingest (StreamIngest, batches of 1000) | {:.0} rec/s | {} records in {:.2} s, {} batches, accepted {}, stale {}, rejected {}{} |",
                s.records_per_second,
                s.records_sent,
                s.seconds,
                s.batches,
                s.accepted,
                s.stale,
                s.rejected,
                if s.complete {
                    ""
                } else {
                    ", STOPPED BY TIME LIMIT"
                }
            );
            let _ = writeln!(
                out,
                "| server peak RSS after ingest (VmHWM) | {} MiB | |",
                ingest
                    .server_peak_rss_mib
                    .map_or("?".into(), |v| format!("{v:.0}"))
            );
            if let Some(b) = &ingest.baseline {
                let _ = writeln!(
                    out,
                    "| ingest baseline | {:.0} rows/s | {}: {} rows in {:.2} s |",
                    b.rows_per_second, b.method, b.rows, b.seconds
                );
            }
            if let Some(f) = ingest.fraction_of_baseline {
                let _ = writeln!(out, "| ingest ÷ baseline | {f:.3} | |");
            }
        }
        for row in &self.latency {
            let _ = writeln!(
                out,
                "| {} | p50 {} ms, p99 {} ms | {} requests{}, mean {} ms, max {} ms, untimed warm-up {} ms{} |",
                row.name,
                ms(row.p50_ms),
                ms(row.p99_ms),
                row.requests,
                if row.stopped_by_time {
                    " (time budget)"
                } else {
                    ""
                },
                ms(row.mean_ms),
                ms(row.max_ms),
                ms(row.warmup_ms),
                if row.errors > 0 {
                    format!(
                        ", {} ERRORS: {}",
                        row.errors,
                        row.first_error.as_deref().unwrap_or("")
                    )
                } else {
                    String::new()
                }
            );
        }
        if let Some(rss) = self.server_peak_rss_end_mib {
            let _ = writeln!(
                out,
                "| server peak RSS at the end (VmHWM) | {rss:.0} MiB | after all queries |"
            );
        }
        if let Some(t) = &self.throughput {
            let _ = writeln!(
                out,
                "| throughput {} | {:.1} bundles/s | {} clients, {} bundles in {:.2} s, {} errors{} |",
                t.name,
                t.bundles_per_second,
                t.clients,
                t.requests,
                t.seconds,
                t.errors,
                t.first_error
                    .as_deref()
                    .map(|e| format!(" (first: {e})"))
                    .unwrap_or_default()
            );
        }
        if let Some(raw) = &self.raw_sql {
            let row = &raw.latency;
            let _ = writeln!(
                out,
                "| {} | p50 {} ms, p99 {} ms | {} requests{}; figures {}{} |",
                row.name,
                ms(row.p50_ms),
                ms(row.p99_ms),
                row.requests,
                if row.stopped_by_time {
                    " (time budget)"
                } else {
                    ""
                },
                match &raw.service {
                    Some(service) if service == &raw.raw_sql => "agree with GetKpis",
                    Some(_) => "DIFFER from GetKpis",
                    None => "not compared",
                },
                if row.errors > 0 {
                    format!(", {} errors", row.errors)
                } else {
                    String::new()
                }
            );
            if let Some(ratio) = raw.service_p50_over_raw_p50 {
                let _ = writeln!(
                    out,
                    "| GetKpis COMPANY MONTH p50 ÷ raw SQL p50 | {ratio:.2} | target ≤ 0.05 (≥ 20× faster) |"
                );
            }
        }
        for row in &self.live {
            let q = &row.queries;
            let _ = writeln!(
                out,
                "| {} | p50 {} ms, p99 {} ms | {} queries, {} errors; ingest {:.0} records/s ({} batches of 100); fresh {:.1} % ({} stale, {} inconsistent) |",
                row.name(),
                ms(q.p50_ms),
                ms(q.p99_ms),
                q.requests,
                q.errors,
                row.ingest_records_per_second,
                row.batches,
                row.fresh_percent(),
                row.stale,
                row.inconsistent
            );
        }
        if let Some(c) = &self.cold_start {
            let _ = writeln!(
                out,
                "| cold start: first GetKpis COMPANY MONTH after a restart | {:.0} ms | the next one {:.1} ms |",
                c.first_query_ms, c.second_query_ms
            );
            let _ = writeln!(
                out,
                "| snapshot memory: (RSS after the first query − idle RSS) ÷ records | {} B/record | idle {} MiB, loaded {} MiB (VmRSS), {} records |",
                c.rss_bytes_per_record
                    .map_or("?".into(), |v| format!("{v:.0}")),
                c.idle_rss_mib.map_or("?".into(), |v| format!("{v:.0}")),
                c.loaded_rss_mib.map_or("?".into(), |v| format!("{v:.0}")),
                c.records
            );
        }
        let phases: Vec<String> = self
            .phase_seconds
            .iter()
            .map(|(k, v)| format!("{k} {v:.1} s"))
            .collect();
        let _ = writeln!(out, "\nphases: {}", phases.join(", "));
        out
    }

    /// Every row name the report has, in order (what the smoke test checks).
    pub fn row_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        if self.ingest.is_some() {
            names.push("ingest".to_string());
        }
        names.extend(self.latency.iter().map(|r| r.name.clone()));
        if let Some(t) = &self.throughput {
            names.push(format!("throughput {}", t.name));
        }
        if let Some(raw) = &self.raw_sql {
            names.push(raw.latency.name.clone());
        }
        names.extend(self.live.iter().map(super::live::LiveRow::name));
        if self.cold_start.is_some() {
            names.push("cold start".to_string());
        }
        names
    }
}
