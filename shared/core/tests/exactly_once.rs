#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! Scenario tests of the batch logic over in-memory ports, one invocation at a
//! time. The exactly-once property under Lambda's delivery rules is tested
//! through the local event source mapping in `functions/dedup-enrich/tests`.

use std::collections::HashMap;
use std::time::Duration;

use sightline_core::delivery::PackedSink;
use sightline_core::fakes::{
    ClaimItem, Faults, ManualClock, MemoryFirehose, MemoryQuarantine, MemoryStore, OneCallStore,
};
use sightline_core::packing::PackConfig;
use sightline_core::ports::ClaimStore;
use sightline_core::retry::RetryPolicy;
use sightline_core::{
    BatchReport, DatasetB, Deadline, DuplicateKind, Fate, InputRecord, Pipeline, PipelineConfig,
};

const NOW_MS: i64 = 1_763_900_000_000;

type Fake = Pipeline<MemoryStore, PackedSink<MemoryFirehose>, MemoryQuarantine, ManualClock>;

fn pipeline(store: Faults, sink: Faults, quarantine: Faults, pack: usize) -> Fake {
    pipeline_over(MemoryStore::new(store), sink, quarantine, pack)
}

fn pipeline_over<S: ClaimStore>(
    store: S,
    sink: Faults,
    quarantine: Faults,
    pack: usize,
) -> Pipeline<S, PackedSink<MemoryFirehose>, MemoryQuarantine, ManualClock> {
    Pipeline::new(
        store,
        PackedSink::new(MemoryFirehose::new(sink), PackConfig::new(pack)),
        MemoryQuarantine::new(quarantine),
        ManualClock::at(NOW_MS),
        DatasetB::embedded().expect("dataset B"),
        PipelineConfig {
            claim_concurrency: 8,
            retry: RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::ZERO,
                max_delay: Duration::ZERO,
                ..RetryPolicy::default()
            },
            ..PipelineConfig::default()
        },
    )
}

fn clean() -> Fake {
    pipeline(Faults::none(), Faults::none(), Faults::none(), 500)
}

fn event(id: i64) -> Vec<u8> {
    format!(
        r#"{{"detection_oid":{id},"video_camera_oid":{},"geographical_location_oid":{},"item_name":"item-{}","timestamp_detected":{}}}"#,
        id % 11 + 1,
        id % 60 + 1,
        id % 7,
        NOW_MS - id * 1_000
    )
    .into_bytes()
}

fn record(shard: usize, seq: u64, data: Vec<u8>) -> InputRecord {
    InputRecord {
        shard_id: format!("shardId-{shard:012}"),
        // Same length, so string order is numeric order.
        sequence_number: format!("{}", 49_000_000_000_000_000u64 + seq),
        arrival_ms: NOW_MS,
        data,
    }
}

fn delivered_counts(p: &Fake) -> HashMap<i64, usize> {
    let mut counts = HashMap::new();
    for line in p.sink.port.delivered() {
        *counts
            .entry(line["detection_oid"].as_i64().unwrap_or(-1))
            .or_default() += 1;
    }
    counts
}

async fn run<S: ClaimStore>(
    p: &Pipeline<S, PackedSink<MemoryFirehose>, MemoryQuarantine, ManualClock>,
    records: &[InputRecord],
) -> BatchReport {
    let report = p.process(records, Deadline::none()).await;
    assert_eq!(report.fates.len(), records.len());
    assert_eq!(
        report.stats.accounted(),
        records.len() as u64,
        "{:?}",
        report.stats
    );
    report
}

#[tokio::test]
async fn an_expired_claim_counts_as_absent_before_ttl_deletes_it() {
    let p = clean();
    // Another record claimed event 5 and its claim expired a second ago.
    p.store.claims.lock().expect("lock").insert(
        5,
        ClaimItem {
            owner: "shardId-000000000009/1".into(),
            expires_at: NOW_MS / 1_000 - 1,
            delivered: true,
            batch_first_sequence: "1".into(),
        },
    );
    let report = run(&p, &[record(0, 1, event(5))]).await;
    assert_eq!(report.fates, vec![Fate::Delivered]);
    assert_eq!(report.stats.expired_claims_taken_over, 1);
}

#[tokio::test]
async fn a_live_claim_by_another_record_drops_the_event_as_a_duplicate() {
    let p = clean();
    run(&p, &[record(0, 1, event(5))]).await;
    // The upstream re-send, on another shard, later.
    p.clock.advance(3_600_000);
    let report = run(&p, &[record(1, 2, event(5))]).await;
    assert_eq!(report.fates, vec![Fate::Duplicate(DuplicateKind::Upstream)]);
    assert_eq!(delivered_counts(&p)[&5], 1);
}

#[tokio::test]
async fn a_resend_after_the_dedup_window_is_delivered_again() {
    let p = clean();
    run(&p, &[record(0, 1, event(5))]).await;
    p.clock.advance(86_400_000 + 1_000);
    let report = run(&p, &[record(0, 2, event(5))]).await;
    assert_eq!(report.fates, vec![Fate::Delivered]);
}

#[tokio::test]
async fn in_batch_duplicates_are_settled_without_a_store_call() {
    let p = clean();
    let batch = [
        record(0, 1, event(1)),
        record(0, 2, event(1)),
        record(0, 3, event(2)),
    ];
    let report = run(&p, &batch).await;
    assert_eq!(
        report.fates,
        vec![
            Fate::Delivered,
            Fate::Duplicate(DuplicateKind::InBatch),
            Fate::Delivered
        ]
    );
    assert_eq!(p.store.claims.lock().expect("lock").len(), 2);
}

#[tokio::test]
async fn a_replayed_batch_is_skipped_through_its_checkpoint() {
    let p = clean();
    let batch: Vec<InputRecord> = (1..=5).map(|i| record(0, i, event(i as i64))).collect();
    run(&p, &batch).await;
    let again = run(&p, &batch).await;
    assert!(
        again
            .fates
            .iter()
            .all(|f| *f == Fate::Duplicate(DuplicateKind::Replayed))
    );
    assert!(again.failed_sequences.is_empty());
    assert_eq!(delivered_counts(&p).values().sum::<usize>(), 5);
}

#[tokio::test]
async fn an_exhausted_deadline_reports_everything_for_retry_and_delivers_nothing() {
    let p = clean();
    let batch: Vec<InputRecord> = (1..=4).map(|i| record(0, i, event(i as i64))).collect();
    let report = p.process(&batch, Deadline::at(NOW_MS + 1_000, 2_000)).await;
    assert!(report.fates.iter().all(|f| *f == Fate::Retry));
    assert_eq!(report.failed_sequences.len(), 4);
    assert!(p.sink.port.delivered().is_empty());
    // Released claims do not block the retry.
    let retry = run(&p, &batch).await;
    assert!(retry.fates.iter().all(|f| *f == Fate::Delivered));
}

#[tokio::test]
async fn a_failed_quarantine_write_retries_from_the_first_bad_record() {
    let q = Faults::seeded(3);
    q.set("put_object", 1.0, 0.0);
    let p = pipeline(Faults::none(), Faults::none(), q, 500);
    let batch = [
        record(0, 1, event(1)),
        record(0, 2, b"nope".to_vec()),
        record(0, 3, event(3)),
    ];
    let report = run(&p, &batch).await;
    assert_eq!(
        report.fates,
        vec![Fate::Delivered, Fate::Retry, Fate::Retry]
    );
    // Event 3 reached Firehose before the quarantine failed: it is marked, so the
    // retry skips it.
    p.quarantine.faults.set("put_object", 0.0, 0.0);
    let retry = run(&p, &batch[1..]).await;
    assert_eq!(
        retry.fates,
        vec![Fate::Quarantined, Fate::Duplicate(DuplicateKind::Replayed)]
    );
    assert_eq!(delivered_counts(&p)[&3], 1);
}

/// A batch with fresh events, an in-batch duplicate, a re-send of an event
/// claimed earlier and a bad record.
fn mixed_batch(seq0: u64) -> Vec<InputRecord> {
    let mut records: Vec<InputRecord> = (0..20)
        .map(|i| record(0, seq0 + i, event(100 + i as i64)))
        .collect();
    records.push(record(0, seq0 + 20, event(103)));
    records.push(record(0, seq0 + 21, event(1)));
    records.push(record(0, seq0 + 22, b"{not json".to_vec()));
    records
}

#[tokio::test]
async fn claims_in_one_call_settle_a_batch_as_one_put_per_event_does() {
    let each = clean();
    let one = pipeline_over(OneCallStore::default(), Faults::none(), Faults::none(), 500);
    // Event 1 was claimed by an earlier batch in both stores.
    run(&each, &[record(1, 1, event(1))]).await;
    run(&one, &[record(1, 1, event(1))]).await;
    let a = run(&each, &mixed_batch(10)).await;
    let b = run(&one, &mixed_batch(10)).await;
    assert_eq!(a.fates, b.fates);
    assert_eq!(a.stats, b.stats);
    assert_eq!(each.sink.port.delivered(), one.sink.port.delivered());
}

#[tokio::test]
async fn a_failed_one_call_claim_retries_every_valid_record_and_delivers_nothing() {
    let one = pipeline_over(OneCallStore::default(), Faults::none(), Faults::none(), 500);
    one.store.0.fail_claims.lock().expect("lock").insert(105);
    let report = run(&one, &mixed_batch(10)).await;
    // The call claimed nothing: every record from the first valid one on is
    // reported for retry, and nothing reached the sink.
    assert!(
        report.fates.iter().all(|f| *f == Fate::Retry),
        "{:?}",
        report.fates
    );
    assert!(one.sink.port.delivered().is_empty());
    assert!(one.store.0.claims.lock().expect("lock").is_empty());
}
