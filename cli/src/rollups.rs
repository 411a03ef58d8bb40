//! `sightline rollup`: rebuild the hourly rollups for a range of hours (a backfill,
//! e.g. after `sightline replay` put old events back), over the local lake or in AWS;
//! and the scan figures of `docs/rollups.md`.
//!
//! - `--lake DIR`: every closed hour in the range is rewritten by the rollup job's own
//!   SQL (`sightline_sql::rollup`): delete the hour's folder, `INSERT INTO`.
//! - `--state-machine ARN`: one execution of the rollup state machine per hour, in
//!   order, each awaited before the next (`StartExecution`, `DescribeExecution` with
//!   aws-sdk-sfn). The state machine takes the hour's lock, deletes its objects and
//!   runs the same `INSERT INTO` in Athena, exactly as the hourly schedule does, so a
//!   backfill and the schedule never write one hour at once. The first hour that fails
//!   stops the backfill; rerun with `--from` that hour.
//! - `--lake DIR --scan-figures`: the bytes each dashboard query would scan in Athena,
//!   before and after the rollups ([`crate::scan_figures`]).
//!
//! Only closed hours are rebuilt (hour H closes 25 minutes after it ends; until then
//! the dashboard reads it live and the schedule writes it at H + 1 h + 25 min).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_sdk_sfn::error::SdkError;
use aws_sdk_sfn::operation::describe_execution::DescribeExecutionError;
use aws_sdk_sfn::operation::start_execution::StartExecutionError;
use aws_sdk_sfn::types::ExecutionStatus;
use sightline_aws::ClientSettings;
use sightline_core::{Clock, SystemClock};
use sightline_local::scan::{ScanError, column_bytes};
use sightline_sql::Lake;
use sightline_sql::query::{QueryError, ROLLUP_DIR, Rows};
use sightline_sql::rollup::{
    HourUtc, LATENESS_MINUTES, RollupError, hours_to_roll_up, last_closed_hour, roll_up,
};

use crate::report::thousands;
use crate::scan_figures::{Measured, report};

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["lake", "state_machine"])))]
pub struct RollupArgs {
    /// Rebuild the rollups of this local lake (the folder `sightline demo`/`run` wrote).
    #[arg(long)]
    pub lake: Option<PathBuf>,
    /// Rebuild in AWS: the rollup state machine's ARN (the stack's
    /// `RollupStateMachineArn` output); one execution per hour, in order, each awaited.
    #[arg(long)]
    pub state_machine: Option<String>,
    /// First hour to rebuild, UTC, `YYYY-MM-DDTHH` (locally: default the lake's first).
    #[arg(long)]
    pub from: Option<HourUtc>,
    /// Last hour to rebuild, inclusive (default: the last closed hour).
    #[arg(long)]
    pub to: Option<HourUtc>,
    /// List the hours (and the executions' input) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the scan figures (docs/rollups.md) from this lake's Parquet files instead.
    #[arg(long, requires = "lake")]
    pub scan_figures: bool,
    /// The event rate the scan figures are scaled to.
    #[arg(long, default_value_t = 10_000.0)]
    pub rate: f64,
    /// Seconds between `DescribeExecution` calls while an hour is being rebuilt.
    #[arg(long, default_value_t = 10)]
    pub poll_secs: u64,
    #[arg(long)]
    pub endpoint_url: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RollupCliError {
    #[error(transparent)]
    Local(#[from] RollupError),
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Backfill(#[from] Box<BackfillError>),
    #[error("--state-machine needs --from and --to: the hours to rebuild, UTC, YYYY-MM-DDTHH")]
    NeedRange,
    #[error("--from {from} is after --to {to}")]
    EmptyRange { from: HourUtc, to: HourUtc },
    #[error(
        "{0} has no rollups to measure: run `sightline demo` or `sightline rollup --lake {0}` first"
    )]
    NoRollups(String),
}

/// Why a backfill in AWS stopped.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("starting the rollup of {hour}")]
    Start {
        hour: HourUtc,
        #[source]
        source: SdkError<StartExecutionError>,
    },
    #[error("reading the state of execution {arn}")]
    Describe {
        arn: String,
        #[source]
        source: SdkError<DescribeExecutionError>,
    },
    #[error(
        "the rollup of {hour} ended {status}: {error}: {cause} (execution {arn}); fix it, then rerun with --from {hour}"
    )]
    Failed {
        hour: HourUtc,
        arn: String,
        status: String,
        error: String,
        cause: String,
    },
}

/// Runs the subcommand.
pub async fn run(args: RollupArgs) -> Result<(), RollupCliError> {
    let now = SystemClock.now_ms();
    if let (Some(from), Some(to)) = (args.from, args.to)
        && from > to
    {
        return Err(RollupCliError::EmptyRange { from, to });
    }
    match (&args.lake, &args.state_machine) {
        (Some(lake), _) if args.scan_figures => scan(lake, args.rate).await,
        (Some(lake), _) => local(lake, &args, now).await,
        (None, Some(arn)) => aws(arn, &args, now).await,
        // clap requires one of them.
        (None, None) => Ok(()),
    }
}

async fn local(lake: &Path, args: &RollupArgs, now: i64) -> Result<(), RollupCliError> {
    let range = match (args.from, args.to) {
        (None, None) => None,
        (from, to) => Some((
            from.unwrap_or(HourUtc(i64::MIN / 2)),
            to.unwrap_or_else(|| last_closed_hour(now)),
        )),
    };
    let (hours, skipped_open) = hours_to_roll_up(lake, range, now)?;
    if args.dry_run {
        println!(
            "would rewrite {} closed hour(s) of {}:",
            hours.len(),
            lake.display()
        );
        for hour in &hours {
            println!("  {hour}");
        }
    } else {
        let report = roll_up(lake, &hours).await?;
        println!(
            "rewrote {} closed hour(s) of {} in {:.2} s (deleted each hour's folder under {ROLLUP_DIR}/, then ran infra/athena/rollup_job.sql):",
            report.hours.len(),
            lake.display(),
            report.elapsed.as_secs_f64()
        );
        for h in &report.hours {
            println!(
                "  {}  {:>9} rows{}",
                h.hour,
                thousands(h.rows),
                if h.replaced_files > 0 {
                    format!("  (replaced {} file(s))", h.replaced_files)
                } else {
                    String::new()
                }
            );
        }
    }
    if skipped_open > 0 {
        println!(
            "{skipped_open} hour(s) not closed yet were left to the live view (an hour closes {LATENESS_MINUTES} minutes after it ends)"
        );
    }
    Ok(())
}

async fn scan(lake: &Path, rate: f64) -> Result<(), RollupCliError> {
    let raw = column_bytes(&lake.join("events"))?;
    let rollup = column_bytes(&lake.join(ROLLUP_DIR))?;
    if rollup.rows == 0 {
        return Err(RollupCliError::NoRollups(lake.display().to_string()));
    }
    // Rows per closed hour at full rate: the busiest rolled-up hour, where every
    // location x item group is present (at 10,000 events/s every hour is).
    let session = Lake::open(lake).await?;
    let batches = session
        .sql("SELECT count(*) AS n FROM events_hourly GROUP BY event_date, event_hour ORDER BY n DESC LIMIT 1")
        .await?;
    let busiest = Rows::new(&batches).ints("n")?.first().copied().unwrap_or(0);
    let measured = Measured {
        raw,
        rollup,
        rollup_rows_per_hour: busiest as f64,
    };
    print!("{}", report(&measured, rate));
    Ok(())
}

/// The rollup state machine, driven through aws-sdk-sfn.
pub struct StateMachine {
    client: aws_sdk_sfn::Client,
    arn: String,
    poll: Duration,
}

/// One hour rebuilt in AWS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebuilt {
    pub hour: HourUtc,
    pub execution_arn: String,
    pub took: Duration,
}

impl StateMachine {
    pub fn new(client: aws_sdk_sfn::Client, arn: &str, poll: Duration) -> Self {
        StateMachine {
            client,
            arn: arn.to_string(),
            poll,
        }
    }

    /// The execution input: the hour to rewrite (the schedule passes its scheduled
    /// time instead, and the state machine derives the hours from it).
    pub fn input(hour: HourUtc) -> String {
        serde_json::json!({
            "hours": [{"event_date": hour.event_date(), "event_hour": hour.event_hour()}]
        })
        .to_string()
    }

    /// `backfill-2026-11-24T07-<epoch ms>`: names the hour in the console's list, and is
    /// unique (Step Functions keeps execution names 90 days).
    pub fn execution_name(hour: HourUtc, now_ms: i64) -> String {
        format!("backfill-{hour}-{now_ms}")
    }

    /// Starts the execution for `hour` and waits for it to end.
    pub async fn rebuild(&self, hour: HourUtc) -> Result<Rebuilt, BackfillError> {
        let started = Instant::now();
        let start = self
            .client
            .start_execution()
            .state_machine_arn(&self.arn)
            .name(Self::execution_name(hour, SystemClock.now_ms()))
            .input(Self::input(hour))
            .send()
            .await
            .map_err(|source| BackfillError::Start { hour, source })?;
        let arn = start.execution_arn().to_string();
        loop {
            let state = self
                .client
                .describe_execution()
                .execution_arn(&arn)
                .send()
                .await
                .map_err(|source| BackfillError::Describe {
                    arn: arn.clone(),
                    source,
                })?;
            match state.status() {
                ExecutionStatus::Running | ExecutionStatus::PendingRedrive => {
                    tokio::time::sleep(self.poll).await;
                }
                ExecutionStatus::Succeeded => {
                    return Ok(Rebuilt {
                        hour,
                        execution_arn: arn,
                        took: started.elapsed(),
                    });
                }
                other => {
                    return Err(BackfillError::Failed {
                        hour,
                        arn,
                        status: other.as_str().to_string(),
                        error: state.error().unwrap_or("-").to_string(),
                        cause: state.cause().unwrap_or("-").to_string(),
                    });
                }
            }
        }
    }
}

/// The closed hours of `from..=to` at `now_ms`, and how many were left out as open.
pub fn closed_hours(from: HourUtc, to: HourUtc, now_ms: i64) -> (Vec<HourUtc>, usize) {
    let all: Vec<HourUtc> = (from.0..=to.0).map(HourUtc).collect();
    let total = all.len();
    let closed: Vec<HourUtc> = all.into_iter().filter(|h| h.is_closed(now_ms)).collect();
    let open = total - closed.len();
    (closed, open)
}

async fn aws(arn: &str, args: &RollupArgs, now: i64) -> Result<(), RollupCliError> {
    let (Some(from), Some(to)) = (args.from, args.to) else {
        return Err(RollupCliError::NeedRange);
    };
    let (hours, open) = closed_hours(from, to, now);
    if open > 0 {
        println!(
            "{open} hour(s) of the range are not closed yet and are left to the schedule (an hour closes {LATENESS_MINUTES} minutes after it ends)"
        );
    }
    if args.dry_run {
        println!(
            "would start {} execution(s) of {arn}, one at a time:",
            hours.len()
        );
        for hour in &hours {
            println!("  {hour}  input {}", StateMachine::input(*hour));
        }
        return Ok(());
    }
    let loader = sightline_aws::clients::config_loader(ClientSettings::default())
        // A backfill waits minutes per hour; let the SDK retry throttled polls itself.
        .retry_config(RetryConfig::standard().with_max_attempts(5));
    let sdk = crate::sdk_config(loader, args.endpoint_url.as_deref()).await;
    let machine = StateMachine::new(
        aws_sdk_sfn::Client::new(&sdk),
        arn,
        Duration::from_secs(args.poll_secs.max(1)),
    );
    let started = Instant::now();
    for (i, hour) in hours.iter().enumerate() {
        let done = machine.rebuild(*hour).await.map_err(Box::new)?;
        println!(
            "[{}/{}] {}  rebuilt in {:.0} s  ({})",
            i + 1,
            hours.len(),
            done.hour,
            done.took.as_secs_f64(),
            done.execution_arn
        );
    }
    println!(
        "rebuilt {} hour(s) in {:.0} s",
        hours.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_execution_input_names_the_hour_as_its_partition_values() {
        let hour: HourUtc = "2026-11-24T07".parse().expect("hour");
        let input: serde_json::Value =
            serde_json::from_str(&StateMachine::input(hour)).expect("json");
        assert_eq!(
            input,
            serde_json::json!({"hours": [{"event_date": "2026-11-24", "event_hour": "07"}]})
        );
        let name = StateMachine::execution_name(hour, 1_795_000_000_000);
        assert_eq!(name, "backfill-2026-11-24T07-1795000000000");
        // Step Functions refuses names with whitespace, brackets, wildcards and
        // " # % \ ^ | ~ ` $ & , ; : /, and longer than 80 characters.
        assert!(name.len() <= 80);
        assert!(!name.contains(|c: char| " <>{}[]?*\"#%\\^|~`$&,;:/".contains(c)));
    }

    #[test]
    fn only_closed_hours_of_a_range_are_rebuilt() {
        let from: HourUtc = "2026-11-24T05".parse().expect("hour");
        let to: HourUtc = "2026-11-24T09".parse().expect("hour");
        // 09:24: 07 closed at 08:25, 08 closes at 09:25, 09 is the current hour.
        let now = "2026-11-24T09".parse::<HourUtc>().expect("hour").start_ms() + 24 * 60_000;
        let (hours, open) = closed_hours(from, to, now);
        let shown: Vec<String> = hours.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["2026-11-24T05", "2026-11-24T06", "2026-11-24T07"]);
        assert_eq!(open, 2);
    }
}
