//! The raw archive on AWS: the function writes it through a Direct PUT Firehose
//! stream (`RAW_ARCHIVE_STREAM`, with `PutRecordBatch`: packing, limits and
//! re-sending rejected entries live in `sightline_core::archive`), and `sightline
//! replay` reads it back from S3.

use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Error;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use sightline_core::archive::PackedArchive;
use sightline_core::retry::{Classify, ErrorClass};
use thiserror::Error;

use crate::error::classify_sdk;
use crate::firehose::FirehoseBatchPort;

/// The function's archive: lines packed into `PutRecordBatch` calls to one
/// Direct PUT delivery stream.
pub type FirehoseArchive = PackedArchive<FirehoseBatchPort>;

/// The archive writer for `stream`.
pub fn firehose_archive(client: aws_sdk_firehose::Client, stream: &str) -> FirehoseArchive {
    PackedArchive::new(FirehoseBatchPort::new(client, stream))
}

/// Where an archive lives: a bucket and the key prefix its stream writes under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveLocation {
    pub bucket: String,
    /// Empty, or ending in `/`.
    pub prefix: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("{0:?} is not an S3 location (expected s3://bucket/prefix/)")]
pub struct LocationError(pub String);

impl std::str::FromStr for ArchiveLocation {
    type Err = LocationError;

    fn from_str(s: &str) -> Result<Self, LocationError> {
        let rest = s
            .strip_prefix("s3://")
            .ok_or_else(|| LocationError(s.into()))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(LocationError(s.into()));
        }
        let mut prefix = prefix.to_string();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(ArchiveLocation {
            bucket: bucket.into(),
            prefix,
        })
    }
}

impl std::fmt::Display for ArchiveLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

#[derive(Debug, Error)]
pub enum ArchiveReadError {
    #[error("S3 ListObjectsV2 s3://{bucket}/{prefix} failed")]
    List {
        bucket: String,
        prefix: String,
        #[source]
        source: Box<SdkError<ListObjectsV2Error, HttpResponse>>,
    },
    #[error("S3 GetObject s3://{bucket}/{key} failed")]
    Get {
        bucket: String,
        key: String,
        #[source]
        source: Box<SdkError<GetObjectError, HttpResponse>>,
    },
    #[error("reading the body of s3://{bucket}/{key}")]
    Body {
        bucket: String,
        key: String,
        #[source]
        source: aws_sdk_s3::primitives::ByteStreamError,
    },
}

impl Classify for ArchiveReadError {
    fn class(&self) -> ErrorClass {
        match self {
            ArchiveReadError::List { source, .. } => classify_sdk(source.as_ref()),
            ArchiveReadError::Get { source, .. } => classify_sdk(source.as_ref()),
            ArchiveReadError::Body { .. } => ErrorClass::Transient,
        }
    }
}

/// Lists and reads archive objects.
#[derive(Debug, Clone)]
pub struct S3ArchiveReader {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3ArchiveReader {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        S3ArchiveReader {
            client,
            bucket: bucket.into(),
        }
    }

    /// Every key under `prefix`, all pages.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, ArchiveReadError> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|source| ArchiveReadError::List {
                    bucket: self.bucket.clone(),
                    prefix: prefix.into(),
                    source: Box::new(source),
                })?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
            match page.next_continuation_token() {
                Some(t) if page.is_truncated().unwrap_or(false) => token = Some(t.to_string()),
                _ => return Ok(keys),
            }
        }
    }

    /// One object's bytes, as stored (gzip or not).
    pub async fn get(&self, key: &str) -> Result<Vec<u8>, ArchiveReadError> {
        let object = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|source| ArchiveReadError::Get {
                bucket: self.bucket.clone(),
                key: key.into(),
                source: Box::new(source),
            })?;
        let body = object
            .body
            .collect()
            .await
            .map_err(|source| ArchiveReadError::Body {
                bucket: self.bucket.clone(),
                key: key.into(),
                source,
            })?;
        Ok(body.into_bytes().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_archive_location_is_a_bucket_and_a_prefix_ending_in_a_slash() {
        let l: ArchiveLocation = "s3://sightline-prod-raw/raw".parse().expect("location");
        assert_eq!(
            (l.bucket.as_str(), l.prefix.as_str()),
            ("sightline-prod-raw", "raw/")
        );
        assert_eq!(l.to_string(), "s3://sightline-prod-raw/raw/");
        let bare: ArchiveLocation = "s3://b".parse().expect("bucket only");
        assert_eq!(bare.prefix, "");
        assert!("b/raw/".parse::<ArchiveLocation>().is_err());
        assert!("s3:///raw/".parse::<ArchiveLocation>().is_err());
    }
}
