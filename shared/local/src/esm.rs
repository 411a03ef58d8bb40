//! A local Kinesis event source mapping: how Lambda itself reads a shard,
//! invokes the function and retries, so the function is tested under those
//! rules rather than a friendlier loop. It follows AWS's documented behaviour
//! (Lambda developer guide: "Using Lambda with Kinesis", its error handling,
//! partial batch responses and on-failure destinations):
//!
//! - batches of up to `BatchSize` records of one shard, in order, one batch in
//!   flight per shard (`ParallelizationFactor` 1);
//! - with `ReportBatchItemFailures`, the mapping checkpoints before the lowest
//!   reported sequence number and redelivers from there (an empty or unknown
//!   item identifier fails the batch as a whole);
//! - an invocation that fails as a whole (an error, a panic, or the timeout) is
//!   retried whole; with `BisectBatchOnFunctionError` it is split in two halves
//!   first, each retried on its own and split again on further failure;
//!   splitting does not count towards the retry quota;
//! - the timeout kills the invocation at its deadline: nothing the function does
//!   after it counts, and the execution environment is replaced (or, for a
//!   seeded share of kills, reused);
//! - after `MaximumRetryAttempts` retries, or once the batch's first record is
//!   older than `MaximumRecordAgeInSeconds`, the batch goes to the on-failure
//!   destination as an invocation record naming the shard and the first and last
//!   sequence numbers, and the shard moves on.
//!
//! Where the documentation is silent, the choices are ours and are listed in
//! the README ("The event source mapping simulator"): a partial failure that
//! moves the checkpoint forward starts a new batch with a fresh retry count;
//! failed batches are retried after `retry_delay`.
//!
//! Everything is deterministic for a seed under a paused tokio clock (tests),
//! and runs in real time for `sightline run`.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use serde::{Deserialize, Serialize};
use sightline_core::defaults::esm as deployed;
use sightline_core::quarantine::iso8601;
use sightline_core::{Clock, InputRecord};
use tokio::sync::mpsc;

/// The mapping's settings. Defaults are the deployed values (`template.yaml`,
/// `infra/`).
#[derive(Debug, Clone, PartialEq)]
pub struct EsmConfig {
    pub batch_size: usize,
    /// `None` is -1: retry until the record expires.
    pub maximum_retry_attempts: Option<u32>,
    /// `None` is -1: no age limit (the stream's retention still applies).
    pub maximum_record_age: Option<Duration>,
    pub bisect_batch_on_function_error: bool,
    pub report_batch_item_failures: bool,
    /// The function's timeout: the invocation is killed at it.
    pub function_timeout: Duration,
    /// Wait before a failed batch is invoked again.
    pub retry_delay: Duration,
    /// Share of kills after which the execution environment is reused.
    pub reuse_after_kill: f64,
    pub seed: u64,
    /// ARNs for on-failure records (names only; nothing is called).
    pub function_arn: String,
    pub stream_arn: String,
}

impl Default for EsmConfig {
    fn default() -> Self {
        EsmConfig {
            batch_size: deployed::BATCH_SIZE,
            maximum_retry_attempts: Some(deployed::MAXIMUM_RETRY_ATTEMPTS),
            maximum_record_age: Some(Duration::from_secs(deployed::MAXIMUM_RECORD_AGE_SECS)),
            bisect_batch_on_function_error: deployed::BISECT_BATCH_ON_FUNCTION_ERROR,
            report_batch_item_failures: true,
            function_timeout: Duration::from_secs(deployed::FUNCTION_TIMEOUT_SECS),
            retry_delay: Duration::from_secs(1),
            reuse_after_kill: 0.0,
            seed: 0,
            function_arn: "arn:aws:lambda:local:000000000000:function:dedup-enrich".into(),
            stream_arn: "arn:aws:kinesis:local:000000000000:stream/sightline-local".into(),
        }
    }
}

/// Why an invocation failed as a whole, as the function reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FunctionError(pub String);

/// One execution environment of the function (its process, after init).
pub trait Function {
    /// Handles one batch of one shard before `deadline_ms` (epoch ms, as in the
    /// Lambda context). `Ok` carries the sequence numbers reported as batch
    /// item failures; `Err` fails the invocation as a whole.
    fn invoke<'a>(
        &'a self,
        batch: &'a [InputRecord],
        deadline_ms: i64,
    ) -> impl Future<Output = Result<Vec<String>, FunctionError>> + 'a;
}

/// Starts execution environments (Lambda's init phase).
pub trait Runtime {
    type Function: Function;

    fn start(&self) -> Result<Self::Function, FunctionError>;
}

/// Why a batch went to the on-failure destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Condition {
    RetryAttemptsExhausted,
    RecordAgeExceeded,
}

/// The invocation record Lambda sends to the on-failure destination for a
/// Kinesis batch (the documented shape; field names as AWS writes them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnFailureRecord {
    #[serde(rename = "requestContext")]
    pub request_context: RequestContext,
    #[serde(rename = "responseContext", default)]
    pub response_context: Option<ResponseContext>,
    pub version: String,
    pub timestamp: String,
    #[serde(rename = "KinesisBatchInfo")]
    pub kinesis_batch_info: KinesisBatchInfo,
}

impl OnFailureRecord {
    /// The record Lambda writes when it gives up on `start..=end` of a shard.
    pub fn for_range(
        shard_id: &str,
        start: &str,
        end: &str,
        batch_size: usize,
        stream_arn: &str,
    ) -> Self {
        OnFailureRecord {
            request_context: RequestContext {
                request_id: format!("local-{shard_id}-{start}"),
                function_arn: String::new(),
                condition: Condition::RetryAttemptsExhausted,
                approximate_invoke_count: 0,
            },
            response_context: Some(ResponseContext {
                status_code: 200,
                executed_version: "$LATEST".into(),
                function_error: Some("Unhandled".into()),
            }),
            version: "1.0".into(),
            timestamp: String::new(),
            kinesis_batch_info: KinesisBatchInfo {
                shard_id: shard_id.into(),
                start_sequence_number: start.into(),
                end_sequence_number: end.into(),
                approximate_arrival_of_first_record: String::new(),
                approximate_arrival_of_last_record: String::new(),
                batch_size,
                stream_arn: stream_arn.into(),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestContext {
    #[serde(rename = "requestId")]
    pub request_id: String,
    #[serde(rename = "functionArn")]
    pub function_arn: String,
    pub condition: Condition,
    #[serde(rename = "approximateInvokeCount")]
    pub approximate_invoke_count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseContext {
    #[serde(rename = "statusCode")]
    pub status_code: u16,
    #[serde(rename = "executedVersion")]
    pub executed_version: String,
    #[serde(rename = "functionError", default)]
    pub function_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KinesisBatchInfo {
    #[serde(rename = "shardId")]
    pub shard_id: String,
    #[serde(rename = "startSequenceNumber")]
    pub start_sequence_number: String,
    #[serde(rename = "endSequenceNumber")]
    pub end_sequence_number: String,
    #[serde(rename = "approximateArrivalOfFirstRecord")]
    pub approximate_arrival_of_first_record: String,
    #[serde(rename = "approximateArrivalOfLastRecord")]
    pub approximate_arrival_of_last_record: String,
    #[serde(rename = "batchSize")]
    pub batch_size: usize,
    #[serde(rename = "streamArn")]
    pub stream_arn: String,
}

/// How one invocation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every record settled.
    Success,
    /// Batch item failures: the checkpoint moved to the lowest one.
    Partial { settled: usize },
    /// The function returned an error (or an unusable response).
    Error(String),
    /// The function panicked (a release Lambda aborts the process).
    Panicked,
    /// Killed at the deadline.
    Killed,
    /// The execution environment could not start.
    InitFailed(String),
}

/// Something the mapping did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EsmEvent {
    /// A new execution environment was started for the shard.
    Started {
        shard: String,
        environment: u32,
    },
    Invoked {
        shard: String,
        first_sequence: String,
        len: usize,
        /// Retries of this batch so far (splits do not count).
        retry: u32,
        environment: u32,
        outcome: Outcome,
    },
    Split {
        shard: String,
        first_sequence: String,
        halves: (usize, usize),
    },
    GaveUp(Box<OnFailureRecord>),
}

/// What the mapping did to one or more shards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EsmReport {
    pub events: Vec<EsmEvent>,
}

impl EsmReport {
    pub fn invocations(&self) -> usize {
        self.count(|e| matches!(e, EsmEvent::Invoked { .. }))
    }

    pub fn kills(&self) -> usize {
        self.count(|e| {
            matches!(
                e,
                EsmEvent::Invoked {
                    outcome: Outcome::Killed,
                    ..
                }
            )
        })
    }

    pub fn whole_failures(&self) -> usize {
        self.count(|e| {
            matches!(
                e,
                EsmEvent::Invoked {
                    outcome: Outcome::Error(_)
                        | Outcome::Panicked
                        | Outcome::Killed
                        | Outcome::InitFailed(_),
                    ..
                }
            )
        })
    }

    pub fn partial_failures(&self) -> usize {
        self.count(|e| {
            matches!(
                e,
                EsmEvent::Invoked {
                    outcome: Outcome::Partial { .. },
                    ..
                }
            )
        })
    }

    pub fn splits(&self) -> usize {
        self.count(|e| matches!(e, EsmEvent::Split { .. }))
    }

    pub fn environments(&self) -> usize {
        self.count(|e| matches!(e, EsmEvent::Started { .. }))
    }

    /// Batches sent to the on-failure destination.
    pub fn gave_up(&self) -> Vec<&OnFailureRecord> {
        self.events
            .iter()
            .filter_map(|e| match e {
                EsmEvent::GaveUp(r) => Some(r.as_ref()),
                _ => None,
            })
            .collect()
    }

    pub fn absorb(&mut self, other: EsmReport) {
        self.events.extend(other.events);
    }

    /// One line per event, for test output and `sightline run -v`.
    pub fn lines(&self) -> Vec<String> {
        self.events.iter().map(describe).collect()
    }

    fn count(&self, pred: impl Fn(&EsmEvent) -> bool) -> usize {
        self.events.iter().filter(|e| pred(e)).count()
    }
}

fn describe(e: &EsmEvent) -> String {
    match e {
        EsmEvent::Started { shard, environment } => {
            format!("{shard}: execution environment {environment} started")
        }
        EsmEvent::Invoked {
            shard,
            first_sequence,
            len,
            retry,
            environment,
            outcome,
        } => format!(
            "{shard}: invoke {len} record(s) from {first_sequence} (retry {retry}, environment {environment}): {outcome:?}"
        ),
        EsmEvent::Split {
            shard,
            first_sequence,
            halves,
        } => format!(
            "{shard}: batch from {first_sequence} split into {} + {}",
            halves.0, halves.1
        ),
        EsmEvent::GaveUp(r) => format!(
            "{}: gave up on {}..={} ({} records, {:?})",
            r.kinesis_batch_info.shard_id,
            r.kinesis_batch_info.start_sequence_number,
            r.kinesis_batch_info.end_sequence_number,
            r.kinesis_batch_info.batch_size,
            r.request_context.condition
        ),
    }
}

/// A shard's records: all known up front, or arriving over a channel.
pub struct ShardInput {
    pub shard_id: String,
    records: VecDeque<InputRecord>,
    more: Option<mpsc::Receiver<Vec<InputRecord>>>,
}

impl ShardInput {
    pub fn records(shard_id: impl Into<String>, records: Vec<InputRecord>) -> Self {
        ShardInput {
            shard_id: shard_id.into(),
            records: records.into(),
            more: None,
        }
    }

    pub fn channel(shard_id: impl Into<String>, rx: mpsc::Receiver<Vec<InputRecord>>) -> Self {
        ShardInput {
            shard_id: shard_id.into(),
            records: VecDeque::new(),
            more: Some(rx),
        }
    }

    /// Waits until `want` records are pending or the input ends.
    async fn fill(&mut self, want: usize) {
        while self.records.len() < want {
            let Some(rx) = self.more.as_mut() else {
                return;
            };
            match rx.recv().await {
                Some(batch) => self.records.extend(batch),
                None => self.more = None,
            }
        }
    }
}

/// The mapping.
pub struct Esm<'c> {
    pub config: EsmConfig,
    pub clock: &'c dyn Clock,
}

impl<'c> Esm<'c> {
    pub fn new(config: EsmConfig, clock: &'c dyn Clock) -> Self {
        Esm { config, clock }
    }

    /// Runs every shard to its end, concurrently, each with its own execution
    /// environments.
    pub async fn run<R: Runtime>(&self, shards: Vec<ShardInput>, runtime: &R) -> EsmReport {
        let runs = shards
            .into_iter()
            .enumerate()
            .map(|(i, shard)| self.run_shard(shard, runtime, i as u64));
        let mut report = EsmReport::default();
        for r in futures::future::join_all(runs).await {
            report.absorb(r);
        }
        report
    }

    /// Runs one shard to its end.
    pub async fn run_shard<R: Runtime>(
        &self,
        mut input: ShardInput,
        runtime: &R,
        stream: u64,
    ) -> EsmReport {
        let cfg = &self.config;
        let mut rng =
            fastrand::Rng::with_seed(cfg.seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let shard = input.shard_id.clone();
        let mut report = EsmReport::default();
        let mut environment: Option<R::Function> = None;
        let mut environments = 0u32;
        // Sub-batches still to run, as lengths of a prefix of the pending records.
        let mut parts: VecDeque<usize> = VecDeque::new();
        let mut retry = 0u32;
        let mut invokes = 0u32;
        loop {
            if parts.is_empty() {
                input.fill(cfg.batch_size.max(1)).await;
                if input.records.is_empty() {
                    break;
                }
                parts.push_back(input.records.len().min(cfg.batch_size.max(1)));
                retry = 0;
                invokes = 0;
            }
            let len = parts[0];
            let batch = &input.records.make_contiguous()[..len];
            if let Some(max_age) = cfg.maximum_record_age {
                let age_ms = self.clock.now_ms() - batch[0].arrival_ms;
                if age_ms > i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX) {
                    let record = self.on_failure(batch, Condition::RecordAgeExceeded, invokes);
                    report.events.push(EsmEvent::GaveUp(Box::new(record)));
                    input.records.drain(..len);
                    parts.pop_front();
                    continue;
                }
            }
            if environment.is_none() {
                match runtime.start() {
                    Ok(f) => {
                        environments += 1;
                        report.events.push(EsmEvent::Started {
                            shard: shard.clone(),
                            environment: environments,
                        });
                        environment = Some(f);
                    }
                    Err(e) => {
                        invokes += 1;
                        report.events.push(EsmEvent::Invoked {
                            shard: shard.clone(),
                            first_sequence: batch[0].sequence_number.clone(),
                            len,
                            retry,
                            environment: 0,
                            outcome: Outcome::InitFailed(e.0),
                        });
                        if self.failed_whole(&mut parts, &mut retry, &shard, batch, &mut report) {
                            self.give_up(&mut input, &mut parts, invokes, &mut report);
                        }
                        tokio::time::sleep(cfg.retry_delay).await;
                        continue;
                    }
                }
            }
            let Some(function) = environment.as_ref() else {
                continue;
            };
            invokes += 1;
            let deadline_ms = self.clock.now_ms()
                + i64::try_from(cfg.function_timeout.as_millis()).unwrap_or(i64::MAX);
            let run = AssertUnwindSafe(function.invoke(batch, deadline_ms)).catch_unwind();
            let outcome = match tokio::time::timeout(cfg.function_timeout, run).await {
                Err(_) => Outcome::Killed,
                Ok(Err(_)) => Outcome::Panicked,
                Ok(Ok(Err(e))) => Outcome::Error(e.0),
                Ok(Ok(Ok(failures))) => judge_response(batch, &failures, cfg),
            };
            report.events.push(EsmEvent::Invoked {
                shard: shard.clone(),
                first_sequence: batch[0].sequence_number.clone(),
                len,
                retry,
                environment: environments,
                outcome: outcome.clone(),
            });
            match outcome {
                Outcome::Success => {
                    input.records.drain(..len);
                    parts.pop_front();
                    retry = 0;
                    invokes = 0;
                }
                Outcome::Partial { settled } => {
                    input.records.drain(..settled);
                    parts[0] = len - settled;
                    if settled > 0 {
                        // The checkpoint moved: the rest is a new batch.
                        retry = 0;
                        invokes = 0;
                    } else {
                        retry += 1;
                        if cfg.maximum_retry_attempts.is_some_and(|max| retry > max) {
                            self.give_up(&mut input, &mut parts, invokes, &mut report);
                            retry = 0;
                            invokes = 0;
                        }
                    }
                    tokio::time::sleep(cfg.retry_delay).await;
                }
                Outcome::Error(_)
                | Outcome::Panicked
                | Outcome::Killed
                | Outcome::InitFailed(_) => {
                    let replace = match outcome {
                        Outcome::Panicked => true,
                        Outcome::Killed => rng.f64() >= cfg.reuse_after_kill,
                        _ => false,
                    };
                    if replace {
                        environment = None;
                    }
                    let batch = &input.records.make_contiguous()[..len];
                    if self.failed_whole(&mut parts, &mut retry, &shard, batch, &mut report) {
                        self.give_up(&mut input, &mut parts, invokes, &mut report);
                        retry = 0;
                        invokes = 0;
                    }
                    tokio::time::sleep(cfg.retry_delay).await;
                }
            }
        }
        report
    }

    /// After a whole failure: split the batch, or count a retry. True when the
    /// retry quota is spent.
    fn failed_whole(
        &self,
        parts: &mut VecDeque<usize>,
        retry: &mut u32,
        shard: &str,
        batch: &[InputRecord],
        report: &mut EsmReport,
    ) -> bool {
        let len = parts[0];
        if self.config.bisect_batch_on_function_error && len > 1 {
            let first = len.div_ceil(2);
            parts[0] = len - first;
            parts.push_front(first);
            report.events.push(EsmEvent::Split {
                shard: shard.to_string(),
                first_sequence: batch[0].sequence_number.clone(),
                halves: (first, len - first),
            });
            return false;
        }
        *retry += 1;
        self.config
            .maximum_retry_attempts
            .is_some_and(|max| *retry > max)
    }

    fn give_up(
        &self,
        input: &mut ShardInput,
        parts: &mut VecDeque<usize>,
        invokes: u32,
        report: &mut EsmReport,
    ) {
        let len = parts.pop_front().unwrap_or(0).min(input.records.len());
        if len == 0 {
            return;
        }
        let batch = &input.records.make_contiguous()[..len];
        let record = self.on_failure(batch, Condition::RetryAttemptsExhausted, invokes);
        report.events.push(EsmEvent::GaveUp(Box::new(record)));
        input.records.drain(..len);
    }

    fn on_failure(
        &self,
        batch: &[InputRecord],
        condition: Condition,
        invokes: u32,
    ) -> OnFailureRecord {
        let (first, last) = (&batch[0], &batch[batch.len() - 1]);
        let mut record = OnFailureRecord::for_range(
            &first.shard_id,
            &first.sequence_number,
            &last.sequence_number,
            batch.len(),
            &self.config.stream_arn,
        );
        record.request_context.function_arn = self.config.function_arn.clone();
        record.request_context.condition = condition;
        record.request_context.approximate_invoke_count = invokes;
        record.timestamp = iso8601(self.clock.now_ms());
        let info = &mut record.kinesis_batch_info;
        info.approximate_arrival_of_first_record = iso8601(first.arrival_ms);
        info.approximate_arrival_of_last_record = iso8601(last.arrival_ms);
        record
    }
}

/// Reads a function's answer as the mapping does.
fn judge_response(batch: &[InputRecord], failures: &[String], cfg: &EsmConfig) -> Outcome {
    if failures.is_empty() || !cfg.report_batch_item_failures {
        // Without ReportBatchItemFailures the response body is ignored.
        return Outcome::Success;
    }
    let mut lowest = batch.len();
    for id in failures {
        match batch.iter().position(|r| &r.sequence_number == id) {
            Some(i) => lowest = lowest.min(i),
            None => {
                return Outcome::Error(format!(
                    "batchItemFailures names {id:?}, which is not in the batch"
                ));
            }
        }
    }
    Outcome::Partial { settled: lowest }
}
