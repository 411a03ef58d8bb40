//! The embedded claim store: the DynamoDB claim table's rules on one machine.
//!
//! Why fjall: claims are keyed by random 63-bit event ids. A B-tree store (redb,
//! LMDB) rewrites a leaf page per random insert on every commit; measured with
//! redb 4.6 on this machine, 23k claims/s at 5,000 per transaction. fjall is a
//! pure-Rust LSM tree. On top of it this adapter asks a Bloom filter of the
//! claimed ids ([`crate::seen`]) before reading, so the common case (a new
//! event) never reads the tree, with memory that hardly grows with the claims;
//! and it group-commits: all claims in flight share one log append and fsync.
//!
//! Claims do not go through fjall's journal and memtable: a commit is a frame
//! in the store's own log ([`crate::claim_log`]), the claims then wait in a
//! hash table until [`StoreOptions::ingest_every`] have gathered, and are
//! written into the tree as one sorted table (fjall's ingestion). Inserting
//! each claim into the memtable's skip list was the largest single cost of a
//! local run (docs/benchmarks.md).
//!
//! Semantics match `DynamoClaimStore`: a claim succeeds when no claim exists or
//! the existing one expired (`expires_at < now`); otherwise the live claim comes
//! back untouched. Expired claims are dropped when the store opens (the TTL).

use std::collections::hash_map::Entry as MapEntry;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use sightline_core::ports::{Checkpoint, ClaimOutcome, ClaimRequest, ClaimStore, ExistingClaim};
use sightline_core::retry::{Classify, ErrorClass};

use crate::claim_log::{self, ClaimLog, Entry, Frame, IdMap, ItemBytes, LogError, Table};
use crate::seen::SeenIds;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("embedded claim store")]
    Fjall(#[from] fjall::Error),
    #[error("embedded claim store")]
    Log(#[from] LogError),
    #[error("claim item for event {event_id} is corrupt")]
    Corrupt { event_id: i64 },
    #[error("checkpoint item {key:?} is corrupt")]
    CorruptCheckpoint { key: String },
    #[error("an earlier commit failed; the store refuses further writes")]
    Failed,
    #[error("the store's lock was poisoned by a panic")]
    Poisoned,
}

impl Classify for StoreError {
    fn class(&self) -> ErrorClass {
        // A local disk that failed once is not worth hammering.
        ErrorClass::Permanent
    }
}

/// A claim as stored: the DynamoDB item's attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ClaimItem {
    owner: String,
    batch_first_sequence: String,
    expires_at: i64,
    delivered: bool,
}

/// A new claim's item, encoded straight from the request (no owned copy first).
fn encode_claim(req: &ClaimRequest<'_>, first: &mut BatchFirst) -> ItemBytes {
    match first.pack(req.owner, req.batch_first_sequence) {
        Some(packed) => {
            first.scratch.clear();
            packed.write_item(&mut first.scratch, req.expires_at, false);
            ItemBytes::new(&first.scratch)
        }
        None => ItemBytes::new(&encode_text_item(
            req.owner,
            req.batch_first_sequence,
            req.expires_at,
            false,
        )),
    }
}

/// A batch's first sequence number, parsed once for all of the batch's claims.
#[derive(Default)]
struct BatchFirst {
    text: String,
    value: Option<u128>,
    /// Reused for each claim's encoding.
    scratch: Vec<u8>,
}

impl BatchFirst {
    /// [`Packed::from_text`], reading only the digits after those the owner's
    /// sequence shares with the batch's first one (two 38-digit parses were
    /// most of a claim's encoding).
    fn pack(&mut self, owner: &str, batch_first: &str) -> Option<Packed> {
        if self.text != batch_first {
            self.text.clear();
            self.text.push_str(batch_first);
            self.value = plain_decimal(batch_first);
        }
        let first = self.value?;
        let (shard, sequence) = split_owner(owner)?;
        let (seq, start) = (sequence.as_bytes(), batch_first.as_bytes());
        if seq.len() != start.len() {
            return Packed::from_numbers(shard, plain_decimal(sequence)?, first);
        }
        let shared = seq.iter().zip(start).take_while(|(a, b)| a == b).count();
        let tail = seq.len() - shared;
        // No leading zero to check: a shared first digit is the batch's, and a
        // sequence of the same length with a zero first is below the batch's
        // first, so `checked_sub` refuses it.
        if tail > 19 {
            return Packed::from_numbers(shard, plain_decimal(sequence)?, first);
        }
        let back = decimal_u64(&seq[shared..])?.checked_sub(decimal_u64(&start[shared..])?)?;
        Some(Packed {
            shard,
            sequence: first.checked_add(u128::from(back))?,
            back,
        })
    }
}

/// Flag bits of an item's ninth byte. Items written before `SHARED_PREFIX`
/// existed hold 0 or 1 there, and still decode.
const DELIVERED: u8 = 1;
/// The batch's first sequence is stored as the length of the prefix it shares
/// with the owner's sequence (one byte), then the rest.
const SHARED_PREFIX: u8 = 2;
/// The owner is `shardId-<12 digits>/<sequence>` and both sequences are plain
/// decimals: stored as numbers (see [`Packed`]).
const PACKED: u8 = 4;

/// The usual claim in numbers: the shard's number (varint), the owner's sequence
/// (16 bytes) and how far before it the batch's first sequence is (varint). A
/// local stream's claim item is then about 28 bytes where the text made about
/// 75: half the claim store's directory at 5 M events (docs/benchmarks.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Packed {
    shard: u64,
    sequence: u128,
    back: u64,
}

const SHARD_PREFIX: &str = "shardId-";
const SHARD_DIGITS: usize = 12;

/// A decimal without a leading zero (or "0"), at most 38 digits: exactly what
/// `u128`'s `Display` writes back.
fn plain_decimal(text: &str) -> Option<u128> {
    let b = text.as_bytes();
    if b.is_empty() || b.len() > 38 || (b.len() > 1 && b[0] == b'0') {
        return None;
    }
    // In u64 halves of at most 19 digits: one u128 multiply, not one per digit
    // (digit by digit, the two parses of a claim were most of its encoding).
    let (high, low) = b.split_at(b.len().saturating_sub(19));
    let scale = 10u128.pow(low.len() as u32);
    Some(u128::from(decimal_u64(high)?) * scale + u128::from(decimal_u64(low)?))
}

/// At most 19 ASCII digits (0 for none).
fn decimal_u64(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |acc, &d| {
        let d = d.wrapping_sub(b'0');
        (d < 10).then(|| acc * 10 + u64::from(d))
    })
}

/// `shardId-<12 digits>/<sequence>`: the shard's number and the sequence's text.
fn split_owner(owner: &str) -> Option<(u64, &str)> {
    let rest = owner.strip_prefix(SHARD_PREFIX)?;
    let (shard, sequence) = rest.split_once('/')?;
    if shard.len() != SHARD_DIGITS {
        return None;
    }
    Some((decimal_u64(shard.as_bytes())?, sequence))
}

impl Packed {
    /// Only when the text is exactly what [`Packed::owner`] and
    /// [`Packed::batch_first`] write back.
    fn from_text(owner: &str, batch_first: &str) -> Option<Packed> {
        let (shard, sequence) = split_owner(owner)?;
        Packed::from_numbers(shard, plain_decimal(sequence)?, plain_decimal(batch_first)?)
    }

    /// When the batch's first sequence is at most `u64::MAX` before the owner's.
    fn from_numbers(shard: u64, sequence: u128, batch_first: u128) -> Option<Packed> {
        let back = u64::try_from(sequence.checked_sub(batch_first)?).ok()?;
        Some(Packed {
            shard,
            sequence,
            back,
        })
    }

    /// The whole item: expiry, flags, then the numbers.
    fn write_item(&self, out: &mut Vec<u8>, expires_at: i64, delivered: bool) {
        out.extend_from_slice(&expires_at.to_be_bytes());
        out.push(PACKED | if delivered { DELIVERED } else { 0 });
        self.write(out);
    }

    fn owner(&self) -> String {
        format!("{SHARD_PREFIX}{:012}/{}", self.shard, self.sequence)
    }

    fn batch_first(&self) -> String {
        (self.sequence - u128::from(self.back)).to_string()
    }

    fn write(&self, out: &mut Vec<u8>) {
        put_varint(out, self.shard);
        out.extend_from_slice(&self.sequence.to_be_bytes());
        put_varint(out, self.back);
    }

    fn read(bytes: &[u8]) -> Option<Packed> {
        let (shard, bytes) = get_varint(bytes)?;
        let sequence = u128::from_be_bytes(bytes.get(..16)?.try_into().ok()?);
        let (back, rest) = get_varint(bytes.get(16..)?)?;
        // The shard had 12 digits, and `back` is never past the sequence.
        if !rest.is_empty()
            || shard >= 10u64.pow(SHARD_DIGITS as u32)
            || u128::from(back) > sequence
        {
            return None;
        }
        Some(Packed {
            shard,
            sequence,
            back,
        })
    }
}

/// LEB128: seven bits a byte, low first.
fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn get_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

/// The owner's sequence number: what follows `shardId/`.
fn owner_sequence(owner: &[u8]) -> &[u8] {
    owner
        .iter()
        .position(|&b| b == b'/')
        .map_or(&[][..], |at| &owner[at + 1..])
}

/// `expires_at` (8, big-endian) | flags (1) | then either [`Packed`] (when the
/// owner and the batch's first sequence have its shape: the local stream's
/// claims) or: owner length (2) | owner | shared prefix length (1) | the rest of
/// the batch's first sequence.
///
/// A batch's first sequence number and the record's own share most of their
/// digits; storing them once keeps a claim about 30 bytes shorter, bytes the
/// log, the tree's tables and their compactions all copy.
fn encode_item(owner: &str, batch_first: &str, expires_at: i64, delivered: bool) -> Vec<u8> {
    match Packed::from_text(owner, batch_first) {
        Some(packed) => {
            let mut out = Vec::with_capacity(8 + 1 + 10 + 16 + 10);
            packed.write_item(&mut out, expires_at, delivered);
            out
        }
        None => encode_text_item(owner, batch_first, expires_at, delivered),
    }
}

/// The text form of [`encode_item`], for owners [`Packed`] cannot hold.
fn encode_text_item(owner: &str, batch_first: &str, expires_at: i64, delivered: bool) -> Vec<u8> {
    let delivered = if delivered { DELIVERED } else { 0 };
    let owner = owner.as_bytes();
    let len = u16::try_from(owner.len()).unwrap_or(u16::MAX);
    let owner = &owner[..usize::from(len)];
    let batch_first = batch_first.as_bytes();
    let shared = owner_sequence(owner)
        .iter()
        .zip(batch_first)
        .take(usize::from(u8::MAX))
        .take_while(|(a, b)| a == b)
        .count();
    let mut out = Vec::with_capacity(12 + owner.len() + batch_first.len() - shared);
    out.extend_from_slice(&expires_at.to_be_bytes());
    out.push(SHARED_PREFIX | delivered);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(owner);
    // `shared` is at most 255 by the `take` above.
    out.push(shared as u8);
    out.extend_from_slice(&batch_first[shared..]);
    out
}

impl ClaimItem {
    fn encode(&self) -> Vec<u8> {
        encode_item(
            &self.owner,
            &self.batch_first_sequence,
            self.expires_at,
            self.delivered,
        )
    }

    /// The answer to a claim this live item blocks.
    fn into_held(self) -> ClaimOutcome {
        ClaimOutcome::Held(ExistingClaim {
            owner: self.owner,
            delivered: self.delivered,
            batch_first_sequence: Some(self.batch_first_sequence),
        })
    }

    fn decode(bytes: &[u8]) -> Option<ClaimItem> {
        let expires_at = i64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
        let flags = *bytes.get(8)?;
        if flags & PACKED != 0 {
            let packed = Packed::read(bytes.get(9..)?)?;
            return Some(ClaimItem {
                owner: packed.owner(),
                batch_first_sequence: packed.batch_first(),
                expires_at,
                delivered: flags & DELIVERED != 0,
            });
        }
        let len = usize::from(u16::from_be_bytes(bytes.get(9..11)?.try_into().ok()?));
        let owner_bytes = bytes.get(11..11 + len)?;
        let owner = std::str::from_utf8(owner_bytes).ok()?;
        let rest = bytes.get(11 + len..)?;
        let batch_first = if flags & SHARED_PREFIX == 0 {
            std::str::from_utf8(rest).ok()?.to_string()
        } else {
            let (&shared, tail) = rest.split_first()?;
            let mut first = owner_sequence(owner_bytes)
                .get(..usize::from(shared))?
                .to_vec();
            first.extend_from_slice(tail);
            String::from_utf8(first).ok()?
        };
        Some(ClaimItem {
            owner: owner.to_string(),
            batch_first_sequence: batch_first,
            expires_at,
            delivered: flags & DELIVERED != 0,
        })
    }
}

fn claim_key(event_id: i64) -> [u8; 8] {
    event_id.to_be_bytes()
}

fn checkpoint_key(shard_id: &str, first_sequence: &str) -> String {
    format!("checkpoint#{shard_id}#{first_sequence}")
}

/// fjall's memtable for the claims keyspace (its default is 64 MiB). Claims
/// no longer pass through it (see the module's docs); only the removals of
/// expired claims when the store opens do.
const CLAIMS_MEMTABLE_BYTES: u64 = 8 * 1024 * 1024;

/// fjall's block cache (its default is 32 MiB; 8 MiB until 5 M events peaked
/// over 256 MB). The Bloom filter in front of
/// the tree leaves few reads: held claims (re-sends) and its false "maybe"s.
const BLOCK_CACHE_BYTES: u64 = 4 * 1024 * 1024;

/// Where the claim log's files go, inside the store's directory.
const CLAIM_LOG_DIR: &str = "claim-log";

/// Committed claims gathered before they are written into the tree as one
/// table. With room for one more commit's claims on top (a sixth more), the
/// hash table is 2^18 slots, which it would be from 2^17 claims anyway; two
/// such tables, recycled, hold the claims not yet in the tree (about 30 MB).
/// Measured in docs/benchmarks.md.
pub const INGEST_EVERY_CLAIMS: usize = 3 << 16;

/// Slots for a table of committed claims: the threshold and a commit more, so
/// it never grows (growing one allocates and frees megabytes at a time, which
/// glibc's arenas keep).
fn table_capacity(ingest_every: usize) -> usize {
    ingest_every.saturating_add(ingest_every / 6)
}

/// How the store batches its work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Committed claims held in memory (and in the log) before they are written
    /// into the tree: memory against the number of tables to compact.
    pub ingest_every: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            ingest_every: INGEST_EVERY_CLAIMS,
        }
    }
}

struct Index {
    /// Ids that may hold a claim (a "maybe" is confirmed by reading it).
    seen: SeenIds,
    /// Claims made but not yet committed (the encoded item), with the generation
    /// that commits them.
    pending: IdMap<(ItemBytes, u64)>,
    /// Committed to the log since the last ingestion began.
    committed: Table,
    /// Being written into the tree; read until it is there.
    ingesting: Option<Arc<Table>>,
    /// The last table ingested, emptied, to be the next `committed`.
    spare: Option<Table>,
    /// Generation the next claim joins.
    open_generation: u64,
    failed: bool,
}

/// The claim table in a local directory.
pub struct LocalClaimStore {
    db: Database,
    claims: Keyspace,
    meta: Keyspace,
    index: Mutex<Index>,
    /// The claim log, which also serialises commits: the holder commits every
    /// pending claim at once.
    log: tokio::sync::Mutex<ClaimLog>,
    log_dir: PathBuf,
    options: StoreOptions,
    /// Highest generation known durable.
    durable: AtomicU64,
    commits: AtomicU64,
    claims_made: AtomicU64,
    ingestions: AtomicU64,
}

/// What opening the store found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenStats {
    pub live_claims: u64,
    pub expired_removed: u64,
    /// Claims (and deletions) replayed from the claim log into the tree.
    pub replayed_from_log: u64,
}

/// Writes `table` into the tree as one sorted table; deleted claims as tombstones.
fn ingest(claims: &Keyspace, table: &Table) -> Result<(), StoreError> {
    if table.is_empty() {
        return Ok(());
    }
    let mut sorted: Vec<(&i64, &Entry)> = table.iter().collect();
    // The key is the id's big-endian bytes: their order is the id's as u64.
    sorted.sort_unstable_by_key(|(id, _)| **id as u64);
    let mut ingestion = claims.start_ingestion()?;
    for (id, entry) in sorted {
        match entry {
            Some(item) => ingestion.write(claim_key(*id), &item[..])?,
            None => ingestion.write_tombstone(claim_key(*id))?,
        }
    }
    ingestion.finish()?;
    Ok(())
}

impl LocalClaimStore {
    /// Opens (or creates) the store in `dir`, dropping claims expired at `now_secs`.
    pub fn open(dir: &Path, now_secs: i64) -> Result<(Self, OpenStats), StoreError> {
        Self::open_with(dir, now_secs, StoreOptions::default())
    }

    /// [`LocalClaimStore::open`], with the claims' batching chosen (the tests
    /// write every few claims into the tree).
    pub fn open_with(
        dir: &Path,
        now_secs: i64,
        options: StoreOptions,
    ) -> Result<(Self, OpenStats), StoreError> {
        let db = Database::builder(dir)
            .cache_size(BLOCK_CACHE_BYTES)
            // fjall's default on two cores is two workers, and with two its
            // first worker re-queues each compaction request to itself, in a
            // loop, while the second compacts (`worker_tick`): 4 % of a run's
            // CPU. One worker flushes and compacts in turn: 15-20 % less CPU at
            // 5 M events (docs/benchmarks.md).
            .worker_threads(1)
            .open()?;
        let claims = db.keyspace("claims", || {
            KeyspaceCreateOptions::default()
                .max_memtable_size(CLAIMS_MEMTABLE_BYTES)
                // Reads come only after the Bloom filter's "maybe": mostly hits.
                .expect_point_read_hits(true)
        })?;
        let meta = db.keyspace("meta", KeyspaceCreateOptions::default)?;
        let mut stats = OpenStats::default();

        // Claims committed to the log by the last run and not yet in the tree.
        let log_dir = dir.join(CLAIM_LOG_DIR);
        let recovered = claim_log::recover(&log_dir)?;
        ingest(&claims, &recovered.entries)?;
        stats.replayed_from_log = recovered.entries.len() as u64;
        let next_log = match recovered.through {
            Some(through) => {
                claim_log::remove_through(&log_dir, through)?;
                through + 1
            }
            None => 1,
        };
        let log = ClaimLog::create(&log_dir, next_log)?;

        let mut seen = SeenIds::new();
        let mut expired = db.batch();
        for guard in claims.iter() {
            let (key, value) = guard.into_inner()?;
            let Ok(key) = <[u8; 8]>::try_from(key.as_ref()) else {
                continue;
            };
            let event_id = i64::from_be_bytes(key);
            let item = ClaimItem::decode(&value).ok_or(StoreError::Corrupt { event_id })?;
            if item.expires_at < now_secs {
                expired.remove(&claims, key);
                stats.expired_removed += 1;
            } else {
                seen.insert(event_id);
                stats.live_claims += 1;
            }
        }
        if stats.expired_removed > 0 {
            expired.durability(Some(PersistMode::SyncAll)).commit()?;
        }
        let store = LocalClaimStore {
            db,
            claims,
            meta,
            index: Mutex::new(Index {
                seen,
                pending: IdMap::default(),
                committed: Table::with_capacity_and_hasher(
                    table_capacity(options.ingest_every),
                    Default::default(),
                ),
                ingesting: None,
                spare: None,
                open_generation: 1,
                failed: false,
            }),
            log: tokio::sync::Mutex::new(log),
            log_dir,
            options,
            durable: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            claims_made: AtomicU64::new(0),
            ingestions: AtomicU64::new(0),
        };
        Ok((store, stats))
    }

    fn index(&self) -> Result<MutexGuard<'_, Index>, StoreError> {
        self.index.lock().map_err(|_| StoreError::Poisoned)
    }

    /// Journal commits so far (group commits of claims plus other writes).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Claims written since the store opened (new ones and expired ones taken over).
    pub fn claims_made(&self) -> u64 {
        self.claims_made.load(Ordering::Relaxed)
    }

    /// Tables of committed claims written into the tree since the store opened.
    pub fn ingestions(&self) -> u64 {
        self.ingestions.load(Ordering::Relaxed)
    }

    /// `event_id`'s claim item, pending or committed, read only when the filter
    /// says it may exist. Called under the index lock, so claims are checked and
    /// made atomically.
    fn existing_claim(
        &self,
        index: &Index,
        event_id: i64,
    ) -> Result<Option<ClaimItem>, StoreError> {
        if !index.seen.may_contain(event_id) {
            return Ok(None);
        }
        self.read_claim(index, event_id)
    }

    /// Returns once `generation` is durable, committing it (and everything else
    /// pending) if no one else has.
    async fn make_durable(&self, generation: u64) -> Result<(), StoreError> {
        if self.durable.load(Ordering::Acquire) >= generation {
            return Ok(());
        }
        let mut log = self.log.lock().await;
        if self.durable.load(Ordering::Acquire) >= generation {
            return Ok(());
        }
        // Let the claims polled alongside this one join the commit before it is
        // sealed; otherwise the first claimer of a batch commits alone.
        tokio::task::yield_now().await;
        let (mut frame, ids, sealed) = {
            let mut index = self.index()?;
            if index.failed {
                return Err(StoreError::Failed);
            }
            let sealed = index.open_generation;
            index.open_generation += 1;
            let mut frame = Frame::with_capacity(index.pending.len());
            let mut ids = Vec::with_capacity(index.pending.len());
            for (id, (item, g)) in &index.pending {
                if *g <= sealed {
                    frame.push(*id, Some(&item[..]));
                    ids.push(*id);
                }
            }
            (frame, ids, sealed)
        };
        let result = if ids.is_empty() {
            Ok(())
        } else {
            log.append(&mut frame)
        };
        self.commits.fetch_add(1, Ordering::Relaxed);
        let to_ingest = {
            let mut guard = self.index()?;
            let index = &mut *guard;
            if let Err(e) = result {
                // Nothing in this generation is durable: forget the claims, refuse
                // further work, and let the batch report its records for retry.
                for id in &ids {
                    index.pending.remove(id);
                }
                index.failed = true;
                return Err(e.into());
            }
            for id in ids {
                if let MapEntry::Occupied(pending) = index.pending.entry(id)
                    && pending.get().1 <= sealed
                {
                    let (item, _) = pending.remove();
                    index.committed.insert(id, Some(item));
                }
            }
            self.durable.store(sealed, Ordering::Release);
            if index.ingesting.is_none() && index.committed.len() >= self.options.ingest_every {
                let next = index.spare.take().unwrap_or_else(|| {
                    Table::with_capacity_and_hasher(
                        table_capacity(self.options.ingest_every),
                        Default::default(),
                    )
                });
                let table = Arc::new(std::mem::replace(&mut index.committed, next));
                index.ingesting = Some(table.clone());
                Some(table)
            } else {
                None
            }
        };
        let Some(table) = to_ingest else {
            return Ok(());
        };
        // Commits from here on go to the next log; the closed ones hold exactly
        // the table being ingested (and tables ingested before it).
        let closed = log.rotate().inspect_err(|_| self.fail());
        drop(log);
        self.finish_ingestion(table, closed?)
    }

    /// Writes a sealed table into the tree, then deletes the logs that held it.
    /// Other shards go on committing to the next log meanwhile.
    fn finish_ingestion(&self, table: Arc<Table>, closed_log: u64) -> Result<(), StoreError> {
        let result = ingest(&self.claims, &table)
            .and_then(|()| Ok(claim_log::remove_through(&self.log_dir, closed_log)?));
        if result.is_err() {
            // The claims stay readable from `ingesting`, and durable in the logs.
            self.fail();
            return result;
        }
        self.ingestions.fetch_add(1, Ordering::Relaxed);
        let mut index = self.index()?;
        index.ingesting = None;
        // Readers reach the table only through `ingesting`: this is the last handle.
        if let Ok(mut emptied) = Arc::try_unwrap(table) {
            emptied.clear();
            index.spare = Some(emptied);
        }
        Ok(())
    }

    fn fail(&self) {
        if let Ok(mut index) = self.index() {
            index.failed = true;
        }
    }

    /// Claims `req.event_id` into `generation` unless a live claim holds it (then
    /// that claim comes back). Under the index lock; the caller commits.
    fn claim_in(
        &self,
        index: &mut Index,
        req: &ClaimRequest<'_>,
        generation: u64,
        first: &mut BatchFirst,
    ) -> Result<ClaimOutcome, StoreError> {
        let previous = match self.existing_claim(index, req.event_id)? {
            Some(item) if item.expires_at >= req.now_secs => return Ok(item.into_held()),
            previous => previous,
        };
        index.seen.insert(req.event_id);
        index
            .pending
            .insert(req.event_id, (encode_claim(req, first), generation));
        self.claims_made.fetch_add(1, Ordering::Relaxed);
        Ok(ClaimOutcome::Claimed {
            took_over_expired: previous.is_some(),
        })
    }

    /// The claim item, pending, committed, being ingested or in the tree, under
    /// the index lock held by the caller.
    fn read_claim(&self, index: &Index, event_id: i64) -> Result<Option<ClaimItem>, StoreError> {
        let decode = |item: &[u8]| {
            ClaimItem::decode(item)
                .map(Some)
                .ok_or(StoreError::Corrupt { event_id })
        };
        if let Some((item, _)) = index.pending.get(&event_id) {
            return decode(item);
        }
        let logged = index.committed.get(&event_id).or_else(|| {
            index
                .ingesting
                .as_ref()
                .and_then(|table| table.get(&event_id))
        });
        match logged {
            Some(Some(item)) => decode(item),
            Some(None) => Ok(None),
            None => match self.claims.get(claim_key(event_id))? {
                Some(v) => decode(&v),
                None => Ok(None),
            },
        }
    }

    /// A whole-item rewrite for marks and releases (rare: failure paths only).
    async fn rewrite(
        &self,
        event_id: i64,
        owner: &str,
        change: impl FnOnce(&mut ClaimItem) -> bool,
    ) -> Result<(), StoreError> {
        // Settle any pending claim first, so the rewrite is ordered after it.
        let generation = self.index()?.open_generation;
        self.make_durable(generation).await?;
        let mut log = self.log.lock().await;
        let Some(mut item) = self.read_claim(&*self.index()?, event_id)? else {
            return Ok(());
        };
        if item.owner != owner {
            return Ok(());
        }
        let keep = change(&mut item);
        let entry = keep.then(|| ItemBytes::new(&item.encode()));
        let mut frame = Frame::with_capacity(1);
        frame.push(event_id, entry.as_deref());
        log.append(&mut frame)?;
        self.index()?.committed.insert(event_id, entry);
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Reads a small metadata value (the local stream's positions).
    pub fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta.get(key)?.map(|v| v.to_vec()))
    }

    pub fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.meta.insert(key, value)?;
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }
}

impl ClaimStore for LocalClaimStore {
    type Error = StoreError;

    async fn claim(&self, req: &ClaimRequest<'_>) -> Result<ClaimOutcome, StoreError> {
        let (outcome, generation) = {
            let mut index = self.index()?;
            if index.failed {
                return Err(StoreError::Failed);
            }
            let generation = index.open_generation;
            (
                self.claim_in(&mut index, req, generation, &mut BatchFirst::default())?,
                generation,
            )
        };
        if matches!(outcome, ClaimOutcome::Claimed { .. }) {
            self.make_durable(generation).await?;
        }
        Ok(outcome)
    }

    const CLAIMS_IN_ONE_CALL: bool = true;

    /// One pass under the index lock (reading only the ids the filter may hold),
    /// then one journal commit for every claim made.
    async fn claim_all(&self, reqs: &[ClaimRequest<'_>]) -> Result<Vec<ClaimOutcome>, StoreError> {
        let (outcomes, generation) = {
            let mut index = self.index()?;
            if index.failed {
                return Err(StoreError::Failed);
            }
            let generation = index.open_generation;
            let mut first = BatchFirst::default();
            let outcomes = reqs
                .iter()
                .map(|req| self.claim_in(&mut index, req, generation, &mut first))
                .collect::<Result<Vec<_>, _>>()?;
            (outcomes, generation)
        };
        if outcomes
            .iter()
            .any(|o| matches!(o, ClaimOutcome::Claimed { .. }))
        {
            self.make_durable(generation).await?;
        }
        Ok(outcomes)
    }

    async fn mark_delivered(&self, event_id: i64, owner: &str) -> Result<(), StoreError> {
        self.rewrite(event_id, owner, |item| {
            item.delivered = true;
            true
        })
        .await
    }

    async fn release(&self, event_id: i64, owner: &str) -> Result<(), StoreError> {
        // Only an undelivered claim is released; a delivered one stays.
        self.rewrite(event_id, owner, |item| item.delivered).await
    }

    async fn get_checkpoint(
        &self,
        shard_id: &str,
        first_sequence: &str,
        now_secs: i64,
    ) -> Result<Option<Checkpoint>, StoreError> {
        let key = checkpoint_key(shard_id, first_sequence);
        let Some(value) = self.meta.get(&key)? else {
            return Ok(None);
        };
        let corrupt = || StoreError::CorruptCheckpoint { key: key.clone() };
        let expires_at = i64::from_be_bytes(
            value
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(corrupt)?,
        );
        let last =
            std::str::from_utf8(value.get(8..).ok_or_else(corrupt)?).map_err(|_| corrupt())?;
        if expires_at < now_secs {
            return Ok(None);
        }
        Ok(Some(Checkpoint {
            shard_id: shard_id.to_string(),
            first_sequence: first_sequence.to_string(),
            last_sequence: last.to_string(),
            expires_at,
        }))
    }

    async fn put_checkpoint(&self, cp: &Checkpoint) -> Result<(), StoreError> {
        let mut value = cp.expires_at.to_be_bytes().to_vec();
        value.extend_from_slice(cp.last_sequence.as_bytes());
        self.meta
            .insert(checkpoint_key(&cp.shard_id, &cp.first_sequence), value)?;
        self.db.persist(PersistMode::SyncAll)?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(owner: &str, batch_first: &str, delivered: bool) -> ClaimItem {
        ClaimItem {
            owner: owner.to_string(),
            batch_first_sequence: batch_first.to_string(),
            expires_at: 1_764_000_000,
            delivered,
        }
    }

    #[test]
    fn claim_items_round_trip_whatever_their_owner_and_batch_share() {
        let seq = "49000000000001000300000000000000012345";
        let first = "49000000000001000300000000000000010000";
        for original in [
            item(&format!("shardId-000000000003/{seq}"), first, false),
            item(&format!("shardId-000000000003/{seq}"), first, true),
            item(&format!("shardId-000000000003/{seq}/7"), seq, false),
            item("no-slash-owner", first, false),
            item("shard/", "", true),
            item("shard/x", "completely different", false),
            item("shard/é1", "é2", false),
            item(&format!("s/{}", "9".repeat(400)), &"9".repeat(300), false),
        ] {
            let bytes = original.encode();
            assert_eq!(
                ClaimItem::decode(&bytes),
                Some(original.clone()),
                "{original:?}"
            );
        }
    }

    #[test]
    fn a_local_stream_claim_is_stored_as_numbers_and_reads_back_the_same() {
        let owner = "shardId-000000000003/49000000000001000300000000000000012345";
        let first = "49000000000001000300000000000000010000";
        let original = item(owner, first, true);
        let bytes = original.encode();
        // expires_at, flags, the shard (1), the sequence (16), 2,345 back (2).
        assert_eq!(bytes.len(), 8 + 1 + 1 + 16 + 2);
        assert_eq!(bytes[8], PACKED | DELIVERED);
        assert_eq!(ClaimItem::decode(&bytes), Some(original));
    }

    #[test]
    fn owners_the_numbers_cannot_write_back_exactly_are_stored_as_text() {
        let seq = "49000000000001000300000000000000012345";
        for (owner, first) in [
            // A KPL user record's owner has its index after the sequence.
            (format!("shardId-000000000003/{seq}/7"), seq.to_string()),
            (format!("shardId-00000000003/{seq}"), seq.to_string()),
            (format!("shardId-0000000000003/{seq}"), seq.to_string()),
            (format!("shardid-000000000003/{seq}"), seq.to_string()),
            (format!("shardId-00000000000x/{seq}"), seq.to_string()),
            (format!("shardId-000000000003/0{seq}"), seq.to_string()),
            (format!("shardId-000000000003/{seq}"), format!("0{seq}")),
            (format!("shardId-000000000003/{seq}"), format!("{seq}1")),
            (format!("shardId-000000000003/{seq}"), "-1".to_string()),
            (format!("shardId-000000000003/{seq}"), String::new()),
            // Kinesis's own sequence numbers have 56 digits: over u128.
            (
                format!("shardId-000000000003/{}", "4".repeat(56)),
                "4".repeat(56),
            ),
        ] {
            let original = item(&owner, &first, false);
            let bytes = original.encode();
            assert_eq!(bytes[8] & PACKED, 0, "{owner} {first}");
            assert_eq!(ClaimItem::decode(&bytes), Some(original));
        }
        for (owner, first) in [
            ("shardId-000000000000/0", "0"),
            ("shardId-999999999999/1", "0"),
        ] {
            let bytes = item(owner, first, false).encode();
            assert_ne!(bytes[8] & PACKED, 0, "{owner} {first}");
            assert_eq!(ClaimItem::decode(&bytes), Some(item(owner, first, false)));
        }
    }

    #[test]
    fn plain_decimals_read_as_u128s_parse_does_and_nothing_else_reads() {
        let mut rng = fastrand::Rng::with_seed(16);
        for len in 1..=38 {
            for _ in 0..200 {
                let mut text: String = (0..len).map(|_| rng.digit(10)).collect();
                if len > 1 && text.starts_with('0') {
                    text.replace_range(..1, "7");
                }
                assert_eq!(plain_decimal(&text), text.parse::<u128>().ok(), "{text}");
            }
        }
        let max = u128::MAX.to_string();
        assert_eq!(max.len(), 39);
        for text in [
            "",
            "00",
            "01",
            "-1",
            "+1",
            "1 ",
            "1a",
            "١",
            &max,
            &"9".repeat(39),
        ] {
            assert_eq!(plain_decimal(text), None, "{text:?}");
        }
        assert_eq!(plain_decimal(&"9".repeat(38)), Some(10u128.pow(38) - 1));
        assert_eq!(plain_decimal("0"), Some(0));
    }

    #[test]
    fn a_batchs_claims_pack_as_a_full_parse_of_each_owner_does() {
        let mut rng = fastrand::Rng::with_seed(7);
        let digits = |rng: &mut fastrand::Rng, n: usize| -> String {
            (0..n).map(|_| rng.digit(10)).collect()
        };
        let mut first = BatchFirst::default();
        for _ in 0..20_000 {
            let len = rng.usize(1..=40);
            let start = digits(&mut rng, len);
            // Mostly sequences that share a prefix with the batch's first, as a
            // batch's do; sometimes any digits, a leading zero or another length.
            let sequence = match rng.u8(0..4) {
                0 => {
                    let n = rng.usize(1..=40);
                    digits(&mut rng, n)
                }
                1 => format!("0{}", &start[1.min(start.len())..]),
                _ => {
                    let keep = rng.usize(0..=len);
                    format!("{}{}", &start[..keep], digits(&mut rng, len - keep))
                }
            };
            let owner = format!("shardId-{:012}/{sequence}", rng.u64(..1_000_000_000_000));
            assert_eq!(
                first.pack(&owner, &start),
                Packed::from_text(&owner, &start),
                "{owner} {start}"
            );
        }
        for (owner, start) in [
            ("shardId-000000000003/49001", "49000"),
            ("shardId-000000000003/49000", "49001"),
            ("shardId-00000000003/49001", "49000"),
            ("shardId-000000000003/4900x", "49000"),
            ("shardId-000000000003/049001", "049000"),
            ("shardId-000000000003/1", "0"),
        ] {
            assert_eq!(
                first.pack(owner, start),
                Packed::from_text(owner, start),
                "{owner} {start}"
            );
        }
    }

    #[test]
    fn a_packed_item_that_does_not_read_back_is_refused() {
        let bytes = item(
            "shardId-000000000003/49000000000001000300000000000000012345",
            "49000000000001000300000000000000010000",
            false,
        )
        .encode();
        for cut in 0..bytes.len() {
            assert_eq!(ClaimItem::decode(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(ClaimItem::decode(&longer), None);
        let mut past_zero = bytes[..9].to_vec();
        Packed {
            shard: 1,
            sequence: 5,
            back: 6,
        }
        .write(&mut past_zero);
        assert_eq!(ClaimItem::decode(&past_zero), None);
    }

    #[test]
    fn a_claim_stores_the_digits_its_batch_shares_with_it_once() {
        let owner = "shard-3/49000000000001000300000000000000012345";
        let first = "49000000000001000300000000000000010000";
        // They differ from the 35th digit on: "2345" against "0000".
        let bytes = item(owner, first, false).encode();
        assert_eq!(bytes.len(), 8 + 1 + 2 + owner.len() + 1 + 4);
    }

    #[test]
    fn items_written_before_the_shared_prefix_still_decode() {
        let owner = "shardId-000000000001/4900";
        for delivered in [false, true] {
            let mut old = 42i64.to_be_bytes().to_vec();
            old.push(u8::from(delivered));
            old.extend_from_slice(&(owner.len() as u16).to_be_bytes());
            old.extend_from_slice(owner.as_bytes());
            old.extend_from_slice(b"4899");
            assert_eq!(
                ClaimItem::decode(&old),
                Some(ClaimItem {
                    owner: owner.to_string(),
                    batch_first_sequence: "4899".to_string(),
                    expires_at: 42,
                    delivered,
                })
            );
        }
    }

    #[test]
    fn a_truncated_item_is_refused_not_misread() {
        let bytes = item("shard/4900", "4899", false).encode();
        // Every cut up to the shared-prefix byte fails; after it, the tail is
        // merely shorter, which the length cannot tell.
        for cut in 0..=8 + 1 + 2 + "shard/4900".len() {
            assert_eq!(ClaimItem::decode(&bytes[..cut]), None, "cut at {cut}");
        }
    }
}
