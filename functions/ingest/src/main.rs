#![recursion_limit = "256"]
//! Lambda entry point: tracing, typed config, the Kinesis client, the runtime loop.

use std::convert::Infallible;

use ingest::{Config, Request, build, handle};
use lambda_http::{Error, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    sightline_aws::telemetry::init_tracing();
    let config = Config::from_env()?;
    let app = build(&config).await;
    let app = &app;
    run(service_fn(move |req: Request| async move {
        Ok::<_, Infallible>(handle(app, req).await)
    }))
    .await
}
