//! Decoding and validating one Kinesis record into a Dataset A event.
//!
//! Strict on purpose: no coercion of `"123"` to 123, no floats for integers, and
//! every rejection carries a stable reason code plus a human message.

use std::borrow::Cow;
use std::fmt;

use crate::dataset_b::DatasetB;
use crate::kpl::KplError;
use crate::model::{DetectionEvent, InputRecord, OutputEvent};
use crate::time::{MS_PER_DAY, UtcHour};

mod fast;
mod strict;

use strict::strict;

/// 2000-01-01T00:00:00Z: anything earlier is a broken camera clock.
pub const MIN_TIMESTAMP_MS: i64 = 946_684_800_000;
/// How far past its Kinesis arrival an event's timestamp may be.
pub const MAX_FUTURE_SKEW_MS: i64 = MS_PER_DAY;
/// How far before its arrival an event's timestamp may be (`MAX_EVENT_AGE_SECS`).
/// Older events are quarantined as `too_old`: a few cameras with bad clocks must
/// not open hundreds of date/hour partitions in Firehose (500 active at most).
pub const DEFAULT_MAX_EVENT_AGE_MS: i64 = 7 * MS_PER_DAY;
pub const MAX_ITEM_NAME_CHARS: usize = 5_000;

/// The five Dataset A fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    DetectionOid,
    VideoCameraOid,
    GeographicalLocationOid,
    ItemName,
    TimestampDetected,
}

impl Field {
    pub fn name(self) -> &'static str {
        match self {
            Field::DetectionOid => "detection_oid",
            Field::VideoCameraOid => "video_camera_oid",
            Field::GeographicalLocationOid => "geographical_location_oid",
            Field::ItemName => "item_name",
            Field::TimestampDetected => "timestamp_detected",
        }
    }
}

/// Why a record was quarantined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    NotUtf8 {
        valid_up_to: usize,
    },
    InvalidJson {
        detail: String,
    },
    NotAnObject {
        found: &'static str,
    },
    MissingField(Field),
    NullField(Field),
    WrongType {
        field: Field,
        found: &'static str,
    },
    OutOfRange {
        field: Field,
        value: String,
    },
    DuplicateField(Field),
    EmptyItemName,
    ItemNameTooLong {
        chars: usize,
    },
    TimestampTooOld {
        value: i64,
    },
    TimestampInFuture {
        value: i64,
        arrival_ms: i64,
    },
    /// Older than the configured age before its arrival.
    TooOld {
        value: i64,
        arrival_ms: i64,
        max_age_ms: i64,
    },
    /// A KPL aggregate that cannot be split (quarantined whole).
    Aggregate(KplError),
}

impl Rejection {
    /// Stable, machine-readable reason code (metrics dimension and quarantine field).
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::NotUtf8 { .. } => "not_utf8",
            Rejection::InvalidJson { .. } => "invalid_json",
            Rejection::NotAnObject { .. } => "not_an_object",
            Rejection::MissingField(_) => "missing_field",
            Rejection::NullField(_) => "null_field",
            Rejection::WrongType { .. } => "wrong_type",
            Rejection::OutOfRange { .. } => "out_of_range",
            Rejection::DuplicateField(_) => "duplicate_field",
            Rejection::EmptyItemName => "empty_item_name",
            Rejection::ItemNameTooLong { .. } => "item_name_too_long",
            Rejection::TimestampTooOld { .. } => "timestamp_too_old",
            Rejection::TimestampInFuture { .. } => "timestamp_in_future",
            Rejection::TooOld { .. } => "too_old",
            Rejection::Aggregate(e) => e.code(),
        }
    }

    /// The field at fault, when there is one.
    pub fn field(&self) -> Option<Field> {
        match self {
            Rejection::MissingField(f)
            | Rejection::NullField(f)
            | Rejection::DuplicateField(f)
            | Rejection::WrongType { field: f, .. }
            | Rejection::OutOfRange { field: f, .. } => Some(*f),
            Rejection::EmptyItemName | Rejection::ItemNameTooLong { .. } => Some(Field::ItemName),
            Rejection::TimestampTooOld { .. }
            | Rejection::TimestampInFuture { .. }
            | Rejection::TooOld { .. } => Some(Field::TimestampDetected),
            _ => None,
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::NotUtf8 { valid_up_to } => {
                write!(
                    f,
                    "record is not UTF-8 (invalid byte at offset {valid_up_to})"
                )
            }
            Rejection::InvalidJson { detail } => write!(f, "record is not valid JSON: {detail}"),
            Rejection::NotAnObject { found } => {
                write!(f, "record is JSON but not an object (found {found})")
            }
            Rejection::MissingField(x) => write!(f, "required field `{}` is missing", x.name()),
            Rejection::NullField(x) => write!(f, "field `{}` is null", x.name()),
            Rejection::WrongType { field, found } => {
                let want = if *field == Field::ItemName {
                    "a string"
                } else {
                    "an integer"
                };
                write!(f, "field `{}` must be {want}, found {found}", field.name())
            }
            Rejection::OutOfRange { field, value } => write!(
                f,
                "field `{}` is out of range ({value}); ids must be positive int64",
                field.name()
            ),
            Rejection::DuplicateField(x) => write!(f, "field `{}` appears twice", x.name()),
            Rejection::EmptyItemName => write!(f, "`item_name` is empty or blank"),
            Rejection::ItemNameTooLong { chars } => write!(
                f,
                "`item_name` has {chars} characters; the limit is {MAX_ITEM_NAME_CHARS}"
            ),
            Rejection::TimestampTooOld { value } => write!(
                f,
                "`timestamp_detected` {value} is before 2000-01-01 (is it in seconds, not milliseconds?)"
            ),
            Rejection::TimestampInFuture { value, arrival_ms } => write!(
                f,
                "`timestamp_detected` {value} is more than a day after the record's arrival ({arrival_ms})"
            ),
            Rejection::TooOld {
                value,
                arrival_ms,
                max_age_ms,
            } => write!(
                f,
                "`timestamp_detected` {value} is more than {} s before the record's arrival ({arrival_ms}); older events are refused (MAX_EVENT_AGE_SECS)",
                max_age_ms / 1_000
            ),
            Rejection::Aggregate(e) => write!(f, "KPL aggregated record cannot be split: {e}"),
        }
    }
}

/// Decodes and validates a record's payload.
pub fn decode(record: &InputRecord) -> Result<DetectionEvent<'_>, Rejection> {
    decode_bytes(&record.data, record.arrival_ms)
}

/// Decodes and validates one event's bytes; `arrival_ms` (the Kinesis arrival,
/// or "now" at the front door) bounds how far in the future, and how far in the
/// past ([`DEFAULT_MAX_EVENT_AGE_MS`]), its timestamp may be.
pub fn decode_bytes(data: &[u8], arrival_ms: i64) -> Result<DetectionEvent<'_>, Rejection> {
    decode_bytes_with(data, arrival_ms, DEFAULT_MAX_EVENT_AGE_MS)
}

/// [`decode_bytes`] with another oldest age than the default.
pub fn decode_bytes_with(
    data: &[u8],
    arrival_ms: i64,
    max_age_ms: i64,
) -> Result<DetectionEvent<'_>, Rejection> {
    let text = std::str::from_utf8(data).map_err(|e| Rejection::NotUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;
    match fast::common_event(text) {
        Some(raw) => raw.validate(arrival_ms, max_age_ms),
        None => strict(text, arrival_ms, max_age_ms),
    }
}

/// Decodes, validates and joins with Dataset B.
pub fn decode_and_enrich<'a>(
    record: &'a InputRecord,
    locations: &DatasetB<'a>,
) -> Result<OutputEvent<'a>, Rejection> {
    decode(record).map(|event| enrich(event, record, locations))
}

/// Joins a valid event with Dataset B and adds the partition and lineage columns.
pub fn enrich<'a>(
    event: DetectionEvent<'a>,
    record: &'a InputRecord,
    locations: &DatasetB<'a>,
) -> OutputEvent<'a> {
    OutputEvent {
        geographical_location: locations.lookup(event.geographical_location_oid),
        partition: UtcHour::from_epoch_ms(event.timestamp_detected),
        detection_oid: event.detection_oid,
        video_camera_oid: event.video_camera_oid,
        geographical_location_oid: event.geographical_location_oid,
        item_name: event.item_name,
        timestamp_detected: event.timestamp_detected,
        ingested_at: record.arrival_ms,
        source_shard: &record.shard_id,
        source_sequence: &record.sequence_number,
    }
}

/// A field as found in the JSON, before validation.
#[derive(Debug, Default)]
enum Slot<T> {
    #[default]
    Missing,
    Null,
    WrongType(&'static str),
    OutOfRange(String),
    Duplicate,
    Value(T),
}

impl<T> Slot<T> {
    fn set(&mut self, next: Slot<T>) {
        *self = match self {
            Slot::Missing => next,
            _ => Slot::Duplicate,
        };
    }

    fn take(self, field: Field) -> Result<T, Rejection> {
        match self {
            Slot::Value(v) => Ok(v),
            Slot::Missing => Err(Rejection::MissingField(field)),
            Slot::Null => Err(Rejection::NullField(field)),
            Slot::WrongType(found) => Err(Rejection::WrongType { field, found }),
            Slot::OutOfRange(value) => Err(Rejection::OutOfRange { field, value }),
            Slot::Duplicate => Err(Rejection::DuplicateField(field)),
        }
    }
}

#[derive(Debug, Default)]
struct RawEvent<'a> {
    detection_oid: Slot<i64>,
    video_camera_oid: Slot<i64>,
    geographical_location_oid: Slot<i64>,
    item_name: Slot<Cow<'a, str>>,
    timestamp_detected: Slot<i64>,
}

impl<'a> RawEvent<'a> {
    fn validate(self, arrival_ms: i64, max_age_ms: i64) -> Result<DetectionEvent<'a>, Rejection> {
        let detection_oid = positive(
            self.detection_oid.take(Field::DetectionOid)?,
            Field::DetectionOid,
        )?;
        let video_camera_oid = positive(
            self.video_camera_oid.take(Field::VideoCameraOid)?,
            Field::VideoCameraOid,
        )?;
        let geographical_location_oid = positive(
            self.geographical_location_oid
                .take(Field::GeographicalLocationOid)?,
            Field::GeographicalLocationOid,
        )?;
        let item_name = self.item_name.take(Field::ItemName)?;
        if item_name.trim().is_empty() {
            return Err(Rejection::EmptyItemName);
        }
        // Byte length bounds char count from above, so only long names are counted.
        if item_name.len() > MAX_ITEM_NAME_CHARS {
            let chars = item_name.chars().count();
            if chars > MAX_ITEM_NAME_CHARS {
                return Err(Rejection::ItemNameTooLong { chars });
            }
        }
        let timestamp_detected = self.timestamp_detected.take(Field::TimestampDetected)?;
        if timestamp_detected < MIN_TIMESTAMP_MS {
            return Err(Rejection::TimestampTooOld {
                value: timestamp_detected,
            });
        }
        if timestamp_detected < arrival_ms.saturating_sub(max_age_ms) {
            return Err(Rejection::TooOld {
                value: timestamp_detected,
                arrival_ms,
                max_age_ms,
            });
        }
        if timestamp_detected > arrival_ms.saturating_add(MAX_FUTURE_SKEW_MS) {
            return Err(Rejection::TimestampInFuture {
                value: timestamp_detected,
                arrival_ms,
            });
        }
        Ok(DetectionEvent {
            detection_oid,
            video_camera_oid,
            geographical_location_oid,
            item_name,
            timestamp_detected,
        })
    }
}

fn positive(value: i64, field: Field) -> Result<i64, Rejection> {
    if value > 0 {
        Ok(value)
    } else {
        Err(Rejection::OutOfRange {
            field,
            value: value.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARRIVAL: i64 = 1_700_000_000_000;

    fn rec(data: &[u8]) -> InputRecord {
        InputRecord {
            shard_id: "shardId-000000000000".into(),
            sequence_number: "1".into(),
            arrival_ms: ARRIVAL,
            data: data.to_vec(),
        }
    }

    fn reject(data: &str) -> Rejection {
        decode(&rec(data.as_bytes())).expect_err("should be rejected")
    }

    const GOOD: &str = r#"{"detection_oid":7,"video_camera_oid":8,"geographical_location_oid":9,"item_name":"car","timestamp_detected":1699999999000}"#;

    #[test]
    fn valid_event_decodes_and_ignores_extra_fields() {
        let data = GOOD.replace("}", r#","extra":{"deep":[1,2,{"x":null}]}}"#);
        let r = rec(data.as_bytes());
        let e = decode(&r).expect("valid");
        assert_eq!(e.detection_oid, 7);
        assert_eq!(e.item_name, "car");
        assert!(
            matches!(e.item_name, Cow::Borrowed(_)),
            "no copy for plain strings"
        );
    }

    #[test]
    fn escaped_item_names_are_unescaped() {
        let r = rec(GOOD.replace("\"car\"", r#""c\u00e4r \"x\"""#).as_bytes());
        assert_eq!(decode(&r).expect("valid").item_name, "cär \"x\"");
    }

    #[test]
    fn non_utf8_is_rejected_with_offset() {
        assert_eq!(
            decode(&rec(b"{\"a\":\xff}")).expect_err("bad"),
            Rejection::NotUtf8 { valid_up_to: 5 }
        );
    }

    #[test]
    fn non_objects_and_broken_json_are_told_apart() {
        assert_eq!(reject("[1,2]").code(), "not_an_object");
        assert_eq!(reject("  42").code(), "not_an_object");
        assert_eq!(reject("null").code(), "not_an_object");
        assert_eq!(reject("{\"detection_oid\":").code(), "invalid_json");
        assert_eq!(reject("").code(), "invalid_json");
        assert_eq!(reject(&format!("{GOOD} trailing")).code(), "invalid_json");
    }

    #[test]
    fn types_are_never_coerced() {
        let s = reject(&GOOD.replace(":7,", ":\"7\","));
        assert_eq!(
            s,
            Rejection::WrongType {
                field: Field::DetectionOid,
                found: "a string"
            }
        );
        assert_eq!(reject(&GOOD.replace(":7,", ":7.0,")).code(), "wrong_type");
        assert_eq!(reject(&GOOD.replace(":7,", ":7e0,")).code(), "wrong_type");
        assert_eq!(reject(&GOOD.replace(":7,", ":true,")).code(), "wrong_type");
        assert_eq!(reject(&GOOD.replace(":7,", ":[7],")).code(), "wrong_type");
        assert_eq!(reject(&GOOD.replace("\"car\"", "5")).code(), "wrong_type");
    }

    #[test]
    fn missing_null_duplicate_and_out_of_range_fields_are_named() {
        let missing = GOOD.replace("\"video_camera_oid\":8,", "");
        assert_eq!(
            reject(&missing),
            Rejection::MissingField(Field::VideoCameraOid)
        );
        assert_eq!(
            reject(&GOOD.replace(":9,", ":null,")),
            Rejection::NullField(Field::GeographicalLocationOid)
        );
        let dup = GOOD.replace("{", "{\"detection_oid\":1,");
        assert_eq!(reject(&dup), Rejection::DuplicateField(Field::DetectionOid));
        assert_eq!(reject(&GOOD.replace(":7,", ":-7,")).code(), "out_of_range");
        assert_eq!(reject(&GOOD.replace(":7,", ":0,")).code(), "out_of_range");
        assert_eq!(
            reject(&GOOD.replace(":7,", ":9223372036854775808,")).code(),
            "out_of_range"
        );
        assert_eq!(
            reject(&GOOD.replace(":7,", ":123456789012345678901234567890,")).code(),
            "out_of_range"
        );
    }

    #[test]
    fn item_name_must_be_1_to_5000_characters() {
        assert_eq!(
            reject(&GOOD.replace("\"car\"", "\"\"")),
            Rejection::EmptyItemName
        );
        assert_eq!(
            reject(&GOOD.replace("\"car\"", "\"  \"")),
            Rejection::EmptyItemName
        );
        let max = "é".repeat(5_000); // 10,000 bytes but 5,000 characters: allowed
        let r = rec(GOOD.replace("car", &max).as_bytes());
        assert!(decode(&r).is_ok());
        let over = "a".repeat(5_001);
        assert_eq!(
            reject(&GOOD.replace("car", &over)),
            Rejection::ItemNameTooLong { chars: 5_001 }
        );
    }

    #[test]
    fn implausible_timestamps_are_rejected() {
        let old = GOOD.replace("1699999999000", "1699999999"); // seconds, not ms
        assert_eq!(reject(&old).code(), "timestamp_too_old");
        let edge = (ARRIVAL + MAX_FUTURE_SKEW_MS).to_string();
        assert!(decode(&rec(GOOD.replace("1699999999000", &edge).as_bytes())).is_ok());
        let future = (ARRIVAL + MAX_FUTURE_SKEW_MS + 1).to_string();
        assert_eq!(
            reject(&GOOD.replace("1699999999000", &future)).code(),
            "timestamp_in_future"
        );
    }

    #[test]
    fn deep_nesting_is_handled_without_recursion() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let ignored = GOOD.replace("}", &format!(",\"x\":{deep}}}"));
        assert!(
            decode(&rec(ignored.as_bytes())).is_ok(),
            "unknown fields are skipped"
        );
        let in_field = GOOD.replace(":7,", &format!(":{deep},"));
        assert_eq!(reject(&in_field).code(), "wrong_type");
        let unclosed = GOOD.replace(":7,", &format!(":{},", "[".repeat(100_000)));
        assert_eq!(reject(&unclosed).code(), "invalid_json");
    }

    #[test]
    fn every_rejection_has_a_readable_message() {
        for r in [
            reject("[]"),
            reject("{"),
            reject(&GOOD.replace(":7,", ":\"7\",")),
            reject(&GOOD.replace("\"car\"", "\"\"")),
        ] {
            let msg = r.to_string();
            assert!(msg.len() > 10, "{msg}");
        }
    }

    #[test]
    fn enrichment_joins_dataset_b_and_keeps_unknown_ids() {
        let b = DatasetB::embedded().expect("dataset");
        let known = rec(GOOD.replace(":9,", ":1,").as_bytes());
        let e = decode_and_enrich(&known, &b).expect("valid");
        assert_eq!(e.geographical_location, Some("Ang Mo Kio"));
        assert_eq!(e.ingested_at, ARRIVAL);
        assert_eq!(e.source_sequence, "1");
        let unknown = rec(GOOD.replace(":9,", ":999,").as_bytes());
        assert_eq!(
            decode_and_enrich(&unknown, &b)
                .expect("valid")
                .geographical_location,
            None
        );
    }
}
