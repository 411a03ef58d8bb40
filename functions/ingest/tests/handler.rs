#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! The ingest handler, called directly with HTTP API requests and an in-memory stream.

use std::sync::atomic::{AtomicUsize, Ordering};

use ingest::{Body, Ingest, MAX_BODY_BYTES, MAX_EVENTS, Request, Response, handle};
use serde_json::{Value, json};
use sightline_core::delivery::EntryFailure;
use sightline_core::fakes::{FakeError, ManualClock, MemoryStream};
use sightline_core::ports::StreamPort;
use sightline_core::retry::{ErrorClass, RetryPolicy};

const NOW: i64 = 1_763_900_000_000;

fn app() -> Ingest<MemoryStream, ManualClock> {
    app_with(MemoryStream::default())
}

fn app_with<P: StreamPort>(stream: P) -> Ingest<P, ManualClock> {
    Ingest {
        stream,
        clock: ManualClock::at(NOW),
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: std::time::Duration::ZERO,
            max_delay: std::time::Duration::ZERO,
            ..RetryPolicy::default()
        },
        deadline_reserve_ms: 0,
    }
}

fn event(id: i64) -> String {
    json!({"detection_oid": id, "video_camera_oid": 3, "geographical_location_oid": 7,
           "item_name": "car", "timestamp_detected": NOW - 5_000})
    .to_string()
}

/// What `lambda_http` hands the handler for a POST with this body and headers.
fn request(body: impl Into<Body>, headers: &[(&'static str, &str)]) -> Request {
    let mut req = Request::new(body.into());
    for (k, v) in headers {
        req.headers_mut()
            .insert(*k, v.parse().expect("header value"));
    }
    req
}

async fn call<P: StreamPort>(
    app: &Ingest<P, ManualClock>,
    req: Request,
) -> (u16, Value, Response<Body>) {
    let resp = handle(app, req).await;
    let body = serde_json::from_slice(resp.body()).unwrap_or(Value::Null);
    (resp.status().as_u16(), body, resp)
}

#[tokio::test]
async fn a_json_array_of_valid_events_is_forwarded_keyed_by_event_id() {
    let app = app();
    let body = format!("[{}, {}]", event(1), event(2));
    let (status, body, _) = call(&app, request(body, &[])).await;
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
    let (status, body, _) = call(&app, request(body, &[])).await;
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
    assert_eq!(call(&app, request(big, &[])).await.0, 413);
    let many = (0..501).map(event).collect::<Vec<_>>().join("\n");
    assert_eq!(call(&app, request(many, &[])).await.0, 413);
}

#[tokio::test]
async fn each_refusal_names_its_error_code_in_a_json_answer() {
    let app = app();
    let big = "x".repeat(MAX_BODY_BYTES + 1);
    let many = (0..=MAX_EVENTS as i64)
        .map(event)
        .collect::<Vec<_>>()
        .join("\n");
    let cases: [(Request, u16, &str, &str); 5] = [
        (
            request("", &[]),
            400,
            "empty_body",
            "send a JSON array or NDJSON of events",
        ),
        (
            request("[]", &[]),
            400,
            "empty_body",
            "send a JSON array or NDJSON of events",
        ),
        (
            request("[1, 2", &[]),
            400,
            "unparseable_body",
            // ...followed by the parser's own words.
            "body is not a JSON array or NDJSON: ",
        ),
        (
            request(big, &[]),
            413,
            "body_too_large",
            "1048577 bytes; the limit is 1048576",
        ),
        (
            request(many, &[]),
            413,
            "too_many_events",
            "501 events; the limit is 500 per request",
        ),
    ];
    for (req, status, error, message) in cases {
        let (got, body, resp) = call(&app, req).await;
        assert_eq!(
            (got, body["error"].as_str()),
            (status, Some(error)),
            "{body}"
        );
        let said = body["message"].as_str().unwrap_or_default();
        assert!(said.starts_with(message), "{said}");
        assert_eq!(
            resp.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/json")
        );
    }
    assert!(app.stream.records.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn an_identity_content_encoding_is_accepted() {
    let app = app();
    let (status, _, _) = call(
        &app,
        request(event(1), &[("content-encoding", "Identity ")]),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_compressed_body_is_refused_with_415() {
    let app = app();
    let (status, body, _) = call(&app, request(event(1), &[("content-encoding", "gzip")])).await;
    assert_eq!(status, 415);
    assert_eq!(body["error"], "unsupported_content_encoding");
}

#[tokio::test]
async fn hostile_bodies_get_answers_not_crashes() {
    let app = app();
    // Deeply nested arrays are skipped without recursion: the one element is
    // answered as not an event object, and the stack survives.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let (status, body, _) = call(&app, request(deep, &[])).await;
    assert_eq!(status, 422);
    assert_eq!(body["results"][0]["reason"], "not_an_object");
    let unclosed = "[".repeat(100_000);
    assert_eq!(call(&app, request(unclosed, &[])).await.0, 400);
    // Huge numbers are rejected per event as out of range.
    let huge = event(1).replace("\"detection_oid\":1", "\"detection_oid\":1e400");
    let (_, body, _) = call(&app, request(huge, &[])).await;
    assert_eq!(body["results"][0]["status"], "rejected");
    // Invalid UTF-8 in one NDJSON line rejects that line only.
    let mut raw = event(1).into_bytes();
    raw.extend_from_slice(b"\n\xff\xfe\n");
    // (API Gateway sends such a body as base64; lambda_http decodes it.)
    let (status, body, _) = call(&app, request(raw, &[])).await;
    assert_eq!(status, 207);
    assert_eq!(body["results"][1]["reason"], "not_utf8");
}

#[tokio::test]
async fn kinesis_throttling_after_retries_is_a_503_with_retry_after() {
    let app = app();
    *app.stream.throttle_rate.lock().expect("lock") = 1.0;
    let (status, body, resp) = call(&app, request(event(1), &[])).await;
    assert_eq!(status, 503);
    assert_eq!(
        resp.headers()
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
    let (status, body, _) = call(&app, request(body, &[])).await;
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

/// A stream that refuses every call for good, as a missing stream or a denied role does.
#[derive(Default)]
struct RefusingStream {
    calls: AtomicUsize,
}

impl StreamPort for RefusingStream {
    type Error = FakeError;

    async fn put_records<'a>(
        &'a self,
        _entries: &'a [(&'a str, &'a [u8])],
    ) -> Result<Vec<Option<EntryFailure>>, FakeError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Err(FakeError {
            op: "put_records",
            class: ErrorClass::Permanent,
            applied: false,
        })
    }
}

#[tokio::test]
async fn a_permanent_stream_error_is_a_502_without_retries() {
    let app = app_with(RefusingStream::default());
    let body = format!("{}\n{}\n{{\"detection_oid\": 9}}", event(1), event(2));
    let (status, body, resp) = call(&app, request(body, &[])).await;
    assert_eq!(status, 502, "{body}");
    assert!(resp.headers().get("retry-after").is_none());
    assert_eq!(app.stream.calls.load(Ordering::Relaxed), 1, "not retried");
    assert_eq!(
        (body["accepted"].as_u64(), body["failed"].as_u64()),
        (Some(0), Some(2))
    );
    assert_eq!(body["rejected"], 1);
    assert_eq!(body["results"][0]["status"], "failed");
    assert_eq!(body["results"][2]["status"], "rejected");
}
