//! `sightline generate`: realistic, messy Dataset A traffic as NDJSON,
//! deterministic for a seed, with a ground-truth summary beside it.
//!
//! - Every Dataset B location has 5 to 20 cameras.
//! - About 100 item names, drawn from a Zipf (power-law) distribution.
//! - Timestamps rise through a configurable window, with jitter.
//! - Re-sends (upstream retries) carry the same event: half are exact copies that
//!   follow it closely, half come much later in the file, relayed by a camera of
//!   the same location (another partition key, so usually another shard).
//! - A small share of malformed records (one of several kinds) and of events with
//!   a location id that Dataset B does not know.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::io::{self, Write};

use serde::Serialize;
use sightline_core::DatasetB;

/// Item vocabulary, most common first; the draw is Zipf over this order.
pub const ITEMS: [&str; 100] = [
    "person",
    "car",
    "motorcycle",
    "bicycle",
    "bus",
    "truck",
    "dog",
    "backpack",
    "handbag",
    "umbrella",
    "van",
    "taxi",
    "scooter",
    "cat",
    "bird",
    "suitcase",
    "traffic light",
    "stroller",
    "wheelchair",
    "cyclist helmet",
    "delivery bike",
    "lorry",
    "pickup truck",
    "minibus",
    "ambulance",
    "police car",
    "fire engine",
    "food cart",
    "shopping cart",
    "trolley",
    "skateboard",
    "kick scooter",
    "e-scooter",
    "pram",
    "parcel",
    "cardboard box",
    "bag",
    "bottle",
    "cup",
    "phone",
    "laptop",
    "tablet",
    "camera",
    "drone",
    "kite",
    "ball",
    "frisbee",
    "chair",
    "bench",
    "table",
    "parasol",
    "tent",
    "signboard",
    "cone",
    "barrier",
    "ladder",
    "toolbox",
    "crate",
    "pallet",
    "forklift",
    "excavator",
    "crane",
    "cement mixer",
    "tractor",
    "trailer",
    "container",
    "boat",
    "kayak",
    "jet ski",
    "horse",
    "cow",
    "goat",
    "monkey",
    "otter",
    "monitor lizard",
    "pigeon",
    "crow",
    "mynah",
    "heron",
    "squirrel",
    "rat",
    "snake",
    "turtle",
    "fish",
    "insect",
    "tree branch",
    "fallen tree",
    "puddle",
    "smoke",
    "fire",
    "debris",
    "graffiti",
    "litter",
    "abandoned bag",
    "unattended vehicle",
    "crowd",
    "queue",
    "runner",
    "hawker stall",
    "street lamp",
];

/// Zipf exponent: a few items dominate, a long tail stays rare.
pub const ZIPF_S: f64 = 1.1;

/// `window_ms` before now, on the hour: generated traffic that ends about now,
/// so it passes the decoder's age rule (`too_old`) wherever it is sent.
pub fn recent_start(window_ms: i64) -> i64 {
    use sightline_core::Clock;
    let now = sightline_core::SystemClock.now_ms();
    (now - window_ms).div_euclid(3_600_000) * 3_600_000
}

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateConfig {
    pub events: u64,
    pub seed: u64,
    /// First timestamp, epoch ms.
    pub start_ms: i64,
    pub window_ms: i64,
    /// Share of output lines that are re-sends of an earlier event.
    pub duplicate_rate: f64,
    pub malformed_rate: f64,
    pub unknown_location_rate: f64,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        GenerateConfig {
            events: 1_000_000,
            seed: 42,
            start_ms: 1_763_856_000_000, // 2025-11-23T00:00:00Z
            window_ms: 24 * 3_600_000,
            duplicate_rate: 0.05,
            malformed_rate: 0.001,
            unknown_location_rate: 0.002,
        }
    }
}

/// The ground truth, written beside the output as `<output>.truth.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Truth {
    pub seed: u64,
    pub lines: u64,
    pub unique_valid_events: u64,
    pub injected_duplicates: u64,
    pub immediate_duplicates: u64,
    pub late_duplicates: u64,
    pub bad_records: u64,
    pub bad_by_kind: BTreeMap<&'static str, u64>,
    pub unknown_location_events: u64,
    pub cameras: u64,
    pub first_timestamp_ms: i64,
    pub last_timestamp_ms: i64,
}

/// Malformed shapes, each a different validation failure.
const MALFORMED: [&str; 6] = [
    "not_json",
    "wrong_type",
    "missing_field",
    "empty_item_name",
    "timestamp_in_seconds",
    "not_utf8",
];

struct Camera {
    id: i64,
    location: i64,
}

/// Cumulative Zipf weights over `ITEMS`.
fn zipf_cdf() -> Vec<f64> {
    let weights: Vec<f64> = (1..=ITEMS.len())
        .map(|k| 1.0 / (k as f64).powf(ZIPF_S))
        .collect();
    let total: f64 = weights.iter().sum();
    let mut acc = 0.0;
    weights
        .iter()
        .map(|w| {
            acc += w / total;
            acc
        })
        .collect()
}

fn write_event(out: &mut Vec<u8>, id: i64, camera: i64, location: i64, item: &str, ts: i64) {
    // Items are plain ASCII words, so no escaping is needed.
    let _ = write!(
        out,
        "{{\"detection_oid\":{id},\"video_camera_oid\":{camera},\"geographical_location_oid\":{location},\"item_name\":\"{item}\",\"timestamp_detected\":{ts}}}"
    );
}

/// Writes the traffic to `out` and returns its ground truth.
pub fn generate(config: &GenerateConfig, out: &mut impl Write) -> io::Result<Truth> {
    let locations = DatasetB::embedded().map_err(io::Error::other)?;
    let mut rng = fastrand::Rng::with_seed(config.seed);
    let mut cameras = Vec::new();
    for (location, _) in locations.iter() {
        for k in 0..rng.i64(5..=20) {
            cameras.push(Camera {
                id: location * 100 + k + 1,
                location,
            });
        }
    }
    let mut by_location: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for c in &cameras {
        by_location.entry(c.location).or_default().push(c.id);
    }
    let unknown_locations: Vec<i64> = (900..905).collect();
    let cdf = zipf_cdf();
    let mut truth = Truth {
        seed: config.seed,
        cameras: cameras.len() as u64,
        first_timestamp_ms: config.start_ms,
        ..Truth::default()
    };
    let step = config.window_ms.max(1) as f64 / config.events.max(1) as f64;
    let resend_p = config.duplicate_rate / (1.0 - config.duplicate_rate).max(f64::EPSILON);
    // Re-sends wait in a min-heap keyed by the line they are due at.
    let mut pending: BinaryHeap<Reverse<(u64, bool, Vec<u8>)>> = BinaryHeap::new();
    let mut line = Vec::with_capacity(256);
    let mut emitted_events = 0u64;
    let mut position = 0u64;
    while emitted_events < config.events || !pending.is_empty() {
        position += 1;
        line.clear();
        let due = pending
            .peek()
            .is_some_and(|Reverse((at, _, _))| *at <= position || emitted_events >= config.events);
        if due && let Some(Reverse((_, immediate, copy))) = pending.pop() {
            line.extend_from_slice(&copy);
            if immediate {
                truth.immediate_duplicates += 1;
            } else {
                truth.late_duplicates += 1;
            }
        } else if rng.f64() < config.malformed_rate {
            let kind = MALFORMED[rng.usize(..MALFORMED.len())];
            let ts = config.start_ms + (emitted_events as f64 * step) as i64;
            let id = rng.i64(1..i64::MAX);
            match kind {
                "not_json" => line.extend_from_slice(b"{\"detection_oid\": 1, \"video_camera"),
                "wrong_type" => {
                    let _ = write!(
                        line,
                        "{{\"detection_oid\":\"{id}\",\"video_camera_oid\":1,\"geographical_location_oid\":1,\"item_name\":\"car\",\"timestamp_detected\":{ts}}}"
                    );
                }
                "missing_field" => {
                    let _ = write!(
                        line,
                        "{{\"detection_oid\":{id},\"geographical_location_oid\":1,\"item_name\":\"car\",\"timestamp_detected\":{ts}}}"
                    );
                }
                "empty_item_name" => write_event(&mut line, id, 1, 1, "", ts),
                "timestamp_in_seconds" => write_event(&mut line, id, 1, 1, "car", ts / 1000),
                _ => line.extend_from_slice(b"\xff\xfe{\"detection_oid\":1}"),
            }
            *truth.bad_by_kind.entry(kind).or_default() += 1;
            truth.bad_records += 1;
        } else {
            let camera = &cameras[rng.usize(..cameras.len())];
            let unknown = rng.f64() < config.unknown_location_rate;
            let location = if unknown {
                unknown_locations[rng.usize(..unknown_locations.len())]
            } else {
                camera.location
            };
            let u = rng.f64();
            let item = ITEMS[cdf.partition_point(|c| *c < u).min(ITEMS.len() - 1)];
            let jitter = rng.i64(0..=(step.max(1.0) as i64) * 4);
            let ts = config.start_ms + (emitted_events as f64 * step) as i64 + jitter;
            // Random positive int64 ids, like real oids; a collision would merge two
            // events, and the tests check there is none.
            let id = rng.i64(1_000_000_000..i64::MAX);
            write_event(&mut line, id, camera.id, location, item, ts);
            emitted_events += 1;
            truth.unique_valid_events += 1;
            truth.last_timestamp_ms = truth.last_timestamp_ms.max(ts);
            if unknown {
                truth.unknown_location_events += 1;
            }
            if rng.f64() < resend_p {
                let immediate = rng.bool();
                // Right away (a few lines on, usually the same batch), or much later
                // and relayed by a neighbouring camera of the same location, so the
                // copy carries another partition key and usually lands on another shard.
                let (delay, copy) = if immediate {
                    (1 + rng.u64(0..3), line.clone())
                } else {
                    let relay = by_location
                        .get(&camera.location)
                        .and_then(|n| n.get(rng.usize(..n.len())))
                        .copied()
                        .unwrap_or(camera.id);
                    let mut copy = Vec::with_capacity(line.len());
                    write_event(&mut copy, id, relay, location, item, ts);
                    (5_000 + rng.u64(0..50_000), copy)
                };
                pending.push(Reverse((position + delay, immediate, copy)));
            }
        }
        line.push(b'\n');
        out.write_all(&line)?;
        truth.lines += 1;
    }
    truth.injected_duplicates = truth.immediate_duplicates + truth.late_duplicates;
    Ok(truth)
}
