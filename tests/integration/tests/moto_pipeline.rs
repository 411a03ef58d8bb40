//! dedup-enrich against moto over HTTP: real Kinesis records in, S3 out.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};
use sightline_core::DatasetB;
use sightline_integration_tests::{ShardRecord, Stack, drain_shard, lambda_event, now_ms};

/// A Dataset A event as a camera would publish it.
fn event_json(id: i64, location: i64, now: i64) -> Vec<u8> {
    const ITEMS: [&str; 6] = ["person", "car", "bicycle", "dog", "bus", "truck"];
    json!({
        "detection_oid": id,
        "video_camera_oid": 1_000 + id % 17,
        "geographical_location_oid": location,
        "item_name": ITEMS[(id % 6) as usize],
        "timestamp_detected": now - id * 1_000,
    })
    .to_string()
    .into_bytes()
}

struct Traffic {
    payloads: Vec<(String, Vec<u8>)>,
    unique: BTreeMap<i64, i64>,
    bad: usize,
    resent: usize,
}

/// `n` unique events, every fifth re-sent later under another partition key
/// (so possibly another shard), location 999 unknown to Dataset B, plus bad records.
fn traffic(n: i64) -> Traffic {
    let now = now_ms() as i64;
    let mut payloads = Vec::new();
    let mut unique = BTreeMap::new();
    for id in 1..=n {
        let location = if id % 13 == 0 { 999 } else { id % 55 + 1 };
        unique.insert(id, location);
        payloads.push((format!("camera-{}", id % 17), event_json(id, location, now)));
    }
    let mut resent = 0;
    for id in (1..=n).step_by(5) {
        let location = unique[&id];
        payloads.push((format!("retry-{id}"), event_json(id, location, now)));
        resent += 1;
    }
    let bad: Vec<Vec<u8>> = vec![
        b"\xff\xfe not utf8".to_vec(),
        b"{not json".to_vec(),
        b"[1,2,3]".to_vec(),
        br#"{"detection_oid":"5","video_camera_oid":1,"geographical_location_oid":1,"item_name":"car","timestamp_detected":1700000000000}"#.to_vec(),
        br#"{"detection_oid":77777,"video_camera_oid":1,"geographical_location_oid":1,"item_name":"","timestamp_detected":1700000000000}"#.to_vec(),
        br#"{"detection_oid":77778,"video_camera_oid":1,"geographical_location_oid":1,"item_name":"car","timestamp_detected":1700000000}"#.to_vec(),
    ];
    let n_bad = bad.len();
    for (i, b) in bad.into_iter().enumerate() {
        payloads.insert(i * 37 % payloads.len(), (format!("bad-{i}"), b));
    }
    Traffic {
        payloads,
        unique,
        bad: n_bad,
        resent,
    }
}

fn count_by_id(lines: &[Value]) -> HashMap<i64, usize> {
    let mut counts = HashMap::new();
    for l in lines {
        *counts
            .entry(l["detection_oid"].as_i64().expect("detection_oid"))
            .or_default() += 1;
    }
    counts
}

fn assert_exactly_once(lines: &[Value], unique: &BTreeMap<i64, i64>) {
    let b = DatasetB::embedded().expect("dataset B");
    let counts = count_by_id(lines);
    assert_eq!(counts.len(), unique.len(), "every unique event delivered");
    for id in unique.keys() {
        assert_eq!(
            counts.get(id),
            Some(&1),
            "event {id} delivered exactly once"
        );
    }
    for l in lines {
        let id = l["detection_oid"].as_i64().unwrap_or_default();
        let location = unique[&id];
        assert_eq!(l["geographical_location_oid"], location);
        match b.lookup(location) {
            Some(name) => assert_eq!(l["geographical_location"], name),
            None => assert_eq!(l["geographical_location"], Value::Null),
        }
        let date = l["event_date"].as_str().unwrap_or_default();
        assert_eq!(date.len(), 10, "event_date is YYYY-MM-DD");
        assert!(
            l["source_shard"]
                .as_str()
                .unwrap_or_default()
                .starts_with("shardId-")
        );
    }
}

async fn run_all(stack: &Stack, shards: &BTreeMap<String, Vec<ShardRecord>>, batch: usize) {
    let app = stack.app(&stack.config());
    for records in shards.values() {
        drain_shard(&app, records, batch, 1_000).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_unique_event_lands_once_across_batches_and_shards() {
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
