//! `sightline generate`, and the traffic writer `demo` shares.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, ensure};
use sightline::generate::{GenerateConfig, Truth, generate, recent_start};

/// Write realistic Dataset A traffic as NDJSON, plus `<output>.truth.json`.
#[derive(clap::Args)]
pub struct Args {
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
}

pub fn run(args: Args) -> anyhow::Result<()> {
    for (name, rate) in [
        ("duplicate-rate", args.duplicate_rate),
        ("malformed-rate", args.malformed_rate),
        ("unknown-location-rate", args.unknown_location_rate),
    ] {
        ensure!(
            (0.0..0.5).contains(&rate),
            "--{name} must be in [0, 0.5), got {rate}"
        );
    }
    let window_ms = args.window_hours.max(1) * 3_600_000;
    let config = GenerateConfig {
        events: args.events,
        seed: args.seed,
        start_ms: args.start_ms.unwrap_or_else(|| recent_start(window_ms)),
        window_ms,
        duplicate_rate: args.duplicate_rate,
        malformed_rate: args.malformed_rate,
        unknown_location_rate: args.unknown_location_rate,
    };
    let started = Instant::now();
    let (truth, truth_path) = write_traffic(&config, &args.output)?;
    println!(
        "wrote {} lines ({} unique events, {} re-sends, {} malformed) to {} in {:.2?}; ground truth in {}",
        truth.lines,
        truth.unique_valid_events,
        truth.injected_duplicates,
        truth.bad_records,
        args.output.display(),
        started.elapsed(),
        truth_path.display()
    );
    Ok(())
}

/// Writes the traffic to `path` and its ground truth beside it
/// (`<path minus extension>.truth.json`), whose path is returned.
pub fn write_traffic(config: &GenerateConfig, path: &Path) -> anyhow::Result<(Truth, PathBuf)> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let truth =
        generate(config, &mut out).with_context(|| format!("writing {}", path.display()))?;
    out.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    let truth_path = path.with_extension("truth.json");
    std::fs::write(&truth_path, serde_json::to_vec_pretty(&truth)?)
        .with_context(|| format!("writing {}", truth_path.display()))?;
    Ok((truth, truth_path))
}
