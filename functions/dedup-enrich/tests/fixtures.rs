#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! The handler, called directly with the fixture events and in-memory ports.

use aws_lambda_events::event::kinesis::KinesisEvent;
use dedup_enrich::{App, handle, input_records};
use lambda_runtime::{Context, LambdaEvent};
use sightline_core::delivery::PackedSink;
use sightline_core::fakes::{ManualClock, MemoryFirehose, MemoryQuarantine, MemoryStore};
use sightline_core::packing::PackConfig;
use sightline_core::{DatasetB, Deadline, Pipeline, PipelineConfig};

type FakeApp = App<MemoryStore, PackedSink<MemoryFirehose>, MemoryQuarantine, ManualClock>;

// The fixtures' records arrived at 2025-11-23T12:13:20Z.
const FIXTURE_NOW_MS: i64 = 1_763_900_030_000;

fn app() -> FakeApp {
    App {
        pipeline: Pipeline::new(
            MemoryStore::default(),
            PackedSink::new(MemoryFirehose::default(), PackConfig::default()),
            MemoryQuarantine::default(),
            ManualClock::at(FIXTURE_NOW_MS),
            DatasetB::embedded().expect("dataset B"),
            PipelineConfig::default(),
        ),
        deadline_reserve_ms: 500,
        metrics_namespace: "Sightline".into(),
        function_name: "dedup-enrich-test".into(),
    }
}

fn fixture(name: &str) -> KinesisEvent {
    let path = format!("{}/events/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("fixture exists");
    serde_json::from_str(&text).expect("fixture is a Kinesis event")
}

fn invoke(event: KinesisEvent) -> LambdaEvent<KinesisEvent> {
    let mut ctx = Context::default();
    ctx.deadline = (FIXTURE_NOW_MS + 60_000) as u64;
    LambdaEvent::new(event, ctx)
}

fn failures(resp: &aws_lambda_events::event::streams::KinesisEventResponse) -> usize {
    resp.batch_item_failures.len()
}

#[tokio::test]
async fn the_three_fixtures_deliver_drop_and_quarantine_as_documented() {
    let app = app();
    let clean = handle(&app, invoke(fixture("clean")))
        .await
        .expect("handled");
    assert_eq!(failures(&clean), 0);
    assert_eq!(app.pipeline.sink.port.delivered().len(), 10);

    let dups = handle(&app, invoke(fixture("duplicates")))
        .await
        .expect("handled");
    assert_eq!(failures(&dups), 0);
    // 8 records of 4 events, plus a re-send of an event the clean batch delivered.
    assert_eq!(app.pipeline.sink.port.delivered().len(), 14);

    let bad = handle(&app, invoke(fixture("bad-records")))
        .await
        .expect("handled");
    assert_eq!(failures(&bad), 0);
    let delivered = app.pipeline.sink.port.delivered();
    assert_eq!(delivered.len(), 16);
    let unknown: Vec<_> = delivered
        .iter()
        .filter(|l| l["geographical_location"].is_null())
        .collect();
    assert_eq!(
        unknown.len(),
        1,
        "location 999 is delivered with a null name"
    );
    let quarantined = app.pipeline.quarantine.lines();
    let mut reasons: Vec<&str> = quarantined
        .iter()
        .filter_map(|l| l["reason"].as_str())
        .collect();
    reasons.sort_unstable();
    assert_eq!(
        reasons,
        [
            "invalid_json",
            "missing_field",
            "not_an_object",
            "not_utf8",
            "timestamp_too_old",
            "wrong_type"
        ]
    );
}

#[tokio::test]
async fn lambda_reinvoking_the_same_batch_delivers_nothing_new() {
    let app = app();
    handle(&app, invoke(fixture("clean")))
        .await
        .expect("handled");
    let again = handle(&app, invoke(fixture("clean")))
        .await
        .expect("handled");
    assert_eq!(failures(&again), 0);
    assert_eq!(app.pipeline.sink.port.delivered().len(), 10);
}

#[tokio::test]
async fn a_store_outage_reports_every_record_for_retry() {
    let app = app();
    app.pipeline.store.faults.set("get_checkpoint", 1.0, 0.0);
    let resp = handle(&app, invoke(fixture("clean")))
        .await
        .expect("never fails the batch");
    assert_eq!(failures(&resp), 10);
    assert!(app.pipeline.sink.port.delivered().is_empty());
}

#[test]
fn records_carry_shard_sequence_and_arrival_from_the_lambda_event() {
    let records = input_records(fixture("clean"));
    assert_eq!(records.len(), 10);
    assert_eq!(records[0].shard_id, "shardId-000000000000");
    assert!(records[0].sequence_number.starts_with("4966"));
    assert_eq!(records[0].arrival_ms, 1_763_900_000_123);
}

#[test]
fn the_deadline_is_absolute_from_lambda_and_relative_from_cargo_lambda() {
    let now = FIXTURE_NOW_MS;
    assert_eq!(Deadline::from_lambda(0, now, 2_000).budget_ms(now), None);
    let lambda = Deadline::from_lambda((now + 10_000) as u64, now, 2_000);
    assert_eq!(lambda.budget_ms(now), Some(8_000));
    let emulator = Deadline::from_lambda(600_000, now, 2_000);
    assert_eq!(emulator.budget_ms(now), Some(598_000));
}
