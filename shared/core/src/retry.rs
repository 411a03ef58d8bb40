//! Retry classification and deadline-bounded backoff.
//!
//! Adapters classify their errors; the batch logic retries only what is
//! retryable, with exponential backoff and full jitter (via `backon`), and never
//! sleeps past the invocation's deadline.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::Retryable;

use crate::cost::{CostModel, Op};
use crate::time::{Clock, Deadline};

/// What kind of failure an error is, in the Vector sense.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The service asked us to slow down (429, throughput exceeded, SlowDown...).
    Throttled,
    /// Timeouts, dropped connections and 5xx.
    Transient,
    /// Validation, permissions, missing resources: retrying cannot help.
    Permanent,
}

impl ErrorClass {
    pub fn is_retryable(self) -> bool {
        !matches!(self, ErrorClass::Permanent)
    }
}

/// Implemented by every port error.
pub trait Classify {
    fn class(&self) -> ErrorClass;

    fn is_retryable(&self) -> bool {
        self.class().is_retryable()
    }

    /// True when the call ran out of the invocation's time rather than failed.
    fn is_deadline(&self) -> bool {
        false
    }
}

/// Error codes AWS services use for throttling.
pub const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "LimitExceededException",
    // Firehose answers over-limit callers with this code.
    "ServiceUnavailableException",
];

/// Error codes that mean "try again" without being throttling.
pub const TRANSIENT_CODES: &[&str] = &[
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "InternalServerException",
    "ServiceUnavailable",
    "TransactionConflictException",
];

/// Classifies an AWS error from its code and HTTP status.
pub fn classify_aws(code: Option<&str>, http_status: Option<u16>) -> ErrorClass {
    match (code, http_status) {
        (Some(c), _) if THROTTLING_CODES.contains(&c) => ErrorClass::Throttled,
        (_, Some(429)) => ErrorClass::Throttled,
        (Some(c), _) if TRANSIENT_CODES.contains(&c) => ErrorClass::Transient,
        (_, Some(s)) if s >= 500 => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    }
}

/// How hard to retry one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Upper bound of one attempt (the SDK's own attempt timeout is the same
    /// value); the time left before the deadline may bound it further.
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: crate::defaults::RETRY_MAX_ATTEMPTS,
            base_delay: Duration::from_millis(25),
            max_delay: Duration::from_secs(2),
            attempt_timeout: Duration::from_millis(DEFAULT_ATTEMPT_TIMEOUT_MS as u64),
        }
    }
}

/// The default upper bound of one attempt of one call (`AWS_CALL_TIMEOUT_MS`).
pub const DEFAULT_ATTEMPT_TIMEOUT_MS: i64 = 5_000;

/// Counts shared by every retried operation of one batch (they run concurrently).
#[derive(Debug, Default)]
pub struct RetryCounters {
    pub retries: AtomicU64,
    pub throttled: AtomicU64,
    pub timed_out: AtomicU64,
}

impl RetryCounters {
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    pub fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    /// Attempts cut short by their bound (the attempt timeout or the time left).
    pub fn timed_out(&self) -> u64 {
        self.timed_out.load(Ordering::Relaxed)
    }
}

/// Why a call ended without an answer from its port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OutOfTime {
    #[error("no time left before the invocation deadline to start an attempt")]
    NoTime,
    #[error("no answer within {0} ms (the attempt's bound: its timeout or the time left)")]
    TimedOut(i64),
}

/// A call's error: the port's own, or the deadline's.
#[derive(Debug, thiserror::Error)]
pub enum CallError<E> {
    #[error(transparent)]
    Port(E),
    #[error(transparent)]
    Time(OutOfTime),
}

impl<E> CallError<E> {
    /// The port's error, if it was one.
    pub fn port(&self) -> Option<&E> {
        match self {
            CallError::Port(e) => Some(e),
            CallError::Time(_) => None,
        }
    }
}

impl<E: Classify> Classify for CallError<E> {
    fn class(&self) -> ErrorClass {
        match self {
            CallError::Port(e) => e.class(),
            // The answer may still come (and the call may have acted): like any timeout.
            CallError::Time(OutOfTime::TimedOut(_)) => ErrorClass::Transient,
            // Retrying cannot make time.
            CallError::Time(OutOfTime::NoTime) => ErrorClass::Permanent,
        }
    }

    fn is_deadline(&self) -> bool {
        matches!(self, CallError::Time(_))
    }
}

/// Exponential backoff with full jitter (a uniform draw in `[0, cap]`), which
/// stops when attempts run out, or when the wait plus one more attempt plus the
/// time kept for later steps would cross the deadline.
pub struct FullJitterBackoff<'a> {
    policy: RetryPolicy,
    deadline: Deadline,
    clock: &'a dyn Clock,
    /// Time that must remain after the wait: one attempt and what follows it.
    after_wait_ms: i64,
    retries_done: u32,
    rng: fastrand::Rng,
}

impl Iterator for FullJitterBackoff<'_> {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.retries_done + 1 >= self.policy.max_attempts {
            return None;
        }
        let exp = self
            .policy
            .base_delay
            .saturating_mul(1u32 << self.retries_done.min(20));
        let cap = exp.min(self.policy.max_delay);
        let cap_ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
        let wait = Duration::from_millis(self.rng.u64(0..=cap_ms));
        let wait_ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
        if !self.deadline.allows_wait(
            self.clock.now_ms(),
            wait_ms.saturating_add(self.after_wait_ms),
        ) {
            return None;
        }
        self.retries_done += 1;
        Some(wait)
    }
}

/// Runs operations with the batch's policy, deadline, counters and cost model.
///
/// Every attempt is bounded: by the policy's attempt timeout, and by the time
/// left before the deadline minus `keep_ms`, the time kept for the steps that
/// must still follow this one (for example the checkpoint write after delivery).
/// No attempt starts once only the kept time is left. An attempt of a call
/// without an idempotency key ([`Retrier::finishing_sent_attempts`]) may run into
/// the kept time once sent.
#[derive(Clone, Copy)]
pub struct Retrier<'a> {
    pub policy: RetryPolicy,
    pub deadline: Deadline,
    pub clock: &'a dyn Clock,
    pub counters: &'a RetryCounters,
    pub costs: &'a CostModel,
    /// Which port the calls go to (their latency feeds `costs`).
    pub op: Op,
    /// Time to leave before the deadline for later steps.
    pub keep_ms: i64,
    /// What one attempt is assumed to cost before anything was measured.
    pub fallback_ms: i64,
    /// A sent attempt is bounded by the time left, not the time left minus
    /// `keep_ms` (see [`Retrier::finishing_sent_attempts`]).
    pub finish_sent: bool,
}

impl<'a> Retrier<'a> {
    /// A retrier for one invocation (or one unbounded local call when `deadline`
    /// is [`Deadline::none`]).
    pub fn new(
        policy: RetryPolicy,
        deadline: Deadline,
        clock: &'a dyn Clock,
        counters: &'a RetryCounters,
        costs: &'a CostModel,
    ) -> Self {
        let attempt_ms = i64::try_from(policy.attempt_timeout.as_millis()).unwrap_or(i64::MAX);
        // Before anything is measured, assume one attempt may take an eighth of
        // the invocation (or the attempt timeout, if shorter).
        let share = deadline
            .budget_ms(clock.now_ms())
            .map_or(attempt_ms, |left| (left / 8).max(1));
        Retrier {
            policy,
            deadline,
            clock,
            counters,
            costs,
            op: Op::Store,
            keep_ms: 0,
            fallback_ms: attempt_ms.min(share),
            finish_sent: false,
        }
    }

    /// The same retrier for calls to `op`, keeping `keep_ms` for later steps.
    pub fn for_op(&self, op: Op, keep_ms: i64) -> Retrier<'a> {
        Retrier {
            op,
            keep_ms: keep_ms.max(0),
            ..*self
        }
    }

    /// The same retrier, but an attempt already sent runs until the time left is
    /// gone (or the attempt timeout), even into `keep_ms`; starting an attempt
    /// still needs more than `keep_ms` left. For calls a retry would repeat
    /// without an idempotency key (Firehose `PutRecordBatch`): cutting one that
    /// the service accepted delivers its events twice, while finishing it late
    /// only leaves the later steps less time.
    pub fn finishing_sent_attempts(self) -> Retrier<'a> {
        Retrier {
            finish_sent: true,
            ..self
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Milliseconds left before the deadline's reserve; `None` when unbounded.
    pub fn left_ms(&self) -> Option<i64> {
        self.deadline.budget_ms(self.clock.now_ms())
    }

    /// What one attempt of a call to `op` is expected to take at worst.
    pub fn cost_ms(&self, op: Op) -> i64 {
        let attempt_ms = i64::try_from(self.policy.attempt_timeout.as_millis()).unwrap_or(i64::MAX);
        self.costs
            .estimate(op, self.fallback_ms, self.clock.now_ms())
            .min(attempt_ms)
    }

    /// True when `need_ms` of work still fits before the deadline's reserve.
    pub fn allows(&self, need_ms: i64) -> bool {
        self.left_ms().is_none_or(|left| left >= need_ms)
    }

    /// True once no new work should start at all.
    pub fn out_of_time(&self) -> bool {
        self.deadline.is_exhausted(self.clock.now_ms())
    }

    pub fn backoff(&self) -> FullJitterBackoff<'a> {
        FullJitterBackoff {
            policy: self.policy,
            deadline: self.deadline,
            clock: self.clock,
            after_wait_ms: self.keep_ms.saturating_add(self.cost_ms(self.op)),
            retries_done: 0,
            rng: fastrand::Rng::new(),
        }
    }

    /// The bound of an attempt starting now: the attempt timeout, or the time
    /// left minus `keep_ms` (the time left, with `finish_sent`) if that is
    /// shorter; `None` when only the kept time is left.
    fn attempt_bound_ms(&self) -> Option<i64> {
        let attempt_ms = i64::try_from(self.policy.attempt_timeout.as_millis()).unwrap_or(i64::MAX);
        match self.left_ms() {
            None => Some(attempt_ms),
            Some(left) if left - self.keep_ms <= 0 => None,
            Some(left) => {
                let room = if self.finish_sent {
                    left
                } else {
                    left - self.keep_ms
                };
                let bound = room.min(attempt_ms);
                (bound > 0).then_some(bound)
            }
        }
    }

    /// Runs `op`, retrying retryable errors; each attempt is bounded (see the
    /// type's doc) and timed; throttles, retries and timeouts are counted.
    pub async fn run<T, E, F, Fut>(&self, mut op: F) -> Result<T, CallError<E>>
    where
        E: Classify,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let counters = self.counters;
        let attempt = || {
            let bound = self.attempt_bound_ms();
            let fut = bound.map(|_| op());
            async move {
                let (Some(bound), Some(fut)) = (bound, fut) else {
                    return Err(CallError::Time(OutOfTime::NoTime));
                };
                let started = self.clock.now_ms();
                let wait = Duration::from_millis(u64::try_from(bound).unwrap_or(0));
                let out = match tokio::time::timeout(wait, fut).await {
                    Ok(Ok(v)) => Ok(v),
                    Ok(Err(e)) => Err(CallError::Port(e)),
                    Err(_) => {
                        counters.timed_out.fetch_add(1, Ordering::Relaxed);
                        Err(CallError::Time(OutOfTime::TimedOut(bound)))
                    }
                };
                let ended = self.clock.now_ms();
                self.costs.record(self.op, ended - started, ended);
                if let Err(e) = &out
                    && e.class() == ErrorClass::Throttled
                {
                    counters.throttled.fetch_add(1, Ordering::Relaxed);
                }
                out
            }
        };
        attempt
            .retry(self.backoff())
            .when(|e: &CallError<E>| e.is_retryable())
            .notify(|_, _| {
                counters.retries.fetch_add(1, Ordering::Relaxed);
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::TokioClock;
    use std::sync::atomic::AtomicU32;

    struct FixedClock(i64);
    impl Clock for FixedClock {
        fn now_ms(&self) -> i64 {
            self.0
        }
    }

    #[derive(Debug)]
    struct E(ErrorClass);
    impl Classify for E {
        fn class(&self) -> ErrorClass {
            self.0
        }
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            ..RetryPolicy::default()
        }
    }

    #[test]
    fn aws_codes_and_statuses_are_classified() {
        assert_eq!(
            classify_aws(Some("ProvisionedThroughputExceededException"), Some(400)),
            ErrorClass::Throttled
        );
        assert_eq!(
            classify_aws(Some("SlowDown"), Some(503)),
            ErrorClass::Throttled
        );
        assert_eq!(classify_aws(None, Some(429)), ErrorClass::Throttled);
        assert_eq!(
            classify_aws(Some("InternalServerError"), Some(500)),
            ErrorClass::Transient
        );
        assert_eq!(classify_aws(None, Some(502)), ErrorClass::Transient);
        assert_eq!(
            classify_aws(Some("ValidationException"), Some(400)),
            ErrorClass::Permanent
        );
        assert_eq!(
            classify_aws(Some("ResourceNotFoundException"), Some(400)),
            ErrorClass::Permanent
        );
    }

    #[test]
    fn full_jitter_waits_never_exceed_the_capped_exponential() {
        let clock = FixedClock(0);
        let counters = RetryCounters::default();
        let costs = CostModel::default();
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            ..RetryPolicy::default()
        };
        let r = Retrier::new(policy, Deadline::none(), &clock, &counters, &costs);
        let waits: Vec<Duration> = r.backoff().collect();
        assert_eq!(waits.len(), 9, "max_attempts counts the first try");
        for (i, w) in waits.iter().enumerate() {
            let cap = (10u64 << i).min(50);
            assert!(
                w.as_millis() as u64 <= cap,
                "retry {i} waited {w:?} > {cap}ms"
            );
        }
    }

    #[test]
    fn backoff_leaves_room_for_one_more_attempt_and_the_kept_time() {
        let clock = FixedClock(9_000);
        let counters = RetryCounters::default();
        let costs = CostModel::default();
        for _ in 0..16 {
            costs.record(Op::Store, 100, 9_000);
        }
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(1_000),
            max_delay: Duration::from_millis(1_000),
            ..RetryPolicy::default()
        };
        // 1,000 ms left; an attempt is expected to take 160 ms; 500 ms are kept.
        let r = Retrier::new(policy, Deadline::at(10_000, 0), &clock, &counters, &costs)
            .for_op(Op::Store, 500);
        assert!(r.backoff().all(|w| w.as_millis() < 340));
    }

    #[tokio::test]
    async fn retryable_errors_are_retried_and_counted() {
        let clock = FixedClock(0);
        let counters = RetryCounters::default();
        let costs = CostModel::default();
        let r = Retrier::new(fast(), Deadline::none(), &clock, &counters, &costs);
        let calls = AtomicU32::new(0);
        let out: Result<u32, CallError<E>> = r
            .run(|| async {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                if n < 2 {
                    Err(E(ErrorClass::Throttled))
                } else {
                    Ok(n)
                }
            })
            .await;
        assert_eq!(out.ok(), Some(2));
        assert_eq!(counters.retries(), 2);
        assert_eq!(counters.throttled(), 2);
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried() {
        let clock = FixedClock(0);
        let counters = RetryCounters::default();
        let costs = CostModel::default();
        let r = Retrier::new(fast(), Deadline::none(), &clock, &counters, &costs);
        let calls = AtomicU32::new(0);
        let out: Result<(), CallError<E>> = r
            .run(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(E(ErrorClass::Permanent))
            })
            .await;
        assert!(out.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(counters.retries(), 0);
    }

    #[tokio::test]
    async fn attempts_are_bounded() {
        let clock = FixedClock(0);
        let counters = RetryCounters::default();
        let costs = CostModel::default();
        let r = Retrier::new(fast(), Deadline::none(), &clock, &counters, &costs);
        let calls = AtomicU32::new(0);
        let out: Result<(), CallError<E>> = r
            .run(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(E(ErrorClass::Transient))
            })
            .await;
        assert!(out.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_ends_when_the_time_left_minus_the_kept_time_runs_out() {
        let clock = TokioClock::starting_at(1_000_000);
        let counters = RetryCounters::default();
        let costs = CostModel::default();
        // 2,000 ms to the deadline, 500 of them kept for later steps: the
        // call, which would answer after 10 s, is given up at 1,500 ms.
        let deadline = Deadline::at(clock.now_ms() + 2_000, 0);
        let r = Retrier::new(fast(), deadline, &clock, &counters, &costs).for_op(Op::Sink, 500);
        let out: Result<(), CallError<E>> = r
            .run(|| async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok(())
            })
            .await;
        assert!(
            matches!(out, Err(CallError::Time(OutOfTime::TimedOut(1_500)))),
            "{out:?}"
        );
        assert_eq!(clock.now_ms(), 1_001_500, "no retry: nothing fits after it");
        assert_eq!(counters.timed_out(), 1);
        // With nothing left, no attempt starts at all.
        let out: Result<(), CallError<E>> = r.run(|| async { Ok(()) }).await;
        assert!(matches!(out, Err(CallError::Time(OutOfTime::NoTime))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_sent_put_without_an_idempotency_key_may_finish_in_the_kept_time() {
        let clock = TokioClock::starting_at(1_000_000);
        let counters = RetryCounters::default();
        let costs = CostModel::default();
        // 2,000 ms left, 500 kept: a put that answers after 1,800 ms is not cut
        // at 1,500 (its events would be sent again), and is answered.
        let deadline = Deadline::at(clock.now_ms() + 2_000, 0);
        let r = Retrier::new(fast(), deadline, &clock, &counters, &costs)
            .for_op(Op::Sink, 500)
            .finishing_sent_attempts();
        let out: Result<u8, CallError<E>> = r
            .run(|| async {
                tokio::time::sleep(Duration::from_millis(1_800)).await;
                Ok(7)
            })
            .await;
        assert_eq!(out.ok(), Some(7));
        assert_eq!(counters.timed_out(), 0);
        // Only the kept time is left now: no new attempt starts.
        let out: Result<(), CallError<E>> = r.run(|| async { Ok(()) }).await;
        assert!(matches!(out, Err(CallError::Time(OutOfTime::NoTime))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_sent_put_is_still_cut_when_the_time_left_is_gone() {
        let clock = TokioClock::starting_at(1_000_000);
        let counters = RetryCounters::default();
        let costs = CostModel::default();
        let deadline = Deadline::at(clock.now_ms() + 2_000, 0);
        let r = Retrier::new(fast(), deadline, &clock, &counters, &costs)
            .for_op(Op::Sink, 500)
            .finishing_sent_attempts();
        let out: Result<(), CallError<E>> = r
            .run(|| async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok(())
            })
            .await;
        assert!(
            matches!(out, Err(CallError::Time(OutOfTime::TimedOut(2_000)))),
            "{out:?}"
        );
        assert_eq!(clock.now_ms(), 1_002_000);
    }
}
