//! `sightline`: local tools around the pipeline.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use sightline::generate::{GenerateConfig, generate};
use sightline::ingest_http::{IngestHttp, IngestHttpError, Signing};
use sightline::produce::{INGEST_CALL, ProduceConfig, ProduceReport, produce};
use sightline::replay;
use sightline::report::{dashboard_data, summary_table, thousands};
use sightline_aws::kinesis::KinesisPutRecords;
use sightline_aws::{AwsClients, ClientSettings};
use sightline_core::Clock;
use sightline_local::run::Progress;
use sightline_local::{Lake, RunConfig, RunSummary};

#[derive(Parser)]
#[command(name = "sightline", version, about = "Sightline's local tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write realistic Dataset A traffic as NDJSON, plus `<output>.truth.json`.
    Generate {
        #[arg(long, default_value = "events.ndjson")]
        output: PathBuf,
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// First timestamp, epoch milliseconds (default: --window-hours before now,
        /// on the hour, so the traffic is recent: the function quarantines events
        /// more than 7 days older than their arrival). Give it for byte-identical output.
        #[arg(long)]
        start_ms: Option<i64>,
        #[arg(long, default_value_t = 24)]
        window_hours: i64,
        /// Share of lines that are re-sends of an earlier event.
        #[arg(long, default_value_t = 0.05)]
        duplicate_rate: f64,
        #[arg(long, default_value_t = 0.001)]
        malformed_rate: f64,
        #[arg(long, default_value_t = 0.002)]
        unknown_location_rate: f64,
    },
    /// Publish events to a Kinesis stream, or to the ingest front door's URL, at a
    /// target rate (AWS credentials and region from the environment;
    /// `AWS_ENDPOINT_URL` or --endpoint-url for an emulator).
    #[command(group(clap::ArgGroup::new("target").required(true).args(["stream", "url"])))]
    Produce {
        /// The Kinesis stream to `PutRecords` to.
        #[arg(long)]
        stream: Option<String>,
        /// The front door's URL (the stack's `IngestUrl` output, ending in `/events`):
        /// events are POSTed as NDJSON, 500 and 1 MiB at a time, signed with SigV4.
        #[arg(long)]
        url: Option<String>,
        /// Do not sign requests to --url (a front door with another authorizer).
        #[arg(long, requires = "url")]
        no_sign: bool,
        /// NDJSON to send; without it, --events are generated with --seed.
        #[arg(long)]
        input: Option<PathBuf>,
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Target events per second, re-sends included.
        #[arg(long, default_value_t = 10_000.0)]
        rate: f64,
        /// Share of events re-sent, as a retrying camera would.
        #[arg(long, default_value_t = 0.0)]
        duplicate_rate: f64,
        #[arg(long)]
        endpoint_url: Option<String>,
    },
    /// Run an NDJSON file through the Lambda's batch code on this machine:
    /// Kinesis-shaped batches, an embedded claim store, a Parquet lake.
    Run {
        #[arg(long)]
        input: PathBuf,
        #[command(flatten)]
        local: LocalArgs,
    },
    /// `generate` then `run`, then the dashboard: the whole pipeline locally.
    /// Starts from an empty lake (a previous demo's lake is cleared).
    Demo {
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Hours of traffic, ending now (so the dashboards' last-7-days filter sees it).
        #[arg(long, default_value_t = 24)]
        window_hours: i64,
        #[command(flatten)]
        local: LocalArgs,
    },
    /// Put a range the event source mapping gave up on back into the stream:
    /// releases the claims it still holds (unless delivered) and re-puts the
    /// records that need it. Reads an on-failure record from a file, or every
    /// message of the on-failure SQS queue (deleted once replayed).
    #[command(group(clap::ArgGroup::new("source").required(true).args(["message", "queue_url"])))]
    Replay {
        /// An on-failure record (the JSON Lambda sends to the destination).
        #[arg(long)]
        message: Option<PathBuf>,
        /// The on-failure queue (the stack's `OnFailureQueueUrl` output).
        #[arg(long)]
        queue_url: Option<String>,
        /// The claim table (the function's `DEDUP_TABLE`).
        #[arg(long)]
        table: String,
        /// The stream to read and put to, when not the one the record names.
        #[arg(long)]
        stream: Option<String>,
        /// Report what would be released and put, and change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        endpoint_url: Option<String>,
    },
    /// Rebuild the hourly rollups of a range of hours (a backfill, e.g. after a
    /// replay): over the local lake, or in AWS through the rollup state machine.
    Rollup(sightline::rollups::RollupArgs),
    /// SQL over the local lake, with Athena's table names: `events` and `events_dedup`.
    Query {
        sql: String,
        #[arg(long, default_value = "lake")]
        lake: PathBuf,
    },
}

#[derive(clap::Args)]
struct LocalArgs {
    /// Where `events/`, `quarantine/`, `dashboard.html` and the claim store go.
    #[arg(long, default_value = "lake")]
    lake: PathBuf,
    /// Simulated Kinesis shards (one poller each).
    #[arg(long, default_value_t = 4)]
    shards: usize,
    /// Records per Lambda batch (1..=10000).
    #[arg(long, default_value_t = 5_000)]
    batch_size: usize,
    /// How long a claim blocks a re-send.
    #[arg(long, default_value_t = 86_400)]
    dedup_window_secs: i64,
}

impl LocalArgs {
    fn config(&self, input: PathBuf) -> RunConfig {
        RunConfig {
            shards: self.shards,
            batch_size: self.batch_size,
            dedup_window_secs: self.dedup_window_secs,
            ..RunConfig::new(input, &self.lake)
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The whole chain: "request failed: connection refused", not just the top.
            eprintln!("sightline: {}", sightline_core::batch::chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn bar(report: &ProduceReport, total: u64) {
    let done = (report.sent + report.failed).min(total.max(1));
    let filled = (done * 30 / total.max(1)) as usize;
    eprint!(
        "\r[{}{}] {:>9}/~{} sent  {:>8.0} ev/s  throttled {}  failed {}  ",
        "#".repeat(filled),
        ".".repeat(30 - filled.min(30)),
        report.sent,
        total,
        report.achieved_rate,
        report.throttled,
        report.failed
    );
}

fn run_bar(p: &Progress, started: Instant) {
    let share = if p.total_bytes == 0 {
        1.0
    } else {
        p.read_bytes as f64 / p.total_bytes as f64
    };
    let filled = ((share * 30.0) as usize).min(30);
    let rate = p.settled as f64 / started.elapsed().as_secs_f64().max(1e-3);
    eprint!(
        "\r[{}{}] {:>3.0}%  {:>11} settled  {:>9} ev/s  ",
        "#".repeat(filled),
        ".".repeat(30 - filled),
        share * 100.0,
        thousands(p.settled),
        thousands(rate as u64)
    );
}

type BoxError = Box<dyn std::error::Error>;

fn local_run(config: &RunConfig) -> Result<RunSummary, BoxError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let started = Instant::now();
    let summary = runtime.block_on(sightline_local::run(config, |p| run_bar(p, started)));
    eprintln!();
    let summary = summary.map_err(|e| error_chain(&e))?;
    println!(
        "run {} of {}{}:",
        summary.run_id,
        config.input.display(),
        if summary.replay {
            " (seen before: a replay, with the same sequence numbers)"
        } else {
            ""
        }
    );
    print!("{}", summary_table(&summary));
    Ok(summary)
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn rfc3339(ms: i64) -> String {
    sightline_core::quarantine::iso8601(ms)
}

/// A demo starts from an empty lake (the same seed would otherwise all be
/// duplicates of the last demo). Only a previous demo's lake is cleared.
fn start_fresh(lake: &std::path::Path) -> Result<(), BoxError> {
    let Ok(mut entries) = std::fs::read_dir(lake) else {
        return Ok(());
    };
    if entries.next().is_none() {
        return Ok(());
    }
    if !lake.join("_input/events.truth.json").exists() {
        return Err(format!(
            "{} already holds a lake that no demo wrote; pass another --lake (demo starts from an empty one)",
            lake.display()
        )
        .into());
    }
    println!(
        "starting over: clearing the previous demo in {}",
        lake.display()
    );
    std::fs::remove_dir_all(lake).map_err(|e| format!("clearing {}: {e}", lake.display()))?;
    Ok(())
}

fn write_dashboard(lake: &std::path::Path, summary: &RunSummary) -> Result<PathBuf, BoxError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let now = sightline_core::SystemClock.now_ms();
    let data = runtime
        .block_on(dashboard_data(lake, summary, rfc3339(now)))
        .map_err(|e| error_chain(&e))?;
    let path = lake.join("dashboard.html");
    std::fs::write(&path, sightline::dashboard::render(&data))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

fn run(cli: Cli) -> Result<(), BoxError> {
    match cli.command {
        Command::Run { input, local } => {
            local_run(&local.config(input))?;
            Ok(())
        }
        Command::Demo {
            events,
            seed,
            window_hours,
            local,
        } => {
            start_fresh(&local.lake)?;
            let input_dir = local.lake.join("_input");
            std::fs::create_dir_all(&input_dir)
                .map_err(|e| format!("{}: {e}", input_dir.display()))?;
            let input = input_dir.join("events.ndjson");
            let window_ms = window_hours.clamp(1, 24 * 7) * 3_600_000;
            // End now, so "the last 7 days" in the dashboard SQL holds it all.
            let now = sightline_core::SystemClock.now_ms();
            let config = GenerateConfig {
                events,
                seed,
                start_ms: now - window_ms,
                window_ms,
                ..GenerateConfig::default()
            };
            let started = Instant::now();
            let file = File::create(&input).map_err(|e| format!("{}: {e}", input.display()))?;
            let mut out = BufWriter::with_capacity(1 << 20, file);
            let truth = generate(&config, &mut out)?;
            out.flush()?;
            let truth_path = input.with_extension("truth.json");
            std::fs::write(&truth_path, serde_json::to_vec_pretty(&truth)?)?;
            println!(
                "generated {} lines in {:.2?}: {} unique events, {} re-sends, {} malformed ({})",
                thousands(truth.lines),
                started.elapsed(),
                thousands(truth.unique_valid_events),
                thousands(truth.injected_duplicates),
                thousands(truth.bad_records),
                input.display()
            );
            let summary = local_run(&local.config(input))?;
            let started = Instant::now();
            let dashboard = write_dashboard(&local.lake, &summary)?;
            println!(
                "dashboard: {} ({:.2?}); try: sightline query --lake {} \"SELECT location, item_name, detections FROM (SELECT coalesce(geographical_location, 'UNKNOWN') AS location, item_name, count(*) AS detections FROM events_dedup GROUP BY 1, 2) ORDER BY detections DESC LIMIT 10\"",
                dashboard.display(),
                started.elapsed(),
                local.lake.display()
            );
            Ok(())
        }
        Command::Replay {
            message,
            queue_url,
            table,
            stream,
            dry_run,
            endpoint_url,
        } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let settings = ClientSettings::default();
                let mut loader = sightline_aws::clients::config_loader(settings);
                if let Some(url) = &endpoint_url {
                    loader = loader.endpoint_url(url);
                }
                let sdk = loader.load().await;
                let clients = AwsClients::from_config(&sdk, settings);
                let claims = sightline_aws::DynamoClaimStore::new(clients.dynamodb.clone(), &table);
                let targets = replay::Targets {
                    kinesis: &clients.kinesis,
                    claims: &claims,
                    stream: stream.as_deref(),
                    dry_run,
                };
                let print = |r: &replay::RangeReplay| {
                    let p = &r.plan;
                    println!(
                        "{} {}..={}: {} records, {} events: {} claim(s) released, {} delivered already, {} held by other records, {} unclaimed, {} bad; {} record(s) {}",
                        r.shard_id,
                        r.start,
                        r.end,
                        p.records,
                        p.events,
                        p.released,
                        p.delivered,
                        p.held_by_others,
                        p.unclaimed,
                        p.bad,
                        if dry_run { p.to_put.len() } else { r.put },
                        if dry_run { "would be put back (dry run)" } else { "put back" },
                    );
                };
                match (&message, &queue_url) {
                    (Some(path), _) => {
                        let record = replay::read_message(path)?;
                        let done = replay::replay_range(&targets, &record).await?;
                        print(&done);
                    }
                    (None, Some(queue)) => {
                        let sqs = aws_sdk_sqs::Client::new(&sdk);
                        let done = replay::replay_queue(&targets, &sqs, queue, print).await?;
                        println!("{} range(s) replayed from {queue}", done.len());
                    }
                    (None, None) => return Err("give --message or --queue-url".into()),
                }
                Ok::<(), BoxError>(())
            })
        }
        Command::Rollup(args) => Ok(sightline::rollups::run(args)?),
        Command::Query { sql, lake } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            let table = runtime
                .block_on(async {
                    let lake = Lake::open(&lake).await?;
                    lake.sql_table(&sql).await
                })
                .map_err(|e| error_chain(&e))?;
            println!("{table}");
            Ok(())
        }
        Command::Produce {
            stream,
            url,
            no_sign,
            input,
            events,
            seed,
            rate,
            duplicate_rate,
            endpoint_url,
        } => {
            if !(0.0..1.0).contains(&duplicate_rate) || rate <= 0.0 {
                return Err("--duplicate-rate must be in [0, 1) and --rate positive".into());
            }
            let data = match &input {
                Some(path) => {
                    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?
                }
                None => {
                    let mut buf = Vec::new();
                    generate(
                        &GenerateConfig {
                            events,
                            seed,
                            // Recent, so the function does not quarantine them as too old.
                            start_ms: sightline::generate::recent_start(
                                GenerateConfig::default().window_ms,
                            ),
                            duplicate_rate: 0.0,
                            malformed_rate: 0.0,
                            unknown_location_rate: 0.0,
                            ..GenerateConfig::default()
                        },
                        &mut buf,
                    )?;
                    buf
                }
            };
            let lines: Vec<Vec<u8>> = data
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(<[u8]>::to_vec)
                .collect();
            let total = (lines.len() as f64 * (1.0 + duplicate_rate)) as u64;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let config = ProduceConfig {
                rate,
                duplicate_rate,
                seed,
                ..ProduceConfig::default()
            };
            let (report, target, rejected) = runtime.block_on(async {
                let settings = ClientSettings::default();
                let mut loader = sightline_aws::clients::config_loader(settings);
                if let Some(url) = &endpoint_url {
                    loader = loader.endpoint_url(url);
                }
                let sdk = loader.load().await;
                let mut last = Instant::now();
                let progress = |r: &ProduceReport| {
                    if last.elapsed().as_millis() >= 250 {
                        bar(r, total);
                        last = Instant::now();
                    }
                };
                match (&stream, &url) {
                    (_, Some(url)) => {
                        let signing = if no_sign {
                            Signing::None
                        } else {
                            Signing::SigV4 {
                                credentials: sdk
                                    .credentials_provider()
                                    .ok_or(IngestHttpError::NoCredentialsProvider)?,
                                region: sdk
                                    .region()
                                    .map_or_else(|| "us-east-1".to_string(), |r| r.to_string()),
                            }
                        };
                        let port = IngestHttp::new(url, signing)?;
                        let config = ProduceConfig {
                            limits: INGEST_CALL,
                            ..config
                        };
                        let report = produce(&port, lines, &config, progress).await;
                        let rejected = Some((port.rejected(), port.first_rejection()));
                        Ok::<_, IngestHttpError>((report, url.clone(), rejected))
                    }
                    (Some(stream), None) => {
                        let clients = AwsClients::from_config(&sdk, settings);
                        let port = KinesisPutRecords::new(clients.kinesis, stream);
                        let report = produce(&port, lines, &config, progress).await;
                        Ok((report, stream.clone(), None))
                    }
                    // clap requires one of them.
                    (None, None) => Ok((ProduceReport::default(), String::new(), None)),
                }
            })?;
            bar(&report, total);
            eprintln!();
            println!(
                "produced {} records ({} re-sends) to {target} in {:.2?}: {:.0} ev/s achieved (target {rate:.0}); {} calls, {} throttled answers, {} failed",
                report.sent,
                report.resent,
                report.elapsed,
                report.achieved_rate,
                report.calls,
                report.throttled,
                report.failed
            );
            if let Some((rejected, first)) = rejected {
                println!(
                    "the front door rejected {rejected} of them as invalid (never forwarded){}",
                    first.map_or_else(String::new, |f| format!("; first: {f}"))
                );
            }
            if report.failed > 0 {
                return Err(format!(
                    "{} records were not accepted; last error: {}",
                    report.failed,
                    report.last_error.as_deref().unwrap_or("none reported")
                )
                .into());
            }
            Ok(())
        }
        Command::Generate {
            output,
            events,
            seed,
            start_ms,
            window_hours,
            duplicate_rate,
            malformed_rate,
            unknown_location_rate,
        } => {
            for (name, rate) in [
                ("duplicate-rate", duplicate_rate),
                ("malformed-rate", malformed_rate),
                ("unknown-location-rate", unknown_location_rate),
            ] {
                if !(0.0..0.5).contains(&rate) {
                    return Err(format!("--{name} must be in [0, 0.5), got {rate}").into());
                }
            }
            let window_ms = window_hours.max(1) * 3_600_000;
            let config = GenerateConfig {
                events,
                seed,
                start_ms: start_ms.unwrap_or_else(|| sightline::generate::recent_start(window_ms)),
                window_ms,
                duplicate_rate,
                malformed_rate,
                unknown_location_rate,
            };
            let started = Instant::now();
            let file = File::create(&output).map_err(|e| format!("{}: {e}", output.display()))?;
            let mut out = BufWriter::with_capacity(1 << 20, file);
            let truth = generate(&config, &mut out)?;
            out.flush()?;
            let truth_path = output.with_extension("truth.json");
            std::fs::write(&truth_path, serde_json::to_vec_pretty(&truth)?)?;
            println!(
                "wrote {} lines ({} unique events, {} re-sends, {} malformed) to {} in {:.2?}; ground truth in {}",
                truth.lines,
                truth.unique_valid_events,
                truth.injected_duplicates,
                truth.bad_records,
                output.display(),
                started.elapsed(),
                truth_path.display()
            );
            Ok(())
        }
    }
}
