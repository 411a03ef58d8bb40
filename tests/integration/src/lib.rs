#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! Harness for integration tests against a local moto server.
//!
//! `scripts/test.sh` starts moto and exports `SIGHTLINE_AWS_ENDPOINT`. Each test
//! creates its own uniquely named table, buckets and streams, so tests run in
//! parallel without sharing state.
#![allow(clippy::missing_panics_doc)] // test harness: failing loudly is the point

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    TimeToLiveSpecification,
};
use aws_sdk_firehose::types::{DeliveryStreamType, ExtendedS3DestinationConfiguration};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use base64::Engine;
use dedup_enrich::{App, AwsApp, Config, app_with_clients};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use sightline_aws::{AwsClients, ClientSettings, clients::config_loader};
use sightline_core::{DatasetB, InputRecord, SystemClock};
use sightline_local::esm::{
    Esm, EsmConfig, EsmReport, Function, FunctionError, Runtime, ShardInput,
};

pub mod fault_proxy;
pub mod local_api;

use fault_proxy::FaultProxy;

pub const REGION: &str = "us-east-1";

/// The moto endpoint `scripts/test.sh` started (`SIGHTLINE_AWS_ENDPOINT`).
/// Tests call [`require_moto!`] first, so this is only reached when it is set.
pub fn endpoint() -> String {
    moto_endpoint().unwrap_or_default()
}

/// The moto endpoint, if one was started for the tests.
pub fn moto_endpoint() -> Option<String> {
    std::env::var("SIGHTLINE_AWS_ENDPOINT")
        .ok()
        .filter(|v| !v.is_empty())
}

/// Says once per test binary why its tests are skipped.
pub fn skip_without_moto() -> bool {
    if moto_endpoint().is_some() {
        return false;
    }
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        eprintln!(
            "skipped: these tests need a moto server (SIGHTLINE_AWS_ENDPOINT is not set); run scripts/test.sh, which starts one"
        );
    });
    true
}

/// Returns from the test, passing, when no moto server was started for it.
#[macro_export]
macro_rules! require_moto {
    () => {
        if $crate::skip_without_moto() {
            return;
        }
    };
}

pub async fn sdk_config(endpoint: &str, settings: ClientSettings) -> aws_config::SdkConfig {
    config_loader(settings)
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(REGION))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "sightline-tests",
        ))
        .load()
        .await
}

fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// One test's resources on the emulator.
pub struct Stack {
    pub clients: AwsClients,
    pub kinesis: aws_sdk_kinesis::Client,
    pub table: String,
    pub delivery_stream: String,
    pub lake_bucket: String,
    pub quarantine_bucket: String,
    pub kinesis_stream: String,
}

/// A raw archive on the emulator (see [`Stack::create_archive`]).
pub struct RawArchive {
    pub bucket: String,
    pub stream: String,
    pub prefix: String,
}

impl RawArchive {
    /// `s3://bucket/raw/`, as the stack's output gives it.
    pub fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }
}

/// One Kinesis record as read back with GetRecords.
#[derive(Debug, Clone)]
pub struct ShardRecord {
    pub shard_id: String,
    pub sequence_number: String,
    pub partition_key: String,
    pub arrival_secs: f64,
    pub data: Vec<u8>,
}

impl Stack {
    pub async fn create(name: &str, shards: i32) -> Stack {
        let endpoint = endpoint();
        let settings = ClientSettings {
            s3_force_path_style: true,
            ..ClientSettings::default()
        };
        let cfg = sdk_config(&endpoint, settings).await;
        let clients = AwsClients::from_config(&cfg, settings);
        let kinesis = aws_sdk_kinesis::Client::new(&cfg);
        let stack = Stack {
            table: unique(&format!("{name}-claims")),
            delivery_stream: unique(&format!("{name}-delivery")),
            lake_bucket: unique(&format!("{name}-lake")).to_lowercase(),
            quarantine_bucket: unique(&format!("{name}-quarantine")).to_lowercase(),
            kinesis_stream: unique(&format!("{name}-events")),
            clients,
            kinesis,
        };
        stack.create_table().await;
        for b in [&stack.lake_bucket, &stack.quarantine_bucket] {
            stack
                .clients
                .s3
                .create_bucket()
                .bucket(b)
                .send()
                .await
                .expect("create bucket");
        }
        stack.create_delivery_stream(&stack.delivery_stream).await;
        stack
            .kinesis
            .create_stream()
            .stream_name(&stack.kinesis_stream)
            .shard_count(shards)
            .send()
            .await
            .expect("create kinesis stream");
        stack
    }

    async fn create_table(&self) {
        let ddb = &self.clients.dynamodb;
        ddb.create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("event_id")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .expect("attr"),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("event_id")
                    .key_type(KeyType::Hash)
                    .build()
                    .expect("key"),
            )
            .send()
            .await
            .expect("create table");
        ddb.update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name("expires_at")
                    .enabled(true)
                    .build()
                    .expect("ttl"),
            )
            .send()
            .await
            .expect("enable ttl");
    }

    pub async fn create_delivery_stream(&self, name: &str) {
        self.clients
            .firehose
            .create_delivery_stream()
            .delivery_stream_name(name)
            .delivery_stream_type(DeliveryStreamType::DirectPut)
            .extended_s3_destination_configuration(
                ExtendedS3DestinationConfiguration::builder()
                    .role_arn("arn:aws:iam::123456789012:role/firehose")
                    .bucket_arn(format!("arn:aws:s3:::{}", self.lake_bucket))
                    .prefix("events/")
                    .build()
                    .expect("s3 destination"),
            )
            .send()
            .await
            .expect("create delivery stream");
    }

    /// A raw archive: a bucket and a Direct PUT delivery stream (GZIP, as the
    /// stack's) writing under the plain prefix `raw/`, to which Firehose (and
    /// moto) adds its default `YYYY/MM/DD/HH/`. moto neither expands the stack's
    /// `!{timestamp:...}` prefix nor compresses (infra/README.md).
    pub async fn create_archive(&self) -> RawArchive {
        let archive = RawArchive {
            bucket: unique("archive").to_lowercase(),
            stream: unique("raw"),
            prefix: "raw/".into(),
        };
        self.clients
            .s3
            .create_bucket()
            .bucket(&archive.bucket)
            .send()
            .await
            .expect("create archive bucket");
        self.clients
            .firehose
            .create_delivery_stream()
            .delivery_stream_name(&archive.stream)
            .delivery_stream_type(DeliveryStreamType::DirectPut)
            .extended_s3_destination_configuration(
                ExtendedS3DestinationConfiguration::builder()
                    .role_arn("arn:aws:iam::123456789012:role/firehose")
                    .bucket_arn(format!("arn:aws:s3:::{}", archive.bucket))
                    .prefix(&archive.prefix)
                    .compression_format(aws_sdk_firehose::types::CompressionFormat::Gzip)
                    .build()
                    .expect("s3 destination"),
            )
            .send()
            .await
            .expect("create archive delivery stream");
        archive
    }

    /// The function's config for this stack, writing the raw archive.
    pub fn config_with_archive(&self, archive: &RawArchive) -> Config {
        let mut config = self.config();
        config.raw_archive_stream = Some(archive.stream.clone());
        config
    }

    /// Every line in the archive bucket.
    pub async fn archive_lines(&self, archive: &RawArchive) -> Vec<Value> {
        self.lines(&archive.bucket).await
    }

    /// The function's config for this stack.
    pub fn config(&self) -> Config {
        let table = self.table.clone();
        let stream = self.delivery_stream.clone();
        let bucket = self.quarantine_bucket.clone();
        Config::from_lookup(move |k| match k {
            "DEDUP_TABLE" => Some(table.clone()),
            "DELIVERY_STREAM" => Some(stream.clone()),
            "QUARANTINE_BUCKET" => Some(bucket.clone()),
            "S3_FORCE_PATH_STYLE" => Some("true".into()),
            _ => None,
        })
        .expect("valid config")
    }

    pub fn app(&self, config: &Config) -> AwsApp {
        app_with_clients(config, self.clients.clone()).expect("app")
    }

    /// The app with its clients pointed at the fault proxy, with a short
    /// per-attempt timeout so "slower than the SDK's timeout" is quick. The
    /// Firehose client reports the attempts it got no answer to
    /// ([`FaultProxy::unanswered_firehose_events`]).
    pub async fn app_via(
        &self,
        config: &Config,
        proxy: &FaultProxy,
        attempt_timeout: Duration,
    ) -> AwsApp {
        let (cfg, mut clients) = Stack::clients_at(&proxy.endpoint, attempt_timeout).await;
        clients.firehose = aws_sdk_firehose::Client::from_conf(
            aws_sdk_firehose::config::Builder::from(&cfg)
                .interceptor(proxy.firehose_watch())
                .build(),
        );
        app_with_clients(config, clients).expect("app")
    }

    /// The app over fresh clients for `endpoint`.
    pub async fn app_at(config: &Config, endpoint: &str, attempt_timeout: Duration) -> AwsApp {
        let (_, clients) = Stack::clients_at(endpoint, attempt_timeout).await;
        app_with_clients(config, clients).expect("app")
    }

    /// Fresh clients for `endpoint` (path-style S3), and the SDK config they
    /// came from.
    async fn clients_at(
        endpoint: &str,
        attempt_timeout: Duration,
    ) -> (aws_config::SdkConfig, AwsClients) {
        let settings = ClientSettings {
            attempt_timeout,
            s3_force_path_style: true,
            ..ClientSettings::default()
        };
        let cfg = sdk_config(endpoint, settings).await;
        let clients = AwsClients::from_config(&cfg, settings);
        (cfg, clients)
    }

    /// PutRecords with the payloads; partition keys pick the shards.
    pub async fn put(&self, payloads: &[(String, Vec<u8>)]) {
        for chunk in payloads.chunks(500) {
            let entries = chunk
                .iter()
                .map(|(pk, data)| {
                    PutRecordsRequestEntry::builder()
                        .partition_key(pk)
                        .data(Blob::new(data.clone()))
                        .build()
                        .expect("entry")
                })
                .collect::<Vec<_>>();
            let out = self
                .kinesis
                .put_records()
                .stream_name(&self.kinesis_stream)
                .set_records(Some(entries))
                .send()
                .await
                .expect("put records");
            assert_eq!(out.failed_record_count().unwrap_or(0), 0);
        }
    }

    /// Reads every shard from the start, as the event source mapping would.
    pub async fn read_all(&self) -> BTreeMap<String, Vec<ShardRecord>> {
        self.read_stream(&self.kinesis_stream).await
    }

    /// [`Stack::read_all`] of another stream.
    pub async fn read_stream(&self, stream: &str) -> BTreeMap<String, Vec<ShardRecord>> {
        let shards = self
            .kinesis
            .list_shards()
            .stream_name(stream)
            .send()
            .await
            .expect("list shards");
        let mut out = BTreeMap::new();
        for shard in shards.shards() {
            let shard_id = shard.shard_id().to_string();
            let mut iterator = self
                .kinesis
                .get_shard_iterator()
                .stream_name(stream)
                .shard_id(&shard_id)
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await
                .expect("iterator")
                .shard_iterator
                .expect("iterator value");
            let mut records = Vec::new();
            loop {
                let page = self
                    .kinesis
                    .get_records()
                    .shard_iterator(&iterator)
                    .limit(1_000)
                    .send()
                    .await
                    .expect("get records");
                if page.records().is_empty() {
                    break;
                }
                for r in page.records() {
                    records.push(ShardRecord {
                        shard_id: shard_id.clone(),
                        sequence_number: r.sequence_number().to_string(),
                        partition_key: r.partition_key().unwrap_or_default().to_string(),
                        arrival_secs: r
                            .approximate_arrival_timestamp()
                            .map_or(0.0, aws_sdk_dynamodb::primitives::DateTime::as_secs_f64),
                        data: r.data().as_ref().to_vec(),
                    });
                }
                match page.next_shard_iterator() {
                    Some(next) => iterator = next.to_string(),
                    None => break,
                }
            }
            out.insert(shard_id, records);
        }
        out
    }

    /// Every event line Firehose delivered to the lake bucket.
    pub async fn lake_lines(&self) -> Vec<Value> {
        self.lines(&self.lake_bucket).await
    }

    /// Every quarantined record line.
    pub async fn quarantine_lines(&self) -> Vec<Value> {
        self.lines(&self.quarantine_bucket).await
    }

    pub async fn object_keys(&self, bucket: &str) -> Vec<String> {
        let listed = self
            .clients
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .send()
            .await
            .expect("list objects");
        listed
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect()
    }

    async fn lines(&self, bucket: &str) -> Vec<Value> {
        let mut out = Vec::new();
        for key in self.object_keys(bucket).await {
            let obj = self
                .clients
                .s3
                .get_object()
                .bucket(bucket)
                .key(&key)
                .send()
                .await
                .expect("get object");
            let body = obj.body.collect().await.expect("body").into_bytes();
            for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                out.push(serde_json::from_slice(line).expect("every stored line is JSON"));
            }
        }
        out
    }
}

/// The Lambda event the Kinesis event source mapping would send for `records`.
pub fn kinesis_event(records: &[ShardRecord]) -> KinesisEvent {
    let b64 = base64::engine::general_purpose::STANDARD;
    let records: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r.partition_key,
                    "sequenceNumber": r.sequence_number,
                    "data": b64.encode(&r.data),
                    "approximateArrivalTimestamp": r.arrival_secs,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{}:{}", r.shard_id, r.sequence_number),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda",
                "awsRegion": REGION,
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/sightline",
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).expect("valid Kinesis event")
}

pub fn lambda_event(records: &[ShardRecord], deadline_ms: u64) -> LambdaEvent<KinesisEvent> {
    let mut ctx = Context::default();
    ctx.request_id = unique("req");
    ctx.deadline = deadline_ms;
    LambdaEvent::new(kinesis_event(records), ctx)
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What draining a shard took.
#[derive(Debug, Default, Clone)]
pub struct Drain {
    pub invocations: usize,
    pub stats: sightline_core::metrics::BatchStats,
    /// What the event source mapping did.
    pub esm: EsmReport,
}

/// The handler as the local event source mapping invokes it: one execution
/// environment (the app is built once, as in a warm Lambda), real time.
struct Handler<'a, S, K, Q, C, A> {
    app: &'a App<S, K, Q, C, A>,
    /// The records as read from the stream, by sequence number, so the event
    /// carries their real partition keys and arrival times.
    originals: HashMap<String, ShardRecord>,
    stats: std::cell::RefCell<sightline_core::metrics::BatchStats>,
}

/// Starts "environments" that all share one warm app.
struct HandlerRuntime<'h, 'a, S, K, Q, C, A>(&'h Handler<'a, S, K, Q, C, A>);

impl<'h, 'a, S, K, Q, C, A> Runtime for HandlerRuntime<'h, 'a, S, K, Q, C, A>
where
    S: sightline_core::ports::ClaimStore,
    K: sightline_core::ports::EventSink,
    Q: sightline_core::ports::QuarantineStore,
    C: sightline_core::Clock,
    A: sightline_core::archive::RawArchive,
{
    type Function = &'h Handler<'a, S, K, Q, C, A>;

    fn start(&self) -> Result<Self::Function, FunctionError> {
        Ok(self.0)
    }
}

impl<S, K, Q, C, A> Function for &Handler<'_, S, K, Q, C, A>
where
    S: sightline_core::ports::ClaimStore,
    K: sightline_core::ports::EventSink,
    Q: sightline_core::ports::QuarantineStore,
    C: sightline_core::Clock,
    A: sightline_core::archive::RawArchive,
{
    async fn invoke(
        &self,
        batch: &[InputRecord],
        deadline_ms: i64,
    ) -> Result<Vec<String>, FunctionError> {
        let records: Vec<ShardRecord> = batch
            .iter()
            .filter_map(|r| self.originals.get(&r.sequence_number).cloned())
            .collect();
        let deadline = u64::try_from(deadline_ms).unwrap_or(0);
        let (resp, report) =
            dedup_enrich::handle_with_report(self.app, lambda_event(&records, deadline)).await;
        self.stats.borrow_mut().absorb(&report.stats);
        Ok(resp
            .batch_item_failures
            .into_iter()
            .filter_map(|f| f.item_identifier)
            .collect())
    }
}

/// The event source mapping's settings for these tests: the deployed ones,
/// with a batch size and quick retries (real time, against moto).
pub fn esm_config(batch_size: usize) -> EsmConfig {
    EsmConfig {
        batch_size,
        retry_delay: Duration::from_millis(10),
        ..EsmConfig::default()
    }
}

/// Drives one shard through the local event source mapping (Lambda's delivery
/// rules: partial batch responses, whole-batch retries and bisection, the
/// timeout, the retry quota) until it is drained; fails if more than
/// `max_invocations` were needed or the mapping gave up on a batch.
pub async fn drain_shard<S, K, Q, C, A>(
    app: &App<S, K, Q, C, A>,
    records: &[ShardRecord],
    batch_size: usize,
    max_invocations: usize,
) -> Drain
where
    S: sightline_core::ports::ClaimStore,
    K: sightline_core::ports::EventSink,
    Q: sightline_core::ports::QuarantineStore,
    C: sightline_core::Clock,
    A: sightline_core::archive::RawArchive,
{
    let mut config = esm_config(batch_size);
    config.maximum_retry_attempts = None;
    let drain = drain_with_mapping(app, records, config).await;
    assert!(
        drain.invocations <= max_invocations,
        "shard did not drain in {max_invocations} invocations: {:?}",
        drain.esm.lines()
    );
    assert!(drain.esm.gave_up().is_empty(), "{:?}", drain.esm.lines());
    drain
}

/// [`drain_shard`] with any mapping settings, and no assertion.
pub async fn drain_with_mapping<S, K, Q, C, A>(
    app: &App<S, K, Q, C, A>,
    records: &[ShardRecord],
    config: EsmConfig,
) -> Drain
where
    S: sightline_core::ports::ClaimStore,
    K: sightline_core::ports::EventSink,
    Q: sightline_core::ports::QuarantineStore,
    C: sightline_core::Clock,
    A: sightline_core::archive::RawArchive,
{
    let Some(first) = records.first() else {
        return Drain::default();
    };
    let handler = Handler {
        app,
        originals: records
            .iter()
            .map(|r| (r.sequence_number.clone(), r.clone()))
            .collect(),
        stats: Default::default(),
    };
    let input: Vec<InputRecord> = records.iter().map(ShardRecord::input).collect();
    let clock = SystemClock;
    let report = Esm::new(config, &clock)
        .run_shard(
            ShardInput::records(first.shard_id.clone(), input),
            &HandlerRuntime(&handler),
            0,
        )
        .await;
    Drain {
        invocations: report.invocations(),
        stats: handler.stats.into_inner(),
        esm: report,
    }
}

impl ShardRecord {
    /// The record as the core sees it.
    pub fn input(&self) -> InputRecord {
        InputRecord {
            shard_id: self.shard_id.clone(),
            sequence_number: self.sequence_number.clone(),
            arrival_ms: (self.arrival_secs * 1_000.0).round() as i64,
            data: self.data.clone(),
        }
    }
}

/// A Dataset A event as a camera would publish it.
pub fn event_json(id: i64, location: i64, now: i64) -> Vec<u8> {
    const ITEMS: [&str; 6] = ["person", "car", "bicycle", "dog", "bus", "truck"];
    json!({
        "detection_oid": id,
        "video_camera_oid": 1_000 + id % 17,
        "geographical_location_oid": location,
        "item_name": ITEMS[(id % 6) as usize],
        "timestamp_detected": now - id * 1_000,
    })
    .to_string()
    .into_bytes()
}

pub struct Traffic {
    pub payloads: Vec<(String, Vec<u8>)>,
    pub unique: BTreeMap<i64, i64>,
    pub bad: usize,
    pub resent: usize,
}

/// `n` unique events, every fifth re-sent later under another partition key
/// (so possibly another shard), location 999 unknown to Dataset B, plus bad records.
pub fn traffic(n: i64) -> Traffic {
    let now = now_ms() as i64;
    let mut payloads = Vec::new();
    let mut unique = BTreeMap::new();
    for id in 1..=n {
        let location = if id % 13 == 0 { 999 } else { id % 55 + 1 };
        unique.insert(id, location);
        payloads.push((format!("camera-{}", id % 17), event_json(id, location, now)));
    }
    let mut resent = 0;
    for id in (1..=n).step_by(5) {
        let location = unique[&id];
        payloads.push((format!("retry-{id}"), event_json(id, location, now)));
        resent += 1;
    }
    let bad: Vec<Vec<u8>> = vec![
        b"\xff\xfe not utf8".to_vec(),
        b"{not json".to_vec(),
        b"[1,2,3]".to_vec(),
        br#"{"detection_oid":"5","video_camera_oid":1,"geographical_location_oid":1,"item_name":"car","timestamp_detected":1700000000000}"#.to_vec(),
        br#"{"detection_oid":77777,"video_camera_oid":1,"geographical_location_oid":1,"item_name":"","timestamp_detected":1700000000000}"#.to_vec(),
        br#"{"detection_oid":77778,"video_camera_oid":1,"geographical_location_oid":1,"item_name":"car","timestamp_detected":1700000000}"#.to_vec(),
    ];
    let n_bad = bad.len();
    for (i, b) in bad.into_iter().enumerate() {
        payloads.insert(i * 37 % payloads.len(), (format!("bad-{i}"), b));
    }
    Traffic {
        payloads,
        unique,
        bad: n_bad,
        resent,
    }
}

pub fn count_by_id(lines: &[Value]) -> HashMap<i64, usize> {
    let mut counts = HashMap::new();
    for l in lines {
        *counts
            .entry(l["detection_oid"].as_i64().expect("detection_oid"))
            .or_default() += 1;
    }
    counts
}

pub fn assert_exactly_once(lines: &[Value], unique: &BTreeMap<i64, i64>) {
    assert_exactly_once_except(lines, unique, &[]);
}

/// [`assert_exactly_once`] for an app built by [`Stack::app_via`]: an event
/// of a Firehose attempt the client cut before any answer (the SDK's attempt
/// timeout on a loaded machine) may be in S3 twice, the case README "What can
/// still double" names; any other second copy fails. Returns how many events
/// were excused, and prints them, so a run that leaned on it shows.
pub fn assert_exactly_once_via(
    lines: &[Value],
    unique: &BTreeMap<i64, i64>,
    proxy: &FaultProxy,
) -> usize {
    let cut = proxy.unanswered_firehose_events();
    let excused = assert_exactly_once_except(lines, unique, &cut);
    if excused > 0 {
        println!(
            "{excused} events in S3 twice, each from a Firehose attempt the client cut ({} events in such attempts)",
            cut.len()
        );
    }
    excused
}

/// Every unique event delivered once (twice allowed for `may_double`), with
/// its enrichment; returns how many were in fact twice.
pub fn assert_exactly_once_except(
    lines: &[Value],
    unique: &BTreeMap<i64, i64>,
    may_double: &[i64],
) -> usize {
    let b = DatasetB::embedded().expect("dataset B");
    let counts = count_by_id(lines);
    assert_eq!(counts.len(), unique.len(), "every unique event delivered");
    let mut doubled = 0;
    for id in unique.keys() {
        let n = counts.get(id).copied();
        if n == Some(2) && may_double.contains(id) {
            doubled += 1;
            continue;
        }
        assert_eq!(n, Some(1), "event {id} delivered exactly once");
    }
    for l in lines {
        let id = l["detection_oid"].as_i64().unwrap_or_default();
        let location = unique[&id];
        assert_eq!(l["geographical_location_oid"], location);
        match b.lookup(location) {
            Some(name) => assert_eq!(l["geographical_location"], name),
            None => assert_eq!(l["geographical_location"], Value::Null),
        }
        let date = l["event_date"].as_str().unwrap_or_default();
        assert_eq!(date.len(), 10, "event_date is YYYY-MM-DD");
        assert!(
            l["source_shard"]
                .as_str()
                .unwrap_or_default()
                .starts_with("shardId-")
        );
    }
    doubled
}
