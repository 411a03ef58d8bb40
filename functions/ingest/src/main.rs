#![recursion_limit = "256"]
//! Lambda entry point: tracing, typed config, the Kinesis client, the runtime loop.

use aws_lambda_events::event::apigw::ApiGatewayV2httpRequest;
use ingest::{Config, build, handle};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    sightline_aws::telemetry::init_tracing();
    let config = Config::from_env()?;
    let app = build(&config).await;
    let app = &app;
    run(service_fn(
        move |event: LambdaEvent<ApiGatewayV2httpRequest>| handle(app, event),
    ))
    .await
}
