//! Each event checked with dedup-enrich's validation, "now" as its arrival.

use sightline_core::decode::{Rejection, decode_bytes};

/// What validation made of one event.
#[derive(Debug)]
pub enum Verdict {
    Accepted { detection_oid: i64 },
    Rejected(Rejection),
}

/// A valid event, ready to forward.
#[derive(Debug)]
pub struct Valid<'a> {
    /// Its position in the request.
    pub index: usize,
    /// The partition key: the `detection_oid`, so every copy of an event lands
    /// on one shard.
    pub key: String,
    /// The bytes as sent.
    pub data: &'a [u8],
}

#[derive(Debug)]
pub struct Checked<'a> {
    /// One per event, in request order.
    pub verdicts: Vec<Verdict>,
    pub valid: Vec<Valid<'a>>,
}

pub fn check<'a>(events: &[&'a [u8]], now_ms: i64) -> Checked<'a> {
    let mut verdicts = Vec::with_capacity(events.len());
    let mut valid = Vec::new();
    for (index, data) in events.iter().copied().enumerate() {
        match decode_bytes(data, now_ms) {
            Ok(event) => {
                valid.push(Valid {
                    index,
                    key: event.detection_oid.to_string(),
                    data,
                });
                verdicts.push(Verdict::Accepted {
                    detection_oid: event.detection_oid,
                });
            }
            Err(why) => verdicts.push(Verdict::Rejected(why)),
        }
    }
    Checked { verdicts, valid }
}
