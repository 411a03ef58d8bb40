//! The raw archive: every Kinesis record as the function received it, one JSON
//! line each (shard, sequence number, arrival time, partition key, the bytes in
//! base64), many lines packed into each Firehose record, so that `sightline
//! replay` can find a range the on-failure queue names after the stream's
//! retention has dropped it.
//!
//! Writing ([`RawArchive`], [`PackedArchive`] over any `PutRecordBatch`-shaped
//! port) is best effort and bounded in time ([`archive_deadline`]): the lake's
//! freshness matters more than the archive, so a batch whose archive write
//! failed goes on, and the failure is counted. Reading ([`select_range`]) keeps
//! one shard's `start..=end`, drops the repeats a retried batch leaves (it is
//! archived once per attempt), orders by sequence number and refuses a range it
//! can tell is incomplete.

use std::collections::BTreeMap;
use std::future::Future;

use base64::Engine;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::cost::{CostModel, Op};
use crate::delivery::{BatchCallError, RecordBatchPort, send_resending_failures};
use crate::packing::{FIREHOSE_MAX_RECORD_BYTES, PackedRecord, chunk_by_limits, chunk_calls};
use crate::ports::PortError;
use crate::retry::{Classify, ErrorClass, Retrier, RetryCounters, RetryPolicy};
use crate::seq::{cmp_sequence, sequence_le};
use crate::time::{Clock, Deadline, MS_PER_HOUR, MS_PER_SECOND, UtcHour};

/// The archive write's own upper bound per batch, retries included.
pub const ARCHIVE_TIMEOUT_MS: i64 = 2_000;
/// ... and never more than this fraction (1/n) of the time left before the
/// invocation's deadline: the batch itself keeps the rest.
pub const ARCHIVE_SHARE_OF_TIME_LEFT: i64 = 10;
/// Room kept in each line part for everything but the payload: the shard id and
/// sequence number (at most 128 characters each in Kinesis), the partition key
/// (at most 256) and the field names.
pub const LINE_FIELDS_ALLOWANCE: usize = 4 * 1024;
/// Payload bytes per line part: base64 (4/3) plus the fields stays within one
/// Firehose record. A Kinesis record (up to 1 MiB, which is over 1.3 MiB in
/// base64) larger than this is written as several numbered parts.
pub const MAX_PART_PAYLOAD_BYTES: usize =
    (FIREHOSE_MAX_RECORD_BYTES - LINE_FIELDS_ALLOWANCE) / 4 * 3;
/// Firehose's longest buffering interval: an object's time prefix is the
/// arrival of the oldest record in it, which may be this much older than any
/// line of a given batch.
pub const FIREHOSE_MAX_BUFFER_MS: i64 = 900 * MS_PER_SECOND;
/// The first two bytes of a gzip member (RFC 1952): Firehose's GZIP objects.
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// One Kinesis record as the function received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRecord<'a> {
    pub shard_id: &'a str,
    pub sequence_number: &'a str,
    /// `approximateArrivalTimestamp`, epoch ms.
    pub arrival_ms: i64,
    pub partition_key: Option<&'a str>,
    /// The record's data as received (a KPL aggregate stays whole).
    pub data: &'a [u8],
}

/// One archive line as written.
#[derive(Serialize)]
struct LineOut<'a> {
    shard_id: &'a str,
    sequence_number: &'a str,
    arrival_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    partition_key: Option<&'a str>,
    /// `[index, count]`, only on a record split into parts.
    #[serde(skip_serializing_if = "Option::is_none")]
    part: Option<[usize; 2]>,
    data_base64: &'a str,
}

/// One archive line as read back.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ArchiveLine {
    pub shard_id: String,
    pub sequence_number: String,
    pub arrival_ms: i64,
    #[serde(default)]
    pub partition_key: Option<String>,
    #[serde(default)]
    pub part: Option<[usize; 2]>,
    pub data_base64: String,
}

/// One encoded line and the record (by index) it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedLine {
    pub record: usize,
    pub bytes: Vec<u8>,
}

/// Encodes every record as one newline-terminated JSON line (or, past
/// [`MAX_PART_PAYLOAD_BYTES`], as numbered parts), in order.
pub fn encode_lines(records: &[RawRecord<'_>]) -> Result<Vec<EncodedLine>, serde_json::Error> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        let parts: Vec<&[u8]> = if r.data.len() <= MAX_PART_PAYLOAD_BYTES {
            vec![r.data]
        } else {
            r.data.chunks(MAX_PART_PAYLOAD_BYTES).collect()
        };
        let count = parts.len();
        for (k, chunk) in parts.into_iter().enumerate() {
            let data = b64.encode(chunk);
            let mut bytes = serde_json::to_vec(&LineOut {
                shard_id: r.shard_id,
                sequence_number: r.sequence_number,
                arrival_ms: r.arrival_ms,
                partition_key: r.partition_key,
                part: (count > 1).then_some([k, count]),
                data_base64: &data,
            })?;
            bytes.push(b'\n');
            out.push(EncodedLine { record: i, bytes });
        }
    }
    Ok(out)
}

/// Packs consecutive lines into Firehose records of at most
/// [`FIREHOSE_MAX_RECORD_BYTES`]. No line count limit: the archive stream does
/// not de-aggregate, it stores the records' bytes back to back.
pub fn pack_lines(lines: &[EncodedLine]) -> Vec<PackedRecord> {
    chunk_by_limits(
        lines.iter().map(|l| l.bytes.len()),
        usize::MAX,
        FIREHOSE_MAX_RECORD_BYTES,
    )
    .into_iter()
    .map(|range| PackedRecord {
        data: lines[range.clone()]
            .iter()
            .flat_map(|l| l.bytes.iter().copied())
            .collect(),
        events: range,
    })
    .collect()
}

/// Why (part of) a batch was not archived.
#[derive(Debug, Error)]
pub enum ArchiveError<E: std::error::Error + 'static> {
    #[error("could not encode archive lines")]
    Encode(#[source] serde_json::Error),
    #[error("{failed} of {records} record(s) not archived")]
    Put {
        failed: usize,
        records: usize,
        #[source]
        source: BatchCallError<E>,
    },
}

impl<E: std::error::Error + Classify + 'static> Classify for ArchiveError<E> {
    fn class(&self) -> ErrorClass {
        match self {
            ArchiveError::Encode(_) => ErrorClass::Permanent,
            ArchiveError::Put { source, .. } => source.class(),
        }
    }

    fn is_deadline(&self) -> bool {
        matches!(self, ArchiveError::Put { source, .. } if source.is_deadline())
    }
}

/// What one archive write did.
#[derive(Debug)]
pub struct Archived<E> {
    /// Kinesis records given.
    pub records: usize,
    /// Of them, archived whole (every line accepted).
    pub archived: usize,
    /// Firehose records sent (accepted or not) and their bytes.
    pub firehose_records: usize,
    pub bytes: usize,
    pub error: Option<E>,
}

impl<E> Archived<E> {
    pub fn failed(&self) -> usize {
        self.records - self.archived
    }
}

/// Where the function writes the raw archive (a Direct PUT Firehose stream in
/// production).
pub trait RawArchive: Send + Sync {
    type Error: PortError;

    /// Archives `records`, retrying as `retrier` allows; reports how many made it.
    fn archive<'a>(
        &'a self,
        records: &'a [RawRecord<'a>],
        retrier: &'a Retrier<'a>,
    ) -> impl Future<Output = Archived<Self::Error>> + Send + 'a;
}

/// No archive: the function runs without one (local runs, most tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoArchive;

/// [`NoArchive`] never fails.
#[derive(Debug, Error)]
#[error("no archive")]
pub struct NoArchiveError;

impl Classify for NoArchiveError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Permanent
    }
}

impl RawArchive for NoArchive {
    type Error = NoArchiveError;

    async fn archive<'a>(
        &'a self,
        records: &'a [RawRecord<'a>],
        _retrier: &'a Retrier<'a>,
    ) -> Archived<NoArchiveError> {
        Archived {
            records: records.len(),
            archived: 0,
            firehose_records: 0,
            bytes: 0,
            error: None,
        }
    }
}

/// The archive over a `PutRecordBatch`-shaped port: lines packed into records,
/// records into calls within the service limits, and only the entries Firehose
/// rejected re-sent (as the event sink does).
#[derive(Debug, Clone)]
pub struct PackedArchive<P> {
    pub port: P,
}

impl<P: RecordBatchPort> PackedArchive<P> {
    pub fn new(port: P) -> Self {
        PackedArchive { port }
    }

    async fn archive_packed(
        &self,
        records: &[RawRecord<'_>],
        retrier: &Retrier<'_>,
    ) -> Archived<ArchiveError<P::Error>> {
        let lines = match encode_lines(records) {
            Ok(l) => l,
            Err(e) => {
                return Archived {
                    records: records.len(),
                    archived: 0,
                    firehose_records: 0,
                    bytes: 0,
                    error: Some(ArchiveError::Encode(e)),
                };
            }
        };
        let packed = pack_lines(&lines);
        let mut line_ok = vec![false; lines.len()];
        let mut error = None;
        let mut sent = 0;
        let mut bytes = 0;
        for call in chunk_calls(&packed) {
            sent += call.len();
            bytes += packed[call.clone()]
                .iter()
                .map(|r| r.data.len())
                .sum::<usize>();
            let (accepted, err) = send_resending_failures(retrier, call.len(), |idx| {
                let data: Vec<&[u8]> = idx
                    .iter()
                    .map(|i| packed[call.start + i].data.as_slice())
                    .collect();
                async move { self.port.put_record_batch(&data).await }
            })
            .await;
            for (k, ok) in accepted.into_iter().enumerate() {
                if ok {
                    line_ok[packed[call.start + k].events.clone()].fill(true);
                }
            }
            if let Some(e) = err {
                // The time is shared: what is left of the batch is not tried.
                error = Some(e);
                break;
            }
        }
        let mut record_ok = vec![true; records.len()];
        for (line, ok) in lines.iter().zip(&line_ok) {
            if !ok {
                record_ok[line.record] = false;
            }
        }
        let archived = record_ok.iter().filter(|ok| **ok).count();
        Archived {
            records: records.len(),
            archived,
            firehose_records: sent,
            bytes,
            error: error.map(|source| ArchiveError::Put {
                failed: records.len() - archived,
                records: records.len(),
                source,
            }),
        }
    }
}

impl<P: RecordBatchPort> RawArchive for PackedArchive<P> {
    type Error = ArchiveError<P::Error>;

    fn archive<'a>(
        &'a self,
        records: &'a [RawRecord<'a>],
        retrier: &'a Retrier<'a>,
    ) -> impl Future<Output = Archived<Self::Error>> + Send + 'a {
        self.archive_packed(records, retrier)
    }
}

impl<T: RawArchive> RawArchive for std::sync::Arc<T> {
    type Error = T::Error;

    fn archive<'a>(
        &'a self,
        records: &'a [RawRecord<'a>],
        retrier: &'a Retrier<'a>,
    ) -> impl Future<Output = Archived<Self::Error>> + Send + 'a {
        (**self).archive(records, retrier)
    }
}

/// The archive write's own deadline: [`ARCHIVE_TIMEOUT_MS`] from now, and no
/// more than [`ARCHIVE_SHARE_OF_TIME_LEFT`] of what the invocation has left
/// (zero when it has nothing left: then no attempt starts).
pub fn archive_deadline(batch: Deadline, now_ms: i64) -> Deadline {
    let budget = match batch.budget_ms(now_ms) {
        None => ARCHIVE_TIMEOUT_MS,
        Some(left) => (left / ARCHIVE_SHARE_OF_TIME_LEFT).clamp(0, ARCHIVE_TIMEOUT_MS),
    };
    Deadline::at(now_ms.saturating_add(budget), 0)
}

/// What archiving one batch did, with the retry counts to add to the batch's.
#[derive(Debug)]
pub struct ArchiveReport<E> {
    pub archived: Archived<E>,
    pub retries: u64,
    pub throttled: u64,
    pub timed_out: u64,
}

/// Archives one batch within [`archive_deadline`] of `deadline`, with the
/// batch's retry policy (its attempts bounded by the archive's own time).
/// `costs` is the archive's own latency record, kept apart from the sink's so
/// that the batch's time estimates do not move with it.
pub async fn archive_batch<A: RawArchive>(
    archive: &A,
    records: &[RawRecord<'_>],
    policy: RetryPolicy,
    deadline: Deadline,
    clock: &dyn Clock,
    costs: &CostModel,
) -> ArchiveReport<A::Error> {
    let counters = RetryCounters::default();
    let own = archive_deadline(deadline, clock.now_ms());
    let retrier = Retrier::new(policy, own, clock, &counters, costs).for_op(Op::Sink, 0);
    let archived = archive.archive(records, &retrier).await;
    ArchiveReport {
        archived,
        retries: counters.retries(),
        throttled: counters.throttled(),
        timed_out: counters.timed_out(),
    }
}

// ------------------------------------------------------------------ reading back

/// Where the stack's archive stream writes (its `Prefix`, below the archive
/// location): `dt=YYYY-MM-DD/hour=HH/`, by the time Firehose received the
/// object's oldest record.
pub fn hive_hour_prefix(base: &str, hour: UtcHour) -> String {
    format!(
        "{base}dt={}/hour={}/",
        hour.date_string(),
        hour.hour_string()
    )
}

/// Firehose's default time prefix `YYYY/MM/dd/HH/`, which it appends to a
/// prefix with no `!{timestamp:...}` expression (and which moto always appends).
pub fn default_hour_prefix(base: &str, hour: UtcHour) -> String {
    format!(
        "{base}{:04}/{:02}/{:02}/{:02}/",
        hour.year, hour.month, hour.day, hour.hour
    )
}

/// The object key prefixes to list for a range whose first record arrived in
/// Kinesis at `first_arrival_ms` and that the mapping gave up on at
/// `gave_up_ms`: every hour from one buffer interval before the arrival (an
/// object is filed under its oldest record's hour) to one hour after giving up
/// (the last attempt's lines may wait in the buffer), in both layouts.
pub fn hour_prefixes(base: &str, first_arrival_ms: i64, gave_up_ms: i64) -> Vec<String> {
    let from = (first_arrival_ms - FIREHOSE_MAX_BUFFER_MS).div_euclid(MS_PER_HOUR);
    let to = (gave_up_ms.max(first_arrival_ms) + MS_PER_HOUR).div_euclid(MS_PER_HOUR);
    let mut out = Vec::new();
    for h in from..=to {
        let hour = UtcHour::from_epoch_ms(h * MS_PER_HOUR);
        out.push(hive_hour_prefix(base, hour));
        out.push(default_hour_prefix(base, hour));
    }
    out
}

/// True when `bytes` start a gzip stream (the stack's archive objects; moto
/// writes them uncompressed).
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&GZIP_MAGIC)
}

/// Parses an object's (decompressed) lines; returns them and the number of
/// lines that were not archive lines.
pub fn parse_lines(body: &[u8]) -> (Vec<ArchiveLine>, usize) {
    let mut lines = Vec::new();
    let mut bad = 0;
    for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<ArchiveLine>(line) {
            Ok(l) => lines.push(l),
            Err(_) => bad += 1,
        }
    }
    (lines, bad)
}

/// One record read back from the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedRecord {
    pub sequence_number: String,
    pub partition_key: Option<String>,
    pub arrival_ms: i64,
    pub data: Vec<u8>,
}

/// Why a range cannot be replayed from the archive.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ArchiveRangeError {
    #[error("the archive holds nothing of {shard} {start}..={end}")]
    NotFound {
        shard: String,
        start: String,
        end: String,
    },
    #[error(
        "the archive lacks the range's {which} record {sequence} ({found} record(s) of the range found)"
    )]
    MissingEdge {
        which: &'static str,
        sequence: String,
        found: usize,
    },
    #[error(
        "the archive holds {found} record(s) of the range; the on-failure record counts {expected}"
    )]
    Short { found: usize, expected: usize },
    #[error("record {sequence} was archived in {count} parts and part {missing} is missing")]
    MissingPart {
        sequence: String,
        count: usize,
        missing: usize,
    },
    #[error("record {sequence}: its base64 data does not decode")]
    Base64 {
        sequence: String,
        #[source]
        source: base64::DecodeError,
    },
}

/// The range to read: one shard's `start..=end`, and how many records the
/// on-failure record says it holds (0 when unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveRange<'a> {
    pub shard_id: &'a str,
    pub start: &'a str,
    pub end: &'a str,
    pub batch_size: usize,
}

/// Keeps the lines of `range` (sequence numbers compared numerically), drops
/// repeats, joins parts, orders by sequence number; refuses the range when its
/// first or last record is missing, or fewer records than the on-failure
/// record counts were found.
pub fn select_range(
    lines: impl IntoIterator<Item = ArchiveLine>,
    range: ArchiveRange<'_>,
) -> Result<Vec<ArchivedRecord>, ArchiveRangeError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    // By sequence number (numeric order via the key's own ordering below): the
    // first copy of each part.
    let mut found: BTreeMap<SeqKey, (ArchiveLine, BTreeMap<usize, String>)> = BTreeMap::new();
    for line in lines {
        if line.shard_id != range.shard_id
            || !sequence_le(range.start, &line.sequence_number)
            || !sequence_le(&line.sequence_number, range.end)
        {
            continue;
        }
        let (index, _) = line.part.map_or((0, 1), |[i, n]| (i, n));
        let entry = found
            .entry(SeqKey(line.sequence_number.clone()))
            .or_insert_with(|| (line.clone(), BTreeMap::new()));
        entry
            .1
            .entry(index)
            .or_insert_with(|| line.data_base64.clone());
    }
    if found.is_empty() {
        return Err(ArchiveRangeError::NotFound {
            shard: range.shard_id.into(),
            start: range.start.into(),
            end: range.end.into(),
        });
    }
    for (which, sequence) in [("first", range.start), ("last", range.end)] {
        if !found.contains_key(&SeqKey(sequence.to_string())) {
            return Err(ArchiveRangeError::MissingEdge {
                which,
                sequence: sequence.into(),
                found: found.len(),
            });
        }
    }
    if range.batch_size > 0 && found.len() < range.batch_size {
        return Err(ArchiveRangeError::Short {
            found: found.len(),
            expected: range.batch_size,
        });
    }
    let mut out = Vec::with_capacity(found.len());
    for (SeqKey(sequence), (first, parts)) in found {
        let count = first.part.map_or(1, |[_, n]| n.max(1));
        let mut data = Vec::new();
        for k in 0..count {
            let Some(part) = parts.get(&k) else {
                return Err(ArchiveRangeError::MissingPart {
                    sequence,
                    count,
                    missing: k,
                });
            };
            let bytes = b64
                .decode(part)
                .map_err(|source| ArchiveRangeError::Base64 {
                    sequence: sequence.clone(),
                    source,
                })?;
            data.extend_from_slice(&bytes);
        }
        out.push(ArchivedRecord {
            sequence_number: sequence,
            partition_key: first.partition_key,
            arrival_ms: first.arrival_ms,
            data,
        });
    }
    Ok(out)
}

/// A sequence number ordered numerically.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SeqKey(String);

impl Ord for SeqKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        cmp_sequence(&self.0, &other.0)
    }
}

impl PartialOrd for SeqKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::{FakeError, MemoryFirehose};
    use crate::packing::{FIREHOSE_CALL_RAW_BYTES_BUDGET, FIREHOSE_MAX_RECORDS_PER_CALL};
    use crate::time::TokioClock;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    const SHARD: &str = "shardId-000000000003";

    /// A Kinesis-like sequence number (56 digits) ending in `n`.
    fn seq(n: u64) -> String {
        format!("4960118965842235937883629852182763847532018901230{n:07}")
    }

    /// A ~200 B camera event, like Dataset A's.
    fn payload(id: u64) -> Vec<u8> {
        format!(
            r#"{{"detection_oid":{id},"video_camera_oid":1017,"geographical_location_oid":42,"item_name":"bicycle","timestamp_detected":1763899000000,"extra":"padding-to-about-two-hundred-bytes-xxxxxxxxxxxxxxxx"}}"#
        )
        .into_bytes()
    }

    struct Batch {
        seqs: Vec<String>,
        keys: Vec<String>,
        data: Vec<Vec<u8>>,
    }

    impl Batch {
        fn new(n: u64) -> Self {
            Batch {
                seqs: (0..n).map(seq).collect(),
                keys: (0..n).map(|i| format!("camera-{}", i % 17)).collect(),
                data: (0..n).map(payload).collect(),
            }
        }

        fn records(&self) -> Vec<RawRecord<'_>> {
            (0..self.seqs.len())
                .map(|i| RawRecord {
                    shard_id: SHARD,
                    sequence_number: &self.seqs[i],
                    arrival_ms: 1_763_900_000_000 + i as i64,
                    partition_key: Some(&self.keys[i]),
                    data: &self.data[i],
                })
                .collect()
        }
    }

    fn lines_of(encoded: &[EncodedLine]) -> Vec<ArchiveLine> {
        let body: Vec<u8> = encoded.iter().flat_map(|l| l.bytes.clone()).collect();
        let (lines, bad) = parse_lines(&body);
        assert_eq!(bad, 0);
        lines
    }

    fn range<'a>(start: &'a str, end: &'a str, batch_size: usize) -> ArchiveRange<'a> {
        ArchiveRange {
            shard_id: SHARD,
            start,
            end,
            batch_size,
        }
    }

    #[test]
    fn each_record_becomes_one_line_with_shard_sequence_arrival_key_and_the_payload() {
        let batch = Batch::new(3);
        let encoded = encode_lines(&batch.records()).expect("encode");
        assert_eq!(encoded.len(), 3);
        assert!(encoded.iter().all(|l| l.bytes.ends_with(b"\n")));
        let lines = lines_of(&encoded);
        let b64 = base64::engine::general_purpose::STANDARD;
        for (i, l) in lines.iter().enumerate() {
            assert_eq!(l.shard_id, SHARD);
            assert_eq!(l.sequence_number, batch.seqs[i]);
            assert_eq!(l.arrival_ms, 1_763_900_000_000 + i as i64);
            assert_eq!(l.partition_key.as_deref(), Some(batch.keys[i].as_str()));
            assert_eq!(l.part, None);
            assert_eq!(b64.decode(&l.data_base64).ok(), Some(batch.data[i].clone()));
        }
        // What a line costs over its payload: base64 (4/3) plus the fields.
        let line = encoded[0].bytes.len();
        let data = batch.data[0].len();
        println!(
            "a {data} B payload takes a {line} B archive line ({} B of fields)",
            line - data.div_ceil(3) * 4
        );
        assert!(line - data.div_ceil(3) * 4 < 200, "{line} B");
    }

    #[test]
    fn lines_pack_into_records_within_the_record_limit_and_calls_within_the_call_limits() {
        // Lambda's largest Kinesis batch.
        let batch = Batch::new(10_000);
        let encoded = encode_lines(&batch.records()).expect("encode");
        let packed = pack_lines(&encoded);
        let total: usize = encoded.iter().map(|l| l.bytes.len()).sum();
        assert_eq!(packed.len(), total.div_ceil(FIREHOSE_MAX_RECORD_BYTES));
        let mut next = 0;
        for r in &packed {
            assert!(r.data.len() <= FIREHOSE_MAX_RECORD_BYTES);
            assert_eq!(r.events.start, next, "lines stay in order, none skipped");
            next = r.events.end;
        }
        assert_eq!(next, encoded.len());
        for call in chunk_calls(&packed) {
            assert!(call.len() <= FIREHOSE_MAX_RECORDS_PER_CALL);
            let bytes: usize = packed[call].iter().map(|r| r.data.len()).sum();
            assert!(bytes <= FIREHOSE_CALL_RAW_BYTES_BUDGET);
        }
        println!(
            "10,000 records of ~{} B: {} archive bytes in {} Firehose record(s), {} call(s)",
            batch.data[0].len(),
            total,
            packed.len(),
            chunk_calls(&packed).len()
        );
    }

    #[test]
    fn a_record_over_one_firehose_record_is_archived_in_parts_and_joined_on_read() {
        let big: Vec<u8> = (0..1_048_576u32).map(|i| (i % 251) as u8).collect();
        let s = seq(1);
        let records = [RawRecord {
            shard_id: SHARD,
            sequence_number: &s,
            arrival_ms: 5,
            partition_key: None,
            data: &big,
        }];
        let encoded = encode_lines(&records).expect("encode");
        assert_eq!(encoded.len(), big.len().div_ceil(MAX_PART_PAYLOAD_BYTES));
        let packed = pack_lines(&encoded);
        assert!(
            packed
                .iter()
                .all(|r| r.data.len() <= FIREHOSE_MAX_RECORD_BYTES)
        );
        let mut lines = lines_of(&encoded);
        lines.reverse();
        let got = select_range(lines.clone(), range(&s, &s, 1)).expect("joined");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].data, big);
        assert_eq!(got[0].partition_key, None);
        lines.remove(0);
        assert!(matches!(
            select_range(lines, range(&s, &s, 1)),
            Err(ArchiveRangeError::MissingPart { .. })
        ));
    }

    #[test]
    fn a_range_keeps_its_shard_and_sequences_drops_repeats_and_orders_numerically() {
        let mut lines = Vec::new();
        let line = |shard: &str, seq: &str| ArchiveLine {
            shard_id: shard.into(),
            sequence_number: seq.into(),
            arrival_ms: 1,
            partition_key: Some("k".into()),
            part: None,
            data_base64: base64::engine::general_purpose::STANDARD.encode(seq),
        };
        // 8..=12: 9 < 10 numerically, not as text.
        for s in ["12", "9", "10", "8", "11", "13", "7"] {
            lines.push(line(SHARD, s));
        }
        // A retried batch archived twice, and another shard's records.
        lines.push(line(SHARD, "10"));
        lines.push(line(SHARD, "9"));
        lines.push(line("shardId-000000000004", "10"));
        let got = select_range(lines, range("8", "12", 5)).expect("range");
        let seqs: Vec<&str> = got.iter().map(|r| r.sequence_number.as_str()).collect();
        assert_eq!(seqs, ["8", "9", "10", "11", "12"]);
        assert!(got.iter().all(|r| r.data == r.sequence_number.as_bytes()));
    }

    #[test]
    fn an_incomplete_range_is_refused() {
        let batch = Batch::new(6);
        let lines = lines_of(&encode_lines(&batch.records()).expect("encode"));
        let (s, e) = (&batch.seqs[1], &batch.seqs[4]);
        assert_eq!(
            select_range(lines.clone(), range(s, e, 4)).map(|r| r.len()),
            Ok(4)
        );
        // Nothing of it at all.
        assert!(matches!(
            select_range(lines.clone(), range(&seq(100), &seq(200), 0)),
            Err(ArchiveRangeError::NotFound { .. })
        ));
        // Its first, or its last, record missing.
        let without = |gone: &str| -> Vec<ArchiveLine> {
            lines
                .iter()
                .filter(|l| l.sequence_number != gone)
                .cloned()
                .collect()
        };
        assert!(matches!(
            select_range(without(s), range(s, e, 0)),
            Err(ArchiveRangeError::MissingEdge { which: "first", .. })
        ));
        assert!(matches!(
            select_range(without(e), range(s, e, 0)),
            Err(ArchiveRangeError::MissingEdge { which: "last", .. })
        ));
        // One in the middle missing: known only through the on-failure record's count.
        let middle = without(&batch.seqs[2]);
        assert!(matches!(
            select_range(middle.clone(), range(s, e, 4)),
            Err(ArchiveRangeError::Short {
                found: 3,
                expected: 4
            })
        ));
        assert_eq!(select_range(middle, range(s, e, 0)).map(|r| r.len()), Ok(3));
    }

    #[test]
    fn the_hours_listed_run_from_a_buffer_before_the_arrival_to_an_hour_after_giving_up() {
        // First record 2025-11-23T12:10Z; given up 14:30Z.
        let arrival = 1_763_899_800_000;
        let prefixes = hour_prefixes("raw/", arrival, arrival + 2 * MS_PER_HOUR + 20 * 60_000);
        let hive: Vec<&String> = prefixes.iter().filter(|p| p.contains("dt=")).collect();
        assert_eq!(
            hive,
            [
                "raw/dt=2025-11-23/hour=11/",
                "raw/dt=2025-11-23/hour=12/",
                "raw/dt=2025-11-23/hour=13/",
                "raw/dt=2025-11-23/hour=14/",
                "raw/dt=2025-11-23/hour=15/",
            ]
        );
        assert!(prefixes.contains(&"raw/2025/11/23/12/".to_string()));
        assert_eq!(prefixes.len(), 10);
        // Across midnight.
        let late = 1_763_942_400_000 - 60_000; // 2025-11-23T23:59Z
        let p = hour_prefixes("raw/", late + 30 * 60_000, late);
        assert!(p.contains(&"raw/dt=2025-11-24/hour=01/".to_string()));
    }

    #[test]
    fn gzip_objects_are_told_from_plain_ones_by_their_magic_bytes() {
        assert!(is_gzip(&[0x1f, 0x8b, 0x08, 0x00]));
        assert!(!is_gzip(b"{\"shard_id\":"));
        assert!(!is_gzip(b""));
    }

    #[test]
    fn the_archive_gets_its_own_timeout_and_never_more_than_a_tenth_of_the_time_left() {
        let now = 1_000_000;
        // 59.5 s left: the timeout bounds it.
        let d = archive_deadline(Deadline::at(now + 60_000, 500), now);
        assert_eq!(d.budget_ms(now), Some(ARCHIVE_TIMEOUT_MS));
        // 3 s left: a tenth of it.
        let d = archive_deadline(Deadline::at(now + 3_500, 500), now);
        assert_eq!(d.budget_ms(now), Some(300));
        // Nothing left: nothing.
        let d = archive_deadline(Deadline::at(now + 100, 500), now);
        assert_eq!(d.budget_ms(now), Some(0));
        // A local run without a deadline still has a bound.
        assert_eq!(
            archive_deadline(Deadline::none(), now).budget_ms(now),
            Some(ARCHIVE_TIMEOUT_MS)
        );
    }

    fn quick() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            ..RetryPolicy::default()
        }
    }

    #[tokio::test]
    async fn entries_firehose_rejects_are_sent_again_until_every_record_is_archived() {
        let archive = PackedArchive::new(MemoryFirehose::default());
        archive.port.fail_next_call(1.0);
        let batch = Batch::new(3_000);
        let costs = CostModel::default();
        let report = archive_batch(
            &archive,
            &batch.records(),
            quick(),
            Deadline::none(),
            &crate::time::SystemClock,
            &costs,
        )
        .await;
        let a = &report.archived;
        assert!(a.error.is_none(), "{:?}", a.error);
        assert_eq!((a.records, a.archived, a.failed()), (3_000, 3_000, 0));
        assert_eq!(report.retries, 1);
        assert_eq!(
            report.throttled, 1,
            "ServiceUnavailableException is Firehose's throttle"
        );
        let lines = archive.port.lines();
        assert_eq!(lines.len(), 3_000, "each line once");
        println!(
            "3,000 records archived in {} Firehose record(s) ({} B) over {} call(s)",
            a.firehose_records,
            a.bytes,
            archive.port.calls.load(Ordering::Relaxed)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_archive_gives_up_within_its_time_and_counts_every_record() {
        let archive = PackedArchive::new(MemoryFirehose::default());
        archive.port.latency.set(Duration::from_secs(30));
        let clock = TokioClock::starting_at(1_000_000);
        let deadline = Deadline::at(clock.now_ms() + 60_000, 500);
        let batch = Batch::new(10);
        let costs = CostModel::default();
        let report = archive_batch(
            &archive,
            &batch.records(),
            quick(),
            deadline,
            &clock,
            &costs,
        )
        .await;
        let a = &report.archived;
        assert_eq!((a.archived, a.failed()), (0, 10));
        let err = a.error.as_ref().expect("an error");
        assert!(err.is_deadline(), "{err}");
        assert!(
            clock.now_ms() - 1_000_000 <= ARCHIVE_TIMEOUT_MS,
            "bounded by its own timeout"
        );
        assert!(report.timed_out >= 1);
    }

    /// A port whose every call is refused with a validation error.
    struct Refusing(AtomicUsize);

    impl RecordBatchPort for Refusing {
        type Error = FakeError;

        async fn put_record_batch<'a>(
            &'a self,
            _records: &'a [&'a [u8]],
        ) -> Result<Vec<Option<crate::delivery::EntryFailure>>, FakeError> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Err(FakeError {
                op: "put_record_batch",
                class: ErrorClass::Permanent,
                applied: false,
            })
        }
    }

    #[tokio::test]
    async fn a_permanent_error_is_not_retried_and_keeps_its_source() {
        let archive = PackedArchive::new(Refusing(AtomicUsize::new(0)));
        let batch = Batch::new(5);
        let costs = CostModel::default();
        let report = archive_batch(
            &archive,
            &batch.records(),
            quick(),
            Deadline::none(),
            &crate::time::SystemClock,
            &costs,
        )
        .await;
        assert_eq!(archive.port.0.load(Ordering::Relaxed), 1);
        assert_eq!(report.archived.failed(), 5);
        let err = report.archived.error.expect("an error");
        assert_eq!(err.class(), ErrorClass::Permanent);
        let chain = crate::batch::chain(&err).to_string();
        assert!(
            chain.contains("5 of 5 record(s) not archived") && chain.contains("injected"),
            "{chain}"
        );
    }
}
