//! PostgreSQL's full load reads each record table as one binary
//! `COPY (SELECT …) TO STDOUT` stream and parses its rows here. Fetching
//! rows through the driver costs a decoded row object and an await per
//! record, and at millions of records that cost was most of a cold start.
//! The stream arrives in chunks of many rows, which are parsed in place.
//!
//! The format (PostgreSQL's "binary COPY"): an 11-byte signature, 32-bit
//! flags and a 32-bit header-extension length (followed by the extension);
//! then per row a 16-bit field count and, per field, a 32-bit length (-1:
//! NULL) and that many bytes; a field count of -1 ends the stream. Integers
//! are big-endian, text is UTF-8.

use futures::TryStreamExt;
use sqlx::postgres::Postgres;

use super::reads::{self, SqlReads};
use super::rows;
use super::{DATA_VERSION_SQL, LoadQueue};
use crate::domain::Dataset;
use crate::error::{Error, Result};

/// The first bytes of every binary COPY stream.
const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// One part of a full load (see `SqlReads::load_part`): in one read
/// transaction, the tenant's data version and every row of each record
/// type `queue` hands out, each list sorted by id.
pub(super) async fn load_part(
    reads: &SqlReads<Postgres>,
    tenant: &str,
    queue: &LoadQueue,
) -> Result<(Option<i64>, Dataset)> {
    let mut tx = reads.begin().await?;
    // First statement: the snapshot starts here, so the version matches
    // the records read after it.
    let version: Option<i64> = sqlx::query_scalar(DATA_VERSION_SQL)
        .bind(tenant)
        .fetch_optional(&mut *tx)
        .await?;
    let mut dataset = Dataset::default();
    while let Some(record_type) = queue.next() {
        // COPY takes no bind parameters: the tenant is a quoted literal.
        let statement = format!(
            "COPY ({} WHERE tenant_id = {}) TO STDOUT (FORMAT binary)",
            reads::select_sql(record_type),
            quote_literal(tenant)
        );
        let mut chunks = tx.copy_out_raw(&statement).await?;
        let mut reader = CopyReader::default();
        while let Some(chunk) = chunks.try_next().await? {
            reader.feed(&chunk, |fields| {
                dataset.push(rows::read_copy_record(record_type, fields)?);
                Ok(())
            })?;
        }
        drop(chunks);
        reader.finish()?;
        dataset.sort_by_id(record_type);
    }
    tx.commit().await?;
    Ok((version, dataset))
}

/// `value` as an SQL string literal. Tenant ids are checked at the edge
/// (letters, digits, '.', '_', ':' and '-'); quotes are doubled anyway.
fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// The parser of one binary COPY stream, fed chunk by chunk; a row split
/// across chunks waits in `pending` for the rest.
#[derive(Debug, Default)]
struct CopyReader {
    /// Bytes received and not parsed yet.
    pending: Vec<u8>,
    /// Whether the header has been read.
    started: bool,
    /// Whether the end marker has been read.
    ended: bool,
}

/// What the bytes at a position hold.
enum Next {
    /// A row of that many bytes, its fields parsed.
    Row(usize),
    /// The end marker.
    End,
    /// Not all of the next row yet.
    Incomplete,
}

impl CopyReader {
    /// Parses the rows `chunk` completes, handing each row's fields to `row`.
    fn feed(
        &mut self,
        chunk: &[u8],
        mut row: impl FnMut(&[Option<&[u8]>]) -> Result<()>,
    ) -> Result<()> {
        self.pending.extend_from_slice(chunk);
        let mut at = 0;
        if !self.started {
            let Some(extension) = self.pending.get(15..19) else {
                return Ok(());
            };
            if !self.pending.starts_with(SIGNATURE) {
                return Err(corrupt("no binary COPY signature"));
            }
            let extension = u32::from_be_bytes(four(extension)) as usize;
            if self.pending.len() < 19 + extension {
                return Ok(());
            }
            self.started = true;
            at = 19 + extension;
        }
        {
            let mut fields: Vec<Option<&[u8]>> = Vec::new();
            while !self.ended {
                match next_row(self.pending.get(at..).unwrap_or_default(), &mut fields)? {
                    Next::Row(len) => {
                        row(&fields)?;
                        at += len;
                    }
                    Next::End => {
                        self.ended = true;
                        at += 2;
                    }
                    Next::Incomplete => break,
                }
            }
        }
        self.pending.drain(..at.min(self.pending.len()));
        if self.ended && !self.pending.is_empty() {
            return Err(corrupt("data after the end of a binary COPY stream"));
        }
        Ok(())
    }

    /// Checks that the stream ended with its end marker.
    fn finish(&self) -> Result<()> {
        if self.ended && self.pending.is_empty() {
            Ok(())
        } else {
            Err(corrupt("a binary COPY stream ended early"))
        }
    }
}

/// Parses the row at the start of `bytes` into `fields`.
fn next_row<'b>(bytes: &'b [u8], fields: &mut Vec<Option<&'b [u8]>>) -> Result<Next> {
    fields.clear();
    let Some(count) = bytes.get(..2) else {
        return Ok(Next::Incomplete);
    };
    let count = i16::from_be_bytes([count[0], count[1]]);
    if count == -1 {
        return Ok(Next::End);
    }
    let count = usize::try_from(count).map_err(|_| corrupt("a negative field count"))?;
    let mut at = 2;
    for _ in 0..count {
        let Some(len) = bytes.get(at..at + 4) else {
            return Ok(Next::Incomplete);
        };
        at += 4;
        // -1 is NULL; no other negative length exists.
        let Ok(len) = usize::try_from(i32::from_be_bytes(four(len))) else {
            fields.push(None);
            continue;
        };
        let Some(value) = bytes.get(at..at + len) else {
            return Ok(Next::Incomplete);
        };
        fields.push(Some(value));
        at += len;
    }
    Ok(Next::Row(at))
}

/// The first four bytes of `bytes` (which has at least four).
fn four(bytes: &[u8]) -> [u8; 4] {
    let mut out = [0; 4];
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = *b;
    }
    out
}

fn corrupt(what: &str) -> Error {
    Error::internal(format!("full load: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream with a header extension, two rows of a text, a NULL and a
    /// BIGINT, a row of no fields and the end marker, fed a byte at a time,
    /// five bytes at a time and whole: the same rows every way.
    #[test]
    fn rows_split_across_chunks_parse_as_whole_ones() {
        let mut stream = SIGNATURE.to_vec();
        stream.extend(0u32.to_be_bytes());
        stream.extend(3u32.to_be_bytes());
        stream.extend(b"xyz");
        for (id, n) in [("o1", 7i64), ("o22", -1)] {
            stream.extend(3i16.to_be_bytes());
            stream.extend((id.len() as i32).to_be_bytes());
            stream.extend(id.as_bytes());
            stream.extend((-1i32).to_be_bytes());
            stream.extend(8i32.to_be_bytes());
            stream.extend(n.to_be_bytes());
        }
        stream.extend(0i16.to_be_bytes());
        stream.extend((-1i16).to_be_bytes());
        for chunk in [1, 5, stream.len()] {
            let mut reader = CopyReader::default();
            let mut rows: Vec<Vec<Option<Vec<u8>>>> = Vec::new();
            for piece in stream.chunks(chunk) {
                reader
                    .feed(piece, |fields| {
                        rows.push(fields.iter().map(|f| f.map(<[u8]>::to_vec)).collect());
                        Ok(())
                    })
                    .unwrap();
            }
            reader.finish().unwrap();
            assert_eq!(
                rows,
                vec![
                    vec![
                        Some(b"o1".to_vec()),
                        None,
                        Some(7i64.to_be_bytes().to_vec())
                    ],
                    vec![
                        Some(b"o22".to_vec()),
                        None,
                        Some((-1i64).to_be_bytes().to_vec())
                    ],
                    vec![],
                ],
                "chunks of {chunk} bytes"
            );
        }
    }

    /// A stream cut before its end marker, or not a binary COPY stream at
    /// all, is an error, never a short load.
    #[test]
    fn a_cut_or_foreign_stream_is_an_error() {
        let mut reader = CopyReader::default();
        let mut header = SIGNATURE.to_vec();
        header.extend([0; 8]);
        reader.feed(&header, |_| Ok(())).unwrap();
        assert!(reader.finish().is_err());
        let mut reader = CopyReader::default();
        assert!(
            reader
                .feed(b"id,version\n1,2\n3,4\n5,6\n", |_| Ok(()))
                .is_err()
        );
    }

    #[test]
    fn tenant_literals_double_their_quotes() {
        assert_eq!(quote_literal("acme"), "'acme'");
        assert_eq!(quote_literal("o'brien"), "'o''brien'");
    }
}
