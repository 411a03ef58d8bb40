//! The dedup-enrich Lambda: Kinesis batch in, `KinesisEventResponse` out.
//! `main.rs` wires AWS adapters; tests call [`handle`] with fakes or moto.

pub mod config;

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use lambda_runtime::LambdaEvent;
use sightline_aws::archive::{FirehoseArchive, firehose_archive};
use sightline_aws::{
    AwsClients, ClientSettings, DynamoClaimStore, FirehoseBatchPort, S3Quarantine,
};
use sightline_core::archive::{NoArchive, RawArchive, RawRecord, archive_batch};
use sightline_core::batch::chain;
use sightline_core::cost::CostModel;
use sightline_core::delivery::PackedSink;
use sightline_core::packing::PackConfig;
use sightline_core::ports::{ClaimStore, EventSink, QuarantineStore};
use sightline_core::retry::RetryPolicy;
use sightline_core::{
    BatchReport, Clock, DatasetB, Deadline, InputRecord, Pipeline, PipelineConfig, SystemClock,
};

pub use config::{Config, ConfigError};

/// Everything built once at init.
pub struct App<S, K, Q, C, A = NoArchive> {
    pub pipeline: Pipeline<S, K, Q, C>,
    /// The raw archive, written before each batch is processed; `None` when
    /// `RAW_ARCHIVE_STREAM` is not set (local runs, most tests).
    pub archive: Option<Archiver<A>>,
    pub deadline_reserve_ms: i64,
    pub metrics_namespace: String,
    pub function_name: String,
}

/// The raw archive and its own measured latency (kept apart from the sink's,
/// so the batch's time estimates do not move with it).
pub struct Archiver<A> {
    pub archive: A,
    pub costs: CostModel,
}

impl<A> Archiver<A> {
    pub fn new(archive: A) -> Self {
        Archiver {
            archive,
            costs: CostModel::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Dataset(#[from] sightline_core::dataset_b::DatasetError),
}

pub fn pipeline_config(config: &Config) -> PipelineConfig {
    PipelineConfig {
        dedup_window_secs: config.dedup_window_secs,
        claim_concurrency: config.claim_concurrency,
        retry: RetryPolicy {
            max_attempts: config.retry_max_attempts,
            attempt_timeout: config.aws_call_timeout,
            ..RetryPolicy::default()
        },
        quarantine_prefix: config.quarantine_prefix.clone(),
        max_event_age_ms: config.max_event_age_secs * 1_000,
    }
}

/// The production app type.
pub type AwsApp = App<
    DynamoClaimStore,
    PackedSink<FirehoseBatchPort>,
    S3Quarantine,
    SystemClock,
    FirehoseArchive,
>;

/// Builds the AWS-backed app from a checked config, with clients from the environment.
pub async fn build_app(config: &Config) -> Result<AwsApp, InitError> {
    let clients = AwsClients::from_env(client_settings(config)).await;
    app_with_clients(config, clients)
}

pub fn client_settings(config: &Config) -> ClientSettings {
    ClientSettings {
        attempt_timeout: config.aws_call_timeout,
        s3_force_path_style: config.s3_force_path_style,
        ..ClientSettings::default()
    }
}

/// Builds the app over given clients (tests point them at the emulator).
pub fn app_with_clients(config: &Config, clients: AwsClients) -> Result<AwsApp, InitError> {
    let archive = config
        .raw_archive_stream
        .as_deref()
        .map(|stream| Archiver::new(firehose_archive(clients.firehose.clone(), stream)));
    Ok(App {
        archive,
        pipeline: Pipeline::new(
            DynamoClaimStore::new(clients.dynamodb, &config.dedup_table),
            PackedSink::new(
                FirehoseBatchPort::new(clients.firehose, &config.delivery_stream),
                PackConfig::new(config.pack_max_events),
            ),
            S3Quarantine::new(clients.s3, &config.quarantine_bucket),
            SystemClock,
            DatasetB::embedded()?,
            pipeline_config(config),
        ),
        deadline_reserve_ms: config.deadline_reserve_ms,
        metrics_namespace: config.metrics_namespace.clone(),
        function_name: std::env::var("AWS_LAMBDA_FUNCTION_NAME")
            .unwrap_or_else(|_| "dedup-enrich".into()),
    })
}

/// Converts the Lambda event into the core's records.
pub fn input_records(event: KinesisEvent) -> Vec<InputRecord> {
    event
        .records
        .into_iter()
        .map(|r| {
            // eventID is "shardId-000000000000:<sequence number>".
            let shard_id = r
                .event_id
                .as_deref()
                .and_then(|id| id.split_once(':').map(|(shard, _)| shard.to_string()))
                .unwrap_or_else(|| "shardId-unknown".to_string());
            InputRecord {
                shard_id,
                sequence_number: r.kinesis.sequence_number,
                arrival_ms: r.kinesis.approximate_arrival_timestamp.0.timestamp_millis(),
                data: r.kinesis.data.0,
            }
        })
        .collect()
}

/// The records as received, for the raw archive: borrowed from the event.
pub fn raw_records(event: &KinesisEvent) -> Vec<RawRecord<'_>> {
    event
        .records
        .iter()
        .map(|r| RawRecord {
            shard_id: r
                .event_id
                .as_deref()
                .and_then(|id| id.split_once(':').map(|(shard, _)| shard))
                .unwrap_or("shardId-unknown"),
            sequence_number: &r.kinesis.sequence_number,
            arrival_ms: r.kinesis.approximate_arrival_timestamp.0.timestamp_millis(),
            partition_key: Some(r.kinesis.partition_key.as_str()).filter(|k| !k.is_empty()),
            data: &r.kinesis.data.0,
        })
        .collect()
}

/// Handles one batch. Never fails the whole invocation: problems are reported
/// per record as batch item failures.
pub async fn handle<S, K, Q, C, A>(
    app: &App<S, K, Q, C, A>,
    event: LambdaEvent<KinesisEvent>,
) -> Result<KinesisEventResponse, lambda_runtime::Error>
where
    S: ClaimStore,
    K: EventSink,
    Q: QuarantineStore,
    C: Clock,
    A: RawArchive,
{
    Ok(handle_with_report(app, event).await.0)
}

/// [`handle`], also returning the batch report (for drivers and tests).
pub async fn handle_with_report<S, K, Q, C, A>(
    app: &App<S, K, Q, C, A>,
    event: LambdaEvent<KinesisEvent>,
) -> (KinesisEventResponse, BatchReport)
where
    S: ClaimStore,
    K: EventSink,
    Q: QuarantineStore,
    C: Clock,
    A: RawArchive,
{
    let now_ms = app.pipeline.clock.now_ms();
    let deadline = Deadline::from_lambda(event.context.deadline, now_ms, app.deadline_reserve_ms);
    tracing::debug!(deadline_ms = event.context.deadline, now_ms, "invocation");
    let archived = match &app.archive {
        Some(archiver) => Some(archive(app, archiver, &event.payload, deadline).await),
        None => None,
    };
    let records = input_records(event.payload);
    let mut report = app.pipeline.process(&records, deadline).await;
    if let Some(a) = archived {
        let stats = &mut report.stats;
        stats.archive_failed += a.failed;
        stats.retries += a.retries;
        stats.throttled += a.throttled;
        stats.timed_out += a.timed_out;
    }
    // One EMF line per batch on stdout; CloudWatch extracts the metrics.
    println!(
        "{}",
        report.stats.emf_line(
            &app.metrics_namespace,
            &app.function_name,
            app.pipeline.clock.now_ms()
        )
    );
    let mut response = KinesisEventResponse::default();
    for seq in &report.failed_sequences {
        response.add_failure(seq.clone());
    }
    (response, report)
}

/// What the archive write of one batch adds to its counters.
struct ArchiveCounts {
    failed: u64,
    retries: u64,
    throttled: u64,
    timed_out: u64,
}

/// Writes the batch to the raw archive, within the archive's own share of the
/// time left. A failure is logged and counted, and the batch goes on: the
/// lake's freshness matters more than the archive.
async fn archive<S, K, Q, C, A>(
    app: &App<S, K, Q, C, A>,
    archiver: &Archiver<A>,
    event: &KinesisEvent,
    deadline: Deadline,
) -> ArchiveCounts
where
    C: Clock,
    A: RawArchive,
{
    let raw = raw_records(event);
    let report = archive_batch(
        &archiver.archive,
        &raw,
        app.pipeline.config.retry,
        deadline,
        &app.pipeline.clock,
        &archiver.costs,
    )
    .await;
    let a = &report.archived;
    match &a.error {
        Some(e) => tracing::warn!(
            error = %chain(e),
            not_archived = a.failed(),
            records = a.records,
            "raw archive write failed; the batch goes on without it"
        ),
        None => tracing::debug!(
            records = a.records,
            firehose_records = a.firehose_records,
            bytes = a.bytes,
            "batch archived"
        ),
    }
    ArchiveCounts {
        failed: a.failed() as u64,
        retries: report.retries,
        throttled: report.throttled,
        timed_out: report.timed_out,
    }
}
