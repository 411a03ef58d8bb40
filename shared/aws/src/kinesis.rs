//! Kinesis `PutRecords` for the ingest front door; re-sending failed entries
//! lives in `sightline_core::delivery::send_resending_failures`.

use aws_sdk_kinesis::Client;
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
