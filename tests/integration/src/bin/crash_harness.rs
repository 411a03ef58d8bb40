#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
#![recursion_limit = "256"]
//! Runs dedup-enrich on one Kinesis event read from a file, against moto, in a
//! process of its own. Used by the crash test: with `SIGHTLINE_FAULT_POINT` set
//! it parks at that point and the test kills it.
//!
//! Usage: crash-harness ENDPOINT TABLE DELIVERY_STREAM QUARANTINE_BUCKET EVENT_FILE

use std::time::Duration;

use aws_lambda_events::event::kinesis::KinesisEvent;
use lambda_runtime::{Context, LambdaEvent};
use sightline_integration_tests::{Stack, now_ms};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, endpoint, table, stream, bucket, file] = args.as_slice() else {
        eprintln!(
            "usage: crash-harness ENDPOINT TABLE DELIVERY_STREAM QUARANTINE_BUCKET EVENT_FILE"
        );
        std::process::exit(2);
    };
    let config = dedup_enrich::Config::from_lookup(|k| match k {
        "DEDUP_TABLE" => Some(table.clone()),
        "DELIVERY_STREAM" => Some(stream.clone()),
        "QUARANTINE_BUCKET" => Some(bucket.clone()),
        _ => None,
    })
    .unwrap_or_else(|e| panic!("config: {e}"));
    let app = Stack::app_at(&config, endpoint, Duration::from_secs(5)).await;
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{file}: {e}"));
    let event: KinesisEvent = serde_json::from_str(&text).unwrap_or_else(|e| panic!("event: {e}"));
    let mut ctx = Context::default();
    ctx.deadline = now_ms() + 60_000;
    let resp = dedup_enrich::handle(&app, LambdaEvent::new(event, ctx))
        .await
        .unwrap_or_else(|e| panic!("handler: {e}"));
    println!("{}", serde_json::to_string(&resp).unwrap_or_default());
}
