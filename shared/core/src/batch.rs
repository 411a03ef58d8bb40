//! Batch orchestration. One shard's batch goes through named phases over one
//! state ([`ShardBatch`]), in this order:
//!
//! 1. **read checkpoint**: how far an earlier invocation of this same batch got;
//! 2. **decode**: split KPL aggregates, validate, enrich, settle in-batch duplicates;
//! 3. **claim**: one conditional put per new event, concurrently;
//! 4. **resolve**: an own claim made by another batch is judged by that batch's checkpoint;
//! 5. **deliver**: the claimed events before the cut, to the sink;
//! 6. **quarantine**: the bad records before the cut, in bounded objects;
//! 7. **settle**: the final fate of every unit, from the cut;
//! 8. **write checkpoint**: the settled prefix, derived from those fates;
//! 9. **mark and release** (failure path only): `delivered` marks where a retry
//!    could not otherwise tell that an event was delivered, and releases of
//!    claims whose events were not delivered.
//!
//! Invariants (see README "How duplicates are settled"):
//! - every record ends in exactly one [`Fate`];
//! - units before the cut are settled, units at or after it are reported for
//!   retry, and no checkpoint covers a record reported for retry;
//! - an event's own earlier claim never turns it into a duplicate unless something
//!   says it was delivered (a `delivered` mark, or a checkpoint covering it).
//!
//! Time: every call is bounded by the time left minus what the steps after it
//! are expected to cost (measured latency, [`crate::cost`]). Delivery starts only
//! when the budget still covers it, the quarantine put and the checkpoint write,
//! so the invocation answers before Lambda's deadline instead of being killed
//! after the sink accepted events. A put already sent may run into the time
//! kept for the later steps (not past the deadline's reserve): cut short, its
//! events would be sent again if Firehose had taken them.
//!
//! A KPL aggregated record is split first (see [`crate::kpl`]): each of its user
//! records is a unit of its own through every step, and the cut never falls
//! inside an aggregate, so a failure of any of its user records reports the
//! aggregate's sequence number and the whole aggregate is retried.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use futures::stream;

use crate::cost::{CostModel, Op};
use crate::dataset_b::DatasetB;
use crate::decode::{Rejection, decode_bytes_with, enrich};
use crate::kpl;
use crate::metrics::BatchStats;
use crate::model::{InputRecord, OutputEvent};
use crate::ports::{
    Checkpoint, ClaimOutcome, ClaimRequest, ClaimStore, EventSink, ExistingClaim, QuarantineStore,
};
use crate::quarantine::{self, BadRecord, QUARANTINE_OBJECT_MAX_BYTES};
use crate::retry::{CallError, Classify, Retrier, RetryCounters, RetryPolicy};
use crate::seq::sequence_le;
use crate::time::{Clock, Deadline, MS_PER_SECOND};

/// How many calls, each taking up to a full attempt timeout, an invocation must
/// be able to wait out for its first claim to start: the checkpoint read, then
/// the claim and what the claim gate keeps in hand after it (the Firehose put,
/// the quarantine put, the checkpoint write and one round of marks). With less
/// time than this many attempt timeouts after the reserve, an invocation in
/// which every call is slow settles nothing and spends one of the mapping's
/// retries.
pub const SLOW_CALLS_TO_SETTLE: i64 = 6;

/// Where one input record ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Delivered,
    Duplicate(DuplicateKind),
    Quarantined,
    /// Reported as a batch item failure: Kinesis will redeliver it.
    Retry,
    /// A KPL aggregate whose user records were all settled; their own fates are
    /// in [`BatchReport::user_fates`]. (A corrupt aggregate is `Quarantined`, a
    /// retried one `Retry`.)
    Deaggregated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DuplicateKind {
    /// An earlier record in the same batch carries the same event.
    InBatch,
    /// Another record (an upstream re-send) holds the claim.
    Upstream,
    /// This very record was settled by an earlier invocation.
    Replayed,
}

/// Tunables of the batch logic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineConfig {
    /// How long claims, checkpoints and marks live (the TTL).
    pub dedup_window_secs: i64,
    pub claim_concurrency: usize,
    pub retry: RetryPolicy,
    pub quarantine_prefix: String,
    /// Events older than this before their arrival are quarantined (`too_old`).
    pub max_event_age_ms: i64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            dedup_window_secs: crate::defaults::DEDUP_WINDOW_SECS,
            claim_concurrency: crate::defaults::CLAIM_CONCURRENCY,
            retry: RetryPolicy::default(),
            quarantine_prefix: crate::defaults::QUARANTINE_PREFIX.into(),
            max_event_age_ms: crate::decode::DEFAULT_MAX_EVENT_AGE_MS,
        }
    }
}

/// The outcome of one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchReport {
    /// Per input record, in input order.
    pub fates: Vec<Fate>,
    /// Sequence numbers to report as `batchItemFailures`, in input order. A KPL
    /// aggregate is reported under its own sequence number when any of its user
    /// records failed.
    pub failed_sequences: Vec<String>,
    /// Counts of user records (see [`BatchStats`]).
    pub stats: BatchStats,
    /// Per input record, in input order: for a KPL aggregate that was split, the
    /// fate of each of its user records, in aggregate order (all `Retry` when the
    /// aggregate is retried); empty for a plain record and a corrupt aggregate.
    pub user_fates: Vec<Vec<Fate>>,
}

/// The batch logic over its ports.
pub struct Pipeline<S, K, Q, C> {
    pub store: S,
    pub sink: K,
    pub quarantine: Q,
    pub clock: C,
    pub locations: DatasetB<'static>,
    pub config: PipelineConfig,
    /// Measured latency of each port, kept across the invocations of a process.
    pub costs: CostModel,
}

impl<S, K, Q, C> Pipeline<S, K, Q, C> {
    pub fn new(
        store: S,
        sink: K,
        quarantine: Q,
        clock: C,
        locations: DatasetB<'static>,
        config: PipelineConfig,
    ) -> Self {
        Pipeline {
            store,
            sink,
            quarantine,
            clock,
            locations,
            config,
            costs: CostModel::default(),
        }
    }
}

/// Where a claimed event's claim came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClaimFrom {
    /// Made by this invocation.
    Fresh,
    /// This record's own earlier claim, made by this same batch.
    Own,
    /// This record's own earlier claim, made by another batch (Kinesis retried
    /// from a later point, or bisected the batch) whose checkpoint does not
    /// cover it. Once delivered it is marked, so a later cut of the batch that
    /// also finds that claim does not deliver it again.
    Foreign,
}

/// Per-unit progress through the phases.
enum Step<'a> {
    /// Covered by this batch's own checkpoint.
    Replayed,
    /// Failed validation, or a KPL aggregate that cannot be split. The reason
    /// is worked out again when the quarantine object is written, so a batch of
    /// many bad records holds no message per record.
    Rejected,
    Duplicate(DuplicateKind),
    /// Decoded and new in the batch: to be claimed.
    Valid(Box<OutputEvent<'a>>),
    /// Ours to deliver.
    Claimed {
        event: Box<OutputEvent<'a>>,
        from: ClaimFrom,
    },
    /// Its claim failed (`late`: was not made in time).
    Unclaimed {
        late: bool,
    },
    /// Accepted by the sink.
    Sent {
        unknown_location: bool,
        from: ClaimFrom,
    },
    /// Claimed, not accepted by the sink: its claim is released.
    Unsent,
    Quarantined {
        reason: &'static str,
    },
}

impl Step<'_> {
    /// True when the unit has its final fate (if it stays before the cut).
    fn is_final(&self) -> bool {
        matches!(
            self,
            Step::Replayed | Step::Duplicate(_) | Step::Sent { .. } | Step::Quarantined { .. }
        )
    }
}

/// One user record: a plain Kinesis record, one user record of a KPL aggregate,
/// or a corrupt aggregate (which is quarantined whole).
struct Unit<'a> {
    data: &'a [u8],
    /// Position inside its KPL aggregate; `None` for a plain record.
    sub: Option<u32>,
}

/// Which Kinesis record each unit belongs to.
struct Layout {
    /// Per unit, the index of its Kinesis record in the shard's batch.
    rec: Vec<u32>,
    /// Per Kinesis record, its first unit; plus the number of units at the end.
    starts: Vec<usize>,
}

impl Layout {
    fn record_of(&self, unit: usize) -> usize {
        self.rec.get(unit).map_or(0, |r| *r as usize)
    }

    /// The first unit of `unit`'s Kinesis record (`unit` itself past the end).
    fn record_start(&self, unit: usize) -> usize {
        match self.rec.get(unit) {
            Some(r) => self.starts[*r as usize],
            None => unit,
        }
    }
}

/// Units before the cut get their final fate in this invocation; units at or
/// after it are reported for retry. It only ever moves back, and always onto
/// the first unit of a Kinesis record, because Kinesis retries whole records
/// (aggregates included). It remembers why it stands where it does.
#[derive(Debug, Clone, Copy)]
struct Cut {
    at: usize,
    why: Why,
}

/// Why records are reported for retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    /// Nothing is (the cut is past the end).
    Nothing,
    /// A call failed.
    Failure,
    /// The invocation's time ran out (a call not started, or cut short).
    Deadline,
}

impl Cut {
    fn at(self) -> usize {
        self.at
    }

    fn back_to(&mut self, unit: usize, layout: &Layout, why: Why) {
        let to = layout.record_start(unit);
        if to < self.at {
            self.at = to;
            self.why = why;
        }
    }
}

/// What one Kinesis record became.
struct RecordOutcome {
    fate: Fate,
    /// Per user record of a split KPL aggregate; empty otherwise.
    user_fates: Vec<Fate>,
}

/// A failure path's bookkeeping call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fixup {
    Mark,
    Release,
}

/// One shard's batch on its way through the phases.
struct ShardBatch<'a> {
    records: Vec<&'a InputRecord>,
    shard: &'a str,
    batch_first: &'a str,
    units: Vec<Unit<'a>>,
    layout: Layout,
    /// Per Kinesis record: a KPL aggregate that was split.
    split: Vec<bool>,
    /// Corrupt aggregates, by unit.
    corrupt: HashMap<usize, kpl::KplError>,
    steps: Vec<Step<'a>>,
    /// Units covered by this batch's own checkpoint.
    covered: usize,
    cut: Cut,
    now_secs: i64,
    expires_at: i64,
    /// Own claims made by other batches, by the batch (its first sequence).
    lookups: BTreeMap<String, Vec<usize>>,
    /// Expired claims this invocation took over.
    took_over: u64,
}

impl<S, K, Q, C> Pipeline<S, K, Q, C>
where
    S: ClaimStore,
    K: EventSink,
    Q: QuarantineStore,
    C: Clock,
{
    /// Processes one Lambda batch. Never fails as a whole: problems become
    /// per-record fates.
    pub async fn process(&self, records: &[InputRecord], deadline: Deadline) -> BatchReport {
        let started = self.clock.now_ms();
        let counters = RetryCounters::default();
        let retrier = Retrier::new(
            self.config.retry,
            deadline,
            &self.clock,
            &counters,
            &self.costs,
        );
        let mut stats = BatchStats::default();
        let mut fates = vec![Fate::Retry; records.len()];
        let mut user_fates: Vec<Vec<Fate>> = vec![Vec::new(); records.len()];
        // A Kinesis batch holds one shard; group anyway so a mixed batch stays correct.
        let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
        for (i, r) in records.iter().enumerate() {
            match groups.iter_mut().find(|(s, _)| *s == r.shard_id) {
                Some((_, idx)) => idx.push(i),
                None => groups.push((&r.shard_id, vec![i])),
            }
        }
        for (_, idx) in groups {
            let shard: Vec<&InputRecord> = idx.iter().map(|i| &records[*i]).collect();
            let outcomes = self.process_shard(shard, &retrier, &mut stats).await;
            for (i, o) in idx.into_iter().zip(outcomes) {
                fates[i] = o.fate;
                user_fates[i] = o.user_fates;
            }
        }
        stats.retries = counters.retries();
        stats.throttled = counters.throttled();
        stats.timed_out = counters.timed_out();
        // Every user record is counted once: a split aggregate by its user records.
        let counted = fates.iter().zip(&user_fates).flat_map(|(f, users)| {
            if users.is_empty() {
                std::slice::from_ref(f)
            } else {
                users.as_slice()
            }
        });
        for f in counted {
            match f {
                Fate::Delivered => stats.delivered += 1,
                Fate::Quarantined => stats.quarantined += 1,
                Fate::Retry => stats.failed += 1,
                Fate::Duplicate(kind) => {
                    stats.duplicates += 1;
                    match kind {
                        DuplicateKind::InBatch => stats.duplicates_in_batch += 1,
                        DuplicateKind::Upstream => stats.duplicates_upstream += 1,
                        DuplicateKind::Replayed => stats.duplicates_replayed += 1,
                    }
                }
                // A Kinesis record's fate only: its user records are counted instead.
                Fate::Deaggregated => continue,
            }
            stats.received += 1;
        }
        stats.duration_ms = u64::try_from(self.clock.now_ms() - started).unwrap_or(0);
        let failed_sequences = records
            .iter()
            .zip(&fates)
            .filter(|(_, f)| **f == Fate::Retry)
            .map(|(r, _)| r.sequence_number.clone())
            .collect();
        BatchReport {
            fates,
            failed_sequences,
            stats,
            user_fates,
        }
    }

    async fn process_shard(
        &self,
        records: Vec<&InputRecord>,
        retrier: &Retrier<'_>,
        stats: &mut BatchStats,
    ) -> Vec<RecordOutcome> {
        let Some(mut batch) = ShardBatch::new(records, self, stats) else {
            return Vec::new();
        };
        if !self.read_checkpoint(&mut batch, retrier).await {
            return batch.all_retried();
        }
        self.decode(&mut batch);
        let bad = batch.steps.iter().any(|s| matches!(s, Step::Rejected));
        self.claim(&mut batch, retrier, bad).await;
        self.resolve(&mut batch, retrier, bad).await;
        #[cfg(feature = "fault-points")]
        crate::fault_points::hit("after-claims");
        self.deliver(&mut batch, retrier, stats).await;
        self.quarantine(&mut batch, retrier).await;
        let fixups = batch.settle(stats);
        self.write_checkpoint(&batch, retrier, stats).await;
        self.mark_and_release(&batch, &fixups, retrier, stats).await;
        batch.outcomes(stats)
    }

    /// What delivery, the quarantine put, the checkpoint write and one round of
    /// failure-path marks are expected to cost: kept in hand by every call
    /// before delivery.
    fn downstream_ms(&self, retrier: &Retrier<'_>, bad: bool) -> i64 {
        retrier.cost_ms(Op::Sink) + self.after_delivery_ms(retrier, bad)
    }

    /// The quarantine put (when there are bad records), the checkpoint write and
    /// one round of marks: kept in hand by delivery.
    fn after_delivery_ms(&self, retrier: &Retrier<'_>, bad: bool) -> i64 {
        let quarantine = if bad {
            retrier.cost_ms(Op::Quarantine)
        } else {
            0
        };
        quarantine + 2 * retrier.cost_ms(Op::Store)
    }

    /// Phase 1: has an earlier invocation of this batch settled a prefix of it?
    /// False when the checkpoint cannot be read (the whole batch is retried).
    async fn read_checkpoint(&self, b: &mut ShardBatch<'_>, retrier: &Retrier<'_>) -> bool {
        let read = retrier
            .for_op(Op::Store, 0)
            .run(|| {
                self.store
                    .get_checkpoint(b.shard, b.batch_first, b.now_secs)
            })
            .await;
        match read {
            Ok(Some(cp)) => {
                let prefix = b
                    .records
                    .iter()
                    .take_while(|r| sequence_le(&r.sequence_number, &cp.last_sequence))
                    .count();
                b.covered = b.layout.starts[prefix];
                true
            }
            Ok(None) => true,
            Err(e) => {
                tracing::warn!(error = %chain(&e), shard = b.shard, "checkpoint read failed; whole batch retried");
                false
            }
        }
    }

    /// Phase 2: decode, validate, enrich; settle in-batch duplicates in memory.
    fn decode<'a>(&self, b: &mut ShardBatch<'a>) {
        let mut seen = HashSet::with_capacity(b.units.len());
        for (i, u) in b.units.iter().enumerate() {
            let step = if i < b.covered {
                Step::Replayed
            } else if b.corrupt.contains_key(&i) {
                Step::Rejected
            } else {
                let r = b.records[b.layout.record_of(i)];
                match decode_bytes_with(u.data, r.arrival_ms, self.config.max_event_age_ms) {
                    Err(_) => Step::Rejected,
                    Ok(e) if !seen.insert(e.detection_oid) => {
                        Step::Duplicate(DuplicateKind::InBatch)
                    }
                    Ok(e) => Step::Valid(Box::new(enrich(e, r, &self.locations))),
                }
            };
            b.steps.push(step);
        }
    }

    /// Phase 3: claim every valid unit: concurrently, one conditional put each, or
    /// in one call where the store can. Claims past a failure are not started, nor
    /// are claims once the time left no longer covers one more claim and
    /// everything after it.
    async fn claim(&self, b: &mut ShardBatch<'_>, retrier: &Retrier<'_>, bad: bool) {
        let downstream = self.downstream_ms(retrier, bad);
        let claims = retrier.for_op(Op::Store, downstream);
        let to_claim: Vec<(usize, i64)> = b
            .steps
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Step::Valid(e) => Some((i, e.detection_oid)),
                _ => None,
            })
            .collect();
        let (results, claim_error) = if S::CLAIMS_IN_ONE_CALL {
            self.claim_in_one_call(b, &claims, downstream, to_claim)
                .await
        } else {
            self.claim_each(b, &claims, downstream, to_claim).await
        };
        let mut not_started = 0usize;
        for (i, result) in results {
            let Step::Valid(event) =
                std::mem::replace(&mut b.steps[i], Step::Unclaimed { late: false })
            else {
                continue;
            };
            b.steps[i] = match result {
                Claim::NotStarted => {
                    not_started += 1;
                    Step::Unclaimed { late: true }
                }
                Claim::Failed { late } => Step::Unclaimed { late },
                Claim::Done(ClaimOutcome::Claimed { took_over_expired }) => {
                    if took_over_expired {
                        b.took_over += 1;
                    }
                    Step::Claimed {
                        event,
                        from: ClaimFrom::Fresh,
                    }
                }
                Claim::Done(ClaimOutcome::Held(held)) => {
                    match judge_held(&held, &b.owner(i), b.batch_first) {
                        Held::Duplicate(kind) => Step::Duplicate(kind),
                        Held::Own => Step::Claimed {
                            event,
                            from: ClaimFrom::Own,
                        },
                        Held::AskCheckpoint(batch) => {
                            b.lookups.entry(batch).or_default().push(i);
                            Step::Claimed {
                                event,
                                from: ClaimFrom::Foreign,
                            }
                        }
                    }
                }
            };
        }
        if let Some(e) = &claim_error {
            tracing::warn!(error = %chain(e), shard = b.shard, "claim failed; records from it onwards retried");
        }
        if not_started > 0 && claim_error.is_none() {
            tracing::warn!(
                shard = b.shard,
                not_started,
                "invocation deadline near: claims not started; those records are retried"
            );
        }
        b.cut_at_unclaimed();
    }

    /// One conditional put per event, up to `claim_concurrency` in flight.
    async fn claim_each(
        &self,
        b: &ShardBatch<'_>,
        claims: &Retrier<'_>,
        downstream: i64,
        to_claim: Vec<(usize, i64)>,
    ) -> Claims<S::Error> {
        let lowest_failed = AtomicUsize::new(b.units.len());
        let results: Vec<Attempt<S::Error>> = stream::iter(to_claim)
            .map(|(i, event_id)| {
                let lowest_failed = &lowest_failed;
                async move {
                    let room = claims.allows(claims.cost_ms(Op::Store) + downstream);
                    if i > lowest_failed.load(Ordering::Relaxed) || !room {
                        lowest_failed.fetch_min(i, Ordering::Relaxed);
                        return (i, Ok(Claim::NotStarted));
                    }
                    let owner = b.owner(i);
                    let req = b.claim_request(event_id, &owner);
                    let out = claims.run(|| self.store.claim(&req)).await;
                    if out.is_err() {
                        lowest_failed.fetch_min(i, Ordering::Relaxed);
                    }
                    (i, out.map(Claim::Done))
                }
            })
            .buffer_unordered(self.config.claim_concurrency.max(1))
            .collect()
            .await;
        let mut claim_error = None;
        let results = results
            .into_iter()
            .map(|(i, r)| match r {
                Ok(claim) => (i, claim),
                Err(e) => {
                    let late = e.is_deadline();
                    claim_error.get_or_insert(e);
                    (i, Claim::Failed { late })
                }
            })
            .collect();
        (results, claim_error)
    }

    /// The whole batch's claims in one store call (the embedded store).
    async fn claim_in_one_call(
        &self,
        b: &ShardBatch<'_>,
        claims: &Retrier<'_>,
        downstream: i64,
        to_claim: Vec<(usize, i64)>,
    ) -> Claims<S::Error> {
        if to_claim.is_empty() {
            return (Vec::new(), None);
        }
        if !claims.allows(claims.cost_ms(Op::Store) + downstream) {
            let results = to_claim.into_iter().map(|(i, _)| (i, Claim::NotStarted));
            return (results.collect(), None);
        }
        let owners: Vec<String> = to_claim.iter().map(|(i, _)| b.owner(*i)).collect();
        let reqs: Vec<ClaimRequest<'_>> = to_claim
            .iter()
            .zip(&owners)
            .map(|((_, event_id), owner)| b.claim_request(*event_id, owner))
            .collect();
        match claims.run(|| self.store.claim_all(&reqs)).await {
            Ok(outcomes) if outcomes.len() == reqs.len() => {
                let results = to_claim.into_iter().zip(outcomes);
                (
                    results.map(|((i, _), o)| (i, Claim::Done(o))).collect(),
                    None,
                )
            }
            Ok(outcomes) => {
                // A store that breaks the port's contract: trust none of it.
                tracing::error!(
                    shard = b.shard,
                    asked = reqs.len(),
                    answered = outcomes.len(),
                    "claim_all answered a different number of claims; records retried"
                );
                let results = to_claim
                    .into_iter()
                    .map(|(i, _)| (i, Claim::Failed { late: false }));
                (results.collect(), None)
            }
            Err(e) => {
                let late = e.is_deadline();
                let results = to_claim
                    .into_iter()
                    .map(|(i, _)| (i, Claim::Failed { late }));
                (results.collect(), Some(e))
            }
        }
    }

    /// Phase 4: own claims made by another batch. Did that batch's checkpoint
    /// cover them? Then they are replays; otherwise they are delivered here.
    async fn resolve(&self, b: &mut ShardBatch<'_>, retrier: &Retrier<'_>, bad: bool) {
        let lookups = std::mem::take(&mut b.lookups);
        let reads = retrier.for_op(Op::Store, self.downstream_ms(retrier, bad));
        for (batch, mut idx) in lookups {
            idx.sort_unstable();
            match reads
                .run(|| self.store.get_checkpoint(b.shard, &batch, b.now_secs))
                .await
            {
                Ok(Some(cp)) => {
                    // That batch settled every record from its first through
                    // `last_sequence`: the claimed ones asked about, and any bad
                    // record in that range (a bisected half of a batch that
                    // quarantined it must not quarantine it again).
                    for (i, step) in b.steps.iter_mut().enumerate() {
                        let seq = &b.records[b.layout.record_of(i)].sequence_number;
                        let in_range = sequence_le(&cp.first_sequence, seq)
                            && sequence_le(seq, &cp.last_sequence);
                        let asked = idx.binary_search(&i).is_ok();
                        if in_range && (asked || matches!(step, Step::Rejected)) {
                            *step = Step::Duplicate(DuplicateKind::Replayed);
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %chain(&e), shard = b.shard, "checkpoint lookup failed");
                    let late = e.is_deadline();
                    for i in idx {
                        b.steps[i] = Step::Unclaimed { late };
                    }
                }
            }
        }
        b.cut_at_unclaimed();
    }

    /// Phase 5: deliver the claimed events before the cut, in order. Starts only
    /// when the time left covers one delivery attempt and everything after it;
    /// each attempt keeps that time in hand.
    async fn deliver(&self, b: &mut ShardBatch<'_>, retrier: &Retrier<'_>, stats: &mut BatchStats) {
        let cut = b.cut.at();
        let claimed: Vec<usize> = (0..cut)
            .filter(|i| matches!(b.steps[*i], Step::Claimed { .. }))
            .collect();
        let Some(&first) = claimed.first() else {
            return;
        };
        let bad = (0..cut).any(|i| matches!(b.steps[i], Step::Rejected));
        let keep = self.after_delivery_ms(retrier, bad);
        if !retrier.allows(retrier.cost_ms(Op::Sink) + keep) {
            tracing::warn!(
                shard = b.shard,
                "invocation deadline near: no time to deliver; claimed records retried"
            );
            b.cut.back_to(first, &b.layout, Why::Deadline);
            return;
        }
        let mut events = Vec::with_capacity(claimed.len());
        let mut from = Vec::with_capacity(claimed.len());
        for &i in &claimed {
            if let Step::Claimed { event, from: f } =
                std::mem::replace(&mut b.steps[i], Step::Unsent)
            {
                events.push(*event);
                from.push(f);
            }
        }
        let delivery = self
            .sink
            .deliver(
                &events,
                &retrier.for_op(Op::Sink, keep).finishing_sent_attempts(),
            )
            .await;
        if let Some(e) = &delivery.error {
            tracing::warn!(error = %chain(e), shard = b.shard, "delivery incomplete; records from the first rejected one retried");
        }
        let why = if delivery.error.as_ref().is_some_and(Classify::is_deadline) {
            Why::Deadline
        } else {
            Why::Failure
        };
        for (k, ((&i, event), f)) in claimed.iter().zip(&events).zip(from).enumerate() {
            if delivery.accepted.get(k).copied().unwrap_or(false) {
                if f != ClaimFrom::Fresh {
                    stats.reprocessed += 1;
                }
                b.steps[i] = Step::Sent {
                    unknown_location: event.geographical_location.is_none(),
                    from: f,
                };
            } else {
                b.cut.back_to(i, &b.layout, why);
            }
        }
    }

    /// Phase 6: quarantine the bad records before the cut. Always tried when
    /// there are some: a put's attempts are bounded by the time left minus the
    /// checkpoint write. Objects hold at most about
    /// [`QUARANTINE_OBJECT_MAX_BYTES`], so a batch of many bad records never holds
    /// more than one object in memory. A KPL aggregate's bad user records start
    /// an object of their own and are split inside the aggregate when needed;
    /// an object's key names its first and last bad record, so a retry that
    /// writes the same key writes the same lines, and a retry of another span
    /// (a bisected batch) adds an object rather than replacing one with fewer
    /// lines. A failed object moves the cut to its record's start and later
    /// objects are not written.
    async fn quarantine(&self, b: &mut ShardBatch<'_>, retrier: &Retrier<'_>) {
        let bad: Vec<usize> = (0..b.cut.at())
            .filter(|i| matches!(b.steps[*i], Step::Rejected))
            .collect();
        if bad.is_empty() {
            return;
        }
        let puts = retrier.for_op(Op::Quarantine, 2 * retrier.cost_ms(Op::Store));
        let mut body = Vec::new();
        let mut in_object: Vec<(usize, &'static str)> = Vec::new();
        for (k, &i) in bad.iter().enumerate() {
            let rec = b.layout.record_of(i);
            let why = b.rejection(i, self.config.max_event_age_ms);
            let line = BadRecord {
                record: b.records[rec],
                user_record: b.units[i].sub.map(|s| (s, b.units[i].data)),
                why: &why,
            };
            if let Err(e) = quarantine::render_line(&mut body, &line) {
                tracing::warn!(error = %chain(&e), "quarantine render failed; bad records retried");
                b.cut.back_to(
                    in_object.first().map_or(i, |f| f.0),
                    &b.layout,
                    Why::Failure,
                );
                return;
            }
            in_object.push((i, why.code()));
            let next = bad.get(k + 1).copied();
            let next_rec = next.map(|j| b.layout.record_of(j));
            let aggregate_next = next.is_some_and(|j| b.units[j].sub.is_some());
            let close = match next_rec {
                None => true,
                // Inside one record: split only a big aggregate.
                Some(r) if r == rec => body.len() >= QUARANTINE_OBJECT_MAX_BYTES,
                // At a record boundary: when big enough, or before an aggregate.
                Some(_) => body.len() >= QUARANTINE_OBJECT_MAX_BYTES || aggregate_next,
            };
            if !close {
                continue;
            }
            let position = |u: usize| (b.records[b.layout.record_of(u)], b.units[u].sub);
            let first = in_object[0].0;
            let key = quarantine::object_key_span(
                &self.config.quarantine_prefix,
                position(first),
                position(i),
            );
            let sent = std::mem::take(&mut body);
            let put = puts
                .run(|| self.quarantine.put_object(&key, sent.clone()))
                .await;
            if let Err(e) = put {
                tracing::warn!(error = %chain(&e), key, "quarantine write failed; bad records from it onwards retried");
                let why = if e.is_deadline() {
                    Why::Deadline
                } else {
                    Why::Failure
                };
                b.cut.back_to(first, &b.layout, why);
                return;
            }
            for (q, reason) in in_object.drain(..) {
                b.steps[q] = Step::Quarantined { reason };
            }
        }
    }

    /// Phase 8: one checkpoint item says how far this batch is settled. Written
    /// before any mark or release, and derived from the settled prefix only.
    async fn write_checkpoint(
        &self,
        b: &ShardBatch<'_>,
        retrier: &Retrier<'_>,
        stats: &mut BatchStats,
    ) {
        let cut = b.cut.at();
        if cut <= b.covered || cut == 0 {
            return;
        }
        let cp = Checkpoint {
            shard_id: b.shard.to_string(),
            first_sequence: b.batch_first.to_string(),
            last_sequence: b.records[b.layout.record_of(cut - 1)]
                .sequence_number
                .clone(),
            expires_at: b.expires_at,
        };
        if let Err(e) = retrier
            .for_op(Op::Store, 0)
            .run(|| self.store.put_checkpoint(&cp))
            .await
        {
            stats.checkpoint_failed += 1;
            tracing::warn!(error = %chain(&e), shard = b.shard, "checkpoint write failed");
        }
    }

    /// Phase 9 (failure path): marks for accepted events a retry would otherwise
    /// deliver again, releases for claims whose events were not delivered.
    async fn mark_and_release(
        &self,
        b: &ShardBatch<'_>,
        fixups: &[(usize, Fixup)],
        retrier: &Retrier<'_>,
        stats: &mut BatchStats,
    ) {
        if fixups.is_empty() {
            return;
        }
        let calls = retrier.for_op(Op::Store, 0);
        let results = stream::iter(fixups.iter().copied())
            .map(|(i, fix)| {
                let calls = &calls;
                async move {
                    let owner = b.owner(i);
                    let Some(id) = b.event_id(i) else {
                        return (fix, false);
                    };
                    let ok = match fix {
                        Fixup::Mark => calls
                            .run(|| self.store.mark_delivered(id, &owner))
                            .await
                            .is_ok(),
                        Fixup::Release => {
                            calls.run(|| self.store.release(id, &owner)).await.is_ok()
                        }
                    };
                    (fix, ok)
                }
            })
            .buffer_unordered(self.config.claim_concurrency.max(1))
            .collect::<Vec<_>>()
            .await;
        for (fix, ok) in results {
            match (fix, ok) {
                (Fixup::Mark, true) => stats.marks_written += 1,
                (Fixup::Mark, false) => stats.marks_failed += 1,
                (Fixup::Release, true) => {}
                (Fixup::Release, false) => stats.releases_failed += 1,
            }
        }
        if stats.marks_failed > 0 {
            tracing::warn!(
                shard = b.shard,
                marks_failed = stats.marks_failed,
                "delivered marks failed: those events will be delivered again on retry"
            );
        }
    }
}

impl<'a> ShardBatch<'a> {
    /// Splits the KPL aggregates of a shard's batch into units, one per user
    /// record. `None` for an empty batch.
    fn new<S, K, Q, C: Clock>(
        records: Vec<&'a InputRecord>,
        pipeline: &Pipeline<S, K, Q, C>,
        stats: &mut BatchStats,
    ) -> Option<Self> {
        let first = *records.first()?;
        let now_secs = pipeline.clock.now_ms().div_euclid(MS_PER_SECOND);
        let mut units = Vec::with_capacity(records.len());
        let mut rec_of = Vec::with_capacity(records.len());
        let mut starts = Vec::with_capacity(records.len() + 1);
        let mut split = vec![false; records.len()];
        let mut corrupt = HashMap::new();
        for (rec, r) in records.iter().enumerate() {
            starts.push(units.len());
            // At most 10,000 records per batch: always fits.
            let rec32 = u32::try_from(rec).unwrap_or(u32::MAX);
            let data = r.data.as_slice();
            if !kpl::is_aggregated(data) {
                units.push(Unit { data, sub: None });
                rec_of.push(rec32);
                continue;
            }
            stats.kpl_aggregates += 1;
            match kpl::deaggregate(data) {
                Ok(users) => {
                    split[rec] = true;
                    stats.kpl_user_records += users.len() as u64;
                    for (k, u) in users.into_iter().enumerate() {
                        units.push(Unit {
                            data: u.data,
                            // At most MAX_USER_RECORDS_PER_AGGREGATE: always fits.
                            sub: Some(u32::try_from(k).unwrap_or(u32::MAX)),
                        });
                        rec_of.push(rec32);
                    }
                }
                Err(e) => {
                    corrupt.insert(units.len(), e);
                    units.push(Unit { data, sub: None });
                    rec_of.push(rec32);
                }
            }
        }
        starts.push(units.len());
        let n = units.len();
        Some(ShardBatch {
            shard: first.shard_id.as_str(),
            batch_first: first.sequence_number.as_str(),
            records,
            layout: Layout {
                rec: rec_of,
                starts,
            },
            units,
            split,
            corrupt,
            steps: Vec::with_capacity(n),
            covered: 0,
            cut: Cut {
                at: n,
                why: Why::Nothing,
            },
            now_secs,
            expires_at: now_secs + pipeline.config.dedup_window_secs,
            lookups: BTreeMap::new(),
            took_over: 0,
        })
    }

    /// The claim owner of a unit: `shardId/sequenceNumber`, plus `/index` for a
    /// user record of an aggregate. Built when needed, never stored per unit.
    fn owner(&self, unit: usize) -> String {
        let r = self.records[self.layout.record_of(unit)];
        match self.units[unit].sub {
            None => r.owner(),
            Some(k) => r.user_record_owner(k),
        }
    }

    /// This batch's claim on `event_id` for `owner`.
    fn claim_request<'r>(&'r self, event_id: i64, owner: &'r str) -> ClaimRequest<'r> {
        ClaimRequest {
            event_id,
            owner,
            batch_first_sequence: self.batch_first,
            now_secs: self.now_secs,
            expires_at: self.expires_at,
        }
    }

    /// The event id of a unit that was claimed (decoded again: ids are not kept).
    fn event_id(&self, unit: usize) -> Option<i64> {
        let r = self.records[self.layout.record_of(unit)];
        decode_bytes_with(self.units[unit].data, r.arrival_ms, i64::MAX)
            .ok()
            .map(|e| e.detection_oid)
    }

    /// Why a rejected unit was rejected (decoded again: reasons are not kept).
    fn rejection(&self, unit: usize, max_age_ms: i64) -> Rejection {
        if let Some(e) = self.corrupt.get(&unit) {
            return Rejection::Aggregate(e.clone());
        }
        let r = self.records[self.layout.record_of(unit)];
        match decode_bytes_with(self.units[unit].data, r.arrival_ms, max_age_ms) {
            Err(why) => why,
            // Unreachable: it was rejected by the same rules; say so rather than panic.
            Ok(_) => Rejection::InvalidJson {
                detail: "rejected earlier, valid on a second reading".into(),
            },
        }
    }

    /// Moves the cut back to the first unit whose claim was not made.
    fn cut_at_unclaimed(&mut self) {
        let first = self.steps.iter().enumerate().find_map(|(i, s)| match s {
            Step::Unclaimed { late } => Some((i, *late)),
            _ => None,
        });
        if let Some((i, late)) = first {
            let why = if late { Why::Deadline } else { Why::Failure };
            self.cut.back_to(i, &self.layout, why);
        }
    }

    /// Phase 7: every unit before the cut has its final fate (the cut moves back
    /// to any that has not, which only a bug could cause); accepted events at or
    /// after it need a `delivered` mark, as do delivered events whose claim was
    /// another batch's; claims not delivered are released.
    fn settle(&mut self, stats: &mut BatchStats) -> Vec<(usize, Fixup)> {
        stats.expired_claims_taken_over += self.took_over;
        if let Some(i) = (0..self.cut.at()).find(|i| !self.steps[*i].is_final()) {
            tracing::error!(
                shard = self.shard,
                index = i,
                "unsettled record before the cut; reporting it and the rest for retry"
            );
            self.cut.back_to(i, &self.layout, Why::Failure);
        }
        let cut = self.cut.at();
        if cut < self.units.len() {
            tracing::warn!(
                shard = self.shard,
                unfinished = self.units.len() - cut,
                "records reported for retry"
            );
        }
        self.steps
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Step::Sent { from, .. } if i >= cut || *from == ClaimFrom::Foreign => {
                    Some((i, Fixup::Mark))
                }
                Step::Unsent | Step::Claimed { .. } => Some((i, Fixup::Release)),
                _ => None,
            })
            .collect()
    }

    /// The whole batch reported for retry (nothing was started).
    fn all_retried(&self) -> Vec<RecordOutcome> {
        outcomes(
            &self.layout.starts,
            &self.split,
            vec![Fate::Retry; self.units.len()],
        )
    }

    /// Folds the units' fates into one outcome per Kinesis record.
    fn outcomes(self, stats: &mut BatchStats) -> Vec<RecordOutcome> {
        let cut = self.cut.at();
        if self.cut.why == Why::Deadline {
            stats.deadline_retried += (self.units.len() - cut) as u64;
        }
        let unit_fates = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, step)| {
                if i >= cut {
                    return Fate::Retry;
                }
                match step {
                    Step::Replayed => Fate::Duplicate(DuplicateKind::Replayed),
                    Step::Duplicate(k) => Fate::Duplicate(*k),
                    Step::Quarantined { reason } => {
                        *stats.quarantine_reasons.entry(reason).or_default() += 1;
                        Fate::Quarantined
                    }
                    Step::Sent {
                        unknown_location, ..
                    } => {
                        if *unknown_location {
                            stats.unknown_location += 1;
                        }
                        Fate::Delivered
                    }
                    // `settle` moved the cut before any other step.
                    _ => Fate::Retry,
                }
            })
            .collect();
        outcomes(&self.layout.starts, &self.split, unit_fates)
    }
}

/// Folds the fates of units back into one outcome per Kinesis record.
fn outcomes(starts: &[usize], split: &[bool], unit_fates: Vec<Fate>) -> Vec<RecordOutcome> {
    split
        .iter()
        .enumerate()
        .map(|(rec, &split)| {
            let fates = unit_fates
                .get(starts[rec]..starts[rec + 1])
                .unwrap_or_default();
            if !split {
                return RecordOutcome {
                    fate: fates.first().copied().unwrap_or(Fate::Retry),
                    user_fates: Vec::new(),
                };
            }
            if fates.contains(&Fate::Retry) {
                // The cut never splits an aggregate; if it somehow did, retry all of it.
                RecordOutcome {
                    fate: Fate::Retry,
                    user_fates: vec![Fate::Retry; fates.len()],
                }
            } else {
                RecordOutcome {
                    fate: Fate::Deaggregated,
                    user_fates: fates.to_vec(),
                }
            }
        })
        .collect()
}

enum Held {
    Duplicate(DuplicateKind),
    Own,
    AskCheckpoint(String),
}

/// One unit's claim attempt.
type Attempt<E> = (usize, Result<Claim, CallError<E>>);
/// The claim phase's answer per unit, and the first error that stopped a claim.
type Claims<E> = (Vec<(usize, Claim)>, Option<CallError<E>>);

/// What the claim phase did for one unit.
enum Claim {
    /// Not attempted: past a failure, or no time left for it.
    NotStarted,
    /// The put (or the batch's one call) failed; `late` when it ran out of time.
    Failed {
        late: bool,
    },
    Done(ClaimOutcome),
}

/// Reads a live claim that blocked ours.
fn judge_held(held: &ExistingClaim, me: &str, batch_first: &str) -> Held {
    if held.owner != me {
        return Held::Duplicate(DuplicateKind::Upstream);
    }
    if held.delivered {
        return Held::Duplicate(DuplicateKind::Replayed);
    }
    match &held.batch_first_sequence {
        // This batch's own checkpoint was read up front and did not cover it.
        Some(b) if b != batch_first => Held::AskCheckpoint(b.clone()),
        _ => Held::Own,
    }
}

/// Renders an error with its sources: `outer: inner: root`.
pub fn chain<'a>(e: &'a (dyn std::error::Error + 'static)) -> impl fmt::Display + 'a {
    struct Chain<'a>(&'a (dyn std::error::Error + 'static));
    impl fmt::Display for Chain<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{}", self.0)?;
            let mut src = self.0.source();
            while let Some(s) = src {
                write!(f, ": {s}")?;
                src = s.source();
            }
            Ok(())
        }
    }
    Chain(e)
}
