//! The ingest front door: an HTTP API (payload 2.0) request carrying a JSON array
//! or NDJSON of Dataset A events. Every event is checked with the same validation
//! as dedup-enrich; valid ones go to Kinesis with `PutRecords`, invalid ones are
//! answered per event and never forwarded.
//!
//! `lambda_http` turns API Gateway's event into a [`Request`] (base64 bodies
//! already decoded) and the [`Response`] back into its answer. [`handle`] takes
//! one request through four steps, a module each: [`body`] (the events' bytes, or
//! a refusal), [`check`] (validation), [`forward`] (`PutRecords`) and [`answer`].

pub mod answer;
pub mod body;
pub mod check;
pub mod forward;

pub use lambda_http::{Body, Request, RequestExt, Response};

use sightline_aws::kinesis::KinesisPutRecords;
use sightline_aws::{AwsClients, ClientSettings};
use sightline_core::env::{ConfigError, EnvReader};
use sightline_core::ports::StreamPort;
use sightline_core::retry::RetryPolicy;
use sightline_core::time::Deadline;
use sightline_core::{Clock, SystemClock};

/// At most this many events per request (one `PutRecords` call).
pub const MAX_EVENTS: usize = sightline_core::model::INGEST_MAX_EVENTS;
/// At most this many body bytes per request.
pub const MAX_BODY_BYTES: usize = sightline_core::model::INGEST_MAX_BODY_BYTES;
/// What a throttled caller is told to wait, in seconds.
pub const RETRY_AFTER_SECS: u32 = 1;

pub const ENV_STREAM_NAME: &str = "STREAM_NAME";

// The config stays in this file: tests/infra/test_contract.py reads it here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub stream_name: String,
    pub retry_max_attempts: u32,
    pub deadline_reserve_ms: i64,
    pub aws_call_timeout_ms: i64,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Config::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = EnvReader::new(lookup);
        Ok(Config {
            stream_name: env.required(ENV_STREAM_NAME)?,
            retry_max_attempts: env.integer(
                "RETRY_MAX_ATTEMPTS",
                4,
                1,
                20,
                "an integer from 1 to 20",
            )? as u32,
            deadline_reserve_ms: env.integer(
                "DEADLINE_RESERVE_MS",
                1_000,
                0,
                60_000,
                "milliseconds from 0 to 60000",
            )?,
            aws_call_timeout_ms: env.integer(
                "AWS_CALL_TIMEOUT_MS",
                3_000,
                100,
                60_000,
                "milliseconds from 100 to 60000",
            )?,
        })
    }
}

/// Everything built once at init.
pub struct Ingest<P, C> {
    pub stream: P,
    pub clock: C,
    pub retry: RetryPolicy,
    pub deadline_reserve_ms: i64,
}

pub async fn build(config: &Config) -> Ingest<KinesisPutRecords, SystemClock> {
    let clients = AwsClients::from_env(ClientSettings {
        attempt_timeout: std::time::Duration::from_millis(config.aws_call_timeout_ms.max(0) as u64),
        ..ClientSettings::default()
    })
    .await;
    Ingest {
        stream: KinesisPutRecords::new(clients.kinesis, &config.stream_name),
        clock: SystemClock,
        retry: RetryPolicy {
            max_attempts: config.retry_max_attempts,
            ..RetryPolicy::default()
        },
        deadline_reserve_ms: config.deadline_reserve_ms,
    }
}

/// Handles one request. Every outcome is an HTTP answer, so the invocation
/// itself never fails.
pub async fn handle<P: StreamPort, C: Clock>(app: &Ingest<P, C>, req: Request) -> Response<Body> {
    let now = app.clock.now_ms();
    let events = match body::events(&req) {
        Ok(events) => events,
        Err(refusal) => return answer::refused(&refusal),
    };
    let checked = check::check(&events, now);
    // No Lambda context (a test, the local stand-in) means no deadline.
    let deadline_ms = req.lambda_context_ref().map_or(0, |c| c.deadline);
    let deadline = Deadline::from_lambda(deadline_ms, now, app.deadline_reserve_ms);
    let forwarded = forward::forward(app, &checked.valid, deadline).await;
    answer::results(&checked, &forwarded)
}
