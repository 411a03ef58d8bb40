#![recursion_limit = "256"]
//! Lambda entry point: tracing, typed config, the Kinesis client, the runtime loop.

use aws_lambda_events::event::apigw::ApiGatewayV2httpRequest;
use ingest::{Config, build, handle};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
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
    let config = Config::from_env()?;
    let app = build(&config).await;
    let app = &app;
    run(service_fn(
        move |event: LambdaEvent<ApiGatewayV2httpRequest>| handle(app, event),
    ))
    .await
}
