//! One home for the function's defaults, shared by its config, the local runs and
//! the tests. (AWS service limits sit with the code they bound:
//! [`crate::packing`] for Firehose, [`crate::kpl`] for aggregates.)

/// How long a claim blocks a re-send, and how long claims, checkpoints and marks live.
pub const DEDUP_WINDOW_SECS: i64 = 86_400;
/// The shortest window the function accepts.
pub const MIN_DEDUP_WINDOW_SECS: i64 = 60;
/// Conditional puts in flight per batch.
pub const CLAIM_CONCURRENCY: usize = 64;
/// Key prefix of quarantine objects.
pub const QUARANTINE_PREFIX: &str = "quarantine/";
/// Attempts per AWS call within one invocation, the first included.
pub const RETRY_MAX_ATTEMPTS: u32 = 6;
/// The stream's retention (Kinesis' minimum).
pub const STREAM_RETENTION_HOURS: i64 = 24;
/// Margin kept before the invocation deadline for answering Lambda. The
/// remaining steps' own cost is measured on top of it (see `cost`).
pub const DEADLINE_RESERVE_MS: i64 = 500;

/// The event source mapping's deployed settings (`template.yaml`, `infra/`): the
/// defaults of the local mapping (`sightline_local::esm`).
pub mod esm {
    pub const BATCH_SIZE: usize = 1_000;
    pub const MAXIMUM_RETRY_ATTEMPTS: u32 = 10;
    pub const MAXIMUM_RECORD_AGE_SECS: u64 = 21_600;
    pub const BISECT_BATCH_ON_FUNCTION_ERROR: bool = true;
    /// The function's timeout.
    pub const FUNCTION_TIMEOUT_SECS: u64 = 60;
}
