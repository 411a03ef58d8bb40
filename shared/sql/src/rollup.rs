//! The hourly rollup job over the local lake: what the scheduled state machine does in
//! AWS (docs/rollups.md), with the same SQL and the same rules.
//!
//! - **Closed hours.** Hour `H` is closed from `H + 1 h + LATENESS_MINUTES` on: the
//!   schedule fires at minute 25 of every hour and rolls up the hour that ended 25
//!   minutes before. The dashboard view reads an hour from the rollups from
//!   `H + 1 h + DASHBOARD_SWITCH_MINUTES` on (`infra/athena/dashboard_view.sql`).
//! - **Rewriting an hour replaces it.** Under a lock, the hour's folder
//!   `rollups/events_hourly/event_date=D/event_hour=H/` is deleted, then
//!   `infra/athena/rollup_job.sql` (an `INSERT INTO`) runs with the hour bound to its
//!   two `?`. The same two steps as the state machine's `DeleteObjects` and Athena
//!   `StartQueryExecution`; a rerun never doubles a count.
//! - **The lock** is `rollups/_lock` (created exclusively; one writer per lake). A
//!   lock older than [`LOCK_EXPIRY`] is taken over, as the AWS lock item expires.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime};

use sightline_core::time::{MS_PER_HOUR, UtcHour, civil_from_days};

use crate::query::{DashboardPath, Lake, QueryError, ROLLUP_DIR, ROLLUP_JOB_SQL, Rows};
use crate::trino::{BindError, bind_execution_parameters, days_from_civil};

/// Minutes after an hour ends before the job rolls it up: Firehose's buffer (at most
/// 1.5 x 900 s = 22.5 min with dynamic partitioning) plus an allowance for late events.
/// The schedule's minute, `cron(25 * * * ? *)`, in both definitions.
pub const LATENESS_MINUTES: i64 = 25;

/// Minutes after an hour ends before the dashboard view reads it from the rollups
/// instead of live: `INTERVAL '45' MINUTE` in `dashboard_view.sql`. The 20 minutes
/// after [`LATENESS_MINUTES`] are the job's own time (about a minute) with room.
pub const DASHBOARD_SWITCH_MINUTES: i64 = 45;

/// Each scheduled run also rewrites the hour that closed this many hours earlier, for
/// events that arrive late (a Lambda batch retried for up to the event source's
/// maximum record age, 6 hours by default).
pub const RECHECK_HOURS: i64 = 6;

/// A local lock older than this is taken over (the AWS lock item's expiry).
pub const LOCK_EXPIRY: Duration = Duration::from_secs(30 * 60);

const MS_PER_MINUTE: i64 = 60_000;

/// One UTC hour: hours since 1970-01-01T00.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HourUtc(pub i64);

impl HourUtc {
    /// The hour `ms` (epoch milliseconds) falls in.
    pub fn containing(ms: i64) -> HourUtc {
        HourUtc(ms.div_euclid(MS_PER_HOUR))
    }

    pub fn start_ms(self) -> i64 {
        self.0 * MS_PER_HOUR
    }

    /// `YYYY-MM-DD`, the `event_date` partition value.
    pub fn event_date(self) -> String {
        UtcHour::from_epoch_ms(self.start_ms()).date_string()
    }

    /// `HH`, the `event_hour` partition value.
    pub fn event_hour(self) -> String {
        UtcHour::from_epoch_ms(self.start_ms()).hour_string()
    }

    /// When the job may roll this hour up: its end plus [`LATENESS_MINUTES`].
    pub fn closes_at_ms(self) -> i64 {
        (self.0 + 1) * MS_PER_HOUR + LATENESS_MINUTES * MS_PER_MINUTE
    }

    pub fn is_closed(self, now_ms: i64) -> bool {
        self.closes_at_ms() <= now_ms
    }

    /// The hour's folder under a table's root (`event_date=D/event_hour=H`).
    pub fn partition_path(self) -> PathBuf {
        Path::new(&format!("event_date={}", self.event_date()))
            .join(format!("event_hour={}", self.event_hour()))
    }

    fn from_partition_values(date: &str, hour: &str) -> Option<HourUtc> {
        format!("{date}T{hour}").parse().ok()
    }
}

/// `2026-11-24T07`, the form `sightline rollup --from/--to` takes.
impl fmt::Display for HourUtc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}T{}", self.event_date(), self.event_hour())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not an hour: write YYYY-MM-DDTHH (UTC), e.g. 2026-11-24T07")]
pub struct BadHour {
    pub text: String,
}

impl FromStr for HourUtc {
    type Err = BadHour;

    fn from_str(text: &str) -> Result<HourUtc, BadHour> {
        let bad = || BadHour {
            text: text.to_string(),
        };
        let b = text.as_bytes();
        if b.len() != 13 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b' ') {
            return Err(bad());
        }
        let num = |range: std::ops::Range<usize>| -> Result<i64, BadHour> {
            let part = text.get(range).ok_or_else(bad)?;
            if !part.bytes().all(|c| c.is_ascii_digit()) {
                return Err(bad());
            }
            part.parse().map_err(|_| bad())
        };
        let (y, m, d, h) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?);
        if !(1..=12).contains(&m) || !(0..24).contains(&h) {
            return Err(bad());
        }
        let days = days_from_civil(y, m, d);
        // Refuses 2026-02-30 and the like: the day must survive the round trip.
        let (ry, rm, rd) = civil_from_days(days);
        if (i64::from(ry), i64::from(rm), i64::from(rd)) != (y, m, d) {
            return Err(bad());
        }
        Ok(HourUtc(days * 24 + h))
    }
}

/// The latest hour closed at `now_ms`.
pub fn last_closed_hour(now_ms: i64) -> HourUtc {
    HourUtc((now_ms - LATENESS_MINUTES * MS_PER_MINUTE).div_euclid(MS_PER_HOUR) - 1)
}

/// The hours one scheduled run at `scheduled_ms` rewrites: the hour that just closed,
/// and the one that closed [`RECHECK_HOURS`] before it (the state machine's plan).
pub fn scheduled_hours(scheduled_ms: i64) -> [HourUtc; 2] {
    let closed = last_closed_hour(scheduled_ms);
    [closed, HourUtc(closed.0 - RECHECK_HOURS)]
}

#[derive(Debug, thiserror::Error)]
pub enum RollupError {
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "another rollup holds the lock {path} (since {age_secs} s ago); wait for it, or remove the file if no `sightline rollup` or demo is running"
    )]
    Locked { path: String, age_secs: u64 },
    #[error("rolling up {hour}")]
    Query {
        hour: String,
        #[source]
        source: QueryError,
    },
    #[error(transparent)]
    Open(#[from] QueryError),
    #[error("binding the rollup job's parameters")]
    Bind(#[from] BindError),
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RollupError {
    let path = path.display().to_string();
    move |source| RollupError::Io {
        action,
        path,
        source,
    }
}

/// Hours that have a partition folder under `table_root` (`event_date=.../event_hour=...`).
pub fn partition_hours(table_root: &Path) -> Result<Vec<HourUtc>, RollupError> {
    let mut hours = Vec::new();
    let Ok(dates) = std::fs::read_dir(table_root) else {
        return Ok(hours);
    };
    for date in dates {
        let date = date.map_err(io("listing", table_root))?;
        let name = date.file_name();
        let Some(d) = name.to_str().and_then(|n| n.strip_prefix("event_date=")) else {
            continue;
        };
        let date_dir = date.path();
        for hour in std::fs::read_dir(&date_dir).map_err(io("listing", &date_dir))? {
            let hour = hour.map_err(io("listing", &date_dir))?;
            let name = hour.file_name();
            let Some(h) = name.to_str().and_then(|n| n.strip_prefix("event_hour=")) else {
                continue;
            };
            if let Some(hour) = HourUtc::from_partition_values(d, h) {
                hours.push(hour);
            }
        }
    }
    hours.sort_unstable();
    hours.dedup();
    Ok(hours)
}

/// The hours a rollup over `lake_dir` should (re)write: every hour with raw events or
/// an existing rollup (an hour with neither has nothing to write or delete), within
/// `range` (inclusive) if given, closed at `now_ms`.
/// Returns them with the count of hours skipped because they are still open.
pub fn hours_to_roll_up(
    lake_dir: &Path,
    range: Option<(HourUtc, HourUtc)>,
    now_ms: i64,
) -> Result<(Vec<HourUtc>, usize), RollupError> {
    let mut hours = partition_hours(&lake_dir.join("events"))?;
    hours.extend(partition_hours(&lake_dir.join(ROLLUP_DIR))?);
    if let Some((from, to)) = range {
        hours.retain(|h| (from..=to).contains(h));
    }
    hours.sort_unstable();
    hours.dedup();
    let before = hours.len();
    hours.retain(|h| h.is_closed(now_ms));
    let skipped_open = before - hours.len();
    Ok((hours, skipped_open))
}

/// One hour rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourRollup {
    pub hour: HourUtc,
    /// Rollup rows written (location x item groups).
    pub rows: u64,
    /// Parquet files of the previous rollup that were deleted first.
    pub replaced_files: usize,
}

#[derive(Debug, Clone, Default)]
pub struct RollupReport {
    pub hours: Vec<HourRollup>,
    pub skipped_open: usize,
    pub elapsed: Duration,
}

/// The local stand-in for the AWS lock item: an exclusively created file.
struct RollupLock {
    path: PathBuf,
}

impl RollupLock {
    fn take(rollups: &Path) -> Result<RollupLock, RollupError> {
        std::fs::create_dir_all(rollups).map_err(io("creating", rollups))?;
        let path = rollups.parent().unwrap_or(rollups).join("_lock");
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(_) => return Ok(RollupLock { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let age = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| SystemTime::now().duration_since(t).ok())
                        .unwrap_or_default();
                    if age < LOCK_EXPIRY {
                        return Err(RollupError::Locked {
                            path: path.display().to_string(),
                            age_secs: age.as_secs(),
                        });
                    }
                    // Expired: its holder died. Take it over.
                    std::fs::remove_file(&path).map_err(io("removing the expired lock", &path))?;
                }
                Err(e) => return Err(io("creating the lock", &path)(e)),
            }
        }
        Err(RollupError::Locked {
            path: path.display().to_string(),
            age_secs: 0,
        })
    }
}

impl Drop for RollupLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Rewrites each of `hours` (deletes its rollup folder, then runs the rollup job),
/// one at a time, under the lake's rollup lock.
pub async fn roll_up(lake_dir: &Path, hours: &[HourUtc]) -> Result<RollupReport, RollupError> {
    let started = Instant::now();
    let rollups = lake_dir.join(ROLLUP_DIR);
    let _lock = RollupLock::take(&rollups)?;
    let lake = Lake::open_with(lake_dir, DashboardPath::Rollups).await?;
    let mut report = RollupReport::default();
    for &hour in hours {
        report
            .hours
            .push(roll_up_hour(&lake, &rollups, hour).await?);
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Rolls up every closed hour of the lake (what the schedule has done by `now_ms`).
pub async fn roll_up_closed(lake_dir: &Path, now_ms: i64) -> Result<RollupReport, RollupError> {
    let (hours, skipped_open) = hours_to_roll_up(lake_dir, None, now_ms)?;
    let mut report = roll_up(lake_dir, &hours).await?;
    report.skipped_open = skipped_open;
    Ok(report)
}

async fn roll_up_hour(
    lake: &Lake,
    rollups: &Path,
    hour: HourUtc,
) -> Result<HourRollup, RollupError> {
    let folder = rollups.join(hour.partition_path());
    let replaced_files = match std::fs::read_dir(&folder) {
        Ok(entries) => entries.count(),
        Err(_) => 0,
    };
    if folder.exists() {
        std::fs::remove_dir_all(&folder).map_err(io("deleting the previous rollup", &folder))?;
    }
    let date = format!("'{}'", hour.event_date());
    let hh = format!("'{}'", hour.event_hour());
    let sql = bind_execution_parameters(ROLLUP_JOB_SQL, &[&date, &hh])?;
    let query = |source| RollupError::Query {
        hour: hour.to_string(),
        source,
    };
    let batches = lake.sql(&sql).await.map_err(query)?;
    let rows = Rows::new(&batches)
        .ints("count")
        .map_err(query)?
        .into_iter()
        .sum::<i64>();
    Ok(HourRollup {
        hour,
        rows: u64::try_from(rows).unwrap_or_default(),
        replaced_files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hour_prints_and_parses_as_its_partition_values() {
        let hour: HourUtc = "2026-11-24T07".parse().expect("parses");
        assert_eq!(hour.event_date(), "2026-11-24");
        assert_eq!(hour.event_hour(), "07");
        assert_eq!(hour.to_string(), "2026-11-24T07");
        assert_eq!("2026-11-24 07".parse::<HourUtc>(), Ok(hour));
        assert_eq!(HourUtc::containing(hour.start_ms() + 3_599_999), hour);
        assert_eq!(
            hour.partition_path(),
            Path::new("event_date=2026-11-24").join("event_hour=07")
        );
        for bad in [
            "2026-11-24",
            "2026-11-24T24",
            "2026-02-30T01",
            "2026-1-24T07x",
            "x",
        ] {
            assert!(bad.parse::<HourUtc>().is_err(), "{bad}");
        }
    }

    #[test]
    fn an_hour_closes_lateness_minutes_after_it_ends() {
        let hour: HourUtc = "2026-11-24T07".parse().expect("parses");
        let end = hour.start_ms() + MS_PER_HOUR;
        assert!(!hour.is_closed(end + LATENESS_MINUTES * MS_PER_MINUTE - 1));
        assert!(hour.is_closed(end + LATENESS_MINUTES * MS_PER_MINUTE));
        assert_eq!(
            last_closed_hour(end + LATENESS_MINUTES * MS_PER_MINUTE),
            hour
        );
        assert_eq!(
            last_closed_hour(end + LATENESS_MINUTES * MS_PER_MINUTE - 1),
            HourUtc(hour.0 - 1)
        );
    }

    #[test]
    fn a_scheduled_run_rolls_up_the_hour_that_just_closed_and_rechecks_an_older_one() {
        // The schedule fires at 08:25: 07 has just closed; 01 is re-checked.
        let at: HourUtc = "2026-11-24T08".parse().expect("parses");
        let [closed, recheck] = scheduled_hours(at.start_ms() + 25 * MS_PER_MINUTE);
        assert_eq!(closed.to_string(), "2026-11-24T07");
        assert_eq!(recheck.to_string(), "2026-11-24T01");
    }

    #[test]
    fn the_dashboard_switches_to_rollups_after_the_job_has_run() {
        let switch_sql = format!("INTERVAL '{DASHBOARD_SWITCH_MINUTES}' MINUTE");
        assert_eq!(
            crate::query::DASHBOARD_VIEW_SQL
                .matches(&switch_sql)
                .count(),
            3,
            "dashboard_view.sql's boundary must be {switch_sql} on both sides"
        );
        const { assert!(DASHBOARD_SWITCH_MINUTES >= LATENESS_MINUTES + 15) };
    }
}
