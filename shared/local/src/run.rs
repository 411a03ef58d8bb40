//! `sightline run`: an NDJSON file through the Lambda's batch code, on one machine.
//!
//! A reader thread plays Kinesis: it keys each line by its detection_oid, hashes it to a
//! shard, gives it the shard's next sequence number and cuts per-shard batches.
//! One thread per shard runs the local event source mapping ([`crate::esm`]),
//! with Lambda's delivery rules (partial batch responses, whole-batch retries
//! and bisection, the timeout, the retry quota and the on-failure destination,
//! which is `<lake>/_failed/`), around the function's batch code.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, UNIX_EPOCH};

use serde_json::json;
use sightline_core::dataset_b::DatasetError;
use sightline_core::metrics::BatchStats;
use sightline_core::time::UtcHour;
use sightline_core::{
    Clock, DatasetB, Deadline, InputRecord, Pipeline, PipelineConfig, SystemClock, defaults,
};
use tokio::sync::mpsc;

use crate::esm::{Esm, EsmConfig, EsmReport, Function, FunctionError, Runtime, ShardInput};

use crate::lake::{DEFAULT_MAX_BUFFERED_ROWS, LakeError, LakeSink, LakeStats};
use crate::quarantine::QuarantineDir;
use crate::store::{LocalClaimStore, OpenStats, StoreError};
use crate::stream::{SequenceSpace, partition_key, shard_for_key, shard_id};

/// Lambda's own limit on a Kinesis batch.
pub const MAX_BATCH_SIZE: usize = 10_000;

#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    pub input: PathBuf,
    /// `events/`, `quarantine/` and `_runs/` go here.
    pub lake_dir: PathBuf,
    /// The claim store.
    pub state_dir: PathBuf,
    pub shards: usize,
    /// Records per Lambda batch (Kinesis `BatchSize`, at most 10,000).
    pub batch_size: usize,
    pub max_buffered_rows: usize,
    pub dedup_window_secs: i64,
    /// The event source mapping (its `batch_size` is replaced by `batch_size`).
    pub esm: EsmConfig,
}

impl RunConfig {
    pub fn new(input: impl Into<PathBuf>, lake_dir: impl Into<PathBuf>) -> Self {
        let lake_dir = lake_dir.into();
        RunConfig {
            input: input.into(),
            state_dir: lake_dir.join("_state"),
            lake_dir,
            shards: 4,
            batch_size: 5_000,
            max_buffered_rows: DEFAULT_MAX_BUFFERED_ROWS,
            dedup_window_secs: defaults::DEDUP_WINDOW_SECS,
            esm: EsmConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("reading {path}")]
    Input {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("batch size must be 1..={MAX_BATCH_SIZE}, got {0}")]
    BatchSize(usize),
    #[error("the claim store")]
    Store(#[from] StoreError),
    #[error("the lake")]
    Lake(#[from] LakeError),
    #[error("the embedded Dataset B")]
    DatasetB(#[from] DatasetError),
    #[error(
        "the event source mapping gave up on {batches} batch(es), {records} record(s), after its retries; their on-failure records are in {dir} (see the warnings above for the cause)"
    )]
    GaveUp {
        batches: usize,
        records: usize,
        dir: PathBuf,
    },
    #[error("writing an on-failure record to {path}")]
    OnFailure {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("a shard worker or the reader stopped unexpectedly")]
    Worker,
    #[error("starting a shard worker's runtime")]
    Runtime(#[source] io::Error),
}

/// Live counts for a progress bar.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub read_lines: u64,
    pub read_bytes: u64,
    pub total_bytes: u64,
    /// Records with a final fate (delivered, duplicate, quarantined).
    pub settled: u64,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    pub run_id: String,
    pub input: PathBuf,
    pub lines: u64,
    /// Summed over every invocation; `failed` counts records sent back for retry.
    pub stats: BatchStats,
    pub invocations: u64,
    /// What the event source mapping did (invocations, kills, splits, give-ups).
    pub esm: EsmReport,
    pub lake: LakeStats,
    pub store: OpenStats,
    pub store_commits: u64,
    pub stream_no: u64,
    /// The input was run before: its records kept their sequence numbers.
    pub replay: bool,
    pub wall: Duration,
}

impl RunSummary {
    pub fn settled(&self) -> u64 {
        self.stats.delivered + self.stats.duplicates + self.stats.quarantined
    }

    pub fn events_per_sec(&self) -> f64 {
        self.lines as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// The run's metrics, as written to `_runs/<run_id>.json`.
    pub fn to_json(&self) -> serde_json::Value {
        let s = &self.stats;
        json!({
            "run_id": self.run_id,
            "input": self.input.display().to_string(),
            "lines": self.lines,
            "received": self.lines,
            "delivered": s.delivered,
            "duplicates": s.duplicates,
            "duplicates_in_batch": s.duplicates_in_batch,
            "duplicates_upstream": s.duplicates_upstream,
            "duplicates_replayed": s.duplicates_replayed,
            "quarantined": s.quarantined,
            "quarantine_reasons": s.quarantine_reasons,
            "unknown_location": s.unknown_location,
            "retried_records": s.failed,
            "invocations": self.invocations,
            "whole_failures": self.esm.whole_failures(),
            "splits": self.esm.splits(),
            "gave_up_batches": self.esm.gave_up().len(),
            "lake_files": self.lake.files,
            "lake_rows": self.lake.rows,
            "lake_bytes": self.lake.bytes,
            "lake_rows_recovered": self.lake.recovered_rows,
            "claims_live_at_start": self.store.live_claims,
            "claims_expired_at_start": self.store.expired_removed,
            "claims_replayed_from_log": self.store.replayed_from_log,
            "store_commits": self.store_commits,
            "stream_no": self.stream_no,
            "replay": self.replay,
            "wall_ms": self.wall.as_millis() as u64,
        })
    }
}

type LocalPipeline = Pipeline<LocalClaimStore, LakeSink, QuarantineDir, SystemClock>;

/// `20261124T021500Z-1a2b`: sortable, and distinct between runs.
fn new_run_id(now_ms: i64) -> String {
    let h = UtcHour::from_epoch_ms(now_ms);
    let secs = now_ms.rem_euclid(3_600_000) / 1000;
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z-{:04x}",
        h.year,
        h.month,
        h.day,
        h.hour,
        secs / 60,
        secs % 60,
        fastrand::u16(..)
    )
}

/// The input's stream number: the same file (path, size, mtime) keeps its number.
fn stream_number(store: &LocalClaimStore, input: &Path) -> Result<(u64, bool), RunError> {
    let input_err = |source| RunError::Input {
        path: input.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(input).map_err(input_err)?;
    let canonical = std::fs::canonicalize(input).map_err(input_err)?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let key = format!("stream#{}#{}#{mtime}", canonical.display(), meta.len());
    let read_u64 = |v: Vec<u8>| {
        <[u8; 8]>::try_from(v.as_slice())
            .map(u64::from_be_bytes)
            .ok()
    };
    if let Some(no) = store.get_meta(&key)?.and_then(read_u64) {
        return Ok((no, true));
    }
    let next = store
        .get_meta("streams#last")?
        .and_then(read_u64)
        .unwrap_or(0)
        + 1;
    store.put_meta("streams#last", &next.to_be_bytes())?;
    store.put_meta(&key, &next.to_be_bytes())?;
    Ok((next, false))
}

struct Counters {
    read_lines: AtomicU64,
    read_bytes: AtomicU64,
    settled: AtomicU64,
    workers_done: AtomicUsize,
}

/// Runs `config.input` through the batch code; `on_progress` is called a few
/// times a second while it runs.
pub async fn run(
    config: &RunConfig,
    mut on_progress: impl FnMut(&Progress),
) -> Result<RunSummary, RunError> {
    run_with(config, &mut on_progress).await
}

/// Only the run's outline: an `async fn` body is compiled in the crate that
/// polls it, so the batch work lives in [`spawn_shard_workers`] and
/// [`read_input`], plain functions compiled here.
async fn run_with(
    config: &RunConfig,
    on_progress: &mut dyn FnMut(&Progress),
) -> Result<RunSummary, RunError> {
    if config.batch_size == 0 || config.batch_size > MAX_BATCH_SIZE {
        return Err(RunError::BatchSize(config.batch_size));
    }
    let started = Instant::now();
    let clock = SystemClock;
    let now_ms = clock.now_ms();
    let run_id = new_run_id(now_ms);
    let input_err = |source| RunError::Input {
        path: config.input.clone(),
        source,
    };
    let file = File::open(&config.input).map_err(input_err)?;
    let total_bytes = file.metadata().map_err(input_err)?.len();

    let (store, open_stats) = LocalClaimStore::open(&config.state_dir, now_ms / 1000)?;
    let (stream_no, replay) = stream_number(&store, &config.input)?;
    let sink = LakeSink::open(&config.lake_dir, &run_id, config.max_buffered_rows)?;
    let pipeline: Arc<LocalPipeline> = Arc::new(Pipeline::new(
        store,
        sink,
        QuarantineDir::new(&config.lake_dir),
        clock,
        DatasetB::embedded()?,
        PipelineConfig {
            dedup_window_secs: config.dedup_window_secs,
            // Every claim of a batch in flight at once: they share one commit.
            claim_concurrency: config.batch_size,
            ..PipelineConfig::default()
        },
    ));

    let counters = Arc::new(Counters {
        read_lines: AtomicU64::new(0),
        read_bytes: AtomicU64::new(0),
        settled: AtomicU64::new(0),
        workers_done: AtomicUsize::new(0),
    });
    let shards = config.shards.max(1);
    let (senders, workers) = spawn_shard_workers(shards, &pipeline, &counters, config);
    let reader = {
        let counters = counters.clone();
        let batch_size = config.batch_size;
        let space = SequenceSpace { stream_no };
        std::thread::spawn(move || read_input(file, senders, batch_size, space, &counters))
    };

    let mut tick = tokio::time::interval(Duration::from_millis(200));
    while counters.workers_done.load(Ordering::Acquire) < shards {
        tick.tick().await;
        on_progress(&progress(&counters, total_bytes));
    }
    let read = reader.join().map_err(|_| RunError::Worker)?;
    let mut stats = BatchStats::default();
    let mut esm = EsmReport::default();
    let mut first_error = read.err().map(input_err);
    for worker in workers {
        match worker.join().map_err(|_| RunError::Worker)? {
            Ok((s, report)) => {
                stats.absorb(&s);
                esm.absorb(report);
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    // Whatever was accepted lands, even when the run stops with an error.
    pipeline.sink.flush()?;
    on_progress(&progress(&counters, total_bytes));
    if let Some(e) = first_error {
        return Err(e);
    }
    let gave_up = esm.gave_up();
    if !gave_up.is_empty() {
        let dir = config.lake_dir.join("_failed");
        write_on_failure_records(&dir, &gave_up)?;
        return Err(RunError::GaveUp {
            batches: gave_up.len(),
            records: gave_up
                .iter()
                .map(|r| r.kinesis_batch_info.batch_size)
                .sum(),
            dir,
        });
    }
    let invocations = esm.invocations() as u64;
    let summary = RunSummary {
        run_id,
        input: config.input.clone(),
        lines: counters.read_lines.load(Ordering::Acquire),
        stats,
        invocations,
        esm,
        lake: pipeline.sink.stats(),
        store: open_stats,
        store_commits: pipeline.store.commits(),
        stream_no,
        replay,
        wall: started.elapsed(),
    };
    write_run_metrics(&config.lake_dir, &summary)?;
    Ok(summary)
}

type ShardResult = Result<(BatchStats, EsmReport), RunError>;

/// One thread and runtime per shard, as each shard has its own Lambda poller.
/// A plain function on purpose: the body of an `async fn` is compiled in the
/// crate that polls it (the `sightline` command, at a low optimisation level),
/// while this function, the threads it starts and the batch code they run are
/// compiled here, at this crate's.
fn spawn_shard_workers(
    shards: usize,
    pipeline: &Arc<LocalPipeline>,
    counters: &Arc<Counters>,
    config: &RunConfig,
) -> (
    Vec<mpsc::Sender<Vec<InputRecord>>>,
    Vec<std::thread::JoinHandle<ShardResult>>,
) {
    let mut senders = Vec::with_capacity(shards);
    let mut workers = Vec::with_capacity(shards);
    for shard in 0..shards {
        // One batch waiting per shard beside the one running: fewer records in
        // memory (measured with the other memory steps in docs/benchmarks.md).
        let (tx, rx) = mpsc::channel::<Vec<InputRecord>>(1);
        senders.push(tx);
        // The batch future borrows across awaits, so it is not `Send`.
        let pipeline = pipeline.clone();
        let counters = counters.clone();
        let esm = EsmConfig {
            batch_size: config.batch_size,
            ..config.esm.clone()
        };
        workers.push(std::thread::spawn(move || {
            let result = match tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
            {
                Ok(rt) => rt.block_on(shard_worker(shard, rx, pipeline, &counters, esm)),
                Err(e) => Err(RunError::Runtime(e)),
            };
            counters.workers_done.fetch_add(1, Ordering::Release);
            result
        }));
    }
    (senders, workers)
}

fn progress(c: &Counters, total_bytes: u64) -> Progress {
    Progress {
        read_lines: c.read_lines.load(Ordering::Relaxed),
        read_bytes: c.read_bytes.load(Ordering::Relaxed),
        total_bytes,
        settled: c.settled.load(Ordering::Relaxed),
    }
}

fn write_run_metrics(lake_dir: &Path, summary: &RunSummary) -> Result<(), LakeError> {
    let dir = lake_dir.join("_runs");
    let path = dir.join(format!("{}.json", summary.run_id));
    let io_err = |source| LakeError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(io_err)?;
    let body = serde_json::to_vec_pretty(&summary.to_json())?;
    std::fs::write(&path, body).map_err(io_err)?;
    Ok(())
}

/// Plays Kinesis: lines -> (shard, sequence number) -> per-shard batches.
fn read_input(
    file: File,
    senders: Vec<mpsc::Sender<Vec<InputRecord>>>,
    batch_size: usize,
    space: SequenceSpace,
    counters: &Counters,
) -> io::Result<()> {
    let shards = senders.len();
    let ids: Vec<String> = (0..shards).map(shard_id).collect();
    let mut sequences: Vec<_> = (0..shards).map(|shard| space.counter(shard, 0)).collect();
    let mut batches: Vec<Vec<InputRecord>> = (0..shards)
        .map(|_| Vec::with_capacity(batch_size))
        .collect();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut line = Vec::with_capacity(512);
    let clock = SystemClock;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        counters.read_bytes.fetch_add(n as u64, Ordering::Relaxed);
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if line.is_empty() {
            continue;
        }
        let shard = shard_for_key(partition_key(&line), shards);
        let record = InputRecord {
            shard_id: ids[shard].clone(),
            sequence_number: sequences[shard].next(),
            arrival_ms: clock.now_ms(),
            data: line.clone(),
        };
        counters.read_lines.fetch_add(1, Ordering::Relaxed);
        batches[shard].push(record);
        if batches[shard].len() >= batch_size {
            let full = std::mem::replace(&mut batches[shard], Vec::with_capacity(batch_size));
            // A closed channel means the worker stopped; its error is reported.
            if senders[shard].blocking_send(full).is_err() {
                return Ok(());
            }
        }
    }
    for (shard, batch) in batches.into_iter().enumerate() {
        if !batch.is_empty() && senders[shard].blocking_send(batch).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// The local on-failure destination: one JSON file per batch given up.
fn write_on_failure_records(
    dir: &Path,
    records: &[&crate::esm::OnFailureRecord],
) -> Result<(), RunError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RunError::OnFailure { path, source }
    };
    std::fs::create_dir_all(dir).map_err(err(dir))?;
    for r in records {
        let info = &r.kinesis_batch_info;
        let path = dir.join(format!(
            "{}-{}.json",
            info.shard_id, info.start_sequence_number
        ));
        let body = serde_json::to_vec_pretty(r).map_err(|e| RunError::OnFailure {
            path: path.clone(),
            source: io::Error::other(e),
        })?;
        std::fs::write(&path, body).map_err(err(&path))?;
    }
    Ok(())
}

/// The function as one shard's mapping invokes it: the batch code over the
/// shared embedded adapters, adding each invocation's counts to the run's.
struct LocalFunction<'w> {
    pipeline: Arc<LocalPipeline>,
    counters: &'w Counters,
    stats: &'w std::cell::RefCell<BatchStats>,
}

impl Function for LocalFunction<'_> {
    async fn invoke(
        &self,
        batch: &[InputRecord],
        deadline_ms: i64,
    ) -> Result<Vec<String>, FunctionError> {
        let deadline = Deadline::at(deadline_ms, defaults::DEADLINE_RESERVE_MS);
        let report = self.pipeline.process(batch, deadline).await;
        let settled = report.stats.accounted() - report.stats.failed;
        self.counters.settled.fetch_add(settled, Ordering::Relaxed);
        self.stats.borrow_mut().absorb(&report.stats);
        Ok(report.failed_sequences)
    }
}

impl<'w> Runtime for LocalFunction<'w> {
    type Function = LocalFunction<'w>;

    fn start(&self) -> Result<LocalFunction<'w>, FunctionError> {
        Ok(LocalFunction {
            pipeline: self.pipeline.clone(),
            counters: self.counters,
            stats: self.stats,
        })
    }
}

/// Plays the event source mapping of one shard.
async fn shard_worker(
    shard: usize,
    batches: mpsc::Receiver<Vec<InputRecord>>,
    pipeline: Arc<LocalPipeline>,
    counters: &Counters,
    esm: EsmConfig,
) -> Result<(BatchStats, EsmReport), RunError> {
    let stats = std::cell::RefCell::new(BatchStats::default());
    let runtime = LocalFunction {
        pipeline,
        counters,
        stats: &stats,
    };
    let clock = SystemClock;
    let mapping = Esm::new(esm, &clock);
    let report = mapping
        .run_shard(
            ShardInput::channel(shard_id(shard), batches),
            &runtime,
            shard as u64,
        )
        .await;
    Ok((stats.into_inner(), report))
}
