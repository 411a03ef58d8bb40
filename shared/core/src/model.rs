//! The records that flow through a batch: what Kinesis hands us, the Dataset A
//! event inside it, and the enriched line we deliver.

use std::borrow::Cow;

use serde::ser::{Serialize, SerializeStruct, Serializer};

use crate::time::UtcHour;

/// One Kinesis record, independent of the Lambda event types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRecord {
    pub shard_id: String,
    pub sequence_number: String,
    /// `approximateArrivalTimestamp`, epoch milliseconds.
    pub arrival_ms: i64,
    pub data: Vec<u8>,
}

impl InputRecord {
    /// The claim owner: `shardId/sequenceNumber`, unique per Kinesis record.
    pub fn owner(&self) -> String {
        // Built by hand: one per event on the claim path, where `format!` cost more
        // than the claim itself (the 1,000-record batch bench).
        let mut out = String::with_capacity(self.shard_id.len() + 1 + self.sequence_number.len());
        out.push_str(&self.shard_id);
        out.push('/');
        out.push_str(&self.sequence_number);
        out
    }

    /// The claim owner of user record `index` of a KPL aggregate in this record.
    pub fn user_record_owner(&self, index: u32) -> String {
        let mut digits = itoa::Buffer::new();
        let index = digits.format(index);
        let mut out = String::with_capacity(
            self.shard_id.len() + self.sequence_number.len() + 2 + index.len(),
        );
        out.push_str(&self.shard_id);
        out.push('/');
        out.push_str(&self.sequence_number);
        out.push('/');
        out.push_str(index);
        out
    }
}

/// A validated Dataset A event. `item_name` borrows from the record when it has no escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectionEvent<'a> {
    pub detection_oid: i64,
    pub video_camera_oid: i64,
    pub geographical_location_oid: i64,
    pub item_name: Cow<'a, str>,
    pub timestamp_detected: i64,
}

/// The delivered row: Dataset A joined with Dataset B, plus partition and lineage columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputEvent<'a> {
    pub detection_oid: i64,
    pub video_camera_oid: i64,
    pub geographical_location_oid: i64,
    pub item_name: Cow<'a, str>,
    pub timestamp_detected: i64,
    /// `None` when the location id is not in Dataset B (delivered and counted).
    pub geographical_location: Option<&'a str>,
    /// UTC date and hour of `timestamp_detected` (`event_date`, `event_hour`).
    pub partition: UtcHour,
    /// Kinesis arrival time, epoch ms.
    pub ingested_at: i64,
    pub source_shard: &'a str,
    pub source_sequence: &'a str,
}

/// The output schema: column name and its Glue/Athena type, in order. The last two
/// are the Hive partition columns. README.md and `infra/` are checked against this.
pub const OUTPUT_COLUMNS: [(&str, &str); 11] = [
    ("detection_oid", "bigint"),
    ("video_camera_oid", "bigint"),
    ("geographical_location_oid", "bigint"),
    ("item_name", "string"),
    ("timestamp_detected", "bigint"),
    ("geographical_location", "string"),
    ("ingested_at", "bigint"),
    ("source_shard", "string"),
    ("source_sequence", "string"),
    ("event_date", "string"),
    ("event_hour", "string"),
];

impl OutputEvent<'_> {
    pub fn event_date(&self) -> String {
        self.partition.date_string()
    }

    pub fn event_hour(&self) -> String {
        self.partition.hour_string()
    }

    /// Appends this event as one JSON object and a newline. Hand-written for the
    /// hot path; a test keeps it equal to the `Serialize` impl.
    pub fn write_json_line(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        let mut num = itoa::Buffer::new();
        let mut int = |out: &mut Vec<u8>, key: &[u8], v: i64| {
            out.extend_from_slice(key);
            out.extend_from_slice(num.format(v).as_bytes());
        };
        int(out, b"{\"detection_oid\":", self.detection_oid);
        int(out, b",\"video_camera_oid\":", self.video_camera_oid);
        int(
            out,
            b",\"geographical_location_oid\":",
            self.geographical_location_oid,
        );
        out.extend_from_slice(b",\"item_name\":");
        write_json_str(out, self.item_name.as_ref())?;
        int(out, b",\"timestamp_detected\":", self.timestamp_detected);
        out.extend_from_slice(b",\"geographical_location\":");
        match self.geographical_location {
            Some(name) => write_json_str(out, name)?,
            None => out.extend_from_slice(b"null"),
        }
        let mut date = [0u8; 10];
        let mut hour = [0u8; 2];
        self.partition.write_date(&mut date);
        self.partition.write_hour(&mut hour);
        out.extend_from_slice(b",\"event_date\":\"");
        out.extend_from_slice(&date);
        out.extend_from_slice(b"\",\"event_hour\":\"");
        out.extend_from_slice(&hour);
        out.push(b'"');
        int(out, b",\"ingested_at\":", self.ingested_at);
        out.extend_from_slice(b",\"source_shard\":");
        write_json_str(out, self.source_shard)?;
        out.extend_from_slice(b",\"source_sequence\":");
        write_json_str(out, self.source_sequence)?;
        out.extend_from_slice(b"}\n");
        Ok(())
    }
}

/// A JSON string: copied as is when nothing in it needs escaping (the common case:
/// names, shard ids and sequence numbers), otherwise escaped by serde_json.
fn write_json_str(out: &mut Vec<u8>, s: &str) -> Result<(), serde_json::Error> {
    // No early exit, so the check vectorises.
    let plain = s
        .bytes()
        .fold(true, |ok, c| ok & (c >= 0x20) & (c != b'"') & (c != b'\\'));
    if plain {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        Ok(())
    } else {
        serde_json::to_writer(&mut *out, s)
    }
}

impl Serialize for OutputEvent<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut date = [0u8; 10];
        let mut hour = [0u8; 2];
        self.partition.write_date(&mut date);
        self.partition.write_hour(&mut hour);
        // Both buffers hold ASCII digits and dashes only.
        let date = std::str::from_utf8(&date).unwrap_or_default();
        let hour = std::str::from_utf8(&hour).unwrap_or_default();
        let mut s = serializer.serialize_struct("OutputEvent", 11)?;
        s.serialize_field("detection_oid", &self.detection_oid)?;
        s.serialize_field("video_camera_oid", &self.video_camera_oid)?;
        s.serialize_field("geographical_location_oid", &self.geographical_location_oid)?;
        s.serialize_field("item_name", &self.item_name)?;
        s.serialize_field("timestamp_detected", &self.timestamp_detected)?;
        s.serialize_field("geographical_location", &self.geographical_location)?;
        s.serialize_field("event_date", date)?;
        s.serialize_field("event_hour", hour)?;
        s.serialize_field("ingested_at", &self.ingested_at)?;
        s.serialize_field("source_shard", self.source_shard)?;
        s.serialize_field("source_sequence", self.source_sequence)?;
        s.end()
    }
}

/// The ingest front door's request limits (API Gateway allows more; these keep
/// one request within one `PutRecords` call and well inside Lambda's payload).
pub const INGEST_MAX_EVENTS: usize = 500;
/// See [`INGEST_MAX_EVENTS`].
pub const INGEST_MAX_BODY_BYTES: usize = 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_written_byte_for_byte_as_serde_json_writes_them() {
        for s in [
            "",
            "car",
            "per\"son",
            "a\\b",
            "tab\there",
            "\u{1f}",
            "\u{0}",
            "é ü 日本",
            "\u{7f}",
            "a/b",
        ] {
            let mut ours = Vec::new();
            write_json_str(&mut ours, s).expect("writes");
            let theirs = serde_json::to_vec(s).expect("serialises");
            assert_eq!(ours, theirs, "{s:?}");
        }
    }

    #[test]
    fn output_line_has_every_schema_column_once() {
        let e = OutputEvent {
            detection_oid: 1,
            video_camera_oid: 2,
            geographical_location_oid: 3,
            item_name: Cow::Borrowed("per\"son"),
            timestamp_detected: 1_700_000_000_000,
            geographical_location: None,
            partition: UtcHour::from_epoch_ms(1_700_000_000_000),
            ingested_at: 1_700_000_000_500,
            source_shard: "shardId-000000000000",
            source_sequence: "4959",
        };
        let mut buf = Vec::new();
        e.write_json_line(&mut buf).expect("serialises");
        assert_eq!(buf.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&buf).expect("valid json");
        let obj = v.as_object().expect("object");
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut want: Vec<&str> = OUTPUT_COLUMNS.iter().map(|(n, _)| *n).collect();
        want.sort_unstable();
        assert_eq!(keys, want);
        assert_eq!(v["item_name"], "per\"son");
        assert_eq!(v["geographical_location"], serde_json::Value::Null);
        assert_eq!(v["event_date"], "2023-11-14");
        assert_eq!(v["event_hour"], "22");
        let via_serde = serde_json::to_value(&e).expect("serialises");
        assert_eq!(
            v, via_serde,
            "hand-written encoder equals the Serialize impl"
        );
    }
}
