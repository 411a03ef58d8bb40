//! Per-batch counts and their CloudWatch Embedded Metric Format (EMF) line.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// What happened to one batch. Every received record is counted in exactly one
/// of `delivered`, `duplicates`, `quarantined` and `failed`.
///
/// Counts are of user records: a plain Kinesis record is one, a KPL aggregate
/// is as many as it holds (one when it is corrupt and quarantined whole).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchStats {
    pub received: u64,
    /// Kinesis records that were KPL aggregates (corrupt ones included).
    pub kpl_aggregates: u64,
    /// User records split out of KPL aggregates (also counted in `received`).
    pub kpl_user_records: u64,
    pub delivered: u64,
    /// Intentional drops, apart from failures.
    pub duplicates: u64,
    pub duplicates_in_batch: u64,
    /// Claimed by another record (an upstream re-send).
    pub duplicates_upstream: u64,
    /// Settled by an earlier invocation of the same record (Lambda retry).
    pub duplicates_replayed: u64,
    pub quarantined: u64,
    pub quarantine_reasons: BTreeMap<&'static str, u64>,
    /// Delivered with `geographical_location: null`.
    pub unknown_location: u64,
    /// Delivered records whose own earlier claim was found (processed again).
    pub reprocessed: u64,
    pub expired_claims_taken_over: u64,
    /// Records reported back to Lambda as batch item failures.
    pub failed: u64,
    /// Operation retries (backoff attempts) across all calls.
    pub retries: u64,
    /// Throttling answers seen across all calls.
    pub throttled: u64,
    /// Post-failure bookkeeping that did not succeed (may cause a counted double on retry).
    pub marks_failed: u64,
    pub releases_failed: u64,
    pub checkpoint_failed: u64,
    pub duration_ms: u64,
}

impl BatchStats {
    pub fn accounted(&self) -> u64 {
        self.delivered + self.duplicates + self.quarantined + self.failed
    }

    pub fn absorb(&mut self, o: &BatchStats) {
        self.received += o.received;
        self.kpl_aggregates += o.kpl_aggregates;
        self.kpl_user_records += o.kpl_user_records;
        self.delivered += o.delivered;
        self.duplicates += o.duplicates;
        self.duplicates_in_batch += o.duplicates_in_batch;
        self.duplicates_upstream += o.duplicates_upstream;
        self.duplicates_replayed += o.duplicates_replayed;
        self.quarantined += o.quarantined;
        for (k, v) in &o.quarantine_reasons {
            *self.quarantine_reasons.entry(k).or_default() += v;
        }
        self.unknown_location += o.unknown_location;
        self.reprocessed += o.reprocessed;
        self.expired_claims_taken_over += o.expired_claims_taken_over;
        self.failed += o.failed;
        self.retries += o.retries;
        self.throttled += o.throttled;
        self.marks_failed += o.marks_failed;
        self.releases_failed += o.releases_failed;
        self.checkpoint_failed += o.checkpoint_failed;
        self.duration_ms += o.duration_ms;
    }

    /// One EMF log line: CloudWatch turns its counts into metrics with no API call.
    pub fn emf_line(&self, namespace: &str, function_name: &str, timestamp_ms: i64) -> String {
        let metrics: [(&str, u64, &str); 16] = [
            ("Received", self.received, "Count"),
            ("Delivered", self.delivered, "Count"),
            ("Duplicates", self.duplicates, "Count"),
            ("Quarantined", self.quarantined, "Count"),
            ("UnknownLocation", self.unknown_location, "Count"),
            ("Retried", self.retries, "Count"),
            ("Failed", self.failed, "Count"),
            ("Throttled", self.throttled, "Count"),
            ("Reprocessed", self.reprocessed, "Count"),
            ("DuplicatesReplayed", self.duplicates_replayed, "Count"),
            ("MarksFailed", self.marks_failed, "Count"),
            ("ReleasesFailed", self.releases_failed, "Count"),
            ("CheckpointFailed", self.checkpoint_failed, "Count"),
            ("KplAggregates", self.kpl_aggregates, "Count"),
            ("KplUserRecords", self.kpl_user_records, "Count"),
            ("DurationMs", self.duration_ms, "Milliseconds"),
        ];
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
