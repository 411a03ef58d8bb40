//! In-memory fakes of the ports, with seeded fault injection. For unit and
//! property tests of the batch logic only; integration tests use moto.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use thiserror::Error;

use crate::delivery::{EntryFailure, RecordBatchPort};
use crate::ports::{
    Checkpoint, ClaimOutcome, ClaimRequest, ClaimStore, ExistingClaim, QuarantineStore, StreamPort,
};
use crate::retry::{Classify, ErrorClass};
use crate::time::Clock;

/// An injected failure.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("injected {op} fault ({class:?}, applied: {applied})")]
pub struct FakeError {
    pub op: &'static str,
    pub class: ErrorClass,
    /// True when the operation took effect before the error (a lost answer).
    pub applied: bool,
}

impl Classify for FakeError {
    fn class(&self) -> ErrorClass {
        self.class
    }
}

/// Per-operation fault probabilities, drawn from one seeded generator.
#[derive(Debug)]
pub struct Faults {
    rng: Mutex<fastrand::Rng>,
    rates: Mutex<HashMap<&'static str, (f64, f64)>>,
}

impl Faults {
    pub fn none() -> Self {
        Faults::seeded(0)
    }

    pub fn seeded(seed: u64) -> Self {
        Faults {
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
            rates: Mutex::new(HashMap::new()),
        }
    }

    /// `op` fails before acting with probability `before`, and acts then loses
    /// its answer with probability `after`.
    pub fn set(&self, op: &'static str, before: f64, after: f64) {
        lock(&self.rates).insert(op, (before, after));
    }

    fn draw(&self, op: &'static str) -> Option<bool> {
        let (before, after) = {
            let rates = lock(&self.rates);
            // Most fakes inject nothing: skip hashing the name. The number is
            // still drawn, so a seed gives the same faults as before.
            if rates.is_empty() {
                (0.0, 0.0)
            } else {
                rates.get(op).copied().unwrap_or((0.0, 0.0))
            }
        };
        let x = lock(&self.rng).f64();
        if x < before {
            Some(false)
        } else if x < before + after {
            Some(true)
        } else {
            None
        }
    }

    fn chance(&self, p: f64) -> bool {
        p > 0.0 && lock(&self.rng).f64() < p
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn fault(op: &'static str, applied: bool) -> FakeError {
    FakeError {
        op,
        class: ErrorClass::Transient,
        applied,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimItem {
    pub owner: String,
    pub expires_at: i64,
    pub delivered: bool,
    pub batch_first_sequence: String,
}

/// How late a fake answers: half of it before acting, half after, so a call cut
/// short by a timeout or a kill may or may not have acted, as with a real service.
#[derive(Debug, Default)]
pub struct Latency(Mutex<Duration>);

impl Latency {
    pub fn set(&self, d: Duration) {
        *lock(&self.0) = d;
    }

    fn half(&self) -> Duration {
        *lock(&self.0) / 2
    }

    async fn wait(&self) {
        let d = self.half();
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }
}

/// Counts of calls made to a fake, by operation (a handful of names: a short list
/// beats hashing each name per call).
#[derive(Debug, Default)]
pub struct CallCounts(Mutex<Vec<(&'static str, u64)>>);

impl CallCounts {
    fn add(&self, op: &'static str) {
        let mut counts = lock(&self.0);
        match counts.iter_mut().find(|(name, _)| *name == op) {
            Some((_, n)) => *n += 1,
            None => counts.push((op, 1)),
        }
    }

    pub fn get(&self, op: &str) -> u64 {
        lock(&self.0)
            .iter()
            .find(|(name, _)| *name == op)
            .map_or(0, |(_, n)| *n)
    }
}

/// The claim table, with DynamoDB's condition semantics.
#[derive(Debug)]
pub struct MemoryStore {
    pub claims: Mutex<HashMap<i64, ClaimItem>>,
    pub checkpoints: Mutex<HashMap<(String, String), Checkpoint>>,
    pub faults: Faults,
    /// Every call answers this late.
    pub latency: Latency,
    pub calls: CallCounts,
    /// Claims of these event ids fail, transiently, on every attempt.
    pub fail_claims: Mutex<HashSet<i64>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new(Faults::none())
    }
}

impl MemoryStore {
    pub fn new(faults: Faults) -> Self {
        MemoryStore {
            // Room for one deployed batch's claims: growing the table cost a
            // fifth of each claim in the batch bench.
            claims: Mutex::new(HashMap::with_capacity(crate::defaults::esm::BATCH_SIZE)),
            checkpoints: Mutex::new(HashMap::new()),
            faults,
            latency: Latency::default(),
            calls: CallCounts::default(),
            fail_claims: Mutex::new(HashSet::new()),
        }
    }

    async fn act<T>(&self, op: &'static str, f: impl FnOnce() -> T) -> Result<T, FakeError> {
        self.calls.add(op);
        self.latency.wait().await;
        let out = match self.faults.draw(op) {
            Some(false) => Err(fault(op, false)),
            Some(true) => {
                f();
                Err(fault(op, true))
            }
            None => Ok(f()),
        };
        self.latency.wait().await;
        out
    }
}

impl ClaimStore for MemoryStore {
    type Error = FakeError;

    async fn claim(&self, req: &ClaimRequest<'_>) -> Result<ClaimOutcome, FakeError> {
        let failing = {
            let fail = lock(&self.fail_claims);
            !fail.is_empty() && fail.contains(&req.event_id)
        };
        if failing {
            self.calls.add("claim");
            return Err(fault("claim", false));
        }
        self.act("claim", || {
            let mut claims = lock(&self.claims);
            let new_item = || ClaimItem {
                owner: req.owner.to_string(),
                expires_at: req.expires_at,
                delivered: false,
                batch_first_sequence: req.batch_first_sequence.to_string(),
            };
            // One hash and probe per claim (the entry), not a lookup then an insert.
            match claims.entry(req.event_id) {
                Entry::Occupied(old) if old.get().expires_at >= req.now_secs => {
                    let old = old.get();
                    ClaimOutcome::Held(ExistingClaim {
                        owner: old.owner.clone(),
                        delivered: old.delivered,
                        batch_first_sequence: Some(old.batch_first_sequence.clone()),
                    })
                }
                Entry::Occupied(mut expired) => {
                    expired.insert(new_item());
                    ClaimOutcome::Claimed {
                        took_over_expired: true,
                    }
                }
                Entry::Vacant(slot) => {
                    slot.insert(new_item());
                    ClaimOutcome::Claimed {
                        took_over_expired: false,
                    }
                }
            }
        })
        .await
    }

    async fn mark_delivered(&self, event_id: i64, owner: &str) -> Result<(), FakeError> {
        self.act("mark", || {
            if let Some(c) = lock(&self.claims).get_mut(&event_id)
                && c.owner == owner
            {
                c.delivered = true;
            }
        })
        .await
    }

    async fn release(&self, event_id: i64, owner: &str) -> Result<(), FakeError> {
        self.act("release", || {
            let mut claims = lock(&self.claims);
            if claims
                .get(&event_id)
                .is_some_and(|c| c.owner == owner && !c.delivered)
            {
                claims.remove(&event_id);
            }
        })
        .await
    }

    async fn get_checkpoint(
        &self,
        shard_id: &str,
        first_sequence: &str,
        now_secs: i64,
    ) -> Result<Option<Checkpoint>, FakeError> {
        self.act("get_checkpoint", || {
            lock(&self.checkpoints)
                .get(&(shard_id.to_string(), first_sequence.to_string()))
                .filter(|cp| cp.expires_at >= now_secs)
                .cloned()
        })
        .await
    }

    async fn put_checkpoint(&self, cp: &Checkpoint) -> Result<(), FakeError> {
        self.act("put_checkpoint", || {
            lock(&self.checkpoints)
                .insert((cp.shard_id.clone(), cp.first_sequence.clone()), cp.clone());
        })
        .await
    }
}

/// The model, claiming a batch in one call as the embedded store does: the call
/// fails as a whole, claiming nothing, when any of its events is in `fail_claims`.
#[derive(Default)]
pub struct OneCallStore(pub MemoryStore);

impl ClaimStore for OneCallStore {
    type Error = FakeError;

    const CLAIMS_IN_ONE_CALL: bool = true;

    async fn claim(&self, req: &ClaimRequest<'_>) -> Result<ClaimOutcome, FakeError> {
        self.0.claim(req).await
    }

    async fn claim_all(&self, reqs: &[ClaimRequest<'_>]) -> Result<Vec<ClaimOutcome>, FakeError> {
        let failing = {
            let fail = lock(&self.0.fail_claims);
            reqs.iter().any(|r| fail.contains(&r.event_id))
        };
        if failing {
            self.0.calls.add("claim_all");
            return Err(fault("claim_all", false));
        }
        let mut outcomes = Vec::with_capacity(reqs.len());
        for req in reqs {
            outcomes.push(self.0.claim(req).await?);
        }
        Ok(outcomes)
    }

    async fn mark_delivered(&self, event_id: i64, owner: &str) -> Result<(), FakeError> {
        self.0.mark_delivered(event_id, owner).await
    }

    async fn release(&self, event_id: i64, owner: &str) -> Result<(), FakeError> {
        self.0.release(event_id, owner).await
    }

    async fn get_checkpoint(
        &self,
        shard_id: &str,
        first_sequence: &str,
        now_secs: i64,
    ) -> Result<Option<Checkpoint>, FakeError> {
        self.0
            .get_checkpoint(shard_id, first_sequence, now_secs)
            .await
    }

    async fn put_checkpoint(&self, cp: &Checkpoint) -> Result<(), FakeError> {
        self.0.put_checkpoint(cp).await
    }
}

impl crate::ports::ClaimReader for MemoryStore {
    type Error = FakeError;

    async fn read_claim(
        &self,
        event_id: i64,
        now_secs: i64,
    ) -> Result<Option<ExistingClaim>, FakeError> {
        self.act("read_claim", || {
            lock(&self.claims)
                .get(&event_id)
                .filter(|c| c.expires_at >= now_secs)
                .map(|c| ExistingClaim {
                    owner: c.owner.clone(),
                    delivered: c.delivered,
                    batch_first_sequence: Some(c.batch_first_sequence.clone()),
                })
        })
        .await
    }
}

/// A Firehose stand-in: keeps every accepted line; can fail whole calls or entries.
#[derive(Debug)]
pub struct MemoryFirehose {
    /// Every accepted record, as sent (split into lines when read: the batch
    /// bench measures the pipeline, not this fake's bookkeeping).
    records: Mutex<Vec<Vec<u8>>>,
    pub calls: AtomicI64,
    pub faults: Faults,
    /// Probability that one entry of an otherwise successful call is rejected.
    pub entry_failure_rate: Mutex<f64>,
    /// Scripted: the share of entries the next calls reject, one per call.
    pub next_calls_fail: Mutex<VecDeque<f64>>,
    pub latency: Latency,
    /// Raw bytes of every call, in order.
    pub call_bytes: Mutex<Vec<usize>>,
    /// Entries holding any of these `detection_oid`s are rejected on every attempt.
    pub reject: Mutex<HashSet<i64>>,
}

impl Default for MemoryFirehose {
    fn default() -> Self {
        MemoryFirehose::new(Faults::none())
    }
}

impl MemoryFirehose {
    pub fn new(faults: Faults) -> Self {
        MemoryFirehose {
            records: Mutex::new(Vec::new()),
            calls: AtomicI64::new(0),
            faults,
            entry_failure_rate: Mutex::new(0.0),
            next_calls_fail: Mutex::new(VecDeque::new()),
            latency: Latency::default(),
            call_bytes: Mutex::new(Vec::new()),
            reject: Mutex::new(HashSet::new()),
        }
    }

    pub fn set_entry_failure_rate(&self, p: f64) {
        *lock(&self.entry_failure_rate) = p;
    }

    /// Scripts the next call: with `share` 1.0 it rejects every entry; with a
    /// share below that, every entry at an even position (the first, third...),
    /// so the entries it accepts all come after a rejected one.
    pub fn fail_next_call(&self, share: f64) {
        lock(&self.next_calls_fail).push_back(share);
    }

    /// Every delivered line, parsed.
    pub fn delivered(&self) -> Vec<serde_json::Value> {
        self.lines()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Every delivered line, in order.
    pub fn lines(&self) -> Vec<String> {
        lock(&self.records)
            .iter()
            .flat_map(|r| {
                String::from_utf8_lossy(r)
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn accept(&self, record: &[u8]) {
        lock(&self.records).push(record.to_vec());
    }
}

impl RecordBatchPort for MemoryFirehose {
    type Error = FakeError;

    async fn put_record_batch<'a>(
        &'a self,
        records: &'a [&'a [u8]],
    ) -> Result<Vec<Option<EntryFailure>>, FakeError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        lock(&self.call_bytes).push(records.iter().map(|r| r.len()).sum());
        self.latency.wait().await;
        let out = self.put(records);
        self.latency.wait().await;
        out
    }
}

impl MemoryFirehose {
    fn put(&self, records: &[&[u8]]) -> Result<Vec<Option<EntryFailure>>, FakeError> {
        match self.faults.draw("put_record_batch") {
            Some(false) => return Err(fault("put_record_batch", false)),
            Some(true) => {
                records.iter().for_each(|r| self.accept(r));
                return Err(fault("put_record_batch", true));
            }
            None => {}
        }
        let scripted = lock(&self.next_calls_fail).pop_front();
        let p = *lock(&self.entry_failure_rate);
        let reject = lock(&self.reject).clone();
        Ok(records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let chosen = !reject.is_empty() && {
                    let text = String::from_utf8_lossy(r);
                    reject
                        .iter()
                        .any(|id| text.contains(&format!("\"detection_oid\":{id},")))
                };
                let rejected = chosen
                    || match scripted {
                        Some(share) => share >= 1.0 || (share > 0.0 && i % 2 == 0),
                        None => self.faults.chance(p),
                    };
                if rejected {
                    Some(EntryFailure {
                        code: "ServiceUnavailableException".into(),
                        message: "injected entry failure".into(),
                    })
                } else {
                    self.accept(r);
                    None
                }
            })
            .collect())
    }
}

/// Quarantine objects by key.
#[derive(Debug)]
pub struct MemoryQuarantine {
    pub objects: Mutex<HashMap<String, Vec<u8>>>,
    pub faults: Faults,
    pub latency: Latency,
}

impl Default for MemoryQuarantine {
    fn default() -> Self {
        MemoryQuarantine::new(Faults::none())
    }
}

impl MemoryQuarantine {
    pub fn new(faults: Faults) -> Self {
        MemoryQuarantine {
            objects: Mutex::new(HashMap::new()),
            faults,
            latency: Latency::default(),
        }
    }

    /// Every quarantined line, parsed.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        lock(&self.objects)
            .values()
            .flat_map(|body| {
                String::from_utf8_lossy(body)
                    .lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

impl QuarantineStore for MemoryQuarantine {
    type Error = FakeError;

    async fn put_object(&self, key: &str, body: Vec<u8>) -> Result<(), FakeError> {
        self.latency.wait().await;
        let out = self.put(key, body);
        self.latency.wait().await;
        out
    }
}

impl MemoryQuarantine {
    fn put(&self, key: &str, body: Vec<u8>) -> Result<(), FakeError> {
        match self.faults.draw("put_object") {
            Some(false) => Err(fault("put_object", false)),
            applied => {
                lock(&self.objects).insert(key.to_string(), body);
                if applied.is_some() {
                    Err(fault("put_object", true))
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// A clock the test moves by hand.
#[derive(Debug, Default)]
pub struct ManualClock(pub AtomicI64);

impl ManualClock {
    pub fn at(ms: i64) -> Self {
        ManualClock(AtomicI64::new(ms))
    }

    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A Kinesis stand-in: keeps every accepted (partition key, data); entries can
/// be throttled with a probability, or every call failed.
#[derive(Debug)]
pub struct MemoryStream {
    pub records: Mutex<Vec<(String, Vec<u8>)>>,
    pub faults: Faults,
    /// Probability that one entry is answered `ProvisionedThroughputExceededException`.
    pub throttle_rate: Mutex<f64>,
}

impl Default for MemoryStream {
    fn default() -> Self {
        MemoryStream {
            records: Mutex::new(Vec::new()),
            faults: Faults::none(),
            throttle_rate: Mutex::new(0.0),
        }
    }
}

impl StreamPort for MemoryStream {
    type Error = FakeError;

    async fn put_records<'a>(
        &'a self,
        entries: &'a [(&'a str, &'a [u8])],
    ) -> Result<Vec<Option<EntryFailure>>, FakeError> {
        if self.faults.draw("put_records") == Some(false) {
            return Err(fault("put_records", false));
        }
        let p = *lock(&self.throttle_rate);
        Ok(entries
            .iter()
            .map(|(pk, data)| {
                if self.faults.chance(p) {
                    Some(EntryFailure {
                        code: "ProvisionedThroughputExceededException".into(),
                        message: "injected".into(),
                    })
                } else {
                    lock(&self.records).push((pk.to_string(), data.to_vec()));
                    None
                }
            })
            .collect())
    }
}
