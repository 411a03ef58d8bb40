//! `sightline replay`: put a range the event source mapping gave up on back.

use std::path::PathBuf;

use sightline::replay::{self, ArchiveSource, RangeReplay, Targets};
use sightline_aws::archive::ArchiveLocation;
use sightline_aws::{AwsClients, ClientSettings};

/// Put a range the event source mapping gave up on back into the stream:
/// releases the claims it still holds (unless delivered) and re-puts the
/// records that need it. Reads an on-failure record from a file, or every
/// message of the on-failure SQS queue (deleted once replayed). The range is
/// read from the stream, or from the raw archive (`--archive`) once the stream
/// no longer holds it.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["message", "queue_url"])))]
pub struct Args {
    /// An on-failure record (the JSON Lambda sends to the destination).
    #[arg(long)]
    message: Option<PathBuf>,
    /// The on-failure queue (the stack's `OnFailureQueueUrl` output).
    #[arg(long)]
    queue_url: Option<String>,
    /// The claim table (the function's `DEDUP_TABLE`).
    #[arg(long)]
    table: String,
    /// The stream to read and put to, when not the one the record names.
    #[arg(long)]
    stream: Option<String>,
    /// The raw archive (the stack's `RawArchiveLocation` / `raw_archive_location`
    /// output, s3://bucket/raw/): read when the stream no longer holds a range.
    #[arg(long, value_name = "S3_URL")]
    archive: Option<ArchiveLocation>,
    /// Read every range from the archive, even when the stream still holds it.
    #[arg(long, requires = "archive")]
    from_archive: bool,
    /// Report what would be released and put, and change nothing.
    #[arg(long)]
    dry_run: bool,
    #[arg(long)]
    endpoint_url: Option<String>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let settings = ClientSettings {
        // Emulators serve every bucket on one host.
        s3_force_path_style: args.endpoint_url.is_some(),
        ..ClientSettings::default()
    };
    let sdk = sightline::sdk_config(
        sightline_aws::clients::config_loader(settings),
        args.endpoint_url.as_deref(),
    )
    .await;
    let clients = AwsClients::from_config(&sdk, settings);
    let claims = sightline_aws::DynamoClaimStore::new(clients.dynamodb.clone(), &args.table);
    let archive = args
        .archive
        .clone()
        .map(|location| ArchiveSource::new(clients.s3.clone(), location));
    let targets = Targets {
        kinesis: &clients.kinesis,
        claims: &claims,
        stream: args.stream.as_deref(),
        dry_run: args.dry_run,
        archive: archive.as_ref(),
        from_archive: args.from_archive,
    };
    let dry_run = args.dry_run;
    let print = |r: &RangeReplay| {
        let p = &r.plan;
        let from = match r.archive_objects {
            None => "the stream".to_string(),
            Some(n) => format!("the raw archive ({n} object(s) read)"),
        };
        println!(
            "{} {}..={} (from {from}): {} records, {} events: {} claim(s) released, {} delivered already, {} held by other records, {} unclaimed, {} bad; {} record(s) {}",
            r.shard_id,
            r.start,
            r.end,
            p.records,
            p.events,
            p.released,
            p.delivered,
            p.held_by_others,
            p.unclaimed,
            p.bad,
            if dry_run { p.to_put.len() } else { r.put },
            if dry_run {
                "would be put back (dry run)"
            } else {
                "put back"
            },
        );
    };
    match (&args.message, &args.queue_url) {
        (Some(path), _) => {
            let record = replay::read_message(path)?;
            print(&replay::replay_range(&targets, &record).await?);
        }
        (None, Some(queue)) => {
            let sqs = aws_sdk_sqs::Client::new(&sdk);
            let done = replay::replay_queue(&targets, &sqs, queue, print).await?;
            println!("{} range(s) replayed from {queue}", done.len());
        }
        // clap requires one of them.
        (None, None) => anyhow::bail!("give --message or --queue-url"),
    }
    Ok(())
}
