//! Batch orchestration: decode -> claim -> quarantine -> deliver -> settle.
//!
//! Invariants (see README "How duplicates are settled"):
//! - every record ends in exactly one [`Fate`];
//! - nothing at or after the first failure is delivered or quarantined by this
//!   invocation, because Kinesis redelivers from the lowest failed sequence number;
//! - an event's own earlier claim never turns it into a duplicate unless something
//!   says it was delivered (a `delivered` mark, or a checkpoint covering it).
//!
//! A KPL aggregated record is split first (see [`crate::kpl`]): each of its user
//! records is a unit of its own through every step, and the cut never falls
//! inside an aggregate, so a failure of any of its user records reports the
//! aggregate's sequence number and the whole aggregate is retried.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use futures::stream;

use crate::dataset_b::DatasetB;
use crate::decode::{Rejection, decode_bytes, enrich};
use crate::kpl;
use crate::metrics::BatchStats;
use crate::model::{InputRecord, OutputEvent};
use crate::ports::{
    Checkpoint, ClaimOutcome, ClaimRequest, ClaimStore, EventSink, ExistingClaim, QuarantineStore,
};
use crate::quarantine::{self, BadRecord};
use crate::retry::{Retrier, RetryCounters, RetryPolicy};
use crate::seq::sequence_le;
use crate::time::{Clock, Deadline, MS_PER_SECOND};

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
    pub dedup_window_secs: i64,
    pub claim_concurrency: usize,
    pub retry: RetryPolicy,
    pub quarantine_prefix: String,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            dedup_window_secs: 86_400,
            claim_concurrency: 64,
            retry: RetryPolicy::default(),
            quarantine_prefix: "quarantine/".into(),
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
}

/// Per-record progress inside one shard's batch.
enum Step<'a> {
    Replayed,
    Rejected(Rejection),
    Valid(OutputEvent<'a>),
    Claimed {
        event: OutputEvent<'a>,
        reprocessed: bool,
    },
    Duplicate(DuplicateKind),
    Failed,
    Quarantined,
    Delivered {
        unknown_location: bool,
    },
    /// Claimed, not delivered by this invocation: the claim must be released.
    Unsent,
}

enum ClaimResult<E> {
    NotStarted,
    Done(Result<ClaimOutcome, E>),
}

/// One user record: a plain Kinesis record, one user record of a KPL aggregate,
/// or a corrupt aggregate (which is quarantined whole).
struct Unit<'a> {
    /// Index of its Kinesis record in the shard's batch.
    rec: usize,
    data: &'a [u8],
    /// Position inside its KPL aggregate; `None` for a plain record.
    sub: Option<u32>,
    /// Why a KPL aggregate could not be split.
    corrupt: Option<kpl::KplError>,
}

/// What one Kinesis record became.
struct RecordOutcome {
    fate: Fate,
    /// Per user record of a split KPL aggregate; empty otherwise.
    user_fates: Vec<Fate>,
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
        let retrier = Retrier {
            policy: self.config.retry,
            deadline,
            clock: &self.clock,
            counters: &counters,
        };
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
            let outcomes = self.process_shard(&shard, &retrier, &mut stats).await;
            for (i, o) in idx.into_iter().zip(outcomes) {
                fates[i] = o.fate;
                user_fates[i] = o.user_fates;
            }
        }
        stats.retries = counters.retries();
        stats.throttled = counters.throttled();
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
        records: &[&InputRecord],
        retrier: &Retrier<'_>,
        stats: &mut BatchStats,
    ) -> Vec<RecordOutcome> {
        let Some(first) = records.first() else {
            return Vec::new();
        };
        let shard = first.shard_id.as_str();
        let batch_first = first.sequence_number.as_str();
        let now_secs = self.clock.now_ms().div_euclid(MS_PER_SECOND);
        let expires_at = now_secs + self.config.dedup_window_secs;

        // Split KPL aggregates: from here on, everything works on user records
        // ("units"); `starts[r]` is the first unit of Kinesis record `r`.
        let (mut units, starts, split) = expand(records, stats);
        let n = units.len();

        // 0. Has an earlier invocation of this batch settled a prefix of it?
        let covered = match retrier
            .run(|| self.store.get_checkpoint(shard, batch_first, now_secs))
            .await
        {
            Ok(Some(cp)) => starts[covered_prefix(records, &cp.last_sequence)],
            Ok(None) => 0,
            Err(e) => {
                tracing::warn!(error = %chain(&e), shard, "checkpoint read failed; whole batch retried");
                return outcomes(&starts, &split, vec![Fate::Retry; n]);
            }
        };

        // 1. Decode, validate, enrich; 2. settle in-batch duplicates in memory.
        let mut seen = HashSet::with_capacity(n);
        let mut steps: Vec<Step<'_>> = units
            .iter_mut()
            .enumerate()
            .map(|(i, u)| {
                if i < covered {
                    return Step::Replayed;
                }
                if let Some(e) = u.corrupt.take() {
                    return Step::Rejected(Rejection::Aggregate(e));
                }
                let r = records[u.rec];
                match decode_bytes(u.data, r.arrival_ms).map(|e| enrich(e, r, &self.locations)) {
                    Err(why) => Step::Rejected(why),
                    Ok(e) if !seen.insert(e.detection_oid) => {
                        Step::Duplicate(DuplicateKind::InBatch)
                    }
                    Ok(e) => Step::Valid(e),
                }
            })
            .collect();

        // 3. Claim, concurrently; claims past a failure are not started.
        let units = &units;
        // The cut only ever falls on a Kinesis record's first unit: Kinesis
        // retries whole records, aggregates included.
        let align = |cut: usize| units.get(cut).map_or(cut, |u| starts[u.rec]);
        let owners: Vec<String> = units
            .iter()
            .map(|u| {
                let r = records[u.rec];
                match u.sub {
                    None => r.owner(),
                    Some(k) => r.user_record_owner(k),
                }
            })
            .collect();
        let mut event_ids: Vec<Option<i64>> = vec![None; n];
        let to_claim: Vec<(usize, i64)> = steps
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Step::Valid(e) => Some((i, e.detection_oid)),
                _ => None,
            })
            .collect();
        for (i, id) in &to_claim {
            event_ids[*i] = Some(*id);
        }
        let lowest_failed = AtomicUsize::new(n);
        let results: Vec<(usize, ClaimResult<S::Error>)> = stream::iter(to_claim)
            .map(|(i, event_id)| {
                let owner = owners[i].as_str();
                let lowest_failed = &lowest_failed;
                async move {
                    if i > lowest_failed.load(Ordering::Relaxed) || retrier.out_of_time() {
                        lowest_failed.fetch_min(i, Ordering::Relaxed);
                        return (i, ClaimResult::NotStarted);
                    }
                    let req = ClaimRequest {
                        event_id,
                        owner,
                        batch_first_sequence: batch_first,
                        now_secs,
                        expires_at,
                    };
                    let out = retrier.run(|| self.store.claim(&req)).await;
                    if out.is_err() {
                        lowest_failed.fetch_min(i, Ordering::Relaxed);
                    }
                    (i, ClaimResult::Done(out))
                }
            })
            .buffer_unordered(self.config.claim_concurrency.max(1))
            .collect()
            .await;

        let mut lookups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut claim_error = None;
        for (i, result) in results {
            let step = std::mem::replace(&mut steps[i], Step::Failed);
            let Step::Valid(event) = step else {
                continue;
            };
            steps[i] = match result {
                ClaimResult::NotStarted => Step::Failed,
                ClaimResult::Done(Err(e)) => {
                    claim_error.get_or_insert(e);
                    Step::Failed
                }
                ClaimResult::Done(Ok(ClaimOutcome::Claimed { took_over_expired })) => {
                    if took_over_expired {
                        stats.expired_claims_taken_over += 1;
                    }
                    Step::Claimed {
                        event,
                        reprocessed: false,
                    }
                }
                ClaimResult::Done(Ok(ClaimOutcome::Held(held))) => {
                    match judge_held(&held, &owners[i], batch_first) {
                        Held::Duplicate(kind) => Step::Duplicate(kind),
                        Held::Reprocess => Step::Claimed {
                            event,
                            reprocessed: true,
                        },
                        Held::AskCheckpoint(batch) => {
                            lookups.entry(batch).or_default().push(i);
                            Step::Claimed {
                                event,
                                reprocessed: true,
                            }
                        }
                    }
                }
            };
        }
        if let Some(e) = &claim_error {
            tracing::warn!(error = %chain(e), shard, "claim failed; records from it onwards retried");
        }

        // Own claims from another batch: did that batch's checkpoint cover them?
        for (batch, idx) in lookups {
            match retrier
                .run(|| self.store.get_checkpoint(shard, &batch, now_secs))
                .await
            {
                Ok(cp) => {
                    for i in idx {
                        let covered = cp.as_ref().is_some_and(|cp| {
                            sequence_le(&records[units[i].rec].sequence_number, &cp.last_sequence)
                        });
                        if covered {
                            steps[i] = Step::Duplicate(DuplicateKind::Replayed);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %chain(&e), shard, "checkpoint lookup failed");
                    for i in idx {
                        steps[i] = Step::Failed;
                    }
                }
            }
        }

        #[cfg(feature = "fault-points")]
        crate::fault_points::hit("after-claims");

        let mut cut = first_index(&steps, |s| matches!(s, Step::Failed)).unwrap_or(n);
        if retrier.out_of_time() {
            cut = cut.min(first_unsettled(&steps).unwrap_or(n));
        }
        cut = align(cut);
        if cut < n && retrier.out_of_time() {
            tracing::warn!(
                shard,
                unfinished = n - cut,
                "invocation deadline near; unfinished records reported for retry"
            );
        }

        // 4. Deliver claimed events before the cut, in order.
        let mut send_idx = Vec::new();
        let mut events = Vec::new();
        for (i, step) in steps.iter_mut().enumerate().take(cut) {
            if let Step::Claimed { .. } = step
                && let Step::Claimed { event, reprocessed } = std::mem::replace(step, Step::Unsent)
            {
                if reprocessed {
                    stats.reprocessed += 1;
                }
                send_idx.push(i);
                events.push(event);
            }
        }
        let mut accepted = Vec::new();
        if !events.is_empty() {
            let delivery = self.sink.deliver(&events, retrier).await;
            if let Some(e) = &delivery.error {
                tracing::warn!(error = %chain(e), shard, "delivery incomplete; records from the first rejected one retried");
            }
            if let Some(k) = delivery.accepted.iter().position(|ok| !ok) {
                cut = align(cut.min(send_idx[k]));
            }
            for ((i, event), ok) in send_idx.iter().zip(&events).zip(&delivery.accepted) {
                if *ok {
                    accepted.push((*i, event.geographical_location.is_none()));
                }
            }
        }
        drop(events);

        // 5. Quarantine bad records before the cut, one object per batch. After
        // delivery, so a delivery failure never leaves quarantined records behind
        // the cut (they would be quarantined again on the retry).
        if retrier.out_of_time()
            && let Some(first_bad) = first_index(&steps, |s| matches!(s, Step::Rejected(_)))
        {
            cut = align(cut.min(first_bad));
        }
        let bad: Vec<usize> = (0..cut)
            .filter(|i| matches!(steps[*i], Step::Rejected(_)))
            .collect();
        if let Some(&first_bad) = bad.first() {
            let entries: Vec<BadRecord<'_>> = bad
                .iter()
                .filter_map(|i| match &steps[*i] {
                    Step::Rejected(why) => Some(BadRecord {
                        record: records[units[*i].rec],
                        user_record: units[*i].sub.map(|k| (k, units[*i].data)),
                        why,
                    }),
                    _ => None,
                })
                .collect();
            let key = quarantine::object_key(
                &self.config.quarantine_prefix,
                records[units[first_bad].rec],
            );
            let written = match quarantine::render_bad(&entries) {
                Ok(body) => retrier
                    .run(|| self.quarantine.put_object(&key, body.clone()))
                    .await
                    .map_err(|e| tracing::warn!(error = %chain(&e), key, "quarantine write failed; bad records retried"))
                    .is_ok(),
                Err(e) => {
                    tracing::warn!(error = %chain(&e), "quarantine render failed");
                    false
                }
            };
            if written {
                for &i in &bad {
                    if let Step::Rejected(why) = &steps[i] {
                        *stats.quarantine_reasons.entry(why.code()).or_default() += 1;
                    }
                    steps[i] = Step::Quarantined;
                }
            } else {
                cut = align(cut.min(first_bad));
            }
        }

        // Accepted events before the final cut are delivered; after it, Firehose
        // has them even though an earlier record failed, so the retry must skip them.
        let mut accepted_after_cut = Vec::new();
        for (i, unknown_location) in accepted {
            if i < cut {
                steps[i] = Step::Delivered { unknown_location };
            } else {
                accepted_after_cut.push(i);
                steps[i] = Step::Failed;
            }
        }

        // 6. Settle: marks for accepted-after-cut, releases for undelivered claims.
        let to_release: Vec<usize> = steps
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, Step::Unsent | Step::Claimed { .. }))
            .map(|(i, _)| i)
            .collect();
        let marks = stream::iter(accepted_after_cut.iter().map(|&i| (i, true)))
            .chain(stream::iter(to_release.iter().map(|&i| (i, false))))
            .map(|(i, mark)| {
                let owner = owners[i].as_str();
                let id = event_ids[i];
                async move {
                    let ok = match id {
                        Some(id) if mark => retrier
                            .run(|| self.store.mark_delivered(id, owner))
                            .await
                            .is_ok(),
                        Some(id) => retrier.run(|| self.store.release(id, owner)).await.is_ok(),
                        None => false,
                    };
                    (mark, ok)
                }
            })
            .buffer_unordered(self.config.claim_concurrency.max(1))
            .collect::<Vec<_>>()
            .await;
        for (mark, ok) in marks {
            if !ok {
                if mark {
                    stats.marks_failed += 1;
                } else {
                    stats.releases_failed += 1;
                }
            }
        }
        if stats.marks_failed > 0 {
            tracing::warn!(
                shard,
                marks_failed = stats.marks_failed,
                "delivered marks failed: those events will be delivered again on retry"
            );
        }

        // 7. One checkpoint item says how far this batch is settled.
        if cut > covered {
            let cp = Checkpoint {
                shard_id: shard.to_string(),
                first_sequence: batch_first.to_string(),
                last_sequence: records[units[cut - 1].rec].sequence_number.clone(),
                expires_at,
            };
            if let Err(e) = retrier.run(|| self.store.put_checkpoint(&cp)).await {
                stats.checkpoint_failed += 1;
                tracing::warn!(error = %chain(&e), shard, "checkpoint write failed");
            }
        }

        let unit_fates = steps
            .into_iter()
            .enumerate()
            .map(|(i, step)| {
                if i >= cut {
                    return Fate::Retry;
                }
                match step {
                    Step::Replayed => Fate::Duplicate(DuplicateKind::Replayed),
                    Step::Duplicate(k) => Fate::Duplicate(k),
                    Step::Quarantined => Fate::Quarantined,
                    Step::Delivered { unknown_location } => {
                        if unknown_location {
                            stats.unknown_location += 1;
                        }
                        Fate::Delivered
                    }
                    // Unreachable by construction: unsettled work always moves the cut.
                    _ => {
                        tracing::error!(
                            index = i,
                            "unsettled record before the cut; reporting it for retry"
                        );
                        Fate::Retry
                    }
                }
            })
            .collect();
        outcomes(&starts, &split, unit_fates)
    }
}

/// Splits the KPL aggregates of a shard's batch into units, one per user record.
/// Returns the units, the first unit of each record (plus the total at the end),
/// and which records are split aggregates.
fn expand<'a>(
    records: &[&'a InputRecord],
    stats: &mut BatchStats,
) -> (Vec<Unit<'a>>, Vec<usize>, Vec<bool>) {
    let mut units = Vec::with_capacity(records.len());
    let mut starts = Vec::with_capacity(records.len() + 1);
    let mut split = vec![false; records.len()];
    for (rec, r) in records.iter().enumerate() {
        starts.push(units.len());
        let data = r.data.as_slice();
        if !kpl::is_aggregated(data) {
            units.push(Unit {
                rec,
                data,
                sub: None,
                corrupt: None,
            });
            continue;
        }
        stats.kpl_aggregates += 1;
        match kpl::deaggregate(data) {
            Ok(users) => {
                split[rec] = true;
                stats.kpl_user_records += users.len() as u64;
                units.extend(users.into_iter().enumerate().map(|(k, u)| Unit {
                    rec,
                    data: u.data,
                    // At most MAX_USER_RECORDS_PER_AGGREGATE: always fits.
                    sub: Some(u32::try_from(k).unwrap_or(u32::MAX)),
                    corrupt: None,
                }));
            }
            Err(e) => units.push(Unit {
                rec,
                data,
                sub: None,
                corrupt: Some(e),
            }),
        }
    }
    starts.push(units.len());
    (units, starts, split)
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
    Reprocess,
    AskCheckpoint(String),
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
        _ => Held::Reprocess,
    }
}

fn covered_prefix(records: &[&InputRecord], last: &str) -> usize {
    records
        .iter()
        .take_while(|r| sequence_le(&r.sequence_number, last))
        .count()
}

fn first_index(steps: &[Step<'_>], pred: impl Fn(&Step<'_>) -> bool) -> Option<usize> {
    steps.iter().position(pred)
}

fn first_unsettled(steps: &[Step<'_>]) -> Option<usize> {
    first_index(steps, |s| {
        matches!(
            s,
            Step::Rejected(_) | Step::Claimed { .. } | Step::Valid(_) | Step::Failed
        )
    })
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
