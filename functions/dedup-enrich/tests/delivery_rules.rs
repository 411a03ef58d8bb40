#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! The function under Lambda's own delivery rules: a hard deadline, bisected
//! batches, whole-batch retries and long retention, each through the local
//! event source mapping, in virtual time (deterministic, no sleeping).

mod sim;

use std::collections::BTreeSet;
use std::time::Duration;

use sightline_core::Clock;
use sightline_core::batch::SLOW_CALLS_TO_SETTLE;
use sightline_core::fakes::Faults;
use sightline_core::retry::DEFAULT_ATTEMPT_TIMEOUT_MS;
use sightline_local::esm::{EsmEvent, Outcome};
use sim::{NOW_MS, World, esm, fresh, record};

const DB_LATENCY: Duration = Duration::from_millis(300);

fn print(report: &sightline_local::esm::EsmReport) {
    for line in report.lines() {
        println!("{line}");
    }
}

/// Sequence 1. Every DynamoDB call answers 300 ms late, Firehose rejects part of
/// its first call (and every re-send of that invocation), and the invocation
/// has 3 s. The function must answer before the deadline every time (no kill),
/// so nothing it did goes unreported: the events Firehose accepted after the
/// first rejected one are marked before it answers.
#[tokio::test(start_paused = true)]
async fn the_deadline_is_a_hard_bound_with_a_slow_store_and_a_partial_firehose_failure() {
    let mut world = World::new();
    world.store.latency.set(DB_LATENCY);
    world.firehose.latency.set(Duration::from_millis(200));
    world.firehose.fail_next_call(0.5);
    for _ in 0..5 {
        world.firehose.fail_next_call(1.0);
    }
    world.pack = 1; // one event per Firehose record: the partial failure splits events
    let (records, unique) = fresh(200);
    let report = world
        .run(esm(200, Duration::from_secs(3)), vec![records])
        .await;
    print(&report);
    assert_eq!(
        report.kills(),
        0,
        "the function answered before every deadline"
    );
    assert!(report.gave_up().is_empty());
    assert!(
        report.partial_failures() > 0,
        "the deadline and the rejected entries left work for later invocations"
    );
    let marks: u64 = world
        .invocations
        .borrow()
        .iter()
        .map(|i| i.report.stats.marks_written)
        .sum();
    assert!(
        marks > 0,
        "events Firehose accepted after a rejected one were marked"
    );
    world.assert_exactly_once(&unique);
    world.assert_no_violations();
}

/// Issue 18: a DynamoDB brownout (every call 300 ms late) and a 3 s timeout. An
/// invocation that claimed records settles the prefix it can, so the shard
/// drains instead of stalling.
#[tokio::test(start_paused = true)]
async fn a_slow_store_still_drains_the_shard_and_every_claiming_invocation_settles_some() {
    let world = World::new();
    world.store.latency.set(DB_LATENCY);
    let (records, unique) = fresh(200);
    let report = world
        .run(esm(1_000, Duration::from_secs(3)), vec![records])
        .await;
    print(&report);
    let invocations = world.invocations.borrow();
    println!(
        "slow store: {} invocations to drain 200 events; settled per invocation {:?}",
        invocations.len(),
        invocations
            .iter()
            .map(sim::Invocation::settled)
            .collect::<Vec<_>>()
    );
    for (n, i) in invocations.iter().enumerate() {
        assert!(
            i.claims == 0 || i.settled() > 0,
            "invocation {} made {} claims and settled nothing",
            n + 1,
            i.claims
        );
    }
    assert!(
        invocations.len() < 10,
        "drained in {} invocations",
        invocations.len()
    );
    assert_eq!(report.kills(), 0);
    assert!(report.gave_up().is_empty());
    world.assert_exactly_once(&unique);
    world.assert_no_violations();
}

/// A Firehose put that answers later than the time left minus what the quarantine
/// put and the checkpoint are expected to take, but before the deadline's
/// reserve. Firehose takes the events halfway through the call, so cutting it
/// there would send them again on the retry; it finishes instead, and the
/// checkpoint still fits.
#[tokio::test(start_paused = true)]
async fn a_slow_firehose_put_is_not_cut_for_the_time_kept_after_it() {
    let world = World::new();
    world.store.latency.set(DB_LATENCY);
    world.slow_firehose_call(1, Duration::from_millis(1_100));
    let (records, unique) = fresh(20);
    let report = world
        .run(esm(20, Duration::from_secs(3)), vec![records])
        .await;
    print(&report);
    let invocations = world.invocations.borrow();
    let first = &invocations[0].report.stats;
    assert_eq!(first.timed_out, 0, "the put was not cut: {first:?}");
    assert_eq!(first.delivered, 20, "{first:?}");
    assert_eq!(report.kills(), 0);
    world.assert_exactly_once(&unique);
    world.assert_no_violations();
}

/// One Firehose put takes 1.8 s of a 3 s invocation. Measured with headroom, the
/// next batches' delivery then never fits before the deadline, so no claim starts,
/// no put is made and the slow sample is never replaced. It stops counting once
/// it is `MAX_SAMPLE_AGE_MS` old, and the shard drains. (Found in the moto
/// slow-store test, stuck for 20 minutes on a loaded machine.)
#[tokio::test(start_paused = true)]
async fn a_slow_sample_of_a_port_no_longer_called_ages_out_and_the_shard_drains() {
    let world = World::new();
    world.slow_firehose_call(1, Duration::from_millis(1_800));
    let (records, unique) = fresh(60);
    let mut mapping = esm(20, Duration::from_secs(3));
    mapping.maximum_retry_attempts = None;
    let report = world.run(mapping, vec![records]).await;
    let invocations = world.invocations.borrow();
    let stalled = invocations.iter().filter(|i| i.settled() == 0).count();
    println!(
        "{} invocations, {stalled} of them settled nothing",
        invocations.len()
    );
    assert!(stalled > 0, "the slow sample did hold the claims back");
    assert!(
        invocations.len() < 500,
        "drained in {} invocations",
        invocations.len()
    );
    assert!(report.gave_up().is_empty());
    assert_eq!(report.kills(), 0);
    world.assert_exactly_once(&unique);
    world.assert_no_violations();
}

/// A brownout: every DynamoDB, Firehose and S3 call answers just inside the
/// attempt timeout, and each batch holds a bad record (so the quarantine put is
/// among the steps kept in hand). With the shortest timeout the function
/// accepts at init, `SLOW_CALLS_TO_SETTLE` attempt timeouts after the reserve,
/// every invocation settles its batch. One second less, and once every port's
/// cost is measured no claim starts: invocations settle nothing, each spending
/// one of the mapping's retries (until the slow samples age out).
#[tokio::test(start_paused = true)]
async fn in_a_brownout_the_shortest_accepted_timeout_settles_something_every_time() {
    let call_ms = DEFAULT_ATTEMPT_TIMEOUT_MS;
    let reserve_ms = sightline_core::defaults::DEADLINE_RESERVE_MS;
    let shortest_secs = (SLOW_CALLS_TO_SETTLE * call_ms + reserve_ms + 999) / 1_000;
    assert_eq!(shortest_secs, 31, "the bound infra/schema.json states");
    for (secs, enough) in [(shortest_secs, true), (shortest_secs - 1, false)] {
        let world = World::new();
        let slow = Duration::from_millis(u64::try_from(call_ms - 20).expect("positive"));
        world.store.latency.set(slow);
        world.firehose.latency.set(slow);
        world.quarantine.latency.set(slow);
        let mut records = Vec::new();
        let mut unique = BTreeSet::new();
        let mut seq = 0;
        for batch in 0..3_i64 {
            for k in 1..=20 {
                seq += 1;
                records.push(record(0, seq, sim::event(batch * 20 + k)));
                unique.insert(batch * 20 + k);
            }
            seq += 1;
            records.push(record(0, seq, b"{not json".to_vec()));
        }
        let mut mapping = esm(21, Duration::from_secs(secs.unsigned_abs()));
        mapping.maximum_retry_attempts = Some(2);
        let report = world.run(mapping, vec![records]).await;
        let invocations = world.invocations.borrow();
        let settled: Vec<u64> = invocations.iter().map(sim::Invocation::settled).collect();
        println!("{secs} s: settled per invocation {settled:?}");
        assert_eq!(report.kills(), 0, "{secs} s");
        world.assert_no_violations();
        if enough {
            assert!(settled.iter().all(|n| *n == 21), "{secs} s: {settled:?}");
            assert!(report.gave_up().is_empty());
            world.assert_exactly_once(&unique);
        } else {
            assert!(settled.contains(&0), "{secs} s: {settled:?}");
        }
    }
}

/// Sequence 2. r1..r10 claims everything and the process dies before Firehose
/// answers; the mapping bisects. r1..r5 delivers and checkpoints; r6..r10
/// delivers, checkpoints, then fails as a whole and is bisected again: r9..r10
/// finds no checkpoint of its own while its claims still name r1's batch.
#[tokio::test(start_paused = true)]
async fn a_batch_bisected_twice_delivers_each_event_once() {
    let world = World::new();
    world.crash_on_firehose_call(1);
    world.fail_after.borrow_mut().insert(3);
    let (records, unique) = fresh(10);
    let report = world
        .run(esm(10, Duration::from_secs(60)), vec![records])
        .await;
    print(&report);
    let splits: Vec<(usize, usize)> = report
        .events
        .iter()
        .filter_map(|e| match e {
            EsmEvent::Split { halves, .. } => Some(*halves),
            _ => None,
        })
        .collect();
    assert_eq!(splits, vec![(5, 5), (3, 2)], "bisected twice");
    let outcomes: Vec<Outcome> = report
        .events
        .iter()
        .filter_map(|e| match e {
            EsmEvent::Invoked { outcome, .. } => Some(outcome.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(outcomes[0], Outcome::Panicked);
    assert!(matches!(outcomes[2], Outcome::Error(_)));
    assert_eq!(report.environments(), 2, "the crashed process was replaced");
    // r9..r10 met the marks r6..r10's delivery left on r1's claims.
    let last = world.invocations.borrow().last().cloned().expect("invoked");
    assert_eq!(last.len, 2);
    assert_eq!(last.report.stats.duplicates_replayed, 2);
    world.assert_exactly_once(&unique);
    world.assert_no_violations();
}

/// Sequence 3. The batch is delivered and checkpointed, then fails as a whole;
/// the shard is retried two hours later (Firehose was down, say). With a
/// window that covers the mapping's record age, the retry meets its own
/// checkpoint and claims.
#[tokio::test(start_paused = true)]
async fn a_retry_hours_later_meets_its_own_checkpoint_when_the_window_covers_the_record_age() {
    let mut world = World::new();
    world.config.dedup_window_secs = 6 * 3_600; // = MaximumRecordAgeInSeconds
    world.fail_after.borrow_mut().insert(1);
    let (records, unique) = fresh(20);
    let mut mapping = esm(20, Duration::from_secs(60));
    mapping.retry_delay = Duration::from_secs(2 * 3_600);
    let report = world.run(mapping, vec![records]).await;
    print(&report);
    assert!(world.clock.now_ms() >= NOW_MS + 2 * 3_600_000);
    world.assert_exactly_once(&unique);
    world.assert_no_violations();
}

/// Why the function refuses a window shorter than the time Kinesis can
/// redeliver: the same sequence with a one-hour window (set past the check)
/// delivers every event again, because claims and checkpoint expired.
#[tokio::test(start_paused = true)]
async fn a_window_shorter_than_the_redelivery_horizon_doubles_a_late_retry_and_is_refused() {
    let mut world = World::new();
    world.config.dedup_window_secs = 3_600;
    world.fail_after.borrow_mut().insert(1);
    let (records, _) = fresh(20);
    let mut mapping = esm(20, Duration::from_secs(60));
    mapping.retry_delay = Duration::from_secs(2 * 3_600);
    world.run(mapping, vec![records]).await;
    let doubled = world.delivered().values().filter(|n| **n > 1).count();
    assert_eq!(
        doubled, 20,
        "every event came again after its claim expired"
    );
    let refused = dedup_enrich::Config::from_lookup(|k| match k {
        "DEDUP_TABLE" | "DELIVERY_STREAM" | "QUARANTINE_BUCKET" => Some("x".into()),
        "DEDUP_WINDOW_SECS" => Some("3600".into()),
        "MAX_RECORD_AGE_SECS" => Some("21600".into()),
        _ => None,
    });
    assert!(
        refused.is_err(),
        "the function does not start with that window"
    );
}

/// Sequence 4. Random store, Firehose and S3 faults, lost answers and whole
/// failures after the work: no checkpoint ever covers a record the same
/// invocation reported for retry (checked after every invocation), and every
/// event is delivered once.
#[tokio::test(start_paused = true)]
async fn the_checkpoint_never_covers_a_record_reported_for_retry() {
    for seed in 0..12u64 {
        let store = Faults::seeded(seed);
        store.set("claim", 0.1, 0.05);
        store.set("put_checkpoint", 0.0, 0.05);
        store.set("get_checkpoint", 0.05, 0.0);
        let mut world = World::with_faults(store, Faults::seeded(seed ^ 7), Faults::none());
        world.firehose.set_entry_failure_rate(0.1);
        world.pack = 1 + (seed % 3) as usize;
        world
            .fail_after
            .borrow_mut()
            .extend([2, 5, 9].map(|n| n + seed as usize % 3));
        let (mut records, unique) = fresh(60);
        records.insert(17, record(0, 10_000, b"{not json".to_vec()));
        for (i, r) in records.iter_mut().enumerate() {
            r.sequence_number = format!("{}", 49_000_000_000_000_000u64 + i as u64);
        }
        let report = world
            .run(esm(16, Duration::from_secs(60)), vec![records])
            .await;
        assert!(
            report.gave_up().is_empty(),
            "seed {seed}: {:?}",
            report.lines()
        );
        world.assert_exactly_once(&unique);
        world.assert_no_violations();
        assert_eq!(
            world.quarantine.lines().len(),
            1,
            "seed {seed}: quarantined once"
        );
    }
}

/// Sequence 5. Events near the size limit: each Firehose call carries at most
/// 3 MiB of raw bytes, and everything arrives once.
#[tokio::test(start_paused = true)]
async fn firehose_calls_stay_within_three_mib_of_raw_bytes() {
    let world = World::new();
    let name = "x".repeat(4_900);
    let records: Vec<_> = (1..=900)
        .map(|i| {
            let body = format!(
                r#"{{"detection_oid":{i},"video_camera_oid":1,"geographical_location_oid":1,"item_name":"{name}","timestamp_detected":{}}}"#,
                NOW_MS - 1_000
            );
            record(0, i as u64, body.into_bytes())
        })
        .collect();
    let unique: BTreeSet<i64> = (1..=900).collect();
    world
        .run(esm(1_000, Duration::from_secs(60)), vec![records])
        .await;
    let calls = world.firehose.call_bytes.lock().expect("lock").clone();
    println!("Firehose call sizes: {calls:?}");
    let budget = sightline_core::packing::FIREHOSE_CALL_RAW_BYTES_BUDGET;
    assert!(calls.iter().all(|b| *b <= budget), "{calls:?}");
    assert!(
        calls.iter().any(|b| *b > budget - 1_100_000),
        "a call came close to the budget: {calls:?}"
    );
    world.assert_exactly_once(&unique);
}

/// The mapping's own rules: a poison record alone is retried, bisected down to
/// itself, and given up after the retry quota with an on-failure record; the
/// rest of the shard moves on.
#[tokio::test(start_paused = true)]
async fn a_record_that_always_fails_the_invocation_goes_to_the_on_failure_destination() {
    let world = World::new();
    // Every Firehose call from the 1st on crashes the process for the batch
    // holding event 7, and only it.
    let (records, _) = fresh(8);
    let poison = records[6].sequence_number.clone();
    let mut mapping = esm(8, Duration::from_secs(60));
    mapping.maximum_retry_attempts = Some(2);
    // Through the real function: a record whose processing always errors is
    // modelled by failing every invocation that holds it.
    let env = sim::Env(&world);
    let failing = FailIfHolds {
        inner: env,
        poison: poison.clone(),
    };
    let report = sightline_local::esm::Esm::new(mapping, &world.clock)
        .run(
            vec![sightline_local::esm::ShardInput::records(
                "shardId-000000000000",
                records,
            )],
            &failing,
        )
        .await;
    print(&report);
    let gave_up = report.gave_up();
    assert_eq!(gave_up.len(), 1);
    let info = &gave_up[0].kinesis_batch_info;
    assert_eq!(
        (info.start_sequence_number.as_str(), info.batch_size),
        (poison.as_str(), 1)
    );
    let delivered: BTreeSet<i64> = world.delivered().keys().copied().collect();
    assert_eq!(delivered, [1, 2, 3, 4, 5, 6, 8].into_iter().collect());
}

/// Wraps the simulated function so that any invocation holding `poison` fails
/// as a whole before doing anything.
struct FailIfHolds<'w> {
    inner: sim::Env<'w>,
    poison: String,
}

struct FailIfHoldsFn<'w> {
    inner: sim::SimFunction<'w>,
    poison: String,
}

impl<'w> sightline_local::esm::Runtime for FailIfHolds<'w> {
    type Function = FailIfHoldsFn<'w>;

    fn start(&self) -> Result<FailIfHoldsFn<'w>, sightline_local::esm::FunctionError> {
        Ok(FailIfHoldsFn {
            inner: self.inner.start()?,
            poison: self.poison.clone(),
        })
    }
}

impl sightline_local::esm::Function for FailIfHoldsFn<'_> {
    async fn invoke(
        &self,
        batch: &[sightline_core::InputRecord],
        deadline_ms: i64,
    ) -> Result<Vec<String>, sightline_local::esm::FunctionError> {
        if batch.iter().any(|r| r.sequence_number == self.poison) {
            return Err(sightline_local::esm::FunctionError("poison record".into()));
        }
        self.inner.invoke(batch, deadline_ms).await
    }
}
