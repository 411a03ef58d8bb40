//! Which event ids may hold a claim: a blocked Bloom filter that grows in
//! layers. The claim store asks it before reading the disk, so the common case
//! (a new event) costs a few bit tests instead of an LSM lookup, at about 1.3
//! bytes per claim instead of an index entry per claim (17 bytes and more).
//!
//! "No" is certain; "maybe" is confirmed by reading the claim. Ids are never
//! removed (a released or expired claim only costs that read), so the filter
//! is rebuilt from the live claims each time the store opens.

/// Claims the first layer is sized for; each next layer holds twice as many.
pub const FIRST_LAYER_CLAIMS: usize = 1 << 20;
/// Bits per claim in every layer: with [`PROBES`] bits set per id, about 1 %
/// false "maybe" per full layer.
const BITS_PER_CLAIM: usize = 10;
/// Bits set per id, all inside one 512-bit block (one cache line).
const PROBES: u32 = 7;
const BLOCK_WORDS: usize = 8;

struct Layer {
    blocks: Vec<[u64; BLOCK_WORDS]>,
    capacity: usize,
    len: usize,
}

impl Layer {
    fn new(capacity: usize) -> Self {
        let bits = capacity.saturating_mul(BITS_PER_CLAIM);
        let blocks = bits.div_ceil(BLOCK_WORDS * 64).max(1);
        Layer {
            blocks: vec![[0; BLOCK_WORDS]; blocks],
            capacity,
            len: 0,
        }
    }

    fn insert(&mut self, hash: u64) {
        let (block, bits) = spots(hash, self.blocks.len());
        let words = &mut self.blocks[block];
        for (w, mask) in bits {
            words[w] |= mask;
        }
        self.len += 1;
    }

    fn may_contain(&self, hash: u64) -> bool {
        let (block, mut bits) = spots(hash, self.blocks.len());
        let words = &self.blocks[block];
        bits.all(|(w, mask)| words[w] & mask != 0)
    }
}

/// The block (of `blocks`) and the bit positions inside it for `hash`.
fn spots(hash: u64, blocks: usize) -> (usize, impl Iterator<Item = (usize, u64)>) {
    // The high half picks the block (a multiply-shift instead of a modulo);
    // the low half, stepped by an odd increment, picks the bits.
    let block = ((hash >> 32) * blocks as u64) >> 32;
    let mut h = hash as u32;
    let step = (hash >> 16) as u32 | 1;
    let bits = (0..PROBES).map(move |_| {
        h = h.wrapping_add(step);
        let bit = (h >> 23) as usize; // 0..512
        (bit / 64, 1u64 << (bit % 64))
    });
    (block as usize, bits)
}

/// Event ids that may hold a claim.
pub struct SeenIds {
    layers: Vec<Layer>,
}

impl Default for SeenIds {
    fn default() -> Self {
        SeenIds::new()
    }
}

impl SeenIds {
    pub fn new() -> Self {
        SeenIds {
            layers: vec![Layer::new(FIRST_LAYER_CLAIMS)],
        }
    }

    pub fn insert(&mut self, event_id: i64) {
        let hash = mix(event_id);
        let full = self.layers.last().is_none_or(|l| l.len >= l.capacity);
        if full {
            let next = self
                .layers
                .last()
                .map_or(FIRST_LAYER_CLAIMS, |l| l.capacity.saturating_mul(2));
            self.layers.push(Layer::new(next));
        }
        if let Some(layer) = self.layers.last_mut() {
            layer.insert(hash);
        }
    }

    /// False only if `event_id` was never inserted.
    pub fn may_contain(&self, event_id: i64) -> bool {
        let hash = mix(event_id);
        self.layers.iter().any(|l| l.may_contain(hash))
    }

    /// Bytes held by the bit arrays.
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.blocks.len() * BLOCK_WORDS * 8)
            .sum()
    }
}

/// A 64-bit finaliser (splitmix64): sequential ids spread over every block.
fn mix(event_id: i64) -> u64 {
    let mut z = (event_id as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_inserted_id_is_reported_as_maybe_present() {
        let mut seen = SeenIds::new();
        let ids: Vec<i64> = (0..50_000)
            .map(|i| i * 7_919 - 20_000)
            .chain([i64::MIN, i64::MAX, 0])
            .collect();
        for id in &ids {
            seen.insert(*id);
        }
        assert!(ids.iter().all(|id| seen.may_contain(*id)));
    }

    #[test]
    fn ids_never_inserted_are_mostly_reported_absent() {
        let mut seen = SeenIds::new();
        for id in 0..FIRST_LAYER_CLAIMS as i64 {
            seen.insert(id);
        }
        let probes = 200_000;
        let false_maybe = (0..probes)
            .filter(|i| seen.may_contain(-1 - i64::from(*i)))
            .count();
        // About 1 % for a full layer; 2 % allows for the blocked layout.
        assert!(
            false_maybe * 50 < probes as usize,
            "{false_maybe} of {probes} absent ids reported as maybe present"
        );
    }

    #[test]
    fn a_full_layer_adds_one_twice_its_size_and_keeps_answering() {
        let mut seen = SeenIds::new();
        let first = seen.bytes();
        let n = FIRST_LAYER_CLAIMS as i64 + 10;
        for id in 0..n {
            seen.insert(id.wrapping_mul(0x5851_F42D_4C95_7F2D));
        }
        assert_eq!(seen.bytes(), first * 3, "a second layer of twice the size");
        assert!((0..n).all(|id| seen.may_contain(id.wrapping_mul(0x5851_F42D_4C95_7F2D))));
    }
}
