//! `sightline produce`: traffic to a Kinesis stream or to the front door, at a rate.

use std::path::PathBuf;

use anyhow::{Context, bail, ensure};
use sightline::generate::{GenerateConfig, generate, recent_start};
use sightline::ingest_http::{IngestHttp, IngestHttpError, Signing};
use sightline::produce::{INGEST_CALL, ProduceConfig, ProduceReport, produce};
use sightline_aws::kinesis::KinesisPutRecords;
use sightline_aws::{AwsClients, ClientSettings};

use crate::progress::Progress;

/// Publish events to a Kinesis stream, or to the ingest front door's URL, at a
/// target rate (AWS credentials and region from the environment;
/// `AWS_ENDPOINT_URL` or --endpoint-url for an emulator).
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["stream", "url"])))]
pub struct Args {
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
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    ensure!(
        (0.0..1.0).contains(&args.duplicate_rate) && args.rate > 0.0,
        "--duplicate-rate must be in [0, 1) and --rate positive"
    );
    let lines = traffic(&args)?;
    let total = (lines.len() as f64 * (1.0 + args.duplicate_rate)) as u64;
    let config = ProduceConfig {
        rate: args.rate,
        duplicate_rate: args.duplicate_rate,
        seed: args.seed,
        ..ProduceConfig::default()
    };
    let settings = ClientSettings::default();
    let sdk = sightline::sdk_config(
        sightline_aws::clients::config_loader(settings),
        args.endpoint_url.as_deref(),
    )
    .await;
    let mut bar = Progress::new();
    let message = |r: &ProduceReport| {
        format!(
            "{:>9}/~{total} sent  {:>8.0} ev/s  throttled {}  failed {}",
            r.sent, r.achieved_rate, r.throttled, r.failed
        )
    };
    let progress = |r: &ProduceReport| bar.update(r.sent + r.failed, total, || message(r));
    let (report, target, rejected) = match (&args.stream, &args.url) {
        (_, Some(url)) => {
            let signing = if args.no_sign {
                Signing::None
            } else {
                Signing::SigV4 {
                    credentials: sdk
                        .credentials_provider()
                        .ok_or(IngestHttpError::NoCredentialsProvider)?,
                    region: sdk
                        .region()
                        .map_or_else(|| "us-east-1".to_string(), std::string::ToString::to_string),
                }
            };
            let port = IngestHttp::new(url, signing)?;
            let config = ProduceConfig {
                limits: INGEST_CALL,
                ..config
            };
            let report = produce(&port, lines, &config, progress).await;
            let rejected = Some((port.rejected(), port.first_rejection()));
            (report, url.clone(), rejected)
        }
        (Some(stream), None) => {
            let clients = AwsClients::from_config(&sdk, settings);
            let port = KinesisPutRecords::new(clients.kinesis, stream);
            (
                produce(&port, lines, &config, progress).await,
                stream.clone(),
                None,
            )
        }
        // clap requires one of them.
        (None, None) => bail!("give --stream or --url"),
    };
    bar.finish(report.sent + report.failed, total, || message(&report));
    println!(
        "produced {} records ({} re-sends) to {target} in {:.2?}: {:.0} ev/s achieved (target {:.0}); {} calls, {} throttled answers, {} failed",
        report.sent,
        report.resent,
        report.elapsed,
        report.achieved_rate,
        args.rate,
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
        bail!(
            "{} records were not accepted; last error: {}",
            report.failed,
            report.last_error.as_deref().unwrap_or("none reported")
        );
    }
    Ok(())
}

/// The lines to send: the --input file, or generated recent traffic (recent, so
/// the function does not quarantine it as too old).
fn traffic(args: &Args) -> anyhow::Result<Vec<Vec<u8>>> {
    let data = match &args.input {
        Some(path) => std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        None => {
            let mut buf = Vec::new();
            generate(
                &GenerateConfig {
                    events: args.events,
                    seed: args.seed,
                    start_ms: recent_start(GenerateConfig::default().window_ms),
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
    Ok(data
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}
