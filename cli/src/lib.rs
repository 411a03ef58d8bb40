//! The `sightline` command's subcommands, as a library so tests can call them.

pub mod dashboard;
pub mod generate;
pub mod produce;
pub mod report;
