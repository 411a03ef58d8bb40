//! Quarantine objects on S3 (`QUARANTINE_BUCKET`).

use aws_sdk_s3::Client;
use aws_sdk_s3::operation::put_object::PutObjectError;
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use sightline_core::ports::QuarantineStore;
use sightline_core::retry::{Classify, ErrorClass};
use thiserror::Error;

use crate::error::classify_sdk;

#[derive(Debug, Error)]
#[error("S3 PutObject s3://{bucket}/{key} failed")]
pub struct S3Error {
    pub bucket: String,
    pub key: String,
    #[source]
    pub source: Box<SdkError<PutObjectError, HttpResponse>>,
}

impl Classify for S3Error {
    fn class(&self) -> ErrorClass {
        classify_sdk(self.source.as_ref())
    }
}

#[derive(Debug, Clone)]
pub struct S3Quarantine {
    client: Client,
    bucket: String,
}

impl S3Quarantine {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        S3Quarantine {
            client,
            bucket: bucket.into(),
        }
    }
}

impl QuarantineStore for S3Quarantine {
    type Error = S3Error;

    async fn put_object(&self, key: &str, body: Vec<u8>) -> Result<(), S3Error> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/x-ndjson")
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(|source| S3Error {
                bucket: self.bucket.clone(),
                key: key.to_string(),
                source: Box::new(source),
            })
    }
}
