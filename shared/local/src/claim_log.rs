//! The claim store's own write-ahead log.
//!
//! A commit of claims is one frame appended to the current log file and one
//! `fdatasync`. The claims then stay in memory (the store's committed table)
//! until enough have gathered to be written into fjall's tree as one sorted
//! table (an ingestion), after which the logs that held them are deleted. This
//! replaces fjall's journal and memtable for claims: inserting each claim into
//! the memtable's skip list was the largest single cost of a local run
//! (docs/benchmarks.md).
//!
//! Files: `<dir>/<number, 20 digits>.log`, replayed in number order on open.
//! Frame: payload length (u32 LE) | checksum of the payload (u64 LE) | payload;
//! payload: entries of event id (i64 BE) | item length (u32 LE, `u32::MAX` for a
//! deleted claim) | item. A frame cut short by a crash, or one whose checksum
//! does not match, ends its file's replay: it was never acknowledged.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A claim as a log entry: its item, or `None` for a deleted claim.
pub(crate) type Entry = Option<ItemBytes>;

/// A map keyed by event id.
pub(crate) type IdMap<V> = HashMap<i64, V, BuildHasherDefault<IdHasher>>;

/// Claims by event id: in the log, not yet in the tree (`None`: deleted,
/// which hides the tree's item).
pub(crate) type Table = IdMap<Entry>;

/// Hashes an event id with one multiply. Ids are random 63-bit numbers, so
/// the std map's SipHash (about 100 instructions, three hashes per claim) buys
/// nothing here; ids crafted to collide would only slow a local run down.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(MIX);
        }
    }

    fn write_i64(&mut self, id: i64) {
        self.0 = (self.0 ^ id as u64).wrapping_mul(MIX);
    }

    fn finish(&self) -> u64 {
        // The table takes its slot from the low bits: fold the high ones in.
        self.0 ^ (self.0 >> 32)
    }
}

const MIX: u64 = 0x9E37_79B9_7F4A_7C15;

/// Bytes kept inline: every packed claim (at most 41 bytes) fits.
const INLINE: usize = 46;

/// An encoded claim item, inline up to [`INLINE`] bytes: a claim waiting in
/// memory costs no allocation of its own (and no free when it is ingested).
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum ItemBytes {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl ItemBytes {
    pub(crate) fn new(item: &[u8]) -> Self {
        let mut bytes = [0u8; INLINE];
        match bytes.get_mut(..item.len()) {
            Some(inline) => {
                inline.copy_from_slice(item);
                // At most INLINE (46) bytes here.
                ItemBytes::Inline {
                    len: item.len() as u8,
                    bytes,
                }
            }
            None => ItemBytes::Heap(item.into()),
        }
    }
}

impl std::ops::Deref for ItemBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            ItemBytes::Inline { len, bytes } => &bytes[..usize::from(*len)],
            ItemBytes::Heap(bytes) => bytes,
        }
    }
}

impl std::fmt::Debug for ItemBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

const HEADER: usize = 4 + 8;
const DELETED: u32 = u32::MAX;

/// One commit's entries, encoded as they are added.
pub(crate) struct Frame {
    buf: Vec<u8>,
}

impl Frame {
    pub(crate) fn with_capacity(entries: usize) -> Self {
        let mut buf = Vec::with_capacity(HEADER + entries * 48);
        buf.resize(HEADER, 0);
        Frame { buf }
    }

    pub(crate) fn push(&mut self, event_id: i64, item: Option<&[u8]>) {
        self.buf.extend_from_slice(&event_id.to_be_bytes());
        match item {
            // An item is never near 4 GiB: the owner's length is a u16.
            Some(item) => {
                let len = u32::try_from(item.len()).unwrap_or(DELETED - 1);
                self.buf.extend_from_slice(&len.to_le_bytes());
                self.buf.extend_from_slice(&item[..len as usize]);
            }
            None => self.buf.extend_from_slice(&DELETED.to_le_bytes()),
        }
    }

    /// The frame's bytes, its header filled in.
    fn seal(&mut self) -> &[u8] {
        let payload = self.buf.len() - HEADER;
        let len = u32::try_from(payload).unwrap_or(u32::MAX);
        let sum = checksum(&self.buf[HEADER..]);
        self.buf[..4].copy_from_slice(&len.to_le_bytes());
        self.buf[4..HEADER].copy_from_slice(&sum.to_le_bytes());
        &self.buf
    }
}

/// Catches a torn or zero-filled tail; not a cryptographic check.
fn checksum(bytes: &[u8]) -> u64 {
    let mut h = MIX ^ bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        h = (h ^ u64::from_le_bytes(w))
            .wrapping_mul(MIX)
            .rotate_left(31);
    }
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    h = (h ^ u64::from_le_bytes(tail)).wrapping_mul(MIX);
    h ^ (h >> 29)
}

fn log_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:020}.log"))
}

/// The numbers of the log files in `dir`, ascending.
fn log_numbers(dir: &Path) -> io::Result<Vec<u64>> {
    let mut numbers = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let number = name
            .to_str()
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse().ok());
        if let Some(number) = number {
            numbers.push(number);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// What the logs in a directory hold, replayed in order (the last entry for
/// an id wins).
pub(crate) struct Recovered {
    pub entries: Table,
    /// The files replayed: delete them once `entries` is in the tree.
    pub through: Option<u64>,
    /// Frames that ended a file's replay (cut short or not matching their checksum).
    pub torn_frames: u64,
}

/// Replays every log in `dir` (created if missing).
pub(crate) fn recover(dir: &Path) -> Result<Recovered, LogError> {
    std::fs::create_dir_all(dir).map_err(LogError::at(dir))?;
    let mut recovered = Recovered {
        entries: Table::default(),
        through: None,
        torn_frames: 0,
    };
    for number in log_numbers(dir).map_err(LogError::at(dir))? {
        let path = log_path(dir, number);
        let bytes = std::fs::read(&path).map_err(LogError::at(&path))?;
        if !replay(&bytes, &mut recovered.entries) {
            recovered.torn_frames += 1;
            tracing::warn!(log = %path.display(), "the claim log ends in a frame cut short or corrupt; replayed up to it (that commit was never acknowledged)");
        }
        recovered.through = Some(number);
    }
    Ok(recovered)
}

/// Applies the frames of one file; false when a bad frame ended it early.
fn replay(mut bytes: &[u8], entries: &mut Table) -> bool {
    while !bytes.is_empty() {
        let Some((payload, rest)) = frame(bytes) else {
            return false;
        };
        let mut staged = Vec::new();
        if !parse_entries(payload, &mut staged) {
            return false;
        }
        entries.extend(staged);
        bytes = rest;
    }
    true
}

/// The next frame's payload, checked, and what follows it.
fn frame(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let sum = u64::from_le_bytes(bytes.get(4..HEADER)?.try_into().ok()?);
    let payload = bytes.get(HEADER..HEADER.checked_add(len)?)?;
    (checksum(payload) == sum).then(|| (payload, &bytes[HEADER + len..]))
}

fn parse_entries(mut payload: &[u8], out: &mut Vec<(i64, Entry)>) -> bool {
    while !payload.is_empty() {
        let Some(parsed) = parse_entry(payload) else {
            return false;
        };
        out.push(parsed.0);
        payload = parsed.1;
    }
    true
}

fn parse_entry(bytes: &[u8]) -> Option<((i64, Entry), &[u8])> {
    let id = i64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
    let len = u32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?);
    if len == DELETED {
        return Some(((id, None), &bytes[12..]));
    }
    let end = 12usize.checked_add(len as usize)?;
    let item = ItemBytes::new(bytes.get(12..end)?);
    Some(((id, Some(item)), &bytes[end..]))
}

#[derive(Debug, thiserror::Error)]
#[error("the claim log {path}")]
pub struct LogError {
    path: PathBuf,
    #[source]
    source: io::Error,
}

impl LogError {
    fn at(path: &Path) -> impl FnOnce(io::Error) -> LogError + '_ {
        move |source| LogError {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The log file commits are appended to.
pub(crate) struct ClaimLog {
    dir: PathBuf,
    number: u64,
    file: File,
    len: u64,
}

impl ClaimLog {
    /// Starts log `number` in `dir` (durably: the directory entry is synced).
    pub(crate) fn create(dir: &Path, number: u64) -> Result<ClaimLog, LogError> {
        let path = log_path(dir, number);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(LogError::at(&path))?;
        // A file left by a crash before its first commit is empty; anything
        // else under this number would have been replayed and removed.
        file.set_len(0).map_err(LogError::at(&path))?;
        sync_dir(dir)?;
        Ok(ClaimLog {
            dir: dir.to_path_buf(),
            number,
            file,
            len: 0,
        })
    }

    /// Appends one commit and syncs it. On failure the file is cut back, so
    /// no partial frame stays in front of a later one.
    pub(crate) fn append(&mut self, frame: &mut Frame) -> Result<(), LogError> {
        let bytes = frame.seal();
        let written = self
            .file
            .write_all(bytes)
            .and_then(|()| self.file.sync_data());
        if let Err(source) = written {
            let _ = self.file.set_len(self.len);
            return Err(LogError {
                path: log_path(&self.dir, self.number),
                source,
            });
        }
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Moves on to the next file; returns the number of the one closed.
    pub(crate) fn rotate(&mut self) -> Result<u64, LogError> {
        let next = ClaimLog::create(&self.dir, self.number + 1)?;
        let closed = self.number;
        *self = next;
        Ok(closed)
    }
}

/// Deletes the logs numbered `through` and below, oldest first, and syncs the
/// directory: a log left behind by a crash is replayed again, harmlessly,
/// since it is older than every log after it.
pub(crate) fn remove_through(dir: &Path, through: u64) -> Result<(), LogError> {
    for number in log_numbers(dir).map_err(LogError::at(dir))? {
        if number > through {
            break;
        }
        let path = log_path(dir, number);
        std::fs::remove_file(&path).map_err(LogError::at(&path))?;
    }
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), LogError> {
    crate::sync_dir(dir).map_err(LogError::at(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(log: &mut ClaimLog, entries: &[(i64, Option<&[u8]>)]) {
        let mut frame = Frame::with_capacity(entries.len());
        for (id, item) in entries {
            frame.push(*id, *item);
        }
        log.append(&mut frame).expect("append");
    }

    #[test]
    fn items_read_back_the_same_inline_or_on_the_heap() {
        for len in [0, 1, INLINE - 1, INLINE, INLINE + 1, 300] {
            let item: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let kept = ItemBytes::new(&item);
            assert_eq!(&*kept, item.as_slice(), "{len}");
            assert_eq!(matches!(kept, ItemBytes::Inline { .. }), len <= INLINE);
        }
    }

    #[test]
    fn commits_replay_in_order_and_the_last_entry_for_an_id_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = ClaimLog::create(dir.path(), 1).expect("create");
        commit(&mut log, &[(1, Some(b"a")), (2, Some(b"b"))]);
        let closed = log.rotate().expect("rotate");
        assert_eq!(closed, 1);
        commit(&mut log, &[(1, None), (3, Some(b""))]);
        commit(&mut log, &[(-7, Some(&[0xff; 300]))]);
        let got = recover(dir.path()).expect("recover");
        assert_eq!(got.through, Some(2));
        assert_eq!(got.torn_frames, 0);
        let want: Table = [
            (1, None),
            (2, Some(ItemBytes::new(b"b"))),
            (3, Some(ItemBytes::new(b""))),
            (-7, Some(ItemBytes::new(&[0xff; 300]))),
        ]
        .into_iter()
        .collect();
        assert_eq!(got.entries, want);
    }

    #[test]
    fn a_frame_cut_short_or_corrupted_ends_the_replay_before_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = ClaimLog::create(dir.path(), 5).expect("create");
        commit(&mut log, &[(1, Some(b"kept"))]);
        let good = std::fs::metadata(log_path(dir.path(), 5))
            .expect("meta")
            .len();
        commit(&mut log, &[(2, Some(b"torn")), (3, Some(b"torn too"))]);
        let full = std::fs::read(log_path(dir.path(), 5)).expect("read");
        drop(log);
        for cut in good as usize + 1..full.len() {
            std::fs::write(log_path(dir.path(), 5), &full[..cut]).expect("write");
            let got = recover(dir.path()).expect("recover");
            assert_eq!(got.entries.len(), 1, "cut at {cut}");
            assert_eq!(got.entries.get(&1), Some(&Some(ItemBytes::new(b"kept"))));
            assert_eq!(got.torn_frames, 1);
        }
        let mut flipped = full.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        std::fs::write(log_path(dir.path(), 5), &flipped).expect("write");
        let got = recover(dir.path()).expect("recover");
        assert_eq!(got.entries.len(), 1);
        let mut zeroed = full[..good as usize].to_vec();
        zeroed.extend_from_slice(&[0u8; 64]);
        std::fs::write(log_path(dir.path(), 5), &zeroed).expect("write");
        let got = recover(dir.path()).expect("recover");
        assert_eq!(got.entries.len(), 1);
        assert_eq!(got.torn_frames, 1);
    }

    #[test]
    fn removing_through_a_number_keeps_the_later_logs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = ClaimLog::create(dir.path(), 1).expect("create");
        commit(&mut log, &[(1, Some(b"a"))]);
        log.rotate().expect("rotate");
        commit(&mut log, &[(2, Some(b"b"))]);
        log.rotate().expect("rotate");
        remove_through(dir.path(), 2).expect("remove");
        assert_eq!(log_numbers(dir.path()).expect("list"), vec![3]);
        commit(&mut log, &[(3, Some(b"c"))]);
        let got = recover(dir.path()).expect("recover");
        assert_eq!(got.entries.keys().copied().collect::<Vec<_>>(), vec![3]);
    }
}
