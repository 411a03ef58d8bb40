//! `sightline replay`: puts a range the event source mapping gave up on back
//! into the stream without losing or doubling an event.
//!
//! For each on-failure record (from a file, or from the on-failure SQS queue):
//! read that shard's range from the stream while it still holds it (a range it
//! cannot read whole is refused), or from the raw archive once the stream has
//! dropped it (or always, when asked), release the claims the range holds
//! without a `delivered` mark and not covered by their batch's checkpoint, and
//! put the records that need it back with their partition keys (see
//! `sightline_core::replay` for the rules). A queue message is deleted only
//! after its range was replayed.

use std::io::Read;
use std::path::Path;

use sightline_aws::DynamoClaimStore;
use sightline_aws::archive::{ArchiveLocation, ArchiveReadError, S3ArchiveReader};
use sightline_aws::kinesis::{KinesisPutRecords, RangeError, read_range};
use sightline_core::archive::{
    ArchiveLine, ArchiveRange, ArchiveRangeError, hour_prefixes, is_gzip, parse_lines, select_range,
};
use sightline_core::cost::{CostModel, Op};
use sightline_core::delivery::{BatchCallError, send_resending_failures};
use sightline_core::packing::chunk_by_limits;
use sightline_core::ports::StreamPort;
use sightline_core::replay::{ReplayError, ReplayReport, release_and_plan};
use sightline_core::retry::{Retrier, RetryCounters, RetryPolicy};
use sightline_core::seq::sequence_le;
use sightline_core::{Clock, Deadline, InputRecord, SystemClock};
use sightline_local::esm::OnFailureRecord;

use sightline_aws::dynamo::DynamoError;
use sightline_aws::kinesis::{
    KINESIS_MAX_BYTES_PER_CALL, KINESIS_MAX_RECORDS_PER_CALL, KinesisError,
};

/// What one range's replay did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeReplay {
    pub shard_id: String,
    pub start: String,
    pub end: String,
    pub plan: ReplayReport,
    /// Records put back into the stream (0 on a dry run).
    pub put: usize,
    /// Where the range was read: `None` from the stream, else the archive
    /// objects read.
    pub archive_objects: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayCmdError {
    #[error("reading the on-failure record {path}")]
    ReadFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the on-failure record is not the JSON Lambda writes for a Kinesis batch")]
    Parse(#[source] serde_json::Error),
    #[error(
        "stream ARN {0:?} names no stream (expected arn:aws:kinesis:<region>:<account>:stream/<name>)"
    )]
    StreamArn(String),
    #[error("cannot replay {shard} {start}..={end}")]
    Range {
        shard: String,
        start: String,
        end: String,
        #[source]
        source: Box<RangeError>,
    },
    #[error(
        "the stream no longer holds {shard} {start}..={end}; give the raw archive (--archive s3://bucket/prefix/)"
    )]
    NoArchive {
        shard: String,
        start: String,
        end: String,
    },
    #[error(
        "the on-failure record's {field} is {value:?}, not an ISO-8601 time: cannot tell which hours of the archive to read"
    )]
    Time {
        field: &'static str,
        value: String,
        #[source]
        source: aws_smithy_types::date_time::DateTimeParseError,
    },
    #[error("reading the raw archive {location}")]
    Archive {
        location: String,
        #[source]
        source: Box<ArchiveReadError>,
    },
    #[error("s3://{bucket}/{key} starts as gzip but does not decompress")]
    Gunzip {
        bucket: String,
        key: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot replay {shard} {start}..={end} from the raw archive {location} ({objects} object(s) read)"
    )]
    ArchiveRange {
        shard: String,
        start: String,
        end: String,
        location: String,
        objects: usize,
        #[source]
        source: Box<ArchiveRangeError>,
    },
    #[error("checking the claims of the range")]
    Claims(#[source] ReplayError<DynamoError>),
    #[error("{failed} record(s) could not be put back into {stream}")]
    Put {
        stream: String,
        failed: usize,
        #[source]
        source: Option<BatchCallError<KinesisError>>,
    },
    #[error("reading the on-failure queue {queue}")]
    Receive {
        queue: String,
        #[source]
        source: Box<
            aws_sdk_sqs::error::SdkError<
                aws_sdk_sqs::operation::receive_message::ReceiveMessageError,
            >,
        >,
    },
    #[error("deleting a replayed message from {queue}")]
    Delete {
        queue: String,
        #[source]
        source: Box<
            aws_sdk_sqs::error::SdkError<
                aws_sdk_sqs::operation::delete_message::DeleteMessageError,
            >,
        >,
    },
}

/// Reads an on-failure record saved to a file.
pub fn read_message(path: &Path) -> Result<OnFailureRecord, ReplayCmdError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReplayCmdError::ReadFile {
        path: path.display().to_string(),
        source,
    })?;
    serde_json::from_str(&text).map_err(ReplayCmdError::Parse)
}

/// The stream's name from its ARN.
pub fn stream_name(arn: &str) -> Result<String, ReplayCmdError> {
    arn.rsplit_once(":stream/")
        .map(|(_, name)| name.to_string())
        .filter(|n| !n.is_empty() && !n.contains('/'))
        .ok_or_else(|| ReplayCmdError::StreamArn(arn.to_string()))
}

/// Where the replay reads and writes.
pub struct Targets<'a> {
    pub kinesis: &'a aws_sdk_kinesis::Client,
    pub claims: &'a DynamoClaimStore,
    /// Overrides the stream the record names.
    pub stream: Option<&'a str>,
    pub dry_run: bool,
    /// The raw archive, read when the stream no longer holds a range.
    pub archive: Option<&'a ArchiveSource>,
    /// Read from the archive even when the stream still holds the range.
    pub from_archive: bool,
}

/// The raw archive: where it is, and a reader for it.
#[derive(Debug, Clone)]
pub struct ArchiveSource {
    pub location: ArchiveLocation,
    pub reader: S3ArchiveReader,
}

impl ArchiveSource {
    pub fn new(s3: aws_sdk_s3::Client, location: ArchiveLocation) -> Self {
        ArchiveSource {
            reader: S3ArchiveReader::new(s3, &location.bucket),
            location,
        }
    }
}

/// One record of a range, from the stream or the archive.
struct RangeRecord {
    sequence_number: String,
    partition_key: String,
    arrival_ms: i64,
    data: Vec<u8>,
}

/// Epoch ms of an on-failure record's ISO-8601 time.
fn epoch_ms(field: &'static str, value: &str) -> Result<i64, ReplayCmdError> {
    use aws_sdk_kinesis::primitives::{DateTime, DateTimeFormat};
    DateTime::from_str(value, DateTimeFormat::DateTime)
        .map(|t| t.to_millis().unwrap_or(i64::MAX))
        .map_err(|source| ReplayCmdError::Time {
            field,
            value: value.to_string(),
            source,
        })
}

/// An archive object's lines: gunzipped when it starts with gzip's magic
/// bytes (the stack's stream compresses; moto stores what it was given).
fn object_lines(
    bucket: &str,
    key: &str,
    bytes: Vec<u8>,
) -> Result<Vec<ArchiveLine>, ReplayCmdError> {
    let body = if is_gzip(&bytes) {
        let mut out = Vec::with_capacity(bytes.len() * 4);
        flate2::read::MultiGzDecoder::new(bytes.as_slice())
            .read_to_end(&mut out)
            .map_err(|source| ReplayCmdError::Gunzip {
                bucket: bucket.into(),
                key: key.into(),
                source,
            })?;
        out
    } else {
        bytes
    };
    let (lines, bad) = parse_lines(&body);
    if bad > 0 {
        tracing::warn!(
            bucket,
            key,
            bad,
            "lines that are not archive lines were skipped"
        );
    }
    Ok(lines)
}

/// Reads one on-failure record's range from the archive: the hour partitions
/// from its first record's arrival to an hour after the mapping gave up, in
/// order, stopping once the range is whole (the first attempt's lines are
/// usually in the first hours). Only the range's lines are kept in memory.
async fn read_archive(
    source: &ArchiveSource,
    message: &OnFailureRecord,
) -> Result<(Vec<RangeRecord>, usize), ReplayCmdError> {
    let info = &message.kinesis_batch_info;
    let first = epoch_ms(
        "KinesisBatchInfo.approximateArrivalOfFirstRecord",
        &info.approximate_arrival_of_first_record,
    )?;
    let gave_up = epoch_ms("timestamp", &message.timestamp)?;
    let range = ArchiveRange {
        shard_id: &info.shard_id,
        start: &info.start_sequence_number,
        end: &info.end_sequence_number,
        batch_size: info.batch_size,
    };
    let location = source.location.to_string();
    let read_error = |source| ReplayCmdError::Archive {
        location: location.clone(),
        source: Box::new(source),
    };
    let mut kept: Vec<ArchiveLine> = Vec::new();
    let mut objects = 0;
    let prefixes = hour_prefixes(&source.location.prefix, first, gave_up);
    // Each hour in both layouts (see `hour_prefixes`).
    for hour in prefixes.chunks(2) {
        for prefix in hour {
            for key in source.reader.list(prefix).await.map_err(read_error)? {
                let bytes = source.reader.get(&key).await.map_err(read_error)?;
                objects += 1;
                kept.extend(
                    object_lines(&source.location.bucket, &key, bytes)?
                        .into_iter()
                        .filter(|l| {
                            l.shard_id == range.shard_id
                                && sequence_le(range.start, &l.sequence_number)
                                && sequence_le(&l.sequence_number, range.end)
                        }),
                );
            }
        }
        if range.batch_size > 0 && select_range(kept.clone(), range).is_ok() {
            break;
        }
    }
    let records = select_range(kept, range).map_err(|source| ReplayCmdError::ArchiveRange {
        shard: info.shard_id.clone(),
        start: info.start_sequence_number.clone(),
        end: info.end_sequence_number.clone(),
        location: location.clone(),
        objects,
        source: Box::new(source),
    })?;
    Ok((
        records
            .into_iter()
            .map(|r| RangeRecord {
                // Lambda's events always carry the key; any key will do otherwise.
                partition_key: r.partition_key.unwrap_or_else(|| r.sequence_number.clone()),
                sequence_number: r.sequence_number,
                arrival_ms: r.arrival_ms,
                data: r.data,
            })
            .collect(),
        objects,
    ))
}

/// Replays one range.
pub async fn replay_range(
    targets: &Targets<'_>,
    message: &OnFailureRecord,
) -> Result<RangeReplay, ReplayCmdError> {
    let info = &message.kinesis_batch_info;
    let stream = match targets.stream {
        Some(s) => s.to_string(),
        None => stream_name(&info.stream_arn)?,
    };
    let no_archive = || ReplayCmdError::NoArchive {
        shard: info.shard_id.clone(),
        start: info.start_sequence_number.clone(),
        end: info.end_sequence_number.clone(),
    };
    let (range, archive_objects) = if targets.from_archive {
        let archive = targets.archive.ok_or_else(no_archive)?;
        let (records, objects) = read_archive(archive, message).await?;
        (records, Some(objects))
    } else {
        match read_range(
            targets.kinesis,
            &stream,
            &info.shard_id,
            &info.start_sequence_number,
            &info.end_sequence_number,
        )
        .await
        {
            Ok(records) => (
                records
                    .into_iter()
                    .map(|r| RangeRecord {
                        sequence_number: r.sequence_number,
                        partition_key: r.partition_key,
                        arrival_ms: r.arrival_ms,
                        data: r.data,
                    })
                    .collect(),
                None,
            ),
            Err(e) if e.is_gone() => {
                let Some(archive) = targets.archive else {
                    return Err(ReplayCmdError::Range {
                        shard: info.shard_id.clone(),
                        start: info.start_sequence_number.clone(),
                        end: info.end_sequence_number.clone(),
                        source: Box::new(e),
                    });
                };
                tracing::info!(
                    shard = %info.shard_id,
                    reason = %e,
                    archive = %archive.location,
                    "the stream no longer holds the range: reading it from the raw archive"
                );
                let (records, objects) = read_archive(archive, message).await?;
                (records, Some(objects))
            }
            Err(e) => {
                return Err(ReplayCmdError::Range {
                    shard: info.shard_id.clone(),
                    start: info.start_sequence_number.clone(),
                    end: info.end_sequence_number.clone(),
                    source: Box::new(e),
                });
            }
        }
    };
    let records: Vec<InputRecord> = range
        .iter()
        .map(|r| InputRecord {
            shard_id: info.shard_id.clone(),
            sequence_number: r.sequence_number.clone(),
            arrival_ms: r.arrival_ms,
            data: r.data.clone(),
        })
        .collect();
    let clock = SystemClock;
    let counters = RetryCounters::default();
    let costs = CostModel::default();
    let retrier = Retrier::new(
        RetryPolicy::default(),
        Deadline::none(),
        &clock,
        &counters,
        &costs,
    );
    let plan = release_and_plan(
        &records,
        targets.claims,
        &retrier.for_op(Op::Store, 0),
        clock.now_ms() / 1_000,
        targets.dry_run,
    )
    .await
    .map_err(ReplayCmdError::Claims)?;
    let mut put = 0;
    if !targets.dry_run && !plan.to_put.is_empty() {
        let port = KinesisPutRecords::new(targets.kinesis.clone(), &stream);
        let entries: Vec<(&str, &[u8])> = plan
            .to_put
            .iter()
            .map(|&i| (range[i].partition_key.as_str(), range[i].data.as_slice()))
            .collect();
        let calls = chunk_by_limits(
            entries.iter().map(|(k, d)| k.len() + d.len()),
            KINESIS_MAX_RECORDS_PER_CALL,
            KINESIS_MAX_BYTES_PER_CALL,
        );
        let puts = retrier.for_op(Op::Stream, 0);
        for call in calls {
            let part = &entries[call];
            let (accepted, error) = send_resending_failures(&puts, part.len(), |idx| {
                let chunk: Vec<(&str, &[u8])> = idx.iter().map(|k| part[*k]).collect();
                let port = &port;
                async move { port.put_records(&chunk).await }
            })
            .await;
            let ok = accepted.iter().filter(|a| **a).count();
            put += ok;
            if ok < part.len() {
                return Err(ReplayCmdError::Put {
                    stream,
                    failed: part.len() - ok,
                    source: error,
                });
            }
        }
    }
    Ok(RangeReplay {
        shard_id: info.shard_id.clone(),
        start: info.start_sequence_number.clone(),
        end: info.end_sequence_number.clone(),
        plan,
        put,
        archive_objects,
    })
}

/// Replays every message of the on-failure queue, deleting each one once its
/// range is back in the stream. Stops at the first range that cannot be
/// replayed (its message stays in the queue).
pub async fn replay_queue(
    targets: &Targets<'_>,
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    mut each: impl FnMut(&RangeReplay),
) -> Result<Vec<RangeReplay>, ReplayCmdError> {
    let mut done = Vec::new();
    loop {
        let received = sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .map_err(|source| ReplayCmdError::Receive {
                queue: queue.to_string(),
                source: Box::new(source),
            })?;
        let messages = received.messages();
        if messages.is_empty() {
            return Ok(done);
        }
        for m in messages {
            let record: OnFailureRecord = serde_json::from_str(m.body().unwrap_or_default())
                .map_err(ReplayCmdError::Parse)?;
            let replayed = replay_range(targets, &record).await?;
            if !targets.dry_run
                && let Some(handle) = m.receipt_handle()
            {
                sqs.delete_message()
                    .queue_url(queue)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .map_err(|source| ReplayCmdError::Delete {
                        queue: queue.to_string(),
                        source: Box::new(source),
                    })?;
            }
            each(&replayed);
            done.push(replayed);
        }
        if targets.dry_run {
            // Nothing was deleted: the same messages would come back.
            return Ok(done);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_name_comes_from_the_records_arn() {
        assert_eq!(
            stream_name("arn:aws:kinesis:eu-west-1:123456789012:stream/sightline-prod-events").ok(),
            Some("sightline-prod-events".into())
        );
        assert!(stream_name("arn:aws:sqs:eu-west-1:123456789012:queue").is_err());
    }

    #[test]
    fn the_documented_on_failure_record_parses() {
        let doc = r#"{
            "requestContext": {"requestId": "c9b8fa9f-5a7f-xmpl-af9c-0c604cde93a5",
                "functionArn": "arn:aws:lambda:us-east-2:123456789012:function:myfunction",
                "condition": "RetryAttemptsExhausted", "approximateInvokeCount": 1},
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "version": "1.0",
            "timestamp": "2019-11-14T00:38:06.021Z",
            "KinesisBatchInfo": {"shardId": "shardId-000000000001",
                "startSequenceNumber": "49601189658422359378836298521827638475320189012309704722",
                "endSequenceNumber": "49601189658422359378836298522902373528957594348623495186",
                "approximateArrivalOfFirstRecord": "2019-11-14T00:38:04.835Z",
                "approximateArrivalOfLastRecord": "2019-11-14T00:38:05.580Z",
                "batchSize": 500,
                "streamArn": "arn:aws:kinesis:us-east-2:123456789012:stream/mystream"}
        }"#;
        let r: OnFailureRecord = serde_json::from_str(doc).expect("parses");
        assert_eq!(r.kinesis_batch_info.batch_size, 500);
        assert_eq!(
            stream_name(&r.kinesis_batch_info.stream_arn).ok(),
            Some("mystream".into())
        );
    }
}
