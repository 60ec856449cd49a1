//! `IngestService`: batch and streaming ingest, delete and export.
//!
//! A batch is validated record by record ([`convert::record_from_proto`]) with
//! the tenant's currency read once, then the valid records are written in one
//! store transaction. Per-record outcomes come back in batch order.
//!
//! * Without `all_or_nothing`, invalid records are reported as REJECTED and the
//!   valid ones commit (atomically, together).
//! * With `all_or_nothing`, any invalid record (or a record the store rejects,
//!   e.g. a team cycle) fails the whole batch: `IngestBatch` returns
//!   INVALID_ARGUMENT with one `google.rpc.BadRequest` violation per invalid
//!   record; `StreamIngest` acknowledges the batch with every record REJECTED
//!   (the invalid ones with their own field path) and goes on with the next.
//! * A batch larger than `max_batch_size` is refused as a whole: `IngestBatch`
//!   returns RESOURCE_EXHAUSTED ("batch has N records; the limit is M", a
//!   limit, like every other limit); `StreamIngest` acknowledges it with every record
//!   REJECTED at the field path `records` and goes on.
//! * The `BadRequest` details of a refused batch list at most
//!   [`MAX_REPORTED_VIOLATIONS`] violations (the last one then gives the
//!   total), because they travel in a size-limited response header; the
//!   per-record results of a stream acknowledgement list every record.
//! * Infrastructure errors (database unavailable, internal) fail the call; on
//!   a stream they end the stream with that status after the acknowledgements
//!   of the batches before.
//!
//! `StreamIngest` writes batches strictly one after the other, in stream
//! order, and acknowledges each only once it is committed. While one batch is
//! written, the next one is read from the client and validated (at most one
//! batch ahead, so decoding and validation overlap the database work); the
//! one after is read only once the written batch's acknowledgement is
//! queued. The acknowledgement queue holds at most `max_in_flight_batches`
//! entries, so a client that stops reading acknowledgements stops the server
//! from reading its batches (back-pressure, no unbounded buffering). When a
//! batch fails with an infrastructure error, the stream ends with that status
//! and the batch read ahead is dropped unwritten.
//!
//! A stream outlives the authentication of its first message, so before
//! each batch is written the stream's API key is read again: once the key
//! is revoked (or deleted), the stream ends with UNAUTHENTICATED (the same
//! answer as any refused credential) and that batch and the ones after it
//! are not written. The acknowledged batches before stay committed.
//!
//! `StreamIngest` and `ExportRecords` streams last at most
//! `max_stream_lifetime`: then the stream ends with DEADLINE_EXCEEDED (after
//! the acknowledgements already sent; a batch not yet acknowledged may or
//! may not be written, as when any stream breaks) and the client opens a new
//! one, so no stream holds a concurrency slot forever.

use std::sync::Arc;

use futures::StreamExt as _;
use futures::stream::BoxStream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::api::convert::{self, FieldViolation};
use crate::auth::{ApiKeyId, check_key_still_valid, tenant_of};
use crate::domain::rules::{MAX_ID_LEN, is_valid_id};
use crate::domain::{Record, RecordType};
use crate::error::{Error, Result};
use crate::metrics::{Metrics, RecordOutcome};
use crate::proto::v1 as pb;
use crate::store::{Store, WriteOutcome, settings_of};
use pb::ingest_service_server::IngestService;

/// Most field violations put into the `BadRequest` details of one refused
/// batch. The details travel in a response header, which HTTP/2 peers limit
/// in size (often to 16 KiB), so a batch with thousands of invalid records
/// lists the first ones and says how many there are in all.
pub const MAX_REPORTED_VIOLATIONS: usize = 50;

/// Records per page of `ExportRecords`.
pub const EXPORT_PAGE_SIZE: u32 = 500;

/// Limits that bound the work and memory of one ingest call.
#[derive(Debug, Clone)]
pub struct IngestLimits {
    /// Most records in one batch (unary or streamed) and ids in one delete.
    pub max_batch_size: usize,
    /// Most acknowledged batches of one stream waiting to be sent to the client.
    pub max_in_flight_batches: usize,
    /// How long a stream may go without a batch before it is ended (`None`: never).
    pub stream_idle_timeout: Option<std::time::Duration>,
    /// How long a `StreamIngest` or `ExportRecords` stream may last in all
    /// (`None`: no limit).
    pub max_stream_lifetime: Option<std::time::Duration>,
}

impl Default for IngestLimits {
    fn default() -> Self {
        IngestLimits {
            max_batch_size: 10_000,
            max_in_flight_batches: 4,
            stream_idle_timeout: Some(std::time::Duration::from_secs(60)),
            max_stream_lifetime: Some(std::time::Duration::from_secs(3600)),
        }
    }
}

/// The `IngestService` implementation.
#[derive(Clone)]
pub struct IngestApi {
    /// Where records are written and read.
    store: Arc<dyn Store>,
    /// Batch size and stream limits.
    limits: IngestLimits,
    /// Where record outcomes are counted.
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for IngestApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestApi")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// What became of a batch that reached the store or failed validation.
enum BatchOutcome {
    /// The valid records are committed; the result lists every record.
    Committed(pb::BatchResult),
    /// Nothing was stored (all-or-nothing batch with invalid records, or an
    /// oversize batch): `error` for the unary call, `result` for a stream ack.
    Refused {
        error: Error,
        result: pb::BatchResult,
    },
}

/// A batch that went through validation, waiting for its turn to be written.
enum Validated {
    /// Decided without the store: refused (oversize, or all-or-nothing with
    /// invalid records), or empty.
    Decided(BatchOutcome),
    /// Valid records to write.
    ToWrite(PendingWrite),
}

/// The validated part of a batch and what is needed to report on it.
struct PendingWrite {
    /// Type and id of every record as sent, in batch order.
    identities: Vec<Identity>,
    /// The valid records, in batch order.
    valid: Vec<Record>,
    /// The batch index of each valid record.
    valid_index: Vec<usize>,
    /// The invalid records: batch index and why.
    violations: Vec<(usize, FieldViolation)>,
    /// Whether any rejection refuses the whole batch.
    all_or_nothing: bool,
}

/// One streamed batch as handed from the reading to the writing stage.
enum StreamItem {
    /// A batch and its validation (or the infrastructure error that stopped it).
    Batch {
        /// The client's sequence number, echoed in the acknowledgement.
        sequence: i64,
        /// The validated batch.
        validated: Result<Validated>,
    },
    /// Reading the stream failed; it ends with this status.
    Failed(Status),
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn result_of(results: Vec<pb::RecordResult>) -> pb::BatchResult {
    let with =
        |o: pb::RecordOutcome| count(results.iter().filter(|r| r.outcome == o as i32).count());
    pb::BatchResult {
        accepted_count: with(pb::RecordOutcome::Accepted),
        stale_count: with(pb::RecordOutcome::Stale),
        rejected_count: with(pb::RecordOutcome::Rejected),
        results,
    }
}

/// The type and id of a record as sent, kept for its result. An oversized id
/// is itself the reported problem and is not echoed back.
#[derive(Clone)]
struct Identity {
    record_type: pb::RecordType,
    id: String,
}

impl Identity {
    fn of(record: &pb::Record) -> Self {
        let (record_type, id) = convert::proto_record_identity(record);
        let id = if id.len() <= MAX_ID_LEN {
            id.to_string()
        } else {
            String::new()
        };
        Identity { record_type, id }
    }
}

fn record_result(
    index: usize,
    identity: &Identity,
    outcome: pb::RecordOutcome,
    violation: Option<&FieldViolation>,
) -> pb::RecordResult {
    pb::RecordResult {
        index: count(index),
        record_type: identity.record_type as i32,
        id: identity.id.clone(),
        outcome: outcome as i32,
        field_path: violation.map(|v| v.field.clone()).unwrap_or_default(),
        reason: violation.map(|v| v.reason.clone()).unwrap_or_default(),
    }
}

/// Every record of a refused batch as REJECTED: the ones in `violations` with
/// their own path and reason, the others with `reason` at `records[i]`.
fn refused_result(
    identities: &[Identity],
    violations: &[(usize, FieldViolation)],
    reason: &str,
) -> pb::BatchResult {
    let mut own: Vec<Option<&FieldViolation>> = vec![None; identities.len()];
    for (i, v) in violations {
        if let Some(slot) = own.get_mut(*i) {
            *slot = Some(v);
        }
    }
    let results = identities
        .iter()
        .zip(own)
        .enumerate()
        .map(|(i, (identity, own))| {
            let fallback;
            let v = match own {
                Some(v) => v,
                None => {
                    fallback = FieldViolation::new(format!("records[{i}]"), reason);
                    &fallback
                }
            };
            record_result(i, identity, pb::RecordOutcome::Rejected, Some(v))
        })
        .collect();
    result_of(results)
}

impl IngestApi {
    /// An ingest service writing to `store` within `limits`, counting record
    /// outcomes into `metrics`.
    pub fn new(store: Arc<dyn Store>, limits: IngestLimits, metrics: Arc<Metrics>) -> Self {
        IngestApi {
            store,
            limits,
            metrics,
        }
    }

    /// Validates and writes one batch, and counts its record outcomes
    /// (a batch that fails with an infrastructure error counts nothing).
    async fn run_batch(
        &self,
        tenant: &str,
        records: Vec<pb::Record>,
        all_or_nothing: bool,
    ) -> Result<BatchOutcome> {
        let validated = self.validate(tenant, records, all_or_nothing).await?;
        self.finish(tenant, validated).await
    }

    /// Writes a validated batch (unless it is decided already) and counts
    /// its record outcomes.
    async fn finish(&self, tenant: &str, validated: Validated) -> Result<BatchOutcome> {
        let outcome = match validated {
            Validated::Decided(outcome) => outcome,
            Validated::ToWrite(pending) => self.write(tenant, pending).await?,
        };
        match &outcome {
            BatchOutcome::Committed(result) | BatchOutcome::Refused { result, .. } => {
                self.count_records(result);
            }
        }
        Ok(outcome)
    }

    /// Counts the per-record outcomes of a batch (committed or refused) by
    /// domain record type; outcomes UNSPECIFIED are not counted.
    fn count_records(&self, result: &pb::BatchResult) {
        for record in &result.results {
            let outcome = match pb::RecordOutcome::try_from(record.outcome) {
                Ok(pb::RecordOutcome::Accepted) => RecordOutcome::Ingested,
                Ok(pb::RecordOutcome::Stale) => RecordOutcome::Stale,
                Ok(pb::RecordOutcome::Rejected) => RecordOutcome::Rejected,
                _ => continue,
            };
            let record_type = convert::record_type_from_proto("", record.record_type).ok();
            self.metrics.count_record(record_type, outcome);
        }
    }

    /// Checks the batch size and converts every record with the tenant's
    /// currency; nothing is written.
    async fn validate(
        &self,
        tenant: &str,
        records: Vec<pb::Record>,
        all_or_nothing: bool,
    ) -> Result<Validated> {
        let max = self.limits.max_batch_size;
        if records.len() > max {
            let reason = format!("batch has {} records; the limit is {max}", records.len());
            // Every record is reported at `records`, the field that is too long.
            let violation = FieldViolation::new("records", reason.clone());
            let results = records
                .iter()
                .enumerate()
                .map(|(i, record)| {
                    let identity = Identity::of(record);
                    record_result(i, &identity, pb::RecordOutcome::Rejected, Some(&violation))
                })
                .collect();
            let result = result_of(results);
            return Ok(Validated::Decided(BatchOutcome::Refused {
                error: Error::ResourceExhausted(reason),
                result,
            }));
        }
        if records.is_empty() {
            return Ok(Validated::Decided(BatchOutcome::Committed(result_of(
                Vec::new(),
            ))));
        }
        let settings = settings_of(self.store.as_ref(), tenant).await?;
        let currency = settings.currency_code.as_str();

        let mut valid: Vec<Record> = Vec::with_capacity(records.len());
        let mut valid_index: Vec<usize> = Vec::with_capacity(records.len());
        let mut violations: Vec<(usize, FieldViolation)> = Vec::new();
        let identities: Vec<Identity> = records.iter().map(Identity::of).collect();
        for (i, record) in records.into_iter().enumerate() {
            match convert::record_from_proto(i, record, currency) {
                Ok(r) => {
                    valid.push(r);
                    valid_index.push(i);
                }
                Err(v) => violations.push((i, v)),
            }
        }

        if all_or_nothing && !violations.is_empty() {
            return Ok(Validated::Decided(refuse(&identities, violations)));
        }
        Ok(Validated::ToWrite(PendingWrite {
            identities,
            valid,
            valid_index,
            violations,
            all_or_nothing,
        }))
    }

    /// Writes the valid records of a batch in one store transaction and
    /// builds the batch's result.
    async fn write(&self, tenant: &str, pending: PendingWrite) -> Result<BatchOutcome> {
        let PendingWrite {
            identities,
            valid,
            valid_index,
            violations,
            all_or_nothing,
        } = pending;
        let outcomes = if valid.is_empty() {
            Vec::new()
        } else {
            self.store.write(tenant, &valid, all_or_nothing).await?
        };
        if outcomes.len() != valid.len() {
            return Err(Error::internal(format!(
                "store returned {} outcomes for {} records",
                outcomes.len(),
                valid.len()
            )));
        }

        let mut per_record: Vec<Option<(pb::RecordOutcome, Option<FieldViolation>)>> =
            vec![None; identities.len()];
        for (i, v) in violations {
            per_record[i] = Some((pb::RecordOutcome::Rejected, Some(v)));
        }
        let mut store_rejections = Vec::new();
        for (outcome, i) in outcomes.into_iter().zip(valid_index) {
            per_record[i] = Some(match outcome {
                WriteOutcome::Accepted => (pb::RecordOutcome::Accepted, None),
                WriteOutcome::Stale => (pb::RecordOutcome::Stale, None),
                WriteOutcome::Rejected { field, reason } => {
                    let v = FieldViolation::new(format!("records[{i}].{field}"), reason);
                    store_rejections.push((i, v.clone()));
                    (pb::RecordOutcome::Rejected, Some(v))
                }
            });
        }

        if all_or_nothing && !store_rejections.is_empty() {
            return Ok(refuse(&identities, store_rejections));
        }

        let results = identities
            .iter()
            .zip(per_record)
            .enumerate()
            .map(|(i, (identity, outcome))| {
                let (outcome, violation) =
                    outcome.unwrap_or((pb::RecordOutcome::Unspecified, None));
                record_result(i, identity, outcome, violation.as_ref())
            })
            .collect();
        Ok(BatchOutcome::Committed(result_of(results)))
    }
}

/// An all-or-nothing batch refused because of `violations`.
fn refuse(identities: &[Identity], violations: Vec<(usize, FieldViolation)>) -> BatchOutcome {
    let result = refused_result(
        identities,
        &violations,
        "not stored: another record of this all_or_nothing batch is invalid",
    );
    let total = violations.len();
    let mut listed: Vec<FieldViolation> = violations
        .into_iter()
        .take(MAX_REPORTED_VIOLATIONS)
        .map(|(_, v)| v)
        .collect();
    if total > MAX_REPORTED_VIOLATIONS {
        listed.truncate(MAX_REPORTED_VIOLATIONS - 1);
        listed.push(FieldViolation::new(
            "records",
            format!(
                "{total} records are invalid; only the first {} are listed",
                MAX_REPORTED_VIOLATIONS - 1
            ),
        ));
    }
    let error = convert::violations_error(listed);
    BatchOutcome::Refused { error, result }
}

#[tonic::async_trait]
impl IngestService for IngestApi {
    async fn ingest_batch(
        &self,
        request: Request<pb::IngestBatchRequest>,
    ) -> std::result::Result<Response<pb::IngestBatchResponse>, Status> {
        let tenant = tenant_of(&request);
        let req = request.into_inner();
        match self
            .run_batch(&tenant, req.records, req.all_or_nothing)
            .await?
        {
            BatchOutcome::Committed(result) => Ok(Response::new(pb::IngestBatchResponse {
                result: Some(result),
            })),
            BatchOutcome::Refused { error, .. } => Err(error.into()),
        }
    }

    type StreamIngestStream = LimitedStream<pb::StreamIngestResponse>;

    async fn stream_ingest(
        &self,
        request: Request<Streaming<pb::StreamIngestRequest>>,
    ) -> std::result::Result<Response<Self::StreamIngestStream>, Status> {
        let tenant = tenant_of(&request);
        // The key the stream was opened with, checked again before each
        // batch is written: revoking it ends the stream (see the module docs).
        let key = request.extensions().get::<ApiKeyId>().cloned();
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(self.limits.max_in_flight_batches.max(1));
        // Validated batches on their way to the writing stage: one slot,
        // reserved before a batch is read, so reading runs at most one batch
        // ahead of writing.
        let (ready_tx, mut ready_rx) = mpsc::channel::<StreamItem>(1);
        let reading = {
            let api = self.clone();
            let tenant = tenant.clone();
            tokio::spawn(async move {
                loop {
                    let Ok(slot) = ready_tx.reserve().await else {
                        break;
                    };
                    let next = match api.limits.stream_idle_timeout {
                        None => inbound.message().await,
                        Some(idle) => match tokio::time::timeout(idle, inbound.message()).await {
                            Ok(next) => next,
                            Err(_) => Err(Status::deadline_exceeded(format!(
                                "no batch for {} s: the idle stream is closed; open a new stream to send more",
                                idle.as_secs()
                            ))),
                        },
                    };
                    let item = match next {
                        Ok(Some(batch)) => StreamItem::Batch {
                            sequence: batch.sequence,
                            validated: api
                                .validate(&tenant, batch.records, batch.all_or_nothing)
                                .await,
                        },
                        Ok(None) => break,
                        Err(status) => {
                            StreamItem::Failed(crate::error::relabel_request_error(status))
                        }
                    };
                    let failed = matches!(item, StreamItem::Failed(_));
                    slot.send(item);
                    if failed {
                        break;
                    }
                }
            })
        };
        let api = self.clone();
        tokio::spawn(async move {
            while let Some(item) = ready_rx.recv().await {
                let ack = match item {
                    StreamItem::Batch {
                        sequence,
                        validated,
                    } => {
                        if let Some(key) = &key
                            && let Err(status) =
                                check_key_still_valid(api.store.as_ref(), key).await
                        {
                            // Ends the stream; this batch is not written.
                            let _ = tx.send(Err(status)).await;
                            break;
                        }
                        let outcome = match validated {
                            Ok(validated) => api.finish(&tenant, validated).await,
                            Err(error) => Err(error),
                        };
                        match outcome {
                            Ok(
                                BatchOutcome::Committed(result)
                                | BatchOutcome::Refused { result, .. },
                            ) => Ok(pb::StreamIngestResponse {
                                sequence,
                                result: Some(result),
                            }),
                            Err(error) => Err(Status::from(error)),
                        }
                    }
                    StreamItem::Failed(status) => Err(status),
                };
                let failed = ack.is_err();
                // Waits while `max_in_flight_batches` acks are unread.
                if tx.send(ack).await.is_err() || failed {
                    break;
                }
            }
            // A batch read ahead of a failure is dropped unwritten.
            reading.abort();
        });
        Ok(Response::new(ending_at_lifetime(
            rx,
            self.limits.max_stream_lifetime,
        )))
    }

    async fn delete_records(
        &self,
        request: Request<pb::DeleteRecordsRequest>,
    ) -> std::result::Result<Response<pb::DeleteRecordsResponse>, Status> {
        let tenant = tenant_of(&request);
        let req = request.into_inner();
        let record_type =
            convert::record_type_from_proto("record_type", req.record_type).map_err(Error::from)?;
        let max = self.limits.max_batch_size;
        if req.ids.len() > max {
            return Err(Error::ResourceExhausted(format!(
                "request has {} ids; the limit is {max}",
                req.ids.len()
            ))
            .into());
        }
        let violations: Vec<FieldViolation> = req
            .ids
            .iter()
            .enumerate()
            .filter(|(_, id)| !is_valid_id(id))
            .filter_map(|(i, id)| convert::parse_id(&format!("ids[{i}]"), id.clone()).err())
            .collect();
        if !violations.is_empty() {
            return Err(convert::violations_error(violations).into());
        }
        let deleted = if req.ids.is_empty() {
            0
        } else {
            self.store.delete(&tenant, record_type, &req.ids).await?
        };
        Ok(Response::new(pb::DeleteRecordsResponse {
            deleted_count: i32::try_from(deleted).unwrap_or(i32::MAX),
        }))
    }

    type ExportRecordsStream = LimitedStream<pb::ExportRecordsResponse>;

    async fn export_records(
        &self,
        request: Request<pb::ExportRecordsRequest>,
    ) -> std::result::Result<Response<Self::ExportRecordsStream>, Status> {
        let tenant = tenant_of(&request);
        let req = request.into_inner();
        let record_type: RecordType =
            convert::record_type_from_proto("record_type", req.record_type).map_err(Error::from)?;
        let currency = settings_of(self.store.as_ref(), &tenant)
            .await?
            .currency_code;
        let store = Arc::clone(&self.store);
        let (tx, rx) = mpsc::channel(2);
        tokio::spawn(async move {
            let mut after: Option<String> = None;
            loop {
                let page = match store
                    .export(&tenant, record_type, after.as_deref(), EXPORT_PAGE_SIZE)
                    .await
                {
                    Ok(page) => page,
                    Err(error) => {
                        let _ = tx.send(Err(Status::from(error))).await;
                        break;
                    }
                };
                let Some(last) = page.last() else { break };
                let full = page.len() >= EXPORT_PAGE_SIZE as usize;
                after = Some(last.id().to_string());
                let records = page
                    .iter()
                    .map(|r| convert::record_to_proto(r, &currency))
                    .collect();
                let chunk = pb::ExportRecordsResponse {
                    records,
                    currency_code: currency.clone(),
                };
                if tx.send(Ok(chunk)).await.is_err() || !full {
                    break;
                }
            }
        });
        Ok(Response::new(ending_at_lifetime(
            rx,
            self.limits.max_stream_lifetime,
        )))
    }
}

/// A response stream that ends at the stream lifetime limit.
pub type LimitedStream<T> = BoxStream<'static, std::result::Result<T, Status>>;

/// The messages of `rx`, until `lifetime` has passed since now: then
/// DEADLINE_EXCEEDED ends the stream (whatever is still queued is dropped;
/// the producer sees the channel closed and stops).
fn ending_at_lifetime<T: Send + 'static>(
    rx: mpsc::Receiver<std::result::Result<T, Status>>,
    lifetime: Option<std::time::Duration>,
) -> LimitedStream<T> {
    let Some(lifetime) = lifetime else {
        return ReceiverStream::new(rx).boxed();
    };
    let deadline = tokio::time::Instant::now() + lifetime;
    futures::stream::unfold(Some(rx), move |rx| async move {
        let mut rx = rx?;
        tokio::select! {
            // The deadline first, so a busy stream ends on time too.
            biased;
            () = tokio::time::sleep_until(deadline) => Some((
                Err(Status::deadline_exceeded(format!(
                    "the stream is {} s old, the longest a stream may last; open a new stream to go on",
                    lifetime.as_secs()
                ))),
                None,
            )),
            item = rx.recv() => item.map(|item| (item, Some(rx))),
        }
    })
    .boxed()
}
