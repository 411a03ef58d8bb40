//! A local stand-in for the Kinesis stream: shards, partition keys and sequence
//! numbers with Kinesis's semantics, so the batch code sees what Lambda gives it.
//!
//! - The partition key is the event id (`detection_oid`), as the ingest function
//!   and `sightline produce` use, so a re-send lands on its original's shard as in
//!   production; a record without one is keyed by its own bytes.
//! - Like Kinesis, the shard is chosen by the MD5 of the partition key, over
//!   shards that split the 128-bit hash key space evenly.
//! - Sequence numbers rise within a shard. A stream is one input file: the same
//!   file keeps its sequence numbers, so running it again is a replay, as when
//!   Lambda re-reads a stream; another file gets a new range.

use md5::{Digest, Md5};

/// `shardId-000000000003`, as Kinesis names shards.
pub fn shard_id(index: usize) -> String {
    format!("shardId-{index:012}")
}

/// The shard a partition key hashes to, out of `shards` even hash key ranges.
pub fn shard_for_key(partition_key: &[u8], shards: usize) -> usize {
    let shards = shards.max(1) as u128;
    let digest = Md5::digest(partition_key);
    let hash = u128::from_be_bytes(digest.into());
    // Even ranges of width MAX/shards; the last range also takes the remainder.
    (hash / (u128::MAX / shards)).min(shards - 1) as usize
}

/// The partition key of a raw record: the digits of `"detection_oid":`, or the
/// whole record when it has none (a malformed record still needs a shard).
pub fn partition_key(data: &[u8]) -> &[u8] {
    event_id_digits(data).unwrap_or(data)
}

/// The digits (and sign) after `"detection_oid":`, read without parsing the
/// record: what `sightline produce` and the local stream key records by.
pub fn event_id_digits(data: &[u8]) -> Option<&[u8]> {
    const FIELD: &[u8] = b"\"detection_oid\"";
    // Dataset A's producers write the id first: look there before scanning.
    let found = if data.get(1..1 + FIELD.len()) == Some(FIELD) {
        Some(1)
    } else {
        data.windows(FIELD.len()).position(|w| w == FIELD)
    };
    let at = found?;
    let rest = &data[at + FIELD.len()..];
    let start = rest
        .iter()
        .position(|b| !matches!(b, b' ' | b':' | b'\t'))
        .unwrap_or(rest.len());
    let digits = rest[start..]
        .iter()
        .take_while(|b| b.is_ascii_digit() || **b == b'-')
        .count();
    (digits > 0).then(|| &rest[start..start + digits])
}

/// Sequence numbers of one local stream: fixed width, so numeric order is
/// string order, and distinct per stream number and shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequenceSpace {
    pub stream_no: u64,
}

impl SequenceSpace {
    /// Characters in every sequence number: `49`, stream (12), shard (4), position (20).
    pub const LEN: usize = 2 + 12 + 4 + 20;

    /// The `position`-th record of `shard` (0-based).
    pub fn sequence(&self, shard: usize, position: u64) -> String {
        self.counter(shard, position).next()
    }

    /// `shard`'s sequence numbers from `position` on, one after the other.
    /// Built digit by digit: `format!`'s zero padding was 7 % of a run's CPU.
    pub fn counter(&self, shard: usize, position: u64) -> SequenceCounter {
        let mut digits = [b'0'; Self::LEN];
        digits[..2].copy_from_slice(b"49");
        put_digits(&mut digits[2..14], self.stream_no % 1_000_000_000_000);
        put_digits(&mut digits[14..18], (shard % 10_000) as u64);
        put_digits(&mut digits[18..], position);
        SequenceCounter { digits }
    }
}

/// One shard's next sequence number, counted up in its decimal digits: the
/// reader numbers every input line, and writing all 38 digits each time was
/// 5 % of a run's instructions.
#[derive(Debug, Clone)]
pub struct SequenceCounter {
    digits: [u8; SequenceSpace::LEN],
}

impl SequenceCounter {
    /// This position's sequence number; the counter moves on to the next.
    #[allow(clippy::should_implement_trait)] // never ends, and never fails
    pub fn next(&mut self) -> String {
        // Only ASCII digits are ever written, so this is never the empty default.
        let current = std::str::from_utf8(&self.digits)
            .map(str::to_owned)
            .unwrap_or_default();
        // The position's 20 digits (u64 positions never reach 10^20).
        for digit in self.digits[18..].iter_mut().rev() {
            if *digit == b'9' {
                *digit = b'0';
            } else {
                *digit += 1;
                break;
            }
        }
        current
    }
}

/// `value`'s decimal digits, right-aligned in `out` (already zero-filled); the
/// caller bounds `value` to `out`'s width.
fn put_digits(out: &mut [u8], mut value: u64) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sightline_core::seq::cmp_sequence;

    #[test]
    fn partition_key_is_the_event_id() {
        let line =
            br#"{"video_camera_oid":7,"detection_oid": 4207,"geographical_location_oid":42}"#;
        assert_eq!(partition_key(line), b"4207");
        assert_eq!(partition_key(br#"{"detection_oid":-12,"x":1}"#), b"-12");
        assert_eq!(partition_key(br#"{"x":{"detection_oid":5}}"#), b"5");
        assert_eq!(partition_key(b"not json"), b"not json");
        assert_eq!(
            partition_key(br#"{"detection_oid":"x"}"#),
            br#"{"detection_oid":"x"}"#
        );
    }

    #[test]
    fn one_key_always_lands_on_one_shard_and_keys_spread_over_all_shards() {
        let mut counts = [0usize; 4];
        for id in 0..4000 {
            let key = id.to_string();
            let shard = shard_for_key(key.as_bytes(), 4);
            assert_eq!(shard, shard_for_key(key.as_bytes(), 4));
            counts[shard] += 1;
        }
        for c in counts {
            assert!((800..1200).contains(&c), "uneven spread: {counts:?}");
        }
        assert_eq!(shard_for_key(b"anything", 1), 0);
    }

    #[test]
    fn a_counter_gives_each_positions_sequence_number_in_turn() {
        let space = SequenceSpace { stream_no: 42 };
        for (shard, start, count) in [
            (0, 0u64, 2_500),
            (3, 999_990, 20),
            (2, 9_999_999_999_999_999_990, 20),
            (1, u64::MAX - 5, 5),
        ] {
            let mut counter = space.counter(shard, start);
            for position in start..start + count {
                assert_eq!(
                    counter.next(),
                    space.sequence(shard, position),
                    "{position}"
                );
            }
        }
    }

    #[test]
    fn sequence_numbers_rise_within_a_shard_and_differ_between_streams() {
        let a = SequenceSpace { stream_no: 1 };
        let b = SequenceSpace { stream_no: 2 };
        assert_eq!(
            cmp_sequence(&a.sequence(0, 9), &a.sequence(0, 10)),
            std::cmp::Ordering::Less
        );
        assert_ne!(a.sequence(0, 5), b.sequence(0, 5));
        assert_ne!(a.sequence(0, 5), a.sequence(1, 5));
        assert_eq!(a.sequence(3, 7).len(), a.sequence(0, u64::MAX).len());
    }

    #[test]
    fn sequence_numbers_are_the_fixed_width_decimal_fields() {
        let space = SequenceSpace {
            stream_no: 1_234_567_890_123_456,
        };
        for (shard, position) in [(0, 0), (3, 7), (9_999, 1_000_000), (12_345, u64::MAX)] {
            assert_eq!(
                space.sequence(shard, position),
                format!(
                    "49{:012}{:04}{:020}",
                    space.stream_no % 1_000_000_000_000,
                    shard % 10_000,
                    position
                )
            );
        }
        assert_eq!(space.sequence(1, 2).len(), SequenceSpace::LEN);
    }
}
