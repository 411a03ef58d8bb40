#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! Proptest-based fuzzing of the record decoder: arbitrary bytes never panic,
//! and for JSON objects the strict decoder agrees with an independent reference
//! written over `serde_json::Value`.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use sightline_core::decode::{
    DEFAULT_MAX_EVENT_AGE_MS, MAX_ITEM_NAME_CHARS, MIN_TIMESTAMP_MS, decode_bytes,
};

const ARRIVAL: i64 = 1_763_900_000_000;
const FIELDS: [&str; 5] = [
    "detection_oid",
    "video_camera_oid",
    "geographical_location_oid",
    "item_name",
    "timestamp_detected",
];

/// The rules, restated over a parsed value: is this object a valid event?
fn reference_valid(v: &Value) -> bool {
    let Some(o) = v.as_object() else { return false };
    let int = |k: &str| {
        o.get(k)
            .and_then(|x| if x.is_i64() { x.as_i64() } else { None })
    };
    let ids_ok = FIELDS[..3].iter().all(|k| int(k).is_some_and(|n| n > 0));
    let name_ok = o
        .get("item_name")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.trim().is_empty() && s.chars().count() <= MAX_ITEM_NAME_CHARS);
    let oldest = MIN_TIMESTAMP_MS.max(ARRIVAL - DEFAULT_MAX_EVENT_AGE_MS);
    let ts_ok =
        int("timestamp_detected").is_some_and(|t| (oldest..=ARRIVAL + 86_400_000).contains(&t));
    ids_ok && name_ok && ts_ok
}

fn field_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        (1i64..i64::MAX).prop_map(Value::from),
        (MIN_TIMESTAMP_MS - 5..ARRIVAL + 86_400_005).prop_map(Value::from),
        (ARRIVAL - DEFAULT_MAX_EVENT_AGE_MS - 5..ARRIVAL - DEFAULT_MAX_EVENT_AGE_MS + 5)
            .prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::from),
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        Just(json!([1, 2])),
        Just(json!({"a": 1})),
    ]
}

fn event_object() -> impl Strategy<Value = Value> {
    (
        proptest::collection::vec((0usize..7, field_value()), 0..8),
        any::<bool>(),
    )
        .prop_map(|(pairs, complete)| {
            let mut o = Map::new();
            if complete {
                o.insert("detection_oid".into(), json!(7));
                o.insert("video_camera_oid".into(), json!(8));
                o.insert("geographical_location_oid".into(), json!(9));
                o.insert("item_name".into(), json!("car"));
                o.insert("timestamp_detected".into(), json!(ARRIVAL - 1));
            }
            for (k, v) in pairs {
                let key = FIELDS
                    .get(k)
                    .copied()
                    .unwrap_or(if k == 5 { "extra" } else { "other" });
                o.insert(key.into(), v);
            }
            Value::Object(o)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode_bytes(&data, ARRIVAL);
    }

    #[test]
    fn json_like_text_never_panics(text in r#"[\{\}\[\]":,0-9a-z_\-\.eE \\]{0,200}"#) {
        let _ = decode_bytes(text.as_bytes(), ARRIVAL);
    }

    #[test]
    fn the_decoder_agrees_with_the_reference_rules(v in event_object()) {
        let text = v.to_string();
        let got = decode_bytes(text.as_bytes(), ARRIVAL);
        prop_assert_eq!(got.is_ok(), reference_valid(&v), "{} -> {:?}", text, got);
        if let Ok(e) = got {
            prop_assert_eq!(Some(e.detection_oid), v["detection_oid"].as_i64());
            prop_assert_eq!(Some(e.item_name.as_ref()), v["item_name"].as_str());
        }
    }
}
