//! Quarantine objects: one JSON line per bad record, one object per batch (or
//! several, each closed at a record boundary once it passes
//! [`QUARANTINE_OBJECT_MAX_BYTES`], so a batch of many bad records is never
//! rendered into memory at once).

use base64::Engine;
use serde::Serialize;

use crate::decode::Rejection;
use crate::model::InputRecord;
use crate::time::{MS_PER_DAY, UtcHour, civil_from_days};

#[derive(Debug, Serialize)]
struct QuarantineLine<'a> {
    shard_id: &'a str,
    sequence_number: &'a str,
    /// Position of the user record inside a KPL aggregate; absent for a plain record.
    #[serde(skip_serializing_if = "Option::is_none")]
    kpl_user_record: Option<u32>,
    arrival_ms: i64,
    arrival_time: String,
    reason: &'static str,
    field: Option<&'static str>,
    message: String,
    data_base64: String,
}

/// `{prefix}dt=YYYY-MM-DD/{shard}/{first sequence}.jsonl`: the key of an object
/// that holds one plain record's line.
pub fn object_key(prefix: &str, first: &InputRecord) -> String {
    object_key_span(prefix, (first, None), (first, None))
}

/// The key of an object holding the bad records from `first` to `last`, each a
/// record and, inside a KPL aggregate, a user record's position (`None` or 0: the
/// record's start). `{first}.jsonl` when both are the same,
/// `{first}_{last}.jsonl` otherwise, with `-{position}` after a sequence number
/// inside an aggregate.
///
/// Naming both ends makes the key decide the content: the bad records between
/// two positions of a shard are the same in every batch that holds them. A
/// retry whose batch ends earlier (Lambda bisects a failed batch) writes another
/// key instead of replacing an object with fewer lines.
pub fn object_key_span(
    prefix: &str,
    first: (&InputRecord, Option<u32>),
    last: (&InputRecord, Option<u32>),
) -> String {
    fn push_position(key: &mut String, (record, sub): (&InputRecord, Option<u32>)) {
        key.push_str(&record.sequence_number);
        if let Some(k) = sub.filter(|k| *k > 0) {
            key.push('-');
            key.push_str(&k.to_string());
        }
    }
    let dt = UtcHour::from_epoch_ms(first.0.arrival_ms).date_string();
    let mut key = format!("{prefix}dt={dt}/{}/", first.0.shard_id);
    push_position(&mut key, first);
    let same = first.0.sequence_number == last.0.sequence_number
        && first.1.unwrap_or(0) == last.1.unwrap_or(0);
    if !same {
        key.push('_');
        push_position(&mut key, last);
    }
    key.push_str(".jsonl");
    key
}

/// One bad record: a plain Kinesis record, a corrupt KPL aggregate (whole), or
/// one user record of a KPL aggregate (its own bytes, with its position).
#[derive(Debug, Clone, Copy)]
pub struct BadRecord<'a> {
    pub record: &'a InputRecord,
    /// `Some((index, bytes))` for a user record inside a KPL aggregate.
    pub user_record: Option<(u32, &'a [u8])>,
    pub why: &'a Rejection,
}

/// An object is closed once it holds this many bytes (at the next Kinesis record
/// boundary). Bounds what one batch's quarantine holds in memory: a batch of KPL
/// aggregates can expand to hundreds of thousands of bad user records.
pub const QUARANTINE_OBJECT_MAX_BYTES: usize = 8 * 1024 * 1024;

/// Renders the bad records of one batch.
pub fn render(bad: &[(&InputRecord, &Rejection)]) -> Result<Vec<u8>, serde_json::Error> {
    let bad: Vec<BadRecord<'_>> = bad
        .iter()
        .map(|(record, why)| BadRecord {
            record,
            user_record: None,
            why,
        })
        .collect();
    render_bad(&bad)
}

/// Renders the bad records of one batch, user records of aggregates included.
pub fn render_bad(bad: &[BadRecord<'_>]) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::new();
    for b in bad {
        render_line(&mut out, b)?;
    }
    Ok(out)
}

/// Appends one bad record's line.
pub fn render_line(out: &mut Vec<u8>, b: &BadRecord<'_>) -> Result<(), serde_json::Error> {
    let record = b.record;
    let data = b.user_record.map_or(record.data.as_slice(), |(_, d)| d);
    serde_json::to_writer(
        &mut *out,
        &QuarantineLine {
            shard_id: &record.shard_id,
            sequence_number: &record.sequence_number,
            kpl_user_record: b.user_record.map(|(i, _)| i),
            arrival_ms: record.arrival_ms,
            arrival_time: iso8601(record.arrival_ms),
            reason: b.why.code(),
            field: b.why.field().map(super::decode::Field::name),
            message: b.why.to_string(),
            data_base64: base64::engine::general_purpose::STANDARD.encode(data),
        },
    )?;
    out.push(b'\n');
    Ok(())
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn iso8601(ms: i64) -> String {
    let (y, mo, d) = civil_from_days(ms.div_euclid(MS_PER_DAY));
    let in_day = ms.rem_euclid(MS_PER_DAY);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1_000 % 60,
        in_day % 1_000
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::decode;

    #[test]
    fn quarantine_lines_keep_lineage_reason_and_original_bytes() {
        let r = InputRecord {
            shard_id: "shardId-000000000001".into(),
            sequence_number: "42".into(),
            arrival_ms: 1_700_000_000_123,
            data: b"\xffnot json".to_vec(),
        };
        let why = decode(&r).expect_err("bad");
        let body = render(&[(&r, &why)]).expect("render");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["shard_id"], "shardId-000000000001");
        assert_eq!(v["sequence_number"], "42");
        assert_eq!(v["arrival_time"], "2023-11-14T22:13:20.123Z");
        assert_eq!(v["reason"], "not_utf8");
        assert!(
            v.get("kpl_user_record").is_none(),
            "only user records of aggregates"
        );
        let raw = base64::engine::general_purpose::STANDARD
            .decode(v["data_base64"].as_str().unwrap_or_default())
            .expect("base64");
        assert_eq!(raw, r.data);
        assert_eq!(
            object_key("quarantine/", &r),
            "quarantine/dt=2023-11-14/shardId-000000000001/42.jsonl"
        );
    }

    #[test]
    fn an_object_key_names_the_first_and_the_last_bad_record_it_holds() {
        let at = |seq: &str| InputRecord {
            shard_id: "shardId-000000000001".into(),
            sequence_number: seq.into(),
            arrival_ms: 1_700_000_000_123,
            data: Vec::new(),
        };
        let (a, b) = (at("42"), at("57"));
        let key = |first, last| object_key_span("q/", first, last);
        let dir = "q/dt=2023-11-14/shardId-000000000001/";
        assert_eq!(key((&a, None), (&a, Some(0))), format!("{dir}42.jsonl"));
        assert_eq!(key((&a, None), (&b, None)), format!("{dir}42_57.jsonl"));
        assert_eq!(
            key((&a, Some(3)), (&a, Some(3))),
            format!("{dir}42-3.jsonl")
        );
        assert_eq!(
            key((&a, Some(3)), (&a, Some(9))),
            format!("{dir}42-3_42-9.jsonl")
        );
        assert_eq!(
            key((&a, None), (&b, Some(2))),
            format!("{dir}42_57-2.jsonl")
        );
    }
}
