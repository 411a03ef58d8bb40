//! `sightline demo`: generate, run, roll up and draw the dashboard, over a fresh lake.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use sightline::generate::GenerateConfig;
use sightline::report::{dashboard_data, thousands};
use sightline_core::{Clock, SystemClock};
use sightline_local::RunSummary;

use super::generate::write_traffic;
use super::run::{LocalArgs, local_run};

/// `generate` then `run`, then the dashboard: the whole pipeline locally.
/// Starts from an empty lake (a previous demo's lake is cleared).
#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Hours of traffic, ending now (so the dashboards' last-7-days filter sees it).
    #[arg(long, default_value_t = 24)]
    window_hours: i64,
    #[command(flatten)]
    local: LocalArgs,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let lake = &args.local.lake;
    start_fresh(lake)?;
    let input_dir = lake.join("_input");
    std::fs::create_dir_all(&input_dir)
        .with_context(|| format!("creating {}", input_dir.display()))?;
    let input = input_dir.join("events.ndjson");
    let window_ms = args.window_hours.clamp(1, 24 * 7) * 3_600_000;
    // End now, so "the last 7 days" in the dashboard SQL holds it all.
    let config = GenerateConfig {
        events: args.events,
        seed: args.seed,
        start_ms: SystemClock.now_ms() - window_ms,
        window_ms,
        ..GenerateConfig::default()
    };
    let started = Instant::now();
    let (truth, _) = write_traffic(&config, &input)?;
    println!(
        "generated {} lines in {:.2?}: {} unique events, {} re-sends, {} malformed ({})",
        thousands(truth.lines),
        started.elapsed(),
        thousands(truth.unique_valid_events),
        thousands(truth.injected_duplicates),
        thousands(truth.bad_records),
        input.display()
    );
    let summary = local_run(&args.local.config(input)).await?;
    let started = Instant::now();
    let dashboard = write_dashboard(lake, &summary).await?;
    println!(
        "dashboard: {} ({:.2?}); try: sightline query --lake {} \"SELECT location, item_name, detections FROM (SELECT coalesce(geographical_location, 'UNKNOWN') AS location, item_name, count(*) AS detections FROM events_dedup GROUP BY 1, 2) ORDER BY detections DESC LIMIT 10\"",
        dashboard.display(),
        started.elapsed(),
        lake.display()
    );
    Ok(())
}

/// A demo starts from an empty lake (the same seed would otherwise all be
/// duplicates of the last demo). Only a previous demo's lake is cleared.
fn start_fresh(lake: &Path) -> anyhow::Result<()> {
    let Ok(mut entries) = std::fs::read_dir(lake) else {
        return Ok(());
    };
    if entries.next().is_none() {
        return Ok(());
    }
    if !lake.join("_input/events.truth.json").exists() {
        bail!(
            "{} already holds a lake that no demo wrote; pass another --lake (demo starts from an empty one)",
            lake.display()
        );
    }
    println!(
        "starting over: clearing the previous demo in {}",
        lake.display()
    );
    std::fs::remove_dir_all(lake).with_context(|| format!("clearing {}", lake.display()))
}

async fn write_dashboard(lake: &Path, summary: &RunSummary) -> anyhow::Result<PathBuf> {
    let now = sightline_core::quarantine::iso8601(SystemClock.now_ms());
    let data = dashboard_data(lake, summary, now).await?;
    let path = lake.join("dashboard.html");
    std::fs::write(&path, sightline::dashboard::render(&data))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
