#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! `sightline demo` end to end, checked against the generator's ground truth and
//! against dashboard numbers computed here, independently, from the raw NDJSON; and the
//! hourly rollups: `sightline rollup` over a lake, after which every dashboard query
//! answers the same from the rollup path as from the deduplicated view, and as the
//! ground truth.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sightline::generate::{GenerateConfig, generate};
use sightline::report::dashboard_rows;
use sightline_core::{Clock, DatasetB, SystemClock};
use sightline_sql::Lake;
use sightline_sql::query::{DASHBOARD_QUERIES, DashboardPath, ROLLUP_DIR, Rows};
use sightline_sql::rollup::{HourUtc, partition_hours};

fn sightline(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args(args)
        .output()
        .expect("runs sightline");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "sightline {args:?} failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json")
}

fn run_metrics(lake: &Path) -> Vec<Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(lake.join("_runs"))
        .expect("_runs")
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    files.iter().map(|p| json(p)).collect()
}

fn files_under(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == ext) {
                out.push(p);
            }
        }
    }
    out
}

/// The first copy of each valid event, by rules written here (not the decoder's).
struct Expected {
    events: Vec<(i64, i64, String, i64)>, // location oid, camera, item, timestamp
}

fn expected_from_raw(ndjson: &[u8]) -> Expected {
    let mut seen = BTreeSet::new();
    let mut events = Vec::new();
    for line in ndjson.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let Ok(v) = serde_json::from_slice::<Value>(line) else {
            continue;
        };
        let (Some(id), Some(camera), Some(location), Some(item), Some(ts)) = (
            v["detection_oid"].as_i64(),
            v["video_camera_oid"].as_i64(),
            v["geographical_location_oid"].as_i64(),
            v["item_name"].as_str(),
            v["timestamp_detected"].as_i64(),
        ) else {
            continue;
        };
        // The generator's malformed shapes: an empty item, a timestamp in seconds.
        if item.is_empty() || ts < 100_000_000_000 {
            continue;
        }
        if seen.insert(id) {
            events.push((location, camera, item.to_string(), ts));
        }
    }
    Expected { events }
}

#[test]
fn demo_matches_the_ground_truth_and_a_second_run_delivers_nothing_new() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let lake_arg = lake.display().to_string();
    let out = sightline(&[
        "demo",
        "--events",
        "20000",
        "--seed",
        "5",
        "--lake",
        &lake_arg,
        "--shards",
        "3",
        "--batch-size",
        "700",
    ]);
    assert!(out.contains("dashboard:"), "{out}");

    let truth = json(&lake.join("_input/events.truth.json"));
    let t = |k: &str| truth[k].as_u64().expect(k);
    let runs = run_metrics(&lake);
    assert_eq!(runs.len(), 1);
    let m = |k: &str| runs[0][k].as_u64().expect(k);

    // Every line has exactly one fate, and the counts are the generator's.
    assert_eq!(m("received"), t("lines"));
    assert_eq!(m("delivered"), t("unique_valid_events"));
    assert_eq!(m("duplicates"), t("injected_duplicates"));
    assert_eq!(m("quarantined"), t("bad_records"));
    assert_eq!(m("unknown_location"), t("unknown_location_events"));
    assert_eq!(m("retried_records"), 0);
    assert!(t("late_duplicates") > 0 && t("bad_records") > 0);

    // Quarantine files hold every bad record, each with a reason.
    let quarantined: Vec<Value> = files_under(&lake.join("quarantine"), "jsonl")
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .expect("read")
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).expect("quarantine line"))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(quarantined.len() as u64, t("bad_records"));
    assert!(
        quarantined
            .iter()
            .all(|q| q["reason"].as_str().is_some_and(|r| !r.is_empty()))
    );

    let raw = std::fs::read(lake.join("_input/events.ndjson")).expect("input");
    let expected = expected_from_raw(&raw);
    assert_eq!(expected.events.len() as u64, t("unique_valid_events"));

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let l = Lake::open(&lake).await.expect("lake");
        // Each unique valid event is in the lake exactly once.
        let b = l
            .sql("SELECT count(*) AS n, count(DISTINCT detection_oid) AS d FROM events")
            .await
            .expect("count");
        let r = Rows::new(&b);
        assert_eq!(r.ints("n").expect("n"), [t("unique_valid_events") as i64]);
        assert_eq!(r.ints("d").expect("d"), [t("unique_valid_events") as i64]);
        check_dashboard_queries(&l, &expected, 0).await;
    });

    // The dashboard was written and holds its four charts, drawn from the rollup path:
    // the demo rolled up every closed hour first, and the page says which hours are live.
    let html = std::fs::read_to_string(lake.join("dashboard.html")).expect("dashboard");
    for chart in ["<svg", "Top items", "Detections over time"] {
        assert!(html.contains(chart), "dashboard lacks {chart}");
    }
    assert!(
        !partition_hours(&lake.join(ROLLUP_DIR))
            .expect("rollups")
            .is_empty(),
        "the demo rolled up its closed hours"
    );
    assert!(
        html.contains("id=\"freshness\"") && html.contains("from the hourly rollups"),
        "the page names the rolled-up and the live hours"
    );
    match chromium() {
        Some(browser) => {
            assert_renders_in_chromium(&browser, &lake.join("dashboard.html"), dir.path());
        }
        None => eprintln!(
            "skipped: the dashboard's browser check needs Chromium (scripts/test.sh installs it, or set SIGHTLINE_CHROMIUM)"
        ),
    }

    // Again, over the same input: a replay; nothing new is delivered.
    let input = lake.join("_input/events.ndjson").display().to_string();
    let out = sightline(&[
        "run",
        "--input",
        &input,
        "--lake",
        &lake_arg,
        "--shards",
        "3",
        "--batch-size",
        "700",
    ]);
    assert!(out.contains("replay"), "{out}");
    let runs = run_metrics(&lake);
    assert_eq!(runs.len(), 2);
    let second = runs
        .iter()
        .find(|r| r["replay"] == Value::Bool(true))
        .expect("replay run");
    assert_eq!(second["delivered"], 0);
    assert_eq!(second["duplicates"].as_u64(), Some(t("lines")));
    rt.block_on(async {
        let l = Lake::open(&lake).await.expect("lake");
        let b = l
            .sql("SELECT count(*) AS n FROM events")
            .await
            .expect("count");
        assert_eq!(
            Rows::new(&b).ints("n").expect("n"),
            [t("unique_valid_events") as i64]
        );
    });
}
/// Debian's Chromium: `SIGHTLINE_CHROMIUM` (which must exist: scripts/test.sh sets
/// it after scripts/ensure-chromium.sh), else /usr/bin/chromium if present; `None`
/// lets a plain `cargo test` skip the browser check.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SIGHTLINE_CHROMIUM").map(PathBuf::from) {
        assert!(
            path.exists(),
            "SIGHTLINE_CHROMIUM={} does not exist",
            path.display()
        );
        return Some(path);
    }
    let debian = PathBuf::from("/usr/bin/chromium");
    debian.exists().then_some(debian)
}

fn headless(browser: &Path, scratch: &Path, name: &str, args: &[String]) -> std::process::Output {
    let profile = scratch.join(format!("chromium-{name}"));
    let mut cmd = Command::new(browser);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args);
    let out = cmd.output().expect("starts chromium");
    assert!(
        out.status.success(),
        "chromium {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Renders the page in headless Chromium: the DOM it built has every chart with
/// drawn marks, and a screenshot shows them (far from a blank page).
fn assert_renders_in_chromium(browser: &Path, page: &Path, scratch: &Path) {
    let url = format!(
        "file://{}",
        page.canonicalize().expect("page path").display()
    );

    let dom = headless(browser, scratch, "dom", &["--dump-dom".into(), url.clone()]);
    let dom = String::from_utf8_lossy(&dom.stdout);
    for id in [
        "chart-detections-total",
        "chart-detections-over-time",
        "chart-top-items",
        "chart-rates",
        "chart-quarantine-reasons",
        "chart-top-locations",
    ] {
        assert!(
            dom.contains(&format!("id=\"{id}\"")),
            "rendered DOM lacks {id}"
        );
    }
    assert!(
        dom.matches("<polyline").count() >= 2,
        "no time series drawn"
    );
    assert!(
        dom.matches("class=\"bar\"").count() >= 50,
        "too few bars drawn"
    );

    let shot = scratch.join("dashboard.png");
    headless(
        browser,
        scratch,
        "shot",
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,2000".into(),
            url,
        ],
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&shot).expect("screenshot written"),
    ));
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size().expect("png size")];
    let info = reader.next_frame(&mut buf).expect("png frame");
    assert_eq!((info.width, info.height), (1280, 2000));
    let channels = info.line_size / info.width as usize;
    let pixels = buf[..info.buffer_size()].chunks(channels);
    let mut colours = BTreeSet::new();
    let mut saturated = 0usize;
    for p in pixels {
        colours.insert((p[0], p[1], p[2]));
        let (max, min) = (p[0].max(p[1]).max(p[2]), p[0].min(p[1]).min(p[2]));
        if max - min > 60 {
            saturated += 1;
        }
    }
    // Chart colours (bars and lines) cover a visible part of the page.
    assert!(
        colours.len() > 50,
        "screenshot has {} colours",
        colours.len()
    );
    assert!(
        saturated > 20_000,
        "screenshot has only {saturated} coloured pixels"
    );
}

/// The dashboard queries, as shipped for Athena, against numbers computed here from
/// the raw input; `doubles` rows were redelivered into the lake (Firehose's doubles).
async fn check_dashboard_queries(lake: &Lake, expected: &Expected, doubles: i64) {
    let names = DatasetB::embedded().expect("dataset B");
    let name = |oid: i64| names.lookup(oid).unwrap_or("UNKNOWN").to_string();
    let mut per_location: HashMap<String, (i64, BTreeSet<i64>)> = HashMap::new();
    let mut per_item: HashMap<String, HashMap<String, i64>> = HashMap::new();
    let mut per_hour: BTreeMap<(String, String), i64> = BTreeMap::new();
    for (location, camera, item, ts) in &expected.events {
        let loc = name(*location);
        let e = per_location.entry(loc.clone()).or_default();
        e.0 += 1;
        e.1.insert(*camera);
        *per_item
            .entry(loc.clone())
            .or_default()
            .entry(item.clone())
            .or_default() += 1;
        let hour = ts - ts.rem_euclid(3_600_000);
        let h = sightline_core::quarantine::iso8601(hour);
        // `YYYY-MM-DDTHH:00:00.000Z` -> `YYYY-MM-DD HH:00:00`
        let h = format!("{} {}", &h[..10], &h[11..19]);
        *per_hour.entry((h, loc)).or_default() += 1;
    }
    let sql = |name: &str| {
        DASHBOARD_QUERIES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| *s)
            .expect("query")
    };

    // Locations ranked by detections (top 20), with their camera counts.
    let b = lake.sql(sql("top_locations")).await.expect("top_locations");
    let r = Rows::new(&b);
    let got: Vec<(String, i64, i64)> = r
        .strings("location")
        .expect("location")
        .into_iter()
        .zip(r.ints("detections").expect("detections"))
        .zip(r.ints("cameras").expect("cameras"))
        .map(|((l, d), c)| (l, d, c))
        .collect();
    let mut want: Vec<(String, i64, i64)> = per_location
        .iter()
        .map(|(l, (d, cams))| (l.clone(), *d, cams.len() as i64))
        .collect();
    want.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    want.truncate(20);
    assert_eq!(got, want);

    // Top 10 items per location, ties by item name.
    let b = lake
        .sql(sql("top_items_per_location"))
        .await
        .expect("top items");
    let r = Rows::new(&b);
    let got: Vec<(String, i64, String, i64)> = r
        .strings("location")
        .expect("location")
        .into_iter()
        .zip(r.ints("item_rank").expect("rank"))
        .zip(r.strings("item_name").expect("item"))
        .zip(r.ints("detections").expect("detections"))
        .map(|(((l, k), i), d)| (l, k, i, d))
        .collect();
    let mut want = Vec::new();
    let mut locations: Vec<&String> = per_item.keys().collect();
    locations.sort();
    for loc in locations {
        let mut items: Vec<(&String, &i64)> = per_item[loc].iter().collect();
        items.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (k, (item, n)) in items.into_iter().take(10).enumerate() {
            want.push((loc.clone(), k as i64 + 1, item.clone(), *n));
        }
    }
    assert_eq!(got, want);

    // Detections per location per hour.
    let b = lake
        .sql(sql("detections_per_location_hourly"))
        .await
        .expect("hourly");
    let r = Rows::new(&b);
    let got: BTreeMap<(String, String), i64> = r
        .strings("hour_utc")
        .expect("hour")
        .into_iter()
        .zip(r.strings("location").expect("location"))
        .zip(r.ints("detections").expect("detections"))
        .collect();
    assert_eq!(got, per_hour);

    // The view removes exactly the redelivered rows.
    let b = lake
        .sql(sql("doubles_removed_by_view"))
        .await
        .expect("doubles");
    let r = Rows::new(&b);
    let removed = r.ints("doubles_removed").expect("doubles_removed");
    assert!(!removed.is_empty());
    assert_eq!(removed.iter().sum::<i64>(), doubles);
    assert_eq!(
        r.ints("rows_in_lake").expect("rows").iter().sum::<i64>(),
        expected.events.len() as i64 + doubles
    );
    assert_eq!(
        r.ints("rows_in_view").expect("rows").iter().sum::<i64>(),
        expected.events.len() as i64
    );
}

/// One Parquet file of a partition copied under a new name in the same folder: what
/// Firehose's at-least-once delivery does to a batch. Returns the rows it doubled.
async fn redeliver_a_file(lake: &Path, hour: HourUtc) -> i64 {
    let folder = lake.join("events").join(hour.partition_path());
    let file = std::fs::read_dir(&folder)
        .expect("partition")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
        .expect("a parquet file");
    let count = |l: Lake| async move {
        let b = l
            .sql(&format!(
                "SELECT count(*) AS n FROM events WHERE event_date = '{}' AND event_hour = '{}'",
                hour.event_date(),
                hour.event_hour()
            ))
            .await
            .expect("count");
        Rows::new(&b).ints("n").expect("n")[0]
    };
    let before = count(Lake::open(lake).await.expect("lake")).await;
    std::fs::copy(&file, folder.join("redelivered-by-firehose.parquet")).expect("copy");
    count(Lake::open(lake).await.expect("lake")).await - before
}

async fn rows_of(lake: &Path, path: DashboardPath) -> sightline::report::DashboardRows {
    let l = Lake::open_with(lake, path).await.expect("lake");
    dashboard_rows(&l).await.expect("dashboard queries")
}

/// The rollup table's totals: rows, detections, lake rows.
async fn rollup_totals(lake: &Path) -> (i64, i64, i64) {
    let l = Lake::open(lake).await.expect("lake");
    let b = l
        .sql("SELECT count(*) AS n, coalesce(sum(detections), 0) AS d, coalesce(sum(lake_rows), 0) AS l FROM events_hourly")
        .await
        .expect("totals");
    let r = Rows::new(&b);
    (
        r.ints("n").expect("n")[0],
        r.ints("d").expect("d")[0],
        r.ints("l").expect("l")[0],
    )
}

#[test]
fn rollup_path_answers_every_dashboard_query_like_the_dedup_view_and_the_ground_truth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let lake_arg = lake.display().to_string();
    let input = dir.path().join("events.ndjson");

    // 30 hours of traffic ending now: closed hours for the rollups, open ones live.
    let now = SystemClock.now_ms();
    let window_ms = 30 * 3_600_000;
    let mut raw = Vec::new();
    generate(
        &GenerateConfig {
            events: 20_000,
            seed: 9,
            start_ms: now - window_ms,
            window_ms,
            ..GenerateConfig::default()
        },
        &mut raw,
    )
    .expect("generate");
    std::fs::write(&input, &raw).expect("input");
    let input_arg = input.display().to_string();
    sightline(&[
        "run", "--input", &input_arg, "--lake", &lake_arg, "--shards", "3",
    ]);

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let hours = partition_hours(&lake.join("events")).expect("hours");
    let (first, last) = (hours[0], hours[hours.len() - 1]);
    assert!(!first.is_closed(first.start_ms()) && first.is_closed(now));
    // Firehose redelivers a file of a closed hour and one of the open hour.
    let doubles = rt.block_on(async {
        redeliver_a_file(&lake, first).await + redeliver_a_file(&lake, last).await
    });
    assert!(doubles > 0);

    // The rollup job over every closed hour, as the schedule would have run it.
    let out = sightline(&["rollup", "--lake", &lake_arg]);
    assert!(out.contains("closed hour(s)"), "{out}");
    let closed: Vec<HourUtc> = hours.iter().copied().filter(|h| h.is_closed(now)).collect();
    let rolled = partition_hours(&lake.join(ROLLUP_DIR)).expect("rollups");
    assert!(
        closed.iter().all(|h| rolled.contains(h)),
        "every closed hour with events has a rollup: {closed:?} vs {rolled:?}"
    );
    assert!(
        !rolled.contains(&last),
        "the open hour is left to the live view"
    );

    // Rewriting replaces: a second run leaves the same rollups, nothing doubled.
    let totals = rt.block_on(rollup_totals(&lake));
    let out = sightline(&["rollup", "--lake", &lake_arg]);
    assert!(out.contains("replaced"), "{out}");
    assert_eq!(rt.block_on(rollup_totals(&lake)), totals);

    // Every dashboard query: the rollup path answers as the dedup view, and as the
    // ground truth computed here from the raw NDJSON.
    let expected = expected_from_raw(&raw);
    rt.block_on(async {
        let via_rollups = rows_of(&lake, DashboardPath::Rollups).await;
        let via_dedup_view = rows_of(&lake, DashboardPath::DedupViewOnly).await;
        assert_same_answers(&via_rollups, &via_dedup_view);
        let sources: BTreeSet<&str> = via_rollups
            .freshness
            .iter()
            .map(|f| f.source.as_str())
            .collect();
        assert_eq!(sources, BTreeSet::from(["live", "rollup"]));
        for path in [DashboardPath::Rollups, DashboardPath::DedupViewOnly] {
            let l = Lake::open_with(&lake, path).await.expect("lake");
            check_dashboard_queries(&l, &expected, doubles).await;
        }
    });

    // A late event for the first (closed, rolled-up) hour: the dedup view has it at
    // once; the rollup path after the hour is rewritten, counted once.
    let late_ms = first.start_ms() + 1_234;
    let late = format!(
        "{{\"detection_oid\":77000000001,\"video_camera_oid\":101,\"geographical_location_oid\":1,\"item_name\":\"late bicycle\",\"timestamp_detected\":{late_ms}}}\n"
    );
    let late_path = dir.path().join("late.ndjson");
    std::fs::File::create(&late_path)
        .and_then(|mut f| f.write_all(late.as_bytes()))
        .expect("late input");
    let late_arg = late_path.display().to_string();
    sightline(&["run", "--input", &late_arg, "--lake", &lake_arg]);
    let mut all = raw.clone();
    all.extend_from_slice(late.as_bytes());
    let expected = expected_from_raw(&all);
    let hour_total = |rows: &sightline::report::DashboardRows| -> i64 {
        let label = format!("{} {}:00", first.event_date(), first.event_hour());
        rows.hourly
            .iter()
            .filter(|r| r.hour_utc == label)
            .map(|r| r.detections)
            .sum()
    };
    let (stale, fresh) = rt.block_on(async {
        (
            rows_of(&lake, DashboardPath::Rollups).await,
            rows_of(&lake, DashboardPath::DedupViewOnly).await,
        )
    });
    assert_eq!(
        hour_total(&fresh),
        hour_total(&stale) + 1,
        "not rolled up yet"
    );
    let hour = first.to_string();
    let out = sightline(&[
        "rollup", "--lake", &lake_arg, "--from", &hour, "--to", &hour,
    ]);
    assert!(out.contains("rewrote 1 closed hour(s)"), "{out}");
    rt.block_on(async {
        let via_rollups = rows_of(&lake, DashboardPath::Rollups).await;
        assert_eq!(hour_total(&via_rollups), hour_total(&fresh));
        assert_same_answers(
            &via_rollups,
            &rows_of(&lake, DashboardPath::DedupViewOnly).await,
        );
        let l = Lake::open(&lake).await.expect("lake");
        check_dashboard_queries(&l, &expected, doubles).await;
    });
}

/// Every dashboard query's rows, except which source (rollup or live) each hour came
/// from, which is what differs by construction.
fn assert_same_answers(
    via_rollups: &sightline::report::DashboardRows,
    via_dedup_view: &sightline::report::DashboardRows,
) {
    assert_eq!(
        via_rollups.hourly, via_dedup_view.hourly,
        "detections_per_location_hourly"
    );
    assert_eq!(
        via_rollups.top_items, via_dedup_view.top_items,
        "top_items_per_location"
    );
    assert_eq!(
        via_rollups.top_locations, via_dedup_view.top_locations,
        "top_locations"
    );
    assert_eq!(
        via_rollups.doubles_removed, via_dedup_view.doubles_removed,
        "doubles_removed_by_view"
    );
    let newest = |rows: &sightline::report::DashboardRows| {
        rows.freshness.iter().map(|f| f.newest_detected_ms).max()
    };
    let hours = |rows: &sightline::report::DashboardRows| -> i64 {
        rows.freshness.iter().map(|f| f.hours).sum()
    };
    assert_eq!(
        newest(via_rollups),
        newest(via_dedup_view),
        "freshness: newest"
    );
    assert_eq!(
        hours(via_rollups),
        hours(via_dedup_view),
        "freshness: hours"
    );
}
