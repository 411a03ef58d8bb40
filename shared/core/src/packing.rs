//! Packing events into Firehose records and records into `PutRecordBatch` calls.
//!
//! Firehose bills each record rounded up to 5 KB, so several newline-terminated
//! events share one record; its multi-record deaggregation splits at most 500
//! events out of one record.

use std::ops::Range;

use crate::model::OutputEvent;

/// `PutRecordBatch`: at most 500 records per call.
pub const FIREHOSE_MAX_RECORDS_PER_CALL: usize = 500;
/// `PutRecordBatch`: at most 4 MiB per call, as documented.
pub const FIREHOSE_MAX_BYTES_PER_CALL: usize = 4 * 1024 * 1024;
/// What one call carries at most, in raw record bytes. The service rejects
/// calls whose raw bytes are under the documented 4 MiB ("Records size exceeds
/// 4 MB limit" is reported for such calls): the limit appears to count the
/// request as sent, where base64 makes each record 4/3 of its size. 3 MiB raw is
/// 4 MiB encoded, so a call within this budget is within the limit either way.
pub const FIREHOSE_CALL_RAW_BYTES_BUDGET: usize = 3 * 1024 * 1024;
/// One Firehose record: at most 1,000 KiB before base64.
pub const FIREHOSE_MAX_RECORD_BYTES: usize = 1_000 * 1024;
/// Firehose deaggregation splits at most 500 events out of one record.
pub const MAX_EVENTS_PER_PACKED_RECORD: usize = 500;

/// How many events may share one Firehose record (1 disables packing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackConfig {
    pub max_events: usize,
    pub max_bytes: usize,
}

impl Default for PackConfig {
    fn default() -> Self {
        PackConfig {
            max_events: MAX_EVENTS_PER_PACKED_RECORD,
            max_bytes: FIREHOSE_MAX_RECORD_BYTES,
        }
    }
}

impl PackConfig {
    /// Clamps to the service limits.
    pub fn new(max_events: usize) -> Self {
        PackConfig {
            max_events: max_events.clamp(1, MAX_EVENTS_PER_PACKED_RECORD),
            max_bytes: FIREHOSE_MAX_RECORD_BYTES,
        }
    }
}

/// One Firehose record and the events (by index) it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedRecord {
    pub data: Vec<u8>,
    pub events: Range<usize>,
}

/// Packs consecutive events into records within `cfg`'s limits.
pub fn pack(
    events: &[OutputEvent<'_>],
    cfg: PackConfig,
) -> Result<Vec<PackedRecord>, serde_json::Error> {
    let mut out = Vec::new();
    let mut data = Vec::with_capacity(16 * 1024);
    let mut start = 0;
    for (i, event) in events.iter().enumerate() {
        let before = data.len();
        event.write_json_line(&mut data)?;
        let full = i - start >= cfg.max_events || data.len() > cfg.max_bytes;
        if full && i > start {
            // Move this line into a fresh record.
            let line = data.split_off(before);
            out.push(PackedRecord {
                data: std::mem::replace(&mut data, line),
                events: start..i,
            });
            start = i;
        }
    }
    if start < events.len() {
        out.push(PackedRecord {
            data,
            events: start..events.len(),
        });
    }
    Ok(out)
}

/// Splits records (by index) into calls within the per-call limits.
pub fn chunk_calls(records: &[PackedRecord]) -> Vec<Range<usize>> {
    chunk_by_limits(
        records.iter().map(|r| r.data.len()),
        FIREHOSE_MAX_RECORDS_PER_CALL,
        FIREHOSE_CALL_RAW_BYTES_BUDGET,
    )
}

/// Splits consecutive items of the given sizes into ranges of at most
/// `max_items` items and `max_bytes` bytes (an oversize item gets its own range).
pub fn chunk_by_limits(
    sizes: impl IntoIterator<Item = usize>,
    max_items: usize,
    max_bytes: usize,
) -> Vec<Range<usize>> {
    let mut calls = Vec::new();
    let (mut start, mut bytes, mut len) = (0, 0, 0);
    for (i, size) in sizes.into_iter().enumerate() {
        if i > start && (i - start >= max_items || bytes + size > max_bytes) {
            calls.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
        len = i + 1;
    }
    if start < len {
        calls.push(start..len);
    }
    calls
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::UtcHour;
    use std::borrow::Cow;

    fn event(id: i64, name: &str) -> OutputEvent<'_> {
        OutputEvent {
            detection_oid: id,
            video_camera_oid: 1,
            geographical_location_oid: 1,
            item_name: Cow::Borrowed(name),
            timestamp_detected: 1_700_000_000_000,
            geographical_location: Some("Bedok"),
            partition: UtcHour::from_epoch_ms(1_700_000_000_000),
            ingested_at: 1_700_000_000_000,
            source_shard: "s",
            source_sequence: "1",
        }
    }

    #[test]
    fn packs_at_most_max_events_per_record_and_keeps_order() {
        let events: Vec<_> = (0..1_201).map(|i| event(i, "car")).collect();
        let recs = pack(&events, PackConfig::default()).expect("pack");
        assert_eq!(
            recs.iter().map(|r| r.events.clone()).collect::<Vec<_>>(),
            vec![0..500, 500..1_000, 1_000..1_201]
        );
        let mut ids = Vec::new();
        for r in &recs {
            assert!(r.data.ends_with(b"\n"));
            for line in r.data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let v: serde_json::Value = serde_json::from_slice(line).expect("json line");
                ids.push(v["detection_oid"].as_i64().unwrap_or(-1));
            }
        }
        assert_eq!(ids, (0..1_201).collect::<Vec<_>>());
    }

    #[test]
    fn packing_one_disables_packing() {
        let events: Vec<_> = (0..3).map(|i| event(i, "car")).collect();
        let recs = pack(&events, PackConfig::new(1)).expect("pack");
        assert_eq!(recs.len(), 3);
    }

    #[test]
    fn records_stay_under_the_byte_limit() {
        let name = "x".repeat(5_000);
        let events: Vec<_> = (0..600).map(|i| event(i, &name)).collect();
        let recs = pack(&events, PackConfig::default()).expect("pack");
        assert!(recs.len() >= 3, "600 x ~5.3 KB must split by bytes");
        for r in &recs {
            assert!(r.data.len() <= FIREHOSE_MAX_RECORD_BYTES);
        }
        let covered: usize = recs.iter().map(|r| r.events.len()).sum();
        assert_eq!(covered, 600);
    }

    #[test]
    fn calls_respect_record_and_byte_limits() {
        let small: Vec<PackedRecord> = (0..1_100)
            .map(|i| PackedRecord {
                data: vec![b'x'; 10],
                events: i..i + 1,
            })
            .collect();
        assert_eq!(chunk_calls(&small), vec![0..500, 500..1_000, 1_000..1_100]);
        let big: Vec<PackedRecord> = (0..9)
            .map(|i| PackedRecord {
                data: vec![b'x'; FIREHOSE_MAX_RECORD_BYTES],
                events: i..i + 1,
            })
            .collect();
        let calls = chunk_calls(&big);
        for c in &calls {
            let bytes: usize = big[c.clone()].iter().map(|r| r.data.len()).sum();
            assert!(bytes <= FIREHOSE_CALL_RAW_BYTES_BUDGET);
        }
        assert_eq!(
            calls
                .iter()
                .map(std::iter::ExactSizeIterator::len)
                .sum::<usize>(),
            9
        );
    }

    #[test]
    fn a_call_holds_at_most_three_mib_of_raw_bytes_so_its_encoded_request_stays_under_four() {
        let record = |len: usize| PackedRecord {
            data: vec![b'x'; len],
            events: 0..1,
        };
        // Exactly at the budget: one call.
        let third = FIREHOSE_CALL_RAW_BYTES_BUDGET / 3;
        let at = vec![record(third), record(third), record(third)];
        assert_eq!(chunk_calls(&at), vec![0..3]);
        // One byte over: two calls, each within the budget.
        let over = vec![record(third), record(third), record(third + 1)];
        let calls = chunk_calls(&over);
        assert_eq!(calls, vec![0..2, 2..3]);
        // Records of the largest size Firehose takes: three per call, never four
        // (four would be 4,000 KiB raw, which the service refuses).
        let max = vec![record(FIREHOSE_MAX_RECORD_BYTES); 7];
        let calls = chunk_calls(&max);
        assert_eq!(calls, vec![0..3, 3..6, 6..7]);
        for c in &calls {
            let raw: usize = max[c.clone()].iter().map(|r| r.data.len()).sum();
            let encoded = raw.div_ceil(3) * 4;
            assert!(raw <= FIREHOSE_CALL_RAW_BYTES_BUDGET);
            assert!(
                encoded <= FIREHOSE_MAX_BYTES_PER_CALL,
                "{encoded} encoded bytes"
            );
        }
    }
}
