//! `salesmetrics import`: CSV or NDJSON files streamed into IngestService.
//!
//! A blocking reader task parses rows into records and sends batches on a
//! bounded channel (back-pressure: at most a few batches wait); the main task
//! reads the acknowledgements, which come in batch order, and matches each
//! rejected record to its file line through the queue of sent batches. Rows
//! that fail locally or on the server go to the reject file with their line
//! number and reason; nothing is dropped silently.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use tokio_stream::wrappers::ReceiverStream;

use super::records::{RecordKind, Row, json_to_row, row_to_record};
use super::{ConnectOptions, status_error, tenant_currency};
use crate::proto::v1::{RecordOutcome, StreamIngestRequest};

/// File format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FileFormat {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line.
    Ndjson,
}

impl FileFormat {
    /// The format a file name suggests (`.ndjson`, `.jsonl`, `.json` → NDJSON, else CSV).
    pub fn from_path(path: &Path) -> FileFormat {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("ndjson" | "jsonl" | "json") => FileFormat::Ndjson,
            _ => FileFormat::Csv,
        }
    }
}

/// Options of `salesmetrics import`.
#[derive(Debug, Args)]
#[command(after_long_help = "Files:
  CSV with a header row naming the columns (any order, any case), or NDJSON
  with one object per line using the same names as keys. The columns are the
  proto field names of the record type, e.g. for orders:
      id,amount,currency,ordered_at,kind,customer_id,rep_id,deal_id,version
  Amounts are decimals in major units (1250.50); instants are RFC 3339
  (2025-03-10T14:30:00Z) or dates (2025-03-10 = midnight UTC); enums take
  their short name in any case (won, cross_sell). See docs/import.md for
  every type.

Examples:
  salesmetrics import orders.csv --type orders
  salesmetrics import deals-2024.csv deals-2025.csv --type deals --currency EUR
  salesmetrics import leads.ndjson --type leads --reject-file bad-leads.csv

Rows that cannot be read or that the server rejects are written, with their
line number and reason, to the reject file (default FILE.rejects.csv); the
exit code is 1 when any row was rejected.")]
pub struct ImportArgs {
    #[command(flatten)]
    pub connect: ConnectOptions,
    /// Files to import, in order.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Record type of the files.
    #[arg(long = "type", value_enum, value_name = "TYPE")]
    pub kind: RecordKind,
    /// File format (default: from the extension; .ndjson/.jsonl/.json are NDJSON, else CSV).
    #[arg(long, value_enum)]
    pub format: Option<FileFormat>,
    /// Records per streamed batch.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub batch_size: u64,
    /// Where to write rejected rows (default FILE.rejects.csv; only with one FILE).
    #[arg(long)]
    pub reject_file: Option<PathBuf>,
    /// Currency of amounts without a currency column value (default: the tenant's).
    #[arg(long)]
    pub currency: Option<String>,
}

/// Counts of one file's import.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ImportSummary {
    /// Data rows read.
    pub rows: u64,
    /// Stored by the server.
    pub accepted: u64,
    /// Skipped by the server as stale (version not newer).
    pub stale: u64,
    /// Rejected locally (could not be parsed).
    pub rejected_locally: u64,
    /// Rejected by the server.
    pub rejected_by_server: u64,
}

impl ImportSummary {
    /// All rejected rows.
    pub fn rejected(&self) -> u64 {
        self.rejected_locally + self.rejected_by_server
    }
}

/// Runs `salesmetrics import`.
pub async fn run(args: ImportArgs) -> anyhow::Result<()> {
    if args.reject_file.is_some() && args.files.len() > 1 {
        anyhow::bail!(
            "--reject-file can only be used with a single FILE (each file gets FILE.rejects.csv otherwise)"
        );
    }
    // Check every file's header before anything is sent.
    for path in &args.files {
        let format = args.format.unwrap_or_else(|| FileFormat::from_path(path));
        let _header_is_valid = open_rows(path, format, args.kind)?;
    }
    let mut clients = args.connect.connect().await?;
    let currency = match (&args.currency, args.kind.uses_money()) {
        (Some(c), _) => Some(c.trim().to_ascii_uppercase()),
        (None, true) => Some(
            tenant_currency(&mut clients)
                .await
                .map_err(|e| e.context("cannot read the tenant's currency (pass --currency)"))?,
        ),
        (None, false) => None,
    };
    let mut total_rejected = 0;
    let mut reject_files = Vec::new();
    for path in &args.files {
        let format = args.format.unwrap_or_else(|| FileFormat::from_path(path));
        let reject_path = args.reject_file.clone().unwrap_or_else(|| {
            let mut name = path.as_os_str().to_owned();
            name.push(".rejects.csv");
            PathBuf::from(name)
        });
        let summary = import_file(
            &mut clients,
            path,
            format,
            args.kind,
            args.batch_size as usize,
            currency.clone(),
            &reject_path,
        )
        .await?;
        if summary.rejected() > 0 {
            total_rejected += summary.rejected();
            reject_files.push(reject_path.display().to_string());
        }
    }
    if total_rejected > 0 {
        anyhow::bail!(
            "{total_rejected} row(s) rejected; see {}",
            reject_files.join(", ")
        );
    }
    Ok(())
}

/// Rows that did not make it, written lazily (no file when nothing is rejected).
struct RejectFile {
    path: PathBuf,
    header: Vec<String>,
    writer: Option<csv::Writer<File>>,
}

impl RejectFile {
    fn write(&mut self, line: u64, reason: &str, raw: &[String]) -> anyhow::Result<()> {
        if self.writer.is_none() {
            let file = File::create(&self.path).map_err(|e| {
                anyhow::anyhow!("cannot create the reject file {}: {e}", self.path.display())
            })?;
            let mut writer = csv::Writer::from_writer(file);
            let mut header = vec!["line".to_string(), "reason".to_string()];
            header.extend(self.header.iter().cloned());
            writer.write_record(&header)?;
            self.writer = Some(writer);
        }
        let writer = self.writer.as_mut().expect("created above");
        let mut record = vec![line.to_string(), reason.to_string()];
        record.extend(raw.iter().cloned());
        writer.write_record(&record)?;
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        if let Some(writer) = &mut self.writer {
            writer.flush()?;
        }
        Ok(())
    }
}

/// Where the records of a sent batch came from.
struct SentBatch {
    sequence: i64,
    /// (line number, raw cells) per record, in batch order.
    rows: Vec<(u64, Vec<String>)>,
}

/// A source of rows: line number, raw cells (for the reject file) and the parsed row.
type RowResult = (u64, Vec<String>, Result<Row, String>);

/// The rows of a file, read lazily; an `Err` item stops the import (I/O failure).
type Rows = Box<dyn Iterator<Item = anyhow::Result<RowResult>> + Send>;

fn open_rows(
    path: &Path,
    format: FileFormat,
    kind: RecordKind,
) -> anyhow::Result<(Vec<String>, Rows)> {
    let file =
        File::open(path).map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    match format {
        FileFormat::Csv => {
            let mut reader = csv::ReaderBuilder::new()
                .flexible(true)
                .from_reader(BufReader::new(file));
            let header: Vec<String> = reader
                .headers()
                .map_err(|e| {
                    anyhow::anyhow!("{}: cannot read the header row: {e}", path.display())
                })?
                .iter()
                .map(str::to_string)
                .collect();
            let mapping = kind
                .map_header(&header)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let width = kind.columns().len();
            let header_len = header.len();
            let rows = reader.into_records().map(move |result| match result {
                Ok(record) => {
                    let line = record.position().map_or(0, |p| p.line());
                    let raw: Vec<String> = record.iter().map(str::to_string).collect();
                    if raw.len() != header_len {
                        let reason = format!(
                            "expected {header_len} fields like the header, found {}",
                            raw.len()
                        );
                        return Ok((line, raw, Err(reason)));
                    }
                    let mut cells = vec![String::new(); width];
                    for (cell, target) in raw.iter().zip(&mapping) {
                        if let Some(i) = target {
                            cells[*i] = cell.clone();
                        }
                    }
                    Ok((line, raw, Ok(Row { cells })))
                }
                Err(err) => match err.position() {
                    Some(position) if !err.is_io_error() => Ok((
                        position.line(),
                        Vec::new(),
                        Err(format!("unreadable CSV row: {err}")),
                    )),
                    _ => Err(anyhow::anyhow!("reading the file failed: {err}")),
                },
            });
            Ok((header, Box::new(rows)))
        }
        FileFormat::Ndjson => {
            let lines = BufReader::new(file)
                .lines()
                .enumerate()
                .filter_map(move |(i, line)| {
                    let line_number = i as u64 + 1;
                    match line {
                        Ok(text) if text.trim().is_empty() => None,
                        Ok(text) => {
                            let row = json_to_row(kind, &text);
                            Some(Ok((line_number, vec![text], row)))
                        }
                        Err(err) => Some(Err(anyhow::anyhow!(
                            "reading line {line_number} failed: {err}"
                        ))),
                    }
                });
            Ok((vec!["record".to_string()], Box::new(lines)))
        }
    }
}

/// Counts the data rows of a file for the progress bar (a newline count: close
/// enough for an ETA even when quoted CSV fields contain newlines).
fn count_rows(path: &Path, format: FileFormat) -> Option<u64> {
    let file = File::open(path).ok()?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut count = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {
                if !line.iter().all(u8::is_ascii_whitespace) {
                    count += 1;
                }
            }
            Err(_) => return None,
        }
    }
    Some(match format {
        FileFormat::Csv => count.saturating_sub(1),
        FileFormat::Ndjson => count,
    })
}

/// Imports one file and prints its summary.
pub async fn import_file(
    clients: &mut super::Clients,
    path: &Path,
    format: FileFormat,
    kind: RecordKind,
    batch_size: usize,
    currency: Option<String>,
    reject_path: &Path,
) -> anyhow::Result<ImportSummary> {
    let started = Instant::now();
    let total = count_rows(path, format);
    let (header, rows) = open_rows(path, format, kind)?;
    let rejects = Arc::new(Mutex::new(RejectFile {
        path: reject_path.to_path_buf(),
        header,
        writer: None,
    }));
    let sent: Arc<Mutex<VecDeque<SentBatch>>> = Arc::default();
    let rejected_locally = Arc::new(AtomicU64::new(0));
    let rows_read = Arc::new(AtomicU64::new(0));
    let (tx, rx) = tokio::sync::mpsc::channel::<StreamIngestRequest>(2);
    // Set when the stream fails, so a reader blocked on a full channel stops.
    let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
    let runtime = tokio::runtime::Handle::current();

    let producer = {
        let rejects = rejects.clone();
        let sent = sent.clone();
        let rejected_locally = rejected_locally.clone();
        let rows_read = rows_read.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let mut sequence = 0i64;
            let mut batch = Vec::with_capacity(batch_size);
            let mut origins = Vec::with_capacity(batch_size);
            let send = |records: Vec<_>, origins: Vec<_>, sequence: i64| -> bool {
                sent.lock().expect("lock").push_back(SentBatch {
                    sequence,
                    rows: origins,
                });
                let request = StreamIngestRequest {
                    sequence,
                    records,
                    all_or_nothing: false,
                };
                let mut cancel = cancel_rx.clone();
                runtime.block_on(async {
                    tokio::select! {
                        sent = tx.send(request) => sent.is_ok(),
                        _ = cancel.wait_for(|cancelled| *cancelled) => false,
                    }
                })
            };
            for item in rows {
                let (line, raw, row) = item?;
                rows_read.fetch_add(1, Ordering::Relaxed);
                match row.and_then(|row| row_to_record(kind, &row, currency.as_deref())) {
                    Ok(record) => {
                        batch.push(record);
                        origins.push((line, raw));
                    }
                    Err(reason) => {
                        rejected_locally.fetch_add(1, Ordering::Relaxed);
                        rejects.lock().expect("lock").write(line, &reason, &raw)?;
                    }
                }
                if batch.len() >= batch_size {
                    sequence += 1;
                    if !send(
                        std::mem::take(&mut batch),
                        std::mem::take(&mut origins),
                        sequence,
                    ) {
                        return Ok(()); // the stream ended; the receiver reports why
                    }
                }
            }
            if !batch.is_empty() {
                sequence += 1;
                send(batch, origins, sequence);
            }
            Ok(())
        })
    };

    let mut summary = ImportSummary::default();
    let mut progress = Progress::new(total, started);
    let outcome: anyhow::Result<()> = async {
        let mut stream = clients
            .ingest
            .stream_ingest(ReceiverStream::new(rx))
            .await
            .map_err(|status| status_error("StreamIngest", status))?
            .into_inner();
        while let Some(ack) = stream
            .message()
            .await
            .map_err(|status| status_error("StreamIngest", status))?
        {
            let batch = sent.lock().expect("lock").pop_front();
            let Some(batch) = batch else {
                anyhow::bail!(
                    "the server acknowledged batch {} that was never sent",
                    ack.sequence
                );
            };
            if batch.sequence != ack.sequence {
                anyhow::bail!(
                    "acknowledgement for batch {} while batch {} was expected",
                    ack.sequence,
                    batch.sequence
                );
            }
            let result = ack.result.unwrap_or_default();
            summary.accepted += result.accepted_count.max(0) as u64;
            summary.stale += result.stale_count.max(0) as u64;
            summary.rejected_by_server += result.rejected_count.max(0) as u64;
            let mut rejects = rejects.lock().expect("lock");
            for r in result
                .results
                .iter()
                .filter(|r| r.outcome == RecordOutcome::Rejected as i32)
            {
                let (line, raw) = batch
                    .rows
                    .get(r.index.max(0) as usize)
                    .cloned()
                    .unwrap_or_default();
                // "records[7].order.amount" names the batch position; the line number says it better.
                let path = r
                    .field_path
                    .split_once("].")
                    .map_or(r.field_path.as_str(), |(_, rest)| rest);
                let reason = if path.is_empty() {
                    r.reason.clone()
                } else {
                    format!("{path}: {}", r.reason)
                };
                rejects.write(line, &reason, &raw)?;
            }
            drop(rejects);
            let done = summary.accepted
                + summary.stale
                + summary.rejected_by_server
                + rejected_locally.load(Ordering::Relaxed);
            progress.update(done);
        }
        Ok(())
    }
    .await;
    progress.finish();
    let _ = cancel_tx.send(true);

    // Whatever was sent but never acknowledged is not stored for sure: report it.
    let producer_result = producer
        .await
        .map_err(|e| anyhow::anyhow!("the file reader failed: {e}"))?;
    let unacknowledged: Vec<SentBatch> = sent.lock().expect("lock").drain(..).collect();
    {
        let mut rejects = rejects.lock().expect("lock");
        if let Err(err) = &outcome {
            for batch in &unacknowledged {
                for (line, raw) in &batch.rows {
                    rejects.write(
                        *line,
                        &format!("not acknowledged by the server: {err:#}"),
                        raw,
                    )?;
                    summary.rejected_by_server += 1;
                }
            }
        }
        rejects.flush()?;
    }
    summary.rows = rows_read.load(Ordering::Relaxed);
    summary.rejected_locally = rejected_locally.load(Ordering::Relaxed);
    if let Err(err) = outcome {
        let last_line = unacknowledged
            .iter()
            .flat_map(|b| b.rows.last())
            .map(|(line, _)| *line)
            .max();
        let not_read = match last_line {
            Some(line) => format!("; rows after line {line} were not read"),
            None => String::new(),
        };
        return Err(err.context(format!(
            "import of {} stopped after {} stored rows; {} unacknowledged rows written to {}{not_read}. \
             Importing the file again is safe: records with the same id are replaced",
            path.display(),
            summary.accepted + summary.stale,
            unacknowledged.iter().map(|b| b.rows.len()).sum::<usize>(),
            reject_path.display(),
        )));
    }
    producer_result?;

    let elapsed = started.elapsed().as_secs_f64();
    let rate = if elapsed > 0.0 {
        summary.rows as f64 / elapsed
    } else {
        0.0
    };
    eprintln!(
        "{}: {} rows: {} accepted, {} stale, {} rejected ({} locally, {} by the server) in {:.1}s ({} records/s)",
        path.display(),
        summary.rows,
        summary.accepted,
        summary.stale,
        summary.rejected(),
        summary.rejected_locally,
        summary.rejected_by_server,
        elapsed,
        super::format::integer(rate.round() as i64),
    );
    if summary.rejected() > 0 {
        eprintln!("rejected rows written to {}", reject_path.display());
    }
    Ok(summary)
}

/// Progress on stderr: a bar redrawn with `\r` on a terminal, plain lines otherwise.
struct Progress {
    total: Option<u64>,
    started: Instant,
    last: Instant,
    terminal: bool,
    drawn: bool,
}

impl Progress {
    fn new(total: Option<u64>, started: Instant) -> Progress {
        Progress {
            total,
            started,
            last: started,
            terminal: std::io::stderr().is_terminal(),
            drawn: false,
        }
    }

    fn update(&mut self, done: u64) {
        let interval = if self.terminal {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(2)
        };
        if self.last.elapsed() < interval {
            return;
        }
        self.last = Instant::now();
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = done as f64 / elapsed;
        let mut text = format!(
            "{} records, {}/s",
            super::format::integer(done as i64),
            super::format::integer(rate as i64)
        );
        if let Some(total) = self.total.filter(|t| *t > 0) {
            let fraction = (done as f64 / total as f64).min(1.0);
            let eta = if rate > 0.0 {
                (total.saturating_sub(done)) as f64 / rate
            } else {
                0.0
            };
            text = format!(
                "{} of {} records ({:.0}%), {}/s, ETA {}",
                super::format::integer(done as i64),
                super::format::integer(total as i64),
                fraction * 100.0,
                super::format::integer(rate as i64),
                super::format::duration(eta)
            );
            if self.terminal {
                let filled = (fraction * 30.0).round() as usize;
                text = format!("[{}{}] {text}", "█".repeat(filled), "░".repeat(30 - filled));
            }
        }
        let mut stderr = std::io::stderr();
        if self.terminal {
            let _ = write!(stderr, "\r{text}\x1b[K");
            self.drawn = true;
        } else {
            let _ = writeln!(stderr, "{text}");
        }
        let _ = stderr.flush();
    }

    fn finish(&mut self) {
        if self.drawn {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}
