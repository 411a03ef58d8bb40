#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
#![recursion_limit = "256"]
//! Faults injected over real HTTP between the SDK and moto: "nothing lost,
//! nothing doubled" must hold through each of them.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde_json::Value;
use sightline_integration_tests::fault_proxy::{Fault, FaultProxy, Rule};
use sightline_integration_tests::{
    ShardRecord, Stack, Traffic, assert_exactly_once, assert_exactly_once_except,
    assert_exactly_once_via, count_by_id, drain_shard, drain_with_mapping, endpoint, traffic,
};

const SEED: u64 = 0x5167_471e;

struct Run {
    stack: Stack,
    traffic: Traffic,
    shards: BTreeMap<String, Vec<ShardRecord>>,
    proxy: FaultProxy,
}

async fn setup(name: &str, shards: i32, events: i64) -> Run {
    let stack = Stack::create(name, shards).await;
    let t = traffic(events);
    stack.put(&t.payloads).await;
    let shard_records = stack.read_all().await;
    let proxy = FaultProxy::start(&endpoint(), SEED).await;
    Run {
        stack,
        traffic: t,
        shards: shard_records,
        proxy,
    }
}

async fn drain_all(
    run: &Run,
    attempt_timeout: Duration,
    batch: usize,
) -> sightline_integration_tests::Drain {
    drain_with(run, run.stack.config(), attempt_timeout, batch).await
}

async fn drain_with(
    run: &Run,
    config: dedup_enrich::Config,
    attempt_timeout: Duration,
    batch: usize,
) -> sightline_integration_tests::Drain {
    let app = run
        .stack
        .app_via(&config, &run.proxy, attempt_timeout)
        .await;
    let mut total = sightline_integration_tests::Drain::default();
    for records in run.shards.values() {
        let d = drain_shard(&app, records, batch, 10_000).await;
        total.invocations += d.invocations;
        total.stats.absorb(&d.stats);
    }
    total
}

/// The Athena view's rule (`infra/athena/dedup_view.sql`), embedded: one row per
/// (event_date, event_hour, detection_oid), the earliest by (ingested_at, source_sequence).
fn dedup_view(lines: &[Value]) -> Vec<Value> {
    let mut best: HashMap<(String, String, i64), &Value> = HashMap::new();
    let order = |v: &Value| {
        (
            v["ingested_at"].as_i64().unwrap_or_default(),
            v["source_sequence"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    };
    for l in lines {
        let key = (
            l["event_date"].as_str().unwrap_or_default().to_string(),
            l["event_hour"].as_str().unwrap_or_default().to_string(),
            l["detection_oid"].as_i64().unwrap_or_default(),
        );
        if best.get(&key).is_none_or(|b| order(l) < order(b)) {
            best.insert(key, l);
        }
    }
    best.into_values().cloned().collect()
}

/// One fault kind, on one call, then cleared: everything lands exactly once, and
/// the counters the README's "Failure modes" row promises the operator moved.
async fn once(name: &str, rule: Rule, promised: &[&str]) {
    let fault = rule.fault.name();
    let run = setup(name, 2, 80).await;
    run.proxy.add(rule);
    let drain = drain_all(&run, Duration::from_millis(800), 30).await;
    let moved: HashMap<&str, u64> = drain
        .stats
        .metrics()
        .into_iter()
        .map(|(name, value, _)| (name, value))
        .collect();
    println!("{name}: {moved:?}");
    for counter in promised {
        assert!(
            moved.get(counter).copied().unwrap_or_default() > 0,
            "{fault}: the README promises the operator sees {counter}; counters: {moved:?}"
        );
    }
    assert_eq!(
        run.proxy.injected().get(fault),
        Some(&1),
        "{fault} injected once: {:?}",
        run.proxy.calls()
    );
    assert_exactly_once_via(
        &run.stack.lake_lines().await,
        &run.traffic.unique,
        &run.proxy,
    );
    assert_eq!(run.stack.quarantine_lines().await.len(), run.traffic.bad);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_throughput_exceeded_once() {
    sightline_integration_tests::require_moto!();
    once(
        "f-pte",
        Rule::once("DynamoDB.PutItem", Fault::DynamoThroughputExceeded),
        &["Throttled", "Retried"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_throttling_exception_once() {
    sightline_integration_tests::require_moto!();
    once(
        "f-thr",
        Rule::once("DynamoDB.PutItem", Fault::DynamoThrottling),
        &["Throttled", "Retried"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_read_internal_server_error_once() {
    sightline_integration_tests::require_moto!();
    once(
        "f-500",
        Rule::once("DynamoDB.GetItem", Fault::DynamoInternalError),
        &["Retried"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_http_503_once() {
    sightline_integration_tests::require_moto!();
    once(
        "f-503",
        Rule::once("DynamoDB.PutItem", Fault::Unavailable503),
        &["Retried"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firehose_service_unavailable_once() {
    sightline_integration_tests::require_moto!();
    once(
        "f-fsu",
        Rule::once("Firehose.PutRecordBatch", Fault::FirehoseUnavailable),
        &["Throttled", "Retried"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firehose_partial_failure_once() {
    sightline_integration_tests::require_moto!();
    once(
        "f-fpart",
        Rule::once(
            "Firehose.PutRecordBatch",
            Fault::FirehosePartial { fail_ratio: 0.5 },
        ),
        &["Throttled", "Retried"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_internal_error_once() {
    sightline_integration_tests::require_moto!();
    once(
        "f-s3500",
        Rule::once("S3.PutObject", Fault::S3InternalError),
        &["Retried"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_slow_down_once() {
    sightline_integration_tests::require_moto!();
    once(
        "f-slow",
        Rule::once("S3.PutObject", Fault::S3SlowDown),
        &["Throttled", "Retried"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_connection_reset_once() {
    sightline_integration_tests::require_moto!();
    once(
        "f-reset",
        Rule::once("DynamoDB.PutItem", Fault::Reset),
        &["Retried"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firehose_answer_slower_than_the_sdk_timeout_once() {
    sightline_integration_tests::require_moto!();
    // Moto acts after the delay, the SDK has already given up: a lost answer.
    let run = setup("f-delay", 2, 80).await;
    run.proxy.add(Rule::once(
        "Firehose.PutRecordBatch",
        Fault::Delay(Duration::from_millis(1_500)),
    ));
    drain_all(&run, Duration::from_millis(800), 30).await;
    assert_eq!(run.proxy.injected().get("delay"), Some(&1));
    assert!(
        !run.proxy.unanswered_firehose_events().is_empty(),
        "the client saw the attempt it cut"
    );
    at_most_twice(&run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_slower_than_the_sdk_timeout_once() {
    sightline_integration_tests::require_moto!();
    once(
        "f-cdelay",
        Rule::once(
            "DynamoDB.PutItem",
            Fault::Delay(Duration::from_millis(1_500)),
        ),
        &["Retried"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_answer_lost_after_the_write_once() {
    sightline_integration_tests::require_moto!();
    // The claim exists; the retry finds this record's own claim and delivers.
    once(
        "f-lost",
        Rule::once("DynamoDB.PutItem", Fault::LoseAnswer),
        &["Retried"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_answer_lost_after_the_write_once() {
    sightline_integration_tests::require_moto!();
    once(
        "f-cplost",
        Rule::once("DynamoDB.PutItem", Fault::LoseAnswer).when_body_contains("checkpoint#"),
        &["Retried"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_mark_answer_lost_after_the_write_once() {
    sightline_integration_tests::require_moto!();
    // A partial Firehose failure makes marks necessary; the first mark's answer is lost.
    let run = setup("f-marklost", 1, 80).await;
    run.proxy.add(Rule::once(
        "Firehose.PutRecordBatch",
        Fault::FirehosePartial { fail_ratio: 0.5 },
    ));
    run.proxy
        .add(Rule::once("DynamoDB.UpdateItem", Fault::LoseAnswer));
    // One event per Firehose record, so a partial failure splits the batch.
    let mut config = run.stack.config();
    config.pack_max_events = 1;
    let app = run
        .stack
        .app_via(&config, &run.proxy, Duration::from_millis(800))
        .await;
    for records in run.shards.values() {
        drain_shard(&app, records, 40, 1_000).await;
    }
    assert_exactly_once_via(
        &run.stack.lake_lines().await,
        &run.traffic.unique,
        &run.proxy,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_recognised_when_the_store_omits_the_old_item() {
    sightline_integration_tests::require_moto!();
    // Every claim answer loses ALL_OLD's item: the adapter reads the claim instead.
    let run = setup("f-strip", 2, 80).await;
    run.proxy.add(Rule::always(
        "DynamoDB.PutItem",
        Fault::StripConditionalItem,
    ));
    let drain = drain_all(&run, Duration::from_secs(2), 30).await;
    assert!(
        drain.stats.duplicates_upstream > 0,
        "re-sends met another record's claim"
    );
    assert!(
        run.proxy
            .calls()
            .get("DynamoDB.GetItem")
            .copied()
            .unwrap_or(0)
            > drain.invocations as u64,
        "claims were read back beyond the one checkpoint read per batch"
    );
    assert_exactly_once_via(
        &run.stack.lake_lines().await,
        &run.traffic.unique,
        &run.proxy,
    );
}

/// A Firehose answer lost after Firehose acted: Firehose has no idempotency
/// key, so the lost call's events may land twice, and only those (or those of
/// an attempt the SDK gave up on before its answer came).
async fn at_most_twice(run: &Run) {
    let lines = run.stack.lake_lines().await;
    let counts = count_by_id(&lines);
    let lost = run.proxy.lost_firehose_events();
    let mut may_double = run.proxy.unanswered_firehose_events();
    may_double.extend(&lost);
    assert_exactly_once_except(&lines, &run.traffic.unique, &may_double);
    for id in &lost {
        assert_eq!(
            counts.get(id),
            Some(&2),
            "the lost call's event {id} is in S3 twice"
        );
    }
    let view = dedup_view(&lines);
    assert_exactly_once(&view, &run.traffic.unique);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firehose_answer_lost_after_firehose_acted_doubles_only_that_call() {
    sightline_integration_tests::require_moto!();
    let run = setup("f-fhlost", 2, 80).await;
    run.proxy
        .add(Rule::once("Firehose.PutRecordBatch", Fault::LoseAnswer));
    drain_all(&run, Duration::from_millis(800), 30).await;
    assert!(!run.proxy.lost_firehose_events().is_empty());
    at_most_twice(&run).await;
}

/// Every claim answers 400 ms late and the invocation has 3 s: each invocation
/// settles the prefix it can and answers before the deadline (the mapping never
/// kills it), and the shard drains with every event delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_deadline_with_a_slow_store_settles_a_prefix_each_time_and_drains() {
    sightline_integration_tests::require_moto!();
    let run = setup("f-deadline", 1, 60).await;
    run.proxy.add(Rule::always(
        "DynamoDB.PutItem",
        Fault::Delay(Duration::from_millis(400)),
    ));
    let mut config = run.stack.config();
    config.claim_concurrency = 2;
    let app = run
        .stack
        .app_via(&config, &run.proxy, Duration::from_secs(5))
        .await;
    let records = run.shards.values().next().expect("shard");
    let mut mapping = sightline_integration_tests::esm_config(records.len());
    mapping.function_timeout = Duration::from_secs(3);
    mapping.maximum_retry_attempts = None;
    let drain = drain_with_mapping(&app, records, mapping).await;
    for line in drain.esm.lines() {
        println!("{line}");
    }
    assert_eq!(drain.esm.kills(), 0, "answered before every deadline");
    assert!(
        drain.esm.partial_failures() > 0,
        "unfinished records were reported, not killed"
    );
    assert!(drain.stats.failed > 0);
    assert_eq!(drain.stats.accounted(), drain.stats.received);
    assert_exactly_once_via(
        &run.stack.lake_lines().await,
        &run.traffic.unique,
        &run.proxy,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_mixed_faults_lose_nothing_and_double_nothing() {
    sightline_integration_tests::require_moto!();
    let run = setup("f-soak", 3, 2_000).await;
    // The rare kinds (few S3 calls; partial failures only on Firehose) are made
    // certain once, first; then every kind is drawn at random.
    for (op, fault) in [
        ("S3.PutObject", Fault::S3InternalError),
        ("S3.PutObject", Fault::S3SlowDown),
        (
            "Firehose.PutRecordBatch",
            Fault::FirehosePartial { fail_ratio: 0.3 },
        ),
        ("Firehose.PutRecordBatch", Fault::LoseAnswer),
    ] {
        run.proxy.add(Rule::once(op, fault));
    }
    let p = 0.012;
    for (op, fault) in [
        ("DynamoDB.PutItem", Fault::DynamoThroughputExceeded),
        ("DynamoDB.PutItem", Fault::DynamoThrottling),
        ("DynamoDB.PutItem", Fault::LoseAnswer),
        ("DynamoDB.*", Fault::DynamoInternalError),
        ("DynamoDB.*", Fault::Unavailable503),
        ("DynamoDB.*", Fault::Reset),
        ("DynamoDB.*", Fault::Delay(Duration::from_millis(700))),
        ("Firehose.PutRecordBatch", Fault::FirehoseUnavailable),
        (
            "Firehose.PutRecordBatch",
            Fault::FirehosePartial { fail_ratio: 0.3 },
        ),
        ("Firehose.PutRecordBatch", Fault::LoseAnswer),
        ("Firehose.PutRecordBatch", Fault::Reset),
    ] {
        run.proxy.add(Rule::sometimes(op, fault, p));
    }
    run.proxy
        .add(Rule::sometimes("S3.PutObject", Fault::S3InternalError, 0.1));
    run.proxy
        .add(Rule::sometimes("S3.PutObject", Fault::S3SlowDown, 0.1));
    let started = Instant::now();
    // Two attempts per call, so some faults outlast them and Kinesis redelivers.
    let mut config = run.stack.config();
    config.retry_max_attempts = 2;
    let drain = drain_with(&run, config, Duration::from_millis(500), 10).await;
    let lines = run.stack.lake_lines().await;
    let counts = count_by_id(&lines);
    let lost = run
        .traffic
        .unique
        .keys()
        .filter(|id| !counts.contains_key(id))
        .count();
    // Firehose calls whose answer was lost deliver their events again on retry:
    // unavoidable without an idempotency key, and removed by the dedup view. So
    // do attempts the SDK cut before moto answered (on a loaded machine moto
    // can be slower than the 500 ms attempt timeout with no fault injected).
    let lost_calls = run.proxy.lost_firehose_events();
    let unanswered = run.proxy.unanswered_firehose_events();
    let allowed = |id: &i64| {
        1 + lost_calls.iter().filter(|l| *l == id).count()
            + unanswered.iter().filter(|u| *u == id).count()
    };
    let doubled = counts.iter().filter(|(id, n)| **n > allowed(id)).count();
    let doubled_by_lost_answers = counts.values().filter(|n| **n > 1).count();
    let calls: u64 = run.proxy.calls().values().sum();
    let injected = run.proxy.injected();
    println!(
        "soak: {} batches over {} shards, {} events ({} re-sends, {} bad) in {:?}",
        drain.invocations,
        run.shards.len(),
        run.traffic.payloads.len(),
        run.traffic.resent,
        run.traffic.bad,
        started.elapsed()
    );
    println!(
        "soak: {} calls, faults injected {} ({:?}); operation retries {}; throttles seen {}; records retried by Kinesis {}",
        calls,
        injected.values().sum::<u64>(),
        injected,
        drain.stats.retries,
        drain.stats.throttled,
        drain.stats.failed
    );
    println!(
        "soak: lost {lost}, doubled by the function {doubled}, doubled by lost Firehose answers {doubled_by_lost_answers} (events in lost calls: {}, in attempts the SDK cut: {})",
        lost_calls.len(),
        unanswered.len()
    );
    assert!(drain.invocations >= 200, "at least 200 batches");
    assert!(
        drain.stats.failed > 0,
        "some faults outlasted the retries and went back to Kinesis"
    );
    for kind in [
        "s3_500",
        "s3_slowdown",
        "answer_lost_after_write",
        "firehose_partial_failure",
    ] {
        assert!(injected.contains_key(kind), "the soak injected {kind}");
    }
    assert_eq!(lost, 0);
    assert_eq!(doubled, 0);
    assert_exactly_once(&dedup_view(&lines), &run.traffic.unique);
    assert_eq!(run.stack.quarantine_lines().await.len(), run.traffic.bad);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_claim_and_delivery_is_delivered_exactly_once_on_retry() {
    sightline_integration_tests::require_moto!();
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let run = setup("f-crash", 1, 60).await;
    let records = run.shards.values().next().expect("shard").clone();
    let file = std::env::temp_dir().join(format!("sightline-crash-{}.json", std::process::id()));
    let event = sightline_integration_tests::kinesis_event(&records);
    std::fs::write(&file, serde_json::to_vec(&event).expect("json")).expect("write event");

    let mut child = Command::new(env!("CARGO_BIN_EXE_crash-harness"))
        .args([
            &endpoint(),
            &run.stack.table,
            &run.stack.delivery_stream,
            &run.stack.quarantine_bucket,
            &file.display().to_string(),
        ])
        .env("SIGHTLINE_FAULT_POINT", "after-claims")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the function process");
    let stdout = child.stdout.take().expect("stdout");
    let reached = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains("fault point reached: after-claims"));
    assert!(reached, "the process reached the fault point");
    child.kill().expect("SIGKILL"); // Child::kill sends SIGKILL on Unix
    let status = child.wait().expect("reaped");
    assert!(!status.success());
    let _ = std::fs::remove_file(&file);

    let claims = run
        .stack
        .clients
        .dynamodb
        .scan()
        .table_name(&run.stack.table)
        .send()
        .await
        .expect("scan")
        .count();
    assert!(claims > 0, "claims were written before the crash");
    assert!(
        run.stack.lake_lines().await.is_empty(),
        "nothing delivered before the crash"
    );

    // Lambda retries the whole batch after a crash.
    let app = run.stack.app(&run.stack.config());
    drain_shard(&app, &records, records.len(), 10).await;
    assert_exactly_once(&run.stack.lake_lines().await, &run.traffic.unique);
    println!(
        "crash case: {claims} claims survived the SIGKILL; the retry delivered each event once"
    );
}
