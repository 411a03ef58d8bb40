//! Kinesis `PutRecords` for the ingest front door, the producer and the replay
//! (re-sending failed entries lives in `sightline_core::delivery::send_resending_failures`),
//! and reading one shard's range back for `sightline replay`.

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::operation::get_records::GetRecordsError;
use aws_sdk_kinesis::operation::get_shard_iterator::GetShardIteratorError;
use aws_sdk_kinesis::operation::put_records::PutRecordsError;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::operation::BuildError;
use sightline_core::delivery::EntryFailure;
use sightline_core::ports::StreamPort;
use sightline_core::retry::{Classify, ErrorClass};
use thiserror::Error;

use crate::error::classify_sdk;

/// `PutRecords`: at most 500 records per call.
pub const KINESIS_MAX_RECORDS_PER_CALL: usize = 500;
/// `PutRecords`: at most 5 MiB per call, partition keys included.
pub const KINESIS_MAX_BYTES_PER_CALL: usize = 5 * 1024 * 1024;
/// One Kinesis record: at most 1 MiB.
pub const KINESIS_MAX_RECORD_BYTES: usize = 1024 * 1024;

#[derive(Debug, Error)]
pub enum KinesisError {
    #[error("Kinesis PutRecords to {stream} failed")]
    Put {
        stream: String,
        #[source]
        source: Box<SdkError<PutRecordsError, HttpResponse>>,
    },
    #[error("could not build a Kinesis record")]
    Build(#[source] BuildError),
}

impl Classify for KinesisError {
    fn class(&self) -> ErrorClass {
        match self {
            KinesisError::Put { source, .. } => classify_sdk(source.as_ref()),
            KinesisError::Build(_) => ErrorClass::Permanent,
        }
    }
}

/// One stream's `PutRecords`.
#[derive(Debug, Clone)]
pub struct KinesisPutRecords {
    client: Client,
    stream: String,
}

impl KinesisPutRecords {
    pub fn new(client: Client, stream: impl Into<String>) -> Self {
        KinesisPutRecords {
            client,
            stream: stream.into(),
        }
    }
}

impl StreamPort for KinesisPutRecords {
    type Error = KinesisError;

    async fn put_records<'a>(
        &'a self,
        entries: &'a [(&'a str, &'a [u8])],
    ) -> Result<Vec<Option<EntryFailure>>, KinesisError> {
        let records = entries
            .iter()
            .map(|(pk, data)| {
                PutRecordsRequestEntry::builder()
                    .partition_key(*pk)
                    .data(Blob::new(data.to_vec()))
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(KinesisError::Build)?;
        let out = self
            .client
            .put_records()
            .stream_name(&self.stream)
            .set_records(Some(records))
            .send()
            .await
            .map_err(|source| KinesisError::Put {
                stream: self.stream.clone(),
                source: Box::new(source),
            })?;
        Ok(out
            .records()
            .iter()
            .map(|r| {
                r.error_code().map(|code| EntryFailure {
                    code: code.to_string(),
                    message: r.error_message().unwrap_or_default().to_string(),
                })
            })
            .collect())
    }
}

/// One record as `GetRecords` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    pub sequence_number: String,
    pub partition_key: String,
    /// `ApproximateArrivalTimestamp`, epoch ms.
    pub arrival_ms: i64,
    pub data: Vec<u8>,
}

#[derive(Debug, Error)]
pub enum RangeError {
    #[error("Kinesis GetShardIterator on {stream}/{shard} at {start} failed")]
    Iterator {
        stream: String,
        shard: String,
        start: String,
        #[source]
        source: Box<SdkError<GetShardIteratorError, HttpResponse>>,
    },
    #[error("Kinesis GetRecords on {stream}/{shard} failed")]
    Records {
        stream: String,
        shard: String,
        #[source]
        source: Box<SdkError<GetRecordsError, HttpResponse>>,
    },
    #[error(
        "{stream}/{shard} no longer holds {start} (the first record there is {found}); the range has passed the stream's retention: replay it from the raw archive (--archive)"
    )]
    Trimmed {
        stream: String,
        shard: String,
        start: String,
        found: String,
    },
    #[error("{stream}/{shard} holds nothing at or after {start}")]
    Empty {
        stream: String,
        shard: String,
        start: String,
    },
    #[error("{stream}/{shard} ends before {end}: read up to {last}")]
    Incomplete {
        stream: String,
        shard: String,
        end: String,
        last: String,
    },
}

impl RangeError {
    /// True when the stream no longer holds the range (trimmed past its
    /// retention, or the shard is gone), so the raw archive is where it is.
    pub fn is_gone(&self) -> bool {
        use aws_sdk_kinesis::operation::get_shard_iterator::GetShardIteratorError as E;
        match self {
            RangeError::Trimmed { .. } | RangeError::Empty { .. } => true,
            RangeError::Iterator { source, .. } => matches!(
                source.as_service_error(),
                Some(E::ResourceNotFoundException(_))
            ),
            RangeError::Records { .. } | RangeError::Incomplete { .. } => false,
        }
    }
}

/// Reads `start..=end` of one shard, and refuses a range it cannot read whole:
/// one whose first record is gone (past the retention), or that ends early.
pub async fn read_range(
    client: &Client,
    stream: &str,
    shard: &str,
    start: &str,
    end: &str,
) -> Result<Vec<StreamRecord>, RangeError> {
    use aws_sdk_kinesis::types::ShardIteratorType;
    use sightline_core::seq::sequence_le;

    let iterator = client
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
        .starting_sequence_number(start)
        .send()
        .await
        .map_err(|source| RangeError::Iterator {
            stream: stream.into(),
            shard: shard.into(),
            start: start.into(),
            source: Box::new(source),
        })?;
    let mut next = iterator.shard_iterator;
    let mut out: Vec<StreamRecord> = Vec::new();
    // An empty page is not the end of a shard that is still open; a few in a
    // row are, for a range that lies in the past.
    let mut empty_pages = 0;
    while let Some(it) = next.take() {
        let page = client
            .get_records()
            .shard_iterator(it)
            .limit(1_000)
            .send()
            .await
            .map_err(|source| RangeError::Records {
                stream: stream.into(),
                shard: shard.into(),
                source: Box::new(source),
            })?;
        if page.records().is_empty() {
            empty_pages += 1;
            if empty_pages >= 3 {
                break;
            }
        }
        let mut past_end = false;
        for r in page.records() {
            let seq = r.sequence_number();
            if !sequence_le(seq, end) {
                past_end = true;
                break;
            }
            if out.is_empty() && seq != start {
                return Err(RangeError::Trimmed {
                    stream: stream.into(),
                    shard: shard.into(),
                    start: start.into(),
                    found: seq.into(),
                });
            }
            out.push(StreamRecord {
                sequence_number: seq.to_string(),
                partition_key: r.partition_key().unwrap_or_default().to_string(),
                arrival_ms: r
                    .approximate_arrival_timestamp()
                    .map_or(0, |t| t.to_millis().unwrap_or(0)),
                data: r.data().as_ref().to_vec(),
            });
        }
        if past_end || out.last().is_some_and(|r| r.sequence_number == end) {
            break;
        }
        next = page.next_shard_iterator().map(str::to_string);
    }
    match out.last() {
        None => Err(RangeError::Empty {
            stream: stream.into(),
            shard: shard.into(),
            start: start.into(),
        }),
        Some(last) if last.sequence_number != end => Err(RangeError::Incomplete {
            stream: stream.into(),
            shard: shard.into(),
            end: end.into(),
            last: last.sequence_number.clone(),
        }),
        Some(_) => Ok(out),
    }
}
