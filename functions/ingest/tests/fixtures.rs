#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! The `events/` fixtures (what `cargo lambda invoke` sends), read the way the
//! runtime reads them and answered by the handler with an in-memory stream.

use ingest::{Ingest, Request, RequestExt, handle};
use lambda_http::http::Method;
use serde_json::Value;
use sightline_core::fakes::{ManualClock, MemoryStream};
use sightline_core::retry::RetryPolicy;

// The fixtures' requests reached API Gateway at 2025-11-23T12:13:20Z.
const FIXTURE_NOW_MS: i64 = 1_763_900_000_000;

const FIXTURES: [&str; 3] = ["accepted", "partly-rejected", "bad-body"];

fn app() -> Ingest<MemoryStream, ManualClock> {
    Ingest {
        stream: MemoryStream::default(),
        clock: ManualClock::at(FIXTURE_NOW_MS),
        retry: RetryPolicy::default(),
        deadline_reserve_ms: 0,
    }
}

/// The fixture as `lambda_http::run` hands it to the handler.
fn fixture(name: &str) -> Request {
    let path = format!("{}/events/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("fixture exists");
    lambda_http::request::from_str(&text).expect("fixture is an HTTP API payload 2.0 request")
}

async fn answer(app: &Ingest<MemoryStream, ManualClock>, name: &str) -> (u16, Value) {
    let resp = handle(app, fixture(name)).await;
    let body = serde_json::from_slice(resp.body()).expect("a JSON answer");
    (resp.status().as_u16(), body)
}

fn forwarded_keys(app: &Ingest<MemoryStream, ManualClock>) -> Vec<String> {
    let records = app.stream.records.lock().expect("lock");
    records.iter().map(|(key, _)| key.clone()).collect()
}

#[test]
fn every_fixture_is_a_post_to_the_events_route() {
    for name in FIXTURES {
        let req = fixture(name);
        assert_eq!(req.method(), Method::POST, "{name}");
        assert_eq!(req.raw_http_path(), "/events", "{name}");
    }
}

#[tokio::test]
async fn the_accepted_fixture_is_forwarded_whole_with_200() {
    let app = app();
    let (status, body) = answer(&app, "accepted").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 3);
    assert_eq!(forwarded_keys(&app), ["2000", "2001", "2002"]);
}

#[tokio::test]
async fn the_partly_rejected_fixture_forwards_its_valid_events_with_207() {
    let app = app();
    let (status, body) = answer(&app, "partly-rejected").await;
    assert_eq!(status, 207, "{body}");
    assert_eq!(
        (body["accepted"].as_u64(), body["rejected"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(body["results"][2]["reason"], "wrong_type");
    assert_eq!(body["results"][3]["reason"], "missing_field");
    // The body arrived base64-encoded; what is forwarded is the decoded line.
    let records = app.stream.records.lock().expect("lock").clone();
    assert_eq!(records.len(), 2);
    assert!(records[0].1.starts_with(b"{\"detection_oid\": 2100,"));
}

#[tokio::test]
async fn the_bad_body_fixture_is_refused_with_400_and_forwards_nothing() {
    let app = app();
    let (status, body) = answer(&app, "bad-body").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "unparseable_body");
    assert!(forwarded_keys(&app).is_empty());
}
