//! `sightline produce`: publishes events to a Kinesis stream at a target rate,
//! in `PutRecords` batches within the service limits, re-sending a share of
//! them the way a retrying camera would.

use std::time::{Duration, Instant};

use sightline_aws::kinesis::{KINESIS_MAX_BYTES_PER_CALL, KINESIS_MAX_RECORDS_PER_CALL};
use sightline_core::delivery::send_resending_failures;
use sightline_core::packing::chunk_by_limits;
use sightline_core::ports::StreamPort;
use sightline_core::retry::{Retrier, RetryCounters, RetryPolicy};
use sightline_core::time::{Deadline, SystemClock};

#[derive(Debug, Clone, PartialEq)]
pub struct ProduceConfig {
    /// Target events per second (re-sends included).
    pub rate: f64,
    /// Share of events sent a second time, in the next batch.
    pub duplicate_rate: f64,
    pub seed: u64,
    pub retry: RetryPolicy,
}

impl Default for ProduceConfig {
    fn default() -> Self {
        ProduceConfig {
            rate: 10_000.0,
            duplicate_rate: 0.0,
            seed: 42,
            retry: RetryPolicy {
                max_attempts: 10,
                ..RetryPolicy::default()
            },
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProduceReport {
    /// Records the stream accepted (re-sends included).
    pub sent: u64,
    pub resent: u64,
    /// Records the stream still refused after the retries.
    pub failed: u64,
    pub throttled: u64,
    pub calls: u64,
    pub elapsed: Duration,
    pub achieved_rate: f64,
}

/// The partition key: the event id when the line has one, so that re-sends of
/// an event land on its shard (as the ingest front door does).
pub fn partition_key(line: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v.get("detection_oid").and_then(|id| id.as_i64()))
        .map_or_else(|| format!("line-{}", line.len()), |id| id.to_string())
}

/// Splits `records` into calls within the `PutRecords` limits.
pub fn batches(records: &[(String, Vec<u8>)]) -> Vec<std::ops::Range<usize>> {
    chunk_by_limits(
        records.iter().map(|(pk, data)| pk.len() + data.len()),
        KINESIS_MAX_RECORDS_PER_CALL,
        KINESIS_MAX_BYTES_PER_CALL,
    )
}

/// Sends `lines` through `stream`, calling `progress` after every call.
pub async fn produce<P: StreamPort>(
    stream: &P,
    lines: impl IntoIterator<Item = Vec<u8>>,
    config: &ProduceConfig,
    mut progress: impl FnMut(&ProduceReport),
) -> ProduceReport {
    let clock = SystemClock;
    let counters = RetryCounters::default();
    let retrier = Retrier {
        policy: config.retry,
        deadline: Deadline::none(),
        clock: &clock,
        counters: &counters,
    };
    let mut rng = fastrand::Rng::with_seed(config.seed);
    let started = Instant::now();
    let mut report = ProduceReport::default();
    let mut resends: Vec<(String, Vec<u8>)> = Vec::new();
    let mut lines = lines.into_iter().peekable();
    let per_call = KINESIS_MAX_RECORDS_PER_CALL;
    while lines.peek().is_some() || !resends.is_empty() {
        let mut records = std::mem::take(&mut resends);
        report.resent += records.len() as u64;
        while records.len() < per_call {
            let Some(line) = lines.next() else { break };
            let key = partition_key(&line);
            if rng.f64() < config.duplicate_rate {
                resends.push((key.clone(), line.clone()));
            }
            records.push((key, line));
        }
        for call in batches(&records) {
            let part = &records[call];
            let (accepted, _) = send_resending_failures(&retrier, part.len(), |idx| {
                let entries: Vec<(&str, &[u8])> = idx
                    .iter()
                    .map(|i| (part[*i].0.as_str(), part[*i].1.as_slice()))
                    .collect();
                async move { stream.put_records(&entries).await }
            })
            .await;
            let ok = accepted.iter().filter(|a| **a).count() as u64;
            report.sent += ok;
            report.failed += part.len() as u64 - ok;
            report.calls += 1;
            report.throttled = counters.throttled();
            report.elapsed = started.elapsed();
            report.achieved_rate = report.sent as f64 / report.elapsed.as_secs_f64().max(1e-9);
            progress(&report);
            // Pace to the target rate: wait until the sent count is due.
            let due = Duration::from_secs_f64(report.sent as f64 / config.rate.max(1.0));
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    report.elapsed = started.elapsed();
    report.achieved_rate = report.sent as f64 / report.elapsed.as_secs_f64().max(1e-9);
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_stay_within_500_records_and_5_mib() {
        let small: Vec<(String, Vec<u8>)> = (0..1_234)
            .map(|i| (i.to_string(), vec![b'x'; 100]))
            .collect();
        assert_eq!(batches(&small), vec![0..500, 500..1_000, 1_000..1_234]);
        let big: Vec<(String, Vec<u8>)> = (0..12)
            .map(|i| (i.to_string(), vec![b'x'; 1 << 20]))
            .collect();
        for call in batches(&big) {
            let bytes: usize = big[call].iter().map(|(k, d)| k.len() + d.len()).sum();
            assert!(bytes <= KINESIS_MAX_BYTES_PER_CALL);
        }
    }

    #[test]
    fn re_sends_share_the_event_id_as_partition_key() {
        assert_eq!(partition_key(br#"{"detection_oid":42,"x":1}"#), "42");
        assert!(partition_key(b"not json").starts_with("line-"));
    }
}
