#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
#![recursion_limit = "256"]
//! The front door end to end against moto: HTTP API requests -> ingest ->
//! Kinesis -> dedup-enrich -> S3.

use std::collections::{BTreeMap, HashMap};

use ingest::{Body, Ingest, Request, handle};
use serde_json::Value;
use sightline_aws::kinesis::KinesisPutRecords;
use sightline_core::SystemClock;
use sightline_core::retry::RetryPolicy;
use sightline_integration_tests::{Stack, assert_exactly_once, drain_shard, event_json, now_ms};

async fn post(app: &Ingest<KinesisPutRecords, SystemClock>, body: String) -> (u16, Value) {
    let resp = handle(app, Request::new(Body::Text(body))).await;
    let body = serde_json::from_slice(resp.body()).expect("json");
    (resp.status().as_u16(), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_posted_to_the_front_door_land_once_and_resends_share_a_shard() {
    sightline_integration_tests::require_moto!();
    let stack = Stack::create("ingest", 3).await;
    let app = Ingest {
        stream: KinesisPutRecords::new(stack.clients.kinesis.clone(), &stack.kinesis_stream),
        clock: SystemClock,
        retry: RetryPolicy::default(),
        deadline_reserve_ms: 0,
    };
    let now = now_ms() as i64;
    let mut unique = BTreeMap::new();
    // Four requests of 50 events; each request re-sends the previous one's first 10.
    for request in 0..4i64 {
        let mut lines: Vec<String> = Vec::new();
        for k in 0..50 {
            let id = request * 50 + k + 1;
            unique.insert(id, id % 55 + 1);
            lines.push(String::from_utf8(event_json(id, id % 55 + 1, now)).expect("utf8"));
        }
        if request > 0 {
            for k in 0..10 {
                let id = (request - 1) * 50 + k + 1;
                lines.push(String::from_utf8(event_json(id, id % 55 + 1, now)).expect("utf8"));
            }
        }
        lines.push("{\"detection_oid\": \"oops\"}".into());
        let (status, body) = post(&app, lines.join("\n")).await;
        assert_eq!(status, 207, "{body}");
        assert_eq!(body["rejected"], 1);
        assert_eq!(body["failed"], 0);
    }

    let shards = stack.read_all().await;
    let mut shard_of: HashMap<String, Vec<&str>> = HashMap::new();
    for (shard, records) in &shards {
        for r in records {
            shard_of
                .entry(r.partition_key.clone())
                .or_default()
                .push(shard);
        }
    }
    assert_eq!(
        shard_of.values().map(Vec::len).sum::<usize>(),
        200 + 30,
        "valid events only"
    );
    for (key, on) in &shard_of {
        assert!(
            on.windows(2).all(|w| w[0] == w[1]),
            "re-sends of {key} share one shard"
        );
    }

    let enrich = stack.app(&stack.config());
    for records in shards.values() {
        drain_shard(&enrich, records, 100, 100).await;
    }
    assert_exactly_once(&stack.lake_lines().await, &unique);
    assert!(
        stack.quarantine_lines().await.is_empty(),
        "invalid events never entered the stream"
    );
}
