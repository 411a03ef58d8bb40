//! The `sightline` command's subcommands, as a library so tests can call them.

pub mod dashboard;
pub mod generate;
pub mod ingest_http;
pub mod produce;
pub mod replay;
pub mod report;
pub mod rollups;
pub mod scan_figures;
