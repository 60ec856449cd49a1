//! `salesmetrics-bench`: the benchmark harness (its own crate and binary, so
//! it never ships inside the production `salesmetrics` binary).
//!
//! One command runs everything, as a separate client process talking to a
//! real server over loopback gRPC:
//!
//! 1. [`generate`] — deterministic, seeded, realistic records (`--scale`, `--seed`);
//! 2. a fresh database (a SQLite file in a temporary directory, or a new
//!    PostgreSQL database on the server named by `--database-url`) and the
//!    server started as a child process, `salesmetrics serve` (the binary
//!    beside this one, or `--server-bin`), on a free loopback port;
//! 3. [`ingest`] — the records streamed over `StreamIngest` in batches of
//!    1 000 (records/s, the server's peak RSS), then the same rows loaded with
//!    the database's fastest path as a baseline;
//! 4. [`queries`] — latency p50/p99 of `GetKpis`, `GetKpiSeries` and
//!    `GetBreakdown`, `GetKpis` throughput with 32 clients, and a raw-SQL
//!    baseline over the same database;
//! 5. [`report`] — a Markdown table on stdout, the same as JSON with `--json-out`.
//!
//! Every loop is bounded by a count and by time. The steps are public so the
//! smoke test (`smoke_tests.rs`, run by the `bench` step of `.ci/run`) runs
//! them in-process at the 100k scale via [`run_steps`].

pub mod generate;
pub mod ingest;
pub mod live;
pub mod queries;
pub mod report;

#[cfg(test)]
mod smoke_tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use sqlx::Connection;

use generate::Generated;
use queries::QueryLimits;
use report::{IngestSection, Machine, RawSqlSection, Report};

/// salesmetrics-bench: measures ingest and KPI queries of a `salesmetrics`
/// server started for the run (fresh SQLite file, or fresh PostgreSQL
/// databases with --database-url), and prints a Markdown report.
#[derive(Debug, Clone, Parser)]
#[command(name = "salesmetrics-bench", version, about, long_about = None)]
pub struct BenchArgs {
    /// Number of records: `100k`, `1m`, `10m` or a plain number (the
    /// organisation, targets and spend come on top).
    #[arg(long, default_value = "100k", value_parser = parse_scale)]
    pub scale: u64,

    /// Seed of the generator: the same seed gives the same records.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Benchmark PostgreSQL instead of SQLite: a `postgres://` URL of a
    /// server (any database the user may connect to) on which the bench
    /// creates, and afterwards drops, two fresh databases (the service's and
    /// the baseline's). Without it, a fresh SQLite file in a temporary directory.
    #[arg(long)]
    pub database_url: Option<String>,

    /// Timed requests per latency row (at most; see --seconds-per-row).
    #[arg(long, default_value_t = 200)]
    pub requests: usize,

    /// Time budget of one latency row in seconds; a row stops early when spent.
    #[arg(long, default_value_t = 15.0)]
    pub seconds_per_row: f64,

    /// Concurrent clients of the throughput run.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,

    /// Duration of the throughput run in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub throughput_seconds: f64,

    /// Records per streamed ingest batch.
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,

    /// Seconds after which the ingest stops sending (the report then says so).
    #[arg(long, default_value_t = 1800)]
    pub ingest_time_limit_seconds: u64,

    /// Skip the baseline load (the database's fastest path).
    #[arg(long)]
    pub skip_baseline: bool,

    /// Duration of each live run in seconds (0: no live runs). A live run
    /// streams batches of 100 mixed records while `--live-clients` clients
    /// query GetKpis; one run at `--live-rate`, one at the producer's
    /// maximum rate.
    #[arg(long, default_value_t = 30.0)]
    pub live_seconds: f64,

    /// Querying clients of the live runs.
    #[arg(long, default_value_t = 8)]
    pub live_clients: usize,

    /// Producer rate of the first live run, in records per second.
    #[arg(long, default_value_t = 2000.0)]
    pub live_rate: f64,

    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json_out: Option<PathBuf>,

    /// The `salesmetrics` binary to benchmark (default: the one beside this
    /// binary, e.g. `target/release/salesmetrics`).
    #[arg(long, env = "SALESMETRICS_BIN")]
    pub server_bin: Option<PathBuf>,
}

/// The server binary: `--server-bin`, else `salesmetrics` beside this binary.
fn server_binary(args: &BenchArgs) -> anyhow::Result<PathBuf> {
    if let Some(path) = &args.server_bin {
        return Ok(path.clone());
    }
    let me = std::env::current_exe().context("cannot find the salesmetrics-bench binary")?;
    let sibling = me.with_file_name(format!("salesmetrics{}", std::env::consts::EXE_SUFFIX));
    if !sibling.is_file() {
        bail!(
            "cannot find the server binary at {}; build it first (`cargo build --release --workspace`) or name it with --server-bin",
            sibling.display()
        );
    }
    Ok(sibling)
}

/// Parses `100k`, `1m`, `10m`, `2500` into a number of records.
pub fn parse_scale(text: &str) -> Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase().replace('_', "");
    let (digits, factor) = if let Some(d) = lower.strip_suffix('k') {
        (d, 1_000)
    } else if let Some(d) = lower.strip_suffix('m') {
        (d, 1_000_000)
    } else {
        (lower.as_str(), 1)
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("not a scale: {text:?} (use 100k, 1m, 10m or a number)"))?;
    match n.checked_mul(factor) {
        Some(records) if (1..=100_000_000).contains(&records) => Ok(records),
        _ => Err(format!("scale out of range (1 to 100m): {text:?}")),
    }
}

/// Where the baseline load writes.
#[derive(Debug, Clone)]
pub enum BaselineTarget {
    /// No baseline.
    Skip,
    /// A new SQLite file at this path.
    SqliteFile(PathBuf),
    /// An empty PostgreSQL database at this URL.
    Postgres(String),
}

/// A server to benchmark, however it was started.
#[derive(Debug, Clone)]
pub struct ServerUnderTest {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The database URL the server uses (for the raw-SQL baseline).
    pub database_url: String,
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// The server's process id when it is a child process (for its peak RSS).
    pub pid: Option<u32>,
}

/// How the steps run.
#[derive(Debug, Clone)]
pub struct StepOptions {
    /// The requested scale, for the report.
    pub scale: u64,
    /// The generator's seed, for the report.
    pub seed: u64,
    /// Where the baseline load writes.
    pub baseline: BaselineTarget,
    /// Records per streamed batch.
    pub batch_size: usize,
    /// When the ingest stops sending.
    pub ingest_time_limit: Duration,
    /// Bounds of the query step.
    pub limits: QueryLimits,
    /// The live runs.
    pub live: LiveSettings,
}

/// How the live runs go (see [`live`]).
#[derive(Debug, Clone, serde::Serialize)]
pub struct LiveSettings {
    /// Duration of each run in seconds (0: no live runs).
    pub seconds: f64,
    /// Querying clients.
    pub clients: usize,
    /// Producer rate of the first run in records per second (the second
    /// runs at the producer's maximum).
    pub records_per_second: f64,
}

/// Runs the ingest, baseline and query steps against `server` and returns
/// the report (without printing it).
pub async fn run_steps(
    server: &ServerUnderTest,
    generated: Generated,
    options: StepOptions,
) -> anyhow::Result<Report> {
    let StepOptions {
        scale,
        seed,
        baseline,
        batch_size,
        ingest_time_limit,
        limits,
        live,
    } = options;
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut phase_seconds = BTreeMap::new();
    let counts = generated
        .counts()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let planned = generated.planned;
    let targets = generated.targets.clone();
    let records = Arc::new(generated.records);

    eprintln!("ingest: streaming {} records…", records.len());
    let t = Instant::now();
    let service = ingest::stream_ingest(
        &server.endpoint,
        records.clone(),
        batch_size,
        ingest_time_limit,
    )
    .await?;
    phase_seconds.insert("ingest".to_string(), t.elapsed().as_secs_f64());
    let server_peak_rss_mib = server.pid.and_then(peak_rss_mib);
    eprintln!(
        "ingest: {:.0} records/s, server peak RSS {} MiB",
        service.records_per_second,
        server_peak_rss_mib.map_or("?".into(), |v| format!("{v:.0}"))
    );

    let t = Instant::now();
    let baseline = match baseline {
        BaselineTarget::Skip => None,
        BaselineTarget::SqliteFile(path) => {
            eprintln!("baseline: SQLite prepared inserts into {}", path.display());
            Some(ingest::sqlite_baseline(&path, &records).await?)
        }
        BaselineTarget::Postgres(url) => {
            eprintln!("baseline: PostgreSQL COPY");
            Some(ingest::postgres_baseline(&url, &records).await?)
        }
    };
    if baseline.is_some() {
        phase_seconds.insert("baseline".to_string(), t.elapsed().as_secs_f64());
    }
    let fraction_of_baseline = baseline
        .as_ref()
        .map(|b| service.records_per_second / b.rows_per_second.max(1e-9));
    let total_records = records.len();
    drop(records);

    eprintln!(
        "queries: up to {} requests or {} s per row",
        limits.requests, limits.seconds_per_row
    );
    let t = Instant::now();
    let latency = queries::latency_suite(&server.endpoint, &targets, &limits).await?;
    phase_seconds.insert("latency".to_string(), t.elapsed().as_secs_f64());

    eprintln!(
        "throughput: {} clients for {} s",
        limits.clients, limits.throughput_seconds
    );
    let t = Instant::now();
    let throughput = queries::throughput(&server.endpoint, &limits).await?;
    phase_seconds.insert("throughput".to_string(), t.elapsed().as_secs_f64());

    eprintln!("raw SQL baseline");
    let t = Instant::now();
    let (raw_latency, raw_sql) = queries::raw_sql_baseline(&server.database_url, &limits).await?;
    let service_figures = queries::service_figures(&server.endpoint).await.ok();
    phase_seconds.insert("raw_sql".to_string(), t.elapsed().as_secs_f64());
    let company_month_p50 = latency
        .iter()
        .find(|r| r.name == "GetKpis COMPANY MONTH")
        .and_then(|r| r.p50_ms);

    let live_rows = if live.seconds > 0.0 {
        eprintln!(
            "live: {} queriers for {} s per run, producer at {} records/s, then at its maximum",
            live.clients, live.seconds, live.records_per_second
        );
        let t = Instant::now();
        let rows = live::live_suite(
            &server.endpoint,
            &targets,
            &[Some(live.records_per_second), None],
            live.clients,
            live.seconds,
        )
        .await?;
        phase_seconds.insert("live".to_string(), t.elapsed().as_secs_f64());
        rows
    } else {
        Vec::new()
    };
    let service_p50_over_raw_p50 = match (company_month_p50, raw_latency.p50_ms) {
        (Some(service), Some(raw)) if raw > 0.0 => Some(service / raw),
        _ => None,
    };

    Ok(Report {
        started_at,
        machine: Machine::detect(),
        backend: server.backend.clone(),
        scale,
        seed,
        commit: report::commit(),
        release_build: !cfg!(debug_assertions),
        records: total_records,
        counts,
        planned,
        ingest: Some(IngestSection {
            service,
            server_peak_rss_mib,
            baseline,
            fraction_of_baseline,
        }),
        server_peak_rss_end_mib: server.pid.and_then(peak_rss_mib),
        latency,
        throughput: Some(throughput),
        raw_sql: Some(RawSqlSection {
            latency: raw_latency,
            raw_sql,
            service: service_figures,
            service_p50_over_raw_p50,
        }),
        live: live_rows,
        cold_start: None,
        limits,
        phase_seconds,
    })
}

/// Runs the bench: generate, start a server, measure, report.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let server_bin = server_binary(&args)?;
    let t = Instant::now();
    eprintln!("generate: scale {} seed {}", args.scale, args.seed);
    let generated = generate::generate(args.scale, args.seed);
    let generate_seconds = t.elapsed().as_secs_f64();
    eprintln!(
        "generate: {} records in {generate_seconds:.1} s",
        generated.records.len()
    );

    let scratch = ScratchDir::new()?;
    let mut databases = None;
    let (backend, database_url, baseline) = match &args.database_url {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let fresh = FreshPostgres::create(url).await?;
            let baseline = if args.skip_baseline {
                BaselineTarget::Skip
            } else {
                BaselineTarget::Postgres(fresh.baseline_url.clone())
            };
            let service_url = fresh.service_url.clone();
            databases = Some(fresh);
            ("postgres", service_url, baseline)
        }
        Some(other) => bail!(
            "--database-url must be a postgres:// URL (without it the bench uses a fresh SQLite file), not {}",
            salesmetrics::config::redact_url(other)
        ),
        None => {
            let url = format!("sqlite://{}", scratch.path.join("service.db").display());
            let baseline = if args.skip_baseline {
                BaselineTarget::Skip
            } else {
                BaselineTarget::SqliteFile(scratch.path.join("baseline.db"))
            };
            ("sqlite", url, baseline)
        }
    };

    let result = async {
        let server = ServerProcess::start(&server_bin, &database_url, &scratch.path).await?;
        let under_test = ServerUnderTest {
            endpoint: server.endpoint.clone(),
            database_url: database_url.clone(),
            backend: backend.to_string(),
            pid: Some(server.pid),
        };
        let limits = QueryLimits {
            requests: args.requests,
            seconds_per_row: args.seconds_per_row,
            clients: args.clients,
            throughput_seconds: args.throughput_seconds,
        };
        let options = StepOptions {
            scale: args.scale,
            seed: args.seed,
            baseline,
            batch_size: args.batch_size,
            ingest_time_limit: Duration::from_secs(args.ingest_time_limit_seconds),
            limits,
            live: LiveSettings {
                seconds: args.live_seconds,
                clients: args.live_clients,
                records_per_second: args.live_rate,
            },
        };
        let records = generated.records.len();
        let report = run_steps(&under_test, generated, options).await;
        server.stop();
        let mut report = report?;
        let records = records_stored(records, &report);
        eprintln!("cold start: restarting the server on the loaded database ({records} records)");
        let server = ServerProcess::start(&server_bin, &database_url, &scratch.path).await?;
        let cold = cold_start(&server, records).await;
        server.stop();
        report.cold_start = Some(cold?);
        anyhow::Ok(report)
    }
    .await;
    if let Some(databases) = databases {
        databases.drop_all().await;
    }
    let mut report = result?;
    report
        .phase_seconds
        .insert("generate".to_string(), generate_seconds);
    println!("{}", report.to_markdown());
    if let Some(path) = &args.json_out {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    Ok(())
}

/// The first two `GetKpis` COMPANY MONTH of a freshly started server, and
/// its resident memory before and after the first.
async fn cold_start(server: &ServerProcess, records: usize) -> anyhow::Result<report::ColdStart> {
    use salesmetrics::proto::v1;
    let mut client =
        v1::kpi_service_client::KpiServiceClient::new(ingest::connect(&server.endpoint).await?)
            .max_decoding_message_size(64 << 20);
    // Let the start-up settle before reading the idle footprint.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_mib(server.pid);
    let request = || queries::get_kpis_request(v1::ScopeKind::Company, "", v1::Granularity::Month);
    let t = Instant::now();
    client
        .get_kpis(request())
        .await
        .context("the first query after the restart failed")?;
    let first_query_ms = t.elapsed().as_secs_f64() * 1e3;
    let loaded = rss_mib(server.pid);
    let t = Instant::now();
    client.get_kpis(request()).await?;
    let second_query_ms = t.elapsed().as_secs_f64() * 1e3;
    let rss_bytes_per_record = match (idle, loaded) {
        (Some(idle), Some(loaded)) if records > 0 => {
            Some((loaded - idle) * 1024.0 * 1024.0 / records as f64)
        }
        _ => None,
    };
    eprintln!(
        "cold start: first query {first_query_ms:.0} ms, {} B/record",
        rss_bytes_per_record.map_or("?".into(), |v| format!("{v:.0}"))
    );
    Ok(report::ColdStart {
        first_query_ms,
        second_query_ms,
        idle_rss_mib: idle,
        loaded_rss_mib: loaded,
        rss_bytes_per_record,
        records,
    })
}

/// The records stored once every row has run: the generated ones, each
/// live run's batches (new ids every batch) and the marker rep with its
/// membership, and one order per write-then-read request.
fn records_stored(generated: usize, report: &report::Report) -> usize {
    let live: usize = report
        .live
        .iter()
        .map(|row| row.batches as usize * live::BATCH_RECORDS)
        .sum();
    let marker = if report.live.is_empty() { 0 } else { 2 };
    let written: usize = report
        .latency
        .iter()
        .filter(|row| row.name == queries::WRITE_THEN_READ)
        .map(|row| row.requests)
        .sum();
    generated + live + marker + written
}

/// Peak resident set size (`VmHWM`) of a process in MiB, on Linux.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    proc_status_mib(pid, "VmHWM:")
}

/// Current resident set size (`VmRSS`) of a process in MiB, on Linux.
pub fn rss_mib(pid: u32) -> Option<f64> {
    proc_status_mib(pid, "VmRSS:")
}

/// A `/proc/PID/status` field in kB, as MiB.
fn proc_status_mib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// A temporary directory removed on drop (the server's SQLite file, the
/// baseline file, the server log).
struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    fn new() -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path =
            std::env::temp_dir().join(format!("salesmetrics-bench-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(ScratchDir { path })
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The server as a child process: `salesmetrics serve` on a free loopback port.
struct ServerProcess {
    child: Child,
    pid: u32,
    endpoint: String,
}

impl ServerProcess {
    /// Starts the server on `database_url`, logging to `dir/server.log`,
    /// and waits (at most a minute) until it answers.
    async fn start(exe: &Path, database_url: &str, dir: &Path) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("cannot find a free loopback port")?
            .port();
        let listen = format!("127.0.0.1:{port}");
        let log_path = dir.join("server.log");
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new(exe)
            .args(["serve", "--listen", &listen, "--database-url", database_url])
            // Measure capacity, not the per-tenant rate limit.
            .args(["--rate-limit-per-second", "0"])
            // The first query after ingest loads the tenant's snapshot,
            // which at 10M records takes longer than the default 30 s
            // deadline; measure it instead of timing it out.
            .args(["--default-timeout-seconds", "300"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {} serve", exe.display()))?;
        let mut server = ServerProcess {
            pid: child.id(),
            child,
            endpoint: format!("http://{listen}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = server.child.try_wait()? {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                bail!("the server exited ({status}) before answering:\n{log}");
            }
            if let Ok(channel) = ingest::connect(&server.endpoint).await {
                let mut client =
                    salesmetrics::proto::v1::kpi_service_client::KpiServiceClient::new(channel);
                if client
                    .list_kpis(salesmetrics::proto::v1::ListKpisRequest {})
                    .await
                    .is_ok()
                {
                    break;
                }
            }
            if Instant::now() >= deadline {
                bail!("the server did not answer within a minute");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!("server: pid {} on {}", server.pid, server.endpoint);
        Ok(server)
    }

    /// Asks the server to stop (SIGTERM), waits up to 15 s, then kills it.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Only reached on error paths (stop consumes self after waiting):
        // never leave a server behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Two fresh PostgreSQL databases, created for one run and dropped after it.
struct FreshPostgres {
    /// The URL the bench was given (to connect for CREATE/DROP DATABASE).
    admin_url: String,
    /// Names of the created databases.
    names: Vec<String>,
    /// URL of the service's database.
    service_url: String,
    /// URL of the baseline's database.
    baseline_url: String,
}

impl FreshPostgres {
    async fn create(admin_url: &str) -> anyhow::Result<Self> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let base = format!("salesmetrics_bench_{}_{stamp}", std::process::id());
        let names = vec![base.clone(), format!("{base}_baseline")];
        let mut conn = sqlx::postgres::PgConnection::connect(admin_url)
            .await
            .with_context(|| {
                format!(
                    "cannot connect to {}",
                    salesmetrics::config::redact_url(admin_url)
                )
            })?;
        for name in &names {
            // Byte-order collation like the migrations' COLLATE "C" columns.
            sqlx::query(&format!(
                "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
            ))
            .execute(&mut conn)
            .await
            .with_context(|| format!("cannot create database {name}"))?;
        }
        conn.close().await?;
        Ok(FreshPostgres {
            admin_url: admin_url.to_string(),
            service_url: with_database(admin_url, &names[0]),
            baseline_url: with_database(admin_url, &names[1]),
            names,
        })
    }

    async fn drop_all(self) {
        let Ok(mut conn) = sqlx::postgres::PgConnection::connect(&self.admin_url).await else {
            eprintln!(
                "cannot reconnect to drop the bench databases {:?}",
                self.names
            );
            return;
        };
        for name in &self.names {
            if let Err(err) = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await
            {
                eprintln!("cannot drop database {name}: {err}");
            }
        }
        let _ = conn.close().await;
    }
}

/// `url` with its database (path) replaced by `database`, query string kept.
pub fn with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let authority = before_query.split('/').next().unwrap_or(before_query);
    let mut out = format!("{scheme}://{authority}/{database}");
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_parse() {
        assert_eq!(parse_scale("100k"), Ok(100_000));
        assert_eq!(parse_scale("1m"), Ok(1_000_000));
        assert_eq!(parse_scale("10M"), Ok(10_000_000));
        assert_eq!(parse_scale("2500"), Ok(2_500));
        assert!(parse_scale("0").is_err());
        assert!(parse_scale("lots").is_err());
    }

    #[test]
    fn database_is_replaced_in_urls() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres?sslmode=disable", "x"),
            "postgres://u:p@h:5432/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    }
}
