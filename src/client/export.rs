//! `salesmetrics export`: every stored record of one type, in the column
//! layout that `import` reads, so an export can be imported again unchanged.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::import::FileFormat;
use super::records::{RecordKind, record_to_row, row_to_json};
use super::{ConnectOptions, status_error};
use crate::proto::v1::ExportRecordsRequest;

/// Options of `salesmetrics export`.
#[derive(Debug, Args)]
#[command(after_long_help = "Examples:
  salesmetrics export --type orders > orders.csv
  salesmetrics export --type deals --format ndjson --output deals.ndjson

The columns are those `import` reads (see docs/import.md); records come in id order.")]
pub struct ExportArgs {
    #[command(flatten)]
    pub connect: ConnectOptions,
    /// Record type to export.
    #[arg(long = "type", value_enum, value_name = "TYPE")]
    pub kind: RecordKind,
    /// Output format (default: from the --output extension, else CSV).
    #[arg(long, value_enum)]
    pub format: Option<FileFormat>,
    /// Output file (default: standard output).
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// Runs `salesmetrics export`.
pub async fn run(args: ExportArgs) -> anyhow::Result<()> {
    let mut clients = args.connect.connect().await?;
    let format = args.format.unwrap_or_else(|| {
        args.output
            .as_deref()
            .map_or(FileFormat::Csv, FileFormat::from_path)
    });
    let out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let out = std::io::BufWriter::new(out);
    let mut stream = clients
        .ingest
        .export_records(ExportRecordsRequest {
            record_type: args.kind.record_type() as i32,
        })
        .await
        .map_err(|status| status_error("ExportRecords", status))?
        .into_inner();
    let mut sink = match format {
        FileFormat::Csv => {
            let mut writer = csv::Writer::from_writer(out);
            writer.write_record(args.kind.header())?;
            Sink::Csv(Box::new(writer))
        }
        FileFormat::Ndjson => Sink::Ndjson(out),
    };
    let mut count = 0u64;
    while let Some(chunk) = stream
        .message()
        .await
        .map_err(|status| status_error("ExportRecords", status))?
    {
        // Money targets are in minor units of the tenant currency, which
        // every chunk names.
        for record in &chunk.records {
            let Some(row) = record_to_row(args.kind, record, &chunk.currency_code) else {
                anyhow::bail!("the server sent a record of another type");
            };
            match &mut sink {
                Sink::Csv(writer) => writer.write_record(&row.cells)?,
                Sink::Ndjson(out) => {
                    serde_json::to_writer(&mut *out, &row_to_json(args.kind, &row))?;
                    out.write_all(b"\n")?;
                }
            }
            count += 1;
        }
    }
    match sink {
        Sink::Csv(mut writer) => writer.flush()?,
        Sink::Ndjson(mut out) => out.flush()?,
    }
    if let Some(path) = &args.output {
        eprintln!("{count} {} written to {}", args.kind.name(), path.display());
    }
    Ok(())
}

/// Where exported rows go.
enum Sink<W: Write> {
    /// CSV with a header row.
    Csv(Box<csv::Writer<W>>),
    /// One JSON object per line.
    Ndjson(W),
}
