//! `sightline`: local tools around the pipeline.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use sightline::generate::{GenerateConfig, generate};

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

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
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
