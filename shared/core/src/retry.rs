//! Retry classification and deadline-bounded backoff.
//!
//! Adapters classify their errors; the batch logic retries only what is
//! retryable, with exponential backoff and full jitter (via `backon`), and never
//! sleeps past the invocation's deadline.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::Retryable;

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
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(25),
            max_delay: Duration::from_secs(2),
        }
    }
}

/// Counts shared by every retried operation of one batch (they run concurrently).
#[derive(Debug, Default)]
pub struct RetryCounters {
    pub retries: AtomicU64,
    pub throttled: AtomicU64,
}

impl RetryCounters {
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    pub fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }
}

/// Exponential backoff with full jitter (a uniform draw in `[0, cap]`), which
/// stops when attempts run out or the next wait would cross the deadline.
pub struct FullJitterBackoff<'a> {
    policy: RetryPolicy,
    deadline: Deadline,
    clock: &'a dyn Clock,
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
        if !self.deadline.allows_wait(self.clock.now_ms(), wait_ms) {
            return None;
        }
        self.retries_done += 1;
        Some(wait)
    }
}

/// Runs operations with the batch's policy, deadline and counters.
pub struct Retrier<'a> {
    pub policy: RetryPolicy,
    pub deadline: Deadline,
    pub clock: &'a dyn Clock,
    pub counters: &'a RetryCounters,
}

impl<'a> Retrier<'a> {
    pub fn backoff(&self) -> FullJitterBackoff<'a> {
        FullJitterBackoff {
            policy: self.policy,
            deadline: self.deadline,
            clock: self.clock,
            retries_done: 0,
            rng: fastrand::Rng::new(),
        }
    }

    /// True once no new work should start.
    pub fn out_of_time(&self) -> bool {
        self.deadline.is_exhausted(self.clock.now_ms())
    }

    /// Runs `op`, retrying retryable errors; throttles and retries are counted.
    pub async fn run<T, E, F, Fut>(&self, mut op: F) -> Result<T, E>
    where
        E: Classify,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let counters = self.counters;
        let attempt = || {
            let fut = op();
            async move {
                let out = fut.await;
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
            .when(|e: &E| e.is_retryable())
            .notify(|_, _| {
                counters.retries.fetch_add(1, Ordering::Relaxed);
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
        };
        let r = Retrier {
            policy,
            deadline: Deadline::none(),
            clock: &clock,
            counters: &counters,
        };
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
    fn backoff_stops_before_the_deadline() {
        let clock = FixedClock(9_990);
        let counters = RetryCounters::default();
        let r = Retrier {
            policy: RetryPolicy {
                max_attempts: 10,
                base_delay: Duration::from_millis(100),
                max_delay: Duration::from_millis(100),
            },
            deadline: Deadline::at(10_000, 0),
            clock: &clock,
            counters: &counters,
        };
        // 10 ms left: only waits shorter than that may be taken.
        assert!(r.backoff().all(|w| w.as_millis() < 10));
    }

    #[tokio::test]
    async fn retryable_errors_are_retried_and_counted() {
        let clock = FixedClock(0);
        let counters = RetryCounters::default();
        let r = Retrier {
            policy: fast(),
            deadline: Deadline::none(),
            clock: &clock,
            counters: &counters,
        };
        let calls = AtomicU32::new(0);
        let out: Result<u32, E> = r
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
        let r = Retrier {
            policy: fast(),
            deadline: Deadline::none(),
            clock: &clock,
            counters: &counters,
        };
        let calls = AtomicU32::new(0);
        let out: Result<(), E> = r
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
        let r = Retrier {
            policy: fast(),
            deadline: Deadline::none(),
            clock: &clock,
            counters: &counters,
        };
        let calls = AtomicU32::new(0);
        let out: Result<(), E> = r
            .run(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(E(ErrorClass::Transient))
            })
            .await;
        assert!(out.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }
}
