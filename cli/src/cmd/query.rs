//! `sightline query`: SQL over the local lake.

use std::path::PathBuf;

use sightline_sql::Lake;

/// SQL over the local lake, with Athena's table names: `events` and `events_dedup`.
#[derive(clap::Args)]
pub struct Args {
    sql: String,
    #[arg(long, default_value = "lake")]
    lake: PathBuf,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let lake = Lake::open(&args.lake).await?;
    println!("{}", lake.sql_table(&args.sql).await?);
    Ok(())
}
