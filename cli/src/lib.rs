//! The `sightline` command's subcommands, as a library so tests can call them.

pub mod dashboard;
pub mod generate;
pub mod ingest_http;
pub mod produce;
pub mod replay;
pub mod report;
pub mod rollups;
pub mod scan_figures;

/// The SDK configuration from `loader` (the environment's), pointed at `endpoint_url`
/// when given (an emulator).
pub async fn sdk_config(
    loader: aws_config::ConfigLoader,
    endpoint_url: Option<&str>,
) -> aws_config::SdkConfig {
    match endpoint_url {
        Some(url) => loader.endpoint_url(url).load().await,
        None => loader.load().await,
    }
}
