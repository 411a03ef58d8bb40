//! The dedup-enrich Lambda: Kinesis batch in, `KinesisEventResponse` out.
//! `main.rs` wires AWS adapters; tests call [`handle`] with fakes or moto.

pub mod config;

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use lambda_runtime::LambdaEvent;
use sightline_aws::{
    AwsClients, ClientSettings, DynamoClaimStore, FirehoseBatchPort, S3Quarantine,
};
use sightline_core::delivery::PackedSink;
use sightline_core::packing::PackConfig;
use sightline_core::ports::{ClaimStore, EventSink, QuarantineStore};
use sightline_core::retry::RetryPolicy;
use sightline_core::{
    BatchReport, Clock, DatasetB, Deadline, InputRecord, Pipeline, PipelineConfig, SystemClock,
};

pub use config::{Config, ConfigError};

/// Everything built once at init.
pub struct App<S, K, Q, C> {
    pub pipeline: Pipeline<S, K, Q, C>,
    pub deadline_reserve_ms: i64,
    pub metrics_namespace: String,
    pub function_name: String,
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
pub type AwsApp = App<DynamoClaimStore, PackedSink<FirehoseBatchPort>, S3Quarantine, SystemClock>;

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
    Ok(App {
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

/// Handles one batch. Never fails the whole invocation: problems are reported
/// per record as batch item failures.
pub async fn handle<S, K, Q, C>(
    app: &App<S, K, Q, C>,
    event: LambdaEvent<KinesisEvent>,
) -> Result<KinesisEventResponse, lambda_runtime::Error>
where
    S: ClaimStore,
    K: EventSink,
    Q: QuarantineStore,
    C: Clock,
{
    Ok(handle_with_report(app, event).await.0)
}

/// [`handle`], also returning the batch report (for drivers and tests).
pub async fn handle_with_report<S, K, Q, C>(
    app: &App<S, K, Q, C>,
    event: LambdaEvent<KinesisEvent>,
) -> (KinesisEventResponse, BatchReport)
where
    S: ClaimStore,
    K: EventSink,
    Q: QuarantineStore,
    C: Clock,
{
    let now_ms = app.pipeline.clock.now_ms();
    let deadline = Deadline::from_lambda(event.context.deadline, now_ms, app.deadline_reserve_ms);
    tracing::debug!(deadline_ms = event.context.deadline, now_ms, "invocation");
    let records = input_records(event.payload);
    let report = app.pipeline.process(&records, deadline).await;
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
