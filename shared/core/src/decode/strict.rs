//! The serde_json decoder: the judge of every record (the fast path's answers are
//! property-tested against it) and the only path for one the fast path does not
//! take. Visitors that keep what a field held (missing, null, wrong type, out of
//! range, given twice) so the rejection can say which.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{Field, RawEvent, Rejection, Slot};
use crate::model::DetectionEvent;

/// The serde_json decoder: the judge of every record, and the only path for one
/// the fast path does not take.
pub(super) fn strict(
    text: &str,
    arrival_ms: i64,
    max_age_ms: i64,
) -> Result<DetectionEvent<'_>, Rejection> {
    let first = text.trim_start().as_bytes().first().copied();
    if first != Some(b'{') {
        return Err(match serde_json::from_str::<IgnoredAny>(text) {
            Ok(_) => Rejection::NotAnObject {
                found: match first {
                    Some(b'[') => "an array",
                    Some(b'"') => "a string",
                    Some(b'n') => "null",
                    Some(b't' | b'f') => "a boolean",
                    _ => "a number",
                },
            },
            Err(e) => Rejection::InvalidJson {
                detail: e.to_string(),
            },
        });
    }
    let raw: RawEvent<'_> = serde_json::from_str(text).map_err(|e| Rejection::InvalidJson {
        detail: e.to_string(),
    })?;
    raw.validate(arrival_ms, max_age_ms)
}

enum Key {
    Known(Field),
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "detection_oid" => Key::Known(Field::DetectionOid),
                    "video_camera_oid" => Key::Known(Field::VideoCameraOid),
                    "geographical_location_oid" => Key::Known(Field::GeographicalLocationOid),
                    "item_name" => Key::Known(Field::ItemName),
                    "timestamp_detected" => Key::Known(Field::TimestampDetected),
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

/// Consumes any nested value so the parser can go on; reports only its kind.
fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

struct IntSlot(Slot<i64>);

impl<'de> Deserialize<'de> for IntSlot {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = IntSlot;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an int64")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IntSlot, E> {
                Ok(IntSlot(Slot::Value(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IntSlot, E> {
                Ok(IntSlot(match i64::try_from(v) {
                    Ok(v) => Slot::Value(v),
                    Err(_) => Slot::OutOfRange(v.to_string()),
                }))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<IntSlot, E> {
                // serde_json hands integers beyond u64 to us as floats.
                Ok(IntSlot(if v.fract() == 0.0 && v.abs() >= 9.2e18 {
                    Slot::OutOfRange(format!("{v:e}"))
                } else {
                    Slot::WrongType("a number with a fraction or exponent")
                }))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<IntSlot, E> {
                Ok(IntSlot(Slot::WrongType("a string")))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<IntSlot, E> {
                Ok(IntSlot(Slot::WrongType("a boolean")))
            }
            fn visit_unit<E: de::Error>(self) -> Result<IntSlot, E> {
                Ok(IntSlot(Slot::Null))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<IntSlot, A::Error> {
                drain_seq(seq)?;
                Ok(IntSlot(Slot::WrongType("an array")))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<IntSlot, A::Error> {
                drain_map(map)?;
                Ok(IntSlot(Slot::WrongType("an object")))
            }
        }
        d.deserialize_any(V)
    }
}

struct StrSlot<'a>(Slot<Cow<'a, str>>);

impl<'de> Deserialize<'de> for StrSlot<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrSlot<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<StrSlot<'de>, E> {
                Ok(StrSlot(Slot::Value(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StrSlot<'de>, E> {
                Ok(StrSlot(Slot::Value(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<StrSlot<'de>, E> {
                Ok(StrSlot(Slot::Value(Cow::Owned(v))))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<StrSlot<'de>, E> {
                Ok(StrSlot(Slot::WrongType("a number")))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<StrSlot<'de>, E> {
                Ok(StrSlot(Slot::WrongType("a number")))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<StrSlot<'de>, E> {
                Ok(StrSlot(Slot::WrongType("a number")))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<StrSlot<'de>, E> {
                Ok(StrSlot(Slot::WrongType("a boolean")))
            }
            fn visit_unit<E: de::Error>(self) -> Result<StrSlot<'de>, E> {
                Ok(StrSlot(Slot::Null))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<StrSlot<'de>, A::Error> {
                drain_seq(seq)?;
                Ok(StrSlot(Slot::WrongType("an array")))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<StrSlot<'de>, A::Error> {
                drain_map(map)?;
                Ok(StrSlot(Slot::WrongType("an object")))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for RawEvent<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawEvent<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Dataset A event object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawEvent<'de>, A::Error> {
                let mut raw = RawEvent::default();
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::Known(Field::DetectionOid) => {
                            raw.detection_oid.set(map.next_value::<IntSlot>()?.0);
                        }
                        Key::Known(Field::VideoCameraOid) => {
                            raw.video_camera_oid.set(map.next_value::<IntSlot>()?.0);
                        }
                        Key::Known(Field::GeographicalLocationOid) => raw
                            .geographical_location_oid
                            .set(map.next_value::<IntSlot>()?.0),
                        Key::Known(Field::TimestampDetected) => {
                            raw.timestamp_detected.set(map.next_value::<IntSlot>()?.0);
                        }
                        Key::Known(Field::ItemName) => {
                            raw.item_name.set(map.next_value::<StrSlot<'de>>()?.0);
                        }
                        Key::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(raw)
            }
        }
        d.deserialize_map(V)
    }
}
