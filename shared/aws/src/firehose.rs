//! Firehose `PutRecordBatch` as a [`RecordBatchPort`]; packing, limits and
//! re-sending failed entries live in `sightline_core::delivery`.

use aws_sdk_firehose::Client;
use aws_sdk_firehose::operation::put_record_batch::PutRecordBatchError;
use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::operation::BuildError;
use sightline_core::delivery::{EntryFailure, RecordBatchPort};
use sightline_core::retry::{Classify, ErrorClass};
use thiserror::Error;

use crate::error::classify_sdk;

#[derive(Debug, Error)]
pub enum FirehoseError {
    #[error("Firehose PutRecordBatch to {stream} failed")]
    Put {
        stream: String,
        #[source]
        source: Box<SdkError<PutRecordBatchError, HttpResponse>>,
    },
    #[error("could not build a Firehose record")]
    Build(#[source] BuildError),
}

impl Classify for FirehoseError {
    fn class(&self) -> ErrorClass {
        match self {
            FirehoseError::Put { source, .. } => classify_sdk(source.as_ref()),
            FirehoseError::Build(_) => ErrorClass::Permanent,
        }
    }
}

/// One delivery stream (`DELIVERY_STREAM`).
#[derive(Debug, Clone)]
pub struct FirehoseBatchPort {
    client: Client,
    stream: String,
}

impl FirehoseBatchPort {
    pub fn new(client: Client, stream: impl Into<String>) -> Self {
        FirehoseBatchPort {
            client,
            stream: stream.into(),
        }
    }
}

impl RecordBatchPort for FirehoseBatchPort {
    type Error = FirehoseError;

    async fn put_record_batch<'a>(
        &'a self,
        records: &'a [&'a [u8]],
    ) -> Result<Vec<Option<EntryFailure>>, FirehoseError> {
        let records = records
            .iter()
            .map(|data| Record::builder().data(Blob::new(data.to_vec())).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(FirehoseError::Build)?;
        let out = self
            .client
            .put_record_batch()
            .delivery_stream_name(&self.stream)
            .set_records(Some(records))
            .send()
            .await
            .map_err(|source| FirehoseError::Put {
                stream: self.stream.clone(),
                source: Box::new(source),
            })?;
        Ok(out
            .request_responses()
            .iter()
            .map(|entry| {
                entry.error_code().map(|code| EntryFailure {
                    code: code.to_string(),
                    message: entry.error_message().unwrap_or_default().to_string(),
                })
            })
            .collect())
    }
}
