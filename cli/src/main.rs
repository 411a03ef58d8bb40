//! `sightline`: local tools around the pipeline. Logging, one async runtime, and
//! the subcommand (`cmd`); errors print with their whole chain.

mod cmd;
mod progress;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "sightline", version, about = "Sightline's local tools")]
struct Cli {
    /// More log output: -v info, -vv debug, -vvv trace (`RUST_LOG` overrides).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// How log lines on stderr are written.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: cmd::Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    /// For people: one line per event, coloured on a terminal.
    Text,
    /// For machines: one JSON object per line.
    Json,
}

/// Warnings by default, so the batch code's claim, delivery and quarantine
/// failures are never silent.
fn init_logging(verbose: u8, format: LogFormat) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sightline: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cmd::run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}`: the whole chain, "request failed: connection refused".
            eprintln!("sightline: {e:#}");
            ExitCode::FAILURE
        }
    }
}
