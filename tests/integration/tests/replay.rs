#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
#![recursion_limit = "256"]
//! `sightline replay` against moto: the event source mapping gives up on a
//! range whose claims are still held; the replay releases them, puts the
//! records back, and every event lands in the lake exactly once.

use std::time::Duration;

use dedup_enrich::Config;
use sightline::replay::{ArchiveSource, Targets, replay_range};
use sightline_aws::DynamoClaimStore;
use sightline_integration_tests::fault_proxy::{Fault, FaultProxy, Rule};
use sightline_integration_tests::{
    Drain, ShardRecord, Stack, assert_exactly_once, assert_exactly_once_via, drain_shard,
    drain_with_mapping, endpoint, esm_config, traffic,
};
use sightline_local::esm::OnFailureRecord;

const SEED: u64 = 0x7e91a7;

fn stream_arn(stack: &Stack) -> String {
    format!(
        "arn:aws:kinesis:us-east-1:123456789012:stream/{}",
        stack.kinesis_stream
    )
}

/// The records of the stack's one shard.
async fn one_shard(stack: &Stack) -> Vec<ShardRecord> {
    stack.read_all().await.into_values().next().expect("shard")
}

/// Drains `records` with the lake's Firehose down (`firehose_down`, a rule on
/// `Firehose.PutRecordBatch`) and claim releases failing, two attempts a call
/// and one retry by the mapping: the batch's claims stay held, unmarked, and
/// the mapping gives up on it. Returns the drain and its on-failure record.
async fn give_up_with_claims_held(
    stack: &Stack,
    mut config: Config,
    firehose_down: Rule,
    records: &[ShardRecord],
) -> (Drain, OnFailureRecord) {
    let proxy = FaultProxy::start(&endpoint(), SEED).await;
    proxy.add(firehose_down);
    proxy.add(Rule::always(
        "DynamoDB.DeleteItem",
        Fault::DynamoInternalError,
    ));
    config.retry_max_attempts = 2;
    let app = stack
        .app_via(&config, &proxy, Duration::from_millis(800))
        .await;
    let mut mapping = esm_config(records.len());
    mapping.maximum_retry_attempts = Some(1);
    mapping.stream_arn = stream_arn(stack);
    let drain = drain_with_mapping(&app, records, mapping).await;
    for line in drain.esm.lines() {
        println!("{line}");
    }
    let gave_up = drain.esm.gave_up();
    assert_eq!(gave_up.len(), 1, "the mapping gave up on the batch");
    let message = gave_up[0].clone();
    assert!(stack.lake_lines().await.is_empty(), "nothing was delivered");
    (drain, message)
}

fn targets<'a>(stack: &'a Stack, claims: &'a DynamoClaimStore, dry_run: bool) -> Targets<'a> {
    Targets {
        kinesis: &stack.kinesis,
        claims,
        stream: None,
        dry_run,
        archive: None,
        from_archive: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_releases_the_claims_a_given_up_range_holds_and_every_event_lands_once() {
    sightline_integration_tests::require_moto!();
    let stack = Stack::create("r-release", 1).await;
    let t = traffic(40);
    stack.put(&t.payloads).await;
    let records = one_shard(&stack).await;

    // Firehose is down and claim releases fail: the batch's claims stay held,
    // unmarked, and the mapping gives up on it after its retry quota.
    let (_, message) = give_up_with_claims_held(
        &stack,
        stack.config(),
        Rule::always("Firehose.PutRecordBatch", Fault::FirehoseUnavailable),
        &records,
    )
    .await;
    let held = stack
        .clients
        .dynamodb
        .scan()
        .table_name(&stack.table)
        .send()
        .await
        .expect("scan")
        .count();
    assert!(
        held > 0,
        "claims are still held: a plain re-put would be dropped as duplicates"
    );

    // A dry run changes nothing.
    let claims = DynamoClaimStore::new(stack.clients.dynamodb.clone(), &stack.table);
    let dry = replay_range(&targets(&stack, &claims, true), &message)
        .await
        .expect("dry run");
    assert_eq!(dry.put, 0);
    assert!(dry.plan.released > 0);

    let done = replay_range(&targets(&stack, &claims, false), &message)
        .await
        .expect("replay");
    println!(
        "replay: {} records, {} events, {} released, {} delivered, {} held by others, {} unclaimed, {} bad, {} put back",
        done.plan.records,
        done.plan.events,
        done.plan.released,
        done.plan.delivered,
        done.plan.held_by_others,
        done.plan.unclaimed,
        done.plan.bad,
        done.put
    );
    assert_eq!(done.plan.released, dry.plan.released);
    assert_eq!(done.put, done.plan.to_put.len());
    assert!(done.put > 0);

    // The mapping reads the records put back (after the originals) with a
    // healthy function.
    let replayed: Vec<_> = one_shard(&stack)
        .await
        .into_iter()
        .filter(|r| {
            !records
                .iter()
                .any(|o| o.sequence_number == r.sequence_number)
        })
        .collect();
    assert_eq!(replayed.len(), done.put);
    let healthy = stack.app(&stack.config());
    drain_shard(&healthy, &replayed, 100, 20).await;
    assert_exactly_once(&stack.lake_lines().await, &t.unique);
    assert_eq!(
        stack.quarantine_lines().await.len(),
        t.bad,
        "each bad record quarantined once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_of_a_range_that_was_delivered_puts_nothing_back() {
    sightline_integration_tests::require_moto!();
    let stack = Stack::create("r-noop", 1).await;
    let t = traffic(30);
    stack.put(&t.payloads).await;
    let records = one_shard(&stack).await;
    let app = stack.app(&stack.config());
    drain_shard(&app, &records, 100, 10).await;
    assert_exactly_once(&stack.lake_lines().await, &t.unique);

    // An operator replays the range anyway (say, from a stale queue message).
    let message = OnFailureRecord::for_range(
        &records[0].shard_id,
        &records[0].sequence_number,
        &records[records.len() - 1].sequence_number,
        records.len(),
        &stream_arn(&stack),
    );
    let claims = DynamoClaimStore::new(stack.clients.dynamodb.clone(), &stack.table);
    let done = replay_range(&targets(&stack, &claims, false), &message)
        .await
        .expect("replay");
    assert_eq!(done.plan.released, 0);
    assert_eq!(done.plan.unclaimed, 0);
    // Only the bad records go back (they are quarantined again on arrival).
    assert_eq!(done.put as u64, done.plan.bad);
    assert_eq!(
        done.plan.delivered + done.plan.held_by_others + done.plan.bad,
        done.plan.events
    );
    assert_exactly_once(&stack.lake_lines().await, &t.unique);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_the_stream_no_longer_holds_is_refused() {
    sightline_integration_tests::require_moto!();
    let stack = Stack::create("r-gone", 1).await;
    let t = traffic(5);
    stack.put(&t.payloads).await;
    let records = one_shard(&stack).await;
    // A sequence number before anything the shard holds, as after the stream
    // trimmed it past its retention (moto numbers records from 1).
    let message = OnFailureRecord::for_range(
        &records[0].shard_id,
        "0",
        &records[2].sequence_number,
        3,
        &stream_arn(&stack),
    );
    let claims = DynamoClaimStore::new(stack.clients.dynamodb.clone(), &stack.table);
    let err = replay_range(&targets(&stack, &claims, false), &message)
        .await
        .expect_err("refused");
    let chain = sightline_core::batch::chain(&err).to_string();
    println!("refused: {chain}");
    assert!(chain.contains("cannot replay"), "{chain}");
    let after = one_shard(&stack).await.len();
    assert_eq!(after, records.len(), "nothing was put back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_the_stream_no_longer_holds_is_replayed_from_the_raw_archive_and_every_event_lands_once()
 {
    sightline_integration_tests::require_moto!();
    let stack = Stack::create("r-archive", 1).await;
    let archive = stack.create_archive().await;
    let t = traffic(40);
    stack.put(&t.payloads).await;
    let records = one_shard(&stack).await;

    // The lake's Firehose is down (the archive's is not) and claim releases
    // fail: the mapping gives up on the batch with its claims still held. Each
    // attempt archived the batch again.
    let (drain, message) = give_up_with_claims_held(
        &stack,
        stack.config_with_archive(&archive),
        Rule::always("Firehose.PutRecordBatch", Fault::FirehoseUnavailable)
            .when_body_contains(&stack.delivery_stream),
        &records,
    )
    .await;
    assert_eq!(drain.stats.archive_failed, 0);

    // moto wrote the archive's Firehose records to S3 as they came: plain
    // prefix plus YYYY/MM/DD/HH/, uncompressed.
    let keys = stack.object_keys(&archive.bucket).await;
    assert!(
        !keys.is_empty() && keys.iter().all(|k| k.starts_with("raw/20")),
        "{keys:?}"
    );
    let archived = stack.archive_lines(&archive).await;
    // (No KPL aggregates here: one received record is one Kinesis record.)
    assert_eq!(
        archived.len() as u64,
        drain.stats.received,
        "every record archived once per invocation that received it"
    );
    let bytes: usize = archived.iter().map(|l| l.to_string().len() + 1).sum();
    let payload: usize = records.iter().map(|r| r.data.len()).sum();
    println!(
        "archive: {} lines in {} object(s), {:.0} B per line for {:.0} B of payload per record",
        archived.len(),
        keys.len(),
        bytes as f64 / archived.len() as f64,
        payload as f64 / records.len() as f64
    );

    let claims = DynamoClaimStore::new(stack.clients.dynamodb.clone(), &stack.table);
    let source = ArchiveSource::new(
        stack.clients.s3.clone(),
        archive.location().parse().expect("s3 location"),
    );
    // Asked to, it reads the archive even while the stream holds the range.
    let forced = replay_range(
        &Targets {
            archive: Some(&source),
            from_archive: true,
            ..targets(&stack, &claims, true)
        },
        &message,
    )
    .await
    .expect("dry run from the archive");
    assert!(forced.archive_objects.is_some_and(|n| n > 0));
    let given_up = message.kinesis_batch_info.batch_size;
    assert_eq!(
        forced.plan.records as usize, given_up,
        "the range, repeats dropped"
    );

    // A stream that no longer holds the range (as after its retention): an
    // empty one, with the same shard.
    let trimmed = format!("{}-trimmed", stack.kinesis_stream);
    stack
        .kinesis
        .create_stream()
        .stream_name(&trimmed)
        .shard_count(1)
        .send()
        .await
        .expect("create stream");
    let without_archive = replay_range(
        &Targets {
            stream: Some(&trimmed),
            ..targets(&stack, &claims, false)
        },
        &message,
    )
    .await
    .expect_err("refused without an archive");
    println!(
        "refused: {}",
        sightline_core::batch::chain(&without_archive)
    );

    let done = replay_range(
        &Targets {
            stream: Some(&trimmed),
            archive: Some(&source),
            ..targets(&stack, &claims, false)
        },
        &message,
    )
    .await
    .expect("replay from the archive");
    println!(
        "replay from {:?} archive object(s): {} records, {} events, {} released, {} delivered, {} unclaimed, {} bad, {} put back",
        done.archive_objects,
        done.plan.records,
        done.plan.events,
        done.plan.released,
        done.plan.delivered,
        done.plan.unclaimed,
        done.plan.bad,
        done.put
    );
    assert!(done.archive_objects.is_some());
    assert_eq!(done.plan.records as usize, given_up);
    assert!(done.plan.released > 0);
    assert_eq!(done.put, done.plan.to_put.len());

    // The records put back, with their partition keys and payloads, drained by a
    // healthy function: every event lands once.
    let replayed = stack
        .read_stream(&trimmed)
        .await
        .into_values()
        .flatten()
        .collect::<Vec<_>>();
    assert_eq!(replayed.len(), done.put);
    let start = records
        .iter()
        .position(|r| r.sequence_number == message.kinesis_batch_info.start_sequence_number)
        .expect("the range's first record");
    let want: Vec<(&str, &[u8])> = done
        .plan
        .to_put
        .iter()
        .map(|&i| {
            let o = &records[start + i];
            (o.partition_key.as_str(), o.data.as_slice())
        })
        .collect();
    let got: Vec<(&str, &[u8])> = replayed
        .iter()
        .map(|r| (r.partition_key.as_str(), r.data.as_slice()))
        .collect();
    assert_eq!(
        got, want,
        "the records put back in order, with their keys and bytes"
    );
    let healthy = stack.app(&stack.config_with_archive(&archive));
    drain_shard(&healthy, &replayed, 100, 20).await;
    assert_exactly_once(&stack.lake_lines().await, &t.unique);
    assert_eq!(
        stack.quarantine_lines().await.len(),
        t.bad,
        "each bad record quarantined once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_outage_is_counted_and_every_event_still_reaches_the_lake() {
    sightline_integration_tests::require_moto!();
    let stack = Stack::create("r-archive-down", 1).await;
    let archive = stack.create_archive().await;
    let t = traffic(30);
    stack.put(&t.payloads).await;
    let records = one_shard(&stack).await;
    let proxy = FaultProxy::start(&endpoint(), SEED).await;
    proxy.add(
        Rule::always("Firehose.PutRecordBatch", Fault::FirehoseUnavailable)
            .when_body_contains(&archive.stream),
    );
    let app = stack
        .app_via(
            &stack.config_with_archive(&archive),
            &proxy,
            Duration::from_millis(800),
        )
        .await;
    let drain = drain_shard(&app, &records, 100, 5).await;
    assert_eq!(drain.stats.archive_failed as usize, records.len());
    assert!(drain.stats.throttled > 0, "Firehose's throttle, retried");
    assert!(stack.archive_lines(&archive).await.is_empty());
    assert_exactly_once_via(&stack.lake_lines().await, &t.unique, &proxy);
}
