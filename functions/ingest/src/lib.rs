//! The ingest front door: an HTTP API (payload v2) request carrying a JSON array
//! or NDJSON of Dataset A events. Every event is checked with the same validation
//! as dedup-enrich; valid ones go to Kinesis with `PutRecords`, invalid ones are
//! answered per event and never forwarded.

use aws_lambda_events::encodings::Body;
use aws_lambda_events::event::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::http::{HeaderMap, HeaderValue};
use base64::Engine;
use lambda_runtime::LambdaEvent;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use sightline_aws::kinesis::KinesisPutRecords;
use sightline_aws::{AwsClients, ClientSettings};
use sightline_core::decode::decode_bytes;
use sightline_core::delivery::send_resending_failures;
use sightline_core::env::{ConfigError, EnvReader};
use sightline_core::ports::StreamPort;
use sightline_core::retry::{Classify, ErrorClass, Retrier, RetryCounters, RetryPolicy};
use sightline_core::time::Deadline;
use sightline_core::{Clock, SystemClock};

/// At most this many events per request (one `PutRecords` call).
pub const MAX_EVENTS: usize = sightline_core::model::INGEST_MAX_EVENTS;
/// At most this many body bytes per request.
pub const MAX_BODY_BYTES: usize = sightline_core::model::INGEST_MAX_BODY_BYTES;
/// What a throttled caller is told to wait, in seconds.
pub const RETRY_AFTER_SECS: u32 = 1;

pub const ENV_STREAM_NAME: &str = "STREAM_NAME";

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

/// Why a body could not be read at all.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    Empty,
    Unparseable(String),
}

/// Splits a body into the raw bytes of each event: a JSON array (each element's
/// exact text) or NDJSON (each non-blank line). Nothing is re-serialised, so what
/// reaches Kinesis is what the camera sent.
pub fn split_events(body: &[u8]) -> Result<Vec<&[u8]>, BodyError> {
    let start = body.iter().position(|b| !b.is_ascii_whitespace());
    match start.map(|i| body[i]) {
        None => Err(BodyError::Empty),
        Some(b'[') => {
            let items: Vec<&RawValue> =
                serde_json::from_slice(body).map_err(|e| BodyError::Unparseable(e.to_string()))?;
            Ok(items.into_iter().map(|r| r.get().as_bytes()).collect())
        }
        Some(_) => Ok(body
            .split(|b| *b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .filter(|l| l.iter().any(|b| !b.is_ascii_whitespace()))
            .collect()),
    }
}

fn response(
    status: i64,
    body: Value,
    extra: &[(&'static str, String)],
) -> ApiGatewayV2httpResponse {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    for (k, v) in extra {
        if let Ok(v) = HeaderValue::from_str(v) {
            headers.insert(*k, v);
        }
    }
    let mut r = ApiGatewayV2httpResponse::default();
    r.status_code = status;
    r.headers = headers;
    r.body = Some(Body::Text(body.to_string()));
    r
}

fn problem(status: i64, error: &str, message: String) -> ApiGatewayV2httpResponse {
    response(status, json!({"error": error, "message": message}), &[])
}

/// Handles one request. Never fails the invocation: every outcome is an HTTP answer.
pub async fn handle<P: StreamPort, C: Clock>(
    app: &Ingest<P, C>,
    event: LambdaEvent<ApiGatewayV2httpRequest>,
) -> Result<ApiGatewayV2httpResponse, lambda_runtime::Error> {
    let now = app.clock.now_ms();
    let req = event.payload;
    if let Some(enc) = req
        .headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        && !enc.trim().eq_ignore_ascii_case("identity")
    {
        return Ok(problem(
            415,
            "unsupported_content_encoding",
            format!("Content-Encoding `{enc}` is not supported; send the body uncompressed"),
        ));
    }
    let body = match (req.body, req.is_base64_encoded) {
        (None, _) => Vec::new(),
        (Some(b), false) => b.into_bytes(),
        (Some(b), true) => match base64::engine::general_purpose::STANDARD.decode(b.as_bytes()) {
            Ok(bytes) => bytes,
            Err(_) => {
                return Ok(problem(
                    400,
                    "unparseable_body",
                    "body is flagged base64 but is not".into(),
                ));
            }
        },
    };
    if body.len() > MAX_BODY_BYTES {
        return Ok(problem(
            413,
            "body_too_large",
            format!("{} bytes; the limit is {MAX_BODY_BYTES}", body.len()),
        ));
    }
    let items = match split_events(&body) {
        Ok(items) if !items.is_empty() => items,
        Ok(_) | Err(BodyError::Empty) => {
            return Ok(problem(
                400,
                "empty_body",
                "send a JSON array or NDJSON of events".into(),
            ));
        }
        Err(BodyError::Unparseable(why)) => {
            return Ok(problem(
                400,
                "unparseable_body",
                format!("body is not a JSON array or NDJSON: {why}"),
            ));
        }
    };
    if items.len() > MAX_EVENTS {
        return Ok(problem(
            413,
            "too_many_events",
            format!(
                "{} events; the limit is {MAX_EVENTS} per request",
                items.len()
            ),
        ));
    }

    let mut results: Vec<Value> = Vec::with_capacity(items.len());
    let mut valid: Vec<(usize, String, &[u8])> = Vec::new();
    for (i, raw) in items.iter().enumerate() {
        match decode_bytes(raw, now) {
            Ok(e) => {
                // Duplicates of an event share its key, so they land on one shard.
                valid.push((i, e.detection_oid.to_string(), raw));
                results.push(
                    json!({"index": i, "status": "accepted", "detection_oid": e.detection_oid}),
                );
            }
            Err(why) => results.push(json!({
                "index": i,
                "status": "rejected",
                "reason": why.code(),
                "field": why.field().map(|f| f.name()),
                "message": why.to_string(),
            })),
        }
    }

    let counters = RetryCounters::default();
    let deadline = Deadline::from_lambda(event.context.deadline, now, app.deadline_reserve_ms);
    let retrier = Retrier {
        policy: app.retry,
        deadline,
        clock: &app.clock,
        counters: &counters,
    };
    let (forwarded, error) = if valid.is_empty() {
        (Vec::new(), None)
    } else {
        send_resending_failures(&retrier, valid.len(), |idx| {
            let entries: Vec<(&str, &[u8])> = idx
                .iter()
                .map(|k| (valid[*k].1.as_str(), valid[*k].2))
                .collect();
            async move { app.stream.put_records(&entries).await }
        })
        .await
    };
    let mut failed = 0;
    for ((i, _, _), ok) in valid.iter().zip(&forwarded) {
        if !ok {
            failed += 1;
            results[*i] = json!({"index": i, "status": "failed", "message": "not accepted by the stream; send it again"});
        }
    }
    let rejected = items.len() - valid.len();
    let accepted = valid.len() - failed;
    let summary = json!({
        "accepted": accepted,
        "rejected": rejected,
        "failed": failed,
        "throttled": counters.throttled(),
        "results": results,
    });
    if let Some(e) = &error {
        tracing::warn!(error = %sightline_core::batch::chain(e), failed, "events not forwarded to Kinesis");
        return Ok(match e.class() {
            ErrorClass::Permanent => response(502, summary, &[]),
            _ => response(
                503,
                summary,
                &[("retry-after", RETRY_AFTER_SECS.to_string())],
            ),
        });
    }
    let status = match (accepted, rejected) {
        (_, 0) => 200,
        (0, _) => 422,
        _ => 207,
    };
    Ok(response(status, summary, &[]))
}
