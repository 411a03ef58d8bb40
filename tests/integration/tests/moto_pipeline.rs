#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
#![recursion_limit = "256"]
//! dedup-enrich against moto over HTTP: real Kinesis records in, S3 out.

use std::collections::BTreeMap;

use sightline_integration_tests::{
    ShardRecord, Stack, assert_exactly_once, drain_shard, lambda_event, now_ms, traffic,
};

async fn run_all(stack: &Stack, shards: &BTreeMap<String, Vec<ShardRecord>>, batch: usize) {
    let app = stack.app(&stack.config());
    for records in shards.values() {
        drain_shard(&app, records, batch, 1_000).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_unique_event_lands_once_across_batches_and_shards() {
    sightline_integration_tests::require_moto!();
    let stack = Stack::create("once", 3).await;
    let t = traffic(400);
    stack.put(&t.payloads).await;
    let shards = stack.read_all().await;
    assert_eq!(
        shards.values().map(Vec::len).sum::<usize>(),
        t.payloads.len()
    );
    assert!(
        shards.values().filter(|r| !r.is_empty()).count() >= 2,
        "traffic spans shards"
    );

    run_all(&stack, &shards, 50).await;

    let lines = stack.lake_lines().await;
    assert_eq!(lines.len(), t.unique.len(), "{} re-sends dropped", t.resent);
    assert_exactly_once(&lines, &t.unique);

    let bad = stack.quarantine_lines().await;
    assert_eq!(bad.len(), t.bad, "every bad record quarantined once");
    let mut reasons: Vec<&str> = bad.iter().filter_map(|l| l["reason"].as_str()).collect();
    reasons.sort_unstable();
    assert_eq!(
        reasons,
        [
            "empty_item_name",
            "invalid_json",
            "not_an_object",
            "not_utf8",
            "timestamp_too_old",
            "wrong_type"
        ]
    );
    for l in &bad {
        assert!(l["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(l["data_base64"].is_string() && l["sequence_number"].is_string());
    }
    for key in stack.object_keys(&stack.quarantine_bucket).await {
        assert!(key.starts_with("quarantine/dt="), "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_batch_delivers_nothing_new() {
    sightline_integration_tests::require_moto!();
    let stack = Stack::create("replay", 2).await;
    let t = traffic(120);
    stack.put(&t.payloads).await;
    let shards = stack.read_all().await;
    run_all(&stack, &shards, 40).await;
    let before = stack.lake_lines().await.len();
    let quarantined_before = stack.quarantine_lines().await.len();

    // Lambda re-invokes the very same batches (lost response, timeout...).
    let app = stack.app(&stack.config());
    for records in shards.values() {
        for batch in records.chunks(40) {
            let resp = dedup_enrich::handle(&app, lambda_event(batch, now_ms() + 60_000))
                .await
                .expect("handled");
            assert!(resp.batch_item_failures.is_empty());
        }
    }
    // And with other batch boundaries: the claims still say "delivered elsewhere".
    for records in shards.values() {
        drain_shard(&app, records, 33, 100).await;
    }
    let lines = stack.lake_lines().await;
    assert_eq!(lines.len(), before, "replays add nothing");
    assert_exactly_once(&lines, &t.unique);
    assert_eq!(stack.quarantine_lines().await.len(), quarantined_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delivery_is_reported_then_delivered_once_on_retry() {
    sightline_integration_tests::require_moto!();
    let stack = Stack::create("retry", 1).await;
    let t = traffic(60);
    stack.put(&t.payloads).await;
    let shards = stack.read_all().await;
    let records = shards.values().next().expect("one shard");

    // The delivery stream does not exist yet: Firehose answers ResourceNotFound.
    let mut broken = stack.config();
    broken.delivery_stream = "sightline-missing-stream".into();
    let broken_app = stack.app(&broken);
    let resp = dedup_enrich::handle(&broken_app, lambda_event(records, now_ms() + 60_000))
        .await
        .expect("handled");
    let failed: Vec<String> = resp
        .batch_item_failures
        .iter()
        .filter_map(|f| f.item_identifier.clone())
        .collect();
    assert!(!failed.is_empty(), "delivery failure must be reported");
    let first_failed = records
        .iter()
        .position(|r| failed.contains(&r.sequence_number))
        .expect("a failed record");
    assert!(
        records[first_failed..]
            .iter()
            .all(|r| failed.contains(&r.sequence_number)),
        "everything after the first failure is reported"
    );
    assert!(stack.lake_lines().await.is_empty());

    // Kinesis redelivers from the lowest failed sequence number.
    let app = stack.app(&stack.config());
    drain_shard(&app, &records[first_failed..], 500, 10).await;
    let lines = stack.lake_lines().await;
    assert_exactly_once(&lines, &t.unique);
    assert_eq!(stack.quarantine_lines().await.len(), t.bad);
}
