//! Sightline on one machine, with no AWS account: the Lambda's batch code
//! (`sightline_core::Pipeline`) over embedded adapters with the AWS adapters'
//! semantics. SQL over the lake it writes is `sightline-sql`.
//!
//! | port | AWS adapter | local adapter |
//! |---|---|---|
//! | claims | DynamoDB conditional puts | [`store::LocalClaimStore`] (fjall) |
//! | events | Firehose -> Parquet in S3 | [`lake::LakeSink`] (Parquet files) |
//! | quarantine | S3 objects | [`quarantine::QuarantineDir`] (files) |
//! | input | Kinesis shards | [`stream`] + [`run`] |

mod claim_log;
pub mod esm;
pub mod lake;
pub mod quarantine;
pub mod run;
pub mod scan;
pub mod seen;
pub mod store;
pub mod stream;

pub use run::{RunConfig, RunError, RunSummary, run};

/// Makes the entries of `dir` (files created, renamed or removed) durable.
pub(crate) fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all())
}
