//! The local lake sink: what Firehose + its Parquet conversion do in AWS.
//!
//! - `deliver` appends the events to a spool file and fsyncs it before it answers,
//!   so "accepted" means durable, as it does for Firehose.
//! - Accepted rows are buffered per `event_date`/`event_hour` partition and rolled
//!   into Parquet files (the Glue table's column types, Snappy) once the buffer
//!   holds `max_rows`, and at `flush`. Files are written hidden, fsynced and then
//!   renamed into `events/event_date=YYYY-MM-DD/event_hour=HH/part-<run>-<n>.parquet`.
//! - A roll seals the spool (renames it `_spool.sealed-<run>-<n>.ndjson` and starts
//!   a new one) and takes the buffers under the lock, then encodes the Parquet
//!   outside it: the other shards keep appending meanwhile. One roll runs at a
//!   time. Its sealed spool is deleted once its files are renamed into place.
//! - A process that dies leaves spools behind; `open` replays every one into
//!   Parquet, so nothing accepted is lost. A crash between a file's rename and
//!   its spool's deletion writes those rows twice, like a Firehose redelivery;
//!   the `events_dedup` view removes such doubles.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use arrow_array::builder::{Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use serde::Deserialize;
use sightline_core::model::OutputEvent;
use sightline_core::ports::{Delivery, EventSink};
use sightline_core::retry::{CallError, Classify, ErrorClass, Retrier};

/// Rows per Parquet row group.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;
/// Rows buffered across partitions before they are rolled into Parquet: half a
/// row group, as the rows that arrive while a roll encodes outside the lock are
/// buffered beside it (a full row group's worth, then, peaked 20-30 MB higher
/// at 5 M events; 500,000 rows held about 90 MB). Events arrive roughly in time
/// order, so a roll mostly writes the one or two hours being filled (the demo's
/// 1 M events: about 50 files in 25 hours).
pub const DEFAULT_MAX_BUFFERED_ROWS: usize = ROW_GROUP_ROWS / 2;

const SPOOL_FILE: &str = "_spool.ndjson";
/// Sealed spools: `_spool.sealed-<run>-<n>.ndjson`, deleted once rolled.
const SEALED_PREFIX: &str = "_spool.sealed-";
const SPOOL_SUFFIX: &str = ".ndjson";

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("lake I/O on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing Parquet to {path}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("building an Arrow batch")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("encoding an event for the spool")]
    Encode(#[from] serde_json::Error),
    #[error("spool line {line} of {path} has no valid partition ({date:?}, {hour:?})")]
    SpoolPartition {
        path: PathBuf,
        line: u64,
        date: String,
        hour: String,
    },
    #[error(
        "{failed} roll(s) of accepted rows into Parquet failed; their rows are kept in sealed spools under {root} and are written by the next open"
    )]
    RollsPending { failed: u64, root: PathBuf },
    #[error("the lake's lock was poisoned by a panic")]
    Poisoned,
}

impl Classify for LakeError {
    fn class(&self) -> ErrorClass {
        match self {
            // A full disk or a slow device may recover; a retry of the batch is cheap.
            LakeError::Io { .. } | LakeError::Parquet { .. } => ErrorClass::Transient,
            _ => ErrorClass::Permanent,
        }
    }
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> LakeError + '_ {
    move |source| LakeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The Parquet schema: `OUTPUT_COLUMNS` without the two partition columns, which
/// live in the path, as in the Glue table.
pub fn file_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("detection_oid", DataType::Int64, false),
        Field::new("video_camera_oid", DataType::Int64, false),
        Field::new("geographical_location_oid", DataType::Int64, false),
        Field::new("item_name", DataType::Utf8, false),
        Field::new("timestamp_detected", DataType::Int64, false),
        Field::new("geographical_location", DataType::Utf8, true),
        Field::new("ingested_at", DataType::Int64, false),
        Field::new("source_shard", DataType::Utf8, false),
        Field::new("source_sequence", DataType::Utf8, false),
    ]))
}

/// Columns whose values are (nearly) all distinct: a dictionary would hash every
/// value and then hold each once anyway, so they are written plain. The others
/// (camera, location, item, shard) repeat and keep their dictionaries.
const PLAIN_COLUMNS: [&str; 4] = [
    "detection_oid",
    "timestamp_detected",
    "ingested_at",
    "source_sequence",
];

fn writer_properties() -> WriterProperties {
    PLAIN_COLUMNS
        .iter()
        .fold(WriterProperties::builder(), |props, column| {
            props.set_column_dictionary_enabled(ColumnPath::from(*column), false)
        })
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_created_by(format!("sightline {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// One spool line: an output event as `write_json_line` wrote it.
#[derive(Debug, Deserialize)]
struct SpoolRow {
    detection_oid: i64,
    video_camera_oid: i64,
    geographical_location_oid: i64,
    item_name: String,
    timestamp_detected: i64,
    geographical_location: Option<String>,
    event_date: String,
    event_hour: String,
    ingested_at: i64,
    source_shard: String,
    source_sequence: String,
}

/// Column builders for one partition.
struct PartitionBuffer {
    detection_oid: Int64Builder,
    video_camera_oid: Int64Builder,
    geographical_location_oid: Int64Builder,
    item_name: StringBuilder,
    timestamp_detected: Int64Builder,
    geographical_location: StringBuilder,
    ingested_at: Int64Builder,
    source_shard: StringBuilder,
    source_sequence: StringBuilder,
    rows: usize,
}

impl PartitionBuffer {
    fn new() -> Self {
        PartitionBuffer {
            detection_oid: Int64Builder::new(),
            video_camera_oid: Int64Builder::new(),
            geographical_location_oid: Int64Builder::new(),
            item_name: StringBuilder::new(),
            timestamp_detected: Int64Builder::new(),
            geographical_location: StringBuilder::new(),
            ingested_at: Int64Builder::new(),
            source_shard: StringBuilder::new(),
            source_sequence: StringBuilder::new(),
            rows: 0,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        detection_oid: i64,
        video_camera_oid: i64,
        geographical_location_oid: i64,
        item_name: &str,
        timestamp_detected: i64,
        geographical_location: Option<&str>,
        ingested_at: i64,
        source_shard: &str,
        source_sequence: &str,
    ) {
        self.detection_oid.append_value(detection_oid);
        self.video_camera_oid.append_value(video_camera_oid);
        self.geographical_location_oid
            .append_value(geographical_location_oid);
        self.item_name.append_value(item_name);
        self.timestamp_detected.append_value(timestamp_detected);
        self.geographical_location
            .append_option(geographical_location);
        self.ingested_at.append_value(ingested_at);
        self.source_shard.append_value(source_shard);
        self.source_sequence.append_value(source_sequence);
        self.rows += 1;
    }

    fn finish(&mut self, schema: &SchemaRef) -> Result<RecordBatch, LakeError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.detection_oid.finish()),
            Arc::new(self.video_camera_oid.finish()),
            Arc::new(self.geographical_location_oid.finish()),
            Arc::new(self.item_name.finish()),
            Arc::new(self.timestamp_detected.finish()),
            Arc::new(self.geographical_location.finish()),
            Arc::new(self.ingested_at.finish()),
            Arc::new(self.source_shard.finish()),
            Arc::new(self.source_sequence.finish()),
        ];
        self.rows = 0;
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }
}

/// `event_date` (`YYYY-MM-DD`) and `event_hour` (`HH`) as their ASCII bytes:
/// looked up once per event, so no strings are built for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct PartitionKey {
    date: [u8; 10],
    hour: [u8; 2],
}

impl PartitionKey {
    fn parse(date: &str, hour: &str) -> Option<Self> {
        Some(PartitionKey {
            date: date.as_bytes().try_into().ok()?,
            hour: hour.as_bytes().try_into().ok()?,
        })
    }

    /// `event_date=YYYY-MM-DD/event_hour=HH` under `root`.
    fn dir(&self, root: &Path) -> PathBuf {
        root.join(format!(
            "event_date={}",
            String::from_utf8_lossy(&self.date)
        ))
        .join(format!(
            "event_hour={}",
            String::from_utf8_lossy(&self.hour)
        ))
    }
}

struct State {
    buffers: BTreeMap<PartitionKey, PartitionBuffer>,
    buffered_rows: usize,
    spool: File,
    spool_bytes: u64,
    /// Spools left by an earlier process, replayed into the buffers: the next
    /// roll deletes them with its own.
    replayed_spools: Vec<PathBuf>,
    sealed: u64,
    /// File numbers handed out (a roll reserves its files' numbers when it seals).
    files_named: u64,
    files_written: u64,
    rows_written: u64,
    bytes_written: u64,
    failed_rolls: u64,
}

/// What one roll writes: the buffers taken at its seal, and the spools that
/// hold the same rows, deleted once the files are in place.
struct Sealed {
    buffers: BTreeMap<PartitionKey, PartitionBuffer>,
    spools: Vec<PathBuf>,
    first_file: u64,
}

/// What the lake has written so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LakeStats {
    pub files: u64,
    pub rows: u64,
    pub bytes: u64,
    /// Rows replayed from a spool left by an earlier process.
    pub recovered_rows: u64,
}

/// The Parquet lake under `<root>/events`.
pub struct LakeSink {
    root: PathBuf,
    events_dir: PathBuf,
    spool_path: PathBuf,
    run_id: String,
    max_buffered_rows: usize,
    schema: SchemaRef,
    recovered_rows: u64,
    state: Mutex<State>,
    /// Held by the one roll writing Parquet. A roll takes `state` only briefly,
    /// at its seal and at its end, so holding this never holds up appends.
    rolling: Mutex<()>,
}

impl LakeSink {
    /// Opens (or creates) the lake at `root`; replays a spool left by a crash.
    /// `run_id` names this process's files, so runs never overwrite each other.
    pub fn open(root: &Path, run_id: &str, max_buffered_rows: usize) -> Result<Self, LakeError> {
        let events_dir = root.join("events");
        fs::create_dir_all(&events_dir).map_err(io_at(&events_dir))?;
        let spool_path = root.join(SPOOL_FILE);
        let spool = open_spool(&spool_path)?;
        let mut sink = LakeSink {
            root: root.to_path_buf(),
            events_dir,
            spool_path,
            run_id: run_id.to_string(),
            max_buffered_rows: max_buffered_rows.max(1),
            schema: file_schema(),
            recovered_rows: 0,
            state: Mutex::new(State {
                buffers: BTreeMap::new(),
                buffered_rows: 0,
                spool,
                spool_bytes: 0,
                replayed_spools: Vec::new(),
                sealed: 0,
                files_named: 0,
                files_written: 0,
                rows_written: 0,
                bytes_written: 0,
                failed_rolls: 0,
            }),
            rolling: Mutex::new(()),
        };
        sink.recovered_rows = sink.recover()?;
        Ok(sink)
    }

    pub fn events_dir(&self) -> &Path {
        &self.events_dir
    }

    /// The one roll's turn. It guards no data, so a panic while it was held
    /// leaves nothing to repair.
    fn roll_turn(&self) -> MutexGuard<'_, ()> {
        self.rolling
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, LakeError> {
        self.state.lock().map_err(|_| LakeError::Poisoned)
    }

    /// Rows accepted by an earlier process but never rolled (its sealed spools,
    /// then its open one): write them now.
    fn recover(&self) -> Result<u64, LakeError> {
        let mut spools: Vec<PathBuf> = fs::read_dir(&self.root)
            .map_err(io_at(&self.root))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| {
                path.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(SEALED_PREFIX) && n.ends_with(SPOOL_SUFFIX))
            })
            .collect();
        spools.sort();
        let mut rows = 0u64;
        {
            let mut state = self.lock()?;
            for path in &spools {
                rows += self.replay(&mut state, path)?;
            }
            rows += self.replay(&mut state, &self.spool_path)?;
            state.replayed_spools = spools;
            // The open spool holds the earlier process's lines (maybe a torn
            // one): the next seal sets it aside, so new lines start a clean file.
            state.spool_bytes = fs::metadata(&self.spool_path)
                .map_err(io_at(&self.spool_path))?
                .len();
        }
        if rows > 0 {
            tracing::info!(rows, "replaying the lake spool of an earlier run");
        }
        self.flush()?;
        Ok(rows)
    }

    /// One spool's rows into the buffers.
    fn replay(&self, state: &mut State, path: &Path) -> Result<u64, LakeError> {
        let file = File::open(path).map_err(io_at(path))?;
        let mut rows = 0u64;
        for (number, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(io_at(path))?;
            // Only fsynced lines were ever accepted; a torn tail was not.
            let Ok(row) = serde_json::from_str::<SpoolRow>(&line) else {
                tracing::warn!(path = %path.display(), "skipping a torn spool line");
                continue;
            };
            // A whole line was written by this sink, so its partition parses;
            // one that does not is refused rather than filed somewhere else.
            let key = PartitionKey::parse(&row.event_date, &row.event_hour).ok_or_else(|| {
                LakeError::SpoolPartition {
                    path: path.to_path_buf(),
                    line: number as u64 + 1,
                    date: row.event_date.clone(),
                    hour: row.event_hour.clone(),
                }
            })?;
            state
                .buffers
                .entry(key)
                .or_insert_with(PartitionBuffer::new)
                .push(
                    row.detection_oid,
                    row.video_camera_oid,
                    row.geographical_location_oid,
                    &row.item_name,
                    row.timestamp_detected,
                    row.geographical_location.as_deref(),
                    row.ingested_at,
                    &row.source_shard,
                    &row.source_sequence,
                );
            state.buffered_rows += 1;
            rows += 1;
        }
        Ok(rows)
    }

    /// Appends accepted events: spool first (durable), then the column buffers.
    fn append(&self, events: &[OutputEvent<'_>]) -> Result<(), LakeError> {
        let mut lines = Vec::with_capacity(events.len() * 256);
        for e in events {
            e.write_json_line(&mut lines)?;
        }
        let mut state = self.lock()?;
        let written = state
            .spool
            .write_all(&lines)
            .and_then(|()| state.spool.sync_data());
        if let Err(e) = written {
            // Cut a partial append off, so a retried call does not leave a torn line.
            let keep = state.spool_bytes;
            let _ = state.spool.set_len(keep);
            return Err(io_at(&self.spool_path)(e));
        }
        state.spool_bytes += lines.len() as u64;
        let mut key = PartitionKey {
            date: [0u8; 10],
            hour: [0u8; 2],
        };
        for e in events {
            e.partition.write_date(&mut key.date);
            e.partition.write_hour(&mut key.hour);
            state
                .buffers
                .entry(key)
                .or_insert_with(PartitionBuffer::new)
                .push(
                    e.detection_oid,
                    e.video_camera_oid,
                    e.geographical_location_oid,
                    &e.item_name,
                    e.timestamp_detected,
                    e.geographical_location,
                    e.ingested_at,
                    e.source_shard,
                    e.source_sequence,
                );
        }
        state.buffered_rows += events.len();
        let due = state.buffered_rows >= self.max_buffered_rows;
        drop(state);
        if due {
            self.roll_when_due();
        }
        Ok(())
    }

    /// Rolls the buffers if they are (still) full. A roll already running leaves
    /// them to the next append, unless they hold twice the limit: then this waits
    /// its turn, which bounds the memory. The rows are durable in the spool
    /// already, so a failed roll is logged and counted, not the caller's error
    /// (`flush` reports it).
    fn roll_when_due(&self) {
        let turn = match self.rolling.try_lock() {
            Ok(turn) => turn,
            Err(std::sync::TryLockError::WouldBlock) => {
                let over = self
                    .lock()
                    .map(|s| s.buffered_rows >= 2 * self.max_buffered_rows)
                    .unwrap_or(false);
                if !over {
                    return;
                }
                self.roll_turn()
            }
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
        };
        let result = self.lock().and_then(|mut state| {
            if state.buffered_rows >= self.max_buffered_rows {
                self.seal(&mut state).map(Some)
            } else {
                Ok(None)
            }
        });
        let result = match result {
            Ok(Some(sealed)) => self.write_sealed(sealed),
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        drop(turn);
        if let Err(e) = result {
            tracing::error!(error = %sightline_core::batch::chain(&e), root = %self.root.display(), "rolling the lake into Parquet failed; the rows stay in a sealed spool");
            if let Ok(mut state) = self.lock() {
                state.failed_rolls += 1;
            }
        }
    }

    /// Takes the buffers and seals the spool that holds their rows (renamed,
    /// and a new one started), under the state lock: quick, no encoding.
    fn seal(&self, state: &mut State) -> Result<Sealed, LakeError> {
        let mut spools = std::mem::take(&mut state.replayed_spools);
        if state.spool_bytes > 0 {
            state.sealed += 1;
            let sealed = self.root.join(format!(
                "{SEALED_PREFIX}{}-{:05}{SPOOL_SUFFIX}",
                self.run_id, state.sealed
            ));
            fs::rename(&self.spool_path, &sealed).map_err(io_at(&sealed))?;
            state.spool = match open_spool(&self.spool_path) {
                Ok(file) => file,
                Err(e) => {
                    // Keep appending where the rows are: put the spool back.
                    if let Err(back) = fs::rename(&sealed, &self.spool_path) {
                        tracing::error!(error = %back, path = %sealed.display(), "could not put the spool back; the next open replays it");
                    }
                    return Err(e);
                }
            };
            state.spool_bytes = 0;
            sync_dir(&self.root)?;
            spools.push(sealed);
        }
        let buffers = std::mem::take(&mut state.buffers);
        let files = buffers.values().filter(|b| b.rows > 0).count() as u64;
        let first_file = state.files_named + 1;
        state.files_named += files;
        state.buffered_rows = 0;
        Ok(Sealed {
            buffers,
            spools,
            first_file,
        })
    }

    /// Writes a sealed roll's Parquet files, then deletes its spools. Outside the
    /// state lock, so appends go on meanwhile.
    fn write_sealed(&self, sealed: Sealed) -> Result<(), LakeError> {
        let Sealed {
            mut buffers,
            spools,
            first_file,
        } = sealed;
        let mut dirs = Vec::new();
        let (mut files, mut rows, mut bytes) = (0u64, 0u64, 0u64);
        for (key, buffer) in buffers.iter_mut().filter(|(_, b)| b.rows > 0) {
            let batch = buffer.finish(&self.schema)?;
            let dir = key.dir(&self.events_dir);
            fs::create_dir_all(&dir).map_err(io_at(&dir))?;
            let name = format!("part-{}-{:05}.parquet", self.run_id, first_file + files);
            bytes += self.write_parquet(&dir, &name, &batch)?;
            files += 1;
            rows += batch.num_rows() as u64;
            dirs.push(dir);
        }
        drop(buffers);
        for dir in dirs {
            sync_dir(&dir)?;
        }
        for spool in &spools {
            fs::remove_file(spool).map_err(io_at(spool))?;
        }
        if !spools.is_empty() {
            sync_dir(&self.root)?;
        }
        let mut state = self.lock()?;
        state.files_written += files;
        state.rows_written += rows;
        state.bytes_written += bytes;
        Ok(())
    }

    /// Writes `.<name>.tmp`, fsyncs it, renames it to `name`. Hidden while being
    /// written, so neither Athena nor the local engine reads a partial file.
    fn write_parquet(&self, dir: &Path, name: &str, batch: &RecordBatch) -> Result<u64, LakeError> {
        let tmp = dir.join(format!(".{name}.tmp"));
        let path = dir.join(name);
        let file = File::create(&tmp).map_err(io_at(&tmp))?;
        let parquet_err = |source| LakeError::Parquet {
            path: tmp.clone(),
            source,
        };
        let mut writer = ArrowWriter::try_new(file, self.schema.clone(), Some(writer_properties()))
            .map_err(parquet_err)?;
        writer.write(batch).map_err(parquet_err)?;
        let file = writer.into_inner().map_err(parquet_err)?;
        file.sync_all().map_err(io_at(&tmp))?;
        let bytes = file.metadata().map_err(io_at(&tmp))?.len();
        drop(file);
        fs::rename(&tmp, &path).map_err(io_at(&path))?;
        Ok(bytes)
    }

    /// Rolls whatever is buffered (end of a run), after any roll in progress;
    /// fails if an earlier roll failed (its rows wait in a sealed spool).
    pub fn flush(&self) -> Result<(), LakeError> {
        let _turn = self.roll_turn();
        let sealed = self.seal(&mut *self.lock()?)?;
        self.write_sealed(sealed)?;
        let failed = self.lock()?.failed_rolls;
        if failed > 0 {
            return Err(LakeError::RollsPending {
                failed,
                root: self.root.clone(),
            });
        }
        Ok(())
    }

    pub fn stats(&self) -> LakeStats {
        match self.lock() {
            Ok(s) => LakeStats {
                files: s.files_written,
                rows: s.rows_written,
                bytes: s.bytes_written,
                recovered_rows: self.recovered_rows,
            },
            Err(_) => LakeStats::default(),
        }
    }
}

/// The open spool, appended to (created if absent).
fn open_spool(path: &Path) -> Result<File, LakeError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)
        .map_err(io_at(path))
}

fn sync_dir(dir: &Path) -> Result<(), LakeError> {
    crate::sync_dir(dir).map_err(io_at(dir))
}

impl EventSink for LakeSink {
    type Error = CallError<LakeError>;

    async fn deliver<'a>(
        &'a self,
        events: &'a [OutputEvent<'a>],
        retrier: &'a Retrier<'a>,
    ) -> Delivery<CallError<LakeError>> {
        // All or nothing: the spool write is one append, so a failed call accepted none.
        match retrier.run(|| async { self.append(events) }).await {
            Ok(()) => Delivery {
                accepted: vec![true; events.len()],
                error: None,
            },
            Err(e) => Delivery {
                accepted: vec![false; events.len()],
                error: Some(e),
            },
        }
    }
}
