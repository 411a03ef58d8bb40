#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! `sightline generate`: its ground truth, checked independently with the
//! pipeline's own decoder; determinism; the shape of the traffic.

use std::collections::{HashMap, HashSet};

use sightline::generate::{GenerateConfig, Truth, generate};
use sightline_core::DatasetB;
use sightline_core::decode::decode_bytes;

fn run(config: &GenerateConfig) -> (Vec<u8>, Truth) {
    let mut out = Vec::new();
    let truth = generate(config, &mut out).expect("generates");
    (out, truth)
}

fn small(seed: u64) -> GenerateConfig {
    GenerateConfig {
        events: 20_000,
        seed,
        duplicate_rate: 0.05,
        malformed_rate: 0.01,
        unknown_location_rate: 0.01,
        ..GenerateConfig::default()
    }
}

#[test]
fn the_ground_truth_matches_what_the_decoder_finds_in_the_file() {
    let (out, truth) = run(&small(7));
    let arrival = truth.last_timestamp_ms + 3_600_000;
    let locations = DatasetB::embedded().expect("dataset B");
    let mut copies: HashMap<i64, Vec<&[u8]>> = HashMap::new();
    let mut bad = 0u64;
    let mut lines = 0u64;
    for line in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        lines += 1;
        match decode_bytes(line, arrival) {
            Ok(e) => copies.entry(e.detection_oid).or_default().push(line),
            Err(_) => bad += 1,
        }
    }
    let unique = copies.len() as u64;
    let resent: u64 = copies.values().map(|c| c.len() as u64 - 1).sum();
    assert_eq!(lines, truth.lines);
    assert_eq!(unique, truth.unique_valid_events);
    assert_eq!(unique, 20_000);
    assert_eq!(resent, truth.injected_duplicates);
    assert_eq!(bad, truth.bad_records);
    // A re-send is the same event; late ones may come through another camera of
    // the same location.
    let same_event = |a: &[u8], b: &[u8]| {
        let (a, b) = (
            decode_bytes(a, arrival).expect("valid"),
            decode_bytes(b, arrival).expect("valid"),
        );
        (
            a.geographical_location_oid,
            &a.item_name,
            a.timestamp_detected,
        ) == (
            b.geographical_location_oid,
            &b.item_name,
            b.timestamp_detected,
        )
    };
    assert!(
        copies
            .values()
            .all(|c| c.iter().all(|l| same_event(l, c[0]))),
        "re-sends carry the same event"
    );
    let relayed = copies
        .values()
        .flat_map(|c| c.iter().map(move |l| (l, c[0])))
        .filter(|(l, first)| **l != *first)
        .count();
    assert!(relayed > 0, "some late re-sends come from another camera");
    let unknown = copies
        .values()
        .filter_map(|c| decode_bytes(c[0], arrival).ok())
        .filter(|e| locations.lookup(e.geographical_location_oid).is_none())
        .count() as u64;
    assert_eq!(unknown, truth.unknown_location_events);
    // About 5% of lines are re-sends, split between immediate and late.
    let share = resent as f64 / lines as f64;
    assert!((0.04..0.06).contains(&share), "re-send share {share}");
    assert!(truth.immediate_duplicates > 0 && truth.late_duplicates > 0);
    assert_eq!(
        truth.bad_by_kind.len(),
        6,
        "every malformed kind occurs: {:?}",
        truth.bad_by_kind
    );
}

#[test]
fn the_same_seed_gives_the_same_bytes() {
    let (a, ta) = run(&small(11));
    let (b, tb) = run(&small(11));
    assert_eq!(ta, tb);
    assert!(a == b, "identical output for one seed");
    let (c, _) = run(&small(12));
    assert!(a != c, "another seed, other traffic");
}

#[test]
fn traffic_has_5_to_20_cameras_per_location_and_power_law_items() {
    let (out, truth) = run(&GenerateConfig {
        duplicate_rate: 0.0,
        malformed_rate: 0.0,
        unknown_location_rate: 0.0,
        ..small(3)
    });
    let arrival = truth.last_timestamp_ms + 3_600_000;
    let mut cameras: HashMap<i64, HashSet<i64>> = HashMap::new();
    let mut items: HashMap<String, u64> = HashMap::new();
    let mut last_ts = i64::MIN;
    let mut out_of_order = 0;
    for line in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let e = decode_bytes(line, arrival).expect("all valid");
        cameras
            .entry(e.geographical_location_oid)
            .or_default()
            .insert(e.video_camera_oid);
        *items.entry(e.item_name.to_string()).or_default() += 1;
        if e.timestamp_detected < last_ts {
            out_of_order += 1;
        }
        last_ts = last_ts.max(e.timestamp_detected);
    }
    assert_eq!(cameras.len(), 55, "every location has traffic");
    let per_location_max = cameras.values().map(HashSet::len).max().unwrap_or(0);
    assert!(per_location_max <= 20 && truth.cameras >= 55 * 5 && truth.cameras <= 55 * 20);
    let mut counts: Vec<u64> = items.values().copied().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    assert!(
        items.len() > 60 && items.len() <= 100,
        "{} distinct items",
        items.len()
    );
    assert!(
        counts[0] > 10 * counts[counts.len() / 2],
        "a few items dominate: {counts:?}"
    );
    assert!(out_of_order > 0, "timestamps jitter");
    assert!(truth.last_timestamp_ms - truth.first_timestamp_ms <= 24 * 3_600_000 + 60_000);
}
