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
    ring: [i64; WINDOW],
    len: usize,
    next: usize,
    /// The largest of the remembered samples: estimates outnumber records two to one.
    slowest: i64,
}

/// Recent attempt durations per port.
#[derive(Debug, Default)]
pub struct CostModel {
    slots: [Mutex<Samples>; OPS],
}

impl CostModel {
    /// Records one attempt of a call to `op` that took `took_ms` (answered,
    /// failed or timed out).
    pub fn record(&self, op: Op, took_ms: i64) {
        let mut s = lock(&self.slots[op.slot()]);
        let at = s.next;
        s.ring[at] = took_ms.max(0);
        s.next = (at + 1) % WINDOW;
        s.len = (s.len + 1).min(WINDOW);
        s.slowest = s.ring[..s.len].iter().copied().max().unwrap_or(0);
    }

    /// What one attempt of a call to `op` may take: 1.5 times the slowest of the
    /// last attempts, plus slack; `fallback_ms` before anything was measured.
    pub fn estimate(&self, op: Op, fallback_ms: i64) -> i64 {
        let (len, slowest) = {
            let s = lock(&self.slots[op.slot()]);
            (s.len, s.slowest)
        };
        if len == 0 {
            return fallback_ms;
        }
        slowest.saturating_mul(HEADROOM_NUM) / HEADROOM_DEN + SLACK_MS
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
        assert_eq!(c.estimate(Op::Store, 777), 777, "nothing measured yet");
        c.record(Op::Store, 100);
        c.record(Op::Store, 300);
        c.record(Op::Store, 200);
        assert_eq!(c.estimate(Op::Store, 777), 460);
        assert_eq!(c.estimate(Op::Sink, 50), 50, "ports are apart");
    }

    #[test]
    fn old_samples_age_out_of_the_window() {
        let c = CostModel::default();
        c.record(Op::Sink, 5_000);
        for _ in 0..WINDOW {
            c.record(Op::Sink, 20);
        }
        assert_eq!(c.estimate(Op::Sink, 0), 40);
        assert_eq!(c.measured(Op::Sink), WINDOW);
    }
}
