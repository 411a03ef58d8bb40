//! One module per subcommand; `run` dispatches.

mod demo;
mod generate;
mod produce;
mod query;
mod replay;
mod run;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum Command {
    Generate(generate::Args),
    Produce(produce::Args),
    Run(run::Args),
    Demo(demo::Args),
    Replay(replay::Args),
    /// Rebuild the hourly rollups of a range of hours (a backfill, e.g. after a
    /// replay): over the local lake, or in AWS through the rollup state machine.
    Rollup(sightline::rollups::RollupArgs),
    Query(query::Args),
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Generate(args) => generate::run(args),
        Command::Produce(args) => produce::run(args).await,
        Command::Run(args) => run::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Replay(args) => replay::run(args).await,
        Command::Rollup(args) => Ok(sightline::rollups::run(args).await?),
        Command::Query(args) => query::run(args).await,
    }
}
