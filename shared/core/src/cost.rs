//! What the remaining steps of a batch cost: the measured latency of recent
//! calls to each port, kept for the life of the process, so the time held back
//! before the deadline follows how slow the services are right now instead of a
//! fixed reserve.

use std::sync::Mutex;

/// The ports whose calls are timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// The claim store: claims, checkpoints, marks, releases (DynamoDB).
    Store,
    /// The event sink (Firehose `PutRecordBatch`).
    Sink,
    /// The quarantine store (S3 `PutObject`).
    Quarantine,
    /// A stream (Kinesis `PutRecords`).
    Stream,
}

const OPS: usize = 4;
/// Recent attempts remembered per port.
const WINDOW: usize = 16;
/// Samples older than this no longer count. Without it, a port whose estimate
/// keeps its own calls from starting (one slow Firehose put, then no claim fits
/// before the deadline, so no put is made) would never be measured again: every
/// invocation would settle nothing.
pub const MAX_SAMPLE_AGE_MS: i64 = 30_000;
/// Headroom over the slowest recent attempt.
const HEADROOM_NUM: i64 = 3;
const HEADROOM_DEN: i64 = 2;
/// Added to every estimate: scheduling and the answer's own way back.
const SLACK_MS: i64 = 10;

impl Op {
    fn slot(self) -> usize {
        match self {
            Op::Store => 0,
            Op::Sink => 1,
            Op::Quarantine => 2,
            Op::Stream => 3,
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Samples {
    /// (duration, when it ended), both in milliseconds.
    ring: [(i64, i64); WINDOW],
    len: usize,
    next: usize,
    /// The last answer of `slowest_since` and the `now_ms` it was for: a batch
    /// asks twice per claim, mostly within one millisecond. `record` keeps it
    /// current.
    cached: Option<(i64, Option<i64>)>,
}

impl Samples {
    /// The slowest sample that ended at most `MAX_SAMPLE_AGE_MS` before `now_ms`.
    fn slowest_since(&self, now_ms: i64) -> Option<i64> {
        // Durations are never negative (`record` clamps them), so -1 is "none";
        // a plain max without branches, as it runs once per claim.
        let mut slowest = -1i64;
        for &(took, at) in &self.ring[..self.len] {
            let fresh = now_ms.saturating_sub(at) <= MAX_SAMPLE_AGE_MS;
            slowest = slowest.max(if fresh { took } else { -1 });
        }
        (slowest >= 0).then_some(slowest)
    }
}

/// Recent attempt durations per port.
#[derive(Debug, Default)]
pub struct CostModel {
    slots: [Mutex<Samples>; OPS],
}

impl CostModel {
    /// Records one attempt of a call to `op` that took `took_ms` (answered,
    /// failed or timed out) and ended at `at_ms`.
    pub fn record(&self, op: Op, took_ms: i64, at_ms: i64) {
        let took = took_ms.max(0);
        let mut s = lock(&self.slots[op.slot()]);
        let at = s.next;
        let evicted = (s.len == WINDOW).then_some(s.ring[at].0);
        s.ring[at] = (took, at_ms);
        s.next = (at + 1) % WINDOW;
        s.len = (s.len + 1).min(WINDOW);
        // Keep the cached answer current rather than dropping it: a batch records
        // once per claim and estimates twice.
        if let Some((now, slowest)) = s.cached {
            let fresh = now.saturating_sub(at_ms) <= MAX_SAMPLE_AGE_MS;
            let slowest = if fresh && slowest.is_none_or(|m| took >= m) {
                // No older sample can beat the new one.
                Some(took)
            } else if evicted.is_some_and(|e| slowest.is_some_and(|m| e >= m)) {
                // The sample pushed out may have been the slowest: scan again.
                s.slowest_since(now)
            } else if fresh {
                slowest.max(Some(took))
            } else {
                slowest
            };
            s.cached = Some((now, slowest));
        }
    }

    /// What one attempt of a call to `op` may take, as of `now_ms`: 1.5 times the
    /// slowest of the last attempts that are not too old, plus slack;
    /// `fallback_ms` when there are none.
    pub fn estimate(&self, op: Op, fallback_ms: i64, now_ms: i64) -> i64 {
        let slowest = {
            let mut s = lock(&self.slots[op.slot()]);
            match s.cached {
                Some((at, slowest)) if at == now_ms => slowest,
                _ => {
                    let slowest = s.slowest_since(now_ms);
                    s.cached = Some((now_ms, slowest));
                    slowest
                }
            }
        };
        slowest.map_or(fallback_ms, |slowest| {
            slowest.saturating_mul(HEADROOM_NUM) / HEADROOM_DEN + SLACK_MS
        })
    }

    /// How many attempts of `op` were measured (at most the window).
    pub fn measured(&self, op: Op) -> usize {
        lock(&self.slots[op.slot()]).len
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The data is plain numbers; a panic elsewhere cannot leave it inconsistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_follows_the_slowest_recent_attempt_with_headroom() {
        let c = CostModel::default();
        assert_eq!(c.estimate(Op::Store, 777, 0), 777, "nothing measured yet");
        c.record(Op::Store, 100, 0);
        c.record(Op::Store, 300, 0);
        c.record(Op::Store, 200, 0);
        assert_eq!(c.estimate(Op::Store, 777, 0), 460);
        assert_eq!(c.estimate(Op::Sink, 50, 0), 50, "ports are apart");
    }

    #[test]
    fn an_estimate_asked_again_in_the_same_millisecond_sees_a_sample_recorded_between() {
        let c = CostModel::default();
        c.record(Op::Store, 100, 0);
        assert_eq!(c.estimate(Op::Store, 0, 5), 160);
        assert_eq!(c.estimate(Op::Store, 0, 5), 160);
        c.record(Op::Store, 300, 5);
        assert_eq!(c.estimate(Op::Store, 0, 5), 460);
        // And a later millisecond ages samples out as before.
        assert_eq!(c.estimate(Op::Store, 0, 5 + MAX_SAMPLE_AGE_MS + 1), 0);
    }

    #[test]
    fn the_cached_estimate_always_equals_a_fresh_scan_of_the_window() {
        let mut rng = fastrand::Rng::with_seed(7);
        let c = CostModel::default();
        let mut now = 0i64;
        for step in 0..20_000 {
            if rng.bool() {
                let took = rng.i64(0..400);
                c.record(Op::Sink, took, now - rng.i64(0..40_000));
            } else {
                now += rng.i64(0..3);
                let fresh = lock(&c.slots[Op::Sink.slot()]).slowest_since(now);
                let want = fresh.map_or(-1, |m| m * HEADROOM_NUM / HEADROOM_DEN + SLACK_MS);
                assert_eq!(c.estimate(Op::Sink, -1, now), want, "step {step}");
            }
        }
    }

    #[test]
    fn old_samples_age_out_of_the_window() {
        let c = CostModel::default();
        c.record(Op::Sink, 5_000, 0);
        for _ in 0..WINDOW {
            c.record(Op::Sink, 20, 0);
        }
        assert_eq!(c.estimate(Op::Sink, 0, 0), 40);
        assert_eq!(c.measured(Op::Sink), WINDOW);
    }

    #[test]
    fn a_slow_sample_stops_counting_once_it_is_too_old_even_with_no_new_calls() {
        let c = CostModel::default();
        c.record(Op::Sink, 2_500, 1_000);
        assert_eq!(c.estimate(Op::Sink, 300, 1_000 + MAX_SAMPLE_AGE_MS), 3_760);
        assert_eq!(
            c.estimate(Op::Sink, 300, 1_001 + MAX_SAMPLE_AGE_MS),
            300,
            "only the fallback is left"
        );
        c.record(Op::Sink, 50, 40_000);
        c.record(Op::Sink, 2_000, 20_000);
        assert_eq!(c.estimate(Op::Sink, 300, 45_000), 3_010, "both are recent");
        assert_eq!(
            c.estimate(Op::Sink, 300, 60_000),
            85,
            "the slow one aged out"
        );
    }
}
