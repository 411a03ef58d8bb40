#![recursion_limit = "256"]
//! Lambda entry point: tracing, typed config, clients, then the runtime loop.

use aws_lambda_events::event::kinesis::KinesisEvent;
use dedup_enrich::{Config, build_app, handle};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    sightline_aws::telemetry::init_tracing();
    let config = Config::from_env()?;
    let app = build_app(&config).await?;
    let app = &app;
    run(service_fn(move |event: LambdaEvent<KinesisEvent>| {
        handle(app, event)
    }))
    .await
}
