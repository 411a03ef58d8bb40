//! Logging for the Lambda binaries: JSON lines on stdout (CloudWatch adds the
//! time), level from `RUST_LOG`, `info` by default.

pub fn init_tracing() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .with_current_span(false)
        .without_time()
        .init();
}
