//! Forwarding: the valid events to the stream with `PutRecords`, re-sending only
//! the entries that failed, as the retry policy and the deadline allow.

use sightline_core::Clock;
use sightline_core::batch::chain;
use sightline_core::cost::{CostModel, Op};
use sightline_core::delivery::send_resending_failures;
use sightline_core::ports::StreamPort;
use sightline_core::retry::{Classify, ErrorClass, Retrier, RetryCounters};
use sightline_core::time::Deadline;

use crate::Ingest;
use crate::check::Valid;

/// What the stream made of the valid events.
#[derive(Debug, Default)]
pub struct Forwarded {
    /// Per valid event, in order: true when the stream accepted it.
    pub accepted: Vec<bool>,
    /// Entries or calls the stream throttled, over every attempt.
    pub throttled: u64,
    /// Why some were not accepted, when some were not (the error itself is logged).
    pub failure: Option<ErrorClass>,
}

pub async fn forward<P: StreamPort, C: Clock>(
    app: &Ingest<P, C>,
    valid: &[Valid<'_>],
    deadline: Deadline,
) -> Forwarded {
    if valid.is_empty() {
        return Forwarded::default();
    }
    let counters = RetryCounters::default();
    let costs = CostModel::default();
    let retrier =
        Retrier::new(app.retry, deadline, &app.clock, &counters, &costs).for_op(Op::Stream, 0);
    let (accepted, error) = send_resending_failures(&retrier, valid.len(), |idx| {
        let entries: Vec<(&str, &[u8])> = idx
            .iter()
            .map(|k| (valid[*k].key.as_str(), valid[*k].data))
            .collect();
        async move { app.stream.put_records(&entries).await }
    })
    .await;
    let failure = error.map(|e| {
        let failed = accepted.iter().filter(|ok| !**ok).count();
        tracing::warn!(error = %chain(&e), failed, "events not forwarded to Kinesis");
        e.class()
    });
    Forwarded {
        accepted,
        throttled: counters.throttled(),
        failure,
    }
}
