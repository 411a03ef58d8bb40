//! Kinesis sequence numbers are decimal strings of up to 128 bits, without leading
//! zeros, so numeric order is (length, then lexicographic) order.

use std::cmp::Ordering;

pub fn cmp_sequence(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// `a <= b` in sequence order.
pub fn sequence_le(a: &str, b: &str) -> bool {
    cmp_sequence(a, b) != Ordering::Greater
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longer_sequence_numbers_are_later() {
        assert_eq!(cmp_sequence("9", "10"), Ordering::Less);
        assert_eq!(
            cmp_sequence(
                "49590338271490256608559692538361571095921575989136588898",
                "49590338271490256608559692538361571095921575989136588899"
            ),
            Ordering::Less
        );
        assert!(sequence_le("12", "12"));
        assert!(!sequence_le("13", "12"));
    }
}
