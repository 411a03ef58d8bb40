//! `sightline produce`: publishes events to a Kinesis stream (or the ingest
//! front door, see [`crate::ingest_http`]) at a target rate, in calls within
//! the target's limits, re-sending a share of them the way a retrying camera
//! would.

use std::time::{Duration, Instant};

use sightline_aws::kinesis::{KINESIS_MAX_BYTES_PER_CALL, KINESIS_MAX_RECORDS_PER_CALL};
use sightline_core::batch::chain;
use sightline_core::cost::{CostModel, Op};
use sightline_core::delivery::send_resending_failures;
use sightline_core::model::{INGEST_MAX_BODY_BYTES, INGEST_MAX_EVENTS};
use sightline_core::packing::chunk_by_limits;
use sightline_core::ports::StreamPort;
use sightline_core::retry::{Retrier, RetryCounters, RetryPolicy};
use sightline_core::time::{Deadline, SystemClock};
use sightline_local::stream::event_id_digits;

/// What one call may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    pub max_records: usize,
    pub max_bytes: usize,
    /// Whether partition keys count towards `max_bytes` (they do for `PutRecords`).
    pub keys_count: bool,
    /// Bytes added per record (the newline of an NDJSON body).
    pub per_record_overhead: usize,
}

/// `PutRecords`: 500 records and 5 MiB, partition keys included.
pub const KINESIS_CALL: CallLimits = CallLimits {
    max_records: KINESIS_MAX_RECORDS_PER_CALL,
    max_bytes: KINESIS_MAX_BYTES_PER_CALL,
    keys_count: true,
    per_record_overhead: 0,
};

/// One POST to the front door: 500 events and 1 MiB of NDJSON.
pub const INGEST_CALL: CallLimits = CallLimits {
    max_records: INGEST_MAX_EVENTS,
    max_bytes: INGEST_MAX_BODY_BYTES,
    keys_count: false,
    per_record_overhead: 1,
};

#[derive(Debug, Clone, PartialEq)]
pub struct ProduceConfig {
    /// Target events per second (re-sends included).
    pub rate: f64,
    /// Share of events sent a second time, in the next batch.
    pub duplicate_rate: f64,
    pub seed: u64,
    pub retry: RetryPolicy,
    pub limits: CallLimits,
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
            limits: KINESIS_CALL,
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
    /// Why the last refused records were refused, for the operator.
    pub last_error: Option<String>,
}

/// The partition key: the event id's digits when the line has them, so that
/// re-sends of an event land on its shard (as the ingest front door does). They
/// are read as the local stream reads them (`stream::event_id_digits`), without
/// parsing the line; a line without them, or with more than Kinesis takes in a
/// key, is keyed by its length.
pub fn partition_key(line: &[u8]) -> String {
    event_id_digits(line)
        .filter(|digits| digits.len() <= MAX_PARTITION_KEY_BYTES)
        .and_then(|digits| std::str::from_utf8(digits).ok())
        .map_or_else(|| format!("line-{}", line.len()), str::to_owned)
}

/// Kinesis refuses a longer partition key.
const MAX_PARTITION_KEY_BYTES: usize = 256;

/// Splits `records` into calls within `limits`.
pub fn batches(records: &[(String, Vec<u8>)], limits: CallLimits) -> Vec<std::ops::Range<usize>> {
    chunk_by_limits(
        records.iter().map(|(pk, data)| {
            data.len() + limits.per_record_overhead + if limits.keys_count { pk.len() } else { 0 }
        }),
        limits.max_records,
        limits.max_bytes,
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
    let costs = CostModel::default();
    let retrier = Retrier::new(config.retry, Deadline::none(), &clock, &counters, &costs)
        .for_op(Op::Stream, 0);
    let mut rng = fastrand::Rng::with_seed(config.seed);
    let started = Instant::now();
    let mut report = ProduceReport::default();
    let mut resends: Vec<(String, Vec<u8>)> = Vec::new();
    let mut lines = lines.into_iter().peekable();
    let per_call = config.limits.max_records;
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
        for call in batches(&records, config.limits) {
            let part = &records[call];
            let (accepted, error) = send_resending_failures(&retrier, part.len(), |idx| {
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
            if let Some(e) = error {
                report.last_error = Some(chain(&e).to_string());
            }
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
        assert_eq!(
            batches(&small, KINESIS_CALL),
            vec![0..500, 500..1_000, 1_000..1_234]
        );
        let big: Vec<(String, Vec<u8>)> = (0..12)
            .map(|i| (i.to_string(), vec![b'x'; 1 << 20]))
            .collect();
        for call in batches(&big, KINESIS_CALL) {
            let bytes: usize = big[call].iter().map(|(k, d)| k.len() + d.len()).sum();
            assert!(bytes <= KINESIS_MAX_BYTES_PER_CALL);
        }
    }

    #[test]
    fn posts_to_the_front_door_stay_within_500_events_and_1_mib_of_ndjson() {
        // 2,000 events of 1,000 bytes: 1 MiB of NDJSON holds 1,047 of them, so
        // the 500-event limit binds first.
        let events: Vec<(String, Vec<u8>)> = (0..2_000)
            .map(|i| (i.to_string(), vec![b'x'; 1_000]))
            .collect();
        assert_eq!(batches(&events, INGEST_CALL).len(), 4);
        // 600 events of 4,000 bytes: the byte limit binds (262 per call).
        let big: Vec<(String, Vec<u8>)> = (0..600)
            .map(|i| (i.to_string(), vec![b'x'; 4_000]))
            .collect();
        let calls = batches(&big, INGEST_CALL);
        assert_eq!(calls.len(), 3);
        for call in calls {
            let body: usize = big[call].iter().map(|(_, d)| d.len() + 1).sum();
            assert!(body <= INGEST_MAX_BODY_BYTES);
        }
    }

    #[test]
    fn re_sends_share_the_event_id_as_partition_key() {
        assert_eq!(partition_key(br#"{"detection_oid":42,"x":1}"#), "42");
        assert_eq!(partition_key(br#"{"x":1, "detection_oid" : -7}"#), "-7");
        assert_eq!(partition_key(b"not json"), "line-8");
        assert_eq!(partition_key(br#"{"detection_oid":"x"}"#), "line-21");
        let long = format!(r#"{{"detection_oid":{}}}"#, "9".repeat(300));
        assert_eq!(partition_key(long.as_bytes()), "line-318");
    }
}
