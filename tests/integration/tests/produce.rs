//! `sightline produce` against moto: everything sent arrives, and the achieved
//! rate is reported.

use std::collections::HashMap;

use sightline::generate::{GenerateConfig, generate};
use sightline::produce::{ProduceConfig, produce};
use sightline_aws::kinesis::KinesisPutRecords;
use sightline_integration_tests::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_produced_arrives_and_the_rate_is_reported() {
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
