//! `sightline run`: an NDJSON file through the Lambda's batch code, locally.

use std::path::PathBuf;
use std::time::Instant;

use sightline::report::{summary_table, thousands};
use sightline_local::{RunConfig, RunSummary};

use crate::progress::Progress;

/// Run an NDJSON file through the Lambda's batch code on this machine:
/// Kinesis-shaped batches, an embedded claim store, a Parquet lake.
#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    input: PathBuf,
    #[command(flatten)]
    local: LocalArgs,
}

#[derive(clap::Args)]
pub struct LocalArgs {
    /// Where `events/`, `quarantine/`, `dashboard.html` and the claim store go.
    #[arg(long, default_value = "lake")]
    pub lake: PathBuf,
    /// Simulated Kinesis shards (one poller each).
    #[arg(long, default_value_t = 4)]
    shards: usize,
    /// Records per Lambda batch (1..=10000).
    #[arg(long, default_value_t = 5_000)]
    batch_size: usize,
    /// How long a claim blocks a re-send.
    #[arg(long, default_value_t = sightline_core::defaults::DEDUP_WINDOW_SECS)]
    dedup_window_secs: i64,
}

impl LocalArgs {
    pub fn config(&self, input: PathBuf) -> RunConfig {
        RunConfig {
            shards: self.shards,
            batch_size: self.batch_size,
            dedup_window_secs: self.dedup_window_secs,
            ..RunConfig::new(input, &self.lake)
        }
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    local_run(&args.local.config(args.input)).await?;
    Ok(())
}

/// Runs the file with a progress display, then prints the summary table.
pub async fn local_run(config: &RunConfig) -> anyhow::Result<RunSummary> {
    let started = Instant::now();
    let mut progress = Progress::new();
    let mut last = (0, 0, 0);
    let message = |settled: u64| {
        let rate = settled as f64 / started.elapsed().as_secs_f64().max(1e-3);
        format!(
            "{:>11} settled  {:>9} ev/s",
            thousands(settled),
            thousands(rate as u64)
        )
    };
    let summary = sightline_local::run(config, |p| {
        last = (p.read_bytes, p.total_bytes, p.settled);
        progress.update(p.read_bytes, p.total_bytes, || message(p.settled));
    })
    .await;
    progress.finish(last.0, last.1, || message(last.2));
    let summary = summary?;
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
