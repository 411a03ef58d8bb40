//! The handler under the local event source mapping (`sightline_local::esm`),
//! over in-memory ports shared by every execution environment, in tokio's
//! paused (virtual, deterministic) time.
#![allow(dead_code)] // each test binary uses part of the harness

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_lambda_events::event::kinesis::KinesisEvent;
use base64::Engine;
use dedup_enrich::{App, handle_with_report};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use sightline_core::delivery::{EntryFailure, PackedSink, RecordBatchPort};
use sightline_core::fakes::{FakeError, Faults, MemoryFirehose, MemoryQuarantine, MemoryStore};
use sightline_core::packing::PackConfig;
use sightline_core::retry::RetryPolicy;
use sightline_core::time::TokioClock;
use sightline_core::{BatchReport, DatasetB, Fate, InputRecord, Pipeline, PipelineConfig};
use sightline_local::esm::{
    Esm, EsmConfig, EsmReport, Function, FunctionError, Runtime, ShardInput,
};

/// A whole second, so arrival times survive the event's float seconds.
pub const NOW_MS: i64 = 1_763_900_000_000;

pub type SimApp =
    App<Arc<MemoryStore>, PackedSink<ScriptedFirehose>, Arc<MemoryQuarantine>, TokioClock>;

/// Firehose that can be told to crash the process on a given call, or to
/// answer one call late.
#[derive(Clone)]
pub struct ScriptedFirehose {
    pub inner: Arc<MemoryFirehose>,
    calls: Arc<AtomicU64>,
    panic_on_call: Arc<AtomicU64>,
    /// (call number, milliseconds late); 0 for none.
    slow_call: Arc<(AtomicU64, AtomicU64)>,
}

impl RecordBatchPort for ScriptedFirehose {
    type Error = FakeError;

    async fn put_record_batch<'a>(
        &'a self,
        records: &'a [&'a [u8]],
    ) -> Result<Vec<Option<EntryFailure>>, FakeError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.panic_on_call.load(Ordering::SeqCst) {
            panic!("scripted crash of the function process on Firehose call {n}");
        }
        let (slow_n, late_ms) = &*self.slow_call;
        if n == slow_n.load(Ordering::SeqCst) {
            // Half before acting, half after, as the fakes' latency is.
            let half = Duration::from_millis(late_ms.load(Ordering::SeqCst) / 2);
            tokio::time::sleep(half).await;
            let out = self.inner.put_record_batch(records).await;
            tokio::time::sleep(half).await;
            return out;
        }
        self.inner.put_record_batch(records).await
    }
}

/// What one invocation did, as seen from outside the function.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub first_sequence: String,
    pub len: usize,
    /// Claim calls made during it.
    pub claims: u64,
    pub report: BatchReport,
}

impl Invocation {
    pub fn settled(&self) -> u64 {
        self.report.stats.accounted() - self.report.stats.failed
    }
}

/// The ports, the settings and the scripts every execution environment shares.
pub struct World {
    pub store: Arc<MemoryStore>,
    pub firehose: Arc<MemoryFirehose>,
    pub quarantine: Arc<MemoryQuarantine>,
    pub config: PipelineConfig,
    pub pack: usize,
    pub reserve_ms: i64,
    pub clock: TokioClock,
    firehose_calls: Arc<AtomicU64>,
    panic_on_call: Arc<AtomicU64>,
    slow_call: Arc<(AtomicU64, AtomicU64)>,
    /// Invocations (1-based) that fail as a whole after the handler answered,
    /// as a crash after the work would.
    pub fail_after: RefCell<BTreeSet<usize>>,
    pub invocations: RefCell<Vec<Invocation>>,
    /// Broken invariants, recorded (a panic inside an invocation would be taken
    /// for the function's own crash).
    pub violations: RefCell<Vec<String>>,
    count: Cell<usize>,
}

impl World {
    /// Must be called inside the (paused) runtime: the clock starts at `NOW_MS`.
    pub fn new() -> Self {
        World::with_faults(Faults::none(), Faults::none(), Faults::none())
    }

    /// A world whose ports inject the given faults.
    pub fn with_faults(store: Faults, firehose: Faults, quarantine: Faults) -> Self {
        World {
            store: Arc::new(MemoryStore::new(store)),
            firehose: Arc::new(MemoryFirehose::new(firehose)),
            quarantine: Arc::new(MemoryQuarantine::new(quarantine)),
            config: PipelineConfig {
                retry: RetryPolicy {
                    base_delay: Duration::from_millis(10),
                    max_delay: Duration::from_millis(100),
                    ..RetryPolicy::default()
                },
                ..PipelineConfig::default()
            },
            pack: 500,
            reserve_ms: sightline_core::defaults::DEADLINE_RESERVE_MS,
            clock: TokioClock::starting_at(NOW_MS),
            firehose_calls: Arc::new(AtomicU64::new(0)),
            panic_on_call: Arc::new(AtomicU64::new(0)),
            slow_call: Arc::new((AtomicU64::new(0), AtomicU64::new(0))),
            fail_after: RefCell::new(BTreeSet::new()),
            invocations: RefCell::new(Vec::new()),
            violations: RefCell::new(Vec::new()),
            count: Cell::new(0),
        }
    }

    /// The process crashes on the `n`-th Firehose call (1-based, over all environments).
    pub fn crash_on_firehose_call(&self, n: u64) {
        self.panic_on_call.store(n, Ordering::SeqCst);
    }

    /// The `n`-th Firehose call (1-based, over all environments) answers `late`
    /// after the usual latency.
    pub fn slow_firehose_call(&self, n: u64, late: Duration) {
        let ms = u64::try_from(late.as_millis()).unwrap_or(u64::MAX);
        self.slow_call.1.store(ms, Ordering::SeqCst);
        self.slow_call.0.store(n, Ordering::SeqCst);
    }

    pub fn app(&self) -> SimApp {
        App {
            archive: None,
            pipeline: Pipeline::new(
                self.store.clone(),
                PackedSink::new(
                    ScriptedFirehose {
                        inner: self.firehose.clone(),
                        calls: self.firehose_calls.clone(),
                        panic_on_call: self.panic_on_call.clone(),
                        slow_call: self.slow_call.clone(),
                    },
                    PackConfig::new(self.pack),
                ),
                self.quarantine.clone(),
                self.clock,
                DatasetB::embedded().expect("dataset B"),
                self.config.clone(),
            ),
            deadline_reserve_ms: self.reserve_ms,
            metrics_namespace: "Sightline".into(),
            function_name: "dedup-enrich-sim".into(),
        }
    }

    /// Runs the mapping over the shards to their end.
    pub async fn run(&self, esm: EsmConfig, shards: Vec<Vec<InputRecord>>) -> EsmReport {
        let inputs = shards
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(|s| ShardInput::records(s[0].shard_id.clone(), s))
            .collect();
        Esm::new(esm, &self.clock).run(inputs, &Env(self)).await
    }

    /// How many times each event id reached Firehose.
    pub fn delivered(&self) -> HashMap<i64, usize> {
        let mut counts = HashMap::new();
        for line in self.firehose.delivered() {
            *counts
                .entry(line["detection_oid"].as_i64().unwrap_or(-1))
                .or_default() += 1;
        }
        counts
    }

    /// Asserts every id in `unique` was delivered exactly once and nothing else.
    pub fn assert_exactly_once(&self, unique: &BTreeSet<i64>) {
        let counts = self.delivered();
        let doubled: BTreeMap<i64, usize> = counts
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(k, v)| (*k, *v))
            .collect();
        assert!(doubled.is_empty(), "delivered more than once: {doubled:?}");
        let delivered: BTreeSet<i64> = counts.keys().copied().collect();
        let lost: Vec<&i64> = unique.difference(&delivered).collect();
        assert!(lost.is_empty(), "never delivered: {lost:?}");
        assert_eq!(&delivered, unique);
    }

    pub fn assert_no_violations(&self) {
        let v = self.violations.borrow();
        assert!(v.is_empty(), "invariants broken: {v:#?}");
    }

    /// The batch's checkpoint item as it stands.
    fn checkpoint_of(&self, batch: &[InputRecord]) -> Option<String> {
        let first = &batch[0];
        self.store
            .checkpoints
            .lock()
            .expect("lock")
            .get(&(first.shard_id.clone(), first.sequence_number.clone()))
            .map(|cp| cp.last_sequence.clone())
    }

    /// Invariants of one invocation: one fate per record, and a checkpoint it
    /// wrote never covers a record it reported for retry. (One an earlier
    /// invocation wrote may: when this one could not read it, it retries the
    /// whole batch, and the retry reads it.)
    fn check(&self, batch: &[InputRecord], report: &BatchReport, before: Option<String>) {
        let mut v = self.violations.borrow_mut();
        if report.fates.len() != batch.len() {
            v.push(format!(
                "{} fates for {} records",
                report.fates.len(),
                batch.len()
            ));
        }
        let after = self.checkpoint_of(batch);
        let Some(last) = after.filter(|a| Some(a) != before.as_ref()) else {
            return;
        };
        for (r, f) in batch.iter().zip(&report.fates) {
            if *f == Fate::Retry && sightline_core::seq::sequence_le(&r.sequence_number, &last) {
                v.push(format!(
                    "the checkpoint written ({last}) covers {} which was reported for retry",
                    r.sequence_number
                ));
            }
        }
    }
}

/// The runtime the mapping starts environments from.
pub struct Env<'w>(pub &'w World);

pub struct SimFunction<'w> {
    world: &'w World,
    app: SimApp,
}

impl<'w> Runtime for Env<'w> {
    type Function = SimFunction<'w>;

    fn start(&self) -> Result<SimFunction<'w>, FunctionError> {
        Ok(SimFunction {
            world: self.0,
            app: self.0.app(),
        })
    }
}

impl Function for SimFunction<'_> {
    async fn invoke(
        &self,
        batch: &[InputRecord],
        deadline_ms: i64,
    ) -> Result<Vec<String>, FunctionError> {
        let w = self.world;
        let n = w.count.get() + 1;
        w.count.set(n);
        let claims_before = w.store.calls.get("claim");
        let checkpoint_before = w.checkpoint_of(batch);
        let (resp, report) = handle_with_report(&self.app, lambda_event(batch, deadline_ms)).await;
        w.check(batch, &report, checkpoint_before);
        w.invocations.borrow_mut().push(Invocation {
            first_sequence: batch[0].sequence_number.clone(),
            len: batch.len(),
            claims: w.store.calls.get("claim") - claims_before,
            report,
        });
        // A crash after a checkpoint or a mark failed to be written doubles
        // events by design (README, "What can still double"): scripts skip it.
        let clean = report_clean(&w.invocations.borrow());
        if clean && w.fail_after.borrow().contains(&n) {
            return Err(FunctionError(format!(
                "scripted: invocation {n} failed as a whole after the handler answered"
            )));
        }
        Ok(resp
            .batch_item_failures
            .into_iter()
            .filter_map(|f| f.item_identifier)
            .collect())
    }
}

fn report_clean(log: &[Invocation]) -> bool {
    log.last()
        .is_none_or(|i| i.report.stats.checkpoint_failed == 0 && i.report.stats.marks_failed == 0)
}

/// The event Lambda sends for `records`, with the deadline in its context.
pub fn lambda_event(records: &[InputRecord], deadline_ms: i64) -> LambdaEvent<KinesisEvent> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let records: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": "k",
                    "sequenceNumber": r.sequence_number,
                    "data": b64.encode(&r.data),
                    "approximateArrivalTimestamp": r.arrival_ms as f64 / 1_000.0,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{}:{}", r.shard_id, r.sequence_number),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda",
                "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/sightline",
            })
        })
        .collect();
    let event: KinesisEvent =
        serde_json::from_value(json!({ "Records": records })).expect("a Kinesis event");
    let mut ctx = Context::default();
    ctx.deadline = u64::try_from(deadline_ms).unwrap_or(0);
    LambdaEvent::new(event, ctx)
}

/// A valid Dataset A event.
pub fn event(id: i64) -> Vec<u8> {
    format!(
        r#"{{"detection_oid":{id},"video_camera_oid":{},"geographical_location_oid":{},"item_name":"item-{}","timestamp_detected":{}}}"#,
        id % 11 + 1,
        id % 60 + 1,
        id % 7,
        NOW_MS - id * 1_000
    )
    .into_bytes()
}

/// The `seq`-th record of `shard` (fixed width: string order is numeric order).
pub fn record(shard: usize, seq: u64, data: Vec<u8>) -> InputRecord {
    InputRecord {
        shard_id: format!("shardId-{shard:012}"),
        sequence_number: format!("{}", 49_000_000_000_000_000u64 + seq),
        arrival_ms: NOW_MS,
        data,
    }
}

/// One shard of fresh events `1..=n`.
pub fn fresh(n: i64) -> (Vec<InputRecord>, BTreeSet<i64>) {
    let records = (1..=n).map(|i| record(0, i as u64, event(i))).collect();
    (records, (1..=n).collect())
}

/// The mapping as deployed, with one batch size and timeout.
pub fn esm(batch_size: usize, timeout: Duration) -> EsmConfig {
    EsmConfig {
        batch_size,
        function_timeout: timeout,
        retry_delay: Duration::from_millis(200),
        ..EsmConfig::default()
    }
}
