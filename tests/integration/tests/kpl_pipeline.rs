#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
#![recursion_limit = "256"]
//! KPL aggregates through moto: aggregates built by `aws-kinesis-agg` (the
//! committed fixtures) go into a Kinesis stream, dedup-enrich splits them, and
//! every user record ends up in the lake once, or in the quarantine with its
//! reason; a corrupt aggregate is quarantined whole; Kinesis retrying the batch
//! delivers nothing new.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use base64::Engine;
use serde_json::Value;
use sightline_core::decode::decode_bytes_with;
use sightline_integration_tests::{Stack, event_json, lambda_event, now_ms};

/// The fixtures' events were detected when `aws-kinesis-agg` built them
/// (`--check` keeps them byte for byte), long before they arrive here: the
/// function's oldest-event rule is widened so they are not `too_old`.
const OLD_FIXTURES_MS: i64 = 100 * 366 * 86_400_000;

fn fixtures_config(stack: &Stack) -> dedup_enrich::Config {
    let mut config = stack.config();
    config.max_event_age_secs = OLD_FIXTURES_MS / 1_000;
    config
}

fn fixture(file: &str) -> (Vec<u8>, Vec<Vec<u8>>) {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/core/tests/fixtures/kpl");
    let bytes = std::fs::read(dir.join(file)).expect("fixture");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).expect("manifest"))
            .expect("manifest json");
    let users = manifest["fixtures"]
        .as_array()
        .expect("fixtures")
        .iter()
        .find(|f| f["file"] == file)
        .expect("listed")["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| {
            base64::engine::general_purpose::STANDARD
                .decode(r[2].as_str().expect("data"))
                .expect("base64")
        })
        .collect();
    (bytes, users)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregates_from_aws_kinesis_agg_are_split_and_land_once() {
    sightline_integration_tests::require_moto!();
    let stack = Stack::create("kpl", 1).await;
    let (hundred, hundred_users) = fixture("events-100.bin");
    let (mixed, mixed_users) = fixture("batch.bin");
    let mut corrupt = hundred.clone();
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0x55;
    let now = now_ms() as i64;
    let plain = event_json(9_000_001, 3, now);
    stack
        .put(&[
            ("agg-1".into(), hundred.clone()),
            ("agg-2".into(), mixed.clone()),
            ("agg-3".into(), corrupt),
            ("plain".into(), plain.clone()),
        ])
        .await;
    let records = stack
        .read_all()
        .await
        .into_values()
        .flatten()
        .collect::<Vec<_>>();
    assert_eq!(records.len(), 4);

    // What the lake must hold: each valid user record's event once (an
    // in-aggregate re-send drops), per the shared validation rules.
    let mut expected: BTreeMap<i64, String> = BTreeMap::new();
    let mut bad = 0;
    for (users, rec) in [(&hundred_users, &records[0]), (&mixed_users, &records[1])] {
        for data in users {
            match decode_bytes_with(data, now, OLD_FIXTURES_MS) {
                Ok(e) => {
                    expected
                        .entry(e.detection_oid)
                        .or_insert_with(|| rec.sequence_number.clone());
                }
                Err(_) => bad += 1,
            }
        }
    }
    expected.insert(9_000_001, records[3].sequence_number.clone());
    assert!(bad >= 2, "the mixed fixture carries bad records");

    let app = stack.app(&fixtures_config(&stack));
    let (resp, report) =
        dedup_enrich::handle_with_report(&app, lambda_event(&records, now_ms() + 60_000)).await;
    assert!(resp.batch_item_failures.is_empty(), "{resp:?}");
    assert_eq!(report.stats.kpl_aggregates, 3);
    assert_eq!(
        report.stats.kpl_user_records,
        (hundred_users.len() + mixed_users.len()) as u64
    );
    assert_eq!(
        report.stats.received,
        (hundred_users.len() + mixed_users.len() + 2) as u64,
        "user records, the corrupt aggregate and the plain record"
    );

    let lake = stack.lake_lines().await;
    let mut seen = BTreeSet::new();
    for line in &lake {
        let id = line["detection_oid"].as_i64().expect("id");
        assert!(seen.insert(id), "event {id} delivered twice");
        assert_eq!(
            line["source_sequence"].as_str(),
            expected.get(&id).map(String::as_str),
            "lineage names the Kinesis record (the aggregate's sequence number)"
        );
    }
    assert_eq!(
        seen.len(),
        expected.len(),
        "every valid user record delivered"
    );

    let quarantine = stack.quarantine_lines().await;
    let corrupt_lines: Vec<&Value> = quarantine
        .iter()
        .filter(|q| q["reason"] == "kpl_corrupt")
        .collect();
    assert_eq!(corrupt_lines.len(), 1, "the corrupt aggregate, whole");
    assert_eq!(
        corrupt_lines[0]["sequence_number"].as_str(),
        Some(records[2].sequence_number.as_str())
    );
    assert!(
        corrupt_lines[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("MD5")),
        "a readable reason: {}",
        corrupt_lines[0]["message"]
    );
    let user_lines: Vec<&Value> = quarantine
        .iter()
        .filter(|q| q.get("kpl_user_record").is_some())
        .collect();
    assert_eq!(user_lines.len(), bad, "each bad user record alone");
    assert!(
        user_lines
            .iter()
            .all(|q| q["sequence_number"] == records[1].sequence_number.as_str())
    );

    // Kinesis retrying the same batch: nothing new anywhere.
    let (resp, report) =
        dedup_enrich::handle_with_report(&app, lambda_event(&records, now_ms() + 60_000)).await;
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!(report.stats.delivered, 0);
    assert_eq!(stack.lake_lines().await.len(), lake.len());
}
