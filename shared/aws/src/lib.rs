//! Adapters from Sightline's ports to AWS: DynamoDB claims, Firehose delivery and
//! S3 quarantine, the raw archive (Firehose to write, S3 to read back), plus
//! building the SDK clients once.

pub mod archive;
pub mod clients;
pub mod dynamo;
pub mod error;
pub mod firehose;
pub mod kinesis;
pub mod s3;
pub mod telemetry;

pub use clients::{AwsClients, ClientSettings};
pub use dynamo::DynamoClaimStore;
pub use firehose::FirehoseBatchPort;
pub use s3::S3Quarantine;
