//! The fast path for the common record: one flat object holding each of the five
//! fields once, the integers as 1 to 19 plain digits within int64, an item name
//! without escapes or control characters, JSON whitespace anywhere between tokens,
//! and nothing else.
//! Anything else (an unknown or repeated key, a sign, a fraction, an escape, `null`,
//! a nested value, trailing bytes) returns `None` and goes to the serde_json decoder,
//! which judges it. Where this path answers, both give the same event: what it
//! accepts is exactly JSON that serde_json reads to the same values (the property
//! test below runs both on the same texts).

use std::borrow::Cow;

use super::{Field, RawEvent, Slot};

const ALL_FIELDS: u8 = 0b1_1111;
/// At most 19 digits: every such number fits a u64, and one check keeps it within
/// int64. Random 63-bit ids (detection_oid) mostly have 19.
const MAX_DIGITS: usize = 19;

pub(super) fn common_event(text: &str) -> Option<RawEvent<'_>> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    let mut raw = RawEvent::default();
    let mut seen = 0u8;
    loop {
        i = skip_ws(b, i + 1);
        if b.get(i) != Some(&b'"') {
            return None;
        }
        // The key is told by its first byte, then compared whole with its closing quote.
        let rest = b.get(i + 1..)?;
        let (field, key, bit): (Field, &[u8], u8) = match rest.first()? {
            b'd' => (Field::DetectionOid, b"detection_oid\"", 1),
            b'v' => (Field::VideoCameraOid, b"video_camera_oid\"", 2),
            b'g' => (
                Field::GeographicalLocationOid,
                b"geographical_location_oid\"",
                4,
            ),
            b'i' => (Field::ItemName, b"item_name\"", 8),
            b't' => (Field::TimestampDetected, b"timestamp_detected\"", 16),
            _ => return None,
        };
        if !rest.starts_with(key) {
            return None;
        }
        let key_end = i + key.len();
        if seen & bit != 0 {
            return None;
        }
        seen |= bit;
        i = skip_ws(b, key_end + 1);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        if field == Field::ItemName {
            if b.get(i) != Some(&b'"') {
                return None;
            }
            let end = plain_string_end(b, i + 1)?;
            // Both ends are ASCII quotes, so they are char boundaries.
            raw.item_name = Slot::Value(Cow::Borrowed(text.get(i + 1..end)?));
            i = end + 1;
        } else {
            let (value, end) = plain_int(b, i)?;
            let slot = match field {
                Field::DetectionOid => &mut raw.detection_oid,
                Field::VideoCameraOid => &mut raw.video_camera_oid,
                Field::GeographicalLocationOid => &mut raw.geographical_location_oid,
                _ => &mut raw.timestamp_detected,
            };
            *slot = Slot::Value(value);
            i = end;
        }
        i = skip_ws(b, i);
        match b.get(i) {
            Some(b',') => {}
            Some(b'}') => break,
            _ => return None,
        }
    }
    (seen == ALL_FIELDS && skip_ws(b, i + 1) == b.len()).then_some(raw)
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The index of the closing quote of a string starting at `start`, if the string
/// has no escape and no control character.
fn plain_string_end(b: &[u8], start: usize) -> Option<usize> {
    let rest = b.get(start..)?;
    let len = rest
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
    (rest.get(len) == Some(&b'"')).then_some(start + len)
}

/// A non-negative int64 of 1 to 19 digits with no leading zero, not followed by
/// a fraction or an exponent; its value and the index after it.
fn plain_int(b: &[u8], start: usize) -> Option<(i64, usize)> {
    let mut value: u64 = 0;
    let mut i = start;
    while let Some(&d @ b'0'..=b'9') = b.get(i) {
        if i - start == MAX_DIGITS {
            return None;
        }
        value = value * 10 + u64::from(d - b'0');
        i += 1;
    }
    // Over int64 the serde_json decoder judges (it reads a u64).
    let value = i64::try_from(value).ok()?;
    let digits = i - start;
    if digits == 0 || (digits > 1 && b.get(start) == Some(&b'0')) {
        return None;
    }
    if matches!(b.get(i), Some(b'.' | b'e' | b'E')) {
        return None;
    }
    Some((value, i))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::strict;
    use super::*;

    const ARRIVAL: i64 = 1_763_900_000_000;
    const AGE: i64 = super::super::DEFAULT_MAX_EVENT_AGE_MS;

    fn both(text: &str) -> Option<(String, String)> {
        let fast = common_event(text)?.validate(ARRIVAL, AGE);
        let judged = strict(text, ARRIVAL, AGE);
        Some((format!("{fast:?}"), format!("{judged:?}")))
    }

    #[test]
    fn the_common_event_takes_the_fast_path_and_decodes_as_the_strict_decoder_does() {
        let text = r#"{"detection_oid":7,"video_camera_oid":12,"geographical_location_oid":3,"item_name":"car","timestamp_detected":1763899999000}"#;
        let (fast, judged) = both(text).expect("fast path");
        assert_eq!(fast, judged);
        assert!(fast.starts_with("Ok("), "{fast}");
        let spaced = " {\n \"item_name\" : \"person\" ,\t\"timestamp_detected\":1763899999000,\"detection_oid\":1,\"geographical_location_oid\":0,\"video_camera_oid\":5 } \r\n";
        let (fast, judged) = both(spaced).expect("fast path");
        assert_eq!(fast, judged);
        assert!(fast.contains("OutOfRange"), "{fast}");
    }

    #[test]
    fn a_19_digit_id_up_to_int64s_limit_takes_the_fast_path() {
        // Random 63-bit ids, the common detection_oid, mostly have 19 digits.
        for id in ["1234567890123456789", "9223372036854775807"] {
            let text = format!(
                r#"{{"detection_oid":{id},"video_camera_oid":12,"geographical_location_oid":3,"item_name":"car","timestamp_detected":1763899999000}}"#
            );
            let (fast, judged) = both(&text).expect("fast path");
            assert_eq!(fast, judged);
            assert!(fast.contains(id), "{fast}");
        }
    }

    #[test]
    fn anything_unusual_is_left_to_the_strict_decoder() {
        let base = |id: &str, name: &str| {
            format!(
                r#"{{"detection_oid":{id},"video_camera_oid":12,"geographical_location_oid":3,"item_name":{name},"timestamp_detected":1763899999000}}"#
            )
        };
        for text in [
            base("-7", r#""car""#),
            base("07", r#""car""#),
            base("7.0", r#""car""#),
            base("7e2", r#""car""#),
            base("9223372036854775808", r#""car""#),
            base("12345678901234567890", r#""car""#),
            base("null", r#""car""#),
            base(r#""7""#, r#""car""#),
            base("7", r#""c\"ar""#),
            base("7", "\"c\tar\""),
            base("7", "null"),
            format!("{}x", base("7", r#""car""#)),
            base("7", r#""car""#).replace('}', r#","extra":1}"#),
            base("7", r#""car""#).replace(r#""video_camera_oid":12"#, r#""detection_oid":8"#),
            base("7", r#""car""#).replace(r#","timestamp_detected":1763899999000"#, ""),
            r#"{"detection_oid":7,}"#.to_string(),
            "{}".to_string(),
            "[]".to_string(),
        ] {
            assert!(common_event(&text).is_none(), "took the fast path: {text}");
        }
    }

    fn token() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(r#""detection_oid""#.to_string()),
            Just(r#""video_camera_oid""#.to_string()),
            Just(r#""geographical_location_oid""#.to_string()),
            Just(r#""item_name""#.to_string()),
            Just(r#""timestamp_detected""#.to_string()),
            Just(r#""other""#.to_string()),
            "[0-9]{1,20}",
            "0[0-9]{1,3}",
            Just("-0".to_string()),
            "[1-9][0-9]{17,19}",
            "-?[0-9]{1,3}(\\.[0-9])?(e[0-9])?",
            (1_600_000_000_000i64..1_770_000_000_000).prop_map(|t| t.to_string()),
            r#""[a-z \t\\"é]{0,6}""#,
            Just("null".to_string()),
            Just("[1]".to_string()),
            Just(":".to_string()),
            Just(",".to_string()),
            Just(" ".to_string()),
        ]
    }

    /// A well-formed event with its fields in any order, and the same with one
    /// token of the grammar above swapped in.
    fn near_event() -> impl Strategy<Value = String> {
        let values = (
            1i64..=i64::MAX,
            0i64..100,
            0i64..60,
            "[a-z é]{0,8}",
            1_600_000_000_000i64..1_770_000_000_000,
        );
        (
            values,
            any::<u64>(),
            proptest::option::of((0usize..25, any::<bool>(), token())),
        )
            .prop_map(|((d, v, g, name, t), order, swap)| {
                let mut fields = [
                    format!(r#""detection_oid":{d}"#),
                    format!(r#""video_camera_oid":{v}"#),
                    format!(r#""geographical_location_oid":{g}"#),
                    format!(r#""item_name":"{name}""#),
                    format!(r#""timestamp_detected":{t}"#),
                ];
                fields.rotate_left((order % 5) as usize);
                if order & 8 != 0 {
                    fields.swap(0, 2);
                }
                let mut tokens: Vec<String> = vec!["{".into()];
                for (k, f) in fields.iter().enumerate() {
                    if k > 0 {
                        tokens.push(",".into());
                    }
                    let (key, value) = f.split_once(':').unwrap_or((f, ""));
                    tokens.extend([key.to_string(), ":".into(), value.to_string()]);
                }
                tokens.push("}".into());
                if let Some((at, on_a_value, t)) = swap {
                    // Half the swaps replace a value: tokens 3, 7, 11, 15, 19.
                    let at = if on_a_value {
                        3 + 4 * (at % 5)
                    } else {
                        at % tokens.len()
                    };
                    tokens[at] = t;
                }
                tokens.join(if order & 16 != 0 { " " } else { "" })
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4_000))]

        #[test]
        fn where_the_fast_path_answers_it_agrees_with_the_strict_decoder(text in near_event()) {
            if let Some((fast, judged)) = both(&text) {
                prop_assert_eq!(fast, judged, "text: {}", text);
            }
        }
    }
}
