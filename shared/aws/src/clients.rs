//! The SDK configuration and clients, built once per process.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

/// Transport settings shared by every client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSettings {
    pub connect_timeout: Duration,
    /// One attempt of one call; retries are ours (deadline-aware), not the SDK's.
    pub attempt_timeout: Duration,
    /// Path-style S3 addressing, needed by local emulators.
    pub s3_force_path_style: bool,
}

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            connect_timeout: Duration::from_secs(2),
            attempt_timeout: Duration::from_secs(5),
            s3_force_path_style: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct AwsClients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub firehose: aws_sdk_firehose::Client,
    pub s3: aws_sdk_s3::Client,
    pub kinesis: aws_sdk_kinesis::Client,
}

/// Loads region, credentials and `AWS_ENDPOINT_URL` from the environment.
pub async fn load_sdk_config(settings: ClientSettings) -> aws_config::SdkConfig {
    config_loader(settings).load().await
}

/// The loader with our HTTP client, retry and timeout choices; callers may add
/// an endpoint, region or credentials before `load()`.
pub fn config_loader(settings: ClientSettings) -> aws_config::ConfigLoader {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        // The batch logic retries with backoff bounded by the Lambda deadline and
        // counts throttles; SDK-level retries would hide both.
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(settings.connect_timeout)
                .operation_attempt_timeout(settings.attempt_timeout)
                .build(),
        )
}

impl AwsClients {
    pub async fn from_env(settings: ClientSettings) -> Self {
        let config = load_sdk_config(settings).await;
        AwsClients::from_config(&config, settings)
    }

    pub fn from_config(config: &aws_config::SdkConfig, settings: ClientSettings) -> Self {
        let s3 = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(settings.s3_force_path_style)
            .build();
        AwsClients {
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            firehose: aws_sdk_firehose::Client::new(config),
            s3: aws_sdk_s3::Client::from_conf(s3),
            kinesis: aws_sdk_kinesis::Client::new(config),
        }
    }
}
