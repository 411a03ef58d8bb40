//! `sightline`: local tools around the pipeline.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use sightline::generate::{GenerateConfig, generate};
use sightline::produce::{ProduceConfig, ProduceReport, produce};
use sightline_aws::kinesis::KinesisPutRecords;
use sightline_aws::{AwsClients, ClientSettings};

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
        /// First timestamp, epoch milliseconds.
        #[arg(long, default_value_t = GenerateConfig::default().start_ms)]
        start_ms: i64,
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
    /// Publish events to a Kinesis stream at a target rate (AWS credentials and
    /// region from the environment; `AWS_ENDPOINT_URL` or --endpoint-url for an emulator).
    Produce {
        #[arg(long)]
        stream: String,
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
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sightline: {e}");
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

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Produce {
            stream,
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
            let report = runtime.block_on(async {
                let settings = ClientSettings::default();
                let mut loader = sightline_aws::clients::config_loader(settings);
                if let Some(url) = &endpoint_url {
                    loader = loader.endpoint_url(url);
                }
                let clients = AwsClients::from_config(&loader.load().await, settings);
                let port = KinesisPutRecords::new(clients.kinesis, &stream);
                let config = ProduceConfig {
                    rate,
                    duplicate_rate,
                    seed,
                    ..ProduceConfig::default()
                };
                let mut last = Instant::now();
                produce(&port, lines, &config, |r| {
                    if last.elapsed().as_millis() >= 250 {
                        bar(r, total);
                        last = Instant::now();
                    }
                })
                .await
            });
            bar(&report, total);
            eprintln!();
            println!(
                "produced {} records ({} re-sends) to {stream} in {:.2?}: {:.0} ev/s achieved (target {rate:.0}); {} PutRecords calls, {} throttled answers, {} failed",
                report.sent,
                report.resent,
                report.elapsed,
                report.achieved_rate,
                report.calls,
                report.throttled,
                report.failed
            );
            if report.failed > 0 {
                return Err(format!("{} records were not accepted", report.failed).into());
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
            let config = GenerateConfig {
                events,
                seed,
                start_ms,
                window_ms: window_hours.max(1) * 3_600_000,
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
