//! De-aggregation of KPL (Kinesis Producer Library) aggregated records.
//!
//! A producer using the KPL (or `aws-kinesis-agg`) packs many *user records*
//! into one Kinesis record:
//!
//! ```text
//! F3 89 9A C2 | protobuf AggregatedRecord | MD5(protobuf), 16 bytes
//! ```
//!
//! ```text
//! message AggregatedRecord {
//!   repeated string partition_key_table     = 1;
//!   repeated string explicit_hash_key_table = 2;
//!   repeated Record records                 = 3;
//! }
//! message Record {
//!   required uint64 partition_key_index     = 1;
//!   optional uint64 explicit_hash_key_index = 2;
//!   required bytes  data                    = 3;
//!   repeated Tag    tags                    = 4;   // skipped
//! }
//! ```
//!
//! The reader here is a small, hand-written protobuf decoder: varints, length
//! prefixes, unknown fields skipped by wire type (groups are refused). It has
//! no recursion (the schema is two levels deep), every length is checked
//! against the bytes left, and the counts are capped by
//! [`MAX_USER_RECORDS_PER_AGGREGATE`] and [`MAX_KEYS_PER_TABLE`]. User records
//! borrow their data and keys from the Kinesis record (no copies).
//!
//! A record that does not start with [`KPL_MAGIC`] is a plain record. One that
//! does, but fails any check below (MD5, protobuf, indexes, limits), is a
//! corrupt aggregate: the batch quarantines it whole, with the reason code from
//! [`KplError::code`] and the error's message. (The KCL would instead hand such a
//! record on as one plain record; here that record could never be valid JSON —
//! the magic is not UTF-8 — so quarantining it as `kpl_corrupt` loses nothing
//! and says more.)
//!
//! # Failures are reported against the aggregate's sequence number
//!
//! Every user record of an aggregate goes through the batch like a plain record:
//! decoded, validated, de-duplicated (its claim owner is
//! `shardId/sequenceNumber/index`, `index` being its position in the
//! aggregate), enriched and delivered, or quarantined alone when it is bad. Its
//! lineage column `source_sequence` is the aggregate's sequence number.
//!
//! Lambda's partial batch response can name only Kinesis sequence numbers, and
//! all user records of an aggregate share one. So when any user record of an
//! aggregate fails in a retryable way (a claim, delivery or quarantine write
//! that failed, or the invocation's deadline), the **whole aggregate** is
//! reported as a batch item failure under **the aggregate's sequence number**,
//! and the batch's cut (nothing at or after it is delivered or quarantined by
//! this invocation) moves back to the aggregate's first user record. Kinesis
//! then redelivers the aggregate whole. User records of it that Firehose had
//! already accepted get a `delivered` mark on their claim and drop as replayed
//! duplicates on the retry; claims of the others are released. Nothing is lost
//! and nothing doubles, just as for plain records.

use md5::{Digest, Md5};
use thiserror::Error;

/// The four bytes every KPL aggregate starts with.
pub const KPL_MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
/// Length of the MD5 trailer.
pub const MD5_LEN: usize = 16;
/// The shortest possible aggregate: magic, an empty protobuf, the MD5.
pub const MIN_AGGREGATE_LEN: usize = KPL_MAGIC.len() + MD5_LEN;
/// At most this many user records in one aggregate. Bounds the work and memory
/// one Kinesis record can cause; a 10 MiB record of 100-byte events holds ~100k.
pub const MAX_USER_RECORDS_PER_AGGREGATE: usize = 100_000;
/// At most this many entries in the partition key or explicit hash key table.
pub const MAX_KEYS_PER_TABLE: usize = 100_000;
/// A varint is at most 10 bytes (64 bits, 7 per byte).
const MAX_VARINT_BYTES: usize = 10;
/// Protobuf field numbers are at most 2^29 - 1.
const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;

const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_FIXED32: u8 = 5;

/// Reason code of a corrupt aggregate in the quarantine and the metrics.
pub const CODE_CORRUPT: &str = "kpl_corrupt";
/// Reason code of an aggregate over one of this module's limits.
pub const CODE_OVER_LIMIT: &str = "kpl_over_limit";

/// One user record inside an aggregate, borrowed from the Kinesis record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserRecord<'a> {
    pub partition_key: &'a str,
    pub explicit_hash_key: Option<&'a str>,
    pub data: &'a [u8],
}

/// Why an aggregate could not be de-aggregated. Offsets count from the first
/// byte of the Kinesis record (the magic).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KplError {
    #[error("record does not start with the KPL magic bytes F3 89 9A C2")]
    NotAggregated,
    #[error(
        "aggregate is {len} bytes, shorter than the magic and the MD5 trailer ({MIN_AGGREGATE_LEN} bytes)"
    )]
    TooShort { len: usize },
    #[error(
        "MD5 of the protobuf is {}, the trailer says {}",
        hex(computed),
        hex(trailer)
    )]
    Md5Mismatch {
        computed: [u8; MD5_LEN],
        trailer: [u8; MD5_LEN],
    },
    #[error("protobuf is truncated: {what} at byte {offset} runs past the end")]
    Truncated { offset: usize, what: &'static str },
    #[error("varint at byte {offset} is longer than 10 bytes or overflows 64 bits")]
    BadVarint { offset: usize },
    #[error("invalid protobuf field number {field} at byte {offset}")]
    InvalidFieldNumber { offset: usize, field: u64 },
    #[error("unsupported protobuf wire type {wire_type} at byte {offset}")]
    UnsupportedWireType { offset: usize, wire_type: u8 },
    #[error("field `{field}` at byte {offset} has wire type {wire_type}, expected {expected}")]
    WrongWireType {
        offset: usize,
        field: &'static str,
        wire_type: u8,
        expected: u8,
    },
    #[error("user record {record} has no `{field}` (a required field)")]
    MissingField { record: usize, field: &'static str },
    #[error("user record {record}: {table} index {index} is out of range (the table has {len})")]
    IndexOutOfRange {
        record: usize,
        table: &'static str,
        index: u64,
        len: usize,
    },
    #[error("entry {index} of the {table} table is not UTF-8")]
    InvalidUtf8 { table: &'static str, index: usize },
    #[error("aggregate holds more than {limit} user records")]
    TooManyRecords { limit: usize },
    #[error("the {table} table has more than {limit} entries")]
    TooManyKeys { table: &'static str, limit: usize },
    #[error("aggregate holds no user records")]
    NoRecords,
}

impl KplError {
    /// Stable, machine-readable reason code (quarantine field and metrics dimension).
    pub fn code(&self) -> &'static str {
        match self {
            KplError::TooManyRecords { .. } | KplError::TooManyKeys { .. } => CODE_OVER_LIMIT,
            _ => CODE_CORRUPT,
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(2 * bytes.len()), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Does this Kinesis record claim to be a KPL aggregate?
pub fn is_aggregated(data: &[u8]) -> bool {
    data.starts_with(&KPL_MAGIC)
}

/// Splits a KPL aggregate into its user records, in order. Checks the magic,
/// the MD5, the protobuf, the table indexes and the limits.
pub fn deaggregate(data: &[u8]) -> Result<Vec<UserRecord<'_>>, KplError> {
    if !is_aggregated(data) {
        return Err(KplError::NotAggregated);
    }
    if data.len() < MIN_AGGREGATE_LEN {
        return Err(KplError::TooShort { len: data.len() });
    }
    let body_end = data.len() - MD5_LEN;
    let (proto, trailer) = (&data[KPL_MAGIC.len()..body_end], &data[body_end..]);
    let computed: [u8; MD5_LEN] = Md5::digest(proto).into();
    if computed.as_slice() != trailer {
        let mut t = [0u8; MD5_LEN];
        t.copy_from_slice(trailer);
        return Err(KplError::Md5Mismatch {
            computed,
            trailer: t,
        });
    }

    let mut partition_keys: Vec<&str> = Vec::new();
    let mut hash_keys: Vec<&str> = Vec::new();
    let mut raw: Vec<RawRecord<'_>> = Vec::new();
    let mut r = Reader::new(proto, KPL_MAGIC.len());
    while !r.at_end() {
        let (field, wire_type, offset) = r.key()?;
        match field {
            1 | 2 => {
                let (table, list, name) = if field == 1 {
                    ("partition key", &mut partition_keys, "partition_key_table")
                } else {
                    (
                        "explicit hash key",
                        &mut hash_keys,
                        "explicit_hash_key_table",
                    )
                };
                expect_wire(name, offset, wire_type, WIRE_LEN)?;
                if list.len() >= MAX_KEYS_PER_TABLE {
                    return Err(KplError::TooManyKeys {
                        table,
                        limit: MAX_KEYS_PER_TABLE,
                    });
                }
                let bytes = r.bytes(name)?;
                let key = std::str::from_utf8(bytes).map_err(|_| KplError::InvalidUtf8 {
                    table,
                    index: list.len(),
                })?;
                list.push(key);
            }
            3 => {
                expect_wire("records", offset, wire_type, WIRE_LEN)?;
                if raw.len() >= MAX_USER_RECORDS_PER_AGGREGATE {
                    return Err(KplError::TooManyRecords {
                        limit: MAX_USER_RECORDS_PER_AGGREGATE,
                    });
                }
                let body = r.bytes("records")?;
                // The reader now stands right after the body.
                let body_base = r.offset() - body.len();
                raw.push(RawRecord::parse(body, body_base, raw.len())?);
            }
            _ => r.skip(wire_type, offset)?,
        }
    }
    if raw.is_empty() {
        return Err(KplError::NoRecords);
    }
    raw.into_iter()
        .enumerate()
        .map(|(i, rec)| {
            let partition_key =
                lookup(&partition_keys, rec.partition_key_index, i, "partition key")?;
            let explicit_hash_key = rec
                .explicit_hash_key_index
                .map(|x| lookup(&hash_keys, x, i, "explicit hash key"))
                .transpose()?;
            Ok(UserRecord {
                partition_key,
                explicit_hash_key,
                data: rec.data,
            })
        })
        .collect()
}

fn lookup<'a>(
    table: &[&'a str],
    index: u64,
    record: usize,
    name: &'static str,
) -> Result<&'a str, KplError> {
    usize::try_from(index)
        .ok()
        .and_then(|i| table.get(i))
        .copied()
        .ok_or(KplError::IndexOutOfRange {
            record,
            table: name,
            index,
            len: table.len(),
        })
}

fn expect_wire(
    field: &'static str,
    offset: usize,
    wire_type: u8,
    expected: u8,
) -> Result<(), KplError> {
    if wire_type == expected {
        Ok(())
    } else {
        Err(KplError::WrongWireType {
            offset,
            field,
            wire_type,
            expected,
        })
    }
}

/// A `Record` message before its indexes are resolved.
struct RawRecord<'a> {
    partition_key_index: u64,
    explicit_hash_key_index: Option<u64>,
    data: &'a [u8],
}

impl<'a> RawRecord<'a> {
    fn parse(body: &'a [u8], base: usize, index: usize) -> Result<Self, KplError> {
        let mut pk = None;
        let mut ehk = None;
        let mut data = None;
        let mut r = Reader::new(body, base);
        while !r.at_end() {
            let (field, wire_type, offset) = r.key()?;
            match field {
                1 => {
                    expect_wire("partition_key_index", offset, wire_type, WIRE_VARINT)?;
                    pk = Some(r.varint()?);
                }
                2 => {
                    expect_wire("explicit_hash_key_index", offset, wire_type, WIRE_VARINT)?;
                    ehk = Some(r.varint()?);
                }
                3 => {
                    expect_wire("data", offset, wire_type, WIRE_LEN)?;
                    data = Some(r.bytes("data")?);
                }
                4 => {
                    // Tags carry nothing the pipeline uses; only their framing is checked.
                    expect_wire("tags", offset, wire_type, WIRE_LEN)?;
                    r.bytes("tags")?;
                }
                _ => r.skip(wire_type, offset)?,
            }
        }
        Ok(RawRecord {
            partition_key_index: pk.ok_or(KplError::MissingField {
                record: index,
                field: "partition_key_index",
            })?,
            explicit_hash_key_index: ehk,
            data: data.ok_or(KplError::MissingField {
                record: index,
                field: "data",
            })?,
        })
    }
}

/// A cursor over protobuf bytes; `base` is their offset in the Kinesis record.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], base: usize) -> Self {
        Reader { buf, pos: 0, base }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn offset(&self) -> usize {
        self.base + self.pos
    }

    fn varint(&mut self) -> Result<u64, KplError> {
        let offset = self.offset();
        let mut value = 0u64;
        for i in 0..MAX_VARINT_BYTES {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(KplError::Truncated {
                    offset,
                    what: "varint",
                });
            };
            self.pos += 1;
            // The tenth byte holds bit 63 only.
            if i == MAX_VARINT_BYTES - 1 && b > 1 {
                return Err(KplError::BadVarint { offset });
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(KplError::BadVarint { offset })
    }

    /// A field key: (field number, wire type, offset of the key).
    fn key(&mut self) -> Result<(u64, u8, usize), KplError> {
        let offset = self.offset();
        let key = self.varint()?;
        let field = key >> 3;
        if field == 0 || field > MAX_FIELD_NUMBER {
            return Err(KplError::InvalidFieldNumber { offset, field });
        }
        // Three bits: always fits.
        Ok((field, (key & 0x7) as u8, offset))
    }

    /// A length-delimited value.
    fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], KplError> {
        let offset = self.offset();
        let len = self.varint()?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| self.pos.checked_add(len))
            .filter(|end| *end <= self.buf.len())
            .ok_or(KplError::Truncated { offset, what })?;
        let value = self
            .buf
            .get(self.pos..end)
            .ok_or(KplError::Truncated { offset, what })?;
        self.pos = end;
        Ok(value)
    }

    fn fixed(&mut self, n: usize, what: &'static str) -> Result<(), KplError> {
        let offset = self.offset();
        if self.buf.len() - self.pos < n {
            return Err(KplError::Truncated { offset, what });
        }
        self.pos += n;
        Ok(())
    }

    /// Skips an unknown field's value.
    fn skip(&mut self, wire_type: u8, offset: usize) -> Result<(), KplError> {
        match wire_type {
            WIRE_VARINT => self.varint().map(drop),
            WIRE_FIXED64 => self.fixed(8, "fixed64 field"),
            WIRE_LEN => self.bytes("unknown field").map(drop),
            WIRE_FIXED32 => self.fixed(4, "fixed32 field"),
            // 3 and 4 are (deprecated) groups, 6 and 7 do not exist.
            _ => Err(KplError::UnsupportedWireType { offset, wire_type }),
        }
    }
}

/// Protobuf writing, for building aggregates in tests and benches (the pipeline
/// itself only reads them).
#[cfg(any(test, feature = "fakes"))]
pub mod testing {
    use super::{KPL_MAGIC, Md5};
    use md5::Digest;

    pub fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// A length-delimited field (wire type 2).
    pub fn len_field(field: u64, bytes: &[u8], out: &mut Vec<u8>) {
        varint(field << 3 | 2, out);
        varint(bytes.len() as u64, out);
        out.extend_from_slice(bytes);
    }

    /// Magic + `proto` + a correct MD5.
    pub fn wrap(proto: &[u8]) -> Vec<u8> {
        let mut out = KPL_MAGIC.to_vec();
        out.extend_from_slice(proto);
        out.extend_from_slice(&Md5::digest(proto));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{len_field as field_bytes, varint, wrap};
    use super::*;

    fn record(pk: u64, data: &[u8]) -> Vec<u8> {
        let mut r = vec![0x08];
        varint(pk, &mut r);
        field_bytes(3, data, &mut r);
        r
    }

    #[test]
    fn splits_a_hand_built_aggregate() {
        let mut p = Vec::new();
        field_bytes(1, b"a", &mut p);
        field_bytes(1, b"b", &mut p);
        field_bytes(3, &record(1, b"one"), &mut p);
        field_bytes(3, &record(0, b"two"), &mut p);
        let agg = wrap(&p);
        let got = deaggregate(&agg).expect("valid");
        assert_eq!(
            got,
            vec![
                UserRecord {
                    partition_key: "b",
                    explicit_hash_key: None,
                    data: b"one"
                },
                UserRecord {
                    partition_key: "a",
                    explicit_hash_key: None,
                    data: b"two"
                },
            ]
        );
    }

    #[test]
    fn rejects_with_readable_reasons() {
        assert_eq!(deaggregate(b"{}"), Err(KplError::NotAggregated));
        assert_eq!(deaggregate(&KPL_MAGIC), Err(KplError::TooShort { len: 4 }));
        let mut p = Vec::new();
        field_bytes(1, b"a", &mut p);
        field_bytes(3, &record(3, b"x"), &mut p);
        let e = deaggregate(&wrap(&p)).expect_err("index");
        assert_eq!(e.code(), CODE_CORRUPT);
        assert!(e.to_string().contains("index 3 is out of range"), "{e}");
        let mut bad = wrap(&p);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let e = deaggregate(&bad).expect_err("md5");
        assert!(e.to_string().starts_with("MD5 of the protobuf is"), "{e}");
        assert_eq!(deaggregate(&wrap(&[])), Err(KplError::NoRecords));
        // An over-long varint.
        let mut long = vec![0x28]; // field 5, varint
        long.extend_from_slice(&[0xff; 11]);
        let long = wrap(&long);
        assert_eq!(deaggregate(&long), Err(KplError::BadVarint { offset: 5 }));
        // A length running past the end.
        assert_eq!(
            deaggregate(&wrap(&[0x1a, 0x05, 0x08])),
            Err(KplError::Truncated {
                offset: 5,
                what: "records"
            })
        );
        // A group (wire type 3) in an unknown field.
        assert_eq!(
            deaggregate(&wrap(&[0x2b])),
            Err(KplError::UnsupportedWireType {
                offset: 4,
                wire_type: 3
            })
        );
    }

    #[test]
    fn unknown_fields_are_skipped() {
        let mut p = Vec::new();
        p.extend_from_slice(&[0x28, 0x96, 0x01]); // field 5, varint
        p.extend_from_slice(&[0x31, 1, 2, 3, 4, 5, 6, 7, 8]); // field 6, fixed64
        p.extend_from_slice(&[0x3d, 1, 2, 3, 4]); // field 7, fixed32
        field_bytes(9, b"zz", &mut p);
        field_bytes(1, b"k", &mut p);
        let mut rec = record(0, b"d");
        field_bytes(4, &[0x0a, 0x01, b't'], &mut rec); // a tag
        rec.extend_from_slice(&[0x40, 0x01]); // field 8, varint
        field_bytes(3, &rec, &mut p);
        let agg = wrap(&p);
        let got = deaggregate(&agg).expect("valid");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].data, b"d");
    }

    #[test]
    fn the_record_count_is_capped() {
        let mut p = Vec::new();
        field_bytes(1, b"k", &mut p);
        let one = record(0, b"");
        for _ in 0..=MAX_USER_RECORDS_PER_AGGREGATE {
            field_bytes(3, &one, &mut p);
        }
        let e = deaggregate(&wrap(&p)).expect_err("too many");
        assert_eq!(
            e,
            KplError::TooManyRecords {
                limit: MAX_USER_RECORDS_PER_AGGREGATE
            }
        );
        assert_eq!(e.code(), CODE_OVER_LIMIT);
    }
}
