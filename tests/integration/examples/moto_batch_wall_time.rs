#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! Wall time of one 1,000-record batch against moto, with claim concurrency 1
//! and with the default. A bench command, not a test:
//!   scripts/bench-moto.sh

use std::time::Instant;

use serde_json::json;
use sightline_integration_tests::{Stack, lambda_event, now_ms};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut rows = Vec::new();
    for concurrency in [1usize, 64] {
        let stack = Stack::create("bench", 1).await;
        let now = now_ms() as i64;
        let payloads: Vec<(String, Vec<u8>)> = (1..=1_000i64)
            .map(|id| {
                let event = json!({
                    "detection_oid": id,
                    "video_camera_oid": 1 + id % 40,
                    "geographical_location_oid": id % 55 + 1,
                    "item_name": "person",
                    "timestamp_detected": now - id,
                });
                (
                    format!("camera-{}", id % 40),
                    event.to_string().into_bytes(),
                )
            })
            .collect();
        stack.put(&payloads).await;
        let shards = stack.read_all().await;
        let records = shards.values().next().cloned().unwrap_or_default();
        let mut config = stack.config();
        config.claim_concurrency = concurrency;
        let app = stack.app(&config);
        let started = Instant::now();
        let resp = dedup_enrich::handle(&app, lambda_event(&records, now_ms() + 300_000))
            .await
            .expect("handled");
        let elapsed = started.elapsed();
        assert!(resp.batch_item_failures.is_empty());
        assert_eq!(stack.lake_lines().await.len(), 1_000);
        rows.push((concurrency, elapsed));
    }
    println!("| claim concurrency | 1,000-record batch against moto |");
    println!("|---|---|");
    for (c, t) in rows {
        println!("| {c} | {:.2} s |", t.as_secs_f64());
    }
}
