//! Property and scenario tests of the batch logic over in-memory ports.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use proptest::prelude::*;
use sightline_core::delivery::PackedSink;
use sightline_core::fakes::{
    ClaimItem, Faults, ManualClock, MemoryFirehose, MemoryQuarantine, MemoryStore,
};
use sightline_core::packing::PackConfig;
use sightline_core::retry::RetryPolicy;
use sightline_core::{
    BatchReport, DatasetB, Deadline, DuplicateKind, Fate, InputRecord, Pipeline, PipelineConfig,
};

const NOW_MS: i64 = 1_763_900_000_000;

type Fake = Pipeline<MemoryStore, PackedSink<MemoryFirehose>, MemoryQuarantine, ManualClock>;

fn pipeline(store: Faults, sink: Faults, quarantine: Faults, pack: usize) -> Fake {
    Pipeline {
        store: MemoryStore::new(store),
        sink: PackedSink::new(MemoryFirehose::new(sink), PackConfig::new(pack)),
        quarantine: MemoryQuarantine::new(quarantine),
        clock: ManualClock::at(NOW_MS),
        locations: DatasetB::embedded().expect("dataset B"),
        config: PipelineConfig {
            claim_concurrency: 8,
            retry: RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::ZERO,
                max_delay: Duration::ZERO,
            },
            ..PipelineConfig::default()
        },
    }
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

async fn run(p: &Fake, records: &[InputRecord]) -> BatchReport {
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

/// Drives shards like the event source mapping: batches of `batch`, restart from
/// the lowest failed sequence number, and sometimes a lost response (the same
/// batch again).
async fn drive(
    p: &Fake,
    shards: &[Vec<InputRecord>],
    batch: usize,
    seed: u64,
    lost_rate: f64,
) -> usize {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut pos = vec![0usize; shards.len()];
    let mut invocations = 0;
    while let Some(s) = {
        let open: Vec<usize> = (0..shards.len())
            .filter(|s| pos[*s] < shards[*s].len())
            .collect();
        (!open.is_empty()).then(|| open[rng.usize(..open.len())])
    } {
        invocations += 1;
        assert!(invocations < 20_000, "did not converge");
        let end = (pos[s] + batch).min(shards[s].len());
        let slice = &shards[s][pos[s]..end];
        let report = run(p, slice).await;
        // A lost response makes Lambda re-invoke the same records. Only when the
        // batch's bookkeeping fully succeeded: otherwise the README documents
        // the double as unavoidable.
        let clean_settle = report.stats.checkpoint_failed == 0 && report.stats.marks_failed == 0;
        if clean_settle && rng.f64() < lost_rate {
            continue;
        }
        match slice
            .iter()
            .position(|r| report.failed_sequences.contains(&r.sequence_number))
        {
            None => pos[s] = end,
            Some(i) => pos[s] += i,
        }
    }
    invocations
}

struct Scenario {
    shards: Vec<Vec<InputRecord>>,
    unique: BTreeSet<i64>,
    bad: BTreeSet<(String, String)>,
}

fn scenario(seed: u64, events: i64, shards: usize, dup_rate: f64, bad: usize) -> Scenario {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut payloads: Vec<Vec<(Vec<u8>, bool)>> = vec![Vec::new(); shards];
    let mut resends = Vec::new();
    for id in 1..=events {
        let s = rng.usize(..shards);
        payloads[s].push((event(id), true));
        if rng.f64() < dup_rate {
            if rng.bool() {
                payloads[s].push((event(id), true)); // right away: same batch, likely
            } else {
                resends.push(id); // much later, maybe another shard
            }
        }
    }
    for id in resends {
        payloads[rng.usize(..shards)].push((event(id), true));
    }
    let garbage: [&[u8]; 4] = [b"\xff\x00", b"{", b"[1]", br#"{"detection_oid":"1"}"#];
    for i in 0..bad {
        let s = rng.usize(..shards);
        let at = rng.usize(..=payloads[s].len());
        payloads[s].insert(at, (garbage[i % garbage.len()].to_vec(), false));
    }
    let mut seq = 0u64;
    let mut bad_keys = BTreeSet::new();
    let shards = payloads
        .into_iter()
        .enumerate()
        .map(|(s, list)| {
            list.into_iter()
                .map(|(data, good)| {
                    seq += 1;
                    let r = record(s, seq, data);
                    if !good {
                        bad_keys.insert((r.shard_id.clone(), r.sequence_number.clone()));
                    }
                    r
                })
                .collect()
        })
        .collect();
    Scenario {
        shards,
        unique: (1..=events).collect(),
        bad: bad_keys,
    }
}

fn faulty(seed: u64, rate: f64) -> Fake {
    let store = Faults::seeded(seed);
    store.set("claim", rate, rate / 2.0); // a lost answer: the retry finds its own claim
    store.set("get_checkpoint", rate, 0.0);
    store.set("release", rate, rate / 2.0);
    store.set("put_checkpoint", 0.0, rate / 2.0);
    let sink = Faults::seeded(seed ^ 1);
    sink.set("put_record_batch", rate, 0.0);
    let quarantine = Faults::seeded(seed ^ 2);
    quarantine.set("put_object", rate, 0.0);
    let p = pipeline(store, sink, quarantine, 1 + (seed % 4) as usize * 3);
    p.sink.port.set_entry_failure_rate(rate / 2.0);
    p
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_unique_valid_event_is_delivered_exactly_once_under_faults(
        seed in any::<u64>(),
        events in 1i64..80,
        shards in 1usize..4,
        batch in 1usize..12,
        dup_rate in 0.0f64..0.6,
        bad in 0usize..6,
        fault_rate in 0.0f64..0.35,
        lost_rate in 0.0f64..0.3,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let sc = scenario(seed, events, shards, dup_rate, bad);
            let p = faulty(seed, fault_rate);
            drive(&p, &sc.shards, batch, seed, lost_rate).await;
            let counts = delivered_counts(&p);
            let delivered: BTreeSet<i64> = counts.keys().copied().collect();
            prop_assert_eq!(&delivered, &sc.unique);
            for (id, n) in &counts {
                prop_assert_eq!(*n, 1, "event {} delivered {} times", id, n);
            }
            let quarantined: Vec<(String, String)> = p
                .quarantine
                .lines()
                .iter()
                .map(|l| (l["shard_id"].as_str().unwrap_or_default().to_string(),
                          l["sequence_number"].as_str().unwrap_or_default().to_string()))
                .collect();
            prop_assert_eq!(quarantined.len(), sc.bad.len(), "each bad record quarantined once");
            prop_assert_eq!(quarantined.into_iter().collect::<BTreeSet<_>>(), sc.bad.clone());
            Ok(())
        })?;
    }
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
async fn nothing_after_a_partial_firehose_failure_is_delivered_twice() {
    // One event per Firehose record; the second record is rejected once.
    let p = pipeline(Faults::none(), Faults::seeded(7), Faults::none(), 1);
    let batch: Vec<InputRecord> = (1..=6).map(|i| record(0, i, event(i as i64))).collect();
    p.sink.port.set_entry_failure_rate(1.0);
    let first = run(&p, &batch).await;
    assert!(
        first.fates.iter().all(|f| *f == Fate::Retry),
        "{:?}",
        first.fates
    );
    p.sink.port.set_entry_failure_rate(0.0);
    drive(&p, std::slice::from_ref(&batch), 6, 1, 0.0).await;
    let counts = delivered_counts(&p);
    assert_eq!(counts.len(), 6);
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
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
