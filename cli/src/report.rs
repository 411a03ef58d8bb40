//! What `run` and `demo` print, and the data behind `lake/dashboard.html`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use sightline_core::{Clock, SystemClock};
use sightline_local::RunSummary;
use sightline_sql::Lake;
use sightline_sql::query::{DASHBOARD_QUERIES, QueryError, Rows};
use sightline_sql::rollup::{RollupError, roll_up_closed};

use crate::dashboard::{
    Dashboard, DoublesRow, Freshness, FreshnessRow, HourlyRow, Rates, TopItemRow, TopLocationRow,
};

/// `1234567` -> `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".into()
    } else {
        format!("{:.2}%", part as f64 * 100.0 / whole as f64)
    }
}

/// The end-of-run table.
pub fn summary_table(s: &RunSummary) -> String {
    let st = &s.stats;
    let mut rows: Vec<(String, String, String)> = vec![
        ("received".into(), thousands(s.lines), String::new()),
        (
            "delivered to the lake".into(),
            thousands(st.delivered),
            pct(st.delivered, s.lines),
        ),
        (
            "  with an unknown location".into(),
            thousands(st.unknown_location),
            pct(st.unknown_location, s.lines),
        ),
        (
            "duplicates dropped".into(),
            thousands(st.duplicates),
            pct(st.duplicates, s.lines),
        ),
        (
            "  in the same batch".into(),
            thousands(st.duplicates_in_batch),
            String::new(),
        ),
        (
            "  claimed earlier (re-sends)".into(),
            thousands(st.duplicates_upstream),
            String::new(),
        ),
        (
            "  replayed records".into(),
            thousands(st.duplicates_replayed),
            String::new(),
        ),
        (
            "quarantined".into(),
            thousands(st.quarantined),
            pct(st.quarantined, s.lines),
        ),
    ];
    for (reason, n) in &st.quarantine_reasons {
        rows.push((format!("  {reason}"), thousands(*n), String::new()));
    }
    rows.push((
        "retried (batch item failures)".into(),
        thousands(st.failed),
        String::new(),
    ));
    rows.push((
        "Lambda-style invocations".into(),
        thousands(s.invocations),
        String::new(),
    ));
    rows.push((
        "Parquet files written".into(),
        thousands(s.lake.files),
        format!("{:.1} MiB", s.lake.bytes as f64 / 1_048_576.0),
    ));
    rows.push((
        "wall time".into(),
        format!("{:.2} s", s.wall.as_secs_f64()),
        format!("{} ev/s", thousands(s.events_per_sec() as u64)),
    ));
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (a, b, c) in rows {
        let _ = writeln!(out, "  {a:<w0$}  {b:>w1$}  {c}");
    }
    let unsettled = s.lines.saturating_sub(s.settled());
    if unsettled > 0 {
        let _ = writeln!(
            out,
            "  WARNING: {unsettled} records have no final fate; rerun the same input to settle them"
        );
    }
    out
}

/// Why the dashboard could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error("rolling up the closed hours (the scheduled job's part)")]
    Rollup(#[from] RollupError),
    #[error(transparent)]
    Query(#[from] QueryError),
}

/// The rows of the dashboard queries (the files `infra/athena/dashboard/` ships), as
/// one engine answered them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DashboardRows {
    pub hourly: Vec<HourlyRow>,
    pub top_items: Vec<TopItemRow>,
    pub top_locations: Vec<TopLocationRow>,
    pub doubles_removed: Vec<DoublesRow>,
    pub freshness: Vec<FreshnessRow>,
}

fn query(name: &str) -> &'static str {
    DASHBOARD_QUERIES
        .iter()
        .find(|(n, _)| *n == name)
        .map_or("", |(_, sql)| *sql)
}

/// Runs every dashboard query over `lake` (whatever its `events_dashboard` is made of).
pub async fn dashboard_rows(lake: &Lake) -> Result<DashboardRows, QueryError> {
    let batches = lake.sql(query("detections_per_location_hourly")).await?;
    let r = Rows::new(&batches);
    let hourly = r
        .strings("hour_utc")?
        .into_iter()
        .zip(r.strings("location")?)
        .zip(r.ints("detections")?)
        .map(|((hour, location), detections)| HourlyRow {
            // `YYYY-MM-DD HH:00:00` -> `YYYY-MM-DD HH:00`
            hour_utc: hour.get(..16).unwrap_or(&hour).to_string(),
            location,
            detections,
        })
        .collect();

    let batches = lake.sql(query("top_items_per_location")).await?;
    let r = Rows::new(&batches);
    let top_items = r
        .strings("location")?
        .into_iter()
        .zip(r.ints("item_rank")?)
        .zip(r.strings("item_name")?)
        .zip(r.ints("detections")?)
        .map(
            |(((location, item_rank), item_name), detections)| TopItemRow {
                location,
                item_rank,
                item_name,
                detections,
            },
        )
        .collect();

    let batches = lake.sql(query("top_locations")).await?;
    let r = Rows::new(&batches);
    let top_locations = r
        .strings("location")?
        .into_iter()
        .zip(r.ints("detections")?)
        .zip(r.ints("cameras")?)
        .map(|((location, detections), cameras)| TopLocationRow {
            location,
            detections,
            cameras,
        })
        .collect();

    let batches = lake.sql(query("doubles_removed_by_view")).await?;
    let r = Rows::new(&batches);
    let doubles_removed = r
        .strings("event_date")?
        .into_iter()
        .zip(r.ints("rows_in_lake")?)
        .zip(r.ints("rows_in_view")?)
        .zip(r.ints("doubles_removed")?)
        .map(
            |(((event_date, rows_in_lake), rows_in_view), doubles_removed)| DoublesRow {
                event_date,
                rows_in_lake,
                rows_in_view,
                doubles_removed,
            },
        )
        .collect();

    let batches = lake.sql(query("freshness")).await?;
    let r = Rows::new(&batches);
    let freshness = r
        .strings("source")?
        .into_iter()
        .zip(r.ints("hours")?)
        .zip(r.strings("first_hour")?)
        .zip(r.strings("last_hour")?)
        .zip(r.ints("newest_detected_ms")?)
        .map(
            |((((source, hours), first_hour), last_hour), newest_detected_ms)| FreshnessRow {
                source,
                hours,
                first_hour,
                last_hour,
                newest_detected_ms,
            },
        )
        .collect();

    Ok(DashboardRows {
        hourly,
        top_items,
        top_locations,
        doubles_removed,
        freshness,
    })
}

/// The demo's dashboard, read the way QuickSight reads it: first the scheduled job's
/// part (every closed hour rolled up, `infra/athena/rollup_job.sql`), then the
/// dashboard queries over `events_dashboard` (rollups for closed hours, the
/// deduplicated view for open ones), paired with the run's counts.
pub async fn dashboard_data(
    lake_dir: &Path,
    summary: &RunSummary,
    generated_at: String,
) -> Result<Dashboard, DashboardError> {
    let rollup = roll_up_closed(lake_dir, SystemClock.now_ms()).await?;
    let lake = Lake::open(lake_dir).await?;
    let started = Instant::now();
    let queried_at_ms = SystemClock.now_ms();
    let rows = dashboard_rows(&lake).await?;
    let query_ms = started.elapsed().as_millis() as u64;

    let st = &summary.stats;
    let rolled: u64 = rollup.hours.iter().map(|h| h.rows).sum();
    Ok(Dashboard {
        title: "Sightline — local demo".into(),
        generated_at,
        source_note: format!(
            "lake/events (Parquet) through events_dashboard: {} closed hours rolled up into events_hourly ({} rows, {:.2} s), open hours live from events_dedup; DataFusion, the same SQL as infra/athena; rates from run {}",
            rollup.hours.len(),
            thousands(rolled),
            rollup.elapsed.as_secs_f64(),
            summary.run_id
        ),
        freshness: Freshness {
            sources: rows.freshness,
            queried_at_ms,
            query_ms,
        },
        hourly: rows.hourly,
        top_items: rows.top_items,
        top_locations: rows.top_locations,
        doubles_removed: rows.doubles_removed,
        rates: Rates {
            received: summary.lines,
            delivered: st.delivered,
            duplicates: st.duplicates,
            quarantined: st.quarantined,
            quarantined_by_reason: st
                .quarantine_reasons
                .iter()
                .map(|(k, v)| ((*k).to_string(), *v))
                .collect(),
            unknown_locations: st.unknown_location,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
