#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! KPL aggregated records: the de-aggregator against aggregates built by an
//! independent implementation (`aws-kinesis-agg`, see
//! scripts/gen-kpl-fixtures.py), corrupt aggregates, proptest fuzzing and
//! round trips through a tiny test-only encoder, and the batch path (quarantine,
//! failures reported against the aggregate's sequence number, exactly once
//! under faults).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use proptest::prelude::*;
use sightline_core::delivery::PackedSink;
use sightline_core::fakes::{Faults, ManualClock, MemoryFirehose, MemoryQuarantine, MemoryStore};
use sightline_core::kpl::testing::{len_field, varint, wrap};
use sightline_core::kpl::{
    self, CODE_CORRUPT, KPL_MAGIC, KplError, MAX_USER_RECORDS_PER_AGGREGATE, UserRecord,
};
use sightline_core::packing::PackConfig;
use sightline_core::retry::RetryPolicy;
use sightline_core::{
    BatchReport, DatasetB, Deadline, DuplicateKind, Fate, InputRecord, Pipeline, PipelineConfig,
};

const NOW_MS: i64 = 1_763_900_000_000;
const SHARD: &str = "shardId-000000000000";

// ---------------------------------------------------------------- fixtures

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kpl")
}

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64 in manifest")
}

struct Fixture {
    file: String,
    bytes: Vec<u8>,
    /// (partition key, explicit hash key, data)
    expected: Vec<(String, Option<String>, Vec<u8>)>,
}

fn fixtures() -> Vec<Fixture> {
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fixture_dir().join("manifest.json")).expect("manifest.json"),
    )
    .expect("manifest is JSON");
    manifest["fixtures"]
        .as_array()
        .expect("fixtures")
        .iter()
        .map(|f| {
            let file = f["file"].as_str().expect("file").to_string();
            let bytes = std::fs::read(fixture_dir().join(&file)).expect("fixture file");
            let expected = f["records"]
                .as_array()
                .expect("records")
                .iter()
                .map(|r| {
                    (
                        r[0].as_str().expect("partition key").to_string(),
                        r[1].as_str().map(str::to_string),
                        b64(r[2].as_str().expect("data")),
                    )
                })
                .collect();
            Fixture {
                file,
                bytes,
                expected,
            }
        })
        .collect()
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_dir().join(name)).expect("fixture file")
}

#[test]
fn aggregates_built_by_aws_kinesis_agg_split_exactly() {
    let all = fixtures();
    assert!(all.len() >= 6, "fixtures missing");
    let mut total = 0;
    for f in &all {
        assert!(kpl::is_aggregated(&f.bytes), "{}", f.file);
        let got = kpl::deaggregate(&f.bytes).unwrap_or_else(|e| panic!("{}: {e}", f.file));
        let got: Vec<(String, Option<String>, Vec<u8>)> = got
            .iter()
            .map(|u| {
                (
                    u.partition_key.to_string(),
                    u.explicit_hash_key.map(str::to_string),
                    u.data.to_vec(),
                )
            })
            .collect();
        assert_eq!(got, f.expected, "{}", f.file);
        total += got.len();
    }
    assert!(total > 1_500);
    // The sizes the generator promises are there.
    let sizes: BTreeSet<usize> = all.iter().map(|f| f.expected.len()).collect();
    assert!(
        sizes.contains(&1) && sizes.iter().any(|n| *n >= 1_000),
        "{sizes:?}"
    );
    assert!(
        all.iter().any(|f| f.expected.iter().any(|r| r.1.is_some())
            && f.expected.iter().any(|r| r.1.is_none())),
        "a fixture mixes user records with and without explicit hash keys"
    );
}

#[test]
fn user_records_borrow_from_the_kinesis_record() {
    let bytes = fixture("events-100.bin");
    let range = bytes.as_ptr_range();
    for u in kpl::deaggregate(&bytes).expect("valid") {
        assert!(range.contains(&u.data.as_ptr()) || u.data.is_empty());
        assert!(range.contains(&u.partition_key.as_ptr()));
    }
}

// ---------------------------------------------------------- corrupt aggregates

/// The protobuf part of an aggregate.
fn proto_of(agg: &[u8]) -> &[u8] {
    &agg[KPL_MAGIC.len()..agg.len() - kpl::MD5_LEN]
}

#[test]
fn corrupt_aggregates_are_refused_with_readable_reasons() {
    let good = fixture("events-100.bin");
    // A flipped bit in the protobuf: the MD5 no longer matches.
    let mut flipped = good.clone();
    flipped[200] ^= 0x10;
    let e = kpl::deaggregate(&flipped).expect_err("md5");
    assert!(matches!(e, KplError::Md5Mismatch { .. }), "{e}");
    assert!(e.to_string().contains("MD5"), "{e}");
    // Cut short, the trailer is garbage too.
    assert!(matches!(
        kpl::deaggregate(&good[..good.len() / 2]),
        Err(KplError::Md5Mismatch { .. })
    ));
    // Cut short with a matching MD5: the protobuf itself is truncated.
    let proto = proto_of(&good);
    let e = kpl::deaggregate(&wrap(&proto[..proto.len() - 7])).expect_err("truncated");
    assert!(matches!(e, KplError::Truncated { .. }), "{e}");
    assert!(e.to_string().contains("truncated"), "{e}");
    // The magic followed by too little.
    let mut short = KPL_MAGIC.to_vec();
    short.extend_from_slice(b"abc");
    assert_eq!(kpl::deaggregate(&short), Err(KplError::TooShort { len: 7 }));
    // Garbage with a valid MD5.
    let e = kpl::deaggregate(&wrap(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"))
        .expect_err("garbage");
    assert_eq!(e.code(), CODE_CORRUPT);
    // Every reason reads as a sentence.
    for e in [
        KplError::NoRecords,
        KplError::BadVarint { offset: 9 },
        KplError::TooManyRecords {
            limit: MAX_USER_RECORDS_PER_AGGREGATE,
        },
    ] {
        assert!(e.to_string().len() > 20, "{e}");
    }
}

// ------------------------------------------------- a tiny test-only encoder

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    pk: String,
    ehk: Option<String>,
    data: Vec<u8>,
}

fn index_of(table: &mut Vec<String>, key: &str) -> u64 {
    let i = table.iter().position(|k| k == key).unwrap_or_else(|| {
        table.push(key.to_string());
        table.len() - 1
    });
    i as u64
}

/// Encodes an aggregate. `tables_last` puts the key tables after the records
/// (legal protobuf); `noise` adds unknown fields and tags the reader must skip.
fn encode(records: &[Rec], tables_last: bool, noise: bool) -> Vec<u8> {
    let (mut pks, mut ehks) = (Vec::new(), Vec::new());
    let mut body = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let mut m = Vec::new();
        if noise && i % 2 == 1 {
            len_field(4, &[0x0a, 0x01, b'k', 0x12, 0x01, b'v'], &mut m);
            m.extend_from_slice(&[0x78, 0x2a]); // field 15, varint 42
        }
        m.push(0x08);
        varint(index_of(&mut pks, &r.pk), &mut m);
        if let Some(h) = &r.ehk {
            m.push(0x10);
            varint(index_of(&mut ehks, h), &mut m);
        }
        len_field(3, &r.data, &mut m);
        len_field(3, &m, &mut body);
        if noise && i % 3 == 0 {
            body.extend_from_slice(&[0x4d, 1, 2, 3, 4]); // field 9, fixed32
        }
    }
    let mut tables = Vec::new();
    for k in &pks {
        len_field(1, k.as_bytes(), &mut tables);
    }
    for k in &ehks {
        len_field(2, k.as_bytes(), &mut tables);
    }
    let proto = if tables_last {
        [body, tables].concat()
    } else {
        [tables, body].concat()
    };
    wrap(&proto)
}

fn as_recs(users: &[UserRecord<'_>]) -> Vec<Rec> {
    users
        .iter()
        .map(|u| Rec {
            pk: u.partition_key.to_string(),
            ehk: u.explicit_hash_key.map(str::to_string),
            data: u.data.to_vec(),
        })
        .collect()
}

fn rec_strategy() -> impl Strategy<Value = Rec> {
    (
        prop_oneof![
            "[a-z0-9]{1,4}",
            "\\PC{1,6}",
            Just("camera-1".to_string()),
            Just("カメラ".to_string())
        ],
        proptest::option::of(prop_oneof![
            Just("0".to_string()),
            Just("340282366920938463463374607431768211455".to_string()),
            "[0-9]{1,39}"
        ]),
        proptest::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(|(pk, ehk, data)| Rec { pk, ehk, data })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_after_the_magic_never_panic(
        tail in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut raw = KPL_MAGIC.to_vec();
        raw.extend_from_slice(&tail);
        let _ = kpl::deaggregate(&raw);
        // With a valid MD5, the protobuf reader itself gets the garbage.
        let _ = kpl::deaggregate(&wrap(&tail));
    }

    #[test]
    fn encode_then_deaggregate_round_trips(
        records in proptest::collection::vec(rec_strategy(), 1..40),
        tables_last in any::<bool>(),
        noise in any::<bool>(),
    ) {
        let agg = encode(&records, tables_last, noise);
        let got = kpl::deaggregate(&agg).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(as_recs(&got), records);
    }

    #[test]
    fn mutated_aggregates_never_panic_and_stay_in_bounds(
        records in proptest::collection::vec(rec_strategy(), 1..10),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let agg = encode(&records, false, true);
        let mut proto = proto_of(&agg).to_vec();
        for (at, byte, op) in edits {
            if proto.is_empty() { break; }
            let i = at.index(proto.len());
            match op {
                0 => proto[i] = byte,
                1 => proto.insert(i, byte),
                _ => { proto.remove(i); }
            }
        }
        let mutated = wrap(&proto);
        if let Ok(users) = kpl::deaggregate(&mutated) {
            let range = mutated.as_ptr_range();
            for u in users {
                prop_assert!(u.data.is_empty() || range.contains(&u.data.as_ptr()));
                let end = u.data.as_ptr_range().end;
                prop_assert!(end <= range.end);
            }
        }
    }
}

// ------------------------------------------------------------- the batch path

// The fakes' targeted faults: claims of chosen events fail, and Firehose rejects
// the entries holding chosen events, on every attempt.
type Flaky = Pipeline<MemoryStore, PackedSink<MemoryFirehose>, MemoryQuarantine, ManualClock>;

fn retry_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::ZERO,
        max_delay: Duration::ZERO,
        ..RetryPolicy::default()
    }
}

fn flaky() -> Flaky {
    Pipeline::new(
        MemoryStore::default(),
        // One event per Firehose record, so one event can be rejected alone.
        PackedSink::new(MemoryFirehose::default(), PackConfig::new(1)),
        MemoryQuarantine::default(),
        ManualClock::at(NOW_MS),
        DatasetB::embedded().expect("dataset B"),
        PipelineConfig {
            claim_concurrency: 4,
            retry: retry_policy(),
            ..PipelineConfig::default()
        },
    )
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

fn seq(n: u64) -> String {
    // Same length, so string order is numeric order.
    format!("{}", 49_000_000_000_000_000u64 + n)
}

fn record(n: u64, data: Vec<u8>) -> InputRecord {
    InputRecord {
        shard_id: SHARD.into(),
        sequence_number: seq(n),
        arrival_ms: NOW_MS,
        data,
    }
}

fn aggregate_of(ids: impl IntoIterator<Item = i64>) -> Vec<u8> {
    let recs: Vec<Rec> = ids
        .into_iter()
        .map(|id| Rec {
            pk: format!("cam-{}", id % 3),
            ehk: None,
            data: event(id),
        })
        .collect();
    encode(&recs, false, false)
}

fn delivered_ids(lines: &[serde_json::Value]) -> HashMap<i64, usize> {
    let mut counts = HashMap::new();
    for l in lines {
        *counts
            .entry(l["detection_oid"].as_i64().unwrap_or(-1))
            .or_default() += 1;
    }
    counts
}

fn check_accounting(report: &BatchReport, records: &[InputRecord]) {
    assert_eq!(report.fates.len(), records.len());
    assert_eq!(report.user_fates.len(), records.len());
    assert_eq!(
        report.stats.accounted(),
        report.stats.received,
        "{:?}",
        report.stats
    );
    let users: usize = report
        .fates
        .iter()
        .zip(&report.user_fates)
        .map(|(_, u)| u.len().max(1))
        .sum();
    assert_eq!(report.stats.received, users as u64);
    for (f, users) in report.fates.iter().zip(&report.user_fates) {
        match f {
            Fate::Deaggregated => assert!(!users.is_empty() && !users.contains(&Fate::Retry)),
            Fate::Retry => assert!(users.iter().all(|u| *u == Fate::Retry)),
            _ => assert!(users.is_empty()),
        }
    }
    // Every failed record is reported under its own Kinesis sequence number.
    let retried: Vec<&String> = records
        .iter()
        .zip(&report.fates)
        .filter(|(_, f)| **f == Fate::Retry)
        .map(|(r, _)| &r.sequence_number)
        .collect();
    assert_eq!(report.failed_sequences.iter().collect::<Vec<_>>(), retried);
}

#[tokio::test]
async fn an_aggregate_from_aws_kinesis_agg_goes_through_the_batch_like_plain_records() {
    let p = flaky();
    let agg = record(2, fixture("batch.bin"));
    let batch = vec![record(1, event(1)), agg.clone(), record(3, event(3))];
    let report = p.process(&batch, Deadline::none()).await;
    check_accounting(&report, &batch);
    assert_eq!(
        report.fates,
        vec![Fate::Delivered, Fate::Deaggregated, Fate::Delivered]
    );
    assert_eq!(
        report.user_fates[1],
        vec![
            Fate::Delivered,
            Fate::Delivered,
            Fate::Duplicate(DuplicateKind::InBatch),
            Fate::Quarantined,
            Fate::Delivered,
            Fate::Quarantined,
            Fate::Delivered,
        ]
    );
    let s = &report.stats;
    assert_eq!(
        (s.received, s.delivered, s.duplicates, s.quarantined),
        (9, 6, 1, 2)
    );
    assert_eq!((s.kpl_aggregates, s.kpl_user_records), (1, 7));
    assert_eq!(s.unknown_location, 1);
    assert_eq!(s.quarantine_reasons.get("invalid_json"), Some(&1));
    assert_eq!(s.quarantine_reasons.get("timestamp_too_old"), Some(&1));

    let lines = p.sink.port.delivered();
    let ids = delivered_ids(&lines);
    for id in [1, 3, 501, 502, 503, 505] {
        assert_eq!(ids.get(&id), Some(&1), "event {id}: {ids:?}");
    }
    for l in &lines {
        let id = l["detection_oid"].as_i64().unwrap_or(0);
        if id > 500 {
            assert_eq!(l["source_sequence"], agg.sequence_number.as_str());
        }
    }
    // Bad user records are quarantined alone, with their own bytes and position.
    let q = p.quarantine.lines();
    assert_eq!(q.len(), 2);
    let users = kpl::deaggregate(&agg.data).expect("valid");
    for l in &q {
        assert_eq!(l["sequence_number"], agg.sequence_number.as_str());
        let k = l["kpl_user_record"].as_u64().expect("position") as usize;
        assert!(k == 3 || k == 5, "{l}");
        let raw = b64(l["data_base64"].as_str().unwrap_or_default());
        assert_eq!(raw, users[k].data);
    }
}

#[tokio::test]
async fn corrupt_aggregates_are_quarantined_whole() {
    let p = flaky();
    let good = fixture("events-100.bin");
    let mut md5_bad = good.clone();
    md5_bad[100] ^= 1;
    let proto = proto_of(&good);
    let truncated = wrap(&proto[..proto.len() - 3]);
    let mut garbage = KPL_MAGIC.to_vec();
    garbage.extend_from_slice(&[0x01, 0x02, 0x03]);
    let batch = vec![
        record(1, event(1)),
        record(2, md5_bad.clone()),
        record(3, event(3)),
        record(4, truncated.clone()),
        record(5, garbage.clone()),
        record(6, event(6)),
    ];
    let report = p.process(&batch, Deadline::none()).await;
    check_accounting(&report, &batch);
    assert_eq!(
        report.fates,
        vec![
            Fate::Delivered,
            Fate::Quarantined,
            Fate::Delivered,
            Fate::Quarantined,
            Fate::Quarantined,
            Fate::Delivered
        ]
    );
    assert!(report.user_fates.iter().all(Vec::is_empty));
    assert!(report.failed_sequences.is_empty());
    let s = &report.stats;
    assert_eq!(s.quarantine_reasons.get(CODE_CORRUPT), Some(&3));
    assert_eq!((s.kpl_aggregates, s.kpl_user_records), (3, 0));
    let q = p.quarantine.lines();
    assert_eq!(q.len(), 3);
    let by_seq: HashMap<String, &serde_json::Value> = q
        .iter()
        .map(|l| {
            (
                l["sequence_number"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                l,
            )
        })
        .collect();
    for (n, data, says) in [
        (2, &md5_bad, "MD5"),
        (4, &truncated, "truncated"),
        (5, &garbage, "shorter than the magic"),
    ] {
        let l = by_seq[&seq(n)];
        assert_eq!(l["reason"], CODE_CORRUPT);
        assert!(l.get("kpl_user_record").is_none(), "{l}");
        let msg = l["message"].as_str().unwrap_or_default();
        assert!(msg.contains("KPL") && msg.contains(says), "{msg}");
        assert_eq!(&b64(l["data_base64"].as_str().unwrap_or_default()), data);
    }
}

#[tokio::test]
async fn a_failed_claim_inside_an_aggregate_reports_the_aggregates_sequence_number() {
    let p = flaky();
    let batch = vec![
        record(1, event(1)),
        record(2, aggregate_of(10..=15)),
        record(3, event(30)),
    ];
    p.store.fail_claims.lock().expect("lock").insert(13);
    let report = p.process(&batch, Deadline::none()).await;
    check_accounting(&report, &batch);
    assert_eq!(
        report.fates,
        vec![Fate::Delivered, Fate::Retry, Fate::Retry]
    );
    assert_eq!(report.failed_sequences.first(), Some(&seq(2)));
    assert_eq!(report.user_fates[1], vec![Fate::Retry; 6]);
    assert_eq!(report.stats.failed, 7);
    assert_eq!(report.stats.delivered, 1);
    // Nothing of the aggregate went out, and its claims were released.
    assert_eq!(delivered_ids(&p.sink.port.delivered()).len(), 1);
    assert!(
        p.store
            .claims
            .lock()
            .expect("lock")
            .keys()
            .all(|id| *id == 1),
        "claims of the aggregate released"
    );

    // Lambda retries from the aggregate.
    p.store.fail_claims.lock().expect("lock").clear();
    let retry = p.process(&batch[1..], Deadline::none()).await;
    check_accounting(&retry, &batch[1..]);
    assert_eq!(retry.fates, vec![Fate::Deaggregated, Fate::Delivered]);
    assert_eq!(retry.user_fates[0], vec![Fate::Delivered; 6]);
    let ids = delivered_ids(&p.sink.port.delivered());
    let want: BTreeSet<i64> = [1, 10, 11, 12, 13, 14, 15, 30].into();
    assert_eq!(ids.keys().copied().collect::<BTreeSet<_>>(), want);
    assert!(ids.values().all(|n| *n == 1), "{ids:?}");
}

#[tokio::test]
async fn a_firehose_rejection_inside_an_aggregate_retries_it_without_doubles() {
    let p = flaky();
    let batch = vec![
        record(1, event(1)),
        record(2, aggregate_of(10..=15)),
        record(3, event(30)),
    ];
    // Firehose takes every event but 13: 10, 11, 12, 14, 15 and 30 are out.
    p.sink.port.reject.lock().expect("lock").insert(13);
    let report = p.process(&batch, Deadline::none()).await;
    check_accounting(&report, &batch);
    assert_eq!(
        report.fates,
        vec![Fate::Delivered, Fate::Retry, Fate::Retry]
    );
    assert_eq!(report.failed_sequences, vec![seq(2), seq(3)]);
    assert_eq!(report.stats.marks_failed, 0);

    p.sink.port.reject.lock().expect("lock").clear();
    let retry = p.process(&batch[1..], Deadline::none()).await;
    check_accounting(&retry, &batch[1..]);
    assert!(retry.failed_sequences.is_empty());
    let replayed = Fate::Duplicate(DuplicateKind::Replayed);
    assert_eq!(
        retry.user_fates[0],
        vec![
            replayed,
            replayed,
            replayed,
            Fate::Delivered,
            replayed,
            replayed
        ]
    );
    assert_eq!(retry.fates[1], replayed);
    // Each user record delivered exactly once over both invocations.
    let ids = delivered_ids(&p.sink.port.delivered());
    let want: BTreeSet<i64> = [1, 10, 11, 12, 13, 14, 15, 30].into();
    assert_eq!(ids.keys().copied().collect::<BTreeSet<_>>(), want);
    assert!(ids.values().all(|n| *n == 1), "{ids:?}");

    // A lost response: Lambda runs the same batch again; the checkpoint covers it.
    let again = p.process(&batch[1..], Deadline::none()).await;
    check_accounting(&again, &batch[1..]);
    assert_eq!(again.user_fates[0], vec![replayed; 6]);
    assert_eq!(
        delivered_ids(&p.sink.port.delivered())
            .values()
            .sum::<usize>(),
        8
    );
}

#[tokio::test]
async fn an_exhausted_deadline_retries_whole_aggregates() {
    let p = flaky();
    let batch = vec![record(1, aggregate_of(1..=3)), record(2, event(4))];
    let report = p.process(&batch, Deadline::at(NOW_MS + 1_000, 2_000)).await;
    check_accounting(&report, &batch);
    assert_eq!(report.failed_sequences, vec![seq(1), seq(2)]);
    assert_eq!(report.stats.failed, 4);
    assert!(p.sink.port.delivered().is_empty());
}

// ------------------------------------------ exactly once, under faults, with KPL

type Fake = Pipeline<MemoryStore, PackedSink<MemoryFirehose>, MemoryQuarantine, ManualClock>;

fn faulty(seed: u64, rate: f64) -> Fake {
    let store = Faults::seeded(seed);
    store.set("claim", rate, rate / 2.0);
    store.set("get_checkpoint", rate, 0.0);
    store.set("release", rate, rate / 2.0);
    store.set("put_checkpoint", 0.0, rate / 2.0);
    let sink = Faults::seeded(seed ^ 1);
    sink.set("put_record_batch", rate, 0.0);
    let quarantine = Faults::seeded(seed ^ 2);
    quarantine.set("put_object", rate, 0.0);
    let p = Pipeline::new(
        MemoryStore::new(store),
        PackedSink::new(
            MemoryFirehose::new(sink),
            PackConfig::new(1 + (seed % 4) as usize * 3),
        ),
        MemoryQuarantine::new(quarantine),
        ManualClock::at(NOW_MS),
        DatasetB::embedded().expect("dataset B"),
        PipelineConfig {
            claim_concurrency: 8,
            retry: retry_policy(),
            ..PipelineConfig::default()
        },
    );
    p.sink.port.set_entry_failure_rate(rate / 2.0);
    p
}

/// One shard's records: events (with re-sends) and bad payloads, some grouped
/// into KPL aggregates, some corrupt aggregates. Returns the records, the unique
/// event ids, and the bad user records as (sequence, position in aggregate).
#[allow(clippy::type_complexity)]
fn kpl_scenario(
    seed: u64,
    events: i64,
    dup_rate: f64,
) -> (
    Vec<InputRecord>,
    BTreeSet<i64>,
    BTreeSet<(String, Option<u64>)>,
) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut payloads: Vec<Vec<u8>> = Vec::new();
    for id in 1..=events {
        payloads.push(event(id));
        if rng.f64() < dup_rate {
            let at = rng.usize(..=payloads.len());
            payloads.insert(at, event(id));
        }
        if rng.f64() < 0.08 {
            payloads.push(b"{not json".to_vec());
        }
    }
    let mut records = Vec::new();
    let mut bad = BTreeSet::new();
    let mut n = 0u64;
    let mut rest = payloads.as_slice();
    while !rest.is_empty() {
        n += 1;
        let take = if rng.bool() {
            1
        } else {
            rng.usize(1..=6).min(rest.len())
        };
        let (group, tail) = rest.split_at(take);
        rest = tail;
        let is_bad = |d: &[u8]| d.starts_with(b"{not");
        if take == 1 && rng.f64() < 0.5 {
            if is_bad(&group[0]) {
                bad.insert((seq(n), None));
            }
            records.push(record(n, group[0].clone()));
        } else {
            for (k, d) in group.iter().enumerate() {
                if is_bad(d) {
                    bad.insert((seq(n), Some(k as u64)));
                }
            }
            let recs: Vec<Rec> = group
                .iter()
                .map(|d| Rec {
                    pk: "pk".into(),
                    ehk: None,
                    data: d.clone(),
                })
                .collect();
            records.push(record(n, encode(&recs, rng.bool(), rng.bool())));
        }
        if rng.f64() < 0.05 {
            n += 1;
            let mut corrupt = KPL_MAGIC.to_vec();
            corrupt.extend((0..rng.usize(0..40)).map(|_| rng.u8(..)));
            bad.insert((seq(n), None));
            records.push(record(n, corrupt));
        }
    }
    (records, (1..=events).collect(), bad)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_user_record_is_settled_exactly_once_under_faults(
        seed in any::<u64>(),
        events in 1i64..60,
        batch in 1usize..8,
        dup_rate in 0.0f64..0.5,
        fault_rate in 0.0f64..0.35,
        lost_rate in 0.0f64..0.3,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let (records, unique, bad) = kpl_scenario(seed, events, dup_rate);
            let p = faulty(seed, fault_rate);
            let mut rng = fastrand::Rng::with_seed(seed ^ 7);
            let mut pos = 0;
            let mut invocations = 0;
            while pos < records.len() {
                invocations += 1;
                prop_assert!(invocations < 20_000, "did not converge");
                let end = (pos + batch).min(records.len());
                let slice = &records[pos..end];
                let report = p.process(slice, Deadline::none()).await;
                check_accounting(&report, slice);
                let clean = report.stats.checkpoint_failed == 0 && report.stats.marks_failed == 0;
                if clean && rng.f64() < lost_rate {
                    continue;
                }
                match slice.iter().position(|r| report.failed_sequences.contains(&r.sequence_number)) {
                    None => pos = end,
                    Some(i) => pos += i,
                }
            }
            let counts = delivered_ids(&p.sink.port.delivered());
            prop_assert_eq!(counts.keys().copied().collect::<BTreeSet<_>>(), unique);
            for (id, n) in &counts {
                prop_assert_eq!(*n, 1, "event {} delivered {} times", id, n);
            }
            let q: Vec<(String, Option<u64>)> = p
                .quarantine
                .lines()
                .iter()
                .map(|l| (l["sequence_number"].as_str().unwrap_or_default().to_string(),
                          l["kpl_user_record"].as_u64()))
                .collect();
            prop_assert_eq!(q.len(), bad.len(), "each bad user record quarantined once");
            prop_assert_eq!(q.into_iter().collect::<BTreeSet<_>>(), bad);
            Ok(())
        })?;
    }
}
