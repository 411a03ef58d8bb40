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
        archive: None,
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

type ArchivingApp = App<
    MemoryStore,
    PackedSink<MemoryFirehose>,
    MemoryQuarantine,
    ManualClock,
    sightline_core::archive::PackedArchive<MemoryFirehose>,
>;

fn archiving_app(archive: MemoryFirehose) -> ArchivingApp {
    let plain = app();
    App {
        archive: Some(dedup_enrich::Archiver::new(
            sightline_core::archive::PackedArchive::new(archive),
        )),
        pipeline: plain.pipeline,
        deadline_reserve_ms: plain.deadline_reserve_ms,
        metrics_namespace: plain.metrics_namespace,
        function_name: plain.function_name,
    }
}

#[tokio::test]
async fn the_handler_archives_every_record_as_received_with_what_a_replay_needs() {
    use base64::Engine;
    let app = archiving_app(MemoryFirehose::default());
    let event = fixture("bad-records");
    let want: Vec<(String, String, Vec<u8>)> = event
        .records
        .iter()
        .map(|r| {
            (
                r.kinesis.sequence_number.clone(),
                r.kinesis.partition_key.clone(),
                r.kinesis.data.0.clone(),
            )
        })
        .collect();
    let (resp, report) = dedup_enrich::handle_with_report(&app, invoke(event)).await;
    assert_eq!(failures(&resp), 0);
    assert_eq!(report.stats.archive_failed, 0);
    let archive = &app.archive.as_ref().expect("archive").archive.port;
    let lines = archive.delivered();
    assert_eq!(
        lines.len(),
        want.len(),
        "one line per Kinesis record, bad ones included"
    );
    let b64 = base64::engine::general_purpose::STANDARD;
    for (line, (seq, key, data)) in lines.iter().zip(&want) {
        assert_eq!(line["sequence_number"], seq.as_str());
        assert_eq!(line["partition_key"], key.as_str());
        assert!(
            line["shard_id"]
                .as_str()
                .is_some_and(|s| s.starts_with("shardId-"))
        );
        assert!(
            line["arrival_ms"]
                .as_i64()
                .is_some_and(|ms| ms > 1_700_000_000_000)
        );
        let got = b64
            .decode(line["data_base64"].as_str().expect("data"))
            .expect("base64");
        assert_eq!(&got, data, "the payload as received, byte for byte");
    }
    // Packed: one Firehose record holds the whole batch.
    assert_eq!(archive.calls.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_failing_archive_is_counted_and_the_batch_is_still_delivered() {
    let archive = MemoryFirehose::default();
    // Every attempt's entries rejected: the retries run out.
    for _ in 0..20 {
        archive.fail_next_call(1.0);
    }
    let app = archiving_app(archive);
    let (resp, report) = dedup_enrich::handle_with_report(&app, invoke(fixture("clean"))).await;
    assert_eq!(failures(&resp), 0);
    assert_eq!(
        report.stats.delivered, 10,
        "the lake does not wait for the archive"
    );
    assert_eq!(report.stats.archive_failed, 10);
    assert!(report.stats.retries >= 1 && report.stats.throttled >= 1);
    let emf: serde_json::Value =
        serde_json::from_str(&report.stats.emf_line("Sightline", "f", 0)).expect("emf");
    assert_eq!(emf["ArchiveFailed"], 10);
}
