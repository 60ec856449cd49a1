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
            // Rejected rows may have more fields than the header.
            let mut writer = csv::WriterBuilder::new().flexible(true).from_writer(file);
            let mut header = vec!["line".to_string(), "reason".to_string()];
            header.extend(self.header.iter().cloned());
            writer.write_record(&header)?;
            self.writer = Some(writer);
        }
        let writer = self.writer.as_mut().expect("created above");
        let mut record = vec![line.to_string(), reason.to_string()];
        record.extend(raw.iter().cloned());
        // A short row is padded so its cells stay under their columns.
        record.resize(record.len().max(self.header.len() + 2), String::new());
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
            let mut records = CsvRecords::new(BufReader::new(file));
            let header: Vec<String> = match records.next_record(None) {
                Ok(Some(CsvItem::Record(_, cells))) => cells,
                Ok(Some(CsvItem::Bad(_, _, reason))) => {
                    anyhow::bail!("{}: cannot read the header row: {reason}", path.display())
                }
                Ok(None) => Vec::new(),
                Err(e) => {
                    anyhow::bail!("{}: cannot read the header row: {e}", path.display())
                }
            };
            let mut header = header;
            if let Some(first) = header.first_mut() {
                // A UTF-8 byte order mark is not part of the first column's name.
                *first = first.trim_start_matches('\u{feff}').to_string();
            }
            let mapping = kind
                .map_header(&header)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let width = kind.columns().len();
            let header_len = header.len();
            let rows = std::iter::from_fn(move || {
                let item = match records.next_record(Some(header_len)) {
                    Ok(Some(item)) => item,
                    Ok(None) => return None,
                    Err(err) => {
                        return Some(Err(anyhow::anyhow!("reading the file failed: {err}")));
                    }
                };
                Some(Ok(match item {
                    CsvItem::Bad(line, raw, reason) => (line, raw, Err(reason)),
                    CsvItem::Record(line, raw) => {
                        if raw.len() != header_len {
                            let reason = format!(
                                "expected {header_len} fields like the header, found {}",
                                raw.len()
                            );
                            (line, raw, Err(reason))
                        } else {
                            let mut cells = vec![String::new(); width];
                            for (cell, target) in raw.iter().zip(&mapping) {
                                if let Some(i) = target {
                                    cells[*i] = cell.clone();
                                }
                            }
                            (line, raw, Ok(Row { cells }))
                        }
                    }
                }))
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

/// One CSV record: its first line number and cells, or why it cannot be read
/// (line, the cells as far as they could be read, reason).
enum CsvItem {
    Record(u64, Vec<String>),
    Bad(u64, Vec<String>, String),
}

/// CSV records read line by line, so that one malformed row cannot take the
/// rest of the file with it. A record ends at the first line end outside a
/// quoted field (a field is quoted when it starts with `"`). A record that is
/// still inside quotes at the end of the file, or that spans several lines
/// and then does not have the header's number of fields or has a closing
/// quote followed by more text, has an unclosed quote: its first line is rejected and the lines after it are read again
/// as records of their own.
struct CsvRecords<R> {
    reader: R,
    last_line: u64,
    /// Lines to read again (after an unclosed quote), before the reader's.
    queued: VecDeque<(u64, Vec<u8>)>,
}

impl<R: BufRead> CsvRecords<R> {
    fn new(reader: R) -> Self {
        CsvRecords {
            reader,
            last_line: 0,
            queued: VecDeque::new(),
        }
    }

    fn next_line(&mut self) -> std::io::Result<Option<(u64, Vec<u8>)>> {
        if let Some(line) = self.queued.pop_front() {
            return Ok(Some(line));
        }
        let mut bytes = Vec::new();
        if self.reader.read_until(b'\n', &mut bytes)? == 0 {
            return Ok(None);
        }
        self.last_line += 1;
        Ok(Some((self.last_line, bytes)))
    }

    /// The next record; `width` is the header's number of fields (`None`
    /// while reading the header). Blank lines between records are skipped.
    fn next_record(&mut self, width: Option<usize>) -> std::io::Result<Option<CsvItem>> {
        let mut lines: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut quotes = QuoteState::default();
        loop {
            match self.next_line()? {
                Some((n, bytes)) => {
                    if lines.is_empty() && bytes.iter().all(|b| matches!(b, b'\r' | b'\n')) {
                        continue;
                    }
                    quotes.feed(&bytes);
                    lines.push((n, bytes));
                    if !quotes.in_quotes {
                        break;
                    }
                }
                None if lines.is_empty() => return Ok(None),
                None => break,
            }
        }
        let first = lines[0].0;
        let joined: Vec<u8> = lines.iter().flat_map(|(_, b)| b.iter().copied()).collect();
        let parsed = parse_csv_record(&joined);
        let wrong_width = matches!((&parsed, width), (Ok(cells), Some(w)) if cells.len() != w);
        let spans_lines = lines.len() > 1;
        if quotes.in_quotes || (spans_lines && (wrong_width || quotes.stray_close)) {
            let (_, mut bytes) = lines.remove(0);
            for line in lines.into_iter().rev() {
                self.queued.push_front(line);
            }
            // The line end is not part of the open field.
            while bytes.last().is_some_and(|b| matches!(b, b'\r' | b'\n')) {
                bytes.pop();
            }
            let raw = parse_csv_record(&bytes)
                .unwrap_or_else(|_| vec![String::from_utf8_lossy(&bytes).trim_end().to_string()]);
            return Ok(Some(CsvItem::Bad(
                first,
                raw,
                "unclosed quote: a quoted field is not closed on its line".to_string(),
            )));
        }
        Ok(Some(match parsed {
            Ok(cells) => CsvItem::Record(first, cells),
            Err(err) => CsvItem::Bad(first, Vec::new(), format!("unreadable CSV row: {err}")),
        }))
    }
}

/// Where a CSV text stands with respect to quoted fields, byte by byte.
#[derive(Default)]
struct QuoteState {
    in_quotes: bool,
    /// The next byte starts a field (only then does `"` open a quoted field).
    mid_field: bool,
    /// The last byte closed a quoted field (`""` inside quotes is a quote).
    just_closed: bool,
    /// A closing quote was followed by something other than a quote, a
    /// delimiter or a line end: the quote that opened it was probably never
    /// meant to be closed there.
    stray_close: bool,
}

impl QuoteState {
    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.in_quotes {
                if b == b'"' {
                    self.in_quotes = false;
                    self.just_closed = true;
                }
                continue;
            }
            if self.just_closed && !matches!(b, b'"' | b',' | b'\r' | b'\n') {
                self.stray_close = true;
            }
            match b {
                b'"' if self.just_closed || !self.mid_field => {
                    self.in_quotes = true;
                    self.mid_field = true;
                }
                b',' | b'\n' => self.mid_field = false,
                _ => self.mid_field = true,
            }
            self.just_closed = false;
        }
    }
}

/// The cells of one CSV record (its text may span lines).
fn parse_csv_record(bytes: &[u8]) -> Result<Vec<String>, csv::Error> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    match reader.records().next() {
        Some(record) => Ok(record?.iter().map(str::to_string).collect()),
        None => Ok(Vec::new()),
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

/// Progress on stderr. On a terminal, an `indicatif` bar redrawn in place:
/// a 20-cell bar, then rows done of the total, the rate and the ETA, cut at
/// the terminal's edge so a narrow terminal never wraps it. Anywhere else
/// (a pipe, a log file), the same figures as a plain line every 2 seconds.
struct Progress {
    /// Rows in the file, when they could be counted.
    total: Option<u64>,
    /// When the import started: the rate is over the whole run.
    started: Instant,
    /// When a plain line was last printed (not on a terminal).
    last: Instant,
    /// The bar on a terminal; `None` prints plain lines.
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(total: Option<u64>, started: Instant) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            // `wide_msg` takes the width the bar leaves and is cut, not wrapped.
            let template = match total {
                Some(_) => "{bar:20} {wide_msg}",
                None => "{spinner} {wide_msg}",
            };
            let style = indicatif::ProgressStyle::with_template(template)
                .expect("a valid progress template")
                .progress_chars("█▉▊▋▌▍▎▏░");
            let bar = indicatif::ProgressBar::with_draw_target(
                total,
                indicatif::ProgressDrawTarget::stderr(),
            );
            bar.set_style(style);
            bar
        });
        Progress {
            total,
            started,
            last: started,
            bar,
        }
    }

    /// Rows done so far: `1,200 of 5,000 records (24%), 3,000/s, ETA 1s`.
    fn text(&self, done: u64) -> String {
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = done as f64 / elapsed;
        match self.total.filter(|t| *t > 0) {
            Some(total) => {
                let fraction = (done as f64 / total as f64).min(1.0);
                let eta = if rate > 0.0 {
                    (total.saturating_sub(done)) as f64 / rate
                } else {
                    0.0
                };
                format!(
                    "{} of {} records ({:.0}%), {}/s, ETA {}",
                    super::format::integer(done as i64),
                    super::format::integer(total as i64),
                    fraction * 100.0,
                    super::format::integer(rate as i64),
                    super::format::duration(eta)
                )
            }
            None => format!(
                "{} records, {}/s",
                super::format::integer(done as i64),
                super::format::integer(rate as i64)
            ),
        }
    }

    fn update(&mut self, done: u64) {
        if let Some(bar) = &self.bar {
            // indicatif limits redraws to a few per second by itself.
            bar.set_message(self.text(done));
            bar.set_position(done);
            return;
        }
        if self.last.elapsed() < Duration::from_secs(2) {
            return;
        }
        self.last = Instant::now();
        let mut stderr = std::io::stderr();
        let _ = writeln!(stderr, "{}", self.text(done));
        let _ = stderr.flush();
    }

    /// Clears the bar, so the summary line stands alone.
    fn finish(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(text: &str, width: usize) -> Vec<(u64, Result<Vec<String>, String>)> {
        let mut records = CsvRecords::new(text.as_bytes());
        let mut out = Vec::new();
        while let Some(item) = records.next_record(Some(width)).expect("in memory") {
            out.push(match item {
                CsvItem::Record(line, cells) => (line, Ok(cells)),
                CsvItem::Bad(line, _, reason) => (line, Err(reason)),
            });
        }
        out
    }

    fn cells(v: &[&str]) -> Result<Vec<String>, String> {
        Ok(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn quoted_fields_may_span_lines_and_escape_quotes() {
        let text = "a,\"two\nlines\",c\r\n\nb,\"say \"\"hi\"\"\",5\" screen\n";
        assert_eq!(
            read_all(text, 3),
            vec![
                (1, cells(&["a", "two\nlines", "c"])),
                (4, cells(&["b", "say \"hi\"", "5\" screen"])),
            ]
        );
    }

    #[test]
    fn an_unclosed_quote_rejects_its_line_only() {
        // At the end of the file, and in the middle (closed by a later quote).
        let text = "a,b,c\nd,\"e,f\ng,h,i\nj,\"k\",l\n";
        let out = read_all(text, 3);
        assert_eq!(out[0], (1, cells(&["a", "b", "c"])));
        assert_eq!(out[1].0, 2);
        assert!(
            out[1]
                .1
                .as_ref()
                .is_err_and(|r| r.contains("unclosed quote"))
        );
        assert_eq!(out[2], (3, cells(&["g", "h", "i"])));
        assert_eq!(out[3], (4, cells(&["j", "k", "l"])));
        assert_eq!(out.len(), 4);
    }
}
