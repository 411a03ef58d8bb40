#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
#![recursion_limit = "256"]
//! `sightline produce` against moto: everything sent arrives, and the achieved
//! rate is reported.

use std::collections::HashMap;

use sightline::generate::{GenerateConfig, generate};
use sightline::produce::{ProduceConfig, produce};
use sightline_aws::kinesis::KinesisPutRecords;
use sightline_integration_tests::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_produced_arrives_and_the_rate_is_reported() {
    sightline_integration_tests::require_moto!();
    let stack = Stack::create("produce", 3).await;
    let mut data = Vec::new();
    generate(
        &GenerateConfig {
            events: 3_000,
            seed: 5,
            duplicate_rate: 0.0,
            malformed_rate: 0.0,
            unknown_location_rate: 0.0,
            ..GenerateConfig::default()
        },
        &mut data,
    )
    .expect("generate");
    let lines: Vec<Vec<u8>> = data
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    let port = KinesisPutRecords::new(stack.clients.kinesis.clone(), &stack.kinesis_stream);
    let config = ProduceConfig {
        rate: 20_000.0,
        duplicate_rate: 0.1,
        ..ProduceConfig::default()
    };
    let mut progress_calls = 0;
    let report = produce(&port, lines.clone(), &config, |_| progress_calls += 1).await;
    println!(
        "produce against moto: {} records ({} re-sends) in {:?}, {:.0} ev/s, {} calls, {} throttled",
        report.sent,
        report.resent,
        report.elapsed,
        report.achieved_rate,
        report.calls,
        report.throttled
    );
    assert_eq!(report.failed, 0);
    assert_eq!(report.sent, lines.len() as u64 + report.resent);
    assert!(report.resent > 200, "about 10% re-sent");
    assert!(report.achieved_rate > 0.0 && report.achieved_rate <= 20_000.0 * 1.05);
    assert!(progress_calls >= 7, "progress after every call");

    let mut sent: HashMap<Vec<u8>, usize> = HashMap::new();
    for l in &lines {
        *sent.entry(l.clone()).or_default() += 1;
    }
    let arrived = stack.read_all().await;
    let mut got: HashMap<Vec<u8>, usize> = HashMap::new();
    for records in arrived.values() {
        for r in records {
            *got.entry(r.data.clone()).or_default() += 1;
        }
    }
    assert_eq!(
        got.values().sum::<usize>() as u64,
        report.sent,
        "everything sent arrived"
    );
    for (line, n) in &sent {
        let m = got.get(line).copied().unwrap_or(0);
        assert!(
            m == *n || m == n + 1,
            "a line arrives once, or twice when re-sent"
        );
    }
    // Re-sends share their event's shard.
    let mut shard_of: HashMap<&[u8], &str> = HashMap::new();
    for (shard, records) in &arrived {
        for r in records {
            let prev = shard_of.insert(r.data.as_slice(), shard.as_str());
            assert!(prev.is_none_or(|p| p == shard), "copies on one shard");
        }
    }
}

/// `sightline produce --url` through a local stand-in for the HTTP API, to the
/// ingest function, to moto's Kinesis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producing_to_the_front_door_forwards_valid_events_and_counts_rejections() {
    sightline_integration_tests::require_moto!();
    use sightline::ingest_http::{IngestHttp, Signing};
    use sightline::produce::INGEST_CALL;
    use sightline_integration_tests::local_api::LocalApi;

    let stack = Stack::create("produce-url", 2).await;
    let app = ingest::Ingest {
        stream: KinesisPutRecords::new(stack.clients.kinesis.clone(), &stack.kinesis_stream),
        clock: sightline_core::SystemClock,
        retry: sightline_core::retry::RetryPolicy::default(),
        deadline_reserve_ms: 0,
    };
    let api = LocalApi::start(app, Some(sightline_integration_tests::REGION)).await;

    let mut data = Vec::new();
    let truth = generate(
        &GenerateConfig {
            events: 1_500,
            seed: 11,
            duplicate_rate: 0.0,
            malformed_rate: 0.02,
            unknown_location_rate: 0.0,
            // The front door refuses events older than the age rule allows.
            start_ms: sightline::generate::recent_start(3_600_000),
            window_ms: 3_600_000,
        },
        &mut data,
    )
    .expect("generate");
    assert!(truth.bad_records > 10, "some bad records to reject");
    let lines: Vec<Vec<u8>> = data
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();

    // Unsigned requests are refused, and nothing is forwarded.
    let unsigned = IngestHttp::new(&api.url, Signing::None).expect("client");
    let config = ProduceConfig {
        rate: 50_000.0,
        duplicate_rate: 0.0,
        limits: INGEST_CALL,
        ..ProduceConfig::default()
    };
    let refused = produce(&unsigned, lines[..10].to_vec(), &config, |_| {}).await;
    assert_eq!(
        refused.failed, 10,
        "a 403 is permanent: not retried, reported"
    );
    assert!(api.refused() >= 1);

    let sdk = sightline_integration_tests::sdk_config(
        &sightline_integration_tests::endpoint(),
        sightline_aws::ClientSettings::default(),
    )
    .await;
    let signed = IngestHttp::new(
        &api.url,
        Signing::SigV4 {
            credentials: sdk.credentials_provider().expect("credentials"),
            region: sightline_integration_tests::REGION.to_string(),
        },
    )
    .expect("client");
    let config = ProduceConfig {
        duplicate_rate: 0.05,
        ..config
    };
    let requests_before = api.requests();
    let report = produce(&signed, lines.clone(), &config, |_| {}).await;
    println!(
        "produce to the front door: {} events ({} re-sends, {} rejected) in {} requests, {:?}, {:.0} ev/s",
        report.sent,
        report.resent,
        signed.rejected(),
        report.calls,
        report.elapsed,
        report.achieved_rate
    );
    assert_eq!(report.failed, 0);
    assert!(report.achieved_rate > 0.0);
    assert_eq!(
        report.calls,
        api.requests() - requests_before,
        "one request per call"
    );
    assert!(
        report.calls >= (lines.len() as u64).div_ceil(500),
        "at most 500 events per request"
    );
    assert!(
        signed.rejected() >= truth.bad_records,
        "every bad line rejected"
    );

    let arrived = stack.read_all().await;
    let mut got: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut shard_of: HashMap<Vec<u8>, String> = HashMap::new();
    for (shard, records) in &arrived {
        for r in records {
            *got.entry(r.data.clone()).or_default() += 1;
            let prev = shard_of.insert(r.data.clone(), shard.clone());
            assert!(prev.is_none_or(|p| &p == shard), "re-sends share a shard");
        }
    }
    let arrived_total = got.values().sum::<usize>() as u64;
    assert_eq!(
        arrived_total + signed.rejected(),
        report.sent,
        "every answered event was forwarded or rejected"
    );
    let valid = lines.len() as u64 - truth.bad_records;
    assert_eq!(got.len() as u64, valid, "every valid line arrived");
    for line in &lines {
        let n = got.get(line).copied().unwrap_or(0);
        assert!(n <= 2, "a line arrives once, or twice when re-sent");
    }
}
