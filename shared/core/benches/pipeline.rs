#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! Throughput of the per-record path, and of a whole batch over in-memory ports.
//!   cargo bench -p sightline-core --bench pipeline
//!   cargo bench -p sightline-core --bench pipeline -- kpl   (KPL de-aggregation alone and in a batch)

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sightline_core::decode::decode_and_enrich;
use sightline_core::delivery::PackedSink;
use sightline_core::fakes::{ManualClock, MemoryFirehose, MemoryQuarantine, MemoryStore};
use sightline_core::kpl::deaggregate;
use sightline_core::kpl::testing::{len_field, varint, wrap};
use sightline_core::packing::PackConfig;
use sightline_core::{DatasetB, Deadline, InputRecord, Pipeline, PipelineConfig};

const NOW_MS: i64 = 1_763_900_000_000;
const ITEMS: [&str; 8] = [
    "person",
    "car",
    "bicycle",
    "motorcycle",
    "bus",
    "truck",
    "dog",
    "backpack",
];

fn records(n: usize, offset: i64) -> Vec<InputRecord> {
    (0..n)
        .map(|i| {
            let id = offset + i as i64 + 1;
            InputRecord {
                shard_id: "shardId-000000000003".into(),
                sequence_number: format!("4966{:052}", offset as usize + i),
                arrival_ms: NOW_MS,
                data: format!(
                    r#"{{"detection_oid":{id},"video_camera_oid":{},"geographical_location_oid":{},"item_name":"{}","timestamp_detected":{}}}"#,
                    1_000 + id % 400,
                    id % 55 + 1,
                    ITEMS[(id % 8) as usize],
                    NOW_MS - id % 3_600_000
                )
                .into_bytes(),
            }
        })
        .collect()
}

fn per_record(c: &mut Criterion) {
    let locations = DatasetB::embedded().expect("dataset B");
    let batch = records(10_000, 0);
    let mut g = c.benchmark_group("decode_validate_enrich_encode");
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.bench_function("10k_records_one_core", |b| {
        let mut out = Vec::with_capacity(2 << 20);
        b.iter(|| {
            out.clear();
            for r in &batch {
                if let Ok(e) = decode_and_enrich(r, &locations) {
                    let _ = e.write_json_line(&mut out);
                }
            }
            black_box(out.len())
        });
    });
    g.bench_function("10k_records_decode_only", |b| {
        b.iter(|| {
            let mut ok = 0usize;
            for r in &batch {
                ok += usize::from(sightline_core::decode::decode(r).is_ok());
            }
            black_box(ok)
        });
    });
    g.finish();
}

/// Packs records' payloads into one KPL aggregate (8 partition keys), as the KPL would.
fn kpl_aggregate(payloads: &[InputRecord], sequence: usize) -> InputRecord {
    let mut proto = Vec::new();
    for k in 0..8 {
        len_field(1, format!("camera-{k}").as_bytes(), &mut proto);
    }
    for (i, r) in payloads.iter().enumerate() {
        let mut m = vec![0x08];
        varint((i % 8) as u64, &mut m);
        len_field(3, &r.data, &mut m);
        len_field(3, &m, &mut proto);
    }
    let data = wrap(&proto);
    InputRecord {
        shard_id: "shardId-000000000003".into(),
        sequence_number: format!("4966{sequence:052}"),
        arrival_ms: NOW_MS,
        data,
    }
}

fn kpl(c: &mut Criterion) {
    let agg = kpl_aggregate(&records(1_000, 0), 0);
    let mut g = c.benchmark_group("kpl");
    g.throughput(Throughput::Elements(1_000));
    g.bench_function("deaggregate_1000_user_records", |b| {
        b.iter(|| black_box(deaggregate(black_box(&agg.data)).map(|u| u.len())));
    });
    g.finish();
}

fn whole_batch(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("handler_in_memory_ports");
    g.throughput(Throughput::Elements(1_000));
    g.measurement_time(Duration::from_secs(8));
    let mut offset = 0i64;
    g.bench_function("1000_record_batch", |b| {
        b.iter_batched(
            || {
                offset += 1_000;
                let p = Pipeline::new(
                    MemoryStore::default(),
                    PackedSink::new(MemoryFirehose::default(), PackConfig::default()),
                    MemoryQuarantine::default(),
                    ManualClock::at(NOW_MS),
                    DatasetB::embedded().expect("dataset B"),
                    PipelineConfig::default(),
                );
                (p, records(1_000, offset))
            },
            |(p, batch)| {
                let report = rt.block_on(p.process(&batch, Deadline::none()));
                black_box(report.stats.delivered)
            },
            BatchSize::LargeInput,
        );
    });
    let mut offset = 50_000_000i64;
    g.bench_function("1000_user_records_in_10_kpl_aggregates", |b| {
        b.iter_batched(
            || {
                offset += 1_000;
                let p = Pipeline::new(
                    MemoryStore::default(),
                    PackedSink::new(MemoryFirehose::default(), PackConfig::default()),
                    MemoryQuarantine::default(),
                    ManualClock::at(NOW_MS),
                    DatasetB::embedded().expect("dataset B"),
                    PipelineConfig::default(),
                );
                let plain = records(1_000, offset);
                let batch: Vec<InputRecord> = plain
                    .chunks(100)
                    .enumerate()
                    .map(|(i, chunk)| kpl_aggregate(chunk, offset as usize + i))
                    .collect();
                (p, batch)
            },
            |(p, batch)| {
                let report = rt.block_on(p.process(&batch, Deadline::none()));
                black_box(report.stats.delivered)
            },
            BatchSize::LargeInput,
        );
    });
    g.finish();
}

criterion_group!(benches, per_record, kpl, whole_batch);
criterion_main!(benches);
