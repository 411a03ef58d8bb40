#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! The Parquet lake sink: Hive layout, Glue column types, rolling files, and no
//! loss of accepted rows when the process dies before a roll.

use std::path::Path;

use sightline_core::cost::CostModel;
use sightline_core::decode::decode_and_enrich;
use sightline_core::ports::EventSink;
use sightline_core::retry::{Retrier, RetryCounters, RetryPolicy};
use sightline_core::{DatasetB, Deadline, InputRecord, SystemClock};
use sightline_local::lake::LakeSink;
use sightline_sql::Lake;
use sightline_sql::query::Rows;

const HOUR_MS: i64 = 3_600_000;
const BASE_MS: i64 = 1_763_856_000_000; // 2025-11-23T00:00:00Z

fn records(ids: std::ops::Range<i64>) -> Vec<InputRecord> {
    ids.map(|id| InputRecord {
        shard_id: "shardId-000000000000".into(),
        sequence_number: format!("{}", 1000 + id),
        arrival_ms: BASE_MS + 3 * HOUR_MS,
        data: format!(
            r#"{{"detection_oid":{},"video_camera_oid":{},"geographical_location_oid":{},"item_name":"car","timestamp_detected":{}}}"#,
            id + 1,
            1 + id % 7,
            // Location 999 is not in Dataset B: delivered with a null name.
            if id % 10 == 0 { 999 } else { 1 + id % 5 },
            BASE_MS + (id % 3) * HOUR_MS
        )
        .into_bytes(),
    })
    .collect()
}

async fn deliver(sink: &LakeSink, records: &[InputRecord]) {
    let locations = DatasetB::embedded().expect("dataset B");
    let events: Vec<_> = records
        .iter()
        .map(|r| decode_and_enrich(r, &locations).expect("valid"))
        .collect();
    let counters = RetryCounters::default();
    let costs = CostModel::default();
    let retrier = Retrier::new(
        RetryPolicy::default(),
        Deadline::none(),
        &SystemClock,
        &counters,
        &costs,
    );
    let delivery = sink.deliver(&events, &retrier).await;
    assert!(delivery.error.is_none());
    assert!(delivery.accepted.iter().all(|ok| *ok));
}

fn parquet_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).expect("inside").display().to_string());
            }
        }
    }
    out.sort();
    out
}

async fn count(lake_dir: &Path, sql: &str) -> Vec<i64> {
    let lake = Lake::open(lake_dir).await.expect("open lake");
    let batches = lake.sql(sql).await.expect("query");
    Rows::new(&batches).ints("n").expect("n")
}

#[tokio::test]
async fn rows_land_in_hive_partitions_with_the_glue_types_and_roll_by_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = LakeSink::open(dir.path(), "run1", 50).expect("open");
    deliver(&sink, &records(0..40)).await;
    assert!(
        parquet_files(&dir.path().join("events")).is_empty(),
        "below max rows: still buffered"
    );
    deliver(&sink, &records(40..60)).await;
    deliver(&sink, &records(60..90)).await;
    sink.flush().expect("flush");

    let files = parquet_files(&dir.path().join("events"));
    // Three hours; two rolls (at 60 rows, then the flush) -> two files per hour.
    assert_eq!(files.len(), 6, "{files:?}");
    assert!(
        files
            .iter()
            .all(|f| f.starts_with("event_date=2025-11-23/event_hour=0")
                && f.ends_with(".parquet")
                && f.contains("/part-run1-"))
    );
    let stats = sink.stats();
    assert_eq!((stats.files, stats.rows), (6, 90));

    assert_eq!(
        count(dir.path(), "SELECT count(*) AS n FROM events").await,
        [90]
    );
    assert_eq!(
        count(
            dir.path(),
            "SELECT count(*) AS n FROM events WHERE geographical_location IS NULL"
        )
        .await,
        [9]
    );
    assert_eq!(
        count(
            dir.path(),
            "SELECT count(*) AS n FROM events WHERE event_date = '2025-11-23' AND event_hour = '01'"
        )
        .await,
        [30]
    );
    // Column types as the Glue table declares them.
    let lake = Lake::open(dir.path()).await.expect("open");
    let types = lake
        .sql("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'events' ORDER BY ordinal_position")
        .await
        .expect("schema");
    let rows = Rows::new(&types);
    let got: Vec<(String, String)> = rows
        .strings("column_name")
        .expect("names")
        .into_iter()
        .zip(rows.strings("data_type").expect("types"))
        .collect();
    let want: Vec<(String, String)> = sightline_core::model::OUTPUT_COLUMNS
        .iter()
        .map(|(name, glue)| {
            let arrow = match *glue {
                "bigint" => "Int64",
                _ => "Utf8",
            };
            (name.to_string(), arrow.to_string())
        })
        .collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn distinct_valued_columns_are_written_plain_and_repeating_ones_with_a_dictionary() {
    use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};

    let dir = tempfile::tempdir().expect("tempdir");
    let sink = LakeSink::open(dir.path(), "run1", 1000).expect("open");
    deliver(&sink, &records(0..300)).await;
    sink.flush().expect("flush");
    let events = dir.path().join("events");
    let file = parquet_files(&events).into_iter().next().expect("a file");
    let reader =
        SerializedFileReader::new(std::fs::File::open(events.join(file)).expect("open file"))
            .expect("parquet");
    let row_group = reader.metadata().row_group(0);
    let dictionary: Vec<(String, bool)> = row_group
        .columns()
        .iter()
        .map(|c| {
            (
                c.column_path().string(),
                c.dictionary_page_offset().is_some(),
            )
        })
        .collect();
    let want = [
        ("detection_oid", false),
        ("video_camera_oid", true),
        ("geographical_location_oid", true),
        ("item_name", true),
        ("timestamp_detected", false),
        ("geographical_location", true),
        ("ingested_at", false),
        ("source_shard", true),
        ("source_sequence", false),
    ]
    .map(|(c, d)| (c.to_string(), d));
    assert_eq!(dictionary, want);
}

#[tokio::test]
async fn rows_accepted_before_a_crash_are_written_by_the_next_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let sink = LakeSink::open(dir.path(), "crashed", 1_000).expect("open");
        deliver(&sink, &records(0..25)).await;
        // Dropped without a flush: the process died with the rows only in the spool.
    }
    assert!(parquet_files(&dir.path().join("events")).is_empty());
    let sink = LakeSink::open(dir.path(), "next", 1_000).expect("reopen");
    assert_eq!(sink.stats().recovered_rows, 25);
    assert_eq!(
        count(dir.path(), "SELECT count(*) AS n FROM events").await,
        [25]
    );
    // The spool was emptied: a third open replays nothing.
    drop(sink);
    let sink = LakeSink::open(dir.path(), "third", 1_000).expect("reopen");
    assert_eq!(sink.stats().recovered_rows, 0);
    assert_eq!(
        count(
            dir.path(),
            "SELECT count(DISTINCT detection_oid) AS n FROM events"
        )
        .await,
        [25]
    );
}

/// What a roll does to the open spool before it writes Parquet, as run `run`'s first.
fn seal_open_spool(lake: &Path, run: &str) {
    std::fs::rename(
        lake.join("_spool.ndjson"),
        lake.join(format!("_spool.sealed-{run}-00001.ndjson")),
    )
    .expect("seal");
}

#[tokio::test]
async fn rows_in_spools_sealed_for_a_roll_that_never_finished_are_written_by_the_next_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let sink = LakeSink::open(dir.path(), "crashed", 1_000).expect("open");
        deliver(&sink, &records(0..10)).await;
    }
    // The process sealed that spool for a roll and died writing its files, after
    // accepting more rows into a new spool.
    seal_open_spool(dir.path(), "crashed");
    {
        let sink = LakeSink::open(dir.path(), "second", 1_000).expect("open");
        assert_eq!(sink.stats().recovered_rows, 10);
        deliver(&sink, &records(10..25)).await;
    }
    seal_open_spool(dir.path(), "second");
    {
        let sink = LakeSink::open(dir.path(), "third", 1_000).expect("open");
        assert_eq!(sink.stats().recovered_rows, 15);
        deliver(&sink, &records(25..30)).await;
    }
    let sink = LakeSink::open(dir.path(), "fourth", 1_000).expect("reopen");
    assert_eq!(sink.stats().recovered_rows, 5);
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read_dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("_spool"))
        .collect();
    assert_eq!(
        left,
        ["_spool.ndjson"],
        "sealed spools deleted once written"
    );
    assert_eq!(
        count(
            dir.path(),
            "SELECT count(*) AS n FROM events HAVING count(*) = count(DISTINCT detection_oid)"
        )
        .await,
        [30]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_go_on_while_a_roll_writes_and_every_row_lands_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = std::sync::Arc::new(LakeSink::open(dir.path(), "run", 64).expect("open"));
    let mut tasks = Vec::new();
    for shard in 0..4i64 {
        let sink = sink.clone();
        tasks.push(tokio::spawn(async move {
            for chunk in 0..25i64 {
                let from = shard * 10_000 + chunk * 20;
                deliver(&sink, &records(from..from + 20)).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    sink.flush().expect("flush");
    assert_eq!(sink.stats().rows, 2_000);
    assert_eq!(
        count(
            dir.path(),
            "SELECT count(DISTINCT detection_oid) AS n FROM events"
        )
        .await,
        [2_000]
    );
    assert_eq!(
        count(dir.path(), "SELECT count(*) AS n FROM events").await,
        [2_000]
    );
}

#[tokio::test]
async fn a_torn_last_spool_line_is_skipped_not_fatal() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let sink = LakeSink::open(dir.path(), "a", 1_000).expect("open");
        deliver(&sink, &records(0..3)).await;
    }
    let spool = dir.path().join("_spool.ndjson");
    let mut body = std::fs::read(&spool).expect("spool");
    body.extend_from_slice(br#"{"detection_oid":99,"video_cam"#);
    std::fs::write(&spool, body).expect("write");
    let sink = LakeSink::open(dir.path(), "b", 1_000).expect("reopen");
    assert_eq!(sink.stats().recovered_rows, 3);
}
