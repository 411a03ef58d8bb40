//! The scan figures of `docs/rollups.md`: what each dashboard query scans in Athena at a
//! given event rate, over 1, 7 and 30 days, before the rollups (the query over
//! `events_dedup`) and after (over `events_dashboard`), from the Parquet bytes per row
//! of a local lake (`sightline_local::scan::column_bytes`).
//!
//! The model, per query:
//! - Athena reads only the columns a query references (partition columns are free),
//!   in the partitions it does not prune. Through `events_dedup`, that is always the
//!   window's `detection_oid`, `ingested_at`, `source_sequence` plus the query's own.
//! - Before: `days x 24 x events/hour x` raw bytes per event of those columns.
//! - After: the closed hours from `events_hourly` (rollup rows per hour x rollup bytes
//!   per row of the columns the query reads), plus the open hours live. The open hours
//!   are at most 1.75 (the previous hour until 45 minutes past, plus the current one);
//!   live, the view reads the window columns and its grouping keys from `events_dedup`,
//!   and the grouping keys again from `events` (for `lake_rows`).
//! - Cost: USD 5 per TB (10^12 bytes) scanned, at least 10 MB per query.

use std::fmt::Write as _;

use sightline_local::scan::ColumnBytes;

/// Columns the dedup view's window reads for any query through it.
pub const WINDOW: [&str; 3] = ["detection_oid", "ingested_at", "source_sequence"];
/// The live view's grouping keys (read from both `events_dedup` and `events`).
pub const KEYS: [&str; 3] = [
    "geographical_location_oid",
    "geographical_location",
    "item_name",
];

/// The worst-case open hours the dashboard view reads live (at 44 minutes past).
pub const OPEN_HOURS_WORST: f64 = 1.75;
/// On average over an hour: half the current hour, the previous one for 45 minutes.
pub const OPEN_HOURS_AVERAGE: f64 = 1.25;

pub const USD_PER_TB: f64 = 5.0;
pub const MIN_BYTES_PER_QUERY: f64 = 10.0e6;

/// The columns one dashboard query reads on each path.
#[derive(Debug, Clone, Copy)]
pub struct QueryColumns {
    pub name: &'static str,
    /// Raw columns besides the window, through `events_dedup` (before).
    pub before: &'static [&'static str],
    /// Rollup columns, from `events_hourly` (after, closed hours).
    pub rollup: &'static [&'static str],
    /// Raw columns besides the window and the grouping keys (after, open hours).
    pub live_extra: &'static [&'static str],
}

pub const QUERIES: [QueryColumns; 5] = [
    QueryColumns {
        name: "detections_per_location_hourly",
        before: &["geographical_location"],
        rollup: &["geographical_location", "detections"],
        live_extra: &[],
    },
    QueryColumns {
        name: "top_items_per_location",
        before: &["geographical_location", "item_name"],
        rollup: &["geographical_location", "item_name", "detections"],
        live_extra: &[],
    },
    QueryColumns {
        name: "top_locations",
        before: &["geographical_location", "video_camera_oid"],
        rollup: &["geographical_location", "detections", "camera_ids"],
        live_extra: &["video_camera_oid"],
    },
    QueryColumns {
        name: "doubles_removed_by_view",
        // count(*) over events reads no column; the view's count reads the window.
        before: &[],
        rollup: &["lake_rows", "detections"],
        live_extra: &[],
    },
    QueryColumns {
        name: "freshness",
        // Before the rollups, the same figure is max(timestamp_detected) of events_dedup.
        before: &["timestamp_detected"],
        rollup: &["last_detected_ms"],
        live_extra: &["timestamp_detected"],
    },
];

/// The measured lake.
#[derive(Debug, Clone)]
pub struct Measured {
    pub raw: ColumnBytes,
    pub rollup: ColumnBytes,
    /// Rollup rows per closed hour at full rate (every location x item present).
    pub rollup_rows_per_hour: f64,
}

fn with(base: &[&'static str], extra: &[&'static str]) -> Vec<&'static str> {
    let mut all = base.to_vec();
    all.extend_from_slice(extra);
    all
}

impl Measured {
    pub fn before_bytes(&self, q: &QueryColumns, events_per_hour: f64, hours: f64) -> f64 {
        hours * events_per_hour * self.raw.per_row(&with(&WINDOW, q.before))
    }

    /// Raw bytes per event the live side reads (both branches).
    pub fn live_bytes_per_event(&self, q: &QueryColumns) -> f64 {
        let dedup = with(&with(&WINDOW, &KEYS), q.live_extra);
        self.raw.per_row(&dedup) + self.raw.per_row(&KEYS)
    }

    pub fn after_bytes(
        &self,
        q: &QueryColumns,
        events_per_hour: f64,
        hours: f64,
        open_hours: f64,
    ) -> f64 {
        let closed = (hours - open_hours).max(0.0);
        closed * self.rollup_rows_per_hour * self.rollup.per_row(q.rollup)
            + open_hours.min(hours) * events_per_hour * self.live_bytes_per_event(q)
    }

    /// One run of the rollup job: one hour through `events_hourly_live`, every column
    /// the job writes.
    pub fn job_bytes(&self, events_per_hour: f64) -> f64 {
        let dedup = with(
            &with(&WINDOW, &KEYS),
            &["video_camera_oid", "timestamp_detected"],
        );
        events_per_hour * (self.raw.per_row(&dedup) + self.raw.per_row(&KEYS))
    }
}

pub fn cost_usd(bytes: f64) -> f64 {
    bytes.max(MIN_BYTES_PER_QUERY) / 1e12 * USD_PER_TB
}

/// `1234567890` -> `1.23 GB` (decimal units, as Athena reports).
pub fn human_bytes(bytes: f64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < units.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} B")
    } else {
        format!("{value:.2} {}", units[unit])
    }
}

fn usd(value: f64) -> String {
    if value < 0.01 {
        format!("{value:.5}")
    } else {
        format!("{value:.2}")
    }
}

/// The markdown the docs carry: inputs, the per-query table, the job, the limit.
pub fn report(m: &Measured, events_per_sec: f64) -> String {
    let per_hour = events_per_sec * 3600.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Measured: {} raw events in {} files ({:.1} B per event, whole files); {} rollup rows in {} files ({:.1} B per row); {:.0} rollup rows per closed hour.\n",
        m.raw.rows,
        m.raw.files,
        m.raw.file_bytes_per_row(),
        m.rollup.rows,
        m.rollup.files,
        m.rollup.file_bytes_per_row(),
        m.rollup_rows_per_hour,
    );
    let _ = writeln!(out, "Raw bytes per event, by column (compressed chunks):\n");
    let _ = writeln!(out, "| column | B/event |\n|---|---:|");
    for (column, bytes) in &m.raw.bytes {
        let _ = writeln!(
            out,
            "| `{column}` | {:.2} |",
            *bytes as f64 / m.raw.rows.max(1) as f64
        );
    }
    let _ = writeln!(out, "\nRollup bytes per row, by column:\n");
    let _ = writeln!(out, "| column | B/row |\n|---|---:|");
    for (column, bytes) in &m.rollup.bytes {
        let _ = writeln!(
            out,
            "| `{column}` | {:.2} |",
            *bytes as f64 / m.rollup.rows.max(1) as f64
        );
    }
    let _ = writeln!(
        out,
        "\nAt {events_per_sec:.0} events/s ({:.0} M a day), worst case {OPEN_HOURS_WORST} open hours (before: `events_dedup`; after: `events_dashboard`):\n",
        per_hour * 24.0 / 1e6
    );
    let _ = writeln!(
        out,
        "| query | window | before: scanned | before: USD | after: scanned | after: USD | factor |\n|---|---|---:|---:|---:|---:|---:|"
    );
    let mut largest_after: f64 = 0.0;
    for q in &QUERIES {
        for days in [1.0, 7.0, 30.0] {
            let hours = days * 24.0;
            let before = m.before_bytes(q, per_hour, hours);
            let after = m.after_bytes(q, per_hour, hours, OPEN_HOURS_WORST);
            largest_after = largest_after.max(after);
            let _ = writeln!(
                out,
                "| `{}` | {days:.0} d | {} | {} | {} | {} | {:.0}x |",
                q.name,
                human_bytes(before),
                usd(cost_usd(before)),
                human_bytes(after),
                usd(cost_usd(after)),
                before / after.max(1.0)
            );
        }
    }
    let job = m.job_bytes(per_hour);
    let _ = writeln!(
        out,
        "\nThe rollup job, per hour rewritten: {} ({} USD); two hours an hour (the closed one and the re-check): {} USD a day.",
        human_bytes(job),
        usd(cost_usd(job)),
        usd(cost_usd(job) * 48.0)
    );
    let needed = largest_after.max(job);
    let _ = writeln!(
        out,
        "Largest single query: {} (the rollup job or a 30-day dashboard query at the worst minute). A whole day of raw events, every column: {}.",
        human_bytes(needed),
        human_bytes(per_hour * 24.0 * m.raw.file_bytes_per_row())
    );
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn bytes(rows: u64, columns: &[(&str, u64)]) -> ColumnBytes {
        ColumnBytes {
            files: 1,
            rows,
            bytes: columns
                .iter()
                .map(|(c, b)| ((*c).to_string(), *b))
                .collect::<BTreeMap<_, _>>(),
            file_bytes: columns.iter().map(|(_, b)| b).sum(),
        }
    }

    fn measured() -> Measured {
        Measured {
            raw: bytes(
                100,
                &[
                    ("detection_oid", 800),
                    ("ingested_at", 400),
                    ("source_sequence", 1000),
                    ("geographical_location_oid", 10),
                    ("geographical_location", 20),
                    ("item_name", 30),
                    ("video_camera_oid", 100),
                    ("timestamp_detected", 500),
                ],
            ),
            rollup: bytes(10, &[("geographical_location", 20), ("detections", 30)]),
            rollup_rows_per_hour: 6000.0,
        }
    }

    #[test]
    fn before_reads_the_window_and_the_querys_columns_for_every_hour() {
        let m = measured();
        let hourly = &QUERIES[0];
        // (800 + 400 + 1000 + 20) / 100 = 22.2 B per event.
        assert!((m.before_bytes(hourly, 1000.0, 24.0) - 24.0 * 1000.0 * 22.2).abs() < 1e-6);
    }

    #[test]
    fn after_reads_rollups_for_closed_hours_and_raw_only_for_open_ones() {
        let m = measured();
        let hourly = &QUERIES[0];
        // Rollups: 5 B per row; live: window + keys (22.6) + keys again (0.6).
        let want = (24.0 - 1.75) * 6000.0 * 5.0 + 1.75 * 1000.0 * 23.2;
        assert!((m.after_bytes(hourly, 1000.0, 24.0, 1.75) - want).abs() < 1e-6);
        // A window shorter than the open hours is all live.
        assert!(
            (m.after_bytes(hourly, 1000.0, 1.0, 1.75) - 1000.0 * 23.2).abs() < 1e-6,
            "one hour"
        );
    }

    #[test]
    fn cost_is_five_dollars_a_terabyte_with_athenas_ten_megabyte_minimum() {
        assert!((cost_usd(1e12) - 5.0).abs() < 1e-9);
        assert!((cost_usd(1.0) - cost_usd(10e6)).abs() < 1e-12);
        assert_eq!(human_bytes(1_234_567_890.0), "1.23 GB");
        assert_eq!(human_bytes(999.0), "999 B");
    }
}
