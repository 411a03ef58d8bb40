//! Per-batch counts and their CloudWatch Embedded Metric Format (EMF) line.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// Declares every counter once: the field, how batches add up, and its EMF
/// metric (name and unit), so adding a counter is one line here. `None` keeps a
/// counter out of CloudWatch (internal bookkeeping).
macro_rules! counters {
    ($( $(#[$doc:meta])* $field:ident => $metric:expr, $unit:expr; )*) => {
        /// What happened to one batch. Every received record is counted in exactly
        /// one of `delivered`, `duplicates`, `quarantined` and `failed`.
        ///
        /// Counts are of user records: a plain Kinesis record is one, a KPL aggregate
        /// is as many as it holds (one when it is corrupt and quarantined whole).
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct BatchStats {
            $( $(#[$doc])* pub $field: u64, )*
            pub quarantine_reasons: BTreeMap<&'static str, u64>,
        }

        impl BatchStats {
            pub fn absorb(&mut self, o: &BatchStats) {
                $( self.$field += o.$field; )*
                for (k, v) in &o.quarantine_reasons {
                    *self.quarantine_reasons.entry(k).or_default() += v;
                }
            }

            /// Every counter that is a CloudWatch metric: (name, value, unit).
            pub fn metrics(&self) -> Vec<(&'static str, u64, &'static str)> {
                let mut out = Vec::new();
                $( if let Some(name) = $metric { out.push((name, self.$field, $unit)); } )*
                out
            }
        }
    };
}

counters! {
    received => Some("Received"), "Count";
    /// Kinesis records that were KPL aggregates (corrupt ones included).
    kpl_aggregates => Some("KplAggregates"), "Count";
    /// User records split out of KPL aggregates (also counted in `received`).
    kpl_user_records => Some("KplUserRecords"), "Count";
    delivered => Some("Delivered"), "Count";
    /// Intentional drops, apart from failures.
    duplicates => Some("Duplicates"), "Count";
    duplicates_in_batch => None, "Count";
    /// Claimed by another record (an upstream re-send).
    duplicates_upstream => None, "Count";
    /// Settled by an earlier invocation of the same record (Lambda retry).
    duplicates_replayed => Some("DuplicatesReplayed"), "Count";
    quarantined => Some("Quarantined"), "Count";
    /// Delivered with `geographical_location: null`.
    unknown_location => Some("UnknownLocation"), "Count";
    /// Delivered records whose own earlier claim was found (processed again).
    reprocessed => Some("Reprocessed"), "Count";
    expired_claims_taken_over => None, "Count";
    /// Records reported back to Lambda as batch item failures.
    failed => Some("Failed"), "Count";
    /// Of `failed`: reported because the invocation's time ran out (claims not
    /// started, or no time left to deliver), not because a call failed. With
    /// `Delivered` above zero, a shard that makes slow progress.
    deadline_retried => Some("DeadlineRetried"), "Count";
    /// Operation retries (backoff attempts) across all calls.
    retries => Some("Retried"), "Count";
    /// Throttling answers seen across all calls.
    throttled => Some("Throttled"), "Count";
    /// Attempts cut short by their bound (attempt timeout, or the time left).
    timed_out => Some("TimedOut"), "Count";
    /// `delivered` marks written (failure path only).
    marks_written => Some("MarksWritten"), "Count";
    /// Post-failure bookkeeping that did not succeed (may cause a counted double on retry).
    marks_failed => Some("MarksFailed"), "Count";
    releases_failed => Some("ReleasesFailed"), "Count";
    checkpoint_failed => Some("CheckpointFailed"), "Count";
    /// Kinesis records of the batch the raw archive did not take (the batch
    /// went on without them; see `sightline_core::archive`).
    archive_failed => Some("ArchiveFailed"), "Count";
    duration_ms => Some("DurationMs"), "Milliseconds";
}

impl BatchStats {
    pub fn accounted(&self) -> u64 {
        self.delivered + self.duplicates + self.quarantined + self.failed
    }

    /// One EMF log line: CloudWatch turns its counts into metrics with no API call.
    pub fn emf_line(&self, namespace: &str, function_name: &str, timestamp_ms: i64) -> String {
        let metrics = self.metrics();
        let mut root = Map::new();
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": namespace,
                    "Dimensions": [["FunctionName"]],
                    "Metrics": metrics.iter().map(|(n, _, u)| json!({"Name": n, "Unit": u})).collect::<Vec<_>>(),
                }],
            }),
        );
        root.insert("FunctionName".into(), Value::from(function_name));
        for (name, value, _) in metrics {
            root.insert(name.into(), Value::from(value));
        }
        root.insert(
            "QuarantineReasons".into(),
            Value::Object(
                self.quarantine_reasons
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), Value::from(*v)))
                    .collect(),
            ),
        );
        Value::Object(root).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_line_declares_every_metric_it_carries() {
        let s = BatchStats {
            received: 10,
            delivered: 7,
            duplicates: 2,
            failed: 1,
            ..BatchStats::default()
        };
        let line = s.emf_line("Sightline", "dedup-enrich", 1_700_000_000_000);
        let v: serde_json::Value = serde_json::from_str(&line).expect("json");
        let declared = v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(declared.len() >= 8);
        for m in declared {
            let name = m["Name"].as_str().unwrap_or_default();
            assert!(v[name].is_u64(), "{name} declared but not present");
        }
        assert_eq!(v["Received"], 10);
        assert_eq!(v["FunctionName"], "dedup-enrich");
        assert_eq!(s.accounted(), 10);
    }
}
