#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! Sequence 6: the memory one batch can take. A batch of KPL aggregates can
//! expand to hundreds of thousands of tiny bad user records; the function must
//! handle it well inside its deployed memory (512 MB), whatever the quarantine
//! receives. The heap is measured by this test binary's own allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use dedup_enrich::{App, handle_with_report};
use sightline_core::delivery::PackedSink;
use sightline_core::fakes::{FakeError, MemoryFirehose, MemoryStore};
use sightline_core::kpl::testing::{len_field, varint, wrap};
use sightline_core::packing::PackConfig;
use sightline_core::ports::QuarantineStore;
use sightline_core::time::TokioClock;
use sightline_core::{DatasetB, InputRecord, Pipeline, PipelineConfig};

mod sim;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A quarantine that counts lines and objects, keeping no bodies (a test store
/// that kept 200 MB of quarantine lines would measure itself).
#[derive(Default)]
struct CountingQuarantine {
    lines: AtomicU64,
    objects: AtomicU64,
    largest: AtomicUsize,
}

impl QuarantineStore for CountingQuarantine {
    type Error = FakeError;

    async fn put_object(&self, _key: &str, body: Vec<u8>) -> Result<(), FakeError> {
        let lines = body.iter().filter(|b| **b == b'\n').count() as u64;
        self.lines.fetch_add(lines, Ordering::Relaxed);
        self.objects.fetch_add(1, Ordering::Relaxed);
        self.largest.fetch_max(body.len(), Ordering::Relaxed);
        Ok(())
    }
}

/// An aggregate of `n` one-byte user records that are not JSON.
fn aggregate_of_bad_records(n: usize) -> Vec<u8> {
    let mut proto = Vec::new();
    len_field(1, b"k", &mut proto);
    let mut user = Vec::new();
    for _ in 0..n {
        user.clear();
        user.push(0x08); // partition key index
        varint(0, &mut user);
        len_field(3, b"x", &mut user);
        len_field(3, &user, &mut proto);
    }
    wrap(&proto)
}

#[tokio::test(start_paused = true)]
async fn a_batch_of_six_hundred_thousand_bad_user_records_stays_within_the_deployed_memory() {
    const AGGREGATES: usize = 6;
    const PER_AGGREGATE: usize = 100_000; // the reader's limit per aggregate
    let data = aggregate_of_bad_records(PER_AGGREGATE);
    let records: Vec<InputRecord> = (0..AGGREGATES)
        .map(|i| sim::record(0, i as u64 + 1, data.clone()))
        .collect();
    let payload: usize = records.iter().map(|r| r.data.len()).sum();
    // Lambda's 6 MB invocation payload carries the data base64-encoded.
    assert!(
        payload * 4 / 3 < 6_000_000,
        "{payload} bytes fit one invocation"
    );
    let event = sim::lambda_event(&records, sim::NOW_MS + 60_000);
    drop(records);

    let quarantine = Arc::new(CountingQuarantine::default());
    let app = App {
        archive: None::<dedup_enrich::Archiver<sightline_core::archive::NoArchive>>,
        pipeline: Pipeline::new(
            MemoryStore::default(),
            PackedSink::new(MemoryFirehose::default(), PackConfig::default()),
            quarantine.clone(),
            TokioClock::starting_at(sim::NOW_MS),
            DatasetB::embedded().expect("dataset B"),
            PipelineConfig::default(),
        ),
        deadline_reserve_ms: 500,
        metrics_namespace: "Sightline".into(),
        function_name: "dedup-enrich-memory".into(),
    };
    let before = CURRENT.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let (resp, report) = handle_with_report(&app, event).await;
    let peak = PEAK.load(Ordering::Relaxed) - before;
    println!(
        "{} bad user records: peak heap {:.1} MiB above the event, {} quarantine objects (largest {:.1} MiB)",
        report.stats.quarantined,
        peak as f64 / 1_048_576.0,
        quarantine.objects.load(Ordering::Relaxed),
        quarantine.largest.load(Ordering::Relaxed) as f64 / 1_048_576.0,
    );
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!(
        report.stats.quarantined,
        (AGGREGATES * PER_AGGREGATE) as u64
    );
    assert_eq!(
        quarantine.lines.load(Ordering::Relaxed),
        (AGGREGATES * PER_AGGREGATE) as u64
    );
    assert!(
        quarantine.largest.load(Ordering::Relaxed)
            <= sightline_core::quarantine::QUARANTINE_OBJECT_MAX_BYTES + 4_096,
        "objects are bounded"
    );
    assert!(
        peak < 128 * 1_048_576,
        "the batch took {:.1} MiB of heap; the function has 512 MB",
        peak as f64 / 1_048_576.0
    );
}
