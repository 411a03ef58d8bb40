//! The ingest handler, called directly with HTTP API requests and an in-memory stream.

use aws_lambda_events::encodings::Body;
use aws_lambda_events::event::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use base64::Engine;
use ingest::{Ingest, MAX_BODY_BYTES, handle};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use sightline_core::fakes::{ManualClock, MemoryStream};
use sightline_core::retry::RetryPolicy;

const NOW: i64 = 1_763_900_000_000;

fn app() -> Ingest<MemoryStream, ManualClock> {
    Ingest {
        stream: MemoryStream::default(),
        clock: ManualClock::at(NOW),
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: std::time::Duration::ZERO,
            max_delay: std::time::Duration::ZERO,
        },
        deadline_reserve_ms: 0,
    }
}

fn event(id: i64) -> String {
    json!({"detection_oid": id, "video_camera_oid": 3, "geographical_location_oid": 7,
           "item_name": "car", "timestamp_detected": NOW - 5_000})
    .to_string()
}

fn request(body: &str, headers: &[(&'static str, &str)]) -> LambdaEvent<ApiGatewayV2httpRequest> {
    let mut req = ApiGatewayV2httpRequest::default();
    req.body = Some(body.to_string());
    for (k, v) in headers {
        req.headers.insert(*k, v.parse().expect("header value"));
    }
    LambdaEvent::new(req, Context::default())
}

async fn call(
    app: &Ingest<MemoryStream, ManualClock>,
    req: LambdaEvent<ApiGatewayV2httpRequest>,
) -> (i64, Value, ApiGatewayV2httpResponse) {
    let resp = handle(app, req).await.expect("never fails the invocation");
    let body = match &resp.body {
        Some(Body::Text(t)) => serde_json::from_str(t).expect("JSON body"),
        _ => Value::Null,
    };
    (resp.status_code, body, resp)
}

#[tokio::test]
async fn a_json_array_of_valid_events_is_forwarded_keyed_by_event_id() {
    let app = app();
    let body = format!("[{}, {}]", event(1), event(2));
    let (status, body, _) = call(&app, request(&body, &[])).await;
    assert_eq!(status, 200);
    assert_eq!(body["accepted"], 2);
    let records = app.stream.records.lock().expect("lock").clone();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].0, "1");
    assert_eq!(
        records[0].1,
        event(1).into_bytes(),
        "bytes forwarded as sent"
    );
}

#[tokio::test]
async fn ndjson_with_a_bad_event_forwards_the_good_ones_and_names_the_field() {
    let app = app();
    let bad = event(3).replace("\"item_name\":\"car\"", "\"item_name\":7");
    let body = format!("{}\n{bad}\r\n\n{}\n", event(1), event(2));
    let (status, body, _) = call(&app, request(&body, &[])).await;
    assert_eq!(status, 207);
    assert_eq!(body["accepted"], 2);
    assert_eq!(body["rejected"], 1);
    assert_eq!(body["results"][1]["status"], "rejected");
    assert_eq!(body["results"][1]["field"], "item_name");
    assert_eq!(body["results"][1]["reason"], "wrong_type");
    assert_eq!(app.stream.records.lock().expect("lock").len(), 2);
}

#[tokio::test]
async fn only_invalid_events_forward_nothing() {
    let app = app();
    let (status, body, _) = call(&app, request("{\"detection_oid\": 1}", &[])).await;
    assert_eq!(status, 422);
    assert_eq!(body["results"][0]["reason"], "missing_field");
    assert!(app.stream.records.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn an_unparseable_or_empty_body_is_a_400() {
    let app = app();
    assert_eq!(call(&app, request("[1, 2", &[])).await.0, 400);
    assert_eq!(call(&app, request("   \n", &[])).await.0, 400);
}

#[tokio::test]
async fn a_body_over_one_mib_or_500_events_is_a_413() {
    let app = app();
    let big = format!("[\"{}\"]", "x".repeat(MAX_BODY_BYTES));
    assert_eq!(call(&app, request(&big, &[])).await.0, 413);
    let many = (0..501).map(event).collect::<Vec<_>>().join("\n");
    assert_eq!(call(&app, request(&many, &[])).await.0, 413);
}

#[tokio::test]
async fn a_compressed_body_is_refused_with_415() {
    let app = app();
    let (status, body, _) = call(&app, request(&event(1), &[("content-encoding", "gzip")])).await;
    assert_eq!(status, 415);
    assert_eq!(body["error"], "unsupported_content_encoding");
}

#[tokio::test]
async fn hostile_bodies_get_answers_not_crashes() {
    let app = app();
    // Deeply nested arrays are skipped without recursion: the one element is
    // answered as not an event object, and the stack survives.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let (status, body, _) = call(&app, request(&deep, &[])).await;
    assert_eq!(status, 422);
    assert_eq!(body["results"][0]["reason"], "not_an_object");
    let unclosed = "[".repeat(100_000);
    assert_eq!(call(&app, request(&unclosed, &[])).await.0, 400);
    // Huge numbers are rejected per event as out of range.
    let huge = event(1).replace("\"detection_oid\":1", "\"detection_oid\":1e400");
    let (_, body, _) = call(&app, request(&huge, &[])).await;
    assert_eq!(body["results"][0]["status"], "rejected");
    // Invalid UTF-8 in one NDJSON line rejects that line only.
    let mut raw = event(1).into_bytes();
    raw.extend_from_slice(b"\n\xff\xfe\n");
    let mut req = ApiGatewayV2httpRequest::default();
    req.body = Some(base64::engine::general_purpose::STANDARD.encode(&raw));
    req.is_base64_encoded = true;
    let (status, body, _) = call(&app, LambdaEvent::new(req, Context::default())).await;
    assert_eq!(status, 207);
    assert_eq!(body["results"][1]["reason"], "not_utf8");
}

#[tokio::test]
async fn kinesis_throttling_after_retries_is_a_503_with_retry_after() {
    let app = app();
    *app.stream.throttle_rate.lock().expect("lock") = 1.0;
    let (status, body, resp) = call(&app, request(&event(1), &[])).await;
    assert_eq!(status, 503);
    assert_eq!(
        resp.headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    assert_eq!(body["failed"], 1);
    assert!(
        body["throttled"].as_u64().unwrap_or(0) >= 3,
        "every attempt was throttled"
    );
}

#[tokio::test]
async fn throttled_entries_are_resent_until_accepted() {
    let app = app();
    *app.stream.throttle_rate.lock().expect("lock") = 0.5;
    let body = (1..=40).map(event).collect::<Vec<_>>().join("\n");
    let app = Ingest {
        retry: RetryPolicy {
            max_attempts: 20,
            ..app.retry
        },
        ..app
    };
    let (status, body, _) = call(&app, request(&body, &[])).await;
    assert_eq!(status, 200, "{body}");
    let mut keys: Vec<i64> = app
        .stream
        .records
        .lock()
        .expect("lock")
        .iter()
        .map(|(k, _)| k.parse().unwrap_or(-1))
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        (1..=40).collect::<Vec<_>>(),
        "each event forwarded once"
    );
}
